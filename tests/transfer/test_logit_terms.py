"""DKD, DIST and logit standardisation against NumPy formulas written here.

The references follow the authors' PyTorch code line by line, in float64:
mdistiller's `dkd_loss` (with its -1000 mask on the target logit), the DIST
authors' `inter_class_relation` / `intra_class_relation`, and Sun et al.'s
`normalize` (torch's unbiased std).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import ce_loss, conv_net, grad
from keras.ops import convert_to_numpy as to_numpy
from logit_refs import (
    numpy_dist,
    numpy_dkd,
    numpy_kd,
    numpy_standardize,
)

from keras_vid import Distiller, VIDDistiller
from keras_vid.methods import build_distiller, default_hparams
from keras_vid.transfer import DISTTerm, DKDTerm, KDTerm
from keras_vid.transfer.base import check_class_labels, class_ids

TOL = {"rtol": 1e-5, "atol": 1e-5}


def logits(seed, shape=(8, 5), scale=3.0, dtype="float32"):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=scale, size=shape).astype(dtype)


# ------------------------------------------------------------ the formulas


@pytest.mark.parametrize(
    "alpha, beta, temperature", [(1.0, 8.0, 4.0), (2.0, 0.5, 1.0), (1.0, 1.0, 0.7)]
)
def test_dkd_matches_numpy_with_a_class_absent(alpha, beta, temperature):
    t, s = logits(0), logits(1)
    # Classes 3 and 4 are in no label: their mass is all non-target.
    y = np.array([0, 1, 2, 0, 1, 2, 2, 0])
    term = DKDTerm(alpha=alpha, beta=beta, temperature=temperature)
    got = to_numpy(term(t, s, labels=y))
    assert got.shape == (8,) and got.dtype == "float32"
    np.testing.assert_allclose(got, numpy_dkd(t, s, y, alpha, beta, temperature), **TOL)


def test_dkd_labels_as_ids_columns_or_one_hot_agree():
    t, s = logits(2), logits(3)
    y = np.array([4, 0, 3, 3, 1, 0, 2, 4])
    term = DKDTerm()
    want = numpy_dkd(t, s, y, 1.0, 8.0, 4.0)
    for labels in (y, y[:, None], np.eye(5, dtype="float32")[y], y.astype("float32")):
        np.testing.assert_allclose(to_numpy(term(t, s, labels=labels)), want, **TOL)


@pytest.mark.parametrize(
    "beta, gamma, tau", [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0), (1.0, 3.0, 0.5)]
)
def test_dist_matches_numpy(beta, gamma, tau):
    t, s = logits(4, (16, 6)), logits(5, (16, 6))
    got = to_numpy(DISTTerm(beta=beta, gamma=gamma, temperature=tau)(t, s))
    assert got.shape == (16,) and got.dtype == "float32"
    np.testing.assert_allclose(got, numpy_dist(t, s, beta, gamma, tau), **TOL)


def test_dist_of_a_single_example_has_intra_one():
    # One example: every class column is centred to zero, the authors'
    # cosine is 0, so intra = 1.
    t, s = logits(6, (1, 4)), logits(7, (1, 4))
    got = to_numpy(DISTTerm()(t, s))
    np.testing.assert_allclose(got, numpy_dist(t, s, 1.0, 1.0, 1.0), **TOL)
    assert abs(numpy_dist(t, t, 1.0, 1.0, 1.0)[0] - 1.0) < 1e-6


@pytest.mark.parametrize("temperature", [2.0, 4.0])
def test_kd_standardize_matches_numpy(temperature):
    t, s = logits(8, scale=5.0), logits(9, scale=0.5)
    got = to_numpy(KDTerm(temperature=temperature, standardize=True)(t, s))
    want = numpy_kd(numpy_standardize(t), numpy_standardize(s), temperature)
    np.testing.assert_allclose(got, want, **TOL)
    # Standardised KD ignores each example's logit scale and shift.
    shifted = to_numpy(KDTerm(temperature=temperature, standardize=True)(t, 3 * s + 7))
    np.testing.assert_allclose(shifted, got, **TOL)


def test_dkd_standardize_matches_numpy():
    t, s = logits(10, scale=5.0), logits(11, scale=0.5)
    y = np.array([1, 1, 0, 4, 2, 1, 0, 0])
    got = to_numpy(DKDTerm(temperature=2.0, standardize=True)(t, s, labels=y))
    want = numpy_dkd(numpy_standardize(t), numpy_standardize(s), y, 1.0, 8.0, 2.0)
    np.testing.assert_allclose(got, want, **TOL)


def test_float16_logits_compute_in_float32():
    t, s = logits(12, dtype="float16"), logits(13, dtype="float16")
    t32, s32 = t.astype("float32"), s.astype("float32")
    y = np.array([0, 1, 2, 3, 4, 0, 1, 2])
    cases = [
        (DKDTerm()(t, s, labels=y), numpy_dkd(t32, s32, y, 1.0, 8.0, 4.0)),
        (DISTTerm()(t, s), numpy_dist(t32, s32, 1.0, 1.0, 1.0)),
        (
            KDTerm(temperature=2.0, standardize=True)(t, s),
            numpy_kd(numpy_standardize(t32), numpy_standardize(s32), 2.0),
        ),
    ]
    for got, want in cases:
        assert keras.backend.standardize_dtype(got.dtype) == "float32"
        assert np.all(np.isfinite(to_numpy(got)))
        np.testing.assert_allclose(to_numpy(got), want, **TOL)


def test_gradients_stay_finite_at_the_edges():
    # All-equal student logits (a fresh head), huge teacher logits, and one
    # example for DIST: sqrt'(0) and exp underflow must not give NaN.
    t = logits(14, (4, 5), scale=400.0).astype("float32")
    y = np.array([0, 1, 2, 3])
    terms = [
        lambda s: DKDTerm(temperature=1.0)(t, s, labels=y),
        lambda s: DKDTerm(standardize=True)(t, s, labels=y),
        lambda s: DISTTerm()(t, s),
        lambda s: DISTTerm()(t[:1], s[:1]),
        lambda s: KDTerm(standardize=True)(t, s),
    ]
    for loss in terms:
        value, g = grad(loss, np.zeros((4, 5)))
        assert np.isfinite(value) and np.all(np.isfinite(g))


# ----------------------------------------------------------------- warm-up


def test_warmup_is_linear_in_training_steps_and_skips_evaluation():
    t, s = logits(15), logits(16)
    y = np.array([0, 1, 2, 3, 4, 0, 1, 2])
    full = numpy_dkd(t, s, y, 1.0, 8.0, 4.0)
    term = DKDTerm(warmup_steps=4)
    for k in range(1, 7):
        # Evaluation shows the full value and does not advance the count.
        np.testing.assert_allclose(to_numpy(term(t, s, labels=y)), full, **TOL)
        got = to_numpy(term(t, s, labels=y, training=True))
        np.testing.assert_allclose(got, min(k / 4, 1.0) * full, **TOL)
    assert int(to_numpy(term.steps)) == 6


@pytest.mark.tensorflow
def test_warmup_in_an_xla_compiled_function():
    import tensorflow as tf

    t, s = logits(17), logits(18)
    y = np.array([4, 3, 2, 1, 0, 4, 3, 2])
    full = numpy_dkd(t, s, y, 1.0, 8.0, 4.0)
    term = DKDTerm(warmup_steps=3)
    step = tf.function(lambda: term(t, s, labels=y, training=True), jit_compile=True)
    for k in range(1, 5):
        np.testing.assert_allclose(to_numpy(step()), min(k / 3, 1.0) * full, **TOL)
    assert DKDTerm().steps is None  # no counter without a warm-up


# ------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DKDTerm(alpha=0.0), "alpha"),
        (lambda: DKDTerm(beta=-1.0), "beta"),
        (lambda: DKDTerm(temperature=0), "temperature"),
        (lambda: DKDTerm(weight=float("nan")), "dkd weight"),
        (lambda: DKDTerm(warmup_steps=-1), "warmup_steps"),
        (lambda: DKDTerm(warmup_steps=2.5), "warmup_steps"),
        (lambda: DKDTerm(warmup_steps=True), "warmup_steps"),
        (lambda: DISTTerm(beta=0), "beta"),
        (lambda: DISTTerm(gamma="x"), "gamma"),
        (lambda: DISTTerm(temperature=-2.0), "temperature"),
    ],
)
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("term", [DKDTerm(), DISTTerm()])
def test_logit_shapes_are_checked(term):
    with pytest.raises(ValueError, match=r"\(batch, classes\).*\(None, 4, 10\)"):
        term.build((None, 4, 10), (None, 4, 10))
    with pytest.raises(ValueError, match=r"\(None, 10\).*\(None, 5\)"):
        type(term)().build((None, 10), (None, 5))


def test_label_errors():
    t, s = logits(19), logits(20)
    with pytest.raises(ValueError, match="needs the class labels"):
        DKDTerm()(t, s)
    with pytest.raises(ValueError, match=r"one-hot rows of shape \(batch, 5\)"):
        class_ids(np.zeros((8, 7)), 5)
    soft = np.full((8, 5), 0.2, "float32")
    with pytest.raises(ValueError, match="not one-hot"):
        check_class_labels(soft, 5)
    with pytest.raises(ValueError, match="not whole numbers"):
        check_class_labels(np.array([0.5, 1.0]), 5)
    check_class_labels(np.eye(5)[[1, 2]], 5)
    check_class_labels(np.array([[1], [4]]), 5)


# ------------------------------------------------- through the Distiller


def distiller(**kwargs):
    teacher, student = conv_net(8, "t_", seed=1), conv_net(4, "s_", seed=2)
    terms = [
        DKDTerm(temperature=2.0, **kwargs),
        DISTTerm(temperature=2.0),
        KDTerm(standardize=True),
    ]
    return Distiller(teacher, student, terms=terms)


def test_fit_without_labels_or_with_soft_labels_fails_clearly(data):
    x, y = data
    d = distiller()
    d.compile("sgd", loss=None)
    with pytest.raises(ValueError, match=r"dkd/output \(DKDTerm\) need the class"):
        d.fit(x, epochs=1, verbose=0)
    smooth = 0.9 * np.eye(3)[y] + 0.1 / 3
    with pytest.raises(ValueError, match="not one-hot"):
        d.fit(x, smooth, epochs=1, verbose=0)
    # Without `fit`'s check, the traced step names the term too.
    with pytest.raises(ValueError, match="needs the class labels"):
        d.evaluate(x, verbose=0)


def test_fit_passes_labels_and_logs_match_numpy(data):
    x, y = data
    d = distiller(warmup_steps=5)
    # No task loss, so the one-hot labels below need no other loss.
    d.compile(keras.optimizers.SGD(0.01), loss=None)
    logs = d.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history
    assert {"dkd/output", "dist/output", "kd/output"} <= set(logs)
    assert all(np.isfinite(v[-1]) for v in logs.values())
    assert int(to_numpy(d.terms[0].steps)) == 2  # two training steps

    # One evaluation batch: the logs are the batch means of the NumPy values.
    t = to_numpy(d.teacher(x, training=False))
    s = to_numpy(d.student(x, training=False))
    want = {
        "dkd/output": numpy_dkd(t, s, y, 1.0, 8.0, 2.0).mean(),
        "dist/output": numpy_dist(t, s, 1.0, 1.0, 2.0).mean(),
        "kd/output": numpy_kd(numpy_standardize(t), numpy_standardize(s), 4.0).mean(),
    }
    for labels in (y, np.eye(3, dtype="float32")[y]):
        got = d.evaluate(x, labels, batch_size=32, verbose=0, return_dict=True)
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, **TOL)
    # Sample weights weight each example's DKD value.
    w = np.random.default_rng(1).random(32).astype("float32")
    got = d.evaluate(x, y, sample_weight=w, batch_size=32, verbose=0, return_dict=True)
    dkd = (w * numpy_dkd(t, s, y, 1.0, 8.0, 2.0)).sum() / 32
    np.testing.assert_allclose(got["dkd/output"], dkd, **TOL)


def test_fit_under_mixed_precision(data):
    x, y = data
    keras.config.set_dtype_policy("mixed_float16")
    try:
        d = distiller(warmup_steps=3)
        d.compile(keras.optimizers.SGD(0.01), loss=ce_loss())
        logs = d.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    finally:
        keras.config.set_dtype_policy("float32")
    # The terms received float16 logits and kept float32 losses.
    assert d.student.get_layer("s_logits").compute_dtype == "float16"
    assert all(t.compute_dtype == "float32" for t in d.terms)
    for name in ("dkd/output", "dist/output", "kd/output", "loss"):
        assert np.isfinite(logs[name][-1]), name


def test_save_load_round_trip(data, tmp_path):
    x, y = data
    d = distiller(warmup_steps=7, alpha=2.0, beta=3.0)
    d.compile(keras.optimizers.SGD(0.01), loss=ce_loss())
    d.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for term in d.terms:
        clone = type(term).from_config(term.get_config())
        assert clone.get_config() == term.get_config()
    path = tmp_path / "d.keras"
    d.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert [type(t) for t in loaded.terms] == [DKDTerm, DISTTerm, KDTerm]
    assert [t.get_config() for t in loaded.terms] == [t.get_config() for t in d.terms]
    # The warm-up resumes where it stopped.
    assert int(to_numpy(loaded.terms[0].steps)) == 2
    a = d.evaluate(x, y, verbose=0, return_dict=True)
    b = loaded.evaluate(x, y, verbose=0, return_dict=True)
    for name in ("dkd/output", "dist/output", "kd/output"):
        np.testing.assert_allclose(b[name], a[name], **TOL)


# --------------------------------------------------------------- registry


def build(method, **overrides):
    return build_distiller(
        method,
        conv_net(8, "t_", seed=1),
        conv_net(4, "s_", seed=2),
        ["t_stage1", "t_stage2"],
        ["s_stage1", "s_stage2"],
        teacher_features="t_features",
        student_features="s_features",
        **overrides,
    )


def test_registry_builds_and_combines_the_logit_methods():
    d = build("kd+dist")
    assert type(d) is Distiller and [type(t) for t in d.terms] == [KDTerm, DISTTerm]
    kd, dist = d.terms
    assert (kd.standardize, dist.weight, dist.beta, dist.gamma) == (
        False,
        2.0,
        1.0,
        1.0,
    )
    assert dist.temperature == 1.0

    d = build("vid_i+dkd", dkd_standardize=True, dkd_warmup_steps=66)
    assert type(d) is VIDDistiller and type(d.terms[-1]) is DKDTerm
    dkd = d.terms[-1]
    assert (dkd.alpha, dkd.beta, dkd.temperature) == (1.0, 8.0, 4.0)
    assert (dkd.standardize, dkd.warmup_steps) == (True, 66)
    assert (
        build("dkd").terms[0].warmup_steps == default_hparams("dkd")["dkd_warmup_steps"]
    )
    assert build("kd", kd_standardize=True).terms[0].standardize is True


@pytest.mark.parametrize(
    "method, overrides, match",
    [
        ("dkd", {"dkd_warmup": 5}, r"Unknown override 'dkd_warmup'.*dkd_warmup_steps"),
        ("kd", {"dist_weight": 1.0}, "configures 'dist', which method 'kd'"),
        ("kd", {"dkd_standardize": True}, "configures 'dkd', which method 'kd'"),
        ("dk", {}, r"Unknown method 'dk'\. Did you mean 'dkd'"),
        ("dkd", {"dkd_warmup_steps": -3}, "warmup_steps"),
    ],
)
def test_registry_errors(method, overrides, match):
    with pytest.raises(ValueError, match=match):
        build(method, **overrides)


# ---------------------------------------------------------- tf.distribute


@pytest.mark.tensorflow
def test_two_replicas_compute_intra_on_the_global_batch_and_count_steps_once():
    """DIST's intra term on the gathered global batch: one device's value.

    DKD is per example, so it equals the one-device value; the warm-up counts
    each global step once, not once per replica.
    """
    script = os.path.join(
        os.path.dirname(os.path.dirname(__file__)), "distribute", "logit_terms_check.py"
    )
    proc = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, timeout=600
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT ") :])
    assert report["replicas"] == 2 and report["steps"] == 3
    t, s = np.array(report["teacher"]), np.array(report["student"])
    y = np.array(report["labels"])
    per_replica = np.concatenate(
        [
            numpy_dist(t[:4], s[:4], 1.0, 1.0, 2.0),
            numpy_dist(t[4:], s[4:], 1.0, 1.0, 2.0),
        ]
    )
    global_batch = numpy_dist(t, s, 1.0, 1.0, 2.0).mean()
    # Intra-class on the gathered global batch: one device's value, not the
    # per-replica one (which differs here by more than the tolerance).
    np.testing.assert_allclose(report["dist"], global_batch, **TOL)
    assert abs(per_replica.mean() - global_batch) > 1e-4
    np.testing.assert_allclose(
        report["dkd"], numpy_dkd(t, s, y, 1.0, 8.0, 2.0).mean(), **TOL
    )
