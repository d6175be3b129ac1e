"""VIDDistiller on JAX and PyTorch, without TensorFlow, equals it on TensorFlow.

Each backend trains the same distiller from the same NumPy-drawn weights on
the same batches in its own process (`KERAS_BACKEND` is read at import).
TensorFlow runs keras-vid's own `train_step`; JAX and PyTorch run Keras's
step through `Distiller.call` and `Distiller.compute_loss`, a second code
path. Equal logs and weights show the terms, the masks of unlabelled
examples, sample weights, regularisers and the student's BatchNorm
statistics agree; the BatchNorm statistics would move twice per step if the
student ran twice (`--two-passes` shows the check catches that).

The same processes also train DKD with its warm-up (labels, a step counter
in a non-trainable variable), the pinned distiller under `mixed_bfloat16`
(checked against the same backend's float32 run and against TensorFlow's
bfloat16 run), and save and reload the whole pinned distiller.
"""

import importlib.util
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("jax", "torch")
# What backend_check.py trains in each backend's process.
VARIANTS = ("pinned", "defaults", "bf16", "dkd")


def train(backend, out, *flags, **env_vars):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env.update(env_vars)
    if backend != "tensorflow":
        # JAX and PyTorch train as on a machine without TensorFlow.
        flags = (*flags, "--no-tensorflow")
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "backend_check.py"), str(out), *flags],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0 and f"DONE {backend}" in proc.stdout, proc.stderr[
        -3000:
    ]
    return {
        name[:-4]: dict(np.load(out / name))
        for name in os.listdir(out)
        if name.endswith(".npz")
    }


def installed(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each backend's runs, trained once: `{backend: {variant: arrays}}`."""
    done = {}

    def get(backend):
        if backend not in done:
            installed(backend)
            root = tmp_path_factory.mktemp(backend)
            flags = ["--save", str(root / "student.keras")]
            done[backend] = train(backend, root, *flags)
            done[backend]["student"] = root / "student.keras"
        return done[backend]

    return get


def assert_same_run(ref, got, tol=1e-5):
    assert sorted(ref) == sorted(got)
    logs = [k for k in ref if k.startswith(("log/", "eval/"))]
    assert {"log/loss", "log/task_loss", "log/accuracy", "log/vid_loss"} <= set(logs)
    for key in ref:
        if key.startswith("info/"):
            continue  # what each backend resolved on its own (jit_compile)
        if key.startswith(("dtype/", "reloaded/dtype/")):
            assert got[key] == ref[key], key
            continue
        np.testing.assert_allclose(got[key], ref[key], rtol=tol, atol=tol, err_msg=key)
    # The frozen teacher never moves.
    for key in got:
        if key.startswith("teacher_change/"):
            assert got[key].max() == 0.0, key


def without_reload(arrays):
    return {k: v for k, v in arrays.items() if not k.startswith("reloaded/")}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["pinned", "defaults", "dkd"])
def test_backend_trains_like_tensorflow(backend, variant, runs):
    got = runs(backend)[variant]
    # KD for the pinned run, DIST with calibrated VID for the defaults, DKD
    # (and no other logit term) for the DKD run.
    assert ("log/kd_loss" in got) == (variant == "pinned")
    assert ("log/dist_loss" in got) == (variant == "defaults")
    assert ("log/dkd_loss" in got) == (variant == "dkd")
    assert_same_run(runs("tensorflow")[variant], got)


def test_jax_trains_with_xla(runs):
    # `jit_compile="auto"` resolves per backend; on JAX to XLA, so the JAX
    # runs that test_backend_trains_like_tensorflow finds equal to
    # TensorFlow's are XLA-compiled steps, not op-by-op ones.
    for variant in VARIANTS:
        assert runs("jax")[variant]["info/jit_compile"].item() is True, variant


# Every run's 2 epochs of 3 batches.
TRAIN_STEPS = 6


@pytest.mark.parametrize("backend", ("tensorflow", *BACKENDS))
def test_dkd_warmup_counts_each_training_step(backend, runs):
    # The warm-up counter advances inside the compiled step (a variable
    # update from `compute_loss` on JAX and PyTorch), once per training
    # step, and not in `evaluate` or `predict`, which ran after `fit`. The
    # run crosses the end of the warm-up, so the factor reached 1.
    got = runs(backend)["dkd"]
    assert 0 < got["info/dkd_warmup_steps"].item() < TRAIN_STEPS
    steps = got["info/dkd_steps"].item()
    assert steps == TRAIN_STEPS, f"the warm-up counted {steps} steps"
    assert np.isfinite(got["log/dkd_loss"]).all() and got["log/dkd_loss"].min() > 0


# bfloat16 keeps 8 significant bits (about 2 decimal digits of rounding per
# operation, 2**-9 relative). Measured on this 2-epoch run (CPU, Keras 3.15,
# TF 2.21, JAX 0.10.2, torch 2.13), the largest relative deviation of a loss
# log from the same backend's float32 run was 8.8e-3 (torch, epoch 1 of
# kd/output: 0.2316 vs 0.2305), from TensorFlow's bfloat16 run 4.1e-3 (JAX,
# kd/output). 3e-2 leaves a 3x margin; a term counted twice, or lost from
# the total, moves its log or `loss` by far more than that.
BF16_RTOL = 3e-2
BF16_ATOL = 1e-3
# The logits are below 0.4 here, where bfloat16's spacing is 2**-9 ~ 0.002;
# they deviated by at most 0.0068 (TensorFlow's bf16 run from torch's).
BF16_PREDICTION_ATOL = 2e-2
# Accuracy counts whole examples: one of the 42 labelled ones may flip.
LABELLED = 42


