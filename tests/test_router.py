"""Spike router, accumulators, spike counters and event words (``hdl/router.py``).

What is proved, in Amaranth's simulator, cycle by cycle against Python references:

* :class:`SpikeRouter` — random AER traffic into the three queues (``in_spikes``,
  ``e_spikes``, ``c_spikes``) with random gaps and random back-pressure comes out in order,
  nothing dropped or duplicated; in every cycle ``*_pending`` is high exactly when the queue
  holds a spike and ``ready`` exactly when it holds fewer than its depth (``n_input``, ``N``,
  10), so a queue filled to its depth refuses the next spike and loses nothing; ``flush``
  empties every queue (``busy`` meanwhile, nothing leaks out); the per-neuron E and C
  counters and ``e_total`` equal a Python count of the spikes accepted while ``count`` was
  high, read through ``e_count_addr``/``e_count`` and ``c_count_addr``/``c_count`` one cycle
  later; ``clear`` zeroes them, ``busy`` for one cycle per neuron of the larger population,
  over repeated clear/count rounds; ``teacher_fire`` and its state sequence equal
  ``sim/rng.py`` (``stream_seeds(seed, encoder_lanes)["teacher"]``, ``xorshift32_py``,
  ``teacher_threshold``) and the golden model's teacher for hundreds of draws.
* :class:`Accumulators` — random :class:`~symspike.hdl.synapse.AccLayout` beats (random
  rows, columns and masks, back-to-back repeats of one column chunk, garbage in masked lanes)
  followed by a drain under random back-pressure give exactly the NumPy sums; after a drain
  every accumulator is zero (a second drain gives zeros, the next adds start from zero), for
  ``P == L``, ``P < L``, ``L == 1`` and ``n`` not a multiple of ``L`` or ``P``; bad
  parameters raise ``TypeError``/``ValueError`` naming the parameter.
* :class:`SpikeCounters` — counts saturate at ``2**count_bits − 1``, spikes during a clear
  are not counted, ``busy`` covers the clear walk exactly.
* :class:`EventWords` — the word stream is ``sim/rng.py``'s xorshift32 sequence (upper 16
  bits of the next state) under random ``ready``; ``load`` replaces the state.

``test_cocotb_bench`` runs :class:`Harness` (a router and an accumulator bank) as Verilog on
Icarus and Verilator with ``tests/cocotb/router_bench.py``: random and MNIST-derived traffic
(the golden model's encoder, E and teacher spikes of real images, and the sums of its weight
rows), random back-pressure, full queues and flushes, against Python references.
"""

import json
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module, Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import connect, flipped
from amaranth.sim import Simulator
from amaranth.utils import bits_for

from stream_helpers import stream_put_all
from symspike.firmware.config import preset
from symspike.hdl.router import Accumulators, EventWords, SpikeCounters, SpikeRouter
from symspike.sim import cosim
from symspike.sim.network import GoldenModel
from symspike.sim.rng import stream_seeds, teacher_threshold, xorshift32_py

# Constructor checks leave components that are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

BENCH = Path(__file__).parent / "cocotb" / "router_bench.py"
QUEUES = ("in", "e", "c")


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# ----------------------------------------------------------------------------- router
class RouterRef:
    """What the router must hold: the queues' contents, saturating counts, the teacher."""

    def __init__(self, cfg, seed):
        self.depth = {"in": cfg.n_input, "e": cfg.n_exc, "c": cfg.n_classes}
        self.queue = {name: deque() for name in QUEUES}
        self.cmax = (1 << bits_for(cfg.steps_present)) - 1
        self.counts = {"e": np.zeros(cfg.n_exc, np.int64),
                       "c": np.zeros(cfg.n_classes, np.int64)}
        self.e_total = 0
        self.teacher = int(stream_seeds(seed, cfg.encoder_lanes)["teacher"])
        self.thr = teacher_threshold(cfg.teacher_p)

    def count(self, name, addr):
        self.counts[name][addr] = min(self.counts[name][addr] + 1, self.cmax)
        if name == "e":
            self.e_total += 1

    def clear(self):
        for c in self.counts.values():
            c[:] = 0
        self.e_total = 0

    def fire(self):
        return (xorshift32_py(self.teacher) >> 16) < self.thr

    def draw(self):
        self.teacher = xorshift32_py(self.teacher)


