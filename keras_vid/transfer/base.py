"""The interface every transfer method implements.

A transfer term compares one teacher activation with one student activation
and returns a loss *per example*. The distiller does the rest, once for all
methods: it runs each model forward once, applies the term's weight and the
sample weights, and scales for `tf.distribute`, so that every method gets the
same guarantees. A new method is one new file with one `TransferTerm` subclass.
"""

import math

import keras

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
