"""`keras_vid.tuning`: KerasTuner searches over VID's hyperparameters."""

import csv
import json
import math
import os
import subprocess
import sys
import types

import keras
import keras_tuner as kt
import numpy as np
import pytest
from conftest import conv_net

from keras_vid import data as data_lib
from keras_vid import experiment, methods, reporting, tuning

PAIRS = [("t_stage1", "s_stage1"), ("t_stage2", "s_stage2")]
HERE = os.path.dirname(__file__)


def student_fn():
    return conv_net(4, "s_", seed=2)


def tiny_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1), dtype="float32"), rng.integers(0, 3, n)


def hypermodel(teacher_path, **kwargs):
    kwargs.setdefault("seed", 0)
    # XLA compilation would cost more than these few steps of training.
    kwargs.setdefault("compile_kwargs", {"jit_compile": False})
    return tuning.VIDHyperModel(teacher_path, student_fn, PAIRS, **kwargs)


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    conv_net(8, "t_", seed=1).save(path)
    return str(path)


@pytest.fixture(scope="module")
def search(teacher_path, tmp_path_factory):
    """A finished three-trial RandomSearch over a given range and a fixed value."""
    directory = tmp_path_factory.mktemp("search")
    hm = hypermodel(
        teacher_path,
        search_space={"vid_i_weight": (0.5, 50.0, "log")},
        fixed={"vid_init_variance": 1.0},
    )
    tuner = tuning.make_tuner(
        "random", hm, max_trials=3, seed=1, directory=str(directory)
    )
    x, y = tiny_data()
    tuner.search(
        x, y, validation_data=tiny_data(24, seed=1), epochs=1, batch_size=16, verbose=0
    )
    return tuner, directory


def test_random_search_completes(search):
    tuner, _ = search
    rows, _ = reporting.trials_table(tuner)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 3
    assert all(math.isfinite(r["val_accuracy"]) for r in rows)


def test_search_explores_given_ranges_and_keeps_fixed_values(search):
    tuner, _ = search
    rows, columns = reporting.trials_table(tuner)
    weights = [r["vid_i_weight"] for r in rows]
    rates = [r["learning_rate"] for r in rows]
    assert len(set(weights)) == 3 and all(0.5 <= w <= 50.0 for w in weights)
    assert len(set(rates)) == 3 and all(0.005 <= r <= 0.2 for r in rates)
    assert [r["vid_init_variance"] for r in rows] == [1.0] * 3
    for r in rows:
        assert r["use_pair_0"] or r["use_pair_1"]
        # KD's settings are recorded only in trials that use KD.
        assert (r["kd_weight"] is not None) == r["use_kd"]
    assert {"use_pair_0", "use_pair_1", "use_kd"} <= set(columns)


def test_best_values_are_method_overrides_as_they_are(search):
    tuner, _ = search
    values = tuner.oracle.get_best_trials(1)[0].hyperparameters.values
    settings = {k: v for k, v in values.items() if k in methods.DEFAULTS}
    assert {"vid_i_weight", "vid_init_variance"} <= set(settings)
    method = "vid_i+kd" if values["use_kd"] else "vid_i"
    assert methods.overrides_for(method, settings) == settings


def test_best_student_loads_alone_and_predicts_the_same(search):
    tuner, directory = search
    path = str(directory / "best" / "student.keras")
    student = tuning.best_student(tuner, path)
    best = tuner.oracle.get_best_trials(1)[0]
    rows, _ = reporting.trials_table(tuner)
    assert best.score == max(r["val_accuracy"] for r in rows)
    loaded = keras.saving.load_model(path, safe_mode=True)
    # The student alone: no teacher layer and no VID regressor in the file.
    assert all(w.path.startswith(("s_", "image")) for w in loaded.weights)
    assert len(loaded.weights) == len(student.weights)
    x, _ = tiny_data(8, seed=2)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), student.predict(x, verbose=0), atol=1e-6
    )
    # best_student compiles the returned student for evaluate().
    assert "accuracy" in student.evaluate(*tiny_data(8), verbose=0, return_dict=True)


