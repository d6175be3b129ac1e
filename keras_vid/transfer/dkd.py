"""Decoupled knowledge distillation (Zhao et al., CVPR 2022).

DKD splits KD's divergence at the target class `y`. With temperature `T`,
`p = softmax(t / T)` for the teacher and `q = softmax(s / T)` for the student:

    TCKD = KL([p_y, 1 - p_y] || [q_y, 1 - q_y])           target vs the rest
    NCKD = KL(p_rest || q_rest),  p_rest = softmax over the classes != y
    DKD  = T^2 * (alpha * TCKD + beta * NCKD)

This is mdistiller's `dkd_loss` (megvii-research/mdistiller,
`mdistiller/distillers/DKD.py`), per example. mdistiller renormalises the
non-target classes by subtracting 1000 from the target logit before the
softmax; here the target class is left out of the log-sum-exp exactly, which
is the same value in float32 and stays exact for logit gaps above 1000. All
of it is computed in log space, in float32.

Warm-up: mdistiller multiplies the loss by `min(epoch / WARMUP, 1)`, with
`WARMUP = 20` epochs of 240 on CIFAR-100 (`mdistiller/engine/cfg.py`) and 1
of 100 on ImageNet (`configs/imagenet/r34_r18/dkd.yaml`). `DKDTerm` warms up
by training steps instead, counted by the term itself, so that it works in a
compiled or XLA step and under `tf.distribute` without a callback.
"""

import keras
from keras import ops

from keras_vid.taps import OUTPUT
from keras_vid.transfer.base import TransferTerm, check_weight, class_ids
from keras_vid.transfer.kd import check_logit_shapes, standardize_logits


def _split_at_target(logits, target):
    """Log-probabilities of the target, of the rest, and within the rest."""
    log_all = ops.logsumexp(logits, axis=-1)
    log_rest = ops.logsumexp(ops.where(target, float("-inf"), logits), axis=-1)
    target_logit = ops.sum(ops.where(target, logits, 0.0), axis=-1)
    # The target column is set to log 1 on both sides, so that it adds
    # 1 * (0 - 0) = 0 to NCKD; left as it is, a dominant target logit would
    # overflow exp() there and turn the gradient into NaN.
    within_rest = ops.where(target, 0.0, logits - ops.expand_dims(log_rest, -1))
    return target_logit - log_all, log_rest - log_all, within_rest


def _kl_terms(log_p, log_q):
    # p log(p / q) from log-probabilities: finite where p underflows to 0.
    return ops.exp(log_p) * (log_p - log_q)


def dkd_divergence(teacher_logits, student_logits, labels, alpha, beta, temperature):
    """Per-example `T^2 * (alpha * TCKD + beta * NCKD)`, in float32.

    Args:
        teacher_logits: `(batch, classes)` teacher logits.
        student_logits: student logits of the same shape.
        labels: `(batch,)` integer class ids (see `class_ids` for one-hot).
        alpha: the weight of the target-class term (TCKD).
        beta: the weight of the non-target term (NCKD).
        temperature: `T > 0`.

    Returns:
        A `(batch,)` float32 tensor, >= 0.

    Example:

    >>> import numpy as np
    >>> t = np.array([[2.0, 0.0, -1.0]], "float32")
    >>> float(dkd_divergence(t, t, np.array([0]), 1.0, 8.0, 4.0)[0])
    0.0
    """
    t = ops.cast(teacher_logits, "float32") / temperature
    s = ops.cast(student_logits, "float32") / temperature
    target = ops.one_hot(ops.cast(labels, "int32"), t.shape[-1]) > 0.5
    t_target, t_rest, t_within = _split_at_target(t, target)
    s_target, s_rest, s_within = _split_at_target(s, target)
    tckd = _kl_terms(t_target, s_target) + _kl_terms(t_rest, s_rest)
    nckd = ops.sum(_kl_terms(t_within, s_within), axis=-1)
    return (alpha * tckd + beta * nckd) * (temperature * temperature)


