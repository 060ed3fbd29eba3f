"""zoo.export: every registered model round-trips through a SavedModel with equal outputs;
precision, versioning, atomicity, zoo.json, the CLI."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from conftest import built_under_global_policy, registry_params, wait_for_marker  # noqa: E402
from zoo import export as zoo_export  # noqa: E402
from zoo.data import DatasetInfo, preprocess  # noqa: E402
from zoo.serving import load  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Smallest input each family allows (ResNets: 32, where every stage still has a pixel).
TINY = {"lenet5": 32, "alexnet": 67, "googlenet": 65, "inception_v3": 75, "xception": 32,
        "unet": 188}


def tiny_model(name, **kw):
    keras.utils.set_random_seed(0)   # the same weights whatever ran before
    info = zoo.model_info(name)
    size = TINY.get(name, max(32, info.min_input_size))
    args = dict(input_shape=(size, size, info.default_input_shape[-1]), num_classes=3)
    if name == "googlenet":
        args["aux_logits"] = True  # three outputs: the export keeps the main one
    args.update(kw)
    return zoo.get_model(name, **args)


def raw_images(n, shape, seed=0):
    return np.random.RandomState(seed).uniform(0, 255, (n, *shape)).astype("float32")


def serve_fn(path):
    return tf.saved_model.load(path).signatures["serving_default"]


@pytest.mark.parametrize("name", registry_params())
def test_every_model_round_trips_with_equal_outputs(name, tmp_path):
    model = tiny_model(name)
    path = zoo.export(model, tmp_path)
    assert path == os.path.join(str(tmp_path), model.name, "1")
    fn = serve_fn(path)
    spec = fn.structured_input_signature[1]
    assert list(spec) == ["images"]
    assert spec["images"].shape.as_list() == [None, None, None, model.input_shape[-1]]
    assert spec["images"].dtype == tf.float32

    x = raw_images(2, model.input_shape[1:])
    got = {k: v.numpy() for k, v in fn(images=tf.constant(x)).items()}
    want = model(x, training=False)
    if isinstance(want, (list, tuple)):  # googlenet with aux heads: [main, aux1, aux2]
        assert len(want) == 3
        want = want[0]
    want = np.asarray(want)
    task = zoo.model_info(name).task
    # The export folds batch norms into the convolutions: float32 rounding then differs
    # by up to ~1.4e-5 (untrained ResNet-34, probabilities near 0.75); a wrong fold is
    # off by far more.
    np.testing.assert_allclose(got["probabilities"], want, atol=1e-4, rtol=0)
    assert got["probabilities"].dtype == np.float32
    if task == "classification":
        assert set(got) == {"probabilities", "classes"}
        assert got["probabilities"].shape == (2, 3)
        assert got["classes"].dtype == np.int64
        np.testing.assert_array_equal(got["classes"], want.argmax(-1))
    else:
        assert set(got) == {"mask", "probabilities"}
        assert got["mask"].shape == want.shape[:3] and got["mask"].dtype == np.int64
        np.testing.assert_array_equal(got["mask"], want.argmax(-1))
    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["task"] == task and record["model"] == model.name
    assert record["labels"] == ["0", "1", "2"]

    # The LiteRT copy of the signature: written, checked, and what a CPU Servable runs.
    assert record["lite"]["file"] == "assets/serving_default.tflite", record["lite"]
    assert 0 <= record["lite"]["max_abs_diff"] <= zoo_export.LITE_TOLERANCE
    servable = load(path)
    assert servable.runtime == "litert" and servable.runtime_note is None
    lite = servable.predict(x)
    assert set(lite) == set(got)
    np.testing.assert_allclose(lite["probabilities"], want, atol=zoo_export.LITE_TOLERANCE, rtol=0)
    for key in got:
        assert lite[key].dtype == got[key].dtype and lite[key].shape == got[key].shape
    keras.backend.clear_session()


@pytest.mark.parametrize("name,kwargs,left", [
    ("resnet18", dict(input_shape=(40, 40, 3), num_classes=5), 0),         # conv -> BN
    # pre-activation BNs stay
    ("resnet50_v2", dict(input_shape=(40, 40, 3), num_classes=5), 17),
    ("xception", dict(input_shape=(71, 71, 3), num_classes=5), 0),         # separable conv -> BN
    ("unet", dict(input_shape=(32, 32, 3), base_filters=4, depth=2, padding="same",
                  batch_norm=True, num_classes=3), 0),
    ("inception_v3", dict(input_shape=(75, 75, 3), num_classes=5), 0),
    ("googlenet", dict(input_shape=(65, 65, 3), batch_norm=True, num_classes=5), 0),
])
def test_fold_batch_norm_keeps_outputs_and_leaves_the_model_alone(name, kwargs, left):
    model = zoo.get_model(name, **kwargs)
    rng = np.random.default_rng(0)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:   # statistics far from the initial 0/1, so folding has work to do
        layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
        layer.moving_variance.assign(rng.uniform(0.3, 3.0, layer.moving_variance.shape))
        if layer.scale:
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
    before = [w.numpy().copy() for w in model.weights]
    folded = zoo_export.fold_batch_norm(model)
    remaining = [layer for layer in folded.layers
                 if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(remaining) == left and len(bns) > left
    assert sum(isinstance(layer, zoo.layers.FoldedBatchNormalization)
               for layer in folded.layers) == len(bns) - left
    x = rng.uniform(0, 1, (2, *model.input_shape[1:])).astype("float32")
    # Within 1e-6 (README; 2.4e-7 measured, U-Net)
    np.testing.assert_allclose(folded(x, training=False), model(x, training=False),
                               rtol=0, atol=1e-6)
    for a, b in zip(before, model.weights):    # the model itself is untouched
        np.testing.assert_array_equal(a, b.numpy())
    assert zoo_export.fold_batch_norm(zoo.get_model("lenet5")).name == "lenet5"  # nothing to fold


def test_a_batch_norm_after_an_activated_convolution_is_not_folded():
    # BN(relu(conv(x))) is no convolution with other weights: folding it into the kernel
    # would compute relu(s * conv(x) + t).
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, bn(x))
    bn.moving_mean.assign([0.5, -0.3, 0.2])
    bn.moving_variance.assign([2.0, 0.5, 1.5])
    bn.beta.assign([0.1, 0.2, -0.4])
    assert zoo_export.fold_batch_norm(model) is model


def _nontrivial_statistics(bn):
    bn.moving_mean.assign(np.linspace(-2.0, 3.0, bn.moving_mean.shape[0]))
    bn.moving_variance.assign(np.linspace(0.1, 9.0, bn.moving_variance.shape[0]))
    bn.gamma.assign(np.linspace(-1.5, 2.0, bn.gamma.shape[0]))


def test_a_convolution_whose_output_is_returned_too_is_not_folded():
    # conv -> BN where the model (or a nested model the outer one reads) also returns the
    # convolution's own output: folding would return the normalised values there (off by
    # ~4 before, on these statistics).
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    conv = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    bn = keras.layers.BatchNormalization(name="bn")
    both = keras.Model(inputs, [bn(conv), conv], name="both")
    _nontrivial_statistics(bn)
    outer_in = keras.Input((6, 6, 2))
    outer = keras.Model(outer_in, keras.layers.Add()(both(outer_in)), name="outer")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 6, 6, 2)).astype("float32")
    assert zoo_export.fold_batch_norm(both) is both
    assert zoo_export.fold_batch_norm(outer) is outer
    # Fed only to the batch norm, it folds.
    inputs = keras.Input((6, 6, 2))
    bn = keras.layers.BatchNormalization(name="bn")
    single = keras.Model(inputs, bn(keras.layers.Conv2D(3, 3, name="conv")(inputs)))
    _nontrivial_statistics(bn)
    folded = zoo_export.fold_batch_norm(single)
    assert folded is not single
    np.testing.assert_allclose(folded(x), single(x), rtol=0, atol=1e-5)


def test_batch_norms_fold_on_a_keras_without_renorm():
    # Keras before 3.14 has no BatchNormalization.renorm: reading it raised AttributeError,
    # which fold_batch_norm took for a subclassed model and folded nothing (on Keras 3.3).
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, bn(keras.layers.Conv2D(3, 3, name="conv")(inputs)))
    _nontrivial_statistics(bn)
    if hasattr(bn, "renorm"):
        del bn.renorm   # as those Keras versions build it
    folded = zoo_export.fold_batch_norm(model)
    assert isinstance(folded.get_layer("bn"), zoo.layers.FoldedBatchNormalization)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(folded(x), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_folding_under_a_global_mixed_policy_keeps_a_float32_model_float32(policy, tmp_path):
    # The identity left for the batch norm took the global policy: set for training, it
    # rounded a float32 model's activations to float16 (1.1e-2 off here) or bfloat16 (8.7e-2).
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1)(
        bn(keras.layers.Conv2D(4, 3)(inputs))))
    _nontrivial_statistics(bn)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        folded = zoo_export.fold_batch_norm(model)
        path = zoo.export(model, tmp_path, lite=False)   # (an export under that policy)
    finally:
        keras.config.set_dtype_policy(previous)
    assert folded.get_layer("bn").dtype_policy.name == "float32"
    x = np.random.default_rng(0).normal(0, 10, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(folded(x), model(x), rtol=0, atol=1e-4)
    got = serve_fn(path)(images=tf.constant(x))["probabilities"]   # the logits' softmax
    np.testing.assert_allclose(got, tf.nn.softmax(model(x)), rtol=0, atol=1e-5)


class _StandardisedConv2D(keras.layers.Conv2D):
    """A weight-standardised convolution: each output channel's kernel to mean 0, std 1."""

    def convolution_op(self, inputs, kernel):
        mean = keras.ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
        std = keras.ops.std(kernel, axis=(0, 1, 2), keepdims=True)
        return super().convolution_op(inputs, (kernel - mean) / (std + 1e-5))


