"""A multilayer perceptron on raw images, for CNN-to-MLP distillation.

It takes the same image input as `small_cnn`, flattening it itself, so one
data pipeline feeds a CNN teacher and an MLP student.

Taps (stable layer names, each called exactly once), for
`hidden=(h1, ..., hn)`:

| name       | shape              | what it is                              |
|------------|--------------------|-----------------------------------------|
| `hidden1`  | `(h1,)`            | first hidden layer, after its ReLU      |
| ...        | ...                | ...                                     |
| `hiddenN`  | `(hn,)`            | last hidden layer, after its ReLU       |
| `features` | `(hn,)`            | the same vector as `hiddenN`            |
| `logits`   | `(num_classes,)`   | Dense output, the model's output        |
"""

import keras


def taps(hidden=(512, 256)):
    """Returns the tap layer names of an `mlp` with these hidden sizes.

    Args:
        hidden: the hidden layer sizes passed to `mlp`.

    Returns:
        A list of names from input to output: `hidden1` ... `hiddenN`,
        `features` and `logits`.

    Example:

    >>> taps((512, 256))
    ['hidden1', 'hidden2', 'features', 'logits']
    """
    return [f"hidden{i}" for i in range(1, len(tuple(hidden)) + 1)] + [
        "features",
        "logits",
    ]


def mlp(
    num_classes=10,
    input_shape=(28, 28, 1),
    hidden=(512, 256),
    batch_norm=False,
    name=None,
):
    """Builds an MLP classifier that reads images directly.

    The image is flattened, then each hidden layer is Dense, optionally
    BatchNorm, then ReLU. For `(28, 28, 1)` inputs, 10 classes and the
    default `hidden=(512, 256)` it has 535,818 parameters.

    Args:
        num_classes: number of logits.
        input_shape: shape of one input image, for example `(28, 28, 1)`.
        hidden: sizes of the hidden layers, at least one.
        batch_norm: whether to put BatchNorm between each hidden Dense layer
            and its ReLU (the Dense layers then drop their bias, which the
            BatchNorm beta replaces).
        name: model name; defaults to `"mlp"`.

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax),
        with the tap layers `hidden1` ... `hiddenN`, `features` and `logits`
        (see `taps`).

    Raises:
        ValueError: when `hidden` is empty or holds a non-positive size.

    Example:

    >>> model = mlp(hidden=(64, 32))
    >>> tuple(model.get_layer("hidden1").output.shape)
    (None, 64)
    >>> tuple(model.get_layer("features").output.shape)
    (None, 32)
    """
    hidden = tuple(hidden)
    if not hidden or not all(
        isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden
    ):
        raise ValueError(
            "mlp needs at least one positive integer hidden size, such as "
            f"(512, 256). Received: hidden={hidden!r}."
        )
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden, start=1):
        x = keras.layers.Dense(
            units,
            use_bias=not batch_norm,
            kernel_initializer="he_normal",
            name=f"hidden{i}_dense",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(
                momentum=0.9, epsilon=1e-5, name=f"hidden{i}_bn"
            )(x)
        x = keras.layers.ReLU(name=f"hidden{i}")(x)
    # `features` is a tap name shared with the other architectures; a
    # pass-through keeps it distinct from the last `hiddenN` layer.
    x = keras.layers.Identity(name="features")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name or "mlp")
