"""``symspike bench throughput``: how fast the chip trains and infers, measured.

For a board (its device target's network configuration, see :mod:`symspike.boards.targets`)
the benchmark runs the chip's Verilog cycle-accurately on a virtual board
(:mod:`symspike.sim.vboard`) and presents real MNIST images through the host driver:
``--train`` training images, then ``--test`` inference images. After each ``PRESENT`` it reads
the chip's ``CYCLES`` register (the core's busy cycles of that image, re-presentations
included), and at the end it reads every weight and θ back and compares them with the golden
model trained on the same images (the run fails if one bit differs). From the measured
cycles it derives:

* **images/s** in the core at the post-route Fmax of the target's core build (``symspike build
  --target T --unit core --report results/synth-core-<…>.json``; ``--synth`` picks another
  report, ``--fmax`` gives the frequency directly) and at the target's clock;
* **synaptic operations per cycle**, and their fraction of the device's block-RAM port limit
  (:func:`port_limit`); a synaptic operation is one weight read-modify-written (or read, when
  nothing learns) by a synapse memory (:func:`synaptic_ops`);
* the **UART link ceiling** at ``--baud`` (3 Mbaud by default, 10 bits per byte) for the input
  modes (:data:`MODES`: on-chip encoding with all 784 pixels per frame or with the runs the
  host driver sends, and AER events), from the exact frame bytes of each image's
  presentations (:func:`link_bytes`): the full-duplex ceiling (a host that keeps the line busy
  both ways) and the stop-and-wait rate of the present host driver (each request waits for its
  answer; the chip's cycles added at the clock its bitstream runs, see below).

The chip's clock: a board build's report (``symspike build --board B --report …``) gives the
clock its bitstream runs (the PLL's output, at which timing is met); images/s and the UART's
stop-and-wait rate are given at that clock (``*_board``, ``stop_and_wait_images_per_s``) as
well as at the Fmax (``*_fmax``), which a PLL would have to hit exactly. Without a board
report the stop-and-wait rate takes the Fmax, or the target's clock.

Figures are medians over the images (this machine is noisy; cycle counts are not). The JSON
(``--json``) holds every per-image cycle count.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..boards.targets import BOARDS, Target, board_target
from ..firmware import protocol as P
from ..firmware.config import NetworkConfig
from .results import provenance, save_json

__all__ = ["MODES", "synaptic_ops", "port_limit", "link_bytes",
           "fmax_from_report", "board_clock_from_report", "add_bench_arguments", "run"]

#: Bits on the UART line per byte (start, 8 data, stop).
UART_BITS_PER_BYTE = 10

#: Data width (bits) of one block-RAM port and of one SPRAM, per FPGA family.
_PORT_BITS = {"ecp5": {"bram": 18, "spram": 0}, "ice40": {"bram": 16, "spram": 16}}

_FAIL = 2


class ThroughputError(Exception):
    """The benchmark cannot run or its result is wrong; the message says what to do."""


def synaptic_ops(cfg: NetworkConfig, activity) -> int:
    """Synaptic operations of one image: weights the synapse memories access.

    Per presentation: the synaptic scaling of each learning projection (every weight once);
    per time step: every delivered input spike reads its row of ``N`` input→E weights (the
    pre-synaptic update shares that access), every delivered E spike its ``10`` E→C weights,
    and, when the projection learns, every E spike updates its column of ``784`` input→E
    weights and every C spike its column of ``N`` E→C weights.

    Parameters
    ----------
    cfg : NetworkConfig
    activity : list of PresentationActivity
        From :func:`symspike.hdl.budget.record_activity`.
    """
    n, n_in, n_c = cfg.n_exc, cfg.n_input, cfg.n_classes
    total = 0
    for pres in activity:
        total += pres.learn_in * n_in * n + pres.learn_ec * n * n_c
        for s in pres.steps:
            total += s.n_in * n + s.n_e * n_c
            total += pres.learn_in * s.n_e * n_in + pres.learn_ec * s.n_c * n
    return int(total)


def port_limit(target: Target, cfg: NetworkConfig) -> float:
    """Synaptic operations per cycle the device's block RAM could serve at most.

    Every block RAM of the device holds weights and does one read-modify-write per cycle
    (one port reads a word, the other writes it back) of ``⌊port width / weight bits⌋``
    weights; a single-port SPRAM needs two cycles for one. ECP5 ``DP16KD``: 18-bit ports;
    iCE40 ``SB_RAM40_4K`` and ``SB_SPRAM256KA``: 16-bit.
    """
    widths = _PORT_BITS[target.family]
    bits = cfg.formats.weight_bits
    lim = target.limits
    return lim.bram * (widths["bram"] // bits) + lim.spram * (widths["spram"] // bits) / 2


#: Input modes whose link figures the bench reports: ``PRESENT`` frames of all 784 pixels,
#: the host driver's frames (``PRESENT_RUNS``), AER events.
MODES = ("pixels", "runs", "aer")


def _frame(payload_len: int) -> int:
    return P.HEADER_BYTES + payload_len + P.TRAILER_BYTES


def link_bytes(cfg: NetworkConfig, mode: str, intensities, encoder=None, pixels=None) -> tuple:
    """``(to_chip, from_chip)``: the bytes on the link for one image.

    ``pixels`` mode: one ``PRESENT`` frame (flags, label, 784 pixels) and its ``ACK`` with the
    result; the chip re-presents on its own. ``runs`` mode: the same with the frame the host
    driver sends (``present_request``: ``PRESENT_RUNS`` when it is shorter). ``aer`` mode: per
    presentation at each intensity of ``intensities``, ``AER_BEGIN``, the events of ``encoder.presentation(pixels, i)`` (two
    bytes each, step ends included) in ``AER`` frames of at most ``MAX_PAYLOAD`` bytes, and
    ``RESULT``; every request answered by an ``ACK`` (``RESULT``'s with the result).
    """
    result = _frame(len(P.Result(0, 0, 0, (0,) * 10).pack()))
    if mode == "pixels":
        return _frame(P.COMMANDS[P.Type.PRESENT]), result
    if mode == "runs":
        _, body = P.present_request(np.asarray(pixels, dtype=np.uint8).reshape(-1).tobytes())
        return _frame(2 + len(body)), result
    if mode != "aer":
        raise ValueError(f"mode must be 'pixels', 'runs' or 'aer', not {mode!r}")
    to = back = 0
    for intensity in intensities:
        size = 2 * len(encoder.presentation(pixels, int(intensity)))
        frames = -(-size // P.MAX_PAYLOAD)
        to += _frame(3) + size + frames * _frame(0) + _frame(0)
        back += _frame(0) * (1 + frames) + result
    return to, back


def fmax_from_report(path, target: Target, cfg: NetworkConfig) -> tuple:
    """``(fmax_mhz, source)`` of a ``symspike build`` report whose core is ``cfg``'s: a core
    build (``--target T --unit core``) or a board's full chip (``--board B``), whose routed
    Fmax includes the UART, the packet engine and the sequencer.

    Returns ``(None, why)`` if the report is missing, is for another target or
    configuration, or its core did not fit or was not placed.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        core = data if "board" in data else data["units"]["core"]
    except FileNotFoundError:
        return None, f"no report {path} (make it with `symspike build --target {target.name} " \
                     f"--unit core --report {path}` or `symspike build --board B --report " \
                     f"{path}`)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{path} is not a core or board build report ({exc})"
    if core.get("target") != target.name:
        return None, f"{path} is for target {core.get('target')!r}, not {target.name!r}"
    built = core.get("config", {})
    keys = ("n_exc", "lanes", "pipelines", "encoder_lanes")
    want = {k: getattr(cfg, k) for k in keys}
    got = {k: built.get(k) for k in keys}
    if got != want:
        return None, f"{path} is for {got}, not {want}"
    # A board build has no "placed": it is placed whenever it has an Fmax.
    if core.get("Fmax_MHz") is None or not core.get("placed", True):
        why = "it does not fit the device" if not core.get("fits", True) else "not placed"
        return None, f"{path} has no Fmax ({why})"
    return float(core["Fmax_MHz"]), str(path)


def board_clock_from_report(path):
    """The clock (MHz) a board build's bitstream runs, if ``path`` is a board build's report
    whose timing is met at that clock; ``None`` otherwise (a core build has no clock of its
    own, and a board whose timing fails does not run at its clock)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "board" not in data or data.get("timing_met") is not True:
        return None
    clock = data.get("clock_mhz")
    return float(clock) if isinstance(clock, (int, float)) and clock > 0 else None


def add_bench_arguments(p: argparse.ArgumentParser):
    """Options of ``symspike bench throughput``."""
    p.add_argument("--board", "-b", required=True, metavar="BOARD",
                   help=f"board: {', '.join(BOARDS)} (its target's network configuration)")
    p.add_argument("--neurons", "-N", type=int, help="excitatory neurons (default: the board's)")
    p.add_argument("--lanes", "-L", type=int, help="synapse lanes (default: the board's)")
    p.add_argument("--pipelines", "-P", type=int, help="LIF pipelines (default: the board's)")
    p.add_argument("--encoder-lanes", type=int, help="encoder lanes (default: the board's)")
    p.add_argument("--train", type=int, default=20, help="training images (default: 20)")
    p.add_argument("--test", type=int, default=10, help="inference images (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="chip and golden-model seed (default: 0)")
    p.add_argument("--data", metavar="DIR",
                   help="folder holding mnist/ (default: $SYMSPIKE_DATA, else the embedded "
                        "subset)")
    p.add_argument("--link", choices=("pcie", "uart"), default="pcie",
                   help="link to the virtual board (default: pcie, the faster to simulate; "
                        "the cycles do not depend on it)")
    p.add_argument("--baud", type=int, default=3_000_000,
                   help="UART rate of the link ceiling (default: 3000000)")
    p.add_argument("--synth", metavar="PATH.json",
                   help="core or board build report giving the Fmax (default: "
                        "results/synth-core-<family>.json when it is this configuration's)")
    p.add_argument("--fmax", type=float, metavar="MHZ", help="use this Fmax instead")
    p.add_argument("--sweep-lanes", type=int, nargs="+", metavar="L",
                   help="measure each of these lane counts in turn (instead of --lanes) and "
                        "plot images/s against lanes (--plot)")
    p.add_argument("--plot", metavar="PATH.png",
                   help="with --sweep-lanes: the plot (default: "
                        "results/throughput-<board>-lanes.png)")
    p.add_argument("--json", metavar="PATH", help="save the figures")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


_DEFAULT_REPORT = {"up5k": "results/synth-core-up5k.json",
                   "ecp5-85f": "results/synth-core-ecp5.json"}


def _median(values):
    return float(np.median(values)) if len(values) else None


def _rate(clock_mhz, cycles):
    return clock_mhz * 1e6 / cycles if clock_mhz and cycles else None


def measure(args) -> dict:
    """Run the benchmark for parsed ``args``; the figures as a dict."""
    from ..hdl.budget import image_cycles, record_activity
    from ..sim.aer import AerEncoder
    from ..sim.network import GoldenModel
    from .board import Board, BoardError
    from .datasets import DatasetError, load
    from .link import LinkError

    try:
        target = board_target(args.board)
        cfg = target.config(n_exc=args.neurons, lanes=args.lanes, pipelines=args.pipelines,
                            encoder_lanes=args.encoder_lanes)
    except (TypeError, ValueError) as exc:
        raise ThroughputError(str(exc)) from None
    for name in ("train", "test"):
        if getattr(args, name) < 0:
            raise ThroughputError(f"--{name} must be 0 or more, not {getattr(args, name)}")
    if args.train + args.test == 0:
        raise ThroughputError("nothing to measure: give --train or --test images")
    if args.baud <= 0:
        raise ThroughputError(f"--baud must be positive, not {args.baud}")
    try:
        x, y = load("mnist", "train", args.data, limit=args.train)
        xt, _ = load("mnist", "test", args.data, limit=args.test)
    except DatasetError as exc:
        raise ThroughputError(str(exc)) from None
    if len(x) < args.train or len(xt) < args.test:
        raise ThroughputError(f"the dataset has {len(x)} training and {len(xt)} test images; "
                              f"asked for {args.train} and {args.test}")

    if args.fmax is not None:
        if args.fmax <= 0:
            raise ThroughputError(f"--fmax must be positive, not {args.fmax}")
        fmax, fmax_source = args.fmax, "--fmax"
        board_clock = None
    else:
        report = args.synth or _DEFAULT_REPORT[target.name]
        fmax, fmax_source = fmax_from_report(report, target, cfg)
        if args.synth and fmax is None:
            raise ThroughputError(fmax_source)
        board_clock = board_clock_from_report(report) if fmax is not None else None

    golden = GoldenModel(cfg, args.seed)
    encoder = AerEncoder(cfg, args.seed + 1)
    url = f"sim://?link={args.link}&seed={args.seed}"
    if not args.quiet:
        print(f"building and starting the virtual board for {target.board} (N={cfg.n_exc}, "
              f"L={cfg.lanes}, P={cfg.pipelines}, E={cfg.encoder_lanes}); the first Verilator "
              f"build of a configuration takes minutes", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        board = Board.open(url, cfg=cfg, seed=args.seed, work_timeout=600.0)
    except (LinkError, BoardError) as exc:
        raise ThroughputError(f"cannot start the virtual board: {exc}") from None
    start_s = time.monotonic() - t0
    from tqdm.auto import tqdm
    rows = []
    try:
        jobs = [(x[k], int(y[k]), "both") for k in range(args.train)] + \
               [(xt[k], -1, "test") for k in range(args.test)]
        t0 = time.monotonic()
        for image, label, phase in tqdm(jobs, desc="images", unit="img", leave=False,
                                        disable=args.quiet):
            activity = record_activity(copy.deepcopy(golden), image, label, phase)
            want = golden.present(image, label, phase)
            got = board.present(image, label, phase)
            if (got.presentations, got.intensity, got.e_total, tuple(got.counts_c)) != \
                    (want.presentations, want.intensity, int(want.counts_e.sum()),
                     tuple(int(c) for c in want.counts_c)):
                raise ThroughputError(f"image {len(rows)} ({phase}): the chip answered {got}, "
                                      f"the golden model {want}; the chip is not bit-exact")
            cycles = board.read_reg(P.Reg.CYCLES)
            predicted = image_cycles(cfg, activity)
            pixels = np.asarray(image, dtype=np.uint8).reshape(-1)
            intensities = range(cfg.intensity_init, want.intensity + 1)
            rows.append({
                "phase": "train" if phase == "both" else "test",
                "cycles": int(cycles), "budget_cycles": int(predicted),
                "presentations": int(want.presentations),
                "synaptic_ops": synaptic_ops(cfg, activity),
                "bytes_pixels": link_bytes(cfg, "pixels", intensities),
                "bytes_runs": link_bytes(cfg, "runs", intensities, pixels=pixels),
                "bytes_aer": link_bytes(cfg, "aer", intensities, encoder, pixels),
            })
        run_s = time.monotonic() - t0
        weights = board.read_weights()
        theta = board.read_theta()
    except BoardError as exc:
        raise ThroughputError(f"the virtual board failed: {exc}") from None
    finally:
        board.close()
    identical = (np.array_equal(weights["w_in"], golden.w_in)
                 and np.array_equal(weights["w_ec"], golden.w_ec)
                 and np.array_equal(theta, golden.theta))
    return _summarise(target, cfg, args, rows, fmax, fmax_source, identical, start_s, run_s,
                      board_clock)


def _summarise(target, cfg, args, rows, fmax, fmax_source, identical, start_s, run_s,
               board_clock=None):
    from ..hdl.core import ec_lanes
    limit = port_limit(target, cfg)
    # The stop-and-wait rate at the clock a bitstream runs, where one is known.
    chip_mhz = board_clock or fmax or target.clock_mhz
    out = {
        "board": target.board, "target": target.name, "device": target.device,
        "config": {"n_exc": cfg.n_exc, "lanes": cfg.lanes, "pipelines": cfg.pipelines,
                   "encoder_lanes": cfg.encoder_lanes, "clock_hz": cfg.clock_hz,
                   "config_id": f"{cfg.config_id:#010x}"},
        "seed": args.seed, "link": args.link, "baud": args.baud,
        "fmax_mhz": fmax, "fmax_source": fmax_source, "clock_mhz": target.clock_mhz,
        "board_clock_mhz": board_clock, "stop_and_wait_clock_mhz": chip_mhz,
        "bit_identical": bool(identical),
        "budget_exact": all(r["cycles"] == r["budget_cycles"] for r in rows),
        "port_limit_synops_per_cycle": limit,
        "lanes_synops_per_cycle": cfg.lanes + ec_lanes(cfg),
        "virtual_board_start_s": round(start_s, 1), "run_s": round(run_s, 1),
        "images": rows,
    }
    byte_rate = args.baud / UART_BITS_PER_BYTE
    for phase in ("train", "test"):
        sel = [r for r in rows if r["phase"] == phase]
        if not sel:
            continue
        cyc = _median([r["cycles"] for r in sel])
        ops = sum(r["synaptic_ops"] for r in sel) / sum(r["cycles"] for r in sel)
        fig = {
            "images": len(sel),
            "cycles_median": cyc,
            "cycles_min": min(r["cycles"] for r in sel),
            "cycles_max": max(r["cycles"] for r in sel),
            "images_per_s_fmax": _rate(fmax, cyc),
            "images_per_s_clock": _rate(target.clock_mhz, cyc),
            "images_per_s_board": _rate(board_clock, cyc),
            "synops_per_cycle": ops,
            "port_limit_fraction": ops / limit,
        }
        for mode in MODES:
            to = _median([r[f"bytes_{mode}"][0] for r in sel])
            back = _median([r[f"bytes_{mode}"][1] for r in sel])
            link_s = (to + back) / byte_rate
            fig[f"uart_{mode}"] = {
                "bytes_to_chip": to, "bytes_from_chip": back,
                "ceiling_images_per_s": byte_rate / max(to, back),
                "stop_and_wait_images_per_s": 1.0 / (link_s + cyc / (chip_mhz * 1e6)),
                "stop_and_wait_images_per_s_fmax":
                    1.0 / (link_s + cyc / (fmax * 1e6)) if fmax else None,
            }
        out[phase] = fig
    return out


def _fmt(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}".replace(",", " ")


def format_figures(fig: dict) -> str:
    """The figures as the lines ``symspike bench throughput`` prints."""
    c = fig["config"]
    lines = [f"{fig['board']} ({fig['device']}): N={c['n_exc']} lanes={c['lanes']} "
             f"pipelines={c['pipelines']} encoder_lanes={c['encoder_lanes']}",
             f"Fmax: {_fmt(fig['fmax_mhz'], 1)} MHz ({fig['fmax_source']}); "
             f"target clock {_fmt(fig['clock_mhz'], 1)} MHz"
             + (f"; the board's bitstream runs at {_fmt(fig['board_clock_mhz'], 1)} MHz"
                if fig.get("board_clock_mhz") else "")]
    for phase, title in (("train", "training"), ("test", "inference")):
        f = fig.get(phase)
        if not f:
            continue
        lines.append(
            f"{title}: {f['images']} images, median {_fmt(f['cycles_median'])} cycles/image "
            f"({_fmt(f['cycles_min'])}–{_fmt(f['cycles_max'])}); "
            f"{_fmt(f['images_per_s_fmax'], 1)} images/s at Fmax, "
            f"{_fmt(f['images_per_s_clock'], 1)} at {_fmt(fig['clock_mhz'], 0)} MHz"
            + (f", {_fmt(f['images_per_s_board'], 1)} at the board's "
               f"{_fmt(fig['board_clock_mhz'], 1)} MHz" if f.get("images_per_s_board") else ""))
        lines.append(
            f"  {f['synops_per_cycle']:.2f} synaptic ops/cycle of {fig['lanes_synops_per_cycle']} "
            f"lanes; {100 * f['port_limit_fraction']:.1f} % of the block-RAM port limit "
            f"({_fmt(fig['port_limit_synops_per_cycle'])}/cycle)")
        for mode in MODES:
            u = f[f"uart_{mode}"]
            lines.append(
                f"  UART {fig['baud'] / 1e6:g} Mbaud, {mode}: {_fmt(u['bytes_to_chip'])} B to "
                f"the chip, {_fmt(u['bytes_from_chip'])} B back per image; ceiling "
                f"{_fmt(u['ceiling_images_per_s'], 1)} images/s, stop-and-wait "
                f"{_fmt(u['stop_and_wait_images_per_s'], 1)} at "
                f"{_fmt(fig['stop_and_wait_clock_mhz'], 1)} MHz")
    lines.append(f"weights and θ bit-identical to the golden model: "
                 f"{'yes' if fig['bit_identical'] else 'NO'}; cycle budget exact: "
                 f"{'yes' if fig['budget_exact'] else 'no'}")
    return "\n".join(lines)


def plot_lanes(figures: list, path):
    """Images/s (training and inference, at the target clock and at Fmax where known) against
    lanes, one point per figure of a sweep; saved as PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figures = sorted(figures, key=lambda f: f["config"]["lanes"])
    lanes = [f["config"]["lanes"] for f in figures]
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    clock = figures[0]["clock_mhz"]
    for phase, marker in (("train", "o"), ("test", "s")):
        if all(phase in f for f in figures):
            ax.plot(lanes, [f[phase]["images_per_s_clock"] for f in figures], marker=marker,
                    label=f"{'training' if phase == 'train' else 'inference'} at {clock:g} MHz")
            at_fmax = [(f["config"]["lanes"], f[phase]["images_per_s_fmax"]) for f in figures
                       if f[phase]["images_per_s_fmax"]]
            if at_fmax:
                ax.plot(*zip(*at_fmax), marker=marker, linestyle="--",
                        label=f"{'training' if phase == 'train' else 'inference'} at Fmax")
    ax.set_xscale("log", base=2)
    ax.set_xticks(lanes, [str(v) for v in lanes])
    ax.set_xlabel("synapse lanes L")
    ax.set_ylabel("images/s in the core")
    c = figures[0]["config"]
    ax.set_title(f"{figures[0]['board']}: N = {c['n_exc']}, P = {c['pipelines']}, "
                 f"E = {c['encoder_lanes']} (cycle-accurate co-simulation)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def _sweep(args) -> int:
    if args.lanes is not None:
        print("symspike bench throughput: give --lanes or --sweep-lanes, not both",
              file=sys.stderr)
        return _FAIL
    figures = []
    for lanes in args.sweep_lanes:
        args.lanes = lanes
        try:
            fig = measure(args)
        except ThroughputError as exc:
            print(f"symspike bench throughput: lanes = {lanes}: {exc}", file=sys.stderr)
            return _FAIL
        print(format_figures(fig))
        figures.append(fig)
    args.lanes = None
    out = {**provenance(args), "sweep": figures}
    plot = args.plot or f"results/throughput-{figures[0]['board']}-lanes.png"
    try:
        plot_lanes(figures, plot)
    except OSError as exc:
        print(f"symspike bench throughput: cannot write {plot}: {exc}", file=sys.stderr)
        return _FAIL
    print(f"plot: {plot}")
    return _finish(args, out, all(f["bit_identical"] for f in figures))


def _finish(args, out, identical) -> int:
    if args.json and not save_json(args.json, out, "symspike bench throughput"):
        return _FAIL
    if not identical:
        print("symspike bench throughput: the chip's weights or θ differ from the golden "
              "model's", file=sys.stderr)
        return 1
    return 0


def run(args) -> int:
    """``symspike bench throughput``: print the figures, save them with ``--json``."""
    if args.sweep_lanes:
        return _sweep(args)
    if args.plot:
        print("symspike bench throughput: --plot goes with --sweep-lanes", file=sys.stderr)
        return _FAIL
    try:
        fig = measure(args)
    except ThroughputError as exc:
        print(f"symspike bench throughput: {exc}", file=sys.stderr)
        return _FAIL
    fig.update(provenance(args))
    print(format_figures(fig))
    return _finish(args, fig, fig["bit_identical"])
