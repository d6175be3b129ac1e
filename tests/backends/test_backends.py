"""VIDDistiller on JAX and PyTorch, without TensorFlow, equals it on TensorFlow.

Each backend trains the same distiller from the same NumPy-drawn weights on
the same batches in its own process (`KERAS_BACKEND` is read at import).
TensorFlow runs keras-vid's own `train_step`; JAX and PyTorch run Keras's
step through `Distiller.call` and `Distiller.compute_loss`, a second code
path. Equal logs and weights show the terms, the masks of unlabelled
examples, sample weights, regularisers and the student's BatchNorm
statistics agree; the BatchNorm statistics would move twice per step if the
student ran twice (`--two-passes` shows the check catches that).
"""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("jax", "torch")


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
        np.testing.assert_allclose(got[key], ref[key], rtol=tol, atol=tol, err_msg=key)
    # The frozen teacher never moves.
    for key in got:
        if key.startswith("teacher_change/"):
            assert got[key].max() == 0.0, key


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["pinned", "defaults"])
def test_backend_trains_like_tensorflow(backend, variant, runs):
    got = runs(backend)[variant]
    # KD for the pinned run, DIST with calibrated VID for the defaults.
    assert ("log/kd_loss" in got) == (variant == "pinned")
    assert ("log/dist_loss" in got) == (variant == "defaults")
    assert_same_run(runs("tensorflow")[variant], got)


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
    for variant in ("pinned", "defaults"):
        assert_same_run(runs("tensorflow")[variant], got[variant])


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
