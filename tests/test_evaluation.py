"""zoo.evaluation: an exported model evaluated on a dataset split through its serving
signature, against scikit-learn's metrics on the same predictions and against the Keras
model on the training pipeline; zoo evaluate."""

import io
import json
import os
import re

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn import metrics  # noqa: E402

import zoo  # noqa: E402
from zoo import data, serving  # noqa: E402
from zoo.cli import main  # noqa: E402
from zoo.evaluation import evaluate  # noqa: E402
from conftest import record_syncs_and_renames  # noqa: E402


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """LeNet-5 trained for two epochs on digits (far from perfect: every cell of the
    report matters), exported; with the Keras model and the training info."""
    keras.utils.set_random_seed(0)
    splits = data.load_splits("digits", image_size=(32, 32), batch_size=64)
    model = zoo.lenet5(variant="modern")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(splits.train, epochs=2, verbose=0, shuffle=False)   # the pipeline shuffles
    path = zoo.export(model, tmp_path_factory.mktemp("models"), info=splits.info, lite=False)
    return path, model, splits


def test_classification_report_equals_scikit_learns_on_the_served_predictions(digits_model):
    path, model, splits = digits_model
    # One Servable for both: loaded with the defaults, it keeps XLA or not by timing, and the
    # two differ by up to 6e-7 where the third and fourth classes of an image are 1e-5 apart
    # (a model trained on another CPU may have a closer pair).
    served = serving.load(path)
    r = evaluate(served, top_k=3)
    assert (r["model"], r["version"], r["dataset"], r["split"], r["task"], r["examples"]) == (
        "lenet5", 1, "digits", "test", "classification", 360)
    # The reference: the same signature on the embedded arrays (another reader of the data).
    x, y = data.digits_arrays("test")
    out = served.predict(x)
    assert 0.3 < r["accuracy"] < 0.99   # two epochs: neither chance nor perfect
    assert r["accuracy"] == metrics.accuracy_score(y, out["classes"])
    assert r["top_k"] == 3 and r["top_k_accuracy"] == metrics.top_k_accuracy_score(
        y, out["probabilities"], k=3, labels=range(10))
    assert r["confusion_matrix"] == metrics.confusion_matrix(y, out["classes"],
                                                             labels=range(10)).tolist()
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y, out["classes"], labels=range(10), zero_division=0)
    assert [c["label"] for c in r["per_class"]] == [str(i) for i in range(10)]
    np.testing.assert_allclose([c["precision"] for c in r["per_class"]], precision)
    np.testing.assert_allclose([c["recall"] for c in r["per_class"]], recall)
    np.testing.assert_allclose([c["f1"] for c in r["per_class"]], f1)
    assert [c["support"] for c in r["per_class"]] == support.tolist()
    np.testing.assert_allclose([r["macro"][k] for k in ("precision", "recall", "f1")],
                               [precision.mean(), recall.mean(), f1.mean()])
    # The Keras model on the training pipeline's test split: the same answers, but for
    # float rounding between the two graphs (at most one image of 360).
    keras_right = sum(int((model.predict(xb, verbose=0).argmax(-1) == yb.numpy()).sum())
                      for xb, yb in splits.test)
    assert abs(keras_right - round(r["accuracy"] * 360)) <= 1
    # Other splits, sizes and batch sizes give the split's count.
    assert evaluate(path, "digits", "validation", batch_size=7)["examples"] == 180


def test_a_classifiers_confusion_matrix_is_counted_without_a_k_by_k_array_per_batch(
        digits_model, monkeypatch):
    # Each batch's pairs were counted by a bincount of k * k cells: time and memory in k^2
    # per batch of 64 images (1,000 classes: 8 MB, 10,000: 800 MB a batch).
    path, _, _ = digits_model
    counted = []
    bincount = np.bincount

    def recorded(x, weights=None, minlength=0):
        counted.append(max(minlength, len(x)))
        return bincount(x, weights, minlength)

    reference = evaluate(path, batch_size=8)
    monkeypatch.setattr(np, "bincount", recorded)
    r = evaluate(path, batch_size=8)
    assert r["confusion_matrix"] == reference["confusion_matrix"]
    assert sum(map(sum, r["confusion_matrix"])) == 360
    assert all(n < 100 for n in counted), counted   # nothing of k * k = 100 cells a batch


def test_a_folder_of_colour_images_is_converted_to_the_models_channels(digits_model,
                                                                        tmp_path):
    """The digits' test images stored as RGB PNGs in a folder of their classes: the
    greyscale model sees them as ``zoo predict`` reads the files (libpng's grey of an RGB
    pixel r = g = b is that value), with the same report but for images that sit on a
    decision boundary (the files hold the digits' pixels, multiples of 255/16, truncated)."""
    path, _, _ = digits_model
    x, y = data.digits_arrays("test")
    for split in ("train", "test"):
        for i, (image, label) in enumerate(zip(x, y)):
            folder = tmp_path / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            if split == "test" or i < 60:   # train: some of every class
                Image.fromarray(np.repeat(image.astype("uint8"), 3, -1)).save(
                    folder / f"{i:03d}.png")
    raw = data.load_raw(str(tmp_path), "test", channels=1)
    assert raw.raw_shape == (None, None, 1) and raw.size == 360
    first, label = next(raw.dataset.as_numpy_iterator())   # the folder's first: class 0
    index = int(np.flatnonzero(y == 0)[0])
    assert first.shape == (8, 8, 1) and label == 0
    np.testing.assert_array_equal(first, x[index].astype("uint8"))
    on_folder = evaluate(path, f"folder:{tmp_path}")
    on_digits = evaluate(path, "digits")
    assert on_folder["examples"] == 360 and on_folder["dataset"] == f"folder:{tmp_path}"
    diff = np.abs(np.subtract(on_folder["confusion_matrix"], on_digits["confusion_matrix"]))
    assert diff.sum() <= 4   # each image that changes class moves two cells


