"""The ``symspike`` command line.

``symspike train``   train a model and test it; writes a run folder (``--board URL``: train
                     online on a board and compare it with the golden model)
``symspike infer``   test a trained run folder or checkpoint on images (or on a board)
``symspike report``  draw a run folder's pictures
``symspike bench``   accuracy, precision and speed benchmarks
``symspike demo``    the main job on the embedded MNIST subset
``symspike build``   synthesise the gateware for a device target (LUT, FF, RAM, DSP, Fmax)
``symspike sim board``  run the chip in Verilator behind a pseudo-terminal (a virtual board)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..firmware.config import DATASETS, PRESET_SIZES
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
    if args.board:
        return _cmd_train_board(args)
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
    if args.board:
        return _cmd_infer_board(args)
    for name in ("neurons", "seed"):
        if getattr(args, name) is not None:
            raise UsageError(f"--{name} applies to a board (--board URL); a run's checkpoint "
                             f"holds its own")
    if args.run is None:
        raise UsageError("give the RUN folder or checkpoint to test (or --board URL)")
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


# --------------------------------------------------------------------------- on a board
#: Options of ``train`` that a board run cannot honour: (name, refused value or ``None`` for
#: any value given, how to say it).
_NOT_ON_BOARD = (("model", "float", "--model float (the board computes the golden model's "
                  "arithmetic)"),
                 ("mode", "layer", "--mode layer"),
                 ("eval_every", None, "--eval-every"),
                 ("keep_best", None, "--keep-best"),
                 ("out", None, "--out (use --checkpoint DIR)"))


def _board_errors():
    """Exceptions of opening and driving a board, printed as one clear line."""
    from .board import BoardError
    from .link import LinkError
    return (BoardError, LinkError)


def _board_url(url, args):
    """``url``, with the chip's seed added for a ``sim://`` board that builds its chip.

    The golden model of the comparison starts from the initial weights of ``--seed``; a
    virtual board built from the same seed starts where it does.
    """
    from .link import LinkError, parse_url
    try:
        scheme, target, options = parse_url(url)
    except LinkError as exc:
        raise UsageError(str(exc)) from None
    if scheme != "sim" or target:
        return url
    if "seed" in options:
        if options["seed"] != str(args.seed):
            raise UsageError(f"--board {url}: the chip's seed={options['seed']} contradicts "
                             f"--seed {args.seed}; give one of them")
        return url
    return url + ("&" if "?" in url else "?") + f"seed={args.seed}"


def _builds_chip(url):
    """Whether ``url`` is a ``sim://`` board that builds its chip (so needs a configuration)."""
    from .link import LinkError, parse_url
    try:
        scheme, target, _ = parse_url(url)
    except LinkError as exc:
        raise UsageError(str(exc)) from None
    return scheme == "sim" and not target


def _open_board(url, cfg, seed, quiet):
    """``(board, vboard)``: the open board and, for ``sim://``, its virtual board."""
    from .board import Board
    from .link import parse_url
    if parse_url(url)[0] == "sim" and not quiet:
        print("starting the virtual board (the first Verilator build of a chip takes a minute "
              "or more)", file=sys.stderr, flush=True)
    board = Board.open(url, cfg=cfg, seed=seed)
    # Kept now: closing the board drops its link, and the statistics come at close.
    return board, getattr(board._link, "vboard", None)


def _print_vboard(vboard):
    stats = getattr(vboard, "stats", None)
    if stats is not None:
        print(f"virtual board: {stats.cycles_per_s / 1e6:.3f} M cycles/s ({stats.cycles} "
              f"cycles in {stats.busy_seconds:.1f} s busy)")


def _compare(board_w, board_theta, golden):
    """``(identical, text)``: the board's weight and θ codes against the golden model's."""
    import numpy as np
    parts, same = [], True
    for name, got, want in (("w_in", board_w["w_in"], golden.w_in),
                            ("w_ec", board_w["w_ec"], golden.w_ec),
                            ("θ", board_theta, golden.theta)):
        shape = "×".join(str(d) for d in np.shape(want))
        if np.shape(got) != np.shape(want):
            same = False
            parts.append(f"{name} shape {np.shape(got)} ≠ {np.shape(want)}")
            continue
        differ = int(np.count_nonzero(np.asarray(got) != np.asarray(want)))
        same &= differ == 0
        parts.append(f"{name} {shape}" + (f": {differ} codes differ" if differ else ""))
    verdict = "bit-identical to" if same else "DIFFERENT from"
    return same, f"weights and θ read back: {verdict} the golden model ({', '.join(parts)})"


