"""Models built around zoo networks (a backbone with a head of the user's, nested or on
the backbone's output) and the classifier options as keras.applications users pass them:
layer tables, ``zoo summary`` of a saved model, option combinations."""

import numpy as np
import pytest
import keras
from keras import layers as L

import zoo
from zoo.cli import main
from zoo.tables import GENERIC_COLUMNS, foreign_layers, layer_table


def nested_classifier():
    """A ResNet-18 backbone (64x48, pooled features) inside a classifier with its own head."""
    backbone = zoo.resnet18(input_shape=(64, 48, 3), include_top=False, pooling="avg")
    images = keras.Input((64, 48, 3), name="img")
    x = L.Dropout(0.2, name="head_dropout")(backbone(images))
    return keras.Model(images, L.Dense(5, activation="softmax", name="head")(x), name="pets")


# ---------------------------------------------------------------------------
# layer_table of models that are not (only) zoo models

def test_a_nested_zoo_backbone_is_one_row_of_the_generic_table():
    model = nested_classifier()
    table = layer_table(model)
    assert list(table.columns) == GENERIC_COLUMNS
    assert table.to_dict("records") == [
        {"Layer": "img", "Type": "InputLayer", "Output": "64x48x3", "Params": 0},
        {"Layer": "resnet18", "Type": "Model (resnet)", "Output": "512", "Params": 11_186_112},
        {"Layer": "head_dropout", "Type": "Dropout", "Output": "512", "Params": 0},
        {"Layer": "head", "Type": "Dense", "Output": "5", "Params": 512 * 5 + 5},
    ]
    assert table["Params"].sum() == model.count_params()
    # the backbone's own table is one call away
    assert layer_table(model.get_layer("resnet18"))["layer name"].iloc[0] == "conv1"


def test_a_head_on_the_backbone_output_lists_every_layer():
    backbone = zoo.lenet5(include_top=False)
    x = L.Flatten(name="flat")(backbone.output)
    model = keras.Model(backbone.input, L.Dense(3, name="head")(x))
    table = layer_table(model)
    assert list(table["Layer"]) == ["images", "C1", "S2", "S2_act", "C3", "S4", "S4_act", "C5",
                                    "flat", "head"]
    assert list(table["Output"])[-3:] == ["1x1x120", "120", "3"]
    assert table["Params"].sum() == model.count_params() == 49_836 + 363
    assert [layer.name for layer in foreign_layers(model, "lenet")] == ["flat", "head"]


def test_sizes_a_model_leaves_open_are_question_marks():
    # they read NonexNonex4
    images = keras.Input((None, None, 4), name="img")
    x = L.Conv2D(8, 3, name="conv")(images)
    model = keras.Model(images, L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="gap")(x)))
    assert list(layer_table(model)["Output"]) == ["?x?x4", "?x?x8", "8", "3"]


def test_a_model_not_built_yet_is_refused():
    # its table listed every layer with 0 parameters and no output
    model = keras.Sequential([L.Conv2D(4, 3), L.Flatten(), L.Dense(2)], name="later")
    with pytest.raises(ValueError, match=r"^layer_table: model 'later' is not built yet, .* "
                                         r"Received: Sequential model 'later', not built$"):
        layer_table(model)
    model.build((None, 8, 8, 1))
    assert list(layer_table(model)["Params"]) == [40, 0, 2 * 144 + 2]


def test_the_forced_family_table_leaves_the_users_layers_out():
    backbone = zoo.resnet18(input_shape=(32, 32, 3), include_top=False)
    expected = layer_table(backbone).set_index("layer name")["params"]
    x = L.GlobalAveragePooling2D(name="gap")(backbone.output)
    model = keras.Model(backbone.input, L.Dense(2, name="head")(x))
    forced = layer_table(model, family="resnet").set_index("layer name")["params"]
    assert forced["conv5_x"] == expected["conv5_x"] == 8_398_848   # not 8_399_874 (+ head)
    assert list(forced.index) == list(expected.index)


def test_a_model_without_zoo_layers_gets_the_generic_table():
    model = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(4, 3, name="c"),
                              L.GlobalMaxPooling2D(name="g")], name="plain")
    assert layer_table(model).to_dict("records") == [
        {"Layer": "c", "Type": "Conv2D", "Output": "6x6x4", "Params": 76},
        {"Layer": "g", "Type": "GlobalMaxPooling2D", "Output": "4", "Params": 0}]
    assert layer_table(zoo.lenet5(), family="layers")["Type"].iloc[-1] == "RBFOutput"


