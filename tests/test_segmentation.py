"""The segmentation workflow on a folder of one's own: mask files in their common forms,
the refusals that keep a dataset from training on wrong masks, mean IoU against a count by
hand, and masks predicted at each image's own size."""

import json
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from zoo import data, serving, train
from zoo.cli import main as zoo_main

PALETTE = [0, 0, 0, 200, 30, 30, 30, 200, 30, 30, 30, 200]


def _classes(i, shape=(16, 24), num_classes=3):
    """Mask ``i`` of a folder: a rectangle of class 1 and, with 3 classes, one of class 2."""
    mask = np.zeros(shape, "uint8")
    mask[1 + i % 4:8 + i % 4, 2:9 + i % 3] = 1
    if num_classes > 2:
        mask[9:14, 12 + i % 5:19 + i % 5] = 2
    return mask


def _save_mask(mask, path, form):
    if form == "grey":
        Image.fromarray(mask).save(path)
    elif form == "palette":                     # Pascal VOC's form: palette indices
        im = Image.fromarray(mask, "P")
        im.putpalette(PALETTE + [0] * (768 - len(PALETTE)))
        im.save(path)
    elif form == "1-bit":
        Image.fromarray(mask > 0).save(path)
    elif form == "16-bit":
        Image.fromarray(mask.astype("uint16")).save(path)
    elif form == "grey as RGB":
        Image.fromarray(mask).convert("RGB").save(path)
    elif form == "0/255":
        Image.fromarray((mask > 0).astype("uint8") * 255).save(path)
    elif form == "colour-coded":
        Image.fromarray(np.array(PALETTE, "uint8").reshape(-1, 3)[mask]).save(path)
    else:
        raise AssertionError(form)


def _folder(root, form="grey", n=10, num_classes=3, shape=(16, 24), mask_ext="png"):
    """``root/images`` + ``root/masks``: each image's red channel is 20 + 50 * its class, so
    the pipeline's masks can be checked against its images."""
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    for i in range(n):
        mask = _classes(i, shape, num_classes)
        if form in ("1-bit", "0/255"):
            mask = (mask > 0).astype("uint8")
        image = np.zeros(shape + (3,), "uint8")
        image[..., 0] = 20 + 50 * mask
        image[..., 1] = 90
        Image.fromarray(image).save(root / "images" / f"im{i:02d}.png")
        _save_mask(mask, root / "masks" / f"im{i:02d}.{mask_ext}", form)
    return root


@pytest.mark.parametrize("form, labels", [("palette", 3), ("1-bit", 2), ("16-bit", 3),
                                          ("0/255", 2)])
def test_masks_are_read_as_class_indices_in_every_lossless_form(tmp_path, form, labels):
    root = _folder(tmp_path / "cells", form)
    s = data.load_splits(str(root), image_size=(16, 24), batch_size=4)
    assert s.info.labels == [str(k) for k in range(labels)]
    x, m = data.to_arrays(s.train)
    assert m.shape == (8, 16, 24) and m.dtype == np.int32
    red = x[..., 0] * s.info.std[0] + s.info.mean[0]
    np.testing.assert_array_equal(m, np.round((red - 20) / 50).astype(int))
    assert sorted(np.unique(m).tolist()) == list(range(labels))


@pytest.mark.parametrize("form, mask_ext, message", [
    ("colour-coded", "png", r"Mask '.*/masks/im00.png' is a colour image with 3 colours "
                            r"\(\(0, 0, 0\), \(30, 200, 30\), \(200, 30, 30\)\): masks hold "
                            r"class indices 0..K-1, as grey values or a palette image's "
                            r"indices. Convert colour-coded masks to class indices first."),
    ("grey", "jpg", r"Mask '.*/masks/im00.jpg' is a JPEG file: lossy compression changes "
                    r"class indices along every edge. Store masks losslessly \(PNG\)."),
])
def test_masks_that_are_no_class_indices_are_refused_by_name(tmp_path, form, mask_ext,
                                                             message):
    root = _folder(tmp_path / "cells", form, mask_ext=mask_ext)
    with pytest.raises(ValueError, match=f"^{message}$"):
        data.load_splits(str(root), image_size=(16, 24))
    # Grey masks saved as RGB (R = G = B) are class indices.
    grey = _folder(tmp_path / "grey", "grey as RGB")
    _, m = data.to_arrays(data.load(str(grey), "test", image_size=(16, 24))[0])
    assert sorted(np.unique(m).tolist()) == [0, 1, 2]