def _predictions_line(pred_board, pred_golden, labels):
    import numpy as np
    from ..sim.trainer import accuracy
    m = len(labels)
    agree = int(np.count_nonzero(np.asarray(pred_board) == np.asarray(pred_golden)))
    return (f"test accuracy on {m} images: board {100 * accuracy(pred_board, labels):.2f} %, "
            f"golden model {100 * accuracy(pred_golden, labels):.2f} % (same prediction on "
            f"{agree}/{m} images)")


def _cmd_train_board(args):
    import time
    import numpy as np
    from tqdm.auto import tqdm
    from ..sim.network import GoldenModel
    from ..sim.trainer import TrainingRun
    from .experiment import load_data
    from .training import BoardTraining, RunMismatch

    for name, bad, label in _NOT_ON_BOARD:
        value = getattr(args, name)
        if (value == bad) if bad is not None else value:
            raise UsageError(f"{label} does not apply to training on a board (--board)")
    if args.eta_final != 1.0:
        raise UsageError("--eta-final does not apply to training on a board (--board): the "
                         "board learns at constant rates")
    if args.resume and args.checkpoint and Path(args.resume) != Path(args.checkpoint):
        raise UsageError("--resume DIR continues the checkpoints in DIR; give --checkpoint "
                         "the same folder or leave it out")
    exp = experiment_from_args(args)
    cfg = exp.config()
    url = _board_url(args.board, args)
    try:
        (x, y), _, (xt, yt) = load_data(exp, cfg)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    quiet = args.quiet
    golden = None if args.no_golden else GoldenModel(cfg, exp.seed)
    # The order of the golden experiments (epochs after the first are shuffled by seed).
    stages = TrainingRun(GoldenModel(cfg, exp.seed) if golden is None else golden,
                         epochs=exp.epochs, progress=False).schedule(len(x))
    order = np.concatenate([o for _, o in stages]) if stages else np.zeros(0, np.int64)
    folder = args.resume or args.checkpoint
    ckpt = None
    if folder:
        ckpt = Path(folder) / "board.npz"
        if args.resume and not ckpt.is_file():
            raise UsageError(f"--resume {folder}: no board.npz there; give the --checkpoint "
                             f"folder of an earlier `symspike train --board`")
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    identity = {"dataset": exp.dataset, "train": len(x), "epochs": exp.epochs,
                "seed": exp.seed, "config_id": cfg.config_id}

    board, vboard = _open_board(url, cfg, exp.seed, quiet)
    try:
        print(f"board {args.board}: N={cfg.n_exc}, configuration {cfg.config_id:#010x}, seed "
              f"{exp.seed}; {datasets.describe_source(exp.dataset, exp.data)}: {len(x)} "
              f"training × {exp.epochs} epoch(s), {len(xt)} test images, {args.input} input",
              flush=True)
        run = BoardTraining(board, x, y, order, mode=args.input, checkpoint=ckpt,
                            every=args.checkpoint_every if ckpt is not None else 0,
                            identity=identity, progress=not quiet,
                            log=lambda text: print(text, flush=True))
        if args.resume:
            try:
                first = run.resume_from(ckpt)
            except RunMismatch as exc:
                raise UsageError(str(exc)) from None
            print(f"resumed from {ckpt} at image {first} of {len(order)}", flush=True)
        start = time.perf_counter()
        try:
            done = run.run()
        except _board_errors() as exc:
            if run.path is None or run._saved is None:
                raise
            raise type(exc)(f"{exc} — the checkpoint {run.path} holds the run up to image "
                            f"{run._saved}: continue it with the same options and --resume "
                            f"{folder}") from None
        wall = time.perf_counter() - start
        print(f"trained on the board: {done} images in {wall:.1f} s "
              f"({done / wall if wall else 0:.2f} images/s)"
              + (f"; {run.recoveries} board reset(s) recovered, {run.replayed} image(s) "
                 f"presented again" if run.recoveries else ""), flush=True)
        weights = board.read_weights(progress=not quiet)
        theta = board.read_theta()
        same = True
        if golden is not None:
            with tqdm(total=len(order), desc=f"train golden N={cfg.n_exc}", unit="img",
                      leave=False, disable=quiet) as bar:
                for k in order:
                    golden.present(x[k], int(y[k]), "both")
                    bar.update(1)
            golden.finish_training()
            same, text = _compare(weights, theta, golden)
            print(text + ("; the golden model trained without interruption" if args.resume
                                 or run.recoveries else ""),
                  flush=True)
        if len(xt):
            pred = board.infer(xt, mode=args.input, progress=not quiet)
            if golden is not None:
                want = golden.infer(xt)["pred"]
                print(_predictions_line(pred, want, yt))
            else:
                from ..sim.trainer import accuracy
                print(f"test accuracy on {len(xt)} images: board "
                      f"{100 * accuracy(pred, yt):.2f} %")
    finally:
        board.close()
    _print_vboard(vboard)
    if ckpt is not None:
        print(f"board checkpoint: {ckpt}")
    return 0 if same else 1


