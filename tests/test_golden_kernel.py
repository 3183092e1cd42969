"""The golden model's arithmetic against values worked out by hand (default formats).

Default formats: V Q9.8 (LSB 1/256 mV), g Q9.10, traces Q1.12, θ Q6.24, constants Q0.16,
8-bit weights (input→E LSB 1/256, E→C LSB 8/256).
"""

import numpy as np

from symspike.firmware.config import preset
from symspike.sim.golden_kernel import C_X, E_GE, E_GI, E_REF, E_V, E_X, I_GE, I_V
from symspike.sim.network import GoldenModel


def quiet_model(n=4, **formats):
    """A golden model with zero weights and rest state, so single steps are predictable."""
    cfg = preset(n, formats=formats) if formats else preset(n)
    m = GoldenModel(cfg, seed=0)
    m.w_in[:] = 0
    m.w_ec[:] = 0
    m.reset_state()
    return m


def test_constants_by_hand():
    k = GoldenModel(preset(100), seed=0).const
    assert k.k_tau_e == 328            # 0.5/100 · 2**16 = 327.68
    assert k.k_tau_i == 3277           # 0.5/10 · 2**16
    assert k.k_ge == 39750             # exp(-0.5) · 2**16
    assert k.k_gi == 51039             # exp(-0.25) · 2**16
    assert k.k_trace == 63898          # 0.975 · 2**16
    assert k.trace_inc == 410          # 0.1 · 2**12
    assert k.e_v_rest == -16640        # -65 · 256
    assert k.e_thresh_offset == -18432  # (-52 - 20) · 256
    assert k.g_ei == 10650             # 10.4 · 1024
    assert k.g_ie == 17408
    assert k.eta_in == 83886           # 0.005 · 2**8 · 2**16
    assert k.eta_ec == 83886           # 0.04/8 · 2**8 · 2**16
    assert k.target_in == 20070        # 78.4 · 256
    assert k.target_ec == 2560         # 80/8 · 256
    assert k.theta_init == 20 << 24


def test_lif_step_by_hand():
    m = quiet_model()
    m.se[E_V, 0] = -60 * 256
    m.se[E_GE, 0] = 512                # 0.5
    m.se[E_GI, 0] = 256                # 0.25
    m.run_steps(1)
    # cur = (-65+60)·256·1024 + 512·(0+60)·256 + 256·(-100+60)·256 = 3 932 160
    # dV = (3 932 160 · 328 + 2**25) >> 26 = 19   (float: 0.075 mV = 19.2 LSB)
    assert m.se[E_V, 0] == -15360 + 19
    assert m.se[E_GE, 0] == 310        # 512 · 39750 >> 16
    assert m.se[E_GI, 0] == 199        # 256 · 51039 >> 16
    # A neuron at rest with no input stays exactly at rest.
    assert m.se[E_V, 1] == -16640


def test_spike_reset_refractory_and_threshold_adaptation():
    m = quiet_model()
    m.se[E_V, 0] = -52 * 256 + 10      # just above the initial threshold once it moves up
    m.se[E_GE, 0] = 4 << 10            # strong drive keeps pushing V up
    counts, _ = m.run_steps(1, phase="hidden")
    assert counts[0] == 1 and m.pend_e[0] == 1
    assert m.se[E_V, 0] == -16640 and m.se[E_REF, 0] == 5
    # θ += θ+·10/|θ−10| read from the LUT entry of θ = 20 mV (centre 20.0625 mV).
    assert m.theta[0] == (20 << 24) + round(0.07 * 10 / 10.0625 * 2 ** 24)
    m.se[E_GE, 0] = 8 << 10
    for _ in range(5):                 # 5 refractory steps: V clamped despite the drive
        m.run_steps(1, phase="hidden")
        assert m.se[E_V, 0] == -16640
    m.run_steps(1, phase="hidden")
    assert m.se[E_V, 0] > -16640 and m.se[E_REF, 0] == 0


def test_theta_frozen_at_test():
    m = quiet_model()
    m.se[E_V, 0] = -40 * 256
    m.se[E_GE, 0] = 4 << 10
    counts, _ = m.run_steps(1, phase="test")
    assert counts[0] == 1 and m.theta[0] == 20 << 24


def test_trace_decay_and_increment():
    m = quiet_model()
    m.x_in[3] = 2048                   # 0.5
    m.run_steps(1)
    assert m.x_in[3] == 1996           # 2048 · 63898 >> 16
    m.pend_in[3] = 1                   # an input spike bumps its trace before the decay
    m.run_steps(1)
    assert m.x_in[3] == ((1996 + 410) * 63898) >> 16


