"""The Brian2 version of the network on a few MNIST images (skipped without Brian2).

The numpy code-generation target is used throughout: Cython's first compilation of the
network takes minutes, and these tests check behaviour, not speed.
"""

import numpy as np
import pytest

pytest.importorskip("brian2")
# Brian2's parser uses pyparsing's old camelCase names and arguments on every statement.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning")

from symspike.firmware.config import preset  # noqa: E402
from symspike.host.datasets import load  # noqa: E402
from symspike.sim.brian2_ref import run_brian2  # noqa: E402
from symspike.sim.network import FloatModel  # noqa: E402


@pytest.fixture(scope="module")
def mnist3():
    return load("mnist", "train", limit=3)


def test_training_run_fires_learns_and_scales(mnist3):
    images, labels = mnist3
    cfg = preset(16)
    res = run_brian2(cfg, images, labels, seed=0, phase="both", target="numpy")

    assert res["images"] == 3
    assert res["target"] == "numpy"
    assert res["wall_s"] > 0 and res["images_per_s"] > 0

    # The re-presentation rule: the last presentation has min_spikes unless intensity ran out.
    most = cfg.intensity_max - cfg.intensity_init + 1
    spikes = res["counts_e"].sum(axis=1)
    assert np.all((spikes >= cfg.min_spikes) | (res["presentations"] == most))
    assert res["spikes_e"] == pytest.approx(spikes.mean())
    assert res["spikes_e"] > 0

    for w, wmax in ((res["w_in"], cfg.wmax_in), (res["w_ec"], cfg.wmax_ec)):
        assert w.min() >= 0.0 and w.max() <= wmax
    # Both plastic layers learnt: sym-STDP only potentiates, so weights moved up from the
    # scaled values somewhere.
    assert res["w_ec"].sum() > 0
    assert np.all(res["theta"] >= cfg.theta_init * (1 - 1e-3))
    assert res["theta"].max() > cfg.theta_init

    # Column sums as Brian2 held them right after the last synaptic scaling.
    np.testing.assert_allclose(res["scaled_sums_in"], cfg.target_in, rtol=1e-9)
    np.testing.assert_allclose(res["scaled_sums_ec"], cfg.target_ec, rtol=1e-9)


def test_test_phase_with_simulated_rest_leaves_weights_alone(mnist3):
    images, _ = mnist3
    cfg = preset(16, rest="simulate")
    res = run_brian2(cfg, images[:2], None, seed=0, phase="test", target="numpy",
                     one_run=False)
    assert res["images"] == 2 and res["images_per_s"] > 0
    assert res["spikes_e"] > 0
    # Nothing learns at test and nothing is rescaled; the initial draw is the float model's.
    ref = FloatModel(cfg, seed=0)
    np.testing.assert_array_equal(res["w_in"], ref.w_in)
    np.testing.assert_array_equal(res["w_ec"], ref.w_ec)
    np.testing.assert_array_equal(res["theta"], cfg.theta_init)
    assert res["scaled_sums_in"] is None and res["scaled_sums_ec"] is None


def test_bad_arguments():
    cfg = preset(16)
    images = np.zeros((1, 28, 28), dtype=np.uint8)
    with pytest.raises(ValueError, match="phase"):
        run_brian2(cfg, images, [0], phase="train")
    with pytest.raises(ValueError, match="target"):
        run_brian2(cfg, images, [0], target="cuda")
    with pytest.raises(ValueError, match="labels"):
        run_brian2(cfg, images, None, phase="both")