def _cmd_infer_board(args):
    import numpy as np
    from ..firmware.config import preset
    from ..sim.network import GoldenModel, Model
    from ..sim.trainer import accuracy

    meta = state = None
    if args.run:
        path = Path(args.run)
        if path.is_dir():
            path = next((path / name for name in ("board.npz", "checkpoint.npz")
                         if (path / name).is_file()), path / "board.npz")
        meta, state = Model.read_checkpoint(path)
    cfg = None
    if meta is not None and meta.get("config") is not None:
        from ..firmware.config import NetworkConfig
        cfg = NetworkConfig.from_dict(meta["config"])
        if args.neurons is not None and args.neurons != cfg.n_exc:
            raise UsageError(f"--neurons {args.neurons} contradicts the checkpoint "
                             f"{path} (N={cfg.n_exc})")
    elif args.neurons is not None or _builds_chip(args.board):
        try:
            cfg = preset(args.neurons or 100, args.dataset or "mnist")
        except (TypeError, ValueError) as exc:
            raise UsageError(f"invalid network configuration: {exc}") from None
    seed = args.seed if args.seed is not None else int((meta or {}).get("seed", 0))
    args.seed = seed
    url = _board_url(args.board, args)
    dataset = args.dataset or (cfg.dataset if cfg is not None else "mnist")
    x, y = datasets.load(dataset, args.split, args.data)
    x, y = x[:args.test], y[:args.test]

    board, vboard = _open_board(url, cfg, seed, args.quiet)
    try:
        if args.run:
            board.resume(path)
        cfg = board.cfg
        if cfg is None:
            raise UsageError(f"the board at {args.board} runs configuration "
                             f"{board.id.config_id:#010x}, which is no preset: give --neurons "
                             f"and --dataset")
        if cfg.image_mean is not None:
            x = datasets.normalize_mean(x, cfg.image_mean)
        # The reference: the board's weights, θ and random streams (a loaded checkpoint's,
        # or the seed's on a freshly started board) in a golden model.
        golden = None
        loaded = True
        if not args.no_golden:
            weights = board.read_weights(progress=not args.quiet)
            golden = GoldenModel(cfg, seed)
            golden.w_in[...] = weights["w_in"]
            golden.w_ec[...] = weights["w_ec"]
            golden.theta[...] = board.read_theta()
            golden.rng[...] = board.read_rng()
            if args.input == "aer":
                golden.rng[:cfg.encoder_lanes] = board.aer_encoder().lanes
            if state is not None:
                # What was written must read back: the board's write path checked.
                loaded = all(np.array_equal(np.asarray(state[name]), getattr(golden, name))
                             for name in ("w_in", "w_ec", "theta"))
                print(f"weights and θ read back: {'identical to' if loaded else 'DIFFERENT from'}"
                      f" the checkpoint {path}")
        out = board.infer(x, mode=args.input, progress=not args.quiet, details=True)
    finally:
        board.close()
    pred = out["pred"]
    if golden is not None:
        print(_predictions_line(pred, golden.infer(x)["pred"], y))
    else:
        print(f"accuracy={accuracy(pred, y):.4f} images={len(x)}")
    _print_vboard(vboard)
    if args.save:
        np.savez_compressed(args.save, labels=y, **out)
    return 0 if loaded else 1


# --------------------------------------------------------------------------- sim
#: Names a chip top may give its UART divisor parameter.
_DIVISOR_PARAMS = ("divisor", "uart_divisor")


