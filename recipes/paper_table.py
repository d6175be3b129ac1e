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

import json

from absl import app, flags

import common
from keras_vid import experiment

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


def run_grid(
    cfg_base,
    teacher,
    methods,
    sizes,
    seeds,
    on_result=None,
    strategy=None,
    previous=(),
):
    """Runs every (N, seed, method); same subset and init per (N, seed).

    Runs already in `previous` (results of an earlier, interrupted grid) are
    kept and not run again.
    """
    results = list(previous)
    done = {(r["method"], r["samples_per_class"], r["seed"]) for r in results}
    total = len(methods) * len(sizes) * len(seeds)
    for n in sizes:
        for seed in seeds:
            for method in methods:
                if (method, n, seed) in done:
                    continue
                cfg = experiment.DistillConfig(
                    **{
                        **cfg_base.__dict__,
                        "method": method,
                        "samples_per_class": n,
                        "seed": seed,
                        "output_dir": None,
                    }
                )
                print(f"[{len(results) + 1}/{total}] {method} N={n} seed={seed}")
                result = experiment.distill(cfg, teacher, strategy=strategy)
                print(f"    test accuracy {100 * result['test_accuracy']:.2f}%")
                results.append(result)
                if on_result:
                    on_result(results)
    return results


def main(argv):
    del argv
    strategy = common.setup()
    teacher_spec, arch, student = common.teacher_and_archs(
        defaults=grid_archs(FLAGS.dataset)
    )
    base = common.config_from_flags(arch, student)
    # Checked before the teacher is trained or loaded, which can take long.
    previous = experiment.previous_results(
        FLAGS.output_dir,
        dataset=base.dataset,
        teacher=arch,
        student=base.student,
        epochs=base.epochs,
        clipnorm=base.clipnorm or None,
    )
    if previous:
        print(f"Resuming: {len(previous)} runs already in {FLAGS.output_dir}")
    teacher, acc = common.get_teacher(teacher_spec, common.dataset(), FLAGS.output_dir)
    paper = (
        experiment.PAPER_CIFAR10
        if FLAGS.dataset == "cifar10"
        and (arch, base.student) == ("wrn-40-2", "wrn-16-1")
        else None
    )
    title = f"{common.dataset()}: {arch} -> {base.student}, test accuracy (%)"

    def checkpoint(results):
        # Written after every run, so an interrupted grid keeps what it has.
        experiment.write_results(results, FLAGS.output_dir, title, paper)

    results = run_grid(
        base,
        teacher,
        FLAGS.methods,
        [int(n) or None for n in FLAGS.sizes],
        [int(s) for s in FLAGS.seeds],
        on_result=checkpoint,
        strategy=strategy,
        previous=previous,
    )
    print(experiment.write_results(results, FLAGS.output_dir, title, paper))
    if acc is not None:
        print(json.dumps({"teacher_test_accuracy": acc}))


if __name__ == "__main__":
    app.run(main)