def test_write_trials(search, tmp_path):
    tuner, _ = search
    table = reporting.write_trials(tuner, str(tmp_path), title="tiny")
    assert table.splitlines()[0].startswith("| trial_id | status | vid_i_weight")
    with open(tmp_path / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and "val_accuracy" in rows[0]
    assert (tmp_path / "trials.png").stat().st_size > 1000
    assert (tmp_path / "trials.md").read_text().startswith("## tiny")


def test_objective_directions(teacher_path, tmp_path):
    assert tuning.make_objective("val_vid_loss") == kt.Objective("val_vid_loss", "min")
    assert tuning.make_objective("val_accuracy").direction == "max"
    assert tuning.make_objective("val_vid/s_stage2").direction == "min"
    assert tuning.make_objective("val_score:max").direction == "max"
    custom = kt.Objective("val_f1", "max")
    assert tuning.make_objective(custom) is custom
    with pytest.raises(ValueError, match="direction"):
        tuning.make_objective("val_score")
    tuner = tuning.make_tuner(
        "random",
        hypermodel(teacher_path),
        objective="val_vid_loss",
        directory=str(tmp_path),
    )
    assert tuner.oracle.objective == kt.Objective("val_vid_loss", "min")
    default = tuning.make_tuner(
        "random", hypermodel(teacher_path), directory=str(tmp_path), project_name="d"
    )
    assert default.oracle.objective == kt.Objective("val_accuracy", "max")


def test_dtype_policy_survives_clear_session(teacher_path):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        hm = hypermodel(teacher_path)
        keras.backend.clear_session()  # as KerasTuner does before each build
        assert keras.config.dtype_policy().name == "float32"
        distiller = hm.build(kt.HyperParameters())
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        assert distiller.student.get_layer("s_conv1").compute_dtype == "bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")


def test_values_fixed_in_hyperparameters_and_lr_schedule(teacher_path):
    hm = hypermodel(teacher_path)
    hp = kt.HyperParameters()
    hp.Fixed("vid_i_weight", 3.0)
    hp.Fixed("learning_rate", 0.1)
    hp.Fixed("use_kd", True)
    distiller = hm.build(hp)
    assert distiller.vid_weight == 3.0
    assert [type(t).__name__ for t in distiller.extra_terms] == ["KDTerm"]
    assert (
        distiller.extra_terms[0].temperature == tuning.FIXED_DEFAULTS["kd_temperature"]
    )
    x, y = tiny_data()
    history = hm.fit(hp, distiller, x, y, epochs=1, batch_size=16, verbose=0)
    assert "kd_loss" in history.history
    # Cosine decay over the 3 steps of this one-epoch run.
    lr = float(distiller.optimizer.learning_rate)
    assert lr == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 2 / 3)), rel=1e-5)
    # A diverged trial fails as a trial (KerasTuner records it and goes on).
    with pytest.raises(kt.errors.FailedTrialError, match="non-finite"):
        hm.fit(hp, distiller, x * np.nan, y, epochs=1, batch_size=16, verbose=0)


def test_every_pair_off_keeps_the_last_free_pair(teacher_path):
    hm = hypermodel(teacher_path)
    hp = kt.HyperParameters()
    hp.Boolean("use_pair_0", default=False)
    hp.Boolean("use_pair_1", default=False)
    distiller = hm.build(hp)
    assert [(p.teacher, p.student) for p in distiller.pairs] == [PAIRS[1]]
    assert hp.values["use_pair_1"] is True  # the trial records what ran
    hm = hypermodel(teacher_path, fixed={"use_pair_1": False})
    hp = kt.HyperParameters()
    hp.Boolean("use_pair_0", default=False)
    distiller = hm.build(hp)
    assert [(p.teacher, p.student) for p in distiller.pairs] == [PAIRS[0]]


