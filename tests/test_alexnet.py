import keras
import numpy as np
import pytest

import zoo
from zoo import alexnet
from conftest import assert_same_values


@pytest.fixture(scope="module")
def default():
    return alexnet()


def test_table_equals_published(default, published_table):
    expected = published_table("alexnet_table_14_2.csv")
    table = zoo.layer_table(default)
    assert list(table.columns[:len(expected.columns)]) == list(expected.columns)
    assert_same_values(table, expected)


def test_parameter_counts(default):
    assert default.count_params() == 62_378_344
    assert sum(int(np.prod(w.shape)) for w in default.non_trainable_weights) == 0
    params = zoo.layer_table(default).set_index("Layer")["Params"]
    assert params["C1"] == 34_944 and params["F8"] == 37_752_832 and params["Out"] == 4_097_000


def test_dropout_and_lrn_belong_to_their_rows():
    model = alexnet(input_shape=(67, 67, 3), num_classes=3, local_response_normalization=True)
    names = [layer.name for layer in model.layers]
    assert {"C1_lrn", "C3_lrn", "F8_dropout", "F9_dropout", "C7_pool"} <= set(names)
    assert names.index("C1_lrn") == names.index("C1") + 1
    assert model.get_layer("F8_dropout").rate == 0.5
    table = zoo.layer_table(model)
    assert list(table["Layer"]) == ["In", "C1", "S2", "C3", "S4", "C5", "C6", "C7", "F8", "F9",
                                    "Out"]
    assert alexnet(input_shape=(67, 67, 3), num_classes=3).count_params() == model.count_params()


def test_lrn_matches_tensorflow():
    import tensorflow as tf
    from zoo.layers import LocalResponseNormalization
    x = np.random.RandomState(0).randn(2, 5, 5, 11).astype("float32") * 30
    expected = tf.nn.local_response_normalization(x, depth_radius=2, bias=1.0, alpha=2e-5,
                                                  beta=0.75)
    np.testing.assert_allclose(LocalResponseNormalization()(x), expected, rtol=1e-5)


def test_other_sizes_and_channels():
    model = alexnet(input_shape=(128, 128, 1), num_classes=10)
    assert model.output.shape == (None, 10)
    table = zoo.layer_table(model).set_index("Layer")
    assert table.loc["C1", "Size"] == "30x30" and table.loc["In", "Maps"] == "1"
    assert alexnet(input_shape=(128, 128, 1), include_top=False).output.shape == (None, 2, 2, 256)
    assert alexnet(include_top=False, pooling="avg", input_shape=(99, 99, 3)).output.shape == \
        (None, 256)
    assert alexnet(input_shape=(67, 67, 3), classifier_activation=None).layers[-1] \
        .get_config()["activation"] == "linear"


def test_minimum_size():
    alexnet(input_shape=(67, 67, 3))
    with pytest.raises(ValueError, match=r"at least 67.*input_shape=\(66, 66, 3\)"):
        alexnet(input_shape=(66, 66, 3))


def test_lrn_layers_use_the_documented_parameters():
    # Documented: depth radius 2, bias 1, alpha 2e-5, beta 0.75 after the ReLU of C1 and C3.
    import tensorflow as tf
    model = alexnet(input_shape=(67, 67, 3), num_classes=3, local_response_normalization=True)
    x = np.random.RandomState(0).rand(1, 67, 67, 3).astype("float32") * 255
    for row in ("C1", "C3"):
        relu, lrn = keras.Model(model.input, [model.get_layer(row).output,
                                              model.get_layer(f"{row}_lrn").output]).predict(
            x, verbose=0)
        expected = tf.nn.local_response_normalization(relu, depth_radius=2, bias=1.0,
                                                      alpha=2e-5, beta=0.75)
        np.testing.assert_allclose(lrn, expected, rtol=1e-5)
        assert np.abs(lrn - relu).max() > 1e-3 * np.abs(relu).max()


def test_dropout_rate_reaches_both_dropout_layers():
    model = alexnet(input_shape=(67, 67, 3), num_classes=3, dropout=0.3)
    assert [model.get_layer(f"{row}_dropout").rate for row in ("F8", "F9")] == [0.3, 0.3]
    names = {layer.name for layer in alexnet(input_shape=(67, 67, 3), num_classes=3,
                                              dropout=0).layers}
    assert not {"F8_dropout", "F9_dropout"} & names


def test_table_spells_padding_types_and_activations_as_published(default, published_table):
    # assert_same_values compares case-insensitively; the book's spelling is pinned here.
    expected = published_table("alexnet_table_14_2.csv")
    columns = ["Type", "Padding", "Activation"]
    table = zoo.layer_table(default)
    assert table[columns].values.tolist() == expected[columns].values.tolist()
    assert table.set_index("Layer").loc["C3", columns].tolist() == ["Convolution", "SAME", "ReLU"]


def test_table_shows_the_pooling_of_include_top_false():
    """The global pooling of ``include_top=False`` is a row of its own (the tables of
    pooling=None, "avg" and "max" were the same), over C7's pooled 6x6 map at 227x227."""
    plain = zoo.layer_table(alexnet(include_top=False))
    assert list(plain["Layer"])[-1] == "C7"
    for pooling, kind in (("avg", "Avg"), ("max", "Max")):
        model = alexnet(include_top=False, pooling=pooling)
        table = zoo.layer_table(model)
        assert table.iloc[:-1].equals(plain)
        assert table.iloc[-1].to_dict() == {
            "Layer": f"{pooling}_pool", "Type": f"Global {kind} Pooling", "Maps": "256",
            "Size": "1x1", "Kernel size": "6x6", "Stride": "", "Padding": "", "Activation": "",
            "Params": 0}
        assert table["Params"].sum() == model.count_params()
