"""Synapse memory (``hdl/synapse.py``) against the golden model, bit for bit.

Every test builds *vectors* with the golden model: initial weights and traces, then batches
of trace writes and requests with, per batch, the ``acc`` and ``rdata`` beats and the weights
and column sums expected after it. :func:`simulate` plays them in Amaranth's simulator and
compares every weight after every batch; the cocotb bench (``tests/cocotb/synapse_bench.py``)
plays the same vectors on the exported Verilog in Icarus and Verilator.

Golden side (:class:`GoldenSynapses`): one learning event is one time step of a
``GoldenModel`` with a single pending spike — an input spike for a row of input→E, an E
spike for a column of input→E or a row of E→C, a C spike for a column of E→C — and the
traces set from the vectors. Phase A then performs exactly that event with one word of the
model's event stream; phase B changes only neuron state, which is overwritten before the
next event. Replays of a real MNIST presentation are checked against the uninterrupted run
they were recorded from.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from stream_helpers import stream_put_all
from symspike.firmware.config import preset
from symspike.hdl.synapse import (LATENCY, AccLayout, Op, RequestLayout, SynapseMemory,
                                  TraceWrite)
from symspike.sim import cosim
from symspike.sim.fixed import K_INDEX, derive
from symspike.sim.golden_kernel import C_X, E_X, _delta, _pre_update, scale_columns
from symspike.sim.network import GoldenModel
from symspike.sim.rng import dither_hash, xorshift32_py

BENCH = Path(__file__).parent / "cocotb" / "synapse_bench.py"
COSIM_LANES = 8
ROW_OPS = (Op.ACC, Op.ROW)


# ----------------------------------------------------------------------------- golden side
class GoldenSynapses:
    """One plastic projection of a :class:`GoldenModel`, driven one request at a time.

    ``pre`` and ``post`` are the traces the unit holds (input→E: ``x_in`` and the E traces;
    E→C: the E and the C traces); :meth:`apply` copies them into the model before each event.
    """

    def __init__(self, cfg, projection, *, seed=0, eta_scale=None):
        self.model = m = GoldenModel(cfg, seed=seed)
        if eta_scale is not None:
            m.set_eta_scale(eta_scale)
        self.projection = projection
        self.w = m.w_in if projection == "in" else m.w_ec
        self.rows, self.cols = self.w.shape
        self.pre = np.zeros(self.rows, dtype=np.int64)
        self.post = np.zeros(self.cols, dtype=np.int64)
        names = ("eta_in_dep" if cfg.rule == "asym" else "eta_in", "eta_in")
        if projection == "ec":
            names = tuple(n.replace("_in", "_ec") for n in names)
        self._eta_names = names
        self._read_eta()

    def _read_eta(self):
        # The learning rates the kernel uses (after the model's learning-rate scale).
        self.eta = tuple(int(self.model._K[K_INDEX[n]]) for n in self._eta_names)

    def set_eta_scale(self, scale):
        """The chip's learning-rate register: both rates times ``scale``."""
        self.model.set_eta_scale(scale)
        self._read_eta()

    def apply(self, op, row=0, col=0, wdata=0):
        """Perform one request; returns ``(word, out)``: the event word drawn (``None`` for
        ``ACC``, ``READ``, ``WRITE``) and the old row (``ACC``, ``ROW``), the weight
        (``READ``) or the factor (``SCALE``, whose ``wdata`` is the column's target sum)."""
        m, w = self.model, self.w
        if op == Op.SCALE:
            return self._scale(col, wdata)
        if op == Op.READ:
            return None, int(w[row, col])
        if op == Op.WRITE:
            w[row, col] = wdata
            return None, None
        for pend in (m.pend_in, m.pend_e, m.pend_i, m.pend_c):
            pend[:] = 0
        if self.projection == "in":
            m.x_in[:] = self.pre
            m.se[E_X] = self.post
            (m.pend_in if op in ROW_OPS else m.pend_e)[row if op in ROW_OPS else col] = 1
            phase = "test" if op == Op.ACC else "hidden"
        else:
            m.se[E_X] = self.pre
            m.sc[C_X] = self.post
            (m.pend_e if op in ROW_OPS else m.pend_c)[row if op in ROW_OPS else col] = 1
            phase = "test" if op == Op.ACC else "output"
        old = w[row].copy() if op in ROW_OPS else None
        state = int(m.rng[-1])
        m.run_steps(1, phase=phase)
        if op == Op.ACC:
            assert int(m.rng[-1]) == state, "a test-mode row drew an event word"
            return None, old
        nxt = xorshift32_py(state)
        assert int(m.rng[-1]) == nxt, "an event must draw exactly one word"
        return nxt >> 16, old

    def _scale(self, col, target):
        """One column of the model's scaling pass (``scale_columns``), towards ``target``;
        the word is the model's next event word, as the scaling unit hands it over."""
        m, k = self.model, self.model.const
        line = np.ascontiguousarray(self.w[:, col:col + 1])
        total = int(line.sum())
        factor = (int(target) << k.recip_frac) // total if total else 0
        assert factor < 1 << (k.weight_bits + k.recip_frac), "factor beyond the unit's width"
        state = int(m.rng[-1])
        hashes = m._hash_in if self.projection == "in" else m._hash_e
        scale_columns(line, int(target), k.recip_frac, k.w_max, k.sr, m.rng, hashes)
        self.w[:, col] = line[:, 0]
        word = xorshift32_py(state) >> 16 if k.sr and total else None
        return word, factor


