"""Constant multiplies in adders (``hdl/arith.py``): :func:`const_mul` is exact for random
inputs, unsigned and signed, and constants (0, 1, powers of two, all-ones, the trace decay
constant, random ones)."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from symspike.firmware.config import preset
from symspike.hdl.arith import const_mul
from symspike.sim.fixed import derive


def test_const_mul_exact():
    rng = np.random.default_rng(2)
    k_trace = derive(preset(10)).k_trace
    consts = [0, 1, 2, 3, 5, 255, 256, 4095, (1 << 20) - 1, k_trace] + \
        [int(c) for c in rng.integers(0, 1 << 20, 12)]
    m = Module()
    xs = [Signal(13), Signal(20), Signal(signed(39))]
    outs = {}
    for n, x in enumerate(xs):
        for c in consts:
            y = Signal(signed(64), name=f"y_{n}_{c}")
            m.d.comb += y.eq(const_mul(x, c))
            outs[n, c] = y

    async def bench(ctx):
        for n, x in enumerate(xs):
            w, signed_ = len(x), x.shape().signed
            lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if signed_ else (0, (1 << w) - 1)
            values = [0, 1, lo, hi] + ([-1] if lo < 0 else []) + \
                [int(v) for v in rng.integers(lo, hi + 1, 40)]
            for v in values:
                ctx.set(x, v)
                for c in consts:
                    assert ctx.get(outs[n, c]) == v * c, (x.shape(), v, c)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_const_mul_rejects_a_negative_constant():
    with pytest.raises(ValueError, match="k must be ≥ 0, not -3"):
        const_mul(Signal(8), -3)
