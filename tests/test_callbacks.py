"""Non-finite losses stop training with a named culprit; saves are atomic."""

import io
import os

import keras
import numpy as np
import pytest
from conftest import ce_loss

from keras_vid import VIDDistiller
from keras_vid.callbacks import (
    NonFiniteLossError,
    RunProgress,
    TerminateOnNonFinite,
    save_atomic,
)


def test_non_finite_vid_pair_is_named(models, data):
    x, y = data
    teacher, student = models
    # VID alone on raw taps: the overflow shows up at the step of the bad
    # batch, not in statistics calibrated on the whole (bad) training set.
    d = VIDDistiller(
        teacher,
        student,
        [("t_stage1", "s_stage1"), ("t_stage2", "s_stage2")],
        kd_weight=None,
        standardize=False,
    )
    d.compile(keras.optimizers.SGD(0.01), loss=ce_loss())
    x_bad = x.copy()
    # A huge input makes the teacher's later activations overflow float32.
    x_bad[8:16] = 1e38
    with pytest.raises(
        NonFiniteLossError, match=r"epoch 1, step 2.*vid/s_stage"
    ) as err:
        d.fit(
            x_bad,
            y,
            batch_size=8,
            shuffle=False,
            epochs=1,
            verbose=0,
            callbacks=[TerminateOnNonFinite()],
        )
    assert "task_loss" in str(err.value) or "vid/" in str(err.value)


def test_finite_training_is_untouched(models, data):
    x, y = data
    d = VIDDistiller(*models, [("t_stage1", "s_stage1")])
    d.compile("sgd", loss=ce_loss())
    cb = TerminateOnNonFinite()
    d.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    assert cb.message is None


def test_save_atomic_keeps_old_file_on_crash(models, tmp_path, monkeypatch):
    teacher, student = models
    path = tmp_path / "student.keras"
    save_atomic(student, path)
    before = path.read_bytes()

    def crash(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_atomic(student, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["student.keras"]  # no temp left
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.get_weights()[0], student.get_weights()[0])
    assert os.path.getsize(path) > 0


def _tiny_fit(callback, epochs=3):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).random((8, 4), dtype="float32")
    model.fit(x, np.zeros((8, 2)), epochs=epochs, verbose=0, callbacks=[callback])


def test_run_progress_writes_one_line_per_run_off_a_terminal():
    stream = io.StringIO()
    _tiny_fit(RunProgress(2, 4, "at", stream=stream))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    # Run 2 of 4 finished: half the grid, 10 of the 20 cells.
    assert lines[0].startswith("run 2/4 (at)  epoch 3/3  loss ")
    assert lines[0].endswith("[##########----------]   50%")


def test_run_progress_redraws_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    _tiny_fit(RunProgress(1, 2, "vid", stream=stream, width=4), epochs=2)
    text = stream.getvalue()
    redraws = text.split("\r")[1:]
    assert [r.split("  ")[1] for r in redraws] == ["epoch 1/2", "epoch 2/2"]
    # 1/2 of run 1 is 25% of the grid, all of it 50%; one final newline.
    assert redraws[0].endswith("[#---]   25%") and redraws[1].endswith("[##--]   50%\n")
