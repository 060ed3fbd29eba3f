"""Fast tests of tuning/: each family's search space, what a trial's hyperparameters do to
the built and compiled model and to its training data, narrowing rules, and the search's
results table and best trial (no search is run)."""

import importlib
import json
import math
import re
import types

import keras
import keras_tuner as kt
import numpy as np
import pandas as pd
import pytest

from tuning import hypermodels as hms

tsearch = importlib.import_module("tuning.search")   # (tuning.search is also the function)

# The README's table ("Hyperparameter search"): name, type, values, default, builder argument.
TRAINING = [
    ("optimizer", "choice", "adam, sgd, rmsprop", "adam", ""),
    ("lr", "float", "0.0001 .. 0.1 (log)", "0.001", ""),
    ("lr_schedule", "choice", "constant, cosine", "constant", ""),
    ("weight_decay", "choice", "0, 1e-05, 0.0001, 0.001", "0", ""),
    ("clip_norm", "fixed", "0", "0", ""),
    ("batch_size", "choice", "16, 32, 64, 128", "32", ""),
    ("augment", "float", "0 .. 2 (step 0.5)", "1", ""),
]
SMOOTHING = [("label_smoothing", "float", "0 .. 0.2 (step 0.05)", "0", "")]
HEAD = [("pooling", "choice", "avg, max", "avg", ""),
        ("dropout", "float", "0 .. 0.5 (step 0.1)", "0", "")]
SPACES = {
    "lenet5": [("variant", "choice", "classic, modern", "classic", "variant")],
    "alexnet": [("lrn", "boolean", "True, False", "False", "local_response_normalization"),
                ("dropout", "float", "0 .. 0.7 (step 0.1)", "0.5", "dropout")],
    "googlenet": [("batch_norm", "boolean", "True, False", "False", "batch_norm"),
                  ("lrn", "boolean", "True, False", "False", "local_response_normalization"),
                  ("pooling", "choice", "avg, max", "avg", ""),
                  ("dropout", "float", "0 .. 0.7 (step 0.1)", "0.4", "dropout")],
    "inception_v3": HEAD,
    "xception": HEAD,
    "resnet": [("depth", "choice", "18, 34, 50", "50", "")] + HEAD,
    "unet": [("depth", "choice", "2, 3, 4, 5", "4", "depth"),
             ("base_filters", "choice", "16, 32, 64", "64", "base_filters"),
             ("batch_norm", "boolean", "True, False", "False", "batch_norm"),
             ("upsampling", "choice", "transpose, bilinear", "transpose", "upsampling"),
             ("dropout", "float", "0 .. 0.5 (step 0.1)", "0", "dropout")],
}


@pytest.mark.parametrize("family", sorted(SPACES))
def test_every_space_is_the_documented_one(family):
    table = hms.HYPERMODELS[family]().describe()
    rows = [tuple(r) for r in table[["name", "type", "values", "default",
                                     "builder argument"]].itertuples(index=False)]
    want = SPACES[family] + TRAINING + (SMOOTHING if family != "unet" else [])
    assert rows == want


def test_the_grid_tuner_tries_the_documented_learning_rates():
    hm = hms.LeNet5HyperModel()
    hm.grid = True          # as tuning.search sets it for tuner="grid"
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    lr = next(p for p in hp.space if p.name == "lr")
    assert [hms.clean_value(lr, v) for v in lr.values] == [1e-4, 1e-3, 1e-2, 1e-1]


def _fixed(**values):
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def test_a_trials_training_choices_reach_the_compiled_model():
    hm = hms.LeNet5HyperModel(fix={"variant": "modern"})
    model = hm.build(_fixed(optimizer="rmsprop", lr=0.02, weight_decay=1e-4,
                            label_smoothing=0.1))
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.02)
    assert model.optimizer.weight_decay == pytest.approx(1e-4)
    assert model.loss.label_smoothing == pytest.approx(0.1)
    # the defaults: no weight decay, no smoothing
    model = hm.build(kt.HyperParameters())
    assert model.optimizer.weight_decay is None
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    keras.backend.clear_session()


def test_weight_decay_0_is_none_for_adamw_too():
    # --set optimizer=adam,adamw: a trial's weight_decay 0 trained adamw with Keras' 0.004
    hm = hms.LeNet5HyperModel(fix={"optimizer": "adamw"})
    assert float(hm.build(kt.HyperParameters()).optimizer.weight_decay) == 0.0
    model = hm.build(_fixed(weight_decay=1e-4))
    assert model.optimizer.weight_decay == pytest.approx(1e-4)
    keras.backend.clear_session()


def _head(model):
    kinds = [type(layer).__name__ for layer in model.layers]
    dropout = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    return kinds[-3:], dropout


def test_the_global_pool_head_follows_pooling_and_dropout():
    hm = hms.ResNetHyperModel(input_shape=(32, 32, 3), num_classes=10, fix={"depth": 18})
    # avg, no dropout: the builder's own model
    own = hm.build_model(hm.defaults())
    assert _head(own)[1] == [] and own.count_params() == 11_191_242
    # avg with dropout: the pooled features, the dropout, a softmax classifier
    model = hm.build_model({**hm.defaults(), "dropout": 0.3})
    assert _head(model) == (["GlobalAveragePooling2D", "Dropout", "Dense"], [0.3])
    assert model.get_layer("head_dropout").rate == pytest.approx(0.3)
    assert model.count_params() == own.count_params()
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    assert np.asarray(model(x)).sum(axis=-1) == pytest.approx([1.0, 1.0], abs=1e-5)
    # max, no dropout
    model = hm.build_model({**hm.defaults(), "pooling": "max"})
    assert _head(model) == (["Activation", "GlobalMaxPooling2D", "Dense"], [])
    assert model.get_layer("predictions").activation is keras.activations.softmax
    keras.backend.clear_session()


