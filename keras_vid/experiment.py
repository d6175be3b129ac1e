"""Library side of the recipes: train a teacher, load the data, distil once.

The absl scripts under `recipes/` parse flags and call these functions, so
that the same code is tested, tuned and reused from a notebook; their grids
and reports are `keras_vid.reporting`'s.
"""

import contextlib
import csv
import dataclasses
import io
import json
import os
import re
import time

import keras
import numpy as np

from keras_vid import applications, distribute, pairing, reporting
from keras_vid import data as data_lib
from keras_vid import methods as methods_lib
from keras_vid import models as models_lib
from keras_vid._tf import tf
from keras_vid.callbacks import TerminateOnNonFinite, save_atomic
from keras_vid.distiller import Distiller
from keras_vid.teacher_cache import cache_teacher

SCHEDULES = ("cosine", "step", "constant")

# The recipes' global gradient-norm clip. Without one, VID at lambda 20 and
# lr 0.05 diverged within 30 steps on WRN-16-2 -> WRN-10-1 (2 seeds of 2); 5
# also held but cost VID on the CNN pair. See docs/results.md, "The gradient
# clip".
CLIPNORM = 20.0


def sgd(learning_rate, momentum=0.9, clipnorm=CLIPNORM, nesterov=True):
    """The recipes' optimiser: SGD, Nesterov momentum, global norm clip.

    `clipnorm` 0 or None turns the clip off; the generalisation suite uses
    plain momentum (`nesterov=False`) and no clip.

    Example:

    >>> sgd(0.05).global_clipnorm
    20.0
    """
    return keras.optimizers.SGD(
        learning_rate,
        momentum=momentum,
        nesterov=nesterov,
        global_clipnorm=clipnorm or None,
    )


@dataclasses.dataclass
class DistillConfig:
    """One distillation run's settings; every recipe flag maps to a field.

    Example:

    >>> cfg = DistillConfig(dataset="fashion_mnist", method="vid_i", epochs=2)
    >>> cfg.student
    'cnn-small'
    """

    dataset: str = "fashion_mnist"
    teacher: str = "cnn"
    student: str = "cnn-small"
    method: str = "vid_i"
    samples_per_class: int | None = 100
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 0.05
    lr_schedule: str = "cosine"
    momentum: float = 0.9
    nesterov: bool = True
    # Global gradient-norm clip for every method (0 or None: off).
    clipnorm: float | None = CLIPNORM
    seed: int = 0
    output_dir: str | None = None
    manual_dir: str | None = None
    augment: bool | None = None
    strategy: str = "default"
    source: str = "auto"
    data_dir: str | None = None
    # For image folders (`dataset` a path): resize every image to this size.
    image_size: int | None = None
    teacher_cache: bool = False
    # Unlabelled images mixed into every batch (`keras_vid.data.with_unlabeled`):
    # "rest" (the training images outside the labelled subset) or a folder.
    unlabeled: str | None = None
    unlabeled_ratio: float = 1.0
    # Layers to pair, the same names in both models; None pairs the stages.
    taps: tuple | None = None
    verbose: int = 1
    overrides: dict = dataclasses.field(default_factory=dict)


