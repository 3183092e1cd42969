"""The cycle budget (``hdl/budget.py``) against the network core, cycle for cycle.

The simulated core (``tests/budget_harness.py``: the Amaranth simulator, the sequencer's
state recorded every cycle) presents real MNIST images; the golden model of the same seed
replays each presentation one step at a time and says what every step delivers and produces.
The formulas must give every time step's cycles, every presentation's overhead and the
whole command's cycles exactly. Small networks and short presentations keep the simulations
short; a high intensity makes E and C spikes, so the column events, the spike stalls and the
queue flush all occur.

The N = 100 figures are those the cocotb bench (``tests/cocotb/core_bench.py``, Verilator)
measured on the full core.
"""

import numpy as np
import pytest

from symspike.firmware.config import preset
from symspike.hdl import budget, lif
from symspike.hdl.scaling import ScalingUnit
from symspike.sim.network import GoldenModel
from budget_harness import simulate_budget

#: (configuration, phase, seed, images, what must occur): the hidden and output layers
#: learning, several spikes in a row of the E/I core and of the encoder, rest steps, and a
#: queue flush longer than the other work of the rest state (32 lanes: a short trace pass).
SIM_CASES = {
    "n8-l8-p2-e2-both": (dict(n=8, lanes=8, pipelines=2, encoder_lanes=2, t_present=5.0,
                              intensity_init=8, intensity_max=9), "both", 0, (7,),
                         ("e", "c", "stall", "again", "spikes")),
    "n16-l16-p4-e4-output": (dict(n=16, lanes=16, pipelines=4, encoder_lanes=4,
                                  t_present=5.0, intensity_init=20, intensity_max=20),
                             "output", 11, (3,), ("e", "c", "stall")),
    "n8-l4-p1-e1-simulate": (dict(n=8, lanes=4, pipelines=1, encoder_lanes=1, t_present=2.5,
                                  t_rest=1.0, rest="simulate", intensity_init=24,
                                  intensity_max=24), "test", 2, (2,),
                             ("e", "stall", "intensity")),
    "n8-l32-p8-e4-flush": (dict(n=8, lanes=32, pipelines=8, encoder_lanes=4, t_present=1.0,
                                intensity_init=24, intensity_max=24), "test", 1, (0, 1),
                           ("flush",)),
}

#: Cycles per image the cocotb bench measured on the full core (Verilator) at N = 100, 16
#: lanes, 4 pipelines, 4 encoder lanes, seed 11: the 20 training images (both layers
#: learning) and then 3 test images of the embedded MNIST subset, in the bench's order
#: (``tests/test_core.py: cosim_vectors``). A change of the core's timing must show here.
BENCH_N100_TRAIN = (66887, 69579, 62041, 60268, 64439, 68513, 60591, 73788, 55759, 63550,
                    67358, 58590, 75674, 67245, 56719, 66022, 64980, 66514, 57357, 60598)
BENCH_N100_TEST = (54845, 60705, 100963)


