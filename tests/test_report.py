"""Tests of the run report: figures drawn from synthetic run folders of known structure."""

from __future__ import annotations

import argparse
import json

import matplotlib as mpl
import numpy as np
import pytest
from matplotlib.image import imread

from symspike.host import report
from symspike.host.report import ReportError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, min_side=200):
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert min(img.shape[:2]) >= min_side
    return img


def _square_field(r0, c0, side=7, value=0.6):
    f = np.zeros((28, 28), dtype=np.float32)
    f[r0:r0 + side, c0:c0 + side] = value
    return f.ravel()


def _structured_counts(labels, n, rng, silent=()):
    """Spike counts where neurons ``n*d/10 ...`` answer to class ``d``, plus noise."""
    counts = rng.poisson(0.3, size=(labels.size, n))
    per = n // 10
    for i, d in enumerate(labels):
        counts[i, d * per:(d + 1) * per] += rng.poisson(6.0, size=per)
    counts[list(silent)] = 0
    return counts.astype(np.uint16)


def make_run(path, n=20, m=200, history=True, counts=True, dataset="mnist", seed=3):
    """A complete synthetic run folder; returns the arrays written for checking."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    w_in = (rng.random((784, n)) * 0.3).astype(np.float32)
    w_ec = (rng.random((n, 10)) * 8).astype(np.float32)
    theta = np.full(n, 20.0, dtype=np.float32)
    np.savez(path / "weights.npz", w_in=w_in, w_ec=w_ec, theta=theta)

    labels = np.repeat(np.arange(10), m // 10).astype(np.uint8)
    pred = labels.astype(np.int64).copy()
    pred[::7] = (pred[::7] + 1) % 10
    pred_vote = labels.astype(np.int64).copy()
    pred_vote[::5] = (pred_vote[::5] + 3) % 10
    ev = dict(labels=labels, pred=pred, pred_vote=pred_vote)
    if counts:
        ev["counts"] = _structured_counts(labels, n, rng, silent=(0, 1))
    np.savez(path / "eval.npz", **ev)

    acc = float(np.mean(pred == labels))
    run = {"config": {"n_exc": n, "dataset": dataset, "wmax_in": 1.0}, "model": "float",
           "seed": 0, "train_images": 1000, "epochs": 2, "wall_s": 12.5,
           "accuracy": acc, "accuracy_vote": float(np.mean(pred_vote == labels)),
           "images_per_s": 160.0}
    (path / "run.json").write_text(json.dumps(run))
    if history:
        curve = [{"images": k * 250, "accuracy": 0.1 + 0.1 * k, "accuracy_vote": 0.1 + 0.09 * k}
                 for k in range(1, 9)]
        (path / "history.json").write_text(json.dumps({"curve": curve}))
    return dict(w_in=w_in, labels=labels, pred=pred, pred_vote=pred_vote)


# --------------------------------------------------------------------------------------------
# receptive fields


GAP_RGB = np.array([0x3D, 0x5A, 0x80]) / 255


def _gap_lines(img, axis):
    """Centres (in PNG pixels) of the gap lines between tiles, along ``axis`` (0: rows)."""
    gap = np.all(np.abs(img[..., :3] - GAP_RGB) < 0.06, axis=2)
    other = 1 - axis
    hits = np.flatnonzero(gap.sum(axis=other) > 0.5 * img.shape[other])
    runs = np.split(hits, np.flatnonzero(np.diff(hits) > 1) + 1)
    return np.array([r.mean() for r in runs if r.size])


def _png_of_mosaic(img, n_lines, step=29):
    """Linear maps mosaic row/column → PNG row/column, fitted on the gap lines."""
    fits = []
    for axis in (0, 1):
        lines = _gap_lines(img, axis)
        assert lines.size == n_lines, f"found {lines.size} gap lines, expected {n_lines}"
        where = step * np.arange(1, n_lines + 1) - 0.5   # gap pixel centres in the mosaic
        fits.append(np.polyfit(where, lines, 1))
    return fits


def test_receptive_fields_tiles_land_where_expected(tmp_path):
    n = 16  # a 4×4 grid
    w = np.zeros((784, n), dtype=np.float32)
    # Neuron 0: square at the top left of its field; neuron 5 (grid row 1, col 1): bottom
    # right; neuron 15 (last tile): top right. Every other field is empty.
    squares = {0: (2, 2), 5: (19, 19), 15: (2, 19)}
    for k, (r, c) in squares.items():
        w[:, k] = _square_field(r, c)
    out = tmp_path / "rf.png"
    mosaic = report.receptive_fields(w, out, wmax=1.0)

    step = 29
    assert mosaic.shape == (4 * step - 1, 4 * step - 1)
    for k in range(n):
        gr, gc = divmod(k, 4)
        np.testing.assert_array_equal(
            mosaic[gr * step:gr * step + 28, gc * step:gc * step + 28],
            w[:, k].reshape(28, 28))
    assert np.isnan(mosaic[28, :]).all() and np.isnan(mosaic[:, 28]).all()

    img = _assert_png(out)
    (br, ar), (bc, ac) = _png_of_mosaic(img, 3)
    assert br == pytest.approx(bc, rel=0.02)  # square pixels
    assert br > 2                             # each weight drawn over several pixels

    def pixel(mr, mc):
        return img[int(round(ar + br * (mr + 0.5))), int(round(ac + bc * (mc + 0.5))), :3]

    for k, (r, c) in squares.items():
        gr, gc = divmod(k, 4)
        centre = pixel(gr * step + r + 3, gc * step + c + 3)
        assert centre.mean() > 0.4, (k, centre)          # bright where the weights are
        assert centre[0] > 0.8 and centre[2] < 0.3      # and a hot colour, not the gap colour
        # The same place in the tile to the right (or left) is empty, hence dark.
        other = gc + 1 if gc < 3 else gc - 1
        assert pixel(gr * step + r + 3, other * step + c + 3).mean() < 0.1
    # Inside tile 0 but away from its square.
    assert pixel(20, 20).mean() < 0.1


def test_receptive_fields_caps_large_networks(tmp_path):
    w = np.random.default_rng(0).random((784, 450)).astype(np.float32)
    mosaic = report.receptive_fields(w, tmp_path / "rf.png")
    assert mosaic.shape == (20 * 29 - 1, 20 * 29 - 1)  # first 400 in a 20×20 grid
    np.testing.assert_array_equal(mosaic[-28:, -28:], w[:, 399].reshape(28, 28))
    _assert_png(tmp_path / "rf.png")


def test_receptive_fields_non_square_count(tmp_path):
    w = np.ones((784, 7), dtype=np.float32)
    mosaic = report.receptive_fields(w, tmp_path / "rf.png")
    assert mosaic.shape == (3 * 29 - 1, 3 * 29 - 1)    # 3×3 grid, two cells empty
    assert np.isnan(mosaic[2 * 29:, 29:]).all()
    assert (mosaic[2 * 29:, :28] == 1).all()


@pytest.mark.parametrize("shape", [(100, 784), (784,), (783, 10), (784, 0)])
def test_receptive_fields_rejects_bad_shapes(tmp_path, shape):
    with pytest.raises(ValueError, match="784"):
        report.receptive_fields(np.zeros(shape), tmp_path / "rf.png")
    assert not (tmp_path / "rf.png").exists()


# --------------------------------------------------------------------------------------------
# confusion matrix


def test_confusion_matrix_counts(tmp_path):
    labels = np.repeat(np.arange(10), 10)
    pred = labels.copy()
    pred[0:3] = 7          # three 0s taken for 7
    pred[15] = 4           # one 1 taken for 4
    pred[99] = -1          # one 9 without a prediction
    m = report.confusion_matrix(labels, pred, tmp_path / "cm.png", title="test")
    expected = np.diag(np.full(10, 10))
    expected[0, 0], expected[0, 7] = 7, 3
    expected[1, 1], expected[1, 4] = 9, 1
    expected[9, 9] = 9
    np.testing.assert_array_equal(m, expected)
    assert m.dtype.kind == "i" and m.shape == (10, 10)
    assert m.sum() == 99   # the unpredicted image is in no cell
    _assert_png(tmp_path / "cm.png")


def test_confusion_matrix_colour_is_row_normalised(tmp_path):
    # Class 0: 100 images, half taken for 1; class 1: 10 images, all right; no other class.
    # Row-normalised, cells (0,0) and (0,1) are both 0.5 and (1,1) is 1.0, although (1,1)
    # holds the smallest count.
    labels = np.concatenate([np.zeros(100, int), np.ones(10, int)])
    pred = np.concatenate([np.zeros(50, int), np.ones(60, int)])
    report.confusion_matrix(labels, pred, tmp_path / "cm.png")
    img = imread(tmp_path / "cm.png")[..., :3]
    # Empty cells have the colormap's lowest colour, which fills most of the grid and
    # nothing else: rows and columns rich in it give the grid's extent.
    zero = np.all(np.abs(img - np.array(mpl.colormaps["Blues"](0.0)[:3])) < 0.01, axis=2)
    rows = np.flatnonzero(zero.sum(axis=1) > 0.2 * img.shape[1])
    cols = np.flatnonzero(zero.sum(axis=0) > 0.2 * img.shape[0])
    cell_h = (rows[-1] - rows[0] + 1) / 10
    cell_w = (cols[-1] - cols[0] + 1) / 10

    def darkness(i, j):
        # A quarter into the cell, clear of the count written at its centre.
        r = int(rows[0] + (i + 0.25) * cell_h)
        c = int(cols[0] + (j + 0.25) * cell_w)
        return 1.0 - img[r, c].mean()

    assert darkness(0, 0) == pytest.approx(darkness(0, 1), abs=0.03)
    assert darkness(1, 1) > darkness(0, 0) + 0.2
    assert darkness(0, 0) > darkness(1, 0) + 0.2   # an empty cell is the lightest


def test_confusion_matrix_rejects_mismatch(tmp_path):
    with pytest.raises(ValueError, match="length"):
        report.confusion_matrix(np.zeros(5, int), np.zeros(6, int), tmp_path / "cm.png")
    with pytest.raises(ValueError, match="0..9"):
        report.confusion_matrix(np.array([10]), np.array([1]), tmp_path / "cm.png")


# --------------------------------------------------------------------------------------------
# accuracy curve


def test_accuracy_curve_single_point_and_percent(tmp_path):
    report.accuracy_curve({"curve": [{"images": 100, "accuracy": 0.5}]}, tmp_path / "a.png")
    _assert_png(tmp_path / "a.png")
    # A curve measured on test images, with a point that has no accuracy (no images).
    history = {"on": "test", "curve": [{"images": 0, "accuracy": float("nan")},
                                       {"images": 50, "accuracy": 0.3}]}
    report.accuracy_curve(history, tmp_path / "b.png")
    _assert_png(tmp_path / "b.png")
    # Fractions and percentages are both accepted.
    np.testing.assert_allclose(report._as_percent([0.5, 0.91]), [50.0, 91.0])
    np.testing.assert_allclose(report._as_percent([50.0, 91.0]), [50.0, 91.0])


def test_accuracy_curve_rejects_bad_history(tmp_path):
    with pytest.raises(ValueError):
        report.accuracy_curve({"curve": []}, tmp_path / "a.png")
    with pytest.raises(ValueError):
        report.accuracy_curve({"curve": [{"images": 1}]}, tmp_path / "a.png")
    with pytest.raises(ValueError):
        report.accuracy_curve({"points": []}, tmp_path / "a.png")


# --------------------------------------------------------------------------------------------
# t-SNE


def test_tsne_separates_structured_activity(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 20)
    counts = _structured_counts(labels, 40, rng, silent=(5, 6))
    idx, emb = report.tsne(counts, labels, tmp_path / "t.png", seed=0)
    img = _assert_png(tmp_path / "t.png", min_side=300)
    assert img[..., :3].std() > 0.05  # not a blank picture
    np.testing.assert_array_equal(idx, np.arange(200))
    assert emb.shape == (200, 2) and np.all(np.isfinite(emb))
    # Class-specific activity must give class clusters: nearest neighbours share labels.
    d = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(labels[d.argmin(axis=1)] == labels) > 0.9
    # And each class must be drawn in its own colour: the pixels of one tab10 colour form a
    # tight cloud compared with all points (a mix-up of labels and points spreads them).
    assert max(_colour_spread(img)) < 0.25


def _colour_spread(img):
    """Mean distance of each class colour's pixels to their centroid, over that of all."""
    rgb = img[..., :3]
    frame = rgb.sum(axis=2) < 0.3
    rows = np.flatnonzero(frame.sum(axis=1) > 0.5 * rgb.shape[1])
    cols = np.flatnonzero(frame.sum(axis=0) > 0.5 * rgb.shape[0])
    inner = rgb[rows[0] + 2:rows[-1] - 1, cols[0] + 2:cols[-1] - 1]  # the axes, no legend
    clouds = []
    for d in range(10):
        colour = 0.8 * np.array(mpl.colormaps["tab10"](d)[:3]) + 0.2   # alpha 0.8 on white
        clouds.append(np.argwhere(np.all(np.abs(inner - colour) < 0.04, axis=2)).astype(float))
    assert all(len(c) for c in clouds), "a class colour is missing from the picture"

    def spread(p):
        return np.sqrt(((p - p.mean(axis=0)) ** 2).sum(axis=1)).mean()

    whole = spread(np.concatenate(clouds))
    return [spread(c) / whole for c in clouds]


