"""The virtual board: an echo design in Verilator behind a pseudo-terminal, opened with pyserial.

The echo design returns every byte it receives plus one, through the chip's UART, so a byte
that comes back transformed has crossed the pseudo-terminal, the harness's serialiser, the
design's receiver and transmitter, and the harness's decoder. A second echo design also has
the DMA byte streams of a PCIe card, served through simulated XDMA device files (named
pipes), and a third answers each byte with the number of bytes it received since reset, so
that a reset shows. The fault-injection tests predict every flipped or lost byte from the
seed, with the harness's generator written out again below. Tests that run Verilator skip
when it is unavailable; the ones about a broken executable need no Verilator.
"""

import os
import random
import stat
import subprocess
import sys
import time
import types

import pytest
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from symspike.hdl.uart import UART
from symspike.sim.cosim import unavailable_reason
from symspike.sim.vboard import BoardStats, VBoardError, VirtualBoard, build_vboard

serial = pytest.importorskip("serial")
# Designs refused before elaboration are reported unused when collected, in a later test.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

DIVISOR = 4
needs_verilator = pytest.mark.skipif(bool(unavailable_reason("verilator")),
                                     reason=unavailable_reason("verilator") or "available")


class Echo(wiring.Component):
    """Returns each received byte plus one (mod 256); ``idle`` while no byte waits."""

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    idle: Out(1)

    def __init__(self, divisor):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = uart = UART(self.divisor)
        m.d.comb += [
            uart.rx.eq(self.uart_rx),
            self.uart_tx.eq(uart.tx),
            uart.tx_stream.payload.eq(uart.rx_stream.payload + 1),
            uart.tx_stream.valid.eq(uart.rx_stream.valid),
            uart.rx_stream.ready.eq(uart.tx_stream.ready),
            self.idle.eq(~uart.rx_stream.valid),
        ]
        return m


class DmaByte(data.StructLayout):
    def __init__(self):
        super().__init__({"data": unsigned(8), "last": unsigned(1)})


class DmaEcho(wiring.Component):
    """:class:`Echo` on the UART, and on the DMA streams each byte plus one, a newline (0x0A)
    ending a packet. ``idle`` stays low while a packet is open, so the harness must wait for
    the packet's ``last`` byte to release it."""

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    h2c: In(stream.Signature(unsigned(8)))
    c2h: Out(stream.Signature(DmaByte()))
    idle: Out(1)

    def __init__(self, divisor):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.echo = echo = Echo(self.divisor)
        is_open = Signal()
        m.d.comb += [
            echo.uart_rx.eq(self.uart_rx),
            self.uart_tx.eq(echo.uart_tx),
            self.c2h.payload.data.eq(self.h2c.payload + 1),
            self.c2h.payload.last.eq(self.h2c.payload == 0x0A),
            self.c2h.valid.eq(self.h2c.valid),
            self.h2c.ready.eq(self.c2h.ready),
            self.idle.eq(echo.idle & ~is_open & ~self.h2c.valid),
        ]
        with m.If(self.c2h.valid & self.c2h.ready):
            m.d.sync += is_open.eq(~self.c2h.payload.last)
        return m


class Counter(wiring.Component):
    """Answers each received byte with the number of bytes received before it since reset
    (mod 256), whatever the byte."""

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    idle: Out(1)

    def __init__(self, divisor):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = uart = UART(self.divisor)
        count = Signal(8)
        m.d.comb += [
            uart.rx.eq(self.uart_rx),
            self.uart_tx.eq(uart.tx),
            uart.tx_stream.payload.eq(count),
            uart.tx_stream.valid.eq(uart.rx_stream.valid),
            uart.rx_stream.ready.eq(uart.tx_stream.ready),
            self.idle.eq(~uart.rx_stream.valid),
        ]
        with m.If(uart.rx_stream.valid & uart.rx_stream.ready):
            m.d.sync += count.eq(count + 1)
        return m


def unused(design):
    """``design``, which a test expects to be refused before elaboration: without this
    Amaranth warns, in whichever test collects it, that it was created but never used."""
    design._MustUse__silence = True
    return design


def plus_one(data: bytes) -> bytes:
    return bytes((b + 1) & 0xFF for b in data)


