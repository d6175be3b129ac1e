"""One distillation run: a teacher, a student, a method.

    python recipes/distill.py --dataset=fashion_mnist --teacher=cnn \\
        --student=cnn-small --method=vid_i --samples_per_class=100 --epochs=30
"""

import json

from absl import app, flags

import common
from keras_vid import experiment

common.define_flags()
# `--help` lists the shared flags too, not only this file's.
flags.adopt_module_key_flags(common)
FLAGS = common.FLAGS


def main(argv):
    del argv
    strategy = common.setup()
    teacher_spec, t_arch, s_arch = common.teacher_and_archs()
    cfg = common.config_from_flags(t_arch, s_arch, output_dir=FLAGS.output_dir)
    teacher, _ = common.get_teacher(teacher_spec, cfg.dataset, cfg.output_dir)
    result = experiment.distill(cfg, teacher, strategy=strategy)
    summary = {k: v for k, v in result.items() if k != "history"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app.run(main)