class RouterDriver:
    """Drives every input of a :class:`SpikeRouter` once per cycle and checks every output
    against a :class:`RouterRef`.

    Spikes wait in ``feed`` per queue; one is offered (``valid`` held, payload stable) until
    the queue takes it. Each cycle checks, before the edge: ``*_pending`` against the queue's
    level, ``*_spikes.ready`` against its depth, the head of every valid output, and
    ``teacher_fire``.
    """

    def __init__(self, ctx, dut, ref, rng):
        self.ctx, self.dut, self.ref, self.rng = ctx, dut, ref, rng
        self.feed = {name: deque() for name in QUEUES}
        self.offer = dict.fromkeys(QUEUES)
        self.sent = {name: [] for name in QUEUES}
        self.got = {name: [] for name in QUEUES}
        self.peak = dict.fromkeys(QUEUES, 0)
        self.cycles = 0
        self.busy = 0
        sigs = []
        for name in QUEUES:
            src, dst = getattr(dut, f"{name}_spikes"), getattr(dut, f"{name}_out")
            sigs += [src.ready, dst.valid, dst.payload, getattr(dut, f"{name}_pending")]
        self._sigs = sigs + [dut.teacher_fire, dut.busy]

    @property
    def idle(self):
        return not any(self.feed.values()) and all(o is None for o in self.offer.values())

    @property
    def empty(self):
        return self.idle and not any(self.ref.queue.values())

    def _chance(self, p, name):
        p = p.get(name, 0.0) if isinstance(p, dict) else p
        return bool(p) and self.rng.random() < p

    async def cycle(self, *, gap=0.0, stall=0.0, count=0, clear=0, flush=0, draw=0):
        ctx, dut, ref = self.ctx, self.dut, self.ref
        ready = {}
        for name in QUEUES:
            if self.offer[name] is None and self.feed[name] and not self._chance(gap, name):
                self.offer[name] = self.feed[name].popleft()
            src = getattr(dut, f"{name}_spikes")
            ctx.set(src.valid, self.offer[name] is not None)
            if self.offer[name] is not None:
                ctx.set(src.payload, self.offer[name])
            ready[name] = not self._chance(stall, name)
            ctx.set(getattr(dut, f"{name}_out").ready, ready[name])
        ctx.set(dut.count, count)
        ctx.set(dut.clear, clear)
        ctx.set(dut.flush, flush)
        ctx.set(dut.teacher_draw, draw)
        _, _, *vals = await ctx.tick().sample(*self._sigs)
        where = f"cycle {self.cycles}"
        for k, name in enumerate(QUEUES):
            s_ready, valid, payload, pending = vals[4 * k:4 * k + 4]
            q = ref.queue[name]
            level = len(q)
            assert pending == (level > 0), f"{where}: {name}_pending {pending}, {level} queued"
            assert s_ready == (level < ref.depth[name]), \
                f"{where}: {name}_spikes.ready {s_ready} with {level} of {ref.depth[name]} queued"
            if valid:
                assert level, f"{where}: {name}_out valid with an empty queue"
                assert payload == q[0], f"{where}: {name}_out {payload}, expected {q[0]}"
                if ready[name]:
                    self.got[name].append(q.popleft())
            if self.offer[name] is not None and s_ready:
                q.append(self.offer[name])
                self.sent[name].append(self.offer[name])
                # A spike taken in a clear's cycle falls in the clear (SpikeCounters.clear).
                if count and not clear and name != "in":
                    ref.count(name, self.offer[name])
                self.offer[name] = None
            self.peak[name] = max(self.peak[name], len(q))
        fire, self.busy = vals[-2:]
        assert fire == ref.fire(), f"{where}: teacher_fire {fire}"
        if draw:
            ref.draw()
        self.cycles += 1

    async def drain(self, *, gap=0.0, stall=0.0, count=0, limit=100_000):
        """Run until every fed spike has gone through its queue."""
        for _ in range(limit):
            if self.empty:
                return
            await self.cycle(gap=gap, stall=stall, count=count)
        raise TimeoutError(f"queues not drained in {limit} cycles: "
                           f"{ {k: len(q) for k, q in self.ref.queue.items()} }")

    async def read_counts(self, name):
        """Every count of ``name`` through its read port, one address per cycle."""
        ctx, dut = self.ctx, self.dut
        addr, data = getattr(dut, f"{name}_count_addr"), getattr(dut, f"{name}_count")
        n = len(self.ref.counts[name])
        ctx.set(addr, 0)
        await self.cycle(stall=1.0)
        out = []
        for a in range(n):
            # The next address is already set: a combinational read would show its count.
            ctx.set(addr, (a + 1) % n)
            out.append(ctx.get(data))
            await self.cycle(stall=1.0)
        return np.array(out, dtype=np.int64)

    async def check_counts(self, what):
        for name in ("e", "c"):
            got = await self.read_counts(name)
            np.testing.assert_array_equal(got, self.ref.counts[name],
                                          err_msg=f"{what}: {name} counts")
        assert self.ctx.get(self.dut.e_total) == self.ref.e_total, f"{what}: e_total"

    async def clear(self, *, stall=0.0):
        """``clear`` for one cycle, then wait for ``busy`` to fall; returns the cycles
        ``busy`` was high, the clear's own included."""
        await self.cycle(clear=1, stall=stall)
        assert self.busy, "busy low in the clear's cycle"
        cycles = 1
        while True:
            await self.cycle(stall=stall)
            if not self.busy:
                break
            cycles += 1
            assert cycles < 100_000
        self.ref.clear()
        return cycles


