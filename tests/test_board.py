"""Host driver (``host/board.py``) and links (``host/link.py``) against the pure-Python board
of ``fake_board.py``: the protocol's board-side semantics, training bit-identical with the
golden model in both input modes, retries without double execution, reset detection,
checkpoints, and the link URLs and devices (pseudo-terminal, FIFOs standing in for XDMA)."""

from __future__ import annotations

import errno
import json
import os
import struct
import sys
import types

import numpy as np
import pytest

from fake_board import FAULTS, BoardServer, FakeBoard, FaultyLink, MemoryLink
from symspike.firmware.config import preset
from symspike.firmware.protocol import (AER_STEP_END, MAGIC, VERSION, Error, FrameParser,
                                        IdBlock, Reg, Result, Type, encode)
from symspike.host import link as link_mod
from symspike.host.board import Board, BoardError, BoardResetError
from symspike.host.link import LinkError, PcieLink, open_link
from symspike.sim.network import CheckpointError, GoldenModel

CFG = preset(100)
SEED = 3


def connect(fake, *, cfg=CFG, link=None, **kwargs) -> Board:
    board = Board(link or MemoryLink(fake), seed=SEED, **kwargs)
    board.connect(cfg)
    return board


def as_result(pres) -> Result:
    return Result(pres.presentations, pres.intensity, int(pres.counts_e.sum()),
                  tuple(int(c) for c in pres.counts_c))


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text
    return text


# ------------------------------------------------------------------------------ fake board
def exchange(fake, *frames, quiet=True):
    """Frames (or raw bytes) to the fake board; the frames it answers."""
    for frame in frames:
        fake.receive(frame)
    if quiet:
        fake.quiet()
    return FrameParser().feed(fake.take())


def test_fake_board_sequence_and_retries():
    fake = FakeBoard(CFG)
    # After a reset any number is accepted; IDENTIFY restarts the numbering anywhere.
    (ack,) = exchange(fake, encode(Type.IDENTIFY, 200))
    assert (ack.type, ack.seq) == (Type.ACK, 200)
    (nak,) = exchange(fake, encode(Type.READ_REG, 202, struct.pack("<H", Reg.MAGIC)))
    assert (nak.type, nak.seq, nak.payload) == (Type.NAK, 202, bytes([Error.SEQUENCE,
                                                                     Type.READ_REG]))
    write = encode(Type.WRITE_REG, 201, struct.pack("<HI", Reg.EPOCH, 77))
    (first,) = exchange(fake, write)
    fake.epoch = 5      # a retry must not write again
    (again,) = exchange(fake, write)
    assert first == again and first.type == Type.ACK and fake.epoch == 5
    assert fake.retries == 1 and fake.executed.count((Type.WRITE_REG, 201)) == 1
    # Same number, other type: neither a retry nor the next number.
    (nak,) = exchange(fake, encode(Type.READ_REG, 201, struct.pack("<H", Reg.MAGIC)))
    assert nak.payload[0] == Error.SEQUENCE
    # IDENTIFY is never a retry, even with the last number.
    (ident,) = exchange(fake, encode(Type.IDENTIFY, 201))
    assert len(ident.payload) == struct.calcsize(IdBlock.FORMAT)
    assert fake.executed[-1] == (Type.IDENTIFY, 201)
    # A request refused by the command unit uses up its number; its retry gets the same NAK.
    bad = encode(Type.READ_REG, 202, struct.pack("<H", 0x7F))
    (nak,) = exchange(fake, bad)
    assert nak.payload == bytes([Error.ADDRESS, Type.READ_REG])
    assert exchange(fake, bad) == [nak]
    (ok,) = exchange(fake, encode(Type.READ_REG, 203, struct.pack("<H", Reg.MAGIC)))
    assert struct.unpack("<I", ok.payload)[0] == MAGIC
    assert fake.errors[Error.ADDRESS] == 1 and fake.errors[Error.SEQUENCE] == 2


