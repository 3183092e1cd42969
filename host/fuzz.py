"""Protocol fuzzing: random and mutated frames against a board, with an exact reference.

A fuzz run sends *shots* — random bytes, cut, damaged and mutated frames, frames of unknown
types and bad lengths, wrong sequence numbers, oversize lengths, retries, and valid-CRC
requests with out-of-range arguments — to a board (in practice the virtual board), mixed
with valid training traffic: ``PRESENT`` of real MNIST images with the right ``SEQ``, as the
host driver sends them. Every answer is checked against a reference that predicts it
exactly, and at the end the board's counters and its weights are compared with the
reference's and with a golden model trained on the valid images alone.

>>> from symspike.host.link import open_link
>>> with open_link("sim://?link=pcie") as link:                       # doctest: +SKIP
...     result = run_fuzz(link, 10_000, seed=1)
>>> print(result.summary())                                           # doctest: +SKIP

The reference
-------------
:class:`ChipReference` is the chip's protocol side in Python: the packet engine of
:mod:`symspike.firmware.packet_model` (the framing, checks, retries and counters the
pure-Python test board uses too) in front of a model of the chip's command unit
(``hdl/chip.py``: its checks in the chip's order, its registers, its answers) on a
:class:`~symspike.sim.network.GoldenModel`. Fed the bytes the host sends and told when the
line falls quiet, it gives the answer frames in order: the ACK with its payload, the NAK
with its code, ``SEQ`` and type, or the stored answer of a retry.

Shots never change state
------------------------
Before a shot is sent the reference runs it in a dry mode in which a request that would be
executed and change something (weights, θ, the sequencer program, ``EPOCH``, the random
streams, a presentation) is only noted; such a shot is thrown away and another one drawn
(:attr:`ShotGenerator.rejected`). Read-only requests that get through are executed, and
their answers (register values, weight rows, θ, spike counts, the last result) checked.

Timing and batches
------------------
Bytes outside frames, cut frames and oversize lengths are answered only once the line has
been quiet for the frame timeout (``FRAME_TIMEOUT_BITS`` bit times: 8000 clock cycles at
divisor 4, some 15-25 ms of the virtual board's simulation). The chip's engine takes frames in order and the PCIe stream loses no
byte, so on PCIe the runner sends shots back to back in *batches* — each batch goes on while
the reference says the engine is between frames (garbage may be pending), and ends with the
first shot that leaves a frame open or a discard running, or at 4096 bytes (one atomic pipe
write, so no gap can open inside a batch). Only then does it wait for the quiet line and the
answers. On a UART a byte that arrives while the chip checks or executes a request is lost,
so there every shot is its own batch and holds at most one complete frame, as its last byte.
"""

from __future__ import annotations

import collections
import json
import random
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..firmware.asm import PROGRAM_DEPTH
from ..firmware.config import NetworkConfig, preset
from ..firmware.packet_model import Answer, PacketModel, Unknown, length_ok
from ..firmware.protocol import (AER_STEP_END, COMMANDS, MAGIC, MAX_PAYLOAD, PHASE_FLAGS, SYNC,
                                 VERSION, Error, FrameParser, IdBlock, Phase, ProtocolError, Reg,
                                 Result, Type, decode_runs, encode, encode_runs, rng_registers)
from ..sim.network import GoldenModel
from .link import Link

__all__ = ["SHOT_KINDS", "FuzzError", "ChipReference", "Shot", "ShotGenerator", "FuzzResult",
           "run_fuzz", "bench_fuzz", "add_bench_arguments"]

#: Shot kinds and their default weights in the random mix.
SHOT_KINDS = {
    "garbage": 12,          # random bytes, mostly without SYNC
    "truncated": 7,         # a valid frame cut short
    "bad_crc": 9,           # a valid frame with its CRC changed
    "bad_type": 6,          # a good frame of a type that is no request
    "bad_length": 7,        # a good frame whose LEN breaks its type's rule
    "bad_sequence": 8,      # a valid request with a SEQ that is neither next nor a retry
    "oversize": 4,          # LEN above MAX_PAYLOAD, then some bytes
    "bit_flip": 9,          # a valid frame with 1-3 bits flipped
    "byte_insert": 6,       # a valid frame with 1-2 bytes inserted
    "byte_delete": 4,       # a valid frame with 1-2 bytes deleted
    "duplicate": 6,         # the last executed request again, byte for byte (a retry)
    "bad_argument": 12,     # next SEQ, good CRC, an address or argument out of range
    "random_request": 5,    # next SEQ, good CRC and length, random payload
    "read": 9,              # a valid read-only request
}
#: Bytes of one batch at most: one write of at most PIPE_BUF bytes reaches a pipe whole.
BATCH_BYTES = 4096
#: Largest shot (a mutated PRESENT frame); a batch is closed before it could overflow.
MAX_SHOT_BYTES = 800
#: Flags bytes of the golden model's phases.
_PHASE_OF = {int(flags): name for name, flags in PHASE_FLAGS.items()}
#: Requests a shot's template may be, with weights (short frames more often: cheaper).
_TEMPLATE_TYPES = {
    Type.IDENTIFY: 1.0, Type.READ_REG: 3.0, Type.WRITE_REG: 3.0, Type.PRESENT: 0.4,
    Type.PRESENT_RUNS: 0.4,
    Type.AER_BEGIN: 1.0, Type.AER: 1.0, Type.RESULT: 1.0, Type.SCALE: 1.0,
    Type.READ_ROW: 2.0, Type.WRITE_ROW: 1.2, Type.READ_THETA: 1.0, Type.WRITE_THETA: 1.5,
    Type.READ_COUNTS: 1.0, Type.LOAD_PROGRAM: 1.0,
}
_ERROR_NAMES = {int(e): e.name for e in Error}
#: Counter names of the error codes (16-bit counters that wrap).
_ERROR_KEYS = {e.name.lower() for e in Error}


class FuzzError(Exception):
    """A fuzz run that cannot start or a request the reference cannot model; the message
    says what to do."""


