"""UART gateware: receiver against a bit-level line model, transmitter bit timing, loopback.

Amaranth-simulator tests drive the receiver's pin from :class:`Line`, a model of a
sender whose bit period need not be a whole number of clock cycles and whose start edges fall
anywhere within a cycle; the cocotb bench ``tests/cocotb/uart_bench.py`` runs the exported
Verilog of :class:`UART` on Icarus and Verilator.
"""

from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from stream_helpers import stream_get, stream_put_all
from symspike.hdl.uart import MIN_DIVISOR, UART, UARTRx, UARTTx, divisor_for
from symspike.sim.cosim import SIMULATORS, run_cocotb, unavailable_reason

BENCH_PATH = Path(__file__).parent / "cocotb" / "uart_bench.py"
#: Synchroniser stages plus the output register: cycles from a pin change to its effect.
LATENCY = 3


# ----------------------------------------------------------------------------- line model
def frame_bits(byte, stop=1):
    """Line levels of one 8N1 frame, LSB first; ``stop=0`` makes a framing error."""
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


class Line:
    """A serial line as a list of ``(duration in cycles, level)`` segments, sampled once per
    clock cycle. Durations may be fractional: a sender with its own clock."""

    def __init__(self, period, *, phase=0.0):
        self.period = period
        self.segments = [(phase, 1)] if phase else []
        self.stops = []     # (start, end) time of every frame's stop bit

    @property
    def time(self):
        return sum(d for d, _ in self.segments)

    def level(self, level, duration):
        self.segments.append((duration, level))
        return self

    def idle(self, bits):
        return self.level(1, bits * self.period)

    def frame(self, byte, stop=1):
        for k, bit in enumerate(frame_bits(byte, stop)):
            if k == 9:
                self.stops.append((self.time, self.time + self.period))
            self.level(bit, self.period)
        return self

    def levels(self):
        """Level at every clock edge ``n`` (time ``n``) up to the end of the last segment."""
        ends = np.cumsum([d for d, _ in self.segments])
        values = np.array([v for _, v in self.segments])
        n = np.arange(int(np.floor(ends[-1])))
        return values[np.searchsorted(ends, n, side="right")].tolist()


def random_bytes(rng, count):
    # The extremes and alternating patterns stress sampling at bit edges.
    fixed = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80]
    return fixed + [int(b) for b in rng.integers(0, 256, count)]


# ----------------------------------------------------------------------------- harness
def run_rx(dut, levels, *, ports=None, ready=None, tail=16):
    """Drive ``levels`` (one per cycle) into the receiver's pin and record its outputs.

    ``ready(n)`` gives the stream's ``ready`` in cycle ``n`` (default: always); ``tail``
    idle cycles after ``levels`` leave time for the last byte to come out. Returns a dict
    with ``bytes`` (taken payloads), ``taken`` and ``arrived`` (cycles a byte was taken and
    first offered), ``overrun`` and ``frame_error`` (cycles each strobe was high). Checks on
    the way that a byte offered but not taken stays offered, unchanged.
    """
    pin, stream, overrun, frame_error = ports or (dut.rx, dut.stream, dut.overrun,
                                                  dut.frame_error)
    ready = ready or (lambda n: 1)
    levels = list(levels) + [1] * tail
    out = {"bytes": [], "taken": [], "arrived": [], "overrun": [], "frame_error": []}

    async def bench(ctx):
        held = None     # (payload) offered and not taken in the previous cycle
        fresh = True    # the next offered byte is a new one
        for n, level in enumerate(levels):
            ctx.set(pin, level)
            r = int(ready(n))
            ctx.set(stream.ready, r)
            _, _, valid, payload, ovr, fe = await ctx.tick().sample(
                stream.valid, stream.payload, overrun, frame_error)
            if held is not None:
                assert valid and payload == held, (
                    f"cycle {n}: held byte {held:#04x} became valid={valid} {payload:#04x}")
            if valid and fresh:
                out["arrived"].append(n)
            fresh = not valid or r
            held = payload if valid and not r else None
            if valid and r:
                out["bytes"].append(payload)
                out["taken"].append(n)
            if ovr:
                out["overrun"].append(n)
            if fe:
                out["frame_error"].append(n)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def run_tx(divisor, script, *, cycles):
    """Record the transmitter's pin every cycle from reset while ``script`` (a list of
    ``("bytes", [...])`` offered back to back and ``("wait", n)``) feeds its stream."""
    dut = UARTTx(divisor)
    trace = []
    accepted = []

    async def feed(ctx):
        for op, arg in script:
            if op == "wait":
                await ctx.tick().repeat(arg)
                continue
            for byte in arg:
                ctx.set(dut.stream.valid, 1)
                ctx.set(dut.stream.payload, byte)
                # A byte is taken on the edge after a cycle with valid and ready both high.
                _, _, ready = await ctx.tick().sample(dut.stream.ready)
                while not ready:
                    _, _, ready = await ctx.tick().sample(dut.stream.ready)
                accepted.append(byte)
            ctx.set(dut.stream.valid, 0)

    async def record(ctx):
        for _ in range(cycles):
            _, _, tx = await ctx.tick().sample(dut.tx)
            trace.append(tx)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(record)
    sim.add_testbench(feed, background=True)
    sim.run()
    return trace, accepted