def test_a_nested_model_with_two_outputs_shows_both():
    inner_in = keras.Input((8, 8, 2))
    c = L.Conv2D(4, 3, name="c")(inner_in)
    inner = keras.Model(inner_in, [c, L.GlobalMaxPooling2D(name="g")(c)], name="two")
    inputs = keras.Input((8, 8, 2), name="x")
    maps, pooled = inner(inputs)
    model = keras.Model(inputs, [maps, L.Dense(3, name="d")(pooled)])
    assert layer_table(model).to_dict("records")[1:] == [
        {"Layer": "two", "Type": "Functional", "Output": "6x6x4, 4", "Params": 76},
        {"Layer": "d", "Type": "Dense", "Output": "3", "Params": 15}]


def test_an_unknown_family_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown family 'bogus'. Allowed: None .*'layers'"
                                         r" .*'resnet'"):
        layer_table(zoo.lenet5(), family="bogus")


ZOO_BUILDS = [
    ("lenet5", {}, "lenet"),
    ("lenet5", dict(variant="modern", include_top=False, pooling="max"), "lenet"),
    ("alexnet", dict(input_shape=(67, 67, 3), local_response_normalization=True), "alexnet"),
    ("googlenet", dict(input_shape=(65, 65, 3), aux_logits=True, batch_norm=True,
                       local_response_normalization=True), "googlenet"),
    ("inception_v3", dict(input_shape=(75, 75, 3), include_top=False, pooling="avg"),
     "inception_v3"),
    ("xception", dict(input_shape=(32, 32, 3)), "xception"),
    ("resnet18", dict(input_shape=(32, 32, 3)), "resnet"),
    ("resnet50_v2", dict(input_shape=(32, 32, 3), include_top=False, pooling="max"), "resnet"),
    ("unet", dict(input_shape=(188, 188, 1), base_filters=8, batch_norm=True, dropout=0.5),
     "unet"),
    ("unet", dict(input_shape=(64, 64, 3), backbone="resnet18", base_filters=8), "unet"),
]


@pytest.mark.parametrize("name,kwargs,family", ZOO_BUILDS)
def test_zoo_builds_keep_their_family_table(name, kwargs, family):
    model = zoo.get_model(name, **kwargs)
    assert zoo.tables.detect_family(model) == family
    assert foreign_layers(model, family) == []
    assert list(layer_table(model).columns) != GENERIC_COLUMNS
    keras.backend.clear_session()


def test_a_feature_extractor_keeps_its_family_table():
    fx = zoo.feature_extractor("resnet18", input_shape=(32, 32, 3))
    assert foreign_layers(fx, "resnet") == []
    assert list(layer_table(fx)["layer name"]) == ["conv1", "conv2_x", "conv3_x", "conv4_x",
                                                   "conv5_x", "FLOPs"]


# ---------------------------------------------------------------------------
# zoo summary of a saved model

