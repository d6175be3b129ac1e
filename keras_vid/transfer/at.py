"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017).

An activation map `a` of shape `(H, W, C)` gives a spatial attention map

    Q(a) = vec(mean_c |a_c|^p),          (length H * W)
    at(a) = Q(a) / max(||Q(a)||_2, 1e-12)

(the paper's activation-based attention with `F = mean_c |.|^p`, and
PyTorch's `F.normalize` for the unit length). The loss, per example, is the
mean over positions of the squared difference of the two unit vectors:

    AT(t, s) = mean_{hw} (at(s) - at(t))^2.

This is RepDistiller's `Attention` (`distiller_zoo/AT.py`), whose
`.pow(2).mean()` over batch and positions is the batch mean of this. When the
two maps differ in size, both activations are adaptive-average-pooled to
`(min(H_t, H_s), min(W_t, W_s))` before the attention maps are taken, as
RepDistiller pools the larger activation; here non-square maps and
non-integer ratios work too (`keras_vid.transfer.spatial`).

Default weight, 1000: RepDistiller's AT command `-b 1000`
(`scripts/run_cifar_distill.sh`, line 9), summed over the layer pairs
(`helper/loops.py` sums the per-pair losses). It agrees with the authors'
code (szagoruyko/attention-transfer `cifar.py`: `at_loss` is
`(at(x) - at(y)).pow(2).mean()`, added as `opt.beta * sum(loss_groups)`,
run with the paper's beta = 1e3; the flag itself defaults to 0). The paper's
Eq. 2 writes `beta / 2` times a (non-squared) norm, and Sec. 4.1 sets beta to
1e3 divided by the attention-map size and the batch size, which the mean over
positions and examples here already divides by.
"""

import keras
from keras import ops

from keras_vid.transfer.base import check_weight
from keras_vid.transfer.spatial import PooledMapTerm

DEFAULT_WEIGHT = 1000.0
"""RepDistiller's AT weight, `-b 1000` (`scripts/run_cifar_distill.sh`, line 9)."""

NORM_EPS = 1e-12
"""The floor on the attention map's norm, as PyTorch's `F.normalize`."""


def attention_map(activation, p=2.0):
    """Returns the unit-length spatial attention map of a channels-last map.

    Args:
        activation: `(batch, H, W, C)`.
        p: the exponent of `|a|^p`. Defaults to 2.

    Returns:
        A `(batch, H * W)` float32 tensor, each row of L2 norm 1 (or 0).

    Example:

    >>> import numpy as np
    >>> a = np.ones((1, 2, 2, 3), "float32")
    >>> [round(float(v), 3) for v in attention_map(a)[0]]
    [0.5, 0.5, 0.5, 0.5]
    """
    a = ops.cast(activation, "float32")
    # |a|^p, not a^p: for odd p RepDistiller's a.pow(p) would let signs cancel.
    q = ops.mean(ops.power(ops.abs(a), p), axis=-1)
    q = ops.reshape(q, (ops.shape(q)[0], -1))
    # max(||q||, eps) as sqrt(max(||q||^2, eps^2)): same value, and a zero map
    # gets a zero gradient instead of sqrt's infinite one at 0 (NaN).
    squared = ops.sum(ops.square(q), axis=-1, keepdims=True)
    return q / ops.sqrt(ops.maximum(squared, NORM_EPS**2))


@keras.saving.register_keras_serializable(package="keras_vid")
class ATTerm(PooledMapTerm):
    """Attention transfer: match the student's spatial attention to the teacher's.

    Per example, `mean_{hw} (at(s) - at(t))^2` with `at(a)` the L2-normalised
    map `mean_c |a_c|^p` (see the module docstring). It has no trainable
    weights. Maps of different sizes (any ratio, non-square included) are
    pooled to a common size first.

    Args:
        teacher_layer: the teacher map's layer (name or nested path).
        student_layer: the student map's layer (name or nested path).
        weight: the term's weight in the total loss, > 0. Defaults to 1000
            (RepDistiller's `-b 1000`).
        p: the exponent of the attention map, > 0. Defaults to 2, the
            paper's and RepDistiller's choice.

    Example:

    >>> import numpy as np
    >>> term = ATTerm("t_stage2", "s_stage2")
    >>> t = np.random.rand(3, 8, 8, 16).astype("float32")
    >>> s = np.random.rand(3, 5, 5, 4).astype("float32")
    >>> tuple(term(t, s).shape)
    (3,)
    """

    group = "at"

    def __init__(
        self, teacher_layer, student_layer, weight=DEFAULT_WEIGHT, p=2, **kwargs
    ):
        super().__init__(teacher_layer, student_layer, weight, **kwargs)
        self.p = check_weight(p, "p")

    def call(self, teacher, student, training=False):
        teacher, student = self.pooled(teacher, student)
        diff = attention_map(student, self.p) - attention_map(teacher, self.p)
        return ops.mean(ops.square(diff), axis=-1)

    def get_config(self):
        return {**super().get_config(), "p": self.p}
