"""Tests for keras_vid.data.folders, image folders as a data source: tiny PNGs."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_vid import data
from keras_vid.data import pipeline

# Written in this order; labels must follow the sorted names instead.
CODES = {"zebra": 0, "ant": 1, "moth": 2}
SORTED = ["ant", "moth", "zebra"]


@pytest.fixture(autouse=True)
def _empty_cache():
    data.clear_cache()
    yield
    data.clear_cache()


def pixel(name, index):
    """The grey value that identifies image `index` of class `name`."""
    return 10 + 60 * CODES[name] + 5 * index  # index < 12


def identify(image):
    """(class name, index) of an image written by `write_image`."""
    value = int(np.rint(np.asarray(image, dtype=np.float64).mean()))
    code, rest = divmod(value - 10, 60)
    (name,) = [n for n, c in CODES.items() if c == code]
    return name, rest // 5


def write_image(path, value, size=(8, 8), channels=1, fmt="png"):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((*size, channels), value, dtype=np.uint8)
    if fmt == "png":
        blob = tf.io.encode_png(array)
    else:
        blob = tf.io.encode_jpeg(array, quality=100)
    path.write_bytes(blob.numpy())


def write_class(directory, name, count, start=0, rgb=(), size=(8, 8)):
    for i in range(start, start + count):
        channels = 3 if i in rgb else 1
        path = directory / name / f"img{i:02d}.png"
        write_image(path, pixel(name, i), size, channels)


def flat_folder(root, counts=None, **kwargs):
    counts = counts or {name: 6 for name in CODES}
    for name, count in counts.items():
        write_class(root, name, count, **kwargs)
    return root


def identities(x):
    return [identify(im) for im in x]


def batches(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


# -- arrays, labels, info -----------------------------------------------------


def test_flat_folder_arrays_labels_and_info(tmp_path):
    root = flat_folder(tmp_path / "pets")
    x, y = data.load_arrays(str(root), "train")
    assert x.dtype == np.uint8 and y.dtype == np.int32
    assert x.shape == (15, 8, 8, 1) and y.shape == (15,)
    for image, label in zip(x, y):
        name, _ = identify(image)
        assert label == SORTED.index(name)
    meta = data.info(root)
    assert meta["class_names"] == tuple(SORTED)
    assert meta["num_classes"] == 3
    assert meta["input_shape"] == (8, 8, 1)
    assert (meta["num_train"], meta["num_test"]) == (15, 3)
    assert meta["title"] == "pets"
    expected = {f"{n}/img{i:02d}.png" for n in CODES for i in range(6)}
    assert sorted(meta["files"]) == sorted(expected)
    assert set(meta) == set(data.info("mnist")) | {"class_names"}


def test_automatic_test_split_is_stratified_disjoint_fixed_and_complete(tmp_path):
    counts = {"zebra": 6, "ant": 10, "moth": 3}
    root = flat_folder(tmp_path / "f", counts)
    x_train, y_train = data.load_arrays(root, "train")
    x_test, y_test = data.load_arrays(root, "test")
    train, test = identities(x_train), identities(x_test)
    # 20% per class, rounded, at least one: 6 -> 1, 10 -> 2, 3 -> 1.
    assert np.bincount(y_test).tolist() == [2, 1, 1]
    assert not set(train) & set(test)
    everything = sorted(train + test)
    assert everything == sorted((n, i) for n, c in counts.items() for i in range(c))
    assert [SORTED.index(n) for n, _ in test] == y_test.tolist()
    # The run's seed does not move images between the splits.
    for seed in (0, 7):
        got, _ = batches(data.load(root, "test", seed=seed, shuffle=True))
        assert sorted(identities(np.rint(got * 255))) == sorted(test)
        got, _ = batches(data.load(root, "train", seed=seed))
        assert sorted(identities(np.rint(got * 255))) == sorted(train)


def test_explicit_test_folder_is_used_as_is(tmp_path):
    for name in CODES:
        write_class(tmp_path / "train", name, 4)
        write_class(tmp_path / "test", name, 2, start=4)
    x, y = data.load_arrays(tmp_path, "test")
    assert sorted(identities(x)) == sorted((n, i) for n in CODES for i in (4, 5))
    assert [SORTED.index(identify(im)[0]) for im in x] == y.tolist()
    x, _ = data.load_arrays(tmp_path, "train")
    assert sorted(identities(x)) == sorted((n, i) for n in CODES for i in range(4))
    meta = data.info(tmp_path)
    assert (meta["num_train"], meta["num_test"]) == (12, 6)


def test_train_only_folder_gets_automatic_test_split(tmp_path):
    for name in CODES:
        write_class(tmp_path / "train", name, 5)
    assert np.bincount(data.load_arrays(tmp_path, "test")[1]).tolist() == [1, 1, 1]
    assert len(data.load_arrays(tmp_path, "train")[1]) == 12


# -- the load() pipeline --------------------------------------------------------


def test_load_pipeline_subsets_and_seeds(tmp_path):
    root = flat_folder(tmp_path / "f")  # 5 training images per class.

    def picked(seed, **kwargs):
        ds = data.load(root, batch_size=4, samples_per_class=3, seed=seed, **kwargs)
        assert int(ds.cardinality()) == 3  # ceil(9 / 4)
        x, y = batches(ds)
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.shape == (9, 8, 8, 1)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert np.bincount(y).tolist() == [3, 3, 3]
        ids = identities(np.rint(x * 255))
        assert [SORTED.index(n) for n, _ in ids] == y.tolist()
        return ids

    first = picked(1)
    assert picked(1) == first  # Same seed: same images, same order.
    assert sorted(picked(2)) != sorted(first)
    # The subset is the one subset_indices draws from load_arrays' labels.
    x, y = data.load_arrays(root, "train")
    keep = data.subset_indices(y, 3, seed=1, num_classes=3)
    assert sorted(identities(x[keep])) == sorted(first)
    assert sorted(picked(1, cache=False, shuffle=False)) == sorted(first)


def test_folder_augmentation_pads_by_an_eighth_and_is_seeded(tmp_path):
    root = flat_folder(tmp_path / "f", {name: 2 for name in CODES}, size=(16, 16))

    def run(seed):
        return batches(data.load(root, augment=True, seed=seed, shuffle=False))

    x, y = run(3)
    np.testing.assert_array_equal(x, run(3)[0])
    assert x.shape == (3, 16, 16, 1)
    # Pad 2 (16 / 8): each image keeps its value, with at most 2 zero rows and
    # columns per side moved in; no crop is entirely padding.
    for image in np.rint(x * 255):
        values = set(np.unique(image)) - {0}
        assert len(values) == 1
        assert (image == 0).mean() <= 1 - (14 / 16) ** 2 + 1e-6
    assert data.load(root, seed=3).cardinality() == 1  # augment defaults off


def test_folder_and_builtin_sets_share_the_pipeline(tmp_path, monkeypatch):
    # 32x32 RGB like CIFAR-10, whose augmentation (pad 4, flips) is the
    # folder one at this size: the same arrays must give the same batches.
    root = flat_folder(tmp_path / "f", size=(32, 32), rgb=range(6))
    arrays = data.load_arrays(root, "train")
    # `load` reads the built-in set through the load_arrays of its own module.
    monkeypatch.setattr(pipeline, "load_arrays", lambda *a, **k: arrays)
    # No subset: subset_indices would want all 10 CIFAR-10 classes.
    kwargs = dict(batch_size=4, seed=5, augment=True)
    for ours, theirs in zip(
        data.load(root, **kwargs), data.load("cifar10", **kwargs), strict=True
    ):
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


# -- image size and colour ---------------------------------------------------


def test_mixed_sizes_need_image_size(tmp_path):
    root = flat_folder(tmp_path / "f")
    write_image(root / "ant" / "big.png", pixel("ant", 7), size=(10, 12))
    with pytest.raises(ValueError) as err:
        data.load(root)
    msg = str(err.value)
    assert "image_size" in msg and "8x8" in msg and "10x12" in msg
    assert str(root / "ant" / "big.png") in msg

    x, y = data.load_arrays(root, "train", image_size=(6, 5))
    assert x.shape[1:] == (6, 5, 1)
    # Constant images stay constant under bilinear resizing.
    assert [SORTED.index(identify(im)[0]) for im in x] == y.tolist()
    assert data.info(root, image_size=7)["input_shape"] == (7, 7, 1)
    images, _ = next(iter(data.load(root, image_size=7)))
    assert images.shape[1:] == (7, 7, 1)


def test_colour_channels(tmp_path):
    grey = flat_folder(tmp_path / "grey")
    assert data.info(grey)["input_shape"] == (8, 8, 1)
    rgb = flat_folder(tmp_path / "rgb", rgb=range(6))
    assert data.info(rgb)["input_shape"] == (8, 8, 3)
    mixed = flat_folder(tmp_path / "mixed", rgb=(0, 3))
    x, y = data.load_arrays(mixed, "train")
    assert x.shape == (15, 8, 8, 3)
    # Greyscale images become RGB with equal channels.
    assert (x == x[..., :1]).all()
    assert [SORTED.index(identify(im)[0]) for im in x] == y.tolist()


def test_jpeg_and_other_extensions(tmp_path):
    root = flat_folder(tmp_path / "f")
    write_image(root / "moth" / "photo.JPG", pixel("moth", 6), fmt="jpeg")
    (root / "moth" / "notes.txt").write_text("not an image")
    assert data.info(root)["num_train"] + data.info(root)["num_test"] == 19


def test_builtin_sets_take_only_their_own_image_size():
    assert data.info("cifar10", image_size=32)["input_shape"] == (32, 32, 3)
    with pytest.raises(ValueError, match=r"image_size=64.*image folders"):
        data.info("cifar10", image_size=64)
    with pytest.raises(ValueError, match=r"image_size=\(28, 20\)"):
        data.load("fashion_mnist", image_size=(28, 20))
    with pytest.raises(ValueError, match="Unknown data set 'imagenet'"):
        data.info("imagenet")


# -- bad input ----------------------------------------------------------------


def test_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="does not exist") as err:
        data.load(str(missing))
    assert str(missing) in str(err.value)


def test_no_class_subfolders(tmp_path):
    write_image(tmp_path / "loose.png", 10)
    with pytest.raises(ValueError, match="no class sub-folders") as err:
        data.info(tmp_path)
    assert str(tmp_path) in str(err.value)
    assert "1 image file(s)" in str(err.value)


def test_empty_class_folder(tmp_path):
    root = flat_folder(tmp_path / "f")
    (root / "bee").mkdir()
    (root / "bee" / "readme.txt").write_text("nothing here")
    with pytest.raises(ValueError, match="holds no image files") as err:
        data.load_arrays(root, "train")
    assert str(root / "bee") in str(err.value)


def test_too_few_images_for_samples_per_class(tmp_path):
    root = flat_folder(tmp_path / "f", {"zebra": 6, "ant": 6, "moth": 4})
    with pytest.raises(ValueError) as err:
        data.load(root, samples_per_class=4)
    msg = str(err.value)
    # moth: 4 images, 1 held out for testing, 3 left.
    assert "samples_per_class=4" in msg and "'moth' has 3" in msg
    assert str(root / "moth") in msg and "'ant'" not in msg


def test_single_image_class_cannot_be_auto_split(tmp_path):
    root = flat_folder(tmp_path / "f", {"zebra": 6, "ant": 1, "moth": 6})
    with pytest.raises(ValueError, match="at least 2 images") as err:
        data.info(root)
    assert str(root / "ant") in str(err.value)


@pytest.mark.parametrize("blob", [b"not an image at all", "truncated"])
def test_unreadable_image_names_the_file(tmp_path, blob):
    root = flat_folder(tmp_path / "f")
    bad = root / "zebra" / "img03.png"
    if blob == "truncated":
        blob = bad.read_bytes()[:30]
    bad.write_bytes(blob)
    with pytest.raises(ValueError, match="Cannot read image file") as err:
        data.load(root)
    assert str(bad) in str(err.value)
    assert "[Op:" not in str(err.value)  # TensorFlow's internals are cut.


def test_train_and_test_classes_must_match(tmp_path):
    for name in ("ant", "moth"):
        write_class(tmp_path / "train", name, 3)
    for name in ("moth", "zebra"):
        write_class(tmp_path / "test", name, 2)
    with pytest.raises(ValueError, match="differ") as err:
        data.load(tmp_path, "train")
    msg = str(err.value)
    assert "only in train/: ant" in msg and "only in test/: zebra" in msg


def test_test_folder_without_train_folder(tmp_path):
    write_class(tmp_path / "test", "ant", 2)
    with pytest.raises(ValueError, match="no train/"):
        data.info(tmp_path)


# -- caching ------------------------------------------------------------------


def test_cache_is_reused_and_an_edited_folder_is_read_again(tmp_path):
    root = flat_folder(tmp_path / "f")
    x, _ = data.load_arrays(root, "train")
    assert data.load_arrays(str(root), "train")[0] is x
    assert not x.flags.writeable

    write_class(root, "ant", 1, start=6)  # 7 ant images: 1 test, 6 train.
    x2, y2 = data.load_arrays(root, "train")
    assert len(y2) == 16 and ("ant", 6) in identities(x2) + identities(
        data.load_arrays(root, "test")[0]
    )

    # Same file list, new content and mtime.
    target = root / "zebra" / "img00.png"
    write_image(target, pixel("moth", 9))
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    everything = np.concatenate(
        [data.load_arrays(root, s)[0] for s in ("train", "test")]
    )
    assert ("moth", 9) in identities(everything)
    assert ("zebra", 0) not in identities(everything)


# -- class selections ---------------------------------------------------------


def test_class_selection_keeps_and_relabels_in_the_given_order(tmp_path):
    root = flat_folder(tmp_path / "pets")
    # Sorted classes: ant 0, moth 1, zebra 2; keep zebra then ant.
    name = f"{root}:2,0"
    x, y = data.load_arrays(name, "train")
    assert sorted(set(y.tolist())) == [0, 1]
    assert {identify(im)[0] for im, label in zip(x, y) if label == 0} == {"zebra"}
    assert {identify(im)[0] for im, label in zip(x, y) if label == 1} == {"ant"}
    full_x, full_y = data.load_arrays(str(root), "train")
    np.testing.assert_array_equal(x[y == 0], full_x[full_y == 2])
    meta = data.info(name)
    assert meta["num_classes"] == 2 and meta["class_names"] == ("zebra", "ant")
    assert (meta["num_train"], meta["num_test"]) == (10, 2)
    images, labels = batches(data.load(name, samples_per_class=3, seed=4))
    assert np.bincount(labels).tolist() == [3, 3]
    assert all(
        SORTED[[2, 0][label]] == identify(im)[0]
        for im, label in zip(images * 255, labels)
    )


@pytest.mark.parametrize(
    "suffix, match",
    [
        ("0-5", r"classes \[3, 4, 5\].*0 to 2"),
        ("1", "at least two"),
        ("1,1", "each once"),
        ("1-", "Cannot read"),
    ],
)
def test_bad_class_selection(tmp_path, suffix, match):
    root = flat_folder(tmp_path / "pets")
    with pytest.raises(ValueError, match=match):
        data.load_arrays(f"{root}:{suffix}", "train")
