"""Poisson encoder and xorshift32 gateware against the golden model.

Amaranth-simulator unit tests (async testbenches) compare every time step's spike list with
``GoldenModel.run_steps``; the cocotb tests run the exported Verilog on Icarus and Verilator
with the bench ``tests/cocotb/encoder_bench.py``.
"""

from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from stream_helpers import stream_get, stream_get_until, stream_put, stream_put_all
from symspike.firmware.config import preset
from symspike.hdl.encoder import PoissonEncoder, RateCompare, rate_fraction
from symspike.hdl.xorshift import Xorshift32, xorshift32_next
from symspike.sim.cosim import SIMULATORS, run_cocotb, unavailable_reason
from symspike.sim.network import GoldenModel
from symspike.sim.rng import rate_thresholds, stream_seeds, xorshift32_py

N_INPUT = 784
BENCH = Path(__file__).parent / "cocotb" / "encoder_bench.py"


# ----------------------------------------------------------------------------- harness
def pixel_payloads(image, first=True):
    flat = np.asarray(image, dtype=np.int64).reshape(-1)
    return [{"value": int(p), "first": int(first and i == 0)} for i, p in enumerate(flat)]


def random_image(rng, density):
    return (rng.integers(1, 256, N_INPUT) * (rng.random(N_INPUT) < density)).astype(np.uint8)


def simulate(dut, script, *, stall=0.0, gap=0.0, tb_seed=0):
    """Run ``script`` on ``dut`` in the Amaranth simulator.

    ``script`` is a list of ``("load", image)``, ``("partial", image, count)`` (the first
    ``count`` pixels only), ``("seeds", states)`` and ``("step", intensity)``; returns the
    spike list and the number of cycles ``busy`` was high of every step. The lane states
    after each step are appended to ``dut.states_seen`` (the golden model's ``rng``).
    """
    spikes, busy_runs = [], []
    dut.states_seen = []

    async def bench(ctx):
        rng = np.random.default_rng(tb_seed)
        for op, *args in script:
            if op == "load":
                await stream_put_all(ctx, dut.pixels, pixel_payloads(args[0]), rng=rng, gap=gap)
            elif op == "partial":
                await stream_put_all(ctx, dut.pixels, pixel_payloads(args[0])[:args[1]])
            elif op == "seeds":
                ctx.set(dut.seeds, [int(s) for s in args[0]])
                ctx.set(dut.seeds_load, 1)
                await ctx.tick()
                ctx.set(dut.seeds_load, 0)
            elif op == "step":
                ctx.set(dut.intensity, args[0])
                ctx.set(dut.step, 1)
                await ctx.tick()
                ctx.set(dut.step, 0)
                assert ctx.get(dut.busy) and not ctx.get(dut.pixels.ready)
                spikes.append(await stream_get_until(ctx, dut.spikes, dut.done, rng=rng,
                                                     stall=stall))
                assert not ctx.get(dut.busy)
                dut.states_seen.append([int(v) for v in ctx.get(dut.states)])
                await ctx.tick()   # lets the cycle counter see busy low
            else:
                raise ValueError(op)

    async def count_busy(ctx):
        run = 0
        async for _, _, busy in ctx.tick().sample(dut.busy):
            if busy:
                run += 1
            elif run:
                busy_runs.append(run)
                run = 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(count_busy, background=True)
    sim.run()
    return list(zip(spikes, busy_runs + [None] * (len(spikes) - len(busy_runs))))


def golden(lanes, seed, script):
    """The golden model's spike list of every ``("step", …)`` of ``script``."""
    model = GoldenModel(preset(10, encoder_lanes=lanes), seed=seed)
    image, out = None, []
    for op, *args in script:
        if op == "load":
            image = np.asarray(args[0], dtype=np.uint8).reshape(28, 28)
        elif op == "partial":
            image = None                      # an incomplete image encodes nothing
        elif op == "seeds":
            raise ValueError("re-seed the golden model instead")
        elif op == "step":
            model.run_steps(1, image=image, intensity=args[0])
            out.append(np.flatnonzero(model.pend_in).tolist())
            golden.states.append([int(v) for v in model.rng[:lanes]])
    return out


def check(lanes, seed, script, **kw):
    dut = PoissonEncoder(preset(10, encoder_lanes=lanes), seed=seed)
    got = simulate(dut, script, **kw)
    golden.states = []
    want = golden(lanes, seed, script)
    assert dut.states_seen == golden.states
    assert len(got) == len(want)
    for t, ((spikes, _), expect) in enumerate(zip(got, want)):
        assert spikes == expect, f"step {t}: {len(spikes)} spikes, expected {len(expect)}"
    return got


