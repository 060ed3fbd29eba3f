"""Tests of zoo.train: losses, compile defaults, fit's run directory, errors, resume after kill."""

import json
import os
import re
import runpy
import signal
import subprocess
import sys
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import zoo  # noqa: E402
from zoo import data, train
from zoo.cli import main as zoo_main

from conftest import (built_under_global_policy, record_syncs_and_renames,  # noqa: E402
                      subclassed_model)


def tiny_classifier(input_shape=(8, 8, 1), num_classes=10, activation="softmax"):
    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(num_classes, activation=activation, name="predictions")(x)
    return keras.Model(inputs, x, name="tiny")


def tiny_segmenter(input_shape=(16, 16, 3), num_classes=4):
    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2D(num_classes, 1, activation="softmax", name="mask")(x)
    return keras.Model(inputs, x, name="tiny_seg")


def small(splits, n_train=3):
    return data.Splits(splits.train.take(n_train), splits.validation.take(1),
                       splits.test.take(1), splits.info)


def fit_arguments(monkeypatch) -> dict:
    """Replace ``train.fit`` by one that records the keyword arguments it is given, then
    fails (``zoo train`` exits 1): what the command passes, without training."""
    seen = {}

    def no_fit(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("not trained")
    monkeypatch.setattr(train, "fit", no_fit)
    return seen


@pytest.fixture(scope="module")
def digits8():
    return small(data.load_splits("digits", image_size=(8, 8), batch_size=32, augment=True))


# --- losses ---------------------------------------------------------------------------

def test_dice_loss_values():
    y_true = np.array([[[0, 1], [1, 2]]])                       # 1 x 2 x 2
    perfect = np.eye(3)[y_true].astype("float32")
    loss = train.SparseDiceLoss(smooth=0.0)
    assert float(loss(y_true, perfect)) == pytest.approx(0.0, abs=1e-6)
    uniform = np.full((1, 2, 2, 3), 1 / 3, "float32")
    # class k: 2*sum(p t) / (sum p + sum t); counts 1, 2, 1; sum p = 4/3 each
    dice = [2 * (n / 3) / (4 / 3 + n) for n in (1, 2, 1)]
    assert float(loss(y_true, uniform)) == pytest.approx(1 - np.mean(dice), rel=1e-5)
    logits = np.log(uniform)
    assert float(train.SparseDiceLoss(smooth=0.0, from_logits=True)(y_true, logits)) == \
        pytest.approx(1 - np.mean(dice), rel=1e-5)
    both = train.CrossEntropyDiceLoss(smooth=0.0)(y_true, uniform)
    assert float(both) == pytest.approx(np.log(3) + 1 - np.mean(dice), rel=1e-5)
    half = train.CrossEntropyDiceLoss(smooth=0.0, dice_weight=0.5)(y_true, uniform)
    assert float(half) == pytest.approx(np.log(3) + 0.5 * (1 - np.mean(dice)), rel=1e-5)
    # serialisable the Keras way
    again = keras.losses.deserialize(
        keras.losses.serialize(train.CrossEntropyDiceLoss(dice_weight=0.5)))
    assert isinstance(again, train.CrossEntropyDiceLoss) and again.dice_weight == 0.5


def test_compile_defaults_by_task():
    m = train.compile_model(tiny_classifier(), learning_rate=0.01, jit_compile=False)
    assert isinstance(m.loss, keras.losses.SparseCategoricalCrossentropy)
    assert m.loss.get_config()["from_logits"] is False
    assert float(m.optimizer.learning_rate) == pytest.approx(0.01)
    logits = train.compile_model(tiny_classifier(activation=None), optimizer="sgd")
    assert logits.loss.get_config()["from_logits"] is True
    assert isinstance(logits.optimizer, keras.optimizers.SGD)
    # A Softmax layer at the end, and a whole model nested as the last layer, output
    # probabilities too (both were read as logits, so the softmax was taken twice).
    inputs = keras.Input((8,))
    softmax = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(3)(inputs)))
    images = keras.Input((8, 8, 1))
    nested = keras.Model(images, tiny_classifier()(images))
    for model in (softmax, nested):
        assert train.compile_model(model).loss.get_config()["from_logits"] is False
    plain = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    assert train.compile_model(plain).loss.get_config()["from_logits"] is True
    seg = train.compile_model(tiny_segmenter(), "segmentation")
    assert isinstance(seg.loss, train.CrossEntropyDiceLoss)
    smooth = train.compile_model(tiny_classifier(), label_smoothing=0.1)
    assert isinstance(smooth.loss, train.SparseSmoothedCrossEntropy)


def test_label_smoothing_reads_the_output_and_sgd_has_momentum():
    y = np.array([0, 2])
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], "float32")
    probs = tf.nn.softmax(logits).numpy()
    want = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(3)[y], probs)
    for activation, y_pred in (("softmax", probs), (None, logits)):
        model = train.compile_model(tiny_classifier(num_classes=3, activation=activation),
                                    label_smoothing=0.1, jit_compile=False)
        assert float(model.loss(y, y_pred)) == pytest.approx(float(want), rel=1e-5)
    assert float(want) == pytest.approx(0.34546, abs=1e-4)   # 0.17546 unsmoothed
    assert train.make_optimizer("sgd", 0.1).momentum == pytest.approx(0.9)


def test_fit_refuses_a_model_without_defined_outputs_before_loading(tmp_path):
    """A subclassed model (called once) or a Sequential model not built: the rule's one-line
    ValueError before any data is loaded (it was Keras' AttributeError 'Subclassed' object
    has no attribute 'outputs')."""
    subclassed = subclassed_model("sub")
    subclassed(np.zeros((1, 8, 8, 1), "float32"))
    rule = ("fit trains keras.Models whose outputs are defined: functional models, and "
            "Sequential models built with an input shape (keras.Input first, or "
            "model.build(input_shape)). Received: ")
    for model, received in [(subclassed, "subclassed model 'sub' (class Subclassed)"),
                            (keras.Sequential([keras.layers.Dense(2)], name="seq"),
                             "Sequential model 'seq', not built yet")]:
        with pytest.raises(ValueError) as e:
            train.fit(model, "no_such_dataset", epochs=1, run_dir=str(tmp_path / "run"),
                      verbose=0)
        assert str(e.value) == rule + received
    assert not (tmp_path / "run").exists()

def test_fit_refuses_a_sigmoid_over_several_classes_before_loading(tmp_path):
    """A sigmoid over K > 1 classes (multi-label scores), which the export refuses: refused
    before any data is loaded for a model passed in, and for a registered name built with
    the option (Keras trained it as probabilities scaled to sum to 1, served unscaled)."""
    images = keras.Input((8, 8, 1))
    model = keras.Model(images, keras.layers.Dense(3, activation="sigmoid", name="tags")(
        keras.layers.Flatten()(images)))
    rule = ("fit trains models with one class per image (per pixel): a softmax or logits "
            "over the classes; a sigmoid over {} units gives each class a probability of its "
            "own (multi-label), which do not sum to 1. Received: output {} from {} with a "
            "sigmoid")
    with pytest.raises(ValueError) as e:
        train.fit(model, "no_such_dataset", epochs=1, run_dir=str(tmp_path / "run"),
                  verbose=0)
    assert str(e.value) == rule.format(3, (None, 3), "Dense 'tags'")
    with pytest.raises(ValueError) as e:
        train.fit("lenet5", "digits", epochs=1, run_dir=str(tmp_path / "run"), verbose=0,
                  model_args={"variant": "modern", "classifier_activation": "sigmoid"})
    assert str(e.value) == rule.format(10, (None, 10), "Dense 'Out'")
    assert not (tmp_path / "run").exists()

def test_an_unknown_last_layer_is_read_by_its_numbers_as_the_export_reads_it():
    """A head ending in a Lambda (or a dropout after the softmax) has no activation to read:
    the loss reads it by its outputs, as the export's signature does. Before, it was taken
    as logits, so the loss took a softmax of the softmax while the export read the same
    model as probabilities."""
    images = keras.Input((8, 8, 1))
    scores = keras.layers.Dense(3)(keras.layers.Flatten()(images))
    softmax = keras.layers.Lambda(lambda t: keras.ops.softmax(t))(scores)
    for head in (softmax, keras.layers.Dropout(0.5)(keras.layers.Softmax()(scores))):
        model = keras.Model(images, head)
        assert train.compile_model(model).loss.get_config()["from_logits"] is False
        assert zoo.export._output_kind(model, model.outputs[0], zoo.export._reading_sample(
            (8, 8, 1))) == "probabilities"
    doubled = keras.Model(images, keras.layers.Lambda(lambda t: 2.0 * t)(scores))
    assert train.compile_model(doubled).loss.get_config()["from_logits"] is True
    # A nested model's second output is its second output layer's (its first was read:
    # features through a ReLU, so the softmax was taken as logits).
    features = keras.layers.Dense(5, activation="relu", name="features")(
        keras.layers.Flatten()(images))
    inner = keras.Model(images, [features, keras.layers.Dense(3, activation="softmax")(
        features)], name="inner")
    outer = keras.Input((8, 8, 1))
    second = keras.Model(outer, inner(outer)[1])
    assert train.compile_model(second).loss.get_config()["from_logits"] is False
    assert zoo.export._output_activation(second.outputs[0]) == "softmax"
    assert zoo.export._output_activation(keras.Model(outer, inner(outer)[0]).outputs[0]) \
        == "relu"



def test_compile_model_refuses_one_output_unit():
    # One sigmoid unit: its sparse cross-entropy failed at the first batch holding class 1.
    for task, model in (("classification", tiny_classifier(num_classes=1, activation="sigmoid")),
                        ("segmentation", zoo.unet(input_shape=(16, 16, 3), num_classes=1,
                                                  output_activation="sigmoid", padding="same",
                                                  depth=1, base_filters=2))):
        with pytest.raises(ValueError, match=r"one output per class .* give the head 2 "
                                             r"units. Received: output shape \(None, "):
            train.compile_model(model, task)


def test_jit_compile_auto_means_gpu_only():
    import tensorflow as tf
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert train.resolve_jit_compile("auto") is has_gpu
    assert train.resolve_jit_compile(True) is True and train.resolve_jit_compile(False) is False
    assert train.compile_model(tiny_classifier()).jit_compile is has_gpu
    assert train.compile_model(tiny_classifier(), jit_compile=True).jit_compile is True
    with pytest.raises(ValueError, match=r"'auto', True or False. Received: jit_compile='yes'$"):
        train.resolve_jit_compile("yes")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train.compile_model(tiny_classifier(), optimizer="adamm")
    with pytest.raises(ValueError, match="task must be one of"):
        train.compile_model(tiny_classifier(), "detection")


def test_gpus_hidden_from_tensorflow_count_as_none(monkeypatch):
    # tf.config.set_visible_devices([], "GPU") (TensorFlow's way to run on the CPU) hides
    # the GPUs from computation but not from list_physical_devices: "auto" turned XLA on and
    # picked float16 for a CPU run, and the serving and kernel choices took it for a GPU.
    import tensorflow as tf
    import zoo.layers
    from zoo import serving
    gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    physical = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: [gpu] if kind == "GPU" else physical(kind))
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda device: {"compute_capability": (8, 0)})
    visible = []
    monkeypatch.setattr(tf.config, "get_visible_devices",
                        lambda kind=None: list(visible) if kind == "GPU" else [])
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: False)
    zoo.layers._tensorflow_on_cpu.cache_clear()
    try:
        assert train.resolve_jit_compile("auto") is False
        assert train.resolve_mixed_precision("auto") is None
        assert zoo.layers._tensorflow_on_cpu() is True
        assert serving._gpu_visible() is False
        visible.append(gpu)      # the same GPU left visible: it counts
        zoo.layers._tensorflow_on_cpu.cache_clear()
        assert train.resolve_jit_compile("auto") is True
        assert train.resolve_mixed_precision("auto") == "mixed_float16"
        assert zoo.layers._tensorflow_on_cpu() is False
        assert serving._gpu_visible() is True
    finally:
        zoo.layers._tensorflow_on_cpu.cache_clear()


def test_jit_compile_auto_is_off_under_a_strategy(digits8, tmp_path, monkeypatch):
    # With several GPUs fit trains under a MirroredStrategy, and "auto" turned XLA on
    # there: XLA cannot compile Keras' train step over mirrored variables ("Trying to
    # access resource ... located in device CPU:1 from device CPU:0" on two logical CPUs),
    # so every such run failed its first step and fell back. Keras' own "auto" turns XLA
    # off under tf.distribute; so does the zoo's.
    import tensorflow as tf
    import zoo.common
    import zoo.layers
    gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    monkeypatch.setattr(zoo.common, "visible_gpus", lambda: [gpu])
    zoo.layers._tensorflow_on_cpu.cache_clear()
    try:
        strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
        assert train.resolve_jit_compile("auto") is True
        assert train.resolve_jit_compile("auto", strategy=strategy) is False
        assert train.resolve_jit_compile(True, strategy=strategy) is True   # asked for
        with strategy.scope():
            assert train.resolve_jit_compile("auto") is False
            assert train.compile_model(tiny_classifier()).jit_compile is False
        monkeypatch.setattr(train, "_gpu_strategy", lambda: strategy)
        train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(tmp_path), verbose=0,
                  mixed_precision="off")
        info = json.loads((tmp_path / "info.json").read_text())
        assert info["settings"]["jit_compile"] is False
        assert train.fit.last_model.jit_compile is False
    finally:
        zoo.layers._tensorflow_on_cpu.cache_clear()


def test_mixed_precision_keeps_float32_outputs():
    m = train._rebuild(tiny_classifier(), "mixed_float16")
    assert m.get_layer("conv").compute_dtype == "float16"
    assert m.get_layer("conv").variable_dtype == "float32"
    assert m.get_layer("predictions").compute_dtype == "float32"
    assert m(np.zeros((1, 8, 8, 1), "float32")).dtype == "float32"


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_model_built_under_a_global_mixed_policy_trains_with_float32_outputs(
        policy, digits8, tmp_path):
    # Keras' recipe for GPUs sets the policy globally before building, so the output
    # layer computes in float16 too; training's rebuild left it so (float16 probabilities
    # into the loss; under mixed_bfloat16 a float16 softmax).
    model = built_under_global_policy("mixed_float16", tiny_classifier)
    m = train._rebuild(model, policy)
    assert m.get_layer("predictions").dtype_policy.name == "float32"
    assert m.get_layer("conv").dtype_policy.name == policy
    train.fit(model, small(digits8), epochs=1, run_dir=str(tmp_path), verbose=0,
              mixed_precision=policy.replace("mixed_", ""), jit_compile=False)
    assert train.fit.last_model.outputs[0].dtype == "float32"
    assert train.fit.last_model.get_layer("predictions").compute_dtype == "float32"


def test_with_mixed_precision_gives_fits_policy(monkeypatch):
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [])
    model = tiny_classifier()
    x = np.random.RandomState(0).rand(2, 8, 8, 1).astype("float32")
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: True)
    mixed, policy = train.with_mixed_precision(model)
    assert policy == "mixed_bfloat16" and mixed is not model
    assert mixed.get_layer("conv").compute_dtype == "bfloat16"
    assert mixed.get_layer("predictions").compute_dtype == "float32"
    assert all(np.array_equal(a, b) for a, b in zip(mixed.get_weights(), model.get_weights()))
    np.testing.assert_allclose(mixed(x), model(x), atol=2e-2)     # bfloat16 rounding
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: False)
    assert train.with_mixed_precision(model) == (model, None)      # float32: the model itself
    same, policy = train.with_mixed_precision(model, "float16")
    assert policy == "mixed_float16" and same.get_layer("conv").compute_dtype == "float16"
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        train.with_mixed_precision(model, "int8")


def test_resolve_mixed_precision(monkeypatch):
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: False)
    assert train.resolve_mixed_precision() is None                  # CPU: float32
    assert train.resolve_mixed_precision("bfloat16") == "mixed_bfloat16"
    assert train.resolve_mixed_precision("float16") == "mixed_float16"
    assert train.resolve_mixed_precision(True) == "mixed_float16"
    assert train.resolve_mixed_precision(False) is None
    assert train.resolve_mixed_precision("off") is None
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [(8, 0), (7, 5)])
    assert train.resolve_mixed_precision("auto") == "mixed_float16"   # tensor cores
    assert train.resolve_mixed_precision("off") is None
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [(8, 0), (6, 1)])
    assert train.resolve_mixed_precision("auto") is None               # one GPU without
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: True)
    assert train.resolve_mixed_precision("auto") is None               # GPUs decide
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [])
    assert train.resolve_mixed_precision("auto") == "mixed_bfloat16"   # AMX, AMD AVX512_BF16
    assert train.resolve_mixed_precision() == "mixed_bfloat16"
    assert train.resolve_mixed_precision("off") is None
    assert train.resolve_mixed_precision("float16") == "mixed_float16"
    with pytest.raises(ValueError, match=r"mixed_precision must be one of \('auto', 'off', "
                                         r"'float16', 'bfloat16'\).*Received: "
                                         r"mixed_precision='fp16'"):
        train.resolve_mixed_precision("fp16")


def test_auto_precision_weighs_the_model_and_its_input_size(monkeypatch):
    # Xception trained 0.76x as fast in bfloat16 as in float32 at 32x32 on both CPUs
    # measured, 1.02x at 40 (benchmarks item 31): "auto" picks float32 below 40x40 there.
    from zoo.registry import list_models, model_info
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: True)
    assert model_info("xception").bfloat16_min_input_size == 40
    assert {m: model_info(m).bfloat16_min_input_size for m in list_models()
            if model_info(m).bfloat16_min_input_size} == {"xception": 40}
    resolve = train.resolve_mixed_precision
    assert resolve("auto", models="xception", input_shape=(32, 32, 3)) is None
    assert resolve("auto", models="xception", input_shape=(39, 64, 3)) is None  # smaller side
    assert resolve("auto", models="xception", input_shape=(40, 40, 3)) == "mixed_bfloat16"
    assert resolve("auto", models="resnet50", input_shape=(32, 32, 3)) == "mixed_bfloat16"
    # a search space: float32 only where every model it builds is slower in bfloat16
    assert resolve("auto", models=("xception",), input_shape=(32, 32, 1)) is None
    assert resolve("auto", models=("xception", "resnet50"),
                   input_shape=(32, 32, 3)) == "mixed_bfloat16"
    # unknown models, no size, an unknown size: the CPU alone decides
    assert resolve("auto", models="mine", input_shape=(32, 32, 3)) == "mixed_bfloat16"
    assert resolve("auto", models="xception") == "mixed_bfloat16"
    assert resolve("auto", models="xception", input_shape=(None, None, 3)) == "mixed_bfloat16"
    assert resolve("auto", models=(), input_shape=(32, 32, 3)) == "mixed_bfloat16"
    # asked for, bfloat16 it is; GPUs and CPUs without bfloat16 as before
    assert resolve("bfloat16", models="xception", input_shape=(32, 32, 3)) == "mixed_bfloat16"
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: False)
    assert resolve("auto", models="xception", input_shape=(96, 96, 3)) is None
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [(8, 0)])
    assert resolve("auto", models="xception", input_shape=(32, 32, 3)) == "mixed_float16"


def test_fit_and_with_mixed_precision_train_small_xceptions_in_float32(digits8, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: True)
    small_x = zoo.xception(input_shape=(32, 32, 3), num_classes=10)
    assert train.with_mixed_precision(small_x) == (small_x, None)
    big, policy = train.with_mixed_precision(zoo.xception(input_shape=(40, 40, 3),
                                                          num_classes=10))
    assert policy == "mixed_bfloat16" and big.get_layer("block1_conv1").compute_dtype == \
        "bfloat16"
    # zoo train xception on 8x8 digits: float32, recorded as such
    train.fit("xception", digits8, epochs=1, run_dir=str(tmp_path / "x"), verbose=0)
    info = json.loads((tmp_path / "x" / "info.json").read_text())
    assert info["settings"]["mixed_precision"] is None
    # a run named xception of another model: the model itself decides, not the run name
    train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(tmp_path / "t"), verbose=0,
              model_name="xception")
    info = json.loads((tmp_path / "t" / "info.json").read_text())
    assert info["settings"]["mixed_precision"] == "mixed_bfloat16"


def test_float16_compute_gets_loss_scaling():
    model = train.compile_model(train._rebuild(tiny_classifier(), "mixed_float16"))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    for policy in (None, "mixed_bfloat16"):      # bfloat16 has float32's range: no scaling
        model = train.compile_model(train._rebuild(tiny_classifier(), policy))
        assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


# --- fit ------------------------------------------------------------------------------

def test_fit_writes_the_run_directory(digits8, tmp_path):
    import warnings
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = train.fit(tiny_classifier(), digits8, epochs=2, run_dir=str(run),
                            verbose=0, learning_rate=0.01, model_name="tiny")
    # The pipeline shuffles; Keras warns when fit is left with shuffle=True on a dataset.
    assert not [str(w.message) for w in caught if "shuffle" in str(w.message)]
    for f in ("model.keras", "info.json", "metrics.json", "history.csv",
              "learning_curves.png"):
        assert (run / f).is_file(), f
    assert os.listdir(run / "logs")                      # TensorBoard
    assert not (run / "backup").exists()                 # removed after a finished run
    assert list(history["epoch"]) == [0, 1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.columns)
    metrics = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "info.json").read_text())
    assert info["model"] == "tiny" and info["task"] == "classification"
    assert data.DatasetInfo.from_dict(info["dataset"]) == digits8.info
    assert info["metrics"]["test_accuracy"] == metrics["test_accuracy"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["epochs"] == 2
    # The saved model is the trained one and evaluates to the recorded test metrics.
    loaded = keras.saving.load_model(run / "model.keras")
    got = loaded.evaluate(digits8.test, verbose=0, return_dict=True)
    assert got["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    png = (run / "learning_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("precision,policy,dtype",
                         [("bfloat16", "mixed_bfloat16", "bfloat16"),
                          ("float16", "mixed_float16", "float16")])
def test_fit_mixed_precision(digits8, tmp_path, precision, policy, dtype):
    history = train.fit(tiny_classifier(), small(digits8), epochs=2, run_dir=str(tmp_path),
                        verbose=0, learning_rate=0.01, mixed_precision=precision,
                        jit_compile=False)
    assert np.isfinite(history["loss"]).all() and len(history) == 2
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["settings"]["mixed_precision"] == policy
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.get_layer("conv").compute_dtype == dtype
    assert loaded.get_layer("conv").variable_dtype == "float32"
    assert loaded.get_layer("predictions").compute_dtype == "float32"
    out = loaded.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0)
    assert out.dtype == np.float32 and np.allclose(out.sum(-1), 1, atol=1e-3)


@pytest.mark.parametrize("precision", ["off", "bfloat16", "float16"])
def test_compile_false_trains_and_records_the_models_own_compilation(precision, digits8,
                                                                     tmp_path):
    # Under a mixed policy (the default on tensor-core GPUs and on CPUs with AMX) or a
    # strategy (several GPUs) fit trains a rebuilt copy, which compile=False left
    # uncompiled: "You must call `compile()` before using the model"; and info.json said
    # adam at 1e-3 for a model compiled with SGD(0.05).
    model = tiny_classifier()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    run = tmp_path / "run"
    history = train.fit(model, small(digits8), epochs=1, run_dir=str(run), verbose=0,
                        compile=False, mixed_precision=precision, jit_compile=False)
    assert np.isfinite(history["loss"]).all() and "accuracy" in history.columns
    trained = train.fit.last_model
    assert (trained is model) == (precision == "off")
    if precision != "off":
        assert trained.get_layer("conv").compute_dtype == precision
        assert trained.optimizer is not model.optimizer
    opt = trained.optimizer
    if precision == "float16":     # float16 gradients get loss scaling, as compile_model's
        assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
        opt = opt.inner_optimizer
    assert isinstance(opt, keras.optimizers.SGD)
    assert float(opt.learning_rate.numpy()) == pytest.approx(0.05)
    settings = json.loads((run / "info.json").read_text())["settings"]
    assert (settings["optimizer"], settings["learning_rate"]) == ("SGD", pytest.approx(0.05))


class _Killed(Exception):
    pass


class _KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):     # after BackupAndRestore saved the epoch
        raise _Killed()


