"""Hyperparameter search for VID with KerasTuner.

`VIDHyperModel` builds a compiled `keras_vid.VIDDistiller` from a
`keras_tuner.HyperParameters`, so any KerasTuner tuner searches VID's
hyperparameters; `best_student` returns (and saves) the best trial's student
alone, and `keras_vid.reporting.write_trials` reports every trial.

A hyperparameter that sets a method has its `keras_vid.methods.DEFAULTS`
key for a name, so a trial's values of those are overrides of
`methods.build_distiller` and `recipes/distill.py --overrides` as they are:

| name                | default search                   | value when not searched  |
|---------------------|----------------------------------|--------------------------|
| `vid_i_weight`      | 0.1 .. 100, log                  | -                        |
| `vid_init_variance` | 0.2 .. 10, log                   | -                        |
| `learning_rate`     | 0.005 .. 0.2, log                | -                        |
| `use_pair_<i>`      | True / False, per candidate pair | True (every pair used)   |
| `use_kd`            | True / False                     | -                        |
| `kd_weight`         | fixed                            | 1.0 (`methods.DEFAULTS`) |
| `kd_temperature`    | fixed                            | 4.0 (`methods.DEFAULTS`) |

`use_pair_<i>` exists with several candidate pairs and `search_pairs=True`;
`kd_weight` and `kd_temperature` are active only in trials with `use_kd=True`.
The hypermodel declares this space once, in KerasTuner's own terms (`hp.Float`,
`hp.Choice`, `hp.Boolean`, `hp.Fixed`, a conditional scope for KD), changed by
`search_space=` and `fixed=`. A value fixed in the `HyperParameters` given to a
tuner (`hyperparameters=`) wins: KerasTuner keeps a name's first declaration.

`BayesianOptimization` needs scipy and scikit-learn. KerasTuner 1.4 imports
tensorboard in every trial; this module's tuners (what `make_tuner` returns)
need it only for a `keras.callbacks.TensorBoard` callback.
"""

import inspect
import math
import os
import warnings
from contextlib import nullcontext

import keras
import numpy as np

from keras_vid import _compat, experiment
from keras_vid._tf import require
from keras_vid.callbacks import NonFiniteLossError, TerminateOnNonFinite, save_atomic
from keras_vid.distiller import EPS, VIDDistiller
from keras_vid.errors import unknown_name
from keras_vid.methods import DEFAULTS
from keras_vid.transfer.kd import KDTerm

require("keras_vid.tuning")  # trials are fed tf.data (experiment.load_search_data)
try:
    import keras_tuner as kt
    from keras_tuner.engine.hyperparameters import Fixed, Float
except ImportError:
    raise ImportError(
        "keras_vid.tuning needs keras-tuner, which is not installed. Install it "
        "with `pip install 'keras-vid[tuner]'`."
    ) from None


DEFAULT_SEARCH_SPACE = {
    "vid_i_weight": (0.1, 100.0, "log"),
    "vid_init_variance": (0.2, 10.0, "log"),
    "learning_rate": (0.005, 0.2, "log"),
    "use_kd": True,
}
"""The ranges searched unless overridden; `use_pair_<i>` are added per pair.

A range is `(low, high)` or `(low, high, sampling)` with sampling `"linear"`,
`"log"` or `"reverse_log"`; a list is a choice between values; `True` searches
a boolean.
"""

FIXED_DEFAULTS = {k: DEFAULTS[k][0] for k in ("kd_weight", "kd_temperature")}
"""Values of the hyperparameters that are not searched unless asked."""

# KerasTuner's `default=` of each name (a pair's: True) is the library's
# untuned recipe, so a tuner that starts from the defaults starts from it.
_DEFAULTS = {
    **{k: DEFAULTS[k][0] for k in ("vid_i_weight", "vid_init_variance")},
    "learning_rate": 0.05,
    "use_kd": False,
    **FIXED_DEFAULTS,
}
# The names before they became methods.DEFAULTS keys; no alias, but a pointer.
_RENAMED = {"vid_weight": "vid_i_weight", "init_variance": "vid_init_variance"}
TUNERS = ("random", "bayesian", "hyperband")


