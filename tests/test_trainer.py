"""Training runs: schedules, evaluation without side effects, checkpoints and resume."""

import numpy as np
import pytest

from symspike.firmware.config import preset
from symspike.sim.network import CheckpointError, GoldenModel
from symspike.sim.trainer import TrainingRun


def _data(mnist_small, n=60):
    return mnist_small[0][:n], mnist_small[1][:n]


def test_layer_mode_schedule_and_frozen_hidden_layer(mnist_small):
    x, y = _data(mnist_small, 30)
    m = GoldenModel(preset(30), seed=1)
    run = TrainingRun(m, mode="layer", epochs=2, progress=False)
    stages = run.schedule(len(x))
    assert [p for p, _ in stages] == ["hidden", "hidden", "output"]
    assert list(stages[0][1]) == list(range(30))          # first epoch in dataset order
    assert sorted(stages[1][1]) == list(range(30)) and list(stages[1][1]) != list(range(30))
    # Train the hidden stages, then check the output stage leaves input→E alone.
    m2 = GoldenModel(preset(30), seed=1)
    TrainingRun(m2, mode="layer", epochs=1, progress=False).run(x, y)
    w_hidden = m2.w_in.copy()
    theta = m2.theta.copy()
    for k in range(5):
        m2.present(x[k], int(y[k]), "output")
    assert np.array_equal(theta, m2.theta)
    assert np.array_equal(w_hidden, m2.w_in)


def test_evaluation_does_not_disturb_training(mnist_small):
    x, y = _data(mnist_small, 40)
    a = GoldenModel(preset(30), seed=2)
    TrainingRun(a, progress=False).run(x, y)
    b = GoldenModel(preset(30), seed=2)
    run = TrainingRun(b, eval_every=10, progress=False)
    run.run(x, y, mnist_small[2][:20], mnist_small[3][:20])
    assert len(run.history) == 4 and run.history[-1]["images"] == 40
    assert np.array_equal(a.w_in, b.w_in) and np.array_equal(a.theta, b.theta)


def test_learning_rate_schedule(mnist_small):
    m = GoldenModel(preset(30), seed=0)
    base = m._K.copy()
    m.set_eta_scale(0.5)
    from symspike.sim.fixed import K_INDEX
    assert m._K[K_INDEX["eta_in"]] == round(base[K_INDEX["eta_in"]] * 0.5)
    x, y = _data(mnist_small, 20)
    TrainingRun(m, eta_final=0.1, progress=False).run(x, y)
    assert m._K[K_INDEX["eta_in"]] == base[K_INDEX["eta_in"]]      # restored at the end
    with pytest.raises(ValueError, match="eta_final"):
        TrainingRun(m, eta_final=-1)


def test_resume_is_bit_identical(mnist_small, tmp_path, monkeypatch):
    x, y = _data(mnist_small, 60)
    ref = GoldenModel(preset(30), seed=3)
    TrainingRun(ref, mode="layer", progress=False).run(x, y)

    m = GoldenModel(preset(30), seed=3)
    run = TrainingRun(m, mode="layer", checkpoint_every=25, out_dir=tmp_path, progress=False)
    calls = {"n": 0}
    real = m.present

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 90:                      # in the output stage, after checkpoint 75
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(m, "present", crashing)
    with pytest.raises(KeyboardInterrupt):
        run.run(x, y)
    resumed = TrainingRun.resume(tmp_path, progress=False)
    assert resumed.position == 75 and resumed.mode == "layer"
    resumed.run(x, y)
    assert np.array_equal(resumed.model.w_in, ref.w_in)
    assert np.array_equal(resumed.model.w_ec, ref.w_ec)
    assert np.array_equal(resumed.model.theta, ref.theta)


def test_resume_needs_a_training_checkpoint(tmp_path):
    GoldenModel(preset(10), seed=0).save(tmp_path / "checkpoint.npz")
    with pytest.raises(CheckpointError, match="training position"):
        TrainingRun.resume(tmp_path)


def test_bad_arguments():
    m = GoldenModel(preset(10), seed=0)
    with pytest.raises(ValueError, match="mode"):
        TrainingRun(m, mode="both")
    with pytest.raises(ValueError, match="epochs"):
        TrainingRun(m, epochs=0)
    with pytest.raises(ValueError, match="labels"):
        TrainingRun(m, progress=False).run(np.zeros((3, 28, 28), np.uint8), np.zeros(2))


def test_keep_best_restores_the_best_validation_point(mnist_small, tmp_path):
    x, y = _data(mnist_small, 80)
    xv, yv = mnist_small[0][1500:1560], mnist_small[1][1500:1560]
    m = GoldenModel(preset(30), seed=4)
    run = TrainingRun(m, eval_every=20, keep_best=True, out_dir=tmp_path, progress=False)
    run.run(x, y, xv, yv)
    accs = [p["accuracy"] for p in run.history]
    assert run.best["accuracy"] == max(accs)
    assert (tmp_path / "best.npz").is_file()
    # The model ends in the best state: evaluating it again gives the best accuracy.
    again = run.evaluate_point(xv, yv)
    assert again["accuracy"] == run.best["accuracy"]
