"""Image-classification data: Fashion-MNIST, MNIST, CIFAR-10/100, image folders.

The data sets come from files the user already has (these machines, and many
clusters, have no internet). Every file is checked before use:

* A file that is byte-for-byte the published one is recognised by the SHA-256
  that `tensorflow-datasets` records for it (copied into `ARCHIVE_SHA256`).
* A file that was re-compressed (Debian's `dataset-fashion-mnist` package
  re-gzipped Fashion-MNIST without the original file name header) is
  recognised by the SHA-256 of its *decompressed* content (`CONTENT_SHA256`).
* Anything else is refused with `DataVerificationError`; verification is never
  skipped. On top of the hashes, the structure is checked (idx magic numbers,
  image size, record counts, label ranges, tarball member names).

Two sources deliver the verified data:

* `source="direct"` reads the raw files itself (idx `.gz` files for the MNIST
  family, the `*-binary.tar.gz` tarballs for CIFAR), without tfds.
* `source="tfds"` goes through `tfds.load`, preparing the data set from the
  same files with `tfds.download.DownloadConfig(manual_dir=...)` when it is not
  yet in the tfds `data_dir`. tfds checks the compressed files against its own
  checksums; for Debian's Fashion-MNIST files the original gzip header is
  restored first (the result matches tfds's checksums byte for byte). The
  examples come back in the files' order, as from the direct reader, and a
  full Fashion-MNIST split is checked against `CONTENT_SHA256` as well; so
  both sources give the same arrays, and the same subsets for a seed.

The default, `source="auto"`, reads the raw files when it finds them and
otherwise uses a copy that tfds already prepared in `data_dir`.

The user's own images are a third kind of source: wherever a data set name is
expected (`info`, `load`, `load_arrays`), the path of a folder may be given
instead. The folder holds `train/<class>/*.png` (also `.jpg`, `.jpeg`, `.bmp`,
`.gif`) and optionally `test/<class>/...`, or just `<class>/...` (all training
data). The class names are the sorted sub-folder names; label `i` is the
`i`-th of them. Without a `test` folder, a fixed 20% of every class (at least
one image, chosen with the fixed seed `FOLDER_SPLIT_SEED`, not the run's seed)
is the test split and the rest the train split. The images are decoded once
into uint8 arrays and then go through the same pipeline as the built-in sets.
A registered name always means the built-in set, even where a directory of
that name exists; write `./mnist` for such a directory.

A name (or folder) may end in a class selection, `"fashion_mnist:5-9"` or
`"cifar10:0,1,8"`: only those classes are kept, relabelled `0, 1, ...` in
the order given. It makes a transfer task from one data set, for example a
teacher trained on classes 0-4 and a student on classes 5-9.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import logging
import os
import re
import struct
import tarfile
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np

from keras_vid._tf import INSTALL as _INSTALL_TF
from keras_vid._tf import require as _require_tf
from keras_vid._tf import tf

__all__ = [
    "ARCHIVE_SHA256",
    "CONTENT_SHA256",
    "DATASETS",
    "ENV_VAR",
    "FOLDER_SPLIT_SEED",
    "FOLDER_TEST_FRACTION",
    "IMAGE_EXTENSIONS",
    "NAMES",
    "UNLABELED",
    "DataVerificationError",
    "DatasetSpec",
    "MissingDataError",
    "clear_cache",
    "default_augment",
    "info",
    "load",
    "load_arrays",
    "load_unlabeled",
    "resolve_manual_dir",
    "split_classes",
    "subset_indices",
    "with_unlabeled",
]

logger = logging.getLogger(__name__)

ENV_VAR = "KERAS_VID_MANUAL_DIR"
SPLITS = ("train", "test")
SOURCES = ("auto", "direct", "tfds")

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_CIFAR_IMAGE_BYTES = 32 * 32 * 3

# Image folders: the file types read (case-insensitive), and how the test split
# is drawn from the training images when the folder has no `test` sub-folder.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
FOLDER_TEST_FRACTION = 0.2
FOLDER_SPLIT_SEED = 0

UNLABELED = -1
"""The class id that marks an unlabelled example (as in scikit-learn's
semi-supervised estimators). A `keras_vid.Distiller` leaves such examples out
of the task loss, the metrics and the terms that need labels."""


class MissingDataError(FileNotFoundError):
    """The files of a data set were not found; the message says what to put where."""


class DataVerificationError(ValueError):
    """A data file failed verification (hash, size, structure or gzip stream)."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a supported data set looks like on disk and in memory.

    Args:
        name: tfds name of the data set.
        title: Human-readable name.
        kind: `"idx"` (MNIST family) or `"cifar"` (CIFAR binary tarball).
        num_classes: Number of label classes.
        input_shape: Image shape, `(height, width, channels)`.
        num_train: Number of training examples.
        num_test: Number of test examples.
        files: File names expected in the manual directory.
        url: Where the original files are published.
        idx_files: For `"idx"`: split -> (images file, labels file), without
            the `.gz` suffix.
        members: For `"cifar"`: split -> tarball member paths holding it.
        extra_members: For `"cifar"`: other member paths that must exist.
        label_bytes: For `"cifar"`: label bytes per record (1 for CIFAR-10;
            2 for CIFAR-100: coarse, then fine).
        augment_pad: Zero padding (pixels per side) before the random crop.
        augment_flip: Whether augmentation flips images horizontally.
        default_augment: Whether `load()` augments the train split by default.
    """

    name: str
    title: str
    kind: str
    num_classes: int
    input_shape: tuple
    num_train: int
    num_test: int
    files: tuple
    url: str
    idx_files: dict | None = None
    members: dict | None = None
    extra_members: tuple = ()
    label_bytes: int = 1
    augment_pad: int = 4
    augment_flip: bool = True
    default_augment: bool = False

    def num_examples(self, split):
        return self.num_train if split == "train" else self.num_test


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_GZ = tuple(f"{stem}.gz" for pair in _IDX_FILES.values() for stem in pair)
_CIFAR10_DIR = "cifar-10-batches-bin/"
_CIFAR100_DIR = "cifar-100-binary/"

DATASETS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        kind="idx",
        num_classes=10,
        input_shape=(28, 28, 1),
        num_train=60000,
        num_test=10000,
        files=_IDX_GZ,
        url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        idx_files=_IDX_FILES,
        augment_pad=2,
        augment_flip=True,
    ),
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        kind="idx",
        num_classes=10,
        input_shape=(28, 28, 1),
        num_train=60000,
        num_test=10000,
        files=_IDX_GZ,
        url="https://storage.googleapis.com/cvdf-datasets/mnist/",
        idx_files=_IDX_FILES,
        augment_pad=2,
        augment_flip=False,  # Mirrored digits are not digits.
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        title="CIFAR-10",
        kind="cifar",
        num_classes=10,
        input_shape=(32, 32, 3),
        num_train=50000,
        num_test=10000,
        files=("cifar-10-binary.tar.gz",),
        url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        members={
            "train": tuple(f"{_CIFAR10_DIR}data_batch_{i}.bin" for i in range(1, 6)),
            "test": (f"{_CIFAR10_DIR}test_batch.bin",),
        },
        extra_members=(f"{_CIFAR10_DIR}batches.meta.txt",),
        label_bytes=1,
        default_augment=True,
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        title="CIFAR-100",
        kind="cifar",
        num_classes=100,
        input_shape=(32, 32, 3),
        num_train=50000,
        num_test=10000,
        files=("cifar-100-binary.tar.gz",),
        url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        members={
            "train": (f"{_CIFAR100_DIR}train.bin",),
            "test": (f"{_CIFAR100_DIR}test.bin",),
        },
        extra_members=(
            f"{_CIFAR100_DIR}coarse_label_names.txt",
            f"{_CIFAR100_DIR}fine_label_names.txt",
        ),
        label_bytes=2,
        default_augment=True,
    ),
}
NAMES = tuple(DATASETS)

# SHA-256 of each file exactly as published, copied from tensorflow-datasets
# 4.9.10 (`tensorflow_datasets/url_checksums/<name>.txt`); a test checks that
# they still agree with the installed tfds.
ARCHIVE_SHA256: dict[str, dict[str, str]] = {
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
        ),
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    },
    "cifar10": {
        "cifar-10-binary.tar.gz": (
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
        ),
    },
    "cifar100": {
        "cifar-100-binary.tar.gz": (
            "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec"
        ),
    },
}

# SHA-256 of decompressed content: idx files by name without `.gz`, CIFAR
# tarball members by member path. The Fashion-MNIST values were computed from
# Debian's dataset-fashion-mnist files (`zcat FILE | sha256sum`). Those files
# are the canonical ones: putting back the original gzip header (file name
# and the mtimes in `_CANONICAL_GZIP_MTIME`) gives files whose SHA-256 equals
# tfds's recorded checksum of the published `.gz`, so this content is exactly
# what tfds verifies. No decompressed hashes are recorded for MNIST and CIFAR:
# those files are verified by the published archive's hash only. Register
# more with `CONTENT_SHA256[name][file] = sha256` if you trust a copy.
CONTENT_SHA256: dict[str, dict[str, str]] = {
    "fashion_mnist": {
        "train-images-idx3-ubyte": (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
        ),
        "train-labels-idx1-ubyte": (
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
        ),
        "t10k-images-idx3-ubyte": (
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
        ),
        "t10k-labels-idx1-ubyte": (
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
        ),
    },
    "mnist": {},
    "cifar10": {},
    "cifar100": {},
}

# mtime field of the published Fashion-MNIST gzip headers (2017-08-31). With it
# and the file name, a header-less re-gzip of the same deflate stream (Debian's
# files) becomes the published file again, which tfds's checksums accept.
_CANONICAL_GZIP_MTIME: dict[str, dict[str, int]] = {
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": 1504176606,
        "train-labels-idx1-ubyte.gz": 1504176606,
        "t10k-images-idx3-ubyte.gz": 1504176627,
        "t10k-labels-idx1-ubyte.gz": 1504176627,
    },
}

# Directories searched when neither `manual_dir` nor $KERAS_VID_MANUAL_DIR
# has the files.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

_ARRAY_CACHE: dict = {}


def _spec(name):
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"Unknown data set {name!r}; expected one of {', '.join(DATASETS)}, "
            f"or the path of an image folder (e.g. './{name}')."
        ) from None


def split_classes(name):
    """`(name without a class selection, selected classes or None)`.

    Example:

    >>> keras_vid.data.split_classes("fashion_mnist:5-7,9")
    ('fashion_mnist', (5, 6, 7, 9))
    """
    if not isinstance(name, str) or ":" not in name:
        return name, None
    base, suffix = name.rsplit(":", 1)
    if not re.fullmatch(r"[\d\s,-]+", suffix):
        return name, None
    classes = []
    for part in suffix.replace(" ", "").split(","):
        bounds = part.split("-")
        if len(bounds) > 2 or not all(bounds):
            raise ValueError(
                f"Cannot read the class selection {suffix!r} of {name!r}. Write "
                "class indices and ranges, e.g. 'fashion_mnist:5-9' or "
                "'cifar10:0,1,8'."
            )
        low, high = int(bounds[0]), int(bounds[-1])
        classes.extend(range(low, high + 1))
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(
            f"The class selection of {name!r} must name at least two classes, "
            f"each once. Received: {classes}."
        )
    return base, tuple(classes)


def _select_classes(x, y, classes, num_classes, name):
    """Keeps the examples of `classes`, relabelled by their position there."""
    if classes is None:
        return x, y
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(
            f"{name!r} selects classes {bad}, but the data set has classes 0 to "
            f"{num_classes - 1}."
        )
    relabel = np.full(num_classes, -1, "int32")
    relabel[list(classes)] = np.arange(len(classes), dtype="int32")
    keep = relabel[y] >= 0
    return x[keep], relabel[y[keep]]


def default_augment(name):
    """Whether `load` augments `name`'s training split unless told otherwise.

    True for the CIFAR sets (the paper's pad-and-crop and flips), False for
    the 28x28 grey sets and for image folders.

    Example:

    >>> default_augment("cifar10:0-4"), default_augment("fashion_mnist")
    (True, False)
    """
    base, _ = split_classes(name)
    if _folder_path(base) is not None:
        return False
    return _spec(base).default_augment


def _num_classes(name, image_size=None):
    path = _folder_path(name)
    if path is None:
        return _spec(name).num_classes
    return len(_load_folder(path, image_size)[0].class_names)


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")


def info(name, image_size=None):
    """Describes a supported data set or an image folder.

    For an image folder, the images are decoded (and cached, so a later
    `load` of the same folder does not decode them again), because the input
    shape and the split sizes come from them.

    Args:
        name: One of `"fashion_mnist"`, `"mnist"`, `"cifar10"`, `"cifar100"`,
            or the path of an image folder (see the module docstring).
        image_size: For image folders: `(height, width)`, or an int for
            square images, to resize every image to. See `load`.

    Returns:
        A dict with `num_classes`, `input_shape` (height, width, channels),
        `num_train`, `num_test`, `title` and `files` (the file names to put
        in the manual directory). For an image folder, `title` is the
        folder's name, `files` the image files' paths relative to it, and
        `class_names` (the sorted class sub-folder names, label `i` being
        `class_names[i]`) is added.

    Raises:
        ValueError: If `name` is neither a supported data set nor a usable
            image folder (the message says what is wrong), or `image_size`
            is invalid.

    Example:

    >>> keras_vid.data.info("cifar10")["input_shape"]
    (32, 32, 3)
    """
    base, classes = split_classes(name)
    if classes is not None:
        meta = info(base, image_size)
        x, y = load_arrays(name, "train", image_size=image_size)
        _, y_test = load_arrays(name, "test", image_size=image_size)
        meta.update(
            num_classes=len(classes),
            num_train=len(y),
            num_test=len(y_test),
            title=f"{meta['title']}, classes {', '.join(map(str, classes))}",
        )
        if "class_names" in meta:
            meta["class_names"] = tuple(meta["class_names"][c] for c in classes)
        return meta
    path = _folder_path(name)
    if path is not None:
        folder, arrays = _load_folder(path, image_size)
        return {
            "num_classes": len(folder.class_names),
            "input_shape": tuple(arrays["train"][0].shape[1:]),
            "num_train": len(arrays["train"][1]),
            "num_test": len(arrays["test"][1]),
            "title": folder.root.name,
            "files": tuple(
                f.relative_to(folder.root).as_posix()
                for split in SPLITS
                for f, _ in folder.files[split]
            ),
            "class_names": folder.class_names,
        }
    spec = _spec(name)
    _check_builtin_size(spec, image_size)
    return {
        "num_classes": spec.num_classes,
        "input_shape": tuple(spec.input_shape),
        "num_train": spec.num_train,
        "num_test": spec.num_test,
        "title": spec.title,
        "files": tuple(spec.files),
    }


# --------------------------------------------------------------------------
# Locating files.


def _missing_files(spec, directory):
    """Names in `spec.files` that `directory` lacks (idx may be uncompressed)."""
    missing = []
    for fname in spec.files:
        if (directory / fname).is_file():
            continue
        if spec.kind == "idx" and (directory / fname[: -len(".gz")]).is_file():
            continue
        missing.append(fname)
    return missing


def _candidates(directory, name):
    directory = Path(directory).expanduser()
    return [directory / name, directory]


def resolve_manual_dir(name, manual_dir=None):
    """Finds the directory holding a data set's raw files.

    The first directory that holds all files wins, in this order:

    1. `manual_dir`, when given (or its subdirectory `<name>/`); nothing
       else is searched then.
    2. `$KERAS_VID_MANUAL_DIR/<name>/`, then `$KERAS_VID_MANUAL_DIR`.
    3. For Fashion-MNIST: `/usr/share/datasets/fashion-mnist`, where Debian's
       `dataset-fashion-mnist` package installs it.

    The idx files of the MNIST family may also be present uncompressed (the
    name without `.gz`). Only presence is checked here; `load_arrays` checks
    the content.

    Args:
        name: One of `"fashion_mnist"`, `"mnist"`, `"cifar10"`, `"cifar100"`.
        manual_dir: Optional directory given by the user (e.g. the recipes'
            `--manual_dir` flag).

    Returns:
        The `pathlib.Path` of the directory.

    Raises:
        MissingDataError: (a `FileNotFoundError`) if no directory holds all
            files; the message lists the file names, the directory to put them
            in and the directories searched.
        ValueError: If `name` is not a supported data set.

    Example:

    >>> keras_vid.data.resolve_manual_dir("fashion_mnist")
    PosixPath('/usr/share/datasets/fashion-mnist')
    """
    spec = _spec(name)
    env_dir = os.environ.get(ENV_VAR) or None
    if manual_dir is not None:
        candidates = _candidates(manual_dir, name)
    else:
        candidates = _candidates(env_dir, name) if env_dir else []
        candidates += list(SYSTEM_DIRS.get(name, ()))

    searched = []
    for directory in candidates:
        if not directory.is_dir():
            searched.append(f"{directory} (no such directory)")
            continue
        missing = _missing_files(spec, directory)
        if not missing:
            return directory
        searched.append(f"{directory} (missing: {', '.join(missing)})")
    raise MissingDataError(_missing_message(spec, manual_dir, env_dir, searched))


def _missing_message(spec, manual_dir, env_dir, searched):
    target = manual_dir if manual_dir is not None else env_dir
    where = f"this directory: {target}" if target else "a directory of your choice"
    lines = [
        f"{spec.title} ({spec.name}) data files not found. Put these "
        f"{len(spec.files)} file(s) in {where}",
    ]
    lines += [f"    {fname}" for fname in spec.files]
    if spec.kind == "idx":
        lines.append("(each may also be uncompressed, without the .gz suffix)")
    lines.append(
        f"and pass manual_dir=DIR to keras_vid.data (the recipes' --manual_dir=DIR "
        f"flag) or set the environment variable {ENV_VAR}=DIR; the files may also "
        f"sit in DIR/{spec.name}/."
    )
    if spec.name == "fashion_mnist":
        lines.append(
            "On Debian/Ubuntu, `sudo apt-get install dataset-fashion-mnist` "
            "installs them in /usr/share/datasets/fashion-mnist, which is "
            "searched when manual_dir is not given."
        )
    lines.append(f"The original files are published at {spec.url}")
    if searched:
        lines.append("Searched: " + "; ".join(searched) + ".")
    else:
        lines.append(f"Searched nothing: neither manual_dir nor {ENV_VAR} is set.")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Verification and raw readers.


def _sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_content(spec, path, key, content, archive_digest=None):
    """Checks decompressed `content` against `CONTENT_SHA256[spec.name][key]`."""
    actual = _sha256_bytes(content)
    expected = CONTENT_SHA256.get(spec.name, {}).get(key)
    published = ARCHIVE_SHA256.get(spec.name, {}).get(Path(path).name)
    about_archive = ""
    if archive_digest is not None and published:
        about_archive = (
            f" (the file itself has SHA-256 {archive_digest}, not the published "
            f"{published})"
        )
    if expected is None:
        raise DataVerificationError(
            f"Cannot verify {path}: it is not the published {spec.title} file"
            f"{about_archive}, and no SHA-256 of its decompressed content {key!r} "
            f"is recorded (actual content SHA-256: {actual}). Use the original "
            f"file from {spec.url}, or, if you trust this copy, record its hash "
            f"in keras_vid.data.CONTENT_SHA256[{spec.name!r}][{key!r}]."
        )
    if actual != expected:
        raise DataVerificationError(
            f"Verification failed for {path}: the SHA-256 of its decompressed "
            f"content {key!r} is {actual}, expected {expected}{about_archive}. "
            f"The file is corrupt or not the {spec.title} data; replace it with "
            f"the original from {spec.url}."
        )


def _read_idx_file(spec, directory, stem):
    """Returns the verified, decompressed bytes of one idx file."""
    gz_path = directory / f"{stem}.gz"
    if gz_path.is_file():
        blob = gz_path.read_bytes()
        digest = _sha256_bytes(blob)
        try:
            content = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error) as e:
            raise DataVerificationError(
                f"Verification failed for {gz_path}: not a complete gzip file "
                f"({e}); SHA-256 {digest}, expected "
                f"{ARCHIVE_SHA256.get(spec.name, {}).get(gz_path.name)}. "
                f"Replace it with the original from {spec.url}."
            ) from e
        if digest != ARCHIVE_SHA256.get(spec.name, {}).get(gz_path.name):
            _check_content(spec, gz_path, stem, content, archive_digest=digest)
        return gz_path, content
    path = directory / stem
    if not path.is_file():
        raise MissingDataError(
            f"{spec.title}: neither {gz_path} nor {path} exists. "
            + _missing_message(spec, str(directory), None, [])
        )
    content = path.read_bytes()
    _check_content(spec, path, stem, content)
    return path, content


def _parse_idx(path, content, magic, expected_count, expected_dims):
    """Parses a verified idx file into a uint8 array, checking its structure."""
    ndim = magic & 0xFF
    if len(content) < 4 + 4 * ndim:
        raise DataVerificationError(f"{path}: too short for an idx header.")
    got_magic = struct.unpack(">I", content[:4])[0]
    if got_magic != magic:
        raise DataVerificationError(
            f"{path}: idx magic number is {got_magic}, expected {magic}."
        )
    dims = struct.unpack(f">{ndim}I", content[4 : 4 + 4 * ndim])
    if dims[0] != expected_count or tuple(dims[1:]) != tuple(expected_dims):
        raise DataVerificationError(
            f"{path}: holds shape {dims}, expected {(expected_count, *expected_dims)}."
        )
    header = 4 + 4 * ndim
    size = int(np.prod(dims))
    if len(content) != header + size:
        raise DataVerificationError(
            f"{path}: has {len(content)} bytes, expected {header + size} for "
            f"shape {dims}."
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(dims)


def _read_idx_split(spec, directory, split):
    images_stem, labels_stem = spec.idx_files[split]
    count = spec.num_examples(split)
    height, width, _ = spec.input_shape
    path, content = _read_idx_file(spec, directory, images_stem)
    x = _parse_idx(path, content, _IDX_IMAGES_MAGIC, count, (height, width))
    path, content = _read_idx_file(spec, directory, labels_stem)
    y = _parse_idx(path, content, _IDX_LABELS_MAGIC, count, ())
    if y.max(initial=0) >= spec.num_classes:
        raise DataVerificationError(
            f"{path}: label {int(y.max())} is out of range for "
            f"{spec.num_classes} classes."
        )
    return {split: (x.reshape((count, *spec.input_shape)), y.astype(np.int32))}


def _read_cifar(spec, directory):
    """Verifies a CIFAR binary tarball and returns arrays for both splits."""
    (fname,) = spec.files
    path = directory / fname
    digest = _sha256_file(path)
    published = ARCHIVE_SHA256.get(spec.name, {}).get(fname)
    archive_ok = digest == published
    wanted = [m for split in SPLITS for m in spec.members[split]]
    contents = {}
    try:
        # One pass over the stream: seeking back in a .tar.gz re-decompresses.
        with tarfile.open(path, "r|gz") as tar:
            names = set()
            for member in tar:
                names.add(member.name)
                if member.name in wanted and member.isfile():
                    contents[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataVerificationError(
            f"Verification failed for {path}: not a complete tar.gz file ({e}); "
            f"SHA-256 {digest}, expected {published}. Replace it with the "
            f"original from {spec.url}."
        ) from e
    absent = [m for m in (*wanted, *spec.extra_members) if m not in names]
    absent += [m for m in wanted if m in names and m not in contents]
    if absent:
        raise DataVerificationError(
            f"Verification failed for {path}: the tarball lacks "
            f"{', '.join(sorted(set(absent)))} (as regular files; SHA-256 "
            f"{digest}, expected {published}). Use the original {spec.title} "
            f"binary version from {spec.url}."
        )
    if not archive_ok:
        for member in wanted:
            _check_content(spec, path, member, contents[member], digest)

    record = spec.label_bytes + _CIFAR_IMAGE_BYTES
    arrays = {}
    for split in SPLITS:
        members = spec.members[split]
        per_file = spec.num_examples(split) // len(members)
        xs, ys = [], []
        for member in members:
            data = contents[member]
            if len(data) != per_file * record:
                raise DataVerificationError(
                    f"{path}: member {member} has {len(data)} bytes, expected "
                    f"{per_file} records of {record} bytes ({per_file * record})."
                )
            rows = np.frombuffer(data, dtype=np.uint8).reshape(per_file, record)
            # The last label byte is the class (CIFAR-100: coarse, then fine).
            ys.append(rows[:, spec.label_bytes - 1].astype(np.int32))
            xs.append(
                rows[:, spec.label_bytes :]
                .reshape(per_file, 3, 32, 32)
                .transpose(0, 2, 3, 1)
            )
            if spec.label_bytes == 2 and rows[:, 0].max(initial=0) >= 20:
                raise DataVerificationError(
                    f"{path}: member {member} has a coarse label >= 20."
                )
        y = np.concatenate(ys)
        if y.max(initial=0) >= spec.num_classes:
            raise DataVerificationError(
                f"{path}: label {int(y.max())} is out of range for "
                f"{spec.num_classes} classes."
            )
        arrays[split] = (np.ascontiguousarray(np.concatenate(xs)), y)
    return arrays


def _file_stamp(spec, directory):
    stamp = []
    for fname in spec.files:
        for path in (directory / fname, directory / fname.removesuffix(".gz")):
            if path.is_file():
                st = path.stat()
                stamp.append((path.name, st.st_size, st.st_mtime_ns))
    return tuple(stamp)


def _freeze(arrays):
    for x, y in arrays.values():
        x.flags.writeable = False
        y.flags.writeable = False
    return arrays


def _load_direct(spec, split, manual_dir):
    directory = resolve_manual_dir(spec.name, manual_dir).resolve()
    key = ("direct", repr(spec), str(directory), _file_stamp(spec, directory))
    cached = _ARRAY_CACHE.get(key, {})
    if split not in cached:
        logger.info("Reading and verifying %s from %s", spec.title, directory)
        if spec.kind == "idx":
            arrays = _read_idx_split(spec, directory, split)
        else:
            arrays = _read_cifar(spec, directory)
        cached.update(_freeze(arrays))
        _ARRAY_CACHE[key] = cached
    return cached[split]


# --------------------------------------------------------------------------
# The tfds path.


def _canonical_gzip(blob, fname, mtime):
    """Puts the original gzip header (file name, mtime) back on `blob`."""
    if len(blob) < 10 or blob[:3] != b"\x1f\x8b\x08" or blob[3] != 0:
        return None  # Not gzip, or it already carries a name or other fields.
    header = b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + blob[8:10]
    return header + fname.removesuffix(".gz").encode() + b"\0" + blob[10:]


@contextlib.contextmanager
def _tfds_manual_dir(spec, directory):
    """Yields a manual dir whose files match tfds's recorded checksums.

    Files that already match are used in place. Debian's header-less
    Fashion-MNIST files get their original gzip header back in a temporary
    directory; the result must then match tfds's checksum byte for byte.
    Anything else is refused: tfds would refuse it too.
    """
    published = ARCHIVE_SHA256.get(spec.name, {})
    restored = {}
    for fname in spec.files:
        path = directory / fname
        if not path.is_file():
            raise MissingDataError(
                f"tfds needs the compressed file {fname} in {directory}; only the "
                f"uncompressed one is there. Use source='direct', which reads it."
            )
        digest = _sha256_file(path)
        if digest == published.get(fname):
            continue
        mtime = _CANONICAL_GZIP_MTIME.get(spec.name, {}).get(fname)
        fixed = _canonical_gzip(path.read_bytes(), fname, mtime) if mtime else None
        if fixed is None or _sha256_bytes(fixed) != published.get(fname):
            raise DataVerificationError(
                f"Verification failed for {path}: SHA-256 {digest}, expected "
                f"{published.get(fname)} (the checksum tfds records for {fname}). "
                f"tfds will not accept this file; use source='direct' (which also "
                f"accepts re-compressed copies of verified content) or the "
                f"original file from {spec.url}."
            )
        restored[fname] = fixed
    if not restored:
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="keras_vid_tfds_") as tmp:
        for fname in spec.files:
            target = Path(tmp) / fname
            if fname in restored:
                target.write_bytes(restored[fname])
            else:
                target.symlink_to((directory / fname).resolve())
        logger.info("Restored the original gzip headers of %s", sorted(restored))
        yield Path(tmp)


def _tfds_prepared(name, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError:  # Then only the direct reader can have the data.
        return False

    return tfds.builder(name, data_dir=data_dir).is_prepared()


def _load_tfds(spec, split, manual_dir, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(
            f"source='tfds' needs tensorflow-datasets, which is not installed. "
            f"Install it with `{_INSTALL_TF}`, or read the {spec.title} files "
            "without it: source='direct'."
        ) from None

    from keras_vid._compat import tfds_checksum_error

    NonMatchingChecksumError = tfds_checksum_error()

    builder = tfds.builder(spec.name, data_dir=data_dir)
    with contextlib.ExitStack() as stack:
        download_config = None
        if not builder.is_prepared():
            try:
                directory = resolve_manual_dir(spec.name, manual_dir)
            except MissingDataError as e:
                raise MissingDataError(
                    f"{e}\ntfds has not prepared {spec.name} in "
                    f"{builder.data_dir_root}, and needs these files to do so."
                ) from None
            staged = stack.enter_context(_tfds_manual_dir(spec, directory))
            download_config = tfds.download.DownloadConfig(
                manual_dir=str(staged),
                download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
            )
        try:
            ds = tfds.load(
                spec.name,
                split=split,
                data_dir=data_dir,
                as_supervised=True,
                shuffle_files=False,
                download=download_config is not None,
                download_and_prepare_kwargs={"download_config": download_config},
            )
        except NonMatchingChecksumError as e:
            raise DataVerificationError(
                f"tfds refused the {spec.title} files: {e}"
            ) from e
        xs, ys = [], []
        for x, y in tfds.as_numpy(ds.batch(10000)):
            xs.append(x)
            ys.append(y)
    x = np.concatenate(xs).astype(np.uint8, copy=False)
    y = np.concatenate(ys).astype(np.int32)
    if x.shape[1:] != tuple(spec.input_shape):
        raise DataVerificationError(
            f"tfds returned {spec.name} images of shape {x.shape[1:]}, expected "
            f"{spec.input_shape}."
        )
    return _in_file_order(spec, split, x, y)


def _in_file_order(spec, split, x, y):
    """Puts tfds's examples back in the files' order, as the direct reader.

    Then `subset_indices` draws the same images for a seed from either source.
    A full split whose decompressed content has a recorded hash is verified
    against it, which also proves the order is the files' own.
    """
    from keras_vid._compat import tfds_file_order

    order = tfds_file_order(split, len(y))
    x_files, y_files = np.empty_like(x), np.empty_like(y)
    x_files[order], y_files[order] = x, y
    if spec.kind == "idx" and len(y) == spec.num_examples(split):
        height, width, _ = spec.input_shape
        images_stem, labels_stem = spec.idx_files[split]
        contents = {
            images_stem: struct.pack(">4I", _IDX_IMAGES_MAGIC, len(y), height, width)
            + x_files.tobytes(),
            labels_stem: struct.pack(">2I", _IDX_LABELS_MAGIC, len(y))
            + y_files.astype(np.uint8).tobytes(),
        }
        for stem, content in contents.items():
            expected = CONTENT_SHA256.get(spec.name, {}).get(stem)
            if expected is not None and _sha256_bytes(content) != expected:
                raise DataVerificationError(
                    f"tfds's {spec.title} {split} split, put back in the "
                    f"files' order, does not match the published {stem} "
                    f"(SHA-256 {_sha256_bytes(content)}, expected {expected}). "
                    "Either tfds's prepared copy differs from the published "
                    "files or this tfds version orders a split differently "
                    "(keras_vid._compat.tfds_file_order). Use source='direct'."
                )
    return x_files, y_files


# --------------------------------------------------------------------------
# Image folders.

_LAYOUT_HINT = (
    "An image folder holds PATH/train/<class>/<images> (and optionally "
    "PATH/test/<class>/<images>), or PATH/<class>/<images>, with image files "
    f"ending in {', '.join(IMAGE_EXTENSIONS)}."
)


@dataclasses.dataclass(frozen=True)
class _Folder:
    """The files of an image folder, before decoding.

    `files[split]` lists `(path, label)` pairs, by class, then by path.
    `class_dirs[split][label]` is the folder the class's images came from.
    """

    root: Path
    class_names: tuple
    files: dict
    class_dirs: dict
    auto_test: bool
    stamp: tuple


def _folder_path(name):
    """The folder that `name` points to, or None for a data set name.

    A registered name always means the built-in set, even if a directory of
    that name exists; `"./mnist"` reaches such a directory.
    """
    if isinstance(name, str) and name in DATASETS:
        return None
    if isinstance(name, os.PathLike):
        return Path(name).expanduser()
    if isinstance(name, str):
        separators = [s for s in (os.sep, os.altsep) if s]
        if (
            any(s in name for s in separators)
            or name.startswith(("~", "."))
            or os.path.isdir(name)
        ):
            return Path(name).expanduser()
    return None


def _image_size(image_size):
    """`image_size` as a `(height, width)` tuple of ints, or None."""
    if image_size is None:
        return None
    if isinstance(image_size, int | np.integer) and not isinstance(image_size, bool):
        size = (image_size, image_size)
    else:
        try:
            size = tuple(image_size)
        except TypeError:
            size = ()
    if len(size) != 2 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0
        for v in size
    ):
        raise ValueError(
            f"image_size must be a positive int or a (height, width) pair of "
            f"positive ints, got {image_size!r}."
        )
    return int(size[0]), int(size[1])


def _check_builtin_size(spec, image_size):
    size = _image_size(image_size)
    native = tuple(spec.input_shape[:2])
    if size is not None and size != native:
        raise ValueError(
            f"image_size={image_size!r} only applies to image folders: "
            f"{spec.title} images are {native[0]}x{native[1]} and are not "
            f"resized. Leave image_size unset for {spec.name!r}."
        )


def _class_names(directory):
    # Hidden folders are tool droppings (.ipynb_checkpoints), not classes.
    return sorted(
        p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def _image_files(directory):
    found = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames.sort()  # Walk order fixes the example order, so make it stable.
        found += [
            Path(dirpath) / f
            for f in sorted(filenames)
            if f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return found


def _split_rank(relative):
    # A hash of the path, not a random permutation: adding or removing an
    # image moves at most a few others between the splits.
    key = f"{FOLDER_SPLIT_SEED}:{relative.as_posix()}".encode()
    return hashlib.sha256(key).digest()


def _auto_test_split(files, class_dirs):
    """Splits `(path, label)` pairs into train and a stratified test part."""
    train, test = [], []
    for label, directory in enumerate(class_dirs):
        paths = [f for f, y in files if y == label]
        if len(paths) < 2:
            raise ValueError(
                f"Class folder {directory} holds {len(paths)} image file(s), but "
                f"the image folder has no test/ sub-folder, so "
                f"{FOLDER_TEST_FRACTION:.0%} of every class (at least one image) "
                f"is held out for testing and each class needs at least 2 images. "
                f"Add images, or put the test images in a separate "
                f"PATH/test/<class>/ folder (and the rest in PATH/train/<class>/)."
            )
        num_test = int(FOLDER_TEST_FRACTION * len(paths) + 0.5)
        num_test = min(max(num_test, 1), len(paths) - 1)
        ranked = sorted(paths, key=lambda f: _split_rank(f.relative_to(directory)))
        held_out = set(ranked[:num_test])
        train += [(f, label) for f in paths if f not in held_out]
        test += [(f, label) for f in paths if f in held_out]
    return train, test


def _scan_folder(path):
    """Finds the classes and image files of an image folder, checking them."""
    if not path.exists():
        raise ValueError(
            f"Image folder {path} does not exist (and {str(path)!r} is not a data "
            f"set name: {', '.join(DATASETS)}). {_LAYOUT_HINT}"
        )
    if not path.is_dir():
        raise ValueError(f"{path} is a file, not an image folder. {_LAYOUT_HINT}")
    root = path.resolve()
    split_dirs = {"train": root / "train", "test": root / "test"}
    if not split_dirs["train"].is_dir():
        if split_dirs["test"].is_dir():
            raise ValueError(
                f"Image folder {root} has a test/ sub-folder but no train/ one. "
                f"Put the training images in {root / 'train'}/<class>/."
            )
        split_dirs = {"train": root}
    elif not split_dirs["test"].is_dir():
        del split_dirs["test"]

    names = {}
    for split, directory in split_dirs.items():
        names[split] = _class_names(directory)
        if not names[split]:
            loose = _image_files(directory)
            hint = (
                f" Its {len(loose)} image file(s) must sit in one sub-folder per "
                f"class, e.g. {directory / 'cat'}/."
                if loose
                else ""
            )
            raise ValueError(
                f"{directory} holds no class sub-folders.{hint} {_LAYOUT_HINT}"
            )
    if "test" in names and names["train"] != names["test"]:
        only_train = sorted(set(names["train"]) - set(names["test"]))
        only_test = sorted(set(names["test"]) - set(names["train"]))
        raise ValueError(
            f"The class folders of {split_dirs['train']} and {split_dirs['test']} "
            f"differ: only in train/: {', '.join(only_train) or '(none)'}; only in "
            f"test/: {', '.join(only_test) or '(none)'}. Both need the same class "
            f"sub-folders, so that the labels mean the same classes."
        )

    class_names = tuple(names["train"])
    files, class_dirs = {}, {}
    for split, directory in split_dirs.items():
        class_dirs[split] = tuple(directory / c for c in class_names)
        files[split] = []
        for label, class_dir in enumerate(class_dirs[split]):
            found = _image_files(class_dir)
            if not found:
                raise ValueError(
                    f"Class folder {class_dir} holds no image files (looked for "
                    f"{', '.join(IMAGE_EXTENSIONS)}). Add images to it or remove it."
                )
            files[split] += [(f, label) for f in found]
    every = [f for split in files for f, _ in files[split]]
    stamp = []
    for f in every:
        st = f.stat()
        stamp.append((f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    auto_test = "test" not in files
    if auto_test:
        files["train"], files["test"] = _auto_test_split(
            files["train"], class_dirs["train"]
        )
        class_dirs["test"] = class_dirs["train"]
    return _Folder(root, class_names, files, class_dirs, auto_test, tuple(stamp))


def _tf_message(error):
    """The readable part of a TensorFlow op error message."""
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", error.message)
    # Eager errors end in "[Op:Name] name: ..."; neither helps the user.
    return re.sub(r"\s*\[Op:.*$", "", message, flags=re.S).strip().rstrip(".")


def _decode(path):
    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
    except tf.errors.OpError as e:
        raise ValueError(
            f"Cannot read image file {path}: {_tf_message(e)}. Replace it with "
            f"a valid image or remove it."
        ) from None
    return image.numpy()


def _to_rgb(image):
    channels = image.shape[-1]
    if channels in (1, 2):  # Grayscale, maybe with alpha.
        return np.repeat(image[..., :1], 3, axis=-1)
    return image[..., :3]  # Alpha is dropped: the others have none.


def _resize(image, size):
    if image.shape[:2] == size:
        return image
    resized = tf.image.resize(image, size, method="bilinear").numpy()
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def _decode_all(files, size, root):
    """Decodes `files` to uint8 arrays with one channel count, resized to `size`."""
    _require_tf(f"Reading the image folder {root}")
    # Host memory: decoded images are kept as numpy arrays anyway.
    with tf.device("/CPU:0"):
        images = [_decode(f) for f in files]
        channels = {im.shape[-1] for im in images}
        if len(channels) > 1:
            logger.info(
                "%s mixes images with %s channels; converting all to RGB.",
                root,
                sorted(channels),
            )
            images = [_to_rgb(im) for im in images]
        if size is not None:
            images = [_resize(im, size) for im in images]
    return images


def _read_folder(folder, size):
    """Decodes every image of both splits into `{split: (x, y)}` uint8 arrays."""
    logger.info("Decoding the images of %s", folder.root)
    files = [f for s in SPLITS for f, _ in folder.files[s]]
    decoded = _decode_all(files, size, folder.root)
    images, start = {}, 0
    for s in SPLITS:
        images[s] = decoded[start : start + len(folder.files[s])]
        start += len(folder.files[s])
    if size is None:
        examples = {}
        for s in SPLITS:
            for (f, _), im in zip(folder.files[s], images[s]):
                examples.setdefault(im.shape[:2], f)
        if len(examples) > 1:
            listed = "; ".join(
                f"{h}x{w} (e.g. {f})" for (h, w), f in list(examples.items())[:5]
            )
            raise ValueError(
                f"The images of {folder.root} have {len(examples)} different sizes "
                f"(height x width): {listed}. Pass image_size=(height, width) (or "
                f"an int for square images) to resize them all to one size."
            )
    return {
        s: (
            np.stack(images[s]),
            np.array([y for _, y in folder.files[s]], dtype=np.int32),
        )
        for s in SPLITS
    }


def _load_folder(path, image_size):
    """Returns `(folder, {split: (x, y)})`, decoding only on a cache miss."""
    size = _image_size(image_size)
    folder = _scan_folder(path)
    # The stamp (file list, sizes, mtimes) makes an edited folder a new key.
    key = ("folder", str(folder.root), size, folder.stamp)
    if key not in _ARRAY_CACHE:
        # Older versions of this folder would never be hit again: free them.
        for old in [k for k in _ARRAY_CACHE if k[:3] == key[:3]]:
            del _ARRAY_CACHE[old]
        _ARRAY_CACHE[key] = _freeze(_read_folder(folder, size))
    return folder, _ARRAY_CACHE[key]


def _check_folder_counts(folder, split, labels, samples_per_class):
    """`subset_indices`'s check, with the class names and folders in the message."""
    if isinstance(samples_per_class, bool) or not isinstance(
        samples_per_class, int | np.integer
    ):
        return  # subset_indices rejects it with its own message.
    counts = np.bincount(labels, minlength=len(folder.class_names))
    short = [c for c, n in enumerate(counts) if n < samples_per_class]
    if not short:
        return
    held_out = (
        f", after {FOLDER_TEST_FRACTION:.0%} of each class was held out as the "
        f"automatic test split"
        if folder.auto_test and split == "train"
        else ""
    )
    detail = "; ".join(
        f"class {folder.class_names[c]!r} has {counts[c]} "
        f"(folder {folder.class_dirs[split][c]})"
        for c in short
    )
    raise ValueError(
        f"samples_per_class={samples_per_class} asks for more {split} images than "
        f"exist{held_out}: {detail}. Lower samples_per_class or add images."
    )


def clear_cache():
    """Drops the arrays that `load_arrays` keeps in memory.

    Returns:
        None.

    Example:

    >>> keras_vid.data.clear_cache()
    """
    _ARRAY_CACHE.clear()


def load_arrays(
    name, split, manual_dir=None, *, source="auto", data_dir=None, image_size=None
):
    """Loads a split as verified uint8 arrays, or an image folder's split.

    With `source="direct"` the raw files (see `resolve_manual_dir`) are
    verified and parsed; the arrays are cached in-process (keyed by the
    files' path, size and mtime) and returned read-only, so call `.copy()`
    before modifying them. With `source="tfds"` they come from `tfds.load`
    (prepared from the same files if needed; not cached here). Both give the
    examples in the files' order (tfds's stored shuffle is undone), so the
    two sources give the same arrays and `subset_indices` the same images
    for a seed.

    For an image folder, both splits are decoded at once and cached
    (read-only, too), keyed by the folder's path, `image_size` and its file
    list with sizes and mtimes, so an edited folder is read again. Examples
    are ordered by class, then by file path. `manual_dir`, `source` and
    `data_dir` are ignored.

    Args:
        name: One of `"fashion_mnist"`, `"mnist"`, `"cifar10"`, `"cifar100"`,
            or the path of an image folder (see the module docstring).
        split: `"train"` or `"test"`.
        manual_dir: Directory with the raw files; see `resolve_manual_dir`.
        source: `"direct"`, `"tfds"`, or `"auto"` (the default): `"direct"`
            when the raw files are found, else `"tfds"` if the data set is
            already prepared in `data_dir`.
        data_dir: tfds data directory (tfds's default when None).
        image_size: For image folders: `(height, width)`, or an int for
            square images; every image is resized to it (bilinear). Without
            it, all images must have the same size. A built-in set accepts
            only its own size here, since it is never resized.

    Returns:
        A tuple `(x, y)`: `x` uint8 of shape `(N, height, width, channels)`,
        `y` int32 of shape `(N,)`.

    Raises:
        MissingDataError: If the files are not found (the message says which
            files to put where).
        DataVerificationError: If a file fails verification.
        ValueError: For an unknown data set, split or source, or an unusable
            image folder: a missing path, no class sub-folders, an empty class
            folder, an unreadable image (the message names the file), class
            folders that differ between `train/` and `test/`, or images of
            different sizes without `image_size`.

    Example:

    >>> x, y = keras_vid.data.load_arrays("fashion_mnist", "test")
    >>> x.shape, y.shape
    ((10000, 28, 28, 1), (10000,))

    An image folder, resized to 64x64:

    ```python
    x, y = keras_vid.data.load_arrays("photos/", "train", image_size=64)
    ```
    """
    base, classes = split_classes(name)
    if classes is not None:
        x, y = load_arrays(
            base,
            split,
            manual_dir,
            source=source,
            data_dir=data_dir,
            image_size=image_size,
        )
        return _select_classes(x, y, classes, _num_classes(base, image_size), name)
    path = _folder_path(name)
    if path is not None:
        _check_split(split)
        return _load_folder(path, image_size)[1][split]
    spec = _spec(name)
    _check_split(split)
    _check_builtin_size(spec, image_size)
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; expected one of {SOURCES}.")
    if source == "auto":
        try:
            return _load_direct(spec, split, manual_dir)
        except MissingDataError as e:
            if manual_dir is not None or not _tfds_prepared(name, data_dir):
                raise
            logger.info("%s; using the copy tfds prepared.", str(e).splitlines()[0])
            source = "tfds"
    if source == "direct":
        return _load_direct(spec, split, manual_dir)
    return _load_tfds(spec, split, manual_dir, data_dir)


# --------------------------------------------------------------------------
# Subsets and tf.data pipelines.


def _is_positive_int(value):
    # bool is an int subclass, but True is no count.
    return (
        isinstance(value, int | np.integer)
        and not isinstance(value, bool)
        and value > 0
    )


def subset_indices(labels, samples_per_class, seed, num_classes=None):
    """Draws the same number of examples from every class.

    The draw depends only on `labels`, `samples_per_class` and `seed`, so every
    method trained with the same seed sees the same images. It is nested: the
    examples drawn for N per class are among those drawn for any larger N
    with the same seed.

    Args:
        labels: 1-D integer array of class labels.
        samples_per_class: Number of examples to take from each class (> 0).
        seed: Seed of the `numpy.random.Generator` that picks them.
        num_classes: Number of classes; `max(labels) + 1` when None. Every
            class in `range(num_classes)` must have enough examples.

    Returns:
        A sorted int64 array of `samples_per_class * num_classes` indices.

    Raises:
        ValueError: If `samples_per_class` is not positive, or if a class has
            fewer examples than asked (the message names the class, how many
            it has, and what was asked).

    Example:

    >>> labels = np.array([0, 1, 0, 1, 0, 1, 2, 2])
    >>> idx = keras_vid.data.subset_indices(labels, 2, seed=0)
    >>> np.bincount(labels[idx])
    array([2, 2, 2])
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}.")
    if not _is_positive_int(samples_per_class):
        raise ValueError(
            f"samples_per_class must be a positive integer, got {samples_per_class!r}."
        )
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes)
    short = [c for c in range(num_classes) if counts[c] < samples_per_class]
    if short:
        detail = ", ".join(f"class {c} has {counts[c]}" for c in short)
        raise ValueError(
            f"samples_per_class={samples_per_class} asks for more examples than "
            f"exist: {detail}."
        )
    order = np.random.default_rng(seed).permutation(labels.size)
    ordered_labels = labels[order]
    picks = [order[ordered_labels == c][:samples_per_class] for c in range(num_classes)]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def _augment_params(spec, x):
    """`(pad, flip)` of the random crop: the data set's own, or for a folder
    of images an eighth of their height, with flips."""
    if spec is not None:
        return spec.augment_pad, spec.augment_flip
    return max(1, x.shape[1] // 8), True


def _augment(images, seed, pad, flip):
    """Zero-pads, randomly crops back to size and maybe flips a batch.

    Every image gets its own crop offset and flip, drawn with stateless ops
    from the `[2]` `seed`, so the result depends on the seed only.
    """
    height, width = images.shape[1], images.shape[2]
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    batch = tf.shape(images)[0]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])

    def offsets(s):
        return tf.random.stateless_uniform(
            [batch], seed=s, minval=0, maxval=2 * pad + 1, dtype=tf.int32
        )

    rows = offsets(seeds[0])[:, None] + tf.range(height)[None, :]
    cols = offsets(seeds[1])[:, None] + tf.range(width)[None, :]
    images = tf.gather(padded, rows, axis=1, batch_dims=1)
    images = tf.gather(images, cols, axis=2, batch_dims=1)
    if flip:
        mirror = tf.random.stateless_uniform([batch], seed=seeds[2]) < 0.5
        images = tf.where(
            mirror[:, None, None, None], tf.reverse(images, axis=[2]), images
        )
    return images


def load(
    name,
    split="train",
    batch_size=128,
    samples_per_class=None,
    seed=0,
    augment=None,
    shuffle=None,
    manual_dir=None,
    data_dir=None,
    normalize=True,
    drop_remainder=False,
    cache=True,
    source="auto",
    image_size=None,
):
    """Loads a verified data set or an image folder as a batched `tf.data.Dataset`.

    The pipeline keeps the (optionally subsetted) examples in memory, shuffles
    their indices with `seed`, batches them, gathers each batch, augments it
    with stateless random ops seeded from `seed`, and prefetches. Two
    pipelines built with the same arguments yield the same batches, epoch
    after epoch; each epoch (each new iterator, as `Model.fit` makes) draws a
    new order and new augmentations.

    Images are float32, shape `(batch, height, width, channels)`, scaled to
    [0, 1] (`normalize=True`) or left in [0, 255]; they are not standardized,
    so add e.g. a `keras.layers.Normalization` layer in the model if wanted.
    Labels are int32 class indices, shape `(batch,)`.

    Augmentation zero-pads (4 pixels for CIFAR, 2 for the 28x28 sets, 1/8 of
    the image height for image folders), crops a random window of the
    original size, and flips horizontally at random (not for MNIST).

    An image folder (see the module docstring) goes through the same
    pipeline, with the arrays of `load_arrays(name, split,
    image_size=image_size)`; its test split, when it has no `test/`
    sub-folder, is a fixed 20% of every class, whatever `seed` is.

    Args:
        name: One of `"fashion_mnist"`, `"mnist"`, `"cifar10"`, `"cifar100"`,
            or the path of an image folder.
        split: `"train"` or `"test"`.
        batch_size: Examples per batch.
        samples_per_class: If set, keep only this many examples of each class,
            chosen by `subset_indices(labels, samples_per_class, seed)`.
        seed: Integer seed for the subset, the shuffling and the
            augmentation. None draws fresh randomness (not reproducible).
        augment: Whether to augment; defaults to True for the CIFAR train
            split and False otherwise (image folders included).
        shuffle: Whether to shuffle; defaults to True for the train split.
        manual_dir: Directory with the raw files; see `resolve_manual_dir`.
            Ignored for image folders.
        data_dir: tfds data directory, used by `source="tfds"` (or `"auto"`).
            Ignored for image folders.
        normalize: Scale pixels to [0, 1] (True) or keep [0, 255] (False).
        drop_remainder: Drop the last, smaller batch.
        cache: Keep a float32 copy of the examples in memory, so each epoch
            only gathers (4x the uint8 size, e.g. ~600 MB for the CIFAR train
            split). When False, uint8 is kept and converted batch by batch.
        source: `"auto"`, `"direct"` or `"tfds"`; see `load_arrays`. Ignored
            for image folders.
        image_size: For image folders: `(height, width)`, or an int for
            square images, to resize every image to (bilinear). Without it,
            all images must have the same size. A built-in set accepts only
            its own size here.

    Returns:
        A `tf.data.Dataset` of `(images, labels)` batches with known
        cardinality.

    Raises:
        MissingDataError: If the files are not found (the message says which
            files to put where).
        DataVerificationError: If a file fails verification.
        ValueError: For an unknown data set, split or source, a non-positive
            `batch_size`, a `samples_per_class` a class cannot supply, or an
            unusable image folder (see `load_arrays`).

    Example:

    >>> ds = keras_vid.data.load("fashion_mnist", samples_per_class=100, seed=1)
    >>> images, labels = next(iter(ds))
    >>> images.shape, labels.dtype
    (TensorShape([128, 28, 28, 1]), tf.int32)

    An image folder `photos/` with `photos/train/<class>/*.jpg`:

    ```python
    train = keras_vid.data.load("photos/", "train", samples_per_class=20,
                                seed=1, image_size=(96, 96), augment=True)
    ```
    """
    _require_tf("keras_vid.data.load (a tf.data pipeline)")
    name, classes = split_classes(name)
    path = _folder_path(name)
    spec = None if path is not None else _spec(name)
    _check_split(split)
    if not _is_positive_int(batch_size):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if shuffle is None:
        shuffle = split == "train"

    if spec is not None:
        _check_builtin_size(spec, image_size)
        if augment is None:
            augment = spec.default_augment and split == "train"
        x, y = load_arrays(name, split, manual_dir, source=source, data_dir=data_dir)
        num_classes = spec.num_classes
    else:
        folder, arrays = _load_folder(path, image_size)
        x, y = arrays[split]
        if samples_per_class is not None and classes is None:
            # (With a class selection, subset_indices checks the kept ones.)
            _check_folder_counts(folder, split, y, samples_per_class)
        augment = bool(augment)
        num_classes = len(folder.class_names)

    if classes is not None:
        x, y = _select_classes(x, y, classes, num_classes, f"{name}:{classes}")
        num_classes = len(classes)
    if samples_per_class is not None:
        keep = subset_indices(y, samples_per_class, seed, num_classes)
        x, y = x[keep], y[keep]
    pad, flip = _augment_params(spec, x)
    return _pipeline(
        x,
        y,
        batch_size=batch_size,
        seed=seed,
        augment=augment,
        shuffle=shuffle,
        pad=pad,
        flip=flip,
        normalize=normalize,
        drop_remainder=drop_remainder,
        cache=cache,
    )


def _pipeline(
    x,
    y,
    *,
    batch_size,
    seed,
    augment,
    shuffle,
    pad,
    flip,
    normalize,
    drop_remainder,
    cache,
):
    """The `tf.data` pipeline of `load` over uint8 images `x` and labels `y`."""
    num = len(y)
    scale = 1.0 / 255.0 if normalize else 1.0

    def to_float(images):
        return tf.cast(images, tf.float32) * scale

    if cache:  # numpy converts large arrays much faster than an eager op.
        x = np.multiply(x, np.float32(scale), dtype=np.float32)
    # Host memory: the pipeline runs on the CPU, keep its data there.
    with tf.device("/CPU:0"):
        images = tf.convert_to_tensor(x)
        labels = tf.convert_to_tensor(y, dtype=tf.int32)
    finish = (lambda t: t) if cache else to_float

    ds = tf.data.Dataset.range(num)
    if shuffle:
        ds = ds.shuffle(num, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if augment:
        # One [2] seed per batch; a new stream each epoch, the same every run.
        seeds = tf.data.Dataset.random(
            seed=None if seed is None else seed + 1,
            rerandomize_each_iteration=True,
        ).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))

        def batch_fn(index, pair):
            batch = _augment(tf.gather(images, index), pair, pad, flip)
            return finish(batch), tf.gather(labels, index)

    else:

        def batch_fn(index):
            return finish(tf.gather(images, index)), tf.gather(labels, index)

    ds = ds.map(batch_fn, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _flat_folder(path, image_size):
    """Every image under `path` (any layout), as one uint8 array."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(
            f"The unlabelled image folder {str(path)!r} does not exist or is not "
            "a directory. Pass the folder that holds the images (sub-folders "
            "are read too)."
        )
    files = _image_files(root)
    if not files:
        raise ValueError(
            f"The unlabelled image folder {root} holds no image "
            f"({', '.join(IMAGE_EXTENSIONS)}). Put the images in it, or pass "
            "another folder."
        )
    size = _image_size(image_size)
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    key = ("unlabeled", str(root.resolve()), size, stamp)
    if key not in _ARRAY_CACHE:
        logger.info("Decoding the %d unlabelled images of %s", len(files), root)
        images = _decode_all(files, size, root)
        sizes = {im.shape[:2] for im in images}
        if len(sizes) > 1:
            raise ValueError(
                f"The unlabelled images of {root} have {len(sizes)} different sizes "
                f"(height x width): {sorted(sizes)[:5]}. Pass image_size=(height, "
                "width) (or an int) to resize them all to the labelled images' size."
            )
        _ARRAY_CACHE[key] = np.stack(images)
    return _ARRAY_CACHE[key]


