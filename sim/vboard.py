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

Faults can be injected into a running board, to test how a host copes with them on the chip's
own Verilog:

* :meth:`VirtualBoard.reset` presses the reset button: ``rst`` goes high for some cycles from
  the next one on. The serial line keeps running, so bytes the host sends meanwhile reach a
  design in reset.
* :meth:`VirtualBoard.unplug` pulls the serial link out for a while, as pulling a USB adapter
  does: the pseudo-terminal is closed, so a host's reads and writes on it fail at once; the
  ``link=`` symbolic link disappears; bytes in flight are lost (a frame being sent to the
  design is cut short, its line going idle) and so are those the design sends meanwhile. The
  clock keeps running. Then a fresh pseudo-terminal is opened (usually under another
  ``/dev/pts/N``) and the ``link=`` path points to it again: a host that opened
  :attr:`VirtualBoard.link_url` reopens the same path (``SerialLink.reopen``). The XDMA pipes
  are not unplugged.
* ``flip_rate``, ``drop_rate`` and ``flip_seed`` of :meth:`VirtualBoard.start` put noise on the
  wire: each byte crossing the UART between the pseudo-terminal and the design's pins, in
  either direction, is lost with probability ``drop_rate``, else has one random bit flipped
  with probability ``flip_rate``. The design receives the corrupted bytes and the host its
  corrupted answers. The faults are reproducible: those of the k-th byte of a direction
  depend only on the seed, the rates and k (the generator is specified in
  ``vboard_main.cpp``), and :class:`BoardStats` counts them per direction.

>>> with VirtualBoard.start(ChipTop(cfg, divisor=4), link="chip.tty",
...                         flip_rate=1e-3, flip_seed=7) as board:        # doctest: +SKIP
...     link = SerialLink(str(board.link_path))
...     board.unplug(0.5)           # link.read() and link.write() now raise LinkError
...     link.reopen(timeout=5)      # back once the adapter is plugged in again
...     board.reset()               # the reset button, for the harness's --reset cycles

The same faults are at hand outside Python, for a host driving the executable directly:
``SIGUSR1`` resets the design for ``--reset N`` cycles (default 8), ``SIGUSR2`` unplugs the
link for ``--unplug-ms N`` milliseconds (default 1000), and ``--flip-rate P``,
``--drop-rate P`` and ``--flip-seed S`` set the noise; ``vboard_main.cpp`` lists every option.

