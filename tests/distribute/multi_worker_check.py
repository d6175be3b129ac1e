"""One worker of a MultiWorkerMirroredStrategy run, or the single-process run.

Run in a fresh process (the strategy must be created before TF runs an op):

    multi_worker_check.py OUT_DIR --ports P0,P1 --index I [--backup DIR]
        [--interrupt-at EPOCH] [--epochs N] [--sync-bn]
    multi_worker_check.py OUT_DIR            # one process, no strategy

With `--ports`, it sets TF_CONFIG for a cluster of workers on 127.0.0.1 and
trains under `get_strategy("multi_worker")`; without, it trains the same
distiller on the same global batches with no strategy. It writes the student
and distiller weights to `OUT_DIR/<name>.npz` and a JSON report (history, the
epochs it ran, replicas) to `OUT_DIR/<name>.json`, where <name> is
`worker<I>` or `single`. With `--interrupt-at E` it raises at the start of
epoch E (after `BackupAndRestore` saved epoch E - 1), writes the report and
exits with `INTERRUPTED`.
"""

import argparse
import json
import os
import sys
import time

START = time.time()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

INTERRUPTED = 3
GLOBAL_BATCH = 16


def log(message):
    """Progress on stderr, with seconds since start (shown when a test fails)."""
    print(f"[{time.time() - START:6.1f}s] {message}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--ports", default=None)
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--backup", default=None)
    p.add_argument("--interrupt-at", type=int, default=None)
    p.add_argument("--sync-bn", action="store_true")
    return p.parse_args()


ARGS = parse_args()
if ARGS.ports:
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ARGS.ports.split(",")]},
            "task": {"type": "worker", "index": ARGS.index},
        }
    )
else:
    os.environ.pop("TF_CONFIG", None)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# One CPU replica per worker.
tf.config.set_visible_devices([], "GPU")

import keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from conftest import conv_net  # noqa: E402

import keras_vid  # noqa: E402
from keras_vid import distribute  # noqa: E402

BN = "sync" if ARGS.sync_bn else False


class Interrupt(Exception):
    pass


class Recorder(keras.callbacks.Callback):
    """Records the epochs run; raises at `interrupt_at` to simulate a failure."""

    def __init__(self, interrupt_at=None):
        super().__init__()
        self.epochs = []
        self.interrupt_at = interrupt_at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.interrupt_at:
            raise Interrupt(f"interrupted at epoch {epoch}")
        self.epochs.append(epoch)


def dataset():
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, 64)
    w = rng.random(64).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(GLOBAL_BATCH)
    # DATA: every worker reads the whole pipeline; the strategy splits each
    # global batch into per-replica batches and each worker keeps its own, so
    # step k trains on batch k, as in the single process.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return ds.with_options(options)


def main():
    log("imported")
    strategy = distribute.get_strategy("multi_worker" if ARGS.ports else "default")
    log(f"strategy ready: {strategy.num_replicas_in_sync} replicas")
    with strategy.scope():
        teacher = conv_net(8, "t_", seed=1, bn=BN)
        student = conv_net(4, "s_", seed=2, bn=BN)
        d = keras_vid.VIDDistiller(
            teacher,
            student,
            [("t_stage1", "s_stage1"), ("t_stage2", "s_stage2")],
            vid_weight=[1.0, 2.0],
            # VID alone on raw taps with the paper's regressor, as this check
            # was written for.
            kd_weight=None,
            standardize=False,
            regressor_batch_norm=False,
        )
        keras.utils.set_random_seed(3)
        d.compile(
            keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    recorder = Recorder(ARGS.interrupt_at)
    callbacks = [recorder]
    if ARGS.backup:
        backup_dir = distribute.worker_backup_dir(ARGS.backup, strategy)
        callbacks.insert(0, keras.callbacks.BackupAndRestore(backup_dir))
    name = f"worker{ARGS.index}" if ARGS.ports else "single"
    report = {
        "replicas": strategy.num_replicas_in_sync,
        "multi_worker": distribute.is_multi_worker(strategy),
        "worker_index": distribute.worker_index(strategy),
    }
    log("training")
    try:
        report["history"] = d.fit(
            dataset(), epochs=ARGS.epochs, callbacks=callbacks, verbose=0
        ).history
        report["evaluate"] = d.evaluate(dataset(), verbose=0, return_dict=True)
        code = 0
    except Interrupt:
        code = INTERRUPTED
    log(f"trained epochs {recorder.epochs}")
    report["epochs"] = recorder.epochs
    report["interrupted"] = code == INTERRUPTED
    weights = [np.array(v) for v in d.student.weights + d.trainable_weights]
    np.savez(os.path.join(ARGS.out, name + ".npz"), *weights)
    with open(os.path.join(ARGS.out, name + ".json"), "w") as f:
        json.dump(report, f)
    print("REPORT " + json.dumps(report), flush=True)
    log("done")
    return code


if __name__ == "__main__":
    sys.exit(main())
