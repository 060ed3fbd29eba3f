"""Bad arguments at the Python API: clear errors that name what was received and what is
allowed."""
import re

import pytest

import zoo
from zoo import get_model, layer_table, list_models


def test_get_model_names_the_unknown_argument_and_the_builders_arguments():
    with pytest.raises(TypeError, match=r"^lenet5 takes no argument\(s\) 'foo'; its arguments: "
                                        r"input_shape, num_classes, include_top, pooling, "):
        get_model("lenet5", foo=1)
    assert get_model("lenet5", num_classes=3).output_shape == (None, 3)


def test_list_models_refuses_a_pattern_that_is_not_text():
    with pytest.raises(TypeError, match="pattern must be a shell-style pattern string such as "
                                        "'resnet\\*' or None. Received: 5"):
        list_models(5)
    assert list_models("lenet*") == ["lenet5"]


def test_layer_table_takes_a_registered_name_or_a_model():
    by_name = layer_table("lenet5")
    assert by_name.equals(layer_table(zoo.lenet5()))
    assert by_name.iloc[3]["Layer"] == "C3"
    with pytest.raises(TypeError, match="registered model name. Received: int"):
        layer_table(5)


def test_flags_must_be_booleans():
    with pytest.raises(ValueError, match="alexnet: local_response_normalization must be True "
                                         "or False. Received: local_response_normalization='no'"):
        zoo.alexnet(input_shape=(67, 67, 3), local_response_normalization="no")
    with pytest.raises(ValueError, match="googlenet: batch_norm must be True or False"):
        zoo.googlenet(batch_norm="yes")
    for value in (1, 0):                      # equal to True and False, but no booleans
        with pytest.raises(ValueError, match=f"lenet5: include_top must be True or False. "
                                             f"Received: include_top={value}$"):
            zoo.lenet5(include_top=value)


@pytest.mark.parametrize("builder", list_models())
def test_builders_check_the_model_name_before_building(builder):
    # "" gave the default name; 5 and "a/b" were Keras' error after the whole model was built
    for bad in ("", 5, "a/b"):
        with pytest.raises(ValueError, match=rf"^{builder}: name must be None \(the default "
                                             rf"name\) or a non-empty string without '/'. "
                                             rf"Received: name={re.escape(repr(bad))}$"):
            get_model(builder, name=bad)


def test_builders_take_a_model_name():
    assert zoo.lenet5(name="my net").name == "my net"
    assert zoo.lenet5().name == "lenet5"
    assert zoo.unet(name="seg", input_shape=(188, 188, 1)).name == "seg"


def test_unknown_classifier_activation_names_are_refused():
    with pytest.raises(ValueError, match="lenet5: unknown classifier_activation 'bogus'; use a "
                                         "Keras activation name"):
        zoo.lenet5(classifier_activation="bogus")
    assert zoo.lenet5(classifier_activation="sigmoid").layers[-1].activation.__name__ \
        == "sigmoid"


def test_unet_refuses_a_softmax_over_one_class():
    with pytest.raises(ValueError, match="softmax over num_classes=1 channel is 1 everywhere"):
        zoo.unet(num_classes=1, input_shape=(188, 188, 1))
    model = zoo.unet(num_classes=1, output_activation="sigmoid", input_shape=(188, 188, 1))
    assert model.output_shape == (None, 4, 4, 1)


def test_profile_refuses_a_model_name_and_names_what_it_takes():
    # profile("lenet5") was "'lenet5' has no functional graph (a subclassed or unbuilt model)"
    with pytest.raises(TypeError, match=r"^profile: model must be a keras.Model "
                                        r"\(zoo.get_model\('lenet5'\) for a registered model\)\. "
                                        r"Received: 'lenet5'$"):
        zoo.profile("lenet5")
    with pytest.raises(TypeError, match=r"^profile: model must be a keras.Model. Received: int "
                                        r"object$"):
        zoo.profile(5)


