"""zoo.serving: loading exports, the inputs Servable.predict accepts, the LiteRT and
TensorFlow runtimes, XLA at load, zoo predict."""

import io
import json
import os
import re
import time
import warnings
import types

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import zoo  # noqa: E402
from zoo import serving  # noqa: E402
from zoo.data import DatasetInfo, digits_arrays, preprocess  # noqa: E402

INFO = DatasetInfo(name="digits", task="classification", num_classes=10,
                   labels=[f"digit {i}" for i in range(10)], input_shape=(32, 32, 1),
                   mean=[80.0], std=[100.0], raw_shape=(8, 8, 1))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """lenet5 (modern) exported twice under base/lenet5 with different weights."""
    base = tmp_path_factory.mktemp("models")
    keras_models = {}
    for version, seed in ((1, 1), (2, 2)):
        tf.keras.utils.set_random_seed(seed)
        model = zoo.lenet5(variant="modern")
        zoo.export(model, base, info=INFO)
        keras_models[version] = model
    return base, keras_models


@pytest.fixture(scope="module")
def servable(exported):
    base, _ = exported
    return serving.load(base / "lenet5" / "2", jit_compile=False)


def expected(model, raw):
    return np.asarray(model(preprocess(np.asarray(raw, "float32"), INFO)))


def test_load_model_dir_takes_the_newest_version(exported, servable):
    base, models = exported
    newest = serving.load(base / "lenet5", jit_compile=False)
    assert (newest.name, newest.version) == ("lenet5", 2)
    assert servable.labels == [f"digit {i}" for i in range(10)]
    assert servable.info["task"] == "classification"
    assert servable.signature == {
        "name": "serving_default",
        "inputs": {"images": {"dtype": "float32", "shape": [None, None, None, 1]}},
        "outputs": {"probabilities": {"dtype": "float32", "shape": [None, 10]},
                    "classes": {"dtype": "int64", "shape": [None]}}}
    x = digits_arrays("test")[0][:3]
    np.testing.assert_allclose(newest.predict(x)["probabilities"], expected(models[2], x),
                               atol=1e-5)
    first = serving.load(base / "lenet5" / "1", jit_compile=False)
    np.testing.assert_allclose(first.predict(x)["probabilities"], expected(models[1], x),
                               atol=1e-5)


def test_a_version_spelt_with_leading_zeros_loads_as_its_number(exported, tmp_path):
    """TensorFlow Serving reads a version directory 00000123 (its example models' name) as
    version 123, and so does list_versions: loading the model directory looked for 123/,
    which is not there ("SavedModel file does not exist")."""
    import shutil
    base, models = exported
    shutil.copytree(base / "lenet5" / "1", tmp_path / "lenet5" / "1")
    shutil.copytree(base / "lenet5" / "2", tmp_path / "lenet5" / "00000123")
    loaded = serving.load(tmp_path / "lenet5", jit_compile=False)
    assert (loaded.name, loaded.version, loaded.path) == (
        "lenet5", 123, str(tmp_path / "lenet5" / "00000123"))
    x = digits_arrays("test")[0][:2]
    np.testing.assert_allclose(loaded.predict(x)["probabilities"], expected(models[2], x),
                               atol=1e-5)
    # The version's own spelling wins where both are there.
    shutil.copytree(base / "lenet5" / "1", tmp_path / "lenet5" / "123")
    assert serving.load(tmp_path / "lenet5").path == str(tmp_path / "lenet5" / "123")


def test_an_empty_saved_model_pb_is_named_so(tmp_path):
    """As a copy that has just begun leaves it (TensorFlow: "requires a `tags=` argument if
    there is more than one MetaGraph ... there are 0 MetaGraphs")."""
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError) as info:
        serving.load(tmp_path / "m")
    assert str(info.value) == (f"the SavedModel in {tmp_path / 'm' / '1'} could not be "
                               f"loaded: saved_model.pb is empty (0 bytes; a copy not "
                               f"finished?)")


def test_missing_directories_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such SavedModel directory"):
        serving.load(tmp_path / "nothing")
    (tmp_path / "empty" / ".tmp-1-x").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no SavedModel"):
        serving.load(tmp_path / "empty")


def test_a_base_dir_a_run_dir_and_files_are_named_with_what_to_load(exported, tmp_path):
    base, _ = exported
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"It is a base directory of models (lenet5): load one of them "
            f"({base / 'lenet5'}).")):
        serving.load(base)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"PK")
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"{run} holds no SavedModel: expected saved_model.pb in it or integer version "
            f"directories (1/, 2/, ...) holding one. It is a training run directory: export "
            f"it first (zoo export {run}, or zoo.export in Python) and load the export.")):
        serving.load(run)
    # a file was "no such SavedModel directory"
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"{run / 'model.keras'} is a Keras model file, not a SavedModel directory: "
            f"export it first (zoo export {run / 'model.keras'}")):
        serving.load(run / "model.keras")
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"{base / 'lenet5' / '1' / 'saved_model.pb'} is a file, not a SavedModel "
            f"directory.")):
        serving.load(base / "lenet5" / "1" / "saved_model.pb")


def test_uint8_float_single_image_and_greyscale_forms_agree(servable):
    rng = np.random.RandomState(0)
    batch = rng.randint(0, 256, (5, 8, 8, 1)).astype("uint8")
    ref = servable.predict(batch.astype("float32"))
    assert ref["probabilities"].shape == (5, 10) and ref["classes"].shape == (5,)
    for form in (batch, batch.astype("float64"), batch.astype("int32"), list(batch),
                 batch[..., 0], batch.tolist()):
        np.testing.assert_allclose(servable.predict(form)["probabilities"],
                                   ref["probabilities"], atol=1e-6)
    single = servable.predict(batch[2])  # [H, W, C] -> a batch of one
    np.testing.assert_allclose(single["probabilities"], ref["probabilities"][2:3], atol=1e-6)
    np.testing.assert_allclose(servable.predict(batch[2, ..., 0])["probabilities"],
                               ref["probabilities"][2:3], atol=1e-6)
    chunked = servable.predict(batch, batch_size=2)
    np.testing.assert_allclose(chunked["probabilities"], ref["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(chunked["classes"], ref["classes"])


def test_files_bytes_and_mixed_sizes(servable, tmp_path):
    rng = np.random.RandomState(1)
    small = rng.randint(0, 256, (8, 8)).astype("uint8")
    large = rng.randint(0, 256, (20, 12)).astype("uint8")
    png_small, png_large = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(small).save(png_small)
    Image.fromarray(large).save(png_large)
    # An RGB JPEG is converted to the model's one channel on decoding, as the training
    # pipeline of a folder dataset decodes it (tests/test_skew.py).
    rgb = rng.randint(0, 256, (16, 16, 3)).astype("uint8")
    jpeg = tmp_path / "c.jpg"
    Image.fromarray(rgb).save(jpeg, quality=95)
    from zoo.data import _decode
    grey_jpeg = _decode(tf.constant(str(jpeg)), 1).numpy()

    out = servable.predict([png_small, str(png_large), jpeg])
    assert out["probabilities"].shape == (3, 10)
    for i, array in enumerate([small[..., None], large[..., None], grey_jpeg]):
        np.testing.assert_allclose(out["probabilities"][i],
                                   servable.predict(array)["probabilities"][0], atol=1e-6)
    np.testing.assert_allclose(servable.predict(png_small.read_bytes())["probabilities"],
                               out["probabilities"][:1], atol=1e-6)
    np.testing.assert_allclose(servable.predict(str(png_small))["probabilities"],
                               out["probabilities"][:1], atol=1e-6)


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 8, 8, 3)), r"takes images with 1 channel\(s\); received 3"),
    (np.zeros((1, 2, 8, 8, 1)), r"expected images of shape \[batch, height, width, 1\]"),
    (np.zeros((0, 8, 8, 1)), "empty"),
    ([], "empty list"),
    (np.array([["a", "b"]]), r"pixel values must be numbers \(integers or floats\). "
                             r"Received strings \(dtype <U1\).$"),
    (np.array([[b"a"]]), r"Received strings \(dtype \|S1\).$"),
    (np.zeros((1, 2, 2, 1), complex), r"Received dtype complex128.$"),
    (np.zeros((2, 8, 8, 1), bool), "pixel values must be numbers"),
    ([[[[0.0], [True]]]], r"Received booleans \(true or false\) among them"),
    (np.full((1, 8, 8, 1), np.nan), "finite"),
    ([[[0.0]], [[0.0], [1.0]]], r"images must form a regular numeric array \(every image "
     r"the same height, width and channels, every value a number\): images\[1\] is a list "
     r"of 2 where images\[0\] is a list of 1.$"),
    # Where a ragged list is ragged, however deep, and values that are not numbers
    ([np.zeros((4, 4, 1)).tolist(), np.zeros((4, 4, 1)).tolist()[:3] + [[[0]] * 3]],
     r": images\[1\]\[3\] is a list of 3 where images\[0\]\[0\] is a list of 4.$"),
    ([[[[0], [1]], [[2], 3]]], r": images\[0\]\[1\]\[1\] is a number where "
                              r"images\[0\]\[0\]\[0\] is a list of 1.$"),
    ([[[[0], [None]]]], r": images\[0\]\[0\]\[1\]\[0\] is None where "
                        r"images\[0\]\[0\]\[0\]\[0\] is a number.$"),
    ([[[[{}], [{}]]]], r": images\[0\]\[0\]\[0\]\[0\] is a dict where a number is "
                       r"expected.$"),
    (b"not an image", "could not decode"),
    ({"images": 1}, "must be a numpy array"),
])
def test_bad_inputs_raise_clear_errors(servable, images, message):
    with pytest.raises(ValueError, match=message):
        servable.predict(images)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_a_colour_image_for_a_greyscale_model_is_refused_not_read_as_a_batch(servable,
                                                                             channels):
    image = np.zeros((28, 28, channels), np.uint8)
    message = (f"lenet5 takes images with 1 channel(s); received {channels} (array shape "
               f"(28, 28, {channels}), read as one image [height, width, channels]). Convert "
               f"it to greyscale; a batch of greyscale images is [batch, height, width, 1].")
    for form in (image, image.tolist()):
        with pytest.raises(ValueError) as exc:
            servable.predict(form)
        assert str(exc.value) == message
    with pytest.raises(ValueError, match=r"takes images with 1 channel\(s\); received "
                                         f"{channels}"):
        servable.predict([image])
    # A batch [N, H, W] of greyscale images whose width is not 2-4 is still one.
    assert servable.predict(np.zeros((28, 28, 5), np.uint8))["probabilities"].shape == (28, 10)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
def test_top_k_takes_a_positive_integer(servable, k):
    probabilities = servable.predict(np.zeros((2, 8, 8, 1)))["probabilities"]
    with pytest.raises(ValueError, match=f"k must be a positive integer. Received: {k!r}"):
        servable.top_k(probabilities, k)
    assert [len(row) for row in servable.top_k(probabilities, np.int64(2))] == [2, 2]
    assert [len(row) for row in servable.top_k(probabilities, 50)] == [10, 10]


def test_top_k_ranks_many_images_a_block_of_rows_at_a_time(servable, monkeypatch):
    # One argsort of every row held a negated copy and an int64 index of the whole [N, K]
    # array at once (zoo predict of 10,000 images of 1,000 classes: 120 MB more).
    probabilities = np.random.default_rng(0).random((10, 10))
    probabilities[:, 3] = probabilities[:, 7]   # ties rank the lower class first
    expected = np.argsort(-probabilities, axis=-1, kind="stable")[:, :4]
    sorted_rows, argsort = [], np.argsort

    def counted(a, *args, **kwargs):
        sorted_rows.append(len(a))
        return argsort(a, *args, **kwargs)

    monkeypatch.setattr(serving, "_TOP_K_ROWS", 3)
    monkeypatch.setattr(serving.np, "argsort", counted)
    ranked = servable.top_k(probabilities, 4)
    assert sorted_rows == [3, 3, 3, 1]
    assert [[label for label, _ in row] for row in ranked] == [[f"digit {j}" for j in row]
                                                                     for row in expected]
    assert [[p for _, p in row] for row in ranked] == [
        [float(probabilities[i, j]) for j in row] for i, row in enumerate(expected)]
    assert servable.top_k(np.zeros((0, 10)), 2) == []


