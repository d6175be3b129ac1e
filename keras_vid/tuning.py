"""Hyperparameter search for VID with KerasTuner.

`VIDHyperModel` builds a compiled `keras_vid.VIDDistiller` from a
`keras_tuner.HyperParameters` set, so any KerasTuner tuner (`RandomSearch`,
`BayesianOptimization`, `Hyperband`) can search VID's hyperparameters. After
the search, `best_student` returns the best trial's trained student alone
(and saves it, without the teacher).

The search space, by hyperparameter name (`DEFAULT_SEARCH_SPACE`):

| name              | default search                  | value when not searched     |
|-------------------|---------------------------------|-----------------------------|
| `vid_weight`      | 0.1 .. 100, log                 | -                           |
| `init_variance`   | 0.2 .. 10, log                  | -                           |
| `learning_rate`   | 0.005 .. 0.2, log               | -                           |
| `use_pair_<i>`    | True / False, per candidate pair| True (every pair used)      |
| `use_kd`          | True / False                    | -                           |
| `kd_weight`       | fixed                           | 1.0 (`methods.DEFAULTS`)    |
| `kd_temperature`  | fixed                           | 4.0 (`methods.DEFAULTS`)    |

`use_pair_<i>` exists when there is more than one candidate pair and
`search_pairs=True`; `kd_weight` and `kd_temperature` are active only in
trials with `use_kd=True`. Override any range with `search_space=`, fix any
value with `fixed=`, or pass the tuner a `keras_tuner.HyperParameters` that
holds `hp.Fixed(...)` values: a value fixed there wins over the search space,
since the hypermodel reads every hyperparameter by these names.

Requirements: `BayesianOptimization` needs scipy and scikit-learn
(`pip install "keras-tuner[bayesian]"`). KerasTuner 1.4 also imports
tensorboard in every trial under TensorFlow; this module's `RandomSearch`,
`BayesianOptimization` and `Hyperband` (what `make_tuner` returns) skip that
import when no `keras.callbacks.TensorBoard` is passed, so tensorboard is
needed only with one.

Example:

```python
import keras_vid
from keras_vid import tuning

hypermodel = tuning.VIDHyperModel(
    teacher="runs/teacher_cnn_fashion_mnist.keras",
    student=lambda: keras_vid.models.get_model("cnn-small"),
    candidate_pairs=[("stage2", "stage2"), ("stage3", "stage3")],
    search_space={"vid_weight": (0.5, 50.0, "log")},
    fixed={"init_variance": 1.0},
    seed=0,
)
tuner = tuning.make_tuner("bayesian", hypermodel, objective="val_accuracy",
                          max_trials=20, directory="runs/tune")
tuner.search(train_ds, validation_data=val_ds, epochs=30, verbose=2)
student = tuning.best_student(tuner, "runs/tune/best_student.keras")
```
"""

import contextlib
import csv
import inspect
import math
import os
import warnings

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf
from keras_tuner.engine.hyperparameters import Boolean, Fixed

from keras_vid import _compat, experiment
from keras_vid import data as data_lib
from keras_vid.callbacks import NonFiniteLossError, TerminateOnNonFinite, save_atomic
from keras_vid.distiller import EPS, VIDDistiller
from keras_vid.errors import unknown_name
from keras_vid.methods import DEFAULTS
from keras_vid.transfer.kd import KDTerm

DEFAULT_SEARCH_SPACE = {
    "vid_weight": (0.1, 100.0, "log"),
    "init_variance": (0.2, 10.0, "log"),
    "learning_rate": (0.005, 0.2, "log"),
    "use_kd": True,
}
"""The ranges searched unless overridden; `use_pair_<i>` are added per pair.

A range is `(low, high)` or `(low, high, sampling)` with sampling `"linear"`,
`"log"` or `"reverse_log"`; a list is a choice between values; `True` searches
a boolean.
"""

FIXED_DEFAULTS = {
    "kd_weight": DEFAULTS["kd_weight"][0],
    "kd_temperature": DEFAULTS["kd_temperature"][0],
}
"""Values of the hyperparameters that are not searched unless asked."""

_DEFAULT_VALUES = {
    # The hypermodel's starting point (KerasTuner's `default=`), the library's
    # own defaults: a tuner that asks for defaults gets the untuned recipe.
    "vid_weight": DEFAULTS["vid_i_weight"][0],
    "init_variance": DEFAULTS["vid_init_variance"][0],
    "learning_rate": 0.05,
    "kd_weight": DEFAULTS["kd_weight"][0],
    "kd_temperature": DEFAULTS["kd_temperature"][0],
}

_NUMERIC = (
    "vid_weight",
    "init_variance",
    "learning_rate",
    "kd_weight",
    "kd_temperature",
)
_SAMPLINGS = ("linear", "log", "reverse_log")
TUNERS = ("random", "bayesian", "hyperband")


def _pair_name(i):
    return f"use_pair_{i}"


