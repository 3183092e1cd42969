"""Figures and a short summary of one training run (``symspike report RUN_DIR``).

A run folder, as written by ``symspike train --out DIR``, holds

``run.json``
    ``{"config": {...}, "model", "seed", "train_images", "epochs", "wall_s", "accuracy",
    "accuracy_vote", "images_per_s"}``.
``history.json`` (optional)
    ``{"curve": [{"images", "accuracy", "accuracy_vote"}, ...], "on": "val" | "test"}``:
    accuracy against the number of training images seen, measured on held-out validation
    images (or, without them, on part of the test set).
``weights.npz``
    ``w_in`` (784, N) input→E weights in real units, ``w_ec`` (N, 10), ``theta`` (N,).
``eval.npz``
    ``labels`` (M,), ``pred`` (M,) C-readout predictions, ``pred_vote`` (M,) vote predictions,
    optionally ``counts`` (M, N) E-layer spike counts per test image and ``counts_c`` (M, 10).

:func:`make_report` turns such a folder into PNG figures (receptive fields, confusion
matrices, accuracy curve, t-SNE of E-layer activity as in Hao et al. 2020, Fig. 4) and a
``report.md`` that lists them with the headline numbers. The figure functions can also be
used on their own.

Accuracies are stored as fractions in [0, 1]; values above 1 are taken to be percentages
already, so either convention plots correctly.
"""

from __future__ import annotations

import json
import math
import sys
import zipfile
from pathlib import Path

import numpy as np

# matplotlib and scikit-learn are imported inside the functions that draw: the CLI imports
# this module to register its subcommand, and `symspike train` should not pay for them.

__all__ = [
    "ReportError",
    "receptive_fields",
    "confusion_matrix",
    "accuracy_curve",
    "tsne",
    "make_report",
    "add_arguments",
    "main",
]

N_INPUT = 784
N_SIDE = 28
N_CLASSES = 10
#: Most receptive fields drawn in one figure; more would be too small to see.
MAX_FIELDS = 400

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_TRAIN_HINT = "run `symspike train --out {dir}` first"


class ReportError(Exception):
    """A run folder is missing a file, or a file in it cannot be read as expected."""


# --------------------------------------------------------------------------------------------
# figures


