"""Opt-in teacher cache: compute the teacher's taps once, reuse every epoch.

The teacher's forward pass is the largest part of a distillation step, and in
VID's headline setting (100 to 1000 images per class, hundreds of epochs) the
same activations are recomputed hundreds of times. With a deterministic input
pipeline (no random augmentation), they can be computed once: `cache_teacher`
maps the dataset through the teacher's tap extractor, caches the result in
memory or on disk with `tf.data.Dataset.cache`, and the distiller's
`train_step` then reads the taps instead of running the teacher.

Shuffling is still possible: cache an unshuffled dataset and pass
`shuffle_buffer`, which shuffles (input, taps) examples *after* the cache.
"""

import numpy as np

from keras_vid._tf import require, tf

INPUTS_KEY = "__keras_vid_inputs__"
TAPS_KEY = "__keras_vid_teacher_taps__"


def split_cached(x):
    """Returns `(inputs, cached teacher taps or None)` for a batch's `x`.

    Example:

    >>> split_cached({INPUTS_KEY: 1, TAPS_KEY: (2, 3)})
    (1, [2, 3])
    >>> split_cached(1)
    (1, None)
    """
    if isinstance(x, dict) and TAPS_KEY in x:
        return x[INPUTS_KEY], list(x[TAPS_KEY])
    return x, None


def _first_batch(dataset):
    return [np.asarray(t) for t in tf.nest.flatten(next(iter(dataset))[0])]


def _check_deterministic(dataset):
    a, b = _first_batch(dataset), _first_batch(dataset)
    if len(a) != len(b) or not all(np.array_equal(u, v) for u, v in zip(a, b)):
        raise ValueError(
            "The teacher cache needs a dataset that yields the same inputs every "
            "epoch, but its first batch differed between two passes: it has "
            "random augmentation or shuffling before the cache. Cached teacher "
            "activations would then belong to other images. Remove the random "
            "augmentation (keras_vid.data.load(..., augment=False, shuffle=False)) "
            "and pass shuffle_buffer= to shuffle after the cache, or train "
            "without the cache."
        )
    return a


def cache_teacher(distiller, dataset, cache_path="", shuffle_buffer=None, seed=0):
    """Returns `dataset` with the teacher's taps computed once and cached.

    Args:
        distiller: a `keras_vid.Distiller` (or `VIDDistiller`).
        dataset: a batched `tf.data.Dataset` of `(x, y)` or
            `(x, y, sample_weight)` that yields the same inputs every epoch.
        cache_path: `""` caches in memory; a file path caches on disk
            (`tf.data.Dataset.cache(filename)`), for sets larger than memory.
        shuffle_buffer: if set, examples are shuffled after the cache with
            this buffer (reshuffled every epoch, seeded by `seed`), then
            re-batched to the original batch size.
        seed: the shuffle seed.

    Returns:
        A `tf.data.Dataset` for `distiller.fit`.

    Raises:
        ValueError: when the dataset is not deterministic (random
            augmentation or shuffling before the cache), or is not batched.

    Example:

    ```python
    train = keras_vid.data.load("fashion_mnist", samples_per_class=100,
                                augment=False, shuffle=False)
    cached = keras_vid.teacher_cache.cache_teacher(distiller, train,
                                                   shuffle_buffer=1000)
    distiller.fit(cached, epochs=200)
    ```
    """
    require("keras_vid.teacher_cache.cache_teacher (a tf.data pipeline)")
    if distiller._extractors.teacher is None:
        return dataset  # no term reads the teacher
    spec = dataset.element_spec
    if not isinstance(spec, tuple):
        spec = (spec,)
    first = tf.nest.flatten(spec[0])[0]
    if first.shape.rank is None or first.shape.rank < 2:
        raise ValueError(
            "cache_teacher expects a batched dataset of (x, y[, sample_weight]). "
            f"Received an element spec {dataset.element_spec}."
        )
    # Shuffling after the cache re-batches to the size of the first batch.
    batch_size = int(_check_deterministic(dataset)[0].shape[0])

    def add_taps(x, *rest):
        taps = distiller.teacher_taps(x)
        return ({INPUTS_KEY: x, TAPS_KEY: tuple(taps)}, *rest)

    if not isinstance(dataset.element_spec, tuple):
        dataset = dataset.map(lambda x: (x,))
    cached = dataset.map(add_taps).cache(cache_path)
    if shuffle_buffer:
        # Re-batching loses the cardinality, which Keras needs for its epochs.
        count = int(
            dataset.map(lambda x, *rest: tf.shape(tf.nest.flatten(x)[0])[0]).reduce(
                0, lambda a, b: a + b
            )
        )
        cached = cached.unbatch().shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
        cached = cached.batch(batch_size).apply(
            tf.data.experimental.assert_cardinality(-(-count // batch_size))
        )
    return cached.prefetch(tf.data.AUTOTUNE)