def test_googlenets_dropout_is_its_builders_own():
    hm = hms.GoogLeNetHyperModel(input_shape=(65, 65, 3), num_classes=10)
    model = hm.build_model({**hm.defaults(), "dropout": 0.6})
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] \
        == [0.6]
    assert "head_dropout" not in [layer.name for layer in model.layers]
    keras.backend.clear_session()


def test_resnet_depth_picks_the_builder_and_the_models_weighed():
    hm = hms.ResNetHyperModel(input_shape=(32, 32, 3), num_classes=10)
    assert hm.model_names() == ("resnet18", "resnet34", "resnet50")
    assert hm.builder_name({"depth": 34}) == "resnet34"
    assert hms.get_hypermodel("resnet", set={"depth": "18,34"}).model_names() == \
        ("resnet18", "resnet34")
    assert hms.get_hypermodel("resnet34").model_names() == ("resnet34",)
    with pytest.raises(ValueError, match="resnet34 fixes depth=34; received fix depth=18"):
        hms.get_hypermodel("resnet34", fix={"depth": 18})


def test_a_resnet_aliases_fixed_depth_is_checked_as_resnets():
    # (was int()'s "invalid literal for int() with base 10: 'abc'" for zoo tune resnet34
    # --fix depth=abc, a TypeError for None, and 34.5 taken as 34)
    for value in ("abc", None, 34.5):
        with pytest.raises(ValueError) as e:
            hms.get_hypermodel("resnet34", fix={"depth": value})
        assert str(e.value) == f"hyperparameter 'depth' takes int values. Received: {value!r}"
        with pytest.raises(ValueError) as family:
            hms.get_hypermodel("resnet", fix={"depth": value})
        assert str(family.value) == str(e.value)
    for value in (34, "34"):
        hm = hms.get_hypermodel("resnet34", fix={"depth": value})
        assert (hm.params["depth"].kind, hm.params["depth"].default) == ("fixed", 34)


def test_unet_sizes_are_checked_on_height_and_width_for_every_depth():
    hm = hms.UNetHyperModel(input_shape=(32, 32, 1), num_classes=3)
    assert hm.min_input_size() == 32
    assert hms.UNetHyperModel(set={"depth": "2,3"}).min_input_size() == 8
    hm.set("depth", "2,3")
    hm.check_input_shape((24, 40, 1))
    with pytest.raises(ValueError, match="received image size 24x36, which depth 3 of the "
                                         "space does not fit"):
        hm.check_input_shape((24, 36, 1))
    with pytest.raises(ValueError, match="received image size 36x24, which depth 3"):
        hm.check_input_shape((36, 24, 1))


def test_unet_fixed_depth_is_the_only_depth_its_size_rule_checks():
    # --fix depth=2 kept the space's other depths in the rule: 36x36 was refused with "limit
    # the space to depth 2 (--set depth=2)", the very space fixed
    for space in ({"fix": {"depth": 2}}, {"set": {"depth": "2"}}, {"set": {"depth": "2:2"}}):
        hm = hms.UNetHyperModel(input_shape=(36, 36, 1), num_classes=3, **space)
        assert hm.min_input_size() == 4
        hm.check_input_shape((36, 36, 1))
        with pytest.raises(ValueError, match="received image size 36x38, which depth 2 of "
                                             "the space does not fit: use a size that is a "
                                             "multiple of 4$"):
            hm.check_input_shape((36, 38, 1))
    fixed = hms.ResNetHyperModel(fix={"depth": 34})
    assert fixed.model_names() == ("resnet34",)
    assert fixed.set("depth", "18,50").model_names() == ("resnet18", "resnet50")


def test_unet_hypermodel_without_a_shape_builds_at_the_paper_size_made_valid():
    # The builder's default, the paper's 572x572, is no size for same padding: UNetHyperModel()
    # failed in every trial (572 is no multiple of 2**depth for any depth of 3..5)
    assert hms.UNetHyperModel().input_shape == (576, 576, 1)
    assert hms.UNetHyperModel(fix={"depth": 2}).input_shape == (572, 572, 1)
    assert hms.UNetHyperModel(set={"depth": "2,3"}).input_shape == (576, 576, 1)
    assert hms.UNetHyperModel(input_shape=(64, 64, 1)).input_shape == (64, 64, 1)
    assert hms.LeNet5HyperModel().input_shape == (32, 32, 1)
    hm = hms.UNetHyperModel(fix={"depth": 3, "base_filters": 2})
    hm.check_input_shape(hm.input_shape)
    model = hm.build_model(hm.defaults())
    assert model.input_shape == (None, 576, 576, 1) and model.output_shape == (None, 576, 576, 2)
    keras.backend.clear_session()


def test_unet_batch_norm_reaches_the_builder():
    hm = hms.UNetHyperModel(input_shape=(16, 16, 1), num_classes=3,
                            fix={"depth": 2, "base_filters": 4})
    plain = hm.build_model(hm.defaults())
    normed = hm.build_model({**hm.defaults(), "batch_norm": True})
    count = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in normed.layers)
    assert count == 10 and not any(isinstance(layer, keras.layers.BatchNormalization)
                                   for layer in plain.layers)
    keras.backend.clear_session()


