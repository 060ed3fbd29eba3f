"""Hyperparameter search on masks with an ignore label (Pascal VOC's 255 on object borders):
``search(ignore_label=)`` / ``zoo tune --ignore-label``, or a ``Splits`` loaded with one, reach
every trial's loss and metrics, the cross-validation folds, the refit, the test metrics, the
fingerprint and the local workers; the objective leaves the ignored pixels out, against a
count by hand in NumPy."""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tuning import hypermodels as hms
from tuning.search import _argv, _dataset_key, configure_tune, search
from zoo import data
from zoo.cli import main as zoo_main

from conftest import make_voc_folder  # noqa: E402

# Searches run many full garbage collections: earlier tests' leftovers are not scanned in
# each (conftest.freeze_leftovers).
pytestmark = pytest.mark.usefixtures("leftovers_frozen")

# A U-Net small enough for a trial of a few seconds, trained by plain SGD (fewer ops to trace
# than Adam's).
FIX = {"depth": 2, "base_filters": 4, "batch_norm": False, "upsampling": "transpose",
       "dropout": 0.0, "optimizer": "sgd", "lr_schedule": "constant", "weight_decay": 0.0,
       "batch_size": 8}
TINY = dict(tuner="random", epochs=1, mixed_precision="off", fix=FIX)


def _voc_folder(root, n=40, shape=(32, 32), ring=True):
    """Palette masks of classes 0, 1, 2, with a 2-pixel 255 ring around each object
    (``ring``; conftest)."""
    return make_voc_folder(root, n=n, shape=shape, object_size=14, ring=2 if ring else 0,
                           first=(4, 4), spread=(7, 5))


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return _voc_folder(tmp_path_factory.mktemp("voc") / "voc")


@pytest.fixture(scope="module")
def splits(voc):
    return data.load_splits(str(voc), batch_size=8, ignore_label=255)


def _scores(p, y, k=3, ignore=255):
    """NumPy: ``(pixel accuracy, mean IoU)`` of probabilities ``p`` for masks ``y``, the
    pixels holding ``ignore`` left out."""
    predicted = p.argmax(-1)
    valid = y != ignore
    cm = np.bincount(y[valid] * k + predicted[valid], minlength=k * k).reshape(k, k)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    return float((predicted == y)[valid].mean()), float((inter / union)[union > 0].mean())


@pytest.fixture
def recorded(monkeypatch, splits):
    """Every ``ZooHyperModel.fit`` of the search (trials, folds, refit): the trained model's
    probabilities and the masks of its held-out data (``None`` for the refit) and of the
    test split."""
    runs = []
    fit = hms.ZooHyperModel.fit
    test_x, test_y = data.to_arrays(splits.test)

    def recording_fit(self, hp, model, x=None, *args, validation_data=None, **kwargs):
        history = fit(self, hp, model, x, *args, validation_data=validation_data, **kwargs)
        held = None
        if validation_data is not None:
            vx, vy = data.to_arrays(validation_data)
            held = (model.predict(vx, verbose=0), vy)
        runs.append({"held_out": held, "test": (model.predict(test_x, verbose=0), test_y),
                     "history": dict(history.history)})
        return history

    monkeypatch.setattr(hms.ZooHyperModel, "fit", recording_fit)
    return runs


