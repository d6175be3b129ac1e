"""Tests for the model zoo: shapes, taps, parameter counts and saving."""

import doctest
import importlib
import sys

import keras
import numpy as np
import pytest

from keras_vid.models import cnn as cnn_module
from keras_vid.models import get_model, mlp, small_cnn, tap_names, wide_resnet

WRN_TAPS = ["conv1", "stage1", "stage2", "stage3", "features", "logits"]


# Independent parameter counts, written from the architecture definition
# (Zagoruyko & Komodakis 2016 / RepDistiller wrn.py), not read from Keras.
def _conv(k, cin, cout):
    return k * k * cin * cout  # No bias.


def _bn(c, trainable_only):
    # gamma and beta are trainable; Keras also stores moving mean and variance.
    return 2 * c if trainable_only else 4 * c


def _wrn_params(depth, width, in_ch=3, classes=10, trainable_only=False):
    n = (depth - 4) // 6
    ch = [16, 16 * width, 32 * width, 64 * width]
    total = _conv(3, in_ch, ch[0])
    for g in (1, 2, 3):
        for b in range(n):
            cin, cout = (ch[g - 1] if b == 0 else ch[g]), ch[g]
            total += _bn(cin, trainable_only) + _conv(3, cin, cout)
            total += _bn(cout, trainable_only) + _conv(3, cout, cout)
            if cin != cout:
                total += _conv(1, cin, cout)
    total += _bn(ch[3], trainable_only)
    return total + ch[3] * classes + classes


def _cnn_params(widths, in_ch=1, classes=10, trainable_only=False):
    total, cin = 0, in_ch
    for w in widths:
        total += _conv(3, cin, w) + _bn(w, trainable_only)
        total += _conv(3, w, w) + _bn(w, trainable_only)
        cin = w
    return total + cin * classes + classes


def _trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.fixture(scope="module")
def wrn_40_2():
    return wide_resnet(40, 2)


@pytest.fixture(scope="module")
def wrn_16_1():
    return wide_resnet(16, 1)


@pytest.mark.parametrize("depth,width", [(40, 2), (16, 1)])
def test_wrn_tap_shapes_cifar(depth, width, wrn_40_2, wrn_16_1):
    model = wrn_40_2 if depth == 40 else wrn_16_1
    assert model.name == f"wrn_{depth}_{width}"
    shapes = {n: tuple(model.get_layer(n).output.shape) for n in WRN_TAPS}
    w = width
    assert shapes == {
        "conv1": (None, 32, 32, 16),
        "stage1": (None, 32, 32, 16 * w),
        "stage2": (None, 16, 16, 32 * w),
        "stage3": (None, 8, 8, 64 * w),
        "features": (None, 64 * w),
        "logits": (None, 10),
    }
    assert model.outputs[0] is model.get_layer("logits").output


@pytest.mark.parametrize("depth,width", [(40, 2), (16, 1)])
def test_wrn_builds_for_fashion_mnist(depth, width):
    model = wide_resnet(depth, width, num_classes=7, input_shape=(28, 28, 1))
    assert tuple(model.get_layer("stage1").output.shape) == (None, 28, 28, 16 * width)
    assert tuple(model.get_layer("stage2").output.shape) == (None, 14, 14, 32 * width)
    assert tuple(model.get_layer("stage3").output.shape) == (None, 7, 7, 64 * width)
    assert tuple(model.output.shape) == (None, 7)


def test_wrn_forward_pass(wrn_16_1, wrn_40_2):
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    assert tuple(wrn_16_1(x, training=False).shape) == (2, 10)
    assert tuple(wrn_40_2(x[:1], training=False).shape) == (1, 10)


