"""`Distiller` and `VIDDistiller`: taps in, losses out, one training loop.

`Distiller` holds a frozen teacher, a student and a list of transfer terms
(`keras_vid.transfer`). Its `train_step` runs the teacher once in inference
mode and the student once in training mode, through extractors that return
each model's outputs and taps from that single pass, and minimises

    loss = task_loss + sum_k weight_k * term_k.

`VIDDistiller` is the same class configured from `(teacher layer, student
layer)` pairs, one `VIDTerm` per pair. Baselines (KD, FitNet, AT, ...) are
other terms in the same loop, so they share its guarantees.

On TensorFlow, its own `train_step` does this (it also clips across
`tf.distribute` replicas). On JAX and PyTorch, Keras's train step calls
`call`, which keeps the student's taps from its one pass, and then
`compute_loss`, which runs the teacher and returns the same total: Keras's
contract for `compute_loss` on every backend.

Logs: `loss`; `task_loss` (the compiled loss plus the student's regularisation
losses); one `<group>_loss` per method (the weighted sum of its terms, so that
`loss = task_loss + sum of the <group>_loss`); and one `<group>/<student layer>`
per term (the term's own, unweighted value).
"""

import logging

import keras
import numpy as np
from keras import ops

from keras_vid import _compat, distribute, pairing, validation
from keras_vid._tf import BACKEND, is_dataset, tf
from keras_vid.taps import OUTPUT, TapExtractor, check_graph_model, find_layer
from keras_vid.teacher_cache import split_cached
from keras_vid.transfer.base import TransferTerm, check_weight, with_regressor
from keras_vid.transfer.dist import DISTTerm
from keras_vid.transfer.kd import KDTerm
from keras_vid.transfer.vid import REDUCTIONS, VIDTerm, check_variance

# The defaults of `VIDDistiller`, chosen on the generalisation suite's tuning
# pairs (docs/results.md, recipes/suite.py); the regressor's BatchNorm on them
# and the ResNet pair of tests/test_distiller_stability.py.
VID_WEIGHT = 30.0
VECTOR_STUDENT_WEIGHT = 1.0
EPS = 0.1
KD_WEIGHT = 1.0
REGRESSOR_BATCH_NORM = True
# The logit term beside VID: DIST for a student with feature maps, KD for a
# vector student (docs/results.md, "Round 3"). DIST with its authors' weight.
LOGITS = "auto"
LOGIT_CHOICES = ("auto", "kd", "dist", None)
DIST_WEIGHT = 2.0

logger = logging.getLogger("keras_vid")

# Keras's TensorFlow trainer runs keras-vid's own train_step and test_step;
# the JAX and PyTorch trainers run Keras's, through `call` and `compute_loss`.
_OWN_STEPS = BACKEND


@keras.saving.register_keras_serializable(package="keras_vid")
class LayerPair:
    """A (teacher layer, student layer) pair for `VIDDistiller`.

    Args:
        teacher: teacher layer name, or a path into a nested model such as
            `"backbone/stage3"`; `None` for the teacher's output (its logits).
        student: student layer name or path; `None` for the student's output.
        weight: this pair's lambda. Defaults to the distiller's `vid_weight`.
        regressor: a Keras layer or model that maps the student tap to the
            teacher tap's shape (the Gaussian's mean). Defaults to the
            regressor `keras_vid.regressors.default_regressor` picks.

    Example:

    >>> pair = LayerPair("t_stage3", "s_stage3", weight=2.0)
    >>> pair.teacher, pair.student, pair.weight
    ('t_stage3', 's_stage3', 2.0)
    """

    def __init__(self, teacher, student, weight=None, regressor=None):
        self.teacher = teacher
        self.student = student
        self.weight = None if weight is None else check_weight(weight, "pair weight")
        self.regressor = regressor

    def __repr__(self):
        return (
            f"LayerPair(teacher={self.teacher!r}, student={self.student!r}, "
            f"weight={self.weight!r})"
        )

    def get_config(self):
        return {
            "teacher": self.teacher,
            "student": self.student,
            "weight": self.weight,
            "regressor": None
            if self.regressor is None
            else keras.saving.serialize_keras_object(self.regressor),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**with_regressor(config))


class _Extractors:
    """Holds the tap extractors outside Keras's tracking.

    They share every layer with the teacher and the student, so tracking them
    would list (and save) the same weights twice.
    """

    def __init__(self, teacher, student):
        self.teacher = teacher
        self.student = student
        # `(y_pred, student taps)` of the last `call`, for `compute_loss`.
        self.kept = None


def _input_signature(model):
    return [tuple(t.shape[1:]) for t in model.inputs]


def _unique(names):
    seen = []
    for n in names:
        if n not in seen:
            seen.append(n)
    return seen


