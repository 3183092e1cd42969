"""cocotb bench of the spike router and an accumulator bank (their Verilog), against Python
references.

The design is the harness of ``tests/test_router.py`` (``Harness``): a ``SpikeRouter`` with
its ports under their own names and the E ``Accumulators`` of the same network with theirs
prefixed ``acc_``. Run through ``symspike.sim.cosim.run_cocotb``, which passes the
parameters read by :func:`symspike.sim.cosim.bench_params`:

``config``, ``seed``, ``acc_bits``
    The network (``NetworkConfig.to_dict()``), the run seed the router was built with (its
    teacher's reset state) and the width of an accumulator.
``vectors``
    Path of the file written by ``tests/test_router.py``: the golden model's input, E and C
    spike lists of every time step of a few MNIST images (teacher on), its spike counts per
    image, its input→E weight codes and its teacher state after the last step.
``stim_seed``, ``gap``, ``stall``
    Seed of the random stimuli; probability that a source idles in a cycle (``valid`` low)
    and that a sink stalls (``ready`` low).

``router_mnist_traffic`` plays the time steps as the network core does: phase B pushes the
step's spikes into the three queues (counted), phase A drains them under back-pressure while
the bench, standing in for the synapse memory, sends each input spike's weight row to the
accumulators, which are then drained and compared with the NumPy sum of those rows. Per
image the router's counts equal the golden model's; per step the teacher's decision equals
the golden model's teacher spike. ``router_random_traffic`` adds random traffic on all
queues with random accumulator rounds in parallel, queues filled to their depth, flushes,
and clear/count rounds.

Every cycle, both tests check ``*_pending`` against the queue's level, ``*_spikes.ready``
against its depth, the head of every valid output and ``teacher_fire``. Every signal is
driven just after a falling edge and sampled in the read-only phase before the next rising
edge, in Icarus and Verilator alike.
"""

import json
from collections import deque

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from symspike.firmware.config import NetworkConfig
from symspike.hdl.synapse import AccLayout
from symspike.sim.cosim import bench_params
from symspike.sim.rng import teacher_threshold, stream_seeds, xorshift32_py

QUEUES = ("in", "e", "c")
#: Cycles any wait may take before the bench gives up.
LIMIT = 200_000