def test_fake_board_frame_checks():
    fake = FakeBoard(CFG)
    exchange(fake, encode(Type.IDENTIFY, 0))
    good = encode(Type.READ_REG, 1, struct.pack("<H", Reg.VERSION))
    damaged = bytearray(good)
    damaged[6] ^= 0x10
    (nak,) = exchange(fake, bytes(damaged))
    assert nak.payload == bytes([Error.CRC, Type.READ_REG]) and nak.seq == 1
    # Checked in the order CRC, type, length, sequence.
    unknown = bytearray(encode(0x7F, 9, b"abc"))
    (nak,) = exchange(fake, bytes(unknown))
    assert nak.payload == bytes([Error.TYPE, 0x7F])
    unknown[-1] ^= 1
    assert exchange(fake, bytes(unknown))[0].payload[0] == Error.CRC
    (nak,) = exchange(fake, encode(Type.READ_REG, 9, b"abc"))
    assert nak.payload == bytes([Error.LENGTH, Type.READ_REG])
    (nak,) = exchange(fake, encode(Type.AER, 9, b"abc"))
    assert nak.payload[0] == Error.LENGTH
    # Oversize: the rest (a good frame among it) discarded, the NAK when the line is quiet.
    assert exchange(fake, bytes([0x5A, Type.AER, 1, 0xD0, 0x07]), b"\x00" * 50 + good,
                    quiet=False) == []
    (nak,) = exchange(fake)
    assert nak.payload == bytes([Error.OVERSIZE, Type.AER])
    (ack,) = exchange(fake, good)
    assert ack.type == Type.ACK and ack.seq == 1
    # Truncated: half a frame, then silence.
    (nak,) = exchange(fake, encode(Type.READ_REG, 2, struct.pack("<H", 0))[:4])
    assert nak.payload == bytes([Error.TRUNCATED, Type.READ_REG]) and nak.seq == 2
    # Garbage: one NAK when the line falls quiet, after the frame that followed it.
    answers = exchange(fake, b"\x01\x02\x5a\x00\xff", encode(Type.READ_REG, 2,
                                                              struct.pack("<H", 0)))
    assert [a.type for a in answers] in ([Type.ACK, Type.NAK], [Type.NAK, Type.NAK])
    assert answers[-1].payload == bytes([Error.GARBAGE, 0])
    assert fake.errors[Error.TRUNCATED] >= 1 and fake.errors[Error.GARBAGE] == 1
    assert fake.errors[Error.OVERSIZE] == 1 and fake.errors[Error.CRC] == 2


def test_fake_board_aer_rules():
    fake = FakeBoard(CFG.replace(t_present=2.0))    # four steps
    seq = iter(range(256))
    exchange(fake, encode(Type.IDENTIFY, next(seq)))

    def ask(type_, payload=b""):
        (answer,) = exchange(fake, encode(type_, next(seq), payload))
        return answer.payload[0] if answer.type == Type.NAK else answer.payload

    def words(*w):
        return np.array(w, dtype="<u2").tobytes()

    end = AER_STEP_END
    assert ask(Type.AER, words(1, end)) == Error.STATE
    assert ask(Type.AER_BEGIN, bytes([7, 10, 2])) == Error.ARGUMENT      # teacher label
    assert ask(Type.AER_BEGIN, bytes([8, 0, 2])) == Error.ARGUMENT       # flags
    assert ask(Type.AER_BEGIN, bytes([0, 0, CFG.intensity_max + 1])) == Error.ARGUMENT
    assert ask(Type.AER_BEGIN, bytes([7, 3, 2])) == b""
    assert ask(Type.READ_REG, struct.pack("<H", Reg.STATUS)) == struct.pack("<I", 3)
    assert ask(Type.AER_BEGIN, bytes([7, 3, 2])) == Error.STATE
    assert ask(Type.PRESENT, bytes([0, 0]) + bytes(784)) == Error.STATE
    assert ask(Type.READ_ROW, struct.pack("<BH", 0, 0)) == Error.STATE
    assert ask(Type.AER, words(784, end)) == Error.ARGUMENT            # not an input
    assert ask(Type.AER, words(5, 5, end)) == Error.ARGUMENT           # not ascending
    assert ask(Type.AER, words(5, end, 3, end)) == b""                 # two steps
    assert ask(Type.RESULT) == Error.STATE                               # two steps left
    assert ask(Type.AER, words(end, end, 7)) == Error.ARGUMENT         # past the last step
    assert ask(Type.AER, words(9, end, end)) == b""
    assert ask(Type.READ_REG, struct.pack("<H", Reg.STATUS)) == struct.pack("<I", 0)
    res = Result.unpack(ask(Type.RESULT))
    assert (res.presentations, res.intensity) == (1, 2)
    assert ask(Type.AER, words(end)) == Error.STATE


