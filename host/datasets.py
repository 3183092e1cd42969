"""MNIST and Fashion-MNIST from IDX files, checked before use.

Where the data comes from, in order:

1. the ``data_dir`` argument (the CLI's ``--data DIR``);
2. the ``SYMSPIKE_DATA`` environment variable;
3. otherwise the MNIST subset embedded in the package (``host/data/mnist/``: the first 2000
   training and first 1000 test images). Fashion-MNIST is not embedded.

A data folder holds one sub-folder per dataset, each with the four files of the official
release, gzip-compressed or not::

    DIR/mnist/train-images-idx3-ubyte.gz   DIR/fashion-mnist/train-images-idx3-ubyte.gz
    DIR/mnist/train-labels-idx1-ubyte.gz   DIR/fashion-mnist/train-labels-idx1-ubyte.gz
    DIR/mnist/t10k-images-idx3-ubyte.gz    DIR/fashion-mnist/t10k-images-idx3-ubyte.gz
    DIR/mnist/t10k-labels-idx1-ubyte.gz    DIR/fashion-mnist/t10k-labels-idx1-ubyte.gz

Every file is checked: IDX magic number and dimensions, payload length (truncated files),
gzip integrity, image size, label range, matching image and label counts and, unless
``verify=False``, its SHA-256 against the official files (compressed or decompressed) or the
embedded subset. Anything wrong raises :class:`DatasetError` with one message that names the
file, says what is wrong and how to fix it. Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "SPLITS",
    "ENV_VAR",
    "EMBEDDED_DIR",
    "FULL_COUNTS",
    "EMBEDDED_COUNTS",
    "DatasetError",
    "read_idx",
    "resolve_data_dir",
    "load",
    "normalize_mean",
    "describe_source",
]

#: Dataset names accepted by :func:`load`; also the sub-folder names in a data folder.
DATASETS = ("mnist", "fashion-mnist")
#: Splits accepted by :func:`load`.
SPLITS = ("train", "test")
#: Environment variable naming the data folder.
ENV_VAR = "SYMSPIKE_DATA"
#: Folder of the embedded data (it holds ``mnist/``).
EMBEDDED_DIR = Path(__file__).resolve().parent / "data"
#: Number of images in the official files.
FULL_COUNTS = {"train": 60000, "test": 10000}
#: Number of images in the embedded MNIST subset.
EMBEDDED_COUNTS = {"train": 2000, "test": 1000}

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

_PREFIX = {"train": "train", "test": "t10k"}
_TITLE = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
_HINT = f"pass --data DIR or set {ENV_VAR} to a folder holding mnist/ and fashion-mnist/"
_REDOWNLOAD = "delete it and copy or download the official file again"
_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}
_GZIP_MAGIC = b"\x1f\x8b"


class DatasetError(Exception):
    """A dataset file is missing, damaged or not the expected one (the message says which)."""


@dataclass(frozen=True)
class _Known:
    """One known good version of a file: SHA-256 of the .gz and of the decompressed bytes."""

    origin: str  # "official" or "embedded subset"
    sha256_gz: str
    sha256_raw: str
    count: int


# (dataset, file name without .gz) -> known good versions of that file.
_KNOWN: dict[tuple[str, str], tuple[_Known, ...]] = {
    ("mnist", "train-images-idx3-ubyte"): (
        _Known("official",
               "b09d8b89df4ad239afc76a323dbe9559169cd8cca365467dfe8aa1f7ca54109b",
               "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 60000),
        _Known("embedded subset",
               "d747f627e508234c9c7e49073a627f4195b719626ac15a67258d16f8371b9dd7",
               "729d340c0177402770b27c04f817dfb40ed8844459b35a9f11ae21067b05cf19", 2000),
    ),
    ("mnist", "train-labels-idx1-ubyte"): (
        _Known("official",
               "c51906e7929bbf7c824fbd16019b56297269ca82cba449c5b5d59c0a02147fed",
               "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60000),
        _Known("embedded subset",
               "4857b7883e0731d51eb3acbd00b844f68d431ded9207b94c2bb8122152f83738",
               "90795ea2219655a7281c0d6756d0ae8a33bebac7ec84bac89bbdcc5e3baa9f8c", 2000),
    ),
    ("mnist", "t10k-images-idx3-ubyte"): (
        _Known("official",
               "f72c2dff3457595ec2fe452d25d97b7f974a74ad5b006687704212bedd1486d8",
               "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 10000),
        _Known("embedded subset",
               "c38842f3fc122aeb56961328eacf41c4315fb33e95ce0e9d0c97f3bd3d5b62c6",
               "de7c252b04f05e1f8309634180ccdf286dc6dbac8c579b74e76e02ae0331ca52", 1000),
    ),
    ("mnist", "t10k-labels-idx1-ubyte"): (
        _Known("official",
               "4baf84ddd60ae342cfdd282ec3fba3249a201a4459782165496a7cbebbe49a2e",
               "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10000),
        _Known("embedded subset",
               "689b4d1da0ae1049125d2f91e157009a132a2a1e76b45a178dc0b359e1f74255",
               "832c0d20f0dc42e575488c75a83a970787d4c8d4d05831b2ef03701b4a478a90", 1000),
    ),
    ("fashion-mnist", "train-images-idx3-ubyte"): (
        _Known("official",
               "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
               "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 60000),
    ),
    ("fashion-mnist", "train-labels-idx1-ubyte"): (
        _Known("official",
               "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
               "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60000),
    ),
    ("fashion-mnist", "t10k-images-idx3-ubyte"): (
        _Known("official",
               "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
               "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 10000),
    ),
    ("fashion-mnist", "t10k-labels-idx1-ubyte"): (
        _Known("official",
               "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
               "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10000),
    ),
}

# (absolute path, mtime in ns, size) -> the known version the file was verified to be.
_VERIFIED: dict[tuple[str, int, int], _Known] = {}


# --------------------------------------------------------------------------------------------
# IDX files


def _read_bytes(path: Path) -> tuple[bytes, bytes]:
    """Return (file bytes, decompressed IDX bytes) of ``path``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found; {_HINT}") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a folder, not an IDX file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not data.startswith(_GZIP_MAGIC):
        # Plain IDX, also when named .gz (some browsers decompress downloads but keep the name).
        return data, data
    try:
        payload = gzip.decompress(data)
    except EOFError:
        raise DatasetError(
            f"{path}: truncated gzip file (the compressed stream ends early, {len(data)} bytes); "
            f"{_REDOWNLOAD}") from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetError(
            f"{path}: corrupt gzip file ({exc}); {_REDOWNLOAD}") from None
    return data, payload


