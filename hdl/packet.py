"""Packet engine: the chip's side of the framed host protocol (``firmware/protocol.py``).

The engine turns the byte stream from the link (UART or the PCIe stream) into checked
requests and sends the answers back as frames. A frame is held whole in the *request buffer*
and checked before anything acts on it, in this order: CRC, type, length, sequence number. A
frame that fails gets a NAK with the :class:`~symspike.firmware.protocol.Error` code and
bumps that code's counter; nothing else happens, so a bad frame cannot change state.

A good request goes to the command executor (``req``), which reads its payload through
``pl_addr``/``pl_data``, writes its answer's payload into the *reply buffer* and finishes with
``rsp`` (an ACK of ``len`` bytes, or a NAK with a code). The reply buffer keeps the answer:
a retry (same ``SEQ`` as the previous accepted request) is answered from it again and not
executed twice. Bytes outside frames are skipped and answered by one NAK ``GARBAGE`` when the
line falls quiet; a frame that stops half-way is answered by NAK ``TRUNCATED`` after
``timeout`` cycles without a byte; a length above ``MAX_PAYLOAD`` by NAK ``OVERSIZE`` once the
bytes that follow it (discarded) have stopped and the line is quiet.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..firmware import protocol as P

__all__ = ["crc16_step", "RequestInfo", "Response", "PacketEngine"]

#: Error codes with a counter (``Error`` values 1 … 10).
N_ERRORS = max(int(e) for e in P.Error) + 1


def _crc16_matrix():
    # The CRC step is linear over GF(2): each bit of the next CRC is the XOR of some bits of
    # the current CRC (0–15) and of the byte (16–23). Run the bitwise algorithm on sets of
    # those input bits, XOR being the symmetric difference.
    c = [{k} for k in range(16)]
    for k in range(8):
        c[8 + k] = c[8 + k] ^ {16 + k}
    for _ in range(8):
        top = c[15]
        c = [set()] + c[:15]
        for k in range(16):
            if 0x1021 >> k & 1:
                c[k] = c[k] ^ top
    return [sorted(bits) for bits in c]


_CRC16_TAPS = _crc16_matrix()


def crc16_step(crc, byte):
    """CRC-16/CCITT-FALSE after one more ``byte``, as one XOR per output bit (the step is
    linear, so one byte per cycle costs a few LUT levels; an unrolled bitwise loop would
    repeat its subexpressions at every bit)."""
    # A narrower byte is zero-extended by the padding.
    inputs = Cat(Value.cast(crc)[:16], Value.cast(byte)[:8], Const(0, 8))
    out = []
    for taps in _CRC16_TAPS:
        bit = Const(0, 1)
        for t in taps:
            bit = bit ^ inputs[t]
        out.append(bit)
    return Cat(*out)


class RequestInfo(data.StructLayout):
    """A checked request: ``type`` and payload length ``len``."""

    def __init__(self):
        super().__init__({"type": unsigned(8), "len": range(P.MAX_PAYLOAD + 1)})


class Response(data.StructLayout):
    """The executor's answer: ``len`` reply bytes (ACK), or ``nak`` with ``code``."""

    def __init__(self):
        super().__init__({"len": range(P.MAX_PAYLOAD + 1), "nak": unsigned(1),
                          "code": unsigned(8)})


def _length_ok(type_, length):
    """Whether ``length`` is valid for ``type_`` per ``COMMANDS``; unknown types: False."""
    ok = Const(0, 1)
    for t, rule in P.COMMANDS.items():
        if isinstance(rule, int):
            cond = length == rule
        else:
            minimum, multiple = rule
            cond = length >= minimum
            if multiple > 1:
                cond = cond & ((length - minimum)[:multiple.bit_length() - 1] == 0)
        ok = Mux(type_ == int(t), cond, ok)
    return ok


def _known(type_):
    known = Const(0, 1)
    for t in P.COMMANDS:
        known = known | (type_ == int(t))
    return known


