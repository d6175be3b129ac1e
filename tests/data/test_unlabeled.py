"""Unlabelled examples (class id -1): masked where labels are needed only.

The references are separate computations: NumPy formulas on the models'
own outputs, and the same training on the labelled examples alone.
"""

import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ce_loss, conv_net
from logit_refs import log_softmax, numpy_dkd, numpy_kd
from test_folders import flat_folder, identify, write_image

from keras_vid import Distiller, VIDDistiller, data
from keras_vid.teacher_cache import cache_teacher
from keras_vid.transfer import DKDTerm, KDTerm

U = data.UNLABELED


def mixed(n=24, unlabelled=(1, 4, 5, 9, 10, 11, 17, 20, 23), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, n)
    y[list(unlabelled)] = U
    return x, y


def numpy_ce(logits, y):
    return -log_softmax(logits)[np.arange(len(y)), y]


def distiller(terms=(), bn=False, **compile_kwargs):
    teacher = conv_net(8, "t_", seed=1, bn=bn)
    student = conv_net(4, "s_", seed=2, bn=bn)
    d = Distiller(teacher, student, terms=list(terms))
    d.compile(
        keras.optimizers.SGD(0.1),
        loss=ce_loss(),
        metrics=["accuracy"],
        **compile_kwargs,
    )
    return d


def test_evaluate_masks_task_loss_and_accuracy_but_not_kd():
    x, y = mixed()
    dkd = DKDTerm(temperature=2.0)
    d = distiller([KDTerm(temperature=4.0), dkd])
    logs = d.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    s = np.asarray(d.student(x, training=False), "float64")
    t = np.asarray(d.teacher(x, training=False), "float64")
    lab = y >= 0
    np.testing.assert_allclose(
        logs["task_loss"], numpy_ce(s[lab], y[lab]).mean(), rtol=1e-5
    )
    acc = (s[lab].argmax(-1) == y[lab]).mean()
    assert logs["accuracy"] == pytest.approx(acc, abs=1e-6)
    # Unmasked, the accuracy would count the unlabelled rows as class 0.
    assert acc != pytest.approx((s.argmax(-1) == np.maximum(y, 0)).mean())
    # KD needs no labels: every example counts.
    np.testing.assert_allclose(logs["kd/output"], numpy_kd(t, s, 4.0).mean(), rtol=1e-5)
    # DKD needs them: the labelled examples only.
    ref = numpy_dkd(t[lab], s[lab], y[lab], dkd.alpha, dkd.beta, 2.0).mean()
    np.testing.assert_allclose(logs["dkd/output"], ref, rtol=1e-5)


def test_sample_weights_and_column_labels_are_masked_too():
    x, y = mixed()
    w = np.random.default_rng(1).random(len(x)).astype("float32")
    d = distiller(
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="w_acc")]
    )
    logs = d.evaluate(
        x, y[:, None], sample_weight=w, batch_size=len(x), verbose=0, return_dict=True
    )
    s = np.asarray(d.student(x, training=False), "float64")
    lab = y >= 0
    # Keras's batch mean of weighted losses, over the labelled examples.
    ref = (w[lab] * numpy_ce(s[lab], y[lab])).sum() / lab.sum()
    np.testing.assert_allclose(logs["task_loss"], ref, rtol=1e-5)
    hits = s[lab].argmax(-1) == y[lab]
    # Keras's `metrics` ignore sample weights, its `weighted_metrics` not.
    assert logs["accuracy"] == pytest.approx(hits.mean())
    assert logs["w_acc"] == pytest.approx((w[lab] * hits).sum() / w[lab].sum())


def test_training_on_a_mixed_batch_equals_training_on_its_labelled_part():
    # No BatchNorm and no term: unlabelled examples then change nothing.
    x, y = mixed()
    lab = y >= 0
    a, b = distiller(), distiller()
    ha = a.fit(x, y, batch_size=len(x), epochs=3, verbose=0, shuffle=False).history
    hb = b.fit(
        x[lab], y[lab], batch_size=len(x), epochs=3, verbose=0, shuffle=False
    ).history
    for u, v in zip(a.student.get_weights(), b.student.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ha["task_loss"], hb["task_loss"], rtol=1e-5)
    np.testing.assert_allclose(ha["accuracy"], hb["accuracy"], rtol=1e-6)