@pytest.mark.parametrize("case", list(SIM_CASES))
def test_formula_matches_simulated_core(case, mnist_small):
    kw, phase, seed, idx, expect = SIM_CASES[case]
    kw = dict(kw)
    cfg = preset(kw.pop("n"), **kw)
    x, y = mnist_small[0], mnist_small[1]
    images, labels = x[list(idx)], y[list(idx)]
    sim = simulate_budget(cfg, seed, images, labels, phase)
    model = GoldenModel(cfg, seed)
    g = budget.geometry(cfg)
    saw = dict(e=0, c=0, stall=0, flush=0, again=0, spikes=0, intensity=0)
    for (cycles, prologue, pres), img, lab in zip(sim, images, labels):
        acts = budget.record_activity(model, img, int(lab), phase)
        assert prologue == budget.prologue_cycles(cfg)
        assert len(pres) == len(acts), "presentations"
        for p_sim, p in zip(pres, acts):
            assert p_sim.overhead == budget.presentation_overhead(
                cfg, learn_in=p.learn_in, learn_ec=p.learn_ec, queued=p.queued,
                sums_in=p.sums_in, sums_ec=p.sums_ec, ending=p.ending), p_sim.states
            saw[p.ending or "again"] += 1
            assert len(p_sim.steps) == len(p.steps)
            for t, (a_sim, total_sim, units_sim, s) in enumerate(
                    zip(p_sim.phase_a, p_sim.steps, p_sim.units, p.steps)):
                a = budget.phase_a_cycles(g, s.n_in, s.n_e, s.n_c, learn_in=p.learn_in,
                                          learn_ec=p.learn_ec)
                total = a + budget.phase_b_cycles(
                    g, nonzero=p.nonzero, e_spikes=s.e_spikes, c_spikes=s.c_spikes,
                    hit_ranks=s.hit_ranks, input_on=s.input_on)
                assert (a_sim, total_sim) == (a, total), \
                    f"step {t}: k={s.n_in} e={s.n_e} c={s.n_c} E out {list(s.e_spikes)}"
                units = {"lif_ei": budget.lif_ei_cycles(g, s.e_spikes),
                         "lif_c": budget.lif_c_cycles(g, s.c_spikes),
                         "traces": budget.trace_cycles(g)}
                if s.input_on:
                    units["encoder"] = budget.encoder_cycles(g, p.nonzero, s.hit_ranks)
                assert units_sim == units, f"step {t}"
                lo, hi = budget.step_bounds(
                    g, n_in=s.n_in, n_e=s.n_e, n_c=s.n_c, learn_in=p.learn_in,
                    learn_ec=p.learn_ec, nonzero=p.nonzero, e_out=len(s.e_spikes),
                    c_out=len(s.c_spikes), in_out=len(s.hit_ranks), input_on=s.input_on)
                assert lo <= total <= hi
                saw["e"] += s.n_e
                saw["c"] += s.n_c
                saw["stall"] += budget.encoder_cycles(g, p.nonzero, s.hit_ranks) != \
                    budget.encoder_cycles(g, p.nonzero)
            saw["flush"] += budget.reset_cycles(cfg, p.queued) > budget.reset_cycles(cfg)
        assert cycles == budget.image_cycles(cfg, acts)
    # The cases are chosen so that the terms beyond the input rows are exercised.
    assert all(saw[what] for what in expect), saw


def test_bench_figures_n100(mnist_small):
    """The estimate from the golden model's spikes reproduces the cocotb bench's cycles."""
    x, y, xt, _ = mnist_small
    cfg = preset(100, lanes=16, pipelines=4, encoder_lanes=4)
    model = GoldenModel(cfg, 11)
    train = [budget.image_cycles_estimate(cfg, x[k], int(y[k]), "both", model=model)
             for k in range(len(BENCH_N100_TRAIN))]
    test = [budget.image_cycles_estimate(cfg, xt[k], -1, "test", model=model)
            for k in range(len(BENCH_N100_TEST))]
    assert tuple(e.cycles for e in train) == BENCH_N100_TRAIN
    assert tuple(e.cycles for e in test) == BENCH_N100_TEST
    assert test[-1].presentations == 2
    for e in train + test:
        assert sum(e.breakdown.values()) == e.cycles
        # Phase B, at 16 lanes mostly the pass over the input traces, is the largest term.
        assert max(e.breakdown, key=e.breakdown.get) == "phase_b"


def test_scaling_closed_form_matches_unit():
    for n, lanes in ((8, 8), (100, 16), (400, 64), (100, 4)):
        cfg = preset(n, lanes=lanes)
        g = budget.geometry(cfg)
        for proj, cols in (("in", n), ("ec", 10)):
            unit = ScalingUnit(cfg, proj)
            unit._MustUse__silence = True
            rb = g.rb if proj == "in" else g.rbe
            assert budget.scaling_cycles(cfg, proj) == unit.pass_cycles(rb)
            sums = [0] + [1000] * (cols - 1)
            assert budget.scaling_cycles(cfg, proj, sums) == unit.pass_cycles(rb, sums)


