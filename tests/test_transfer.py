"""Transfer learning and fine-tuning: a zoo backbone with weights from a file, frozen inside
a model with a new head, trained with ``zoo.train.fit``, partly unfrozen and fine-tuned, its
features extracted, exported and served."""

import json

import numpy as np
import pytest
from PIL import Image

import keras

import zoo
from zoo import train
from zoo.export import fold_batch_norm
from zoo.features import feature_extractor, feature_info, feature_layers

from conftest import make_colour_folder  # noqa: E402

SHAPE = (32, 32, 3)
LABELS = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny 3-class folder dataset whose classes differ by colour."""
    return make_colour_folder(tmp_path_factory.mktemp("transfer_data"), LABELS, SHAPE)


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("transfer_weights") / "resnet18_notop.weights.h5"
    zoo.resnet18(include_top=False, pooling="avg", input_shape=SHAPE).save_weights(path)
    return str(path)


def _transfer_model(backbone_file):
    """Keras' recipe: the frozen backbone called with training=False under a new head."""
    backbone = zoo.resnet18(include_top=False, pooling="avg", input_shape=SHAPE,
                            weights=backbone_file)
    backbone.trainable = False
    inputs = keras.Input(SHAPE, name="images")
    x = backbone(inputs, training=False)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="pets"), backbone


def _moving_stats(backbone):
    return [w.numpy().copy() for layer in backbone.layers
            if isinstance(layer, keras.layers.BatchNormalization)
            for w in (layer.moving_mean, layer.moving_variance)]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_fit_trains_the_model_passed_in_under_mixed_precision(folder, backbone_file, tmp_path):
    """Under mixed precision fit trains a rebuilt copy: the weights must come back into
    the model passed in (the next fine-tuning stage starts from it), with the frozen
    backbone and its batch-norm statistics untouched."""
    model, backbone = _transfer_model(backbone_file)
    assert len(model.trainable_weights) == 2
    head = model.get_layer("head").kernel.numpy().copy()
    frozen, stats = backbone.get_weights(), _moving_stats(backbone)
    train.fit(model, f"folder:{folder}", epochs=2, batch_size=8, learning_rate=1e-2,
              mixed_precision="bfloat16", run_dir=str(tmp_path / "head"), verbose=0)
    trained = train.fit.last_model
    assert trained is not model
    assert {layer.compute_dtype for layer in trained.get_layer(backbone.name).layers[1:]} \
        == {"bfloat16"}
    assert len(trained.trainable_weights) == 2
    assert not np.allclose(model.get_layer("head").kernel.numpy(), head)
    assert _same(model.get_weights(), trained.get_weights())
    assert _same(backbone.get_weights(), frozen)
    assert _same(_moving_stats(backbone), stats)

    # Stage 2: unfreeze the last stage but its batch norms, fine-tune at a low learning
    # rate. Keras 3's fit calls the model with training=True, which overrides the nested
    # call's training=False (keras issue 20285): frozen batch norms stay in inference mode.
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = (layer.name.startswith("conv5_")
                           and not isinstance(layer, keras.layers.BatchNormalization))
    conv5 = [layer for layer in backbone.layers if layer.trainable]
    assert len(model.trainable_weights) == 2 + sum(len(layer.trainable_weights)
                                                   for layer in conv5)
    first = backbone.get_layer("conv1_conv").kernel.numpy().copy()
    last = backbone.get_layer("conv5_block2_2_conv").kernel.numpy().copy()
    train.fit(model, f"folder:{folder}", epochs=1, batch_size=8, learning_rate=1e-4,
              mixed_precision="bfloat16", run_dir=str(tmp_path / "fine"), verbose=0,
              early_stopping=False)
    assert len(train.fit.last_model.trainable_weights) == len(model.trainable_weights)
    assert np.array_equal(backbone.get_layer("conv1_conv").kernel.numpy(), first)
    assert not np.array_equal(backbone.get_layer("conv5_block2_2_conv").kernel.numpy(), last)
    assert _same(_moving_stats(backbone), stats)

    # The run exports (a model not from the registry, with a custom head) and serves the
    # Keras model's predictions, normalisation included.
    from zoo import data, serving
    path = zoo.export.export_run(str(tmp_path / "fine"), str(tmp_path / "saved"), lite=False)
    reloaded = zoo.load_model(tmp_path / "fine")   # as trained: bfloat16 compute
    assert _same(reloaded.get_weights(), model.get_weights())
    raw = np.stack([np.asarray(Image.open(p), dtype=np.float32)
                    for p in sorted((folder / "test").glob("*/*.png"))])
    info = data.DatasetInfo.from_dict(
        json.loads((tmp_path / "fine" / "info.json").read_text())["dataset"])
    expected = model.predict(data.preprocess(raw, info), verbose=0)   # float32, as exported
    np.testing.assert_allclose(serving.load(path).predict(raw)["probabilities"], expected,
                               atol=1e-4)


