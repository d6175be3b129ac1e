"""Tests for keras_vid.data.pipeline: subsets, `info`, `load`'s tf.data pipeline."""

import numpy as np
import pytest
from fake_data import (  # isolated_data: an autouse fixture, imported to apply
    isolated_data,  # noqa: F401
    register_archive,
    write_tiny_cifar,
    write_tiny_idx,
)

from keras_vid import data
from keras_vid.data import pipeline

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


def test_augmentation_is_a_padded_shift_and_flip():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(16, 8, 8, 3)).astype(np.float32)
    out = pipeline._augment(images, np.array([1, 2]), pad=2, flip=True).numpy()
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
