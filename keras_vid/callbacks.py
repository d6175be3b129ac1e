"""Callbacks and saving helpers that keep a long distillation run safe."""

import math
import os
import sys
import tempfile

import keras


class NonFiniteLossError(FloatingPointError):
    """Raised when a logged loss term becomes NaN or infinite."""


class TerminateOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and names the culprit.

    Unlike `keras.callbacks.TerminateOnNaN`, it checks every logged loss
    (`task_loss`, each `vid/<layer>`, `kd/output`, ...) and raises an error
    that names the terms that went non-finite and the step, so the run fails
    loudly instead of training on garbage. Checkpoints already written (for
    example by `keras.callbacks.BackupAndRestore`, which keeps its backup when
    training ends with an error) are left as they were: the last good state.

    Args:
        raise_error: raise `NonFiniteLossError` (default). With `False` it only
            sets `model.stop_training`, and the message is in `self.message`.

    Example:

    ```python
    stop = keras_vid.callbacks.TerminateOnNonFinite()
    distiller.fit(ds, epochs=100, callbacks=[stop])
    ```
    """

    def __init__(self, raise_error=True):
        super().__init__()
        self.raise_error = raise_error
        self.message = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = sorted(
            key
            for key, value in (logs or {}).items()
            if (key == "loss" or key.endswith("_loss") or "/" in key)
            and isinstance(value, (int, float))
            and not math.isfinite(value)
        )
        if not bad:
            return
        culprits = [k for k in bad if k not in ("loss",) and not k.endswith("_loss")]
        if "task_loss" in bad:
            culprits.insert(0, "task_loss")
        self.message = (
            f"Training stopped: non-finite loss at epoch {self._epoch + 1}, step "
            f"{batch + 1}. Non-finite terms: {culprits or bad}. Lower the learning "
            "rate or that term's weight, raise init_variance, or add gradient "
            "clipping (compile(optimizer=...(clipnorm=...))). Checkpoints written "
            "before this step are kept."
        )
        self.model.stop_training = True
        if self.raise_error:
            raise NonFiniteLossError(self.message)


class RunProgress(keras.callbacks.Callback):
    """One progress line per run of a grid, with the grid's overall bar.

    `run 4/6 (at)  epoch 9/30  loss 0.512  [#########-----------]  45%`

    On a terminal the line is redrawn in place after every epoch and kept
    when the run ends; elsewhere (a log file, CI) only the finished run's
    line is written. It replaces Keras's progress bars (use `verbose=0`).

    Args:
        run: this run's number, from 1.
        total: the number of runs in the grid.
        label: what the run is, e.g. the method's name.
        stream: where to write; defaults to `sys.stdout`.
        width: the bar's width in characters.

    Example:

    ```python
    for i, method in enumerate(methods):
        distiller.fit(ds, epochs=30, verbose=0,
                      callbacks=[RunProgress(i + 1, len(methods), method)])
    ```
    """

    def __init__(self, run, total, label, stream=None, width=20):
        super().__init__()
        self.run, self.total, self.label = int(run), int(total), str(label)
        self.stream = stream or sys.stdout
        self.width = int(width)
        self._line = ""

    def _render(self, epoch, logs):
        epochs = self.params.get("epochs") or 1
        share = (self.run - 1 + (epoch + 1) / epochs) / max(self.total, 1)
        filled = round(share * self.width)
        loss = (logs or {}).get("loss")
        loss = f"  loss {float(loss):.3f}" if loss is not None else ""
        return (
            f"run {self.run}/{self.total} ({self.label})  epoch {epoch + 1}/{epochs}"
            f"{loss}  [{'#' * filled}{'-' * (self.width - filled)}]  {share:4.0%}"
        )

    def _tty(self):
        return getattr(self.stream, "isatty", lambda: False)()

    def on_epoch_end(self, epoch, logs=None):
        self._line = self._render(epoch, logs)
        if self._tty():
            self.stream.write("\r" + self._line)
            self.stream.flush()

    def on_train_end(self, logs=None):
        if self._tty():
            self.stream.write("\n")
        elif self._line:
            self.stream.write(self._line + "\n")
        self.stream.flush()


def save_atomic(model, filepath, **kwargs):
    """Saves `model` to `filepath` atomically: a crash leaves the old file.

    Writes to a temporary file in the same directory, then renames it over
    `filepath` with `os.replace`, which is atomic on POSIX and Windows.

    Args:
        model: a `keras.Model`.
        filepath: the `.keras` path.
        **kwargs: passed to `model.save`.

    Returns:
        `filepath`.

    Example:

    ```python
    keras_vid.callbacks.save_atomic(distiller.student, "runs/student.keras")
    ```
    """
    filepath = os.fspath(filepath)
    directory = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".keras", prefix=".tmp-", dir=directory)
    os.close(fd)
    try:
        model.save(tmp, **kwargs)
        os.replace(tmp, filepath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return filepath