def test_mixed_precision_reaches_nested_models(backbone_file):
    """with_mixed_precision (fit's rebuild) puts the policy on the layers of a nested
    backbone too, keeps the output layer float32 and every trainable flag."""
    model, backbone = _transfer_model(backbone_file)
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer.name.startswith("conv5_")
    mixed, policy = train.with_mixed_precision(model, "bfloat16")
    assert policy == "mixed_bfloat16"
    inner = mixed.get_layer(backbone.name)
    assert inner.get_layer("conv1_conv").compute_dtype == "bfloat16"
    assert inner.get_layer("conv1_bn").compute_dtype == "bfloat16"
    assert mixed.get_layer("head").compute_dtype == "float32"
    assert mixed.outputs[0].dtype == "float32"
    assert [layer.trainable for layer in inner.layers if layer.weights] \
        == [layer.trainable for layer in backbone.layers if layer.weights]
    assert len(mixed.trainable_weights) == len(model.trainable_weights)
    assert _same(mixed.get_weights(), model.get_weights())
    # float16 layers inside a nested model get dynamic loss scaling.
    half, _ = train.with_mixed_precision(model, "float16")
    train.compile_model(half)
    assert isinstance(half.optimizer, keras.optimizers.LossScaleOptimizer)


def test_mixed_precision_of_a_nested_sequential_head():
    """A nested model that is the output keeps its own output layer float32."""
    inputs = keras.Input((8,))
    head = keras.Sequential([keras.layers.Dense(4, name="hidden"),
                             keras.layers.Dense(2, activation="softmax", name="out")],
                            name="head")
    model = keras.Model(inputs, head(keras.layers.Dense(8, name="first")(inputs)))
    mixed, _ = train.with_mixed_precision(model, "bfloat16")
    assert mixed.get_layer("first").compute_dtype == "bfloat16"
    assert mixed.get_layer("head").get_layer("hidden").compute_dtype == "bfloat16"
    assert mixed.get_layer("head").get_layer("out").compute_dtype == "float32"


def test_backbone_weights_from_a_keras_file(backbone_file, tmp_path):
    """weights= a .keras file: a whole classifier's file into a backbone, and a run's
    model.keras of a backbone fine-tuned under a new head, by layer name."""
    model, backbone = _transfer_model(backbone_file)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    model.save(tmp_path / "pets.keras")
    loaded = zoo.resnet18(include_top=False, pooling="avg", input_shape=SHAPE,
                          weights=str(tmp_path / "pets.keras"))
    assert _same(loaded.get_weights(), backbone.get_weights())

    full = zoo.resnet18(input_shape=SHAPE, num_classes=7)
    full.save(tmp_path / "full.keras")
    notop = zoo.resnet18(include_top=False, input_shape=SHAPE,
                         weights=str(tmp_path / "full.keras"))
    assert _same(notop.get_weights(), full.get_weights()[:-2])

    with pytest.raises(ValueError, match=r"predictions \[\(512, 5\), \(5,\)\] "
                                         r"\(file: \[\(512, 7\), \(7,\)\]\)"):
        zoo.resnet18(input_shape=SHAPE, num_classes=5, weights=str(tmp_path / "full.keras"))
    with pytest.raises(ValueError, match="layers with weights are not in 'pets', "
                                         "e.g. predictions"):
        zoo.resnet18(input_shape=SHAPE, num_classes=3, weights=str(tmp_path / "pets.keras"))


def test_a_keras_file_of_a_deeper_network_of_the_same_names_is_refused(tmp_path):
    # ResNet-34's layer names include all of ResNet-18's: its conv2_block1-2, conv3_block1-2...
    # loaded by name, silently, a network of blocks that never computed together (a legacy
    # .h5 of ResNet-101 in a ResNet-50 was refused; the .keras file was not)
    zoo.resnet34(include_top=False, input_shape=SHAPE, name="deeper").save(
        tmp_path / "deeper.keras")
    with pytest.raises(ValueError, match=r"^resnet18: the weights in .*deeper\.keras do not "
                                         r"fit this model \('deeper' has 28 layers with "
                                         r"weights between layers of the model's names, e\.g\. "
                                         r"conv2_block3_1_conv: a deeper architecture"):
        zoo.resnet18(include_top=False, input_shape=SHAPE, weights=str(tmp_path / "deeper.keras"))


