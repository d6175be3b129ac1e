"""Transfer methods, one module each, sharing the `TransferTerm` interface."""

from keras_vid.transfer.at import ATTerm
from keras_vid.transfer.base import TransferTerm
from keras_vid.transfer.dist import DISTTerm
from keras_vid.transfer.dkd import DKDTerm
from keras_vid.transfer.fitnet import FitNetTerm, fitnet_hint_pretraining
from keras_vid.transfer.kd import KDTerm
from keras_vid.transfer.nst import NSTTerm
from keras_vid.transfer.vid import VIDTerm

__all__ = [
    "ATTerm",
    "DISTTerm",
    "DKDTerm",
    "FitNetTerm",
    "KDTerm",
    "NSTTerm",
    "TransferTerm",
    "VIDTerm",
    "fitnet_hint_pretraining",
]