def test_wrn_parameter_counts_match_hand_formula(wrn_40_2, wrn_16_1):
    for model, depth, width in ((wrn_40_2, 40, 2), (wrn_16_1, 16, 1)):
        assert model.count_params() == _wrn_params(depth, width)
        assert _trainable_count(model) == _wrn_params(depth, width, trainable_only=True)
    # The sizes quoted by the WRN / RepDistiller papers.
    assert _trainable_count(wrn_40_2) == pytest.approx(2.2e6, rel=0.03)
    assert _trainable_count(wrn_16_1) == pytest.approx(0.175e6, rel=0.03)


def test_wrn_parameter_count_other_input_and_classes():
    model = wide_resnet(16, 2, num_classes=100, input_shape=(28, 28, 1))
    assert model.count_params() == _wrn_params(16, 2, in_ch=1, classes=100)


@pytest.mark.parametrize("depth", [15, 41, 4, 0, -2, 16.0, "16"])
def test_wrn_invalid_depth(depth):
    with pytest.raises(ValueError, match=r"6 \* n \+ 4.*40.*Received: depth="):
        wide_resnet(depth, 1)


def test_wrn_invalid_width():
    with pytest.raises(ValueError, match="width"):
        wide_resnet(16, 0)


def test_wrn_weight_decay_is_half_the_sgd_coefficient(wrn_16_1):
    # One L2 term per trainable weight, as PyTorch's SGD decays every parameter.
    assert len(wrn_16_1.losses) == len(wrn_16_1.trainable_weights)
    kernel = wrn_16_1.get_layer("conv1").kernel
    expected = 5e-4 / 2 * float(np.sum(np.square(kernel.numpy())))
    reg = wrn_16_1.get_layer("conv1").kernel_regularizer
    assert float(reg(kernel)) == pytest.approx(expected, rel=1e-5)
    assert not wide_resnet(16, 1, weight_decay=0.0).losses


def test_wrn_dropout_layers_only_when_asked(wrn_16_1):
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in wrn_16_1.layers)
    model = wide_resnet(16, 1, dropout_rate=0.3)
    dropouts = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Dropout)]
    assert len(dropouts) == 6  # One per block, 2 blocks x 3 groups.


def test_wrn_same_shape_layers_get_different_initial_weights(wrn_16_1):
    # Guards against a shared seeded initializer giving identical kernels.
    a = wrn_16_1.get_layer("stage1_block1_conv2").kernel.numpy()
    b = wrn_16_1.get_layer("stage1_block2_conv1").kernel.numpy()
    assert a.shape == b.shape
    assert not np.allclose(a, b)


def test_small_cnn_shapes_and_params():
    teacher = get_model("cnn")
    student = get_model("cnn-small")
    for model, widths in ((teacher, (32, 64, 128)), (student, (8, 16, 32))):
        w1, w2, w3 = widths
        shapes = [tuple(model.get_layer(n).output.shape) for n in cnn_module.TAPS]
        assert shapes == [
            (None, 28, 28, w1),
            (None, 14, 14, w2),
            (None, 7, 7, w3),
            (None, w3),
            (None, 10),
        ]
        assert model.count_params() == _cnn_params(widths)
        assert _trainable_count(model) == _cnn_params(widths, trainable_only=True)
    assert (teacher.name, student.name) == ("cnn", "cnn_small")
    assert student.count_params() * 10 < teacher.count_params()
    x = np.zeros((3, 28, 28, 1), "float32")
    assert tuple(student(x, training=False).shape) == (3, 10)


@pytest.mark.parametrize("widths", [(), (8, 0, 16), (8, -16), (8, 16.0), (True,)])
def test_small_cnn_rejects_bad_widths(widths):
    # Any number of stages >= 1 is valid; each width a positive integer.
    with pytest.raises(ValueError, match="one or more positive integer"):
        small_cnn(widths=widths)


