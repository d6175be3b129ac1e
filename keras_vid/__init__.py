"""keras-vid: Variational Information Distillation for Keras 3 and TensorFlow."""

import importlib

from keras_vid import callbacks, pairing, regressors, transfer
from keras_vid.distiller import Distiller, LayerPair, VIDDistiller
from keras_vid.pairing import suggest_pairs
from keras_vid.taps import OUTPUT
from keras_vid.transfer import TransferTerm, VIDTerm

__version__ = "0.1.0"

# Heavier modules (tensorflow-datasets, keras-tuner) load on first use.
_LAZY = (
    "applications",
    "data",
    "experiment",
    "models",
    "methods",
    "reporting",
    "tuning",
)


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"keras_vid.{name}")
    raise AttributeError(f"module 'keras_vid' has no attribute {name!r}")


__all__ = [
    "OUTPUT",
    "Distiller",
    "LayerPair",
    "TransferTerm",
    "VIDDistiller",
    "VIDTerm",
    "callbacks",
    "pairing",
    "regressors",
    "suggest_pairs",
    "transfer",
]