@pytest.mark.parametrize("function", ["detect_family", "generic_table"])
@pytest.mark.parametrize("bad", [5, "lenet5"])
def test_detect_family_and_generic_table_refuse_what_is_no_model(function, bad):
    from zoo import tables
    # were AttributeErrors: "'int' object has no attribute 'layers'"
    with pytest.raises(TypeError, match=rf"^{function}: expected a keras.Model. Received: "
                                        rf"{type(bad).__name__}$"):
        getattr(tables, function)(bad)
    assert tables.detect_family(zoo.lenet5()) == "lenet"


def test_list_versions_and_load_refuse_what_is_no_path(tmp_path, monkeypatch):
    from zoo import serving
    from zoo.export import latest_version, list_versions
    # list_versions(None) listed the current directory's versions, list_versions(5) those
    # of whatever directory file descriptor 5 was ("Bad file descriptor" if none);
    # serving.load("") looked for a SavedModel in the current directory
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert list_versions(".") == [3]
    for bad, error in ((None, TypeError), (5, TypeError), ("", ValueError)):
        with pytest.raises(error, match=rf"^list_versions: model_dir must be the path of a "
                                        rf"model directory. Received: model_dir={bad!r}$"):
            list_versions(bad)
        with pytest.raises(error, match=rf"^list_versions: .* Received: model_dir={bad!r}$"):
            latest_version(bad)
        with pytest.raises(error, match=rf"^path must be the path of a SavedModel directory "
                                        rf"\(an export's version or model directory\)\. "
                                        rf"Received: path={bad!r}$"):
            serving.load(bad)


def test_decode_image_channels_must_be_1_3_or_4_as_integers():
    import io

    import numpy as np
    from PIL import Image

    from zoo.serving import decode_image
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buffer, format="PNG")
    png = buffer.getvalue()
    # True decoded to 1 channel, 3.0 to 3; "3" was "this model takes 3"
    for bad in (True, 3.0, "3", 2):
        with pytest.raises(ValueError, match=rf"^images can be converted to 1, 3 or 4 channels "
                                             rf"\(channels=None: the image's own\)\. "
                                             rf"Received: channels={bad!r}$"):
            decode_image(png, bad)
    assert decode_image(png, np.int64(1)).shape == (4, 4, 1)
    assert decode_image(png, None).shape == (4, 4, 3)


def test_convert_channels_takes_an_integer_number_of_channels():
    import numpy as np

    from zoo.data import convert_channels
    images = np.ones((1, 4, 4, 3), "float32")
    # 1.5 and True converted to grey; None and "x" were int()'s TypeError and ValueError
    for bad in (1.5, True, None, "x", 0):
        with pytest.raises(ValueError, match=r"^convert_channels: channels must be an integer "
                                             r">= 1 .* Received: channels="
                                             + re.escape(repr(bad)) + "$"):
            convert_channels(images, bad)
    assert convert_channels(images, np.int64(1)).shape == (1, 4, 4, 1)


@pytest.mark.parametrize("make, message", [
    (lambda T: T.SparseDiceLoss(smooth=float("nan")),
     r"^SparseDiceLoss: smooth must be a finite number >= 0. Received: smooth=nan$"),
    (lambda T: T.SparseDiceLoss(from_logits="no"),
     r"^SparseDiceLoss: from_logits must be True or False. Received: from_logits='no'$"),
    (lambda T: T.SparseDiceLoss(ignore_label=1.5),
     r"^SparseDiceLoss: ignore_label must be None or an integer from 0 to 65535: .* "
     r"Received: ignore_label=1.5$"),
    (lambda T: T.CrossEntropyDiceLoss(dice_weight=-1),
     r"^CrossEntropyDiceLoss: dice_weight must be a finite number >= 0. "
     r"Received: dice_weight=-1$"),
    (lambda T: T.CrossEntropyDiceLoss(smooth="1"), r"smooth must be a finite number >= 0"),
    (lambda T: T.SparsePixelAccuracy(ignore_label=True),
     r"^SparsePixelAccuracy: ignore_label must be None or an integer .* "
     r"Received: ignore_label=True$"),
    (lambda T: T.SparsePixelAccuracy(ignore_label=-1), r"Received: ignore_label=-1$"),
])
def test_segmentation_losses_and_metric_check_their_arguments(make, message):
    # were taken as given: smooth=nan made every loss NaN, ignore_label=1.5 ignored the
    # pixels of class 1 and True those of class 1, from_logits="no" applied a softmax,
    # dice_weight=-1 rewarded a poor overlap; "1" was float()'s, "x" int()'s ValueError
    from zoo import train
    with pytest.raises(ValueError, match=message):
        make(train)


