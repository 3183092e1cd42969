"""Protocol fuzzing (``host/fuzz.py``): the shot generator and its reference, the runner
against a model board (answers tampered with or lost must be caught), and the CI run: ten
thousand random and mutated frames against the chip's virtual board, mixed with training
images, with every answer predicted, the counters equal and the weights bit-identical to the
golden model of the valid images alone."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from conftest import CHIP_CFG_N, CHIP_SEED
from fake_board import FakeBoard
from symspike.firmware.config import preset
from symspike.firmware.packet_model import PacketModel, Unknown
from symspike.firmware.protocol import Error, FrameParser, Reg, Type, encode
from symspike.host import fuzz
from symspike.host.fuzz import (SHOT_KINDS, ChipReference, FuzzError, ShotGenerator, bench_fuzz,
                                run_fuzz)
from symspike.host.link import Link, PcieLink
from symspike.sim.cosim import unavailable_reason
from symspike.sim.network import GoldenModel

# The chip of the conftest's ``chip_exe``.
CFG = preset(CHIP_CFG_N)
#: The CI run: shots, training images among them, and the shot seed.
CI_FRAMES = 10_000
CI_IMAGES = 5
CI_SEED = 2024

needs_verilator = pytest.mark.skipif(bool(unavailable_reason("verilator")),
                                     reason=unavailable_reason("verilator") or "available")


def generate(seed, count, *, single_frame=False, reference=None):
    """Shots as the runner makes them without a board: ``(shots, events, reference)`` where
    ``events`` are ``(bytes, quiet_after)`` in the order a board would get them."""
    ref = reference or ChipReference(CFG, CHIP_SEED)
    gen = ShotGenerator(ref, seed, single_frame=single_frame)
    shots, events = [], []
    for _ in range(count):
        shot = gen.next()
        closes = single_frame or not ref.engine.in_sync
        if closes:
            shot.answers += ref.quiet()
        shots.append(shot)
        events.append((shot.data, closes))
    return shots, events, ref, gen


# ----------------------------------------------------------------------------- packet model
def test_packet_model_follows_the_chip_registers():
    model = PacketModel(lambda t, s, p: (None, b"ok"))
    model.receive(encode(Type.READ_REG, 7, b"\x00\x00"))
    (ack,) = model.take_answers()
    assert (ack.type, ack.seq, ack.payload, ack.origin) == (Type.ACK, 7, b"ok", "execute")
    # A frame cut before its TYPE is NAKed with the TYPE and SEQ the engine last stored.
    model.receive(b"\x5a")
    model.quiet()
    (nak,) = model.take_answers()
    assert (nak.seq, nak.payload) == (7, bytes([Error.TRUNCATED, Type.READ_REG]))
    # Oversize: everything after the header is discarded until the line is quiet.
    snap = model.snapshot()
    model.receive(bytes([0x5A, 0x33, 9, 0x01, 0x04]) + encode(Type.IDENTIFY, 1))
    assert model.take_answers() == [] and not model.in_sync
    model.quiet()
    (nak,) = model.take_answers()
    assert (nak.seq, nak.payload) == (9, bytes([Error.OVERSIZE, 0x33]))
    # A snapshot undoes everything, counters included.
    model.restore(snap)
    assert model.errors[Error.OVERSIZE] == 0 and model.in_sync and model.f_seq == 7
    # Garbage, then a frame: the frame's answer first, one GARBAGE NAK on the quiet line.
    model.receive(b"\x01\x02" + encode(Type.READ_REG, 8, b"\x00\x00"))
    model.quiet()
    answers = model.take_answers()
    assert [a.type for a in answers] == [Type.ACK, Type.NAK]
    assert (answers[1].seq, answers[1].payload) == (8, bytes([Error.GARBAGE, 0]))


# ----------------------------------------------------------------------------- generator
def test_shots_are_deterministic_per_seed():
    one, _, _, gen1 = generate(5, 2000)
    two, _, _, gen2 = generate(5, 2000)
    other, _, _, _ = generate(6, 2000)
    assert [s.data for s in one] == [s.data for s in two]
    assert [s.answers for s in one] == [s.answers for s in two]
    assert gen1.rejected == gen2.rejected
    assert [s.data for s in one] != [s.data for s in other]
    # Every kind is drawn.
    assert {s.kind for s in one} == set(SHOT_KINDS)


def test_every_nak_code_and_answer_kind_is_predicted():
    shots, _, ref, gen = generate(11, 4000)
    answers = [a for s in shots for a in s.answers]
    codes = {a.code for a in answers if a.type == Type.NAK}
    assert codes == {int(e) for e in Error}
    assert any(a.type == Type.ACK and a.origin == "execute" for a in answers)
    assert any(a.origin == "retry" and a.type == Type.ACK for a in answers)
    assert any(a.origin == "retry" and a.type == Type.NAK for a in answers)
    # Damaged frames that would still have changed the board were drawn, and replaced.
    assert gen.rejected > 0
    # The counters follow the predicted NAKs (no retry NAK counts twice).
    for e in Error:
        sent = sum(1 for a in answers if a.code == e and a.origin != "retry")
        assert ref.engine.errors[e] == sent, e.name


class _Recording(ChipReference):
    """A reference that executes nothing that changes state, but notes it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.changed = []

    def _execute(self, type_, seq, payload):
        kind, _ = self._dispatch(Type(type_), bytes(payload))
        if kind == "change":
            self.changed.append((Type(type_), seq, bytes(payload[:8]).hex()))
            return None, b""
        return super()._execute(type_, seq, payload)


