"""Tests of tuning/: search spaces, search jobs, resume, distributed search, bad input."""

import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time

import keras
import keras_tuner as kt
import numpy as np
import pandas as pd
import pytest

import zoo
from conftest import freeze_leftovers
from tuning import hypermodels as hms
from tuning.search import search

# Small inputs each family accepts; num_classes 10 (U-Net: 3 classes).
SHAPES = {"lenet5": (32, 32, 1), "alexnet": (67, 67, 1), "googlenet": (65, 65, 3),
          "inception_v3": (75, 75, 3), "xception": (71, 71, 3), "resnet": (32, 32, 3),
          "unet": (32, 32, 1)}
# Parameters of the default model at SHAPES: the builder's own model (checked
# against the published counts: e.g. ResNet-50 25,636,712 - 2048*990 - 990).
DEFAULT_PARAMS = {"lenet5": 60_840, "alexnet": 21_598_922, "googlenet": 5_983_802,
                  "inception_v3": 21_823_274, "xception": 20_881_970, "resnet": 23_608_202,
                  "unet": 31_030_723}
# hp.Fixed overrides: small variants where the family has them, a changed head otherwise.
OVERRIDES = {
    "lenet5": {"variant": "modern"},
    "alexnet": {"lrn": True, "dropout": 0.2},
    "googlenet": {"batch_norm": True, "pooling": "max", "dropout": 0.3},
    "inception_v3": {"pooling": "max", "dropout": 0.2},
    "xception": {"pooling": "max", "dropout": 0.0},
    "resnet": {"depth": 18, "pooling": "max", "dropout": 0.2},
    "unet": {"depth": 2, "base_filters": 8, "batch_norm": True, "upsampling": "bilinear"},
}
SLOW_OK = pytest.mark.filterwarnings("ignore::UserWarning")
# Searches run many full garbage collections: earlier tests' leftovers are not scanned in
# each (conftest.freeze_leftovers; the module fixtures that search call it too).
pytestmark = pytest.mark.usefixtures("leftovers_frozen")


def _hypermodel(family, **kwargs):
    return hms.HYPERMODELS[family](input_shape=SHAPES[family],
                                   num_classes=3 if family == "unet" else 10,
                                   jit_compile=False, **kwargs)


def test_every_family_has_a_space():
    registered_families = {zoo.model_info(n).family for n in zoo.list_models()}
    covered = {zoo.model_info(cls.builder).family for cls in hms.HYPERMODELS.values()}
    assert covered == registered_families


def test_hypermodels_compile_without_xla_by_default_as_search_does():
    hm = hms.HYPERMODELS["lenet5"]()
    assert hm.jit_compile is False
    assert inspect.signature(search).parameters["jit_compile"].default is False
    assert hm.build(kt.HyperParameters()).jit_compile is False
    with_xla = hms.HYPERMODELS["lenet5"](jit_compile=True).build(kt.HyperParameters())
    assert with_xla.jit_compile is True


@pytest.mark.parametrize("family", sorted(hms.HYPERMODELS))
def test_defaults_are_the_builders_and_training_defaults(family):
    from zoo import train
    hm = _hypermodel(family)
    builder = zoo.registry.get_builder(hm.builder)
    signature = inspect.signature(builder).parameters
    for p in hm.params.values():
        if p.arg:
            expected = signature[p.arg].default
            if p.arg == "depth" and expected is None:  # U-Net: None means the paper's 4
                expected = 4
            assert p.default == expected, p.name
    compile_defaults = inspect.signature(train.compile_model).parameters
    d = hm.defaults()
    assert d["optimizer"] == compile_defaults["optimizer"].default
    assert d["lr"] == compile_defaults["learning_rate"].default
    assert (d["weight_decay"] or None) == compile_defaults["weight_decay"].default
    assert d["batch_size"] == inspect.signature(train.fit).parameters["batch_size"].default
    assert d["augment"] == float(train.GENERIC_DEFAULTS["augment"])  # zoo train augments
    assert d["lr_schedule"] == inspect.signature(train.fit).parameters["lr_schedule"].default
    if hm.task == "classification":
        assert d["label_smoothing"] == compile_defaults["label_smoothing"].default


@SLOW_OK
@pytest.mark.parametrize("family", sorted(hms.HYPERMODELS))
def test_hypermodel_builds_defaults_and_fixed_overrides_and_trains(family):
    hm = _hypermodel(family)
    model = hm.build(kt.HyperParameters())
    assert model.count_params() == DEFAULT_PARAMS[family]
    assert "head_dropout" not in [layer.name for layer in model.layers]
    del model
    keras.backend.clear_session()

    hp = kt.HyperParameters()
    for name, value in OVERRIDES[family].items():
        hp.Fixed(name, value)
    hp.Fixed("optimizer", "sgd")
    hp.Fixed("lr", 0.01)
    model = hm.build(hp)
    names = [layer.name for layer in model.layers]
    over = OVERRIDES[family]
    if family == "resnet":
        assert "conv2_block2_out" in names and "conv2_block3_out" not in names  # 2-2-2-2
    if over.get("pooling") == "max":
        assert any(isinstance(layer, keras.layers.GlobalMaxPooling2D) for layer in model.layers)
    if over.get("dropout") and over.get("pooling") == "max":
        assert model.get_layer("head_dropout").rate == over["dropout"]
    if family == "unet":
        assert model.output_shape == (None, 32, 32, 3)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, *SHAPES[family])).astype("float32")
    y = rng.integers(0, 3, size=(2, 32, 32) if family == "unet" else (2,)).astype("int32")
    before = [w.numpy().copy() for w in model.trainable_weights[:2]]
    model.run_eagerly = True  # one step: tracing the train graph would cost more than it
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    keras.backend.clear_session()


def _trial_rates(hm, schedule, lr, epochs, validate=False):
    """The learning rate each epoch of a LeNet-5 trial of ``hm`` trained with, on 8 random
    images, under ``schedule``."""
    import tensorflow as tf

    from tuning.hypermodels import set_num_examples
    hp = kt.HyperParameters()
    hp.Fixed("lr_schedule", schedule)
    hp.Fixed("lr", lr)
    hp.Fixed("augment", 0.0)
    model = hm.build(hp)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *SHAPES["lenet5"])).astype("float32")
    y = rng.integers(0, 10, size=8).astype("int32")
    rates = []

    class Record(keras.callbacks.Callback):   # the rate each epoch trained with
        def on_epoch_end(self, epoch, logs=None):
            rates.append(float(self.model.optimizer.learning_rate.numpy()))

    data = set_num_examples(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), 8)
    hm.fit(hp, model, data, validation_data=data if validate else None, epochs=epochs,
           verbose=0, callbacks=[Record()])
    keras.backend.clear_session()
    return rates


def test_cosine_lr_schedule_decays_over_the_trial_epochs():
    rates = _trial_rates(_hypermodel("lenet5"), "cosine", 0.01, 4)
    expected = [0.01 * 0.5 * (1 + np.cos(np.pi * e / 4)) for e in range(4)]
    assert rates == pytest.approx(expected, rel=1e-5)   # 0.01, 0.0085, 0.005, 0.0015


def test_plateau_lr_schedule_lowers_the_rate_when_the_validation_loss_stalls():
    # Not a default choice (searches made before resume with their space); --set adds it.
    # At a rate of 1e-30 no weight moves, so the validation loss never improves after the
    # first epoch: the rate is divided by 10 after 3 epochs without improvement, as
    # zoo train --lr-schedule plateau does.
    hm = _hypermodel("lenet5", set={"lr_schedule": "constant,cosine,plateau"})
    assert hm.params["lr_schedule"].values == ("constant", "cosine", "plateau")
    with pytest.raises(ValueError, match="hyperparameter 'lr_schedule' must be constant, "
                                         "cosine or plateau. Received: 'step'"):
        _hypermodel("lenet5", set={"lr_schedule": "constant,step"})
    rates = _trial_rates(hm, "plateau", 1e-30, 6, validate=True)
    assert rates == pytest.approx([1e-30] * 4 + [1e-31] * 2, rel=1e-5)

def test_space_describe_set_fix_and_errors():
    hm = _hypermodel("resnet", fix={"depth": "34"}, set={"lr": "1e-4:1e-2",
                                                          "batch_size": "16,64"})
    table = hm.describe().set_index("name")
    assert table.loc["depth", "type"] == "fixed" and table.loc["depth", "default"] == "34"
    assert table.loc["lr", "values"] == "0.0001 .. 0.01 (log)"
    assert table.loc["batch_size", "values"] == "16, 64"
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    assert hp.get("depth") == 34 and hp.get("batch_size") == 16  # default 32 not kept
    assert isinstance(hp._hps["depth"][0], kt.engine.hyperparameters.Fixed)
    hm.set("lr", "1e-3")                       # one value fixes
    assert hm.params["lr"].kind == "fixed" and hm.params["lr"].default == 1e-3
    hm.set("batch_size", (20, 200))            # narrowing is cumulative: 16, 64 -> 64
    assert hm.params["batch_size"].kind == "fixed" and hm.params["batch_size"].default == 64
    fresh = _hypermodel("resnet").set("batch_size", (20, 200))  # a range keeps the choices in it
    assert fresh.params["batch_size"].values == (32, 64, 128)
    with pytest.raises(ValueError, match=r"unknown hyperparameter 'width' for resnet\. "
                                         r"Known: depth, pooling, dropout, optimizer, lr"):
        hm.set("width", 3)
    with pytest.raises(ValueError, match="'depth' must be one of 18, 34, 50. Received: '101'"):
        hm.fix("depth", "101")
    with pytest.raises(ValueError, match="'lr' is fixed to 0.001; it has no range"):
        hm.set("lr", "1e-4:1e-2")
    with pytest.raises(ValueError, match="'lr' must be a finite number > 0. Received: '-1'"):
        fresh.set("lr", "-1:1")
    with pytest.raises(ValueError, match="'lr' must be a finite number > 0. Received: 'inf'"):
        fresh.set("lr", "inf")
    with pytest.raises(ValueError, match="'weight_decay' must be a finite number >= 0. "
                                         "Received: 'nan'"):
        fresh.set("weight_decay", "nan")
    with pytest.raises(ValueError, match="'pooling' takes str values; a range lo:hi applies"):
        fresh.set("pooling", "1:2")
    with pytest.raises(ValueError, match="no search space for model 'vgg16'"):
        hms.get_hypermodel("vgg16")
    with pytest.raises(ValueError, match="--set expects NAME=VALUE"):
        hms.parse_assignments(["lr"])
    # The command line's own list of families (tuning.assignments, without Keras) is the
    # search spaces', and it reads every name as get_hypermodel does.
    from tuning import assignments
    assert assignments.FAMILIES == tuple(hms.HYPERMODELS)
    for name in [*hms.HYPERMODELS, *hms.ALIASES]:
        assert assignments.family_of(name) == hms.get_hypermodel(name).family


@pytest.fixture(scope="module")
def tiny():
    """digits at 32x32: 3 train batches of 32, one validation and one test batch."""
    from zoo import data
    s = data.load_splits("digits", image_size=(32, 32))
    return data.Splits(s.train.take(3), s.validation.take(1), s.test.take(1), s.info)


FIX_ALL = {"variant": "modern", "optimizer": "sgd", "batch_size": 32, "augment": 0.5,
           "label_smoothing": 0.0, "weight_decay": 0.0, "lr_schedule": "constant"}
# The search of the `finished` fixture: search("lenet5", tiny, directory=..., project="f",
# **FINISHED) resumes it.
# (a third lr left: a search resumed with max_trials=3 has a trial to draw)
FINISHED = dict(tuner="random", max_trials=2, epochs=1, fix={**FIX_ALL, "augment": 0.0},
                set={"lr": [1e-2, 2e-2, 3e-2]})


@pytest.fixture(scope="module")
def _finished_search(tiny, tmp_path_factory):
    freeze_leftovers()
    directory = tmp_path_factory.mktemp("finished")
    df = search("lenet5", tiny, directory=str(directory), project="f", **FINISHED)
    return directory / "f", df


@pytest.fixture
def finished(_finished_search, tmp_path):
    """One finished search of FINISHED's 2 trials, run once for the tests that resume or
    reload it: a copy of its project in ``tmp_path / "f"``, and its table."""
    import copy
    import shutil
    project, df = _finished_search
    shutil.copytree(project, tmp_path / "f")
    return copy.deepcopy(df)