@pytest.fixture(scope="module")
def echo_exe():
    return build_vboard(Echo(DIVISOR), "vboard_echo", divisor=DIVISOR)


def read_exactly(port, n, timeout=20.0):
    data = bytearray()
    deadline = time.monotonic() + timeout
    while len(data) < n and time.monotonic() < deadline:
        data += port.read(n - len(data))
    return bytes(data)


# ----------------------------------------------------------------------------- echo
@needs_verilator
def test_echo_nothing_lost(echo_exe):
    rng = random.Random(7)
    with VirtualBoard.start(echo_exe) as board:
        assert board.url.startswith("serial:///") and "?baud=" in board.url
        assert board.url == f"serial://{board.port}?baud={board.baud}"
        assert os.path.exists(board.port)
        sent = 0
        with serial.Serial(board.port, baudrate=3_000_000, timeout=1) as port:
            # Single bytes first, the extremes included, then back-to-back bursts.
            for byte in (0x00, 0xFF, 0x55, 0xAA, 0x01, 0xFE):
                port.write(bytes([byte]))
                assert read_exactly(port, 1) == plus_one(bytes([byte]))
                sent += 1
            for size in (2048, 2048, 1, 4096, 2048):
                data = bytes(rng.getrandbits(8) for _ in range(size))
                port.write(data)
                assert read_exactly(port, size) == plus_one(data)
                sent += size
            # Nothing more than was sent comes back.
            port.timeout = 0.2
            assert port.read(16) == b""
    stats = board.stats
    assert stats is not None and stats.final
    assert stats.bytes_to_chip == stats.bytes_from_chip == sent
    assert stats.frame_errors == 0 and stats.dropped == 0
    # Every byte costs ten bits of DIVISOR cycles on each line.
    assert stats.cycles >= sent * 10 * DIVISOR
    print(f"\necho design: {stats}")


@needs_verilator
def test_host_sessions_come_and_go(echo_exe):
    """The board outlives a host session. Like a USB adapter's, its replies to a host that
    has gone are flushed when the next one opens the port (pyserial flushes on open)."""
    with VirtualBoard.start(echo_exe) as board:
        with serial.Serial(board.port, timeout=1) as port:
            port.write(b"\x00abc")
            assert read_exactly(port, 4) == b"\x01bcd"
            port.write(b"xyz")
        time.sleep(0.3)
        with serial.Serial(board.port, timeout=1) as port:
            port.write(bytes(range(256)))
            assert read_exactly(port, 256) == plus_one(bytes(range(256)))
            port.timeout = 0.2
            assert port.read(16) == b""
    assert board.stats.bytes_to_chip == board.stats.bytes_from_chip == 4 + 3 + 256


@needs_verilator
def test_free_running_speed_and_periodic_stats(echo_exe):
    """Without sleeping the clock runs on; the speed is the echo design's cycles/s."""
    seen = []
    board = VirtualBoard.start(echo_exe, sleep=False, stats=0.2, on_stats=seen.append,
                               baud=115200)
    try:
        assert board.baud == 115200
        with serial.Serial(board.port, timeout=1) as port:
            data = os.urandom(8192)
            port.write(data)
            assert read_exactly(port, len(data)) == plus_one(data)
        time.sleep(0.7)
    finally:
        final = board.close()
    assert board.returncode == 0
    periodic = [s for s in seen if not s.final]
    assert len(periodic) >= 2 and all(isinstance(s, BoardStats) for s in seen)
    assert final.final and final.cycles >= periodic[-1].cycles > periodic[0].cycles
    assert final.busy_seconds == pytest.approx(final.seconds, abs=0.05)
    print(f"\necho design, free running: {final.cycles_per_s / 1e6:.2f} M cycles/s")


@needs_verilator
def test_idle_design_sleeps(echo_exe):
    with VirtualBoard.start(echo_exe) as board:
        time.sleep(1.0)
    stats = board.stats
    assert stats.busy_seconds < 0.5 * stats.seconds


@needs_verilator
def test_max_cycles_ends_the_run(echo_exe):
    board = VirtualBoard.start(echo_exe, sleep=False, max_cycles=100_000)
    assert board.wait(timeout=20) == 0
    stats = board.close()
    assert stats.cycles == 100_000