def test_phase_terms():
    cfg = preset(100, lanes=16, pipelines=4, encoder_lanes=4)
    g = budget.geometry(cfg)
    assert (g.cb, g.rb, g.cbe, g.rbe, g.nr) == (7, 49, 2, 13, 25)
    # No spikes: the six states of phase A, one cycle each.
    assert budget.phase_a_cycles(g, 0, 0, 0, learn_in=True, learn_ec=True) == 6
    # Input spikes only: one row event each, back to back, and the drain of the last.
    for k in (1, 3, 10):
        assert budget.phase_a_cycles(g, k, 0, 0, learn_in=True, learn_ec=True) == \
            7 * k + budget.ROW_DRAIN + 1
    # E spikes learning: the input→E column, RB cycles each.
    a0 = budget.phase_a_cycles(g, 2, 0, 0, learn_in=True, learn_ec=True)
    a1 = budget.phase_a_cycles(g, 2, 1, 0, learn_in=True, learn_ec=True)
    a2 = budget.phase_a_cycles(g, 2, 2, 0, learn_in=True, learn_ec=True)
    assert a2 - a1 == g.rb and a1 > a0
    # Phase B: the trace pass (RB + 2) unless the E/I pass or the encoder is longer.
    assert budget.phase_b_cycles(g, nonzero=100) == g.rb + 2 + 2
    assert budget.phase_b_cycles(g, nonzero=200) == 200 // 4 + 3 + 2
    assert budget.lif_ei_cycles(g) == lif.step_cycles(100, 4) == 34
    # Two spikes in one row cost one cycle, in the last row one each.
    assert budget.lif_ei_cycles(g, [0, 1]) == 35
    assert budget.lif_ei_cycles(g, [96, 99]) == 36
    assert budget.encoder_cycles(g, 8, [0, 1, 2, 3]) == 2 + 3 + 3
    assert budget.encoder_cycles(g, 0) == 1
    with pytest.raises(ValueError, match="projection"):
        budget.scaling_cycles(cfg, "ei")
    with pytest.raises(ValueError, match="n_e"):
        budget.phase_a_cycles(g, 0, -1, 0, learn_in=False, learn_ec=False)


def test_bounds_contain_exact_step():
    cfg = preset(64, lanes=8, pipelines=4, encoder_lanes=2)
    g = budget.geometry(cfg)
    rng = np.random.default_rng(1)
    nonzero = 150
    for _ in range(200):
        e_out = rng.choice(64, size=rng.integers(0, 20), replace=False)
        c_out = rng.choice(10, size=rng.integers(0, 3), replace=False)
        hits = rng.choice(nonzero, size=rng.integers(0, 40), replace=False)
        kw = dict(n_in=int(rng.integers(0, 10)), n_e=int(rng.integers(0, 3)),
                  n_c=int(rng.integers(0, 2)), learn_in=bool(rng.integers(2)),
                  learn_ec=bool(rng.integers(2)), nonzero=nonzero)
        exact = budget.step_cycles(g, e_spikes=e_out, c_spikes=c_out, hit_ranks=hits, **kw)
        lo, hi = budget.step_bounds(g, e_out=len(e_out), c_out=len(c_out), in_out=len(hits),
                                    **kw)
        assert lo <= exact <= hi


@pytest.mark.parametrize("phase,rest", [("both", "reset"), ("test", "simulate")])
def test_record_activity_follows_present(mnist_small, phase, rest):
    """Step by step, the golden model ends where ``present`` leaves it, with the same counts."""
    x, y = mnist_small[0], mnist_small[1]
    cfg = preset(16, t_present=20.0, t_rest=5.0, rest=rest, intensity_max=4)
    ref, rec = GoldenModel(cfg, 4), GoldenModel(cfg, 4)
    for k in range(3):
        res = ref.present(x[k], int(y[k]), phase)
        acts = budget.record_activity(rec, x[k], int(y[k]), phase)
        assert len(acts) == res.presentations
        last = acts[-1].steps[:cfg.steps_present]
        assert sum(len(s.e_spikes) for s in last) == res.counts_e.sum()
        assert sum(len(s.c_spikes) for s in last) == res.counts_c.sum()
        # What a step delivers is what the previous one produced.
        for a, b in zip(last, last[1:]):
            assert b.n_e == len(a.e_spikes) and b.n_in == len(a.hit_ranks)
    for name in ("w_in", "w_ec", "theta", "rng", "se", "si", "sc", "x_in"):
        np.testing.assert_array_equal(getattr(rec, name), getattr(ref, name), err_msg=name)
