"""The paper's comparison: methods x data sizes x seeds, in its table layout.

Paper setting (needs CIFAR-10 files, see keras_vid.data):

    python recipes/paper_table.py --dataset=cifar10 --teacher=wrn-40-2 \\
        --student=wrn-16-1 --sizes=5000,1000,500,100 --seeds=0,1,2 --epochs=200 \\
        --lr_schedule=step --learning_rate=0.05 --batch_size=64

The same layout on Fashion-MNIST (runs here, from Debian's package):

    python recipes/paper_table.py --dataset=fashion_mnist --sizes=500,100
"""

import json

from absl import app, flags

import common
from keras_vid import experiment

common.define_flags()
flags.DEFINE_list(
    "methods", ["student", "kd", "fitnet", "at", "vid_i"], "Methods to compare."
)
flags.DEFINE_list("sizes", ["6000", "1000", "500", "100"], "Images per class (N).")
flags.DEFINE_list("seeds", ["0"], "Seeds; each gives its own paired subset.")
FLAGS = common.FLAGS


def run_grid(cfg_base, teacher, methods, sizes, seeds, on_result=None, strategy=None):
    """Runs every (N, seed, method); same subset and init per (N, seed)."""
    results = []
    total = len(methods) * len(sizes) * len(seeds)
    for n in sizes:
        for seed in seeds:
            for method in methods:
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
    teacher_spec, arch, student = common.teacher_and_archs()
    base = experiment.DistillConfig(
        dataset=FLAGS.dataset,
        teacher=arch,
        student=student,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        lr_schedule=FLAGS.lr_schedule,
        manual_dir=FLAGS.manual_dir,
        overrides=common.parse_overrides(FLAGS.overrides),
        verbose=1,
    )
    teacher, acc = common.get_teacher(teacher_spec, FLAGS.dataset, FLAGS.output_dir)
    paper = (
        experiment.PAPER_CIFAR10
        if FLAGS.dataset == "cifar10"
        and (arch, base.student) == ("wrn-40-2", "wrn-16-1")
        else None
    )
    title = f"{FLAGS.dataset}: {arch} -> {base.student}, test accuracy (%)"

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
    )
    print(experiment.write_results(results, FLAGS.output_dir, title, paper))
    if acc is not None:
        print(json.dumps({"teacher_test_accuracy": acc}))


if __name__ == "__main__":
    app.run(main)