def random_spikes(rng, n, count):
    return [int(a) for a in rng.integers(0, n, count)]


def router_sim(cfg, seed, body, *, tb_seed=0):
    dut = SpikeRouter(cfg, seed=seed)
    ref = RouterRef(cfg, seed)
    result = {}

    async def bench(ctx):
        drv = RouterDriver(ctx, dut, ref, np.random.default_rng(tb_seed))
        result["drv"] = drv
        await body(drv)

    run(dut, bench)
    return result["drv"]


@pytest.mark.parametrize("n_exc,tb_seed", [(22, 1), (5, 2)])
def test_random_traffic(n_exc, tb_seed):
    """Concurrent random traffic on all three queues, random gaps and back-pressure: every
    output equals the input in order, and the per-cycle checks hold throughout (queue
    levels swing between empty and full)."""
    cfg = preset(n_exc)

    async def body(drv):
        rng = drv.rng
        for gap, stall in ((0.5, 0.2), (0.1, 0.7), (0.3, 0.3), (0.0, 0.0)):
            for name, n in (("in", 784), ("e", n_exc), ("c", 10)):
                drv.feed[name].extend(random_spikes(rng, n, 300))
            count = 0
            for _ in range(300):
                if rng.random() < 0.1:
                    count ^= 1
                await drv.cycle(gap=gap, stall=stall, count=count)
            await drv.drain(gap=gap, stall=stall, count=count)

    drv = router_sim(cfg, 3, body, tb_seed=tb_seed)
    for name in QUEUES:
        assert drv.got[name] == drv.sent[name], name
        assert len(drv.sent[name]) == 1200
    # The small queues were full at times: full queues under traffic.
    assert drv.peak["e"] == n_exc and drv.peak["c"] == 10, drv.peak


def test_full_queues():
    """Each queue takes exactly its depth (784, N, 10) of spikes while nothing is read, then
    refuses more (``ready`` low) without losing any; under back-pressure they all come out
    in order, the refused ones last."""
    n_exc = 22
    cfg = preset(n_exc)

    async def body(drv):
        rng = drv.rng
        for name, n in (("in", 784), ("e", n_exc), ("c", 10)):
            drv.feed[name].extend(random_spikes(rng, n, drv.ref.depth[name] + 3))
        for _ in range(784 + 20):
            await drv.cycle(stall=1.0, count=1)
        for name in QUEUES:
            assert len(drv.ref.queue[name]) == drv.ref.depth[name], name
            assert drv.offer[name] is not None and len(drv.feed[name]) == 2, name
            assert drv.ctx.get(getattr(drv.dut, f"{name}_spikes").ready) == 0, name
        await drv.drain(stall=0.5, count=1)
        await drv.check_counts("after the full queues")

    drv = router_sim(cfg, 0, body, tb_seed=4)
    for name in QUEUES:
        assert drv.got[name] == drv.sent[name] and len(drv.got[name]) == drv.ref.depth[name] + 3


def test_pending_timing():
    """A spike written into an empty queue shows on ``*_pending`` in the very next cycle
    (``valid`` may follow later), and ``pending`` falls with the read of the last spike."""
    cfg = preset(12)

    async def body(drv):
        ctx, dut = drv.ctx, drv.dut
        for name in QUEUES:
            src, dst = getattr(dut, f"{name}_spikes"), getattr(dut, f"{name}_out")
            pending = getattr(dut, f"{name}_pending")
            ctx.set(dst.ready, 0)
            ctx.set(src.payload, 7)
            ctx.set(src.valid, 1)
            await ctx.tick()
            ctx.set(src.valid, 0)
            assert ctx.get(pending) == 1, name
            for _ in range(3):
                await ctx.tick()
            assert ctx.get(pending) == 1 and ctx.get(dst.valid) == 1, name
            assert ctx.get(dst.payload) == 7
            ctx.set(dst.ready, 1)
            await ctx.tick()
            ctx.set(dst.ready, 0)
            assert ctx.get(pending) == 0 and ctx.get(dst.valid) == 0, name

    router_sim(cfg, 0, body)


