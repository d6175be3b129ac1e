"""Teacher and student architectures with stable, documented tap names.

Every model here is a functional `keras.Model` built only from built-in
layers (so it saves to `.keras` and loads with `safe_mode=True`), outputs
logits, and names the layers worth distilling from ("taps") explicitly:

- `wide_resnet`: `conv1`, `stage1`, `stage2`, `stage3`, `features`, `logits`.
- `small_cnn`: `stage1` ... `stageN`, `features`, `logits`.
- `mlp`: `hidden1` ... `hiddenN`, `features`, `logits`.
- `mobilenet_v2`: `keras.applications.MobileNetV2` nested in a resizing
  wrapper; its layers are tapped by path (see `keras_vid.pairing`).

`get_model` builds one from a short name such as `"wrn-40-2"` and
`tap_names` lists the taps that name's model has.
"""

import re

from keras_vid.models import cnn as _cnn
from keras_vid.models import wide_resnet as _wrn
from keras_vid.models.cnn import small_cnn
from keras_vid.models.mlp import mlp
from keras_vid.models.mlp import taps as _mlp_taps
from keras_vid.models.mobilenet import mobilenet_v2
from keras_vid.models.wide_resnet import wide_resnet

__all__ = [
    "MODEL_NAMES",
    "get_model",
    "mlp",
    "mobilenet_v2",
    "small_cnn",
    "tap_names",
    "wide_resnet",
]

# name: (builder, arguments). The variants beyond cnn / cnn-small / mlp give
# the generalisation suite (recipes/suite.py) teachers and students of other
# depths, widths, normalisation and families.
_NAMED = {
    "cnn": (small_cnn, {"widths": _cnn.TEACHER_WIDTHS}),
    "cnn-small": (small_cnn, {"widths": _cnn.STUDENT_WIDTHS}),
    "cnn-tiny": (small_cnn, {"widths": (4, 8, 16)}),
    "cnn-2stage": (small_cnn, {"widths": (16, 32)}),
    "cnn-4stage": (small_cnn, {"widths": (32, 64, 128, 256)}),
    # No BatchNorm and ELU: activations of another scale and sign.
    "cnn-nobn": (
        small_cnn,
        {"widths": _cnn.TEACHER_WIDTHS, "batch_norm": False, "activation": "elu"},
    ),
    "mlp": (mlp, {}),
    "mlp-small": (mlp, {"hidden": (256, 128), "batch_norm": True}),
    "mobilenetv2": (mobilenet_v2, {"alpha": 0.35}),
}

MODEL_NAMES = (
    "wrn-<depth>-<width> (for example wrn-40-2, wrn-16-1)",
    *_NAMED,
)
"""The names `get_model` accepts, as shown in its error message."""

_WRN = re.compile(r"wrn-(\d+)-(\d+)")


def _parse(name):
    """Returns `(builder, kwargs, default_model_name)` for a model name."""
    if not isinstance(name, str):
        raise ValueError(
            f"A model name must be a string, one of {list(MODEL_NAMES)}. "
            f"Received: name={name!r}."
        )
    key = name.strip().lower().replace("_", "-")
    match = _WRN.fullmatch(key)
    if match:
        depth, width = int(match.group(1)), int(match.group(2))
        return wide_resnet, {"depth": depth, "width": width}, f"wrn_{depth}_{width}"
    if key in _NAMED:
        builder, kwargs = _NAMED[key]
        return builder, dict(kwargs), key.replace("-", "_")
    raise ValueError(
        f"Unknown model name {name!r}. Valid names: {', '.join(MODEL_NAMES)}."
    )


def get_model(name, /, num_classes=10, input_shape=None, **kwargs):
    """Builds a model of the zoo from its short name.

    Names are case-insensitive and may use `_` for `-`:

    - `"wrn-<depth>-<width>"`: `wide_resnet(depth, width)`, for example
      `"wrn-40-2"` (teacher) or `"wrn-16-1"` (student).
    - `"cnn"`: `small_cnn(widths=(32, 64, 128))`, the Fashion-MNIST teacher.
    - `"cnn-small"`: `small_cnn(widths=(8, 16, 32))`, its student.
    - `"mlp"`: `mlp(hidden=(512, 256))`.
    - The generalisation suite's models: `"cnn-tiny"` (4-8-16),
      `"cnn-2stage"` (16-32), `"cnn-4stage"` (32-64-128-256), `"cnn-nobn"`
      (32-64-128, no BatchNorm, ELU), `"mlp-small"` (256-128 with
      BatchNorm) and `"mobilenetv2"` (`mobilenet_v2(alpha=0.35)`).

    Args:
        name: the model name, as above (positional only, so that `name=`
            can pass the Keras model's own name through `**kwargs`).
        num_classes: number of logits.
        input_shape: `(height, width, channels)` of the images; `None` uses
            the builder's default, `(32, 32, 3)` for WRNs and `(28, 28, 1)`
            for the others.
        **kwargs: further arguments for the builder, such as
            `weight_decay=0.0` for a WRN, `widths=...` for a CNN or
            `name="teacher"` for the Keras model's name. They override the
            ones the name implies.

    Returns:
        A functional `keras.Model` that outputs logits. Its name defaults to
        the name given with `_` for `-`, such as `"wrn_40_2"` or
        `"cnn_small"`.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or
            a WRN depth that is not `6 * n + 4`.

    Example:

    >>> teacher = get_model("wrn-40-2", num_classes=10)
    >>> student = get_model("wrn-16-1", num_classes=10)
    >>> (teacher.name, student.name)
    ('wrn_40_2', 'wrn_16_1')
    """
    builder, implied, model_name = _parse(name)
    arguments = {"num_classes": num_classes, "name": model_name, **implied}
    if input_shape is not None:
        arguments["input_shape"] = tuple(input_shape)
    arguments.update(kwargs)
    return builder(**arguments)


def tap_names(model_name, hidden=None):
    """Returns the ordered tap layer names of a zoo model.

    Args:
        model_name: a name `get_model` accepts, such as `"wrn-16-1"`,
            `"cnn-small"` or `"mlp"`.
        hidden: for `"mlp"` only, the hidden sizes given to `get_model`;
            `None` means the default `(512, 256)`.

    Returns:
        A list of layer names from input to output; each layer is called
        exactly once in the model, so `model.get_layer(n).output` is the tap.

    Raises:
        ValueError: for an unknown name or an invalid WRN depth.

    Example:

    >>> tap_names("wrn-40-2")
    ['conv1', 'stage1', 'stage2', 'stage3', 'features', 'logits']
    >>> tap_names("mlp")
    ['hidden1', 'hidden2', 'features', 'logits']
    >>> tap_names("mlp", hidden=(128,))
    ['hidden1', 'features', 'logits']
    """
    builder, implied, _ = _parse(model_name)
    if builder is wide_resnet:
        # Validate so a tap list is never returned for a model that won't build.
        _wrn._check_depth_width(implied["depth"], implied["width"])
        return list(_wrn.TAPS)
    if builder is small_cnn:
        return _cnn.taps(len(implied["widths"]))
    if builder is mobilenet_v2:
        raise ValueError(
            f"{model_name!r} is a keras.applications model without zoo tap "
            "names; use keras_vid.pairing.suggest_pairs to find its stages."
        )
    return _mlp_taps(implied.get("hidden", (512, 256)) if hidden is None else hidden)
