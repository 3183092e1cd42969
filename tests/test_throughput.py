"""``symspike bench throughput`` (``host/throughput.py``): the arithmetic of its figures, its
errors, and one short run on a virtual board whose every per-image cycle count is checked
against the cycle budget and whose weights against the golden model."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from symspike.boards.targets import TARGETS
from symspike.firmware import protocol as P
from symspike.firmware.config import preset
from symspike.hdl.budget import PresentationActivity, StepActivity
from symspike.host import throughput as T
from symspike.host.cli import main
from symspike.sim.aer import AerEncoder


def _step(n_in, n_e, n_c):
    empty = np.zeros(0, dtype=np.int64)
    return StepActivity(n_in, n_e, n_c, empty, empty, empty)


def test_synaptic_ops_counts_rows_columns_and_scaling():
    cfg = preset(8)
    learning = PresentationActivity(True, True, nonzero=100, queued=0,
                                    steps=[_step(3, 2, 1), _step(0, 0, 0)])
    # Scaling: 784·8 + 8·10; rows: 3·8 + 2·10; columns: 2·784 + 1·8.
    assert T.synaptic_ops(cfg, [learning]) == 784 * 8 + 80 + 24 + 20 + 2 * 784 + 8
    testing = PresentationActivity(False, False, nonzero=100, queued=0, steps=[_step(3, 2, 1)])
    assert T.synaptic_ops(cfg, [testing]) == 24 + 20
    assert T.synaptic_ops(cfg, [learning, testing]) == \
        T.synaptic_ops(cfg, [learning]) + T.synaptic_ops(cfg, [testing])


def test_port_limit_of_both_devices():
    # ECP5: 208 DP16KD, 18-bit ports, two 8-bit weights a word. iCE40 UP5K: 30 EBR of
    # 16 bits, and 4 single-port SPRAMs at half rate.
    assert T.port_limit(TARGETS["ecp5-85f"], preset(400)) == 416
    assert T.port_limit(TARGETS["up5k"], preset(100)) == 64


def test_link_bytes_of_each_mode(mnist_small):
    cfg = preset(8)
    result = P.HEADER_BYTES + 24 + P.TRAILER_BYTES
    assert T.link_bytes(cfg, "pixels", [2, 3]) == (P.HEADER_BYTES + 786 + P.TRAILER_BYTES,
                                                   result)
    pixels = mnist_small[0][0].reshape(-1)
    events = [len(AerEncoder(cfg, 1).presentation(pixels, 2))]
    enc = AerEncoder(cfg, 1)
    to, back = T.link_bytes(cfg, "aer", [2], enc, pixels)
    frames = -(-2 * events[0] // P.MAX_PAYLOAD)
    empty = P.HEADER_BYTES + P.TRAILER_BYTES
    assert to == (empty + 3) + 2 * events[0] + frames * empty + empty
    assert back == empty * (1 + frames) + result
    # Runs: the host driver's PRESENT_RUNS frame, whatever the re-presentations; a dense
    # image goes as PRESENT.
    runs = len(P.encode_runs(pixels.astype(np.uint8).tobytes()))
    assert T.link_bytes(cfg, "runs", [2, 3], pixels=pixels) == (empty + 2 + runs, result)
    dense = np.full(784, 7, dtype=np.uint8)
    assert T.link_bytes(cfg, "runs", [2], pixels=dense) == (empty + 786, result)
    # Two presentations send more than one; the encoder's lanes advance.
    assert T.link_bytes(cfg, "aer", [2, 3], AerEncoder(cfg, 1), pixels)[0] > to
    with pytest.raises(ValueError, match="mode must be"):
        T.link_bytes(cfg, "spikes", [2])


def _report(tmp_path, **core):
    entry = {"target": "ecp5-85f", "placed": True, "fits": True, "Fmax_MHz": 61.5,
             "config": {"n_exc": 400, "lanes": 32, "pipelines": 4, "encoder_lanes": 4}}
    entry.update(core)
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"units": {"core": entry}}))
    return path


def test_fmax_from_report(tmp_path):
    tgt = TARGETS["ecp5-85f"]
    cfg = tgt.config()
    assert T.fmax_from_report(_report(tmp_path), tgt, cfg) == (61.5, str(tmp_path / "report.json"))
    fmax, why = T.fmax_from_report(_report(tmp_path), tgt, tgt.config(lanes=16))
    assert fmax is None and "'lanes': 32" in why
    fmax, why = T.fmax_from_report(_report(tmp_path, placed=False, fits=False), tgt, cfg)
    assert fmax is None and "does not fit" in why
    fmax, why = T.fmax_from_report(_report(tmp_path, target="up5k"), tgt, cfg)
    assert fmax is None and "up5k" in why
    fmax, why = T.fmax_from_report(tmp_path / "missing.json", tgt, cfg)
    assert fmax is None and "symspike build --target ecp5-85f --unit core" in why
    (tmp_path / "bad.json").write_text("{")
    assert T.fmax_from_report(tmp_path / "bad.json", tgt, cfg)[0] is None
    # A board build's report: the full chip's routed Fmax.
    board = tmp_path / "board.json"
    entry = {"board": "ulx3s-85f", "target": "ecp5-85f", "Fmax_MHz": 37.0,
             "config": {"n_exc": 400, "lanes": 16, "pipelines": 4, "encoder_lanes": 4}}
    board.write_text(json.dumps(entry))
    assert T.fmax_from_report(board, tgt, tgt.config(lanes=16)) == (37.0, str(board))
    fmax, why = T.fmax_from_report(board, tgt, cfg)
    assert fmax is None and "'lanes': 16" in why
    board.write_text(json.dumps(dict(entry, Fmax_MHz=None)))
    assert T.fmax_from_report(board, tgt, tgt.config(lanes=16)) == \
        (None, f"{board} has no Fmax (not placed)")


def test_board_clock_from_report(tmp_path):
    board = tmp_path / "board.json"
    entry = {"board": "ulx3s-85f", "target": "ecp5-85f", "Fmax_MHz": 44.9,
             "clock_mhz": 39.29, "timing_met": True}
    board.write_text(json.dumps(entry))
    assert T.board_clock_from_report(board) == 39.29
    # A bitstream that misses timing does not run at its clock; a core build has none.
    board.write_text(json.dumps(dict(entry, timing_met=False)))
    assert T.board_clock_from_report(board) is None
    assert T.board_clock_from_report(_report(tmp_path)) is None
    assert T.board_clock_from_report(tmp_path / "missing.json") is None


@pytest.mark.parametrize("argv, message", [
    (["--board", "arty"], "unknown board 'arty'; known boards: icebreaker, ulx3s-85f"),
    (["--board", "icebreaker", "--train", "0", "--test", "0"], "nothing to measure"),
    (["--board", "icebreaker", "--train", "-1"], "--train must be 0 or more"),
    (["--board", "icebreaker", "-L", "3"], "lanes"),
    (["--board", "icebreaker", "--fmax", "0"], "--fmax must be positive"),
    (["--board", "icebreaker", "--synth", "no/such.json"], "no report no/such.json"),
])
def test_bad_options_are_one_line(argv, message, capsys):
    assert main(["bench", "throughput", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_short_run_on_the_virtual_board(tmp_path, capsys, monkeypatch):
    from symspike.sim.cosim import unavailable_reason
    if unavailable_reason("verilator"):
        pytest.skip(unavailable_reason("verilator"))
    monkeypatch.delenv("SYMSPIKE_DATA", raising=False)
    out = tmp_path / "tp.json"
    code = main(["bench", "throughput", "--board", "icebreaker", "-N", "8", "-L", "4",
                 "--train", "2", "--test", "1", "--fmax", "30", "--quiet", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    fig = json.loads(out.read_text())
    assert fig["bit_identical"] and fig["budget_exact"]
    assert [r["phase"] for r in fig["images"]] == ["train", "train", "test"]
    for row in fig["images"]:
        assert row["cycles"] == row["budget_cycles"] > 700       # 700 steps, several cycles each
        assert row["synaptic_ops"] > 0
    train = fig["train"]
    assert train["cycles_median"] == np.median([r["cycles"] for r in fig["images"][:2]])
    assert train["images_per_s_fmax"] == pytest.approx(30e6 / train["cycles_median"])
    assert train["images_per_s_clock"] == pytest.approx(24e6 / train["cycles_median"])
    # Learning touches more weights than inference.
    assert train["synops_per_cycle"] > fig["test"]["synops_per_cycle"] > 0
    assert 0 < train["port_limit_fraction"] < 1
    pixels, runs, aer = train["uart_pixels"], train["uart_runs"], train["uart_aer"]
    assert pixels["ceiling_images_per_s"] == pytest.approx(3e5 / 793)
    # The host driver's runs: a third of the bytes or less for MNIST digits.
    assert 9 + 100 < runs["bytes_to_chip"] < 793 / 2
    assert runs["stop_and_wait_images_per_s"] > pixels["stop_and_wait_images_per_s"]
    assert aer["bytes_to_chip"] > pixels["bytes_to_chip"]
    assert pixels["stop_and_wait_images_per_s"] < pixels["ceiling_images_per_s"]
    # No board report: the stop-and-wait rate is at the Fmax given.
    assert fig["board_clock_mhz"] is None and fig["stop_and_wait_clock_mhz"] == 30
    link_s = (runs["bytes_to_chip"] + runs["bytes_from_chip"]) / 3e5
    assert runs["stop_and_wait_images_per_s"] == \
        pytest.approx(1 / (link_s + train["cycles_median"] / 30e6))
    assert runs["stop_and_wait_images_per_s_fmax"] == runs["stop_and_wait_images_per_s"]
    assert "bit-identical to the golden model: yes" in text and "saved" in text


def _figure(lanes, cycles):
    phase = {"images_per_s_clock": 100e6 / cycles, "images_per_s_fmax": None}
    return {"board": "ulx3s-85f", "clock_mhz": 100.0, "bit_identical": True,
            "config": {"n_exc": 400, "lanes": lanes, "pipelines": 4, "encoder_lanes": 4},
            "train": dict(phase), "test": dict(phase)}


def test_lanes_sweep_measures_each_and_plots(tmp_path, monkeypatch, capsys):
    asked = []

    def measure(args):
        asked.append(args.lanes)
        return _figure(args.lanes, 200_000 // args.lanes)

    monkeypatch.setattr(T, "measure", measure)
    monkeypatch.setattr(T, "format_figures", lambda fig: f"lanes {fig['config']['lanes']}")
    plot, out = tmp_path / "lanes.png", tmp_path / "sweep.json"
    assert main(["bench", "throughput", "--board", "ulx3s-85f", "--sweep-lanes", "8", "16",
                 "32", "--plot", str(plot), "--json", str(out)]) == 0
    assert asked == [8, 16, 32]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sweep = json.loads(out.read_text())["sweep"]
    assert [f["config"]["lanes"] for f in sweep] == [8, 16, 32]
    assert "plot:" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--sweep-lanes", "8", "--lanes", "8"], "--lanes or --sweep-lanes, not both"),
    (["--plot", "x.png"], "--plot goes with --sweep-lanes"),
])
def test_sweep_option_errors(argv, message, capsys):
    assert main(["bench", "throughput", "--board", "ulx3s-85f", *argv]) == 2
    assert message in capsys.readouterr().err


def test_rates_at_the_board_clock():
    tgt = TARGETS["ecp5-85f"]
    cfg = tgt.config(lanes=16)
    rows = [{"phase": "train", "cycles": c, "budget_cycles": c, "synaptic_ops": 1000,
             "bytes_pixels": [793, 31], "bytes_runs": [200, 31], "bytes_aer": [5000, 80]}
            for c in (150_000, 160_000, 170_000)]
    args = argparse.Namespace(seed=0, link="uart", baud=3_000_000)
    fig = T._summarise(tgt, cfg, args, rows, 45.0, "r.json", True, 1.0, 1.0, board_clock=40.0)
    train = fig["train"]
    assert train["images_per_s_fmax"] == pytest.approx(45e6 / 160_000)
    assert train["images_per_s_board"] == pytest.approx(40e6 / 160_000)
    assert train["images_per_s_clock"] == pytest.approx(100e6 / 160_000)
    runs = train["uart_runs"]
    assert fig["stop_and_wait_clock_mhz"] == 40.0
    assert runs["stop_and_wait_images_per_s"] == pytest.approx(1 / (231 / 3e5 + 160_000 / 40e6))
    assert runs["stop_and_wait_images_per_s_fmax"] == \
        pytest.approx(1 / (231 / 3e5 + 160_000 / 45e6))
    text = T.format_figures(fig)
    assert "the board's bitstream runs at 40.0 MHz" in text and "at 40.0 MHz" in text
