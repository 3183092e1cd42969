"""``symspike bench``: benchmarks that print their figures and save them as JSON.

``accuracy``   train and test one configuration; last line ``accuracy=… images_per_s=…``
``precision``  the precision study: float model against golden-model format variants
``speed``      training throughput of both models (median of repeats), optionally vs Brian2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


__all__ = ["add_arguments", "PRECISION_VARIANTS"]


def add_arguments(parser: argparse.ArgumentParser):
    from .cli import add_experiment_arguments
    sub = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")

    p = sub.add_parser("accuracy", help="train and test one configuration")
    add_experiment_arguments(p)
    p.add_argument("--json", metavar="PATH", help="save the figures and the configuration")
    p.add_argument("--out", metavar="DIR", help="also write a run folder (for symspike report)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_accuracy)

    p = sub.add_parser("precision", help="accuracy of golden-model formats against float")
    add_experiment_arguments(p)
    p.add_argument("--variants", default="all",
                   help="comma-separated variant names, or 'all' (see --list)")
    p.add_argument("--list", action="store_true", help="list the variants and exit")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="variants run in parallel (default: 2)")
    p.add_argument("--json", metavar="PATH", default="results/precision.json")
    p.add_argument("--markdown", metavar="PATH", default="results/precision.md")
    p.set_defaults(func=_precision)

    p = sub.add_parser("speed", help="training images per second of both models, one core")
    p.add_argument("--neurons", type=int, nargs="+", default=[100, 400])
    p.add_argument("--models", nargs="+", default=["float", "golden"],
                   choices=("float", "golden"))
    p.add_argument("--images", type=int, default=500, help="images per repeat (default 500)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--data", metavar="DIR")
    p.add_argument("--vs-brian2", action="store_true",
                   help="also run the network in Brian2 (pip install 'symspike[bench]')")
    p.add_argument("--brian2-images", type=int, default=20)
    p.add_argument("--json", metavar="PATH", default="results/speed.json")
    p.set_defaults(func=_speed)

    from .fuzz import add_bench_arguments
    p = sub.add_parser("fuzz", help="random and mutated frames against the virtual board, "
                                    "among valid training traffic")
    add_bench_arguments(p)

    from . import throughput
    p = sub.add_parser("throughput", help="cycles per image of the chip in cycle-accurate "
                                          "co-simulation, images/s at Fmax, memory and link "
                                          "limits")
    throughput.add_bench_arguments(p)

    from . import cosim_bench
    p = sub.add_parser("cosim", help="full-chip Verilator co-simulation speed (cycles/s)")
    cosim_bench.add_bench_arguments(p)


def _save(path, data):
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        print(f"saved {path}")


# --------------------------------------------------------------------------- accuracy
def _accuracy(args):
    from .cli import experiment_from_args
    from .experiment import run
    exp = experiment_from_args(args)
    res = run(exp, out=Path(args.out) if args.out else None, progress=not args.quiet)
    fig = {k: res.get(k) for k in ("accuracy", "accuracy_vote", "val_accuracy",
                                    "val_accuracy_vote", "images_per_s", "wall_s",
                                    "test_wall_s", "train_images", "test_images", "epochs",
                                    "mode", "model", "seed", "dataset", "machine", "date")}
    fig["config"] = res["config"]
    fig["history"] = res["history"]
    fig["command"] = "symspike bench accuracy " + " ".join(sys.argv[3:])
    _save(args.json, fig)
    if "val_accuracy" in res:
        print(f"val_accuracy={res['val_accuracy']:.4f} val_accuracy_vote="
              f"{res['val_accuracy_vote']:.4f}")
    if "accuracy" in res:
        print(f"accuracy_vote={res['accuracy_vote']:.4f}")
    print(f"accuracy={res.get('accuracy', float('nan')):.4f} "
          f"images_per_s={res['images_per_s']:.1f}")
    return 0


# --------------------------------------------------------------------------- precision
#: name → (model, formats) of the precision study.
PRECISION_VARIANTS = {"float": ("float", {})}
for _bits in (4, 6, 8, 12, 16):
    PRECISION_VARIANTS[f"w{_bits}"] = ("golden", {"weight_bits": _bits})
    PRECISION_VARIANTS[f"w{_bits}-nosr"] = ("golden", {"weight_bits": _bits,
                                                        "stochastic_rounding": False})
for _tf in (6, 8, 16):
    PRECISION_VARIANTS[f"trace{_tf}"] = ("golden", {"trace_frac": _tf})
for _vf in (4, 12):
    PRECISION_VARIANTS[f"v{_vf}"] = ("golden", {"v_frac": _vf})
for _gf in (6, 14):
    PRECISION_VARIANTS[f"g{_gf}"] = ("golden", {"g_frac": _gf})


def _describe(model, formats):
    from ..firmware.config import Formats
    if model == "float":
        return "float64 reference"
    f = Formats(**formats)
    sr = f"SR {f.sr_bits} b" if f.stochastic_rounding else "nearest"
    return (f"w {f.weight_bits} b ({sr}), trace Q1.{f.trace_frac}, V Q9.{f.v_frac}, "
            f"g Q{f.g_int}.{f.g_frac}")


def _precision_one(payload):
    from .experiment import Experiment, run
    name, exp_fields = payload
    exp = Experiment(**exp_fields)
    res = run(exp, out=None, progress=False, log=lambda *_: None)
    return name, res


def _precision(args):
    from .cli import experiment_from_args
    if args.list:
        for name, (model, formats) in PRECISION_VARIANTS.items():
            print(f"{name:12s} {_describe(model, formats)}")
        return 0
    names = list(PRECISION_VARIANTS) if args.variants == "all" else args.variants.split(",")
    unknown = [n for n in names if n not in PRECISION_VARIANTS]
    if unknown:
        from .cli import UsageError
        raise UsageError(f"unknown variants {unknown}; `symspike bench precision --list` "
                         f"names them")
    base = experiment_from_args(args)
    jobs = []
    for name in names:
        model, formats = PRECISION_VARIANTS[name]
        fields = dict(base.__dict__, model=model, formats={**base.formats, **formats})
        jobs.append((name, fields))
    print(f"precision study: {len(jobs)} variants, N={base.neurons}, {base.train} training "
          f"and {base.test} test images, {args.jobs} at a time")
    from tqdm.auto import tqdm
    results = {}
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, res in tqdm(pool.map(_precision_one, jobs), total=len(jobs), unit="variant"):
            results[name] = res
            print(f"  {name:12s} accuracy {100 * res['accuracy']:.2f} %  vote "
                  f"{100 * res['accuracy_vote']:.2f} %", flush=True)
    ref = results.get("float")
    rows = []
    for name in names:
        model, formats = PRECISION_VARIANTS[name]
        res = results[name]
        row = {"variant": name, "model": model, "formats": formats,
               "description": _describe(model, formats), "accuracy": res["accuracy"],
               "accuracy_vote": res["accuracy_vote"], "images_per_s": res["images_per_s"]}
        if ref is not None:
            row["delta_vs_float"] = res["accuracy"] - ref["accuracy"]
        rows.append(row)
    lines = ["| variant | formats | accuracy (C) | vote | Δ vs float (points) |",
             "|---|---|---|---|---|"]
    for row in rows:
        delta = f"{100 * row['delta_vs_float']:+.2f}" if "delta_vs_float" in row else ""
        lines.append(f"| {row['variant']} | {row['description']} | "
                     f"{100 * row['accuracy']:.2f} % | {100 * row['accuracy_vote']:.2f} % | "
                     f"{delta} |")
    table = "\n".join(lines)
    print(table)
    from .experiment import machine
    meta = {"neurons": base.neurons, "train": base.train, "test": base.test,
            "epochs": base.epochs, "seed": base.seed, "dataset": base.dataset,
            "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "command": "symspike bench precision " + " ".join(sys.argv[3:])}
    _save(args.json, {"meta": meta, "rows": rows})
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"Precision study, {meta['command']}, {meta['date']}, "
                        f"{meta['machine']}\n\n{table}\n")
        print(f"saved {path}")
    return 0


# --------------------------------------------------------------------------- speed
def _throughput(kind, n, images, labels, repeats):
    from ..firmware.config import preset
    from ..sim.network import make_model
    model = make_model(kind, preset(n), seed=0)
    for k in range(min(20, len(images))):            # compile and settle
        model.present(images[k], int(labels[k]), "both")
    rates, cpu_rates = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for k in range(len(images)):
            model.present(images[k], int(labels[k]), "both")
        rates.append(len(images) / (time.perf_counter() - t0))
        cpu_rates.append(len(images) / max(time.process_time() - c0, 1e-9))
    return rates, cpu_rates


def _speed(args):
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from . import datasets
    from .experiment import machine
    x, y = datasets.load("mnist", "train", args.data)
    x, y = x[:args.images], y[:args.images]
    rows = []
    print(f"training throughput, {len(x)} MNIST images × {args.repeats} repeats, one core")
    for n in args.neurons:
        for kind in args.models:
            rates, cpu_rates = _throughput(kind, n, x, y, args.repeats)
            med = statistics.median(rates)
            cpu_med = statistics.median(cpu_rates)
            rows.append({"model": kind, "neurons": n, "images_per_s_median": med,
                         "images_per_s_all": rates, "images_per_cpu_s_median": cpu_med,
                         "images_per_cpu_s_all": cpu_rates})
            # Images per CPU-second is what one core delivers when the machine is shared.
            print(f"  {kind:6s} N={n:<5d} {med:8.1f} images/s (median; min {min(rates):.1f}, "
                  f"max {max(rates):.1f}); {cpu_med:.1f} images per CPU-second",
                  flush=True)
        if args.vs_brian2:
            from ..firmware.config import preset
            try:
                from ..sim.brian2_ref import run_brian2
            except ImportError as exc:
                from .cli import UsageError
                raise UsageError(str(exc)) from None
            k = min(args.brian2_images, len(x))
            b = run_brian2(preset(n), x[:k], y[:k], seed=0)
            ours = {r["model"]: r["images_per_s_median"] for r in rows if r["neurons"] == n}
            entry = {"model": "brian2", "neurons": n, "images_per_s_median": b["images_per_s"],
                     "images": k, "target": b.get("target")}
            rows.append(entry)
            ratio = {kind: rate / b["images_per_s"] for kind, rate in ours.items()}
            entry["ratio"] = ratio
            print(f"  brian2 N={n:<5d} {b['images_per_s']:8.2f} images/s ({k} images, "
                  f"{b.get('target')}); " + ", ".join(f"{kind} is {r:.0f}× faster"
                                                     for kind, r in ratio.items()), flush=True)
    _save(args.json, {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                      "images": len(x), "repeats": args.repeats, "rows": rows,
                      "command": "symspike bench speed " + " ".join(sys.argv[3:])})
    return 0