def test_a_folder_in_other_channels_is_scored_on_the_pixels_zoo_predict_reads(digits_model,
                                                                              tmp_path):
    """A greyscale model on a folder of colour PNGs and JPEGs: evaluation decodes each file
    to one channel as ``zoo predict`` and ``zoo serve`` do (its decoder's grey), and scores
    the answers they give. It decoded the files in colour and turned them grey with
    ``rgb_to_grayscale``: up to 1 level off for the PNGs and 3.5 for the JPEGs, and a
    prediction of 360 tinted digits changed. A grey folder for a colour model likewise."""
    path, _, _ = digits_model
    x, y = data.digits_arrays("test")
    rng = np.random.default_rng(0)
    files = []
    for split, n in (("train", 60), ("test", 40)):   # train: some of every class
        for i, (image, label) in enumerate(zip(x[:n], y[:n])):
            folder = tmp_path / "colour" / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            tinted = image * rng.uniform(0.6, 1.0, 3) + rng.normal(0, 6, (8, 8, 3))
            rgb = Image.fromarray(np.clip(tinted, 0, 255).astype(np.uint8)).resize((32, 32))
            name = folder / (f"{i:02d}.jpg" if i % 2 else f"{i:02d}.png")
            rgb.save(name, quality=90)
            if split == "test":
                files.append(str(name))
    raw = data.load_raw(str(tmp_path / "colour"), "test", channels=1)
    pixels = [image for image, _ in raw.dataset.as_numpy_iterator()]
    files.sort(key=lambda f: (int(os.path.basename(os.path.dirname(f))), f))   # the listing
    assert len(pixels) == len(files) == 40
    for image, name in zip(pixels, files):
        np.testing.assert_array_equal(image, serving.decode_image(name, 1), err_msg=name)
    served = serving.load(path)
    out = served.predict(files)
    truth = np.asarray([int(os.path.basename(os.path.dirname(f))) for f in files])
    r = evaluate(served, str(tmp_path / "colour"))
    assert r["confusion_matrix"] == metrics.confusion_matrix(truth, out["classes"],
                                                             labels=range(10)).tolist()
    # A grey folder (one RGB file among grey ones) for a 3-channel input: each file's colours.
    for i, mode in enumerate(("L", "L", "L", "L", "RGB", "L")):
        folder = tmp_path / "grey" / ("train" if i < 4 else "test") / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).convert(mode).save(
            folder / f"{i}.jpg", quality=90)
    raw = data.load_raw(str(tmp_path / "grey"), "test", channels=3)
    for (image, _), name in zip(raw.dataset.as_numpy_iterator(), ("test/a/4.jpg",
                                                                   "test/b/5.jpg")):
        np.testing.assert_array_equal(image, serving.decode_image(
            str(tmp_path / "grey" / name), 3))


