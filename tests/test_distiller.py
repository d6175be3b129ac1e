"""VIDDistiller: training behaviour, one forward pass, frozen teacher, saving."""

import logging

import keras
import numpy as np
import pytest
from conftest import ce_loss, conv_net

import keras_vid
from keras_vid import LayerPair, VIDDistiller
from keras_vid.distiller import DIST_WEIGHT, KD_WEIGHT, VID_WEIGHT

PAIRS = [("t_stage1", "s_stage1"), ("t_stage2", "s_stage2")]


def make(models, lr=0.05, weight_decay=None, **kwargs):
    """A VID-only distiller on raw teacher taps, unless the test says otherwise.

    These tests check VID against hand-computed values and round trips, so they
    turn off the default KD term and the standardised targets (tests of those
    are in test_calibration.py and test_default_adds_kd_to_the_logs below).
    """
    teacher, student = models
    kwargs.setdefault("kd_weight", None)
    kwargs.setdefault("standardize", False)
    d = VIDDistiller(teacher, student, kwargs.pop("pairs", PAIRS), **kwargs)
    d.compile(
        keras.optimizers.SGD(lr, momentum=0.9, weight_decay=weight_decay),
        loss=ce_loss(),
        metrics=["accuracy"],
    )
    return d


def test_fit_logs_and_vid_terms_decrease(models, data):
    x, y = data
    teacher, _ = models
    before = [w.copy() for w in teacher.get_weights()]
    d = make(models)
    hist = d.fit(x, y, batch_size=8, epochs=8, verbose=0).history
    for key in ("loss", "task_loss", "vid_loss", "vid/s_stage1", "vid/s_stage2"):
        assert key in hist
    for key in ("vid/s_stage1", "vid/s_stage2"):
        assert hist[key][-1] < hist[key][0]
    # loss = task_loss + vid_loss, and vid_loss = sum of lambda * term.
    np.testing.assert_allclose(
        hist["loss"], np.add(hist["task_loss"], hist["vid_loss"]), rtol=1e-5
    )
    lam = [t.weight for t in d.vid_terms]
    # The default lambda: keras_vid.distiller.VID_WEIGHT (it was 20.0).
    assert lam == [VID_WEIGHT, VID_WEIGHT]
    np.testing.assert_allclose(
        hist["vid_loss"],
        lam[0] * np.array(hist["vid/s_stage1"])
        + lam[1] * np.array(hist["vid/s_stage2"]),
        rtol=1e-5,
        atol=1e-5,
    )
    after = teacher.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # incl. BN stats


def test_default_adds_dist_to_the_logs(models, data):
    """The default distiller: standardised VID terms, then DIST on the logits."""
    x, y = data
    teacher, student = models
    d = VIDDistiller(teacher, student, PAIRS)
    d.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss=ce_loss())
    assert [type(t).__name__ for t in d.terms] == ["VIDTerm", "VIDTerm", "DISTTerm"]
    assert all(t.standardize for t in d.vid_terms)
    hist = d.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    for key in ("loss", "task_loss", "vid_loss", "dist_loss", "dist/output"):
        assert key in hist
    np.testing.assert_allclose(
        hist["loss"],
        np.add(hist["task_loss"], np.add(hist["vid_loss"], hist["dist_loss"])),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        hist["dist_loss"], DIST_WEIGHT * np.array(hist["dist/output"]), rtol=1e-5
    )
    np.testing.assert_allclose(
        hist["vid_loss"],
        VID_WEIGHT * np.add(hist["vid/s_stage1"], hist["vid/s_stage2"]),
        rtol=1e-5,
        atol=1e-5,
    )


def test_default_adds_kd_for_a_vector_student(data):
    """A student without feature maps (an MLP) gets KD beside VID."""
    x, y = data
    teacher = conv_net(8, "t_", seed=1)
    keras.utils.set_random_seed(2)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Dense(16, activation="relu", name="s_features")(
        keras.layers.Flatten()(inp)
    )
    student = keras.Model(inp, keras.layers.Dense(3, name="s_logits")(h))
    d = VIDDistiller(teacher, student)
    assert [type(t).__name__ for t in d.terms] == ["VIDTerm", "KDTerm"]
    assert d.terms[-1].weight == KD_WEIGHT and d.terms[-1].temperature == 4.0
    d.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss=ce_loss())
    hist = d.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    np.testing.assert_allclose(
        hist["kd_loss"], KD_WEIGHT * np.array(hist["kd/output"]), rtol=1e-5
    )


