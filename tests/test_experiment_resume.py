"""Faults: a SIGKILLed recipe resumes where it stopped, with the same result."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_vid import experiment

FMNIST = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(
    not os.path.isdir(FMNIST), reason="Debian's Fashion-MNIST absent"
)


def command(teacher, out):
    return [
        sys.executable,
        "recipes/distill.py",
        "--deterministic",
        "--method=vid_i",
        "--samples_per_class=20",
        "--epochs=16",
        "--seed=3",
        f"--teacher={teacher}",
        "--teacher_arch=cnn",
        f"--output_dir={out}",
    ]


def run(cmd):
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def without_replay(cmd):
    """The recipe, with the resume's iterator replay switched off."""
    script = (
        "import runpy, sys\n"
        "from keras_vid import experiment\n"
        "experiment._replay_iterators = lambda train, epochs: None\n"
        f"sys.argv = {cmd[1:]!r}\n"
        "sys.path.insert(0, 'recipes')\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    return [sys.executable, "-c", script]


def student_weights(out):
    return keras.saving.load_model(out / "student.keras", safe_mode=True).get_weights()


def test_sigkill_then_rerun_resumes_and_matches(tmp_path):
    teacher_path = str(tmp_path / "teacher.keras")
    experiment.train_teacher(
        "fashion_mnist",
        "cnn",
        epochs=1,
        samples_per_class=10,
        output_path=teacher_path,
        verbose=0,
    )
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run(command(teacher_path, straight))

    proc = subprocess.Popen(
        command(teacher_path, killed),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    meta = killed / "backup" / "training_metadata.json"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if experiment.resume_epoch(str(meta.parent)) >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = experiment.resume_epoch(str(meta.parent))
    assert saved >= 3
    assert not (killed / "student.keras").exists()  # it never finished
    # The same killed state, to be resumed without the iterator replay.
    shutil.copytree(killed, tmp_path / "no_replay")

    run(command(teacher_path, killed))
    rb = json.loads((killed / "result.json").read_text())
    # The rerun trained exactly the epochs after the last save.
    assert rb["epochs_run"] == list(range(saved, 16))
    # The history is complete: the rows written before the kill are kept,
    # those after the save are not doubled, and they match the straight run
    # (the loss to float tolerance, the epochs exactly).
    with open(killed / "history.csv") as f:
        resumed_rows = list(csv.DictReader(f))
    with open(straight / "history.csv") as f:
        straight_rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in resumed_rows] == list(range(16))
    np.testing.assert_allclose(
        [float(r["loss"]) for r in resumed_rows],
        [float(r["loss"]) for r in straight_rows],
        rtol=1e-5,
    )
    for u, v in zip(student_weights(straight), student_weights(killed)):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)
    ra = json.loads((straight / "result.json").read_text())
    assert ra["test_accuracy"] == pytest.approx(rb["test_accuracy"], abs=1e-6)
    assert ra["epochs_run"] == list(range(16))

    # Without the replay the resumed run sees other batches, so it ends
    # elsewhere: the replay is what makes the two runs equal.
    run(without_replay(command(teacher_path, tmp_path / "no_replay")))
    differences = [
        np.abs(u - v).max()
        for u, v in zip(
            student_weights(straight), student_weights(tmp_path / "no_replay")
        )
    ]
    assert max(differences) > 1e-3