Executables are built once per exported Verilog (the folder of
:func:`symspike.sim.cosim.export_verilog`, under ``vboard-d<divisor>[-fst|-vcd]``) and reused
while neither the Verilog, the harness nor Verilator changes.
"""

from __future__ import annotations

import collections
import hashlib
import json
import numbers
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
    "MAX_RESET_CYCLES",
    "MAX_UNPLUG_S",
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
# What the simulator reports of the faults it was asked for (see vboard_main.cpp).
_RESET_LINE = re.compile(r"^vboard: reset cycles=\d+ at=\d+$")
_UNPLUG_LINE = re.compile(r"^vboard: unplug ms=\d+$")
_REPLUG_LINE = re.compile(r"^vboard: replug (serial://\S+)$")
_STDERR_LINES = 200
#: Longest reset (cycles) and unplug (seconds) the simulator accepts.
MAX_RESET_CYCLES = 1_000_000
MAX_UNPLUG_S = 86_400


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
    resets : int
        Resets asked for while running (:meth:`VirtualBoard.reset`, ``SIGUSR1``); the one at
        start is not counted.
    unplugs : int
        Times the serial link was unplugged.
    flips_to_chip, flips_from_chip : int
        Bytes with a bit flipped on their way to the design and from it (``flip_rate``).
    drops_to_chip, drops_from_chip : int
        Bytes lost on their way to the design and from it (``drop_rate``). ``bytes_to_chip``
        counts the bytes the host wrote, lost ones included; ``bytes_from_chip`` only the
        bytes that went on towards the host.
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
    resets: int = 0
    unplugs: int = 0
    flips_to_chip: int = 0
    flips_from_chip: int = 0
    drops_to_chip: int = 0
    drops_from_chip: int = 0

    #: Counters a line may lack (older executables, or no DMA or noise), which read as 0.
    _OPTIONAL = ("dma_to_chip", "dma_from_chip", "dma_packets", "resets", "unplugs",
                 "flips_to_chip", "flips_from_chip", "drops_to_chip", "drops_from_chip")

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
                       **{name: int(fields.get(name, 0)) for name in cls._OPTIONAL})
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
        faults = []
        if self.resets:
            faults.append(f"{self.resets} reset{'s' if self.resets != 1 else ''}")
        if self.unplugs:
            faults.append(f"{self.unplugs} unplug{'s' if self.unplugs != 1 else ''}")
        if self.flips_to_chip or self.flips_from_chip:
            faults.append(f"bits flipped in {self.flips_to_chip} bytes to the chip and "
                          f"{self.flips_from_chip} from it")
        if self.drops_to_chip or self.drops_from_chip:
            faults.append(f"{self.drops_to_chip} bytes lost to the chip and "
                          f"{self.drops_from_chip} from it")
        if faults:
            text += "; faults: " + ", ".join(faults)
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
def _probability(name, value):
    """``value`` as a float from 0 to 1 (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number from 0 to 1, not {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:     # false for NaN too
        raise ValueError(f"{name} must be a probability from 0 to 1, not {value!r}")
    return value


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
        ``serial:///dev/pts/N?baud=B``: the current pseudo-terminal, which changes when the
        link is plugged in again after :meth:`unplug`.
    link_path : Path or None
        The ``link=`` symbolic link to the pseudo-terminal: a path that stays the same across
        :meth:`unplug` (``None`` without ``link``).
    link_url : str or None
        ``serial://<link_path>?baud=B``, the serial URL that survives an unplug.
    pcie_url : str or None
        ``pcie://<dir>/xdma0``: the simulated XDMA device files (``None`` without ``xdma``).
    xdma_dir : Path or None
        The folder of the named pipes.
    port : str
        The current pseudo-terminal's path, for ``serial.Serial``.
    baud : int
        The bit rate in ``url`` (a label: the terminal accepts any).
    executable : Path
        The simulator.
    stats : BoardStats or None
        The latest statistics the simulator reported (periodically with ``stats=``, and at
        exit).
    plugged : bool
        Whether the serial link is plugged in (see :meth:`unplug`).
    """

    def __init__(self, process: subprocess.Popen, urls: list, executable: Path,
                 lines: collections.deque, reader: threading.Thread, state: dict,
                 xdma_dir: Path | None = None, own_dir: bool = False,
                 link_path: Path | None = None):
        self._process = process
        self.pcie_url = urls[1] if len(urls) > 1 else None
        self.xdma_dir = xdma_dir
        self._own_dir = own_dir
        self.baud = int(parse_qs(urlsplit(urls[0]).query).get("baud", ["0"])[0])
        self.link_path = link_path
        self.link_url = (f"serial://{link_path}?baud={self.baud}" if link_path is not None
                         else None)
        self.executable = executable
        self._lines = lines
        self._reader = reader
        self._state = state
        # One fault request at a time: each waits for its own report, never an earlier one's.
        self._control = threading.Lock()
        self._closed = False

    @property
    def serial_url(self) -> str:
        return self._state["serial_url"]

    @property
    def url(self) -> str:
        return self.pcie_url or self.serial_url

    @property
    def port(self) -> str:
        return urlsplit(self.serial_url).path

    # ------------------------------------------------------------------ start
    @classmethod
    def start(cls, design, *, name: str | None = None, divisor: int | None = None,
              baud: int | None = None, waves=None, stats: float | None = None,
              link=None, xdma=None, sleep: bool = True, max_cycles: int | None = None,
              on_stats=None, timeout: float = 30.0, root=None,
              flip_rate: float | None = None, drop_rate: float | None = None,
              flip_seed: int | None = None) -> "VirtualBoard":
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
            Also make this a symbolic link to the pseudo-terminal while the board runs (and is
            plugged in): the stable :attr:`link_path` and :attr:`link_url`.
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
        flip_rate : float, optional
            Probability, from 0 to 1, that a byte crossing the UART (either way) gets one
            random bit flipped (default 0).
        drop_rate : float, optional
            Probability, from 0 to 1, that a byte crossing the UART is lost (default 0).
        flip_seed : int, optional
            Seed of the flips and drops, from 0 to 2**64 - 1 (default 0): the same seed, rates
            and bytes give the same faults.

        Raises
        ------
        TypeError, ValueError
            Bad arguments (the message names the argument), or a component without the UART
            ports (or, with ``xdma``, without the DMA streams).
        VBoardError
            The build failed, or the simulator is missing, exited or printed no URL in
            ``timeout`` seconds; the message has the end of what it wrote to stderr.
        """
        from amaranth.lib import wiring

        # Checked before a build that may take minutes.
        flip_rate = _probability("flip_rate", flip_rate)
        drop_rate = _probability("drop_rate", drop_rate)
        if flip_seed is not None:
            if isinstance(flip_seed, bool) or not isinstance(flip_seed, numbers.Integral):
                raise TypeError(f"flip_seed must be an integer, not {flip_seed!r}")
            if not 0 <= flip_seed < 1 << 64:
                raise ValueError(f"flip_seed must be from 0 to 2**64 - 1, not {flip_seed}")
        if link is not None and not isinstance(link, (str, os.PathLike)):
            raise TypeError(f"link must be a path, not {link!r}")

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
        link_path = Path(link).absolute() if link is not None else None
        if link_path is not None:
            cmd += ["--link", str(link_path)]
        if flip_rate is not None:
            cmd += ["--flip-rate", repr(flip_rate)]
        if drop_rate is not None:
            cmd += ["--drop-rate", repr(drop_rate)]
        if flip_seed is not None:
            cmd += ["--flip-seed", str(int(flip_seed))]
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
        changed = threading.Condition()
        state = {"stats": None, "serial_url": None, "plugged": True, "resets": 0,
                 "unplugs": 0, "ended": False, "changed": changed}

        def read_stderr():
            # Drained continuously: a full pipe would stall the simulator.
            try:
                for raw in process.stderr:
                    line = raw.decode(errors="replace").rstrip("\n")
                    lines.append(line)
                    parsed = BoardStats.parse(line)
                    if parsed is not None:
                        state["stats"] = parsed
                        if on_stats is not None:
                            on_stats(parsed)
                        continue
                    replug = _REPLUG_LINE.match(line)
                    with changed:
                        if _RESET_LINE.match(line):
                            state["resets"] += 1
                        elif _UNPLUG_LINE.match(line):
                            state["unplugs"] += 1
                            state["plugged"] = False
                        elif replug is not None:
                            state["serial_url"] = replug.group(1)
                            state["plugged"] = True
                        else:
                            continue
                        changed.notify_all()
            finally:
                with changed:
                    state["ended"] = True
                    changed.notify_all()

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
        state["serial_url"] = urls[0]
        return cls(process, urls, executable, lines, reader, state, xdma_dir, own_dir,
                   link_path)

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

    @property
    def plugged(self) -> bool:
        return self._state["plugged"]

    # ------------------------------------------------------------------ faults
    def reset(self, cycles: int | None = None, *, timeout: float = 10.0):
        """Press the reset button: hold the design's ``rst`` high from the next cycle on.

        Returns once the simulator reports ``rst`` low again. The serial line is not paused,
        so bytes the host sends during the reset reach a design in reset, as on a board.

        Parameters
        ----------
        cycles : int, optional
            Cycles ``rst`` stays high, from 1 to :data:`MAX_RESET_CYCLES`; default the
            simulator's ``--reset`` (8), which it is asked for with ``SIGUSR1``.
        timeout : float
            Seconds to wait for the simulator's report.

        Raises
        ------
        TypeError, ValueError
            ``cycles`` is not an integer in range.
        VBoardError
            The board is closed, the simulator has exited or it did not report the reset
            within ``timeout`` seconds.
        """
        if cycles is not None:
            if isinstance(cycles, bool) or not isinstance(cycles, numbers.Integral):
                raise TypeError(f"cycles must be an integer, not {cycles!r}")
            if not 1 <= cycles <= MAX_RESET_CYCLES:
                raise ValueError(f"cycles must be from 1 to {MAX_RESET_CYCLES}, not {cycles}")
        self._inject(signal.SIGUSR1 if cycles is None else f"reset {int(cycles)}", "resets",
                     timeout, "the reset")

    def unplug(self, seconds: float | None = None, *, timeout: float = 10.0):
        """Pull the serial link out for ``seconds``, as one pulls a USB serial adapter.

        Returns once the link is out: the pseudo-terminal is closed (a host's reads and writes
        on it fail at once), :attr:`link_path` is gone and the bytes in flight are lost. The
        clock runs on. After ``seconds`` a fresh pseudo-terminal appears (:attr:`serial_url`
        changes; :attr:`link_path` points to it): see :attr:`plugged` and
        :meth:`wait_plugged`. Unplugging again while out restarts the time. The XDMA pipes
        stay.

        Parameters
        ----------
        seconds : float, optional
            How long the link stays out, from 0 to :data:`MAX_UNPLUG_S` (to the millisecond);
            default the simulator's ``--unplug-ms`` (1 s), which it is asked for with
            ``SIGUSR2``.
        timeout : float
            Seconds to wait for the simulator to report the unplug.

        Raises
        ------
        TypeError, ValueError
            ``seconds`` is not a number in range.
        VBoardError
            The board is closed, the simulator has exited or it did not report the unplug
            within ``timeout`` seconds.
        """
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
                raise TypeError(f"seconds must be a number, not {seconds!r}")
            if not 0 <= seconds <= MAX_UNPLUG_S:
                raise ValueError(f"seconds must be from 0 to {MAX_UNPLUG_S}, not {seconds}")
        self._inject(signal.SIGUSR2 if seconds is None else f"unplug {round(seconds * 1000)}",
                     "unplugs", timeout, "the unplug")

    def wait_plugged(self, timeout: float | None = None) -> bool:
        """Wait until the serial link is plugged in; ``False`` after ``timeout`` seconds or
        if the simulator has exited."""
        changed = self._state["changed"]
        with changed:
            changed.wait_for(lambda: self._state["plugged"] or self._state["ended"], timeout)
            return self._state["plugged"] and not self._state["ended"]

    def _inject(self, what, counter, timeout, name):
        """Ask the simulator for a fault and wait until it reports it (``counter`` grows)."""
        with self._control:
            before = self._state[counter]
            self._request(what)
            self._await(lambda: self._state[counter] > before, timeout, name)

    def _request(self, what):
        """Send the simulator a signal, or a command line on its stdin."""
        if self._closed or self._process.poll() is not None:
            raise VBoardError(self._gone("cannot inject a fault"))
        try:
            if isinstance(what, str):
                self._process.stdin.write(what.encode() + b"\n")
                self._process.stdin.flush()
            else:
                self._process.send_signal(what)
        except (OSError, ValueError) as exc:
            raise VBoardError(f"cannot reach the virtual board's simulator: {exc}") from None

    def _await(self, done, timeout, what):
        changed = self._state["changed"]
        with changed:
            changed.wait_for(lambda: done() or self._state["ended"], timeout)
            if done():
                return
        if self._state["ended"]:
            raise VBoardError(self._gone(f"no report of {what}"))
        raise VBoardError(f"the virtual board's simulator did not report {what} within "
                          f"{timeout:g} s; stderr (tail):\n{self.stderr_tail(10)}")

    def _gone(self, what):
        if self._closed:
            return f"{what}: the virtual board is closed"
        status = self._process.poll()
        if status is None:
            status = self.wait(2)
        return (f"{what}: the virtual board's simulator has exited (status {status}); "
                f"stderr (tail):\n{self.stderr_tail(10)}")

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