def test_datasets_of_other_classes_or_tasks_and_bad_arguments_are_refused(digits_model,
                                                                         tmp_path):
    path, _, _ = digits_model
    for label in ("cat", "dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((8, 8), 10 * i, "uint8")).save(
                tmp_path / "pets" / label / f"{i}.png")
    with pytest.raises(ValueError, match=re.escape(
            f"dataset 'folder:{tmp_path / 'pets'}' has the classes ['cat', 'dog'] (2), lenet5 "
            f"was trained on ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] (10): a model "
            f"is evaluated on data with its own classes, in its order.")):
        evaluate(path, str(tmp_path / "pets"))
    with pytest.raises(ValueError, match="^lenet5 is a classification model; dataset 'shapes' "
                                         "is a segmentation dataset.$"):
        evaluate(path, "shapes")
    with pytest.raises(ValueError, match="split must be one of"):
        evaluate(path, split="dev")
    with pytest.raises(ValueError, match=r"top_k must be a positive integer or None \(5\)\. "
                                         r"Received: top_k=0"):
        evaluate(path, top_k=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        evaluate(path, batch_size=0)
    with pytest.raises(ValueError, match="ignore_label is for segmentation datasets"):
        evaluate(path, ignore_label=255)


def _cells(root, n=30):
    """A segmentation folder of ``n`` grey images of 12-14x16 with 0/1 masks, a 255 border
    around each object."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.zeros((12 + i % 3, 16), "uint8")
        top, left = rng.integers(1, 5, 2)
        mask[top - 1:top + 7, left - 1:left + 9] = 255
        mask[top:top + 6, left:left + 8] = 1
        image = (rng.integers(0, 60, mask.shape) + 150 * (mask == 1)).astype("uint8")
        Image.fromarray(image).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    return root


def test_segmentation_iou_equals_scikit_learns_and_the_ignore_label_counts_nowhere(tmp_path):
    # A folder of 0/1 masks with a 255 border around each object, exported with it.
    root = _cells(tmp_path / "cells")
    keras.utils.set_random_seed(1)
    splits = data.load_splits(str(root), image_size=(16, 16), batch_size=8, ignore_label=255)
    model = zoo.unet(input_shape=(16, 16, 1), num_classes=2, padding="same", depth=1,
                     base_filters=4)
    path = zoo.export(model, tmp_path / "models", info=splits.info, lite=False)
    r = evaluate(path, split="train")   # the folder and ignore label recorded in zoo.json
    assert (r["task"], r["examples"], r["dataset"]) == ("segmentation", 24, f"folder:{root}")
    # The reference: each training image predicted alone, its mask brought to the image's
    # size as zoo predict writes it, scored by scikit-learn over the pixels not ignored.
    raw = data.load_raw(str(root), "train", ignore_label=255)
    s = serving.load(path, jit_compile=False)
    truth, predicted = [], []
    for image, mask in raw.dataset.as_numpy_iterator():
        p = serving.mask_at_size(s.predict(image)["probabilities"][0], mask.shape)
        truth.append(mask[mask != 255])
        predicted.append(p[mask != 255])
    truth, predicted = np.concatenate(truth), np.concatenate(predicted)
    all_pixels = sum(mask.size for _, mask in raw.dataset.as_numpy_iterator())
    assert r["pixels"] == len(truth) and 0 < all_pixels - len(truth) < all_pixels / 2
    assert r["pixel_accuracy"] == metrics.accuracy_score(truth, predicted)
    iou = metrics.jaccard_score(truth, predicted, labels=[0, 1], average=None,
                                zero_division=0)
    np.testing.assert_allclose([c["iou"] for c in r["per_class"]], iou)
    present = [k for k in (0, 1) if (truth == k).any() or (predicted == k).any()]
    np.testing.assert_allclose(r["mean_iou"], iou[present].mean())
    assert r["confusion_matrix"] == metrics.confusion_matrix(truth, predicted,
                                                             labels=[0, 1]).tolist()
    # Without the ignore label the masks' 255 is no class: refused as load refuses it.
    # The message names zoo evaluate's option too (it named zoo train's and zoo tune's only).
    with pytest.raises(ValueError, match=r"pass ignore_label=255 \(zoo train, zoo tune or "
                                         r"zoo evaluate --ignore-label 255\)"):
        evaluate(path, split="train", ignore_label=None)



def test_zoo_evaluate_prints_the_report_in_three_formats(digits_model, capsys):
    path, _, _ = digits_model
    expected = evaluate(path, runtime="tensorflow", jit_compile=False)
    assert main(["evaluate", path, "--format", "json", "--runtime", "tensorflow",
                 "--no-xla"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(expected))
    assert main(["evaluate", path, "--no-xla", "--runtime", "tensorflow"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"lenet5 version 1 on digits (test, 360 images, TensorFlow, XLA off): "
                        f"accuracy {expected['accuracy']:.4f}, top-5 accuracy "
                        f"{expected['top_k_accuracy']:.4f}")
    rows = [line for line in lines if line.startswith("| ")]
    assert rows[0].split("|")[1:-1] == [" label           ", "   precision ", "   recall ",
                                        "     f1 ", "   support "]
    three = next(line for line in rows if line.startswith("| 3 "))
    c = expected["per_class"][3]
    assert [cell.strip() for cell in three.split("|")[1:-1]] == [
        "3", f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}",
        str(c["support"])]
    assert any(line.startswith("| (macro average) ") and line.rstrip().endswith("360 |")
               for line in rows)
    confusion = rows[rows.index(next(r for r in rows if "true \\ predicted" in r)) + 1:]
    assert [[int(v) for v in line.split("|")[2:-1]] for line in confusion] == \
        expected["confusion_matrix"]
    assert main(["evaluate", path, "--format", "csv", "--split", "val", "--top-k", "2",
                 "--no-xla"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "label,precision,recall,f1,support" and \
        len(out.splitlines()) == 12 and out.splitlines()[-1].endswith(",180")
    assert err.startswith("lenet5 version 1 on digits (validation, 180 images, ") and \
        ", top-2 accuracy " in err


@pytest.mark.parametrize("args, message", [
    (["--split", "dev"], "split must be one of 'train', 'validation' (or 'val'), 'test', "
                         "'all'. Received: split='dev'"),
    (["--top-k", "0"], "argument --top-k: expected a positive integer; received '0'"),
    (["--batch-size", "2.5"], "argument --batch-size: expected a positive integer; "
                              "received '2.5'"),
    (["--ignore-label", "x"], "--ignore-label takes a mask value (an integer from 0 to 65535) "
                              "or 'none'. Received: 'x'"),
    (["--dataset", "shapes"], "lenet5 is a classification model; dataset 'shapes' is a "
                              "segmentation dataset."),
    (["--dataset", "mnits"], "Unknown dataset 'mnits'. Did you mean: mnist, digits?"),
])
def test_zoo_evaluate_refuses_bad_input_in_one_line(digits_model, capsys, args, message):
    path, _, _ = digits_model
    try:
        code = main(["evaluate", path, "--no-xla", *args])
    except SystemExit as exc:   # argparse's refusals
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(("zoo: error: ", "zoo evaluate: error: "))
    assert message in err


def test_zoo_evaluate_names_a_missing_model_and_an_export_without_a_dataset(tmp_path,
                                                                            capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err == (f"zoo: error: model directory not found: "
                                       f"{tmp_path / 'nothing'}\n")
    path = zoo.export(zoo.lenet5(), tmp_path, lite=False)
    with pytest.raises(ValueError, match="^lenet5 version 1 records no dataset"):
        evaluate(path)


def test_an_unpadded_unet_is_scored_on_the_centre_as_training_scores_it(tmp_path):
    """A U-Net with unpadded convolutions answers for the centre of the resized image: its
    masks are compared there (resized to the input, then cropped), as zoo.train's test
    split is, and agree with the Keras model on that pipeline."""
    from zoo.train import _crop_masks
    root = _cells(tmp_path / "cells")
    splits = data.load_splits(str(root), image_size=(20, 20), batch_size=8, ignore_label=255)
    keras.utils.set_random_seed(3)
    model = zoo.unet(input_shape=(20, 20, 1), num_classes=2, padding="valid", depth=1,
                     base_filters=4)
    assert model.output_shape[1:3] == (4, 4)
    path = zoo.export(model, tmp_path / "models", info=splits.info, lite=False)
    r = evaluate(path, split="train", runtime="tensorflow", jit_compile=False)
    truth, predicted = [], []
    for x, y in _crop_masks(data.load(str(root), "train", image_size=(20, 20), shuffle=False,
                                      ignore_label=255)[0], (4, 4)):
        p, y = model.predict(x, verbose=0).argmax(-1), y.numpy()
        truth.append(y[y != 255])
        predicted.append(p[y != 255])
    truth, predicted = np.concatenate(truth), np.concatenate(predicted)
    assert r["pixels"] == len(truth) and len(truth) > 24 * 4
    assert r["confusion_matrix"] == metrics.confusion_matrix(truth, predicted,
                                                             labels=[0, 1]).tolist()


def test_a_tensorflow_datasets_split_under_mock_data(digits_model, tmp_path):
    """mnist's 28x28 test images (mocked: nothing is downloaded) through the digits model,
    whose graph resizes them to 32x32: the same classes, so it may be evaluated there."""
    import tensorflow_datasets as tfds
    path, _, _ = digits_model
    with tfds.testing.mock_data(num_examples=6):
        raw = data.load_raw("mnist", "test", data_dir=str(tmp_path))
        images, labels = map(np.stack, zip(*raw.dataset.as_numpy_iterator()))
        r = evaluate(path, "mnist", data_dir=str(tmp_path), runtime="tensorflow",
                     jit_compile=False)
    assert images.shape == (6, 28, 28, 1) and raw.raw_shape == (28, 28, 1)
    out = serving.load(path, jit_compile=False).predict(images)
    assert (r["dataset"], r["examples"]) == ("mnist", 6)
    assert r["confusion_matrix"] == metrics.confusion_matrix(labels, out["classes"],
                                                             labels=range(10)).tolist()


def test_mask_at_size_reads_one_sigmoid_unit_as_the_signature_does():
    """A binary U-Net with one sigmoid unit gives probabilities [h, w, 1], P(class 1): its
    arg-max was 0 everywhere, so every mask brought to an image's size was background."""
    p = np.array([[[0.2], [0.7]], [[0.5], [0.9]]], "float32")
    assert serving.mask_at_size(p, (2, 2)).tolist() == [[0, 1], [0, 1]]   # 0.5: class 0
    assert serving.mask_at_size(p, (2, 4)).tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]
    two = np.concatenate([1 - p, p], -1)
    assert serving.mask_at_size(p, (5, 3)).tolist() == serving.mask_at_size(two, (5, 3)).tolist()
    for empty in ((2, 2, 0), (0, 2, 1)):   # no classes: None came back
        with pytest.raises(ValueError, match=re.escape(
                f"probabilities must be one image's [height, width, classes], none of them "
                f"0; received shape {empty}")):
            serving.mask_at_size(np.zeros(empty), (4, 4))


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_a_one_sigmoid_unit_unet_is_scored_on_its_masks(tmp_path, padding):
    """A U-Net with one sigmoid unit (class 1 where P > 0.5, as the signature's mask reads
    it) was scored as if it predicted background everywhere: at each image's size
    ("same") and on the centre ("valid")."""
    root = _cells(tmp_path / "cells", n=10)
    splits = data.load_splits(str(root), image_size=(16, 16), batch_size=8, ignore_label=255)
    inputs = keras.Input((16, 16, 1))
    unit = keras.layers.Conv2D(1, 5 if padding == "valid" else 1, padding=padding,
                               activation="sigmoid")
    model = keras.Model(inputs, unit(inputs))
    unit.set_weights([np.full(unit.get_weights()[0].shape, 3.0, "float32"),
                      np.zeros(1, "float32")])   # bright pixels (the objects): class 1
    path = zoo.export(model, tmp_path / "models", info=splits.info, lite=False)
    r = evaluate(path, split="train", runtime="tensorflow", jit_compile=False)
    s = serving.load(path, jit_compile=False, runtime="tensorflow")
    truth, predicted = [], []
    for image, mask in data.load_raw(str(root), "train", ignore_label=255).dataset \
            .as_numpy_iterator():
        out = s.predict(image)
        if padding == "same":   # the probability of class 1 resized to the image's size
            p = tf.image.resize(out["probabilities"][0], mask.shape).numpy()[..., 0] > 0.5
        else:                   # the signature's mask, on the centre of the resized mask
            p = out["mask"][0]
            mask = data.resize_masks(mask[..., None], (16, 16))[..., 0].numpy()[2:-2, 2:-2]
        truth.append(mask[mask != 255])
        predicted.append(p[mask != 255].astype(int))
    truth, predicted = np.concatenate(truth), np.concatenate(predicted)
    expected = metrics.confusion_matrix(truth, predicted, labels=[0, 1])
    assert expected[:, 1].sum() > 50 and r["pixels"] == len(truth)
    assert r["confusion_matrix"] == expected.tolist()


