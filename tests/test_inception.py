"""GoogLeNet and Inception-v3: parameter counts, the GoogLeNet table, weight
compatibility with keras.applications.InceptionV3's HDF5 layout, shapes and sizes."""

import warnings

import h5py
import keras
import numpy as np
import pytest

import zoo
from zoo import googlenet, inception_v3
from zoo.models import inception
from conftest import assert_same_values


AUTO_NAME = r"^(conv2d|batch_normalization|activation|concatenate|max_pooling2d|" \
    r"average_pooling2d|dense|dropout|flatten|input_layer)(_\d+)?$"


def _no_auto_names(model):
    """No Keras automatic names (GoogLeNet's "dropout" is named on purpose)."""
    import re
    return [la.name for la in model.layers
            if re.match(AUTO_NAME, la.name) and la.name != "dropout"] == []


def _counts(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return trainable, non_trainable


# ---------------------------------------------------------------------------
# GoogLeNet

@pytest.fixture(scope="module")
def goog():
    return googlenet()


def test_googlenet_parameters_paper_faithful(goog):
    assert goog.count_params() == 6_998_552
    assert _counts(goog) == (6_998_552, 0)
    assert zoo.model_info("googlenet").params == goog.count_params()
    assert goog.get_layer("dropout").rate == 0.4
    assert goog.get_layer("inception_3a_1x1").use_bias
    assert not any(isinstance(la, keras.layers.BatchNormalization) for la in goog.layers)
    assert _no_auto_names(goog)


def test_googlenet_table_equals_published(goog, published_table):
    expected = published_table("googlenet_table_1.csv")
    table = zoo.layer_table(goog)
    assert list(table.columns) == list(expected.columns) + ["params"]
    assert_same_values(table, expected)
    # Parameters per row, computed from the built layers, add up to the model.
    assert table["params"].sum() == goog.count_params()
    params = dict(zip(table["type"], table["params"]))
    assert params["inception (3a)"] == 163_696 and params["inception (5b)"] == 1_444_080
    assert params["linear"] == 1_025_000


def test_googlenet_table_follows_the_built_model():
    model = googlenet(input_shape=(96, 96, 1), num_classes=7, dropout=0.5,
                      classifier_activation=None, local_response_normalization=True)
    table = zoo.layer_table(model)
    assert list(table["type"])[:2] == ["convolution", "max pool"]
    assert list(table["output size"])[:2] == ["48x48x64", "24x24x64"]
    assert list(table["type"])[-3:] == ["avg pool", "dropout (50%)", "linear"]
    assert table["patch size/stride"].iloc[-3] == "3x3/1"
    assert table["output size"].iloc[-1] == "1x1x7"
    assert table["params"].iloc[0] == 7 * 7 * 1 * 64 + 64
    assert {"pool1_lrn", "conv2_lrn"} <= {la.name for la in model.layers}


def test_googlenet_aux_logits(monkeypatch):
    model = googlenet(aux_logits=True)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 1000)] * 3
    assert _no_auto_names(model)
    assert model.get_layer("aux1_avg_pool").output.shape == (None, 4, 4, 512)
    assert model.get_layer("aux2_avg_pool").output.shape == (None, 4, 4, 528)
    assert model.get_layer("aux1_dropout").rate == 0.7
    # aux1: conv 512*128+128, FC 2048*1024+1024, FC 1024*1000+1000; aux2 sees 528 channels.
    aux1 = 65_664 + 2_098_176 + 1_025_000
    aux2 = 67_712 + 2_098_176 + 1_025_000
    assert _counts(model) == (6_998_552 + aux1 + aux2, 0) == (13_378_280, 0)
    # The paper's 19 rows are unchanged by the auxiliary heads; each head is one more row,
    # so that the params column sums to the model's count.
    table = zoo.layer_table(model)
    assert table.iloc[:19].equals(zoo.layer_table(googlenet()))
    assert table.iloc[19:][["type", "patch size/stride", "output size", "#1x1",
                            "params"]].values.tolist() == [
        ["auxiliary classifier (4a)", "5x5/3", "1x1x1000", "128", aux1],
        ["auxiliary classifier (4d)", "5x5/3", "1x1x1000", "128", aux2]]
    assert table["params"].sum() == model.count_params()
    # The auxiliary rows are read from the model's layers, not from the constants it was
    # built from.
    monkeypatch.setattr(inception, "AUX_POOL", 4)
    monkeypatch.setattr(inception, "AUX_CONV", 64)
    assert zoo.layer_table(model).iloc[19:][["patch size/stride", "#1x1"]].values.tolist() \
        == [["5x5/3", "128"]] * 2
    small = googlenet(aux_logits=True, input_shape=(65, 65, 3), num_classes=5)
    x = np.random.RandomState(0).rand(2, 65, 65, 3).astype("float32")
    outs = small(x, training=False)
    assert [tuple(o.shape) for o in outs] == [(2, 5)] * 3
    np.testing.assert_allclose(np.sum(outs[1], axis=-1), 1.0, rtol=1e-5)