def test_activity_is_normalised_per_image():
    counts = np.array([[1, 3, 0], [5, 15, 0], [0, 0, 0], [0, 0, 7]], dtype=np.uint16)
    x = report._activity(counts)
    np.testing.assert_allclose(x[0], [0.25, 0.75, 0.0])
    np.testing.assert_allclose(x[1], x[0])          # same pattern, five times the spikes
    np.testing.assert_array_equal(x[2], 0.0)         # silent image kept, as zeros
    np.testing.assert_allclose(x[3], [0.0, 0.0, 1.0])


def test_tsne_subsample_is_deterministic(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 250)
    counts = _structured_counts(labels, 20, rng)
    i1, e1 = report.tsne(counts, labels, tmp_path / "a.png", max_points=60, seed=4)
    i2, e2 = report.tsne(counts, labels, tmp_path / "b.png", max_points=60, seed=4)
    assert i1.size == 60 and np.unique(i1).size == 60 and np.all(np.diff(i1) > 0)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(e1, e2)


def test_tsne_silent_network(tmp_path):
    # No spikes at all: nothing to embed meaningfully, but the figure must still be drawn.
    labels = np.arange(20) % 10
    idx, emb = report.tsne(np.zeros((20, 8)), labels, tmp_path / "t.png")
    assert np.all(np.isfinite(emb))
    _assert_png(tmp_path / "t.png")


