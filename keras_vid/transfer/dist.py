"""DIST: correlations between and within classes (Huang et al., NeurIPS 2022).

With temperature `tau`, `P = softmax(s / tau)` and `Q = softmax(t / tau)`,
two `(batch, classes)` matrices, and `d(u, v) = 1 - pearson(u, v)`:

    inter_i = d(P[i, :], Q[i, :])                    each example's classes
    intra   = mean_c d(P[:, c], Q[:, c])             each class, across the batch
    DIST    = tau^2 * (beta * mean_i inter_i + gamma * intra)

Matching correlations instead of probabilities lets a student keep the
teacher's ranking of classes (inter) and of examples per class (intra)
without matching a much stronger teacher's exact values. This is the
authors' loss (hunto/image_classification_sota,
`lib/models/losses/dist_kd.py`, the file hunto/DIST_KD points to; also
torchdistill's `DISTLoss`), with its `pearson = cos(u - mean u, v - mean v)`
and `cos = u.v / (|u| |v| + 1e-8)`.

Per example and across replicas. A term returns one loss per example:
`tau^2 * (beta * inter_i + gamma * intra)`, the batch's intra value repeated,
so the distiller's batch mean is DIST exactly. Sample weights weight each
example's inter term and scale intra by the batch's mean weight. Under
`tf.distribute`, intra is computed on the global batch, gathered from every
replica (`keras_vid.distribute.gather_across_replicas`), so the value and
the gradient equal one device's (`tests/transfer/test_logit_terms.py` checks the
value against NumPy, `tests/distribute/test_mirrored.py` the training).
The authors' PyTorch DistributedDataParallel training computes intra on
each GPU's share instead, which makes it depend on the number of GPUs.
"""

import keras
from keras import ops

from keras_vid.distribute import gather_across_replicas
from keras_vid.taps import OUTPUT
from keras_vid.transfer.base import TransferTerm, check_weight
from keras_vid.transfer.kd import check_logit_shapes

# The authors' epsilon in the cosine's denominator (dist_kd.py, `eps=1e-8`).
COSINE_EPS = 1e-8


def _norm(x, axis):
    # A floor under the squared norm keeps the gradient finite for a centred
    # vector of zeros (a uniform softmax, or one example in the batch);
    # the cosine is 0 there either way.
    return ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis), 1e-30))


def correlation_distance(a, b, axis=-1):
    """`1 - pearson(a, b)` along `axis`, as the DIST authors compute it.

    Args:
        a: a float tensor.
        b: a tensor of the same shape.
        axis: the axis the correlation runs along.

    Returns:
        `a`'s shape without `axis`, values in `[0, 2]`.

    Example:

    >>> import numpy as np
    >>> a = np.array([1.0, 2.0, 3.0])
    >>> round(float(correlation_distance(a, 2.0 * a)), 6)
    0.0
    """
    a = a - ops.mean(a, axis=axis, keepdims=True)
    b = b - ops.mean(b, axis=axis, keepdims=True)
    cosine = ops.sum(a * b, axis=axis) / (_norm(a, axis) * _norm(b, axis) + COSINE_EPS)
    return 1.0 - cosine


def dist_relations(teacher_logits, student_logits, temperature):
    """Returns DIST's per-example inter-class and batch intra-class distances.

    Args:
        teacher_logits: `(batch, classes)` teacher logits.
        student_logits: student logits of the same shape.
        temperature: `tau > 0`.

    Returns:
        `(inter, intra)`: a `(batch,)` float32 tensor and a float32 scalar,
        neither multiplied by `tau^2`.

    Example:

    >>> import numpy as np
    >>> t = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], "float32")
    >>> inter, intra = dist_relations(t, t, 1.0)
    >>> [round(float(v), 5) for v in inter], round(float(intra), 5)
    ([0.0, 0.0], 0.0)
    """
    p_t = ops.softmax(ops.cast(teacher_logits, "float32") / temperature, axis=-1)
    p_s = ops.softmax(ops.cast(student_logits, "float32") / temperature, axis=-1)
    inter = correlation_distance(p_s, p_t, axis=-1)
    intra = ops.mean(correlation_distance(p_s, p_t, axis=0))
    return inter, intra


@keras.saving.register_keras_serializable(package="keras_vid")
class DISTTerm(TransferTerm):
    """DIST: the teacher's class correlations, per example and per class.

    Per example, `tau^2 * (beta * inter_i + gamma * intra)`, where `intra`
    is the batch's (the global batch under `tf.distribute`). It has no
    trainable weights.

    Defaults: `beta=1.0`, `gamma=1.0`, `temperature=1.0` as the authors'
    `DIST(beta=1, gamma=1, tau=1)` (hunto/image_classification_sota,
    `lib/models/losses/kd_loss.py`, method `'dist'`) and torchdistill's
    `DISTLoss` defaults. `weight=1.0` for the term itself;
    `keras_vid.methods` uses 2.0, torchdistill's ImageNet DIST recipe
    (`configs/sample/ilsvrc2012/dist/resnet18_from_resnet34.yaml`: DIST
    weight 2.0 next to cross-entropy 1.0).

    Args:
        weight: the term's weight in the total loss, > 0. Defaults to 1.0.
        beta: the inter-class weight, > 0. Defaults to 1.0.
        gamma: the intra-class weight, > 0. Defaults to 1.0.
        temperature: the softmax temperature `tau`, > 0. Defaults to 1.0.
        teacher_layer: the teacher layer holding the logits. Defaults to
            `None`, the teacher's output.
        student_layer: the student layer holding the logits. Defaults to
            `None`, the student's output.

    Example:

    >>> import numpy as np
    >>> term = DISTTerm()
    >>> t = np.array([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]], "float32")
    >>> [round(float(v), 4) for v in term(t, t)]
    [0.0, 0.0]
    """

    group = "dist"

    def __init__(
        self,
        weight=1.0,
        beta=1.0,
        gamma=1.0,
        temperature=1.0,
        teacher_layer=OUTPUT,
        student_layer=OUTPUT,
        **kwargs,
    ):
        super().__init__(teacher_layer, student_layer, weight, **kwargs)
        self.beta = check_weight(beta, "beta")
        self.gamma = check_weight(gamma, "gamma")
        self.temperature = check_weight(temperature, "temperature")

    def build(self, teacher_shape, student_shape):
        check_logit_shapes(self, teacher_shape, student_shape, per_example=True)

    def call(self, teacher, student, training=False):
        inter, _ = dist_relations(teacher, student, self.temperature)
        _, intra = dist_relations(
            gather_across_replicas(teacher),
            gather_across_replicas(student),
            self.temperature,
        )
        scale = self.temperature * self.temperature
        return scale * (self.beta * inter + self.gamma * intra)

    def get_config(self):
        return {
            **super().get_config(),
            "beta": self.beta,
            "gamma": self.gamma,
            "temperature": self.temperature,
        }