def test_flush():
    """``flush`` empties every queue, full or not: ``busy`` from the flush's cycle until
    the last is empty (about one cycle per queued spike), no spike leaks out meanwhile, and
    afterwards new spikes come through without stale ones before them."""
    n_exc = 22
    cfg = preset(n_exc)

    async def body(drv):
        ctx, dut, rng = drv.ctx, drv.dut, drv.rng
        for fill in ({"in": 784, "e": 22, "c": 10}, {"in": 300, "e": 0, "c": 4},
                     {"in": 0, "e": 0, "c": 0}, {"in": 1, "e": 1, "c": 1}):
            for name, n in (("in", 784), ("e", n_exc), ("c", 10)):
                drv.feed[name].extend(random_spikes(rng, n, fill[name]))
            while not drv.idle:
                await drv.cycle(stall=1.0)
            await drv.cycle(stall=1.0)
            levels = {name: len(q) for name, q in drv.ref.queue.items()}
            assert levels == fill
            ctx.set(dut.flush, 1)
            for name in QUEUES:
                ctx.set(getattr(dut, f"{name}_out").ready, 0)
            await ctx.tick()
            ctx.set(dut.flush, 0)
            cycles = 1
            while True:
                for name in QUEUES:
                    ctx.set(getattr(dut, f"{name}_out").ready, int(rng.random() < 0.5))
                _, _, busy, *valid = await ctx.tick().sample(
                    dut.busy, *(getattr(dut, f"{name}_out").valid for name in QUEUES))
                assert not any(valid), f"a spike left a queue during a flush {fill}"
                if not busy:
                    break
                cycles += 1
            assert max(fill.values()) <= cycles <= max(fill.values()) + 3, (fill, cycles)
            for name in QUEUES:
                assert ctx.get(getattr(dut, f"{name}_pending")) == 0
                drv.ref.queue[name].clear()
            # New traffic: the per-cycle checks prove that nothing stale remains.
            for name, n in (("in", 784), ("e", n_exc), ("c", 10)):
                drv.feed[name].extend(random_spikes(rng, n, 5))
            await drv.drain(stall=0.3)
            for name in QUEUES:
                assert drv.got[name][-5:] == drv.sent[name][-5:], (fill, name)

    drv = router_sim(cfg, 0, body, tb_seed=6)
    for name in QUEUES:
        assert len(drv.got[name]) == 20


@pytest.mark.parametrize("n_exc", [22, 7])
def test_counters_and_clear_rounds(n_exc):
    """Rounds of counting and clearing: the counts and ``e_total`` equal a Python count of
    the E and C spikes accepted while ``count`` was high; ``clear`` makes every count zero
    again, busy for ``max(N, 10) + 1`` cycles; spikes accepted just before a clear or in its
    cycle, and clears repeated back to back, leave nothing behind."""
    cfg = preset(n_exc)

    async def body(drv):
        rng = drv.rng
        await drv.check_counts("after reset")
        for rnd in range(6):
            for name, n in (("in", 784), ("e", n_exc), ("c", 10)):
                # Skewed addresses: a few neurons collect most spikes.
                addrs = rng.integers(0, n, 200) if rnd % 2 else \
                    np.minimum(rng.geometric(0.3, 200) - 1, n - 1)
                drv.feed[name].extend(int(a) for a in addrs)
            count = 1
            for _ in range(250):
                if rng.random() < 0.05:
                    count ^= 1
                await drv.cycle(gap=0.3, stall=0.3, count=count)
            await drv.drain(gap=0.3, stall=0.3, count=count)
            await drv.check_counts(f"round {rnd}")
            assert drv.ref.e_total > 0 and drv.ref.counts["c"].sum() > 0
            if rnd % 3 == 1:
                # One spike counted in the cycle before the clear, one in the clear's cycle.
                drv.feed["e"].extend([0, 1])
                drv.feed["c"].extend([0, 1])
                await drv.cycle(count=1)
                await drv.cycle(count=1, clear=1)
                assert drv.busy
                busy = 1
                while True:
                    await drv.cycle()
                    if not drv.busy:
                        break
                    busy += 1
                drv.ref.clear()
            else:
                busy = await drv.clear()
            assert busy == max(n_exc, 10) + 1, busy
            if rnd % 3 == 2:
                assert await drv.clear() == max(n_exc, 10) + 1
            await drv.check_counts(f"after clear {rnd}")

    router_sim(cfg, 1, body, tb_seed=10 + n_exc)


