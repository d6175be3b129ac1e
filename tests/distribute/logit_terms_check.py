"""Run in a fresh process: two logical CPUs must be set before TF starts.

Trains a Distiller with DIST and a warmed-up DKD on two replicas, then
evaluates one global batch, and prints what the test compares with NumPy:
the logits, the labels, the logged term values and the warm-up counter.
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

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from conftest import conv_net  # noqa: E402

from keras_vid import Distiller  # noqa: E402
from keras_vid.transfer import DISTTerm, DKDTerm  # noqa: E402


def main():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    x = rng.random((24, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, 24)
    with strategy.scope():
        # No BatchNorm: its moving statistics would differ between replicas,
        # and the logits below are read outside them.
        teacher = conv_net(8, "t_", seed=1, bn=False)
        student = conv_net(4, "s_", seed=2, bn=False)
        d = Distiller(
            teacher,
            student,
            terms=[
                DISTTerm(temperature=2.0),
                DKDTerm(temperature=2.0, warmup_steps=10),
            ],
        )
        d.compile(keras.optimizers.SGD(0.01), loss=None)
    # Three steps of a global batch of 8, four examples per replica.
    d.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    x8, y8 = x[:8], y[:8]
    logs = d.evaluate(x8, y8, batch_size=8, verbose=0, return_dict=True)
    report = {
        "replicas": strategy.num_replicas_in_sync,
        "steps": int(np.array(d.terms[1].steps)),
        "teacher": np.asarray(teacher(x8, training=False)).tolist(),
        "student": np.asarray(student(x8, training=False)).tolist(),
        "labels": y8.tolist(),
        "dist": logs["dist/output"],
        "dkd": logs["dkd/output"],
    }
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
