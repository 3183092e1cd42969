"""Synaptic-scaling unit (``hdl/scaling.py``) with the synapse memory, against the golden model.

The device under test is :class:`Harness`: a :class:`SynapseMemory`, the
:class:`ScalingUnit` that drives it, and an xorshift32 event-word generator in gateware (the
chip's shared event stream, here feeding the unit alone) whose ``hold`` input makes the word
stream pause, so that the unit's handshake is exercised. Host requests reach the memory
while the unit is idle (to load and read weights in the cocotb bench).

Every test puts the same weights and the same event-generator state into a
:class:`GoldenModel` (``w_in`` or ``w_ec`` and ``rng[-1]``) and into the harness, runs one or
more scaling passes on both (``GoldenModel._scale``, or the golden kernel's
``scale_columns`` for shapes, targets and formats that no model has) and compares every
weight, every column sum and the generator's state afterwards (so exactly the golden
model's words were drawn). The unit is also checked alone (factors, word order) against a
model of the memory's sum port, and the memory's ``SCALE`` request mixed back to back with
its other requests through ``test_synapse``'s vectors and player. The cocotb bench
(``tests/cocotb/scaling_bench.py``) plays the same kind of vectors as the harness tests on
the exported Verilog in Icarus and Verilator.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from symspike.firmware.config import preset
from symspike.hdl.scaling import ScalingUnit
from symspike.hdl.synapse import LATENCY, AccLayout, Op, RequestLayout, SynapseMemory
from symspike.hdl.xorshift import xorshift32_next, xorshift32_word
from symspike.sim import cosim
from symspike.sim.golden_kernel import scale_columns
from symspike.sim.network import GoldenModel
from symspike.sim.rng import dither_hash, xorshift32_py
from test_synapse import KernelSynapses, corner_traces, corner_weights, make_vectors
from test_synapse import simulate as play

# Interface and constructor checks leave components that are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

BENCH = Path(__file__).parent / "cocotb" / "scaling_bench.py"
SEED_STATE = 0x2545F491


# ----------------------------------------------------------------------------- harness
class Harness(wiring.Component):
    """Synapse memory + scaling unit + event-word generator (see the module).

    Members
    -------
    host : ``In(stream.Signature(RequestLayout))``
        Requests to the memory, taken while the unit is idle.
    acc, rdata : the memory's output streams.
    sum_addr, sum_data : the memory's column-sum port while the unit is idle.
    start, busy, done : the unit's.
    mem_busy : ``Out(1)``
        The memory's ``busy``.
    seed, seed_load : ``In(32)``, ``In(1)``
        Load the generator's state.
    hold : ``In(1)``
        The word stream is not valid in this cycle.
    event_state : ``Out(32)``
        The generator's state (the golden model's ``rng[-1]``).
    """

    def __init__(self, cfg, projection, lanes, *, rows=None, cols=None, target=None):
        self.mem = SynapseMemory(cfg, projection, lanes=lanes, rows=rows, cols=cols)
        self.unit = ScalingUnit(cfg, projection, rows=rows, cols=cols, target=target)
        mem = self.mem
        B = mem.weight_bits
        super().__init__({
            "host": In(stream.Signature(RequestLayout(mem.rows, mem.cols, B, mem.recip_frac))),
            "acc": Out(stream.Signature(AccLayout(mem.rows, mem.cols, lanes, B))),
            "rdata": Out(stream.Signature(B)),
            "sum_addr": In(range(max(mem.cols, 2))),
            "sum_data": Out(mem.sum_bits),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "mem_busy": Out(1),
            "seed": In(32),
            "seed_load": In(1),
            "hold": In(1),
            "event_state": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        mem, unit = self.mem, self.unit
        m.submodules.mem = mem
        m.submodules.unit = unit
        busy = unit.busy
        m.d.comb += [
            mem.req.valid.eq(Mux(busy, unit.req.valid, self.host.valid)),
            mem.req.payload.eq(Mux(busy, unit.req.payload.as_value(),
                                   self.host.payload.as_value())),
            unit.req.ready.eq(busy & mem.req.ready),
            self.host.ready.eq(~busy & mem.req.ready),
            mem.sum_addr.eq(Mux(busy, unit.sum_addr, self.sum_addr)),
            unit.sum_data.eq(mem.sum_data),
            self.sum_data.eq(mem.sum_data),
            unit.mem_busy.eq(mem.busy),
            unit.start.eq(self.start),
            self.busy.eq(busy),
            self.done.eq(unit.done),
            self.mem_busy.eq(mem.busy),
        ]
        wiring.connect(m, wiring.flipped(self.acc), mem.acc)
        wiring.connect(m, wiring.flipped(self.rdata), mem.rdata)

        state = Signal(32)
        nxt = xorshift32_next(state)
        m.d.comb += [
            unit.words.valid.eq(~self.hold),
            unit.words.payload.eq(xorshift32_word(nxt)),
            self.event_state.eq(state),
        ]
        with m.If(self.seed_load):
            m.d.sync += state.eq(self.seed)
        with m.Elif(unit.words.valid & unit.words.ready):
            m.d.sync += state.eq(nxt)
        return m


# ----------------------------------------------------------------------------- golden side
def golden_pass(cfg, projection, w, state, *, target=None):
    """One scaling pass of weights ``w`` from event state ``state``: ``(w, state)`` after it.

    The golden model's own ``_scale`` when ``w`` has the projection's shape and the target is
    the configuration's; otherwise its kernel ``scale_columns`` with that target."""
    model = GoldenModel(cfg)
    dest = model.w_in if projection == "in" else model.w_ec
    k = model.const
    if target is None and dest.shape == np.shape(w):
        dest[...] = w
        model.rng[-1] = state
        model._scale(projection)
        return dest.astype(np.int64).copy(), int(model.rng[-1])
    if target is None:
        target = k.target_in if projection == "in" else k.target_ec
    out = np.array(w, dtype=np.int32)
    rng = np.array([state], dtype=np.int64)
    scale_columns(out, target, k.recip_frac, k.w_max, k.sr, rng,
                  dither_hash(out.shape[0], max(k.sr, 1)))
    return out.astype(np.int64), int(rng[-1])