def test_epoch_logs_average_over_labelled_examples_of_all_batches():
    # Batches of 8 with 7, 2 and 0 labelled examples: the epoch's task loss
    # and accuracy are the means over the 9 labelled examples.
    x, y = mixed(unlabelled=[1, *range(10, 16), *range(16, 24)])
    d = distiller()
    logs = d.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    s = np.asarray(d.student(x, training=False), "float64")
    lab = y >= 0
    assert lab.sum() == 9
    np.testing.assert_allclose(
        logs["task_loss"], numpy_ce(s[lab], y[lab]).mean(), rtol=1e-5
    )
    assert logs["accuracy"] == pytest.approx((s[lab].argmax(-1) == y[lab]).mean())


def test_unlabelled_examples_train_the_label_free_terms():
    x, y = mixed()
    lab = y >= 0
    a = distiller([KDTerm()])
    b = distiller([KDTerm()])
    a.fit(x, y, batch_size=len(x), epochs=2, verbose=0, shuffle=False)
    b.fit(x[lab], y[lab], batch_size=len(x), epochs=2, verbose=0, shuffle=False)
    diff = max(
        np.abs(u - v).max()
        for u, v in zip(a.student.get_weights(), b.student.get_weights())
    )
    assert diff > 1e-4


def test_labels_below_minus_one_are_refused():
    x, y = mixed()
    y[0] = -2
    with pytest.raises(ValueError, match=r"or be -1 for an unlabelled example"):
        distiller().fit(x, y, epochs=1, verbose=0)


def test_all_unlabelled_arrays_with_nothing_to_learn_are_refused():
    x, _ = mixed()
    y = np.full(len(x), U)
    with pytest.raises(ValueError, match=r"training would change nothing"):
        distiller().fit(x, y, epochs=1, verbose=0)