def test_masks_in_colours_whose_red_and_green_agree_are_refused(tmp_path):
    root = _folder(tmp_path / "cells")
    yellow = np.stack([_classes(0) * 100] * 2 + [np.zeros((16, 24), "uint8")], -1)
    Image.fromarray(yellow).save(root / "masks" / "im00.png")
    with pytest.raises(ValueError, match=r"^Mask '.*/masks/im00.png' is a colour image with 3 "
                                         r"colours \(\(0, 0, 0\), \(100, 100, 0\), "
                                         r"\(200, 200, 0\)\)"):
        data.load_splits(str(root), image_size=(16, 24))


def test_lossy_webp_masks_are_refused_in_either_layout(tmp_path):
    """Lossy WebP changes class indices: refused in the simple layout and in the extended
    one (a VP8X header, as metadata or alpha give it), whose values were read as they came
    (every pixel of classes 1 and 2 read as 0 here)."""
    exif = Image.Exif()
    exif[0x010E] = "mask"
    for name, kwargs in (("simple", {}), ("extended", {"exif": exif.tobytes()})):
        root = _folder(tmp_path / name)
        Image.fromarray(_classes(0)).save(root / "masks" / "im00.webp", **kwargs)
        (root / "masks" / "im00.png").unlink()
        with pytest.raises(ValueError, match=r"^Mask '.*/masks/im00.webp' is a lossy WebP "
                                             r"file: lossy compression changes class indices "
                                             r"along every edge. Store masks losslessly "
                                             r"\(PNG\).$"):
            data.load_splits(str(root), image_size=(16, 24))
    Image.fromarray(_classes(0)).save(root / "masks" / "im00.webp", lossless=True,
                                      exif=exif.tobytes())
    assert data.load_splits(str(root), image_size=(16, 24)).info.labels == ["0", "1", "2"]


def test_masks_of_0_and_255_are_classes_0_and_255_when_labels_txt_lists_256(tmp_path):
    root = _folder(tmp_path / "cells", "0/255")
    (root / "labels.txt").write_text("".join(f"class {k}\n" for k in range(256)))
    s = data.load_splits(str(root), image_size=(16, 24), batch_size=16)
    assert s.info.num_classes == 256
    assert sorted(np.unique(data.to_arrays(s.train)[1]).tolist()) == [0, 255]


def test_a_mask_of_another_size_than_its_image_is_refused(tmp_path):
    root = _folder(tmp_path / "cells")
    Image.fromarray(_classes(3)[:, :16]).save(root / "masks" / "im03.png")
    with pytest.raises(ValueError, match=r"^Mask '.*/masks/im03.png' is 16x16 \(height x "
                                         r"width\) but its image '.*/images/im03.png' is "
                                         r"16x24: a mask must have its image's size, pixel "
                                         r"for pixel.$"):
        data.load_splits(str(root), image_size=(16, 24))


def test_mask_values_that_skip_classes_need_labels_txt(tmp_path):
    # Pascal VOC marks object borders 255: without labels.txt that made 256 classes.
    root = _folder(tmp_path / "cells")
    mask = _classes(4)
    mask[0, :] = 255
    Image.fromarray(mask).save(root / "masks" / "im04.png")
    with pytest.raises(ValueError, match=r"^The masks in '.*/cells' hold the values 0, 1, 2, "
                                         r"255 \(4 in all\), not every class 0..255: without "
                                         r"labels.txt that would make 256 classes, 252 of "
                                         r"them in no mask. Store masks as class indices "
                                         r"0..K-1"):
        data.load_splits(str(root), image_size=(16, 24))
    (root / "labels.txt").write_text("\n".join(["background", "a", "b"]) + "\n")
    with pytest.raises(ValueError, match=r"^Mask '.*/masks/im04.png' holds class 255, but "
                                         r"'.*/labels.txt' lists 3 labels"):
        data.load_splits(str(root), image_size=(16, 24))


