"""Run in a fresh process: two logical CPUs must be set before TF starts.

Trains the same distiller on one replica and on two, for the same global
batch, and prints a JSON report of the largest differences.
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

import keras_vid  # noqa: E402

BN = "sync" if "--sync-bn" in sys.argv else False


def run(devices, extra_terms):
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        teacher = conv_net(8, "t_", seed=1, bn=BN)
        student = conv_net(4, "s_", seed=2, bn=BN)
        terms = []
        if extra_terms:
            from keras_vid.transfer import KDTerm

            terms = [KDTerm(weight=0.5)]
        d = keras_vid.VIDDistiller(
            teacher,
            student,
            [("t_stage1", "s_stage1"), ("t_stage2", "s_stage2")],
            vid_weight=[1.0, 2.0],
            terms=terms,
        )
        keras.utils.set_random_seed(3)
        d.compile(
            keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, 64)
    w = rng.random(64).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(16)
    hist = d.fit(ds, epochs=3, verbose=0).history
    weights = [np.array(v) for v in d.student.weights + d.trainable_weights]
    return hist, weights


def main():
    extra = "--kd" in sys.argv
    h1, w1 = run(["/cpu:0"], extra)
    h2, w2 = run(["/cpu:0", "/cpu:1"], extra)
    report = {
        "keys": sorted(h1),
        "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(w1, w2)),
        "max_log_diff": max(float(np.abs(np.subtract(h1[k], h2[k])).max()) for k in h1),
        "loss_1": h1["loss"],
        "loss_2": h2["loss"],
    }
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
