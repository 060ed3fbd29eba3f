"""Xception: parameters, module table, minimum size, and weight compatibility with
Keras' published HDF5 files (written here from keras.applications.Xception, offline)."""

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

import zoo
from zoo import weights as zoo_weights
from zoo.features import feature_info
from zoo.models import xception as xception_module
from zoo.models.xception import xception

SIZE = 71  # small input for the weight tests (Keras' own minimum)


def counts(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return model.count_params(), trainable, model.count_params() - trainable


def predict(model, x):
    # One eager call: cheaper than tracing predict's function for a single batch.
    return keras.ops.convert_to_numpy(model(x, training=False))


def randomize(model, seed=0):
    """Give every batch norm distinct statistics so that a weight landing in the
    wrong layer changes the output (fresh batch norms are all identical)."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n),
                               rng.normal(0, 0.1, n), rng.uniform(0.5, 1.5, n)])


def write_published_layout(model, path):
    """Write ``model``'s weights as Keras' published Xception files are laid out:
    legacy HDF5, ``layer_names`` at the root, one group per layer, read back in
    topological order of the layers that have weights."""
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
        # The published files have no group for model-level weights (none exist here).
        assert len(f["top_level_model_weights"].attrs["weight_names"]) == 0
        del f["top_level_model_weights"]


@pytest.fixture(scope="module", params=[True, False], ids=["top", "notop"])
def reference(request, tmp_path_factory):
    """keras.applications.Xception at 71x71 with distinct weights, and its weights
    file in the published layout."""
    include_top = request.param
    keras.utils.set_random_seed(1)
    ref = keras.applications.Xception(weights=None, include_top=include_top,
                                      input_shape=(SIZE, SIZE, 3),
                                      classifier_activation=None)
    randomize(ref)
    path = tmp_path_factory.mktemp("weights") / f"xception_{include_top}.h5"
    write_published_layout(ref, path)
    x = np.random.RandomState(2).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    return include_top, ref, path, x, predict(ref, x)


@pytest.fixture(scope="module")
def ours(reference):
    """The zoo model with random weights, same configuration as the reference."""
    return xception(input_shape=(SIZE, SIZE, 3), include_top=reference[0])


@pytest.fixture(scope="module")
def xception_299():
    return xception(include_top=False)


def test_parameters_top_and_notop(reference, ours):
    include_top, ref, _, _, _ = reference
    model = ours
    if include_top:
        assert counts(model) == (22_910_480, 22_855_952, 54_528)
    else:
        assert counts(model) == (20_861_480, 20_806_952, 54_528)
    assert counts(model) == counts(ref)
    assert zoo.model_info("xception").params == 22_910_480
    assert zoo.model_info("xception").trainable_params == 22_855_952


def test_layer_order_matches_reference(reference, ours):
    """Legacy HDF5 files are loaded by the order of the layers that have weights:
    the zoo model must list them in the reference's order, with the same shapes."""
    include_top, ref, _, _, _ = reference
    model = ours
    ours = [layer for layer in model.layers if layer.weights]
    theirs = [layer for layer in ref.layers if layer.weights]
    assert len(ours) == len(theirs) == (81 if include_top else 80)
    shortcut_blocks = iter([2, 3, 4, 13])
    for a, b in zip(ours, theirs):
        if b.name.startswith("conv2d"):  # Keras leaves the shortcut convolutions unnamed
            block = next(shortcut_blocks)
            assert a.name == f"block{block}_shortcut"
        elif b.name.startswith("batch_normalization"):
            assert a.name == f"block{block}_shortcut_bn"
        else:
            assert a.name == b.name
        assert [tuple(w.shape) for w in a.weights] == [tuple(w.shape) for w in b.weights]


def test_loads_published_layout_with_equal_outputs(reference):
    include_top, _, path, x, expected = reference
    model = xception(input_shape=(SIZE, SIZE, 3), include_top=include_top,
                     classifier_activation=None, weights=str(path))
    got = predict(model, x)
    assert got.shape == expected.shape == ((2, 1000) if include_top else (2, 3, 3, 2048))
    assert np.std(expected) > 1e-2  # a real signal, not a constant
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_imagenet_uses_cached_file_and_fails_clearly_offline(reference, tmp_path, monkeypatch):
    include_top, _, path, x, expected = reference
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    fname = xception_module.WEIGHT_FILES[include_top].fname
    with pytest.raises(ValueError, match=r"could not fetch the 'imagenet' weights") as err:
        xception(input_shape=(SIZE, SIZE, 3), include_top=include_top, weights="imagenet")
    assert str(tmp_path / "models" / fname) in str(err.value)
    # Put the file where the message says: it loads without a network.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / fname).write_bytes(path.read_bytes())
    model = xception(input_shape=(SIZE, SIZE, 3), include_top=include_top,
                     classifier_activation=None, weights="imagenet")
    np.testing.assert_allclose(predict(model, x), expected, atol=1e-4, rtol=0)


def test_published_file_names_and_hashes():
    files = xception_module.WEIGHT_FILES
    assert files[True].url == (zoo_weights.KERAS_WEIGHTS_BASE
                               + "xception/xception_weights_tf_dim_ordering_tf_kernels.h5")
    assert files[True].file_hash == "0a58e3b7378bc2990ea3b43d5981f1f6"
    assert files[False].fname == "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert files[False].file_hash == "b0042744bf5b25fce3cb969f33bebb97"


def test_imagenet_argument_errors():
    with pytest.raises(ValueError, match="num_classes=1000"):
        xception(weights="imagenet", num_classes=10)
    with pytest.raises(ValueError, match="3 input channels"):
        xception(weights="imagenet", include_top=False, input_shape=(71, 71, 1))
    with pytest.raises(ValueError, match="pooling"):
        xception(include_top=False, pooling="mean")


def test_minimum_input_size_is_computed_and_exact():
    m = zoo.model_info("xception").min_input_size
    # Two unpadded 3x3 convolutions (the first with stride 2) leave 1x1 from 7x7;
    # everything after them is same-padded.
    assert m == 7
    model = xception(input_shape=(m, m, 3), include_top=False, num_classes=3)
    out = predict(model, np.zeros((1, m, m, 3), "float32"))
    assert out.shape == (1, 1, 1, 2048) and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="at least 7"):
        xception(input_shape=(m - 1, m - 1, 3))