def test_alphas_and_regressors_get_gradients_and_move(models, data):
    import tensorflow as tf

    x, y = data
    d = make(models)
    teacher, student = models
    _, t_taps = d._teacher_taps(x)
    with tf.GradientTape() as tape:
        y_pred, s_taps = d._extractors.student(x, training=True)
        total, *_ = d._total_loss(x, y, y_pred, None, t_taps, s_taps, training=True)
    variables = [v for term in d.vid_terms for v in term.trainable_weights]
    grads = tape.gradient(total, variables)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    before = [np.array(v) for v in variables]
    d.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert all(not np.allclose(b, np.array(v)) for b, v in zip(before, variables))
    # The distiller's optimiser owns them.
    ids = {id(v) for v in d.trainable_weights}
    assert all(id(v) in ids for v in variables)
    assert not any(id(v) in ids for v in teacher.weights)


def test_alphas_are_excluded_from_weight_decay(models, data):
    x, y = data
    results = {}
    for wd in (None, 0.5):
        t, s = conv_net(8, "t_", seed=1), conv_net(4, "s_", seed=2)
        keras.utils.set_random_seed(5)
        d = make((t, s), weight_decay=wd)
        d.train_on_batch(x[:8], y[:8])
        results[wd] = (
            [np.array(term.alpha) for term in d.vid_terms],
            np.array(s.get_layer("s_conv1").kernel),
        )
    for a0, a1 in zip(results[None][0], results[0.5][0]):
        np.testing.assert_allclose(a0, a1, rtol=1e-6)
    assert not np.allclose(results[None][1], results[0.5][1])  # decay is on


def bn_input_mean(student, x):
    bn = student.get_layer("s_bn")
    feats = keras.Model(student.input, bn.input)(x, training=True)
    return np.asarray(feats).mean(axis=(0, 1, 2))


def test_student_runs_once_per_step_bn_moves_once(models, data):
    x, y = data
    teacher, student = models
    d = make(models)
    bn = student.get_layer("s_bn")
    m0 = np.array(bn.moving_mean)
    mu = bn_input_mean(student, x[:8])
    d.train_on_batch(x[:8], y[:8])
    expected_once = bn.momentum * m0 + (1 - bn.momentum) * mu
    np.testing.assert_allclose(
        np.array(bn.moving_mean), expected_once, rtol=1e-5, atol=1e-7
    )


def test_keras_builtin_distiller_moves_bn_twice(models, data):
    """The anchor's defect: with feature layers it runs the student twice."""
    from keras.distillation import Distiller, FeatureDistillation

    x, y = data
    teacher, student = models
    d = Distiller(
        teacher=teacher,
        student=student,
        distillation_losses=[
            FeatureDistillation(
                teacher_layer_name="t_logits", student_layer_name="s_logits"
            )
        ],
        student_loss_weight=0.5,
    )
    d.compile(keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    bn = student.get_layer("s_bn")
    m0 = np.array(bn.moving_mean)
    mu = bn_input_mean(student, x[:8])
    d.train_on_batch(x[:8], y[:8])
    once = bn.momentum * m0 + (1 - bn.momentum) * mu
    twice = bn.momentum * once + (1 - bn.momentum) * mu
    np.testing.assert_allclose(np.array(bn.moving_mean), twice, rtol=1e-5, atol=1e-7)


def numpy_ce(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y]


def test_sample_weight_hand_computation(models, data):
    x, y = data
    x, y = x[:8], y[:8]
    d = make(models, vid_weight=[2.0, 0.5])
    w = np.linspace(0.0, 2.0, 8).astype("float32")
    logs = d.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True, verbose=0)
    logits = np.asarray(d.student(x, training=False))
    want_task = (w * numpy_ce(logits, y)).sum() / 8
    np.testing.assert_allclose(logs["task_loss"], want_task, rtol=1e-5)
    t_feats = keras.Model(
        d.teacher.input, [d.teacher.get_layer(n).output for n, _ in PAIRS]
    )
    s_feats = keras.Model(
        d.student.input, [d.student.get_layer(n).output for _, n in PAIRS]
    )
    ts, ss = t_feats(x), s_feats(x)
    total = want_task
    for term, lam, t, s, (_, name) in zip(d.vid_terms, [2.0, 0.5], ts, ss, PAIRS):
        mu = np.asarray(term.regressor(s)).astype("float64")
        var = np.log1p(np.exp(np.array(term.alpha, "float64"))) + term.eps
        per_ex = (0.5 * (np.log(var) + (np.asarray(t) - mu) ** 2 / var)).mean(
            axis=(1, 2, 3)
        )
        want = (w * per_ex).sum() / 8
        np.testing.assert_allclose(logs[f"vid/{name}"], want, rtol=1e-5, atol=1e-6)
        total += lam * want
    np.testing.assert_allclose(logs["loss"], total, rtol=1e-5, atol=1e-6)


