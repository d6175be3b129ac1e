"""The recipes' library side: grids, tables, tap pairing, the paper layout."""

import json
import os

import keras
import numpy as np
import pytest
from fake_data import register_archive, write_tiny_cifar

from keras_vid import experiment, models, reporting

FMNIST = "/usr/share/datasets/fashion-mnist"


def test_paired_taps_align_the_deepest_layers():
    assert experiment.paired_taps("wrn-40-2", "wrn-16-1") == (
        ["stage1", "stage2", "stage3"],
        ["stage1", "stage2", "stage3"],
    )
    assert experiment.paired_taps("cnn", "mlp") == (
        ["stage2", "stage3"],
        ["hidden1", "hidden2"],
    )


def test_markdown_table_mean_std_and_paper_numbers():
    results = [
        {"method": "kd", "samples_per_class": 100, "test_accuracy": a, "seed": s}
        for s, a in enumerate([0.60, 0.70])
    ] + [{"method": "kd", "samples_per_class": 500, "test_accuracy": 0.8, "seed": 0}]
    table = reporting.markdown_table(results, paper={"kd": {100: 64.24}})
    # mean 65, sample std sqrt(50) = 7.07
    assert "| kd | 80.00 | 65.00 ± 7.07 (paper 64.24) |" in table
    assert table.splitlines()[0] == "| method | N=500 | N=100 |"


def test_lr_schedules():
    step = experiment.lr_schedule("step", 0.1, 100)
    assert [round(float(step(i)), 6) for i in (0, 49, 51, 80)] == [
        0.1,
        0.1,
        0.01,
        0.001,
    ]
    cos = experiment.lr_schedule("cosine", 0.1, 100)
    assert float(cos(0)) == pytest.approx(0.1) and float(cos(100)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="lr_schedule"):
        experiment.lr_schedule("linear", 0.1, 10)


def test_paper_grid_on_mock_cifar10(tmp_path, monkeypatch):
    """The paper's CIFAR-10 layout, through tfds with tfds.testing.mock_data."""
    import tensorflow_datasets as tfds

    path, _ = write_tiny_cifar(monkeypatch, tmp_path / "manual")
    register_archive(monkeypatch, "cifar10", path)
    keras.utils.set_random_seed(0)
    teacher = models.get_model("wrn-16-1", num_classes=10)  # small stand-in
    base = experiment.DistillConfig(
        dataset="cifar10",
        teacher="wrn-16-1",
        student="wrn-16-1",
        epochs=1,
        batch_size=16,
        samples_per_class=None,
        manual_dir=str(tmp_path / "manual"),
        data_dir=str(tmp_path / "tfds"),
        source="tfds",
        verbose=0,
    )
    results = []
    import tensorflow as tf

    # vid_i runs under a (one-device) MirroredStrategy, as --strategy=mirrored.
    strategies = {"student": None, "vid_i": tf.distribute.MirroredStrategy(["/cpu:0"])}
    with tfds.testing.mock_data(num_examples=16):
        for method in ("student", "vid_i"):
            cfg = experiment.DistillConfig(**{**base.__dict__, "method": method})
            results.append(
                experiment.distill(cfg, teacher, strategy=strategies[method])
            )
    assert [r["method"] for r in results] == ["student", "vid_i"]
    assert "vid/stage3" in results[1]["history"]
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in results)
    table = reporting.write_results(results, str(tmp_path / "out"), "mock")
    assert "| vid_i |" in table
    for name in ("results.json", "results.csv", "results.md", "accuracy.png"):
        assert os.path.getsize(tmp_path / "out" / name) > 0


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="Debian's Fashion-MNIST absent")
def test_distill_recipe_end_to_end(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "recipes/distill.py",
        "--method=vid_i+kd",
        "--samples_per_class=5",
        "--epochs=2",
        "--teacher=cnn",
        "--teacher_epochs=1",
        "--teacher_samples_per_class=20",
        f"--output_dir={out}",
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "vid_i+kd" and result["epochs"] == 2
    assert "kd_loss" in result["history"] and "vid_loss" in result["history"]
    student = keras.saving.load_model(out / "student.keras", safe_mode=True)
    assert student.output_shape == (None, 10)
    assert np.isfinite(result["test_accuracy"])
    assert any(p.name == "logs" for p in out.iterdir())  # TensorBoard


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"not a model"])
def test_corrupt_or_truncated_teacher_file(tmp_path, content):
    path = tmp_path / "teacher.keras"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="corrupt, truncated or not a Keras model"):
        experiment.load_teacher(str(path))