# ------------------------------------------------------------------------------ identity
def test_identify_and_configure():
    fake = FakeBoard(CFG, SEED)
    board = connect(fake)
    ident = board.identify()
    assert (ident.magic, ident.config_id, ident.n_exc, ident.lanes) == \
        (MAGIC, CFG.config_id, 100, CFG.lanes)
    assert ident.epoch == fake.epoch != 0 and board.cfg == CFG
    # Without a configuration the board's preset is found from its config_id.
    assert connect(FakeBoard(CFG), cfg=None).cfg == CFG
    assert connect(FakeBoard(preset(100, lanes=16, pipelines=4, encoder_lanes=4)),
                   cfg=None).cfg.lanes == 16

    other = preset(100, lanes=4)
    with pytest.raises(BoardError, match="wrong bitstream") as err:
        connect(FakeBoard(other))
    text = one_line(err)
    assert f"{other.config_id:#010x}" in text and f"{CFG.config_id:#010x}" in text
    assert "lanes 4 ≠ 8" in text
    with pytest.raises(BoardError, match="wrong bitstream"):
        board.configure(other)
    assert board.cfg == CFG

    fake.id_block = lambda: type(ident)(0x1234, 1, 0, 0, 0, 0, 0, 0)
    with pytest.raises(BoardError, match="not a symspike board"):
        connect(fake)


def test_weights_and_theta_round_trip():
    fake = FakeBoard(CFG, SEED)
    board = connect(fake)
    w = board.read_weights()
    assert np.array_equal(w["w_in"], fake.model.w_in)
    assert np.array_equal(w["w_ec"], fake.model.w_ec)
    rng = np.random.default_rng(0)
    w_in = rng.integers(0, 256, (784, 100))
    w_ec = rng.integers(0, 256, (100, 10))
    theta = rng.integers(0, 1 << 30, 100)
    board.write_weights(w_in, w_ec)
    board.write_theta(theta)
    back = board.read_weights()
    assert np.array_equal(back["w_in"], w_in) and np.array_equal(back["w_ec"], w_ec)
    assert np.array_equal(board.read_theta(), theta)
    assert np.array_equal(fake.model.w_in, w_in) and np.array_equal(fake.model.theta, theta)
    board.write_weights(w_ec=np.zeros((100, 10), dtype=np.int64))
    assert fake.model.w_ec.sum() == 0 and np.array_equal(fake.model.w_in, w_in)
    with pytest.raises(ValueError, match="shape"):
        board.write_weights(w_in=w_in[:10])
    with pytest.raises(ValueError, match="0..255"):
        board.write_weights(w_ec=w_ec + 1)
    with pytest.raises(ValueError, match="theta"):
        board.write_theta(-theta)


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize("mode", ["pixels", "aer"])
def test_train_and_infer_match_golden(mnist_small, mode):
    """20 training images and 10 test images: every result, the weights and θ equal the
    golden model's, in both input modes (AER: the host applies the re-presentation rule)."""
    x, y, xt, _ = mnist_small
    fake = FakeBoard(CFG, SEED)
    board = connect(fake)
    results = board.train(x[:20], y[:20], mode=mode, progress=False)
    pred = board.infer(xt[:10], mode=mode, progress=False, details=True)

    ref = GoldenModel(CFG, SEED)
    want = [as_result(ref.present(x[k], int(y[k]), "both")) for k in range(20)]
    ref.finish_training()
    w_ref = (ref.w_in.copy(), ref.w_ec.copy(), ref.theta.copy())
    ref_out = ref.infer(xt[:10])

    assert results == want
    assert sum(r.presentations for r in results) > 20, "no re-presentation: weak test"
    assert np.array_equal(pred["pred"], ref_out["pred"])
    assert np.array_equal(pred["counts_c"], ref_out["counts_c"])
    w = board.read_weights()
    assert np.array_equal(w["w_in"], w_ref[0]) and np.array_equal(w["w_ec"], w_ref[1])
    assert np.array_equal(board.read_theta(), w_ref[2])
    assert board.images_seen == 20
    assert fake.retries == 0 and sum(fake.errors) == 0
    assert np.array_equal(board.read_counts("c"), pred["counts_c"][-1])
    assert board.read_counts("e").sum() == pred["e_total"][-1]