class _CallOverride(keras.layers.Conv2D):
    def call(self, inputs):
        return super().call(inputs) * 2.0


@pytest.mark.parametrize("conv_class", [_StandardisedConv2D, _CallOverride])
def test_a_convolution_subclass_computing_otherwise_is_not_folded(conv_class):
    # Folding scales the kernel: a subclass that standardises it undid the scale (the
    # export served other probabilities), one overriding call computes its own thing.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, bn(conv_class(3, 3, name="conv")(inputs)))
    _nontrivial_statistics(bn)
    folded = zoo_export.fold_batch_norm(model)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(folded(x), model(x), rtol=0, atol=1e-5)
    assert folded is model
    # zoo.layers' convolutions compute as Keras' at inference: they fold.
    inputs = keras.Input((6, 6, 2))
    plain = keras.Model(inputs, keras.layers.BatchNormalization()(
        zoo.layers.Conv2D(3, 3)(inputs)))
    assert zoo_export.fold_batch_norm(plain) is not plain


def test_a_batch_norm_subclass_computing_otherwise_is_not_folded():
    class Shifted(keras.layers.BatchNormalization):
        def call(self, inputs, training=None, mask=None):
            return super().call(inputs, training=training, mask=mask) + 1.0

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    bn = Shifted(name="bn")
    model = keras.Model(inputs, bn(keras.layers.Conv2D(3, 3)(inputs)))
    _nontrivial_statistics(bn)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 6, 6, 2)).astype("float32")
    folded = zoo_export.fold_batch_norm(model)
    np.testing.assert_allclose(folded(x), model(x), rtol=0, atol=1e-5)   # was 1 off
    assert folded is model