def _parse_idx(path: Path, data: bytes) -> np.ndarray:
    """Parse decompressed IDX bytes read from ``path``."""
    if len(data) < 4:
        raise DatasetError(
            f"{path}: {len(data)} bytes, too short for an IDX header; {_REDOWNLOAD}")
    zero, dtype, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or dtype != 0x08 or ndim not in _IDX_MAGIC:
        magic = struct.unpack(">I", data[:4])[0]
        note = " (named .gz but not gzip data either)" if path.name.endswith(".gz") else ""
        raise DatasetError(
            f"{path}: not an IDX file of unsigned bytes{note}: magic number 0x{magic:08x}, "
            f"expected 0x{_IDX_MAGIC[1]:08x} (labels) or 0x{_IDX_MAGIC[3]:08x} (images); "
            f"{_REDOWNLOAD}")
    for n in _IDX_MAGIC:
        if f"idx{n}" in path.name and ndim != n:
            raise DatasetError(
                f"{path}: IDX header declares {ndim} dimension(s) but the file name says "
                f"idx{n}; the file is not what its name says, {_REDOWNLOAD}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(
            f"{path}: truncated IDX header ({len(data)} of {header} bytes); {_REDOWNLOAD}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        shape = "x".join(str(d) for d in dims)
        raise DatasetError(
            f"{path}: {what}: the header declares {shape} = {expected} data bytes but the "
            f"file holds {got}; {_REDOWNLOAD}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file of unsigned bytes (``*-idx1-ubyte`` or ``*-idx3-ubyte``, raw or .gz).

    Returns a writable ``uint8`` array with the dimensions of the header. Raises
    :class:`DatasetError` for a missing file, corrupt or truncated gzip data, a wrong magic
    number or dimension count, or a payload whose length does not match the header.
    """
    path = Path(path)
    _, payload = _read_bytes(path)
    return _parse_idx(path, payload)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _identify(path: Path, dataset: str, stem: str, data: bytes, payload: bytes) -> _Known:
    """Check the SHA-256 of a file against its known good versions (cached)."""
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key is not None and key in _VERIFIED:
        return _VERIFIED[key]
    known = _KNOWN.get((dataset, stem), ())
    digest = _sha256(data)
    match = next((k for k in known if digest in (k.sha256_gz, k.sha256_raw)), None)
    if match is None and payload is not data:
        # A gzip file compressed differently from the official one: check its content.
        digest_raw = _sha256(payload)
        match = next((k for k in known if digest_raw == k.sha256_raw), None)
    if match is None:
        raise DatasetError(
            f"{path}: checksum mismatch: SHA-256 {digest} is not that of the official "
            f"{_TITLE[dataset]} file {stem}[.gz] (damaged, incomplete or a different file); "
            f"{_REDOWNLOAD} (verify=False skips this check)")
    if key is not None:
        _VERIFIED[key] = match
    return match


# --------------------------------------------------------------------------------------------
# Locating data


def _check_dataset(dataset: str) -> str:
    name = str(dataset).strip().lower().replace("_", "-")
    if name not in DATASETS:
        raise DatasetError(
            f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return name


def _check_split(split: str) -> str:
    name = str(split).strip().lower()
    name = "test" if name == "t10k" else name
    if name not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return name


def _resolve(data_dir: str | os.PathLike | None) -> tuple[Path | None, str]:
    """Like :func:`resolve_data_dir`, also saying where the folder came from."""
    if data_dir is not None and str(data_dir) != "":
        path, source = Path(data_dir).expanduser(), "--data/data_dir"
    else:
        env = os.environ.get(ENV_VAR, "")
        if env == "":
            return None, "embedded"
        path, source = Path(env).expanduser(), ENV_VAR
    if not path.exists():
        raise DatasetError(f"data folder {path} (from {source}) does not exist; {_HINT}")
    if not path.is_dir():
        raise DatasetError(f"data folder {path} (from {source}) is not a folder; {_HINT}")
    return path.resolve(), source


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The data folder to use: ``data_dir`` if given, else ``$SYMSPIKE_DATA``, else ``None``.

    ``None`` means the embedded MNIST subset. A folder that is given (by argument or by the
    environment) but does not exist raises :class:`DatasetError`.
    """
    return _resolve(data_dir)[0]


def _fashion_missing() -> DatasetError:
    files = ", ".join(f"{_PREFIX[s]}-{k}-idx{n}-ubyte.gz"
                      for s in SPLITS for k, n in (("images", 3), ("labels", 1)))
    return DatasetError(
        "Fashion-MNIST is not embedded in symspike (only an MNIST subset is) and no data "
        f"folder was given. Get the official files ({files}) from "
        "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion), put them in "
        f"DIR/fashion-mnist/, then pass --data DIR or set {ENV_VAR}=DIR")


def _find(folder: Path, stem: str, embedded: bool) -> Path:
    for name in (stem, stem + ".gz"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    if embedded:
        fix = "the installed package is incomplete; reinstall symspike"
    else:
        fix = f"copy the official file there or {_HINT}"
    raise DatasetError(f"{folder / (stem + '.gz')}: file not found (nor uncompressed "
                       f"{stem}); {fix}")


def _dataset_folder(dataset: str, data_dir) -> tuple[Path, bool, str]:
    """(folder with the four files, whether it is the embedded one, source name)."""
    root, source = _resolve(data_dir)
    if root is None:
        if dataset != "mnist":
            raise _fashion_missing()
        return EMBEDDED_DIR / "mnist", True, source
    folder = root / dataset
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: folder not found; the data folder {root} (from {source}) must hold "
            f"{dataset}/ with the IDX files; {_HINT}")
    return folder, False, source


# --------------------------------------------------------------------------------------------
# Public loading API


def load(dataset: str, split: str, data_dir: str | os.PathLike | None = None,
         limit: int | None = None, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load ``split`` ("train" or "test") of ``dataset`` ("mnist" or "fashion-mnist").

    Returns ``(images, labels)``: ``uint8`` arrays of shapes ``(n, 28, 28)`` and ``(n,)``.
    The data folder is resolved as in :func:`resolve_data_dir`; without one, MNIST comes
    from the embedded subset. ``limit`` keeps the first ``limit`` images (all when the file
    has fewer). With ``verify`` (the default) every file's SHA-256 must be that of the
    official file, compressed or not, or of the embedded subset; a verified file is not
    hashed again until its path, modification time or size changes. Raises
    :class:`DatasetError` with a message naming the file for anything missing or wrong.
    """
    dataset = _check_dataset(dataset)
    split = _check_split(split)
    if limit is not None:
        if isinstance(limit, bool) or int(limit) != limit or limit < 0:
            raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
        limit = int(limit)
    folder, embedded, _ = _dataset_folder(dataset, data_dir)

    prefix = _PREFIX[split]
    img_stem, lbl_stem = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    img_path = _find(folder, img_stem, embedded)
    lbl_path = _find(folder, lbl_stem, embedded)

    img_data, img_payload = _read_bytes(img_path)
    images = _parse_idx(img_path, img_payload)
    lbl_data, lbl_payload = _read_bytes(lbl_path)
    labels = _parse_idx(lbl_path, lbl_payload)

    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DatasetError(
            f"{img_path}: images are {'x'.join(map(str, images.shape[1:]))}, expected 28x28; "
            f"{_REDOWNLOAD}")
    if labels.ndim != 1:
        raise DatasetError(f"{lbl_path}: labels must be one-dimensional; {_REDOWNLOAD}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{lbl_path}: holds {len(labels)} labels but {img_path} holds {len(images)} "
            f"images; the two files do not belong together, {_REDOWNLOAD}")
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise DatasetError(
            f"{lbl_path}: label {int(labels[bad])} at index {bad} is not a class 0..9; "
            f"{_REDOWNLOAD}")

    if verify:
        expected = {
            _identify(img_path, dataset, img_stem, img_data, img_payload).count,
            _identify(lbl_path, dataset, lbl_stem, lbl_data, lbl_payload).count,
        }
        if len(expected) != 1:
            raise DatasetError(
                f"{lbl_path}: labels and images {img_path} are from different releases "
                f"(official and embedded subset); {_REDOWNLOAD}")
        (count,) = expected
        if len(images) != count:  # cannot happen unless the table above is wrong
            raise DatasetError(f"{img_path}: holds {len(images)} images, expected {count}")
    else:
        counts = {k.count: k.origin for k in _KNOWN[(dataset, img_stem)]}
        if len(images) not in counts:
            expected = " or ".join(f"{n} ({origin})" for n, origin in counts.items())
            raise DatasetError(
                f"{img_path}: holds {len(images)} images, expected {expected}; "
                f"{_REDOWNLOAD}")

    if limit is not None and limit < len(images):
        images, labels = images[:limit].copy(), labels[:limit].copy()
    return images, labels


def normalize_mean(images: np.ndarray, mean: float) -> np.ndarray:
    """Scale each image so its mean pixel value is ``mean``; round and clip to 0..255.

    This is the Fashion-MNIST preprocessing of Hao et al. (2020) (mean 30). ``images`` is a
    batch: axis 0 indexes images and the other axes are pixels, e.g. ``(n, 28, 28)`` or
    ``(n, 784)``; a 1-D array is one flattened image. Rounding is half away from zero. An
    all-black image stays black. Scaling is done once: where pixels clip at 255 (thin,
    faint images scaled up) the resulting mean stays below ``mean``. Returns ``uint8`` of
    the input's shape.
    """
    x = np.asarray(images)
    mean = float(mean)
    if not 0.0 <= mean <= 255.0:
        raise ValueError(f"mean must be within 0..255, not {mean}")
    if x.ndim == 0:
        raise ValueError("images must have at least one dimension")
    flat = x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)
    out = np.empty(flat.shape, dtype=np.uint8)
    step = 4096  # bound the float64 temporaries
    for start in range(0, len(flat), step):
        chunk = flat[start:start + step].astype(np.float64)
        m = chunk.mean(axis=1, keepdims=True) if chunk.shape[1] else np.zeros((len(chunk), 1))
        scale = np.divide(mean, m, out=np.zeros_like(m), where=m > 0)
        out[start:start + step] = np.clip(np.floor(chunk * scale + 0.5), 0, 255)
    return out.reshape(x.shape)


def describe_source(dataset: str, data_dir: str | os.PathLike | None = None) -> str:
    """One line for logs saying where ``dataset`` is (or would be) loaded from. Never raises."""
    try:
        name = _check_dataset(dataset)
    except DatasetError as exc:
        return f"{dataset}: unavailable ({exc})"
    title = _TITLE[name]
    try:
        folder, embedded, source = _dataset_folder(name, data_dir)
    except DatasetError as exc:
        return f"{title}: unavailable ({exc})"
    if embedded:
        return (f"{title}: embedded subset ({EMBEDDED_COUNTS['train']} train / "
                f"{EMBEDDED_COUNTS['test']} test images) in {folder}")
    return f"{title}: {folder} (from {source})"