def reference_factor(target, recip_frac, total):
    return (target << recip_frac) // total


# ----------------------------------------------------------------------------- stimuli
def corner_columns(rng, rows, cols, w_max, target, *, last_zero=False):
    """Random weights with special columns: all zero, all ``w_max``, sum 1, sums at and just
    above the factor's saturation bound ``target >> B`` and two below it, sum exactly
    ``target`` (factor ``2**recip_frac``), sparse small weights; the rest random of random
    density. Only the first ``cols`` special columns are used when there are fewer."""
    B = int(w_max).bit_length()
    hi = target >> B
    w = np.zeros((rows, cols), dtype=np.int64)
    for j in range(cols):
        density = rng.choice([0.05, 0.3, 1.0])
        w[:, j] = rng.integers(0, w_max + 1, rows) * (rng.random(rows) < density)

    def column_with_sum(total):
        col = np.zeros(rows, dtype=np.int64)
        left = min(total, rows * w_max)
        for i in rng.permutation(rows):
            if not left:
                break
            v = int(min(left, rng.integers(1, w_max + 1)))
            col[i] = v
            left -= v
        if left:   # top up where there is room
            for i in range(rows):
                add = min(left, w_max - col[i])
                col[i] += add
                left -= add
        return col

    special = [np.zeros(rows, np.int64), np.full(rows, w_max, np.int64), column_with_sum(1),
               column_with_sum(int(rng.integers(1, max(hi, 1) + 1))),
               column_with_sum(max(hi, 1)), column_with_sum(hi + 1), column_with_sum(target),
               column_with_sum(max(hi // 2 + 1, 1)), (rng.random(rows) < 0.2).astype(np.int64)]
    where = rng.permutation(cols)[:len(special)]
    for j, col in zip(where, special):
        w[:, j] = col
    if last_zero:
        w[:, cols - 1] = 0
    return w


# ----------------------------------------------------------------------------- RTL side
def read_weights(ctx, mem):
    """Every weight, straight from the banks (no cycles)."""
    L, cb = mem.lanes, mem.row_beats
    banks = np.array([[ctx.get(b.data[a]) for a in range(mem.bank_depth)]
                      for b in mem.banks], dtype=np.int64)
    i, j = np.meshgrid(np.arange(mem.rows), np.arange(mem.cols), indexing="ij")
    return banks[(i + j) % L, i * cb + j // L]


def read_sums(ctx, mem):
    """Every column sum, straight from the register file (no cycles)."""
    sums = [int(v) for k in range(mem.row_beats) for v in ctx.get(mem.sum_mem.data[k])]
    return np.array(sums[:mem.cols], dtype=np.int64)


def load_weights(ctx, mem, w):
    """Weights and their column sums into the memories (no cycles)."""
    L, cb = mem.lanes, mem.row_beats
    for i in range(mem.rows):
        for j in range(mem.cols):
            bank, addr = mem.locate(i, j)
            ctx.set(mem.banks[bank].data[addr], int(w[i, j]))
    sums = np.zeros(cb * L, dtype=np.int64)
    sums[:mem.cols] = np.asarray(w).sum(axis=0)
    for k in range(cb):
        ctx.set(mem.sum_mem.data[k], [int(v) for v in sums[k * L:(k + 1) * L]])


def simulate(h, w0, state, passes, *, hold=0.0, seed=0, before=None, max_cycles=200_000):
    """Load ``w0`` and generator state ``state`` into harness ``h`` and run ``passes``
    scaling passes; the word stream pauses with probability ``hold`` per cycle.

    ``before(ctx)`` (a coroutine), if given, runs just before the first ``start``. Returns,
    per pass, ``(weights, sums, state, cycles from start to done inclusive, acc beats)``.
    """
    out = []

    async def bench(ctx):
        rng = np.random.default_rng(seed)
        load_weights(ctx, h.mem, w0)
        ctx.set(h.acc.ready, 1)
        ctx.set(h.rdata.ready, 1)
        ctx.set(h.seed, state)
        ctx.set(h.seed_load, 1)
        await ctx.tick()
        ctx.set(h.seed_load, 0)
        if before is not None:
            await before(ctx)
        for _ in range(passes):
            ctx.set(h.start, 1)
            ctx.set(h.hold, int(bool(hold) and rng.random() < hold))
            _, _, acc_v = await ctx.tick().sample(h.acc.valid)
            ctx.set(h.start, 0)
            cycles, beats = 1, int(acc_v)
            for _ in range(max_cycles):
                ctx.set(h.hold, int(bool(hold) and rng.random() < hold))
                _, _, done, busy, acc_v = await ctx.tick().sample(h.done, h.busy, h.acc.valid)
                cycles += 1
                beats += acc_v
                assert busy, "busy fell before done"
                if done:
                    break
            else:
                raise TimeoutError("no done")
            assert not ctx.get(h.busy) and not ctx.get(h.mem_busy)
            out.append((read_weights(ctx, h.mem), read_sums(ctx, h.mem),
                        ctx.get(h.event_state), cycles, beats))

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def check_passes(cfg, projection, lanes, w0, state, passes, *, target=None, rows=None,
                 cols=None, hold=0.0, seed=0):
    """Run ``passes`` passes on the harness and on the golden side, compare everything.
    Returns the per-pass cycle counts and the golden weights after each pass."""
    h = Harness(cfg, projection, lanes, rows=rows, cols=cols, target=target)
    got = simulate(h, w0, state, passes, hold=hold, seed=seed)
    w, s = np.array(w0, dtype=np.int64), state
    cycles, history = [], []
    for n, (gw, gsums, gstate, cyc, beats) in enumerate(got):
        before = w
        w, s = golden_pass(cfg, projection, w, s, target=target)
        bad = np.argwhere(gw != w)
        assert not len(bad), (f"pass {n}: {len(bad)} weights differ, first {tuple(bad[0])}: "
                              f"{gw[tuple(bad[0])]} != {w[tuple(bad[0])]} (column sum "
                              f"{before[:, bad[0][1]].sum()})")
        assert np.array_equal(gsums, w.sum(axis=0)), f"pass {n}: column sums differ"
        assert gstate == s, f"pass {n}: event state {gstate:#x} != golden {s:#x}"
        assert beats == 0, "a scaling pass must not output acc beats"
        cycles.append(cyc)
        history.append(w)
    return h, cycles, history


def small_cfg(n, lanes, sr=True, **formats):
    return preset(n, lanes=lanes, formats={"stochastic_rounding": sr, **formats})


# ----------------------------------------------------------------------------- interface
def test_parameter_validation():
    cfg = preset(100)
    for bad in (dict(rows=0), dict(cols=-1), dict(target=-1)):
        with pytest.raises(ValueError):
            ScalingUnit(cfg, **bad)
    for bad in (dict(rows=4.0), dict(cols="3"), dict(target=True)):
        with pytest.raises(TypeError):
            ScalingUnit(cfg, **bad)
    with pytest.raises(TypeError):
        ScalingUnit(cfg.to_dict())
    with pytest.raises(TypeError):
        ScalingUnit(cfg, 2)
    with pytest.raises(ValueError):
        ScalingUnit(cfg, "ie")
    unit = ScalingUnit(cfg, "in")
    for bad in (0, -3):
        with pytest.raises(ValueError):
            unit.factor(bad)
    with pytest.raises(TypeError):
        unit.factor(2.0)
    with pytest.raises(ValueError):
        unit.pass_cycles(0)
    with pytest.raises(ValueError):
        unit.pass_cycles(4, [1, 2])


def test_ports_and_constants():
    """Shapes follow the configuration and match the synapse memory they drive."""
    for cfg in (preset(100), preset(400, "fashion-mnist", lanes=16),
                small_cfg(20, 4, weight_bits=12, recip_frac=20, sr_bits=12)):
        for projection in ("in", "ec"):
            unit = ScalingUnit(cfg, projection)
            mem = SynapseMemory(cfg, projection)
            fields = cfg.formats
            assert unit.target == (mem._k.target_in if projection == "in" else
                                   mem._k.target_ec)
            assert unit.factor_bits == mem.factor_bits == fields.weight_bits + fields.recip_frac
            assert unit.div_cycles == unit.factor_bits
            assert unit.column_cycles == unit.div_cycles + 2
            assert unit.sum_bits == mem.sum_bits
            sig, msig = unit.signature.members, mem.signature.members
            assert sig["req"].signature.members["payload"].shape == \
                msig["req"].signature.members["payload"].shape
            assert sig["sum_addr"].shape == msig["sum_addr"].shape
    unit = ScalingUnit(preset(100), "in")
    assert (unit.rows, unit.cols, unit.target) == (784, 100, 20070)
    assert unit.factor(20070) == 1 << 16
    assert unit.factor(1) == unit.factor(78) == (1 << 24) - 1   # saturated: S ≤ target >> B
    assert unit.factor(79) == (20070 << 16) // 79
    ec = ScalingUnit(preset(100), "ec", target=7)
    assert ec.target == 7 and ec.factor(ec.rows * 255) == (7 << 16) // 25500
    Fragment.get(ScalingUnit(preset(20), "ec", target=0), None)


def test_saturated_factor_is_exact():
    """The factor saturation (``S ≤ target >> B``) changes no weight: every weight code, every
    dither of ``recip_frac`` bits, factors at and above the bound."""
    for B, rf in ((8, 16), (4, 8), (12, 20)):
        w_max = (1 << B) - 1
        qb = B + rf
        w = np.arange(w_max + 1, dtype=object)[:, None]
        r = np.array([0, 1, (1 << rf) - 1, 1 << (rf - 1)], dtype=object)[None, :]
        want = None
        for f in ((1 << qb) - 1, 1 << qb, (1 << qb) + 1, 7 << qb):
            got = np.minimum((w * f + r) >> rf, w_max)
            if want is None:
                want = got
            assert (got == want).all()
        assert (want[0] == 0).all() and (want[1:] == w_max).all()


@pytest.mark.parametrize("cfg_args,projection,target", [
    (dict(n_exc=100), "in", None),
    (dict(n_exc=20, formats={"stochastic_rounding": False}), "ec", None),
    (dict(n_exc=20, formats={"weight_bits": 12, "recip_frac": 20, "sr_bits": 12}), "ec",
     1 << 22),
    (dict(n_exc=20, formats={"weight_bits": 4, "recip_frac": 8, "sr_bits": 4}), "ec", 1),
])
def test_unit_alone(cfg_args, projection, target):
    """The unit against a model of the memory's sum port, with random back-pressure on its
    requests and gaps in its words: one request per column with a non-zero factor, in
    ascending order, with the exact (saturated) factor, and with stochastic rounding the
    ``n``-th word taken goes to the ``n``-th non-zero column (factor 0 included)."""
    n = cfg_args.pop("n_exc")
    cfg = preset(n, **cfg_args)
    cols = 64
    unit = ScalingUnit(cfg, projection, cols=cols, target=target)
    k = GoldenModel(cfg).const
    top = unit.rows * k.w_max
    hi = unit.target >> k.weight_bits
    edge = [0, 1, 2, hi - 1, hi, hi + 1, unit.target - 1, unit.target, unit.target + 1,
            top - 1, top, (unit.target << k.recip_frac) + 1, 0]
    rng = np.random.default_rng(cols + n)
    sums = [min(max(int(s), 0), top) for s in edge]
    sums += [int(v) for v in rng.integers(0, top + 1, cols - len(sums))]
    sums[5] = 0
    got = {"req": [], "words": 0, "cycles": 0}

    async def bench(ctx):
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        word = 0
        for _ in range(20_000):
            ready = int(rng.random() < 0.6)
            valid = int(rng.random() < 0.5)
            ctx.set(unit.req.ready, ready)
            ctx.set(unit.words.valid, valid)
            ctx.set(unit.words.payload, word)
            _, _, addr, rv, rp, wr, done = await ctx.tick().sample(
                unit.sum_addr, unit.req.valid, unit.req.payload, unit.words.ready, unit.done)
            ctx.set(unit.sum_data, sums[addr] if addr < cols else 0)
            got["cycles"] += 1
            if rv and ready:
                got["req"].append((Op(rp.op), int(rp.col), int(rp.factor), int(rp.word)))
            if wr and valid:
                word += 1
            if done:
                break
        got["words"] = word

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    nonzero = [j for j in range(cols) if sums[j]]
    want = []
    for n_word, j in enumerate(nonzero):
        f = unit.factor(sums[j])
        assert f == min(reference_factor(unit.target, k.recip_frac, sums[j]),
                        (1 << unit.factor_bits) - 1)
        if f:
            want.append((Op.SCALE, j, f, n_word if k.sr else None))
    assert [r[:3] for r in got["req"]] == [w[:3] for w in want]
    if k.sr:
        assert [r[3] for r in got["req"]] == [w[3] for w in want]
    assert got["words"] == (len(nonzero) if k.sr else 0)
    assert any(unit.factor(s) == 0 for s in sums if s) == (target == 1)


# ----------------------------------------------------------------------------- random
EC_CASES = [
    # n_exc, lanes, stochastic rounding, word-stream hold probability
    (20, 1, True, 0.3),
    (20, 4, False, 0.0),
    (20, 8, True, 0.0),
    (20, 4, True, 0.6),
    (100, 8, True, 0.2),
]


@pytest.mark.parametrize("n,lanes,sr,hold", EC_CASES)
def test_e_to_c(n, lanes, sr, hold):
    """E→C (N × 10): corner-case columns (zero, full scale, tiny sums, the saturation
    bound, sum = target), three passes back to back from the same weights."""
    cfg = small_cfg(n, lanes, sr)
    k = GoldenModel(cfg).const
    rng = np.random.default_rng(n + lanes + 10 * sr)
    w0 = corner_columns(rng, n, 10, k.w_max, k.target_ec, last_zero=lanes == 4)
    _, cycles, hist = check_passes(cfg, "ec", lanes, w0, SEED_STATE + lanes, 3, hold=hold,
                                   seed=lanes)
    assert not np.array_equal(hist[0], w0)


@pytest.mark.parametrize("n,lanes,sr", [(6, 4, True), (12, 8, False), (3, 1, True)])
def test_input_to_e(n, lanes, sr):
    """input→E (784 × N): corner-case columns, two passes; a column takes ``ceil(784/L)``
    cycles in the memory while the unit divides the next one."""
    cfg = small_cfg(n, lanes, sr)
    k = GoldenModel(cfg).const
    rng = np.random.default_rng(40 + n)
    w0 = corner_columns(rng, 784, n, k.w_max, k.target_in)
    check_passes(cfg, "in", lanes, w0, SEED_STATE ^ n, 2, hold=0.3 if sr else 0.0, seed=n)


FORMAT_CASES = [
    # formats, rows, cols, lanes, target
    (dict(weight_bits=4, recip_frac=8, sr_bits=4), 30, 9, 4, 1),       # factor 0: untouched
    (dict(weight_bits=4, recip_frac=8, sr_bits=4), 30, 9, 2, 200),
    (dict(weight_bits=12, recip_frac=20, sr_bits=12), 9, 7, 2, None),
    (dict(weight_bits=12, recip_frac=20, sr_bits=12, stochastic_rounding=False), 9, 10, 8,
     1 << 20),                                                         # many saturate
    (dict(weight_bits=8, recip_frac=12, sr_bits=3), 17, 12, 4, 300),
]


@pytest.mark.parametrize("formats,rows,cols,lanes,target", FORMAT_CASES)
def test_formats_and_targets(formats, rows, cols, lanes, target):
    """Other weight widths, factor fractions and dither widths, odd shapes and targets that
    make the factor 0 (the column is left alone, its word still drawn) or saturate it,
    against the golden kernel."""
    cfg = preset(20, lanes=lanes, formats=formats)
    k = GoldenModel(cfg).const
    rng = np.random.default_rng(rows * cols)
    tgt = target if target is not None else k.target_ec
    w0 = corner_columns(rng, rows, cols, k.w_max, tgt)
    if target == 1:
        w0[:, 0] = k.w_max            # S > target·2**recip_frac: factor 0
        assert reference_factor(1, k.recip_frac, int(w0[:, 0].sum())) == 0
    check_passes(cfg, "ec", lanes, w0, SEED_STATE, 2, target=target, rows=rows, cols=cols,
                 hold=0.2)


# ----------------------------------------------------------------------------- SCALE requests
class ScaleKernel(KernelSynapses):
    """:class:`KernelSynapses` of ``test_synapse`` with ``SCALE`` requests: ``wdata`` of a
    ``SCALE`` tuple is its factor (returned for the request); the column is rewritten as in
    ``scale_columns``."""

    def apply(self, op, row=0, col=0, wdata=0):
        if op != Op.SCALE:
            return super().apply(op, row, col, wdata)
        k, w = self.k, self.w
        self.state = xorshift32_py(self.state)
        word = self.state >> 16
        if wdata:
            for i in range(self.rows):
                if k.sr:
                    r = ((word ^ int(self.hash_r[i])) & ((1 << k.sr) - 1)) << (k.recip_frac -
                                                                                k.sr)
                else:
                    r = 1 << (k.recip_frac - 1)
                w[i, col] = min((int(w[i, col]) * wdata + r) >> k.recip_frac, k.w_max)
        return word, wdata


@pytest.mark.parametrize("lanes,sr", [(4, True), (8, False), (1, True)])
def test_scale_requests_mixed(lanes, sr):
    """``SCALE`` requests of the synapse memory back to back with every other kind, through
    the same synapses (a row event right after a column's rewrite, a rewrite right after a
    write), any factor (0, one, saturated, random), under output back-pressure: weights,
    sums and beats after every batch, with ``test_synapse``'s vectors and player."""
    cfg = small_cfg(100, lanes, sr)
    R, C = 20, 12
    ref = ScaleKernel(cfg, R, C)
    k = ref.k
    qb = k.weight_bits + k.recip_frac
    rng = np.random.default_rng(lanes)
    one = 1 << k.recip_frac
    factors = [0, one, one - 1, one + 1, (1 << qb) - 1, 1]

    def factor():
        return int(rng.choice(factors)) if rng.random() < 0.5 else int(rng.integers(0, 1 << qb))

    reqs = []
    for j in (0, 5, C - 1):
        i = int(rng.integers(0, R))
        reqs += [(Op.SCALE, 0, j, factor()), (Op.ROW, i, 0, 0), (Op.COL, 0, j, 0),
                 (Op.SCALE, 0, j, one + 7), (Op.WRITE, i, j, k.w_max), (Op.SCALE, 0, j, one // 3),
                 (Op.READ, i, j, 0), (Op.ACC, i, 0, 0), (Op.SCALE, 0, (j + 1) % C, factor()),
                 (Op.SCALE, 0, (j + 1) % C, factor())]
    batches = [{"requests": reqs[n:n + 10]} for n in range(0, len(reqs), 10)]
    ops = (Op.ACC, Op.ROW, Op.COL, Op.READ, Op.WRITE, Op.SCALE)
    for _ in range(8):
        burst = []
        for _ in range(int(rng.integers(1, 7))):
            op = ops[rng.choice(len(ops), p=[0.1, 0.2, 0.15, 0.1, 0.1, 0.35])]
            wdata = factor() if op == Op.SCALE else int(rng.integers(0, k.w_max + 1))
            burst.append((op, int(rng.integers(0, R)), int(rng.integers(0, C)), wdata))
        batches.append({"requests": burst})
    vec = make_vectors(ref, lanes, batches, weights=corner_weights(rng, R, C, k.w_max),
                       pre=corner_traces(rng, R, k.trace_max, k.trace_inc),
                       post=corner_traces(rng, C, k.trace_max, k.trace_inc))
    changed = sum(not np.array_equal(a["weights"], b["weights"])
                  for a, b in zip(vec["batches"], vec["batches"][1:]))
    assert changed > 5
    mem = SynapseMemory(cfg, "in", lanes=lanes, rows=R, cols=C)
    play(mem, vec, stall=0.3, gap=0.2, seed=lanes, load="direct")


# ----------------------------------------------------------------------------- MNIST
def test_mnist_trained_weights(mnist_small):
    """The weights of a golden model after three training presentations of real MNIST
    images (N = 20): the input→E pass, then the E→C pass from the event state it leaves,
    as before a presentation."""
    x, y = mnist_small[0], mnist_small[1]
    cfg = preset(20, lanes=8)
    model = GoldenModel(cfg, seed=3)
    for i in range(3):
        model.present(x[i], int(y[i]), phase="both")
    w_in, w_ec = model.w_in.astype(np.int64), model.w_ec.astype(np.int64)
    k = model.const
    # Learning moved the sums away from the targets: the pass has work to do.
    assert np.abs(w_in.sum(axis=0) - k.target_in).max() > 20
    state = int(model.rng[-1])
    _, _, hist = check_passes(cfg, "in", 8, w_in, state, 1)
    _, state = golden_pass(cfg, "in", w_in, state)
    check_passes(cfg, "ec", 8, w_ec, state, 1)
    # What the model does before its next presentation is exactly these two passes.
    model._scale("in")
    assert np.array_equal(model.w_in, hist[0])


# ----------------------------------------------------------------------------- timing
@pytest.mark.parametrize("projection,n,lanes", [("ec", 20, 4), ("in", 4, 8), ("ec", 100, 8)])
def test_pass_cycles(projection, n, lanes):
    """``pass_cycles`` is exact: the memory-bound case (input→E, ``RB`` > ``QB + 2``), the
    divider-bound case (E→C), zero columns in between, and the closed form for all
    non-zero columns: ``C·max(QB + 2, RB) + min(QB + 2, RB) + LATENCY + 3``."""
    cfg = small_cfg(n, lanes)
    k = GoldenModel(cfg).const
    rng = np.random.default_rng(5)
    rows = 784 if projection == "in" else n
    cols = n if projection == "in" else 10
    target = k.target_in if projection == "in" else k.target_ec
    dense = rng.integers(1, k.w_max + 1, (rows, cols))
    sparse = corner_columns(rng, rows, cols, k.w_max, target)
    h, cycles, _ = check_passes(cfg, projection, lanes, dense, SEED_STATE, 1)
    _, cycles2, _ = check_passes(cfg, projection, lanes, sparse, SEED_STATE, 1)
    unit, rb = h.unit, h.mem.col_beats
    p = unit.column_cycles
    assert cycles[0] == unit.pass_cycles(rb) == \
        cols * max(p, rb) + min(p, rb) + LATENCY + 3
    assert cycles2[0] == unit.pass_cycles(rb, sparse.sum(axis=0))
    zero = np.zeros((rows, cols), dtype=np.int64)
    _, cycles3, _ = check_passes(cfg, projection, lanes, zero, SEED_STATE, 1)
    assert cycles3[0] == unit.pass_cycles(rb, [0] * cols) == cols + 3


def test_start_while_memory_busy():
    """Host writes into column 0 still in the memory's pipeline when ``start`` comes: the
    unit waits for the memory to be idle, so it reads column 0's sum with them in it."""
    cfg = small_cfg(20, 4)
    k = GoldenModel(cfg).const
    rng = np.random.default_rng(8)
    w0 = rng.integers(0, k.w_max + 1, (20, 10))
    h = Harness(cfg, "ec", 4)
    layout = h.host.payload.shape()

    w0[:, 0] = 1
    w1 = w0.copy()
    rows = (5, 6, 19)
    w1[rows, 0] = k.w_max

    async def write(ctx):
        ctx.set(h.host.valid, 1)
        for i in rows:
            ctx.set(h.host.payload, layout.const({"op": Op.WRITE, "row": i, "col": 0,
                                                  "wdata": k.w_max}))
            await ctx.tick().until(h.host.ready == 1)
        ctx.set(h.host.valid, 0)

    (gw, gsums, gstate, _, _), = simulate(h, w0, SEED_STATE, 1, before=write)
    want, state = golden_pass(cfg, "ec", w1, SEED_STATE)
    assert np.array_equal(gw, want) and np.array_equal(gsums, want.sum(axis=0))
    assert gstate == state


# ----------------------------------------------------------------------------- cocotb
COSIM_N, COSIM_LANES = 10, 8


def cosim_vectors(mnist_small):
    """Two cases on input→E of N = 10 (784 × 10, 8 lanes), two passes each: corner-case
    columns, and the weights after two MNIST training presentations."""
    x, y = mnist_small[0], mnist_small[1]
    cfg = preset(COSIM_N, lanes=COSIM_LANES)
    model = GoldenModel(cfg, seed=5)
    k = model.const
    rng = np.random.default_rng(77)
    corner = corner_columns(rng, 784, COSIM_N, k.w_max, k.target_in, last_zero=True)
    for i in range(2):
        model.present(x[i], int(y[i]), phase="both")
    cases = []
    for name, w, state in (("corner", corner, SEED_STATE),
                           ("mnist", model.w_in.astype(np.int64), int(model.rng[-1]))):
        case = {"name": name, "weights": w.tolist(), "state": state, "passes": []}
        for _ in range(2):
            w, state = golden_pass(cfg, "in", w, state)
            case["passes"].append({"weights": w.tolist(), "state": state})
        cases.append(case)
    return cfg, {"rows": 784, "cols": COSIM_N, "lanes": COSIM_LANES, "cases": cases}


@pytest.fixture(scope="module")
def cosim_setup(tmp_path_factory, mnist_small):
    cfg, vec = cosim_vectors(mnist_small)
    path = tmp_path_factory.mktemp("scaling-vectors") / "vectors.json"
    path.write_text(json.dumps(vec))
    return cfg, str(path)


@pytest.mark.parametrize("simulator", list(cosim.SIMULATORS))
def test_cocotb_bench(simulator, cosim_setup):
    reason = cosim.unavailable_reason(simulator)
    if reason:
        pytest.skip(reason)
    cfg, path = cosim_setup
    h = Harness(cfg, "in", COSIM_LANES)
    result = cosim.run_cocotb(h, BENCH, simulator=simulator,
                              name=f"scaling_in_l{COSIM_LANES}",
                              params={"config": cfg.to_dict(), "projection": "in",
                                      "lanes": COSIM_LANES, "vectors": path, "seed": 4,
                                      "hold": 0.3})
    assert result.tests == ("scaling_matches_golden",)

