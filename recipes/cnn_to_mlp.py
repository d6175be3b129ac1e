"""The heterogeneous experiment: a CNN teacher, an MLP student.

    python recipes/cnn_to_mlp.py --dataset=fashion_mnist --samples_per_class=100

By default VID pairs the two models' penultimate features (a linear mean,
vector to vector) with lambda 5: in the defaults study (docs/results.md) this
beat the student and KD over 3 seeds, while pairing the MLP's hidden vectors
with the CNN's stage maps (a vector-to-map regressor), at the CNN student's
lambda 20, pulled the MLP below its own baseline. `--mlp_pairs=stages` pairs
the hidden layers with the deepest stages instead.
"""

from absl import app, flags

import common
from keras_vid import experiment

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
    teacher, _ = common.get_teacher(teacher_spec, common.dataset(), FLAGS.output_dir)
    overrides = common.parse_overrides(FLAGS.overrides)
    if FLAGS.mlp_pairs == "features":
        overrides = {**MLP_FEATURES, **overrides}
    results = []
    for seed in [int(s) for s in FLAGS.seeds]:
        for method in FLAGS.methods:
            cfg = common.config_from_flags(
                arch,
                student,
                method=method,
                seed=seed,
                overrides=overrides,
                taps=("features",) if FLAGS.mlp_pairs == "features" else None,
            )
            print(f"{method} seed={seed}")
            results.append(experiment.distill(cfg, teacher, strategy=strategy))
    title = f"{common.dataset()}: {arch} -> MLP, test accuracy (%)"
    print(experiment.write_results(results, FLAGS.output_dir, title))


if __name__ == "__main__":
    app.run(main)
