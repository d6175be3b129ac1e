"""FitNets: hints for thin deep nets (Romero et al., ICLR 2015).

A regressor `r` maps the student's hint layer (the "guided" layer) to the
teacher's hint layer, and the student learns to match it:

    hint(t, s) = mean over elements of (t - r(s))^2,   per example.

The regressor is RepDistiller's `ConvReg` (`models/util.py`): a convolution,
BatchNorm and ReLU. For maps of the same size the convolution is 1x1, which is
also the paper's rule (the kernel is chosen so that the output has the
teacher's size: `k = H_s - H_t + 1`). Where the sizes differ, the student map
is first brought to the teacher's size with `keras_vid.regressors`' adaptive
pooling (larger student) or bilinear resize (smaller student), which works for
any ratio and non-square maps. A vector hint is regressed with a Dense layer.

The paper trains in two stages: stage 1 fits the student's layers up to the
hint layer, plus the regressor, to the hint loss alone
(`fitnet_hint_pretraining`); stage 2 trains the whole student with KD.
RepDistiller instead adds the hint term to the cross-entropy in a single stage
(`helper/loops.py`); `FitNetTerm` in a `Distiller` does that.
"""

import keras
from keras import ops

from keras_vid.regressors import (
    DenseRegressor,
    VectorToMapRegressor,
    spatial_adapter,
)
from keras_vid.taps import OUTPUT, TapExtractor, find_layer
from keras_vid.transfer.base import RegressorTerm

DEFAULT_WEIGHT = 100.0
"""RepDistiller's FitNet weight, `-b 100` (`scripts/run_cifar_distill.sh`, line 7)."""


@keras.saving.register_keras_serializable(package="keras_vid")
class HintRegressor(keras.layers.Layer):
    """FitNet's convolutional regressor: resize, conv, BatchNorm, ReLU.

    As RepDistiller's `ConvReg` for same-size maps (a 1x1 convolution with
    bias, BatchNorm, ReLU). Maps of another size are first adaptive-pooled
    down or bilinearly resized up to the teacher's `(height, width)`.

    Args:
        channels: the teacher hint's channels.
        output_size: the teacher hint's `(height, width)`.
        kernel_size: the convolution's kernel size ("same" padding).
            Defaults to 1.
        use_relu: end with a ReLU, as RepDistiller's `ConvReg(use_relu=True)`.
            Turn it off when the teacher's hint can be negative (a
            pre-activation). Defaults to `True`.

    Example:

    >>> import numpy as np
    >>> reg = HintRegressor(channels=16, output_size=(4, 3))
    >>> tuple(reg(np.ones((2, 7, 5, 8), "float32")).shape)
    (2, 4, 3, 16)
    """

    def __init__(self, channels, output_size, kernel_size=1, use_relu=True, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.output_size = tuple(int(v) for v in output_size)
        self.kernel_size = int(kernel_size)
        self.use_relu = bool(use_relu)
        self.resize = None
        self.conv = keras.layers.Conv2D(
            self.channels,
            self.kernel_size,
            padding="same",
            name="conv",
            dtype=self.dtype_policy,
        )
        self.bn = keras.layers.BatchNormalization(name="bn", dtype=self.dtype_policy)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "HintRegressor expects a channels-last map (batch, H, W, C). "
                f"Received: input_shape={input_shape}."
            )
        shape = tuple(input_shape)
        in_hw, out_hw = shape[1:3], self.output_size
        self.resize = spatial_adapter(in_hw, out_hw, "hint", dtype=self.dtype_policy)
        if self.resize is not None:
            self.resize.build(shape)
            shape = self.resize.compute_output_shape(shape)
        self.conv.build(shape)
        self.bn.build(self.conv.compute_output_shape(shape))

    def call(self, x, training=False):
        if self.resize is not None:
            x = self.resize(x)
        x = self.bn(self.conv(x), training=training)
        return ops.relu(x) if self.use_relu else x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, self.channels)

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "output_size": self.output_size,
            "kernel_size": self.kernel_size,
            "use_relu": self.use_relu,
        }


def hint_regressor(student_shape, teacher_shape, name=None):
    """Chooses FitNet's regressor from the student hint to the teacher hint.

    Args:
        student_shape: the student hint's shape, batch first.
        teacher_shape: the teacher hint's shape, batch first.
        name: the layer's name.

    Returns:
        A `HintRegressor` (map to map), a `DenseRegressor` with bias (to a
        vector; a student map is globally average-pooled first) or a
        `VectorToMapRegressor` (vector to map).

    Example:

    >>> hint_regressor((None, 8, 8, 4), (None, 8, 8, 16)).__class__.__name__
    'HintRegressor'
    >>> hint_regressor((None, 32), (None, 64)).__class__.__name__
    'DenseRegressor'
    """
    s, t = tuple(student_shape), tuple(teacher_shape)
    if (
        len(s) not in (2, 4)
        or len(t) not in (2, 4)
        or any(v is None for v in t[1:])
        or any(v is None for v in s[1:])
    ):
        raise ValueError(
            f"No default FitNet regressor maps a student hint of shape {s} to a "
            f"teacher hint of shape {t}. Tap a vector (batch, D) or a "
            "channels-last map (batch, H, W, C) with known sizes on both sides, "
            "or pass your own `regressor=`."
        )
    if len(t) == 2:
        return DenseRegressor(t[1], use_bias=True, name=name)
    if len(s) == 2:
        return VectorToMapRegressor(t[1:], name=name)
    return HintRegressor(channels=t[3], output_size=t[1:3], name=name)


