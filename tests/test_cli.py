"""The command line: figures in the promised format, clear errors for bad input."""

import json

import pytest

from symspike.host.cli import main


@pytest.fixture
def embedded(monkeypatch):
    monkeypatch.delenv("SYMSPIKE_DATA", raising=False)


def test_bench_accuracy_last_line_and_json(tmp_path, capsys, embedded):
    path = tmp_path / "acc.json"
    assert main(["bench", "accuracy", "--neurons", "20", "--train", "60", "--test", "40",
                 "--quiet", "--json", str(path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    fields = dict(part.split("=") for part in last.split())
    assert set(fields) == {"accuracy", "images_per_s"}
    assert 0.0 <= float(fields["accuracy"]) <= 1.0 and float(fields["images_per_s"]) > 0
    data = json.loads(path.read_text())
    assert data["accuracy"] == pytest.approx(float(fields["accuracy"]), abs=1e-4)
    assert data["config"]["n_exc"] == 20 and data["train_images"] == 60


def test_train_resume_and_report(tmp_path, capsys, embedded):
    out = tmp_path / "run"
    assert main(["train", "--neurons", "20", "--train", "50", "--test", "30", "--quiet",
                 "--checkpoint-every", "20", "--out", str(out)]) == 0
    for name in ("run.json", "weights.npz", "eval.npz", "checkpoint.npz", "experiment.json"):
        assert (out / name).is_file(), name
    # A finished run resumes to the same result without training again.
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert main(["report", str(out)]) == 0
    assert (out / "receptive_fields.png").is_file() and (out / "confusion.png").is_file()


def test_infer_on_a_run(tmp_path, capsys, embedded):
    out = tmp_path / "run"
    main(["train", "--neurons", "20", "--train", "40", "--test", "0", "--quiet",
          "--out", str(out)])
    capsys.readouterr()
    assert main(["infer", str(out), "--test", "30", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("accuracy=")


@pytest.mark.parametrize("argv, text", [
    (["train", "--data", "/nonexistent/folder", "--train", "10", "--quiet"], "nonexistent"),
    (["train", "--resume", "/nonexistent/run", "--quiet"], "no checkpoint.npz"),
    (["infer", "/nonexistent/run"], "no checkpoint"),
    (["train", "--weight-bits", "40", "--train", "10", "--quiet"], "weight_bits"),
    (["bench", "precision", "--variants", "w99"], "unknown variants"),
])
def test_bad_input_is_one_clear_line(argv, text, capsys, embedded):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err


def test_precision_variant_list(capsys):
    assert main(["bench", "precision", "--list"]) == 0
    out = capsys.readouterr().out
    assert "w8-nosr" in out and "float" in out


def test_bench_precision_small(tmp_path, capsys, embedded):
    js, md = tmp_path / "p.json", tmp_path / "p.md"
    assert main(["bench", "precision", "--variants", "float,w8,w8-nosr", "--neurons", "10",
                 "--train", "30", "--test", "20", "--jobs", "1", "--json", str(js),
                 "--markdown", str(md)]) == 0
    data = json.loads(js.read_text())
    assert [r["variant"] for r in data["rows"]] == ["float", "w8", "w8-nosr"]
    assert data["rows"][0]["delta_vs_float"] == 0.0
    assert all(0 <= r["accuracy"] <= 1 for r in data["rows"])
    assert "| w8-nosr |" in md.read_text()


def test_bench_speed_small(tmp_path, capsys, embedded):
    js = tmp_path / "s.json"
    assert main(["bench", "speed", "--neurons", "20", "--models", "golden", "--images", "5",
                 "--repeats", "3", "--json", str(js)]) == 0
    rows = json.loads(js.read_text())["rows"]
    assert rows[0]["model"] == "golden" and len(rows[0]["images_per_s_all"]) == 3
    assert rows[0]["images_per_s_median"] > 0
    assert "images/s (median" in capsys.readouterr().out