@SLOW_OK
def test_search_records_all_trials_a_failed_one_and_exports_the_best(tiny, tmp_path, capsys):
    # lr=1e38 (near float32's largest) makes the loss infinite at the second batch: that
    # trial fails, the other completes.
    df = search("lenet5", tiny, tuner="random", max_trials=2, epochs=1,
                directory=str(tmp_path), project="p", fix=FIX_ALL,
                set={"lr": [1e-2, 1e38]}, export=True,
                export_dir=str(tmp_path / "saved"), export_name="lenet5_tuned")
    assert list(df["trial"]) == ["0", "1"]
    by_lr = df.set_index("lr")
    assert by_lr.loc[1e-2, "status"] == "COMPLETED" and by_lr.loc[1e38, "status"] == "FAILED"
    assert "loss became inf at batch 1 of epoch 1" in by_lr.loc[1e38, "message"]
    assert 0 <= by_lr.loc[1e-2, "score"] <= 1 and pd.isna(by_lr.loc[1e38, "score"])
    assert by_lr.loc[1e-2, "best_step"] == 0       # one epoch: keras-tuner counts from 0
    assert (df["seconds"] > 0).all() and set(df["tuner"]) == {"tuner0"}
    for column in ("variant", "optimizer", "batch_size", "augment", "best_step"):
        assert column in df.columns
    project = tmp_path / "p"
    csv = pd.read_csv(project / "trials.csv")
    assert list(csv["status"]) == list(df["status"])
    assert (project / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = df.attrs["best"]
    assert best["trial"] == by_lr.loc[1e-2, "trial"]
    assert best["score"] == pytest.approx(by_lr.loc[1e-2, "score"])
    assert set(best["test"]) == {"accuracy", "loss"}
    assert os.path.isfile(os.path.join(best["export"], "saved_model.pb"))
    assert best["export"].startswith(str(tmp_path / "saved" / "lenet5_tuned"))
    record = json.loads(open(os.path.join(best["export"], "assets", "zoo.json")).read())
    assert record["training"]["source"] == str(project / f"trial_{best['trial']}")
    assert os.path.isdir(record["training"]["source"])
    assert record["training"]["settings"]["hyperparameters"] == best["hyperparameters"]
    assert record["training"]["settings"]["trial"] == best["trial"]
    assert record["metrics"] == {f"test_{k}": v for k, v in best["test"].items()}
    assert record["labels"][3] == "3" and record["dataset"]["name"] == "digits"
    # Run again, the finished search reports the version it exported and exports no other;
    # with that version gone, or to another directory, it exports the model again.
    again = dict(tuner="random", max_trials=2, epochs=1, directory=str(tmp_path), project="p",
                 fix=FIX_ALL, set={"lr": [1e-2, 1e38]}, export=True,
                 export_name="lenet5_tuned")
    versions = tmp_path / "saved" / "lenet5_tuned"
    rerun = search("lenet5", tiny, export_dir=str(tmp_path / "saved"), **again).attrs["best"]
    assert rerun["export"] == best["export"] and rerun["exported_before"] is True
    assert sorted(os.listdir(versions)) == ["1"]
    assert json.loads((project / "best.json").read_text())["export"] == best["export"]
    lite = os.path.join("assets", "serving_default.tflite")
    assert os.path.isfile(os.path.join(best["export"], lite))
    other = search("lenet5", tiny, export_dir=str(tmp_path / "other"), export_lite=False,
                   **again).attrs["best"]
    assert other["export"] == str(tmp_path / "other" / "lenet5_tuned" / "1")
    assert "exported_before" not in other
    assert not os.path.exists(os.path.join(other["export"], lite))
    # That export has no LiteRT model: a run that asks for one exports again.
    with_lite = search("lenet5", tiny, export_dir=str(tmp_path / "other"),
                       **again).attrs["best"]
    assert with_lite["export"] == str(tmp_path / "other" / "lenet5_tuned" / "2")
    assert "exported_before" not in with_lite and os.path.isfile(
        os.path.join(with_lite["export"], lite))
    shutil.rmtree(tmp_path / "other")
    assert search("lenet5", tiny, export_dir=str(tmp_path / "other"),
                  **again).attrs["best"]["export"] == other["export"]
    importlib.import_module("tuning.search")._print_best(rerun, str(project))
    assert f"exported before: {best['export']} (this search's best, exported by an earlier " \
        "run; not exported again)\n" in capsys.readouterr().out


class _InterruptOnTrainBegin(keras.callbacks.Callback):
    """Simulates Ctrl-C when the n-th training (counted across trials) starts."""

    def __init__(self, counter_file, interrupt_at=None):
        super().__init__()
        self.counter_file, self.interrupt_at = str(counter_file), interrupt_at

    def on_train_begin(self, logs=None):
        n = int(open(self.counter_file).read()) + 1 if os.path.exists(self.counter_file) else 1
        with open(self.counter_file, "w") as f:
            f.write(str(n))
        if n == self.interrupt_at:
            raise KeyboardInterrupt


@SLOW_OK
def test_interrupted_search_resumes_without_repeating_trials(tiny, tmp_path, capsys):
    kwargs = dict(tuner="random", max_trials=3, epochs=1, directory=str(tmp_path),
                  project="r", fix={**FIX_ALL, "augment": 0.0}, set={"lr": "1e-3:1e-1"})
    first = tmp_path / "first.txt"
    with pytest.raises(KeyboardInterrupt):
        search("lenet5", tiny, callbacks=[_InterruptOnTrainBegin(first, interrupt_at=2)],
               **kwargs)
    partial = pd.read_csv(tmp_path / "r" / "trials.csv", dtype={"trial": str})
    assert list(partial["status"]) == ["COMPLETED", "RUNNING"]

    second = tmp_path / "second.txt"
    capsys.readouterr()
    df = search("lenet5", tiny, callbacks=[_InterruptOnTrainBegin(second)], **kwargs)
    # verbose=0: keras-tuner's "Reloading Tuner from .../tuner0.json" is not printed.
    assert capsys.readouterr().out == ""
    assert int(second.read_text()) == 2          # the interrupted trial and the last one
    assert list(df["status"]) == ["COMPLETED"] * 3
    assert df.loc[0, "score"] == pytest.approx(partial.loc[0, "score"])
    assert df.loc[1, "lr"] == pytest.approx(partial.loc[1, "lr"])   # same trial, re-run

    # A finished search returns at once; a different one is refused.
    again = search("lenet5", tiny, callbacks=[_InterruptOnTrainBegin(second)], **kwargs)
    assert int(second.read_text()) == 2 and len(again) == 3
    with pytest.raises(ValueError, match=r"a different search already exists .* differs in: "
                                         r"space, tuner"):
        search("lenet5", tiny, **{**kwargs, "tuner": "grid"})
    with pytest.raises(FileExistsError, match="resume=True"):
        search("lenet5", tiny, resume=False, **kwargs)


class _CountFits(keras.callbacks.Callback):
    fits = []   # class-level: keras-tuner deep-copies the callbacks of every fit

    def on_train_begin(self, logs=None):
        _CountFits.fits.append(1)


def test_cv_folds_cover_train_and_validation_once_stratified(tiny):
    import tensorflow as tf
    from tuning.search import _cv_folds
    from zoo.data import to_arrays
    from zoo.data import Splits
    (x_tr, y_tr), (x_va, y_va) = to_arrays(tiny.train), to_arrays(tiny.validation)
    fixed = Splits(tf.data.Dataset.from_tensor_slices((x_tr, y_tr)).batch(32),
                   tf.data.Dataset.from_tensor_slices((x_va, y_va)).batch(32),
                   tiny.test, tiny.info)
    make_folds, (x, y) = _cv_folds(fixed, 3, seed=0, task="classification")
    folds = make_folds()
    n = len(y_tr) + len(y_va)
    assert len(folds) == 3 and len(x) == len(y) == n == 128
    held = [to_arrays(h) for _, h in folds]
    assert sum(len(hy) for _, hy in held) == n                       # each example once
    assert sorted(np.concatenate([hy for _, hy in held])) == sorted(y)
    for (train, _), (hx, hy) in zip(folds, held):
        tx, ty = to_arrays(train)
        assert len(tx) + len(hx) == n
        flat = {row.tobytes() for row in hx}
        assert not any(row.tobytes() in flat for row in tx)          # disjoint
        # stratified: every class's share of the held-out part is within one example
        for c in np.unique(y):
            assert abs((hy == c).sum() - (y == c).sum() / 3) <= 1
    # The same folds whatever order (and batching) the pipelines deliver the examples in.
    shuffled = Splits(fixed.train.unbatch().shuffle(200, seed=5).batch(7), fixed.validation,
                      tiny.test, tiny.info)
    again, _ = _cv_folds(shuffled, 3, seed=0, task="classification")
    for (_, h1), (hx, hy) in zip(again(), held):
        np.testing.assert_array_equal(to_arrays(h1)[0], hx)
    # The seed draws the folds (StratifiedKFold's shuffle): another seed, other folds.
    other, _ = _cv_folds(fixed, 3, seed=1, task="classification")
    other_held = [to_arrays(h)[0] for _, h in other()]
    assert sorted(len(h) for h in other_held) == sorted(len(hx) for hx, _ in held)
    assert not all(np.array_equal(a, b) for a, (b, _) in zip(other_held, held))
    # The folds come with tf.data's autotuning as zoo.data's pipelines have it (off on a
    # CPU-only machine, as here: benchmarks/README.md, item 29).
    from zoo.data import autotune_by_default
    assert autotune_by_default() is False
    assert {d.options().autotune.enabled for fold in folds for d in fold} == {False}


_SPURIOUS = ("Your input ran out of data", "Skipping variable loading for optimizer",
             "`shuffle=True` was passed")


def _spurious(caught):
    return [str(w.message)[:80] for w in caught if any(t in str(w.message) for t in _SPURIOUS)]


def test_rebatch_keeps_the_number_of_batches():
    import tensorflow as tf

    from tuning.hypermodels import rebatch, set_num_examples
    x = np.zeros((70, 4, 4, 1), "float32")
    y = np.arange(70)
    unbatched = tf.data.Dataset.from_tensor_slices((x, y))
    assert int(rebatch(unbatched, 32).cardinality()) == 3
    batched = unbatched.batch(16)
    assert int(rebatch(batched, 32).cardinality()) == tf.data.UNKNOWN_CARDINALITY
    set_num_examples(batched, 70)
    again = rebatch(batched, 32)
    assert int(again.cardinality()) == 3
    assert [len(b[1]) for b in again] == [32, 32, 6]
    assert sorted(np.concatenate([b[1] for b in again])) == list(range(70))
    # A wrong count is not trusted silently: tf.data fails on it.
    set_num_examples(batched, 100)
    with pytest.raises(tf.errors.FailedPreconditionError, match="expected to contain 4"):
        list(rebatch(batched, 32))


def _record_first_batches(monkeypatch):
    """Make every model the search trains record the labels of its first training batch, read
    from a new iterator of its data before it trains (in the returned list)."""
    from tuning.hypermodels import ZooHyperModel
    firsts = []
    fit = ZooHyperModel.fit

    def recording_fit(self, hp, model, x=None, *args, **kwargs):
        firsts.append(next(iter(x))[1].numpy().tolist())
        return fit(self, hp, model, x, *args, **kwargs)

    monkeypatch.setattr(ZooHyperModel, "fit", recording_fit)
    return firsts


@pytest.fixture(scope="module")
def named_search(tmp_path_factory):
    """One search of 3 trials on a dataset given by its name (digits), run once for the tests
    that look at it: ``(its table, the warnings it gave, the labels of each trial's first
    training batch)``."""
    import warnings
    freeze_leftovers()
    with pytest.MonkeyPatch.context() as monkeypatch, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        firsts = _record_first_batches(monkeypatch)
        df = search("lenet5", "digits", tuner="random", max_trials=3, epochs=1,
                    directory=str(tmp_path_factory.mktemp("named")), project="w", fix=FIX_ALL,
                    set={"lr": [1e-2, 2e-2, 3e-2]}, verbose=0)
    return df, list(caught), firsts


def test_search_on_a_named_dataset_warns_of_nothing(named_search):
    # keras-tuner trials rebatch the data (its length is kept), the best model is reloaded
    # from a checkpoint with optimizer state: neither makes Keras warn.
    df, caught, _ = named_search
    assert list(df["status"]) == ["COMPLETED"] * 3
    assert _spurious(caught) == []


def test_every_trial_reads_the_training_data_in_the_seeds_order(named_search):
    # A shuffled pipeline reads in a new order each time: every trial gets a new one, so
    # its order does not depend on the trials run before it in the process.
    df, _, firsts = named_search
    assert list(df["status"]) == ["COMPLETED"] * 3 and len(firsts) == 3
    assert firsts[0] == firsts[1] == firsts[2] and len(set(firsts[0])) > 1


def test_search_on_a_splits_of_unknown_length_warns_of_nothing(tiny, tmp_path):
    # A Splits passed in: the trials' rebatched train data has no known length, and Keras
    # would say "Your input ran out of data" at the end of each trial's first epoch.
    import warnings

    import tensorflow as tf

    from zoo.data import Splits
    uncounted = Splits(tiny.train.filter(lambda x, y: True), tiny.validation, tiny.test,
                       tiny.info)
    assert int(uncounted.train.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = search("lenet5", uncounted, tuner="random", max_trials=2, epochs=2,
                    directory=str(tmp_path), project="w", fix=FIX_ALL,
                    set={"lr": [1e-2, 3e-2]})
    assert list(df["status"]) == ["COMPLETED"] * 2
    assert _spurious(caught) == []


def test_a_hyperband_trial_that_goes_on_training_warns_of_nothing(tiny, tmp_path):
    # Keras said "Skipping variable loading for optimizer 'sgd', because it has 2 variables
    # whereas the saved optimizer has 12 variables" on stderr at every Hyperband trial that
    # goes on training another's model (its optimizer starts afresh), at --verbose 0 too.
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = search("lenet5", tiny, tuner="hyperband", max_trials=4, epochs=3,
                    directory=str(tmp_path), project="h", fix=FIX_ALL,
                    set={"lr": [1e-2, 2e-2, 3e-2]})
    assert list(df["status"]) == ["COMPLETED"] * 4 and list(df["epochs"]) == [1, 1, 1, 3]
    assert _spurious(caught) == []


def test_search_on_a_small_folder_logs_no_retracing_warning(tmp_path):
    # Each trial traces its own model's functions, and TensorFlow counts the traces of
    # every trial against one function: on a folder of 36 training images the second trial
    # logged "5 out of the last 6 calls to ... triggered tf.function retracing" twice.
    import logging

    from conftest import make_colour_folder
    folder = make_colour_folder(tmp_path / "photos", ["blue", "green", "red"], (40, 40),
                                counts=(("train", 12), ("validation", 4), ("test", 4)))
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("tensorflow")
    filters, keep = list(logger.filters), Keep()
    logger.addHandler(keep)
    try:
        df = search("lenet5", f"folder:{folder}", tuner="random", max_trials=2, epochs=1,
                    directory=str(tmp_path), project="small", verbose=0)
        logger.warning("5 out of the last 6 calls to f triggered tf.function retracing.")
    finally:
        logger.removeHandler(keep)
    assert list(df["status"]) == ["COMPLETED"] * 2
    # The search's trials logged none; after it, TensorFlow's warning goes through again.
    assert [m for m in records if "retracing" in m] == [
        "5 out of the last 6 calls to f triggered tf.function retracing."]
    assert logger.filters == filters


def test_a_folder_whose_images_changed_is_another_search(tmp_path):
    # A named dataset's fingerprint was its name and input shape: a folder given images more
    # resumed its search, whose trials were then scored, and its best model tested, on
    # other data than the trials before. A search made before split sizes were part of the
    # fingerprint still resumes.
    import shutil

    from conftest import make_colour_folder
    folder = make_colour_folder(tmp_path / "photos", ["blue", "green", "red"], (32, 32),
                                counts=(("train", 6), ("validation", 3), ("test", 3)))
    kwargs = dict(tuner="random", max_trials=1, epochs=1, directory=str(tmp_path / "runs"),
                  project="p", fix=FIX_ALL)
    df = search("lenet5", f"folder:{folder}", **kwargs)
    path = tmp_path / "runs" / "p" / "search.json"
    fingerprint = json.loads(path.read_text())
    assert fingerprint["dataset"]["splits"] == {"test": 9, "train": 18, "validation": 9}
    shutil.copy(folder / "train" / "red" / "0.png", folder / "train" / "red" / "extra.png")
    with pytest.raises(ValueError, match=r"differs in: dataset; in the dataset's split sizes: "
                                         r"train 18 before, 19 now\)\. Use --overwrite"):
        search("lenet5", f"folder:{folder}", **kwargs)
    del fingerprint["dataset"]["splits"]       # a search made before
    path.write_text(json.dumps(fingerprint))
    again = search("lenet5", f"folder:{folder}", **kwargs)
    assert list(again["score"]) == list(df["score"])
    assert json.loads(path.read_text())["dataset"]["splits"]["train"] == 19


def test_test_metrics_on_the_validation_split_say_so(tmp_path, capsys):
    # A folder without a test split is tested on its validation split, which chose the best
    # trial and, cross-validated, trained the refit: best.json and the summary line say so,
    # as zoo train's does (they read "test: accuracy 0.7500" as if on unseen images).
    from conftest import make_colour_folder
    from tuning.search import _print_best
    folder = make_colour_folder(tmp_path / "photos", ["blue", "green", "red"], (32, 32),
                                counts=(("train", 8), ("validation", 4)))
    df = search("lenet5", f"folder:{folder}", tuner="random", max_trials=1, epochs=1, cv=2,
                directory=str(tmp_path), project="noval", fix=FIX_ALL)
    best = df.attrs["best"]
    assert best["test_is_validation"] is True and best["refit_epochs"] == 1
    assert json.loads((tmp_path / "noval" / "best.json").read_text())["test_is_validation"]
    _print_best(best, str(tmp_path / "noval"))
    assert "\ntest (on the validation split: the dataset has no test split; the refit trained " \
        "on it): accuracy " in capsys.readouterr().out
    _print_best({**best, "refit_epochs": None}, str(tmp_path / "noval"))
    assert "\ntest (on the validation split: the dataset has no test split): accuracy " in \
        capsys.readouterr().out


CV = dict(tuner="random", max_trials=2, epochs=2, project="cv", fix=FIX_ALL,
          set={"lr": [1e-2, 3e-2]})


@pytest.fixture(scope="module")
def cv_search(tiny, tmp_path_factory):
    """One cross-validated search (cv=2: two folds of each of 2 trials, then the refit of the
    best), run once for the tests that look at it: its table, the warnings it gave, the
    trainings ``_CountFits`` saw, the labels of each model's first training batch and its
    directory."""
    import types
    import warnings
    freeze_leftovers()
    directory = tmp_path_factory.mktemp("cv")
    _CountFits.fits.clear()
    with pytest.MonkeyPatch.context() as monkeypatch, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        firsts = _record_first_batches(monkeypatch)
        df = search("lenet5", tiny, cv=2, directory=str(directory), callbacks=[_CountFits()],
                    **CV)
    return types.SimpleNamespace(df=df, caught=list(caught), fits=len(_CountFits.fits),
                                 firsts=firsts, directory=directory)


def test_cross_validated_search_trains_k_models_per_trial_and_refits_the_best(tiny, cv_search):
    df = cv_search.df
    assert _spurious(cv_search.caught) == []   # the folds and the refit keep their length
    assert list(df["status"]) == ["COMPLETED"] * 2
    assert cv_search.fits == 2 * 2                          # 2 trials x 2 folds
    best = df.attrs["best"]
    assert best["refit_epochs"] in (1, 2)
    assert 0 <= best["test"]["accuracy"] <= 1
    assert json.loads((cv_search.directory / "cv" / "search.json").read_text())["cv"] == 2
    with pytest.raises(ValueError, match=r"a different search already exists .* differs in: "
                                         r"cv"):
        search("lenet5", tiny, cv=3, directory=str(cv_search.directory), **CV)


def test_every_trial_reads_each_cv_fold_in_the_seeds_order(cv_search):
    # The folds' train pipelines are made anew for each trial too: a fold read by the
    # trial before would shuffle in a new order.
    firsts = cv_search.firsts
    # Two folds of two trials, then the refit of the best on all examples.
    assert list(cv_search.df["status"]) == ["COMPLETED"] * 2 and len(firsts) == 5
    assert firsts[0] == firsts[2] and firsts[1] == firsts[3]    # fold 0, fold 1 of each
    assert firsts[0] != firsts[1] and len(set(firsts[0])) > 1


def test_bad_input_errors(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"cv must be None or an integer >= 2 \(folds\). "
                                         r"Received: cv=1"):
        search("lenet5", tiny, tuner="random", cv=1)
    with pytest.raises(ValueError, match="cv .* works with the random, bayesian and grid "
                                         "tuners.*Received: tuner='hyperband'"):
        search("lenet5", tiny, cv=3)
    with pytest.raises(ValueError, match="executions_per_trial must be 1 with it"):
        search("lenet5", tiny, tuner="random", cv=3, executions_per_trial=2)
    with pytest.raises(ValueError, match="unknown tuner 'annealing'. Allowed: hyperband, "
                                         "random, bayesian, grid"):
        search("lenet5", tiny, tuner="annealing")
    with pytest.raises(ValueError, match=r"objective 'val_auc' is not a metric the lenet5 "
                                         r"model reports\. Allowed: accuracy, loss, "
                                         r"val_accuracy, val_loss"):
        search("lenet5", tiny, objective="val_auc", directory=str(tmp_path))
    assert not (tmp_path / "lenet5_digits_hyperband" / "search.json").exists()
    with pytest.raises(ValueError, match="unet is a segmentation model"):
        search("unet", tiny, directory=str(tmp_path))


def _tune_here(argv, capfd, monkeypatch, timeout=400):
    """``zoo tune ARGV`` run by ``zoo.cli.main`` in this process, as ``python -m tuning ARGV``
    runs it in a process of its own (whose start-up, a TensorFlow import, this spares): a
    --workers cluster's chief and workers are processes all the same, writing to this
    process's stdout and stderr. Still running after ``timeout`` seconds, the command is
    stopped (its processes with it) and says so on stderr. Returns ``(exit code, stdout,
    stderr)``."""
    import signal

    from zoo.cli import main
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")

    def too_long(signum, frame):
        raise TimeoutError(f"zoo tune still ran after {timeout} s")

    capfd.readouterr()
    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(timeout)
    try:
        code = main(["tune", *argv])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capfd.readouterr()
    return code, out, err


def test_the_default_project_is_named_by_the_family_as_the_help_says(capsys):
    # zoo tune resnet18 and zoo tune resnet34 share the default project (the help said
    # MODEL_DATASET_TUNER, and the second search was refused as a different one there).
    from tuning.search import _default_project
    from zoo.cli import main
    families = {hms.get_hypermodel(name).family for name in ("resnet18", "resnet34")}
    assert families == {"resnet"}
    assert _default_project("resnet", "folder:photos", "random") == \
        "resnet_folder:photos_random"
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--project NAME default FAMILY_DATASET_TUNER (zoo tune resnet34: " \
           "resnet_DATASET_TUNER, as resnet18's)" in help_text


def test_cli_bad_input_and_show_space(capsys):
    from zoo.cli import main
    assert main(["tune", "lenet5", "--set", "width=3"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "zoo: error: unknown hyperparameter 'width' for lenet5. Known: variant, optimizer, "
        "lr, lr_schedule, weight_decay, clip_norm, batch_size, augment, label_smoothing."]
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "lenet5", "--tuner", "annealing"])
    assert exit_info.value.code == 2 and "invalid choice: 'annealing'" in capsys.readouterr().err
    assert main(["tune", "lenet5", "--worker", "127.0.0.1:1"]) == 2
    assert capsys.readouterr().err.strip() == "zoo: error: --worker needs --worker-id N"
    assert main(["tune", "resnet", "--fix", "depth=34", "--set", "lr=1e-4:1e-2",
                 "--show-space"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split("|")[1].strip(): line for line in lines[2:]}
    assert list(rows)[:4] == ["depth", "pooling", "dropout", "optimizer"]
    assert "| fixed " in rows["depth"] and "0.0001 .. 0.01 (log)" in rows["lr"]


@SLOW_OK
def test_chief_and_two_workers_finish_all_trials(tmp_path, capfd, monkeypatch):
    code, out, err = _tune_here(
        ["lenet5", "--dataset", "digits", "--tuner", "random", "--max-trials", "3", "--epochs",
         "1", "--directory", str(tmp_path), "--project", "d", "--workers", "2", "--fix",
         "variant=modern", "--fix", "augment=0", "--set", "batch_size=128"],
        capfd, monkeypatch)
    assert code == 0, err[-2000:]
    df = pd.read_csv(tmp_path / "d" / "trials.csv")
    assert len(df) == 3 and (df["status"] == "COMPLETED").all()
    assert set(df["tuner"]) <= {"tuner0", "tuner1"}
    assert "best trial" in out
    # The best line names the hyperparameters in the table's order, as in one process (the
    # chief had them in the order a worker's trial reached it: the fixed ones first).
    best = re.search(r"best trial \d+: val_accuracy [0-9.]+ \((.*)\)", out).group(1)
    assert [item.split("=")[0] for item in best.split(", ")] == list(df.columns[2:10])
    # The chief saved its oracle once its workers stopped: no trial left as running (a
    # later run of the chief's command would wait for a worker to train it again).
    assert json.loads((tmp_path / "d" / "oracle.json").read_text())["ongoing_trials"] == {}


@SLOW_OK
def test_search_trains_under_the_mixed_precision_policy(tiny, tmp_path, monkeypatch):
    from zoo import train
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: True)   # auto -> bfloat16
    kwargs = dict(tuner="random", max_trials=1, epochs=1, directory=str(tmp_path),
                  project="mp", fix={**FIX_ALL, "lr": 1e-2})
    df = search("lenet5", tiny, **kwargs)
    assert list(df["status"]) == ["COMPLETED"]
    assert df.attrs["best"]["mixed_precision"] == "mixed_bfloat16"
    fingerprint = json.loads((tmp_path / "mp" / "search.json").read_text())
    assert fingerprint["mixed_precision"] == "mixed_bfloat16"
    # The trials' models were built under the policy (the best one is rebuilt to load it).
    best = json.loads((tmp_path / "mp" / "best.json").read_text())
    assert best["mixed_precision"] == "mixed_bfloat16"
    hm = hms.get_hypermodel("lenet5", fix=FIX_ALL, mixed_precision="mixed_bfloat16")
    model = hm.build(kt.HyperParameters())
    computes = {layer.compute_dtype for layer in model.layers if layer.weights}
    assert "bfloat16" in computes and model.layers[-1].compute_dtype == "float32"
    assert model.output.dtype == "float32"
    # Resuming it in float32 would mix precisions in one search: refused.
    with pytest.raises(ValueError, match=r"a different search already exists .* differs in: "
                                         r"mixed_precision\)\..* To resume it as it ran, pass "
                                         r"--mixed-precision bfloat16\.$"):
        search("lenet5", tiny, mixed_precision="off", **kwargs)
    with pytest.raises(ValueError, match=r"mixed_precision must be one of .*"
                                         r"Received: mixed_precision='fp8'"):
        search("lenet5", tiny, mixed_precision="fp8", **kwargs)


@SLOW_OK
def test_search_trains_small_xceptions_in_float32_as_fit_does(tiny, tmp_path, monkeypatch):
    # As zoo.train.fit: "auto" weighs the models of the space at the data's size; Xception
    # below 40x40 trains in float32 on a CPU that prefers bfloat16 (benchmarks item 31).
    from zoo import train
    monkeypatch.setattr(train, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(train, "_cpu_prefers_bfloat16", lambda: True)
    assert hms.get_hypermodel("xception").model_names() == ("xception",)
    assert hms.get_hypermodel("resnet").model_names() == ("resnet18", "resnet34", "resnet50")
    assert hms.get_hypermodel("resnet34").model_names() == ("resnet34",)
    assert hms.get_hypermodel("resnet", set={"depth": "18,34"}).model_names() == (
        "resnet18", "resnet34")
    df = search("xception", tiny, tuner="random", max_trials=1, epochs=1,
                directory=str(tmp_path), project="x",
                fix={"pooling": "avg", "dropout": 0.0, "optimizer": "sgd", "lr": 1e-2,
                     "lr_schedule": "constant", "weight_decay": 0.0, "batch_size": 32,
                     "augment": 0.0, "label_smoothing": 0.0})
    assert list(df["status"]) == ["COMPLETED"]
    assert df.attrs["best"]["mixed_precision"] is None
    assert "mixed_precision" not in json.loads((tmp_path / "x" / "search.json").read_text())


class _Oracle:
    def __init__(self):
        self.asked = 0

    def get_space(self):
        self.asked += 1


def test_a_worker_joins_the_chiefs_search(tmp_path):
    # A worker waits for the chief's oracle, then reads the chief's search.json from the
    # shared directory: under "auto" it takes the chief's precision; other differences fail.
    import types

    from tuning.search import _join_chief
    tuner = types.SimpleNamespace(oracle=_Oracle())
    base = {"model": "lenet5", "tuner": "random", "epochs": 2, "seed": 0, "cv": None}
    with pytest.raises(FileNotFoundError, match=r"the chief's .*search\.json is missing: a "
                                                r"worker must see the chief's --directory"):
        _join_chief(tuner, str(tmp_path), base, types.SimpleNamespace(mixed_precision=None),
                    follow_precision=True)
    assert tuner.oracle.asked == 1
    (tmp_path / "search.json").write_text(json.dumps({**base, "mixed_precision":
                                                      "mixed_bfloat16"}))
    hm = types.SimpleNamespace(mixed_precision=None)          # this worker's auto: float32
    got = _join_chief(tuner, str(tmp_path), base, hm, follow_precision=True)
    assert hm.mixed_precision == "mixed_bfloat16"
    assert got == {**base, "mixed_precision": "mixed_bfloat16"}
    hm = types.SimpleNamespace(mixed_precision=None)          # explicit --mixed-precision off
    with pytest.raises(ValueError, match=r"this worker's search differs from the chief's in "
                                         r".*: mixed_precision \(chief: 'mixed_bfloat16', "
                                         r"this worker: None\)\. Run the chief's zoo tune "
                                         r"command on every worker\."):
        _join_chief(tuner, str(tmp_path), base, hm, follow_precision=False)
    hm = types.SimpleNamespace(mixed_precision=None)
    with pytest.raises(ValueError, match=r"differs from the chief's in .*: epochs \(chief: 2, "
                                         r"this worker: 3\)"):
        _join_chief(tuner, str(tmp_path), {**base, "epochs": 3}, hm, follow_precision=True)
    # A float32 chief (no mixed_precision key) and a worker whose auto means bfloat16.
    (tmp_path / "search.json").write_text(json.dumps(base))
    hm = types.SimpleNamespace(mixed_precision="mixed_bfloat16")
    assert _join_chief(tuner, str(tmp_path), {**base, "mixed_precision": "mixed_bfloat16"},
                       hm, follow_precision=True) == base
    assert hm.mixed_precision is None and tuner.oracle.asked == 5


def test_cli_passes_mixed_precision_to_every_local_worker():
    import argparse

    from tuning.search import _argv, configure_tune
    parser = argparse.ArgumentParser()
    configure_tune(parser)
    args = parser.parse_args(["lenet5", "--workers", "2", "--mixed-precision", "off"])
    argv = _argv(args)
    assert argv[argv.index("--mixed-precision") + 1] == "off"
    assert parser.parse_args(["lenet5"]).mixed_precision == "auto"


def _fake_cluster_popen(tmp_path, seen):
    """A ``subprocess.Popen`` for a local cluster's processes: the chief a fake that serves
    until a worker has run, each worker one that finishes at once; ``seen(cmd, kwargs)`` is
    called with each command and its keyword arguments first."""
    real = subprocess.Popen

    def fake(cmd, **kwargs):
        seen(cmd, kwargs)
        if "--chief" in cmd:
            port = cmd[cmd.index("--chief") + 1].rsplit(":", 1)[1]
            return real([sys.executable, "-c", _FAKE_CHIEF, port, str(tmp_path / "done")])
        return real([sys.executable, "-c", "import sys, pathlib; "
                     "pathlib.Path(sys.argv[1]).touch()", str(tmp_path / "done")])
    return fake


def test_export_dir_goes_with_export_and_reaches_a_local_clusters_chief(tmp_path, capsys,
                                                                         monkeypatch):
    # Before, --export-dir without --export was accepted and did nothing (exit code 0).
    import argparse
    import importlib

    from zoo.cli import main
    assert main(["tune", "lenet5", "--export-dir", "sm", "--directory",
                 str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip() == "zoo: error: --export-dir sm goes with --export"
    assert main(["tune", "lenet5", "--no-lite", "--directory", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip() == "zoo: error: --no-lite goes with --export"
    assert not (tmp_path / "runs").exists()
    search_module = importlib.import_module("tuning.search")
    commands = {}

    def seen(cmd, kwargs):
        commands["chief" if "--chief" in cmd else "worker"] = cmd
    monkeypatch.setattr(subprocess, "Popen", _fake_cluster_popen(tmp_path, seen))
    tune = argparse.ArgumentParser()
    search_module.configure_tune(tune)
    args = tune.parse_args(["lenet5", "--workers", "1", "--directory", str(tmp_path),
                            "--export", "--export-dir", "sm", "--no-lite"])
    assert search_module._run_local_cluster(args) == 0
    chief = tune.parse_args(commands["chief"][commands["chief"].index("lenet5"):])
    worker = tune.parse_args(commands["worker"][commands["worker"].index("lenet5"):])
    assert (chief.export, chief.export_dir, chief.lite) == (True, "sm", False)
    assert (worker.export, worker.export_dir) == (False, None)   # the chief exports


def test_deterministic_reaches_every_local_worker_and_turns_op_determinism_on(tmp_path):
    import argparse

    from tuning.search import _argv, configure_tune
    from zoo.train import configure_train
    tune, train = argparse.ArgumentParser(), argparse.ArgumentParser()
    configure_tune(tune)
    configure_train(train)
    assert tune.parse_args(_argv(tune.parse_args(
        ["lenet5", "--workers", "2", "--deterministic"]))).deterministic is True
    assert tune.parse_args(_argv(tune.parse_args(["lenet5", "--workers", "2"]))
                           ).deterministic is False
    with pytest.raises(ValueError, match="deterministic must be True or False. "
                                         "Received: deterministic='yes'"):
        search("lenet5", "digits", deterministic="yes", directory=str(tmp_path))
    # Op determinism is process-wide and cannot be turned off: a process of its own.
    code = ("import sys\n"
            "from tensorflow.python.framework.config import is_op_determinism_enabled\n"
            "from tuning.search import search\n"
            "from zoo import data\n"
            "s = data.load_splits('digits', image_size=(32, 32))\n"
            "s = data.Splits(s.train.take(1), s.validation.take(1), s.test.take(1), s.info)\n"
            "assert not is_op_determinism_enabled()\n"
            "df = search('lenet5', s, tuner='random', max_trials=1, epochs=1, "
            "directory=sys.argv[1], deterministic=True, fix={'variant': 'modern'})\n"
            "assert list(df['status']) == ['COMPLETED'], df\n"
            "print(is_op_determinism_enabled())\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "True", r.stderr[-2000:]


def test_a_search_refused_by_its_data_leaves_no_project_behind(tiny, tmp_path):
    # cv=100 needs 100 examples of every class: refused before search.json is written, so
    # the corrected search is not taken for a different one; an existing search is kept,
    # even with overwrite=True.
    kwargs = dict(tuner="random", max_trials=1, epochs=1, directory=str(tmp_path),
                  fix={**FIX_ALL, "lr": 1e-2})
    with pytest.raises(ValueError, match="cv=100 needs at least 100 examples of every class"):
        search("lenet5", tiny, project="p", cv=100, **kwargs)
    assert os.listdir(tmp_path) == []
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "search.json").write_text("{}")
    with pytest.raises(ValueError, match="cv=100 needs at least 100 examples"):
        search("lenet5", tiny, project="old", cv=100, overwrite=True, **kwargs)
    assert os.listdir(tmp_path / "old") == ["search.json"]


def test_a_project_made_while_starting_a_search_is_removed_if_the_start_fails(
        tiny, tmp_path, monkeypatch):
    import importlib
    search_module = importlib.import_module("tuning.search")   # not the function

    def failing_tuner(*args, **kwargs):
        raise RuntimeError("no tuner")

    monkeypatch.setattr(search_module, "_make_tuner", failing_tuner)
    with pytest.raises(RuntimeError, match="no tuner"):
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1,
               directory=str(tmp_path), project="p", fix=FIX_ALL)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("project", ["../x", "a/b", "..", ".", "", "/abs"])
def test_a_project_name_must_be_one_directory_name(tiny, tmp_path, project):
    with pytest.raises(ValueError, match=r"project must be a single directory name \(no "
                                         r"'/', not '\.' or '\.\.', not empty\)\. "
                                         r"Received: project="):
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1,
               directory=str(tmp_path / "runs"), project=project, fix=FIX_ALL)
    assert os.listdir(tmp_path) == []


def test_a_search_json_that_cannot_be_written_leaves_no_project(tiny, tmp_path, monkeypatch):
    # On a full disk (or a path too long for the system), zoo tune ended with one line and
    # left the project it made, its lock file alone, and the --directory above it.
    import errno
    import importlib
    search_module = importlib.import_module("tuning.search")
    write_json = search_module._write_json

    def full(path, data):
        if os.path.basename(path) == "search.json":
            raise OSError(errno.ENOSPC, f"cannot write {path!r}: No space left on device")
        write_json(path, data)

    monkeypatch.setattr(search_module, "_write_json", full)
    with pytest.raises(OSError, match="No space left on device"):
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1,
               directory=str(tmp_path / "runs"), project="p", fix=FIX_ALL)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("project", ["p" * 256, "é" * 128])
def test_a_project_name_longer_than_a_directory_name_can_be_is_refused(tiny, tmp_path,
                                                                       project):
    # Found by generated option values: `zoo tune --project <300 characters>` failed with
    # "[Errno 36] File name too long" (exit code 1), the --directory made.
    size = len(project.encode())
    with pytest.raises(ValueError) as exc:
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1,
               directory=str(tmp_path / "runs"), project=project, fix=FIX_ALL)
    assert str(exc.value) == (f"project must be a directory name of at most 255 bytes, the "
                              f"longest file systems allow. Received: a name of {size} bytes, "
                              f"{project[:40]!r}...")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_project_directory_of_other_files_is_refused(tiny, tmp_path, overwrite):
    # was taken as the project, and --overwrite deleted those files with it
    project_dir = tmp_path / "runs" / "p"
    project_dir.mkdir(parents=True)
    (project_dir / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError) as exc:
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1, fix=FIX_ALL,
               directory=str(tmp_path / "runs"), project="p", overwrite=overwrite)
    assert str(exc.value) == (f"{project_dir} holds files of no search (notes.txt); choose "
                              f"another --project or --directory (--overwrite replaces a "
                              f"search, not other files)")
    assert os.listdir(project_dir) == ["notes.txt"]


def test_a_directory_the_search_cannot_write_in_is_named_before_it(tiny, tmp_path,
                                                                   monkeypatch):
    # were "[Errno 20] Not a directory: 'a_file/lenet5_digits_random'" and "[Errno 13]
    # Permission denied: ...", naming no option
    from conftest import deny_writes
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError) as exc:
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1,
               directory=str(tmp_path / "a_file"), fix=FIX_ALL)
    assert str(exc.value) == (f"directory (--directory) '{tmp_path / 'a_file'}' cannot be "
                              f"made: {tmp_path / 'a_file'} is a file; pass another directory.")
    ro = tmp_path / "ro"
    ro.mkdir()
    deny_writes(monkeypatch, ro)
    for kwargs in ({"directory": str(ro / "runs")},
                   {"directory": str(tmp_path / "runs"), "export": True,
                    "export_dir": str(ro)}):
        what = "export_dir (--export-dir)" if "export_dir" in kwargs else "directory (--directory)"
        path = kwargs.get("export_dir", kwargs["directory"])
        with pytest.raises(ValueError) as exc:
            search("lenet5", tiny, tuner="random", max_trials=1, epochs=1, fix=FIX_ALL,
                   **kwargs)
        assert str(exc.value) == (f"{what} '{path}' cannot be written: no write permission "
                                  f"on {ro}; pass another directory.")
    assert sorted(os.listdir(tmp_path)) == ["a_file", "ro"] and os.listdir(ro) == []


