"""Fine-tuning from pretrained weights: ``zoo.train.pretrained_classifier`` and ``zoo train
--weights imagenet|PATH [--freeze-backbone]`` (a new head on the backbone, the ImageNet
input conversion, the run's record, export, predict and resume), the refusals of models
whose output is no classifier of the dataset, frozen batch norms left as they are, and
U-Net's ImageNet backbone behind ``imagenet_input``."""

import json
import re

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format
from PIL import Image

import zoo
from zoo import data, serving, train
from zoo import weights as zoo_weights
from zoo.cli import main as zoo_main
from zoo.models import resnet as R
from zoo.models.unet import unet

from conftest import make_colour_folder, randomise_batch_norms  # noqa: E402

SHAPE = (32, 32, 3)
LABELS = ("cat", "dog", "fox")
HEAD_18 = 512 * 3 + 3          # Dense(3) on ResNet-18's 512 pooled features
HEAD_50 = 2048 * 3 + 3


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _norms(model):
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny 3-class folder dataset whose classes differ by colour."""
    return make_colour_folder(tmp_path_factory.mktemp("pretrained_data"), LABELS, SHAPE)


@pytest.fixture(scope="module")
def splits(folder):
    return data.load_splits(f"folder:{folder}", image_size=SHAPE[:2], batch_size=8)


@pytest.fixture(scope="module")
def source():
    """A ResNet-18 backbone with distinct weights, and its file."""
    return randomise_batch_norms(zoo.resnet18(include_top=False, pooling="avg", input_shape=SHAPE))


@pytest.fixture(scope="module")
def backbone_file(source, tmp_path_factory):
    path = tmp_path_factory.mktemp("pretrained_weights") / "resnet18_notop.weights.h5"
    source.save_weights(path)
    return str(path)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """``KERAS_HOME`` holding ResNet-50's no-top file in the published layout (what
    ``weights="imagenet"`` loads offline), and the Keras model it was written from."""
    home = tmp_path_factory.mktemp("keras_home")
    (home / "models").mkdir()
    ref = randomise_batch_norms(keras.applications.ResNet50(weights=None, include_top=False,
                                                 input_shape=SHAPE), seed=1)
    path = home / "models" / R.WEIGHT_FILES["resnet50"][False].fname
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, ref)
    return home, str(path), ref


def _has_file_weights(backbone, ref):
    return all(_same(backbone.get_layer(layer.name).get_weights(), layer.get_weights())
               for layer in ref.layers if layer.weights)


# ---------------------------------------------------------------------------------------
# pretrained_classifier

def test_a_pretrained_classifier_starts_from_the_file_under_a_new_head(source, backbone_file,
                                                                      splits, tmp_path):
    frozen = train.pretrained_classifier("resnet18", splits.info, weights=backbone_file,
                                         freeze_backbone=True)
    assert [layer.name for layer in frozen.layers] == ["images", "resnet18", "head_dropout",
                                                       "predictions"]
    backbone = frozen.get_layer("resnet18")
    assert _same(backbone.get_weights(), source.get_weights())
    assert _count(frozen.trainable_weights) == HEAD_18
    assert _count(frozen.non_trainable_weights) == source.count_params() == 11_186_112
    assert not any(norm.trainable for norm in _norms(backbone))   # inference mode
    assert frozen.get_layer("predictions").activation.__name__ == "softmax"
    assert frozen.pretrained_info == {"backbone": "resnet18", "weights": backbone_file,
                                      "freeze_backbone": True, "imagenet_input": False,
                                      "head_dropout": 0.2}
    # Not frozen: the backbone trains too, its moving statistics aside.
    whole = train.pretrained_classifier("resnet18", splits.info, weights=backbone_file,
                                        dropout=0)
    assert "head_dropout" not in [layer.name for layer in whole.layers]
    assert _count(whole.trainable_weights) == _count(source.trainable_weights) + HEAD_18
    assert _count(whole.non_trainable_weights) == _count(source.non_trainable_weights) == 9_600
    # A run directory gives its model.keras: the backbone's layers by name.
    (tmp_path / "run").mkdir()
    frozen.save(tmp_path / "run" / "model.keras")
    again = train.pretrained_classifier("resnet18", splits.info, weights=str(tmp_path / "run"))
    assert _same(again.get_layer("resnet18").get_weights(), source.get_weights())
    assert again.pretrained_info["weights"] == str(tmp_path / "run" / "model.keras")


def test_imagenet_weights_get_the_input_conversion_kept_fixed_through_mixed_precision(
        published, splits, tmp_path, monkeypatch):
    home, path, ref = published
    monkeypatch.setenv("KERAS_HOME", str(home))
    model = train.pretrained_classifier("resnet50", splits.info, weights="imagenet",
                                        freeze_backbone=True)
    assert [layer.name for layer in model.layers] == ["images", "imagenet_input", "resnet50",
                                                      "head_dropout", "predictions"]
    conversion = model.get_layer("imagenet_input")
    fixed = conversion.get_weights()
    assert not conversion.trainable
    raw = np.random.default_rng(3).uniform(0, 255, (2, *SHAPE)).astype("float32")
    np.testing.assert_allclose(   # the input the published weights were trained on
        keras.ops.convert_to_numpy(conversion(data.preprocess(raw, splits.info))),
        keras.applications.resnet.preprocess_input(raw.copy()), atol=1e-3)
    assert _has_file_weights(model.get_layer("resnet50"), ref)
    assert _count(model.trainable_weights) == HEAD_50
    head = model.get_layer("predictions").get_weights()

    train.fit(model, splits, epochs=1, learning_rate=1e-2, mixed_precision="bfloat16",
              run_dir=str(tmp_path / "run"), verbose=0, model_name="resnet50")
    trained = train.fit.last_model   # the rebuilt bfloat16 copy
    assert trained is not model
    assert trained.get_layer("resnet50").get_layer("conv1_conv").compute_dtype == "bfloat16"
    assert not trained.get_layer("imagenet_input").trainable
    assert _same(trained.get_layer("imagenet_input").get_weights(), fixed)
    assert _count(trained.trainable_weights) == HEAD_50
    assert _same(model.get_layer("imagenet_input").get_weights(), fixed)
    assert _has_file_weights(model.get_layer("resnet50"), ref)   # frozen, statistics too
    assert not _same(model.get_layer("predictions").get_weights(), head)
    info = json.loads((tmp_path / "run" / "info.json").read_text())
    assert info["settings"]["pretrained"] == {"backbone": "resnet50", "weights": "imagenet",
                                              "freeze_backbone": True, "imagenet_input": True,
                                              "head_dropout": 0.2}
    assert info["params"]["trainable"] == HEAD_50
    assert info["settings"]["batch_norm_momentum"] is None   # no batch norm trains
    saved = zoo.load_model(tmp_path / "run")
    assert not saved.get_layer("imagenet_input").trainable
    assert _same(saved.get_layer("imagenet_input").get_weights(), fixed)

    # Which files get the conversion: Keras' published layout, a model trained behind it.
    expects = zoo_weights.expects_imagenet_input
    assert expects("resnet50", "imagenet") and expects("resnet50", path)
    assert expects("resnet50", str(tmp_path / "run" / "model.keras"))
    model.get_layer("resnet50").save_weights(tmp_path / "b.weights.h5")   # names no layers
    assert not expects("resnet50", str(tmp_path / "b.weights.h5"))
    assert not expects("resnet18", path)   # no ImageNet weights exist for it


# ---------------------------------------------------------------------------------------
# zoo train --weights

def test_zoo_train_weights_freeze_backbone_export_and_predict(folder, source, backbone_file,
                                                               tmp_path, capsys):
    run, base = tmp_path / "run", tmp_path / "saved"
    assert zoo_main(["train", "resnet18", "--dataset", f"folder:{folder}", "--image-size",
                     "32,32", "--weights", backbone_file, "--freeze-backbone", "--epochs", "1",
                     "--batch-size", "8", "--mixed-precision", "off", "--quiet",
                     "--run-dir", str(run), "--export", "--base-dir", str(base)]) == 0
    assert capsys.readouterr().out.strip().endswith(f", exported to {base}/resnet18/1")
    info = json.loads((run / "info.json").read_text())
    assert info["settings"]["pretrained"] == {"backbone": "resnet18", "weights": backbone_file,
                                              "freeze_backbone": True,
                                              "imagenet_input": False, "head_dropout": 0.2}
    assert info["params"] == {"trainable": HEAD_18, "non_trainable": 11_186_112}
    assert info["settings"]["batch_norm_momentum"] is None
    model = zoo.load_model(run)
    backbone = model.get_layer("resnet18")
    assert _same(backbone.get_weights(), source.get_weights())   # frozen: the file's
    assert {norm.momentum for norm in _norms(backbone)} == {0.99}   # left as they were
    assert _count(model.trainable_weights) == HEAD_18

    # The export and zoo predict give the trained model's probabilities.
    files = sorted(str(p) for p in (folder / "test").glob("*/*.png"))
    raw = np.stack([np.asarray(Image.open(p), dtype=np.float32) for p in files])
    expected = model.predict(data.preprocess(raw, data.DatasetInfo.from_dict(info["dataset"])),
                             verbose=0)
    export = base / "resnet18" / "1"
    np.testing.assert_allclose(serving.load(str(export)).predict(raw)["probabilities"],
                               expected, atol=1e-5)
    assert zoo_main(["predict", str(base / "resnet18"), *files, "--top-k", "3", "--no-xla",
                     "--format", "jsonl"]) == 0
    for line, p in zip(capsys.readouterr().out.splitlines(), expected):
        record = json.loads(line)
        got = dict(zip(record["labels"], record["probabilities"]))
        assert [got[label] for label in LABELS] == pytest.approx(p, abs=1e-5)


class _Killed(Exception):
    pass


class _KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):     # after the epoch's backup
        raise _Killed()


def test_a_killed_run_resumes_only_from_the_same_start(backbone_file, splits, tmp_path):
    run = tmp_path / "run"

    def model(freeze):
        return train.pretrained_classifier("resnet18", splits.info, weights=backbone_file,
                                           freeze_backbone=freeze)

    kw = dict(epochs=2, run_dir=str(run), verbose=0, mixed_precision="off",
              early_stopping=False, model_name="resnet18")
    with pytest.raises(_Killed):
        train.fit(model(True), splits, callbacks=[_KillAfterFirstEpoch()], **kw)
    state = json.loads((run / "backup" / "zoo_run.json").read_text())
    assert state["pretrained"]["freeze_backbone"] is True
    with pytest.raises(ValueError, match=r"holds a killed run that trained from resnet18 "
                                         r"weights '.*resnet18_notop.weights.h5' \(frozen "
                                         r"backbone, imagenet_input False\); resume it with the "
                                         r"same weights and freezing .*Received: a model from "
                                         r"resnet18 .*\(trainable backbone"):
        train.fit(model(False), splits, **kw)
    with pytest.raises(ValueError, match=r"Received: a model without pretrained weights"):
        train.fit(zoo.resnet18(input_shape=SHAPE, num_classes=3), splits, **kw)
    history = train.fit(model(True), splits, **kw)
    assert list(history["epoch"]) == [0, 1]          # resumed after epoch 0


@pytest.mark.parametrize("args, message", [
    (["resnet18", "--model-arg", "include_top=false"],
     r"resnet18 with include_top=False is a feature extractor .*not a classifier of the 3 "
     r"classes of dataset 'folder:.*': add a classifier head .*zoo train resnet18 --weights "
     r"PATH\. Received"),
    (["resnet18", "--model-arg", "include_top=false", "--model-arg", "pooling=avg"],
     r"resnet18 with include_top=False is a feature extractor \(resnet18's features, "
     r"pooling='avg'\)"),
    (["resnet50", "--model-arg", "weights=imagenet"],
     r"resnet50: weights='imagenet' as a builder option loads the 1000-class ImageNet "
     r"classifier, and dataset .* has 3 classes: .*zoo train resnet50 --weights imagenet"),
    (["resnet18", "--weights", "imagenet"],
     r"resnet18 has no published 'imagenet' weights \(models with them: inception_v3, .*\); "
     r"give a weights file instead: --weights PATH"),
    (["resnet18", "--freeze-backbone"],
     r"--freeze-backbone goes with pretrained weights: add --weights imagenet\|PATH"),
    (["resnet18", "--weights", "BACKBONE", "--model-arg", "include_top=true"],
     r"include_top is not a builder option here. Received: include_top=True"),
    (["resnet18", "--weights", "BACKBONE", "--model-arg", "weights=BACKBONE"],   # a TypeError
     r"resnet18: weights \(a builder option, --model-arg weights=: the whole model's, its top "
     r"included\) and backbone_weights \(--weights: .*\) both give weights; give one\. "
     r"Received: weights='.*resnet18_notop.weights.h5', backbone_weights="),
])
def test_combinations_that_cannot_work_are_one_line_errors(args, message, folder,
                                                            backbone_file, tmp_path, capsys):
    args = [a.replace("BACKBONE", backbone_file) for a in args]
    assert zoo_main(["train", *args, "--dataset", f"folder:{folder}", "--image-size", "32,32",
                     "--epochs", "1", "--quiet", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("zoo: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["resnet50", "--weights", "imagenet"],   # digits: 1 channel
     r"resnet50's ImageNet weights take 3-channel \(RGB\) images and dataset 'digits' has 1 "
     r"channel: load it in RGB \(--channels 3, .*Received: input_shape=\(32, 32, 1\)"),
    (["unet", "--weights", "imagenet"],
     r"unet has no pretrained weights of its own; --weights are for its encoder, a classifier "
     r"backbone: --model-arg backbone=resnet50 --weights imagenet"),
])
def test_imagenet_weights_need_rgb_and_unet_a_backbone(args, message, tmp_path, capsys):
    assert zoo_main(["train", *args, "--image-size", "32,32", "--epochs", "1", "--quiet",
                     "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(message, err), err


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_hides_the_download_of_published_weights(quiet, folder, tmp_path, monkeypatch,
                                                       capsys):
    """``--quiet``: one error line and nothing else; Keras' fetch of the published file
    printed ``Downloading data from URL`` (and a progress bar) under it too."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))   # not in the cache
    missing = zoo_weights.WeightFile("resnet50_notop.h5", (tmp_path / "nowhere").as_uri() + "/")
    monkeypatch.setitem(R.WEIGHT_FILES, "resnet50", {True: missing, False: missing})
    assert zoo_main(["train", "resnet50", "--weights", "imagenet", "--dataset",
                     f"folder:{folder}", "--image-size", "32,32", "--epochs", "1",
                     *(["--quiet"] if quiet else []), "--run-dir", str(tmp_path / "run")]) == 2
    out, err = capsys.readouterr()
    assert out == ("" if quiet else f"Downloading data from {missing.url}\n")
    assert len(err.splitlines()) == 1 and err.startswith(
        "zoo: error: resnet50: could not fetch the 'imagenet' weights resnet50_notop.h5"), err
    assert keras.config.is_interactive_logging_enabled()   # restored


