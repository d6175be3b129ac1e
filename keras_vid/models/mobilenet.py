"""MobileNetV2 from `keras.applications` as a depthwise-separable student.

`keras.applications.MobileNetV2` needs inputs of at least 32x32, so for
28x28 images this wraps it in a functional model that resizes first. The
backbone stays a nested model (named `mobilenetv2_<alpha>_<size>`), so its
layers are tapped by path, for example `"mobilenetv2_0.35_32/block_13_project_BN"`,
exactly as a user's own `keras.applications` model would be.
"""

import keras

_BN_MOMENTUM = 0.9  # as the zoo's CNNs: faster statistics for short runs


def mobilenet_v2(
    num_classes=10, input_shape=(28, 28, 1), alpha=0.35, size=32, name=None
):
    """Builds `Resizing(size, size)` then an untrained MobileNetV2 with logits.

    Args:
        num_classes: number of logits.
        input_shape: `(height, width, channels)` of the images.
        alpha: MobileNetV2's width multiplier (0.35 is its narrowest).
        size: the side the images are resized to, at least 32.
        name: model name; defaults to `"mobilenetv2"`.

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax). It
        has 422,730 parameters for `alpha=0.35`, grey images and 10 classes.

    Example:

    >>> model = mobilenet_v2()
    >>> tuple(model.output.shape)
    (None, 10)
    """
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = keras.layers.Resizing(size, size, name="resize")(inputs)
    backbone = keras.applications.MobileNetV2(
        input_shape=(size, size, input_shape[-1]),
        alpha=alpha,
        weights=None,
        include_top=True,
        classes=num_classes,
        classifier_activation=None,
    )
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # keras.applications uses momentum 0.999: after a few hundred
            # steps the moving statistics are still near their initial
            # values, and inference-mode accuracy stays at chance (the
            # generalisation suite's first MobileNetV2 runs: 10-13%).
            layer.momentum = _BN_MOMENTUM
    return keras.Model(inputs, backbone(x), name=name or "mobilenetv2")