def test_all_unlabelled_data_with_a_label_free_term_warns():
    x, _ = mixed()
    y = np.full(len(x), U)
    with pytest.warns(UserWarning, match=r"Every training example is unlabelled"):
        distiller([KDTerm()]).fit(x, y, epochs=1, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with pytest.warns(UserWarning, match=r"Every example of the first batch"):
        distiller().fit(ds, epochs=1, verbose=0)


# -- keras_vid.data: the unlabelled pool and the mix --------------------------


def labelled_and_unlabelled(n=16, k=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, n).astype("int32")
    # Unlabelled images are told apart from labelled ones by their sign.
    u = -1.0 - rng.random((k, 8, 8, 1), dtype="float32")
    labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    unlabeled = (
        tf.data.Dataset.from_tensor_slices(u)
        .shuffle(k, seed=seed, reshuffle_each_iteration=True)
        .batch(5)
    )
    return labeled, unlabeled, (x, y, u)


def test_with_unlabeled_appends_ratio_times_the_batch_with_label_minus_one():
    labeled, unlabeled, (x, y, u) = labelled_and_unlabelled()
    mix = data.with_unlabeled(labeled, unlabeled, ratio=1.5, seed=0)
    assert int(mix.cardinality()) == 4
    seen = []
    for _epoch in range(2):
        images, labels = [], []
        for bx, by in mix:
            assert bx.shape[0] == 4 + 6
            np.testing.assert_array_equal(by[4:], U)
            assert np.all(bx[:4] >= 0) and np.all(bx[4:] < 0)
            images.append(bx[:4].numpy())
            labels.append(by[:4].numpy())
            seen.append(bx[4:].numpy())
        # The labelled data pass through untouched, once per epoch.
        np.testing.assert_array_equal(np.concatenate(images), x)
        np.testing.assert_array_equal(np.concatenate(labels), y)
    # Unlabelled images are the given ones, and each epoch draws others.
    pool = {im.tobytes() for im in u}
    assert all(im.tobytes() in pool for batch in seen for im in batch)
    assert not np.array_equal(np.concatenate(seen[:4]), np.concatenate(seen[4:]))


def test_an_unlabelled_stream_that_never_reshuffles_gets_a_warning():
    labeled, _, (_, _, u) = labelled_and_unlabelled()
    fixed = tf.data.Dataset.from_tensor_slices(u).batch(5)
    with pytest.warns(UserWarning, match=r"every epoch would draw the same"):
        data.with_unlabeled(labeled, fixed)


def test_with_unlabeled_keeps_sample_weights_and_column_labels():
    x = np.arange(6 * 64, dtype="float32").reshape(6, 8, 8, 1)
    y = np.arange(6, dtype="int64")[:, None] % 3
    w = np.full(6, 0.5, "float32")
    labeled = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(3)
    unlabeled = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(6).batch(2)
    bx, by, bw = next(iter(data.with_unlabeled(labeled, unlabeled, ratio=1)))
    assert by.shape == (6, 1) and by.dtype == tf.int64
    np.testing.assert_array_equal(by[3:, 0], U)
    np.testing.assert_array_equal(bw, [0.5, 0.5, 0.5, 1, 1, 1])


@pytest.mark.parametrize(
    "unlabeled, ratio, match",
    [
        (np.zeros((4, 9, 8, 1), "float32"), 1, r"labelled \(8, 8, 1\) float32, "),
        (np.zeros((4, 8, 8, 3), "float32"), 1, r"unlabelled \(8, 8, 3\) float32"),
        (np.zeros((4, 8, 8, 1), "uint8"), 1, r"shape and dtype"),
        (np.zeros((4, 8, 8, 1), "float32"), 0, r"ratio must be a finite number > 0"),
    ],
)
def test_with_unlabeled_refuses_mismatched_images_and_bad_ratio(
    unlabeled, ratio, match
):
    labeled, _, _ = labelled_and_unlabelled()
    stream = tf.data.Dataset.from_tensor_slices(unlabeled).batch(2)
    with pytest.raises(ValueError, match=match):
        data.with_unlabeled(labeled, stream, ratio=ratio)


def test_with_unlabeled_with_batch_size_keeps_the_labelled_shuffle():
    """Given B, nothing is read ahead: epoch 1 is the shuffle's first pass."""

    def labeled():
        ids = tf.data.Dataset.range(12)
        ids = ids.shuffle(12, seed=3, reshuffle_each_iteration=True)
        return ids.map(lambda i: (tf.zeros((8, 8, 1)), tf.cast(i, "int32"))).batch(5)

    _, stream, _ = labelled_and_unlabelled(k=30)
    fresh = np.concatenate([by.numpy() for _, by in labeled()])
    assert sorted(fresh) == list(range(12))
    mix = data.with_unlabeled(labeled(), stream, ratio=1, batch_size=5)
    seen = [by.numpy() for _, by in mix]
    assert [len(b) for b in seen] == [10, 10, 7]  # B + round(ratio * B) each
    np.testing.assert_array_equal(np.concatenate([b[b >= 0] for b in seen]), fresh)
    # Without B the first batch is read to learn it: the first pass is spent.
    peeked = np.concatenate(
        [
            by.numpy()[by.numpy() >= 0]
            for _, by in data.with_unlabeled(labeled(), stream)
        ]
    )
    assert not np.array_equal(peeked, fresh)


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, True])
def test_with_unlabeled_refuses_a_bad_batch_size(batch_size):
    labeled, stream, _ = labelled_and_unlabelled()
    with pytest.raises(ValueError, match=r"batch_size must be the labelled"):
        data.with_unlabeled(labeled, stream, batch_size=batch_size)


def test_with_unlabeled_refuses_a_batch_size_that_contradicts_the_data():
    x = np.zeros((8, 8, 8, 1), "float32")
    static = tf.data.Dataset.from_tensor_slices((x, np.zeros(8, "int32")))
    static = static.batch(4, drop_remainder=True)
    stream = tf.data.Dataset.from_tensor_slices(x).batch(2)
    with pytest.raises(ValueError, match=r"batch axis is 4\). Received: batch_size=3"):
        data.with_unlabeled(static, stream, batch_size=3)
    assert (
        next(iter(data.with_unlabeled(static, stream, batch_size=4)))[0].shape[0] == 8
    )


