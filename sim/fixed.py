"""Integer constants of the golden model and the gateware, derived from a configuration.

:func:`derive` turns the real-valued :class:`~symspike.firmware.config.NetworkConfig` into the
integers the hardware holds: thresholds and potentials scaled by ``2**v_frac``, decay factors
in ``const_frac`` fraction bits, learning rates in weight LSBs, the θ-increment LUT. The
golden model and the gateware both read these, so the rounding of every constant is defined
here once. ``docs/formats.md`` explains each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from ..firmware.config import NetworkConfig

__all__ = ["Constants", "derive", "K_INDEX", "to_array"]

#: θ-increment LUT resolution: entries per mV.
THETA_LUT_PER_MV = 8


def _r(x: float) -> int:
    # Round half away from zero; the hardware constants are generated with the same rule.
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


@dataclass(frozen=True)
class Constants:
    """Every integer constant of the datapath (see ``docs/formats.md``)."""

    weight_bits: int
    w_max: int            # largest weight code, 2**weight_bits - 1
    sr: int               # stochastic-rounding dither bits, 0 when rounding to nearest
    v_frac: int
    g_frac: int
    g_max: int
    trace_frac: int
    trace_max: int
    theta_frac: int
    theta_max: int
    const_frac: int
    eta_frac: int
    recip_frac: int

    v_min: int
    v_max: int
    e_v_rest: int
    e_v_reset: int
    e_v_floor: int
    e_thresh_offset: int  # V > (θ >> (theta_frac - v_frac)) + e_thresh_offset spikes
    i_v_rest: int
    i_v_reset: int
    i_thresh: int
    e_rev_exc: int
    e_rev_inh: int

    k_tau_e: int          # dt/τm of E, const_frac bits
    k_tau_i: int          # dt/τm of I and C
    k_ge: int             # exp(-dt/τe)
    k_gi: int             # exp(-dt/τi)
    k_trace: int          # 1 - dt/τtrace
    k_w_in: int           # weight code sum → conductance, 16 fraction bits
    k_w_ec: int
    g_ei: int             # fixed E→I conductance
    g_ie: int             # fixed I→E conductance
    trace_inc: int
    eta_in: int           # η / wmax in weight LSBs, eta_frac bits
    eta_ec: int
    eta_in_dep: int       # depression (asymmetric rule only)
    eta_ec_dep: int
    theta_init: int
    theta_lut_shift: int  # LUT index = θ >> theta_lut_shift
    k_theta: int          # θ decay per presentation, 32 fraction bits
    target_in: int        # column-sum targets in weight codes
    target_ec: int
    refrac_steps: int

    theta_lut: tuple

    @property
    def w_shift(self) -> int:
        """Right shift of ``trace × eta`` products down to weight LSBs."""
        return self.trace_frac + self.eta_frac


#: Scalar fields passed to the numba kernels, in this order (see :func:`to_array`).
K_FIELDS = tuple(f.name for f in fields(Constants) if f.name != "theta_lut")
K_INDEX = {name: i for i, name in enumerate(K_FIELDS)}


def derive(cfg: NetworkConfig) -> Constants:
    """The integer constants of ``cfg``."""
    if not isinstance(cfg, NetworkConfig):
        raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
    f = cfg.formats
    vf, gf, cf, tf = f.v_frac, f.g_frac, f.const_frac, f.trace_frac
    B = f.weight_bits

    def v(mv):
        return _r(mv * (1 << vf))

    steps = cfg.steps_present + cfg.steps_rest
    theta_keep = (1.0 - cfg.dt / cfg.tau_theta) ** steps
    lut_shift = f.theta_frac - int(math.log2(THETA_LUT_PER_MV))
    theta_max = (1 << f.theta_bits) - 1
    lut = []
    for idx in range((theta_max >> lut_shift) + 1):
        centre = (idx + 0.5) / THETA_LUT_PER_MV
        # The soft bound θ+·10/|θ−10| diverges at 10 mV; half an entry's width caps it.
        dist = max(abs(centre - 10.0), 0.5 / THETA_LUT_PER_MV)
        lut.append(min(_r(cfg.theta_plus * 10.0 / dist * (1 << f.theta_frac)), theta_max))

    return Constants(
        weight_bits=B,
        w_max=(1 << B) - 1,
        sr=f.sr_bits if f.stochastic_rounding else 0,
        v_frac=vf,
        g_frac=gf,
        g_max=(1 << f.g_bits) - 1,
        trace_frac=tf,
        trace_max=(1 << f.trace_bits) - 1,
        theta_frac=f.theta_frac,
        theta_max=theta_max,
        const_frac=cf,
        eta_frac=f.eta_frac,
        recip_frac=f.recip_frac,
        v_min=-(1 << (f.v_bits - 1)),
        v_max=(1 << (f.v_bits - 1)) - 1,
        e_v_rest=v(cfg.e_v_rest),
        e_v_reset=v(cfg.e_v_reset),
        e_v_floor=v(cfg.e_v_floor),
        e_thresh_offset=v(cfg.e_v_thresh - cfg.theta_offset),
        i_v_rest=v(cfg.i_v_rest),
        i_v_reset=v(cfg.i_v_reset),
        i_thresh=v(cfg.i_v_thresh),
        e_rev_exc=v(cfg.e_rev_exc),
        e_rev_inh=v(cfg.e_rev_inh),
        k_tau_e=_r(cfg.dt / cfg.e_tau_m * (1 << cf)),
        k_tau_i=_r(cfg.dt / cfg.i_tau_m * (1 << cf)),
        k_ge=_r(cfg.decay_ge * (1 << cf)),
        k_gi=_r(cfg.decay_gi * (1 << cf)),
        k_trace=_r(cfg.decay_trace * (1 << cf)),
        k_w_in=_r(cfg.wmax_in * 2.0 ** (gf - B + 16)),
        k_w_ec=_r(cfg.wmax_ec * 2.0 ** (gf - B + 16)),
        g_ei=_r(cfg.w_ei * (1 << gf)),
        g_ie=_r(cfg.w_ie * (1 << gf)),
        trace_inc=_r(cfg.trace_inc * (1 << tf)),
        eta_in=_r(cfg.eta_in / cfg.wmax_in * 2.0 ** (B + f.eta_frac)),
        eta_ec=_r(cfg.eta_ec / cfg.wmax_ec * 2.0 ** (B + f.eta_frac)),
        eta_in_dep=_r(cfg.asym_ratio * cfg.eta_in / cfg.wmax_in * 2.0 ** (B + f.eta_frac)),
        eta_ec_dep=_r(cfg.asym_ratio * cfg.eta_ec / cfg.wmax_ec * 2.0 ** (B + f.eta_frac)),
        theta_init=_r(cfg.theta_init * (1 << f.theta_frac)),
        theta_lut_shift=lut_shift,
        k_theta=_r((1.0 - theta_keep) * 2.0 ** 32),
        target_in=_r(cfg.target_in / cfg.wmax_in * (1 << B)),
        target_ec=_r(cfg.target_ec / cfg.wmax_ec * (1 << B)),
        refrac_steps=cfg.refrac_steps,
        theta_lut=tuple(lut),
    )


def to_array(k: Constants) -> np.ndarray:
    """The scalar constants as an int64 array indexed by :data:`K_INDEX`."""
    return np.array([getattr(k, name) for name in K_FIELDS], dtype=np.int64)