def _photos_abc(root):
    """A folder of class folders a/ and b/ of 30 grey 6x6 images each, brighter by class,
    and c/ of one image (which the 80/10/10 split keeps in train)."""
    rng = np.random.default_rng(0)
    for k, (label, n) in enumerate((("a", 30), ("b", 30), ("c", 1))):
        (root / label).mkdir(parents=True)
        for i in range(n):
            value = int(np.clip(60 + 120 * k + rng.normal(0, 70), 0, 255))
            Image.fromarray(np.full((6, 6), value, "uint8")).save(root / label / f"{i}.png")
    return root


def test_the_macro_average_leaves_out_a_class_neither_in_the_split_nor_predicted(tmp_path):
    """A folder's class with one image stays in train (the split 80/10/10 holds none of it
    out): in the test split it has no example and no prediction, and its precision and
    recall (0 by zero_division) pulled the macro average down by a third."""
    root = _photos_abc(tmp_path / "photos")
    splits = data.load_splits(str(root), image_size=(6, 6), batch_size=8)
    inputs = keras.Input((6, 6, 1))
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    dense.set_weights([np.array([[-4.0, 4.0, 0.0]], "float32"),
                       np.array([0.0, 0.0, -50.0], "float32")])   # never c
    path = zoo.export(model, tmp_path / "models", info=splits.info, lite=False)
    r = evaluate(path, runtime="tensorflow", jit_compile=False)
    images, y = zip(*data.load_raw(str(root), "test").dataset.as_numpy_iterator())
    predicted = serving.load(path, jit_compile=False).predict(list(images))["classes"]
    assert r["examples"] == 6 and sorted(set(y)) == [0, 1] and 2 not in predicted
    assert r["per_class"][2] == {"label": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0,
                                 "support": 0}
    expected = metrics.precision_recall_fscore_support(y, predicted, average="macro",
                                                       zero_division=0)[:3]
    assert 0 < expected[2] < 1
    np.testing.assert_allclose([r["macro"][k] for k in ("precision", "recall", "f1")],
                               expected)


def _two_classes(root, n=10):
    """A folder of class folders neg/ and pos/ of 6x6 grey images, darker for neg."""
    rng = np.random.default_rng(0)
    for k, label in enumerate(("neg", "pos")):
        (root / label).mkdir(parents=True)
        for i in range(n):
            value = int(np.clip(80 + 100 * k + rng.normal(0, 60), 0, 255))
            Image.fromarray(np.full((6, 6), value, "uint8")).save(root / label / f"{i}.png")
    return root


def test_a_one_sigmoid_unit_classifier_ranks_both_classes_for_top_k(tmp_path):
    """A binary classifier's one sigmoid unit is P(class 1): top-1 accuracy ranks 1 - p and
    p, and equals the accuracy (the unit alone would rank class 0 first every time)."""
    root = _two_classes(tmp_path / "photos")
    splits = data.load_splits(str(root), image_size=(6, 6), batch_size=8)
    inputs = keras.Input((6, 6, 1))
    dense = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    dense.set_weights([np.array([[4.0]], "float32"), np.zeros(1, "float32")])
    path = zoo.export(model, tmp_path / "models", info=splits.info, lite=False)
    r = evaluate(path, split="train", top_k=1, batch_size=5, runtime="tensorflow",
                 jit_compile=False)
    images, y = zip(*data.load_raw(str(root), "train").dataset.as_numpy_iterator())
    predicted = serving.load(path, jit_compile=False).predict(list(images))["classes"]
    assert r["examples"] == 16 and 0.5 < r["accuracy"] < 1
    assert r["accuracy"] == metrics.accuracy_score(y, predicted)
    assert (r["top_k"], r["top_k_accuracy"]) == (1, r["accuracy"])
    assert evaluate(path, split="train", top_k=2)["top_k_accuracy"] is None   # 2 classes


def test_a_segmentation_model_on_a_classification_dataset_names_both_tasks(tmp_path):
    """The model's ignore label (255) was applied to the classification dataset, which
    refused it: 'ignore_label is for segmentation datasets', though none was given."""
    root = _cells(tmp_path / "cells", n=10)
    splits = data.load_splits(str(root), image_size=(16, 16), batch_size=8, ignore_label=255)
    model = zoo.unet(input_shape=(16, 16, 1), num_classes=2, padding="same", depth=1,
                     base_filters=4)
    path = zoo.export(model, tmp_path / "models", info=splits.info, lite=False)
    photos = _two_classes(tmp_path / "photos")
    with pytest.raises(ValueError, match=re.escape(
            f"unet is a segmentation model; dataset 'folder:{photos}' is a classification "
            f"dataset.")):
        evaluate(path, str(photos))
    with pytest.raises(ValueError, match="ignore_label is for segmentation datasets"):
        evaluate(path, str(photos), ignore_label=7)   # given: refused as given


