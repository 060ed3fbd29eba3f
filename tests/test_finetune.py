"""Weights for fine-tuning: weight files read by what they hold (not their name), errors
that say which file fits, and ``zoo.weights.imagenet_input``, the input Keras' published
ImageNet weights were trained on, from the zoo's normalised images."""

import dataclasses
import os

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

import zoo
from zoo import data, train
from zoo import weights as zoo_weights
from zoo.models import resnet as R

from conftest import randomise_batch_norms  # noqa: E402

SHAPE = (32, 32, 3)


def _write_legacy(model, path):
    """The layout of Keras' published files (Keras 2's HDF5 weights)."""
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def source():
    """A ResNet-18 backbone with distinct weights."""
    return randomise_batch_norms(zoo.resnet18(include_top=False, input_shape=SHAPE))


def _weights(model, path):
    model.save_weights(path.with_name("w.weights.h5"))
    path.with_name("w.weights.h5").rename(path)
    return path


def _keras(model, path):
    model.save(path.with_name("m.keras"))
    path.with_name("m.keras").rename(path)
    return path


@pytest.mark.parametrize("write, fname", [
    (_write_legacy, "published.weights.h5"),   # a published file under Keras 3's ending
    (_write_legacy, "resnet18_notop"),         # no ending at all
    (_weights, "resnet18.h5"),                 # Keras 3 weights under the legacy ending
    (_keras, "resnet18.zip"),                  # a .keras archive under another name
])
def test_a_weights_file_loads_whatever_its_name(source, tmp_path, write, fname):
    path = write(source, tmp_path / fname)
    model = zoo.resnet18(include_top=False, input_shape=SHAPE, weights=str(path))
    assert _same(model.get_weights(), source.get_weights())


def test_errors_say_which_file_would_fit(source, tmp_path):
    notop = _write_legacy(source, tmp_path / "notop.h5")
    top = _write_legacy(randomise_batch_norms(zoo.resnet18(input_shape=SHAPE)), tmp_path / "top.h5")
    deeper = _write_legacy(zoo.resnet34(include_top=False, input_shape=SHAPE),
                           tmp_path / "resnet34.h5")
    with pytest.raises(ValueError, match=r"the file has 1 more layer with weights after the "
                                         r"model's last, from 'predictions': a file with the "
                                         r"classifier top, for include_top=True"):
        zoo.resnet18(include_top=False, input_shape=SHAPE, weights=str(top))
    with pytest.raises(ValueError, match=r"the file stops before the model's 'predictions': a "
                                         r"file without the classifier top, for "
                                         r"include_top=False"):
        zoo.resnet18(input_shape=SHAPE, weights=str(notop))
    with pytest.raises(ValueError, match=r"the file has 72 layers with weights, the model 40, "
                                         r"and the first that differs is #11: "
                                         r"'conv2_block3_1_conv' in the file, "
                                         r"'conv3_block1_1_conv' in the model"):
        zoo.resnet18(include_top=False, input_shape=SHAPE, weights=str(deeper))
    (tmp_path / "broken.h5").write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(ValueError, match=r"resnet18: .*broken\.h5 is not a weights file: "
                                         r"neither HDF5 weights"):
        zoo.resnet18(include_top=False, input_shape=SHAPE, weights=str(tmp_path / "broken.h5"))


def _truncated(source, path):
    """The first half of a legacy HDF5 file: an interrupted download (its HDF5 signature
    is intact, the rest is missing)."""
    whole = _write_legacy(source, path.with_name("whole.h5")).read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    return path


def test_a_truncated_weights_file_is_named_as_such(source, tmp_path):
    path = _truncated(source, tmp_path / "resnet18_notop.h5")
    with pytest.raises(ValueError, match=r"resnet18: .*resnet18_notop\.h5 is not a weights "
                                         r"file: .*\(an incomplete download\?\)"):
        zoo.resnet18(include_top=False, input_shape=SHAPE, weights=str(path))
    assert not zoo_weights.expects_imagenet_input("resnet50", str(path))


