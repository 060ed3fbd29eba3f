"""U-Net (paper network, options, backbones, valid sizes) and zoo.feature_extractor."""

import keras
import numpy as np
import pytest

import zoo
from zoo.features import feature_extractor, feature_info
from zoo.models.unet import output_size, unet, valid_input_sizes


def counts(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return model.count_params(), trainable, model.count_params() - trainable


@pytest.fixture(scope="module")
def paper_unet():
    return unet()


def test_paper_network(paper_unet):
    assert tuple(paper_unet.input.shape) == (None, 572, 572, 1)
    assert tuple(paper_unet.output.shape) == (None, 388, 388, 2)
    assert counts(paper_unet) == (31_030_658, 31_030_658, 0)
    info = zoo.model_info("unet")
    assert (info.task, info.params, info.default_input_shape) == \
        ("segmentation", 31_030_658, (572, 572, 1))


def test_level_table(paper_unet):
    table = zoo.layer_table(paper_unet)
    assert list(table.columns) == ["level", "path", "resolution", "filters", "operations",
                                   "params"]
    down = "conv 3x3, ReLU, conv 3x3, ReLU, max pool 2x2"
    up = "up-conv 2x2, crop, concat, conv 3x3, ReLU, conv 3x3, ReLU"
    expected = [
        (0, "contracting", "568x568", 64, down, 37_568),
        (1, "contracting", "280x280", 128, down, 221_440),
        (2, "contracting", "136x136", 256, down, 885_248),
        (3, "contracting", "64x64", 512, down, 3_539_968),
        (4, "bottom", "28x28", 1024, "conv 3x3, ReLU, conv 3x3, ReLU", 14_157_824),
        (3, "expanding", "52x52", 512, up, 9_176_576),
        (2, "expanding", "100x100", 256, up, 2_294_528),
        (1, "expanding", "196x196", 128, up, 573_824),
        (0, "expanding", "388x388", 64, up, 143_552),
        ("", "output", "388x388", 2, "conv 1x1, softmax", 130),
    ]
    assert [tuple(r) for r in table.itertuples(index=False)] == expected
    assert table["params"].sum() == 31_030_658


# Built at the smallest valid size (parameters do not depend on the size).
# batch_norm: each of the 18 3x3 convolutions (5,888 filters in all) drops its
# bias and gains 2 trainable + 2 moving statistics per filter (31,030,658 + 5,888
# and 2 x 5,888). bilinear: the four 2x2 up-convolutions (sum of c_in * c_out =
# 696,320) become 1x1 convolutions (31,030,658 - 3 x 696,320).
@pytest.mark.parametrize("kwargs, expected", [
    (dict(num_classes=1, output_activation="sigmoid"), (31_030_593, 31_030_593, 0)),
    (dict(batch_norm=True), (31_048_322, 31_036_546, 11_776)),
    (dict(upsampling="bilinear"), (28_941_698, 28_941_698, 0)),
], ids=["one_class", "batch_norm", "bilinear"])
def test_parameter_variants(kwargs, expected):
    m = zoo.model_info("unet").min_input_size
    model = zoo.get_model("unet", input_shape=(m, m, 1), **kwargs)
    assert counts(model) == expected
    assert tuple(model.output.shape) == (None, 4, 4, kwargs.get("num_classes", 2))


def test_valid_sizes_from_the_architecture():
    assert zoo.model_info("unet").min_input_size == 188
    assert valid_input_sizes(600) == list(range(188, 600, 16))
    assert output_size(572) == 388 and output_size(188) == 4 and output_size(570) is None
    assert output_size(64, padding="same") == 64 and output_size(72, padding="same") is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(570, 570, 1)), "input height 570 .* nearest valid: 556, 572"),
    (dict(input_shape=(572, 571, 1)), "input width 571 .* nearest valid: 556, 572"),
    (dict(input_shape=(187, 187, 1)), "nearest valid: 188. Received"),
    (dict(input_shape=(32, 48, 1)), "nearest valid: 188. padding='same' \\(--model-arg "
                                    "padding=same\\) takes 32x48, its output at the input's "
                                    "size. Received: input_shape=\\(32, 48, 1\\)$"),
    (dict(input_shape=(60, 64, 3), padding="same"), "multiple of 2\\*\\*depth = 16; "
                                                      "nearest valid: 48, 64"),
    (dict(input_shape=(18, 16, 3), padding="same", depth=2), "nearest valid: 16, 20"),
    (dict(output_activation="relu"), "output_activation"),
    (dict(upsampling="nearest"), "upsampling"),
    (dict(padding="full"), "padding"),
    (dict(depth=0), "depth"),
    (dict(dropout=1.0), "dropout"),
    (dict(backbone_weights="imagenet"), "need a backbone"),
    (dict(backbone="xception", padding="valid"), "padding='same'"),
    (dict(backbone="unet"), "must be a classifier"),
    (dict(backbone="resnet999"), "Unknown model"),
])
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        unet(**kwargs)