@pytest.mark.parametrize("mode", ["pixels", "aer"])
def test_layer_phases_match_golden(mnist_small, mode):
    """Layer-by-layer training. (One run keeps one input mode: an AER presentation leaves the
    chip's encoder lanes where they are, so a mixed run departs from the golden model.)"""
    x, y = mnist_small[0], mnist_small[1]
    fake = FakeBoard(CFG, SEED)
    board = connect(fake)
    ref = GoldenModel(CFG, SEED)
    for phase in ("hidden", "output"):
        got = board.train(x[:3], y[:3], phase=phase, mode=mode, progress=False, finish=False)
        assert got == [as_result(ref.present(x[k], int(y[k]), phase)) for k in range(3)]
    assert np.array_equal(board.read_weights()["w_in"], ref.w_in)
    assert np.array_equal(board.read_theta(), ref.theta)
    with pytest.raises(ValueError, match="phase"):
        board.train(x[:1], y[:1], phase="test")
    with pytest.raises(ValueError, match="label"):
        board.present(x[0], 10, "both")
    with pytest.raises(ValueError, match="mode"):
        board.train(x[:1], y[:1], mode="spikes")


# ------------------------------------------------------------------------------ link faults
@pytest.mark.parametrize("direction", ["h2c", "c2h"])
@pytest.mark.parametrize("kind", FAULTS)
def test_present_survives_fault(mnist_small, direction, kind):
    """A damaged PRESENT or a damaged answer to it: the host sends the same frame again and
    the image is learned exactly once."""
    x, y = mnist_small[0], mnist_small[1]
    fake = FakeBoard(CFG, SEED)
    link = MemoryLink(fake, seed=2 * FAULTS.index(kind) + (direction == "c2h"))
    board = connect(fake, link=link)
    board.epoch_interval = 1e9      # no EPOCH read between: the next frame is the PRESENT
    link.inject(direction, kind)
    got = board.present(x[0], int(y[0]), "both")
    ref = GoldenModel(CFG, SEED)
    assert got == as_result(ref.present(x[0], int(y[0]), "both"))
    assert link.applied[(direction, kind)] == 1
    assert [t for t, _ in fake.executed].count(Type.PRESENT_RUNS) == 1
    assert fake.presentations == got.presentations
    assert np.array_equal(fake.model.w_in, ref.w_in) and np.array_equal(fake.model.theta,
                                                                        ref.theta)
    if (direction, kind) in (("c2h", "lose"), ("h2c", "dup")):
        assert fake.retries == 1        # answered from the stored reply


@pytest.mark.parametrize("mode", ["pixels", "aer"])
def test_training_through_random_faults(mnist_small, mode):
    x, y = mnist_small[0], mnist_small[1]
    fake = FakeBoard(CFG, SEED)
    link = MemoryLink(fake, error_rate=0.15, seed=11)
    board = connect(fake, link=link, retries=10)
    board.epoch_interval = 0
    got = board.train(x[:5], y[:5], mode=mode, progress=False)
    ref = GoldenModel(CFG, SEED)
    assert got == [as_result(ref.present(x[k], int(y[k]), "both")) for k in range(5)]
    ref.finish_training()
    w = board.read_weights()
    assert np.array_equal(w["w_in"], ref.w_in) and np.array_equal(w["w_ec"], ref.w_ec)
    assert np.array_equal(board.read_theta(), ref.theta)
    assert board.stats["retransmissions"] > 10 and fake.retries > 0
    assert sum(link.applied.values()) > 20


