"""Plastic synapse memory with its sym-STDP update datapath (one plastic projection).

One :class:`SynapseMemory` holds the ``R × C`` weight codes of a plastic projection —
input→E (``R = 784`` rows, one per input, ``C = N`` columns, one per E neuron) or E→C
(``R = N``, ``C = 10``) — and performs, ``L`` synapses per cycle, the three things phase A of
a time step does to them (``docs/formats.md``, "One time step", A1, A2 and A4), and the
synaptic scaling of a column (``docs/formats.md``, "Presentation of an image", 1):

* a **row event** ``ROW(i, word)`` for a pre-synaptic spike: every old weight ``w[i, j]`` goes
  out on the ``acc`` stream for the post-synaptic accumulators, and the row is pre-updated
  ``w[i, j] = clip(w[i, j] ± Δ(x_post[j], eta_pre), 0, 2**B − 1)`` (``+`` for sym-STDP, ``−``
  for the asymmetric rule), in one read-modify-write per synapse. ``ACC(i)`` is the same
  without learning (test mode);
* a **column event** ``COL(j, word)`` for a post-synaptic spike:
  ``w[i, j] = min(w[i, j] + Δ(x_pre[i], eta_post), 2**B − 1)`` for every row ``i``;
* a **scaling event** ``SCALE(j, factor, word)``, one column of a scaling pass (driven by
  :class:`~symspike.hdl.scaling.ScalingUnit`):
  ``w[i, j] = min((w[i, j]·factor + r[i]) >> recip_frac, 2**B − 1)`` for every row ``i``;
* **host access**: ``READ(i, j)`` and ``WRITE(i, j, value)`` of single weight codes.

``Δ(x, eta)`` is the golden model's (``sim/golden_kernel.py``: ``_delta``, ``_pre_update``):
with stochastic rounding ``((x·eta >> (w_shift − sr)) + dither) >> sr``, the dither of synapse
index ``k`` (the column ``j`` in a row event, the row ``i`` in a column event) being
``(word ^ hash[k]) & (2**sr − 1)`` with ``hash = dither_hash`` of ``sim/rng.py``; without it
``(x·eta + 2**(w_shift − 1)) >> w_shift``. ``word`` is the event's word, drawn by whoever owns
the event stream and carried in the request.

``SCALE`` is the golden model's ``scale_columns`` for one column: ``r[i]`` is the dither of
row ``i``, ``((word ^ hash[i]) & (2**sr − 1)) << (recip_frac − sr)``, with stochastic rounding
and one half, ``2**(recip_frac − 1)``, without. The ``factor`` field has ``B + recip_frac``
bits: a larger factor gives every non-zero weight ``2**B − 1`` whatever its excess, so the
factor's producer saturates it at ``2**(B + recip_frac) − 1`` without changing the result. A
``factor`` of 0 leaves the column as it is (the golden model skips such a column).

Skewed bank layout
------------------
A row event touches one row, a column event one column: both must find ``L`` synapses in
``L`` different banks every cycle. Synapse ``(i, j)`` lies in bank ``(i + j) mod L`` at address
``i · CB + j div L``, ``CB = ceil(C / L)`` (so each bank is ``R · CB`` words deep; columns are
padded to a multiple of ``L``, rows are not). For ``R = 4``, ``C = 8``, ``L = 4``::

               bank 0  bank 1  bank 2  bank 3
    address 0  (0,0)   (0,1)   (0,2)   (0,3)     row 0, columns 0-3
    address 1  (0,4)   (0,5)   (0,6)   (0,7)     row 0, columns 4-7
    address 2  (1,3)   (1,0)   (1,1)   (1,2)     row 1: rotated by 1
    address 3  (1,7)   (1,4)   (1,5)   (1,6)
    address 4  (2,2)   (2,3)   (2,0)   (2,1)     row 2: rotated by 2
    address 5  (2,6)   (2,7)   (2,4)   (2,5)
    address 6  (3,1)   (3,2)   (3,3)   (3,0)     row 3: rotated by 3
    address 7  (3,5)   (3,6)   (3,7)   (3,4)

*Row* ``i``, chunk ``k`` (columns ``kL … kL+L−1``): one address, ``i·CB + k``, in every bank;
column ``kL + s`` is in bank ``(s + i) mod L``. *Column* ``j``, chunk ``m`` (rows
``mL … mL+L−1``): row ``mL + s`` is in bank ``(s + j) mod L`` at address
``(mL + s)·CB + j div L`` (column 1 above: ``(0,1)`` bank 1, ``(1,1)`` bank 2, ``(2,1)`` bank 3,
``(3,1)`` bank 0). The datapath works in *slot order* (slot ``s`` is column ``kL + s``, or row
``mL + s``) and a barrel rotator by ``i mod L`` (rows) or ``j mod L`` (columns) maps slots to
banks and back. A row event takes ``CB`` cycles, a column event ``RB = ceil(R / L)``; only the
padding lanes of the last chunk are idle; ``SCALE`` walks a column as ``COL`` does.
:meth:`SynapseMemory.locate` gives the place of a synapse.

Pipeline
--------
Requests issue one chunk per cycle, back to back across requests::

    S0  trace read (chunk's L traces); dither from word and hash; a SCALE reads its
        weights (per-bank addresses held in registers)
    S1  each lane's multiplier, in bank order: its trace, or for SCALE the weight just
        read; the multiplicand (learning rate, or the factor for SCALE); a row's bank
        address gets its ``row · CB`` (S0 holds only the chunk's offset in the row)
    S2  L products, x·eta, or w·factor for SCALE (one 18 × 18 multiplier per lane for
        the multiplicand's low 18 bits, logic for the rest)
    S3  from the registered products: Δ = rounding of x·eta saturated at w_max, or for
        SCALE the scaled weight; weight read (other kinds)
    S4  the banks' outputs into registers
    S5  w_new = clip(w_old ± Δ), the WRITE's value or the scaled weight; weight write;
        old weights to the output registers; Δw = w_new − w_old and the first levels of
        their sum (groups of banks); column-sum read
    S6  column-sum write (+ Δw of the slot, or + Σ Δw for a column)

From S1 on, lane ``b`` works on bank ``b``'s synapse, so the read-modify-write of a weight
(read at the end of S3, held in a register through S4, written at the end of S5) is an
adder, a clip and a multiplexer between a register and the bank's input, with no rotator
and no multiplier in the loop: the products are taken two stages earlier, and rounded a
stage earlier, from registers, and no block RAM's output meets logic before a register. The
banks' read ports are transparent to their write ports, so a chunk reading a synapse in the
cycle it is written gets the new value; the chunk one stage behind a write read it a cycle
earlier, and its S4 register takes the value being written instead (forwarding). There is
no read-after-write hazard and no stall between requests, even for the same synapse; the
column sums' read-modify-write (S5→S6) works with the transparent port alone.

A ``SCALE`` reads its weights in S0, three cycles earlier than the other kinds, so that its
product, too, comes from a register. Its first chunk therefore waits in S0 until the chunks
ahead of it in S1 to S4 are ``SCALE`` chunks of other columns (or none): a ``SCALE`` after
any other kind waits four cycles, a run of ``SCALE`` requests of different columns (a scaling
pass) flows without a bubble, and the kinds after a ``SCALE`` follow it at once. The wait is
decided from the stages' registers alone; ``req.ready`` does not depend on the request.
Otherwise the pipeline never stalls: every stage advances every cycle, and the ``acc`` and
``rdata`` outputs end in spill registers (:class:`~symspike.hdl.spill.SpillRegister`) that
hold what their consumers do not take at once. A chunk that makes an output beat issues only
while that output's queue has room for it and for every beat already in the stages behind
S0, so no beat is ever refused; with consumers that take every beat, the outputs are plain
registers and no chunk waits. No enable reaches the stages' registers and memory ports from
the consumers' ``ready``.

Traces
------
The traces live in two memories of this unit, banked as the slots are (entry ``k`` in lane
``k mod L``, row ``k div L``), so that a chunk's ``L`` traces are one read: ``x_pre`` (``R``
entries, read by column events) and ``x_post`` (``C`` entries, read by row events). The
neuron side writes them through :class:`TraceWrite` ports, up to ``L`` entries of one row per
cycle. A chunk reads its traces when it issues (S0): writes made before a request is
accepted are seen by all of it; a request's traces must not change while it runs. Which
value each phase needs is the sequencer's business (formats.md: input→E rows use the E traces
*before* the step's bump, its columns the input traces bumped in A1; E→C rows the C traces
before the bump, E→C columns the E traces bumped in A3).

Column sums
-----------
Every write adds its ``Δw = w_new − w_old`` to the sum of its column (``L`` columns per cycle
in a row event, the sum of the chunk's ``L`` increments in a column event or a ``SCALE``),
so the register file ``sums[j] = Σ_i w[i, j]`` is always exact for the synaptic-scaling unit,
with no summing pass, and stays exact through the scaling itself. It is read through
``sum_addr`` / ``sum_data`` (one cycle latency; exact while ``busy`` is low, and for a column
that no request in the pipeline writes: the scaling unit reads column ``j + 1``'s sum while
``SCALE(j)`` runs).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from ..firmware.config import NetworkConfig
from ..sim.fixed import derive
from ..sim.rng import dither_hash
from .spill import SpillRegister

__all__ = [
    "PROJECTIONS",
    "WORD_BITS",
    "LATENCY",
    "Op",
    "RequestLayout",
    "AccLayout",
    "TraceWrite",
    "SynapseMemory",
]

#: Plastic projections: ``"in"`` (input→E, 784 × N) and ``"ec"`` (E→C, N × 10).
PROJECTIONS = ("in", "ec")
#: Width of an event word (the upper half of a xorshift32 state).
WORD_BITS = 16
#: Cycles from a request's acceptance to its first ``acc``/``rdata`` beat (with a ready
#: sink); its last weight is written ``LATENCY − 1`` cycles after its last chunk issued.
LATENCY = 7
#: Beats each output's spill queue holds: at least the beats a chunk issued in S0 and those in
#: the stages behind it can bring (``LATENCY − 1``), whatever the consumer does.
SPILL_DEPTH = 8
#: Operand width of the lane multipliers: the ECP5's ``MULT18X18D`` is 18 × 18; the bits of a
#: wider multiplicand are multiplied in logic.
MUL_WIDTH = 18
#: The multiplier of the dither hash (``dither_hash(k) = top bits of k · HASH_MUL mod 2**32``).
_HASH_MUL = int(dither_hash(2, 32)[1])
_MASK32 = (1 << 32) - 1


class Op(enum.Enum, shape=4):
    """Request kinds of :class:`SynapseMemory`. Codes 5–7 and 9–15 are reserved and do
    nothing (one cycle each)."""

    #: Row ``row``: old weights to ``acc``, no learning (test mode). ``CB`` cycles.
    ACC = 0
    #: Row ``row``: old weights to ``acc`` and the pre-update with ``x_post`` and ``word``.
    ROW = 1
    #: Column ``col``: the post-update with ``x_pre`` and ``word``. ``RB`` cycles.
    COL = 2
    #: Weight ``(row, col)`` to ``rdata``. One cycle.
    READ = 3
    #: Weight ``(row, col)`` = ``wdata`` (and its column sum follows). One cycle.
    WRITE = 4
    #: Column ``col``: synaptic scaling by ``factor`` with ``word``'s dither. ``RB`` cycles.
    SCALE = 8


def _silence(elaboratable):
    # A constructor that rejects its arguments leaves an object nobody can use: without this
    # Amaranth would later warn that it was "created but never used".
    elaboratable._MustUse__silence = True


def _index_shape(n: int):
    return range(max(n, 2))


class RequestLayout(data.StructLayout):
    """Payload of the request stream.

    Fields
    ------
    op : ``Op``
        What to do.
    row : ``range(R)``
        Row ``i`` (``ACC``, ``ROW``, ``READ``, ``WRITE``).
    col : ``range(C)``
        Column ``j`` (``COL``, ``SCALE``, ``READ``, ``WRITE``).
    word : ``unsigned(16)``
        The event's random word (``ROW``, ``COL``, ``SCALE``); its low ``sr`` bits are used.
    wdata : ``unsigned(B)``
        The weight code of a ``WRITE``.
    factor : ``unsigned(B + recip_frac)``
        The scaling factor of a ``SCALE``, ``recip_frac`` fraction bits.

    Parameters
    ----------
    rows, cols : int
        ``R`` and ``C``.
    weight_bits : int
        ``B``.
    recip_frac : int, optional
        Fraction bits of the scaling factor (the formats' default, 16, if omitted).
    """

    def __init__(self, rows: int, cols: int, weight_bits: int, recip_frac: int = 16):
        super().__init__({
            "op": Op,
            "row": _index_shape(rows),
            "col": _index_shape(cols),
            "word": unsigned(WORD_BITS),
            "wdata": unsigned(weight_bits),
            "factor": unsigned(weight_bits + recip_frac),
        })


class AccLayout(data.StructLayout):
    """Payload of the accumulation stream: one chunk of a row's old weights.

    Fields
    ------
    row : ``range(R)``
        The row ``i``.
    col : ``range(C)``
        First column of the chunk, a multiple of ``L``.
    weights : ``ArrayLayout(unsigned(B), L)``
        ``weights[s]`` is ``w[row, col + s]`` before the update.
    mask : ``unsigned(L)``
        Bit ``s`` set when ``col + s < C`` (the last chunk may be partial).
    last : ``unsigned(1)``
        Last chunk of the row.
    """

    def __init__(self, rows: int, cols: int, lanes: int, weight_bits: int):
        super().__init__({
            "row": _index_shape(rows),
            "col": _index_shape(cols),
            "weights": data.ArrayLayout(unsigned(weight_bits), lanes),
            "mask": unsigned(lanes),
            "last": unsigned(1),
        })


class TraceWrite(wiring.Signature):
    """Write port of a trace memory, seen from the writer (the neuron side).

    Entry ``k`` lies in lane ``k mod L`` of row ``k div L``; one cycle writes the lanes of
    ``addr`` whose ``en`` bit is set (a single trace: ``addr = k div L``, ``en = 1 << k mod
    L``, ``data[k mod L] = x``).

    Members
    -------
    addr : ``Out(range(ceil(entries / L)))``
        Row of the trace memory.
    data : ``Out(ArrayLayout(unsigned(trace_bits), L))``
        Traces, lane by lane.
    en : ``Out(L)``
        Write enable of each lane.
    """

    def __init__(self, entries: int, lanes: int, trace_bits: int):
        self._entries, self._lanes, self._bits = entries, lanes, trace_bits
        super().__init__({
            "addr": Out(_index_shape(-(-entries // lanes))),
            "data": Out(data.ArrayLayout(unsigned(trace_bits), lanes)),
            "en": Out(lanes),
        })

    def __eq__(self, other):
        return (isinstance(other, TraceWrite) and
                (self._entries, self._lanes, self._bits) ==
                (other._entries, other._lanes, other._bits))

    def __repr__(self):
        return f"TraceWrite({self._entries}, {self._lanes}, {self._bits})"


def _lanes(value, n):
    """The ``n`` lanes of an array-like value as plain values."""
    return [Value.cast(value[k]) for k in range(n)]


def _rotate_up(lanes, amount, lg):
    """``out[b] = lanes[(b − amount) mod L]`` as a barrel of ``log2 L`` mux levels: slot
    order to bank order."""
    n = len(lanes)
    cur = list(lanes)
    for t in range(min(lg, len(Value.cast(amount)))):   # missing high bits are zero
        d = 1 << t
        cur = [Mux(amount[t], cur[(b - d) % n], cur[b]) for b in range(n)]
    return cur


def _rotate_down(lanes, amount, lg):
    """``out[s] = lanes[(s + amount) mod L]``: bank order to slot order."""
    n = len(lanes)
    cur = list(lanes)
    for t in range(min(lg, len(Value.cast(amount)))):
        d = 1 << t
        cur = [Mux(amount[t], cur[(s + d) % n], cur[s]) for s in range(n)]
    return cur


def _kept_tree(m, parts, name):
    """The sum of ``parts`` as a balanced tree of two-input adders, each result a signal of
    its own. Kept apart: Yosys would otherwise merge the tree into one multi-operand sum and
    build it from full adders in LUTs (about twice the logic) instead of carry chains."""
    level = 0
    while len(parts) > 1:
        sums = []
        for i in range(0, len(parts) - 1, 2):
            total = parts[i] + parts[i + 1]
            sig = Signal(total.shape(), name=f"{name}_{level}_{i // 2}", attrs={"keep": 1})
            m.d.comb += sig.eq(total)
            sums.append(sig)
        parts = sums + parts[len(parts) & ~1:]
        level += 1
    return parts[0]


class SynapseMemory(wiring.Component):
    """Banked weight memory of one plastic projection with its sym-STDP datapath.

    See the module documentation for the layout, the pipeline and the traces.

    Parameters
    ----------
    cfg : NetworkConfig
        Network, formats (``weight_bits``, stochastic rounding, trace and learning-rate
        fractions), learning rule (``rule``) and default lane count (``lanes``).
    projection : str
        ``"in"`` (input→E: ``R = 784``, ``C = n_exc``, learning rates ``eta_in``) or
        ``"ec"`` (E→C: ``R = n_exc``, ``C = 10``, ``eta_ec``).
    lanes : int, optional
        Synapses read-modified-written per cycle, ``L``: a power of two, ``cfg.lanes`` by
        default.
    rows, cols : int, optional
        Override ``R`` and ``C`` (a projection of another size with the same formats).

    Members
    -------
    req : ``In(stream.Signature(RequestLayout))``
        Requests (:class:`Op`), taken back to back: a new one is accepted in the cycle its
        predecessor issues its last chunk (a ``SCALE`` after another kind then waits four
        cycles before it issues, see "Pipeline"). Indices must be in range.
    acc : ``Out(stream.Signature(AccLayout))``
        ``ACC`` and ``ROW``: one beat per chunk of the row, ``CB`` per request, old weights in
        column order.
    rdata : ``Out(stream.Signature(unsigned(B)))``
        ``READ``: the weight code.
    pre_trace : ``In(TraceWrite(R, L, trace_bits))``
        Writes of the pre-synaptic traces ``x_pre`` (read by ``COL``).
    post_trace : ``In(TraceWrite(C, L, trace_bits))``
        Writes of the post-synaptic traces ``x_post`` (read by ``ROW``).
    eta_pre : ``In(eta_bits)``
        Learning rate of row events in weight LSBs with ``eta_frac`` fraction bits; by
        default (undriven) the configuration's ``eta`` (``eta_dep`` for the asymmetric rule).
        Sampled per chunk; change it only while idle.
    eta_post : ``In(eta_bits)``
        Learning rate of column events (default ``eta``).
    sum_addr : ``In(range(C))``
        Column whose weight sum to read.
    sum_data : ``Out(sum_bits)``
        ``Σ_i w[i, sum_addr]`` of the previous cycle's ``sum_addr``.
    busy : ``Out(1)``
        A request is in the pipeline or a beat waits on an output stream.
    """

    def __init__(self, cfg: NetworkConfig, projection: str = "in", *, lanes=None, rows=None,
                 cols=None):
        try:
            if not isinstance(cfg, NetworkConfig):
                raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
            if not isinstance(projection, str):
                raise TypeError(f"projection must be a str, not {projection!r}")
            if projection not in PROJECTIONS:
                raise ValueError(f"projection must be one of {PROJECTIONS}, not "
                                 f"{projection!r}")
            if projection == "in":
                shape = (cfg.n_input, cfg.n_exc)
            else:
                shape = (cfg.n_exc, cfg.n_classes)
            lanes = cfg.lanes if lanes is None else lanes
            rows = shape[0] if rows is None else rows
            cols = shape[1] if cols is None else cols
            for name, value in (("lanes", lanes), ("rows", rows), ("cols", cols)):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"{name} must be an int, not {value!r}")
                if value < 1:
                    raise ValueError(f"{name} must be ≥ 1, not {value}")
            if lanes & (lanes - 1):
                raise ValueError(f"lanes must be a power of two, not {lanes}")
        except (TypeError, ValueError):
            _silence(self)
            raise

        self._cfg = cfg
        self._projection = projection
        self._k = k = derive(cfg)
        f = cfg.formats
        self._lanes = lanes
        self._lg = exact_log2(lanes)
        self._rows = rows
        self._cols = cols
        self._cb = -(-cols // lanes)
        self._rb = -(-rows // lanes)
        self._asym = cfg.rule == "asym"
        if projection == "in":
            eta, eta_dep = k.eta_in, k.eta_in_dep
        else:
            eta, eta_dep = k.eta_ec, k.eta_ec_dep
        self._eta_pre = eta_dep if self._asym else eta
        self._eta_post = eta
        # Room for the learning-rate register's whole range (scales 0…16).
        self._eta_bits = bits_for(16 * max(self._eta_pre, self._eta_post, 1))
        self._sum_bits = bits_for(rows * k.w_max)
        B = k.weight_bits

        super().__init__({
            "req": In(stream.Signature(RequestLayout(rows, cols, B, f.recip_frac))),
            "acc": Out(stream.Signature(AccLayout(rows, cols, lanes, B))),
            "rdata": Out(stream.Signature(unsigned(B))),
            "pre_trace": In(TraceWrite(rows, lanes, f.trace_bits)),
            "post_trace": In(TraceWrite(cols, lanes, f.trace_bits)),
            "eta_pre": In(unsigned(self._eta_bits), init=self._eta_pre),
            "eta_post": In(unsigned(self._eta_bits), init=self._eta_post),
            "sum_addr": In(_index_shape(cols)),
            "sum_data": Out(unsigned(self._sum_bits)),
            "busy": Out(1),
        })

        # Memories are built here so that simulation tests can reach their contents.
        trace = data.ArrayLayout(unsigned(f.trace_bits), lanes)
        self.banks = [Memory(shape=unsigned(B), depth=self.bank_depth, init=[])
                      for _ in range(lanes)]
        self.pre_mem = Memory(shape=trace, depth=self._rb, init=[])
        self.post_mem = Memory(shape=trace, depth=self._cb, init=[])
        self.sum_mem = Memory(shape=data.ArrayLayout(unsigned(self._sum_bits), lanes),
                              depth=self._cb, init=[])
        # They are parts of this component: only its own use is worth a warning.
        for mem in (*self.banks, self.pre_mem, self.post_mem, self.sum_mem):
            _silence(mem)

    # ------------------------------------------------------------------ properties
    @property
    def cfg(self) -> NetworkConfig:
        return self._cfg

    @property
    def projection(self) -> str:
        return self._projection

    @property
    def rows(self) -> int:
        """``R``, pre-synaptic neurons."""
        return self._rows

    @property
    def cols(self) -> int:
        """``C``, post-synaptic neurons."""
        return self._cols

    @property
    def lanes(self) -> int:
        """``L``, synapses per cycle."""
        return self._lanes

    @property
    def weight_bits(self) -> int:
        return self._k.weight_bits

    @property
    def sr(self) -> int:
        """Dither bits of stochastic rounding (0: round to nearest)."""
        return self._k.sr

    @property
    def asym(self) -> bool:
        """Row events depress (asymmetric rule) instead of potentiating."""
        return self._asym

    @property
    def row_beats(self) -> int:
        """``CB = ceil(C / L)``: cycles of a row event, beats of ``acc`` per row."""
        return self._cb

    @property
    def col_beats(self) -> int:
        """``RB = ceil(R / L)``: cycles of a column event."""
        return self._rb

    @property
    def bank_depth(self) -> int:
        """Words per bank, ``R · CB``."""
        return self._rows * self._cb

    @property
    def eta_bits(self) -> int:
        return self._eta_bits

    @property
    def eta_defaults(self) -> tuple:
        """``(eta_pre, eta_post)`` of the configuration."""
        return self._eta_pre, self._eta_post

    @property
    def sum_bits(self) -> int:
        return self._sum_bits

    @property
    def recip_frac(self) -> int:
        """Fraction bits of a ``SCALE`` factor."""
        return self._k.recip_frac

    @property
    def factor_bits(self) -> int:
        """Width of a ``SCALE`` factor, ``B + recip_frac``."""
        return self._k.weight_bits + self._k.recip_frac

    def locate(self, i: int, j: int) -> tuple:
        """``(bank, address)`` of synapse ``(i, j)``: ``((i + j) mod L, i·CB + j div L)``."""
        if not (0 <= i < self._rows and 0 <= j < self._cols):
            raise ValueError(f"synapse ({i}, {j}) is outside {self._rows} × {self._cols}")
        return (i + j) % self._lanes, i * self._cb + j // self._lanes

    def cycles(self, op: Op) -> int:
        """Issue cycles of one request of kind ``op`` (its share of a back-to-back run)."""
        op = Op(op)
        if op in (Op.ACC, Op.ROW):
            return self._cb
        if op in (Op.COL, Op.SCALE):
            return self._rb
        return 1

    # ------------------------------------------------------------------ gateware
    def elaborate(self, platform):
        m = Module()
        L, lg = self._lanes, self._lg
        R, C, CB, RB = self._rows, self._cols, self._cb, self._rb
        k = self._k
        B, sr, w_max = k.weight_bits, k.sr, k.w_max
        shift = k.w_shift

        def low(v):     # v mod L
            return Value.cast(v)[:lg] if lg else Const(0, 1)

        def high(v):    # v div L
            return Value.cast(v)[lg:]

        # ---------------------------------------------------------------- memories
        banks_w, banks_r = [], []
        for b, mem in enumerate(self.banks):
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port()
            banks_w.append(wp)
            banks_r.append(mem.read_port(transparent_for=(wp,)))

        traces_r = {}
        for name, mem, port in (("pre", self.pre_mem, self.pre_trace),
                                ("post", self.post_mem, self.post_trace)):
            m.submodules[f"{name}_trace"] = mem
            wp = mem.write_port(granularity=1)
            m.d.comb += [wp.addr.eq(port.addr), wp.data.eq(port.data), wp.en.eq(port.en)]
            traces_r[name] = mem.read_port()

        m.submodules.sums = self.sum_mem
        sum_w = self.sum_mem.write_port()
        sum_r = self.sum_mem.read_port(transparent_for=(sum_w,))
        sum_host = self.sum_mem.read_port(transparent_for=(sum_w,))
        host_lane = Signal(max(lg, 1))
        m.d.sync += host_lane.eq(low(self.sum_addr))
        m.d.comb += [
            sum_host.addr.eq(high(self.sum_addr)),
            self.sum_data.eq(Array(_lanes(sum_host.data, L))[host_lane]),
        ]

        # ---------------------------------------------------------------- flow control
        # Every stage advances every cycle; the outputs spill into queues (module docs).
        m.submodules.acc_out = acc_out = SpillRegister(self.acc.payload.shape(), SPILL_DEPTH)
        m.submodules.rd_out = rd_out = SpillRegister(B, SPILL_DEPTH)
        wiring.connect(m, acc_out.o, wiring.flipped(self.acc))
        wiring.connect(m, rd_out.o, wiring.flipped(self.rdata))

        def stage(value, name, shape=None):
            sig = Signal(shape if shape is not None else Value.cast(value).shape(), name=name)
            m.d.sync += sig.eq(value)
            return sig

        # ---------------------------------------------------------------- S0: issue
        s0_active = Signal()
        s0_op = Signal(Op)
        s0_r = Signal(max(lg, 1))             # slot s lies in bank (s + r) mod L
        s0_word = Signal(WORD_BITS)
        s0_wdata = Signal(B)
        s0_factor = Signal(B + k.recip_frac)
        s0_row = Signal(_index_shape(R))
        s0_col = Signal(_index_shape(C))
        s0_idx = Signal(range(max(R, C) + L))      # index of slot 0 (column or row)
        s0_hash = Signal(32)                  # idx · HASH_MUL mod 2**32
        addr_shape = unsigned(bits_for(R * CB + L * CB))
        # The chunk's address in every bank, in registers: a SCALE reads its weights
        # straight from them in S0.
        s0_baddr = [Signal(addr_shape, name=f"s0_baddr{b}") for b in range(L)]

        is_row0 = (s0_op == Op.ACC) | (s0_op == Op.ROW)
        is_col0 = (s0_op == Op.COL) | (s0_op == Op.SCALE)
        s0_scale = s0_active & (s0_op == Op.SCALE)
        s0_last = Signal()      # the chunk in S0 is its request's last: a register

        # A SCALE reads its weights in S0, three cycles before the other kinds read theirs
        # (S3), so that its product can be taken from a register in S2. Its first chunk
        # waits in S0 until the chunks in S1 to S4 are SCALEs of other columns (or none):
        # then the banks' read ports are its own, and every weight it reads has been written
        # back. Runs of SCALEs of successive columns have no bubble. The wait is a register,
        # set a cycle ahead from what S0 to S3 will hold (the stages never stall), so that
        # ``req.ready`` is a gate or two from registers and does not depend on the request.
        s0_first = Signal()
        s0_wait = Signal()      # driven once S3's registers exist (below)
        # Room for the chunk's output beat, if it makes one, and for all in the stages behind.
        in_flight = LATENCY - 1
        s0_room = Mux(is_row0, acc_out.room_for(in_flight),
                      Mux(s0_op == Op.READ, rd_out.room_for(in_flight), 1))
        s0_issue = s0_active & ~s0_wait & s0_room

        s1_v = stage(s0_issue, "s1_valid", 1)
        s1_op = stage(s0_op, "s1_op", Op)
        s1_col = stage(s0_col, "s1_col")

        p = self.req.payload
        p_colop = (p.op == Op.COL) | (p.op == Op.SCALE)
        p_rowop = (p.op == Op.ACC) | (p.op == Op.ROW)

        m.d.comb += self.req.ready.eq(~s0_active | (s0_last & s0_issue))
        accept = self.req.valid & self.req.ready
        # A column's addresses are complete here (a SCALE reads with them in S0); a row's
        # are its chunk offsets until S1 adds ``row · CB``, so that no multiplier lies
        # between the requester's multiplexers and these registers.
        row_off = Mux((p.op == Op.ACC) | (p.op == Op.ROW), 0, high(p.col))
        first_addr = _rotate_up([Mux(p_colop, high(p.col) + s * CB, row_off)
                                 for s in range(L)], low(p.col), lg)
        with m.If(accept):
            m.d.sync += [
                s0_active.eq(1),
                s0_first.eq(1),
                s0_op.eq(p.op),
                s0_word.eq(p.word),
                s0_wdata.eq(p.wdata),
                s0_factor.eq(p.factor),
                s0_row.eq(p.row),
                s0_col.eq(p.col),
                s0_r.eq(Mux(p_colop, low(p.col), low(p.row))),
                s0_idx.eq(Mux(p_colop | p_rowop, 0, high(p.col) * L)),
                s0_hash.eq(0),
                s0_last.eq(Mux(p_colop, int(RB == 1), Mux(p_rowop, int(CB == 1), 1))),
            ]
            m.d.sync += [a.eq(v) for a, v in zip(s0_baddr, first_addr)]
        with m.Elif(s0_issue):
            m.d.sync += s0_first.eq(0)
            with m.If(s0_last):
                m.d.sync += s0_active.eq(0)
            with m.Else():
                m.d.sync += [
                    s0_idx.eq(s0_idx + L),
                    s0_hash.eq((s0_hash + ((L * _HASH_MUL) & _MASK32))[:32]),
                    # The next chunk is the last when this one is the last but one.
                    s0_last.eq(Mux(is_col0, s0_idx == max(RB - 2, 0) * L,
                                   Mux(is_row0, s0_idx == max(CB - 2, 0) * L, 1))),
                ]
                m.d.sync += [a.eq(a + Mux(is_col0, L * CB, 1)) for a in s0_baddr]

        slot_ok, dither = [], []
        limit = Mux(is_col0, R, C)
        for s in range(L):
            slot_ok.append(Mux(is_row0 | is_col0, s0_idx + s < limit, low(s0_col) == s))
            if sr:
                h = (s0_hash + ((s * _HASH_MUL) & _MASK32))[32 - sr:32]
                dither.append(s0_word[:sr] ^ h)
        bank_ok = _rotate_up(slot_ok, s0_r, lg)
        bank_dither = _rotate_up(dither, s0_r, lg) if sr else []

        chunk = high(s0_idx)
        for port in traces_r.values():
            m.d.comb += port.addr.eq(chunk)

        # ---------------------------------------------------------------- S1: traces
        # From here on the datapath works in bank order: lane b is bank b's synapse, so
        # the read-modify-write in S3 has no rotator in it.
        s1_r = stage(s0_r, "s1_r")
        s1_wdata = stage(s0_wdata, "s1_wdata")
        s1_factor = stage(s0_factor, "s1_factor")
        s1_row = stage(s0_row, "s1_row")
        s1_idx = stage(s0_idx, "s1_idx")
        s1_last = stage(s0_last, "s1_last", 1)
        s1_smask = stage(Cat(*slot_ok), "s1_smask", L)
        s1_bmask = stage(Cat(*bank_ok), "s1_bmask", L)
        s0_rowbase = s0_row * CB
        s1_baddr = [stage(Mux(is_col0, a, a + s0_rowbase), f"s1_baddr{b}", addr_shape)
                    for b, a in enumerate(s0_baddr)]
        s1_dither = [stage(d, f"s1_dither{b}", sr) for b, d in enumerate(bank_dither)]

        # What every later stage needs of a chunk, carried along stage by stage.
        s1 = {"valid": s1_v, "op": s1_op, "r": s1_r, "wdata": s1_wdata, "row": s1_row,
              "col": s1_col, "idx": s1_idx, "last": s1_last, "smask": s1_smask,
              "bmask": s1_bmask, "baddr": s1_baddr}

        def carry(fields, n):
            """``fields`` a stage later (registers ``s<n>_<name>``)."""
            return {name: [stage(x, f"s{n}_{name}{b}") for b, x in enumerate(v)]
                    if isinstance(v, list) else stage(v, f"s{n}_{name}")
                    for name, v in fields.items()}

        s1_scale = s1_op == Op.SCALE
        s1_colop = s1_op == Op.COL
        eta = Mux(s1_colop, self.eta_post, self.eta_pre)
        # The multiplicand shared by all lanes: the factor for SCALE, the learning rate else;
        # the multiplier of each lane: the weight just read for SCALE, its trace else.
        mcand = Mux(s1_scale, s1_factor, eta)
        x_pre = _lanes(traces_r["pre"].data, L)
        x_post = _lanes(traces_r["post"].data, L)
        x_bank = _rotate_up([Mux(s1_colop, x_pre[s], x_post[s]) for s in range(L)], s1_r, lg)
        w_s1 = [Value.cast(port.data) for port in banks_r]
        mplier = [Mux(s1_scale, w_s1[b], x_bank[b]) for b in range(L)]

        # ---------------------------------------------------------------- S2: products
        s2 = carry(s1, 2)
        s2_dither = [stage(d, f"s2_dither{b}") for b, d in enumerate(s1_dither)]
        s2_mcand = stage(mcand, "s2_mcand", max(self.factor_bits, self._eta_bits))
        s2_fzero = stage(s1_factor == 0, "s2_fzero", 1)
        s2_a = [stage(a, f"s2_mplier{b}", max(B, len(x_pre[0]))) for b, a in enumerate(mplier)]

        rf = k.recip_frac
        # One product per lane: x·eta for Δ, w·factor for SCALE. The multiplicand (24 bits
        # for the factor, up to 21 for the learning rate) is wider than a DSP multiplier
        # (18 × 18 on the ECP5), which would take two per lane: its low MUL_WIDTH bits go to
        # one multiplier, its few high bits to a shift-and-add in logic, and the two parts
        # add up to the same exact product.
        lo_bits = MUL_WIDTH
        hi_bits = len(s2_mcand) - lo_bits
        mcand_lo = s2_mcand[:lo_bits]
        prods_lo, prods_hi = [], []
        for b in range(L):
            a = s2_a[b]
            prods_lo.append(a * mcand_lo)
            if hi_bits > 0:
                # A multiplicand bit above both the factor's and the rate's width is zero.
                parts = [Mux(s2_mcand[lo_bits + j], a, 0) << j for j in range(hi_bits)]
                prods_hi.append(_kept_tree(m, parts, f"hi{b}"))

        # ---------------------------------------------------------------- S3: rounding
        # The products come from registers: a multiplier's output meets no adder in its own
        # cycle.
        s3 = carry(s2, 3)
        s3_op, s3_baddr = s3["op"], s3["baddr"]
        s3_dither = [stage(d, f"s3_dither{b}") for b, d in enumerate(s2_dither)]
        s3_fzero = stage(s2_fzero, "s3_fzero", 1)
        s3_a = [stage(a, f"s3_mplier{b}") for b, a in enumerate(s2_a)]
        s3_plo = [stage(v, f"s3_plo{b}") for b, v in enumerate(prods_lo)]
        s3_phi = [stage(v, f"s3_phi{b}") for b, v in enumerate(prods_hi)]
        s3_scale = s3_op == Op.SCALE

        for b in range(L):
            m.d.comb += [
                banks_r[b].addr.eq(Mux(s0_scale & ~s0_wait, s0_baddr[b], s3_baddr[b])),
            ]

        operand = []
        for b in range(L):
            a = s3_a[b]
            prod = s3_plo[b]
            if hi_bits > 0:
                prod = prod + (s3_phi[b] << lo_bits)
            # Both round by adding a term below the kept bits,
            # ``((x·eta >> (w_shift − sr)) + dither) >> sr`` being
            # ``(x·eta + (dither << (w_shift − sr))) >> w_shift``.
            if sr:
                rnd = Mux(s3_scale, s3_dither[b] << (rf - sr), s3_dither[b] << (shift - sr))
            else:
                rnd = Mux(s3_scale, 1 << (rf - 1), 1 << (shift - 1))
            total_s = prod + rnd
            # Δ saturates at w_max without changing a clipped result: w + Δ ≥ w_max and
            # w − Δ ≤ 0 for any Δ ≥ w_max.
            d = total_s >> shift
            d = Mux(d > w_max, w_max, d)
            # SCALE: (w·factor + r) >> recip_frac, r the row's dither or one half.
            scaled = total_s >> rf
            scaled = Mux(s3_fzero, a[:B], Mux(scaled > w_max, w_max, scaled))
            operand.append(Mux(s3_scale, scaled, d))

        # ---------------------------------------------------------------- S4: weight read
        # The banks' outputs go straight into registers: a block RAM's clock-to-output
        # delay meets no logic.
        s4 = carry(s3, 4)
        s4_d = [stage(v, f"s4_operand{b}", B) for b, v in enumerate(operand)]
        # S0's wait of the next cycle: its next chunk a SCALE's first, and S1 to S4 of the
        # next cycle (the chunk S0 issues now and S1 to S3 of now) not all SCALEs of other
        # columns.
        next_col = Mux(accept, p.col, s0_col)
        next_scale = Mux(accept, p.op == Op.SCALE, s0_scale & ~(s0_issue & s0_last))
        next_first = accept | (s0_first & ~s0_issue)

        def blocks_scale(valid, op, col):
            return valid & ((op != Op.SCALE) | (col == next_col))

        m.d.sync += s0_wait.eq(next_scale & next_first &
                               (blocks_scale(s0_issue, s0_op, s0_col) |
                                blocks_scale(s1_v, s1_op, s1_col) |
                                blocks_scale(s2["valid"], s2["op"], s2["col"]) |
                                blocks_scale(s3["valid"], s3["op"], s3["col"])))
        s4_wsc = [stage(a[:B], f"s4_wscale{b}", B) for b, a in enumerate(s3_a)]
        w_bank = [Value.cast(port.data) for port in banks_r]

        # ---------------------------------------------------------------- S5: write
        s5 = carry(s4, 5)
        s5_v, s5_op, s5_r, s5_wdata = s5["valid"], s5["op"], s5["r"], s5["wdata"]
        s5_row, s5_col, s5_idx, s5_last = s5["row"], s5["col"], s5["idx"], s5["last"]
        s5_smask, s5_bmask, s5_baddr = s5["smask"], s5["bmask"], s5["baddr"]
        s5_d = [stage(v, f"s5_operand{b}") for b, v in enumerate(s4_d)]
        s5_wsc = [stage(v, f"s5_wscale{b}") for b, v in enumerate(s4_wsc)]
        writes = ((s5_op == Op.ROW) | (s5_op == Op.COL) | (s5_op == Op.WRITE) |
                  (s5_op == Op.SCALE))
        s5_scale = s5_op == Op.SCALE
        s5_w = [Signal(B, name=f"s5_w{b}") for b in range(L)]
        dw = []
        for b in range(L):
            w, d = s5_w[b], s5_d[b]
            up = w + d
            up = Mux(up > w_max, w_max, up)
            down = Mux(d > w, 0, w - d)
            new = Signal(B, name=f"w_new{b}")
            with m.Switch(s5_op):
                with m.Case(Op.ROW):
                    m.d.comb += new.eq(down if self._asym else up)
                with m.Case(Op.COL):
                    m.d.comb += new.eq(up)
                with m.Case(Op.WRITE):
                    m.d.comb += new.eq(s5_wdata)
                with m.Case(Op.SCALE):
                    m.d.comb += new.eq(d)
                with m.Default():
                    m.d.comb += new.eq(w)
            we = s5_v & writes & s5_bmask[b]
            m.d.comb += [
                banks_w[b].addr.eq(s5_baddr[b]),
                banks_w[b].data.eq(new),
                banks_w[b].en.eq(we),
            ]
            # The chunk in S4 read its weight a cycle before this write: if it is the same
            # synapse, the register takes the value being written instead.
            fwd = we & (s5_baddr[b] == s4["baddr"][b])
            m.d.sync += s5_w[b].eq(Mux(fwd, new, w_bank[b]))
            # A SCALE's old weight was read in S0 and came along in registers.
            old = Mux(s5_scale, s5_wsc[b], w)
            step = Signal(signed(B + 1), name=f"dw{b}")
            m.d.comb += step.eq(Mux(s5_bmask[b] & writes, new - old, 0))
            dw.append(step)

        # A column's increment is the sum of the chunk's L increments, in any order: the
        # tree's first levels add groups of banks here, the rest in S6, beside the rotator.
        group = 1 << (lg // 2)
        dw_parts = [_kept_tree(m, dw[g:g + group], f"dw_part{g // group}")
                    for g in range(0, L, group)]

        # Column sums: a row's L increments go to L columns, a column's to one.
        s5_colop = (s5_op == Op.COL) | (s5_op == Op.SCALE)
        m.d.comb += [
            sum_r.addr.eq(Mux(s5_colop, high(s5_col), high(s5_idx))),
        ]

        # ---------------------------------------------------------------- S6: sums
        s6_we = stage(s5_v & writes, "s6_we", 1)
        s6_addr = stage(sum_r.addr, "s6_addr")
        s6_colop = stage(s5_colop, "s6_colop", 1)
        s6_lane = stage(low(s5_col), "s6_lane")
        s6_r = stage(s5_r, "s6_r")
        s6_dw = [stage(v, f"s6_dw{b}") for b, v in enumerate(dw)]
        s6_parts = [stage(v, f"s6_dw_part{i}") for i, v in enumerate(dw_parts)]
        slot_dw = _rotate_down(s6_dw, s6_r, lg)
        total = _kept_tree(m, s6_parts, "dw_sum")
        sums = _lanes(sum_r.data, L)
        m.d.comb += [
            sum_w.addr.eq(s6_addr),
            sum_w.en.eq(s6_we),
        ]
        for s in range(L):
            inc = Mux(s6_colop, Mux(s6_lane == s, total, 0), slot_dw[s])
            m.d.comb += sum_w.data[s].eq(sums[s] + inc)

        # ---------------------------------------------------------------- outputs
        w_old = _rotate_down(s5_w, s5_r, lg)
        m.d.comb += [
            acc_out.i.valid.eq(s5_v & ((s5_op == Op.ACC) | (s5_op == Op.ROW))),
            acc_out.i.payload.row.eq(s5_row),
            acc_out.i.payload.col.eq(s5_idx),
            acc_out.i.payload.mask.eq(s5_smask),
            acc_out.i.payload.last.eq(s5_last),
            rd_out.i.valid.eq(s5_v & (s5_op == Op.READ)),
            rd_out.i.payload.eq(Array(w_old)[low(s5_col)]),
        ]
        m.d.comb += [acc_out.i.payload.weights[s].eq(w_old[s]) for s in range(L)]
        m.d.comb += self.busy.eq(
            s0_active | s1_v | s2["valid"] | s3["valid"] | s4["valid"] | s5_v | s6_we |
            acc_out.o.valid | (acc_out.level != 0) | rd_out.o.valid | (rd_out.level != 0))
        return m
