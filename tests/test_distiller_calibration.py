"""Standardised VID targets: calibration, scale invariance, the KD default."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ce_loss, conv_net

import keras_vid
from keras_vid.taps import TapExtractor
from keras_vid.teacher_cache import cache_teacher
from keras_vid.transfer.vid import VIDTerm

PAIRS = [("t_stage1", "s_stage1"), ("t_stage2", "s_stage2")]


def _teacher_taps(teacher, x, names=("t_stage1", "t_stage2")):
    _, taps = TapExtractor(teacher, list(names))(x)
    return [keras.ops.convert_to_numpy(t).astype("float64") for t in taps]


def _stats(term):
    return (
        keras.ops.convert_to_numpy(term.teacher_mean),
        keras.ops.convert_to_numpy(term.teacher_scale),
    )


def test_calibration_matches_numpy_statistics(models, data):
    teacher, student = models
    x, y = data
    d = keras_vid.VIDDistiller(teacher, student, pairs=PAIRS, kd_weight=None)
    assert all(t.needs_calibration for t in d.vid_terms)
    d.calibrate(x, max_examples=20)
    for term, tap in zip(d.vid_terms, _teacher_taps(teacher, x[:20])):
        flat = tap.reshape(-1, tap.shape[-1])
        var = flat.var(0)
        mean, scale = _stats(term)
        np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-5, atol=1e-6)
        floor = 1e-4 * var.mean()
        np.testing.assert_allclose(scale, np.sqrt(np.maximum(var, floor)), rtol=1e-4)
        assert not term.needs_calibration


def test_calibration_reads_datasets_and_cached_taps_alike(models, data):
    teacher, student = models
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    a = keras_vid.VIDDistiller(teacher, student, pairs=PAIRS, kd_weight=None)
    a.calibrate(ds, max_examples=16)  # two batches of eight
    b = keras_vid.VIDDistiller(teacher, student, pairs=PAIRS, kd_weight=None)
    b.calibrate(x[:16])
    c = keras_vid.VIDDistiller(teacher, student, pairs=PAIRS, kd_weight=None)
    c.calibrate(cache_teacher(c, ds, shuffle_buffer=None), max_examples=16)
    for ta, tb, tc in zip(a.vid_terms, b.vid_terms, c.vid_terms):
        for u, v, w in zip(_stats(ta), _stats(tb), _stats(tc)):
            np.testing.assert_allclose(u, v, rtol=1e-5)
            np.testing.assert_allclose(u, w, rtol=1e-5)


def test_standardised_term_matches_numpy():
    rng = np.random.default_rng(0)
    t = rng.normal(3.0, 5.0, (4, 3, 3, 2)).astype("float32")
    s = rng.normal(size=(4, 3, 3, 2)).astype("float32")
    term = VIDTerm("t", "s", init_variance=0.5, standardize=True)
    term.build(t.shape, s.shape)
    mean, var = np.array([2.0, -1.0]), np.array([4.0, 25.0])
    term.set_statistics(mean, var)
    mu = keras.ops.convert_to_numpy(term.regressor(s))
    z = (t - mean) / np.sqrt(var)
    expected = 0.5 * (np.log(0.5) + ((z - mu) ** 2 / 0.5).mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(term(t, s)), expected, rtol=1e-5
    )


def _scaled_teacher(factor):
    """`conv_net`'s teacher with every tap multiplied by `factor`."""
    base = conv_net(8, "b_", seed=1)
    x = inp = keras.Input((8, 8, 1))
    x = base.get_layer("b_conv1")(x)
    x = base.get_layer("b_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Rescaling(factor, name="t_stage1")(x)
    x = base.get_layer("b_stage2")(x)
    x = keras.layers.Rescaling(factor, name="t_stage2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, base.get_layer("b_logits")(x))


def test_training_does_not_depend_on_the_teachers_scale(data):
    """Scaling a teacher's activations by 1000 changes nothing the student sees.

    Without standardisation, the same scaling changes the first step.
    """
    x, y = data
    students = {}
    for standardize in (True, False):
        for factor in (1.0, 1000.0):
            student = conv_net(4, "s_", seed=2)
            d = keras_vid.VIDDistiller(
                _scaled_teacher(factor),
                student,
                pairs=PAIRS,
                kd_weight=None,
                standardize=standardize,
            )
            d.compile(keras.optimizers.SGD(0.01), ce_loss())
            d.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
            students[(standardize, factor)] = student.get_weights()
    for a, b in zip(students[(True, 1.0)], students[(True, 1000.0)]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not all(
        np.allclose(a, b, rtol=1e-3)
        for a, b in zip(students[(False, 1.0)], students[(False, 1000.0)])
    )


def test_generator_data_needs_explicit_calibration(models, data):
    teacher, student = models
    x, y = data
    d = keras_vid.VIDDistiller(teacher, student, pairs=PAIRS)
    d.compile("sgd", ce_loss())

    def gen():
        while True:
            yield x[:8], y[:8]

    with pytest.raises(ValueError, match="calibrate"):
        d.fit(gen(), steps_per_epoch=1, epochs=1, verbose=0)
    d.calibrate(x)
    d.fit(gen(), steps_per_epoch=2, epochs=1, verbose=0)


def test_saved_statistics_survive_reload_and_are_not_remeasured(models, data, tmp_path):
    teacher, student = models
    x, y = data
    d = keras_vid.VIDDistiller(teacher, student, pairs=PAIRS)
    d.compile("sgd", ce_loss())
    d.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "d.keras")
    d.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert not any(t.needs_calibration for t in loaded.vid_terms)
    # New data with another spread must not replace the trained statistics.
    loaded.fit(10.0 * x, y, epochs=1, verbose=0)
    for a, b in zip(d.vid_terms, loaded.vid_terms):
        for u, v in zip(_stats(a), _stats(b)):
            np.testing.assert_array_equal(u, v)


def test_logits_choose_the_logit_term_and_none_removes_it(models):
    teacher, student = models
    names = {
        logits: [
            type(t).__name__
            for t in keras_vid.VIDDistiller(
                teacher, student, pairs=PAIRS, logits=logits
            ).terms
        ][2:]
        for logits in ("auto", "dist", "kd", None)
    }
    # A student with feature maps: DIST by default.
    assert names == {
        "auto": ["DISTTerm"],
        "dist": ["DISTTerm"],
        "kd": ["KDTerm"],
        None: [],
    }
    dist = keras_vid.VIDDistiller(teacher, student, pairs=PAIRS).terms[-1]
    assert (dist.weight, dist.beta, dist.gamma, dist.temperature) == (2, 1, 1, 1)
    kd = keras_vid.VIDDistiller(teacher, student, pairs=PAIRS, logits="kd").terms[-1]
    assert kd.weight == 1.0 and kd.temperature == 4.0
    d = keras_vid.VIDDistiller(teacher, student, pairs=PAIRS, kd_weight=None)
    assert [type(t).__name__ for t in d.terms] == ["VIDTerm", "VIDTerm"]
    with pytest.raises(ValueError, match="`logits` must be one of"):
        keras_vid.VIDDistiller(teacher, student, pairs=PAIRS, logits="dkd")


def test_kd_default_with_other_classes_says_to_turn_it_off():
    teacher = conv_net(8, "t_", classes=5, seed=1)
    student = conv_net(4, "s_", classes=3, seed=2)
    with pytest.raises(ValueError, match="logits=None"):
        keras_vid.VIDDistiller(teacher, student, pairs=PAIRS)
    keras_vid.VIDDistiller(teacher, student, pairs=PAIRS, kd_weight=None)
    keras_vid.VIDDistiller(teacher, student, pairs=PAIRS, logits=None)


def test_configs_saved_before_standardisation_load_as_trained(models):
    """A config without the new keys is an older file: raw targets, no KD."""
    teacher, student = models
    config = keras_vid.VIDDistiller(
        teacher, student, pairs=PAIRS, kd_weight=None, standardize=False
    ).get_config()
    del config["standardize"], config["kd_weight"], config["kd_temperature"]
    del config["logits"]
    loaded = keras_vid.VIDDistiller.from_config(config)
    assert [type(t).__name__ for t in loaded.terms] == ["VIDTerm", "VIDTerm"]
    assert not any(t.standardize for t in loaded.vid_terms)


def test_configs_saved_before_logits_load_with_their_kd(models):
    """A file from before `logits` trained KD beside VID; it loads so."""
    teacher, student = models
    config = keras_vid.VIDDistiller(teacher, student, pairs=PAIRS, logits="kd")
    config = config.get_config()
    del config["logits"]
    loaded = keras_vid.VIDDistiller.from_config(config)
    assert [type(t).__name__ for t in loaded.terms][-1] == "KDTerm"
    again = keras_vid.VIDDistiller.from_config(
        keras_vid.VIDDistiller(teacher, student, pairs=PAIRS).get_config()
    )
    assert [type(t).__name__ for t in again.terms][-1] == "DISTTerm"


def test_overflowing_teacher_taps_fail_calibration_clearly(data):
    x, y = data
    d = keras_vid.VIDDistiller(
        _scaled_teacher(1e30), conv_net(4, "s_", seed=2), pairs=PAIRS
    )
    d.compile("sgd", ce_loss())
    with pytest.raises(ValueError, match="non-finite statistics.*overflow"):
        d.fit(x, y, epochs=1, verbose=0)


def test_train_on_batch_needs_calibration_then_steps_as_fit(models, data):
    teacher, student = models
    x, y = data

    def build():
        keras.utils.set_random_seed(0)
        d = keras_vid.VIDDistiller(
            teacher, keras.models.clone_model(student), pairs=PAIRS
        )
        d.compile(keras.optimizers.SGD(0.1), loss=ce_loss())
        return d

    d = build()
    with pytest.raises(ValueError, match=r"distiller.calibrate\(training_images\)"):
        d.train_on_batch(x[:16], y[:16])
    # fit calibrates on its own data first; calibrate + train_on_batch on the
    # same 16 images is then the same step.
    d.calibrate(x[:16])
    logs = d.train_on_batch(x[:16], y[:16], return_dict=True)
    ref = build().fit(x[:16], y[:16], batch_size=16, verbose=0).history
    assert {"vid_loss", "dist_loss"} <= logs.keys()
    for key, value in logs.items():
        np.testing.assert_allclose(value, ref[key][0], rtol=1e-5, err_msg=key)