def test_a_killed_run_resumes_under_the_precision_it_started_with(digits8, tmp_path,
                                                                  monkeypatch):
    # Started under auto = bfloat16 (an AMX CPU, say), resumed where auto means float32
    # (another machine, or another zoo version): the run keeps bfloat16.
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: True)
    run = tmp_path / "run"
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(), small(digits8), epochs=3, run_dir=str(run), verbose=0,
                  callbacks=[_KillAfterFirstEpoch()])
    state = json.loads((run / "backup" / "zoo_run.json").read_text())
    assert {k: state[k] for k in ("mixed_precision", "model", "dataset")} == {
        "mixed_precision": "mixed_bfloat16", "model": "tiny", "dataset": "digits"}
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: False)
    with pytest.raises(ValueError, match=r"holds a killed run that trained under "
                                         r"mixed_bfloat16; resume it with mixed_precision="
                                         r"'bfloat16' .*Received: mixed_precision='off'"):
        train.fit(tiny_classifier(), small(digits8), epochs=3, run_dir=str(run), verbose=0,
                  mixed_precision="off")
    history = train.fit(tiny_classifier(), small(digits8), epochs=3, run_dir=str(run),
                        verbose=0)
    assert list(history["epoch"]) == [0, 1, 2]          # resumed after epoch 0
    info = json.loads((run / "info.json").read_text())
    assert info["settings"]["mixed_precision"] == "mixed_bfloat16"
    assert not (run / "backup").exists()
    # A new run in the same directory follows auto again.
    train.fit(tiny_classifier(), small(digits8), epochs=1, run_dir=str(run), verbose=0)
    assert json.loads((run / "info.json").read_text())["settings"]["mixed_precision"] is None


@pytest.mark.parametrize("amx,policy,dtype", [(True, "mixed_bfloat16", "bfloat16"),
                                              (False, None, "float32")])
def test_fit_auto_precision_on_cpus(digits8, tmp_path, monkeypatch, amx, policy, dtype):
    # The default: bfloat16 compute on CPUs with AMX or AMD ones with AVX512_BF16, float32
    # on others.
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: amx)
    train.fit(tiny_classifier(), small(digits8), epochs=1, run_dir=str(tmp_path), verbose=0,
              jit_compile=False)
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["settings"]["mixed_precision"] == policy
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.get_layer("conv").compute_dtype == dtype
    assert loaded.get_layer("predictions").compute_dtype == "float32"


@pytest.mark.parametrize("precision,policy", [("auto", None), ("bfloat16", "mixed_bfloat16")])
def test_zoo_train_cli_trains_exports_and_reports(tmp_path, capsys, monkeypatch, precision,
                                                   policy):
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: False)   # auto -> float32
    run = tmp_path / "run"
    # The LiteRT model is made unless --no-lite says otherwise (its conversion is the
    # export's slowest part).
    no_lite = ["--no-lite"] if policy else []
    assert zoo_main(["train", "lenet5", "--epochs", "1", "--run-dir", str(run), "--quiet",
                     "--mixed-precision", precision, "--export", *no_lite,
                     "--base-dir", str(tmp_path / "models")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    metrics = json.loads((run / "metrics.json").read_text())
    assert line.startswith(f"lenet5 on digits: test accuracy {metrics['test_accuracy']:.4f} "
                           f"after 1 epoch, ")
    assert f", {policy or 'float32'}), run dir {run}, exported to " in line
    info = json.loads((run / "info.json").read_text())
    assert info["settings"]["mixed_precision"] == policy
    assert info["settings"]["batch_size"] == 32      # zoo train's (it said null)
    exported = line.rsplit("exported to ", 1)[1]
    assert exported == str(tmp_path / "models" / "lenet5" / "1")
    assert (tmp_path / "models" / "lenet5" / "1" / "saved_model.pb").is_file()
    lite = tmp_path / "models" / "lenet5" / "1" / "assets" / "serving_default.tflite"
    assert lite.is_file() is not no_lite


def test_zoo_train_says_when_the_test_score_is_on_the_validation_split(tmp_path, capsys):
    """A folder without test/ has its validation split serve as test: the summary line's
    test accuracy was printed as any other, on the split that chose the model."""
    from PIL import Image
    for split, names in (("train", ("dark", "light")), ("train_and_test", ("black", "white"))):
        root = tmp_path / split
        for label, value in zip(names, (40, 200)):
            for part in ("train", "test") if split == "train_and_test" else ("train",):
                (root / part / label).mkdir(parents=True)
                for i in range(6):
                    Image.fromarray(np.full((8, 8), value + i, "uint8")).save(
                        root / part / label / f"{i}.png")
        assert zoo_main(["train", "lenet5", "--dataset", str(root), "--epochs", "1",
                         "--run-dir", str(tmp_path / f"run-{split}"), "--quiet",
                         "--image-size", "32,32", "--export", "--no-xla",
                         "--base-dir", str(tmp_path / "models")]) == 0
        out, err = capsys.readouterr()
        line = out.strip().splitlines()[-1]
        # The second export has other classes than the first, which it replaces: noted.
        assert ("zoo train: note: " in err) is (split != "train")
        if split != "train":
            assert (f"zoo train: note: {tmp_path / 'models' / 'lenet5'} version 2 answers with "
                    f"other classes than version 1") in err
        info = json.loads((tmp_path / f"run-{split}" / "info.json").read_text())
        alone = split == "train"
        assert info["dataset"]["test_is_validation"] is alone
        assert (" (on the validation split: the dataset has no test split) after 1 epoch, "
                in line) is alone
        assert re.match(rf"lenet5 on {re.escape(str(root))}: test accuracy \d\.\d{{4}}"
                        rf"( \(on the validation split: the dataset has no test split\))? "
                        rf"after 1 epoch, ", line)


def test_zoo_train_exports_in_the_precision_asked(tmp_path, capsys):
    run, models = tmp_path / "run", tmp_path / "models"
    assert zoo_main(["train", "lenet5", "--epochs", "1", "--run-dir", str(run), "--quiet",
                     "--mixed-precision", "off", "--export", "--export-precision", "float16",
                     "--base-dir", str(models)]) == 0
    record = json.loads((models / "lenet5" / "1" / "assets" / "zoo.json").read_text())
    assert record["precision"] == "float16"
    assert json.loads((run / "info.json").read_text())["settings"]["mixed_precision"] is None
    # without --export it is refused before anything is trained or written
    other = tmp_path / "other"
    assert zoo_main(["train", "lenet5", "--epochs", "1", "--run-dir", str(other),
                     "--export-precision", "bfloat16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--export-precision bfloat16 goes with --export" in err
    assert not other.exists()


@pytest.mark.parametrize("argv, message", [
    (["--patience", "3"], "--patience 3 goes with early stopping, which lenet5 on digits "
                          "trains without by default (its whole schedule): add "
                          "--early-stopping"),
    (["--no-early-stopping", "--patience", "3"], "--patience 3 goes with early stopping, "
                                                 "which --no-early-stopping turns off"),
    (["--base-dir", "models"], "--base-dir models goes with --export"),
    (["--no-lite"], "--no-lite goes with --export (or export later: zoo export RUN_DIR "
                    "--no-lite)"),
])
def test_zoo_train_refuses_an_option_it_would_ignore(argv, message, tmp_path, capsys):
    # Before, the run trained without early stopping or export, exit code 0.
    run = tmp_path / "run"
    assert zoo_main(["train", "lenet5", "--epochs", "1", "--run-dir", str(run), "--quiet",
                     *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not run.exists() and not (tmp_path / "models").exists()


def test_zoo_train_refuses_an_empty_base_dir_before_training(tmp_path, capsys, monkeypatch):
    # It trained and exported to saved_models, as if no --base-dir had been given
    monkeypatch.chdir(tmp_path)
    assert zoo_main(["train", "lenet5", "--epochs", "1", "--run-dir", "run", "--quiet",
                     "--export", "--base-dir", ""]) == 2
    err = capsys.readouterr().err
    assert err == ("zoo: error: base_dir must be a directory path (a non-empty str or "
                   "os.PathLike; '.' for the current directory). Received: base_dir=''\n")
    assert os.listdir(tmp_path) == []


def test_zoo_train_passes_patience_to_early_stopping(tmp_path, capsys, monkeypatch):
    seen = []

    def quick_fit(model, splits, *, epochs, run_dir, **kwargs):   # the run files `zoo train` reads
        seen.append((kwargs["early_stopping"], kwargs["patience"]))
        os.makedirs(run_dir, exist_ok=True)   # zoo train holds it, made
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump({"test_accuracy": 0.5, "train_seconds": 1.0}, f)
        with open(os.path.join(run_dir, "info.json"), "w") as f:
            json.dump({"settings": {"mixed_precision": None}}, f)
        return pd.DataFrame({"epoch": range(epochs)})
    monkeypatch.setattr(train, "fit", quick_fit)
    for i, argv in enumerate((["--early-stopping", "--patience", "3"], ["--early-stopping"],
                              [])):
        assert zoo_main(["train", "lenet5", "--epochs", "1", "--quiet",
                         "--run-dir", str(tmp_path / f"run{i}"), *argv]) == 0
    assert seen == [(True, 3), (True, 8), (False, None)]


def test_zoo_train_says_epoch_for_one_and_epochs_for_more(tmp_path, capsys, monkeypatch):
    def quick_fit(model, splits, *, epochs, run_dir, **kwargs):   # the run files `zoo train` reads
        os.makedirs(run_dir, exist_ok=True)   # zoo train holds it, made
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump({"test_accuracy": 0.5, "train_seconds": 1.0}, f)
        with open(os.path.join(run_dir, "info.json"), "w") as f:
            json.dump({"settings": {"mixed_precision": None}}, f)
        quick_fit.last_run_dir = run_dir
        return pd.DataFrame({"epoch": range(epochs)})
    monkeypatch.setattr(train, "fit", quick_fit)
    for epochs, said in ((1, "after 1 epoch, "), (2, "after 2 epochs, ")):
        assert zoo_main(["train", "lenet5", "--epochs", str(epochs), "--run-dir",
                         str(tmp_path / f"run{epochs}"), "--quiet"]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert line.startswith(f"lenet5 on digits: test accuracy 0.5000 {said}")


_DETERMINISTIC_XLA = """
import json, sys
import tensorflow as tf
import zoo, zoo.common
from zoo import data, train
from zoo.cli import main
tf.config.experimental.enable_op_determinism()
gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
zoo.common.visible_gpus = lambda: [gpu]
auto = train.resolve_jit_compile("auto")
zoo.common.visible_gpus = lambda: []
s = data.load_splits("digits", image_size=(32, 32), batch_size=32, augment=False)
small = data.Splits(s.train.take(2), s.validation.take(1), s.test.take(1), s.info)
# (deterministic=True with jit_compile=True is refused; here the process turned it on)
train.fit(train.compile_model(zoo.lenet5(), jit_compile=False), small,
          epochs=1, run_dir=sys.argv[1], verbose=0, jit_compile=True)
info = json.load(open(sys.argv[1] + "/info.json"))
xla = [auto, info["settings"]["jit_compile"], train.fit.last_model.jit_compile]
# then, in the same process, the first of test_deterministic_runs_repeat_bit_for_bit's runs
code = main(["train", "lenet5", "--epochs", "3", "--deterministic", "--quiet", "--run-dir",
             sys.argv[2]])
print(json.dumps({"xla": xla, "train": code}))
"""


@pytest.fixture(scope="module")
def deterministic_process(tmp_path_factory):
    """One process with op determinism on (it cannot be turned off, so not this one): the
    XLA check of test_op_determinism_turns_xla_off_and_the_run_says_so, then a
    ``zoo train lenet5 --deterministic`` run that test_deterministic_runs_repeat_bit_for_bit
    repeats in a process of its own. Returns the script's result and the run's directory."""
    tmp = tmp_path_factory.mktemp("deterministic")
    r = subprocess.run([sys.executable, "-c", _DETERMINISTIC_XLA, str(tmp / "xla"),
                        str(tmp / "a")], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), tmp / "a"


def test_deterministic_runs_repeat_bit_for_bit(deterministic_process, tmp_path):
    # Op determinism is process-wide and cannot be turned off: each run in its own process,
    # the first in deterministic_process's (after its XLA check's small fit there), the
    # second in a fresh `python -m zoo train`.
    def read(run_dir):
        return (pd.read_csv(run_dir / "history.csv"),
                json.loads((run_dir / "metrics.json").read_text()),
                json.loads((run_dir / "info.json").read_text()))

    out, first = deterministic_process
    assert out["train"] == 0
    r = subprocess.run([sys.executable, "-m", "zoo", "train", "lenet5", "--epochs", "3",
                        "--deterministic", "--quiet", "--run-dir", str(tmp_path / "b")],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    (h1, m1, i1), (h2, m2, i2) = read(first), read(tmp_path / "b")
    assert i1["settings"]["deterministic"] is True
    assert len(h1) == 3
    for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert list(h1[column]) == list(h2[column]), column
    assert m1["test_accuracy"] == m2["test_accuracy"]


def test_the_readme_s_fit_call_is_zoo_train_lenet5(deterministic_process, tmp_path):
    """README (Training): ``zoo train lenet5`` is ``train.fit("lenet5", "digits",
    learning_rate=2e-3, lr_schedule="cosine", early_stopping=False, ...)``, bit for bit under
    op determinism (3 epochs here). It showed ``fit(lenet5(), ...)``, whose model, built
    before fit seeds Keras, starts from other initial weights."""
    run = tmp_path / "c"
    code = (f"from zoo import train\n"
            f"train.fit('lenet5', 'digits', epochs=3, learning_rate=2e-3, lr_schedule='cosine', "
            f"early_stopping=False, run_dir={str(run)!r}, verbose=0, deterministic=True)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    first = deterministic_process[1]
    pd.testing.assert_frame_equal(pd.read_csv(run / "history.csv"),
                                  pd.read_csv(first / "history.csv"))
    info, cli_info = (json.loads((d / "info.json").read_text()) for d in (run, first))
    assert info["settings"] == cli_info["settings"]
    assert info["metrics"].pop("train_seconds") > 0 < cli_info["metrics"].pop("train_seconds")
    assert info["metrics"] == cli_info["metrics"]
    for got, want in zip(zoo.load_model(str(run)).get_weights(),
                         zoo.load_model(str(first)).get_weights()):
        np.testing.assert_array_equal(got, want)


def test_op_determinism_turns_xla_off_and_the_run_says_so(deterministic_process):
    # Keras compiles without XLA where op determinism is on (not every op has a
    # deterministic XLA kernel): "auto" picked XLA on a GPU anyway (Keras then warned
    # "Model doesn't support jit_compile=True") and info.json recorded XLA for a run that
    # trained without it. In a process of its own: determinism cannot be turned off.
    assert deterministic_process[0]["xla"] == [False, False, False]


class _Scale(keras.layers.Layer):
    """A custom layer with a required argument and no get_config, not registered with Keras:
    Keras cannot rebuild it."""

    def __init__(self, factor, name=None):
        super().__init__(name=name)
        self.factor = factor

    def call(self, x):
        return x * self.factor


def test_auto_precision_falls_back_to_float32_for_models_keras_cannot_rebuild(
        digits8, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: True)   # auto -> bfloat16

    def model():
        return scaled_model()

    with pytest.warns(UserWarning, match=r"mixed_precision='auto' chose mixed_bfloat16 but "
                                         r".* cannot be rebuilt under it .*training in float32"):
        history = train.fit(model(), small(digits8), epochs=1, run_dir=str(tmp_path / "a"),
                            verbose=0, jit_compile=False)
    assert len(history) == 1
    info = json.loads((tmp_path / "a" / "info.json").read_text())
    assert info["settings"]["mixed_precision"] is None
    with pytest.raises(ValueError) as e:      # asked for explicitly: no silent fallback
        train.fit(model(), small(digits8), epochs=1, run_dir=str(tmp_path / "b"), verbose=0,
                  jit_compile=False, mixed_precision="bfloat16")
    assert str(e.value) == _cannot_rebuild("mixed_bfloat16")
    assert not (tmp_path / "b").exists()


def scaled_model(nested=False):
    """A classifier with an unregistered custom layer (``_Scale``), in a nested backbone
    with ``nested``."""
    inputs = keras.Input((8, 8, 1), name="images")
    x = keras.layers.Conv2D(4, 3, name="conv")(_Scale(0.5, name="scale")(inputs))
    if nested:
        x = keras.Model(inputs, x, name="backbone")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax",
                                                  name="predictions")(x), name="scaled")


def _cannot_rebuild(precision, tail=", or train or export in float32 (mixed_precision='off', "
                                   "precision='float32')"):
    return (f"precision {precision!r} needs a copy of model 'scaled' rebuilt from its config, "
            f"and layer class _Scale could not be rebuilt (Keras cannot locate a class not "
            f"registered with it): register the class with "
            f"@keras.saving.register_keras_serializable() (with a get_config() that returns "
            f"its __init__ arguments){tail}. Received: layer 'scale' of class _Scale")


def test_rebuild_names_the_layer_class_keras_cannot_rebuild(tmp_path):
    # the one re-typing (train._rebuild) of with_mixed_precision, fit and the export
    from zoo.export import export
    for nested in (False, True):
        with pytest.raises(ValueError) as e:
            train.with_mixed_precision(scaled_model(nested), "bfloat16")
        assert str(e.value) == _cannot_rebuild("mixed_bfloat16")
    with pytest.raises(ValueError) as e:
        export(scaled_model(), base_dir=tmp_path / "models", precision="bfloat16", lite=False)
    assert str(e.value) == _cannot_rebuild("bfloat16")
    # A Lambda layer: what to write instead (Keras' own reason spoke of loading a file with
    # safe_mode=False, and the fix of registering the class Lambda).
    inputs = keras.Input((8, 8, 1), name="images")
    halved = keras.layers.Lambda(lambda t: 0.5 * t, name="halve")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(halved))
    lam = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled), name="lam")
    with pytest.raises(ValueError) as e:
        export(lam, base_dir=tmp_path / "models", precision="float16", lite=False)
    assert str(e.value) == (
        "precision 'float16' needs a copy of model 'lam' rebuilt from its config, and layer "
        "class Lambda could not be rebuilt (Keras rebuilds no Lambda layer's Python function "
        "from a config): write the function as a layer class registered with "
        "@keras.saving.register_keras_serializable(), or train or export in float32 "
        "(mixed_precision='off', precision='float32'). Received: layer 'halve' of class Lambda")
    assert not (tmp_path / "models").exists()
    assert not (tmp_path / "models" / "scaled").exists()
    with pytest.raises(ValueError) as e:     # float32 is no way out of a float32 re-typing
        train._rebuild(scaled_model(), "float32", keep_outputs=False)
    assert str(e.value) == _cannot_rebuild("float32", tail="")
    # models whose outputs Keras does not define cannot be rebuilt from a config
    rebuilt = ("precision 'mixed_bfloat16' needs a copy of the model rebuilt from its config, "
               "which takes keras.Models whose outputs are defined: functional models, and "
               "Sequential models built with an input shape (keras.Input first, or "
               "model.build(input_shape)). Received: ")
    with pytest.raises(ValueError) as e:
        train.with_mixed_precision(subclassed_model("sub"), "bfloat16")
    assert str(e.value) == rebuilt + "subclassed model 'sub' (class Subclassed)"
    with pytest.raises(ValueError) as e:
        train.with_mixed_precision(keras.Sequential([keras.layers.Dense(2)], name="seq"),
                                   "bfloat16")
    assert str(e.value) == rebuilt + "Sequential model 'seq', not built yet"


def test_with_mixed_precision_refuses_what_is_not_a_model():
    with pytest.raises(ValueError) as e:
        train.with_mixed_precision("lenet5")
    assert str(e.value) == ("with_mixed_precision takes a keras.Model (a registered model: "
                            "build it first, zoo.get_model('lenet5')). Received: "
                            "model='lenet5'")
    with pytest.raises(ValueError) as e:
        train.with_mixed_precision(None, "auto")
    assert str(e.value) == "with_mixed_precision takes a keras.Model. Received: model=None"
    with pytest.raises(ValueError) as e:
        train.with_mixed_precision(np.zeros((1, 8, 8, 1)), "off")
    assert str(e.value) == ("with_mixed_precision takes a keras.Model. Received: "
                            "model=ndarray object")


_BAD_MODELS = ("models must be None, a model name or a list or tuple of model names. "
               "Received: models=")
_BAD_SHAPE = ("input_shape must be None or the (H, W, ...) of the images: a tuple of at least "
              "two positive integers (None for a size not known). Received: input_shape=")


@pytest.mark.parametrize("gpus,bf16", [([], True), ([], False), ([(8, 0)], False)],
                         ids=["cpu-bfloat16", "cpu-float32", "gpu"])
def test_resolve_mixed_precision_checks_models_and_input_shape(monkeypatch, gpus, bf16):
    # checked whatever decides (the CPU, the GPUs, an explicit value), not only where the
    # model and its size are weighed
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: gpus)
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: bf16)
    resolve = train.resolve_mixed_precision
    bad = [({"models": 5}, _BAD_MODELS + "5"),
           ({"models": [["xception"]]}, _BAD_MODELS + "[['xception']]"),
           ({"models": {"xception"}}, _BAD_MODELS + "{'xception'}"),
           ({"models": ("xception", None)}, _BAD_MODELS + "('xception', None)"),
           ({"input_shape": 32}, _BAD_SHAPE + "32"),
           ({"input_shape": ()}, _BAD_SHAPE + "()"),
           ({"input_shape": (32,)}, _BAD_SHAPE + "(32,)"),
           ({"input_shape": ("a", "b", 3)}, _BAD_SHAPE + "('a', 'b', 3)"),
           ({"input_shape": "32x32"}, _BAD_SHAPE + "'32x32'"),
           ({"input_shape": (-5, -5, 3)}, _BAD_SHAPE + "(-5, -5, 3)"),
           ({"input_shape": (0, 0, 3)}, _BAD_SHAPE + "(0, 0, 3)"),
           ({"input_shape": (32.5, 32, 3)}, _BAD_SHAPE + "(32.5, 32, 3)"),
           ({"input_shape": (True, 32, 3)}, _BAD_SHAPE + "(True, 32, 3)"),
           ({"input_shape": (32, 32, 0)}, _BAD_SHAPE + "(32, 32, 0)")]
    for value in ("auto", "bfloat16", "off"):
        for kwargs, message in bad:
            with pytest.raises(ValueError) as e:
                resolve(value, **{"models": "xception", "input_shape": (32, 32, 3), **kwargs})
            assert str(e.value) == message, (value, kwargs)
    with pytest.raises(ValueError) as e:
        resolve(np.array(["auto", "off"]))
    assert str(e.value) == ("mixed_precision must be one of ('auto', 'off', 'float16', "
                            "'bfloat16') (or True/False). Received: "
                            "mixed_precision=array(['auto', 'off'], dtype='<U4')")
    # the ways fit, with_mixed_precision and tuning call it keep working
    auto = "mixed_float16" if gpus else "mixed_bfloat16" if bf16 else None
    small_xception = None if not gpus else auto
    assert resolve("auto", models=("xception",), input_shape=[32, 32, 3]) == small_xception
    assert resolve("auto", models=["xception"], input_shape=(np.int64(32), 32, 3)) == \
        small_xception
    assert resolve("auto", models="xception", input_shape=(None, 32, 3)) == auto
    assert resolve("auto", models=(), input_shape=(32, 32)) == auto
    assert resolve("auto", models=None, input_shape=None) == auto
    # a model without an image input: no (H, W) to weigh; the CPU or the GPUs decide
    for shape in ((), (3,)):
        inputs = keras.Input(shape, name="x")
        flat = keras.layers.Reshape((-1,))(inputs)
        model = keras.Model(inputs, keras.layers.Dense(2, name="out")(flat), name="xception")
        assert train.with_mixed_precision(model, "auto")[1] == auto


def test_mixed_precision_cli_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:       # argparse's one-line error
        zoo_main(["train", "lenet5", "--mixed-precision", "fp8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "--mixed-precision" in err and "'fp8'" in err and "'bfloat16'" in err


def test_fit_segmentation(tmp_path):
    s = small(data.load_splits("shapes", image_size=(16, 16), batch_size=16, augment=True), 2)
    history = train.fit(tiny_segmenter(), s, epochs=1, run_dir=str(tmp_path), verbose=0,
                        jit_compile=False)
    assert {"mean_iou", "val_mean_iou", "accuracy"} <= set(history.columns)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["test_mean_iou"] <= 1.0
    loaded = keras.saving.load_model(tmp_path / "model.keras")   # custom loss deserialises
    assert isinstance(loaded.loss, train.CrossEntropyDiceLoss)


def test_a_segmenter_with_unpadded_convolutions_trains_on_the_masks_centres(tmp_path):
    s = small(data.load_splits("shapes", image_size=(16, 16), batch_size=16, augment=True), 2)
    inputs = keras.Input((16, 16, 3), name="images")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    outputs = keras.layers.Conv2D(4, 3, activation="softmax", name="mask")(x)
    model = keras.Model(inputs, outputs, name="unpadded")
    assert model.output_shape[1:3] == (12, 12)
    train.fit(model, s, epochs=1, run_dir=str(tmp_path), verbose=0, jit_compile=False,
              mixed_precision="off")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    x, y = data.to_arrays(s.test)
    got = model.evaluate(x, y[:, 2:14, 2:14], verbose=0, return_dict=True)
    assert metrics["test_accuracy"] == pytest.approx(got["accuracy"], abs=1e-6)
    assert metrics["test_loss"] == pytest.approx(got["loss"], rel=1e-5)


def test_fit_by_name_builds_for_the_dataset(tmp_path):
    s = small(data.load_splits("digits", image_size=(32, 32), batch_size=32), 1)
    train.fit("lenet5", s, epochs=1, run_dir=str(tmp_path), verbose=0, early_stopping=False,
              jit_compile=False)
    model = train.fit.last_model
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 10)
    assert json.loads((tmp_path / "info.json").read_text())["model"] == "lenet5"


def test_fit_on_data_of_unknown_length_warns_of_nothing(digits8, tmp_path):
    # Keras says "Your input ran out of data" at the end of the first epoch over data of
    # unknown length: that is how the epoch ends there, not a fault.
    import warnings
    uncounted = data.Splits(digits8.train.filter(lambda x, y: True),
                            digits8.validation.filter(lambda x, y: True), digits8.test,
                            digits8.info)
    assert int(uncounted.train.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train.fit(tiny_classifier(input_shape=(8, 8, 1)), uncounted, epochs=2,
                  run_dir=str(tmp_path), verbose=0, jit_compile=False, early_stopping=False)
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [0, 1]
    assert [str(w.message)[:40] for w in caught if "ran out of data" in str(w.message)] == []


def test_labels_outside_num_classes(digits8, tmp_path):
    with pytest.raises(ValueError, match="labels outside num_classes.*has 10 classes but "
                                         "the model outputs 5"):
        train.fit(tiny_classifier(num_classes=5), digits8, epochs=1, run_dir=str(tmp_path),
                  verbose=0)
    # A binary classifier's one sigmoid unit: fit's losses take one output per class (the
    # message said to build the model with num_classes=2, which a sigmoid head refuses).
    two = data.Splits(digits8.train, digits8.validation, digits8.test, data.DatasetInfo.from_dict(
        {**digits8.info.to_dict(), "name": "pets", "num_classes": 2, "labels": ["cat", "dog"]}))
    with pytest.raises(ValueError) as e:
        train.fit(tiny_classifier(num_classes=1, activation="sigmoid"), two, epochs=1,
                  run_dir=str(tmp_path), verbose=0)
    assert str(e.value) == (
        "labels outside num_classes: dataset 'pets' has 2 classes but the model outputs 1. "
        "fit trains one output per class (a softmax or logits over them), not one sigmoid "
        "unit or logit for P(class 1), which only the export and serving read: give the head "
        "2 units.")
    # Data whose info claims fewer classes than its labels use: caught in the pipeline.
    info = data.DatasetInfo.from_dict({**digits8.info.to_dict(), "num_classes": 5,
                                       "labels": list("01234")})
    lying = data.Splits(digits8.train, digits8.validation, digits8.test, info)
    with pytest.raises(ValueError, match="labels outside num_classes.*0..4"):
        train.fit(tiny_classifier(num_classes=5), lying, epochs=1, run_dir=str(tmp_path),
                  verbose=0, jit_compile=False)
    # Only one label past the last class: 9 for the 9 outputs of classes 0..8.
    info = data.DatasetInfo.from_dict({**digits8.info.to_dict(), "num_classes": 9,
                                       "labels": list("012345678")})
    lying = data.Splits(digits8.train, digits8.validation, digits8.test, info)
    with pytest.raises(ValueError, match=r"labels outside num_classes.*0\.\.8; found 9$"):
        train.fit(tiny_classifier(num_classes=9), lying, epochs=1, run_dir=str(tmp_path),
                  verbose=0, jit_compile=False)


def test_image_size_below_model_minimum(capsys):
    _, info = data.load("digits", image_size=(16, 16))
    with pytest.raises(ValueError, match="must be at least 32.*Received: input_shape=.16, 16, 1"):
        train.build_for_dataset("lenet5", info)
    assert zoo_main(["train", "lenet5", "--image-size", "16,16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: lenet5: input height and width must be at least 32")
    assert "\n" not in err
    s = small(data.load_splits("digits", image_size=(8, 8)), 1)
    with pytest.raises(ValueError, match="input shape .9, 9, 1. does not match the dataset's "
                                         "input shape .8, 8, 1."):
        train.fit(tiny_classifier((9, 9, 1)), s, epochs=1, verbose=0,
                  run_dir="/nonexistent/never")


@keras.saving.register_keras_serializable(package="zoo_tests")
class PyIdentity(keras.layers.Layer):
    """An op XLA cannot compile (a Python function in the graph)."""

    def call(self, x):
        y = tf.py_function(lambda t: t, [x], x.dtype)
        y.set_shape(x.shape)
        return y


def test_xla_failure_falls_back(digits8, tmp_path, capsys):
    inputs = keras.Input((8, 8, 1), name="images")
    x = PyIdentity(name="py")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="out")(x))
    history = train.fit(model, small(digits8, 1), epochs=1, run_dir=str(tmp_path), verbose=1,
                        jit_compile=True)
    assert len(history) == 1
    assert "training without XLA" in capsys.readouterr().out
    assert json.loads((tmp_path / "info.json").read_text())["settings"]["jit_compile"] is False


def test_an_xla_failure_after_an_epoch_is_not_retried_without_xla(digits8, tmp_path, capsys):
    # An epoch trained: the model compiles with XLA, and the failure is another one.
    class FailOnce(keras.callbacks.Callback):
        failed = False

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1 and not FailOnce.failed:
                FailOnce.failed = True
                raise tf.errors.InvalidArgumentError(None, None, "XLA compilation failed")
    with pytest.raises(tf.errors.InvalidArgumentError, match="XLA compilation failed"):
        train.fit(tiny_classifier(), small(digits8, 1), epochs=2, run_dir=str(tmp_path / "r"),
                  verbose=1, jit_compile=True, mixed_precision="off", callbacks=[FailOnce()])
    assert "training without XLA" not in capsys.readouterr().out


# --- resume after kill -9 -------------------------------------------------------------

RESUME_SCRIPT = textwrap.dedent("""
    import os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    from zoo import data, train
    run_dir, marker, slow = sys.argv[1], sys.argv[2], sys.argv[3] == "slow"

    class Mark(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            with open(marker, "a") as f:
                f.write(f"{epoch}\\n")
        def on_epoch_end(self, epoch, logs=None):
            if slow:
                time.sleep(1.0)

    s = data.load_splits("digits", image_size=(8, 8), batch_size=64)
    s = data.Splits(s.train.take(2), s.validation.take(1), s.test.take(1), s.info)
    inputs = keras.Input((8, 8, 1), name="images")
    x = keras.layers.Flatten(name="flat")(inputs)
    # Named: the run records its model's name, and a Keras default name ("functional_8")
    # counts the models made before in the process (the resume runs in pytest's).
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="out")(x),
                        name="linear")
    train.fit(model, s, epochs=6, run_dir=run_dir, verbose=0, early_stopping=False,
              callbacks=[Mark()])
""")


def test_killed_run_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    run, marker = tmp_path / "run", tmp_path / "epochs.txt"
    proc = subprocess.Popen([sys.executable, str(script), str(run), str(marker), "slow"])
    history = run / "history.csv"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 3:  # 2 epochs
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(pd.read_csv(history))
    assert 2 <= done_before < 6
    assert (run / "backup").is_dir()
    started_before = [int(v) for v in marker.read_text().split()]
    # The resume reads only what the killed process left on disk: it runs in this process
    # (one TensorFlow start-up fewer).
    monkeypatch.setattr(sys, "argv", [str(script), str(run), str(marker), "fast"])
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")     # restored after; the script sets it
    runpy.run_path(str(script), run_name="__main__")
    started = [int(v) for v in marker.read_text().split()]
    resumed_at = started[len(started_before)]
    # It did not start again at epoch 0. history.csv is written before the epoch's backup:
    # a kill between the two leaves one epoch more in it, which is trained again.
    assert resumed_at >= done_before - 1 >= 1
    assert started[len(started_before):] == list(range(resumed_at, 6))
    epochs = list(pd.read_csv(history)["epoch"])
    assert epochs[-1] == 5 and epochs == sorted(epochs) and len(set(epochs)) == len(epochs)
    assert (run / "model.keras").is_file() and not (run / "backup").exists()


@pytest.mark.parametrize("flags,expected", [("fpu avx2 avx512f avx512_bf16 fma", True),
                                            ("fpu avx2 amx_bf16 amx_tile", True),
                                            ("fpu avx2 avx512f fma", False)])
def test_cpu_has_bfloat16(tmp_path, flags, expected):
    from zoo.common import cpu_has_amx_bfloat16, cpu_has_bfloat16
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
    assert cpu_has_bfloat16(str(info)) is expected
    assert cpu_has_amx_bfloat16(str(info)) is ("amx_bf16" in flags.split())
    assert cpu_has_bfloat16(str(tmp_path / "missing")) is False
    assert cpu_has_amx_bfloat16(str(tmp_path / "missing")) is False


@pytest.mark.parametrize("vendor,flags,expected", [
    ("AuthenticAMD", "fpu avx2 avx512f avx512_bf16 fma", True),    # AMD EPYC (Zen 4)
    ("GenuineIntel", "fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile", True),
    ("GenuineIntel", "fpu avx2 avx512f avx512_bf16 avx512_fp16", False),  # no AMX exposed
    ("AuthenticAMD", "fpu avx2 fma", False),                         # emulated bfloat16
    ("", "fpu avx2 avx512f avx512_bf16", False)])
def test_cpu_prefers_bfloat16(tmp_path, vendor, flags, expected):
    from zoo.common import cpu_prefers_bfloat16, cpu_vendor
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: 25\n"
                    f"flags\t\t: {flags}\n\nprocessor\t: 1\nvendor_id\t: {vendor}\n")
    assert cpu_vendor(str(info)) == vendor
    assert cpu_prefers_bfloat16(str(info)) is expected
    assert cpu_vendor(str(tmp_path / "missing")) == ""
    assert cpu_prefers_bfloat16(str(tmp_path / "missing")) is False


@pytest.mark.parametrize("patience", [-1, 1.5, True, "8"])
def test_fit_checks_patience_before_any_work(patience):
    from zoo.train import fit
    with pytest.raises(ValueError, match=f"patience must be a non-negative integer. "
                                         f"Received: patience={patience!r}"):
        fit("lenet5", "digits", patience=patience)


def test_fit_refuses_patience_without_early_stopping(digits8, tmp_path):
    # Before, fit(early_stopping=False, patience=3) trained its whole schedule, patience unused.
    with pytest.raises(ValueError, match=r"^patience goes with early stopping, which "
                       r"early_stopping=False turns off. Received: patience=3, "
                       r"early_stopping=False$"):
        train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(tmp_path / "r"),
                  early_stopping=False, patience=3)
    assert not (tmp_path / "r").exists()


# --- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    (dict(learning_rate=float("nan")), "learning_rate must be a positive finite number. "
                                       "Received: learning_rate=nan"),
    (dict(learning_rate=float("inf")), "Received: learning_rate=inf"),
    (dict(learning_rate=0), "Received: learning_rate=0"),
    (dict(label_smoothing=2), r"label_smoothing must be a number in \[0, 1\). "
                              r"Received: label_smoothing=2"),
    (dict(label_smoothing=-0.1), "Received: label_smoothing=-0.1"),
    (dict(label_smoothing=1.0), "Received: label_smoothing=1.0"),
    (dict(weight_decay=-1e-4), r"weight_decay must be None or a finite number >= 0. "
                               r"Received: weight_decay=-0.0001"),
    (dict(weight_decay=float("nan")), "Received: weight_decay=nan"),
    (dict(clip_norm=0), r"clip_norm must be None or a finite number > 0 \(the largest global "
                        r"norm of a step's gradients\). Received: clip_norm=0")])
