"""Variational information distillation (Ahn et al., CVPR 2019).

The student maximises a variational lower bound on the mutual information
between a teacher activation `t` and a student activation `s`, by minimising
the negative log-likelihood of `t` under a Gaussian

    q(t | s) = N(t; mu(s), diag(sigma^2)),   sigma_c^2 = softplus(alpha_c) + eps,

with a trainable mean network `mu` on the student's activation and one learned
variance per teacher channel, shared by all spatial positions:

    -log q(t | s) = 0.5 * sum_{h,w,c} [log sigma_c^2 + (t - mu(s))^2 / sigma_c^2]
                    + const.

`reduction="mean"` (the default, as RepDistiller, torchdistill and mdistiller)
averages this over the elements of each example, so lambda does not depend on
the layer's size. `reduction="sum"` sums over them, the paper's form: it is
`H * W * C` times larger for the same lambda.

`standardize=True` makes lambda independent of the *scale* of the teacher's
activations too. Before training, `keras_vid.Distiller.calibrate` measures
each teacher channel's mean `m_c` and standard deviation `s_c` on the first
batches, and the term models `(t - m_c) / s_c` instead of `t`. That is the
same Gaussian family on `t` (mean `m_c + s_c * mu(s)`, variance
`s_c^2 * sigma_c^2`), so the objective is still the variational bound; its
value differs from the raw negative log-likelihood by the constant
`sum_c log s_c`. In these units `init_variance=1` is the teacher channel's
own variance and `eps` a fraction of it, whatever BatchNorm, activation or
depth produced the tap.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_vid.regressors import default_regressor
from keras_vid.transfer.base import RegressorTerm, check_weight

REDUCTIONS = ("mean", "sum")


def inverse_softplus(value):
    """Returns `alpha` with `softplus(alpha) == value`, stable for large values.

    Example:

    >>> round(math.log1p(math.exp(inverse_softplus(5.0))), 6)
    5.0
    """
    return value + math.log(-math.expm1(-value))


def check_variance(init_variance, eps):
    """Validates `init_variance` and `eps`; returns them as floats.

    Example:

    >>> check_variance(5.0, 1e-5)
    (5.0, 1e-05)
    """
    eps = check_weight(eps, "eps")
    try:
        init_variance = float(init_variance)
    except (TypeError, ValueError):
        init_variance = float("nan")
    if not math.isfinite(init_variance) or init_variance <= eps:
        raise ValueError(
            "`init_variance` must be a finite number greater than `eps`, since "
            "sigma^2 = softplus(alpha) + eps > eps. Received: "
            f"init_variance={init_variance!r}, eps={eps!r}. The paper's "
            "re-implementations use init_variance=5.0, eps=1e-5."
        )
    return init_variance, eps


def gaussian_nll(teacher, mean, variance, reduction="mean"):
    """Per-example Gaussian negative log-likelihood, without the constant.

    Computed in float32 whatever the inputs' dtype.

    Args:
        teacher: `(batch, ..., C)` target activations.
        mean: predicted means, the same shape.
        variance: `(C,)` per-channel variances.
        reduction: `"mean"` or `"sum"` over the non-batch elements.

    Returns:
        A `(batch,)` float32 tensor.

    Example:

    >>> import numpy as np
    >>> t = np.zeros((1, 2), "float32")
    >>> float(gaussian_nll(t, t + 1.0, np.ones(2, "float32"))[0])
    0.5
    """
    teacher = ops.cast(teacher, "float32")
    mean = ops.cast(mean, "float32")
    variance = ops.cast(variance, "float32")
    axes = tuple(range(1, len(teacher.shape)))
    # log(sigma_c^2) is the same at every position, so its share of the sum
    # is positions * sum_c log(sigma_c^2): no need to spread it over the map.
    log_var = ops.log(variance)
    weighted = ops.square(teacher - mean) * (1.0 / variance)
    if reduction == "sum":
        positions = math.prod(teacher.shape[1:-1])
        return 0.5 * (positions * ops.sum(log_var) + ops.sum(weighted, axis=axes))
    return 0.5 * (ops.mean(log_var) + ops.mean(weighted, axis=axes))


@keras.saving.register_keras_serializable(package="keras_vid")
class VIDTerm(RegressorTerm):
    """One VID pair: -log q(teacher tap | student tap), per example.

    Args:
        teacher_layer: teacher layer name or nested path (`None`: its output).
        student_layer: student layer name or nested path (`None`: its output).
        weight: lambda for this pair, > 0. Defaults to 20.0 (see
            `keras_vid.VIDDistiller`).
        init_variance: the variance every channel starts at. Defaults to 1.0.
        eps: the variance floor. Defaults to 1e-2 (see `VIDDistiller`).
        reduction: `"mean"` over elements (default) or `"sum"` (the paper).
        regressor: a Keras layer mapping the student tap to the teacher tap's
            shape. Defaults to `keras_vid.regressors.default_regressor`.
        standardize: whether the teacher tap is standardised per channel with
            statistics measured before training (`calibrate`), which makes
            `init_variance`, `eps` and lambda relative to the teacher's own
            spread. Defaults to `False` here; `keras_vid.VIDDistiller`
            turns it on.
        regressor_batch_norm: BatchNorm after the default map regressor's
            hidden convs, which makes its mean independent of the student
            tap's scale. Defaults to `False` here (the paper's regressor).

    Example:

    >>> import numpy as np
    >>> term = VIDTerm("t_stage1", "s_stage1")
    >>> term.build((None, 4, 4, 8), (None, 4, 4, 2))
    >>> loss = term(np.zeros((3, 4, 4, 8), "float32"), np.ones((3, 4, 4, 2), "float32"))
    >>> tuple(loss.shape)
    (3,)
    """

    group = "vid"

    def __init__(
        self,
        teacher_layer,
        student_layer,
        weight=20.0,
        init_variance=1.0,
        eps=1e-2,
        reduction="mean",
        regressor=None,
        standardize=False,
        regressor_batch_norm=False,
        **kwargs,
    ):
        super().__init__(teacher_layer, student_layer, weight, regressor, **kwargs)
        self.init_variance, self.eps = check_variance(init_variance, eps)
        self.standardize = bool(standardize)
        self.regressor_batch_norm = bool(regressor_batch_norm)
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"`reduction` must be one of {REDUCTIONS}. Received: "
                f"reduction={reduction!r}."
            )
        self.reduction = reduction

    def default_regressor(self, student_shape, teacher_shape, name=None):
        return default_regressor(
            student_shape, teacher_shape, name, batch_norm=self.regressor_batch_norm
        )

    def build(self, teacher_shape, student_shape):
        self.build_regressor(teacher_shape, student_shape)
        channels = teacher_shape[-1]
        self.alpha = self.add_weight(
            name="vid_alpha",
            shape=(channels,),
            initializer=keras.initializers.Constant(
                inverse_softplus(self.init_variance - self.eps)
            ),
            dtype="float32",
        )
        if self.standardize:
            # Non-trainable, so saved and restored with the term: a reloaded
            # or resumed run keeps the statistics it was trained with.
            self.teacher_mean = self.add_weight(
                name="teacher_mean",
                shape=(channels,),
                initializer="zeros",
                trainable=False,
                dtype="float32",
            )
            self.teacher_scale = self.add_weight(
                name="teacher_scale",
                shape=(channels,),
                initializer="ones",
                trainable=False,
                dtype="float32",
            )
            self.calibrated = self.add_weight(
                name="calibrated",
                shape=(),
                initializer="zeros",
                trainable=False,
                dtype="float32",
            )

    @property
    def needs_calibration(self):
        """Whether `set_statistics` must run before training."""
        return self.standardize and not bool(
            keras.ops.convert_to_numpy(self.calibrated)
        )

    def set_statistics(self, mean, variance):
        """Sets the teacher tap's per-channel statistics (`standardize=True`).

        Channels whose variance is below 1e-4 of the mean variance (dead or
        constant units) keep that floor, so they are not amplified into noise.

        Example:

        >>> import numpy as np
        >>> term = VIDTerm("t", "s", standardize=True)
        >>> term.build((None, 2), (None, 2))
        >>> term.set_statistics(np.array([1.0, 2.0]), np.array([4.0, 9.0]))
        >>> keras.ops.convert_to_numpy(term.teacher_scale).tolist()
        [2.0, 3.0]
        """
        mean = np.asarray(mean, "float32")
        variance = np.asarray(variance, "float32")
        if not (np.isfinite(mean).all() and np.isfinite(variance).all()):
            raise ValueError(
                f"The teacher tap {self.teacher_layer!r} has non-finite statistics "
                "on the calibration batches (mean or variance is inf or NaN): its "
                "activations overflow. Check the input scaling (for example images "
                "in [0, 255] given to a teacher trained on [0, 1]) and the "
                "teacher's weights."
            )
        floor = 1e-4 * float(np.mean(variance)) + 1e-12
        self.teacher_mean.assign(mean)
        self.teacher_scale.assign(np.sqrt(np.maximum(variance, floor)))
        self.calibrated.assign(1.0)

    def variance(self):
        """Returns sigma^2 = softplus(alpha) + eps, shape `(channels,)`."""
        return ops.softplus(self.alpha) + self.eps

    def call(self, teacher, student, training=False):
        mean = self.regressor(student, training=training)
        if self.standardize:
            teacher = (ops.cast(teacher, "float32") - self.teacher_mean) / (
                self.teacher_scale
            )
        return gaussian_nll(teacher, mean, self.variance(), self.reduction)

    def no_decay_variables(self):
        return [self.alpha]

    def get_config(self):
        return {
            **super().get_config(),
            "init_variance": self.init_variance,
            "eps": self.eps,
            "reduction": self.reduction,
            "standardize": self.standardize,
            "regressor_batch_norm": self.regressor_batch_norm,
        }
