"""The heterogeneous experiment: a CNN teacher, an MLP student.

    python recipes/cnn_to_mlp.py --dataset=fashion_mnist --samples_per_class=100

The MLP's hidden layers are paired with the CNN's deepest stages; VID's
vector-to-map regressor maps each hidden vector to the teacher's map.
"""

from absl import app, flags

import common
from keras_vid import experiment

common.define_flags()
flags.DEFINE_list("methods", ["student", "kd", "vid_i", "vid_i+kd"], "Methods.")
flags.DEFINE_list("seeds", ["0"], "Seeds.")
FLAGS = common.FLAGS


def main(argv):
    del argv
    strategy = common.setup()
    teacher_spec = FLAGS.teacher or "cnn"
    arch = FLAGS.teacher_arch or (
        "cnn" if teacher_spec.endswith(".keras") else teacher_spec
    )
    teacher, _ = common.get_teacher(teacher_spec, FLAGS.dataset, FLAGS.output_dir)
    results = []
    for seed in [int(s) for s in FLAGS.seeds]:
        for method in FLAGS.methods:
            cfg = experiment.DistillConfig(
                dataset=FLAGS.dataset,
                teacher=arch,
                student=FLAGS.student or "mlp",
                method=method,
                samples_per_class=FLAGS.samples_per_class or None,
                epochs=FLAGS.epochs,
                batch_size=FLAGS.batch_size,
                learning_rate=FLAGS.learning_rate,
                lr_schedule=FLAGS.lr_schedule,
                seed=seed,
                manual_dir=FLAGS.manual_dir,
                overrides=common.parse_overrides(FLAGS.overrides),
            )
            print(f"{method} seed={seed}")
            results.append(experiment.distill(cfg, teacher, strategy=strategy))
    title = f"{FLAGS.dataset}: {arch} -> MLP, test accuracy (%)"
    print(experiment.write_results(results, FLAGS.output_dir, title))


if __name__ == "__main__":
    app.run(main)