def test_with_unlabeled_needs_class_ids():
    x = np.zeros((4, 8, 8, 1), "float32")
    one_hot = tf.data.Dataset.from_tensor_slices((x, np.eye(3)[[0, 1, 2, 0]])).batch(2)
    stream = tf.data.Dataset.from_tensor_slices(x).batch(2)
    with pytest.raises(ValueError, match=r"must be integer class ids"):
        data.with_unlabeled(one_hot, stream)


def test_load_unlabeled_is_the_rest_of_the_training_set(tmp_path):
    data.clear_cache()
    root = flat_folder(tmp_path / "photos", counts={"zebra": 8, "ant": 8, "moth": 8})
    kwargs = dict(samples_per_class=2, seed=3, normalize=False)
    labelled = data.load(str(root), "train", **kwargs)
    rest = data.load_unlabeled(str(root), batch_size=7, **kwargs)
    picked = {identify(im) for x, _ in labelled for im in x.numpy()}
    others = [identify(im) for x, y in rest for im in x.numpy()]
    assert all(int(v) == U for _, y in rest for v in y)
    train = {identify(im) for im in data.load_arrays(str(root), "train")[0]}
    # Disjoint, and together the whole training split, each image once.
    assert len(others) == len(set(others)) and not picked & set(others)
    assert picked | set(others) == train


def test_load_unlabeled_reads_a_folder_without_classes(tmp_path):
    data.clear_cache()
    for i, sub in enumerate(["", "a/", "a/b/"]):
        write_image(tmp_path / "pool" / f"{sub}img{i}.png", 40 * i + 10)
    write_image(tmp_path / "pool" / "big.png", 5, size=(16, 16))
    with pytest.raises(ValueError, match=r"different sizes"):
        data.load_unlabeled(str(tmp_path / "pool"))
    ds = data.load_unlabeled(str(tmp_path / "pool"), image_size=8, shuffle=False)
    (x, y), *more = list(ds)
    assert not more and x.shape == (4, 8, 8, 1)
    np.testing.assert_array_equal(y, [U] * 4)
    with pytest.raises(ValueError, match=r"does not exist"):
        data.load_unlabeled(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"holds no image"):
        data.load_unlabeled(str(tmp_path / "empty"))


# -- the teacher cache --------------------------------------------------------


def test_teacher_cache_of_both_streams_trains_as_without_it():
    labeled, unlabeled, (_, _, u) = labelled_and_unlabelled()
    fixed = tf.data.Dataset.from_tensor_slices(u).batch(5)

    def make():
        teacher = conv_net(8, "t_", seed=1, bn=False)
        student = conv_net(4, "s_", seed=2, bn=False)
        d = VIDDistiller(teacher, student, logits="kd")
        d.compile(keras.optimizers.SGD(0.05), loss=ce_loss(), metrics=["accuracy"])
        return d

    plain = make()
    h1 = plain.fit(
        data.with_unlabeled(labeled, unlabeled, ratio=2, seed=1), epochs=2, verbose=0
    ).history
    cached = make()
    # The same shuffle (40 examples, seed 0), after the cache.
    pool = cache_teacher(cached, fixed, shuffle_buffer=40, seed=0)
    mix = data.with_unlabeled(cache_teacher(cached, labeled), pool, 2, seed=1)
    h2 = cached.fit(mix, epochs=2, verbose=0).history
    for a, b in zip(plain.student.get_weights(), cached.student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-5)
    with pytest.raises(ValueError, match=r"Cache both with the teacher cache"):
        data.with_unlabeled(cache_teacher(cached, labeled), unlabeled)


def test_no_warning_for_ordinary_labels():
    x, y = mixed(unlabelled=())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distiller([KDTerm()]).fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--unlabeled=all"], r"the only value is 'rest'"),
        (["--unlabeled=rest", "--samples_per_class=0"], r"needs a labelled subset"),
        (["--unlabeled=rest", "--unlabeled_dir=/tmp"], r"not both"),
    ],
)
def test_recipe_unlabeled_flags_are_checked_before_any_work(flags, match, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "recipes/distill.py", f"--output_dir={out}", *flags],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "ValueError" in proc.stderr and re.search(match, proc.stderr)
    assert not out.exists()
