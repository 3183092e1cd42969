"""Cycle budget of the network core: cycles per time step, per presentation and per image.

The sequencer of :class:`~symspike.hdl.core.NetworkCore` is deterministic: given the
configuration and what the network does (which spikes are delivered and produced in each
step), the number of clock cycles is fixed. This module states that number as formulas of
the configuration and of the activity, read off the sequencer FSM and the timing of the
units, and checked cycle for cycle against the simulated core (``tests/test_budget.py``).
``docs/architecture.md`` explains the terms; :func:`image_cycles_estimate` applies them to a
real image with the golden model supplying the spikes.

Notation (a :class:`Geometry` holds them):

=========  =================================================================================
``N``      E neurons; ``L`` lanes of the input→E memory; ``P`` E/I pipelines;
           ``E`` encoder lanes; ``Le = ec_lanes(cfg)`` lanes of the E→C memory
``CB``     ``ceil(N / L)``: cycles of an input row event (one input spike, A1)
``RB``     ``ceil(784 / L)``: cycles of an input→E column event (one E spike learning, A2),
           and of a pass over the input traces
``CBe``    ``ceil(10 / Le)``: cycles of an E→C row event (one E spike, A2)
``RBe``    ``ceil(N / Le)``: cycles of an E→C column event (one C spike learning, A4)
``NR``     ``ceil(N / P)``: rows of the E/I core, cycles of its pass
=========  =================================================================================

Activity of one step: ``k`` input spikes, ``e`` E spikes and ``c`` C spikes *delivered* in
phase A (produced in the previous step), and the E, C and input spikes *produced* in its
phase B. Phase A is a chain of dependent request streams and phase B runs four units in
parallel; both are exact here, including the overlaps (a column event still running while
the next memory's events issue) and the extra cycles of spikes that leave a unit's output
one per cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..firmware.config import NetworkConfig
from . import encoder, lif, synapse, traces
from .core import ec_lanes

__all__ = [
    "Geometry",
    "StepActivity",
    "PresentationActivity",
    "ImageEstimate",
    "geometry",
    "phase_a_cycles",
    "phase_b_cycles",
    "lif_ei_cycles",
    "lif_c_cycles",
    "trace_cycles",
    "encoder_cycles",
    "step_cycles",
    "step_bounds",
    "scaling_cycles",
    "reset_cycles",
    "begin_cycles",
    "theta_cycles",
    "INSTR",
    "prologue_cycles",
    "presentation_overhead",
    "presentation_cycles",
    "image_cycles",
    "record_activity",
    "image_cycles_estimate",
]

#: Cycles after a row event's acceptance until its memory *and* the accumulators it feeds are
#: idle, beyond its ``CB`` issue cycles: the memory's :data:`~symspike.hdl.synapse.LATENCY`
#: stages plus the accumulator write.
ROW_DRAIN = synapse.LATENCY + 1
#: The same for a column event (no accumulator behind it).
COL_DRAIN = synapse.LATENCY


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _phase_flags(phase: str):
    from ..sim.network import _FLAGS
    if phase not in _FLAGS:
        raise ValueError(f"phase must be one of {tuple(_FLAGS)}, not {phase!r}")
    return _FLAGS[phase]


@dataclass(frozen=True)
class Geometry:
    """The structural numbers of a configuration that the cycle counts depend on.

    Attributes
    ----------
    n, n_input, n_classes : int
        ``N``, 784, 10.
    lanes, pipelines, encoder_lanes, ec_lanes : int
        ``L``, ``P``, ``E``, ``Le``.
    cb, rb, cbe, rbe, nr : int
        ``CB``, ``RB``, ``CBe``, ``RBe``, ``NR`` (see the module documentation).
    trace_rows : int
        Rows of the input-trace memory, the cycles of its pass: ``ceil(784 / L) = RB``.
    divide : int
        Cycles the scaling unit spends on a non-zero column: ``B + recip_frac + 2``.
    """

    n: int
    n_input: int
    n_classes: int
    lanes: int
    pipelines: int
    encoder_lanes: int
    ec_lanes: int
    cb: int
    rb: int
    cbe: int
    rbe: int
    nr: int
    trace_rows: int
    divide: int


def geometry(cfg: NetworkConfig) -> Geometry:
    """The :class:`Geometry` of ``cfg``."""
    if not isinstance(cfg, NetworkConfig):
        raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
    n, n_in, n_c = cfg.n_exc, cfg.n_input, cfg.n_classes
    L, P, le = cfg.lanes, cfg.pipelines, ec_lanes(cfg)
    f = cfg.formats
    return Geometry(
        n=n, n_input=n_in, n_classes=n_c, lanes=L, pipelines=P,
        encoder_lanes=cfg.encoder_lanes, ec_lanes=le,
        cb=_ceil(n, L), rb=_ceil(n_in, L), cbe=_ceil(n_c, le), rbe=_ceil(n, le),
        nr=_ceil(n, P), trace_rows=_ceil(n_in, L),
        divide=f.weight_bits + f.recip_frac + 2,
    )


def _geo(cfg_or_geo) -> Geometry:
    return cfg_or_geo if isinstance(cfg_or_geo, Geometry) else geometry(cfg_or_geo)


# --------------------------------------------------------------------------- one step
def phase_a_cycles(cfg, n_in: int, n_e: int, n_c: int, *, learn_in: bool,
                   learn_ec: bool) -> int:
    """Cycles of phase A (states ``A1`` to ``A_WAIT``) delivering ``n_in`` input, ``n_e`` E and
    ``n_c`` C spikes. Exact.

    Each queue is drained into its synapse memory, one request per spike, back to back; a
    request is taken when the memory issues the last chunk of its predecessor. With
    ``t = 0`` the first cycle of ``A1``:

    * A1: row ``m`` is taken at ``m·CB``; A1 ends one cycle after the last, ``A1_WAIT``
      takes until the last trace bump is written (``BUMP_LATENCY`` cycles);
    * A2 (learning the hidden layer): E spike ``m``'s column event is taken at
      ``c0 + m·RB`` with ``c0 = max(A2's first cycle, k·CB)`` (the memory may still issue the
      last input row), its E→C row a cycle later on the other memory; without learning only
      the E→C rows, one every ``CBe`` cycles;
    * A4 (learning the output layer): C column events every ``RBe`` cycles once the E→C
      memory has issued its last row; without, one cycle per C spike;
    * ``A_SETTLE``, then ``A_WAIT`` until both memories and accumulators are idle: the last
      row event's ``CB + LATENCY + 1`` cycles, the last column event's ``RB + LATENCY``.

    Leading terms: ``k·CB + e·RB + c·RBe`` learning both layers, ``k·CB + e·CBe + c`` at test,
    plus eight cycles of the states and the last event's drain (exactly ``k·CB + 9`` when only
    input spikes are delivered) less what one memory's events hide of the other's drain.

    Parameters
    ----------
    cfg : NetworkConfig or Geometry
    n_in, n_e, n_c : int
        Spikes delivered (``k``, ``e``, ``c``).
    learn_in, learn_ec : bool
        The presentation's learning flags.
    """
    g = _geo(cfg)
    for name, v in (("n_in", n_in), ("n_e", n_e), ("n_c", n_c)):
        if int(v) < 0:
            raise ValueError(f"{name} must be ≥ 0, not {v}")
    k, e, c = int(n_in), int(n_e), int(n_c)
    idle_si = idle_se = 0           # first cycle each memory (and accumulator) is idle
    # A1: input rows.
    if k:
        last = (k - 1) * g.cb
        end1 = last + 1
        free_si = last + g.cb
        idle_si = free_si + ROW_DRAIN
    else:
        end1, free_si = 0, 0
    # A1_WAIT: until the last bump is written (a cycle when there was none).
    start2 = end1 + 1 + (traces.BUMP_LATENCY if k else 1)
    # A2: E spikes.
    free_se = 0
    if e:
        if learn_in:
            first = max(start2, free_si)
            last = first + (e - 1) * g.rb
            end2 = last + 2             # the E→C row a cycle after the column, then empty
            idle_si = last + g.rb + COL_DRAIN
            free_se = last + 1 + g.cbe
            idle_se = free_se + ROW_DRAIN
        else:
            last = start2 + (e - 1) * g.cbe
            end2 = last + 1
            free_se = last + g.cbe
            idle_se = free_se + ROW_DRAIN
    else:
        end2 = start2
    start4 = end2 + 1
    # A4: C spikes.
    if c:
        if learn_ec:
            first = max(start4, free_se)
            last = first + (c - 1) * g.rbe
            end4 = last + 1
            idle_se = last + g.rbe + COL_DRAIN
        else:
            end4 = start4 + c
    else:
        end4 = start4
    # A_SETTLE at end4 + 1, A_WAIT from end4 + 2 to the first cycle everything is idle.
    end = max(end4 + 2, idle_si, idle_se)
    return end + 1


def _row_stalls(counts) -> int:
    """Extra cycles of a unit whose rows' spikes leave one per cycle (``counts``: spikes per
    row): every spike after the first of a row holds the rows behind it for a cycle, and the
    last row's spikes all leave after the pass, one cycle each."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size == 0:
        return 0
    return int(np.maximum(counts[:-1] - 1, 0).sum()) + int(counts[-1])