# -- narrowing -----------------------------------------------------------------------------

def test_narrowing_keeps_or_moves_the_default_and_the_range_ends():
    hm = hms.LeNet5HyperModel()
    hm.set("lr", "2e-3:1e-2")
    assert (hm.params["lr"].min_value, hm.params["lr"].max_value) == (2e-3, 1e-2)
    assert hm.params["lr"].default == 2e-3          # the default 1e-3 lies below: the low end
    hm.set("batch_size", "16:64")                   # both ends kept
    assert hm.params["batch_size"].values == (16, 32, 64)
    assert hm.params["batch_size"].default == 32
    hm.set("batch_size", "16,64")                   # 32 is gone: the first choice
    assert hm.params["batch_size"].default == 16
    fresh = hms.LeNet5HyperModel().set("batch_size", "64,32")
    assert fresh.params["batch_size"].default == 32   # the default, where it is a choice
    lr = hms.LeNet5HyperModel().set("lr", "5e-3:5e-3").params["lr"]
    assert lr.kind == "fixed" and lr.default == 5e-3
    twice = hms.LeNet5HyperModel().set("batch_size", "64,64").params["batch_size"]
    assert twice.kind == "fixed" and twice.default == 64
    trailing = hms.LeNet5HyperModel().set("batch_size", "16,32,").params["batch_size"]
    assert trailing.values == (16, 32)


def test_values_are_converted_and_checked():
    assert hms.AlexNetHyperModel().fix("lrn", "yes").params["lrn"].default is True
    assert hms.AlexNetHyperModel().fix("lrn", "no").params["lrn"].default is False
    # a list of both values is the boolean again (a fixed value's default goes)
    both = hms.AlexNetHyperModel().fix("lrn", "yes").set("lrn", "true,false").params["lrn"]
    assert (both.kind, both.values, both.default) == ("boolean", (), False)
    assert both.describe()["values"] == "True, False"
    refused = [
        (lambda hm: hm.fix("batch_size", "32.5"), "'batch_size' takes int values. Received: "
                                                  "'32.5'"),
        (lambda hm: hm.fix("lrn", "maybe"), "'lrn' takes bool values. Received: 'maybe'"),
        (lambda hm: hm.set("lr", "1e-2:1e-3"), "range low must not exceed high. Received: "
                                               "0.01:0.001"),
        (lambda hm: hms.parse_assignments(["lr=1e-3", "lr=1e-2"], "--fix"),
         "--fix names 'lr' twice"),
        (lambda hm: hms.parse_assignments(["lr= "], "--set"),
         "--set expects NAME=VALUE (e.g. lr=1e-3, depth=18,34, lr=1e-4:1e-2). Received: 'lr= '"),
        (lambda hm: hms.check_set_fix(set={"lr": "1e-4:1e-2"}, fix={"lr": "1e-3"}),
         "'lr' is given to both fix"),
    ]
    for call, message in refused:
        with pytest.raises(ValueError, match=re.escape(message)):
            call(hms.AlexNetHyperModel())


# -- training data -------------------------------------------------------------------------

class _Batches(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.count = 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1


@pytest.mark.parametrize("batch_size, batches", [(16, 3), (32, 2)])
def test_fit_batches_the_data_by_the_batch_size_hyperparameter(batch_size, batches):
    import tensorflow as tf
    hm = hms.LeNet5HyperModel(fix={"variant": "modern", "augment": 0.0,
                                   "batch_size": batch_size})
    hp = kt.HyperParameters()
    model = hm.build(hp)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 32, 32, 1)).astype("float32")
    y = rng.integers(0, 10, size=48).astype("int32")
    data = hms.set_num_examples(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), 48)
    counter = _Batches()
    hm.fit(hp, model, data, epochs=1, verbose=0, callbacks=[counter])
    assert counter.count == batches
    keras.backend.clear_session()


def test_fit_augments_by_the_trials_strength(monkeypatch):
    seen = []

    def augment(dataset, strength, **kwargs):
        seen.append(strength)
        return dataset

    monkeypatch.setattr(hms, "augment_dataset", augment)
    import tensorflow as tf
    hm = hms.LeNet5HyperModel(fix={"variant": "modern", "augment": 1.5})
    hp = kt.HyperParameters()
    model = hm.build(hp)
    data = tf.data.Dataset.from_tensor_slices((np.zeros((4, 32, 32, 1), "float32"),
                                               np.zeros(4, "int32"))).batch(4)
    hm.fit(hp, model, data, epochs=1, verbose=0)
    assert seen == [1.5]
    keras.backend.clear_session()


