"""The teacher cache: same results as without it, refused with augmentation."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ce_loss, conv_net

from keras_vid import VIDDistiller
from keras_vid.teacher_cache import INPUTS_KEY, TAPS_KEY, cache_teacher

PAIRS = [("t_stage1", "s_stage1"), ("t_stage2", "s_stage2")]


def make(defaults=False):
    # VID alone on raw taps, as these tests were written for, unless a test
    # asks for the defaults (standardised targets calibrated in fit, and KD).
    kwargs = {} if defaults else {"kd_weight": None, "standardize": False}
    d = VIDDistiller(
        conv_net(8, "t_", seed=1), conv_net(4, "s_", seed=2), PAIRS, **kwargs
    )
    keras.utils.set_random_seed(7)
    d.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss=ce_loss())
    return d


def dataset(data):
    x, y = data
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def test_cached_training_equals_uncached(data):
    plain = make()
    h1 = plain.fit(dataset(data), epochs=3, verbose=0).history
    cached = make()
    calls = []
    teacher_model = cached._extractors.teacher.model
    original = teacher_model.call

    def counting_call(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    teacher_model.call = counting_call
    ds = cache_teacher(cached, dataset(data))
    traced_before_fit = len(calls)
    h2 = cached.fit(ds, epochs=3, verbose=0).history
    # The train step never traces the teacher: its taps come from the cache.
    assert len(calls) == traced_before_fit
    for a, b in zip(plain.student.get_weights(), cached.student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-5)
    # The same weights on the same images, batched differently: equal up to
    # float32 rounding (a few elements differ in the last bit).
    np.testing.assert_allclose(
        cached.predict(ds, verbose=0),
        cached.student.predict(data[0], verbose=0),
        rtol=1e-6,
        atol=1e-7,
    )


def test_cached_training_equals_uncached_with_the_defaults(data):
    """fit() calibrates the standardised terms from the cached taps alike."""
    plain = make(defaults=True)
    h1 = plain.fit(dataset(data), epochs=2, verbose=0).history
    cached = make(defaults=True)
    h2 = cached.fit(cache_teacher(cached, dataset(data)), epochs=2, verbose=0).history
    assert "dist/output" in h2
    for a, b in zip(plain.vid_terms, cached.vid_terms):
        for name in ("teacher_mean", "teacher_scale"):
            np.testing.assert_allclose(
                np.array(getattr(a, name)), np.array(getattr(b, name)), rtol=1e-5
            )
    for a, b in zip(plain.student.get_weights(), cached.student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-5)


def test_cache_with_shuffle_after_it_trains(data):
    d = make()
    ds = cache_teacher(d, dataset(data), shuffle_buffer=32, seed=1)
    hist = d.fit(ds, epochs=2, verbose=0).history
    assert np.isfinite(hist["vid/s_stage1"]).all()


def test_shuffled_cache_keeps_each_image_with_its_own_taps_and_label(data):
    """After the shuffle, every row's taps are the teacher's of that row's image."""
    x, y = data
    d = make()
    taps = keras.Model(
        d.teacher.inputs, [d.teacher.get_layer(t).output for t, _ in PAIRS]
    )
    label_of = {image.tobytes(): label for image, label in zip(x, y)}
    ds = cache_teacher(d, dataset(data), shuffle_buffer=32, seed=1)
    orders = []
    for _epoch in range(2):
        order = []
        for batch_x, batch_y in ds:
            images = batch_x[INPUTS_KEY].numpy()
            for cached, expected in zip(batch_x[TAPS_KEY], taps(images)):
                np.testing.assert_allclose(cached, expected, rtol=1e-5, atol=1e-6)
            assert [label_of[im.tobytes()] for im in images] == list(batch_y.numpy())
            order += [im.tobytes() for im in images]
        assert sorted(order) == sorted(label_of)  # every image once an epoch
        orders.append(order)
    assert orders[0] != orders[1] != list(label_of)  # shuffled, anew each epoch


def test_random_augmentation_is_refused(data):
    d = make()
    # New noise every epoch, as keras_vid.data's augmentation draws.
    seeds = tf.data.Dataset.random(seed=3, rerandomize_each_iteration=True).batch(2)
    noisy = tf.data.Dataset.zip((dataset(data), seeds)).map(
        lambda xy, s: (
            xy[0] + tf.random.stateless_uniform(tf.shape(xy[0]), tf.cast(s, tf.int32)),
            xy[1],
        )
    )
    with pytest.raises(ValueError, match="same inputs every epoch"):
        cache_teacher(d, noisy)
    shuffled = tf.data.Dataset.from_tensor_slices(data).shuffle(32).batch(8)
    with pytest.raises(ValueError, match="same inputs every epoch"):
        cache_teacher(d, shuffled)


def test_disk_cache(data, tmp_path):
    d = make()
    ds = cache_teacher(d, dataset(data), cache_path=str(tmp_path / "taps"))
    d.fit(ds, epochs=2, verbose=0)
    assert any(p.name.startswith("taps") for p in tmp_path.iterdir())
