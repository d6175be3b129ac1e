"""Callbacks and saving helpers that keep a long distillation run safe."""

import math
import os
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