class KernelSynapses:
    """A projection of any shape on the golden kernel's own functions: rows with
    ``_pre_update``, columns with ``_delta``, words from a xorshift32 event stream."""

    def __init__(self, cfg, rows, cols, *, state=0x2545F491):
        m = GoldenModel(cfg)
        self.k = k = m.const
        self.asym = cfg.rule == "asym"
        self.eta = (k.eta_in_dep if self.asym else k.eta_in, k.eta_in)
        self.rows, self.cols = rows, cols
        self.w = np.zeros((rows, cols), dtype=np.int32)
        self.pre = np.zeros(rows, dtype=np.int64)
        self.post = np.zeros(cols, dtype=np.int64)
        bits = max(k.sr, 1)
        self.hash_r, self.hash_c = dither_hash(rows, bits), dither_hash(cols, bits)
        self.state = state

    def apply(self, op, row=0, col=0, wdata=0):
        k, w = self.k, self.w
        if op == Op.READ:
            return None, int(w[row, col])
        if op == Op.WRITE:
            w[row, col] = wdata
            return None, None
        old = w[row].copy() if op in ROW_OPS else None
        if op == Op.ACC:
            return None, old
        self.state = xorshift32_py(self.state)
        word = self.state >> 16
        if op == Op.ROW:
            line = w[row].astype(np.int64)
            _pre_update(line, np.zeros(self.cols, np.int64), self.post, self.hash_c,
                        self.eta[0], k.w_shift, k.sr, word, k.w_max, self.asym)
            w[row] = line
        else:
            mask = (1 << k.sr) - 1
            for i in range(self.rows):
                dw = _delta(int(self.pre[i]), self.eta[1], k.w_shift, k.sr,
                            (word ^ int(self.hash_r[i])) & mask)
                w[i, col] = min(int(w[i, col]) + dw, k.w_max)
        return word, old


def make_vectors(golden, lanes, batches, *, weights, pre, post, seed=0):
    """Vectors of ``batches`` played on ``golden`` from ``weights``, ``pre``, ``post``.

    A batch is a dict with optional ``eta_scale`` (a new learning-rate scale, set while
    idle), ``pre``/``post`` (whole trace arrays), ``writes`` (single trace writes
    ``(which, index, value)``) and ``requests`` (``(op, row, col, wdata)``), issued back to
    back. Words of requests that take none are random: they must not matter.
    """
    rng = np.random.default_rng(seed)
    golden.w[...] = weights
    golden.pre[:] = pre
    golden.post[:] = post
    R, C = golden.rows, golden.cols
    cb = -(-C // lanes)
    vec = {"rows": R, "cols": C, "lanes": lanes, "eta": list(golden.eta),
           "weights": np.array(weights, dtype=np.int64), "pre": [int(x) for x in pre],
           "post": [int(x) for x in post], "batches": []}
    for batch in batches:
        out = {"eta": None, "pre": None, "post": None, "writes": [], "requests": [],
               "acc": [], "rdata": []}
        if batch.get("eta_scale") is not None:
            golden.set_eta_scale(batch["eta_scale"])
            out["eta"] = list(golden.eta)
        for which in ("pre", "post"):
            if batch.get(which) is not None:
                getattr(golden, which)[:] = batch[which]
                out[which] = [int(x) for x in batch[which]]
        for which, index, value in batch.get("writes", ()):
            getattr(golden, which)[index] = value
            out["writes"].append([which, int(index), int(value)])
        for op, row, col, wdata in batch.get("requests", ()):
            op = Op(op)
            word, res = golden.apply(op, row, col, wdata)
            if word is None:
                word = int(rng.integers(0, 1 << 16))
            factor = res if op == Op.SCALE else 0
            out["requests"].append({"op": op.value, "row": int(row), "col": int(col),
                                    "word": int(word), "wdata": int(wdata),
                                    "factor": int(factor)})
            if op in ROW_OPS:
                for k in range(cb):
                    lanes_ok = [k * lanes + s < C for s in range(lanes)]
                    out["acc"].append([int(row), k * lanes,
                                       [int(res[k * lanes + s]) if ok else 0
                                        for s, ok in enumerate(lanes_ok)],
                                       sum(1 << s for s, ok in enumerate(lanes_ok) if ok),
                                       int(k == cb - 1)])
            elif op == Op.READ:
                out["rdata"].append(res)
        out["weights"] = golden.w.astype(np.int64).copy()
        vec["batches"].append(out)
    return vec


def to_json(vec) -> str:
    def plain(x):
        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list):
            return [plain(v) for v in x]
        return x
    return json.dumps(plain(vec))


# ----------------------------------------------------------------------------- stimuli
def corner_weights(rng, rows, cols, w_max):
    """Weights with many codes at and next to both clipping bounds."""
    choice = rng.choice(5, size=(rows, cols), p=[0.2, 0.2, 0.1, 0.1, 0.4])
    table = np.stack([np.zeros((rows, cols), np.int64), np.full((rows, cols), w_max),
                      np.ones((rows, cols), np.int64), np.full((rows, cols), w_max - 1),
                      rng.integers(0, w_max + 1, (rows, cols))])
    return np.take_along_axis(table, choice[None], 0)[0]


