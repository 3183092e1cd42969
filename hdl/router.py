"""Spike router: the address-event paths between the populations of the network core.

Spikes produced in phase B of a time step act in phase A of the next (``docs/formats.md``,
"One time step"). Between the two they wait here, as addresses (AER), in one queue per
population:

* input spikes from the Poisson encoder (ascending pixel index),
* E spikes from the E/I LIF core (ascending neuron index),
* C spikes from the C core, the teacher's included (ascending class index).

The sequencer drains the queues in phase A in the order the golden model delivers them
(input, then E, then C). Each queue takes every spike one step can produce (``n_input``,
``N``, ``n_classes``), so the producers never see back-pressure from a full queue in normal
operation; they do honour it (``ready``), which comes from a register: the host's AER events
can fill the input queue, and the E queue's ``ready`` is the LIF core's stall.

On their way in, E and C spikes are counted per neuron (the readout of a presentation) and the
E spikes in total (the re-presentation rule). Counting can be switched off (the rest steps of
``rest = "simulate"``); a clear takes one cycle per neuron, before a presentation's first
step.

The teacher lives here too: a xorshift32 generator whose next word, compared with the teacher
threshold (``sim/rng.py: teacher_threshold``), decides whether the label's C neuron spikes
this step; the C core injects that spike (``LIFCore.fire``).

:class:`Accumulators` sits on the other side of phase A: it adds the weight rows the synapse
memories send for each delivered spike into one accumulator per post-synaptic neuron and
hands them, row by row and cleared, to the LIF core in phase B.
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2, exact_log2

from ..firmware.config import NetworkConfig
from ..sim.rng import stream_seeds, teacher_threshold
from .synapse import AccLayout
from .xorshift import STATE_BITS, WORD_BITS, xorshift32_next, xorshift32_word

__all__ = ["Accumulators", "SpikeCounters", "SpikeRouter", "EventWords"]


def _silence(elaboratable):
    # A rejected constructor leaves an object nobody can use: no "never used" warning.
    elaboratable._MustUse__silence = True


def _check_pow2(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two ≥ 1, not {value}")


class Accumulators(wiring.Component):
    """Synaptic accumulators of one population, between a synapse memory and a LIF core.

    Phase A: every beat of the synapse memory's ``acc`` stream (``L`` old weights of one row
    chunk) is added to the accumulators of its ``L`` columns, one beat per cycle, never
    stalling. Phase B: ``start`` begins a drain that sends the accumulators as the LIF core
    takes them, ``P`` per beat (neurons ``r·P … r·P + P − 1`` in beat ``r``), and leaves them
    all zero.

    The memory holds ``ceil(n / L)`` rows of ``L`` accumulators. A row is cleared without a
    write: a *dirty* bit per row says whether it holds sums of this step, an add to a clean row
    starts from zero and the drain clears the bit when it has sent the row's last
    accumulator. Consecutive beats to the same row need no stall because the read port is
    transparent to the write port.

    Parameters
    ----------
    n : int
        Accumulators (post-synaptic neurons).
    lanes : int
        ``L``, accumulators per beat of ``add``: the synapse memory's lanes.
    pipelines : int
        ``P``, accumulators per beat of ``out``: the LIF core's pipelines (``P ≤ L``).
    acc_bits : int
        Width of an accumulator.
    weight_bits : int
        Width of a weight code.
    rows : int
        Rows of the synapse memory (only the width of the beats' ``row`` field).

    Members
    -------
    add : ``In(stream.Signature(AccLayout(rows, n, L, B)))``
        Weight chunks; always ready.
    start : ``In(1)``
        Begin a drain (ignored while one runs).
    out : ``Out(stream.Signature(ArrayLayout(unsigned(acc_bits), P)))``
        The accumulators, ``ceil(n / P)`` beats per drain.
    busy : ``Out(1)``
        An add is in flight or a drain runs.
    """

    def __init__(self, n: int, lanes: int, pipelines: int, acc_bits: int, weight_bits: int,
                 rows: int):
        try:
            for name, value in (("n", n), ("acc_bits", acc_bits),
                                ("weight_bits", weight_bits), ("rows", rows)):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"{name} must be an int, not {value!r}")
                if value < 1:
                    raise ValueError(f"{name} must be ≥ 1, not {value}")
            _check_pow2("lanes", lanes)
            _check_pow2("pipelines", pipelines)
            if pipelines > lanes:
                raise ValueError(f"pipelines ({pipelines}) must not exceed lanes ({lanes})")
        except (TypeError, ValueError):
            _silence(self)
            raise
        self._n, self._lanes, self._p, self._bits = n, lanes, pipelines, acc_bits
        self._mrows = -(-n // lanes)
        self._orows = -(-n // pipelines)
        super().__init__({
            "add": In(stream.Signature(AccLayout(rows, n, lanes, weight_bits))),
            "start": In(1),
            "out": Out(stream.Signature(data.ArrayLayout(unsigned(acc_bits), pipelines))),
            "busy": Out(1),
        })
        self.mem = Memory(shape=data.ArrayLayout(unsigned(acc_bits), lanes),
                          depth=self._mrows, init=[])
        _silence(self.mem)

    @property
    def n(self) -> int:
        return self._n

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def pipelines(self) -> int:
        return self._p

    @property
    def beats(self) -> int:
        """Beats of ``out`` per drain, ``ceil(n / P)``."""
        return self._orows

    def elaborate(self, platform):
        m = Module()
        L, P = self._lanes, self._p
        lg, lp = exact_log2(L), exact_log2(P)
        m.submodules.mem = self.mem
        wp = self.mem.write_port()
        rp = self.mem.read_port(transparent_for=(wp,))
        dirty = Signal(self._mrows)

        draining = Signal()
        r = Signal(range(self._orows + 1))      # next out-row to read

        # ---- phase A: read-modify-write of one memory row per beat
        a_valid = Signal()
        a_row = Signal(range(self._mrows))
        a_w = Signal.like(self.add.payload.weights)
        a_mask = Signal(L)
        m.d.comb += self.add.ready.eq(~draining)
        m.d.sync += a_valid.eq(self.add.valid & self.add.ready)
        with m.If(self.add.valid & self.add.ready):
            m.d.sync += [
                a_row.eq(self.add.payload.col >> lg),
                a_w.eq(self.add.payload.weights),
                a_mask.eq(self.add.payload.mask),
            ]
        m.d.comb += self.busy.eq(draining | self.out.valid | a_valid)
        fresh = ~dirty.bit_select(a_row, 1)
        new = []
        for s in range(L):
            old = Mux(fresh, 0, rp.data[s])
            new.append(Mux(a_mask[s], old + a_w[s], old))
        m.d.comb += [wp.addr.eq(a_row), wp.en.eq(a_valid)]
        m.d.comb += [wp.data[s].eq(new[s]) for s in range(L)]
        with m.If(a_valid):
            m.d.sync += dirty.bit_select(a_row, 1).eq(1)

        # ---- phase B: drain, one out-row per beat, the read port as the output register
        advance = ~self.out.valid | self.out.ready
        o_sel = Signal(max(lg - lp, 1))
        o_zero = Signal()
        mrow = (r << lp) >> lg if lp <= lg else r
        m.d.comb += rp.en.eq(Mux(draining, advance, 1))
        m.d.comb += rp.addr.eq(Mux(draining, mrow, self.add.payload.col >> lg))
        with m.If(self.start & ~draining & ~self.out.valid):
            m.d.sync += [draining.eq(1), r.eq(0)]
        with m.If(draining & advance):
            with m.If(r < self._orows):
                m.d.sync += [
                    self.out.valid.eq(1),
                    r.eq(r + 1),
                    o_zero.eq(~dirty.bit_select(mrow, 1)),
                ]
                if lg > lp:
                    m.d.sync += o_sel.eq(r[:lg - lp])
                if lg > lp:
                    last = (r == self._orows - 1) | (r[:lg - lp] == (1 << (lg - lp)) - 1)
                else:
                    last = Const(1)     # P == L: every out-row is a whole memory row
                with m.If(last):
                    m.d.sync += dirty.bit_select(mrow, 1).eq(0)
            with m.Else():
                m.d.sync += [self.out.valid.eq(0), draining.eq(0)]
        with m.Elif(self.out.ready):
            m.d.sync += self.out.valid.eq(0)

        groups = [[rp.data[g * P + p] for p in range(P)] for g in range(L // P)]
        for p in range(P):
            lane = Array(grp[p] for grp in groups)[o_sel] if len(groups) > 1 else groups[0][p]
            m.d.comb += self.out.payload[p].eq(Mux(o_zero, 0, lane))
        return m


class SpikeCounters(wiring.Component):
    """Per-neuron spike counts of one population.

    Parameters
    ----------
    n : int
        Neurons.
    count_bits : int
        Width of a count (it saturates).

    Members
    -------
    inc : ``In(1)``, ``inc_addr`` : ``In(range(n))``
        Count one spike of neuron ``inc_addr`` (at most one per cycle).
    clear : ``In(1)``
        Set every count and ``total`` to zero: ``total`` at once, the counts one per cycle
        (``busy`` meanwhile; spikes are not counted then).
    busy : ``Out(1)``
        A clear runs.
    total : ``Out(range(n·2**count_bits))``
        Spikes counted since the last clear, all neurons.
    addr : ``In(range(n))``, ``data`` : ``Out(count_bits)``
        Read port: the count of ``addr`` of the previous cycle.
    """

    def __init__(self, n: int, count_bits: int):
        self._n, self._bits = n, count_bits
        super().__init__({
            "inc": In(1),
            "inc_addr": In(range(max(n, 2))),
            "clear": In(1),
            "busy": Out(1),
            "total": Out(range(n * (1 << count_bits) + 1)),
            "addr": In(range(max(n, 2))),
            "data": Out(count_bits),
        })
        self.mem = Memory(shape=count_bits, depth=n, init=[])
        _silence(self.mem)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = self.mem
        wp = self.mem.write_port()
        rp = self.mem.read_port(transparent_for=(wp,))
        hp = self.mem.read_port(transparent_for=(wp,))
        cmax = (1 << self._bits) - 1

        clearing = Signal()
        c_addr = Signal(range(self._n))
        with m.If(self.clear):
            m.d.sync += [clearing.eq(1), c_addr.eq(0), self.total.eq(0)]
        with m.Elif(clearing):
            m.d.sync += c_addr.eq(c_addr + 1)
            with m.If(c_addr == self._n - 1):
                m.d.sync += clearing.eq(0)
        m.d.comb += self.busy.eq(clearing | self.clear)

        # Read in the spike's cycle, write back in the next; spikes of one pass are distinct
        # neurons in ascending order, and the transparent read covers back-to-back repeats.
        s_valid = Signal()
        s_addr = Signal.like(self.inc_addr)
        m.d.comb += [rp.addr.eq(self.inc_addr)]
        m.d.sync += [s_valid.eq(self.inc & ~self.busy), s_addr.eq(self.inc_addr)]
        with m.If(clearing):
            m.d.comb += [wp.addr.eq(c_addr), wp.en.eq(1), wp.data.eq(0)]
        with m.Else():
            m.d.comb += [
                wp.addr.eq(s_addr),
                wp.en.eq(s_valid),
                wp.data.eq(Mux(rp.data == cmax, rp.data, rp.data + 1)),
            ]
        with m.If(s_valid & ~self.clear):
            m.d.sync += self.total.eq(self.total + 1)

        m.d.comb += [hp.addr.eq(self.addr), self.data.eq(hp.data)]
        return m


class EventWords(wiring.Component):
    """The chip's learning-event generator: a xorshift32 state and its stream of words.

    ``words.payload`` is always the next word (the upper half of the next state) and always
    valid; each transfer advances the state. Several consumers share it through a mux, in
    the order of ``docs/formats.md``.

    Parameters
    ----------
    seed : int
        Initial state (non-zero): the run seed's ``event`` stream by default.

    Members
    -------
    words : ``Out(stream.Signature(unsigned(16)))``
    load : ``In(1)``, ``state_in`` : ``In(32)``
        Replace the state (ignored if a word is taken in the same cycle).
    state : ``Out(32)``
        The current state (for checkpoints).
    """

    def __init__(self, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, int):
            _silence(self)
            raise TypeError(f"seed must be an int, not {seed!r}")
        if not 0 < seed < 1 << STATE_BITS:
            _silence(self)
            raise ValueError(f"seed must be a non-zero 32-bit state, not {seed}")
        self._seed = seed
        super().__init__({
            "words": Out(stream.Signature(unsigned(WORD_BITS))),
            "load": In(1),
            "state_in": In(STATE_BITS),
            "state": Out(STATE_BITS, init=seed),
        })

    def elaborate(self, platform):
        m = Module()
        nxt = xorshift32_next(self.state)
        m.d.comb += [self.words.valid.eq(1), self.words.payload.eq(xorshift32_word(nxt))]
        with m.If(self.words.ready):
            m.d.sync += self.state.eq(nxt)
        with m.Elif(self.load):
            m.d.sync += self.state.eq(self.state_in)
        return m


class SpikeRouter(wiring.Component):
    """AER queues between the populations, readout counters and the teacher.

    Parameters
    ----------
    cfg : NetworkConfig
        Network (``n_input``, ``n_exc``, ``n_classes``, ``teacher_p``, ``steps_present``).
    seed : int
        Run seed; the teacher starts from its ``teacher`` stream (:func:`stream_seeds`).

    Members
    -------
    in_spikes, e_spikes, c_spikes : ``In(stream.Signature(range(n)))``
        Spikes as the encoder and the LIF cores produce them (phase B).
    in_out, e_out, c_out : ``Out(stream.Signature(range(n)))``
        The queued spikes of the previous step, oldest first (phase A).
    in_pending, e_pending, c_pending : ``Out(1)``
        The queue holds a spike. Exact from the cycle after the spike's write, whereas
        ``valid`` may rise a cycle later: a consumer ends its phase when this is low.
    flush : ``In(1)``
        Empty every queue (a reset between presentations; takes one cycle per queued spike,
        ``busy`` meanwhile).
    busy : ``Out(1)``
        A flush or a clear of the counters runs.
    count : ``In(1)``
        Count the E and C spikes that arrive (off during rest steps).
    clear : ``In(1)``
        Clear the counters (one cycle per neuron of the larger population, ``busy``).
    e_total : ``Out(range(...))``
        E spikes counted since the clear.
    e_count_addr, e_count : ``In(range(N))``, ``Out(count_bits)``
        Read port of the E counters (one cycle latency).
    c_count_addr, c_count : ``In(range(10))``, ``Out(count_bits)``
        Read port of the C counters.
    teacher_draw : ``In(1)``
        Advance the teacher generator; ``teacher_fire`` is this draw's decision.
    teacher_fire : ``Out(1)``
        ``word < teacher_threshold`` for the word the next draw takes.
    teacher_state : ``Out(32)``, teacher_load : ``In(1)``, teacher_state_in : ``In(32)``
        The generator's xorshift32 state, and a load of a saved one (a draw wins).
    """

    def __init__(self, cfg: NetworkConfig, *, seed: int = 0):
        if not isinstance(cfg, NetworkConfig):
            _silence(self)
            raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
        self._cfg = cfg
        self._sizes = {"in": cfg.n_input, "e": cfg.n_exc, "c": cfg.n_classes}
        self._count_bits = bits_for(cfg.steps_present)
        self._teacher_seed = int(stream_seeds(seed, cfg.encoder_lanes)["teacher"])
        self._teacher_thr = teacher_threshold(cfg.teacher_p)
        members = {}
        for name, n in self._sizes.items():
            members[f"{name}_spikes"] = In(stream.Signature(range(max(n, 2))))
            members[f"{name}_out"] = Out(stream.Signature(range(max(n, 2))))
            members[f"{name}_pending"] = Out(1)
        members.update({
            "flush": In(1),
            "busy": Out(1),
            "count": In(1),
            "clear": In(1),
            "e_total": Out(range(cfg.n_exc * (1 << self._count_bits) + 1)),
            "e_count_addr": In(range(max(cfg.n_exc, 2))),
            "e_count": Out(self._count_bits),
            "c_count_addr": In(range(max(cfg.n_classes, 2))),
            "c_count": Out(self._count_bits),
            "teacher_draw": In(1),
            "teacher_fire": Out(1),
            "teacher_state": Out(STATE_BITS, init=self._teacher_seed),
            "teacher_load": In(1),
            "teacher_state_in": In(STATE_BITS),
        })
        super().__init__(members)

    @property
    def capacity(self) -> dict:
        """Spikes each queue takes (``"in"``, ``"e"``, ``"c"``): one step's most."""
        return dict(self._sizes)

    @property
    def count_bits(self) -> int:
        return self._count_bits

    @property
    def teacher_seed(self) -> int:
        return self._teacher_seed

    def elaborate(self, platform):
        m = Module()
        flushing = Signal()
        queues = {}
        for name, n in self._sizes.items():
            # The producers' `ready` is a register, `room`: the next level below `n`, set a
            # cycle ahead (the E queue's `ready` reaches every lane of the LIF core, its
            # stall; the input queue's is on the host's AER path). The queue is one deeper
            # than the `n` spikes it takes, so its own `w_rdy` never decides, whatever its
            # depth's inner workings (a `SyncFIFOBuffered` of depth 2 refuses a write while
            # its one entry moves to the output register).
            q = fifo.SyncFIFOBuffered(width=ceil_log2(max(n, 2)), depth=n + 1)
            m.submodules[f"{name}_queue"] = queues[name] = q
            src = getattr(self, f"{name}_spikes")
            dst = getattr(self, f"{name}_out")
            room = Signal(init=1, name=f"{name}_room")
            put = src.valid & room
            take = q.r_en & q.r_rdy
            m.d.sync += room.eq(q.level + put - take < n)
            m.d.comb += [
                q.w_data.eq(src.payload),
                q.w_en.eq(put),
                src.ready.eq(room),
                dst.payload.eq(q.r_data),
                dst.valid.eq(q.r_rdy & ~flushing),
                q.r_en.eq(Mux(flushing, 1, dst.ready)),
            ]
        # ``level`` counts a spike from the cycle after its write, the buffered read side
        # shows it a cycle later: emptiness is judged by the level.
        for name, q in queues.items():
            m.d.comb += getattr(self, f"{name}_pending").eq(q.level != 0)
        any_left = Signal()
        m.d.comb += any_left.eq(self.in_pending | self.e_pending | self.c_pending)
        with m.If(self.flush):
            m.d.sync += flushing.eq(1)
        with m.Elif(flushing & ~any_left):
            m.d.sync += flushing.eq(0)
        clearing = Signal(2)
        m.d.comb += self.busy.eq(flushing | self.flush | self.clear | clearing.any())

        for name, n in (("e", self._cfg.n_exc), ("c", self._cfg.n_classes)):
            cnt = SpikeCounters(n, self._count_bits)
            m.submodules[f"{name}_counters"] = cnt
            src = getattr(self, f"{name}_spikes")
            m.d.comb += [
                cnt.inc.eq(src.valid & src.ready & self.count),
                cnt.inc_addr.eq(src.payload),
                cnt.clear.eq(self.clear),
                cnt.addr.eq(getattr(self, f"{name}_count_addr")),
                getattr(self, f"{name}_count").eq(cnt.data),
            ]
            m.d.comb += clearing[0 if name == "e" else 1].eq(cnt.busy)
            if name == "e":
                m.d.comb += self.e_total.eq(cnt.total)

        state = self.teacher_state
        nxt = xorshift32_next(state)
        m.d.comb += self.teacher_fire.eq(xorshift32_word(nxt) < self._teacher_thr)
        with m.If(self.teacher_draw):
            m.d.sync += state.eq(nxt)
        with m.Elif(self.teacher_load):
            m.d.sync += state.eq(self.teacher_state_in)
        return m