@needs_verilator
def test_waveform_needs_a_tracing_build(echo_exe, tmp_path):
    with pytest.raises(VBoardError, match="without waveform support"):
        VirtualBoard.start(echo_exe, waves=tmp_path / "w.vcd")


def test_build_checks_ports():
    class NoUart(wiring.Component):
        led: Out(1)

        def elaborate(self, platform):
            return Module()

    with pytest.raises(ValueError, match="uart_rx"):
        build_vboard(NoUart(), "nouart", divisor=4)
    with pytest.raises(ValueError, match="does not match"):
        build_vboard(Echo(4), "echo", divisor=5)


# ----------------------------------------------------------------------------- DMA
@pytest.fixture(scope="module")
def dma_echo_exe():
    return build_vboard(DmaEcho(DIVISOR), "vboard_dma_echo", divisor=DIVISOR)


def read_fifo(fd, n, timeout=20.0):
    """Up to ``n`` bytes from a non-blocking pipe, waiting at most ``timeout`` s in all."""
    import select
    data = bytearray()
    deadline = time.monotonic() + timeout
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        data += os.read(fd, n - len(data))
    return bytes(data)


@needs_verilator
def test_xdma_pipes_carry_packets(dma_echo_exe, tmp_path):
    """Bytes written to the h2c pipe reach the design; the c2h stream comes back a packet at
    a time, and the UART works beside it."""
    folder = tmp_path / "xdma"
    with VirtualBoard.start(dma_echo_exe, xdma=folder) as board:
        base = folder / "xdma0"
        assert board.url == board.pcie_url == f"pcie://{base}"
        assert board.serial_url.startswith("serial:///")
        h2c, c2h = f"{base}_h2c_0", f"{base}_c2h_0"
        assert stat.S_ISFIFO(os.stat(h2c).st_mode) and stat.S_ISFIFO(os.stat(c2h).st_mode)
        rfd = os.open(c2h, os.O_RDONLY | os.O_NONBLOCK)
        wfd = os.open(h2c, os.O_WRONLY)
        try:
            # No newline yet: the packet stays in the harness.
            os.write(wfd, b"abc")
            assert read_fifo(rfd, 16, timeout=0.5) == b""
            os.write(wfd, b"\n")
            assert read_fifo(rfd, 4) == plus_one(b"abc\n")
            # Many packets back to back, more than a pipe holds, read as they come.
            rng = random.Random(3)
            blob = bytes(rng.choice(b"0123456789\n") for _ in range(200_000)) + b"\n"
            os.write(wfd, blob[:100_000])
            got = read_fifo(rfd, 60_000)
            os.write(wfd, blob[100_000:])
            got += read_fifo(rfd, len(blob) - len(got))
            assert got == plus_one(blob)
            # The UART of the same executable.
            with serial.Serial(board.port, timeout=1) as port:
                port.write(b"uart")
                assert read_exactly(port, 4) == plus_one(b"uart")
            assert read_fifo(rfd, 16, timeout=0.2) == b""
        finally:
            os.close(wfd)
            os.close(rfd)
    stats = board.stats
    sent = 4 + len(blob)
    assert stats.dma_to_chip == stats.dma_from_chip == sent
    assert stats.dma_packets == blob.count(b"\n") + 1
    assert stats.bytes_to_chip == stats.bytes_from_chip == 4
    # The pipes go with the board; the folder was the caller's and stays.
    assert folder.is_dir() and not list(folder.iterdir())


@needs_verilator
def test_xdma_without_a_host_and_a_private_folder(dma_echo_exe):
    """The board runs (and sleeps) with nobody on the pipes; a folder it made is removed."""
    from symspike.host.link import PcieLink

    with VirtualBoard.start(dma_echo_exe, xdma=True) as board:
        folder = board.xdma_dir
        time.sleep(0.5)
        link = PcieLink(board.url[len("pcie://"):])
        try:
            link.write(b"hello\n")
            got = b""
            while len(got) < 6:
                chunk = link.read(64, timeout=10)
                assert chunk, "no answer on the simulated c2h device"
                got += chunk
            assert got == plus_one(b"hello\n")
        finally:
            link.close()
    assert board.stats.busy_seconds < 0.8 * board.stats.seconds
    assert not folder.exists()


