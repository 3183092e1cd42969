"""Online training runs that lose nothing (``host/training.py``), on the pure-Python board of
``fake_board.py``: board resets in the middle of an image and between images are recovered
from the last checkpoint, a run stopped by the host continues with ``resume_from``, and a
crash while a checkpoint is written leaves the previous one whole. Every run ends with
weights, θ and random streams bit-identical to the golden model trained without interruption.
The same on the chip's virtual board is in ``test_faults.py``."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fake_board import BoardServer, FakeBoard, MemoryLink
from symspike.firmware.config import preset
from symspike.firmware.protocol import Reg, Type, rng_registers
from symspike.host import board as board_mod
from symspike.host.board import Board, BoardError
from symspike.host.cli import main
from symspike.host.link import LinkError
from symspike.host.training import BoardTraining, RunMismatch
from symspike.sim.network import GoldenModel, Model

CFG = preset(100)
SEED = 5
IMAGES = 12


def connect(fake, link=None) -> Board:
    board = Board(link or MemoryLink(fake), seed=SEED, reconnect_timeout=0)
    board.connect(CFG)
    return board


def golden_after(x, y, order):
    golden = GoldenModel(CFG, SEED)
    for k in order:
        golden.present(x[k], int(y[k]), "both")
    golden.finish_training()
    return golden


def assert_same(board, golden, mode="pixels"):
    w = board.read_weights()
    assert np.array_equal(w["w_in"], golden.w_in)
    assert np.array_equal(w["w_ec"], golden.w_ec)
    assert np.array_equal(board.read_theta(), golden.theta)
    lanes = CFG.encoder_lanes
    rng = board.read_rng()
    # In AER mode the host's encoder draws the input spikes; the board's stays idle.
    encoder = board.encoder.lanes if mode == "aer" else rng[:lanes]
    assert np.array_equal(encoder, golden.rng[:lanes])
    assert np.array_equal(rng[lanes:], golden.rng[lanes:])


class ResetLink(MemoryLink):
    """Resets the board at the ``at``-th PRESENT: before it (between images) or after the
    board took it, its answer lost (in the middle of an image)."""

    def __init__(self, board, at, middle):
        super().__init__(board)
        self.at, self.middle = set(at), middle
        self.presents = 0

    def write(self, data):
        if data[1] in (Type.PRESENT, Type.PRESENT_RUNS):
            self.presents += 1
            if self.presents in self.at:
                if self.middle:
                    self.board.receive(data)
                    self.board.take()
                    self.board.power_on()
                    return
                self.board.power_on()
        super().write(data)


@pytest.fixture(scope="module")
def data(mnist_small):
    x, y = mnist_small[0][:IMAGES], mnist_small[1][:IMAGES]
    order = np.arange(IMAGES)
    return x, y, order, golden_after(x, y, order)


def test_uninterrupted_run_checkpoints_and_matches(data, tmp_path):
    x, y, order, golden = data
    fake = FakeBoard(CFG, SEED)
    board = connect(fake)
    path = tmp_path / "board.npz"
    run = BoardTraining(board, x, y, order, checkpoint=path, every=5, progress=False)
    assert run.run() == IMAGES and run.recoveries == 0
    assert_same(board, golden)
    meta, state = Model.read_checkpoint(path)
    assert meta["extra"]["position"] == IMAGES and meta["extra"]["finished"]
    assert np.array_equal(state["rng"], golden.rng)


@pytest.mark.parametrize("middle", [False, True], ids=["between-images", "mid-image"])
def test_board_resets_are_recovered(data, tmp_path, middle):
    x, y, order, golden = data
    fake = FakeBoard(CFG, SEED)
    link = ResetLink(fake, at=(4, 11), middle=middle)
    board = connect(fake, link)
    # Check EPOCH before every image, so that a reset between images is seen at once.
    board.epoch_interval = 0
    said = []
    run = BoardTraining(board, x, y, order, checkpoint=tmp_path / "board.npz", every=3,
                        progress=False, log=said.append)
    run.run()
    assert run.recoveries == 2 and len(said) == 2 and "reset" in said[0]
    # Checkpoints every 3 images. Between images: the 4th image ran on the reset board and
    # is replayed from the checkpoint of image 3; the 11th PRESENT is image 10's (after the
    # replay), from image 9. In the middle: image 4 is lost (no replay), the 11th PRESENT is
    # image 9's, replayed from image 6 with image 8.
    assert run.replayed == 2
    assert_same(board, golden)


def test_without_checkpoint_a_reset_is_an_error(data):
    x, y, order, _ = data
    fake = FakeBoard(CFG, SEED)
    board = connect(fake, ResetLink(fake, at=(3,), middle=True))
    board.epoch_interval = 0
    run = BoardTraining(board, x, y, order, progress=False)
    with pytest.raises(BoardError, match="no checkpoint to recover from"):
        run.run()


def test_a_board_that_keeps_resetting_gives_up(data, tmp_path):
    x, y, order, _ = data
    fake = FakeBoard(CFG, SEED)
    board = connect(fake, ResetLink(fake, at=range(2, 100, 2), middle=True))
    board.epoch_interval = 0
    run = BoardTraining(board, x, y, order, checkpoint=tmp_path / "b.npz", every=4,
                        max_recoveries=3, progress=False, log=lambda _: None)
    with pytest.raises(BoardError, match=r"gave up after 3 recoveries.*--resume"):
        run.run()


class CutLink(MemoryLink):
    """The device disappears for good at the ``at``-th image (the host gives up)."""

    def __init__(self, board, at):
        super().__init__(board)
        self.at, self.presents = at, 0

    def write(self, data):
        if data[1] in (Type.PRESENT, Type.PRESENT_RUNS, Type.AER_BEGIN):
            self.presents += 1
            if self.presents == self.at:
                raise LinkError("lost the serial link /dev/ttyUSB1: device gone")
        super().write(data)


@pytest.mark.parametrize("mode", ["pixels", "aer"])
def test_resume_after_the_host_stopped(data, mnist_small, tmp_path, mode):
    x, y, order, golden = data
    path = tmp_path / "board.npz"
    identity = {"dataset": "mnist", "seed": SEED}
    fake = FakeBoard(CFG, SEED)
    board = connect(fake, CutLink(fake, at=8))
    run = BoardTraining(board, x, y, order, mode=mode, checkpoint=path, every=3,
                        identity=identity, progress=False)
    with pytest.raises(LinkError, match="device gone"):
        run.run()
    # A new host on a board that was power-cycled meanwhile.
    fresh = FakeBoard(CFG, SEED)
    fresh.model.rng[:] = 7          # nothing of the old board survives
    board = connect(fresh)
    again = BoardTraining(board, x, y, order, mode=mode, checkpoint=path, every=3,
                          identity=identity, progress=False)
    assert again.resume_from(path) == 6
    assert again.run() == IMAGES - 6
    assert_same(board, golden, mode)
    # Another run's checkpoint is refused, saying what differs.
    other = BoardTraining(board, x, y, order[::-1], mode=mode, identity=identity,
                          progress=False)
    with pytest.raises(RunMismatch, match="schedule"):
        other.resume_from(path)
    other = BoardTraining(board, x, y, order, mode=mode, identity={**identity, "seed": 1},
                          progress=False)
    with pytest.raises(RunMismatch, match="seed 5 ≠ 1"):
        other.resume_from(path)


def test_a_crash_while_writing_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    x, y, order, _ = data
    path = tmp_path / "board.npz"
    fake = FakeBoard(CFG, SEED)
    board = connect(fake)
    run = BoardTraining(board, x, y, order, checkpoint=path, every=4, progress=False)
    real = os.replace
    calls = []

    def crash(src, dst):
        calls.append(dst)
        if len(calls) == 3:        # the checkpoint of image 8
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    meta, _ = Model.read_checkpoint(path)
    assert meta["extra"]["position"] == 4


def test_rng_registers_through_the_driver():
    fake = FakeBoard(CFG, SEED)
    board = connect(fake)
    n = rng_registers(CFG.encoder_lanes)
    assert np.array_equal(board.read_rng(), GoldenModel(CFG, SEED).rng)
    board.write_rng(np.arange(1, n + 1))
    assert list(fake.model.rng) == list(range(1, n + 1))
    for bad in (np.arange(n), np.arange(1, n + 2), np.full(n, 1 << 32)):
        with pytest.raises(ValueError, match="non-zero 32-bit"):
            board.write_rng(bad)
    with pytest.raises(BoardError, match="ARGUMENT"):
        board.write_reg(Reg.RNG, 0)


def test_cli_resumes_a_board_run(monkeypatch, tmp_path, capsys):
    """``symspike train --board URL --checkpoint DIR`` stops when the link is lost for good
    and says how to continue; ``--resume DIR`` on a power-cycled board finishes the run with
    the weights of an uninterrupted one."""
    monkeypatch.delenv("SYMSPIKE_DATA", raising=False)
    argv = ["--neurons", "100", "--seed", str(SEED), "--train", "7", "--test", "0",
            "--quiet", "--checkpoint-every", "3"]
    folder = tmp_path / "run"
    real = board_mod.Board.train
    calls = []

    def dies(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise LinkError("lost the serial link: device gone")
        return real(self, *args, **kwargs)

    def serve(*args):
        master, slave = os.openpty()
        fake = FakeBoard(CFG, SEED)
        with BoardServer(fake, master, master):
            code = main(["train", "--board", f"serial://{os.ttyname(slave)}", *argv, *args])
        os.close(slave)
        os.close(master)
        return code, capsys.readouterr()

    monkeypatch.setattr(board_mod.Board, "train", dies)
    code, (out, err) = serve("--checkpoint", str(folder))
    assert code == 1 and "device gone" in err and f"--resume {folder}" in err
    assert "up to image 3" in err and "Traceback" not in err
    monkeypatch.setattr(board_mod.Board, "train", real)
    code, (out, err) = serve("--resume", str(folder))
    assert code == 0, out + err
    assert "resumed from" in out and "at image 3 of 7" in out
    assert "bit-identical to the golden model" in out and "without interruption" in out
    # A different run is refused, with what differs.
    code, (out, err) = serve("--resume", str(folder), "--train", "8")
    assert code == 2 and "belongs to another run" in err and "train 7 ≠ 8" in err
