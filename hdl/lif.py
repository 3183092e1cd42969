"""LIF neuron cores: phase B of the golden model's time step ("neuron updates") in gateware.

Two populations share one datapath:

``"EI"``
    The hidden layer: ``N`` excitatory (E) neurons with adaptive threshold θ and their ``N``
    one-to-one inhibitory (I) partners. E neuron ``j`` and I neuron ``j`` are updated in the
    same cycle by the same pipeline, so the two per-neuron couplings of phase A need no router:
    the E→I drive (A2: ``ge_i[j] += g_ei`` when E ``j`` spiked) and the lateral inhibition
    (A3: ``gi_e[j] += g_ie · (n_I − s_I[j])``) are applied inside the core, together with the
    E trace bump (A3: ``x_e[j] += trace_inc``). Only the input accumulators come from outside.
``"C"``
    The 10 classification neurons: ordinary LIF neurons without refractory period, or, in
    teacher mode, neurons that only report the teacher's spike (their accumulators are
    discarded, ``V`` and ``ge`` stay); the trace bump of A4 and the trace decay are done here
    in both modes.

Every neuron keeps the spike bit of the previous step (the golden model's ``pend_*``) in its
state word; the phase-A additions that depend on it are applied when the neuron is read for
its phase-B update, which is exact because nothing else in phase A reads or writes those
conductances. The traces are only *read* by the learning units in phase A, before the core's
pass: ``x`` as stored is the golden model's trace before the bump of A3/A4, and the bumped
value ``min(x + trace_inc·spiked, trace_max)`` is what A4 (E) uses.

Organisation and timing
-----------------------
Neuron ``j`` is handled by pipeline ``j mod P`` and lives in row ``j div P`` of that
pipeline's memory banks (:class:`~amaranth.lib.memory.Memory`, one synchronous read and one
write port each: E word, I word and θ for ``"EI"``, the C word for ``"C"``). A pass issues
one row of ``P`` neurons per cycle and writes it back :data:`LATENCY` = 7 cycles later:

* stage 0: row address to the banks; the row's ``acc`` taken;
* stage 1: the words read, in registers (no logic after a block RAM's slow output);
  ``acc`` scaled to conductance;
* stage 2: phase-A additions and saturation; driving forces ``E − V``;
* stage 3: ``ge·(E_exc − V)``, ``gi·(E_inh − V)``; the decays of ``ge``, ``gi``, ``x``;
* stage 4: ``cur``, the sum;
* stage 5: ``cur·k_tau``; ``θ·k_theta`` in 18 × 18 partial products;
* stage 6: ``V`` plus the rounded step, clamped; threshold from θ; θ-LUT read; the partial
  products of ``θ·k_theta`` summed and rounded;
* stage 7: spike test, refractory hold, reset; write-back; spikes to the output register.

Rows never meet in flight (each is visited once per pass), so there are no hazards. A pass
takes :func:`step_cycles` ``= ceil(N/P) + 8`` cycles when ``acc`` is always valid, ``spikes``
always ready and no row has more than one spike. Spikes leave one per cycle in ascending
address order and the lanes stall meanwhile: every spike after the first of its row adds a
cycle, and so does each spike of the last row (``done`` waits for them).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2, exact_log2

from ..firmware.config import NetworkConfig
from ..sim.fixed import derive
from .arith import const_mul, tree_sum
from .synapse import MUL_WIDTH

__all__ = [
    "Op",
    "Word",
    "StateAccess",
    "LIFCore",
    "POPULATIONS",
    "LATENCY",
    "exc_layout",
    "inh_layout",
    "cls_layout",
    "step_cycles",
]

#: Population kinds of :class:`LIFCore`.
POPULATIONS = ("EI", "C")

#: Cycles from a row's issue (its read address at the state memory) to its write-back.
LATENCY = 7
#: Stage at which a row's state words enter the datapath (from registers).
_WORD_STAGE = 2


class Op(enum.Enum, shape=2):
    """Work of one pass over the population, latched at ``start``."""

    #: Phase B of one time step (with the per-neuron phase-A additions, see the module).
    STEP = 0
    #: Rest state between images: ``V`` to rest, conductances, counters, traces and spike
    #: bits to 0; θ is kept.
    RESET = 1
    #: θ's decay over one presentation, ``θ −= (θ·k_theta + 2**31) >> 32`` (``"EI"`` only).
    DECAY_THETA = 2


class Word(enum.Enum, shape=2):
    """What the state access port addresses."""

    #: The E word (``"EI"``) or the C word (``"C"``) of neuron ``addr``.
    MAIN = 0
    #: The I word of neuron ``addr`` (``"EI"``).
    INH = 1
    #: θ of E neuron ``addr`` (``"EI"``).
    THETA = 2
    #: The count of I spikes of the last step, ``n_I`` (``"EI"``; ``addr`` is ignored).
    COUNT = 3


def _ref_bits(cfg):
    # A zero-width field cannot be stored; one bit holds a counter that is always 0.
    return max(1, bits_for(cfg.refrac_steps))


def exc_layout(cfg: NetworkConfig) -> data.StructLayout:
    """State word of an E neuron: ``v``, ``ge``, ``gi``, ``ref``, ``x``, ``spiked``."""
    f = cfg.formats
    return data.StructLayout({
        "v": signed(f.v_bits),
        "ge": unsigned(f.g_bits),
        "gi": unsigned(f.g_bits),
        "ref": unsigned(_ref_bits(cfg)),
        "x": unsigned(f.trace_bits),
        "spiked": unsigned(1),
    })


def inh_layout(cfg: NetworkConfig) -> data.StructLayout:
    """State word of an I neuron: ``v``, ``ge``, ``ref``, ``spiked``."""
    f = cfg.formats
    return data.StructLayout({
        "v": signed(f.v_bits),
        "ge": unsigned(f.g_bits),
        "ref": unsigned(_ref_bits(cfg)),
        "spiked": unsigned(1),
    })


def cls_layout(cfg: NetworkConfig) -> data.StructLayout:
    """State word of a C neuron: ``v``, ``ge``, ``x``, ``spiked``."""
    f = cfg.formats
    return data.StructLayout({
        "v": signed(f.v_bits),
        "ge": unsigned(f.g_bits),
        "x": unsigned(f.trace_bits),
        "spiked": unsigned(1),
    })


def step_cycles(n: int, pipelines: int) -> int:
    """Cycles from ``start`` to ``done`` of a pass with a ready consumer and acc producer.

    One cycle to latch the command, ``ceil(n / pipelines)`` issue cycles, :data:`LATENCY`
    cycles to drain, one cycle for ``done``. Add one cycle per spike beyond the first of its
    row, one per spike of the last row, and any back-pressure on ``spikes``.
    """
    return 1 + -(-n // pipelines) + LATENCY + 1


class StateAccess(wiring.Signature):
    """Load and read port of a core's state memories, seen from the initiator.

    Active only while the core is idle (``busy`` low). A word is written in the cycle ``we``
    is high; ``rdata`` shows the word addressed by ``addr`` and ``sel`` in the previous cycle.
    Words are the raw bits of the layouts (:func:`exc_layout` etc.), right-aligned.

    Members
    -------
    addr : ``Out(range(n))``
        Neuron index.
    sel : ``Out(Word)``
        Which word of the neuron.
    we : ``Out(1)``
        Write ``wdata``.
    wdata : ``Out(width)``
    rdata : ``In(width)``
    """

    def __init__(self, n: int, width: int):
        self._n = n
        self._width = width
        super().__init__({
            "addr": Out(range(max(n, 2))),
            "sel": Out(Word),
            "we": Out(1),
            "wdata": Out(width),
            "rdata": In(width),
        })

    def __eq__(self, other):
        return (isinstance(other, StateAccess) and self._n == other._n
                and self._width == other._width)

    def __repr__(self):
        return f"StateAccess({self._n}, {self._width})"


def _mul_shift(x, k: int, shift: int, *, rnd: bool = False):
    """``(x·k + (2**(shift−1) if rnd else 0)) >> shift``, exactly, for a constant ``k ≥ 0``.

    The trailing zero bits of ``k`` are taken out of the multiplier and out of the shift, so
    a power of two costs no multiplier at all and others a narrower one.
    """
    if k == 0:
        return Const(0, 1)
    odd, t = _odd(k)
    prod = x if odd == 1 else x * odd
    if t >= shift:
        # Every discarded bit is zero: the rounding term cannot carry into the result.
        return prod << (t - shift)
    s = shift - t
    return ((prod + (1 << (s - 1))) if rnd else prod) >> s


def _mul_shift_staged(pipe, x, k: int, shift: int, name: str, *, rnd: bool = False):
    """:func:`_mul_shift` over two pipeline stages: the value two registers after ``x``.

    The product is cut into ``MUL_WIDTH × MUL_WIDTH`` partial products of ``x``'s and the
    constant's pieces, each a register right after its DSP; their sum, the rounding and the
    shift take the next stage. Left whole, a product wider than one DSP ends in an adder tree
    behind the DSPs within the same cycle.
    """
    if k == 0:
        return Const(0, 1)
    odd, t = _odd(k)
    if t >= shift:
        return pipe.delay(x * odd, 2, f"{name}_p") << (t - shift)
    s = shift - t
    x = Value.cast(x)
    width = len(x)
    parts = []
    for i in range(0, width, MUL_WIDTH):
        for j in range(0, odd.bit_length(), MUL_WIDTH):
            piece = odd >> j & ((1 << MUL_WIDTH) - 1)
            if piece:
                prod = pipe.reg(x[i:i + MUL_WIDTH] * piece, f"{name}_p{i}_{j}")
                parts.append(prod << (i + j))
    if rnd:
        parts.append(Const(1 << (s - 1)))
    return pipe.reg(tree_sum(parts) >> s, f"{name}_sum")


class LIFCore(wiring.Component):
    """P time-multiplexed LIF pipelines over banked neuron-state memory.

    A pass starts when ``start`` is high while ``busy`` is low; ``op`` (and ``learn``,
    ``teacher``, ``label``, ``fire``) are latched then. Rows of ``P`` neurons are issued one per
    cycle, each row taking one transfer of ``acc``; a row is written back :data:`LATENCY`
    cycles after its issue. The pass ends with a one-cycle ``done`` once every row is written
    and every spike has left on ``spikes``. Cycles per pass: :func:`step_cycles`.

    Parameters
    ----------
    cfg : NetworkConfig
        Network, formats and the default number of pipelines.
    population : str
        ``"EI"`` (``cfg.n_exc`` E neurons with their I partners) or ``"C"``
        (``cfg.n_classes`` C neurons).
    pipelines : int, optional
        Number of pipelines ``P``, a power of two not above the number of neurons;
        ``cfg.pipelines`` by default.

    Members
    -------
    start : ``In(1)``
        Begin a pass (ignored while ``busy``).
    op : ``In(Op)``
        What the pass does.
    learn : ``In(1)``
        ``"EI"``: θ grows by ``theta_lut[θ >> theta_lut_shift]`` on each E spike.
    teacher, label, fire : ``In(1)``, ``In(range(n_classes))``, ``In(1)``
        ``"C"`` only: teacher mode; its spike this step is C neuron ``label`` if ``fire``.
    busy, done : ``Out(1)``
        A pass is running; the pass ended (one cycle).
    acc : ``In(stream.Signature(ArrayLayout(unsigned(acc_bits), P)))``
        Per row, the synaptic accumulators (sums of weight codes) of its ``P`` neurons, lane
        ``p`` for neuron ``row·P + p``; taken by ``Op.STEP`` only. The producer clears them
        as it reads them. Lanes beyond the last neuron are ignored.
    spikes : ``Out(stream.Signature(range(n)))``
        Addresses (AER) of the E (or C) neurons that spiked in this pass, ascending.
    inh_count : ``Out(range(n + 1))``
        ``"EI"``: I spikes of the last step, ``n_I`` (the lateral inhibition of the next).
    access : ``In(StateAccess)``
        Load/read port of the state memories while idle.
    trace_en, trace_row, trace_x : ``Out(P)``, ``Out(row bits)``, ``Out(ArrayLayout(x, P))``
        The traces as the pass writes them back (``Op.STEP`` and ``Op.RESET``), for the trace
        copies of the learning units: in a cycle with ``trace_en[p]`` set, neuron
        ``trace_row·P + p`` now has trace ``trace_x[p]``, the value the row events of the
        next step's phase A read (before the bump). No back-pressure: a write-port view.
    trace_bumped : ``Out(ArrayLayout(x, P))``
        ``"EI"``: with ``trace_x``, ``min(x + trace_inc, trace_max)`` for neurons that spiked
        (else ``x``), the E traces the next step's E→C column events read (after A3).
    """

    def __init__(self, cfg: NetworkConfig, population: str = "EI", *, pipelines=None):
        if not isinstance(cfg, NetworkConfig):
            raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
        if population not in POPULATIONS:
            raise ValueError(f"population must be one of {POPULATIONS}, not {population!r}")
        n = cfg.n_exc if population == "EI" else cfg.n_classes
        if pipelines is None:
            pipelines = cfg.pipelines
        if not isinstance(pipelines, int) or isinstance(pipelines, bool):
            raise TypeError(f"pipelines must be an int, not {pipelines!r}")
        if pipelines < 1 or pipelines & (pipelines - 1):
            raise ValueError(f"pipelines must be a power of two ≥ 1, not {pipelines}")
        if pipelines > n:
            raise ValueError(f"pipelines ({pipelines}) must not exceed the {n} neurons of "
                             f"population {population!r}")
        self._cfg = cfg
        self._k = k = derive(cfg)
        self._pop = population
        self._n = n
        self._p = pipelines
        self._rows = -(-n // pipelines)
        f = cfg.formats

        fan_in = cfg.n_input if population == "EI" else cfg.n_exc
        self._acc_bits = bits_for(fan_in * k.w_max)
        if population == "EI":
            self._layouts = {Word.MAIN: exc_layout(cfg), Word.INH: inh_layout(cfg),
                             Word.THETA: unsigned(f.theta_bits), Word.COUNT: range(n + 1)}
            width = max(exc_layout(cfg).size, inh_layout(cfg).size, f.theta_bits, bits_for(n))
        else:
            self._layouts = {Word.MAIN: cls_layout(cfg)}
            width = cls_layout(cfg).size
        self._width = width

        members = {
            "start": In(1),
            "op": In(Op),
            "busy": Out(1),
            "done": Out(1),
            "acc": In(stream.Signature(data.ArrayLayout(unsigned(self._acc_bits), pipelines))),
            "spikes": Out(stream.Signature(range(max(n, 2)))),
            "access": In(StateAccess(n, width)),
            "trace_en": Out(pipelines),
            "trace_row": Out(max(1, ceil_log2(self._rows))),
            "trace_x": Out(data.ArrayLayout(unsigned(f.trace_bits), pipelines)),
        }
        if population == "EI":
            members["learn"] = In(1)
            members["inh_count"] = Out(range(n + 1))
            members["trace_bumped"] = Out(data.ArrayLayout(unsigned(f.trace_bits), pipelines))
        else:
            members["teacher"] = In(1)
            members["label"] = In(range(max(n, 2)))
            members["fire"] = In(1)
        super().__init__(members)

        # Memories are built here so that tests can reach their contents (``Memory.data``).
        P, rows = pipelines, self._rows
        if population == "EI":
            e_rest = {"v": k.e_v_rest}
            i_rest = {"v": k.i_v_rest}
            self.exc_mem = [memory.Memory(shape=exc_layout(cfg), depth=rows,
                                          init=[e_rest] * rows) for _ in range(P)]
            self.inh_mem = [memory.Memory(shape=inh_layout(cfg), depth=rows,
                                          init=[i_rest] * rows) for _ in range(P)]
            self.theta_mem = [memory.Memory(shape=unsigned(f.theta_bits), depth=rows,
                                            init=[k.theta_init] * rows) for _ in range(P)]
        else:
            self.cls_mem = [memory.Memory(shape=cls_layout(cfg), depth=rows,
                                          init=[{"v": k.i_v_rest}] * rows) for _ in range(P)]

    # ------------------------------------------------------------------ properties
    @property
    def cfg(self) -> NetworkConfig:
        return self._cfg

    @property
    def population(self) -> str:
        return self._pop

    @property
    def n(self) -> int:
        """Number of neurons (E/I pairs for ``"EI"``)."""
        return self._n

    @property
    def pipelines(self) -> int:
        return self._p

    @property
    def rows(self) -> int:
        """Depth of each memory bank, ``ceil(n / pipelines)``."""
        return self._rows

    @property
    def acc_bits(self) -> int:
        return self._acc_bits

    @property
    def word_width(self) -> int:
        """Width of the access port's data."""
        return self._width

    @property
    def layouts(self) -> dict:
        """Shape of each :class:`Word` this population has."""
        return dict(self._layouts)

    def bank(self, kind: Word, j: int):
        """``(memory, row)`` of neuron ``j``'s word ``kind`` (for simulation tests)."""
        mems = {Word.MAIN: self.exc_mem if self._pop == "EI" else self.cls_mem}
        if self._pop == "EI":
            mems[Word.INH] = self.inh_mem
            mems[Word.THETA] = self.theta_mem
        if kind not in mems:
            raise ValueError(f"population {self._pop!r} has no {kind} memory")
        if not 0 <= j < self._n:
            raise ValueError(f"neuron index must be in [0, {self._n}), not {j}")
        return mems[kind][j % self._p], j // self._p

    def pack(self, kind: Word, value) -> int:
        """Raw bits of a word for the access port: a dict of fields or an int."""
        shape = self._layouts[kind]
        if isinstance(shape, data.Layout):
            return shape.const(value).as_value().value
        return int(value)

    def unpack(self, kind: Word, bits: int):
        """A word read from the access port: a dict of fields (layouts) or an int."""
        shape = self._layouts[kind]
        if isinstance(shape, data.Layout):
            c = shape.const(Const(bits, shape.size))
            return {name: int(getattr(c, name)) for name, _ in shape}
        return int(bits)

    # ------------------------------------------------------------------ gateware
    def elaborate(self, platform):
        m = Module()
        k, f = self._k, self._cfg.formats
        P, rows, n = self._p, self._rows, self._n
        lg = exact_log2(P)
        ei = self._pop == "EI"

        # All lanes advance in lock step; only the spike output can stall them. Every lane
        # has a copy of the advance enable of its own (``_replica_``: kept apart by the
        # builds), so that no one net reaches every register of the core.
        adv = Signal()
        lane_adv = [Signal(name=f"adv_{p}") for p in range(P)]
        pipe = _Pipe(m, adv)
        lane_pipe = [_Pipe(m, a) for a in lane_adv]

        # ---------------------------------------------------------------- command
        running = Signal()
        idle = ~running
        op = Signal(Op)
        row = Signal(range(rows + 1))  # next row to issue
        count = Signal(range(n + 1))   # I spikes of this pass
        m.d.comb += self.busy.eq(running)
        with m.If(idle & self.start):
            m.d.sync += [running.eq(1), op.eq(self.op), row.eq(0), count.eq(0)]
        is_step = op == Op.STEP
        if ei:
            learn = Signal()
            inh_count = Signal(range(n + 1))
            # Lateral inhibition g_ie·(n_I − s_I[j]) of this pass: n_I is fixed for the whole
            # pass, so the two values are formed once, at start.
            g_inh = Signal(range(k.g_ie * n + 1))          # partner silent
            g_inh_partner = Signal(range(k.g_ie * n + 1))  # partner spiked (n_I ≥ 1)
            g_all = const_mul(inh_count, k.g_ie)
            with m.If(idle & self.start):
                m.d.sync += [
                    learn.eq(self.learn),
                    g_inh.eq(g_all),
                    g_inh_partner.eq(Mux(inh_count != 0, g_all - k.g_ie, 0)),
                ]
        else:
            teacher = Signal()
            label = Signal.like(self.label)
            fire = Signal()
            with m.If(idle & self.start):
                m.d.sync += [teacher.eq(self.teacher), label.eq(self.label),
                             fire.eq(self.fire)]

        # ---------------------------------------------------------------- issue
        # A row is issued when its accumulators are there (Op.STEP) or at once (other ops).
        rows_left = running & (row < rows)
        issue = rows_left & (self.acc.valid | ~is_step)
        m.d.comb += self.acc.ready.eq(adv & rows_left & is_step)
        with m.If(adv & issue):
            m.d.sync += row.eq(row + 1)
        valid = [pipe.reg(issue, "valid_1")]
        rowd = [pipe.reg(row, "row_1", unsigned(max(1, ceil_log2(rows))))]
        for s in range(2, LATENCY + 1):
            valid.append(pipe.reg(valid[-1], f"valid_{s}"))
            rowd.append(pipe.reg(rowd[-1], f"row_{s}"))
        valid_fin, row_fin = valid[-1], rowd[-1]

        # ---------------------------------------------------------------- memories
        # While idle the memories belong to the access port: reads have one cycle latency,
        # like the pipeline's, and writes go to the bank of the addressed neuron.
        ax = self.access
        ax_bank = ax.addr[:lg] if lg else Const(0, 1)
        ax_row = ax.addr[lg:]
        ax_sel_q = Signal(Word)
        ax_bank_q = Signal.like(ax_bank)
        m.d.sync += [ax_sel_q.eq(ax.sel), ax_bank_q.eq(ax_bank)]
        read_back = {}  # (Word, bank) → word read last cycle

        def ports(mem, name, kind, p, word, we):
            m.submodules[name] = mem
            rp = mem.read_port()
            wp = mem.write_port()
            m.d.comb += [
                rp.addr.eq(Mux(running, row, ax_row)),
                rp.en.eq(Mux(running, lane_adv[p], 1)),
                wp.addr.eq(Mux(running, row_fin, ax_row)),
                wp.data.eq(Mux(running, Value.cast(word), ax.wdata)),
                # A stalled row is written again with the same word, from the last stage's
                # held registers: harmless, and it keeps the stall off the write enables,
                # many LUT RAMs' at N = 400.
                wp.en.eq(Mux(running, we,
                             idle & ax.we & (ax.sel == kind) & (ax_bank == p))),
            ]
            read_back[(kind, p)] = Value.cast(rp.data)
            return lane_pipe[p].reg(rp.data, f"{name}_q", mem.shape)

        # ---------------------------------------------------------------- lanes
        spike_mask, inh_spikes = [], []
        k_w = k.k_w_in if ei else k.k_w_ec
        for p in range(P):
            j_fin = Cat(Const(p, lg), row_fin) if lg else row_fin
            # Lanes of the last row beyond the last neuron exist in the banks but not in the
            # population: they neither write nor spike.
            lane_ok = valid_fin & (j_fin < n)
            # The lane's synaptic input as conductance, ((acc·k_w + 2**15) >> 16), formed in
            # stage 1 from the registered ``acc`` so that it meets the state word in stage 2.
            acc = lane_pipe[p].reg(self.acc.payload[p], f"acc_{p}")
            g_add = lane_pipe[p].reg(_mul_shift(acc, k_w, 16, rnd=True), f"g_add_{p}")
            if ei:
                e_out = Signal(exc_layout(self._cfg), name=f"e{p}_out")
                i_out = Signal(inh_layout(self._cfg), name=f"i{p}_out")
                theta_out = Signal(f.theta_bits, name=f"theta{p}_out")
                theta_we = Signal(name=f"theta{p}_we")
                state_we = lane_ok & (op != Op.DECAY_THETA)
                e = ports(self.exc_mem[p], f"exc_{p}", Word.MAIN, p, e_out, state_we)
                i = ports(self.inh_mem[p], f"inh_{p}", Word.INH, p, i_out, state_we)
                theta = ports(self.theta_mem[p], f"theta_{p}", Word.THETA, p, theta_out,
                              theta_we)
                spk_e, spk_i = self._lane_ei(
                    m, lane_pipe[p], f"{p}", e, i, theta, g_add,
                    Mux(i.spiked, g_inh_partner, g_inh), lane_ok, op, learn,
                    e_out, i_out, theta_out, theta_we)
                spike_mask.append(spk_e)
                inh_spikes.append(spk_i)
                x_out, spiked_out = e_out.x, e_out.spiked
            else:
                c_out = Signal(cls_layout(self._cfg), name=f"c{p}_out")
                c = ports(self.cls_mem[p], f"cls_{p}", Word.MAIN, p, c_out,
                          lane_ok & (op != Op.DECAY_THETA))
                spike_mask.append(self._lane_c(
                    m, lane_pipe[p], f"{p}", c, g_add, lane_ok, op, teacher,
                    fire & (j_fin == label), c_out))
                x_out, spiked_out = c_out.x, c_out.spiked
            # The traces as written back, for the learning units' copies (see ``trace_x``).
            m.d.comb += [
                self.trace_en[p].eq(running & adv & lane_ok & (op != Op.DECAY_THETA)),
                self.trace_x[p].eq(x_out),
            ]
            if ei:
                m.d.comb += self.trace_bumped[p].eq(
                    Mux(spiked_out, _sat(x_out + k.trace_inc, k.trace_max), x_out))
        m.d.comb += self.trace_row.eq(row_fin)

        # ---------------------------------------------------------------- access reads
        rdata = Signal(self._width)
        with m.Switch(ax_sel_q):
            for kind in self._layouts:
                with m.Case(kind):
                    if kind == Word.COUNT:
                        m.d.comb += rdata.eq(inh_count)
                        continue
                    with m.Switch(ax_bank_q):
                        for p in range(P):
                            with m.Case(p):
                                m.d.comb += rdata.eq(read_back[(kind, p)])
        m.d.comb += ax.rdata.eq(rdata)
        if ei:
            m.d.comb += self.inh_count.eq(inh_count)
            with m.If(idle & ax.we & (ax.sel == Word.COUNT)):
                m.d.sync += inh_count.eq(ax.wdata)

        # ---------------------------------------------------------------- spike output
        # A row's spikes wait in `pending` and leave lowest lane first, so the addresses of a
        # pass come out ascending. The lanes advance when `pending` is free next cycle.
        # Whether `pending` is empty or holds at most one spike are registers of their own,
        # set with it, a pair for each copy of `adv`, so that every copy is one gate from
        # registers and the consumer's `ready` (itself a register in the router).
        pending = Signal(P)
        pending_row = Signal.like(row_fin)
        none_pending = [Signal(init=1, name=f"none_pending_replica_{c}") for c in range(P + 1)]
        one_at_most = [Signal(init=1, name=f"one_at_most_replica_{c}") for c in range(P + 1)]
        lowest = Signal(range(max(P, 2)))
        for p in reversed(range(P)):
            with m.If(pending[p]):
                m.d.comb += lowest.eq(p)
        others = pending & (pending - 1)
        m.d.comb += [
            self.spikes.valid.eq(~none_pending[P]),
            self.spikes.payload.eq(Cat(lowest[:lg], pending_row) if lg else pending_row),
        ]
        for a, none, one in zip([*lane_adv, adv], none_pending, one_at_most):
            m.d.comb += a.eq(one & (none | self.spikes.ready))
        pending_next = Signal(P)
        m.d.comb += pending_next.eq(pending)
        with m.If(self.spikes.valid & self.spikes.ready):
            m.d.comb += pending_next.eq(others)
        with m.If(adv):
            m.d.comb += pending_next.eq(Cat(*spike_mask))
            m.d.sync += pending_row.eq(row_fin)
        none_next = pending_next == 0
        one_next = (pending_next & (pending_next - 1)) == 0
        m.d.sync += pending.eq(pending_next)
        for none, one in zip(none_pending, one_at_most):
            m.d.sync += [none.eq(none_next), one.eq(one_next)]
        if ei:
            with m.If(adv & valid_fin):
                m.d.sync += count.eq(count + sum(inh_spikes, Const(0, range(P + 1))))

        # ---------------------------------------------------------------- end of pass
        drained = (row == rows) & ~Cat(*valid).any() & none_pending[P]
        m.d.comb += self.done.eq(running & drained)
        with m.If(running & drained):
            m.d.sync += running.eq(0)
            if ei:
                with m.If(op == Op.STEP):
                    m.d.sync += inh_count.eq(count)
                with m.Elif(op == Op.RESET):
                    m.d.sync += inh_count.eq(0)
        return m

    def _lane_ei(self, m, pipe, name, e, i, theta1, g_add, g_inh, lane_ok, op, learn,
                 e_out, i_out, theta_out, theta_we):
        """One E/I pair per cycle: stage-2 words in, stage-7 words and spikes out."""
        k, f, cfg = self._k, self._cfg.formats, self._cfg
        last = LATENCY - _WORD_STAGE  # registers from the words' stage to the final one
        is_step = op == Op.STEP

        # ---- E: the phase-A additions (acc, lateral inhibition, trace bump), then B.
        ge = _sat(e.ge + g_add, k.g_max)
        gi = _sat(e.gi + g_inh, k.g_max)
        vn, ge_dec, gi_dec = self._membrane(pipe, f"e{name}", e.v, ge, gi, k.e_v_rest,
                                            k.k_tau_e, k.e_v_floor)
        x_dec = self._trace(pipe, f"e{name}", e.x, e.spiked)
        v_old = pipe.delay(e.v, last, f"e{name}_v")
        ref = pipe.delay(e.ref, last, f"e{name}_ref")
        # θ waits until stage 6, where it gives the threshold, the LUT address and the decay;
        # the decay's product starts a stage earlier so that no adder follows its DSPs.
        theta4 = pipe.delay(theta1, last - 2, f"e{name}_theta")
        theta5 = pipe.reg(theta4, f"e{name}_theta5")
        theta6 = pipe.reg(theta5, f"e{name}_theta6")
        thresh = pipe.reg((theta5 >> (f.theta_frac - f.v_frac)) + k.e_thresh_offset,
                          f"e{name}_thresh6")
        theta_loss = _mul_shift_staged(pipe, theta4, k.k_theta, 32, f"e{name}_loss", rnd=True)
        lut = memory.Memory(shape=unsigned(f.theta_bits), depth=len(k.theta_lut),
                            init=k.theta_lut)
        m.submodules[f"theta_lut_{name}"] = lut
        lut_rp = lut.read_port()
        m.d.comb += [lut_rp.addr.eq(theta5 >> k.theta_lut_shift), lut_rp.en.eq(pipe.adv)]

        free = ref == 0
        spike_e = lane_ok & is_step & free & (vn > thresh)
        with m.If(op == Op.RESET):
            m.d.comb += e_out.v.eq(k.e_v_rest)
        with m.Else():
            m.d.comb += [
                e_out.v.eq(Mux(spike_e, k.e_v_reset, Mux(free, vn, v_old))),
                e_out.ge.eq(ge_dec),
                e_out.gi.eq(gi_dec),
                e_out.ref.eq(Mux(spike_e, cfg.refrac_steps, Mux(free, 0, ref - 1))),
                e_out.x.eq(x_dec),
                e_out.spiked.eq(spike_e),
            ]
        with m.If(op == Op.DECAY_THETA):
            m.d.comb += [theta_out.eq(theta6 - theta_loss), theta_we.eq(lane_ok)]
        with m.Else():
            m.d.comb += [theta_out.eq(_sat(theta6 + lut_rp.data, k.theta_max)),
                         theta_we.eq(spike_e & learn)]

        # ---- I: the E→I drive of its partner's last spike (A2), then B.
        ge_i = _sat(i.ge + Mux(e.spiked, k.g_ei, 0), k.g_max)
        vn_i, ge_i_dec, _ = self._membrane(pipe, f"i{name}", i.v, ge_i, None, k.i_v_rest,
                                           k.k_tau_i, k.v_min)
        v_i_old = pipe.delay(i.v, last, f"i{name}_v")
        ref_i = pipe.delay(i.ref, last, f"i{name}_ref")
        free_i = ref_i == 0
        spike_i = lane_ok & is_step & free_i & (vn_i > k.i_thresh)
        with m.If(op == Op.RESET):
            m.d.comb += i_out.v.eq(k.i_v_rest)
        with m.Else():
            m.d.comb += [
                i_out.v.eq(Mux(spike_i, k.i_v_reset, Mux(free_i, vn_i, v_i_old))),
                i_out.ge.eq(ge_i_dec),
                i_out.ref.eq(Mux(spike_i, cfg.refrac_steps, Mux(free_i, 0, ref_i - 1))),
                i_out.spiked.eq(spike_i),
            ]
        return spike_e, spike_i

    def _lane_c(self, m, pipe, name, c, g_add, lane_ok, op, teacher, taught, c_out):
        """One C neuron per cycle; ``taught``: the teacher's spike is this neuron's."""
        k = self._k
        last = LATENCY - _WORD_STAGE
        is_step = op == Op.STEP
        ge = _sat(c.ge + g_add, k.g_max)
        vn, ge_dec, _ = self._membrane(pipe, f"c{name}", c.v, ge, None, k.i_v_rest, k.k_tau_i,
                                       k.v_min)
        x_dec = self._trace(pipe, f"c{name}", c.x, c.spiked)
        v_old = pipe.delay(c.v, last, f"c{name}_v")
        # Teacher mode leaves V and ge as they were, undecayed.
        ge_old = pipe.delay(c.ge, last, f"c{name}_ge")
        spike_lif = lane_ok & is_step & (vn > k.i_thresh)
        spike_t = lane_ok & is_step & taught
        with m.If(op == Op.RESET):
            m.d.comb += c_out.v.eq(k.i_v_rest)
        with m.Elif(teacher):
            m.d.comb += [c_out.v.eq(v_old), c_out.ge.eq(ge_old), c_out.x.eq(x_dec),
                         c_out.spiked.eq(spike_t)]
        with m.Else():
            m.d.comb += [c_out.v.eq(Mux(spike_lif, k.i_v_reset, vn)), c_out.ge.eq(ge_dec),
                         c_out.x.eq(x_dec), c_out.spiked.eq(spike_lif)]
        return Mux(teacher, spike_t, spike_lif)

    def _trace(self, pipe, name, x1, bump):
        """Trace bump of the last step's spike (stage 2), then the decay: stage 7 value."""
        k, f = self._k, self._cfg.formats
        x = _sat(x1 + Mux(bump, k.trace_inc, 0), k.trace_max)
        x2 = pipe.reg(x, f"{name}_x2", unsigned(f.trace_bits))
        x3 = pipe.reg(_mul_shift(x2, k.k_trace, f.const_frac), f"{name}_x3",
                      unsigned(f.trace_bits))
        return pipe.delay(x3, LATENCY - _WORD_STAGE - 2, f"{name}_x")

    def _membrane(self, pipe, name, v1, ge1, gi1, rest, k_tau, v_lo):
        """Conductance-based membrane update, stage 2 → 7.

        ``v1`` and the conductances ``ge1``, ``gi1`` (``None``: no inhibitory synapse) after
        their phase-A additions are stage-2 values. Returns, at stage 7, ``vn`` (the clamped
        new potential, before the refractory hold and the spike test) and the decayed
        conductances. Multipliers (default formats): ``ge·(E_exc − V)`` and
        ``gi·(E_inh − V)`` 19×18 in stage 3, the decays ``g·k_g`` 19×16 in stage 3;
        ``cur·k_tau`` in stage 5 is shifted adds.
        """
        k, f = self._k, self._cfg.formats
        gf, cf = f.g_frac, f.const_frac
        has_gi = gi1 is not None
        # Stage 1 → 2: saturated conductances and the driving forces.
        ge2 = pipe.reg(ge1, f"{name}_ge2", unsigned(f.g_bits))
        d_exc2 = pipe.reg(k.e_rev_exc - v1, f"{name}_dexc2")
        d_rest2 = pipe.reg(rest - v1, f"{name}_drest2")
        if has_gi:
            gi2 = pipe.reg(gi1, f"{name}_gi2", unsigned(f.g_bits))
            d_inh2 = pipe.reg(k.e_rev_inh - v1, f"{name}_dinh2")
        # Stage 2 → 3: the products and the decays.
        p_exc3 = pipe.reg(ge2 * d_exc2, f"{name}_pexc3")
        ge_dec3 = pipe.reg(_mul_shift(ge2, k.k_ge, cf), f"{name}_gedec3", unsigned(f.g_bits))
        d_rest3 = pipe.reg(d_rest2, f"{name}_drest3")
        if has_gi:
            p_inh3 = pipe.reg(gi2 * d_inh2, f"{name}_pinh3")
            gi_dec3 = pipe.reg(_mul_shift(gi2, k.k_gi, cf), f"{name}_gidec3",
                               unsigned(f.g_bits))
        # Stage 3 → 4: cur = (V_rest − V)·2**g_frac + Σ g·(E − V).
        cur = (d_rest3 << gf) + p_exc3
        if has_gi:
            cur = cur + p_inh3
        cur4 = pipe.reg(cur, f"{name}_cur4")
        # Stage 4 → 5: cur·dt/τm without k_tau's trailing zero bits, in shifted adds: cur
        # is about 39 bits wide, three DSPs a neuron lane, and the odd part of k_tau has few
        # signed digits (E: 41 = 2⁵ + 2³ + 2⁰).
        odd, tz = _odd(k_tau)
        prod5 = pipe.reg(const_mul(cur4, odd), f"{name}_prod5")
        v5 = pipe.delay(v1, 4, f"{name}_v")
        # Stage 5 → 6: rounded, added, clamped (E: floored at −100 mV; I, C: the word's range).
        shift = gf + cf - tz
        dv = (prod5 + (1 << (shift - 1))) >> shift
        vs = v5 + dv
        vn6 = pipe.reg(Mux(vs < v_lo, v_lo, Mux(vs > k.v_max, k.v_max, vs)), f"{name}_vn6",
                       signed(f.v_bits))
        ge6 = pipe.delay(ge_dec3, 3, f"{name}_ge")
        gi6 = pipe.delay(gi_dec3, 3, f"{name}_gi") if has_gi else None
        return vn6, ge6, gi6


def _odd(k: int):
    """``(odd, t)`` with ``k = odd · 2**t``."""
    t = (k & -k).bit_length() - 1
    return k >> t, t


def _sat(x, hi: int):
    return Mux(x > hi, hi, x)


class _Pipe:
    """Registers of the lock-step lanes, clocked only when the lanes advance."""

    def __init__(self, m, adv):
        self.m = m
        self.adv = adv

    def reg(self, expr, name, shape=None):
        # Without an explicit shape a register takes its expression's, so no intermediate
        # result is ever truncated; explicit shapes narrow values known to be in range.
        expr = Value.cast(expr)
        sig = Signal(shape if shape is not None else expr.shape(), name=name)
        with self.m.If(self.adv):
            self.m.d.sync += sig.eq(expr)
        return sig

    def delay(self, expr, stages, name):
        for s in range(stages):
            expr = self.reg(expr, f"{name}_{s + 1}")
        return expr
