"""Every private Keras, TensorFlow, keras-tuner and tfds API keras-vid uses.

Each helper below is the only place its private name is read, and says why
no public API does the job. Method overrides of private hooks (which cannot
be wrapped) are listed in `PRIVATE`, with the module that overrides them.
`tests/test_compat.py` checks every entry of `PRIVATE` against the installed
packages, so an upgrade that removes one fails there with a message naming
it, rather than deep inside a training step.

Checked against Keras 3.15, TensorFlow 2.21, keras-tuner 1.4 and
tensorflow-datasets 4.9.
"""

import contextlib
import threading
import weakref

import keras

# (owner, private name, where keras-vid uses it, why).
PRIVATE = (
    (
        "keras.Sequential",
        "_functional",
        "taps, pairing",
        "A built Sequential model's layer graph; no public accessor.",
    ),
    (
        "keras.Model (functional)",
        "_nodes_by_depth",
        "taps, pairing",
        "The graph's nodes in topological order, to find stages and to "
        "refuse a layer called twice; no public accessor.",
    ),
    (
        "keras.optimizers.Optimizer",
        "_exclude_from_weight_decay",
        "distiller",
        "exclude_from_weight_decay() replaces earlier exclusions; reading them "
        "keeps the user's own when the VID variances are added.",
    ),
    (
        "keras.optimizers.Optimizer",
        "_exclude_from_weight_decay_pattern",
        "distiller",
        "As above, for the name patterns.",
    ),
    (
        "keras.optimizers.Optimizer",
        "_clip_gradients",
        "distribute",
        "The optimizer's own clip (clipnorm, global_clipnorm, clipvalue), "
        "applied once to the replicas' summed gradient.",
    ),
    (
        "keras.optimizers.Optimizer",
        "_all_reduce_sum_gradients",
        "distribute",
        "Skipped while apply() takes gradients that distribute.apply_across_"
        "replicas has already summed and clipped; Keras has no public switch.",
    ),
    (
        "keras.Model",
        "_compile_loss",
        "distiller",
        "The compiled task loss, called with sample weights inside the "
        "distiller's task loss, as Keras's own compute_loss does.",
    ),
    (
        "keras.Model",
        "_loss_tracker",
        "distiller",
        "The 'loss' metric Keras logs; train_step updates it with the total.",
    ),
    (
        "keras.Model",
        "_maybe_symbolic_build",
        "Distiller override, distribute.symbolic_build",
        "Keras 3.15 reduces a PerReplica batch here, which fails under "
        "MultiWorkerMirroredStrategy (keras-team/keras#20585).",
    ),
    (
        "keras.Model",
        "_symbolic_build",
        "distribute.symbolic_build",
        "The build step Keras's own _maybe_symbolic_build calls.",
    ),
    (
        "keras.Model",
        "_distribute_strategy",
        "distribute.symbolic_build",
        "The strategy the model was created under, as Keras reads it.",
    ),
    (
        "keras.Model",
        "_make_function",
        "Distiller override",
        "Keras 3.15 reduces scalar logs with axis=0, which fails on several "
        "workers (keras-team/keras#20585).",
    ),
    (
        "tf.distribute.MultiWorkerMirroredStrategy.extended",
        "_in_multi_worker_mode",
        "distribute.is_multi_worker",
        "Whether TF_CONFIG names several workers; no public accessor.",
    ),
    (
        "keras_tuner.Tuner",
        "_configure_tensorboard_dir",
        "tuning (override)",
        "keras-tuner 1.4 imports tensorboard in every trial here; skipped when "
        "no TensorBoard callback needs it.",
    ),
    (
        "keras_tuner.src.engine.metrics_tracking",
        "infer_metric_direction",
        "tuning.objective",
        "keras-tuner's own min/max guess for a metric name.",
    ),
    (
        "keras.src.backend.common.masking",
        "set_keras_mask",
        "distiller (metrics of unlabelled examples)",
        "Keras's compiled `metrics` ignore sample weights (only "
        "`weighted_metrics` take them) but honour a Keras mask on y_pred; "
        "the mask leaves unlabelled examples out of accuracy and the like. "
        "keras.ops has no public setter.",
    ),
    (
        "tensorflow_datasets.core.download.download_manager",
        "NonMatchingChecksumError",
        "data.builtin",
        "The error tfds raises for a file whose checksum differs, turned into "
        "keras-vid's DataVerificationError.",
    ),
    (
        "tensorflow_datasets.core.hashing",
        "Hasher",
        "data.builtin",
        "The salted key hash by which tfds orders a split's examples; undoing "
        "it gives the original files' order, so tfds and the direct reader "
        "give the same arrays. tfds has no public accessor.",
    ),
)


def functional_graph(model):
    """The functional graph behind a functional or built Sequential model.

    Example:

    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> isinstance(functional_graph(m), keras.Model)
    True
    """
    return model._functional if isinstance(model, keras.Sequential) else model


def nodes_by_depth(graph):
    """`{depth: [node, ...]}` of a functional graph; deeper nodes first.

    Example:

    >>> inp = keras.Input((2,))
    >>> m = keras.Model(inp, keras.layers.Dense(1)(inp))
    >>> sorted(nodes_by_depth(m))
    [0, 1]
    """
    return graph._nodes_by_depth