def runs(trace):
    """``[(level, length), ...]`` of the consecutive equal levels of ``trace``."""
    out = []
    for level in trace:
        if out and out[-1][0] == level:
            out[-1][1] += 1
        else:
            out.append([level, 1])
    return [tuple(r) for r in out]


def decode(trace, divisor):
    """Bytes of a pin trace, with each frame's start cycle, by exact bit slots: a frame is
    ``10 · divisor`` cycles from its falling edge, each bit ``divisor`` cycles of one level."""
    frames, n = [], 0
    while n < len(trace):
        if trace[n]:
            n += 1
            continue
        bits = []
        for k in range(10):
            slot = trace[n + k * divisor:n + (k + 1) * divisor]
            assert len(slot) == divisor, f"frame at cycle {n} cut off in bit {k}"
            assert len(set(slot)) == 1, (
                f"frame at cycle {n}, bit {k}: levels {slot} within one bit slot")
            bits.append(slot[0])
        assert bits[0] == 0 and bits[9] == 1, f"frame at cycle {n}: start/stop {bits}"
        frames.append((n, sum(b << k for k, b in enumerate(bits[1:9]))))
        n += 10 * divisor
    return frames


# ----------------------------------------------------------------------------- receiver
@pytest.mark.parametrize("skew", [-0.02, 0.0, 0.02])
@pytest.mark.parametrize("divisor", [4, 7, 16, 26])
def test_rx_bit_model(divisor, skew):
    """Bytes from a sender whose bit period is off by ``skew``, with random gaps (half of
    them back to back), random start phase and random short read stalls, arrive intact,
    each during its own stop bit."""
    rng = np.random.default_rng(divisor * 100 + int(skew * 1000))
    sent = random_bytes(rng, 40)
    line = Line(divisor * (1 + skew), phase=float(rng.random())).idle(2)
    for byte in sent:
        line.frame(byte)
        if rng.random() < 0.5:
            line.idle(float(rng.uniform(0, 3)))
    line.idle(1)
    stalls = rng.random(200_000) < 0.3
    got = run_rx(UARTRx(divisor), line.levels(), ready=lambda n: not stalls[n])
    assert got["bytes"] == sent
    assert got["overrun"] == [] and got["frame_error"] == []
    for k, (arrived, (start, end)) in enumerate(zip(got["arrived"], line.stops)):
        assert start < arrived <= end + LATENCY, (
            f"byte {k} offered at cycle {arrived}, its stop bit spans {start:.1f}…{end:.1f}")


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_rx_start_glitch_rejected(divisor):
    """Low pulses of up to ``divisor // 2`` cycles are not start bits; one a cycle longer
    is (and, the line being high afterwards, reads as 0xFF), so the threshold is exact."""
    line = Line(divisor).idle(2)
    for width in range(1, divisor // 2 + 1):
        # Taken for a start bit, a pulse would read as 0xFF within this idle time.
        line.level(0, width).idle(11)
    line.frame(0xA5).idle(2)
    got = run_rx(UARTRx(divisor), line.levels())
    assert got["bytes"] == [0xA5]
    assert got["frame_error"] == [] and got["overrun"] == []

    line = Line(divisor).idle(2).level(0, divisor // 2 + 1).idle(12)
    got = run_rx(UARTRx(divisor), line.levels())
    assert got["bytes"] == [0xFF]


def test_rx_glitch_then_byte():
    """A glitch followed closely by a real start bit: the byte is timed from its own edge.
    Timed from the glitch, a slow sender's later bits would be sampled in the bit before."""
    divisor = 16
    line = Line(divisor * 1.02).idle(2).level(0, 5).level(1, 2).frame(0x3C).idle(2)
    got = run_rx(UARTRx(divisor), line.levels())
    assert got["bytes"] == [0x3C] and got["frame_error"] == []


@pytest.mark.parametrize("divisor", [7, 16])
def test_rx_bad_stop_bit(divisor):
    """A low stop bit pulses ``frame_error`` once and drops the byte; the next one is fine."""
    line = Line(divisor).idle(1).frame(0x12).frame(0x34, stop=0).idle(1).frame(0x56).idle(1)
    got = run_rx(UARTRx(divisor), line.levels())
    assert got["bytes"] == [0x12, 0x56]
    assert len(got["frame_error"]) == 1 and got["overrun"] == []
    start, end = line.stops[1]
    assert start < got["frame_error"][0] <= end + LATENCY


def test_rx_break():
    """A line held low for twelve frames is one framing error, not twelve 0x00 bytes."""
    divisor = 7
    line = Line(divisor).idle(1).frame(0x81).level(0, 120 * divisor).idle(2).frame(0x7E)
    got = run_rx(UARTRx(divisor), line.idle(1).levels())
    assert got["bytes"] == [0x81, 0x7E]
    assert len(got["frame_error"]) == 1 and got["overrun"] == []


def test_rx_overrun():
    """Bytes completing while one is held pulse ``overrun`` and are dropped; the held byte
    is never touched (``run_rx`` checks it cycle by cycle) and reading resumes."""
    divisor = 7
    line = Line(divisor).idle(1)
    for byte in (0x11, 0x22, 0x33):
        line.frame(byte)
    line.idle(2)
    read_from = len(line.levels())
    line.frame(0x44).idle(2)
    got = run_rx(UARTRx(divisor), line.levels(), ready=lambda n: n >= read_from)
    assert got["bytes"] == [0x11, 0x44]
    assert len(got["overrun"]) == 2 and got["frame_error"] == []
    for (start, end), cycle in zip(line.stops[1:3], got["overrun"]):
        assert start < cycle <= end + LATENCY


def test_rx_overrun_boundary():
    """The held byte taken in the very cycle the next one completes is no overrun; taken a
    cycle later, it is."""
    divisor = 7
    levels = Line(divisor).idle(1).frame(0x5A).frame(0xC3).idle(2).levels()
    pilot = run_rx(UARTRx(divisor), levels, ready=lambda n: 0)
    assert pilot["bytes"] == [] and len(pilot["overrun"]) == 1
    strobe = pilot["overrun"][0]

    # The strobe is registered: the byte completed on the edge ending cycle strobe - 1.
    just_in_time = run_rx(UARTRx(divisor), levels,
                          ready=lambda n: n == strobe - 1 or n > strobe + 1)
    assert just_in_time["bytes"] == [0x5A, 0xC3] and just_in_time["overrun"] == []
    assert just_in_time["taken"][0] == strobe - 1

    too_late = run_rx(UARTRx(divisor), levels, ready=lambda n: n >= strobe)
    assert too_late["bytes"] == [0x5A] and too_late["overrun"] == [strobe]


# ----------------------------------------------------------------------------- transmitter
@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_tx_bit_timing(divisor):
    """Every bit lasts exactly ``divisor`` cycles, bytes offered back to back follow with
    exactly one stop bit, and the line idles high before, between and after."""
    rng = np.random.default_rng(divisor)
    burst = [0x55] * 3 + random_bytes(rng, 6)
    later = [0x55, 0x00, 0xFF]
    # Offered this long after the burst's last byte was taken, the next burst starts
    # three bits and a cycle after that byte's frame ends.
    gap = 13 * divisor + 1
    cycles = (len(burst) + len(later)) * 10 * divisor + gap + 20
    trace, accepted = run_tx(divisor, [("wait", 5), ("bytes", burst), ("wait", gap),
                                       ("bytes", later)], cycles=cycles)
    assert accepted == burst + later
    # Alternating 0x55 frames back to back are a square wave: every run is one bit.
    lead, *square = runs(trace)[:31]
    assert lead[0] == 1 and lead[1] >= 5
    assert [length for _, length in square[:30]] == [divisor] * 30, square

    frames = decode(trace, divisor)
    assert [b for _, b in frames] == burst + later
    starts = [n for n, _ in frames]
    burst_starts = starts[:len(burst)]
    assert np.all(np.diff(burst_starts) == 10 * divisor), np.diff(burst_starts)
    idle = trace[burst_starts[-1] + 10 * divisor:starts[len(burst)]]
    assert idle and all(idle), "line not idle high between bursts"
    assert np.all(np.diff(starts[len(burst):]) == 10 * divisor)
    assert all(trace[starts[-1] + 10 * divisor:]), "line not idle high after the last byte"


def test_tx_ready_only_at_end_of_stop_bit():
    """While a frame is on the line the transmitter takes nothing, except in the stop bit's
    last cycle."""
    divisor = 5
    dut = UARTTx(divisor)
    readies = []

    async def bench(ctx):
        ctx.set(dut.stream.valid, 1)
        ctx.set(dut.stream.payload, 0x0F)
        for _ in range(10 * divisor + 2):
            _, _, ready = await ctx.tick().sample(dut.stream.ready)
            readies.append(ready)
            ctx.set(dut.stream.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert readies[0] == 1
    assert readies[1:] == [0] * (10 * divisor - 1) + [1, 1]


# ----------------------------------------------------------------------------- loopback
class _Loopback(wiring.Component):
    """:class:`UART` with its pin ``tx`` wired to its pin ``rx``."""

    def __init__(self, divisor):
        self.uart = UART(divisor)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = self.uart
        m.d.comb += self.uart.rx.eq(self.uart.tx)
        return m


@pytest.mark.parametrize("divisor", [4, 7])
def test_loopback(divisor):
    """Random bytes with random gaps through TX and back through RX, read with random
    back-pressure of up to nine bit times (less than a frame, so nothing may be lost)."""
    rng = np.random.default_rng(40 + divisor)
    sent = random_bytes(rng, 60)
    top = _Loopback(divisor)
    uart = top.uart
    got, strobes = [], []

    async def producer(ctx):
        for chunk in np.array_split(np.array(sent), 8):
            await stream_put_all(ctx, uart.tx_stream, [int(b) for b in chunk], rng=rng,
                                 gap=0.3)
            await ctx.tick().repeat(int(rng.integers(1, 30 * divisor)))

    async def consumer(ctx):
        for _ in sent:
            stall = int(rng.integers(0, 9 * divisor))
            if stall:
                await ctx.tick().repeat(stall)
            got.append(await stream_get(ctx, uart.rx_stream))

    async def monitor(ctx):
        async for _, _, ovr, fe in ctx.tick().sample(uart.overrun, uart.frame_error):
            if ovr or fe:
                strobes.append((ovr, fe))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert got == sent
    assert strobes == []


def test_uart_bundle_strobes():
    """The bundle passes the receiver's error strobes and bytes through."""
    divisor = 6
    uart = UART(divisor)
    line = Line(divisor).idle(1).frame(0x10).frame(0x20).frame(0x30, stop=0).idle(1)
    read_from = len(line.levels())
    got = run_rx(uart, line.frame(0x40).idle(2).levels(),
                 ports=(uart.rx, uart.rx_stream, uart.overrun, uart.frame_error),
                 ready=lambda n: n >= read_from)
    assert got["bytes"] == [0x10, 0x40]
    assert len(got["overrun"]) == 1 and len(got["frame_error"]) == 1


# ----------------------------------------------------------------------------- parameters
def test_divisor_for():
    assert divisor_for(12e6, 115_200) == 104
    assert divisor_for(12_000_000, 3_000_000) == 4
    assert divisor_for(25e6, 1e6) == 25
    assert divisor_for(48e6, 3e6) == 16
    with pytest.raises(ValueError, match=r"too slow.*at least 4 clock cycles per bit"):
        divisor_for(12e6, 4e6)
    # 10 MHz / 8 = 1.25 Mbaud, 3.8 % off 1.3 Mbaud.
    with pytest.raises(ValueError, match=r"nearest divisor, 8, gives 1\.25e\+06 baud, 3\.85% "
                                         r"off \(more than 2%\)"):
        divisor_for(10e6, 1.3e6)
    # Just inside the tolerance: 100 MHz / 26 is 1.75 % above 3.78 Mbaud.
    assert divisor_for(100e6, 3.78e6) == 26
    with pytest.raises(ValueError, match="baud must be positive"):
        divisor_for(12e6, 0)
    with pytest.raises(ValueError, match="clock_hz must be positive"):
        divisor_for(-1, 9600)
    with pytest.raises(TypeError, match="baud must be a number"):
        divisor_for(12e6, "115200")
    with pytest.raises(TypeError, match="clock_hz must be a number"):
        divisor_for(True, 9600)


@pytest.mark.parametrize("cls", [UARTRx, UARTTx, UART])
def test_parameter_validation(cls):
    with pytest.raises(ValueError, match=r"divisor must be ≥ 4 clock cycles per bit, not 3"):
        cls(3)
    with pytest.raises(TypeError, match=r"divisor must be an int, not 16\.0"):
        cls(16.0)
    with pytest.raises(TypeError, match="divisor must be an int, not True"):
        cls(True)
    with pytest.raises(TypeError, match="divisor must be an int, not '16'"):
        cls("16")
    unit = cls(np.int64(MIN_DIVISOR))
    assert unit.divisor == MIN_DIVISOR and type(unit.divisor) is int
    with pytest.raises(AttributeError):
        unit.divisor = 8
    Fragment.get(unit, None)


def test_signatures():
    rx, tx, uart, rx_odd = UARTRx(8), UARTTx(8), UART(8), UARTRx(7)
    assert rx.rx.init == 1 and tx.tx.init == 1 and uart.rx.init == 1 and uart.tx.init == 1
    assert rx.sample_offset == 4 and rx_odd.sample_offset == 3
    assert set(rx.signature.members) == {"rx", "stream", "overrun", "frame_error"}
    assert set(tx.signature.members) == {"tx", "stream"}
    assert set(uart.signature.members) == {"rx", "tx", "rx_stream", "tx_stream", "overrun",
                                           "frame_error"}
    assert uart.signature.members["rx_stream"].flow == wiring.Out
    assert uart.signature.members["tx_stream"].flow == wiring.In
    assert len(uart.rx_stream.payload) == 8 and len(uart.tx_stream.payload) == 8
    for unit in (rx, tx, uart, rx_odd):
        Fragment.get(unit, None)


# ----------------------------------------------------------------------------- cocotb
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_cocotb_bench(simulator, mnist_small):
    reason = unavailable_reason(simulator)
    if reason:
        pytest.skip(reason)
    divisor = 7
    image = mnist_small[0][0]
    row = int(np.argmax(np.count_nonzero(image, axis=1)))
    params = {
        "divisor": divisor,
        "seed": 5,
        "random_bytes": 48,
        "mnist_row": [int(p) for p in image[row]],
        "skews": [-0.02, 0.0, 0.02],
    }
    result = run_cocotb(UART(divisor), BENCH_PATH, simulator=simulator,
                        name=f"uart_d{divisor}", params=params)
    assert set(result.tests) == {"echo_random_and_mnist", "receiver_errors"}