def test_a_keras_file_with_two_backbones_of_the_same_names_is_refused(tmp_path):
    # two encoders of one architecture: the first one's weights were loaded, silently
    inputs = keras.Input(SHAPE, name="images")
    pooled = [keras.layers.GlobalAveragePooling2D(name=f"gap_{name}")(
        zoo.resnet18(include_top=False, input_shape=SHAPE, name=name)(inputs))
        for name in ("left", "right")]
    keras.Model(inputs, keras.layers.Concatenate()(pooled), name="pair").save(
        tmp_path / "pair.keras")
    with pytest.raises(ValueError, match=r"^resnet18: the weights in .*pair\.keras do not fit "
                                         r"this model \(40 of the model's layers with weights "
                                         r"are in 'pair' more than once, e\.g\. 'conv1_conv' "
                                         r"\(nested models 'left', 'right'\): save the one to "
                                         r"load alone"):
        zoo.resnet18(include_top=False, input_shape=SHAPE, weights=str(tmp_path / "pair.keras"))
    # one backbone called twice (shared weights) is one source
    backbone = zoo.resnet18(include_top=False, input_shape=SHAPE, name="shared")
    twice = [keras.layers.GlobalAveragePooling2D(name=f"gap{i}")(backbone(x))
             for i, x in enumerate((inputs, keras.layers.RandomFlip(name="flip")(inputs)))]
    keras.Model(inputs, keras.layers.Concatenate()(twice)).save(tmp_path / "shared.keras")
    loaded = zoo.resnet18(include_top=False, input_shape=SHAPE,
                          weights=str(tmp_path / "shared.keras"))
    assert _same(loaded.get_weights(), backbone.get_weights())


def test_feature_extractor_keeps_a_fine_tuned_backbones_flags(backbone_file):
    model, backbone = _transfer_model(backbone_file)
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer.name.startswith("conv5_")
    flags = [layer.trainable for layer in backbone.layers]
    fx = feature_extractor(backbone)
    assert [f["stride"] for f in fx.feature_info] == [2, 4, 8, 16, 32]
    assert [layer.trainable for layer in backbone.layers] == flags
    feature_extractor(backbone, trainable=False)
    assert backbone.trainable_weights == []
    with pytest.raises(ValueError, match="trainable must be None .* Received: trainable='no'"):
        feature_extractor(backbone, trainable="no")
    with pytest.raises(ValueError, match=r"nested model 'resnet18': pass "
                                         r"model.get_layer\('resnet18'\)"):
        feature_extractor(model)


def test_feature_extractor_of_a_head_on_a_nested_feature_map_names_the_backbone():
    # The backbone's output a feature map (no pooling): the nested model was taken as the
    # stride-32 tap, and Keras refused its output ("not connected to inputs").
    backbone = zoo.resnet18(include_top=False, input_shape=SHAPE)
    inputs = keras.Input(SHAPE, name="images")
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(pooled), name="pets")
    with pytest.raises(ValueError, match=r"^feature_extractor: 'pets' reaches none of the "
                                         r".* nested model 'resnet18': pass "
                                         r"model.get_layer\('resnet18'\)\.$"):
        feature_extractor(model)
    # a convolution on it: its stride-32 map, but not those of 2 to 16 inside the backbone
    conv = keras.layers.Conv2D(4, 1, activation="relu", name="conv")(backbone(inputs))
    with pytest.raises(ValueError, match=r"reaches strides \[32\] of \(2, 4, 8, 16, 32\) "
                                         r"outside nested models .* pass "
                                         r"model.get_layer\('resnet18'\)"):
        feature_extractor(keras.Model(inputs, conv))


def test_feature_extractor_of_googlenet_with_auxiliary_classifiers_follows_the_main_path():
    # The branches from 4a and 4d to the auxiliary outputs jumped over every layer after 4a:
    # no stride-32 map, and 4a for 4e at 16.
    shape = (65, 65, 3)
    plain = feature_extractor(zoo.googlenet(input_shape=shape)).feature_info
    assert [f["name"] for f in plain] == ["conv1_relu", "conv2_3x3_relu", "inception_3b",
                                          "inception_4e", "inception_5b"]
    assert feature_extractor(zoo.googlenet(input_shape=shape, aux_logits=True)).feature_info \
        == plain