def test_augment_strength_scales_the_datasets_own_settings(monkeypatch):
    import zoo.data
    seen = []

    def augmenter(settings, **kwargs):
        seen.append(settings)
        return lambda x: x

    monkeypatch.setattr(zoo.data, "augmenter", augmenter)
    import tensorflow as tf
    data = tf.data.Dataset.from_tensor_slices(np.zeros((2, 8, 8, 1), "float32")).map(
        lambda x: (x, 0)).batch(2)
    settings = dict(flip=None, rotation=0.05, zoom=0.6, translation=0.1, contrast=0.0,
                    fill_mode="nearest")
    hms.augment_dataset(data, 2.0, settings=settings)
    assert seen[-1] == dict(settings, rotation=0.1, zoom=1.0, translation=0.2)  # zoom capped
    hms.augment_dataset(data, 0.5, settings=settings)
    assert seen[-1] == dict(settings, rotation=0.025, zoom=0.3, translation=0.05)
    assert hms.augment_dataset(data, 0.0, settings=settings) is data
    # pairs (low, high), bound by bound, in each setting's range (a TypeError before)
    pairs = dict(rotation=[-0.1, 0.05], zoom=(-0.6, 0.2), translation=[-0.7, 0.3],
                 contrast=[0.2, 0.6])
    hms.augment_dataset(data, 2.0, settings=pairs)
    assert seen[-1]["rotation"] == [-0.2, 0.1] and seen[-1]["contrast"] == [0.4, 1.0]
    assert seen[-1]["translation"] == [-1.0, 0.6]
    assert -1.0 < seen[-1]["zoom"][0] < -0.999999 and seen[-1]["zoom"][1] == 0.4
    hms.augment_dataset(data, 0.5, settings=pairs)
    assert seen[-1] == dict(rotation=[-0.05, 0.025], zoom=[-0.3, 0.1], translation=[-0.35, 0.15],
                            contrast=[0.1, 0.3])


def test_augment_dataset_runs_keras_layers_on_pair_settings():
    import tensorflow as tf
    data = tf.data.Dataset.from_tensor_slices(np.zeros((2, 8, 8, 1), "float32")).map(
        lambda x: (x, 0)).batch(2)
    settings = dict(flip=None, rotation=[-0.1, 0.05], zoom=[-0.6, 0.2], translation=[-0.1, 0.1],
                    contrast=[0.0, 0.3], fill_mode="nearest")
    images, _ = next(iter(hms.augment_dataset(data, 2.0, settings=settings)))
    assert images.shape == (2, 8, 8, 1)


@pytest.mark.parametrize("loss", [math.inf, -math.inf, math.nan])
def test_a_non_finite_loss_fails_the_trial(loss):
    callback = hms.FailOnNaN()
    callback.on_epoch_begin(1)
    callback.on_train_batch_end(3, {"loss": 2.5})
    with pytest.raises(kt.errors.FailedTrialError, match=f"loss became {loss} at batch 3 of "
                                                         f"epoch 2"):
        callback.on_train_batch_end(3, {"loss": loss})


# -- the results table and the best trial ----------------------------------------------------

@pytest.mark.parametrize("objective, want", [
    ("val_accuracy", ("val_accuracy", "max")), ("val_loss", ("val_loss", "min")),
    ("val_error_rate", ("val_error_rate", "min")), ("val_mean_iou", ("val_mean_iou", "max")),
    ("val_loss:max", ("val_loss", "max")), ("val_accuracy:min", ("val_accuracy", "min")),
])
def test_the_objectives_direction(objective, want):
    assert tsearch._direction(objective) == want


def _trial(trial_id, status, score, best_step=0, **values):
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    trial = kt.engine.trial.Trial(hp, trial_id=trial_id, status=status)
    trial.score, trial.best_step = score, best_step
    return trial


def _oracle(trials, direction="max", start_order=None):
    return types.SimpleNamespace(
        trials={t.trial_id: t for t in trials},
        start_order=list(start_order or [t.trial_id for t in trials]),
        objective=types.SimpleNamespace(direction=direction),
        get_trial=lambda trial_id: {t.trial_id: t for t in trials}[trial_id])


def test_the_trials_table_lists_trials_in_start_order_with_their_scores():
    trials = [_trial("2", "COMPLETED", 0.5, 3, lr=0.01, batch_size=16),
              _trial("0", "COMPLETED", 0.75, 1, lr=0.001, batch_size=32),
              _trial("1", "FAILED", float("nan"), 0, lr=1e38, batch_size=64)]
    for trial, epochs in zip(trials, (4, 2, 2)):     # Hyperband's
        trial.hyperparameters.Fixed("tuner/epochs", epochs)
    trials[2].message = ("Traceback ...\nkeras_tuner.src.errors.FailedTrialError: loss became "
                         "inf at batch 1 of epoch 1")
    df = tsearch.trials_table(_oracle(trials, start_order=["0", "1", "2"]),
                              hp_names=["lr", "batch_size"])
    assert list(df.columns) == ["trial", "status", "lr", "batch_size", "epochs", "score",
                                "best_step", "seconds", "tuner", "message"]
    assert list(df["trial"]) == ["0", "1", "2"]
    assert list(df["batch_size"]) == [32, 64, 16]
    assert df["score"].tolist()[0] == 0.75 and pd.isna(df["score"][1]) and \
        df["score"][2] == 0.5
    assert df["best_step"].tolist() == [1, pd.NA, 3]
    assert df["message"].tolist() == [
        "", "FailedTrialError: loss became inf at batch 1 of epoch 1", ""]
    assert df["epochs"].tolist() == [2, 2, 4]