def test_segmentation_losses_take_numpy_numbers():
    import numpy as np

    from zoo import train
    loss = train.CrossEntropyDiceLoss(dice_weight=np.float32(0.5), smooth=0,
                                      ignore_label=np.int64(255))
    assert (loss.dice_weight, loss.smooth, loss.ignore_label) == (0.5, 0.0, 255)
    assert type(loss.ignore_label) is int
    assert train.SparsePixelAccuracy(ignore_label=np.uint8(255)).ignore_label == 255


# ---------------------------------------------------------------------------
# tuning.hypermodels


@pytest.mark.parametrize("kwargs, message", [
    ({"num_classes": 0}, r"^LeNet5HyperModel: num_classes must be an integer >= 1. "
                         r"Received: num_classes=0$"),
    ({"num_classes": 1.5}, r"Received: num_classes=1.5$"),
    ({"input_shape": (0, 0, 1)}, r"^LeNet5HyperModel: input_shape must be three positive "
                                 r"integers .* Received: input_shape=\(0, 0, 1\)$"),
    ({"input_shape": "x"}, r"Received: input_shape='x'$"),
    ({"seed": -1}, r"^seed must be an integer between 0 and 2\*\*32 - 1. Received: seed=-1$"),
    ({"jit_compile": "no"}, r"^LeNet5HyperModel: jit_compile must be 'auto', True or False. "
                            r"Received: jit_compile='no'$"),
    ({"mixed_precision": "float16"}, r"^LeNet5HyperModel: mixed_precision must be None "
                                     r"\(float32\), 'mixed_bfloat16' or 'mixed_float16'. "
                                     r"Received: mixed_precision='float16'$"),
    ({"info": "digits"}, r"^LeNet5HyperModel: info must be a zoo.data.DatasetInfo or None. "
                         r"Received: info='digits'$"),
    ({"augmentation": {"flip": "yes"}}, r"^augmentation setting flip must be .* "
                                        r"Received: flip='yes'$"),
    ({"name": 5}, r"^LeNet5HyperModel: name must be a non-empty string or None. "
                  r"Received: name=5$"),
])
def test_hypermodels_check_their_arguments_when_made(kwargs, message):
    # were kept as given, to fail in every trial's build (num_classes=0, input_shape
    # (0, 0, 1)), in its fit (info: "'str' object has no attribute 'input_shape'"), or
    # never (jit_compile="no" compiled with XLA, mixed_precision="float16" built float32
    # models, seed=-1 reached the augmentation layers)
    from tuning.hypermodels import LeNet5HyperModel
    with pytest.raises(ValueError, match=message):
        LeNet5HyperModel(**kwargs)


def test_hypermodels_take_numpy_integers():
    import numpy as np

    from tuning.hypermodels import LeNet5HyperModel
    hm = LeNet5HyperModel(input_shape=np.array([16, 16, 1]), num_classes=np.int64(3),
                          seed=np.int32(7), jit_compile="auto")
    assert (hm.input_shape, hm.num_classes, hm.seed) == ((16, 16, 1), 3, 7)
    # jit_compile takes NumPy's bools, as zoo.train.compile_model does (np.bool_ was refused)
    for flag in (True, False):
        assert LeNet5HyperModel(jit_compile=np.bool_(flag)).jit_compile is flag
    assert all(type(v) is int for v in (*hm.input_shape, hm.num_classes, hm.seed))


