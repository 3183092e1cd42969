"""Progress of Yosys and nextpnr from their logs (``boards/progress.py``), on excerpts of real
logs of these tools (Yosys 0.66, nextpnr-ecp5 of YoWASP)."""

from __future__ import annotations

import pytest

from symspike.boards.progress import LogWatch, log_status

YOSYS = """\
4.46. Executing ABC9 pass.
4.46.1. Executing ABC9_OPS pass (helper functions for ABC9).
4.47. Executing OPT_LUT_INS pass (discard unused LUT inputs).
"""
PACK = """\
Info: Logic utilisation before packing:
Info: Packing IOs..
Info: Packing constants..
"""
HEAP = """\
Info: Running main analytical placer, max placement attempts per cell = 81039180.
Info:     at iteration #1, type ALL: wirelen solved = 33438, spread = 2375013, legal = 2444534; time = 15.68s
Info:     at iteration #2, type ALL: wirelen solved = 144534, spread = 1196754, legal = 1372205; time = 15.67s
"""
ANNEAL = """\
Info: Running simulated annealing placer for refinement.
Info:   at iteration #5: temp = 0.000000, timing cost = 936, wirelen = 99171
"""
ROUTER1 = """\
Info: Routing..
Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| batch(sec) total(sec)|
Info:      39000 |     9361      29638 |  257   743 |    265013|       2.92      70.56|
Info:      40000 |     9571      30428 |  210   790 |    264519|       3.27      73.83|
"""
ROUTER2 = """\
Info: Running router2...
Info: Running main router loop...
Info:     iter=1 wires=1300010 overused=100022 overuse=140125 archfail=NA
Info:     iter=7 wires=1297655 overused=32578 overuse=38190 archfail=NA
"""


@pytest.mark.parametrize("text, status", [
    ("", None),
    ("read_rtlil symspike.il\n", None),
    (YOSYS, ("Yosys: OPT_LUT_INS", "")),
    (YOSYS + "5. Executing JSON backend.\n", ("Yosys: JSON", "")),
    (PACK, ("nextpnr: packing", "")),
    (HEAP, ("nextpnr: placing", "iteration 2, legal wire length 1 372 205")),
    (ANNEAL, ("nextpnr: placing (annealing)", "iteration 5, wire length 99 171")),
    (ROUTER1, ("nextpnr: routing", "264 519 arcs left")),
    (ROUTER2, ("nextpnr: routing", "iteration 7, 32 578 of 1 297 655 wires overused")),
    (ROUTER1 + "Info: Program finished normally.\n", ("nextpnr: done", "")),
])
def test_log_status(text, status):
    assert log_status(text) == status


def test_watch_reports_new_phases_at_once_and_progress_every_period(tmp_path):
    said, now = [], [0.0]
    yosys, pnr = tmp_path / "a.rpt", tmp_path / "a.tim"
    watch = LogWatch([yosys, pnr], said.append, period=100, poll=3600, clock=lambda: now[0])

    def at(t):
        now[0] = t
        watch.check()

    with watch:
        at(0)                               # no log yet
        yosys.write_text(YOSYS)
        at(1)
        pnr.write_text("".join(HEAP.splitlines(keepends=True)[:2]))
        at(2)                               # the newest log wins, a new phase: at once
        pnr.write_text(HEAP)
        at(50)                              # same phase, within the period: quiet
        at(150)                             # ... after it: reported
        at(300)                             # nothing new: quiet
    assert said == [
        "Yosys: OPT_LUT_INS (1 s)",
        "nextpnr: placing, iteration 1, legal wire length 2 444 534 (2 s)",
        "nextpnr: placing, iteration 2, legal wire length 1 372 205 (2 min)",
    ]


def test_watch_parameters():
    with pytest.raises(TypeError, match="say must be callable"):
        LogWatch([], "print")
    with pytest.raises(ValueError, match="positive"):
        LogWatch([], print, period=0)
