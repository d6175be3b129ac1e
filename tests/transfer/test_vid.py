"""The VID term against a NumPy reference, and its variance parameters."""

import math

import numpy as np
import pytest
from keras.ops import convert_to_numpy as to_numpy

from keras_vid.transfer.vid import VIDTerm, gaussian_nll, inverse_softplus


def numpy_nll(t, mu, alpha, eps, reduction):
    """-log N(t; mu, softplus(alpha)+eps) per example, without 0.5*log(2*pi)."""
    var = np.log1p(np.exp(alpha.astype("float64"))) + eps
    nll = 0.5 * (np.log(var) + (t - mu) ** 2 / var)
    axes = tuple(range(1, t.ndim))
    return nll.sum(axes) if reduction == "sum" else nll.mean(axes)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (4, 7)])
def test_nll_matches_numpy(reduction, shape):
    rng = np.random.default_rng(1)
    t = rng.normal(size=shape).astype("float32")
    mu = rng.normal(size=shape).astype("float32")
    alpha = rng.normal(size=shape[-1:]).astype("float32")
    eps = 1e-5
    var = np.log1p(np.exp(alpha.astype("float64"))) + eps
    got = to_numpy(gaussian_nll(t, mu, var.astype("float32"), reduction))
    want = numpy_nll(t, mu, alpha, eps, reduction)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_term_matches_numpy_with_its_regressor(reduction):
    rng = np.random.default_rng(2)
    term = VIDTerm("t", "s", reduction=reduction, init_variance=3.0)
    term.build((None, 4, 6, 8), (None, 4, 6, 2))
    alpha = rng.normal(size=8).astype("float32")
    term.alpha.assign(alpha)
    t = rng.normal(size=(5, 4, 6, 8)).astype("float32")
    s = rng.normal(size=(5, 4, 6, 2)).astype("float32")
    mu = to_numpy(term.regressor(s))
    got = to_numpy(term(t, s))
    np.testing.assert_allclose(
        got, numpy_nll(t, mu, alpha, term.eps, reduction), rtol=1e-5
    )
    assert got.shape == (5,)


@pytest.mark.parametrize("v0", [5.0, 0.1, 1.0, 100.0])
def test_initial_variance(v0):
    term = VIDTerm("t", "s", init_variance=v0, eps=1e-5)
    term.build((None, 3), (None, 4))
    np.testing.assert_allclose(to_numpy(term.variance()), np.full(3, v0), rtol=1e-5)
    assert math.isclose(math.log1p(math.exp(inverse_softplus(v0))), v0, rel_tol=1e-9)


def test_sum_is_elements_times_mean():
    rng = np.random.default_rng(3)
    terms = {}
    for red in ("mean", "sum"):
        terms[red] = VIDTerm("t", "s", reduction=red)
        terms[red].build((None, 2, 3, 4), (None, 2, 3, 4))
    terms["sum"].set_weights(terms["mean"].get_weights())
    t = rng.normal(size=(2, 2, 3, 4)).astype("float32")
    s = rng.normal(size=(2, 2, 3, 4)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(terms["sum"](t, s)), 24 * to_numpy(terms["mean"](t, s)), rtol=1e-5
    )


def test_per_element_loss_may_be_negative():
    # Once sigma^2 < 1 and the fit is good, 0.5*log(sigma^2) dominates: expected.
    term = VIDTerm("t", "s", init_variance=0.01, eps=1e-5)
    term.build((None, 2), (None, 2))
    s = np.zeros((1, 2), "float32")
    assert float(term(s, s)[0]) < 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"init_variance": 0.0}, "init_variance"),
        ({"init_variance": -1.0}, "init_variance"),
        ({"init_variance": 1e-6, "eps": 1e-5}, "greater than `eps`"),
        ({"eps": 0.0}, "eps"),
        ({"weight": 0.0}, "weight"),
        ({"weight": -2.0}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"reduction": "max"}, "reduction"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VIDTerm("t", "s", **kwargs)


def test_custom_regressor_with_wrong_shape_is_refused():
    import keras

    term = VIDTerm("t", "s", regressor=keras.layers.Dense(5))
    with pytest.raises(ValueError, match="teacher tap's shape"):
        term.build((None, 3), (None, 4))
