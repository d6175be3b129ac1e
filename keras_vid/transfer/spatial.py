"""Bringing two channels-last maps to one spatial size, for map-to-map terms.

Attention transfer and neuron selectivity transfer compare a teacher map and
a student map position by position, so both must have the same `(H, W)`.
RepDistiller (`distiller_zoo/AT.py`, `distiller_zoo/NST.py`) adaptive-average
-pools the larger map down to the smaller one and assumes square maps. Here
each axis is handled on its own: both maps are pooled to
`(min(H_t, H_s), min(W_t, W_s))`, so non-square maps and non-integer ratios
work too (the pooling windows follow PyTorch's `adaptive_avg_pool2d`).
"""

from keras_vid.regressors import AdaptiveAveragePooling2D


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
