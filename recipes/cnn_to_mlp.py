"""The heterogeneous experiment: a CNN teacher, an MLP student.

    python recipes/cnn_to_mlp.py --dataset=fashion_mnist --samples_per_class=100

By default VID pairs the two models' penultimate features (a linear mean,
vector to vector) with lambda 5: in the defaults study (docs/results.md) this
beat the student and KD over 3 seeds, while pairing the MLP's hidden vectors
with the CNN's stage maps (a vector-to-map regressor), at the CNN student's
lambda 20, pulled the MLP below its own baseline. `--mlp_pairs=stages` pairs
the hidden layers with the deepest stages instead.

Results are written after every run (results.json/.csv/.md, accuracy.png);
rerunning the same command skips the (method, seed) runs already in
results.json. Runs with other --mlp_pairs or --overrides are not told apart
there: give those their own --output_dir.
"""

from absl import app, flags

import common
from keras_vid import experiment, reporting

common.define_flags()
# `--help` lists the shared flags too, not only this file's.
flags.adopt_module_key_flags(common)
flags.DEFINE_list("methods", ["student", "kd", "vid_i", "vid_i+kd"], "Methods.")
flags.DEFINE_list("seeds", ["0"], "Seeds.")
flags.DEFINE_enum(
    "mlp_pairs",
    "features",
    ["features", "stages"],
    "VID pairs: the penultimate features only (lambda 5), or the hidden layers "
    "with the CNN's deepest stages plus the features (the CNN defaults).",
)

# The study's setting for an MLP student; --overrides keys take precedence.
MLP_FEATURES = {"vid_i_weight": 5.0, "vid_i_layers": "all"}
FLAGS = common.FLAGS


def main(argv):
    del argv
    strategy = common.setup()
    teacher_spec, arch, student = common.teacher_and_archs(default_student="mlp")
    previous = common.previous_results(arch, student)
    teacher, _ = common.get_teacher(teacher_spec, common.dataset(), FLAGS.output_dir)
    overrides = common.parse_overrides(FLAGS.overrides)
    if FLAGS.mlp_pairs == "features":
        overrides = {**MLP_FEATURES, **overrides}

    def run_cell(cell):
        print(f"{cell['method']} seed={cell['seed']}")
        cfg = common.config_from_flags(
            arch,
            student,
            **cell,
            overrides=overrides,
            taps=("features",) if FLAGS.mlp_pairs == "features" else None,
        )
        return experiment.distill(cfg, teacher, strategy=strategy)

    cells = reporting.grid_cells(
        samples_per_class=[FLAGS.samples_per_class or None],
        seed=[int(s) for s in FLAGS.seeds],
        method=FLAGS.methods,
    )
    title = f"{common.dataset()}: {arch} -> MLP, test accuracy (%)"
    common.run_grid(cells, run_cell, previous, title)


if __name__ == "__main__":
    app.run(main)
