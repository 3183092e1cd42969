"""UART of the host link: 8 data bits, no parity, one stop bit (8N1), least significant bit first.

The bit rate is fixed when the design is built: ``divisor`` clock cycles per bit
(:func:`divisor_for` picks it from a clock and a baud rate and refuses a pair whose rate error
a standard UART would not tolerate). Both directions carry bytes as ``lib.stream`` streams.

Receiver (:class:`UARTRx`)
--------------------------
*Synchroniser.* The pin is asynchronous to the chip's clock: it passes two flip-flops before any
logic looks at it, so that a metastable first sample has a cycle to settle.

*Start bit.* A falling edge starts a start bit only when the line then *stays* low until the
middle of that bit (``divisor // 2 + 1`` consecutive low samples). A low pulse of at most
``divisor // 2`` cycles (half a bit, rounded down) is therefore never a start bit, whatever
its phase against the clock: it leaves the receiver idle, and the next falling edge is timed
afresh rather than from the glitch.

*Sampling.* Data and stop bits are sampled once each, at the middle of the bit as timed from
the start edge (``divisor // 2`` cycles into it: the centre for an odd divisor, the later of
the two central cycles for an even one). The stop bit is sampled about 9.5 bits after the
start edge, which is seen up to a cycle late, so a sender whose bits are up to
``(divisor // 2) / (9 · divisor)`` too long or ``(divisor - divisor // 2 - 1) / (10 ·
divisor)`` too short is still decoded: +5.6 % / −2.5 % at divisor 4, +4.8 % / −4.3 % at 7,
+5.6 % / −4.4 % at 16.

*Errors.* A stop bit sampled low is a framing error: ``frame_error`` pulses and the byte is
dropped. The receiver then waits for the line to go high before it looks for a start bit, so
a *break* (line held low for longer than a frame) costs one ``frame_error`` and never reads as
a train of 0x00 bytes; after reset, too, the line must be high before a start bit counts.

A byte whose stop bit is good while the previous byte still waits on the output stream is an
*overrun*: ``overrun`` pulses and the new byte is dropped, so the byte held on the stream is
never overwritten. The reader has a whole frame (ten bit times) to take a byte before the next
one completes; a byte taken in the very cycle the next one completes is not an overrun. A byte
with a bad stop bit is only a framing error, whether or not the stream is full.

Both error outputs are one-cycle strobes, in the cycle the byte would have appeared on the
stream: a link layer can count them directly (its CRC catches the bytes they stand for),
which needs no clear input and cannot miss a second error while a sticky flag is still set.

Transmitter (:class:`UARTTx`)
-----------------------------
The line idles high. A byte offered on the stream is taken when the transmitter is idle, or in
the last cycle of the previous byte's stop bit, so bytes offered back to back leave at the full
rate: each bit, the stop bit included, lasts exactly ``divisor`` cycles and the next start bit
follows the stop bit immediately.
"""

from __future__ import annotations

import operator
from numbers import Real

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out, connect, flipped

__all__ = ["DATA_BITS", "MIN_DIVISOR", "MAX_BAUD_ERROR", "divisor_for", "UARTRx", "UARTTx",
           "UART"]

#: Data bits per frame.
DATA_BITS = 8
#: Smallest divisor: the start-bit check and the mid-bit sample need a few cycles per bit.
MIN_DIVISOR = 4
#: Largest relative baud-rate error :func:`divisor_for` accepts. Both ends of a link may be
#: off, and sampling at mid-bit leaves half a bit over a ten-bit frame, about 5 % in all.
MAX_BAUD_ERROR = 0.02


def _silence(elaboratable):
    # A constructor that rejects its arguments leaves an object nobody can use: without this
    # Amaranth would later warn that it was "created but never used".
    elaboratable._MustUse__silence = True


def _check_divisor(divisor) -> int:
    if isinstance(divisor, bool):
        raise TypeError(f"divisor must be an int, not {divisor!r}")
    try:
        value = operator.index(divisor)
    except TypeError:
        raise TypeError(f"divisor must be an int, not {divisor!r}") from None
    if value < MIN_DIVISOR:
        raise ValueError(f"divisor must be ≥ {MIN_DIVISOR} clock cycles per bit, not {value}")
    return value