@pytest.mark.parametrize("single_frame", [False, True])
def test_no_shot_changes_state(single_frame):
    shots, events, _, _ = generate(23, 4000, single_frame=single_frame)
    # Replayed byte for byte into a fresh reference: no state-changing request executes,
    # and the answers are those predicted when the shots were drawn.
    replay = _Recording(CFG, CHIP_SEED)
    for shot, (data, closes) in zip(shots, events):
        got = replay.feed(data) + (replay.quiet() if closes else [])
        assert got == shot.answers
    assert replay.changed == []
    # The test board's own command unit agrees: weights, θ, streams and EPOCH unchanged.
    fake = FakeBoard(CFG, CHIP_SEED)
    for data, closes in events:
        fake.receive(data)
        if closes:
            fake.quiet()
    fresh = GoldenModel(CFG, CHIP_SEED)
    for name in ("w_in", "w_ec", "theta", "rng"):
        np.testing.assert_array_equal(getattr(fake.model, name), getattr(fresh, name))
    assert fake.epoch == 0 and fake.aer is None and fake.presentations == 0
    if single_frame:
        # On a UART no frame may be followed by more bytes of its shot.
        for shot in shots:
            ends = PacketModel(lambda t, s, p: (None, b"")).receive(shot.data)
            assert all(e == len(shot.data) - 1 for e in ends)


def test_reference_checks_in_the_chip_order():
    ref = ChipReference(CFG, CHIP_SEED)
    ref.feed(encode(Type.IDENTIFY, 0))
    seq = iter(range(1, 256))

    def ask(type_, payload=b""):
        (answer,) = ref.feed(encode(type_, next(seq), payload))
        return answer.payload[0] if answer.type == Type.NAK else answer.payload

    # count = 0 is an ARGUMENT before any address check (hdl/chip.py).
    assert ask(Type.READ_THETA, struct.pack("<HH", 5000, 0)) == Error.ARGUMENT
    assert ask(Type.READ_COUNTS, struct.pack("<BHH", 7, 0, 0)) == Error.ARGUMENT
    assert ask(Type.READ_THETA, struct.pack("<HH", 0, 256)) == Error.ADDRESS
    assert ask(Type.AER, struct.pack("<H", 5000)) == Error.STATE
    assert ask(Type.WRITE_ROW, struct.pack("<BH", 1, 0) + bytes(9)) == Error.LENGTH
    assert ask(Type.WRITE_REG, struct.pack("<HI", Reg.RNG, 0)) == Error.ARGUMENT
    assert ask(Type.WRITE_REG, struct.pack("<HI", Reg.MAGIC, 1)) == Error.ADDRESS
    assert ask(Type.READ_REG, struct.pack("<H", Reg.ERRORS)) == Error.ADDRESS
    value = ask(Type.READ_REG, struct.pack("<H", Reg.RNG + 1))
    assert struct.unpack("<I", value)[0] == GoldenModel(CFG, CHIP_SEED).rng[1]
    assert ask(Type.READ_ROW, struct.pack("<BH", 1, 3)) == \
        GoldenModel(CFG, CHIP_SEED).w_ec[3].astype(np.uint8).tobytes()