@needs_verilator
def test_xdma_refusals(echo_exe, dma_echo_exe, tmp_path):
    from symspike.host.link import LinkError, PcieLink

    with pytest.raises(ValueError, match="no DMA streams"):
        VirtualBoard.start(unused(Echo(DIVISOR)), xdma=True)
    # An executable without the streams says so itself.
    with pytest.raises(VBoardError, match="no DMA streams"):
        VirtualBoard.start(echo_exe, xdma=tmp_path / "x")
    # A file where a pipe should go is never replaced.
    (tmp_path / "xdma0_h2c_0").write_text("keep")
    with pytest.raises(VBoardError, match="not a named pipe"):
        VirtualBoard.start(dma_echo_exe, xdma=tmp_path)
    assert (tmp_path / "xdma0_h2c_0").read_text() == "keep"
    # Pipes left by a board that was killed: no hang, a clear error.
    stale = tmp_path / "stale"
    stale.mkdir()
    os.mkfifo(stale / "xdma0_h2c_0")
    os.mkfifo(stale / "xdma0_c2h_0")
    with pytest.raises(LinkError, match="no XDMA host-to-card device"):
        PcieLink(str(stale / "xdma0"))
    # … which the next board replaces.
    with VirtualBoard.start(dma_echo_exe, xdma=stale) as board:
        link = PcieLink(board.url[len("pcie://"):])
        link.write(b"\n")
        assert link.read(8, timeout=10) == b"\x0b"
        link.close()


def test_dma_ports_are_checked():
    class OneStream(wiring.Component):
        uart_rx: In(1)
        uart_tx: Out(1)
        h2c: In(stream.Signature(unsigned(8)))

        def elaborate(self, platform):
            return Module()

    class WideStream(OneStream):
        c2h: Out(stream.Signature(unsigned(16)))

    with pytest.raises(ValueError, match="both h2c and c2h"):
        build_vboard(unused(OneStream()), "onestream", divisor=4)
    with pytest.raises(ValueError, match="DMA stream 'c2h' must be"):
        build_vboard(unused(WideStream()), "widestream", divisor=4)


# ----------------------------------------------------------------------------- failures
def script(tmp_path, body):
    path = tmp_path / "fake_board"
    path.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_missing_executable_is_a_clear_error(tmp_path):
    with pytest.raises(VBoardError, match="not found"):
        VirtualBoard.start(tmp_path / "no_such_board")


def test_crashing_executable_shows_its_stderr(tmp_path):
    exe = script(tmp_path, "print('vboard: model exploded', file=sys.stderr); sys.exit(3)")
    with pytest.raises(VBoardError, match=r"status 3(.|\n)*model exploded"):
        VirtualBoard.start(exe)


def test_silent_executable_times_out(tmp_path):
    exe = script(tmp_path, "print('thinking', file=sys.stderr, flush=True); time.sleep(60)")
    start = time.monotonic()
    with pytest.raises(VBoardError, match=r"no serial URL within 1 s(.|\n)*thinking"):
        VirtualBoard.start(exe, timeout=1.0)
    assert time.monotonic() - start < 10


def test_stats_line_parsing():
    line = ("vboard: exit cycles=10 seconds=1.000 busy_seconds=0.500 cycles_per_s=20 "
            "bytes_to_chip=3 bytes_from_chip=2 frame_errors=1 dropped=0")
    stats = BoardStats.parse(line)
    assert stats == BoardStats(10, 1.0, 0.5, 20.0, 3, 2, 1, 0, True)
    assert BoardStats.parse("vboard: something else") is None
    assert "faults" not in str(stats)
    stats = BoardStats.parse(line + " dma_to_chip=7 dma_from_chip=9 dma_packets=2")
    assert (stats.dma_to_chip, stats.dma_from_chip, stats.dma_packets) == (7, 9, 2)
    assert "DMA 7 bytes to the chip, 9 from it in 2 packets" in str(stats)
    stats = BoardStats.parse(line + " resets=2 unplugs=1 flips_to_chip=4 flips_from_chip=5 "
                                    "drops_to_chip=6 drops_from_chip=7")
    assert (stats.resets, stats.unplugs, stats.flips_to_chip, stats.flips_from_chip,
            stats.drops_to_chip, stats.drops_from_chip) == (2, 1, 4, 5, 6, 7)
    assert str(stats).endswith("; faults: 2 resets, 1 unplug, bits flipped in 4 bytes to the "
                               "chip and 5 from it, 6 bytes lost to the chip and 7 from it")
    assert BoardStats.parse(line.replace("dropped=0", "dropped=x")) is None