@keras.saving.register_keras_serializable(package="keras_vid")
class FitNetTerm(RegressorTerm):
    """FitNet's hint loss: MSE between the teacher hint and the regressed student hint.

    Per example, the mean over elements of `(t - r(s))^2`, as RepDistiller's
    `HintLoss` (`nn.MSELoss()`, `distiller_zoo/FitNet.py`), whose batch mean
    this is. The regressor `r` trains with the student.

    Default weight: 100, RepDistiller's FitNet command `-b 100`
    (`scripts/run_cifar_distill.sh`, line 7) with this mean-reduced MSE.

    Args:
        teacher_layer: the teacher's hint layer (name or nested path).
        student_layer: the student's guided layer (name or nested path).
        weight: the term's weight in the total loss, > 0. Defaults to 100.
        regressor: a Keras layer mapping the student hint to the teacher
            hint's shape. Defaults to `hint_regressor`'s choice.

    Example:

    >>> import numpy as np
    >>> term = FitNetTerm("t_stage2", "s_stage2")
    >>> t = np.zeros((3, 4, 4, 8), "float32")
    >>> s = np.ones((3, 4, 4, 2), "float32")
    >>> tuple(term(t, s).shape)
    (3,)
    """

    group = "fitnet"

    default_regressor = staticmethod(hint_regressor)

    def __init__(
        self,
        teacher_layer,
        student_layer,
        weight=DEFAULT_WEIGHT,
        regressor=None,
        **kwargs,
    ):
        super().__init__(teacher_layer, student_layer, weight, regressor, **kwargs)

    def call(self, teacher, student, training=False):
        guess = ops.cast(self.regressor(student, training=training), "float32")
        error = ops.square(ops.cast(teacher, "float32") - guess)
        return ops.mean(error, axis=tuple(range(1, len(error.shape))))


def fitnet_hint_pretraining(
    teacher,
    student,
    hint_pair,
    dataset,
    epochs,
    optimizer,
    weight=DEFAULT_WEIGHT,
    regressor=None,
    **fit_kwargs,
):
    """FitNet stage 1: trains the student up to its guided layer on the hint loss.

    Builds a `Distiller` whose student is the part of `student` that computes
    the guided layer (it shares those layers and weights), with one
    `FitNetTerm` and no task loss, and fits it. Only the layers up to the
    guided layer and the regressor train; the layers after it, including
    their BatchNorm statistics, are left as they were. (When the guided layer
    is inside a nested model, given as a path `"backbone/stage2"`, that nested
    model runs whole: its later layers get no gradient, but their BatchNorm
    statistics move.) Stage 2 is then a usual `Distiller` on the whole
    student, for example with a `KDTerm`, as in the paper.

    Args:
        teacher: the trained teacher, a functional or Sequential model.
        student: the student; its guided layer's weights are updated in place.
        hint_pair: `(teacher hint layer, student guided layer)`, names or
            nested paths.
        dataset: what `Model.fit` takes as `x`: a `tf.data.Dataset` of
            `x` or `(x, y)` (labels are ignored), or an array of inputs.
        epochs: the number of stage-1 epochs.
        optimizer: a Keras optimizer instance or name.
        weight: the hint term's weight. It only scales the learning signal
            here, as the hint loss is the only loss. Defaults to 100.
        regressor: a custom regressor layer; defaults to `hint_regressor`'s.
        **fit_kwargs: passed to `fit` (for example `batch_size`, `verbose`,
            `callbacks`).

    Returns:
        The stage-1 `Distiller`: `history` holds the fit history (the
        weighted hint loss is logged as `fitnet_loss`), and `terms[0]` is the
        trained `FitNetTerm` with its regressor; for a flat layer name it
        taps the same layers, so it can join stage 2's terms.

    Example:

    ```python
    hint = keras_vid.transfer.fitnet.fitnet_hint_pretraining(
        teacher, student, ("stage2", "stage2"), train_ds, epochs=30,
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
    )
    stage2 = keras_vid.Distiller(teacher, student, terms=[KDTerm()])
    stage2.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss=ce)
    stage2.fit(train_ds, epochs=240)
    ```
    """
    # Deferred: the distiller imports this package.
    from keras_vid.distiller import Distiller

    if not isinstance(hint_pair, (tuple, list)) or len(hint_pair) != 2:
        raise ValueError(
            "`hint_pair` must be a (teacher hint layer, student guided layer) "
            f"pair. Received: hint_pair={hint_pair!r}."
        )
    t_layer, s_layer = hint_pair
    if t_layer is None or s_layer is None:
        raise ValueError(
            "FitNet's hint pretraining needs intermediate layers on both sides; a "
            f"model's output is no hint. Received: hint_pair={hint_pair!r}."
        )
    find_layer(student, s_layer, "student")
    extractor = TapExtractor(student, [s_layer], "student", include_outputs=False)
    # The sub-model ends at the guided layer, so the layers after it neither
    # train nor move their BatchNorm statistics in stage 1.
    guided = keras.Model(
        extractor.model.inputs,
        extractor.model.output["taps"][0],
        name=f"{student.name}_to_hint",
    )
    # A flat name is a layer of `guided` too, so the term keeps the student's
    # layer name and can be reused in stage 2; a nested path is not, since its
    # model was re-traced, so the term taps `guided`'s output instead.
    tap = OUTPUT if "/" in s_layer else s_layer
    term = FitNetTerm(t_layer, tap, weight=weight, regressor=regressor)
    distiller = Distiller(teacher, guided, terms=[term], name="fitnet_stage1")
    distiller.compile(optimizer=optimizer, loss=None)
    distiller.fit(dataset, epochs=epochs, **fit_kwargs)
    return distiller
