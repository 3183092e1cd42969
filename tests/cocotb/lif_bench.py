"""cocotb bench of a LIF neuron core's Verilog (``hdl/lif.py``) against golden-model vectors.

Run through ``symspike.sim.cosim.run_cocotb`` (see ``tests/test_lif.py``), which writes the
vectors with the golden model and passes the parameters read by
:func:`symspike.sim.cosim.bench_params`:

``vectors``
    Paths of JSON vector files (``tests/test_lif.py: Recorder``): the configuration, the
    population and pipelines of the design, the initial state words, and per pass the
    command, the accumulator rows, the expected spike addresses and every expected state
    word after the pass.
``seed``
    Seed of the random input gaps and output backpressure.
``gap``, ``stall``
    Probability that a new accumulator row is held back a cycle, and that ``spikes.ready``
    is low in a cycle.

Each vector file is one cocotb test. The state is loaded and read back through the core's
access port; every word of every neuron is compared after every pass, and so are the spikes
and the traces the pass puts out.

Every signal is driven just after a falling edge and sampled in the read-only phase before
the next rising edge, so the bench sees exactly what that edge will act on, in an
event-driven (Icarus) and a cycle-based (Verilator) simulator alike.
"""

import json
from collections import deque

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from amaranth.lib import data

from symspike.firmware.config import NetworkConfig
from symspike.hdl.lif import cls_layout, exc_layout
from symspike.sim.cosim import bench_params
from symspike.sim.fixed import derive

#: Encodings of ``Op`` and ``Word`` (``hdl/lif.py``).
OPS = {"STEP": 0, "RESET": 1, "DECAY_THETA": 2}
WORDS = {"MAIN": 0, "INH": 1, "THETA": 2, "COUNT": 3}
#: Cycles a pass may take beyond one per row and one per spike before the bench gives up.
SLACK = 64