def test_an_export_target_is_checked_before_the_search(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"name must be a directory name .* "
                                         r"Received: name='\.\./x'"):
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1, export=True,
               export_name="../x", directory=str(tmp_path / "runs"), fix=FIX_ALL)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="export_dir \\(--export-dir\\) is not a "
                                                 "directory: '.*file'"):
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1, export=True,
               export_dir=str(tmp_path / "file"), directory=str(tmp_path / "runs"),
               fix=FIX_ALL)
    # "" passed, and the whole search ran before the export refused it
    with pytest.raises(ValueError, match=r"^search: export_dir must be the path of the export's "
                                         r"base directory \(--export-dir\). "
                                         r"Received: export_dir=''$"):
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1, export=True,
               export_dir="", directory=str(tmp_path / "runs"), fix=FIX_ALL)
    with pytest.raises(TypeError, match=r"Received: export_dir=5$"):
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1, export=True,
               export_dir=5, directory=str(tmp_path / "runs"), fix=FIX_ALL)
    assert os.listdir(tmp_path) == ["file"]


def test_seed_must_be_a_valid_random_seed(tiny, tmp_path):
    for seed in (-1, 2**32):
        with pytest.raises(ValueError, match=rf"seed must be an integer between 0 and "
                                             rf"2\*\*32 - 1\. Received: seed={seed}$"):
            search("lenet5", tiny, tuner="random", max_trials=1, epochs=1, seed=seed,
                   directory=str(tmp_path), project="s", fix=FIX_ALL)
    assert os.listdir(tmp_path) == []


