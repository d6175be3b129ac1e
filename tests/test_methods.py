"""The method registry: every name builds, trains, and keeps the teacher fixed."""

import keras
import numpy as np
import pytest
from conftest import ce_loss, conv_net

import keras_vid
from keras_vid import Distiller, VIDDistiller
from keras_vid.methods import (
    DEFAULTS,
    available_methods,
    build_distiller,
    default_hparams,
    overrides_for,
    parse_method,
)
from keras_vid.regressors import ConvRegressor
from keras_vid.transfer import (
    ATTerm,
    DISTTerm,
    DKDTerm,
    FitNetTerm,
    KDTerm,
    NSTTerm,
    VIDTerm,
)

T_TAPS = ["t_stage1", "t_stage2"]
S_TAPS = ["s_stage1", "s_stage2"]


@pytest.fixture(scope="module")
def teacher():
    # Shared: a distiller only freezes the teacher, which the tests check.
    return conv_net(8, "t_", seed=1)


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    return rng.random((32, 8, 8, 1), dtype="float32"), rng.integers(0, 3, 32)


def build(method, teacher, **overrides):
    return build_distiller(
        method,
        teacher,
        conv_net(4, "s_", seed=2),
        T_TAPS,
        S_TAPS,
        teacher_features="t_features",
        student_features="s_features",
        **overrides,
    )


EXPECTED = {
    "student": (Distiller, []),
    "kd": (Distiller, [KDTerm]),
    "dkd": (Distiller, [DKDTerm]),
    "dist": (Distiller, [DISTTerm]),
    "fitnet": (Distiller, [FitNetTerm]),
    "at": (Distiller, [ATTerm, ATTerm]),
    "nst": (Distiller, [NSTTerm, NSTTerm]),
    "vid_i": (VIDDistiller, [VIDTerm, VIDTerm]),
    "vid_lp": (VIDDistiller, [VIDTerm]),
    "vid_i+kd": (VIDDistiller, [VIDTerm, VIDTerm, KDTerm]),
    "at+kd": (Distiller, [ATTerm, ATTerm, KDTerm]),
    "kd+dist": (Distiller, [KDTerm, DISTTerm]),
    "vid_i+dkd": (VIDDistiller, [VIDTerm, VIDTerm, DKDTerm]),
    "vid_i+vid_lp": (VIDDistiller, [VIDTerm, VIDTerm, VIDTerm]),
}


@pytest.mark.parametrize("method", list(EXPECTED))
def test_every_name_builds_with_its_defaults(method, teacher):
    d = build(method, teacher)
    cls, term_types = EXPECTED[method]
    assert type(d) is cls
    assert [type(t) for t in d.terms] == term_types
    defaults = default_hparams(method)
    for term in d.terms:
        if isinstance(term, VIDTerm):
            key = "vid_lp_weight" if term.teacher_layer is None else "vid_i_weight"
            assert term.weight == defaults[key]
            assert term.init_variance == defaults["vid_init_variance"] == 1.0
            # The registry keeps the defaults study's raw targets.
            assert term.standardize is defaults["vid_standardize"] is False
            assert term.regressor_batch_norm is False
            assert defaults["vid_regressor_batch_norm"] is False
            if isinstance(term.regressor, ConvRegressor):
                assert not term.regressor.norms  # the paper's regressor
        else:
            assert term.weight == defaults[f"{term.group}_weight"]


def test_layers_and_defaults_per_method(teacher):
    assert set(available_methods()) == set(m for m in EXPECTED if "+" not in m)
    assert all(len(v) == 2 and isinstance(v[1], str) for v in DEFAULTS.values())
    fitnet = build("fitnet", teacher).terms[0]
    assert (fitnet.teacher_layer, fitnet.student_layer) == ("t_stage2", "s_stage2")
    assert fitnet.weight == 100.0
    (lp,) = build("vid_lp", teacher).terms
    assert (lp.teacher_layer, lp.student_layer) == (None, "s_features")
    assert type(lp.regressor).__name__ == "DenseRegressor"  # the linear mean
    (lp,) = build("vid_lp", teacher, vid_lp_target="features").terms
    assert lp.teacher_layer == "t_features"
    at, _, kd = build("at+kd", teacher, kd_temperature=2.0, at_p=3).terms
    assert (at.p, at.weight, kd.temperature, kd.weight) == (3.0, 1000.0, 2.0, 1.0)


# Without a task loss the student's head gets no gradient from feature terms.
@pytest.mark.filterwarnings("ignore:Gradients do not exist")
@pytest.mark.parametrize(
    "method", ["student", "kd", "fitnet", "at", "nst", "vid_i", "vid_lp", "at+kd"]
)
def test_method_trains_term_decreases_teacher_unchanged(method, teacher, xy):
    x, y = xy
    d = build(method, teacher)
    before = [np.array(w) for w in teacher.weights]
    # No task loss, so each logged term must fall on its own account.
    task = ce_loss() if method == "student" else None
    d.compile(keras.optimizers.Adam(0.01), loss=task)
    logs = d.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0).history
    names = ["task_loss"] if method == "student" else [t.log_name for t in d.terms]
    if "+" in method:
        # AT at weight 1000 outweighs KD: the sum falls, not every part of it.
        names = ["loss"]
    for name in names:
        assert logs[name][-1] < logs[name][0], (name, logs[name])
    for w0, w1 in zip(before, teacher.weights):
        assert np.array_equal(w0, np.array(w1))