def load_unlabeled(
    name,
    samples_per_class=None,
    seed=0,
    batch_size=128,
    augment=None,
    shuffle=True,
    manual_dir=None,
    data_dir=None,
    normalize=True,
    cache=True,
    source="auto",
    image_size=None,
):
    """Loads unlabelled training images as batches of `(images, labels=-1)`.

    `name` is either a data set, or a labelled image folder (as in `load`)
    with `samples_per_class`: the training images not drawn by `load(name,
    samples_per_class=N, seed=seed)` are returned, the rest of the training
    set, as if nobody had labelled it. Or `name` is a folder read without
    labels (no `samples_per_class`): every image under it, in any layout,
    such as the photos nobody annotated. Every label
    is `UNLABELED` (-1); mix the result into a labelled dataset with
    `with_unlabeled`. The batches go through the same pipeline as `load`'s.

    Args:
        name: a data set name or labelled folder, with `samples_per_class`;
            or a folder of unlabelled images, without it.
        samples_per_class: the labelled subset's N; its images are left out.
            None keeps every training image of a data set.
        seed: the labelled subset's seed, and the seed of the shuffling and
            the augmentation.
        batch_size, augment, shuffle, manual_dir, data_dir, normalize, cache,
            source, image_size: as in `load`. `augment` defaults to the data
            set's default (`default_augment`), and False for a folder.

    Returns:
        A `tf.data.Dataset` of `(images, labels)` batches; the labels are -1.

    Raises:
        ValueError: for a missing or empty folder, images of several sizes
            without `image_size`, or no image left after the labelled subset.

    Example:

    >>> rest = keras_vid.data.load_unlabeled(
    ...     "fashion_mnist", samples_per_class=100, seed=0)
    >>> images, labels = next(iter(rest))
    >>> int(labels[0])
    -1
    """
    _require_tf("keras_vid.data.load_unlabeled (a tf.data pipeline)")
    base, classes = split_classes(name)
    if classes is not None or _folder_path(base) is None or samples_per_class:
        x, y = load_arrays(
            name,
            "train",
            manual_dir,
            source=source,
            data_dir=data_dir,
            image_size=image_size,
        )
        if augment is None:
            augment = default_augment(name)
        if samples_per_class is not None:
            keep = np.ones(len(y), bool)
            n = len(classes) if classes else _num_classes(base, image_size)
            keep[subset_indices(y, samples_per_class, seed, n)] = False
            x = x[keep]
        spec = None if _folder_path(base) is not None else _spec(base)
    else:
        x = _flat_folder(base, image_size)
        augment = bool(augment)
        spec = None
    pad, flip = _augment_params(spec, x)
    if len(x) == 0:
        raise ValueError(
            f"No unlabelled image is left in {name!r} once the labelled subset "
            f"(samples_per_class={samples_per_class}) is removed."
        )
    return _pipeline(
        x,
        np.full(len(x), UNLABELED, np.int32),
        batch_size=batch_size,
        seed=seed,
        augment=augment,
        shuffle=shuffle,
        pad=pad,
        flip=flip,
        normalize=normalize,
        drop_remainder=False,
        cache=cache,
    )


