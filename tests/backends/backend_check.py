"""Run in a fresh process with KERAS_BACKEND set: trains one distiller.

    KERAS_BACKEND=jax backend_check.py OUT_DIR [--save PATH] [--two-passes]
        [--data-parallel] [--no-tensorflow]

Builds a teacher and a student with weights drawn by NumPy (so every backend
starts from the same numbers), trains a VIDDistiller for two epochs of three
batches on fixed data (sample weights, two unlabelled examples per batch, an
activity regulariser in the student), and writes the logs, the teacher's
change, the weights after, and the student's predictions to
OUT_DIR/<variant>.npz, for two variants: `pinned` (VID with KD, fixed
settings) and `defaults` (`VIDDistiller`'s defaults: standardised VID
targets calibrated before training, DIST on the logits). The test compares
the files of two backends: TensorFlow runs keras-vid's own train_step, JAX
and PyTorch run Keras's step through `call` and `compute_loss`.
"""

import os
import sys

if "--no-tensorflow" in sys.argv:
    # As on a machine without TensorFlow: any import of it fails.
    sys.modules["tensorflow"] = None

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import conv_net  # noqa: E402

import keras_vid  # noqa: E402


def numpy_weights(model, seed):
    rng = np.random.default_rng(seed)
    values = []
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.path or "gamma" in w.path:
            values.append(rng.uniform(0.5, 1.5, shape).astype("float32"))
        else:
            values.append(rng.normal(0, 0.3, shape).astype("float32"))
    model.set_weights(values)


def run(variant, save=None):
    teacher = conv_net(8, "t_", seed=1)
    student = conv_net(4, "s_", seed=2)
    # An activity regulariser: its loss must reach the task loss on every
    # backend (on JAX it reaches only the top model's `losses`).
    student.get_layer("s_features").activity_regularizer = keras.regularizers.L2(0.01)
    numpy_weights(teacher, 1)
    numpy_weights(student, 2)
    pairs = [("t_stage1", "s_stage1"), ("t_stage2", "s_stage2")]
    if variant == "defaults":
        # The default recipe: standardised VID targets, DIST on the logits.
        distiller = keras_vid.VIDDistiller(teacher, student, pairs)
    else:
        distiller = keras_vid.VIDDistiller(
            teacher,
            student,
            pairs,
            vid_weight=[1.0, 2.0],
            logits="kd",
            regressor_batch_norm=False,
            standardize=False,
        )
    # The regressors' and variances' initial values, drawn by NumPy too.
    rng = np.random.default_rng(3)
    own = {id(v) for v in teacher.weights + student.weights}
    for v in distiller.weights:
        if id(v) not in own and "kernel" in v.path:
            v.assign(rng.normal(0, 0.3, tuple(v.shape)).astype("float32"))
    teacher_before = [keras.ops.convert_to_numpy(w) for w in teacher.weights]
    distiller.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    rng = np.random.default_rng(0)
    x = rng.random((48, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, 48)
    y[::8] = -1  # two unlabelled examples per batch of 16
    w = rng.uniform(0.5, 1.5, 48).astype("float32")
    hist = distiller.fit(
        x, y, sample_weight=w, batch_size=16, epochs=2, shuffle=False, verbose=0
    ).history
    evaluated = distiller.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    predictions = distiller.predict(x, batch_size=16, verbose=0)
    arrays = {f"log/{k}": np.asarray(v, "float64") for k, v in hist.items()}
    arrays.update({f"eval/{k}": np.asarray(v, "float64") for k, v in evaluated.items()})
    for i, v in enumerate(distiller.weights):
        arrays[f"weight/{i}/{v.path}"] = keras.ops.convert_to_numpy(v)
    for i, (a, v) in enumerate(zip(teacher_before, teacher.weights)):
        arrays[f"teacher_change/{i}"] = np.abs(a - keras.ops.convert_to_numpy(v))
    arrays["predictions"] = predictions
    if save:
        distiller.student.save(save)
    return arrays


def main():
    out = sys.argv[1]
    save = sys.argv[sys.argv.index("--save") + 1] if "--save" in sys.argv else None
    variants = ["pinned", "defaults"]
    if "--data-parallel" in sys.argv:
        # JAX only, with XLA_FLAGS=--xla_force_host_platform_device_count=2:
        # every batch split across two CPU devices.
        devices = keras.distribution.list_devices("cpu")
        assert len(devices) == 2, devices
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
    if "--two-passes" in sys.argv:
        # What the test must catch: compute_loss not finding the kept taps
        # runs the student a second time per step.
        keras_vid.distiller._same_tensors = lambda a, b: False
        variants = ["pinned"]
    for variant in variants:
        arrays = run(variant, save if variant == "pinned" else None)
        np.savez(os.path.join(out, f"{variant}.npz"), **arrays)
    print("DONE", keras.backend.backend())


if __name__ == "__main__":
    main()
