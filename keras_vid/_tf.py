"""TensorFlow where it is in play: keras-vid's core runs without it.

On Keras's JAX and PyTorch backends the distiller, the taps, the regressors
and the transfer terms need no TensorFlow; `tf.data`, `tf.distribute`, the
teacher cache, `keras_vid.data`'s pipelines and the recipes do. Modules take
`tf` from here. On the TensorFlow backend it is the module itself; on the
others it is imported on first use, so that a JAX or PyTorch program pays
for TensorFlow (about 3 s at import, and its thread pools) only when it uses
one of those parts, and learns what to install when TensorFlow is absent.
"""

import sys

import keras

# Whether Keras runs on TensorFlow (and so `tf.distribute` may be in play).
BACKEND = keras.backend.backend() == "tensorflow"

# What to install for the parts that need TensorFlow (pyproject.toml's extras).
INSTALL = "pip install 'keras-vid[tensorflow]'"


def require(what):
    """Returns `tensorflow`, or raises an `ImportError` saying `what` needs it.

    Called on entry to the parts of keras-vid that need TensorFlow, so that a
    JAX or PyTorch install without it learns what to install, and what runs
    without it, before any work is done.

    Example:

    >>> require("keras_vid.data.load").__name__
    'tensorflow'
    """
    try:
        import tensorflow
    except ImportError:
        raise ImportError(
            f"{what} needs TensorFlow, which is not installed. Install it with "
            f"`{INSTALL}`. Without it, keras-vid's core runs on Keras's JAX and "
            "PyTorch backends: VIDDistiller and every transfer term, fed NumPy "
            "arrays or a keras.utils.PyDataset (keras_vid.data.load_arrays "
            "reads the built-in data sets as arrays)."
        ) from None
    return tensorflow


class _OnFirstUse:
    """Stands for `tensorflow` and imports it when an attribute is read."""

    def __getattr__(self, name):
        return getattr(require(f"tf.{name}"), name)


tf = require("Keras's TensorFlow backend") if BACKEND else _OnFirstUse()


def is_dataset(x):
    """Whether `x` is a `tf.data.Dataset` (without importing TensorFlow).

    Example:

    >>> is_dataset([1, 2])
    False
    """
    # Without TensorFlow imported, nothing can be one of its datasets.
    module = sys.modules.get("tensorflow")
    return module is not None and isinstance(x, module.data.Dataset)
