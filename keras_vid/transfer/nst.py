"""Neuron selectivity transfer (Huang & Wang, 2017, arXiv:1707.01219).

Each channel of an activation map is read as a distribution over spatial
positions: for a map of shape `(H, W, C)`, channel `c` gives the vector
`f_c` of length `H * W`, L2-normalised (`F.normalize`, eps 1e-12). The loss is
the squared maximum mean discrepancy between the student's channels
`{s_i}` and the teacher's channels `{t_j}`, with the polynomial kernel
`k(x, y) = (x . y + c)^d`, `d = 2`, `c = 0`:

    NST(t, s) = mean_{i,i'} k(s_i, s_i') + mean_{j,j'} k(t_j, t_j')
                - 2 mean_{i,j} k(s_i, t_j),          per example.

This is RepDistiller's `NSTLoss` (`distiller_zoo/NST.py`), whose `.mean()`
over the batch and the channel pairs is the batch mean of this. When the maps
differ in size, both are adaptive-average-pooled to
`(min(H_t, H_s), min(W_t, W_s))` first (RepDistiller pools the larger one and
assumes square maps; see `keras_vid.transfer.spatial`).

Default weight, 50: RepDistiller's NST command `-b 50`
(`scripts/run_cifar_distill.sh`, line 27), summed over the layer pairs as
RepDistiller does (`helper/loops.py`).
"""

import keras
from keras import ops

from keras_vid.transfer.spatial import PooledMapTerm

DEFAULT_WEIGHT = 50.0
"""RepDistiller's NST weight, `-b 50` (`scripts/run_cifar_distill.sh`, line 27)."""

NORM_EPS = 1e-12
"""The floor on each channel's norm, as PyTorch's `F.normalize`."""


def channel_distributions(activation):
    """Returns each channel's L2-normalised vector over positions.

    Args:
        activation: `(batch, H, W, C)`.

    Returns:
        A `(batch, C, H * W)` float32 tensor.

    Example:

    >>> import numpy as np
    >>> f = channel_distributions(np.ones((1, 2, 2, 3), "float32"))
    >>> tuple(f.shape), round(float(f[0, 0, 0]), 3)
    ((1, 3, 4), 0.5)
    """
    a = ops.cast(activation, "float32")
    a = ops.reshape(a, (ops.shape(a)[0], -1, ops.shape(a)[-1]))
    f = ops.transpose(a, (0, 2, 1))
    # max(||f||, eps) as sqrt(max(||f||^2, eps^2)): same value, and a dead
    # channel gets a zero gradient instead of sqrt's infinite one at 0 (NaN).
    squared = ops.sum(ops.square(f), axis=-1, keepdims=True)
    return f / ops.sqrt(ops.maximum(squared, NORM_EPS**2))


def polynomial_kernel_mean(x, y, degree=2, constant=0.0):
    """Per-example mean of `(x_i . y_j + constant)^degree` over all pairs.

    Args:
        x: `(batch, n, d)`.
        y: `(batch, m, d)`.
        degree: the kernel's degree `d`. Defaults to 2.
        constant: the kernel's constant `c`. Defaults to 0.

    Returns:
        A `(batch,)` tensor.

    Example:

    >>> import numpy as np
    >>> x = np.ones((1, 2, 3), "float32")
    >>> float(polynomial_kernel_mean(x, x)[0])
    9.0
    """
    dots = ops.einsum("bid,bjd->bij", x, y)
    return ops.mean(ops.power(dots + constant, degree), axis=(1, 2))


@keras.saving.register_keras_serializable(package="keras_vid")
class NSTTerm(PooledMapTerm):
    """Neuron selectivity transfer: MMD^2 between the channels' spatial patterns.

    Per example, `mean k(s, s) + mean k(t, t) - 2 mean k(s, t)` over channel
    pairs, with each channel's map L2-normalised and the polynomial kernel
    `k(x, y) = (x . y)^2` (see the module docstring). It has no trainable
    weights; the teacher and student may have different channel counts, and
    maps of different sizes (any ratio, non-square included) are pooled to a
    common size first.

    Args:
        teacher_layer: the teacher map's layer (name or nested path).
        student_layer: the student map's layer (name or nested path).
        weight: the term's weight in the total loss, > 0. Defaults to 50
            (RepDistiller's `-b 50`).

    Example:

    >>> import numpy as np
    >>> term = NSTTerm("t_stage2", "s_stage2")
    >>> t = np.random.rand(3, 8, 8, 16).astype("float32")
    >>> s = np.random.rand(3, 8, 8, 4).astype("float32")
    >>> tuple(term(t, s).shape)
    (3,)
    """

    group = "nst"

    # The paper's and RepDistiller's kernel. Fixed rather than arguments: the
    # default weight was tuned for it.
    degree = 2
    constant = 0.0

    def __init__(self, teacher_layer, student_layer, weight=DEFAULT_WEIGHT, **kwargs):
        super().__init__(teacher_layer, student_layer, weight, **kwargs)

    def call(self, teacher, student, training=False):
        teacher, student = self.pooled(teacher, student)
        s = channel_distributions(student)
        t = channel_distributions(teacher)

        def k(x, y):
            return polynomial_kernel_mean(x, y, self.degree, self.constant)

        return k(s, s) + k(t, t) - 2.0 * k(s, t)
