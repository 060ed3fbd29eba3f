"""Tests of training models with auxiliary classifiers (GoogLeNet's, ``aux_logits=True``):
the loss weights Keras uses, a one-output run's names for the main output's metrics, exports
and ``zoo predict`` on the main output, and the refusals."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import zoo  # noqa: E402
from zoo import data, train  # noqa: E402
from zoo.cli import main as zoo_main  # noqa: E402

from conftest import subclassed_model  # noqa: E402

AUX = ("aux1_predictions_loss", "aux2_predictions_loss")


def small(splits, n_train=2):
    return data.Splits(splits.train.take(n_train), splits.validation.take(1),
                       splits.test.take(1), splits.info)


def tiny_aux_model(input_shape=(8, 8, 1), num_classes=10, aux_units=None, aux_name="aux1"):
    """A main classifier and one auxiliary classifier named as googlenet names its own."""
    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    main = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(pooled)
    aux = keras.layers.Dense(aux_units or num_classes, activation="softmax",
                             name=f"{aux_name}_predictions")(pooled)
    return keras.Model(inputs, [main, aux], name="tiny_aux")


def arrays(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def main_output_scores(model, ds, loss=None):
    """(cross-entropy, accuracy) of ``model``'s main (first) output on ``ds``, by hand.
    ``predict`` runs the batches through a graph as fit's validation and evaluate do: a
    bfloat16 model called eagerly (other kernels, unfused) scored the batch up to 1.9e-4
    away in relative terms, 0.77 of the tolerance below, for some seeds and CPUs."""
    _, y = arrays(ds)
    p = np.asarray(model.predict(ds, verbose=0)[0], "float64")
    loss = loss or keras.losses.SparseCategoricalCrossentropy()
    return float(loss(y, p)), float(np.mean(p.argmax(-1) == y))


@pytest.fixture(scope="module")
def googlenet_run(tmp_path_factory):
    """``zoo train googlenet --model-arg aux_logits=true`` for 2 epochs on a few batches of
    digits (the defaults' 65x65 and lr 1e-4), float32."""
    tmp = tmp_path_factory.mktemp("aux")
    run = tmp / "run"
    load, used = data.load_splits, {}

    def few_batches(*args, **kwargs):
        used["splits"] = small(load(*args, **kwargs))
        return used["splits"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "load_splits", few_batches)
        import contextlib
        import io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = zoo_main(["train", "googlenet", "--model-arg", "aux_logits=true",
                             "--epochs", "2", "--batch-size", "4", "--mixed-precision", "off",
                             "--run-dir", str(run), "--quiet"])
    assert code == 0
    return dict(run=run, model=train.fit.last_model, splits=used["splits"],
                line=out.getvalue().strip().splitlines()[-1], tmp=tmp)


def test_googlenet_trains_with_aux_losses_weighted_by_the_papers_0_3(googlenet_run):
    model = googlenet_run["model"]
    assert [len(model.outputs), model.output_names] == [
        3, ["predictions", "aux1_predictions", "aux2_predictions"]]
    config = model.get_compile_config()
    assert config["loss_weights"] == {"predictions": 1.0, "aux1_predictions": 0.3,
                                      "aux2_predictions": 0.3}
    history = pd.read_csv(googlenet_run["run"] / "history.csv")
    assert len(history) == 2
    # The loss Keras minimised is the main loss plus 0.3 x each auxiliary loss.
    np.testing.assert_allclose(history["val_total_loss"],
                               history["val_loss"] + 0.3 * (history[f"val_{AUX[0]}"]
                                                            + history[f"val_{AUX[1]}"]),
                               rtol=1e-5)
    info = json.loads((googlenet_run["run"] / "info.json").read_text())
    assert info["settings"]["aux_loss_weight"] == 0.3
    assert info["settings"]["learning_rate"] == 1e-4
    assert info["dataset"]["input_shape"] == [65, 65, 1]


def test_history_and_metrics_name_the_main_output_as_one_output_runs_do(googlenet_run):
    run, model, splits = googlenet_run["run"], googlenet_run["model"], googlenet_run["splits"]
    history = pd.read_csv(run / "history.csv")
    assert set(history.columns) == {
        "epoch", "loss", "accuracy", "total_loss", *AUX, "learning_rate",
        "val_loss", "val_accuracy", "val_total_loss", *(f"val_{a}" for a in AUX)}
    metrics = json.loads((run / "metrics.json").read_text())
    # The kept model is the best epoch's (by val_loss): its main output scores, by hand,
    # what the history and metrics.json report under the one-output names.
    best = int(history["val_loss"].idxmin())
    assert metrics["best_epoch"] == best + 1
    val_loss, val_accuracy = main_output_scores(model, splits.validation)
    assert metrics["best_val_loss"] == pytest.approx(val_loss, rel=1e-4)
    assert history["val_loss"][best] == pytest.approx(val_loss, rel=1e-4)
    assert metrics["best_val_accuracy"] == pytest.approx(val_accuracy)
    assert history["val_accuracy"][best] == pytest.approx(val_accuracy)
    test_loss, test_accuracy = main_output_scores(model, splits.test)
    assert metrics["test_loss"] == pytest.approx(test_loss, rel=1e-4)
    assert metrics["test_accuracy"] == pytest.approx(test_accuracy)
    assert metrics["test_total_loss"] > metrics["test_loss"]
    assert googlenet_run["line"].startswith(
        f"googlenet on digits: test accuracy {metrics['test_accuracy']:.4f} after 2 epochs, ")
    # model.keras is the trained model with its auxiliary classifiers.
    saved = zoo.load_model(run)
    assert len(saved.outputs) == 3
    x, _ = arrays(splits.test)
    for got, want in zip(saved(x), model(x)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)


def test_export_and_zoo_predict_give_the_main_output(googlenet_run, capsys):
    from zoo.export import export_run
    run, model = googlenet_run["run"], googlenet_run["model"]
    path = export_run(run, base_dir=googlenet_run["tmp"] / "models", lite=False)
    capsys.readouterr()
    assert zoo_main(["predict", path, "--digits", "4", "--top-k", "10", "--format", "jsonl",
                     "--no-xla"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    info = json.loads((run / "info.json").read_text())
    labels = [str(v) for v in info["dataset"]["labels"]]
    served = np.zeros((4, 10))
    for i, record in enumerate(records):
        for label, p in zip(record["labels"], record["probabilities"]):
            served[i, labels.index(label)] = p
    raw = data.digits_arrays("test")[0][:4]
    outputs = [np.asarray(o) for o in model(data.preprocess(raw, info["dataset"]))]
    np.testing.assert_allclose(served, outputs[0], atol=1e-4)
    for aux in outputs[1:]:   # the heads differ, so the comparison above tells them apart
        assert np.abs(aux - outputs[0]).max() > 1e-3


def test_mixed_precision_class_weights_label_smoothing_and_another_aux_weight(tmp_path):
    splits = small(data.load_splits("digits", image_size=(8, 8), batch_size=32))
    history = train.fit(tiny_aux_model(), splits, epochs=1, run_dir=str(tmp_path), verbose=0,
                        jit_compile=False, mixed_precision="bfloat16", label_smoothing=0.1,
                        class_weight={3: 2.0}, aux_loss_weight=0.5)
    model = train.fit.last_model
    assert model.get_compile_config()["loss_weights"] == {"predictions": 1.0,
                                                           "aux1_predictions": 0.5}
    np.testing.assert_allclose(history["val_total_loss"],
                               history["val_loss"] + 0.5 * history["val_aux1_predictions_loss"],
                               rtol=1e-5)
    # Every output layer computes in float32 (the outputs and losses), the rest in bfloat16.
    assert model.get_layer("conv").compute_dtype == "bfloat16"
    assert [model.get_layer(n).compute_dtype for n in model.output_names] == ["float32"] * 2
    # The main output's loss, label smoothing included (validation: no class weights).
    val_loss, val_accuracy = main_output_scores(
        model, splits.validation, train.SparseSmoothedCrossEntropy(0.1))
    assert history["val_loss"][0] == pytest.approx(val_loss, rel=1e-4)
    assert history["val_accuracy"][0] == pytest.approx(val_accuracy)
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["settings"]["aux_loss_weight"] == 0.5
    assert list(info["settings"]["class_weight"]["weights"].values()) == \
        [1.0, 1.0, 1.0, 2.0] + [1.0] * 6


def test_class_weights_weigh_every_output_of_the_training_examples():
    import tensorflow as tf
    x = np.zeros((4, 8, 8, 1), "float32")
    y = np.array([0, 3, 1, 3])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    weights = [1.0, 0.5, 1.0, 2.0] + [1.0] * 6
    (_, targets, sample_weight), = list(train._aux_targets(
        ds, ("predictions", ("aux1_predictions",)), weights))
    assert sorted(targets) == ["aux1_predictions", "predictions"]
    for labels in targets.values():
        np.testing.assert_array_equal(labels, y)
    np.testing.assert_allclose(sample_weight, [1.0, 2.0, 0.5, 2.0])


def test_a_killed_run_with_aux_classifiers_resumes_on_the_main_output(tmp_path):
    splits = small(data.load_splits("digits", image_size=(8, 8), batch_size=32))

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    class Epochs(keras.callbacks.Callback):
        seen = []

        def on_epoch_begin(self, epoch, logs=None):
            self.seen.append(epoch)

    with pytest.raises(KeyboardInterrupt):
        train.fit(tiny_aux_model(), splits, epochs=3, run_dir=str(tmp_path), verbose=0,
                  jit_compile=False, mixed_precision="off", callbacks=[Kill()])
    killed = pd.read_csv(tmp_path / "history.csv")
    assert list(killed["epoch"]) == [0]
    history = train.fit(tiny_aux_model(), splits, epochs=3, run_dir=str(tmp_path), verbose=0,
                        jit_compile=False, mixed_precision="off", callbacks=[Epochs()])
    assert Epochs.seen == [1, 2]                    # resumed after the killed run's epoch
    assert list(history["epoch"]) == [0, 1, 2]
    pd.testing.assert_frame_equal(history.iloc[:1], killed)
    assert history[["loss", "val_loss", "val_accuracy", "total_loss"]].notna().all().all()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_epoch"] == int(history["val_loss"].idxmin()) + 1


def test_other_models_with_several_outputs_are_refused(tmp_path):
    inputs = keras.Input((8, 8, 1), name="images")
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(10, name="a")(pooled),
                               keras.layers.Dense(10, name="b")(pooled)])
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"fit trains models with one output, or with one main "
                                         r"output and auxiliary classifiers .*Received: "
                                         r"outputs a \(None, 10\), b \(None, 10\)$"):
        train.fit(two, "digits", run_dir=str(run), verbose=0)
    # auxiliary classifiers whose shape is not the main output's: no labels fit them
    with pytest.raises(ValueError, match=r"Received: outputs predictions \(None, 10\), "
                                         r"aux1_predictions \(None, 3\)$"):
        train.fit(tiny_aux_model(aux_units=3), "digits", run_dir=str(run), verbose=0)
    assert not run.exists()