@pytest.mark.parametrize("shape", [(10,), (1, 4, 4, 10), (2, 0)])
def test_top_k_names_probabilities_that_are_not_n_by_k(servable, shape):
    # (one image's row, a segmentation model's [N, H, W, K]: an IndexError and "The truth
    # value of an array ... is ambiguous" before)
    with pytest.raises(ValueError, match=re.escape(
            f"top_k takes class probabilities [N, K] (a classifier's "
            f"predict(...)['probabilities']); received an array of shape {shape}.")):
        servable.top_k(np.full(shape, 0.1), 1)


@pytest.mark.parametrize("probabilities", [[["a"] * 10], [[0.1] * 10, [0.1] * 9], None])
def test_top_k_names_probabilities_that_are_not_numbers(servable, probabilities):
    # (strings were numpy's UFuncTypeError, ragged rows its ValueError)
    with pytest.raises(ValueError, match=re.escape(
            f"top_k takes class probabilities [N, K] (a classifier's "
            f"predict(...)['probabilities']), numbers; received {probabilities!r}"[:120])):
        servable.top_k(probabilities, 1)


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "4"])
def test_runtime_for_and_trial_calls_take_a_positive_number_of_images(servable, n):
    # (0 was a "negative shift count", 1.5 an AttributeError, -1 was answered None)
    for method in (servable.runtime_for, servable.trial_calls):
        with pytest.raises(ValueError, match=re.escape(
                f"batch_size must be a positive integer (a number of images). Received: "
                f"{n!r}")):
            method(n)
        method(np.int64(4))   # a NumPy integer (bit_length was an AttributeError)


def test_a_binary_classifiers_sigmoid_unit_ranks_both_classes(tmp_path, capsys):
    """One sigmoid unit is P(class 1) (its ``classes`` output reads it so); top_k and zoo
    predict named it after class 0 ("cat 1.0000" for a dog)."""
    import keras
    from zoo.cli import main
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", kernel_initializer=
                                                   "ones")(keras.layers.Flatten()(inputs)),
                        name="binary")
    info = DatasetInfo(name="pets", task="classification", num_classes=2,
                       labels=["cat", "dog"], input_shape=(8, 8, 1), mean=[100.0],
                       std=[100.0])
    path = zoo.export(model, tmp_path, info=info, lite=False)
    s = serving.load(path, jit_compile=False)
    # (x - 100) / 100 summed over 64 pixels: 0 (p = 0.5), -64 (cat) and +64 (dog)
    out = s.predict(np.stack([np.full((8, 8), v, "uint8") for v in (100, 0, 200)]))
    np.testing.assert_array_equal(out["classes"], [0, 0, 1])
    ranked = s.top_k(out["probabilities"], 5)
    assert [[label for label, _ in row] for row in ranked] == [["cat", "dog"], ["cat", "dog"],
                                                               ["dog", "cat"]]
    np.testing.assert_allclose([[p for _, p in row] for row in ranked],
                               [[0.5, 0.5], [1.0, 0.0], [1.0, 0.0]], atol=1e-6)
    Image.fromarray(np.full((8, 8), 200, "uint8")).save(tmp_path / "dog.png")
    assert main(["predict", path, str(tmp_path / "dog.png"), "--format", "jsonl",
                 "--no-xla"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "image": str(tmp_path / "dog.png"), "labels": ["dog", "cat"],
        "probabilities": [1.0, 0.0]}


def test_bad_paths_and_batch_size(servable, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image file"):
        servable.predict(str(tmp_path / "missing.png"))
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ValueError, match="could not decode"):
        servable.predict(text)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        servable.predict(np.zeros((1, 8, 8, 1)), batch_size=0)
    x = np.arange(5 * 8 * 8).reshape(5, 8, 8, 1) % 256
    batches = [idx.tolist() for idx, _ in servable.iter_predict(x, np.int64(2))]
    assert batches == [[0, 1], [2, 3], [4]]   # a NumPy integer (was refused as none)
    np.testing.assert_array_equal(servable.predict(x, batch_size=np.int32(3))["classes"],
                                  servable.predict(x)["classes"])
    with pytest.raises(ValueError, match="unknown signature"):
        servable.predict(np.zeros((1, 8, 8, 1)), signature_name="classify")
    # not a name: a list was a TypeError (unhashable), 0 and False ran the default signature
    for name in (["serving_default"], 0, False, b"serving_default"):
        with pytest.raises(ValueError) as info:
            servable.predict(np.zeros((1, 8, 8, 1)), signature_name=name)
        assert str(info.value) == (f"signature_name must be a signature's name, a string "
                                   f"(None: the default); lenet5 has: serving_default. "
                                   f"Received: {name!r}")


def test_xla_compiled_at_load_matches_the_plain_function(exported, servable):
    base, _ = exported
    compiled = serving.load(base / "lenet5" / "2", jit_compile=True)
    assert compiled.jit_compiled and compiled.jit_timing["compile_seconds"] > 0
    x = np.random.RandomState(2).randint(0, 256, (5, 8, 8, 1))
    # Batches padded to a power of two: XLA compiles at most ~log2(N) batch shapes.
    calls = []
    fn = compiled.function()
    compiled._functions["serving_default"] = lambda images: (calls.append(len(images)),
                                                             fn(images))[1]
    for n in (3, 5):
        got = compiled.predict(x[:n])
        assert got["probabilities"].shape == (n, 10) and got["classes"].shape == (n,)
        np.testing.assert_allclose(got["probabilities"],
                                   servable.predict(x[:n])["probabilities"], atol=1e-5)
        np.testing.assert_array_equal(got["classes"], servable.predict(x[:n])["classes"])
    assert calls == [4, 8]
    x = x[:3]
    # "auto" keeps XLA only where it compiled and was faster on a warm-up batch.
    auto = serving.load(base / "lenet5" / "2", runtime="tensorflow")
    assert auto.jit_compiled or auto.jit_error
    if not auto.jit_compiled:
        assert "plain" in auto.jit_error or "Error" in auto.jit_error
    np.testing.assert_allclose(auto.predict(x)["probabilities"],
                               servable.predict(x)["probabilities"], atol=1e-5)


def test_xla_traces_its_function_once_for_every_batch_and_image_size(exported):
    """The XLA function takes the signature's input spec: batches of other sizes and images
    of other sizes run through one trace (it traced once per batch and image size, each
    trace kept for the servable's life: a server given images of many sizes traced on)."""
    base, _ = exported
    compiled = serving.load(base / "lenet5" / "2", jit_compile=True)
    fn = compiled.function()
    rng = np.random.RandomState(3)
    for n, hw in ((3, (8, 8)), (5, (8, 8)), (3, (12, 10)), (20, (9, 14))):
        assert compiled.predict(rng.randint(0, 256, (n, *hw, 1)))["classes"].shape == (n,)
    assert fn.experimental_get_tracing_count() == 1


class _Pending:
    """An output as a GPU returns it: the call has only queued the work, which ``numpy()``
    waits for."""

    def __init__(self, seconds):
        self.seconds = seconds

    def numpy(self):
        time.sleep(self.seconds)
        return np.zeros(1, "float32")


def test_xla_trial_times_the_results_not_the_launch(exported, monkeypatch):
    # On a GPU a TensorFlow call returns once its kernels are queued: the trial timed the
    # launches. Here the plain function launches at once and computes for 50 ms, the XLA
    # one takes 10 ms in all: XLA is faster, and kept.
    base, _ = exported
    auto = serving.load(base / "lenet5" / "2", jit_compile=False, runtime="tensorflow")
    monkeypatch.setattr(auto, "_plain", lambda name: lambda images: {
        "probabilities": _Pending(0.05)})

    def xla(fn, jit_compile, **kwargs):
        def run(images):
            time.sleep(0.01)
            return {"probabilities": _Pending(0.0)}
        return run

    monkeypatch.setattr(tf, "function", xla)
    auto._compile()
    monkeypatch.undo()
    assert auto.jit_timing["plain_seconds"] >= 0.05
    assert auto.jit_compiled, auto.jit_error


def test_litert_is_the_cpu_default_and_matches_tensorflow(exported, servable):
    base, models = exported
    assert servable.runtime == "litert" and servable.runtime_note is None
    assert not servable.jit_compiled and "LiteRT" in servable.jit_error
    assert "runtime='litert'" in repr(servable)
    plain = serving.load(base / "lenet5" / "2", jit_compile=False, runtime="tensorflow")
    assert plain.runtime == "tensorflow" and "asked for" in plain.runtime_note
    rng = np.random.RandomState(5)
    for x in (rng.randint(0, 256, (5, 8, 8, 1)).astype("uint8"),   # raw digits size
              rng.uniform(0, 255, (3, 32, 32)).astype("float32"),  # model size, no channel
              rng.uniform(0, 255, (1, 13, 21, 1)).astype("float32")):
        for batch_size in (None, 2):
            lite = servable.predict(x, batch_size=batch_size)
            tf_out = plain.predict(x, batch_size=batch_size)
            assert {k: (v.dtype, v.shape) for k, v in lite.items()} == {
                k: (v.dtype, v.shape) for k, v in tf_out.items()}
            np.testing.assert_allclose(lite["probabilities"], tf_out["probabilities"],
                                       atol=1e-5, rtol=0)
            np.testing.assert_array_equal(lite["classes"], tf_out["classes"])
    x = digits_arrays("test")[0][:4]
    np.testing.assert_allclose(servable.predict(x)["probabilities"], expected(models[2], x),
                               atol=1e-5)


@pytest.mark.parametrize("runtime", ["litert", "openvino"])
def test_calls_from_many_threads_agree(exported, runtime):
    from concurrent.futures import ThreadPoolExecutor
    servable = serving.load(exported[0] / "lenet5" / "2", runtime=runtime)
    rng = np.random.RandomState(6)
    batches = [rng.randint(0, 256, (n, 8, 8, 1)).astype("uint8") for n in (1, 3, 7, 2) * 4]
    alone = [servable.predict(b)["probabilities"] for b in batches]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda b: servable.predict(b)["probabilities"], batches))
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)


def test_auto_runtime_times_each_size_class_on_its_runtimes(exported, monkeypatch):
    # _TRIAL_ROUNDS rounds, however quick the calls (test_quick_calls_... has the rest).
    monkeypatch.setattr(serving, "_TRIAL_SECONDS", 0.0)
    base, _ = exported
    auto = serving.load(base / "lenet5" / "2", jit_compile=False)
    lite = serving.load(base / "lenet5" / "2", runtime="litert")
    assert (auto.runtime, auto.runtime_choices, auto.runtime_timing) == ("litert", {}, {})
    assert auto.runtimes == ("litert", "openvino", "tensorflow") and auto.openvino_note is None
    assert (lite.runtimes, lite.runtime_choices, lite.runtime_for(100)) == (
        ("litert",), {}, "litert")
    assert auto.runtime_for(1) is None and auto.runtime_for(serving.LARGE_BATCH) is None
    rng = np.random.RandomState(9)
    x = rng.randint(0, 256, (40, 8, 8, 1)).astype("uint8")
    want = lite.predict(x)
    rounds = serving._TRIAL_ROUNDS
    # Batches of 20 (size class 16): `rounds` rounds of LiteRT, OpenVINO, TensorFlow, two
    # calls each (untimed, timed); then batches of 40 (class 32) the same; then batches of
    # 3 (class 2): LiteRT and OpenVINO only. Every answer agrees.
    order = []
    auto._runners = {k: (lambda k, fn: lambda b: order.append(k) or fn(b))(k, fn)
                     for k, fn in auto._runners.items()}
    for n, calls, size_class, timed in ((20, 3 * 2 * rounds, 16, auto.runtimes),
                                        (40, 3 * 2 * rounds, 32, auto.runtimes),
                                        (3, 2 * 2 * rounds, 2, ("litert", "openvino"))):
        # at most _TRIAL_MAX_ROUNDS rounds; these take _TRIAL_ROUNDS
        assert auto.trial_calls(n) == calls // rounds * serving._TRIAL_MAX_ROUNDS
        del order[:]
        for call in range(calls + 2):
            got = auto.predict(x[:n])
            np.testing.assert_allclose(got["probabilities"], want["probabilities"][:n],
                                       atol=1e-5)
            np.testing.assert_array_equal(got["classes"], want["classes"][:n])
            assert got["classes"].dtype == want["classes"].dtype
            assert (auto.runtime_for(n) is not None) == (call >= calls - 1)
        assert {k: len(v) for k, v in auto.runtime_timing[size_class].items()} == {
            k: rounds for k in timed}
        assert order[:calls] == [r for _ in range(rounds) for r in timed for _ in range(2)]
        assert order[calls:] == [auto.runtime_choices[size_class]] * 2
        assert auto.trial_calls(n) == calls // rounds * serving._TRIAL_MAX_ROUNDS
        assert auto.runtime_for(n) == auto.runtime_choices[size_class]
        assert auto.runtime_choices[size_class] in timed
    assert sorted(auto.runtime_choices) == [2, 16, 32]
    assert all(t > 0 for c in auto.runtime_timing.values() for v in c.values() for t in v)
    assert auto.runtime_for(64) is None and auto.runtime_for(1) is None
    assert f"runtime_choices={auto.runtime_choices!r}" in repr(auto)
    report = auto.runtime_report()
    assert json.loads(json.dumps(report)) == report      # JSON as it is
    assert report["runtime"] == "litert" and report["runtimes"] == list(auto.runtimes)
    assert report["choices"] == {"2-3": auto.runtime_choices[2],
                                 "16-31": auto.runtime_choices[16],
                                 "32-63": auto.runtime_choices[32]}
    assert report["best_ms_per_image"]["2-3"] == {
        r: round(min(v) * 1e3, 3) for r, v in auto.runtime_timing[2].items()}
    assert set(report["best_ms_per_image"]["16-31"]) == set(auto.runtimes)
    assert lite.runtime_report() == {"runtime": "litert", "runtimes": ["litert"],
                                     "choices": {}, "best_ms_per_image": {}}


