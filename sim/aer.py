"""The Poisson encoder on the host: input spikes as address events, bit-identical to the
chip's encoder and to the golden model's.

In AER input mode the host encodes the image and streams the spikes; the board's encoder is
idle. Both draw from the same encoder streams (``sim/rng.py``), so a host that keeps the lane
states of the run seed produces exactly the spikes the chip would have made: in each time step
the ``m``-th non-zero pixel draws a word from lane ``m mod encoder_lanes`` and spikes when
``word < rate_threshold``. Events are 16-bit words: pixel indices in ascending order, each step
closed by :data:`~symspike.firmware.protocol.AER_STEP_END`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..firmware.config import NetworkConfig
from ..firmware.protocol import AER_STEP_END
from .rng import rate_thresholds, stream_seeds, xorshift32

__all__ = ["AerEncoder"]


@njit(cache=True)
def _encode(lanes, nz_idx, nz_thr, nsteps, end):
    n_lanes = lanes.shape[0]
    out = np.empty(nsteps * (nz_idx.shape[0] + 1), dtype=np.uint16)
    k = 0
    for _ in range(nsteps):
        for m in range(nz_idx.shape[0]):
            lane = m % n_lanes
            s = xorshift32(lanes[lane])
            lanes[lane] = s
            if (s >> 16) < nz_thr[m]:
                out[k] = nz_idx[m]
                k += 1
        out[k] = end
        k += 1
    return out[:k]


class AerEncoder:
    """Host-side copy of the chip's encoder lanes for one run seed.

    Parameters
    ----------
    cfg : NetworkConfig
    seed : int
        Run seed; the lanes start from its encoder streams.
    """

    def __init__(self, cfg: NetworkConfig, seed: int = 0):
        if not isinstance(cfg, NetworkConfig):
            raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
        self._cfg = cfg
        self.lanes = np.array(stream_seeds(seed, cfg.encoder_lanes)["encoder"], dtype=np.int64)
        self._thr = {}

    def presentation(self, image, intensity: int) -> np.ndarray:
        """Events (``uint16``) of one presentation's ``steps_present`` input steps; advances
        the lanes as the chip's encoder would."""
        flat = np.asarray(image, dtype=np.uint8).reshape(-1)
        if flat.shape[0] != self._cfg.n_input:
            raise ValueError(f"an image has {self._cfg.n_input} pixels, not {flat.shape[0]}")
        thr = self._thr.get(intensity)
        if thr is None:
            thr = self._thr[intensity] = rate_thresholds(self._cfg.dt, intensity)
        nz = np.flatnonzero(flat).astype(np.int64)
        return _encode(self.lanes, nz, thr[flat[nz]].astype(np.int64),
                       self._cfg.steps_present, AER_STEP_END)
