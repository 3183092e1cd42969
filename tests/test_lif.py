"""LIF neuron cores against the golden model's neuron update, bit for bit.

Every test builds *vectors* with the golden model: an initial state, then per pass the
command (``op``, ``learn``, teacher inputs), the accumulator rows the core takes and the
expected spikes and state words after the pass. :func:`simulate` plays them on the core in
Amaranth's simulator; the cocotb bench (``tests/cocotb/lif_bench.py``) plays the same vectors
on the exported Verilog in Icarus and Verilator.

Golden side: the model's state arrays are set directly, the pending spikes of phase A are
those of the state words (``spiked`` bits), and ``acc`` as phase B sees it is the value set
plus what phase A delivers from the pending input (E) or E (C) spikes, with the weights as
they were before the step.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from stream_helpers import stream_get_until, stream_put_all
from symspike.firmware.config import NetworkConfig, preset
from symspike.hdl.lif import (LATENCY, LIFCore, Op, Word, cls_layout, exc_layout, inh_layout,
                              step_cycles)
from symspike.sim import cosim
from symspike.sim.fixed import derive
from symspike.sim.golden_kernel import (C_ACC, C_GE, C_V, C_X, E_ACC, E_GE, E_GI, E_REF, E_V,
                                        E_X, I_GE, I_REF, I_V)
from symspike.sim.network import GoldenModel

CASES = [(16, 1), (16, 4), (100, 1), (100, 4)]
BENCH = "tests/cocotb/lif_bench.py"


# ----------------------------------------------------------------------------- golden side
def make_model(n, pipelines, seed=0, quiet=True, cfg=None):
    """A golden model; ``quiet`` zeroes the weights so that phase A delivers nothing."""
    cfg = cfg or preset(n)
    m = GoldenModel(cfg.replace(pipelines=pipelines), seed=seed)
    if quiet:
        m.w_in[:] = 0
        m.w_ec[:] = 0
    m.reset_state()
    return m


def model_words(core, m):
    """The core's state words of model ``m``: ``{Word name: [raw bits]}`` (+ ``COUNT``)."""
    words = {}
    if core.population == "EI":
        words["MAIN"] = [core.pack(Word.MAIN, dict(
            v=int(m.se[E_V, j]), ge=int(m.se[E_GE, j]), gi=int(m.se[E_GI, j]),
            ref=int(m.se[E_REF, j]), x=int(m.se[E_X, j]), spiked=int(m.pend_e[j])))
            for j in range(core.n)]
        words["INH"] = [core.pack(Word.INH, dict(
            v=int(m.si[I_V, j]), ge=int(m.si[I_GE, j]), ref=int(m.si[I_REF, j]),
            spiked=int(m.pend_i[j]))) for j in range(core.n)]
        words["THETA"] = [int(t) for t in m.theta]
        words["COUNT"] = [int(m.pend_i.sum())]
    else:
        words["MAIN"] = [core.pack(Word.MAIN, dict(
            v=int(m.sc[C_V, c]), ge=int(m.sc[C_GE, c]), x=int(m.sc[C_X, c]),
            spiked=int(m.pend_c[c]))) for c in range(core.n)]
    return words


def _rows(core, acc):
    acc = [int(a) for a in acc] + [0] * (core.rows * core.pipelines - core.n)
    P = core.pipelines
    return [acc[r * P:(r + 1) * P] for r in range(core.rows)]