def test_googlenet_trained_with_auxiliary_heads_loads_without_them(tmp_path):
    """One network, trained with its auxiliary classifiers and used without: the .keras file
    gives the weights by layer name; a .weights.h5 file pairs layers by type and order, and
    its error says so (with the shapes that differ, not Keras' repr of the variable)."""
    keras.utils.set_random_seed(0)
    trained = googlenet(aux_logits=True, input_shape=(65, 65, 3), num_classes=3)
    trained.save(tmp_path / "aux.keras")
    trained.save_weights(tmp_path / "aux.weights.h5")
    x = np.random.RandomState(0).rand(2, 65, 65, 3).astype("float32")
    used = googlenet(input_shape=(65, 65, 3), num_classes=3, weights=tmp_path / "aux.keras")
    np.testing.assert_array_equal(used(x, training=False), trained(x, training=False)[0])
    with pytest.raises(ValueError) as error:
        googlenet(input_shape=(65, 65, 3), num_classes=3, weights=tmp_path / "aux.weights.h5")
    message = str(error.value)
    assert "<Dense name=predictions, built=True>: shapes differ: variable.shape=(1024, 3), " \
           "Received: value.shape=(128, 1024). List of objects" in message
    assert message.endswith("; a .weights.h5 file pairs layers by type and order, not by name: "
                            "for a model with layers added or left out (googlenet with and "
                            "without aux_logits) use the .keras file, which pairs them by name.")
    assert "Target variable" not in message and "\n" not in message
    # a whole model saved as legacy HDF5 (model.save("aux.h5")) pairs layers by position too
    # (it said "another architecture's weights?")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained.save(tmp_path / "aux.h5")
    with pytest.raises(ValueError, match=r"the first that differs is #58: 'aux1_conv' in the "
                                         r"file, 'predictions' in the model \(the file's 6 "
                                         r"layers of auxiliary classifiers, 'aux1_conv' to "
                                         r"'aux2_predictions': a model trained with "
                                         r"aux_logits=True, whose \.keras file loads into this "
                                         r"one by layer name\)\.$"):
        googlenet(input_shape=(65, 65, 3), num_classes=3, weights=tmp_path / "aux.h5")