def test_rebatch_and_augment_dataset_check_their_arguments():
    import numpy as np
    import tensorflow as tf

    from tuning.hypermodels import augment_dataset, rebatch
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 8, 8, 1), "float32"),
                                             np.zeros(4, "int32"))).batch(2)
    # 0 was TensorFlow's InvalidArgumentError "Batch size must be greater than zero", 1.5
    # batched by 1, "x" an AttributeError about element_spec
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=rf"^rebatch: batch_size must be an integer >= 1. "
                                             rf"Received: batch_size={bad!r}$"):
            rebatch(ds, bad)
    with pytest.raises(ValueError, match=r"^rebatch: dataset must be a tf.data.Dataset. "
                                         r"Received: dataset='x'$"):
        rebatch("x", 2)
    assert rebatch(ds, np.int64(4)).element_spec[0].shape.as_list() == [None, 8, 8, 1]
    # NaN and inf augmented at full strength (min(1, nan * v) is 1); -1 was "augmentation
    # setting rotation must be ... Received: rotation=-0.03"
    for bad in (float("nan"), float("inf"), -1, "1"):
        with pytest.raises(ValueError, match=rf"^augment_dataset: strength must be a finite "
                                             rf"number >= 0. Received: strength={bad!r}$"):
            augment_dataset(ds, bad)
    assert augment_dataset(ds, 0) is ds


# ---------------------------------------------------------------------------
# zoo.data


def test_load_checks_shuffle_and_augment_for_every_split():
    from zoo import data
    # shuffle="no" shuffled (bool("no")); augment="yes" or a bad setting passed unseen
    # with any split but train
    for bad in ("no", 1):
        with pytest.raises(ValueError, match=rf"^shuffle must be None \(the train split only\), "
                                             rf"True or False. Received: shuffle={bad!r}$"):
            data.load("digits", "test", shuffle=bad)
    with pytest.raises(ValueError, match=r"^augment must be True, False or a dict of settings. "
                                         r"Received: 'yes'$"):
        data.load("digits", "test", augment="yes")
    with pytest.raises(ValueError, match=r"^augmentation setting flip must be .* "
                                         r"Received: flip='x'$"):
        data.load("digits", "validation", augment={"flip": "x"})
    assert data.load("digits", "test", augment=True, shuffle=False)[1].augmentation == {}


@pytest.mark.parametrize("kwargs, message", [
    ({"raw_range": (255, 0)}, r"^augmenter: raw_range must be \(low, high\), finite numbers "
                              r"with low < high, such as \(0.0, 255.0\). "
                              r"Received: raw_range=\(255, 0\)$"),
    ({"raw_range": (0, float("nan"))}, r"Received: raw_range=\(0, nan\)$"),
    ({"raw_range": "x"}, r"Received: raw_range='x'$"),
    ({"seed": -1}, r"^seed must be an integer between 0 and 2\*\*32 - 1. Received: seed=-1$"),
    ({"ignore_label": 1.5}, r"^ignore_label must be None or an integer from 0 to 65535: .* "
                            r"Received: ignore_label=1.5$"),
])
def test_augmenter_checks_its_keyword_arguments(kwargs, message):
    # were taken as given: a reversed or NaN raw_range went to RandomContrast's clipping,
    # seed=-1 and ignore_label=1.5 to the layers ("x" was Keras' "Argument `seed` must be
    # an integer")
    from zoo.data import augmenter
    with pytest.raises(ValueError, match=message):
        augmenter({"contrast": 0.2}, **kwargs)


def test_augmenter_takes_numpy_values():
    import numpy as np

    from zoo.data import augmenter
    aug = augmenter({"contrast": 0.2}, raw_range=np.array([0, 255]), seed=np.int64(3),
                    ignore_label=np.uint8(255))
    assert aug(np.ones((1, 4, 4, 1), "float32")).shape == (1, 4, 4, 1)


# ---------------------------------------------------------------------------
# zoo.export


def test_export_takes_a_numpy_integer_version(tmp_path):
    import numpy as np

    from zoo.export import export
    # was "version must be an integer ... Received: version=np.int64(4)"
    path = export(zoo.lenet5(), base_dir=tmp_path, version=np.int64(4), lite=False)
    assert path == str(tmp_path / "lenet5" / "4")


