"""Flags shared by the recipes: data, models, method and training schedule."""

import functools
import json

from absl import flags

from keras_vid import data, distribute, experiment, methods, reporting

FLAGS = flags.FLAGS


def define_flags(method_default="vid_i", verbose_default=1):
    """Defines the flags every distillation recipe takes."""
    flags.DEFINE_string(
        "dataset",
        "fashion_mnist",
        "Data set, loaded offline through keras_vid.data: "
        f"{', '.join(data.NAMES)}, optionally with a class selection such as "
        "fashion_mnist:5-9 (those classes, relabelled 0, 1, ...).",
    )
    flags.register_validator(
        "dataset",
        lambda name: data.split_classes(name)[0] in data.NAMES,
        message=f"--dataset must be one of {', '.join(data.NAMES)}, optionally "
        "followed by a class selection such as :5-9; for your own images use "
        "--data_dir.",
    )
    flags.DEFINE_string(
        "data_dir",
        None,
        "A folder of your own images, in place of --dataset: "
        "PATH/train/<class>/*.png|jpg and optionally PATH/test/<class>/... (else "
        "a fixed 20%% of each class is the test split). A suffix such as :0-4 "
        "keeps those classes (also for --dataset, e.g. fashion_mnist:5-9).",
    )
    flags.DEFINE_integer(
        "image_size",
        None,
        "With --data_dir: resize every image to this height and width.",
        lower_bound=1,
    )
    flags.DEFINE_string(
        "teacher",
        None,
        "A saved teacher (.keras), a zoo architecture name (a teacher is then "
        "trained and cached in --output_dir), or a keras.applications model "
        "such as keras.applications.MobileNetV2 (see --teacher_weights).",
    )
    flags.DEFINE_string(
        "teacher_weights",
        "imagenet",
        "For a keras.applications teacher: imagenet (downloaded once into "
        "Keras's cache; offline, the error says which file to place where), a "
        "weights file, or none.",
    )
    flags.DEFINE_integer(
        "teacher_image_size",
        96,
        "For a keras.applications teacher: its input size; it sees the "
        "student's images resized to it, in RGB, with its own preprocessing.",
        lower_bound=32,
    )
    flags.DEFINE_string(
        "teacher_arch",
        None,
        "Architecture of a saved --teacher file, used to pick its taps. "
        "Defaults to 'cnn' for Fashion-MNIST/MNIST and 'wrn-40-2' for CIFAR.",
    )
    flags.DEFINE_string("student", None, "Student architecture (keras_vid.models).")
    flags.DEFINE_string(
        "method",
        method_default,
        "One of " + ", ".join(methods.available_methods()) + ", or several "
        "joined by '+' to add their terms, e.g. vid_i+kd (VID on the taps plus "
        "KD on the logits) or at+dist. 'student' trains the student alone. "
        "Their settings: --overrides (keys: keras_vid.methods.DEFAULTS).",
    )
    flags.DEFINE_integer(
        "samples_per_class", 100, "Training images per class (0 = all).", lower_bound=0
    )
    flags.DEFINE_integer("epochs", 30, "Distillation epochs.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 0.05, "Initial SGD learning rate.")
    flags.DEFINE_enum(
        "lr_schedule", "cosine", list(experiment.SCHEDULES), "Learning-rate schedule."
    )
    flags.DEFINE_float(
        "clipnorm",
        experiment.CLIPNORM,
        "Global gradient-norm clip for every method (0 = off).",
        lower_bound=0.0,
    )
    flags.DEFINE_integer("seed", 0, "Seed: data subset, student init, order.")
    flags.DEFINE_string("output_dir", "runs/distill", "Where results are written.")
    flags.DEFINE_string(
        "manual_dir",
        None,
        "Directory with the raw data files (else $KERAS_VID_MANUAL_DIR or the "
        "Debian package's directory).",
    )
    flags.DEFINE_integer("teacher_epochs", 5, "Epochs when a teacher is trained.")
    flags.DEFINE_integer(
        "teacher_samples_per_class",
        0,
        "Images per class to train a teacher on (0 = all); for quick trials.",
        lower_bound=0,
    )
    flags.DEFINE_string(
        "overrides",
        "{}",
        "Method hyperparameters as JSON, e.g. '{\"kd_temperature\": 2.0}' "
        "(keys: keras_vid.methods.DEFAULTS). Parsed as JSON, never evaluated.",
    )
    flags.DEFINE_bool(
        "deterministic",
        False,
        "Enable TensorFlow op determinism: the same seed gives the same weights.",
    )
    flags.DEFINE_bool(
        "teacher_cache",
        None,
        "Compute the teacher's taps once and reuse them every epoch (needs "
        "un-augmented data). Default: on unless the data set is augmented (CIFAR).",
    )
    flags.DEFINE_string(
        "unlabeled",
        None,
        "Unlabelled images to add to every batch (their label is -1: the task "
        "loss skips them, VID/KD/DIST learn from them): 'rest' for the training "
        "images outside the labelled --samples_per_class subset.",
    )
    flags.DEFINE_string(
        "unlabeled_dir",
        None,
        "A folder of unlabelled images (no class folders needed), resized with "
        "--image_size; the alternative to --unlabeled=rest.",
    )
    flags.DEFINE_float(
        "unlabeled_ratio",
        1.0,
        "Unlabelled images per labelled one in each batch.",
        lower_bound=0.0,
    )
    flags.DEFINE_integer(
        "verbose",
        verbose_default,
        "Keras progress: 1 = bars, 2 = a line per epoch, 0 = silent.",
    )
    flags.DEFINE_enum(
        "strategy",
        "default",
        ["default", "mirrored", "multi_worker"],
        "tf.distribute strategy.",
    )


def setup():
    """Applies process-wide flags; call first in main(). Returns the strategy.

    The strategy is created before any other TensorFlow op, as
    MultiWorkerMirroredStrategy requires.
    """
    strategy = distribute.get_strategy(FLAGS.strategy)
    if FLAGS.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    return strategy


def config_from_flags(teacher_arch, student_arch, **fields):
    """The `DistillConfig` the shared flags describe; `fields` override them.

    Every recipe builds its runs from this, so a new flag reaches them all.
    """
    cfg = {
        "dataset": dataset(),
        "image_size": FLAGS.image_size,
        "teacher": teacher_arch,
        "student": student_arch,
        "method": FLAGS.method,
        "samples_per_class": FLAGS.samples_per_class or None,
        "epochs": FLAGS.epochs,
        "batch_size": FLAGS.batch_size,
        "learning_rate": FLAGS.learning_rate,
        "lr_schedule": FLAGS.lr_schedule,
        "clipnorm": FLAGS.clipnorm,
        "seed": FLAGS.seed,
        "manual_dir": FLAGS.manual_dir,
        "strategy": FLAGS.strategy,
        "teacher_cache": use_teacher_cache(dataset()),
        "unlabeled": unlabeled(),
        "unlabeled_ratio": FLAGS.unlabeled_ratio,
        "verbose": FLAGS.verbose,
        "overrides": parse_overrides(FLAGS.overrides),
    }
    return experiment.DistillConfig(**{**cfg, **fields})


def previous_results(teacher_arch, student_arch):
    """The runs an interrupted grid left in --output_dir, checked against the flags.

    Runs of another data set, pair, epoch count or clip would mix into the
    table silently, so they stop the recipe (`reporting.previous_results`).
    """
    return reporting.previous_results(
        FLAGS.output_dir,
        dataset=dataset(),
        teacher=teacher_arch,
        student=student_arch,
        epochs=FLAGS.epochs,
        clipnorm=FLAGS.clipnorm or None,
    )


def run_grid(cells, run_cell, previous, title, paper=None):
    """Runs a grid's missing cells into --output_dir and prints its table.

    `reporting.run_grid` with `reporting.write_results` after every cell;
    `previous` is `previous_results(...)`'s.
    """
    write = functools.partial(reporting.write_results, title=title, paper=paper)
    results = reporting.run_grid(
        cells, run_cell, FLAGS.output_dir, write=write, previous=previous
    )
    print(reporting.markdown_table(results, paper))
    return results


def dataset():
    """`--data_dir` if given, else `--dataset`: what every data loader takes."""
    return FLAGS.data_dir or FLAGS.dataset


def unlabeled():
    """`--unlabeled` or `--unlabeled_dir` (not both), checked before any work."""
    if FLAGS.unlabeled and FLAGS.unlabeled_dir:
        raise ValueError("Pass --unlabeled=rest or --unlabeled_dir=PATH, not both.")
    if FLAGS.unlabeled and FLAGS.unlabeled != "rest":
        raise ValueError(
            f"--unlabeled={FLAGS.unlabeled!r}: the only value is 'rest' (the "
            "training images outside the labelled subset). For a folder of "
            "images, pass --unlabeled_dir=PATH."
        )
    if FLAGS.unlabeled and not FLAGS.samples_per_class:
        raise ValueError(
            "--unlabeled=rest needs a labelled subset (--samples_per_class=N): "
            "without one, no training image is left unlabelled."
        )
    return FLAGS.unlabeled or FLAGS.unlabeled_dir


def use_teacher_cache(dataset):
    """`--teacher_cache`, or by default: on unless `dataset` is augmented.

    With unlabelled images it is off by default: caching the teacher's taps
    of a whole unlabelled pool can take gigabytes of memory.
    """
    if FLAGS.teacher_cache is not None:
        return FLAGS.teacher_cache
    if FLAGS.unlabeled or FLAGS.unlabeled_dir:
        return False
    return not data.default_augment(dataset)


def get_teacher(spec, dataset, output_dir, seed=0):
    """Loads or trains the teacher the flags name."""
    weights = FLAGS.teacher_weights
    return experiment.get_teacher(
        spec,
        dataset,
        output_dir,
        epochs=FLAGS.teacher_epochs,
        seed=seed,
        manual_dir=FLAGS.manual_dir,
        samples_per_class=FLAGS.teacher_samples_per_class or None,
        weights=None if weights.lower() == "none" else weights,
        teacher_image_size=FLAGS.teacher_image_size,
        image_size=FLAGS.image_size,
    )


def teacher_and_archs(default_student=None, defaults=None):
    """Returns (teacher spec, teacher architecture, student architecture).

    `--teacher` is a saved `.keras` file or an architecture name; for a file,
    `--teacher_arch` (or the data set's default) names its architecture, which
    picks the layers to pair. `defaults` replaces `default_archs(dataset)`.
    """
    t_arch, s_arch = defaults or default_archs(FLAGS.dataset)
    spec = FLAGS.teacher or t_arch
    is_file = experiment.is_teacher_file(spec)
    arch = FLAGS.teacher_arch or (t_arch if is_file else spec)
    return spec, arch, FLAGS.student or default_student or s_arch


def default_archs(dataset):
    """Returns the (teacher, student) architectures for a data set."""
    if dataset.startswith("cifar"):
        return "wrn-40-2", "wrn-16-1"
    return "cnn", "cnn-small"


def parse_overrides(text):
    """Parses --overrides as a JSON object."""
    return parse_json_flag("overrides", text)


def parse_json_flag(name, text):
    """Parses the JSON object a flag holds, or says what is wrong with it.

    Parsed as JSON, never evaluated.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--{name} must be a JSON object. Received: {text!r}") from e
    if not isinstance(value, dict):
        raise ValueError(f"--{name} must be a JSON object. Received: {text!r}")
    return value