def test_googlenet_trained_without_auxiliary_heads_does_not_load_into_one_with_them(tmp_path):
    """The other way round no file fits (none gives auxiliary classifiers it does not have):
    each error says the file is of a model built without aux_logits, where the legacy file's
    said "another architecture's weights?" and the .weights.h5 file's sent to the .keras
    file, refused as well."""
    plain = googlenet(input_shape=(65, 65, 3), num_classes=3)
    plain.save(tmp_path / "plain.keras")
    plain.save_weights(tmp_path / "plain.weights.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain.save(tmp_path / "plain.h5")
    ends = {"keras": r"e\.g\. aux1_conv, aux2_conv, aux1_fc \(auxiliary classifiers: weights "
                     r"of a model built without aux_logits, which load into one built so\)\)\.$",
            "weights.h5": r"; a \.weights\.h5 file pairs layers by type and order, not by name: "
                          r"weights of a model built without aux_logits load into one built so "
                          r"only \(its \.keras file too\), and those of one trained with "
                          r"aux_logits into one without from its \.keras file\.$",
            "h5": r"\(the model's 6 layers of auxiliary classifiers, 'aux1_conv' to "
                  r"'aux2_predictions', are not in the file: weights of a model built without "
                  r"aux_logits, which load into one built so\)\.$"}
    for ext, end in ends.items():
        with pytest.raises(ValueError, match=end):
            googlenet(aux_logits=True, input_shape=(65, 65, 3), num_classes=3,
                      weights=tmp_path / f"plain.{ext}")


def test_googlenet_batch_norm():
    model = googlenet(batch_norm=True)
    # 57 convolutions lose their biases (7,280 values); each gets gamma, beta
    # (trainable) and moving mean/variance (non-trainable).
    assert _counts(model) == (7_005_832, 14_560)
    assert not model.get_layer("inception_4e_5x5").use_bias
    assert model.get_layer("inception_4e_5x5_bn").output.shape == (None, 14, 14, 128)
    aux = googlenet(batch_norm=True, aux_logits=True)
    assert _counts(aux) == (13_385_816, 15_072)


def test_googlenet_shapes_sizes_and_errors(tmp_path):
    assert inception.GOOGLENET_MIN_SIZE == zoo.model_info("googlenet").min_input_size == 65
    small = googlenet(input_shape=(65, 65, 2), num_classes=3)
    assert small.output.shape == (None, 3)
    assert googlenet(input_shape=(100, 80, 5), include_top=False).output.shape == \
        (None, 4, 3, 1024)
    assert googlenet(input_shape=(65, 65, 3), include_top=False, pooling="max").output.shape \
        == (None, 1024)
    with pytest.raises(ValueError, match=r"at least 65 \(the auxiliary classifiers' unpadded "
                                         r"5x5/3 average pooling after inception 4a and 4d .* "
                                         r"holds with aux_logits=False too"):
        googlenet(input_shape=(32, 32, 3), num_classes=10)   # CIFAR's size
    with pytest.raises(ValueError, match="65"):
        googlenet(input_shape=(64, 64, 3), aux_logits=True)
    with pytest.raises(ValueError, match="include_top"):
        googlenet(aux_logits=True, include_top=False)
    with pytest.raises(ValueError, match="imagenet"):
        googlenet(weights="imagenet")
    with pytest.raises(ValueError, match="dropout"):
        googlenet(dropout=1.0)
    with pytest.raises(ValueError, match="batch_norm"):
        googlenet(batch_norm="yes")
    # weights=PATH loads a saved file into a fresh model.
    path = tmp_path / "g.weights.h5"
    small.save_weights(path)
    again = googlenet(input_shape=(65, 65, 2), num_classes=3, weights=str(path))
    x = np.random.RandomState(1).rand(1, 65, 65, 2).astype("float32")
    np.testing.assert_allclose(again(x), small(x), rtol=1e-6)


# ---------------------------------------------------------------------------
# Inception-v3

SMALL = (75, 75, 3)


def test_inception_v3_parameters_and_table():
    model = inception_v3()
    assert model.count_params() == 23_851_784
    assert _counts(model) == (23_817_352, 34_432)
    info = zoo.model_info("inception_v3")
    assert (info.params, info.trainable_params) == (23_851_784, 23_817_352)
    assert model.get_layer("mixed5_branch7x7_2_conv").kernel_size == (1, 7)
    assert _no_auto_names(model)
    assert model.get_layer("mixed10").output.shape == (None, 8, 8, 2048)
    table = zoo.layer_table(model).set_index("layer")
    assert list(table.index[:7]) == ["stem_1a_3x3", "stem_2a_3x3", "stem_2b_3x3", "stem_3a",
                                     "stem_3b_1x1", "stem_4a_3x3", "stem_5a"]
    assert table.loc["stem_2b_3x3", "type"] == "conv padded"
    assert table.loc["mixed0", "branches"] == \
        "1x1 64 | 1x1 48, 5x5 64 | 1x1 64, 3x3 96, 3x3 96 | avg pool 3x3, 1x1 32"
    assert table.loc["mixed3", "type"] == "reduction"
    assert table.loc["mixed8", "output size"] == "8x8x1280"
    assert table.loc["avg_pool", "patch size/stride"] == "8x8"
    assert table["params"].sum() == 23_851_784


def _reference_h5(ref, path):
    """Write ``ref``'s weights as the published Keras files store them."""
    from keras.src.legacy.saving import legacy_h5_format
    rng = np.random.RandomState(0)
    for layer in ref.layers:  # non-trivial batch-norm statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.1, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, c).astype("float32"))
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, ref)
    return str(path)


