"""`teacher_preprocessing`: the teacher sees adapted inputs, the student raw ones."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ce_loss, conv_net

from keras_vid import Distiller, VIDDistiller
from keras_vid.teacher_cache import TAPS_KEY, cache_teacher
from keras_vid.transfer import KDTerm


def upscale_and_centre():
    """8x8 in [0, 1] -> 16x16 in [-1, 1]: nearest 2x upsampling, then 2x - 1."""
    return keras.Sequential(
        [
            keras.layers.Resizing(16, 16, interpolation="nearest"),
            keras.layers.Rescaling(2.0, offset=-1.0),
        ],
        name="teacher_prep",
    )


def numpy_prep(x):
    return 2.0 * np.repeat(np.repeat(x, 2, axis=1), 2, axis=2) - 1.0


@pytest.fixture
def models():
    teacher = conv_net(8, "t_", input_shape=(16, 16, 1), seed=1)
    student = conv_net(4, "s_", seed=2)
    return teacher, student


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((24, 8, 8, 1), dtype="float32"), rng.integers(0, 3, 24)


def numpy_kd(t, s, temperature=4.0):
    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lt, ls = log_softmax(t / temperature), log_softmax(s / temperature)
    return temperature**2 * (np.exp(lt) * (lt - ls)).sum(-1)


def test_teacher_sees_preprocessed_inputs_and_student_raw(models, data):
    teacher, student = models
    x, y = data
    d = Distiller(
        teacher,
        student,
        terms=[KDTerm(weight=1.0)],
        teacher_preprocessing=upscale_and_centre(),
    )
    d.compile("sgd", loss=ce_loss())
    t_logits = teacher.predict(numpy_prep(x), verbose=0)
    s_logits = student.predict(x, verbose=0)
    np.testing.assert_allclose(d.predict(x, verbose=0), s_logits, rtol=1e-6)
    (tap,) = d.teacher_taps(tf.constant(x))
    np.testing.assert_allclose(tap, t_logits, rtol=1e-5, atol=1e-6)
    # The KD term compares the teacher on preprocessed inputs with the student
    # on raw ones: evaluate() against a NumPy computation of both.
    logs = d.evaluate(x, y, batch_size=24, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        logs["kd/output"], numpy_kd(t_logits, s_logits).mean(), rtol=1e-4
    )
    # Frozen, and not trained: the distiller's trainable weights are the
    # student's alone.
    assert {id(v) for v in d.trainable_weights} == {
        id(v) for v in student.trainable_weights
    }


def test_fit_calibrate_and_cache_use_the_preprocessing(models, data):
    teacher, student = models
    x, y = data
    d = VIDDistiller(teacher, student, teacher_preprocessing=upscale_and_centre())
    d.compile(keras.optimizers.SGD(0.01), loss=ce_loss())
    before = [w.copy() for w in teacher.get_weights()]
    d.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Calibration measured the teacher tap on preprocessed inputs.
    term = d.vid_terms[0]
    tap_model = keras.Model(teacher.input, teacher.get_layer(term.teacher_layer).output)
    tap = tap_model.predict(numpy_prep(x), verbose=0).reshape(
        -1, tap_model.output.shape[-1]
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(term.teacher_mean), tap.mean(0), rtol=1e-4, atol=1e-5
    )
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    for (inputs, _), (direct_x, _) in zip(cache_teacher(d, ds), ds):
        for cached, direct in zip(inputs[TAPS_KEY], d.teacher_taps(direct_x)):
            np.testing.assert_allclose(cached, direct, rtol=1e-6)


def test_applications_teacher_through_preprocessing_saves_and_loads(data, tmp_path):
    # A keras.applications teacher of RGB 32x32 images, a grey 8x8 student.
    teacher = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=3
    )
    inp = keras.Input((8, 8, 1))
    rgb = keras.layers.Concatenate()([inp, inp, inp])
    big = keras.layers.Resizing(32, 32)(rgb)
    prep = keras.Model(inp, keras.layers.Rescaling(2.0, offset=-1.0)(big))
    student = conv_net(4, "s_", seed=2)
    d = VIDDistiller(teacher, student, teacher_preprocessing=prep)
    d.compile(keras.optimizers.SGD(0.01), loss=ce_loss())
    x, y = data
    hist = d.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(hist["loss"]).all()
    path = str(tmp_path / "distiller.keras")
    d.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.teacher_preprocessing, keras.Model)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), d.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    for a, b in zip(
        loaded.teacher_taps(tf.constant(x)), d.teacher_taps(tf.constant(x))
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bad_preprocessing_is_refused_at_construction(models):
    teacher, student = models
    with pytest.raises(ValueError, match="teacher_preprocessing"):
        Distiller(teacher, student)  # other inputs and no preprocessing
    with pytest.raises(TypeError, match="must be a Keras layer"):
        Distiller(teacher, student, teacher_preprocessing=lambda x: x)
    with pytest.raises(
        ValueError, match=r"to \[\(12, 12, 1\)\].*takes \[\(16, 16, 1\)\]"
    ):
        Distiller(teacher, student, teacher_preprocessing=keras.layers.Resizing(12, 12))
    # The data is checked against the student's inputs, not the teacher's.
    d = Distiller(teacher, student, teacher_preprocessing=upscale_and_centre())
    d.compile("sgd", loss=ce_loss())
    with pytest.raises(ValueError, match=r"student 's_net' expects \[\(8, 8, 1\)\]"):
        d.fit(np.zeros((4, 16, 16, 1), "float32"), np.zeros(4, "int32"), verbose=0)