# ============================================================================= reference
class ChipReference:
    """The chip's answers to any byte stream (see the module documentation).

    Parameters
    ----------
    cfg : NetworkConfig
        The configuration of the bitstream.
    seed : int
        The chip's run seed (its initial weights and random streams).

    Attributes
    ----------
    engine : PacketModel
        The packet engine: sequence state, stored answer, counters.
    golden : GoldenModel
        The network: weights, θ and random streams as the chip holds them.
    epoch, presentations : int
        The ``EPOCH`` and ``PRESENTATIONS`` registers.
    images : int
        ``PRESENT`` requests executed.
    """

    def __init__(self, cfg: NetworkConfig, seed: int = 0):
        if not isinstance(cfg, NetworkConfig):
            raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
        self.cfg = cfg
        self.golden = GoldenModel(cfg, seed)
        self.engine = PacketModel(self._execute)
        self.epoch = 0
        self.presentations = 0
        self.images = 0
        self.last_result = Result(0, 0, 0, (0,) * cfg.n_classes)
        self.last_counts_e = np.zeros(cfg.n_exc, dtype=np.int64)
        self.n_rng = rng_registers(cfg.encoder_lanes)
        # WRITE_THETA refuses a value whose top byte reaches this (θ wider than 24 bits).
        self._theta_top = 1 << max(0, cfg.formats.theta_bits - 24)
        self._w_mask = (1 << cfg.formats.weight_bits) - 1
        self._dry = False
        self._changes = []
        fixed = {Reg.MAGIC, Reg.VERSION, Reg.CONFIG_ID, Reg.EPOCH, Reg.STATUS, Reg.FRAMES,
                 Reg.RETRIES, Reg.PRESENTATIONS}
        # Registers added to the map later are readable, their values unknown here.
        self._unknown_regs = {int(r) for r in Reg if r not in fixed
                              and r not in (Reg.ERRORS, Reg.RNG)}

    # ------------------------------------------------------------------ state
    @property
    def next_seq(self) -> int:
        return self.engine.next_seq

    def register(self, addr: int):
        """Register ``addr`` as the chip would read it now: an int, :class:`Unknown` for a
        mapped register this model has no value for, ``None`` if unmapped."""
        eng = self.engine
        if addr == Reg.MAGIC:
            return MAGIC
        if addr == Reg.VERSION:
            return VERSION
        if addr == Reg.CONFIG_ID:
            return self.cfg.config_id
        if addr == Reg.EPOCH:
            return self.epoch
        if addr == Reg.STATUS:
            # Nothing runs between requests: no presentation is ever left open.
            return 0
        if addr == Reg.FRAMES:
            return eng.frames
        if addr == Reg.RETRIES:
            return eng.retries
        if addr == Reg.PRESENTATIONS:
            return self.presentations & 0xFFFFFFFF
        if Reg.ERRORS < addr < Reg.ERRORS + len(eng.errors):
            return eng.errors[addr - Reg.ERRORS]
        if 0 <= addr - Reg.RNG < self.n_rng:
            return int(self.golden.rng[addr - Reg.RNG]) & 0xFFFFFFFF
        if addr in self._unknown_regs:
            return Unknown(4)
        return None

    def mapped_registers(self) -> list:
        """Every readable register address."""
        return [a for a in range(0x10000) if self.register(a) is not None]

    # ------------------------------------------------------------------ feeding
    def feed(self, data: bytes) -> list:
        """Bytes sent back to back; the answers they cause (state-changing requests are
        executed on the golden model)."""
        self.engine.receive(data)
        return self.engine.take_answers()

    def quiet(self) -> list:
        """The line falls quiet for the frame timeout; the answers that causes."""
        self.engine.quiet()
        return self.engine.take_answers()

    def try_feed(self, data: bytes, *, single_frame: bool = False):
        """:meth:`feed` unless ``data`` would have a state-changing request executed.

        Parameters
        ----------
        data : bytes
        single_frame : bool
            Also refuse ``data`` unless it completes at most one frame, with its last byte
            (what a UART can take without losing bytes).

        Returns
        -------
        list of Answer or None
            The answers; ``None`` (and nothing changed) if ``data`` is refused.
        """
        eng = self.engine
        snap = eng.snapshot()
        self._dry, self._changes = True, []
        try:
            ends = eng.receive(data)
        finally:
            self._dry = False
        if self._changes or (single_frame and any(e != len(data) - 1 for e in ends)):
            eng.restore(snap)
            return None
        return eng.take_answers()

    # ------------------------------------------------------------------ the command unit
    def _execute(self, type_, seq, payload):
        kind, value = self._dispatch(Type(type_), bytes(payload))
        if kind == "nak":
            return value, b""
        if kind == "ack":
            return None, value
        if self._dry:
            self._changes.append((Type(type_), seq))
            return None, b""
        return None, value()

    def _dispatch(self, t, p):
        """``("ack", body)``, ``("nak", code)`` or ``("change", action)`` for request ``t``
        with payload ``p``, checked in the order of ``hdl/chip.py``'s dispatch. The core is
        never busy and no AER presentation is open between the requests of a fuzz run."""
        cfg, g = self.cfg, self.golden
        n, n_in, n_c = cfg.n_exc, cfg.n_input, cfg.n_classes
        if t == Type.IDENTIFY:
            return "ack", IdBlock(MAGIC, VERSION, cfg.config_id, n, cfg.lanes, cfg.pipelines,
                                  cfg.encoder_lanes, self.epoch).pack()
        if t == Type.READ_REG:
            value = self.register(struct.unpack_from("<H", p)[0])
            if value is None:
                return "nak", Error.ADDRESS
            return "ack", value if isinstance(value, Unknown) else struct.pack("<I", value)
        if t == Type.WRITE_REG:
            addr, value = struct.unpack("<HI", p)
            if addr == Reg.EPOCH:
                return "change", lambda: self._set_epoch(value)
            k = addr - Reg.RNG
            if not 0 <= k < self.n_rng:
                return "nak", Error.ADDRESS
            if value == 0:
                return "nak", Error.ARGUMENT
            return "change", lambda: self._set_rng(k, value)
        if t == Type.PRESENT:
            flags, label = p[0], p[1]
            if flags >= 8 or flags & Phase.TEACHER and label >= n_c:
                return "nak", Error.ARGUMENT
            return "change", lambda: self._present(flags, label, p[2:])
        if t == Type.PRESENT_RUNS:
            flags, label = p[0], p[1]
            if flags >= 8 or flags & Phase.TEACHER and label >= n_c:
                return "nak", Error.ARGUMENT
            try:
                pixels = decode_runs(p[2:], n_in)
            except ProtocolError:
                return "nak", Error.ARGUMENT
            return "change", lambda: self._present(flags, label, pixels)
        if t == Type.AER_BEGIN:
            flags, label, intensity = p[0], p[1], p[2]
            if flags >= 8 or flags & Phase.TEACHER and label >= n_c \
                    or intensity > cfg.intensity_max:
                return "nak", Error.ARGUMENT
            return "change", lambda: self._unmodelled("AER_BEGIN")
        if t == Type.AER:
            return "nak", Error.STATE
        if t == Type.RESULT:
            return "ack", self.last_result.pack()
        if t == Type.SCALE:
            if p[0] >= 8:
                return "nak", Error.ARGUMENT
            return "change", lambda: self._scale(p[0])
        if t in (Type.READ_ROW, Type.WRITE_ROW):
            proj, row = struct.unpack_from("<BH", p)
            if proj > 1 or row >= (n_in if proj == 0 else n):
                return "nak", Error.ADDRESS
            w = g.w_in if proj == 0 else g.w_ec
            if t == Type.WRITE_ROW:
                if len(p) != 3 + w.shape[1]:
                    return "nak", Error.LENGTH
                return "change", lambda: self._write_row(w, row, p[3:])
            return "ack", (w[row] & 0xFF).astype(np.uint8).tobytes()
        if t == Type.READ_THETA:
            first, count = struct.unpack("<HH", p)
            if count == 0:
                return "nak", Error.ARGUMENT
            if count > 255 or first + count > n:
                return "nak", Error.ADDRESS
            return "ack", g.theta[first:first + count].astype("<u4").tobytes()
        if t == Type.WRITE_THETA:
            first = struct.unpack_from("<H", p)[0]
            count = (len(p) - 2) // 4
            if first + count > n:
                return "nak", Error.ADDRESS
            if any(p[5 + 4 * i] >= self._theta_top for i in range(count)):
                return "nak", Error.ARGUMENT
            return "change", lambda: self._write_theta(first, p[2:])
        if t == Type.READ_COUNTS:
            pop, first, count = struct.unpack("<BHH", p)
            if count == 0:
                return "nak", Error.ARGUMENT
            if pop > 1 or count > 255 or first + count > (n if pop == 0 else n_c):
                return "nak", Error.ADDRESS
            counts = self.last_counts_e if pop == 0 else np.array(self.last_result.counts_c)
            return "ack", (counts[first:first + count] & 0xFFFF).astype("<u2").tobytes()
        if t == Type.LOAD_PROGRAM:
            if p[0] + (len(p) - 1) // 2 > PROGRAM_DEPTH:
                return "nak", Error.ADDRESS
            return "change", lambda: self._unmodelled("LOAD_PROGRAM")
        return "nak", Error.TYPE

    # The actions of state-changing requests, for valid traffic.
    def _set_epoch(self, value):
        self.epoch = value
        return b""

    def _set_rng(self, k, value):
        self.golden.rng[k] = value
        return b""

    def _present(self, flags, label, pixels):
        phase = _PHASE_OF.get(flags)
        if phase is None:
            raise FuzzError(f"the reference presents only the golden model's phases "
                            f"(flags {sorted(_PHASE_OF)}), not flags {flags}")
        res = self.golden.present(np.frombuffer(pixels, dtype=np.uint8),
                                  label if flags & Phase.TEACHER else -1, phase)
        self.presentations += res.presentations
        self.images += 1
        self.last_counts_e = np.array(res.counts_e, dtype=np.int64)
        self.last_result = Result(res.presentations & 0xFF, res.intensity,
                                  int(res.counts_e.sum()) & 0xFFFF,
                                  tuple(int(c) & 0xFFFF for c in res.counts_c))
        return self.last_result.pack()

    def _scale(self, flags):
        if flags & Phase.LEARN_IN:
            self.golden._scale("in")
        if flags & Phase.LEARN_EC:
            self.golden._scale("ec")
        return b""

    def _write_row(self, w, row, codes):
        w[row] = np.frombuffer(codes, dtype=np.uint8) & self._w_mask
        return b""

    def _write_theta(self, first, data):
        values = np.frombuffer(data, dtype="<u4")
        self.golden.theta[first:first + len(values)] = values
        return b""

    @staticmethod
    def _unmodelled(what):
        raise FuzzError(f"the reference does not model an executed {what} (an AER "
                        f"presentation or a new sequencer program); send it only as a shot")


