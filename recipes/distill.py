"""One distillation run: a teacher, a student, a method.

    python recipes/distill.py --dataset=fashion_mnist --teacher=cnn \\
        --student=cnn-small --method=vid_i --samples_per_class=100 --epochs=30
"""

import json

from absl import app

import common
from keras_vid import experiment

common.define_flags()
FLAGS = common.FLAGS


def config_from_flags():
    """Builds the run's DistillConfig from the flags."""
    teacher, t_arch, s_arch = common.teacher_and_archs()
    return experiment.DistillConfig(
        dataset=FLAGS.dataset,
        teacher=t_arch,
        student=s_arch,
        method=FLAGS.method,
        samples_per_class=FLAGS.samples_per_class or None,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        lr_schedule=FLAGS.lr_schedule,
        clipnorm=FLAGS.clipnorm,
        seed=FLAGS.seed,
        output_dir=FLAGS.output_dir,
        manual_dir=FLAGS.manual_dir,
        strategy=FLAGS.strategy,
        teacher_cache=common.use_teacher_cache(FLAGS.dataset),
        verbose=FLAGS.verbose,
        overrides=common.parse_overrides(FLAGS.overrides),
    ), teacher


def main(argv):
    del argv
    strategy = common.setup()
    cfg, teacher_spec = config_from_flags()
    teacher, _ = common.get_teacher(teacher_spec, cfg.dataset, cfg.output_dir)
    result = experiment.distill(cfg, teacher, strategy=strategy)
    summary = {k: v for k, v in result.items() if k != "history"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app.run(main)
