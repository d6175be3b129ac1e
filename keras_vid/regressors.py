"""Mean networks: map a student activation to the shape of a teacher activation.

VID models the teacher's activation `t` as a Gaussian whose mean `mu(s)` is a
small trainable network on the student's activation `s`. The right network
depends on the two shapes; `default_regressor` picks it:

| student tap   | teacher tap      | regressor                                   |
|---------------|------------------|---------------------------------------------|
| map (H, W, C) | map (H', W', C') | `ConvRegressor`: resize, three 1x1 convs    |
| vector (D,)   | vector (D',)     | `DenseRegressor`: linear (VID-LP)           |
| map (H, W, C) | vector (D',)     | `DenseRegressor`: global average, linear    |
| vector (D,)   | map (H', W', C') | `VectorToMapRegressor`: linear, reshape     |

Maps are channels-last. Spatial sizes may differ by any ratio, square or not:
a larger student map is average-pooled down with adaptive pooling (exact for
non-integer ratios, as PyTorch's `adaptive_avg_pool2d`); a smaller one is
resized up bilinearly. The regressor's output always has the teacher tap's
shape, so the likelihood is of the teacher's own activation.
"""

import math

import keras
import numpy as np
from keras import ops


def _pooling_matrix(in_size, out_size):
    """Rows average the adaptive-pooling windows (PyTorch's bin edges)."""
    m = np.zeros((out_size, in_size), dtype="float32")
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -((-(i + 1) * in_size) // out_size)  # ceil
        m[i, start:end] = 1.0 / (end - start)
    return m


@keras.saving.register_keras_serializable(package="keras_vid")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """Average-pools a channels-last map to a fixed `(height, width)`.

    Window edges follow PyTorch's `adaptive_avg_pool2d`, so any input size
    works, including non-integer ratios and non-square maps. It is computed
    as two small matrix products, which XLA and mixed precision handle well.

    Args:
        output_size: `(height, width)` of the output.

    Example:

    >>> import numpy as np
    >>> x = np.arange(2 * 5 * 3 * 1, dtype="float32").reshape(2, 5, 3, 1)
    >>> y = AdaptiveAveragePooling2D((2, 2))(x)
    >>> tuple(y.shape)
    (2, 2, 2, 1)
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(int(v) for v in output_size)

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h is None or w is None:
            raise ValueError(
                "AdaptiveAveragePooling2D needs a static spatial size. "
                f"Received: input_shape={input_shape}."
            )
        self._ph = _pooling_matrix(h, self.output_size[0])
        self._pw = _pooling_matrix(w, self.output_size[1])

    def call(self, x):
        ph = ops.convert_to_tensor(self._ph, dtype=x.dtype)
        pw = ops.convert_to_tensor(self._pw, dtype=x.dtype)
        return ops.einsum("oh,bhwc,pw->bopc", ph, x, pw)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


@keras.saving.register_keras_serializable(package="keras_vid")
class BilinearResize2D(keras.layers.Layer):
    """Resizes a channels-last map to `(height, width)` bilinearly.

    Args:
        output_size: `(height, width)` of the output.

    Example:

    >>> import numpy as np
    >>> y = BilinearResize2D((8, 6))(np.ones((1, 4, 3, 2), "float32"))
    >>> tuple(y.shape)
    (1, 8, 6, 2)
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(int(v) for v in output_size)

    def call(self, x):
        return ops.image.resize(
            x, self.output_size, interpolation="bilinear", data_format="channels_last"
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


def spatial_adapter(input_hw, output_hw, name, dtype=None):
    """The layer that brings a map to another height and width, or None.

    Average pooling to a smaller size (each output cell the mean of the
    input cells it covers), bilinear resizing to a larger one. Used by the
    VID and FitNet regressors alike.

    Example:

    >>> type(spatial_adapter((8, 8), (4, 4), "s")).__name__
    'AdaptiveAveragePooling2D'
    >>> spatial_adapter((4, 4), (4, 4), "s") is None
    True
    """
    if tuple(input_hw) == tuple(output_hw):
        return None
    if input_hw[0] >= output_hw[0] and input_hw[1] >= output_hw[1]:
        return AdaptiveAveragePooling2D(output_hw, name=f"{name}_pool", dtype=dtype)
    return BilinearResize2D(output_hw, name=f"{name}_resize", dtype=dtype)


class PointwiseConv2D(keras.layers.Conv2D):
    """A 1x1, stride-1 `Conv2D` computed as a matmul over the channels.

    The same kernel (shape `(1, 1, C_in, C_out)`, so saved weights load either
    way) and the same result as `Conv2D(filters, 1)`. XLA on CPU computes
    the 1x1 convolution's kernel gradient about 20x slower than the matmul's
    (JAX 0.10: 390 ms against 21.5 ms for 32 -> 32 channels on a 128 x 28 x
    28 batch), which made VID's regressors most of a JAX step.

    Example:

    >>> import numpy as np
    >>> conv = PointwiseConv2D(4, use_bias=False)
    >>> tuple(conv(np.ones((2, 3, 3, 8), "float32")).shape), tuple(conv.kernel.shape)
    ((2, 3, 3, 4), (1, 1, 8, 4))
    """

    def __init__(self, filters, **kwargs):
        super().__init__(filters, 1, **kwargs)

    def convolution_op(self, inputs, kernel):
        return ops.matmul(inputs, kernel[0, 0])

    def get_config(self):
        config = super().get_config()
        del config["kernel_size"]
        return config


@keras.saving.register_keras_serializable(package="keras_vid")
class ConvRegressor(keras.layers.Layer):
    """Map-to-map mean network: resize, then three 1x1 convolutions.

    The paper's VID-I regressor, as in RepDistiller: 1x1 conv, ReLU, 1x1 conv,
    ReLU, 1x1 conv, with no bias and a hidden width equal to the teacher's
    channels. When the spatial sizes differ, the student map is first pooled
    down (adaptive average pooling) or resized up (bilinear) to the teacher's.

    Args:
        channels: the teacher tap's channels (the output channels).
        output_size: the teacher tap's `(height, width)`.
        hidden_channels: width of the hidden 1x1 convs. Defaults to `channels`.
        batch_norm: add BatchNorm after the hidden convs (as one TF1
            re-implementation does), which makes the output independent of
            the student map's scale. `keras_vid.VIDDistiller` turns it on.
            Defaults to `False` (the paper's form).

    Example:

    >>> import numpy as np
    >>> reg = ConvRegressor(channels=16, output_size=(4, 4))
    >>> tuple(reg(np.ones((2, 7, 7, 8), "float32")).shape)
    (2, 4, 4, 16)
    """

    def __init__(
        self, channels, output_size, hidden_channels=None, batch_norm=False, **kwargs
    ):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.output_size = tuple(int(v) for v in output_size)
        self.hidden_channels = int(hidden_channels or channels)
        self.batch_norm = bool(batch_norm)
        self.resize = None
        self.convs = [
            PointwiseConv2D(
                c, use_bias=False, name=f"conv{i + 1}", dtype=self.dtype_policy
            )
            for i, c in enumerate([self.hidden_channels] * 2 + [self.channels])
        ]
        self.norms = (
            [
                # Synchronised, so that tf.distribute replicas normalise with
                # the global batch's statistics, as one device would (Keras
                # allows it on TensorFlow only; JAX shards see the global
                # batch anyway).
                keras.layers.BatchNormalization(
                    synchronized=keras.backend.backend() == "tensorflow",
                    name=f"bn{i + 1}",
                    dtype=self.dtype_policy,
                )
                for i in range(2)
            ]
            if self.batch_norm
            else []
        )

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "ConvRegressor expects a channels-last map (batch, H, W, C). "
                f"Received: input_shape={input_shape}."
            )
        self.resize = spatial_adapter(input_shape[1:3], self.output_size, "spatial")
        shape = tuple(input_shape)
        if self.resize is not None:
            self.resize.build(shape)
            shape = self.resize.compute_output_shape(shape)
        for i, conv in enumerate(self.convs):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            if i < len(self.norms):
                self.norms[i].build(shape)

    def call(self, x, training=False):
        if self.resize is not None:
            x = self.resize(x)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < 2:
                if self.norms:
                    x = self.norms[i](x, training=training)
                x = ops.relu(x)
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, self.channels)

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "output_size": self.output_size,
            "hidden_channels": self.hidden_channels,
            "batch_norm": self.batch_norm,
        }


