"""ResNet v1/v2: parameter counts, Table 1, Keras weight compatibility, shapes, errors."""

import socket

import h5py
import keras
import numpy as np
import pytest

import zoo
from zoo.models import resnet as R

# (total, trainable, non-trainable) with 1,000 classes. Totals of 50/101/152 (v1, v2) are
# keras.applications' published counts; trainable counts of 18/34 are torchvision's.
COUNTS = {
    "resnet18": (11_699_112, 11_689_512, 9_600),
    "resnet34": (21_814_696, 21_797_672, 17_024),
    "resnet50": (25_636_712, 25_583_592, 53_120),
    "resnet101": (44_707_176, 44_601_832, 105_344),
    "resnet152": (60_419_944, 60_268_520, 151_424),
    "resnet50_v2": (25_613_800, 25_568_360, 45_440),
    "resnet101_v2": (44_675_560, 44_577_896, 97_664),
    "resnet152_v2": (60_380_648, 60_236_904, 143_744),
}

DEPTHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.fixture(scope="module")
def built():
    """Each model built once at its default 224x224x3 (symbolic building costs the
    same at any size; parameter counts do not depend on it with global pooling)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = zoo.get_model(name)
        return cache[name]

    return get


def test_registered_family():
    assert zoo.list_models("resnet*") == sorted(COUNTS)
    for name in COUNTS:
        info = zoo.model_info(name)
        assert info.family == "resnet" and info.default_input_shape == (224, 224, 3)
        assert info.weights == (() if name in ("resnet18", "resnet34") else ("imagenet",))
        assert info.year == (2016 if name.endswith("_v2") else 2015)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_counts(built, name):
    model = built(name)
    total, trainable, non_trainable = COUNTS[name]
    assert model.count_params() == total
    assert _count(model.trainable_weights) == trainable
    assert _count(model.non_trainable_weights) == non_trainable
    info = zoo.model_info(name)
    assert info.trainable_params == trainable
    assert info.params in (None, total)
    table = zoo.layer_table(model)
    assert table["params"].iloc[-1] == "" and sum(table["params"].iloc[:-1]) == total


@pytest.mark.parametrize("name", sorted(DEPTHS))
def test_table_1(built, name, published_table):
    depth = DEPTHS[name]
    column = f"{depth}-layer"
    expected = published_table("resnet_table_1.csv")[["layer name", "output size", column]]
    table = zoo.layer_table(built(name))
    assert list(table.columns) == ["layer name", "output size", column, "params"]
    body = table[table["layer name"] != "FLOPs"][expected.columns].reset_index(drop=True)
    exp_body = expected[expected["layer name"] != "FLOPs"].reset_index(drop=True)
    assert body.equals(exp_body), f"\n{body}\n!=\n{exp_body}"
    # FLOPs (multiply-adds) counted from the built layers, within 2% of the paper's
    # (1.81, 3.66, 3.86, 7.57, 11.28 x10^9; the paper rounds to 1.8, 3.6, 3.8, 7.6, 11.3).
    ours = table.set_index("layer name").loc["FLOPs", column]
    paper = expected.set_index("layer name").loc["FLOPs", column]

    def value(text):
        mantissa, exponent = text.split("x10^")
        return float(mantissa) * 10 ** int(exponent)

    assert value(ours) == pytest.approx(value(paper), rel=0.02)
    assert ours.endswith("x10^9")   # written as the paper writes it, 11.28x10^9 for ResNet-152


def test_table_v2_layout(built):
    table = zoo.layer_table(built("resnet50_v2")).set_index("layer name")
    v1 = zoo.layer_table(built("resnet50")).set_index("layer name")
    assert list(table.index) == list(v1.index)
    assert (table["50-layer"].drop("FLOPs") == v1["50-layer"].drop("FLOPs")).all()
    # ResNetV2 strides in the last block of conv2..conv4: each stage ends one step smaller.
    assert list(table["output size"]) == ["112x112", "28x28", "14x14", "7x7", "7x7", "1x1", ""]
    assert table.loc["conv5_x", "params"] == 14_991_360  # includes post_bn


def test_table_of_a_small_headless_model():
    model = zoo.resnet34(input_shape=(65, 40, 2), include_top=False, pooling="max")
    table = zoo.layer_table(model)
    assert list(table["layer name"]) == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x",
                                         "(head)", "FLOPs"]
    assert list(table["output size"]) == ["33x20", "17x10", "9x5", "5x3", "3x2", "1x1", ""]
    assert table["34-layer"][5] == "max pool"
    assert table["params"][0] == 7 * 7 * 2 * 64 + 2 * 64 + 2 * 64  # conv (no bias) + bn


def test_architecture_data():
    plan = R.block_plan(50, 1)
    assert len(plan) == 16 and plan[3] == ("conv3", 1, "bottleneck", 128, 2, True)
    assert [p[4] for p in R.block_plan(50, 2)[:3]] == [1, 1, 2]
    assert sum(p[5] for p in R.block_plan(18, 1)) == 3  # torchvision: no projection in conv2
    with pytest.raises(ValueError, match="depth must be one of"):
        R.block_plan(20, 1)
    with pytest.raises(ValueError, match="version 2"):
        R.block_plan(18, 2)


# ---------------------------------------------------------------------------
# Weight compatibility with keras.applications' published HDF5 files.

REFERENCES = {"resnet50": ("ResNet50", "conv5_block3_out"),
              "resnet50_v2": ("ResNet50V2", "post_relu")}
SIZE = 64


def _randomise(model, rng):
    """Random values for every weight, batch-norm statistics included, so that
    a weight landing in the wrong layer changes the outputs."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])
        elif layer.weights:
            layer.set_weights([w if w.ndim > 1 else rng.normal(0, 0.05, w.shape)
                               for w in layer.get_weights()])