# ----------------------------------------------------------------------------- faults
#: A slow UART for the counter: bytes the harness has taken stay a while on their way.
COUNTER_DIVISOR = 64


@pytest.fixture(scope="module")
def counter_exe():
    return build_vboard(Counter(COUNTER_DIVISOR), "vboard_counter", divisor=COUNTER_DIVISOR)


@needs_verilator
def test_reset_button_restarts_the_design(counter_exe):
    with VirtualBoard.start(counter_exe) as board:
        with serial.Serial(board.port, timeout=1) as port:
            port.write(bytes(5))
            assert read_exactly(port, 5) == bytes(range(5))
            # SIGUSR1: the harness's own 8 cycles.
            board.reset()
            port.write(bytes(3))
            assert read_exactly(port, 3) == bytes(range(3))
            # A command for a longer press.
            board.reset(cycles=500)
            port.write(bytes(2))
            assert read_exactly(port, 2) == bytes(range(2))
            # No reset, no restart.
            port.write(bytes(1))
            assert read_exactly(port, 1) == b"\x02"
            with pytest.raises(ValueError, match="cycles must be from 1"):
                board.reset(cycles=0)
            with pytest.raises(TypeError, match="cycles must be an integer"):
                board.reset(cycles=1.5)
    assert board.stats.resets == 2
    assert "2 resets" in str(board.stats)
    log = board.stderr_tail()
    assert "vboard: reset cycles=8 at=" in log and "vboard: reset cycles=500 at=" in log
    with pytest.raises(VBoardError, match="closed"):
        board.reset()


@needs_verilator
def test_unplug_fails_io_at_once_and_the_path_comes_back(echo_exe, tmp_path):
    from symspike.host.link import LinkError, SerialLink

    path = tmp_path / "board.tty"
    with VirtualBoard.start(echo_exe, link=path) as board:
        assert board.link_path == path
        assert board.link_url == f"serial://{path}?baud={board.baud}"
        assert os.path.realpath(path) == board.port
        link = SerialLink(str(path))
        try:
            link.write(b"\x00")
            assert link.read(1, timeout=10) == b"\x01"
            # Bytes in flight when the adapter is pulled are lost.
            link.write(bytes(2000))
            board.unplug(1.0)
            assert not board.plugged and not os.path.lexists(path)
            start = time.monotonic()
            with pytest.raises(LinkError, match="has gone.*plug it back in"):
                link.write(b"a")
            with pytest.raises(LinkError, match="has gone"):
                link.read(1, timeout=5)
            assert time.monotonic() - start < 1.0
            # Reopening before it is back: a clear error, and the link can be reopened later.
            with pytest.raises(LinkError, match=r"cannot reopen the serial link .* did not come "
                                                r"back within 0\.1 s \(no serial device"):
                link.reopen(timeout=0.1)
            with pytest.raises(LinkError, match="is closed; reopen it"):
                link.read(1, timeout=0)
            link.reopen(timeout=10)
            assert board.plugged
            assert os.path.realpath(path) == board.port
            assert board.serial_url == f"serial://{board.port}?baud={board.baud}"
            assert link.read(64, timeout=0.3) == b""
            link.write(b"abc")
            got = b""
            while len(got) < 3:
                chunk = link.read(3 - len(got), timeout=10)
                assert chunk, "no answer after the replug"
                got += chunk
            assert got == b"bcd"
        finally:
            link.close()
        with pytest.raises(ValueError, match="seconds must be from 0"):
            board.unplug(-1)
    assert board.stats.unplugs == 1
    # The link went with the board.
    assert not os.path.lexists(path)