def test_module_table_at_299(xception_299):
    assert tuple(xception_299.output.shape) == (None, 10, 10, 2048)
    table = zoo.layer_table(xception_299)
    assert list(table.columns) == ["flow", "module", "output size", "filters",
                                   "separable convs", "shortcut", "params"]
    rows = [tuple(r) for r in table.itertuples(index=False)]
    middle = ("middle", None, "19x19", "728, 728, 728", 3, "identity", 1_618_344)
    expected = [
        ("entry", "block1", "147x147", "32, 64", 0, "", 19_680),
        ("entry", "block2", "74x74", "128, 128", 2, "conv 1x1/2", 36_032),
        ("entry", "block3", "37x37", "256, 256", 2, "conv 1x1/2", 137_600),
        ("entry", "block4", "19x19", "728, 728", 2, "conv 1x1/2", 920_312),
        *[middle[:1] + (f"block{b}",) + middle[2:] for b in range(5, 13)],
        ("exit", "block13", "10x10", "728, 1024", 2, "conv 1x1/2", 2_045_136),
        ("exit", "block14", "10x10", "1536, 2048", 2, "", 4_755_968),
    ]
    assert rows == expected
    assert table["params"].sum() == 20_861_480


def test_table_rows_at_71(reference, ours):
    include_top, *_ = reference
    table = zoo.layer_table(ours)
    assert list(table["output size"][:14]) == ["33x33", "17x17", "9x9"] + ["5x5"] * 9 \
        + ["3x3", "3x3"]
    if include_top:
        assert tuple(table.iloc[-1]) == ("exit", "top", "1000", "", 0, "", 2048 * 1000 + 1000)
        assert table["params"].sum() == 22_910_480
    else:
        assert len(table) == 14


def test_feature_extractor_taps(xception_299):
    fx = zoo.feature_extractor(xception_299)
    expected = [("block1_conv2_act", 2, 64, (147, 147, 64)),
                ("block2_add", 4, 128, (74, 74, 128)),
                ("block3_add", 8, 256, (37, 37, 256)),
                ("block12_add", 16, 728, (19, 19, 728)),
                ("block14_sepconv2_act", 32, 2048, (10, 10, 2048))]
    got = [(f["name"], f["stride"], f["channels"], f["shape"]) for f in fx.feature_info]
    assert got == expected
    assert feature_info(fx) == fx.feature_info
    assert [tuple(t.shape[1:]) for t in fx.outputs] == [e[3] for e in expected]


def test_separable_convolutions_are_the_zoos(xception_299):
    """zoo.layers.SeparableConv2D (the pointwise kernel gradient from a matmul in bfloat16
    training on AMX, item 32), with Keras' class name, weights and layer table."""
    from zoo.layers import SeparableConv2D
    seps = [la for la in xception_299.layers if isinstance(la, keras.layers.SeparableConv2D)]
    assert len(seps) == 34 and all(type(la) is SeparableConv2D for la in seps)
    assert all(la.__class__.__name__ == "SeparableConv2D" for la in seps)


def test_batch_norms_match_the_reference(reference, ours):
    """Epsilon (outputs) and momentum (how training moves the statistics), layer by layer."""
    _, ref, _, _, _ = reference
    bn = (keras.layers.BatchNormalization,)
    ours_bn = [(la.epsilon, la.momentum) for la in ours.layers if isinstance(la, bn)]
    theirs_bn = [(la.epsilon, la.momentum) for la in ref.layers if isinstance(la, bn)]
    assert len(ours_bn) == len(theirs_bn) == 40
    assert ours_bn == theirs_bn
    assert set(theirs_bn) == {(1e-3, 0.99)}


def test_every_residual_sum_equals_the_reference(reference):
    """The final output hides a module's main path behind the shortcuts (a missing ReLU
    moves it by ~1e-5): compare each module's sum, where such a change is ~100x larger."""
    include_top, ref, path, x, _ = reference
    model = xception(input_shape=(SIZE, SIZE, 3), include_top=include_top,
                     classifier_activation=None, weights=str(path))

    def sums(m):
        adds = [la.output for la in m.layers if isinstance(la, keras.layers.Add)]
        return [keras.ops.convert_to_numpy(t) for t in keras.Model(m.input, adds)(x)]

    theirs, mine = sums(ref), sums(model)
    assert len(mine) == len(theirs) == 12
    for got, expected in zip(mine, theirs):
        assert np.std(expected) > 0.1
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_every_layer_is_the_references_in_order(reference, ours):
    """Layers without weights too (activations, pools, sums): the same types in the same
    order, named as Keras names them (its shortcut layers and sums are unnamed)."""
    import re
    _, ref, _, _, _ = reference
    mine = [(type(la).__name__, la.name) for la in ours.layers[1:]]
    theirs = [(type(la).__name__, la.name) for la in ref.layers[1:]]
    assert [t for t, _ in mine] == [t for t, _ in theirs]
    auto = re.compile(r"(conv2d|batch_normalization|add)(_\d+)?")
    named = [(n, r) for (_, n), (_, r) in zip(mine, theirs) if not auto.fullmatch(r)]
    assert len(named) > 100 and all(n == r for n, r in named)