# ============================================================================= shots
@dataclass
class Shot:
    """One fuzz shot: its ``kind``, its bytes and the ``answers`` the reference predicts
    for them (those that wait for a quiet line come with the batch's end)."""

    kind: str
    data: bytes
    answers: list


def _check_weights(weights) -> dict:
    weights = dict(SHOT_KINDS if weights is None else weights)
    unknown = set(weights) - set(SHOT_KINDS)
    if unknown:
        raise ValueError(f"unknown shot kinds {sorted(unknown)}; kinds are "
                         f"{', '.join(SHOT_KINDS)}")
    if any(not w >= 0 for w in weights.values()) or not sum(weights.values()) > 0:
        raise ValueError("shot weights must be non-negative with a positive sum")
    return weights


class ShotGenerator:
    """Seeded generator of shots, each checked by a :class:`ChipReference` (see the module
    documentation).

    Parameters
    ----------
    reference : ChipReference
        Predicts each shot's answers and refuses state-changing ones; it advances with
        every shot returned.
    seed : int
        Seed of the draws: the same seed and the same reference state give the same shots.
    weights : dict, optional
        Weights of :data:`SHOT_KINDS` (missing kinds weigh 0); default :data:`SHOT_KINDS`.
    single_frame : bool
        Shots complete at most one frame, with their last byte (a UART).
    attempts : int
        Draws of one kind before falling back to a ``read`` shot.

    Attributes
    ----------
    rejected : int
        Draws thrown away because they would have changed the board's state (or, with
        ``single_frame``, held bytes after a frame).
    """

    def __init__(self, reference: ChipReference, seed: int = 0, *, weights: dict | None = None,
                 single_frame: bool = False, attempts: int = 20):
        self.ref = reference
        self.rng = random.Random(seed)
        weights = _check_weights(weights)
        self.kinds = [k for k in SHOT_KINDS if weights.get(k, 0) > 0]
        self._cum = list(np.cumsum([weights[k] for k in self.kinds]))
        self._tmpl_types = list(_TEMPLATE_TYPES)
        self._tmpl_cum = list(np.cumsum(list(_TEMPLATE_TYPES.values())))
        self.single_frame = single_frame
        self.attempts = attempts
        self.rejected = 0
        self._forced = collections.deque()
        mapped = set(reference.mapped_registers())
        self._mapped = sorted(mapped)
        self._unmapped = [a for a in range(0x10000) if a not in mapped]

    def force(self, kind: str):
        """Make the next shot one of ``kind`` (e.g. a retry after a valid request)."""
        if kind not in SHOT_KINDS:
            raise ValueError(f"unknown shot kind {kind!r}")
        self._forced.append(kind)

    def next(self) -> Shot:
        """The next shot; the reference has taken it."""
        kind = self._forced.popleft() if self._forced else \
            self.rng.choices(self.kinds, cum_weights=self._cum)[0]
        build = getattr(self, f"_k_{kind}")
        for _ in range(self.attempts):
            data = build()
            if data is None:            # impossible now (no request executed yet)
                break
            answers = self.ref.try_feed(data, single_frame=self.single_frame)
            if answers is not None:
                return Shot(kind, data, answers)
            self.rejected += 1
        kind, data = "read", self._k_read()
        answers = self.ref.try_feed(data, single_frame=self.single_frame)
        if answers is None:             # a read-only request is never refused
            raise AssertionError(f"the reference refused a read-only request {data.hex()}")
        return Shot(kind, data, answers)

    # ------------------------------------------------------------------ pieces
    def _byte(self, exclude=()):
        while True:
            b = self.rng.randrange(256)
            if b not in exclude:
                return b

    def _seq(self):
        """The next SEQ mostly (a damaged frame that survives must then be refused by the
        classifier, not by the sequence check), any SEQ sometimes."""
        return self.ref.next_seq if self.rng.random() < 0.8 else self.rng.randrange(256)

    def _valid_payload(self, t) -> bytes:
        """A payload of request ``t`` with every field in range."""
        r, cfg = self.rng, self.ref.cfg
        n, n_c = cfg.n_exc, cfg.n_classes
        if t in (Type.IDENTIFY, Type.RESULT):
            return b""
        if t == Type.READ_REG:
            return struct.pack("<H", r.choice(self._mapped))
        if t == Type.WRITE_REG:
            if r.random() < 0.5:
                return struct.pack("<HI", Reg.EPOCH, r.getrandbits(32))
            return struct.pack("<HI", Reg.RNG + r.randrange(self.ref.n_rng),
                               r.randrange(1, 1 << 32))
        if t == Type.PRESENT:
            return bytes([r.choice(sorted(_PHASE_OF)), r.randrange(n_c)]) + r.randbytes(784)
        if t == Type.PRESENT_RUNS:
            return bytes([r.choice(sorted(_PHASE_OF)), r.randrange(n_c)]) + \
                encode_runs(self._sparse_image())
        if t == Type.AER_BEGIN:
            return bytes([r.choice(sorted(_PHASE_OF)), r.randrange(n_c),
                          r.randrange(cfg.intensity_max + 1)])
        if t == Type.AER:
            words = sorted(r.sample(range(cfg.n_input), r.randrange(0, 6))) + [AER_STEP_END]
            return np.array(words, dtype="<u2").tobytes()
        if t == Type.SCALE:
            return bytes([r.randrange(8)])
        if t in (Type.READ_ROW, Type.WRITE_ROW):
            proj = r.randrange(2)
            rows, cols = (cfg.n_input, n) if proj == 0 else (n, n_c)
            head = struct.pack("<BH", proj, r.randrange(rows))
            return head + (r.randbytes(cols) if t == Type.WRITE_ROW else b"")
        if t == Type.READ_THETA:
            count = r.randrange(1, min(n, 8) + 1)
            return struct.pack("<HH", r.randrange(n - count + 1), count)
        if t == Type.WRITE_THETA:
            count = r.randrange(1, min(n, 6) + 1)
            values = [r.randrange(1 << cfg.formats.theta_bits) for _ in range(count)]
            return struct.pack(f"<H{count}I", r.randrange(n - count + 1), *values)
        if t == Type.READ_COUNTS:
            pop = r.randrange(2)
            size = n if pop == 0 else n_c
            count = r.randrange(1, min(size, 8) + 1)
            return struct.pack("<BHH", pop, r.randrange(size - count + 1), count)
        if t == Type.LOAD_PROGRAM:
            count = r.randrange(1, 5)
            addr = r.randrange(PROGRAM_DEPTH - count + 1)
            return struct.pack(f"<B{count}H", addr, *(r.randrange(1 << 16)
                                                      for _ in range(count)))
        raise AssertionError(t)

    def _template(self, seq=None) -> bytes:
        """A valid request frame of a random type, state-changing ones included."""
        t = self.rng.choices(self._tmpl_types, cum_weights=self._tmpl_cum)[0]
        return encode(t, self._seq() if seq is None else seq, self._valid_payload(t))

    # ------------------------------------------------------------------ kinds
    def _k_garbage(self):
        r = self.rng
        data = bytearray(r.randbytes(r.randrange(1, 25)))
        if r.random() < 0.75:
            # Mostly plain garbage; a SYNC inside starts a frame of whatever follows.
            data = bytearray(b if b != SYNC else self._byte((SYNC,)) for b in data)
        return bytes(data)

    def _k_truncated(self):
        frame = self._template()
        return frame[:self.rng.randrange(1, len(frame))]

    def _k_bad_crc(self):
        frame = bytearray(self._template())
        crc = (frame[-2] | frame[-1] << 8) ^ self.rng.randrange(1, 1 << 16)
        frame[-2:] = struct.pack("<H", crc)
        return bytes(frame)

    def _k_bad_type(self):
        r = self.rng
        t = self._byte(set(int(k) for k in COMMANDS))
        return encode(t, self._seq(), r.randbytes(r.randrange(0, 13)))

    def _k_bad_length(self):
        r = self.rng
        t = r.choice(list(COMMANDS))
        rule = COMMANDS[t]
        while True:
            if isinstance(rule, int):
                length = r.randrange(0, min(rule + 9, 41))
            else:
                minimum, multiple = rule
                length = r.randrange(0, minimum) if multiple == 1 or r.random() < 0.4 \
                    else minimum + multiple * r.randrange(0, 5) + r.randrange(1, multiple)
            if not length_ok(t, length):
                return encode(t, self._seq(), r.randbytes(length))

    def _k_bad_sequence(self):
        eng = self.ref.engine
        if not eng.have_last:
            return None
        t = self.rng.choices(self._tmpl_types, cum_weights=self._tmpl_cum)[0]
        if t == Type.IDENTIFY:
            t = Type.READ_REG
        seq = self._byte({eng.next_seq, eng.last_seq})
        return encode(t, seq, self._valid_payload(t))

    def _k_oversize(self):
        r = self.rng
        t = r.choice(list(COMMANDS)) if r.random() < 0.8 else r.randrange(256)
        head = bytes([SYNC, int(t), self._seq()]) + struct.pack("<H", r.randrange(
            MAX_PAYLOAD + 1, 1 << 16))
        return head + r.randbytes(r.randrange(0, 49))

    def _k_bit_flip(self):
        frame = bytearray(self._template())
        for _ in range(self.rng.randrange(1, 4)):
            frame[self.rng.randrange(len(frame))] ^= 1 << self.rng.randrange(8)
        return bytes(frame)

    def _k_byte_insert(self):
        frame = bytearray(self._template())
        for _ in range(self.rng.randrange(1, 3)):
            frame.insert(self.rng.randrange(len(frame) + 1), self.rng.randrange(256))
        return bytes(frame)

    def _k_byte_delete(self):
        frame = bytearray(self._template())
        for _ in range(self.rng.randrange(1, 3)):
            del frame[self.rng.randrange(len(frame))]
        return bytes(frame)

    def _sparse_image(self) -> bytes:
        """A random image with a few dozen non-zero pixels, some of them side by side."""
        r = self.rng
        n = self.ref.cfg.n_input
        px = bytearray(n)
        for _ in range(r.randrange(0, 40)):
            at = r.randrange(n)
            for k in range(at, min(at + r.randrange(1, 5), n)):
                px[k] = r.randrange(1, 256)
        return bytes(px)

    def _k_duplicate(self):
        return self.ref.engine.last_frame

    def _k_bad_argument(self):
        r, ref = self.rng, self.ref
        cfg = ref.cfg
        n, n_c, n_in = cfg.n_exc, cfg.n_classes, cfg.n_input
        theta_limit = 1 << cfg.formats.theta_bits
        choice = r.randrange(18)
        if choice == 0:
            t, p = Type.READ_REG, struct.pack("<H", r.choice(self._unmapped))
        elif choice == 1:
            addr = r.choice([a for a in (r.choice(self._unmapped), r.choice(self._mapped))
                             if a != Reg.EPOCH and not 0 <= a - Reg.RNG < ref.n_rng] or [0])
            t, p = Type.WRITE_REG, struct.pack("<HI", addr, r.getrandbits(32))
        elif choice == 2:
            t, p = Type.WRITE_REG, struct.pack("<HI", Reg.RNG + r.randrange(ref.n_rng), 0)
        elif choice == 3:
            # PRESENT is long: refused by its flags or its teacher's label.
            flags, label = ((r.randrange(8, 256), r.randrange(256)) if r.random() < 0.5 else
                            (r.choice((4, 5, 6, 7)), r.randrange(n_c, 256)))
            t, p = Type.PRESENT, bytes([flags, label]) + bytes(784)
        elif choice == 4:
            bad = r.randrange(3)
            flags = r.randrange(8, 256) if bad == 0 else r.choice((4, 5, 6, 7)) if bad == 1 \
                else r.randrange(8)
            label = r.randrange(n_c, 256) if bad == 1 else r.randrange(n_c)
            intensity = r.randrange(cfg.intensity_max + 1, 256) if bad == 2 else \
                r.randrange(cfg.intensity_max + 1)
            t, p = Type.AER_BEGIN, bytes([flags, label, intensity])
        elif choice == 5:
            t, p = Type.AER, r.randbytes(2 * r.randrange(1, 8))
        elif choice == 6:
            t, p = Type.SCALE, bytes([r.randrange(8, 256)])
        elif choice in (7, 8):
            t = Type.READ_ROW if choice == 7 else Type.WRITE_ROW
            proj = r.randrange(2, 256) if r.random() < 0.3 else r.randrange(2)
            rows = n_in if proj == 0 else n if proj == 1 else 1
            row = r.randrange(rows, 1 << 16) if proj <= 1 else r.randrange(1 << 16)
            p = struct.pack("<BH", proj, row)
            if t == Type.WRITE_ROW:
                p += r.randbytes(r.randrange(1, 12))
        elif choice == 9:
            # A row of the wrong length: refused by the command unit (LENGTH, SEQ used).
            proj = r.randrange(2)
            rows, cols = (n_in, n) if proj == 0 else (n, n_c)
            length = r.choice([k for k in range(1, cols + 8) if k != cols])
            t, p = Type.WRITE_ROW, struct.pack("<BH", proj, r.randrange(rows)) + \
                r.randbytes(length)
        elif choice == 10:
            t, p = Type.READ_THETA, struct.pack("<HH", r.randrange(1 << 16), 0)
        elif choice == 11:
            count = r.randrange(256, 1 << 16) if r.random() < 0.3 else r.randrange(1, 256)
            first = r.randrange(max(0, n - count + 1), 1 << 16) if count <= n else \
                r.randrange(1 << 16)
            t, p = Type.READ_THETA, struct.pack("<HH", first, count)
        elif choice == 12:
            count = r.randrange(1, 9)
            t, p = Type.WRITE_THETA, struct.pack(f"<H{count}I", r.randrange(n - count + 1,
                                                                            1 << 16),
                                                 *(r.randrange(theta_limit)
                                                   for _ in range(count)))
        elif choice == 13:
            count = r.randrange(1, 9)
            values = [r.randrange(theta_limit) for _ in range(count)]
            values[r.randrange(count)] = r.randrange(theta_limit, 1 << 32)
            t, p = Type.WRITE_THETA, struct.pack(f"<H{count}I", r.randrange(n - count + 1),
                                                 *values)
        elif choice == 14:
            t, p = Type.READ_COUNTS, struct.pack("<BHH", r.randrange(256), r.randrange(1 << 16),
                                                 0)
        elif choice == 15:
            pop = r.randrange(2, 256) if r.random() < 0.3 else r.randrange(2)
            size = n if pop == 0 else n_c
            count = r.randrange(1, 1 << 16)
            first = r.randrange(max(0, size - count + 1), 1 << 16) if pop <= 1 else \
                r.randrange(1 << 16)
            t, p = Type.READ_COUNTS, struct.pack("<BHH", pop, first, count)
        elif choice == 16:
            # Runs that end past the payload, or make more than 784 pixels.
            runs = bytearray(encode_runs(self._sparse_image()))
            if r.random() < 0.5 or not runs:
                runs += bytes([r.randrange(256), r.randrange(1, 256)]) + \
                    r.randbytes(r.randrange(0, 1))
            else:
                runs += bytes([255, 0]) * 4
            t, p = Type.PRESENT_RUNS, bytes([r.choice(sorted(_PHASE_OF)),
                                             r.randrange(n_c)]) + bytes(runs)
        else:
            count = r.randrange(1, 9)
            addr = r.randrange(PROGRAM_DEPTH - count + 1, 256)
            t, p = Type.LOAD_PROGRAM, struct.pack(f"<B{count}H", addr,
                                                  *(r.randrange(1 << 16) for _ in range(count)))
        return encode(t, self.ref.next_seq, p)

    def _k_random_request(self):
        r = self.rng
        t = r.choice(list(COMMANDS))
        rule = COMMANDS[t]
        if isinstance(rule, int):
            length = rule
        else:
            minimum, multiple = rule
            length = minimum + multiple * r.randrange(0, 9)
        return encode(t, self.ref.next_seq, r.randbytes(length))

    def _k_read(self):
        r, ref = self.rng, self.ref
        if r.random() < 0.1:
            # IDENTIFY is accepted with any SEQ and restarts the numbering from it.
            return encode(Type.IDENTIFY, r.randrange(256))
        t = r.choice((Type.READ_REG, Type.READ_REG, Type.READ_ROW, Type.READ_THETA,
                      Type.READ_COUNTS, Type.RESULT))
        return encode(t, ref.next_seq, self._valid_payload(t))


