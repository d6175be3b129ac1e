"""Tests for keras_vid.data: tiny fake files only; no network."""

import dataclasses
import functools
import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from keras_vid import data

IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def sha256(blob):
    return hashlib.sha256(blob).hexdigest()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No env var, no system directories, an empty array cache."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "SYSTEM_DIRS", {})
    data.clear_cache()
    yield
    data.clear_cache()


def idx_bytes(array, magic):
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def gzip_named(content, name, mtime=1234):
    """gzip with the original file name in the header (like the published files)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buf, mtime=mtime) as f:
        f.write(content)
    return buf.getvalue()


def gzip_plain(content):
    """gzip without a file name (like Debian's re-gzipped files)."""
    return gzip.compress(content, mtime=0)


def strip_name(named_gz):
    """Drops the FNAME field of a gzip header, keeping the deflate stream."""
    assert named_gz[3] == 0x08
    end = named_gz.index(b"\0", 10)
    return named_gz[:3] + b"\0" + named_gz[4:10] + named_gz[end + 1 :]


def tiny_idx_arrays(split, per_class, seed=0):
    rng = np.random.default_rng(seed + (split == "test"))
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 256, size=(labels.size, 28, 28), dtype=np.uint8)
    return images, labels


def write_tiny_idx(
    monkeypatch, directory, name="fashion_mnist", compress=gzip_named, register=True
):
    """Writes tiny idx files (4 per class train, 2 per class test) into `directory`.

    Returns {split: (images, labels)} and the contents written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    monkeypatch.setitem(
        data.DATASETS,
        name,
        dataclasses.replace(data.DATASETS[name], num_train=40, num_test=20),
    )
    hashes = {}
    arrays = {}
    for split, per_class in (("train", 4), ("test", 2)):
        images, labels = tiny_idx_arrays(split, per_class)
        arrays[split] = (images, labels)
        img_stem, lab_stem = IDX_STEMS[split]
        for stem, content in (
            (img_stem, idx_bytes(images, 2051)),
            (lab_stem, idx_bytes(labels, 2049)),
        ):
            hashes[stem] = sha256(content)
            if compress is None:
                (directory / stem).write_bytes(content)
            else:
                blob = (
                    compress(content, stem)
                    if compress is gzip_named
                    else compress(content)
                )
                (directory / f"{stem}.gz").write_bytes(blob)
    if register:
        monkeypatch.setitem(data.CONTENT_SHA256, name, hashes)
    return arrays


def cifar_records(labels, images, coarse=None):
    chw = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)
    cols = [labels[:, None].astype(np.uint8), chw]
    if coarse is not None:
        cols.insert(0, coarse[:, None].astype(np.uint8))
    return np.concatenate(cols, axis=1).tobytes()


def write_tiny_cifar(monkeypatch, directory, name="cifar10", tamper=None, drop=None):
    """Writes a tiny CIFAR binary tarball; returns (path, {split: (x, y)})."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = dataclasses.replace(data.DATASETS[name], num_train=50, num_test=10)
    monkeypatch.setitem(data.DATASETS, name, spec)
    rng = np.random.default_rng(7)
    members, arrays = {}, {}
    for split in ("train", "test"):
        n = spec.num_examples(split)
        y = np.arange(n) % spec.num_classes
        x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        arrays[split] = (x, y)
        names = spec.members[split]
        per = n // len(names)
        for i, member in enumerate(names):
            sl = slice(i * per, (i + 1) * per)
            coarse = y[sl] % 20 if spec.label_bytes == 2 else None
            members[member] = cifar_records(y[sl], x[sl], coarse)
    for member in spec.extra_members:
        members[member] = b"a\nb\n"
    if tamper:
        blob = bytearray(members[tamper])
        blob[100] ^= 0xFF
        members[tamper] = bytes(blob)
    path = directory / spec.files[0]
    with tarfile.open(path, "w:gz") as tar:
        for member, content in members.items():
            if member == drop:
                continue
            ti = tarfile.TarInfo(member)
            ti.size = len(content)
            tar.addfile(ti, io.BytesIO(content))
    return path, arrays


def register_archive(monkeypatch, name, path):
    table = dict(data.ARCHIVE_SHA256[name])
    table[path.name] = sha256(path.read_bytes())
    monkeypatch.setitem(data.ARCHIVE_SHA256, name, table)


