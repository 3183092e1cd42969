"""cocotb bench of the UART's Verilog: a serial line model on each pin, an echo between streams.

Run through ``symspike.sim.cosim.run_cocotb`` (see ``tests/test_uart.py``), which passes the
parameters read by :func:`symspike.sim.cosim.bench_params`:

``divisor``
    Clock cycles per bit the design was built with.
``seed``
    Seed of the random bytes, gaps and read stalls.
``random_bytes``
    Number of random bytes sent, spread over the sender bit-period ``skews``.
``mnist_row``
    Pixel values of one row of a real MNIST image, sent back to back as bytes.
``skews``
    Relative errors of the sender's bit period (e.g. ``[-0.02, 0.0, 0.02]``).

:class:`UartSource` plays a host whose UART runs from its own clock: it drives the ``rx``
pin with bits of any period, fractional numbers of cycles included. :class:`UartSink` decodes
the ``tx`` pin and checks that every bit lasts exactly ``divisor`` cycles. Every signal is
driven just after a falling edge and sampled in the read-only phase before the next rising
edge, so the bench sees exactly what that edge acts on, in an event-driven (Icarus) and a
cycle-based (Verilator) simulator alike.
"""

from collections import deque

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from symspike.sim.cosim import bench_params

#: Clock period in ns.
CLOCK_NS = 10


def frame_bits(byte, stop=1):
    """Levels of one 8N1 frame, LSB first; ``stop=0`` makes a framing error."""
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


class UartSource:
    """Drives a pin as a UART transmitter with its own bit period.

    The line is a sequence of levels held for durations in clock cycles (not necessarily
    whole); at each falling edge the pin takes the level that covers that instant, as a
    pin driven from an unrelated clock would be seen by the chip's flip-flops.
    """

    def __init__(self, clk, pin):
        self.clk = clk
        self.pin = pin
        self.edge = 0       # falling edges driven so far
        self.time = 0.0     # end of the line's last segment, in cycles

    async def hold(self, level, cycles):
        self.time += cycles
        while self.edge < self.time:
            await FallingEdge(self.clk)
            self.pin.value = level
            self.edge += 1

    async def idle(self, bits, period):
        await self.hold(1, bits * period)

    async def write(self, byte, period, *, stop=1):
        for bit in frame_bits(byte, stop):
            await self.hold(bit, period)