def _is_number(v):
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool)


def _is_boolean(name):
    return name == "use_kd" or name.startswith("use_pair_")


def _fix(hp, name, value):
    """Declares `fixed[name]` on `hp` as `hp.Fixed`, after checking it."""
    if _is_boolean(name):
        ok, want = isinstance(value, (bool, np.bool_)), "True or False"
    else:
        ok = _is_number(value) and math.isfinite(value) and value > 0
        want = "a finite number > 0"
    if not ok:
        raise ValueError(f"fixed[{name!r}] must be {want}. Received: {value!r}.")
    return hp.Fixed(name, bool(value) if _is_boolean(name) else float(value))


def _declare(hp, name, spec):
    """Declares `search_space[name]` on `hp`, after checking it."""
    # JSON (recipes/tune.py --search_space) has no tuples: ranges come as dicts.
    keys = set(spec) if isinstance(spec, dict) else None
    if keys == {"values"}:
        spec = list(spec["values"])
    elif keys and {"min", "max"} <= keys <= {"min", "max", "sampling"}:
        spec = (spec["min"], spec["max"], spec.get("sampling", "linear"))
    default = _DEFAULTS.get(name, True)
    if _is_boolean(name):
        if spec is True or (isinstance(spec, list) and set(spec) == {False, True}):
            return hp.Boolean(name, default=default)
        raise ValueError(
            f"{name!r} is a boolean: give search_space[{name!r}]=True to search "
            f"it, or fix it with fixed={{{name!r}: True or False}}. Received: {spec!r}."
        )
    if isinstance(spec, list) and spec and all(map(_is_number, spec)):
        values = [float(v) for v in spec]
        return hp.Choice(name, values, default=default if default in values else None)
    if not (
        isinstance(spec, tuple)
        and len(spec) in (2, 3)
        and all(map(_is_number, spec[:2]))
    ):
        raise ValueError(
            f"search_space[{name!r}] must be a range (low, high[, sampling]) or "
            "{'min', 'max', 'sampling'}, or a non-empty list of numbers to choose "
            f"from or {{'values': [...]}}. Received: {spec!r}."
        )
    low, high, sampling = float(spec[0]), float(spec[1]), (*spec[2:], "linear")[0]
    # KerasTuner checks the sampling's name; these say what to do instead.
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        why = (
            "must be a range (low, high) with finite low < high (to fix the value "
            f"instead, pass fixed={{{name!r}: value}})"
        )
    elif sampling in ("log", "reverse_log") and low <= 0:
        why = "samples on a log scale, so low must be > 0"
    else:
        default = default if low <= default <= high else None
        return hp.Float(name, low, high, sampling=sampling, default=default)
    raise ValueError(f"search_space[{name!r}] {why}. Received: {spec!r}.")


def _check_pairs(candidate_pairs):
    pairs = [
        tuple(p) if isinstance(p, (tuple, list)) else p for p in candidate_pairs or ()
    ]
    for p in pairs:
        # A LayerPair's regressor layer would be shared, trained weights and
        # all, by every trial: only names are safe to reuse across builds.
        if not (isinstance(p, tuple) and len(p) == 2):
            raise ValueError(
                "Each candidate pair must be a (teacher layer, student layer) "
                f"tuple of names. Received: {p!r}."
            )
    if not pairs:
        raise ValueError(
            "`candidate_pairs` is empty. Give at least one (teacher layer, student "
            "layer) pair, e.g. [('stage2', 'stage2'), ('stage3', 'stage3')]."
        )
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"`candidate_pairs` lists a pair twice: {pairs}.")
    return pairs


