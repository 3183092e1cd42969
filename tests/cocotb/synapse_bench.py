"""cocotb bench of the synapse memory's Verilog against the golden model.

Run through ``symspike.sim.cosim.run_cocotb`` (see ``tests/test_synapse.py``), which passes
the parameters read by :func:`symspike.sim.cosim.bench_params`:

``config``, ``projection``, ``lanes``
    The design: ``SynapseMemory(NetworkConfig.from_dict(config), projection, lanes=lanes)``.
``vectors``
    Paths of vector files written by ``tests/test_synapse.py`` (``make_vectors``): initial
    weights, traces and learning rates, then batches of trace writes and requests with the
    ``acc`` and ``rdata`` beats and the weights expected after each batch.
``read_rows``
    Rows read back with ``READ`` requests at the end of each file (default: all).
``seed``, ``stall``, ``gap``
    Seed of the random request gaps and output backpressure; the probability that
    ``acc.ready`` (and, separately, ``rdata.ready``) is low in a cycle, and that
    ``req.valid`` is.

Each file is played from its initial weights, loaded with ``WRITE`` requests. After every
batch (a batch may first set new learning rates, while idle) the bench compares the beats,
reads every weight back with a sweep of ``ACC`` requests (one per row) and every column sum
through ``sum_addr``/``sum_data``; at the end of a file it reads the first ``read_rows`` rows
once more with ``READ`` requests.

Every signal is driven just after a falling edge and sampled in the read-only phase before
the next rising edge, so the bench sees exactly what that edge will act on, in an
event-driven (Icarus) and a cycle-based (Verilator) simulator alike.
"""

import json

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from symspike.firmware.config import NetworkConfig
from symspike.hdl.synapse import Op, SynapseMemory
from symspike.sim.cosim import bench_params

#: Cycles a batch may take beyond one per chunk before the bench gives up.
SLACK = 64