@pytest.mark.parametrize("direction", ["h2c", "c2h"])
def test_dead_link_gives_up(direction):
    fake = FakeBoard(CFG)
    with pytest.raises(BoardError, match="IDENTIFY failed .* after 3 attempts") as err:
        connect(fake, link=FaultyLink(fake, direction), retries=2)
    assert "check the cable" in one_line(err)


def test_refused_requests_and_resync():
    fake = FakeBoard(CFG, SEED)
    board = connect(fake)
    with pytest.raises(BoardError, match="NAK ADDRESS") as err:
        board.read_reg(0x7F)
    one_line(err)
    assert board.read_reg(Reg.MAGIC) == MAGIC        # after a fresh IDENTIFY
    assert board.stats["resyncs"] == 1
    with pytest.raises(BoardError, match="NAK ADDRESS"):
        board.write_reg(Reg.FRAMES, 1)
    with pytest.raises(BoardError, match="NAK STATE"):
        board._request(Type.AER, np.array([1, AER_STEP_END], "<u2").tobytes())
    with pytest.raises(BoardError, match="NAK TYPE"):
        board._request(Type.LOAD_PROGRAM, bytes(3))
    assert board.read_reg(Reg.MAGIC) == MAGIC
    # Host and board out of step (another program used the board): renumbered and sent again.
    board._seq = (board._seq + 7) & 0xFF
    assert board.read_reg(Reg.VERSION) == VERSION
    counters = board.counters()
    assert counters["errors"]["address"] == 2 and counters["errors"]["sequence"] == 1
    assert counters["errors"]["state"] == 1 and counters["errors"]["type"] == 1


# ------------------------------------------------------------------------------ resets
def test_reset_detection(mnist_small):
    x, y = mnist_small[0], mnist_small[1]
    fake = FakeBoard(CFG, SEED)
    board = connect(fake)
    board.epoch_interval = 0
    board.present(x[0], int(y[0]), "both")
    fake.power_on()
    with pytest.raises(BoardResetError, match="was reset") as err:
        board.present(x[1], int(y[1]), "both")
    assert "resume" in one_line(err)
    with pytest.raises(BoardResetError):
        board.identify()
    with pytest.raises(BoardResetError):
        board.read_weights()


def test_reset_during_a_request_is_detected(mnist_small):
    """The board resets while a PRESENT is in flight and its answer is lost: the host's
    retransmission runs on the reset board, and the EPOCH check after it notices."""
    x, y = mnist_small[0], mnist_small[1]

    class ResetOnPresent(MemoryLink):
        done = False

        def write(self, data):
            if not self.done and data[1] in (Type.PRESENT, Type.PRESENT_RUNS):
                self.done = True
                self.board.receive(data)
                self.board.power_on()
                return
            super().write(data)

    fake = FakeBoard(CFG, SEED)
    board = connect(fake, link=ResetOnPresent(fake))
    board.epoch_interval = 1e9
    with pytest.raises(BoardResetError):
        board.present(x[0], int(y[0]), "both")


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_and_resume(mnist_small, tmp_path):
    x, y = mnist_small[0], mnist_small[1]
    fake = FakeBoard(CFG, SEED)
    board = connect(fake)
    board.train(x[:3], y[:3], mode="aer", progress=False, finish=False)
    path = tmp_path / "board.npz"
    board.checkpoint(path, extra={"note": "three"})
    assert path.is_file() and not list(tmp_path.glob("*.tmp"))
    saved = {"w_in": fake.model.w_in.copy(), "w_ec": fake.model.w_ec.copy(),
             "theta": fake.model.theta.copy()}
    lanes = board.encoder.lanes.copy()
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        assert meta["kind"] == "board" and meta["images_seen"] == 3
        assert meta["config"] == CFG.to_dict() and meta["extra"] == {"note": "three"}
        assert int(data["epoch"]) == fake.epoch

    fake.power_on()
    assert not np.array_equal(fake.model.theta, saved["theta"])
    board.epoch_interval = 0
    with pytest.raises(BoardResetError):
        board.present(x[3], int(y[3]), "both")
    board.encoder = None
    board.images_seen = 0
    meta = board.resume(path)
    assert meta["extra"] == {"note": "three"}
    for key, value in saved.items():
        assert np.array_equal(getattr(fake.model, key), value)
    assert board.images_seen == 3 and np.array_equal(board.encoder.lanes, lanes)
    assert fake.epoch != 0
    board.present(x[3], int(y[3]), "both")      # the session goes on

    # A golden model's checkpoint loads too, its encoder lanes included.
    ref = GoldenModel(CFG, SEED)
    ref.present(x[0], int(y[0]), "both")
    ref.save(tmp_path / "golden.npz")
    board.resume(tmp_path / "golden.npz")
    assert np.array_equal(fake.model.w_in, ref.w_in)
    assert np.array_equal(board.encoder.lanes, ref.rng[:1])

    other = connect(FakeBoard(preset(100, lanes=4)), cfg=preset(100, lanes=4))
    with pytest.raises(BoardError, match="made for configuration"):
        other.resume(path)
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        board.resume(tmp_path / "bad.npz")