# ----------------------------------------------------------------------------- xorshift
def test_xorshift32_matches_model():
    rng = np.random.default_rng(1)
    states = [1, 0x8000_0000, 0xFFFF_FFFF] + [int(x) for x in rng.integers(1, 2**32, 200)]
    dut = Xorshift32()

    async def bench(ctx):
        for x in states:
            ctx.set(dut.state, x)
            nxt = xorshift32_py(x)
            assert ctx.get(dut.next) == nxt
            assert ctx.get(dut.word) == nxt >> 16

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def test_xorshift32_validation():
    from amaranth.hdl import Signal
    with pytest.raises(TypeError):
        xorshift32_next(12345)
    with pytest.raises(ValueError):
        xorshift32_next(Signal(16))


# ----------------------------------------------------------------------------- rate compare
@pytest.mark.parametrize("dt", [0.5, 1.0, 0.1])
def test_rate_compare_exact(dt):
    """``hits`` is ``word < rate_thresholds(dt, I)[p]`` for every pixel and every intensity
    the port can carry: the compare is monotone in ``word``, so the two words either side of
    each threshold prove it for all 2**16 words."""
    dut = RateCompare(dt, lanes=256, intensity_bits=6)

    async def bench(ctx):
        ctx.set(dut.pixels, list(range(256)))
        for intensity in range(64):
            thr = rate_thresholds(dt, intensity)
            ctx.set(dut.intensity, intensity)
            below = np.clip(thr - 1, 0, 2**16 - 1)
            at = np.clip(thr, 0, 2**16 - 1)
            ctx.set(dut.scaled, [dut.scale(int(w)) for w in below])
            hits = ctx.get(dut.hits)
            for p in range(256):
                assert (hits >> p) & 1 == (below[p] < thr[p]), (intensity, p)
            ctx.set(dut.scaled, [dut.scale(int(w)) for w in at])
            hits = ctx.get(dut.hits)
            for p in range(256):
                assert (hits >> p) & 1 == (at[p] < thr[p]), (intensity, p)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def test_rate_fraction():
    assert rate_fraction(0.5) == rate_fraction(0.5) and rate_fraction(0.5).denominator == 125
    assert rate_fraction(0.5).numerator == 512
    with pytest.raises(ValueError):
        rate_fraction(0)
    with pytest.raises(TypeError):
        rate_fraction("0.5")
    with pytest.raises(ValueError):
        RateCompare(0.5, lanes=0)


# ----------------------------------------------------------------------------- encoder
@pytest.mark.parametrize("lanes", [1, 4])
def test_random_images_with_backpressure(lanes):
    rng = np.random.default_rng(10 + lanes)
    script = []
    for density in (0.05, 0.3, 0.8):
        script.append(("load", random_image(rng, density)))
        script += [("step", int(i)) for i in rng.integers(1, 33, 3)]
    check(lanes, 5, script, stall=0.4, gap=0.2, tb_seed=3)


@pytest.mark.parametrize("lanes", [1, 4])
def test_mnist_image(lanes, mnist_small):
    x = mnist_small[0]
    script = [("load", x[0])] + [("step", 2)] * 2 + [("step", 32)] * 2
    script += [("load", x[1])] + [("step", int(i)) for i in (5, 17, 32)]
    steps = check(lanes, 7, script, stall=0.3, tb_seed=4)
    assert sum(len(s) for s, _ in steps) > 0


@pytest.mark.parametrize("lanes", [1, 4])
def test_all_zero_and_all_255(lanes):
    script = [("load", np.zeros(N_INPUT, np.uint8)), ("step", 32), ("step", 2),
              ("load", np.full(N_INPUT, 255, np.uint8)), ("step", 32), ("step", 32)]
    steps = check(lanes, 11, script, stall=0.5, tb_seed=6)
    assert steps[0][0] == [] and steps[1][0] == []
    # At intensity 32 a pixel of 255 fires with probability 0.51.
    assert 300 < len(steps[2][0]) < 500


@pytest.mark.parametrize("lanes", [1, 4])
def test_steps_without_image(lanes):
    """Before any image and while one is half loaded a step draws nothing and emits
    nothing: the lanes then continue exactly as the golden model's."""
    rng = np.random.default_rng(2)
    image = random_image(rng, 0.3)
    script = [("step", 10), ("partial", image, 300), ("step", 10), ("load", image),
              ("step", 10), ("step", 20)]
    steps = check(lanes, 3, script)
    assert steps[0] == ([], 1) and steps[1] == ([], 1)