def _chip_top():
    """``symspike.hdl.chip.ChipTop``, or a UsageError saying it is missing."""
    import importlib
    try:
        module = importlib.import_module("symspike.hdl.chip")
    except ModuleNotFoundError as exc:
        if exc.name != "symspike.hdl.chip":
            raise
        module = None
    chip_top = getattr(module, "ChipTop", None)
    if chip_top is None:
        raise UsageError("there is no chip top yet (symspike.hdl.chip.ChipTop): nothing to run "
                         "on the virtual board")
    return chip_top


def _make_chip(chip_top, cfg, *, seed, divisor):
    import inspect
    params = inspect.signature(chip_top).parameters
    kwargs = {}
    if "seed" in params:
        kwargs["seed"] = seed
    name = next((n for n in _DIVISOR_PARAMS if n in params), None)
    if name is None and any(p.kind is p.VAR_KEYWORD for p in params.values()):
        name = _DIVISOR_PARAMS[0]
    if name is None:
        raise UsageError(f"ChipTop takes no UART divisor parameter (one of "
                         f"{', '.join(_DIVISOR_PARAMS)}): cannot set its bit rate")
    kwargs[name] = divisor
    return chip_top(cfg, **kwargs)


def _cmd_sim_board(args):
    from ..firmware.config import preset
    from ..hdl.uart import MIN_DIVISOR, divisor_for
    from ..sim.vboard import VBoardError, VirtualBoard

    chip_top = _chip_top()
    try:
        cfg = preset(args.neurons)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid network configuration: {exc}") from None
    if args.baud is not None:
        try:
            divisor = divisor_for(cfg.clock_hz, args.baud)
        except ValueError as exc:
            raise UsageError(f"--baud: {exc}") from None
    else:
        divisor = 4 if args.divisor is None else args.divisor
        if divisor < MIN_DIVISOR:
            raise UsageError(f"--divisor must be ≥ {MIN_DIVISOR}, not {divisor}")
    if args.waves is not None and Path(args.waves).suffix.lower() not in (".vcd", ".fst"):
        raise UsageError(f"--waves {args.waves}: the file must end in .vcd or .fst")
    baud = round(cfg.clock_hz / divisor)
    chip = _make_chip(chip_top, cfg, seed=args.seed, divisor=divisor)

    def show(stats):
        if not stats.final:
            print(f"symspike sim board: {stats}", file=sys.stderr, flush=True)

    print(f"symspike sim board: building the chip (N={cfg.n_exc}, divisor {divisor}) for "
          f"Verilator; the first build of a design takes a while", file=sys.stderr, flush=True)
    try:
        board = VirtualBoard.start(chip, name="chip", divisor=divisor, baud=baud,
                                   waves=args.waves, stats=args.stats, link=args.link,
                                   xdma=args.xdma, flip_rate=args.flip,
                                   drop_rate=args.drop, flip_seed=args.flip_seed,
                                   max_cycles=args.max_cycles, on_stats=show)
    except (VBoardError, TypeError, ValueError) as exc:
        print(f"symspike sim board: {exc}", file=sys.stderr)
        return 1
    print(board.serial_url, flush=True)
    if board.pcie_url:
        print(board.pcie_url, flush=True)
    noise = "".join(f", {what} with probability {rate:g}" for what, rate in
                    (("a bit of each UART byte flipped", args.flip),
                     ("each UART byte lost", args.drop)) if rate)
    print(f"symspike sim board: running at {divisor} cycles per bit{noise}; open {board.port}"
          f"{f' (or {args.link})' if args.link else ''}; Ctrl-C stops", file=sys.stderr,
          flush=True)
    try:
        board.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stats = board.close()
    if stats is not None:
        print(f"symspike sim board: {stats}", file=sys.stderr)
    status = board.returncode
    if status not in (0, -15):
        print(f"symspike sim board: the simulator exited with status {status}:\n"
              f"{board.stderr_tail()}", file=sys.stderr)
        return 1
    return 0


def _add_board_arguments(group):
    group.add_argument("--input", choices=("pixels", "aer"), default="pixels",
                       help="send pixels for the on-chip encoder, or stream the host "
                            "encoder's spike events (default: pixels)")
    group.add_argument("--no-golden", action="store_true",
                       help="skip the comparison with the golden model")