def test_fit_refuses_bad_numbers_before_any_work(kwargs, message, tmp_path, monkeypatch):
    run, loaded = tmp_path / "run", []
    with monkeypatch.context() as patch:
        patch.setattr(data, "load_splits", lambda *a, **k: loaded.append(1))
        with pytest.raises(ValueError, match=message):
            train.fit("lenet5", "digits", epochs=1, run_dir=str(run), verbose=0, **kwargs)
    assert not run.exists() and loaded == []     # nothing loaded or written
    with pytest.raises(ValueError, match=message):
        train.compile_model(tiny_classifier(), optimizer="adamw", **kwargs)


def test_zoo_train_refuses_a_learning_rate_that_is_not_a_positive_finite_number(capsys):
    for lr in ("nan", "inf", "0", "-1e-3", "fast"):
        with pytest.raises(SystemExit) as exit_info:
            zoo_main(["train", "lenet5", f"--lr={lr}"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err
        assert err.endswith(f"argument --lr: expected a positive finite learning rate; "
                            f"received '{lr}'")


def test_zoo_train_weight_decay_and_label_smoothing_options(tmp_path, capsys, monkeypatch):
    # They were fit's only: a search's best (weight decay and label smoothing among its
    # hyperparameters) could not be trained again from the command line.
    run = tmp_path / "run"
    assert zoo_main(["train", "lenet5", "--epochs", "1", "--quiet", "--mixed-precision", "off",
                     "--weight-decay", "1e-3", "--label-smoothing", "0.1",
                     "--run-dir", str(run)]) == 0
    settings = json.loads((run / "info.json").read_text())["settings"]
    assert (settings["weight_decay"], settings["label_smoothing"]) == (1e-3, 0.1)
    model = zoo.load_model(str(run))
    assert isinstance(model.loss, train.SparseSmoothedCrossEntropy)
    assert model.loss.label_smoothing == pytest.approx(0.1)
    assert model.optimizer.weight_decay == pytest.approx(1e-3)
    capsys.readouterr()
    # their defaults: none, as fit's
    seen = fit_arguments(monkeypatch)
    assert zoo_main(["train", "lenet5", "--epochs", "1"]) == 1
    assert (seen["weight_decay"], seen["label_smoothing"]) == (None, 0.0)
    capsys.readouterr()
    # bad values: argparse's one line
    for flag, value, expected in (("--weight-decay", "-1e-4", "a finite weight decay >= 0"),
                                  ("--weight-decay", "inf", "a finite weight decay >= 0"),
                                  ("--label-smoothing", "1", "a label smoothing in [0, 1)"),
                                  ("--label-smoothing", "-0.1", "a label smoothing in [0, 1)"),
                                  ("--label-smoothing", "some", "a label smoothing in [0, 1)")):
        with pytest.raises(SystemExit) as exit_info:
            zoo_main(["train", "lenet5", f"{flag}={value}"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.endswith(
            f"argument {flag}: expected {expected}; received '{value}'")
    # label smoothing is refused for segmentation (its loss has none), before any loading
    monkeypatch.setattr(data, "load_splits", lambda *a, **kw: pytest.fail("loaded"))
    assert zoo_main(["train", "unet", "--label-smoothing", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err == (
        "zoo: error: label_smoothing is for classification, and model 'unet' is for "
        "segmentation: its loss (cross-entropy + soft Dice, CrossEntropyDiceLoss) has no "
        "label smoothing (it would change nothing). Received: label_smoothing=0.1")


def test_label_smoothing_is_refused_for_segmentation(tmp_path, monkeypatch):
    # It was ignored: the segmentation loss has none.
    message = (r"^label_smoothing is for classification, and {} is for segmentation: its "
               r"loss \(cross-entropy \+ soft Dice, CrossEntropyDiceLoss\) has no label "
               r"smoothing \(it would change nothing\)\. Received: label_smoothing=0\.2$")
    with pytest.raises(ValueError, match=message.format(r"the model \(task='segmentation'\)")):
        train.compile_model(tiny_segmenter(), "segmentation", label_smoothing=0.2)
    assert train.compile_model(tiny_segmenter(), "segmentation", label_smoothing=0.0).loss
    monkeypatch.setattr(data, "load_splits", lambda *a, **kw: pytest.fail("loaded"))
    run = tmp_path / "run"
    for model, name in ((tiny_segmenter(), "tiny_seg"), ("unet", "unet")):
        with pytest.raises(ValueError, match=message.format(f"model '{name}'")):
            train.fit(model, "shapes", epochs=1, run_dir=str(run), verbose=0,
                      label_smoothing=0.2)
    assert not run.exists()


def test_fit_refuses_a_dataset_for_another_task(tmp_path):
    from zoo import lenet5
    with pytest.raises(ValueError, match="lenet5 is a classification model but dataset "
                                         "'shapes' is for segmentation"):
        train.fit(lenet5(), "shapes", epochs=1, run_dir=str(tmp_path / "a"), verbose=0)
    digits = small(data.load_splits("digits", image_size=(16, 16), channels=3), 1)
    with pytest.raises(ValueError, match="tiny_seg is a segmentation model but dataset "
                                         "'digits' is for classification"):
        train.fit(tiny_segmenter(), digits, epochs=1, run_dir=str(tmp_path / "b"), verbose=0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_run_directory_of_another_model_or_dataset_is_refused(digits8, tmp_path):
    run = tmp_path / "run"
    train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run), verbose=0,
              jit_compile=False)
    files = {f: (run / f).read_bytes() for f in ("model.keras", "info.json", "history.csv")}
    logs = sorted(p.name for p in (run / "logs").rglob("*"))
    with pytest.raises(ValueError, match=f"{run} holds a finished run of tiny on digits, not "
                                         f"of other on digits as asked; use another run "
                                         r"directory \(run_dir, --run-dir\)"):
        train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run), verbose=0,
                  model_name="other")
    renamed = data.DatasetInfo.from_dict({**digits8.info.to_dict(), "name": "folder:/x"})
    with pytest.raises(ValueError, match="holds a finished run of tiny on digits, not of "
                                         "tiny on folder:/x"):
        train.fit(tiny_classifier(), data.Splits(digits8.train.take(1), digits8.validation,
                                                 digits8.test, renamed),
                  epochs=1, run_dir=str(run), verbose=0)
    assert {f: (run / f).read_bytes() for f in files} == files      # untouched
    assert sorted(p.name for p in (run / "logs").rglob("*")) == logs
    # A killed run is kept for its own model only.
    killed = tmp_path / "killed"
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(), small(digits8), epochs=3, run_dir=str(killed),
                  verbose=0, jit_compile=False, callbacks=[_KillAfterFirstEpoch()])
    with pytest.raises(ValueError, match="holds a killed run of tiny on digits, not of other"):
        train.fit(tiny_classifier(), small(digits8), epochs=3, run_dir=str(killed),
                  verbose=0, model_name="other")
    history = train.fit(tiny_classifier(), small(digits8), epochs=3, run_dir=str(killed),
                        verbose=0, jit_compile=False)
    assert list(history["epoch"]) == [0, 1, 2]          # resumed after epoch 0


def _files(run):
    """The files under ``run`` and their contents."""
    return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}


class _CtrlC(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        raise KeyboardInterrupt


def test_a_new_run_stopped_in_a_finished_runs_directory_leaves_no_run_that_looks_finished(
        digits8, tmp_path, monkeypatch):
    """A new run in a finished run's directory removed that run's best checkpoint and
    emptied its history.csv as it began, but kept its info.json, model.keras, metrics.json
    and plot: killed before its first epoch ended, it left what looked like a finished run
    with an empty history. The new run sets the old one's files aside first (info.json
    first), puts them back when it is stopped (Ctrl-C), and removes them once it trained."""
    run = tmp_path / "run"
    train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run), verbose=0,
              jit_compile=False)
    assert (run / "info.json").is_file() and (run / "logs" / "train").is_dir()
    (run / "notes.txt").write_text("mine")
    finished = _files(run)
    with pytest.raises(KeyboardInterrupt):      # stopped: the finished run comes back
        train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run),
                  verbose=0, jit_compile=False, callbacks=[_CtrlC()])
    assert _files(run) == finished
    # killed (kill -9: no clean-up runs): no finished-looking run is left in the directory
    monkeypatch.setattr(train, "_abandon_run_dir", lambda *args, **kwargs: None)
    with pytest.raises(KeyboardInterrupt):
        train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run),
                  verbose=0, jit_compile=False, callbacks=[_CtrlC()])
    monkeypatch.undo()
    left = sorted(os.listdir(run))
    assert not {"info.json", "model.keras", "metrics.json"} & set(left), left
    assert [n for n in left if n.startswith(".previous-")], left
    history = train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run),
                        verbose=0, jit_compile=False)
    assert list(history["epoch"]) == [0]
    assert sorted(os.listdir(run)) == ["checkpoints", "history.csv", "info.json",
                                       "learning_curves.png", "logs", "metrics.json",
                                       "model.keras", "notes.txt"]
    assert len(os.listdir(run / "logs" / "train")) == 1     # this run's events only


