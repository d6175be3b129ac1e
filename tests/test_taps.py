"""Finding layers by name and the one-pass extractor."""

import keras
import numpy as np
import pytest
from keras.ops import convert_to_numpy as to_numpy

from keras_vid.taps import OUTPUT, TapExtractor, check_graph_model, find_layer


def nested_model():
    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, padding="same", name="stage3")(inp)
    backbone = keras.Model(
        inp, keras.layers.Conv2D(5, 1, name="proj")(h), name="backbone"
    )
    outer_in = keras.Input((6, 6, 2))
    z = backbone(outer_in)
    z = keras.layers.GlobalAveragePooling2D(name="pool")(z)
    return keras.Model(outer_in, keras.layers.Dense(3, name="head")(z)), backbone


def test_nested_path_tap_matches_the_inner_layer():
    model, backbone = nested_model()
    ext = TapExtractor(model, ["backbone/stage3", "pool", OUTPUT])
    x = np.random.default_rng(0).random((2, 6, 6, 2)).astype("float32")
    out, (inner, pooled, same_out) = ext(x)
    want_inner = keras.Model(backbone.input, backbone.get_layer("stage3").output)(x)
    np.testing.assert_allclose(to_numpy(inner), to_numpy(want_inner), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(out), to_numpy(model(x)), rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(same_out))
    assert tuple(pooled.shape) == (2, 5)
    # The extractor shares weights: no new variables.
    assert {id(v) for v in ext.model.weights} <= {id(v) for v in model.weights}


def test_sequential_taps():
    seq = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, name="h"),
            keras.layers.Dense(2, name="o"),
        ]
    )
    out, (h,) = TapExtractor(seq, ["h"])(np.ones((1, 4), "float32"))
    assert tuple(h.shape) == (1, 3) and tuple(out.shape) == (1, 2)


def test_unbuilt_sequential_is_refused():
    seq = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has not been built"):
        check_graph_model(seq, "student")


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.ones((1, 3), "float32"))
    with pytest.raises(TypeError, match="subclassed keras.Model"):
        check_graph_model(net, "teacher")


def test_unknown_name_lists_close_matches():
    model, _ = nested_model()
    with pytest.raises(ValueError, match=r"no layer 'pol'.*Close matches: \['pool'\]"):
        find_layer(model, "pol", "teacher")
    with pytest.raises(ValueError, match="backbone/stage3"):
        find_layer(model, "backbone/stage", "teacher")


def test_shared_layer_is_refused():
    inp = keras.Input((3,))
    shared = keras.layers.Dense(3, name="shared")
    out = shared(shared(inp))
    with pytest.raises(ValueError, match="called 2 times"):
        TapExtractor(keras.Model(inp, out), ["shared"], "student")


def test_teacher_extractor_prunes_layers_after_its_taps():
    model, _ = nested_model()
    ext = TapExtractor(model, ["pool"], include_outputs=False)
    assert "head" not in [lyr.name for lyr in ext.model.layers]


def test_multi_output_tap_is_refused():
    # A built-in layer with two outputs: a GRU that returns its state.
    seq = keras.Input((3, 4))
    out, state = keras.layers.GRU(2, return_state=True, name="gru")(seq)
    model = keras.Model(seq, keras.layers.Dense(1)(out))
    with pytest.raises(ValueError, match="has 2 outputs; a tap must be a single"):
        TapExtractor(model, ["gru"], "teacher")