@pytest.mark.parametrize("weight", [-0.1, float("nan"), float("inf"), True, "0.3"])
def test_fit_refuses_an_aux_loss_weight_that_is_no_finite_number_from_0(tmp_path, weight):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"aux_loss_weight must be None \(the paper's 0.3 for "
                                         r"a model with auxiliary classifiers\) or a finite "
                                         r"number >= 0. Received: aux_loss_weight="):
        train.fit(tiny_aux_model(), "digits", run_dir=str(run), verbose=0,
                  aux_loss_weight=weight)
    assert not run.exists()


def test_fit_refuses_an_aux_loss_weight_without_aux_classifiers(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"aux_loss_weight weighs the losses of auxiliary "
                                         r"classifiers, and lenet5 has none .*Received: "
                                         r"aux_loss_weight=0.5$"):
        train.fit(zoo.lenet5(), "digits", run_dir=str(run), verbose=0, aux_loss_weight=0.5)
    with pytest.raises(ValueError, match=r"with compile=False the model's own compilation "
                                         r"weighs them. Received: aux_loss_weight=0.5, "
                                         r"compile=False$"):
        train.fit(tiny_aux_model(), "digits", run_dir=str(run), verbose=0,
                  aux_loss_weight=0.5, compile=False)
    assert not run.exists()


