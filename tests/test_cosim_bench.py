"""``symspike bench cosim`` (``host/cosim_bench.py``): the full chip's co-simulation speed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from symspike.host.cli import main


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "--images and --repeats must be positive"),
    (["--repeats", "-1"], "--images and --repeats must be positive"),
    (["--neurons", "0"], "invalid network"),
])
def test_bad_options_are_one_line(argv, message, capsys):
    assert main(["bench", "cosim", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_two_sessions_on_the_virtual_board(chip_exe, tmp_path, capsys, monkeypatch):
    # chip_exe: the same chip (N = 100, seed 0, divisor 4), so the build is shared.
    monkeypatch.delenv("SYMSPIKE_DATA", raising=False)
    out = tmp_path / "cosim.json"
    assert main(["bench", "cosim", "--images", "1", "--repeats", "2", "--link", "pcie",
                 "--quiet", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    fig = json.loads(out.read_text())
    assert len(fig["runs"]) == 2 and fig["link"] == "pcie" and fig["n_exc"] == 100
    for run in fig["runs"]:
        # One training image is tens of thousands of cycles; the PCIe stream moved its pixels
        # (as runs of the non-zero ones, PRESENT_RUNS: more than 100 bytes, fewer than 784).
        assert run["cycles"] > 30_000 and 100 < run["bytes_to_chip"] < 784
        assert run["cycles_per_busy_s"] == pytest.approx(run["cycles"] / run["busy_s"])
    assert fig["median"]["cycles_per_busy_s"] == \
        pytest.approx(np.median([r["cycles_per_busy_s"] for r in fig["runs"]]))
    assert fig["goal_met"] == (fig["median"]["cycles_per_busy_s"] >= 200_000)
    assert "M cycles/s simulating" in text and "saved" in text