def test_mean_iou_leaves_out_a_class_in_no_mask_and_no_prediction_as_keras(tmp_path):
    """labels.txt lists a third class that no mask holds and the model never predicts: its
    IoU is 0 in the table, and mean IoU is over the other two, as Keras' MeanIoU."""
    root = _cells(tmp_path / "cells", n=10)
    (root / "labels.txt").write_text("background\ncell\nunused\n")
    splits = data.load_splits(str(root), image_size=(16, 16), batch_size=8, ignore_label=255)
    inputs = keras.Input((16, 16, 1))
    conv = keras.layers.Conv2D(3, 1, activation="softmax")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([np.array([[[[-3.0, 3.0, 0.0]]]], "float32"),
                      np.array([0.0, 0.0, -50.0], "float32")])   # never "unused"
    path = zoo.export(model, tmp_path / "models", info=splits.info, lite=False)
    r = evaluate(path, split="train", runtime="tensorflow", jit_compile=False)
    s = serving.load(path, jit_compile=False, runtime="tensorflow")
    reference = keras.metrics.MeanIoU(num_classes=3, ignore_class=255)
    for image, mask in data.load_raw(str(root), "train", ignore_label=255).dataset \
            .as_numpy_iterator():
        p = tf.image.resize(s.predict(image)["probabilities"][0], mask.shape).numpy()
        reference.update_state(mask, p.argmax(-1))
    assert r["per_class"][2]["iou"] == 0.0 and r["confusion_matrix"][2] == [0, 0, 0]
    assert sorted(r["per_class"][0]) == ["iou", "label", "pixels", "precision", "recall"]
    assert [c["pixels"] for c in r["per_class"]] == [sum(row) for row in r["confusion_matrix"]]
    assert r["mean_iou"] > 0.5
    np.testing.assert_allclose(r["mean_iou"], float(reference.result()), rtol=1e-6)