def _new_figure(figsize):
    """A figure on its own Agg canvas.

    Using the Figure API instead of pyplot keeps the global backend and pyplot's figure
    registry untouched, so reports can be drawn from any program and never leak figures.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def _plural(k: int, noun: str) -> str:
    return f"{k} {noun}" if k == 1 else f"{k} {noun}s"


def _grid_shape(n: int) -> tuple[int, int]:
    """Rows and columns of the most nearly square grid with at least ``n`` cells."""
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    return rows, cols


def _mosaic(w_in: np.ndarray, gap: int = 1) -> np.ndarray:
    """Tile the columns of ``w_in`` as 28×28 images; gaps and empty cells are NaN."""
    n = w_in.shape[1]
    rows, cols = _grid_shape(n)
    step = N_SIDE + gap
    out = np.full((rows * step - gap, cols * step - gap), np.nan, dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * step:r * step + N_SIDE, c * step:c * step + N_SIDE] = \
            w_in[:, k].reshape(N_SIDE, N_SIDE)
    return out


def receptive_fields(w_in, path, wmax=1.0, cmap="hot", max_fields=MAX_FIELDS) -> np.ndarray:
    """Draw each E neuron's input weights as a 28×28 tile in a near-square grid.

    Parameters
    ----------
    w_in : array_like, shape (784, N)
        Input→E weights in real units; column ``k`` is neuron ``k``'s receptive field, pixel
        ``(r, c)`` at row ``28 * r + c``.
    path : str or Path
        PNG file to write.
    wmax : float
        Weight drawn at full colour (the weight bound of the run).
    cmap : str
        Colormap; ``"hot"`` (default) or ``"gray"`` show strong weights bright.
    max_fields : int
        Draw at most the first ``max_fields`` neurons; the title says when some are left out.

    Returns
    -------
    numpy.ndarray
        The drawn mosaic, float32 with NaN in the one-pixel gaps and empty cells; tile ``k``
        starts at row ``29 * (k // cols)``, column ``29 * (k % cols)``.

    Raises
    ------
    ValueError
        If ``w_in`` is not a finite (784, N) array with N ≥ 1, or ``wmax`` is not positive.
    """
    w = np.asarray(w_in)
    if w.ndim != 2 or w.shape[0] != N_INPUT or w.shape[1] < 1:
        raise ValueError(f"w_in must have shape (784, N), not {w.shape}")
    if not np.issubdtype(w.dtype, np.number) or not np.all(np.isfinite(w)):
        raise ValueError("w_in must hold finite numbers")
    if not wmax > 0:
        raise ValueError(f"wmax must be positive, not {wmax!r}")
    n = w.shape[1]
    shown = min(n, max_fields)
    mosaic = _mosaic(w[:, :shown].astype(np.float32))
    rows, cols = _grid_shape(shown)

    import matplotlib as mpl

    # The gaps need a colour that is neither "no weight" (black) nor "full weight" (white).
    colormap = mpl.colormaps[cmap].with_extremes(bad="#3d5a80")
    side = 4.0 + 5.0 * math.sqrt(shown) / 20
    fig = _new_figure((side + 1.2, side * rows / cols + 0.8))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(mosaic), cmap=colormap, vmin=0.0, vmax=wmax,
                   interpolation="nearest")
    ax.set_axis_off()
    title = f"Input→E receptive fields, {_plural(n, 'neuron')}"
    if shown < n:
        title = f"Input→E receptive fields, first {shown} of {n} neurons"
    ax.set_title(title)
    cb = fig.colorbar(im, ax=ax, shrink=0.6, pad=0.02)
    cb.set_label("weight")
    _save(fig, path)
    return mosaic


def confusion_matrix(labels, pred, path, title="Confusion matrix",
                     class_names=None) -> np.ndarray:
    """Draw the 10×10 confusion matrix with row-normalised colour and counts in the cells.

    Parameters
    ----------
    labels : array_like of int, shape (M,)
        True classes, 0..9.
    pred : array_like of int, shape (M,)
        Predicted classes. Values outside 0..9 (e.g. -1 when no neuron fired) count as
        errors but appear in no cell; the title says how many there were.
    path : str or Path
        PNG file to write.
    title : str
        Figure title; the accuracy is appended.
    class_names : sequence of str, optional
        Ten tick labels; digits by default.

    Returns
    -------
    numpy.ndarray, shape (10, 10), int64
        ``m[i, j]`` is the number of images of class ``i`` predicted as ``j``.

    Raises
    ------
    ValueError
        If the arrays differ in length, are empty, or ``labels`` lie outside 0..9.
    """
    y = np.asarray(labels).ravel()
    p = np.asarray(pred).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and pred differ in length: {y.size} vs {p.size}")
    if y.size == 0:
        raise ValueError("no test images")
    if not (np.issubdtype(y.dtype, np.integer) and np.issubdtype(p.dtype, np.integer)):
        raise ValueError("labels and pred must be integer arrays")
    y = y.astype(np.int64)
    p = p.astype(np.int64)
    if y.min() < 0 or y.max() >= N_CLASSES:
        raise ValueError("labels must lie in 0..9")
    valid = (p >= 0) & (p < N_CLASSES)
    m = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(m, (y[valid], p[valid]), 1)
    acc = np.trace(m) / y.size
    names = list(class_names) if class_names is not None else [str(d) for d in range(10)]
    if len(names) != N_CLASSES:
        raise ValueError("class_names must have ten entries")

    rowsum = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rowsum, out=np.zeros(m.shape), where=rowsum > 0)

    fig = _new_figure((6.4, 5.6))
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    # Counts of a full 10 000-image test set have five digits: shrink rather than overlap.
    size = 8 if m.max() < 10000 else 7
    for i in range(N_CLASSES):
        for j in range(N_CLASSES):
            if m[i, j] == 0:
                continue
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=size,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(N_CLASSES), names)
    ax.set_yticks(range(N_CLASSES), names)
    if class_names is not None:
        ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    full = f"{title}\naccuracy {100 * acc:.2f} % of {y.size} images"
    missing = int((~valid).sum())
    if missing:
        full += f" ({missing} without a prediction)"
    ax.set_title(full)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label("fraction of true class")
    _save(fig, path)
    return m


def _as_percent(values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    return v if finite.size and finite.max() > 1.0 else 100.0 * v


def _curve_points(history) -> list[dict]:
    """The list of curve points of a loaded ``history.json`` (or the list itself)."""
    curve = history.get("curve") if isinstance(history, dict) else history
    if not isinstance(curve, list):
        raise ValueError("history must be a dict with a 'curve' list")
    for pt in curve:
        if not isinstance(pt, dict) or "images" not in pt or "accuracy" not in pt:
            raise ValueError("every curve point needs 'images' and 'accuracy'")
        for key in ("images", "accuracy", "accuracy_vote"):
            v = pt.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"curve point field {key!r} must be a number, not {v!r}")
    return sorted(curve, key=lambda pt: pt["images"])


def _curve_set(history) -> str:
    """Which images a curve was measured on, as words for a label."""
    on = history.get("on", "val") if isinstance(history, dict) else "val"
    return "test-subset" if on == "test" else "validation"


def accuracy_curve(history, path, images_per_epoch=None) -> Path:
    """Plot validation accuracy (and vote accuracy) against training images seen.

    Parameters
    ----------
    history : dict or list
        Loaded ``history.json`` (``{"curve": [...], "on": "val" | "test"}``) or its curve
        list; each point has ``images``, ``accuracy`` and optionally ``accuracy_vote``.
        ``on`` names the images the accuracy was measured on (validation by default).
    path : str or Path
        PNG file to write.
    images_per_epoch : int, optional
        Draw a faint line at every epoch boundary inside the curve's range.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If the history is malformed or has no points.
    """
    pts = _curve_points(history)
    if not pts:
        raise ValueError("history has no points")
    from matplotlib.ticker import FuncFormatter

    x = np.array([pt["images"] for pt in pts], dtype=float)
    acc = _as_percent([pt["accuracy"] for pt in pts])
    has_vote = all("accuracy_vote" in pt for pt in pts)

    fig = _new_figure((6.4, 4.2))
    ax = fig.add_subplot()
    ax.plot(x, acc, "o-", ms=4, label="C-neuron readout")
    lows = [acc]
    if has_vote:
        vote = _as_percent([pt["accuracy_vote"] for pt in pts])
        ax.plot(x, vote, "s--", ms=4, label="vote readout (Diehl & Cook)")
        lows.append(vote)
    finite = np.concatenate(lows)
    finite = finite[np.isfinite(finite)]
    worst = finite.min() if finite.size else 0.0
    if images_per_epoch and images_per_epoch > 0:
        for e in range(1, int(x.max() // images_per_epoch) + 1):
            if e * images_per_epoch < x.max():
                ax.axvline(e * images_per_epoch, color="0.8", lw=0.8, zorder=0)
                ax.text(e * images_per_epoch, 99.0, f" epoch {e + 1}", color="0.5",
                        fontsize=8, va="top", ha="left")
    # Start at a round number below the worst point so late differences of a few percent
    # stay visible, but never cut off the top.
    lo = max(0.0, math.floor((worst - 5.0) / 10.0) * 10.0)
    ax.set_ylim(lo, 100.0)
    # Training starts at zero images; anchoring there keeps a one-point curve readable.
    right = x.max() * 1.03 if x.max() > 0 else 1.0
    ax.set_xlim(-0.03 * right, right)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("training images seen")
    ax.set_ylabel(f"{_curve_set(history)} accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(f"Accuracy during training (last: {acc[-1]:.2f} %)")
    return _save(fig, path)


def _activity(counts) -> np.ndarray:
    """Spike counts divided by each image's total; rows without spikes stay zero."""
    x = np.asarray(counts, dtype=np.float64)
    total = x.sum(axis=1, keepdims=True)
    return np.divide(x, total, out=np.zeros_like(x), where=total > 0)


def tsne(counts, labels, path, max_points=2000, seed=0, class_names=None):
    """Embed E-layer activity with t-SNE and plot it coloured by class.

    Each image's spike-count vector is divided by its total so that the embedding reflects
    which neurons fired, not how many spikes the image drew; images without any spike stay
    as zero vectors (they are part of the network's behaviour and cluster together).

    Parameters
    ----------
    counts : array_like, shape (M, N)
        E-layer spike counts per test image.
    labels : array_like of int, shape (M,)
        Classes 0..9.
    path : str or Path
        PNG file to write.
    max_points : int
        At most this many images are embedded, drawn at random with ``seed``.
    seed : int
        Seed of the subsample and of t-SNE; the same inputs give the same picture.
    class_names : sequence of str, optional
        Legend labels; digits by default.

    Returns
    -------
    index : numpy.ndarray of int, shape (K,)
        Rows of ``counts`` that were embedded, ascending.
    embedding : numpy.ndarray, shape (K, 2)
        Their t-SNE coordinates.

    Raises
    ------
    ValueError
        If shapes disagree, counts are negative, or fewer than 5 images are given.
    """
    c = np.asarray(counts)
    y = np.asarray(labels).ravel()
    if c.ndim != 2 or c.shape[0] != y.size:
        raise ValueError(f"counts must have shape (M, N) with M = {y.size} labels, "
                         f"not {c.shape}")
    if not np.issubdtype(c.dtype, np.number) or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("counts must be finite and non-negative")
    if c.shape[0] < 5:
        raise ValueError(f"t-SNE needs at least 5 images, got {c.shape[0]}")
    if max_points < 5:
        raise ValueError(f"max_points must be at least 5, not {max_points}")

    if c.shape[0] > max_points:
        rng = np.random.default_rng(seed)
        index = np.sort(rng.choice(c.shape[0], size=max_points, replace=False))
    else:
        index = np.arange(c.shape[0])
    x = _activity(c[index])
    silent = int((x.sum(axis=1) == 0).sum())
    ys = y[index].astype(np.int64)

    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = x.shape[0]
    # sklearn requires perplexity < n; 30 is its default and the usual choice.
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    # PCA initialisation divides by the spread of the first component, which is zero when
    # every image looks the same (e.g. a silent network); fall back to random init then.
    init = "pca" if np.ptp(x, axis=0).max() > 0 else "random"
    # One thread: the same picture on any number of cores, and no OpenMP spin-waiting, which
    # made t-SNE tens of times slower whenever other processes shared the CPUs.
    with threadpool_limits(limits=1):
        emb = TSNE(n_components=2, perplexity=perplexity, init=init, learning_rate="auto",
                   random_state=seed).fit_transform(x)

    import matplotlib as mpl

    names = list(class_names) if class_names is not None else [str(d) for d in range(10)]
    colours = mpl.colormaps["tab10"]
    fig = _new_figure((6.8, 5.6))
    ax = fig.add_subplot()
    # Marker area shrinks as points grow in number, so 2000 points neither vanish nor merge.
    marker = max(3.0, min(16.0, 8000.0 / n))
    for d in range(N_CLASSES):
        sel = ys == d
        if sel.any():
            ax.scatter(emb[sel, 0], emb[sel, 1], s=marker, color=colours(d), label=names[d],
                       alpha=0.8, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    sub = f"{n} test images, {c.shape[1]} E neurons"
    if silent:
        sub += f", {silent} without spikes"
    ax.set_title(f"t-SNE of E-layer activity\n{sub}")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5),
              markerscale=max(1.0, math.sqrt(40.0 / marker)), frameon=False,
              title="digit" if class_names is None else "class")
    _save(fig, path)
    return index, emb


