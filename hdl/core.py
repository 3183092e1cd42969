"""The network core: encoder, router, neurons, synapses, STDP and scaling, sequenced.

:class:`NetworkCore` joins the units and runs the golden model's presentation
(``sim/network.py: Model.present``, ``docs/formats.md``) in gateware, bit for bit: synaptic
scaling of the layers that learn, the rest state, ``steps_present`` time steps, θ's decay, and
the re-presentation rule (intensity + 1 while the E layer fires fewer than ``min_spikes``).

Dataflow of one time step (``docs/architecture.md`` has the picture)::

    A1  router.in_out ─► syn_in ROW/ACC(i, word) ─acc─► acc_e      input trace i bumped
    A2  router.e_out  ─► syn_in COL(j, word);  syn_ec ROW/ACC(j, word) ─acc─► acc_c
    A4  router.c_out  ─► syn_ec COL(c, word)
        wait until the synapse memories and accumulators are idle
    B   acc_e ─► LIF E/I ─spikes─► router.e_spikes   E traces ─► syn_in.post, syn_ec.pre
        acc_c ─► LIF C (teacher) ─► router.c_spikes   C traces ─► syn_ec.post
        input traces decay                            encoder ─► router.in_spikes

Phase A is sequential because its event words are drawn in the golden model's order from one
generator (:class:`~symspike.hdl.router.EventWords`) and because A2's column events read input
traces A1 has bumped. The units of phase B are independent (their random streams are their
own) and run in parallel; the step ends when the slowest is done.

Host access (only while ``busy`` is low): weight rows are read through the synapse memories'
``ACC`` path, single weights written with ``WRITE``; neuron state (θ among it) through the E/I
core's state port; spike counts through the router's counters.
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect, flipped

from ..firmware.config import NetworkConfig
from ..firmware.asm import ARG_BITS, PROGRAM_DEPTH, Opcode, default_program
from ..firmware.protocol import AER_STEP_END
from ..sim.fixed import derive
from ..sim.rng import stream_seeds
from . import lif, synapse
from .encoder import PixelLayout, PoissonEncoder
from .router import Accumulators, EventWords, SpikeRouter
from .scaling import ScalingUnit
from .synapse import AccLayout, SynapseMemory
from .traces import InputTraces, TraceOp, connect_lif_traces

__all__ = ["CoreOp", "WeightRequest", "NetworkCore", "ec_lanes"]

#: Most lanes the E→C memory uses: its rows are 10 weights long, wider banks would be empty.
EC_LANES_MAX = 8


def ec_lanes(cfg: NetworkConfig) -> int:
    """Lanes of the E→C synapse memory: ``min(cfg.lanes, 8)``, and at least the pipelines of
    the E/I core (its trace writes land there)."""
    return max(min(cfg.lanes, EC_LANES_MAX), cfg.pipelines)


def _silence(elaboratable):
    elaboratable._MustUse__silence = True


class CoreOp(enum.Enum, shape=2):
    """Commands of :class:`NetworkCore`, latched at ``start``."""

    #: Present the loaded image: scaling (learning layers), rest, steps, θ decay, repeated
    #: at a higher intensity while the E layer fires fewer than ``min_spikes`` spikes.
    PRESENT = 0
    #: One synaptic-scaling pass of the layers selected by ``learn_in``/``learn_ec`` (the
    #: pass after training that makes the test weights the scaled ones).
    SCALE = 1
    #: The rest state: neurons, traces and queued spikes cleared (θ and weights kept).
    RESET = 2


class WeightRequest(data.StructLayout):
    """Payload of the host weight port.

    Fields
    ------
    write : ``unsigned(1)``
        Write ``wdata`` to ``(row, col)``; otherwise read row ``row`` (``ceil(C / L)`` beats
        on ``wrow``).
    proj : ``unsigned(1)``
        0: input→E, 1: E→C.
    row, col : indices
    wdata : ``unsigned(B)``
    """

    def __init__(self, cfg: NetworkConfig):
        super().__init__({
            "write": unsigned(1),
            "proj": unsigned(1),
            "row": range(max(cfg.n_input, cfg.n_exc)),
            "col": range(max(cfg.n_exc, cfg.n_classes, 2)),
            "wdata": unsigned(cfg.formats.weight_bits),
        })


class NetworkCore(wiring.Component):
    """The whole network in gateware (see the module documentation).

    Parameters
    ----------
    cfg : NetworkConfig
        Network, formats, rule, rest mode and parallelism (``lanes``, ``pipelines``,
        ``encoder_lanes``).
    seed : int
        Run seed: the encoder, teacher and event generators start from its streams
        (:func:`~symspike.sim.rng.stream_seeds`), as the golden model's do.
    w_in, w_ec : array of int, optional
        Initial weight codes, ``(784, N)`` and ``(N, 10)``; by default the golden model's
        initial draw for ``seed`` (``GoldenModel(cfg, seed).w_in``). The host can also
        write them.

    Members
    -------
    start : ``In(1)``, ``op`` : ``In(CoreOp)``
        Begin a command (ignored while ``busy``). ``learn_in``, ``learn_ec``, ``teacher`` and
        ``label`` are latched with it (the golden model's phase flags).
    learn_in, learn_ec, teacher : ``In(1)``
    label : ``In(range(10))``
    aer : ``In(1)``
        Latched at ``start``: the input spikes come from ``events`` instead of the encoder,
        and a ``PRESENT`` is one presentation (the host applies the re-presentation rule).
    events : ``In(stream.Signature(unsigned(16)))``
        AER mode: input-spike addresses of each input step in ascending order, each step
        closed by ``AER_STEP_END``; other values ≥ 784 are dropped.
    wants_events : ``Out(1)``
        AER mode: the core waits for the events of the current step.
    prog_addr, prog_data, prog_we : ``In``
        Write port of the sequencer's program memory (``firmware/asm.py``; while idle).
    busy, done : ``Out(1)``
        A command runs; it ended (one cycle).
    presentations, intensity : ``Out``
        Presentations of the last ``PRESENT`` and the intensity of the last one.
    pixels : ``In(stream.Signature(PixelLayout()))``
        The image to present, 784 pixels (accepted while idle).
    wreq : ``In(stream.Signature(WeightRequest(cfg)))``
        Host weight access (while idle).
    wrow : ``Out(stream.Signature(AccLayout(784, max(N, 10), L, B)))``
        Rows read by ``wreq``, ``L`` weights per beat (E→C rows in the low lanes).
    state : ``In(lif.StateAccess)``
        The E/I core's state port (θ with ``Word.THETA``), while idle.
    e_count_addr, e_count, c_count_addr, c_count, e_total : counters
        Spike counts of the last presentation (one cycle read latency).
    rng_addr : ``In(range(encoder_lanes + 2))``, rng_data : ``Out(32)``
        The random streams' states in the golden model's ``rng`` order: encoder lanes,
        teacher, learning events (combinational read).
    rng_wdata : ``In(32)``, rng_we : ``In(1)``
        Load ``rng_wdata`` into stream ``rng_addr`` (while idle; a zero state never
        advances, so the host must not write one). Saved and loaded with the weights, they
        let a run resumed from a checkpoint continue exactly as if it had not stopped.
    """

    def __init__(self, cfg: NetworkConfig, *, seed: int = 0, w_in=None, w_ec=None):
        if not isinstance(cfg, NetworkConfig):
            _silence(self)
            raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
        if cfg.pipelines > cfg.lanes:
            _silence(self)
            raise ValueError(f"pipelines ({cfg.pipelines}) must not exceed lanes "
                             f"({cfg.lanes}): the E traces are written a row at a time")
        self._cfg = cfg
        self._seed = int(seed)
        self._k = derive(cfg)
        n, n_in, n_c = cfg.n_exc, cfg.n_input, cfg.n_classes
        B = cfg.formats.weight_bits

        self.encoder = PoissonEncoder(cfg, seed=seed)
        self.router = SpikeRouter(cfg, seed=seed)
        self.lif_ei = lif.LIFCore(cfg, "EI")
        self.lif_c = lif.LIFCore(cfg, "C", pipelines=1)
        self.syn_in = SynapseMemory(cfg, "in")
        self.syn_ec = SynapseMemory(cfg, "ec", lanes=ec_lanes(cfg))
        self.scale_in = ScalingUnit(cfg, "in")
        self.scale_ec = ScalingUnit(cfg, "ec")
        self.acc_e = Accumulators(n, cfg.lanes, cfg.pipelines, self.lif_ei.acc_bits, B, n_in)
        self.acc_c = Accumulators(n_c, self.syn_ec.lanes, 1, self.lif_c.acc_bits, B, n)
        self.traces = InputTraces(cfg)
        self.event_words = EventWords(int(stream_seeds(seed, cfg.encoder_lanes)["event"]))
        if w_in is None or w_ec is None:
            # The run seed's initial draw, as the golden model of the same seed starts.
            from ..sim.network import GoldenModel
            init = GoldenModel(cfg, seed)
            w_in = init.w_in if w_in is None else w_in
            w_ec = init.w_ec if w_ec is None else w_ec
        for mem, w, shape in ((self.syn_in, w_in, (n_in, n)), (self.syn_ec, w_ec, (n, n_c))):
            if w is not None:
                w = np.asarray(w)
                if w.shape != shape:
                    _silence(self)
                    raise ValueError(f"initial weights of shape {shape} expected, not {w.shape}")
                if w.min() < 0 or w.max() > self._k.w_max:
                    _silence(self)
                    raise ValueError(f"initial weight codes must lie in 0…{self._k.w_max}")
                self._load(mem, w)

        self.program = Memory(shape=16, depth=PROGRAM_DEPTH, init=default_program(cfg))
        _silence(self.program)
        self._count_bits = self.router.count_bits
        super().__init__({
            "start": In(1),
            "op": In(CoreOp),
            "learn_in": In(1),
            "learn_ec": In(1),
            "teacher": In(1),
            "label": In(range(max(n_c, 2))),
            "aer": In(1),
            "events": In(stream.Signature(unsigned(16))),
            "wants_events": Out(1),
            "prog_addr": In(range(PROGRAM_DEPTH)),
            "prog_data": In(16),
            "prog_we": In(1),
            "busy": Out(1),
            "done": Out(1),
            "presentations": Out(range(cfg.intensity_max + 2)),
            "intensity": Out(range(cfg.intensity_max + 1)),
            "pixels": In(stream.Signature(PixelLayout())),
            "wreq": In(stream.Signature(WeightRequest(cfg))),
            "wrow": Out(stream.Signature(AccLayout(n_in, max(n, n_c), cfg.lanes, B))),
            "state": self.lif_ei.signature.members["access"],
            "e_count_addr": In(range(max(n, 2))),
            "e_count": Out(self._count_bits),
            "c_count_addr": In(range(max(n_c, 2))),
            "c_count": Out(self._count_bits),
            "e_total": Out(self.router.e_total.shape()),
            "rng_addr": In(range(cfg.encoder_lanes + 2)),
            "rng_data": Out(32),
            "rng_wdata": In(32),
            "rng_we": In(1),
        })

    def _rng_access(self, m):
        enc, rt, ev = self.encoder, self.router, self.event_words
        lanes = self._cfg.encoder_lanes
        streams = [enc.states[k] for k in range(lanes)] + [rt.teacher_state, ev.state]
        with m.Switch(self.rng_addr):
            for k, value in enumerate(streams):
                with m.Case(k):
                    m.d.comb += self.rng_data.eq(value)
        write = self.rng_we & ~self.busy
        m.d.comb += [rt.teacher_state_in.eq(self.rng_wdata), ev.state_in.eq(self.rng_wdata),
                     rt.teacher_load.eq(write & (self.rng_addr == lanes)),
                     ev.load.eq(write & (self.rng_addr == lanes + 1)),
                     enc.seeds_load.eq(write & (self.rng_addr < lanes))]
        for k in range(lanes):
            m.d.comb += enc.seeds[k].eq(Mux(self.rng_addr == k, self.rng_wdata, enc.states[k]))

    @staticmethod
    def _load(mem: SynapseMemory, w):
        R, C = w.shape
        banks = [[0] * mem.bank_depth for _ in range(mem.lanes)]
        for i in range(R):
            for j in range(C):
                b, a = mem.locate(i, j)
                banks[b][a] = int(w[i, j])
        for bank, words in zip(mem.banks, banks):
            bank.init = words
        sums = w.sum(axis=0).astype(np.int64)
        L = mem.lanes
        rows = [[0] * L for _ in range(mem.row_beats)]
        for j in range(C):
            rows[j // L][j % L] = int(sums[j])
        mem.sum_mem.init = rows

    @property
    def cfg(self) -> NetworkConfig:
        return self._cfg

    @property
    def seed(self) -> int:
        return self._seed

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        for name in ("encoder", "router", "lif_ei", "lif_c", "syn_in", "syn_ec", "scale_in",
                     "scale_ec", "acc_e", "acc_c", "traces", "event_words"):
            m.submodules[name] = getattr(self, name)
        enc, rt, ei, cl = self.encoder, self.router, self.lif_ei, self.lif_c
        si, se, sci, sce = self.syn_in, self.syn_ec, self.scale_in, self.scale_ec
        ae, ac, tr, ev = self.acc_e, self.acc_c, self.traces, self.event_words

        # ---------------------------------------------------------------- fixed wiring
        connect(m, flipped(self.pixels), enc.pixels)
        self._rng_access(m)
        # Input spikes come from the encoder, or in AER mode from the host's event stream.
        ext_active = Signal()
        m.d.comb += self.wants_events.eq(ext_active)
        ev_word = self.events.payload
        with m.If(ext_active):
            with m.If(self.events.valid):
                with m.If(ev_word == AER_STEP_END):
                    m.d.comb += self.events.ready.eq(1)
                    m.d.sync += ext_active.eq(0)
                with m.Elif(ev_word < cfg.n_input):
                    m.d.comb += [rt.in_spikes.valid.eq(1), rt.in_spikes.payload.eq(ev_word),
                                 self.events.ready.eq(rt.in_spikes.ready)]
                with m.Else():
                    # Not an input: dropped, so no address can leave the queue's range.
                    m.d.comb += self.events.ready.eq(1)
        with m.Else():
            connect(m, enc.spikes, rt.in_spikes)
        connect(m, ei.spikes, rt.e_spikes)
        connect(m, cl.spikes, rt.c_spikes)
        connect(m, ae.out, ei.acc)
        connect(m, ac.out, cl.acc)
        connect(m, tr.out, si.pre_trace)
        connect_lif_traces(m, ei, si.post_trace)
        connect_lif_traces(m, ei, se.pre_trace, bumped=True)
        connect_lif_traces(m, cl, se.post_trace)
        connect(m, flipped(self.state), ei.access)
        for unit, mem in ((sci, si), (sce, se)):
            m.d.comb += [mem.sum_addr.eq(unit.sum_addr), unit.sum_data.eq(mem.sum_data),
                         unit.mem_busy.eq(mem.busy)]
        m.d.comb += [
            rt.e_count_addr.eq(self.e_count_addr), self.e_count.eq(rt.e_count),
            rt.c_count_addr.eq(self.c_count_addr), self.c_count.eq(rt.c_count),
            self.e_total.eq(rt.e_total),
        ]

        # ---------------------------------------------------------------- sequencer state
        op = Signal(CoreOp)
        l_in, l_ec, teach, aer = Signal(), Signal(), Signal(), Signal()
        label = Signal.like(self.label)
        input_on, teacher_on, count_on = Signal(), Signal(), Signal()
        in_prog = Signal()                  # the command runs the program
        pc = Signal(range(PROGRAM_DEPTH))
        instr = Signal(16)
        arg = instr[:ARG_BITS]
        min_spikes = Signal(ARG_BITS)
        max_intensity = Signal(ARG_BITS)
        steps = Signal(ARG_BITS)
        col_done = Signal()                 # A2: the column event of this E spike is issued
        got = Signal(4)                     # B: done pulses seen (E/I, C, traces, encoder)
        intensity = self.intensity
        presentations = self.presentations
        m.submodules.program = self.program
        prog_r = self.program.read_port(transparent_for=())
        prog_w = self.program.write_port()
        m.d.comb += [prog_r.addr.eq(pc), prog_w.addr.eq(self.prog_addr),
                     prog_w.data.eq(self.prog_data), prog_w.en.eq(self.prog_we & ~self.busy)]

        # Owners of the synapse memories' request ports and acc streams.
        own_seq, own_sci, own_sce, own_host = Signal(), Signal(), Signal(), Signal()

        # Defaults of the strobes.
        host_acc = Signal()                 # acc beats go to the host

        m.d.comb += enc.intensity.eq(intensity)
        with m.FSM(name="seq") as fsm:
            with m.State("IDLE"):
                m.d.comb += own_host.eq(1)
                with m.If(self.start):
                    m.d.sync += [op.eq(self.op), l_in.eq(self.learn_in),
                                 l_ec.eq(self.learn_ec), teach.eq(self.teacher),
                                 label.eq(self.label), aer.eq(self.aer)]
                    with m.Switch(self.op):
                        with m.Case(CoreOp.PRESENT):
                            m.d.sync += [presentations.eq(0), in_prog.eq(1), pc.eq(0),
                                         intensity.eq(cfg.intensity_init)]
                            m.next = "FETCH"
                        with m.Case(CoreOp.SCALE):
                            m.d.sync += in_prog.eq(0)
                            m.next = "SCALE_IN"
                        with m.Default():
                            m.d.sync += in_prog.eq(0)
                            m.next = "RESET"

            # ------------------------------------------------------------ the program
            with m.State("FETCH"):
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += [instr.eq(prog_r.data), pc.eq(pc + 1)]
                m.next = "EXECUTE"
            with m.State("EXECUTE"):
                with m.Switch(instr[ARG_BITS:]):
                    with m.Case(Opcode.HALT):
                        m.next = "DONE"
                    with m.Case(Opcode.SCALE):
                        m.next = "SCALE_IN"
                    with m.Case(Opcode.RESET):
                        m.next = "RESET"
                    with m.Case(Opcode.CLEAR):
                        m.d.comb += rt.clear.eq(1)
                        m.d.sync += presentations.eq(presentations + 1)
                        m.next = "CLEAR_WAIT"
                    with m.Case(Opcode.STEPS):
                        m.d.sync += steps.eq(arg)
                        with m.If(arg == 0):
                            m.next = "FETCH"
                        with m.Else():
                            m.next = "A1"
                    with m.Case(Opcode.FLAGS):
                        m.d.sync += [input_on.eq(arg[0]), teacher_on.eq(arg[1] & teach),
                                     count_on.eq(arg[2])]
                        m.next = "FETCH"
                    with m.Case(Opcode.THETA):
                        m.next = "THETA"
                    with m.Case(Opcode.INTENSITY):
                        m.d.sync += intensity.eq(arg)
                        m.next = "FETCH"
                    with m.Case(Opcode.INC):
                        m.d.sync += intensity.eq(intensity + 1)
                        m.next = "FETCH"
                    with m.Case(Opcode.MINSPK):
                        m.d.sync += min_spikes.eq(arg)
                        m.next = "FETCH"
                    with m.Case(Opcode.MAXINT):
                        m.d.sync += max_intensity.eq(arg)
                        m.next = "FETCH"
                    for opc, cond in ((Opcode.JSPIKES, rt.e_total >= min_spikes),
                                      (Opcode.JINT, intensity >= max_intensity),
                                      (Opcode.JMP, 1), (Opcode.JAER, aer)):
                        with m.Case(opc):
                            with m.If(cond):
                                m.d.sync += pc.eq(arg)
                            m.next = "FETCH"
                    with m.Default():
                        m.next = "DONE"
            with m.State("CLEAR_WAIT"):
                with m.If(~rt.busy):
                    m.next = "FETCH"
            with m.State("SCALE_IN"):
                m.d.comb += own_sci.eq(1)
                with m.If(l_in):
                    m.d.comb += sci.start.eq(1)
                    m.next = "SCALE_IN_WAIT"
                with m.Else():
                    m.next = "SCALE_EC"
            with m.State("SCALE_IN_WAIT"):
                m.d.comb += own_sci.eq(1)
                with m.If(sci.done):
                    m.next = "SCALE_EC"
            with m.State("SCALE_EC"):
                m.d.comb += own_sce.eq(1)
                with m.If(l_ec):
                    m.d.comb += sce.start.eq(1)
                    m.next = "SCALE_EC_WAIT"
                with m.Else():
                    m.next = "SCALED"
            with m.State("SCALE_EC_WAIT"):
                m.d.comb += own_sce.eq(1)
                with m.If(sce.done):
                    m.next = "SCALED"
            with m.State("SCALED"):
                m.next = "RETURN"
            with m.State("RESET"):
                m.d.comb += [ei.start.eq(1), ei.op.eq(lif.Op.RESET),
                             cl.start.eq(1), cl.op.eq(lif.Op.RESET),
                             tr.start.eq(1), tr.op.eq(TraceOp.CLEAR), rt.flush.eq(1)]
                m.d.sync += got.eq(0)
                m.next = "RESET_WAIT"
            with m.State("RESET_WAIT"):
                seen = got | Mux(ei.done, 1, 0) | Mux(cl.done, 2, 0) | Mux(tr.done, 4, 0)
                m.d.sync += got.eq(seen)
                with m.If((seen[:3] == 7) & ~rt.busy):
                    m.next = "RETURN"
            with m.State("RETURN"):
                # The end of a sub-sequence: back to the program, or the command is done.
                with m.If(in_prog):
                    m.next = "FETCH"
                with m.Else():
                    m.next = "DONE"

            # ------------------------------------------------------------ phase A
            with m.State("A1"):
                m.d.comb += own_seq.eq(1)
                src = rt.in_out
                m.d.comb += [
                    si.req.valid.eq(src.valid & tr.bump.ready),
                    si.req.payload.op.eq(Mux(l_in, synapse.Op.ROW, synapse.Op.ACC)),
                    si.req.payload.row.eq(src.payload),
                    si.req.payload.word.eq(ev.words.payload),
                    tr.bump.valid.eq(src.valid & si.req.ready),
                    tr.bump.payload.eq(src.payload),
                    src.ready.eq(si.req.ready & tr.bump.ready),
                    ev.words.ready.eq(src.valid & si.req.ready & tr.bump.ready & l_in),
                ]
                with m.If(~src.valid & ~rt.in_pending):
                    m.next = "A1_WAIT"
            with m.State("A1_WAIT"):
                with m.If(~tr.busy):
                    m.next = "A2"
            with m.State("A2"):
                m.d.comb += own_seq.eq(1)
                src = rt.e_out
                with m.If(src.valid):
                    with m.If(l_in & ~col_done):
                        m.d.comb += [
                            si.req.valid.eq(1),
                            si.req.payload.op.eq(synapse.Op.COL),
                            si.req.payload.col.eq(src.payload),
                            si.req.payload.word.eq(ev.words.payload),
                            ev.words.ready.eq(si.req.ready),
                        ]
                        with m.If(si.req.ready):
                            m.d.sync += col_done.eq(1)
                    with m.Else():
                        m.d.comb += [
                            se.req.valid.eq(1),
                            se.req.payload.op.eq(Mux(l_ec, synapse.Op.ROW, synapse.Op.ACC)),
                            se.req.payload.row.eq(src.payload),
                            se.req.payload.word.eq(ev.words.payload),
                            ev.words.ready.eq(se.req.ready & l_ec),
                            src.ready.eq(se.req.ready),
                        ]
                        with m.If(se.req.ready):
                            m.d.sync += col_done.eq(0)
                with m.Elif(~rt.e_pending):
                    m.next = "A4"
            with m.State("A4"):
                m.d.comb += own_seq.eq(1)
                src = rt.c_out
                with m.If(src.valid):
                    with m.If(l_ec):
                        m.d.comb += [
                            se.req.valid.eq(1),
                            se.req.payload.op.eq(synapse.Op.COL),
                            se.req.payload.col.eq(src.payload),
                            se.req.payload.word.eq(ev.words.payload),
                            ev.words.ready.eq(se.req.ready),
                            src.ready.eq(se.req.ready),
                        ]
                    with m.Else():
                        m.d.comb += src.ready.eq(1)
                with m.Elif(~rt.c_pending):
                    m.next = "A_SETTLE"
            with m.State("A_SETTLE"):
                m.d.comb += own_seq.eq(1)
                m.next = "A_WAIT"
            with m.State("A_WAIT"):
                m.d.comb += own_seq.eq(1)
                with m.If(~si.busy & ~se.busy & ~ae.busy & ~ac.busy):
                    m.next = "B"

            # ------------------------------------------------------------ phase B
            with m.State("B"):
                m.d.comb += [
                    ei.start.eq(1), ei.op.eq(lif.Op.STEP), ei.learn.eq(l_in),
                    cl.start.eq(1), cl.op.eq(lif.Op.STEP), cl.teacher.eq(teacher_on),
                    cl.label.eq(label), cl.fire.eq(rt.teacher_fire),
                    rt.teacher_draw.eq(teacher_on),
                    ae.start.eq(1), ac.start.eq(1),
                    tr.start.eq(1), tr.op.eq(TraceOp.DECAY),
                    enc.step.eq(input_on & ~aer),
                ]
                m.d.sync += [got.eq(Mux(input_on, 0, 8)), steps.eq(steps - 1),
                             ext_active.eq(input_on & aer)]
                m.next = "B_WAIT"
            with m.State("B_WAIT"):
                input_done = Mux(aer, ~ext_active, enc.done)
                seen = (got | Mux(ei.done, 1, 0) | Mux(cl.done, 2, 0) | Mux(tr.done, 4, 0)
                        | Mux(input_done, 8, 0))
                m.d.sync += got.eq(seen)
                with m.If(seen == 15):
                    m.next = "B_SETTLE"
            with m.State("B_SETTLE"):
                # The queues' levels show the last spikes of phase B from this cycle on.
                with m.If(steps != 0):
                    m.next = "A1"
                with m.Else():
                    m.next = "FETCH"

            # ------------------------------------------------------------ presentation end
            with m.State("THETA"):
                with m.If(l_in):
                    m.d.comb += [ei.start.eq(1), ei.op.eq(lif.Op.DECAY_THETA)]
                    m.next = "THETA_WAIT"
                with m.Else():
                    m.next = "FETCH"
            with m.State("THETA_WAIT"):
                with m.If(ei.done):
                    m.next = "FETCH"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

        m.d.comb += rt.count.eq(count_on)

        # ---------------------------------------------------------------- shared ports
        # Scaling units own their memory's request port while they run.
        with m.If(own_sci):
            connect(m, sci.req, si.req)
        with m.If(own_sce):
            connect(m, sce.req, se.req)
        words_for_scale = Mux(own_sci, sci.words.ready, 0) | Mux(own_sce, sce.words.ready, 0)
        for unit in (sci, sce):
            m.d.comb += [unit.words.payload.eq(ev.words.payload), unit.words.valid.eq(1)]
        with m.If(own_sci | own_sce):
            m.d.comb += ev.words.ready.eq(words_for_scale)

        # Host weight port (idle only), through a register: the synapse memories' ``ready``
        # depends on the request (a SCALE may have to wait), so without it the chip's command
        # logic, the request multiplexers, the memories' issue logic and the scaling units
        # formed one combinational path, the slowest of the chip.
        hreq = stream.Signature(self.wreq.payload.shape()).create()
        with m.If(self.wreq.valid & self.wreq.ready):
            m.d.sync += [hreq.valid.eq(1), hreq.payload.eq(self.wreq.payload)]
        with m.Elif(hreq.ready):
            m.d.sync += hreq.valid.eq(0)
        m.d.comb += self.wreq.ready.eq(~hreq.valid | hreq.ready)
        with m.If(own_host):
            with m.If(hreq.payload.proj == 0):
                m.d.comb += [
                    si.req.valid.eq(hreq.valid),
                    si.req.payload.op.eq(Mux(hreq.payload.write, synapse.Op.WRITE,
                                             synapse.Op.ACC)),
                    si.req.payload.row.eq(hreq.payload.row),
                    si.req.payload.col.eq(hreq.payload.col),
                    si.req.payload.wdata.eq(hreq.payload.wdata),
                    hreq.ready.eq(si.req.ready),
                ]
            with m.Else():
                m.d.comb += [
                    se.req.valid.eq(hreq.valid),
                    se.req.payload.op.eq(Mux(hreq.payload.write, synapse.Op.WRITE,
                                             synapse.Op.ACC)),
                    se.req.payload.row.eq(hreq.payload.row),
                    se.req.payload.col.eq(hreq.payload.col),
                    se.req.payload.wdata.eq(hreq.payload.wdata),
                    hreq.ready.eq(se.req.ready),
                ]
            m.d.comb += host_acc.eq(1)

        # acc streams: to the accumulators, or to the host in IDLE.
        wrow = self.wrow
        with m.If(host_acc):
            for mem in (si, se):
                with m.If(mem.acc.valid):
                    beat = mem.acc.payload
                    m.d.comb += [
                        wrow.valid.eq(1),
                        wrow.payload.row.eq(beat.row),
                        wrow.payload.col.eq(beat.col),
                        wrow.payload.mask.eq(beat.mask),
                        wrow.payload.last.eq(beat.last),
                        mem.acc.ready.eq(wrow.ready),
                    ]
                    m.d.comb += [wrow.payload.weights[s].eq(beat.weights[s])
                                 for s in range(mem.lanes)]
        with m.Else():
            connect(m, si.acc, ae.add)
            connect(m, se.acc, ac.add)
        return m

