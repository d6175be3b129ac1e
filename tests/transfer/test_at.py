"""The attention-transfer term against Zagoruyko & Komodakis's formula in NumPy."""

import keras
import numpy as np
import pytest
from conftest import grad
from keras.ops import convert_to_numpy as to_numpy
from transfer_refs import l2_normalize, to_common_size

from keras_vid.transfer.at import ATTerm


def numpy_at(t, s, p=2):
    """mean_hw (at(s) - at(t))^2 with at = normalize(vec(mean_c |a|^p))."""
    t, s = to_common_size(t.astype("float64"), s.astype("float64"))

    def at(a):
        q = (np.abs(a) ** p).mean(axis=-1).reshape(len(a), -1)
        return l2_normalize(q)

    return ((at(s) - at(t)) ** 2).mean(axis=-1)


@pytest.mark.parametrize(
    "t_shape, s_shape",
    [
        ((4, 6, 6, 8), (4, 6, 6, 3)),  # same size
        ((4, 7, 5, 6), (4, 3, 4, 2)),  # teacher larger, ratios 7/3 and 5/4
        ((4, 5, 9, 3), (4, 7, 4, 2)),  # each side larger on one axis
    ],
)
@pytest.mark.parametrize("p", [2, 3])
def test_matches_numpy(t_shape, s_shape, p):
    rng = np.random.default_rng(0)
    t = rng.normal(size=t_shape).astype("float32")
    s = rng.normal(size=s_shape).astype("float32")
    got = to_numpy(ATTerm("t", "s", p=p)(t, s))
    assert got.shape == (t_shape[0],)
    np.testing.assert_allclose(got, numpy_at(t, s, p), rtol=1e-5, atol=1e-7)


def test_zero_map_has_finite_gradient():
    term = ATTerm("t", "s")
    t = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    loss, g = grad(lambda s: term(t, s), np.zeros((2, 4, 4, 3)))
    assert np.isfinite(loss) and np.all(np.isfinite(g))


def test_no_trainable_weights_and_needs_maps():
    term = ATTerm("t", "s")
    term.build((None, 8, 8, 4), (None, 4, 4, 2))
    assert term.trainable_weights == []
    with pytest.raises(ValueError, match=r"channels-last maps.*\(None, 10\)"):
        ATTerm("t", "s").build((None, 8, 8, 4), (None, 10))


def test_config_round_trip():
    term = ATTerm("t_stage2", "s_stage2", weight=10.0, p=4)
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(term)
    )
    assert isinstance(clone, ATTerm)
    assert (clone.teacher_layer, clone.student_layer, clone.weight, clone.p) == (
        "t_stage2",
        "s_stage2",
        10.0,
        4.0,
    )