def test_a_hyperparameter_cannot_be_both_fixed_and_set(tiny, tmp_path):
    message = (r"hyperparameter 'lr' is given to both fix \(--fix lr=0\.001\) and set "
               r"\(--set lr=0\.01\); give it to one of them")
    with pytest.raises(ValueError, match=message):
        hms.get_hypermodel("lenet5", fix={"lr": 1e-3}, set={"lr": 1e-2})
    with pytest.raises(ValueError, match=message):
        search(hms.get_hypermodel("lenet5"), tiny, tuner="random", max_trials=1, epochs=1,
               directory=str(tmp_path), fix={**FIX_ALL, "lr": 1e-3}, set={"lr": 1e-2})
    assert os.listdir(tmp_path) == []
    # resnet34 fixes depth itself: narrowing depth stays allowed.
    assert hms.get_hypermodel("resnet34", set={"depth": "18,34"}).params["depth"].default == 34


def test_cli_refuses_bad_input_before_it_writes_anything(capsys, tmp_path):
    from zoo.cli import main
    tiny_search = ["tune", "lenet5", "--directory", str(tmp_path / "runs"), "--tuner",
                   "random", "--max-trials", "1", "--epochs", "1", "--fix", "variant=modern"]

    def error(argv):
        code = main(tiny_search + argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1, lines
        return lines[0]

    assert error(["--cv", "100000"]).startswith("zoo: error: cv=100000 needs at least 100000 "
                                                "examples of every class")
    assert not (tmp_path / "runs" / "lenet5_digits_random").exists()
    assert error(["--project", "../etc"]) == (
        "zoo: error: project must be a single directory name (no '/', not '.' or '..', not "
        "empty). Received: project='../etc'")
    assert error(["--project", "a/b"]).endswith("Received: project='a/b'")
    assert error(["--seed", "-1"]) == ("zoo: error: seed must be an integer between 0 and "
                                       "2**32 - 1. Received: seed=-1")
    assert error(["--fix", "lr=1e-3", "--set", "lr=1e-2"]) == (
        "zoo: error: hyperparameter 'lr' is given to both fix (--fix lr=1e-3) and set (--set "
        "lr=1e-2); give it to one of them")
    # A worker or chief with no peer waits for ever; --epochs 0 makes such a run fail at
    # once in search() if the address or id were not refused first.
    assert error(["--worker", "127.0.0.1:1", "--worker-id", "-1", "--epochs", "0"]) == (
        "zoo: error: --worker-id must be >= 0. Received: -1")
    assert os.listdir(tmp_path) == []
    for flag, address in (("--chief", "127.0.0.1:99999"), ("--worker", "127.0.0.1:0"),
                          ("--chief", "127.0.0.1"), ("--chief", ":8000"),
                          # gRPC read "::1:8000" as another address: the chief, which had
                          # checked it as ::1 port 8000, failed with gRPC's error (exit
                          # code 1) and left its project behind
                          ("--chief", "::1:8000"), ("--worker", "[10.0.0.1]:8000"),
                          ("--chief", "[[::1]]:8000"), ("--chief", "[]:8000")):
        worker_id = ["--worker-id", "0"] if flag == "--worker" else []
        with pytest.raises(SystemExit) as exit_info:
            main(tiny_search + [flag, address, *worker_id, "--epochs", "0"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(lines) == 1
        assert lines[0].endswith(f"argument {flag}: expected HOST:PORT with a port from 1 to "
                                 f"65535, such as 10.0.0.1:8000 ([::1]:8000 for an IPv6 "
                                 f"address); received {address!r}")
    assert os.listdir(tmp_path) == []


def test_a_local_cluster_refused_by_its_chief_reports_one_line(tmp_path, capfd, monkeypatch):
    # (a dataset of another task than the model's: known once the chief has loaded it;
    # --cv 1 and a hyperparameter the space does not have were refused by it too, and are
    # refused before it starts now)
    code, _, err = _tune_here(["unet", "--dataset", "digits", "--directory", str(tmp_path),
                               "--tuner", "random", "--workers", "1"], capfd, monkeypatch)
    assert code == 2
    assert err.strip().splitlines() == [
        "zoo: error: unet is a segmentation model; dataset 'digits' is a classification "
        "dataset"]
    assert os.listdir(tmp_path) == []
    # --epochs, --cv and a hyperparameter's name are refused before the chief starts.

    def started(cmd, **kwargs):
        raise AssertionError(f"started {cmd}")
    monkeypatch.setattr(subprocess, "Popen", started)
    code, _, err = _tune_here(["lenet5", "--directory", str(tmp_path), "--tuner", "random",
                               "--fix", "nosuch=1", "--workers", "1"], capfd, monkeypatch)
    assert code == 2
    assert err.strip().splitlines() == [
        "zoo: error: unknown hyperparameter 'nosuch' for lenet5. Known: variant, optimizer, "
        "lr, lr_schedule, weight_decay, clip_norm, batch_size, augment, label_smoothing."]
    code, _, err = _tune_here(["lenet5", "--directory", str(tmp_path), "--epochs", "0",
                               "--workers", "1"], capfd, monkeypatch)
    assert code == 2
    assert err.strip().splitlines() == ["zoo: error: --epochs must be >= 1. Received: 0"]
    code, _, err = _tune_here(["lenet5", "--directory", str(tmp_path), "--tuner", "random",
                               "--cv", "1", "--workers", "1"], capfd, monkeypatch)
    assert code == 2
    assert err.strip().splitlines() == [
        "zoo: error: cv must be None or an integer >= 2 (folds). Received: cv=1"]
    assert os.listdir(tmp_path) == []

    # A model without a search space is refused before any process starts, by name.
    code, _, err = _tune_here(["resnet101", "--directory", str(tmp_path), "--workers", "1"],
                              capfd, monkeypatch)
    assert code == 2
    assert err.strip().splitlines() == [
        "zoo: error: no search space for model 'resnet101'. Known: alexnet, googlenet, "
        "inception_v3, lenet5, resnet, unet, xception, resnet18, resnet34, resnet50."]


def _python(code):
    """``code`` run by a fresh Python (nothing imported yet), its output captured."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)


def test_a_local_cluster_command_starts_its_processes_without_tensorflow():
    # zoo tune --workers N checks its arguments and starts the chief and the workers; the
    # processes it starts import TensorFlow, Keras and keras-tuner, so it does not (~6 s).
    code = ("import sys\n"
            "from zoo.cli import main\n"
            "search = __import__('importlib').import_module('tuning.search')\n"
            "def started(args):\n"
            "    heavy = sorted({'tensorflow', 'keras', 'keras_tuner'} & set(sys.modules))\n"
            "    print(args.workers, args.ignore_label, args.set, args.mixed_precision, heavy)\n"
            "    return 0\n"
            "search._run_local_cluster = started\n"
            "sys.exit(main(['tune', 'unet', '--workers', '2', '--ignore-label', '255',\n"
            "               '--set', 'lr=1e-4:1e-2', '--mixed-precision', 'off']))\n")
    r = _python(code)
    assert (r.returncode, r.stdout) == (0, "2 255 ['lr=1e-4:1e-2'] off []\n"), r.stderr[-2000:]


# -- zoo tune --data-dir / --download ----------------------------------------------------------

_TUNE_SMALL = ["--tuner", "random", "--max-trials", "1", "--epochs", "1", "--fix",
               "variant=modern", "--fix", "augment=0", "--fix", "batch_size=32"]


def test_cli_data_dir_and_download_reach_the_loader_and_not_the_fingerprint(
        tmp_path, monkeypatch, capsys):
    # Under tfds' mock data every tfds.load call of the search (the probe, the three
    # splits) gets zoo tune's --data-dir and --download. Where the data lives is not what
    # it is: the same search with the data in another directory resumes.
    import tensorflow_datasets as tfds

    from zoo.cli import main
    calls, real = [], tfds.load

    def load(*args, **kwargs):
        calls.append((kwargs.get("data_dir"), kwargs.get("download")))
        return real(*args, **kwargs)

    monkeypatch.setattr(tfds, "load", load)
    runs = tmp_path / "runs"
    argv = ["tune", "lenet5", "--dataset", "mnist", "--directory", str(runs), "--project",
            "m", *_TUNE_SMALL]
    with tfds.testing.mock_data(num_examples=40):
        assert main(argv + ["--data-dir", str(tmp_path / "a")]) == 0
        assert calls and set(calls) == {(str(tmp_path / "a"), False)}
        calls.clear()
        assert main(argv + ["--data-dir", str(tmp_path / "b"), "--download"]) == 0
        assert calls and set(calls) == {(str(tmp_path / "b"), True)}
    out = capsys.readouterr().out
    assert out.count("best trial 0:") == 2          # resumed: still the one trial
    assert str(tmp_path) not in (runs / "m" / "search.json").read_text()
    assert len(pd.read_csv(runs / "m" / "trials.csv")) == 1


def test_cli_missing_dataset_error_names_only_options_zoo_tune_has(tmp_path, capsys):
    # The error for a tfds dataset that is not on disk tells how to get it: --data-dir DIR,
    # --download. zoo tune takes both; the search writes nothing before the data loads.
    import argparse
    import re

    from tuning.search import configure_tune
    from zoo.cli import main
    empty = tmp_path / "data"
    empty.mkdir()
    code = main(["tune", "lenet5", "--dataset", "mnist", "--data-dir", str(empty),
                 "--directory", str(tmp_path / "runs"), *_TUNE_SMALL])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"zoo: error: Dataset 'mnist' is not available in {empty} ")
    advice = re.sub(r"`tfds build [^`]*`", "", lines[0])   # tfds' own command line aside
    named = set(re.findall(r"(?<![\w-])--[\w-]+", advice))
    assert {"--data-dir", "--download"} <= named
    parser = argparse.ArgumentParser()
    configure_tune(parser)
    options = {s for action in parser._actions for s in action.option_strings}
    assert named <= options, named - options
    assert sorted(os.listdir(tmp_path)) == ["data"] and os.listdir(empty) == []


def test_cli_data_dir_and_download_are_zoo_trains_and_reach_every_local_worker():
    import argparse

    from tuning.search import _argv, configure_tune
    from zoo.train import configure_train
    tune, train = argparse.ArgumentParser(), argparse.ArgumentParser()
    configure_tune(tune)
    configure_train(train)
    for dest in ("data_dir", "download"):
        ours, theirs = ([a for a in p._actions if a.dest == dest][0] for p in (tune, train))
        assert (ours.option_strings, ours.help, ours.default, ours.nargs) == (
            theirs.option_strings, theirs.help, theirs.default, theirs.nargs)
    args = tune.parse_args(["lenet5", "--workers", "2", "--data-dir", "some dir",
                            "--download"])
    again = tune.parse_args(_argv(args))     # a chief's or worker's command line
    assert (again.data_dir, again.download) == ("some dir", True)
    again = tune.parse_args(_argv(tune.parse_args(["lenet5", "--workers", "2"])))
    assert (again.data_dir, again.download) == (None, False)


# -- import tuning -----------------------------------------------------------------------------

def test_import_tuning_reaches_its_submodules_and_stays_cheap():
    code = ("import sys, tuning\n"
            "assert 'keras' not in sys.modules, 'import tuning imported keras'\n"
            "hm = tuning.hypermodels\n"
            "assert 'hypermodels' in dir(tuning)\n"
            "assert hm is sys.modules['tuning.hypermodels'] and hasattr(hm, 'get_hypermodel')\n"
            "assert callable(tuning.search)\n"
            "try:\n"
            "    tuning.no_such_thing\n"
            "except AttributeError as exc:\n"
            "    assert str(exc) == \"module 'tuning' has no attribute 'no_such_thing'\"\n"
            "else:\n"
            "    raise AssertionError('no AttributeError')\n"
            "print('ok')\n")
    r = _python(code)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr[-2000:]


# -- stepped float values --------------------------------------------------------------------

def test_clean_float_removes_the_binary_noise_of_stepped_ranges():
    assert 0.0 + 3 * 0.05 == 0.15000000000000002        # what keras-tuner computes
    assert hms.clean_float(0.0 + 3 * 0.05, 0.05) == 0.15
    assert [hms.clean_float(i * 0.1, 0.1) for i in range(6)] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert repr(hms.clean_float(-0.3 + 3 * 0.1 - 1e-17, 0.1)) == "0.0"      # not -0.0
    assert hms.clean_float(0.25 + 0.125, 0.125, 0.25) == 0.375
    assert hms.clean_float(3e-4 * 10.0 ** 3, 10.0, 3e-4, "log") == 0.3     # 0.30000000000000004
    assert hms.clean_float(0.123456789123456789, None) == 0.123456789123456789   # continuous
    assert hms.clean_float(3, 0.1) == 3 and hms.clean_float(True, 0.1) is True
    f = kt.engine.hyperparameters.Float("x", 0.0, 0.2, step=0.05)
    assert hms.clean_value(f, f._get_value_by_index(3)) == 0.15
    assert hms.clean_value(kt.engine.hyperparameters.Fixed("y", 0.15000000000000002),
                           0.15000000000000002) == 0.15000000000000002   # as the user gave it


def test_a_stepped_float_trains_and_is_reported_without_binary_noise(tmp_path, monkeypatch,
                                                                      capsys):
    # keras-tuner draws label_smoothing 0 + 3 * 0.05 = 0.15000000000000002 (seed 12): the
    # model trains with 0.15 and the summary line, the table, trials.csv and best.json say
    # 0.15; keras-tuner's own trial record keeps its value (its oracles map values back to
    # steps by floor division, and 0.15 // 0.05 is 2).
    import importlib

    from zoo.cli import main
    train = importlib.import_module("zoo.train")
    real, smoothing = train.compile_model, []

    def compile_model(*args, **kwargs):
        smoothing.append(kwargs.get("label_smoothing"))
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "compile_model", compile_model)
    fixed = [f"{k}={v}" for k, v in {**FIX_ALL, "lr": 0.01}.items() if k != "label_smoothing"]
    argv = ["tune", "lenet5", "--tuner", "random", "--max-trials", "1", "--epochs", "1",
            "--seed", "12", "--directory", str(tmp_path), "--project", "ls"]
    for item in fixed:
        argv += ["--fix", item]
    assert main(argv) == 0
    out = capsys.readouterr().out
    project = tmp_path / "ls"
    recorded = json.loads((project / "trial_0" / "trial.json").read_text())
    assert recorded["hyperparameters"]["values"]["label_smoothing"] == 0.15000000000000002
    assert "0.15000000000000002" not in out
    best_line = [line for line in out.splitlines() if line.startswith("best trial 0:")]
    assert best_line and best_line[0].endswith(", label_smoothing=0.15)"), best_line
    assert "0.15000000000000002" not in (project / "trials.csv").read_text()
    assert pd.read_csv(project / "trials.csv")["label_smoothing"].tolist() == [0.15]
    best = json.loads((project / "best.json").read_text())
    assert best["hyperparameters"]["label_smoothing"] == 0.15
    assert 0.15 in smoothing and 0.15000000000000002 not in smoothing


@pytest.mark.parametrize("family, name, set_, want", [
    ("unet", "dropout", None, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]),
    ("alexnet", "dropout", None, [round(0.1 * i, 1) for i in range(8)]),
    ("lenet5", "label_smoothing", {"label_smoothing": "0.1:0.15"}, [0.1, 0.15]),
    ("lenet5", "augment", None, [0.0, 0.5, 1.0, 1.5, 2.0]),
])
def test_a_stepped_range_can_reach_its_top(family, name, set_, want):
    """keras-tuner counts (max - min) // step + 1 values, one short for 0 .. 0.5 step 0.1
    (0.5 // 0.1 == 4.0): every value the space table shows must be one a trial can get."""
    hm = hms.get_hypermodel(family, set=set_)
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    declared = next(p for p in hp.space if p.name == name)
    got = sorted({hms.clean_float(declared.prob_to_value(q / 400), declared.step,
                                  declared.min_value, declared.sampling)
                  for q in range(400)})
    assert got == want


def test_the_refit_starts_from_the_seeds_weights_whatever_ran_before(monkeypatch):
    """A cross-validated search's best trial is refitted from seeded weights, on its examples
    in the seed's order: the same model whether the search ran in this process or a
    finished one was resumed in a new one (where no trial had set TensorFlow's global seed,
    on which a shuffle's order depends: its refit scored 0.8333 where the export of the
    first run's scored 0.8111)."""
    import importlib
    search_module = importlib.import_module("tuning.search")
    hm = hms.get_hypermodel("lenet5", fix={"variant": "modern"})
    hm.input_shape, hm.num_classes = (32, 32, 1), 10
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    trial = kt.engine.trial.Trial(hyperparameters=hp)
    orders = []
    monkeypatch.setattr(hm, "fit", lambda hp, model, data, **kwargs: orders.append(
        [int(v) for v in np.concatenate([y for _, y in data])]))  # the weights as built
    pooled = (np.zeros((40, 32, 32, 1), "float32"), np.arange(40, dtype="int32") % 10)
    weights = []
    for noise in (1, 2):
        np.random.seed(noise)
        keras.utils.set_random_seed(noise)        # another history of the process
        keras.random.uniform((noise,))
        model = search_module._refit(hm, trial, pooled, 1, seed=7)
        weights.append([w.copy() for w in model.get_weights()])
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
    assert orders[0] == orders[1] and sorted(orders[0]) == sorted(pooled[1].tolist())


# -- seeds, reloads, failures, the chief's address ---------------------------------------------

@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband"])
def test_seed_zero_searches_the_same_hyperparameters_every_time(tmp_path, tuner):
    # keras-tuner's oracles take `seed or random.randint(1, 10000)`: seed 0, the default,
    # must still be the seed, or the same command searches other values each time.
    from tuning.search import _make_tuner
    drawn = []
    for project in ("a", "b"):
        kt_tuner = _make_tuner(tuner, hms.get_hypermodel("lenet5"), "val_accuracy",
                               max_trials=3, epochs=2, directory=str(tmp_path),
                               project=project, seed=0, max_consecutive_failed_trials=3,
                               executions_per_trial=1)
        assert kt_tuner.oracle.seed == 0
        drawn.append([kt_tuner.oracle.create_trial(f"tuner{i}").hyperparameters.values
                      for i in range(2)])
    assert drawn[0] == drawn[1]


def test_the_bayesian_tuners_first_trials_are_the_random_tuners(tmp_path):
    # As the README says: 3 random trials per declared hyperparameter (fixed ones too:
    # LeNet-5's 8 give 24) before keras-tuner fits its Gaussian process, drawn as the random
    # tuner draws them with the same seed.
    from tuning.search import _make_tuner
    hm = hms.get_hypermodel("lenet5", fix={"variant": "modern", "optimizer": "adam"})
    assert len(hm.declared_names()) == 8
    drawn = {}
    for tuner in ("random", "bayesian"):
        oracle = _make_tuner(tuner, hm, "val_accuracy", max_trials=30, epochs=1,
                             directory=str(tmp_path), project=tuner, seed=3,
                             max_consecutive_failed_trials=3, executions_per_trial=1).oracle
        oracle.verbose = 0
        drawn[tuner] = []
        for i in range(24):
            trial = oracle.create_trial("tuner0")
            oracle.update_trial(trial.trial_id, {"val_accuracy": i % 7 / 10})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
            drawn[tuner].append(trial.hyperparameters.values)
    assert oracle.num_initial_points is None and len(oracle.hyperparameters.space) == 8
    assert drawn["bayesian"] == drawn["random"]


def test_a_grid_search_changes_the_last_hyperparameters_first(tmp_path):
    # As the README says: LeNet-5's whole space is a grid of 19,200, and the first 10 trials
    # differ in label_smoothing and augment only.
    import math

    from tuning.search import _make_tuner
    hm = hms.get_hypermodel("lenet5")
    hm.grid = True
    oracle = _make_tuner("grid", hm, "val_accuracy", max_trials=10, epochs=1,
                         directory=str(tmp_path), project="g", seed=0,
                         max_consecutive_failed_trials=3, executions_per_trial=1).oracle
    oracle.verbose = 0
    assert math.prod(len(list(hp.values)) for hp in oracle.hyperparameters.space) == 19_200
    drawn = []
    for _ in range(10):
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        drawn.append(trial.hyperparameters.values)
    assert {k for values in drawn for k in values if values[k] != drawn[0][k]} == {
        "label_smoothing", "augment"}


def test_a_resumed_bayesian_search_of_seed_zero_proposes_the_same_trials(tmp_path):
    # keras-tuner does not save the generator of its optimiser's starting points and made it
    # anew from `seed or random.randint(1, 10000)`: resumed, a search of seed 0 (the
    # default) proposed other trials each time once its Gaussian process was fitted.
    import random

    from tuning.search import _make_tuner

    def bayesian():
        return _make_tuner("bayesian", hms.get_hypermodel("lenet5"), "val_accuracy",
                           max_trials=3, epochs=1, directory=str(tmp_path), project="b",
                           seed=0, max_consecutive_failed_trials=3,
                           executions_per_trial=1).oracle

    oracle = bayesian()
    trial = oracle.create_trial("tuner0")
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    starts = []
    for other in (1, 2):      # another history of the process
        random.seed(other)
        starts.append(bayesian()._random_state.uniform(size=4).tolist())
    assert starts[0] == starts[1]


@SLOW_OK
def test_a_reloaded_search_does_not_run_an_ended_trial_again(tiny, tmp_path, finished):
    # A chief saves its oracle before it lets an ended trial go, and not again once its
    # workers stop: the finished search's oracle.json still holds the last trial as
    # running. Run again, that trial must not be trained a second time.
    kwargs = dict(directory=str(tmp_path), project="f", **FINISHED)
    oracle_file = tmp_path / "f" / "oracle.json"
    state = json.loads(oracle_file.read_text())
    assert state["ongoing_trials"] == {} and state["end_order"] == ["0", "1"]
    oracle_file.write_text(json.dumps({**state, "ongoing_trials": {"tuner0": "1"}}))
    _CountFits.fits.clear()
    again = search("lenet5", tiny, callbacks=[_CountFits()], **kwargs)
    assert _CountFits.fits == []
    assert list(again["status"]) == ["COMPLETED"] * 2
    assert list(again["score"]) == pytest.approx(list(finished["score"]))
    state = json.loads(oracle_file.read_text())
    assert state["end_order"] == ["0", "1"] and state["run_times"] == {"0": 1, "1": 1}


def test_a_search_stopped_after_its_trials_says_so(tiny, tmp_path, finished, monkeypatch):
    # Ctrl-C while the best trial was tested or exported: zoo tune said the interrupted
    # trial would run again.
    import importlib
    module = importlib.import_module("tuning.search")   # (tuning.search is the function)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "_best", stopped)
    with pytest.raises(KeyboardInterrupt) as info:
        search("lenet5", tiny, directory=str(tmp_path), project="f", **FINISHED)
    assert info.value.zoo_trials_done is True


def test_a_search_killed_as_it_made_a_trial_makes_it_again(tiny, tmp_path, finished):
    # keras-tuner writes a new trial's trial.json, then oracle.json: killed between the
    # two (SIGKILL), the search left a trial oracle.json never started, which its reloaded
    # oracle counted as made: resumed with one trial more to run, it ran none and ended
    # with that trial RUNNING.
    kwargs = dict(directory=str(tmp_path), project="f", **{**FINISHED, "max_trials": 3})
    project = tmp_path / "f"
    made = json.loads((project / "trial_1" / "trial.json").read_text())
    (project / "trial_2").mkdir()
    (project / "trial_2" / "trial.json").write_text(json.dumps(
        {**made, "trial_id": "2", "metrics": {"metrics": {}}, "score": None,
         "best_step": 0, "status": "RUNNING"}))
    _CountFits.fits.clear()
    df = search("lenet5", tiny, callbacks=[_CountFits()], **kwargs)
    assert len(_CountFits.fits) == 1                     # the third trial, made again
    assert list(df["status"]) == ["COMPLETED"] * 3
    assert df.loc[2, "lr"] not in list(finished["lr"])   # the lr still to try
    assert json.loads((project / "oracle.json").read_text())["end_order"] == ["0", "1", "2"]


def test_a_resumed_grid_search_goes_on_through_its_grid(tmp_path):
    # keras-tuner's grid oracle keeps where it is in the grid in memory only: reloaded, a
    # finished grid search given more max_trials ran nothing more, and an interrupted one
    # stopped on a KeyError of the trial it ran again.
    from tuning.search import _make_tuner
    hm = hms.get_hypermodel("lenet5", fix=FIX_ALL, set={"lr": [1e-3, 1e-2, 1e-1]})
    hm.grid = True

    def grid(max_trials):
        return _make_tuner("grid", hm, "val_accuracy", max_trials=max_trials, epochs=1,
                           directory=str(tmp_path), project="g", seed=0,
                           max_consecutive_failed_trials=3, executions_per_trial=1)

    def end(oracle, trial):
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)

    oracle = grid(1).oracle
    end(oracle, oracle.create_trial("tuner0"))
    assert oracle.create_trial("tuner0").status == "STOPPED"     # max_trials reached
    oracle = grid(3).oracle                                       # run again with more
    interrupted = oracle.create_trial("tuner0")
    assert interrupted.status == "RUNNING"                        # (was STOPPED)
    oracle.save()                                                 # ... and killed
    oracle = grid(3).oracle
    again = oracle.create_trial("tuner0")
    assert again.trial_id == interrupted.trial_id
    end(oracle, again)
    last = oracle.create_trial("tuner0")                          # (was a KeyError)
    end(oracle, last)
    assert [oracle.trials[t].hyperparameters.values["lr"] for t in oracle.start_order] == \
        [1e-3, 1e-2, 1e-1]
    assert grid(10).oracle.create_trial("tuner0").status == "STOPPED"   # the grid is done


@SLOW_OK
def test_too_many_failed_trials_stop_the_search_with_one_line(tiny, tmp_path, capsys):
    with pytest.raises(RuntimeError) as info:
        search("lenet5", tiny, tuner="random", max_trials=3, epochs=1,
               directory=str(tmp_path), project="f", fix=FIX_ALL,
               set={"lr": [1e38, 1e37]}, max_consecutive_failed_trials=2)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("the search stopped after 2 consecutive failed trials (the "
                              "last: FailedTrialError: loss became ")
    assert message.endswith(f"; the trials are in {tmp_path / 'f' / 'trials.csv'}")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("trial ")] == [
        "trial 0 failed", "trial 1 failed"]
    assert "trial 0 failed: FailedTrialError: loss became " in err
    table = pd.read_csv(tmp_path / "f" / "trials.csv")
    assert list(table["status"]) == ["FAILED", "FAILED"]
    assert (table["seconds"] > 0).all() and set(table["tuner"]) == {"tuner0"}  # the last too
    assert table["score"].isna().all() and table["best_step"].isna().all()  # not epoch 0
    # Each failed trial's traceback is in its trial.json, the last one's too (keras-tuner
    # raises before it saves the trial that is one failure too many: it was left RUNNING).
    for trial in ("0", "1"):
        saved = json.loads((tmp_path / "f" / f"trial_{trial}" / "trial.json").read_text())
        assert saved["status"] == "FAILED"
        assert "Traceback" in saved["message"] and "loss became " in saved["message"]


def test_a_trial_checkpoint_into_a_full_disk_fails_the_trial_in_one_line(tiny, tmp_path,
                                                                          capsys, monkeypatch):
    # keras-tuner wrote a trial's best weights in place with HDF5, which went on writing
    # into a full disk: a screenful of h5py's tracebacks, a half-written checkpoint, and a
    # segmentation fault (exit code 139). The checkpoint is refused before it starts.
    import collections
    statvfs = os.statvfs
    full = collections.namedtuple("statvfs", "f_bavail f_bfree f_frsize")(1, 1, 4096)
    monkeypatch.setattr(os, "statvfs", lambda path: full if "trial_" in os.fspath(path)
                        else statvfs(path))
    with pytest.raises(RuntimeError, match="after 1 consecutive failed trial"):
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1,
               directory=str(tmp_path), project="d", fix=FIX_ALL,
               max_consecutive_failed_trials=1)
    checkpoint = tmp_path / "d" / "trial_0" / "checkpoint.weights.h5"
    assert (f"trial 0 failed: OSError: [Errno 28] cannot write {str(checkpoint)!r}: No space "
            f"left on device (it needs about ") in capsys.readouterr().err
    assert not any(name.endswith(".h5") for name in os.listdir(checkpoint.parent))


def test_zoo_debug_prints_a_failed_trials_traceback(tiny, tmp_path, capsys, monkeypatch):
    # README (Failures): a failed trial's traceback is in its trial.json, and ZOO_DEBUG=1
    # prints it too (keras-tuner's DEBUG, which zoo tune otherwise turns off).
    monkeypatch.setenv("ZOO_DEBUG", "1")
    with pytest.raises(RuntimeError, match="after 1 consecutive failed trial"):
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1,
               directory=str(tmp_path), project="d", fix={**FIX_ALL, "lr": 1e38},
               max_consecutive_failed_trials=1)
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "FailedTrialError" in err
    assert "trial 0 failed: FailedTrialError: loss became " in err


