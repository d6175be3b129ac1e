"""Every docstring example in keras_vid runs and prints what it shows."""

import doctest
import importlib
import os
import pkgutil

import numpy as np
import pytest

import keras_vid

FMNIST = "/usr/share/datasets/fashion-mnist"
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(keras_vid.__path__, "keras_vid.")
    # The model zoo's examples build models; tests/models runs them.
    if not info.name.startswith("keras_vid.models")
)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    data = module == "keras_vid.data" or module.startswith("keras_vid.data.")
    if data and not os.path.isdir(FMNIST):
        pytest.skip("the data examples read Debian's Fashion-MNIST")
    result = doctest.testmod(
        importlib.import_module(module),
        extraglobs={"keras_vid": keras_vid, "np": np},
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.failed == 0


def test_modules_are_found():
    expected = {"keras_vid.distiller", "keras_vid.transfer.vid", "keras_vid.data"}
    # The data package's modules, each with its own examples.
    expected |= {
        f"keras_vid.data.{m}" for m in ("builtin", "folders", "pipeline", "unlabeled")
    }
    assert expected <= set(MODULES)
