"""Bad input to the builders, zoo.layers, zoo.tables, zoo.profile, zoo.features, zoo.weights
and the list/table/summary/train commands: a ValueError or TypeError that names the value
and what is allowed (one line at the CLI, exit code 2), never a deep Keras/TensorFlow error,
a hang or a silent wrong result."""
import os
import re
import time
import warnings
import zipfile

import numpy as np
import pytest

import zoo
from zoo import cli
from zoo.layers import LocalResponseNormalization, PartialConv2D, RBFOutput, Subsampling


def one_error_line(capsys, argv):
    """Run ``zoo argv`` in this process: its exit code and its only stderr line."""
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return code, err[0]


# ---------------------------------------------------------------------------
# Builders


@pytest.mark.parametrize("builder, shape", [("alexnet", (67, 67, 1)), ("googlenet", (65, 65, 1)),
                                            ("unet", (64, 64, 1))])
@pytest.mark.parametrize("rate", ["0.5", None, float("nan"), True, 1])
def test_a_dropout_rate_that_is_no_number_in_0_1_is_named(builder, shape, rate):
    # alexnet's was a TypeError: "'<=' not supported between instances of 'int' and 'str'"
    extra = {"padding": "same"} if builder == "unet" else {}
    with pytest.raises(ValueError, match=rf"^{builder}: dropout must be a number in \[0, 1\)\. "
                                         rf"Received: dropout={re.escape(repr(rate))}$"):
        zoo.get_model(builder, input_shape=shape, dropout=rate, **extra)


def test_numpy_integers_are_integers_in_input_shape_and_unet_num_classes():
    # input_shape=np.array([32, 32, 1]) was refused as not "three positive integers", and
    # unet's num_classes=np.int64(2) as not "an integer >= 1" (the classifiers took it).
    model = zoo.lenet5(input_shape=np.array([32, 32, 1]))
    assert tuple(model.input_shape) == (None, 32, 32, 1)
    assert all(type(d) is int for d in model.input_shape[1:])
    seg = zoo.unet(num_classes=np.int64(3), input_shape=(16, 16, 1), padding="same", depth=2,
                   base_filters=np.int32(2))
    assert seg.output_shape == (None, 16, 16, 3)


def test_lenet5_names_a_variant_of_another_type():
    # was TypeError: unhashable type: 'list'
    with pytest.raises(ValueError, match=r"lenet5: variant must be one of \['classic', "
                                         r"'modern'\]. Received: variant=\['modern'\]"):
        zoo.lenet5(variant=["modern"])


def test_unet_with_a_large_depth_names_the_nearest_valid_size_at_once():
    # The search for the nearest valid size tried every size up to 2**depth: depth=100
    # never returned.
    from zoo.models.unet import output_size, unet_levels
    smallest = 2 ** 60 * 8 + 4 * (2 ** 60 - 1)   # 8 pixels into the lowest level
    levels = unet_levels(60, 64)
    assert output_size(smallest, levels) == 4 and output_size(smallest - 2 ** 60, levels) is None
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"unet: input height 572 is not valid for "
                                         r"padding='valid' with depth=60: .* nearest valid: "
                                         rf"{smallest}\. "):
        zoo.unet(depth=60)
    with pytest.raises(ValueError, match=rf"nearest valid: {2 ** 40}\. Received: input_shape="
                                         r"\(64, 64, 1\)"):
        zoo.unet(depth=40, padding="same", input_shape=(64, 64, 1))
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_unet_nearest_valid_sizes_are_those_a_search_finds(padding, depth):
    from zoo import input_sizes as U   # (U-Net's size arithmetic)
    levels = U.unet_levels(depth, 8)
    valid = [s for s in range(1, 800) if U.output_size(s, levels, padding) is not None]
    for size in range(1, 600):
        below = max((s for s in valid if s < size), default=None)
        above = min(s for s in valid if s > size)
        assert U._nearest_valid(size, levels, padding) == (below, above), size


