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
# Small enough to clip every step of this tiny problem.
CLIPS = {"global": {"global_clipnorm": 0.05}, "norm": {"clipnorm": 0.02}}
CLIP = next((CLIPS[a.split("=")[1]] for a in sys.argv if a.startswith("--clip=")), {})


def run(devices, extra_terms):
    if "--mixed" in sys.argv:
        keras.config.set_dtype_policy("mixed_float16")
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        teacher = conv_net(8, "t_", seed=1, bn=BN)
        student = conv_net(4, "s_", seed=2, bn=BN)
        terms = []
        if extra_terms:
            from keras_vid.transfer import KDTerm

            terms = [KDTerm(weight=0.5)]
        if "--unlabeled" in sys.argv:
            from keras_vid.transfer import DKDTerm

            # A term that needs labels: it averages over the labelled ones.
            terms = [*terms, DKDTerm(weight=0.5, temperature=2.0)]
        # VID on raw taps with the paper's regressor (KD only as --kd's term),
        # as this check was written for; --defaults keeps the default
        # standardised targets, KD term and synchronised regressor BatchNorm.
        pinned = {
            "kd_weight": None,
            "standardize": False,
            "regressor_batch_norm": False,
        }
        defaults = {} if "--defaults" in sys.argv else pinned
        d = keras_vid.VIDDistiller(
            teacher,
            student,
            [("t_stage1", "s_stage1"), ("t_stage2", "s_stage2")],
            vid_weight=[1.0, 2.0],
            terms=terms,
            **defaults,
        )
        keras.utils.set_random_seed(3)
        d.compile(
            keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-3, **CLIP),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, 64)
    w = rng.random(64).astype("float32")
    if "--unlabeled" in sys.argv:
        # The second half of every global batch of 16 is unlabelled: on two
        # replicas, the second replica's shard holds no labelled example,
        # and the first batch's first half only one.
        y[np.arange(64) % 16 >= 8] = -1
        y[1:8] = -1
    ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(16)
    hist = d.fit(ds, epochs=3, verbose=0).history
    if "--mixed" in sys.argv:
        # Keras wraps the optimiser in a LossScaleOptimizer for float16.
        assert isinstance(d.optimizer, keras.optimizers.LossScaleOptimizer)
    weights = [np.array(v) for v in d.student.weights + d.trainable_weights]
    return hist, weights


def max_diff(a, b):
    return max(float(np.abs(u - v).max()) for u, v in zip(a, b))


def main():
    extra = "--kd" in sys.argv
    h1, w1 = run(["/cpu:0"], extra)
    h2, w2 = run(["/cpu:0", "/cpu:1"], extra)
    report = {}
    if CLIP:
        clip = dict(CLIP)
        CLIP.clear()  # one unclipped run, to show the clip acts
        _, w_unclipped = run(["/cpu:0"], extra)
        CLIP.update(clip)
        report["clip_effect"] = max_diff(w1, w_unclipped)
        # Without apply_across_replicas, Keras clips each replica's gradient.
        keep = keras_vid.distribute.apply_across_replicas
        keras_vid.distribute.apply_across_replicas = lambda opt, g, v: opt.apply(g, v)
        _, w_keras = run(["/cpu:0", "/cpu:1"], extra)
        keras_vid.distribute.apply_across_replicas = keep
        report["keras_clip_replica_diff"] = max_diff(w1, w_keras)
    report = {
        **report,
        "keys": sorted(h1),
        "max_weight_diff": max_diff(w1, w2),
        "max_log_diff": max(float(np.abs(np.subtract(h1[k], h2[k])).max()) for k in h1),
        "loss_1": h1["loss"],
        "loss_2": h2["loss"],
    }
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
