"""One training-and-test experiment on a model, as `symspike train` and the benchmarks run it.

:func:`run` loads the data, builds the configuration and the model, trains with
:class:`~symspike.sim.trainer.TrainingRun`, tests, and writes a run folder that
`symspike report` draws:

``run.json``      configuration, options and headline figures
``history.json``  accuracy over training (on held-out training images, or on test images)
``weights.npz``   ``w_in``, ``w_ec``, ``theta`` in real units
``eval.npz``      test labels, both readouts' predictions, E and C spike counts
``checkpoint.npz`` the full training state, for ``--resume``
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..firmware.config import NetworkConfig, preset
from ..sim.network import make_model
from ..sim.trainer import TrainingRun, accuracy, write_json
from . import datasets

__all__ = ["Experiment", "run", "load_data", "machine", "VAL_SEED"]

#: Seed of the draw of validation images from the training split.
VAL_SEED = 20200387


def machine() -> str:
    """A one-line description of this machine for results tables."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


@dataclass
class Experiment:
    """What to run; every field has a command-line option of the same name."""

    model: str = "golden"
    neurons: int = 100
    dataset: str = "mnist"
    data: str | None = None
    train: int = 60000
    val: int = 0
    test: int = 10000
    epochs: int = 1
    seed: int = 0
    mode: str = "simultaneous"
    eval_every: int = 0
    eval_size: int = 1000
    checkpoint_every: int = 0
    vote_window: int = 10000
    eta_final: float = 1.0
    keep_best: bool = False
    overrides: dict = field(default_factory=dict)
    formats: dict = field(default_factory=dict)

    def config(self) -> NetworkConfig:
        return preset(self.neurons, self.dataset, formats=dict(self.formats), **self.overrides)


def load_data(exp: Experiment, cfg: NetworkConfig):
    """Training, validation and test images of ``exp``.

    ``exp.val`` validation images are drawn from the training split by a fixed draw
    (:data:`VAL_SEED`); training uses the first ``exp.train`` of the others, in order.
    """
    if exp.train < 1:
        raise ValueError(f"--train must be ≥ 1, not {exp.train}")
    if exp.val < 0 or exp.test < 0:
        raise ValueError("--val and --test must be ≥ 0")
    if exp.keep_best and not (exp.val and exp.eval_every):
        raise ValueError("--keep-best needs validation images (--val V) and --eval-every K")
    x, y = datasets.load(exp.dataset, "train", exp.data)
    if exp.val >= x.shape[0]:
        raise ValueError(f"--val {exp.val} leaves no training images of {x.shape[0]}")
    # Validation images are spread over the whole training split (a fixed draw, the same for
    # every seed): a block at its end would share writers with the images trained last, and
    # online learning favours what it saw last, which would flatter one-epoch runs.
    held = np.zeros(x.shape[0], dtype=bool)
    held[np.random.default_rng(VAL_SEED).choice(x.shape[0], exp.val, replace=False)] = True
    xv, yv = x[held], y[held]
    x, y = x[~held][:exp.train], y[~held][:exp.train]
    xt, yt = datasets.load(exp.dataset, "test", exp.data)
    xt, yt = xt[:exp.test], yt[:exp.test]
    if cfg.image_mean is not None:
        x, xv, xt = (datasets.normalize_mean(a, cfg.image_mean) if len(a) else a
                     for a in (x, xv, xt))
    return (x, y), (xv, yv), (xt, yt)


def run(exp: Experiment, out: Path | None = None, progress: bool = True,
        resume: Path | None = None, log=print) -> dict:
    """Train and test as ``exp`` says; returns the results (also ``out/run.json``)."""
    if resume is not None:
        saved = Path(resume) / "experiment.json"
        if saved.is_file():
            # The data options of the interrupted run decide which images come next.
            exp = Experiment(**{**json.loads(saved.read_text()),
                                "eval_every": exp.eval_every,
                                "checkpoint_every": exp.checkpoint_every})
        out = out or Path(resume)
        training = TrainingRun.resume(resume, progress=progress, out_dir=out,
                                      eval_every=exp.eval_every,
                                      checkpoint_every=exp.checkpoint_every)
        model = training.model
        cfg = model.cfg
    else:
        cfg = exp.config()
        model = make_model(exp.model, cfg, exp.seed)
        training = TrainingRun(model, mode=exp.mode, epochs=exp.epochs,
                               vote_window=exp.vote_window, eta_final=exp.eta_final,
                               keep_best=exp.keep_best,
                               eval_every=exp.eval_every,
                               checkpoint_every=exp.checkpoint_every, out_dir=out,
                               progress=progress)
    (x, y), (xv, yv), (xt, yt) = load_data(exp, cfg)
    log(f"{model.kind} model, N={cfg.n_exc}, {exp.dataset} from "
        f"{datasets.describe_source(exp.dataset, exp.data)}: {len(x)} training, "
        f"{len(xv)} validation, {len(xt)} test images, {training.epochs} epoch(s), "
        f"{training.mode} training")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / "experiment.json", exp.__dict__)
    curve_x, curve_y, curve_on = (xv, yv, "val") if len(xv) else (
        xt[:exp.eval_size], yt[:exp.eval_size], "test")
    training.run(x, y, curve_x[:exp.eval_size], curve_y[:exp.eval_size])
    train_wall = training.wall_s
    presented = training.position
    results = {
        "model": model.kind, "seed": model.seed, "dataset": exp.dataset,
        "train_images": int(len(x)), "val_images": int(len(xv)), "test_images": int(len(xt)),
        "epochs": training.epochs, "mode": training.mode,
        "train_presentations": int(presented), "wall_s": round(train_wall, 3),
        "images_per_s": round(presented / train_wall, 2) if train_wall > 0 else None,
        "config": cfg.to_dict(), "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if len(xv):
        ev = model.infer(xv)
        results["val_accuracy"] = accuracy(ev["pred"], yv)
        results["val_accuracy_vote"] = accuracy(ev["pred_vote"], yv)
    if len(xt):
        t0 = time.perf_counter()
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(xt), desc="test", unit="img", leave=False, dynamic_ncols=True)
        ev = model.infer(xt, progress=bar.update if bar else None)
        if bar:
            bar.close()
        results["test_wall_s"] = round(time.perf_counter() - t0, 3)
        results["accuracy"] = accuracy(ev["pred"], yt)
        results["accuracy_vote"] = accuracy(ev["pred_vote"], yt)
        if out is not None:
            np.savez_compressed(Path(out) / "eval.npz", labels=yt, pred=ev["pred"],
                                pred_vote=ev["pred_vote"], counts=ev["counts"],
                                counts_c=ev["counts_c"])
    for point in training.history:
        point.setdefault("on", curve_on)
    results["history"] = training.history
    if training.best is not None:
        results["best"] = training.best
    if out is not None:
        out = Path(out)
        w = model.weights()
        np.savez_compressed(out / "weights.npz", **w)
        write_json(out / "history.json", {"curve": training.history, "on": curve_on})
        write_json(out / "run.json", {k: v for k, v in results.items() if k != "history"})
        training.save_checkpoint()
    return results