def test_a_chief_refuses_an_address_it_cannot_serve_on(tiny, tmp_path, monkeypatch):
    # gRPC binds with SO_REUSEPORT: a second chief on a port in use would serve beside
    # the first one, and workers would join either search.
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
        monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
        monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
        with pytest.raises(ValueError, match=rf"^the chief cannot serve on 127\.0\.0\.1:{port}: "
                                             rf"Address already in use \(another chief or "
                                             rf"program listens there, or the address is not "
                                             rf"this machine's\)\. Choose another --chief "
                                             rf"HOST:PORT$"):
            search("lenet5", tiny, tuner="random", max_trials=1, epochs=1,
                   directory=str(tmp_path), project="c", fix=FIX_ALL)
    # An IPv6 address set without gRPC's brackets (it read "::1:8000" as another address).
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "::1")
    with pytest.raises(ValueError, match=rf"^the chief cannot serve on ::1:{port}: an IPv6 "
                                         rf"address goes in brackets, \[::1\]:{port}$"):
        search("lenet5", tiny, tuner="random", max_trials=1, epochs=1,
               directory=str(tmp_path), project="c", fix=FIX_ALL)
    assert os.listdir(tmp_path) == []


def test_a_worker_waiting_for_its_chief_says_so_and_leaves_nothing_when_stopped(tmp_path):
    # keras-tuner waits for the chief as long as it takes: the worker says it is waiting,
    # and stopped before the chief answered it removes the directories it made.
    import signal
    import socket
    import subprocess
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]        # nothing listens there
    runs = tmp_path / "runs"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", "tune", "lenet5", "--worker", f"127.0.0.1:{port}",
         "--worker-id", "3", "--directory", str(runs), "--tuner", "random", "--max-trials",
         "1", "--epochs", "1"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="3"),
        # Ctrl-C's signal as a terminal sends it: a suite started in the background (bash
        # "cmd &") inherits SIGINT ignored, and the worker would not see it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    waiting = (f"zoo tune: worker 3 waits for the chief at 127.0.0.1:{port} (nothing answers "
               f"there yet); start the chief's command (--chief 127.0.0.1:{port}), or press "
               f"Ctrl-C to stop")
    import queue
    import threading
    lines = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x.rstrip("\n")) for x in proc.stderr],
                              daemon=True)
    reader.start()
    try:
        seen = []
        while not seen or seen[-1] != waiting:
            seen.append(lines.get(timeout=120))    # queue.Empty: no such line in 2 minutes
        assert (runs / "lenet5_digits_random").is_dir()       # keras-tuner's, while waiting
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    # The worker has exited: its stderr is read to the end once the reader has seen the end
    # of the pipe (reading on until a 5-second silence cost 5 s).
    reader.join(timeout=60)
    err = []
    while not lines.empty():
        err.append(lines.get_nowait())
    assert proc.returncode == 130
    assert err[-2:] == [
        f"zoo tune: worker 3 stopped before the chief at 127.0.0.1:{port} answered; nothing "
        f"was written", "zoo: interrupted"]
    assert not runs.exists()
    from tuning.search import _not_answering
    assert _not_answering("name.invalid", port) == "the name name.invalid does not resolve"