# -- subset_indices ---------------------------------------------------------


def test_subset_indices_exact_counts_per_class():
    labels = np.repeat(np.arange(10), 50)
    np.random.default_rng(1).shuffle(labels)
    idx = data.subset_indices(labels, 7, seed=3)
    assert idx.shape == (70,)
    assert len(np.unique(idx)) == 70
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=10), [7] * 10)


def test_subset_indices_deterministic_seeded_and_nested():
    labels = np.repeat(np.arange(5), 40)
    a = data.subset_indices(labels, 10, seed=0)
    np.testing.assert_array_equal(a, data.subset_indices(labels, 10, seed=0))
    assert not np.array_equal(a, data.subset_indices(labels, 10, seed=1))
    # A larger subset with the same seed contains the smaller one.
    assert set(a) <= set(data.subset_indices(labels, 20, seed=0))


def test_subset_indices_over_ask_names_class_count_and_ask():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 10)
    with pytest.raises(ValueError, match=r"samples_per_class=5.*class 1 has 3"):
        data.subset_indices(labels, 5, seed=0)
    # A class that is absent entirely, when num_classes says it exists.
    with pytest.raises(ValueError, match="class 3 has 0"):
        data.subset_indices(labels, 2, seed=0, num_classes=4)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_subset_indices_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="positive integer"):
        data.subset_indices(np.zeros(10, dtype=int), bad, seed=0)


@pytest.mark.parametrize("bad", [0, -8, 2.5, True])
def test_load_rejects_a_bad_batch_size_before_reading(bad):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        data.load("fashion_mnist", "train", batch_size=bad, manual_dir="/nonexistent")


def test_info():
    assert data.info("cifar100") == {
        "num_classes": 100,
        "input_shape": (32, 32, 3),
        "num_train": 50000,
        "num_test": 10000,
        "title": "CIFAR-100",
        "files": ("cifar-100-binary.tar.gz",),
    }
    assert data.info("fashion_mnist")["input_shape"] == (28, 28, 1)
    with pytest.raises(ValueError, match="Unknown data set"):
        data.info("imagenet")


# -- locating files ---------------------------------------------------------


def test_missing_files_message_lists_files_and_directory(tmp_path):
    target = tmp_path / "nowhere"
    with pytest.raises(data.MissingDataError) as err:
        data.load("fashion_mnist", manual_dir=target)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for fname in data.info("fashion_mnist")["files"]:
        assert fname in msg
    assert f"this directory: {target}" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert data.ENV_VAR in msg and "--manual_dir" in msg


def test_missing_files_message_for_partial_cifar_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    (tmp_path / "unrelated.txt").write_text("x")
    with pytest.raises(data.MissingDataError) as err:
        data.resolve_manual_dir("cifar10")
    msg = str(err.value)
    assert "cifar-10-binary.tar.gz" in msg and str(tmp_path) in msg
    assert "apt-get" not in msg


def test_resolve_order_explicit_env_system_and_subdir(tmp_path, monkeypatch):
    explicit, env, system = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (explicit / "fashion_mnist", env, system):
        d.mkdir(parents=True)
        for fname in data.info("fashion_mnist")["files"]:
            (d / fname).write_bytes(b"")
    monkeypatch.setattr(data, "SYSTEM_DIRS", {"fashion_mnist": (system,)})
    assert data.resolve_manual_dir("fashion_mnist") == system
    monkeypatch.setenv(data.ENV_VAR, str(env))
    assert data.resolve_manual_dir("fashion_mnist") == env
    assert data.resolve_manual_dir("fashion_mnist", explicit) == (
        explicit / "fashion_mnist"
    )


# -- verification of idx files ---------------------------------------------


def test_load_arrays_reads_verified_idx(tmp_path, monkeypatch):
    arrays = write_tiny_idx(monkeypatch, tmp_path)
    x, y = data.load_arrays("fashion_mnist", "train", tmp_path)
    assert x.shape == (40, 28, 28, 1) and x.dtype == np.uint8
    assert y.dtype == np.int32
    np.testing.assert_array_equal(x[..., 0], arrays["train"][0])
    np.testing.assert_array_equal(y, arrays["train"][1])
    assert not x.flags.writeable  # Shared through the in-process cache.
    assert data.load_arrays("fashion_mnist", "train", tmp_path)[0] is x


