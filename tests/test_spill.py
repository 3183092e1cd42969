"""The spill register (``hdl/spill.py``): every beat out once and in order under random
backpressure, one cycle from ``i`` to ``o`` while the consumer is ready, and a producer that
starts beats only on ``room_for`` is never refused."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import data
from amaranth.sim import Simulator

from stream_helpers import stream_get_all, stream_put_all
from symspike.hdl.spill import SpillRegister

Beat = data.StructLayout({"value": 12, "last": 1})


def test_latency_one_while_ready():
    dut = SpillRegister(8, depth=4)

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for value in (5, 6, 7):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, value)
            await ctx.tick()
            # The beat offered before the edge is on the output after it, from the register.
            assert ctx.get(dut.o.valid) == 1 and ctx.get(dut.o.payload) == value
            assert ctx.get(dut.level) == 0
        ctx.set(dut.i.valid, 0)
        await ctx.tick()
        assert ctx.get(dut.o.valid) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("depth,in_flight,stall", [(8, 6, 0.5), (4, 4, 0.8), (1, 1, 0.3)])
def test_order_and_room_under_backpressure(depth, in_flight, stall):
    """A producer with a pipeline of ``in_flight − 1`` stages after its issue, issuing only on
    ``room_for(in_flight)``: every beat arrives, in order, and ``i.ready`` is never low when a
    beat arrives."""
    rng = np.random.default_rng(depth * 7 + in_flight)
    dut = SpillRegister(Beat, depth=depth)
    m = Module()
    m.submodules.dut = dut
    # The producer: an issue decision, then in_flight − 1 register stages to ``i``.
    want = Signal()
    issue = Signal()
    value = Signal(12)
    stages_v = [Signal(name=f"v{s}") for s in range(in_flight - 1)]
    stages_d = [Signal(12, name=f"d{s}") for s in range(in_flight - 1)]
    m.d.comb += issue.eq(want & dut.room_for(in_flight))
    with m.If(issue):
        m.d.sync += value.eq(value + 1)
    chain_v, chain_d = issue, value
    for v, d in zip(stages_v, stages_d):
        m.d.sync += [v.eq(chain_v), d.eq(chain_d)]
        chain_v, chain_d = v, d
    m.d.comb += [dut.i.valid.eq(chain_v), dut.i.payload.value.eq(chain_d),
                 dut.i.payload.last.eq(chain_d[0])]
    count = 400
    got, refused, seen_full = [], [], []

    async def bench(ctx):
        issued = 0
        for _ in range(20_000):
            ctx.set(want, issued < count and rng.random() < 0.9)
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            if ctx.get(issue):
                issued += 1
            if ctx.get(dut.i.valid) and not ctx.get(dut.i.ready):
                refused.append(ctx.get(dut.i.payload.value))
            seen_full.append(ctx.get(dut.level))
            if ctx.get(dut.o.valid) and ready:
                beat = ctx.get(dut.o.payload)
                got.append(beat.value)
                assert beat.last == beat.value & 1
            await ctx.tick()
            if len(got) == count:
                break

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert not refused
    assert got == list(range(count))
    # The backpressure did fill the queue to its limit: the test exercised the spill.
    assert max(seen_full) == depth


def test_parameters():
    with pytest.raises(TypeError, match="depth must be an integer"):
        SpillRegister(8, depth=2.0)
    with pytest.raises(ValueError, match="depth must be at least 1"):
        SpillRegister(8, depth=0)
    dut = SpillRegister(8, depth=8)
    dut._MustUse__silence = True
    with pytest.raises(ValueError, match="need a queue of at least 9"):
        dut.room_for(9)
    assert dut.depth == 8


@pytest.mark.parametrize("depth", [1, 3])
def test_as_skid_buffer(depth):
    """A producer that follows ``i.ready`` (low only while the queue is full): all beats out
    in order under random gaps and backpressure."""
    rng = np.random.default_rng(depth)
    dut = SpillRegister(8, depth=depth)
    beats = [int(v) for v in rng.integers(0, 256, 300)]
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, beats, rng=np.random.default_rng(10 + depth), gap=0.3)

    async def consumer(ctx):
        got.extend(await stream_get_all(ctx, dut.o, len(beats), rng=rng, stall=0.5))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert got == beats