def test_a_model_too_large_for_the_memory_names_the_arguments():
    # was numpy's MemoryError (or TensorFlow's ResourceExhaustedError, "OOM when allocating
    # tensor"), naming no argument
    with pytest.raises(ValueError, match=r"^lenet5: the model is too large to build in this "
                                         r"machine's memory \(MemoryError: Unable to allocate .*"
                                         r"Received: num_classes=100000000000$"):
        zoo.get_model("lenet5", num_classes=10 ** 11)


# ---------------------------------------------------------------------------
# zoo.layers


@pytest.mark.parametrize("make, message", [
    (lambda: Subsampling(0), r"Subsampling: pool_size must be an integer >= 1. Received: "
                             r"pool_size=0"),
    (lambda: Subsampling(2.7), r"pool_size must be an integer >= 1. Received: pool_size=2.7"),
    (lambda: Subsampling("a"), r"pool_size must be an integer >= 1. Received: pool_size='a'"),
    (lambda: PartialConv2D([]), r"PartialConv2D: connections must be a non-empty sequence.* "
                                r"Received: connections=\[\]"),
    (lambda: PartialConv2D([[0], [-1]]), r"Received: connections=\[\[0\], \[-1\]\]"),
    (lambda: PartialConv2D("abc"), r"Received: connections='abc'"),
    (lambda: PartialConv2D([[0]], kernel_size=0), r"PartialConv2D: kernel_size must be an "
                                                  r"integer >= 1. Received: kernel_size=0"),
    (lambda: PartialConv2D([[0]], activation="nope"), r"PartialConv2D: unknown activation "
                                                      r"'nope'; use a Keras activation name"),
    (lambda: RBFOutput(0), r"RBFOutput: units must be an integer >= 1. Received: units=0"),
    (lambda: RBFOutput(3, seed=-1), r"RBFOutput: seed must be an integer from 0 to 4294967295. "
                                    r"Received: seed=-1"),
    (lambda: RBFOutput(3, trainable_centers="no"), r"trainable_centers must be True or False"),
    (lambda: LocalResponseNormalization(depth_radius=-1),
     r"LocalResponseNormalization: depth_radius must be an integer >= 0. Received: "
     r"depth_radius=-1"),
    (lambda: LocalResponseNormalization(bias=0, alpha=0),
     r"bias must be a finite number > 0. Received: bias=0"),
    (lambda: LocalResponseNormalization(beta="x"), r"beta must be a finite number. Received: "
                                                   r"beta='x'"),
    (lambda: LocalResponseNormalization(alpha=float("nan")), r"alpha must be a finite number "
                                                             r">= 0. Received: alpha=nan"),
    (lambda: LocalResponseNormalization(beta=float("inf")), r"beta must be a finite number. "
                                                            r"Received: beta=inf"),
])
def test_custom_layers_name_a_bad_argument(make, message):
    # were: a TensorFlow InvalidArgumentError at the first call (pool_size 0, depth_radius
    # -1), "max() arg is an empty sequence", ZeroDivisionError, "invalid literal for int()",
    # "negative dimensions are not allowed", a silently truncated pool_size, a negative
    # connection index taken as the last map, inf from bias=0
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("layer, what", [(Subsampling(100, name="s"), "pool_size=100"),
                                         (PartialConv2D([[0]], kernel_size=9, name="p"),
                                          "kernel_size=9")])
def test_custom_layers_refuse_a_window_larger_than_the_input(layer, what):
    # Subsampling(100) on 8x8 returned an empty (1, 0, 0, 6) tensor; PartialConv2D with a 9x9
    # kernel a (1, 8, 8, 6) one
    with pytest.raises(ValueError, match=rf"its .* window \({what}\) needs 4-D input .* "
                                         r"Received: input_shape=\(1, 8, 8, 6\)"):
        layer(np.ones((1, 8, 8, 6), "float32"))


# ---------------------------------------------------------------------------
# zoo.tables, zoo.profile, zoo.features


