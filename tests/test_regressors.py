"""Mean networks: shapes for every tap-shape case, pooling against NumPy."""

import math

import keras
import numpy as np
import pytest
from conftest import grad
from keras.ops import convert_to_numpy as to_numpy

from keras_vid.regressors import (
    AdaptiveAveragePooling2D,
    ConvRegressor,
    DenseRegressor,
    PointwiseConv2D,
    VectorToMapRegressor,
    default_regressor,
)


def numpy_adaptive_pool(x, out_h, out_w):
    """PyTorch's adaptive_avg_pool2d bin edges, written as loops."""
    b, h, w, c = x.shape
    y = np.zeros((b, out_h, out_w, c), x.dtype)
    for i in range(out_h):
        h0, h1 = math.floor(i * h / out_h), math.ceil((i + 1) * h / out_h)
        for j in range(out_w):
            w0, w1 = math.floor(j * w / out_w), math.ceil((j + 1) * w / out_w)
            y[:, i, j, :] = x[:, h0:h1, w0:w1, :].mean(axis=(1, 2))
    return y


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [((8, 8), (4, 4)), ((7, 5), (3, 2)), ((10, 6), (4, 4)), ((5, 5), (5, 5))],
)
def test_adaptive_pooling_matches_numpy(in_hw, out_hw):
    x = np.random.default_rng(0).normal(size=(2, *in_hw, 3)).astype("float32")
    got = to_numpy(AdaptiveAveragePooling2D(out_hw)(x))
    np.testing.assert_allclose(
        got, numpy_adaptive_pool(x, *out_hw), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "student, teacher, cls",
    [
        ((None, 8, 8, 4), (None, 8, 8, 16), ConvRegressor),  # same size
        ((None, 16, 16, 4), (None, 8, 8, 16), ConvRegressor),  # integer ratio down
        ((None, 7, 5, 4), (None, 3, 2, 16), ConvRegressor),  # non-integer, non-square
        ((None, 4, 4, 4), (None, 8, 6, 16), ConvRegressor),  # student smaller
        ((None, 32), (None, 10), DenseRegressor),  # vector to vector (VID-LP)
        ((None, 4, 4, 8), (None, 10), DenseRegressor),  # map to vector
        ((None, 32), (None, 4, 4, 8), VectorToMapRegressor),  # MLP student, CNN teacher
    ],
)
def test_default_regressor_output_shapes(student, teacher, cls):
    reg = default_regressor(student, teacher)
    assert isinstance(reg, cls)
    x = np.ones((2, *student[1:]), "float32")
    assert tuple(reg(x).shape) == (2, *teacher[1:])


def test_conv_regressor_is_the_paper_form():
    reg = ConvRegressor(channels=16, output_size=(4, 4))
    reg.build((None, 4, 4, 6))
    kernels = [w.shape for w in reg.weights]
    # Three bias-free 1x1 convs, hidden width = teacher channels.
    assert kernels == [(1, 1, 6, 16), (1, 1, 16, 16), (1, 1, 16, 16)]


def test_conv_regressor_relu_between_convs():
    reg = ConvRegressor(channels=1, output_size=(1, 1), hidden_channels=1)
    reg.build((None, 1, 1, 1))
    for w in reg.weights:
        w.assign(np.ones(w.shape, "float32"))
    # With all-one 1x1 kernels the net is relu(relu(x)) for x < 0: zero.
    assert float(to_numpy(reg(np.full((1, 1, 1, 1), -3.0, "float32"))).sum()) == 0.0
    assert float(to_numpy(reg(np.full((1, 1, 1, 1), 3.0, "float32"))).sum()) == 3.0


def test_dense_regressor_is_linear():
    reg = DenseRegressor(3)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    y = to_numpy(reg(x))
    w = reg.get_weights()
    assert len(w) == 1  # no bias, mu(s) = W s
    np.testing.assert_allclose(y, x @ w[0], rtol=1e-5)


@pytest.mark.parametrize(
    "student, teacher",
    [((None, 6, 6, 4), (None, 3, 3, 8)), ((None, 3, 3, 4), (None, 6, 6, 8))],
)
def test_batch_norm_conv_regressor_ignores_the_student_scale(student, teacher):
    # The ResNet-student blow-up came from a residual tap that grew without
    # bound; with BatchNorm the mean must not follow the tap's scale.
    reg = default_regressor(student, teacher, batch_norm=True)
    x = np.random.default_rng(1).normal(size=(16, *student[1:])).astype("float32")
    # Scales well above BatchNorm's epsilon (1e-3), which the ratio ignores.
    small = to_numpy(reg(10.0 * x, training=True))
    large = to_numpy(reg(10000.0 * x, training=True))
    np.testing.assert_allclose(large, small, rtol=1e-3, atol=1e-3)
    plain = default_regressor(student, teacher, name="plain")
    plain.build((None, *student[1:]))
    ratio = (
        np.abs(to_numpy(plain(1000.0 * x))).mean() / np.abs(to_numpy(plain(x))).mean()
    )
    np.testing.assert_allclose(ratio, 1000.0, rtol=1e-3)


@pytest.mark.parametrize(
    "student, teacher",
    [
        ((None, 4, 4), (None, 4, 4, 8)),  # rank 3
        ((None, 8, 8, 4), (None, 2, 2, 2, 2)),  # rank 5
        ((None, 8, 8, 4), (None, None, None, 8)),  # unknown teacher size
    ],
)
def test_unbridgeable_shapes_raise(student, teacher):
    with pytest.raises(ValueError, match="No default regressor"):
        default_regressor(student, teacher)


@pytest.mark.parametrize(
    "layer",
    [
        ConvRegressor(8, (3, 2)),
        DenseRegressor(4),
        ConvRegressor(8, (3, 2), batch_norm=True),
        VectorToMapRegressor((2, 2, 3)),
        AdaptiveAveragePooling2D((2, 3)),
    ],
)
def test_regressors_serialise(layer):
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("use_bias", [False, True])
def test_pointwise_conv_equals_a_1x1_conv2d_and_its_gradient(use_bias):
    # The regressors' matmul form of a 1x1 convolution: the same values and
    # the same input gradient as Keras's Conv2D with the same kernel.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 3, 6)).astype("float32")
    pointwise = PointwiseConv2D(4, use_bias=use_bias)
    pointwise.build(x.shape)
    conv = keras.layers.Conv2D(4, 1, use_bias=use_bias)
    conv.build(x.shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in conv.weights]
    conv.set_weights(weights)
    pointwise.set_weights(weights)
    np.testing.assert_allclose(
        to_numpy(pointwise(x)), to_numpy(conv(x)), rtol=1e-5, atol=1e-5
    )
    # d sum(f(x)^2) / dx: the same through both.
    _, g_pointwise = grad(lambda v: pointwise(v) ** 2, x)
    _, g_conv = grad(lambda v: conv(v) ** 2, x)
    np.testing.assert_allclose(g_pointwise, g_conv, rtol=1e-4, atol=1e-4)
    clone = PointwiseConv2D.from_config(pointwise.get_config())
    assert clone.kernel_size == (1, 1) and clone.use_bias == use_bias
