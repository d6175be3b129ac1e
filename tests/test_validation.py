"""Bad training data is refused before the first step, with a clear message."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ce_loss

from keras_vid import VIDDistiller


@pytest.fixture
def distiller(models):
    d = VIDDistiller(*models, [("t_stage1", "s_stage1")])
    d.compile("sgd", loss=ce_loss())
    return d


def test_labels_out_of_range(distiller, data):
    x, y = data
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*from 1 to 7"):
        distiller.fit(x, np.where(y == 0, 7, y), epochs=1, verbose=0)


def test_empty_dataset(distiller, data):
    empty = tf.data.Dataset.from_tensor_slices(data).batch(8).take(0)
    with pytest.raises(ValueError, match="empty"):
        distiller.fit(empty, epochs=1, verbose=0)
    filtered = tf.data.Dataset.from_tensor_slices(data).filter(lambda x, y: y > 9)
    with pytest.raises(ValueError, match="no batch"):
        distiller.fit(filtered.batch(8), epochs=1, verbose=0)


def test_wrong_image_shape(distiller):
    x = np.zeros((8, 16, 16, 1), "float32")
    with pytest.raises(
        ValueError, match=r"shape \[\(16, 16, 1\)\].*expects \[\(8, 8, 1\)\]"
    ):
        distiller.fit(x, np.zeros(8, "int32"), epochs=1, verbose=0)


def test_weights_unchanged_when_refused(distiller, data):
    x, y = data
    before = [w.copy() for w in distiller.student.get_weights()]
    with pytest.raises(ValueError):
        distiller.fit(x, y + 3, epochs=1, verbose=0)
    for a, b in zip(before, distiller.student.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert isinstance(distiller, keras.Model)
