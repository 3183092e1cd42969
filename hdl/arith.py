"""Constant multiplies and sums in adders: the shapes of arithmetic the units share.

A product by a constant in shifted adds (:func:`const_mul`) keeps a lane-wide datapath off the
device's few DSPs; a balanced tree (:func:`tree_sum`) keeps a sum of many terms log₂ of them
deep instead of a chain.
"""

from __future__ import annotations

from amaranth.hdl import Value

__all__ = ["csd", "tree_sum", "const_mul"]


def csd(k: int) -> list:
    """``k``'s canonical signed digits as ``(shift, sign)``: no two adjacent digits non-zero,
    so at most half of them are (63 898 = 2¹⁶ − 2¹¹ + 2⁹ − 2⁷ + 2⁵ − 2³ + 2¹: 7, not 10)."""
    digits, i = [], 0
    while k:
        if k & 1:
            sign = 2 - (k & 3)          # +1 when k ≡ 1 (mod 4), −1 when k ≡ 3
            digits.append((i, sign))
            k -= sign
        k >>= 1
        i += 1
    return digits


def tree_sum(terms):
    """Sum as a balanced tree of two-input adders: log₂ of the terms deep, not linear."""
    if not terms:
        return Value.cast(0)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)] + \
            terms[len(terms) & ~1:]
    return terms[0]


def const_mul(x, k: int):
    """``x·k`` for a constant ``k ≥ 0`` as sums of shifted copies of ``x`` (the decays run
    ``L`` lanes wide and would otherwise take ``L`` of the device's few DSPs): the positive
    and the negative canonical signed digits of ``k`` each summed in a balanced tree, then
    one subtraction, so that the decay's read-modify-write of a trace row is a few adders
    deep. ``x`` may be signed; the product then is too."""
    if k < 0:
        raise ValueError(f"k must be ≥ 0, not {k}")
    x = Value.cast(x)
    digits = csd(k)
    plus = tree_sum([x << i for i, sign in digits if sign > 0])
    minus = [x << i for i, sign in digits if sign < 0]
    if not minus:
        return plus
    total = tree_sum(minus)
    if x.shape().signed:
        return plus - total
    # Σ plus ≥ Σ minus (k ≥ 0, x ≥ 0): the difference, taken unsigned, is exact.
    width = max(len(plus), len(total))
    return (plus - total)[:width]