def _leading_batches(x, max_examples, chunk=256):
    """Yields input batches from the start of `x`, up to `max_examples`.

    Reads only what can be read ahead without losing data for `fit`.
    """
    seen = 0
    if is_dataset(x):
        for element in x:
            batch = element[0] if isinstance(element, (tuple, list)) else element
            yield batch
            seen += len(keras.tree.flatten(split_cached(batch)[0])[0])
            if seen >= max_examples:
                return
        return
    if isinstance(x, keras.utils.PyDataset):
        for index in range(len(x)):
            element = x[index]
            batch = element[0] if isinstance(element, (tuple, list)) else element
            yield batch
            seen += len(keras.tree.flatten(batch)[0])
            if seen >= max_examples:
                return
        return
    flat = keras.tree.flatten(x)
    if not flat or not all(
        hasattr(a, "shape") and hasattr(a, "__getitem__") for a in flat
    ):
        raise ValueError(
            "This distiller standardises its VID targets with teacher statistics "
            "measured on the first training batches, but it cannot read ahead in "
            f"data of type {type(x).__name__} without losing them. Pass a "
            "tf.data.Dataset, arrays or a keras.utils.PyDataset; or call "
            "`distiller.calibrate(some_training_images)` before `fit`; or build "
            "the distiller with `standardize=False`."
        )
    n = min(int(flat[0].shape[0]), max_examples)
    for start in range(0, n, chunk):
        yield keras.tree.map_structure(lambda a, s=start: a[s : s + chunk][: n - s], x)


def _per_example_weights(sample_weight):
    # A single array weights the terms too; a per-output structure of sample
    # weights weights the task loss alone, since terms have no output to match.
    if sample_weight is None or isinstance(sample_weight, (dict, list, tuple)):
        return None
    return ops.reshape(ops.cast(sample_weight, "float32"), (-1,))


def _labelled_mask(y):
    """Splits off the unlabelled examples, marked by the class id -1.

    Returns `(y, mask)`: the labels with each unlabelled id replaced by 0
    (a valid id, so no loss op sees -1; its loss is masked out), and a
    float32 `(batch,)` mask of the labelled examples. Labels that are not
    integer class ids (one-hot rows, regression targets, several outputs)
    have no unlabelled marker: `(y, None)`.
    """
    if y is None or isinstance(y, (dict, list, tuple)):
        return y, None
    shape = tuple(y.shape)
    if "int" not in keras.backend.standardize_dtype(y.dtype) or not (
        len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1)
    ):
        return y, None
    labelled = ops.greater_equal(y, 0)
    y = ops.where(labelled, y, ops.zeros_like(y))
    return y, ops.cast(ops.reshape(labelled, (-1,)), "float32")


def _times(mask, weights):
    return mask if weights is None else mask * weights


def _same_tensors(a, b):
    a, b = keras.tree.flatten(a), keras.tree.flatten(b)
    return len(a) == len(b) and all(u is v for u, v in zip(a, b))


