"""Bringing two channels-last maps to one spatial size, for map-to-map terms.

Attention transfer and neuron selectivity transfer compare a teacher map and
a student map position by position, so both must have the same `(H, W)`.
RepDistiller (`distiller_zoo/AT.py`, `distiller_zoo/NST.py`) adaptive-average
-pools the larger map down to the smaller one and assumes square maps. Here
each axis is handled on its own: both maps are pooled to
`(min(H_t, H_s), min(W_t, W_s))`, so non-square maps and non-integer ratios
work too (the pooling windows follow PyTorch's `adaptive_avg_pool2d`).
"""

from keras import ops

from keras_vid.regressors import AdaptiveAveragePooling2D
from keras_vid.transfer.base import TransferTerm


def check_map_shapes(teacher_shape, student_shape, term):
    """Raises unless both shapes are channels-last maps with known sizes.

    Args:
        teacher_shape: the teacher tap's shape, batch first.
        student_shape: the student tap's shape, batch first.
        term: the term's name, used in the message.

    Example:

    >>> check_map_shapes((None, 8, 8, 16), (None, 4, 4, 8), "ATTerm")
    """
    for role, shape in (("teacher", teacher_shape), ("student", student_shape)):
        shape = tuple(shape)
        if len(shape) != 4 or any(v is None for v in shape[1:3]):
            raise ValueError(
                f"{term} compares channels-last maps (batch, H, W, C) with known "
                f"H and W. Received: teacher tap shape {tuple(teacher_shape)}, "
                f"student tap shape {tuple(student_shape)}; the {role} tap is not "
                "such a map. Tap a convolutional layer on both sides."
            )


def common_size_pools(teacher_shape, student_shape):
    """Returns `(teacher_pool, student_pool)` that bring both maps to one size.

    Each is an `AdaptiveAveragePooling2D` to `(min(H_t, H_s), min(W_t, W_s))`,
    or `None` where that map already has the common size.

    Args:
        teacher_shape: the teacher map's shape `(batch, H, W, C)`.
        student_shape: the student map's shape `(batch, H, W, C)`.

    Returns:
        A pair of built layers or `None`.

    Example:

    >>> t_pool, s_pool = common_size_pools((None, 8, 6, 4), (None, 5, 6, 2))
    >>> t_pool.output_size, s_pool
    ((5, 6), None)
    """
    size = (
        min(teacher_shape[1], student_shape[1]),
        min(teacher_shape[2], student_shape[2]),
    )
    pools = []
    for role, shape in (("teacher", teacher_shape), ("student", student_shape)):
        if tuple(shape[1:3]) == size:
            pools.append(None)
            continue
        # float32: the terms compute in float32 whatever the models' policy.
        pool = AdaptiveAveragePooling2D(size, dtype="float32", name=f"{role}_pool")
        pool.build(tuple(shape))
        pools.append(pool)
    return tuple(pools)


class PooledMapTerm(TransferTerm):
    """A term that compares two maps position by position (AT, NST).

    `build` checks that both taps are channels-last maps and makes the pools
    that bring them to one spatial size; `pooled` applies them in float32.

    Example:

    >>> import numpy as np
    >>> class Gap(PooledMapTerm):
    ...     group = "gap"
    ...     def call(self, teacher, student, training=False):
    ...         t, s = self.pooled(teacher, student)
    ...         return ops.mean(ops.square(t[..., :1] - s[..., :1]), axis=(1, 2, 3))
    >>> term = Gap("t", "s")
    >>> term.build((None, 8, 6, 4), (None, 4, 3, 2))
    >>> t, s = np.zeros((2, 8, 6, 4), "float32"), np.ones((2, 4, 3, 2), "float32")
    >>> [float(v) for v in term(t, s)]
    [1.0, 1.0]
    """

    def build(self, teacher_shape, student_shape):
        check_map_shapes(teacher_shape, student_shape, type(self).__name__)
        self.teacher_pool, self.student_pool = common_size_pools(
            tuple(teacher_shape), tuple(student_shape)
        )

    def pooled(self, teacher, student):
        """Returns both maps in float32 at their common spatial size."""
        teacher = ops.cast(teacher, "float32")
        student = ops.cast(student, "float32")
        if self.teacher_pool is not None:
            teacher = self.teacher_pool(teacher)
        if self.student_pool is not None:
            student = self.student_pool(student)
        return teacher, student