def _check_range(name, spec):
    """Validates one search-space entry; returns it in a canonical form."""
    boolean = name == "use_kd" or name.startswith("use_pair_")
    if isinstance(spec, dict):
        if set(spec) == {"values"}:
            spec = list(spec["values"])
        elif {"min", "max"} <= set(spec) <= {"min", "max", "sampling"}:
            spec = (spec["min"], spec["max"], spec.get("sampling", "linear"))
        else:
            raise ValueError(
                f"search_space[{name!r}] as a dict must be {{'min': ..., 'max': "
                f"..., 'sampling': ...}} or {{'values': [...]}}. Received: {spec!r}."
            )
    if boolean:
        if spec is True or (isinstance(spec, list) and set(spec) == {False, True}):
            return True
        raise ValueError(
            f"{name!r} is a boolean: give search_space[{name!r}]=True to search "
            f"it, or fix it with fixed={{{name!r}: True or False}}. Received: "
            f"{spec!r}."
        )
    if isinstance(spec, list):
        if not spec or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec
        ):
            raise ValueError(
                f"search_space[{name!r}] as a list is a choice between numbers; "
                f"it must be non-empty. Received: {spec!r}."
            )
        return [float(v) for v in spec]
    if isinstance(spec, tuple) and len(spec) in (2, 3):
        low, high = float(spec[0]), float(spec[1])
        sampling = spec[2] if len(spec) == 3 else "linear"
        if sampling not in _SAMPLINGS:
            raise ValueError(
                f"search_space[{name!r}] sampling must be one of {_SAMPLINGS}. "
                f"Received: {sampling!r}."
            )
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(
                f"search_space[{name!r}] must be a range (low, high) with finite "
                f"low < high. Received: {spec!r}. To fix the value instead, pass "
                f"fixed={{{name!r}: value}}."
            )
        if sampling != "linear" and low <= 0:
            raise ValueError(
                f"search_space[{name!r}] samples on a log scale, so low must be "
                f"> 0. Received: {spec!r}."
            )
        return (low, high, sampling)
    raise ValueError(
        f"search_space[{name!r}] must be a range tuple (low, high[, sampling]), a "
        "dict {'min', 'max', 'sampling'}, or a list of values to choose from. "
        f"Received: {spec!r}."
    )