def test_bad_arguments(teacher_path, tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'vid_i_weight'"):
        hypermodel(teacher_path, search_space={"vid_i_weigth": (1.0, 2.0)})
    # The tuner's names before they became methods.DEFAULTS keys: no alias.
    with pytest.raises(ValueError, match="'vid_weight' is now 'vid_i_weight'"):
        hypermodel(teacher_path, search_space={"vid_weight": (1.0, 2.0)})
    with pytest.raises(ValueError, match="'init_variance' is now 'vid_init_variance'"):
        hypermodel(teacher_path, fixed={"init_variance": 1.0})
    with pytest.raises(ValueError, match="both in `search_space` and in `fixed`"):
        hypermodel(
            teacher_path,
            search_space={"vid_i_weight": (1.0, 2.0)},
            fixed={"vid_i_weight": 1},
        )
    with pytest.raises(ValueError, match="low must be > 0"):
        hypermodel(teacher_path, search_space={"vid_i_weight": (0.0, 2.0, "log")})
    with pytest.raises(ValueError, match="every candidate pair off"):
        hypermodel(teacher_path, fixed={"use_pair_0": False, "use_pair_1": False})
    with pytest.raises(TypeError, match="path to a saved"):
        tuning.VIDHyperModel(conv_net(8, "t_"), student_fn, PAIRS)
    with pytest.raises(FileNotFoundError):
        tuning.VIDHyperModel(str(tmp_path / "missing.keras"), student_fn, PAIRS)
    with pytest.raises(TypeError, match="callable"):
        tuning.VIDHyperModel(teacher_path, student_fn(), PAIRS)


class _GaussianProcessStandIn:
    """A kernel-weighted mean, with the distance to the nearest point as std."""

    def __init__(self, **kwargs):
        del kwargs

    def fit(self, x, y):
        self.x, self.y = np.asarray(x, "float64"), np.asarray(y, "float64")
        return self

    def predict(self, x, return_std=False):
        d = np.linalg.norm(np.asarray(x)[:, None] - self.x[None], axis=-1)
        w = np.exp(-(d**2)) + 1e-12
        mu = (w @ self.y) / w.sum(axis=1)
        return (mu, d.min(axis=1)) if return_std else mu


def _minimize_stand_in(fun, x0, bounds=None, method=None):
    x0 = np.asarray(x0, dtype="float64")
    return types.SimpleNamespace(x=x0, fun=float(np.ravel(fun(x0))[0]))


@pytest.fixture
def bayesian_backends(monkeypatch):
    """BayesianOptimization needs scipy and scikit-learn (keras-tuner[bayesian]).

    This project does not install them. When they are absent, minimal
    stand-ins replace the Gaussian process and L-BFGS-B (each start point is
    scored, not refined), so the oracle's own path still runs: vectorising
    the trials' values (booleans, the conditional KD settings), fitting,
    picking the best of its 50 starts and mapping it back to values.
    """
    from keras_tuner.src.tuners import bayesian

    if bayesian.sklearn is None:
        kernels = types.SimpleNamespace(Matern=lambda **kwargs: None)
        gp = types.SimpleNamespace(
            GaussianProcessRegressor=_GaussianProcessStandIn, kernels=kernels
        )
        monkeypatch.setattr(
            bayesian, "sklearn", types.SimpleNamespace(gaussian_process=gp)
        )
    if bayesian.scipy is None:
        optimize = types.SimpleNamespace(minimize=_minimize_stand_in)
        monkeypatch.setattr(bayesian, "scipy", types.SimpleNamespace(optimize=optimize))


def test_hyperband_and_bayesian_run(teacher_path, tmp_path, bayesian_backends):
    x, y = tiny_data()
    val = tiny_data(24, seed=1)
    # One bracket of one one-epoch trial: the smallest Hyperband.
    hyperband = tuning.make_tuner(
        "hyperband",
        hypermodel(teacher_path, epochs=1, fixed={"use_kd": False}),
        objective="val_vid_loss",
        max_epochs=1,
        factor=3,
        seed=2,
        directory=str(tmp_path),
        project_name="hyperband",
    )
    hyperband.search(x, y, validation_data=val, epochs=5, batch_size=16, verbose=0)
    rows, _ = reporting.trials_table(hyperband)
    assert [r["status"] for r in rows] == ["COMPLETED"]
    assert rows[0]["tuner/epochs"] == 1
    assert hyperband.oracle.objective.direction == "min"

    bayesian = tuning.make_tuner(
        "bayesian",
        hypermodel(teacher_path),
        max_trials=2,
        num_initial_points=1,
        seed=2,
        directory=str(tmp_path),
        project_name="bayesian",
    )
    bayesian.search(x, y, validation_data=val, epochs=1, batch_size=16, verbose=0)
    rows, _ = reporting.trials_table(bayesian)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 2
    assert rows[0]["vid_i_weight"] != rows[1]["vid_i_weight"]


def test_search_under_mirrored_strategy(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "distribute", "tuning_mirrored_check.py"),
            tmp_path,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT ") :])
    assert report["replicas"] == 2
    assert report["statuses"] == ["COMPLETED", "COMPLETED"]
    # Two trials and get_best_models's rebuild, all inside the strategy scope.
    assert len(report["records"]) == 3
    assert all(r["teacher"] and r["student"] for r in report["records"])
    assert not any(n.startswith("t_") for n in report["student_layers"])
    assert report["max_pred_diff"] < 1e-6


def test_holdout_validation_is_disjoint_from_training(monkeypatch):
    n, classes = 500, 10  # Fashion-MNIST's 10 classes
    labels = np.arange(n, dtype="int32") % classes
    # Each image stores its own index, so overlaps can be checked by value.
    images = np.zeros((n, 4, 4, 1), "uint8")
    images[:, 0, 0, 0] = np.arange(n) % 256
    images[:, 0, 1, 0] = np.arange(n) // 256

    def fake(*args, **kwargs):
        return images, labels

    # experiment reads the package's load_arrays; data.load, its own module's.
    monkeypatch.setattr(data_lib, "load_arrays", fake)
    monkeypatch.setattr(data_lib.pipeline, "load_arrays", fake)

    def index(batch):
        return set(np.rint(batch[:, 0, 0, 0] * 255 + batch[:, 0, 1, 0] * 255 * 256))

    train, val = experiment.load_search_data(
        "fashion_mnist", samples_per_class=10, val_per_class=20, seed=3, batch_size=8
    )
    train_ids = set().union(*(index(x.numpy()) for x, _ in train))
    val_batches = list(val)
    val_ids = set().union(*(index(x.numpy()) for x, _ in val_batches))
    val_labels = np.concatenate([y.numpy() for _, y in val_batches])
    assert len(train_ids) == 100 and len(val_ids) == 200
    assert not train_ids & val_ids
    assert np.bincount(val_labels).tolist() == [20] * classes
    with pytest.raises(ValueError, match="validation='test'"):
        experiment.load_search_data("fashion_mnist", None)


def test_search_data_resizes_an_image_folder(tmp_path):
    """tune.py's --data_dir with --image_size: both splits come resized."""
    import tensorflow as tf

    for c in range(3):
        for i in range(10):
            # Each image is one grey value that names it; a resize keeps it.
            size = (10, 10) if i % 2 else (12, 9)
            image = np.full((*size, 1), 10 + 60 * c + 5 * i, "uint8")
            path = tmp_path / f"class{c}" / f"img{i}.png"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(tf.io.encode_png(image).numpy())
    folder = str(tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        experiment.load_search_data(folder, 4, val_per_class=3)
    train, val = experiment.load_search_data(
        folder, 4, val_per_class=3, batch_size=4, image_size=8
    )

    def names(ds):
        ids = []
        for x, y in ds:
            assert x.shape[1:] == (8, 8, 1)
            ids += [(int(v), int(c)) for v, c in zip(np.rint(x[:, 0, 0, 0] * 255), y)]
        return ids

    train_ids, val_ids = names(train), names(val)
    # Labels are the class folders'; the value says which image it was.
    assert all((v - 10) // 60 == c for v, c in train_ids + val_ids)
    assert len(set(train_ids)) == 12 and len(set(val_ids)) == 9
    assert not set(train_ids) & set(val_ids)
    assert np.bincount([c for _, c in val_ids]).tolist() == [3, 3, 3]


def test_variance_floor_follows_the_distiller_and_bounds_the_range(teacher_path):
    from keras_vid.distiller import EPS
    from keras_vid.transfer import VIDTerm

    hm = hypermodel(teacher_path)
    assert hm.eps == EPS
    terms = [t for t in hm.build(kt.HyperParameters()).terms if isinstance(t, VIDTerm)]
    assert len(terms) == len(PAIRS) and all(t.eps == EPS for t in terms)
    # Each range's low end, or a fixed value, at or under the floor fails now,
    # not in the middle of a search.
    for kwargs in (
        {"search_space": {"vid_init_variance": (0.05, 5.0, "log")}},
        {"search_space": {"vid_init_variance": [0.1, 1.0]}},
        {"fixed": {"vid_init_variance": 0.1}},
    ):
        with pytest.raises(ValueError, match="must exceed `eps`"):
            hypermodel(teacher_path, **kwargs)
    assert hypermodel(teacher_path, eps=1e-5, fixed={"vid_init_variance": 0.1})
