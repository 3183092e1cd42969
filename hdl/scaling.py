"""Synaptic-scaling unit: one pass rescales every column of a plastic projection.

Before every training presentation, each column ``j`` (the incoming weights of one E or C
neuron) is rescaled towards the column sum ``target`` (``docs/formats.md``, "Presentation of
an image", 1; the golden model's ``scale_columns`` in ``sim/golden_kernel.py``)::

    S = Σ_i w[i, j];  if S > 0:
        f = floor(target · 2**recip_frac / S)
        w[i, j] = min((w[i, j] · f + r[i]) >> recip_frac, 2**B − 1)   for every row i

with ``r[i] = ((word ^ hash[i]) & (2**sr − 1)) << (recip_frac − sr)`` under stochastic
rounding, ``word`` being one event word drawn for the column, and ``r[i] = 2**(recip_frac −
1)`` otherwise. A column with ``S = 0`` is left alone and draws no word.

Division of labour
------------------
:class:`ScalingUnit` does the per-column work: it reads ``S`` from the column-sum register
file of :class:`~symspike.hdl.synapse.SynapseMemory` (kept exact from the ``Δw`` of every
write, so no summing pass is needed), divides, takes the column's event word and issues one
``SCALE(j, f, word)`` request. The memory rewrites the column ``L`` synapses per cycle on its
column path (``RB = ceil(R / L)`` cycles, the skewed layout and dither of a ``COL`` event)
and adds the ``Δw`` of the rewrite to ``S``, so the sums are exact again when the pass ends.
A rewrite through the memory's ``READ``/``WRITE`` ports would cost two requests per synapse
instead of one cycle per ``L`` synapses, hence the dedicated request.

Event words
-----------
The chip has one event stream, shared by the sym-STDP events and the scaling passes; the unit
takes its words from the ``words`` input stream (the upper 16 bits of successive states of
the event generator) and never owns a generator. With stochastic rounding it takes exactly
one word per column with ``S > 0``, in ascending column order, when it starts that column
(during its division; a pause of the stream delays the column); without, it takes none.

The golden model draws the words of *all* non-zero columns first and then rewrites the
weights row by row. Each column's new weights depend only on its own weights, its own sum
and its own word, so processing the columns one after the other, each with the word drawn
when it starts, gives the same weights, the same sums and leaves the event stream in the
same state, as long as the words go to the columns in ascending column order — which is
the order here.

Division and factor
-------------------
One restoring divider serves every column: ``QB = B + recip_frac`` cycles, one quotient bit
per cycle. Only the low ``QB`` bits of the quotient are computed: when
``S ≤ target >> B`` the quotient is at least ``2**QB`` and the factor saturates at
``2**QB − 1``. That changes no weight: with ``f ≥ 2**QB − 1`` every non-zero weight becomes
``2**B − 1`` (``w·f + r ≥ 2**(B + recip_frac) − 1 + r``) and a zero weight stays zero. A
quotient of 0 (``S > target · 2**recip_frac``) issues no request: the golden model leaves
such a column alone (its word is still drawn).

Timing
------
A non-zero column takes ``P = QB + 2`` cycles in the unit (sum latch, ``QB`` divider steps,
hand-over to the request register); a zero column one cycle. The request register decouples
the unit from the memory: the next column is divided while the memory still rewrites the
previous one (``RB`` cycles, then ``LATENCY`` to drain). From ``start`` to ``done``
inclusive, with the memory idle at ``start`` and words always valid, a pass over ``C``
non-zero columns takes::

    C · max(P, RB) + min(P, RB) + LATENCY + 3        cycles

and a pass over zero columns only ``C + 3``; :meth:`ScalingUnit.pass_cycles` gives the exact
count for any pattern of zero columns. With the default formats (``QB = 24``, ``P = 26``),
input→E of N = 100 on 8 lanes (``RB = 98``) takes 9 833 cycles, memory-bound; E→C
(``RB = 13``) 280 cycles, divider-bound. The products ``w · f`` are taken by the memory's
``L`` multipliers, the ones its sym-STDP events use for ``x · eta``.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..firmware.config import NetworkConfig
from ..sim.fixed import derive
from .synapse import LATENCY, PROJECTIONS, WORD_BITS, Op, RequestLayout

__all__ = ["ScalingUnit"]


def _silence(elaboratable):
    # A rejected constructor leaves an object nobody can use: no "never used" warning.
    elaboratable._MustUse__silence = True


def _index_shape(n: int):
    return range(max(n, 2))


class ScalingUnit(wiring.Component):
    """Synaptic scaling of one plastic projection, column by column (see the module).

    Connect ``req`` to the :class:`~symspike.hdl.synapse.SynapseMemory` request stream (through
    whatever arbiter shares it), ``sum_addr``/``sum_data`` to its column-sum port, its
    ``busy`` to ``mem_busy``, and ``words`` to the event-word stream. The unit waits for the
    memory to be idle before it reads the first sum; no other requester may use the memory
    while the unit is ``busy``.

    Parameters
    ----------
    cfg : NetworkConfig
        Network and formats (``weight_bits``, ``recip_frac``, stochastic rounding).
    projection : str
        ``"in"`` (input→E: ``R = 784``, ``C = n_exc``, ``target_in``) or ``"ec"`` (E→C:
        ``R = n_exc``, ``C = 10``, ``target_ec``).
    rows, cols : int, optional
        Override ``R`` and ``C`` (as for the synapse memory they drive).
    target : int, optional
        Override the target column sum in weight codes (default ``derive(cfg).target_in`` or
        ``target_ec``).

    Members
    -------
    start : ``In(1)``
        Begin a pass (ignored while ``busy``).
    busy : ``Out(1)``
        A pass is running.
    done : ``Out(1)``
        The pass ended (one cycle, the last of ``busy``): every column is rewritten and the
        memory is idle, its column sums exact.
    req : ``Out(stream.Signature(RequestLayout(R, C, B, recip_frac)))``
        ``SCALE`` requests, one per column with a non-zero sum and factor, ascending.
    sum_addr : ``Out(range(C))``
        Column whose sum the unit reads.
    sum_data : ``In(sum_bits)``
        The sum of the previous cycle's ``sum_addr`` (``SynapseMemory.sum_data``).
    mem_busy : ``In(1)``
        ``SynapseMemory.busy``.
    words : ``In(stream.Signature(unsigned(16)))``
        Event words; one taken per non-zero column with stochastic rounding, none without.
    """

    def __init__(self, cfg: NetworkConfig, projection: str = "in", *, rows=None, cols=None,
                 target=None):
        try:
            if not isinstance(cfg, NetworkConfig):
                raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
            if not isinstance(projection, str):
                raise TypeError(f"projection must be a str, not {projection!r}")
            if projection not in PROJECTIONS:
                raise ValueError(f"projection must be one of {PROJECTIONS}, not "
                                 f"{projection!r}")
            k = derive(cfg)
            if projection == "in":
                shape, default = (cfg.n_input, cfg.n_exc), k.target_in
            else:
                shape, default = (cfg.n_exc, cfg.n_classes), k.target_ec
            rows = shape[0] if rows is None else rows
            cols = shape[1] if cols is None else cols
            target = default if target is None else target
            for name, value, low in (("rows", rows, 1), ("cols", cols, 1),
                                     ("target", target, 0)):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"{name} must be an int, not {value!r}")
                if value < low:
                    raise ValueError(f"{name} must be ≥ {low}, not {value}")
        except (TypeError, ValueError):
            _silence(self)
            raise

        self._cfg = cfg
        self._projection = projection
        self._k = k
        self._rows, self._cols, self._target = rows, cols, target
        self._qb = k.weight_bits + k.recip_frac
        self._sum_bits = bits_for(rows * k.w_max)
        super().__init__({
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "req": Out(stream.Signature(RequestLayout(rows, cols, k.weight_bits,
                                                      k.recip_frac))),
            "sum_addr": Out(_index_shape(cols)),
            "sum_data": In(self._sum_bits),
            "mem_busy": In(1),
            "words": In(stream.Signature(WORD_BITS)),
        })

    # ------------------------------------------------------------------ properties
    @property
    def cfg(self) -> NetworkConfig:
        return self._cfg

    @property
    def projection(self) -> str:
        return self._projection

    @property
    def rows(self) -> int:
        """``R``, weights per column."""
        return self._rows

    @property
    def cols(self) -> int:
        """``C``, columns per pass."""
        return self._cols

    @property
    def target(self) -> int:
        """Target column sum in weight codes."""
        return self._target

    @property
    def recip_frac(self) -> int:
        return self._k.recip_frac

    @property
    def sr(self) -> int:
        """Dither bits of stochastic rounding (0: round half up, no words taken)."""
        return self._k.sr

    @property
    def sum_bits(self) -> int:
        """Width of a column sum, as ``SynapseMemory.sum_bits``."""
        return self._sum_bits

    @property
    def factor_bits(self) -> int:
        """Width of a factor, ``QB = B + recip_frac``."""
        return self._qb

    @property
    def div_cycles(self) -> int:
        """Cycles of one division, ``QB = B + recip_frac``."""
        return self._qb

    @property
    def column_cycles(self) -> int:
        """Cycles the unit spends on a non-zero column, ``QB + 2`` (a zero column: 1)."""
        return self._qb + 2

    # ------------------------------------------------------------------ models
    def factor(self, total: int) -> int:
        """The factor the unit issues for column sum ``total > 0``:
        ``min(floor(target · 2**recip_frac / total), 2**QB − 1)``."""
        if isinstance(total, bool) or not isinstance(total, int):
            raise TypeError(f"total must be an int, not {total!r}")
        if total < 1:
            raise ValueError(f"total must be ≥ 1, not {total}")
        return min((self._target << self._k.recip_frac) // total, (1 << self._qb) - 1)

    def pass_cycles(self, col_beats: int, sums=None) -> int:
        """Cycles from ``start`` to ``done`` inclusive of one pass.

        Exact when the memory is idle at ``start``, the ``words`` stream always valid and the
        memory's requests come from this unit only.

        Parameters
        ----------
        col_beats : int
            ``RB = ceil(R / L)`` of the memory (``SynapseMemory.col_beats``).
        sums : sequence of int, optional
            The column sums at ``start`` (default: every column non-zero, factor non-zero).
        """
        if isinstance(col_beats, bool) or not isinstance(col_beats, int) or col_beats < 1:
            raise ValueError(f"col_beats must be an int ≥ 1, not {col_beats!r}")
        if sums is None:
            sums = [1] * self._cols
        sums = [int(s) for s in sums]
        if len(sums) != self._cols:
            raise ValueError(f"sums must have {self._cols} entries, not {len(sums)}")
        # t: the cycle the unit is in (start is cycle 0; the first sum is latched in
        # cycle 2); free: first cycle the memory can take the next request.
        t, free, last_issue = 2, 0, None
        for s in sums:
            if s == 0:
                t += 1
                continue
            ready = t + self._qb + 1              # hand-over cycle
            if self.factor(s) == 0:
                t = ready + 1
                continue
            # The request register is loaded at the end of the hand-over cycle, once the
            # previous request has been taken (or is taken in that cycle).
            if last_issue is not None:
                ready = max(ready, last_issue)
            issue = max(ready + 1, free)          # the memory takes it in this cycle
            free = issue + col_beats
            last_issue = issue
            t = ready + 1
        if last_issue is None:
            return t + 1
        # The memory's busy falls LATENCY cycles after the last chunk issued (after the
        # column-sum write of S6); done is the first cycle that sees it low.
        return max(t, free + LATENCY) + 1

    # ------------------------------------------------------------------ gateware
    def elaborate(self, platform):
        m = Module()
        k = self._k
        C, QB, sr = self._cols, self._qb, self._k.sr
        rf = k.recip_frac
        sb = self._sum_bits
        # Numerator target·2**rf: its bits above QB start the remainder, the rest are
        # shifted in one per cycle.
        numer = self._target << rf
        hi = numer >> QB                       # = target >> B
        lo = numer & ((1 << QB) - 1)

        col = Signal(_index_shape(C))
        last_col = col == C - 1
        divisor = Signal(sb)
        rem = Signal(sb)
        quo = Signal(QB)                       # numerator bits in, quotient bits out
        ovf = Signal()
        count = Signal(range(QB + 1))
        word = Signal(WORD_BITS)
        have_word = Signal()
        advance = Signal()                     # the unit moves to the next column

        req_v = Signal()
        req_p = Signal(self.req.payload.shape())
        m.d.comb += [self.req.valid.eq(req_v), self.req.payload.eq(req_p)]
        with m.If(self.req.ready):
            m.d.sync += req_v.eq(0)

        # The sum of the next column is addressed in the cycle the unit leaves this one, so
        # that it is there in the next cycle.
        m.d.comb += self.sum_addr.eq(Mux(advance, col + 1, col))
        with m.If(advance):
            m.d.sync += col.eq(col + 1)

        want_word = Signal()
        m.d.comb += [self.words.ready.eq(want_word & ~have_word)]
        with m.If(self.words.valid & self.words.ready):
            m.d.sync += [word.eq(self.words.payload), have_word.eq(1)]

        # Every combinational output is an unconditional expression of the state, so that
        # it is defined from the first cycle in event-driven simulators too.
        total = self.sum_data
        zero = Signal()
        trial = Signal(sb + 1)
        fits = Signal()
        factor = Signal(QB)
        got_word = Signal()
        handoff = Signal()
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += col.eq(0)
                    m.next = "WAIT"
            with m.State("WAIT"):
                # Requests of others may still be in the memory: its sums are exact once
                # it is idle. sum_addr is column 0 meanwhile.
                with m.If(~self.mem_busy):
                    m.next = "LOAD"
            with m.State("LOAD"):
                with m.If(zero):
                    with m.If(last_col):
                        m.next = "FINISH"
                with m.Else():
                    m.d.sync += [
                        divisor.eq(total),
                        rem.eq(hi if hi < (1 << sb) else 0),
                        quo.eq(lo),
                        ovf.eq(total <= hi),
                        count.eq(QB),
                        have_word.eq(0),
                    ]
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                m.d.sync += [
                    rem.eq(Mux(fits, trial - divisor, trial)),
                    quo.eq(Cat(fits, quo[:QB - 1])),
                    count.eq(count - 1),
                ]
                with m.If(count == 1):
                    m.next = "HAND"
            with m.State("HAND"):
                with m.If(handoff):
                    with m.If(factor != 0):
                        m.d.sync += [
                            req_v.eq(1),
                            req_p.op.eq(Op.SCALE),
                            req_p.col.eq(col),
                            req_p.row.eq(0),
                            req_p.word.eq(word),
                            req_p.wdata.eq(0),
                            req_p.factor.eq(factor),
                        ]
                    with m.If(last_col):
                        m.next = "FINISH"
                    with m.Else():
                        m.next = "LOAD"
            with m.State("FINISH"):
                with m.If(self.done):
                    m.next = "IDLE"

        m.d.comb += [
            self.busy.eq(~fsm.ongoing("IDLE")),
            zero.eq(total == 0),
            # One restoring step: shift the next numerator bit into the remainder.
            trial.eq(Cat(quo[QB - 1], rem)),
            fits.eq(trial >= divisor),
            factor.eq(Mux(ovf, (1 << QB) - 1, quo)),
            got_word.eq(have_word if sr else 1),
            handoff.eq(fsm.ongoing("HAND") & got_word & (~req_v | self.req.ready)),
            advance.eq(~last_col & ((fsm.ongoing("LOAD") & zero) | handoff)),
            want_word.eq((fsm.ongoing("DIVIDE") | fsm.ongoing("HAND")) if sr else 0),
            self.done.eq(fsm.ongoing("FINISH") & ~req_v & ~self.mem_busy),
        ]
        return m