@keras.saving.register_keras_serializable(package="keras_vid")
class Distiller(keras.Model):
    """Trains a student from a frozen teacher with any set of transfer terms.

    The student's task loss comes from `compile(loss=...)`; each term in
    `terms` adds `weight * term` to it. With `terms=[]` it trains the student
    alone in the same loop, the fair baseline.

    Unlabelled examples: an integer class id of -1 (`keras_vid.data.
    UNLABELED`) marks an example without a label. The task loss, the
    compiled metrics (those built on Keras's mean metrics, such as accuracy)
    and the terms that need labels (DKD) then average over the labelled
    examples of the global batch only, exactly, also under `tf.distribute`
    when a replica's shard holds none; every other term (VID, KD, DIST,
    FitNet, AT, NST) learns from every example. `keras_vid.data.
    with_unlabeled` mixes an unlabelled stream into labelled batches.

    Args:
        teacher: a trained functional or Sequential `keras.Model`. It is
            frozen and always called in inference mode.
        student: a functional or Sequential `keras.Model` with the same inputs
            (or, with `teacher_preprocessing`, the inputs that layer takes).
        terms: a list of `keras_vid.transfer.TransferTerm`.
        teacher_preprocessing: an optional Keras layer or model applied to
            each batch before the teacher only, for a teacher that expects
            another input size or scaling than the student, e.g.
            `keras.Sequential([keras.layers.Resizing(96, 96),
            keras.layers.Rescaling(2.0, offset=-1.0)])` for a
            `keras.applications` teacher fed images in [0, 1]. It runs in
            inference mode, is never trained, and is saved with the distiller.
        name: the model's name.

    Example:

    >>> import keras, numpy as np
    >>> from keras_vid.transfer.vid import VIDTerm
    >>> def net(width, prefix):
    ...     x = inp = keras.Input((8, 8, 1))
    ...     x = keras.layers.Conv2D(width, 3, padding="same", name=prefix + "conv")(x)
    ...     x = keras.layers.GlobalAveragePooling2D()(x)
    ...     return keras.Model(inp, keras.layers.Dense(3)(x))
    >>> d = Distiller(net(8, "t_"), net(4, "s_"), terms=[VIDTerm("t_conv", "s_conv")])
    >>> d.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x, y = np.random.rand(16, 8, 8, 1), np.random.randint(0, 3, 16)
    >>> _ = d.fit(x, y, epochs=1, verbose=0)

    Half of the images unlabelled: the task loss counts the other half.

    >>> y[8:] = -1
    >>> _ = d.fit(x, y, epochs=1, verbose=0)
    """

    def __init__(
        self,
        teacher,
        student,
        terms=(),
        teacher_preprocessing=None,
        name="distiller",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        check_graph_model(teacher, "teacher")
        check_graph_model(student, "student")
        self._check_inputs(teacher, student, teacher_preprocessing)
        _check_not_shared(teacher, student)
        terms = list(terms or [])
        for term in terms:
            if not isinstance(term, TransferTerm):
                raise TypeError(
                    "Each term must be a keras_vid.transfer.TransferTerm. "
                    f"Received: {term!r} of type {type(term).__name__}."
                )
        keys = [(type(t).__name__, t.teacher_layer, t.student_layer) for t in terms]
        dupes = sorted({k for k in keys if keys.count(k) > 1}, key=str)
        if dupes:
            raise ValueError(
                f"Duplicate terms: {dupes}. Each (method, teacher layer, student "
                "layer) may appear once; to weight a pair more, raise its weight."
            )
        self._freeze(teacher)
        if teacher_preprocessing is not None:
            teacher_preprocessing.trainable = False
        self.teacher = teacher
        self.student = student
        self.teacher_preprocessing = teacher_preprocessing
        self.terms = terms

        # Validate every name first, so the first error names the bad layer.
        for term in terms:
            if term.teacher_layer is not OUTPUT:
                find_layer(teacher, term.teacher_layer, "teacher")
            if term.student_layer is not OUTPUT:
                find_layer(student, term.student_layer, "student")
        t_names = _unique([t.teacher_layer for t in terms])
        s_names = _unique([t.student_layer for t in terms])
        self._extractors = _Extractors(
            TapExtractor(teacher, t_names, "teacher", include_outputs=False)
            if terms
            else None,
            TapExtractor(student, s_names, "student", include_outputs=True),
        )
        self._t_index = [t_names.index(t.teacher_layer) for t in terms]
        self._s_index = [s_names.index(t.student_layer) for t in terms]
        t_shapes = self._extractors.teacher.tap_shapes if terms else []
        s_shapes = self._extractors.student.tap_shapes
        for term, ti, si in zip(terms, self._t_index, self._s_index):
            if not term.built:
                term.build(t_shapes[ti], s_shapes[si])

        self._log_names = self._make_log_names(terms)
        self._groups = _unique([t.group for t in terms])
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.group_trackers = [
            keras.metrics.Mean(name=f"{g}_loss") for g in self._groups
        ]
        self.term_trackers = [keras.metrics.Mean(name=n) for n in self._log_names]
        # Set by `fit` when its data hold unlabelled examples (label -1).
        self._unlabeled_data = False
        self.built = True

    # ------------------------------------------------------------------ setup

    @staticmethod
    def _check_inputs(teacher, student, preprocessing=None):
        ts, ss = _input_signature(teacher), _input_signature(student)
        if preprocessing is not None:
            _check_preprocessing(preprocessing, teacher, student, ts, ss)
            return
        if ts != ss:
            raise ValueError(
                f"The teacher '{teacher.name}' and the student '{student.name}' must "
                "take the same inputs, since both see every batch. Teacher inputs "
                f"(without batch): {ts}; student inputs: {ss}. Give both models the "
                "same `keras.Input` shapes (an MLP student can start with a "
                "Flatten layer), or pass `teacher_preprocessing` (e.g. a "
                "keras.layers.Resizing) to adapt the student's inputs for the "
                "teacher."
            )

    @staticmethod
    def _freeze(teacher):
        if teacher.trainable_weights:
            logger.info(
                "Froze the teacher '%s' (%d trainable weights): it is called in "
                "inference mode and never updated.",
                teacher.name,
                len(teacher.trainable_weights),
            )
        teacher.trainable = False

    @staticmethod
    def _make_log_names(terms):
        names = [t.log_name for t in terms]
        return [
            f"{n}@{t.teacher_layer or 'output'}" if names.count(n) > 1 else n
            for n, t in zip(names, terms)
        ]

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Configures training; excludes the terms' variances from weight decay.

        Takes the arguments of `keras.Model.compile`. `loss` is the student's
        task loss, applied to the student's outputs.

        Example:

        >>> # distiller.compile(keras.optimizers.SGD(0.05, momentum=0.9,
        >>> #                                        global_clipnorm=20.0),
        >>> #                   loss=keras.losses.SparseCategoricalCrossentropy(
        >>> #                       from_logits=True), metrics=["accuracy"])
        """
        super().compile(optimizer=optimizer, loss=loss, **kwargs)
        self._exclude_variances_from_decay()

    def compile_from_config(self, config):
        # Keras skips compile() on load when it is overridden; ours only adds
        # the weight-decay exclusion, so replaying it is safe.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def _exclude_variances_from_decay(self):
        opt = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        variables = [v for term in self.terms for v in term.no_decay_variables()]
        if opt is None or not variables:
            return
        if getattr(opt, "built", False):
            raise ValueError(
                "The optimizer passed to compile() has already been built, so the "
                "VID variances cannot be excluded from its weight decay. Pass a new "
                "optimizer instance."
            )
        _compat.add_weight_decay_exclusions(opt, variables)

    # ---------------------------------------------------------------- forward

    def call(self, inputs, training=None):
        """Returns the student's outputs."""
        inputs = split_cached(inputs)[0]
        if _OWN_STEPS:
            return self.student(inputs, training=training)
        # Keras's JAX and PyTorch steps call `call`, then `compute_loss` with
        # its output: the taps of this same pass are kept for that loss, so
        # the student runs once per step.
        y_pred, taps = self._extractors.student(inputs, training=training)
        self._extractors.kept = (y_pred, taps)
        return y_pred

    def teacher_taps(self, x):
        """Returns the teacher's taps for the student's inputs `x`.

        Applies `teacher_preprocessing`, if any, then runs the teacher in
        inference mode; the taps are in the order of the teacher's tap names.
        The teacher cache and `calibrate` call it.

        Example:

        ```python
        taps = distiller.teacher_taps(images)
        ```
        """
        if self.teacher_preprocessing is not None:
            x = self.teacher_preprocessing(x, training=False)
        _, taps = self._extractors.teacher(x, training=False)
        return taps

    def _teacher_taps(self, x):
        """Returns `(inputs, teacher taps)`; taps come from the cache if given."""
        x, cached = split_cached(x)
        if self._extractors.teacher is None:
            return x, []
        if cached is None:
            cached = self.teacher_taps(x)
        return x, [ops.stop_gradient(t) for t in cached]

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        """The total loss: the task loss plus every weighted term.

        Keras's contract: the value its train step differentiates. The
        teacher runs here, in inference mode; the student's taps come from
        the `call` that gave `y_pred` (Keras's JAX and PyTorch steps), or
        from one more student pass when `y_pred` came from elsewhere. It
        updates the `task_loss` and per-term logs. Returns the per-replica
        scaled value, as Keras's `compute_loss` does.

        Example:

        ```python
        y_pred = distiller(images, training=True)
        loss = distiller.compute_loss(images, labels, y_pred)
        ```
        """
        y, labelled = _labelled_mask(y)
        x, t_taps = self._teacher_taps(x)
        kept, self._extractors.kept = self._extractors.kept, None
        if kept is not None and _same_tensors(kept[0], y_pred):
            s_taps = kept[1]
        else:
            _, s_taps = self._extractors.student(x, training=training)
        total, task, values, batch, count = self._total_loss(
            x, y, y_pred, sample_weight, t_taps, s_taps, training, labelled
        )
        # Keras's own step logs `loss` from the returned total.
        self._update_trackers(total, task, values, batch, count, log_total=False)
        return total

    def _task_loss(self, y, y_pred, sample_weight):
        """The compiled loss plus the student's own losses, replica-scaled."""
        total = ops.convert_to_tensor(0.0, "float32")
        if self._compile_loss is not None and y is not None:
            loss = self._compile_loss(y, y_pred, sample_weight)
            if loss is not None:
                total = total + ops.cast(loss, "float32")
        if _OWN_STEPS:
            extra = list(self.student.losses)
            for term in self.terms:
                extra.extend(term.losses)
        else:
            # Keras's JAX step hands the forward pass's losses (activity
            # regularisers) to the top model's `losses` only, beside the
            # weight regularisers of the student and the terms; the teacher's
            # own, if its call added any, are not the student's to minimise.
            teacher = self.teacher.losses
            extra = [
                loss for loss in self.losses if not any(loss is t for t in teacher)
            ]
        for loss in extra:
            total = total + distribute.scale_for_replicas(
                ops.sum(ops.cast(loss, "float32"))
            )
        return total

    def _total_loss(
        self, x, y, y_pred, sample_weight, t_taps, s_taps, training, labelled=None
    ):
        """Returns (scaled total, unscaled task, [unscaled term values],
        batch size, tracker weight of the task loss and the label terms).

        `labelled` is `_labelled_mask`'s mask: the task loss and the terms
        that need labels then average over the labelled examples of the
        global batch, and the other terms over all examples.
        """
        first = next(i for i in keras.tree.flatten(x) if i is not None)
        batch = ops.cast(ops.shape(first)[0], "float32")
        weights = _per_example_weights(sample_weight)
        task_weight, count, norm = sample_weight, batch, None
        if labelled is not None and (weights is not None or sample_weight is None):
            replicas = distribute.num_replicas()
            n_global = ops.sum(labelled)
            if replicas > 1:
                # The all-reduce only for data with unlabelled examples
                # (seen by `fit`): full batches need none.
                n_global = (
                    distribute.sum_across_replicas(n_global)
                    if self._unlabeled_data
                    else batch * replicas
                )
            norm = ops.maximum(n_global, 1.0)
            count = n_global / replicas
            # Keras divides a weighted task loss by the local batch size and
            # the number of replicas; these weights turn that into the mean
            # over the labelled examples of the global batch, also on a
            # replica whose shard holds none.
            task_weight = _times(labelled * (batch * replicas / norm), weights)
        task = self._task_loss(y, y_pred, task_weight)
        total = task
        values = []
        for term, ti, si in zip(self.terms, self._t_index, self._s_index):
            extra = {"labels": self._labels_for(term, y)} if term.needs_labels else {}
            per_example = term(t_taps[ti], s_taps[si], training=training, **extra)
            if term.needs_labels and norm is not None:
                value = ops.sum(per_example * _times(labelled, weights)) / norm
            else:
                if weights is not None:
                    per_example = per_example * weights
                value = distribute.scale_for_replicas(ops.sum(per_example) / batch)
            total = total + term.weight * value
            values.append(value)
        return total, task, values, batch, count

    @staticmethod
    def _labels_for(term, y):
        # Raised while the step is traced, so it names the term and the fix.
        if y is None or isinstance(y, (dict, list, tuple)):
            raise ValueError(
                f"The term {term.log_name} ({type(term).__name__}) needs the class "
                "labels, as one array of class ids or one-hot rows. Received: "
                f"y={'None' if y is None else type(y).__name__}. Pass `y` to "
                "fit/evaluate, or a dataset of (x, y) batches."
            )
        return y

    def _update_trackers(self, total, task, values, batch, count, log_total=True):
        un = distribute.unscale_for_replicas
        if log_total:
            self._loss_tracker.update_state(un(total), sample_weight=batch)
        self.task_loss_tracker.update_state(un(task), sample_weight=count)
        for term, tracker, value in zip(self.terms, self.term_trackers, values):
            weight = count if term.needs_labels else batch
            tracker.update_state(un(value), sample_weight=weight)
        for group, tracker in zip(self._groups, self.group_trackers):
            group_sum = sum(
                term.weight * un(v)
                for term, v in zip(self.terms, values)
                if term.group == group
            )
            tracker.update_state(group_sum, sample_weight=batch)

    # ------------------------------------------------------------ train/test

    def train_step(self, *args):
        if not _OWN_STEPS:
            return super().train_step(*args)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(args[0])
        y, labelled = _labelled_mask(y)
        x, t_taps = self._teacher_taps(x)
        with tf.GradientTape() as tape:
            y_pred, s_taps = self._extractors.student(x, training=True)
            total, task, values, batch, count = self._total_loss(
                x, y, y_pred, sample_weight, t_taps, s_taps, True, labelled
            )
            scaled = self.optimizer.scale_loss(total)
        variables = self.trainable_weights
        grads = tape.gradient(scaled, variables)
        distribute.apply_across_replicas(self.optimizer, grads, variables)
        self._update_trackers(total, task, values, batch, count)
        return self._metrics_of(x, y, y_pred, sample_weight, labelled)

    def test_step(self, *args):
        if not _OWN_STEPS:
            return super().test_step(*args)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(args[0])
        y, labelled = _labelled_mask(y)
        x, t_taps = self._teacher_taps(x)
        y_pred, s_taps = self._extractors.student(x, training=False)
        total, task, values, batch, count = self._total_loss(
            x, y, y_pred, sample_weight, t_taps, s_taps, False, labelled
        )
        self._update_trackers(total, task, values, batch, count)
        return self._metrics_of(x, y, y_pred, sample_weight, labelled)

    def _metrics_of(self, x, y, y_pred, sample_weight, labelled):
        # Accuracy and the other compiled metrics count labelled examples only.
        # Keras passes sample weights to `weighted_metrics` only; the other
        # compiled metrics honour a Keras mask on the predictions instead.
        weights = _per_example_weights(sample_weight)
        if labelled is not None and (weights is not None or sample_weight is None):
            sample_weight = _times(labelled, weights)
            y_pred = _compat.with_row_mask(y_pred, ops.greater(labelled, 0.5))
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates the compiled metrics on the labelled examples; returns the logs.

        Keras's JAX and PyTorch steps call it with the batch's labels, in
        which -1 marks an unlabelled example.

        Example:

        ```python
        logs = distiller.compute_metrics(images, labels, y_pred)
        ```
        """
        y, labelled = _labelled_mask(y)
        return self._metrics_of(x, y, y_pred, sample_weight, labelled)

    def fit(self, x=None, y=None, *args, **kwargs):
        """Trains the student; see `keras.Model.fit`.

        Before the first step it checks the data (`keras_vid.validation`): an
        empty dataset, images of the wrong shape for the teacher, integer
        labels out of range, or missing or soft labels for a term that needs
        labels (`needs_labels`, e.g. DKD) raise a clear error instead of
        failing inside a traced graph or training on garbage. Then, once, it
        measures the teacher statistics that standardised terms need
        (`calibrate`).
        """
        self._unlabeled_data = validation.check_fit_data(self, x, y)
        if self._uncalibrated_terms():
            self.calibrate(x)
        return super().fit(x, y, *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        """One training step on one batch; see `keras.Model.train_on_batch`.

        `fit` measures the teacher statistics of standardised terms before
        training; one batch is too few examples for that, so here they must
        have been measured first: call `calibrate` on the training images.
        """
        if self._uncalibrated_terms():
            raise ValueError(
                "This distiller standardises its VID targets with teacher "
                "statistics that `fit` measures before training, but they have "
                "not been measured yet, and one batch is too few examples. Call "
                "`distiller.calibrate(training_images)` once before "
                "`train_on_batch` (it reads up to 1024 examples), or build the "
                "distiller with `standardize=False`."
            )
        return super().train_on_batch(x, y, *args, **kwargs)

    def _uncalibrated_terms(self):
        """Indices of the standardised terms whose statistics are not set."""
        return [
            i for i, t in enumerate(self.terms) if getattr(t, "needs_calibration", 0)
        ]

    def calibrate(self, x, max_examples=1024):
        """Measures the teacher-tap statistics of standardised terms.

        `fit` calls it once, before training, on its own training data; call
        it yourself before a custom training loop. It runs the teacher in
        inference mode on up to `max_examples` examples from the start of `x`
        (or reads their cached taps) and sets each standardised `VIDTerm`'s
        per-channel mean and variance. Terms already calibrated (for example
        in a reloaded distiller) keep their statistics.

        Args:
            x: a `tf.data.Dataset` of `(x, y, ...)` batches, an array (or a
                structure of arrays) of inputs, or a `keras.utils.PyDataset`.
            max_examples: how many examples to measure.

        Raises:
            ValueError: for data it cannot read ahead, such as a Python
                generator, which would lose its first batches.

        Example:

        ```python
        distiller.calibrate(train_ds)
        ```
        """
        todo = self._uncalibrated_terms()
        if not todo:
            return
        sums = {}
        count = 0
        for batch in _leading_batches(x, max_examples):
            inputs, cached = split_cached(batch)
            if cached is None:
                cached = self.teacher_taps(inputs)
            for i in todo:
                tap = np.asarray(
                    keras.ops.convert_to_numpy(cached[self._t_index[i]]), "float64"
                )
                tap = tap.reshape(-1, tap.shape[-1])
                s1, s2, n = sums.get(i, (0.0, 0.0, 0))
                sums[i] = (s1 + tap.sum(0), s2 + np.square(tap).sum(0), n + len(tap))
            count += int(keras.tree.flatten(inputs)[0].shape[0])
        if not sums:
            raise ValueError(
                "`calibrate` found no examples in the data. Pass the training data "
                "(a non-empty dataset or array)."
            )
        for i in todo:
            s1, s2, n = sums[i]
            mean = s1 / n
            variance = np.maximum(s2 / n - np.square(mean), 0.0)
            self.terms[i].set_statistics(mean, variance)
        logger.info(
            "Calibrated %d standardised term(s) on %d teacher examples.",
            len(todo),
            count,
        )

    def predict_step(self, *args):
        if not _OWN_STEPS:
            # JAX's predict_step takes (state, data) and calls `call`.
            return super().predict_step(*args)
        x, _, _ = keras.utils.unpack_x_y_sample_weight(args[0])
        return self.student(split_cached(x)[0], training=False)

    # ------------------------------------------------ multi-worker training
    # Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy at two points
    # (keras-team/keras#20585): the symbolic build and the reduction of the
    # logs. These overrides only route both through `keras_vid.distribute`,
    # which explains the failures and holds the fixes; on one worker they
    # behave as Keras's own methods.

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if not _OWN_STEPS:
            return super()._maybe_symbolic_build(iterator, data_batch)
        # Builds from the local replica's batch instead of strategy.reduce().
        distribute.symbolic_build(self, iterator=iterator, data_batch=data_batch)

    def _make_function(self, step_function, *args, **kwargs):
        if not _OWN_STEPS:
            return super()._make_function(step_function, *args, **kwargs)
        # Gives the logs a replica axis so Keras's axis=0 reduce is valid.
        return super()._make_function(distribute.multi_worker_step(step_function, self))

    # ----------------------------------------------------------------- saving

    def export(self, filepath, format="tf_saved_model", **kwargs):
        """Exports the student alone (the teacher is not needed to serve it).

        Example:

        >>> # distiller.export("student_savedmodel")
        """
        return self.student.export(filepath, format=format, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "teacher": keras.saving.serialize_keras_object(self.teacher),
                "student": keras.saving.serialize_keras_object(self.student),
                "terms": [keras.saving.serialize_keras_object(t) for t in self.terms],
                "teacher_preprocessing": keras.saving.serialize_keras_object(
                    self.teacher_preprocessing
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student", "teacher_preprocessing"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        config["terms"] = [
            keras.saving.deserialize_keras_object(t) for t in config.get("terms", [])
        ]
        return cls(**config)


def _as_pairs(pairs):
    if isinstance(pairs, (str, LayerPair)) or pairs is None:
        pairs = [] if pairs is None else [pairs]
    out = []
    for p in pairs:
        if isinstance(p, LayerPair):
            out.append(p)
        elif isinstance(p, dict):
            out.append(LayerPair.from_config(p))
        elif isinstance(p, (tuple, list)) and len(p) == 2:
            out.append(LayerPair(p[0], p[1]))
        else:
            raise ValueError(
                "Each pair must be a (teacher layer, student layer) tuple or a "
                f"keras_vid.LayerPair. Received: {p!r}."
            )
    return out


def _auto_pairs(teacher, student, rule):
    if rule == "auto":
        rule = pairing.RULES[0]
    if rule not in pairing.RULES:
        raise ValueError(
            f"`pairs` as a string must be 'auto' or a pairing rule, one of "
            f"{pairing.RULES}. Received: pairs={rule!r}. To pair layers by name, "
            "pass a list of (teacher layer, student layer) tuples."
        )
    return pairing.suggest_pairs(teacher, student, rule=rule)


def _auto_weight(student):
    # An MLP student (no feature maps) trained at the same learning rate
    # became unstable under any extra weight in the suite's tuning (KD x2 fell
    # to 59%, VID lambda 30 diverged), while lambda 1 beat KD there.
    return VID_WEIGHT if pairing.find_stages(student) else VECTOR_STUDENT_WEIGHT


def _check_preprocessing(preprocessing, teacher, student, t_sig, s_sig):
    if not isinstance(preprocessing, keras.layers.Layer):
        raise TypeError(
            "`teacher_preprocessing` must be a Keras layer or model (for example "
            "keras.layers.Resizing, or a keras.Sequential of preprocessing "
            f"layers). Received: {preprocessing!r} of type "
            f"{type(preprocessing).__name__}."
        )
    # Traced on fresh inputs of the student's shape, so a mismatch is found
    # here and not inside the first training step.
    try:
        out = preprocessing(
            [keras.Input(shape) for shape in s_sig]
            if len(s_sig) > 1
            else keras.Input(s_sig[0])
        )
        got = [tuple(t.shape[1:]) for t in keras.tree.flatten(out)]
    except Exception as e:
        raise ValueError(
            f"`teacher_preprocessing` cannot take the student '{student.name}''s "
            f"inputs {s_sig} (without batch): {e}"
        ) from e
    if got != t_sig:
        raise ValueError(
            f"`teacher_preprocessing` maps the student '{student.name}''s inputs "
            f"{s_sig} to {got}, but the teacher '{teacher.name}' takes {t_sig} "
            "(shapes without batch). Make its output the teacher's input shape, "
            "e.g. with keras.layers.Resizing(height, width)."
        )


def _check_not_shared(teacher, student):
    # Freezing the teacher would freeze the shared layers inside the student
    # too, so the student would silently train nothing but its own layers
    # (nothing at all when both are one model).
    t_ids = {id(v) for v in teacher.weights}
    shared = [v.path for v in student.weights if id(v) in t_ids]
    if teacher is student or shared:
        what = (
            "are the same model"
            if teacher is student
            else f"share {len(shared)} weights (for example {shared[:3]})"
        )
        raise ValueError(
            f"The teacher '{teacher.name}' and the student '{student.name}' {what}. "
            "The teacher is frozen, which would freeze those layers in the student "
            "as well, so they would never train. Give the student its own "
            "weights: build a new one, or copy the shared part with "
            "`keras.models.clone_model(...)` and `set_weights(...)`."
        )


def _check_kd_outputs(teacher, student):
    t, s = teacher.outputs, student.outputs
    if len(t) != 1 or len(s) != 1 or t[0].shape[-1] != s[0].shape[-1]:
        raise ValueError(
            "The default VIDDistiller adds a term on the logits (DIST, or KD for "
            "a vector student), which needs a teacher and a student with one "
            "output each of the same number of classes. Teacher outputs: "
            f"{[tuple(o.shape) for o in t]}; student outputs: "
            f"{[tuple(o.shape) for o in s]}. For a teacher of another task "
            "(transfer learning), pass logits=None (or kd_weight=None): VID alone "
            "needs no shared classes."
        )


@keras.saving.register_keras_serializable(package="keras_vid")
class VIDDistiller(Distiller):
    """Variational information distillation: one VID term per layer pair.

    For each (teacher layer, student layer) pair it adds lambda times the
    negative log-likelihood of the teacher's activation under a Gaussian whose
    mean is a trainable regressor on the student's activation and whose
    per-channel variance is learned (see `keras_vid.transfer.vid`).

    `VIDDistiller(teacher, student)` with nothing else is the recommended
    recipe, chosen on the generalisation suite's tuning pairs and then run
    once on held-out pairs (`recipes/suite.py`, `docs/results.md`): pairs
    found from the two graphs, teacher taps standardised per channel, and
    DIST on the logits (KD for a student without feature maps). It trains
    with a plain `SGD(0.05, momentum=0.9)`, no clip.

    Where the settings are keyed by strings (`keras_vid.methods.DEFAULTS`,
    `build_distiller`'s overrides, the recipes' `--overrides`, results files,
    `keras_vid.tuning`'s hyperparameters), a keyword below goes by the key
    given with it; `DEFAULTS` holds the recipes' values, which may differ from
    the defaults here.

    Args:
        teacher: a trained functional or Sequential `keras.Model`; frozen.
        student: a functional or Sequential `keras.Model` with the same inputs.
        pairs: `"auto"` (default) pairs the models' stages by scale and their
            penultimate features (`keras_vid.suggest_pairs`; a student
            without feature maps, such as an MLP, pairs its features only);
            any rule of `keras_vid.pairing.RULES`; or a list of
            `(teacher layer, student layer)` tuples or `keras_vid.LayerPair`.
            Names may reach into nested models with a path
            (`"backbone/stage3"`); `None` stands for a model's output. The
            chosen pairs are logged with their shapes.
        vid_weight: lambda, a float or one float per pair. `"auto"` (default)
            gives 30.0 to every pair, or 1.0 when the student has no feature
            maps (an MLP: at the same learning rate any larger extra weight
            destabilised it in the tuning runs). Key: `vid_i_weight`
            (`vid_lp_weight` for VID-LP), also the tuner's.
        init_variance: the variance every channel starts at, in units of the
            teacher channel's own variance when `standardize=True`.
            Defaults to 1.0. Key: `vid_init_variance`, also the tuner's.
        eps: the variance floor, in the same units. Defaults to 0.1: it bounds
            the effective weight lambda / sigma^2 at 10 lambda. Key: `vid_eps`.
        reduction: `"mean"` (per-element mean, default) or `"sum"` (the
            paper's sum over elements). Key: `vid_reduction`.
        standardize: whether each teacher tap is standardised with per-channel
            statistics measured on the first training batches
            (`Distiller.calibrate`, run by `fit`), which makes lambda, the
            variance and `eps` independent of the teacher's activation
            scale. Defaults to True. Key: `vid_standardize`.
        logits: the term on the logits beside VID. `"auto"` (default):
            DIST (`keras_vid.transfer.DISTTerm`, its authors' weight 2,
            beta 1, gamma 1, tau 1) for a student with feature maps, KD for a
            student without (an MLP), chosen on the suite's tuning and
            rounds-1-2 pairs and checked on round 3's (`docs/results.md`).
            `"kd"`, `"dist"`, or `None` for VID alone (the paper's VID-I;
            needed when the two models predict different classes).
        kd_weight: KD's weight when KD is the logit term; `None` also turns
            the logit term off (as `logits=None`). Defaults to 1.0.
        kd_temperature: KD's temperature. Defaults to 4.0.
        regressor_batch_norm: whether the default map-to-map regressors have
            BatchNorm after their hidden 1x1 convs, which makes the Gaussian's
            mean independent of the student map's scale. Without it, a ResNet
            student's residual tap (which no BatchNorm bounds) grew until the
            loss overflowed when trained unclipped; on the tuning pairs it
            changed accuracy by +0.04 points on average (docs/results.md).
            `False` is the paper's regressor. Defaults to True. Key:
            `vid_regressor_batch_norm`.
        terms: more transfer terms to train alongside.
        name: the model's name.

    Example:

    ```python
    distiller = keras_vid.VIDDistiller(teacher, student)
    distiller.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    distiller.fit(train_ds, validation_data=val_ds, epochs=10)
    distiller.student.save("student.keras")
    ```
    """

    def __init__(
        self,
        teacher,
        student,
        pairs="auto",
        vid_weight="auto",
        init_variance=1.0,
        eps=EPS,
        reduction="mean",
        standardize=True,
        kd_weight=KD_WEIGHT,
        kd_temperature=4.0,
        regressor_batch_norm=REGRESSOR_BATCH_NORM,
        terms=(),
        logits=LOGITS,
        name="vid_distiller",
        **kwargs,
    ):
        # The graph checks come first, so a subclassed model gets their error.
        check_graph_model(teacher, "teacher")
        check_graph_model(student, "student")
        _check_not_shared(teacher, student)
        if isinstance(pairs, str):
            pairs = _auto_pairs(teacher, student, pairs)
        pairs = _as_pairs(pairs)
        if not pairs:
            raise ValueError(
                "`pairs` is empty. Give at least one (teacher layer, student layer) "
                "pair, e.g. pairs=[('t_stage3', 's_stage3')], or pairs='auto'."
            )
        seen = [(p.teacher, p.student) for p in pairs]
        dupes = sorted({k for k in seen if seen.count(k) > 1}, key=str)
        if dupes:
            raise ValueError(
                f"`pairs` holds duplicates: {dupes}. List each pair once; to weight "
                "a pair more, give it a LayerPair(..., weight=...)."
            )
        if isinstance(vid_weight, str) and vid_weight == "auto":
            vid_weight = _auto_weight(student)
        if isinstance(vid_weight, (list, tuple)):
            if len(vid_weight) != len(pairs):
                raise ValueError(
                    f"`vid_weight` has {len(vid_weight)} values for {len(pairs)} "
                    f"pairs. Give one float, or one per pair. Received: {vid_weight}."
                )
            weights = [check_weight(w, "vid_weight") for w in vid_weight]
        else:
            weights = [check_weight(vid_weight, "vid_weight")] * len(pairs)
        init_variance, eps = check_variance(init_variance, eps)
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"`reduction` must be one of {REDUCTIONS}. Received: "
                f"reduction={reduction!r}."
            )
        extra_terms = list(terms or [])
        if logits not in LOGIT_CHOICES:
            raise ValueError(
                f"`logits` must be one of {LOGIT_CHOICES}. Received: logits={logits!r}."
            )
        kd_terms = []
        if kd_weight is not None:
            kd_weight = check_weight(kd_weight, "kd_weight")
        choice = None if kd_weight is None else logits
        if choice == "auto":
            choice = "dist" if pairing.find_stages(student) else "kd"
        if choice is not None:
            _check_kd_outputs(teacher, student)
        if choice == "kd":
            kd_terms = [KDTerm(weight=kd_weight, temperature=kd_temperature)]
        elif choice == "dist":
            kd_terms = [DISTTerm(weight=DIST_WEIGHT)]
        self.pairs = pairs
        self.vid_weight = (
            list(weights) if isinstance(vid_weight, (list, tuple)) else weights[0]
        )
        self.init_variance, self.eps, self.reduction = init_variance, eps, reduction
        self.standardize = bool(standardize)
        self.kd_weight, self.kd_temperature = kd_weight, kd_temperature
        self.logits = logits
        self.regressor_batch_norm = bool(regressor_batch_norm)
        self.extra_terms = extra_terms
        vid_terms = [
            VIDTerm(
                p.teacher,
                p.student,
                weight=p.weight if p.weight is not None else w,
                init_variance=init_variance,
                eps=eps,
                reduction=reduction,
                regressor=p.regressor,
                standardize=standardize,
                regressor_batch_norm=regressor_batch_norm,
                name=f"vid_{i}",
            )
            for i, (p, w) in enumerate(zip(pairs, weights))
        ]
        super().__init__(
            teacher,
            student,
            terms=vid_terms + kd_terms + extra_terms,
            name=name,
            **kwargs,
        )
        t_shapes = self._extractors.teacher.tap_shapes
        s_shapes = self._extractors.student.tap_shapes
        logger.info(
            pairing.format_pairs(
                [
                    (p.teacher, t_shapes[ti][1:], p.student, s_shapes[si][1:])
                    for p, ti, si in zip(pairs, self._t_index, self._s_index)
                ]
            )
        )

    @property
    def vid_terms(self):
        """The `VIDTerm` of each pair, in order."""
        return self.terms[: len(self.pairs)]

    @classmethod
    def from_config(cls, config):
        # Files saved before these settings existed trained raw targets and no
        # default KD term; load them as they were trained.
        config = {
            "standardize": False,
            "kd_weight": None,
            "regressor_batch_norm": False,
            # Files from before `logits` had KD (when kd_weight was set).
            "logits": "kd",
            **config,
        }
        return super().from_config(config)

    def get_config(self):
        config = super().get_config()
        del config["terms"]
        config.update(
            {
                "pairs": [p.get_config() for p in self.pairs],
                "vid_weight": self.vid_weight,
                "init_variance": self.init_variance,
                "eps": self.eps,
                "reduction": self.reduction,
                "standardize": self.standardize,
                "kd_weight": self.kd_weight,
                "kd_temperature": self.kd_temperature,
                "logits": self.logits,
                "regressor_batch_norm": self.regressor_batch_norm,
                "terms": [
                    keras.saving.serialize_keras_object(t) for t in self.extra_terms
                ],
            }
        )
        return config