class PacketEngine(wiring.Component):
    """Frame parser, checker and answer framer of the chip (see the module documentation).

    Parameters
    ----------
    timeout : int
        Cycles without a byte after which a started frame is truncated and pending garbage
        is answered (``FRAME_TIMEOUT_BITS`` bit times of the link).

    Members
    -------
    rx : ``In(stream.Signature(unsigned(8)))``
        Bytes from the link.
    tx : ``Out(stream.Signature(unsigned(8)))``
        Bytes to the link.
    tx_last : ``Out(1)``
        With ``tx``: the last byte of a frame (a DMA engine ends its packet there).
    req : ``Out(stream.Signature(RequestInfo()))``
        A checked request for the executor; taken when the executor starts it.
    pl_addr : ``In(range(MAX_PAYLOAD))``, pl_data : ``Out(8)``
        The request payload, one cycle read latency.
    rb_addr : ``In(range(MAX_PAYLOAD))``, rb_data : ``In(8)``, rb_we : ``In(1)``
        Writes of the reply payload.
    rsp : ``In(stream.Signature(Response()))``
        The executor's answer to the request it took.
    idle : ``Out(1)``
        Between frames, nothing pending or being sent (time may stand still).
    frames, retries : ``Out(32)``
        Requests executed; retries answered from the stored reply.
    errors : ``Out(ArrayLayout(16, N_ERRORS))``
        Counter of each :class:`~symspike.firmware.protocol.Error` code (index = code).
    """

    def __init__(self, *, timeout: int):
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 2:
            raise ValueError(f"timeout must be an int ≥ 2 cycles, not {timeout!r}")
        self._timeout = timeout
        super().__init__({
            "rx": In(stream.Signature(unsigned(8))),
            "tx": Out(stream.Signature(unsigned(8))),
            "tx_last": Out(1),
            "req": Out(stream.Signature(RequestInfo())),
            "pl_addr": In(range(P.MAX_PAYLOAD)),
            "pl_data": Out(8),
            "rb_addr": In(range(P.MAX_PAYLOAD)),
            "rb_data": In(8),
            "rb_we": In(1),
            "rsp": In(stream.Signature(Response())),
            "idle": Out(1),
            "frames": Out(32),
            "retries": Out(32),
            "errors": Out(data.ArrayLayout(unsigned(16), N_ERRORS)),
        })
        self.req_mem = Memory(shape=8, depth=P.MAX_PAYLOAD, init=[])
        self.rep_mem = Memory(shape=8, depth=P.MAX_PAYLOAD, init=[])

    @property
    def timeout(self) -> int:
        return self._timeout

    def elaborate(self, platform):
        m = Module()
        m.submodules.req_mem = self.req_mem
        m.submodules.rep_mem = self.rep_mem
        req_w = self.req_mem.write_port()
        req_r = self.req_mem.read_port()
        rep_w = self.rep_mem.write_port()
        rep_r = self.rep_mem.read_port()
        m.d.comb += [req_r.addr.eq(self.pl_addr), self.pl_data.eq(req_r.data),
                     rep_w.addr.eq(self.rb_addr), rep_w.data.eq(self.rb_data),
                     rep_w.en.eq(self.rb_we)]

        # ------------------------------------------------------------ the frame being read
        f_type = Signal(8)
        f_seq = Signal(8)
        f_len = Signal(range(1 << 16))
        f_crc = Signal(16)
        count = Signal(range(P.MAX_PAYLOAD + 2))
        crc_lo = Signal(8)
        idle = Signal(range(self._timeout + 1))        # cycles since the last byte
        quiet = idle == self._timeout
        garbage = Signal()

        # Last accepted request, for retries and the sequence check.
        have_last = Signal()
        last_seq = Signal(8)
        last = Signal(Response())               # its stored answer
        last_type = Signal(8)

        # ------------------------------------------------------------ answer requests for TX
        # kind: 0 reply from the buffer (ACK or the executor's NAK), 1 NAK made here.
        send = Signal()
        send_nak = Signal()
        send_code = Signal(8)
        send_seq = Signal(8)
        send_type = Signal(8)          # the request type a NAK names
        send_len = Signal(range(P.MAX_PAYLOAD + 1))
        tx_busy = Signal()

        def error(code):
            m.d.sync += self.errors[int(code)].eq(self.errors[int(code)] + 1)

        def nak(code, seq, type_):
            m.d.sync += [send.eq(1), send_nak.eq(1), send_code.eq(int(code)),
                         send_seq.eq(seq), send_type.eq(type_)]
            error(code)

        byte = self.rx.payload
        got = self.rx.valid & self.rx.ready
        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(~quiet):
            m.d.sync += idle.eq(idle + 1)

        with m.FSM(name="rx") as rx_fsm:
            with m.State("SYNC"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got):
                    with m.If(byte == P.SYNC):
                        m.d.sync += [f_crc.eq(0xFFFF), count.eq(0)]
                        m.next = "TYPE"
                    with m.Else():
                        m.d.sync += garbage.eq(1)
                with m.Elif(garbage & quiet & ~send & ~tx_busy):
                    m.d.sync += garbage.eq(0)
                    nak(P.Error.GARBAGE, last_seq, 0)
            for state, nxt, target in (("TYPE", "SEQ", f_type), ("SEQ", "LEN_LO", f_seq)):
                with m.State(state):
                    m.d.comb += self.rx.ready.eq(1)
                    with m.If(got):
                        m.d.sync += [target.eq(byte), f_crc.eq(crc16_step(f_crc, byte))]
                        m.next = nxt
                    with m.Elif(quiet):
                        m.next = "TRUNCATED"
            with m.State("LEN_LO"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got):
                    m.d.sync += [f_len[:8].eq(byte), f_crc.eq(crc16_step(f_crc, byte))]
                    m.next = "LEN_HI"
                with m.Elif(quiet):
                    m.next = "TRUNCATED"
            with m.State("LEN_HI"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got):
                    m.d.sync += [f_len[8:].eq(byte), f_crc.eq(crc16_step(f_crc, byte))]
                    with m.If(Cat(f_len[:8], byte) > P.MAX_PAYLOAD):
                        m.next = "DISCARD"
                    with m.Elif(Cat(f_len[:8], byte) == 0):
                        m.next = "CRC_LO"
                    with m.Else():
                        m.next = "PAYLOAD"
                with m.Elif(quiet):
                    m.next = "TRUNCATED"
            with m.State("PAYLOAD"):
                m.d.comb += [self.rx.ready.eq(1), req_w.addr.eq(count), req_w.data.eq(byte),
                             req_w.en.eq(got)]
                with m.If(got):
                    m.d.sync += [f_crc.eq(crc16_step(f_crc, byte)), count.eq(count + 1)]
                    with m.If(count + 1 == f_len):
                        m.next = "CRC_LO"
                with m.Elif(quiet):
                    m.next = "TRUNCATED"
            with m.State("CRC_LO"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got):
                    m.d.sync += crc_lo.eq(byte)
                    m.next = "CRC_HI"
                with m.Elif(quiet):
                    m.next = "TRUNCATED"
            with m.State("CRC_HI"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got):
                    with m.If(Cat(crc_lo, byte) != f_crc):
                        m.next = "BAD_CRC"
                    with m.Else():
                        m.next = "CHECK"
                with m.Elif(quiet):
                    m.next = "TRUNCATED"
            with m.State("TRUNCATED"):
                with m.If(~send & ~tx_busy):
                    nak(P.Error.TRUNCATED, f_seq, f_type)
                    m.next = "SYNC"
            with m.State("BAD_CRC"):
                with m.If(~send & ~tx_busy):
                    nak(P.Error.CRC, f_seq, f_type)
                    m.next = "SYNC"
            with m.State("DISCARD"):
                # The rest of an oversize frame is not garbage of its own. The NAK waits for
                # the quiet line: a host that resends on it is then heard, not discarded.
                m.d.comb += self.rx.ready.eq(1)
                with m.If(quiet & ~got):
                    m.next = "OVERSIZE"
            with m.State("OVERSIZE"):
                with m.If(~send & ~tx_busy):
                    nak(P.Error.OVERSIZE, f_seq, f_type)
                    m.next = "SYNC"
            with m.State("CHECK"):
                is_identify = f_type == int(P.Type.IDENTIFY)
                retry = have_last & (f_seq == last_seq) & ~is_identify & \
                    (f_type == last_type)
                in_order = ~have_last | is_identify | (f_seq == (last_seq + 1)[:8])
                with m.If(~send & ~tx_busy):
                    with m.If(~_known(f_type)):
                        nak(P.Error.TYPE, f_seq, f_type)
                        m.next = "SYNC"
                    with m.Elif(~_length_ok(f_type, f_len)):
                        nak(P.Error.LENGTH, f_seq, f_type)
                        m.next = "SYNC"
                    with m.Elif(retry):
                        m.d.sync += [send.eq(1), send_nak.eq(last.nak),
                                     send_code.eq(last.code), send_seq.eq(f_seq),
                                     send_type.eq(f_type), send_len.eq(last.len),
                                     self.retries.eq(self.retries + 1)]
                        m.next = "SYNC"
                    with m.Elif(~in_order):
                        nak(P.Error.SEQUENCE, f_seq, f_type)
                        m.next = "SYNC"
                    with m.Else():
                        m.next = "EXECUTE"
            with m.State("EXECUTE"):
                m.d.comb += [self.req.valid.eq(1), self.req.payload.type.eq(f_type),
                             self.req.payload.len.eq(f_len)]
                with m.If(self.req.ready):
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.rsp.ready.eq(1)
                with m.If(self.rsp.valid):
                    r = self.rsp.payload
                    m.d.sync += [have_last.eq(1), last_seq.eq(f_seq), last_type.eq(f_type),
                                 last.eq(r), self.frames.eq(self.frames + 1),
                                 send.eq(1), send_nak.eq(r.nak), send_code.eq(r.code),
                                 send_seq.eq(f_seq), send_type.eq(f_type), send_len.eq(r.len)]
                    with m.If(r.nak):
                        m.d.sync += self.errors[r.code[:4]].eq(self.errors[r.code[:4]] + 1)
                    m.next = "SYNC"

        # ------------------------------------------------------------ TX framer
        t_crc = Signal(16)
        t_idx = Signal(range(P.MAX_PAYLOAD + 1))
        t_len = Signal(range(P.MAX_PAYLOAD + 1))
        m.d.comb += rep_r.addr.eq(t_idx)

        def emit(value, nxt, crc=True):
            m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(value)]
            with m.If(self.tx.ready):
                if crc:
                    m.d.sync += t_crc.eq(crc16_step(t_crc, value))
                m.next = nxt

        with m.FSM(name="tx") as tx_fsm:
            with m.State("IDLE"):
                with m.If(send):
                    m.d.sync += [tx_busy.eq(1), send.eq(0), t_crc.eq(0xFFFF), t_idx.eq(0),
                                 t_len.eq(Mux(send_nak, 2, send_len))]
                    m.next = "SYNC"
            with m.State("SYNC"):
                emit(P.SYNC, "TYPE", crc=False)
            with m.State("TYPE"):
                emit(Mux(send_nak, int(P.Type.NAK), int(P.Type.ACK)), "SEQ")
            with m.State("SEQ"):
                emit(send_seq, "LEN_LO")
            with m.State("LEN_LO"):
                emit(t_len[:8], "LEN_HI")
            with m.State("LEN_HI"):
                with m.If(t_len == 0):
                    emit(t_len[8:], "CRC_LO")
                with m.Else():
                    emit(t_len[8:], "FETCH")
            with m.State("FETCH"):
                # One cycle for the reply buffer's read.
                m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                value = Mux(send_nak, Mux(t_idx == 0, send_code, send_type), rep_r.data)
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(value)]
                with m.If(self.tx.ready):
                    m.d.sync += [t_crc.eq(crc16_step(t_crc, value)), t_idx.eq(t_idx + 1)]
                    with m.If(t_idx + 1 == t_len):
                        m.next = "CRC_LO"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("CRC_LO"):
                emit(t_crc[:8], "CRC_HI", crc=False)
            with m.State("CRC_HI"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(t_crc[8:]),
                             self.tx_last.eq(1)]
                with m.If(self.tx.ready):
                    m.d.sync += tx_busy.eq(0)
                    m.next = "IDLE"
        m.d.comb += self.idle.eq(rx_fsm.ongoing("SYNC") & ~garbage & ~send &
                                 tx_fsm.ongoing("IDLE") & ~self.rx.valid)
        return m