def test_export_run_checks_its_options_before_loading_the_run(tmp_path):
    from zoo.export import export_run
    missing = tmp_path / "no_run"
    # were checked by export once the model was loaded: a missing run (or a slow load)
    # came first
    with pytest.raises(ValueError, match=r"^precision must be one of float32, float16, "
                                         r"bfloat16. Received: precision='int8'$"):
        export_run(missing, base_dir=tmp_path, precision="int8")
    with pytest.raises(ValueError, match=r"^version must be an integer .* Received: "
                                         r"version=-1$"):
        export_run(missing, base_dir=tmp_path, version=-1)
    with pytest.raises(ValueError, match=r"^name must be a directory name .* Received: "
                                         r"name='a/b'$"):
        export_run(missing, base_dir=tmp_path, name="a/b")
    # was os.fspath's "expected str, bytes or os.PathLike object, not NoneType"
    with pytest.raises(TypeError, match=r"^export_run: run_dir_or_keras_file must be the path "
                                        r"of a training run directory or a .keras file. "
                                        r"Received: None$"):
        export_run(None, base_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no such run directory or .keras file"):
        export_run(missing, base_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# zoo.evaluation


def test_evaluate_takes_numpy_integers_and_names_a_keras_model(tmp_path):
    import numpy as np

    from zoo.evaluation import evaluate
    from zoo.export import export
    # batch_size=np.int64(64) was TensorFlow's "Expected bool for argument
    # 'legacy_autotune' not np.False_"; a keras.Model was "path must be the path of a
    # SavedModel directory"; a bad batch size came after the model was loaded
    with pytest.raises(ValueError, match=r"^batch_size must be a positive integer or None. "
                                         r"Received: 0$"):
        evaluate(tmp_path / "missing", "digits", batch_size=0)
    model = zoo.lenet5()
    with pytest.raises(TypeError, match=r"^evaluate: model must be a zoo.serving.Servable or "
                                        r"the path of an export .* Received: Functional "
                                        r"object$"):
        evaluate(model, "digits")
    path = export(model, base_dir=tmp_path, lite=False)
    result = evaluate(path, "digits", batch_size=np.int64(64), top_k=np.int64(2))
    assert result["examples"] == 360 and type(result["top_k"]) is int


def test_hold_run_dir_checks_the_directory_and_the_names_of_a_new_one(tmp_path, monkeypatch):
    from zoo.train import hold_run_dir
    monkeypatch.chdir(tmp_path)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    # "" held the current directory; a file was "[Errno 17] File exists"; 5 was os.fspath's
    # TypeError; without run_dir, a missing name was "'NoneType' object has no attribute
    # 'replace'"
    for bad, message in (("", r"^run_dir must be the path of a run directory .* "
                              r"Received: run_dir=''$"),
                         (5, r"Received: run_dir=5$"),
                         (a_file, rf"^run_dir must be a directory, and {a_file} is a file")):
        with pytest.raises(ValueError, match=message):
            with hold_run_dir(bad):
                pass
    for kwargs, received in (({"dataset_name": "digits"}, "model_name=None"),
                             ({"model_name": "lenet5", "dataset_name": 5}, "dataset_name=5")):
        with pytest.raises(ValueError, match=rf"^hold_run_dir: model_name and dataset_name must "
                                             rf"be non-empty strings .* Received: {received}$"):
            with hold_run_dir(None, **kwargs):
                pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    with hold_run_dir(None, model_name="lenet5", dataset_name="digits") as path:
        assert path.startswith(str(tmp_path / "runs" / "lenet5-digits-"))


def test_feature_extractor_names_a_builder_option_it_does_not_take():
    from zoo.features import feature_extractor
    # was "resnet18() got an unexpected keyword argument 'foo'"
    with pytest.raises(TypeError, match=r"^resnet18 takes no argument\(s\) 'foo'; its "
                                        r"arguments: input_shape, num_classes, "):
        feature_extractor("resnet18", input_shape=(64, 64, 3), foo=1)


def test_an_unknown_model_that_is_no_string_gets_no_suggestions():
    # None was "Unknown model None. Did you mean: unet, googlenet, lenet5?"
    for bad in (None, 5):
        with pytest.raises(ValueError, match=rf"^Unknown model {bad!r}. Known models: alexnet, "):
            get_model(bad)


def test_data_helpers_refuse_arguments_of_another_kind():
    import numpy as np

    from zoo import data
    from zoo.train import set_batch_norm_momentum
    # were AttributeErrors: "'str' object has no attribute 'info'", "... 'with_options'",
    # "... 'get'", "... '_flatten_layers'"
    with pytest.raises(ValueError, match=r"^train_class_counts takes a zoo.data.Splits "
                                         r"\(load_splits\(...\)\). Received: str$"):
        data.train_class_counts("digits")
    for helper in (data.without_autotune, data.with_default_autotune):
        with pytest.raises(ValueError, match=r"^without_autotune takes a tf.data.Dataset. "
                                             r"Received: ndarray$"):
            helper(np.zeros(3))
    with pytest.raises(ValueError, match=r"^info must be a dict of DatasetInfo fields. "
                                         r"Received: str$"):
        data.check_info_fields("digits")
    with pytest.raises(ValueError, match=r"^set_batch_norm_momentum takes a keras.Model. "
                                         r"Received: 'googlenet'$"):
        set_batch_norm_momentum("googlenet")
    # NumPy's booleans are booleans for shuffle, as for autotune
    assert data.load("digits", "test", shuffle=np.bool_(False))[1].name == "digits"


def test_plateau_schedule_and_resolve_jit_compile_check_their_arguments():
    import numpy as np

    from zoo.train import PlateauSchedule, resolve_jit_compile
    # monitor "" or 5 were taken (and never found in the logs), done=5 was "'int' object is
    # not iterable"; resolve_jit_compile took 1 and 0.0 for True and False (zoo.serving.load
    # refuses them)
    for bad in ("", 5):
        with pytest.raises(ValueError, match=rf"^monitor must be the name of a logged "
                                             rf"quantity, .* Received: monitor={bad!r}$"):
            PlateauSchedule(bad, "min", 0.1)
    for bad in (5, ["x"], "0.5"):
        with pytest.raises(ValueError, match=rf"^done must be a list of the monitored values "
                                             rf".* Received: done={re.escape(repr(bad))}$"):
            PlateauSchedule("val_loss", "min", 0.1, done=bad)
    schedule = PlateauSchedule("val_loss", "min", 0.1, done=(1.0, None, np.float32(2.0)))
    assert (schedule.best, schedule.wait) == (1.0, 1)
    for bad in (1, 0.0):
        with pytest.raises(ValueError, match=rf"^jit_compile must be 'auto', True or False. "
                                             rf"Received: jit_compile={bad!r}$"):
            resolve_jit_compile(bad)
    assert resolve_jit_compile(np.bool_(False)) is False


def test_set_and_fix_must_be_dicts_that_do_not_overlap():
    from tuning.hypermodels import LeNet5HyperModel, check_set_fix
    # 5 was "'int' object is not iterable", "x" was taken for no names; a hyperparameter
    # both narrowed and fixed was fixed, silently
    with pytest.raises(ValueError, match=r"^set must be a dict of hyperparameter names to "
                                         r"values, .* Received: set=5$"):
        check_set_fix(5, None)
    with pytest.raises(ValueError, match=r"^fix must be a dict .* Received: fix='x'$"):
        check_set_fix(None, "x")
    with pytest.raises(ValueError, match=r"^hyperparameter 'lr' is given to both fix"):
        LeNet5HyperModel(set={"lr": "1e-3:1e-2"}, fix={"lr": 0.001})
    with pytest.raises(ValueError, match=r"^set must be a dict .* Received: set='lr=0.1'$"):
        LeNet5HyperModel(set="lr=0.1")


def test_preprocess_refuses_what_is_no_array_of_pixels():
    import numpy as np

    from zoo import data
    info = data.load_splits("digits").info
    # None was TensorFlow's "Attempt to convert a value (None) with an unsupported type",
    # "x" its UnimplementedError "Cast string to float is not supported", [[1]] its
    # "'images' must have either 3 or 4 dimensions"
    for bad, received in ((None, "None"), ("x", r"string of shape \(\)"),
                          ([[1]], r"int32 of shape \(1, 1\)"),
                          (np.zeros((1, 8, 8, 1), bool), r"bool of shape \(1, 8, 8, 1\)")):
        with pytest.raises(ValueError, match=rf"^preprocess: images must be raw pixels, an "
                                             rf"array of numbers \[N, H, W, C\] or \[H, W, C\]. "
                                             rf"Received: {received}$"):
            data.preprocess(bad, info)
    assert data.preprocess(np.zeros((8, 8, 1), "uint8"), info).shape == (32, 32, 1)


def test_load_model_compile_must_be_a_boolean(tmp_path):
    path = tmp_path / "lenet5.keras"
    zoo.lenet5().save(path)
    # compile="no" compiled the model (a truthy string)
    with pytest.raises(ValueError, match=r"^load_model: compile must be True or False. "
                                         r"Received: compile='no'$"):
        zoo.load_model(path, compile="no")
    assert zoo.load_model(path, compile=False).name == "lenet5"


def test_helpers_refuse_what_is_not_their_object():
    import sys

    import tuning.search  # noqa: F401  (the name is the function; the module is this one)
    from zoo.serving import engine_text
    trials_table = sys.modules["tuning.search"].trials_table
    # were AttributeErrors ("'str' object has no attribute 'runtime'", "... 'start_order'")
    # and os.fspath's "expected str, bytes or os.PathLike object, not int"
    with pytest.raises(TypeError, match=r"^engine_text takes a zoo.serving.Servable. "
                                        r"Received: str$"):
        engine_text("saved_models/lenet5")
    with pytest.raises(ValueError, match=r"^trials_table takes a keras_tuner oracle "
                                         r"\(tuner.oracle\). Received: NoneType$"):
        trials_table(None)
    with pytest.raises(TypeError, match=r"^plot: path must be the path of a .png file. "
                                        r"Received: path=5$"):
        zoo.profile(zoo.lenet5()).plot(5)


def test_gpu_check_names_a_directory_without_a_saved_model(tmp_path):
    from zoo.export import gpu_check
    # a model directory was "[Errno 2] No such file or directory: '.../saved_model.pb'",
    # a file NotADirectoryError, None os.fspath's TypeError
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for bad in (tmp_path, a_file):
        with pytest.raises(FileNotFoundError, match=rf"^gpu_check: {bad} holds no "
                                                    rf"saved_model.pb; pass a SavedModel "
                                                    rf"directory"):
            gpu_check(bad)
    with pytest.raises(TypeError, match=r"^gpu_check: saved_model_dir must be the path of a "
                                        r"SavedModel directory. Received: saved_model_dir=None$"):
        gpu_check(None)


def test_search_takes_numpy_counts_and_refuses_export_options_without_export(tmp_path):
    import sys

    import numpy as np

    import tuning.search  # noqa: F401
    search = sys.modules["tuning.search"].search
    # max_trials=np.int64(1) was "max_trials must be a positive integer"; export_name and
    # export_lite=False were ignored without export=True (zoo tune refuses --no-lite and
    # --export-dir without --export)
    counts = dict(max_trials=np.int64(1), epochs=np.int32(1), executions_per_trial=np.int64(1),
                  max_consecutive_failed_trials=np.int64(3))
    with pytest.raises(ValueError, match=r"^export_dir, export_name and export_lite=False go "
                                         r"with export=True. Received: export=False, "
                                         r"export_name='best'$"):
        search("lenet5", "digits", directory=tmp_path, export_name="best", **counts)
    # so was export_dir
    with pytest.raises(ValueError, match=r"Received: export=False, export_dir='sm'$"):
        search("lenet5", "digits", directory=tmp_path, export_dir="sm", **counts)
    with pytest.raises(ValueError, match=r"Received: export=False, export_lite=False$"):
        search("lenet5", "digits", directory=tmp_path, export_lite=False, **counts)
    # cv=np.int64(3) was "cv must be None or an integer >= 2"
    with pytest.raises(ValueError, match=r"^cv \(cross-validation\) works with the random, "):
        search("lenet5", "digits", directory=tmp_path, cv=np.int64(3), **counts)
    assert list(tmp_path.iterdir()) == []