@keras.saving.register_keras_serializable(package="keras_vid")
class DKDTerm(TransferTerm):
    """Decoupled KD: the target-class and non-target parts of KD, reweighted.

    Per example, `T^2 * (alpha * TCKD + beta * NCKD)` (see the module
    docstring), times a linear warm-up while training. It needs the labels:
    the distiller passes each batch's `y` (class ids, or one-hot rows).

    Warm-up: on the `k`-th training call (`k = 1, 2, ...`) the loss is
    multiplied by `min(k / warmup_steps, 1)`, mdistiller's
    `min(epoch / WARMUP, 1)` counted in steps. A non-trainable counter
    (`steps`, saved with the model, so a resumed run resumes the warm-up)
    advances once per training call; evaluation (`training=False`) neither
    advances it nor applies the factor, so validation logs the full DKD.
    To follow the authors' CIFAR recipe (20 of 240 epochs), warm up over
    1/12 of training: `warmup_steps = round(epochs * steps_per_epoch / 12)`.

    Defaults: `alpha=1.0`, `beta=8.0`, `temperature=4.0` as mdistiller's
    `mdistiller/engine/cfg.py` (`CFG.DKD`; its CIFAR-100 configs lower beta
    for some pairs, e.g. 6.0 for WRN-40-2 to WRN-16-2, and its ImageNet
    config uses beta 0.5, T 1). `weight=1.0`: mdistiller adds the DKD loss as
    is next to a cross-entropy of weight 1 (`CFG.DKD.CE_WEIGHT`).
    `warmup_steps=0` (none) for the term itself; `keras_vid.methods` sets
    the recipe's.

    With `standardize=True` (logit standardisation, Sun et al. CVPR 2024;
    logit-standardization-KD `mdistiller/distillers/DKD.py`), the authors
    multiply alpha and beta by 9 and use `T = 2` (`tools/train.py`,
    `--logit-stand --base-temp 2 --kd-weight 9`): pass `alpha=9.0,
    beta=72.0, temperature=2.0` for their recipe.

    Args:
        weight: the term's weight in the total loss, > 0. Defaults to 1.0.
        alpha: the target-class (TCKD) weight, > 0. Defaults to 1.0.
        beta: the non-target (NCKD) weight, > 0. Defaults to 8.0.
        temperature: the softmax temperature `T`, > 0. Defaults to 4.0.
        warmup_steps: training steps of the linear warm-up, an integer
            >= 0; 0 switches it off. Defaults to 0.
        standardize: z-score each example's logits before the softmax
            (`keras_vid.transfer.kd.standardize_logits`). Defaults to False.
        teacher_layer: the teacher layer holding the logits. Defaults to
            `None`, the teacher's output.
        student_layer: the student layer holding the logits. Defaults to
            `None`, the student's output.

    Example:

    >>> import numpy as np
    >>> term = DKDTerm(temperature=1.0, warmup_steps=2)
    >>> t = np.array([[3.0, 1.0, 0.0]], "float32")
    >>> s = np.zeros((1, 3), "float32")
    >>> y = np.array([0])
    >>> full = float(term(t, s, labels=y)[0])
    >>> round(float(term(t, s, labels=y, training=True)[0]) / full, 4)
    0.5
    >>> round(float(term(t, s, labels=y, training=True)[0]) / full, 4)
    1.0
    """

    group = "dkd"
    needs_labels = True

    def __init__(
        self,
        weight=1.0,
        alpha=1.0,
        beta=8.0,
        temperature=4.0,
        warmup_steps=0,
        standardize=False,
        teacher_layer=OUTPUT,
        student_layer=OUTPUT,
        **kwargs,
    ):
        super().__init__(teacher_layer, student_layer, weight, **kwargs)
        self.alpha = check_weight(alpha, "alpha")
        self.beta = check_weight(beta, "beta")
        self.temperature = check_weight(temperature, "temperature")
        if (
            isinstance(warmup_steps, bool)
            or not isinstance(warmup_steps, (int, float))
            or warmup_steps < 0
            or warmup_steps != int(warmup_steps)
        ):
            raise ValueError(
                "`warmup_steps` must be a whole number of training steps >= 0 "
                f"(0: no warm-up). Received: warmup_steps={warmup_steps!r}."
            )
        self.warmup_steps = int(warmup_steps)
        self.standardize = bool(standardize)
        self.steps = None

    def build(self, teacher_shape, student_shape):
        check_logit_shapes(self, teacher_shape, student_shape, per_example=True)
        self.num_classes = int(tuple(teacher_shape)[-1])
        if self.warmup_steps:
            # Built in the distiller's strategy scope; replicas agree on the
            # count, and "only_first_replica" keeps one increment per step.
            self.steps = self.add_weight(
                shape=(),
                dtype="int64",
                initializer="zeros",
                trainable=False,
                aggregation="only_first_replica",
                name="steps",
            )

    def call(self, teacher, student, training=False, labels=None):
        if labels is None:
            raise ValueError(
                f"{type(self).__name__} ({self.log_name}) needs the class labels: "
                "call it as term(teacher, student, labels=y). A Distiller passes "
                "them when its data has labels."
            )
        if self.standardize:
            teacher, student = standardize_logits(teacher), standardize_logits(student)
        ids = class_ids(labels, self.num_classes, type(self).__name__)
        loss = dkd_divergence(
            teacher, student, ids, self.alpha, self.beta, self.temperature
        )
        if self.warmup_steps and training:
            # Read before the increment: the k-th step uses k / warmup_steps.
            done = ops.cast(ops.convert_to_tensor(self.steps), "float32")
            self.steps.assign_add(1)
            loss = loss * ops.minimum((done + 1.0) / self.warmup_steps, 1.0)
        return loss

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "temperature": self.temperature,
            "warmup_steps": self.warmup_steps,
            "standardize": self.standardize,
        }