# --------------------------------------------------------------------------------------------
# reading a run folder


def _hint(run_dir: Path) -> str:
    return _TRAIN_HINT.format(dir=run_dir)


def _read_json(path: Path, run_dir: Path, required: bool):
    if not path.is_file():
        if required:
            raise ReportError(f"{path.name} not found in run folder {run_dir}: "
                              f"{_hint(run_dir)}")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{path.name} in {run_dir} is not valid JSON ({e}); "
                          f"re-run the training ({_hint(run_dir)})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path.name} in {run_dir} must hold a JSON object; "
                          f"re-run the training ({_hint(run_dir)})")
    return data


def _read_npz(path: Path, run_dir: Path, keys: tuple[str, ...]) -> dict:
    """Load ``path`` eagerly; every key in ``keys`` must be present."""
    if not path.is_file():
        raise ReportError(f"{path.name} not found in run folder {run_dir}: "
                          f"{_hint(run_dir)}")
    if not zipfile.is_zipfile(path):
        raise ReportError(f"{path.name} in {run_dir} is not a NumPy .npz archive; "
                          f"re-run the training ({_hint(run_dir)})")
    try:
        # allow_pickle=False: a report must never execute code from a data file.
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except ValueError as e:
        what = ("holds object arrays, which are not loaded" if "allow_pickle" in str(e)
                else f"cannot be read ({e})")
        raise ReportError(f"{path.name} in {run_dir} {what}; "
                          f"re-run the training ({_hint(run_dir)})") from None
    except Exception as e:  # a damaged archive fails in zipfile, zlib or the .npy parser
        raise ReportError(f"{path.name} in {run_dir} cannot be read "
                          f"({type(e).__name__}: {e}); "
                          f"re-run the training ({_hint(run_dir)})") from None
    absent = [k for k in keys if k not in data]
    if absent:
        raise ReportError(f"{path.name} in {run_dir} lacks array(s) "
                          f"{', '.join(absent)}; re-run the training ({_hint(run_dir)})")
    return data