@keras.saving.register_keras_serializable(package="keras_vid")
class DenseRegressor(keras.layers.Layer):
    """Linear mean network to a vector, mu(s) = W s (VID-LP).

    A map input is global-average-pooled first, so a conv student can be
    regressed onto a teacher's logits or pre-logit vector.

    Args:
        units: the teacher tap's size.
        use_bias: add a bias. Defaults to `False`, the paper's linear form.

    Example:

    >>> import numpy as np
    >>> tuple(DenseRegressor(10)(np.ones((2, 32), "float32")).shape)
    (2, 10)
    """

    def __init__(self, units, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.dense = keras.layers.Dense(
            self.units, use_bias=self.use_bias, name="linear", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        if len(input_shape) not in (2, 4):
            raise ValueError(
                "DenseRegressor expects a vector (batch, D) or a map "
                f"(batch, H, W, C). Received: input_shape={input_shape}."
            )
        self.dense.build((input_shape[0], input_shape[-1]))

    def call(self, x):
        if len(x.shape) == 4:
            x = ops.mean(x, axis=(1, 2))
        return self.dense(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="keras_vid")
class VectorToMapRegressor(keras.layers.Layer):
    """Vector-to-map mean network for a CNN teacher and an MLP student.

    A linear layer from the student's vector to `H * W * C` values, reshaped to
    the teacher's map. Its size is `D * H * W * C` weights, so tap a teacher
    map that is not too large (a later stage rather than the first conv).

    Args:
        output_shape: the teacher tap's `(height, width, channels)`.

    Example:

    >>> import numpy as np
    >>> reg = VectorToMapRegressor((4, 4, 8))
    >>> tuple(reg(np.ones((2, 64), "float32")).shape)
    (2, 4, 4, 8)
    """

    def __init__(self, output_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(v) for v in output_shape)
        self.dense = keras.layers.Dense(
            math.prod(self.target_shape), name="linear", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                "VectorToMapRegressor expects a vector (batch, D). "
                f"Received: input_shape={input_shape}."
            )
        self.dense.build(input_shape)

    def call(self, x):
        return ops.reshape(self.dense(x), (-1, *self.target_shape))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.target_shape)

    def get_config(self):
        return {**super().get_config(), "output_shape": self.target_shape}


def _describe(shape):
    return f"{tuple(shape)}"


def default_regressor(student_shape, teacher_shape, name=None, batch_norm=False):
    """Chooses the mean network that maps `student_shape` to `teacher_shape`.

    Args:
        student_shape: the student tap's shape, batch first.
        teacher_shape: the teacher tap's shape, batch first.
        name: the layer's name.
        batch_norm: for a map-to-map pair, BatchNorm after the hidden convs of
            the `ConvRegressor`, which makes the mean independent of the
            student map's scale. The other regressors are linear and ignore it.

    Returns:
        An unbuilt `ConvRegressor`, `DenseRegressor` or `VectorToMapRegressor`.

    Raises:
        ValueError: when no regressor bridges the two shapes: ranks other than
            2 (vector) and 4 (channels-last map), or unknown sizes.

    Example:

    >>> default_regressor((None, 8, 8, 16), (None, 8, 8, 32)).__class__.__name__
    'ConvRegressor'
    >>> default_regressor((None, 64), (None, 10)).__class__.__name__
    'DenseRegressor'
    """
    s, t = tuple(student_shape), tuple(teacher_shape)
    fix = (
        "Tap a vector (batch, D) or a channels-last map (batch, H, W, C) with "
        "known sizes on both sides, or pass your own `regressor=` in a "
        "keras_vid.LayerPair."
    )
    if len(s) not in (2, 4) or len(t) not in (2, 4):
        raise ValueError(
            f"No default regressor maps a student tap of shape {_describe(s)} to a "
            f"teacher tap of shape {_describe(t)}: only ranks 2 and 4 are "
            f"supported. {fix}"
        )
    if any(v is None for v in t[1:]) or s[-1] is None:
        raise ValueError(
            f"No default regressor maps a student tap of shape {_describe(s)} to a "
            f"teacher tap of shape {_describe(t)}: sizes must be known. Give the "
            f"models a fixed input shape. {fix}"
        )
    if len(t) == 2:
        return DenseRegressor(t[1], name=name)
    if len(s) == 2:
        return VectorToMapRegressor(t[1:], name=name)
    if s[1] is None or s[2] is None:
        raise ValueError(
            f"The student tap {_describe(s)} has an unknown spatial size, so it "
            f"cannot be resized to the teacher's {_describe(t)}. {fix}"
        )
    return ConvRegressor(
        channels=t[3], output_size=t[1:3], batch_norm=batch_norm, name=name
    )