class SynapseDriver:
    """Drives the request stream and trace ports, sinks the ``acc`` and ``rdata`` streams."""

    def __init__(self, dut, unit, rng, *, stall, gap):
        self.dut = dut
        self.unit = unit
        self.rng = rng
        self.stall = stall
        self.gap = gap
        sig = unit.signature.members
        self.req_layout = sig["req"].signature.members["payload"].shape
        self.acc_layout = sig["acc"].signature.members["payload"].shape
        self.trace_bits = unit.cfg.formats.trace_bits
        self.cycles = 0

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        for port in (dut.req__valid, dut.req__payload, dut.acc__ready, dut.rdata__ready,
                     dut.pre_trace__addr, dut.pre_trace__data, dut.pre_trace__en,
                     dut.post_trace__addr, dut.post_trace__data, dut.post_trace__en,
                     dut.sum_addr):
            port.value = 0
        dut.eta_pre.value, dut.eta_post.value = self.unit.eta_defaults
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0

    # ---------------------------------------------------------------- encoding
    def request(self, req) -> int:
        return self.req_layout.const({
            "op": Op(req["op"]), "row": req["row"], "col": req["col"],
            "word": req.get("word", 0), "wdata": req.get("wdata", 0),
            "factor": req.get("factor", 0)}).as_value().value

    def beat(self, bits: int) -> list:
        fields = {}
        for name, field in self.acc_layout:
            fields[name] = (bits >> field.offset) & ((1 << field.width) - 1)
        B, L = self.unit.weight_bits, self.unit.lanes
        weights = [(fields["weights"] >> (B * s)) & ((1 << B) - 1) for s in range(L)]
        return [fields["row"], fields["col"], weights, fields["mask"], fields["last"]]

    # ---------------------------------------------------------------- traces
    async def write_traces(self, which, values):
        dut, L, tb = self.dut, self.unit.lanes, self.trace_bits
        addr, data, en = (getattr(dut, f"{which}_trace__{name}") for name in ("addr", "data",
                                                                              "en"))
        values = [int(v) for v in values]
        for k in range(-(-len(values) // L)):
            chunk = values[k * L:(k + 1) * L]
            await FallingEdge(dut.clk)
            addr.value = k
            data.value = sum(v << (tb * s) for s, v in enumerate(chunk))
            en.value = (1 << len(chunk)) - 1
        await FallingEdge(dut.clk)
        en.value = 0

    async def write_trace(self, which, index, value):
        dut, L, tb = self.dut, self.unit.lanes, self.trace_bits
        await FallingEdge(dut.clk)
        getattr(dut, f"{which}_trace__addr").value = index // L
        getattr(dut, f"{which}_trace__data").value = int(value) << (tb * (index % L))
        getattr(dut, f"{which}_trace__en").value = 1 << (index % L)
        await FallingEdge(dut.clk)
        getattr(dut, f"{which}_trace__en").value = 0

    # ---------------------------------------------------------------- requests
    async def run(self, requests, *, random=True):
        """Issue ``requests`` back to back (random gaps) and collect the output beats until
        the unit is idle; returns ``(acc beats, rdata values)``."""
        dut = self.dut
        queue = [self.request(r) for r in requests]
        stall, gap = (self.stall, self.gap) if random else (0.0, 0.0)
        chunks = sum(self.unit.cycles(Op(r["op"])) for r in requests)
        limit = int((SLACK + chunks + len(requests)) / (1 - stall) / (1 - gap)) + SLACK
        beats, values = [], []
        head = 0
        for _ in range(limit):
            await FallingEdge(dut.clk)
            self.cycles += 1
            offer = head < len(queue) and not (gap and self.rng.random() < gap)
            dut.req__valid.value = int(offer)
            if offer:
                dut.req__payload.value = queue[head]
            ready_a = not (stall and self.rng.random() < stall)
            ready_r = not (stall and self.rng.random() < stall)
            dut.acc__ready.value = int(ready_a)
            dut.rdata__ready.value = int(ready_r)
            await ReadOnly()
            if ready_a and int(dut.acc__valid.value):
                beats.append(self.beat(int(dut.acc__payload.value)))
            if ready_r and int(dut.rdata__valid.value):
                values.append(int(dut.rdata__payload.value))
            if offer and int(dut.req__ready.value):
                head += 1
            elif head == len(queue) and not int(dut.busy.value):
                await FallingEdge(dut.clk)
                dut.req__valid.value = 0
                return beats, values
        raise AssertionError(f"{len(queue)} requests not done within {limit} cycles")

    async def sweep_rows(self):
        """Every weight, read with one ``ACC`` request per row."""
        u = self.unit
        beats, _ = await self.run([{"op": Op.ACC.value, "row": i, "col": 0}
                                   for i in range(u.rows)], random=False)
        w = np.full((u.rows, u.row_beats * u.lanes), -1, dtype=np.int64)
        assert len(beats) == u.rows * u.row_beats, "ACC sweep: wrong number of beats"
        for row, col, weights, mask, _ in beats:
            for s in range(u.lanes):
                if mask >> s & 1:
                    w[row, col + s] = weights[s]
        return w[:, :u.cols]

    async def sweep_reads(self, rows):
        """The weights of the first ``rows`` rows, one ``READ`` request per synapse."""
        u = self.unit
        _, values = await self.run([{"op": Op.READ.value, "row": i, "col": j}
                                    for i in range(rows) for j in range(u.cols)])
        return np.array(values, dtype=np.int64).reshape(rows, u.cols)

    async def sums(self):
        dut, out = self.dut, []
        for j in range(self.unit.cols + 1):
            await FallingEdge(dut.clk)
            if j:
                out.append(int(dut.sum_data.value))
            dut.sum_addr.value = min(j, self.unit.cols - 1)
        return np.array(out, dtype=np.int64)


def same_beats(got, want) -> bool:
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        mask = w[3]
        if g[0] != w[0] or g[1] != w[1] or g[3] != mask or g[4] != w[4]:
            return False
        if any(g[2][s] != w[2][s] for s in range(len(w[2])) if mask >> s & 1):
            return False
    return True


def first_difference(got, want) -> str:
    bad = np.argwhere(got != want)
    i, j = bad[0]
    return (f"{len(bad)} weights differ, first w[{i}, {j}] = {got[i, j]}, "
            f"golden {want[i, j]}")


@cocotb.test()
async def synapse_matches_golden(dut):
    """Every weight, column sum and output beat equals the golden model's, after every
    batch of requests, under random gaps and backpressure."""
    params = bench_params()
    cfg = NetworkConfig.from_dict(params["config"])
    unit = SynapseMemory(cfg, params["projection"], lanes=params["lanes"])
    rng = np.random.default_rng(params["seed"])
    Clock(dut.clk, 10, unit="ns").start()
    drv = SynapseDriver(dut, unit, rng, stall=params["stall"], gap=params["gap"])
    await drv.reset()

    batches = events = 0
    for path in params["vectors"]:
        with open(path) as f:
            vec = json.load(f)
        assert (vec["rows"], vec["cols"], vec["lanes"]) == (unit.rows, unit.cols, unit.lanes)
        await FallingEdge(dut.clk)
        if vec["eta"] is not None:
            dut.eta_pre.value, dut.eta_post.value = vec["eta"]
        else:
            dut.eta_pre.value, dut.eta_post.value = unit.eta_defaults
        w0 = np.array(vec["weights"], dtype=np.int64)
        await drv.run([{"op": Op.WRITE.value, "row": i, "col": j, "wdata": int(w0[i, j])}
                       for i in range(unit.rows) for j in range(unit.cols)], random=False)
        got = await drv.sweep_rows()
        assert np.array_equal(got, w0), f"{path}: initial load: {first_difference(got, w0)}"
        await drv.write_traces("pre", vec["pre"])
        await drv.write_traces("post", vec["post"])
        for n, batch in enumerate(vec["batches"]):
            tag = f"{path.rsplit('/', 1)[-1]} batch {n}"
            if batch["eta"] is not None:
                await FallingEdge(dut.clk)
                dut.eta_pre.value, dut.eta_post.value = batch["eta"]
            for which in ("pre", "post"):
                if batch[which] is not None:
                    await drv.write_traces(which, batch[which])
            for which, index, value in batch["writes"]:
                await drv.write_trace(which, index, value)
            beats, values = await drv.run(batch["requests"])
            assert same_beats(beats, batch["acc"]), f"{tag}: acc beats differ"
            assert values == batch["rdata"], f"{tag}: rdata {values} != {batch['rdata']}"
            want = np.array(batch["weights"], dtype=np.int64)
            got = await drv.sweep_rows()
            assert np.array_equal(got, want), f"{tag}: {first_difference(got, want)}"
            sums = await drv.sums()
            assert np.array_equal(sums, want.sum(axis=0)), f"{tag}: column sums differ"
            batches += 1
            events += len(batch["requests"])
        rows = params.get("read_rows", unit.rows)
        got = await drv.sweep_reads(rows)
        assert np.array_equal(got, want[:rows]), \
            f"{path}: READ sweep: {first_difference(got, want[:rows])}"
    dut._log.info(f"{len(params['vectors'])} vector files, {batches} batches, {events} "
                  f"requests, {drv.cycles} cycles: all equal to the golden model")