@pytest.mark.parametrize("direction, best", [("max", "1"), ("min", "2")])
def test_the_best_trial_follows_the_objectives_direction(direction, best, monkeypatch):
    trials = [_trial("0", "COMPLETED", 0.5, lr=0.1), _trial("1", "COMPLETED", 0.9, lr=0.2),
              _trial("2", "COMPLETED", 0.25, lr=0.3), _trial("3", "FAILED", None, lr=0.4),
              _trial("4", "COMPLETED", 0.9, lr=0.5), _trial("5", "COMPLETED", 0.25, lr=0.6)]
    oracle = _oracle(trials, direction)
    monkeypatch.setattr(tsearch, "_evaluate", lambda model, data, hm: {"loss": 1.0})
    tuner = types.SimpleNamespace(oracle=oracle, load_model=lambda trial: keras.Sequential())
    df = tsearch.trials_table(oracle, hp_names=["lr"])
    hm = hms.LeNet5HyperModel()
    result = tsearch._best(tuner, df, types.SimpleNamespace(
        test=None, info=types.SimpleNamespace(ignore_label=None, test_is_validation=False)),
        hm, export=False, export_dir=None, export_name=None, objective="val_x")
    assert result["trial"] == best       # ties go to the earliest trial
    assert result["hyperparameters"] == {"lr": {"1": 0.2, "2": 0.3}[best]}
    assert result["score"] == {"1": 0.9, "2": 0.25}[best]


def test_a_cross_validated_search_refuses_a_class_with_fewer_examples_than_folds():
    import tensorflow as tf

    def splits(labels):
        x = np.arange(len(labels) * 4, dtype="float32").reshape(len(labels), 2, 2, 1)
        y = np.array(labels, "int64")
        half = len(labels) // 2
        return types.SimpleNamespace(
            train=tf.data.Dataset.from_tensor_slices((x[:half], y[:half])).batch(4),
            validation=tf.data.Dataset.from_tensor_slices((x[half:], y[half:])).batch(4))

    make_folds, (x, y) = tsearch._cv_folds(splits([0, 1, 2, 0, 1, 2, 0, 1, 2]), 3, 0,
                                           "classification")
    assert len(make_folds()) == 3 and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match=re.escape(
            "cv=3 needs at least 3 examples of every class in the train and validation "
            "splits; the rarest class has 2")):
        tsearch._cv_folds(splits([0, 1, 2, 0, 1, 0, 1, 2, 0]), 3, 0, "classification")


def test_a_cross_validated_best_trial_is_refit_for_its_best_epoch_count(monkeypatch):
    trials = [_trial("0", "COMPLETED", 0.5, 3, lr=0.1), _trial("1", "COMPLETED", 0.9, 4, lr=0.2)]
    oracle = _oracle(trials)
    refits = []

    def refit(hypermodel, trial, pooled, epochs, seed):
        refits.append((trial.trial_id, pooled, epochs, seed))
        return keras.Sequential()

    monkeypatch.setattr(tsearch, "_refit", refit)
    monkeypatch.setattr(tsearch, "_evaluate", lambda model, data, hm: {"loss": 1.0})
    tuner = types.SimpleNamespace(oracle=oracle, load_model=None)
    result = tsearch._best(tuner, tsearch.trials_table(oracle, hp_names=["lr"]),
                           types.SimpleNamespace(test=None, info=types.SimpleNamespace(
                               ignore_label=None, test_is_validation=False)),
                           hms.LeNet5HyperModel(), export=False,
                           export_dir=None, export_name=None, objective="val_x",
                           pooled="pooled", seed=7)
    assert refits == [("1", "pooled", 5, 7)]      # best_step 4 counts from 0: 5 epochs
    assert (result["trial"], result["refit_epochs"]) == ("1", 5)


def test_the_default_objective_is_validation_accuracy_maximised(monkeypatch, tmp_path):
    class Checked(Exception):
        pass

    def check_project(project_dir, fingerprint, **kwargs):
        raise Checked(fingerprint["objective"])

    monkeypatch.setattr(tsearch, "_check_project", check_project)
    with pytest.raises(Checked) as info:
        tsearch.search("lenet5", "digits", tuner="random", directory=str(tmp_path))
    assert info.value.args == (["val_accuracy", "max"],)


@pytest.mark.parametrize("text, want", [("10.0.0.1:1", ("10.0.0.1", 1)),
                                        ("h:65535", ("h", 65535)), ("h:0", None),
                                        ("h:65536", None), ("h:", None), (":80", None)])
def test_a_chief_address_is_host_and_a_port_from_1_to_65535(text, want):
    import argparse
    if want:
        assert tsearch._host_port(text) == want
        return
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(
            f"expected HOST:PORT with a port from 1 to 65535, such as 10.0.0.1:8000 "
            f"([::1]:8000 for an IPv6 address); received {text!r}")):
        tsearch._host_port(text)


