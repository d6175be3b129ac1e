"""What `tf.distribute` needs beyond plain Keras, kept in one place.

Loss scaling. Under a strategy with R replicas, each replica computes its loss
on its share of the global batch, and the optimiser *sums* the replicas'
gradients. For the sum to equal the gradient of the global-batch mean, every
replica divides its local mean by R. Keras's compiled losses already do this
(`sum_over_batch_size`), but additional losses (regularisers) and custom terms
do not: `scale_for_replicas` applies the same rule to them, and
`unscale_for_replicas` undoes it for logging, so the logged value is the
global mean on any number of replicas.

Gradient clipping. Keras 3.15's optimisers clip (`clipnorm`,
`global_clipnorm`, `clipvalue`) each replica's gradient *before* the replicas
are summed, so a clipped run on R replicas differs from the same run on one
device (tf.keras refused clipping under strategies for this reason).
`apply_across_replicas` clips the summed gradient instead.

Several machines. Keras 3.15's `Model.fit` fails under
`MultiWorkerMirroredStrategy` (keras-team/keras#20585); `symbolic_build` and
`multi_worker_step` fix it for `keras_vid.Distiller` (the comment before
`local_batch` says why it fails and how), and `get_strategy` names the
strategies for recipes.

Running across machines
-----------------------
`VIDDistiller.fit` trains on several machines under
`tf.distribute.MultiWorkerMirroredStrategy`. Every machine (a *worker*) runs
the same script, which creates the strategy first thing, before any other
TensorFlow op: `strategy = keras_vid.distribute.get_strategy("multi_worker")`.
Each worker learns the cluster from the `TF_CONFIG` environment variable, a
JSON string listing every worker's `host:port`, in the same order on all of
them, and this worker's index in that list:

```shell
# on host1 (worker 0, the chief):
TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
            "task": {"type": "worker", "index": 0}}' python train.py
# on host2: the same cluster, with "index": 1
```

Each port must be free on its host and reachable from the other workers
(TensorFlow listens on it on all interfaces, so keep it off public networks).
Training is synchronous: each step the replicas' gradients are summed across
all workers, so every worker holds the same weights. Batch the `tf.data`
pipeline by the *global* batch size and set
`options.experimental_distribute.auto_shard_policy =
tf.data.experimental.AutoShardPolicy.DATA`: every worker then reads the whole
pipeline and keeps its share of each global batch, so step k trains on the
same examples as a single process would. (The default, AUTO, shards by file
when it can, which is cheaper for large file-based datasets but changes the
order.) Build and compile the distiller inside `strategy.scope()`, and keep
`steps_per_execution=1` (Keras 3.15's multi-step loop fails under this
strategy, at least on CPU). Without `TF_CONFIG` the same script runs as a
single worker.

To survive the loss of a worker, pass `keras.callbacks.BackupAndRestore` to
`fit` and, after a failure, start all workers again: they resume at the last
completed epoch. Keras 3's callback is not multi-worker aware (every worker
writes the same files, then deletes the directory), so give each worker a
directory of its own with `keras_vid.distribute.worker_backup_dir`:

```python
strategy = keras_vid.distribute.get_strategy("multi_worker")
with strategy.scope():
    distiller = keras_vid.VIDDistiller(teacher, student, pairs)
    distiller.compile(optimizer, loss=loss)
backup = keras_vid.distribute.worker_backup_dir("/shared/backup")
distiller.fit(train_ds, epochs=10,
              callbacks=[keras.callbacks.BackupAndRestore(backup)])
```
"""

import os

import keras
from keras import ops

from keras_vid import _compat
from keras_vid._tf import BACKEND, require, tf


def num_replicas():
    """Number of replicas of the current `tf.distribute` strategy (1 if none).

    Example:

    >>> num_replicas()
    1
    """
    if not BACKEND:
        return 1
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


def gather_across_replicas(value):
    """Concatenates `value` from every replica along axis 0, with gradients.

    A term that depends on the whole batch (DIST's intra-class relation)
    computes it on the gathered global batch, so it equals one device's.
    `all_gather`'s gradient sums the replicas' upstream gradients and keeps
    this replica's rows, so after `scale_for_replicas` and the optimizer's
    all-reduce the gradient is one device's too. Outside a multi-replica
    step it returns `value`.

    Example:

    >>> gather_across_replicas([[1.0, 2.0]]).shape
    TensorShape([1, 2])
    """
    value = ops.convert_to_tensor(value)
    if not BACKEND:
        return value
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_gather(value, axis=0)


