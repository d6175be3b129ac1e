"""keras.applications teachers: preprocessing measured right, offline errors clear."""

import keras
import numpy as np
import pytest

from keras_vid import applications
from keras_vid.applications import applications_preprocessing, applications_teacher


@pytest.fixture(scope="module")
def teacher():
    return applications_teacher("MobileNetV2", weights=None, input_shape=(32, 32, 3))


@pytest.mark.parametrize(
    "name, family",
    [
        ("MobileNetV2", keras.applications.mobilenet_v2),  # [-1, 1]
        ("ResNet50", keras.applications.resnet),  # BGR, ImageNet means
        ("DenseNet121", keras.applications.densenet),  # ImageNet mean and std
        ("keras.applications.EfficientNetB0", keras.applications.efficientnet),
    ],
)
@pytest.mark.parametrize("channels, scale", [(1, 1.0), (3, 255.0)])
def test_preprocessing_matches_the_family_preprocess_input(
    teacher, name, family, channels, scale
):
    prep = applications_preprocessing(
        name, (28, 28, channels), teacher, input_scale=scale
    )
    x = np.random.default_rng(0).uniform(0, scale, (3, 28, 28, channels))
    x = x.astype("float32")
    resized = keras.ops.convert_to_numpy(keras.layers.Resizing(32, 32)(x))
    rgb = np.repeat(resized, 3, axis=-1) if channels == 1 else resized
    expected = family.preprocess_input(rgb * (255.0 / scale))
    np.testing.assert_allclose(prep(x), expected, rtol=1e-4, atol=2e-3)
    assert not prep.trainable_weights


def test_headless_teacher_ends_in_features(teacher):
    assert teacher.output_shape == (None, 1280)
    top = applications_teacher(
        "MobileNetV2", weights=None, input_shape=(32, 32, 3), include_top=True
    )
    assert top.output_shape == (None, 1000)


def test_weights_file_is_loaded(teacher, tmp_path):
    path = str(tmp_path / "mnv2.weights.h5")
    teacher.save_weights(path)
    again = applications_teacher("MobileNetV2", weights=path, input_shape=(32, 32, 3))
    for a, b in zip(teacher.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="No weights file"):
        applications_teacher("MobileNetV2", weights=str(tmp_path / "missing.h5"))


def test_offline_imagenet_weights_say_which_file_to_put_where(monkeypatch, tmp_path):
    # A proxy on a closed port: the download fails at once, as offline.
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ValueError) as info:
        applications_teacher("MobileNetV2", input_shape=(96, 96, 3))
    message = str(info.value)
    fname = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    assert str(tmp_path / "models" / fname) in message
    assert "--teacher_weights=PATH" in message


def test_bad_names_and_shapes(teacher, monkeypatch):
    with pytest.raises(ValueError, match="Did you mean 'MobileNetV2'"):
        applications_teacher("MobilenetV2", weights=None)
    with pytest.raises(ValueError, match="4 channels"):
        applications_preprocessing("MobileNetV2", (28, 28, 4), teacher)

    class Gamma:  # a preprocess_input that is not affine
        @staticmethod
        def preprocess_input(x):
            return (x / 255.0) ** 2

    monkeypatch.setattr(applications, "_family", lambda fn: Gamma)
    with pytest.raises(ValueError, match="not a per-channel affine map"):
        applications_preprocessing("MobileNetV2", (28, 28, 1), teacher)
