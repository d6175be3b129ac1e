"""keras-vid's core without TensorFlow: what works, and what says what to install.

`make test` runs this file on JAX and PyTorch with TensorFlow, tfds and
keras-tuner made unimportable (`KERAS_VID_WITHOUT_TENSORFLOW`, see
conftest.py), as after `pip install keras-vid jax`. In a TensorFlow session
only the packaging check and the PyDataset test run.
"""

import importlib
import importlib.metadata
import os
import re
import sys

import numpy as np
import pytest
from conftest import FASHION_MNIST_DIR, NOT_CORE, conv_net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _requirement_name(spec):
    return re.split(r"[\s<>=!~\[;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_core_dependencies_exclude_what_the_tests_block():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    # Each blocked module's distribution is in an extra and not in the core:
    # the no-TensorFlow sessions then test exactly what a core install has.
    extras = {
        _requirement_name(r)
        for e in project["optional-dependencies"].values()
        for r in e
    }
    owners = importlib.metadata.packages_distributions()
    for module in NOT_CORE:
        (dist,) = {d.lower() for d in owners.get(module, [module])}
        assert dist not in core and dist in extras, (module, dist)
    assert core == {"keras", "numpy"}


def _tensorflow_importable():
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


without_tf = pytest.mark.skipif(
    _tensorflow_importable(),
    reason="runs where TensorFlow cannot be imported (make test's JAX and "
    "PyTorch sessions)",
)


@without_tf
def test_core_imports_and_the_tensorflow_parts_say_what_to_install():
    import keras_vid

    assert "tensorflow" not in sys.modules
    for name in ("applications", "models", "methods", "data", "experiment"):
        getattr(keras_vid, name)
    from keras_vid import data, distribute, teacher_cache

    install = re.escape("pip install 'keras-vid[tensorflow]'")
    calls = [
        lambda: data.load("fashion_mnist"),
        lambda: data.load_unlabeled("fashion_mnist"),
        lambda: data.with_unlabeled(None, None),
        lambda: distribute.get_strategy("mirrored"),
        lambda: teacher_cache.cache_teacher(None, None),
        lambda: importlib.import_module("keras_vid.tuning"),
    ]
    for call in calls:
        with pytest.raises(ImportError, match=f"needs TensorFlow.*{install}"):
            call()
    with pytest.raises(ImportError, match="source='tfds' needs tensorflow-datasets"):
        data.load_arrays("fashion_mnist", "test", source="tfds")
    assert distribute.num_replicas() == 1
    assert "tensorflow" not in sys.modules


@without_tf
def test_arrays_of_a_builtin_data_set_need_no_tensorflow():
    from keras_vid import data

    if not os.path.isfile(os.path.join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz")):
        pytest.skip(f"Fashion-MNIST is not in {FASHION_MNIST_DIR}")
    # source="auto" falls back to tfds only where tfds is importable.
    x, y = data.load_arrays("fashion_mnist", "test", FASHION_MNIST_DIR)
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.uint8
    keep = data.subset_indices(y, 5, seed=0)
    assert np.bincount(y[keep]).tolist() == [5] * 10


@without_tf
def test_image_folder_says_it_needs_tensorflow(tmp_path):
    from keras_vid import data

    for c in ("a", "b"):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "train" / c / f"{i}.png").write_bytes(b"not decoded")
    with pytest.raises(ImportError, match="Reading the image folder.*needs Tensor"):
        data.load_arrays(str(tmp_path), "train")


def test_pydataset_feeds_the_distiller():
    # On every backend, TensorFlow's (keras-vid's own train step) included.
    import keras

    import keras_vid

    class Batches(keras.utils.PyDataset):
        def __init__(self, x, y):
            super().__init__()
            self.x, self.y = x, y

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return self.x[i * 8 : (i + 1) * 8], self.y[i * 8 : (i + 1) * 8]

    rng = np.random.default_rng(0)
    x = rng.random((16, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, 16)

    def fit(inputs, **kwargs):
        # Rebuilt from the same seeds: the same weights and regressors.
        teacher, student = conv_net(8, "t_", seed=1), conv_net(4, "s_", seed=2)
        d = keras_vid.VIDDistiller(teacher, student, [("t_stage2", "s_stage2")])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        d.compile(keras.optimizers.SGD(0.1), loss=loss)
        return d.fit(*inputs, epochs=2, verbose=0, **kwargs).history

    # shuffle=False for both: `fit` would shuffle a PyDataset's batch order.
    by_array = fit((x, y), batch_size=8, shuffle=False)
    by_pydataset = fit((Batches(x, y),), shuffle=False)
    assert {"loss", "vid_loss", "dist_loss"} <= by_array.keys()
    assert by_array.keys() == by_pydataset.keys()
    for key in by_array:
        np.testing.assert_allclose(by_pydataset[key], by_array[key], rtol=1e-5)