def divisor_for(clock_hz, baud) -> int:
    """The divisor (clock cycles per bit) that gives ``baud`` from a ``clock_hz`` clock.

    Parameters
    ----------
    clock_hz : float
        Clock frequency in Hz.
    baud : float
        Bit rate in bit/s.

    Returns
    -------
    int
        ``round(clock_hz / baud)``.

    Raises
    ------
    TypeError
        ``clock_hz`` or ``baud`` is not a real number.
    ValueError
        ``clock_hz`` or ``baud`` is not positive; the divisor is below 4; or the rate it
        gives, ``clock_hz / divisor``, is off ``baud`` by more than 2 %.
    """
    for name, value in (("clock_hz", clock_hz), ("baud", baud)):
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"{name} must be a number, not {value!r}")
        if not value > 0:
            raise ValueError(f"{name} must be positive, not {value!r}")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(
            f"a {clock_hz:g} Hz clock is too slow for {baud:g} baud: the UART needs at least "
            f"{MIN_DIVISOR} clock cycles per bit, this would be {clock_hz / baud:.3g} "
            f"(at most {clock_hz / MIN_DIVISOR:g} baud)")
    actual = clock_hz / divisor
    error = abs(actual - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(
            f"{baud:g} baud cannot be made from a {clock_hz:g} Hz clock: the nearest divisor, "
            f"{divisor}, gives {actual:g} baud, {error:.2%} off (more than "
            f"{MAX_BAUD_ERROR:.0%})")
    return int(divisor)


class UARTRx(wiring.Component):
    """UART receiver, 8N1, LSB first, ``divisor`` clock cycles per bit.

    See the module documentation for the start-bit check, the sampling point and the
    error handling.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    rx : ``In(1, init=1)``
        Serial input pin (asynchronous; synchronised inside).
    stream : ``Out(stream.Signature(unsigned(8)))``
        Received bytes. ``valid`` stays high, with the byte unchanged, until ``ready`` takes
        it.
    overrun : ``Out(1)``
        One-cycle strobe: a byte completed while the previous one was still unread, and was
        dropped.
    frame_error : ``Out(1)``
        One-cycle strobe: a byte's stop bit was low, and the byte was dropped. A break (line
        held low) gives one strobe, however long it lasts.

    Raises
    ------
    TypeError
        ``divisor`` is not an int.
    ValueError
        ``divisor`` is below 4.
    """

    def __init__(self, divisor: int):
        try:
            self._divisor = _check_divisor(divisor)
        except (TypeError, ValueError):
            _silence(self)
            raise
        super().__init__({
            "rx": In(1, init=1),
            "stream": Out(stream.Signature(unsigned(DATA_BITS))),
            "overrun": Out(1),
            "frame_error": Out(1),
        })

    @property
    def divisor(self) -> int:
        """Clock cycles per bit."""
        return self._divisor

    @property
    def sample_offset(self) -> int:
        """Cycles from the first low sample of a start bit to the samples of each bit:
        bit ``k`` (0 the start bit, 9 the stop bit) is sampled ``sample_offset + k ·
        divisor`` cycles after the synchronised line is first seen low."""
        return self._divisor // 2

    def elaborate(self, platform):
        m = Module()
        divisor, half = self._divisor, self.sample_offset

        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1, stages=2)

        timer = Signal(range(divisor))
        bit = Signal(range(DATA_BITS))
        shreg = Signal(DATA_BITS)
        valid = Signal()
        data = Signal(DATA_BITS)
        m.d.comb += [
            self.stream.valid.eq(valid),
            self.stream.payload.eq(data),
        ]
        # The held byte leaves on this edge: a byte completing now may take its place.
        free = ~valid | self.stream.ready
        with m.If(self.stream.ready):
            m.d.sync += valid.eq(0)

        m.d.sync += [
            self.overrun.eq(0),
            self.frame_error.eq(0),
        ]
        # After reset the line may be low in the middle of a frame or a break.
        with m.FSM(init="WAIT_IDLE"):
            with m.State("WAIT_IDLE"):
                with m.If(line):
                    m.next = "IDLE"
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(half - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(line):
                    m.next = "IDLE"
                with m.Elif(timer == 0):
                    m.d.sync += [
                        timer.eq(divisor - 1),
                        bit.eq(0),
                    ]
                    m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [
                        shreg.eq(Cat(shreg[1:], line)),
                        timer.eq(divisor - 1),
                        bit.eq(bit + 1),
                    ]
                    with m.If(bit == DATA_BITS - 1):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(~line):
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "WAIT_IDLE"
                    with m.Else():
                        with m.If(free):
                            m.d.sync += [
                                data.eq(shreg),
                                valid.eq(1),
                            ]
                        with m.Else():
                            m.d.sync += self.overrun.eq(1)
                        # Back to idle at mid-stop-bit: the next start edge may come as
                        # early as half a bit from now.
                        m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
        return m


class UARTTx(wiring.Component):
    """UART transmitter, 8N1, LSB first, ``divisor`` clock cycles per bit.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    tx : ``Out(1, init=1)``
        Serial output pin, registered; high when idle.
    stream : ``In(stream.Signature(unsigned(8)))``
        Bytes to send. ``ready`` is high while the transmitter is idle and in the last cycle
        of a stop bit, so a byte offered then starts its start bit on the next cycle.

    Raises
    ------
    TypeError
        ``divisor`` is not an int.
    ValueError
        ``divisor`` is below 4.
    """

    def __init__(self, divisor: int):
        try:
            self._divisor = _check_divisor(divisor)
        except (TypeError, ValueError):
            _silence(self)
            raise
        super().__init__({
            "tx": Out(1, init=1),
            "stream": In(stream.Signature(unsigned(DATA_BITS))),
        })

    @property
    def divisor(self) -> int:
        """Clock cycles per bit."""
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor

        timer = Signal(range(divisor))
        left = Signal(range(DATA_BITS + 2))   # bits still to send after the current one
        shreg = Signal(DATA_BITS + 1)          # data bits, then the stop bit
        busy = Signal()

        last_cycle = busy & (timer == 0) & (left == 0)
        m.d.comb += self.stream.ready.eq(~busy | last_cycle)

        with m.If(self.stream.valid & self.stream.ready):
            m.d.sync += [
                self.tx.eq(0),
                shreg.eq(Cat(self.stream.payload, 1)),
                left.eq(DATA_BITS + 1),
                timer.eq(divisor - 1),
                busy.eq(1),
            ]
        with m.Elif(last_cycle):
            m.d.sync += busy.eq(0)
        with m.Elif(busy & (timer == 0)):
            m.d.sync += [
                self.tx.eq(shreg[0]),
                shreg.eq(shreg[1:]),
                left.eq(left - 1),
                timer.eq(divisor - 1),
            ]
        with m.Elif(busy):
            m.d.sync += timer.eq(timer - 1)
        return m


class UART(wiring.Component):
    """UART receiver and transmitter at one bit rate, for the chip's host link.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4 (see :func:`divisor_for`).

    Members
    -------
    rx : ``In(1, init=1)``
        Serial input pin.
    tx : ``Out(1, init=1)``
        Serial output pin.
    rx_stream : ``Out(stream.Signature(unsigned(8)))``
        Received bytes (:class:`UARTRx` ``stream``).
    tx_stream : ``In(stream.Signature(unsigned(8)))``
        Bytes to send (:class:`UARTTx` ``stream``).
    overrun : ``Out(1)``
        One-cycle strobe: a received byte was dropped because the previous one was unread.
    frame_error : ``Out(1)``
        One-cycle strobe: a received byte was dropped because its stop bit was low.

    Raises
    ------
    TypeError
        ``divisor`` is not an int.
    ValueError
        ``divisor`` is below 4.
    """

    def __init__(self, divisor: int):
        try:
            self._divisor = _check_divisor(divisor)
        except (TypeError, ValueError):
            _silence(self)
            raise
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "rx_stream": Out(stream.Signature(unsigned(DATA_BITS))),
            "tx_stream": In(stream.Signature(unsigned(DATA_BITS))),
            "overrun": Out(1),
            "frame_error": Out(1),
        })

    @property
    def divisor(self) -> int:
        """Clock cycles per bit."""
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = rx = UARTRx(self._divisor)
        m.submodules.transmitter = tx = UARTTx(self._divisor)
        connect(m, rx.stream, flipped(self.rx_stream))
        connect(m, flipped(self.tx_stream), tx.stream)
        m.d.comb += [
            rx.rx.eq(self.rx),
            self.tx.eq(tx.tx),
            self.overrun.eq(rx.overrun),
            self.frame_error.eq(rx.frame_error),
        ]
        return m