# ============================================================================= the runner
@dataclass
class FuzzResult:
    """What a fuzz run sent, what came back and what it found.

    Attributes
    ----------
    frames : int
        Shots sent (valid traffic not included).
    images : int
        Valid ``PRESENT`` requests of training images.
    bytes_sent, batches, quiet_waits : int
        Bytes written (valid traffic and read-back included), batches, and batches that
        waited for the frame timeout.
    kinds : dict
        Shots by kind.
    rejected : int
        Draws thrown away because they would have changed the board's state.
    answers, acks : int
        Answer frames received, of which ACKs.
    naks : dict
        NAK frames received by :class:`Error` name (retries' stored NAKs included).
    retries : int
        Answers sent from the stored reply (retries).
    hangs : int
        Batches whose answers did not all arrive within the timeout (goal 0).
    mismatches : int
        Answers that differ from the reference's (goal 0), unexpected answers included.
    mismatch_details : list of str
        The first mismatches and hangs, described.
    counters : dict
        The board's counters after the run less before it: ``frames``, ``retries``,
        ``presentations`` and the error counters by lower-case name.
    counter_mismatches : dict
        Counters whose final value differs from the reference's, or whose change differs
        from the NAKs received (name → ``{"board": …, "expected": …}``; goal empty).
    weights_identical : bool or None
        Weights and θ read back equal a golden model trained on the valid images alone
        (``None``: not read back).
    elapsed_s : float
        Wall time of the whole run: start, freshness check, shots, read-back.
    fuzz_s, frames_per_s : float
        Wall time of the shots (with the training images among them), and shots per second
        of it.
    """

    link: str = ""
    seed: int = 0
    frames: int = 0
    images: int = 0
    bytes_sent: int = 0
    batches: int = 0
    quiet_waits: int = 0
    kinds: dict = field(default_factory=dict)
    rejected: int = 0
    answers: int = 0
    acks: int = 0
    naks: dict = field(default_factory=dict)
    retries: int = 0
    hangs: int = 0
    mismatches: int = 0
    mismatch_details: list = field(default_factory=list)
    counters: dict = field(default_factory=dict)
    counter_mismatches: dict = field(default_factory=dict)
    weights_identical: bool | None = None
    elapsed_s: float = 0.0
    fuzz_s: float = 0.0
    frames_per_s: float = 0.0

    @property
    def ok(self) -> bool:
        """No hang, no mismatch, counters equal and (if read) weights identical."""
        return (self.hangs == 0 and self.mismatches == 0 and not self.counter_mismatches
                and self.weights_identical is not False)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        return out

    def summary(self) -> str:
        """The figures, several lines."""
        naks = ", ".join(f"{name} {self.naks.get(name, 0)}" for name in _ERROR_NAMES.values())
        if self.counter_mismatches:
            counters = "DIFFER: " + "; ".join(f"{k} board {v['board']} expected {v['expected']}"
                                              for k, v in self.counter_mismatches.items())
        else:
            counters = "equal to the reference and to the NAKs received"
        weights = {True: "bit-identical to the golden model trained on the valid images alone",
                   False: "DIFFER from the golden model", None: "not read back"}
        lines = [
            f"fuzz over {self.link}: {self.frames} frames (seed {self.seed}) with "
            f"{self.images} training images in {self.fuzz_s:.1f} s ({self.frames_per_s:.0f} "
            f"frames/s; {self.elapsed_s:.1f} s with the checks before and after); "
            f"{self.bytes_sent} bytes in {self.batches} batches ({self.quiet_waits} waited "
            f"for the frame timeout), {self.rejected} state-changing draws replaced",
            f"answers {self.answers}: ACK {self.acks}, retries answered from the stored reply "
            f"{self.retries}",
            f"NAKs by code: {naks}",
            f"hangs: {self.hangs} (goal 0)",
            f"mismatches: {self.mismatches} (goal 0)",
            f"error counters: {counters}",
            f"weights and θ: {weights[self.weights_identical]}",
        ]
        lines += [f"  {d}" for d in self.mismatch_details[:10]]
        return "\n".join(lines)


