"""TensorFlow where it is installed: keras-vid's core runs without it.

On Keras's JAX and PyTorch backends the distiller, the taps, the regressors
and the transfer terms need no TensorFlow; `tf.data`, `tf.distribute`, the
teacher cache, `keras_vid.data` and the recipes do. Modules of the core take
`tf` from here and use it only where TensorFlow is in play.
"""

import keras

try:
    import tensorflow as tf
except ImportError:  # A JAX or PyTorch install without TensorFlow.
    tf = None

# Whether Keras runs on TensorFlow (and so `tf.distribute` may be in play).
BACKEND = keras.backend.backend() == "tensorflow"


def is_dataset(x):
    """Whether `x` is a `tf.data.Dataset` (False where TensorFlow is absent).

    Example:

    >>> is_dataset([1, 2])
    False
    """
    return tf is not None and isinstance(x, tf.data.Dataset)
