"""The FitNet hint term against a NumPy regressor + MSE, and stage-1 training."""

import keras
import numpy as np
import pytest
from conftest import conv_net
from keras.ops import convert_to_numpy as to_numpy
from transfer_refs import adaptive_avg_pool

from keras_vid.regressors import DenseRegressor, VectorToMapRegressor
from keras_vid.transfer.fitnet import (
    FitNetTerm,
    HintRegressor,
    fitnet_hint_pretraining,
    hint_regressor,
)


def randomise(term, rng):
    """Random conv and BatchNorm weights, including the moving statistics."""
    reg = term.regressor
    reg.conv.kernel.assign(rng.normal(size=reg.conv.kernel.shape))
    reg.conv.bias.assign(rng.normal(size=reg.conv.bias.shape))
    reg.bn.gamma.assign(rng.uniform(0.5, 2.0, size=reg.bn.gamma.shape))
    reg.bn.beta.assign(rng.normal(size=reg.bn.beta.shape))
    reg.bn.moving_mean.assign(rng.normal(size=reg.bn.moving_mean.shape))
    reg.bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=reg.bn.gamma.shape))


def numpy_hint(t, s, reg):
    """mean over elements of (t - relu(bn(conv1x1(resize(s)))))^2, per example."""
    s = s.astype("float64")
    if s.shape[1:3] != t.shape[1:3]:
        s = adaptive_avg_pool(s, t.shape[1:3])
    kernel = np.asarray(reg.conv.kernel, "float64")[0, 0]  # (C_s, C_t)
    y = s @ kernel + np.asarray(reg.conv.bias, "float64")
    bn = reg.bn
    y = (y - to_numpy(bn.moving_mean)) / np.sqrt(
        np.asarray(bn.moving_variance, "float64") + bn.epsilon
    ) * to_numpy(bn.gamma) + to_numpy(bn.beta)
    y = np.maximum(y, 0.0)
    return ((t - y) ** 2).mean(axis=(1, 2, 3))


@pytest.mark.parametrize(
    "s_shape",
    [(5, 4, 4, 3), (5, 7, 6, 3)],  # same size; 7/4 and 6/4 ratios
)
def test_matches_numpy_in_inference_mode(s_shape):
    rng = np.random.default_rng(0)
    t = rng.normal(size=(5, 4, 4, 6)).astype("float32")
    s = rng.normal(size=s_shape).astype("float32")
    term = FitNetTerm("t", "s")
    term.build(t.shape, s.shape)
    randomise(term, rng)
    got = to_numpy(term(t, s, training=False))
    assert got.shape == (5,)
    np.testing.assert_allclose(got, numpy_hint(t, s, term.regressor), rtol=1e-5)


def test_custom_regressor_is_plain_mse_and_round_trips():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(3, 2, 2, 4)).astype("float32")
    s = rng.normal(size=(3, 2, 2, 4)).astype("float32")
    term = FitNetTerm("t", "s", weight=2.0, regressor=keras.layers.Identity())
    np.testing.assert_allclose(
        to_numpy(term(t, s)), ((t - s) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5
    )
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(term)
    )
    assert isinstance(clone.regressor, keras.layers.Identity)
    assert clone.weight == 2.0


def test_regressor_choice_and_shape_check():
    assert isinstance(hint_regressor((None, 8, 8, 4), (None, 4, 4, 8)), HintRegressor)
    assert isinstance(hint_regressor((None, 8, 8, 4), (None, 10)), DenseRegressor)
    assert isinstance(hint_regressor((None, 32), (None, 2, 2, 4)), VectorToMapRegressor)
    up = HintRegressor(8, (6, 5))
    assert tuple(up(np.ones((1, 3, 2, 4), "float32")).shape) == (1, 6, 5, 8)
    with pytest.raises(ValueError, match="must output the teacher tap's shape"):
        FitNetTerm("t", "s", regressor=keras.layers.Identity()).build(
            (None, 4, 4, 8), (None, 4, 4, 2)
        )


def test_hint_pretraining_trains_only_up_to_the_guided_layer():
    teacher = conv_net(8, "t_", seed=1)
    student = conv_net(4, "s_", seed=2)
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype="float32")
    t_before = [np.array(w) for w in teacher.weights]
    after_hint = ["s_stage2", "s_logits"]
    frozen = {
        n: [np.array(w) for w in student.get_layer(n).weights] for n in after_hint
    }
    conv1 = np.array(student.get_layer("s_conv1").kernel)
    stage1 = fitnet_hint_pretraining(
        teacher,
        student,
        ("t_stage1", "s_stage1"),
        x,
        epochs=4,
        optimizer=keras.optimizers.Adam(0.02),
        batch_size=16,
        verbose=0,
    )
    losses = stage1.history.history["fitnet_loss"]
    assert losses[-1] < losses[0]
    assert not np.array_equal(np.array(student.get_layer("s_conv1").kernel), conv1)
    for n in after_hint:
        for w0, w1 in zip(frozen[n], student.get_layer(n).weights):
            assert np.array_equal(w0, np.array(w1))
    for w0, w1 in zip(t_before, teacher.weights):
        assert np.array_equal(w0, np.array(w1))
    term = stage1.terms[0]
    assert (term.teacher_layer, term.student_layer) == ("t_stage1", "s_stage1")
    assert "fitnet/s_stage1" in stage1.history.history


def test_hint_pretraining_rejects_outputs():
    with pytest.raises(ValueError, match="no hint"):
        fitnet_hint_pretraining(None, None, (None, "s"), None, 1, "sgd")