def test_split_all_scores_every_image_once_whatever_the_layout(digits_model, tmp_path,
                                                                capsys):
    """A folder of new images in class folders is split 80/10/10, so its test split held
    a tenth of them: "all" scores each image once (a folder whose test split is its
    validation split counts those once), and a test split that is the validation split
    is said to be so."""
    path, _, _ = digits_model
    x, y = data.digits_arrays("test")
    for i, (image, label) in enumerate(zip(x, y)):
        for root in ("whole", "train_only/train"):
            folder = tmp_path / root / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[..., 0].astype("uint8")).save(folder / f"{i:03d}.png")
    whole, train_only = tmp_path / "whole", tmp_path / "train_only"
    assert evaluate(path, str(whole))["examples"] == 36              # the 10% test part
    every = evaluate(path, str(whole), "all")
    assert (every["split"], every["examples"]) == ("all", 360)
    assert data.load_raw(str(whole), "all").size == 360
    # The same images, in the digits' order and as uint8 PNGs: the same confusion matrix.
    out = serving.load(path, jit_compile=False).predict(x.astype("uint8"))
    assert every["confusion_matrix"] == metrics.confusion_matrix(
        y, out["classes"], labels=range(10)).tolist()
    assert evaluate(path, str(train_only), "all")["confusion_matrix"] == \
        every["confusion_matrix"]                                     # validation once
    assert evaluate(path, "digits", "ALL")["examples"] == 1797
    assert main(["evaluate", path, "--dataset", str(train_only), "--no-xla"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"lenet5 version 1 on folder:{train_only} (test: the validation "
                            f"split, the dataset has no test split, 36 images, ")
    assert evaluate(path, str(train_only))["test_is_validation"] is True
    assert evaluate(path, "digits")["test_is_validation"] is False


class _Answers(serving.Servable):
    """A stand-in for a loaded export: answers each image with ``answer(image)``, class
    probabilities ``[K]`` (classification) or ``[h, w, K]`` at the image's size
    (segmentation), so that a report can be checked on known predictions."""

    def __init__(self, labels, answer, dataset=None, task="classification", **info):
        self.name, self.version, self.task, self.channels = "m", 1, task, 1
        self.labels, self.answer = list(labels), answer
        self.info = {"dataset": {"name": dataset}, "input": {"model_input_shape": [8, 8, 1]},
                     **info}
        self.runtime, self.jit_compiled, self.runtime_choices = "tensorflow", False, {}
        k = len(self.labels) or info.get("num_classes")
        self.signature = {"outputs": {"probabilities": {"shape": [None, k]}}}

    def predict(self, images, batch_size=None):
        p = np.stack([self.answer(image) for image in images]).astype("float32")
        return {"probabilities": p, "classes": p.argmax(-1)}

    def iter_predict(self, images, batch_size=None):
        yield range(len(images)), {"probabilities": [self.answer(image) for image in images]}


def test_a_model_without_class_names_is_refused_on_a_dataset_of_another_class_count():
    """An export whose zoo.json names no classes is checked by its class count."""
    model = _Answers([], None, "digits", num_classes=3)
    with pytest.raises(ValueError, match=r"^dataset 'digits' has 10 classes, m predicts 3\.$"):
        evaluate(model)


@pytest.mark.parametrize("n, shown", [
    (12, "['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11'] (12)"),
    (13, "['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', ...] (13)")])
def test_a_refusal_names_at_most_twelve_classes(n, shown):
    model = _Answers([str(i) for i in range(n)], None, "digits")
    with pytest.raises(ValueError, match=re.escape(f"m was trained on {shown}: a model")):
        evaluate(model)


def test_top_k_is_a_positive_integer(tmp_path):
    for top_k in (2.5, True, 0):
        with pytest.raises(ValueError, match=re.escape(
                f"top_k must be a positive integer or None (5). Received: top_k={top_k!r}")):
            evaluate(str(tmp_path), top_k=top_k)


def test_top_k_is_refused_for_a_segmentation_model(tmp_path, monkeypatch, capsys):
    # As zoo predict refuses --top-k for one; zoo evaluate ignored it.
    model = _Answers(["a", "b"], None, "shapes", task="segmentation")
    message = ("top_k (--top-k) ranks a classifier's labels; m is a segmentation model, "
               "scored by pixel accuracy and IoU. Received: top_k=3")
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluate(model, top_k=3)
    monkeypatch.setattr(serving, "load", lambda *args, **kwargs: model)
    assert main(["evaluate", str(tmp_path), "--top-k", "3"]) == 2
    assert capsys.readouterr().err == f"zoo: error: {message}\n"


def test_the_centre_of_a_mask_is_cropped_by_its_height_and_width():
    from zoo.evaluation import _centre
    mask = np.arange(7 * 10).reshape(7, 10)
    assert _centre(mask, (3, 4)).tolist() == mask[2:5, 3:7].tolist()
    assert _centre(mask, (7, 10)).tolist() == mask.tolist()


def test_the_macro_average_counts_a_class_predicted_but_in_no_label(tmp_path):
    """scikit-learn's default classes are those in the labels or the predictions: a class
    the split holds no example of but the model predicts counts in the macro average (its
    precision 0), as the confusion matrix's column shows it."""
    root = _photos_abc(tmp_path / "photos")

    def answer(image):   # c for the brightest images, though the test split holds none
        return np.eye(3)[int(np.searchsorted([120, 190], image.mean()))]

    r = evaluate(_Answers("abc", answer, str(root)))
    images, y = zip(*data.load_raw(str(root), "test").dataset.as_numpy_iterator())
    predicted = [int(answer(image).argmax()) for image in images]
    assert 2 not in y and 2 in predicted and r["examples"] == 6
    assert r["confusion_matrix"] == metrics.confusion_matrix(y, predicted,
                                                             labels=[0, 1, 2]).tolist()
    expected = metrics.precision_recall_fscore_support(y, predicted, average="macro",
                                                       zero_division=0)[:3]
    np.testing.assert_allclose([r["macro"][k] for k in ("precision", "recall", "f1")],
                               expected)


def _stand_in_report(task, k):
    """A report as evaluate returns it, of ``k`` classes."""
    labels = [f"c{i}" for i in range(k)]
    result = {"model": "m", "version": 2, "dataset": "d", "split": "test", "task": task,
              "examples": 3, "test_is_validation": False, "runtime": "LiteRT",
              "confusion_matrix": np.eye(k, dtype=int).tolist()}
    if task == "segmentation":
        result.update(pixel_accuracy=0.123456, mean_iou=0.5, pixels=1234567, per_class=[
            {"label": c, "precision": 1.0, "recall": 1.0, "iou": 2 / 3, "pixels": 1}
            for c in labels])
    else:
        result.update(accuracy=0.987654, top_k=5, top_k_accuracy=None, per_class=[
            {"label": c, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
            for c in labels], macro={"precision": 1.0, "recall": 1.0, "f1": 1.0})
    return result


def test_zoo_evaluate_passes_each_option_on(monkeypatch, tmp_path, capsys):
    from zoo import evaluation
    seen = []

    def stand_in(*args, **kwargs):
        seen.append((args, kwargs))
        return _stand_in_report("classification", 2)

    monkeypatch.setattr(evaluation, "evaluate", stand_in)
    model = str(tmp_path)
    assert main(["evaluate", model, "--dataset", "mnist", "--split", "train", "--batch-size",
                 "7", "--top-k", "2", "--data-dir", "dd", "--ignore-label", "255",
                 "--runtime", "litert", "--format", "json"]) == 0
    assert seen.pop() == ((model, "mnist", "train"), {
        "batch_size": 7, "top_k": 2, "data_dir": "dd", "ignore_label": 255,
        "runtime": "litert", "jit_compile": "auto"})
    for text, ignore in ((" None ", None), ("none", None), ("0", 0)):
        assert main(["evaluate", model, "--ignore-label", text, "--format", "json"]) == 0
        assert seen.pop() == ((model, None, "test"), {
            "batch_size": None, "top_k": None, "data_dir": None, "ignore_label": ignore,
            "runtime": "auto", "jit_compile": "auto"})
    capsys.readouterr()
    assert main(["evaluate", model, "--dataset", " "]) == 2
    assert capsys.readouterr().err == ("zoo: error: --dataset needs a dataset name or folder. "
                                       "Received: ''\n")
    assert seen == []


@pytest.mark.parametrize("k, printed", [(20, True), (21, False)])
def test_zoo_evaluate_prints_a_segmentation_report_and_a_confusion_matrix_up_to_20_classes(
        monkeypatch, tmp_path, capsys, k, printed):
    from zoo import evaluation
    monkeypatch.setattr(evaluation, "evaluate",
                        lambda *a, **kw: _stand_in_report("segmentation", k))
    assert main(["evaluate", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("m version 2 on d (test, 3 images, LiteRT): pixel accuracy 0.1235, "
                        "mean IoU 0.5000 (1,234,567 pixels)")
    assert [cell.strip() for cell in lines[4].split("|")[1:-1]] == [
        "c0", "0.6667", "1.0000", "1.0000", "1"]
    assert any("true \\ predicted" in line for line in lines) == printed
    assert (lines[-1] == f"(confusion matrix of {k} classes: --format json)") != printed


def test_zoo_evaluate_says_no_top_k_accuracy_for_a_model_of_k_classes_or_fewer(
        monkeypatch, tmp_path, capsys):
    from zoo import evaluation
    monkeypatch.setattr(evaluation, "evaluate",
                        lambda *a, **kw: _stand_in_report("classification", 3))
    assert main(["evaluate", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "m version 2 on d (test, 3 images, LiteRT): accuracy 0.9877")


def test_an_export_without_its_zoo_json_is_evaluated_on_the_dataset_given(digits_model,
                                                                          tmp_path):
    """zoo.serving.load takes a SavedModel without its zoo.json (no labels, no input
    record): a classifier's report needs neither, and it failed on the missing input
    record ("zoo: error: 'input'")."""
    import shutil
    path, _, _ = digits_model
    bare = tmp_path / "lenet5" / "1"
    shutil.copytree(path, bare)
    os.remove(bare / "assets" / "zoo.json")
    r = evaluate(str(bare), "digits", runtime="tensorflow", jit_compile=False)
    expected = evaluate(path, runtime="tensorflow", jit_compile=False)
    assert (r["examples"], r["confusion_matrix"]) == (360, expected["confusion_matrix"])


@pytest.mark.parametrize("units", [10, 1])
def test_a_classifier_without_a_classes_output_is_scored_by_its_probabilities(tmp_path,
                                                                               units):
    """A classifier's SavedModel written by another tool answers ``probabilities`` only:
    its classes are their arg-max (one sigmoid unit: class 1 above 0.5); the report ended
    in ``KeyError: 'classes'``."""
    side = 8 if units == 10 else 6   # the digits', the photos' size

    class Classifier(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, side, side, 1], tf.float32,
                                                    name="images")])
        def serve(self, images):
            flat = tf.reshape(images, [-1, side * side])
            if units == 1:
                return {"probabilities": tf.sigmoid((flat[:, :1] - 120.0) / 20.0)}
            return {"probabilities": tf.nn.softmax(flat[:, 18:28] / 4.0)}

    module = Classifier()
    path = str(tmp_path / "foreign" / "1")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    dataset = "digits" if units == 10 else str(_two_classes(tmp_path / "photos"))
    split = "test" if units == 10 else "train"
    r = evaluate(path, dataset, split, top_k=1, runtime="tensorflow", jit_compile=False)
    images, y = zip(*data.load_raw(dataset, split).dataset.as_numpy_iterator())
    p = serving.load(path, jit_compile=False).predict(np.stack(images))["probabilities"]
    predicted = (p[:, 0] > 0.5).astype(int) if units == 1 else p.argmax(-1)
    assert len(set(predicted)) > 1 and 0 < r["accuracy"] < 1
    assert r["accuracy"] == metrics.accuracy_score(y, predicted) == r["top_k_accuracy"]
    k = max(units, 2)
    assert r["confusion_matrix"] == metrics.confusion_matrix(y, predicted,
                                                             labels=range(k)).tolist()
    np.testing.assert_allclose(
        [r["macro"][key] for key in ("precision", "recall", "f1")],
        metrics.precision_recall_fscore_support(y, predicted, average="macro",
                                                zero_division=0)[:3])


def test_an_export_without_its_zoo_json_is_refused_on_a_dataset_of_other_classes(
        digits_model, tmp_path):
    """Without zoo.json the class count comes from the signature's probabilities: a
    10-class model on a 3-class folder gets the class-count refusal (it ended in numpy's
    reshape error)."""
    import shutil
    path, _, _ = digits_model
    bare = tmp_path / "lenet5" / "1"
    shutil.copytree(path, bare)
    os.remove(bare / "assets" / "zoo.json")
    folder = tmp_path / "abc"
    for label in ("a", "b", "c"):
        (folder / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((8, 8), 25 * i, "uint8")).save(folder / label / f"{i}.png")
    with pytest.raises(ValueError, match=r"^dataset 'folder:[^']*abc' has 3 classes, lenet5 "
                                         r"predicts 10\.$"):
        evaluate(str(bare), f"folder:{folder}", runtime="tensorflow", jit_compile=False)


def _foreign_segmenter(path, in_hw, crop, classes=2):
    """A SavedModel written by another tool: images ``[None, *in_hw, 1]`` to per-pixel
    probabilities of ``classes`` classes (any beyond 2 never predicted) and a mask, ``crop``
    pixels cut from each side (as unpadded convolutions do), no zoo.json."""
    class Segmenter(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, *in_hw, 1], tf.float32,
                                                    name="images")])
        def serve(self, images):
            p = tf.sigmoid((images - 100.0) / 20.0)       # bright pixels are class 1
            if crop:
                p = p[:, crop:-crop, crop:-crop]
            probabilities = tf.concat([1.0 - p, p] + [p * 0.0] * (classes - 2), -1)
            return {"probabilities": probabilities,
                    "mask": tf.argmax(probabilities, -1)}

    module = Segmenter()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return str(path)