def test_a_project_resumes_only_the_same_search(tmp_path):
    import json
    fingerprint = {"model": "lenet5", "tuner": "random", "epochs": 2, "seed": 0}
    project = tmp_path / "p"
    project.mkdir()
    (project / "search.json").write_text(json.dumps(fingerprint))
    check = dict(resume=True, overwrite=False, role=None)
    tsearch._check_project(str(project), fingerprint, **check)           # the same: resumed
    with pytest.raises(ValueError, match=re.escape(
            f"a different search already exists in {project} (it differs in: epochs, seed). "
            f"Use --overwrite to replace it or --project to choose another name.")):
        tsearch._check_project(str(project), {**fingerprint, "epochs": 3, "seed": 1}, **check)
    with pytest.raises(FileExistsError, match="pass resume=True"):
        tsearch._check_project(str(project), fingerprint, **{**check, "resume": False})
    # A space that differs: the hyperparameters that differ are named, with their values
    # before and now (was "it differs in: space" alone)
    space = [{"name": "variant", "type": "choice", "values": "classic, modern"},
             {"name": "clip_norm", "type": "choice", "values": "0, 1"},
             {"name": "lr", "type": "float", "values": "0.0001 .. 0.1 (log)", "default": "0.001"},
             {"family": "lenet5", "input_shape": [32, 32, 1], "num_classes": 10}]
    (project / "search.json").write_text(json.dumps({**fingerprint, "space": space}))
    now = [{"name": "variant", "type": "fixed", "values": "modern"},
           {"name": "lr", "type": "float", "values": "0.0001 .. 0.1 (log)", "default": "0.01"},
           {"name": "dropout", "type": "float", "values": "0 .. 0.5"},
           {"family": "lenet5", "input_shape": [40, 40, 1], "num_classes": 10}]
    with pytest.raises(ValueError, match=re.escape(
            f"a different search already exists in {project} (it differs in: space; in the "
            f"space: variant [classic, modern] before, [modern] now; lr default [0.001] before, "
            f"[0.01] now; dropout only now; model input_shape [32, 32, 1] before, [40, 40, 1] "
            f"now; clip_norm only before). Use --overwrite")):
        tsearch._check_project(str(project), {**fingerprint, "space": now}, **check)
    (project / "search.json").write_text(json.dumps(fingerprint))
    tsearch._check_project(str(project), {}, **{**check, "overwrite": True})
    tsearch._check_project(str(project), {}, **{**check, "role": "worker"})
    (project / "search.json").unlink()
    (project / "oracle.json").write_text("{}")
    with pytest.raises(FileExistsError, match=re.escape(
            f"{project} holds a keras-tuner project that is not a zoo search (no search.json)")):
        tsearch._check_project(str(project), fingerprint, **check)


def test_zoo_tune_freezes_the_collector_before_its_search(monkeypatch, capsys):
    """Each trial ends with a full collection: the command moves what its imports made out of
    the collector's reach first (measured: 8 LeNet-5 trials 29 s -> 21 s)."""
    import gc

    from zoo.cli import main
    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))

    def fake_search(*args, **kwargs):
        calls.append("search")
        raise ValueError("stop here")
    monkeypatch.setattr(tsearch, "search", fake_search)
    assert main(["tune", "lenet5", "--max-trials", "1", "--epochs", "1"]) == 2
    assert calls == ["freeze", "search"]
    assert "zoo: error: stop here" in capsys.readouterr().err


def test_zoo_tune_freezes_the_collector_after_the_searchs_imports(tmp_path):
    """What the collector is spared is what TensorFlow, Keras and keras-tuner made: the freeze
    came before their import once the command's checks were moved ahead of it (some 61,000
    objects frozen instead of 409,000; 8 LeNet-5 trials of 2 epochs 35.7-38.1 s -> 29.4-30.3
    s). A fresh process, as the command's is."""
    import os
    import subprocess
    import sys
    code = ("import gc, sys\n"
            "import tuning.search as _\n"
            "search = sys.modules['tuning.search']\n"
            "def freeze():\n"
            "    print(sorted({'tensorflow', 'keras', 'keras_tuner'} & set(sys.modules)))\n"
            "gc.freeze = freeze\n"
            "def stop(*args, **kwargs):\n"
            "    raise ValueError('stop here')\n"
            "search.search = stop\n"
            "from zoo.cli import main\n"
            "sys.exit(main(['tune', 'lenet5', '--directory', sys.argv[1]]))\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs")], capture_output=True,
                       text=True, timeout=300, env=env)
    assert (r.returncode, r.stdout) == (2, "['keras', 'keras_tuner', 'tensorflow']\n"), \
        r.stderr[-2000:]
    assert r.stderr.splitlines()[-1] == "zoo: error: stop here"


def test_a_search_trains_at_the_datasets_size_raised_to_the_familys_smallest(tmp_path):
    """Not at the model's default input, as zoo train does (ResNet-18: 224x224)."""
    import argparse

    from PIL import Image
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
                tmp_path / label / f"{i}.png")
    dataset = f"folder:{tmp_path}"
    sizes = {family: tsearch._load(dataset, hms.get_hypermodel(family), image_size=None,
                                   data_dir=None, seed=0)[0].info.input_shape
             for family in ("resnet18", "alexnet")}
    assert sizes == {"resnet18": (40, 40, 3), "alexnet": (67, 67, 3)}
    parser = argparse.ArgumentParser()
    tsearch.configure_tune(parser)
    help_text = next(a.help for a in parser._actions if a.dest == "image_size")
    assert help_text.startswith("model input size (default: the dataset's own, raised to the "
                                "family's smallest input")


# -- what a search is, and what it runs ------------------------------------------------------

