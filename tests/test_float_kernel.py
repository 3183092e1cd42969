"""The float reference model's equations against values worked out by hand."""

import numpy as np
import pytest

from symspike.firmware.config import preset
from symspike.sim.float_kernel import E_GE, E_GI, E_REF, E_V, E_X
from symspike.sim.network import FloatModel


def quiet_model(n=4, **changes):
    m = FloatModel(preset(n, **changes), seed=0)
    m.w_in[:] = 0
    m.w_ec[:] = 0
    m.reset_state()
    return m


def test_lif_step_by_hand():
    m = quiet_model()
    m.se[E_V, 0] = -60.0
    m.se[E_GE, 0] = 0.5
    m.se[E_GI, 0] = 0.25
    m.run_steps(1)
    # dV = (−65+60 + 0.5·(0+60) + 0.25·(−100+60)) · 0.5/100 = 0.075
    assert m.se[E_V, 0] == pytest.approx(-59.925)
    assert m.se[E_GE, 0] == pytest.approx(0.5 * np.exp(-0.5))
    assert m.se[E_GI, 0] == pytest.approx(0.25 * np.exp(-0.25))


def test_spike_threshold_refractory_and_theta():
    m = quiet_model()
    m.se[E_V, 0] = -51.99
    counts, _ = m.run_steps(1, phase="hidden")
    # The leak pulls V below −52 mV (θ − 20 − 52 with θ = 20): no spike without drive.
    assert counts[0] == 0
    m.se[E_V, 0] = -51.0
    m.se[E_GE, 0] = 1.0
    counts, _ = m.run_steps(1, phase="hidden")
    assert counts[0] == 1
    assert m.theta[0] == pytest.approx(20 + 0.07 * 10 / 10)
    assert m.se[E_V, 0] == -65.0 and m.se[E_REF, 0] == 5
    for _ in range(5):
        m.se[E_GE, 0] = 5.0
        m.run_steps(1, phase="hidden")
        assert m.se[E_V, 0] == -65.0
    m.run_steps(1, phase="hidden")
    assert m.se[E_V, 0] > -65.0


def test_theta_soft_bound():
    m = quiet_model()
    m.theta[0] = 30.0
    m.se[E_V, 0] = -20.0
    m.run_steps(1, phase="hidden")
    assert m.theta[0] == pytest.approx(30 + 0.07 * 10 / 20)


def test_theta_decays_per_presentation():
    m = FloatModel(preset(4, tau_theta=1000.0), seed=0)
    m.theta[:] = 20.0
    m._decay_theta()
    assert m.theta[0] == pytest.approx(20.0 * (1 - 0.5 / 1000.0) ** 1000)


def test_traces_and_sym_stdp():
    m = quiet_model()
    m.w_in[7, :] = 0.5
    m.se[E_X, :] = [0.0, 0.5, 1.0, 3.0]
    m.pend_in[7] = 1
    m.run_steps(1, phase="hidden")
    assert m.w_in[7] == pytest.approx([0.5, 0.5025, 0.505, 0.515])
    assert m.x_in[7] == pytest.approx(0.1 * 0.975)          # bumped, then one decay
    m.x_in[:] = 0
    m.x_in[3] = 0.4
    m.pend_e[1] = 1
    m.run_steps(1, phase="hidden")
    assert m.w_in[3, 1] == pytest.approx(0.002)             # post update: η·x_pre
    m.w_in[3, 2] = 0.9999
    m.x_in[3] = 1.0
    m.pend_e[2] = 1
    m.run_steps(1, phase="hidden")
    assert m.w_in[3, 2] == 1.0                              # clipped at wmax


def test_asymmetric_rule_depresses_on_pre():
    m = quiet_model(rule="asym")
    m.w_in[7, :] = 0.5
    m.se[E_X, :] = 1.0
    m.pend_in[7] = 1
    m.run_steps(1, phase="hidden")
    assert m.w_in[7] == pytest.approx([0.495] * 4)
    m.w_in[8, :] = 0.001
    m.pend_in[8] = 1
    m.se[E_X, :] = 1.0
    m.run_steps(1, phase="hidden")
    assert (m.w_in[8] == 0).all()                           # clipped at 0


def test_scaling_float():
    m = FloatModel(preset(100), seed=1)
    m._scale("in")
    m._scale("ec")
    assert m.w_in.sum(axis=0) == pytest.approx(np.full(100, 78.4))
    assert m.w_ec.sum(axis=0) == pytest.approx(np.full(10, 80.0))