def test_a_convolution_with_lora_weights_is_exported_unfolded(tmp_path):
    # Its kernel is kernel + lora_a @ lora_b: the fold set two weights on a copy that
    # has four, and the export failed with Keras' set_weights error.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    conv = keras.layers.Conv2D(3, 3, name="conv")
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, keras.layers.Softmax()(
        keras.layers.GlobalAveragePooling2D()(bn(conv(inputs)))), name="lora")
    _nontrivial_statistics(bn)
    conv.enable_lora(2)
    conv.lora_kernel_b.assign(np.full(conv.lora_kernel_b.shape, 0.5, "float32"))
    assert zoo_export.fold_batch_norm(model) is model
    path = zoo.export(model, tmp_path, lite=False)
    x = np.random.default_rng(0).uniform(0, 255, (2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(serve_fn(path)(images=tf.constant(x))["probabilities"],
                               model(x), rtol=0, atol=1e-6)


def test_logits_get_softmax_in_the_signature(tmp_path):
    model = zoo.lenet5(variant="modern", classifier_activation=None, num_classes=4)
    fn = serve_fn(zoo.export(model, tmp_path))
    x = raw_images(3, (32, 32, 1))
    got = fn(images=tf.constant(x))
    logits = np.asarray(model(x))
    assert np.abs(logits.sum(-1) - 1).max() > 1e-2  # really logits
    np.testing.assert_allclose(got["probabilities"].numpy(), tf.nn.softmax(logits).numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(got["probabilities"].numpy().sum(-1), 1.0, atol=1e-6)


def test_one_logit_unit_gets_its_sigmoid_in_the_signature(tmp_path):
    # A binary classifier returning one logit (classifier_activation=None): its probability
    # of class 1 is the sigmoid (a softmax over one unit is 1.0 for every image).
    inputs = keras.Input((8, 8, 1), name="images")
    logit = keras.layers.Dense(1, kernel_initializer="ones", name="logit")(
        keras.layers.Flatten(name="flatten")(inputs))
    model = keras.Model(inputs, logit, name="binary_logit")
    info = DatasetInfo(name="pets", task="classification", num_classes=2,
                       labels=["cat", "dog"], input_shape=(8, 8, 1), mean=[100.0], std=[100.0])
    path = zoo.export(model, tmp_path, info=info)
    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["output"]["model_returns"] == "logits"
    # (x - 100) / 100 summed over 64 pixels: logits 0, -0.64, 0.64 and -6.4
    x = np.stack([np.full((8, 8, 1), v, "float32") for v in (100, 99, 101, 90)])
    want = [0.5, 0.345247, 0.654753, 0.001658]
    got = serve_fn(path)(images=tf.constant(x))
    np.testing.assert_allclose(got["probabilities"].numpy()[:, 0], want, atol=1e-6)
    np.testing.assert_array_equal(got["classes"].numpy(), [0, 0, 1, 0])
    lite = load(path)   # the LiteRT copy alike
    assert lite.runtime == "litert"
    np.testing.assert_allclose(lite.predict(x)["probabilities"][:, 0], want, atol=1e-5)
    np.testing.assert_array_equal(lite.predict(x)["classes"], [0, 0, 1, 0])


@pytest.mark.parametrize("units", [4, 1])
@pytest.mark.parametrize("returns", ["probabilities", "logits"])
def test_an_unknown_last_layer_is_read_by_its_numbers(returns, units, tmp_path):
    # A last layer without an activation to read (a Lambda): probabilities pass as they
    # are, logits get their softmax (one unit: its sigmoid). A one-unit head of logits
    # was read as probabilities: on a zero image alone its logit is its bias, 0 here.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="images")
    x = keras.layers.Dense(units, name="dense")(keras.layers.Flatten(name="flatten")(inputs))
    squash = keras.ops.softmax if units > 1 else keras.ops.sigmoid
    head = squash if returns == "probabilities" else (lambda t: 3.0 * t)
    model = keras.Model(inputs, keras.layers.Lambda(head, name="head")(x), name="lambda_head")
    path = zoo.export(model, tmp_path, lite=False)
    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["output"]["model_returns"] == returns
    x = raw_images(3, (8, 8, 1))
    y = np.asarray(model(x))
    want = y if returns == "probabilities" else np.asarray(squash(y))
    got = serve_fn(path)(images=tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(np.asarray(squash(want)) - want).max() > 1e-2   # squashed again differs


def test_a_sigmoid_over_several_units_is_refused_before_any_work(tmp_path):
    """A sigmoid over K > 1 units scores each class on its own (multi-label): its
    probabilities do not sum to 1, and the signature's are one class's per image. Refused,
    for a classifier and a segmentation head, a nested model's too, naming the layer (it was
    exported as probabilities summing to anything); one sigmoid unit is P(class 1)."""
    inputs = keras.Input((8, 8, 1), name="images")
    flat = keras.layers.Flatten(name="flatten")(inputs)
    multi = keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid", name="tags")(flat))
    seg = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="sigmoid", name="px")(inputs))
    outer = keras.Input((8, 8, 1))
    nested = keras.Model(outer, multi(outer))
    rule = ("export takes models with one class per image (per pixel): a softmax or logits "
            "over the classes, or one sigmoid unit for two classes; a sigmoid over {} units "
            "gives each class a probability of its own (multi-label), which do not sum to 1. "
            "Received: output {} from {} with a sigmoid")
    for model, units, shape, layer in [
            (multi, 3, (None, 3), "Dense 'tags'"), (seg, 2, (None, 8, 8, 2), "Conv2D 'px'"),
            (nested, 3, (None, 3), f"Functional {multi.name!r}")]:
        with pytest.raises(ValueError) as e:
            zoo.export(model, tmp_path / "saved", name="m")
        assert str(e.value) == rule.format(units, shape, layer)
    assert not (tmp_path / "saved").exists()
    one = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(flat))
    assert zoo.export(one, tmp_path / "saved", name="one", lite=False).endswith("1")

def test_a_model_of_any_input_size_needs_an_input_size_named_for_its_source(tmp_path,
                                                                              capsys):
    """A model built with keras.Input((None, None, C)) has no size for the signature to
    resize to: export asks for info, and zoo export of a bare .keras file (which takes no
    info) names what gives one (it said to pass info, which the command does not take)."""
    from zoo.cli import main
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    with pytest.raises(ValueError, match=r"^the model's input shape \(None, None, 3\) is not "
                                         r"fixed; pass info \(a DatasetInfo\)"):
        zoo.export(model, tmp_path / "saved")
    path = str(tmp_path / "any.keras")
    model.save(path)
    assert main(["export", path, "--base-dir", str(tmp_path / "saved")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "zoo: error: the model's input shape (None, None, 3) is not fixed, and no info.json "
        "gives the export an input size: export the run directory the model was trained in "
        "(its info.json holds the dataset's), or save the model built with a fixed input "
        f"shape. Received: {path}"]
    assert not (tmp_path / "saved").exists()

def digits_info(**kw):
    args = dict(name="digits", task="classification", num_classes=10,
                labels=[f"digit {i}" for i in range(10)], input_shape=(32, 32, 1),
                mean=[80.0], std=[100.0], raw_shape=(8, 8, 1),
                splits={"train": 1257, "validation": 180, "test": 360})
    args.update(kw)
    return DatasetInfo(**args)


def test_resizing_and_normalisation_run_in_the_graph(tmp_path):
    model = zoo.lenet5(variant="modern")
    info = digits_info()
    path = zoo.export(model, tmp_path, name="digits_lenet", info=info,
                      metrics={"test_accuracy": np.float32(0.975)})
    raw = raw_images(4, (8, 8, 1), seed=1)  # digits' own 8x8, resized to 32x32 in the graph
    got = serve_fn(path)(images=tf.constant(raw))["probabilities"].numpy()
    want = np.asarray(model(preprocess(raw, info)))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)

    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["name"] == "digits_lenet" and record["version"] == 1
    # The layout's number, which zoo.serving.load checks (every export so far is format 1).
    assert record["format"] == zoo_export.FORMAT == 1
    assert record["labels"] == [f"digit {i}" for i in range(10)]
    assert record["preprocessing"]["mean"] == [80.0] and record["preprocessing"]["std"] == [100.0]
    assert record["input"]["model_input_shape"] == [32, 32, 1]
    assert record["input"]["raw_shape"] == [8, 8, 1]
    assert record["input"]["raw_range"] == [0.0, 255.0]
    assert record["signature"]["inputs"]["images"]["shape"] == [None, None, None, 1]
    assert record["signature"]["outputs"]["classes"] == {"dtype": "int64", "shape": [None]}
    assert record["metrics"] == {"test_accuracy": pytest.approx(0.975)}
    assert record["versions"] == {"zoo": zoo.__version__, "keras": keras.__version__,
                                  "tensorflow": tf.__version__}
    assert record["dataset"]["name"] == "digits"


def test_rgb_model_on_grey_data_converts_channels_in_the_graph(tmp_path):
    model = zoo.lenet5(input_shape=(32, 32, 3))
    info = digits_info(input_shape=(32, 32, 3))
    path = zoo.export(model, tmp_path, info=info)
    fn = serve_fn(path)
    assert fn.structured_input_signature[1]["images"].shape.as_list() == [None, None, None, 1]
    raw = raw_images(2, (8, 8, 1), seed=2)
    np.testing.assert_allclose(fn(images=tf.constant(raw))["probabilities"].numpy(),
                               np.asarray(model(preprocess(raw, info), training=False)),
                               atol=1e-5, rtol=0)
    # Grey to RGB is a tile, without tf.image.grayscale_to_rgb's run-time asserts (their
    # string constants have no GPU kernel; the signature fixes the channel count anyway).
    ops = {node.op for _, node in zoo_export.signature_nodes(path)}
    assert "Tile" in ops and "Assert" not in ops
    # zoo.json names the channels clients send (the data's), and the LiteRT copy, checked
    # on such inputs, is written.
    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["input"]["channels"] == 1 and record["input"]["model_input_shape"] == [32, 32, 3]
    assert record["preprocessing"]["channels"] == "1 -> 3"
    assert record["lite"]["file"] == "assets/serving_default.tflite", record["lite"]
    if _has_gpu_kernels():
        assert zoo_export.gpu_check(path)["ops_without_gpu_kernel"] == []


# Reduced-precision exports: the largest probability difference to float32 measured on
# normalised inputs was ~2e-4 (float16) and ~3e-3 (bfloat16); asserted with margin.
PRECISION_ATOL = {"float16": 2e-3, "bfloat16": 2e-2}


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_reduced_precision_export_within_tolerance(precision, tmp_path):
    model = zoo.resnet18(input_shape=(32, 32, 3), num_classes=5)
    info = digits_info(input_shape=(32, 32, 3), raw_shape=(32, 32, 3), num_classes=5,
                       labels=list("abcde"), mean=[127.5], std=[64.0])
    path = zoo.export(model, tmp_path, precision=precision, info=info)
    loaded = tf.saved_model.load(path)
    # Weights in the reduced type, but the output layer's stay float32 (as in training
    # under a mixed policy): its logits and softmax are computed in float32.
    dtypes = {v.name: v.dtype for v in loaded.variables}
    head = {k: d for k, d in dtypes.items() if k.startswith("predictions/")}
    assert head == {"predictions/kernel:0": tf.float32, "predictions/bias:0": tf.float32}
    assert {d for k, d in dtypes.items() if k not in head} == {tf.as_dtype(precision)}
    x = raw_images(8, (32, 32, 3), seed=3)
    got = loaded.signatures["serving_default"](images=tf.constant(x))
    assert got["probabilities"].dtype == tf.float32
    # A float32 softmax sums to 1 within float32 rounding (a bfloat16 one is off by ~1e-3).
    np.testing.assert_allclose(got["probabilities"].numpy().sum(-1), 1.0, atol=1e-6, rtol=0)
    want = np.asarray(model(preprocess(x, info), training=False))
    diff = np.abs(got["probabilities"].numpy() - want).max()
    assert diff < PRECISION_ATOL[precision], diff
    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["precision"] == precision
    # LiteRT copies are float32 only; these exports run on TensorFlow.
    assert record["lite"] == {"file": None, "error": f"only float32 exports get a LiteRT "
                                                     f"model (this one is {precision})"}
    servable = load(path, jit_compile=False)
    assert servable.runtime == "tensorflow" and "only float32" in servable.runtime_note


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_a_model_built_under_a_global_mixed_policy_exports_a_float32_output_layer(
        precision, tmp_path):
    # Keras' recipe for GPUs sets the policy globally before building: every layer of the
    # model, its softmax too, is then mixed_float16. The reduced-precision export kept that
    # policy on the output layer (a bfloat16 export then computed its softmax in float16).
    model = built_under_global_policy(
        "mixed_float16", lambda: zoo.resnet18(input_shape=(32, 32, 3), num_classes=5))
    served = zoo_export._cast_model(model, precision)
    assert served.get_layer("predictions").dtype_policy.name == "float32"
    assert served.get_layer("conv1_conv").dtype_policy.name == precision
    info = digits_info(input_shape=(32, 32, 3), raw_shape=(32, 32, 3), num_classes=5,
                       labels=list("abcde"), mean=[127.5], std=[64.0])
    path = zoo.export(model, tmp_path, precision=precision, info=info, lite=False)
    x = raw_images(8, (32, 32, 3), seed=3)
    got = serve_fn(path)(images=tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6, rtol=0)   # a float32 softmax


def test_mixed_precision_model_exports_in_float32(tmp_path):
    # fit's default on CPUs with AMX or AMD AVX512_BF16 (and on tensor-core GPUs) trains
    # under a mixed policy;
    # the default export still computes in float32, equal to the float32 model.
    from zoo.train import _rebuild
    model = tiny_model("resnet18")
    mixed = _rebuild(tiny_model("resnet18"), "mixed_bfloat16")
    mixed.set_weights(model.get_weights())
    assert mixed.get_layer("conv1_conv").compute_dtype == "bfloat16"
    info = digits_info(input_shape=(32, 32, 3), raw_shape=(32, 32, 3), num_classes=3,
                       labels=list("abc"), mean=[127.5], std=[64.0])
    path = zoo.export(mixed, tmp_path, info=info, lite=False)
    loaded = tf.saved_model.load(path)
    assert {v.dtype for v in loaded.variables} == {tf.float32}
    x = raw_images(4, (32, 32, 3), seed=5)
    got = loaded.signatures["serving_default"](images=tf.constant(x))["probabilities"]
    want = np.asarray(model(preprocess(x, info), training=False))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=0)
    assert mixed.get_layer("conv1_conv").compute_dtype == "bfloat16"   # left alone