def add_weight_decay_exclusions(optimizer, variables):
    """Excludes `variables` from `optimizer`'s weight decay, keeping earlier ones.

    Example:

    >>> opt = keras.optimizers.AdamW()
    >>> v = keras.Variable(1.0)
    >>> add_weight_decay_exclusions(opt, [v])
    """
    ids = set(getattr(optimizer, "_exclude_from_weight_decay", None) or ())
    pattern = getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
    optimizer.exclude_from_weight_decay(var_list=variables)
    optimizer._exclude_from_weight_decay |= ids
    optimizer._exclude_from_weight_decay_pattern = pattern


def clip_gradients(optimizer, grads):
    """The optimizer's own gradient clip, applied to `grads`.

    Example:

    >>> opt = keras.optimizers.SGD(global_clipnorm=1.0)
    >>> [float(g) for g in clip_gradients(opt, [keras.ops.array(3.0)])]
    [1.0]
    """
    return optimizer._clip_gradients(grads)


_summed_lock = threading.Lock()
# {optimizer: [replicas inside gradients_already_summed]}
_summed_inside = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def gradients_already_summed(optimizer):
    """While traced inside, `optimizer.apply` takes gradients summed over replicas.

    Keras's TensorFlow optimizer all-reduces the gradients in `apply`; after
    `keras_vid.distribute.apply_across_replicas` has summed and clipped them,
    that second sum must not run. MirroredStrategy traces its replicas in
    threads that interleave, and `LossScaleOptimizer` applies from threads of
    its own (`call_for_each_replica`), so the switch counts the replicas
    inside rather than being per thread.

    Example:

    ```python
    with gradients_already_summed(optimizer):
        optimizer.apply(summed_grads, variables)
    ```
    """
    with _summed_lock:
        if optimizer not in _summed_inside:
            keras_sum = optimizer._all_reduce_sum_gradients
            inside = _summed_inside[optimizer] = [0]

            def all_reduce_unless_summed(grads_and_vars):
                if inside[0]:
                    return list(grads_and_vars)
                return keras_sum(grads_and_vars)

            optimizer._all_reduce_sum_gradients = all_reduce_unless_summed
        inside = _summed_inside[optimizer]
        inside[0] += 1
    try:
        yield
    finally:
        with _summed_lock:
            inside[0] -= 1


def in_multi_worker_mode(strategy):
    """Whether a MultiWorkerMirroredStrategy spans several workers.

    Example:

    >>> import tensorflow as tf
    >>> in_multi_worker_mode(tf.distribute.MirroredStrategy())
    False
    """
    return strategy.extended._in_multi_worker_mode()


def distribute_strategy(model):
    """The `tf.distribute` strategy `model` was created under, or None.

    Example:

    >>> distribute_strategy(keras.Sequential()) is None
    True
    """
    return model._distribute_strategy


def infer_metric_direction(name):
    """keras-tuner's guess of whether metric `name` is minimised or maximised.

    Example:

    >>> infer_metric_direction("val_accuracy")
    'max'
    """
    from keras_tuner.src.engine import metrics_tracking

    return metrics_tracking.infer_metric_direction(name)


def tfds_checksum_error():
    """The exception tfds raises for a downloaded file of another checksum.

    Example:

    >>> issubclass(tfds_checksum_error(), Exception)
    True
    """
    from tensorflow_datasets.core.download import download_manager

    return download_manager.NonMatchingChecksumError


def tfds_file_order(split, num_examples):
    """Where each example of the original files sits in tfds's stored split.

    tfds writes a split sorted by the salted MD5 of each example's key, and
    the MNIST-family and CIFAR builders key examples by their index in the
    original files. Returns `order` such that `stored[i]` is example
    `order[i]` of the files; `restored[order] = stored` undoes the shuffle,
    so both sources give the same arrays and the same subsets. tfds has no
    public accessor for this order; `keras_vid.data` verifies the restored
    full splits against the files' SHA-256, so a change in tfds fails loudly.

    Example:

    >>> sorted(tfds_file_order("test", 5).tolist())
    [0, 1, 2, 3, 4]
    """
    import numpy as np
    from tensorflow_datasets.core import hashing

    hasher = hashing.Hasher(salt=split)
    keys = [hasher.hash_key(index) for index in range(num_examples)]
    return np.array(sorted(range(num_examples), key=keys.__getitem__))


def symbolic_build(model, data_batch):
    """Keras's symbolic build of `model` (its metrics, optimizer) from a batch.

    Example:

    ```python
    symbolic_build(model, data_batch=(x, y))
    ```
    """
    model._symbolic_build(data_batch=data_batch)


def with_row_mask(x, mask):
    """A copy of `x` carrying a Keras mask of its rows.

    Keras's metrics built on `MeanMetricWrapper` (accuracy, crossentropy
    and the like) then count only the rows where `mask` is true, also when
    compiled as unweighted `metrics`.

    Example:

    >>> y = with_row_mask(keras.ops.ones((2, 3)), keras.ops.array([True, False]))
    >>> m = keras.metrics.SparseCategoricalAccuracy()
    >>> m.update_state(keras.ops.array([0, 1]), y)
    >>> float(m.result())
    1.0
    """
    from keras.src.backend.common.masking import set_keras_mask

    x = keras.ops.copy(x)
    set_keras_mask(x, mask)
    return x