def _add_sim_arguments(parser: argparse.ArgumentParser):
    sub = parser.add_subparsers(dest="sim", required=True, metavar="WHAT")
    p = sub.add_parser("board", help="run the chip's Verilog in Verilator behind a "
                                     "pseudo-terminal and print its serial URL")
    p.add_argument("--neurons", "-N", type=_positive, default=100,
                   help="excitatory neurons of the chip (default: 100)")
    p.add_argument("--seed", type=_natural, default=0, help="the chip's seed (default: 0)")
    rate = p.add_mutually_exclusive_group()
    # No argparse default: it would hide an explicit --divisor from the exclusive group.
    rate.add_argument("--divisor", type=_positive,
                      help="clock cycles per UART bit (default 4: the fastest simulation)")
    rate.add_argument("--baud", type=_positive,
                      help="bit rate at the chip's nominal clock; sets the divisor")
    p.add_argument("--waves", metavar="PATH",
                   help="record a waveform (.vcd, or .fst with the LZ4 headers); large: "
                        "every clock edge")
    p.add_argument("--stats", type=float, metavar="S",
                   help="print the simulation speed every S seconds")
    p.add_argument("--xdma", metavar="DIR",
                   help="also serve the chip's DMA streams as simulated XDMA device files "
                        "(named pipes) in DIR and print their pcie:// URL")
    p.add_argument("--link", metavar="PATH",
                   help="also make PATH a symbolic link to the pseudo-terminal")
    p.add_argument("--max-cycles", type=_positive, metavar="N",
                   help="stop after N clock cycles (default: run until Ctrl-C)")
    p.add_argument("--flip", type=float, metavar="P",
                   help="flip one random bit of each UART byte, either way, with probability "
                        "P (to test a host against a noisy line)")
    p.add_argument("--drop", type=float, metavar="P",
                   help="lose each UART byte, either way, with probability P")
    p.add_argument("--flip-seed", type=_natural, metavar="S",
                   help="seed of --flip and --drop (default: 0)")
    p.set_defaults(func=_cmd_sim_board)


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
    b = p.add_argument_group(
        "on a board",
        "train online on a board and compare it with the golden model of the same seed and "
        "images: its weights and θ bit for bit, its test predictions image for image")
    b.add_argument("--board", metavar="URL",
                   help="serial:///dev/ttyUSB1?baud=3000000, pcie:///dev/xdma0, or sim:// for "
                        "the virtual board built for --neurons (sim://?link=pcie: through "
                        "simulated XDMA device files)")
    _add_board_arguments(b)
    b.add_argument("--checkpoint", metavar="DIR",
                   help="save the board's state to DIR/board.npz every --checkpoint-every "
                        "images and at the end; a board reset is then recovered from by "
                        "itself, and --resume DIR continues the run after the host stopped")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("infer", help="test a trained run, or a board, on images")
    p.add_argument("run", metavar="RUN", nargs="?",
                   help="run folder or checkpoint (.npz); with --board: loaded onto the board "
                        "first (a board.npz of `train --board --checkpoint` or a golden "
                        "checkpoint.npz), else the board is tested as it is")
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--data", metavar="DIR")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--test", type=_positive, default=10000, metavar="M")
    p.add_argument("--save", metavar="FILE.npz", help="save predictions and spike counts")
    p.add_argument("--quiet", action="store_true")
    b = p.add_argument_group("on a board")
    b.add_argument("--board", metavar="URL", help="test on this board (as for train --board)")
    b.add_argument("--neurons", "-N", type=_positive,
                   help="excitatory neurons of the board (default: the checkpoint's, else the "
                        "board's; 100 for sim://)")
    b.add_argument("--seed", type=_natural,
                   help="run seed: of the host's AER encoder and of the virtual board's chip "
                        "(default: the checkpoint's, else 0)")
    _add_board_arguments(b)
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

    p = sub.add_parser("sim", help="simulate the gateware: the virtual board")
    _add_sim_arguments(p)

    p = sub.add_parser("demo", help="the models, then the chip as a virtual board, trained on "
                                    "the embedded subset; the core synthesised for the UP5K")
    p.add_argument("--out", metavar="DIR", default="runs/demo")
    p.add_argument("--board-train", type=_positive, default=200, metavar="N",
                   help="training images for the virtual board (default: 200)")
    p.add_argument("--board-test", type=_positive, default=200, metavar="N",
                   help="test images for the virtual board (default: 200)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)
    return parser


def _cmd_demo(args):
    from .demo import run_demo
    return run_demo(args, main)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)    # for the figures' record
    try:
        return int(args.func(args) or 0)
    except (UsageError, datasets.DatasetError, CheckpointError) as exc:
        print(f"symspike {args.command}: {exc}", file=sys.stderr)
        return 2
    except _board_errors() as exc:
        print(f"symspike {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"symspike {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