@pytest.mark.parametrize("rate,seed", [(200.0, 3), (1000.0, 8), (0.0, 1), (2000.0, 2)])
def test_teacher(rate, seed):
    """``teacher_fire`` is ``sim/rng.py``'s decision for the next word of the run seed's
    teacher stream, advanced by ``teacher_draw`` alone, for 400 draws (p = 0.1, 0.5, 0, 1)."""
    cfg = preset(12, teacher_rate=rate, encoder_lanes=2)
    assert SpikeRouter(cfg, seed=seed).teacher_seed == \
        int(stream_seeds(seed, 2)["teacher"]) == int(GoldenModel(cfg, seed=seed).rng[2])
    fires = []

    async def body(drv):
        draws = 0
        while draws < 400:
            draw = int(drv.rng.random() < 0.6)
            if draw:
                fires.append(drv.ref.fire())
            await drv.cycle(draw=draw)   # the per-cycle check compares teacher_fire
            draws += draw

    router_sim(cfg, seed, body, tb_seed=seed)
    rate_seen = np.mean(fires)
    want = cfg.teacher_p
    assert abs(rate_seen - want) < 0.1, (rate_seen, want)
    if want in (0.0, 1.0):
        assert rate_seen == want


@pytest.mark.parametrize("seed", [0, 6])
def test_teacher_threshold_boundary(seed):
    """The compare is strict: a word equal to the threshold does not fire, one below does
    (the teacher rate is chosen so that the first word of the run seed's stream sits on
    the threshold)."""
    word = xorshift32_py(int(stream_seeds(seed, 1)["teacher"])) >> 16
    for thr, fires in ((word, 0), (word + 1, 1)):
        cfg = preset(12, teacher_rate=thr / 65536 / (preset(12).dt * 1e-3))
        assert teacher_threshold(cfg.teacher_p) == thr
        dut = SpikeRouter(cfg, seed=seed)
        seen = []

        async def bench(ctx):
            seen.append(ctx.get(dut.teacher_fire))

        run(dut, bench)
        assert seen == [fires], (thr, word)


def test_teacher_matches_golden_model():
    """Step by step, the router's teacher decision equals the golden model's teacher spike
    (the label's C neuron in a training step)."""
    cfg = preset(12, teacher_rate=1000.0)
    seed, label = 9, 4
    model = GoldenModel(cfg, seed=seed)
    want = []
    for _ in range(300):
        model.run_steps(1, label=label, phase="output")
        want.append(int(model.pend_c[label]))
    assert 100 < sum(want) < 200
    dut = SpikeRouter(cfg, seed=seed)
    got = []

    async def bench(ctx):
        for _ in range(300):
            got.append(ctx.get(dut.teacher_fire))
            ctx.set(dut.teacher_draw, 1)
            await ctx.tick()
            ctx.set(dut.teacher_draw, 0)
            await ctx.tick()

    run(dut, bench)
    assert got == want


def test_teacher_state_saved_and_loaded():
    """``teacher_state`` follows the stream; a loaded state is where the draws continue, as
    in a golden model given the same ``rng[teacher]``; a draw in the same cycle wins."""
    cfg = preset(12, teacher_rate=1000.0, encoder_lanes=2)
    seed, loaded = 3, 0x2545F491
    state = int(stream_seeds(seed, 2)["teacher"])
    dut = SpikeRouter(cfg, seed=seed)
    got = []

    async def bench(ctx):
        nonlocal state
        for _ in range(5):
            assert ctx.get(dut.teacher_state) == state
            ctx.set(dut.teacher_draw, 1)
            await ctx.tick()
            state = xorshift32_py(state)
        ctx.set(dut.teacher_draw, 0)
        ctx.set(dut.teacher_load, 1)
        ctx.set(dut.teacher_state_in, loaded)
        await ctx.tick()
        ctx.set(dut.teacher_load, 0)
        assert ctx.get(dut.teacher_state) == loaded
        for _ in range(50):
            got.append(ctx.get(dut.teacher_fire))
            ctx.set(dut.teacher_draw, 1)
            await ctx.tick()
        ctx.set(dut.teacher_load, 1)
        ctx.set(dut.teacher_state_in, 12345)
        await ctx.tick()
        assert ctx.get(dut.teacher_state) != 12345

    run(dut, bench)
    model = GoldenModel(cfg, seed=seed)
    model.rng[2] = loaded
    want = []
    for _ in range(50):
        model.run_steps(1, label=4, phase="output")
        want.append(int(model.pend_c[4]))
    assert got == want and 10 < sum(got) < 40


def test_router_ports_and_validation():
    cfg = preset(22)
    with pytest.raises(TypeError, match="NetworkConfig"):
        SpikeRouter(cfg.to_dict())
    rt = SpikeRouter(cfg, seed=5)
    assert rt.count_bits == bits_for(cfg.steps_present) == 10
    members = rt.signature.members

    def width(name):
        return Shape.cast(members[name].signature.members["payload"].shape).width

    assert (width("in_spikes"), width("e_out"), width("c_spikes")) == (10, 5, 4)
    assert Shape.cast(members["e_count"].shape).width == 10
    Fragment.get(rt, None)


