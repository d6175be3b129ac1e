"""Shared fixtures: tiny teacher/student pairs that build in milliseconds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def conv_net(width, prefix, classes=3, input_shape=(8, 8, 1), bn=True, seed=0):
    """A small conv net with taps `<prefix>stage1` (8x8) and `<prefix>stage2` (4x4)."""
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(width, 3, padding="same", name=prefix + "conv1")(x)
    if bn:
        # "sync": batch statistics over the global batch under tf.distribute.
        x = keras.layers.BatchNormalization(
            synchronized=bn == "sync", name=prefix + "bn"
        )(x)
    x = keras.layers.ReLU(name=prefix + "stage1")(x)
    x = keras.layers.Conv2D(
        2 * width,
        3,
        strides=2,
        padding="same",
        activation="relu",
        name=prefix + "stage2",
    )(x)
    x = keras.layers.GlobalAveragePooling2D(name=prefix + "features")(x)
    out = keras.layers.Dense(classes, name=prefix + "logits")(x)
    return keras.Model(inp, out, name=prefix + "net")


@pytest.fixture
def models():
    """(teacher, student): widths 8 and 4, same 8x8x1 input, 3 classes."""
    return conv_net(8, "t_", seed=1), conv_net(4, "s_", seed=2)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, 32)
    return x, y


def ce_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
