"""``symspike bench cosim``: how fast the full chip simulates on the virtual board.

The chip's Verilog (:class:`~symspike.hdl.chip.ChipTop`: core, sequencer, packet engine, UART
and DMA streams) runs in Verilator behind the virtual board (:mod:`symspike.sim.vboard`), and
the host driver trains it on real MNIST images over the chosen link, as ``symspike train
--board sim://`` does. Each repeat is one board session of ``--images`` training images; the
simulator's own statistics give the simulated clock cycles and the seconds it spent
simulating them (``busy``: the seconds it was not asleep waiting for the host). The figure is
the median over the repeats of cycles per busy second; cycles per wall second (the host's
time included) and images/s are reported beside it. ``--waves`` records an FST or VCD
waveform of every repeat and reports what tracing costs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["GOAL_CYCLES_PER_S", "add_bench_arguments", "run"]

#: The co-simulation speed the full chip must reach (cycles per busy second).
GOAL_CYCLES_PER_S = 200_000

_FAIL = 2


class CosimBenchError(Exception):
    """The benchmark cannot run; the message says what to do."""


def add_bench_arguments(p: argparse.ArgumentParser):
    """Options of ``symspike bench cosim``."""
    p.add_argument("--neurons", "-N", type=int, default=100,
                   help="excitatory neurons of the chip (default: 100)")
    p.add_argument("--link", choices=("uart", "pcie"), default="uart",
                   help="link to the chip (default: uart)")
    p.add_argument("--images", type=int, default=10,
                   help="training images per repeat (default: 10)")
    p.add_argument("--repeats", type=int, default=3, help="board sessions (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="chip seed (default: 0)")
    p.add_argument("--waves", choices=("fst", "vcd"),
                   help="record a waveform of each repeat (to --waves-dir)")
    p.add_argument("--waves-dir", metavar="DIR", default="build/waves",
                   help="folder of the waveforms (default: build/waves)")
    p.add_argument("--data", metavar="DIR",
                   help="folder holding mnist/ (default: $SYMSPIKE_DATA, else the embedded "
                        "subset)")
    p.add_argument("--json", metavar="PATH", help="save the figures")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _session(url, cfg, seed, x, y, quiet):
    from .board import Board
    board = Board.open(url, cfg=cfg, seed=seed, work_timeout=600.0)
    vboard = getattr(board._link, "vboard", None)
    t0 = time.monotonic()
    try:
        board.train(x, y, progress=not quiet)
    finally:
        wall = time.monotonic() - t0
        board.close()
    stats = getattr(vboard, "stats", None)
    if stats is None or not stats.final:
        raise CosimBenchError("the virtual board reported no statistics at exit")
    return stats, wall


def measure(args) -> dict:
    """Run the benchmark for parsed ``args``; the figures as a dict."""
    from ..firmware.config import preset
    from .board import BoardError
    from .datasets import DatasetError, load
    from .link import LinkError

    if args.images <= 0 or args.repeats <= 0:
        raise CosimBenchError(f"--images and --repeats must be positive, not {args.images} "
                              f"and {args.repeats}")
    try:
        cfg = preset(args.neurons)
    except (TypeError, ValueError) as exc:
        raise CosimBenchError(f"invalid network: {exc}") from None
    try:
        x, y = load("mnist", "train", args.data, limit=args.images)
    except DatasetError as exc:
        raise CosimBenchError(str(exc)) from None
    if len(x) < args.images:
        raise CosimBenchError(f"the dataset has {len(x)} training images, not {args.images}")
    waves_dir = Path(args.waves_dir)
    if args.waves:
        try:
            waves_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CosimBenchError(f"cannot make the waveform folder {waves_dir}: {exc}") from None
    if not args.quiet:
        print(f"virtual board: chip N={cfg.n_exc} over {args.link}; the first Verilator build "
              f"takes a minute or more", file=sys.stderr, flush=True)
    runs = []
    for k in range(args.repeats):
        url = f"sim://?link={args.link}&seed={args.seed}"
        wave = None
        if args.waves:
            wave = (waves_dir / f"chip-n{cfg.n_exc}-{k}.{args.waves}").resolve()
            url += f"&waves={wave}"
        try:
            stats, wall = _session(url, cfg, args.seed, x, y, args.quiet)
        except (LinkError, BoardError) as exc:
            raise CosimBenchError(f"the virtual board failed: {exc}") from None
        run = {"cycles": stats.cycles, "busy_s": stats.busy_seconds, "wall_s": wall,
               "cycles_per_busy_s": stats.cycles / stats.busy_seconds,
               "cycles_per_wall_s": stats.cycles / wall, "images_per_s": args.images / wall,
               "bytes_to_chip": stats.bytes_to_chip + stats.dma_to_chip,
               "bytes_from_chip": stats.bytes_from_chip + stats.dma_from_chip}
        if wave is not None:
            run["waves"] = str(wave)
            run["waves_bytes"] = wave.stat().st_size if wave.exists() else 0
        runs.append(run)
        if not args.quiet:
            print(f"repeat {k + 1}/{args.repeats}: {run['cycles_per_busy_s'] / 1e6:.3f} M "
                  f"cycles/s busy, {run['cycles_per_wall_s'] / 1e6:.3f} M cycles/s wall, "
                  f"{run['images_per_s']:.2f} images/s", file=sys.stderr, flush=True)
    med = {key: float(np.median([r[key] for r in runs]))
           for key in ("cycles_per_busy_s", "cycles_per_wall_s", "images_per_s")}
    return {"n_exc": cfg.n_exc, "lanes": cfg.lanes, "pipelines": cfg.pipelines,
            "encoder_lanes": cfg.encoder_lanes, "link": args.link, "images": args.images,
            "repeats": args.repeats, "waves": args.waves, "median": med,
            "goal_cycles_per_s": GOAL_CYCLES_PER_S,
            "goal_met": med["cycles_per_busy_s"] >= GOAL_CYCLES_PER_S, "runs": runs}


def run(args) -> int:
    """``symspike bench cosim``: print the figures, save them with ``--json``."""
    from .results import provenance, save_json
    try:
        fig = measure(args)
    except CosimBenchError as exc:
        print(f"symspike bench cosim: {exc}", file=sys.stderr)
        return _FAIL
    fig.update(provenance(args))
    med = fig["median"]
    print(f"chip N={fig['n_exc']} over {fig['link']}{' with ' + fig['waves'] + ' waves' if fig['waves'] else ''}: "
          f"median of {fig['repeats']} × {fig['images']} images: "
          f"{med['cycles_per_busy_s'] / 1e6:.3f} M cycles/s simulating "
          f"({'meets' if fig['goal_met'] else 'misses'} the {GOAL_CYCLES_PER_S / 1e3:.0f} k goal), "
          f"{med['cycles_per_wall_s'] / 1e6:.3f} M cycles/s wall, "
          f"{med['images_per_s']:.2f} training images/s")
    if args.json and not save_json(args.json, fig, "symspike bench cosim"):
        return _FAIL
    return 0
