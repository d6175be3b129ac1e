"""The interface every transfer method implements.

A transfer term compares one teacher activation with one student activation
and returns a loss *per example*. The distiller does the rest, once for all
methods: it runs each model forward once, applies the term's weight and the
sample weights, and scales for `tf.distribute`, so that every method gets the
same guarantees. A new method is one new file with one `TransferTerm` subclass.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_vid.taps import OUTPUT


def check_weight(weight, what="weight"):
    """Returns `weight` as a float, or raises if it is not finite and positive.

    Args:
        weight: the value to check.
        what: its name, used in the message.

    Example:

    >>> check_weight(2)
    2.0
    """
    try:
        value = float(weight)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(
            f"`{what}` must be a finite number > 0. Received: {what}={weight!r}. "
            "To switch a term off, leave it out instead of giving it weight 0."
        )
    return value


class TransferTerm(keras.layers.Layer):
    """Base class of a knowledge-transfer loss between two tapped activations.

    Subclasses set `group` (the log name prefix, e.g. `"vid"`), build their
    trainable parts in `build(teacher_shape, student_shape)` and return a
    float32 loss of shape `(batch,)` from `call(teacher, student)`.

    A term that needs the class labels (DKD's target class) sets
    `needs_labels = True`; the distiller then calls it as
    `term(teacher, student, training=..., labels=y)` with the batch's `y`,
    and refuses data without labels. Labels are integer class ids of shape
    `(batch,)` or `(batch, 1)`, or one-hot rows of shape `(batch, classes)`;
    `class_ids` turns either into ids.

    Args:
        teacher_layer: teacher layer name or nested path; `None` for the
            teacher's output (its logits).
        student_layer: student layer name or nested path; `None` for the
            student's output.
        weight: the term's weight in the total loss (lambda), > 0.

    Example:

    >>> from keras import ops
    >>> class L2(TransferTerm):
    ...     group = "l2"
    ...     def call(self, teacher, student, training=False):
    ...         return ops.mean(ops.square(teacher - student), axis=-1)
    >>> term = L2("t_features", "s_features", weight=0.5)
    >>> term.log_name
    'l2/s_features'
    """

    group = "transfer"
    needs_labels = False

    def __init__(
        self, teacher_layer=OUTPUT, student_layer=OUTPUT, weight=1.0, **kwargs
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.teacher_layer = teacher_layer
        self.student_layer = student_layer
        self.weight = check_weight(weight, f"{self.group} weight")

    @property
    def log_name(self):
        """The name under which the term's value is logged."""
        return f"{self.group}/{self.student_layer or 'output'}"

    def build(self, teacher_shape, student_shape):
        pass

    def no_decay_variables(self):
        """Variables that weight decay must not touch (none by default)."""
        return []

    def get_config(self):
        return {
            **super().get_config(),
            "teacher_layer": self.teacher_layer,
            "student_layer": self.student_layer,
            "weight": self.weight,
        }


def _labels_error(what, shape, num_classes, detail=""):
    return ValueError(
        f"{what} needs class labels as integer class ids of shape (batch,) or "
        f"(batch, 1), or one-hot rows of shape (batch, {num_classes}).{detail} "
        f"Received: labels of shape {shape}."
    )


def class_ids(labels, num_classes, what="This term"):
    """Returns integer class ids `(batch,)` from ids or one-hot labels.

    Which form `labels` is in is read from its static shape: `(batch,)` or
    `(batch, 1)` are ids, `(batch, num_classes)` one-hot rows (their argmax).
    Values are checked before training by `check_class_labels`, since a
    check inside a compiled step would be dropped under XLA.

    Args:
        labels: integer (or integral float) ids, or one-hot rows.
        num_classes: the number of classes (the logits' last axis).
        what: the caller's name, used in the message.

    Returns:
        An int32 tensor of shape `(batch,)`.

    Raises:
        ValueError: for any other shape.

    Example:

    >>> import numpy as np
    >>> [int(i) for i in class_ids(np.eye(3)[[2, 0]], 3)]
    [2, 0]
    """
    labels = ops.convert_to_tensor(labels)
    shape = tuple(labels.shape)
    if len(shape) == 2 and shape[-1] == 1:
        labels = ops.squeeze(labels, axis=-1)
    elif len(shape) == 2 and shape[-1] == num_classes and num_classes != 1:
        return ops.cast(ops.argmax(labels, axis=-1), "int32")
    elif len(shape) != 1:
        raise _labels_error(what, shape, num_classes)
    return ops.cast(labels, "int32")


def check_class_labels(labels, num_classes, what="This term"):
    """Raises unless `labels` (a NumPy batch) are class ids or one-hot rows.

    Soft labels (label smoothing, mixup) and fractional ids are refused: a
    term that needs the labels picks each example's target class from them.
    Called on the first batch before `fit` (`keras_vid.validation`).

    Args:
        labels: a batch of labels, as an array.
        num_classes: the number of classes.
        what: the caller's name, used in the message.

    Raises:
        ValueError: naming what is wrong.

    Example:

    >>> check_class_labels([0, 2, 1], num_classes=3)
    """
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[-1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and y.shape[-1] == num_classes and num_classes != 1:
        one_hot = np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=-1) == 1)
        if not one_hot:
            raise _labels_error(
                what,
                np.shape(labels),
                num_classes,
                " These rows are not one-hot (soft labels from label smoothing "
                "or mixup?); pass the hard labels.",
            )
        return
    if y.ndim != 1:
        raise _labels_error(what, np.shape(labels), num_classes)
    if y.dtype.kind not in "iub" and not (
        y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    ):
        raise _labels_error(
            what,
            np.shape(labels),
            num_classes,
            f" These are not whole numbers (dtype {y.dtype}).",
        )