def _fresh(obj):
    # Metric (and loss) objects hold state; a copy per trial keeps one trial's
    # variables out of the next and creates them in the strategy's scope.
    if isinstance(obj, keras.metrics.Metric):
        return keras.metrics.deserialize(keras.metrics.serialize(obj))
    if isinstance(obj, keras.losses.Loss):
        return keras.losses.deserialize(keras.losses.serialize(obj))
    return obj


def _takes_argument(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        and p.default is p.empty
        for p in params
    )


class _ScheduledLearningRate(keras.callbacks.Callback):
    # The optimizer is built in `build()`, before the run's length is known:
    # the schedule spans `epochs` (default: the run's) of Keras's `steps` per
    # epoch, stepped by epoch when the data has no known length.
    def __init__(self, kind, learning_rate, epochs):
        super().__init__()
        self.kind, self.learning_rate, self.epochs = kind, learning_rate, epochs

    def on_train_begin(self, logs=None):
        self.steps = self.params.get("steps")
        total = (self.epochs or self.params["epochs"]) * (self.steps or 1)
        self.schedule = experiment.lr_schedule(self.kind, self.learning_rate, total)

    def _set(self, step):
        self.model.optimizer.learning_rate = float(self.schedule(step))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch  # absolute: Hyperband resumes at `initial_epoch`
        if not self.steps:
            self._set(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.steps:
            self._set(self.epoch * self.steps + batch)


class VIDHyperModel(kt.HyperModel):
    """Builds a compiled `VIDDistiller` from a set of hyperparameters.

    Every build loads the teacher afresh (KerasTuner clears the session
    before each build and builds in the tuner's `distribution_strategy`
    scope, so the teacher is mirrored with the student), builds a new student
    and compiles. `fit()` schedules the learning rate over the run and fails
    the trial (`keras_tuner.errors.FailedTrialError`) when a loss goes
    non-finite, so the search goes on. A trial that switches every pair off
    gets the last pair not fixed off, recorded in the trial. The search space
    (module docstring) is `self.hyperparameters`, checked at construction.

    Args:
        teacher: a path to the trained teacher's `.keras` file (loaded with
            `safe_mode=True` in every build), or a callable returning it.
        student: a callable returning a new student; one that takes an
            argument gets the `HyperParameters` (to search the architecture).
        candidate_pairs: `(teacher layer, student layer)` name tuples; with
            several and `search_pairs=True` (the default), each gets a
            `use_pair_<i>`; otherwise every pair is used.
        search_space: `{name: spec}` over `DEFAULT_SEARCH_SPACE`: `(low,
            high[, sampling])` or `{"min", "max", "sampling"}`, a list or
            `{"values": [...]}` to choose from, `True` for a boolean.
        fixed: `{name: value}` declared `hp.Fixed`, e.g.
            `{"vid_init_variance": 1.0, "use_kd": False}`.
        loss, metrics: the task's (copied per trial; `metrics` may be a
            callable). Default: `SparseCategoricalCrossentropy(from_logits=
            True)` and `["accuracy"]`.
        optimizer: `learning_rate -> Optimizer`; defaults to the recipes'
            `keras_vid.experiment.sgd` (Nesterov, norm clip 20).
        lr_schedule: `"cosine"`, `"step"` or `"constant"`
            (`keras_vid.experiment.lr_schedule`) over `epochs` (default: each
            `fit`'s; for Hyperband pass its `max_epochs`).
        eps, reduction: VID's variance floor and `"mean"` or `"sum"`.
        seed: execution `k` of a trial starts from `set_random_seed(seed +
            k)`, so trials differ by their hyperparameters alone.
        dtype_policy: built under; defaults to the global one at construction.
        compile_kwargs: more `compile` arguments (`jit_compile`, ...).

    Example:

    ```python
    hypermodel = keras_vid.tuning.VIDHyperModel(
        teacher="runs/teacher.keras",
        student=lambda: keras_vid.models.get_model("cnn-small"),
        candidate_pairs=[("stage2", "stage2"), ("stage3", "stage3")],
        search_space={"vid_i_weight": (0.5, 50.0, "log")},
        fixed={"vid_init_variance": 1.0},
    )
    tuner = keras_vid.tuning.make_tuner("random", hypermodel, max_trials=10,
                                        directory="runs/tune")
    tuner.search(train_ds, validation_data=val_ds, epochs=10)
    student = keras_vid.tuning.best_student(tuner, "runs/tune/student.keras")
    ```
    """

    def __init__(
        self,
        teacher,
        student,
        candidate_pairs,
        search_space=None,
        fixed=None,
        search_pairs=True,
        loss=None,
        metrics=("accuracy",),
        optimizer=None,
        lr_schedule="cosine",
        epochs=None,
        eps=EPS,
        reduction="mean",
        seed=None,
        dtype_policy=None,
        compile_kwargs=None,
        name="vid_hypermodel",
    ):
        super().__init__(name=name, tunable=True)
        if isinstance(teacher, (str, os.PathLike)):
            teacher = os.fspath(teacher)
            if not os.path.exists(teacher):
                raise FileNotFoundError(
                    f"No teacher at {teacher!r}. Save the trained teacher there "
                    "(teacher.save(path)) or pass a callable that returns it."
                )
        elif isinstance(teacher, keras.Model) or not callable(teacher):
            raise TypeError(
                "`teacher` must be a path to a saved `.keras` teacher or a callable "
                "that returns one: KerasTuner clears the Keras session before each "
                "trial and builds in the strategy's scope, so build() loads it. "
                f"Save a model first (teacher.save(path)). Received: {teacher!r}."
            )
        if isinstance(student, keras.Model) or not callable(student):
            raise TypeError(
                "`student` must be a callable that returns a new, untrained "
                "student (each trial trains its own), e.g. lambda: "
                f"keras_vid.models.get_model('cnn-small'). Received: {student!r}."
            )
        experiment.lr_schedule(lr_schedule, 1.0, 1)  # fails now, not in a trial
        self.teacher, self.student = teacher, student
        self.candidate_pairs = _check_pairs(candidate_pairs)
        several = search_pairs and len(self.candidate_pairs) > 1
        self.pair_names = {
            f"use_pair_{i}": p for i, p in enumerate(self.candidate_pairs) if several
        }
        self.hyperparameters = self._space(dict(search_space or {}), dict(fixed or {}))
        self._pairs(self.hyperparameters)  # at least one pair can be on
        iv = {h.name: h for h in self.hyperparameters.space}["vid_init_variance"]
        lowest = iv.min_value if isinstance(iv, Float) else min(iv.values)
        if not lowest > eps:
            # Otherwise a trial would fail inside the search, not here.
            raise ValueError(
                "Every `vid_init_variance` the search can try must exceed `eps`, "
                "since sigma^2 = softplus(alpha) + eps > eps. Received: lowest "
                f"vid_init_variance {lowest!r}, eps={eps!r}. Raise the range's low "
                "end, or lower `eps`."
            )
        self.loss, self.metrics, self.lr_schedule = loss, metrics, lr_schedule
        # The recipes' optimiser, clip included: the search samples large
        # vid_i_weight values, which diverge unclipped.
        self.optimizer = optimizer or experiment.sgd
        self.epochs, self.eps, self.reduction, self.seed = epochs, eps, reduction, seed
        self.dtype_policy = dtype_policy or keras.config.dtype_policy().name
        self.compile_kwargs = dict(compile_kwargs or {})
        self._last_hp, self._execution = None, 0

    def _space(self, search_space, fixed):
        """Checks `search_space` and `fixed`; declares them on a new `hp`."""
        # In the order of earlier releases, so a seed draws the same trials.
        names = ["vid_i_weight", "vid_init_variance", "learning_rate", *self.pair_names]
        names += ["use_kd", *FIXED_DEFAULTS]
        for what, given in (("search_space", search_space), ("fixed", fixed)):
            for key in given:
                if key not in names:
                    new = _RENAMED.get(key)
                    extra = f" {key!r} is now {new!r}, its methods.DEFAULTS key."
                    raise unknown_name(f"{what} key", key, names, extra if new else "")
        if set(search_space) & set(fixed):
            raise ValueError(
                f"{sorted(set(search_space) & set(fixed))} are both in `search_space` "
                "and in `fixed`. Search a hyperparameter or fix it, not both."
            )
        fixed = {k: bool(v) if isinstance(v, np.bool_) else v for k, v in fixed.items()}
        kd_off = fixed.get("use_kd") is False
        kd_searched = sorted(set(FIXED_DEFAULTS) & set(search_space))
        if kd_off and kd_searched:
            raise ValueError(
                f"fixed={{'use_kd': False}} turns KD off, so searching {kd_searched} "
                "would have no effect. Remove one of them."
            )
        space = {**DEFAULT_SEARCH_SPACE, **dict.fromkeys(self.pair_names, True)}
        space.update(search_space)
        fixed = {**{k: v for k, v in FIXED_DEFAULTS.items() if k not in space}, **fixed}
        hp = kt.HyperParameters()
        for name in names:
            kd = name in FIXED_DEFAULTS
            if kd and kd_off:
                continue
            # KD's settings mean something only with KD on: the scope keeps
            # them out of the other trials (and the Bayesian model).
            with hp.conditional_scope("use_kd", [True]) if kd else nullcontext():
                if name in fixed:
                    _fix(hp, name, fixed[name])
                else:
                    _declare(hp, name, space[name])
        return hp

    def declare_hyperparameters(self, hp):
        """Adds the search space to `hp`, keeping the names `hp` already has.

        Example:

        ```python
        hp = keras_tuner.HyperParameters()
        hypermodel.declare_hyperparameters(hp)
        [h.name for h in hp.space]  # ['vid_i_weight', 'vid_init_variance', ...]
        ```
        """
        hp.merge(self.hyperparameters, overwrite=False)

    def _pairs(self, hp):
        if not self.pair_names:
            return list(self.candidate_pairs)
        chosen = [p for n, p in self.pair_names.items() if hp.values.get(n)]
        if chosen:
            return chosen
        declared = {h.name: h for h in hp.space}
        free = [n for n in self.pair_names if not isinstance(declared[n], Fixed)]
        if not free:
            raise ValueError(
                "`fixed` (or the tuner's `hyperparameters`) switches every candidate "
                "pair off (use_pair_* = False); VID needs at least one pair."
            )
        # The deepest searched pair by convention (pairs run input to output),
        # recorded in the trial so the table shows what was trained.
        hp.values[free[-1]] = True
        return [self.pair_names[free[-1]]]

    def _task(self):
        """`compile`'s task loss and metrics, new objects for each call."""
        loss = self.loss
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = self.metrics() if callable(self.metrics) else self.metrics
        return {"loss": _fresh(loss), "metrics": [_fresh(m) for m in metrics or []]}

    def build(self, hp):
        """Builds and compiles a `VIDDistiller` for `hp`, declaring what it lacks.

        Example:

        ```python
        hp = keras_tuner.HyperParameters()
        hp.Fixed("vid_i_weight", 2.0)
        distiller = hypermodel.build(hp)
        ```
        """
        # KerasTuner's clear_session() before each build resets the policy.
        keras.config.set_dtype_policy(self.dtype_policy)
        self.declare_hyperparameters(hp)
        values, pairs = hp.values, self._pairs(hp)
        if isinstance(self.teacher, str):
            teacher = experiment.load_teacher(self.teacher)
        else:
            teacher = self.teacher()
        if not isinstance(teacher, keras.Model):
            raise TypeError(
                f"The teacher factory must return a keras.Model. Received: {teacher!r}."
            )
        if self.seed is not None:
            # KerasTuner builds once per execution of a trial, with one `hp`.
            self._execution = self._execution + 1 if hp is self._last_hp else 0
            self._last_hp = hp
            keras.utils.set_random_seed(int(self.seed) + self._execution)
        student = self.student(hp) if _takes_argument(self.student) else self.student()
        terms = []
        if values.get("use_kd"):
            terms.append(
                KDTerm(weight=values["kd_weight"], temperature=values["kd_temperature"])
            )
        distiller = VIDDistiller(
            teacher,
            student,
            pairs=pairs,
            vid_weight=values["vid_i_weight"],
            init_variance=values["vid_init_variance"],
            eps=self.eps,
            reduction=self.reduction,
            kd_weight=None,  # KD is the `use_kd` choice, a term when on.
            terms=terms,
        )
        optimizer = self.optimizer(values["learning_rate"])
        distiller.compile(optimizer=optimizer, **self._task(), **self.compile_kwargs)
        return distiller

    def fit(self, hp, model, *args, **kwargs):
        """Trains one trial's distiller (`Model.fit`'s arguments), scheduled.

        Raises `keras_tuner.errors.FailedTrialError` when a loss goes
        non-finite.

        Example:

        ```python
        history = hypermodel.fit(hp, hypermodel.build(hp), train_ds, epochs=5)
        ```
        """
        callbacks = [TerminateOnNonFinite(), *(kwargs.pop("callbacks", None) or [])]
        if self.lr_schedule != "constant":
            lr = hp.get("learning_rate")
            callbacks.insert(
                1, _ScheduledLearningRate(self.lr_schedule, lr, self.epochs)
            )
        try:
            return model.fit(*args, callbacks=callbacks, **kwargs)
        except NonFiniteLossError as e:
            raise kt.errors.FailedTrialError(str(e)) from e


def make_objective(objective="val_accuracy", direction=None):
    """Returns a `keras_tuner.Objective` for a metric name Keras logs.

    KerasTuner infers the direction of Keras's own metrics only; this also
    minimises keras-vid's losses (`val_vid_loss`, ...) and per-term values
    (`val_vid/stage3`). `"name:min"` / `"name:max"` or `direction` set it; a
    `keras_tuner.Objective` is returned as is, a list gives a list. Note that
    `val_vid_loss` is weighted (and VID's NLL can be negative), so it is not
    comparable across `vid_i_weight` values or pair subsets: search it with
    those fixed, or use the unweighted `val_vid/<layer>`.

    Example:

    >>> make_objective("val_vid_loss").direction
    'min'
    >>> make_objective("val_accuracy").direction
    'max'
    """
    if isinstance(objective, kt.Objective):
        return objective
    if isinstance(objective, (list, tuple)):
        return [make_objective(o, direction) for o in objective]
    if not isinstance(objective, str) or not objective:
        raise ValueError(
            "`objective` must be a metric name such as 'val_accuracy' or "
            f"'val_vid_loss', or a keras_tuner.Objective. Received: {objective!r}."
        )
    name = objective
    if direction is None and objective.rsplit(":", 1)[-1] in ("min", "max"):
        name, direction = objective.rsplit(":", 1)
    base = name.removeprefix("val_")
    if direction is None and (base.endswith(("loss", "error")) or "/" in base):
        direction = "min"
    elif direction is None and (
        "accuracy" in base or base in ("acc", "auc", "precision", "recall")
    ):
        direction = "max"
    elif direction is None:
        direction = _compat.infer_metric_direction(name)
    if direction not in ("min", "max"):
        raise ValueError(
            f"Cannot tell whether to minimise or maximise {name!r}. Pass "
            f"direction='min' or 'max', or write '{name}:min'."
        )
    return kt.Objective(name, direction)


class _TensorBoardOptional:
    # Under TensorFlow, keras-tuner 1.4's Tuner.run_trial imports
    # tensorboard.plugins.hparams in every trial, to log hyperparameters to
    # TensorBoard callbacks, and so fails without the optional tensorboard
    # package even with no such callback: skip it when there is none.
    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        if any(type(c).__name__ == "TensorBoard" for c in callbacks):
            super()._configure_tensorboard_dir(callbacks, trial, execution)


class RandomSearch(_TensorBoardOptional, kt.RandomSearch):
    """`keras_tuner.RandomSearch`, needing tensorboard only for its callback.

    Example: `RandomSearch(hypermodel, objective="val_accuracy", max_trials=10)`
    """


class BayesianOptimization(_TensorBoardOptional, kt.BayesianOptimization):
    """`keras_tuner.BayesianOptimization`, tensorboard only for its callback.

    Example: `BayesianOptimization(hypermodel, "val_accuracy", max_trials=20)`
    """


class Hyperband(_TensorBoardOptional, kt.Hyperband):
    """`keras_tuner.Hyperband`, needing tensorboard only for its callback.

    Example: `Hyperband(hypermodel, objective="val_accuracy", max_epochs=27)`
    """


def make_tuner(
    kind,
    hypermodel,
    objective="val_accuracy",
    max_trials=10,
    max_epochs=None,
    project_name="vid",
    **kwargs,
):
    """Creates this module's `RandomSearch`, `BayesianOptimization` or `Hyperband`.

    `kind` is `"random"`, `"bayesian"` or `"hyperband"`; `objective` goes
    through `make_objective`. `max_trials` is for random and Bayesian search,
    `max_epochs` Hyperband's budget (default: the hypermodel's `epochs`, else
    10). `**kwargs` are the tuner's (`directory`, `seed`, `overwrite`,
    `executions_per_trial`, `distribution_strategy`, `factor`, ...).

    Example:

    ```python
    tuner = make_tuner("hyperband", hypermodel, "val_vid_loss",
                       max_epochs=27, directory="runs/tune")
    ```
    """
    if kind not in TUNERS:
        raise ValueError(f"`kind` must be one of {TUNERS}. Received: {kind!r}.")
    kwargs.update(objective=make_objective(objective), project_name=project_name)
    if kind == "hyperband":
        max_epochs = max_epochs or getattr(hypermodel, "epochs", None) or 10
        return Hyperband(hypermodel, max_epochs=max_epochs, **kwargs)
    cls = RandomSearch if kind == "random" else BayesianOptimization
    return cls(hypermodel, max_trials=max_trials, **kwargs)


def best_student(tuner, path=None, compile=True):
    """Returns the best trial's trained student; optionally saves it alone.

    The student comes from the best trial's checkpoint (its best epoch). With
    `path`, it is saved there alone (no teacher, no regressors, not compiled)
    with `keras_vid.callbacks.save_atomic`. With `compile`, it is compiled
    with the hypermodel's task loss and metrics, ready for `evaluate`.

    Example:

    ```python
    student = keras_vid.tuning.best_student(tuner, "runs/tune/student.keras")
    student.evaluate(test_ds)
    ```
    """
    if not tuner.oracle.get_best_trials(1):
        raise ValueError(
            "The tuner has no completed trial: run tuner.search(...) first, and "
            "check its log for trials that failed."
        )
    with warnings.catch_warnings():
        # The checkpoint holds the trained optimizer's variables and the fresh
        # distiller's optimizer has none yet: only the weights are wanted.
        warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
        student = tuner.get_best_models(1)[0].student
    if path:
        save_atomic(student, path)  # before compile(): loads without an optimizer
    if compile and isinstance(tuner.hypermodel, VIDHyperModel):
        strategy = tuner.distribution_strategy
        with strategy.scope() if strategy is not None else nullcontext():
            student.compile(**tuner.hypermodel._task())
    return student


__all__ = [
    "BayesianOptimization",
    "Hyperband",
    "RandomSearch",
    "DEFAULT_SEARCH_SPACE",
    "FIXED_DEFAULTS",
    "TUNERS",
    "VIDHyperModel",
    "best_student",
    "make_objective",
    "make_tuner",
]
