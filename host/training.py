"""Online training on a board that loses nothing: checkpoints, resets and resumed runs.

:class:`BoardTraining` presents a run's images to a :class:`~symspike.host.board.Board` in
the order of its schedule, writes a checkpoint every ``every`` images and at the end, and
recovers from a board reset by itself: the board is loaded with the last checkpoint (weights,
θ, the states of its random streams, the host's AER encoder) and the images since then are
presented again. The run therefore ends exactly where an uninterrupted one ends — bit for bit,
as the golden model of the same seed trained on the same images does — whatever number of
resets it met, as long as each is detected (``EPOCH``, see :mod:`symspike.host.board`).

A checkpoint is written atomically (:meth:`Board.checkpoint`): a crash of the host while it
is written leaves the previous one whole. Its metadata hold the run's identity (dataset,
image count, epochs, schedule hash, seed, input mode) and the position in the schedule, so
``symspike train --board URL --resume DIR`` continues a run after the host stopped, and
refuses a checkpoint of another run.

>>> run = BoardTraining(board, x, y, order, checkpoint="runs/b/board.npz", every=100)
>>> run.run()                                                          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .board import Board, BoardError, BoardResetError

__all__ = ["BoardTraining", "RunMismatch", "schedule_hash"]


class RunMismatch(ValueError):
    """A checkpoint that belongs to another run than the one asked for."""


def schedule_hash(order) -> str:
    """A short digest of the order in which a run presents its images."""
    return hashlib.sha256(np.asarray(order, dtype="<i8").tobytes()).hexdigest()[:16]


class BoardTraining:
    """One online training run on a board (see the module documentation).

    Parameters
    ----------
    board : Board
        An open board, configured.
    images, labels : array
        The training set; ``order`` indexes it.
    order : array of int
        The images in presentation order, all epochs one after the other.
    mode : str
        ``"pixels"`` or ``"aer"``.
    checkpoint : path-like, optional
        Checkpoint file. Without one, a board reset cannot be recovered from.
    every : int
        Images between checkpoints (0: only at the start and the end).
    identity : dict, optional
        What identifies the run besides its schedule (dataset, seed, …): stored with every
        checkpoint and compared by :meth:`resume_from`.
    max_recoveries : int
        Board resets recovered from before giving up.
    progress : bool
        Show a progress bar.
    log : callable
        Where to say what happened (a reset, a recovery); ``print`` by default.

    Attributes
    ----------
    position : int
        Images of ``order`` presented so far.
    recoveries : int
        Board resets recovered from.
    replayed : int
        Images presented again after a recovery.
    """

    def __init__(self, board: Board, images, labels, order, *, mode: str = "pixels",
                 checkpoint=None, every: int = 1000, identity: dict | None = None,
                 max_recoveries: int = 10, progress: bool = True, log=print):
        if not isinstance(board, Board):
            raise TypeError(f"board must be a Board, not {type(board).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"every must be a non-negative int, not {every!r}")
        if isinstance(max_recoveries, bool) or not isinstance(max_recoveries, int) \
                or max_recoveries < 0:
            raise ValueError(f"max_recoveries must be a non-negative int, not "
                             f"{max_recoveries!r}")
        self.board = board
        self.images = np.asarray(images)
        self.labels = np.asarray(labels)
        self.order = np.asarray(order, dtype=np.int64)
        if self.order.size and (self.order.min() < 0 or self.order.max() >= len(self.images)):
            raise ValueError(f"order indexes {len(self.images)} images, not "
                             f"{self.order.min()}..{self.order.max()}")
        self.mode = mode
        self.path = Path(checkpoint) if checkpoint is not None else None
        self.every = every
        self.identity = dict(identity or {})
        self.identity.update(mode=mode, images=len(self.order),
                             schedule=schedule_hash(self.order))
        self.max_recoveries = max_recoveries
        self.progress = progress
        self.log = log
        self.position = 0
        self.finished = False
        self.recoveries = 0
        self.replayed = 0
        self._saved = None              # position of the last checkpoint written

    # ------------------------------------------------------------------ checkpoints
    def _save(self):
        if self.path is None:
            return
        self.board.checkpoint(self.path, extra={"run": self.identity,
                                                "position": self.position,
                                                "finished": self.finished})
        self._saved = self.position

    def resume_from(self, path) -> int:
        """Load the checkpoint ``path`` of this run onto the board and continue from it.

        Returns
        -------
        int
            The position it continues from.

        Raises
        ------
        RunMismatch
            The checkpoint is of another run (other data, schedule, seed or input mode).
        """
        from ..sim.network import Model
        meta, _ = Model.read_checkpoint(path)
        extra = meta.get("extra") or {}
        theirs = extra.get("run")
        if not isinstance(theirs, dict) or "position" not in extra:
            raise RunMismatch(f"{path} is no checkpoint of a board training run (no run "
                              f"identity or position); start the run afresh")
        diffs = [f"{key} {theirs.get(key)!r} ≠ {value!r}" for key, value in
                 self.identity.items() if theirs.get(key) != value]
        if diffs:
            raise RunMismatch(f"{path} belongs to another run ({'; '.join(diffs)} "
                              f"[checkpoint ≠ asked]); give the same dataset, image count, "
                              f"epochs, seed and input mode, or start afresh")
        self.board.resume(path)
        self.position = int(extra["position"])
        self.finished = bool(extra.get("finished", False))
        self._saved = self.position
        self.path = Path(path) if self.path is None else self.path
        return self.position

    # ------------------------------------------------------------------ running
    def _recover(self, exc):
        if self.path is None or self._saved is None:
            raise BoardError(f"{exc}; no checkpoint to recover from (give a checkpoint "
                             f"file to train with)") from None
        if self.recoveries >= self.max_recoveries:
            raise BoardError(f"{exc}; gave up after {self.recoveries} recoveries (the board "
                             f"keeps resetting: check its power and clock); the run continues "
                             f"from {self.path} with --resume") from None
        self.recoveries += 1
        self.log(f"board reset detected at image {self.position} of {len(self.order)}: "
                 f"loading the checkpoint of image {self._saved} and presenting the "
                 f"{self.position - self._saved} image(s) since again")
        self.replayed += self.position - self._saved
        self.board.resume(self.path)
        self.position = self._saved
        self.finished = False

    def run(self) -> int:
        """Present the images from :attr:`position` to the end, then the final scaling pass.

        Returns
        -------
        int
            Images presented (replays after recoveries included).
        """
        from tqdm.auto import tqdm

        total = len(self.order)
        presented = 0
        with tqdm(total=total, initial=self.position, desc=f"train on the board "
                  f"({self.mode})", unit="img", disable=not self.progress) as bar:
            while True:
                try:
                    if self._saved is None:
                        self._save()
                    while self.position < total:
                        k = int(self.order[self.position])
                        self.board.train(self.images[k:k + 1], self.labels[k:k + 1],
                                         mode=self.mode, progress=False, finish=False)
                        self.position += 1
                        presented += 1
                        bar.update(1)
                        if self.every and self.position % self.every == 0:
                            self._save()
                    if not self.finished:
                        self.board.finish_training()
                        self.finished = True
                        # Read back (and EPOCH checked) whatever the checkpoint interval.
                        self._save()
                    return presented
                except BoardResetError as exc:
                    self._recover(exc)
                    bar.n = self.position
                    bar.refresh()