@pytest.mark.parametrize("in_hw, crop", [((None, None), 0), ((16, 16), 3)])
def test_a_segmentation_export_without_zoo_json_is_scored_by_its_signature(tmp_path, in_hw,
                                                                           crop):
    """Without zoo.json a segmentation export's signature tells how its masks meet the
    images: an output of any size (that of each image) or a fixed input size whose centre
    the output covers. Both failed on the missing input record ("zoo: error: 'input'")."""
    root = _cells(tmp_path / "cells", n=10)
    if in_hw[0] is not None:    # a fixed-size model: images of its size only
        for kind in ("images", "masks"):
            for f in (root / kind).iterdir():
                Image.open(f).resize((16, 16), Image.NEAREST).save(f)
    path = _foreign_segmenter(tmp_path / "seg" / "1", in_hw, crop)
    r = evaluate(path, str(root), split="all", ignore_label=255, runtime="tensorflow",
                 jit_compile=False)
    truth, predicted = [], []
    for f in sorted((root / "images").iterdir()):
        image = np.asarray(Image.open(f), "float32")
        mask = np.asarray(Image.open(root / "masks" / f.name))
        p = (image > 100).astype(np.int64)
        if crop:
            p, mask = p[crop:-crop, crop:-crop], mask[crop:-crop, crop:-crop]
        truth.append(mask[mask != 255])
        predicted.append(p[mask != 255])
    truth, predicted = np.concatenate(truth), np.concatenate(predicted)
    assert (r["task"], r["examples"], r["pixels"]) == ("segmentation", 10, len(truth))
    assert r["confusion_matrix"] == metrics.confusion_matrix(truth, predicted,
                                                             labels=[0, 1]).tolist()
    # The class count comes from the signature, as a classifier's does.
    path = _foreign_segmenter(tmp_path / "three" / "seg" / "1", in_hw, crop, classes=3)
    with pytest.raises(ValueError, match=r"^dataset 'folder:[^']*cells' has 2 classes, seg "
                                         r"predicts 3\.$"):
        evaluate(path, str(root), split="all", ignore_label=255, runtime="tensorflow",
                 jit_compile=False)


def _resizing_segmenter(path):
    """A SavedModel without zoo.json taking images of any size and answering 8x8 masks:
    the centre of the 12x12 its graph resizes them to."""
    class Resizing(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32,
                                                    name="images")])
        def serve(self, images):
            p = tf.sigmoid(tf.image.resize(images, (12, 12))[:, 2:-2, 2:-2])
            probabilities = tf.concat([1.0 - p, p], -1)
            return {"probabilities": probabilities, "mask": tf.argmax(probabilities, -1)}

    module = Resizing()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def test_a_segmentation_export_without_zoo_json_that_resizes_images_is_refused(tmp_path):
    """An export taking images of any size and answering masks of a fixed size resizes
    them in its graph, to a size only its zoo.json records: without it, the refusal says
    so (it failed on the missing input record, "zoo: error: 'input'")."""
    path = tmp_path / "seg" / "1"
    _resizing_segmenter(path)
    root = _cells(tmp_path / "cells", n=4)
    with pytest.raises(ValueError, match=re.escape(
            f"seg's signature takes images of any size and answers masks of 8x8; the input "
            f"size its graph resizes images to, at which the masks are scored, is in "
            f"{path / 'assets' / 'zoo.json'}, which is missing: restore it (zoo export "
            f"writes it).")):
        evaluate(str(path), str(root), split="all", ignore_label=255, runtime="tensorflow",
                 jit_compile=False)