@pytest.mark.parametrize("policy", ["float16", "bfloat16"])
def test_a_model_with_reduced_precision_weights_folds_in_float32(policy, tmp_path):
    # A model built under a plain float16 or bfloat16 policy keeps its weights in that type:
    # the float32 export folded its batch norms into them rounded to that type (2.5e-4
    # off for a float16 ResNet-18, 6.7e-4 for bfloat16); its float32 copy folds exactly.
    keras.utils.set_random_seed(0)
    model = built_under_global_policy(
        policy, lambda: zoo.resnet18(input_shape=(32, 32, 3), num_classes=5))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.3, 3.0, layer.moving_variance.shape))
    path = zoo.export(model, tmp_path, lite=False)
    x = rng.normal(0, 1, (8, 32, 32, 3)).astype("float32")
    got = serve_fn(path)(images=tf.constant(x))["probabilities"].numpy()
    want = np.asarray(zoo_export._cast_model(model, "float32")(x, training=False))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def _has_gpu_kernels():
    from tensorflow.python.framework import kernels
    return any(k.device_type == "GPU"
               for k in kernels.get_registered_kernels_for_op("Conv2D").kernel)


needs_gpu_kernels = pytest.mark.skipif(
    not _has_gpu_kernels(), reason="this TensorFlow build registers no GPU kernels")


def _op_dtypes(path):
    """``{op: {dtype of its T attribute}}`` over every node serving_default runs."""
    from tensorflow.python.framework import op_def_registry
    found = {}
    for _, node in zoo_export.signature_nodes(path):
        types = zoo_export._type_attrs(node, op_def_registry.get(node.op))
        found.setdefault(node.op, set()).update(tf.as_dtype(t).name for t in types.get("T", ()))
    return found