def test_student_regularisation_losses_are_added(data):
    x, y = data
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", name="s_stage1")(inp)
    out = keras.layers.Dense(
        3, kernel_regularizer=keras.regularizers.L2(0.3), name="s_logits"
    )(keras.layers.GlobalAveragePooling2D()(h))
    student = keras.Model(inp, out)
    d = VIDDistiller(conv_net(8, "t_"), student, [("t_stage1", "s_stage1")])
    d.compile("sgd", loss=ce_loss())
    logs = d.evaluate(x[:8], y[:8], batch_size=8, return_dict=True, verbose=0)
    kernel = np.array(student.get_layer("s_logits").kernel)
    ce = numpy_ce(np.asarray(student(x[:8])), y[:8]).mean()
    np.testing.assert_allclose(
        logs["task_loss"], ce + 0.3 * (kernel**2).sum(), rtol=1e-5
    )


def test_call_and_predict_return_student_outputs(models, data):
    x, _ = data
    d = make(models)
    np.testing.assert_allclose(d.predict(x, verbose=0), d.student.predict(x, verbose=0))


def test_save_load_safe_mode_round_trip(models, data, tmp_path):
    x, y = data
    d = make(models, vid_weight=[1.0, 3.0], init_variance=2.0)
    d.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "d.keras"
    d.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, VIDDistiller)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), d.predict(x, verbose=0))
    for a, b in zip(loaded.vid_terms, d.vid_terms):
        np.testing.assert_array_equal(np.array(a.alpha), np.array(b.alpha))
    assert loaded.vid_weight == [1.0, 3.0] and loaded.init_variance == 2.0
    # It goes on training from where it was, weight decay exclusion included.
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_custom_regressor_pair_round_trips(models, data, tmp_path):
    x, _ = data
    reg = keras.Sequential(
        [keras.layers.Conv2D(16, 3, padding="same", name="reg_conv")], name="my_reg"
    )
    d = make(
        models, pairs=[LayerPair("t_stage2", "s_stage2", weight=4.0, regressor=reg)]
    )
    assert d.vid_terms[0].regressor is reg and d.vid_terms[0].weight == 4.0
    d.save(tmp_path / "c.keras")
    loaded = keras.saving.load_model(tmp_path / "c.keras", safe_mode=True)
    np.testing.assert_array_equal(
        loaded.vid_terms[0].regressor.get_weights()[0], reg.get_weights()[0]
    )


