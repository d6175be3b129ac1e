"""The NST term against Huang & Wang's MMD with a polynomial kernel, in NumPy."""

import keras
import numpy as np
import pytest
from conftest import grad
from keras.ops import convert_to_numpy as to_numpy
from transfer_refs import l2_normalize, to_common_size

from keras_vid.transfer.nst import NSTTerm


def numpy_nst(t, s):
    """Per example: mean k(s,s) + mean k(t,t) - 2 mean k(s,t), k = (x.y)^2."""
    t, s = to_common_size(t.astype("float64"), s.astype("float64"))
    out = []
    for tb, sb in zip(t, s):
        # Channels are the samples; each is a distribution over positions.
        ft = l2_normalize(tb.reshape(-1, tb.shape[-1]).T)
        fs = l2_normalize(sb.reshape(-1, sb.shape[-1]).T)
        k_ss = np.array([[(x @ y) ** 2 for y in fs] for x in fs]).mean()
        k_tt = np.array([[(x @ y) ** 2 for y in ft] for x in ft]).mean()
        k_st = np.array([[(x @ y) ** 2 for y in ft] for x in fs]).mean()
        out.append(k_ss + k_tt - 2 * k_st)
    return np.array(out)


@pytest.mark.parametrize(
    "t_shape, s_shape",
    [
        ((3, 6, 6, 8), (3, 6, 6, 3)),  # same size, different channels
        ((3, 7, 5, 6), (3, 3, 4, 2)),  # teacher larger, ratios 7/3 and 5/4
        ((3, 5, 9, 3), (3, 7, 4, 5)),  # each side larger on one axis
    ],
)
def test_matches_numpy(t_shape, s_shape):
    rng = np.random.default_rng(0)
    # Post-ReLU maps, as NST taps usually are.
    t = np.maximum(rng.normal(size=t_shape), 0).astype("float32")
    s = np.maximum(rng.normal(size=s_shape), 0).astype("float32")
    got = to_numpy(NSTTerm("t", "s")(t, s))
    assert got.shape == (t_shape[0],)
    np.testing.assert_allclose(got, numpy_nst(t, s), rtol=1e-5, atol=1e-6)


def test_identical_maps_give_zero():
    x = np.random.default_rng(1).random((2, 4, 4, 5)).astype("float32")
    np.testing.assert_allclose(to_numpy(NSTTerm("t", "s")(x, x)), 0.0, atol=1e-6)


def test_dead_channel_has_finite_gradient():
    term = NSTTerm("t", "s")
    t = np.random.default_rng(0).uniform(size=(2, 4, 4, 3)).astype("float32")
    s = np.concatenate([np.zeros((2, 4, 4, 1)), np.ones((2, 4, 4, 2))], -1)
    loss, g = grad(lambda s: term(t, s), s)
    assert np.isfinite(loss) and np.all(np.isfinite(g))


def test_needs_maps_and_round_trips():
    with pytest.raises(ValueError, match="NSTTerm compares channels-last maps"):
        NSTTerm("t", "s").build((None, 16), (None, 4, 4, 2))
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(NSTTerm("t", "s", weight=5.0))
    )
    assert isinstance(clone, NSTTerm) and clone.weight == 5.0
