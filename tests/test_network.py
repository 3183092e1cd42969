"""Both models through the common API: presentations, readouts, agreement, checkpoints."""

import numpy as np
import pytest

from symspike.firmware.config import preset
from symspike.sim.network import (CheckpointError, FloatModel, GoldenModel, Model,
                                  make_model)
from symspike.sim.trainer import TrainingRun, accuracy


@pytest.mark.parametrize("kind", ["float", "golden"])
def test_representation_rule_raises_intensity(kind, mnist_small):
    x = mnist_small[0]
    faint = (x[0] // 40).astype(np.uint8)            # pixels 0..6: far too weak at intensity 2
    m = make_model(kind, preset(100), seed=0)
    res = m.present(faint, 3, "both")
    assert res.presentations > 1
    assert res.intensity == 2 + res.presentations - 1
    assert res.counts_e.sum() >= 5 or res.intensity == 32
    strong = m.present(x[1], int(mnist_small[1][1]), "both")
    assert strong.presentations == 1 and strong.counts_e.sum() >= 5


def test_images_seen_and_phase_validation(mnist_small):
    m = GoldenModel(preset(20), seed=0)
    m.present(mnist_small[0][0], 1, "both")
    m.present(mnist_small[0][0], -1, "test")
    assert m.images_seen == 1
    with pytest.raises(ValueError, match="phase"):
        m.present(mnist_small[0][0], 1, "train")
    with pytest.raises(ValueError, match="label"):
        m.present(mnist_small[0][0], 11, "both")
    with pytest.raises(ValueError, match="784 pixels"):
        m.present(np.zeros(100, np.uint8), 1, "test")


def test_same_seed_same_result_and_seed_matters(mnist_small):
    x, y = mnist_small[0][:30], mnist_small[1][:30]
    runs = []
    for seed in (4, 4, 5):
        m = GoldenModel(preset(30), seed=seed)
        for k in range(len(x)):
            m.present(x[k], int(y[k]), "both")
        runs.append((m.w_in.copy(), m.theta.copy()))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_float_and_golden_agree_on_a_short_run(mnist_small):
    """Same seed, same input spikes: the golden model tracks the float reference."""
    x, y = mnist_small[0][:200], mnist_small[1][:200]
    f = FloatModel(preset(100), seed=2)
    g = GoldenModel(preset(100), seed=2)
    # First image: identical input spikes and initial weights (rounded down to 8 bits).
    rf = f.present(x[0], int(y[0]), "both")
    rg = g.present(x[0], int(y[0]), "both")
    assert abs(int(rf.counts_e.sum()) - int(rg.counts_e.sum())) <= max(3, rf.counts_e.sum() // 4)
    spikes_f, spikes_g = [], []
    for k in range(1, len(x)):
        spikes_f.append(f.present(x[k], int(y[k]), "both").counts_e.sum())
        spikes_g.append(g.present(x[k], int(y[k]), "both").counts_e.sum())
    assert abs(np.mean(spikes_f) - np.mean(spikes_g)) < 0.2 * np.mean(spikes_f)
    wf, wg = f.weights(), g.weights()
    # Receptive fields learned by the two models are alike neuron by neuron.
    corr = [np.corrcoef(wf["w_in"][:, j], wg["w_in"][:, j])[0, 1] for j in range(100)]
    assert np.median(corr) > 0.8
    assert np.abs(wf["theta"] - wg["theta"]).mean() < 0.5


@pytest.mark.parametrize("kind", ["float", "golden"])
def test_end_to_end_learning_on_real_mnist(kind, mnist_small):
    """1000 training images reach an accuracy that a broken learner cannot (chance: 10 %)."""
    x, y, xt, yt = mnist_small
    m = make_model(kind, preset(100), seed=0)
    TrainingRun(m, progress=False).run(x[:1000], y[:1000])
    out = m.infer(xt[:500])
    acc = accuracy(out["pred"], yt[:500])
    vote = accuracy(out["pred_vote"], yt[:500])
    assert acc > 0.45, acc
    assert vote > 0.45, vote
    assert out["counts"].sum(axis=1).min() >= 1


def test_untrained_network_is_near_chance(mnist_small):
    """The floor above is meaningful: without learning the C readout is near chance."""
    x, y, xt, yt = mnist_small
    m = GoldenModel(preset(100), seed=0)
    out = m.infer(xt[:300])
    assert accuracy(out["pred"], yt[:300]) < 0.3


def test_sym_rule_beats_asym_in_c_layer(mnist_small):
    """E→C association needs potentiation in both spike orders: the asymmetric rule,
    whose pre-spikes depress, learns the supervised layer worse."""
    x, y, xt, yt = mnist_small
    acc = {}
    for rule in ("sym", "asym"):
        m = GoldenModel(preset(100, rule=rule), seed=0)
        TrainingRun(m, progress=False).run(x[:600], y[:600])
        acc[rule] = accuracy(m.infer(xt[:300])["pred"], yt[:300])
    assert acc["sym"] > acc["asym"] + 0.02, acc


@pytest.mark.parametrize("kind", ["float", "golden"])
def test_checkpoint_round_trip(kind, tmp_path, mnist_small):
    x, y = mnist_small[0][:20], mnist_small[1][:20]
    m = make_model(kind, preset(40), seed=3)
    for k in range(10):
        m.present(x[k], int(y[k]), "both")
    m.save(tmp_path / "c.npz")
    r = Model.load(tmp_path / "c.npz")
    assert type(r) is type(m) and r.images_seen == 10
    for k in range(10, 20):
        m.present(x[k], int(y[k]), "both")
        r.present(x[k], int(y[k]), "both")
    assert np.array_equal(m.w_in, r.w_in) and np.array_equal(m.theta, r.theta)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "checkpoint.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        Model.load(bad)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Model.load(tmp_path / "missing.npz")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    m = GoldenModel(preset(10), seed=0)
    path = tmp_path / "c.npz"
    m.save(path)
    good = path.read_bytes()
    import os

    def crash(*_):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        m.save(path)
    assert path.read_bytes() == good             # the previous checkpoint is whole


def test_weights_round_trip_through_real_units():
    g = GoldenModel(preset(10), seed=0)
    codes = g.w_in.copy()
    g.set_weights(w_in=g.weights()["w_in"])
    assert np.array_equal(codes, g.w_in)