@needs_gpu_kernels
def test_gpu_check_finds_device_pins_and_ops_without_gpu_kernels(tmp_path):
    # A deliberately bad serving graph: a node pinned to the CPU and a float16 LRN, whose
    # GPU kernel is float32 only.
    class Bad(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(tf.ones([3], tf.float16))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32,
                                                    name="images")])
        def serve(self, images):
            with tf.device("/CPU:0"):
                x = tf.cast(images, tf.float16) * self.scale
            y = tf.nn.local_response_normalization(x)
            return {"probabilities": tf.cast(tf.reduce_mean(y, [1, 2]), tf.float32)}

    bad = Bad()
    tf.saved_model.save(bad, str(tmp_path), signatures={"serving_default": bad.serve})
    report = zoo_export.gpu_check(str(tmp_path))
    assert len(report["device_pins"]) == 2, report
    assert report["device_pins"][0].endswith("/Cast (Cast) on /device:CPU:0")
    assert report["device_pins"][1].endswith("/mul (Mul) on /device:CPU:0")
    assert report["ops_without_gpu_kernel"] == ["LRN(T=float16)"]
    # A signature the SavedModel does not have is named, with those it has (it was read
    # as an empty signature of 0 nodes).
    with pytest.raises(ValueError, match=r"no signature 'serve'; its signatures: "
                                       r"\['serving_default'\]"):
        zoo_export.gpu_check(str(tmp_path), signature="serve")
    # The checkpoint save/restore functions pin their nodes to the CPU by design; a server
    # runs them once to load the variables, so they are not reported.
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(open(os.path.join(tmp_path, "saved_model.pb"), "rb").read())
    pinned = sum(bool(n.device) for f in saved.meta_graphs[0].graph_def.library.function
                 for n in f.node_def)
    assert pinned > 10


@needs_gpu_kernels
@pytest.mark.parametrize("name,policy,precision", [
    ("lenet5", None, "float32"),
    ("lenet5", "mixed_bfloat16", "bfloat16"),      # trained in bfloat16 (this CPU's default)
    ("resnet18", None, "float32"),
    ("resnet18", "mixed_float16", "float16"),      # trained in float16 (the GPU default)
])
def test_exported_prediction_path_can_run_on_a_gpu(name, policy, precision, tmp_path):
    # No node of serving_default is pinned to a device and every op has a GPU kernel for
    # its dtypes, so a GPU server places the whole signature on the GPU.
    from zoo.train import _rebuild
    model = tiny_model(name)
    if policy:
        model = _rebuild(model, policy)
    path = zoo.export(model, tmp_path, precision=precision, lite=False)
    report = zoo_export.gpu_check(path)
    assert report["device_pins"] == []
    assert report["ops_without_gpu_kernel"] == []
    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["gpu"] == report
    # The walk covered the prediction path: resize and normalisation in float32, the
    # convolutions in the export's precision, the softmax of the output layer in float32.
    ops = _op_dtypes(path)
    assert report["nodes"] > 90
    assert ops["ResizeBilinear"] == {"float32"} and ops["Sub"] >= {"float32"}
    assert ops["Conv2D"] == {precision}
    assert ops["Softmax"] == {"float32"}
    assert ops["ArgMax"] == {"float32"}
    assert ("Cast" in ops) == (precision != "float32")


def test_saved_model_cli_lists_the_named_signature(tmp_path):
    path = zoo.export(zoo.lenet5(), tmp_path)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--all", "--dir", path], capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "signature_def['serving_default']" in out
    assert "inputs['images'] tensor_info" in out
    assert "shape: (-1, -1, -1, 1)" in out
    assert "outputs['probabilities'] tensor_info" in out
    assert "outputs['classes'] tensor_info" in out
    assert "DT_INT64" in out
    assert "output_0" not in out


