"""Numba kernels of the golden model: one presentation, bit for bit as the gateware.

The order of work inside a time step is the specification (``docs/formats.md``):

A. deliver the spikes of the previous step
   1. input spikes, ascending: add the weight row to the E accumulators and, learning,
      pre-update the row with the E traces (old), then bump the input trace;
   2. E spikes, ascending: E→I drive; learning, post-update the input→E column with the input
      traces (already bumped), then add the E→C row to the C accumulators and pre-update it
      with the C traces (old);
   3. bump the traces of the E spikes; lateral inhibition I→E from the I spikes;
   4. C spikes, ascending: learning, post-update the E→C column with the E traces (bumped);
      bump the C traces.
B. update the neurons (E, I, C), decay conductances and traces, draw the input spikes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fixed import K_INDEX
from .rng import xorshift32

# Constant indices, read by numba as compile-time constants.
_W_MAX = K_INDEX["w_max"]
_SR = K_INDEX["sr"]
_VF = K_INDEX["v_frac"]
_GF = K_INDEX["g_frac"]
_G_MAX = K_INDEX["g_max"]
_T_MAX = K_INDEX["trace_max"]
_TH_F = K_INDEX["theta_frac"]
_TH_MAX = K_INDEX["theta_max"]
_CF = K_INDEX["const_frac"]
_V_MIN = K_INDEX["v_min"]
_V_MAX = K_INDEX["v_max"]
_E_REST = K_INDEX["e_v_rest"]
_E_RESET = K_INDEX["e_v_reset"]
_E_FLOOR = K_INDEX["e_v_floor"]
_E_THR = K_INDEX["e_thresh_offset"]
_I_REST = K_INDEX["i_v_rest"]
_I_RESET = K_INDEX["i_v_reset"]
_I_THR = K_INDEX["i_thresh"]
_E_EXC = K_INDEX["e_rev_exc"]
_E_INH = K_INDEX["e_rev_inh"]
_K_TAU_E = K_INDEX["k_tau_e"]
_K_TAU_I = K_INDEX["k_tau_i"]
_K_GE = K_INDEX["k_ge"]
_K_GI = K_INDEX["k_gi"]
_K_TR = K_INDEX["k_trace"]
_K_W_IN = K_INDEX["k_w_in"]
_K_W_EC = K_INDEX["k_w_ec"]
_G_EI = K_INDEX["g_ei"]
_G_IE = K_INDEX["g_ie"]
_T_INC = K_INDEX["trace_inc"]
_ETA_IN = K_INDEX["eta_in"]
_ETA_EC = K_INDEX["eta_ec"]
_ETA_IN_D = K_INDEX["eta_in_dep"]
_ETA_EC_D = K_INDEX["eta_ec_dep"]
_TH_SHIFT = K_INDEX["theta_lut_shift"]
_REFRAC = K_INDEX["refrac_steps"]
_TF = K_INDEX["trace_frac"]
_EF = K_INDEX["eta_frac"]
_RF = K_INDEX["recip_frac"]

# Indices into the per-neuron state arrays.
E_V, E_GE, E_GI, E_REF, E_X, E_ACC = range(6)
I_V, I_GE, I_REF = range(3)
C_V, C_GE, C_X, C_ACC = range(4)


@njit(cache=True, inline="always")
def _delta(x, eta, shift, sr, dither):
    # η·x in weight LSBs: stochastic rounding adds an sr-bit dither below the LSB,
    # otherwise round half up.
    prod = x * eta
    if sr > 0:
        return ((prod >> (shift - sr)) + dither) >> sr
    return (prod + (1 << (shift - 1))) >> shift


@njit(cache=True, inline="always")
def _pre_update(row, acc, x_post, hashes, eta, shift, sr, d, w_max, asym):
    # One row read-modify-write: accumulate the old weight, then apply η·x_post. The four
    # variants keep branches out of the loops so that they vectorise.
    n = row.shape[0]
    srmask = (1 << sr) - 1
    if sr > 0:
        if asym:
            for j in range(n):
                w = row[j]
                acc[j] += w
                row[j] = max(w - (((x_post[j] * eta) >> (shift - sr)) + ((d ^ hashes[j]) & srmask) >> sr), 0)
        else:
            for j in range(n):
                w = row[j]
                acc[j] += w
                row[j] = min(w + ((((x_post[j] * eta) >> (shift - sr)) + ((d ^ hashes[j]) & srmask)) >> sr), w_max)
    else:
        half = 1 << (shift - 1)
        if asym:
            for j in range(n):
                w = row[j]
                acc[j] += w
                row[j] = max(w - ((x_post[j] * eta + half) >> shift), 0)
        else:
            for j in range(n):
                w = row[j]
                acc[j] += w
                row[j] = min(w + ((x_post[j] * eta + half) >> shift), w_max)


@njit(cache=True)
def present(K, theta_lut, hash_in, hash_e, hash_c,
            w_in, w_ec, theta, se, si, sc, x_in,
            pend_in, pend_e, pend_i, pend_c, rng,
            nz_idx, nz_thr, label, teacher_thr,
            nsteps, input_on, learn_in, learn_ec, teacher_on, asym,
            counts_e, counts_c, trace_idx):
    """Run ``nsteps`` time steps; state arrays are updated in place.

    ``trace_idx`` lists the inputs whose traces may be non-zero (all of them, or after a
    reset only the image's non-zero pixels): decaying a zero trace is the identity, so the
    others are skipped.

    ``rng`` holds the xorshift32 states: ``encoder_lanes`` encoder lanes, then teacher, then
    event. ``pend_*`` are the spikes of the previous step (0/1). Spikes of E and C are added to
    ``counts_e`` and ``counts_c``.
    """
    n_in = w_in.shape[0]
    n = w_in.shape[1]
    n_c = w_ec.shape[1]
    n_lanes = rng.shape[0] - 2
    i_teacher = n_lanes
    i_event = n_lanes + 1

    w_max = K[_W_MAX]
    sr = K[_SR]
    srmask = (1 << sr) - 1
    wshift = K[_TF] + K[_EF]
    g_max = K[_G_MAX]
    t_max = K[_T_MAX]
    t_inc = K[_T_INC]
    gf = K[_GF]
    cf = K[_CF]
    vf = K[_VF]
    th_f = K[_TH_F]
    v_min = K[_V_MIN]
    v_max = K[_V_MAX]
    eta_in_pre = K[_ETA_IN_D] if asym else K[_ETA_IN]
    eta_in_post = K[_ETA_IN]
    eta_ec_pre = K[_ETA_EC_D] if asym else K[_ETA_EC]
    eta_ec_post = K[_ETA_EC]
    k_tr = K[_K_TR]
    v_round = 1 << (gf + cf - 1)
    k_w_in = K[_K_W_IN]
    k_ge = K[_K_GE]
    k_gi = K[_K_GI]
    k_tau_e = K[_K_TAU_E]
    k_tau_i = K[_K_TAU_I]
    e_rest = K[_E_REST]
    e_reset = K[_E_RESET]
    e_floor = K[_E_FLOOR]
    e_thr = K[_E_THR]
    e_exc = K[_E_EXC]
    e_inh = K[_E_INH]
    i_rest = K[_I_REST]
    i_reset = K[_I_RESET]
    i_thr = K[_I_THR]
    th_sh = th_f - vf
    th_max = K[_TH_MAX]
    lut_sh = K[_TH_SHIFT]
    refrac = K[_REFRAC]

    # Pending input spikes as an ascending index list (nz_idx is ascending).
    pend_list = np.empty(n_in, dtype=np.int64)
    n_pend = 0
    for i in range(n_in):
        if pend_in[i]:
            pend_list[n_pend] = i
            n_pend += 1

    # Spikes of the previous step as lists, so that the delivery does not scan every neuron.
    e_list = np.empty(n, dtype=np.int64)
    n_e = 0
    n_i_spikes = 0
    for j in range(n):
        if pend_e[j]:
            e_list[n_e] = j
            n_e += 1
        if pend_i[j]:
            n_i_spikes += 1

    for _step in range(nsteps):
        # ---------------- A. deliver the previous step's spikes ----------------
        for m in range(n_pend):
            i = pend_list[m]
            if learn_in:
                ev = xorshift32(rng[i_event])
                rng[i_event] = ev
                _pre_update(w_in[i], se[E_ACC], se[E_X], hash_e, eta_in_pre, wshift, sr,
                            ev >> 16, w_max, asym)
            else:
                for j in range(n):
                    se[E_ACC, j] += w_in[i, j]
            x = x_in[i] + t_inc
            x_in[i] = x if x < t_max else t_max

        for m in range(n_e):
            j = e_list[m]
            g = si[I_GE, j] + K[_G_EI]
            si[I_GE, j] = g if g < g_max else g_max
            if learn_in:
                ev = xorshift32(rng[i_event])
                rng[i_event] = ev
                d = ev >> 16
                for i in range(n_in):
                    dw = _delta(x_in[i], eta_in_post, wshift, sr, (d ^ hash_in[i]) & srmask)
                    w = w_in[i, j] + dw
                    w_in[i, j] = w if w < w_max else w_max
            if learn_ec:
                ev = xorshift32(rng[i_event])
                rng[i_event] = ev
                _pre_update(w_ec[j], sc[C_ACC], sc[C_X], hash_c, eta_ec_pre, wshift, sr,
                            ev >> 16, w_max, asym)
            else:
                for c in range(n_c):
                    sc[C_ACC, c] += w_ec[j, c]
        for m in range(n_e):
            j = e_list[m]
            x = se[E_X, j] + t_inc
            se[E_X, j] = x if x < t_max else t_max
        if n_i_spikes:
            for j in range(n):
                g = se[E_GI, j] + K[_G_IE] * (n_i_spikes - pend_i[j])
                se[E_GI, j] = g if g < g_max else g_max

        for c in range(n_c):
            if pend_c[c] == 0:
                continue
            if learn_ec:
                ev = xorshift32(rng[i_event])
                rng[i_event] = ev
                d = ev >> 16
                for j in range(n):
                    dw = _delta(se[E_X, j], eta_ec_post, wshift, sr, (d ^ hash_e[j]) & srmask)
                    w = w_ec[j, c] + dw
                    w_ec[j, c] = w if w < w_max else w_max
            x = sc[C_X, c] + t_inc
            sc[C_X, c] = x if x < t_max else t_max

        # ---------------- B. neuron updates ----------------
        # Branch-free first pass (it vectorises); the rare spikes are handled after.
        any_e = False
        for j in range(n):
            ge = se[E_GE, j] + ((se[E_ACC, j] * k_w_in + 32768) >> 16)
            se[E_ACC, j] = 0
            ge = min(ge, g_max)
            gi = se[E_GI, j]
            v = se[E_V, j]
            cur = ((e_rest - v) << gf) + ge * (e_exc - v) + gi * (e_inh - v)
            vn = min(max(v + ((cur * k_tau_e + v_round) >> (gf + cf)), e_floor), v_max)
            ref = se[E_REF, j]
            free = ref == 0
            se[E_V, j] = vn if free else v
            se[E_REF, j] = ref if free else ref - 1
            spike = free and vn > (theta[j] >> th_sh) + e_thr
            pend_e[j] = spike
            any_e |= spike
            se[E_GE, j] = (ge * k_ge) >> cf
            se[E_GI, j] = (gi * k_gi) >> cf
            se[E_X, j] = (se[E_X, j] * k_tr) >> cf
        n_e = 0
        if any_e:
            for j in range(n):
                if pend_e[j]:
                    e_list[n_e] = j
                    n_e += 1
                    se[E_V, j] = e_reset
                    se[E_REF, j] = refrac
                    counts_e[j] += 1
                    if learn_in:
                        th = theta[j] + theta_lut[theta[j] >> lut_sh]
                        theta[j] = th if th < th_max else th_max

        # Inhibitory neurons at rest with no drive stay at rest: skipping them is exact.
        n_i_spikes = 0
        for j in range(n):
            ge = si[I_GE, j]
            v = si[I_V, j]
            ref = si[I_REF, j]
            if ge == 0 and ref == 0 and v == i_rest:
                pend_i[j] = 0
                continue
            spike = 0
            if ref > 0:
                si[I_REF, j] = ref - 1
            else:
                cur = ((i_rest - v) << gf) + ge * (e_exc - v)
                v = min(max(v + ((cur * k_tau_i + v_round) >> (gf + cf)), v_min), v_max)
                if v > i_thr:
                    spike = 1
                    n_i_spikes += 1
                    v = i_reset
                    si[I_REF, j] = refrac
                si[I_V, j] = v
            pend_i[j] = spike
            si[I_GE, j] = (ge * k_ge) >> cf

        if teacher_on:
            ev = xorshift32(rng[i_teacher])
            rng[i_teacher] = ev
            for c in range(n_c):
                sc[C_ACC, c] = 0
                pend_c[c] = 0
            if label >= 0 and (ev >> 16) < teacher_thr:
                pend_c[label] = 1
                counts_c[label] += 1
        else:
            for c in range(n_c):
                ge = sc[C_GE, c] + ((sc[C_ACC, c] * K[_K_W_EC] + 32768) >> 16)
                sc[C_ACC, c] = 0
                if ge > g_max:
                    ge = g_max
                v = sc[C_V, c]
                cur = ((K[_I_REST] - v) << gf) + ge * (K[_E_EXC] - v)
                v += (cur * K[_K_TAU_I] + v_round) >> (gf + cf)
                if v < v_min:
                    v = v_min
                if v > v_max:
                    v = v_max
                spike = 0
                if v > K[_I_THR]:
                    spike = 1
                    v = K[_I_RESET]
                    counts_c[c] += 1
                sc[C_V, c] = v
                pend_c[c] = spike
                sc[C_GE, c] = (ge * K[_K_GE]) >> cf
        for c in range(n_c):
            sc[C_X, c] = (sc[C_X, c] * k_tr) >> cf

        for m in range(trace_idx.shape[0]):
            i = trace_idx[m]
            x = x_in[i]
            if x:
                x_in[i] = (x * k_tr) >> cf
        for m in range(n_pend):
            pend_in[pend_list[m]] = 0
        n_pend = 0
        if input_on:
            for m in range(nz_idx.shape[0]):
                lane = m % n_lanes
                s = xorshift32(rng[lane])
                rng[lane] = s
                if (s >> 16) < nz_thr[m]:
                    pend_in[nz_idx[m]] = 1
                    pend_list[n_pend] = nz_idx[m]
                    n_pend += 1


@njit(cache=True)
def scale_columns(w, target, recip_frac, w_max, sr, rng, hash_rows):
    """Synaptic scaling of every column of ``w`` to sum ``target`` (weight codes).

    The factor is ``floor(target·2**recip_frac / sum)`` (one reciprocal per column); each
    weight becomes ``min((w·factor + r) >> recip_frac, w_max)``. With stochastic rounding
    each column is one learning event: ``r`` is the dither of the row, shifted to the top of
    the discarded fraction; otherwise ``r`` is one half. An all-zero column is left alone.
    Without the dither, weights too small for one rounding step never shrink and the
    scaling stops depressing them.
    """
    n_rows, n_cols = w.shape
    i_event = rng.shape[0] - 1
    sums = np.zeros(n_cols, dtype=np.int64)
    for i in range(n_rows):
        for j in range(n_cols):
            sums[j] += w[i, j]
    srmask = (1 << sr) - 1
    factor = np.zeros(n_cols, dtype=np.int64)
    dither = np.zeros(n_cols, dtype=np.int64)
    for j in range(n_cols):
        if sums[j] == 0:
            continue
        factor[j] = (target << recip_frac) // sums[j]
        if sr > 0:
            ev = xorshift32(rng[i_event])
            rng[i_event] = ev
            dither[j] = ev >> 16
    # Row-major pass over the weights; a zero column has factor 0 and is skipped.
    half = 1 << (recip_frac - 1)
    dshift = recip_frac - sr
    for i in range(n_rows):
        h = hash_rows[i]
        for j in range(n_cols):
            if sr > 0:
                r = ((dither[j] ^ h) & srmask) << dshift
            else:
                r = half
            v = (w[i, j] * factor[j] + r) >> recip_frac
            v = v if v < w_max else w_max
            w[i, j] = v if factor[j] > 0 else w[i, j]


@njit(cache=True)
def decay_theta(theta, k_theta):
    """θ decay over one presentation: ``θ -= (θ·k_theta + 2**31) >> 32``."""
    for j in range(theta.shape[0]):
        theta[j] -= (theta[j] * k_theta + (1 << 31)) >> 32
