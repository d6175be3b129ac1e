"""Automatic layer pairing: stages, features and suggested pairs."""

import keras
import pytest

from keras_vid.models import get_model
from keras_vid.pairing import (
    RULES,
    Tap,
    describe_pairs,
    find_features,
    find_stages,
    suggest_pairs,
)
from keras_vid.taps import TapExtractor


def _as_list(taps):
    return [(t.path, t.shape) for t in taps]


def _assert_tappable(model, taps):
    """Every tap extracts, in one pass, a tensor of its stated shape."""
    ext = TapExtractor(model, [t.path for t in taps], include_outputs=False)
    assert [s[1:] for s in ext.tap_shapes] == [t.shape for t in taps]
    _, values = ext(keras.ops.zeros((1, *model.input_shape[1:])))
    assert [tuple(v.shape[1:]) for v in values] == [t.shape for t in taps]


def _plain_cnn(prefix, widths, input_shape=(16, 16, 1)):
    """Conv-ReLU stages `<prefix>1`, `<prefix>2`, ... halved by max pooling."""
    x = inp = keras.Input(input_shape)
    for i, w in enumerate(widths, start=1):
        if i > 1:
            x = keras.layers.MaxPooling2D(name=f"{prefix}pool{i}")(x)
        x = keras.layers.Conv2D(w, 3, padding="same", name=f"{prefix}conv{i}")(x)
        x = keras.layers.ReLU(name=f"{prefix}{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name=f"{prefix}feat")(x)
    out = keras.layers.Dense(3, name=f"{prefix}logits")(x)
    return keras.Model(inp, out, name=f"{prefix}net")


@pytest.fixture(scope="module")
def cnn():
    return get_model("cnn")


@pytest.fixture(scope="module")
def cnn_small():
    return get_model("cnn-small")


@pytest.fixture(scope="module")
def mlp():
    return get_model("mlp")


def test_zoo_cnn_stages_and_features(cnn):
    stages = find_stages(cnn)
    assert _as_list(stages) == [
        ("stage1", (28, 28, 32)),
        ("stage2", (14, 14, 64)),
        ("stage3", (7, 7, 128)),
    ]
    features = find_features(cnn)
    assert features == Tap("features", (128,))
    _assert_tappable(cnn, [*stages, features])


def test_frozen_teacher_has_the_same_stages(cnn):
    # A frozen teacher has no trainable weights; its layers still count.
    frozen = get_model("cnn")
    frozen.trainable = False
    assert _as_list(find_stages(frozen)) == _as_list(find_stages(cnn))


def test_zoo_wide_resnet_stages_end_each_resolution():
    model = get_model("wrn-16-2", input_shape=(28, 28, 1))
    stages = find_stages(model)
    # `stage1` and `stage2` are the named Identity layers on the last block's
    # residual Add; the next block reads only them (its pre-activation BN-ReLU
    # feeds both its conv and its 1x1 shortcut), so they are cuts. That
    # BN-ReLU is a later cut at the same resolution, but it opens the next,
    # strided block. At 7x7 the last cut is the final BN-ReLU, which only the
    # pooling reads; `stage3` before it is a cut too, but not the last.
    assert _as_list(stages) == [
        ("stage1", (28, 28, 32)),
        ("stage2", (14, 14, 64)),
        ("final_relu", (7, 7, 128)),
    ]
    features = find_features(model)
    assert features == Tap("features", (128,))
    _assert_tappable(model, [*stages, features])


def test_zoo_mlp_has_features_but_no_stages(mlp):
    assert find_stages(mlp) == []
    assert find_features(mlp) == Tap("features", (256,))


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("all", [("stage1",) * 2, ("stage2",) * 2, ("stage3",) * 2]),
        (
            "all+features",
            [("stage1",) * 2, ("stage2",) * 2, ("stage3",) * 2, ("features",) * 2],
        ),
        ("deep+features", [("stage2",) * 2, ("stage3",) * 2, ("features",) * 2]),
        ("last+features", [("stage3",) * 2, ("features",) * 2]),
        ("features", [("features",) * 2]),
    ],
)
def test_suggest_pairs_cnn_to_cnn_small(cnn, cnn_small, rule, expected):
    assert suggest_pairs(cnn, cnn_small, rule=rule) == expected


def test_default_rule_is_deep_plus_features(cnn, cnn_small):
    assert RULES[0] == "deep+features"
    assert suggest_pairs(cnn, cnn_small) == suggest_pairs(
        cnn, cnn_small, rule="deep+features"
    )


