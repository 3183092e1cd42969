"""The virtual board: an echo design in Verilator behind a pseudo-terminal, opened with pyserial.

The echo design returns every byte it receives plus one, through the chip's UART, so a byte
that comes back transformed has crossed the pseudo-terminal, the harness's serialiser, the
design's receiver and transmitter, and the harness's decoder. A second echo design also has
the DMA byte streams of a PCIe card, served through simulated XDMA device files (named
pipes). Tests that run Verilator skip when it is unavailable; the ones about a broken
executable need no Verilator.
"""

import os
import random
import stat
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
    stats = BoardStats.parse(line + " dma_to_chip=7 dma_from_chip=9 dma_packets=2")
    assert (stats.dma_to_chip, stats.dma_from_chip, stats.dma_packets) == (7, 9, 2)
    assert "DMA 7 bytes to the chip, 9 from it in 2 packets" in str(stats)


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
        return Echo(divisor)

    fake = types.ModuleType("symspike.hdl.chip")
    fake.ChipTop = chip_top
    monkeypatch.setitem(sys.modules, "symspike.hdl.chip", fake)
    assert main(["sim", "board", "--neurons", "10", "--divisor", str(DIVISOR),
                 "--max-cycles", "50000"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("serial:///") and "50000 cycles" in err