def test_zoo_predict_refuses_a_segmentation_export_without_zoo_json_that_resizes_images(
        tmp_path, capsys):
    """zoo predict places masks on the images as zoo evaluate scores them: an export
    without its zoo.json whose graph resizes images to a size only that file records is
    refused in one line, with nothing written (it wrote 8x8 masks, the model's output, for
    images of other sizes, where zoo evaluate refused the same export)."""
    path = tmp_path / "seg" / "1"
    _resizing_segmenter(path)
    Image.fromarray(np.full((20, 30), 200, "uint8")).save(tmp_path / "a.png")
    out = tmp_path / "masks"
    assert main(["predict", str(path), str(tmp_path / "a.png"), "--out", str(out),
                 "--runtime", "tensorflow", "--no-xla"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"zoo: error: seg's signature takes images of any size and "
                   f"answers masks of 8x8; the input size its graph resizes images to, from "
                   f"which the masks are brought to each image's size, is in "
                   f"{path / 'assets' / 'zoo.json'}, which is missing: restore it (zoo "
                   f"export writes it).")
    assert not out.exists()
    # One whose output follows its input's size (no resize in its graph) writes each
    # image's mask at its own size.
    seg = _foreign_segmenter(tmp_path / "any" / "seg" / "1", (None, None), 0)
    assert main(["predict", seg, str(tmp_path / "a.png"), "--out", str(out),
                 "--runtime", "tensorflow", "--no-xla"]) == 0
    assert np.asarray(Image.open(out / "a_mask.png")).tolist() == np.ones((20, 30)).tolist()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_zoo_predict_syncs_each_mask_before_its_rename(tmp_path, monkeypatch):
    """After a power loss a mask of zoo predict is the earlier run's or this one's, never an
    empty file: each is synced before the rename that gives it its name, and --out after."""
    seg = _foreign_segmenter(tmp_path / "seg" / "1", (None, None), 0)
    images = []
    for i in range(3):
        images.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((10, 12), 60 * i, "uint8")).save(images[-1])
    out = tmp_path / "masks"
    events = record_syncs_and_renames(monkeypatch)
    assert main(["predict", seg, *images, "--out", str(out), "--runtime", "tensorflow",
                 "--no-xla"]) == 0
    renames = [(i, e) for i, e in enumerate(events)
               if e[0] == "rename" and os.path.dirname(e[2]) == str(out)]
    assert sorted(os.path.basename(e[2]) for _, e in renames) == [
        "0_mask.png", "1_mask.png", "2_mask.png"]
    for i, (_, source, _) in renames:
        assert ("sync", source) in events[:i]
    assert ("sync", str(out)) in events[renames[-1][0]:]


def test_zoo_evaluate_names_a_folders_damaged_image_or_mask(digits_model, tmp_path, capsys):
    """A folder's image that cannot be decoded (a truncated file) ends zoo evaluate with the
    line training gives, naming the folder and the file (it was TensorFlow's error about
    its pipeline, naming none, exit code 1); a damaged mask names the mask (it was Pillow's
    ``image file is truncated`` alone)."""
    path, _, _ = digits_model
    x, y = data.digits_arrays("test")
    root = tmp_path / "digits"
    for i, (image, label) in enumerate(zip(x[:60], y[:60])):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0].astype("uint8")).save(root / str(label) / f"{i:02d}.png")
    damaged = root / str(y[7]) / "07.png"
    damaged.write_bytes(damaged.read_bytes()[:-20])
    assert main(["evaluate", str(path), "--dataset", str(root), "--split", "all"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"zoo: error: Dataset folder '{root}': 1 image could not be decoded (Invalid PNG "
        f"data, size {damaged.stat().st_size}): '{y[7]}/07.png'. Remove or replace the "
        f"damaged (e.g. truncated) files.")

    cells = _cells(tmp_path / "cells", n=10)
    mask = cells / "masks" / "03.png"
    mask.write_bytes(mask.read_bytes()[:60])
    for split in ("all", "test"):   # read as the folder is listed, whatever the split
        with pytest.raises(ValueError, match="^" + re.escape(
                f"Mask '{mask}' could not be decoded (image file is truncated). Remove or "
                f"replace the damaged (e.g. truncated) file.") + "$"):
            data.load_raw(f"folder:{cells}", split, ignore_label=255)
    with pytest.raises(FileNotFoundError):   # the system's own errors stay as they are
        data._mask_values(str(tmp_path / "gone.png"))


def test_names_that_are_not_utf8_are_read_evaluated_and_printed(digits_model, tmp_path,
                                                                 monkeypatch):
    """File and class folder names that are not UTF-8 (``caf\\xe9`` from an old archive,
    Python's ``caf\\udce9``): a folder holding them is read (its list of paths failed
    TensorFlow's conversion, "Error converting unicode string ...", in evaluation and in
    training), and zoo evaluate prints such a label as its bytes (pandas' Arrow strings
    failed on it with a UnicodeEncodeError)."""
    from zoo import evaluation
    path, _, _ = digits_model
    x, y = data.digits_arrays("test")
    root = tmp_path / "digits"
    for i in range(40):
        (root / str(y[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i][..., 0].astype("uint8")).save(
            root / str(y[i]) / os.fsdecode(b"caf\xe9%02d.png" % i))
    result = evaluate(path, f"folder:{root}", "all")
    classes = serving.load(path).predict(x[:40])["classes"]
    assert result["examples"] == 40
    assert result["accuracy"] == pytest.approx(np.mean(classes == y[:40]))
    cells = _cells(tmp_path / "cells", n=10)
    for folder in ("images", "masks"):
        for name in os.listdir(cells / folder):
            os.rename(cells / folder / name, cells / folder / os.fsdecode(b"\xe9" + name.encode()))
    raw = data.load_raw(f"folder:{cells}", "all", ignore_label=255)
    assert sum(1 for _ in raw.dataset) == 10

    report = _stand_in_report("classification", 2)
    report["per_class"][0]["label"] = os.fsdecode(b"caf\xe9")
    monkeypatch.setattr(evaluation, "evaluate", lambda *args, **kwargs: report)
    for fmt, printed in (("markdown", b"| caf\xe9 "), ("csv", b"\ncaf\xe9,1.0,1.0,1.0,1\n")):
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
        monkeypatch.setattr("sys.stdout", out)
        assert main(["evaluate", str(tmp_path), "--format", fmt]) == 0
        out.flush()
        assert printed in out.buffer.getvalue()
