"""Wide residual networks for CIFAR-sized images (Zagoruyko & Komodakis, 2016).

The graph follows RepDistiller's `wrn.py`, the reference code used by most
distillation papers (VID included) for their WRN-40-2 teacher and WRN-16-1
student: a 3x3 stem convolution with 16 channels, three groups of
pre-activation basic blocks with `16 * width`, `32 * width` and `64 * width`
channels and strides 1, 2, 2, a final BatchNorm + ReLU, global average pooling
and a Dense classifier.

Taps (stable layer names, each called exactly once), with shapes for a
`(32, 32, 3)` input; for `(28, 28, 1)` the maps are 28, 14 and 7 pixels wide:

| name       | shape                    | what it is                             |
|------------|--------------------------|----------------------------------------|
| `conv1`    | `(32, 32, 16)`           | stem convolution output                |
| `stage1`   | `(32, 32, 16 * width)`   | group 1 output (residual sum)          |
| `stage2`   | `(16, 16, 32 * width)`   | group 2 output (residual sum)          |
| `stage3`   | `(8, 8, 64 * width)`     | group 3 output, before the final BN    |
| `features` | `(64 * width,)`          | pooled vector after final BN + ReLU    |
| `logits`   | `(num_classes,)`         | Dense output, the model's output       |

These are RepDistiller's `feat[0]` to `feat[4]` and the logits; its VID
recipe taps `feat[1:-1]`, that is `stage1`, `stage2` and `stage3`.
"""

import keras

TAPS = ("conv1", "stage1", "stage2", "stage3", "features", "logits")
"""Tap layer names of every `wide_resnet` model, from input to output."""

# PyTorch's BatchNorm2d defaults (momentum 0.1 there is 0.9 here), so that
# trained statistics and recipes carry over from the reference code.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def _conv_init():
    # RepDistiller's kaiming_normal_(mode="fan_out", nonlinearity="relu").
    # A fresh instance per layer: a seeded initializer object that is reused
    # would give every layer of the same shape the same weights.
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def _dense_init():
    # PyTorch's default nn.Linear weight init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform"
    )


def _l2(weight_decay):
    # SGD's weight_decay=wd adds wd * w to the gradient; the loss term
    # c * sum(w**2) of keras.regularizers.L2(c) adds 2 * c * w, so c = wd / 2.
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


def _bn_relu(x, prefix, weight_decay):
    x = keras.layers.BatchNormalization(
        momentum=_BN_MOMENTUM,
        epsilon=_BN_EPSILON,
        gamma_regularizer=_l2(weight_decay),
        beta_regularizer=_l2(weight_decay),
        name=f"{prefix}_bn",
    )(x)
    return keras.layers.ReLU(name=f"{prefix}_relu")(x)


def _conv(x, filters, kernel_size, strides, weight_decay, name):
    if strides > 1 and kernel_size > 1:
        # PyTorch's padding=1 pads both sides; TF's "same" pads only the
        # bottom/right for an even input and stride 2, which shifts the
        # sampling grid by one pixel against the 1x1 shortcut.
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=_conv_init(),
        kernel_regularizer=_l2(weight_decay),
        name=name,
    )(x)


def _basic_block(
    x, in_channels, out_channels, strides, dropout_rate, weight_decay, prefix
):
    # Pre-activation block exactly as RepDistiller's BasicBlock: when the
    # channel count changes, the shortcut convolution reads the *activated*
    # input; otherwise the identity shortcut carries the raw input.
    equal_in_out = in_channels == out_channels
    activated = _bn_relu(x, f"{prefix}_preact", weight_decay)
    out = _conv(activated, out_channels, 3, strides, weight_decay, f"{prefix}_conv1")
    out = _bn_relu(out, f"{prefix}_mid", weight_decay)
    if dropout_rate > 0:
        out = keras.layers.Dropout(dropout_rate, name=f"{prefix}_dropout")(out)
    out = _conv(out, out_channels, 3, 1, weight_decay, f"{prefix}_conv2")
    if equal_in_out:
        if strides != 1:
            # Unreachable with the WRN layout (every strided block widens);
            # guarded so a future layout cannot silently mis-shape the sum.
            raise ValueError("An identity shortcut cannot change resolution.")
        shortcut = x
    else:
        shortcut = _conv(
            activated, out_channels, 1, strides, weight_decay, f"{prefix}_shortcut"
        )
    return keras.layers.Add(name=f"{prefix}_add")([shortcut, out])