class UartSink:
    """Decodes a UART pin, insisting on exact bit slots of ``divisor`` cycles."""

    def __init__(self, clk, pin, divisor):
        self.clk = clk
        self.pin = pin
        self.divisor = divisor
        self.bytes = []
        self.starts = []    # cycle of every frame's start edge
        self.errors = []

    async def run(self):
        divisor, cycle, frame = self.divisor, 0, None
        while True:
            await FallingEdge(self.clk)
            await ReadOnly()
            level = int(self.pin.value)
            if frame is None:
                if level == 0:
                    frame = [0]
                    self.starts.append(cycle)
            else:
                frame.append(level)
                if len(frame) == 10 * divisor:
                    self._finish(frame, cycle)
                    frame = None
            cycle += 1

    def _finish(self, frame, cycle):
        bits = []
        for k in range(10):
            slot = frame[k * self.divisor:(k + 1) * self.divisor]
            if len(set(slot)) != 1:
                self.errors.append(f"frame ending at cycle {cycle}: bit {k} is {slot}, not "
                                   f"{self.divisor} cycles of one level")
            bits.append(slot[len(slot) // 2])
        if bits[0] != 0 or bits[9] != 1:
            self.errors.append(f"frame ending at cycle {cycle}: start/stop bits {bits}")
        self.bytes.append(sum(b << k for k, b in enumerate(bits[1:9])))


class Harness:
    """Cycle loop on the UART's streams: moves received bytes to the transmitter (echo),
    reads with random stalls or not at all, and records the error strobes."""

    def __init__(self, dut, rng, *, stall=0.3):
        self.dut = dut
        self.rng = rng
        self.stall = stall
        self.reading = True
        self.echo = True
        self.received = []
        self.pending = deque()
        self.overruns = 0
        self.frame_errors = 0

    async def reset(self):
        dut = self.dut
        dut.rx.value = 1
        for port in (dut.rx_stream__ready, dut.tx_stream__valid, dut.tx_stream__payload):
            port.value = 0
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def run(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            ready = self.reading and self.rng.random() >= self.stall
            dut.rx_stream__ready.value = int(ready)
            offer = bool(self.pending)
            dut.tx_stream__valid.value = int(offer)
            if offer:
                dut.tx_stream__payload.value = self.pending[0]
            await ReadOnly()
            if ready and int(dut.rx_stream__valid.value):
                byte = int(dut.rx_stream__payload.value)
                self.received.append(byte)
                if self.echo:
                    self.pending.append(byte)
            if offer and int(dut.tx_stream__ready.value):
                self.pending.popleft()
            self.overruns += int(dut.overrun.value)
            self.frame_errors += int(dut.frame_error.value)

    async def wait_received(self, count, limit):
        for _ in range(limit):
            if len(self.received) >= count:
                return
            await FallingEdge(self.dut.clk)
        raise AssertionError(f"{count} bytes expected, {len(self.received)} received in "
                             f"{limit} cycles: {self.received}")


async def start(dut, params):
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    rng = np.random.default_rng(params["seed"])
    harness = Harness(dut, rng)
    await harness.reset()
    cocotb.start_soon(harness.run())
    source = UartSource(dut.clk, dut.rx)
    sink = UartSink(dut.clk, dut.tx, params["divisor"])
    cocotb.start_soon(sink.run())
    return harness, source, sink, rng


@cocotb.test()
async def echo_random_and_mnist(dut):
    """Random bytes from senders off by each skew, with random gaps, and an MNIST row back
    to back, come out of the transmitter unchanged, every bit exactly ``divisor`` cycles."""
    params = bench_params()
    divisor = params["divisor"]
    harness, source, sink, rng = await start(dut, params)

    sent = []
    groups = np.array_split(rng.integers(0, 256, params["random_bytes"]), len(params["skews"]))
    await source.idle(2, divisor)
    for skew, group in zip(params["skews"], groups):
        period = divisor * (1 + skew)
        for byte in [int(b) for b in group]:
            await source.write(byte, period)
            sent.append(byte)
            if rng.random() < 0.5:
                await source.idle(float(rng.uniform(0, 3)), period)
        await source.idle(2, period)
    for pixel in params["mnist_row"]:
        await source.write(pixel, divisor)
        sent.append(pixel)
    await source.idle(2, divisor)

    # The echo may lag by a few frames when the sender is fast.
    await harness.wait_received(len(sent), 20 * divisor)
    for _ in range(40 * divisor):
        if len(sink.bytes) == len(sent) and not harness.pending:
            break
        await FallingEdge(dut.clk)
    assert harness.received == sent, "receiver: bytes differ"
    assert not sink.errors, sink.errors[:3]
    assert sink.bytes == sent, "transmitter: bytes differ"
    assert harness.overruns == 0 and harness.frame_errors == 0, (
        f"{harness.overruns} overruns, {harness.frame_errors} framing errors")
    # The echo sends back to back whenever bytes queue up: some frames must abut exactly.
    gaps = np.diff(sink.starts)
    assert gaps.min() == 10 * divisor, f"closest frames {gaps.min()} cycles apart"
    mnist = sent[-len(params["mnist_row"]):]
    dut._log.info(f"{len(sent)} bytes echoed ({sum(1 for p in mnist if p)} non-zero pixels "
                  f"of the MNIST row), {int(np.sum(gaps == 10 * divisor))} frames back to "
                  "back")


@cocotb.test()
async def receiver_errors(dut):
    """A short glitch is ignored, a low stop bit and a break are one framing error each,
    and a byte completing while one is unread is an overrun that spares the held byte."""
    params = bench_params()
    divisor = params["divisor"]
    harness, source, _, _ = await start(dut, params)
    harness.echo = False
    harness.stall = 0.0

    # A low pulse taken for a start bit would read as 0xFF once the frame time has passed.
    await source.idle(2, divisor)
    for width in range(1, divisor // 2 + 1):
        await source.hold(0, width)
        await source.idle(11, divisor)
    assert harness.received == [] and harness.frame_errors == 0, (
        f"glitch read as a start bit: {harness.received}")

    await source.write(0xA5, divisor, stop=0)
    await source.idle(2, divisor)
    assert harness.received == [] and harness.frame_errors == 1, (
        f"low stop bit: {harness.received}, {harness.frame_errors} framing errors")

    await source.hold(0, 12 * 10 * divisor)
    await source.idle(2, divisor)
    assert harness.received == [] and harness.frame_errors == 2, (
        f"break: {harness.received}, {harness.frame_errors - 1} framing errors")

    harness.reading = False
    for byte in (0x3C, 0xC3, 0x7E):
        await source.write(byte, divisor)
    await source.idle(2, divisor)
    assert harness.overruns == 2, f"{harness.overruns} overruns, expected 2"
    harness.reading = True
    await harness.wait_received(1, 4 * divisor)
    assert harness.received == [0x3C], f"held byte became {harness.received}"

    await source.write(0x42, divisor)
    await source.idle(2, divisor)
    assert harness.received == [0x3C, 0x42]
    assert harness.frame_errors == 2 and harness.overruns == 2