def test_truncated_real_teacher_file(tmp_path):
    path = tmp_path / "teacher.keras"
    models.get_model("cnn-small").save(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt, truncated"):
        experiment.load_teacher(str(path))
    with pytest.raises(FileNotFoundError, match="No teacher at"):
        experiment.load_teacher(str(tmp_path / "missing.keras"))


def _run_recipe(args, out):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, *args, f"--output_dir={out}", "--verbose=0"]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="Debian's Fashion-MNIST absent")
def test_paper_table_resumes_an_interrupted_grid(tmp_path):
    """A rerun skips the runs results.json holds and refuses other settings."""
    out = tmp_path / "grid"
    common = [
        "recipes/paper_table.py",
        "--sizes=5",
        "--epochs=1",
        "--teacher=cnn",
        "--student=cnn-small",
        "--teacher_epochs=1",
        "--teacher_samples_per_class=20",
    ]
    first = _run_recipe([*common, "--methods=student"], out)
    assert first.returncode == 0, first.stderr[-3000:]
    before = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in before] == ["student"]
    assert before[0]["teacher"] == "cnn" and before[0]["student"] == "cnn-small"
    assert before[0]["clipnorm"] == 20.0  # the recipes' default

    second = _run_recipe([*common, "--methods=student,vid_i"], out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming: 1 runs" in second.stdout
    after = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in after] == ["student", "vid_i"]
    assert after[0] == before[0]  # kept as it was, not run again
    assert "| vid_i |" in (out / "results.md").read_text()

    other = _run_recipe([*common, "--methods=student", "--epochs=2"], out)
    assert other.returncode != 0
    assert "epochs=1, but this grid has epochs=2" in other.stderr
    other = _run_recipe([*common, "--methods=student", "--clipnorm=0"], out)
    assert other.returncode != 0
    assert "clipnorm=20.0, but this grid has clipnorm=None" in other.stderr
    assert json.loads((out / "results.json").read_text()) == after


def test_previous_results_refuses_corrupt_json(tmp_path):
    assert reporting.previous_results(str(tmp_path)) == []
    (tmp_path / "results.json").write_text('[{"method": "kd", "epo')
    with pytest.raises(ValueError, match="not valid JSON.*Move it away"):
        reporting.previous_results(str(tmp_path), epochs=30)


def test_write_results_replaces_files_atomically(tmp_path, monkeypatch):
    """A failure while writing leaves the previous results.json intact."""
    runs = [
        {"method": "kd", "samples_per_class": 5, "seed": 0, "test_accuracy": 0.5},
    ]
    reporting.write_results(runs, str(tmp_path))
    good = (tmp_path / "results.json").read_text()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(reporting.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        reporting.write_results(runs * 2, str(tmp_path))
    assert (tmp_path / "results.json").read_text() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "accuracy.png",
        "results.csv",
        "results.json",
        "results.md",
    ]


def test_recipe_help_lists_every_method_and_the_shared_flags():
    import subprocess
    import sys

    from keras_vid.methods import available_methods

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "recipes/distill.py", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # absl's --help exits with status 1, so the text is what is checked.
    text = " ".join(proc.stdout.split())
    assert "--method" in text, proc.stderr[-2000:]
    for name in available_methods():
        assert f" {name}," in text or f" {name}, or" in text, name
    assert "joined by '+'" in text
    for flag in ("--dataset", "--samples_per_class", "--overrides"):
        assert flag in text


def test_plot_is_a_bar_chart_for_one_n_and_lines_for_several(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    calls = []
    for name in ("bar", "errorbar"):
        original = getattr(Axes, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            calls.append((_name, len(args[0])))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Axes, name, spy)

    def rows(sizes):
        return [
            {
                "method": m,
                "samples_per_class": n,
                "seed": s,
                "test_accuracy": a + s / 100,
            }
            for m, a in (("student", 0.8), ("vid_i", 0.85))
            for n in sizes
            for s in (0, 1)
        ]

    reporting.plot_accuracy(rows([100]), str(tmp_path / "one.png"))
    # (Axes.bar draws its own error bars through errorbar.)
    assert calls[0] == ("bar", 2) and len(calls) <= 2
    assert (tmp_path / "one.png").stat().st_size > 0
    calls.clear()
    reporting.plot_accuracy(rows([100, 500]), str(tmp_path / "two.png"))
    assert calls == [("errorbar", 2), ("errorbar", 2)]