def test_small_cnn_two_and_four_stages():
    two = small_cnn(widths=(8, 16))
    assert cnn_module.taps(2) == ["stage1", "stage2", "features", "logits"]
    assert [tuple(two.get_layer(n).output.shape) for n in cnn_module.taps(2)] == [
        (None, 28, 28, 8),
        (None, 14, 14, 16),
        (None, 16),
        (None, 10),
    ]
    assert two.count_params() == _cnn_params((8, 16))
    four = small_cnn(widths=(4, 8, 16, 32))
    # The fourth stage pools 7x7 to 3x3 (2x2 pooling, "valid" padding).
    assert [tuple(four.get_layer(n).output.shape) for n in cnn_module.taps(4)] == [
        (None, 28, 28, 4),
        (None, 14, 14, 8),
        (None, 7, 7, 16),
        (None, 3, 3, 32),
        (None, 32),
        (None, 10),
    ]
    assert four.count_params() == _cnn_params((4, 8, 16, 32))


def test_small_cnn_without_batch_norm_has_conv_biases():
    model = small_cnn(widths=(8, 16), batch_norm=False, activation="elu")
    assert not any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers
    )
    convs = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Conv2D)]
    assert len(convs) == 4 and all(c.use_bias and c.bias is not None for c in convs)
    assert model.get_layer("stage2").get_config()["activation"] == "elu"
    # Each conv has k*k*cin*cout weights and cout biases.
    expected = (9 * 1 * 8 + 8) + (9 * 8 * 8 + 8) + (9 * 8 * 16 + 16)
    expected += (9 * 16 * 16 + 16) + (16 * 10 + 10)
    assert model.count_params() == expected
    # With BatchNorm (the default), no conv has a bias.
    assert not any(
        lyr.use_bias
        for lyr in small_cnn(widths=(8, 16)).layers
        if isinstance(lyr, keras.layers.Conv2D)
    )


NEW_NAMES = ["cnn-tiny", "cnn-2stage", "cnn-4stage", "cnn-nobn", "mlp-small"]


@pytest.mark.parametrize("name", NEW_NAMES + ["mobilenetv2"])
def test_new_zoo_names_build(name):
    model = get_model(name)
    assert model.name == name.replace("-", "_")
    assert tuple(model.output.shape) == (None, 10)
    assert model.input_shape == (None, 28, 28, 1)


def test_new_zoo_names_taps():
    assert tap_names("cnn-4stage") == [
        "stage1",
        "stage2",
        "stage3",
        "stage4",
        "features",
        "logits",
    ]
    assert tap_names("cnn-2stage") == ["stage1", "stage2", "features", "logits"]
    assert tap_names("mlp-small") == ["hidden1", "hidden2", "features", "logits"]
    with pytest.raises(ValueError, match="suggest_pairs"):
        tap_names("mobilenetv2")


def test_mlp_shapes_and_params():
    model = mlp()
    assert model.name == "mlp"
    shapes = [tuple(model.get_layer(n).output.shape) for n in tap_names("mlp")]
    assert shapes == [(None, 512), (None, 256), (None, 256), (None, 10)]
    assert model.count_params() == (784 * 512 + 512) + (512 * 256 + 256) + 2570
    bn = mlp(hidden=(64, 32, 16), batch_norm=True, num_classes=3)
    assert [n for n in tap_names("mlp", hidden=(64, 32, 16))] == [
        "hidden1",
        "hidden2",
        "hidden3",
        "features",
        "logits",
    ]
    # Dense layers lose their bias to BatchNorm: weights + 4 BN vectors each.
    assert bn.count_params() == (784 * 64 + 64 * 32 + 32 * 16 + 16 * 3 + 3) + 4 * 112
    x = np.zeros((2, 28, 28, 1), "float32")
    assert tuple(bn(x, training=False).shape) == (2, 3)


def test_mlp_rejects_bad_hidden():
    with pytest.raises(ValueError, match="hidden size"):
        mlp(hidden=())
    with pytest.raises(ValueError, match="hidden size"):
        mlp(hidden=(64, 0))


ALL_NAMES = ["wrn-16-1", "cnn", "cnn-small", "mlp", *NEW_NAMES]