@pytest.mark.parametrize("rule", RULES)
def test_vector_student_gets_only_the_features_pair(cnn, mlp, rule):
    assert suggest_pairs(cnn, mlp, rule=rule) == [("features", "features")]


def test_fewer_student_stages_pair_at_the_same_scale():
    teacher = _plain_cnn("t", (4, 8, 8, 8))  # 16, 8, 4, 2
    student = _plain_cnn("s", (4, 4))  # 16, 8
    assert [t.path for t in find_stages(teacher)] == ["t1", "t2", "t3", "t4"]
    assert suggest_pairs(teacher, student, rule="all") == [("t1", "s1"), ("t2", "s2")]
    assert suggest_pairs(teacher, student) == [("t2", "s2"), ("tfeat", "sfeat")]
    assert suggest_pairs(teacher, student, rule="last+features") == [
        ("t2", "s2"),
        ("tfeat", "sfeat"),
    ]


def test_stages_pair_by_nearest_scale_across_resolutions():
    # Teacher at 24, 12, 6, 3 pixels of a 24-pixel input; the student resizes
    # to 32 first (scales 1.33, 0.67, 0.33, 0.17, 0.08 of the input). Each
    # teacher stage, deepest first, takes the nearest student scale.
    teacher = _plain_cnn("t", (4, 4, 4, 4), input_shape=(24, 24, 1))
    x = inp = keras.Input((24, 24, 1))
    x = keras.layers.Resizing(32, 32)(x)
    for i in range(1, 6):
        x = keras.layers.Conv2D(4, 3, strides=2 if i > 1 else 1, padding="same")(x)
        x = keras.layers.ReLU(name=f"s{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="sfeat")(x)
    student = keras.Model(inp, keras.layers.Dense(3)(x))
    assert [t.shape[0] for t in find_stages(student)] == [32, 16, 8, 4, 2]
    # t4 (3 px, 0.125) -> s4 (4 px, 0.167), not s5 (2 px, 0.083): 1.33x < 1.5x.
    assert suggest_pairs(teacher, student, rule="all") == [
        ("t1", "s1"),
        ("t2", "s2"),
        ("t3", "s3"),
        ("t4", "s4"),
    ]


@pytest.fixture(scope="module")
def mobilenet():
    """MobileNetV2 at 32x32, and the same backbone nested in a 28x28 wrapper."""
    backbone = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3),
        alpha=0.35,
        weights=None,
        include_top=True,
        classes=10,
        classifier_activation=None,
    )
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Resizing(32, 32, name="resize")(inp)
    x = keras.layers.Concatenate(name="rgb")([x, x, x])
    return backbone, keras.Model(inp, backbone(x), name="wrapper")


# Checked by hand against `backbone.summary()`: at 8, 4 and 2 pixels the last
# residual Add of the resolution; the expansion after it opens the strided
# block. 16x16 has no residual block, so its last cut is the expansion ReLU
# that feeds the strided depthwise conv. 1x1 ends at the last ReLU before the
# pooling. The 17, 9, 5 and 3 pixel ZeroPadding maps are never stages.
MOBILENET_STAGES = [
    ("block_1_expand_relu", (16, 16, 48)),
    ("block_2_add", (8, 8, 8)),
    ("block_5_add", (4, 4, 16)),
    ("block_12_add", (2, 2, 32)),
    ("out_relu", (1, 1, 1280)),
]


def test_keras_applications_model(mobilenet):
    backbone, _ = mobilenet
    stages = find_stages(backbone)
    assert _as_list(stages) == MOBILENET_STAGES
    features = find_features(backbone)
    assert features.shape == (1280,)
    assert isinstance(
        backbone.get_layer(features.path), keras.layers.GlobalAveragePooling2D
    )
    _assert_tappable(backbone, [*stages, features])


def test_nested_keras_applications_model(mobilenet):
    backbone, wrapper = mobilenet
    stages = find_stages(wrapper)
    prefix = backbone.name + "/"
    # The Resizing and Concatenate maps at 32x32 come before any weight.
    assert _as_list(stages) == [(prefix + p, s) for p, s in MOBILENET_STAGES]
    assert (32, 32) not in [t.shape[:2] for t in stages]
    features = find_features(wrapper)
    assert features.path == prefix + find_features(backbone).path
    _assert_tappable(wrapper, [*stages, features])


