"""cocotb bench of the synaptic-scaling unit's Verilog, with its synapse memory, against the
golden model.

The design is the harness of ``tests/test_scaling.py`` (``Harness``): a ``SynapseMemory``,
the ``ScalingUnit`` driving it and an xorshift32 event-word generator, with host requests to
the memory while the unit is idle. Run through ``symspike.sim.cosim.run_cocotb``, which
passes the parameters read by :func:`symspike.sim.cosim.bench_params`:

``config``, ``projection``, ``lanes``
    The memory: ``SynapseMemory(NetworkConfig.from_dict(config), projection, lanes=lanes)``.
``vectors``
    Path of a vector file written by ``tests/test_scaling.py``: cases, each with initial
    weights, an initial event-generator state and, per scaling pass, the golden model's
    weights and generator state after it.
``seed``, ``hold``
    Seed of the random pauses of the word stream; the probability that it pauses in a
    cycle.

Each case loads its weights with ``WRITE`` requests and reads them back, seeds the generator,
then runs its passes; after each pass it compares every weight (a sweep of ``ACC`` requests,
one per row), every column sum (through ``sum_addr``/``sum_data``) and the generator's state
with the golden model's. Every signal is driven just after a falling edge and sampled in the
read-only phase before the next rising edge, in Icarus and Verilator alike.
"""

import json

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from symspike.firmware.config import NetworkConfig
from symspike.hdl.synapse import Op, SynapseMemory
from symspike.sim.cosim import bench_params

#: Cycles a pass may take beyond the unit's own estimate before the bench gives up.
SLACK = 256


class ScalingDriver:
    """Drives the harness: host requests, generator seed, word-stream pauses, ``start``."""

    def __init__(self, dut, mem, rng, *, hold):
        self.dut = dut
        self.mem = mem
        self.rng = rng
        self.hold = hold
        sig = mem.signature.members
        self.req_layout = sig["req"].signature.members["payload"].shape
        self.acc_layout = sig["acc"].signature.members["payload"].shape
        self.cycles = 0

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        for port in (dut.host__valid, dut.host__payload, dut.acc__ready, dut.rdata__ready,
                     dut.sum_addr, dut.start, dut.seed, dut.seed_load, dut.hold):
            port.value = 0
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        dut.acc__ready.value = 1
        dut.rdata__ready.value = 1

    def request(self, op, row=0, col=0, wdata=0) -> int:
        return self.req_layout.const({"op": op, "row": row, "col": col,
                                      "wdata": wdata}).as_value().value

    def beat(self, bits: int) -> tuple:
        fields = {name: (bits >> f.offset) & ((1 << f.width) - 1)
                  for name, f in self.acc_layout}
        B, L = self.mem.weight_bits, self.mem.lanes
        weights = [(fields["weights"] >> (B * s)) & ((1 << B) - 1) for s in range(L)]
        return fields["row"], fields["col"], weights, fields["mask"]

    async def host(self, requests):
        """Issue host requests back to back; collect ``acc`` beats until the memory is idle."""
        dut = self.dut
        head, beats = 0, []
        limit = 4 * len(requests) * self.mem.row_beats + 64
        for _ in range(limit):
            await FallingEdge(dut.clk)
            self.cycles += 1
            offer = head < len(requests)
            dut.host__valid.value = int(offer)
            if offer:
                dut.host__payload.value = requests[head]
            await ReadOnly()
            if int(dut.acc__valid.value):
                beats.append(self.beat(int(dut.acc__payload.value)))
            if offer and int(dut.host__ready.value):
                head += 1
            elif not offer and not int(dut.mem_busy.value):
                await FallingEdge(dut.clk)
                dut.host__valid.value = 0
                return beats
        raise AssertionError(f"{len(requests)} host requests not done in {limit} cycles")

    async def load(self, w):
        m = self.mem
        await self.host([self.request(Op.WRITE, i, j, int(w[i, j]))
                         for i in range(m.rows) for j in range(m.cols)])

    async def sweep(self):
        """Every weight, read with one ``ACC`` request per row."""
        m = self.mem
        beats = await self.host([self.request(Op.ACC, i) for i in range(m.rows)])
        assert len(beats) == m.rows * m.row_beats, "ACC sweep: wrong number of beats"
        w = np.full((m.rows, m.row_beats * m.lanes), -1, dtype=np.int64)
        for row, col, weights, mask in beats:
            for s in range(m.lanes):
                if mask >> s & 1:
                    w[row, col + s] = weights[s]
        return w[:, :m.cols]

    async def sums(self):
        dut, out = self.dut, []
        for j in range(self.mem.cols + 1):
            await FallingEdge(dut.clk)
            if j:
                out.append(int(dut.sum_data.value))
            dut.sum_addr.value = min(j, self.mem.cols - 1)
        return np.array(out, dtype=np.int64)

    async def seed(self, state):
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.seed.value = state
        dut.seed_load.value = 1
        await FallingEdge(dut.clk)
        dut.seed_load.value = 0

    async def scale(self, limit):
        """One pass: ``start``, random word-stream pauses until ``done``; returns the cycles
        from ``start`` to ``done`` inclusive."""
        dut = self.dut
        for n in range(limit):
            await FallingEdge(dut.clk)
            self.cycles += 1
            dut.start.value = int(n == 0)
            dut.hold.value = int(bool(self.hold) and self.rng.random() < self.hold)
            await ReadOnly()
            assert not int(dut.acc__valid.value), "a scaling pass output an acc beat"
            if n and not int(dut.busy.value):
                raise AssertionError("busy fell without done")
            if int(dut.done.value):
                await FallingEdge(dut.clk)
                dut.hold.value = 0
                return n + 1
        raise AssertionError(f"no done within {limit} cycles")


