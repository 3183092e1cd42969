"""Input traces and the trace write paths between the LIF cores and the synapse memories.

The traces the sym-STDP updates read are kept beside the weights, in the trace memories of
each :class:`~symspike.hdl.synapse.SynapseMemory`, which the neuron side only *writes*
(:class:`~symspike.hdl.synapse.TraceWrite`). The E and C traces are written by the LIF cores
as they store them (:func:`connect_lif_traces`). The input traces have no neuron core: the
inputs are the encoder's pixels. :class:`InputTraces` keeps them — bumped by each input spike
in phase A1, decayed in phase B, cleared between presentations — and mirrors every write to
the input→E synapse memory's ``pre_trace`` port (read by its column events in phase A2).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..firmware.config import NetworkConfig
from ..sim.fixed import derive
from .arith import const_mul
from .synapse import TraceWrite

__all__ = ["TraceOp", "InputTraces", "BUMP_LATENCY", "PASS_EXTRA", "connect_lif_traces"]

#: Cycles from a bump's acceptance to its write (in the memory and on ``out``).
BUMP_LATENCY = 2
#: Cycles of a pass besides its rows, from ``start`` to ``done`` inclusive.
PASS_EXTRA = 2


def _silence(elaboratable):
    elaboratable._MustUse__silence = True


class TraceOp(enum.Enum, shape=1):
    """Pass of :class:`InputTraces` over every trace."""

    #: ``x = (x·k_trace) >> const_frac`` (phase B).
    DECAY = 0
    #: ``x = 0`` (rest between presentations).
    CLEAR = 1


class InputTraces(wiring.Component):
    """The ``n_input`` input traces, ``L`` per memory row, with bump, decay and clear.

    Parameters
    ----------
    cfg : NetworkConfig
        Network and formats (``trace_frac``, ``trace_inc``, ``k_trace``).
    lanes : int, optional
        ``L``, traces per row: those of the input→E synapse memory (``cfg.lanes``).

    Members
    -------
    bump : ``In(stream.Signature(range(n_input)))``
        ``x[i] = min(x[i] + trace_inc, trace_max)`` (saturating as the golden model), one per
        cycle, back to back; not taken during a pass.
    start : ``In(1)``, ``op`` : ``In(TraceOp)``
        Begin a pass over all ``ceil(n_input / L)`` rows, one per cycle.
    busy, done : ``Out(1)``
        A pass or a bump is in flight; the pass ended (one cycle).
    out : ``Out(TraceWrite(n_input, L, trace_bits))``
        Every write, for the synapse memory's copy.
    """

    def __init__(self, cfg: NetworkConfig, *, lanes=None):
        if not isinstance(cfg, NetworkConfig):
            _silence(self)
            raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
        lanes = cfg.lanes if lanes is None else lanes
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or \
                lanes & (lanes - 1):
            _silence(self)
            raise ValueError(f"lanes must be a power of two ≥ 1, not {lanes!r}")
        self._cfg = cfg
        self._k = derive(cfg)
        self._n = cfg.n_input
        self._lanes = lanes
        self._rows = -(-self._n // lanes)
        bits = cfg.formats.trace_bits
        super().__init__({
            "bump": In(stream.Signature(range(self._n))),
            "start": In(1),
            "op": In(TraceOp),
            "busy": Out(1),
            "done": Out(1),
            "out": Out(TraceWrite(self._n, lanes, bits)),
        })
        self.mem = Memory(shape=data.ArrayLayout(unsigned(bits), lanes), depth=self._rows,
                          init=[])
        _silence(self.mem)

    @property
    def rows(self) -> int:
        """Memory rows, the cycles of a pass."""
        return self._rows

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        lg = exact_log2(L)
        k = self._k
        m.submodules.mem = self.mem
        wp = self.mem.write_port(granularity=1)
        rp = self.mem.read_port(transparent_for=(wp,))

        # A row is read (R), held in registers (D: nothing but a register after the block
        # RAM, whose output is slow), and written back (W). The write of W goes into the
        # register of D when both are the same row, so back-to-back bumps of one row, and a
        # pass behind a bump, see every earlier write; a write two stages ahead is seen
        # through the read port's transparency.
        running = Signal()
        op = Signal(TraceOp)
        row = Signal(range(self._rows + 1))
        d_pass = Signal()                       # a pass row is read
        d_bump = Signal()                       # a bump is read
        d_row = Signal(range(self._rows))
        d_lane = Signal(max(lg, 1))
        d_data = Signal.like(rp.data)
        w_pass = Signal()                       # a pass row is in registers: write it now
        w_bump = Signal()                       # a bump is in registers: write it now
        w_row = Signal(range(self._rows))
        w_lane = Signal(max(lg, 1))

        m.d.comb += self.bump.ready.eq(~running)
        take = self.bump.valid & self.bump.ready
        idx = Value.cast(self.bump.payload)
        m.d.sync += [d_bump.eq(take), d_pass.eq(0),
                     w_bump.eq(d_bump), w_pass.eq(d_pass), w_row.eq(d_row), w_lane.eq(d_lane)]
        with m.If(take):
            m.d.sync += [d_row.eq(idx[lg:]), d_lane.eq(idx[:lg] if lg else 0)]

        with m.If(self.start & ~running & ~d_bump):
            m.d.sync += [running.eq(1), op.eq(self.op), row.eq(0)]
        with m.If(running):
            with m.If(row < self._rows):
                m.d.sync += [d_pass.eq(1), d_row.eq(row), row.eq(row + 1)]
            with m.Else():
                m.d.sync += running.eq(0)
        m.d.comb += self.done.eq(w_pass & (w_row == self._rows - 1))
        m.d.comb += self.busy.eq(running | d_bump | d_pass | w_bump | w_pass)
        m.d.comb += rp.addr.eq(Mux(running, row, idx[lg:]))

        forward = (w_pass | w_bump) & (w_row == d_row)
        for s in range(L):
            m.d.sync += d_data[s].eq(Mux(forward & wp.en[s], wp.data[s], rp.data[s]))

        t_max, t_inc = k.trace_max, k.trace_inc
        lanes = [d_data[s] for s in range(L)]
        decayed = [(const_mul(x, k.k_trace) >> k.const_frac)[:len(x)] for x in lanes]
        b_old = lanes[0] if L == 1 else Cat(*lanes).word_select(w_lane, len(lanes[0]))
        b_sum = b_old + t_inc
        b_new = Mux(b_sum < t_max, b_sum, t_max)

        with m.If(w_pass):
            m.d.comb += [wp.addr.eq(w_row), wp.en.eq((1 << L) - 1)]
            for s in range(L):
                m.d.comb += wp.data[s].eq(Mux(op == TraceOp.CLEAR, 0, decayed[s]))
        with m.Elif(w_bump):
            m.d.comb += [wp.addr.eq(w_row), wp.en.eq(1 << w_lane if lg else 1)]
            for s in range(L):
                m.d.comb += wp.data[s].eq(b_new)
        m.d.comb += [
            self.out.addr.eq(wp.addr),
            self.out.data.eq(wp.data),
            self.out.en.eq(wp.en),
        ]
        return m


def connect_lif_traces(m, lif, port, *, bumped: bool = False):
    """Drive the :class:`~symspike.hdl.synapse.TraceWrite` ``port`` of a synapse memory from a
    LIF core's trace outputs (``trace_bumped`` instead of ``trace_x`` if ``bumped``).

    The core writes the ``P`` neurons ``row·P …`` of one row per cycle; the memory holds ``L``
    traces per row, so with ``P ≤ L`` (both powers of two) they are lanes ``row·P mod L …`` of
    its row ``row·P div L``.
    """
    P = lif.pipelines
    L = len(port.en)
    if P > L:
        raise ValueError(f"the LIF core's {P} pipelines exceed the {L} trace lanes")
    lp, lg = exact_log2(P), exact_log2(L)
    xs = lif.trace_bumped if bumped else lif.trace_x
    base = Value.cast(lif.trace_row) << lp
    m.d.comb += port.addr.eq(base >> lg)
    slot = base[lp:lg] if lg > lp else Value.cast(0)
    m.d.comb += port.en.eq(Value.cast(lif.trace_en) << (slot << lp) if lg > lp
                           else lif.trace_en)
    for s in range(L):
        m.d.comb += port.data[s].eq(xs[s % P])