def test_same_padding_keeps_the_size():
    model = unet(input_shape=(64, 64, 3), padding="same", num_classes=3, base_filters=8,
                 output_activation="sigmoid")
    assert tuple(model.output.shape) == (None, 64, 64, 3)
    # Padding does not change the parameters: equal to the unpadded network's.
    valid = unet(input_shape=(188, 188, 3), num_classes=3, base_filters=8)
    assert counts(model) == counts(valid) == (485_835, 485_835, 0)
    assert model.get_layer("output_sigmoid") is not None
    assert "up3_crop" not in {layer.name for layer in model.layers}


def test_train_step_without_nan():
    keras.utils.set_random_seed(0)
    model = unet(input_shape=(32, 32, 1), padding="same", depth=3, base_filters=4,
                 batch_norm=True, dropout=0.5, upsampling="bilinear", num_classes=3)
    rng = np.random.RandomState(0)
    x = rng.rand(2, 32, 32, 1).astype("float32")
    y = rng.randint(0, 3, (2, 32, 32))
    # Eagerly: tracing the train function costs ten times the step on this tiny model.
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss) and 0 < loss < 10
    after = model.get_weights()
    assert all(np.all(np.isfinite(w)) for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    table = zoo.layer_table(model)
    assert list(table["path"]) == ["contracting"] * 3 + ["bottom"] + ["expanding"] * 3 + \
        ["output"]
    assert table.iloc[3]["operations"] == "conv 3x3, BN, ReLU, conv 3x3, BN, ReLU, dropout 0.5"


def test_xception_backbone():
    model = unet(backbone="xception", input_shape=(96, 96, 3), base_filters=8,
                 freeze_backbone=True)
    assert model.name == "unet_xception"
    assert tuple(model.output.shape) == (None, 96, 96, 2)
    # The whole Xception (no top) is the contracting path, frozen.
    total, trainable, frozen = counts(model)
    assert total - trainable == 20_861_480
    table = zoo.layer_table(model)
    backbone = table[table["path"] == "backbone"]
    assert list(backbone["operations"]) == [
        "feature map block1_conv2_act", "feature map block2_add", "feature map block3_add",
        "feature map block12_add", "feature map block14_sepconv2_act"]
    assert list(backbone["resolution"]) == ["45x45", "23x23", "12x12", "6x6", "3x3"]
    assert backbone["params"].sum() == 20_861_480
    assert table["params"].sum() == total
    # Unpadded stem layers make 2 * 12 != 23: the expanding path resizes.
    assert list(table[table["path"] == "expanding"]["resolution"]) == \
        ["6x6", "12x12", "23x23", "45x45", "96x96"]
    assert "up2_resize" in {layer.name for layer in model.layers}
    x = np.random.RandomState(0).rand(1, 96, 96, 3).astype("float32")
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-5)


@pytest.mark.skipif("resnet34" not in zoo.list_models(), reason="needs zoo's resnet34")
def test_resnet34_backbone_with_depth():
    model = unet(backbone="resnet34", input_shape=(64, 64, 3), base_filters=8, depth=4)
    assert tuple(model.output.shape) == (None, 64, 64, 2)
    fx_names = [f["name"] for f in feature_info(
        feature_extractor("resnet34", input_shape=(64, 64, 3), strides=(2, 4, 8, 16)))]
    assert fx_names == ["conv1_relu", "conv2_block3_out", "conv3_block4_out",
                        "conv4_block6_out"]
    names = {layer.name for layer in model.layers}
    assert "conv4_block6_out" in names and "conv5_block1_1_conv" not in names
    table = zoo.layer_table(model, family="unet")
    assert list(table[table["path"] == "backbone"]["filters"]) == [64, 64, 128, 256]