# ---------------------------------------------------------------------------------------
# fit: an output that is no classifier of the dataset

def test_options_fine_tuning_cannot_take_are_one_line_errors(backbone_file, splits):
    with pytest.raises(ValueError, match=r"^resnet18: weights \(a builder option.* both give "
                                         r"weights; give one"):   # was a TypeError
        train.build_for_dataset("resnet18", splits.info, backbone_weights=backbone_file,
                                weights=backbone_file)
    with pytest.raises(ValueError, match=r"^pretrained_classifier: aux_logits=True adds "
                                         r"auxiliary classifiers to googlenet's own top, and "
                                         r"fine-tuning builds the backbone without it"):
        train.build_for_dataset("googlenet", splits.info, backbone_weights=backbone_file,
                                aux_logits=True)   # said "needs include_top=True"


def test_fit_refuses_a_backbones_features_and_takes_heads_of_ones_own(splits, tmp_path):
    kw = dict(epochs=1, verbose=0, mixed_precision="off")
    with pytest.raises(ValueError, match=r"resnet18 outputs 512 features, not class scores of "
                                         r"the 3 classes of dataset 'folder:.*' \(an include_top="
                                         r"False backbone\?\): add a classifier head .*"
                                         r"pretrained_classifier.*Received: output \(None, "
                                         r"512\) from GlobalAveragePooling2D 'avg_pool'"):
        train.fit(zoo.resnet18(include_top=False, pooling="avg", input_shape=SHAPE), splits,
                  run_dir=str(tmp_path / "a"), **kw)
    with pytest.raises(ValueError, match=r"resnet18 outputs feature maps \(None, 1, 1, 512\), "
                                         r"not class scores \[batch, 3\]"):
        train.fit(zoo.resnet18(include_top=False, input_shape=SHAPE), splits,
                  run_dir=str(tmp_path / "b"), **kw)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    def small(width, activation):
        inputs = keras.Input(SHAPE)
        x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(width, activation=activation)(x))

    # A head of one's own: logits of the 3 classes, or a softmax over more classes.
    for name, model in (("logits", small(3, None)), ("wider", small(5, "softmax"))):
        train.fit(model, splits, run_dir=str(tmp_path / name), **kw)
        assert "test_accuracy" in json.loads((tmp_path / name / "metrics.json").read_text())


