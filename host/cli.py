"""The ``symspike`` command line.

``symspike train``   train a model and test it; writes a run folder
``symspike infer``   test a trained run folder or checkpoint on images
``symspike report``  draw a run folder's pictures
``symspike bench``   accuracy, precision and speed benchmarks
``symspike demo``    the main job on the embedded MNIST subset
``symspike build``   synthesise the gateware for a device target (LUT, FF, RAM, DSP, Fmax)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..firmware.config import DATASETS, PRESET_SIZES, Formats
from ..sim.network import CheckpointError
from . import datasets

__all__ = ["main", "add_experiment_arguments", "experiment_from_args"]


class UsageError(Exception):
    """A command-line mistake: printed without a traceback."""


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, not {value}")
    return value


def _natural(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, not {value}")
    return value


def add_experiment_arguments(p: argparse.ArgumentParser, *, train=60000, test=10000):
    g = p.add_argument_group("experiment")
    g.add_argument("--model", choices=("float", "golden"), default="golden",
                   help="float reference or bit-exact golden model (default: golden)")
    g.add_argument("--neurons", "-N", type=_positive, default=100,
                   help=f"excitatory neurons; presets exist for {PRESET_SIZES} (default: 100)")
    g.add_argument("--dataset", choices=DATASETS, default="mnist")
    g.add_argument("--data", metavar="DIR",
                   help="folder holding mnist/ and fashion-mnist/ IDX files "
                        "(default: $SYMSPIKE_DATA, else the embedded MNIST subset)")
    g.add_argument("--train", type=_positive, default=train, metavar="K",
                   help=f"training images, from the start of the training split (default: {train})")
    g.add_argument("--val", type=_natural, default=0, metavar="V",
                   help="hold out V training images (a fixed draw across the split) for validation (default: 0)")
    g.add_argument("--test", type=_natural, default=test, metavar="M",
                   help=f"test images (default: {test})")
    g.add_argument("--epochs", type=_positive, default=1)
    g.add_argument("--seed", type=_natural, default=0)
    g.add_argument("--mode", choices=("simultaneous", "layer"), default="simultaneous",
                   help="train both layers together, or the hidden layer first (default: simultaneous)")
    g.add_argument("--rule", choices=("sym", "asym"), default="sym",
                   help="symmetric STDP (Hao et al.) or classic pair-based STDP")
    g.add_argument("--rest", choices=("reset", "simulate"), default="reset",
                   help="between images reset the state, or simulate the 150 ms rest")
    g.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any network configuration field (firmware/config.py), "
                        "e.g. --set wmax_in=0.25; repeatable")
    g.add_argument("--intensity", type=int,
                   help="input intensity of a first presentation (default 2: 63.75 Hz at 255)")
    g.add_argument("--trace-inc", type=float, help="trace increment per spike (default 0.1)")
    g.add_argument("--eta-in", type=float, help="input→E learning rate (default: preset)")
    g.add_argument("--eta-ec", type=float, help="E→C learning rate (default: preset)")
    g.add_argument("--eta-final", type=float, default=1.0, metavar="F",
                   help="learning rates fall linearly to F times their value over the run "
                        "(default: 1, constant)")
    g.add_argument("--keep-best", action="store_true",
                   help="early stopping: end with the weights of the best validation point "
                        "(needs --val and --eval-every)")
    g.add_argument("--eval-every", type=_natural, default=0, metavar="K",
                   help="accuracy curve point every K training images (default: none)")
    g.add_argument("--eval-size", type=_positive, default=1000,
                   help="images per curve point (validation images if --val, else test)")
    g.add_argument("--vote-window", type=_positive, default=10000,
                   help="training images the vote readout's label assignment remembers")
    f = p.add_argument_group("golden-model formats (docs/formats.md)")
    f.add_argument("--weight-bits", type=int)
    f.add_argument("--no-sr", action="store_true", help="round to nearest, no stochastic rounding")
    f.add_argument("--sr-bits", type=int)
    f.add_argument("--trace-frac", type=int)
    f.add_argument("--v-frac", type=int)
    f.add_argument("--g-frac", type=int)


def _parse_sets(items):
    import dataclasses
    import json
    from ..firmware.config import NetworkConfig
    fields = {f.name for f in dataclasses.fields(NetworkConfig)} - {"formats"}
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            raise UsageError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(sorted(fields))}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[name] = value
    return out


def experiment_from_args(args):
    from .experiment import Experiment
    overrides = {"rule": args.rule, "rest": args.rest}
    for name in ("trace_inc", "eta_in", "eta_ec"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.intensity is not None:
        overrides["intensity_init"] = args.intensity
    overrides.update(_parse_sets(args.set))
    formats = {}
    for name in ("weight_bits", "sr_bits", "trace_frac", "v_frac", "g_frac"):
        if getattr(args, name) is not None:
            formats[name] = getattr(args, name)
    if args.no_sr:
        formats["stochastic_rounding"] = False
    exp = Experiment(model=args.model, neurons=args.neurons, dataset=args.dataset,
                     data=args.data, train=args.train, val=args.val, test=args.test,
                     epochs=args.epochs, seed=args.seed, mode=args.mode,
                     eval_every=args.eval_every, eval_size=args.eval_size,
                     vote_window=args.vote_window, eta_final=args.eta_final,
                     keep_best=args.keep_best, overrides=overrides, formats=formats)
    try:
        exp.config()
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid network configuration: {exc}") from None
    if exp.keep_best and not (exp.val and exp.eval_every):
        raise UsageError("--keep-best needs validation images (--val V) and --eval-every K")
    return exp


# --------------------------------------------------------------------------- train / infer
def _cmd_train(args):
    from .experiment import run
    exp = experiment_from_args(args)
    if args.resume:
        resume = Path(args.resume)
        if not (resume / "checkpoint.npz").is_file():
            raise UsageError(f"--resume {resume}: no checkpoint.npz there; give the --out "
                             f"folder of an earlier `symspike train --checkpoint-every K`")
    else:
        resume = None
    exp.checkpoint_every = args.checkpoint_every
    out = Path(args.out) if args.out else (resume or Path("runs") / f"{exp.model}-n{exp.neurons}-{exp.dataset}-s{exp.seed}")
    res = run(exp, out=out, progress=not args.quiet, resume=resume)
    _print_result(res)
    print(f"run folder: {out}  (draw it: symspike report {out})")
    return 0


def _print_result(res):
    parts = [f"{res['model']} N={res['config']['n_exc']} {res['dataset']}",
             f"{res['train_images']} train × {res['epochs']} epoch(s) in {res['wall_s']:.1f} s"]
    if "accuracy" in res:
        parts.append(f"test accuracy {100 * res['accuracy']:.2f} % "
                     f"(vote {100 * res['accuracy_vote']:.2f} %) on {res['test_images']}")
    if "val_accuracy" in res:
        parts.append(f"validation {100 * res['val_accuracy']:.2f} %")
    print(", ".join(parts))


def _cmd_infer(args):
    import numpy as np
    from ..sim.network import CheckpointError, Model
    from ..sim.trainer import accuracy
    path = Path(args.run)
    if path.is_dir():
        path = path / "checkpoint.npz"
    try:
        model = Model.load(path)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    x, y = datasets.load(args.dataset or model.cfg.dataset, args.split, args.data)
    x, y = x[:args.test], y[:args.test]
    if model.cfg.image_mean is not None:
        x = datasets.normalize_mean(x, model.cfg.image_mean)
    from tqdm.auto import tqdm
    with tqdm(total=len(x), desc="infer", unit="img", disable=args.quiet) as bar:
        out = model.infer(x, progress=bar.update)
    print(f"accuracy={accuracy(out['pred'], y):.4f} accuracy_vote="
          f"{accuracy(out['pred_vote'], y):.4f} images={len(x)}")
    if args.save:
        np.savez_compressed(args.save, labels=y, **out)
    return 0


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symspike",
        description="FPGA spiking-network accelerator that learns MNIST with sym-STDP: "
                    "models, benchmarks and reports.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model and test it")
    add_experiment_arguments(p)
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<model>-n<N>-…)")
    p.add_argument("--checkpoint-every", type=_natural, default=5000, metavar="K",
                   help="write a checkpoint every K images (default: 5000)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("infer", help="test a trained run on images")
    p.add_argument("run", metavar="RUN", help="run folder or checkpoint.npz")
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--data", metavar="DIR")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--test", type=_positive, default=10000, metavar="M")
    p.add_argument("--save", metavar="FILE.npz", help="save predictions and spike counts")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_infer)

    from . import report
    p = sub.add_parser("report", help="draw a run folder's pictures (PNG)")
    report.add_arguments(p)
    p.set_defaults(func=report.main)

    from . import bench
    p = sub.add_parser("bench", help="benchmarks: accuracy, precision, speed")
    bench.add_arguments(p)

    from ..boards import synth
    p = sub.add_parser("build", help="synthesise the gateware for a device target: "
                                     "LUT, FF, BRAM/SPRAM, DSP and Fmax per unit")
    synth.add_arguments(p)
    p.set_defaults(func=synth.main)

    p = sub.add_parser("demo", help="train the golden model on the embedded subset and report")
    p.add_argument("--out", metavar="DIR", default="runs/demo")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)
    return parser


def _cmd_demo(args):
    from . import report
    from .experiment import Experiment, run
    out = Path(args.out)
    results = {}
    for kind in ("float", "golden"):
        exp = Experiment(model=kind, neurons=100, data=None, train=2000, test=1000,
                         eval_every=500, eval_size=500, seed=0)
        res = run(exp, out=out / kind, progress=not args.quiet)
        results[kind] = res
        _print_result(res)
    paths = report.make_report(out / "golden")
    print(f"pictures: {', '.join(str(p) for p in paths)}")
    g, f = results["golden"], results["float"]
    print(f"golden model {100 * g['accuracy']:.2f} % vs float reference "
          f"{100 * f['accuracy']:.2f} % (C readout, 2000 training images, 1000 test)")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, datasets.DatasetError, CheckpointError) as exc:
        print(f"symspike {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"symspike {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