def _offline(monkeypatch, keras_home):
    """No network, and an empty Keras cache at ``keras_home``; returns the URLs asked for."""
    import keras.src.backend.config as keras_config
    import keras.src.utils.file_utils as file_utils
    asked = []

    def no_network(url, *args, **kwargs):
        asked.append(url)
        raise OSError("network disabled in this test")

    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(keras_home))
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    return asked


@pytest.mark.parametrize("include_top", [True, False])
def test_inception_v3_loads_keras_weight_layout(include_top, tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    # Logits (not softmax probabilities near 1/1000) so that the comparison is sharp.
    ref = keras.applications.InceptionV3(weights=None, include_top=include_top,
                                         input_shape=SMALL, classifier_activation=None)
    if include_top:  # weights=PATH
        weights = _reference_h5(ref, tmp_path / "inception_v3.h5")
    else:  # weights="imagenet", the no-top file already in the Keras cache
        asked = _offline(monkeypatch, tmp_path)
        (tmp_path / "models").mkdir()
        _reference_h5(ref, tmp_path / "models" / inception.INCEPTION_V3_WEIGHTS[False].fname)
        weights = "imagenet"
    model = inception_v3(input_shape=SMALL, include_top=include_top, weights=weights,
                         classifier_activation=None)
    if not include_top:
        assert asked == []
    for mine, theirs in zip(model.weights, ref.weights):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    x = np.random.RandomState(1).rand(2, *SMALL).astype("float32") * 2 - 1
    expected = np.asarray(ref(x, training=False))
    assert expected.std() > 1e-2
    got = np.asarray(model(x, training=False))
    print(f"include_top={include_top}: max abs difference {np.abs(got - expected).max():.3g}")
    np.testing.assert_allclose(got, expected, atol=1e-4)
    if not include_top:
        assert _counts(model) == (21_768_352, 34_432)
        assert model.count_params() == 21_802_784
    # Layer order by weights: what order-based (legacy HDF5) loading relies on.
    shapes = [[tuple(w.shape) for w in la.weights] for la in model.layers if la.weights]
    assert shapes == [[tuple(w.shape) for w in la.weights] for la in ref.layers if la.weights]


def test_inception_v3_imagenet_offline_error(tmp_path, monkeypatch):
    asked = _offline(monkeypatch, tmp_path)
    with pytest.raises(ValueError, match="could not fetch.*put it at .*"
                       "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        inception_v3(weights="imagenet", include_top=False, input_shape=SMALL)
    assert asked == ["https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                     "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    with pytest.raises(ValueError, match="3 input channels"):
        inception_v3(weights="imagenet", input_shape=(299, 299, 1))
    with pytest.raises(ValueError, match="num_classes=1000"):
        inception_v3(weights="imagenet", num_classes=10)


def test_inception_v3_shapes_and_min_size():
    assert inception.INCEPTION_V3_MIN_SIZE == zoo.model_info("inception_v3").min_input_size == 75
    model = inception_v3(input_shape=(75, 75, 1), num_classes=4, classifier_activation=None)
    assert model.output.shape == (None, 4)
    assert model.get_layer("mixed10").output.shape == (None, 1, 1, 2048)
    assert inception_v3(input_shape=(160, 120, 5), include_top=False).output.shape == \
        (None, 3, 2, 2048)
    with pytest.raises(ValueError, match="75"):
        inception_v3(input_shape=(74, 74, 3))
    with pytest.raises(ValueError, match="75"):
        inception_v3(input_shape=(120, 74, 3))


def test_convolutions_are_the_zoos_conv2d(goog):
    """zoo.layers.Conv2D (1x1 kernel gradients from a matmul in bfloat16 training)."""
    from zoo.layers import Conv2D
    for model in (goog, inception_v3(input_shape=(75, 75, 3), num_classes=10)):
        convs = [la for la in model.layers if isinstance(la, keras.layers.Conv2D)]
        assert convs and all(type(la) is Conv2D for la in convs)
        assert sum(la.kernel_size == (1, 1) for la in convs) >= 20


def test_googlenet_module_concatenates_its_branches_in_the_papers_order():
    """Figure 2(b): 1x1, 3x3, 5x5 and 3x3/1 max pooling + projection, concatenated in the
    order of Table 1's columns (#1x1, #3x3, #5x5, pool proj)."""
    import tensorflow as tf
    model = googlenet(input_shape=(65, 65, 3), num_classes=3)
    names = ["pool2", "inception_3a_pool", "inception_3a_1x1_relu", "inception_3a_3x3_relu",
             "inception_3a_5x5_relu", "inception_3a_pool_proj_relu", "inception_3a"]
    x = np.random.RandomState(0).rand(1, 65, 65, 3).astype("float32")
    pool2, pool, b1, b2, b3, b4, out = keras.Model(
        model.input, [model.get_layer(n).output for n in names]).predict(x, verbose=0)
    np.testing.assert_allclose(pool, tf.nn.max_pool2d(pool2, 3, 1, "SAME"), rtol=1e-6)
    assert [b.shape[-1] for b in (b1, b2, b3, b4)] == [64, 128, 32, 32]
    np.testing.assert_array_equal(out, np.concatenate([b1, b2, b3, b4], axis=-1))


def test_googlenet_auxiliary_classifier_pools_by_averaging_and_uses_relu():
    """Section 5: 5x5/3 average pooling, 1x1 convolution + ReLU, FC 1024 + ReLU, 70% dropout,
    FC to the classes, in that order."""
    import tensorflow as tf
    model = googlenet(aux_logits=True, input_shape=(65, 65, 3), num_classes=3)
    names = ["inception_4d", "aux2_avg_pool", "aux2_conv", "aux2_fc", "aux2_dropout"]
    x = np.random.RandomState(0).rand(2, 65, 65, 3).astype("float32")
    source, pool, conv, fc, drop = keras.Model(
        model.input, [model.get_layer(n).output for n in names]).predict(x, verbose=0)
    np.testing.assert_allclose(pool, tf.nn.avg_pool2d(source, 5, 3, "VALID"), rtol=1e-5,
                               atol=1e-6)
    assert conv.shape == (2, 1, 1, 128) and fc.shape == (2, 1024)
    assert fc.min() == 0 and (fc > 0).any()   # a ReLU output
    np.testing.assert_array_equal(drop, fc)   # dropout is the identity at inference
    assert model.get_layer("aux2_fc").get_config()["activation"] == "relu"
    assert [p.name for p in inception._parents(model.get_layer("aux2_predictions"))] == \
        ["aux2_dropout"]