@pytest.fixture(scope="module")
def reference_files(tmp_path_factory):
    """Per model: the reference keras.applications models (top and no-top) with
    random weights, and their weights written as the published files are (legacy
    HDF5: one group per layer with weights, in layer order)."""
    from keras.src.legacy.saving import legacy_h5_format

    out = {}
    root = tmp_path_factory.mktemp("resnet_weights")
    rng = np.random.default_rng(0)
    for name, (cls, last) in REFERENCES.items():
        ref = getattr(keras.applications, cls)(weights=None, input_shape=(SIZE, SIZE, 3),
                                               classifier_activation=None)
        _randomise(ref, rng)
        notop = keras.Model(ref.input, ref.get_layer(last).output)
        for include_top, model in ((True, ref), (False, notop)):
            fname = R.WEIGHT_FILES[name][include_top].fname
            path = root / fname
            with h5py.File(path, "w") as f:
                legacy_h5_format.save_weights_to_hdf5_group(f, model)
            out[name, include_top] = (model, path)
    return out


@pytest.mark.parametrize("name,include_top", [("resnet50", True), ("resnet50", False),
                                              ("resnet50_v2", True), ("resnet50_v2", False)])
def test_loads_keras_weight_files(reference_files, name, include_top, tmp_path, monkeypatch):
    reference, path = reference_files[name, include_top]
    if include_top == (name == "resnet50"):
        # weights="imagenet" with the file where keras.utils.get_file caches it.
        (tmp_path / "models").mkdir()
        (tmp_path / "models" / path.name).symlink_to(path)
        monkeypatch.setenv("KERAS_HOME", str(tmp_path))
        weights = "imagenet"
    else:
        weights = str(path)
    model = zoo.get_model(name, input_shape=(SIZE, SIZE, 3), include_top=include_top,
                          classifier_activation=None, weights=weights)
    with h5py.File(path, "r") as f:
        # Legacy HDF5 weights load by position among the layers that have weights.
        stored = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        stored = [n for n in stored if len(f[n].attrs["weight_names"])]
    assert stored == [layer.name for layer in model.layers if layer.weights]
    x = np.random.default_rng(1).uniform(0, 1, (2, SIZE, SIZE, 3)).astype("float32")
    # Eager calls: tracing predict() for a 50-layer graph costs more than the check.
    expected = keras.ops.convert_to_numpy(reference(x, training=False))
    got = keras.ops.convert_to_numpy(model(x, training=False))
    assert got.shape == expected.shape
    diff = float(np.max(np.abs(got - expected)))
    assert diff <= 1e-4 * max(1.0, float(np.max(np.abs(expected)))), diff


def _offline(*args, **kwargs):
    raise socket.gaierror(-2, "Name or service not known (offline test)")


def test_imagenet_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(socket, "getaddrinfo", _offline)
    target = tmp_path / "models" / "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with pytest.raises(ValueError) as err:
        zoo.resnet50_v2(weights="imagenet", include_top=False)
    message = str(err.value)
    assert str(target) in message and "could not fetch" in message
    assert R.WEIGHT_FILES["resnet50_v2"][False].url in message


@pytest.mark.parametrize("name,kwargs,match", [
    ("resnet50", dict(weights="imagenet", input_shape=(64, 64, 1)), "3 input channels"),
    ("resnet101", dict(weights="imagenet", num_classes=10), "num_classes=1000"),
    ("resnet18", dict(weights="imagenet"), "no published 'imagenet' weights"),
    ("resnet34", dict(weights="/no/such/file.h5"), "weights file not found"),
    ("resnet50", dict(pooling="mean", include_top=False), "pooling must be one of"),
    ("resnet50_v2", dict(num_classes=0), "num_classes must be an integer"),
    ("resnet18", dict(input_shape=(0, 0, 3)), "at least 1"),
    ("resnet152_v2", dict(input_shape=(64, 64)), "three positive integers"),
])
def test_argument_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        zoo.get_model(name, **kwargs)


def test_weights_that_do_not_fit(reference_files):
    _, path = reference_files["resnet50", False]
    with pytest.raises(ValueError, match="do not fit"):
        zoo.resnet18(weights=str(path), include_top=False, input_shape=(32, 32, 3))