@pytest.mark.parametrize("name", ALL_NAMES + ["wrn-40-2"])
def test_taps_exist_and_are_called_once(name, wrn_40_2):
    model = wrn_40_2 if name == "wrn-40-2" else get_model(name)
    for tap in tap_names(name):
        layer = model.get_layer(tap)
        assert len(layer._inbound_nodes) == 1, tap


@pytest.mark.parametrize("name", ALL_NAMES)
def test_layer_names_do_not_depend_on_creation_order(name):
    # Keras' automatic names ("conv2d_3") change with every model built; all
    # names here are explicit, so two builds give the same names.
    first = [layer.name for layer in get_model(name).layers]
    second = [layer.name for layer in get_model(name).layers]
    assert first == second
    assert len(set(first)) == len(first)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("wrn-16-1", {"input_shape": (16, 16, 3), "dropout_rate": 0.1}),
        ("cnn-small", {}),
        ("mlp", {"hidden": (32, 16), "batch_norm": True}),
    ],
)
def test_save_load_round_trip_safe_mode(name, kwargs, tmp_path):
    model = get_model(name, num_classes=5, **kwargs)
    shape = model.input_shape[1:]
    x = np.random.default_rng(1).normal(size=(4, *shape)).astype("float32")
    # A training step moves BatchNorm statistics away from their initial
    # values, so the round trip is checked on non-trivial state.
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.train_on_batch(x, np.arange(4) % 5)
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.name == model.name
    assert [layer.name for layer in loaded.layers] == [
        layer.name for layer in model.layers
    ]
    np.testing.assert_array_equal(
        np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False))
    )
    for tap in tap_names(name, hidden=kwargs.get("hidden")):
        assert len(loaded.get_layer(tap)._inbound_nodes) == 1


def test_get_model_parses_names():
    model = get_model("WRN_10_3", num_classes=4, input_shape=(8, 8, 2))
    assert model.name == "wrn_10_3"
    assert tuple(model.get_layer("stage3").output.shape) == (None, 2, 2, 192)
    assert tuple(model.output.shape) == (None, 4)
    assert get_model("cnn", name="teacher").name == "teacher"
    assert get_model("mlp", input_shape=(4, 4, 1)).count_params() == (
        16 * 512 + 512 + 512 * 256 + 256 + 2570
    )
    assert tap_names("wrn-40-2") == WRN_TAPS
    assert tap_names("cnn-small") == [
        "stage1",
        "stage2",
        "stage3",
        "features",
        "logits",
    ]


@pytest.mark.parametrize("name", ["resnet18", "wrn-40", "wrn-40-2-1", "cnn-large", ""])
def test_get_model_rejects_unknown_names(name):
    with pytest.raises(
        ValueError, match=r"Unknown model name.*wrn-40-2.*cnn-small.*mlp"
    ):
        get_model(name)
    with pytest.raises(ValueError, match="Unknown model name"):
        tap_names(name)


def test_get_model_rejects_invalid_wrn_depth():
    with pytest.raises(ValueError, match="Received: depth=41"):
        get_model("wrn-41-2")
    with pytest.raises(ValueError, match="Received: depth=41"):
        tap_names("wrn-41-2")


@pytest.mark.parametrize(
    "module",
    [
        "keras_vid.models",
        "keras_vid.models.wide_resnet",
        "keras_vid.models.cnn",
        "keras_vid.models.mlp",
        "keras_vid.models.mobilenet",
    ],
)
def test_docstring_examples_run(module):
    importlib.import_module(module)
    # The package re-exports functions under its submodules' names
    # (`keras_vid.models.mlp` is the function), so take the module itself.
    result = doctest.testmod(sys.modules[module], optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_mobilenet_batchnorm_statistics_move_fast_enough_for_short_runs():
    """keras.applications' momentum 0.999 left inference at chance in the suite."""
    model = get_model("mobilenetv2")
    backbone = model.layers[-1]
    bns = [
        layer
        for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(bns) > 40 and {bn.momentum for bn in bns} == {0.9}
