"""The chip: network core, packet engine, command executor, registers, UART and DMA stream.

:class:`ChipTop` is what a bitstream and the virtual board hold. Requests arrive as frames of
the host protocol (``firmware/protocol.py``) on the UART pins or on the PCIe stream pair
(``h2c``/``c2h``, XDMA-style host-to-card and card-to-host byte streams); the
:class:`~symspike.hdl.packet.PacketEngine` checks them and hands each good request to the
:class:`CommandUnit`, which runs it on the :class:`~symspike.hdl.core.NetworkCore` and writes
the answer. A frame's first ``SYNC`` byte decides which link it came from; its answer goes back
on the same link.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped
from amaranth.utils import bits_for

from ..firmware import protocol as P
from ..firmware.asm import PROGRAM_DEPTH
from ..firmware.config import NetworkConfig
from . import lif
from .core import CoreOp, NetworkCore
from .packet import N_ERRORS, PacketEngine, RequestInfo, Response
from .uart import UART

__all__ = ["CommandUnit", "ChipTop", "id_block"]

#: Payload bytes the command unit reads into registers before it dispatches.
HDR_BYTES = 8


def id_block(cfg: NetworkConfig, epoch: int = 0) -> bytes:
    """The ID block of a chip built for ``cfg`` (``protocol.IdBlock``)."""
    return P.IdBlock(P.MAGIC, P.VERSION, cfg.config_id, cfg.n_exc, cfg.lanes,
                     cfg.pipelines, cfg.encoder_lanes, epoch).pack()


class CommandUnit(wiring.Component):
    """Executes checked requests on the network core and writes their answers.

    Parameters
    ----------
    cfg : NetworkConfig

    Members
    -------
    req, pl_addr, pl_data, rb_addr, rb_data, rb_we, rsp
        The executor side of :class:`~symspike.hdl.packet.PacketEngine`.
    frames, retries, errors
        The engine's counters, readable as registers.
    core
        The network core's host ports (``start`` … ``e_total``), driven from here.
    """

    def __init__(self, cfg: NetworkConfig, core_signature):
        self._cfg = cfg
        members = {
            "req": In(stream.Signature(RequestInfo())),
            "pl_addr": Out(range(P.MAX_PAYLOAD)),
            "pl_data": In(8),
            "rb_addr": Out(range(P.MAX_PAYLOAD)),
            "rb_data": Out(8),
            "rb_we": Out(1),
            "rsp": Out(stream.Signature(Response())),
            "frames": In(32),
            "retries": In(32),
            "errors": In(data.ArrayLayout(unsigned(16), N_ERRORS)),
            "core": Out(core_signature.flip()),
            "idle": Out(1),
        }
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        core = self.core
        n, n_c, n_in = cfg.n_exc, cfg.n_classes, cfg.n_input
        B = cfg.formats.weight_bits

        typ = Signal(8)
        length = Signal(range(P.MAX_PAYLOAD + 1))
        hdr = Signal(8 * HDR_BYTES)
        idx = Signal(range(P.MAX_PAYLOAD + 2))      # payload / item index
        ro = Signal(range(P.MAX_PAYLOAD + 1))       # reply offset
        code = Signal(8)
        epoch = Signal(32)
        presentations = Signal(32)
        cycles = Signal(32)                         # of the last presentation command
        cycles_run = Signal(32)                     # of the running one, so far
        aer_open = Signal()                         # AER steps still to come
        aer_steps = Signal(range(cfg.steps_present + 1))
        last_aer = Signal()                         # the last presentation was AER
        core_present = Signal()                     # a PRESENT runs on the core
        aer_intensity = Signal(8)
        ends = Signal(range(P.MAX_PAYLOAD))         # step ends in an AER frame
        prev = Signal(17)                           # previous event of the step (+1)
        word = Signal(32)                           # value being emitted
        nbytes = Signal(3)                          # its bytes left
        item = Signal(range(max(n_in, n) + 1))      # row / neuron / column counter
        total = Signal(range(n_in + 2 * 256))       # PRESENT_RUNS: pixels so far
        # The check of the runs compares each run's count, taken into a register from the
        # payload's block RAM, with what is left of the payload and of the 784 pixels, also
        # held in registers: no adder and comparator after the block RAM's slow output.
        room = Signal(signed(bits_for(P.MAX_PAYLOAD) + 1))      # payload bytes after a count
        pix_room = Signal(signed(bits_for(n_in) + 2))           # pixels not yet claimed
        zeros_left = Signal(8)                      # … of the run being expanded
        count_left = Signal(8)
        limit = Signal(range(max(n_in, n) + 1))
        # The LIF state port from registers: its address reaches the LIF's many LUT-RAM
        # read ports across the device (the N = 400 chip's slowest path when it came from
        # the command state).
        # θ is the only word the host reads or writes through it.
        st_addr = Signal.like(core.state.addr)
        st_we = Signal()
        st_wdata = Signal.like(core.state.wdata)
        m.d.sync += st_we.eq(0)
        m.d.comb += [core.state.addr.eq(st_addr), core.state.sel.eq(lif.Word.THETA),
                     core.state.we.eq(st_we), core.state.wdata.eq(st_wdata)]

        def hbyte(k):
            return hdr[8 * k:8 * k + 8]

        def h16(k):
            return hdr[8 * k:8 * k + 16]

        flags = hbyte(0)
        proj = hbyte(0)

        def reply_byte(value):
            m.d.comb += [self.rb_addr.eq(ro), self.rb_data.eq(value), self.rb_we.eq(1)]
            m.d.sync += ro.eq(ro + 1)

        def offer_pixel(value, first):
            m.d.comb += [core.pixels.valid.eq(1), core.pixels.payload.value.eq(value),
                         core.pixels.payload.first.eq(first)]

        def finish(nak_code=None):
            m.d.sync += code.eq(0 if nak_code is None else int(nak_code))
            m.next = "ANSWER" if nak_code is None else "NAK"

        # Register file (read side).
        reg_addr = h16(0)
        reg_value = Signal(32)
        reg_ok = Signal()
        regs = {
            P.Reg.MAGIC: P.MAGIC, P.Reg.VERSION: P.VERSION, P.Reg.CONFIG_ID: cfg.config_id,
            P.Reg.EPOCH: epoch,
            P.Reg.STATUS: Cat(core.busy | core_present, aer_open),
            P.Reg.FRAMES: self.frames, P.Reg.RETRIES: self.retries,
            P.Reg.PRESENTATIONS: presentations, P.Reg.CYCLES: cycles,
        }
        with m.Switch(reg_addr):
            for addr, value in regs.items():
                with m.Case(int(addr)):
                    m.d.comb += [reg_value.eq(value), reg_ok.eq(1)]
            for c in range(1, N_ERRORS):
                with m.Case(int(P.Reg.ERRORS) + c):
                    m.d.comb += [reg_value.eq(self.errors[c]), reg_ok.eq(1)]
        n_rng = P.rng_registers(cfg.encoder_lanes)
        rng_reg = (reg_addr >= int(P.Reg.RNG)) & (reg_addr < int(P.Reg.RNG) + n_rng)
        m.d.comb += [core.rng_addr.eq(reg_addr - int(P.Reg.RNG)), core.rng_wdata.eq(hdr[16:48])]
        with m.If(rng_reg):
            m.d.comb += [reg_value.eq(core.rng_data), reg_ok.eq(1)]

        # CYCLES counts the cycles ``busy`` is high, the cycle budget's count: from the one
        # after the core's start (where the count is 1) to the one that signals done.
        with m.If(core.start):
            m.d.sync += cycles_run.eq(1)
        with m.Elif(core_present & ~cycles_run.all()):
            m.d.sync += cycles_run.eq(cycles_run + 1)
        # Presentations, re-presentations included, counted when the core ends a PRESENT.
        with m.If(core.done & core_present):
            m.d.sync += [presentations.eq(presentations + core.presentations),
                         cycles.eq(cycles_run), core_present.eq(0)]

        ident = id_block(cfg)
        rows = Mux(proj == 0, n_in, n)
        cols = Mux(proj == 0, n, n_c)
        phase_ok = flags < 8
        teach = flags[2]
        label_ok = ~teach | (hbyte(1) < n_c)

        with m.FSM(name="cmd") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.req.ready.eq(1)
                with m.If(self.req.valid):
                    m.d.sync += [typ.eq(self.req.payload.type), length.eq(self.req.payload.len),
                                 idx.eq(0), ro.eq(0), hdr.eq(0)]
                    m.next = "HDR"
            with m.State("HDR"):
                # Byte k is read at idx = k and arrives a cycle later.
                m.d.comb += self.pl_addr.eq(idx)
                m.d.sync += idx.eq(idx + 1)
                with m.If((idx > 0) & (idx <= HDR_BYTES)):
                    m.d.sync += hdr.eq(Cat(hdr[8:], self.pl_data))
                with m.If(idx == HDR_BYTES):
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.sync += [idx.eq(0), item.eq(0)]
                with m.Switch(typ):
                    with m.Case(P.Type.IDENTIFY):
                        m.next = "IDENTIFY"
                    with m.Case(P.Type.READ_REG):
                        with m.If(~reg_ok):
                            finish(P.Error.ADDRESS)
                        with m.Else():
                            m.d.sync += [word.eq(reg_value), nbytes.eq(4)]
                            m.next = "EMIT_LAST"
                    with m.Case(P.Type.WRITE_REG):
                        with m.If(reg_addr == int(P.Reg.EPOCH)):
                            m.d.sync += epoch.eq(hdr[16:48])
                            finish()
                        with m.Elif(~rng_reg):
                            finish(P.Error.ADDRESS)
                        with m.Elif(hdr[16:48] == 0):
                            finish(P.Error.ARGUMENT)
                        with m.Elif(core.busy | core_present | aer_open):
                            finish(P.Error.STATE)
                        with m.Else():
                            m.d.comb += core.rng_we.eq(1)
                            finish()
                    with m.Case(P.Type.PRESENT, P.Type.PRESENT_RUNS):
                        with m.If(~phase_ok | ~label_ok):
                            finish(P.Error.ARGUMENT)
                        with m.Elif(core.busy):
                            finish(P.Error.STATE)
                        with m.Else():
                            m.d.sync += [idx.eq(2), pix_room.eq(n_in)]
                            with m.If(typ == P.Type.PRESENT):
                                m.next = "PIXELS"
                            with m.Else():
                                m.next = "RUNS_CHECK"
                    with m.Case(P.Type.AER_BEGIN):
                        with m.If(~phase_ok | ~label_ok | (hbyte(2) > cfg.intensity_max)):
                            finish(P.Error.ARGUMENT)
                        with m.Elif(core.busy):
                            finish(P.Error.STATE)
                        with m.Else():
                            m.d.comb += [core.start.eq(1), core.op.eq(CoreOp.PRESENT),
                                         core.aer.eq(1)]
                            m.d.sync += [aer_open.eq(1), aer_intensity.eq(hbyte(2)),
                                         aer_steps.eq(cfg.steps_present), last_aer.eq(1),
                                         core_present.eq(1)]
                            finish()
                    with m.Case(P.Type.AER):
                        with m.If(~aer_open):
                            finish(P.Error.STATE)
                        with m.Else():
                            m.d.sync += [ends.eq(0), prev.eq(0)]
                            m.next = "AER_CHECK"
                    with m.Case(P.Type.RESULT):
                        with m.If(aer_open):
                            # The presentation still waits for events: it cannot end.
                            finish(P.Error.STATE)
                        with m.Else():
                            m.next = "RESULT_WAIT"
                    with m.Case(P.Type.SCALE):
                        with m.If(~phase_ok):
                            finish(P.Error.ARGUMENT)
                        with m.Elif(core.busy):
                            finish(P.Error.STATE)
                        with m.Else():
                            m.d.comb += [core.start.eq(1), core.op.eq(CoreOp.SCALE)]
                            m.next = "WAIT_CORE"
                    with m.Case(P.Type.READ_ROW, P.Type.WRITE_ROW):
                        with m.If((proj > 1) | (h16(1) >= rows)):
                            finish(P.Error.ADDRESS)
                        with m.Elif((typ == P.Type.WRITE_ROW) & (length != 3 + cols)):
                            finish(P.Error.LENGTH)
                        with m.Elif(core.busy):
                            finish(P.Error.STATE)
                        with m.Elif(typ == P.Type.READ_ROW):
                            m.next = "ROW_REQ"
                        with m.Else():
                            m.d.sync += [idx.eq(3), limit.eq(cols)]
                            m.next = "WROW"
                    with m.Case(P.Type.READ_THETA):
                        with m.If(h16(2) == 0):
                            finish(P.Error.ARGUMENT)
                        with m.Elif((h16(2) > 255) | (h16(0) + h16(2) > n)):
                            finish(P.Error.ADDRESS)
                        with m.Elif(core.busy):
                            finish(P.Error.STATE)
                        with m.Else():
                            m.d.sync += [item.eq(h16(0)), limit.eq(h16(0) + h16(2))]
                            m.next = "THETA_ADDR"
                    with m.Case(P.Type.WRITE_THETA):
                        count = (length - 2) >> 2
                        with m.If(h16(0) + count > n):
                            finish(P.Error.ADDRESS)
                        with m.Elif(core.busy):
                            finish(P.Error.STATE)
                        with m.Else():
                            m.d.sync += [item.eq(h16(0)), limit.eq(h16(0) + count),
                                         idx.eq(5)]
                            m.next = "WTHETA_CHECK"
                    with m.Case(P.Type.READ_COUNTS):
                        pop_n = Mux(hbyte(0) == 0, n, n_c)
                        with m.If(h16(3) == 0):
                            finish(P.Error.ARGUMENT)
                        with m.Elif((hbyte(0) > 1) | (h16(3) > 255) |
                                    (h16(1) + h16(3) > pop_n)):
                            finish(P.Error.ADDRESS)
                        with m.Else():
                            m.d.sync += [item.eq(h16(1)), limit.eq(h16(1) + h16(3))]
                            m.next = "COUNT_ADDR"
                    with m.Case(P.Type.LOAD_PROGRAM):
                        count = (length - 1) >> 1
                        with m.If(hbyte(0) + count > PROGRAM_DEPTH):
                            finish(P.Error.ADDRESS)
                        with m.Elif(core.busy):
                            finish(P.Error.STATE)
                        with m.Else():
                            m.d.sync += [item.eq(hbyte(0)), idx.eq(1)]
                            m.next = "PROG_READ"
                    with m.Default():
                        finish(P.Error.TYPE)

            # ---------------------------------------------------------------- IDENTIFY
            with m.State("IDENTIFY"):
                value = Array([Const(b, 8) for b in ident[:-4]] +
                              [epoch[8 * k:8 * k + 8] for k in range(4)])[ro]
                reply_byte(value)
                with m.If(ro == len(ident) - 1):
                    finish()

            # ---------------------------------------------------------------- emit a word
            with m.State("EMIT_LAST"):
                reply_byte(word[:8])
                m.d.sync += [word.eq(word >> 8), nbytes.eq(nbytes - 1)]
                with m.If(nbytes == 1):
                    finish()

            # ---------------------------------------------------------------- PRESENT
            with m.State("PIXELS"):
                m.d.comb += self.pl_addr.eq(idx)
                m.next = "PIXEL"
            with m.State("PIXEL"):
                offer_pixel(self.pl_data, idx == 2)
                m.d.comb += self.pl_addr.eq(idx)
                with m.If(core.pixels.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 2 + n_in - 1):
                        m.next = "PRESENT_START"
                    with m.Else():
                        m.next = "PIXELS"
            # ---------------------------------------------------------------- PRESENT_RUNS
            # The runs are walked once to check them, so that a bad frame is refused before
            # a pixel reaches the encoder, and again to expand them into its 784 pixels.
            with m.State("RUNS_CHECK"):
                m.d.comb += self.pl_addr.eq(idx)
                m.d.sync += room.eq(length - idx - 2)
                with m.If(idx == length):
                    m.d.sync += [idx.eq(2), total.eq(0), zeros_left.eq(0), count_left.eq(0)]
                    m.next = "RUNS_NEXT"
                with m.Elif(idx + 1 == length):
                    finish(P.Error.ARGUMENT)        # a zeros byte without its count
                with m.Else():
                    m.next = "RUNS_CHECK_ZEROS"
            with m.State("RUNS_CHECK_ZEROS"):
                m.d.comb += self.pl_addr.eq(idx + 1)
                m.d.sync += pix_room.eq(pix_room - self.pl_data)
                m.next = "RUNS_CHECK_COUNT"
            with m.State("RUNS_CHECK_COUNT"):
                m.d.sync += count_left.eq(self.pl_data)
                m.next = "RUNS_CHECK_RUN"
            with m.State("RUNS_CHECK_RUN"):
                # A run past the payload, or past the 784th pixel (zeros included).
                with m.If((count_left > room) | (count_left > pix_room)):
                    finish(P.Error.ARGUMENT)
                with m.Else():
                    m.d.sync += [idx.eq(idx + 2 + count_left),
                                 pix_room.eq(pix_room - count_left)]
                    m.next = "RUNS_CHECK"
            with m.State("RUNS_NEXT"):
                m.d.comb += self.pl_addr.eq(idx)
                with m.If(idx == length):
                    m.next = "RUNS_PAD"
                with m.Else():
                    m.next = "RUNS_ZEROS_BYTE"
            with m.State("RUNS_ZEROS_BYTE"):
                m.d.comb += self.pl_addr.eq(idx + 1)
                m.d.sync += zeros_left.eq(self.pl_data)
                m.next = "RUNS_COUNT_BYTE"
            with m.State("RUNS_COUNT_BYTE"):
                m.d.sync += [count_left.eq(self.pl_data), idx.eq(idx + 2)]
                m.next = "RUNS_ZEROS"
            with m.State("RUNS_ZEROS"):
                with m.If(zeros_left == 0):
                    m.next = "RUNS_VALUES"
                with m.Else():
                    offer_pixel(0, total == 0)
                    with m.If(core.pixels.ready):
                        m.d.sync += [zeros_left.eq(zeros_left - 1), total.eq(total + 1)]
            with m.State("RUNS_VALUES"):
                m.d.comb += self.pl_addr.eq(idx)
                with m.If(count_left == 0):
                    m.next = "RUNS_NEXT"
                with m.Else():
                    m.next = "RUNS_VALUE"
            with m.State("RUNS_VALUE"):
                offer_pixel(self.pl_data, total == 0)
                m.d.comb += self.pl_addr.eq(idx)
                with m.If(core.pixels.ready):
                    m.d.sync += [idx.eq(idx + 1), count_left.eq(count_left - 1),
                                 total.eq(total + 1)]
                    m.next = "RUNS_VALUES"
            with m.State("RUNS_PAD"):
                with m.If(total == n_in):
                    m.next = "PRESENT_START"
                with m.Else():
                    offer_pixel(0, total == 0)
                    with m.If(core.pixels.ready):
                        m.d.sync += total.eq(total + 1)
            with m.State("PRESENT_START"):
                m.d.comb += [core.start.eq(1), core.op.eq(CoreOp.PRESENT)]
                m.d.sync += [last_aer.eq(0), core_present.eq(1)]
                m.next = "RESULT_WAIT"
            with m.State("RESULT_WAIT"):
                with m.If(~core.busy & ~core.start & ~core_present):
                    m.next = "RESULT"
            with m.State("RESULT"):
                with m.Switch(ro):
                    with m.Case(0):
                        reply_byte(core.presentations)
                    with m.Case(1):
                        reply_byte(Mux(last_aer, aer_intensity, core.intensity))
                    with m.Case(2):
                        reply_byte(core.e_total[:8])
                    with m.Case(3):
                        reply_byte(core.e_total[8:16])
                        m.d.sync += item.eq(0)
                        m.next = "RESULT_COUNT"
            with m.State("RESULT_COUNT"):
                m.d.comb += core.c_count_addr.eq(item)
                m.next = "RESULT_COUNT_LO"
            with m.State("RESULT_COUNT_LO"):
                m.d.comb += core.c_count_addr.eq(item)
                reply_byte(core.c_count[:8])
                m.next = "RESULT_COUNT_HI"
            with m.State("RESULT_COUNT_HI"):
                m.d.comb += core.c_count_addr.eq(item)
                reply_byte(Cat(core.c_count, Const(0, 16))[8:16])
                m.d.sync += item.eq(item + 1)
                with m.If(item == n_c - 1):
                    finish()
                with m.Else():
                    m.next = "RESULT_COUNT"

            # ---------------------------------------------------------------- AER
            with m.State("AER_CHECK"):
                # Every word is checked before the first is used, so a bad frame does
                # nothing: addresses are inputs, strictly ascending within a step, and no
                # event or step end goes beyond the presentation's last step. Byte
                # ``idx − 1`` arrives now: low bytes at odd ``idx``, high bytes at even. A
                # word is checked in the cycle after its high byte, from registers (the
                # payload memory's output meets no comparator): at odd ``idx ≥ 3``, the
                # last at ``idx = length + 1``.
                m.d.comb += self.pl_addr.eq(idx)
                m.d.sync += idx.eq(idx + 1)
                with m.If(idx[0]):
                    m.d.sync += word[:8].eq(self.pl_data)
                with m.Elif(idx > 0):
                    m.d.sync += word[8:16].eq(self.pl_data)
                with m.If(idx[0] & (idx > 1)):
                    w = word[:16]
                    is_end = w == P.AER_STEP_END
                    bad = Mux(is_end, ends + 1 > aer_steps,
                              (w >= n_in) | (w < prev) | (ends >= aer_steps))
                    with m.If(bad):
                        finish(P.Error.ARGUMENT)
                    with m.Else():
                        new_ends = ends + is_end
                        m.d.sync += [ends.eq(new_ends), prev.eq(Mux(is_end, 0, w + 1))]
                        with m.If(idx == length + 1):
                            m.d.sync += [aer_steps.eq(aer_steps - new_ends), idx.eq(0)]
                            with m.If(aer_steps == new_ends):
                                m.d.sync += aer_open.eq(0)
                            m.next = "AER_READ"
            with m.State("AER_READ"):
                m.d.comb += self.pl_addr.eq(idx)
                m.d.sync += idx.eq(idx + 1)
                m.next = "AER_LO"
            with m.State("AER_LO"):
                m.d.comb += self.pl_addr.eq(idx)
                m.d.sync += [word[:8].eq(self.pl_data), idx.eq(idx + 1)]
                m.next = "AER_HI"
            with m.State("AER_HI"):
                m.d.sync += word[8:16].eq(self.pl_data)
                m.next = "AER_PUSH"
            with m.State("AER_PUSH"):
                m.d.comb += [core.events.valid.eq(1), core.events.payload.eq(word[:16])]
                with m.If(core.events.ready):
                    with m.If(idx == length):
                        finish()
                    with m.Else():
                        m.next = "AER_READ"

            # ---------------------------------------------------------------- SCALE
            with m.State("WAIT_CORE"):
                with m.If(core.done):
                    finish()

            # ---------------------------------------------------------------- weights
            with m.State("ROW_REQ"):
                m.d.comb += [core.wreq.valid.eq(1), core.wreq.payload.write.eq(0),
                             core.wreq.payload.proj.eq(proj[0]),
                             core.wreq.payload.row.eq(h16(1))]
                with m.If(core.wreq.ready):
                    m.d.sync += item.eq(0)
                    m.next = "ROW_BEAT"
            lanes = core.wrow.payload.weights.shape().length
            beat = Signal.like(core.wrow.payload)
            with m.State("ROW_BEAT"):
                m.d.comb += core.wrow.ready.eq(1)
                with m.If(core.wrow.valid):
                    m.d.sync += [beat.eq(core.wrow.payload), item.eq(0)]
                    m.next = "ROW_BYTES"
            with m.State("ROW_BYTES"):
                lane = item[:max(1, (lanes - 1).bit_length())] if lanes > 1 else Const(0, 1)
                with m.If(beat.mask.bit_select(lane, 1)):
                    m.d.comb += [self.rb_addr.eq(beat.col + lane),
                                 self.rb_data.eq(beat.weights[lane]), self.rb_we.eq(1)]
                m.d.sync += item.eq(item + 1)
                with m.If(item == lanes - 1):
                    with m.If(beat.last):
                        m.d.sync += ro.eq(cols)
                        finish()
                    with m.Else():
                        m.next = "ROW_BEAT"
            with m.State("WROW"):
                m.d.comb += self.pl_addr.eq(idx)
                m.next = "WROW_PUT"
            with m.State("WROW_PUT"):
                m.d.comb += [core.wreq.valid.eq(1), core.wreq.payload.write.eq(1),
                             core.wreq.payload.proj.eq(proj[0]),
                             core.wreq.payload.row.eq(h16(1)),
                             core.wreq.payload.col.eq(idx - 3),
                             core.wreq.payload.wdata.eq(self.pl_data[:B]),
                             self.pl_addr.eq(idx)]
                with m.If(core.wreq.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx + 1 == length):
                        m.next = "WAIT_IDLE"
                    with m.Else():
                        m.next = "WROW"
            with m.State("WAIT_IDLE"):
                with m.If(~core.busy):
                    finish()

            # ---------------------------------------------------------------- θ
            with m.State("THETA_ADDR"):
                m.d.sync += st_addr.eq(item)
                m.next = "THETA_READ"
            with m.State("THETA_READ"):
                m.next = "THETA_DATA"
            with m.State("THETA_DATA"):
                m.d.sync += [word.eq(core.state.rdata), nbytes.eq(4)]
                m.next = "THETA_EMIT"
            with m.State("THETA_EMIT"):
                reply_byte(word[:8])
                m.d.sync += [word.eq(word >> 8), nbytes.eq(nbytes - 1)]
                with m.If(nbytes == 1):
                    m.d.sync += item.eq(item + 1)
                    with m.If(item + 1 == limit):
                        finish()
                    with m.Else():
                        m.next = "THETA_ADDR"
            with m.State("WTHETA_CHECK"):
                # θ words above θ's width are refused before any is written.
                m.d.comb += self.pl_addr.eq(idx)
                m.next = "WTHETA_CHECK_BYTE"
            with m.State("WTHETA_CHECK_BYTE"):
                m.d.sync += word[:8].eq(self.pl_data)
                m.next = "WTHETA_CHECK_TOP"
            with m.State("WTHETA_CHECK_TOP"):
                # From a register: the payload memory's output meets no comparator.
                with m.If(word[:8] >= (1 << max(0, cfg.formats.theta_bits - 24))):
                    finish(P.Error.ARGUMENT)
                with m.Elif(idx + 4 >= length):
                    m.d.sync += idx.eq(2)
                    m.next = "WTHETA_READ"
                with m.Else():
                    m.d.sync += idx.eq(idx + 4)
                    m.next = "WTHETA_CHECK"
            with m.State("WTHETA_READ"):
                m.d.comb += self.pl_addr.eq(idx)
                m.d.sync += [idx.eq(idx + 1), nbytes.eq(0)]
                m.next = "WTHETA_BYTE"
            with m.State("WTHETA_BYTE"):
                m.d.comb += self.pl_addr.eq(idx)
                m.d.sync += [word.eq(Cat(word[8:], self.pl_data)), nbytes.eq(nbytes + 1)]
                with m.If(nbytes == 3):
                    m.next = "WTHETA_WRITE"
                with m.Else():
                    m.d.sync += idx.eq(idx + 1)
            with m.State("WTHETA_WRITE"):
                # Written the next cycle, from the port's registers.
                m.d.sync += [st_addr.eq(item), st_we.eq(1), st_wdata.eq(word)]
                m.d.sync += item.eq(item + 1)
                with m.If(item + 1 == limit):
                    finish()
                with m.Else():
                    m.next = "WTHETA_READ"

            # ---------------------------------------------------------------- program
            with m.State("PROG_READ"):
                m.d.comb += self.pl_addr.eq(idx)
                m.d.sync += idx.eq(idx + 1)
                m.next = "PROG_LO"
            with m.State("PROG_LO"):
                m.d.comb += self.pl_addr.eq(idx)
                m.d.sync += [word[:8].eq(self.pl_data), idx.eq(idx + 1)]
                m.next = "PROG_HI"
            with m.State("PROG_HI"):
                m.d.comb += [core.prog_addr.eq(item), core.prog_data.eq(Cat(word[:8],
                                                                             self.pl_data)),
                             core.prog_we.eq(1)]
                m.d.sync += item.eq(item + 1)
                with m.If(idx == length):
                    finish()
                with m.Else():
                    m.next = "PROG_READ"

            # ---------------------------------------------------------------- counts
            with m.State("COUNT_ADDR"):
                m.d.comb += [core.e_count_addr.eq(item), core.c_count_addr.eq(item)]
                m.next = "COUNT_LO"
            with m.State("COUNT_LO"):
                cnt = Mux(hbyte(0) == 0, core.e_count, core.c_count)
                m.d.sync += word.eq(cnt)
                m.next = "COUNT_EMIT0"
            with m.State("COUNT_EMIT0"):
                reply_byte(word[:8])
                m.next = "COUNT_EMIT1"
            with m.State("COUNT_EMIT1"):
                reply_byte(word[8:16])
                m.d.sync += item.eq(item + 1)
                with m.If(item + 1 == limit):
                    finish()
                with m.Else():
                    m.next = "COUNT_ADDR"

            # ---------------------------------------------------------------- answers
            with m.State("ANSWER"):
                m.d.comb += [self.rsp.valid.eq(1), self.rsp.payload.len.eq(ro)]
                with m.If(self.rsp.ready):
                    m.next = "IDLE"
            with m.State("NAK"):
                m.d.comb += [self.rsp.valid.eq(1), self.rsp.payload.nak.eq(1),
                             self.rsp.payload.code.eq(code)]
                with m.If(self.rsp.ready):
                    m.next = "IDLE"

        m.d.comb += self.idle.eq(fsm.ongoing("IDLE") & ~core_present)
        # The phase flags of every core command come from the request's first byte.
        m.d.comb += [core.learn_in.eq(flags[0]), core.learn_ec.eq(flags[1]),
                     core.teacher.eq(flags[2]), core.label.eq(hbyte(1))]
        return m


class DmaByte(data.StructLayout):
    """A byte of the card-to-host stream; ``last`` ends an answer frame (the DMA engine's
    end of packet, which ends the host's read)."""

    def __init__(self):
        super().__init__({"data": unsigned(8), "last": unsigned(1)})


class ChipTop(wiring.Component):
    """The whole chip (see the module documentation).

    Parameters
    ----------
    cfg : NetworkConfig
    seed : int
        Run seed of the random streams.
    divisor : int
        UART clock cycles per bit.
    w_in, w_ec : array, optional
        Initial weight codes (as :class:`~symspike.hdl.core.NetworkCore`).

    Members
    -------
    uart_rx : ``In(1)``, uart_tx : ``Out(1)``
        The serial link.
    h2c : ``In(stream.Signature(unsigned(8)))``, c2h : ``Out(stream.Signature(DmaByte()))``
        The DMA byte streams (host to card, card to host).
    idle : ``Out(1)``
        Nothing to do until the next byte arrives: no frame half received, no command, no
        answer being sent, the core idle (a simulator may stop the clock meanwhile).
    """

    def __init__(self, cfg: NetworkConfig, *, seed: int = 0, divisor: int = 8, w_in=None,
                 w_ec=None):
        self._cfg = cfg
        self._divisor = divisor
        self.core = NetworkCore(cfg, seed=seed, w_in=w_in, w_ec=w_ec)
        self.uart = UART(divisor)
        self.engine = PacketEngine(timeout=P.FRAME_TIMEOUT_BITS * divisor)
        self.commands = CommandUnit(cfg, self.core.signature)
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "h2c": In(stream.Signature(unsigned(8))),
            "c2h": Out(stream.Signature(DmaByte())),
            "idle": Out(1),
        })

    @property
    def cfg(self) -> NetworkConfig:
        return self._cfg

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.uart = uart = self.uart
        m.submodules.engine = pe = self.engine
        m.submodules.commands = cu = self.commands
        m.d.comb += [uart.rx.eq(self.uart_rx), self.uart_tx.eq(uart.tx)]

        # The link of a frame's first byte owns the frame until its answer has gone out: the
        # other link's bytes wait meanwhile, and the answer goes back where the frame came
        # from.
        from_dma = Signal()
        in_frame = Signal()
        use_dma = Mux(in_frame, from_dma, self.h2c.valid & ~uart.rx_stream.valid)
        with m.If(use_dma):
            connect(m, flipped(self.h2c), pe.rx)
        with m.Else():
            connect(m, uart.rx_stream, pe.rx)
        with m.If(pe.rx.valid & pe.rx.ready & ~in_frame):
            m.d.sync += [from_dma.eq(use_dma), in_frame.eq(pe.rx.payload == P.SYNC)]
        with m.If(pe.tx.valid & pe.tx.ready & pe.tx_last):
            m.d.sync += in_frame.eq(0)
        with m.If(from_dma):
            m.d.comb += [self.c2h.valid.eq(pe.tx.valid), self.c2h.payload.data.eq(pe.tx.payload),
                         self.c2h.payload.last.eq(pe.tx_last), pe.tx.ready.eq(self.c2h.ready)]
        with m.Else():
            connect(m, pe.tx, uart.tx_stream)

        connect(m, pe.req, cu.req)
        connect(m, cu.rsp, pe.rsp)
        m.d.comb += [
            pe.pl_addr.eq(cu.pl_addr), cu.pl_data.eq(pe.pl_data),
            pe.rb_addr.eq(cu.rb_addr), pe.rb_data.eq(cu.rb_data), pe.rb_we.eq(cu.rb_we),
            cu.frames.eq(pe.frames), cu.retries.eq(pe.retries), cu.errors.eq(pe.errors),
        ]
        connect(m, cu.core, core)
        m.d.comb += self.idle.eq(pe.idle & cu.idle & ~core.busy & ~uart.tx_stream.valid)
        return m
