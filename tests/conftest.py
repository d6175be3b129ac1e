"""Shared fixtures: tiny teacher/student pairs that build in milliseconds.

Also CI's Fashion-MNIST check (`pytest_sessionstart`). Keras is imported
where it is used, not here, so that check fails a session in a second, before
TensorFlow loads.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `make test` runs the backend-portable tests again under KERAS_BACKEND=jax and
# torch with this set: as on a machine where only keras-vid's core
# dependencies are installed, any import of these fails.
WITHOUT_TENSORFLOW = "KERAS_VID_WITHOUT_TENSORFLOW"
NOT_CORE = ("tensorflow", "tensorflow_datasets", "keras_tuner")


class _NotInstalled:
    """A meta-path finder and loader that make imports of `NOT_CORE` fail.

    Not `sys.modules[name] = None`: Keras checks `"tensorflow" in sys.modules`
    and would then import it. Nor a finder that raises: torch asks
    `importlib.util.find_spec("tensorflow")` at import and needs an answer.
    The spec has no origin, as a namespace package's.
    """

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] not in NOT_CORE:
            return None
        import importlib.machinery

        return importlib.machinery.ModuleSpec(name, cls, origin=None)

    @staticmethod
    def create_module(spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)

    @staticmethod
    def exec_module(module):
        pass


if os.environ.get(WITHOUT_TENSORFLOW, "") not in ("", "0"):
    sys.meta_path.insert(0, _NotInstalled)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# The Fashion-MNIST tests read Debian's `dataset-fashion-mnist` package and
# skip without it. CI (.ci/run) sets KERAS_VID_REQUIRE_FASHION_MNIST=1 so that
# its absence fails the run instead of silently skipping those tests.
REQUIRE_FASHION_MNIST = "KERAS_VID_REQUIRE_FASHION_MNIST"
# Where that check looks; an override only for the check's own test
# (tests/recipes/test_recipes.py): the data tests themselves read the Debian path.
FASHION_MNIST_DIR = os.environ.get(
    "KERAS_VID_TEST_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"
)


def pytest_sessionstart(session):
    if os.environ.get(REQUIRE_FASHION_MNIST, "") in ("", "0"):
        return
    path = os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")
    if not os.path.isfile(path):
        pytest.exit(
            f"{REQUIRE_FASHION_MNIST} is set, but Fashion-MNIST is missing: "
            f"{path} does not exist. Without it the recipe and data tests "
            "(tests/recipes/, tests/test_experiment_resume.py, ...) "
            "would skip silently and CI would pass without running them. "
            "Install Debian's package as root: `apt-get install "
            "dataset-fashion-mnist` (`make fashion-mnist` does it), or unset "
            f"{REQUIRE_FASHION_MNIST} to let those tests skip.",
            returncode=1,
        )


def pytest_collection_modifyitems(config, items):
    # Tests marked `tensorflow` use TensorFlow's own API (tf.function, a
    # strategy, tf.data); the others run on every Keras backend.
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"needs TensorFlow; this session runs {backend}")
    for item in items:
        if "tensorflow" in item.keywords:
            item.add_marker(skip)


def grad(fn, x):
    """`(sum(fn(x)), d sum(fn(x)) / dx)` as NumPy, by the backend's autodiff.

    Example:

    >>> value, g = grad(lambda v: v * v, np.ones(2, "float32"))
    >>> value, g.tolist()
    (2.0, [2.0, 2.0])
    """
    import keras

    x = np.asarray(x, "float32")
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        value, g = jax.value_and_grad(lambda v: keras.ops.sum(fn(v)))(x)
        return float(value), np.asarray(g)
    if backend == "torch":
        import torch

        v = torch.tensor(x, requires_grad=True)
        value = keras.ops.sum(fn(v))
        value.backward()
        return float(value.detach()), v.grad.numpy()
    import tensorflow as tf

    v = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(fn(v))
    return float(value), tape.gradient(value, v).numpy()


def conv_net(width, prefix, classes=3, input_shape=(8, 8, 1), bn=True, seed=0):
    """A small conv net with taps `<prefix>stage1` (8x8) and `<prefix>stage2` (4x4)."""
    import keras

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
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
