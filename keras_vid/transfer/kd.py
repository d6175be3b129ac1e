"""Knowledge distillation from softened logits (Hinton et al., 2015).

For teacher logits `t` and student logits `s`, with temperature `T`:

    KD(t, s) = T^2 * KL(softmax(t / T) || softmax(s / T))
             = T^2 * sum_c p_c (log p_c - log q_c),
    p = softmax(t / T),  q = softmax(s / T).

The `T^2` factor keeps the soft targets' gradient scale independent of the
temperature (Hinton et al., Sec. 2). This is RepDistiller's `DistillKL`
(`distiller_zoo/KD.py`): `kl_div(log_softmax(s/T), softmax(t/T), sum) * T^2 /
batch`, i.e. the per-example value above averaged over the batch.

Keras's own `keras.distillation.LogitsDistillation` with its default
`"kl_divergence"` loss string applies neither the softmax nor `T^2`; this term
does both, in float32 with `log_softmax` so that large logits do not overflow.

`standardize=True` is logit standardisation (Sun et al., "Logit
Standardization in Knowledge Distillation", CVPR 2024): each example's
teacher and student logits are z-scored over the classes before the
temperature softmax, so the student matches the teacher's logit *relations*
rather than their range (`standardize_logits`).
"""

import keras
from keras import ops

from keras_vid.taps import OUTPUT
from keras_vid.transfer.base import TransferTerm, check_weight

# The authors' `normalize`: (z - mean) / (1e-7 + std), with torch's default
# unbiased std (logit-standardization-KD, mdistiller/distillers/KD.py).
STANDARDIZE_EPS = 1e-7


def standardize_logits(logits):
    """Z-scores each example's logits over the classes (the last axis), in float32.

    As Sun et al.'s code (sunshangquan/logit-standardization-KD,
    `mdistiller/distillers/KD.py`, `normalize`): `(z - mean) / (1e-7 + std)`
    with the unbiased standard deviation (torch's `Tensor.std` default).

    Args:
        logits: `(batch, ..., classes)` logits, `classes >= 2`.

    Returns:
        The standardised logits, float32, of the same shape.

    Example:

    >>> import numpy as np
    >>> z = standardize_logits(np.array([[1.0, 2.0, 3.0]]))
    >>> [round(float(v), 4) for v in z[0]]
    [-1.0, 0.0, 1.0]
    """
    logits = ops.cast(logits, "float32")
    mean = ops.mean(logits, axis=-1, keepdims=True)
    centred = logits - mean
    n = logits.shape[-1]
    variance = ops.sum(ops.square(centred), axis=-1, keepdims=True) / (n - 1)
    # The floor keeps the gradient finite for an example whose logits are all
    # equal (sqrt'(0) is infinite, e.g. a freshly initialised head); it moves
    # the value by less than 1e-5 of the 1e-7 epsilon.
    std = ops.sqrt(ops.maximum(variance, 1e-24))
    return centred / (STANDARDIZE_EPS + std)


def check_logit_shapes(term, teacher_shape, student_shape, per_example=False):
    """Raises unless both taps are logits with the same known class count.

    Shared by the logit terms (`KDTerm`, `DKDTerm`, `DISTTerm`).

    Args:
        term: the `TransferTerm` being built, named in the message.
        teacher_shape: the teacher tap's shape.
        student_shape: the student tap's shape.
        per_example: require exactly `(batch, classes)`, for terms that pair
            each example with one label or compare examples across the batch.

    Example:

    >>> check_logit_shapes(KDTerm(), (None, 10), (None, 10))
    """
    teacher_shape, student_shape = tuple(teacher_shape), tuple(student_shape)
    expected = "(batch, classes)" if per_example else "(batch, ..., classes)"
    if (
        len(teacher_shape) < 2
        or (per_example and len(teacher_shape) != 2)
        or len(teacher_shape) != len(student_shape)
        or teacher_shape[-1] != student_shape[-1]
        or teacher_shape[-1] is None
        or teacher_shape[-1] < 2
    ):
        name = type(term).__name__
        raise ValueError(
            f"{name} compares teacher and student logits class by class, so "
            f"both must have shape {expected} with the same known number of "
            f"classes (at least 2). Received: teacher logits shape {teacher_shape} "
            f"(layer {term.teacher_layer or 'output'!r}), student logits shape "
            f"{student_shape} (layer {term.student_layer or 'output'!r})."
        )


