"""The paper's comparison: methods x data sizes x seeds, in its table layout.

Paper setting (needs CIFAR-10 files, see keras_vid.data):

    python recipes/paper_table.py --dataset=cifar10 --teacher=wrn-40-2 \\
        --student=wrn-16-1 --sizes=5000,1000,500,100 --seeds=0,1,2 --epochs=200 \\
        --lr_schedule=step --learning_rate=0.05 --batch_size=64

The same layout on Fashion-MNIST (runs here, from Debian's package), with a
WRN pair a 2-core CPU can train (docs/results.md has the measured table):

    python recipes/paper_table.py --dataset=fashion_mnist --sizes=500,100 \\
        --seeds=0,1,2

The teacher defaults to WRN-16-2 (trained for --teacher_epochs and cached in
--output_dir) and the student to WRN-10-1; see grid_archs.

Results are written after every run (results.json/.csv/.md, accuracy.png);
rerunning the same command skips the (method, N, seed) runs already in
results.json, so an interrupted grid resumes where it stopped.
"""

import dataclasses
import itertools
import json

from absl import app, flags

import common
from keras_vid import experiment, reporting

common.define_flags()
# `--help` lists the shared flags too, not only this file's.
flags.adopt_module_key_flags(common)
flags.DEFINE_list(
    "methods",
    ["student", "kd", "fitnet", "at", "vid_i", "vid_i+kd"],
    "Methods to compare: the paper's rows, then vid_i+kd, the recommended recipe.",
)
flags.DEFINE_list("sizes", ["6000", "1000", "500", "100"], "Images per class (N).")
flags.DEFINE_list("seeds", ["0"], "Seeds; each gives its own paired subset.")
FLAGS = common.FLAGS


def grid_archs(dataset):
    """The (teacher, student) WRN pair of the grid for `dataset`.

    CIFAR takes the paper's WRN-40-2 -> WRN-16-1. On the 28x28 grey data
    sets the default is WRN-16-2 -> WRN-10-1 (693k -> 78k parameters), a
    pair a 2-core CPU trains in about an hour for two N columns; pass
    `--teacher=wrn-40-2 --student=wrn-16-1` on a GPU for the paper's pair.
    """
    if dataset.startswith("cifar"):
        return "wrn-40-2", "wrn-16-1"
    return "wrn-16-2", "wrn-10-1"


def main(argv):
    del argv
    strategy = common.setup()
    teacher_spec, arch, student = common.teacher_and_archs(
        defaults=grid_archs(FLAGS.dataset)
    )
    base = common.config_from_flags(arch, student)
    # Checked before the teacher is trained or loaded, which can take long.
    previous = common.previous_results(arch, student)
    if previous:
        print(f"Resuming: {len(previous)} runs already in {FLAGS.output_dir}")
    teacher, acc = common.get_teacher(teacher_spec, common.dataset(), FLAGS.output_dir)
    paper = (
        reporting.PAPER_CIFAR10
        if FLAGS.dataset == "cifar10" and (arch, student) == ("wrn-40-2", "wrn-16-1")
        else None
    )
    title = f"{common.dataset()}: {arch} -> {student}, test accuracy (%)"
    cells = reporting.grid_cells(
        samples_per_class=[int(n) or None for n in FLAGS.sizes],
        seed=[int(s) for s in FLAGS.seeds],
        method=FLAGS.methods,
    )
    number = itertools.count(len(previous) + 1)

    def run_cell(cell):
        print(
            f"[{next(number)}/{len(cells)}] {cell['method']} "
            f"N={cell['samples_per_class']} seed={cell['seed']}"
        )
        cfg = dataclasses.replace(base, **cell)
        result = experiment.distill(cfg, teacher, strategy=strategy)
        print(f"    test accuracy {100 * result['test_accuracy']:.2f}%")
        return result

    common.run_grid(cells, run_cell, previous, title, paper)
    if acc is not None:
        print(json.dumps({"teacher_test_accuracy": acc}))


if __name__ == "__main__":
    app.run(main)