# ------------------------------------------------------------------------------ URLs
@pytest.mark.parametrize("url,match", [
    ("/dev/ttyUSB1", "starts with"),
    ("usb:///dev/ttyUSB1", "unknown scheme"),
    ("serial://", "no serial device"),
    ("serial:///dev/ttyUSB1?baud=fast", "baud must be an integer"),
    ("serial:///dev/ttyUSB1?baud=0", "baud must be ≥ 1"),
    ("serial:///dev/ttyUSB1?parity=E", "unknown option"),
    ("serial:///dev/ttyUSB1?baud=1&baud=2", "given twice"),
    ("pcie://", "no XDMA device"),
    ("pcie:///dev/xdma0?chanel=1", "unknown option"),
    ("sim://?neurons=100", "unknown option"),
])
def test_bad_urls(url, match):
    with pytest.raises(LinkError, match=match) as err:
        Board.open(url)
    assert "bad link URL" in one_line(err)


def test_missing_devices_and_permissions(tmp_path, monkeypatch):
    with pytest.raises(LinkError, match="no serial device at") as err:
        open_link(f"serial://{tmp_path}/ttyUSB9")
    assert f"{tmp_path}/ttyUSB9" in one_line(err) and "plugged in" in str(err.value)
    with pytest.raises(LinkError, match="no XDMA card-to-host device at") as err:
        open_link(f"pcie://{tmp_path}/xdma0")
    assert f"{tmp_path}/xdma0_c2h_0" in one_line(err) and "xdma driver" in str(err.value)

    import serial

    def denied(*args, **kwargs):
        raise serial.SerialException(errno.EACCES, "could not open port: [Errno 13]")

    monkeypatch.setattr(serial, "Serial", denied)
    with pytest.raises(LinkError, match="permission denied on /dev/ttyUSB1") as err:
        open_link("serial:///dev/ttyUSB1")
    one_line(err)

    def no_access(path, flags, *args):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(link_mod.os, "open", no_access)
    with pytest.raises(LinkError, match="permission denied on .*xdma0_c2h_0") as err:
        open_link(f"pcie://{tmp_path}/xdma0")
    one_line(err)


def test_sim_url_without_virtual_board(monkeypatch):
    monkeypatch.setitem(sys.modules, "symspike.sim.vboard", None)
    with pytest.raises(LinkError, match=r"symspike\.sim\.vboard") as err:
        Board.open("sim://")
    one_line(err)


# ------------------------------------------------------------------------------ real links
@pytest.fixture
def pty_board():
    """A fake board behind a pseudo-terminal: ``(fake, serial URL)``."""
    master, slave = os.openpty()
    fake = FakeBoard(CFG, SEED)
    with BoardServer(fake, master, master) as server:
        yield fake, f"serial://{os.ttyname(slave)}?baud=3000000"
    os.close(slave)
    os.close(master)
    assert server.error is None


