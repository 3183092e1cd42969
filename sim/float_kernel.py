"""Numba kernel of the float reference model: the paper's network in float64.

Same step order as the golden model (:mod:`symspike.sim.golden_kernel`) and the same random
input and teacher spikes, so the two differ only in arithmetic. Parameters come in ``P``, a
float64 array indexed by :data:`P_FIELDS`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .rng import xorshift32

P_FIELDS = (
    "wmax_in", "wmax_ec", "e_v_rest", "e_v_reset", "e_v_floor", "e_thresh_offset",
    "i_v_rest", "i_v_reset", "i_v_thresh", "e_rev_exc", "e_rev_inh", "k_tau_e", "k_tau_i",
    "k_ge", "k_gi", "k_trace", "w_ei", "w_ie", "trace_inc", "eta_in", "eta_ec", "eta_in_dep",
    "eta_ec_dep", "theta_plus", "refrac_steps",
)
_P = {name: i for i, name in enumerate(P_FIELDS)}
_WMAX_IN, _WMAX_EC = _P["wmax_in"], _P["wmax_ec"]
_E_REST, _E_RESET, _E_FLOOR, _E_THR = (_P["e_v_rest"], _P["e_v_reset"], _P["e_v_floor"],
                                       _P["e_thresh_offset"])
_I_REST, _I_RESET, _I_THR = _P["i_v_rest"], _P["i_v_reset"], _P["i_v_thresh"]
_E_EXC, _E_INH = _P["e_rev_exc"], _P["e_rev_inh"]
_K_TAU_E, _K_TAU_I, _K_GE, _K_GI, _K_TR = (_P["k_tau_e"], _P["k_tau_i"], _P["k_ge"],
                                           _P["k_gi"], _P["k_trace"])
_W_EI, _W_IE, _T_INC = _P["w_ei"], _P["w_ie"], _P["trace_inc"]
_ETA_IN, _ETA_EC, _ETA_IN_D, _ETA_EC_D = (_P["eta_in"], _P["eta_ec"], _P["eta_in_dep"],
                                          _P["eta_ec_dep"])
_TH_PLUS, _REFRAC = _P["theta_plus"], _P["refrac_steps"]

E_V, E_GE, E_GI, E_REF, E_X, E_ACC = range(6)
I_V, I_GE, I_REF = range(3)
C_V, C_GE, C_X, C_ACC = range(4)


def params(cfg) -> np.ndarray:
    """The float parameters of ``cfg`` as the kernel's ``P`` array."""
    values = dict(
        wmax_in=cfg.wmax_in, wmax_ec=cfg.wmax_ec, e_v_rest=cfg.e_v_rest,
        e_v_reset=cfg.e_v_reset, e_v_floor=cfg.e_v_floor,
        e_thresh_offset=cfg.e_v_thresh - cfg.theta_offset, i_v_rest=cfg.i_v_rest,
        i_v_reset=cfg.i_v_reset, i_v_thresh=cfg.i_v_thresh, e_rev_exc=cfg.e_rev_exc,
        e_rev_inh=cfg.e_rev_inh, k_tau_e=cfg.dt / cfg.e_tau_m, k_tau_i=cfg.dt / cfg.i_tau_m,
        k_ge=cfg.decay_ge, k_gi=cfg.decay_gi, k_trace=cfg.decay_trace, w_ei=cfg.w_ei,
        w_ie=cfg.w_ie, trace_inc=cfg.trace_inc, eta_in=cfg.eta_in, eta_ec=cfg.eta_ec,
        eta_in_dep=cfg.asym_ratio * cfg.eta_in, eta_ec_dep=cfg.asym_ratio * cfg.eta_ec,
        theta_plus=cfg.theta_plus, refrac_steps=cfg.refrac_steps,
    )
    return np.array([values[name] for name in P_FIELDS], dtype=np.float64)