def test_a_finished_run_set_aside_by_a_killed_run_comes_back_or_is_guarded(
        digits8, tmp_path, monkeypatch):
    """A fresh run killed (kill -9) before its first epoch was backed up left the finished
    run it replaced in a hidden .previous-* folder. The next fresh run there set the killed
    run's files aside on top and, failing too, put those back: the finished run stayed
    hidden for good; and with info.json hidden, a run of another model was not refused and,
    trained, removed the finished run."""
    run = tmp_path / "run"
    train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run), verbose=0,
              jit_compile=False)
    finished = _files(run)
    monkeypatch.setattr(train, "_abandon_run_dir", lambda *args, **kwargs: None)  # kill -9
    with pytest.raises(KeyboardInterrupt):
        train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run),
                  verbose=0, jit_compile=False, callbacks=[_CtrlC()])
    monkeypatch.undo()
    assert not (run / "info.json").exists()
    with pytest.raises(ValueError, match="holds a finished run of tiny on digits, not of other"):
        train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run),
                  verbose=0, model_name="other", jit_compile=False)
    assert _files(run) == finished
    with pytest.raises(KeyboardInterrupt):      # the same command, stopped again
        train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run),
                  verbose=0, jit_compile=False, callbacks=[_CtrlC()])
    assert _files(run) == finished
    assert not [n for n in os.listdir(run) if n.startswith(".previous-")]


def test_a_fresh_run_sets_aside_only_a_finished_runs_files(digits8, tmp_path):
    """Only a finished run (its info.json) is set aside by a fresh run in its directory, and
    removed once that run trained; in a directory that holds none, the files of the user's
    own under the names of a run's (a logs/ folder of other notes) were set aside too, and
    removed with it."""
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "mine.txt").write_text("mine")
    train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run), verbose=0,
              jit_compile=False)
    assert (run / "logs" / "mine.txt").read_text() == "mine"
    assert (run / "info.json").is_file() and (run / "logs" / "train").is_dir()
    assert not [n for n in os.listdir(run) if n.startswith(".previous-")]


def test_a_test_split_label_outside_the_classes_is_named_in_one_line(tmp_path, digits8):
    # Train and validation are fine; the test split's first label is 12 for a 10-class model:
    # found when the best model is scored, after training, and said as for the other splits.
    import tensorflow as tf

    def twelve(x, y):
        return x, tf.tensor_scatter_nd_update(y, [[0]], tf.constant([12], y.dtype))
    lying = data.Splits(digits8.train, digits8.validation, digits8.test.map(twelve),
                        digits8.info)
    run = tmp_path / "run"
    with pytest.raises(ValueError) as exc_info:
        train.fit(tiny_classifier(), lying, epochs=1, run_dir=str(run), verbose=0,
                  jit_compile=False)
    assert str(exc_info.value) == ("labels outside num_classes: the model has 10 outputs, so "
                                   "labels must be in 0..9; found 12")
    # The trained model stays (a failure after training keeps it); no run is written as done.
    assert (run / "checkpoints" / "best.keras").exists()
    assert not (run / "metrics.json").exists() and not (run / "model.keras").exists()


def test_an_optimizer_instance_trains_and_is_recorded_at_its_learning_rate(digits8, tmp_path):
    # fit's learning_rate is for a named optimizer. Before, info.json recorded it (1e-3) for
    # SGD(0.05), and the cosine schedule started from it instead of 0.05.
    class Rates(keras.callbacks.Callback):   # the rate each epoch trained at
        def on_epoch_end(self, epoch, logs=None):
            seen.append(float(self.model.optimizer.learning_rate))

    # (Not fit.last_model's rate: it holds the best epoch's optimizer state, the first
    # epoch's when the second did not improve.)
    for schedule, rates in (("constant", [0.05, 0.05]), ("cosine", [0.05, 0.025])):
        run, seen = tmp_path / schedule, []
        history = train.fit(tiny_classifier(), digits8, epochs=2, run_dir=str(run), verbose=0,
                            jit_compile=False, mixed_precision="off", lr_schedule=schedule,
                            optimizer=keras.optimizers.SGD(0.05), callbacks=[Rates()])
        assert seen == pytest.approx(rates)
        # history.csv records them (Keras' scheduler sets the rate without logging it)
        assert history["learning_rate"].tolist() == pytest.approx(rates)
        assert pd.read_csv(run / "history.csv")["learning_rate"].tolist() == pytest.approx(rates)
        settings = json.loads((run / "info.json").read_text())["settings"]
        assert (settings["optimizer"], settings["learning_rate"]) == ("SGD", pytest.approx(0.05))
    # an optimizer with a schedule of its own: recorded by the schedule's class; no second
    # schedule on top of it
    decay = keras.optimizers.schedules.ExponentialDecay(0.05, 10, 0.9)
    train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(tmp_path / "own"), verbose=0,
              jit_compile=False, mixed_precision="off", optimizer=keras.optimizers.SGD(decay))
    settings = json.loads((tmp_path / "own" / "info.json").read_text())["settings"]
    assert settings["learning_rate"] == "ExponentialDecay"
    # its rate at the epoch's end: 0.05 * 0.9 ** (steps / 10)
    steps = len(list(digits8.train))
    rate = pd.read_csv(tmp_path / "own" / "history.csv")["learning_rate"]
    assert rate.tolist() == pytest.approx([0.05 * 0.9 ** (steps / 10)])
    with pytest.raises(ValueError, match=r"^lr_schedule='cosine' sets the learning rate of "
                       r"every epoch, and the optimizer has a schedule of its own "
                       r"\(ExponentialDecay\)"):
        train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(tmp_path / "both"),
                  lr_schedule="cosine", optimizer=keras.optimizers.SGD(decay))
    assert not (tmp_path / "both").exists()


def test_compile_false_needs_a_compiled_model(digits8, tmp_path):
    for model in (tiny_classifier(), "lenet5"):
        with pytest.raises(ValueError, match=r"^compile=False trains with the model's own "
                           r"compilation, and .* is not compiled: compile it first, or leave "
                           r"compile=True"):
            train.fit(model, digits8, epochs=1, run_dir=str(tmp_path / "run"), compile=False)
        assert not (tmp_path / "run").exists()


def test_info_json_records_the_batch_size_the_data_has(tmp_path, digits8):
    # A Splits of one's own batches itself (fit's batch_size is not used): info.json said 32.
    train.fit(tiny_classifier(), digits8, epochs=1, batch_size=7, run_dir=str(tmp_path / "a"),
              verbose=0, jit_compile=False)
    settings = json.loads((tmp_path / "a" / "info.json").read_text())["settings"]
    assert settings["batch_size"] is None
    fixed = data.Splits(digits8.train.unbatch().batch(5, drop_remainder=True),
                        digits8.validation, digits8.test, digits8.info)
    train.fit(tiny_classifier(), fixed, epochs=1, run_dir=str(tmp_path / "b"), verbose=0,
              jit_compile=False)
    assert json.loads((tmp_path / "b" / "info.json").read_text())["settings"][
        "batch_size"] == 5
    # load_splits' batch size, which the last, smaller batch hides from the pipeline's shape
    loaded = data.load_splits("digits", image_size=(8, 8), batch_size=48)
    assert loaded.batch_size == 48
    train.fit(tiny_classifier(), loaded, epochs=1, batch_size=7, run_dir=str(tmp_path / "c"),
              verbose=0, jit_compile=False)
    assert json.loads((tmp_path / "c" / "info.json").read_text())["settings"][
        "batch_size"] == 48


def test_a_failed_run_leaves_no_half_written_run_directory(tmp_path, capsys):
    # Masks outside the labels: caught in the pipeline during the first epoch.
    s = small(data.load_splits("shapes", image_size=(16, 16), batch_size=16), 1)
    info = data.DatasetInfo.from_dict({**s.info.to_dict(), "num_classes": 3,
                                       "labels": s.info.labels[:3]})
    lying = data.Splits(s.train, s.validation, s.test, info)
    run = tmp_path / "run"
    with pytest.raises(ValueError) as exc_info:
        train.fit(tiny_segmenter(num_classes=3), lying, epochs=1, run_dir=str(run),
                  verbose=0, jit_compile=False)
    assert str(exc_info.value) == ("labels outside num_classes: the model has 3 outputs, so "
                                   "mask values must be in 0..2; found 3")
    assert not run.exists()
    # In a directory that was there before, only what the failed run created goes.
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="mask values must be in 0..2"):
        train.fit(tiny_segmenter(num_classes=3), lying, epochs=1, run_dir=str(run),
                  verbose=0, jit_compile=False)
    assert os.listdir(run) == ["notes.txt"]
    # From the command line: a segmentation folder whose masks exceed labels.txt.
    root = tmp_path / "seg"
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    from PIL import Image
    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), 60 * i, "uint8")).save(root / "images" / f"{i}.png")
        Image.fromarray(np.full((16, 16), i % 3, "uint8")).save(root / "masks" / f"{i}.png")
    (root / "labels.txt").write_text("background\ncell\n")
    assert zoo_main(["train", "unet", "--dataset", f"folder:{root}", "--epochs", "1",
                     "--run-dir", str(tmp_path / "cli"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("zoo: error: Mask ")
    assert "holds class 2" in err and "mask values must be in 0..1" in err
    assert not (tmp_path / "cli").exists()


def test_a_failed_fresh_run_in_a_finished_runs_directory_leaves_that_run_as_it_was(
        digits8, tmp_path):
    # Before, the finished run lost its checkpoints/best.keras, its history.csv held the
    # failed run's epoch under the finished run's info.json, and logs/ the failed run's events.
    run = tmp_path / "run"
    train.fit(tiny_classifier(), digits8, epochs=2, run_dir=str(run), verbose=0,
              jit_compile=False)
    finished = _files(run)
    assert "checkpoints/best.keras" in finished and len(finished["history.csv"].splitlines()) == 3
    with pytest.raises(ValueError, match="monitor 'val_nope' is not logged by this run"):
        train.fit(tiny_classifier(), digits8, epochs=2, run_dir=str(run), verbose=0,
                  jit_compile=False, monitor="val_nope")   # fails at the end of epoch 1
    assert _files(run) == finished
    assert sorted(p.name for p in run.iterdir()) == sorted(
        {name.split("/")[0] for name in finished})
    # a fresh run that succeeds replaces it, leaving nothing of the set-aside files
    train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(run), verbose=0,
              jit_compile=False)
    assert len((run / "history.csv").read_text().splitlines()) == 2
    assert (run / "checkpoints" / "best.keras").is_file()
    assert sorted(p.name for p in run.iterdir()) == sorted(
        {name.split("/")[0] for name in finished})


def test_a_failure_after_training_keeps_the_trained_model(digits8, tmp_path, monkeypatch):
    """Only a run that failed before any epoch's weights were saved is removed: a failure in
    the test evaluation keeps the checkpoint the epochs wrote."""
    fit = keras.Model.fit

    def fit_then_break_evaluate(self, *args, **kwargs):
        history = fit(self, *args, **kwargs)   # validation inside fit runs as usual

        def broken_evaluate(*args, **kwargs):
            raise RuntimeError("evaluation failed")
        self.evaluate = broken_evaluate
        return history
    monkeypatch.setattr(keras.Model, "fit", fit_then_break_evaluate)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="evaluation failed"):
        train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(run), verbose=0,
                  model_name="tiny")
    assert (run / "checkpoints" / "best.keras").is_file()


def test_an_image_that_cannot_be_decoded_is_a_clear_error(tmp_path, capsys):
    from PIL import Image
    root = tmp_path / "photos"
    for split, n in (("train", 6), ("test", 2)):
        for k, label in enumerate(("a", "b")):
            os.makedirs(root / split / label)
            for i in range(n):
                Image.fromarray(np.full((8, 8), 100 * k + i, "uint8")).save(
                    root / split / label / f"{i}.png")
    png = (root / "test" / "b" / "1.png").read_bytes()
    (root / "test" / "b" / "1.png").write_bytes(png[:len(png) // 2])   # truncated
    run = tmp_path / "run"
    assert zoo_main(["train", "lenet5", "--dataset", f"folder:{root}", "--epochs", "1",
                     "--batch-size", "4", "--run-dir", str(run), "--quiet"]) == 2
    # The broken file is in the test split: training finished, so the run waits to be
    # resumed (once the file is fixed, without training again), and says so first.
    resume, err = capsys.readouterr().err.strip().split("\n")
    assert resume == (f"zoo train: stopped after epoch 1 of 1; the same command with "
                      f"--run-dir {run} resumes it")
    assert "function_node" not in err
    assert err.startswith(f"zoo: error: Dataset folder '{root}': 1 image could not be "
                          "decoded (Invalid PNG")
    assert err.endswith("): 'test/b/1.png'. Remove or replace the damaged (e.g. truncated) "
                        "files.")
    # Its weights and backup are kept, but the run is not complete.
    assert (run / "checkpoints" / "best.keras").is_file() and (run / "backup").is_dir()
    assert not (run / "model.keras").exists() and not (run / "info.json").exists()


class _KillAfterEpoch(keras.callbacks.Callback):
    def __init__(self, last):
        super().__init__()
        self.last = last

    def on_epoch_end(self, epoch, logs=None):     # after the run's own callbacks saved it
        if epoch == self.last:
            raise _Killed()


@pytest.mark.parametrize("killed_after", [1, 0])
def test_a_resumed_run_keeps_its_early_stopping_state(digits8, tmp_path, killed_after):
    """Early stopping continues to count the epochs waited before the kill: a run whose
    monitored value never improves stops after `patience` epochs, resumed or not."""
    kw = dict(epochs=8, verbose=0, learning_rate=1e-30, monitor="val_accuracy", patience=2,
              mixed_precision="off", jit_compile=False)
    straight = train.fit(tiny_classifier(), digits8, run_dir=str(tmp_path / "a"), **kw)
    assert list(straight["epoch"]) == [0, 1, 2]
    run = tmp_path / "b"
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(), digits8, run_dir=str(run),
                  callbacks=[_KillAfterEpoch(killed_after)], **kw)
    resumed = train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)
    assert list(resumed["epoch"]) == [0, 1, 2]
    assert json.loads((run / "metrics.json").read_text())["best_epoch"] == 1


@pytest.mark.parametrize("length", ["known", "unknown"])
def test_a_resumed_run_reads_the_data_an_uninterrupted_run_reads(tmp_path, length):
    """A killed run, resumed in a new process (fresh pipelines), trains its remaining epochs
    on the shuffled order and the augmentation an uninterrupted run gives them, and ends bit
    for bit where that run ends. Before, the resumed epochs started the data's random
    sequence again: epoch 2 read epoch 1's order and transformations (LeNet-5 on digits,
    killed after 1 of 3 epochs: weights up to 40 apart), and dropout drew epoch 1's masks
    again (Keras' weights files leave the generators' states out). Keras makes a second
    iterator as each epoch of data of known length ends (one of unknown length: one)."""
    def model():
        inputs = keras.Input((8, 8, 1), name="images")
        x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
        x = keras.layers.Dropout(0.5, name="drop")(keras.layers.Flatten(name="flat")(x))
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x),
                           name="tiny_dropout")

    def run(path, callbacks=()):
        keras.utils.set_random_seed(0)   # the same initial weights, a new pipeline each time
        splits = data.load_splits("digits", image_size=(8, 8), batch_size=64, augment=True)
        if length == "unknown":
            splits = data.Splits(splits.train.filter(lambda x, y: True), splits.validation,
                                 splits.test, splits.info)
        return train.fit(model(), splits, run_dir=str(path), epochs=3, verbose=0,
                         early_stopping=False, mixed_precision="off", jit_compile=False,
                         callbacks=list(callbacks))

    straight = run(tmp_path / "a")
    with pytest.raises(_Killed):
        run(tmp_path / "b", [_KillAfterEpoch(1)])
    resumed = run(tmp_path / "b")
    pd.testing.assert_frame_equal(resumed, straight, check_exact=True)
    a, b = (keras.saving.load_model(tmp_path / d / "model.keras", compile=False)
            for d in ("a", "b"))
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


def test_replay_false_resumes_without_reading_the_epochs_done_again(digits8, tmp_path,
                                                                      monkeypatch):
    # (where the input pipeline limits training, reading the epochs done costs their time)
    calls = []
    real = train._replay_epochs
    monkeypatch.setattr(train, "_replay_epochs",
                        lambda ds, epochs: (calls.append(epochs), real(ds, epochs)))
    kw = dict(epochs=3, verbose=0, early_stopping=False, mixed_precision="off",
              jit_compile=False)
    for replay, want in ((True, [2]), (False, [])):
        run = tmp_path / str(replay)
        with pytest.raises(_Killed):
            train.fit(tiny_classifier(), digits8, run_dir=str(run), replay=replay,
                      callbacks=[_KillAfterEpoch(1)], **kw)
        assert calls == []           # a fresh run reads nothing again
        history = train.fit(tiny_classifier(), digits8, run_dir=str(run), replay=replay, **kw)
        assert calls == want and list(history["epoch"]) == [0, 1, 2]
        calls.clear()
    with pytest.raises(ValueError, match=r"fit: replay must be True or False. Received: "
                                         r"replay='no'"):
        train.fit(tiny_classifier(), digits8, replay="no", **kw)
    import argparse
    parser = argparse.ArgumentParser()
    train.configure_train(parser)
    assert parser.parse_args(["lenet5"]).replay is True
    assert parser.parse_args(["lenet5", "--no-replay"]).replay is False


def test_a_run_killed_before_learning_rates_were_logged_resumes_with_aligned_columns(
        digits8, tmp_path):
    # history.csv of a run started before the learning rate was logged has no such column;
    # the resumed run appends rows with it, which CSVLogger writes without a header: they
    # were one column out of line with the killed run's.
    kw = dict(epochs=3, verbose=0, learning_rate=0.01, early_stopping=False,
              mixed_precision="off", jit_compile=False)
    run = tmp_path / "run"
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(), digits8, run_dir=str(run),
                  callbacks=[_KillAfterEpoch(1)], **kw)
    old = pd.read_csv(run / "history.csv").drop(columns="learning_rate")
    old.to_csv(run / "history.csv", index=False)
    history = train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)
    on_disk = pd.read_csv(run / "history.csv")
    assert list(on_disk.columns) == ["epoch", "accuracy", "learning_rate", "loss",
                                     "val_accuracy", "val_loss"]
    assert list(on_disk["epoch"]) == list(history["epoch"]) == [0, 1, 2]
    assert on_disk["learning_rate"].isna().tolist() == [True, True, False]
    assert on_disk["learning_rate"].iloc[2] == pytest.approx(0.01)
    for column in ("accuracy", "val_accuracy"):   # each in its place: a fraction of the split
        assert on_disk[column].between(0, 1).all()
    assert (on_disk["loss"] > 1).all() and (on_disk["val_loss"] > 1).all()   # ~ln(10)