def kd_divergence(teacher_logits, student_logits, temperature):
    """Per-example `T^2 * KL(softmax(t/T) || softmax(s/T))`, in float32.

    The classes are the last axis. Any axes between the batch and the classes
    (for example a sequence) are averaged.

    Args:
        teacher_logits: `(batch, ..., classes)` teacher logits.
        student_logits: student logits of the same shape.
        temperature: `T > 0`.

    Returns:
        A `(batch,)` float32 tensor, >= 0.

    Example:

    >>> import numpy as np
    >>> t = np.array([[2.0, 0.0, -1.0]], "float32")
    >>> float(kd_divergence(t, t, 4.0)[0])
    0.0
    """
    t = ops.cast(teacher_logits, "float32") / temperature
    s = ops.cast(student_logits, "float32") / temperature
    log_p = ops.log_softmax(t, axis=-1)
    log_q = ops.log_softmax(s, axis=-1)
    kl = ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)
    if len(kl.shape) > 1:
        kl = ops.mean(kl, axis=tuple(range(1, len(kl.shape))))
    return kl * (temperature * temperature)


@keras.saving.register_keras_serializable(package="keras_vid")
class KDTerm(TransferTerm):
    """Hinton's knowledge distillation: the teacher's softened logits as targets.

    Per example, `T^2 * KL(softmax(t / T) || softmax(s / T))`, computed in
    float32 with `log_softmax`. It has no trainable weights.

    Defaults: `temperature=4.0` as RepDistiller (`train_student.py`,
    `--kd_T` default 4). `weight=1.0` is the weight RepDistiller gives KD when
    it is added to another method next to a cross-entropy of weight 1 (its
    README's CRD+KD command, `-r 1 -a 1`); RepDistiller's KD-only command uses
    cross-entropy 0.1 and KD 0.9 (`scripts/run_cifar_distill.sh`, line 5),
    i.e. `weight=9.0` relative to a cross-entropy of weight 1.

    With `standardize=True` (logit standardisation, Sun et al. CVPR 2024) the
    authors train with a base temperature of 2 and a KD weight of 9 next to a
    cross-entropy of weight 1 (logit-standardization-KD `tools/train.py`,
    `--logit-stand --base-temp 2 --kd-weight 9`): pass `temperature=2.0,
    weight=9.0` for their recipe.

    Args:
        weight: the term's weight in the total loss, > 0. Defaults to 1.0.
        temperature: the softmax temperature `T`, > 0. Defaults to 4.0.
        teacher_layer: the teacher layer holding the logits. Defaults to
            `None`, the teacher's output.
        student_layer: the student layer holding the logits. Defaults to
            `None`, the student's output.
        standardize: z-score each example's logits over the classes before
            the temperature softmax (`standardize_logits`). Defaults to False.

    Example:

    >>> import numpy as np
    >>> term = KDTerm(temperature=2.0)
    >>> t = np.array([[3.0, 0.0, 0.0]], "float32")
    >>> s = np.zeros((1, 3), "float32")
    >>> round(float(term(t, s)[0]), 4)
    1.0672
    """

    group = "kd"

    def __init__(
        self,
        weight=1.0,
        temperature=4.0,
        teacher_layer=OUTPUT,
        student_layer=OUTPUT,
        standardize=False,
        **kwargs,
    ):
        super().__init__(teacher_layer, student_layer, weight, **kwargs)
        self.temperature = check_weight(temperature, "temperature")
        self.standardize = bool(standardize)

    def build(self, teacher_shape, student_shape):
        check_logit_shapes(self, teacher_shape, student_shape)

    def call(self, teacher, student, training=False):
        if self.standardize:
            teacher, student = standardize_logits(teacher), standardize_logits(student)
        return kd_divergence(teacher, student, self.temperature)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "standardize": self.standardize,
        }
