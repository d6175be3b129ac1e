"""Pretrained `keras.applications` teachers, offline-safe, with their preprocessing.

A `keras.applications` model expects RGB images of its own size and scaling
(each family has its own `preprocess_input`), while a student is often trained
on smaller, grey or [0, 1]-scaled images. `applications_teacher` builds such a
teacher (ImageNet weights, or a weights file, or none) and says exactly which
file to place where when the weights cannot be downloaded.
`applications_preprocessing` returns the `teacher_preprocessing` layer that
maps the student's images to the teacher's inputs: a resize, then one frozen
per-pixel affine map that converts grey to RGB, rescales, reorders the
channels and normalises, measured from the family's own `preprocess_input`.

    teacher = applications_teacher("MobileNetV2", input_shape=(96, 96, 3))
    prep = applications_preprocessing("MobileNetV2", (28, 28, 1), teacher)
    distiller = keras_vid.VIDDistiller(teacher, student, logits=None,
                                       teacher_preprocessing=prep)
"""

import os
import re

import keras
import numpy as np

from keras_vid.errors import unknown_name

PREFIX = "keras.applications."


def _constructor(name):
    name = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    fn = getattr(keras.applications, name, None)
    if not callable(fn) or not name[:1].isupper():
        valid = sorted(
            n for n in dir(keras.applications) if n[:1].isupper() and n != "imagenet"
        )
        raise unknown_name("keras.applications model", name, valid)
    return name, fn


def _family(fn):
    # The family's public module (e.g. keras.applications.mobilenet_v2) holds
    # its preprocess_input; the constructor's own module path names it.
    return getattr(keras.applications, fn.__module__.rsplit(".", 1)[-1])


def applications_teacher(
    name, weights="imagenet", input_shape=(96, 96, 3), include_top=False
):
    """Builds a `keras.applications` model as a teacher, with a clear offline error.

    Without its top (the default) the teacher ends in global average pooling,
    so its outputs are the penultimate features: the transfer-learning setting
    (VID-I), where teacher and student have different classes.

    Args:
        name: a constructor of `keras.applications`, e.g. `"MobileNetV2"` or
            `"keras.applications.ResNet50V2"`.
        weights: `"imagenet"` (downloaded once into Keras's cache directory),
            a path to a weights file, or `None` (random initialisation).
        input_shape: the teacher's input shape, RGB.
        include_top: keep the ImageNet classifier (1000 classes).

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: for an unknown name, or ImageNet weights that cannot be
            downloaded (the message names the file and where to put it).

    Example:

    >>> teacher = applications_teacher(
    ...     "MobileNetV2", weights=None, input_shape=(32, 32, 3))
    >>> teacher.output_shape
    (None, 1280)
    """
    name, fn = _constructor(name)
    kwargs = {"input_shape": tuple(input_shape), "include_top": include_top}
    if not include_top:
        kwargs["pooling"] = "avg"
    if weights is not None and weights != "imagenet" and not os.path.exists(weights):
        raise ValueError(
            f"No weights file at {weights!r}. Pass --teacher_weights=imagenet, a "
            "path to an existing weights file, or none."
        )
    try:
        return fn(weights=weights, **kwargs)
    except Exception as e:
        url = re.search(r"https?://\S+?(?=[:\s]|$)", str(e))
        if weights != "imagenet" or url is None:
            raise
        fname = url.group(0).rsplit("/", 1)[-1]
        cache = os.path.join(
            os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models"
        )
        raise ValueError(
            f"Could not download the ImageNet weights of {name} (no internet?): "
            f"{e}. Download {url.group(0)} on a machine that can, and place it "
            f"as {os.path.join(cache, fname)} (Keras's cache directory, "
            "$KERAS_HOME/models); or pass a weights file with "
            "--teacher_weights=PATH (weights=PATH), or weights=None."
        ) from e


def applications_preprocessing(name, student_shape, teacher, input_scale=1.0):
    """Returns the `teacher_preprocessing` layer for a `keras.applications` teacher.

    The student's images (any size, 1 or 3 channels, pixel values in
    `[0, input_scale]`) are resized to the teacher's input size, then one
    frozen `Dense` layer applied to each pixel maps them as the family's
    `preprocess_input` maps `[0, 255]` RGB images (scaling, channel order,
    ImageNet mean and standard deviation), repeating a grey channel into
    three. The map is measured from `preprocess_input` itself, so it is right
    for every family whose preprocessing is per-channel affine; any other is
    refused.

    Args:
        name: the `keras.applications` constructor name, as for
            `applications_teacher`.
        student_shape: the student's input shape, e.g. `(28, 28, 1)`.
        teacher: the teacher model (its input size is the target size).
        input_scale: the student's pixel range top: 1.0 for images in
            [0, 1] (`keras_vid.data`), 255.0 for raw pixels.

    Returns:
        A `keras.Sequential` of `Resizing` and a frozen `Dense`.

    Example:

    >>> teacher = applications_teacher(
    ...     "MobileNetV2", weights=None, input_shape=(32, 32, 3))
    >>> prep = applications_preprocessing("MobileNetV2", (28, 28, 1), teacher)
    >>> prep(np.ones((1, 28, 28, 1), "float32")).shape  # white -> +1 in [-1, 1]
    TensorShape([1, 32, 32, 3])
    """
    name, fn = _constructor(name)
    preprocess = _family(fn).preprocess_input
    channels = student_shape[-1]
    if channels not in (1, 3):
        raise ValueError(
            f"The student's images have {channels} channels; a keras.applications "
            "teacher takes RGB, so give it 1 (grey) or 3 channels."
        )
    # preprocess_input at 0 and at 255 on each channel gives the affine map.
    probe = np.zeros((4, 1, 1, 3), "float32")
    for c in range(3):
        probe[c + 1, 0, 0, c] = 255.0
    out = np.asarray(preprocess(probe.copy()), "float64").reshape(4, 3)
    offset = out[0]
    matrix = (out[1:] - offset) / 255.0  # (input channel, output channel)
    check = np.random.default_rng(0).uniform(0, 255, (8, 1, 1, 3)).astype("float32")
    predicted = check.reshape(8, 3) @ matrix + offset
    actual = np.asarray(preprocess(check.copy()), "float64").reshape(8, 3)
    if not np.allclose(predicted, actual, rtol=1e-4, atol=1e-3):
        raise ValueError(
            f"{name}'s preprocess_input is not a per-channel affine map, so it "
            "cannot be measured. Pass your own `teacher_preprocessing` layer."
        )
    # Student pixels in [0, input_scale] -> the [0, 255] preprocess_input takes.
    matrix = matrix * (255.0 / input_scale)
    if channels == 1:
        matrix = matrix.sum(axis=0, keepdims=True)  # grey repeated into R, G, B
    height, width = teacher.inputs[0].shape[1:3]
    dense = keras.layers.Dense(3, name="preprocess_input", trainable=False)
    prep = keras.Sequential(
        [
            keras.Input(tuple(student_shape)),
            keras.layers.Resizing(int(height), int(width), name="resize"),
            dense,
        ],
        name=f"{name.lower()}_preprocessing",
    )
    dense.set_weights([matrix.astype("float32"), offset.astype("float32")])
    return prep
