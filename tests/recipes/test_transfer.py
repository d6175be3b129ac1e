"""recipes/transfer.py end to end on tiny image folders, and what it refuses."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_task(root, classes, per_class=8, seed=0):
    rng = np.random.default_rng(seed)
    for i, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for j in range(per_class):
            image = (rng.random((12, 12, 1)) * 60 + 90 * i).astype("uint8")
            (folder / f"{j}.png").write_bytes(tf.io.encode_png(image).numpy())
    return root


def run(*args):
    proc = subprocess.run(
        [sys.executable, "recipes/transfer.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    return (
        write_task(root / "source", ["a", "b", "c"]),
        write_task(root / "target", ["d", "e"], seed=1),
    )


@pytest.mark.slow
def test_transfer_grid_from_a_zoo_teacher(tasks, tmp_path):
    source, target = tasks
    out = tmp_path / "out"
    common = [
        f"--source={source}",
        f"--target={target}",
        "--teacher=cnn",
        "--teacher_epochs=1",
        "--sizes=3",
        "--seeds=0",
        "--epochs_by_size=3:2",
        f"--output_dir={out}",
    ]
    proc = run(*common, "--methods=student,at,vid_i,finetune")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in rows] == ["student", "at", "vid_i", "finetune"]
    for r in rows:
        assert 0.0 <= r["test_accuracy"] <= 1.0
        assert (r["dataset"], r["source"], r["samples_per_class"]) == (
            str(target),
            str(source),
            3,
        )
    # The teacher was trained on the source's 3 classes and cached.
    assert any(name.startswith("teacher_cnn_") for name in os.listdir(out))
    assert (out / "accuracy.png").exists()
    # Rerun: every run is already there, nothing trains again.
    again = run(*common, "--methods=student,at,vid_i,finetune")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "results.json").read_text()) == rows


def test_logit_methods_are_refused_before_any_work(tasks, tmp_path):
    source, target = tasks
    for method in ("vid_i+kd", "vid_lp"):
        proc = run(
            f"--source={source}",
            f"--target={target}",
            f"--methods=student,{method}",
            f"--output_dir={tmp_path / method}",
        )
        assert proc.returncode != 0
        assert "ValueError" in proc.stderr and "do not apply" in proc.stderr
        assert not (tmp_path / method).exists()


@pytest.mark.slow
def test_keras_applications_teacher_on_grey_images(tasks, tmp_path):
    _, target = tasks
    out = tmp_path / "apps"
    proc = run(
        "--teacher=keras.applications.MobileNetV2",
        "--teacher_weights=none",
        "--teacher_image_size=32",
        f"--target={target}",
        "--methods=vid_i,finetune",
        "--sizes=3",
        "--seeds=0",
        "--epochs_by_size=3:1",
        f"--output_dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in rows] == ["vid_i", "finetune"]
    assert "global_average_pooling2d" in proc.stderr  # the features pair
