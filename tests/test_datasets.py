"""IDX dataset loader: real files, embedded subset, data-folder precedence, damaged files."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from symspike.host import datasets
from symspike.host.datasets import (
    DatasetError,
    describe_source,
    load,
    normalize_mean,
    read_idx,
    resolve_data_dir,
)

EMBEDDED = datasets.EMBEDDED_DIR / "mnist"
STEMS = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

REAL_DIR = os.environ.get("SYMSPIKE_DATA", "")
needs_real = pytest.mark.skipif(
    not REAL_DIR,
    reason="SYMSPIKE_DATA is not set: no full MNIST/Fashion-MNIST files to test against "
           "(make test sets it to ../shared/datasets when that folder exists)")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("SYMSPIKE_DATA", raising=False)


@pytest.fixture
def good_dir(tmp_path, no_env) -> Path:
    """A data folder holding an intact copy of the embedded MNIST subset."""
    root = tmp_path / "data"
    shutil.copytree(EMBEDDED, root / "mnist")
    return root


def raw_bytes(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def write_gz(path: Path, data: bytes, level: int = 9) -> None:
    path.write_bytes(gzip.compress(data, compresslevel=level, mtime=0))


# --------------------------------------------------------------------------------------------
# Embedded subset


def test_embedded_train_subset(no_env):
    images, labels = load("mnist", "train")
    assert images.shape == (2000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (2000,) and labels.dtype == np.uint8
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(labels, minlength=10).tolist() == [
        191, 220, 198, 191, 214, 180, 200, 224, 172, 210]
    assert sha256(images[0].tobytes()) == (
        "23ceaef5eb61f0e70d64ac18fdf0f60df3d5971cf30bbadac7b6ebf07f782d2c")
    assert int(images[0].sum()) == 27525


def test_embedded_test_subset(no_env):
    images, labels = load("mnist", "test")
    assert images.shape == (1000, 28, 28) and labels.shape == (1000,)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels, minlength=10).tolist() == [
        85, 126, 116, 107, 110, 87, 87, 99, 89, 94]
    assert sha256(images[0].tobytes()) == (
        "8f6a418c9a639f9e14e96feca47a97df2a35a0a68ae2875431c5c80e05536941")


def test_embedded_files_match_readme():
    """The checksums documented beside the subset are those of the files shipped."""
    readme = (EMBEDDED / "README.md").read_text()
    rows = re.findall(r"`([a-z0-9-]+\.gz)` \| `([0-9a-f]{64})` \| `([0-9a-f]{64})`", readme)
    assert len(rows) == 4
    for name, sha_gz, sha_raw in rows:
        data = (EMBEDDED / name).read_bytes()
        assert sha256(data) == sha_gz, name
        assert sha256(gzip.decompress(data)) == sha_raw, name
    assert "LeCun" in readme and "Cortes" in readme and "Burges" in readme
    assert "CC BY-SA 3.0" in readme


def test_embedded_is_small():
    size = sum(p.stat().st_size for p in EMBEDDED.iterdir())
    assert size < 3 * 2**20


def test_limit_and_writable(no_env):
    images, labels = load("mnist", "train", limit=7)
    full_images, full_labels = load("mnist", "train")
    assert images.shape == (7, 28, 28) and labels.shape == (7,)
    np.testing.assert_array_equal(images, full_images[:7])
    np.testing.assert_array_equal(labels, full_labels[:7])
    images[0, 0, 0] = 1  # arrays are the caller's own
    assert load("mnist", "test", limit=0)[0].shape == (0, 28, 28)
    assert load("mnist", "test", limit=5000)[0].shape == (1000, 28, 28)
    with pytest.raises(ValueError):
        load("mnist", "test", limit=-1)


def test_fashion_without_data_dir_explains(no_env):
    with pytest.raises(DatasetError, match="SYMSPIKE_DATA") as exc:
        load("fashion-mnist", "train")
    assert "fashion-mnist/" in str(exc.value) and "--data" in str(exc.value)


def test_unknown_names(no_env):
    with pytest.raises(DatasetError, match="unknown dataset"):
        load("cifar10", "train")
    with pytest.raises(DatasetError, match="unknown split"):
        load("mnist", "validation")


def test_no_network_used(no_env, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the dataset loader tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    load("mnist", "test")
    with pytest.raises(DatasetError):
        load("fashion-mnist", "test")


# --------------------------------------------------------------------------------------------
# Where the data comes from


def test_resolve_default_is_embedded(no_env):
    assert resolve_data_dir() is None
    assert "embedded" in describe_source("mnist")
    assert "unavailable" in describe_source("fashion-mnist")


def test_resolve_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMSPIKE_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path.resolve()


def test_argument_beats_environment(tmp_path, monkeypatch):
    arg, env = tmp_path / "arg", tmp_path / "env"
    arg.mkdir()
    env.mkdir()
    monkeypatch.setenv("SYMSPIKE_DATA", str(env))
    assert resolve_data_dir(arg) == arg.resolve()
    assert resolve_data_dir(str(arg)) == arg.resolve()
    # Even a broken environment does not matter when an argument is given.
    monkeypatch.setenv("SYMSPIKE_DATA", str(tmp_path / "missing"))
    assert resolve_data_dir(arg) == arg.resolve()


def test_load_argument_beats_environment(good_dir, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    shutil.copytree(good_dir, bad)
    (bad / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("SYMSPIKE_DATA", str(bad))
    images, _ = load("mnist", "test", data_dir=good_dir)
    assert images.shape == (1000, 28, 28)
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte"):
        load("mnist", "test")
    monkeypatch.setenv("SYMSPIKE_DATA", str(good_dir))
    assert load("mnist", "test")[0].shape == (1000, 28, 28)
    assert str(good_dir / "mnist") in describe_source("mnist")


def test_missing_explicit_dir_is_an_error(tmp_path, no_env):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="does not exist") as exc:
        resolve_data_dir(missing)
    assert str(missing) in str(exc.value)
    with pytest.raises(DatasetError, match="does not exist"):
        load("mnist", "train", data_dir=missing)


def test_missing_env_dir_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMSPIKE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="SYMSPIKE_DATA"):
        load("mnist", "train")


def test_missing_dataset_folder(good_dir):
    with pytest.raises(DatasetError) as exc:
        load("fashion-mnist", "test", data_dir=good_dir)
    assert str(good_dir / "fashion-mnist") in str(exc.value)


# --------------------------------------------------------------------------------------------
# Damaged copies


def damage_missing(folder: Path) -> Path:
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.unlink()
    return path


def damage_truncated_gz(folder: Path) -> Path:
    path = folder / "t10k-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def damage_corrupt_gz(folder: Path) -> Path:
    path = folder / "t10k-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))
    return path


def damage_truncated_raw(folder: Path) -> Path:
    gz = folder / "t10k-images-idx3-ubyte.gz"
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(raw_bytes(gz)[:-100])
    gz.unlink()
    return path


def damage_wrong_magic(folder: Path) -> Path:
    path = folder / "t10k-images-idx3-ubyte.gz"
    data = bytearray(raw_bytes(path))
    data[0:4] = struct.pack(">I", 0x00000903)  # int8 instead of unsigned byte
    write_gz(path, bytes(data))
    return path


def damage_flipped_byte(folder: Path) -> Path:
    path = folder / "t10k-images-idx3-ubyte.gz"
    data = bytearray(raw_bytes(path))
    data[16 + 784 * 3 + 400] ^= 0x01  # one pixel of image 3
    write_gz(path, bytes(data))
    return path


def damage_label_count(folder: Path) -> Path:
    path = folder / "t10k-labels-idx1-ubyte.gz"
    data = raw_bytes(path)
    n = struct.unpack(">I", data[4:8])[0]
    write_gz(path, data[:4] + struct.pack(">I", n - 1) + data[8:-1])
    return path


DAMAGES = {
    "missing file": (damage_missing, "not found"),
    "truncated gz": (damage_truncated_gz, "truncated gzip"),
    "corrupt gz": (damage_corrupt_gz, "gzip"),
    "truncated raw": (damage_truncated_raw, "truncated"),
    "wrong magic": (damage_wrong_magic, "magic number 0x00000903"),
    "flipped byte": (damage_flipped_byte, "checksum mismatch"),
    "label count": (damage_label_count, "999 labels"),
}


@pytest.mark.parametrize("name", list(DAMAGES))
def test_damaged_copy_raises_naming_the_file(good_dir, name):
    damage, pattern = DAMAGES[name]
    path = damage(good_dir / "mnist")
    with pytest.raises(DatasetError, match=pattern) as exc:
        load("mnist", "test", data_dir=good_dir)
    message = str(exc.value)
    assert str(path) in message
    assert "\n" not in message and "Traceback" not in message
    # The training split of the same folder is untouched and still loads.
    assert load("mnist", "train", data_dir=good_dir)[0].shape == (2000, 28, 28)


@pytest.mark.parametrize("name", [n for n in DAMAGES if n != "flipped byte"])
def test_structural_damage_found_without_checksums(good_dir, name):
    damage, pattern = DAMAGES[name]
    path = damage(good_dir / "mnist")
    with pytest.raises(DatasetError, match=pattern) as exc:
        load("mnist", "test", data_dir=good_dir, verify=False)
    assert str(path) in str(exc.value)


def test_flipped_byte_only_caught_by_checksum(good_dir):
    path = damage_flipped_byte(good_dir / "mnist")
    images, _ = load("mnist", "test", data_dir=good_dir, verify=False)
    assert images.shape == (1000, 28, 28)
    assert images[3].ravel()[400] != read_idx(EMBEDDED / path.name)[3].ravel()[400]


@pytest.mark.parametrize("name", ["truncated gz", "corrupt gz", "truncated raw", "wrong magic"])
def test_read_idx_damaged(good_dir, name):
    damage, pattern = DAMAGES[name]
    path = damage(good_dir / "mnist")
    with pytest.raises(DatasetError, match=pattern) as exc:
        read_idx(path)
    assert str(path) in str(exc.value)


def test_read_idx_missing(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with pytest.raises(DatasetError, match="not found") as exc:
        read_idx(path)
    assert str(path) in str(exc.value)


def test_read_idx_trailing_bytes_and_dimension_count(tmp_path):
    path = tmp_path / "x-labels-idx1-ubyte"
    path.write_bytes(struct.pack(">II", 0x801, 3) + bytes([1, 2, 3, 4]))
    with pytest.raises(DatasetError, match="trailing bytes"):
        read_idx(path)
    path.write_bytes(struct.pack(">II", 0x801, 3) + bytes([1, 2, 3]))
    assert read_idx(path).tolist() == [1, 2, 3]
    wrong = tmp_path / "x-images-idx3-ubyte"
    wrong.write_bytes(struct.pack(">II", 0x801, 3) + bytes([1, 2, 3]))
    with pytest.raises(DatasetError, match="idx3") as exc:
        read_idx(wrong)
    assert str(wrong) in str(exc.value)
    short = tmp_path / "y-images-idx3-ubyte"
    short.write_bytes(struct.pack(">II", 0x803, 3))
    with pytest.raises(DatasetError, match="truncated IDX header"):
        read_idx(short)


def test_read_idx_images(no_env):
    images = read_idx(EMBEDDED / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (1000, 28, 28) and images.dtype == np.uint8


def test_label_out_of_range(good_dir):
    path = good_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(raw_bytes(path))
    data[8 + 5] = 10
    write_gz(path, bytes(data))
    with pytest.raises(DatasetError, match="label 10 at index 5") as exc:
        load("mnist", "test", data_dir=good_dir, verify=False)
    assert str(path) in str(exc.value)


def test_wrong_count_without_checksums(good_dir):
    # A consistent pair whose size is neither the official nor the embedded one.
    for kind in ("images", "labels"):
        path = good_dir / "mnist" / f"t10k-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
        data = raw_bytes(path)
        item = 784 if kind == "images" else 1
        header = 16 if kind == "images" else 8
        write_gz(path, data[:4] + struct.pack(">I", 500) + data[8:header]
                 + data[header:header + 500 * item])
    expected = r"holds 500 images, expected 10000 \(official\) or 1000"
    with pytest.raises(DatasetError, match=expected):
        load("mnist", "test", data_dir=good_dir, verify=False)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load("mnist", "test", data_dir=good_dir)


def test_raw_and_recompressed_copies_verify(good_dir):
    folder = good_dir / "mnist"
    reference = load("mnist", "test", data_dir=good_dir)
    # Decompressed images, labels recompressed at another level (different .gz bytes).
    images_gz = folder / "t10k-images-idx3-ubyte.gz"
    (folder / "t10k-images-idx3-ubyte").write_bytes(raw_bytes(images_gz))
    images_gz.unlink()
    labels_gz = folder / "t10k-labels-idx1-ubyte.gz"
    write_gz(labels_gz, raw_bytes(labels_gz), level=1)
    got = load("mnist", "test", data_dir=good_dir)
    np.testing.assert_array_equal(got[0], reference[0])
    np.testing.assert_array_equal(got[1], reference[1])


def test_decompressed_file_keeping_gz_name(good_dir):
    path = good_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(raw_bytes(path))
    assert load("mnist", "test", data_dir=good_dir)[1].shape == (1000,)


def test_checksum_cache_does_not_hide_changes(good_dir):
    path = good_dir / "mnist" / "t10k-images-idx3-ubyte.gz"
    load("mnist", "test", data_dir=good_dir)
    before = path.stat()
    damage_flipped_byte(good_dir / "mnist")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load("mnist", "test", data_dir=good_dir)


# --------------------------------------------------------------------------------------------
# Full datasets (SYMSPIKE_DATA)


@needs_real
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_real_files(dataset):
    first_label = {"mnist": 5, "fashion-mnist": 9}[dataset]
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = load(dataset, split)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.uint8
        assert set(np.unique(labels).tolist()) == set(range(10))
        if split == "train":
            assert labels[0] == first_label
    assert str(Path(REAL_DIR).resolve() / dataset) in describe_source(dataset)


@needs_real
def test_embedded_subset_is_prefix_of_real_mnist(monkeypatch):
    for split, n in (("train", 2000), ("test", 1000)):
        real = load("mnist", split, limit=n)
        monkeypatch.delenv("SYMSPIKE_DATA")
        embedded = load("mnist", split)
        monkeypatch.setenv("SYMSPIKE_DATA", REAL_DIR)
        np.testing.assert_array_equal(real[0], embedded[0])
        np.testing.assert_array_equal(real[1], embedded[1])


@needs_real
def test_real_raw_copy_verifies(tmp_path):
    src = Path(REAL_DIR) / "fashion-mnist"
    dst = tmp_path / "fashion-mnist"
    dst.mkdir()
    for stem in (STEMS["test", "images"], STEMS["test", "labels"]):
        gz = src / f"{stem}.gz"
        if gz.exists():
            (dst / stem).write_bytes(gzip.decompress(gz.read_bytes()))
        else:
            shutil.copy(src / stem, dst / stem)
    images, labels = load("fashion-mnist", "test", data_dir=tmp_path)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)


# --------------------------------------------------------------------------------------------
# Preprocessing


def test_normalize_mean_exact():
    images = np.array([[[0, 10], [20, 30]], [[2, 6], [2, 6]], [[0, 0], [0, 0]]], np.uint8)
    out = normalize_mean(images, 30)
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert out[0].tolist() == [[0, 20], [40, 60]]
    # mean 4 -> 1: 0.5 and 1.5 round half away from zero
    assert normalize_mean(images[1:2], 1)[0].tolist() == [[1, 2], [1, 2]]
    assert out[2].tolist() == [[0, 0], [0, 0]]  # black stays black


def test_normalize_mean_clips():
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 0, :2] = [255, 1]
    out = normalize_mean(image, 100)
    assert out[0, 0, 0] == 255 and out[0, 0, 1] == 255
    assert out[0, 1:].max() == 0


def test_normalize_mean_on_digits(no_env):
    images, _ = load("mnist", "test", limit=200)
    out = normalize_mean(images, 30)
    means = out.reshape(len(out), -1).mean(axis=1)
    flat_in = images.reshape(len(images), -1).astype(np.float64)
    clipped = flat_in.max(axis=1) * 30 / flat_in.mean(axis=1) > 255
    assert 0 < clipped.sum() < len(images)  # both cases occur in MNIST
    assert np.all(np.abs(means[~clipped] - 30) < 0.5)
    assert np.all(means[clipped] < 30)
    # Scaling down never clips, so every mean is the target up to rounding.
    down = normalize_mean(np.clip(images.astype(np.int64) * 3, 0, 255).astype(np.uint8), 10)
    assert np.all(np.abs(down.reshape(len(down), -1).mean(axis=1) - 10) < 0.5)
    assert not np.shares_memory(out, images)
    flat = normalize_mean(images.reshape(len(images), -1), 30)
    np.testing.assert_array_equal(flat.reshape(out.shape), out)
    np.testing.assert_array_equal(normalize_mean(images[0].ravel(), 30), out[0].ravel())
    with pytest.raises(ValueError):
        normalize_mean(images, 300)