@njit(cache=True)
def present(P, w_in, w_ec, theta, se, si, sc, x_in,
            pend_in, pend_e, pend_i, pend_c, rng,
            nz_idx, nz_thr, label, teacher_thr,
            nsteps, input_on, learn_in, learn_ec, teacher_on, asym,
            counts_e, counts_c):
    """Run ``nsteps`` time steps of the float network; arguments as the golden kernel's."""
    n_in = w_in.shape[0]
    n = w_in.shape[1]
    n_c = w_ec.shape[1]
    n_lanes = rng.shape[0] - 2
    i_teacher = n_lanes

    wmax_in = P[_WMAX_IN]
    wmax_ec = P[_WMAX_EC]
    t_inc = P[_T_INC]
    k_tr = P[_K_TR]
    eta_in_pre = P[_ETA_IN_D] if asym else P[_ETA_IN]
    eta_in_post = P[_ETA_IN]
    eta_ec_pre = P[_ETA_EC_D] if asym else P[_ETA_EC]
    eta_ec_post = P[_ETA_EC]
    refrac = int(P[_REFRAC])
    e_rest, e_reset, e_floor, e_thr = P[_E_REST], P[_E_RESET], P[_E_FLOOR], P[_E_THR]
    e_exc, e_inh = P[_E_EXC], P[_E_INH]
    i_rest, i_reset, i_thr = P[_I_REST], P[_I_RESET], P[_I_THR]
    k_tau_e, k_tau_i, k_ge, k_gi = P[_K_TAU_E], P[_K_TAU_I], P[_K_GE], P[_K_GI]
    theta_plus = P[_TH_PLUS]

    pend_list = np.empty(n_in, dtype=np.int64)
    n_pend = 0
    for i in range(n_in):
        if pend_in[i]:
            pend_list[n_pend] = i
            n_pend += 1

    for _step in range(nsteps):
        for m in range(n_pend):
            i = pend_list[m]
            if learn_in:
                for j in range(n):
                    w = w_in[i, j]
                    se[E_ACC, j] += w
                    if asym:
                        w = max(w - eta_in_pre * se[E_X, j], 0.0)
                    else:
                        w = min(w + eta_in_pre * se[E_X, j], wmax_in)
                    w_in[i, j] = w
            else:
                for j in range(n):
                    se[E_ACC, j] += w_in[i, j]
            x_in[i] += t_inc

        n_i_spikes = 0
        for j in range(n):
            if pend_i[j]:
                n_i_spikes += 1
        for j in range(n):
            if pend_e[j] == 0:
                continue
            si[I_GE, j] += P[_W_EI]
            if learn_in:
                for i in range(n_in):
                    w_in[i, j] = min(w_in[i, j] + eta_in_post * x_in[i], wmax_in)
            if learn_ec:
                for c in range(n_c):
                    w = w_ec[j, c]
                    sc[C_ACC, c] += w
                    if asym:
                        w = max(w - eta_ec_pre * sc[C_X, c], 0.0)
                    else:
                        w = min(w + eta_ec_pre * sc[C_X, c], wmax_ec)
                    w_ec[j, c] = w
            else:
                for c in range(n_c):
                    sc[C_ACC, c] += w_ec[j, c]
        for j in range(n):
            if pend_e[j]:
                se[E_X, j] += t_inc
            if n_i_spikes:
                se[E_GI, j] += P[_W_IE] * (n_i_spikes - pend_i[j])

        for c in range(n_c):
            if pend_c[c] == 0:
                continue
            if learn_ec:
                for j in range(n):
                    w_ec[j, c] = min(w_ec[j, c] + eta_ec_post * se[E_X, j], wmax_ec)
            sc[C_X, c] += t_inc

        # Branch-free first pass (it vectorises); the rare spikes are handled after.
        any_e = False
        for j in range(n):
            ge = se[E_GE, j] + se[E_ACC, j]
            se[E_ACC, j] = 0.0
            gi = se[E_GI, j]
            v = se[E_V, j]
            vn = v + (e_rest - v + ge * (e_exc - v) + gi * (e_inh - v)) * k_tau_e
            vn = max(vn, e_floor)
            ref = se[E_REF, j]
            free = ref <= 0
            se[E_V, j] = vn if free else v
            se[E_REF, j] = ref if free else ref - 1
            spike = free and vn > theta[j] + e_thr
            pend_e[j] = spike
            any_e |= spike
            se[E_GE, j] = ge * k_ge
            se[E_GI, j] = gi * k_gi
            se[E_X, j] *= k_tr
        if any_e:
            for j in range(n):
                if pend_e[j]:
                    se[E_V, j] = e_reset
                    se[E_REF, j] = refrac
                    counts_e[j] += 1
                    if learn_in:
                        th = theta[j]
                        theta[j] = th + theta_plus * 10.0 / abs(th - 10.0)

        # Inhibitory neurons at rest with no drive stay at rest.
        for j in range(n):
            ge = si[I_GE, j]
            v = si[I_V, j]
            if ge == 0.0 and si[I_REF, j] <= 0 and v == i_rest:
                pend_i[j] = 0
                continue
            spike = 0
            if si[I_REF, j] > 0:
                si[I_REF, j] -= 1
            else:
                v += (i_rest - v + ge * (e_exc - v)) * k_tau_i
                if v > i_thr:
                    spike = 1
                    v = i_reset
                    si[I_REF, j] = refrac
                si[I_V, j] = v
            pend_i[j] = spike
            si[I_GE, j] = ge * k_ge

        if teacher_on:
            ev = xorshift32(rng[i_teacher])
            rng[i_teacher] = ev
            for c in range(n_c):
                sc[C_ACC, c] = 0.0
                pend_c[c] = 0
            if label >= 0 and (ev >> 16) < teacher_thr:
                pend_c[label] = 1
                counts_c[label] += 1
        else:
            for c in range(n_c):
                ge = sc[C_GE, c] + sc[C_ACC, c]
                sc[C_ACC, c] = 0.0
                v = sc[C_V, c]
                v += (P[_I_REST] - v + ge * (P[_E_EXC] - v)) * P[_K_TAU_I]
                spike = 0
                if v > P[_I_THR]:
                    spike = 1
                    v = P[_I_RESET]
                    counts_c[c] += 1
                sc[C_V, c] = v
                pend_c[c] = spike
                sc[C_GE, c] = ge * P[_K_GE]
        for c in range(n_c):
            sc[C_X, c] *= k_tr

        for i in range(n_in):
            x_in[i] *= k_tr
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
def scale_columns(w, target):
    """Rescale every column of ``w`` to sum ``target`` (all-zero columns stay)."""
    n_rows, n_cols = w.shape
    sums = np.zeros(n_cols)
    for i in range(n_rows):
        for j in range(n_cols):
            sums[j] += w[i, j]
    for j in range(n_cols):
        if sums[j] > 0:
            sums[j] = target / sums[j]
    for i in range(n_rows):
        for j in range(n_cols):
            if sums[j] > 0:
                w[i, j] *= sums[j]