def _check_depth_width(depth, width):
    if (
        not isinstance(depth, int)
        or isinstance(depth, bool)
        or depth < 10
        or (depth - 4) % 6 != 0
    ):
        raise ValueError(
            "A wide ResNet's depth must be 6 * n + 4 for a whole number n >= 1 "
            "of blocks per group, such as 10, 16, 22, 28 or 40. "
            f"Received: depth={depth!r}."
        )
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(
            "A wide ResNet's width must be a positive integer, such as 1, 2, 4 "
            f"or 10. Received: width={width!r}."
        )


def wide_resnet(
    depth,
    width,
    num_classes=10,
    input_shape=(32, 32, 3),
    dropout_rate=0.0,
    weight_decay=5e-4,
    name=None,
):
    """Builds a CIFAR wide residual network WRN-`depth`-`width`.

    The layout is the standard CIFAR WRN with pre-activation basic blocks,
    layer for layer as in RepDistiller's `wrn.py`, so WRN-40-2 (the usual
    teacher) and WRN-16-1 (the usual student) match the networks of the VID
    paper's CIFAR-10 experiments. For 10 classes and `(32, 32, 3)` inputs
    they have 2,243,546 and 175,066 trainable parameters (the PyTorch
    counts), or 2,248,954 and 175,994 with BatchNorm's moving statistics.
    Strided 3x3 convolutions pad one pixel on each side, as PyTorch does,
    rather than using TF's asymmetric `"same"` padding.

    Weight decay is added as L2 regularization on *every* trainable weight
    (convolution and Dense kernels, the Dense bias, BatchNorm gamma and
    beta), because PyTorch's `SGD(weight_decay=wd)` in the reference code
    decays all parameters. Since `keras.regularizers.L2(c)` adds
    `c * sum(w ** 2)` to the loss, whose gradient is `2 * c * w`, the
    coefficient used is `weight_decay / 2`: `weight_decay` here means the
    same number as SGD's `weight_decay` argument. The terms are in
    `model.losses`, which `fit()` adds to the loss; pass `weight_decay=0`
    to leave them out (for example when the optimizer decays weights).

    Args:
        depth: total depth `6 * n + 4`, where `n` is the number of blocks
            per group, for example 40 or 16.
        width: widening factor `k`; the groups have `16k`, `32k` and `64k`
            channels.
        num_classes: number of logits.
        input_shape: `(height, width, channels)` of the images, for example
            `(32, 32, 3)` for CIFAR or `(28, 28, 1)` for Fashion-MNIST.
        dropout_rate: dropout between the two convolutions of each block;
            `0` adds no Dropout layers.
        weight_decay: SGD-style weight decay coefficient, applied as
            L2(`weight_decay / 2`); `0` or `None` adds no regularizers.
        name: model name; defaults to `"wrn_{depth}_{width}"`.

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax),
        with the tap layers `conv1`, `stage1`, `stage2`, `stage3`,
        `features` and `logits` (see `TAPS`).

    Raises:
        ValueError: when `depth` is not `6 * n + 4` or `width` is not a
            positive integer.

    Example:

    >>> model = wide_resnet(16, 1, num_classes=10, input_shape=(32, 32, 3))
    >>> model.name
    'wrn_16_1'
    >>> tuple(model.get_layer("stage3").output.shape)
    (None, 8, 8, 64)
    >>> tuple(model.output.shape)
    (None, 10)
    """
    _check_depth_width(depth, width)
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(
            f"dropout_rate must be in [0, 1). Received: dropout_rate={dropout_rate!r}."
        )
    blocks_per_group = (depth - 4) // 6
    channels = (16, 16 * width, 32 * width, 64 * width)

    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = _conv(inputs, channels[0], 3, 1, weight_decay, "conv1")
    for group, strides in zip((1, 2, 3), (1, 2, 2)):
        for block in range(1, blocks_per_group + 1):
            first = block == 1
            x = _basic_block(
                x,
                in_channels=channels[group - 1] if first else channels[group],
                out_channels=channels[group],
                strides=strides if first else 1,
                dropout_rate=dropout_rate,
                weight_decay=weight_decay,
                prefix=f"stage{group}_block{block}",
            )
        # A named pass-through gives each group's output the same tap name
        # whatever the depth.
        x = keras.layers.Identity(name=f"stage{group}")(x)
    x = _bn_relu(x, "final", weight_decay)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=_dense_init(),
        bias_initializer="zeros",
        kernel_regularizer=_l2(weight_decay),
        bias_regularizer=_l2(weight_decay),
        name="logits",
    )(x)
    return keras.Model(inputs, logits, name=name or f"wrn_{depth}_{width}")