def test_zoo_summary_profiles_a_saved_model_with_a_custom_head(tmp_path, capsys):
    backbone = zoo.lenet5(include_top=False, pooling="avg", input_shape=(32, 40, 1))
    images = keras.Input((32, 40, 1), name="img")
    model = keras.Model(images, L.Dense(3, name="fc")(backbone(images)), name="custom")
    path = tmp_path / "custom.keras"
    model.save(path)
    assert main(["summary", str(path), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "lenet5/C5,Conv2D,1x3x120,48120,144000," in out
    assert "fc,Dense,3,363,360," in out
    assert "multiply-adds (MACs),507632" in out   # C1..C5 and fc: 151200+1512+210000+560+...
    assert main(["summary", str(path), "--input-shape", "32,32,1"]) == 2
    assert "--input-shape applies to a registered model name" in capsys.readouterr().err
    assert main(["table", str(path), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Layer,Type,Output,Params", "img,InputLayer,32x40x1,0",
        "lenet5,Model (lenet),120,49836", "fc,Dense,3,363"]   # C1..C5: 156+12+1516+32+48120
    assert main(["table", str(path), "--input-shape", "32,32,1"]) == 2
    assert "--input-shape applies to a registered model name" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["summary", "table"])
@pytest.mark.parametrize("name", ["nosuch/run", "../nosuch", "missing.keras"])
def test_a_missing_saved_model_with_an_input_shape_is_named_as_missing(tmp_path, capsys,
                                                                       monkeypatch, command,
                                                                       name):
    # Found by generated option values: `zoo table nosuch/run --input-shape 32,32,1` said
    # "the saved model 'nosuch/run' has its own input size" of a path that does not exist.
    monkeypatch.chdir(tmp_path)
    assert main([command, name, "--input-shape", "32,32,1"]) == 2
    assert capsys.readouterr().err == f"zoo: error: no such run directory or .keras file: " \
                                      f"{name!r}\n"


def test_a_directory_that_is_no_run_is_named_with_what_to_give_instead(tmp_path, capsys,
                                                                      monkeypatch):
    # An export, a model directory of exports, a zoo tune search or trial: zoo summary,
    # zoo table and zoo export said only "a directory without model.keras".
    import json
    run = tmp_path / "runs" / "pets"
    run.mkdir(parents=True)
    (run / "model.keras").write_bytes(b"")
    for version, source in (("1", str(run)), ("2", None)):
        (tmp_path / "saved" / "pets" / version / "assets").mkdir(parents=True)
        (tmp_path / "saved" / "pets" / version / "saved_model.pb").write_bytes(b"")
        if source:
            (tmp_path / "saved" / "pets" / version / "assets" / "zoo.json").write_text(
                json.dumps({"training": {"source": source}}))
    (tmp_path / "tune" / "p" / "trial_0").mkdir(parents=True)
    (tmp_path / "tune" / "p" / "search.json").write_text("{}")
    (tmp_path / "tune" / "p" / "trial_0" / "trial.json").write_text("{}")
    # A zoo train run stopped before it ended (Ctrl-C) was "not a training run".
    (tmp_path / "runs" / "stopped" / "backup").mkdir(parents=True)
    (tmp_path / "runs" / "stopped" / "backup" / "zoo_run.json").write_text("{}")
    (tmp_path / "runs" / "stopped" / "history.csv").write_text("epoch,loss\n0,0.5\n")
    (tmp_path / "mine" / "backup").mkdir(parents=True)      # a folder of one's own: no hint
    saved = "holds no Keras model: give the run "
    tune = ("whose trials keep weights only: the same zoo tune command with --export "
            "exports the best trial's model (best.json names it).")
    monkeypatch.chdir(tmp_path)
    for path, hint in [
            ("saved/pets/1", f"It is an exported SavedModel, which {saved}it was exported "
                             f"from ({run})."),
            ("saved/pets", "It is a model directory of exported SavedModels (versions 1, 2), "
                           f"which {saved}directory or .keras file it was exported from."),
            ("saved/pets/2", f"It is an exported SavedModel, which {saved}directory or .keras "
                             f"file it was exported from."),
            ("runs/stopped", "It is a zoo train run that has not finished (it keeps "
                             "backup/ until it does), so it has no model yet: the zoo train "
                             "command that started it, with --run-dir runs/stopped, resumes "
                             "it if it was stopped."),
            ("tune/p", f"It is a zoo tune search, {tune}"),
            ("tune/p/trial_0", f"It is a trial of a zoo tune search, {tune}")]:
        for command, error in (("summary", "is a directory without model.keras: expected a "
                                           "run directory or a .keras file."),
                               ("table", "is a directory without model.keras: expected a "
                                         "run directory or a .keras file."),
                               ("export", "is no finished training run: it has no model.keras. "
                                          "Pass a run directory (model.keras + info.json) "
                                          "or a .keras file.")):
            assert main([command, path]) == 2
            assert capsys.readouterr().err.splitlines() == [
                f"zoo: error: {path} {error} {hint}"], (command, path)
        # and as zoo train --weights
        assert main(["train", "resnet18", "--weights", path, "--epochs", "1"]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"zoo: error: pretrained_classifier: {path} is a directory without model.keras: "
            f"weights must be 'imagenet', a weights file or a run directory. Received: "
            f"weights={path!r}. {hint}"], path
    assert main(["export", "mine"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "zoo: error: mine is no finished training run: it has no model.keras. Pass a run "
        "directory (model.keras + info.json) or a .keras file."]
    # A directory named as a bare word is read as a model name: the error says how to
    # give it as a path.
    assert main(["summary", "runs"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "zoo: error: 'runs' is not a registered model name (see zoo list); to read the run "
        "directory or .keras file 'runs', give it as a path: ./runs"]
    assert main(["table", "lenet"]) == 2
    assert "Unknown model 'lenet'. Did you mean: lenet5" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Classifier options that combine

SMALL = {"lenet5": (32, 32, 1), "alexnet": (67, 67, 3), "googlenet": (65, 65, 3),
         "inception_v3": (75, 75, 3), "xception": (32, 32, 3), "resnet18": (32, 32, 3),
         "resnet50": (32, 32, 3)}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_pooling_with_the_top_is_refused(name):
    with pytest.raises(ValueError, match=rf"^{name}: pooling applies to include_top=False .* "
                                         r"Received: include_top=True, pooling='max'"):
        zoo.get_model(name, input_shape=SMALL[name], pooling="max")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_softmax_over_one_class_is_refused(name):
    with pytest.raises(ValueError, match=rf"^{name}: a softmax over num_classes=1 output is 1 "
                                         r"for every input; .* classifier_activation='sigmoid'"):
        zoo.get_model(name, input_shape=SMALL[name], num_classes=1)


def test_one_class_with_sigmoid_or_logits_builds():
    model = zoo.resnet18(input_shape=(33, 47, 2), num_classes=1,
                         classifier_activation="sigmoid")
    assert model.output_shape == (None, 1)
    assert model.get_layer("predictions").activation.__name__ == "sigmoid"
    assert zoo.lenet5(num_classes=1, classifier_activation=None,
                      variant="modern").output_shape == (None, 1)
    with pytest.raises(ValueError, match="softmax over num_classes=1"):
        zoo.alexnet(input_shape=(67, 67, 3), num_classes=1,
                    classifier_activation=keras.activations.softmax)
    # without the top, num_classes plays no part
    assert zoo.lenet5(num_classes=1, include_top=False).output_shape == (None, 1, 1, 120)


@pytest.mark.parametrize("activation", ["sigmoid", None])
def test_one_class_on_the_classic_lenets_rbf_output_is_refused(activation):
    # minus a squared distance: a sigmoid of it was at most 0.5 for every input (class 0)
    model = zoo.lenet5(num_classes=1, classifier_activation=activation, variant="modern")
    assert model.output_shape == (None, 1)
    with pytest.raises(ValueError, match=r"^lenet5: the classic variant's output is minus the "
                                         r"squared distance .* Allowed: num_classes >= 2, or "
                                         r"variant='modern' for one sigmoid unit. Received: "
                                         r"num_classes=1, variant='classic'$"):
        zoo.lenet5(num_classes=1, classifier_activation=activation)
    out = zoo.layers.RBFOutput(1, activation="sigmoid")(
        np.random.default_rng(0).normal(0, 3, (64, 84)).astype("float32"))
    assert float(np.max(out)) <= 0.5


def test_a_numpy_integer_number_of_classes_is_taken():
    labels = np.array([0, 3, 1])
    model = zoo.lenet5(num_classes=labels.max() + 1)
    assert model.output_shape == (None, 4) and type(model.get_layer("Out").units) is int


def test_get_model_points_keras_applications_users_to_the_zoo_names():
    with pytest.raises(TypeError, match=r"takes no argument\(s\) 'classes', 'input_tensor'; .* "
                                        r"\(keras.applications' classes is num_classes here; "
                                        r"keras.applications' input_tensor: build the model, "
                                        r"then call it on the tensor"):
        zoo.get_model("lenet5", classes=3, input_tensor=None)


def test_a_keras_file_needing_the_users_code_is_named_in_one_line(tmp_path, capsys):
    """A custom layer class not registered in the loading process, and a Lambda layer (which
    Keras loads only with safe_mode=False): one line naming what the file needs and how to
    load it, for zoo.load_model and the commands (it was Keras' message with the whole
    layer config)."""

    class Twice(L.Layer):   # not registered: Keras cannot find it again
        def call(self, x):
            return 2.0 * x

    images = keras.Input((8, 8, 1), name="img")
    scores = L.Dense(3)(L.Flatten()(Twice(name="twice")(images)))
    custom = keras.Model(images, scores)
    plain = L.Dense(3)(L.Flatten()(images))
    lam = keras.Model(images, L.Lambda(lambda t: 2.0 * t)(plain))
    custom.save(tmp_path / "custom.keras")
    lam.save(tmp_path / "lam.keras")
    custom_error = (": Keras cannot load class 'Twice' of the model, which is not registered "
                    "with it (code of the model's own): import the module that defines it "
                    "with @keras.saving.register_keras_serializable() and load the file in "
                    "Python (zoo.load_model, then zoo.export or zoo.profile on the model); "
                    "zoo's commands know Keras' and the zoo's classes only.")
    lambda_error = (": the model holds a Lambda layer whose function is Python code, which "
                    "Keras loads only with safe_mode=False: for a file you trust, load it in "
                    "Python with zoo.load_model(path, safe_mode=False), then zoo.export or "
                    "zoo.profile the model; zoo's commands load in safe mode.")
    for name, error in (("custom.keras", custom_error), ("lam.keras", lambda_error)):
        path = str(tmp_path / name)
        with pytest.raises(ValueError) as e:
            zoo.load_model(path)
        assert str(e.value) == path + error
        for command in (["summary", path], ["table", path],
                        ["export", path, "--base-dir", str(tmp_path / "saved")]):
            assert main(command) == 2
            assert capsys.readouterr().err.splitlines() == [f"zoo: error: {path}{error}"]
    assert not (tmp_path / "saved").exists()
    loaded = zoo.load_model(tmp_path / "lam.keras", safe_mode=False)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), lam.predict(x, verbose=0),
                               atol=1e-6)
    with pytest.raises(ValueError, match=r"^load_model: safe_mode must be True or False. "
                                         r"Received: safe_mode='no'$"):
        zoo.load_model(tmp_path / "lam.keras", safe_mode="no")