def test_another_runtime_is_chosen_only_when_clearly_faster():
    choose = serving._choose_runtime
    assert serving._RUNTIME_MARGIN == 0.95
    assert choose({"litert": 10.0, "openvino": 9.6}, "litert") == "litert"      # 4%: a tie
    assert choose({"litert": 10.0, "openvino": 9.4}, "litert") == "openvino"    # 6%
    assert choose({"litert": 10.0, "openvino": 9.4, "tensorflow": 9.0},
                  "litert") == "tensorflow"                                     # the fastest
    assert choose({"litert": 9.0, "openvino": 9.4, "tensorflow": 12.0}, "litert") == "litert"


@pytest.mark.parametrize("seconds_per_call, rounds", [
    (0.01, 3),       # 3 timed calls add up to 0.03 s >= _TRIAL_SECONDS: _TRIAL_ROUNDS
    (0.006, 4),      # 0.018 s after 3, 0.024 s after 4
    (0.0, 30),       # never: _TRIAL_MAX_ROUNDS
])
def test_quick_calls_are_timed_over_more_rounds(exported, monkeypatch, seconds_per_call,
                                                rounds):
    """A trial goes on while a runtime's timed calls add up to less than _TRIAL_SECONDS, up
    to _TRIAL_MAX_ROUNDS rounds: on a clock that each call moves on by a set time."""
    assert (serving._TRIAL_ROUNDS, serving._TRIAL_SECONDS, serving._TRIAL_MAX_ROUNDS) == (
        3, 0.02, 30)
    base, _ = exported
    auto = serving.load(base / "lenet5" / "2", jit_compile=False)
    clock = [0.0]
    monkeypatch.setattr(serving, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    calls = {name: 0 for name in auto.runtimes}

    def timed(name, fn, seconds):
        def run(batch):
            calls[name] += 1
            clock[0] += seconds
            return fn(batch)
        return run
    # OpenVINO's calls take twice LiteRT's: the trial goes on until LiteRT's add up too.
    auto._runners = {k: timed(k, v, seconds_per_call * (2 if k == "openvino" else 1))
                     for k, v in auto._runners.items()}
    x = np.random.RandomState(11).randint(0, 256, (2, 8, 8, 1))
    assert auto.trial_calls(len(x)) == 2 * 2 * serving._TRIAL_MAX_ROUNDS
    made = 0
    while auto.runtime_for(len(x)) is None:
        auto.predict(x)
        made += 1
        assert made <= auto.trial_calls(len(x))
    assert made == 2 * 2 * rounds
    assert calls == {"litert": 2 * rounds, "openvino": 2 * rounds, "tensorflow": 0}
    assert {k: len(v) for k, v in auto.runtime_timing[2].items()} == {
        "litert": rounds, "openvino": rounds}
    assert auto.runtime_choices == {2: "litert"}
    if seconds_per_call:
        assert auto.runtime_report()["best_ms_per_image"]["2-3"] == {
            "litert": round(seconds_per_call / 2 * 1e3, 3),
            "openvino": round(seconds_per_call * 1e3, 3)}


def test_trial_done_needs_every_runtime_timed_long_enough():
    done = serving._trial_done
    assert not done({"litert": [0.01, 0.01], "openvino": [0.01, 0.01]}, 1)  # 2 rounds
    assert done({"litert": [0.01] * 3, "openvino": [0.01] * 3}, 1)
    assert not done({"litert": [0.001] * 3, "openvino": [0.01] * 3}, 1)  # 0.003 s of LiteRT
    assert done({"litert": [0.001] * 3, "openvino": [0.01] * 3}, 8)      # 0.024 s
    assert done({"litert": [1e-6] * 30, "openvino": [1e-6] * 30}, 1)    # the last round


@pytest.mark.parametrize("chosen", ["litert", "openvino", "tensorflow"])
def test_each_size_class_runs_on_the_runtime_that_was_faster(exported, chosen, monkeypatch):
    import time
    monkeypatch.setattr(serving, "_TRIAL_SECONDS", 0.0)   # _TRIAL_ROUNDS rounds
    base, _ = exported
    auto = serving.load(base / "lenet5" / "2", jit_compile=False)
    calls = {name: 0 for name in auto.runtimes}

    def counted(name, fn):
        def run(batch):
            calls[name] += 1
            if name != chosen:
                time.sleep(0.05)   # far above a LeNet-5 batch's few milliseconds
            return fn(batch)
        return run
    auto._runners = {k: counted(k, v) for k, v in auto._runners.items()}
    rounds = serving._TRIAL_ROUNDS
    x = np.random.RandomState(10).randint(0, 256, (serving.LARGE_BATCH, 8, 8, 1))
    while auto.runtime_for(len(x)) is None:
        auto.predict(x)
    assert calls == {"litert": 2 * rounds, "openvino": 2 * rounds, "tensorflow": 2 * rounds}
    assert auto.runtime_choices == {serving.LARGE_BATCH: chosen}
    timing = auto.runtime_timing[serving.LARGE_BATCH]
    assert all(min(timing[k]) > min(timing[chosen]) for k in timing if k != chosen)
    while auto.runtime_for(4) is None:                # batches of 4: LiteRT and OpenVINO
        auto.predict(x[:4])
    small = chosen if chosen != "tensorflow" else "litert"   # both slow: LiteRT stays
    assert auto.runtime_choices == {serving.LARGE_BATCH: chosen, 4: small}
    before = dict(calls)
    auto.predict(x)                                   # a large batch: the chosen runtime
    auto.predict(x[:5])                               # a small one: its class's choice
    auto.predict(x, batch_size=4)                     # small pieces of a large batch too
    assert {k: calls[k] - before[k] for k in calls} == {
        k: (k == chosen) + 5 * (k == small) for k in calls}


def test_openvino_runtime_matches_litert_and_is_left_out_when_it_cannot_run(
        exported, servable, monkeypatch):
    base, _ = exported
    on_ov = serving.load(base / "lenet5" / "2", runtime="openvino")
    assert (on_ov.runtime, on_ov.runtimes, on_ov.runtime_note) == ("openvino", ("openvino",),
                                                                   None)
    assert "OpenVINO" in on_ov.jit_error and on_ov.runtime_for(64) == "openvino"
    x = np.random.RandomState(11).randint(0, 256, (6, 8, 8, 1)).astype("uint8")
    got, want = on_ov.predict(x), servable.predict(x)
    assert {k: (v.dtype, v.shape) for k, v in got.items()} == {
        k: (v.dtype, v.shape) for k, v in want.items()}
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
    np.testing.assert_array_equal(got["classes"], want["classes"])
    with pytest.raises(ValueError, match="cannot be combined with runtime='openvino'"):
        serving.load(base / "lenet5" / "2", runtime="openvino", jit_compile=True)

    def missing(path):
        raise ImportError("No module named 'openvino'")
    monkeypatch.setattr(serving, "_openvino_model", missing)
    auto = serving.load(base / "lenet5" / "2", jit_compile=False)
    assert auto.runtimes == ("litert", "tensorflow")
    assert auto.openvino_note == "OpenVINO is not installed (No module named 'openvino')"
    assert auto.runtime_for(1) == "litert" and auto.runtime_for(16) is None
    with pytest.raises(ValueError, match=r"runtime='openvino' cannot be used for .*2: "
                                         r"OpenVINO is not installed"):
        serving.load(base / "lenet5" / "2", runtime="openvino")

    # An OpenVINO model that disagrees with LiteRT is not used.
    compiled = serving._OV_CORE.compile_model(
        serving._OV_CORE.read_model(str(base / "lenet5" / "2" / "assets" /
                                        "serving_default.tflite")), "CPU")

    class Off:
        outputs = compiled.outputs

        def create_infer_request(self):
            request = compiled.create_infer_request()

            class Result:
                def __init__(self, result):
                    self.result = result

                def __getitem__(self, port):
                    v = self.result[port]
                    return v + 0.01 if v.dtype.kind == "f" else v

            class Request:
                def infer(self, inputs):
                    return Result(request.infer(inputs))
            return Request()
    monkeypatch.setattr(serving, "_openvino_model", lambda path: Off())
    auto = serving.load(base / "lenet5" / "2", jit_compile=False)
    assert auto.runtimes == ("litert", "tensorflow")
    assert re.fullmatch(r"OpenVINO's outputs differ from LiteRT's by 1\.0\de-02 \(more than "
                        r"0\.001\)", auto.openvino_note), auto.openvino_note


def test_runtime_choices_and_errors(tmp_path):
    model = zoo.lenet5(variant="modern")
    path = zoo.export(model, tmp_path, info=INFO, lite=False)
    assert not os.path.exists(os.path.join(path, "assets", "serving_default.tflite"))
    auto = serving.load(path, jit_compile=False)
    assert auto.runtime == "tensorflow"
    assert "no assets/serving_default.tflite: not requested (lite=False)" in auto.runtime_note
    with pytest.raises(ValueError, match="runtime='litert' cannot be used for .*not "
                                         "requested"):
        serving.load(path, runtime="litert")
    with pytest.raises(ValueError, match=r"runtime must be one of 'auto', 'litert', "
                                         r"'openvino', 'tensorflow'. Received: 'onnx'"):
        serving.load(path, runtime="onnx")
    with pytest.raises(ValueError, match="jit_compile must be 'auto', True or False. "
                                         "Received: jit_compile=1$"):
        serving.load(path, jit_compile=1)
    with_lite = zoo.export(model, tmp_path, info=INFO)
    with pytest.raises(ValueError, match="cannot be combined with runtime='litert'"):
        serving.load(with_lite, runtime="litert", jit_compile=True)
    # NumPy's True is True: it was taken as "auto" (LiteRT, no XLA)
    with pytest.raises(ValueError, match="cannot be combined with runtime='litert'"):
        serving.load(with_lite, runtime="litert", jit_compile=np.bool_(True))
    assert serving.load(with_lite, jit_compile=np.bool_(True)).jit_compiled
    xla = serving.load(with_lite, jit_compile=True)  # XLA asked for: TensorFlow runs it
    assert xla.runtime == "tensorflow" and "XLA" in xla.runtime_note and xla.jit_compiled
    assert serving.load(with_lite, runtime="litert", jit_compile=False).runtime == "litert"



def _copy_export(exported, tmp_path, edit=None):
    """A copy of version 2 of ``exported`` under ``tmp_path/lenet5/2``, its ``zoo.json``
    passed through ``edit(record)`` (which may return a replacement text)."""
    import shutil
    base, _ = exported
    path = tmp_path / "lenet5" / "2"
    shutil.copytree(base / "lenet5" / "2", path)
    if edit is not None:
        record_file = path / "assets" / "zoo.json"
        record = json.loads(record_file.read_text())
        text = edit(record)
        record_file.write_text(text if isinstance(text, str) else json.dumps(record))
    return path


def test_an_export_from_before_litert_copies_loads_and_predicts_the_same(exported, servable,
                                                                        tmp_path):
    # Exports written before LiteRT copies existed: no .tflite file, no "lite" or "gpu"
    # in zoo.json.
    def old(record):
        del record["lite"], record["gpu"]
    path = _copy_export(exported, tmp_path, old)
    (path / "assets" / "serving_default.tflite").unlink()
    loaded = serving.load(path, jit_compile=False)
    assert loaded.runtime == "tensorflow"
    assert loaded.runtime_note == ("the export has no assets/serving_default.tflite (written "
                                   "by a zoo before LiteRT copies: export the model again to "
                                   "get one)")
    assert loaded.labels == servable.labels and loaded.info["task"] == "classification"
    x = digits_arrays("test")[0][:4]
    want = servable.predict(x)
    got = loaded.predict(x)
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
    np.testing.assert_array_equal(got["classes"], want["classes"])


def test_an_export_of_a_newer_format_is_refused_by_its_number(exported, tmp_path):
    assert serving.read_record(_copy_export(exported, tmp_path))["format"] == 1

    def future(record):
        record["format"] = 2
        record["versions"]["zoo"] = "9.9.0"
    path = _copy_export(exported, tmp_path / "future", future)
    message = (f"{path} is an export of format 2 (written by zoo 9.9.0); this zoo "
               f"({zoo.__version__}) reads exports up to format 1: upgrade zoo to load it, "
               "or export the model again with this version.")
    with pytest.raises(ValueError) as info:
        serving.load(path)
    assert str(info.value) == message
    with pytest.raises(ValueError) as info:  # the model directory too
        serving.load(path.parent, runtime="tensorflow")
    assert str(info.value) == message
    for value, text in ((0, "0"), ("1", '"1"'), (1.5, "1.5"), (None, "null"), (True, "true")):
        def bad(record, value=value):
            record["format"] = value
        bad_path = _copy_export(exported, tmp_path / f"bad{text}", bad)
        with pytest.raises(ValueError, match=re.escape(
                f'zoo.json: "format": {text} is not an export format (an integer from 1; '
                'this zoo reads exports up to format 1).')):
            serving.load(bad_path)

    def no_format(record):  # a zoo.json written by hand or by another tool
        del record["format"]
    loaded = serving.load(_copy_export(exported, tmp_path / "hand", no_format),
                          jit_compile=False)
    assert loaded.labels[0] == "digit 0"


@pytest.mark.parametrize("text, message", [
    ('{"format": 1, "labels": [', "is not valid JSON"),
    ("[1, 2]", "holds a JSON list, not the object zoo exports write")])
def test_a_damaged_zoo_json_is_named(exported, tmp_path, text, message):
    path = _copy_export(exported, tmp_path, lambda record: text)
    with pytest.raises(ValueError, match=re.escape(f"{path / 'assets' / 'zoo.json'} {message}")):
        serving.load(path)


@pytest.mark.parametrize("field, value, message", [
    ("labels", 5, '"labels": 5 is not a list of class names (strings)'),
    ("labels", ["a", 1], '"labels": ["a", 1] is not a list of class names (strings)'),
    ("task", "detection", '"task": "detection" is not "classification" or "segmentation"'),
    ("versions", ["2.16"], '"versions": ["2.16"] is not an object'),
    ("input", {"model_input_shape": "32x32"},
     '"input.model_input_shape": "32x32" is not a list of 3 positive integers'),
    ("input", {"raw_range": [0, "255"]},
     '"input.raw_range": [0, "255"] is not two finite numbers [low, high], low < high'),
    ("input", {"raw_range": [255, 0]},
     '"input.raw_range": [255, 0] is not two finite numbers [low, high], low < high'),
    ("input", {"raw_range": [255, 255]},
     '"input.raw_range": [255, 255] is not two finite numbers [low, high], low < high'),
])
def test_bad_zoo_json_fields_are_named(exported, tmp_path, capsys, field, value, message):
    from zoo.cli import main

    def damage(record):
        record[field] = value
    path = _copy_export(exported, tmp_path, damage)
    want = (f"{path / 'assets' / 'zoo.json'}: {message}: export the model again, or correct "
            "that field.")
    with pytest.raises(ValueError) as info:
        serving.load(path)
    assert str(info.value) == want
    assert main(["predict", str(path), "--digits", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"zoo: error: {want}\n" and captured.out == ""


def test_labels_of_another_count_than_the_classes_are_named(exported, tmp_path):
    def three(record):
        record["labels"] = ["a", "b", "c"]
    path = _copy_export(exported, tmp_path, three)
    with pytest.raises(ValueError) as info:
        serving.load(path, jit_compile=False)
    assert str(info.value) == (f'{path / "assets" / "zoo.json"}: "labels" holds 3 class names, '
                               "the signature's probabilities 10 classes: export the model "
                               "again, or correct that field.")


def test_a_savedmodel_without_its_variables_is_named_in_one_line(exported, tmp_path, capsys):
    import shutil
    from zoo.cli import main
    path = _copy_export(exported, tmp_path)
    shutil.rmtree(path / "variables")
    want = (f"the SavedModel in {path} could not be loaded: FileNotFoundError: Unsuccessful "
            "TensorSliceReader constructor: Failed to find any matching files for "
            f"{path / 'variables' / 'variables'}")
    with pytest.raises(FileNotFoundError) as info:
        serving.load(path, runtime="tensorflow")
    assert str(info.value) == want
    assert main(["predict", str(path), "--digits", "2", "--runtime", "tensorflow"]) == 2
    assert capsys.readouterr().err == f"zoo: error: {want}\n"


def test_a_litert_file_this_litert_cannot_read_leaves_the_export_to_tensorflow(
        exported, servable, tmp_path):
    # A damaged file, or one from a converter newer than the installed LiteRT.
    path = _copy_export(exported, tmp_path)
    lite = path / "assets" / "serving_default.tflite"
    lite.write_bytes(lite.read_bytes()[:1000])
    loaded = serving.load(path, jit_compile=False)
    assert loaded.runtime == "tensorflow" and loaded.runtimes == ("tensorflow",)
    assert loaded.runtime_note.startswith("LiteRT cannot read "
                                          "assets/serving_default.tflite: ValueError: ")
    x = digits_arrays("test")[0][:4]
    np.testing.assert_allclose(loaded.predict(x)["probabilities"],
                               servable.predict(x)["probabilities"], atol=1e-5)
    with pytest.raises(ValueError, match="runtime='litert' cannot be used for .*: LiteRT "
                                         "cannot read assets/serving_default.tflite"):
        serving.load(path, runtime="litert")


def test_a_litert_file_with_another_signature_is_not_used(exported, tmp_path):
    # The LiteRT file of another model's export: its outputs are not the SavedModel's.
    tf.keras.utils.set_random_seed(0)
    seg = zoo.export(zoo.unet(input_shape=(16, 16, 1), num_classes=2, padding="same",
                              depth=1, base_filters=2), tmp_path / "seg", info=None)
    path = _copy_export(exported, tmp_path)
    (path / "assets" / "serving_default.tflite").write_bytes(
        open(os.path.join(seg, "assets", "serving_default.tflite"), "rb").read())
    loaded = serving.load(path, jit_compile=False)
    assert loaded.runtime == "tensorflow"
    assert loaded.runtime_note == (
        "assets/serving_default.tflite's serving_default takes ['images'] and returns "
        "['mask', 'probabilities'], the SavedModel's ['images'] and ['classes', "
        "'probabilities']")


def test_a_savedmodel_this_tensorflow_cannot_load_names_the_version_that_wrote_it(
        exported, tmp_path):
    from tensorflow.core.protobuf import saved_model_pb2

    def newer(record):
        record["versions"]["tensorflow"] = "9.9.0"
    path = _copy_export(exported, tmp_path, newer)
    # An op this TensorFlow does not have, as in a graph written by a newer one.
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    renamed = 0
    for function in saved.meta_graphs[0].graph_def.library.function:
        for node in function.node_def:
            if node.op == "Softmax":
                node.op, renamed = "ZooFutureSoftmax", renamed + 1
    assert renamed
    (path / "saved_model.pb").write_bytes(saved.SerializeToString())
    with pytest.raises(ValueError, match=re.escape(
            f"TensorFlow {tf.__version__} cannot load the SavedModel in {path} (") +
            ".*ZooFutureSoftmax.*" + re.escape(
            "); it was written with TensorFlow 9.9.0 (assets/zoo.json): load it with "
            "TensorFlow 9.9.0, or export the model again with this one.")):
        serving.load(path, runtime="tensorflow")

def test_zoo_predict_ranks_each_batch_as_it_comes(exported, servable, tmp_path, capsys,
                                                 monkeypatch):
    # Every image's probabilities were held until all were predicted, then ranked in one
    # call: N x K floats for the k labels shown (100,000 images of 1,000 classes: 400 MB).
    from zoo.cli import main
    base, _ = exported
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.random.RandomState(i).randint(0, 256, (8, 8)).astype("uint8")).save(
            paths[-1])
    ranked_rows, top_k = [], serving.Servable.top_k

    def counted(self, probabilities, k=5):
        ranked_rows.append(len(probabilities))
        return top_k(self, probabilities, k)

    monkeypatch.setattr(serving.Servable, "top_k", counted)
    assert main(["predict", str(base / "lenet5"), *paths, "--top-k", "2", "--batch-size", "2",
                 "--no-xla", "--format", "jsonl"]) == 0
    assert ranked_rows == [2, 2, 1]
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    probabilities = servable.predict(paths)["probabilities"]
    assert [r["image"] for r in records] == paths
    for record, p in zip(records, probabilities):
        best = np.argsort(-p, kind="stable")[:2]
        assert record["labels"] == [f"digit {j}" for j in best]
        assert record["probabilities"] == pytest.approx(p[best], abs=1e-5)
    ranked_rows.clear()
    assert main(["predict", str(base / "lenet5"), "--digits", "3", "--top-k", "1",
                 "--batch-size", "2", "--no-xla"]) == 0
    assert ranked_rows == [2, 1]
    assert re.search(r"^\d/3 correct \(lenet5 version 2, ", capsys.readouterr().out, re.M)


def test_zoo_predict_prints_top_k(exported, servable, tmp_path, capsys):
    from zoo.cli import main
    base, _ = exported
    img = np.random.RandomState(3).randint(0, 256, (8, 8)).astype("uint8")
    path = tmp_path / "seven.png"
    Image.fromarray(img).save(path)
    assert main(["predict", str(base / "lenet5"), str(path), "--top-k", "3", "--no-xla",
                 "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "image,rank,label,probability"
    assert len(lines) == 4
    probs = servable.predict(path)["probabilities"][0]
    best = np.argsort(-probs)[:3]
    for line, j in zip(lines[1:], best):
        label, p = line.split(",")[2:4]
        assert label == f"digit {j}" and float(p) == pytest.approx(probs[j], abs=1e-4)
    # A colour file for this greyscale model: converted as Servable.predict converts it.
    colour = tmp_path / "colour.png"
    Image.fromarray(np.random.RandomState(5).randint(0, 256, (8, 8, 3)).astype("uint8")).save(
        colour)
    assert main(["predict", str(base / "lenet5"), str(colour), "--top-k", "1", "--no-xla",
                 "--format", "csv"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[1]
    probs = servable.predict(colour)["probabilities"][0]
    assert line.split(",")[2] == f"digit {np.argmax(probs)}"
    assert float(line.split(",")[3]) == pytest.approx(probs.max(), abs=1e-4)

    assert main(["predict", str(base / "lenet5"), "--digits", "4", "--top-k", "1",
                 "--no-xla", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    x, y = digits_arrays("test")
    classes = servable.predict(x[:4])["classes"]
    rows = [line.split(",") for line in out[1:]]
    assert len(rows) == 4      # CSV to its end: the summary goes to stderr
    assert [r[2] for r in rows] == [f"digit {c}" for c in classes]
    assert [r[4] for r in rows] == [f"digit {t}" for t in y[:4]]
    right = int(np.sum(classes == y[:4]))
    assert captured.err.strip().splitlines()[-1] == f"{right}/4 correct (lenet5 version 2, LiteRT)"
    assert main(["predict", str(base / "lenet5"), "--digits", "4", "--top-k", "1",
                 "--no-xla", "--runtime", "tensorflow", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines() == out
    assert captured.err.strip().splitlines()[-1] == (f"{right}/4 correct (lenet5 version 2, "
                                                    f"TensorFlow, XLA off)")
    assert main(["predict", str(base / "lenet5"), "--digits", "4", "--top-k", "1",
                 "--no-xla", "--runtime", "openvino"]) == 0
    ov_out = capsys.readouterr().out.strip().splitlines()   # markdown: the summary below
    assert ov_out[-1] == f"{right}/4 correct (lenet5 version 2, OpenVINO)"
    assert ov_out[-2] == ""
    # Enough batches of 16 for their size class's choice, made to pick TensorFlow.
    n = 16 * 3 * 2 * serving._TRIAL_ROUNDS
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(serving, "_TRIAL_SECONDS", 0.0)    # _TRIAL_ROUNDS rounds
        mp.setattr(serving, "_choose_runtime", lambda best, default: "tensorflow")
        assert main(["predict", str(base / "lenet5"), "--digits", str(n), "--top-k", "1",
                     "--batch-size", "16", "--no-xla"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith(" correct (lenet5 version 2, LiteRT; TensorFlow for batches of "
                         "16-31 images)"), last

    assert main(["predict", str(base / "lenet5"), "--no-xla"]) == 2
    assert "give image files" in capsys.readouterr().err
    # Refused before the model loads: images and --digits together, a bad batch size.
    assert main(["predict", str(base / "lenet5"), str(path), "--digits", "3"]) == 2
    assert capsys.readouterr().err == ("zoo: error: give image files or --digits N, not both. "
                                       "Received: 1 image file(s) and --digits 3\n")
    for n in ("0", "361"):   # 361 predicted the 360 there are, without a word
        assert main(["predict", str(base / "lenet5"), "--digits", n]) == 2
        assert capsys.readouterr().err == (f"zoo: error: --digits must be from 1 to 360, the "
                                           f"test images of the embedded digits. Received: "
                                           f"{n}\n")
    assert main(["predict", str(base / "lenet5"), str(path), "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == "zoo: error: --batch-size must be >= 1. Received: 0\n"
    for given in (str(tmp_path), f"{tmp_path}/"):   # (imgs/ was shown as imgs//*.png)
        assert main(["predict", str(base / "lenet5"), given]) == 2
        assert capsys.readouterr().err == (f"zoo: error: {given} is a directory, not an image "
                                           f"file: give the images in it ({tmp_path}/*.png), "
                                           f"or list them with --files-from FILE\n")
    # The images are read before the model loads: named even beside a model that is not there.
    (tmp_path / "notes.png").write_text("not an image")
    assert main(["predict", str(tmp_path / "no-model"), str(path),
                 str(tmp_path / "notes.png")]) == 2
    assert capsys.readouterr().err == (f"zoo: error: could not decode {tmp_path / 'notes.png'} "
                                       f"as an image (PNG, JPEG, ...): unrecognised image "
                                       f"format\n")
    assert main(["predict", str(tmp_path / "no-model"), str(tmp_path / "gone.png")]) == 2
    assert capsys.readouterr().err == f"zoo: error: no such image file: {tmp_path / 'gone.png'}\n"
    assert main(["predict", str(tmp_path / "no-model"), ""]) == 2   # (said nothing after ":")
    assert capsys.readouterr().err == "zoo: error: no such image file: '' (an empty path)\n"


@pytest.mark.parametrize("level", ["0", None])
def test_zoo_predict_hides_litert_info_line_below_the_level(exported, level):
    """LiteRT writes "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." once per
    process, with no switch: the command line hides it as TensorFlow's INFO lines (shown
    with TF_CPP_MIN_LOG_LEVEL=0)."""
    import subprocess
    import sys
    base, _ = exported
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    result = subprocess.run([sys.executable, "-m", "zoo", "predict", str(base / "lenet5"),
                             "--digits", "2", "--runtime", "litert", "--no-xla"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("correct (lenet5 version 2, LiteRT)")
    shown = [line for line in result.stderr.splitlines() if "XNNPACK" in line]
    assert shown == (["INFO: Created TensorFlow Lite XNNPACK delegate for CPU."]
                     if level == "0" else []), result.stderr


def test_zoo_predict_refuses_options_the_model_cannot_use(exported, tmp_path, capsys,
                                                          monkeypatch):
    """--top-k for a segmentation model and --out for a classifier were ignored; a file
    named like the default --out (masks) stopped a classifier's predict; --digits for a
    colour model is named as such."""
    from zoo.cli import main
    base, _ = exported
    seg = zoo.unet(input_shape=(16, 16, 1), num_classes=2, padding="same", depth=1,
                   base_filters=2)
    zoo.export(seg, tmp_path / "models", name="seg", lite=False)
    Image.fromarray(np.zeros((8, 8), "uint8")).save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "models/seg", "a.png", "--top-k", "3", "--no-xla"]) == 2
    assert capsys.readouterr().err == (
        "zoo: error: --top-k ranks a classifier's labels; seg is a segmentation model, which "
        "writes masks (--out DIR)\n")
    assert not os.path.exists("masks")
    # --out under a file: named before the model loads (was "[Errno 20] Not a directory:
    # 'a.png/masks'" after it, naming neither the file nor what --out must be)
    for out, message in (("a.png/masks", "--out a.png/masks is under a.png, which is a file"),
                         ("a.png/x/y", "--out a.png/x/y is under a.png, which is a file"),
                         ("a.png/", "--out a.png/ is a file")):
        assert main(["predict", "models/seg", "a.png", "--out", out, "--no-xla"]) == 2
        assert capsys.readouterr().err == f"zoo: error: {message}; masks go into a directory\n"
    # an empty --out or one that cannot be written: named before the model loads too (were
    # "[Errno 2] No such file or directory: ''" and "[Errno 13] Permission denied: ...")
    assert main(["predict", "models/seg", "a.png", "--out", "", "--no-xla"]) == 2
    assert capsys.readouterr().err == ("zoo: error: --out must be the path of a directory for "
                                       "the masks (default: masks). Received: --out=''\n")
    from conftest import deny_writes
    (tmp_path / "ro").mkdir()
    with monkeypatch.context() as m:
        deny_writes(m, tmp_path / "ro")
        for out in ("ro", "ro/masks"):
            assert main(["predict", "models/seg", "a.png", "--out", out, "--no-xla"]) == 2
            assert capsys.readouterr().err == (
                f"zoo: error: --out {out} cannot be written: no write permission on "
                f"{tmp_path / 'ro'}; masks go into a directory\n")
    assert os.listdir(tmp_path / "ro") == []
    assert main(["predict", str(base / "lenet5"), "a.png", "--out", "x", "--no-xla"]) == 2
    assert capsys.readouterr().err == (
        "zoo: error: --out is where a segmentation model's masks go; lenet5 is a classifier, "
        "which prints its top labels\n")
    # --digits for a colour model: named as such (was "takes images with 3 channel(s);
    # received 1 (array shape (3, 8, 8, 1))", naming an array the user never gave)
    import keras
    inputs = keras.Input((8, 8, 3))
    colour = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(
        keras.layers.Flatten()(inputs)), name="colour")
    zoo.export(colour, tmp_path / "models", lite=False)
    assert main(["predict", "models/colour", "--digits", "3", "--no-xla"]) == 2
    assert capsys.readouterr().err == (
        "zoo: error: --digits predicts the embedded digits, greyscale images; colour takes "
        "3-channel images: give image files\n")
    (tmp_path / "masks").write_text("not a directory")
    assert main(["predict", str(base / "lenet5"), "a.png", "--top-k", "2", "--no-xla",
                 "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert main(["predict", "models/seg", "a.png", "--no-xla"]) == 2
    assert capsys.readouterr().err == (
        "zoo: error: --out masks (the default) is a file; masks go into a directory: give "
        "another --out\n")


def test_segmentation_predict_writes_mask_pngs(tmp_path, capsys):
    from zoo.cli import main
    model = zoo.unet(input_shape=(32, 32, 3), num_classes=3, padding="same", depth=2,
                     base_filters=4)
    base = tmp_path / "models"
    zoo.export(model, base, name="seg")
    img = np.random.RandomState(4).randint(0, 256, (32, 32, 3)).astype("uint8")
    Image.fromarray(img).save(tmp_path / "scene.png")
    out_dir = tmp_path / "masks"
    assert main(["predict", str(base / "seg"), str(tmp_path / "scene.png"), "--out",
                 str(out_dir), "--no-xla"]) == 0
    assert "scene_mask.png" in capsys.readouterr().out
    assert os.listdir(out_dir) == ["scene_mask.png"]
    mask = np.asarray(Image.open(out_dir / "scene_mask.png"))
    want = np.asarray(model(img[None].astype("float32"))).argmax(-1)[0]
    np.testing.assert_array_equal(mask, want)

    # Images of one name in different folders: a mask each, none overwritten, and the
    # table lists the files written.
    (tmp_path / "sub").mkdir()
    other = np.random.RandomState(5).randint(0, 256, (32, 32, 3)).astype("uint8")
    Image.fromarray(other).save(tmp_path / "sub" / "scene.png")
    Image.fromarray(other).save(tmp_path / "scene_1.png")
    both = tmp_path / "both"
    assert main(["predict", str(base / "seg"), str(tmp_path / "scene.png"),
                 str(tmp_path / "sub" / "scene.png"), str(tmp_path / "scene_1.png"), "--out",
                 str(both), "--no-xla", "--format", "csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert [r[1] for r in rows] == [str(both / "scene_2_mask.png"),
                                    str(both / "scene_3_mask.png"),
                                    str(both / "scene_1_mask.png")]
    assert sorted(os.listdir(both)) == ["scene_1_mask.png", "scene_2_mask.png",
                                        "scene_3_mask.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(both / "scene_2_mask.png")), want)
    want_other = np.asarray(model(other[None].astype("float32"))).argmax(-1)[0]
    np.testing.assert_array_equal(np.asarray(Image.open(both / "scene_3_mask.png")),
                                  want_other)
    # An RGB image [C, H, W] (channels first) is refused with the way to move them last.
    seg = serving.load(base / "seg")
    for chw in (img.transpose(2, 0, 1), img.transpose(2, 0, 1)[None]):
        with pytest.raises(ValueError, match=r"; received an array of shape .*\. Channels "
                           r"first\? Move them last: np\.moveaxis\(images, -3, -1\)\.$"
                           if chw.ndim == 3 else r"received 32 \(array shape \(1, 3, 32, "
                           r"32\)\)\. Channels first\? Move them last"):
            seg.predict(chw)
    np.testing.assert_array_equal(
        seg.predict(np.moveaxis(img.transpose(2, 0, 1), -3, -1))["mask"][0], want)
    assert main(["predict", str(base / "seg"), "--digits", "2"]) == 2
    assert capsys.readouterr().err == ("zoo: error: --digits predicts the embedded digits with "
                                       "a classifier; seg is a segmentation model: give image "
                                       "files\n")


def test_mask_names_of_many_images_of_one_name_are_found_in_one_pass(monkeypatch):
    # Each image of a repeated name counted up from _1 again: 10,000 images named rgb.png
    # in folders of their own tried 50 million names (7 s) before zoo predict wrote a mask.
    tried, numbered = [], serving._numbered_mask_name

    def counted(stem, number):
        tried.append((stem, number))
        return numbered(stem, number)

    monkeypatch.setattr(serving, "_numbered_mask_name", counted)
    names = [f"scene_{i:04d}/rgb.png" for i in range(1000)] + ["rgb_3.png", "x/rgb_3.png"]
    names[500:500] = ["rgb_700.png"]   # a name of its own, which the numbering skips
    result = serving._mask_names(names)
    assert result[:3] == ["rgb_1_mask.png", "rgb_2_mask.png", "rgb_3_mask.png"]
    assert result[500] == "rgb_700_mask.png"
    assert result[699:702] == ["rgb_699_mask.png", "rgb_701_mask.png", "rgb_702_mask.png"]
    assert result[-3:] == ["rgb_1001_mask.png", "rgb_3_1_mask.png", "rgb_3_2_mask.png"]
    assert len(set(result)) == len(result)
    assert len(tried) < 3 * len(names)


def test_a_failed_predict_leaves_another_predicts_masks_in_the_out_it_made(tmp_path, capsys,
                                                                          monkeypatch):
    # Two predicts into one new --out: the one that made it failed and, before, removed the
    # whole directory, the other's masks (and its hidden staging directory) with it.
    from zoo.cli import main
    model = zoo.unet(input_shape=(32, 32, 3), num_classes=3, padding="same", depth=2,
                     base_filters=4)
    zoo.export(model, tmp_path / "models", name="seg", lite=False)
    img = np.random.RandomState(4).randint(0, 256, (32, 32, 3)).astype("uint8")
    for name in ("a", "b"):
        Image.fromarray(img).save(tmp_path / f"{name}.png")
    out = tmp_path / "masks"
    original = serving.Servable.iter_predict

    def fail_after_the_other_wrote(self, images, batch_size=None, **kw):
        for item in original(self, images, batch_size, **kw):
            yield item
            (out / "other_mask.png").write_bytes(b"the other predict's")
            raise ValueError("b.png cannot be decoded")

    monkeypatch.setattr(serving.Servable, "iter_predict", fail_after_the_other_wrote)
    assert main(["predict", str(tmp_path / "models" / "seg"), str(tmp_path / "a.png"),
                 str(tmp_path / "b.png"), "--out", str(out), "--no-xla",
                 "--batch-size", "1"]) == 2
    assert capsys.readouterr().err == "zoo: error: b.png cannot be decoded\n"
    assert os.listdir(out) == ["other_mask.png"]
    assert (out / "other_mask.png").read_bytes() == b"the other predict's"
    # Alone, a failed predict still leaves no directory it made.
    (out / "other_mask.png").unlink()
    os.rmdir(out)

    def fail(self, images, batch_size=None, **kw):
        raise ValueError("b.png cannot be decoded")
        yield   # a generator, as iter_predict is

    monkeypatch.setattr(serving.Servable, "iter_predict", fail)
    assert main(["predict", str(tmp_path / "models" / "seg"), str(tmp_path / "a.png"),
                 "--out", str(out), "--no-xla"]) == 2
    assert not out.exists()


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_a_16_bit_grey_png_reads_as_the_training_pipeline_reads_it(tmp_path, channels):
    """Pillow's conversion of a 16-bit grey PNG to 8 bits clips every value above 255; the
    zoo takes the high byte, as TensorFlow's decoder in the training pipeline does."""
    import tensorflow as tf
    from PIL import Image
    wide = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1000).astype(np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(wide).save(path)
    assert Image.open(path).mode.startswith("I")
    ours = serving.decode_image(str(path), channels)
    tf_channels = channels or 1
    reference = tf.io.decode_image(path.read_bytes(), channels=tf_channels).numpy()
    assert ours.shape == (8, 8, tf_channels) and ours.dtype == np.uint8
    assert np.array_equal(ours, reference)
    assert len(np.unique(ours)) > 32      # not clipped to 255


def _peak_bytes(fn):
    """The most memory Python and numpy held at once while ``fn()`` ran, beyond what they
    held before."""
    import tracemalloc
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_predict_runs_large_inputs_in_bounded_batches(servable, tmp_path, monkeypatch):
    """An array is converted to float32 batch by batch, a list's files decoded batch by
    batch, and without batch_size no call takes more than DEFAULT_BATCH_SIZE images: one
    float32 copy of 512 images (8 MB here) or of every decoded file would grow with N."""
    x = np.random.RandomState(0).randint(0, 256, (512, 64, 64, 1)).astype("uint8")  # 2 MB
    ref = servable.predict(x, batch_size=16)
    assert _peak_bytes(lambda: servable.predict(x, batch_size=16)) < 3_000_000
    sizes = []
    call = servable._call
    monkeypatch.setattr(servable, "_call", lambda fn, batch, name: (
        sizes.append(len(batch)), call(fn, batch, name))[1])
    out = servable.predict(x)
    assert max(sizes) == serving.DEFAULT_BATCH_SIZE and sum(sizes) == 512
    np.testing.assert_allclose(out["probabilities"], ref["probabilities"], atol=1e-6)
    monkeypatch.undo()

    # 200 files of two sizes, in order; 64x64 grey PNGs decode to 4 KB each, 3.2 MB in all
    # as float32.
    paths = []
    for i in range(200):
        path = tmp_path / f"{i}.png"
        Image.fromarray(x[i % 64, :64 - 16 * (i % 2), :, 0]).save(path)
        paths.append(str(path))
    want = [servable.predict(x[i, :64 - 16 * (i % 2)])["probabilities"][0] for i in range(64)]
    got = {}
    assert _peak_bytes(lambda: got.update(servable.predict(paths, batch_size=8))) < 1_000_000
    for i in range(200):    # in the order given, whichever batch an image ran in
        np.testing.assert_allclose(got["probabilities"][i], want[i % 64], atol=1e-6)


def test_a_list_of_many_sizes_holds_a_bounded_number_of_images(servable, monkeypatch):
    """A list's images wait for a batch of their size until _PENDING_BATCHES batches' worth
    are held, then every size runs: 40 images of 20 sizes, batch_size 2, never hold more
    than 8 decoded images, and each is predicted as on its own."""
    images = [np.full((8 + i % 20, 8, 1), 6 * i, "uint8") for i in range(40)]
    read = []
    item = servable._item
    monkeypatch.setattr(servable, "_item", lambda i, image, indexed: (
        read.append(i), item(i, image, indexed))[1])
    done, held = [], []
    for idx, out in servable.iter_predict(images, 2):
        done += idx.tolist()
        held.append(len(read) - len(done))
        for i, p in zip(idx, out["probabilities"]):
            np.testing.assert_allclose(p, servable.predict(images[i])["probabilities"][0],
                                       atol=1e-6)
    assert sorted(done) == list(range(40))
    assert max(held) == serving._PENDING_BATCHES * 2 - 1   # 8 read, the first of them out


def test_errors_in_a_list_name_the_image(servable, tmp_path):
    good = np.zeros((8, 8, 1), np.uint8)
    cases = [
        ([good, b"not an image"], r"^images\[1\]: could not decode the image bytes as an "
                                  r"image \(PNG, JPEG, \.\.\.\): unrecognised image format$"),
        ([good, good, np.zeros((8, 8, 3))],
         r"^images\[2\]: lenet5 takes images with 1 channel\(s\); received 3"),
        ([good, np.zeros((2, 8, 8, 1))], r"^images\[1\]: each image must be \[height, width, "
                                         r"channels\]; received an array of shape \(2, 8, 8, 1\)"),
        ([good, good, good, np.full((8, 8, 1), np.inf)],
         r"; image 3 holds NaN or infinity\.$"),
        (np.concatenate([np.zeros((5, 8, 8, 1)), np.full((1, 8, 8, 1), np.nan)]),
         r"; image 5 holds NaN or infinity\.$"),
        # finite, but beyond float32's range (a cast would make it an infinity)
        ([good, np.full((8, 8, 1), -1e308)],
         r"^pixel values must be finite float32 numbers, from -3\.403e\+38 to 3\.403e\+38; "
         r"image 1 holds -1e\+308\.$"),
        # channels first [N, C, H, W]: the shape says so, and how to move them last
        ([good, np.zeros((1, 8, 8))], r"^images\[1\]: lenet5 takes images with 1 "
                                      r"channel\(s\); received 8 \(array shape \(1, 8, 8\)\)"
                                      r"\. Channels first\? Move them last: "
                                      r"np\.moveaxis\(images, -3, -1\)\.$"),
        (np.zeros((2, 1, 8, 8)), r"received 8 \(array shape \(2, 1, 8, 8\)\)\. Channels "
                                 r"first\? Move them last: np\.moveaxis\(images, -3, -1\)\.$"),
        # an empty array is no image of channels first (the hint said it might be)
        ([[[[]]]], r"received 0 \(array shape \(1, 1, 1, 0\)\)\.$"),
        # not an image: named by its index once (was "images[1]: images must form ...:
        # images is None where ...")
        ([good, None], r"^images\[1\] must form a regular numeric array \(every image the "
                       r"same height, width and channels, every value a number\): images\[1\] "
                       r"is None where a number is expected\.$"),
        ([good, [[[0]], [[0], [1]]]], r"^images\[1\] must form a regular numeric array .*: "
                                      r"images\[1\]\[1\] is a list of 2 where images\[1\]\[0\] "
                                      r"is a list of 1\.$"),
    ]
    for images, message in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error")          # no RuntimeWarning of an overflow
            with pytest.raises(ValueError, match=message):
                servable.predict(images, batch_size=2)
    # A path names itself; a missing one stays a FileNotFoundError.
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ValueError, match=f"^could not decode {re.escape(str(tmp_path))}"):
        servable.predict([good, tmp_path / "notes.png"])
    with pytest.raises(FileNotFoundError, match="^no such image file: .*gone.png$"):
        servable.predict([good, str(tmp_path / "gone.png")])


def test_iter_predict_yields_each_batch_with_its_indices(servable):
    images = [np.full((8 + 4 * (i % 2), 8, 1), 20 * i, np.uint8) for i in range(7)]
    want = servable.predict(images)["probabilities"]
    seen = []
    for idx, out in servable.iter_predict(images, 2):
        assert len(idx) <= 2 and out["probabilities"].shape == (len(idx), 10)
        np.testing.assert_allclose(out["probabilities"], want[idx], atol=1e-6)
        seen += list(idx)
    assert sorted(seen) == list(range(7))
    # Checked at the call, not at the first batch.
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        servable.iter_predict(images, 0)
    with pytest.raises(ValueError, match="empty list"):
        servable.iter_predict([])


def _digit_files(directory, n):
    x, _ = digits_arrays("test")
    paths = []
    for i in range(n):
        path = directory / f"d{i}.png"
        Image.fromarray(x[i][..., 0].astype("uint8")).save(path)
        paths.append(str(path))
    return paths


def _truncated_png(path):
    data = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (32, 32), np.uint8)).save(
        data, format="PNG")
    path.write_bytes(data.getvalue()[:200])   # a sound header, the pixels cut off
    return str(path)


def test_zoo_predict_jsonl_and_file_lists(exported, servable, tmp_path, capsys, monkeypatch):
    from zoo.cli import main
    base, _ = exported
    paths = _digit_files(tmp_path, 5)
    probs = servable.predict(paths)["probabilities"]
    assert main(["predict", str(base / "lenet5"), *paths, "--top-k", "2", "--no-xla",
                 "--format", "jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    for line, path, p in zip(lines, paths, probs):
        record = json.loads(line)
        best = np.argsort(-p)[:2]
        assert record == {"image": path, "labels": [f"digit {j}" for j in best],
                          "probabilities": pytest.approx([p[j] for j in best], abs=1e-5)}
    # --digits: the true label in each record, the summary on stderr.
    assert main(["predict", str(base / "lenet5"), "--digits", "3", "--top-k", "1",
                 "--no-xla", "--format", "jsonl"]) == 0
    captured = capsys.readouterr()
    _, y = digits_arrays("test")
    assert [json.loads(line)["true_label"] for line in captured.out.splitlines()] == [
        f"digit {v}" for v in y[:3]]
    assert "/3 correct (lenet5 version 2" in captured.err

    # Paths from a file or standard input, one a line, after the arguments.
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(paths[1:]) + "\n\n")
    assert main(["predict", str(base / "lenet5"), paths[0], "--files-from", str(listing),
                 "--no-xla", "--format", "jsonl"]) == 0
    assert [json.loads(line)["image"] for line in capsys.readouterr().out.splitlines()] == paths
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(paths[:2]) + "\n"))
    assert main(["predict", str(base / "lenet5"), "--files-from", "-", "--no-xla",
                 "--format", "csv", "--top-k", "1"]) == 0
    assert [line.split(",")[0] for line in capsys.readouterr().out.splitlines()[1:]] == \
        paths[:2]
    for source, message in ((tmp_path / "none.txt", "--files-from: no such file: "),
                            (tmp_path, "is a directory; expected a file of image paths")):
        assert main(["predict", str(base / "lenet5"), "--files-from", str(source)]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("\n")
    assert main(["predict", str(base / "lenet5"), "--files-from",
                 str(tmp_path / "empty.txt")]) == 2
    assert capsys.readouterr().err == (f"zoo: error: give image files to predict "
                                       f"({tmp_path / 'empty.txt'} lists none), or --digits N\n")


def test_zoo_predict_csv_rows_each_name_their_image(exported, servable, tmp_path, capsys):
    """CSV, read by programs row by row: each rank's row names its image and true label
    (they were blank after an image's first row, as in the markdown table for people)."""
    from zoo.cli import main
    base, _ = exported
    paths = []
    for seed in (1, 2):
        paths.append(str(tmp_path / f"{seed}.png"))
        Image.fromarray(np.random.RandomState(seed).randint(0, 256, (8, 8)).astype("uint8")
                        ).save(paths[-1])
    assert main(["predict", str(base / "lenet5"), *paths, "--top-k", "3", "--no-xla",
                 "--format", "csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [(p, str(k)) for p in paths for k in (1, 2, 3)]
    probabilities = servable.predict(paths)["probabilities"]
    assert [r[2] for r in rows] == [f"digit {j}" for p in probabilities
                                    for j in np.argsort(-p, kind="stable")[:3]]
    assert main(["predict", str(base / "lenet5"), "--digits", "2", "--top-k", "2", "--no-xla",
                 "--format", "csv"]) == 0
    _, y = digits_arrays("test")
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(r[0], r[4]) for r in rows] == [(f"digits test #{i}", f"digit {y[i]}")
                                            for i in (0, 0, 1, 1)]
    # The markdown table, for people, names each image once.
    assert main(["predict", str(base / "lenet5"), paths[0], "--top-k", "2", "--no-xla"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith(f"| {paths[0]} |") and lines[3].startswith("| ")
    assert paths[0] not in lines[3]


@pytest.mark.parametrize("fmt", ["markdown", "csv", "jsonl"])
def test_zoo_predict_prints_a_file_name_that_is_not_utf8_as_its_bytes(exported, tmp_path,
                                                                      monkeypatch, fmt):
    """A file named in Latin-1 (``caf\\xe9.png``, Python's ``caf\\udce9.png``) is printed as
    its bytes, as ``ls`` prints it: the markdown and CSV tables failed in pandas' Arrow
    strings, and every format on a strict UTF-8 standard output (a UTF-8 locale's), with
    ``UnicodeEncodeError`` and exit code 2 once the model had run."""
    from zoo.cli import main
    base, _ = exported
    name = os.fsdecode(b"caf\xe9.png")
    for image in (name, "a|b.png"):   # (a markdown table escapes the |: in Python strings too)
        Image.fromarray(np.zeros((8, 8), "uint8")).save(tmp_path / image)
    monkeypatch.chdir(tmp_path)
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr("sys.stdout", out)
    assert main(["predict", str(base / "lenet5"), name, "a|b.png", "--top-k", "1", "--no-xla",
                 "--format", fmt]) == 0
    out.flush()
    written = out.buffer.getvalue()
    assert {"markdown": b"| caf\xe9.png |", "csv": b"\ncaf\xe9.png,1,digit ",
            "jsonl": b'{"image": "caf\xe9.png", '}[fmt] in written
    assert {"markdown": b"\n| a\\|b.png ", "csv": b"\na|b.png,1,digit ",
            "jsonl": b'{"image": "a|b.png", '}[fmt] in written


def test_zoo_predict_reads_file_lists_with_a_byte_order_mark_and_in_utf16(
        exported, tmp_path, capsys, monkeypatch):
    """--files-from: a leading byte-order mark is no part of the first path (Notepad's UTF-8
    lists: ``no such image file: \\ufeffa.png``), and a list with UTF-16's (Windows
    PowerShell's ``dir -Name > list.txt``) is read as UTF-16 (it was read as bytes)."""
    from zoo.cli import main
    base, _ = exported
    monkeypatch.chdir(tmp_path)
    names = ["a.png", "b c.png", os.fsdecode(b"caf\xe9.png")]
    for name in names:
        Image.fromarray(np.zeros((8, 8), "uint8")).save(name)
    text = "\r\n".join(names[:2]) + "\r\n"
    for data in (b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16"),
                 text.encode("utf-16-be").join([b"\xfe\xff", b""])):
        (tmp_path / "list.txt").write_bytes(data)
        assert main(["predict", str(base / "lenet5"), "--files-from", "list.txt", "--top-k",
                     "1", "--no-xla", "--format", "csv"]) == 0
        assert [line.split(",")[0] for line in capsys.readouterr().out.splitlines()[1:]] == \
            names[:2]
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
        assert main(["predict", str(base / "lenet5"), "--files-from", "-", "--top-k", "1",
                     "--no-xla", "--format", "csv"]) == 0
        assert [line.split(",")[0] for line in capsys.readouterr().out.splitlines()[1:]] == \
            names[:2]
    monkeypatch.setattr("sys.stdin", io.StringIO("\ufeffa.png\n"))   # text only: no bytes
    assert main(["predict", str(base / "lenet5"), "--files-from", "-", "--top-k", "1",
                 "--no-xla", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("a.png,1,")
    # A name that is not UTF-8 in a list read as bytes is the file's name.
    (tmp_path / "list.txt").write_bytes(b"caf\xe9.png\n")
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr("sys.stdout", out)
    assert main(["predict", str(base / "lenet5"), "--files-from", "list.txt", "--top-k", "1",
                 "--no-xla", "--format", "csv"]) == 0
    out.flush()
    assert out.buffer.getvalue().startswith(b"image,rank,label,probability\ncaf\xe9.png,1,")


def test_zoo_predict_names_a_pattern_and_the_list_line_of_a_bad_path(exported, tmp_path,
                                                                     capsys, monkeypatch):
    """A missing file that is a wildcard pattern (quoted, or passed on by a shell as no file
    matched it) is named as one, with what to do; a missing or bad path from --files-from
    names its line (a list of thousands said only the path, a comment line looked like one)."""
    from zoo.cli import main
    base, _ = exported
    model = str(base / "lenet5")
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8), "uint8")).save(tmp_path / name)
    assert main(["predict", model, str(tmp_path / "*.png")]) == 2
    assert capsys.readouterr().err == (
        f"zoo: error: no such image file: {tmp_path}/*.png; it is a pattern (2 files match "
        f"it), and zoo predict expands none: let the shell expand it (unquoted), or list the "
        f"files with --files-from FILE\n")
    assert main(["predict", model, str(tmp_path / "[a]*.png")]) == 2
    assert "it is a pattern (1 file matches it)" in capsys.readouterr().err
    assert main(["predict", model, str(tmp_path / "*.jpeg")]) == 2
    assert capsys.readouterr().err == (
        f"zoo: error: no such image file: {tmp_path}/*.jpeg; it is a pattern, which no file "
        f"matches (zoo predict expands none)\n")
    assert main(["predict", model, str(tmp_path / "c.png")]) == 2   # no pattern: as it was
    assert capsys.readouterr().err == f"zoo: error: no such image file: {tmp_path}/c.png\n"

    (tmp_path / "notes.txt").write_text("not an image")
    listing = tmp_path / "list.txt"
    for lines, error in (
            (["a.png", "", "# the second one", "b.png"], "no such image file: # the second one"
             " (line 3 of {source})"),
            (["a.png", "b.png", "missing.png"], "no such image file: missing.png (line 3 of "
             "{source})"),
            (["a.png", "notes.txt"], "could not decode notes.txt as an image (PNG, JPEG, ...): "
             "unrecognised image format (line 2 of {source})"),
            (["", ".", "a.png"], ". is a directory, not an image file (line 2 of {source}): "
             "give the images in it (./*.png), or list them with --files-from FILE")):
        listing.write_text("\n".join(lines) + "\n")
        monkeypatch.chdir(tmp_path)
        assert main(["predict", model, "--files-from", str(listing)]) == 2
        assert capsys.readouterr().err == f"zoo: error: {error.format(source=listing)}\n"
        monkeypatch.setattr("sys.stdin", io.StringIO(listing.read_text()))
        assert main(["predict", model, "--files-from", "-"]) == 2
        assert capsys.readouterr().err == (
            f"zoo: error: {error.format(source='standard input')}\n")
    # An argument's error names no line.
    assert main(["predict", model, "a.png", "notes.txt"]) == 2
    assert capsys.readouterr().err == ("zoo: error: could not decode notes.txt as an image "
                                       "(PNG, JPEG, ...): unrecognised image format\n")


def test_zoo_predict_names_a_pipe_or_a_device_as_no_regular_file(exported, tmp_path, capsys):
    """A path that is there but no regular file (bash's ``<(...)``, a named pipe, a device)
    is named as such: it was ``no such image file``."""
    from zoo.cli import main
    base, _ = exported
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for path in (str(pipe), os.devnull):
        assert main(["predict", str(base / "lenet5"), path]) == 2
        assert capsys.readouterr().err == (f"zoo: error: {path} is not a regular file (a pipe "
                                           f"or a device): give an image file (save the image "
                                           f"to a file first)\n")
        with pytest.raises(ValueError, match="is not a regular file"):
            serving.decode_image(path)


def test_zoo_predict_reads_headers_first_and_pixels_batch_by_batch(exported, tmp_path, capsys,
                                                                   monkeypatch):
    """Before the model loads only headers are read (a missing or non-image file is still
    named at once); the pixels are decoded as their batches run, so memory stays bounded.
    A file damaged after its header fails the run with one line and no output."""
    from zoo.cli import main
    base, _ = exported
    paths = _digit_files(tmp_path, 6)
    decoded = []
    decode, load = serving.decode_image, serving.load
    monkeypatch.setattr(serving, "decode_image", lambda *a: (decoded.append(a[0]),
                                                             decode(*a))[1])
    at_load = []
    monkeypatch.setattr(serving, "load", lambda *a, **k: (at_load.append(len(decoded)),
                                                          load(*a, **k))[1])
    assert main(["predict", str(base / "lenet5"), *paths, "--batch-size", "2", "--no-xla",
                 "--format", "csv"]) == 0
    assert at_load == [0] and decoded == paths     # each file decoded once, after the load
    assert len(capsys.readouterr().out.splitlines()) == 1 + 6 * 5
    bad = _truncated_png(tmp_path / "cut.png")
    assert main(["predict", str(base / "lenet5"), *paths, bad, "--no-xla",
                 "--format", "csv"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"zoo: error: could not decode {bad} as an image")
    assert len(captured.err.splitlines()) == 1


def test_predict_removes_the_masks_a_killed_predict_left_half_written(tmp_path, capsys):
    """A zoo predict killed while it wrote masks (SIGKILL, SIGTERM) left its hidden
    .tmp-<pid>-<host>-* directory of masks in --out for good; the next predict into that directory
    removes it (a live one's stays)."""
    import subprocess
    import sys
    from zoo.cli import main
    model = zoo.unet(input_shape=(32, 32, 3), num_classes=3, padding="same", depth=2,
                     base_filters=4)
    base = tmp_path / "models"
    zoo.export(model, base, name="seg", lite=False)
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((32, 32, 3), "uint8")).save(image)
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    out = tmp_path / "masks"
    dead = zoo.common.temporary_prefix(".tmp-").replace(f"-{os.getpid()}-", f"-{gone.pid}-")
    (out / f"{dead}abc").mkdir(parents=True)
    (out / f"{dead}abc" / "scene_mask.png").write_bytes(b"half")
    live = zoo.common.temporary_prefix(".tmp-") + "def"
    (out / live).mkdir()
    assert main(["predict", str(base / "seg"), str(image), "--out", str(out),
                 "--no-xla"]) == 0
    capsys.readouterr()
    assert sorted(os.listdir(out)) == [live, "scene_mask.png"]


def test_predict_into_a_full_disk_names_out_and_leaves_the_masks_as_they_were(
        tmp_path, capsys, monkeypatch):
    """A mask written into a full disk ended zoo predict with "[Errno 28] No space left on
    device", naming no file; it names --out, whose earlier masks stay as they were."""
    import errno
    from zoo.cli import main
    model = zoo.unet(input_shape=(32, 32, 3), num_classes=3, padding="same", depth=2,
                     base_filters=4)
    base = tmp_path / "models"
    zoo.export(model, base, name="seg", lite=False)
    images = []
    for name in ("a", "b"):
        images.append(str(tmp_path / f"{name}.png"))
        Image.fromarray(np.zeros((32, 32, 3), "uint8")).save(images[-1])
    out = tmp_path / "masks"
    out.mkdir()
    (out / "a_mask.png").write_bytes(b"earlier")
    save = Image.Image.save

    def full_at_second(self, fp, *args, **kwargs):
        if os.path.basename(str(fp)) == "b_mask.png":
            open(fp, "wb").write(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_at_second)
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    assert main(["predict", str(base / "seg"), *images, "--out", str(out), "--no-xla"]) == 1
    assert capsys.readouterr().err == (f"zoo: error: [Errno 28] cannot write {str(out)!r}: "
                                       f"No space left on device\n")
    assert os.listdir(out) == ["a_mask.png"]
    assert (out / "a_mask.png").read_bytes() == b"earlier"


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler for the test, as a command line starts with (a test run
    before in the same process may have left another: the suite saw SIGINT change nothing),
    the process's own again after."""
    import signal
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_while_masks_are_renamed_into_place_waits_for_the_renames(tmp_path, capsys,
                                                                          monkeypatch,
                                                                          python_sigint):
    """Masks go into --out all or none, also in one holding an earlier run's masks: a
    Ctrl-C or SIGTERM that arrives while they are renamed into place stops the command
    once every mask is there (it stopped halfway: the first new masks beside the earlier
    run's others)."""
    import signal
    from zoo.cli import main
    model = zoo.unet(input_shape=(16, 16, 3), num_classes=2, padding="same", depth=2,
                     base_filters=4)
    base = tmp_path / "models"
    zoo.export(model, base, name="seg", lite=False)
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"p{i}.png"))
        Image.fromarray(np.full((16, 16, 3), 40 * i, "uint8")).save(paths[-1])
    out = tmp_path / "masks"
    out.mkdir()
    for i in range(4):
        (out / f"p{i}_mask.png").write_bytes(b"an earlier run's mask")
    replace = os.replace
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        calls = []

        def replace_and_signal(source, target):
            calls.append(target)
            replace(source, target)
            if len(calls) == 2:
                os.kill(os.getpid(), signum)

        monkeypatch.setattr(os, "replace", replace_and_signal)
        assert main(["predict", str(base / "seg"), *paths, "--out", str(out), "--no-xla"]) \
            == code
        monkeypatch.setattr(os, "replace", replace)
        assert len(calls) == 4 and sorted(os.listdir(out)) == [f"p{i}_mask.png"
                                                                for i in range(4)]
        for i in range(4):
            assert Image.open(out / f"p{i}_mask.png").size == (16, 16)
            (out / f"p{i}_mask.png").write_bytes(b"an earlier run's mask")
        capsys.readouterr()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_segmentation_masks_are_written_all_or_none(tmp_path, capsys):
    from zoo.cli import main
    model = zoo.unet(input_shape=(32, 32, 3), num_classes=3, padding="same", depth=2,
                     base_filters=4)
    base = tmp_path / "models"
    zoo.export(model, base, name="seg", lite=False)
    rng = np.random.RandomState(6)
    paths = []
    for i in range(5):
        path = tmp_path / f"p{i}.png"
        Image.fromarray(rng.randint(0, 256, (32 + 8 * (i % 2), 32, 3)).astype("uint8")).save(
            path)
        paths.append(str(path))
    out = tmp_path / "masks"
    out.mkdir()
    (out / "p0_mask.png").write_bytes(b"an earlier run's mask")
    bad = _truncated_png(tmp_path / "cut.png")
    assert main(["predict", str(base / "seg"), *paths, bad, "--out", str(out), "--no-xla",
                 "--batch-size", "2"]) == 2
    assert capsys.readouterr().out == ""
    assert os.listdir(out) == ["p0_mask.png"]           # as it was, and no hidden leftovers
    assert (out / "p0_mask.png").read_bytes() == b"an earlier run's mask"
    fresh = tmp_path / "fresh"
    assert main(["predict", str(base / "seg"), *paths, bad, "--out", str(fresh),
                 "--no-xla"]) == 2
    assert not fresh.exists()                           # made by the run that failed
    capsys.readouterr()

    assert main(["predict", str(base / "seg"), *paths, "--out", str(out), "--no-xla",
                 "--batch-size", "2", "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in records] == paths
    assert sorted(os.listdir(out)) == [f"p{i}_mask.png" for i in range(5)]
    for path, record in zip(paths, records):
        mask = np.asarray(Image.open(record["mask"]))
        image = np.asarray(Image.open(path))[None].astype("float32")
        # At the image's own size (40x32 or 32x32): the probabilities resized, then arg-max.
        probabilities = model(tf.image.resize(image, (32, 32)))
        want = np.asarray(tf.image.resize(probabilities, image.shape[1:3])).argmax(-1)[0]
        assert mask.shape == image.shape[1:3]
        np.testing.assert_array_equal(mask, want)
        assert record["share"] == pytest.approx(np.bincount(want.ravel()).max() / want.size,
                                                abs=1e-3)
    # A directory where a mask goes: named before any mask is written (the first masks were
    # renamed into place, then the rename onto the directory failed, naming a hidden path).
    (out / "p3_mask.png").unlink()
    (out / "p3_mask.png").mkdir()
    before = {name: (out / name).stat().st_mtime_ns for name in os.listdir(out)}
    assert main(["predict", str(base / "seg"), *paths, "--out", str(out), "--no-xla"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        f"zoo: error: --out {out} holds a directory p3_mask.png where the mask of {paths[3]} "
        f"goes: remove or rename it, or give another --out\n")
    assert {name: (out / name).stat().st_mtime_ns for name in os.listdir(out)} == before
    (tmp_path / "file").write_text("")
    assert main(["predict", str(base / "seg"), *paths, "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == (f"zoo: error: --out {tmp_path / 'file'} is a file; "
                                       f"masks go into a directory\n")


def test_pixels_beyond_the_raw_range_or_scaled_to_0_1_are_refused_not_mispredicted(servable):
    # The graph normalises raw pixels (0..255) itself: an image scaled to 0..1, normalised
    # already, or 16-bit was predicted as some other image, without a word.
    x = digits_arrays("test")[0][:4].astype("uint8")
    want = servable.predict(x)["probabilities"]
    scaled = (x / 255.0).astype("float32")
    cases = [
        (scaled, "lenet5 takes raw pixels from 0 to 255 (info['input']['raw_range']); "
                 "image 0 holds fractions from 0 to 1: pixels scaled to 0..1? Multiply them "
                 "by 255 (raw pixels that dark: round them to integers)."),
        (np.concatenate([x, scaled[2:3] * 1]).astype("float64"), "image 4 holds fractions"),
        ((x - 128.0) / 64.0, "lenet5 takes raw pixels from 0 to 255 "
                             "(info['input']['raw_range']; it normalises them itself); image "
                             "0 holds values from -2 to 1.98438."),
        (x.astype("uint16") * 257, "image 0 holds values from 0 to 65535. 16-bit pixels? "
                                   "Take their high byte (x >> 8), as a 16-bit PNG is read."),
        (x.astype("float32") + 0.5, "image 0 holds values from 0.5 to 255.5"),
    ]
    for images, message in cases:
        for form in (images, list(images), images.tolist()):
            with pytest.raises(ValueError, match=re.escape(message)):
                servable.predict(form, batch_size=3)
    # Over the REST API too, where the same check answers 400.
    from zoo.server import ServingError, handle_predict
    with pytest.raises(ServingError, match="pixels scaled to 0..1") as info:
        handle_predict(servable, {"instances": scaled.tolist()})
    assert info.value.status == 400
    # Raw pixels in any dtype, and dark ones (integers up to 1, a black image) still pass.
    for form in (x.astype("float32"), x.astype("uint16"), x.astype("int64"),
                 (x.astype("uint16") * 257) >> 8):
        np.testing.assert_allclose(servable.predict(form)["probabilities"], want, atol=1e-6)
    dark = np.zeros((2, 8, 8, 1), "float32")
    dark[0, 3, 3] = 1.0
    assert servable.predict(dark)["probabilities"].shape == (2, 10)


def test_an_export_without_dataset_info_takes_the_models_own_inputs(tmp_path):
    """Exported without info (zoo.export(model, base), zoo export of a bare .keras file),
    the signature takes the model's own inputs, with no normalisation: their range is
    unknown, so none is checked. The export recorded 0..255, and the model's inputs --
    normalised values, fractions of 0..1 -- were refused (the message even told to
    multiply fractions by 255, which the model would have mispredicted)."""
    tf.keras.utils.set_random_seed(0)
    model = zoo.lenet5(variant="modern")
    path = zoo.export(model, tmp_path, lite=False)
    assert json.load(open(os.path.join(path, "assets", "zoo.json")))["input"]["raw_range"] is None
    s = serving.load(path, jit_compile=False)
    assert s.raw_range is None
    rng = np.random.default_rng(0)
    for x in (rng.normal(0, 1, (3, 32, 32, 1)), rng.random((3, 32, 32, 1))):
        np.testing.assert_allclose(s.predict(x)["probabilities"],
                                   np.asarray(model(x.astype("float32"))), atol=1e-5)


def test_32_bit_pillow_images_keep_their_values(servable):
    # Pillow's conversion of a float ("F") or 32-bit integer ("I") image to 8 bits clips and
    # rounds: a float image of 0..1 became a black one, 16-bit values white, both predicted
    # without a word. Their values are taken as they are, and checked as an array's.
    x = digits_arrays("test")[0][0, ..., 0]
    for image in (x * 0.9 + 0.4, x * 0.5):
        np.testing.assert_allclose(
            servable.predict(Image.fromarray(image.astype("float32")))["probabilities"],
            servable.predict(image.astype("float32"))["probabilities"], atol=1e-6)
    with pytest.raises(ValueError, match="pixels scaled to 0..1"):
        servable.predict(Image.fromarray((x / 255).astype("float32")))
    with pytest.raises(ValueError, match=r"from 0 to 65535\. 16-bit pixels\?"):
        servable.predict([x, Image.fromarray(x.astype("int32") * 257)])


def test_zoo_predict_names_a_folder_and_what_to_give_instead(exported, tmp_path, capsys):
    from zoo.cli import main
    base, _ = exported
    folder = tmp_path / "my photos"
    folder.mkdir()
    assert main(["predict", str(base / "lenet5"), str(folder)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"zoo: error: {folder} is a directory, not an image file: give "
                            f"the images in it ('{folder}'/*.png), or list them with "
                            f"--files-from FILE\n")


@pytest.mark.parametrize("no_xla, want", [([], "auto"), (["--no-xla"], False)])
def test_no_xla_loads_the_export_without_xla_in_every_command(no_xla, want, monkeypatch,
                                                              tmp_path, capsys):
    """``--no-xla`` is ``jit_compile=False`` in zoo predict, zoo evaluate and zoo serve;
    without it, ``"auto"``."""
    from zoo import evaluation, server
    from zoo.cli import main
    seen = {}

    def record(command):
        def stand_in(*args, jit_compile, **kwargs):
            seen[command] = jit_compile
            raise ValueError("stopped here")
        return stand_in

    monkeypatch.setattr(serving, "load", record("predict"))
    monkeypatch.setattr(evaluation, "evaluate", record("evaluate"))
    monkeypatch.setattr(server, "serve", record("serve"))
    model = str(tmp_path)
    for argv in (["predict", model, "--digits", "1"], ["evaluate", model], ["serve", model]):
        assert main(argv + no_xla) == 2
    assert "zoo: error: stopped here" in capsys.readouterr().err
    assert seen == {"predict": want, "evaluate": want, "serve": want}


def test_predict_digits_counts_a_foreign_classifiers_classes_from_its_probabilities(
        tmp_path, capsys):
    """A classifier's SavedModel written by another tool, with ``probabilities`` only:
    ``--digits`` counts its arg-max as the answer (it ended in ``KeyError: 'classes'``)."""
    from zoo.cli import main

    class Classifier(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32,
                                                    name="images")])
        def serve(self, images):
            return {"probabilities": tf.nn.softmax(tf.reshape(images, [-1, 64])[:, 18:28] / 4)}

    module = Classifier()
    path = str(tmp_path / "foreign" / "1")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    x, y = digits_arrays("test")
    p = serving.load(path, jit_compile=False).predict(x[:20])["probabilities"]
    right = int((p.argmax(-1) == y[:20]).sum())
    assert 0 < right < 20
    assert main(["predict", path, "--digits", "20", "--runtime", "tensorflow", "--no-xla",
                 "--format", "csv"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"{right}/20 correct (foreign version 1, TensorFlow, XLA off)"