class RegressorTerm(TransferTerm):
    """A `TransferTerm` whose student tap goes through a trainable regressor.

    Shared by VID (the Gaussian's mean) and FitNet (the hint regressor): it
    validates a custom regressor, builds the default one from the two tap
    shapes, checks at construction that the regressor outputs the teacher
    tap's shape, and serialises a custom regressor with the term.

    Subclasses set `default_regressor(student_shape, teacher_shape, name)`.

    Args:
        teacher_layer: teacher layer name or nested path (`None`: its output).
        student_layer: student layer name or nested path (`None`: its output).
        weight: the term's weight, > 0.
        regressor: a Keras layer mapping the student tap to the teacher tap's
            shape, or `None` for the default.

    Example:

    >>> from keras import ops
    >>> from keras_vid.regressors import default_regressor
    >>> class Hint(RegressorTerm):
    ...     group = "hint"
    ...     default_regressor = staticmethod(default_regressor)
    ...     def call(self, teacher, student, training=False):
    ...         return ops.mean(ops.square(teacher - self.regressor(student)), -1)
    >>> term = Hint("t", "s")
    >>> term.build((None, 4), (None, 3))
    >>> type(term.regressor).__name__
    'DenseRegressor'
    """

    def __init__(
        self, teacher_layer, student_layer, weight=1.0, regressor=None, **kwargs
    ):
        super().__init__(teacher_layer, student_layer, weight, **kwargs)
        if regressor is not None and not isinstance(regressor, keras.layers.Layer):
            raise TypeError(
                "`regressor` must be a Keras layer or model that maps the student "
                f"tap to the teacher tap's shape. Received: {regressor!r}."
            )
        self._custom_regressor = regressor is not None
        self.regressor = regressor

    def build_regressor(self, teacher_shape, student_shape):
        """Builds the regressor and checks that it outputs `teacher_shape`."""
        teacher_shape, student_shape = tuple(teacher_shape), tuple(student_shape)
        if self.regressor is None:
            self.regressor = self.default_regressor(
                student_shape, teacher_shape, name="regressor"
            )
        if not self.regressor.built:
            self.regressor.build(student_shape)
        out = self.regressor.compute_output_spec(
            keras.KerasTensor(student_shape, dtype="float32")
        )
        if tuple(out.shape[1:]) != teacher_shape[1:]:
            raise ValueError(
                f"The {self.group} regressor for the pair ({self.teacher_layer!r}, "
                f"{self.student_layer!r}) maps the student tap {student_shape} to "
                f"{tuple(out.shape)}, but the teacher tap has shape {teacher_shape}. "
                "A regressor must output the teacher tap's shape."
            )

    def build(self, teacher_shape, student_shape):
        self.build_regressor(teacher_shape, student_shape)

    def get_config(self):
        config = {**super().get_config(), "regressor": None}
        if self._custom_regressor:
            config["regressor"] = keras.saving.serialize_keras_object(self.regressor)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**with_regressor(config))


def with_regressor(config):
    """Returns a copy of `config` whose serialised `"regressor"` is a layer.

    Shared by the regressor terms and `keras_vid.LayerPair`.

    Example:

    >>> with_regressor({"teacher": "t", "regressor": None})
    {'teacher': 't', 'regressor': None}
    """
    config = dict(config)
    if config.get("regressor") is not None:
        config["regressor"] = keras.saving.deserialize_keras_object(config["regressor"])
    return config