def corner_traces(rng, n, trace_max, trace_inc):
    choice = rng.choice(4, size=n, p=[0.2, 0.15, 0.15, 0.5])
    table = np.stack([np.zeros(n, np.int64), np.full(n, trace_max),
                      trace_max - rng.integers(0, 2 * trace_inc, n),
                      rng.integers(0, trace_max + 1, n)])
    return np.take_along_axis(table, choice[None], 0)[0]


def random_batches(rng, rows, cols, events, *, w_max, trace_max, trace_inc, burst=1,
                   p=(0.3, 0.25, 0.1, 0.15, 0.2), hot_rows=None):
    """``events`` random requests (ACC, ROW, COL, READ, WRITE and, given a sixth
    probability, SCALE with probabilities ``p``) in batches of 1…``burst``, with occasional
    trace writes between batches; ``hot_rows`` limits the rows the requests address."""
    hot_rows = rows if hot_rows is None else hot_rows
    ops = (Op.ACC, Op.ROW, Op.COL, Op.READ, Op.WRITE, Op.SCALE)[:len(p)]
    batches, left = [], events
    while left:
        n = int(min(left, rng.integers(1, burst + 1)))
        left -= n
        writes = []
        if rng.random() < 0.3:
            for _ in range(int(rng.integers(1, 4))):
                which = "pre" if rng.random() < 0.5 else "post"
                size = rows if which == "pre" else cols
                value = int(corner_traces(rng, 1, trace_max, trace_inc)[0])
                writes.append((which, int(rng.integers(0, size)), value))
        requests = []
        for _ in range(n):
            op = ops[rng.choice(len(ops), p=p)]
            wdata = int(rng.choice([0, w_max, rng.integers(0, w_max + 1)]))
            requests.append((op, int(rng.integers(0, hot_rows)), int(rng.integers(0, cols)),
                             wdata))
        batches.append({"writes": writes, "requests": requests})
    return batches


def hazard_batches(rows, cols, lanes):
    """Back-to-back requests that touch one synapse within the pipeline's depth."""
    last, first = cols - 1, 0
    reqs = []
    for i in sorted({0, 1, lanes - 1, lanes, rows - 1} & set(range(rows))):
        reqs += [(Op.ROW, i, 0, 0), (Op.COL, 0, last, 0), (Op.COL, 0, last, 0),
                 (Op.ROW, i, 0, 0), (Op.ROW, i, 0, 0), (Op.WRITE, i, last, 7),
                 (Op.READ, i, last, 0), (Op.COL, 0, first, 0), (Op.ACC, i, 0, 0),
                 (Op.ROW, rows - 1 - i, 0, 0), (Op.COL, 0, i % cols, 0)]
    return [{"requests": reqs[k:k + 11]} for k in range(0, len(reqs), 11)]