def _hand_built():
    inp = keras.Input((16, 12, 3))  # non-square maps all the way
    # 16x12: two sequential layers, then a spatial dropout and a pool.
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.SpatialDropout2D(0.1, name="stem_drop")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    # 8x6: a residual block, a ReLU after its Add, then a pre-activation BN
    # that feeds the strided conv to 4x3.
    b = keras.layers.Conv2D(16, 3, padding="same", name="b_in")(x)
    r = keras.layers.Conv2D(16, 3, padding="same", name="res_conv1")(b)
    r = keras.layers.ReLU(name="res_relu")(r)
    r = keras.layers.Conv2D(16, 3, padding="same", name="res_conv2")(r)
    x = keras.layers.Add(name="res_add")([b, r])
    x = keras.layers.ReLU(name="block_out")(x)
    x = keras.layers.BatchNormalization(name="pre_bn")(x)
    # 4x3: a side branch from `c3_relu` skips over `c4` and `c4_relu`.
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", name="c3")(x)
    x = keras.layers.ReLU(name="c3_relu")(x)
    side = keras.layers.GlobalAveragePooling2D(name="side_pool")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", name="c4")(x)
    x = keras.layers.ReLU(name="c4_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Concatenate(name="joined")([x, side])
    x = keras.layers.Dropout(0.5, name="drop")(x)
    out = keras.layers.Dense(5, name="logits")(x)
    return keras.Model(inp, out, name="hand_built")


def test_hand_built_graph_stages_are_the_last_cuts():
    model = _hand_built()
    stages = find_stages(model)
    assert _as_list(stages) == [
        ("stem_relu", (16, 12, 8)),  # the dropout after it is skipped
        ("block_out", (8, 6, 16)),  # not `pre_bn`: it opens the strided block
        ("c3_relu", (4, 3, 32)),  # not `c4_relu`: the side branch skips it
    ]
    features = find_features(model)
    assert features == Tap("joined", (64,))  # the Dropout is stepped over
    _assert_tappable(model, [*stages, features])


def test_sequential_model_and_nested_sequential():
    backbone = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same", name="c1"),
            keras.layers.ReLU(name="r1"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Conv2D(8, 3, padding="same", name="c2"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, name="logits"),
        ],
        name="seq",
    )
    assert _as_list(find_stages(backbone)) == [("r1", (8, 8, 4)), ("c2", (4, 4, 8))]
    assert find_features(backbone) == Tap("gap", (8,))
    inp = keras.Input((8, 8, 1))
    wrapper = keras.Model(inp, backbone(inp), name="outer")
    stages = find_stages(wrapper)
    assert _as_list(stages) == [("seq/r1", (8, 8, 4)), ("seq/c2", (4, 4, 8))]
    _assert_tappable(wrapper, [*stages, find_features(wrapper)])


def test_subclassed_model_is_rejected(cnn):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(TypeError, match="subclassed"):
        suggest_pairs(cnn, Net())


def test_no_usable_taps_points_at_explicit_pairs():
    def linear(name):
        inp = keras.Input((4,))
        return keras.Model(inp, keras.layers.Dense(10)(inp), name=name)

    teacher, student = linear("t"), linear("s")
    assert find_stages(teacher) == [] and find_features(teacher) is None
    with pytest.raises(ValueError, match=r"No usable taps.*pairs=\[\("):
        suggest_pairs(teacher, student)


def test_unknown_rule_lists_the_rules(cnn, cnn_small):
    with pytest.raises(ValueError, match="Did you mean 'deep\\+features'.*all\\+"):
        suggest_pairs(cnn, cnn_small, rule="deep+feature")


def test_describe_pairs_shows_shapes(cnn, cnn_small):
    text = describe_pairs(cnn, cnn_small, suggest_pairs(cnn, cnn_small))
    assert text == (
        "VID pairs (teacher <- student):\n"
        "  stage2 (14, 14, 64) <- stage2 (14, 14, 16)\n"
        "  stage3 (7, 7, 128) <- stage3 (7, 7, 32)\n"
        "  features (128,) <- features (32,)"
    )


def test_headless_model_ends_in_its_features():
    # keras.applications with include_top=False, pooling="avg": no classifier,
    # the pooled output is the features (not the last conv before it).
    headless = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3),
        alpha=0.35,
        weights=None,
        include_top=False,
        pooling="avg",
    )
    features = find_features(headless)
    assert (features.path, features.shape) == (headless.layers[-1].name, (1280,))
    assert find_features(get_model("cnn-small")).path == "features"