# ----------------------------------------------------------------------------- runner
class ModelLink(Link):
    """A link to a :class:`ChipReference` standing in for the board, answering what the
    chip's model answers; ``tamper`` may rewrite an answer frame, ``swallow`` lose one."""

    url = "model://board"

    def __init__(self, cfg=CFG, *, tamper=None, swallow=None):
        self.board = ChipReference(cfg, CHIP_SEED)
        self.tamper = tamper
        self.swallow = swallow
        self.rx = bytearray()
        self.tampered = self.swallowed = 0

    def _emit(self, answers):
        for a in answers:
            payload = bytes(a.payload.length) if isinstance(a.payload, Unknown) else a.payload
            if self.swallow is not None and self.swallow(a) and not self.swallowed:
                self.swallowed += 1
                continue
            if self.tamper is not None and not self.tampered:
                changed = self.tamper(a, payload)
                if changed is not None:
                    self.tampered += 1
                    payload = changed
            self.rx += encode(a.type, a.seq, payload)

    def write(self, data):
        self._emit(self.board.feed(data))

    def read(self, n, timeout):
        if not self.rx:
            self._emit(self.board.quiet())
        chunk = bytes(self.rx[:n])
        del self.rx[:n]
        return chunk

    def reset_input(self):
        self.rx.clear()

    def close(self):
        pass


def test_runner_on_a_model_board():
    res = run_fuzz(ModelLink(), 600, seed=3, cfg=CFG, train_images=1, batch=True)
    assert res.ok, res.summary()
    assert res.frames == 600 and res.images == 1 and res.weights_identical is True
    assert res.hangs == res.mismatches == 0 and not res.counter_mismatches
    assert res.retries > 0 and sum(res.naks.values()) > 0
    assert res.counters["presentations"] >= 1 and res.counters["frames"] > 0
    assert sum(res.kinds.values()) == 600
    text = res.summary()
    assert "hangs: 0" in text and "mismatches: 0" in text and "bit-identical" in text


def test_runner_detects_a_tampered_answer():
    def garbage_to_crc(answer, payload):
        if answer.code == Error.GARBAGE:
            return bytes([Error.CRC]) + payload[1:]
        return None

    link = ModelLink(tamper=garbage_to_crc)
    res = run_fuzz(link, 300, seed=4, cfg=CFG, train_images=0, batch=True)
    assert link.tampered == 1
    assert res.mismatches == 1 and not res.ok
    assert "expected NAK GARBAGE" in res.mismatch_details[0]
    assert "got NAK CRC" in res.mismatch_details[0]


def test_runner_detects_a_wrong_expectation(monkeypatch):
    class WrongResult(ChipReference):
        def _dispatch(self, t, p):
            kind, value = super()._dispatch(t, p)
            if t == Type.RESULT:
                value = bytes([value[0] ^ 1]) + value[1:]
            return kind, value

    link = ModelLink()          # the board keeps the right model
    monkeypatch.setattr(fuzz, "ChipReference", WrongResult)
    res = run_fuzz(link, 600, seed=5, cfg=CFG, train_images=0, batch=True)
    assert res.mismatches > 0 and not res.ok
    assert any("expected ACK" in d for d in res.mismatch_details)


def test_runner_detects_a_lost_answer_and_resynchronises():
    link = ModelLink(swallow=lambda a: a.code == Error.TRUNCATED)
    res = run_fuzz(link, 300, seed=6, cfg=CFG, train_images=1, batch=False, timeout=0.5)
    assert link.swallowed == 1
    assert res.hangs == 1 and not res.ok
    assert res.mismatch_details[0].startswith("hang in batch")
    # After the new session everything fits again.
    assert res.mismatches == 0 and not res.counter_mismatches
    assert res.weights_identical is True