class Recorder:
    """Runs the golden model pass by pass and records vectors for one core."""

    def __init__(self, core, m):
        self.core, self.m = core, m
        self.vectors = {"config": m.cfg.to_dict(), "population": core.population,
                        "pipelines": core.pipelines, "init": model_words(core, m), "steps": []}

    def step(self, acc=None, phase="test", label=-1, image=None, intensity=None):
        """One time step. ``acc``: accumulators set before phase A (default: keep)."""
        core, m = self.core, self.m
        ei = core.population == "EI"
        if acc is not None:
            if ei:
                m.se[E_ACC] = acc
            else:
                m.sc[C_ACC] = acc
        # Phase A adds the old weights of the pending spikes to the accumulators.
        if ei:
            acc_b = m.se[E_ACC] + m.w_in[m.pend_in.astype(bool)].sum(axis=0)
        else:
            acc_b = m.sc[C_ACC] + m.w_ec[m.pend_e.astype(bool)].sum(axis=0)
        m.run_steps(1, image=image, label=label, phase=phase, intensity=intensity)
        learn = phase in ("both", "hidden")
        teacher = phase in ("both", "output")
        fire = int(teacher and m.pend_c[label])
        spikes = np.flatnonzero(m.pend_e if ei else m.pend_c)
        self.vectors["steps"].append({
            "op": "STEP", "learn": int(learn), "teacher": int(teacher),
            "label": max(label, 0), "fire": fire, "acc": _rows(core, acc_b),
            "spikes": [int(s) for s in spikes], "words": model_words(core, m)})
        return acc_b

    def reset(self):
        self.m.reset_state()
        self._other("RESET")

    def decay_theta(self):
        self.m._decay_theta()
        self._other("DECAY_THETA")

    def _other(self, op):
        self.vectors["steps"].append({
            "op": op, "learn": 0, "teacher": 0, "label": 0, "fire": 0, "acc": [],
            "spikes": [], "words": model_words(self.core, self.m)})


def _pick(rng, n, options, p=None):
    """Per neuron, one of ``options`` (callables of the neuron index) chosen at random."""
    which = rng.choice(len(options), size=n, p=p)
    return np.array([options[w](j) for j, w in enumerate(which)], dtype=np.int64)


def random_state(m, population, rng):
    """Random and corner-case neuron states, pending spikes and accumulators."""
    k, cfg = m.const, m.cfg
    u = rng.integers
    g = [lambda j: 0, lambda j: u(0, 2048), lambda j: u(0, k.g_max + 1), lambda j: k.g_max,
         lambda j: k.g_max - u(0, 64)]
    x = [lambda j: 0, lambda j: u(0, k.trace_max + 1), lambda j: k.trace_max,
         lambda j: k.trace_max - u(0, 2 * k.trace_inc)]
    ref_top = 1 << exc_layout(cfg)["ref"].shape.width
    ref = [lambda j: 0, lambda j: u(0, cfg.refrac_steps + 1), lambda j: u(0, ref_top)]
    if population == "EI":
        n = cfg.n_exc
        ten = 10 << k.theta_frac
        th_lsb = 1 << k.theta_lut_shift  # one θ-LUT entry, 1/8 mV
        theta = _pick(rng, n, [
            lambda j: u(0, k.theta_max + 1), lambda j: ten + u(-2 * th_lsb, 2 * th_lsb),
            lambda j: ten, lambda j: k.theta_max, lambda j: k.theta_max - u(0, 4 * th_lsb),
            lambda j: k.theta_init + u(-th_lsb, th_lsb)])
        thr = (theta >> (k.theta_frac - k.v_frac)) + k.e_thresh_offset
        m.theta[:] = theta
        m.se[E_V] = _pick(rng, n, [
            lambda j: thr[j] + u(-64, 64), lambda j: thr[j] + u(-8, 8),
            lambda j: u(k.v_min, k.v_max + 1), lambda j: k.e_v_floor + u(-600, 600),
            lambda j: k.e_v_rest, lambda j: k.v_max, lambda j: k.v_min],
            p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05])
        m.se[E_GE] = _pick(rng, n, g, p=[0.3, 0.3, 0.2, 0.1, 0.1])
        m.se[E_GI] = _pick(rng, n, g, p=[0.3, 0.3, 0.2, 0.1, 0.1])
        m.se[E_REF] = _pick(rng, n, ref, p=[0.5, 0.3, 0.2])
        m.se[E_X] = _pick(rng, n, x)
        m.pend_e[:] = rng.random(n) < 0.3
        m.si[I_V] = _pick(rng, n, [
            lambda j: k.i_thresh + u(-64, 64), lambda j: u(k.v_min, k.v_max + 1),
            lambda j: k.i_v_rest, lambda j: k.v_max, lambda j: k.v_min],
            p=[0.4, 0.3, 0.2, 0.05, 0.05])
        m.si[I_GE] = _pick(rng, n, g, p=[0.3, 0.3, 0.2, 0.1, 0.1])
        m.si[I_REF] = _pick(rng, n, ref, p=[0.5, 0.3, 0.2])
        m.pend_i[:] = rng.random(n) < 0.3
        # A few I neurons exactly at rest (the golden model skips them).
        rest = rng.random(n) < 0.1
        m.si[I_V, rest], m.si[I_GE, rest], m.si[I_REF, rest] = k.i_v_rest, 0, 0
        acc_max = cfg.n_input * k.w_max
    else:
        n = cfg.n_classes
        m.sc[C_V] = _pick(rng, n, [
            lambda j: k.i_thresh + u(-64, 64), lambda j: u(k.v_min, k.v_max + 1),
            lambda j: k.i_v_rest, lambda j: k.v_max, lambda j: k.v_min],
            p=[0.4, 0.3, 0.2, 0.05, 0.05])
        m.sc[C_GE] = _pick(rng, n, g, p=[0.3, 0.3, 0.2, 0.1, 0.1])
        m.sc[C_X] = _pick(rng, n, x)
        m.pend_c[:] = rng.random(n) < 0.3
        acc_max = cfg.n_exc * k.w_max
    return random_acc(rng, n, acc_max)


