"""Training and evaluation runs of either model, with progress, history and checkpoints.

A run trains on ``train`` images for ``epochs`` epochs in one of two modes:

``simultaneous``
    both plastic layers learn from the first image, the teacher drives the C layer;
``layer``
    the hidden layer (input→E, θ) learns alone for ``epochs`` epochs, then it is frozen, the
    E→C weights are re-drawn and learn for one more epoch with the teacher (the default of the
    authors' released code).

The first epoch presents the images in dataset order; later epochs in a fresh seeded
permutation. The Diehl & Cook label assignment is built from the responses of the latest
``vote_window`` training presentations (exponential forgetting). Evaluation during training
runs on held-out *training* images and leaves the training run bit-identical to one without
it (random streams and neuron state are restored).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .network import CheckpointError, Model

__all__ = ["TrainingRun", "accuracy", "MODES"]

MODES = ("simultaneous", "layer")


def accuracy(pred, labels) -> float:
    pred = np.asarray(pred)
    labels = np.asarray(labels)
    return float((pred == labels).mean()) if labels.size else float("nan")


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, leave=False,
                smoothing=0.05)


@dataclass
class TrainingRun:
    """One training run of ``model`` (see the module documentation).

    Parameters
    ----------
    model : Model
        A fresh or restored :class:`~symspike.sim.network.Model`.
    mode : str
        ``"simultaneous"`` or ``"layer"``.
    epochs : int
        Epochs over the training images (of the hidden layer, in layer mode).
    eta_final : float
        Learning-rate schedule: the rates fall linearly from the preset's values to
        ``eta_final`` times them over the whole run (1.0: constant, as the paper).
    keep_best : bool
        Early stopping: keep the weights, θ and label assignment of the evaluation point
        with the best validation accuracy (C readout) and end the run with them. Needs
        ``eval_every`` and validation images; costs nothing on chip (the host keeps the
        copy).
    vote_window : int
        Training presentations that the vote readout's label assignment remembers.
    eval_every : int
        Evaluate on the validation images every so many training images (0: never).
    checkpoint_every : int
        Write ``checkpoint.npz`` in ``out_dir`` every so many images (0: never).
    """

    model: Model
    mode: str = "simultaneous"
    epochs: int = 1
    vote_window: int = 10000
    eta_final: float = 1.0
    keep_best: bool = False
    eval_every: int = 0
    checkpoint_every: int = 0
    out_dir: Path | None = None
    progress: bool = True
    history: list = field(default_factory=list)
    position: int = 0       # training presentations done, over all stages
    wall_s: float = 0.0
    best: dict | None = None
    _best_state: dict | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive int, not {self.epochs!r}")
        if not 0.0 <= self.eta_final <= 16.0:
            raise ValueError(f"eta_final must be in [0, 16], not {self.eta_final}")
        if self.vote_window < 1:
            raise ValueError("vote_window must be ≥ 1")
        if self.out_dir is not None:
            self.out_dir = Path(self.out_dir)

    # -------------------------------------------------------------- schedule
    def schedule(self, n_train: int) -> list[tuple[str, np.ndarray]]:
        """The stages of the run: ``(phase, image order)`` per epoch."""
        stages = []
        for epoch in range(self.epochs):
            order = (np.arange(n_train) if epoch == 0 else
                     np.random.default_rng(self.model.seed + 7919 * epoch).permutation(n_train))
            stages.append(("both" if self.mode == "simultaneous" else "hidden", order))
        if self.mode == "layer":
            stages.append(("output", np.arange(n_train)))
        return stages

    # -------------------------------------------------------------- running
    def run(self, images, labels, val_images=None, val_labels=None):
        """Train on ``images``; returns the history (list of evaluation points)."""
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
            raise ValueError("need as many labels as images, and at least one image")
        model = self.model
        stages = self.schedule(images.shape[0])
        total = sum(len(order) for _, order in stages)
        forget = 1.0 - 1.0 / self.vote_window
        bar = _progress(total, f"train {model.kind} N={model.cfg.n_exc}", self.progress)
        if bar is not None:
            bar.update(self.position)
        start = time.perf_counter()
        done = 0
        for phase, order in stages:
            if phase == "output" and done + len(order) > self.position:
                if done == self.position:
                    # The supervised stage starts from fresh E→C weights, as the authors do.
                    model.reinit_output()
                    model.decay_votes(0.0)
            for idx in order:
                if done < self.position:
                    done += 1
                    continue
                if self.eta_final != 1.0:
                    frac = done / total
                    model.set_eta_scale(1.0 + (self.eta_final - 1.0) * frac)
                res = model.present(images[idx], int(labels[idx]), phase)
                model.decay_votes(forget)
                model.record_vote(res.counts_e, int(labels[idx]))
                done += 1
                self.position = done
                if bar is not None:
                    bar.update(1)
                if self.eval_every and val_images is not None and done % self.eval_every == 0:
                    self.wall_s += time.perf_counter() - start
                    self.evaluate_point(val_images, val_labels)
                    start = time.perf_counter()
                if self.checkpoint_every and self.out_dir and done % self.checkpoint_every == 0:
                    self.save_checkpoint()
        model.set_eta_scale(1.0)
        model.finish_training()
        self.wall_s += time.perf_counter() - start
        if self.keep_best and val_images is not None and len(val_images):
            if not self.history or self.history[-1]["images"] != self.position:
                self.evaluate_point(val_images, val_labels)
            if self._best_state is not None and self.best["images"] != self.position:
                model.load_state_dict(self._best_state)
        if bar is not None:
            bar.close()
        return self.history

    def evaluate_point(self, images, labels):
        """Accuracy on ``images`` without disturbing the training run."""
        model = self.model
        saved = {name: getattr(model, name).copy() for name in
                 ("rng", "se", "si", "sc", "x_in", "pend_in", "pend_e", "pend_i", "pend_c",
                  "w_in", "w_ec")}
        model.finish_training()
        # The candidate for the best state is the one the evaluation starts from, so that a
        # restored best state reproduces its accuracy exactly.
        candidate = model.state_dict() if self.keep_best else None
        out = model.infer(images)
        point = {"images": self.position, "accuracy": accuracy(out["pred"], labels),
                 "accuracy_vote": accuracy(out["pred_vote"], labels)}
        if self.keep_best and (self.best is None or point["accuracy"] > self.best["accuracy"]):
            self.best = dict(point)
            self._best_state = candidate
            if self.out_dir is not None:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                model.save(self.out_dir / "best.npz", extra={"best": self.best},
                           state=self._best_state)
        for name, value in saved.items():
            getattr(model, name)[...] = value
        self.history.append(point)
        return point

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save(self.out_dir / "checkpoint.npz",
                        extra={"position": self.position, "mode": self.mode,
                               "epochs": self.epochs, "vote_window": self.vote_window,
                               "eta_final": self.eta_final, "keep_best": self.keep_best,
                               "best": self.best,
                               "history": self.history, "wall_s": self.wall_s})

    @classmethod
    def resume(cls, path, **kwargs) -> "TrainingRun":
        """A run continued from ``path`` (a checkpoint file or the folder holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "checkpoint.npz"
        model = Model.load(path)
        meta, _ = Model.read_checkpoint(path)
        extra = meta.get("extra", {})
        if "position" not in extra:
            raise CheckpointError(f"{path} holds no training position")
        for key in ("mode", "epochs", "vote_window", "eta_final", "keep_best"):
            if key in extra:
                kwargs.setdefault(key, extra[key])
        run = cls(model, history=list(extra.get("history", [])), position=extra["position"],
                  wall_s=float(extra.get("wall_s", 0.0)), best=extra.get("best"), **kwargs)
        best_path = path.with_name("best.npz")
        if run.keep_best and run.best is not None and best_path.is_file():
            run._best_state = Model.read_checkpoint(best_path)[1]
        return run


def write_json(path, data):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
