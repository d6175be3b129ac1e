"""Flags shared by the recipes: data, models, method and training schedule."""

import json
import os

from absl import flags

from keras_vid import distribute, experiment

FLAGS = flags.FLAGS


def define_flags(method_default="vid_i", verbose_default=1):
    """Defines the flags every distillation recipe takes."""
    flags.DEFINE_enum(
        "dataset",
        "fashion_mnist",
        ["fashion_mnist", "mnist", "cifar10", "cifar100"],
        "Data set, loaded offline through keras_vid.data.",
    )
    flags.DEFINE_string(
        "teacher",
        None,
        "A saved teacher (.keras) or a zoo architecture name; when an "
        "architecture is given, a teacher is trained and cached in --output_dir.",
    )
    flags.DEFINE_string(
        "teacher_arch",
        None,
        "Architecture of a saved --teacher file, used to pick its taps. "
        "Defaults to 'cnn' for Fashion-MNIST/MNIST and 'wrn-40-2' for CIFAR.",
    )
    flags.DEFINE_string("student", None, "Student architecture (keras_vid.models).")
    flags.DEFINE_string(
        "method", method_default, "keras_vid.methods name, e.g. vid_i, kd, vid_i+kd."
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
        "dataset": FLAGS.dataset,
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
        "teacher_cache": use_teacher_cache(FLAGS.dataset),
        "verbose": FLAGS.verbose,
        "overrides": parse_overrides(FLAGS.overrides),
    }
    return experiment.DistillConfig(**{**cfg, **fields})


def use_teacher_cache(dataset):
    """`--teacher_cache`, or by default: on unless `dataset` is augmented."""
    if FLAGS.teacher_cache is not None:
        return FLAGS.teacher_cache
    return not dataset.startswith("cifar")


def get_teacher(spec, dataset, output_dir, seed=0):
    """Loads or trains the teacher the flags name."""
    return experiment.get_teacher(
        spec,
        dataset,
        output_dir,
        epochs=FLAGS.teacher_epochs,
        seed=seed,
        manual_dir=FLAGS.manual_dir,
        samples_per_class=FLAGS.teacher_samples_per_class or None,
    )


def teacher_and_archs(default_student=None, defaults=None):
    """Returns (teacher spec, teacher architecture, student architecture).

    `--teacher` is a saved `.keras` file or an architecture name; for a file,
    `--teacher_arch` (or the data set's default) names its architecture, which
    picks the layers to pair. `defaults` replaces `default_archs(dataset)`.
    """
    t_arch, s_arch = defaults or default_archs(FLAGS.dataset)
    spec = FLAGS.teacher or t_arch
    is_file = spec.endswith(".keras") or os.path.sep in spec
    arch = FLAGS.teacher_arch or (t_arch if is_file else spec)
    return spec, arch, FLAGS.student or default_student or s_arch


def default_archs(dataset):
    """Returns the (teacher, student) architectures for a data set."""
    if dataset.startswith("cifar"):
        return "wrn-40-2", "wrn-16-1"
    return "cnn", "cnn-small"


def parse_overrides(text):
    """Parses --overrides as a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"--overrides must be a JSON object. Received: {text!r}"
        ) from e
    if not isinstance(value, dict):
        raise ValueError(f"--overrides must be a JSON object. Received: {text!r}")
    return value