def _per_row(indices, rows: int, width: int) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if rows <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.bincount(idx // width, minlength=rows)[:rows]


def lif_ei_cycles(cfg, e_spikes=()) -> int:
    """Cycles from phase B's start to the E/I core's ``done``: ``NR + 9`` plus the spike
    stalls of ``e_spikes`` (the E neurons that spike, any order)."""
    g = _geo(cfg)
    # step_cycles counts the start cycle; the accumulators' first beat comes a cycle after
    # the core is ready for it, which that cycle pays for.
    return lif.step_cycles(g.n, g.pipelines) + _row_stalls(
        _per_row(e_spikes, g.nr, g.pipelines))


def lif_c_cycles(cfg, c_spikes=()) -> int:
    """Cycles from phase B's start to the C core's ``done``: ``10 + 8``, one more if C neuron
    9 spikes (the C core has one pipeline, so only its last row stalls)."""
    g = _geo(cfg)
    return lif.step_cycles(g.n_classes, 1) + _row_stalls(_per_row(c_spikes, g.n_classes, 1))


def encoder_cycles(cfg, nonzero: int, hit_ranks=()) -> int:
    """Cycles from phase B's start to the encoder's ``done``: ``M + 3`` for ``M =
    ceil(nonzero / E)`` rows of the compacted image, plus the spike stalls (a row's hits leave
    one per cycle). ``hit_ranks`` are the ranks, among the image's non-zero pixels in
    ascending order, of the pixels that spike. An empty image takes one cycle."""
    g = _geo(cfg)
    rows = _ceil(int(nonzero), g.encoder_lanes)
    if rows == 0:
        return 1
    return rows + encoder.WALK_EXTRA + _row_stalls(_per_row(hit_ranks, rows, g.encoder_lanes))


def trace_cycles(cfg) -> int:
    """Cycles from phase B's start to the input traces' ``done``: ``ceil(784 / L) + 2``."""
    return _geo(cfg).trace_rows + traces.PASS_EXTRA


def phase_b_cycles(cfg, *, nonzero: int, e_spikes=(), c_spikes=(), hit_ranks=(),
                   input_on: bool = True) -> int:
    """Cycles of phase B (states ``B``, ``B_WAIT``, ``B_SETTLE``). Exact.

    ``2 + max(E/I core, C core, input traces, encoder)``, each unit's count from
    ``start`` to ``done`` (:func:`lif_ei_cycles`, :func:`lif_c_cycles`, :func:`trace_cycles`,
    :func:`encoder_cycles`; the encoder only while the input is on)::

        max(NR + 9 + s_E,  19 + s_C,  RB + 2,  ceil(nonzero / E) + 3 + s_in) + 2

    where the ``s`` are the spike stalls, ``0 ≤ s ≤ spikes``: one cycle per spike after the
    first of its row, and per spike of the last row.

    Parameters
    ----------
    cfg : NetworkConfig or Geometry
    nonzero : int
        Non-zero pixels of the image (the encoder's words per step).
    e_spikes, c_spikes : sequence of int
        E and C neurons that spike in this step.
    hit_ranks : sequence of int
        Ranks among the non-zero pixels of the pixels that spike (see
        :func:`encoder_cycles`).
    input_on : bool
        The encoder runs (off in the rest steps of ``rest = "simulate"``).
    """
    g = _geo(cfg)
    units = [lif_ei_cycles(g, e_spikes), lif_c_cycles(g, c_spikes), trace_cycles(g)]
    if input_on:
        units.append(encoder_cycles(g, nonzero, hit_ranks))
    return max(units) + 2


def step_cycles(cfg, *, n_in: int, n_e: int, n_c: int, learn_in: bool, learn_ec: bool,
                nonzero: int, e_spikes=(), c_spikes=(), hit_ranks=(),
                input_on: bool = True) -> int:
    """Cycles of one time step: :func:`phase_a_cycles` + :func:`phase_b_cycles`. Exact."""
    g = _geo(cfg)
    return (phase_a_cycles(g, n_in, n_e, n_c, learn_in=learn_in, learn_ec=learn_ec)
            + phase_b_cycles(g, nonzero=nonzero, e_spikes=e_spikes, c_spikes=c_spikes,
                             hit_ranks=hit_ranks, input_on=input_on))


def step_bounds(cfg, *, n_in: int, n_e: int, n_c: int, learn_in: bool, learn_ec: bool,
                nonzero: int, e_out: int = 0, c_out: int = 0, in_out: int = 0,
                input_on: bool = True) -> tuple:
    """``(low, high)`` cycles of one step from spike *counts* only.

    Phase A is exact from counts. Phase B depends on where the produced spikes fall: a unit
    pays one cycle per spike beyond the first of its row and one per spike of its last row,
    between ``max(0, spikes − (rows − 1))`` (spread over the other rows) and ``spikes``
    (``spikes − 1`` if they do not fit in the last row).

    Parameters
    ----------
    e_out, c_out, in_out : int
        E, C and input spikes produced in this step's phase B.
    Other parameters
        As :func:`step_cycles`.
    """
    g = _geo(cfg)
    a = phase_a_cycles(g, n_in, n_e, n_c, learn_in=learn_in, learn_ec=learn_ec)

    def stalls(spikes, rows, width):
        if spikes <= 0 or rows <= 0:
            return 0, 0
        return max(0, spikes - (rows - 1)), spikes if spikes <= width else spikes - 1

    lo_e, hi_e = stalls(int(e_out), g.nr, g.pipelines)
    lo_c, hi_c = (0, 1) if c_out else (0, 0)
    base_e = lif.step_cycles(g.n, g.pipelines)
    base_c = lif.step_cycles(g.n_classes, 1)
    base_t = trace_cycles(g)
    lo = [base_e + lo_e, base_c + lo_c, base_t]
    hi = [base_e + hi_e, base_c + hi_c, base_t]
    if input_on:
        rows = _ceil(int(nonzero), g.encoder_lanes)
        lo_i, hi_i = stalls(int(in_out), rows, g.encoder_lanes)
        base_i = rows + encoder.WALK_EXTRA if rows else 1
        lo.append(base_i + lo_i)
        hi.append(base_i + hi_i)
    return a + max(lo) + 2, a + max(hi) + 2


# --------------------------------------------------------------------------- presentation
def scaling_cycles(cfg, projection: str, sums=None) -> int:
    """Cycles of one synaptic-scaling pass, ``start`` to ``done`` (the ``SCALE_*`` and
    ``SCALE_*_WAIT`` states).

    With every column sum non-zero, for ``C`` columns of ``R`` rows on ``Lm`` lanes
    (``RBm = ceil(R / Lm)``) and ``D = B + recip_frac + 2`` divider cycles per column::

        C · max(D, RBm) + min(D, RBm) + LATENCY + 3

    (input→E: ``C = N``, ``RBm = RB``; E→C: ``C = 10``, ``RBm = RBe``). Given the column
    ``sums``, the exact count of :meth:`~symspike.hdl.scaling.ScalingUnit.pass_cycles`,
    which also covers zero columns.
    """
    g = _geo(cfg)
    if projection == "in":
        cols, rb = g.n, g.rb
    elif projection == "ec":
        cols, rb = g.n_classes, g.rbe
    else:
        raise ValueError(f"projection must be 'in' or 'ec', not {projection!r}")
    if sums is None:
        d = g.divide
        return cols * max(d, rb) + min(d, rb) + synapse.LATENCY + 3
    if isinstance(cfg, Geometry):
        raise TypeError("exact scaling cycles from sums need the NetworkConfig")
    from .scaling import ScalingUnit
    unit = ScalingUnit(cfg, projection)
    unit._MustUse__silence = True     # a calculator here, never elaborated
    return unit.pass_cycles(rb, [int(s) for s in sums])


def reset_cycles(cfg, queued: int = 0) -> int:
    """Cycles of the rest state (``RESET``, ``RESET_WAIT``): the longest of the E/I core's
    reset pass, the C core's, the input-trace clear and the flush of the ``queued`` spikes
    left in the longest queue::

        1 + max(NR + 8, 18, RB + 2, queued + 2)
    """
    g = _geo(cfg)
    return 1 + max(lif.step_cycles(g.n, g.pipelines) - 1,
                   lif.step_cycles(g.n_classes, 1) - 1,
                   g.trace_rows + traces.PASS_EXTRA, int(queued) + 2)


def begin_cycles(cfg) -> int:
    """Cycles of ``BEGIN`` and ``BEGIN_WAIT``: the readout counters are cleared one neuron per
    cycle, ``max(N, 10) + 2``."""
    g = _geo(cfg)
    return max(g.n, g.n_classes) + 2


def theta_cycles(cfg, learn_in: bool) -> int:
    """Cycles of ``THETA`` (and ``THETA_WAIT`` when the hidden layer learns: one pass of the
    E/I core, ``NR + 9``)."""
    g = _geo(cfg)
    return lif.step_cycles(g.n, g.pipelines) if learn_in else 1


#: Cycles of one sequencer instruction that does not wait for a unit: ``FETCH``, ``DECODE``,
#: ``EXECUTE``.
INSTR = 3


def prologue_cycles(cfg=None) -> int:
    """Cycles of the default program (``firmware/programs/present.s``) before its first
    scaling pass: ``minspk``, ``maxint``, ``intensity`` and the fetch of ``scale``,
    ``4 · INSTR``."""
    return 4 * INSTR


def presentation_overhead(cfg: NetworkConfig, *, learn_in: bool, learn_ec: bool,
                          queued: int = 0, sums_in=None, sums_ec=None,
                          ending: str = "") -> int:
    """Cycles of one presentation of the default program outside its time steps, from its
    ``SCALE_IN`` to the next presentation's (or to ``DONE``)::

        S_in + S_ec + 2                 scale: the passes, SCALED, RETURN
        + 3 + R + 1                     reset (rest = "reset"): RESET…, RETURN
        + 2 + (max(N, 10) + 2)          clear: the counters' walk
        + 2·3 (+ 2·3)                   flags, steps (and rest = "simulate": flags, steps)
        + 3 + Θ                         theta
        + 2·3                           jaer, jspikes
        + 4·3 | 3 | 2·3                 again: jint, inc, jmp, next fetch of scale |
                                        enough spikes: halt | intensity at its maximum: jint, halt

    ``S_in``, ``S_ec``: :func:`scaling_cycles` of a learning layer, else 1; ``R``:
    :func:`reset_cycles`; ``Θ``: :func:`theta_cycles`; ``ending``: ``""`` when another
    presentation follows, ``"spikes"`` or ``"intensity"`` for the last one (why the rule
    stopped). A program loaded over the link has its own overhead.
    """
    if ending not in ("", "spikes", "intensity"):
        raise ValueError(f"ending must be '', 'spikes' or 'intensity', not {ending!r}")
    s_in = scaling_cycles(cfg, "in", sums_in) if learn_in else 1
    s_ec = scaling_cycles(cfg, "ec", sums_ec) if learn_ec else 1
    total = s_in + s_ec + 2
    if cfg.rest == "reset":
        total += INSTR + reset_cycles(cfg, queued) + 1
    total += INSTR - 1 + begin_cycles(cfg)
    total += 2 * INSTR * (2 if cfg.rest == "simulate" else 1)
    total += INSTR + theta_cycles(cfg, learn_in)
    total += 2 * INSTR
    total += {"": 4, "spikes": 1, "intensity": 2}[ending] * INSTR
    return total


# --------------------------------------------------------------------------- activity
@dataclass
class StepActivity:
    """What one time step delivers and produces.

    Attributes
    ----------
    n_in, n_e, n_c : int
        Input, E and C spikes delivered in phase A (produced by the previous step).
    e_spikes, c_spikes : ndarray of int
        E and C neurons that spike in phase B.
    hit_ranks : ndarray of int
        Ranks among the image's non-zero pixels of the input spikes drawn in phase B.
    input_on : bool
        The encoder ran (a presentation step, not a rest step).
    """

    n_in: int
    n_e: int
    n_c: int
    e_spikes: np.ndarray
    c_spikes: np.ndarray
    hit_ranks: np.ndarray
    input_on: bool = True


@dataclass
class PresentationActivity:
    """One presentation: its flags, the spikes queued when it began and its steps."""

    learn_in: bool
    learn_ec: bool
    nonzero: int
    queued: int
    steps: list = field(default_factory=list)
    sums_in: np.ndarray | None = None
    sums_ec: np.ndarray | None = None
    #: ``""`` if another presentation follows, else why the rule stopped: ``"spikes"``
    #: (enough E spikes) or ``"intensity"`` (the maximum reached).
    ending: str = ""


def presentation_cycles(cfg: NetworkConfig, pres: PresentationActivity, *,
                        exact_sums: bool = True) -> int:
    """Cycles of one presentation: :func:`presentation_overhead` plus every step."""
    g = geometry(cfg)
    total = presentation_overhead(
        cfg, learn_in=pres.learn_in, learn_ec=pres.learn_ec, queued=pres.queued,
        sums_in=pres.sums_in if exact_sums else None,
        sums_ec=pres.sums_ec if exact_sums else None, ending=pres.ending)
    for s in pres.steps:
        total += step_cycles(g, n_in=s.n_in, n_e=s.n_e, n_c=s.n_c, learn_in=pres.learn_in,
                             learn_ec=pres.learn_ec, nonzero=pres.nonzero,
                             e_spikes=s.e_spikes, c_spikes=s.c_spikes,
                             hit_ranks=s.hit_ranks, input_on=s.input_on)
    return total


def image_cycles(cfg: NetworkConfig, presentations, *, exact_sums: bool = True) -> int:
    """Cycles of a ``PRESENT`` command, from ``start`` to ``done`` inclusive (the cycles
    ``busy`` is high): the program's prologue, every presentation's and one for ``DONE``."""
    return prologue_cycles(cfg) + sum(presentation_cycles(cfg, p, exact_sums=exact_sums)
                                      for p in presentations) + 1


def record_activity(model, image, label: int = -1, phase: str = "test") -> list:
    """Present ``image`` to a :class:`~symspike.sim.network.GoldenModel` as ``present`` does,
    one step at a time, and record what each step delivers and produces.

    The loop mirrors ``Model.present`` (scaling, rest, steps, θ decay, re-presentation) with
    one kernel call per step; the spikes between two calls are the model's ``pend_*`` arrays.

    The model advances exactly as ``model.present(image, label, phase)`` would (weights, θ,
    random streams, state), so a sequence of calls follows a training run.

    Returns
    -------
    list of PresentationActivity
        One per presentation (re-presentations included).
    """
    cfg = model.cfg
    learn_in, learn_ec, teacher = _phase_flags(phase)
    if teacher and not 0 <= label < cfg.n_classes:
        raise ValueError(f"phase {phase!r} needs a label in 0..9, not {label!r}")
    flat = np.ascontiguousarray(image, dtype=np.uint8).reshape(-1)
    if flat.shape[0] != cfg.n_input:
        raise ValueError(f"an image must have {cfg.n_input} pixels, not {flat.shape[0]}")
    nz_idx = np.flatnonzero(flat).astype(np.int64)
    pixels = flat[nz_idx]
    flags = (learn_in, learn_ec, teacher)
    out = []
    intensity = cfg.intensity_init
    scratch_e = np.zeros(cfg.n_exc, dtype=np.int64)
    scratch_c = np.zeros(cfg.n_classes, dtype=np.int64)

    def run(nsteps, input_on, lab, fl, ce, cc, pres):
        for _ in range(nsteps):
            n_in = int(np.count_nonzero(model.pend_in))
            n_e = int(np.count_nonzero(model.pend_e))
            n_c = int(np.count_nonzero(model.pend_c))
            model._run(1, nz_idx, nz_thr, lab, input_on, fl, ce, cc)
            hits = np.flatnonzero(model.pend_in)
            pres.steps.append(StepActivity(
                n_in, n_e, n_c, np.flatnonzero(model.pend_e), np.flatnonzero(model.pend_c),
                np.searchsorted(nz_idx, hits), input_on))

    while True:
        sums_in = model.w_in.sum(axis=0) if learn_in else None
        if learn_in:
            model._scale("in")
        sums_ec = model.w_ec.sum(axis=0) if learn_ec else None
        if learn_ec:
            model._scale("ec")
        queued = max(int(np.count_nonzero(p)) for p in
                     (model.pend_in, model.pend_e, model.pend_c))
        pres = PresentationActivity(learn_in, learn_ec, int(nz_idx.size), queued,
                                    sums_in=sums_in, sums_ec=sums_ec)
        if cfg.rest == "reset":
            model.reset_state()
        counts_e = np.zeros(cfg.n_exc, dtype=np.int64)
        counts_c = np.zeros(cfg.n_classes, dtype=np.int64)
        nz_thr = model._rate_thr(intensity)[pixels]
        run(cfg.steps_present, True, label if teacher else -1, flags, counts_e, counts_c, pres)
        if cfg.rest == "simulate" and cfg.steps_rest:
            run(cfg.steps_rest, False, -1, (learn_in, learn_ec, False), scratch_e, scratch_c,
                pres)
        if learn_in:
            model._decay_theta()
        out.append(pres)
        if counts_e.sum() >= cfg.min_spikes:
            pres.ending = "spikes"
            break
        if intensity >= cfg.intensity_max:
            pres.ending = "intensity"
            break
        intensity += 1
    if phase != "test":
        model.images_seen += 1
    return out


@dataclass
class ImageEstimate:
    """Predicted cycles of one ``PRESENT`` and where they go.

    Attributes
    ----------
    cycles : int
        Total, ``start`` to ``done`` inclusive.
    presentations : int
    steps : int
        Time steps run (all presentations).
    breakdown : dict
        Cycles per term: ``"input_rows"`` (``k·CB``), ``"e_events"`` (``e·RB`` learning,
        else ``e·CBe``), ``"c_events"`` (``c·RBe`` learning, else ``c``),
        ``"phase_a_other"`` (the rest of phase A: hand-overs and drains), ``"phase_b"``,
        ``"scaling"``, ``"reset"``, ``"other"`` (counter clear, θ decay, control states).
    activity : list of PresentationActivity
    """

    cycles: int
    presentations: int
    steps: int
    breakdown: dict
    activity: list

    def seconds(self, clock_hz: float) -> float:
        """The time at ``clock_hz``."""
        return self.cycles / float(clock_hz)


def image_cycles_estimate(cfg: NetworkConfig, image, label: int = -1, phase: str = "both",
                          *, model=None, seed: int = 0) -> ImageEstimate:
    """Predicted cycles of presenting ``image`` to the core, spikes from the golden model.

    Parameters
    ----------
    cfg : NetworkConfig
    image : array of uint8
        28×28 (or 784) pixels.
    label : int
        Class (training phases).
    phase : str
        ``"both"``, ``"hidden"``, ``"output"`` or ``"test"``.
    model : GoldenModel, optional
        The model to present with (it advances, as :func:`record_activity` says); a fresh
        ``GoldenModel(cfg, seed)`` if omitted. Pass the same model over a sequence of
        images to follow a training run.
    seed : int
        Seed of the fresh model.

    Returns
    -------
    ImageEstimate
    """
    from ..sim.network import GoldenModel
    if model is None:
        model = GoldenModel(cfg, seed)
    elif model.cfg != cfg:
        raise ValueError("the model's configuration differs from cfg")
    g = geometry(cfg)
    acts = record_activity(model, image, label, phase)
    br = dict.fromkeys(("input_rows", "e_events", "c_events", "phase_a_other", "phase_b",
                        "scaling", "reset", "other"), 0)
    steps = 0
    for p in acts:
        s_in = scaling_cycles(cfg, "in", p.sums_in) if p.learn_in else 0
        s_ec = scaling_cycles(cfg, "ec", p.sums_ec) if p.learn_ec else 0
        rest = reset_cycles(cfg, p.queued) if cfg.rest == "reset" else 0
        over = presentation_overhead(cfg, learn_in=p.learn_in, learn_ec=p.learn_ec,
                                     queued=p.queued, sums_in=p.sums_in, sums_ec=p.sums_ec,
                                     ending=p.ending)
        br["scaling"] += s_in + s_ec
        br["reset"] += rest
        br["other"] += over - s_in - s_ec - rest
        for s in p.steps:
            steps += 1
            a = phase_a_cycles(g, s.n_in, s.n_e, s.n_c, learn_in=p.learn_in,
                               learn_ec=p.learn_ec)
            rows = s.n_in * g.cb
            ev_e = s.n_e * (g.rb if p.learn_in else g.cbe)
            ev_c = s.n_c * (g.rbe if p.learn_ec else 1)
            br["input_rows"] += rows
            br["e_events"] += ev_e
            br["c_events"] += ev_c
            br["phase_a_other"] += a - rows - ev_e - ev_c
            br["phase_b"] += phase_b_cycles(g, nonzero=p.nonzero, e_spikes=s.e_spikes,
                                            c_spikes=s.c_spikes, hit_ranks=s.hit_ranks,
                                            input_on=s.input_on)
    br["other"] += prologue_cycles(cfg) + 1        # and DONE
    total = sum(br.values())
    return ImageEstimate(total, len(acts), steps, br, acts)