@pytest.mark.parametrize("method", ["vid_i+kd", "fitnet+at+nst", "vid_i+dkd"])
def test_save_load_round_trip(method, teacher, xy, tmp_path):
    x, y = xy
    overrides = {"kd_temperature": 3.0} if "kd" in method.split("+") else {}
    d = build(method, teacher, **overrides)
    d.compile(keras.optimizers.SGD(0.01), loss=ce_loss())
    d.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "d.keras"
    d.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(d)
    assert [t.get_config() for t in loaded.terms] == [t.get_config() for t in d.terms]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), d.predict(x, verbose=0))
    for t0, t1 in zip(d.terms, loaded.terms):
        for w0, w1 in zip(t0.weights, t1.weights):
            np.testing.assert_array_equal(np.array(w0), np.array(w1))


@pytest.mark.parametrize(
    "method, match",
    [
        ("vidi", r"Unknown method 'vidi'\. Did you mean 'vid_i'"),
        ("vid_i+kdd", r"Unknown method 'kdd'\. Did you mean 'kd'.*Valid: student"),
        ("kd+kd", "names a method twice"),
        ("student+kd", "combines 'student'"),
        ("", "non-empty string"),
    ],
)
def test_bad_method_names(method, match, teacher):
    with pytest.raises(ValueError, match=match):
        build(method, teacher)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"kd_temprature": 2.0}, "Unknown override 'kd_temprature'.*kd_temperature"),
        ({"at_weight": 5.0}, "configures 'at', which method 'kd' does not use"),
    ],
)
def test_bad_overrides(overrides, match, teacher):
    with pytest.raises(ValueError, match=match):
        build("kd", teacher, **overrides)


def test_vid_standardize_is_passed_through_and_kd_only_when_named(teacher):
    # build_distiller's VIDDistiller gets no KD term of its own: KD is "kd".
    d = build(
        "vid_i+vid_lp", teacher, vid_standardize=True, vid_regressor_batch_norm=True
    )
    assert [t.standardize for t in d.vid_terms] == [True] * 3
    assert d.regressor_batch_norm is True
    convs = [t.regressor for t in d.vid_terms if isinstance(t.regressor, ConvRegressor)]
    assert convs and all(len(r.norms) == 2 for r in convs)
    assert d.standardize is True and d.kd_weight is None
    assert not any(isinstance(t, KDTerm) for t in d.terms)
    assert overrides_for("vid_lp", {"vid_standardize": False}) == {
        "vid_standardize": False
    }
    with pytest.raises(ValueError, match="configures 'vid_i' or 'vid_lp'"):
        build("kd", teacher, vid_standardize=False)


def test_overrides_for_a_grid_of_methods():
    shared = {"kd_temperature": 2.0, "vid_eps": 1e-4}
    assert overrides_for("student", shared) == {}
    assert overrides_for("vid_lp", shared) == {"vid_eps": 1e-4}
    assert overrides_for("vid_i+kd", shared) == shared
    with pytest.raises(ValueError, match="Unknown override 'kd_temp'"):
        overrides_for("kd", {"kd_temp": 2.0})


def test_missing_layers(teacher):
    s = conv_net(4, "s_", seed=2)
    with pytest.raises(ValueError, match="same length"):
        build_distiller("at", teacher, s, T_TAPS, S_TAPS[:1])
    with pytest.raises(ValueError, match="needs intermediate layer pairs"):
        build_distiller("vid_i", teacher, s)
    with pytest.raises(ValueError, match="needs `student_features`"):
        build_distiller("vid_lp", teacher, s)
    d = build_distiller("fitnet", teacher, s, fitnet_pair=("t_stage1", "s_stage1"))
    assert d.terms[0].student_layer == "s_stage1"


def test_parse_and_lazy_module():
    assert parse_method(" VID_I + kd ") == ("vid_i", "kd")
    assert keras_vid.methods.build_distiller is build_distiller


def test_vid_i_pairs_deep_stages_and_features_by_default(teacher):
    """The study's default pairing: the taps after the first, plus features."""
    d = build("vid_i", teacher)
    pairs = [(t.teacher_layer, t.student_layer) for t in d.vid_terms]
    assert pairs == [("t_stage2", "s_stage2"), ("t_features", "s_features")]
    assert [t.weight for t in d.vid_terms] == [20.0] * 2
    assert [t.init_variance for t in d.vid_terms] == [1.0] * 2
    every = build("vid_i", teacher, vid_i_layers="all")
    assert [t.student_layer for t in every.vid_terms] == ["s_stage1", "s_stage2"]
    with pytest.raises(ValueError, match="vid_i_layers"):
        build("vid_i", teacher, vid_i_layers="shallow")


def test_vid_lp_refuses_other_classes():
    # docs/errors.md row 19: the teacher's logits are VID-LP's target, which
    # only means something for a student of the same classes.
    teacher = conv_net(8, "t_", classes=4, seed=1)
    with pytest.raises(ValueError, match=r"same classes.*\(None, 4\).*\(None, 3\)"):
        build("vid_lp", teacher)
    # The features target and VID-I take any label space.
    assert isinstance(build("vid_lp", teacher, vid_lp_target="features"), VIDDistiller)
    assert isinstance(build("vid_i", teacher), VIDDistiller)
