"""Input traces and trace write paths (``hdl/traces.py``) against the golden model's arithmetic.

What is proved, in Amaranth's simulator:

* :class:`InputTraces` keeps the 784 input traces exactly as the golden model does
  (``sim/golden_kernel.py``): a bump is ``x = x + trace_inc if x + trace_inc < trace_max
  else trace_max``, a decay pass ``x = (x·k_trace) >> const_frac``, a clear pass ``x = 0``,
  with the constants of ``symspike.sim.fixed.derive``. Random bumps back to back (the same
  row and the same trace many times in a row, so the read-modify-write meets its own
  writes), bumps held off during a pass, decay and clear passes, and traces poked next to
  ``trace_max`` are compared with a NumPy model. Every write is mirrored on ``out``: a
  shadow copy built only from ``out`` equals the model (and so does the memory itself);
  a bump writes one lane, a pass every row once with all lanes, ``done`` pulses once in the
  cycle of the last row. Lanes 1, 4 and 16, and a second set of formats.
* :func:`connect_lif_traces` maps neuron ``row·P + p`` of a :class:`~symspike.hdl.lif.LIFCore`
  to lane ``(row·P + p) mod L`` of trace row ``(row·P + p) div L``, from ``trace_x`` or
  ``trace_bumped``, for every row and ``P ≤ L``; ``P > L`` is refused.
"""

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module
from amaranth.sim import Simulator

from symspike.firmware.config import preset
from symspike.hdl.lif import LIFCore
from symspike.hdl.synapse import TraceWrite
from symspike.hdl.traces import (BUMP_LATENCY, PASS_EXTRA, InputTraces, TraceOp,
                                 connect_lif_traces)
from symspike.sim.fixed import derive

# Constructor checks leave components that are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

N_INPUT = 784


def trace_ports_only(core):
    """``core`` with its trace outputs driven by the testbench: it is never elaborated, so
    silence the "never used" warning of it and of its memories (raised when they are
    garbage-collected, outside any test's warning filter)."""
    core._MustUse__silence = True
    for name in ("exc_mem", "inh_mem", "theta_mem", "cls_mem"):
        for mem in getattr(core, name, []):
            mem._MustUse__silence = True
    return core


class TraceModel:
    """The golden model's input-trace arithmetic, vectorised."""

    def __init__(self, cfg):
        k = derive(cfg)
        self.inc, self.max, self.k, self.frac = k.trace_inc, k.trace_max, k.k_trace, k.const_frac
        self.x = np.zeros(N_INPUT, dtype=np.int64)

    def bump(self, i):
        s = self.x[i] + self.inc
        self.x[i] = s if s < self.max else self.max

    def decay(self):
        self.x = (self.x * self.k) >> self.frac

    def clear(self):
        self.x[:] = 0