# ----------------------------------------------------------------------------- counters
def test_spike_counters_saturate_and_clear():
    """Random spikes (back-to-back repeats of one neuron among them) and random clears,
    some during a running clear: each count saturates at ``2**count_bits − 1``, ``total``
    counts every spike, spikes while ``busy`` are not counted, and ``busy`` is high in the
    clear's cycle and for one cycle per neuron after it."""
    n, bits = 5, 3
    cmax = (1 << bits) - 1
    dut = SpikeCounters(n, bits)
    rng = np.random.default_rng(12)
    checked = []

    async def bench(ctx):
        counts = np.zeros(n, np.int64)
        total = 0
        walk = 0
        for rnd in range(12):
            # At most 40 counted spikes between clears: ``total`` holds n·2**bits.
            attempts = 0
            while attempts < 38:
                inc = rng.random() < 0.8
                addr = 0 if rng.random() < 0.5 else int(rng.integers(n))
                clear = rng.random() < 0.04
                ctx.set(dut.inc, inc)
                ctx.set(dut.inc_addr, addr)
                ctx.set(dut.clear, clear)
                _, _, busy = await ctx.tick().sample(dut.busy)
                assert busy == (clear or walk > 0), (rnd, attempts, walk)
                if inc and not busy:
                    counts[addr] = min(counts[addr] + 1, cmax)
                    total += 1
                    attempts += 1
                if clear:
                    counts[:] = 0
                    total = 0
                    walk = n
                elif walk:
                    walk -= 1
            ctx.set(dut.inc, 0)
            ctx.set(dut.clear, 0)
            while walk:
                await ctx.tick()
                walk -= 1
            await ctx.tick()
            got = []
            for a in range(n):
                ctx.set(dut.addr, a)
                await ctx.tick()
                got.append(ctx.get(dut.data))
            np.testing.assert_array_equal(got, counts, err_msg=f"round {rnd}")
            assert ctx.get(dut.total) == total, rnd
            checked.append(counts.max())

    run(dut, bench)
    assert max(checked) == cmax


# ----------------------------------------------------------------------------- event words
def test_event_words():
    """``words`` is always valid and shows the upper 16 bits of the next xorshift32 state;
    a transfer advances the state, ``load`` replaces it unless a word is taken in the same
    cycle; the reset state is the seed (the golden model's event stream)."""
    cfg = preset(12)
    seed = int(stream_seeds(7, 1)["event"])
    assert seed == int(GoldenModel(cfg, seed=7).rng[-1])
    dut = EventWords(seed)
    rng = np.random.default_rng(3)
    taken = []

    async def bench(ctx):
        state = seed
        for cycle in range(600):
            ready = rng.random() < 0.6
            load = rng.random() < 0.05
            new = int(rng.integers(1, 2**32))
            ctx.set(dut.words.ready, ready)
            ctx.set(dut.load, load)
            ctx.set(dut.state_in, new)
            _, _, valid, word, now = await ctx.tick().sample(
                dut.words.valid, dut.words.payload, dut.state)
            assert valid == 1 and now == state, cycle
            assert word == xorshift32_py(state) >> 16, cycle
            if ready:
                state = xorshift32_py(state)
                taken.append(word)
            elif load:
                state = new
        assert ctx.get(dut.state) == state

    run(dut, bench)
    # Without loads the words taken are the stream itself.
    dut2 = EventWords(seed)
    words = []

    async def plain(ctx):
        ctx.set(dut2.words.ready, 1)
        for _ in range(100):
            _, _, w = await ctx.tick().sample(dut2.words.payload)
            words.append(w)

    run(dut2, plain)
    x, want = seed, []
    for _ in range(100):
        x = xorshift32_py(x)
        want.append(x >> 16)
    assert words == want


def test_event_words_validation():
    for bad, exc in ((True, TypeError), (1.5, TypeError), ("1", TypeError), (0, ValueError),
                     (1 << 32, ValueError), (-1, ValueError)):
        with pytest.raises(exc, match="seed"):
            EventWords(bad)