def test_serial_link(pty_board, mnist_small):
    fake, url = pty_board
    x, y = mnist_small[0], mnist_small[1]
    with Board.open(url, cfg=CFG, seed=SEED) as board:
        got = board.present(x[0], int(y[0]), "both")
        assert board.read_theta().shape == (100,)
        link = board._link
    ref = GoldenModel(CFG, SEED)
    assert got == as_result(ref.present(x[0], int(y[0]), "both"))
    assert link._port is None       # closed with the board


def test_sim_url_starts_the_virtual_board(pty_board, monkeypatch):
    fake, url = pty_board
    calls = []

    class FakeVirtualBoard:
        def __init__(self):
            self.url = url
            self.closed = False

        @classmethod
        def start(cls, design, **kwargs):
            calls.append((design, kwargs))
            board = cls()
            calls.append(board)
            return board

        def close(self):
            self.closed = True

    module = types.ModuleType("symspike.sim.vboard")
    module.VirtualBoard = FakeVirtualBoard
    monkeypatch.setitem(sys.modules, "symspike.sim.vboard", module)
    with Board.open("sim:///opt/vboard-chip?divisor=8&stats=0.5", cfg=CFG) as board:
        assert board.identify().config_id == CFG.config_id
    (design, kwargs), vboard = calls
    assert design == "/opt/vboard-chip" and kwargs == {"divisor": 8, "stats": 0.5}
    assert vboard.closed

    built = []

    class FakeChip:
        def __init__(self, cfg, *, seed, divisor):
            built.append((cfg, seed, divisor))

    chip = types.ModuleType("symspike.hdl.chip")
    chip.ChipTop = FakeChip
    monkeypatch.setitem(sys.modules, "symspike.hdl.chip", chip)
    calls.clear()
    with Board.open("sim://?seed=4", cfg=CFG):
        pass
    assert built == [(CFG, 4, link_mod.SIM_DIVISOR)]
    assert isinstance(calls[0][0], FakeChip) and calls[0][1]["name"] == "chip"


def test_pcie_link_on_fifos(tmp_path, mnist_small):
    """FIFOs stand in for the XDMA stream devices and a plain file for the user BAR."""
    x, y = mnist_small[0], mnist_small[1]
    base = tmp_path / "xdma0"
    h2c, c2h = f"{base}_h2c_0", f"{base}_c2h_0"
    os.mkfifo(h2c)
    os.mkfifo(c2h)
    with open(f"{base}_user", "wb") as fh:
        fh.write(bytes(4096))
    rfd = os.open(h2c, os.O_RDONLY | os.O_NONBLOCK)

    def open_c2h():
        try:
            fd = os.open(c2h, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:    # no reader yet
                return None
            raise
        os.set_blocking(fd, True)
        return fd

    fake = FakeBoard(CFG, SEED)
    server = BoardServer(fake, rfd, open_wfd=open_c2h)
    with server:
        with Board.open(f"pcie://{base}", cfg=CFG, seed=SEED) as board:
            assert isinstance(board._link, PcieLink)
            got = board.present(x[0], int(y[0]), "both")
            assert np.array_equal(board.read_weights()["w_ec"], fake.model.w_ec)
            regs = board._link.registers
            regs.write(Reg.EPOCH, 0xDEADBEEF)
            assert regs.read(Reg.EPOCH) == 0xDEADBEEF
            assert board._link.read_reg(Reg.EPOCH) == 0xDEADBEEF
    with open(f"{base}_user", "rb") as fh:
        assert fh.read()[4 * Reg.EPOCH:4 * Reg.EPOCH + 4] == struct.pack("<I", 0xDEADBEEF)
    os.close(rfd)
    if server.wfd is not None:
        os.close(server.wfd)
    assert server.error is None
    ref = GoldenModel(CFG, SEED)
    assert got == as_result(ref.present(x[0], int(y[0]), "both"))

    os.remove(f"{base}_user")
    rfd = os.open(h2c, os.O_RDONLY | os.O_NONBLOCK)
    link = PcieLink(str(base))
    assert link.registers is None
    with pytest.raises(LinkError, match="no user BAR"):
        link.read_reg(0)
    link.close()
    link.close()
    os.close(rfd)