def scale_hazard_batch(rows, cols, w_max):
    """SCALEs right behind requests that write their column (the SCALE reads its weights
    four stages before the others write theirs), SCALEs of one column and of neighbouring
    columns back to back, and requests right behind SCALEs."""
    last, first = cols - 1, 0
    # Row 0 lies in a SCALE's first chunk, the one that waits.
    reqs = [(Op.ROW, 0, 0, 0), (Op.SCALE, 0, last, w_max), (Op.COL, 0, last, 0),
            (Op.SCALE, 0, last, 2 * w_max), (Op.SCALE, 0, last, w_max // 2),
            (Op.WRITE, 0, first, w_max), (Op.SCALE, 0, first, 3 * w_max),
            (Op.SCALE, 0, first + 1 if cols > 1 else first, w_max),
            (Op.READ, 0, first, 0), (Op.ROW, rows - 1, 0, 0), (Op.ACC, 0, 0, 0),
            (Op.SCALE, 0, last, 0), (Op.COL, 0, first, 0)]
    return {"requests": reqs}


def record(cfg, projection, image, label, *, seed, intensity, span):
    """Record a real presentation and cut the learning events of ``span`` time steps.

    The golden model runs the presentation (``"hidden"`` for input→E, ``"output"`` with the
    teacher for E→C) until ``span // 2`` steps after the first step with a column event; the
    window is the last ``span`` steps. Per step, the rows
    (inputs, or E neurons, that spiked in the previous step) then the columns (E, or C,
    spikes) are that step's events; the traces the unit holds are the step's initial ones,
    with the pre-synaptic traces of the spiking rows bumped (A1 / A3: a row event does not
    read them, the column events after it read them bumped). Returns the snapshot at the
    window's start and, per step, ``(rows, cols, pre, post, weights after the step)``.
    """
    m = GoldenModel(cfg, seed=seed)
    m.reset_state()
    phase = "hidden" if projection == "in" else "output"
    k = m.const
    steps, first_col = [], None
    for t in range(2000):
        if projection == "in":
            rows, cols = np.flatnonzero(m.pend_in), np.flatnonzero(m.pend_e)
            pre, post, w = m.x_in.copy(), m.se[E_X].copy(), m.w_in
        else:
            rows, cols = np.flatnonzero(m.pend_e), np.flatnonzero(m.pend_c)
            pre, post, w = m.se[E_X].copy(), m.sc[C_X].copy(), m.w_ec
        pre[rows] = np.minimum(pre[rows] + k.trace_inc, k.trace_max)
        start = {"weights": w.astype(np.int64).copy(), "rng": int(m.rng[-1])}
        m.run_steps(1, image=image, label=label, phase=phase, intensity=intensity)
        steps.append((start, rows.tolist(), cols.tolist(), pre, post,
                      w.astype(np.int64).copy()))
        if first_col is None and len(cols):
            first_col = t
        if first_col is not None and t >= first_col + span // 2:
            break
    window = steps[-span:]
    return window[0][0], [s[1:] for s in window]


def mnist_vectors(cfg, projection, lanes, image, label, *, seed, intensity, span,
                  per_event=True, extra=()):
    """Vectors of a recorded window, one batch per event or one per time step, then the
    batches ``extra`` from the window's end state. Returns ``(vectors, events, columns)``."""
    start, steps = record(cfg, projection, image, label, seed=seed, intensity=intensity,
                          span=span)
    golden = GoldenSynapses(cfg, projection, seed=seed)
    golden.model.rng[-1] = start["rng"]
    batches = []
    for rows, cols, pre, post, _ in steps:
        reqs = [(Op.ROW, i, 0, 0) for i in rows] + [(Op.COL, 0, j, 0) for j in cols]
        if per_event:
            head = {"pre": pre, "post": post, "requests": reqs[:1]}
            batches += [head] + [{"requests": [r]} for r in reqs[1:]]
        else:
            batches.append({"pre": pre, "post": post, "requests": reqs})
    vec = make_vectors(golden, lanes, batches + list(extra), weights=start["weights"],
                       pre=steps[0][2], post=steps[0][3])
    # The replay, event by event, is the recorded run.
    assert np.array_equal(vec["batches"][len(batches) - 1]["weights"], steps[-1][4])
    events = sum(len(r) + len(c) for r, c, *_ in steps)
    return vec, events, sum(len(c) for _, c, *_ in steps)


# ----------------------------------------------------------------------------- RTL side
def read_weights(ctx, dut):
    """Every weight, straight from the banks (no cycles)."""
    L, cb = dut.lanes, dut.row_beats
    banks = np.array([[ctx.get(mem.data[a]) for a in range(dut.bank_depth)]
                      for mem in dut.banks], dtype=np.int64)
    i, j = np.meshgrid(np.arange(dut.rows), np.arange(dut.cols), indexing="ij")
    return banks[(i + j) % L, i * cb + j // L]


def load_weights_direct(ctx, dut, w):
    """Weights and their column sums into the memories (no cycles)."""
    L, cb = dut.lanes, dut.row_beats
    for i in range(dut.rows):
        for j in range(dut.cols):
            bank, addr = dut.locate(i, j)
            ctx.set(dut.banks[bank].data[addr], int(w[i, j]))
    sums = np.zeros(cb * L, dtype=np.int64)
    sums[:dut.cols] = np.asarray(w).sum(axis=0)
    for k in range(cb):
        ctx.set(dut.sum_mem.data[k], [int(v) for v in sums[k * L:(k + 1) * L]])


async def write_traces(ctx, port, values, lanes):
    """A whole trace array through a :class:`TraceWrite` port, one row of lanes a cycle."""
    values = list(values)
    for k in range(-(-len(values) // lanes)):
        chunk = values[k * lanes:(k + 1) * lanes]
        ctx.set(port.addr, k)
        ctx.set(port.data, chunk + [0] * (lanes - len(chunk)))
        ctx.set(port.en, (1 << len(chunk)) - 1)
        await ctx.tick()
    ctx.set(port.en, 0)


async def write_trace(ctx, port, index, value, lanes):
    data = [0] * lanes
    data[index % lanes] = value
    ctx.set(port.addr, index // lanes)
    ctx.set(port.data, data)
    ctx.set(port.en, 1 << (index % lanes))
    await ctx.tick()
    ctx.set(port.en, 0)


async def read_sums(ctx, dut):
    out = []
    for j in range(dut.cols):
        ctx.set(dut.sum_addr, j)
        await ctx.tick()
        out.append(ctx.get(dut.sum_data))
    return np.array(out, dtype=np.int64)


def _beat(payload):
    return [int(payload.row), int(payload.col), [int(w) for w in payload.weights],
            int(payload.mask), int(payload.last)]


def _same_beats(got, want):
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        mask = w[3]
        if g[0] != w[0] or g[1] != w[1] or g[3] != mask or g[4] != w[4]:
            return False
        if any(g[2][s] != w[2][s] for s in range(len(w[2])) if mask >> s & 1):
            return False
    return True


def simulate(dut, vec, *, stall=0.0, gap=0.0, seed=0, load="ports", every=1):
    """Play ``vec`` on ``dut`` in Amaranth's simulator.

    ``load``: ``"ports"`` writes the initial weights with ``WRITE`` requests, ``"direct"``
    puts them (and their column sums) into the memories. After each batch the ``acc`` and
    ``rdata`` beats are compared and, every ``every`` batches and after the last, every
    weight and every column sum. Returns the number of cycles ``busy`` was high in each
    batch.
    """
    L = dut.lanes
    got = {"acc": [], "rdata": [], "busy": 0}
    busy_cycles = []

    async def sink(ctx):
        rng = np.random.default_rng(seed + 1)
        while True:
            ready_a = not (stall and rng.random() < stall)
            ready_r = not (stall and rng.random() < stall)
            ctx.set(dut.acc.ready, ready_a)
            ctx.set(dut.rdata.ready, ready_r)
            _, _, av, ap, rv, rp, busy = await ctx.tick().sample(
                dut.acc.valid, dut.acc.payload, dut.rdata.valid, dut.rdata.payload, dut.busy)
            if av and ready_a:
                got["acc"].append(_beat(ap))
            if rv and ready_r:
                got["rdata"].append(int(rp))
            got["busy"] += busy

    async def bench(ctx):
        rng = np.random.default_rng(seed)
        w0 = np.asarray(vec["weights"])
        if vec.get("eta") is not None:
            ctx.set(dut.eta_pre, vec["eta"][0])
            ctx.set(dut.eta_post, vec["eta"][1])
        if load == "direct":
            load_weights_direct(ctx, dut, w0)
        else:
            await stream_put_all(ctx, dut.req, [
                {"op": Op.WRITE, "row": i, "col": j, "word": 0, "wdata": int(w0[i, j])}
                for i in range(dut.rows) for j in range(dut.cols)], rng=rng, gap=gap)
            while ctx.get(dut.busy):
                await ctx.tick()
        await write_traces(ctx, dut.pre_trace, vec["pre"], L)
        await write_traces(ctx, dut.post_trace, vec["post"], L)
        for n, batch in enumerate(vec["batches"]):
            if batch["eta"] is not None:
                ctx.set(dut.eta_pre, batch["eta"][0])
                ctx.set(dut.eta_post, batch["eta"][1])
            for which in ("pre", "post"):
                if batch[which] is not None:
                    await write_traces(ctx, getattr(dut, f"{which}_trace"), batch[which], L)
            for which, index, value in batch["writes"]:
                await write_trace(ctx, getattr(dut, f"{which}_trace"), index, value, L)
            got["acc"].clear()
            got["rdata"].clear()
            got["busy"] = 0
            payloads = [{**r, "op": Op(r["op"])} for r in batch["requests"]]
            await stream_put_all(ctx, dut.req, payloads, rng=rng, gap=gap)
            while ctx.get(dut.busy):
                await ctx.tick()
            await ctx.tick()   # the sink records the beat taken on busy's last edge
            busy_cycles.append(got["busy"])
            tag = f"batch {n} ({[Op(r['op']).name for r in batch['requests']][:6]})"
            assert _same_beats(got["acc"], batch["acc"]), f"{tag}: acc beats differ"
            assert got["rdata"] == batch["rdata"], f"{tag}: rdata differs"
            if (n + 1) % every == 0 or n == len(vec["batches"]) - 1:
                w = read_weights(ctx, dut)
                want = np.asarray(batch["weights"])
                bad = np.argwhere(w != want)
                assert not len(bad), (f"{tag}: {len(bad)} weights differ, first "
                                      f"{tuple(bad[0])}: {w[tuple(bad[0])]} != "
                                      f"{want[tuple(bad[0])]}")
                sums = await read_sums(ctx, dut)
                assert np.array_equal(sums, want.sum(axis=0)), f"{tag}: column sums differ"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(sink, background=True)
    sim.run()
    return busy_cycles


def small_cfg(n, lanes, rule="sym", sr=True):
    return preset(n, lanes=lanes, rule=rule, formats={"stochastic_rounding": sr})


# ----------------------------------------------------------------------------- layout
@pytest.mark.parametrize("rows,cols,lanes", [(20, 10, 4), (784, 100, 8), (20, 12, 8),
                                              (7, 3, 16), (5, 9, 1)])
def test_skewed_layout(rows, cols, lanes):
    """Every synapse has its own place; every chunk of a row and of a column is spread over
    distinct banks (so both are read L-wide in one cycle)."""
    dut = SynapseMemory(preset(10), "in", lanes=lanes, rows=rows, cols=cols)
    places = {dut.locate(i, j) for i in range(rows) for j in range(cols)}
    assert len(places) == rows * cols
    assert all(0 <= a < dut.bank_depth and 0 <= b < lanes for b, a in places)
    for i in range(rows):
        for k in range(dut.row_beats):
            banks = [dut.locate(i, j)[0] for j in range(k * lanes, min(cols, (k + 1) * lanes))]
            assert len(set(banks)) == len(banks)
            assert len({dut.locate(i, j)[1] for j in range(k * lanes,
                                                          min(cols, (k + 1) * lanes))}) == 1
    for j in range(cols):
        for k in range(dut.col_beats):
            banks = [dut.locate(i, j)[0] for i in range(k * lanes, min(rows, (k + 1) * lanes))]
            assert len(set(banks)) == len(banks)
    assert dut.bank_depth == rows * -(-cols // lanes)
    assert dut.cycles(Op.ROW) == dut.cycles(Op.ACC) == -(-cols // lanes)
    assert dut.cycles(Op.COL) == -(-rows // lanes)
    assert dut.cycles(Op.READ) == dut.cycles(Op.WRITE) == 1


def test_parameter_validation():
    cfg = preset(100)
    for bad in (dict(lanes=3), dict(lanes=0), dict(rows=0), dict(cols=-1)):
        with pytest.raises(ValueError):
            SynapseMemory(cfg, **bad)
    for bad in (dict(lanes=4.0), dict(rows="20"), dict(cols=True)):
        with pytest.raises(TypeError):
            SynapseMemory(cfg, **bad)
    with pytest.raises(TypeError):
        SynapseMemory(cfg.to_dict())
    with pytest.raises(ValueError):
        SynapseMemory(cfg, "ie")
    with pytest.raises(TypeError):
        SynapseMemory(cfg, 1)
    dut = SynapseMemory(cfg, "in")
    with pytest.raises(ValueError):
        dut.locate(784, 0)
    assert (dut.rows, dut.cols, dut.lanes) == (784, 100, cfg.lanes)
    ec = SynapseMemory(cfg, "ec", lanes=4)
    assert (ec.rows, ec.cols, ec.row_beats, ec.col_beats) == (100, 10, 3, 25)
    with pytest.raises(AttributeError):
        ec.lanes = 2


def test_ports_and_widths():
    cfg = preset(400, "fashion-mnist", lanes=16, rule="asym", asym_ratio=0.5)
    dut = SynapseMemory(cfg, "in")
    k = derive(cfg)
    assert dut.eta_defaults == (k.eta_in_dep, k.eta_in) and dut.asym
    assert dut.eta_bits == (16 * max(k.eta_in, k.eta_in_dep)).bit_length()
    assert dut.sum_bits == (784 * 255).bit_length()
    assert dut.eta_pre.init == k.eta_in_dep and dut.eta_post.init == k.eta_in
    assert dut.signature.members["req"].signature.members["payload"].shape == \
        RequestLayout(784, 400, 8)
    assert dut.signature.members["acc"].signature.members["payload"].shape == \
        AccLayout(784, 400, 16, 8)
    assert dut.signature.members["pre_trace"].signature == TraceWrite(784, 16, 13)
    assert dut.signature.members["post_trace"].signature == TraceWrite(400, 16, 13)
    Fragment.get(SynapseMemory(preset(20), "ec", lanes=1), None)


# ----------------------------------------------------------------------------- random events
RANDOM_CASES = [
    # lanes, rule, stochastic rounding, learning-rate scale (None: the undriven default)
    (1, "sym", True, None),
    (4, "asym", True, 16.0),
    (8, "sym", False, 16.0),
    (4, "sym", True, 3.0),
    (8, "asym", False, None),
]


@pytest.mark.parametrize("lanes,rule,sr,scale", RANDOM_CASES)
def test_random_events(lanes, rule, sr, scale):
    """E→C of a 20-neuron network (20 × 10): random corner-case weights and traces, random
    requests of every kind, each compared weight for weight, with output backpressure."""
    cfg = small_cfg(20, lanes, rule, sr)
    rng = np.random.default_rng(100 + lanes)
    golden = GoldenSynapses(cfg, "ec", seed=3, eta_scale=scale)
    k = golden.model.const
    R, C = golden.rows, golden.cols
    batches = random_batches(rng, R, C, 40, w_max=k.w_max, trace_max=k.trace_max,
                             trace_inc=k.trace_inc)
    vec = make_vectors(golden, lanes, batches, weights=corner_weights(rng, R, C, k.w_max),
                       pre=corner_traces(rng, R, k.trace_max, k.trace_inc),
                       post=corner_traces(rng, C, k.trace_max, k.trace_inc))
    if scale is None:
        vec["eta"] = None   # the ports' defaults must be the configuration's rates
    changed = sum(not np.array_equal(a["weights"], b["weights"])
                  for a, b in zip(vec["batches"], vec["batches"][1:]))
    assert changed > 10
    simulate(SynapseMemory(cfg, "ec", lanes=lanes), vec, stall=0.3, gap=0.2, seed=lanes)


@pytest.mark.parametrize("lanes,rule", [(8, "sym"), (16, "asym"), (1, "sym")])
def test_back_to_back_hazards(lanes, rule):
    """Requests back to back that read a synapse the previous one is still writing (same
    row twice, a row then a column through it, a write then a read, a SCALE right behind
    a write of its column), and random bursts with SCALEs; with
    ``C ≤ L`` (16 lanes) every row is one chunk, so the same row's words follow each other
    in consecutive cycles."""
    cfg = small_cfg(20, lanes, rule)
    rng = np.random.default_rng(7)
    golden = GoldenSynapses(cfg, "ec", seed=5, eta_scale=16.0)
    k = golden.model.const
    R, C = golden.rows, golden.cols
    batches = hazard_batches(R, C, lanes) + [scale_hazard_batch(R, C, k.w_max)] + \
        random_batches(rng, R, C, 60, w_max=k.w_max, trace_max=k.trace_max,
                       trace_inc=k.trace_inc, burst=8, p=(0.25, 0.2, 0.15, 0.1, 0.15, 0.15))
    vec = make_vectors(golden, lanes, batches, weights=corner_weights(rng, R, C, k.w_max),
                       pre=corner_traces(rng, R, k.trace_max, k.trace_inc),
                       post=corner_traces(rng, C, k.trace_max, k.trace_inc))
    simulate(SynapseMemory(cfg, "ec", lanes=lanes), vec, stall=0.0, gap=0.0, seed=2)
    simulate(SynapseMemory(cfg, "ec", lanes=lanes), vec, stall=0.5, gap=0.3, seed=3)


@pytest.mark.parametrize("rule", ["sym", "asym"])
def test_any_shape(rule):
    """A 20 × 12 projection (neither side a multiple of 8 lanes) against the golden kernel's
    row and increment functions."""
    cfg = small_cfg(100, 8, rule)
    rng = np.random.default_rng(11)
    ref = KernelSynapses(cfg, 20, 12)
    k = ref.k
    batches = random_batches(rng, 20, 12, 30, w_max=k.w_max, trace_max=k.trace_max,
                             trace_inc=k.trace_inc, burst=3)
    vec = make_vectors(ref, 8, batches, weights=corner_weights(rng, 20, 12, k.w_max),
                       pre=corner_traces(rng, 20, k.trace_max, k.trace_inc),
                       post=corner_traces(rng, 12, k.trace_max, k.trace_inc))
    simulate(SynapseMemory(cfg, "in", lanes=8, rows=20, cols=12), vec, stall=0.3, seed=4)


# ----------------------------------------------------------------------------- MNIST
@pytest.mark.parametrize("lanes,sr", [(4, True), (8, False)])
def test_mnist_input_to_e(lanes, sr, mnist_small):
    """input→E (784 × 12): the learning events of a real MNIST presentation around its
    first E spikes, every weight compared after every event."""
    x, y = mnist_small[0], mnist_small[1]
    cfg = small_cfg(12, lanes, sr=sr)
    vec, events, cols = mnist_vectors(cfg, "in", lanes, x[0], int(y[0]), seed=1,
                                      intensity=4, span=4)
    assert events > 8 and cols >= 1
    simulate(SynapseMemory(cfg, "in"), vec, stall=0.2, seed=lanes, load="direct")


def test_mnist_e_to_c(mnist_small):
    """E→C (20 × 10) with the teacher: E spikes as rows, teacher spikes as columns, replayed
    a time step per burst and event by event."""
    x, y = mnist_small[0], mnist_small[1]
    cfg = small_cfg(20, 4)
    for per_event in (True, False):
        vec, events, cols = mnist_vectors(cfg, "ec", 4, x[1], int(y[1]), seed=2,
                                          intensity=8, span=8, per_event=per_event)
        assert events > 3 and cols >= 1
        simulate(SynapseMemory(cfg, "ec"), vec, stall=0.3, gap=0.1, seed=6)


def test_real_size(mnist_small):
    """The real input→E of N = 100 (784 × 100, 8 lanes): corner-case events, then the
    events of two time steps of a real presentation, every weight after every event."""
    x, y = mnist_small[0], mnist_small[1]
    cfg = preset(100, lanes=8)
    dut_args = dict(projection="in", lanes=8)
    rng = np.random.default_rng(21)
    golden = GoldenSynapses(cfg, "in", seed=4, eta_scale=16.0)
    k = golden.model.const
    reqs = [(Op.ROW, 3, 0, 0), (Op.COL, 0, 99, 0), (Op.ACC, 783, 0, 0),
            (Op.WRITE, 500, 50, 255), (Op.READ, 500, 50, 0), (Op.COL, 0, 50, 0),
            (Op.ROW, 500, 0, 0)]
    vec = make_vectors(golden, 8, [{"requests": [r]} for r in reqs],
                       weights=corner_weights(rng, 784, 100, k.w_max),
                       pre=corner_traces(rng, 784, k.trace_max, k.trace_inc),
                       post=corner_traces(rng, 100, k.trace_max, k.trace_inc))
    cycles = simulate(SynapseMemory(cfg, **dut_args), vec, stall=0.2, seed=8, load="direct")
    # A row is 13 chunks, a column 98 (8 lanes).
    assert cycles[1] >= 98 and cycles[0] >= 13
    vec, events, _ = mnist_vectors(cfg, "in", 8, x[2], int(y[2]), seed=1, intensity=2,
                                   span=2)
    assert events >= 3
    simulate(SynapseMemory(cfg, **dut_args), vec, seed=9, load="direct")


# ----------------------------------------------------------------------------- timing
def test_cycles_back_to_back():
    """With ready sinks, back-to-back requests issue one chunk per cycle with no bubble:
    ``busy`` lasts ``Σ cycles(op) + LATENCY − 1`` cycles after the first request is taken."""
    cfg = preset(20, lanes=4)
    dut = SynapseMemory(cfg, "ec")
    reqs = [(Op.ROW, 1, 0, 0), (Op.COL, 0, 3, 0), (Op.ACC, 19, 0, 0), (Op.READ, 2, 9, 0),
            (Op.WRITE, 2, 9, 5), (Op.COL, 0, 9, 0), (Op.ROW, 19, 0, 0)]
    golden = GoldenSynapses(cfg, "ec")
    rng = np.random.default_rng(1)
    vec = make_vectors(golden, 4, [{"requests": reqs}, {"requests": reqs[:1]},
                                   {"requests": reqs[1:2]}],
                       weights=rng.integers(0, 256, (20, 10)), pre=rng.integers(0, 8192, 20),
                       post=rng.integers(0, 8192, 10))
    cycles = simulate(dut, vec, load="direct")
    total = sum(dut.cycles(op) for op, *_ in reqs)
    assert cycles == [total + LATENCY - 1, dut.row_beats + LATENCY - 1,
                      dut.col_beats + LATENCY - 1]


def test_reserved_ops_do_nothing():
    """Request codes 5–7 take one cycle each and change nothing, output nothing."""
    cfg = preset(20, lanes=4)
    dut = SynapseMemory(cfg, "ec")
    w = np.random.default_rng(3).integers(0, 256, (20, 10))
    layout = RequestLayout(20, 10, 8)
    raw = [layout.const({"op": Op.READ, "row": 4, "col": 7}).as_value().value]
    for code in (5, 6, 7):
        raw.append(layout.const({"op": Op.ACC, "row": 19, "col": 9, "word": 0xFFFF,
                                 "wdata": 255}).as_value().value | code)
    out = {}

    async def bench(ctx):
        load_weights_direct(ctx, dut, w)
        ctx.set(dut.acc.ready, 1)
        ctx.set(dut.rdata.ready, 1)
        ctx.set(dut.req.valid, 1)
        beats = values = busy = 0
        for bits in raw:
            ctx.set(dut.req.payload.as_value(), bits)
            await ctx.tick().until(dut.req.ready == 1)
        ctx.set(dut.req.valid, 0)
        for _ in range(10):
            _, _, av, rv, rp, b = await ctx.tick().sample(
                dut.acc.valid, dut.rdata.valid, dut.rdata.payload, dut.busy)
            beats, values, busy = beats + av, values + rv, busy + b
            out["read"] = int(rp) if rv else out.get("read")
        out.update(beats=beats, values=values, busy=busy, weights=read_weights(ctx, dut),
                   sums=await read_sums(ctx, dut))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert out["beats"] == 0 and out["values"] == 1 and out["read"] == w[4, 7]
    assert np.array_equal(out["weights"], w) and np.array_equal(out["sums"], w.sum(axis=0))
    # After the last request is taken: its S0, S1, S2 (it writes no column sum: no S3).
    assert out["busy"] == LATENCY - 1


# ----------------------------------------------------------------------------- cocotb
def _cosim_cases():
    return [pytest.param(s) for s in cosim.SIMULATORS]


@pytest.fixture(scope="module")
def cosim_vectors(tmp_path_factory, mnist_small):
    """The bench's vector file (input→E, 784 × 12, 8 lanes): three time steps of a real
    presentation, each a burst of back-to-back events; then, at 16 times the learning rate,
    corner-case weights written into eight rows, requests that chase each other through one
    synapse, and random requests on those rows (columns: all 784 rows)."""
    x, y = mnist_small[0], mnist_small[1]
    cfg = small_cfg(12, COSIM_LANES)
    rng = np.random.default_rng(31)
    k = GoldenModel(cfg).const
    R, C, hot = cfg.n_input, cfg.n_exc, 8
    corner = corner_weights(rng, hot, C, k.w_max)
    extra = [{"eta_scale": 16.0,
              "requests": [(Op.WRITE, i, j, int(corner[i, j]))
                           for i in range(hot) for j in range(C)]}]
    extra += hazard_batches(hot, C, COSIM_LANES)[:1] + [scale_hazard_batch(hot, C, k.w_max)]
    extra += random_batches(rng, R, C, 14, w_max=k.w_max, trace_max=k.trace_max,
                            trace_inc=k.trace_inc, burst=3, p=(0.2, 0.3, 0.2, 0.15, 0.15),
                            hot_rows=hot)
    vec, events, cols = mnist_vectors(cfg, "in", COSIM_LANES, x[0], int(y[0]), seed=1,
                                      intensity=4, span=3, per_event=False, extra=extra)
    assert events > 8 and cols >= 1
    path = tmp_path_factory.mktemp("synapse-vectors") / "vectors.json"
    path.write_text(to_json(vec))
    return cfg, [str(path)]


@pytest.mark.parametrize("simulator", _cosim_cases())
def test_cocotb_bench(simulator, cosim_vectors):
    reason = cosim.unavailable_reason(simulator)
    if reason:
        pytest.skip(reason)
    cfg, paths = cosim_vectors
    dut = SynapseMemory(cfg, "in", lanes=COSIM_LANES)
    result = cosim.run_cocotb(dut, BENCH, simulator=simulator,
                              name=f"synapse_in_l{COSIM_LANES}",
                              params={"config": cfg.to_dict(), "projection": "in",
                                      "lanes": COSIM_LANES, "vectors": paths, "seed": 12,
                                      "stall": 0.3, "gap": 0.1, "read_rows": 8})
    assert result.tests == ("synapse_matches_golden",)