def test_layer_table_refuses_a_forced_family_the_model_is_not_of():
    # family="resnet" on LeNet-5 was Keras' "No such layer: conv1_conv"; "unet" or
    # "xception" returned an empty table
    for family in ("resnet", "unet", "xception"):
        with pytest.raises(ValueError, match=rf"layer_table: 'lenet5' is not a {family} model "
                                             r".*its family: lenet\). Allowed: family=None .* "
                                             rf"or 'lenet'. Received: family='{family}'"):
            zoo.layer_table(zoo.lenet5(), family=family)
    assert list(zoo.layer_table(zoo.lenet5(), family="lenet")["Layer"])[:2] == ["In", "C1"]


def test_to_text_of_a_table_without_rows_and_of_no_table():
    from zoo import tables
    from zoo.registry import model_info_table
    # tabulate's IndexError: list assignment index out of range
    text = tables.to_text(model_info_table("nomatch"))
    assert text.splitlines()[0].split("|")[1].strip() == "name"
    with pytest.raises(TypeError, match="to_text: expected a pandas.DataFrame. Received: list"):
        tables.to_text([1, 2])


def test_zoo_list_says_when_no_model_matches(capsys):
    # markdown: "zoo: error: list assignment index out of range" (exit 1); csv: a header
    # and exit 0
    for fmt in ("markdown", "csv"):
        code, line = one_error_line(capsys, ["list", "--format", fmt, "Res*"])
        assert code == 2
        assert line.startswith("zoo: error: no registered model matches 'Res*' (a "
                               "shell-style, case-sensitive pattern such as 'resnet*'). Known "
                               "models: alexnet, ")


def test_model_table_refuses_a_single_name_string():
    # model_table("lenet5") looked up 'l': "Unknown model 'l'"
    from zoo.profile import model_table
    for names in ("lenet5", 5):
        with pytest.raises(TypeError, match=rf"model_table: names must be a list of registered "
                                            rf"model names .* Received: names={names!r}"):
            model_table(names)


def test_feature_functions_refuse_what_is_not_a_model_with_a_graph():
    import keras
    from zoo.features import feature_extractor, feature_info, feature_layers
    # were AttributeErrors: "'int' object has no attribute 'inputs'", "Sequential model
    # 'sequential' has no defined inputs yet."
    with pytest.raises(ValueError, match=r"^feature_info takes keras.Models whose outputs are "
                                         r"defined: .* Received: int object$"):
        feature_info(5)
    with pytest.raises(ValueError, match=r"^feature_extractor takes keras.Models .* Received: "
                                         r"'x'$"):
        feature_layers("x")
    with pytest.raises(ValueError, match=r"Received: Sequential model 'unbuilt', not built yet"):
        feature_extractor(keras.Sequential([keras.layers.Dense(3)], name="unbuilt"))