def test_runner_refuses_a_board_that_is_not_fresh():
    link = ModelLink()
    link.board.golden.w_ec[0, 0] ^= 1
    with pytest.raises(FuzzError, match="freshly started"):
        run_fuzz(link, 10, cfg=CFG, train_images=0)


def test_runner_arguments():
    with pytest.raises(ValueError, match="frames"):
        run_fuzz(ModelLink(), -1)
    with pytest.raises(TypeError, match="Link or an open Board"):
        run_fuzz(object(), 10)
    with pytest.raises(ValueError, match="unknown shot kinds"):
        run_fuzz(ModelLink(), 10, cfg=CFG, weights={"nonsense": 1})
    with pytest.raises(ValueError, match="link must be"):
        bench_fuzz(10, link="usb")


# ----------------------------------------------------------------------------- virtual board
@needs_verilator
def test_fuzz_the_virtual_board(chip_exe):
    """The CI run over PCIe: ten thousand shots and a few training images."""
    from symspike.sim.vboard import VirtualBoard

    with VirtualBoard.start(chip_exe, xdma=True) as vboard:
        link = PcieLink(vboard.pcie_url[len("pcie://"):])
        try:
            res = run_fuzz(link, CI_FRAMES, seed=CI_SEED, cfg=CFG, chip_seed=CHIP_SEED,
                           train_images=CI_IMAGES)
        finally:
            link.close()
        stats = vboard.close()
    print("\n" + res.summary() + f"\nvirtual board: {stats}")
    assert res.frames == CI_FRAMES and res.images == CI_IMAGES
    assert res.hangs == 0, res.mismatch_details
    assert res.mismatches == 0, res.mismatch_details
    assert not res.counter_mismatches
    assert res.weights_identical is True
    assert set(res.naks) == {e.name for e in Error}
    assert res.retries > 0 and res.counters["retries"] == res.retries
    assert res.counters["presentations"] >= CI_IMAGES
    assert res.ok


class _TamperingLink(Link):
    """Passes bytes through, but rewrites the code of the first NAK ``TYPE`` it reads."""

    def __init__(self, inner):
        self.inner = inner
        self.url = inner.url
        self.parser = FrameParser()
        self.done = False

    def write(self, data):
        self.inner.write(data)

    def read(self, n, timeout):
        data = self.inner.read(n, timeout)
        if self.done or not data:
            return data
        out = b""
        for frame in self.parser.feed(data):
            payload = frame.payload
            if not self.done and frame.type == Type.NAK and payload[0] == Error.TYPE:
                payload, self.done = bytes([Error.LENGTH]) + payload[1:], True
            out += encode(frame.type, frame.seq, payload)
        return out

    def reset_input(self):
        self.inner.reset_input()
        self.parser.reset()

    def close(self):
        self.inner.close()


@needs_verilator
def test_a_tampered_chip_answer_is_caught(chip_exe):
    from symspike.sim.vboard import VirtualBoard

    with VirtualBoard.start(chip_exe, xdma=True) as vboard:
        link = _TamperingLink(PcieLink(vboard.pcie_url[len("pcie://"):]))
        try:
            res = run_fuzz(link, 400, seed=9, cfg=CFG, train_images=0, batch=True,
                           check_fresh=False, readback=False)
        finally:
            link.close()
    assert link.done
    assert res.mismatches == 1 and res.hangs == 0 and not res.ok
    assert "expected NAK TYPE" in res.mismatch_details[0]


@needs_verilator
@pytest.mark.slow
def test_fuzz_the_virtual_board_over_the_uart(chip_exe):
    """One shot at a time: a UART loses bytes that arrive while the chip is busy."""
    from symspike.host.link import SerialLink
    from symspike.sim.vboard import VirtualBoard

    with VirtualBoard.start(chip_exe) as vboard:
        link = SerialLink(vboard.port)
        try:
            res = run_fuzz(link, 400, seed=CI_SEED, cfg=CFG, train_images=1, check_fresh=False)
        finally:
            link.close()
    print("\n" + res.summary())
    assert res.link == "uart" and res.batches >= 400
    assert res.ok, res.summary()