class LIFDriver:
    """Drives a core's command, accumulator stream and access port; sinks its spikes."""

    def __init__(self, dut, vectors, rng, *, gap, stall):
        self.dut = dut
        self.vec = vectors
        self.rng = rng
        self.gap = gap
        self.stall = stall
        self.ei = vectors["population"] == "EI"
        self.pipelines = vectors["pipelines"]
        self.lane_bits = len(dut.acc__payload) // self.pipelines
        cfg = NetworkConfig.from_dict(vectors["config"])
        self.k = derive(cfg)
        self.layout = exc_layout(cfg) if self.ei else cls_layout(cfg)
        self.trace_bits = cfg.formats.trace_bits

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        ports = [dut.start, dut.op, dut.acc__valid, dut.acc__payload, dut.spikes__ready,
                 dut.access__addr, dut.access__sel, dut.access__we, dut.access__wdata]
        ports += [dut.learn] if self.ei else [dut.teacher, dut.label, dut.fire]
        for port in ports:
            port.value = 0
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def write(self, words):
        """Write ``{word name: [raw bits per neuron]}`` through the access port."""
        dut = self.dut
        for name, values in words.items():
            for j, bits in enumerate(values):
                await FallingEdge(dut.clk)
                dut.access__addr.value = j
                dut.access__sel.value = WORDS[name]
                dut.access__wdata.value = int(bits)
                dut.access__we.value = 1
        await FallingEdge(dut.clk)
        dut.access__we.value = 0

    async def read(self, names_counts):
        """Read words back: ``rdata`` shows the word addressed in the previous cycle."""
        dut = self.dut
        out = {}
        for name, count in names_counts:
            values = []
            for j in range(count + 1):
                await FallingEdge(dut.clk)
                if j:
                    values.append(dut.access__rdata.value.to_unsigned())
                if j < count:
                    dut.access__addr.value = j
                    dut.access__sel.value = WORDS[name]
            out[name] = values
        return out

    def _payload(self, row):
        return sum(int(a) << (p * self.lane_bits) for p, a in enumerate(row))

    def _lanes(self, handle):
        bits = handle.value.to_unsigned()
        mask = (1 << self.trace_bits) - 1
        return [bits >> (p * self.trace_bits) & mask for p in range(self.pipelines)]

    def expected_traces(self, step):
        """``(neuron, x, bumped)`` of every neuron, as the trace outputs must show them."""
        if step["op"] == "DECAY_THETA":
            return []
        out = []
        for j, bits in enumerate(step["words"]["MAIN"]):
            word = data.Const(self.layout, bits)
            x = int(word.x)
            bumped = min(x + self.k.trace_inc, self.k.trace_max) if int(word.spiked) else x
            out.append((j, x, bumped if self.ei else x))
        return out

    async def run_pass(self, step, rows):
        """Start one pass, feed ``rows`` (a deque, consumed); collect spikes and traces."""
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.op.value = OPS[step["op"]]
        if self.ei:
            dut.learn.value = step["learn"]
        else:
            dut.teacher.value = step["teacher"]
            dut.label.value = step["label"]
            dut.fire.value = step["fire"]
        dut.start.value = 1
        await FallingEdge(dut.clk)
        dut.start.value = 0
        spikes, traces = [], []
        offering = False
        limit = len(step["acc"]) + len(step["spikes"]) + SLACK
        for _ in range(10 * limit):
            # A row once offered stays offered until it is taken.
            if not offering and rows and self.rng.random() >= self.gap:
                offering = True
                dut.acc__payload.value = self._payload(rows[0])
            dut.acc__valid.value = int(offering)
            ready = int(self.rng.random() >= self.stall)
            dut.spikes__ready.value = ready
            await ReadOnly()
            if offering and int(dut.acc__ready.value):
                rows.popleft()
                offering = False
            if ready and int(dut.spikes__valid.value):
                spikes.append(dut.spikes__payload.value.to_unsigned())
            en = dut.trace_en.value.to_unsigned()
            if en:
                row = dut.trace_row.value.to_unsigned()
                xs = self._lanes(dut.trace_x)
                bs = self._lanes(dut.trace_bumped) if self.ei else xs
                traces += [(row * self.pipelines + p, xs[p], bs[p])
                           for p in range(self.pipelines) if en >> p & 1]
            done = int(dut.done.value)
            await FallingEdge(dut.clk)
            if done:
                dut.acc__valid.value = 0
                dut.spikes__ready.value = 0
                assert int(dut.busy.value) == 0, "busy after done"
                return spikes, sorted(traces)
        raise AssertionError(f"pass {step['op']} did not end within {10 * limit} cycles")

    async def play(self):
        """Play every pass; stop at the first pass with a wrong spike or word."""
        await self.write(self.vec["init"])
        rows = deque(row for st in self.vec["steps"] if st["op"] == "STEP"
                     for row in st["acc"])
        for t, step in enumerate(self.vec["steps"]):
            spikes, traces = await self.run_pass(step, rows)
            assert spikes == step["spikes"], (
                f"pass {t} ({step['op']}): spikes {spikes}, golden {step['spikes']}")
            want = self.expected_traces(step)
            bad = next((i for i, (a, b) in enumerate(zip(traces, want)) if a != b),
                       min(len(traces), len(want)))
            assert traces == want, (
                f"pass {t} ({step['op']}): {len(traces)} trace writes, golden {len(want)}; "
                f"first difference (neuron, x, bumped): rtl {traces[bad:bad + 1]}, golden "
                f"{want[bad:bad + 1]}")
            got = await self.read([(name, len(v)) for name, v in step["words"].items()])
            for name, want in step["words"].items():
                bad = [j for j, (a, b) in enumerate(zip(got[name], want)) if a != b]
                assert not bad, (f"pass {t} ({step['op']}): {name} words differ at neurons "
                                 f"{bad[:8]}: rtl {hex(got[name][bad[0]])}, golden "
                                 f"{hex(want[bad[0]])}")
        assert not rows, f"{len(rows)} accumulator rows left over"


async def _run(dut, index):
    params = bench_params()
    paths = params["vectors"]
    if index >= len(paths):
        return
    with open(paths[index]) as f:
        vectors = json.load(f)
    rng = np.random.default_rng(params.get("seed", 0) + index)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    driver = LIFDriver(dut, vectors, rng, gap=params.get("gap", 0.2),
                       stall=params.get("stall", 0.3))
    await driver.reset()
    await driver.play()


@cocotb.test()
async def random_states(dut):
    """Random and corner-case states with random accumulators; reset and θ decay passes."""
    await _run(dut, 0)


@cocotb.test()
async def mnist_presentation(dut):
    """Accumulators of a real MNIST presentation through the golden model's weights."""
    await _run(dut, 1)