def random_acc(rng, n, acc_max, p_zero=0.4, small=400):
    """Accumulators: mostly zero or small, some large, some at the maximum."""
    rest = 1.0 - p_zero
    return _pick(rng, n, [lambda j: 0, lambda j: rng.integers(0, small),
                          lambda j: rng.integers(0, 10 * small),
                          lambda j: rng.integers(0, acc_max + 1),
                          lambda j: acc_max],
                 p=[p_zero, 0.5 * rest, 0.3 * rest, 0.15 * rest, 0.05 * rest])


class Spec:
    """What the golden side needs to know of a core, without building one."""

    def __init__(self, cfg, population, pipelines):
        self.population, self.pipelines = population, pipelines
        self.n = cfg.n_exc if population == "EI" else cfg.n_classes
        self.rows = -(-self.n // pipelines)
        self.layouts = ({Word.MAIN: exc_layout(cfg), Word.INH: inh_layout(cfg)}
                        if population == "EI" else {Word.MAIN: cls_layout(cfg)})

    def pack(self, kind, fields):
        return self.layouts[kind].const(fields).as_value().value

    def unpack(self, kind, bits):
        c = data.Const(self.layouts[kind], bits)
        return {name: int(getattr(c, name)) for name, _ in self.layouts[kind]}


# ----------------------------------------------------------------------------- RTL side
def read_words(ctx, core):
    """The core's state words straight from its memories (no cycles)."""
    words = {}
    kinds = [Word.MAIN] + ([Word.INH, Word.THETA] if core.population == "EI" else [])
    for kind in kinds:
        out = []
        for j in range(core.n):
            mem, row = core.bank(kind, j)
            value = ctx.get(mem.data[row])
            out.append(int(value) if isinstance(value, int) else value.as_value().value)
        words[kind.name] = out
    if core.population == "EI":
        words["COUNT"] = [ctx.get(core.inh_count)]
    return words


async def access_write(ctx, core, kind, j, bits):
    ctx.set(core.access.addr, j)
    ctx.set(core.access.sel, kind)
    ctx.set(core.access.wdata, bits)
    ctx.set(core.access.we, 1)
    await ctx.tick()
    ctx.set(core.access.we, 0)


async def access_read(ctx, core, kind, j):
    ctx.set(core.access.addr, j)
    ctx.set(core.access.sel, kind)
    await ctx.tick()
    return ctx.get(core.access.rdata)


async def load_words(ctx, core, words, via_port):
    for name, values in words.items():
        kind = Word[name]
        for j, bits in enumerate(values):
            if via_port or kind == Word.COUNT:
                await access_write(ctx, core, kind, j, bits)
            else:
                mem, row = core.bank(kind, j)
                shape = core.layouts[kind]
                ctx.set(mem.data[row], data.Const(shape, bits)
                        if isinstance(shape, data.Layout) else bits)


def simulate(vectors, *, gap=0.0, stall=0.0, seed=0, via_port=False, read_port=False):
    """Play ``vectors`` on a fresh core; returns per pass ``(spikes, words)``."""
    cfg = NetworkConfig.from_dict(vectors["config"])
    core = LIFCore(cfg, vectors["population"], pipelines=vectors["pipelines"])
    ei = core.population == "EI"
    rows = [row for st in vectors["steps"] if st["op"] == "STEP" for row in st["acc"]]
    rng = np.random.default_rng(seed)
    out = []
    written = []  # trace write-backs of the running pass: (neuron, x, bumped)

    async def producer(ctx):
        await stream_put_all(ctx, core.acc, rows, rng=rng, gap=gap)

    async def monitor(ctx):
        bumped = core.trace_bumped if ei else core.trace_x
        async for _, _, en, row, xs, bs in ctx.tick().sample(
                core.trace_en, core.trace_row, core.trace_x, bumped):
            for p in range(core.pipelines):
                if en >> p & 1:
                    written.append((row * core.pipelines + p, int(xs[p]), int(bs[p])))

    async def main(ctx):
        await load_words(ctx, core, vectors["init"], via_port)
        for st in vectors["steps"]:
            ctx.set(core.op, Op[st["op"]])
            if ei:
                ctx.set(core.learn, st["learn"])
            else:
                ctx.set(core.teacher, st["teacher"])
                ctx.set(core.label, st["label"])
                ctx.set(core.fire, st["fire"])
            ctx.set(core.start, 1)
            await ctx.tick()
            ctx.set(core.start, 0)
            spikes = await stream_get_until(ctx, core.spikes, core.done, rng=rng, stall=stall)
            words = read_words(ctx, core)
            if read_port:
                for name, values in words.items():
                    for j in range(len(values)):
                        words[name][j] = await access_read(ctx, core, Word[name], j)
            out.append(([int(s) for s in spikes], words, sorted(written)))
            written.clear()

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(producer)
    sim.add_testbench(main)
    sim.run()
    return core, out


def describe(core, name, bits):
    if name in ("MAIN", "INH"):
        return core.unpack(Word[name], bits)
    return bits


def check(vectors, results, core):
    """Compare every pass's spikes and every state word; one message per bad pass."""
    assert len(results) == len(vectors["steps"])
    errors = []
    k = derive(NetworkConfig.from_dict(vectors["config"]))
    for t, (st, (spikes, words, traces)) in enumerate(zip(vectors["steps"], results)):
        if spikes != st["spikes"]:
            errors.append(f"pass {t} ({st['op']}): spikes {spikes}, golden {st['spikes']}")
        # Every neuron's trace leaves on the trace outputs once, as written back.
        want = []
        if st["op"] != "DECAY_THETA":
            for j, bits in enumerate(st["words"]["MAIN"]):
                word = core.unpack(Word.MAIN, bits)
                bump = min(word["x"] + k.trace_inc, k.trace_max) if word["spiked"] else word["x"]
                want.append((j, word["x"], bump if core.population == "EI" else word["x"]))
        if traces != want:
            bad = next((i for i, (a, b) in enumerate(zip(traces, want)) if a != b),
                       min(len(traces), len(want)))
            errors.append(f"pass {t} ({st['op']}): {len(traces)} trace writes, golden "
                          f"{len(want)}; first difference (neuron, x, bumped): rtl "
                          f"{traces[bad:bad + 1]}, golden {want[bad:bad + 1]}")
        for name, want in st["words"].items():
            got = words[name]
            for j, (a, b) in enumerate(zip(got, want)):
                if a != b:
                    errors.append(f"pass {t} ({st['op']}) {name}[{j}]: rtl "
                                  f"{describe(core, name, a)}, golden {describe(core, name, b)}")
                    break
        if len(errors) > 8:
            break
    assert not errors, "\n".join(errors)


def random_vectors(n, pipelines, population, *, steps, seed, phases=("test",), ops=None,
                   cfg=None):
    """Vectors from a random corner-case state with random accumulators each step."""
    rng = np.random.default_rng(seed)
    m = make_model(n, pipelines, seed, cfg=cfg)
    acc0 = random_state(m, population, rng)
    core = Spec(m.cfg, population, pipelines)
    rec = Recorder(core, m)
    n_pop = core.n
    acc_max = (m.cfg.n_input if population == "EI" else n) * m.const.w_max
    ops = ops or {}
    for t in range(steps):
        if t in ops:
            getattr(rec, ops[t])()
            continue
        phase = phases[t % len(phases)]
        label = int(rng.integers(0, m.cfg.n_classes))
        # E→C drive is 32 times stronger per weight code than input→E: smaller sums.
        acc = acc0 if t == 0 else random_acc(rng, n_pop, acc_max, p_zero=0.6,
                                             small=400 if population == "EI" else 12)
        rec.step(acc, phase=phase, label=label)
    return core, rec.vectors


def mnist_vectors(n, pipelines, population, images, labels, *, steps_train, steps_test,
                  seed=1, intensity=None):
    """Vectors of a real presentation: the accumulators come from the golden model's Poisson
    input spikes of MNIST images through its weights (training with the teacher and
    learning, then test), with a reset before and a θ decay after each image."""
    m = make_model(n, pipelines, seed, quiet=False)
    core = Spec(m.cfg, population, pipelines)
    rec = Recorder(core, m)
    for image, label in zip(images, labels):
        rec.reset()
        for t in range(steps_train + steps_test):
            phase = "both" if t < steps_train else "test"
            rec.step(phase=phase, label=int(label), image=image, intensity=intensity)
        rec.decay_theta()
    return core, rec.vectors


# ----------------------------------------------------------------------------- tests
def test_parameter_validation():
    cfg = preset(16)
    with pytest.raises(TypeError, match="NetworkConfig"):
        LIFCore({"n_exc": 16})
    with pytest.raises(ValueError, match="population"):
        LIFCore(cfg, "E")
    with pytest.raises(ValueError, match="power of two"):
        LIFCore(cfg, pipelines=3)
    with pytest.raises(ValueError, match="power of two"):
        LIFCore(cfg, pipelines=0)
    with pytest.raises(TypeError, match="pipelines"):
        LIFCore(cfg, pipelines=2.0)
    with pytest.raises(ValueError, match="must not exceed"):
        LIFCore(cfg, "C", pipelines=16)
    core = LIFCore(cfg, "C")
    with pytest.raises(ValueError, match="no Word.INH"):
        core.bank(Word.INH, 0)


def test_layouts_and_widths():
    cfg = preset(100, pipelines=4)
    core = LIFCore(cfg)
    f = cfg.formats
    assert exc_layout(cfg).size == f.v_bits + 2 * f.g_bits + 3 + f.trace_bits + 1 == 72
    assert inh_layout(cfg).size == f.v_bits + f.g_bits + 3 + 1 == 40
    assert cls_layout(cfg).size == f.v_bits + f.g_bits + f.trace_bits + 1 == 50
    assert core.rows == 25 and core.acc_bits == 18       # 784 · 255 < 2**18
    assert LIFCore(cfg, "C", pipelines=4).acc_bits == 15  # 100 · 255 < 2**15
    assert core.word_width == 72
    assert step_cycles(100, 4) == 1 + 25 + LATENCY + 1


@pytest.mark.parametrize("n,pipelines", CASES)
@pytest.mark.parametrize("learn", [False, True])
def test_ei_one_step(n, pipelines, learn):
    core, vec = random_vectors(n, pipelines, "EI", steps=1, seed=n * 10 + pipelines + learn,
                               phases=("hidden" if learn else "test",))
    assert vec["steps"][0]["spikes"], "the corner cases should make some E neurons spike"
    check(vec, simulate(vec)[1], core)


OTHER_CONFIGS = {
    "fashion": preset(16, "fashion-mnist"),
    "narrow": preset(16, refrac_steps=3, formats=dict(
        v_frac=6, g_frac=8, g_int=8, trace_frac=10, theta_frac=20, const_frac=14)),
    "no-refractory": preset(16, refrac_steps=0, formats=dict(stochastic_rounding=False)),
    "wide": preset(16, formats=dict(v_frac=10, g_frac=12, trace_frac=14, const_frac=18)),
}


@pytest.mark.parametrize("name", OTHER_CONFIGS)
@pytest.mark.parametrize("population", ["EI", "C"])
def test_other_configs(name, population):
    # Every width and constant comes from the configuration.
    core, vec = random_vectors(16, 2, population, steps=12, seed=3, cfg=OTHER_CONFIGS[name],
                               phases=("hidden", "test", "both"), ops={6: "decay_theta"}
                               if population == "EI" else None)
    check(vec, simulate(vec)[1], core)


@pytest.mark.parametrize("pipelines", [1, 2, 4])
@pytest.mark.parametrize("phase", ["test", "output"])
def test_c_one_step(pipelines, phase):
    core, vec = random_vectors(16, pipelines, "C", steps=3, seed=pipelines, phases=(phase,))
    check(vec, simulate(vec)[1], core)


@pytest.mark.parametrize("n,pipelines", CASES)
def test_ei_many_steps(n, pipelines):
    # Learning on and off, a reset and a θ decay in the middle of the run.
    core, vec = random_vectors(n, pipelines, "EI", steps=50, seed=7 + n + pipelines,
                               phases=("hidden", "hidden", "test"),
                               ops={20: "decay_theta", 30: "reset"})
    assert sum(len(st["spikes"]) for st in vec["steps"]) > 10
    gap, stall = (0.3, 0.5) if pipelines == 4 else (0.0, 0.0)
    check(vec, simulate(vec, gap=gap, stall=stall, seed=n)[1], core)


@pytest.mark.parametrize("pipelines", [1, 4])
def test_c_many_steps(pipelines):
    core, vec = random_vectors(16, pipelines, "C", steps=50, seed=pipelines,
                               phases=("test",) * 3 + ("both",) * 2, ops={25: "reset"})
    assert sum(len(st["spikes"]) for st in vec["steps"]) > 5
    check(vec, simulate(vec, gap=0.2, stall=0.5, seed=3)[1], core)


@pytest.mark.parametrize("population", ["EI", "C"])
def test_mnist_presentation(mnist_small, population):
    x, y, _, _ = mnist_small
    core, vec = mnist_vectors(100, 4, population, x[:1], y[:1], steps_train=60,
                              steps_test=30, intensity=4)
    assert sum(len(st["spikes"]) for st in vec["steps"]) > 0
    check(vec, simulate(vec)[1], core)


def test_access_port_roundtrip():
    # Load through the port, read back through the port after two passes.
    core, vec = random_vectors(16, 4, "EI", steps=2, seed=5, phases=("hidden",))
    check(vec, simulate(vec, via_port=True, read_port=True)[1], core)
    core, vec = random_vectors(16, 4, "C", steps=2, seed=5)
    check(vec, simulate(vec, via_port=True, read_port=True)[1], core)


@pytest.mark.parametrize("n,pipelines", [(16, 1), (16, 4), (10, 4)])
def test_cycles_per_step(n, pipelines):
    # No spikes, ready consumer, producer always valid: exactly step_cycles(n, P).
    cfg = preset(max(n, 16), pipelines=pipelines)
    population = "EI" if n == 16 else "C"
    core = LIFCore(cfg, population, pipelines=pipelines)
    cycles = []

    async def bench(ctx):
        ctx.set(core.spikes.ready, 1)
        ctx.set(core.acc.valid, 1)
        for op in (Op.STEP, Op.RESET):
            ctx.set(core.op, op)
            ctx.set(core.start, 1)
            count = 0
            while True:
                _, _, done = await ctx.tick().sample(core.done)
                ctx.set(core.start, 0)
                count += 1
                if done:
                    break
            cycles.append(count)

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert cycles == [step_cycles(core.n, pipelines)] * 2


@pytest.mark.parametrize("spiking,extra", [([0, 1], 1), ([0, 1, 2, 3], 3), ([12], 1),
                                           ([5, 13, 14], 2)])
def test_cycles_with_spikes(spiking, extra):
    # Spikes leave one per cycle: each beyond the first of its row, and each of the last row,
    # costs a cycle.
    cfg = preset(16, pipelines=4)
    core = LIFCore(cfg)
    k = derive(cfg)
    out = []

    async def bench(ctx):
        for j in spiking:
            mem, row = core.bank(Word.MAIN, j)
            ctx.set(mem.data[row], {"v": k.v_max})
        ctx.set(core.spikes.ready, 1)
        ctx.set(core.acc.valid, 1)
        ctx.set(core.op, Op.STEP)
        ctx.set(core.start, 1)
        count = 0
        while True:
            _, _, done, valid, payload = await ctx.tick().sample(
                core.done, core.spikes.valid, core.spikes.payload)
            ctx.set(core.start, 0)
            count += 1
            if valid:
                out.append(payload)
            if done:
                break
        out.append(count)

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert out == spiking + [step_cycles(16, 4) + extra]


# ----------------------------------------------------------------------------- cocotb
def _cosim_cases():
    return [pytest.param(s, marks=[]) for s in cosim.simulators()] or [
        pytest.param("icarus", marks=pytest.mark.skip(reason=cosim.unavailable_reason("icarus")))]


@pytest.fixture(scope="module")
def cosim_vectors(tmp_path_factory, mnist_small):
    """Vector files for the benches: random corner cases and a real MNIST presentation."""
    x, y, _, _ = mnist_small
    folder = tmp_path_factory.mktemp("lif-vectors")
    files = {}
    for population in ("EI", "C"):
        pipelines = 4
        _, rnd = random_vectors(100, pipelines, population, steps=30, seed=11,
                                phases=("hidden", "test", "both"),
                                ops={15: "decay_theta", 20: "reset"})
        _, real = mnist_vectors(100, pipelines, population, x[:1], y[:1], steps_train=50,
                                steps_test=20, intensity=4)
        paths = []
        for tag, vec in (("random", rnd), ("mnist", real)):
            path = folder / f"{population}-{tag}.json"
            path.write_text(json.dumps(vec))
            paths.append(str(path))
        files[population] = paths
    return files


@pytest.mark.parametrize("simulator", _cosim_cases())
@pytest.mark.parametrize("population", ["EI", "C"])
def test_cocotb_bench(simulator, population, cosim_vectors):
    cfg = preset(100, pipelines=4)
    core = LIFCore(cfg, population, pipelines=4)
    result = cosim.run_cocotb(core, BENCH, simulator=simulator, name=f"lif_{population.lower()}",
                              params={"vectors": cosim_vectors[population], "seed": 5})
    assert len(result.tests) >= 1