def test_tsne_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        report.tsne(np.zeros((10, 5)), np.zeros(9, int), tmp_path / "t.png")
    with pytest.raises(ValueError):
        report.tsne(-np.ones((10, 5)), np.zeros(10, int), tmp_path / "t.png")


# --------------------------------------------------------------------------------------------
# make_report


FIGURES = ["receptive_fields.png", "confusion.png", "confusion_vote.png",
           "accuracy_curve.png", "tsne.png"]


def test_make_report_full_run(tmp_path):
    run = tmp_path / "run"
    data = make_run(run)
    written = report.make_report(run)
    assert [p.name for p in written] == FIGURES + ["report.md"]
    for p in written[:-1]:
        assert p.parent == run
        _assert_png(p)
    md = (run / "report.md").read_text()
    for f in FIGURES:
        assert f"]({f})" in md
    acc = 100 * np.mean(data["pred"] == data["labels"])
    vote = 100 * np.mean(data["pred_vote"] == data["labels"])
    assert f"{acc:.2f} %" in md and f"{vote:.2f} %" in md
    assert "Not drawn" not in md
    assert str(tmp_path) not in md   # no machine paths in the report


def test_make_report_out_dir_and_optional_files(tmp_path):
    run, out = tmp_path / "run", tmp_path / "figs" / "here"
    make_run(run, history=False, counts=False, dataset="fashion-mnist")
    written = report.make_report(run, out)
    names = [p.name for p in written]
    assert names == ["receptive_fields.png", "confusion.png", "confusion_vote.png", "report.md"]
    assert all(p.parent == out for p in written)
    assert not (run / "report.md").exists()
    md = (out / "report.md").read_text()
    assert "history.json" in md and "counts" in md   # skipped figures are explained


