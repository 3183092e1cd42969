"""End to end: the chip (N = 100) as a virtual board, trained online through the host driver.

The chip's Verilog runs in Verilator behind a pseudo-terminal and simulated XDMA device files;
the host driver trains it on real MNIST images (the embedded subset) in both input modes over
both links, reads every weight and θ back and tests it on held-out images. Everything must
equal a golden model of the same seed trained on the same images in the same way: the result
of every presentation, both weight matrices, θ, and the test predictions image for image.
The command line's ``train --board`` is run the same way. Tests that need Verilator skip
when it is unavailable; the command line's refusals of bad input do not need it.
"""

import functools
import os
import struct
import time

import numpy as np
import pytest

from conftest import CHIP_CFG_N, CHIP_SEED
from symspike.firmware import protocol as P
from symspike.firmware.config import preset
from symspike.host.board import Board
from symspike.host.cli import main
from symspike.host.link import PcieLink, SerialLink
from symspike.sim.cosim import unavailable_reason
from symspike.sim.network import GoldenModel
from symspike.sim.vboard import VirtualBoard

needs_verilator = pytest.mark.skipif(bool(unavailable_reason("verilator")),
                                     reason=unavailable_reason("verilator") or "available")

# The chip of the conftest's ``chip_exe``.
CFG = preset(CHIP_CFG_N)
SEED = CHIP_SEED
#: Training images per (input mode, link): most where the simulation is fastest (pixels over
#: PCIe, 0.25-0.5 s an image; AER over the UART takes 0.5-1 s an image).
TRAIN = {("pixels", "pcie"): 80, ("pixels", "uart"): 20, ("aer", "uart"): 20,
         ("aer", "pcie"): 24}
#: Held-out test images inferred after training.
TEST = 6


@pytest.fixture(scope="module")
def reference(mnist_small):
    """``trained(k)``: the golden model after the first ``k`` training images, as
    ``(weights, presentation results, test evaluation)``."""
    x, y, xt, _ = mnist_small

    @functools.lru_cache(maxsize=None)
    def trained(k):
        golden = GoldenModel(CFG, SEED)
        results = [golden.present(x[i], int(y[i]), "both") for i in range(k)]
        golden.finish_training()
        weights = {"w_in": golden.w_in.copy(), "w_ec": golden.w_ec.copy(),
                   "theta": golden.theta.copy()}
        return weights, results, golden.infer(xt[:TEST])

    return trained


def sim_url(exe, link):
    return f"sim://{exe}" + ("?link=pcie" if link == "pcie" else "")


# ----------------------------------------------------------------------------- links
@needs_verilator
def test_pcie_identify_and_registers(chip_exe):
    with VirtualBoard.start(chip_exe, xdma=True) as vboard:
        assert vboard.url.startswith("pcie:///") and vboard.url.endswith("/xdma0")
        with Board.open(vboard.url, cfg=CFG, seed=SEED) as board:
            assert isinstance(board._link, PcieLink)
            ident = board.identify()
            assert (ident.magic, ident.version, ident.config_id, ident.n_exc) == \
                (P.MAGIC, P.VERSION, CFG.config_id, CFG.n_exc)
            assert board.read_reg(P.Reg.MAGIC) == P.MAGIC
            assert board.read_reg(P.Reg.CONFIG_ID) == CFG.config_id
            board.write_reg(P.Reg.EPOCH, 0x5EED1234)
            assert board.read_reg(P.Reg.EPOCH) == 0x5EED1234
            # What is written reads back: θ (several frames) and the output weights.
            rng = np.random.default_rng(5)
            theta = rng.integers(0, 1 << CFG.formats.theta_bits, CFG.n_exc)
            board.write_theta(theta)
            np.testing.assert_array_equal(board.read_theta(), theta)
            w_ec = rng.integers(0, 256, (CFG.n_exc, 10))
            board.write_weights(w_ec=w_ec)
            np.testing.assert_array_equal(board.read_weights()["w_ec"], w_ec)
            assert board.stats["retransmissions"] == 0
    stats = vboard.stats
    assert stats.bytes_to_chip == 0 and stats.dma_to_chip > 0
    # One packet per answer: the chip marks the last byte of every frame.
    assert stats.dma_packets == board.stats["requests"]


@needs_verilator
def test_each_link_gets_its_own_answers(chip_exe):
    """Requests alternate between the UART and the DMA stream of one chip: each answer comes
    back on the link its request came from, and nothing on the other."""
    with VirtualBoard.start(chip_exe, xdma=True) as vboard:
        links = {"uart": SerialLink(vboard.port), "pcie": PcieLink(vboard.pcie_url[7:])}
        parsers = {name: P.FrameParser() for name in links}
        try:
            def exchange(name, type_, seq, payload=b""):
                links[name].write(P.encode(type_, seq, payload))
                frames, deadline = [], time.monotonic() + 20
                while not frames and time.monotonic() < deadline:
                    frames += parsers[name].feed(links[name].read(4096, 1.0))
                assert len(frames) == 1, frames
                frame = frames[0]
                assert (frame.type, frame.seq) == (P.Type.ACK, seq), frame
                return frame.payload

            ident = P.IdBlock.unpack(exchange("uart", P.Type.IDENTIFY, 0))
            assert ident.config_id == CFG.config_id
            reg = lambda a: struct.pack("<H", a)
            assert exchange("pcie", P.Type.READ_REG, 1, reg(P.Reg.MAGIC)) == \
                struct.pack("<I", P.MAGIC)
            exchange("uart", P.Type.WRITE_REG, 2, struct.pack("<HI", P.Reg.EPOCH, 77))
            assert exchange("pcie", P.Type.READ_REG, 3, reg(P.Reg.EPOCH)) == \
                struct.pack("<I", 77)
            golden = GoldenModel(CFG, SEED)
            row = exchange("uart", P.Type.READ_ROW, 4, struct.pack("<BH", 1, 5))
            assert list(row) == list(golden.w_ec[5])
            row = exchange("pcie", P.Type.READ_ROW, 5, struct.pack("<BH", 0, 300))
            assert list(row) == list(golden.w_in[300])
            for link in links.values():
                assert link.read(64, 0.3) == b""
        finally:
            for link in links.values():
                link.close()
    assert vboard.stats.bytes_to_chip > 0 and vboard.stats.dma_to_chip > 0


