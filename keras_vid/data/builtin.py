"""The built-in data sets: their files, verification, readers and the tfds path.

`DATASETS` describes Fashion-MNIST, MNIST, CIFAR-10 and CIFAR-100 on disk and
in memory, `resolve_manual_dir` finds their files, and `ARCHIVE_SHA256` and
`CONTENT_SHA256` verify them (see `keras_vid.data`'s docstring). The direct
reader parses the idx files and the CIFAR tarballs; `_load_tfds` goes through
`tfds.load` and puts its examples back in the files' order. Arrays read are
kept in `_ARRAY_CACHE`, which the image folders share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import logging
import os
import struct
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np

from keras_vid._tf import INSTALL as _INSTALL_TF

logger = logging.getLogger(__name__)

ENV_VAR = "KERAS_VID_MANUAL_DIR"
SPLITS = ("train", "test")
SOURCES = ("auto", "direct", "tfds")

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_CIFAR_IMAGE_BYTES = 32 * 32 * 3


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


def clear_cache():
    """Drops the arrays that `load_arrays` keeps in memory.

    Returns:
        None.

    Example:

    >>> keras_vid.data.clear_cache()
    """
    _ARRAY_CACHE.clear()


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