def lr_schedule(kind, learning_rate, total_steps):
    """Returns the learning rate or schedule for `kind`.

    `"cosine"` decays to zero over the run; `"step"` multiplies by 0.1 at 50%
    and 75% of the steps (the CIFAR recipes' step decay); `"constant"`.

    Example:

    >>> float(lr_schedule("step", 0.1, 100)(80))
    0.001...
    """
    if kind not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {SCHEDULES}. Received: {kind!r}.")
    total_steps = max(int(total_steps), 1)
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)
    if kind == "step":
        bounds = [max(1, total_steps // 2), max(2, (3 * total_steps) // 4)]
        values = [learning_rate, learning_rate * 0.1, learning_rate * 0.01]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)
    return learning_rate


def tap_layout(model_name):
    """Returns `(intermediate taps, penultimate layer)` of a zoo model.

    Example:

    >>> tap_layout("wrn-16-1")
    (['stage1', 'stage2', 'stage3'], 'features')
    """
    names = models_lib.tap_names(model_name)
    middle = [n for n in names if n not in ("conv1", "features", "logits")]
    return middle, "features"


def paired_taps(teacher_name, student_name):
    """Pairs the two models' intermediate taps, deepest first.

    When the counts differ (a three-stage CNN and a two-layer MLP), the
    deepest taps are paired, since the last layers carry the most task
    information.

    Example:

    >>> paired_taps("cnn", "mlp")
    (['stage2', 'stage3'], ['hidden1', 'hidden2'])
    """
    t, _ = tap_layout(teacher_name)
    s, _ = tap_layout(student_name)
    k = min(len(t), len(s))
    return t[len(t) - k :], s[len(s) - k :]


def build_model(name, dataset, image_size=None):
    """Builds a zoo model for `dataset`'s classes and image shape.

    `dataset` is a data set name, optionally with a class selection
    (`"fashion_mnist:5-9"`), or an image folder resized to `image_size`.

    Example:

    >>> build_model("cnn-small", "fashion_mnist").output_shape
    (None, 10)
    >>> build_model("cnn-small", "fashion_mnist:5-9").output_shape
    (None, 5)
    """
    meta = data_lib.info(dataset, image_size=image_size)
    return models_lib.get_model(
        name, num_classes=meta["num_classes"], input_shape=meta["input_shape"]
    )


def _ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def train_teacher(
    dataset="fashion_mnist",
    arch="cnn",
    epochs=5,
    batch_size=128,
    learning_rate=None,
    seed=0,
    samples_per_class=None,
    manual_dir=None,
    output_path=None,
    verbose=1,
    callbacks=(),
    optimizer=None,
    image_size=None,
):
    """Trains a zoo teacher from scratch and saves it atomically.

    The optimiser defaults to SGD with Nesterov momentum (lr 0.05) for WRNs,
    the CIFAR recipe, and to Adam (lr 2e-3) otherwise, which brings the
    Fashion-MNIST CNN to about 92-93% in a few epochs. Both decay the
    learning rate to zero on a cosine.

    Returns:
        `(model, test_accuracy)`.

    Example:

    ```python
    teacher, acc = train_teacher("fashion_mnist", "cnn", epochs=5,
                                 output_path="runs/teacher.keras")
    ```
    """
    keras.utils.set_random_seed(seed)
    train = data_lib.load(
        dataset,
        "train",
        batch_size=batch_size,
        samples_per_class=samples_per_class,
        seed=seed,
        manual_dir=manual_dir,
        image_size=image_size,
    )
    test = data_lib.load(
        dataset, "test", batch_size=512, manual_dir=manual_dir, image_size=image_size
    )
    model = build_model(arch, dataset, image_size)
    steps = epochs * int(train.cardinality())
    optimizer = optimizer or ("sgd" if arch.startswith("wrn") else "adam")
    if optimizer == "sgd":
        opt = keras.optimizers.SGD(
            lr_schedule("cosine", learning_rate or 0.05, steps),
            momentum=0.9,
            nesterov=True,
        )
    else:
        opt = keras.optimizers.Adam(lr_schedule("cosine", learning_rate or 2e-3, steps))
    model.compile(opt, loss=_ce(), metrics=["accuracy"])
    model.fit(
        train,
        epochs=epochs,
        verbose=verbose,
        # keras_vid.data shuffles; Keras 3.15 warns when a Dataset meets the
        # default shuffle=True, which it ignores anyway.
        shuffle=False,
        callbacks=[TerminateOnNonFinite(), *callbacks],
    )
    acc = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    if output_path:
        save_atomic(model, output_path)
    return model, float(acc)


def slug(dataset):
    """A file-name-safe form of a data set name or image folder path.

    Example:

    >>> slug("fashion_mnist:5-9"), slug("/data/my photos/")
    ('fashion_mnist_5-9', 'data_my_photos')
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(dataset)).strip("_")


def is_teacher_file(spec):
    """Whether a `--teacher` value names a saved model rather than an architecture.

    Example:

    >>> is_teacher_file("runs/teacher.keras"), is_teacher_file("wrn-40-2")
    (True, False)
    """
    return spec.endswith(".keras") or os.path.sep in spec


def teacher_cache_path(arch, dataset, cache_dir, samples_per_class=None):
    """Where `get_teacher` caches a teacher it trains from an architecture name.

    Example:

    >>> teacher_cache_path("cnn", "fashion_mnist:0-4", "runs")
    'runs/teacher_cnn_fashion_mnist_0-4.keras'
    """
    subset = f"_n{samples_per_class}" if samples_per_class else ""
    return os.path.join(cache_dir, f"teacher_{arch}_{slug(dataset)}{subset}.keras")


def load_teacher(path):
    """Loads a saved teacher with `safe_mode=True`, with a clear error.

    Example:

    ```python
    teacher = load_teacher("runs/teacher.keras")
    ```
    """
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No teacher at {path!r}. Train one with recipes/train_teacher.py, or "
            "pass an architecture name such as --teacher=cnn."
        )
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:
        raise ValueError(
            f"Could not load the teacher file {path!r}: it is corrupt, truncated or "
            f"not a Keras model ({type(e).__name__}: {e}). Re-create it with "
            "recipes/train_teacher.py."
        ) from e


def get_teacher(
    spec,
    dataset,
    cache_dir,
    epochs=5,
    seed=0,
    manual_dir=None,
    verbose=1,
    samples_per_class=None,
    weights="imagenet",
    teacher_image_size=96,
    image_size=None,
):
    """Returns a teacher: loaded from a `.keras` file, or trained once and cached.

    Args:
        spec: a path to a saved teacher, a zoo architecture name, or a
            `keras.applications` model (`"keras.applications.MobileNetV2"`).
            A teacher trained from an architecture name is saved to
            `<cache_dir>/teacher_<arch>_<dataset>.keras` and reloaded on reruns.
        weights: for a `keras.applications` teacher: `"imagenet"`, a weights
            file, or `None`.
        teacher_image_size: for a `keras.applications` teacher: its input
            height and width (it sees the student's images resized to it, in
            RGB).
        image_size: for an image folder `dataset`: the size its images are
            resized to (a zoo teacher is trained on them).

    Returns:
        `(teacher, test_accuracy or None)`.

    Example:

    ```python
    teacher, acc = get_teacher("cnn", "fashion_mnist", "runs/demo", epochs=2)
    ```
    """
    if spec.startswith(applications.PREFIX):
        size = (teacher_image_size, teacher_image_size, 3)
        return applications.applications_teacher(spec, weights, size), None
    if is_teacher_file(spec):
        return load_teacher(spec), None
    path = teacher_cache_path(spec, dataset, cache_dir, samples_per_class)
    if os.path.exists(path):
        return load_teacher(path), None
    return train_teacher(
        dataset,
        spec,
        epochs=epochs,
        seed=seed,
        manual_dir=manual_dir,
        output_path=path,
        verbose=verbose,
        samples_per_class=samples_per_class,
        image_size=image_size,
    )


def resume_epoch(backup_dir):
    """The epoch a `BackupAndRestore` in `backup_dir` will resume at (0 if none).

    Example:

    >>> resume_epoch("/nonexistent")
    0
    """
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        path = os.path.join(backup_dir, name)
        try:
            with open(path) as f:
                return int(json.load(f)["epoch"])
        except (OSError, ValueError, KeyError):
            continue
    return 0


def _replay_iterators(train, epochs):
    # Epochs draw their shuffle and augmentation from the dataset's iterator
    # count. Keras 3.15's epoch loop (steps_per_epoch=None) makes two
    # iterators per epoch: one at the end of the epoch, unused, and one at the
    # start of the next. Replaying as many for the finished epochs makes a
    # resumed run see the same batches as an uninterrupted one;
    # tests/test_experiment_resume.py checks the weights end equal, and differ
    # without this.
    for _ in range(2 * epochs):
        iter(train)


def _trim_history(path, resumed):
    # Rows from epochs after the last backup were trained again by the resumed
    # run; keeping them would log those epochs twice.
    if not resumed or not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "epoch" not in rows[0]:
        return
    column = rows[0].index("epoch")
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[column]) < resumed]
    text = io.StringIO()
    csv.writer(text).writerows(kept)
    reporting.write_text(path, text.getvalue())


def _is_zoo(name):
    try:
        models_lib.tap_names(name)
    except ValueError:
        return False
    return True


def auto_taps(teacher, student):
    """The layers to pair for models outside the zoo, by automatic pairing.

    Returns `(teacher taps, student taps, teacher features, student
    features)` for `methods.build_distiller`: every stage pair
    `keras_vid.suggest_pairs` aligns, and the penultimate features (`None`
    when a model has none).

    Example:

    >>> from keras_vid.models import get_model
    >>> taps = auto_taps(get_model("cnn"), get_model("cnn-small"))
    >>> taps  # doctest: +NORMALIZE_WHITESPACE
    (['stage1', 'stage2', 'stage3'], ['stage1', 'stage2', 'stage3'],
     'features', 'features')
    """
    stage_pairs = pairing.suggest_pairs(teacher, student, rule="all")
    t_feat, s_feat = pairing.find_features(teacher), pairing.find_features(student)
    return (
        [t for t, _ in stage_pairs],
        [s for _, s in stage_pairs],
        t_feat.path if t_feat else None,
        s_feat.path if s_feat else None,
    )


def teacher_preprocessing(cfg, teacher, student_shape):
    """The layer that adapts the student's images for a `keras.applications` teacher.

    `None` for any other teacher, which takes the student's images as they
    are. See `keras_vid.applications.applications_preprocessing`.

    Args:
        cfg: the run's `DistillConfig`.
        teacher: the teacher model.
        student_shape: the student's input shape, without the batch axis.

    Example:

    >>> teacher_preprocessing(DistillConfig(teacher="cnn"), None, (28, 28, 1))
    """
    if not str(cfg.teacher).startswith(applications.PREFIX):
        return None
    return applications.applications_preprocessing(
        cfg.teacher, tuple(student_shape), teacher
    )


def load_splits(cfg, augment=None, shuffle=None):
    """The run's training subset and test split, as `tf.data` pipelines.

    The training set is `cfg.samples_per_class` images per class drawn by
    `cfg.seed` (the same for every method), in batches of `cfg.batch_size`;
    the test split comes in batches of 512.

    Args:
        cfg: a `DistillConfig`.
        augment: whether to augment the training images; defaults to
            `cfg.augment`, else the data set's default.
        shuffle: whether to shuffle them (default: yes).

    Returns:
        `(train, test)`.

    Example:

    ```python
    train, test = load_splits(DistillConfig(samples_per_class=100))
    ```
    """
    if augment is None:
        augment = cfg.augment
    if augment is None:
        augment = data_lib.default_augment(cfg.dataset)
    where = dict(
        manual_dir=cfg.manual_dir,
        source=cfg.source,
        data_dir=cfg.data_dir,
        image_size=cfg.image_size,
    )
    train = data_lib.load(
        cfg.dataset,
        "train",
        batch_size=cfg.batch_size,
        samples_per_class=cfg.samples_per_class,
        seed=cfg.seed,
        augment=augment,
        shuffle=shuffle,
        **where,
    )
    return train, data_lib.load(cfg.dataset, "test", batch_size=512, **where)


def load_search_data(
    dataset,
    samples_per_class,
    val_per_class=200,
    seed=0,
    batch_size=64,
    validation="holdout",
    manual_dir=None,
    image_size=None,
):
    """Returns `(train, validation)` datasets for a hyperparameter search.

    `train` is `load_splits`'s: `samples_per_class` images per class drawn by
    `seed`, what `recipes/distill.py` trains on. With `"holdout"` validation,
    `val_per_class` images per class are drawn (with `seed + 1`) from the
    training images *not* in that subset, so the search never selects on the
    test split; `"test"` validates on the test split (needed when
    `samples_per_class` is None, every training image). `image_size` resizes
    an image folder's images, as `DistillConfig.image_size` does.

    Example:

    ```python
    train, val = load_search_data("fashion_mnist", 100, val_per_class=200)
    ```
    """
    if validation not in ("holdout", "test"):
        raise ValueError(
            f"`validation` must be 'holdout' or 'test'. Received: {validation!r}."
        )
    if validation == "holdout" and samples_per_class is None:
        raise ValueError(
            "validation='holdout' draws from the training images left out of the "
            "subset, so it needs samples_per_class; with every training image, "
            "use validation='test'."
        )
    cfg = DistillConfig(
        dataset=dataset,
        samples_per_class=samples_per_class,
        seed=seed,
        batch_size=batch_size,
        manual_dir=manual_dir,
        image_size=image_size,
    )
    train, test = load_splits(cfg)
    if validation == "test":
        return train, test
    x, y = data_lib.load_arrays(dataset, "train", manual_dir, image_size=image_size)
    classes = data_lib.info(dataset, image_size=image_size)["num_classes"]
    used = data_lib.subset_indices(y, samples_per_class, seed, classes)
    rest = np.setdiff1d(np.arange(len(y)), used)
    pick = rest[data_lib.subset_indices(y[rest], val_per_class, seed + 1, classes)]
    images = np.multiply(x[pick], np.float32(1.0 / 255.0), dtype=np.float32)
    val = tf.data.Dataset.from_tensor_slices((images, y[pick].astype("int32")))
    return train, val.batch(512).prefetch(tf.data.AUTOTUNE)


def _in_scope(teacher):
    """Copies the teacher in the current strategy scope: its variables mirror."""
    copy = keras.models.clone_model(teacher)
    copy.set_weights(teacher.get_weights())
    return copy


def distill(cfg, teacher, callbacks=(), strategy=None, builder=None):
    """Runs one distillation and returns its results.

    Builds the student from `cfg.student` with the seed `cfg.seed` (the same
    initial weights for every method), trains with `cfg.method` on
    `cfg.samples_per_class` images per class drawn by the seed (the same
    images for every method), and evaluates on the test split.

    Args:
        cfg: a `DistillConfig`.
        teacher: the trained teacher model.
        callbacks: more Keras callbacks.
        strategy: a `tf.distribute` strategy (`keras_vid.distribute.
            get_strategy(cfg.strategy)`, created at program start); the
            student, the distiller and a copy of the teacher are built in
            its scope. `cfg.batch_size` is the global batch.
        builder: `builder(cfg, teacher, student)` returns the model to train
            (a `keras_vid.Distiller`, or any `keras.Model` with a `student`,
            such as `keras.distillation.Distiller`) in place of
            `methods.build_distiller(cfg.method, ...)`; used by the
            generalisation suite. The teacher cache applies to
            `keras_vid.Distiller`s only.

    Returns:
        A dict: `method`, `samples_per_class`, `seed`, `test_accuracy`,
        `test_loss`, `epochs`, `seconds`, and `history`.

    Example:

    ```python
    teacher = load_teacher("runs/teacher.keras")
    result = distill(DistillConfig(method="vid_i", epochs=30), teacher)
    ```
    """
    if builder is None:
        methods_lib.parse_method(cfg.method)  # fail before any data is loaded
    augment = cfg.augment
    if augment is None:
        augment = data_lib.default_augment(cfg.dataset)
    if cfg.teacher_cache and augment:
        raise ValueError(
            "The teacher cache needs the same images every epoch, but this run "
            f"augments them (dataset {cfg.dataset!r}). Pass augment=False "
            "(--noaugment), or leave the teacher cache off."
        )
    start = time.time()
    # With the cache, examples are shuffled after it, by cache_teacher.
    train, test = load_splits(cfg, augment, shuffle=not cfg.teacher_cache)
    pool = None
    if cfg.unlabeled:
        rest = cfg.unlabeled == "rest"
        pool = data_lib.load_unlabeled(
            cfg.dataset if rest else cfg.unlabeled,
            samples_per_class=cfg.samples_per_class if rest else None,
            seed=cfg.seed,
            batch_size=cfg.batch_size,
            augment=augment,
            shuffle=not cfg.teacher_cache,
            manual_dir=cfg.manual_dir,
            source=cfg.source,
            data_dir=cfg.data_dir,
            image_size=cfg.image_size,
        )
    distributed = strategy is not None and strategy is not tf.distribute.get_strategy()
    with strategy.scope() if distributed else contextlib.nullcontext():
        if distributed:
            teacher = _in_scope(teacher)
        keras.utils.set_random_seed(cfg.seed)
        student = build_model(cfg.student, cfg.dataset, cfg.image_size)
        if builder is not None:
            distiller = builder(cfg, teacher, student)
        else:
            t_feat = s_feat = "features"
            if cfg.taps:
                t_taps, s_taps = list(cfg.taps), list(cfg.taps)
            elif _is_zoo(cfg.teacher) and _is_zoo(cfg.student):
                t_taps, s_taps = paired_taps(cfg.teacher, cfg.student)
            else:
                t_taps, s_taps, t_feat, s_feat = auto_taps(teacher, student)
            distiller = methods_lib.build_distiller(
                cfg.method,
                teacher,
                student,
                teacher_taps=t_taps,
                student_taps=s_taps,
                teacher_features=t_feat,
                student_features=s_feat,
                teacher_preprocessing=teacher_preprocessing(
                    cfg, teacher, student.inputs[0].shape[1:]
                ),
                # A grid shares one set of overrides; each method takes its own.
                **methods_lib.overrides_for(cfg.method, cfg.overrides),
            )
        if cfg.teacher_cache and isinstance(distiller, Distiller):
            meta = data_lib.info(cfg.dataset, image_size=cfg.image_size)
            n = (cfg.samples_per_class or 0) * meta["num_classes"] or meta["num_train"]
            train = cache_teacher(
                distiller, train, shuffle_buffer=min(n, 20000), seed=cfg.seed
            )
            if pool is not None:
                # Shuffled after the cache, so each epoch draws other images.
                pool = cache_teacher(
                    distiller, pool, shuffle_buffer=20000, seed=cfg.seed + 1
                )
        if pool is not None:
            train = data_lib.with_unlabeled(
                train,
                pool,
                ratio=cfg.unlabeled_ratio,
                seed=cfg.seed,
                batch_size=cfg.batch_size,
            )
        steps = cfg.epochs * int(train.cardinality())
        distiller.compile(
            sgd(
                lr_schedule(cfg.lr_schedule, cfg.learning_rate, steps),
                momentum=cfg.momentum,
                clipnorm=cfg.clipnorm,
                nesterov=cfg.nesterov,
            ),
            loss=_ce(),
            metrics=["accuracy"],
        )
    cbs = [TerminateOnNonFinite(), *callbacks]
    if cfg.output_dir:
        os.makedirs(cfg.output_dir, exist_ok=True)
        backup = os.path.join(cfg.output_dir, "backup")
        if distribute.is_multi_worker(strategy):
            backup = distribute.worker_backup_dir(backup)
        resumed = resume_epoch(backup)
        _replay_iterators(train, resumed)
        history_csv = os.path.join(cfg.output_dir, "history.csv")
        _trim_history(history_csv, resumed)
        # CSVLogger flushes each row; appending keeps the rows of the epochs
        # before a kill, which its default (overwrite) would lose on resume.
        # It runs before the backup, so an epoch the backup covers always has
        # its row; a row written after the last backup is trimmed on resume.
        cbs.append(keras.callbacks.CSVLogger(history_csv, append=resumed > 0))
        # Double checkpointing keeps the previous backup if a save is torn.
        cbs.append(keras.callbacks.BackupAndRestore(backup, double_checkpoint=True))
        cbs.append(keras.callbacks.TensorBoard(os.path.join(cfg.output_dir, "logs")))
    hist = distiller.fit(
        train, epochs=cfg.epochs, verbose=cfg.verbose, callbacks=cbs, shuffle=False
    )
    if cfg.output_dir:
        # Saved before it is compiled for evaluation, so the file holds the
        # trained student alone, without an unused optimiser.
        save_atomic(distiller.student, os.path.join(cfg.output_dir, "student.keras"))
    # The student alone answers the test set: the teacher is not needed here.
    with strategy.scope() if distributed else contextlib.nullcontext():
        student.compile(loss=_ce(), metrics=["accuracy"])
    logs = student.evaluate(test, verbose=0, return_dict=True)
    result = {
        "method": cfg.method,
        "dataset": cfg.dataset,
        "teacher": cfg.teacher,
        "student": cfg.student,
        "samples_per_class": cfg.samples_per_class,
        "seed": cfg.seed,
        "test_accuracy": float(logs["accuracy"]),
        "test_loss": float(logs["loss"]),
        "epochs": cfg.epochs,
        "clipnorm": cfg.clipnorm or None,
        "unlabeled": cfg.unlabeled,
        "unlabeled_ratio": cfg.unlabeled_ratio if cfg.unlabeled else None,
        "seconds": round(time.time() - start, 1),
        "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()},
        # The epochs this call trained: after a resume, those after the save.
        "epochs_run": [int(e) for e in hist.epoch],
    }
    if cfg.output_dir:
        reporting.write_json(result, os.path.join(cfg.output_dir, "result.json"))
    return result