def test_a_trials_batch_norms_train_with_momentum_0_9_as_zoo_train_does():
    """The builders keep Keras' 0.99; a trial lowers it to 0.9 as zoo train does (with 0.99
    deep networks scored near chance on digits after short trainings)."""
    hm = hms.UNetHyperModel(input_shape=(16, 16, 1), num_classes=3,
                            fix={"depth": 2, "base_filters": 4, "batch_norm": True})
    norms = [layer for layer in hm.build(kt.HyperParameters()).layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 10 and {n.momentum for n in norms} == {0.9}
    built = hm.build_model(hm.defaults())      # the builder's own, for comparison
    assert {layer.momentum for layer in built.layers
            if isinstance(layer, keras.layers.BatchNormalization)} == {0.99}
    keras.backend.clear_session()


def _hyperband_epochs(tmp_path, epochs, max_trials):
    """The epochs of each trial a Hyperband search of ``epochs`` and ``max_trials`` gives,
    every trial ended with a score as it comes, and the search's trials.csv."""
    kt_tuner = tsearch._make_tuner(
        "hyperband", hms.get_hypermodel("lenet5"), "val_accuracy", max_trials=max_trials,
        epochs=epochs, directory=str(tmp_path), project=f"hb{epochs}_{max_trials}", seed=0,
        max_consecutive_failed_trials=3, executions_per_trial=1)
    oracle = kt_tuner.oracle
    oracle.verbose = 0
    given = []
    for i in range(50):
        trial = oracle.create_trial("tuner0")
        if str(trial.status) == "STOPPED":
            break
        given.append(trial.hyperparameters.values["tuner/epochs"])
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5 + 0.01 * i})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return given, pd.read_csv(tmp_path / f"hb{epochs}_{max_trials}" / "trials.csv")


def test_hyperband_trains_at_most_epochs_and_runs_max_trials(tmp_path):
    """README: with hyperband, --epochs is the most epochs one model trains (brackets of
    factor 3: 1, then 3) and --max-trials is the number of trials: the brackets repeat
    until it is reached (one iteration of --epochs 3 holds 6 trials, of --epochs 1 one)."""
    given, table = _hyperband_epochs(tmp_path, epochs=3, max_trials=10)
    assert given == [1, 1, 1, 3, 3, 3, 1, 1, 1, 3]
    assert table["epochs"].tolist() == given and len(table) == 10
    given, table = _hyperband_epochs(tmp_path, epochs=9, max_trials=4)
    assert given == [1, 1, 1, 1] and len(table) == 4
    given, table = _hyperband_epochs(tmp_path, epochs=1, max_trials=5)
    assert given == [1] * 5 and len(table) == 5
    assert len(set(table["lr"])) == 5      # five points of the space, not one again


def test_a_hyperband_project_made_before_keeps_its_one_iteration(tmp_path):
    """A project whose oracle.json records one Hyperband iteration (as every project made
    before the brackets repeated) keeps it when resumed: a finished search stays finished."""
    given, _ = _hyperband_epochs(tmp_path, epochs=1, max_trials=1)
    assert given == [1]
    path = tmp_path / "hb1_1" / "oracle.json"
    state = json.loads(path.read_text())
    assert state["hyperband_iterations"] == float("inf")
    state["hyperband_iterations"] = 1
    path.write_text(json.dumps(state))
    kt_tuner = tsearch._make_tuner(
        "hyperband", hms.get_hypermodel("lenet5"), "val_accuracy", max_trials=50,
        epochs=1, directory=str(tmp_path), project="hb1_1", seed=0,
        max_consecutive_failed_trials=3, executions_per_trial=1)
    kt_tuner.oracle.verbose = 0
    assert kt_tuner.oracle.hyperband_iterations == 1
    assert str(kt_tuner.oracle.create_trial("tuner0").status) == "STOPPED"


def test_a_search_is_another_search_with_other_epochs_seed_objective_or_executions(
        monkeypatch, tmp_path):
    """Each of these makes another search: resumed with another, a project is refused (its
    fingerprint differs in that key alone)."""
    from zoo import data

    class Checked(Exception):
        pass

    def check_project(project_dir, fingerprint, **kwargs):
        raise Checked(fingerprint)

    monkeypatch.setattr(tsearch, "_check_project", check_project)
    s = data.load_splits("digits", image_size=(32, 32))
    base = dict(tuner="random", max_trials=2, epochs=2, directory=str(tmp_path), seed=0,
                objective="val_loss", executions_per_trial=1)

    def fingerprint(**changes):
        with pytest.raises(Checked) as info:
            tsearch.search("lenet5", s, **{**base, **changes})
        return info.value.args[0]

    first = fingerprint()
    assert first["objective"] == ["val_loss", "min"]
    for changes, key in (({"epochs": 3}, "epochs"), ({"seed": 1}, "seed"),
                         ({"objective": "val_loss:max"}, "objective"),
                         ({"objective": "val_accuracy"}, "objective"),
                         ({"executions_per_trial": 2}, "executions_per_trial"),
                         ({"tuner": "bayesian"}, "tuner")):
        assert tsearch._differing_keys(first, fingerprint(**changes)) == [key], changes
    assert tsearch._differing_keys(first, fingerprint(max_trials=5)) == []   # may grow


def test_the_default_project_makes_a_folder_path_one_directory_name():
    assert tsearch._default_project("lenet5", "folder:data/photos", "random") == \
        "lenet5_folder:data_photos_random"
    project = tsearch._default_project("unet", "folder:/srv/VOC", "hyperband")
    assert project == "unet_folder:_srv_VOC_hyperband"
    tsearch._check_project_name(project)


