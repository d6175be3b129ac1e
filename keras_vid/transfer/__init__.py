"""Transfer methods, one module each, sharing the `TransferTerm` interface."""

from keras_vid.transfer.base import TransferTerm
from keras_vid.transfer.vid import VIDTerm

__all__ = ["TransferTerm", "VIDTerm"]