def assert_close_in_bf16(ref, got):
    logs = sorted(k for k in ref if k.startswith(("log/", "eval/")))
    assert logs == sorted(k for k in got if k.startswith(("log/", "eval/")))
    for key in logs:
        if key.endswith("accuracy"):
            np.testing.assert_allclose(
                got[key], ref[key], rtol=0, atol=1.01 / LABELLED, err_msg=key
            )
        else:
            np.testing.assert_allclose(
                got[key], ref[key], rtol=BF16_RTOL, atol=BF16_ATOL, err_msg=key
            )
    np.testing.assert_allclose(
        got["predictions"], ref["predictions"], rtol=0, atol=BF16_PREDICTION_ATOL
    )


@pytest.mark.parametrize("backend", ("tensorflow", *BACKENDS))
def test_bf16_mixed_precision_trains_like_float32(backend, runs):
    """`pinned` under `mixed_bfloat16` against the same backend's float32 run.

    Its logs are finite and close to float32's, the teacher does not move,
    the weights stay float32 variables (the VID variances and the regressor
    kernels among them) while the student and the regressors compute in
    bfloat16, and on JAX and PyTorch the run is close to TensorFlow's
    bfloat16 run.
    """
    got, float32 = runs(backend)["bf16"], runs(backend)["pinned"]
    for key in got:
        if key.startswith(("log/", "eval/")):
            assert np.isfinite(got[key]).all(), key
        if key.startswith("teacher_change/"):
            assert got[key].max() == 0.0, key
    assert_close_in_bf16(float32, got)
    # Mixed precision took effect: bfloat16 outputs and regressor math.
    assert got["dtype/predictions"] == "bfloat16"
    assert float32["dtype/predictions"] == "float32"
    compute = [k for k in got if k.startswith("dtype/compute/")]
    assert len(compute) == 2
    for key in compute:
        assert got[key] == "bfloat16" and float32[key] == "float32", key
    # ... and kept every weight float32, as the float32 run's.
    weights = [k for k in got if re.match(r"dtype/\d+/", k)]
    assert weights == [k for k in float32 if re.match(r"dtype/\d+/", k)]
    assert [k for k in weights if got[k] != "float32"] == []
    # Named, so that a renamed variable cannot drop them from the check.
    assert len([k for k in weights if k.endswith("/vid_alpha")]) == 2
    assert len([k for k in weights if "/regressor/" in k and "kernel" in k]) == 6
    if backend != "tensorflow":
        ref = runs("tensorflow")["bf16"]
        assert_close_in_bf16(ref, got)
        for key in ref:
            if key.startswith("dtype/"):
                assert got[key] == ref[key], key


@pytest.mark.parametrize("backend", ("tensorflow", *BACKENDS))
def test_whole_distiller_reloads_on_each_backend(backend, runs):
    # `distiller.save` then `keras.saving.load_model` in the same process:
    # the reloaded distiller (teacher, student, terms, regressors, compiled
    # loss and metrics) holds the same weights and evaluates and predicts as
    # the one that trained.
    got = runs(backend)["pinned"]
    reloaded = [k for k in got if k.startswith("reloaded/")]
    assert {
        "reloaded/eval/loss",
        "reloaded/eval/vid_loss",
        "reloaded/predictions",
    } <= set(reloaded)
    assert sorted(k[len("reloaded/") :] for k in reloaded) == sorted(
        k for k in got if k.startswith(("eval/", "weight/", "dtype/", "predictions"))
    )
    for key in reloaded:
        original = got[key[len("reloaded/") :]]
        if key.startswith(("reloaded/weight/", "reloaded/dtype/")):
            np.testing.assert_array_equal(got[key], original, err_msg=key)
        else:
            np.testing.assert_allclose(
                got[key], original, rtol=1e-6, atol=1e-6, err_msg=key
            )


def test_two_student_passes_would_be_caught(runs, tmp_path):
    installed("jax")
    got = train("jax", tmp_path, "--two-passes")["pinned"]
    bn = [k for k in got if "s_bn/moving_mean" in k]
    assert bn
    reference = runs("tensorflow")["pinned"][bn[0]]
    assert np.abs(got[bn[0]] - reference).max() > 1e-3


def test_jax_data_parallel_on_two_devices_equals_one(runs, tmp_path):
    # keras.distribution.DataParallel splits every batch over two CPU devices:
    # the terms, the masks and the BatchNorm statistics still see one batch.
    installed("jax")
    got = train(
        "jax",
        tmp_path,
        "--data-parallel",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    # It trains these two variants only, and does not reload them.
    for variant in ("pinned", "defaults"):
        assert_same_run(without_reload(runs("tensorflow")[variant]), got[variant])


@pytest.mark.parametrize("saved_on", BACKENDS)
def test_student_saved_on_another_backend_loads_here(saved_on, runs):
    # This process runs TensorFlow; the student was trained and saved on JAX
    # or PyTorch, and predicts here as it did there.
    run = runs(saved_on)
    student = keras.saving.load_model(run["student"])
    rng = np.random.default_rng(0)
    x = rng.random((48, 8, 8, 1), dtype="float32")
    np.testing.assert_allclose(
        student.predict(x, verbose=0),
        run["pinned"]["predictions"],
        rtol=1e-5,
        atol=1e-5,
    )