def _malformed(path: Path, run_dir: Path, what: str) -> ReportError:
    return ReportError(f"{path.name} in {run_dir} is malformed: {what}; "
                       f"re-run the training ({_hint(run_dir)})")


def _number(run: dict, key: str, path: Path, run_dir: Path):
    """``run[key]`` if it is a number, None if absent; anything else is malformed."""
    v = run.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _malformed(path, run_dir, f"{key!r} must be a number, not {v!r}")
    return v


def _fmt_pct(v) -> str:
    if v is None:
        return "—"
    return f"{float(_as_percent([v])[0]):.2f} %"


def _fmt_duration(seconds) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    h, rem = divmod(int(round(seconds)), 3600)
    if h:
        return f"{seconds:.0f} s ({h} h {rem // 60:02d} min)"
    return f"{seconds:.0f} s ({rem // 60} min)"


def make_report(run_dir, out_dir=None) -> list[Path]:
    """Draw every figure of a run folder and write ``report.md`` beside them.

    Parameters
    ----------
    run_dir : str or Path
        Folder written by ``symspike train --out DIR``.
    out_dir : str or Path, optional
        Where to write; ``run_dir`` by default. Created if needed.

    Returns
    -------
    list of Path
        Files written: ``receptive_fields.png``, ``confusion.png``, ``confusion_vote.png``,
        ``accuracy_curve.png`` and ``tsne.png`` when their data exist, then ``report.md``.

    Raises
    ------
    ReportError
        If ``run.json``, ``weights.npz`` or ``eval.npz`` is missing or malformed, or an
        optional file that exists is malformed. Missing optional data (``history.json``,
        ``pred_vote``, ``counts``) only skips its figure; ``report.md`` says so.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run folder {run_dir} does not exist: {_hint(run_dir)}")
    out = Path(out_dir) if out_dir is not None else run_dir

    # Read and check everything before drawing, so a bad folder leaves no partial report.
    run_path = run_dir / "run.json"
    run = _read_json(run_path, run_dir, required=True)
    config = run.get("config", {})
    if not isinstance(config, dict):
        raise _malformed(run_path, run_dir, "'config' must be an object")
    nums = {k: _number(run, k, run_path, run_dir)
            for k in ("seed", "train_images", "epochs", "wall_s", "accuracy",
                      "accuracy_vote", "images_per_s")}
    n_exc = _number(config, "n_exc", run_path, run_dir)
    wmax = _number(config, "wmax_in", run_path, run_dir) or 1.0
    dataset = str(config.get("dataset", run.get("dataset", "mnist")))
    class_names = FASHION_CLASSES if dataset.lower().startswith("fashion") else None

    w_path = run_dir / "weights.npz"
    weights = _read_npz(w_path, run_dir, ("w_in",))
    w_in = weights["w_in"]
    if (w_in.ndim != 2 or w_in.shape[0] != N_INPUT or w_in.shape[1] < 1
            or not np.issubdtype(w_in.dtype, np.number)):
        raise _malformed(w_path, run_dir, f"w_in must be a numeric (784, N) array, "
                                          f"not {w_in.dtype} {w_in.shape}")
    if not np.all(np.isfinite(w_in)):
        raise _malformed(w_path, run_dir, "w_in holds NaN or infinite values")
    n = w_in.shape[1]
    if n_exc is not None and n_exc != n:
        raise _malformed(w_path, run_dir, f"w_in has {n} E neurons but run.json says "
                                          f"n_exc = {n_exc}")
    if "w_ec" in weights and weights["w_ec"].shape != (n, N_CLASSES):
        raise _malformed(w_path, run_dir, f"w_ec must have shape ({n}, 10), "
                                          f"not {weights['w_ec'].shape}")
    if "theta" in weights and weights["theta"].shape != (n,):
        raise _malformed(w_path, run_dir, f"theta must have shape ({n},), "
                                          f"not {weights['theta'].shape}")

    e_path = run_dir / "eval.npz"
    ev = _read_npz(e_path, run_dir, ("labels", "pred"))
    labels = ev["labels"]
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise _malformed(e_path, run_dir, f"labels must be a non-empty 1-D integer array, "
                                          f"not {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        raise _malformed(e_path, run_dir, "labels must lie in 0..9")
    m = labels.size
    for key in ("pred", "pred_vote"):
        if key in ev:
            a = ev[key]
            if a.shape != (m,) or not np.issubdtype(a.dtype, np.integer):
                raise _malformed(e_path, run_dir, f"{key} must be an integer array of shape "
                                                  f"({m},), not {a.dtype} {a.shape}")
    counts = ev.get("counts")
    if counts is not None:
        if counts.shape != (m, n) or not np.issubdtype(counts.dtype, np.number):
            raise _malformed(e_path, run_dir, f"counts must be a numeric ({m}, {n}) array, "
                                              f"not {counts.dtype} {counts.shape}")
        if np.any(counts < 0):
            raise _malformed(e_path, run_dir, "counts must be non-negative")

    h_path = run_dir / "history.json"
    history = _read_json(h_path, run_dir, required=False)
    points = None
    if history is not None:
        try:
            points = _curve_points(history)
        except ValueError as e:
            raise _malformed(h_path, run_dir, str(e)) from None

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"cannot create output folder {out}: {e.strerror}") from None

    written: list[Path] = []
    figures: list[tuple[str, str, str]] = []  # (file, caption, detail)
    skipped: list[str] = []

    receptive_fields(w_in, out / "receptive_fields.png", wmax=wmax)
    written.append(out / "receptive_fields.png")
    shown = min(n, MAX_FIELDS)
    figures.append(("receptive_fields.png", "Input→E receptive fields",
                    _plural(n, "neuron") if shown == n else f"first {shown} of {n} neurons"))

    cm = confusion_matrix(labels, ev["pred"], out / "confusion.png",
                          title="Confusion matrix, C-neuron readout", class_names=class_names)
    written.append(out / "confusion.png")
    acc_c = np.trace(cm) / m
    figures.append(("confusion.png", "Confusion matrix, C-neuron readout",
                    f"accuracy {100 * acc_c:.2f} % of {m} test images"))

    acc_v = None
    if "pred_vote" in ev:
        cmv = confusion_matrix(labels, ev["pred_vote"], out / "confusion_vote.png",
                               title="Confusion matrix, vote readout (Diehl & Cook)",
                               class_names=class_names)
        written.append(out / "confusion_vote.png")
        acc_v = np.trace(cmv) / m
        figures.append(("confusion_vote.png", "Confusion matrix, vote readout",
                        f"accuracy {100 * acc_v:.2f} % of {m} test images"))
    else:
        skipped.append("vote confusion matrix: eval.npz has no `pred_vote`")

    if points:
        per_epoch = nums["train_images"] if (nums["epochs"] or 0) > 1 else None
        accuracy_curve({**history, "curve": points}, out / "accuracy_curve.png",
                       images_per_epoch=per_epoch)
        written.append(out / "accuracy_curve.png")
        figures.append(("accuracy_curve.png", "Accuracy during training",
                        f"{_plural(len(points), 'point')}, measured on "
                        f"{_curve_set(history)} images"))
    elif history is None:
        skipped.append("accuracy curve: no history.json in the run folder")
    else:
        skipped.append("accuracy curve: history.json has no points")

    if counts is None:
        skipped.append("t-SNE: eval.npz has no E-layer spike `counts`")
    elif m < 5:
        skipped.append(f"t-SNE: only {m} test images (needs at least 5)")
    else:
        idx, _ = tsne(counts, labels, out / "tsne.png", seed=int(nums["seed"] or 0),
                      class_names=class_names)
        written.append(out / "tsne.png")
        figures.append(("tsne.png", "t-SNE of E-layer activity",
                        f"{idx.size} of {m} test images"))

    lines = [f"# Training run `{run_dir.resolve().name}`", ""]
    rows = [
        ("model", run.get("model", "—")),
        ("dataset", dataset),
        ("E neurons", n),
        ("seed", nums["seed"] if nums["seed"] is not None else "—"),
        ("training images × epochs",
         f"{nums['train_images'] if nums['train_images'] is not None else '—'} × "
         f"{nums['epochs'] if nums['epochs'] is not None else '—'}"),
        ("accuracy, C readout", _fmt_pct(nums["accuracy"])),
        ("accuracy, vote readout", _fmt_pct(nums["accuracy_vote"])),
        ("training time", _fmt_duration(nums["wall_s"])),
        ("throughput", f"{nums['images_per_s']:.1f} images/s"
         if nums["images_per_s"] is not None else "—"),
    ]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]
    lines += [f"Test set from `eval.npz`: {m} images; accuracy recomputed from the "
              f"predictions: C readout {100 * acc_c:.2f} %"
              + (f", vote readout {100 * acc_v:.2f} %." if acc_v is not None else "."), ""]
    lines += ["## Figures", ""]
    for file, caption, detail in figures:
        lines += [f"### {caption}", "", f"{detail}.", "", f"![{caption}]({file})", ""]
    if skipped:
        lines += ["## Not drawn", ""] + [f"- {s}." for s in skipped] + [""]
    md = out / "report.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    written.append(md)
    return written


# --------------------------------------------------------------------------------------------
# command line


def add_arguments(parser) -> None:
    """Add the arguments of ``symspike report`` to an :class:`argparse.ArgumentParser`."""
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="run folder written by `symspike train --out DIR`")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="write figures and report.md here (default: RUN_DIR)")


def main(args) -> int:
    """Run ``symspike report``: print the files written and return 0, or 2 on a bad folder."""
    try:
        paths = make_report(args.run_dir, args.out)
    except ReportError as e:
        print(f"symspike report: error: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0