# ----------------------------------------------------------------------------- accumulators
def acc_beats(rng, n, lanes, count, *, repeat=0.3, weight_bits=8, rows=784):
    """Random beats: random chunks (repeated back to back with probability ``repeat``),
    random masks of the chunk's valid lanes, and random weights in masked lanes too."""
    chunks = -(-n // lanes)
    beats, chunk = [], None
    for _ in range(count):
        if chunk is None or rng.random() >= repeat:
            chunk = int(rng.integers(chunks))
        col = chunk * lanes
        valid = sum(1 << s for s in range(lanes) if col + s < n)
        mask = valid if rng.random() < 0.4 else int(rng.integers(0, 1 << lanes)) & valid
        beats.append({"row": int(rng.integers(rows)), "col": col,
                      "weights": [int(w) for w in rng.integers(0, 1 << weight_bits, lanes)],
                      "mask": mask, "last": int(rng.random() < 0.5)})
    return beats


def acc_sums(beats, n, lanes):
    s = np.zeros(n, np.int64)
    for b in beats:
        for lane in range(lanes):
            if b["mask"] >> lane & 1:
                s[b["col"] + lane] += b["weights"][lane]
    return s


async def acc_drain(ctx, dut, rng, *, stall=0.0, restart=True):
    """``start`` a drain and take its beats under random back-pressure until ``busy``
    falls; ``start`` is pulsed again during the first half (it must be ignored). Returns the
    beats and the cycles from ``start`` to ``busy`` low."""
    out, cycles = [], 0
    ctx.set(dut.start, 1)
    while True:
        ready = not (stall and rng.random() < stall)
        ctx.set(dut.out.ready, ready)
        _, _, valid, payload, busy = await ctx.tick().sample(
            dut.out.valid, dut.out.payload, dut.busy)
        cycles += 1
        if valid and ready:
            out.append([int(v) for v in payload])
        ctx.set(dut.start, int(restart and cycles > 1 and len(out) < dut.beats // 2
                                and rng.random() < 0.3))
        if cycles > 1 and not busy:
            ctx.set(dut.out.ready, 0)
            return out, cycles
        assert cycles < 100_000


# n, L, P. With P == L every out-row ends a memory row: its dirty bit must clear too.
ACC_CASES = [
    (10, 4, 4), (10, 4, 1), (22, 8, 4), (13, 8, 2), (7, 1, 1), (16, 4, 2), (5, 8, 8),
    (20, 16, 16),
]


@pytest.mark.parametrize("n,lanes,pipelines", ACC_CASES)
def test_accumulators(n, lanes, pipelines):
    """Rounds of random beats then a drain, each checked against NumPy sums: drains of
    nothing give zeros, a round after a drain starts from zero, dense back-to-back repeats
    of one chunk add up; without back-pressure a drain moves one beat per cycle."""
    rng = np.random.default_rng(n * 100 + lanes * 10 + pipelines)
    most = 160
    acc_bits = bits_for(most * 255)
    dut = Accumulators(n, lanes, pipelines, acc_bits, 8, 784)
    assert (dut.n, dut.lanes, dut.pipelines, dut.beats) == (n, lanes, pipelines,
                                                            -(-n // pipelines))
    rounds = [("random", acc_beats(rng, n, lanes, 120), 0.1, 0.3),
              ("empty", [], 0.0, 0.3),
              ("repeats", acc_beats(rng, n, lanes, most, repeat=0.9), 0.0, 0.5),
              ("one", acc_beats(rng, n, lanes, 1), 0.0, 0.0),
              ("again", acc_beats(rng, n, lanes, 60), 0.5, 0.0),
              ("empty", [], 0.0, 0.0)]
    results = []

    async def bench(ctx):
        for name, beats, gap, stall in rounds:
            await stream_put_all(ctx, dut.add, beats, rng=rng, gap=gap)
            if beats:
                assert ctx.get(dut.busy), f"{name}: busy low with an add in flight"
            while ctx.get(dut.busy):
                await ctx.tick()
            results.append(await acc_drain(ctx, dut, rng, stall=stall))

    run(dut, bench)
    for (name, beats, _, stall), (out, cycles) in zip(rounds, results):
        assert len(out) == dut.beats, f"{name}: {len(out)} beats"
        flat = np.array(out, dtype=np.int64).reshape(-1)
        want = acc_sums(beats, n, lanes)
        np.testing.assert_array_equal(flat[:n], want, err_msg=name)
        assert not flat[n:].any(), f"{name}: lanes past n"
        if not stall:
            assert cycles <= dut.beats + 3, (name, cycles)
    assert results[0][0] and np.array(results[2][0]).max() > 255


def test_accumulator_validation():
    ok = dict(n=10, lanes=4, pipelines=2, acc_bits=16, weight_bits=8, rows=784)
    cases = [
        (dict(n="10"), TypeError, "n must be an int"),
        (dict(n=True), TypeError, "n must be an int"),
        (dict(acc_bits=16.0), TypeError, "acc_bits must be an int"),
        (dict(rows=None), TypeError, "rows must be an int"),
        (dict(n=0), ValueError, "n must be ≥ 1"),
        (dict(weight_bits=0), ValueError, "weight_bits must be ≥ 1"),
        (dict(lanes=3), ValueError, "lanes must be a power of two"),
        (dict(lanes=0), ValueError, "lanes must be a power of two"),
        (dict(lanes=2.0), TypeError, "lanes must be an int"),
        (dict(pipelines=6), ValueError, "pipelines must be a power of two"),
        (dict(pipelines=8), ValueError, r"pipelines \(8\) must not exceed lanes \(4\)"),
    ]
    for change, exc, message in cases:
        with pytest.raises(exc, match=message):
            Accumulators(**{**ok, **change})
    Fragment.get(Accumulators(**ok), None)


# ----------------------------------------------------------------------------- cocotb
def acc_bits_of(cfg):
    """Width of the E accumulators of the chip (the E/I core's ``acc_bits``)."""
    return bits_for(cfg.n_input * ((1 << cfg.formats.weight_bits) - 1))


class Harness(wiring.Component):
    """A :class:`SpikeRouter` and the E :class:`Accumulators` of the same network, side by
    side, every port brought out: the router's under their own names, the accumulators'
    prefixed ``acc_``."""

    def __init__(self, cfg, *, seed=0):
        self.router = SpikeRouter(cfg, seed=seed)
        self.acc = Accumulators(cfg.n_exc, cfg.lanes, cfg.pipelines, acc_bits_of(cfg),
                                cfg.formats.weight_bits, cfg.n_input)
        self._parts = {name: (self.router, name)
                       for name in self.router.signature.members}
        self._parts.update({f"acc_{name}": (self.acc, name)
                            for name in self.acc.signature.members})
        members = {name: part.signature.members[inner]
                   for name, (part, inner) in self._parts.items()}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.router = self.router
        m.submodules.acc = self.acc
        for name, (part, inner) in self._parts.items():
            member = part.signature.members[inner]
            mine, theirs = getattr(self, name), getattr(part, inner)
            if member.is_signature:
                connect(m, flipped(mine), theirs)
            elif member.flow == wiring.In:
                m.d.comb += theirs.eq(mine)
            else:
                m.d.comb += mine.eq(theirs)
        return m


COSIM_N, COSIM_SEED, COSIM_IMAGES, COSIM_STEPS = 22, 13, 3, 40


def cosim_vectors(mnist_small):
    """MNIST-derived traffic: the golden model (N = 22, teacher on, input weights fixed)
    runs ``COSIM_STEPS`` steps of each of ``COSIM_IMAGES`` images at random intensities;
    every step's input, E and C spike lists, and the weights of the input→E rows."""
    x, y = mnist_small[0], mnist_small[1]
    cfg = preset(COSIM_N, lanes=8, pipelines=4, encoder_lanes=2)
    model = GoldenModel(cfg, seed=COSIM_SEED)
    w_in = model.w_in.astype(np.int64).copy()
    rng = np.random.default_rng(COSIM_SEED)
    images = []
    for k in range(COSIM_IMAGES):
        label = int(y[k])
        model.reset_state()
        steps = []
        counts_e = np.zeros(COSIM_N, np.int64)
        counts_c = np.zeros(10, np.int64)
        for _ in range(COSIM_STEPS):
            e, c = model.run_steps(1, image=x[k], label=label, phase="output",
                                   intensity=int(rng.integers(8, 33)))
            counts_e += e
            counts_c += c
            steps.append({name: np.flatnonzero(p).tolist() for name, p in
                          (("in", model.pend_in), ("e", model.pend_e), ("c", model.pend_c))})
        images.append({"label": label, "steps": steps, "counts_e": counts_e.tolist(),
                       "counts_c": counts_c.tolist()})
    # Phase "output" leaves the input weights alone: every step's rows are the initial ones.
    assert np.array_equal(model.w_in, w_in)
    vec = {"w_in": w_in.tolist(), "images": images,
           "teacher_after": int(model.rng[cfg.encoder_lanes])}
    return cfg, vec


@pytest.fixture(scope="module")
def cosim_setup(tmp_path_factory, mnist_small):
    cfg, vec = cosim_vectors(mnist_small)
    spikes = [sum(len(s[name]) for im in vec["images"] for s in im["steps"])
              for name in QUEUES]
    assert all(spikes), f"MNIST traffic without spikes of some population: {spikes}"
    path = tmp_path_factory.mktemp("router-vectors") / "vectors.json"
    path.write_text(json.dumps(vec))
    return cfg, str(path)


@pytest.mark.parametrize("simulator", list(cosim.SIMULATORS))
def test_cocotb_bench(simulator, cosim_setup):
    reason = cosim.unavailable_reason(simulator)
    if reason:
        pytest.skip(reason)
    cfg, path = cosim_setup
    h = Harness(cfg, seed=COSIM_SEED)
    result = cosim.run_cocotb(h, BENCH, simulator=simulator, name=f"router_n{COSIM_N}",
                              params={"config": cfg.to_dict(), "seed": COSIM_SEED,
                                      "acc_bits": acc_bits_of(cfg), "vectors": path,
                                      "stim_seed": 21, "gap": 0.2, "stall": 0.3})
    assert result.tests == ("router_mnist_traffic", "router_random_traffic")