def test_a_trials_val_mean_iou_leaves_out_the_ignored_pixels(splits, recorded, tmp_path):
    assert (splits.info.ignore_label, splits.info.num_classes) == (255, 3)
    df = search("unet", splits, max_trials=2, set={"lr": [1e-2, 3e-3], "augment": [0.0, 1.0]},
                directory=str(tmp_path), project="p", **TINY)
    assert list(df["status"]) == ["COMPLETED"] * 2 and len(recorded) == 2
    # Trials are scored on the validation split, not the test split (held out for the best).
    masks = {name: data.to_arrays(getattr(splits, name))[1] for name in ("validation", "test")}
    assert masks["validation"].shape != masks["test"].shape or \
        not np.array_equal(masks["validation"], masks["test"])
    for run, score in zip(recorded, df["score"]):
        p, y = run["held_out"]
        np.testing.assert_array_equal(y, masks["validation"])
        assert 0.05 < (y == 255).mean() < 0.5
        accuracy, mean_iou = _scores(p, y)
        assert score == pytest.approx(mean_iou, abs=1e-6)
        assert run["history"]["val_accuracy"][-1] == pytest.approx(accuracy, abs=1e-6)
        # Counted as background instead, the border would give another score.
        assert abs(_scores(p, np.where(y == 255, 0, y), ignore=-1)[1] - mean_iou) > 1e-3
    # The best model's test metrics leave them out too.
    best = df.attrs["best"]
    p, y = recorded[int(best["trial"])]["test"]
    accuracy, mean_iou = _scores(p, y)
    assert best["test"]["mean_iou"] == pytest.approx(mean_iou, abs=1e-6)
    assert best["test"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert best["ignore_label"] == 255
    assert json.loads((tmp_path / "p" / "best.json").read_text())["ignore_label"] == 255
    fingerprint = json.loads((tmp_path / "p" / "search.json").read_text())
    assert fingerprint["dataset"]["info"]["ignore_label"] == 255
    assert list(pd.read_csv(tmp_path / "p" / "trials.csv")["score"]) == pytest.approx(
        list(df["score"]))


def test_cross_validation_folds_and_the_refit_leave_out_the_ignored_pixels(
        splits, recorded, tmp_path):
    df = search("unet", splits, max_trials=1, cv=2, fix={**FIX, "lr": 1e-2, "augment": 0.0},
                directory=str(tmp_path), **{k: v for k, v in TINY.items() if k != "fix"})
    assert list(df["status"]) == ["COMPLETED"] and len(recorded) == 3   # 2 folds, the refit
    folds = [_scores(*run["held_out"])[1] for run in recorded[:2]]
    assert all((run["held_out"][1] == 255).any() for run in recorded[:2])
    assert df.loc[0, "score"] == pytest.approx(np.mean(folds), abs=1e-6)
    refit = recorded[2]
    assert refit["held_out"] is None
    best = df.attrs["best"]
    assert best["refit_epochs"] == 1
    assert best["test"]["mean_iou"] == pytest.approx(_scores(*refit["test"])[1], abs=1e-6)


def test_zoo_tune_ignore_label_on_a_voc_folder(voc, tmp_path, capsys):
    runs = tmp_path / "runs"
    small = ["--dataset", f"folder:{voc}", "--directory", str(runs), "--project", "v",
             "--tuner", "random", "--max-trials", "1", "--epochs", "1", "--mixed-precision",
             "off", *[a for k, v in FIX.items() for a in ("--fix", f"{k}={v}")],
             "--fix", "augment=1"]
    # Without the ignore label the folder is refused, the message saying what to pass.
    assert zoo_main(["tune", "unet", *small]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("pass ignore_label=255 (zoo train, zoo tune "
                                             "or zoo evaluate --ignore-label 255).")
    with pytest.raises(SystemExit) as exit_info:
        zoo_main(["tune", "unet", *small, "--ignore-label", "-1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("zoo tune: error: argument --ignore-label: expected an "
                                       "integer from 0 to 65535; received '-1'\n")
    assert zoo_main(["tune", "unet", *small, "--ignore-label", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ignore_label=1 lies among the classes of the masks in ")
    assert zoo_main(["tune", "lenet5", "--directory", str(runs), "--ignore-label", "255"]) == 2
    assert capsys.readouterr().err == (
        "zoo: error: ignore_label is for segmentation datasets (a mask value to leave out); "
        "'digits' is a classification dataset. Received: ignore_label=255\n")
    assert not runs.exists()          # refused before anything is written

    assert zoo_main(["tune", "unet", *small, "--ignore-label", "255", "--export",
                     "--export-dir", str(tmp_path / "saved")]) == 0
    out = capsys.readouterr().out
    assert "best trial 0: val_mean_iou " in out
    assert "scores leave out the pixels labelled 255 (--ignore-label 255)" in out
    project = runs / "v"
    key = json.loads((project / "search.json").read_text())["dataset"]
    assert key == {"name": f"folder:{voc}", "input_shape": [32, 32, 3], "ignore_label": 255,
                   "splits": key["splits"]}
    assert sorted(key["splits"]) == ["test", "train", "validation"]
    best = json.loads((project / "best.json").read_text())
    assert best["ignore_label"] == 255 and 0 < best["score"] <= 1
    assert pd.read_csv(project / "trials.csv")["score"][0] == pytest.approx(best["score"])
    record = json.loads((tmp_path / "saved" / "unet" / "1" / "assets" / "zoo.json")
                        .read_text())
    assert record["dataset"]["ignore_label"] == 255 and record["num_classes"] == 3
    # The same command resumes the finished search: it returns at once.
    assert zoo_main(["tune", "unet", *small, "--ignore-label", "255"]) == 0
    assert "best trial 0:" in capsys.readouterr().out


def test_a_search_resumed_with_another_ignore_label_is_refused(tmp_path):
    # Masks without the border: the folder loads with ignore_label=255 (a value its masks
    # never hold) and without.
    plain = str(_voc_folder(tmp_path / "plain", n=20, ring=False))
    kwargs = dict(max_trials=1, directory=str(tmp_path / "runs"), project="p", **TINY)
    df = search("unet", plain, ignore_label=255, **kwargs)
    assert list(df["status"]) == ["COMPLETED"]
    with pytest.raises(ValueError, match=r"a different search already exists .* \(it differs "
                                         r"in: dataset\)"):
        search("unet", plain, **kwargs)
    assert len(search("unet", plain, ignore_label=255, **kwargs)) == 1     # resumed
    # Searches without an ignore label keep the fingerprint they had before there was one.
    s = data.load_splits(plain, batch_size=8)
    assert "ignore_label" not in _dataset_key(plain, s)
    assert "ignore_label" not in _dataset_key(s, s)["info"]
    declared = data.load_splits(plain, batch_size=8, ignore_label=255)
    assert _dataset_key(declared, declared)["info"]["ignore_label"] == 255


def test_an_ignore_label_the_data_does_not_declare_is_refused(splits, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(ValueError) as other:
        search("unet", splits, ignore_label=254, max_trials=1, directory=str(runs), **TINY)
    assert str(other.value) == ("dataset is a zoo.data.Splits, which brings its own ignore "
                                "label (info.ignore_label=255): ignore_label must be None or "
                                "255. Received: ignore_label=254")
    with pytest.raises(ValueError, match=r"^ignore_label must be None or an integer from 0 to "
                                         r"65535: .* Received: ignore_label='255'$"):
        search("unet", splits, ignore_label="255", max_trials=1, directory=str(runs), **TINY)
    hm = hms.UNetHyperModel(info=splits.info, fix=FIX)
    assert hm.ignore_label == 255
    with pytest.raises(ValueError) as mismatch:
        hms.UNetHyperModel(info=splits.info, ignore_label=254)
    assert str(mismatch.value) == ("ignore_label must be None or the data's ignore label, "
                                   "info.ignore_label=255. Received: ignore_label=254")
    # A classifier's: the trials' compile_model refused it, each trial failing.
    with pytest.raises(ValueError) as classifier:
        hms.get_hypermodel("lenet5", ignore_label=255)
    assert str(classifier.value) == ("LeNet5HyperModel: ignore_label is for segmentation (a "
                                     "mask value to leave out); lenet5 is a classification "
                                     "model. Received: ignore_label=255")
    no_ignore = data.Splits(splits.train, splits.validation, splits.test,
                            data.DatasetInfo.from_dict({**splits.info.to_dict(),
                                                        "ignore_label": None}))
    with pytest.raises(ValueError) as wrong:
        search(hm, no_ignore, max_trials=1, directory=str(runs), tuner="random", epochs=1)
    assert str(wrong.value) == ("the ZooHyperModel's ignore_label must be None or the data's, "
                                "info.ignore_label=None. Received: ignore_label=255")
    assert not runs.exists()


def test_a_hypermodel_compiles_and_augments_with_the_ignore_label(splits):
    import keras_tuner as kt
    model = hms.UNetHyperModel(info=splits.info, fix=FIX).build(kt.HyperParameters())
    config = model.get_compile_config()
    assert config["loss"]["config"]["ignore_label"] == 255
    assert {m["class_name"]: m["config"].get("ignore_class", m["config"].get("ignore_label"))
            for m in config["metrics"]} == {"SparsePixelAccuracy": 255, "MeanIoU": 255}
    # Pixels a constant-fill translation adds get the ignore label, not class 0.
    x, y = data.to_arrays(splits.train)
    y = np.where(y == 255, 1, y)              # no 255 before: the fill is the only one
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x))
    settings = dict(flip=None, rotation=0.0, zoom=0.0, translation=0.3, contrast=0.0,
                    fill_mode="constant")
    _, moved = next(iter(hms.augment_dataset(ds, 1.0, info=splits.info, settings=settings)))
    moved = moved.numpy()
    assert 0.01 < (moved == 255).mean() < 0.5
    assert set(np.unique(moved).tolist()) == {0, 1, 2, 255}


def test_ignore_label_is_zoo_trains_option_and_reaches_every_local_worker():
    from zoo.train import configure_train
    tune, train = argparse.ArgumentParser(), argparse.ArgumentParser()
    configure_tune(tune)
    configure_train(train)
    ours, theirs = ([a for a in p._actions if a.dest == "ignore_label"][0]
                    for p in (tune, train))
    assert (ours.option_strings, ours.help, ours.default, ours.type, ours.metavar) == (
        theirs.option_strings, theirs.help, theirs.default, theirs.type, theirs.metavar)
    args = tune.parse_args(["unet", "--workers", "2", "--ignore-label", "255"])
    assert tune.parse_args(_argv(args)).ignore_label == 255
    assert tune.parse_args(_argv(tune.parse_args(["unet", "--workers", "2"]))
                           ).ignore_label is None


# The line zoo.train.fit and the search say for masks holding 255 that declare no ignore
# label.
UNDECLARED = ("labels outside num_classes: the model has 3 outputs, so mask values must be "
              "in 0..2; found 255 (if 255 marks pixels to leave out of training and "
              "evaluation, pass ignore_label=255)")


def _undeclared(splits, *, dirty):
    """``splits`` as a ``Splits`` whose info declares no ignore label; the splits not in
    ``dirty`` get their 255 pixels as background."""
    def clean(ds):
        return ds.map(lambda x, y: (x, tf.where(y == 255, tf.zeros_like(y), y)))
    pipes = {name: getattr(splits, name) if name in dirty else clean(getattr(splits, name))
             for name in ("train", "validation", "test")}
    return data.Splits(**pipes, info=data.DatasetInfo.from_dict(
        {**splits.info.to_dict(), "ignore_label": None}))


def test_a_search_on_mask_values_outside_the_classes_stops_with_fits_line(
        splits, recorded, tmp_path):
    runs = tmp_path / "runs"
    kwargs = dict(max_trials=3, directory=str(runs), project="p", **TINY)
    # 255 in the validation split: refused before anything is written.
    with pytest.raises(ValueError) as everywhere:
        search("unet", _undeclared(splits, dirty={"train", "validation", "test"}), **kwargs)
    assert str(everywhere.value) == UNDECLARED
    assert not runs.exists() and recorded == []
    # 255 in the train split only: the first trial stops the search (every trial would fail
    # alike), and the project it made goes.
    with pytest.raises(ValueError) as in_train:
        search("unet", _undeclared(splits, dirty={"train"}), **kwargs)
    assert str(in_train.value) == UNDECLARED
    assert not (runs / "p").exists() and recorded == []
    # 255 in the test split only: the trials run (one is enough); the best model's test
    # metrics stop.
    with pytest.raises(ValueError) as in_test:
        search("unet", _undeclared(splits, dirty={"test"}), **{**kwargs, "max_trials": 1})
    assert str(in_test.value) == UNDECLARED
    trials = pd.read_csv(runs / "p" / "trials.csv")
    assert list(trials["status"]) == ["COMPLETED"] and len(recorded) == 1
    assert not (runs / "p" / "best.json").exists()
    # Another value outside the classes, with the ignore label declared (every object's
    # pixels: which classes the validation images hold follows their file names' ranks).
    declared = data.Splits(splits.train, splits.validation.map(
        lambda x, y: (x, tf.where((y == 1) | (y == 2), tf.fill(tf.shape(y),
                                                               tf.cast(7, y.dtype)), y))),
        splits.test, splits.info)
    with pytest.raises(ValueError) as seven:
        search("unet", declared, **{**kwargs, "project": "q"})
    assert str(seven.value) == ("labels outside num_classes: the model has 3 outputs, so mask "
                                "values must be in 0..2 or 255 (the ignore label); found 7")
    assert not (runs / "q").exists()