class _Batch:
    """Bytes to send in one write, and the answers expected (with the tag of the request
    that causes each, for read-back)."""

    def __init__(self):
        self.parts = []
        self.expected = []
        self.tags = []
        self.bytes = 0
        self.presents = 0

    def add(self, data, answers, tag=None):
        self.parts.append(data)
        self.bytes += len(data)
        self.expected += answers
        self.tags += [tag] * len(answers)

    def __len__(self):
        return len(self.parts)


def _describe(frame) -> str:
    if isinstance(frame, Answer):
        kind, seq, payload = frame.type, frame.seq, frame.payload
    else:
        kind, seq, payload = frame.type, frame.seq, frame.payload
    if kind == Type.NAK and isinstance(payload, bytes) and len(payload) == 2:
        return (f"NAK {_ERROR_NAMES.get(payload[0], payload[0])} SEQ {seq} type "
                f"{payload[1]:#04x}")
    name = {Type.ACK: "ACK", Type.NAK: "NAK"}.get(kind, f"type {kind:#04x}")
    if isinstance(payload, Unknown):
        body = f"{payload.length} bytes"
    else:
        body = payload[:12].hex() + ("…" if len(payload) > 12 else "")
    return f"{name} SEQ {seq} [{body}]"


def _matches(expected: Answer, frame) -> bool:
    if frame.type != expected.type or frame.seq != expected.seq:
        return False
    if isinstance(expected.payload, Unknown):
        return len(frame.payload) == expected.payload.length
    return frame.payload == expected.payload


def _link_kind(link) -> str:
    from .link import PcieLink, SerialLink
    inner = getattr(link, "inner", link)
    if isinstance(inner, PcieLink):
        return "pcie"
    if isinstance(inner, SerialLink):
        return "uart"
    return type(inner).__name__


