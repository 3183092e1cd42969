"""A board in pure Python for the host tests: the board side of ``firmware/protocol.py`` on
top of the golden model, an in-memory link with fault injection, and a server that runs the
board behind file descriptors (a pseudo-terminal, FIFOs).

:class:`FakeBoard` follows the chip's packet engine and command unit (``hdl/packet.py``,
``hdl/chip.py``): a frame is buffered whole and checked — CRC, type, length, sequence — before
anything acts on it; the answer to the last executed request is stored and sent again for a
retry (same ``SEQ`` and type, not ``IDENTIFY``), without executing twice; bytes outside frames
and frames that stop half-way are answered when the line falls quiet (:meth:`FakeBoard.quiet`,
the frame timeout of the real link). The framing is the package's model of the chip's packet
engine (``symspike.firmware.packet_model``), which the fuzzer's reference uses too; the
command unit is this module's. ``PRESENT`` runs :meth:`GoldenModel.present`; an AER
presentation runs the golden kernel step by step on the received spikes, with the encoder idle
as on the chip.
"""

from __future__ import annotations

import collections
import os
import select
import struct
import threading
import time

import numpy as np

from symspike.firmware.packet_model import PacketModel
from symspike.firmware.protocol import (AER_STEP_END, MAGIC, PHASE_FLAGS, SYNC, VERSION, Error,
                                        IdBlock, Phase, ProtocolError, Reg, Result, Type, decode_runs,
                                        encode, rng_registers)
from symspike.host.link import Link
from symspike.sim.network import GoldenModel

__all__ = ["FakeBoard", "MemoryLink", "FaultyLink", "BoardServer", "FAULTS"]

#: Fault kinds of :class:`MemoryLink`, each applied to one chunk of bytes.
FAULTS = ("lose", "flip", "drop", "garbage", "truncate", "dup")
#: Flags bytes of the golden model's phases.
_PHASES = {int(flags): name for name, flags in PHASE_FLAGS.items()}


class _Refuse(Exception):
    """The command unit answers with a NAK of this code."""

    def __init__(self, code):
        super().__init__(code)
        self.code = Error(code)


class _AerRun:
    """An open AER presentation."""

    def __init__(self, flags, label, intensity, cfg):
        self.flags = flags
        self.label = label
        self.intensity = intensity
        self.steps = 0
        self.step_events = []
        self.last_addr = -1
        self.counts_e = np.zeros(cfg.n_exc, dtype=np.int64)
        self.counts_c = np.zeros(cfg.n_classes, dtype=np.int64)
        self.saved_lanes = None


