"""Run a :class:`~symspike.hdl.core.NetworkCore` in the Amaranth simulator and record, cycle by
cycle, the state of its sequencer and the ``done`` pulses of the phase-B units: the cycles
each presentation spends per time step, per unit and per state, to check the cycle budget
(``hdl/budget.py``) against."""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from symspike.hdl.core import NetworkCore
from symspike.sim.network import GoldenModel

from core_harness import present

__all__ = ["SimPresentation", "sequencer_state", "simulate_budget"]

#: States that belong to a time step (phase A, then phase B).
STEP_STATES = ("A1", "A1_WAIT", "A2", "A4", "A_SETTLE", "A_WAIT", "B", "B_WAIT", "B_SETTLE")


@dataclass
class SimPresentation:
    """Cycles of one simulated presentation: per step and per state outside the steps."""

    steps: list = field(default_factory=list)          # cycles of each time step
    phase_a: list = field(default_factory=list)        # of which phase A
    units: list = field(default_factory=list)          # per step, phase B unit: done cycle
    states: dict = field(default_factory=dict)         # other states: cycles

    @property
    def overhead(self) -> int:
        return sum(self.states.values())


def sequencer_state(fragment):
    """The sequencer FSM's state signal in an elaborated core."""
    def walk(frag):
        for stmts in frag.statements.values():
            for stmt in stmts:
                for sig in stmt._lhs_signals():
                    if sig.name == "seq_state":
                        return sig
        return None
    sig = walk(fragment)
    if sig is None:
        raise LookupError("no sequencer state signal")
    return sig


#: Phase-B units whose ``done`` pulse is recorded, by the name of the core's member.
UNITS = ("lif_ei", "lif_c", "traces", "encoder")


def _split(trace):
    """``(prologue cycles, presentations)`` of one command from ``(state, done pulses)`` per
    busy cycle; a presentation runs from its ``SCALE_IN`` to the next one's."""
    pres = []
    cur = None
    prologue = 0
    step_len = a_len = 0
    since_b, units = None, {}
    for name, dones in trace:
        if name == "SCALE_IN":
            cur = SimPresentation()
            pres.append(cur)
        if since_b is not None:
            since_b += 1
            for unit, pulse in zip(UNITS, dones):
                if pulse and unit not in units:
                    units[unit] = since_b
        if name in STEP_STATES:
            step_len += 1
            if name.startswith("A"):
                a_len += 1
            if name == "B":
                since_b, units = 0, {}
            if name == "B_SETTLE":
                cur.steps.append(step_len)
                cur.phase_a.append(a_len)
                cur.units.append(units)
                step_len = a_len = 0
                since_b = None
        elif cur is None:
            prologue += 1
        else:
            cur.states[name] = cur.states.get(name, 0) + 1
    return prologue, pres


def simulate_budget(cfg, seed, images, labels, phase):
    """Present ``images`` to a core loaded with ``GoldenModel(cfg, seed)``'s initial weights.

    Returns
    -------
    list of (int, int, list of SimPresentation)
        Per image, the cycles of the ``PRESENT`` command as the core harness counts them
        (``start`` to ``done``), the program's prologue and its presentations.
    """
    golden = GoldenModel(cfg, seed)
    dut = NetworkCore(cfg, seed=seed, w_in=golden.w_in.copy(), w_ec=golden.w_ec.copy())
    frag = Fragment.get(dut, None)
    state = sequencer_state(frag)
    names = {}
    trace = []
    recording = [False]
    results = []

    async def bench(ctx):
        for img, lab in zip(images, labels):
            trace.clear()
            recording[0] = True
            cycles = await present(ctx, dut, img, int(lab), phase)
            recording[0] = False
            busy = [t for t in trace if t[0] != "IDLE"]
            results.append((cycles, *_split(busy[:-1])))   # the last is DONE

    dones = [getattr(dut, unit).done for unit in UNITS]

    async def monitor(ctx):
        async for _, _, value, *pulses in ctx.tick().sample(state, *dones):
            if recording[0]:
                if value not in names:
                    names[value] = state.decoder(value).split("/")[0]
                trace.append((names[value], tuple(pulses)))

    sim = Simulator(frag)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(monitor)
    sim.run()
    return results