@needs_verilator
def test_unplug_cuts_the_bytes_in_flight(counter_exe, tmp_path):
    """Bytes the harness had taken from the host but not yet sent never reach the design:
    after the replug the design's count is that of the answers sent before the unplug, give
    or take the bytes on the wire then (the one being answered, the one waiting, the one cut
    short)."""
    from symspike.host.link import SerialLink

    path = tmp_path / "counter.tty"
    sent = 4000         # 2.6 M cycles on the wire: far longer than the unplug takes to come
    with VirtualBoard.start(counter_exe, link=path, stats=0.01) as board:
        link = SerialLink(str(path))
        try:
            link.write(bytes(sent))
            # Taken by the harness: bytes still in the terminal would go with it anyway.
            deadline = time.monotonic() + 10
            while board.stats is None or board.stats.bytes_to_chip < sent:
                assert time.monotonic() < deadline, "the harness did not take the bytes"
                time.sleep(0.002)
            board.unplug(0.3)
            link.reopen(timeout=10)
            assert link.read(64, timeout=0.2) == b""
            link.write(b"?")
            count = link.read(1, timeout=10)
        finally:
            link.close()
    answered = board.stats.bytes_from_chip - 1
    assert len(count) == 1 and answered < sent - 3
    assert (count[0] - answered) % 256 in (0, 1, 2, 3)


@needs_verilator
def test_sim_link_reopens_after_an_unplug(echo_exe, tmp_path):
    """Through a stable path= and through the board's changing pseudo-terminal."""
    from symspike.host.link import LinkError, SerialLink, SimLink, open_link

    for query in (f"?path={tmp_path / 'b.tty'}", ""):
        sim = open_link(f"sim://{echo_exe}{query}")
        try:
            assert isinstance(sim, SimLink) and isinstance(sim.inner, SerialLink)
            if query:
                assert sim.inner.port == str(tmp_path / "b.tty")
            sim.vboard.unplug(0.3)
            with pytest.raises(LinkError):
                sim.write(b"x")
            sim.reopen(timeout=10)
            sim.write(b"A")
            assert sim.read(1, timeout=10) == b"B"
        finally:
            sim.close()
        assert not sim.vboard.alive
        with pytest.raises(LinkError, match="closed"):
            sim.reopen(1)


@needs_verilator
def test_pcie_link_reopens(dma_echo_exe):
    from symspike.host.link import LinkError, PcieLink

    with VirtualBoard.start(dma_echo_exe, xdma=True) as board:
        link = PcieLink(board.url[len("pcie://"):])
        link.reopen(timeout=1)
        link.write(b"\n")
        assert link.read(8, timeout=10) == b"\x0b"
    # The pipes went with the board.
    start = time.monotonic()
    with pytest.raises(LinkError, match=r"cannot reopen the PCIe link .* within 0\.2 s"):
        link.reopen(timeout=0.2)
    assert time.monotonic() - start < 2


MASK64 = (1 << 64) - 1