class FakeBoard:
    """The board side of the protocol on a :class:`GoldenModel` (see the module docstring).

    Parameters
    ----------
    cfg : NetworkConfig
        The configuration the "bitstream" was built for (ID block, network).
    seed : int
        Run seed: initial weights and random streams, as ``GoldenModel(cfg, seed)``.

    Attributes
    ----------
    model : GoldenModel
        The network state.
    executed : list of (Type, int)
        Requests executed (not retries), with their ``SEQ``.
    """

    def __init__(self, cfg, seed: int = 0):
        self.cfg = cfg
        self.seed = seed
        self._lock = threading.RLock()
        self.power_on()

    # ------------------------------------------------------------------ state
    def power_on(self):
        """A board reset: the bitstream's weights, counters and registers cleared."""
        with self._lock:
            self.model = GoldenModel(self.cfg, self.seed)
            self.engine = PacketModel(self._command)
            self.epoch = 0
            self.presentations = 0
            self.out = bytearray()
            self.aer = None
            self.last_result = Result(0, 0, 0, (0,) * self.cfg.n_classes)
            self.last_counts_e = np.zeros(self.cfg.n_exc, dtype=np.int64)
            self.executed = []

    # The packet engine's counters, as registers.
    frames = property(lambda self: self.engine.frames)
    retries = property(lambda self: self.engine.retries)
    errors = property(lambda self: self.engine.errors)

    reset = power_on

    def id_block(self) -> IdBlock:
        c = self.cfg
        return IdBlock(MAGIC, VERSION, c.config_id, c.n_exc, c.lanes, c.pipelines,
                       c.encoder_lanes, self.epoch)

    def take(self) -> bytes:
        """Bytes the board has sent since the last call."""
        with self._lock:
            data = bytes(self.out)
            self.out.clear()
            return data

    # ------------------------------------------------------------------ receiving
    def receive(self, data: bytes):
        """Bytes from the host."""
        with self._lock:
            self.engine.receive(data)
            self._flush()

    def quiet(self):
        """The line has been quiet for the frame timeout."""
        with self._lock:
            self.engine.quiet()
            self._flush()

    def _flush(self):
        for answer in self.engine.take_answers():
            self.out += encode(answer.type, answer.seq, answer.payload)

    def _command(self, type_, seq, payload):
        """The command unit, called by the engine for a request that passed its checks."""
        self.executed.append((Type(type_), seq))
        try:
            return None, self._execute(Type(type_), payload)
        except _Refuse as refusal:
            return refusal.code, b""

    # ------------------------------------------------------------------ commands
    def _busy(self):
        return self.aer is not None

    def _registers(self):
        regs = {Reg.MAGIC: MAGIC, Reg.VERSION: VERSION, Reg.CONFIG_ID: self.cfg.config_id,
                Reg.EPOCH: self.epoch, Reg.STATUS: int(self._busy()) | int(self._busy()) << 1,
                Reg.FRAMES: self.frames, Reg.RETRIES: self.retries,
                Reg.PRESENTATIONS: self.presentations, Reg.CYCLES: 0}
        for code in Error:
            regs[Reg.ERRORS + code] = self.errors[code]
        for k in range(rng_registers(self.cfg.encoder_lanes)):
            regs[Reg.RNG + k] = int(self.model.rng[k])
        return regs

    def _phase(self, flags, label):
        if flags >= 8 or flags & Phase.TEACHER and label >= self.cfg.n_classes:
            raise _Refuse(Error.ARGUMENT)
        if flags not in _PHASES:
            # Only the golden model's four phases can be simulated here.
            raise _Refuse(Error.ARGUMENT)
        if self._busy():
            raise _Refuse(Error.STATE)
        return _PHASES[flags]

    def _execute(self, type_, p):
        cfg, model = self.cfg, self.model
        n, n_in, n_c = cfg.n_exc, cfg.n_input, cfg.n_classes
        if type_ == Type.IDENTIFY:
            return self.id_block().pack()
        if type_ == Type.READ_REG:
            addr, = struct.unpack("<H", p)
            regs = self._registers()
            if addr not in regs:
                raise _Refuse(Error.ADDRESS)
            return struct.pack("<I", regs[addr])
        if type_ == Type.WRITE_REG:
            addr, value = struct.unpack("<HI", p)
            k = addr - Reg.RNG
            if addr == Reg.EPOCH:
                self.epoch = value
            elif not 0 <= k < rng_registers(self.cfg.encoder_lanes):
                raise _Refuse(Error.ADDRESS)
            elif value == 0:
                raise _Refuse(Error.ARGUMENT)
            elif self._busy():
                raise _Refuse(Error.STATE)
            else:
                self.model.rng[k] = value
            return b""
        if type_ in (Type.PRESENT, Type.PRESENT_RUNS):
            flags, label = p[0], p[1]
            phase = self._phase(flags, label)
            body = p[2:]
            if type_ == Type.PRESENT_RUNS:
                try:
                    body = decode_runs(body, cfg.n_input)
                except ProtocolError:
                    raise _Refuse(Error.ARGUMENT) from None
            pixels = np.frombuffer(body, dtype=np.uint8)
            res = model.present(pixels, label if flags & Phase.TEACHER else -1, phase)
            self.presentations += res.presentations
            self._finish(res.counts_e, res.counts_c, res.presentations, res.intensity)
            return self.last_result.pack()
        if type_ == Type.AER_BEGIN:
            flags, label, intensity = p[0], p[1], p[2]
            self._phase(flags, label)
            if intensity > cfg.intensity_max:
                raise _Refuse(Error.ARGUMENT)
            self._aer_begin(flags, label, intensity)
            return b""
        if type_ == Type.AER:
            self._aer_events(np.frombuffer(p, dtype="<u2"))
            return b""
        if type_ == Type.RESULT:
            if self._busy():
                raise _Refuse(Error.STATE)
            return self.last_result.pack()
        if type_ == Type.SCALE:
            if p[0] >= 8:
                raise _Refuse(Error.ARGUMENT)
            if self._busy():
                raise _Refuse(Error.STATE)
            if p[0] & Phase.LEARN_IN:
                model._scale("in")
            if p[0] & Phase.LEARN_EC:
                model._scale("ec")
            return b""
        if type_ in (Type.READ_ROW, Type.WRITE_ROW):
            proj, row = struct.unpack_from("<BH", p)
            if proj > 1 or row >= (n_in if proj == 0 else n):
                raise _Refuse(Error.ADDRESS)
            w = model.w_in if proj == 0 else model.w_ec
            cols = w.shape[1]
            if type_ == Type.WRITE_ROW and len(p) != 3 + cols:
                raise _Refuse(Error.LENGTH)
            if self._busy():
                raise _Refuse(Error.STATE)
            if type_ == Type.READ_ROW:
                return w[row].astype(np.uint8).tobytes()
            codes = np.frombuffer(p[3:], dtype=np.uint8)
            if codes.max(initial=0) > model.const.w_max:
                raise _Refuse(Error.ARGUMENT)
            w[row] = codes
            return b""
        if type_ == Type.READ_THETA:
            first, count = struct.unpack("<HH", p)
            if count > 255 or first + count > n:
                raise _Refuse(Error.ADDRESS)
            if count == 0:
                raise _Refuse(Error.ARGUMENT)
            if self._busy():
                raise _Refuse(Error.STATE)
            return model.theta[first:first + count].astype("<u4").tobytes()
        if type_ == Type.WRITE_THETA:
            first, = struct.unpack_from("<H", p)
            values = np.frombuffer(p[2:], dtype="<u4")
            if first + len(values) > n:
                raise _Refuse(Error.ADDRESS)
            if values.max() > model.const.theta_max:
                raise _Refuse(Error.ARGUMENT)
            if self._busy():
                raise _Refuse(Error.STATE)
            model.theta[first:first + len(values)] = values
            return b""
        if type_ == Type.READ_COUNTS:
            pop, first, count = struct.unpack("<BHH", p)
            size = n if pop == 0 else n_c
            if pop > 1 or count > 255 or first + count > size:
                raise _Refuse(Error.ADDRESS)
            if count == 0:
                raise _Refuse(Error.ARGUMENT)
            counts = self.last_counts_e if pop == 0 else np.array(self.last_result.counts_c)
            return np.minimum(counts[first:first + count], 0xFFFF).astype("<u2").tobytes()
        # LOAD_PROGRAM: in the protocol, not in this chip.
        raise _Refuse(Error.TYPE)

    def _finish(self, counts_e, counts_c, presentations, intensity):
        self.last_counts_e = np.array(counts_e, dtype=np.int64)
        self.last_result = Result(presentations, intensity, min(int(np.sum(counts_e)), 0xFFFF),
                                  tuple(min(int(c), 0xFFFF) for c in counts_c))

    # ------------------------------------------------------------------ AER presentations
    def _aer_begin(self, flags, label, intensity):
        cfg, model = self.cfg, self.model
        run = _AerRun(flags, label, intensity, cfg)
        # The same start as one pass of GoldenModel.present's loop.
        if flags & Phase.LEARN_IN:
            model._scale("in")
        if flags & Phase.LEARN_EC:
            model._scale("ec")
        if cfg.rest == "reset":
            model.reset_state()
        # In AER mode the chip's encoder is idle: its lanes must not move.
        run.saved_lanes = model.rng[:cfg.encoder_lanes].copy()
        self.aer = run
        self.presentations += 1

    def _aer_events(self, words):
        run = self.aer
        if run is None:
            raise _Refuse(Error.STATE)
        steps_total = self.cfg.steps_present
        if np.any((words >= self.cfg.n_input) & (words != AER_STEP_END)):
            raise _Refuse(Error.ARGUMENT)
        # The whole frame is checked before any word is used.
        steps, last = run.steps, run.last_addr
        for w in words:
            if steps == steps_total:
                raise _Refuse(Error.ARGUMENT)
            if w == AER_STEP_END:
                steps += 1
                last = -1
            elif w <= last:
                raise _Refuse(Error.ARGUMENT)
            else:
                last = int(w)
        for w in words:
            if w == AER_STEP_END:
                self._aer_step(run)
            else:
                run.step_events.append(int(w))
        run.last_addr = last

    def _aer_step(self, run):
        cfg, model = self.cfg, self.model
        flags = (bool(run.flags & Phase.LEARN_IN), bool(run.flags & Phase.LEARN_EC),
                 bool(run.flags & Phase.TEACHER))
        idx = np.array(run.step_events, dtype=np.int64)
        # The kernel draws this step's input spikes from the encoder; a threshold above every
        # 16-bit draw makes each listed input spike.
        thr = np.full(idx.shape[0], 1 << 16, dtype=np.int64)
        model._run(1, idx, thr, run.label if flags[2] else -1, True, flags, run.counts_e,
                   run.counts_c)
        run.step_events = []
        run.steps += 1
        if run.steps < cfg.steps_present:
            return
        if cfg.rest == "simulate" and cfg.steps_rest:
            none = np.zeros(0, dtype=np.int64)
            model._run(cfg.steps_rest, none, none, -1, False, (flags[0], flags[1], False),
                       np.zeros_like(run.counts_e), np.zeros_like(run.counts_c))
        if flags[0]:
            model._decay_theta()
        model.rng[:cfg.encoder_lanes] = run.saved_lanes
        self._finish(run.counts_e, run.counts_c, 1, run.intensity)
        self.aer = None


