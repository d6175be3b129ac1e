"""`make demo`: VID against the baselines on Fashion-MNIST, on a laptop CPU.

1. Trains a CNN teacher (cached in --output_dir for reruns).
2. Distils a smaller CNN student with each method at N images per class,
   from the same images and the same initial weights.
3. Prints the comparison table and writes it with a plot to --output_dir.

Results are written after every method, and a rerun with the same flags
skips the methods already in --output_dir's results.json.
"""

import functools
import os
import time

from absl import app, flags

from keras_vid import experiment, reporting
from keras_vid.callbacks import RunProgress

flags.DEFINE_string("output_dir", "runs/demo", "Where results are written.")
flags.DEFINE_list(
    "methods",
    ["student", "kd", "fitnet", "at", "vid_i", "vid_i+kd"],
    "Methods to compare; vid_i+kd is the recommended recipe.",
)
flags.DEFINE_integer("samples_per_class", 100, "Training images per class.")
flags.DEFINE_integer("epochs", 30, "Student epochs.")
flags.DEFINE_integer("teacher_epochs", 2, "Teacher epochs.")
flags.DEFINE_integer(
    "teacher_samples_per_class",
    0,
    "Training images per class for the first run's teacher (0 = all 60,000 "
    "images); a smaller teacher is cached under its own name.",
    lower_bound=0,
)
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("manual_dir", None, "Directory with the Fashion-MNIST files.")
flags.DEFINE_integer(
    "verbose", 0, "0: one progress line per run; 1: Keras's progress bars."
)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    start = time.time()
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    # Checked before the teacher, which the first run trains.
    previous = reporting.previous_results(
        FLAGS.output_dir, teacher="cnn", student="cnn-small", epochs=FLAGS.epochs
    )
    print("Step 1/3: the teacher (cached after the first run)")
    teacher, acc = experiment.get_teacher(
        "cnn",
        "fashion_mnist",
        FLAGS.output_dir,
        epochs=FLAGS.teacher_epochs,
        seed=FLAGS.seed,
        manual_dir=FLAGS.manual_dir,
        # Trained once; a line per epoch, or Keras's bars with --verbose.
        verbose=FLAGS.verbose or 2,
        samples_per_class=FLAGS.teacher_samples_per_class or None,
    )
    if acc is not None:
        print(f"Teacher test accuracy: {100 * acc:.2f}%")
    print(f"Step 2/3: distil at N={FLAGS.samples_per_class} images per class")
    methods = FLAGS.methods

    def run_cell(cell):
        method = cell["method"]
        i = methods.index(method)
        if FLAGS.verbose:
            print(f"[{i + 1}/{len(methods)}] {method}")
        cfg = experiment.DistillConfig(
            dataset="fashion_mnist",
            teacher="cnn",
            student="cnn-small",
            **cell,
            epochs=FLAGS.epochs,
            manual_dir=FLAGS.manual_dir,
            # Fashion-MNIST is not augmented, so the teacher's taps are
            # computed once and reused every epoch.
            teacher_cache=True,
            verbose=FLAGS.verbose,
        )
        progress = [] if FLAGS.verbose else [RunProgress(i + 1, len(methods), method)]
        result = experiment.distill(cfg, teacher, callbacks=progress)
        print(f"    {method}: test accuracy {100 * result['test_accuracy']:.2f}%")
        return result

    cells = reporting.grid_cells(
        samples_per_class=[FLAGS.samples_per_class], seed=[FLAGS.seed], method=methods
    )
    title = f"Fashion-MNIST, N={FLAGS.samples_per_class}: cnn -> cnn-small"
    write = functools.partial(reporting.write_results, title=title)
    results = reporting.run_grid(
        cells, run_cell, FLAGS.output_dir, write=write, previous=previous
    )
    print("Step 3/3: results")
    print(reporting.markdown_table(results))
    print(
        f"Wrote {FLAGS.output_dir}/results.md and accuracy.png "
        f"in {time.time() - start:.0f} s"
    )


if __name__ == "__main__":
    app.run(main)