def test_sym_pre_update_nearest():
    m = quiet_model(stochastic_rounding=False)
    m.w_in[7, :] = 100
    m.se[E_X, :] = [0, 2048, 4096, 8191]        # post traces 0, 0.5, 1, ~2
    m.pend_in[7] = 1
    m.run_steps(1, phase="hidden")
    # Δ = round(x · 0.005 · 256): 0, 0.64→1, 1.28→1, 2.56→3
    assert list(m.w_in[7]) == [100, 101, 101, 103]
    # The accumulation used the old weights: ge = 100/256 per neuron, then one decay step.
    assert m.se[E_GE, 0] == ((100 * 4) * 39750) >> 16


def test_asym_pre_update_depresses_and_post_potentiates():
    m = GoldenModel(preset(4, rule="asym", formats={"stochastic_rounding": False}), seed=0)
    m.w_in[:] = 0
    m.reset_state()
    m.w_in[7, :] = 100
    m.se[E_X, :] = 4096                          # post trace 1.0
    m.pend_in[7] = 1
    m.run_steps(1, phase="hidden")
    assert list(m.w_in[7]) == [99] * 4           # 100 − round(1.28)
    m.x_in[:] = 0
    m.x_in[7] = 4096
    m.pend_e[2] = 1                              # post spike of neuron 2
    m.run_steps(1, phase="hidden")
    assert m.w_in[7, 2] == 100 and m.w_in[7, 1] == 99


def test_post_update_uses_bumped_pre_trace_and_clips():
    m = quiet_model(stochastic_rounding=False)
    m.w_in[:, 1] = 254
    m.x_in[:] = 0
    m.x_in[5] = 4096 * 2 - 1                     # trace ≈ 2: Δ = round(2.56) = 3 → clip at 255
    m.pend_e[1] = 1
    m.run_steps(1, phase="hidden")
    assert m.w_in[5, 1] == 255
    assert m.w_in[6, 1] == 254                   # zero trace: no change
    assert m.si[I_GE, 1] == (10650 * 39750) >> 16  # E→I drive, decayed once


def test_stochastic_rounding_is_unbiased():
    m = quiet_model(n=64)
    m.w_in[:] = 100
    total = 0
    for _ in range(400):
        m.se[E_X, :] = 2048                      # Δ = 0.64 LSB
        m.w_in[0] = 100                          # far from the clip at 255
        m.pend_in[0] = 1
        before = m.w_in[0].astype(np.int64).copy()
        m.run_steps(1, phase="hidden")
        total += int((m.w_in[0] - before).sum())
    mean = total / (400 * 64)
    assert abs(mean - 0.64) < 0.02
    # Round to nearest would give exactly 1 every time.
    m2 = quiet_model(n=64, stochastic_rounding=False)
    m2.w_in[:] = 100
    m2.se[E_X, :] = 2048
    m2.pend_in[0] = 1
    m2.run_steps(1, phase="hidden")
    assert (m2.w_in[0] == 101).all()


def test_lateral_inhibition_spares_own_partner():
    m = quiet_model()
    m.pend_i[1] = 1
    m.pend_i[2] = 1
    m.run_steps(1)
    g = 17408
    assert m.se[E_GI, 0] == (2 * g * 51039) >> 16
    assert m.se[E_GI, 1] == (1 * g * 51039) >> 16
    assert m.se[E_GI, 2] == (1 * g * 51039) >> 16


def test_inhibitory_neuron_fires_after_partner():
    m = quiet_model()
    m.pend_e[0] = 1
    v = []
    for _ in range(6):
        m.run_steps(1)
        v.append(int(m.si[I_V, 0]))
        if m.pend_i[0]:
            break
    assert m.pend_i[0] == 1, "one E spike (10.4) drives its I partner over threshold"
    assert m.pend_i[1] == 0


def test_scaling_hits_target_and_stays_in_range():
    m = GoldenModel(preset(100), seed=3)
    m._scale("in")
    sums = m.w_in.sum(axis=0)
    assert np.all(np.abs(sums - 20070) < 784 * 0.05)
    assert m.w_in.max() <= 255 and m.w_in.min() >= 0
    m.w_in[:, 5] = 0
    m._scale("in")
    assert m.w_in[:, 5].sum() == 0                # an all-zero column stays


def test_teacher_rate_and_clamping():
    m = quiet_model()
    _, c = m.run_steps(4000, phase="both", label=3)
    assert c[3] > 0 and c.sum() == c[3]
    rate = c[3] / (4000 * 0.5e-3)
    assert 185 < rate < 215


def test_c_readout_at_test_is_lif():
    m = quiet_model()
    m.w_ec[0, 4] = 255                           # ≈ 8
    m.pend_e[0] = 1
    _, c = m.run_steps(3)
    # No refractory period: a strong synapse makes a burst, and only its target fires.
    assert c[4] >= 1 and c.sum() == c[4]
    assert m.sc[C_X, 4] > 0                      # C traces follow C spikes at test too
