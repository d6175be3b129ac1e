"""The recipes no other test runs, end to end on tiny Fashion-MNIST subsets.

Each recipe runs as a subprocess, as a user runs it, with the smallest flags
that still take its real path: 5 images per class, 1 epoch, one seed and
small models (a `cnn-tiny` teacher trained once for the module by
recipes/train_teacher.py). The test split is always the full 10,000 images,
which is most of each run's time on a CPU.
"""

import csv
import json
import math
import os
import shlex
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_vid import data, experiment
from keras_vid.callbacks import save_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FMNIST = "/usr/share/datasets/fashion-mnist"
needs_fmnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")),
    reason="Debian's Fashion-MNIST absent",
)
TINY = ["--samples_per_class=5", "--epochs=1"]
TEACHER_ARCH = "cnn-tiny"


def run(script, *args):
    proc = subprocess.run(
        [sys.executable, f"recipes/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def check_runs(results, methods, **expected):
    """Each run in order, with `expected`'s values and a valid accuracy."""
    assert [r["method"] for r in results] == methods
    for r in results:
        for key, value in expected.items():
            assert r[key] == value, (r["method"], key)
        assert math.isfinite(r["test_accuracy"]) and 0.0 <= r["test_accuracy"] <= 1
        assert math.isfinite(r["test_loss"])
        assert all(math.isfinite(v) for v in r["history"]["loss"])


def check_report(out, methods):
    """results.md has a row per method; the CSV and the plot were written."""
    report = (out / "results.md").read_text()
    for m in methods:
        assert f"| {m} |" in report, m
    with open(out / "results.csv") as f:
        assert [row["method"] for row in csv.DictReader(f)] == methods
    assert (out / "accuracy.png").stat().st_size > 0
    return report


def sample_images(n=4):
    x, _ = data.load_arrays("fashion_mnist", "test")
    return x[:n].astype("float32") / 255.0


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """recipes/train_teacher.py on 5 images per class: `(output dir, stdout)`."""
    out = tmp_path_factory.mktemp("teacher") / "out"  # the recipe creates it
    proc = run(
        "train_teacher.py",
        f"--arch={TEACHER_ARCH}",
        "--epochs=1",
        "--samples_per_class=5",
        "--batch_size=16",
        f"--output_dir={out}",
    )
    return out, proc.stdout


@pytest.fixture(scope="module")
def teacher_flags(teacher):
    out, _ = teacher
    path = out / f"teacher_{TEACHER_ARCH}_fashion_mnist.keras"
    return [f"--teacher={path}", f"--teacher_arch={TEACHER_ARCH}"]


@needs_fmnist
@pytest.mark.slow
def test_train_teacher_saves_a_loadable_teacher(teacher):
    out, stdout = teacher
    info = json.loads((out / "teacher.json").read_text())
    assert info["arch"] == TEACHER_ARCH and info["dataset"] == "fashion_mnist"
    assert info["samples_per_class"] == 5
    assert 0.0 <= info["test_accuracy"] <= 1.0
    path = out / f"teacher_{TEACHER_ARCH}_fashion_mnist.keras"
    assert f"-> {path}" in stdout
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert model.input_shape == (None, 28, 28, 1)
    logits = model.predict(sample_images(), verbose=0)
    assert logits.shape == (4, 10) and np.isfinite(logits).all()
    # Its taps are the architecture's, so the recipes can pair them.
    for tap in ("stage1", "stage2", "stage3", "features"):
        model.get_layer(tap)


@needs_fmnist
@pytest.mark.slow
def test_demo_reuses_its_cached_teacher_and_reports_each_method(tmp_path):
    """`make demo`'s recipe, shrunk; the teacher is the one a first run cached."""
    out = tmp_path / "demo"
    cached = experiment.teacher_cache_path("cnn", "fashion_mnist", str(out))
    save_atomic(experiment.build_model("cnn", "fashion_mnist"), cached)
    before = os.stat(cached).st_mtime_ns
    methods = ["student", "vid_i+kd"]
    proc = run(
        "demo.py", f"--output_dir={out}", f"--methods={','.join(methods)}", *TINY
    )
    # The cached teacher was loaded, not trained (nor overwritten) again.
    assert "Teacher test accuracy" not in proc.stdout
    assert os.stat(cached).st_mtime_ns == before
    for step in ("Step 1/3", "Step 2/3: distil at N=5", "Step 3/3"):
        assert step in proc.stdout
    results = json.loads((out / "results.json").read_text())
    check_runs(
        results,
        methods,
        dataset="fashion_mnist",
        teacher="cnn",
        student="cnn-small",
        samples_per_class=5,
        epochs=1,
        seed=0,
    )
    assert {"vid_loss", "kd_loss"} <= set(results[1]["history"])
    report = check_report(out, methods)
    assert "Fashion-MNIST, N=5: cnn -> cnn-small" in report


@needs_fmnist
@pytest.mark.slow
def test_study_resumes_an_interrupted_grid_without_retraining(teacher_flags, tmp_path):
    out = tmp_path / "study"

    def study(*variants):
        return run(
            "study.py",
            *teacher_flags,
            f"--student={TEACHER_ARCH}",
            *TINY,
            "--sizes=5",
            "--seeds=0",
            f"--variants={','.join(variants)}",
            "--verbose=0",
            f"--output_dir={out}",
        )

    # The variant with its own constants and every stage paired.
    first = study("vid_i (RepDistiller)")
    (before,) = json.loads((out / "results.json").read_text())
    assert first.stdout.count(" seed=0 ") == 1  # a line per run trained
    assert "vid_loss" in before["history"]

    # A grid stopped after its first run: the rerun trains only the other.
    again = study("student", "vid_i (RepDistiller)")
    trained = [line for line in again.stdout.splitlines() if " seed=0 " in line]
    assert len(trained) == 1 and trained[0].startswith("student ")
    results = json.loads((out / "results.json").read_text())
    assert results[0] == before  # kept as it was, not trained again
    check_runs(
        results,
        ["vid_i (RepDistiller)", "student"],
        teacher=TEACHER_ARCH,
        student=TEACHER_ARCH,
        samples_per_class=5,
        seed=0,
        epochs=1,
    )
    report = check_report(out, ["vid_i (RepDistiller)", "student"])
    assert f"fashion_mnist: {TEACHER_ARCH} -> {TEACHER_ARCH}" in report


@needs_fmnist
@pytest.mark.slow
def test_cnn_to_mlp_distils_an_mlp_with_each_method(teacher_flags, tmp_path):
    out = tmp_path / "cnn_to_mlp"
    proc = run(
        "cnn_to_mlp.py", *teacher_flags, *TINY, "--verbose=0", f"--output_dir={out}"
    )
    methods = ["student", "kd", "vid_i", "vid_i+kd"]  # the recipe's default
    results = json.loads((out / "results.json").read_text())
    check_runs(
        results,
        methods,
        teacher=TEACHER_ARCH,
        student="mlp",
        samples_per_class=5,
        seed=0,
        epochs=1,
    )
    for r in results:
        assert ("vid_loss" in r["history"]) == r["method"].startswith("vid_i")
        assert ("kd_loss" in r["history"]) == ("kd" in r["method"])
    report = check_report(out, methods)
    assert f"{TEACHER_ARCH} -> MLP" in report and "| vid_i+kd |" in proc.stdout


@needs_fmnist
@pytest.mark.slow
def test_tune_writes_its_trials_and_a_best_student(teacher_flags, tmp_path):
    out = tmp_path / "tune"
    run(
        "tune.py",
        *teacher_flags,
        "--student=mlp",
        *TINY,
        "--val_per_class=5",
        "--max_trials=2",
        "--verbose=0",
        f"--output_dir={out}",
    )
    with open(out / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == 2
    assert (out / "trials.md").read_text().count("\n|") >= 3  # header, rule, rows
    assert (out / "trials.png").stat().st_size > 0
    best = json.loads((out / "best.json").read_text())
    assert best["objective"] == "val_accuracy" and best["direction"] == "max"
    assert best["validation"] == "holdout"
    assert best["best_trial"] in {t["trial_id"] for t in trials}
    assert 0.0 <= best["best_value"] <= 1.0
    assert 0.0 <= best["test_accuracy"] <= 1.0
    assert {"vid_i_weight", "vid_init_variance", "learning_rate"} <= set(
        best["hyperparameters"]
    )
    assert best["teacher"] == teacher_flags[0].partition("=")[2]
    assert best["student"] == str(out / "best_student.keras")
    # The student alone: no teacher, no regressors, and it predicts.
    student = keras.saving.load_model(best["student"], safe_mode=True)
    assert student.input_shape == (None, 28, 28, 1) and student.name == "mlp"
    logits = student.predict(sample_images(), verbose=0)
    assert logits.shape == (4, 10) and np.isfinite(logits).all()
    assert (out / "tuner").is_dir()
    # The best trial's settings, as distill.py flags: the overrides are the
    # trial's values under the same names, and the command runs.
    argv = shlex.split(best["distill_command"])
    flags = dict(a[2:].split("=", 1) for a in argv[2:])
    overrides = json.loads(flags["overrides"])
    assert argv[:2] == ["python", "recipes/distill.py"]
    assert flags["teacher"] == best["teacher"] and flags["student"] == "mlp"
    for key in ("vid_i_weight", "vid_init_variance", "learning_rate"):
        value = flags[key] if key == "learning_rate" else overrides[key]
        assert float(value) == best["hyperparameters"][key]
    assert ("vid_i_layers" in overrides) == (not best["distill_command_omits"])
    run("distill.py", *argv[2:], "--verbose=0")
    again = json.loads((out / "best_distill" / "result.json").read_text())
    assert again["method"] == flags["method"] and again["student"] == "mlp"


@pytest.mark.parametrize(
    "flag",
    [
        "--unlabeled=rest",
        "--unlabeled_dir=/tmp",
        "--teacher_cache",
        "--strategy=multi_worker",
    ],
)
def test_tune_refuses_what_its_trials_cannot_honour(flag, tmp_path):
    out = tmp_path / "tune"
    proc = subprocess.run(
        [sys.executable, "recipes/tune.py", flag, f"--output_dir={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert f"ValueError: {flag.split('=')[0]}" in proc.stderr
    assert "is not supported by tune.py" in proc.stderr
    assert not out.exists()  # refused before a teacher was trained


def test_ci_fails_without_fashion_mnist(tmp_path):
    """With KERAS_VID_REQUIRE_FASHION_MNIST set (CI), missing data ends the run."""
    env = {
        **os.environ,
        "KERAS_VID_REQUIRE_FASHION_MNIST": "1",
        "KERAS_VID_TEST_FASHION_MNIST_DIR": str(tmp_path / "nowhere"),
    }
    # Collecting one small file: had the check let the session start, this
    # would list its tests and exit 0.
    args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--co"]
    proc = subprocess.run(
        [sys.executable, *args, "tests/test_errors_table.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "apt-get install dataset-fashion-mnist" in output
    assert str(tmp_path / "nowhere" / "train-images-idx3-ubyte.gz") in output
    assert "would skip silently" in output
    assert "collected" not in output  # stopped before collecting anything
