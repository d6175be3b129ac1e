"""The defaults study: VID variants beside the baselines, N x seeds.

    python recipes/study.py --sizes=500,100 --seeds=0,1,2 --output_dir=runs/study

Each variant is a method name plus overrides (keras_vid.methods.DEFAULTS
keys) and, optionally, the layers to pair. Every variant of a (N, seed) cell
trains from the same images and the same initial student weights. Results are
written after each run (results.json/.csv/.md, accuracy.png), so an
interrupted study keeps what it has; rerunning skips the runs already done.
"""

from absl import app, flags

import common
from keras_vid import experiment, reporting

common.define_flags()
# `--help` lists the shared flags too, not only this file's.
flags.adopt_module_key_flags(common)
flags.DEFINE_list("sizes", ["100"], "Images per class (N).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_list("variants", None, "Variant labels to run (default: all).")
FLAGS = common.FLAGS

STAGES = ["stage1", "stage2", "stage3"]

# label: (method, overrides, layers to pair or None for the recipe's default)
VARIANTS = {
    "student": ("student", {}, None),
    "kd": ("kd", {}, None),
    "fitnet": ("fitnet", {}, None),
    "at": ("at", {}, None),
    # RepDistiller's constants: lambda 1, per-element mean, variance 5,
    # eps 1e-5, every stage paired.
    "vid_i (RepDistiller)": (
        "vid_i",
        {
            "vid_i_weight": 1.0,
            "vid_init_variance": 5.0,
            "vid_eps": 1e-5,
            "vid_i_layers": "all",
        },
        STAGES,
    ),
    "vid_i (keras-vid)": ("vid_i", {}, None),
    "vid_i+vid_lp": ("vid_i+vid_lp", {}, None),
    "vid_i+kd": ("vid_i+kd", {}, None),
}


def main(argv):
    del argv
    strategy = common.setup()
    teacher_spec, arch, student = common.teacher_and_archs()
    previous = common.previous_results(arch, student)
    teacher, _ = common.get_teacher(teacher_spec, common.dataset(), FLAGS.output_dir)
    title = f"{common.dataset()}: {arch} -> {student}, test accuracy (%)"

    def run_cell(cell):
        label, n, seed = cell["method"], cell["samples_per_class"], cell["seed"]
        method, overrides, taps = VARIANTS[label]
        cfg = common.config_from_flags(
            arch,
            student,
            method=method,
            samples_per_class=n,
            seed=seed,
            overrides=overrides,
            taps=taps,
        )
        result = experiment.distill(cfg, teacher, strategy=strategy)
        print(
            f"{label:24s} N={n:<5d} seed={seed} "
            f"{100 * result['test_accuracy']:.2f}% ({result['seconds']} s)",
            flush=True,
        )
        return result  # run_grid records it under its label

    cells = reporting.grid_cells(
        samples_per_class=[int(v) for v in FLAGS.sizes],
        seed=[int(v) for v in FLAGS.seeds],
        method=FLAGS.variants or list(VARIANTS),
    )
    common.run_grid(cells, run_cell, previous, title)


if __name__ == "__main__":
    app.run(main)