# ---------------------------------------------------------------------------
# Model and weights files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    with zipfile.ZipFile(d / "no_config.keras", "w") as archive:
        archive.writestr("notes.txt", "not a model")
    zoo.lenet5().save_weights(d / "lenet5.weights.h5")
    data = (d / "lenet5.weights.h5").read_bytes()
    (d / "truncated.weights.h5").write_bytes(data[:len(data) // 2])
    zoo.resnet18(input_shape=(32, 32, 1), num_classes=10).save_weights(d / "r18.weights.h5")
    return d


def test_a_zip_without_config_json_is_no_keras_file(files):
    # was KeyError: "There is no item named 'config.json' in the archive"
    path = files / "no_config.keras"
    with pytest.raises(ValueError, match=r"no_config.keras is not a Keras model file: a zip "
                                         r"archive without the config.json"):
        zoo.load_model(path)
    with pytest.raises(ValueError, match=r"no_config.keras is not a Keras model file"):
        zoo.lenet5(weights=path)
    with pytest.raises(TypeError, match=r"load_model: path must be the path of a .keras file or "
                                        r"a run directory. Received: 5"):
        zoo.load_model(5)


def test_a_truncated_weights_file_is_named(files):
    # was h5py's OSError "Unable to synchronously open file (truncated file: ...)", naming
    # no file (exit code 1 at zoo train --weights)
    with pytest.raises(ValueError, match=r"lenet5: .*truncated.weights.h5 is not a weights "
                                         r"file: .*\(an incomplete download\?\)"):
        zoo.lenet5(weights=files / "truncated.weights.h5")


def test_weights_that_do_not_fit_raise_without_a_page_of_keras_warnings(files):
    # Keras warned "Skipping nested container ..." once per layer before the error: at
    # zoo train --weights, 11 lines on stderr before "zoo: error: ..."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=r"lenet5: the weights in .*r18.weights.h5 do not "
                                             r"fit this model"):
            zoo.lenet5(weights=files / "r18.weights.h5")
    assert [str(w.message) for w in caught] == []
    assert zoo.lenet5(weights=files / "lenet5.weights.h5").name == "lenet5"


# ---------------------------------------------------------------------------
# zoo train


@pytest.mark.parametrize("argv, expected", [
    # "" was taken for the default: a whole training run on digits
    (["--dataset", ""], "zoo: error: Unknown dataset ''. Known datasets: digits, "),
    # folder: with no path read the current directory
    (["--dataset", "folder:"], "zoo: error: folder:PATH needs the path of the dataset's "
                               "folder, e.g. folder:data/pets. Received: 'folder:'"),
    (["--run-dir", ""], "zoo: error: --run-dir must be the path of a run directory (a new "
                        "one, or a killed run's to resume). Received: --run-dir=''"),
])
def test_train_refuses_empty_names(capsys, argv, expected):
    code, line = one_error_line(capsys, ["train", "lenet5", "--epochs", "1", *argv])
    assert code == 2 and line.startswith(expected)


def test_tune_refuses_an_empty_dataset_name(capsys, tmp_path):
    # "" was taken for the default, as zoo train's was: a whole search on digits
    code, line = one_error_line(capsys, ["tune", "lenet5", "--dataset", "", "--tuner", "random",
                                         "--max-trials", "1", "--epochs", "1", "--directory",
                                         str(tmp_path / "runs")])
    assert code == 2 and line.startswith("zoo: error: Unknown dataset ''. Known datasets: ")
    assert not (tmp_path / "runs").exists()


def test_train_refuses_a_file_as_run_directory(capsys, tmp_path):
    # was "[Errno 17] File exists: '...'" once the data was loaded and the model built
    path = tmp_path / "a_file"
    path.write_text("x")
    code, line = one_error_line(capsys, ["train", "lenet5", "--epochs", "1", "--run-dir",
                                         str(path)])
    assert code == 2
    assert line == (f"zoo: error: --run-dir must be a directory, and {path} is a file; use "
                    f"another run directory.")
    from zoo.train import fit
    with pytest.raises(ValueError, match="run_dir must be a directory, and .* is a file"):
        fit(zoo.lenet5(), "digits", epochs=1, run_dir=path)
    assert path.read_text() == "x"


@pytest.mark.parametrize("base_dir", ["a_file", "a_file/sub"])
def test_train_export_refuses_a_base_dir_it_cannot_export_to_before_training(capsys, tmp_path,
                                                                            base_dir):
    # was refused by the export after the whole training, the run's path never printed
    (tmp_path / "a_file").write_text("x")
    base = tmp_path / base_dir
    code, line = one_error_line(capsys, ["train", "lenet5", "--epochs", "1", "--export",
                                         "--base-dir", str(base), "--run-dir",
                                         str(tmp_path / "run")])
    assert code == 2
    assert line == (f"zoo: error: {tmp_path / 'a_file'} is a file, not a directory: the export "
                    f"goes to {base / 'lenet5'}/<version>; pass another base_dir (--base-dir) "
                    f"or name (--name).")
    assert sorted(os.listdir(tmp_path)) == ["a_file"]     # nothing trained


def test_train_refuses_a_run_directory_it_cannot_write_in(tmp_path, monkeypatch):
    from conftest import deny_writes
    from zoo.common import check_run_dir
    deny_writes(monkeypatch, tmp_path)
    for run_dir in (tmp_path, tmp_path / "new" / "run"):
        with pytest.raises(ValueError) as exc:
            check_run_dir(run_dir, "--run-dir")
        assert str(exc.value) == (f"--run-dir {run_dir} cannot be written: no write "
                                  f"permission on {tmp_path}; use another run directory.")