@pytest.mark.parametrize("kwargs, message", [
    # LeNet-5's feature maps stop at stride 4: depth 3 (stride 8) was built as depth 2.
    (dict(backbone="lenet5", depth=3),
     r"^unet: depth=3 takes the backbone's feature maps down to stride 2\*\*depth = 8; "
     r"backbone 'lenet5' at 32x32 reaches stride 4 at most. Allowed: depth <= 2, or None "
     r"\(the deepest it has\). Received: depth=3$"),
    # AlexNet's first map is at stride 4: depth 2 leaves it alone (the error named no depth)
    (dict(backbone="alexnet", input_shape=(67, 67, 3), depth=2),
     r"^unet: backbone 'alexnet' gives feature maps at strides \[4\] only \(up to "
     r"2\*\*depth = 4\); at least two are needed. Allowed: a larger depth, or None \(the "
     r"deepest it has\). Received: depth=2$"),
])
def test_a_depth_the_backbone_cannot_take_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        unet(base_filters=4, **kwargs)


def test_a_depth_the_backbone_reaches_builds():
    model = unet(backbone="lenet5", depth=2, base_filters=4)
    assert [layer.name for layer in model.layers if layer.name.endswith("_upconv")] \
        == ["up1_upconv", "up0_upconv"]
    assert model.count_params() == unet(backbone="lenet5", base_filters=4).count_params()
    assert tuple(unet(backbone="alexnet", input_shape=(67, 67, 3), depth=3,
                      base_filters=4).output.shape) == (None, 67, 67, 2)


def test_the_level_table_gives_a_backbones_maps_the_levels_of_their_strides():
    # AlexNet at 67x67: C7_pool (1x1) is at stride 32; its size ratio, 67, made it level 6
    model = unet(backbone="alexnet", input_shape=(67, 67, 3), base_filters=4)
    table = zoo.layer_table(model, family="unet")
    backbone = table[table["path"] == "backbone"]
    assert list(backbone["level"]) == [2, 3, 4, 5]
    assert list(backbone["resolution"]) == ["15x15", "7x7", "3x3", "1x1"]
    assert list(table[table["path"] == "expanding"]["level"]) == [4, 3, 2, 0]


@pytest.mark.parametrize("kwargs, reason", [
    (dict(depth=4), r"at least 16 \(a feature map at the deepest stride, 2\*\*depth = 16\)"),
    (dict(), r"at least 32 \(a feature map at the default deepest stride, 32; a smaller depth "
             r"takes smaller inputs\)"),
])
def test_a_backbones_minimum_input_says_where_it_comes_from(kwargs, reason):
    with pytest.raises(ValueError, match=rf"^unet: input height and width must be {reason}. "
                                         rf"Received: input_shape=\(8, 8, 3\)$"):
        unet(backbone="resnet18", input_shape=(8, 8, 3), **kwargs)
    with pytest.raises(ValueError, match=r"at least 75 \(the smallest input of backbone "
                                         r"'inception_v3'\)"):
        unet(backbone="inception_v3", input_shape=(60, 60, 3))


# ---------------------------------------------------------------------------
# feature_extractor


def test_feature_extractor_on_a_keras_model():
    """Taps are found generically: the standard ResNet50 taps of keras.applications."""
    ref = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    fx = feature_extractor(ref)
    got = [(f["name"], f["stride"], f["channels"]) for f in fx.feature_info]
    assert got == [("conv1_relu", 2, 64), ("conv2_block3_out", 4, 256),
                   ("conv3_block4_out", 8, 512), ("conv4_block6_out", 16, 1024),
                   ("conv5_block3_out", 32, 2048)]
    assert [tuple(t.shape[1:3]) for t in fx.outputs] == [(32, 32), (16, 16), (8, 8), (4, 4),
                                                          (2, 2)]