def sum_across_replicas(value):
    """Sums `value` over the replicas of a multi-replica step.

    The distiller divides the task loss by the global number of labelled
    examples, which only this sum knows when a replica's shard holds few or
    none. Outside a multi-replica step it returns `value`.

    Example:

    >>> float(sum_across_replicas(3.0))
    3.0
    """
    value = ops.convert_to_tensor(value)
    if not BACKEND:
        return value
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def unscale_for_replicas(value):
    """Inverse of `scale_for_replicas`, for logging.

    Example:

    >>> float(unscale_for_replicas(2.0))
    2.0
    """
    value = ops.convert_to_tensor(value)
    r = num_replicas()
    return value if r == 1 else value * ops.cast(r, value.dtype)


def apply_across_replicas(optimizer, grads, variables):
    """`optimizer.apply(grads, variables)`, clipping the replicas' summed gradient.

    Call it in a replica context (a `train_step`) with the gradients of the
    loss-scaled loss. With one replica, or an optimiser that does not clip,
    it is `optimizer.apply`. Otherwise it all-reduces the gradients once,
    clips the sum with the optimiser's own rule (loss scale removed first),
    and applies the result with the optimiser's own all-reduce skipped, so
    each step still sums the gradients once, as an unclipped step does.
    Gradients that are not finite (a loss-scale overflow) are applied
    unclipped, so that `LossScaleOptimizer` sees the overflow on every
    replica and skips the step.

    Example:

    ```python
    grads = tape.gradient(optimizer.scale_loss(loss), variables)
    keras_vid.distribute.apply_across_replicas(optimizer, grads, variables)
    ```
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    ctx = tf.distribute.get_replica_context()
    if (
        not (inner.clipnorm or inner.global_clipnorm or inner.clipvalue)
        # Keras clips the accumulated gradient at the update step; left as is.
        or getattr(inner, "gradient_accumulation_steps", None)
        or ctx is None
        or ctx.num_replicas_in_sync == 1
    ):
        optimizer.apply(grads, variables)
        return
    index = [i for i, g in enumerate(grads) if g is not None]
    total = ctx.all_reduce(
        tf.distribute.ReduceOp.SUM, [tf.convert_to_tensor(grads[i]) for i in index]
    )
    # scale_loss multiplies by the dynamic loss scale (1 without mixed precision).
    loss_scale = tf.cast(optimizer.scale_loss(1.0), "float32")
    clipped = _compat.clip_gradients(
        inner, [t / tf.cast(loss_scale, t.dtype) for t in total]
    )
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in total])
    # An elementwise select, not `tf.cond`: in TF 2.21 a cond here makes the
    # replicas' collective keys diverge when the forward pass has collectives
    # of its own (SyncBatchNorm, DIST's all_gather), and the step aborts with
    # "Shape mismatch in the collective instance" (tests/distribute).
    chosen = [
        tf.where(finite, c * tf.cast(loss_scale, c.dtype), t)
        for c, t in zip(clipped, total)
    ]
    out = list(grads)
    for i, g in zip(index, chosen):
        out[i] = g
    # Keras's per-replica clip of the clipped sum changes nothing; its second
    # all-reduce would double the sum and, beside a forward-pass collective,
    # abort the step in TF 2.21 as above.
    with _compat.gradients_already_summed(inner):
        optimizer.apply(out, variables)


# ---------------------------------------------------------------------------
# Strategies by name, and MultiWorkerMirroredStrategy support for `fit`.
# ---------------------------------------------------------------------------

STRATEGIES = ("default", "mirrored", "multi_worker")


def get_strategy(name="default", **kwargs):
    """Returns a `tf.distribute` strategy by name, for recipes and scripts.

    Args:
        name: one of
            - `"default"`: the current strategy, `tf.distribute.get_strategy()`
              (the no-op default strategy outside any `strategy.scope()`).
            - `"mirrored"`: `tf.distribute.MirroredStrategy`, one replica per
              local GPU (or the CPU), on one machine.
            - `"multi_worker"`: `tf.distribute.MultiWorkerMirroredStrategy`,
              synchronous training across machines configured by the
              `TF_CONFIG` environment variable (see "Running across
              machines" in this module's docstring). Create it at the
              start of the program, before any other TensorFlow op runs.
        **kwargs: passed to the strategy's constructor (not allowed with
            `"default"`).

    Returns:
        A `tf.distribute.Strategy`. Build and compile the distiller inside
        its `scope()`.

    Example:

    >>> get_strategy("default").num_replicas_in_sync
    1

    ```python
    strategy = keras_vid.distribute.get_strategy("multi_worker")
    with strategy.scope():
        distiller = keras_vid.VIDDistiller(teacher, student, pairs)
        distiller.compile(optimizer, loss=loss)
    distiller.fit(train_ds, epochs=10)
    ```
    """
    require("keras_vid.distribute.get_strategy (a tf.distribute strategy)")
    if not isinstance(name, str) or name not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy name {name!r}. Expected one of {STRATEGIES}: "
            "'default' (the current tf.distribute strategy), 'mirrored' "
            "(several devices on one machine) or 'multi_worker' (several "
            "machines, configured by the TF_CONFIG environment variable)."
        )
    if name == "default":
        if kwargs:
            raise ValueError(
                "The 'default' strategy takes no arguments. Received: "
                f"{sorted(kwargs)}."
            )
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(**kwargs)
    return tf.distribute.MultiWorkerMirroredStrategy(**kwargs)


def is_multi_worker(strategy=None):
    """Whether `strategy` is a MultiWorkerMirroredStrategy with several workers.

    This is the condition under which Keras 3.15 reduces `fit`'s logs with
    `strategy.reduce("MEAN", v, axis=0)` (see `multi_worker_step`).

    Args:
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.

    Example:

    >>> is_multi_worker()
    False
    """
    strategy = strategy or tf.distribute.get_strategy()
    return isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and _compat.in_multi_worker_mode(strategy)


def worker_index(strategy=None):
    """This worker's index in `TF_CONFIG` (0 without several workers).

    Example:

    >>> worker_index()
    0
    """
    if not is_multi_worker(strategy):
        return 0
    strategy = strategy or tf.distribute.get_strategy()
    return int(strategy.cluster_resolver.task_id or 0)


def worker_backup_dir(backup_dir, strategy=None):
    """A `BackupAndRestore` directory of this worker's own.

    `keras.callbacks.BackupAndRestore` (Keras 3) has every worker write the
    same `latest.weights.h5` and `training_metadata.json` and delete the
    directory at the end of training; on a file system the workers share,
    they would overwrite (or delete) each other's files. Every worker must
    still save, since saving reads distributed variables collectively, and
    every worker must restore. All workers hold the same state, so giving
    each one a directory of its own is enough: `backup_dir` itself for a
    single worker, `backup_dir/worker_<index>` with several workers.

    Args:
        backup_dir: the directory to pass to `BackupAndRestore` otherwise.
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.

    Example:

    >>> worker_backup_dir("/tmp/backup")
    '/tmp/backup'
    """
    if not is_multi_worker(strategy):
        return backup_dir
    return os.path.join(backup_dir, f"worker_{worker_index(strategy)}")


# Keras 3.15's TensorFlow trainer fails under MultiWorkerMirroredStrategy
# (MWMS) with several workers, at two points (keras-team/keras#20585):
#
# 1. The symbolic build. Before training, `fit` and `evaluate` take the first
#    batch of the distributed dataset and, when it holds PerReplica values,
#    call `strategy.reduce("MEAN", batch, axis=None)` on the whole (x, y,
#    sample_weight) structure, only to read its shapes and dtypes
#    (`TensorFlowTrainer._maybe_symbolic_build`). MirroredStrategy's
#    `reduce` maps over the structure; MWMS's (CollectiveAllReduceExtended.
#    _reduce_to) takes a single value and fails on the tuple:
#        ValueError: Attempt to convert a value (PerReplica:{ 0: <tf.Tensor:
#        shape=(8, 8, 8, 1) ...> }) with an unsupported type (<class
#        'tensorflow.python.distribute.values.PerReplica'>) to a Tensor.
#    Mapping the reduce over the structure would run, but would all-reduce
#    the data itself (integer labels included) across the network only to
#    learn shapes.
#    Fix (`symbolic_build`): build from this worker's first local replica's
#    batch. It has the per-replica shape and the dtypes the reduce would have
#    given, and needs no communication.
#
# 2. The logs. After each step, `reduce_per_replica(..., "auto")` reduces
#    every log with `strategy.reduce("MEAN", v, axis=0)` when the strategy is
#    MWMS in multi-worker mode. `axis=0` means "average along dimension 0 as
#    well as across replicas", which is invalid for the scalar losses and
#    metrics that `train_step` returns (and would average a vector log along
#    its own first dimension):
#        ValueError: Invalid reduction dimension 0 for input with 0
#        dimensions. for '{{node Sum_3}} = Sum[T=DT_FLOAT, ...]' with input
#        shapes: [], [] and with computed input tensors: input[1] = <0>.
#    Fix (`multi_worker_step`): in exactly that case, the step function gives
#    every log a new leading axis of length 1, so Keras's axis-0 reduce
#    averages over the replicas only and returns the log's own shape: the
#    reduction with `axis=None` that a log needs. Metrics are synchronised on
#    write (their variables are mirrored with SUM aggregation), so every
#    replica's value is already the global one and the mean changes nothing.
#
# Both fixes are wired into `keras_vid.Distiller` by two small overrides
# (`_maybe_symbolic_build` and `_make_function`). Neither touches training
# itself: gradients are all-reduced by the optimizer as before. With both,
# plain Keras models would train too. Not fixed here: `steps_per_execution`
# > 1, where Keras's `tf.while_loop` over steps fails under MWMS (CPU, ring
# collectives) with "You must feed a value for placeholder tensor
# 'while/body/.../while/cond/Placeholder' with dtype int32", also with both
# fixes applied to a plain `keras.Model`.


def _local_value(value, strategy):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def local_batch(data, strategy=None):
    """The first local replica's part of a distributed batch.

    Replaces each `tf.distribute.DistributedValues` in `data` with its first
    local value; plain tensors pass through.

    Args:
        data: a structure of tensors or `DistributedValues`.
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.

    Example:

    >>> [int(t) for t in local_batch((tf.constant(1), tf.constant(2)))]
    [1, 2]
    """
    strategy = strategy or tf.distribute.get_strategy()
    return keras.tree.map_structure(lambda v: _local_value(v, strategy), data)


def symbolic_build(model, iterator=None, data_batch=None):
    """`Model._maybe_symbolic_build` that works on several workers.

    Same as Keras 3.15's `TensorFlowTrainer._maybe_symbolic_build`, except
    that it builds the model's metric, loss and optimizer state from the
    first local replica's batch (`local_batch`) instead of a cross-replica
    `strategy.reduce`, which fails under MultiWorkerMirroredStrategy (see the
    comment above). Only shapes and dtypes are used, so on one machine the
    result is the same as Keras's.

    Args:
        model: a TensorFlow-backend `keras.Model`.
        iterator: the `fit`/`evaluate` epoch iterator, or `None`.
        data_batch: a batch to build from when `iterator` is `None`.

    Example:

    ```python
    class MyModel(keras.Model):
        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            keras_vid.distribute.symbolic_build(self, iterator, data_batch)
    ```
    """
    strategy = _compat.distribute_strategy(model)
    if strategy is None:
        # As in Keras: without a strategy, building waits for the first trace.
        return
    if iterator is not None:
        # The epoch iterator yields (begin, end, distributed iterator).
        for _, _, it in iterator:
            data_batch = local_batch(next(it), strategy)
            break
    with strategy.scope():
        _compat.symbolic_build(model, data_batch=data_batch)


def _add_replica_axis(value):
    if tf.is_tensor(value) and not isinstance(value, tf.SparseTensor):
        return tf.expand_dims(value, 0)
    return value


def multi_worker_step(step_function, model=None):
    """Wraps a train or test step so Keras can reduce its logs on many workers.

    Under MultiWorkerMirroredStrategy with several workers, Keras 3.15
    reduces each log with `strategy.reduce("MEAN", v, axis=0)`, which fails
    on scalars (see the comment above). The wrapped step returns every
    tensor log with a new leading axis of length 1, so that reduce averages
    over the replicas alone and gives back the log's own shape. In any other
    setting it returns the step function unchanged.

    Args:
        step_function: `model.train_step` or `model.test_step`.
        model: the model, whose `distribute_strategy` decides. Defaults to
            the current strategy, read when the step is traced.

    Returns:
        A step function for `TensorFlowTrainer._make_function`.

    Example:

    ```python
    class MyModel(keras.Model):
        def _make_function(self, step_function):
            return super()._make_function(
                keras_vid.distribute.multi_worker_step(step_function, self)
            )
    ```
    """

    def step(data):
        logs = step_function(data)
        strategy = model.distribute_strategy if model is not None else None
        if not is_multi_worker(strategy):
            return logs
        return keras.tree.map_structure(_add_replica_axis, logs)

    return step
