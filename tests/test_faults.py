"""Faults injected on the virtual board (the chip's Verilog in Verilator), during online
training through the host driver: the board reset in the middle of an image, the serial link
pulled in the middle of a frame, and bytes flipped on the wire both ways. Each run ends with
every image trained and nothing lost: weights, θ and random streams bit-identical to the
golden model trained on the same images without interruption.

The faults come from the virtual board itself (``VirtualBoard.reset``/``unplug`` and the
``flip`` option, ``sim/vboard.py``); the recovery is the host's (``host/board.py``: retries,
reopening the link, ``EPOCH`` checks; ``host/training.py``: checkpoints and recovery from
resets). The same logic against the pure-Python board, faster and with more fault kinds, is
in ``test_training.py`` and ``test_board.py``.
"""

from __future__ import annotations


import numpy as np
import pytest

from conftest import CHIP_CFG_N, CHIP_SEED
from symspike.firmware.config import preset
from symspike.firmware.protocol import Type
from symspike.host.board import Board
from symspike.host.link import Link, open_link
from symspike.host.training import BoardTraining
from symspike.sim.network import GoldenModel

# The chip of the conftest's ``chip_exe``.
CFG = preset(CHIP_CFG_N)
SEED = CHIP_SEED
IMAGES = 8


@pytest.fixture(scope="module")
def data(mnist_small):
    x, y = mnist_small[0][:IMAGES], mnist_small[1][:IMAGES]
    golden = GoldenModel(CFG, SEED)
    for k in range(IMAGES):
        golden.present(x[k], int(y[k]), "both")
    golden.finish_training()
    return x, y, golden


class Tap(Link):
    """A link that calls ``hook(data, inner)`` instead of writing each request that starts an
    image (``PRESENT``), so that a test can act in the middle of one."""

    def __init__(self, inner, hook):
        self.inner, self.hook, self.url = inner, hook, inner.url
        self.images = 0

    def write(self, data):
        if data[1] in (Type.PRESENT, Type.PRESENT_RUNS):
            self.images += 1
            if self.hook(self.images, data, self.inner):
                return
        self.inner.write(data)

    def read(self, n, timeout):
        return self.inner.read(n, timeout)

    def reset_input(self):
        self.inner.reset_input()

    def reopen(self, timeout):
        self.inner.reopen(timeout)

    def close(self):
        self.inner.close()


def board_on(url, hook=None, **kwargs):
    link = open_link(url)
    board = Board(Tap(link, hook or (lambda *a: False)), seed=SEED, **kwargs)
    board.connect(CFG)
    return board, link.vboard


def assert_same(board, golden):
    w = board.read_weights()
    assert np.array_equal(w["w_in"], golden.w_in)
    assert np.array_equal(w["w_ec"], golden.w_ec)
    assert np.array_equal(board.read_theta(), golden.theta)
    assert np.array_equal(board.read_rng(), golden.rng)


@pytest.mark.slow
def test_board_reset_in_the_middle_of_an_image(chip_exe, data, tmp_path):
    """The reset button is pressed while image 5's PRESENT is on its way (PCIe link). Its
    bytes either reach the chip after the reset and run there, or are cut and the request
    sent again; either way the next EPOCH check reads 0, and the run goes back to the
    checkpoint of image 3 (the chip's weights, θ and random streams written back)."""
    x, y, golden = data

    def reset_during(image, frame, inner):
        if image != 5:
            return False
        inner.write(frame[:400])
        inner.vboard.reset()
        inner.write(frame[400:])
        return True

    board, vboard = board_on(f"sim://{chip_exe}?link=pcie", reset_during, work_timeout=5.0)
    said = []
    try:
        board.epoch_interval = 0
        run = BoardTraining(board, x, y, np.arange(IMAGES), checkpoint=tmp_path / "b.npz",
                            every=3, progress=False, log=said.append)
        run.run()
        assert run.recoveries == 1 and len(said) == 1
        assert "reset detected at image" in said[0] and "checkpoint of image 3" in said[0]
        assert_same(board, golden)
    finally:
        board.close()
    assert vboard.stats.resets == 1


@pytest.mark.slow
def test_link_pulled_in_the_middle_of_a_frame(chip_exe, data, tmp_path):
    """The serial adapter is pulled with half of image 3's PRESENT sent and plugged back
    0.5 s later: the host's next write fails, it reopens the device at its stable path and
    sends the frame again; the chip answered the torn half with TRUNCATED into the void."""
    x, y, golden = data
    path = tmp_path / "ttyBOARD"

    def pull_during(image, frame, inner):
        if image != 3:
            return False
        inner.write(frame[:300])
        inner.vboard.unplug(0.5)
        inner.write(frame[300:])          # raises: the device has gone
        return True

    board, vboard = board_on(f"sim://{chip_exe}?path={path}", pull_during,
                             reconnect_timeout=10.0)
    try:
        board.train(x, y, progress=False)
        assert board.stats["reconnects"] == 1
        assert_same(board, golden)
        # The torn half, if any of it reached the chip before the pull, was answered into
        # the void; nothing else went wrong.
        errors = board.counters()["errors"]
        assert errors["truncated"] <= 1 and sum(errors.values()) == errors["truncated"]
    finally:
        board.close()
    assert vboard.stats.unplugs == 1


@pytest.mark.slow
def test_bytes_flipped_on_the_wire(chip_exe, data):
    """One byte in 2000 has a bit flipped, both ways: damaged requests are NAKed (CRC,
    LENGTH, TRUNCATED, …) and sent again, damaged answers are dropped by the host's parser
    and the request sent again, answered from the chip's stored reply."""
    x, y, golden = data
    board, vboard = board_on(f"sim://{chip_exe}?flip=0.0005&flip_seed=4", timeout=0.5,
                             work_timeout=5.0, retries=10)
    try:
        board.train(x, y, progress=False)
        assert_same(board, golden)
        stats = dict(board.stats)
        errors = board.counters()["errors"]
    finally:
        board.close()
    flips = vboard.stats.flips_to_chip + vboard.stats.flips_from_chip
    assert flips > 5 and vboard.stats.flips_to_chip > 0 and vboard.stats.flips_from_chip > 0
    assert stats["retransmissions"] > 0
    assert sum(errors.values()) > 0