def simulate_traces(cfg, lanes, script, *, seed=0, init=None):
    """Play ``script`` on an :class:`InputTraces` and its model, checking every cycle.

    ``script`` holds ``("bumps", indices, gap)`` (offered back to back, a cycle of gap with
    probability ``gap``) and ``("pass", TraceOp, held)`` (``held``: bumps are offered during
    the pass and must wait for it). ``init`` pokes initial trace values into the memory.
    Returns the statistics of the run.
    """
    dut = InputTraces(cfg, lanes=lanes)
    model = TraceModel(cfg)
    rows = dut.rows
    assert rows == -(-N_INPUT // lanes)
    shadow = np.zeros(N_INPUT, dtype=np.int64)
    if init is not None:
        model.x[:] = init
        shadow[:] = init
    rng = np.random.default_rng(seed)
    stats = {"bumps": 0, "bump_writes": 0, "passes": 0}

    def mirror(en, addr, data):
        """Apply one cycle of ``out`` to the shadow; returns the lanes written."""
        lanes_written = [s for s in range(lanes) if en >> s & 1]
        for s in lanes_written:
            shadow[addr * lanes + s] = data[s]
        return lanes_written

    def bump_written(inflight, written, addr):
        """Age the bumps in flight; the one taken ``BUMP_LATENCY`` cycles ago must be the
        write of this cycle (returns whether there was one)."""
        for entry in inflight:
            entry[1] += 1
        if not inflight or inflight[0][1] < BUMP_LATENCY:
            return False
        i = inflight.pop(0)[0]
        assert written == [i % lanes] and addr == i // lanes, \
            f"bump of {i} wrote lanes {written} of row {addr}"
        return True

    def memory_equals_model(ctx, what):
        mem = np.array([int(v) for r in range(rows) for v in ctx.get(dut.mem.data[r])])
        np.testing.assert_array_equal(mem[:N_INPUT], model.x, err_msg=f"{what}: memory")
        np.testing.assert_array_equal(shadow, model.x, err_msg=f"{what}: shadow of out")

    async def bench(ctx):
        if init is not None:
            for r in range(rows):
                ctx.set(dut.mem.data[r], [int(v) for v in init[r * lanes:(r + 1) * lanes]])
        sigs = (dut.bump.ready, dut.out.en, dut.out.addr, dut.out.data, dut.busy, dut.done)
        for step, (op, arg, extra) in enumerate(script):
            if op == "bumps":
                todo = list(arg)
                inflight = []         # [index, cycles since taken] of the bumps not written
                while todo or inflight:
                    offer = todo and not (extra and rng.random() < extra)
                    ctx.set(dut.bump.valid, bool(offer))
                    if offer:
                        ctx.set(dut.bump.payload, todo[0])
                    _, _, ready, en, addr, data, busy, done = await ctx.tick().sample(*sigs)
                    assert not done, f"step {step}: done without a pass"
                    written = mirror(en, addr, data)
                    if bump_written(inflight, written, addr):
                        stats["bump_writes"] += 1
                    else:
                        assert not written, f"step {step}: a write without a bump"
                    if offer and ready:
                        model.bump(todo[0])
                        stats["bumps"] += 1
                        inflight.append([todo.pop(0), 0])
                ctx.set(dut.bump.valid, 0)
                await ctx.tick()
                memory_equals_model(ctx, f"step {step} (bumps)")
            else:
                assert not ctx.get(dut.busy)
                ctx.set(dut.op, arg)
                ctx.set(dut.start, 1)
                _, _, ready, en, *_ = await ctx.tick().sample(*sigs)
                assert not en, "a write in the start cycle"
                ctx.set(dut.start, 0)
                held = list(extra or [])
                if held:
                    ctx.set(dut.bump.valid, 1)
                    ctx.set(dut.bump.payload, held[0])
                rows_written, cycles, dones = [], 1, 0
                while True:
                    _, _, ready, en, addr, data, busy, done = await ctx.tick().sample(*sigs)
                    cycles += 1
                    written = mirror(en, addr, data)
                    if written:
                        assert written == list(range(lanes)), f"step {step}: partial row"
                        rows_written.append(addr)
                    if len(rows_written) < rows:
                        assert busy and not ready, f"step {step}: idle or ready in a pass"
                    dones += done
                    if done:
                        assert addr == rows - 1 and written, f"step {step}: done early"
                        # A held bump may go in with the pass's last write.
                        taken_at_done = bool(held and ready)
                        break
                    assert cycles < rows + 10, f"step {step}: no done"
                assert rows_written == list(range(rows)) and dones == 1
                # ``cycles`` counts the cycle before ``start`` too.
                assert cycles == rows + PASS_EXTRA + 1, (step, cycles)
                if arg == TraceOp.DECAY:
                    model.decay()
                else:
                    model.clear()
                stats["passes"] += 1
                # Bumps held during the pass go in once it is over, after it.
                inflight = []
                if taken_at_done:
                    model.bump(held[0])
                    stats["bumps"] += 1
                    inflight.append([held.pop(0), 0])
                    if not held:
                        ctx.set(dut.bump.valid, 0)
                    else:
                        ctx.set(dut.bump.payload, held[0])
                while held or inflight:
                    if held:
                        ctx.set(dut.bump.valid, 1)
                        ctx.set(dut.bump.payload, held[0])
                    _, _, ready, en, addr, data, busy, done = await ctx.tick().sample(*sigs)
                    written = mirror(en, addr, data)
                    if bump_written(inflight, written, addr):
                        stats["bump_writes"] += 1
                    if held and ready:
                        model.bump(held[0])
                        stats["bumps"] += 1
                        inflight.append([held.pop(0), 0])
                        if not held:
                            ctx.set(dut.bump.valid, 0)
                ctx.set(dut.bump.valid, 0)
                await ctx.tick()
                assert not ctx.get(dut.busy)
                memory_equals_model(ctx, f"step {step} ({arg.name})")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert stats["bump_writes"] == stats["bumps"]
    stats["x"] = model.x
    return stats


def random_script(rng, cfg, lanes):
    k = derive(cfg)
    saturate = -(-k.trace_max // k.trace_inc) + 3     # bumps that reach trace_max
    row = int(rng.integers(N_INPUT // lanes))
    same_row = [row * lanes + int(s) for s in rng.integers(0, lanes, 60)]
    one = int(rng.integers(N_INPUT))
    return [
        ("bumps", [int(i) for i in rng.integers(0, N_INPUT, 300)], 0.3),
        ("bumps", same_row, 0.0),
        ("bumps", [one] * saturate, 0.0),
        ("bumps", [int(i) for i in rng.integers(0, 16, 200)], 0.0),
        ("pass", TraceOp.DECAY, None),
        ("bumps", [one, one + 1 - 2 * (one % 2), one] * 4, 0.2),
        ("pass", TraceOp.DECAY, [one, int(rng.integers(N_INPUT)), one]),
        ("pass", TraceOp.DECAY, None),
        ("bumps", [int(i) for i in rng.integers(0, N_INPUT, 100)], 0.0),
        ("pass", TraceOp.CLEAR, [one, one]),
        ("bumps", [int(i) for i in rng.integers(0, N_INPUT, 50)], 0.5),
        ("pass", TraceOp.DECAY, None),
    ]


@pytest.mark.parametrize("lanes", [1, 4, 16])
def test_input_traces_random(lanes):
    cfg = preset(10, lanes=lanes)
    rng = np.random.default_rng(lanes)
    stats = simulate_traces(cfg, lanes, random_script(rng, cfg, lanes), seed=lanes)
    assert stats["passes"] == 5 and stats["bumps"] > 700
    assert stats["x"].any()


def test_input_traces_other_formats():
    """A narrower trace (8 fraction bits), fewer constant fraction bits and a faster decay."""
    cfg = preset(10, lanes=4, tau_trace=5.0, formats={"trace_frac": 8, "const_frac": 10})
    k = derive(cfg)
    assert (k.trace_max, k.const_frac) == (511, 10) and k.k_trace != derive(preset(10)).k_trace
    rng = np.random.default_rng(5)
    simulate_traces(cfg, 4, random_script(rng, cfg, 4), seed=5)


@pytest.mark.parametrize("lanes", [1, 16])
def test_input_traces_saturation_corner(lanes):
    """Traces just below, at and above ``trace_max − trace_inc``, and at ``trace_max``:
    a bump lands on ``x + trace_inc`` or saturates exactly as the golden model's compare."""
    cfg = preset(10, lanes=lanes)
    k = derive(cfg)
    t_max, inc = k.trace_max, k.trace_inc
    corners = [t_max - inc - 2, t_max - inc - 1, t_max - inc, t_max - inc + 1, t_max - 1,
               t_max, 0, 1, inc, t_max // 2]
    rng = np.random.default_rng(9)
    init = rng.integers(0, t_max + 1, N_INPUT)
    where = rng.choice(N_INPUT, len(corners) * 3, replace=False)
    init[where] = corners * 3
    script = [("bumps", [int(i) for i in where[:len(corners)]], 0.0),
              ("bumps", [int(i) for i in where[len(corners):]] * 2, 0.3),
              ("pass", TraceOp.DECAY, None),
              ("bumps", [int(i) for i in where], 0.0)]
    stats = simulate_traces(cfg, lanes, script, init=init)
    x = stats["x"]
    # Directly: one bump from each corner, as the compare ``x + inc < max`` decides.
    first = TraceModel(cfg)
    first.x[:] = init
    for i in where[:len(corners)]:
        first.bump(i)
    assert list(first.x[where[:len(corners)]]) == [
        t_max - 2, t_max - 1, t_max, t_max, t_max, t_max, inc, 1 + inc, 2 * inc,
        t_max // 2 + inc]
    assert (x <= t_max).all() and (x[where] > 0).all()


def test_input_traces_ports_and_validation():
    cfg = preset(10)
    with pytest.raises(TypeError, match="NetworkConfig"):
        InputTraces(cfg.to_dict())
    for bad in (3, 0, True, 2.0, "4"):
        with pytest.raises(ValueError, match="lanes must be a power of two"):
            InputTraces(cfg, lanes=bad)
    tr = InputTraces(cfg)
    assert tr.rows == N_INPUT // cfg.lanes
    assert tr.signature.members["out"].signature == TraceWrite(N_INPUT, cfg.lanes,
                                                                cfg.formats.trace_bits)
    assert InputTraces(cfg, lanes=16).rows == 49
    Fragment.get(tr, None)


# ----------------------------------------------------------------------------- LIF traces
@pytest.mark.parametrize("pipelines,lanes", [(1, 1), (1, 8), (2, 8), (4, 4), (2, 16), (8, 8)])
def test_connect_lif_traces(pipelines, lanes):
    """Every row of an E/I core with ``P`` pipelines, random enables and traces: the
    ``L``-lane port writes exactly the core's neurons, from ``trace_x`` or ``trace_bumped``;
    a C core (``P = 1``) likewise."""
    n = 22
    cfg = preset(n, lanes=lanes, pipelines=pipelines)
    bits = cfg.formats.trace_bits
    ei = trace_ports_only(LIFCore(cfg, "EI"))
    cl = trace_ports_only(LIFCore(cfg, "C", pipelines=1))
    m = Module()
    port_x = TraceWrite(n, lanes, bits).create()
    port_b = TraceWrite(n, lanes, bits).create()
    port_c = TraceWrite(10, lanes, bits).create()
    connect_lif_traces(m, ei, port_x)
    connect_lif_traces(m, ei, port_b, bumped=True)
    connect_lif_traces(m, cl, port_c)
    rng = np.random.default_rng(pipelines * 17 + lanes)

    def written(port, ctx):
        """``{neuron: trace}`` of the port's write this cycle."""
        addr, en = ctx.get(port.addr), ctx.get(port.en)
        data = list(ctx.get(port.data))
        return {addr * lanes + s: int(data[s]) for s in range(lanes) if en >> s & 1}

    async def bench(ctx):
        for core, ports in ((ei, (port_x, port_b)), (cl, (port_c,))):
            P = core.pipelines
            for row in range(core.rows):
                for _ in range(4):
                    en = int(rng.integers(0, 1 << P))
                    xs = [int(v) for v in rng.integers(0, 1 << bits, P)]
                    ctx.set(core.trace_row, row)
                    ctx.set(core.trace_en, en)
                    ctx.set(core.trace_x, xs)
                    sources = [xs]
                    if core is ei:
                        bumped = [int(v) for v in rng.integers(0, 1 << bits, P)]
                        ctx.set(core.trace_bumped, bumped)
                        sources.append(bumped)
                    for port, src in zip(ports, sources):
                        want = {row * P + p: src[p] for p in range(P) if en >> p & 1}
                        assert written(port, ctx) == want, (row, en)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_connect_lif_traces_refuses_more_pipelines_than_lanes():
    cfg = preset(22, lanes=8, pipelines=4)
    ei = trace_ports_only(LIFCore(cfg, "EI"))
    m = Module()
    m._MustUse__silence = True
    with pytest.raises(ValueError, match="4 pipelines exceed the 2 trace lanes"):
        connect_lif_traces(m, ei, TraceWrite(22, 2, cfg.formats.trace_bits).create())
