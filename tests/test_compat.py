"""Every private API in keras_vid._compat.PRIVATE exists in the installed packages."""

import importlib
import re

import keras
import keras_tuner as kt
import pytest
import tensorflow as tf

from keras_vid import _compat


def _functional():
    inp = keras.Input((2,))
    return keras.Model(inp, keras.layers.Dense(1)(inp))


def _compiled():
    model = _functional()
    model.compile("sgd", "mse")
    return model


def _sequential():
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])


def _optimizer():
    opt = keras.optimizers.AdamW()
    opt.exclude_from_weight_decay(var_list=[keras.Variable(1.0)])
    return opt


OWNERS = {
    "keras.Sequential": _sequential,
    "keras.Model (functional)": _functional,
    "keras.optimizers.Optimizer": _optimizer,
    "keras.Model": _compiled,
    "tf.distribute.MultiWorkerMirroredStrategy.extended": lambda: (
        tf.distribute.MirroredStrategy().extended
    ),
    "keras_tuner.Tuner": lambda: kt.Tuner,
    "keras_tuner.src.engine.metrics_tracking": lambda: importlib.import_module(
        "keras_tuner.src.engine.metrics_tracking"
    ),
    "keras.src.backend.common.masking": lambda: importlib.import_module(
        "keras.src.backend.common.masking"
    ),
    "tensorflow_datasets.core.download.download_manager": lambda: (
        importlib.import_module("tensorflow_datasets.core.download.download_manager")
    ),
    "tensorflow_datasets.core.hashing": lambda: importlib.import_module(
        "tensorflow_datasets.core.hashing"
    ),
}


@pytest.mark.parametrize(
    "owner, name, where, why", _compat.PRIVATE, ids=[p[1] for p in _compat.PRIVATE]
)
def test_private_api_exists(owner, name, where, why):
    assert owner in OWNERS, f"add a way to build {owner!r} to OWNERS"
    obj = OWNERS[owner]()
    assert hasattr(obj, name), (
        f"The installed packages lack {owner}.{name}, which keras-vid uses in "
        f"{where}: {why} Update keras_vid/_compat.py for this version."
    )


def test_every_private_touch_goes_through_compat():
    # The private names of PRIVATE appear in the package only in _compat (and
    # in the method overrides it lists), so an upgrade has one file to check.
    import pathlib

    root = pathlib.Path(_compat.__file__).parent
    overrides = {
        "_maybe_symbolic_build",
        "_make_function",
        "_configure_tensorboard_dir",
    }
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "_compat.py":
            continue
        text = path.read_text()
        for _, name, _, _ in _compat.PRIVATE:
            if name in overrides or name in ("_compile_loss", "_loss_tracker"):
                continue
            if re.search(rf"(?<!_compat)\.{name}\b", text):
                offenders.append(f"{path.name}: .{name}")
    assert not offenders, offenders