def test_a_local_clusters_processes_get_every_option_of_the_search():
    """Each process of a --workers cluster runs _argv's command: every option that defines
    the search comes through it (the cluster's own options are the command's)."""
    import argparse
    parser = argparse.ArgumentParser()
    tsearch.configure_tune(parser)
    argv = ["resnet", "--workers", "2", "--dataset", "folder:photos", "--tuner", "bayesian",
            "--max-trials", "7", "--epochs", "3", "--objective", "val_loss:max",
            "--directory", "runs", "--project", "p1", "--set", "lr=1e-4:1e-2",
            "--set", "depth=18,34", "--fix", "pooling=max", "--data-dir", "tfds",
            "--download", "--image-size", "48,40", "--seed", "5", "--jit", "--deterministic",
            "--mixed-precision", "bfloat16", "--ignore-label", "255", "--cv", "3",
            "--verbose", "2"]
    args = parser.parse_args(argv)
    again = vars(parser.parse_args(tsearch._argv(args)))
    cluster = {"workers", "chief", "worker", "worker_id", "overwrite", "export", "export_dir",
               "lite", "show_space", "quiet"}
    want = {k: v for k, v in vars(args).items() if k not in cluster}
    assert {k: v for k, v in again.items() if k not in cluster} == want
    assert {k for k, v in vars(parser.parse_args(["resnet"])).items()
            if v != want.get(k, v)} == set(want) - {"model"}      # every one was changed
    assert again["workers"] is None and again["chief"] is None


def test_the_plot_steps_through_the_best_score_so_far_in_the_objectives_direction(
        tmp_path, monkeypatch):
    from matplotlib.axes import Axes
    steps = []
    real = Axes.step
    monkeypatch.setattr(Axes, "step", lambda self, x, y, *a, **k: (
        steps.append((list(x), list(y))), real(self, x, y, *a, **k))[1])
    df = pd.DataFrame({"trial": ["0", "1", "2", "3"],
                       "status": ["COMPLETED", "FAILED", "COMPLETED", "COMPLETED"],
                       "score": [0.5, None, 0.25, 0.75]})
    tsearch._plot(df, str(tmp_path / "min.png"), "val_loss", "min")
    tsearch._plot(df, str(tmp_path / "max.png"), "val_accuracy", "max")
    assert steps == [([0, 2, 3], [0.5, 0.25, 0.25]), ([0, 2, 3], [0.5, 0.5, 0.75])]
    assert (tmp_path / "min.png").read_bytes()[:4] == b"\x89PNG"


def test_the_best_line_shows_floats_as_the_table_does(capsys):
    """The summary line rounds floats to 6 significant digits, as the printed table (a
    drawn learning rate read lr=0.005178545352737759 there, 0.00517855 in the table)."""
    tsearch._print_best({"trial": "1", "objective": "val_accuracy", "score": 0.75,
                         "hyperparameters": {"optimizer": "sgd", "lr": 0.005178545352737759,
                                             "batch_size": 32, "label_smoothing": 0.15},
                         "test": {"accuracy": 0.7}}, "p")
    assert capsys.readouterr().out.splitlines()[0] == (
        "best trial 1: val_accuracy 0.7500 (optimizer=sgd, lr=0.00517855, batch_size=32, "
        "label_smoothing=0.15)")


@pytest.mark.parametrize("name", ["lenet5", "resnet34", "unet"])
def test_zoo_tunes_early_space_is_the_hypermodels(name):
    """zoo tune checks --set/--fix against tuning.spaces.checked_space before Keras' import:
    each family's space there is its hypermodel's (its builder, task and entries), narrowed
    and fixed as the hypermodel narrows and fixes it."""
    from tuning import spaces
    from tuning.assignments import FAMILIES
    from zoo.registry import model_info
    assert sorted(spaces.BUILDERS) == sorted(FAMILIES) == sorted(hms.HYPERMODELS)
    for family, cls in hms.HYPERMODELS.items():
        assert cls.builder == spaces.BUILDERS[family], family
        assert cls.ARCHITECTURE == spaces.ARCHITECTURES[family], family
        assert cls.task == model_info(cls.builder).task, family
    given = dict(set={"lr": "1e-3:1e-2", "batch_size": "16,32"}, fix={"augment": "0"})
    early = spaces.checked_space(name, **given)
    hm = hms.get_hypermodel(name, **given)
    assert list(early) == list(hm.params)
    assert [p.describe() for p in early.values()] == [p.describe()
                                                       for p in hm.params.values()]


def test_an_objective_zoo_tune_allows_early_is_what_the_search_finds_reported():
    """zoo tune refuses an --objective before its imports by zoo.train_cli.logged_metrics;
    the search's own check (after the data is loaded) evaluates the default model: the two
    allow the same names, for a classifier and for U-Net."""
    import tensorflow as tf

    from zoo.train_cli import logged_metrics
    for name, shape, classes in (("lenet5", (32, 32, 1), 10), ("unet", (16, 16, 3), 3)):
        hm = hms.get_hypermodel(name, input_shape=shape, num_classes=classes,
                                fix={"depth": 2, "base_filters": 16} if name == "unet" else {})
        y = np.zeros((2,) + (shape[:2] if name == "unet" else ()), "int32")
        splits = types.SimpleNamespace(validation=tf.data.Dataset.from_tensor_slices(
            (np.zeros((2,) + shape, "float32"), y)).batch(2))
        names = logged_metrics(hm.task)
        allowed = sorted({*names, *(f"val_{n}" for n in names)})
        with pytest.raises(ValueError) as late:
            tsearch._check_objective(hm, splits, "val_foo")
        with pytest.raises(ValueError) as early:
            tsearch._check_objective_name("val_foo", hm.family, allowed)
        assert str(late.value) == str(early.value)
        assert str(late.value).endswith(f"Allowed: {', '.join(allowed)}.")
