"""Tests for keras_vid.data.builtin: tiny fake files only; no network."""

import dataclasses
import functools
import gzip
import tarfile
from pathlib import Path

import numpy as np
import pytest
from fake_data import (  # isolated_data: an autouse fixture, imported to apply
    gzip_named,
    gzip_plain,
    isolated_data,  # noqa: F401
    register_archive,
    sha256,
    strip_name,
    write_tiny_cifar,
    write_tiny_idx,
)

from keras_vid import data
from keras_vid.data import builtin

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


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
    monkeypatch.setattr(builtin, "SYSTEM_DIRS", {"fashion_mnist": (system,)})
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
    restored = builtin._canonical_gzip(
        stripped, "t10k-labels-idx1-ubyte.gz", 1504176627
    )
    assert restored == named
    assert builtin._canonical_gzip(named, "t10k-labels-idx1-ubyte.gz", 1) is None


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
    monkeypatch.setattr(builtin, "SYSTEM_DIRS", {"fashion_mnist": (FMNIST_DIR,)})
    assert data.resolve_manual_dir("fashion_mnist") == FMNIST_DIR
    x, y = data.load_arrays("fashion_mnist", "train")
    assert x.shape == (60000, 28, 28, 1) and y.shape == (60000,)
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    x, y = data.load_arrays("fashion_mnist", "test")
    assert x.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    # Restoring the original gzip header gives the published files exactly.
    for fname, digest in data.ARCHIVE_SHA256["fashion_mnist"].items():
        mtime = builtin._CANONICAL_GZIP_MTIME["fashion_mnist"][fname]
        blob = (FMNIST_DIR / fname).read_bytes()
        assert sha256(blob) != digest  # Debian's copy, as shipped.
        assert sha256(builtin._canonical_gzip(blob, fname, mtime)) == digest
    ds = data.load("fashion_mnist", "train", batch_size=500, samples_per_class=50)
    assert sum(int(b[0].shape[0]) for b in ds) == 500


@needs_fmnist
@pytest.mark.slow
def test_real_fashion_mnist_through_tfds(tmp_path, monkeypatch):
    """tfds prepares Debian's files offline, with its checksums on."""
    import tensorflow_datasets as tfds

    monkeypatch.setattr(builtin, "SYSTEM_DIRS", {"fashion_mnist": (FMNIST_DIR,)})
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

    monkeypatch.setattr(builtin, "SYSTEM_DIRS", {"fashion_mnist": (FMNIST_DIR,)})
    spec = builtin._spec("fashion_mnist")
    x, y = data.load_arrays("fashion_mnist", "test", source="direct")
    order = tfds_file_order("test", len(y))
    assert not np.array_equal(order, np.arange(len(y)))  # tfds does shuffle.
    x_files, y_files = builtin._in_file_order(spec, "test", x[order], y[order])
    np.testing.assert_array_equal(x_files, x)
    np.testing.assert_array_equal(y_files, y)
    # Two examples out of place: the content no longer hashes to the files'.
    swapped = order.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    with pytest.raises(data.DataVerificationError, match="orders a split"):
        builtin._in_file_order(spec, "test", x[swapped], y[swapped])