def _training_images(train_images):
    if train_images is None:
        return np.zeros((0, 784), np.uint8), np.zeros(0, np.int64)
    if isinstance(train_images, (int, np.integer)) and not isinstance(train_images, bool):
        if train_images < 0:
            raise ValueError(f"train_images must be ≥ 0, not {train_images}")
        if train_images == 0:
            return _training_images(None)
        from . import datasets
        x, y = datasets.load("mnist", "train", limit=int(train_images))
        if len(x) < train_images:
            raise ValueError(f"the MNIST training split has only {len(x)} images, not "
                             f"{train_images}")
        return x.reshape(len(x), -1), np.asarray(y, dtype=np.int64)
    try:
        x, y = train_images
    except (TypeError, ValueError):
        raise TypeError("train_images must be a number of MNIST images or a pair (images, "
                        "labels)") from None
    x = np.asarray(x, dtype=np.uint8).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.int64)
    if x.shape[1] != 784 or len(x) != len(y):
        raise ValueError(f"train_images: {x.shape} images of 784 pixels and as many labels "
                         f"({y.shape}) expected")
    return x, y


class _Runner:
    def __init__(self, link, frames, *, seed, cfg, chip_seed, images, labels, finish,
                 weights, batch, timeout, present_timeout, check_fresh, readback, progress,
                 batch_bytes, batch_items):
        self.link = link
        self.frames = frames
        self.seed = seed
        self.cfg = cfg
        self.chip_seed = chip_seed
        self.images, self.labels = images, labels
        self.finish = finish
        self.weights = weights
        self.batch_mode = batch
        self.timeout = timeout
        self.present_timeout = present_timeout
        self.check_fresh = check_fresh
        self.readback = readback
        self.progress = progress
        self.batch_bytes = batch_bytes
        self.batch_items = batch_items if batch else 1
        self.parser = FrameParser()
        self.inbox = collections.deque()
        self.session_rng = random.Random(f"session-{seed}")
        self.result = FuzzResult(link=_link_kind(link), seed=seed)
        self.ref = None
        self.gen = None
        self.baseline = {}
        self.sent_naks = collections.Counter()
        self.readings = {}
        self.predicted = {}

    # ------------------------------------------------------------------ the line
    def _receive(self, count, timeout):
        frames = []
        while self.inbox and len(frames) < count:
            frames.append(self.inbox.popleft())
        deadline = time.monotonic() + timeout
        while len(frames) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            chunk = self.link.read(65536, remaining)
            if not chunk:
                break
            self.inbox.extend(self.parser.feed(chunk))
            while self.inbox and len(frames) < count:
                frames.append(self.inbox.popleft())
        return frames

    def _drain(self, silence=0.3, limit=10.0):
        """Wait until the board has said everything (a quiet line answers pending garbage
        and open frames) and drop it; the frames dropped."""
        dropped = list(self.inbox)
        self.inbox.clear()
        end = time.monotonic() + limit
        while time.monotonic() < end:
            chunk = self.link.read(65536, silence)
            if not chunk:
                break
            dropped += self.parser.feed(chunk)
        self.parser.reset()
        self.link.reset_input()
        return dropped

    def _request(self, type_, seq, payload=b""):
        """Stop and wait, outside the reference: the ACK payload of ``(type_, seq)``."""
        frame = encode(type_, seq, payload)
        for _ in range(3):
            self.link.write(frame)
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                got = self._receive(1, deadline - time.monotonic())
                if not got:
                    break
                answer = got[0]
                if answer.seq == seq and answer.type == Type.ACK:
                    return answer.payload
                if answer.seq == seq and answer.type == Type.NAK and len(answer.payload) == 2 \
                        and answer.payload[1] == type_:
                    raise FuzzError(f"the board refused {Type(type_).name} with NAK "
                                    f"{_ERROR_NAMES.get(answer.payload[0], answer.payload[0])}"
                                    f" while the fuzz run started")
            self._drain()
        raise FuzzError(f"no answer to {Type(type_).name} from {getattr(self.link, 'url', '')}"
                        f": is the board running and the link right?")

    # ------------------------------------------------------------------ session start
    def _start(self, first):
        """Identify, read the counters and (re)base the reference on them."""
        self._drain()
        seq = self.session_rng.randrange(256)
        try:
            ident = IdBlock.unpack(self._request(Type.IDENTIFY, seq))
        except ProtocolError as exc:
            raise FuzzError(f"malformed IDENTIFY answer: {exc}") from None
        if ident.magic != MAGIC or ident.version != VERSION:
            raise FuzzError(f"not a symspike board of protocol version {VERSION} (magic "
                            f"{ident.magic:#010x}, version {ident.version})")
        if self.cfg is None:
            self.cfg = preset(ident.n_exc)
        if ident.config_id != self.cfg.config_id:
            raise FuzzError(f"the board runs configuration {ident.config_id:#010x} "
                            f"(N={ident.n_exc}), the reference {self.cfg.config_id:#010x} "
                            f"(N={self.cfg.n_exc}): pass the bitstream's configuration as cfg")
        regs = [Reg.FRAMES, Reg.RETRIES, Reg.PRESENTATIONS] + [Reg.ERRORS + e for e in Error]
        values = {}
        for addr in regs:
            seq = (seq + 1) & 0xFF
            payload = struct.pack("<H", addr)
            data = self._request(Type.READ_REG, seq, payload)
            if len(data) != 4:
                raise FuzzError(f"malformed READ_REG answer ({len(data)} bytes)")
            values[int(addr)] = struct.unpack("<I", data)[0]
        if first:
            if self.check_fresh and values[Reg.PRESENTATIONS]:
                raise FuzzError(f"the board has run {values[Reg.PRESENTATIONS]} presentations "
                                f"since its reset: a fuzz run compares its weights with a "
                                f"golden model from the bitstream's seed, so it needs a "
                                f"freshly started (or reset) board")
            self.ref = ChipReference(self.cfg, self.chip_seed)
        ref, eng = self.ref, self.ref.engine
        eng.quiet()
        eng.take_answers()
        ref.epoch = ident.epoch
        ref.presentations = values[Reg.PRESENTATIONS]
        eng.frames = (values[Reg.FRAMES] + len(regs)) & 0xFFFFFFFF
        eng.retries = values[Reg.RETRIES]
        for e in Error:
            eng.errors[e] = values[Reg.ERRORS + e]
        eng.set_last(seq, Type.READ_REG, (None, struct.pack("<I", values[int(regs[-1])])),
                     encode(Type.READ_REG, seq, payload))
        self.baseline = {"frames": eng.frames, "retries": eng.retries,
                         "presentations": ref.presentations,
                         **{e.name.lower(): eng.errors[e] for e in Error}}
        self.sent_naks.clear()

    # ------------------------------------------------------------------ batches
    def _exchange(self, batch: _Batch):
        res = self.result
        if not len(batch):
            return
        data = b"".join(batch.parts)
        self.link.write(data)
        res.bytes_sent += len(data)
        res.batches += 1
        if not batch.expected:
            return
        timeout = self.timeout + self.present_timeout * batch.presents
        got = self._receive(len(batch.expected), timeout)
        for k, (want, frame) in enumerate(zip(batch.expected, got)):
            res.answers += 1
            if frame.type == Type.ACK:
                res.acks += 1
            elif frame.type == Type.NAK and len(frame.payload) == 2:
                name = _ERROR_NAMES.get(frame.payload[0], f"code {frame.payload[0]}")
                res.naks[name] = res.naks.get(name, 0) + 1
                if want.origin != "retry":
                    self.sent_naks[frame.payload[0]] += 1
            if want.origin == "retry":
                res.retries += 1
            tag = batch.tags[k]
            if tag is not None:
                self.readings[tag] = frame.payload if frame.type == Type.ACK else None
                self.predicted[tag] = want.payload
            if not _matches(want, frame):
                self._mismatch(f"batch {res.batches} answer {k + 1}/{len(batch.expected)}: "
                               f"expected {_describe(want)}, got {_describe(frame)}")
        if len(got) < len(batch.expected):
            res.hangs += 1
            missing = batch.expected[len(got):]
            self._note(f"hang in batch {res.batches}: {len(missing)} of "
                       f"{len(batch.expected)} answers missing after {timeout:g} s (first "
                       f"missing: {_describe(missing[0])}); batch bytes "
                       f"{data[:48].hex()}{'…' if len(data) > 48 else ''}")
            # The board's state is unknown now: start a new session and carry on.
            self._start(first=False)

    def _mismatch(self, text):
        self.result.mismatches += 1
        self._note(text)

    def _note(self, text):
        if len(self.result.mismatch_details) < 50:
            self.result.mismatch_details.append(text)

    def _close(self, batch: _Batch) -> _Batch:
        answers = self.ref.quiet()
        if answers:
            self.result.quiet_waits += 1
        batch.add(b"", answers)
        self._exchange(batch)
        return _Batch()

    def _valid(self, batch, type_, payload=b"", tag=None) -> _Batch:
        """Add a valid request with the next SEQ, as the host driver sends it."""
        data = encode(type_, self.ref.next_seq, payload)
        if len(batch) >= self.batch_items or batch.bytes + len(data) > self.batch_bytes:
            batch = self._close(batch)
        batch.add(data, self.ref.feed(data), tag)
        if type_ in (Type.PRESENT, Type.PRESENT_RUNS, Type.SCALE):
            batch.presents += 1
        if not self.batch_mode:
            batch = self._close(batch)
        return batch

    def _read_all(self, batch, tag_prefix) -> _Batch:
        """Valid read-back of weights, θ and every register (answers predicted too)."""
        n = self.cfg.n_exc
        for row in range(self.cfg.n_input):
            batch = self._valid(batch, Type.READ_ROW, struct.pack("<BH", 0, row),
                                (tag_prefix, "w_in", row))
        for row in range(n):
            batch = self._valid(batch, Type.READ_ROW, struct.pack("<BH", 1, row),
                                (tag_prefix, "w_ec", row))
        for first in range(0, n, 255):
            count = min(255, n - first)
            batch = self._valid(batch, Type.READ_THETA, struct.pack("<HH", first, count),
                                (tag_prefix, "theta", first))
        for addr in self.ref.mapped_registers():
            batch = self._valid(batch, Type.READ_REG, struct.pack("<H", addr),
                                (tag_prefix, "reg", addr))
        return batch

    def _arrays(self, tag_prefix):
        """The read-back arrays, or ``None`` if an answer is missing."""
        cfg, r = self.cfg, self.readings
        try:
            w_in = np.array([np.frombuffer(r[(tag_prefix, "w_in", k)], np.uint8)
                             for k in range(cfg.n_input)], dtype=np.int64)
            w_ec = np.array([np.frombuffer(r[(tag_prefix, "w_ec", k)], np.uint8)
                             for k in range(cfg.n_exc)], dtype=np.int64)
            theta = np.concatenate([np.frombuffer(r[(tag_prefix, "theta", f)], "<u4")
                                    for f in range(0, cfg.n_exc, 255)]).astype(np.int64)
        except (KeyError, TypeError, ValueError):
            return None
        if w_in.shape != (cfg.n_input, cfg.n_exc) or w_ec.shape != (cfg.n_exc, cfg.n_classes):
            return None
        return {"w_in": w_in, "w_ec": w_ec, "theta": theta}

    # ------------------------------------------------------------------ the run
    def run(self) -> FuzzResult:
        res = self.result
        start = time.monotonic()
        self._start(first=True)
        batch = _Batch()
        if self.check_fresh:
            before = res.mismatches
            batch = self._close(self._read_all(batch, "start"))
            if res.mismatches > before or res.hangs:
                raise FuzzError(f"the board's weights, θ or registers are not those of a "
                                f"freshly started bitstream of seed {self.chip_seed} "
                                f"({res.mismatches - before} differences, first: "
                                f"{res.mismatch_details[0] if res.mismatch_details else '?'}"
                                f"): start or reset the board before fuzzing, or pass the "
                                f"bitstream's chip_seed")
            res.mismatch_details.clear()
            res.answers = res.acks = res.bytes_sent = res.batches = 0
            self.sent_naks.clear()
        self.gen = ShotGenerator(self.ref, self.seed, weights=self.weights,
                                 single_frame=not self.batch_mode)
        k_img = len(self.images)
        at = [((j + 1) * self.frames) // (k_img + 1) for j in range(k_img)]
        from tqdm.auto import tqdm
        kinds = collections.Counter()
        fuzz_start = time.monotonic()
        img = 0
        def present(batch, img):
            flags = int(PHASE_FLAGS["both"])
            batch = self._valid(batch, Type.PRESENT, bytes([flags, int(self.labels[img])]) +
                                self.images[img].tobytes())
            # The retry of a presentation must come from the stored answer.
            self.gen.force("duplicate")
            return batch

        with tqdm(total=self.frames, desc="fuzz", unit="frame", dynamic_ncols=True,
                  leave=False, disable=not self.progress) as bar:
            for i in range(self.frames):
                while img < k_img and at[img] <= i:
                    batch = present(batch, img)
                    img += 1
                if len(batch) >= self.batch_items or \
                        batch.bytes + MAX_SHOT_BYTES > self.batch_bytes:
                    batch = self._close(batch)
                shot = self.gen.next()
                kinds[shot.kind] += 1
                batch.add(shot.data, shot.answers)
                if not self.batch_mode or not self.ref.engine.in_sync:
                    batch = self._close(batch)
                bar.update(1)
            for img in range(img, k_img):
                batch = present(batch, img)
            if self.finish and k_img:
                batch = self._valid(batch, Type.SCALE,
                                    bytes([int(Phase.LEARN_IN | Phase.LEARN_EC)]))
            batch = self._close(batch)
        res.fuzz_s = time.monotonic() - fuzz_start
        res.frames = self.frames
        res.images = k_img
        res.kinds = dict(kinds)
        res.rejected = self.gen.rejected
        if self.readback:
            self._finish_readback()
        # Anything that comes now answers nothing that was sent.
        for frame in self._drain():
            self._mismatch(f"unexpected answer after the run: {_describe(frame)}")
        res.elapsed_s = time.monotonic() - start
        res.frames_per_s = self.frames / res.fuzz_s if res.fuzz_s > 0 else 0.0
        return res

    def _finish_readback(self):
        res = self.result
        self._close(self._read_all(_Batch(), "end"))
        got = self._arrays("end")
        golden = GoldenModel(self.cfg, self.chip_seed)
        for image, label in zip(self.images, self.labels):
            golden.present(image, int(label), "both")
        if self.finish and len(self.images):
            golden.finish_training()
        res.weights_identical = got is not None and all(
            np.array_equal(got[name], np.asarray(getattr(golden, name), dtype=np.int64))
            for name in ("w_in", "w_ec", "theta"))
        # The counters: the board's against the reference's, and their change against
        # the NAKs this run received.
        regs = {"frames": Reg.FRAMES, "retries": Reg.RETRIES,
                "presentations": Reg.PRESENTATIONS,
                **{e.name.lower(): Reg.ERRORS + e for e in Error}}
        for name, addr in regs.items():
            tag = ("end", "reg", int(addr))
            board = _u32(self.readings.get(tag))
            want = _u32(self.predicted.get(tag))
            width = 0xFFFF if name in _ERROR_KEYS else 0xFFFFFFFF
            res.counters[name] = None if board is None else (board - self.baseline[name]) & width
            if board != want:
                res.counter_mismatches[name] = {"board": board, "expected": want}
        if res.hangs == 0:
            for e in Error:
                name = e.name.lower()
                delta = res.counters.get(name)
                sent = self.sent_naks.get(int(e), 0)
                if delta is not None and delta != sent & 0xFFFF:
                    res.counter_mismatches[f"{name} vs NAKs received"] = {"board": delta,
                                                                           "expected": sent}


def _u32(payload):
    if isinstance(payload, bytes) and len(payload) == 4:
        return struct.unpack("<I", payload)[0]
    return None


def run_fuzz(link_or_board, frames: int, *, seed: int = 0, cfg: NetworkConfig | None = None,
             chip_seed: int = 0, train_images=4, finish: bool = True,
             weights: dict | None = None, batch: bool | None = None, timeout: float = 10.0,
             present_timeout: float = 120.0, check_fresh: bool = True, readback: bool = True,
             progress: bool = False, batch_bytes: int = BATCH_BYTES,
             batch_items: int = 64) -> FuzzResult:
    """Fuzz a board through an open link (see the module documentation).

    Parameters
    ----------
    link_or_board : Link or Board
        An open link to the board, or a :class:`~symspike.host.board.Board` whose link is
        used (the board's next request then starts with ``IDENTIFY``).
    frames : int
        Shots to send.
    seed : int
        Seed of the shots (and of the run's sequence numbers).
    cfg : NetworkConfig, optional
        The bitstream's configuration; default ``preset(N)`` of the board's ``n_exc``.
    chip_seed : int
        The bitstream's run seed (initial weights and random streams).
    train_images : int or (images, labels)
        Valid training traffic: the first so many images of the MNIST training split, or
        these images, each presented once with the phase ``"both"`` at evenly spread points
        of the run and followed by a retry of it.
    finish : bool
        End the training with a scaling pass of both layers (``SCALE``), as
        ``Board.train`` does.
    weights : dict, optional
        Weights of the shot kinds (:data:`SHOT_KINDS`).
    batch : bool, optional
        Send shots back to back in batches (flow-controlled links only); default: on a
        PCIe link, not on a UART or an unknown link.
    timeout : float
        Seconds to wait for a batch's answers before counting a hang; ``present_timeout``
        more for each ``PRESENT`` or ``SCALE`` in the batch.
    check_fresh : bool
        Check first that the board is freshly started: no presentation yet, and weights, θ
        and random streams those of ``chip_seed``.
    readback : bool
        Read weights, θ and the registers back at the end and compare.
    progress : bool
        Show a progress bar.
    batch_bytes, batch_items : int
        Largest batch.

    Returns
    -------
    FuzzResult

    Raises
    ------
    FuzzError
        The board does not answer, is of another configuration, or is not fresh.
    """
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 0:
        raise ValueError(f"frames must be a non-negative int, not {frames!r}")
    link = link_or_board
    board = None
    if not isinstance(link, Link):
        board, link = link_or_board, getattr(link_or_board, "_link", None)
        if not isinstance(link, Link):
            raise TypeError(f"link_or_board must be a Link or an open Board, not "
                            f"{type(link_or_board).__name__}")
    if cfg is None and board is not None:
        cfg = getattr(board, "cfg", None)
    if batch is None:
        batch = _link_kind(link) == "pcie"
    _check_weights(weights)
    if batch_bytes < MAX_SHOT_BYTES + 100:
        raise ValueError(f"batch_bytes must be at least {MAX_SHOT_BYTES + 100}")
    images, labels = _training_images(train_images)
    runner = _Runner(link, int(frames), seed=seed, cfg=cfg, chip_seed=chip_seed,
                     images=images, labels=labels, finish=finish, weights=weights,
                     batch=bool(batch), timeout=timeout, present_timeout=present_timeout,
                     check_fresh=check_fresh, readback=readback, progress=progress,
                     batch_bytes=batch_bytes, batch_items=batch_items)
    try:
        return runner.run()
    finally:
        if board is not None:
            # The board's sequence numbers are stale now: make its next request IDENTIFY.
            board._resync = True


# ============================================================================= the bench
def bench_fuzz(frames: int = 100_000, seed: int = 0, link: str = "pcie", json_path=None, *,
               images: int | None = None, n_exc: int = 100, chip_seed: int = 0,
               divisor: int = 4, progress: bool = True) -> int:
    """``symspike bench fuzz``: fuzz the virtual board and print the figures.

    Builds (or reuses) the chip's virtual board for ``preset(n_exc)`` and ``chip_seed``,
    starts it, runs :func:`run_fuzz` over its PCIe stream or its UART, prints frames sent,
    NAKs by code, retries, hangs, mismatches, counters and the weight check, and saves them
    as JSON. The last line reads ``frames=… hangs=… mismatches=… frames_per_s=…``.

    Parameters
    ----------
    frames : int
        Shots to send.
    seed : int
        Seed of the shots.
    link : {"pcie", "uart"}
        The virtual board's link: the simulated XDMA streams (shots in batches) or the
        pseudo-terminal UART (one shot at a time, slower).
    json_path : path-like, optional
        Save the figures here.
    images : int, optional
        Training images mixed in; default one per 2000 frames, at least 4.
    n_exc, chip_seed, divisor : int
        The chip: its preset, run seed and UART divisor.
    progress : bool
        Show a progress bar.

    Returns
    -------
    int
        0 when there was no hang, no mismatch, the counters were equal and the weights
        identical; 1 otherwise.
    """
    from ..hdl.chip import ChipTop
    from ..sim.vboard import VBoardError, VirtualBoard, build_vboard
    from .experiment import machine
    from .link import open_link

    if link not in ("pcie", "uart"):
        raise ValueError(f"link must be 'pcie' or 'uart', not {link!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive int, not {frames!r}")
    cfg = preset(n_exc)
    if images is None:
        images = min(2000, max(4, frames // 2000))
    print(f"fuzz bench: {frames} frames (seed {seed}) over the virtual board's {link} link, "
          f"N={n_exc}, divisor {divisor}, {images} training images", flush=True)
    t0 = time.monotonic()
    try:
        exe = build_vboard(ChipTop(cfg, seed=chip_seed, divisor=divisor), "chip",
                           divisor=divisor)
    except VBoardError as exc:
        raise FuzzError(f"cannot build the virtual board: {exc}") from None
    build_s = time.monotonic() - t0
    print(f"virtual board ready in {build_s:.1f} s", flush=True)
    with VirtualBoard.start(exe, xdma=link == "pcie") as vboard:
        url = vboard.pcie_url if link == "pcie" else vboard.serial_url
        with open_link(url) as inner:
            res = run_fuzz(inner, frames, seed=seed, cfg=cfg, chip_seed=chip_seed,
                           train_images=images, progress=progress)
        stats = vboard.close()
    print(res.summary())
    if stats is not None:
        print(f"virtual board: {stats}")
    fig = res.to_dict()
    fig.update({"n_exc": n_exc, "chip_seed": chip_seed, "divisor": divisor,
                "build_s": build_s, "vboard": str(stats) if stats is not None else None,
                "cycles": stats.cycles if stats is not None else None,
                "machine": machine(), "date": time.strftime("%Y-%m-%d"),
                "command": f"symspike bench fuzz --frames {frames} --seed {seed} "
                           f"--link {link}"})
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fig, indent=2, sort_keys=True, default=str) + "\n")
        print(f"saved {path}")
    print(f"frames={res.frames} hangs={res.hangs} mismatches={res.mismatches} "
          f"counter_mismatches={len(res.counter_mismatches)} "
          f"weights_identical={res.weights_identical} frames_per_s={res.frames_per_s:.1f}")
    return 0 if res.ok else 1


def add_bench_arguments(parser):
    """Options of ``symspike bench fuzz`` on an ``argparse`` parser; sets ``func`` to run
    :func:`bench_fuzz` with them (returns its exit status)."""
    parser.add_argument("--frames", type=int, default=100_000,
                        help="shots to send (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shots (default 0)")
    parser.add_argument("--link", choices=("pcie", "uart"), default="pcie",
                        help="the virtual board's link (default pcie)")
    parser.add_argument("--images", type=int, default=None,
                        help="training images mixed in (default one per 2000 frames, ≥ 4)")
    parser.add_argument("--neurons", type=int, default=100, help="N of the chip (default 100)")
    parser.add_argument("--json", metavar="PATH", default="results/fuzz.json",
                        help="save the figures (default results/fuzz.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=lambda args: bench_fuzz(
        args.frames, args.seed, args.link, args.json, images=args.images,
        n_exc=args.neurons, progress=not args.quiet))