# ---------------------------------------------------------------------------------------
# Batch-norm momentum

def test_frozen_batch_norms_keep_their_momentum():
    backbone = zoo.resnet18(include_top=False, pooling="avg", input_shape=SHAPE)
    backbone.trainable = False     # the README's recipe: a frozen backbone, a new head
    inputs = keras.Input(SHAPE)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(backbone(inputs)))
    norms = _norms(model)
    assert len(norms) == 20 and {n.momentum for n in norms} == {0.99}
    assert train.set_batch_norm_momentum(model) is None
    assert train.set_batch_norm_momentum(model, 0.8) is None
    assert {n.momentum for n in norms} == {0.99}
    # The last stage unfrozen, its batch norms too: only those train and change.
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer.name.startswith("conv5_")
    assert train.set_batch_norm_momentum(model) == 0.9
    changed = {n.name for n in norms if n.momentum == 0.9}
    assert changed == {n.name for n in norms if n.name.startswith("conv5_")}
    assert len(changed) == 5 and {n.momentum for n in norms} == {0.9, 0.99}


# ---------------------------------------------------------------------------------------
# U-Net with an ImageNet backbone

def test_unet_with_an_imagenet_backbone_gets_the_input_conversion(published, tmp_path):
    _, path, ref = published
    info = data.DatasetInfo(name="cells", task="segmentation", num_classes=3,
                            labels=["a", "b", "c"], input_shape=SHAPE,
                            mean=[118.0, 109.0, 101.0], std=[60.0, 58.0, 59.0])
    options = dict(backbone="resnet50", base_filters=4, freeze_backbone=True)
    model = train.build_for_dataset("unet", info, backbone_weights=path, **options)
    assert [layer.name for layer in model.layers[:3]] == ["images", "imagenet_input",
                                                          "conv1_pad"]
    assert not model.get_layer("imagenet_input").trainable
    assert _has_file_weights(model, ref)
    assert model.pretrained_info["imagenet_input"] is True
    # The same U-Net without it, fed the converted input, gives the same output.
    plain = unet(input_shape=SHAPE, num_classes=3, backbone_weights=path, **options)
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    raw = np.random.default_rng(4).uniform(0, 255, (2, *SHAPE)).astype("float32")
    x = data.preprocess(raw, info)
    converted = keras.applications.resnet.preprocess_input(raw.copy())
    np.testing.assert_allclose(model.predict(x, verbose=0), plain.predict(converted, verbose=0),
                               atol=1e-4)
    assert _count(model.trainable_weights) == _count(plain.trainable_weights)
    # A Keras 3 weights file names no layers: no conversion unless asked.
    zoo.resnet50(include_top=False, input_shape=SHAPE).save_weights(tmp_path / "r.weights.h5")
    bare = train.build_for_dataset("unet", info, backbone_weights=str(tmp_path / "r.weights.h5"),
                                   **options)
    assert "imagenet_input" not in [layer.name for layer in bare.layers]
