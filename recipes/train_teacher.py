"""Trains a teacher from the model zoo and saves it.

    python recipes/train_teacher.py --dataset=fashion_mnist --arch=cnn \\
        --epochs=5 --output_dir=runs/teacher
"""

import os

from absl import app, flags

from keras_vid import experiment, reporting

flags.DEFINE_enum(
    "dataset",
    "fashion_mnist",
    ["fashion_mnist", "mnist", "cifar10", "cifar100"],
    "Data.",
)
flags.DEFINE_string("arch", "cnn", "Teacher architecture (keras_vid.models).")
flags.DEFINE_integer("epochs", 5, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
flags.DEFINE_integer(
    "samples_per_class",
    0,
    "Training images per class, drawn with --seed (0 = all); for quick trials.",
    lower_bound=0,
)
flags.DEFINE_float(
    "learning_rate", None, "Initial learning rate (default: 0.05 SGD, 2e-3 Adam)."
)
flags.DEFINE_enum(
    "optimizer", None, ["sgd", "adam"], "Default: SGD for WRNs, Adam otherwise."
)
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("manual_dir", None, "Directory with the raw data files.")
flags.DEFINE_string("output_dir", "runs/teacher", "Where the teacher is written.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    path = os.path.join(FLAGS.output_dir, f"teacher_{FLAGS.arch}_{FLAGS.dataset}.keras")
    _, acc = experiment.train_teacher(
        FLAGS.dataset,
        FLAGS.arch,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        optimizer=FLAGS.optimizer,
        seed=FLAGS.seed,
        samples_per_class=FLAGS.samples_per_class or None,
        manual_dir=FLAGS.manual_dir,
        output_path=path,
    )
    reporting.write_json(
        {
            "arch": FLAGS.arch,
            "dataset": FLAGS.dataset,
            "samples_per_class": FLAGS.samples_per_class or None,
            "test_accuracy": acc,
        },
        os.path.join(FLAGS.output_dir, "teacher.json"),
        indent=None,
    )
    print(f"Teacher {FLAGS.arch}: test accuracy {100 * acc:.2f}% -> {path}")


if __name__ == "__main__":
    app.run(main)