def test_a_worker_that_loses_its_chief_says_what_to_do(monkeypatch):
    import grpc

    from tuning.search import _raise_lost_chief

    class RpcError(grpc.RpcError):
        def __init__(self, code, details):
            self._code, self._details = code, details

        def code(self):
            return self._code

        def details(self):
            return self._details

    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "10.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    with pytest.raises(RuntimeError, match=r"^this worker lost the chief at 10\.0\.0\.1:8000 "
                                           r"\(Stream removed\)\. Start the chief again with "
                                           r"its command, then this worker with the same "
                                           r"--worker-id: the trial it was running is run "
                                           r"again$"):
        _raise_lost_chief(RpcError(grpc.StatusCode.UNAVAILABLE, "Stream\nremoved"))
    with pytest.raises(RuntimeError, match=r"^the chief at 10\.0\.0\.1:8000 answered this "
                                           r"worker with an error: Exception calling "
                                           r"application: boom$"):
        _raise_lost_chief(RpcError(grpc.StatusCode.UNKNOWN,
                                   "Exception calling application: boom"))
    _raise_lost_chief(ValueError("not gRPC"))     # anything else is raised as it is


@SLOW_OK
def test_a_search_killed_while_it_writes_its_state_can_be_resumed(tiny, tmp_path, monkeypatch):
    # keras-tuner opens its state files for writing in place: a process killed between the
    # open and the close (simulated here) left an empty oracle.json, and every later run
    # failed on it ("Expecting value: line 1 column 1"). The search writes them all at once.
    from keras_tuner.src.backend import io as kt_io
    real = kt_io.File

    class Killed(BaseException):   # nothing catches it, as nothing survives a kill
        pass

    def killed_while_writing(filename, mode):
        if "w" in mode and os.path.basename(filename) in ("oracle.json", "tuner0.json",
                                                          "trial.json"):
            open(filename, "w").close()          # truncated, then the process dies
            raise Killed(filename)
        return real(filename, mode)

    monkeypatch.setattr(kt_io, "File", killed_while_writing)
    df = search("lenet5", tiny, tuner="random", max_trials=1, epochs=1,
                directory=str(tmp_path), project="k", fix={**FIX_ALL, "lr": 1e-2})
    assert list(df["status"]) == ["COMPLETED"]
    project = tmp_path / "k"
    for name in ("oracle.json", "tuner0.json", "trial_0/trial.json"):
        json.loads((project / name).read_text())
    assert not [f for f in os.listdir(project) if ".tmp-" in f]