def test_student_stands_alone(models, data, tmp_path):
    import tensorflow as tf

    x, y = data
    d = make(models)
    d.fit(x, y, batch_size=8, epochs=1, verbose=0)
    d.student.save(tmp_path / "student.keras")
    student = keras.saving.load_model(tmp_path / "student.keras", safe_mode=True)
    assert not any("t_" in lyr.name for lyr in student.layers)
    np.testing.assert_allclose(student.predict(x, verbose=0), d.predict(x, verbose=0))
    d.export(str(tmp_path / "saved"))
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(
        np.asarray(served.serve(x)), d.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_nested_and_sequential_models(data):
    x, y = data
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(6, 3, padding="same", name="stage3")(inp)
    backbone = keras.Model(inp, h, name="backbone")
    outer_in = keras.Input((8, 8, 1))
    z = keras.layers.GlobalAveragePooling2D()(backbone(outer_in))
    teacher = keras.Model(outer_in, keras.layers.Dense(3)(z))
    student = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(2, 3, strides=2, padding="same", name="s_conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    d = VIDDistiller(teacher, student, [("backbone/stage3", "s_conv")])
    d.compile("sgd", loss=ce_loss())
    hist = d.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert "vid/s_conv" in hist and np.isfinite(hist["loss"]).all()


def test_teacher_frozen_with_notice(models, caplog):
    teacher, student = models
    assert teacher.trainable_weights
    with caplog.at_level(logging.INFO, logger="keras_vid"):
        VIDDistiller(teacher, student, PAIRS)
    assert not teacher.trainable_weights
    assert "Froze the teacher" in caplog.text


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.d = keras.layers.Dense(3)

    def call(self, x):
        return self.d(keras.ops.reshape(x, (-1, 64)))


@pytest.mark.parametrize(
    "change, error, match",
    [
        (
            {"pairs": [("t_stage9", "s_stage1")]},
            ValueError,
            r"no layer 't_stage9'.*t_stage1",
        ),
        ({"pairs": [("t_stage1", "s_stag1")]}, ValueError, r"student.*Close matches"),
        ({"pairs": []}, ValueError, "`pairs` is empty"),
        ({"pairs": PAIRS + PAIRS[:1]}, ValueError, "duplicates"),
        ({"pairs": ["t_stage1"]}, ValueError, "tuple or a"),
        ({"vid_weight": 0.0}, ValueError, "vid_weight"),
        ({"vid_weight": -1.0}, ValueError, "vid_weight"),
        ({"vid_weight": [1.0]}, ValueError, "1 values for 2 pairs"),
        ({"init_variance": 0.0}, ValueError, "init_variance"),
        ({"init_variance": -3.0}, ValueError, "init_variance"),
        ({"reduction": "avg"}, ValueError, "reduction"),
        ({"student": "subclassed"}, TypeError, "subclassed keras.Model"),
        ({"student": "other_input"}, ValueError, "same inputs"),
    ],
)
def test_bad_input_raises_at_construction(models, change, error, match):
    teacher, student = models
    kwargs = {"pairs": PAIRS}
    kwargs.update(change)
    if kwargs.get("student") == "subclassed":
        s = Subclassed()
        s(np.ones((1, 8, 8, 1), "float32"))
        kwargs["student"] = s
    elif kwargs.get("student") == "other_input":
        kwargs["student"] = conv_net(4, "s_", input_shape=(16, 16, 1))
    kwargs.setdefault("student", student)
    with pytest.raises(error, match=match):
        VIDDistiller(teacher, **kwargs)


def test_pair_weight_error():
    with pytest.raises(ValueError, match="pair weight"):
        LayerPair("a", "b", weight=-1)


def test_public_api():
    assert keras_vid.VIDDistiller is VIDDistiller
    assert issubclass(VIDDistiller, keras_vid.Distiller)
    assert issubclass(VIDDistiller, keras.Model)


@pytest.mark.parametrize("how", ["same model", "shared backbone"])
@pytest.mark.parametrize("cls", [keras_vid.Distiller, VIDDistiller])
def test_student_sharing_teacher_layers_is_refused(how, cls):
    teacher = conv_net(8, "t_", seed=1)
    if how == "same model":
        student = teacher
    else:
        # A student that reuses the teacher's first stage as its backbone.
        backbone = keras.Model(teacher.input, teacher.get_layer("t_stage1").output)
        x = inp = keras.Input((8, 8, 1), name="image")
        x = keras.layers.GlobalAveragePooling2D(name="s_features")(backbone(x))
        student = keras.Model(inp, keras.layers.Dense(3, name="s_logits")(x))
    trainable = len(teacher.trainable_weights)
    kwargs = {"terms": []} if cls is keras_vid.Distiller else {}
    match = "same model" if how == "same model" else r"share 6 weights.*t_conv1"
    with pytest.raises(ValueError, match=match + r".*clone_model"):
        cls(teacher, student, **kwargs)
    # Refused before the teacher is frozen, so the user's models are untouched.
    assert len(teacher.trainable_weights) == trainable
    assert student.trainable_weights