def test_mean_iou_counts_pixels_predicted_as_classes_beyond_the_dataset():
    """A model with more outputs than the dataset has classes: a pixel predicted as one of
    the extra classes is an error of its true class, as the count by hand says."""
    rng = np.random.default_rng(0)
    x = rng.random((4, 8, 8, 5)).astype("float32")
    y = rng.integers(0, 3, (4, 8, 8)).astype("int32")
    inputs = keras.Input((8, 8, 5))
    outputs = keras.layers.Activation("softmax")(inputs)   # predicts the arg-max of x
    model = keras.Model(inputs, outputs)
    train.compile_model(model, "segmentation", num_classes=3, jit_compile=False)
    result = model.evaluate(x, y, verbose=0, return_dict=True)

    predicted = x.argmax(-1)
    confusion = np.bincount(y.ravel() * 5 + predicted.ravel(), minlength=25).reshape(5, 5)
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    by_hand = (inter[union > 0] / union[union > 0]).mean()
    assert (predicted >= 3).mean() > 0.3                     # the extra classes are there
    assert result["mean_iou"] == pytest.approx(by_hand, abs=1e-6)
    assert result["accuracy"] == pytest.approx((predicted == y).mean(), abs=1e-6)


def test_mask_at_size_is_the_arg_max_of_bilinearly_resized_probabilities():
    rng = np.random.default_rng(1)
    p = rng.random((12, 16, 4)).astype("float32")
    for size in [(24, 32), (31, 45), (5, 7), (12, 16), (1, 1)]:
        want = tf.image.resize(p, size, "bilinear").numpy().argmax(-1)
        np.testing.assert_array_equal(serving.mask_at_size(p, size), want)
    with pytest.raises(ValueError, match=r"one image's \[height, width, classes\]"):
        serving.mask_at_size(p[None], (4, 4))
    assert serving.mask_at_size(p, (np.int64(5), 7)).shape == (5, 7)
    # (a float was cut to an integer, a string or one number failed inside the unpacking)
    for size in [(2.5, 3), (5,), "ab", (0, 3), (4, True), 5]:
        with pytest.raises(ValueError, match=re.escape(
                f"size must be (height, width): two integers of at least 1; received "
                f"{size!r}")):
            serving.mask_at_size(p, size)


def test_a_folder_trains_exports_and_predicts_masks_at_each_images_size(tmp_path, capsys):
    root = _folder(tmp_path / "cells", "palette", n=20)
    run, base = tmp_path / "run", tmp_path / "models"
    assert zoo_main(["train", "unet", "--dataset", f"folder:{root}", "--image-size", "16,24",
                     "--epochs", "1", "--batch-size", "8", "--model-arg", "depth=2",
                     "--model-arg", "base_filters=4", "--model-arg", "padding=same",
                     "--mixed-precision", "off", "--run-dir", str(run), "--quiet", "--export",
                     "--base-dir", str(base)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"unet on folder:{root}: test mean iou ")
    info = json.loads((run / "info.json").read_text())
    assert info["dataset"]["labels"] == ["0", "1", "2"]

    # An odd-sized, non-square image and one at the model's size.
    odd = np.random.default_rng(2).integers(0, 256, (27, 45, 3)).astype("uint8")
    Image.fromarray(odd).save(tmp_path / "odd.png")
    same = np.asarray(Image.open(root / "images" / "im00.png"))
    masks = tmp_path / "masks"
    assert zoo_main(["predict", str(base / "unet"), str(tmp_path / "odd.png"),
                     str(root / "images" / "im00.png"), "--out", str(masks), "--format",
                     "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    servable = serving.load(base / "unet")
    for record, image in zip(records, (odd, same)):
        written = Image.open(record["mask"])
        assert written.mode == "L" and written.size == (image.shape[1], image.shape[0])
        probabilities = servable.predict(image)["probabilities"][0]
        assert probabilities.shape == (16, 24, 3)
        want = serving.mask_at_size(probabilities, image.shape[:2])
        np.testing.assert_array_equal(np.asarray(written), want)
    np.testing.assert_array_equal(np.asarray(Image.open(records[1]["mask"])),
                                  servable.predict(same)["mask"][0])


def test_a_quiet_run_that_diverges_prints_only_the_error(tmp_path, capsys):
    root = _folder(tmp_path / "cells", n=20)
    run = tmp_path / "run"
    assert zoo_main(["train", "unet", "--dataset", f"folder:{root}", "--image-size", "16,24",
                     "--epochs", "2", "--batch-size", "8", "--model-arg", "depth=2",
                     "--model-arg", "base_filters=4", "--model-arg", "padding=same",
                     "--optimizer", "sgd", "--lr", "1e30", "--mixed-precision", "off",
                     "--run-dir", str(run), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""                   # no "Batch 2: Invalid loss, ..." from Keras
    assert captured.err.startswith("zoo: error: Training diverged: the loss was nan in epoch ")
    assert len(captured.err.splitlines()) == 1
    assert not run.exists()