class Wire:
    """One direction of the harness's noise, as ``vboard_main.cpp`` specifies it."""

    def __init__(self, direction, seed, flip=0.0, drop=0.0):
        self.state = seed ^ (0xD1B54A32D192ED03 if direction else 0)
        self.flip = int(flip * 2 ** 53)
        self.drop = int(drop * 2 ** 53)

    def draw(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def __call__(self, byte):
        """The byte as it arrives, or ``None`` if lost."""
        if self.drop and self.draw() >> 11 < self.drop:
            return None
        if self.flip:
            r = self.draw()
            if r >> 11 < self.flip:
                byte ^= 1 << (r & 7)
        return byte


def predict_echo(sent, seed, flip=0.0, drop=0.0):
    """What the echo design's answers look like to the host through the noise."""
    to_chip, from_chip = Wire(0, seed, flip, drop), Wire(1, seed, flip, drop)
    out = bytearray()
    for byte in sent:
        received = to_chip(byte)
        if received is not None:
            answer = from_chip((received + 1) & 0xFF)
            if answer is not None:
                out.append(answer)
    return bytes(out)


def noisy_echo(exe, sent, **noise):
    """``(answers, final stats)``: ``sent`` through the echo design on a noisy wire, read
    until the line has been quiet for half a second."""
    with VirtualBoard.start(exe, **noise) as board:
        with serial.Serial(board.port, timeout=0.5) as port:
            port.write(sent)
            got = bytearray()
            while True:
                chunk = port.read(4096)
                if not chunk:
                    break
                got += chunk
    return bytes(got), board.stats


@needs_verilator
def test_every_byte_flipped(echo_exe):
    """Rate 1: each byte has exactly one bit flipped, on its way to the design and back."""
    sent = bytes(range(256)) * 2
    got, stats = noisy_echo(echo_exe, sent, flip_rate=1.0, flip_seed=5)
    assert len(got) == len(sent)
    singles = [1 << bit for bit in range(8)]
    for byte, answer in zip(sent, got):
        # Without looking at the generator: a one-bit flip each way explains every answer.
        assert any((((byte ^ m1) + 1) & 0xFF) ^ m2 == answer for m1 in singles for m2 in singles)
    assert got == predict_echo(sent, seed=5, flip=1.0)
    assert stats.flips_to_chip == stats.flips_from_chip == len(sent)
    assert stats.bytes_to_chip == stats.bytes_from_chip == len(sent)
    assert stats.frame_errors == 0


@needs_verilator
def test_no_noise_at_rate_zero(echo_exe):
    sent = os.urandom(2000)
    got, stats = noisy_echo(echo_exe, sent, flip_rate=0.0, drop_rate=0.0, flip_seed=5)
    assert got == plus_one(sent)
    assert (stats.flips_to_chip, stats.flips_from_chip, stats.drops_to_chip,
            stats.drops_from_chip) == (0, 0, 0, 0)


@needs_verilator
def test_rare_flips_are_plausible_and_reproducible(echo_exe):
    sent = bytes(random.Random(1).getrandbits(8) for _ in range(4000))
    got, stats = noisy_echo(echo_exe, sent, flip_rate=0.01, flip_seed=11)
    assert len(got) == len(sent)
    # Binomial(4000, 0.01) each way: 40 ± 6.3; five standard deviations either side.
    assert 8 <= stats.flips_to_chip <= 72 and 8 <= stats.flips_from_chip <= 72
    flips = stats.flips_to_chip + stats.flips_from_chip
    differ = sum(a != b for a, b in zip(got, plus_one(sent)))
    # Two flips of one byte may, rarely, cancel out.
    assert 0.9 * flips <= differ <= flips
    assert got == predict_echo(sent, seed=11, flip=0.01)
    again, stats_again = noisy_echo(echo_exe, sent, flip_rate=0.01, flip_seed=11)
    assert again == got
    assert (stats_again.flips_to_chip, stats_again.flips_from_chip) == (
        stats.flips_to_chip, stats.flips_from_chip)
    other, _ = noisy_echo(echo_exe, sent, flip_rate=0.01, flip_seed=12)
    assert other != got


@needs_verilator
def test_dropped_bytes(echo_exe):
    sent = bytes(random.Random(2).getrandbits(8) for _ in range(3000))
    got, stats = noisy_echo(echo_exe, sent, flip_rate=0.02, drop_rate=0.05, flip_seed=9)
    assert got == predict_echo(sent, seed=9, flip=0.02, drop=0.05)
    drops = stats.drops_to_chip + stats.drops_from_chip
    assert 150 <= drops <= 450                # 2 × 3000 × 0.05 = 300 at most, less the lost
    assert len(got) == len(sent) - drops
    assert stats.bytes_to_chip == len(sent) and stats.bytes_from_chip == len(got)
    assert "bytes lost to the chip" in str(stats)


@needs_verilator
def test_sim_url_puts_noise_on_the_wire(echo_exe, tmp_path):
    from symspike.host.link import open_link

    path = tmp_path / "noisy.tty"
    sent = bytes(range(64))
    with open_link(f"sim://{echo_exe}?flip=1&flip_seed=3&path={path}") as sim:
        assert sim.inner.port == str(path)
        assert sim.vboard.link_path == path
        sim.write(sent)
        got = b""
        while len(got) < len(sent):
            chunk = sim.read(64, timeout=10)
            assert chunk, "no answer through the noisy link"
            got += chunk
    assert got == predict_echo(sent, seed=3, flip=1.0)
    assert sim.vboard.stats.flips_to_chip == len(sent)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"flip_rate": 1.5}, ValueError, "flip_rate must be a probability from 0 to 1, not 1.5"),
    ({"flip_rate": float("nan")}, ValueError, "flip_rate must be a probability"),
    ({"drop_rate": -0.1}, ValueError, "drop_rate must be a probability"),
    ({"drop_rate": "0.1"}, TypeError, "drop_rate must be a number"),
    ({"flip_seed": -1}, ValueError, "flip_seed must be from 0 to 2\\*\\*64 - 1"),
    ({"flip_seed": 1 << 64}, ValueError, "flip_seed must be from 0"),
    ({"flip_seed": 1.0}, TypeError, "flip_seed must be an integer"),
])
def test_fault_options_are_checked_first(tmp_path, kwargs, error, match):
    # Checked before anything is built or started: the executable need not exist.
    with pytest.raises(error, match=match):
        VirtualBoard.start(tmp_path / "no_such_board", **kwargs)


