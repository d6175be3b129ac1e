"""Run in a fresh process: two logical CPUs must be set before TF starts.

Runs a two-trial `RandomSearch` of `VIDHyperModel` under a `MirroredStrategy`
over two logical CPUs, records whether each trial's teacher and student
variables are mirrored, saves the best student and prints a JSON report.

    python tests/distribute/tuning_mirrored_check.py OUTPUT_DIR
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import conv_net  # noqa: E402

from keras_vid import reporting, tuning  # noqa: E402


def _mirrored(model):
    return all(
        isinstance(v.value, tf.distribute.DistributedValues) for v in model.weights
    )


class RecordingHyperModel(tuning.VIDHyperModel):
    """Records, for each build, whether the models' variables are mirrored."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records = []

    def build(self, hp):
        distiller = super().build(hp)
        if tf.distribute.has_strategy():
            self.records.append(
                {
                    "teacher": _mirrored(distiller.teacher),
                    "student": _mirrored(distiller.student),
                }
            )
        return distiller


def main():
    out = sys.argv[1]
    teacher_path = os.path.join(out, "teacher.keras")
    conv_net(8, "t_", seed=1).save(teacher_path)
    rng = np.random.default_rng(0)
    x = rng.random((48, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, 48)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[:24], y[:24])).batch(16)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    hypermodel = RecordingHyperModel(
        teacher_path,
        lambda: conv_net(4, "s_", seed=2),
        [("t_stage1", "s_stage1"), ("t_stage2", "s_stage2")],
        # KD off: the trials build the smallest distiller.
        fixed={"use_kd": False},
        seed=0,
        compile_kwargs={"jit_compile": False},
    )
    tuner = tuning.make_tuner(
        "random",
        hypermodel,
        max_trials=2,
        seed=1,
        directory=out,
        project_name="mirrored",
        distribution_strategy=strategy,
    )
    tuner.search(train, validation_data=val, epochs=1, verbose=0)
    rows, _ = reporting.trials_table(tuner)
    path = os.path.join(out, "student.keras")
    student = tuning.best_student(tuner, path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    report = {
        "replicas": strategy.num_replicas_in_sync,
        "statuses": [r["status"] for r in rows],
        "records": hypermodel.records,
        "student_layers": [layer.name for layer in loaded.layers],
        "max_pred_diff": float(
            np.abs(loaded.predict(x, verbose=0) - student.predict(x, verbose=0)).max()
        ),
    }
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