@pytest.mark.parametrize("truncated", [False, True])
def test_a_broken_cached_imagenet_file_says_how_to_replace_it(source, tmp_path, monkeypatch,
                                                             truncated):
    published = R.WEIGHT_FILES["resnet50"][False]
    (tmp_path / "models").mkdir()
    if truncated:
        _truncated(source, tmp_path / "models" / published.fname)
    else:
        (tmp_path / "models" / published.fname).write_bytes(b"\x89HDF truncated")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ValueError) as err:
        zoo.resnet50(include_top=False, input_shape=SHAPE, weights="imagenet")
    message = str(err.value)
    assert "is not a weights file" in message
    assert (f"It is the cached file for weights='imagenet': delete it (it is fetched again "
            f"when online) or replace it with {published.url}.") in message


def test_a_broken_file_of_ones_own_with_the_published_name_is_not_called_the_cached_one(
        tmp_path):
    published = R.WEIGHT_FILES["resnet50"][False]
    (tmp_path / published.fname).write_bytes(b"\x89HDF truncated")
    with pytest.raises(ValueError) as err:
        zoo.resnet50(include_top=False, input_shape=SHAPE, weights=str(tmp_path / published.fname))
    assert "is not a weights file" in str(err.value)
    assert "cached file" not in str(err.value)


# ---------------------------------------------------------------------------
# The input the published weights expect.

def _info(mean, std):
    return data.DatasetInfo(name="photos", task="classification", num_classes=3,
                            labels=["a", "b", "c"], input_shape=SHAPE, mean=mean, std=std)


@pytest.mark.parametrize("name, reference", [
    *[(f"resnet{depth}", keras.applications.resnet.preprocess_input)         # BGR minus the mean
      for depth in (50, 101, 152)],
    *[(f"resnet{depth}_v2", keras.applications.resnet_v2.preprocess_input)   # [-1, 1]
      for depth in (50, 101, 152)],
    ("xception", keras.applications.xception.preprocess_input),
    ("inception_v3", keras.applications.inception_v3.preprocess_input),
])
def test_imagenet_input_is_keras_preprocess_input(name, reference):
    raw = np.random.default_rng(0).uniform(0, 255, (2, *SHAPE)).astype("float32")
    info = _info([121.0, 112.5, 99.0], [61.0, 57.5, 52.0])
    zoo_input = data.preprocess(raw, info)      # what zoo.data feeds and the export embeds
    got = keras.ops.convert_to_numpy(zoo_weights.imagenet_input(name, info)(zoo_input))
    np.testing.assert_allclose(got, reference(raw.copy()), atol=1e-3)


def test_a_zoo_resnet50_with_imagenet_input_equals_keras_applications(tmp_path):
    """The published file in a zoo model fed the zoo's normalised images gives Keras'
    outputs for the same photos (with Keras' preprocess_input)."""
    ref = randomise_batch_norms(keras.applications.ResNet50(weights=None, include_top=False,
                                                 pooling="avg", input_shape=SHAPE))
    path = _write_legacy(ref, tmp_path / R.WEIGHT_FILES["resnet50"][False].fname)
    info = _info([118.0, 109.0, 101.0], [60.0, 58.0, 59.0])
    inputs = keras.Input(SHAPE)
    backbone = zoo.resnet50(include_top=False, pooling="avg", input_shape=SHAPE,
                            weights=str(path))
    model = keras.Model(inputs, backbone(zoo_weights.imagenet_input("resnet50", info)(inputs)))
    raw = np.random.default_rng(1).uniform(0, 255, (2, *SHAPE)).astype("float32")
    expected = keras.ops.convert_to_numpy(
        ref(keras.applications.resnet.preprocess_input(raw.copy()), training=False))
    got = keras.ops.convert_to_numpy(model(data.preprocess(raw, info), training=False))
    assert float(np.max(np.abs(got - expected))) <= 1e-4 * float(np.max(np.abs(expected)))