@pytest.mark.parametrize("query,match", [
    ("flip=2", "flip must be a probability from 0 to 1, not '2'"),
    ("drop=often", "drop must be a probability"),
    ("flip_seed=-3", "flip_seed must be ≥ 0"),
    ("flip_seed=x", "flip_seed must be an integer"),
    ("path=", "path needs a file name"),
    ("link=pcie&flip=0.1", "link=pcie does not use"),
])
def test_sim_url_fault_options_are_checked(tmp_path, query, match):
    from symspike.host.link import LinkError, open_link

    with pytest.raises(LinkError, match=match) as err:
        open_link(f"sim://{tmp_path / 'no_such_board'}?{query}")
    assert "bad link URL" in str(err.value)


@needs_verilator
@pytest.mark.parametrize("args,why", [
    (["--flip-rate", "1.01"], "bad --flip-rate"),
    (["--flip-rate", "1e-3", "--drop-rate", "1"], None),
    (["--drop-rate", "x"], "bad --drop-rate"),
    (["--flip-seed", "-1"], "bad --flip-seed"),
    (["--unplug-ms", "86400001"], "bad --unplug-ms"),
])
def test_harness_refuses_bad_fault_options(echo_exe, args, why):
    if why is None:
        # Accepted: the board runs until its cycles are done.
        done = subprocess.run([str(echo_exe), *args, "--max-cycles", "1000"],
                              capture_output=True, timeout=20)
        assert done.returncode == 0, done.stderr
        return
    done = subprocess.run([str(echo_exe), *args], capture_output=True, timeout=20)
    err = done.stderr.decode()
    assert done.returncode == 2
    assert why in err and "usage:" in err and "--flip-rate P" in err


# ----------------------------------------------------------------------------- CLI
def test_cli_without_chip_top_says_so(monkeypatch, capsys):
    from symspike.host.cli import main

    monkeypatch.setitem(sys.modules, "symspike.hdl.chip", types.ModuleType("symspike.hdl.chip"))
    assert main(["sim", "board", "--neurons", "10"]) == 2
    err = capsys.readouterr().err
    assert "ChipTop" in err and "Traceback" not in err


@needs_verilator
def test_cli_runs_a_chip_top(monkeypatch, capsys):
    from symspike.host.cli import main

    def chip_top(cfg, *, seed=0, divisor=8):
        # The last run is refused before the design is built.
        return unused(Echo(divisor))

    fake = types.ModuleType("symspike.hdl.chip")
    fake.ChipTop = chip_top
    monkeypatch.setitem(sys.modules, "symspike.hdl.chip", fake)
    assert main(["sim", "board", "--neurons", "10", "--divisor", str(DIVISOR),
                 "--max-cycles", "50000"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("serial:///") and "50000 cycles" in err
    # A noisy line on request, and a clear refusal of a rate that is no probability.
    assert main(["sim", "board", "--neurons", "10", "--divisor", str(DIVISOR),
                 "--max-cycles", "50000", "--flip", "0.5", "--flip-seed", "3"]) == 0
    out, err = capsys.readouterr()
    assert "a bit of each UART byte flipped with probability 0.5" in err
    assert main(["sim", "board", "--neurons", "10", "--divisor", str(DIVISOR),
                 "--flip", "1.5"]) == 1
    err = capsys.readouterr().err
    assert "flip_rate" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2
