"""Checks on the data given to `fit`, before the first training step.

Keras reports a wrong image shape, an empty dataset or an out-of-range label
from deep inside a traced graph, often after the teacher and the optimiser
were built, or (for labels) not at all: an out-of-range sparse label gives a
NaN or garbage loss on CPU. These checks look at the first batch (all of it
for in-memory arrays) and raise a clear error first.
"""

import warnings

import keras
import numpy as np

from keras_vid._tf import is_dataset
from keras_vid.teacher_cache import split_cached
from keras_vid.transfer.base import check_class_labels


def _first_element(data):
    if is_dataset(data):
        if int(data.cardinality()) == 0:
            raise ValueError(
                "The training dataset is empty (cardinality 0). Check the filters, "
                "`take()`/`skip()` counts and `samples_per_class` that built it."
            )
        for element in data.take(1):
            return element
        raise ValueError(
            "The training dataset yielded no batch. Check the filters and counts "
            "that built it."
        )
    return None


def _as_xy(element):
    if isinstance(element, (tuple, list)):
        x = element[0]
        y = element[1] if len(element) > 1 else None
        return x, y
    return element, None


def check_fit_data(distiller, x=None, y=None):
    """Raises a clear error for data that cannot train `distiller`.

    Checks: the data is not empty; the images' shape matches the student's
    input (the teacher's too, unless `teacher_preprocessing` adapts it);
    integer class labels lie in `[0, number of student outputs)` or are -1
    (`keras_vid.data.UNLABELED`, an unlabelled example); some examples are
    labelled (an error for arrays when no term learns without labels, since
    nothing would train; a warning otherwise, and for a dataset whose first
    batch has none); and, when a term needs the labels
    (`TransferTerm.needs_labels`), that there are labels and that they are
    class ids or one-hot rows.

    Args:
        distiller: a `keras_vid.Distiller`.
        x: what `fit` received as `x` (arrays or a `tf.data.Dataset`).
        y: what `fit` received as `y`, if any.

    Returns:
        Whether the labels seen hold unlabelled examples (-1).

    Raises:
        ValueError: naming what is wrong and how to fix it.

    Example:

    ```python
    check_fit_data(distiller, train_ds)
    ```
    """
    element = _first_element(x)
    if element is not None:
        x, y = _as_xy(element)
    elif x is None:
        return False
    x, _ = split_cached(x)
    flat = keras.tree.flatten(x)
    if not all(hasattr(t, "shape") for t in flat):
        # A generator or PyDataset: reading ahead would consume its batches.
        return False
    if flat and hasattr(flat[0], "shape") and len(flat[0]) == 0:
        raise ValueError("The training data is empty (0 examples).")
    # The student's inputs: the teacher's too, unless teacher_preprocessing
    # adapts them for it.
    expected = [tuple(t.shape[1:]) for t in distiller.student.inputs]
    got = [tuple(np.shape(t)[1:]) for t in flat]
    if len(got) == len(expected) and any(
        len(g) != len(e) or any(a is not None and a != b for a, b in zip(e, g))
        for g, e in zip(got, expected)
    ):
        raise ValueError(
            f"The data's inputs have shape {got} (without batch), but the student "
            f"'{distiller.student.name}' expects {expected}. Resize or reshape the "
            "images (for example with the dataset the teacher was trained on), or "
            "use a teacher built for this input shape."
        )
    _check_term_labels(distiller, y)
    if y is None or isinstance(y, (dict, list, tuple)):
        return False
    y = np.asarray(y)
    out = distiller.student.outputs
    classes = out[0].shape[-1] if len(out) == 1 else None
    if classes and np.issubdtype(y.dtype, np.integer) and y.size:
        low, high = int(y.min()), int(y.max())
        if low < -1 or high >= classes:
            raise ValueError(
                f"Integer labels must lie in [0, {classes}) for a student with "
                f"{classes} outputs, or be -1 for an unlabelled example. Received "
                f"labels from {low} to {high}. Check the label encoding, or the "
                "student's number of classes."
            )
        if high < 0:
            _all_unlabelled(distiller, whole=element is None)
        return low < 0
    return False


def _all_unlabelled(distiller, whole):
    label_free = [t.log_name for t in distiller.terms if not t.needs_labels]
    where = "Every training example" if whole else "Every example of the first batch"
    if whole and not label_free:
        raise ValueError(
            f"{where} is unlabelled (label -1), and the distiller has no term "
            "that learns without labels, so training would change nothing. Give "
            "the labelled examples their class ids, or add a term such as KD or "
            "VID."
        )
    warnings.warn(
        f"{where} is unlabelled (label -1): the task loss and the metrics see "
        f"no labelled example{'' if whole else ' there'}, and only "
        f"{', '.join(label_free) or 'no term'} learn"
        f"{'s' if len(label_free) == 1 else ''} from them. If that is meant, "
        "pass no labels (y=None) instead; otherwise mix in labelled examples "
        "(keras_vid.data.with_unlabeled).",
        stacklevel=3,
    )


def _check_term_labels(distiller, y):
    terms = [t for t in distiller.terms if t.needs_labels]
    if not terms:
        return
    what = ", ".join(f"{t.log_name} ({type(t).__name__})" for t in terms)
    if y is None or isinstance(y, (dict, list, tuple)):
        raise ValueError(
            f"The term(s) {what} need the class labels, as one array of class "
            f"ids or one-hot rows, but the training data has "
            f"{'none' if y is None else 'a ' + type(y).__name__ + ' of them'}. "
            "Pass `y` to fit, or a dataset of (x, y) batches."
        )
    classes = distiller.student.outputs[0].shape[-1]
    check_class_labels(y, classes, what)