class MemoryLink(Link):
    """The host end of an in-memory link to a :class:`FakeBoard`, with fault injection.

    Bytes written reach the board at once; the board's answers queue for :meth:`read`. A read
    that finds nothing lets the line fall quiet (:meth:`FakeBoard.quiet`) and, if that brings
    nothing either, returns ``b""`` at once: the timeout passes without waiting.

    Parameters
    ----------
    board : FakeBoard
    error_rate : float
        Probability that a chunk (a written frame, or the board's answers to it) suffers a
        random fault from ``kinds``.
    kinds : sequence of str
        Fault kinds for random faults (:data:`FAULTS`).
    seed : int
        Seed of the fault generator.
    """

    url = "mem://fake-board"

    def __init__(self, board: FakeBoard, *, error_rate: float = 0.0, kinds=FAULTS,
                 seed: int = 0):
        self.board = board
        self.error_rate = error_rate
        self.kinds = tuple(kinds)
        self.rng = np.random.default_rng(seed)
        self.planned = {"h2c": collections.deque(), "c2h": collections.deque()}
        self.applied = collections.Counter()
        self.closed = False
        self._rx = bytearray()

    def inject(self, direction: str, kind: str, *, after: int = 0):
        """Apply fault ``kind`` to the chunk after the next ``after`` ones in ``direction``
        (``"h2c"``: host to card, ``"c2h"``: card to host)."""
        if kind not in FAULTS:
            raise ValueError(f"kind must be one of {FAULTS}, not {kind!r}")
        self.planned[direction].append([after, kind])

    def _fault(self, direction, data):
        plan = self.planned[direction]
        kind = None
        if plan:
            if plan[0][0] == 0:
                kind = plan.popleft()[1]
            else:
                plan[0][0] -= 1
        elif self.error_rate and self.rng.random() < self.error_rate:
            kind = self.kinds[self.rng.integers(len(self.kinds))]
        if kind is None or not data:
            return data
        self.applied[(direction, kind)] += 1
        rng = self.rng
        if kind == "lose":
            return b""
        if kind == "dup":
            return data + data
        if kind == "flip":
            buf = bytearray(data)
            buf[rng.integers(len(buf))] ^= 1 << int(rng.integers(8))
            return bytes(buf)
        if kind == "drop":
            at = int(rng.integers(len(data)))
            return data[:at] + data[at + int(rng.integers(1, 4)):]
        if kind == "truncate":
            return data[:int(rng.integers(1, len(data))) if len(data) > 1 else 0]
        # garbage, with a stray SYNC among it
        junk = bytearray(rng.integers(0, 256, int(rng.integers(1, 12)), dtype=np.uint8))
        junk[int(rng.integers(len(junk)))] = SYNC
        return bytes(junk) + data

    def _collect(self):
        out = self.board.take()
        if out:
            self._rx += self._fault("c2h", out)

    def write(self, data: bytes):
        self.board.receive(self._fault("h2c", bytes(data)))
        self._collect()

    def read(self, n: int, timeout: float) -> bytes:
        if not self._rx:
            self.board.quiet()
            self._collect()
        chunk = bytes(self._rx[:n])
        del self._rx[:n]
        return chunk

    def reset_input(self):
        self._rx.clear()

    def close(self):
        self.closed = True