def test_plateau_schedule_divides_the_rate_by_10_after_3_epochs_without_improvement():
    model = tiny_classifier()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    # improves (best 1.0, then 0.9), 3 epochs without (0.9 again counts as none) -> 0.01;
    # 0.5 improves; 3 without -> 0.001; 3 without -> 0.0001 (1/1000 of 0.1: the lowest);
    # 3 more without (a NaN among them): stays
    values = [1.0, 0.9, 0.95, 0.9, 1.2, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9,
              float("nan"), 0.9, 0.9, 0.9]
    expected = [0.1] * 5 + [0.01] * 4 + [0.001] * 3 + [0.0001] * 5
    schedule = train.PlateauSchedule("val_loss", "min", 0.1)
    schedule.set_model(model)
    rates = []
    for epoch, value in enumerate(values):
        rates.append(float(model.optimizer.learning_rate))   # the rate the epoch trains at
        schedule.on_epoch_end(epoch, {"val_loss": value})
    assert rates == pytest.approx(expected, rel=1e-6)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4, rel=1e-6)
    # a resumed run replays the killed run's values: the same rates from any epoch on
    for k in range(1, len(values)):
        model.optimizer.learning_rate = expected[k]   # restored with the optimizer
        resumed = train.PlateauSchedule("val_loss", "min", 0.1, done=values[:k])
        resumed.set_model(model)
        for epoch in range(k, len(values)):
            assert float(model.optimizer.learning_rate) == pytest.approx(expected[epoch],
                                                                         rel=1e-6), (k, epoch)
            resumed.on_epoch_end(epoch, {"val_loss": values[epoch]})
    # a value that is no finite number is an epoch without improvement (Keras' early
    # stopping and ReduceLROnPlateau count it so), the first one included
    for values in ([1.0, float("nan"), float("inf"), float("nan")],
                   [float("nan"), float("nan"), float("nan"), 1.0]):
        model.optimizer.learning_rate = 0.1
        schedule = train.PlateauSchedule("val_loss", "min", 0.1)
        schedule.set_model(model)
        for epoch, value in enumerate(values[:3]):
            schedule.on_epoch_end(epoch, {"val_loss": value})
        lowered = float(model.optimizer.learning_rate)
        schedule.on_epoch_end(3, {"val_loss": values[3]})
        assert (lowered, float(model.optimizer.learning_rate)) == pytest.approx(
            (0.1 if values[0] == 1.0 else 0.01, 0.01))
    # an improvement starts the count again: lowered 3 epochs after the last one
    model.optimizer.learning_rate = 0.1
    schedule = train.PlateauSchedule("val_loss", "min", 0.1)
    schedule.set_model(model)
    rates = []
    for epoch, value in enumerate([1.0, 1.1, 1.1, 0.9, 1.0, 1.0, 1.0, 1.0]):
        schedule.on_epoch_end(epoch, {"val_loss": value})
        rates.append(float(model.optimizer.learning_rate))
    assert rates == pytest.approx([0.1] * 6 + [0.01] * 2, rel=1e-6)
    # "max" for accuracies: a fall is no improvement
    model.optimizer.learning_rate = 0.1
    schedule = train.PlateauSchedule("val_accuracy", "max", 0.1)
    schedule.set_model(model)
    for epoch, value in enumerate([0.5, 0.4, 0.5, 0.3]):
        schedule.on_epoch_end(epoch, {"val_accuracy": value})
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01, rel=1e-6)


def test_plateau_schedule_says_each_lowering_once_and_stops_at_the_lowest(capsys):
    # At 1e-3 the lowest rate, 1e-6, is a float32 a little above 1e-6: read back from the
    # optimizer, it is no rate to lower further.
    model = tiny_classifier()
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy")
    schedule = train.PlateauSchedule("val_loss", "min", 1e-3, verbose=1)
    schedule.set_model(model)
    for epoch in range(16):
        schedule.on_epoch_end(epoch, {"val_loss": 1.0})
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert [line.split(": ")[0] for line in lines] == ["Epoch 4", "Epoch 7", "Epoch 10"]
    assert lines[-1] == ("Epoch 10: val_loss has not improved for 3 epochs; learning rate "
                         "lowered to 1e-06")
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-6, rel=1e-6)


@pytest.mark.parametrize("killed_after", [None, 2, 3, 4])
def test_fit_plateau_schedule_lowers_the_rate_and_resumes_where_it_stood(digits8, tmp_path,
                                                                          killed_after):
    # At 1e-30 the weights do not move: val_loss never improves after the first epoch, so
    # the rate is divided by 10 at the ends of epochs 4 and 7 (from 1). A run killed just
    # before or after a division resumes with the same rates.
    kw = dict(epochs=8, verbose=0, learning_rate=1e-30, lr_schedule="plateau",
              early_stopping=False, mixed_precision="off", jit_compile=False)
    run = tmp_path / "run"
    if killed_after is not None:
        with pytest.raises(_Killed):
            train.fit(tiny_classifier(), digits8, run_dir=str(run),
                      callbacks=[_KillAfterEpoch(killed_after)], **kw)
    history = train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)
    assert list(history["epoch"]) == list(range(8))
    assert history["learning_rate"].tolist() == pytest.approx(   # (approx's abs is 1e-12)
        [1e-30] * 4 + [1e-31] * 3 + [1e-32], rel=1e-6, abs=0)
    settings = json.loads((run / "info.json").read_text())["settings"]
    assert settings["lr_schedule"] == "plateau"


def test_zoo_train_monitor_option(tmp_path, capsys, monkeypatch):
    # fit's monitor, which the command lacked: the best checkpoint, early stopping and the
    # plateau schedule watched val_loss whatever the user wanted kept.
    run = tmp_path / "run"
    assert zoo_main(["train", "lenet5", "--epochs", "3", "--quiet", "--mixed-precision", "off",
                     "--monitor", "val_accuracy", "--run-dir", str(run)]) == 0
    assert json.loads((run / "info.json").read_text())["settings"]["monitor"] == "val_accuracy"
    history = pd.read_csv(run / "history.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_epoch"] == int(history["val_accuracy"].idxmax()) + 1
    capsys.readouterr()
    seen = fit_arguments(monkeypatch)
    assert zoo_main(["train", "lenet5"]) == 1
    assert seen["monitor"] == "val_loss"
    assert zoo_main(["train", "unet", "--monitor", "val_mean_iou"]) == 1
    assert seen["monitor"] == "val_mean_iou"
    # the weighted sum a model with auxiliary classifiers minimises
    assert zoo_main(["train", "googlenet", "--model-arg", "aux_logits=true",
                     "--monitor", "val_total_loss"]) == 1
    assert seen["monitor"] == "val_total_loss"
    capsys.readouterr()
    # refused before anything is loaded, naming what the model's task logs
    monkeypatch.setattr(data, "load_splits", lambda *a, **kw: pytest.fail("loaded"))
    for model, monitor, allowed in (
            ("lenet5", "val_mean_iou", "val_loss, val_accuracy, loss, accuracy for a "
                                       "classification model"),
            ("lenet5", "val_acc", "val_loss, val_accuracy, loss, accuracy for a "
                                  "classification model"),
            ("unet", "iou", "val_loss, val_accuracy, val_mean_iou, loss, accuracy, mean_iou "
                            "for a segmentation model"),
            ("googlenet", "val_total_loss", "val_loss, val_accuracy, loss, accuracy for a "
                                            "classification model")):
        assert zoo_main(["train", model, "--monitor", monitor]) == 2
        err = capsys.readouterr().err.strip()
        # the weighted sum without auxiliary classifiers: where it is logged
        hint = (" (total_loss, the weighted sum of the losses, is logged with auxiliary "
                "classifiers: googlenet --model-arg aux_logits=true)"
                if monitor == "val_total_loss" else "")
        assert err == f"zoo: error: --monitor must be one of {allowed}. Received: --monitor " \
                      f"{monitor}{hint}"


def test_plateau_schedule_refusals(digits8, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"^lr_schedule='plateau' lowers the learning rate "
                                         r"after 3 epochs without improvement, and early "
                                         r"stopping with patience=3 would end the run first"):
        train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(run), patience=3,
                  lr_schedule="plateau")
    decay = keras.optimizers.schedules.ExponentialDecay(0.05, 10, 0.9)
    with pytest.raises(ValueError, match=r"^lr_schedule='plateau' lowers the learning rate "
                                         r"on plateaus, and the optimizer has a schedule of "
                                         r"its own \(ExponentialDecay\)"):
        train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(run),
                  lr_schedule="plateau", optimizer=keras.optimizers.SGD(decay))
    with pytest.raises(ValueError, match=r"^lr_schedule must be one of 'constant', 'cosine', "
                                         r"'plateau'\. Received: lr_schedule='step'$"):
        train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(run), lr_schedule="step")
    assert not run.exists()
    # The command names its options, and refuses before it loads any data.
    loaded = []
    with monkeypatch.context() as patch:
        patch.setattr(train.zdata, "load_splits", lambda *a, **k: loaded.append(a))
        assert zoo_main(["train", "lenet5", "--lr-schedule", "plateau", "--early-stopping",
                         "--patience", "2"]) == 2
    assert loaded == []
    assert capsys.readouterr().err == (
        "zoo: error: --lr-schedule plateau lowers the learning rate after 3 epochs without "
        "improvement, and early stopping with --patience 2 would end the run first: give "
        "--patience above 3 (default 8) or --no-early-stopping\n")
    seen = fit_arguments(monkeypatch)
    assert zoo_main(["train", "lenet5", "--lr-schedule", "plateau"]) == 1
    assert seen["lr_schedule"] == "plateau"


class _SpoilEpoch(keras.callbacks.Callback):
    """Before epoch ``spoil``: keeps the weights, then turns the classifier's scores
    around (the epoch ends far worse by loss and by accuracy)."""

    def __init__(self, spoil):
        super().__init__()
        self.spoil, self.kept = spoil, None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.spoil:
            self.kept = self.model.get_weights()
            for v in self.model.get_layer("predictions").weights:
                v.assign(-20.0 * v)