def _element_parts(spec):
    parts = spec if isinstance(spec, tuple) else (spec,)
    return parts[0], parts[1] if len(parts) > 1 else None, len(parts)


def with_unlabeled(labeled, unlabeled, ratio=1.0, seed=0, batch_size=None):
    """Adds unlabelled examples to every batch of a labelled dataset.

    Each labelled batch of `B` examples gets `round(ratio * B)` unlabelled
    ones after it, with the label `UNLABELED` (-1): a `keras_vid.Distiller`
    trains its task loss, metrics and label-based terms (DKD) on the labelled
    examples only, and its other terms (VID, KD, DIST, FitNet, AT, NST) on
    all of them. An epoch is still one pass over the labelled data; the
    unlabelled stream is shuffled and repeated. Give a stream that
    reshuffles on every pass (as `load_unlabeled` and `cache_teacher(...,
    shuffle_buffer=n)` do), so that each epoch draws other unlabelled
    examples; a warning says when it does not.

    Both datasets may come from `keras_vid.teacher_cache.cache_teacher` (cache
    each one, then mix them), or neither.

    Args:
        labeled: a batched `tf.data.Dataset` of `(x, y)` or `(x, y,
            sample_weight)`, with integer class ids `y` of shape `(batch,)` or
            `(batch, 1)`.
        unlabeled: a batched `tf.data.Dataset` of `x`, `(x,)` or `(x, y)` (its
            `y` is ignored), such as `load_unlabeled`'s.
        ratio: unlabelled examples per labelled one, > 0.
        seed: the seed of the unlabelled stream's shuffle.
        batch_size: the labelled batch size `B`. Needed only where the
            labelled dataset's batch axis is not static (batches made
            without `drop_remainder`): without it, the first batch is read
            to learn `B`, and reading it advances a seeded
            `shuffle(..., reshuffle_each_iteration=True)` by one pass, so
            training then sees the second pass's order first.

    Returns:
        A `tf.data.Dataset` with the labelled dataset's cardinality.

    Raises:
        ValueError: if the images differ in shape or structure, the labels
            are not class ids, or `ratio` or `batch_size` is not positive.

    Example:

    >>> labeled = keras_vid.data.load("fashion_mnist", samples_per_class=10)
    >>> rest = keras_vid.data.load_unlabeled(
    ...     "fashion_mnist", samples_per_class=10)
    >>> mixed = keras_vid.data.with_unlabeled(labeled, rest, ratio=3)
    >>> images, labels = next(iter(mixed))
    >>> images.shape[0], int(tf.reduce_sum(tf.cast(labels >= 0, "int32")))
    (400, 100)
    """
    _require_tf("keras_vid.data.with_unlabeled (tf.data pipelines)")
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        ratio = float("nan")
    if not ratio > 0 or not np.isfinite(ratio):
        raise ValueError(
            f"ratio must be a finite number > 0 (unlabelled examples per labelled "
            f"one). Received: ratio={ratio!r}."
        )
    lx, ly, arity = _element_parts(labeled.element_spec)
    ux, _, _ = _element_parts(unlabeled.element_spec)
    if ly is None:
        raise ValueError(
            "with_unlabeled needs a labelled dataset of (x, y) batches; received "
            f"elements {labeled.element_spec}."
        )
    if not ly.dtype.is_integer or not (
        ly.shape.rank == 1 or (ly.shape.rank == 2 and ly.shape[-1] == 1)
    ):
        raise ValueError(
            "with_unlabeled marks unlabelled examples with the class id -1, so the "
            "labelled dataset's labels must be integer class ids of shape (batch,) "
            f"or (batch, 1). Received labels {ly}. Convert one-hot labels with "
            "argmax."
        )
    try:
        tf.nest.assert_same_structure(lx, ux)
    except (ValueError, TypeError):
        raise ValueError(
            "The labelled and unlabelled inputs differ in structure: "
            f"{lx} against {ux}. Cache both with the teacher cache, or neither."
        ) from None
    for a, b in zip(tf.nest.flatten(lx), tf.nest.flatten(ux)):
        if not a.shape[1:].is_compatible_with(b.shape[1:]) or a.dtype != b.dtype:
            raise ValueError(
                "The unlabelled images must have the labelled ones' shape and dtype "
                f"(without the batch axis): labelled {a.shape[1:]} {a.dtype.name}, "
                f"unlabelled {b.shape[1:]} {b.dtype.name}. Load them with the same "
                "image_size and channels (load_unlabeled(..., image_size=...))."
            )
    batch = tf.nest.flatten(lx)[0].shape[0]
    if batch_size is not None:
        if not _is_positive_int(batch_size) or batch not in (None, batch_size):
            raise ValueError(
                "batch_size must be the labelled dataset's batch size, a positive "
                f"integer (its batch axis is {batch}). Received: "
                f"batch_size={batch_size!r}."
            )
        batch = int(batch_size)
    if batch is None:
        batch = int(tf.nest.flatten(next(iter(labeled))[0])[0].shape[0])
    size = max(1, round(ratio * batch))
    # Every epoch restarts the unlabelled stream: unless it reshuffles, each
    # epoch would draw the same unlabelled images.
    a, b = (tf.nest.flatten(next(iter(unlabeled)))[0] for _ in range(2))
    if a.shape == b.shape and np.array_equal(a, b):
        warnings.warn(
            "The unlabelled dataset yields the same first batch on every pass, "
            "and each epoch restarts it, so every epoch would draw the same "
            "unlabelled images. Shuffle it anew each pass: "
            "`.shuffle(n, reshuffle_each_iteration=True)` (load_unlabeled "
            "does), or cache_teacher(..., shuffle_buffer=n).",
            stacklevel=2,
        )

    def inputs(*element):
        return element[0]

    stream = unlabeled
    if isinstance(unlabeled.element_spec, tuple):
        stream = unlabeled.map(inputs)
    stream = (
        stream.unbatch()
        .shuffle(10 * size, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(size, drop_remainder=True)
    )

    def mix(element, extra):
        x, y = element[0], element[1]
        x = tf.nest.map_structure(lambda a, b: tf.concat([a, b], 0), x, extra)
        n = tf.shape(tf.nest.flatten(extra)[0])[0]
        shape = tf.concat([[n], tf.shape(y)[1:]], 0)
        fill = tf.fill(shape, tf.cast(UNLABELED, y.dtype))
        out = (x, tf.concat([y, fill], 0))
        if arity > 2:
            w = element[2]
            ones = tf.ones(tf.concat([[n], tf.shape(w)[1:]], 0), w.dtype)
            out += (tf.concat([w, ones], 0),)
        return out

    mixed = tf.data.Dataset.zip((labeled, stream)).map(
        lambda element, extra: mix(element, extra), num_parallel_calls=tf.data.AUTOTUNE
    )
    return mixed.prefetch(tf.data.AUTOTUNE)
