"""Run in a fresh process with KERAS_BACKEND set: trains one distiller.

    KERAS_BACKEND=jax backend_check.py OUT_DIR [--save PATH] [--two-passes]
        [--data-parallel] [--no-tensorflow]

Builds a teacher and a student with weights drawn by NumPy (so every backend
starts from the same numbers), trains a distiller for two epochs of three
batches on fixed data (sample weights, two unlabelled examples per batch, an
activity regulariser in the student), and writes the logs, the teacher's
change, the weights after (with their dtypes), the student's predictions and
the `jit_compile` that `fit` resolved to OUT_DIR/<variant>.npz, for these
variants:

- `pinned`: VID with KD, fixed settings. It is also saved whole
  (`distiller.save`), reloaded in the same process, and the reloaded
  distiller's predictions, `evaluate` logs and weights are written beside
  the original's (`reloaded/...`).
- `defaults`: `VIDDistiller`'s defaults: standardised VID targets calibrated
  before training, DIST on the logits.
- `bf16`: `pinned` under the `mixed_bfloat16` global policy (the policy is
  float32 again afterwards).
- `dkd`: `build_distiller("vid_i+dkd", ...)`, DKD with a linear warm-up of 4
  steps that the 6 training steps cross; DKD reads the labels, so the
  unlabelled examples reach it as masked-out rows. The warm-up counter and
  length are written as `info/dkd_steps` and `info/dkd_warmup_steps`.

`--two-passes` and `--data-parallel` run `pinned` and `defaults` only (no
reload), as their tests need no more. The test compares the files of two
backends: TensorFlow runs keras-vid's own train_step, JAX and PyTorch run
Keras's step through `call` and `compute_loss`.
"""

import os
import sys

if "--no-tensorflow" in sys.argv:
    # As on a machine without TensorFlow: conftest makes any import of it fail.
    os.environ["KERAS_VID_WITHOUT_TENSORFLOW"] = "1"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import conv_net  # noqa: E402, I001

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_vid  # noqa: E402
from keras_vid.methods import build_distiller  # noqa: E402

DKD_WARMUP = 4


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


def run(variant, save=None, reload_to=None):
    if variant != "bf16":
        return train(variant, save, reload_to)
    # Set before the models are built: a layer takes the global policy when
    # it is created.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        return train(variant, save, reload_to)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def train(variant, save=None, reload_to=None):
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
    elif variant == "dkd":
        # Through the method registry, as a recipe builds it: both pairs,
        # no KD, and a warm-up that ends two steps before training does.
        distiller = build_distiller(
            "vid_i+dkd",
            teacher,
            student,
            teacher_taps=[t for t, _ in pairs],
            student_taps=[s for _, s in pairs],
            vid_i_layers="all",
            vid_i_weight=2.0,
            dkd_warmup_steps=DKD_WARMUP,
        )
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
    arrays = outcome(distiller, x, y)
    arrays.update({f"log/{k}": np.asarray(v, "float64") for k, v in hist.items()})
    for i, (a, v) in enumerate(zip(teacher_before, teacher.weights)):
        arrays[f"teacher_change/{i}"] = np.abs(a - keras.ops.convert_to_numpy(v))
    # Resolved by `fit` from "auto": XLA on JAX.
    arrays["info/jit_compile"] = np.asarray(distiller.jit_compile)
    if variant == "dkd":
        (dkd,) = [t for t in distiller.terms if t.group == "dkd"]
        arrays["info/dkd_steps"] = keras.ops.convert_to_numpy(dkd.steps)
        arrays["info/dkd_warmup_steps"] = np.asarray(dkd.warmup_steps)
    if save:
        distiller.student.save(save)
    if reload_to:
        distiller.save(reload_to)
        loaded = keras.saving.load_model(reload_to)
        again = outcome(loaded, x, y)
        arrays.update({f"reloaded/{k}": v for k, v in again.items()})
    return arrays


def outcome(distiller, x, y):
    """The distiller's `evaluate` logs, predictions, weights and their dtypes."""
    evaluated = distiller.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    predictions = distiller.predict(x, batch_size=16, verbose=0)
    arrays = {f"eval/{k}": np.asarray(v, "float64") for k, v in evaluated.items()}
    for i, v in enumerate(distiller.weights):
        value = keras.ops.convert_to_numpy(v)
        arrays[f"weight/{i}/{v.path}"] = value
        arrays[f"dtype/{i}/{v.path}"] = np.asarray(str(v.dtype))
    for term in distiller.terms:
        if getattr(term, "regressor", None) is not None:
            # What the regressor computes in; its kernels' dtype is above.
            arrays[f"dtype/compute/{term.name}"] = np.asarray(
                term.regressor.compute_dtype
            )
    # bfloat16 outputs under mixed precision: float32 holds them exactly.
    arrays["dtype/predictions"] = np.asarray(str(predictions.dtype))
    arrays["predictions"] = np.asarray(predictions, "float32")
    return arrays


def main():
    out = sys.argv[1]
    save = sys.argv[sys.argv.index("--save") + 1] if "--save" in sys.argv else None
    # As test_backends.py's VARIANTS.
    variants = ["pinned", "defaults", "bf16", "dkd"]
    reload_to = os.path.join(out, "distiller.keras")
    if "--data-parallel" in sys.argv:
        # JAX only, with XLA_FLAGS=--xla_force_host_platform_device_count=2:
        # every batch split across two CPU devices.
        devices = keras.distribution.list_devices("cpu")
        assert len(devices) == 2, devices
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
        variants, reload_to = ["pinned", "defaults"], None
    if "--two-passes" in sys.argv:
        # What the test must catch: compute_loss not finding the kept taps
        # runs the student a second time per step.
        keras_vid.distiller._same_tensors = lambda a, b: False
        variants, reload_to = ["pinned"], None
    for variant in variants:
        pinned = variant == "pinned"
        arrays = run(variant, save if pinned else None, reload_to if pinned else None)
        np.savez(os.path.join(out, f"{variant}.npz"), **arrays)
    print("DONE", keras.backend.backend())


if __name__ == "__main__":
    main()