def test_make_report_empty_history(tmp_path):
    run = tmp_path / "run"
    make_run(run, counts=False)
    (run / "history.json").write_text(json.dumps({"curve": []}))
    names = [p.name for p in report.make_report(run)]
    assert "accuracy_curve.png" not in names
    assert "no points" in (run / "report.md").read_text()


def _expect_error(run, *words):
    with pytest.raises(ReportError) as e:
        report.make_report(run)
    msg = str(e.value)
    for w in words:
        assert w in msg, msg
    return msg


def test_make_report_missing_folder(tmp_path):
    _expect_error(tmp_path / "nowhere", "nowhere", "symspike train --out")


def test_make_report_error_leaves_out_dir_alone(tmp_path):
    run, out = tmp_path / "run", tmp_path / "out"
    make_run(run)
    (run / "eval.npz").unlink()
    with pytest.raises(ReportError, match="eval.npz"):
        report.make_report(run, out)
    assert not out.exists()


@pytest.mark.parametrize("name", ["run.json", "weights.npz", "eval.npz"])
def test_make_report_missing_required_file(tmp_path, name):
    run = tmp_path / "run"
    make_run(run)
    (run / name).unlink()
    _expect_error(run, name, "symspike train --out")
    assert not (run / "report.md").exists()


def test_make_report_garbage_weights(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    (run / "weights.npz").write_bytes(b"this is not a zip archive")
    _expect_error(run, "weights.npz", "not a NumPy .npz archive", "symspike train --out")
    assert not (run / "receptive_fields.png").exists()


@pytest.mark.parametrize("arrays, words", [
    (dict(w_in=np.zeros((20, 784), np.float32)), ["weights.npz", "(784, N)"]),
    (dict(w_ec=np.zeros((20, 10), np.float32)), ["weights.npz", "w_in"]),
    (dict(w_in=np.full((784, 20), np.nan, np.float32)), ["weights.npz", "NaN"]),
    (dict(w_in=np.zeros((784, 30), np.float32)), ["weights.npz", "n_exc = 20"]),
])
def test_make_report_malformed_weights(tmp_path, arrays, words):
    run = tmp_path / "run"
    make_run(run)
    np.savez(run / "weights.npz", **arrays)
    _expect_error(run, *words)


def test_make_report_pickled_weights_are_refused(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    np.savez(run / "weights.npz", w_in=np.array([{"a": 1}], dtype=object))
    _expect_error(run, "weights.npz", "object arrays")


def test_make_report_truncated_weights(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    data = (run / "weights.npz").read_bytes()
    (run / "weights.npz").write_bytes(data[: len(data) // 2])
    _expect_error(run, "weights.npz", "symspike train --out")


def test_make_report_malformed_eval_and_json(tmp_path):
    run = tmp_path / "run"
    data = make_run(run)
    np.savez(run / "eval.npz", labels=data["labels"], pred=data["pred"][:-1])
    _expect_error(run, "eval.npz", "pred")

    make_run(run)
    (run / "run.json").write_text("{not json")
    _expect_error(run, "run.json", "JSON")

    make_run(run)
    (run / "history.json").write_text(json.dumps({"curve": [{"images": "many"}]}))
    _expect_error(run, "history.json")

    make_run(run)
    (run / "run.json").write_text(json.dumps({"config": {"n_exc": 20}, "accuracy": "high"}))
    _expect_error(run, "run.json", "accuracy")


# --------------------------------------------------------------------------------------------
# command line


def _parse(argv):
    parser = argparse.ArgumentParser(prog="symspike report")
    report.add_arguments(parser)
    return parser.parse_args(argv)


def test_main_prints_paths(tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "out"
    make_run(run, counts=False)
    assert report.main(_parse([str(run), "--out", str(out)])) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / f) for f in
                       ["receptive_fields.png", "confusion.png", "confusion_vote.png",
                        "accuracy_curve.png", "report.md"]]


def test_main_reports_errors(tmp_path, capsys):
    assert report.main(_parse([str(tmp_path / "missing")])) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert "symspike train --out" in cap.err and "Traceback" not in cap.err
