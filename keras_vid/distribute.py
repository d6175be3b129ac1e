"""What `tf.distribute` needs beyond plain Keras, kept in one place.

Loss scaling. Under a strategy with R replicas, each replica computes its loss
on its share of the global batch, and the optimiser *sums* the replicas'
gradients. For the sum to equal the gradient of the global-batch mean, every
replica divides its local mean by R. Keras's compiled losses already do this
(`sum_over_batch_size`), but additional losses (regularisers) and custom terms
do not: `scale_for_replicas` applies the same rule to them, and
`unscale_for_replicas` undoes it for logging, so the logged value is the
global mean on any number of replicas.
"""

import tensorflow as tf
from keras import ops


def num_replicas():
    """Number of replicas of the current `tf.distribute` strategy (1 if none).

    Example:

    >>> num_replicas()
    1
    """
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_for_replicas(value):
    """Divides a per-replica mean by the number of replicas.

    Example:

    >>> float(scale_for_replicas(2.0))
    2.0
    """
    value = ops.convert_to_tensor(value)
    r = num_replicas()
    return value if r == 1 else value * ops.cast(1.0 / r, value.dtype)


def unscale_for_replicas(value):
    """Inverse of `scale_for_replicas`, for logging.

    Example:

    >>> float(unscale_for_replicas(2.0))
    2.0
    """
    value = ops.convert_to_tensor(value)
    r = num_replicas()
    return value if r == 1 else value * ops.cast(r, value.dtype)
