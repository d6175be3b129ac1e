"""Faults: a SIGKILLed recipe resumes where it stopped, with the same result."""

import csv
import json
import os
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

    run(command(teacher_path, killed))
    with open(killed / "history.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    # The rerun starts at the saved epoch, not at 0. (CSVLogger's rows from
    # before the SIGKILL may be lost with its unflushed buffer.)
    rerun = epochs[epochs.index(saved) :]
    assert rerun == list(range(saved, 16))
    assert 0 not in rerun
    a = keras.saving.load_model(straight / "student.keras", safe_mode=True)
    b = keras.saving.load_model(killed / "student.keras", safe_mode=True)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)
    ra = json.loads((straight / "result.json").read_text())
    rb = json.loads((killed / "result.json").read_text())
    assert ra["test_accuracy"] == pytest.approx(rb["test_accuracy"], abs=1e-6)