def test_fold_batch_norm_folds_a_nested_backbone(backbone_file):
    model, backbone = _transfer_model(backbone_file)
    rng = np.random.default_rng(2)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])
    folded = fold_batch_norm(model)
    assert folded is not model
    inner = folded.get_layer(backbone.name)
    assert type(inner.get_layer("conv1_bn")).__name__ == "FoldedBatchNormalization"
    assert type(backbone.get_layer("conv1_bn")).__name__ == "BatchNormalization"
    x = rng.normal(size=(2, *SHAPE)).astype("float32")
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)


# ---------------------------------------------------------------------------
# Feature strides: the product of the strides on the path from the input, not the size
# ratio, which unpadded convolutions make larger (Inception-v3 at 150x150: 150 / 3 = 50
# for mixed10, which rounded to 64 and left the stride-32 map out).

@pytest.mark.parametrize("name, size, expected", [
    ("resnet18", (33, 33), [("conv1_relu", 2, (17, 17)), ("conv2_block2_out", 4, (9, 9)),
                            ("conv3_block2_out", 8, (5, 5)), ("conv4_block2_out", 16, (3, 3)),
                            ("conv5_block2_out", 32, (2, 2))]),
    # v2's stem ends in a linear convolution; its zero-padded copy is no tap.
    ("resnet50_v2", (33, 47), [("conv1_conv", 2, (17, 24)), ("conv2_block2_out", 4, (9, 12)),
                               ("conv3_block3_out", 8, (5, 6)),
                               ("conv4_block5_out", 16, (3, 3)), ("post_relu", 32, (2, 2))]),
    # At 14x14 conv1_pad makes 20x20: its size ratio, 0.7, rounded to 0.5 and halved every
    # stride (conv1 at 1 and left out, conv5 at 16); zero padding keeps the grid.
    ("resnet18", (14, 14), [("conv1_relu", 2, (7, 7)), ("conv2_block2_out", 4, (4, 4)),
                            ("conv3_block2_out", 8, (2, 2)), ("conv4_block2_out", 16, (1, 1)),
                            ("conv5_block2_out", 32, (1, 1))]),
    ("resnet50_v2", (8, 14), [("conv1_conv", 2, (4, 7)), ("conv2_block2_out", 4, (2, 4)),
                              ("conv3_block3_out", 8, (1, 2)),
                              ("conv4_block5_out", 16, (1, 1)), ("post_relu", 32, (1, 1))]),
    ("xception", (20, 20), [("block1_conv2_act", 2, (7, 7)), ("block2_add", 4, (4, 4)),
                            ("block3_add", 8, (2, 2)), ("block12_add", 16, (1, 1)),
                            ("block14_sepconv2_act", 32, (1, 1))]),
    ("inception_v3", (150, 150), [("stem_2b_3x3_relu", 2, (72, 72)),
                                  ("stem_4a_3x3_relu", 4, (33, 33)), ("mixed2", 8, (16, 16)),
                                  ("mixed7", 16, (7, 7)), ("mixed10", 32, (3, 3))]),
    # Unpadded 5x5 convolutions: C3 (10x10) is at S2's stride, C5 (1x1) at S4's.
    ("lenet5", (32, 32), [("C3", 2, (10, 10)), ("C5", 4, (1, 1))]),
])
def test_feature_strides_follow_the_graph(name, size, expected):
    channels = 1 if name == "lenet5" else 3
    fx = feature_extractor(name, input_shape=(*size, channels))
    assert [(f["name"], f["stride"], f["shape"][:2]) for f in fx.feature_info] == expected
    assert [f["stride"] for f in feature_info(fx)] == [e[1] for e in expected]


def test_unet_on_a_backbone_at_an_odd_size_keeps_every_level():
    model = zoo.get_model("unet", backbone="resnet18", input_shape=(33, 33, 3), base_filters=4)
    table = zoo.layer_table(model, family="unet")
    backbone = table[table["path"] == "backbone"]
    assert list(backbone["resolution"]) == ["17x17", "9x9", "5x5", "3x3", "2x2"]
    assert tuple(model.output.shape) == (None, 33, 33, 2)