def test_versions_count_up_and_are_never_overwritten(tmp_path):
    # lite=False throughout: the version numbering is the same with or without a LiteRT copy
    model = zoo.lenet5(variant="modern")
    umask = os.umask(0o022)
    try:
        first = zoo.export(model, tmp_path, name="m", lite=False)
    finally:
        os.umask(umask)
    # Readable by a server running as another user (the temporary directory it was
    # renamed from is made 0700).
    assert os.stat(first).st_mode & 0o777 == 0o755
    second = zoo.export(model, tmp_path, name="m", lite=False)
    assert [os.path.basename(first), os.path.basename(second)] == ["1", "2"]
    assert zoo.export(model, tmp_path, name="m", lite=False,
                      version=7).endswith(os.path.join("m", "7"))
    assert zoo.export(model, tmp_path, name="m", lite=False).endswith(os.path.join("m", "8"))
    assert zoo_export.list_versions(tmp_path / "m") == [1, 2, 7, 8]
    # Directories named in other digits are no versions ("²": int() refuses it; "١" would
    # read as 1), for listing, serving and the next free number alike.
    for odd in ("²", "١"):
        shutil.copytree(second, tmp_path / "m" / odd)
    assert zoo_export.list_versions(tmp_path / "m") == [1, 2, 7, 8]
    assert zoo.export(model, tmp_path, name="m", lite=False).endswith(os.path.join("m", "9"))
    with pytest.raises(ValueError, match="^version must be an integer from 0 to"):
        zoo.export(model, tmp_path, name="m", lite=False, version="١")
    for odd in ("²", "١", "9"):
        shutil.rmtree(tmp_path / "m" / odd)

    before = open(os.path.join(first, "saved_model.pb"), "rb").read()
    with pytest.raises(FileExistsError, match="version 1 .* already exists"):
        zoo.export(zoo.lenet5(variant="modern", num_classes=3), tmp_path, name="m",
                   lite=False, version=1)
    assert open(os.path.join(first, "saved_model.pb"), "rb").read() == before

    other = zoo.lenet5(variant="modern", num_classes=3)
    zoo.export(other, tmp_path, name="m", lite=False, version=1, overwrite=True)
    out = serve_fn(first)(images=tf.zeros([1, 32, 32, 1]))
    assert out["probabilities"].shape == (1, 3)
    assert sorted(os.listdir(tmp_path / "m")) == ["1", "2", "7", "8"]  # no temporaries left


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="../evil"), "name must be"),
    (dict(name=".hidden"), "name must be"),
    (dict(version=-1), "version must be"),
    (dict(version=1.5), "version must be"),
    (dict(precision="int8"), "precision must be one of float32, float16, bfloat16"),
    (dict(info={"labels": []}), "missing"),
    (dict(info=digits_info(num_classes=3, labels=list("abc"))), "num_classes=3"),
    (dict(info=digits_info(input_shape=(64, 64, 1))), "does not match"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        zoo.export(zoo.lenet5(variant="modern"), tmp_path, **kwargs)
    assert not os.path.exists(tmp_path / "lenet5" / "1")


def test_feature_extractor_cannot_be_exported_as_classifier(tmp_path):
    model = zoo.lenet5(include_top=False, pooling=None)
    with pytest.raises(ValueError, match="include_top=True"):
        zoo.export(model, tmp_path)


def test_failure_during_write_leaves_no_version_and_no_temporary(tmp_path, monkeypatch):
    archive_class = type(keras.export.ExportArchive())  # the backend's subclass
    original = archive_class.write_out

    def write_then_fail(self, filepath, **kw):
        original(self, filepath, **kw)  # a complete SavedModel in the temporary directory
        raise OSError("disk full")

    monkeypatch.setattr(archive_class, "write_out", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        zoo.export(zoo.lenet5(variant="modern"), tmp_path)
    assert os.listdir(tmp_path) == []  # nor the model directory it made


@pytest.mark.parametrize("where", ["savedmodel", "lite"])
def test_a_full_disk_names_the_model_directory_and_leaves_nothing(tmp_path, monkeypatch, where):
    """TensorFlow's error for a full disk while it saved the variables (a
    ResourceExhaustedError, which zoo export called running out of memory, naming a
    temporary file) and Python's while the LiteRT model was written ("[Errno 28] No space
    left on device", no file named) name the model directory the export was for."""
    import errno
    if where == "savedmodel":
        archive_class = type(keras.export.ExportArchive())
        original = archive_class.write_out

        def full(self, filepath, **kw):
            original(self, filepath, **kw)
            raise tf.errors.ResourceExhaustedError(None, None, (
                f"{{{{function_node __wrapped__SaveV2}}}} {filepath}/variables/variables_temp/"
                f"part-00000-of-00001.tempstate966; No space left on device [Op:SaveV2]"))
        monkeypatch.setattr(archive_class, "write_out", full)
    else:
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(zoo_export, "write_lite", full)
    with pytest.raises(OSError) as info:
        zoo.export(zoo.lenet5(variant="modern"), tmp_path / "models")
    assert info.value.errno == errno.ENOSPC
    model_dir = str(tmp_path / "models" / "lenet5")
    assert str(info.value) == f"[Errno 28] cannot write {model_dir!r}: No space left on device"
    assert os.listdir(tmp_path) == []


def test_lite_conversion_failure_or_mismatch_leaves_a_working_export(tmp_path, monkeypatch):
    model = zoo.lenet5(variant="modern")
    x = raw_images(2, (32, 32, 1))
    want = np.asarray(model(x))

    def broken(*args, **kw):
        raise RuntimeError("op FancyOp is neither a custom op nor a flex op\nmore detail")

    with monkeypatch.context() as m:
        m.setattr(tf.lite.TFLiteConverter, "from_saved_model", broken)
        path = zoo.export(model, tmp_path, name="broken")
    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["lite"] == {"file": None, "error": "conversion failed: RuntimeError: op "
                                                     "FancyOp is neither a custom op nor a "
                                                     "flex op"}
    servable = load(path, jit_compile=False)
    assert servable.runtime == "tensorflow" and "FancyOp" in servable.runtime_note
    np.testing.assert_allclose(servable.predict(x)["probabilities"], want, atol=1e-5)

    monkeypatch.setattr(zoo_export, "LITE_TOLERANCE", -1.0)  # no difference is small enough
    path = zoo.export(model, tmp_path, name="mismatch")
    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["lite"]["file"] is None
    assert record["lite"]["error"].startswith("LiteRT outputs differ from the SavedModel's by")
    assert not os.path.exists(os.path.join(path, zoo_export.LITE_FILE))
    with pytest.raises(ValueError, match="lite must be True or False. Received: lite='yes'"):
        zoo.export(model, tmp_path, lite="yes")


class _OffWhenResized:
    """A LiteRT interpreter whose signature's probabilities are off by ``offset`` for
    images not at the model's 32x32 input size."""

    def __init__(self, interpreter, offset):
        self.interpreter, self.offset = interpreter, offset

    def get_signature_runner(self, name):
        run = self.interpreter.get_signature_runner(name)

        def call(images):
            out = run(images=images)
            if images.shape[1:3] != (32, 32):
                out["probabilities"] = out["probabilities"] + np.float32(self.offset)
            return out
        return call


@pytest.mark.parametrize("offset", [5e-4, 2e-3])
def test_a_litert_copy_is_kept_only_within_the_tolerance_at_every_size(
        offset, tmp_path, monkeypatch):
    # The check runs the copy at the model's input size and at another one (the in-graph
    # resize): a copy off by more than LITE_TOLERANCE (1e-3) on either is not written.
    from zoo import startlog
    real = startlog.make_litert_interpreter
    monkeypatch.setattr(startlog, "make_litert_interpreter",
                        lambda **kw: _OffWhenResized(real(**kw), offset))
    path = zoo.export(zoo.lenet5(variant="modern"), tmp_path)
    lite = json.load(open(os.path.join(path, "assets", "zoo.json")))["lite"]
    if offset < zoo_export.LITE_TOLERANCE:
        assert lite["file"] == "assets/serving_default.tflite"
        assert lite["max_abs_diff"] == pytest.approx(offset, abs=1e-5)
        assert os.path.isfile(os.path.join(path, zoo_export.LITE_FILE))
    else:
        assert lite["file"] is None
        assert lite["error"] == "LiteRT outputs differ from the SavedModel's by 0.002 (> 0.001)"
        assert not os.path.exists(os.path.join(path, zoo_export.LITE_FILE))


def test_export_killed_before_rename_leaves_no_version(tmp_path):
    """A real ``kill -9`` at the last moment: the SavedModel is written but not renamed."""
    flag = tmp_path / "writing"
    script = textwrap.dedent(f"""
        import os, time
        import zoo
        real_rename = os.rename
        def stalled_rename(src, dst):
            open({str(flag)!r}, "w").close()
            time.sleep(600)
        os.rename = stalled_rename
        zoo.export(zoo.lenet5(variant="modern"), {str(tmp_path)!r})
    """)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_marker(flag, proc, "the export never reached the rename")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    left = os.listdir(tmp_path / "lenet5")
    assert len(left) == 1 and left[0].startswith(".tmp-")  # the half-done export, hidden
    assert os.path.isfile(tmp_path / "lenet5" / left[0] / "saved_model.pb")
    assert zoo_export.list_versions(tmp_path / "lenet5") == []
    # The next export cleans the dead process's temporary directory up and takes version 1.
    path = zoo.export(zoo.lenet5(variant="modern"), tmp_path)
    assert os.path.basename(path) == "1"
    assert os.listdir(tmp_path / "lenet5") == ["1"]


def test_an_overwrite_never_leaves_the_version_missing(tmp_path, monkeypatch):
    # Before, the old version was renamed away and the new one renamed in after it: a kill
    # between the two left the model directory without the version (and a server polling
    # it dropped the version meanwhile).
    model_dir = tmp_path / "m"
    zoo.export(zoo.lenet5(variant="modern"), tmp_path, name="m", version=1)
    seen = []
    real_rename, real_rmtree = os.rename, shutil.rmtree

    def look():
        seen.append(zoo_export.list_versions(model_dir))

    def rename(src, dst):
        look()
        real_rename(src, dst)
        look()

    def rmtree(path, *args, **kw):
        look()
        real_rmtree(path, *args, **kw)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    zoo.export(zoo.lenet5(variant="modern", num_classes=3), tmp_path, name="m", version=1,
               overwrite=True)
    monkeypatch.undo()
    assert seen and all(versions == [1] for versions in seen), seen
    assert serve_fn(str(model_dir / "1"))(
        images=tf.zeros([1, 32, 32, 1]))["probabilities"].shape == (1, 3)
    assert sorted(os.listdir(model_dir)) == ["1"]   # the old version's files are gone


def test_an_overwrite_where_directories_cannot_be_swapped(tmp_path, monkeypatch):
    # A file system without renameat2's exchange: the old version is renamed away first.
    zoo.export(zoo.lenet5(variant="modern"), tmp_path, name="m", version=1)
    monkeypatch.setattr(zoo_export, "_exchange", lambda a, b: False)
    path = zoo.export(zoo.lenet5(variant="modern", num_classes=3), tmp_path, name="m",
                      version=1, overwrite=True)
    assert serve_fn(path)(images=tf.zeros([1, 32, 32, 1]))["probabilities"].shape == (1, 3)
    assert os.listdir(tmp_path / "m") == ["1"]


def test_an_export_that_loses_its_version_to_another_says_so(tmp_path, monkeypatch):
    # Another export renamed the same version into place between the check and the rename:
    # before, a raw "[Errno 39] Directory not empty: '.../.tmp-...' -> '.../m/3'".
    model = zoo.lenet5(variant="modern")
    real_rename = os.rename

    def taken_meanwhile(src, dst):
        if os.path.basename(dst) in ("3", "4") and not os.path.exists(dst):
            os.makedirs(os.path.join(dst, "variables"))   # the other export's version
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", taken_meanwhile)
    with pytest.raises(FileExistsError) as exc_info:
        zoo.export(model, tmp_path, name="m", version=3)
    assert str(exc_info.value) == (f"version 3 of 'm' already exists in {tmp_path / 'm'}; "
                                   f"pass overwrite=True (--overwrite) to replace it.")
    assert os.listdir(tmp_path / "m") == ["3"]     # the other's, and no temporary left
    # Without a version given, the export takes the next free one; with overwrite, it
    # replaces the other's.
    assert zoo.export(model, tmp_path, name="m").endswith(os.path.join("m", "5"))
    path = zoo.export(model, tmp_path, name="m", version=3, overwrite=True)
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert zoo_export.list_versions(tmp_path / "m") == [3, 5]
    assert sorted(os.listdir(tmp_path / "m")) == ["3", "4", "5"]


def test_exports_from_two_processes_at_once_each_take_their_own_version(tmp_path):
    """Two processes export into one model directory at the same time, 3 times each, after
    version 1: versions 2-7, each once, and no temporary left (README: Exporting). Their
    first exports both rename into version 2 at once (each waits at its rename for the
    other's), so one of them finds it taken and takes the next."""
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import glob, os, time
        import zoo
        real_rename, waited = os.rename, []
        def rename_together(src, dst):
            if os.path.basename(dst).isdigit() and not waited:
                waited.append(True)
                open({str(tmp_path)!r} + "/renaming-" + str(os.getpid()), "w").close()
                deadline = time.monotonic() + 120
                while (len(glob.glob({str(tmp_path)!r} + "/renaming-*")) < 2
                       and time.monotonic() < deadline):
                    time.sleep(0.01)
            real_rename(src, dst)
        os.rename = rename_together
        model = zoo.lenet5(variant="modern")
        open({str(tmp_path)!r} + "/ready-" + str(os.getpid()), "w").close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        for _ in range(3):
            print(os.path.basename(zoo.export(model, {str(tmp_path)!r}, name="m", lite=False)),
                  flush=True)
    """)
    zoo.export(zoo.lenet5(variant="modern"), tmp_path, name="m", lite=False)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for proc in procs:
            wait_for_marker(tmp_path / f"ready-{proc.pid}", proc, "an exporter never started")
        go.touch()
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outputs]
    versions = [[int(v) for v in out.split()] for out, _ in outputs]
    assert [len(v) for v in versions] == [3, 3]
    assert sorted(versions[0] + versions[1]) == [2, 3, 4, 5, 6, 7]
    assert sorted(os.listdir(tmp_path / "m")) == [str(v) for v in range(1, 8)]


def test_an_export_with_other_classes_than_the_version_it_replaces_is_noted(tmp_path,
                                                                           capsys):
    """zoo train --export on digits, then on a folder of two classes, put both under
    saved_models/lenet5: clients of the newest version got other classes without a word."""
    from zoo.cli import main
    digits = digits_info()
    pets = DatasetInfo(name="folder:/data/pets", task="classification", num_classes=2,
                       labels=["cat", "dog"], input_shape=(32, 32, 1), mean=[0.0], std=[1.0])
    model_dir = tmp_path / "models" / "lenet5"
    for info in (digits, digits):
        zoo.export(zoo.lenet5(variant="modern"), tmp_path / "models", info=info, lite=False)
    assert zoo_export.changed_classes_note(model_dir / "1") is None     # the first
    assert zoo_export.changed_classes_note(model_dir / "2") is None     # the same classes
    run = tmp_path / "run"
    run.mkdir()
    zoo.lenet5(variant="modern", num_classes=2).save(run / "model.keras")
    (run / "info.json").write_text(json.dumps({"model": "lenet5", "task": "classification",
                                               "dataset": pets.to_dict()}))
    assert main(["export", str(run), "--base-dir", str(tmp_path / "models"), "--no-lite"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(model_dir / "3")
    assert err == (f"zoo export: note: {model_dir} version 3 answers with other classes than "
                   f"version 2, which it replaces for clients of the newest version: "
                   f"classification of 2 classes ['cat', 'dog'], 1-channel input, trained on "
                   f"folder:/data/pets; version 2: classification of 10 classes ['digit 0', "
                   f"'digit 1', 'digit 2', 'digit 3', 'digit 4', '..., 1-channel input, "
                   f"trained on digits. Export under another name (--name) to serve both.\n")
    # Compared with the version just below: a copy of version 3 as 4 answers as 3 did,
    # though 1 and 2 answer otherwise.
    shutil.copytree(model_dir / "3", model_dir / "4")
    assert zoo_export.changed_classes_note(model_dir / "4") is None
    # An older version exported after a newer one is compared with the one below it.
    zoo.export(zoo.lenet5(variant="modern"), tmp_path / "models", info=digits, lite=False,
               version=0)
    assert zoo_export.changed_classes_note(model_dir / "0") is None


def test_export_run_and_cli(tmp_path, capsys):
    from zoo.cli import main
    run = tmp_path / "run"
    run.mkdir()
    model = zoo.lenet5(variant="modern")
    model.save(run / "model.keras")
    info = {"model": "lenet5", "task": "classification", "dataset": digits_info().to_dict(),
            "metrics": {"test_accuracy": 0.9},
            "settings": {"epochs": 3, "optimizer": "adam", "learning_rate": 0.001}}
    (run / "info.json").write_text(json.dumps(info))

    path = zoo_export.export_run(run, base_dir=tmp_path / "models")
    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["name"] == "lenet5" and record["metrics"] == {"test_accuracy": 0.9}
    assert record["training"] == {"source": str(run), "settings": info["settings"]}
    assert record["labels"][3] == "digit 3"
    raw = raw_images(2, (8, 8, 1))
    np.testing.assert_allclose(serve_fn(path)(images=tf.constant(raw))["probabilities"],
                               np.asarray(model(preprocess(raw, digits_info()))), atol=1e-5)

    assert main(["export", str(run), "--base-dir", str(tmp_path / "models"),
                 "--precision", "float16"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == os.path.join(str(tmp_path / "models"), "lenet5", "2")
    assert main(["export", str(run / "model.keras"), "--base-dir", str(tmp_path / "models"),
                 "--name", "bare", "--version", "3"]) == 0
    assert zoo_export.list_versions(tmp_path / "models" / "bare") == [3]
    assert os.path.isfile(tmp_path / "models" / "bare" / "3" / zoo_export.LITE_FILE)
    assert main(["export", str(run / "model.keras"), "--base-dir", str(tmp_path / "models"),
                 "--name", "bare", "--version", "4", "--no-lite"]) == 0
    capsys.readouterr()
    assert not os.path.exists(tmp_path / "models" / "bare" / "4" / zoo_export.LITE_FILE)
    record = json.load(open(tmp_path / "models" / "bare" / "4" / "assets" / "zoo.json"))
    assert record["lite"] == {"file": None, "error": "not requested (lite=False)"}
    assert record["training"] == {"source": str(run / "model.keras"),
                                  "settings": info["settings"]}
    # A model exported from memory: no source, no settings; a source that is no path: refused.
    record = json.load(open(os.path.join(zoo.export(model, tmp_path / "mem", lite=False),
                                         "assets", "zoo.json")))
    assert record["training"] == {"source": None, "settings": None}
    with pytest.raises(ValueError, match="source must be a path .* Received: int"):
        zoo.export(model, tmp_path / "mem", lite=False, source=3)

    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "zoo: error: no such run directory" in capsys.readouterr().err
    # A .keras file alone: exported, with a note that it has no normalisation or labels.
    (tmp_path / "alone").mkdir()
    shutil.copy(run / "model.keras", tmp_path / "alone" / "m.keras")
    assert main(["export", str(tmp_path / "alone" / "m.keras"), "--base-dir",
                 str(tmp_path / "models"), "--name", "alone", "--no-lite"]) == 0
    printed = capsys.readouterr()
    assert printed.out.strip() == os.path.join(str(tmp_path / "models"), "alone", "1")
    assert printed.err == (f"zoo export: note: no info.json beside {tmp_path / 'alone' / 'm.keras'}"
                           f": exported without the dataset's normalisation and labels "
                           f"(clients send the model's own inputs, not raw pixels to "
                           f"normalise)\n")
    (tmp_path / "notes.keras").write_text("not a model")
    assert main(["export", str(tmp_path / "notes.keras"), "--base-dir",
                 str(tmp_path / "models2")]) == 2
    assert capsys.readouterr().err == (f"zoo: error: {tmp_path / 'notes.keras'} is not a Keras "
                                       "model file: a .keras file is a zip archive (written by "
                                       "model.save), this one is not\n")
    assert not os.path.exists(tmp_path / "models2")
    assert main(["export", str(run), "--base-dir", str(tmp_path / "models"),
                 "--version", "1"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_runs_own_model_name_names_the_export_and_its_record(tmp_path):
    # fit(model, model_name="digits_net") records that name in info.json; the Keras model
    # itself is "lenet5".
    info = {"model": "digits_net", "task": "classification",
            "dataset": digits_info().to_dict()}
    path = zoo.export(zoo.lenet5(variant="modern"), tmp_path, info=info, lite=False)
    assert path == os.path.join(str(tmp_path), "digits_net", "1")
    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["name"] == "digits_net" and record["model"] == "digits_net"


def test_zoo_export_stays_callable_after_importing_the_module():
    import zoo.export  # noqa: F401  (rebinds the package attribute to the module)
    assert callable(zoo.export)
    assert zoo_export.export is zoo.export.export


def test_a_run_directory_without_info_json_is_refused(tmp_path, capsys):
    from zoo.cli import main
    run = tmp_path / "run"
    run.mkdir()
    model = zoo.lenet5(variant="modern")
    model.save(run / "model.keras")
    with pytest.raises(FileNotFoundError, match=f"{run} is not a complete training run: it "
                                                "has model.keras but no info.json"):
        zoo_export.export_run(run, base_dir=tmp_path / "models")
    assert main(["export", str(run), "--base-dir", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"zoo: error: {run} is not a complete training "
                                              "run: it has model.keras but no info.json")
    assert not os.path.exists(tmp_path / "models")
    # The .keras file itself still exports, as documented: raw pixels, no normalisation.
    path = zoo_export.export_run(run / "model.keras", base_dir=tmp_path / "models", lite=False)
    record = json.load(open(os.path.join(path, "assets", "zoo.json")))
    assert record["preprocessing"]["mean"] == [0.0] and record["preprocessing"]["std"] == [1.0]


def test_versions_beyond_int64_are_refused(tmp_path, capsys):
    from zoo.cli import main
    model = zoo.lenet5(variant="modern")
    for version in (2 ** 63, 2 ** 70, str(2 ** 63)):
        with pytest.raises(ValueError, match=r"version must be an integer from 0 to "
                                             r"9223372036854775807 \(2\*\*63-1, the largest "
                                             f"TensorFlow Serving loads\\).*Received: "
                                             f"version={version!r}"):
            zoo.export(model, tmp_path, version=version)
    assert not os.path.exists(tmp_path / "lenet5")
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "info.json").write_text(json.dumps(
        {"model": "lenet5", "task": "classification", "dataset": digits_info().to_dict()}))
    assert main(["export", str(run), "--base-dir", str(tmp_path / "models"),
                 "--version", "99999999999999999999999"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("zoo: error: version must be an integer from 0 "
                                              "to 9223372036854775807")
    assert not os.path.exists(tmp_path / "models")
    top = zoo.export(model, tmp_path, version=2 ** 63 - 1, lite=False)
    assert zoo_export.list_versions(tmp_path / "lenet5") == [2 ** 63 - 1]
    assert os.path.basename(top) == str(2 ** 63 - 1)
    # The next free version after the largest is none (it numbered the export 2**63, a
    # version TensorFlow Serving cannot load), here and in zoo export.
    with pytest.raises(ValueError, match=r"^'lenet5' has version 9223372036854775807 "
                                         r"\(2\*\*63-1, the largest TensorFlow Serving "
                                         r"loads\): there is no next version to number this "
                                         r"export; pass version= \(--version\) a free one$"):
        zoo.export(model, tmp_path, lite=False)
    assert main(["export", str(run), "--base-dir", str(tmp_path), "--no-lite"]) == 2
    assert capsys.readouterr().err.startswith("zoo: error: 'lenet5' has version ")
    assert sorted(os.listdir(tmp_path / "lenet5")) == [str(2 ** 63 - 1)]
    assert os.path.basename(zoo.export(model, tmp_path, version=7, lite=False)) == "7"