def test_feature_extractor_by_name_and_saved(tmp_path):
    fx = feature_extractor("lenet5", strides=(2, 4, 8, 16, 32))
    # Strides along the graph: C3's pixels are 2 input pixels apart (S2 subsamples by 2,
    # the unpadded 5x5 convolutions shrink the maps without striding), C5's 4.
    expected = [("C3", 2, 16, (10, 10, 16)), ("C5", 4, 120, (1, 1, 120))]
    assert [(f["name"], f["stride"], f["channels"], f["shape"])
            for f in fx.feature_info] == expected
    path = tmp_path / "fx.keras"
    fx.save(path)
    restored = keras.saving.load_model(path)
    assert not hasattr(restored, "feature_info")
    assert feature_info(restored) == fx.feature_info
    sub = feature_extractor("lenet5", strides=[4, 2], trainable=False)
    assert [f["stride"] for f in sub.feature_info] == [2, 4]
    assert sub.trainable_weights == []


@pytest.mark.parametrize("args, kwargs, message", [
    (("unet",), {}, "segmentation model"),
    (("lenet5",), dict(strides=(0, 2)), "strides"),
    (("lenet5",), dict(strides=()), "strides"),
    (("lenet5",), dict(include_top=True), "include_top"),
    (("lenet5",), dict(strides=(64,)), "reaches none of the strides"),
    ((3,), {}, "model_or_name"),
])
def test_feature_extractor_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        feature_extractor(*args, **kwargs)


def test_feature_extractor_options_need_a_name():
    model = zoo.lenet5(include_top=False)
    with pytest.raises(ValueError, match="apply to a model name only"):
        feature_extractor(model, input_shape=(64, 64, 1))


@pytest.mark.parametrize("kwargs, names, size", [
    (dict(input_shape=(16, 16, 1), depth=2, base_filters=4, padding="same",
          upsampling="bilinear"),
     ["bottom_conv2_relu", "up1_upsample", "down1_conv2_relu", "up1_upconv", "up1_concat"],
     (8, 8)),
    # LeNet-5's 1x1 C5, up-convolved to 2x2, is resized to C3's 10x10.
    (dict(backbone="lenet5", base_filters=4),
     ["up1_upconv", "up1_resize", "C3", "up1_resize", "up1_concat"], (10, 10)),
], ids=["bilinear_upsampling", "backbone_resize"])
def test_bilinear_enlargement_and_the_skip_go_first_in_the_concatenation(kwargs, names, size):
    """upsampling='bilinear', and the resize of a backbone's odd sizes, interpolate bilinearly
    (not nearest); each concatenation is [contracting-path or backbone map, upsampled map],
    the paper's Fig. 1 order."""
    import tensorflow as tf
    model = unet(**kwargs)
    x = np.random.RandomState(0).rand(1, *model.input.shape[1:]).astype("float32")
    small, up, skip, upconv, concat = keras.Model(
        model.input, [model.get_layer(n).output for n in names]).predict(x, verbose=0)
    assert small.shape[1] < size[0] and up.shape[1:3] == skip.shape[1:3] == size
    np.testing.assert_allclose(up, tf.image.resize(small, size, "bilinear"), rtol=1e-5,
                               atol=1e-6)
    assert np.abs(up - tf.image.resize(small, size, "nearest")).max() > 1e-3
    np.testing.assert_array_equal(concat, np.concatenate([skip, upconv], axis=-1))


def test_skip_connections_are_centre_cropped():
    """Fig. 1: the contracting path's map is cropped at its centre to the up-convolution's
    size (a crop from a corner has the same shapes and parameters)."""
    model = unet(input_shape=(188, 188, 1), base_filters=4)
    names = ["down3_conv2_relu", "up3_crop", "up3_upconv"]
    x = np.random.RandomState(0).rand(1, 188, 188, 1).astype("float32")
    skip, crop, upconv = keras.Model(
        model.input, [model.get_layer(n).output for n in names]).predict(x, verbose=0)
    assert skip.shape == (1, 16, 16, 32) and crop.shape == upconv.shape == (1, 8, 8, 32)
    np.testing.assert_array_equal(crop, skip[:, 4:12, 4:12])