@pytest.mark.parametrize("lanes", [1, 4])
def test_restart_with_first(lanes):
    """``first`` restarts an interrupted image; without it images follow back to back."""
    rng = np.random.default_rng(8)
    a, b = random_image(rng, 0.3), random_image(rng, 0.5)
    dut = PoissonEncoder(preset(10, encoder_lanes=lanes), seed=9)
    script_hw = [("partial", a, 500), ("load", b), ("step", 16)]
    got = simulate(dut, script_hw)
    assert got[0][0] == golden(lanes, 9, [("load", b), ("step", 16)])[0]

    out = []

    async def back_to_back(ctx):
        payloads = pixel_payloads(a) + pixel_payloads(b, first=False)
        await stream_put_all(ctx, dut.pixels, payloads)
        assert ctx.get(dut.image_valid) and ctx.get(dut.nonzero) == np.count_nonzero(b)
        ctx.set(dut.intensity, 16)
        ctx.set(dut.step, 1)
        await ctx.tick()
        ctx.set(dut.step, 0)
        out.append(await stream_get_until(ctx, dut.spikes, dut.done))

    dut = PoissonEncoder(preset(10, encoder_lanes=lanes), seed=9)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(back_to_back)
    sim.run()
    assert out[0] == got[0][0]


def test_intensity_zero_draws_without_firing():
    lanes = 4
    image = random_image(np.random.default_rng(4), 0.4)
    dut = PoissonEncoder(preset(10, encoder_lanes=lanes), seed=12)
    got = simulate(dut, [("load", image), ("step", 0), ("step", 20)])
    assert got[0][0] == []
    # The golden model's first step draws the same words whatever the intensity.
    want = golden(lanes, 12, [("load", image), ("step", 20), ("step", 20)])
    assert got[1][0] == want[1]


@pytest.mark.parametrize("lanes", [1, 4])
def test_run_time_seeds(lanes):
    """Seeds loaded through the port replace the reset states."""
    rng = np.random.default_rng(5)
    image = random_image(rng, 0.5)
    states = stream_seeds(21, lanes)["encoder"]
    dut = PoissonEncoder(preset(10, encoder_lanes=lanes), seed=0)
    got = simulate(dut, [("load", image), ("seeds", states), ("step", 25), ("step", 25)])
    want = golden(lanes, 21, [("load", image), ("step", 25), ("step", 25)])
    assert [s for s, _ in got] == want


def test_throughput_four_lanes():
    """Four lanes walk four non-zero pixels per cycle; each spike beyond the first of a row
    costs one cycle more."""
    lanes = 4
    dut = PoissonEncoder(preset(10, encoder_lanes=lanes), seed=1)
    image = np.full(N_INPUT, 255, np.uint8)
    got = simulate(dut, [("load", image), ("step", 1), ("step", 32)])
    rows = N_INPUT // lanes
    for spikes, cycles in got:
        assert cycles <= rows + len(spikes) + 4, (cycles, len(spikes))
    assert got[0][1] <= rows + 8


def test_handshake_helpers():
    """The generic helpers move payloads through the encoder's streams unchanged."""
    dut = PoissonEncoder(preset(10, encoder_lanes=1), seed=2)
    image = np.zeros(N_INPUT, np.uint8)
    image[[3, 400, 783]] = 255
    want = golden(1, 2, [("load", image), ("step", 32)])[0]
    got = []

    async def bench(ctx):
        for payload in pixel_payloads(image):
            await stream_put(ctx, dut.pixels, payload)
        ctx.set(dut.intensity, 32)
        ctx.set(dut.step, 1)
        await ctx.tick()
        ctx.set(dut.step, 0)
        for _ in want:
            got.append(await stream_get(ctx, dut.spikes))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == want


def test_encoder_validation():
    cfg = preset(10)
    with pytest.raises(TypeError):
        PoissonEncoder(cfg.to_dict())
    with pytest.raises(TypeError):
        PoissonEncoder(cfg, seed=1.5)
    with pytest.raises(ValueError):
        PoissonEncoder(cfg, seed=-1)
    enc = PoissonEncoder(preset(10, encoder_lanes=4), seed=3)
    assert enc.lanes == 4 and enc.seed == 3 and enc.depth == 196
    assert enc.init_states == tuple(int(s) for s in stream_seeds(3, 4)["encoder"])
    Fragment.get(enc, None)
    with pytest.raises(AttributeError):
        enc.lanes = 2


# ----------------------------------------------------------------------------- cocotb
@pytest.mark.parametrize("lanes", [1, 4])
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_encoder_cocotb(simulator, lanes, mnist_small):
    reason = unavailable_reason(simulator)
    if reason:
        pytest.skip(reason)
    cfg = preset(10, encoder_lanes=lanes)
    seed = 30 + lanes
    params = {
        "config": cfg.to_dict(),
        "seed": seed,
        "reload_seed": 77,
        "stim_seed": 100 + lanes,
        "stall": 0.3,
        "gap": 0.1,
        "random_images": 3,
        "steps": 3,
        "mnist": [mnist_small[0][k].reshape(-1).tolist() for k in (0, 1)],
    }
    result = run_cocotb(PoissonEncoder(cfg, seed=seed), BENCH, simulator=simulator,
                        name=f"encoder_l{lanes}", params=params)
    assert result.tests == ("encoder_matches_golden",)