class RouterBench:
    """Drives every input of the harness once per cycle and checks every output."""

    def __init__(self, dut, cfg, params, rng):
        self.dut, self.cfg, self.rng = dut, cfg, rng
        self.gap, self.stall = params["gap"], params["stall"]
        self.n = cfg.n_exc
        self.L, self.P, self.acc_bits = cfg.lanes, cfg.pipelines, params["acc_bits"]
        self.B = cfg.formats.weight_bits
        self.depth = {"in": cfg.n_input, "e": cfg.n_exc, "c": cfg.n_classes}
        self.feed = {q: deque() for q in QUEUES}
        self.offer = dict.fromkeys(QUEUES)
        self.queue = {q: deque() for q in QUEUES}
        self.sent = {q: 0 for q in QUEUES}
        self.got = {q: 0 for q in QUEUES}
        self.peak = dict.fromkeys(QUEUES, 0)
        self.cmax = (1 << (cfg.steps_present.bit_length())) - 1
        self.counts = {"e": np.zeros(cfg.n_exc, np.int64), "c": np.zeros(10, np.int64)}
        self.e_total = 0
        self.seed_state = int(stream_seeds(params["seed"], cfg.encoder_lanes)["teacher"])
        self.teacher = self.seed_state
        self.thr = teacher_threshold(cfg.teacher_p)
        self.acc_feed = deque()
        self.acc_offer = None
        self.acc_sums = np.zeros(self.n, np.int64)
        self.acc_got = []
        self.acc_took = False       # a beat was taken in the last cycle
        self.on_in = None           # called with each input spike that leaves its queue
        layout = AccLayout(cfg.n_input, self.n, self.L, self.B)
        self.fields = {name: field.offset for name, field in layout}
        self.cycles = 0
        self.s = {}
        self._last = {}
        h = dut
        self.src = {q: (getattr(h, f"{q}_spikes__valid"), getattr(h, f"{q}_spikes__payload"),
                        getattr(h, f"{q}_spikes__ready")) for q in QUEUES}
        self.dst = {q: (getattr(h, f"{q}_out__valid"), getattr(h, f"{q}_out__payload"),
                        getattr(h, f"{q}_out__ready"), getattr(h, f"{q}_pending"))
                    for q in QUEUES}

    # ------------------------------------------------------------------ plumbing
    def drive(self, handle, value):
        # Writes only on change: most inputs hold their value for many cycles.
        value = int(value)
        if self._last.get(handle) != value:
            handle.value = value
            self._last[handle] = value

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        for q in QUEUES:
            self.drive(self.src[q][0], 0)
            self.drive(self.src[q][1], 0)
            self.drive(self.dst[q][2], 0)
        for name in ("count", "clear", "flush", "teacher_draw", "teacher_load",
                     "teacher_state_in", "e_count_addr", "c_count_addr", "acc_add__valid",
                     "acc_add__payload", "acc_start", "acc_out__ready"):
            self.drive(getattr(dut, name), 0)
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        self.teacher = self.seed_state

    def pack(self, beat):
        f = self.fields
        weights = sum(int(w) << (self.B * s) for s, w in enumerate(beat["weights"]))
        return (beat["row"] << f["row"] | beat["col"] << f["col"] | weights << f["weights"]
                | beat["mask"] << f["mask"] | beat["last"] << f["last"])

    def row_beats(self, row, w):
        """The beats a synapse memory sends for an input spike: weight row ``w`` in chunks
        of ``L``, the last chunk masked."""
        beats = []
        for col in range(0, self.n, self.L):
            chunk = [int(v) for v in w[col:col + self.L]]
            beats.append({"row": row, "col": col, "weights": chunk + [0] * (self.L - len(chunk)),
                          "mask": (1 << len(chunk)) - 1, "last": int(col + self.L >= self.n)})
        return beats

    def random_beats(self, count):
        chunks = -(-self.n // self.L)
        beats, chunk = [], 0
        for _ in range(count):
            if self.rng.random() >= 0.3:
                chunk = int(self.rng.integers(chunks))
            col = chunk * self.L
            valid = sum(1 << s for s in range(self.L) if col + s < self.n)
            mask = valid if self.rng.random() < 0.5 else \
                int(self.rng.integers(0, 1 << self.L)) & valid
            beats.append({"row": int(self.rng.integers(self.cfg.n_input)), "col": col,
                          "weights": [int(v) for v in self.rng.integers(0, 1 << self.B, self.L)],
                          "mask": mask, "last": 0})
        return beats

    # ------------------------------------------------------------------ one cycle
    async def cycle(self, *, gap=0.0, stall=0.0, count=0, clear=0, flush=0, draw=0,
                    acc_gap=0.0, acc_stall=0.0, acc_start=0, e_addr=0, c_addr=0):
        dut, rng = self.dut, self.rng
        await FallingEdge(dut.clk)
        ready = {}
        for q in QUEUES:
            valid_h, payload_h, _ = self.src[q]
            if self.offer[q] is None and self.feed[q] and not (gap and rng.random() < gap):
                self.offer[q] = self.feed[q].popleft()
                self.drive(payload_h, self.offer[q])
            self.drive(valid_h, self.offer[q] is not None)
            ready[q] = not (stall and rng.random() < stall)
            self.drive(self.dst[q][2], ready[q])
        if self.acc_offer is None and self.acc_feed and not (acc_gap and rng.random() < acc_gap):
            self.acc_offer = self.acc_feed.popleft()
            self.drive(dut.acc_add__payload, self.pack(self.acc_offer))
        self.drive(dut.acc_add__valid, self.acc_offer is not None)
        acc_ready = not (acc_stall and rng.random() < acc_stall)
        self.drive(dut.acc_out__ready, acc_ready)
        self.drive(dut.acc_start, acc_start)
        for name, value in (("count", count), ("clear", clear), ("flush", flush),
                            ("teacher_draw", draw), ("e_count_addr", e_addr),
                            ("c_count_addr", c_addr)):
            self.drive(getattr(dut, name), value)

        await ReadOnly()
        where = f"cycle {self.cycles}"
        for q in QUEUES:
            valid_h, payload_h, _, pending_h = self.dst[q]
            queue = self.queue[q]
            level = len(queue)
            pending = int(pending_h.value)
            assert pending == (level > 0), f"{where}: {q}_pending {pending}, {level} queued"
            s_ready = int(self.src[q][2].value)
            assert s_ready == (level < self.depth[q]), \
                f"{where}: {q}_spikes.ready {s_ready} with {level} of {self.depth[q]} queued"
            if int(valid_h.value):
                assert level, f"{where}: {q}_out valid with an empty queue"
                payload = int(payload_h.value)
                assert payload == queue[0], f"{where}: {q}_out {payload}, expected {queue[0]}"
                if ready[q]:
                    queue.popleft()
                    self.got[q] += 1
                    if q == "in" and self.on_in is not None:
                        self.on_in(payload)
            if self.offer[q] is not None and s_ready:
                queue.append(self.offer[q])
                self.sent[q] += 1
                if count and not clear and q != "in":
                    c = self.counts[q]
                    c[self.offer[q]] = min(c[self.offer[q]] + 1, self.cmax)
                    self.e_total += q == "e"
                self.offer[q] = None
            self.peak[q] = max(self.peak[q], len(queue))
        fire = int(dut.teacher_fire.value)
        want = int((xorshift32_py(self.teacher) >> 16) < self.thr)
        assert fire == want, f"{where}: teacher_fire {fire}, expected {want}"
        if draw:
            self.teacher = xorshift32_py(self.teacher)
        self.acc_took = self.acc_offer is not None and bool(int(dut.acc_add__ready.value))
        if self.acc_took:
            b = self.acc_offer
            for s in range(self.L):
                if b["mask"] >> s & 1:
                    self.acc_sums[b["col"] + s] += b["weights"][s]
            self.acc_offer = None
        if acc_ready and int(dut.acc_out__valid.value):
            bits = int(dut.acc_out__payload.value)
            mask = (1 << self.acc_bits) - 1
            self.acc_got += [(bits >> (self.acc_bits * p)) & mask for p in range(self.P)]
        self.s = {"busy": int(dut.busy.value), "acc_busy": int(dut.acc_busy.value),
                  "fire": fire, "e_count": int(dut.e_count.value),
                  "c_count": int(dut.c_count.value), "e_total": int(dut.e_total.value)}
        self.cycles += 1

    # ------------------------------------------------------------------ sequences
    @property
    def idle(self):
        return not any(self.feed.values()) and all(o is None for o in self.offer.values())

    @property
    def empty(self):
        return self.idle and not any(self.queue.values())

    async def drain(self, **kw):
        """Run until every fed spike and every accumulator beat has gone through."""
        for _ in range(LIMIT):
            if self.empty and self.acc_offer is None and not self.acc_feed:
                return
            await self.cycle(**kw)
        raise AssertionError(f"not drained in {LIMIT} cycles")

    async def acc_drain(self, what, *, stall=0.0):
        """Wait for the accumulators to be idle, drain them under back-pressure and compare
        every value with the reference sums (lanes past ``n`` must be zero)."""
        for _ in range(LIMIT):
            await self.cycle(stall=1.0)
            if not self.s["acc_busy"]:
                break
        self.acc_got = []
        await self.cycle(stall=1.0, acc_start=1, acc_stall=stall)
        for _ in range(LIMIT):
            await self.cycle(stall=1.0, acc_stall=stall)
            if not self.s["acc_busy"]:
                break
        beats = -(-self.n // self.P)
        assert len(self.acc_got) == beats * self.P, f"{what}: {len(self.acc_got)} values"
        got = np.array(self.acc_got, dtype=np.int64)
        bad = np.flatnonzero(got[:self.n] != self.acc_sums)
        assert not bad.size, (f"{what}: {bad.size} accumulators differ, first {bad[0]}: "
                              f"{got[bad[0]]}, expected {self.acc_sums[bad[0]]}")
        assert not got[self.n:].any(), f"{what}: lanes past n not zero"
        self.acc_sums[:] = 0

    async def read_counts(self):
        """Every E and C count through the read ports, one address per cycle (the value of
        the address set in the previous cycle)."""
        e, c = [], []
        for a in range(self.n + 1):
            await self.cycle(stall=1.0, e_addr=min(a, self.n - 1), c_addr=min(a, 9))
            if a:
                e.append(self.s["e_count"])
                if a <= 10:
                    c.append(self.s["c_count"])
        return np.array(e, dtype=np.int64), np.array(c, dtype=np.int64)

    async def check_counts(self, what, want_e=None, want_c=None):
        e, c = await self.read_counts()
        want_e = self.counts["e"] if want_e is None else want_e
        want_c = self.counts["c"] if want_c is None else want_c
        assert np.array_equal(e, want_e), f"{what}: E counts {e.tolist()} != {list(want_e)}"
        assert np.array_equal(c, want_c), f"{what}: C counts {c.tolist()} != {list(want_c)}"
        assert self.s["e_total"] == int(np.sum(want_e)), \
            f"{what}: e_total {self.s['e_total']} != {int(np.sum(want_e))}"

    async def clear(self, *, spikes=False):
        """``clear``, then wait for ``busy`` to fall: it must take ``max(N, 10) + 1``
        cycles, the clear's own included. With ``spikes``, an E and a C spike are counted
        in the cycle before the clear and another pair arrives in its cycle: neither may
        survive it."""
        if spikes:
            for q in ("e", "c"):
                self.feed[q].extend([0, 1])
            await self.cycle(stall=1.0, count=1)
            assert all(self.offer[q] is None and len(self.feed[q]) == 1 for q in ("e", "c"))
        await self.cycle(stall=1.0, clear=1, count=int(spikes))
        assert not spikes or self.idle, "the spikes of the clear's cycle were not taken"
        cycles = 1
        while True:
            await self.cycle(stall=1.0)
            if not self.s["busy"]:
                break
            cycles += 1
            assert cycles < LIMIT
        assert cycles == max(self.n, 10) + 1, f"clear busy for {cycles} cycles"
        for c in self.counts.values():
            c[:] = 0
        self.e_total = 0

    async def flush(self, what):
        """``flush`` with the queues as they are: ``busy`` until all are empty, no spike
        leaves meanwhile, then ``pending`` low everywhere."""
        levels = max(len(q) for q in self.queue.values())
        dut = self.dut
        assert self.idle and self.acc_offer is None
        await FallingEdge(dut.clk)
        for q in QUEUES:
            self.drive(self.src[q][0], 0)
            self.drive(self.dst[q][2], 0)
        for name in ("acc_add__valid", "count", "clear", "teacher_draw", "acc_start"):
            self.drive(getattr(dut, name), 0)
        self.drive(dut.flush, 1)
        await ReadOnly()
        assert int(dut.busy.value), f"{what}: busy low in the flush's cycle"
        cycles = 1
        while True:
            await FallingEdge(dut.clk)
            self.drive(dut.flush, 0)
            for q in QUEUES:
                self.drive(self.dst[q][2], self.rng.random() < 0.5)
            await ReadOnly()
            for q in QUEUES:
                assert not int(self.dst[q][0].value), f"{what}: {q} spike left during a flush"
            if not int(dut.busy.value):
                break
            cycles += 1
            assert cycles < LIMIT
        for q in QUEUES:
            assert not int(self.dst[q][3].value), f"{what}: {q}_pending after the flush"
            self.queue[q].clear()
        assert levels <= cycles <= levels + 3, f"{what}: flush of {levels} took {cycles}"


async def start(dut, params):
    cfg = NetworkConfig.from_dict(params["config"])
    Clock(dut.clk, 10, unit="ns").start()
    bench = RouterBench(dut, cfg, params, np.random.default_rng(params["stim_seed"]))
    await bench.reset()
    # Counter memories are not reset: clear them as the core does before a presentation.
    await bench.clear()
    return bench


@cocotb.test()
async def router_mnist_traffic(dut):
    """Time steps of MNIST images from the golden model through the queues and the
    accumulators, as the network core runs them; counts and teacher as the golden model's."""
    params = bench_params()
    bench = await start(dut, params)
    with open(params["vectors"]) as f:
        vec = json.load(f)
    w_in = np.array(vec["w_in"], dtype=np.int64)
    gap, stall = bench.gap, bench.stall
    taken = []

    def synapse_memory(i):
        taken.append(i)
        bench.acc_feed.extend(bench.row_beats(i, w_in[i]))

    bench.on_in = synapse_memory
    steps = 0
    for k, image in enumerate(vec["images"]):
        label = image["label"]
        for t, step in enumerate(image["steps"]):
            what = f"image {k} step {t}"
            # Phase B: the teacher's draw, then the step's spikes into the queues.
            await bench.cycle(stall=1.0, draw=1)
            assert bench.s["fire"] == (label in step["c"]), f"{what}: teacher decision"
            for q in QUEUES:
                bench.feed[q].extend(step[q])
            for _ in range(LIMIT):
                if bench.idle:
                    break
                await bench.cycle(gap=gap, stall=1.0, count=1)
            for q in QUEUES:
                assert list(bench.queue[q]) == step[q], f"{what}: {q} queue"
            # Phase A: every queue drained, each input spike's weight row accumulated.
            taken.clear()
            await bench.drain(stall=stall)
            assert taken == step["in"], f"{what}: input spikes delivered"
            want = w_in[step["in"]].sum(axis=0) if step["in"] else np.zeros(bench.n, np.int64)
            assert np.array_equal(bench.acc_sums, want)
            await bench.acc_drain(what, stall=stall)
            steps += 1
        await bench.check_counts(f"image {k}", image["counts_e"], image["counts_c"])
        await bench.clear()
        await bench.check_counts(f"image {k} after clear")
    assert bench.teacher == vec["teacher_after"], "teacher state after the images"
    dut._log.info(f"{steps} steps of {len(vec['images'])} MNIST images, {bench.sent} spikes, "
                  f"{bench.cycles} cycles: queues, counts, teacher and sums as expected")


@cocotb.test()
async def router_random_traffic(dut):
    """Random traffic on all queues with accumulator rounds in parallel, full queues,
    flushes, clear/count rounds."""
    params = bench_params()
    bench = await start(dut, params)
    rng = bench.rng
    n = bench.n
    sizes = {"in": 784, "e": n, "c": 10}
    rounds = 0

    async def traffic(cycles, gap, stall, *, spikes=250):
        nonlocal rounds
        for q in QUEUES:
            bench.feed[q].extend(int(a) for a in rng.integers(0, sizes[q], spikes))
        count, acc_phase = 1, "add"
        bench.acc_feed.extend(bench.random_beats(int(rng.integers(20, 80))))
        for _ in range(cycles):
            if rng.random() < 0.05:
                count ^= 1
            start_acc = 0
            if acc_phase == "started":
                acc_phase = "drain"     # busy rises in the cycle after start
            elif acc_phase == "add" and not bench.acc_feed and bench.acc_offer is None \
                    and not bench.acc_took and not bench.s["acc_busy"]:
                bench.acc_got = []
                start_acc, acc_phase = 1, "started"
            elif acc_phase == "drain" and not bench.s["acc_busy"]:
                # The drain is over: compare, then the next round of beats.
                beats = -(-n // bench.P)
                assert len(bench.acc_got) == beats * bench.P
                got = np.array(bench.acc_got[:n])
                assert np.array_equal(got, bench.acc_sums), f"random acc round {rounds}"
                assert not any(bench.acc_got[n:])
                bench.acc_sums[:] = 0
                rounds += 1
                bench.acc_feed.extend(bench.random_beats(int(rng.integers(0, 80))))
                acc_phase = "add"
            await bench.cycle(gap=gap, stall=stall, count=count, draw=rng.random() < 0.3,
                              acc_gap=gap, acc_stall=stall, acc_start=start_acc)
        await bench.drain(gap=gap, stall=stall, count=count)
        if acc_phase in ("started", "drain"):
            for _ in range(LIMIT):
                await bench.cycle(stall=1.0, acc_stall=stall)
                if not bench.s["acc_busy"]:
                    break
            assert np.array_equal(np.array(bench.acc_got[:n]), bench.acc_sums)
            bench.acc_sums[:] = 0
            rounds += 1
        else:
            await bench.acc_drain("last random round", stall=stall)
            rounds += 1

    for gap, stall in ((0.5, 0.2), (0.1, 0.7), (bench.gap, bench.stall)):
        await traffic(400, gap, stall)
        await bench.check_counts(f"traffic gap {gap} stall {stall}")
    assert bench.peak["e"] == n and bench.peak["c"] == 10, bench.peak

    # Every queue filled to its depth with nothing read; three more spikes each wait.
    for q in QUEUES:
        bench.feed[q].extend(int(a) for a in rng.integers(0, sizes[q], bench.depth[q] + 3))
    for _ in range(784 + 10):
        await bench.cycle(stall=1.0, count=1)
    for q in QUEUES:
        assert len(bench.queue[q]) == bench.depth[q], f"{q} queue not full"
        assert bench.offer[q] is not None and len(bench.feed[q]) == 2, f"{q} lost a spike"
    await bench.drain(stall=bench.stall, count=1)
    await bench.check_counts("full queues")

    # Flushes of full, partial and empty queues; the traffic after them proves nothing
    # stale remains.
    for fill in ({"in": 784, "e": n, "c": 10}, {"in": 100, "e": 0, "c": 3},
                 {"in": 0, "e": 0, "c": 0}):
        for q in QUEUES:
            bench.feed[q].extend(int(a) for a in rng.integers(0, sizes[q], fill[q]))
        while not bench.idle:
            await bench.cycle(stall=1.0)
        await bench.flush(f"flush {fill}")
        await traffic(100, bench.gap, bench.stall, spikes=20)

    # Clear/count rounds, clears back to back among them.
    for k in range(3):
        await bench.check_counts(f"round {k}")
        await bench.clear(spikes=k == 0)
        if k == 1:
            await bench.clear()
        await bench.check_counts(f"round {k} after clear")
        await traffic(200, bench.gap, bench.stall, spikes=150)
    await bench.check_counts("last round")
    dut._log.info(f"{bench.sent} spikes, {rounds} accumulator rounds, {bench.cycles} cycles: "
                  f"all as expected")