# ---------------------------------------------------------------------------
# Sizes and channels.

def test_minimum_size_from_the_architecture():
    # Every window in ResNet is padded to "same" output size, so the stem and the
    # stages accept any size >= 1: the computed minimum is 1 for every depth.
    assert set(R.MIN_SIZES.values()) == {1}
    assert all(zoo.model_info(n).min_input_size == 1 for n in COUNTS)
    model = zoo.resnet18(input_shape=(1, 1, 3), num_classes=4)
    assert model.output.shape == (None, 4)
    x = np.ones((1, 1, 1, 3), "float32")
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(model(x, training=False))))


def test_output_shapes_for_sizes_and_channels():
    model = zoo.resnet18(input_shape=(97, 75, 1), num_classes=10, classifier_activation=None)
    assert model.output.shape == (None, 10)
    assert model.get_layer("conv5_block2_out").output.shape == (None, 4, 3, 512)
    assert model.get_layer("conv1_conv").kernel.shape == (7, 7, 1, 64)
    y = model(np.zeros((2, 97, 75, 1), "float32"), training=False)
    assert tuple(y.shape) == (2, 10)

    features = zoo.resnet34(input_shape=(64, 64, 5), include_top=False)
    assert features.output.shape == (None, 2, 2, 512)
    assert zoo.resnet18(input_shape=(64, 64, 2), include_top=False,
                        pooling="avg").output.shape == (None, 512)
    v2 = zoo.resnet50_v2(input_shape=(100, 120, 4), include_top=False, pooling="max")
    assert v2.output.shape == (None, 2048)
    assert v2.get_layer("post_relu").output.shape == (None, 4, 4, 2048)
    assert v2.get_layer("max_pool") is not None


def test_layer_names_follow_keras_applications(built):
    names = [layer.name for layer in built("resnet50").layers]
    assert names[:7] == ["images", "conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu",
                         "pool1_pad", "pool1_pool"]
    assert names[-3:] == ["conv5_block3_out", "avg_pool", "predictions"]
    for stage, blocks in zip(("conv2", "conv3", "conv4", "conv5"), (3, 4, 6, 3)):
        block = f"{stage}_block1"
        assert {f"{block}_0_conv", f"{block}_0_bn", f"{block}_1_conv", f"{block}_2_conv",
                f"{block}_3_bn", f"{block}_add", f"{block}_out",
                f"{stage}_block{blocks}_out"} <= set(names)
        assert f"{stage}_block{blocks + 1}_out" not in names
    v2 = [layer.name for layer in built("resnet50_v2").layers]
    assert "conv2_block3_0_pool" in v2 and v2[-4:] == ["post_bn", "post_relu", "avg_pool",
                                                        "predictions"]
    # resnet18: no bias before batch norm, no projection in conv2 (64 -> 64 channels).
    r18 = built("resnet18")
    assert not r18.get_layer("conv1_conv").use_bias
    assert "conv2_block1_0_conv" not in {layer.name for layer in r18.layers}
    assert r18.get_layer("conv3_block1_0_conv").strides == (2, 2)


def test_convolutions_are_the_zoos_conv2d(built):
    """Every convolution is zoo.layers.Conv2D (1x1 kernel gradients from a matmul in
    bfloat16 training); 30 of ResNet-50's 53 are 1x1 at stride 1."""
    from zoo.layers import Conv2D
    for name in ("resnet50", "resnet50_v2", "resnet18"):
        convs = [la for la in built(name).layers if isinstance(la, keras.layers.Conv2D)]
        assert convs and all(type(la) is Conv2D for la in convs)
    convs = [la for la in built("resnet50").layers if isinstance(la, keras.layers.Conv2D)]
    assert len(convs) == 53
    assert sum(la.kernel_size == (1, 1) and la.strides == (1, 1) for la in convs) == 30


def test_basic_blocks_pad_their_strided_convolution_on_every_side():
    """torchvision's basic block strides its first 3x3 convolution with one pixel of zeros on
    every side; Keras' "same" at stride 2 pads an even map on the bottom and right only (same
    shapes and parameters, other values)."""
    import tensorflow as tf
    model = zoo.resnet18(input_shape=(32, 32, 3), include_top=False)
    x = np.random.RandomState(0).rand(1, 32, 32, 3).astype("float32")
    block_input, conv = keras.Model(model.input, [
        model.get_layer("conv2_block2_out").output,
        model.get_layer("conv3_block1_1_conv").output])(x)
    assert tuple(block_input.shape) == (1, 8, 8, 64) and tuple(conv.shape) == (1, 4, 4, 128)
    kernel = model.get_layer("conv3_block1_1_conv").kernel
    padded = tf.pad(block_input, [[0, 0], [1, 1], [1, 1], [0, 0]])
    expected = tf.nn.conv2d(padded, kernel, strides=2, padding="VALID")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv), expected, rtol=1e-5,
                               atol=1e-5)