class FaultyLink(MemoryLink):
    """A link on which every chunk in ``direction`` is lost (a cut cable)."""

    def __init__(self, board, direction="h2c"):
        super().__init__(board)
        self.direction = direction

    def _fault(self, direction, data):
        return b"" if direction == self.direction else data


class BoardServer:
    """Runs a :class:`FakeBoard` behind file descriptors, in a thread.

    ``rfd`` delivers the host's bytes and ``wfd`` takes the answers (both the master of a
    pseudo-terminal, or two FIFOs); ``open_wfd``, if given, is called until it returns a
    descriptor (a FIFO's writer can open only once its reader has). ``quiet_s`` seconds
    without a byte count as the frame timeout.
    """

    def __init__(self, board: FakeBoard, rfd: int, wfd: int | None = None, *,
                 open_wfd=None, quiet_s: float = 0.005):
        self.board = board
        self.rfd = rfd
        self.wfd = wfd
        self.open_wfd = open_wfd
        self.quiet_s = quiet_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error = None

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def _run(self):
        try:
            pending = b""
            while not self._stop.is_set():
                if self.wfd is None and self.open_wfd is not None:
                    self.wfd = self.open_wfd()
                ready, _, _ = select.select([self.rfd], [], [], self.quiet_s)
                data = b""
                if ready:
                    try:
                        data = os.read(self.rfd, 65536)
                    except (BlockingIOError, OSError):
                        data = b""
                    if not data:
                        time.sleep(self.quiet_s)
                if data:
                    self.board.receive(data)
                else:
                    self.board.quiet()
                pending += self.board.take()
                if pending and self.wfd is not None:
                    done = os.write(self.wfd, pending)
                    pending = pending[done:]
        except Exception as exc:  # reported by the test that owns the server
            self.error = exc
