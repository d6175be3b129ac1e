"""Unlabelled examples: `load_unlabeled`'s pool and `with_unlabeled`'s mix.

An unlabelled example carries the class id `UNLABELED` (-1); a
`keras_vid.Distiller` leaves it out of the task loss, the metrics and the
terms that need labels.
"""

from __future__ import annotations

import warnings

import numpy as np

from keras_vid._tf import require as _require_tf
from keras_vid._tf import tf
from keras_vid.data.builtin import _spec
from keras_vid.data.folders import _flat_folder, _folder_path
from keras_vid.data.pipeline import (
    _augment_params,
    _is_positive_int,
    _num_classes,
    _pipeline,
    default_augment,
    load_arrays,
    split_classes,
    subset_indices,
)

UNLABELED = -1
"""The class id that marks an unlabelled example (as in scikit-learn's
semi-supervised estimators). A `keras_vid.Distiller` leaves such examples out
of the task loss, the metrics and the terms that need labels."""


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