@pytest.mark.parametrize("compress", [gzip_named, gzip_plain, None])
def test_regzipped_or_uncompressed_content_verifies(tmp_path, monkeypatch, compress):
    """The Debian case: same content, a different gzip header (or none)."""
    arrays = write_tiny_idx(monkeypatch, tmp_path, compress=compress)
    x, y = data.load_arrays("fashion_mnist", "test", tmp_path, source="direct")
    np.testing.assert_array_equal(x[..., 0], arrays["test"][0])
    np.testing.assert_array_equal(y, arrays["test"][1])


def test_same_content_with_and_without_name_header_both_verify(tmp_path, monkeypatch):
    named, plain = tmp_path / "named", tmp_path / "plain"
    write_tiny_idx(monkeypatch, named, compress=gzip_named)
    write_tiny_idx(monkeypatch, plain, compress=gzip_plain)
    stem = "train-images-idx3-ubyte.gz"
    assert (named / stem).read_bytes() != (plain / stem).read_bytes()
    a = data.load_arrays("fashion_mnist", "train", named)
    b = data.load_arrays("fashion_mnist", "train", plain)
    np.testing.assert_array_equal(a[0], b[0])


def test_tampered_idx_file_is_refused(tmp_path, monkeypatch):
    write_tiny_idx(monkeypatch, tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[-1] = (content[-1] + 1) % 10  # Still a valid label, different data.
    path.write_bytes(gzip_plain(bytes(content)))
    expected = data.CONTENT_SHA256["fashion_mnist"]["train-labels-idx1-ubyte"]
    with pytest.raises(data.DataVerificationError) as err:
        data.load_arrays("fashion_mnist", "train", tmp_path)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert str(path) in msg
    assert expected in msg and sha256(bytes(content)) in msg


def test_truncated_gzip_is_refused(tmp_path, monkeypatch):
    write_tiny_idx(monkeypatch, tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(data.DataVerificationError, match="not a complete gzip"):
        data.load_arrays("fashion_mnist", "test", tmp_path)


def test_file_of_unknown_content_is_refused(tmp_path, monkeypatch):
    """MNIST has no recorded content hashes: only the published .gz verifies."""
    write_tiny_idx(monkeypatch, tmp_path, name="mnist", register=False)
    with pytest.raises(data.DataVerificationError, match="Cannot verify") as err:
        data.load_arrays("mnist", "train", tmp_path)
    assert data.ARCHIVE_SHA256["mnist"]["train-images-idx3-ubyte.gz"] in str(err.value)


def test_wrong_example_count_is_refused(tmp_path, monkeypatch):
    write_tiny_idx(monkeypatch, tmp_path)
    monkeypatch.setitem(
        data.DATASETS,
        "fashion_mnist",
        dataclasses.replace(data.DATASETS["fashion_mnist"], num_train=41),
    )
    with pytest.raises(data.DataVerificationError, match="expected \\(41, 28, 28\\)"):
        data.load_arrays("fashion_mnist", "train", tmp_path)


def test_canonical_gzip_header_restoration():
    content = b"idx content" * 100
    named = gzip_named(content, "t10k-labels-idx1-ubyte", mtime=1504176627)
    stripped = strip_name(named)
    assert gzip.decompress(stripped) == content
    assert len(named) - len(stripped) == len("t10k-labels-idx1-ubyte") + 1
    restored = data._canonical_gzip(stripped, "t10k-labels-idx1-ubyte.gz", 1504176627)
    assert restored == named
    assert data._canonical_gzip(named, "t10k-labels-idx1-ubyte.gz", 1) is None


# -- CIFAR tarballs -----------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_tarball_reader(tmp_path, monkeypatch, name):
    path, arrays = write_tiny_cifar(monkeypatch, tmp_path, name)
    register_archive(monkeypatch, name, path)
    for split in ("train", "test"):
        x, y = data.load_arrays(name, split, tmp_path, source="direct")
        assert x.shape == (len(arrays[split][1]), 32, 32, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(x, arrays[split][0])
        np.testing.assert_array_equal(y, arrays[split][1])


def test_cifar_tarball_with_unknown_hash_is_refused(tmp_path, monkeypatch):
    path, _ = write_tiny_cifar(monkeypatch, tmp_path)
    with pytest.raises(data.DataVerificationError, match="Cannot verify") as err:
        data.load_arrays("cifar10", "train", tmp_path)
    assert data.ARCHIVE_SHA256["cifar10"]["cifar-10-binary.tar.gz"] in str(err.value)


def test_cifar_tampered_member_is_refused(tmp_path, monkeypatch):
    """Content hashes of members, when recorded, catch a re-packed tarball."""
    path, _ = write_tiny_cifar(monkeypatch, tmp_path)
    with tarfile.open(path) as tar:
        good = {m.name: sha256(tar.extractfile(m).read()) for m in tar if m.isfile()}
    monkeypatch.setitem(data.CONTENT_SHA256, "cifar10", good)
    assert data.load_arrays("cifar10", "test", tmp_path)[0].shape == (10, 32, 32, 3)
    data.clear_cache()
    member = "cifar-10-batches-bin/data_batch_3.bin"
    write_tiny_cifar(monkeypatch, tmp_path, tamper=member)
    with pytest.raises(data.DataVerificationError) as err:
        data.load_arrays("cifar10", "train", tmp_path)
    assert member in str(err.value) and good[member] in str(err.value)


def test_cifar_missing_member_is_refused(tmp_path, monkeypatch):
    member = "cifar-10-batches-bin/test_batch.bin"
    path, _ = write_tiny_cifar(monkeypatch, tmp_path, drop=member)
    register_archive(monkeypatch, "cifar10", path)
    with pytest.raises(data.DataVerificationError, match=f"lacks {member}"):
        data.load_arrays("cifar10", "train", tmp_path)


def test_truncated_cifar_tarball_is_refused(tmp_path, monkeypatch):
    path, _ = write_tiny_cifar(monkeypatch, tmp_path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(data.DataVerificationError, match="not a complete tar.gz"):
        data.load_arrays("cifar10", "train", tmp_path)


# -- load() pipelines -----------------------------------------------------------


def test_load_batches_shapes_and_dtypes(tmp_path, monkeypatch):
    write_tiny_idx(monkeypatch, tmp_path)
    ds = data.load("fashion_mnist", "train", batch_size=16, manual_dir=tmp_path)
    batches = list(ds)
    assert [int(b[0].shape[0]) for b in batches] == [16, 16, 8]
    images, labels = batches[0]
    assert images.dtype.name == "float32" and images.shape[1:] == (28, 28, 1)
    assert labels.dtype.name == "int32"
    assert 0.0 <= float(np.min(images)) and float(np.max(images)) <= 1.0
    raw = data.load(
        "fashion_mnist", "test", manual_dir=tmp_path, normalize=False, cache=False
    )
    images, _ = next(iter(raw))
    assert images.dtype.name == "float32" and float(np.max(images)) > 1.0
    dropped = data.load(
        "fashion_mnist", batch_size=16, manual_dir=tmp_path, drop_remainder=True
    )
    assert int(dropped.cardinality()) == 2


def test_load_test_split_is_ordered_and_matches_arrays(tmp_path, monkeypatch):
    arrays = write_tiny_idx(monkeypatch, tmp_path)
    (images, labels), *_ = list(
        data.load("fashion_mnist", "test", batch_size=100, manual_dir=tmp_path)
    )
    np.testing.assert_allclose(images.numpy()[..., 0], arrays["test"][0] / 255.0)
    np.testing.assert_array_equal(labels, arrays["test"][1])


def test_load_samples_per_class_gives_n_times_classes(tmp_path, monkeypatch):
    write_tiny_idx(monkeypatch, tmp_path)
    ds = data.load(
        "fashion_mnist", batch_size=7, samples_per_class=3, manual_dir=tmp_path
    )
    for _ in range(2):  # Every epoch.
        labels = np.concatenate([lab.numpy() for _, lab in ds])
        assert labels.size == 30
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [3] * 10)
    with pytest.raises(ValueError, match="class 0 has 4"):
        data.load("fashion_mnist", samples_per_class=5, manual_dir=tmp_path)


def test_shuffle_is_seeded(tmp_path, monkeypatch):
    write_tiny_idx(monkeypatch, tmp_path)

    def labels(seed):
        ds = data.load("fashion_mnist", batch_size=40, seed=seed, manual_dir=tmp_path)
        return [next(iter(ds))[1].numpy() for _ in range(2)]

    first, second = labels(0)
    again = labels(0)
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])
    assert not np.array_equal(first, second)  # Reshuffled each epoch.
    assert not np.array_equal(first, labels(1)[0])


def test_augmentation_changes_images_keeps_shape_and_is_reproducible(
    tmp_path, monkeypatch
):
    write_tiny_cifar(monkeypatch, tmp_path)
    register_archive(monkeypatch, "cifar10", tmp_path / "cifar-10-binary.tar.gz")

    def first_batch(**kwargs):
        kwargs = {"batch_size": 50, "shuffle": False, "manual_dir": tmp_path, **kwargs}
        return next(iter(data.load("cifar10", "train", **kwargs)))[0].numpy()

    plain = first_batch(augment=False)
    augmented = first_batch()  # Default for CIFAR train: augment.
    assert augmented.shape == plain.shape == (50, 32, 32, 3)
    assert augmented.dtype == np.float32
    assert not np.allclose(plain, augmented)
    np.testing.assert_array_equal(augmented, first_batch())
    # A new epoch draws new crops and flips, the same in every run.
    ds = data.load("cifar10", batch_size=50, shuffle=False, manual_dir=tmp_path)
    epochs = [next(iter(ds))[0].numpy() for _ in range(2)]
    np.testing.assert_array_equal(epochs[0], augmented)
    assert not np.allclose(epochs[0], epochs[1])
    ds = data.load("cifar10", batch_size=50, shuffle=False, manual_dir=tmp_path)
    again = [next(iter(ds))[0].numpy() for _ in range(2)]
    np.testing.assert_array_equal(epochs[1], again[1])
    np.testing.assert_array_equal(augmented, first_batch(cache=False))
    assert not np.allclose(augmented, first_batch(seed=5))
    # The test split is not augmented by default.
    test_images = next(iter(data.load("cifar10", "test", manual_dir=tmp_path)))[0]
    assert test_images.shape == (10, 32, 32, 3)


# -- tfds -------------------------------------------------------------------------


def test_archive_hashes_match_installed_tfds():
    import tensorflow_datasets as tfds

    checksums = Path(tfds.__file__).parent / "url_checksums"
    for name in data.NAMES:
        rows = (checksums / f"{name}.txt").read_text().split("\n")
        recorded = {}
        for row in filter(None, rows):
            _, _, digest, fname = row.split("\t")
            recorded[fname] = digest
        assert data.ARCHIVE_SHA256[name] == recorded, name


def test_tfds_mock_data_through_load(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    path, _ = write_tiny_cifar(monkeypatch, tmp_path / "manual")
    register_archive(monkeypatch, "cifar10", path)
    with tfds.testing.mock_data(num_examples=20):
        ds = data.load(
            "cifar10",
            "train",
            batch_size=8,
            source="tfds",
            manual_dir=tmp_path / "manual",
            data_dir=tmp_path / "tfds",
        )
        batches = list(ds)
    assert [int(b[0].shape[0]) for b in batches] == [8, 8, 4]
    assert batches[0][0].shape[1:] == (32, 32, 3)
    assert batches[0][0].dtype.name == "float32"
    assert batches[0][1].dtype.name == "int32"


def test_tfds_path_needs_files_to_prepare(tmp_path):
    with pytest.raises(data.MissingDataError, match="cifar-10-binary.tar.gz"):
        data.load_arrays(
            "cifar10",
            "train",
            tmp_path / "manual",
            source="tfds",
            data_dir=tmp_path / "tfds",
        )


def test_tfds_keeps_its_own_checksum_verification(tmp_path, monkeypatch):
    """Our table accepts the tiny tarball; tfds itself must still refuse it."""
    path, _ = write_tiny_cifar(monkeypatch, tmp_path / "manual")
    with pytest.raises(data.DataVerificationError, match="expected"):
        data.load_arrays(
            "cifar10", "train", path.parent, source="tfds", data_dir=tmp_path / "t"
        )
    register_archive(monkeypatch, "cifar10", path)
    with pytest.raises(data.DataVerificationError, match="tfds refused"):
        data.load_arrays(
            "cifar10", "train", path.parent, source="tfds", data_dir=tmp_path / "t"
        )


# -- the real Fashion-MNIST files (skipped where they are absent) ------------------

needs_fmnist = pytest.mark.skipif(
    not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="needs Debian's dataset-fashion-mnist in /usr/share/datasets",
)


@needs_fmnist
def test_real_fashion_mnist_verifies(monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DIRS", {"fashion_mnist": (FMNIST_DIR,)})
    assert data.resolve_manual_dir("fashion_mnist") == FMNIST_DIR
    x, y = data.load_arrays("fashion_mnist", "train")
    assert x.shape == (60000, 28, 28, 1) and y.shape == (60000,)
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    x, y = data.load_arrays("fashion_mnist", "test")
    assert x.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    # Restoring the original gzip header gives the published files exactly.
    for fname, digest in data.ARCHIVE_SHA256["fashion_mnist"].items():
        mtime = data._CANONICAL_GZIP_MTIME["fashion_mnist"][fname]
        blob = (FMNIST_DIR / fname).read_bytes()
        assert sha256(blob) != digest  # Debian's copy, as shipped.
        assert sha256(data._canonical_gzip(blob, fname, mtime)) == digest
    ds = data.load("fashion_mnist", "train", batch_size=500, samples_per_class=50)
    assert sum(int(b[0].shape[0]) for b in ds) == 500


@needs_fmnist
@pytest.mark.slow
def test_real_fashion_mnist_through_tfds(tmp_path, monkeypatch):
    """tfds prepares Debian's files offline, with its checksums on."""
    import tensorflow_datasets as tfds

    monkeypatch.setattr(data, "SYSTEM_DIRS", {"fashion_mnist": (FMNIST_DIR,)})
    # tfds checks every file's checksum before generating; writing only a few
    # examples per split keeps the test short.
    monkeypatch.setattr(
        tfds.download,
        "DownloadConfig",
        functools.partial(tfds.download.DownloadConfig, max_examples_per_split=300),
    )
    x, y = data.load_arrays(
        "fashion_mnist", "test", source="tfds", data_dir=tmp_path / "tfds"
    )
    assert x.shape == (300, 28, 28, 1) and x.dtype == np.uint8
    assert y.dtype == np.int32 and set(np.unique(y)) <= set(range(10))
    # tfds wrote the files' first 300 examples in its own shuffled order; they
    # come back in the files' order, so both sources draw the same subset.
    x_direct, y_direct = data.load_arrays("fashion_mnist", "test", source="direct")
    np.testing.assert_array_equal(x, x_direct[:300])
    np.testing.assert_array_equal(y, y_direct[:300])
    for seed in (0, 1, 2):
        np.testing.assert_array_equal(
            data.subset_indices(y, 5, seed),
            data.subset_indices(y_direct[:300], 5, seed),
        )


@needs_fmnist
def test_tfds_full_split_is_verified_in_file_order(monkeypatch):
    """A whole split in tfds's stored order comes back verified, in file order."""
    from keras_vid._compat import tfds_file_order

    monkeypatch.setattr(data, "SYSTEM_DIRS", {"fashion_mnist": (FMNIST_DIR,)})
    spec = data._spec("fashion_mnist")
    x, y = data.load_arrays("fashion_mnist", "test", source="direct")
    order = tfds_file_order("test", len(y))
    assert not np.array_equal(order, np.arange(len(y)))  # tfds does shuffle.
    x_files, y_files = data._in_file_order(spec, "test", x[order], y[order])
    np.testing.assert_array_equal(x_files, x)
    np.testing.assert_array_equal(y_files, y)
    # Two examples out of place: the content no longer hashes to the files'.
    swapped = order.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    with pytest.raises(data.DataVerificationError, match="orders a split"):
        data._in_file_order(spec, "test", x[swapped], y[swapped])


def test_augmentation_is_a_padded_shift_and_flip():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(16, 8, 8, 3)).astype(np.float32)
    out = data._augment(images, np.array([1, 2]), pad=2, flip=True).numpy()
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)])
    flipped_seen = False
    for image, result in zip(padded, out):
        crops = {
            (dy, dx, flip): np.array_equal(result, (c[:, ::-1] if flip else c))
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
            for c in [image[dy : dy + 8, dx : dx + 8]]
        }
        matches = [k for k, ok in crops.items() if ok]
        assert matches, "not a crop of the padded image"
        flipped_seen |= all(k[2] for k in matches)
    assert flipped_seen