def first_difference(got, want) -> str:
    bad = np.argwhere(got != want)
    i, j = bad[0]
    return (f"{len(bad)} weights differ, first w[{i}, {j}] = {got[i, j]}, "
            f"golden {want[i, j]}")


@cocotb.test()
async def scaling_matches_golden(dut):
    """Every weight, column sum and the event state equal the golden model's after every
    scaling pass, with random pauses of the word stream."""
    params = bench_params()
    cfg = NetworkConfig.from_dict(params["config"])
    mem = SynapseMemory(cfg, params["projection"], lanes=params["lanes"])
    with open(params["vectors"]) as f:
        vec = json.load(f)
    assert (vec["rows"], vec["cols"], vec["lanes"]) == (mem.rows, mem.cols, mem.lanes)
    rng = np.random.default_rng(params["seed"])
    Clock(dut.clk, 10, unit="ns").start()
    drv = ScalingDriver(dut, mem, rng, hold=params["hold"])
    await drv.reset()
    hold = params["hold"]
    # Columns of RB = ceil(R / L) cycles, plus the divider's cycles and the word pauses.
    limit = int((mem.cols * (mem.col_beats + mem.factor_bits + 2)) / (1 - hold)) + SLACK

    passes, scale_cycles = 0, []
    for case in vec["cases"]:
        name = case["name"]
        w0 = np.array(case["weights"], dtype=np.int64)
        await drv.load(w0)
        got = await drv.sweep()
        assert np.array_equal(got, w0), f"{name}: initial load: {first_difference(got, w0)}"
        await drv.seed(case["state"])
        for n, want in enumerate(case["passes"]):
            tag = f"{name} pass {n}"
            scale_cycles.append(await drv.scale(limit))
            w = np.array(want["weights"], dtype=np.int64)
            got = await drv.sweep()
            assert np.array_equal(got, w), f"{tag}: {first_difference(got, w)}"
            sums = await drv.sums()
            assert np.array_equal(sums, w.sum(axis=0)), f"{tag}: column sums differ"
            await FallingEdge(dut.clk)
            state = int(dut.event_state.value)
            assert state == want["state"], \
                f"{tag}: event state {state:#x} != golden {want['state']:#x}"
            passes += 1
    dut._log.info(f"{len(vec['cases'])} cases, {passes} scaling passes "
                  f"({scale_cycles} cycles), {drv.cycles} cycles driven: all equal to the "
                  f"golden model")