def test_imagenet_input_is_fixed_through_fit_rebuild_and_save(tmp_path):
    info = _info([118.0, 109.0, 101.0], [60.0, 58.0, 59.0])
    inputs = keras.Input(SHAPE)
    x = zoo_weights.imagenet_input("xception", info)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))
    assert len(model.trainable_weights) == 2
    mixed, _ = train.with_mixed_precision(model, "bfloat16")   # fit's rebuild
    assert len(mixed.trainable_weights) == 2 and _same(mixed.get_weights(), model.get_weights())
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert not again.get_layer("imagenet_input").trainable
    x = np.random.default_rng(2).normal(size=(2, *SHAPE)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


def test_imagenet_input_errors():
    with pytest.raises(ValueError, match="'resnet18' has no published ImageNet weights"):
        zoo_weights.imagenet_input("resnet18", _info([0.0] * 3, [1.0] * 3))
    grey = data.DatasetInfo(name="digits", task="classification", num_classes=10,
                            labels=[str(i) for i in range(10)], input_shape=(32, 32, 1))
    with pytest.raises(ValueError, match=r"3 input channels .* input_shape=\(32, 32, 1\)"):
        zoo_weights.imagenet_input("resnet50", grey)


def test_a_whole_model_saved_as_h5_loads_as_weights(source, tmp_path):
    """``model.save("m.h5")`` keeps the weights in a ``model_weights`` group beside the
    model's config: legacy HDF5 weights, not "no weights file"."""
    path = tmp_path / "whole.h5"
    source.save(path)
    model = zoo.resnet18(include_top=False, input_shape=SHAPE, weights=str(path))
    assert _same(model.get_weights(), source.get_weights())
    assert not zoo_weights.expects_imagenet_input("resnet50", str(path))


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(32, 32, 1)), r"^resnet50: weights='imagenet' needs 3 input channels "
                                     r"\(RGB\)\. Received: input_shape=\(32, 32, 1\)$"),
    # channels first is not the published files' layout either
    (dict(input_shape=(3, 32, 32)), r"needs 3 input channels \(RGB\)\. Received: "
                                    r"input_shape=\(3, 32, 32\)$"),
    (dict(num_classes=10), r"^resnet50: weights='imagenet' with include_top=True needs "
                           r"num_classes=1000 \(or use include_top=False\)\. Received: "
                           r"num_classes=10$"),
])
def test_imagenet_weights_that_cannot_fit_are_refused_before_the_download(kwargs, message,
                                                                          tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))   # nothing cached: a fetch would fail
    with pytest.raises(ValueError, match=message):
        zoo.resnet50(weights="imagenet", **kwargs)


def test_every_model_with_published_weights_has_its_input_conversion_tested():
    assert sorted(zoo_weights.IMAGENET_INPUT) == sorted(
        name for name in zoo.list_models() if "imagenet" in zoo.model_info(name).weights)


def test_imagenet_weights_without_the_top_take_any_num_classes(monkeypatch):
    """num_classes is the new head's, not the file's, when include_top=False."""
    monkeypatch.setattr(zoo_weights, "fetch", lambda name, wf: os.path.join("cache", wf.fname))
    got = zoo_weights.resolve("resnet50", "imagenet", SHAPE, False, 10, R.WEIGHT_FILES["resnet50"])
    assert got == os.path.join("cache", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")


def test_imagenet_input_from_another_raw_range():
    """Raw pixels in [-1, 1] (``raw_range``) are the 0..255 pixels the weights saw, mapped."""
    raw = np.random.default_rng(3).uniform(-1, 1, (2, *SHAPE)).astype("float32")
    info = dataclasses.replace(_info([0.1, -0.05, 0.2], [0.5, 0.45, 0.55]), raw_range=(-1.0, 1.0))
    zoo_input = data.preprocess(raw, info)
    for name, reference in (("resnet50", keras.applications.resnet.preprocess_input),
                            ("xception", keras.applications.xception.preprocess_input)):
        got = keras.ops.convert_to_numpy(zoo_weights.imagenet_input(name, info)(zoo_input))
        np.testing.assert_allclose(got, reference((raw + 1.0) * 127.5), atol=1e-3)
