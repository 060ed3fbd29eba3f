"""Pixels marked with an ignore label (Pascal VOC's 255 on object borders): declared when a
dataset is loaded, recorded in its DatasetInfo, kept by resizing and augmentation, and left
out of the loss, pixel accuracy and mean IoU, against a count by hand in NumPy."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from zoo import data, train
from zoo.cli import main as zoo_main

from conftest import make_voc_folder  # noqa: E402

def _voc_folder(root, n=10, shape=(16, 16)):
    """Palette masks of classes 0, 1, 2 with a 255 ring around each object (conftest)."""
    return make_voc_folder(root, n=n, shape=shape, object_size=7, ring=1, first=(2, 2),
                           spread=(4, 3))


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return _voc_folder(tmp_path_factory.mktemp("voc") / "voc")


def test_the_ignore_label_is_declared_and_recorded_in_the_dataset_info(voc):
    with pytest.raises(ValueError, match=r"hold the values 0, 1, 2, 255 \(4 in all\), not every "
                                         r"class 0..255: .* If 255 marks pixels to leave out of "
                                         r"training and evaluation \(as Pascal VOC's 255 marks "
                                         r"object borders\), pass ignore_label=255 \(zoo train, "
                                         r"zoo tune or zoo evaluate --ignore-label 255\).$"):
        data.load_splits(str(voc))
    s = data.load_splits(str(voc), batch_size=4, ignore_label=np.int64(255))
    assert (s.info.num_classes, s.info.labels, s.info.ignore_label) == (3, ["0", "1", "2"], 255)
    assert s.info.to_dict()["ignore_label"] == 255
    assert data.DatasetInfo.from_dict(json.loads(json.dumps(s.info.to_dict()))) == s.info
    assert data.DatasetInfo.from_dict({**s.info.to_dict(), "ignore_label": None}
                                      ).ignore_label is None
    x, m = data.to_arrays(s.train)
    assert sorted(np.unique(m).tolist()) == [0, 1, 2, 255]
    red = np.round(x[..., 0] * s.info.std[0] + s.info.mean[0])
    np.testing.assert_array_equal(m, np.where(red == 250, 255, (red - 40) / 60))
    # Resizing is nearest neighbour: 255 stays 255, no value in between appears.
    _, small = data.to_arrays(data.load(str(voc), "test", ignore_label=255)[0])
    ds, info = data.load(str(voc), "test", image_size=(24, 20), ignore_label=255)
    _, m = data.to_arrays(ds)
    want = tf.image.resize(small[..., None], (24, 20), method="nearest").numpy()[..., 0]
    np.testing.assert_array_equal(m, want)
    assert info.ignore_label == 255 and 255 in m   # (the test image's values: 0, a class, 255)
    assert sorted(np.unique(m).tolist()) == sorted(np.unique(small).tolist())


def test_an_ignore_label_beside_binary_masks_and_one_that_is_never_there(tmp_path):
    # 0/255 masks stay binary by default; with a declared 128 (a trimap's "unknown"),
    # 0 and 255 are still background and object and 128 is left out.
    root = tmp_path / "binary"
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    for i in range(10):
        mask = np.zeros((8, 8), "uint8")
        mask[2:6, 2 + i % 2:6] = 255
        mask[1, :] = 128 if i % 2 else 0
        Image.fromarray(np.dstack([mask] * 3)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    s = data.load_splits(str(root), batch_size=16, ignore_label=128)
    assert (s.info.labels, s.info.ignore_label) == (["0", "1"], 128)
    x, m = data.to_arrays(s.train)
    raw = np.round(x[..., 0] * s.info.std[0] + s.info.mean[0])
    np.testing.assert_array_equal(m, np.select([raw == 255, raw == 128], [1, 128], 0))
    # An ignore label the masks never hold is fine; classes stay as they were.
    s = data.load_splits("shapes", image_size=(16, 16), ignore_label=255)
    assert (s.info.num_classes, s.info.ignore_label) == (4, 255)



def _masks_folder(root, masks):
    """``root/images`` + ``root/masks`` holding ``masks`` (uint8 arrays) as grey PNGs."""
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    for i, mask in enumerate(masks):
        Image.fromarray(np.dstack([mask] * 3)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


def test_the_ignore_label_may_be_any_value_above_the_classes_up_to_65535(tmp_path):
    for value in (4, 65535):    # shapes' classes are 0..3
        _, info = data.load("shapes", "test", image_size=(8, 8), ignore_label=value)
        assert (info.num_classes, info.ignore_label) == (4, value)
    # With labels.txt, the value just above its classes: 3 names, ignore label 3.
    masks = [np.array([[0, 1], [2, 3]], "uint8")[np.indices((8, 8))[0] // 4,
                                                  (np.indices((8, 8))[1] + i) % 8 // 4]
             for i in range(10)]
    root = _masks_folder(tmp_path / "listed", masks)
    (root / "labels.txt").write_text("background\ncell\nnucleus\n")
    s = data.load_splits(str(root), batch_size=16, ignore_label=3)
    assert (s.info.labels, s.info.ignore_label) == (["background", "cell", "nucleus"], 3)
    assert sorted(np.unique(data.to_arrays(s.train)[1]).tolist()) == [0, 1, 2, 3]


def test_an_ignore_label_that_is_the_object_class_of_binary_masks_is_refused(tmp_path):
    """Masks of 0, 1 and 255 with ignore_label=1: 0 and 255 would be read as background and
    object (class 1), and every object pixel then be ignored."""
    masks = [np.zeros((8, 8), "uint8") for _ in range(10)]
    for i, mask in enumerate(masks):
        mask[2:6, 2:6] = 255
        mask[0, :] = i % 2
    root = _masks_folder(tmp_path / "binary", masks)
    with pytest.raises(ValueError, match=r"^ignore_label=1 lies among the classes of the masks "
                                         r"in '.*/binary', which hold the values 0, 1, 255: "):
        data.load_splits(str(root), ignore_label=1)


@pytest.mark.parametrize("value", [-1, 2.0, 255.5, True, "255", 65536])
def test_an_ignore_label_that_is_no_integer_from_0_to_65535_is_refused(voc, value):
    with pytest.raises(ValueError, match=rf"^ignore_label must be None or an integer from 0 to "
                                         rf"65535: the mask value of pixels to leave out of "
                                         rf"training and evaluation, outside the classes 0..K-1 "
                                         rf"\(Pascal VOC: 255\). Received: "
                                         rf"ignore_label={value!r}$"):
        data.load(str(voc), ignore_label=value)


def test_an_ignore_label_inside_the_classes_is_refused(voc, tmp_path):
    with pytest.raises(ValueError, match=r"^ignore_label=1 lies among the classes of the masks "
                                         r"in '.*/voc', which hold the values 0, 1, 2, 255: the "
                                         r"classes must be 0..K-1 and the ignore label a value "
                                         r"above them, such as 255.$"):
        data.load_splits(str(voc), ignore_label=1)
    with pytest.raises(ValueError, match=r"^ignore_label=3 is one of the 4 classes of dataset "
                                         r"'shapes' \(0..3: background, circle, square, "
                                         r"triangle\); the ignore label must be a mask value "
                                         r"outside them, such as 255.$"):
        data.load("shapes", image_size=(16, 16), ignore_label=3)
    with pytest.raises(ValueError, match=r"^ignore_label is for segmentation datasets \(a mask "
                                         r"value to leave out\); 'digits' is a classification "
                                         r"dataset. Received: ignore_label=255$"):
        data.load_splits("digits", ignore_label=255)
    import shutil
    listed = tmp_path / "listed"
    shutil.copytree(voc, listed)
    (listed / "labels.txt").write_text("background\nplane\nbike\n")
    with pytest.raises(ValueError, match=r"^Mask '.*' holds class 255, but '.*/labels.txt' "
                                         r"lists 3 labels, so mask values must be in 0..2. If "
                                         r"255 marks pixels to leave out .* --ignore-label "
                                         r"255\).$"):
        data.load_splits(str(listed))
    with pytest.raises(ValueError, match=r"^ignore_label=2 is one of the 3 classes '.*/labels"
                                         r".txt' lists \(0..2: 'bike'\); the ignore label must "
                                         r"be a mask value outside them, such as 255.$"):
        data.load_splits(str(listed), ignore_label=2)
    assert data.load_splits(str(listed), ignore_label=255).info.labels == [
        "background", "plane", "bike"]
    # compile_model checks it against the model's classes.
    model = _segmenter(3)
    with pytest.raises(ValueError, match=r"^ignore_label=2 is one of the model's 3 classes "
                                         r"\(0..2\); the ignore label must be a mask value "
                                         r"outside them, such as 255.$"):
        train.compile_model(model, "segmentation", ignore_label=2)
    with pytest.raises(ValueError, match="ignore_label is for segmentation"):
        train.compile_model(model, "classification", ignore_label=255)


def test_the_pets_trimap_border_can_be_left_out():
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=2):
        assert data.load("oxford_iiit_pet", "test", image_size=(8, 8))[1].labels == [
            "pet", "background", "border"]
        ds, info = data.load("oxford_iiit_pet", "test", image_size=(8, 8), ignore_label=2)
        assert (info.labels, info.num_classes, info.ignore_label) == (
            ["pet", "background"], 2, 2)
        _, m = data.to_arrays(ds)
        assert set(np.unique(m).tolist()) <= {0, 1, 2}
        with pytest.raises(ValueError, match=r"ignore_label=1 is one of the 3 classes of dataset "
                                             r"'oxford_iiit_pet' \(0..2: pet, background, "
                                             r"border\); the ignore label must be a mask value "
                                             r"outside them, such as 255 \(or 2 to leave out "
                                             r"its 'border' class\).$"):
            data.load("oxford_iiit_pet", "test", image_size=(8, 8), ignore_label=1)


def test_augmentation_keeps_the_ignore_label_and_fills_with_it():
    rng = np.random.default_rng(3)
    masks = rng.integers(1, 3, (6, 12, 12)).astype("int32")     # classes 1, 2: 0 = filled
    masks[:, 5, :] = 255
    images = tf.constant(rng.uniform(1, 255, (6, 12, 12, 3)), tf.float32)
    settings = dict(flip="horizontal_and_vertical", translation=0.3, zoom=0.3, rotation=0.2,
                    contrast=0.0, fill_mode="constant")
    _, plain = data.augmenter(settings, seed=1)(images, masks)
    _, ignored = data.augmenter(settings, ignore_label=255, seed=1)(images, masks)
    plain, ignored = plain.numpy(), ignored.numpy()
    filled = plain == 0                       # without an ignore label the fill is class 0
    assert 0.1 < filled.mean() < 0.9
    np.testing.assert_array_equal(ignored, np.where(filled, 255, plain))
    assert set(np.unique(ignored[~filled]).tolist()) == {1, 2, 255}   # moved, not blended


def _segmenter(k, logits=False, size=16):
    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.Conv2D(k, 3, padding="same", activation=None if logits else "softmax",
                                  kernel_initializer=keras.initializers.RandomNormal(0, 0.5,
                                                                                     seed=1),
                                  bias_initializer=keras.initializers.RandomNormal(0, 0.5, seed=2)
                                  )(inputs)
    return keras.Model(inputs, outputs)


def _reference(p, y, ignore, k, smooth=1.0):
    """NumPy: ``(loss, pixel accuracy, mean IoU)`` of probabilities ``p`` for masks ``y``
    with the pixels holding ``ignore`` left out."""
    valid = y != ignore
    safe = np.where(valid, y, 0)
    ce = -np.log(np.take_along_axis(p, safe[..., None], -1)[..., 0])
    losses = []
    for b in range(len(y)):
        v = valid[b]
        t = np.eye(k)[safe[b]] * v[..., None]
        q = p[b] * v[..., None]
        inter, total = (t * q).sum((0, 1)), t.sum((0, 1)) + q.sum((0, 1))
        dice = (2 * inter + smooth) / (total + smooth)
        losses.append((ce[b][v].mean() if v.any() else 0.0) + 1 - dice.mean())
    predicted = p.argmax(-1)
    accuracy = (predicted == y)[valid].mean()
    cm = np.bincount(y[valid] * k + predicted[valid], minlength=k * k).reshape(k, k)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    return float(np.mean(losses)), float(accuracy), float((inter / union)[union > 0].mean())


def test_loss_accuracy_and_mean_iou_leave_out_ignored_pixels(voc):
    splits = data.load_splits(str(voc), batch_size=16, ignore_label=255)
    x, y = data.to_arrays(splits.train)
    model = train.compile_model(_segmenter(3), "segmentation", jit_compile=False,
                                ignore_label=splits.info.ignore_label)
    got = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    p = model.predict(x, verbose=0).astype("float64")
    loss, accuracy, mean_iou = _reference(p, y, 255, 3)
    assert (y == 255).mean() == 32 / 256             # a ring of 32 pixels in each mask
    assert got["loss"] == pytest.approx(loss, rel=1e-5)
    assert got["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert got["mean_iou"] == pytest.approx(mean_iou, abs=1e-6)
    # Keras' own accuracy counts every 255 pixel as an error.
    assert (p.argmax(-1) == y).mean() == pytest.approx(accuracy * 224 / 256)
    # The labels may have a channel of 1; the model may output logits; the ignore value
    # makes no difference to the loss whatever the model predicts there.
    logits = _segmenter(3, logits=True)
    loss_fn = train.CrossEntropyDiceLoss(from_logits=True, ignore_label=255)
    z = logits.predict(x, verbose=0)
    want = _reference(tf.nn.softmax(z.astype("float64")).numpy(), y, 255, 3)[0]
    assert float(loss_fn(y[..., None], z)) == pytest.approx(want, rel=1e-5)
    z2 = np.where((y == 255)[..., None], z * 7 - 3, z)
    assert float(loss_fn(y, z2)) == pytest.approx(want, rel=1e-5)
    dice = train.SparseDiceLoss(ignore_label=255, reduction=None)
    np.testing.assert_allclose(dice(y, p), dice(y, np.where((y == 255)[..., None], 1 / 3, p)),
                               rtol=1e-6)
    # Settings survive serialisation.
    again = keras.losses.deserialize(keras.losses.serialize(loss_fn))
    assert again.ignore_label == 255 and again._dice.ignore_label == 255
    metric = train.SparsePixelAccuracy.from_config(train.SparsePixelAccuracy(255).get_config())
    assert metric.ignore_label == 255 and metric.name == "accuracy"


def test_pixel_accuracy_weighs_each_example_by_its_sample_weight():
    y = np.array([[0, 1, 255], [2, 2, 2]])
    p = np.eye(3)[[[0, 0, 1], [2, 0, 2]]]     # 1 of 2 counted pixels right, then 2 of 3
    metric = train.SparsePixelAccuracy(ignore_label=255)
    assert float(metric.result()) == 0.0   # no pixel counted yet, as Keras' accuracies
    metric.update_state(y[:, 2:], p[:, 2:], sample_weight=np.array([1.0, 0.0]))
    assert float(metric.result()) == 0.0
    metric.reset_state()
    metric.update_state(y, p)
    assert float(metric.result()) == pytest.approx(3 / 5)
    metric.reset_state()
    metric.update_state(y, p, sample_weight=np.array([1.0, 3.0]))
    assert float(metric.result()) == pytest.approx((1 + 3 * 2) / (2 + 3 * 3))
    metric.reset_state()   # per pixel: the second example's miss weighs 0
    metric.update_state(y, p, sample_weight=np.array([[1.0, 1, 1], [1, 0, 1]]))
    assert float(metric.result()) == pytest.approx(3 / 4)


def test_fit_accepts_the_ignore_label_and_only_it(voc, tmp_path):
    splits = data.load_splits(str(voc), batch_size=4, ignore_label=255)
    train.fit(_segmenter(3), splits, epochs=1, run_dir=str(tmp_path / "run"), verbose=0,
              jit_compile=False, mixed_precision="off")
    info = json.loads((tmp_path / "run" / "info.json").read_text())
    assert info["dataset"]["ignore_label"] == 255
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    x, y = data.to_arrays(splits.test)
    p = train.fit.last_model.predict(x, verbose=0).astype("float64")
    loss, accuracy, mean_iou = _reference(p, y, 255, 3)
    assert metrics["test_loss"] == pytest.approx(loss, rel=1e-4)
    assert metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert metrics["test_mean_iou"] == pytest.approx(mean_iou, abs=1e-6)
    # Data whose info declares no ignore label: 255 is a mask value outside the classes.
    lying = data.Splits(splits.train, splits.validation, splits.test,
                        data.DatasetInfo.from_dict({**splits.info.to_dict(),
                                                    "ignore_label": None}))
    with pytest.raises(ValueError) as no_ignore:
        train.fit(_segmenter(3), lying, epochs=1, run_dir=str(tmp_path / "a"), verbose=0,
                  jit_compile=False, mixed_precision="off")
    assert str(no_ignore.value) == ("labels outside num_classes: the model has 3 outputs, so "
                                    "mask values must be in 0..2; found 255 (if 255 marks "
                                    "pixels to leave out of training and evaluation, pass "
                                    "ignore_label=255)")
    other = data.Splits(splits.train, splits.validation, splits.test,
                        data.DatasetInfo.from_dict({**splits.info.to_dict(),
                                                    "ignore_label": 254}))
    with pytest.raises(ValueError) as wrong:
        train.fit(_segmenter(3), other, epochs=1, run_dir=str(tmp_path / "b"), verbose=0,
                  jit_compile=False, mixed_precision="off")
    assert str(wrong.value) == ("labels outside num_classes: the model has 3 outputs, so mask "
                                "values must be in 0..2 or 254 (the ignore label); found 255")


def test_zoo_train_ignore_label(voc, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        zoo_main(["train", "unet", "--dataset", f"folder:{voc}", "--ignore-label", "-1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == ("zoo train: error: argument --ignore-label: expected an integer from 0 to "
                   "65535; received '-1'\n")
    assert zoo_main(["train", "unet", "--dataset", f"folder:{voc}", "--ignore-label", "1",
                     "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ignore_label=1 lies among the classes of the masks in ")
    assert len(err.splitlines()) == 1
    run, base = tmp_path / "run", tmp_path / "models"
    assert zoo_main(["train", "unet", "--dataset", f"folder:{voc}", "--ignore-label", "255",
                     "--image-size", "16,16", "--epochs", "1", "--batch-size", "8",
                     "--model-arg", "depth=2", "--model-arg", "base_filters=4",
                     "--model-arg", "padding=same", "--mixed-precision", "off",
                     "--run-dir", str(run), "--quiet", "--export", "--base-dir",
                     str(base)]) == 0
    capsys.readouterr()
    assert json.loads((run / "info.json").read_text())["dataset"]["ignore_label"] == 255
    record = json.loads((base / "unet" / "1" / "assets" / "zoo.json").read_text())
    assert record["dataset"]["ignore_label"] == 255 and record["num_classes"] == 3
    # Predicted masks hold the classes only.
    masks = tmp_path / "masks"
    images = sorted(str(p) for p in (voc / "images").iterdir())
    assert zoo_main(["predict", str(base / "unet"), *images, "--out", str(masks),
                     "--format", "jsonl"]) == 0
    written = np.stack([np.asarray(Image.open(p)) for p in sorted(masks.iterdir())])
    assert written.shape == (10, 16, 16) and written.max() <= 2
