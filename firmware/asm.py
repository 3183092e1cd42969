"""Assembler of the sequencer's programs (``firmware/programs/*.s``).

The sequencer of the network core (``hdl/core.py``) runs a program from its program memory
for every ``PRESENT`` command: what a presentation is — scaling, rest, time steps, θ decay,
the re-presentation rule — is this program, so a schedule changes by loading another program
over the link (``LOAD_PROGRAM``) instead of building another bitstream. The time step itself
(phase A, phase B) is fixed gateware.

Instructions are 16-bit words: the opcode in bits 15–12, the argument in bits 11–0.

=========  =======  ==============================================================
mnemonic   opcode   effect
=========  =======  ==============================================================
halt       0        end of the command (``done``)
scale      1        synaptic scaling of the layers that learn (input→E, then E→C)
reset      2        rest state: neurons, traces, queued spikes (θ, weights kept)
clear      3        spike counters to zero; one more presentation
steps n    4        ``n`` time steps with the current flags (``n`` ≤ 4095)
flags f…   5        step flags: ``input`` (encoder or AER events), ``teacher`` (and
                    the command's teacher flag), ``count`` (count E and C spikes)
theta      6        θ's decay over a presentation, when the hidden layer learns
intensity  7        input intensity = ``n``
inc        8        intensity + 1
jspikes a  9        jump to ``a`` if the E spikes counted ≥ the ``minspk`` value
jint a     10       jump to ``a`` if the intensity ≥ the ``maxint`` value
jmp a      11       jump to ``a``
minspk n   12       the spike count ``jspikes`` compares with
maxint n   13       the intensity ``jint`` compares with
jaer a     14       jump to ``a`` if the command streams its input as AER events
=========  =======  ==============================================================

Syntax: one instruction per line, ``label:`` before it if wanted, ``;`` starts a comment.
Arguments are numbers, labels, or ``{name}`` — an attribute of the network configuration
(``steps_present``, ``min_spikes`` …). ``.if name`` … ``.endif`` keeps its lines only when
``name`` is true: ``reset_rest`` and ``simulate_rest`` (the configuration's ``rest``).
"""

from __future__ import annotations

import enum
import re
from importlib import resources

from .config import NetworkConfig

__all__ = ["Opcode", "FLAG_BITS", "PROGRAM_DEPTH", "AsmError", "assemble", "default_program",
           "disassemble"]

#: Words of the sequencer's program memory.
PROGRAM_DEPTH = 64
ARG_BITS = 12


class Opcode(enum.IntEnum):
    HALT = 0
    SCALE = 1
    RESET = 2
    CLEAR = 3
    STEPS = 4
    FLAGS = 5
    THETA = 6
    INTENSITY = 7
    INC = 8
    JSPIKES = 9
    JINT = 10
    JMP = 11
    MINSPK = 12
    MAXINT = 13
    JAER = 14


#: Bits of the ``flags`` argument.
FLAG_BITS = {"input": 1, "teacher": 2, "count": 4}

_NO_ARG = {Opcode.HALT, Opcode.SCALE, Opcode.RESET, Opcode.CLEAR, Opcode.THETA, Opcode.INC}
_JUMPS = {Opcode.JSPIKES, Opcode.JINT, Opcode.JMP, Opcode.JAER}


class AsmError(ValueError):
    """A program that cannot be assembled; the message names the line."""


def _symbols(cfg: NetworkConfig) -> dict:
    return {"reset_rest": cfg.rest == "reset", "simulate_rest": cfg.rest == "simulate"}


def assemble(text: str, cfg: NetworkConfig, *, name: str = "<program>") -> tuple[list, dict]:
    """Assemble ``text`` for ``cfg``: the program words and the label addresses."""
    conds = _symbols(cfg)
    lines = []
    keep = [True]
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        where = f"{name}:{number}"
        if line.startswith(".if"):
            key = line[3:].strip()
            if key not in conds:
                raise AsmError(f"{where}: unknown condition {key!r}; known: {sorted(conds)}")
            keep.append(keep[-1] and conds[key])
            continue
        if line == ".endif":
            if len(keep) == 1:
                raise AsmError(f"{where}: .endif without .if")
            keep.pop()
            continue
        if keep[-1]:
            lines.append((where, line))
    if len(keep) != 1:
        raise AsmError(f"{name}: .if without .endif")

    labels, body = {}, []
    for where, line in lines:
        m = re.match(r"([A-Za-z_]\w*):\s*(.*)$", line)
        if m:
            if m.group(1) in labels:
                raise AsmError(f"{where}: label {m.group(1)!r} defined twice")
            labels[m.group(1)] = len(body)
            line = m.group(2)
            if not line:
                continue
        body.append((where, line))
    if len(body) > PROGRAM_DEPTH:
        raise AsmError(f"{name}: {len(body)} instructions, the program memory holds "
                       f"{PROGRAM_DEPTH}")

    def value(where, token):
        m = re.fullmatch(r"\{(\w+)\}", token)
        if m:
            if not hasattr(cfg, m.group(1)):
                raise AsmError(f"{where}: the configuration has no {m.group(1)!r}")
            v = getattr(cfg, m.group(1))
            if isinstance(v, bool) or not isinstance(v, int):
                raise AsmError(f"{where}: {{{m.group(1)}}} is not an integer ({v!r})")
            return v
        if token in labels:
            return labels[token]
        try:
            return int(token, 0)
        except ValueError:
            raise AsmError(f"{where}: {token!r} is not a number, label or {{name}}") from None

    words = []
    for where, line in body:
        mnemonic, *args = line.split()
        try:
            op = Opcode[mnemonic.upper()]
        except KeyError:
            raise AsmError(f"{where}: unknown instruction {mnemonic!r}") from None
        if op == Opcode.FLAGS:
            arg = 0
            for a in args:
                if a not in FLAG_BITS:
                    raise AsmError(f"{where}: unknown flag {a!r}; flags are "
                                   f"{', '.join(FLAG_BITS)}")
                arg |= FLAG_BITS[a]
        elif op in _NO_ARG:
            if args:
                raise AsmError(f"{where}: {mnemonic} takes no argument")
            arg = 0
        else:
            if len(args) != 1:
                raise AsmError(f"{where}: {mnemonic} takes one argument")
            arg = value(where, args[0])
            if op in _JUMPS and not 0 <= arg < len(body):
                raise AsmError(f"{where}: jump target {arg} outside the program")
        if not 0 <= arg < 1 << ARG_BITS:
            raise AsmError(f"{where}: argument {arg} does not fit {ARG_BITS} bits")
        words.append(int(op) << ARG_BITS | arg)
    return words, labels


def default_program(cfg: NetworkConfig) -> list:
    """The presentation program (``programs/present.s``) assembled for ``cfg``."""
    text = resources.files(__package__).joinpath("programs/present.s").read_text()
    return assemble(text, cfg, name="present.s")[0]


def disassemble(words) -> list[str]:
    """One line of text per word."""
    out = []
    for w in words:
        op, arg = Opcode(w >> ARG_BITS), w & ((1 << ARG_BITS) - 1)
        if op == Opcode.FLAGS:
            out.append(" ".join(["flags"] + [f for f, b in FLAG_BITS.items() if arg & b]))
        elif op in _NO_ARG:
            out.append(op.name.lower())
        else:
            out.append(f"{op.name.lower()} {arg}")
    return out