def test_zoo_train_refuses_bad_aux_loss_weights_in_one_line(capsys, tmp_path, monkeypatch):
    for value in ("-1", "nan", "inf", "heavy"):
        with pytest.raises(SystemExit) as exit_info:
            zoo_main(["train", "googlenet", "--model-arg", "aux_logits=true",
                      f"--aux-loss-weight={value}"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err
        assert err.endswith(f"argument --aux-loss-weight: expected a finite number >= 0; "
                            f"received '{value}'")
    run = tmp_path / "run"
    # a model without auxiliary classifiers: refused before the data loads (it was after)
    monkeypatch.setattr(data, "load_splits", lambda *a, **kw: pytest.fail("loaded"))
    for model in ("lenet5", "googlenet"):
        assert zoo_main(["train", model, "--aux-loss-weight", "0.5", "--run-dir", str(run),
                         "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith(f"zoo: error: aux_loss_weight weighs the "
                                                  f"losses of auxiliary classifiers, and {model} "
                                                  f"has none")
        assert err.endswith("Received: aux_loss_weight=0.5")
        assert not run.exists()


def test_export_tells_the_main_output_by_the_rule_fit_uses(tmp_path):
    """Export and fit share one rule (zoo.common.main_output_index): the main output is the
    one output whose layer's name does not start with 'aux', wherever it sits, and a model
    with several outputs and no single main one is refused, not exported by its first."""
    from zoo.export import export
    inputs = keras.Input((8, 8, 1), name="images")
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(inputs)
    aux = keras.layers.Dense(10, activation="softmax", name="aux1_predictions")(pooled)
    main = keras.layers.Dense(3, activation="softmax", name="predictions")(pooled)
    aux_first = keras.Model(inputs, [aux, main], name="aux_first")
    path = export(aux_first, base_dir=tmp_path / "models", lite=False)
    record = json.loads((tmp_path / "models" / "aux_first" / "1" / "assets" / "zoo.json")
                        .read_text())
    assert path.endswith(os.path.join("aux_first", "1"))
    assert record["num_classes"] == 3   # the main output's 3 classes, not aux1's 10
    assert record["output"]["model_output_shape"] == [3]

    # several outputs, none auxiliary: no main output to export
    two = keras.Model(inputs, [keras.layers.Dense(10, name="a")(pooled),
                               keras.layers.Dense(10, name="b")(pooled)], name="two")
    with pytest.raises(ValueError, match=r"^export takes models with one output, or with one "
                                         r"main output and auxiliary classifiers .*two has 2 "
                                         r"outputs and 2 whose names do not start with 'aux'\. "
                                         r"Received: outputs a \(None, 10\), b \(None, 10\)$"):
        export(two, base_dir=tmp_path / "models", lite=False)
    # an output whose name only contains 'aux' is not auxiliary: two main outputs
    pair = keras.Model(inputs, [keras.layers.Dense(10, name="head")(pooled),
                                keras.layers.Dense(10, name="head_aux")(pooled)], name="pair")
    with pytest.raises(ValueError, match=r"pair has 2 outputs and 2 whose names"):
        export(pair, base_dir=tmp_path / "models", lite=False)
    assert not (tmp_path / "models" / "two").exists()
    assert not (tmp_path / "models" / "pair").exists()


def test_main_output_index_refuses_models_without_defined_outputs():
    """The rule's ValueError, not Keras' AttributeError, for what has no outputs to tell
    apart: a subclassed model (even called), a Sequential model not built, None."""
    from zoo.common import main_output_index, output_layer_name
    rule = ("export takes keras.Models whose outputs are defined: functional models, and "
            "Sequential models built with an input shape (keras.Input first, or "
            "model.build(input_shape)). Received: ")
    subclassed = subclassed_model("sub")
    subclassed(np.zeros((1, 3), "float32"))
    for model, received in [(subclassed, "subclassed model 'sub' (class Subclassed)"),
                            (keras.Sequential([keras.layers.Dense(2)], name="seq"),
                             "Sequential model 'seq', not built yet"),
                            (None, "None"), ("lenet5", "'lenet5'")]:
        with pytest.raises(ValueError) as e:
            main_output_index(model, "export takes")
        assert str(e.value) == rule + received
    tensor = ("output_layer_name takes an output tensor of a functional or Sequential model "
              "(model.outputs), which records the layer that produced it. Received: ")
    with pytest.raises(ValueError) as e:
        output_layer_name(None)
    assert str(e.value) == tensor + "None"
    with pytest.raises(ValueError) as e:
        output_layer_name(subclassed(np.zeros((1, 3), "float32")))
    assert str(e.value).startswith(tensor) and str(e.value).endswith(" object")
    # built with an input shape: the rule applies
    built = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="out")])
    assert main_output_index(built, "export takes") == 0
    assert output_layer_name(built.outputs[0]) == "out"
