"""The KD term against Hinton et al.'s formula, computed in NumPy."""

import keras
import numpy as np
import pytest
from conftest import conv_net
from keras.ops import convert_to_numpy as to_numpy

from keras_vid import Distiller
from keras_vid.transfer.kd import KDTerm


def numpy_kd(t, s, temperature):
    """T^2 * KL(softmax(t/T) || softmax(s/T)) per example, in float64."""

    def log_softmax(z):
        z = z / temperature
        z = z - z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    log_p = log_softmax(t.astype("float64"))
    log_q = log_softmax(s.astype("float64"))
    return temperature**2 * (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 0.5])
def test_matches_numpy(temperature):
    rng = np.random.default_rng(0)
    t = rng.normal(scale=3.0, size=(6, 7)).astype("float32")
    s = rng.normal(scale=3.0, size=(6, 7)).astype("float32")
    got = to_numpy(KDTerm(temperature=temperature)(t, s))
    assert got.shape == (6,)
    np.testing.assert_allclose(got, numpy_kd(t, s, temperature), rtol=1e-5, atol=1e-5)


def test_large_logits_stay_finite_and_exact():
    rng = np.random.default_rng(1)
    t = rng.normal(scale=500.0, size=(4, 5)).astype("float32")
    s = rng.normal(scale=500.0, size=(4, 5)).astype("float32")
    got = to_numpy(KDTerm(temperature=1.0)(t, s))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, numpy_kd(t, s, 1.0), rtol=1e-5, atol=1e-5)


def test_half_precision_inputs_compute_in_float32():
    rng = np.random.default_rng(2)
    t = rng.normal(size=(3, 4)).astype("float16")
    s = rng.normal(size=(3, 4)).astype("float16")
    got = KDTerm()(t, s)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    np.testing.assert_allclose(
        to_numpy(got), numpy_kd(t.astype("float32"), s.astype("float32"), 4.0), 1e-5
    )


def test_class_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(None, 10\).*\(None, 5\)"):
        KDTerm().build((None, 10), (None, 5))
    teacher = conv_net(8, "t_", classes=4)
    student = conv_net(4, "s_", classes=3)
    with pytest.raises(ValueError, match="same known number of classes"):
        Distiller(teacher, student, terms=[KDTerm()])


@pytest.mark.parametrize("kwargs", [{"temperature": 0}, {"temperature": -1.0}])
def test_bad_temperature(kwargs):
    with pytest.raises(ValueError, match="temperature"):
        KDTerm(**kwargs)


def test_config_round_trip():
    term = KDTerm(weight=0.5, temperature=3.0, teacher_layer="t_logits")
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(term)
    )
    assert isinstance(clone, KDTerm)
    assert (clone.weight, clone.temperature, clone.teacher_layer) == (
        0.5,
        3.0,
        "t_logits",
    )
    assert clone.student_layer is None and clone.log_name == "kd/output"
