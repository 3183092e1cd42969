"""The virtual board: a design's Verilog running in Verilator behind a pseudo-terminal.

Without a board attached, the host driver talks to the chip as Verilator runs it: the
design is compiled, with the C++ harness ``vboard_main.cpp`` of this package, into an
executable that opens a pseudo-terminal, prints its slave side as a serial URL and then
runs the clock, bit-banging the design's UART pins at ``divisor`` clock cycles per bit.
The host opens the slave exactly like a USB serial adapter:

>>> with VirtualBoard.start(ChipTop(cfg, divisor=4), name="chip") as board:  # doctest: +SKIP
...     link = serial.Serial(board.port, timeout=1)
...     ...
>>> board.stats.cycles_per_s                                                 # doctest: +SKIP

The design is an Amaranth component with the ports ``uart_rx: In(1)`` and ``uart_tx:
Out(1)`` besides the implicit ``clk`` and ``rst``. It may have an ``idle: Out(1)`` port: high
while nothing but a byte on ``uart_rx`` could change what the design will ever do (no frame
half received, no computation or transmission under way, no timer running). Then, once both
lines have been quiet for two frames and no byte waits in either direction, the simulator
sleeps until the host writes; without the port the clock always runs and the simulator keeps
one CPU core busy.

A design may also have the DMA byte streams of a PCIe card: ``h2c: In(stream.Signature(8))``
(host to card) and ``c2h: Out(stream.Signature(...))`` whose 9-bit payload is a data byte and,
in bit 8, a ``last`` flag ending each packet. Started with ``xdma=``, the simulator serves them
through two named pipes that stand in for the XDMA driver's character devices,
``<dir>/xdma0_h2c_0`` and ``<dir>/xdma0_c2h_0``, and :attr:`VirtualBoard.url` becomes
``pcie://<dir>/xdma0``, which ``symspike.host.link.PcieLink`` opens as it would a card. The
pipes release the c2h stream a packet at a time, as a C2H transfer ends on TLAST. The serial
port stays open beside them (:attr:`VirtualBoard.serial_url`): both links reach the same design,
which answers each frame on the link it came from; as on a board, one host at a time.

>>> with VirtualBoard.start(ChipTop(cfg, divisor=4), xdma=True) as board:  # doctest: +SKIP
...     board.url                           # 'pcie://<temporary folder>/xdma0'

Simulated and wall time are unrelated: a design simulates at some millions of cycles per
second at best, so a 25 MHz chip runs some times slower than on the board and a host must
not expect the board's latency. A pseudo-terminal has no bit rate: the host may open it at any
baud, and bytes reach the design at the simulated one.

Executables are built once per exported Verilog (the folder of
:func:`symspike.sim.cosim.export_verilog`, under ``vboard-d<divisor>[-fst|-vcd]``) and reused
while neither the Verilog, the harness nor Verilator changes.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .cosim import (CosimError, VerilogDesign, _locked, _tail, _write_atomic, export_verilog,
                    tool_env, unavailable_reason)

__all__ = [
    "HARNESS",
    "WAVE_FORMATS",
    "VBoardError",
    "BoardStats",
    "build_vboard",
    "VirtualBoard",
]

#: The C++ harness compiled with every design.
HARNESS = Path(__file__).resolve().with_name("vboard_main.cpp")
#: Waveform formats a build may record, by file suffix.
WAVE_FORMATS = {"fst": "--trace-fst", "vcd": "--trace"}
#: Verilator options: speed over X-accuracy, since Amaranth's Verilog initialises every
#: register and the harness resets the design first. The harness advances time by one unit
#: per clock edge, so a clock cycle lasts 2 ns in a waveform, whatever the chip's clock.
VERILATOR_OPTS = ("-O3", "--x-assign", "fast", "--x-initial", "fast",
                  "-Wno-fatal", "-Wno-lint", "-Wno-style", "--timescale", "1ns/1ns")
#: C++ optimisation for the model and the harness, as make variables (Verilator's own
#: default, -Os, simulates slower).
CXX_OPT = ("OPT_FAST=-O2", "OPT_GLOBAL=-O2")

_STATS_LINE = re.compile(r"^vboard: (stats|exit) (.*)$")
_STDERR_LINES = 200


class VBoardError(RuntimeError):
    """A virtual board that could not be built, started or run."""


@dataclass(frozen=True)
class BoardStats:
    """What a virtual board's simulator reported.

    Attributes
    ----------
    cycles : int
        Clock cycles simulated.
    seconds : float
        Wall-clock time since the clock started.
    busy_seconds : float
        ``seconds`` less the time slept while the design was idle.
    cycles_per_s : float
        ``cycles / busy_seconds``: the simulation speed.
    bytes_to_chip : int
        Bytes the host wrote and the harness took for the design's ``uart_rx``.
    bytes_from_chip : int
        Bytes decoded from ``uart_tx`` and queued for the host.
    frame_errors : int
        Frames on ``uart_tx`` whose stop bit was low (dropped).
    dropped : int
        Bytes from the design dropped because the host did not read (more than 1 MiB waiting).
    final : bool
        ``True`` for the report made at exit, ``False`` for a periodic one.
    dma_to_chip : int
        Bytes the host wrote to the simulated XDMA host-to-card pipe (0 without ``xdma``).
    dma_from_chip : int
        Bytes of the design's card-to-host stream.
    dma_packets : int
        Card-to-host packets (bytes marked ``last``).
    """

    cycles: int
    seconds: float
    busy_seconds: float
    cycles_per_s: float
    bytes_to_chip: int
    bytes_from_chip: int
    frame_errors: int
    dropped: int
    final: bool
    dma_to_chip: int = 0
    dma_from_chip: int = 0
    dma_packets: int = 0

    @classmethod
    def parse(cls, line: str) -> "BoardStats | None":
        """The statistics of one ``vboard: stats|exit key=value …`` line, else ``None``."""
        match = _STATS_LINE.match(line.strip())
        if match is None:
            return None
        fields = dict(item.split("=", 1) for item in match.group(2).split() if "=" in item)
        try:
            return cls(cycles=int(fields["cycles"]), seconds=float(fields["seconds"]),
                       busy_seconds=float(fields["busy_seconds"]),
                       cycles_per_s=float(fields["cycles_per_s"]),
                       bytes_to_chip=int(fields["bytes_to_chip"]),
                       bytes_from_chip=int(fields["bytes_from_chip"]),
                       frame_errors=int(fields["frame_errors"]), dropped=int(fields["dropped"]),
                       final=match.group(1) == "exit",
                       dma_to_chip=int(fields.get("dma_to_chip", 0)),
                       dma_from_chip=int(fields.get("dma_from_chip", 0)),
                       dma_packets=int(fields.get("dma_packets", 0)))
        except (KeyError, ValueError):
            return None

    def __str__(self) -> str:
        text = (f"{self.cycles} cycles in {self.busy_seconds:.2f} s busy "
                f"({self.seconds:.2f} s wall): {self.cycles_per_s / 1e6:.3g} M cycles/s; "
                f"{self.bytes_to_chip} bytes to the chip, {self.bytes_from_chip} from it, "
                f"{self.frame_errors} framing errors, {self.dropped} dropped")
        if self.dma_to_chip or self.dma_from_chip:
            text += (f"; DMA {self.dma_to_chip} bytes to the chip, {self.dma_from_chip} "
                     f"from it in {self.dma_packets} packets")
        return text


# ----------------------------------------------------------------------------- build
def _check_dma(component) -> bool:
    """Check the DMA streams; ``True`` if the design has them."""
    from amaranth.hdl import Shape
    from amaranth.lib import wiring

    members = component.signature.members
    present = [name for name in ("h2c", "c2h") if name in members]
    if not present:
        return False
    if len(present) == 1:
        raise ValueError(f"{type(component).__name__} has {present[0]!r} but not the other DMA "
                         f"stream: a virtual board needs both h2c and c2h, or neither")
    for name, flow, width in (("h2c", wiring.In, 8), ("c2h", wiring.Out, 9)):
        member = members[name]
        inner = member.signature.members if member.is_signature else {}
        ok = (member.flow == flow and set(inner) == {"valid", "ready", "payload"}
              and Shape.cast(inner["payload"].shape).width == width)
        if ok and name == "c2h":
            # The harness reads the flag from the payload's top bit.
            layout = inner["payload"].shape
            try:
                ok = layout["last"].offset == 8 and layout["data"].offset == 0
            except (KeyError, TypeError, AttributeError):
                ok = False
        if not ok:
            want = ("In(stream.Signature(unsigned(8)))" if name == "h2c" else
                    "Out(stream.Signature(StructLayout({'data': unsigned(8), "
                    "'last': unsigned(1)})))")
            raise ValueError(f"{type(component).__name__}: DMA stream {name!r} must be "
                             f"{want}, not {member!r}")
    return True


def _check_ports(component) -> bool:
    """Check the UART ports; ``True`` if the design has an ``idle`` output."""
    from amaranth.hdl import Shape
    from amaranth.lib import wiring

    members = component.signature.members

    def port(name, flow):
        if name not in members:
            return False
        member = members[name]
        if not member.is_port or member.flow != flow or Shape.cast(member.shape).width != 1:
            raise ValueError(f"{type(component).__name__}: port {name!r} must be "
                             f"{flow.name}(1), not {member!r}")
        return True

    for name, flow in (("uart_rx", wiring.In), ("uart_tx", wiring.Out)):
        if not port(name, flow):
            raise ValueError(f"{type(component).__name__} has no {name!r} port: a virtual "
                             f"board needs uart_rx: In(1) and uart_tx: Out(1)")
    return port("idle", wiring.Out)


def _check_divisor(component, divisor) -> int:
    own = getattr(component, "divisor", None)
    if divisor is None:
        divisor = own
        if divisor is None:
            raise TypeError(f"{type(component).__name__} has no 'divisor' attribute: give "
                            f"divisor= (clock cycles per UART bit)")
    if isinstance(divisor, bool) or not isinstance(divisor, int):
        raise TypeError(f"divisor must be an int, not {divisor!r}")
    if divisor < 2:
        raise ValueError(f"divisor must be ≥ 2 clock cycles per bit, not {divisor}")
    if isinstance(own, int) and not isinstance(own, bool) and own != divisor:
        raise ValueError(f"divisor {divisor} does not match the design's UART divisor {own}")
    return divisor


def _verilator_version() -> str:
    try:
        return metadata.version("verilator")
    except metadata.PackageNotFoundError:
        return "?"


def build_vboard(component, name: str, *, divisor: int | None = None, waves: str | None = None,
                 root=None, jobs: int | None = None) -> Path:
    """Compile a component and the harness into a virtual-board executable.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design, with ports ``uart_rx: In(1)``, ``uart_tx: Out(1)`` and optionally
        ``idle: Out(1)`` and the DMA streams ``h2c`` and ``c2h`` (see the module
        documentation).
    name : str
        Name of the top-level Verilog module (and of its build folder).
    divisor : int, optional
        Clock cycles per UART bit the harness uses; default the component's ``divisor``
        attribute, which it must match if both exist.
    waves : {"fst", "vcd"}, optional
        Build with waveform tracing (slower; the executable then takes ``--trace PATH``).
    root : path-like, optional
        Root of the build folders (default :func:`symspike.sim.cosim.build_root`).
    jobs : int, optional
        Parallel compile jobs (default: the number of CPUs).

    Returns
    -------
    Path
        The executable. Run it with ``--help``-style options listed at the top of
        ``vboard_main.cpp``, or through :meth:`VirtualBoard.start`.

    Raises
    ------
    TypeError, ValueError
        Bad arguments, or the design lacks the UART ports.
    VBoardError
        Verilator is unavailable or the build failed (the message holds the log's tail).
    """
    has_idle = _check_ports(component)
    has_dma = _check_dma(component)
    divisor = _check_divisor(component, divisor)
    if waves is not None and waves not in WAVE_FORMATS:
        raise ValueError(f"waves must be one of {sorted(WAVE_FORMATS)} or None, not {waves!r}")
    reason = unavailable_reason("verilator")
    if reason:
        raise VBoardError(f"Verilator is not available: {reason}")
    design = export_verilog(component, name, root=root)
    return _build(design, divisor=divisor, has_idle=has_idle, has_dma=has_dma, waves=waves,
                  jobs=jobs)


def _build(design: VerilogDesign, *, divisor: int, has_idle: bool, has_dma: bool,
           waves: str | None, jobs: int | None) -> Path:
    harness = HARNESS.read_text()
    build_dir = design.folder / (f"vboard-d{divisor}" + (f"-{waves}" if waves else ""))
    cflags = (f"-DVBOARD_DIVISOR={divisor} -DVBOARD_IDLE_PORT={int(has_idle)} "
              f"-DVBOARD_DMA_PORT={int(has_dma)}")
    options = [*VERILATOR_OPTS, *((WAVE_FORMATS[waves],) if waves else ()),
               *(arg for var in CXX_OPT for arg in ("-MAKEFLAGS", var))]
    stamp_text = json.dumps({
        "verilog": design.digest,
        "harness": hashlib.sha256(harness.encode()).hexdigest(),
        "options": options, "cflags": cflags, "verilator": _verilator_version(),
    })
    stamp = build_dir / "build.stamp"
    executable = build_dir / "obj" / "vboard"
    with _locked(design.folder / f".{build_dir.name}.lock"):
        if stamp.is_file() and stamp.read_text() == stamp_text and executable.is_file():
            return executable
        shutil.rmtree(build_dir, ignore_errors=True)
        build_dir.mkdir(parents=True)
        # A copy beside the build, so that a build folder says what it was made from.
        (build_dir / HARNESS.name).write_text(harness)
        jobs = jobs or os.cpu_count() or 1
        cmd = ["verilator", "--cc", "--exe", "--build", *options,
               "--top-module", design.name, "--prefix", "Vboard",
               "--Mdir", "obj", "-o", "vboard", "-j", str(jobs), "-CFLAGS", cflags,
               str(design.verilog), HARNESS.name]
        log = build_dir / "build.log"
        env = {**os.environ, **tool_env("verilator")}
        with open(log, "w") as out:
            out.write(" ".join(cmd) + "\n")
            out.flush()
            try:
                done = subprocess.run(cmd, cwd=build_dir, env=env, stdout=out,
                                      stderr=subprocess.STDOUT)
            except (OSError, CosimError) as exc:
                raise VBoardError(f"cannot run Verilator: {exc}") from None
        if done.returncode != 0 or not executable.is_file():
            hint = ""
            if waves == "fst" and "lz4.h" in log.read_text(errors="replace"):
                hint = ("; Verilator's FST writer needs the LZ4 development headers "
                        "(liblz4-dev), record a .vcd waveform instead")
            raise VBoardError(f"Verilator build of the virtual board {design.name} failed "
                              f"(exit status {done.returncode}){hint}; log {log}:\n{_tail(log)}")
        _write_atomic(stamp, stamp_text)
    return executable


# ----------------------------------------------------------------------------- running
def _wave_format(path) -> str:
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix not in WAVE_FORMATS:
        raise ValueError(f"waves: a waveform file ends in .fst or .vcd, not {str(path)!r}")
    return suffix


class VirtualBoard:
    """A running virtual board: the simulator process and its pseudo-terminal.

    Made by :meth:`start`; a context manager that closes the board on exit.

    Attributes
    ----------
    url : str
        The link a host should use, for ``Board.open``: :attr:`pcie_url` when started with
        ``xdma``, else :attr:`serial_url`.
    serial_url : str
        ``serial:///dev/pts/N?baud=B``.
    pcie_url : str or None
        ``pcie://<dir>/xdma0``: the simulated XDMA device files (``None`` without ``xdma``).
    xdma_dir : Path or None
        The folder of the named pipes.
    port : str
        The pseudo-terminal's path, for ``serial.Serial``.
    baud : int
        The bit rate in ``url`` (a label: the terminal accepts any).
    executable : Path
        The simulator.
    stats : BoardStats or None
        The latest statistics the simulator reported (periodically with ``stats=``, and at
        exit).
    """

    def __init__(self, process: subprocess.Popen, urls: list, executable: Path,
                 lines: collections.deque, reader: threading.Thread, state: dict,
                 xdma_dir: Path | None = None, own_dir: bool = False):
        self._process = process
        self.serial_url = urls[0]
        self.pcie_url = urls[1] if len(urls) > 1 else None
        self.url = self.pcie_url or self.serial_url
        self.xdma_dir = xdma_dir
        self._own_dir = own_dir
        parts = urlsplit(self.serial_url)
        self.port = parts.path
        self.baud = int(parse_qs(parts.query).get("baud", ["0"])[0])
        self.executable = executable
        self._lines = lines
        self._reader = reader
        self._state = state
        self._closed = False

    # ------------------------------------------------------------------ start
    @classmethod
    def start(cls, design, *, name: str | None = None, divisor: int | None = None,
              baud: int | None = None, waves=None, stats: float | None = None,
              link=None, xdma=None, sleep: bool = True, max_cycles: int | None = None,
              on_stats=None, timeout: float = 30.0, root=None) -> "VirtualBoard":
        """Build (if needed) and launch a virtual board.

        Parameters
        ----------
        design : amaranth.lib.wiring.Component or path-like
            A component (built with :func:`build_vboard` first), or an executable it made.
        name : str, optional
            Module name for a component (default: its class name in lower case).
        divisor : int, optional
            Clock cycles per UART bit (default: the build's).
        baud : int, optional
            Bit rate shown in :attr:`url` (default 3000000).
        waves : path-like, optional
            Record a waveform to this ``.fst`` or ``.vcd`` file. A component is built with
            tracing for it; an executable must have been.
        stats : float, optional
            Have the simulator report statistics every ``stats`` seconds.
        link : path-like, optional
            Also make this a symbolic link to the pseudo-terminal while the board runs.
        xdma : bool or path-like, optional
            Serve the design's DMA streams through simulated XDMA device files (named pipes)
            in this folder, made if missing; ``True``: a private temporary folder, removed by
            :meth:`close`. :attr:`url` is then the ``pcie://`` URL.
        sleep : bool
            Let the simulator sleep while a design with an ``idle`` port is idle.
        max_cycles : int, optional
            Stop the simulator after this many clock cycles.
        on_stats : callable, optional
            Called with each :class:`BoardStats` as it arrives (from another thread).
        timeout : float
            Seconds to wait for the simulator to print its URL.
        root : path-like, optional
            Root of the build folders.

        Raises
        ------
        TypeError, ValueError
            Bad arguments, or a component without the UART ports (or, with ``xdma``, without
            the DMA streams).
        VBoardError
            The build failed, or the simulator is missing, exited or printed no URL in
            ``timeout`` seconds; the message has the end of what it wrote to stderr.
        """
        from amaranth.lib import wiring

        if isinstance(design, wiring.Component):
            if xdma not in (None, False) and not _check_dma(design):
                raise ValueError(f"xdma: {type(design).__name__} has no DMA streams (h2c and "
                                 f"c2h)")
            wave_format = _wave_format(waves) if waves is not None else None
            executable = build_vboard(design, name or type(design).__name__.lower(),
                                      divisor=divisor, waves=wave_format, root=root)
        elif isinstance(design, (str, os.PathLike)):
            executable = Path(design)
            if waves is not None:
                _wave_format(waves)
            if not executable.is_file():
                raise VBoardError(f"virtual-board executable not found: {executable}")
            if not os.access(executable, os.X_OK):
                raise VBoardError(f"virtual-board executable is not executable: {executable}")
        else:
            raise TypeError(f"design must be a wiring.Component or the path of a virtual-board "
                            f"executable, not {type(design).__name__}")

        cmd = [str(executable), "--watch-stdin"]
        if divisor is not None:
            cmd += ["--divisor", str(int(divisor))]
        if baud is not None:
            cmd += ["--baud", str(int(baud))]
        if stats is not None:
            cmd += ["--stats", repr(float(stats))]
        if waves is not None:
            cmd += ["--trace", str(Path(waves).resolve())]
        if link is not None:
            cmd += ["--link", str(Path(link).absolute())]
        if not sleep:
            cmd.append("--no-sleep")
        if max_cycles is not None:
            cmd += ["--max-cycles", str(int(max_cycles))]
        xdma_dir, own_dir = None, False
        if xdma is True:
            xdma_dir, own_dir = Path(tempfile.mkdtemp(prefix="symspike-xdma-")), True
        elif xdma not in (None, False):
            if not isinstance(xdma, (str, os.PathLike)):
                raise TypeError(f"xdma must be True or a folder, not {xdma!r}")
            xdma_dir = Path(xdma).absolute()
        if xdma_dir is not None:
            cmd += ["--xdma", str(xdma_dir)]

        try:
            # Its own session: a Ctrl-C meant for the host reaches the simulator only through
            # close(), which then collects the final statistics.
            process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            if own_dir:
                shutil.rmtree(xdma_dir, ignore_errors=True)
            raise VBoardError(f"cannot start the virtual board {executable}: {exc}") from None

        lines = collections.deque(maxlen=_STDERR_LINES)
        state = {"stats": None}

        def read_stderr():
            # Drained continuously: a full pipe would stall the simulator.
            for raw in process.stderr:
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                parsed = BoardStats.parse(line)
                if parsed is not None:
                    state["stats"] = parsed
                    if on_stats is not None:
                        on_stats(parsed)

        reader = threading.Thread(target=read_stderr, name="vboard-stderr", daemon=True)
        reader.start()
        schemes = ("serial", "pcie") if xdma_dir is not None else ("serial",)
        urls, why = cls._read_urls(process, timeout, schemes)
        if urls is None:
            try:
                process.kill()
            except OSError:
                pass
            process.wait()
            reader.join(timeout=5)
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
            if own_dir:
                shutil.rmtree(xdma_dir, ignore_errors=True)
            tail = "\n".join(lines) or "(nothing on stderr)"
            raise VBoardError(f"virtual board {executable} {why}; stderr (tail):\n{tail}")
        return cls(process, urls, executable, lines, reader, state, xdma_dir, own_dir)

    @staticmethod
    def _read_urls(process: subprocess.Popen, timeout: float, schemes: tuple) -> tuple:
        """``([url, …], None)``, one line per scheme in ``schemes``, or ``(None, why not)``."""
        fd = process.stdout.fileno()
        data = b""
        deadline = time.monotonic() + timeout
        what = " and ".join(f"{scheme} URL" for scheme in schemes)

        def gone():
            try:
                status = process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                return None, f"closed its output without printing its {what}"
            return None, f"exited with status {status} before printing its {what}"

        while data.count(b"\n") < len(schemes):
            left = deadline - time.monotonic()
            if left <= 0:
                return None, f"printed no {what} within {timeout:g} s"
            ready, _, _ = select.select([fd], [], [], min(left, 0.1))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    return gone()
                data += chunk
            elif process.poll() is not None:
                return gone()
        urls = [line.decode(errors="replace").strip()
                for line in data.split(b"\n")[:len(schemes)]]
        for url, scheme in zip(urls, schemes):
            if not url.startswith(f"{scheme}://"):
                return None, f"printed {url[:200]!r} where its {scheme} URL was expected"
        return urls, None

    # ------------------------------------------------------------------ life
    @property
    def pid(self) -> int:
        """Process id of the simulator."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The simulator's exit status, ``None`` while it runs."""
        return self._process.poll()

    @property
    def alive(self) -> bool:
        """Whether the simulator still runs."""
        return self._process.poll() is None

    @property
    def stats(self) -> BoardStats | None:
        return self._state["stats"]

    def stderr_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines the simulator wrote to stderr."""
        return "\n".join(list(self._lines)[-lines:])

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the simulator to exit by itself (``max_cycles``, a signal); its status,
        or ``None`` after ``timeout`` seconds."""
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self, timeout: float = 10.0) -> BoardStats | None:
        """Stop the simulator and return its final statistics.

        It gets SIGTERM (closing the pseudo-terminal and reporting), and SIGKILL if it has not
        exited after ``timeout`` seconds. Closing twice does nothing more.
        """
        if not self._closed:
            self._closed = True
            if self._process.poll() is None:
                try:
                    self._process.send_signal(signal.SIGTERM)
                except OSError:
                    pass
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            for pipe in (self._process.stdin, self._process.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:
                        pass
            self._reader.join(timeout=5)
            if self._process.stderr is not None:
                self._process.stderr.close()
            if self._own_dir and self.xdma_dir is not None:
                shutil.rmtree(self.xdma_dir, ignore_errors=True)
        return self.stats

    def __enter__(self) -> "VirtualBoard":
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        return f"VirtualBoard({self.url!r}, pid={self.pid}, {state})"