def test_unet_on_a_backbone_at_a_small_size_takes_the_maps_of_its_strides():
    # depth=3: the skips at strides 2 and 4 (conv1, conv2), the bottom at 8 (conv3); at 8x8
    # they were conv2, conv3 and conv4 (1x1), brought back up by resizing.
    model = zoo.get_model("unet", backbone="resnet18", input_shape=(8, 8, 3), depth=3,
                          base_filters=4)
    skips = [model.get_layer(f"up{i}_concat").input[0]._keras_history[0].name for i in (2, 1)]
    assert skips == ["conv2_block2_out", "conv1_relu"]
    assert not [layer.name for layer in model.layers if layer.name.endswith("_resize")]
    assert tuple(model.output.shape) == (None, 8, 8, 2)


def test_feature_info_of_a_reloaded_extractor_reads_the_graph(tmp_path):
    inputs = keras.Input((20, 20, 3))
    x = keras.layers.Conv2D(4, 5, activation="relu", name="c1")(inputs)              # 16x16
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="c2")(x)        # 7x7
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="c3")(x)        # 3x3
    fx = feature_extractor(keras.Model(inputs, x))
    assert [(f["name"], f["stride"]) for f in fx.feature_info] == [("c2", 2), ("c3", 4)]
    fx.save(tmp_path / "fx.keras")
    assert feature_info(keras.saving.load_model(tmp_path / "fx.keras")) == fx.feature_info


def test_a_sequential_model_gives_the_taps_of_its_functional_twin():
    # Keras lists no InputLayer among a Sequential model's layers: its first layer is a
    # layer of the network (a tap), and its stride follows from the input as any other's
    # (an unpadded 5x5 convolution halves an 8x8 input at stride 1).
    def stack():
        return [keras.layers.Conv2D(4, 5, activation="relu", name="c1"),                # 4x4
                keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                                    name="c2"),                                          # 2x2
                keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                                    name="c3")]                                          # 1x1
    sequential = keras.Sequential([keras.Input((8, 8, 3)), *stack()])
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for layer in stack():
        x = layer(x)
    expected = [("c1", 1, (4, 4)), ("c2", 2, (2, 2)), ("c3", 4, (1, 1))]
    for model in (sequential, keras.Model(inputs, x)):
        fx = feature_extractor(model, strides=(1, 2, 4, 8))
        assert [(f["name"], f["stride"], f["shape"][:2]) for f in fx.feature_info] == expected


def test_strides_may_be_numpy_integers():
    fx = feature_extractor("lenet5", strides=np.array([4, 2]))
    assert [(f["name"], f["stride"]) for f in fx.feature_info] == [("C3", 2), ("C5", 4)]
    assert all(type(f["stride"]) is int for f in fx.feature_info)
    with pytest.raises(ValueError, match=r"strides must be a non-empty sequence of positive "
                                         r"integers .* Received: strides=\(2, 0\)"):
        feature_extractor("lenet5", strides=(2, 0))


def test_taps_of_linear_stages_and_of_a_transposed_convolution():
    """Where a stride has no activation, its tap is its last block output (the batch norm
    after a linear convolution, not the convolution); a transposed convolution divides the
    stride by its strides (it enlarges its input), and its output is back at stride 2."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="stem")(inputs)       # 8x8
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu",
                            name="down")(x)                                             # 4x4
    x = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(x)     # 8x8
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="up_bn")(x))
    taps = feature_layers(model, strides=(1, 2, 4, 8))
    assert [(t["name"], t["stride"], t["shape"]) for t in taps] == [
        ("up_bn", 2, (8, 8, 4)), ("down", 4, (4, 4, 4))]
    assert [(f["name"], f["stride"]) for f in feature_info(model)] == [("up_bn", 2)]
    head = keras.Model(inputs, model.get_layer("down").output)
    assert [(t["name"], t["stride"]) for t in feature_layers(head, strides=(2, 4))] == [
        ("stem_bn", 2), ("down", 4)]


def test_a_concatenation_is_the_tap_rather_than_the_activation_it_gathers():
    """A dense-block concatenation of an activation and of a convolution of it is the block
    output at its stride: a merge is preferred as an activation is, and the later wins."""
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="a")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="b")(a)
    model = keras.Model(inputs, keras.layers.Concatenate(name="cat")([a, b]))
    assert [(t["name"], t["stride"], t["shape"]) for t in feature_layers(model, strides=(2,))] \
        == [("cat", 2, (4, 4, 8))]
