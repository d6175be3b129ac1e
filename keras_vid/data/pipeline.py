"""Arrays, subsets and `tf.data` pipelines of every source: `load_arrays`, `load`.

`load_arrays` sends a name to the built-in readers or to an image folder and
applies a class selection (`split_classes`); `subset_indices` draws the same
examples of every class for a seed; `load` builds the shuffled, augmented,
batched pipeline (`_pipeline`), which `load_unlabeled` shares.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from keras_vid._tf import require as _require_tf
from keras_vid._tf import tf
from keras_vid.data.builtin import (
    SOURCES,
    SPLITS,
    MissingDataError,
    _load_direct,
    _load_tfds,
    _spec,
    _tfds_prepared,
)
from keras_vid.data.folders import (
    _check_folder_counts,
    _folder_path,
    _image_size,
    _load_folder,
)

logger = logging.getLogger(__name__)


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
            or the path of an image folder (see `keras_vid.data`'s docstring).
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


def _check_builtin_size(spec, image_size):
    size = _image_size(image_size)
    native = tuple(spec.input_shape[:2])
    if size is not None and size != native:
        raise ValueError(
            f"image_size={image_size!r} only applies to image folders: "
            f"{spec.title} images are {native[0]}x{native[1]} and are not "
            f"resized. Leave image_size unset for {spec.name!r}."
        )


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
            or the path of an image folder (see `keras_vid.data`'s docstring).
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

    An image folder (see `keras_vid.data`'s docstring) goes through the same
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