def _check_fixed(name, value):
    boolean = name == "use_kd" or name.startswith("use_pair_")
    if boolean:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(
                f"fixed[{name!r}] must be True or False. Received: {value!r}."
            )
        return bool(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"fixed[{name!r}] must be a number. Received: {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"fixed[{name!r}] must be finite and > 0. Received: {value}.")
    return value


def _check_pairs(candidate_pairs):
    pairs = []
    for p in candidate_pairs or ():
        if isinstance(p, (tuple, list)) and len(p) == 2:
            pairs.append((p[0], p[1]))
        else:
            # A LayerPair's regressor layer would be shared, trained weights and
            # all, by every trial: only names are safe to reuse across builds.
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


def _default_optimizer(learning_rate):
    # The recipes' optimiser, clip included: the search samples large
    # vid_weight values, which diverge unclipped.
    return experiment.sgd(learning_rate)


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
    """Sets the optimizer's learning rate from a schedule of the global step.

    The optimizer is built in `build()`, before the run's length is known;
    the schedule is set here, in `fit()`, where `epochs` is known.
    """

    def __init__(self, schedule, steps_per_epoch):
        super().__init__()
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self._epoch = 0

    def _set(self, step):
        value = self.schedule(step) if callable(self.schedule) else self.schedule
        self.model.optimizer.learning_rate = float(value)

    def on_epoch_begin(self, epoch, logs=None):
        # Hyperband resumes at `initial_epoch`: the epoch index is absolute.
        self._epoch = epoch
        if self.steps_per_epoch is None:
            self._set(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.steps_per_epoch is not None:
            self._set(self._epoch * self.steps_per_epoch + batch)


def _steps_per_epoch(args, kwargs):
    if kwargs.get("steps_per_epoch"):
        return int(kwargs["steps_per_epoch"])
    x = args[0] if args else kwargs.get("x")
    if isinstance(x, tf.data.Dataset):
        n = int(x.cardinality())
        return n if n > 0 else None
    if isinstance(x, np.ndarray):
        return math.ceil(len(x) / int(kwargs.get("batch_size") or 32))
    return None


class VIDHyperModel(kt.HyperModel):
    """Builds a compiled `VIDDistiller` from a set of hyperparameters.

    Every trial loads the teacher afresh inside `build()` (KerasTuner clears
    the Keras session before each build, and builds inside the tuner's
    `distribution_strategy` scope, so the teacher's variables are mirrored
    with the student's), builds a new student, picks the layer pairs and
    compiles. `fit()` adds a learning-rate schedule over the run's epochs and
    fails the trial (`keras_tuner.errors.FailedTrialError`) when a loss goes
    non-finite, so a diverged setting is recorded as FAILED and the search
    goes on.

    Hyperparameter names and the default space are in the module docstring
    and `DEFAULT_SEARCH_SPACE`. When a trial switches every pair off, the
    last pair that is not fixed is switched back on, and the trial's recorded
    `use_pair_<i>` says so: the table shows what was trained.

    Args:
        teacher: the trained teacher: a path to a `.keras` file, loaded with
            `keras.saving.load_model(path, safe_mode=True, compile=False)`
            once per build, or a callable that returns the teacher. A model
            instance is refused: it would live outside the strategy scope and
            across `clear_session`.
        student: a callable that returns a new, untrained student. If it
            takes an argument, it is called with the `HyperParameters`, so the
            architecture can be searched too.
        candidate_pairs: `(teacher layer, student layer)` name tuples. With
            more than one and `search_pairs=True`, each gets a boolean
            `use_pair_<i>` (in this order).
        search_space: a dict `{name: spec}` that overrides or adds to
            `DEFAULT_SEARCH_SPACE`: a range `(low, high)` or `(low, high,
            sampling)` (also as `{"min", "max", "sampling"}`), a list of values
            to choose from (also as `{"values": [...]}`), or `True` for a
            boolean. Adding `kd_weight` or `kd_temperature` searches them.
        fixed: a dict `{name: value}` of values not searched (recorded as
            `hp.Fixed`), for example `{"init_variance": 1.0, "use_kd": False}`.
            A name may not be both in `search_space` and `fixed`.
        search_pairs: whether to search which candidate pairs to use.
            Defaults to True; with False every pair is used.
        loss: the student's task loss. Defaults to
            `SparseCategoricalCrossentropy(from_logits=True)`.
        metrics: metric names or objects (copied per trial), or a callable
            that returns them. Defaults to `["accuracy"]`.
        optimizer: a callable `learning_rate -> keras.optimizers.Optimizer`.
            Defaults to SGD with Nesterov momentum 0.9 and a global
            gradient-norm clip of 20, as the recipes.
        lr_schedule: `"cosine"` (default), `"step"` or `"constant"`, as
            `keras_vid.experiment.lr_schedule`, over the steps of `epochs`.
        epochs: the epochs the schedule spans. Defaults to the `epochs` each
            `fit` is given; for Hyperband pass its `max_epochs`.
        eps: VID's variance floor. Defaults to `VIDDistiller`'s (0.1, in the
            units of its standardised targets).
        reduction: VID's `"mean"` (default) or `"sum"`.
        seed: if set, every trial's first execution starts from the same
            student and regressor weights (`keras.utils.set_random_seed(seed)`
            before the student is built), so trials differ by their
            hyperparameters alone; execution `k` of a trial uses `seed + k`,
            so `executions_per_trial` averages over initialisations.
        dtype_policy: the Keras dtype policy to build under, for example
            `"mixed_bfloat16"`. Defaults to the global policy when the
            hypermodel is created; `clear_session()` resets the global
            policy, so `build()` sets it again.
        compile_kwargs: more arguments for `compile` (`jit_compile`,
            `steps_per_execution`, ...).
        name: the hypermodel's name.

    Example:

    ```python
    hypermodel = keras_vid.tuning.VIDHyperModel(
        teacher="runs/teacher.keras",
        student=lambda: keras_vid.models.get_model("cnn-small"),
        candidate_pairs=[("stage1", "stage1"), ("stage2", "stage2"),
                         ("stage3", "stage3")],
        search_space={"vid_weight": (0.5, 50.0, "log")},
        fixed={"init_variance": 1.0},
    )
    # keras_tuner.RandomSearch takes the same arguments (and needs
    # tensorboard installed); make_tuner() picks one by name.
    tuner = keras_vid.tuning.RandomSearch(
        hypermodel, objective="val_accuracy", max_trials=10,
        directory="runs/tune", project_name="vid")
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
        if isinstance(teacher, keras.Model):
            raise TypeError(
                "`teacher` must be a path to a saved `.keras` teacher or a "
                "callable that returns one, not a model: KerasTuner clears the "
                "Keras session before each trial and builds inside the "
                "distribution strategy's scope, so the teacher is loaded in "
                "build(). Save it first (teacher.save('teacher.keras')) and pass "
                "the path."
            )
        if isinstance(teacher, (str, os.PathLike)):
            teacher = os.fspath(teacher)
            if not os.path.exists(teacher):
                raise FileNotFoundError(
                    f"No teacher at {teacher!r}. Save the trained teacher there "
                    "(teacher.save(path)) or pass a callable that returns it."
                )
        elif not callable(teacher):
            raise TypeError(
                "`teacher` must be a path to a `.keras` file or a callable. "
                f"Received: {teacher!r}."
            )
        if isinstance(student, keras.Model) or not callable(student):
            raise TypeError(
                "`student` must be a callable that returns a new, untrained "
                "student (each trial trains its own), e.g. "
                f"lambda: keras_vid.models.get_model('cnn-small'). Received: "
                f"{student!r}."
            )
        if lr_schedule not in experiment.SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {experiment.SCHEDULES}. Received: "
                f"{lr_schedule!r}."
            )
        self.teacher = teacher
        self.student = student
        self.candidate_pairs = _check_pairs(candidate_pairs)
        self.search_pairs = bool(search_pairs) and len(self.candidate_pairs) > 1
        self.pair_names = (
            {_pair_name(i): p for i, p in enumerate(self.candidate_pairs)}
            if self.search_pairs
            else {}
        )
        self.search_space, self.fixed = self._resolve_space(search_space, fixed)
        self.loss = loss
        self.metrics = metrics
        self.optimizer = optimizer or _default_optimizer
        self.lr_schedule = lr_schedule
        self.epochs = epochs
        self.eps = eps
        if "init_variance" in self.fixed:
            lowest = self.fixed["init_variance"]
        else:
            spec = self.search_space["init_variance"]
            lowest = min(spec) if isinstance(spec, list) else spec[0]
        if not lowest > eps:
            # Otherwise a trial would fail inside the search, not here.
            raise ValueError(
                "Every `init_variance` the search can try must exceed `eps`, since "
                f"sigma^2 = softplus(alpha) + eps > eps. Received: lowest "
                f"init_variance {lowest!r}, eps={eps!r}. Raise the range's low "
                "end, or lower `eps`."
            )
        self.reduction = reduction
        self.seed = seed
        self.dtype_policy = (
            keras.config.dtype_policy().name if dtype_policy is None else dtype_policy
        )
        self.compile_kwargs = dict(compile_kwargs or {})
        self._last_hp = None
        self._execution = 0

    # --------------------------------------------------------------- space

    def _resolve_space(self, search_space, fixed):
        valid = [*_NUMERIC, "use_kd", *self.pair_names]
        search_space = dict(search_space or {})
        fixed = dict(fixed or {})
        for what, d in (("search_space key", search_space), ("fixed key", fixed)):
            for key in d:
                if key not in valid:
                    raise unknown_name(what, key, valid)
        both = sorted(set(search_space) & set(fixed))
        if both:
            raise ValueError(
                f"{both} are both in `search_space` and in `fixed`. Search a "
                "hyperparameter or fix it, not both."
            )
        space = dict(DEFAULT_SEARCH_SPACE)
        space.update({n: True for n in self.pair_names})
        space.update(search_space)
        for key in fixed:
            space.pop(key, None)
        fixed = {k: _check_fixed(k, v) for k, v in fixed.items()}
        for key, value in FIXED_DEFAULTS.items():
            if key not in space and key not in fixed:
                fixed[key] = value
        space = {k: _check_range(k, v) for k, v in space.items()}
        kd_searched = sorted({"kd_weight", "kd_temperature"} & set(search_space))
        if fixed.get("use_kd") is False and kd_searched:
            raise ValueError(
                f"fixed={{'use_kd': False}} turns KD off, so searching {kd_searched} "
                "would have no effect. Remove one of them."
            )
        if self.pair_names and all(fixed.get(n) is False for n in self.pair_names):
            raise ValueError(
                "`fixed` switches every candidate pair off; VID needs at least "
                "one pair."
            )
        return space, fixed

    def _value(self, hp, name, default=None):
        if name in self.fixed:
            return hp.Fixed(name, self.fixed[name])
        spec = self.search_space[name]
        if spec is True:
            return hp.Boolean(name, default=True if default is None else default)
        if isinstance(spec, list):
            d = _DEFAULT_VALUES.get(name)
            return hp.Choice(name, spec, default=d if d in spec else None)
        low, high, sampling = spec
        d = _DEFAULT_VALUES.get(name)
        return hp.Float(
            name,
            low,
            high,
            sampling=sampling,
            default=d if d is not None and low <= d <= high else None,
        )

    def _values(self, hp):
        """Declares every hyperparameter on `hp`; returns this trial's values."""
        values = {n: self._value(hp, n) for n in _NUMERIC[:3]}
        values["pairs"] = [
            bool(self._value(hp, n, default=True)) for n in self.pair_names
        ] or [True] * len(self.candidate_pairs)
        use_kd = self._value(hp, "use_kd", default=False)
        values["use_kd"] = bool(use_kd)
        if self.fixed.get("use_kd") is not False:
            # KD's settings only mean something with KD on: a conditional scope
            # keeps them out of the trials (and the Bayesian model) without it.
            scope = (
                hp.conditional_scope("use_kd", [True])
                if "use_kd" not in self.fixed
                else contextlib.nullcontext()
            )
            with scope:
                values["kd_weight"] = self._value(hp, "kd_weight")
                values["kd_temperature"] = self._value(hp, "kd_temperature")
        return values

    def declare_hyperparameters(self, hp):
        """Registers the search space on `hp` without building a model.

        Args:
            hp: a `keras_tuner.HyperParameters`.

        Returns:
            None.

        Example:

        ```python
        hp = keras_tuner.HyperParameters()
        hypermodel.declare_hyperparameters(hp)
        [h.name for h in hp.space]  # ['vid_weight', 'init_variance', ...]
        ```
        """
        self._values(hp)

    # --------------------------------------------------------------- build

    def _pairs(self, hp, flags):
        chosen = [p for p, on in zip(self.candidate_pairs, flags) if on]
        if chosen:
            return chosen
        space = {h.name: h for h in hp.space}
        free = [
            i
            for i, n in enumerate(self.pair_names)
            if not isinstance(space.get(n), Fixed)
        ]
        if not free:
            raise ValueError(
                "Every candidate pair is fixed off (use_pair_* = False); VID "
                "needs at least one pair."
            )
        # The deepest searched pair by convention (pairs run input to output),
        # recorded in the trial so the table shows what was trained.
        hp.values[_pair_name(free[-1])] = True
        return [self.candidate_pairs[free[-1]]]

    def _load_teacher(self):
        if isinstance(self.teacher, str):
            return experiment.load_teacher(self.teacher)
        teacher = self.teacher()
        if not isinstance(teacher, keras.Model):
            raise TypeError(
                f"The teacher factory must return a keras.Model. Received: {teacher!r}."
            )
        return teacher

    def build(self, hp):
        """Builds and compiles a `VIDDistiller` for the values in `hp`.

        Args:
            hp: a `keras_tuner.HyperParameters`; missing names are added with
                their search range (KerasTuner's usual behaviour).

        Returns:
            A compiled `keras_vid.VIDDistiller`.

        Example:

        ```python
        hp = keras_tuner.HyperParameters()
        hp.Fixed("vid_weight", 2.0)
        distiller = hypermodel.build(hp)
        ```
        """
        # KerasTuner's clear_session() before each build resets the policy.
        keras.config.set_dtype_policy(self.dtype_policy)
        values = self._values(hp)
        pairs = self._pairs(hp, values["pairs"])
        teacher = self._load_teacher()
        if self.seed is not None:
            if hp is self._last_hp:
                self._execution += 1
            else:
                self._last_hp, self._execution = hp, 0
            keras.utils.set_random_seed(int(self.seed) + self._execution)
        student = self.student(hp) if _takes_argument(self.student) else self.student()
        terms = []
        if values["use_kd"]:
            terms.append(
                KDTerm(weight=values["kd_weight"], temperature=values["kd_temperature"])
            )
        distiller = VIDDistiller(
            teacher,
            student,
            pairs=pairs,
            vid_weight=values["vid_weight"],
            init_variance=values["init_variance"],
            eps=self.eps,
            reduction=self.reduction,
            # KD is a searched choice (`use_kd`), added above as a term.
            kd_weight=None,
            terms=terms,
        )
        metrics = self.metrics() if callable(self.metrics) else self.metrics
        distiller.compile(
            optimizer=self.optimizer(values["learning_rate"]),
            loss=_fresh(self.loss)
            if self.loss is not None
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[_fresh(m) for m in (metrics or [])],
            **self.compile_kwargs,
        )
        return distiller

    # ----------------------------------------------------------------- fit

    def fit(self, hp, model, *args, **kwargs):
        """Trains one trial's distiller, with the learning-rate schedule.

        Takes `Model.fit`'s arguments (as `tuner.search` passes them).
        Hyperband passes `epochs` and `initial_epoch`; the schedule follows
        the absolute epoch.

        Args:
            hp: the trial's `keras_tuner.HyperParameters`.
            model: the distiller `build()` returned.
            *args: passed to `model.fit`.
            **kwargs: passed to `model.fit`.

        Returns:
            The `keras.callbacks.History`.

        Raises:
            keras_tuner.errors.FailedTrialError: when a loss goes non-finite.

        Example:

        ```python
        history = hypermodel.fit(hp, hypermodel.build(hp), train_ds,
                                 validation_data=val_ds, epochs=5)
        ```
        """
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if self.lr_schedule != "constant":
            epochs = self.epochs or kwargs.get("epochs", 1)
            steps = _steps_per_epoch(args, kwargs)
            total = epochs * steps if steps else epochs
            schedule = experiment.lr_schedule(
                self.lr_schedule, hp.get("learning_rate"), total
            )
            callbacks.insert(0, _ScheduledLearningRate(schedule, steps))
        callbacks.insert(0, TerminateOnNonFinite())
        try:
            return model.fit(*args, callbacks=callbacks, **kwargs)
        except NonFiniteLossError as e:
            raise kt.errors.FailedTrialError(str(e)) from e


# ------------------------------------------------------------------ objective


def make_objective(objective="val_accuracy", direction=None):
    """Returns a `keras_tuner.Objective` for a metric name Keras logs.

    KerasTuner infers the direction of Keras's own metric names only; this
    also knows keras-vid's logs: names ending in `loss` (`val_vid_loss`,
    `val_task_loss`, `val_kd_loss`, ...) and per-term values with a `/`
    (`val_vid/stage3`) are minimised, accuracies maximised. Note that a
    `<group>_loss` is the group's *weighted* sum, and VID's negative
    log-likelihood can be negative, so `val_vid_loss` is not comparable
    across `vid_weight` values (nor across pair subsets): search it with
    `vid_weight` and the pairs fixed, or use the unweighted `val_vid/<layer>`.

    Args:
        objective: a metric name, `"name:min"` / `"name:max"`, a
            `keras_tuner.Objective` (returned as is), or a list of these.
        direction: `"min"` or `"max"`, overriding the inference.

    Returns:
        A `keras_tuner.Objective`, or a list of them for a list.

    Raises:
        ValueError: when the direction cannot be inferred or is invalid.

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
    if direction is None:
        base = name[4:] if name.startswith("val_") else name
        if base.endswith("loss") or "/" in base or base.endswith("error"):
            direction = "min"
        elif "accuracy" in base or base in ("acc", "auc", "precision", "recall"):
            direction = "max"
        else:
            direction = _compat.infer_metric_direction(name)
    if direction not in ("min", "max"):
        raise ValueError(
            f"Cannot tell whether to minimise or maximise {name!r}. Pass "
            f"direction='min' or 'max', or write '{name}:min'."
        )
    return kt.Objective(name, direction)


class _TensorBoardOptional:
    """Imports TensorBoard only when a `TensorBoard` callback needs it.

    Under TensorFlow, KerasTuner 1.4's `Tuner.run_trial` imports
    `tensorboard.plugins.hparams` in every trial, to add hyperparameter logs
    to `TensorBoard` callbacks, and so fails when the (optional) tensorboard
    package is absent even with no such callback. This skips the import
    exactly when there is nothing for it to configure.
    """

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        if any(type(c).__name__ == "TensorBoard" for c in callbacks):
            super()._configure_tensorboard_dir(callbacks, trial, execution)


class RandomSearch(_TensorBoardOptional, kt.RandomSearch):
    """`keras_tuner.RandomSearch` that runs without the tensorboard package.

    Args:
        *args, **kwargs: those of `keras_tuner.RandomSearch`.

    Example:

    ```python
    tuner = keras_vid.tuning.RandomSearch(hypermodel, objective="val_accuracy",
                                          max_trials=10, directory="runs/tune")
    ```
    """


class BayesianOptimization(_TensorBoardOptional, kt.BayesianOptimization):
    """`keras_tuner.BayesianOptimization` that runs without tensorboard.

    Args:
        *args, **kwargs: those of `keras_tuner.BayesianOptimization`; it
            needs scipy and scikit-learn.

    Example:

    ```python
    tuner = keras_vid.tuning.BayesianOptimization(
        hypermodel, objective="val_accuracy", max_trials=20)
    ```
    """


class Hyperband(_TensorBoardOptional, kt.Hyperband):
    """`keras_tuner.Hyperband` that runs without the tensorboard package.

    Args:
        *args, **kwargs: those of `keras_tuner.Hyperband`.

    Example:

    ```python
    tuner = keras_vid.tuning.Hyperband(hypermodel, objective="val_accuracy",
                                       max_epochs=27)
    ```
    """


def make_tuner(
    kind,
    hypermodel,
    objective="val_accuracy",
    max_trials=10,
    max_epochs=None,
    executions_per_trial=1,
    seed=None,
    directory=None,
    project_name="vid",
    overwrite=False,
    distribution_strategy=None,
    **kwargs,
):
    """Creates a KerasTuner tuner by name, with the objective built for you.

    Args:
        kind: `"random"` (`RandomSearch`), `"bayesian"`
            (`BayesianOptimization`) or `"hyperband"` (`Hyperband`).
        hypermodel: a `VIDHyperModel` (any `keras_tuner.HyperModel` works).
        objective: passed through `make_objective`. Defaults to
            `"val_accuracy"` (max).
        max_trials: trials for random and Bayesian search. Hyperband sets
            its own number of trials from `max_epochs` and `factor`.
        max_epochs: Hyperband's largest budget. Defaults to the
            hypermodel's `epochs`, else 10.
        executions_per_trial: trainings per trial; their objectives are
            averaged.
        seed: the oracle's seed.
        directory: where trials and checkpoints are written.
        project_name: the sub-directory of `directory`.
        overwrite: start afresh instead of resuming a search in `directory`.
        distribution_strategy: a `tf.distribute.Strategy`; the hypermodel
            is built in its scope.
        **kwargs: more tuner arguments (`factor`, `num_initial_points`, ...).

    Returns:
        A `keras_tuner.Tuner`: this module's `RandomSearch`,
        `BayesianOptimization` or `Hyperband`, KerasTuner's classes that do
        not need the tensorboard package.

    Example:

    ```python
    tuner = make_tuner("hyperband", hypermodel, "val_vid_loss",
                       max_epochs=27, directory="runs/tune")
    ```
    """
    if kind not in TUNERS:
        raise ValueError(f"`kind` must be one of {TUNERS}. Received: {kind!r}.")
    common = {
        "hypermodel": hypermodel,
        "objective": make_objective(objective),
        "seed": seed,
        "directory": directory,
        "project_name": project_name,
        "overwrite": overwrite,
        "distribution_strategy": distribution_strategy,
        "executions_per_trial": executions_per_trial,
        **kwargs,
    }
    if kind == "hyperband":
        max_epochs = max_epochs or getattr(hypermodel, "epochs", None) or 10
        return Hyperband(max_epochs=max_epochs, **common)
    cls = RandomSearch if kind == "random" else BayesianOptimization
    return cls(max_trials=max_trials, **common)


# -------------------------------------------------------------- best student


def best_student(tuner, path=None, compile=True):
    """Returns the best trial's trained student; optionally saves it alone.

    KerasTuner's checkpoints hold the whole distiller (teacher, student,
    regressors), saved at the best epoch of each trial: this rebuilds the best
    trial's distiller, loads its checkpoint and keeps `.student`.

    Args:
        tuner: a KerasTuner tuner after `search()`.
        path: if given, the student alone (no teacher, no regressors, not
            compiled) is saved there atomically with
            `keras_vid.callbacks.save_atomic`.
        compile: compile the returned student with the hypermodel's task
            loss and metrics, so `student.evaluate(test_ds)` works at once.

    Returns:
        The student, a `keras.Model`.

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
        distiller = tuner.get_best_models(1)[0]
    student = distiller.student
    if path:
        # Saved before compile(): the file is the bare student, which loads
        # without an optimizer to restore.
        save_atomic(student, path)
    hypermodel = tuner.hypermodel
    if compile and isinstance(hypermodel, VIDHyperModel):
        metrics = hypermodel.metrics
        metrics = metrics() if callable(metrics) else metrics
        strategy = tuner.distribution_strategy
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            student.compile(
                loss=_fresh(hypermodel.loss)
                if hypermodel.loss is not None
                else keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[_fresh(m) for m in (metrics or [])],
            )
    return student


# ----------------------------------------------------------------------- data


def load_search_data(
    dataset,
    samples_per_class,
    val_per_class=200,
    seed=0,
    batch_size=64,
    validation="holdout",
    manual_dir=None,
):
    """Returns `(train, validation)` datasets for a search.

    The training set is `keras_vid.data.load(dataset, "train",
    samples_per_class=..., seed=...)`, the very images `recipes/distill.py`
    trains on with the same seed. With `validation="holdout"` the validation
    set is `val_per_class` images per class drawn (with `seed + 1`) from the
    training images *not* in that subset, so the search never selects on the
    test split and never validates on training images; `"test"` uses the
    test split instead (then report a test accuracy from another split).

    Args:
        dataset: a `keras_vid.data` name, e.g. `"fashion_mnist"`.
        samples_per_class: training images per class; `None` for all (then
            `validation` must be `"test"`).
        val_per_class: validation images per class for `"holdout"`.
        seed: the subset's (and shuffling's) seed.
        batch_size: the training batch size.
        validation: `"holdout"` or `"test"`.
        manual_dir: the raw files' directory (`keras_vid.data`).

    Returns:
        Two `tf.data.Dataset`s of `(images, labels)` batches.

    Example:

    ```python
    train, val = load_search_data("fashion_mnist", 100, val_per_class=200)
    ```
    """
    if validation not in ("holdout", "test"):
        raise ValueError(
            f"`validation` must be 'holdout' or 'test'. Received: {validation!r}."
        )
    train = data_lib.load(
        dataset,
        "train",
        batch_size=batch_size,
        samples_per_class=samples_per_class,
        seed=seed,
        manual_dir=manual_dir,
    )
    if validation == "test":
        return train, data_lib.load(
            dataset, "test", batch_size=512, manual_dir=manual_dir
        )
    if samples_per_class is None:
        raise ValueError(
            "validation='holdout' draws from the training images left out of the "
            "subset, so it needs samples_per_class; with every training image, "
            "use validation='test'."
        )
    x, y = data_lib.load_arrays(dataset, "train", manual_dir)
    num_classes = data_lib.info(dataset)["num_classes"]
    used = data_lib.subset_indices(y, samples_per_class, seed, num_classes)
    rest = np.setdiff1d(np.arange(len(y)), used)
    pick = rest[data_lib.subset_indices(y[rest], val_per_class, seed + 1, num_classes)]
    images = np.multiply(x[pick], np.float32(1.0 / 255.0), dtype=np.float32)
    val = tf.data.Dataset.from_tensor_slices((images, y[pick].astype("int32")))
    return train, val.batch(512).prefetch(tf.data.AUTOTUNE)


# -------------------------------------------------------------------- reports


def trials_table(tuner):
    """Returns one row per trial: id, status, every hyperparameter, objective.

    Args:
        tuner: a KerasTuner tuner.

    Returns:
        `(rows, columns)`: a list of dicts (a hyperparameter inactive in a
        trial, such as `kd_weight` without KD, is `None`) and the ordered
        column names; the objective's column is named after the objective.

    Example:

    ```python
    rows, columns = keras_vid.tuning.trials_table(tuner)
    ```
    """
    objective = tuner.oracle.objective
    names = [h.name for h in tuner.oracle.get_space().space]
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    for trial in trials:
        for name in trial.hyperparameters.values:
            if name not in names:
                names.append(name)
    # Hyperband's bookkeeping (tuner/epochs, ...) goes last.
    names = [n for n in names if not n.startswith("tuner/")] + [
        n for n in names if n.startswith("tuner/")
    ]
    rows = []
    for trial in trials:
        values = trial.hyperparameters.values
        row = {"trial_id": trial.trial_id, "status": trial.status}
        row.update({n: values.get(n) for n in names})
        row[objective.name] = trial.score
        rows.append(row)
    return rows, ["trial_id", "status", *names, objective.name]


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_trials(tuner, output_dir, title=""):
    """Writes `trials.csv`, `trials.md` and `trials.png` to `output_dir`.

    The plot has one panel per searched hyperparameter: the objective of each
    completed trial against its value, the best trial marked.

    Args:
        tuner: a KerasTuner tuner after `search()`.
        output_dir: the directory, created if needed.
        title: a heading for the Markdown table and the plot.

    Returns:
        The Markdown table, a string.

    Example:

    ```python
    print(keras_vid.tuning.write_trials(tuner, "runs/tune"))
    ```
    """
    os.makedirs(output_dir, exist_ok=True)
    rows, columns = trials_table(tuner)
    with open(os.path.join(output_dir, "trials.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(_cell(r[c]) for c in columns) + " |" for r in rows),
    ]
    table = "\n".join(lines)
    with open(os.path.join(output_dir, "trials.md"), "w") as f:
        f.write((f"## {title}\n\n" if title else "") + table + "\n")
    plot_trials(tuner, os.path.join(output_dir, "trials.png"), title)
    return table


def plot_trials(tuner, path, title=""):
    """Plots the objective against each searched hyperparameter (PNG).

    Args:
        tuner: a KerasTuner tuner after `search()`.
        path: the PNG file to write.
        title: the figure's title.

    Returns:
        `path`.

    Example:

    ```python
    keras_vid.tuning.plot_trials(tuner, "runs/tune/trials.png")
    ```
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    objective = tuner.oracle.objective
    rows, _ = trials_table(tuner)
    done = [r for r in rows if r[objective.name] is not None]
    space = [
        h
        for h in tuner.oracle.get_space().space
        if not isinstance(h, Fixed) and not h.name.startswith("tuner/")
    ]
    cols = min(3, max(1, len(space)))
    nrows = max(1, math.ceil(len(space) / cols))
    fig, axes = plt.subplots(
        nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False
    )
    best = None
    if done:
        pick = min if objective.direction == "min" else max
        best = pick(done, key=lambda r: r[objective.name])
    for ax, h in zip(axes.flat, space):
        pts = [(r[h.name], r[objective.name]) for r in done if r[h.name] is not None]
        numeric = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in pts
        )
        if numeric:
            xs = [v for v, _ in pts]
            if getattr(h, "sampling", None) in ("log", "reverse_log"):
                ax.set_xscale("log")
                # Minor labels of a short log axis overprint each other.
                ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        else:
            # Every category of the space, so an unexplored one shows as empty.
            known = getattr(h, "values", None) or []
            if isinstance(h, Boolean):
                known = [False, True]
            labels = [str(v) for v in known]
            labels += sorted({str(v) for v, _ in pts} - set(labels))
            xs = [labels.index(str(v)) for v, _ in pts]
            ax.set_xticks(range(len(labels)), labels)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.scatter(xs, [o for _, o in pts], color="tab:blue")
        if best is not None and best[h.name] is not None:
            bx = best[h.name] if numeric else labels.index(str(best[h.name]))
            ax.scatter([bx], [best[objective.name]], color="tab:red", marker="*", s=150)
        ax.set_xlabel(h.name)
        ax.set_ylabel(objective.name)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(space) :]:
        ax.axis("off")
    fig.suptitle(title or f"{objective.name} ({objective.direction}) per trial")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = [
    "BayesianOptimization",
    "Hyperband",
    "RandomSearch",
    "DEFAULT_SEARCH_SPACE",
    "FIXED_DEFAULTS",
    "TUNERS",
    "VIDHyperModel",
    "best_student",
    "load_search_data",
    "make_objective",
    "make_tuner",
    "plot_trials",
    "trials_table",
    "write_trials",
]
