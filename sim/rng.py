"""The pseudo-random sequences the chip uses, defined once for both models and the gateware.

Every random number on the chip comes from a xorshift32 generator (Marsaglia 2003): three
shifts and XORs, one step per clock in a LUT-only XOR network. The *upper* 16 bits of the new
state are the random word, because the low bits of a freshly shifted state are the weakest.

Three independent streams, each seeded from the run seed by :func:`stream_seeds`:

``encoder[k]``
    Poisson encoder lane ``k``. In every time step of a presentation the encoder walks the
    image's non-zero pixels in ascending pixel index; the ``m``-th of them draws one word from
    lane ``m mod encoder_lanes`` and spikes when ``word < rate_threshold(pixel, intensity)``.
    Zero pixels draw nothing: they can never spike and skipping them is what keeps the encoder
    fast on sparse images.
``teacher``
    One word per time step of a training presentation; the label's C neuron spikes when
    ``word < teacher_threshold``.
``event``
    One word per learning event (a row update for a pre-synaptic spike, a column update for a
    post-synaptic spike), in the order of ``docs/formats.md``. Synapse ``k`` of the row or
    column takes the dither ``(word ^ dither_hash(k)) & (2**sr_bits - 1)``: every synapse
    gets an unbiased dither from one draw per event, and the lanes of the synapse memory can
    apply it in parallel.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from numba import njit

__all__ = [
    "MASK32",
    "xorshift32",
    "stream_seeds",
    "rate_thresholds",
    "teacher_threshold",
    "dither_hash",
]

MASK32 = 0xFFFF_FFFF
#: Knuth's multiplicative-hash constant; the dither hash keeps the product's top bits.
_HASH_MUL = 2654435761


@njit(cache=True, inline="always")
def xorshift32(x):
    """Next state of a xorshift32 generator (state ≠ 0)."""
    x ^= (x << 13) & 0xFFFF_FFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFF_FFFF
    return x


def xorshift32_py(x: int) -> int:
    """Pure-Python :func:`xorshift32`, for tests and the gateware generator."""
    x ^= (x << 13) & MASK32
    x ^= x >> 17
    x ^= (x << 5) & MASK32
    return x


def _splitmix32(seed: int, index: int) -> int:
    # A well-mixed, never-zero seed per stream, so neighbouring run seeds do not give
    # correlated streams.
    z = (seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    z ^= z >> 31
    return (z & MASK32) or 0x2545F491


def stream_seeds(seed: int, encoder_lanes: int) -> dict:
    """The initial xorshift32 states of every stream for run seed ``seed``.

    Returns a dict with ``encoder`` (uint64 array, one state per lane), ``teacher`` and
    ``event`` (ints).
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, not {seed!r}")
    seed = int(seed)
    enc = np.array([_splitmix32(seed, 16 + k) for k in range(encoder_lanes)], dtype=np.uint64)
    return {"encoder": enc, "teacher": _splitmix32(seed, 1), "event": _splitmix32(seed, 2)}


def rate_thresholds(dt_ms: float, intensity: int) -> np.ndarray:
    """Spike threshold of every pixel value 0..255 at ``intensity``, as a 16-bit compare.

    Pixel ``p`` fires at ``p / 8 * intensity`` Hz, so with probability
    ``p * intensity * dt / 8000`` per step; the threshold is that probability times 2**16,
    rounded down with exact rational arithmetic.
    """
    dt = Fraction(dt_ms).limit_denominator(1 << 20)
    p = np.arange(256, dtype=np.int64)
    num = p * int(intensity) * (1 << 16) * dt.numerator
    thr = num // (8000 * dt.denominator)
    return np.minimum(thr, 1 << 16).astype(np.int64)


def teacher_threshold(p: float) -> int:
    """16-bit compare value for a teacher that fires with probability ``p`` per step."""
    return min(int(round(p * (1 << 16))), 1 << 16)


def dither_hash(n: int, bits: int) -> np.ndarray:
    """Dither offsets of synapse indices ``0..n-1`` (a ROM of ``n`` words of ``bits`` bits)."""
    k = np.arange(n, dtype=np.uint64)
    return (((k * np.uint64(_HASH_MUL)) & np.uint64(MASK32)) >> np.uint64(32 - bits)).astype(
        np.int64)