def test_an_image_size_some_point_of_the_space_cannot_build_is_refused(capsys, tmp_path):
    """U-Net's same-padded levels need a multiple of 2**depth: at 16x16 the default space's
    depth 5 would fail every trial that draws it; a size below a family's minimum would fail
    them all. Both are refused before anything is written."""
    from zoo.cli import main

    def error(argv):
        code = main(["tune", *argv, "--directory", str(tmp_path / "runs"), "--tuner",
                     "random", "--max-trials", "1", "--epochs", "1"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1, lines
        return lines[0]

    assert error(["unet", "--dataset", "shapes", "--image-size", "16,16"]) == (
        "zoo: error: unet needs an image size that is a multiple of 2**depth; received image "
        "size 16x16, which depth 5 of the space does not fit: limit the space to depth 2,3,4 "
        "(--set depth=2,3,4) or use a size that is a multiple of 32")
    assert error(["unet", "--dataset", "shapes", "--image-size", "24,24", "--set",
                  "depth=4,5"]).endswith("which depths 4 and 5 of the space do not fit: use a "
                                         "size that is a multiple of 32")
    assert error(["alexnet", "--image-size", "16,16"]) == (
        "zoo: error: alexnet needs images of at least 67x67; received image size 16x16")
    assert not (tmp_path / "runs").exists()
    hm = hms.get_hypermodel("unet", set={"depth": "2,3"})
    hm.check_input_shape((24, 40, 3))         # multiples of 8: every depth of the space


def test_the_printed_trials_table_leaves_missing_values_blank_as_trials_csv():
    from tuning.search import _text
    df = pd.DataFrame({"trial": ["0", "1", "2"], "status": ["COMPLETED", "FAILED", "RUNNING"],
                       "lr": [1e-3, 1e38, 5e-3], "score": [0.8125, None, None],
                       "best_step": pd.array([1, None, None], dtype="Int64"),
                       "seconds": [1.5, 1.25, None], "tuner": ["tuner0", "tuner0", None]})
    lines = _text(df).splitlines()
    assert "nan" not in _text(df) and "<NA>" not in _text(df)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert cells[0] == ["0", "COMPLETED", "0.001", "0.8125", "1", "1.5", "tuner0"]
    assert cells[1] == ["1", "FAILED", "1e+38", "", "", "1.25", "tuner0"]
    assert cells[2] == ["2", "RUNNING", "0.005", "", "", "", ""]
    # trials.csv leaves the same cells blank.
    assert df.to_csv(index=False).splitlines()[2:] == ["1,FAILED,1e+38,,,1.25,tuner0",
                                                       "2,RUNNING,0.005,,,,"]


def test_cli_quiet_is_verbose_0_and_ctrl_c_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import importlib
    from zoo.cli import main
    module = importlib.import_module("tuning.search")
    calls = []

    def interrupted(model, dataset, **kwargs):
        calls.append(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "search", interrupted)
    runs = str(tmp_path / "runs")
    assert main(["tune", "lenet5", "--quiet", "--directory", runs]) == 130
    assert calls[-1]["verbose"] == 0
    assert capsys.readouterr().err.splitlines() == [
        "zoo tune: stopped before the search began", "zoo: interrupted"]
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "lenet5", "--quiet", "--verbose", "1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "zoo tune: error: argument --verbose: not allowed with argument --quiet")
    # Stopped during a search: how many trials completed and where it resumes.
    project = tmp_path / "runs" / "lenet5_digits_random"
    project.mkdir(parents=True)
    (project / "trials.csv").write_text("trial,status,score\n0,COMPLETED,0.5\n1,RUNNING,\n")
    assert main(["tune", "lenet5", "--tuner", "random", "--directory", runs]) == 130
    assert calls[-1]["verbose"] == 0 and len(calls) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"zoo tune: stopped with 1 trial completed; the same command resumes the search in "
        f"{project} (the interrupted trial runs again)", "zoo: interrupted"]
    # With --overwrite, the same command would start it afresh (it said it resumed it).
    assert main(["tune", "lenet5", "--tuner", "random", "--directory", runs,
                 "--overwrite"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        f"zoo tune: stopped with 1 trial completed; the same command without --overwrite "
        f"resumes the search in {project} (the interrupted trial runs again)",
        "zoo: interrupted"]
    calls.pop()
    # Stopped after its trials, testing or exporting the best: no trial runs again.
    done = KeyboardInterrupt()
    done.zoo_trials_done = True

    def stopped_after_its_trials(model, dataset, **kwargs):
        raise done

    monkeypatch.setattr(module, "search", stopped_after_its_trials)
    assert main(["tune", "lenet5", "--tuner", "random", "--directory", runs]) == 130
    assert capsys.readouterr().err.splitlines() == [
        f"zoo tune: stopped after the search's trials (1 trial completed), while testing or "
        f"exporting the best; the same command finishes the search in {project} with no "
        f"trial run again", "zoo: interrupted"]
    monkeypatch.setattr(module, "search", interrupted)
    # --verbose 1 asks for progress bars, which Keras redraws with carriage returns: in a
    # file or a pipe (here, capsys) the trials print one line per epoch instead.
    assert main(["tune", "lenet5", "--verbose", "1", "--directory", runs]) == 130
    assert calls.pop()["verbose"] == 2
    capsys.readouterr()
    # --max-trials and --epochs are refused by their own names, before any search.
    for flag in ("--max-trials", "--epochs"):
        assert main(["tune", "lenet5", flag, "0", "--directory", runs]) == 2
        assert capsys.readouterr().err.strip() == f"zoo: error: {flag} must be >= 1. Received: 0"
    assert len(calls) == 2


_E = re.escape


@pytest.mark.parametrize("kwargs, pattern", [
    ({"verbose": 5}, _E("verbose must be 0 (silent), 1 (progress bars) or 2 (one line per "
                        "epoch). Received: verbose=5")),
    ({"verbose": "x"}, "verbose must be 0 .*" + _E("Received: verbose='x'")),
    ({"executions_per_trial": 0}, _E("executions_per_trial must be a positive integer. "
                                     "Received: executions_per_trial=0")),
    ({"max_consecutive_failed_trials": 0}, _E("max_consecutive_failed_trials must be a "
                                              "positive integer. Received: "
                                              "max_consecutive_failed_trials=0")),
    ({"set": "lr=1e-3"}, _E("set must be a dict of hyperparameter names to values, such as "
                            "set={'lr': '1e-4:1e-2'}, or None. Received: set='lr=1e-3'")),
    ({"fix": ["lr=1e-3"]}, _E("fix must be a dict of hyperparameter names to values, such "
                              "as fix={'lr': 0.001}, or None. Received: fix=['lr=1e-3']")),
    ({"callbacks": 5}, _E("callbacks must be a list of keras.callbacks.Callback or None. "
                          "Received: callbacks=5")),
    ({"callbacks": [5]}, _E("callbacks must be a list of keras.callbacks.Callback or None. "
                            "Received: callbacks=[5]")),
    # a string would count as True: overwrite="no" deleted the project
    ({"overwrite": "no"}, _E("search: overwrite must be True or False. Received: overwrite='no'")),
    ({"resume": "no"}, _E("search: resume must be True or False. Received: resume='no'")),
    ({"export": "yes"}, _E("search: export must be True or False. Received: export='yes'")),
    ({"download": None}, _E("search: download must be True or False. Received: download=None")),
    # 1 and 0 passed as True and False (compared with ==)
    ({"deterministic": 1}, _E("search: deterministic must be True or False. "
                              "Received: deterministic=1")),
    ({"overwrite": 0}, _E("search: overwrite must be True or False. Received: overwrite=0")),
    ({"objective": 5}, _E("objective must be a metric name such as 'val_accuracy' (or "
                          "'NAME:min', 'NAME:max') or None. Received: objective=5")),
    ({"image_size": "32"}, _E("image_size must be (height, width) with positive integers. "
                              "Received: image_size='32'")),
    ({"directory": None}, _E("directory must be a path (str or os.PathLike). "
                             "Received: directory=None")),
])
def test_search_refuses_arguments_of_the_wrong_kind_before_it_starts(tmp_path, monkeypatch,
                                                                     kwargs, pattern):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=f"^{pattern}$"):
        search("lenet5", "digits", **{"directory": "runs", "tuner": "random", **kwargs})
    assert os.listdir(tmp_path) == []


def _unshuffled_tiny(tiny):
    """``tiny`` with its train and validation batches read once into fixed arrays."""
    import tensorflow as tf
    from zoo.data import Splits, to_arrays
    train, val = to_arrays(tiny.train), to_arrays(tiny.validation)
    return Splits(tf.data.Dataset.from_tensor_slices(train).batch(32),
                  tf.data.Dataset.from_tensor_slices(val).batch(32), tiny.test, tiny.info)


@SLOW_OK
def test_a_trial_scores_the_same_whatever_ran_before_it(tiny, tmp_path):
    # Each trial starts from the search's seed: the same search run twice in one process
    # (the second after the first has drawn from the random generators) scores alike.
    data = _unshuffled_tiny(tiny)
    kwargs = dict(tuner="random", max_trials=2, epochs=1, directory=str(tmp_path),
                  fix={**FIX_ALL, "augment": 0.0}, set={"lr": [1e-2, 3e-2]})
    first = search("lenet5", data, project="a", **kwargs)
    second = search("lenet5", data, project="b", **kwargs)
    assert list(first["status"]) == list(second["status"]) == ["COMPLETED"] * 2
    assert list(first["lr"]) == list(second["lr"])
    assert list(first["score"]) == list(second["score"])


_FAKE_CHIEF = """
import os, socket, sys, time
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1]))); server.listen(8)
deadline = time.time() + 20          # as keras-tuner's chief: waits for its worker's trial
while not os.path.exists(sys.argv[2]):
    if time.time() > deadline:
        sys.exit(3)
    time.sleep(0.2)
"""
_FAKE_WORKER = """
import os, signal, sys
if not os.path.exists(sys.argv[1]):          # the first start is killed mid-trial
    open(sys.argv[1], "w").close()
    os.kill(os.getpid(), signal.SIGKILL)
open(sys.argv[2], "w").close()                # started again: the trial ends
"""


def test_a_local_cluster_starts_a_killed_worker_again(tmp_path, monkeypatch, capsys):
    # keras-tuner's chief waits for the trial a worker holds: a --workers N cluster whose
    # worker was killed (out of memory, say) waited forever. The worker is started again
    # with its id and runs its trial again (the chief here stands for keras-tuner's).
    import argparse
    import importlib
    search_module = importlib.import_module("tuning.search")   # not the function
    real = subprocess.Popen
    started = []

    def fake(cmd, **kwargs):
        started.append(cmd)
        if "--chief" in cmd:
            port = cmd[cmd.index("--chief") + 1].rsplit(":", 1)[1]
            return real([sys.executable, "-c", _FAKE_CHIEF, port, str(tmp_path / "done")])
        return real([sys.executable, "-c", _FAKE_WORKER, str(tmp_path / "killed"),
                     str(tmp_path / "done")])

    monkeypatch.setattr(subprocess, "Popen", fake)
    parser = argparse.ArgumentParser()
    search_module.configure_tune(parser)
    args = parser.parse_args(["lenet5", "--workers", "1", "--directory", str(tmp_path)])
    assert search_module._run_local_cluster(args) == 0
    assert (tmp_path / "done").exists()
    workers = [cmd for cmd in started if "--worker" in cmd]
    assert len(workers) == 2 and workers[0] == workers[1]      # the same --worker-id 0
    assert capsys.readouterr().err == ("zoo tune: worker 0 stopped (killed by SIGKILL); "
                                       "starting it again to run its trial again\n")


_FAKE_CHIEF_KILLED = """
import os, signal, socket, sys, time
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1]))); server.listen(8)
while not os.path.exists(sys.argv[2]):        # killed (out of memory, say) once it serves
    time.sleep(0.1)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_local_cluster_whose_chief_is_killed_says_how_to_go_on(tmp_path, monkeypatch):
    # A killed chief ended a --workers N cluster with "distributed search failed: chief
    # (killed by SIGKILL)" alone; a worker stopped too often said that the same command
    # resumes the search. Its workers are stopped.
    import argparse
    import importlib
    search_module = importlib.import_module("tuning.search")   # not the function
    real = subprocess.Popen
    workers = []

    def fake(cmd, **kwargs):
        if "--chief" in cmd:
            port = cmd[cmd.index("--chief") + 1].rsplit(":", 1)[1]
            return real([sys.executable, "-c", _FAKE_CHIEF_KILLED, port, str(tmp_path / "w")])
        workers.append(real([sys.executable, "-c", "import pathlib, sys, time; "
                             "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)",
                             str(tmp_path / "w")]))
        return workers[-1]

    monkeypatch.setattr(subprocess, "Popen", fake)
    parser = argparse.ArgumentParser()
    search_module.configure_tune(parser)
    args = parser.parse_args(["lenet5", "--workers", "1", "--directory", str(tmp_path)])
    with pytest.raises(RuntimeError, match=r"^distributed search failed: chief \(killed by "
                                           r"SIGKILL\); the same command resumes the search$"):
        search_module._run_local_cluster(args, poll=0.05)
    assert [worker.returncode for worker in workers] == [-15]     # stopped (SIGTERM)


_FAKE_TRAINING_WORKER = """
import os, signal, socket, sys, time
def stopped(signum, frame):        # did the chief outlive the worker's stop?
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
        seen = "chief running"
    except OSError:
        seen = "chief gone"
    open(sys.argv[3], "w").write(seen)
    sys.exit(0)
signal.signal(signal.SIGTERM, stopped)
open(sys.argv[2], "w").close()
time.sleep(60)
"""


def test_a_stopped_local_cluster_stops_its_workers_before_its_chief(tmp_path, monkeypatch):
    # Ctrl-C or SIGTERM of zoo tune --workers N stopped the chief first: a worker still
    # training lost it and said "trial 1 failed: ..." before it was stopped itself. The
    # workers are stopped first, then the chief (which saves the search's state).
    import argparse
    import importlib
    import types
    search_module = importlib.import_module("tuning.search")   # not the function
    real = subprocess.Popen
    started, seen = tmp_path / "training", tmp_path / "seen"

    def fake(cmd, **kwargs):
        if "--chief" in cmd:
            port = cmd[cmd.index("--chief") + 1].rsplit(":", 1)[1]
            return real([sys.executable, "-c", _FAKE_CHIEF, port, str(tmp_path / "never")])
        port = cmd[cmd.index("--worker") + 1].rsplit(":", 1)[1]
        return real([sys.executable, "-c", _FAKE_TRAINING_WORKER, port, str(started),
                     str(seen)])

    def sleep(seconds):
        if started.exists():
            raise KeyboardInterrupt       # Ctrl-C (SIGTERM: zoo.cli.Terminated, one of it)
        time.sleep(seconds)

    monkeypatch.setattr(subprocess, "Popen", fake)
    monkeypatch.setattr(search_module, "time", types.SimpleNamespace(time=time.time,
                                                                     sleep=sleep))
    parser = argparse.ArgumentParser()
    search_module.configure_tune(parser)
    args = parser.parse_args(["lenet5", "--workers", "1", "--directory", str(tmp_path)])
    with pytest.raises(KeyboardInterrupt):
        search_module._run_local_cluster(args, poll=0.05)
    assert seen.read_text() == "chief running"


@pytest.mark.parametrize("visible,gpus,expect", [
    (None, 2, ["0", "1", "0"]),          # two GPUs: the workers take turns on them
    ("2,3", 2, ["2", "3", "2"]),         # the GPUs CUDA_VISIBLE_DEVICES leaves
    (None, 1, [None, None, None]),       # one GPU: shared, each process growing its memory
    (None, 0, [None, None, None])])      # none: nothing to share
def test_a_local_cluster_shares_the_gpus_among_its_processes(visible, gpus, expect,
                                                             tmp_path, monkeypatch):
    # By default TensorFlow maps nearly all the memory of every GPU it sees: the chief
    # (which builds and evaluates a model before it serves) and each worker on one machine
    # took it all in turn, so the next process found none, and every worker trained on
    # GPU 0. Each process now grows its memory as it needs, and each worker gets a GPU.
    import argparse
    import importlib
    search_module = importlib.import_module("tuning.search")
    envs = {}

    def seen(cmd, kwargs):
        name = "chief" if "--chief" in cmd else cmd[cmd.index("--worker-id") + 1]
        envs[name] = dict(kwargs.get("env") or os.environ)
    monkeypatch.setattr(subprocess, "Popen", _fake_cluster_popen(tmp_path, seen))
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setattr(search_module, "_gpu_count", lambda: gpus)
    parser = argparse.ArgumentParser()
    search_module.configure_tune(parser)
    args = parser.parse_args(["lenet5", "--workers", "3", "--directory", str(tmp_path)])
    assert search_module._run_local_cluster(args) == 0
    assert sorted(envs) == ["0", "1", "2", "chief"]
    assert [envs[str(i)].get("CUDA_VISIBLE_DEVICES") for i in range(3)] == [
        e if e is not None else visible for e in expect]
    assert envs["chief"].get("CUDA_VISIBLE_DEVICES") == visible   # the chief sees them all
    want = "true" if gpus else None
    assert {e.get("TF_FORCE_GPU_ALLOW_GROWTH") for e in envs.values()} == {want}
    # a setting of one's own stays
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "false")
    (tmp_path / "done").unlink()
    envs.clear()
    assert search_module._run_local_cluster(args) == 0
    assert {e.get("TF_FORCE_GPU_ALLOW_GROWTH") for e in envs.values()} == {"false"}


def test_a_restarted_chief_keeps_each_running_trial_for_its_worker(tmp_path, monkeypatch):
    # A chief killed while its workers train, and started again: keras-tuner queued their
    # trials for the next worker that asked, which trained one again beside the worker
    # still training it (end_order 0, 1, 2, 2, 3, 4). It stays the trial of its worker.
    from tuning.search import _make_tuner
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")

    def chief():
        return _make_tuner("random", _hypermodel("lenet5"), "val_accuracy", max_trials=4,
                           epochs=1, directory=str(tmp_path), project="c", seed=1,
                           max_consecutive_failed_trials=3, executions_per_trial=1)

    first = chief()
    held = {w: first.oracle.create_trial(w).trial_id for w in ("tuner0", "tuner1")}
    first.save()                                  # then the chief is killed
    again = chief()
    held["tuner2"] = again.oracle.create_trial("tuner2").trial_id
    assert held["tuner2"] not in (held["tuner0"], held["tuner1"])
    for worker in ("tuner0", "tuner1"):           # still training, or joined again
        assert again.oracle.create_trial(worker).trial_id == held[worker]
    # A --workers N cluster's chief (a new port: its old workers are gone) retries them.
    monkeypatch.setenv("ZOO_TUNE_LOCAL_CLUSTER_CHIEF", "1")
    again.save()
    local = chief()
    assert sorted(local.oracle.create_trial(f"tuner{i}").trial_id for i in (5, 6, 7)) == \
        sorted(held.values())


class _FailOnTrainBegin(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        raise RuntimeError("this trial was not to train")


@SLOW_OK
def test_a_second_search_in_a_running_projects_directory_is_refused(tmp_path):
    # Two processes running one search trained every trial twice, into the same files.
    argv = ["--tuner", "random", "--max-trials", "1", "--directory", str(tmp_path),
            "--project", "s", "--fix", "variant=modern", "--fix", "augment=0",
            "--fix", "lr=0.01"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    running = subprocess.Popen([sys.executable, "-m", "tuning", "lenet5", "--epochs", "500",
                                *argv], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        oracle = tmp_path / "s" / "oracle.json"
        for _ in range(600):
            if oracle.exists() or running.poll() is not None:
                break
            time.sleep(0.1)
        assert oracle.exists()
        with pytest.raises(FileExistsError, match=rf"another zoo tune \(process "
                                                  rf"{running.pid} on .*\) is running the "
                                                  rf"search in .*s: wait for it to end"):
            search("lenet5", "digits", tuner="random", max_trials=1, epochs=500,
                   directory=str(tmp_path), project="s",
                   fix={"variant": "modern", "augment": 0, "lr": 0.01},
                   callbacks=[_FailOnTrainBegin()])       # no long trial before the fix
    finally:
        os.killpg(running.pid, 9)
        running.wait()
    # Its process gone, the lock goes with it: the same command resumes the search.
    from tuning.search import _lock_project, _lock_worker
    os.close(_lock_project(str(tmp_path / "s"), made=False))
    fd = _lock_worker(str(tmp_path / "s"), "tuner3")
    with pytest.raises(FileExistsError, match=r"worker 3 already runs \(process \d+ on .*\) "
                                              r"for the chief's search in .*: give this "
                                              r"worker another --worker-id"):
        _lock_worker(str(tmp_path / "s"), "tuner3")
    os.close(fd)


_KILLED_IN_ITS_THIRD_TRIAL = """
import os, signal, sys
import keras
from tuning.search import search
from zoo import data

class Kill(keras.callbacks.Callback):
    fits = 0   # class-level: keras-tuner deep-copies the callbacks of every fit

    def on_train_begin(self, logs=None):
        Kill.fits += 1
        if Kill.fits == 3:
            os.kill(os.getpid(), signal.SIGKILL)      # no finally runs

s = data.load_splits("digits", image_size=(32, 32))
tiny = data.Splits(s.train.take(3), s.validation.take(1), s.test.take(1), s.info)
search("lenet5", tiny, tuner="random", max_trials=4, epochs=1, directory=sys.argv[1],
       project="k", fix={"variant": "modern", "augment": 0.0, "batch_size": 32},
       set={"lr": [1e-2, 2e-2, 3e-2, 4e-2]}, callbacks=[Kill()])
"""


@SLOW_OK
def test_a_killed_search_leaves_a_trials_csv_of_every_trial_ended_so_far(tmp_path):
    # trials.csv and search.png were written when the search returned: a search killed
    # (or still running) showed the previous run's table, or none. They are rewritten
    # after every trial ends.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", _KILLED_IN_ITS_THIRD_TRIAL, str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == -9, r.stderr[-2000:]
    project = tmp_path / "k"
    table = pd.read_csv(project / "trials.csv", dtype={"trial": str})
    assert list(table["trial"]) == ["0", "1"]
    assert list(table["status"]) == ["COMPLETED", "COMPLETED"]
    assert table["score"].between(0, 1).all() and (table["seconds"] > 0).all()
    assert set(table["tuner"]) == {"tuner0"}
    assert (project / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(project) if ".tmp-" in f]


def test_a_chiefs_oracle_rewrites_trials_csv_as_each_trial_ends(tmp_path, monkeypatch):
    # In a cluster the trials end in the chief's oracle (a worker's end_trial reaches it
    # over gRPC): the chief rewrites the table then, not only once every worker has stopped.
    from tuning.search import _make_tuner
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    chief = _make_tuner("random", _hypermodel("lenet5"), "val_accuracy", max_trials=3,
                        epochs=1, directory=str(tmp_path), project="c", seed=1,
                        max_consecutive_failed_trials=3, executions_per_trial=1)
    oracle = chief.oracle
    first, second = (oracle.create_trial(w) for w in ("tuner0", "tuner1"))
    table = tmp_path / "c" / "trials.csv"
    assert not table.exists()
    oracle.update_trial(first.trial_id, {"val_accuracy": 0.75})
    first.status = "COMPLETED"
    oracle.end_trial(first)
    rows = pd.read_csv(table, dtype={"trial": str})
    assert list(rows["trial"]) == [first.trial_id, second.trial_id]
    assert list(rows["status"]) == ["COMPLETED", "RUNNING"]
    assert rows.loc[0, "score"] == 0.75 and pd.isna(rows.loc[1, "score"])
    assert list(rows.columns[2:10]) == _hypermodel("lenet5").declared_names()
    assert (tmp_path / "c" / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    second.status, second.message = "FAILED", "ValueError: out of memory"
    oracle.end_trial(second)
    rows = pd.read_csv(table, dtype={"trial": str})
    assert list(rows["status"]) == ["COMPLETED", "FAILED"]
    assert rows.loc[1, "message"] == "ValueError: out of memory"


def test_a_chief_looks_every_second_whether_its_workers_have_stopped(tmp_path, monkeypatch):
    """keras-tuner's chief, once it has told a worker to stop, looked every 20 s whether all
    had stopped: a search of two workers sat idle for up to 20 s at its end. A chief's tuner
    gives that module sleeps of at most a second, its other uses of ``time`` unchanged."""
    import inspect
    import time

    from keras_tuner.src.distribute import oracle_chief

    from tuning.search import _make_tuner
    assert "time.sleep(20)" in inspect.getsource(oracle_chief.start_server)
    monkeypatch.setattr(oracle_chief, "time", time)
    kw = dict(max_trials=3, epochs=1, directory=str(tmp_path), seed=1,
              max_consecutive_failed_trials=3, executions_per_trial=1)
    _make_tuner("random", _hypermodel("lenet5"), "val_accuracy", project="single", **kw)
    assert oracle_chief.time is time            # not a chief: keras-tuner's module as it is
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    _make_tuner("random", _hypermodel("lenet5"), "val_accuracy", project="c", **kw)
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    oracle_chief.time.sleep(20)
    oracle_chief.time.sleep(0.25)
    assert slept == [1.0, 0.25]
    assert oracle_chief.time.time is time.time and oracle_chief.time.monotonic is time.monotonic


@SLOW_OK
def test_the_chiefs_command_on_a_finished_search_returns_at_once(tiny, tmp_path, monkeypatch,
                                                                 finished):
    # keras-tuner's chief serves until a worker has been told to stop: the chief's command
    # run again on a finished search, with no worker, waited forever.
    import signal
    kwargs = dict(directory=str(tmp_path), project="f", **FINISHED)
    done = finished
    from tuning.search import _free_port
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(_free_port()))

    def waited(signum, frame):
        raise TimeoutError("the chief still serves a finished search")

    previous = signal.signal(signal.SIGALRM, waited)
    signal.alarm(120)
    try:
        again = search("lenet5", tiny, **kwargs)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert list(again["score"]) == list(done["score"])
    assert again.attrs["best"]["trial"] == done.attrs["best"]["trial"]


def test_a_local_cluster_on_a_finished_search_returns_at_once(tmp_path, monkeypatch):
    # Its chief prints the finished search's table and returns (exit code 0) without ever
    # serving: the command said "zoo: error: the chief exited (code 0) before serving on
    # 127.0.0.1:PORT" (exit code 1) after the chief's table.
    import argparse
    import importlib
    search_module = importlib.import_module("tuning.search")
    real, started = subprocess.Popen, []

    def popen(cmd, **kwargs):
        started.append("chief" if "--chief" in cmd else "worker")
        return real([sys.executable, "-c", "print('the finished search')"])
    monkeypatch.setattr(subprocess, "Popen", popen)
    tune = argparse.ArgumentParser()
    search_module.configure_tune(tune)
    args = tune.parse_args(["lenet5", "--workers", "2", "--directory", str(tmp_path)])
    assert search_module._run_local_cluster(args) == 0
    assert started == ["chief"]


def test_a_chief_with_trials_left_gives_the_next_one_to_a_worker(tmp_path, monkeypatch):
    # The chief asks its oracle whether a trial is left; one it draws is the next worker's.
    from tuning.search import _make_tuner, _nothing_left
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")

    def chief(max_trials):
        return _make_tuner("random", _hypermodel("lenet5"), "val_accuracy",
                           max_trials=max_trials, epochs=1, directory=str(tmp_path),
                           project="c", seed=1, max_consecutive_failed_trials=3,
                           executions_per_trial=1)

    oracle = chief(2).oracle
    assert not _nothing_left(oracle)
    assert oracle.tuner_ids == set() and oracle.ongoing_trials == {}
    first = oracle.create_trial("tuner0")
    assert first.trial_id == "0" and list(oracle.trials) == ["0"]
    assert not _nothing_left(oracle)              # trial 0 runs
    oracle.update_trial("0", {"val_accuracy": 0.5})
    first.status = "COMPLETED"
    oracle.end_trial(first)
    assert not _nothing_left(oracle)              # trial 1 is drawn, for the next worker
    second = oracle.create_trial("tuner3")
    assert second.trial_id == "1" and list(oracle.trials) == ["0", "1"]
    oracle.update_trial("1", {"val_accuracy": 0.6})
    second.status = "COMPLETED"
    oracle.end_trial(second)
    assert _nothing_left(chief(2).oracle)         # reloaded: finished
    assert not _nothing_left(chief(3).oracle)     # max_trials may grow


def test_a_search_resumed_as_a_chief_or_back_keeps_its_trials(tmp_path, monkeypatch, finished):
    # keras-tuner reloads a project only where this tuner id saved its (empty) state: a
    # search begun in one process (tuner0.json) and resumed as a cluster's chief (chief.json),
    # or the other way, began afresh and ran trial 0 again over the completed one.
    from tuning.search import _make_tuner

    def tuner(max_trials):
        return _make_tuner("random", _hypermodel("lenet5"), "val_accuracy",
                           max_trials=max_trials, epochs=1, directory=str(tmp_path),
                           project="f", seed=0, max_consecutive_failed_trials=3,
                           executions_per_trial=1)

    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    chief = tuner(3)
    assert sorted(chief.oracle.trials) == ["0", "1"] and chief.oracle.end_order == ["0", "1"]
    assert {t.status for t in chief.oracle.trials.values()} == {"COMPLETED"}
    trial = chief.oracle.create_trial("tuner1")
    assert trial.trial_id == "2"                  # the next trial, not trial 0 again
    chief.save()                                  # a chief killed while a worker trains
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name)
    os.remove(tmp_path / "f" / "tuner0.json")     # as a project begun by a cluster
    single = tuner(3)
    assert sorted(single.oracle.trials) == ["0", "1", "2"]   # (keras-tuner globs the dirs)
    assert single.oracle.create_trial("tuner0").trial_id == "2"   # run again, here


_SAYS_HOW_IT_TAKES_CTRL_C = """
import signal, sys
with open(sys.argv[1], "a") as f:
    f.write(f"{signal.getsignal(signal.SIGINT) == signal.SIG_IGN}\\n")
"""


def test_ctrl_c_on_a_local_cluster_stops_it_with_one_line(tmp_path, monkeypatch, capsys):
    # Ctrl-C reached the cluster's chief and workers as well: each worker said to start it
    # again with its --worker-id, the chief (stopped by the cluster) said nothing, and no
    # line said how many trials had completed. The cluster's processes leave Ctrl-C to it.
    import importlib
    from zoo.cli import main
    module = importlib.import_module("tuning.search")
    real = subprocess.Popen
    said = tmp_path / "sigint.txt"

    class Running:      # the process has said it; to the cluster it runs on
        returncode = None

        def poll(self):
            return None

        def wait(self, timeout=None):
            return 0

        def terminate(self):
            pass

    def fake(cmd, **kwargs):
        real([sys.executable, "-c", _SAYS_HOW_IT_TAKES_CTRL_C, str(said)], **kwargs).wait()
        return Running()

    monkeypatch.setattr(subprocess, "Popen", fake)
    monkeypatch.setattr(module, "_wait_for_port", lambda *args, **kwargs: True)
    monkeypatch.setattr(module, "_free_port", lambda host="127.0.0.1": 1)
    monkeypatch.setattr(module.time, "sleep", lambda seconds: (_ for _ in ()).throw(
        KeyboardInterrupt))
    runs = tmp_path / "runs"
    project = runs / "lenet5_digits_random"
    project.mkdir(parents=True)
    (project / "trials.csv").write_text("trial,status,score\n0,COMPLETED,0.5\n1,RUNNING,\n")
    assert main(["tune", "lenet5", "--tuner", "random", "--directory", str(runs),
                 "--workers", "2"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        f"zoo tune: stopped with 1 trial completed; the same command resumes the search in "
        f"{project} (the interrupted trial runs again)", "zoo: interrupted"]
    assert said.read_text().splitlines() == ["True"] * 3     # the chief and both workers


@pytest.mark.parametrize("member", [False, True])
def test_a_stopped_cluster_member_leaves_the_words_to_its_command(member, tmp_path,
                                                                  monkeypatch, capsys):
    # Ctrl-C or SIGTERM of zoo tune --workers N (SIGTERM reaches the whole process group as
    # well, from a container's stop say): the command stops its processes with SIGTERM, and
    # each said its own "stopped ..." and "zoo: terminated" lines beside the command's two
    # (6 lines for one worker). A cluster's process now exits without a word.
    import importlib

    from zoo.cli import Terminated, main
    module = importlib.import_module("tuning.search")

    def stopped(*args, **kwargs):
        raise Terminated()
    monkeypatch.setattr(module, "search", stopped)
    if member:
        monkeypatch.setenv(module._CLUSTER_MEMBER, "1")
    else:
        monkeypatch.delenv(module._CLUSTER_MEMBER, raising=False)
    argv = ["tune", "lenet5", "--tuner", "random", "--directory", str(tmp_path)]
    if member:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 143 and capsys.readouterr().err == ""
    else:
        assert main(argv) == 143
        assert capsys.readouterr().err.splitlines() == [
            "zoo tune: stopped before the search began", "zoo: terminated"]
    envs = module._cluster_envs(2)      # every process of a cluster is a member
    assert [env.get(module._CLUSTER_MEMBER) for env in (envs[0], *envs[1])] == ["1"] * 3


_MEMBER_STOPPED = """
import os, runpy, signal, sys, time
import tuning.assignments
when, cleaned, runs = sys.argv[1:]
def sigterm():       # to this process, as to the whole process group (a container's stop)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
def search(*args, **kwargs):
    try:
        sigterm()
    finally:    # the search's clean-up (trials.csv, search.png), and the command's SIGTERM
        sigterm()
        open(cleaned, "w").close()
if when == "before":     # still starting: TensorFlow's import, before the search
    tuning.assignments.parse_assignments = lambda *args: sigterm()
sys.modules["tuning.search"].search = search      # (tuning.search is the function)
sys.argv = ["tuning", "lenet5", "--tuner", "random", "--directory", runs]
runpy.run_module("tuning", run_name="__main__")
"""


@pytest.mark.parametrize("when", ["before", "during"])
def test_a_cluster_member_stopped_anywhere_says_nothing_and_cleans_up(when, tmp_path):
    # A worker stopped while it still imported TensorFlow (a Ctrl-C soon after the start)
    # said "zoo: terminated" beside its command's two lines; and after a SIGTERM to the
    # whole process group, the command's own SIGTERM to its chief (a second one) ended it
    # in its clean-up, which left a half-written .search.png.tmp-... and no search.png.
    from tuning.search import _CLUSTER_MEMBER
    env = {**os.environ, _CLUSTER_MEMBER: "1"}
    cleaned = tmp_path / "cleaned"
    done = subprocess.run([sys.executable, "-c", _MEMBER_STOPPED, when, str(cleaned),
                           str(tmp_path / "runs")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (143, "", "")
    assert cleaned.exists() == (when == "during")


@SLOW_OK
def test_too_many_failed_trials_stop_a_cluster_with_one_line(tmp_path, capfd, monkeypatch):
    # The chief's oracle raised in the worker's request: the worker stopped with keras-tuner's
    # error, a --workers cluster started it again to fail the same trial three more times, and
    # a chief of hand-started workers served on, waiting. The chief tells its workers to stop
    # and ends with a single process's line; a failed trial's error reaches trials.csv.
    code, _, err = _tune_here(
        ["lenet5", "--tuner", "random", "--max-trials", "5", "--epochs", "1", "--directory",
         str(tmp_path), "--project", "f", "--workers", "1", "--fix", "variant=modern", "--fix",
         "augment=0", "--set", "batch_size=128", "--fix", "lr=1e38"], capfd, monkeypatch)
    assert code == 1, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith(("zoo", "trial "))]
    assert [line.split(":")[0] for line in lines] == [
        "trial 0 failed", "trial 1 failed", "trial 2 failed", "zoo"]
    assert lines[-1].startswith("zoo: error: the search stopped after 3 consecutive failed "
                                "trials (the last: FailedTrialError: loss became ")
    assert lines[-1].endswith(f"; the trials are in {tmp_path / 'f' / 'trials.csv'}")
    table = pd.read_csv(tmp_path / "f" / "trials.csv")
    assert list(table["status"]) == ["FAILED"] * 3
    assert table["message"].str.startswith("FailedTrialError: loss became ").all()


def test_the_best_trials_export_with_other_classes_than_the_version_before_is_noted(
        tmp_path, capsys):
    import zoo
    from tuning.search import _print_best
    from zoo.data import DatasetInfo

    def info(labels):
        return DatasetInfo(name="d", task="classification", num_classes=len(labels),
                           labels=labels, input_shape=(32, 32, 1))
    first = zoo.export(zoo.lenet5(), tmp_path, info=info([str(i) for i in range(10)]),
                       lite=False)
    second = zoo.export(zoo.lenet5(num_classes=2), tmp_path, info=info(["a", "b"]),
                        lite=False)
    best = {"trial": "0001", "objective": "val_accuracy", "score": 0.5,
            "hyperparameters": {"lr": 0.01}, "test": {"accuracy": 0.5}}
    for path, noted in ((first, False), (second, True)):
        _print_best({**best, "export": path}, str(tmp_path / "project"))
        out, err = capsys.readouterr()
        assert f"exported: {path}\n" in out
        assert err.startswith(f"zoo tune: note: {tmp_path / 'lenet5'} version 2 answers with "
                              f"other classes than version 1, ") is noted and (
            noted or err == "")


def test_clip_norm_is_off_and_silent_until_set_and_then_searched(tiny, tmp_path, monkeypatch):
    """clip_norm (zoo train's --clip-norm) is in every space fixed to 0 (none): no trial
    declares it, trials.csv has no column for it and a search's fingerprint is the one it
    had before the spaces had it. --set makes it a choice: each trial clips at its value
    (global_clipnorm), trials.csv, best.json and the export record it."""
    import importlib
    train = importlib.import_module("zoo.train")
    real, clipped = train.compile_model, []

    def compile_model(*args, **kwargs):
        model = real(*args, **kwargs)
        clipped.append(model.optimizer.global_clipnorm)
        return model

    monkeypatch.setattr(train, "compile_model", compile_model)
    off = hms.LeNet5HyperModel(input_shape=(32, 32, 1))
    assert off.params["clip_norm"].silent()
    assert "clip_norm" not in off.declared_names()
    assert [r["name"] for r in off.space_config()[:-1]] == off.declared_names()
    hp = kt.HyperParameters()
    off.declare_hyperparameters(hp)
    assert "clip_norm" not in hp.values and off.values(hp)["clip_norm"] == 0.0
    assert hms.LeNet5HyperModel(fix={"clip_norm": "0"}).params["clip_norm"].silent()
    assert hms.LeNet5HyperModel(set={"clip_norm": "0,2"}).params["clip_norm"].kind == "choice"
    with pytest.raises(ValueError, match=r"^hyperparameter 'clip_norm' must be a finite "
                       r"number >= 0. Received: '-1'$"):
        hms.LeNet5HyperModel(fix={"clip_norm": "-1"})
    with pytest.raises(ValueError, match=r"'clip_norm' is fixed to 0; it has no range to "
                       r"narrow \(give values as a list: clip_norm=a,b,c\)$"):
        hms.LeNet5HyperModel(set={"clip_norm": "1:5"})

    df = search("lenet5", tiny, tuner="random", max_trials=1, epochs=1, seed=0,
                directory=str(tmp_path), project="off", fix=FIX_ALL)
    assert "clip_norm" not in df.columns and clipped and set(clipped) == {None}
    fingerprint = json.loads((tmp_path / "off" / "search.json").read_text())
    assert "clip_norm" not in json.dumps(fingerprint["space"])

    clipped.clear()
    df = search("lenet5", tiny, tuner="grid", max_trials=4, epochs=1, seed=0,
                directory=str(tmp_path), project="on", fix={**FIX_ALL, "lr": 0.01},
                set={"clip_norm": "0,2.5"}, export=True,
                export_dir=str(tmp_path / "saved"))
    assert sorted(df["clip_norm"]) == [0.0, 2.5]
    assert set(clipped) == {2.5, None}
    best = json.loads((tmp_path / "on" / "best.json").read_text())
    assert best["hyperparameters"]["clip_norm"] in (0.0, 2.5)
    assert pd.read_csv(tmp_path / "on" / "trials.csv")["clip_norm"].tolist() == \
        df["clip_norm"].tolist()
    zoo_json = json.loads(next((tmp_path / "saved").rglob("zoo.json")).read_text())
    assert zoo_json["training"]["settings"]["hyperparameters"]["clip_norm"] == \
        best["hyperparameters"]["clip_norm"]
