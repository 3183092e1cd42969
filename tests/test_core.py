"""The network core (``hdl/core.py``) against the golden model, whole presentations.

The core runs the golden model's ``present`` in gateware: scaling, rest, time steps with the
router's queues, accumulators, LIF cores, synapse memories and encoder, θ's decay and the
re-presentation rule. Every test presents real MNIST images to the core and to a
:class:`GoldenModel` of the same seed and initial weights and compares, per image, the E and
C spike counts, the number of presentations and the final intensity, and at the end every
weight of both projections and every θ.

The Amaranth-simulator tests use a small network (N = 8, short presentations, so that the
re-presentation rule runs several times); the cocotb bench (``tests/cocotb/core_bench.py``)
runs the N = 100 network on 20 training images and then test images, on Icarus and
Verilator.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from symspike.firmware.config import preset
from symspike.hdl.core import NetworkCore, ec_lanes
from symspike.sim import cosim
from symspike.sim.network import GoldenModel
from core_harness import simulate_core

BENCH = Path(__file__).parent / "cocotb" / "core_bench.py"


def _compare(got, want):
    for k, (g, w) in enumerate(zip(got["images"], want["images"])):
        np.testing.assert_array_equal(g[0], w[0], err_msg=f"image {k}: E counts")
        np.testing.assert_array_equal(g[1], w[1], err_msg=f"image {k}: C counts")
        assert tuple(g[2:]) == tuple(w[2:]), f"image {k}: presentations, intensity"
    for name in ("w_in", "w_ec", "theta"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_parameter_validation():
    cfg = preset(8, lanes=4, pipelines=8)
    with pytest.raises(ValueError, match="pipelines"):
        NetworkCore(cfg)
    with pytest.raises(TypeError, match="NetworkConfig"):
        NetworkCore({"n_exc": 8})
    cfg = preset(8, lanes=8, pipelines=2)
    with pytest.raises(ValueError, match="shape"):
        NetworkCore(cfg, w_in=np.zeros((784, 9), dtype=int))
    with pytest.raises(ValueError, match="codes"):
        NetworkCore(cfg, w_ec=np.full((8, 10), 256))
    assert ec_lanes(preset(400, lanes=64, pipelines=4)) == 8
    assert ec_lanes(preset(100, lanes=4)) == 4


def test_training_and_test_presentations(mnist_small):
    """Two training images (sym-STDP on both layers, teacher, a re-presentation); E and C
    spikes occur, so row, column and scaling events all run. (Short presentations at a high
    starting intensity keep the simulation to 150 steps.)"""
    x, y = mnist_small[0], mnist_small[1]
    cfg = preset(8, lanes=8, pipelines=2, encoder_lanes=2, t_present=25.0, intensity_init=5,
                 intensity_max=6)
    got, want = simulate_core(cfg, 3, x[:2], y[:2], "both")
    assert sum(int(w[0].sum()) for w in want["images"]) > 0, "no E spikes: weak test"
    assert max(w[2] for w in want["images"]) > 1, "no re-presentation: weak test"
    _compare(got, want)


def test_aer_input_mode(mnist_small):
    """Input spikes streamed by the host (AER mode) from a host-side encoder: the same
    weights, θ and counts as the golden model, the host applying the re-presentation rule."""
    x, y = mnist_small[0], mnist_small[1]
    cfg = preset(8, lanes=8, pipelines=2, encoder_lanes=2, t_present=20.0, intensity_init=4,
                 intensity_max=5)
    got, want = simulate_core(cfg, 7, x[3:4], y[3:4], "both", aer=True)
    assert max(w[2] for w in want["images"]) > 1, "no re-presentation: weak test"
    _compare(got, want)


@pytest.mark.parametrize("rule,rest,lanes,pipelines", [("asym", "reset", 2, 2),
                                                       ("sym", "simulate", 8, 1)])
def test_rule_and_rest_variants(mnist_small, rule, rest, lanes, pipelines):
    """The asymmetric rule, the simulated rest, and lanes = pipelines (every drained row of
    the accumulators is a whole memory row)."""
    x, y = mnist_small[0], mnist_small[1]
    cfg = preset(8, lanes=lanes, pipelines=pipelines, encoder_lanes=1, t_present=20.0,
                 t_rest=5.0, intensity_init=3, intensity_max=4, rule=rule, rest=rest)
    got, want = simulate_core(cfg, 5, x[2:3], y[2:3], "both")
    assert max(w[2] for w in want["images"]) == 2, "one re-presentation expected"
    _compare(got, want)


# ----------------------------------------------------------------------------- cocotb
#: The N = 100 network of the bench: 16 lanes and 4 pipelines keep a presentation near
#: 90 cycles per time step (about 62 000 cycles per image).
COSIM = dict(lanes=16, pipelines=4, encoder_lanes=4)
COSIM_TRAIN, COSIM_TEST, COSIM_SEED = 20, 3, 11
#: Images each simulator presents in the suite. Verilator runs all 23 in about 15 s;
#: Icarus simulates this design at about 500 cycles/s, so the suite gives it the first
#: training image (weights and θ compared after it) and ``SYMSPIKE_CORE_IMAGES=0`` runs
#: all of them (about 50 minutes).
COSIM_LIMIT = {"verilator": 0, "icarus": 1}


def cosim_vectors(x, y, xt, yt, n_train=COSIM_TRAIN, n_test=COSIM_TEST):
    cfg = preset(100, **COSIM)
    golden = GoldenModel(cfg, COSIM_SEED)
    w_in, w_ec = golden.w_in.copy(), golden.w_ec.copy()
    images = [x[k] for k in range(n_train)] + [xt[k] for k in range(n_test)]
    labels = [int(y[k]) for k in range(n_train)] + [-1] * n_test
    phases = ["both"] * n_train + ["test"] * n_test
    expected, checks = [], []
    for k, (img, lab, ph) in enumerate(zip(images, labels, phases)):
        r = golden.present(img, lab, ph)
        expected.append({"counts_e": r.counts_e.tolist(), "counts_c": r.counts_c.tolist(),
                         "presentations": r.presentations, "intensity": r.intensity})
        if k + 1 in (1, n_train):
            checks.append({"after": k + 1, "w_in": golden.w_in.tolist(),
                           "w_ec": golden.w_ec.tolist(), "theta": golden.theta.tolist()})
    vec = {"images": [np.asarray(i).reshape(-1).tolist() for i in images], "labels": labels,
           "phases": phases, "expected": expected, "checks": checks}
    return cfg, w_in, w_ec, vec


@pytest.fixture(scope="module")
def cosim_setup(tmp_path_factory, mnist_small):
    cfg, w_in, w_ec, vec = cosim_vectors(*mnist_small)
    path = tmp_path_factory.mktemp("core-vectors") / "vectors.json"
    path.write_text(json.dumps(vec))
    return cfg, w_in, w_ec, str(path)


@pytest.mark.parametrize("simulator", list(cosim.SIMULATORS))
def test_cocotb_bench(simulator, cosim_setup):
    reason = cosim.unavailable_reason(simulator)
    if reason:
        pytest.skip(reason)
    cfg, w_in, w_ec, path = cosim_setup
    core = NetworkCore(cfg, seed=COSIM_SEED, w_in=w_in, w_ec=w_ec)
    limit = int(os.environ.get("SYMSPIKE_CORE_IMAGES", COSIM_LIMIT[simulator]))
    result = cosim.run_cocotb(core, BENCH, simulator=simulator, name="core_n100",
                              params={"config": cfg.to_dict(), "seed": COSIM_SEED,
                                      "vectors": path, "limit": limit})
    assert result.tests == ("core_matches_golden",)