def _trained_linear(digits8):
    """A linear classifier of digits8, far better than chance."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="images")
    x = keras.layers.Flatten(name="flatten")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="linear")
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    model.fit(digits8.train.repeat(20), verbose=0, shuffle=False)
    return model


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy"])
def test_the_run_keeps_the_weights_of_its_best_epoch(digits8, tmp_path, monitor):
    # Without early stopping (zoo train lenet5 on digits) or when it never stops, the
    # best checkpoint is what the run keeps: model.keras, the test metrics, the model.
    model = _trained_linear(digits8)
    spoil = _SpoilEpoch(1)
    history = train.fit(model, digits8, epochs=2, run_dir=str(tmp_path), verbose=0,
                        learning_rate=1e-4, monitor=monitor, early_stopping=False,
                        mixed_precision="off", jit_compile=False, callbacks=[spoil])
    loss, accuracy = history["val_loss"].to_numpy(), history["val_accuracy"].to_numpy()
    assert loss[1] > loss[0] + 1 and accuracy[1] < accuracy[0] - 0.2
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1
    saved = keras.saving.load_model(tmp_path / "model.keras")
    for kept, got, trained in zip(spoil.kept, saved.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, kept)
        np.testing.assert_array_equal(trained, kept)
    got = saved.evaluate(digits8.test, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(metrics["test_loss"], rel=1e-5)


def test_a_resumed_run_keeps_the_best_epoch_of_the_killed_run(digits8, tmp_path):
    # The best checkpoint starts from the killed run's best value: a resumed epoch that is
    # worse does not replace the killed run's best epoch.
    model = _trained_linear(digits8)
    kw = dict(epochs=2, run_dir=str(tmp_path), verbose=0, learning_rate=1e-4,
              early_stopping=False, mixed_precision="off", jit_compile=False)
    with pytest.raises(_Killed):
        train.fit(model, digits8, callbacks=[_KillAfterEpoch(0)], **kw)
    best = keras.saving.load_model(tmp_path / "checkpoints" / "best.keras").get_weights()
    history = train.fit(model, digits8, callbacks=[_SpoilEpoch(1)], **kw)
    loss = history["val_loss"].to_numpy()
    assert loss[1] > loss[0] + 1
    assert json.loads((tmp_path / "metrics.json").read_text())["best_epoch"] == 1
    saved = keras.saving.load_model(tmp_path / "model.keras")
    for kept, got, trained in zip(best, saved.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, kept)
        np.testing.assert_array_equal(trained, kept)


def test_of_epochs_equally_good_the_run_keeps_the_first(digits8, tmp_path):
    # As early stopping and metrics.json's best_epoch count them: a later epoch must beat
    # the best, not equal it, to be kept. Steps of 1e-7 change the weights but no
    # prediction (at 1e-4 one validation image of 32 flipped, depending on which tests had
    # drawn augmentations from the shared pipeline before).
    model = _trained_linear(digits8)
    ends = _EpochEndWeights()
    history = train.fit(model, digits8, epochs=2, run_dir=str(tmp_path), verbose=0,
                        learning_rate=1e-7, monitor="val_accuracy", early_stopping=False,
                        mixed_precision="off", jit_compile=False, callbacks=[ends])
    assert history["val_accuracy"].iloc[0] == history["val_accuracy"].iloc[1]
    assert json.loads((tmp_path / "metrics.json").read_text())["best_epoch"] == 1
    saved = keras.saving.load_model(tmp_path / "model.keras")
    assert not np.array_equal(ends.weights[0][0], ends.weights[1][0])   # the epochs differ
    for got, first in zip(saved.get_weights(), ends.weights[0]):
        np.testing.assert_array_equal(got, first)


class _EpochEndWeights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def test_a_run_killed_between_its_history_row_and_its_backup_trains_that_epoch_again(
        digits8, tmp_path, monkeypatch):
    # history.csv is written before the epoch's backup: the resumed run drops the row of
    # the epoch it trains again, so that each epoch has one row.
    kw = dict(epochs=3, verbose=0, learning_rate=0.01, early_stopping=False,
              mixed_precision="off", jit_compile=False)
    save = train._Backup._save_model

    def killed_at_second_backup(self):
        if self._current_epoch == 2:
            raise _Killed()
        save(self)
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(train._Backup, "_save_model", killed_at_second_backup)
        with pytest.raises(_Killed):
            train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [0, 1]
    history = train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)
    assert history["epoch"].tolist() == [0, 1, 2]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3


def test_a_backup_into_a_full_disk_is_refused_before_hdf5_writes(digits8, tmp_path,
                                                                  monkeypatch):
    # HDF5 went on writing the backup into a full disk: zoo train lenet5 ended with a
    # screenful of h5py's tracebacks and a segmentation fault (exit code 139), and
    # backup/.saving.weights.h5 stayed. Refused before it starts, naming the backup.
    import collections
    import errno
    kw = dict(epochs=2, verbose=0, early_stopping=False, mixed_precision="off",
              jit_compile=False)
    statvfs = os.statvfs
    full = collections.namedtuple("statvfs", "f_bavail f_bfree f_frsize")(1, 1, 4096)
    run = tmp_path / "run"
    monkeypatch.setattr(os, "statvfs", lambda path: full if "backup" in os.fspath(path)
                        else statvfs(path))
    with pytest.raises(OSError) as info:
        train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value).startswith(f"[Errno 28] cannot write "
                                      f"{str(run / 'backup' / 'latest.weights.h5')!r}: No "
                                      f"space left on device (it needs about ")
    assert os.listdir(run / "backup") == ["zoo_run.json"]
    monkeypatch.setattr(os, "statvfs", statvfs)   # room again: the run starts afresh
    assert train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)["epoch"].tolist() == [
        0, 1]


def test_a_run_stopped_while_it_backs_up_an_epoch_leaves_no_half_written_file(
        digits8, tmp_path, monkeypatch):
    # A SIGTERM while the second epoch's backup was written (zoo train lenet5, stopped
    # after epoch 5) left backup/.saving.latest.weights.h5 beside the backup of the epoch
    # before.
    kw = dict(epochs=3, verbose=0, early_stopping=False, mixed_precision="off",
              jit_compile=False)
    save_weights, saved = keras.Model.save_weights, []

    def stopped_while_writing(self, filepath, *args, **kwargs):
        save_weights(self, filepath, *args, **kwargs)
        saved.append(filepath)
        if len(saved) == 2:        # written, not yet renamed onto the backup
            raise _Killed()
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save_weights", stopped_while_writing)
        with pytest.raises(_Killed):
            train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)
    assert os.path.basename(saved[-1]) == ".saving.latest.weights.h5"
    assert sorted(os.listdir(run / "backup")) == ["latest.weights.h5",
                                                  "training_metadata.json", "zoo_run.json"]
    assert train._backup_epoch(str(run / "backup")) == 1    # the epoch before stays
    history = train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)
    assert history["epoch"].tolist() == [0, 1, 2]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_every_file_of_a_run_reaches_the_disk_before_its_rename(digits8, tmp_path,
                                                                  monkeypatch):
    """After a power loss a run's files (the backup's weights, model.keras, info.json, ...)
    hold their old content or their new one, never an empty file: each is synced before the
    rename that gives it its name (only exports were), and history.csv's rows before the
    backup of their epoch."""
    events = record_syncs_and_renames(monkeypatch)
    run = tmp_path / "run"
    train.fit(tiny_classifier(), digits8, run_dir=str(run), epochs=2, verbose=0,
              mixed_precision="off", jit_compile=False, early_stopping=False)
    renames = [e for e in events if e[0] == "rename"]
    renamed_to = {os.path.relpath(dst, run) for _, _, dst in renames}
    assert {os.path.join("backup", "latest.weights.h5"), "model.keras", "info.json",
            "metrics.json"} <= renamed_to
    for renamed in renames:
        assert ("sync", renamed[1]) in events[:events.index(renamed)], renamed[2]
    # history.csv, appended a row an epoch, reaches the disk before that epoch's backup,
    # which a resume trusts (it lost its last rows to a power loss, unsynced).
    backups = [i for i, e in enumerate(events)
               if e[0] == "rename" and e[2] == str(run / "backup" / "latest.weights.h5")]
    assert len(backups) == 2
    for start, end in zip([0] + backups, backups):
        assert ("sync", str(run / "history.csv")) in events[start:end]


@pytest.mark.parametrize("policy", ["bfloat16", "float16"])
def test_an_optimizer_instance_goes_on_in_a_second_fit_of_a_rebuilt_model(digits8, policy):
    """Under a mixed policy the model trains as a rebuilt copy, for which the first fit
    built the optimizer instance: a second fit given it again failed ("Unknown variable:
    <Variable path=conv/kernel ...> ... recreate a new optimizer instance"). It goes on from
    the first's step count and moments, as where the model trains as it is (float32), also
    with fewer layers trainable (a stage of fine-tuning)."""
    model, opt = tiny_classifier(), keras.optimizers.Adam(1e-3)
    kw = dict(epochs=1, verbose=0, optimizer=opt, mixed_precision=policy, jit_compile=False,
              early_stopping=False)
    train.fit(model, digits8, **kw)
    first = [np.array(v) for v in opt.variables]
    assert int(opt.iterations.numpy()) == 3 and len(first) == 10   # 2 + 2 slots x 4

    class Look(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            optimizer = self.model.optimizer
            self.state = [np.array(v) for v in getattr(optimizer, "inner_optimizer",
                                                       optimizer).variables]
    look = Look()
    train.fit(model, digits8, callbacks=[look], **kw)
    assert len(look.state) == len(first)
    for mine, theirs in zip(look.state, first):
        np.testing.assert_array_equal(mine, theirs)
    assert int(train.fit.last_model.optimizer.iterations.numpy()) == 6
    model.get_layer("conv").trainable = False
    train.fit(model, digits8, **kw)
    assert int(train.fit.last_model.optimizer.iterations.numpy()) == 9


def test_a_compiled_models_optimizer_goes_on_in_a_second_fit_of_a_rebuilt_model(digits8):
    """fit(compile=False) of a model that trains as a rebuilt copy (a mixed policy) compiles
    the copy with a new optimizer of the model's optimizer's config: each fit started afresh
    (step count 3, 3), where the model trained as it is goes on (3, 6)."""
    model = tiny_classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy())
    kw = dict(epochs=1, verbose=0, compile=False, mixed_precision="bfloat16",
              jit_compile=False, early_stopping=False)
    steps = []
    for _ in range(2):
        train.fit(model, digits8, **kw)
        steps.append(int(train.fit.last_model.optimizer.iterations.numpy()))
    assert steps == [3, 6]
    assert not model.optimizer.built   # the model's own stays its own (built for no copy)


def test_a_resume_with_fewer_epochs_than_were_trained_is_refused(digits8, tmp_path):
    """Two epochs kept, then epochs=1: Keras would train nothing and the run would record
    epochs=1; refused before anything is written, and the killed run still resumes."""
    kw = dict(verbose=0, mixed_precision="off", jit_compile=False, early_stopping=False)
    run = tmp_path / "run"
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(), digits8, run_dir=str(run), epochs=4,
                  callbacks=[_KillAfterEpoch(1)], **kw)
    with pytest.raises(ValueError, match=r"holds a killed run that finished 2 epochs, more "
                                         r"than epochs=1: resume it with epochs >= 2 "
                                         r"\(--epochs\)"):
        train.fit(tiny_classifier(), digits8, run_dir=str(run), epochs=1, **kw)
    history = train.fit(tiny_classifier(), digits8, run_dir=str(run), epochs=3, **kw)
    assert list(history["epoch"]) == [0, 1, 2]


def test_a_resumed_run_reports_the_training_time_of_all_its_epochs(digits8, tmp_path):
    """train_seconds counts the epochs the killed run kept (its backup records their time)
    and the resumed call's, not the resumed call's alone."""
    class Slow(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):      # before the epoch's backup
            time.sleep(0.6)

    kw = dict(epochs=3, verbose=0, mixed_precision="off", jit_compile=False,
              early_stopping=False)
    run = tmp_path / "run"
    with pytest.raises(_Killed):      # epochs 0 and 1 kept, 1.2 s of them asleep
        train.fit(tiny_classifier(), digits8, run_dir=str(run),
                  callbacks=[Slow(), _KillAfterEpoch(1)], **kw)
    train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)
    assert json.loads((run / "metrics.json").read_text())["train_seconds"] >= 1.2


@pytest.mark.parametrize("method", ["save_weights", "save"])
def test_a_kill_while_a_checkpoint_is_written_leaves_a_run_that_resumes(
        digits8, tmp_path, monkeypatch, method):
    """Killed in the middle of writing the epoch's backup (`save_weights`) or its best
    model (`save`): the files written before stay whole and the run resumes."""
    original, calls = getattr(keras.Model, method), []

    def killed_while_writing(self, filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) == 2:                        # epoch 1's: half a file, then the kill
            with open(filepath, "wb") as f:
                f.write(b"\x89HDF\r\n\x1a\n" + bytes(64))
            raise _Killed()
        return original(self, filepath, *args, **kwargs)

    run = tmp_path / "run"
    kw = dict(epochs=2, verbose=0, learning_rate=0.01, mixed_precision="off",
              jit_compile=False)
    monkeypatch.setattr(keras.Model, method, killed_while_writing)
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)
    monkeypatch.setattr(keras.Model, method, original)
    assert len(calls) == 2
    history = train.fit(tiny_classifier(), digits8, run_dir=str(run), **kw)
    assert list(history["epoch"]) == [0, 1]                 # epoch 1 trained again, once
    assert keras.saving.load_model(run / "model.keras") is not None
    assert not (run / "backup").exists()


def test_best_epoch_is_the_monitored_one():
    history = pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.0, 0.5, 0.4],
                            "val_loss": [0.9, 0.6, 0.7], "val_accuracy": [0.5, 0.7, 0.8]})
    assert train._best_epoch_metrics(history, "val_accuracy") == {
        "best_epoch": 3, "best_val_loss": 0.7, "best_val_accuracy": 0.8}
    assert train._best_epoch_metrics(history, "val_loss")["best_epoch"] == 2
    assert train._best_epoch_metrics(history.drop(columns="val_loss"), "val_loss") == {}


def test_a_diverged_run_is_one_clear_error(digits8, tmp_path, capsys):
    inputs = keras.Input((8, 8, 1), name="images")
    x = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    run, ends = tmp_path / "run", _EpochEndWeights()
    with pytest.raises(ValueError, match=r"^Training diverged: the loss was nan in epoch 1 "
                                         r"and no epoch had a finite val_loss, so there is no "
                                         r"model to keep. Lower the learning rate \(received "
                                         r"learning_rate=1e\+30\)"):
        train.fit(model, digits8, epochs=3, run_dir=str(run), verbose=0, optimizer="sgd",
                  learning_rate=1e30, mixed_precision="off", jit_compile=False,
                  callbacks=[ends])
    assert not run.exists()
    assert len(ends.weights) == 1   # stopped in its first epoch


def test_an_infinite_loss_is_a_diverged_run(digits8, tmp_path):
    # an infinite loss whose gradient is finite (0): the weights never move, no epoch has a
    # finite val_loss
    def infinite(y_true, y_pred):
        return keras.ops.mean(y_pred, axis=-1) * 0.0 + float("inf")
    model = tiny_classifier()
    model.compile(optimizer="sgd", loss=infinite)
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"^Training diverged: the loss was inf in epoch 1 "):
        train.fit(model, digits8, epochs=2, run_dir=str(run), verbose=0, compile=False,
                  mixed_precision="off", jit_compile=False)
    assert not run.exists()


@pytest.mark.parametrize("verbose", [0, 1])
def test_a_loss_that_is_no_finite_number_stops_training(verbose, capsys):
    stop = train._TerminateOnNaN(verbose)
    stop.set_model(tiny_classifier())
    for loss, stops in ((2.3, False), (float("inf"), True), (float("nan"), True)):
        stop.model.stop_training = False
        stop.on_batch_end(4, {"loss": loss})
        assert stop.model.stop_training is stops, loss
    said = capsys.readouterr().out
    assert ("Batch 4: Invalid loss, terminating training" in said) is bool(verbose)


@pytest.mark.parametrize("stop,code,line", [
    (KeyboardInterrupt, 130, "zoo: interrupted"),
    (zoo.cli.Terminated, 143, "zoo: terminated"),   # SIGTERM (the README said 130 too)
    # A failure after an epoch was backed up (a full disk) keeps the run to resume from too,
    # but only Ctrl-C said so: a failure printed its error alone.
    (lambda: OSError(28, "No space left on device"), 1,
     "zoo: error: [Errno 28] No space left on device")])
def test_zoo_train_interrupted_says_how_to_resume(tmp_path, capsys, monkeypatch, stop, code,
                                                  line):
    fit = train.fit

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise stop()

    monkeypatch.setattr(train, "fit", lambda *a, **kw: fit(*a, callbacks=[Stop()], **kw))
    run = tmp_path / "run"
    argv = ["train", "lenet5", "--epochs", "2", "--batch-size", "128", "--run-dir", str(run),
            "--quiet", "--mixed-precision", "off"]
    assert zoo_main(argv) == code
    err = capsys.readouterr().err
    assert err.splitlines() == [f"zoo train: stopped after epoch 1 of 2; the same command with "
                                f"--run-dir {run} resumes it", line]
    monkeypatch.setattr(train, "fit", fit)
    assert zoo_main(argv + ["--lr", "0.5"]) == 2        # a refused resume: its error alone
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "holds a killed run that trained with --lr" in err[0]
    assert zoo_main(argv) == 0
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [0, 1]


@pytest.mark.parametrize("stop,code,line", [
    (KeyboardInterrupt, 130, "zoo: interrupted"),
    (lambda: OSError(28, "No space left on device"), 1,
     "zoo: error: [Errno 28] No space left on device")])
def test_zoo_train_export_stopped_says_how_to_export_the_trained_run(tmp_path, capsys,
                                                                     monkeypatch, stop, code,
                                                                     line):
    """Ctrl-C (or a failure) in zoo train --export's export, after the run was trained and
    saved, said only `zoo: interrupted`; the same command then trained the run again, as
    it starts a new run in a finished run's directory."""
    import shlex
    from zoo import export as zexport
    export_run = zexport.export_run

    def stopped(*args, **kwargs):
        raise stop()

    monkeypatch.setattr(zexport, "export_run", stopped)
    run, base = tmp_path / "run", tmp_path / "models"
    argv = ["train", "lenet5", "--epochs", "1", "--batch-size", "128", "--run-dir", str(run),
            "--quiet", "--mixed-precision", "off", "--export", "--base-dir", str(base),
            "--export-precision", "float16", "--no-lite"]
    assert zoo_main(argv) == code
    out, err = capsys.readouterr()
    assert out.startswith("lenet5 on digits: test accuracy ") and out.endswith(
        f"run dir {run}\n"), out
    command = (f"zoo export {shlex.quote(str(run))} --base-dir {shlex.quote(str(base))} "
               f"--name lenet5 --precision float16 --no-lite")
    assert err.splitlines() == [f"zoo train: the export stopped; the run is trained and "
                                f"saved, and {command} exports it (the same command would "
                                f"train it again)", line]
    if code == 130:   # the command named exports the trained run
        monkeypatch.setattr(zexport, "export_run", export_run)
        assert zoo_main(shlex.split(command)[1:]) == 0
        assert (base / "lenet5" / "1" / "saved_model.pb").is_file()


def test_zoo_train_prints_one_line_per_epoch_off_a_terminal(tmp_path, capsys):
    """Keras redraws its progress bar with backspaces and carriage returns wherever the
    posix module is loaded, a terminal or not: `zoo train > log` held every redraw."""
    from zoo.common import progress_verbose
    assert zoo_main(["train", "lenet5", "--epochs", "2", "--batch-size", "128", "--run-dir",
                     str(tmp_path / "run"), "--mixed-precision", "off"]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out and "\b" not in out and "\x1b[" not in out, repr(out[:300])
    lines = out.splitlines()
    assert [lines[0], lines[2]] == ["Epoch 1/2", "Epoch 2/2"] and len(lines) == 5, lines
    assert all(re.match(r"^10/10 - \d+s - .* - val_loss: ", lines[i]) for i in (1, 3)), lines
    assert lines[4].startswith("lenet5 on digits: test accuracy ")
    # On a terminal the bars stay; 0 and 2 stay as they were asked for.
    import pty
    leader, follower = pty.openpty()
    with open(follower, "w") as terminal, open(tmp_path / "log", "w") as log:
        assert [progress_verbose(v, terminal) for v in (0, 1, 2)] == [0, 1, 2]
        assert [progress_verbose(v, log) for v in (0, 1, 2)] == [0, 2, 2]
    os.close(leader)


# --- loading a saved model in a fresh process ---------------------------------------------

def test_zoo_load_model_reads_a_run_in_a_fresh_process(tmp_path):
    """A run's model (custom layers, the segmentation loss, a zoo optimizer) loads after a
    bare ``import zoo``, where keras.saving.load_model alone does not know the classes."""
    from zoo import lenet5, unet
    lenet = lenet5(input_shape=(32, 32, 1), num_classes=10)
    train.compile_model(lenet, optimizer="sgd", jit_compile=False)
    run = tmp_path / "run"
    run.mkdir()
    lenet.save(run / "model.keras")
    seg = unet(input_shape=(32, 32, 3), num_classes=3, depth=2, base_filters=4,
               padding="same")
    train.compile_model(seg, "segmentation", jit_compile=False, num_classes=3)
    seg.save(tmp_path / "seg.keras")
    script = textwrap.dedent(f"""
        import json, zoo, keras
        try:
            keras.saving.load_model({str(run / "model.keras")!r})
            plain = "loaded"
        except Exception as exc:
            plain = type(exc).__name__
        lenet = zoo.load_model({str(run)!r})
        seg = zoo.load_model({str(tmp_path / "seg.keras")!r})
        print(json.dumps([plain, lenet.count_params(), type(lenet.optimizer).__name__,
                          seg.count_params(), type(seg.loss).__name__]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plain, lenet_params, opt, seg_params, loss = json.loads(proc.stdout.strip().splitlines()[-1])
    assert plain != "loaded"          # the zoo's classes are unknown until imported
    assert lenet_params == lenet.count_params()
    assert opt == type(lenet.optimizer).__name__
    assert seg_params == seg.count_params() and loss == type(seg.loss).__name__
    with pytest.raises(FileNotFoundError, match="without model.keras"):
        from zoo import load_model
        load_model(tmp_path)
    (tmp_path / "junk.keras").write_text("no zip")
    with pytest.raises(ValueError, match="not a Keras model file"):
        load_model(tmp_path / "junk.keras")


# --- class weights ----------------------------------------------------------------------

TOY_LABELS = np.array([0] * 8 + [1] * 3 + [2] * 1, "int32")     # imbalanced: 8, 3, 1


def toy_splits(labels=TOY_LABELS, names=("a", "b", "c")):
    """One 12-image batch of fixed random images, as train, validation and test."""
    x = np.random.default_rng(0).normal(size=(len(labels), 8, 8, 1)).astype("float32")
    info = data.DatasetInfo("toy", "classification", len(names), list(names), (8, 8, 1))
    ds = tf.data.Dataset.from_tensor_slices((x, labels)).batch(len(labels))
    return data.Splits(ds, ds, ds, info), x


def example_losses(model, x, labels, label_smoothing=0.0):
    """Per-example cross-entropy of ``model`` (softmax outputs), computed by hand."""
    p = model.predict(x, verbose=0).astype("float64")
    q = np.eye(p.shape[1])[labels] * (1 - label_smoothing) + label_smoothing / p.shape[1]
    return -(q * np.log(p)).sum(1), p


def test_balanced_class_weights_are_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight
    splits, _ = toy_splits()
    weights = train.resolve_class_weight("balanced", splits)
    n, k = 12, 3
    assert weights == [n / (k * 8), n / (k * 3), n / (k * 1)] == [0.5, 12 / 9, 4.0]
    np.testing.assert_allclose(weights, compute_class_weight(
        "balanced", classes=np.arange(3), y=TOY_LABELS), rtol=1e-15)
    assert np.mean(np.array(weights)[TOY_LABELS]) == pytest.approx(1.0)   # average 1
    # A mapping: by label name or index; classes not named get 1.
    assert train.resolve_class_weight({"c": 5, 0: 0.25}, splits) == [0.25, 1.0, 5.0]
    assert train.resolve_class_weight({"2": 5}, splits) == [1.0, 1.0, 5.0]   # as the CLI
    assert train.resolve_class_weight(None, splits) is None
    # A label name wins over an index: labels "1", "0" (class 0 is named "1").
    named, _ = toy_splits(TOY_LABELS % 2, names=("1", "0"))
    assert train.resolve_class_weight({"1": 3.0}, named) == [3.0, 1.0]
    assert train.resolve_class_weight({1: 3.0}, named) == [1.0, 3.0]


@pytest.mark.parametrize("precision,jit,smoothing,tolerance", [
    ("off", False, 0.0, 1e-5), ("off", True, 0.1, 1e-5), ("bfloat16", False, 0.0, 1e-2),
    ("float16", True, 0.0, 1e-2)])
def test_the_weighted_loss_keras_reports_is_the_weighted_mean_of_example_losses(
        tmp_path, precision, jit, smoothing, tolerance):
    splits, x = toy_splits()
    model = tiny_classifier(num_classes=3)
    ce, _ = example_losses(model, x, TOY_LABELS, smoothing)
    weights = np.array([3.0, 0.5, 0.0])
    # One batch, one epoch: the loss is reported for the weights before the update. Keras
    # multiplies each example's loss by its class's weight and divides by the batch size.
    history = train.fit(model, splits, epochs=1, run_dir=str(tmp_path / "run"), verbose=0,
                        class_weight={"a": 3.0, "b": 0.5, "c": 0}, mixed_precision=precision,
                        jit_compile=jit, label_smoothing=smoothing, learning_rate=1e-3)
    expected = float(np.sum(weights[TOY_LABELS] * ce) / len(ce))
    assert history["loss"][0] == pytest.approx(expected, rel=tolerance)
    settings = json.loads((tmp_path / "run" / "info.json").read_text())["settings"]
    assert settings["jit_compile"] is jit                    # XLA compiled it (no fallback)
    assert settings["mixed_precision"] == (None if precision == "off" else f"mixed_{precision}")
    assert abs(expected - ce.mean()) > 0.5          # far from the unweighted loss
    if precision == "off":
        # Validation is not weighted: its loss is the plain mean of the trained model's.
        trained, _ = example_losses(train.fit.last_model, x, TOY_LABELS, smoothing)
        assert history["val_loss"][0] == pytest.approx(trained.mean(), rel=tolerance)


def test_balanced_weights_are_recorded_and_accuracy_is_not_weighted(tmp_path):
    splits, x = toy_splits()
    model = tiny_classifier(num_classes=3)
    _, p = example_losses(model, x, TOY_LABELS)
    run = tmp_path / "run"
    history = train.fit(model, splits, epochs=1, run_dir=str(run), verbose=0,
                        class_weight="balanced", mixed_precision="off", jit_compile=False)
    # Keras weights the loss only: the compiled accuracy counts every example once.
    assert history["accuracy"][0] == pytest.approx(np.mean(p.argmax(1) == TOY_LABELS),
                                                   abs=1e-6)
    assert history["val_accuracy"][0] == pytest.approx(
        np.mean(train.fit.last_model.predict(x, verbose=0).argmax(1) == TOY_LABELS), abs=1e-6)
    info = json.loads((run / "info.json").read_text())
    assert info["settings"]["class_weight"] == {
        "method": "balanced", "weights": {"a": 0.5, "b": 12 / 9, "c": 4.0}}
    train.fit(tiny_classifier(num_classes=3), splits, epochs=1, run_dir=str(run), verbose=0,
              class_weight={"c": 2}, mixed_precision="off", jit_compile=False)
    info = json.loads((run / "info.json").read_text())
    assert info["settings"]["class_weight"] == {
        "method": "given", "weights": {"a": 1.0, "b": 1.0, "c": 2.0}}
    train.fit(tiny_classifier(num_classes=3), splits, epochs=1, run_dir=str(run), verbose=0,
              mixed_precision="off", jit_compile=False)
    assert json.loads((run / "info.json").read_text())["settings"]["class_weight"] is None


@pytest.mark.parametrize("class_weight,message", [
    ("Balanced", r"class_weight must be None, 'balanced' or a mapping \{class index or label "
                 r"name: weight\} with finite weights >= 0. Received: class_weight='Balanced'"),
    (["balanced"], r"Received: class_weight=\['balanced'\]"),
    ([1.0, 2.0], r"Received: class_weight=\[1.0, 2.0\]"),
    ({}, r"an empty mapping names no class. Received: class_weight=\{\}"),
    ({"0": -1.0}, r"class '0' has weight -1.0. Received: class_weight=\{'0': -1.0\}"),
    ({"0": float("nan")}, r"class '0' has weight nan"),
    ({"0": float("inf")}, r"class '0' has weight inf"),
    ({"0": "2"}, r"class '0' has weight '2'"),
    ({"0": True}, r"class '0' has weight True"),
    ({-1: 2.0}, r"class -1 is neither a label name nor an index >= 0"),
    ({True: 2.0}, r"class True is neither a label name nor an index >= 0"),
    ({1.0: 2.0}, r"class 1.0 is neither a label name nor an index >= 0")])
def test_fit_refuses_a_bad_class_weight_before_any_work(class_weight, message, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train.fit("lenet5", "digits", epochs=1, run_dir=str(run), verbose=0,
                  class_weight=class_weight)
    assert not run.exists()


def test_fit_refuses_class_weights_the_dataset_cannot_take(tmp_path, monkeypatch):
    splits, _ = toy_splits()
    run = tmp_path / "run"
    for class_weight, message in (
            ({"d": 2.0}, r"class_weight names class 'd', which dataset 'toy' does not have. "
                         r"Allowed: its label names \(a, b, c\) or indices 0..2. "
                         r"Received: class_weight=\{'d': 2.0\}"),
            ({"cc": 2.0}, r"class 'cc', which .* Did you mean: c\?"),
            ({3: 2.0}, r"class 3, which dataset 'toy' does not have"),
            ({"7": 2.0}, r"class '7', which dataset 'toy' does not have"),
            ({0: 2.0, "a": 3.0}, r"class_weight names class 'a' \(index 0\) twice, as 0 and "
                                 r"'a'"),
            ({"a": 0, "b": 0.0, 2: 0}, r"class_weight gives every class of dataset 'toy' "
                                       r"weight 0")):
        with pytest.raises(ValueError, match=message):
            train.fit(tiny_classifier(num_classes=3), splits, epochs=1, run_dir=str(run),
                      verbose=0, class_weight=class_weight)
        assert not run.exists()
    # "balanced" needs every class in the train split.
    missing, _ = toy_splits(names=("a", "b", "c", "d"))
    with pytest.raises(ValueError, match=r"class_weight='balanced' needs training examples "
                                         r"of every class, but the train split of dataset "
                                         r"'toy' has none of class 'd' \(examples per class: "
                                         r"\[8, 3, 1, 0\]\)"):
        train.fit(tiny_classifier(num_classes=4), missing, epochs=1, run_dir=str(run),
                  verbose=0, class_weight="balanced")
    assert not run.exists()
    # Segmentation is refused, before anything is loaded.
    monkeypatch.setattr(data, "load_splits", lambda *a, **kw: pytest.fail("loaded"))
    for model in (tiny_segmenter(), "unet"):
        with pytest.raises(ValueError, match=r"class_weight is for classification, and model "
                                             r"'(tiny_seg|unet)' is for segmentation: .*Dice "
                                             r"term. Received: class_weight='balanced'"):
            train.fit(model, "shapes", epochs=1, run_dir=str(run), verbose=0,
                      class_weight="balanced")
    assert not run.exists()


def test_a_killed_run_resumes_with_the_class_weights_it_started_with(tmp_path):
    splits, _ = toy_splits()
    run = tmp_path / "run"
    kw = dict(epochs=3, run_dir=str(run), verbose=0, mixed_precision="off", jit_compile=False)
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(num_classes=3), splits, class_weight="balanced",
                  callbacks=[_KillAfterFirstEpoch()], **kw)
    state = json.loads((run / "backup" / "zoo_run.json").read_text())
    assert state["class_weight"] == {"method": "balanced",
                                     "weights": {"a": 0.5, "b": 12 / 9, "c": 4.0}}
    with pytest.raises(ValueError, match=re.escape(
            f"{run} holds a killed run that trained with class weights {{'a': 0.5, 'b': "
            f"{12 / 9!r}, 'c': 4.0}} (balanced); resume it with class_weight='balanced' "
            f"(--class-weight balanced) on the same training data, or those weights")
            + r".* Received: class_weight=None$"):
        train.fit(tiny_classifier(num_classes=3), splits, **kw)
    with pytest.raises(ValueError, match=r"Received: class_weight=\{'c': 4.0\} \(weights "
                                         r"\{'a': 1.0, 'b': 1.0, 'c': 4.0\}\)$"):
        train.fit(tiny_classifier(num_classes=3), splits, class_weight={"c": 4.0}, **kw)
    # The same weights, given by class, resume it.
    history = train.fit(tiny_classifier(num_classes=3), splits,
                        class_weight={"a": 0.5, "b": 12 / 9, "c": 4.0}, **kw)
    assert list(history["epoch"]) == [0, 1, 2]          # resumed after epoch 0
    info = json.loads((run / "info.json").read_text())
    assert info["settings"]["class_weight"]["weights"] == {"a": 0.5, "b": 12 / 9, "c": 4.0}
    # A run killed without class weights does not resume with them.
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(num_classes=3), splits, callbacks=[_KillAfterFirstEpoch()],
                  **kw)
    assert "class_weight" not in json.loads((run / "backup" / "zoo_run.json").read_text())
    with pytest.raises(ValueError, match=r"holds a killed run that trained without class "
                                         r"weights; resume it with class_weight=None \(no "
                                         r"--class-weight\), or use another run directory. "
                                         r"Received: class_weight='balanced' \(weights "):
        train.fit(tiny_classifier(num_classes=3), splits, class_weight="balanced", **kw)


def test_a_killed_run_resumes_only_with_the_optimizer_settings_it_started_with(tmp_path):
    # The backup restores the optimizer's variables, its learning rate among them: a
    # resume with another rate trained on at the old one while info.json recorded the new.
    splits, _ = toy_splits()
    run = tmp_path / "run"
    kw = dict(epochs=3, run_dir=str(run), verbose=0, mixed_precision="off", jit_compile=False)
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(num_classes=3), splits, learning_rate=1e-3,
                  label_smoothing=0.1, callbacks=[_KillAfterFirstEpoch()], **kw)
    state = json.loads((run / "backup" / "zoo_run.json").read_text())
    assert state["optimization"] == {"optimizer": "adam", "learning_rate": 1e-3,
                                     "lr_schedule": "constant", "weight_decay": None,
                                     "clip_norm": None, "label_smoothing": 0.1,
                                     "aux_loss_weight": None}
    with pytest.raises(ValueError, match=re.escape(
            f"{run} holds a killed run that trained with --lr 0.001; resume it with the same "
            f"(its optimizer's state, learning rate included, is restored from the backup), "
            f"or use another run directory. Received: learning_rate=1e-05")):
        train.fit(tiny_classifier(num_classes=3), splits, learning_rate=1e-5,
                  label_smoothing=0.1, **kw)
    with pytest.raises(ValueError, match=r"trained with --optimizer adam, --label-smoothing "
                                         r"0.1; .* Received: optimizer='sgd', "
                                         r"label_smoothing=0.0$"):
        train.fit(tiny_classifier(num_classes=3), splits, optimizer="sgd", **kw)
    rates = []

    class Rate(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    history = train.fit(tiny_classifier(num_classes=3), splits, learning_rate=1e-3,
                        label_smoothing=0.1, callbacks=[Rate()], **kw)
    assert list(history["epoch"]) == [0, 1, 2] and rates == pytest.approx([1e-3, 1e-3])
    assert json.loads((run / "info.json").read_text())["settings"]["learning_rate"] == 1e-3


def test_zoo_train_class_weight_option(tmp_path, capsys, monkeypatch):
    from PIL import Image
    root = tmp_path / "photos"
    for split, counts in (("train", {"cat": 6, "dog": 2}), ("validation", {"cat": 1, "dog": 1})):
        for k, (label, n) in enumerate(counts.items()):
            os.makedirs(root / split / label)
            for i in range(n):
                Image.fromarray(np.full((8, 8), 100 * k + i, "uint8")).save(
                    root / split / label / f"{i}.png")
    base = ["train", "lenet5", "--dataset", f"folder:{root}", "--epochs", "1", "--quiet",
            "--image-size", "32,32", "--mixed-precision", "off"]
    run = tmp_path / "run"
    assert zoo_main(base + ["--class-weight", "balanced", "--run-dir", str(run)]) == 0
    info = json.loads((run / "info.json").read_text())
    assert info["settings"]["class_weight"] == {
        "method": "balanced", "weights": {"cat": 8 / (2 * 6), "dog": 8 / (2 * 2)}}
    capsys.readouterr()
    # NAME=W, repeatable; a class name or index.
    seen = fit_arguments(monkeypatch)
    assert zoo_main(base + ["--class-weight", "dog=2.5", "--class-weight", "0=0.5"]) == 1
    assert seen["class_weight"] == {"dog": 2.5, "0": 0.5}
    capsys.readouterr()
    # Bad input: one line, exit code 2, no traceback.
    for args, message in (
            (["--class-weight", "balance"], "zoo train: error: argument --class-weight: "
                                            "expected balanced or NAME=W (a class name or "
                                            "index and a finite weight >= 0, e.g. cat=2.5); "
                                            "received 'balance'"),
            (["--class-weight", "dog=-1"], "received 'dog=-1'"),
            (["--class-weight", "dog=nan"], "received 'dog=nan'"),
            (["--class-weight", "dog=heavy"], "received 'dog=heavy'"),
            (["--class-weight", "=2"], "received '=2'"),
            (["--class-weight", "balanced", "--class-weight", "dog=2"],
             "zoo: error: --class-weight balanced cannot be combined with other "
             "--class-weight values. Received: balanced, dog=2"),
            (["--class-weight", "dog=2", "--class-weight", "dog=3"],
             "zoo: error: --class-weight names 'dog' twice. Received: dog=2 and dog=3")):
        try:
            code = zoo_main(base + args)
        except SystemExit as exc:      # argparse's errors
            code = exc.code
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and "Traceback" not in err
        assert err.endswith(message), err
    monkeypatch.undo()
    assert zoo_main(base + ["--class-weight", "bird=2", "--run-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(
        f"zoo: error: class_weight names class 'bird', which dataset 'folder:{root}' does not "
        f"have. Allowed: its label names (cat, dog) or indices 0..1.")
    assert not (tmp_path / "b").exists()
    assert zoo_main(["train", "unet", "--class-weight", "balanced"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: class_weight is for classification, and model 'unet' "
                          "is for segmentation") and "\n" not in err


# --- batch-norm momentum, per-model defaults ---------------------------------------------

def test_set_batch_norm_momentum_lowers_keras_default_in_nested_models_too():
    backbone = zoo.resnet18(input_shape=(32, 32, 3), include_top=False, pooling="avg")
    images = keras.Input((32, 32, 3))
    model = keras.Model(images, keras.layers.Dense(3)(backbone(images)))
    norms = [layer for layer in model._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 20 and {n.momentum for n in norms} == {0.99}   # the builders' own
    assert train.set_batch_norm_momentum(model, None) is None
    assert {n.momentum for n in norms} == {0.99}
    assert train.set_batch_norm_momentum(model) == 0.9
    assert {n.momentum for n in norms} == {0.9}
    assert train.set_batch_norm_momentum(model) is None        # none above 0.9 any more
    norms[0].momentum = 0.5
    assert train.set_batch_norm_momentum(model, "auto") is None and norms[0].momentum == 0.5
    assert train.set_batch_norm_momentum(model, 0.97) == 0.97
    assert {n.momentum for n in norms} == {0.97}
    assert train.set_batch_norm_momentum(tiny_classifier()) is None   # no batch norm
    for bad in (1.0, 0, "keep", True):
        with pytest.raises(ValueError, match=r"batch_norm_momentum must be 'auto', None or a "
                                             rf"number in \(0, 1\). Received: "
                                             rf"batch_norm_momentum={re.escape(repr(bad))}"):
            train.set_batch_norm_momentum(model, bad)


def test_fit_trains_with_momentum_0_9_and_records_it(tmp_path, digits8):
    inputs = keras.Input((8, 8, 1), name="images")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax",
                                                   name="predictions")(x))
    train.fit(model, digits8, epochs=1, run_dir=str(tmp_path / "a"), verbose=0,
              mixed_precision="off", jit_compile=False)
    info = json.loads((tmp_path / "a" / "info.json").read_text())
    assert info["settings"]["batch_norm_momentum"] == 0.9
    saved = keras.saving.load_model(tmp_path / "a" / "model.keras")
    assert saved.get_layer("bn").momentum == 0.9
    model.get_layer("bn").momentum = 0.99
    train.fit(model, digits8, epochs=1, run_dir=str(tmp_path / "b"), verbose=0,
              mixed_precision="off", jit_compile=False, batch_norm_momentum=None)
    info = json.loads((tmp_path / "b" / "info.json").read_text())
    assert info["settings"]["batch_norm_momentum"] is None
    assert model.get_layer("bn").momentum == 0.99
    with pytest.raises(ValueError, match="batch_norm_momentum must be"):
        train.fit(model, digits8, run_dir=str(tmp_path / "c"), batch_norm_momentum=2)
    assert not (tmp_path / "c").exists()
    # Under a mixed policy a rebuilt copy trains; the model passed in gets its weights and,
    # as in float32, the momentum it trained with (it kept 0.99)
    train.fit(model, digits8, epochs=1, run_dir=str(tmp_path / "d"), verbose=0,
              mixed_precision="bfloat16", jit_compile=False)
    assert train.fit.last_model is not model
    assert model.get_layer("bn").momentum == train.fit.last_model.get_layer("bn").momentum == 0.9


def test_zoo_train_defaults_per_model_on_digits():
    d = train.train_defaults
    assert (d("lenet5", "digits")["image_size"], d("lenet5", "digits")["learning_rate"]) == \
        ((32, 32), 2e-3)
    assert (d("alexnet", "digits")["image_size"], d("alexnet", "digits")["learning_rate"]) == \
        ((67, 67), 1e-4)
    assert (d("googlenet", "digits")["image_size"], d("googlenet", "digits")["learning_rate"]) \
        == ((65, 65), 1e-4)
    assert d("inception_v3", "digits")["image_size"] == (75, 75)
    assert d("resnet50", "digits")["image_size"] == d("xception", "digits")["image_size"] == \
        (32, 32)
    assert d("resnet50", "digits")["learning_rate"] == 1e-3
    assert d("alexnet", "cifar10")["image_size"] is None            # the model's own input
    assert d("alexnet", "cifar10")["learning_rate"] == 1e-4
    assert d("unet", "shapes")["image_size"] == (64, 64)


def test_zoo_train_help_says_which_defaults_depend_on_model_and_dataset():
    # --image-size and --lr come from train_defaults as --epochs and --batch-size do: the
    # help said "the model's default input" (digits trains at the smallest input, unet on
    # shapes at 64x64) and gave no default for --lr (1e-3; alexnet and googlenet 1e-4).
    import argparse
    parser = argparse.ArgumentParser()
    train.configure_train(parser)
    helps = {a.dest: " ".join(a.help.split()) for a in parser._actions if a.help}
    for dest in ("epochs", "batch_size", "image_size", "lr", "lr_schedule"):
        assert "(default: per model and dataset" in helps[dest], (dest, helps[dest])
    assert "at least 32,32" in helps["image_size"] and "1e-4" in helps["lr"]


def test_model_args_take_json_booleans():
    # Models with auxiliary classifiers (aux_logits=true) train: tests/test_aux_training.py.
    from zoo.train_cli import _parse_model_arg
    assert _parse_model_arg("aux_logits=true") == ("aux_logits", True)
    assert _parse_model_arg("batch_norm=False") == ("batch_norm", False)
    assert _parse_model_arg("padding=same") == ("padding", "same")


def test_zoo_train_parses_its_options_without_tensorflow():
    # zoo train --help and an option's refusal imported TensorFlow and Keras first (5.4 s
    # for the help); the training itself imports them (zoo.train.train_command)
    code = ("import sys\n"
            "from zoo.cli import main\n"
            "for argv in (['train', '--help'], ['train', 'lenet5', '--lr', '-1']):\n"
            "    try:\n"
            "        main(argv)\n"
            "    except SystemExit as exit:\n"
            "        print(exit.code, sorted({'tensorflow', 'keras'} & set(sys.modules)))\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.stdout.endswith("0 []\n2 []\n"), (r.stdout[-500:], r.stderr[-2000:])
    assert "--lr-schedule {constant,cosine,plateau}" in r.stdout
    assert "argument --lr: expected a positive finite learning rate" in r.stderr


# --- bad input: fit's other arguments, Splits of one's own, schedules, plots ---------------

@pytest.mark.parametrize("kwargs,message", [
    (dict(seed="a"), r"seed must be an integer between 0 and 2\*\*32 - 1\. Received: seed='a'"),
    (dict(seed=1.5), r"Received: seed=1\.5"),                 # was trained with seed 1
    (dict(seed=None), r"Received: seed=None"),
    (dict(verbose="a"), r"verbose must be 0 \(silent\), 1 \(progress bars\) or 2"),
    (dict(deterministic="no"), r"fit: deterministic must be True or False\. "
                               r"Received: deterministic='no'"),   # was turned on
    (dict(early_stopping="no"), r"early_stopping must be True or False"),
    (dict(callbacks=keras.callbacks.History()), r"callbacks must be a list of "
                                                r"keras\.callbacks\.Callback or None"),
    (dict(callbacks="abc"), r"Received: callbacks='abc'"),
    (dict(monitor=5), r"monitor must be the name of a logged quantity.*Received: monitor=5"),
    (dict(jit_compile="yes"), r"jit_compile must be 'auto', True or False"),
    # (Keras compiled without XLA, with a warning; the refusal comes before determinism is on)
    (dict(jit_compile=True, deterministic=True),
     r"^XLA \(jit_compile=True, --xla\) does not go with op determinism \(deterministic=True, "
     r"--deterministic\): .*Received: jit_compile=True, deterministic=True$"),
    (dict(run_dir=""), r"run_dir must be the path of a run directory.*Received: run_dir=''"),
    (dict(model_args=["x"]), r"model_args must be a dict"),
    # was recorded in info.json, whose run zoo export then refused
    (dict(model_name=3), r"model_name must be the model's name \(a non-empty str\) or None\. "
                         r"Received: model_name=3"),
    (dict(model_name=""), r"Received: model_name=''"),
])
def test_fit_refuses_other_bad_arguments_before_any_work(kwargs, message, tmp_path,
                                                         monkeypatch):
    # Before: int('a')'s message, TypeErrors from Keras' callback list, an AttributeError
    # ('int' object has no attribute 'endswith'), or the bad value trained on silently.
    monkeypatch.chdir(tmp_path)
    loaded = []
    monkeypatch.setattr(data, "load_splits", lambda *a, **k: loaded.append(1))
    kwargs.setdefault("run_dir", str(tmp_path / "run"))
    with pytest.raises(ValueError, match=message):
        train.fit("lenet5", "digits", epochs=1, **kwargs)
    assert loaded == [] and os.listdir(tmp_path) == []


def test_fit_takes_numpy_integers_for_its_counts(digits8, tmp_path):
    # epochs=np.int64(1) was refused as "epochs must be a positive integer. Received: 1".
    history = train.fit(tiny_classifier(), small(digits8, 1), epochs=np.int64(1),
                        patience=np.int64(2), seed=np.int64(1), run_dir=str(tmp_path / "r"),
                        verbose=0, jit_compile=False, batch_norm_momentum=np.float32(0.5))
    assert len(history) == 1


def test_a_run_dir_that_is_a_file_is_refused_before_any_work(tmp_path, monkeypatch):
    # Before: FileExistsError once the data had loaded and the model was built.
    monkeypatch.setattr(data, "load_splits", lambda *a, **k: pytest.fail("loaded"))
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(ValueError, match=f"run_dir must be a directory, and {afile} is a file"):
        train.fit("lenet5", "digits", run_dir=str(afile))
    with pytest.raises(ValueError, match=f"run_dir {afile}/sub/run cannot be made: {afile} is "
                                         f"a file"):
        train.fit("lenet5", "digits", run_dir=str(afile / "sub" / "run"))
    assert afile.read_text() == "mine"


def test_fit_checks_a_splits_of_ones_own_before_any_work(digits8, tmp_path):
    # Before: one-hot labels failed in Keras ("Argument `output` must have rank (ndim)
    # `target.ndim - 1`"), dicts and 3-tuples in the label check's tf.function ("tf__check()
    # missing 1 required positional argument: 'y'"), an unbatched dataset in a convolution
    # ("Negative dimension size"), Splits.validation=None with an AttributeError.
    x = np.zeros((8, 8, 8, 1), "float32")
    y = np.arange(8, dtype="int32")
    one_hot = tf.data.Dataset.from_tensor_slices((x, np.eye(10, dtype="float32")[y])).batch(4)
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"Splits.train yields a 2-tuple \(\(None, 8, 8, 1\) "
                                         r"float32, \(None, 10\) float32\).*one-hot labels"):
        train.fit(tiny_classifier(), data.Splits(one_hot, one_hot, one_hot, digits8.info),
                  epochs=1, run_dir=str(run), verbose=0)
    with pytest.raises(ValueError, match=r"^Splits.validation must be a tf.data.Dataset"):
        train.fit(tiny_classifier(), data.Splits(digits8.train, None, digits8.test,
                                                 digits8.info),
                  epochs=1, run_dir=str(run), verbose=0)
    # ignore_label is a dataset name's: a Splits brings its own (it was ignored).
    with pytest.raises(ValueError, match=r"ignore_label is for a dataset name; a "
                                         r"zoo.data.Splits brings its own \(info.ignore_label="
                                         r"None\).*Received: ignore_label=255"):
        train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(run), verbose=0,
                  ignore_label=255)
    assert not run.exists()


def test_fractional_float_labels_are_refused_in_one_line(digits8, tmp_path):
    # Float labels 2.7 trained as class 2 without a word; whole float labels still train.
    x = np.zeros((8, 8, 8, 1), "float32")
    for labels, ok in ((np.full(8, 2.0, "float32"), True), (np.full(8, 2.7, "float32"), False)):
        ds = tf.data.Dataset.from_tensor_slices((x, labels)).batch(4)
        splits = data.Splits(ds, ds, ds, digits8.info)
        run = tmp_path / f"run{ok}"
        if ok:
            train.fit(tiny_classifier(), splits, epochs=1, run_dir=str(run), verbose=0,
                      jit_compile=False)
            continue
        with pytest.raises(ValueError) as exc_info:
            train.fit(tiny_classifier(), splits, epochs=1, run_dir=str(run), verbose=0,
                      jit_compile=False)
        assert str(exc_info.value) == ("labels outside num_classes: the model has 10 outputs, "
                                       "so labels must be whole numbers in 0..9; found 2.7")
        assert not run.exists()


def test_an_unlogged_monitor_or_an_empty_split_stops_the_first_epoch(digits8, tmp_path):
    # Before: a warning, then a run without best checkpoint nor early stopping that kept the
    # last epoch's weights (an unknown monitor, or a validation split filtered to nothing);
    # a training split filtered to nothing failed in the plot ("Number of columns must be a
    # positive integer, not 0") after model.keras and info.json were written.
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"^monitor 'val_acc' is not logged by this run; .*"
                                         r"It logs: accuracy, learning_rate, loss, "
                                         r"val_accuracy, val_loss\. "
                                         r"Received: monitor='val_acc'$"):
        train.fit(tiny_classifier(), small(digits8, 1), epochs=1, run_dir=str(run),
                  verbose=0, jit_compile=False, monitor="val_acc")
    nothing = digits8.validation.filter(lambda x, y: False)
    with pytest.raises(ValueError, match=r"^monitor 'val_loss' is not logged by this run "
                                         r"\(the validation split yielded no batch\)"):
        train.fit(tiny_classifier(), data.Splits(digits8.train.take(1), nothing, digits8.test,
                                                 digits8.info),
                  epochs=1, run_dir=str(run), verbose=0, jit_compile=False)
    with pytest.raises(ValueError, match=r"^The training split yielded no batch in epoch 1"):
        train.fit(tiny_classifier(), data.Splits(digits8.train.filter(lambda x, y: False),
                                                 digits8.validation, digits8.test,
                                                 digits8.info),
                  epochs=1, run_dir=str(run), verbose=0, jit_compile=False)
    assert not run.exists()


def test_schedules_plots_compile_and_build_check_their_arguments(tmp_path, digits8):
    # cosine_schedule(-1, 5) and (nan, 5) gave negative or NaN rates, epochs=0 was read as 1;
    # plot_learning_curves of an empty history failed in matplotlib; compile_model took
    # num_classes='a' or 0; build_for_dataset(name, info.to_dict()) raised AttributeError.
    for lr in ("a", -1, float("nan")):
        with pytest.raises(ValueError, match="learning_rate must be a positive finite number"):
            train.cosine_schedule(lr, 5)
    for epochs in (0, 2.5, None):
        with pytest.raises(ValueError, match=rf"epochs must be a positive integer\. "
                                             rf"Received: epochs={epochs}"):
            train.cosine_schedule(1e-3, epochs)
    assert train.cosine_schedule(1e-3, np.int64(2)).schedule(1) == pytest.approx(5e-4)
    with pytest.raises(ValueError, match=r"history holds no epoch of a loss or metric to plot "
                                         r"\(columns \['epoch'\], 2 rows\)"):
        train.plot_learning_curves(pd.DataFrame({"epoch": [0, 1]}), str(tmp_path / "a.png"))
    with pytest.raises(ValueError, match=r"history must be a pandas.DataFrame.*Received: str"):
        train.plot_learning_curves("history.csv", str(tmp_path / "a.png"))
    train.plot_learning_curves({"loss": [1.0, 0.5], "val_loss": [1.0, 0.7]},
                               str(tmp_path / "b.png"))
    assert (tmp_path / "b.png").exists() and not (tmp_path / "a.png").exists()
    for k in ("a", 0, -3):
        with pytest.raises(ValueError, match=rf"num_classes must be a positive integer\. "
                                             rf"Received: num_classes={k!r}"):
            train.compile_model(tiny_classifier(), num_classes=k)
    with pytest.raises(ValueError, match="compile_model takes a keras.Model. Received: NoneType"):
        train.compile_model(None)
    _, info = data.load("digits", "test", image_size=(32, 32))
    assert train.build_for_dataset("lenet5", info.to_dict()).output_shape == (None, 10)
    with pytest.raises(ValueError, match=r"build_for_dataset takes a zoo.data.DatasetInfo.*"
                                         r"Received: NoneType"):
        train.build_for_dataset("lenet5", None)


# --- one process per run directory ----------------------------------------------------

_HOLD_DIR = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    open(sys.argv[2], "w").close()
    sys.stdin.read()
""")


@pytest.fixture
def held_run_dir(tmp_path):
    """A run directory (with a file of one's own) that another process holds as a training
    run holds its run directory (an flock on the directory), until the test ends."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_DIR, str(run), str(ready)],
                            stdin=subprocess.PIPE)
    try:
        for _ in range(600):
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists()
        yield run, proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_run_directory_another_process_trains_in_is_refused(digits8, held_run_dir,
                                                              capsys):
    # Before, two runs in one directory wrote over each other's files: one ended with
    # "Unable to synchronously create file (unable to lock file ...)" and said it could be
    # resumed, the other's history.csv held a row of each.
    run, pid = held_run_dir
    with pytest.raises(FileExistsError) as exc_info:
        train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(run), verbose=0,
                  jit_compile=False)
    assert str(exc_info.value) == (
        f"{run} is in use: process {pid} is training in it (zoo train or zoo.train.fit); "
        f"wait for it to end, or use another run directory (run_dir, --run-dir)")
    assert os.listdir(run) == ["notes.txt"]
    assert zoo_main(["train", "lenet5", "--dataset", "digits", "--epochs", "1",
                     "--run-dir", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (f"zoo: error: {run} is in use: process {pid} is training in it (zoo train "
                   f"or zoo.train.fit); wait for it to end, or use another run directory "
                   f"(run_dir, --run-dir)\n")
    assert os.listdir(run) == ["notes.txt"]


def test_a_run_directory_is_held_while_fit_runs_and_released_after(digits8, tmp_path):
    run = tmp_path / "run"
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            r = subprocess.run([sys.executable, "-c", _HOLD_DIR, str(run),
                                str(tmp_path / "ready")], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True)
            seen.append("BlockingIOError" in r.stderr)

    train.fit(tiny_classifier(), digits8, epochs=1, run_dir=str(run), verbose=0,
              jit_compile=False, callbacks=[Probe()])
    assert seen == [True]                       # held while training
    assert not (tmp_path / "ready").exists()
    with train.hold_run_dir(run) as path:       # released after
        assert path == str(run)
        with train.hold_run_dir(run):           # nested in one process: one hold
            pass
    assert (run / "info.json").exists()


def test_default_run_directories_made_in_one_second_are_distinct(tmp_path, monkeypatch):
    # Before, two runs started in the same second trained into one default directory.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt: "20260101-000000")
    with train.hold_run_dir(model_name="lenet5", dataset_name="digits") as first:
        with train.hold_run_dir(model_name="lenet5", dataset_name="digits") as second:
            (tmp_path / "runs" / "lenet5-digits-20260101-000000-2" / "f").write_text("x")
    assert first == str(tmp_path / "runs" / "lenet5-digits-20260101-000000")
    assert second == first + "-2"
    # A directory made for a run that wrote nothing is removed; one with files stays.
    assert os.listdir(tmp_path / "runs") == ["lenet5-digits-20260101-000000-2"]


class _StopAfterFirstEpoch(keras.callbacks.Callback):   # as early stopping ends a run
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


def test_a_run_killed_after_its_training_ended_resumes_without_training_again(
        digits8, tmp_path, monkeypatch):
    # Before, Keras removed the backup as training ended: a run killed while it scored the
    # test split or wrote its files trained all its epochs again.
    real = keras.Model.evaluate

    def killed_while_scoring(self, *args, **kwargs):
        if kwargs.get("_use_cached_eval_dataset"):      # fit's validation
            return real(self, *args, **kwargs)
        raise _Killed()

    kw = dict(verbose=0, mixed_precision="off", jit_compile=False, early_stopping=False)
    for name, epochs, stop, again, trained_again, rows in (
            ("done", 2, [], 2, 0, [0, 1]),
            ("early", 3, [_StopAfterFirstEpoch()], 3, 0, [0]),   # stopped early: stays so
            ("longer", 2, [], 3, 1, [0, 1, 2])):                 # more epochs: trains on
        run = tmp_path / name
        with monkeypatch.context() as m:
            m.setattr(keras.Model, "evaluate", killed_while_scoring)
            with pytest.raises(_Killed):
                train.fit(tiny_classifier(), digits8, run_dir=str(run), epochs=epochs,
                          callbacks=stop, **kw)
        assert (run / "backup").is_dir() and not (run / "info.json").exists()
        batches = []
        count = keras.callbacks.LambdaCallback(
            on_train_batch_begin=lambda batch, logs: batches.append(batch))
        history = train.fit(tiny_classifier(), digits8, run_dir=str(run), epochs=again,
                            callbacks=[count], **kw)
        assert len(batches) == 3 * trained_again, name        # 3 batches an epoch
        assert list(history["epoch"]) == rows, name
        assert (run / "info.json").is_file() and not (run / "backup").exists()


def test_adamw_trains_and_records_the_weight_decay_it_applies(digits8, tmp_path):
    # Keras' AdamW decays by 0.004 by default: `--optimizer adamw` trained with it while
    # info.json recorded none, and `--weight-decay 0` (0 read as none) did not turn it off.
    def one_step(optimizer):   # a zero gradient: only the decay moves the weight from 1
        v = keras.Variable(np.ones((3,), "float32"))
        optimizer.build([v])
        optimizer.apply([keras.ops.zeros((3,))], [v])
        return float(v.numpy()[0])

    for weight_decay, decay, after in ((None, 0.004, 1 - 0.01 * 0.004), (0, 0.0, 1.0),
                                       (0.1, 0.1, 1 - 0.01 * 0.1)):
        optimizer = train.make_optimizer("adamw", 0.01, weight_decay)
        assert optimizer.weight_decay == pytest.approx(decay)
        assert one_step(optimizer) == pytest.approx(after, rel=1e-7)
    kw = dict(epochs=1, verbose=0, mixed_precision="off", jit_compile=False)
    for weight_decay, decay in ((None, 0.004), (0, 0.0), (1e-3, 1e-3)):
        run = tmp_path / f"adamw-{weight_decay}"
        train.fit(tiny_classifier(), small(digits8, 1), run_dir=str(run), optimizer="adamw",
                  weight_decay=weight_decay, **kw)
        settings = json.loads((run / "info.json").read_text())["settings"]
        assert settings["weight_decay"] == pytest.approx(decay)
        assert zoo.load_model(str(run)).optimizer.weight_decay == pytest.approx(decay)
    # the others decay by none without one given, or with 0
    for name in ("adam", "sgd", "rmsprop", "nadam", "adagrad"):
        for weight_decay in (None, 0):
            assert one_step(train.make_optimizer(name, 0.01, weight_decay)) == 1.0
            # and record none (a run started without one resumes with --weight-decay 0)
            assert train.make_optimizer(name, 0.01, weight_decay).weight_decay is None
            assert train._optimization_record(name, 0.01, "constant", weight_decay, None, 0.0,
                                              None)["weight_decay"] is None
        assert one_step(train.make_optimizer(name, 0.01, 0.1)) == pytest.approx(0.999)


def test_a_weight_decay_or_clip_norm_fit_would_not_apply_is_refused(digits8, tmp_path):
    # An optimizer instance brings its own weight decay (and gradient clipping): a
    # weight_decay given with it was ignored, and recorded in info.json; the instance's own
    # was not recorded. With compile=False, label_smoothing was ignored and recorded too.
    run = tmp_path / "run"
    kw = dict(epochs=1, verbose=0, mixed_precision="off", jit_compile=False)
    compiled = tiny_classifier()
    compiled.compile(optimizer=keras.optimizers.SGD(0.05, weight_decay=0.01,
                                                    global_clipnorm=2.0),
                     loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for name, value, own, compiled_own in (
            ("weight_decay", 1e-3, "weight_decay=None", "weight_decay=0.01"),
            ("clip_norm", 1.0, "global_clipnorm=None", "global_clipnorm=2.0")):
        with pytest.raises(ValueError, match=re.escape(
                f"{name} is for a named optimizer (adam, adamw, sgd, rmsprop, nadam, "
                f"adagrad); an optimizer instance brings its own (SGD with {own}): set "
                f"it there. Received: {name}={value}")):
            train.fit(tiny_classifier(), digits8, run_dir=str(run),
                      optimizer=keras.optimizers.SGD(0.05), **{name: value}, **kw)
        with pytest.raises(ValueError, match=re.escape(
                f"the model's own optimizer (compile=False) brings its own (SGD with "
                f"{compiled_own}): set it there. Received: {name}={value}")):
            train.fit(compiled, digits8, run_dir=str(run), compile=False, **{name: value},
                      **kw)
        with pytest.raises(ValueError, match=f"Received: {name}={value}"):
            train.compile_model(tiny_classifier(), optimizer=keras.optimizers.Adam(),
                                **{name: value})
    with pytest.raises(ValueError, match=re.escape(
            "an optimizer instance brings its own (AdamW with weight_decay=0.004): set it "
            "there. Received: weight_decay=0")):
        train.compile_model(tiny_classifier(), optimizer=keras.optimizers.AdamW(0.01),
                            weight_decay=0)
    # a loss-scaled optimizer's are its inner optimizer's
    scaled = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.05, weight_decay=0.01, global_clipnorm=2.0))
    for name, value, own in (("weight_decay", 1e-3, "weight_decay=0.01"),
                             ("clip_norm", 1.0, "global_clipnorm=2.0")):
        with pytest.raises(ValueError, match=re.escape(f"(LossScaleOptimizer with {own})")):
            train.fit(tiny_classifier(), digits8, run_dir=str(run), optimizer=scaled,
                      **{name: value}, **kw)
    with pytest.raises(ValueError, match=re.escape(
            "label_smoothing is a setting of the loss fit compiles; with compile=False the "
            "model's own compilation trains (its loss): give it there. Received: "
            "label_smoothing=0.1, compile=False")):
        train.fit(compiled, digits8, run_dir=str(run), compile=False, label_smoothing=0.1,
                  **kw)
    assert not run.exists()
    # the instance's own weight decay and clipping are recorded
    for name, model, extra in (
            ("adamw", tiny_classifier(), dict(optimizer=keras.optimizers.AdamW(0.01))),
            ("own", compiled, dict(compile=False))):
        train.fit(model, small(digits8, 1), run_dir=str(tmp_path / name), **extra, **kw)
        settings = json.loads((tmp_path / name / "info.json").read_text())["settings"]
        assert settings["weight_decay"] == pytest.approx({"adamw": 0.004, "own": 0.01}[name])
        assert settings["clip_norm"] == {"adamw": None, "own": 2.0}[name]


def test_a_killed_adamw_run_recorded_without_its_weight_decay_resumes(tmp_path):
    # A run killed before AdamW's default decay was recorded holds weight_decay None (and
    # trained at 0.004): it resumes, without a --weight-decay no option could match.
    splits, _ = toy_splits()
    run = tmp_path / "run"
    kw = dict(epochs=2, run_dir=str(run), verbose=0, mixed_precision="off", jit_compile=False,
              optimizer="adamw")
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(num_classes=3), splits, callbacks=[_KillAfterFirstEpoch()],
                  **kw)
    path = run / "backup" / "zoo_run.json"
    state = json.loads(path.read_text())
    assert state["optimization"]["weight_decay"] == 0.004
    state["optimization"]["weight_decay"] = None
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"holds a killed run that trained with "
                                         r"--weight-decay 0.004; .* Received: "
                                         r"weight_decay=0.0$"):
        train.fit(tiny_classifier(num_classes=3), splits, weight_decay=0, **kw)
    history = train.fit(tiny_classifier(num_classes=3), splits, **kw)
    assert list(history["epoch"]) == [0, 1]
    assert json.loads((run / "info.json").read_text())["settings"]["weight_decay"] == 0.004


def test_clip_norm_scales_each_steps_gradients_together_to_the_global_norm():
    # Keras' global_clipnorm: the gradients of all variables are scaled by one factor, so
    # their joint norm is at most clip_norm (clipnorm would clip each variable's alone).
    def one_step(optimizer):   # SGD's first step moves by learning rate x gradient
        a, b = keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(2, "float32"))
        optimizer.build([a, b])
        optimizer.apply([keras.ops.convert_to_tensor([3.0, 0.0]),
                         keras.ops.convert_to_tensor([0.0, 4.0])], [a, b])   # norm 5
        return np.concatenate([a.numpy(), b.numpy()])

    np.testing.assert_allclose(one_step(train.make_optimizer("sgd", 0.1)),
                               [-0.3, 0, 0, -0.4], rtol=1e-6)
    np.testing.assert_allclose(one_step(train.make_optimizer("sgd", 0.1, clip_norm=10)),
                               [-0.3, 0, 0, -0.4], rtol=1e-6)         # 5 < 10: unclipped
    np.testing.assert_allclose(one_step(train.make_optimizer("sgd", 0.1, clip_norm=1.0)),
                               [-0.06, 0, 0, -0.08], rtol=1e-5)       # scaled by 1/5
    # under float16 loss scaling (compile_model's wrapper) the unscaled gradients are clipped
    scaled = keras.optimizers.LossScaleOptimizer(
        train.make_optimizer("sgd", 0.1, clip_norm=1.0), initial_scale=1024.0)
    a, b = keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(2, "float32"))
    scaled.build([a, b])
    scaled.apply([keras.ops.convert_to_tensor([3072.0, 0.0]),
                  keras.ops.convert_to_tensor([0.0, 4096.0])], [a, b])
    np.testing.assert_allclose(np.concatenate([a.numpy(), b.numpy()]),
                               [-0.06, 0, 0, -0.08], rtol=1e-5)
    for name in train.OPTIMIZERS:
        optimizer = train.make_optimizer(name, 0.01, clip_norm=2)
        assert optimizer.global_clipnorm == 2.0 and optimizer.clipnorm is None, name
        assert train.make_optimizer(name, 0.01).global_clipnorm is None, name


def test_fit_trains_with_clip_norm_and_records_it(digits8, tmp_path):
    kw = dict(epochs=1, verbose=0, mixed_precision="off", jit_compile=False,
              early_stopping=False)
    start = tiny_classifier()
    run = tmp_path / "clipped"
    # 3 steps of SGD (momentum 0.9) at rate 1, each step's gradients clipped to 1e-4: the
    # weights move by at most 1e-4 (1 + 1.9 + 2.71); unclipped, by far more
    clipped = keras.models.clone_model(start)
    clipped.set_weights(start.get_weights())
    train.fit(clipped, digits8, run_dir=str(run), optimizer="sgd", learning_rate=1.0,
              clip_norm=1e-4, **kw)
    free = keras.models.clone_model(start)
    free.set_weights(start.get_weights())
    train.fit(free, digits8, run_dir=str(tmp_path / "free"), optimizer="sgd",
              learning_rate=1.0, **kw)

    def moved(model):
        return np.sqrt(sum(np.sum((w.numpy() - w0) ** 2) for w, w0 in
                           zip(model.trainable_weights, start.get_weights())))
    assert 0 < moved(clipped) <= 5.61e-4 * (1 + 1e-5)
    assert moved(free) > 100 * moved(clipped)
    settings = json.loads((run / "info.json").read_text())["settings"]
    assert settings["clip_norm"] == 1e-4
    assert zoo.load_model(str(run)).optimizer.global_clipnorm == pytest.approx(1e-4)
    assert json.loads((tmp_path / "free" / "info.json").read_text())[
        "settings"]["clip_norm"] is None


@pytest.mark.parametrize("clip_norm", [0, -1.0, float("nan"), float("inf"), "2", True])
def test_a_clip_norm_that_is_no_positive_finite_number_is_refused(clip_norm, digits8, tmp_path):
    message = ("clip_norm must be None or a finite number > 0 (the largest global norm of a "
               f"step's gradients). Received: clip_norm={clip_norm!r}")
    with pytest.raises(ValueError, match=re.escape(message)):
        train.make_optimizer("adam", 1e-3, clip_norm=clip_norm)
    with pytest.raises(ValueError, match=re.escape(message)):
        train.fit(tiny_classifier(), digits8, run_dir=str(tmp_path / "run"),
                  clip_norm=clip_norm, epochs=1, verbose=0)
    assert not (tmp_path / "run").exists()


def test_a_killed_run_resumes_only_with_the_clip_norm_it_started_with(tmp_path):
    splits, _ = toy_splits()
    run = tmp_path / "run"
    kw = dict(epochs=2, run_dir=str(run), verbose=0, mixed_precision="off", jit_compile=False)
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(num_classes=3), splits, clip_norm=2.0,
                  callbacks=[_KillAfterFirstEpoch()], **kw)
    path = run / "backup" / "zoo_run.json"
    assert json.loads(path.read_text())["optimization"]["clip_norm"] == 2.0
    with pytest.raises(ValueError, match=re.escape(
            f"{run} holds a killed run that trained with --clip-norm 2.0; resume it with the "
            f"same (its optimizer's state, learning rate included, is restored from the "
            f"backup), or use another run directory. Received: clip_norm=None")):
        train.fit(tiny_classifier(num_classes=3), splits, **kw)
    # a backup written before clipping was recorded trained without it, and resumes so
    state = json.loads(path.read_text())
    del state["optimization"]["clip_norm"]
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"trained with no --clip-norm; .* "   # (was None)
                                         r"Received: clip_norm=2\.0$"):
        train.fit(tiny_classifier(num_classes=3), splits, clip_norm=2.0, **kw)
    history = train.fit(tiny_classifier(num_classes=3), splits, **kw)
    assert list(history["epoch"]) == [0, 1]


def test_zoo_train_clip_norm_option(monkeypatch, capsys):
    seen = fit_arguments(monkeypatch)
    assert zoo_main(["train", "lenet5", "--epochs", "1", "--clip-norm", "2"]) == 1
    assert seen["clip_norm"] == 2.0
    seen.clear()
    assert zoo_main(["train", "lenet5", "--epochs", "1"]) == 1
    assert seen["clip_norm"] is None
    capsys.readouterr()
    for value in ("0", "-1", "inf", "nan", "x"):
        with pytest.raises(SystemExit) as exit_info:
            zoo_main(["train", "lenet5", "--clip-norm", value])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err
        assert err.endswith(f"argument --clip-norm: expected a finite gradient norm > 0; "
                            f"received '{value}'")


def test_a_killed_run_resumes_only_with_the_monitor_it_started_with(digits8, tmp_path):
    # Its best checkpoint holds the best epoch by the killed run's monitor: resumed with
    # another, model.keras kept that epoch while metrics.json named the best by the new one
    # (seed 0: best_epoch 3, val_accuracy 0.094, but model.keras scored epoch 1's 0.0625).
    run = tmp_path / "run"
    kw = dict(epochs=3, run_dir=str(run), verbose=0, mixed_precision="off", jit_compile=False,
              early_stopping=False)
    with pytest.raises(_Killed):
        train.fit(tiny_classifier(), digits8, callbacks=[_KillAfterFirstEpoch()], **kw)
    with pytest.raises(ValueError, match=re.escape(
            f"{run} holds a killed run that watched monitor='val_loss' (its best checkpoint, "
            f"early stopping and plateau schedule count by it); resume it with the same "
            f"(--monitor val_loss), or use another run directory. Received: "
            f"monitor='val_accuracy'")):
        train.fit(tiny_classifier(), digits8, monitor="val_accuracy", **kw)
    path = run / "backup" / "zoo_run.json"   # still there to resume
    state = json.loads(path.read_text())
    assert state["monitor"] == "val_loss"
    with pytest.raises(_Killed):   # the same resumes (killed again after epoch 2)
        train.fit(tiny_classifier(), digits8, callbacks=[_KillAfterEpoch(1)], **kw)
    state = json.loads(path.read_text())
    assert train._epochs_backed_up(str(run / "backup")) == 2
    # a backup recorded before the monitor was (no such key) resumes with any
    del state["monitor"]
    path.write_text(json.dumps(state))
    history = train.fit(tiny_classifier(), digits8, monitor="val_accuracy", **kw)
    assert list(history["epoch"]) == [0, 1, 2]
    assert json.loads((run / "info.json").read_text())["settings"]["monitor"] == "val_accuracy"


def test_tensorboard_logs_the_rate_each_epoch_trained_at_as_history_csv(digits8, tmp_path):
    # TensorBoard logs the optimizer's rate as it finds it at an epoch's end: it came after
    # the plateau schedule, so the epoch that lowered the rate was logged at the lowered one
    # (epoch 4 at 1e-31, trained at 1e-30), unlike history.csv.
    history = train.fit(tiny_classifier(), digits8, run_dir=str(tmp_path), epochs=5, verbose=0,
                        learning_rate=1e-30, lr_schedule="plateau", early_stopping=False,
                        mixed_precision="off", jit_compile=False)
    logged = {}
    for path in (tmp_path / "logs" / "train").glob("events*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "epoch_learning_rate":
                    logged[event.step] = float(tf.make_ndarray(value.tensor))
    assert [logged[epoch] for epoch in sorted(logged)] == pytest.approx(
        history["learning_rate"].tolist(), rel=1e-6, abs=0)
    assert history["learning_rate"].tolist() == pytest.approx([1e-30] * 4 + [1e-31],
                                                              rel=1e-6, abs=0)


def test_learning_curves_mark_the_best_epoch_by_the_monitor(digits8, tmp_path, monkeypatch):
    # The dashed line marked the lowest val_loss whatever the monitor: with
    # monitor="val_accuracy" (zoo train --monitor) not the epoch the run kept.
    import matplotlib.axes
    marked = []
    real = matplotlib.axes.Axes.axvline

    def axvline(self, x=0, *args, **kwargs):
        marked.append(float(x))
        return real(self, x, *args, **kwargs)
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline", axvline)
    history = pd.DataFrame({"epoch": [0, 1, 2, 3], "loss": [2.0, 1.5, 1.2, 1.0],
                            "val_loss": [1.9, 1.4, 1.6, 1.7],
                            "accuracy": [0.1, 0.3, 0.5, 0.6],
                            "val_accuracy": [0.1, 0.3, 0.6, 0.5]})
    for monitor, epoch in (("val_loss", 2), ("val_accuracy", 3), ("loss", 4), ("accuracy", 4),
                           ("val_mean_iou", 2)):   # (not logged: val_loss's)
        marked.clear()
        train.plot_learning_curves(history, str(tmp_path / "curves.png"), monitor=monitor)
        assert marked == [epoch, epoch], monitor   # one line on each of the two plots
    # fit marks the run's monitor
    seen = []
    plot = train.plot_learning_curves
    monkeypatch.setattr(train, "plot_learning_curves",
                        lambda *a, **kw: seen.append(kw.get("monitor")) or plot(*a, **kw))
    train.fit(tiny_classifier(), small(digits8, 1), run_dir=str(tmp_path / "run"), epochs=1,
              verbose=0, monitor="val_accuracy", mixed_precision="off", jit_compile=False)
    assert seen == ["val_accuracy"]


def test_learning_curves_plot_the_learning_rate_when_it_changed(tmp_path, monkeypatch):
    import matplotlib.axes
    scales = []
    real = matplotlib.axes.Axes.set_yscale

    def set_yscale(self, value, **kwargs):
        scales.append(value)
        return real(self, value, **kwargs)
    monkeypatch.setattr(matplotlib.axes.Axes, "set_yscale", set_yscale)
    base = {"epoch": [0, 1, 2, 3], "loss": [2.0, 1.5, 1.2, 1.0], "val_loss": [1.9, 1.4, 1.6, 1.7]}
    path = tmp_path / "curves.png"
    # a plateau schedule's rates: a panel of its own, on a log scale
    assert train.plot_learning_curves({**base, "learning_rate": [1e-2, 1e-2, 1e-3, 1e-3]},
                                      str(path)) == ["loss", "learning_rate"]
    assert path.stat().st_size > 0 and scales == ["log"]
    # a constant rate, or none logged (a run from before): no such panel
    for history in ({**base, "learning_rate": [1e-3] * 4}, base):
        scales.clear()
        assert train.plot_learning_curves(history, str(path)) == ["loss"]
        assert scales == []
    # fit's run with a cosine schedule draws it
    seen = []
    plot = train.plot_learning_curves
    monkeypatch.setattr(train, "plot_learning_curves",
                        lambda *a, **kw: seen.append(plot(*a, **kw)))
    digits = small(data.load_splits("digits", image_size=(8, 8), batch_size=32), 1)
    train.fit(tiny_classifier(), digits, run_dir=str(tmp_path / "run"), epochs=2, verbose=0,
              lr_schedule="cosine", mixed_precision="off", jit_compile=False)
    assert seen == [["accuracy", "loss", "learning_rate"]]


def test_a_loss_scaled_optimizer_with_a_schedule_of_its_own_is_seen_as_one(digits8, tmp_path):
    # A LossScaleOptimizer (Keras wraps a mixed_float16 model's in one as it compiles: fit's
    # compile=False) has no learning_rate in its config: its schedule was read as a number,
    # so lr_schedule='cosine' failed in Keras' scheduler as training began ("its learning
    # rate is not settable"), 'plateau' after a plateau, and info.json recorded 0.05.
    decay = keras.optimizers.schedules.ExponentialDecay(0.05, 10, 0.9)
    run = tmp_path / "run"
    kw = dict(epochs=1, verbose=0, mixed_precision="off", jit_compile=False)
    for schedule in ("cosine", "plateau"):
        with pytest.raises(ValueError, match=rf"^lr_schedule='{schedule}' .* the optimizer has "
                                             rf"a schedule of its own \(ExponentialDecay\)"):
            train.fit(tiny_classifier(), digits8, run_dir=str(run), lr_schedule=schedule,
                      early_stopping=False,
                      optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(decay)),
                      **kw)
        assert not run.exists()
    train.fit(tiny_classifier(), small(digits8, 1), run_dir=str(run),
              optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(decay)), **kw)
    settings = json.loads((run / "info.json").read_text())["settings"]
    assert (settings["optimizer"], settings["learning_rate"]) == ("LossScaleOptimizer",
                                                                  "ExponentialDecay")