# ----------------------------------------------------------------------------- training
@needs_verilator
@pytest.mark.slow
@pytest.mark.parametrize("mode, link", list(TRAIN))
def test_online_training_is_bit_exact(chip_exe, reference, mnist_small, mode, link):
    x, y, xt, _ = mnist_small
    k = TRAIN[mode, link]
    start = time.monotonic()
    with Board.open(sim_url(chip_exe, link), cfg=CFG, seed=SEED) as board:
        sim = board._link
        assert isinstance(sim.inner, PcieLink if link == "pcie" else SerialLink)
        got = board.train(x[:k], y[:k], mode=mode, progress=False)
        weights = board.read_weights()
        theta = board.read_theta()
        test = board.infer(xt[:TEST], mode=mode, progress=False, details=True)
        requests = dict(board.stats)
    wall = time.monotonic() - start
    want_w, want_results, want_test = reference(k)

    assert len(got) == k
    for i, (res, want) in enumerate(zip(got, want_results)):
        assert (res.presentations, res.intensity, res.e_total, res.counts_c) == \
            (want.presentations, want.intensity, int(want.counts_e.sum()),
             tuple(int(c) for c in want.counts_c)), f"training image {i}"
    np.testing.assert_array_equal(weights["w_in"], want_w["w_in"])
    np.testing.assert_array_equal(weights["w_ec"], want_w["w_ec"])
    np.testing.assert_array_equal(theta, want_w["theta"])
    # Learning happened: the weights left their initial draw.
    assert not np.array_equal(weights["w_in"], GoldenModel(CFG, SEED).w_in)
    np.testing.assert_array_equal(test["pred"], want_test["pred"])
    np.testing.assert_array_equal(test["counts_c"], want_test["counts_c"])
    assert requests["retransmissions"] == 0 and requests["resyncs"] == 0
    stats = sim.vboard.stats
    print(f"\n{mode} over {link}: {k} training + {TEST} test images in {wall:.1f} s; "
          f"virtual board {stats}")


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def embedded(monkeypatch):
    monkeypatch.delenv("SYMSPIKE_DATA", raising=False)


@needs_verilator
@pytest.mark.slow
def test_cli_trains_on_the_virtual_board(chip_exe, embedded, capsys, tmp_path):
    # chip_exe: the sim:// board built for --neurons 100 --seed 0 is this very build.
    code = main(["train", "--board", "sim://?link=pcie", "--neurons", "100", "--train", "10",
                 "--test", "4", "--quiet", "--checkpoint", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "Traceback" not in err
    assert "bit-identical to the golden model" in out
    assert "same prediction on 4/4 images" in out
    assert "M cycles/s" in out
    print("\n" + out)
    # The checkpoint restores onto a board and tests as the golden model with its weights.
    assert (tmp_path / "board.npz").is_file()
    code = main(["infer", str(tmp_path), "--board", f"sim://{chip_exe}?link=pcie", "--test", "3",
                 "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "identical to the checkpoint" in out
    assert "same prediction on 3/3 images" in out


@needs_verilator
def test_cli_refuses_a_board_of_another_configuration(chip_exe, embedded, capsys):
    assert main(["train", "--board", f"sim://{chip_exe}", "--neurons", "20", "--train", "1",
                 "--test", "0", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "wrong bitstream" in err and "N=100" in err and "N=20" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, code, text", [
    (["--board", "serial:///nonexistent/ttyUSB9"], 1, "no serial device at /nonexistent"),
    (["--board", "pcie:///nonexistent/xdma0"], 1, "no XDMA card-to-host device"),
    (["--board", "usb://x"], 2, "unknown scheme"),
    (["--board", "sim://?link=usb"], 1, "link must be one of uart, pcie"),
    (["--board", "sim://?seed=3", "--seed", "1"], 2, "contradicts --seed 1"),
    (["--board", "sim://", "--model", "float"], 2, "--model float"),
    (["--board", "sim://", "--data", "/nonexistent/folder"], 2, "/nonexistent/folder"),
])
def test_cli_board_errors_are_one_line(argv, code, text, embedded, capsys):
    assert main(["train", "--train", "2", "--test", "0", "--quiet", *argv]) == code
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_cli_board_that_never_answers_times_out(embedded, capsys):
    master, slave = os.openpty()
    try:
        code = main(["train", "--board", f"serial://{os.ttyname(slave)}", "--train", "2",
                     "--test", "0", "--quiet"])
    finally:
        os.close(slave)
        os.close(master)
    err = capsys.readouterr().err
    assert code == 1 and "IDENTIFY failed" in err and "no answer" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
