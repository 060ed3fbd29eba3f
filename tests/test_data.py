"""Tests of zoo.data: embedded sets, tfds loaders (mocked), folders, preprocessing,
augmentation."""

import contextlib
import json
import re
import os
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from zoo import data


# --- digits ---------------------------------------------------------------------------

def test_digits_split_fixed_stratified_raw_range():
    x_tr, y_tr = data.digits_arrays("train")
    x_va, y_va = data.digits_arrays("val")
    x_te, y_te = data.digits_arrays("test")
    assert (len(x_tr), len(x_va), len(x_te)) == (1257, 180, 360)
    assert x_tr.shape[1:] == (8, 8, 1) and x_tr.dtype == np.float32
    assert x_tr.min() == 0.0 and x_tr.max() == 255.0
    # Stratified: every class has 36 test and 18 validation images (10 classes, ~equal).
    assert np.bincount(y_te).min() >= 35 and np.bincount(y_te).max() <= 37
    assert np.bincount(y_va).min() >= 17 and np.bincount(y_va).max() <= 19
    # Fixed: a second call gives the same split.
    np.testing.assert_array_equal(data.digits_arrays("test")[0], x_te)
    from sklearn.datasets import load_digits
    assert len(x_tr) + len(x_va) + len(x_te) == len(load_digits().images) == 1797


def test_digits_pipeline_shapes_and_normalisation():
    ds, info = data.load("digits", "train", image_size=(32, 32), batch_size=100, shuffle=False)
    x, y = data.to_arrays(ds)
    assert x.shape == (1257, 32, 32, 1) and x.dtype == np.float32
    assert y.shape == (1257,) and y.dtype == np.int32
    assert info.input_shape == (32, 32, 1) and info.num_classes == 10
    assert info.labels == [str(i) for i in range(10)] and info.task == "classification"
    assert info.splits == {"train": 1257, "validation": 180, "test": 360}
    # mean/std were measured on the (first 512) raw training pixels: normalised ~ N(0, 1).
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05
    assert 60 < info.mean[0] < 100 and 60 < info.std[0] < 100


def test_digits_split_and_statistics_stay_the_same():
    """The fixed split (scores stay comparable between versions) and the statistics,
    measured on the first 512 training images at the model's input size: not on another
    split, not on fewer images, not before resizing."""
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (data.digits_arrays(s)
                                                for s in ("train", "validation", "test"))
    assert y_tr[:12].tolist() == [9, 1, 7, 5, 5, 2, 9, 4, 2, 8, 0, 2]
    assert y_va[:12].tolist() == [7, 4, 7, 6, 0, 0, 5, 6, 8, 6, 6, 8]
    assert y_te[:12].tolist() == [7, 6, 3, 7, 7, 3, 2, 8, 9, 3, 2, 6]
    assert [float(x.sum()) for x in (x_tr, x_va, x_te)] == [6254417.0, 907385.625, 1790578.125]
    info = data.load("digits", "test", image_size=(32, 32))[1]
    first = tf.image.resize(x_tr[:512], (32, 32)).numpy().astype("float64")
    assert info.mean == pytest.approx([first.mean()], abs=1e-4) == [77.6063]
    assert info.std == pytest.approx([first.std()], abs=1e-4) == [82.3678]
    assert data.load("digits", "test", image_size=(8, 8))[1].std == pytest.approx([95.8084],
                                                                                  abs=1e-4)


def test_preprocess_is_what_the_pipeline_does():
    ds, info = data.load("digits", "test", image_size=(32, 32), batch_size=64)
    x, y = data.to_arrays(ds)
    raw, labels = data.digits_arrays("test")
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(data.preprocess(raw, info).numpy(), x, atol=1e-5)
    # The dict form (what the export reads from info.json) works the same.
    np.testing.assert_allclose(data.preprocess(raw[:3], info.to_dict()).numpy(), x[:3], atol=1e-5)


def test_preprocess_resize_and_channels():
    info = data.DatasetInfo("t", "classification", 2, ["a", "b"], (4, 6, 3),
                            mean=[10.0, 20.0, 30.0], std=[2.0, 4.0, 5.0])
    grey = np.full((2, 8, 12, 1), 50.0, "float32")
    out = data.preprocess(grey, info).numpy()
    assert out.shape == (2, 4, 6, 3)
    np.testing.assert_allclose(out[0, 0, 0], [(50 - 10) / 2, (50 - 20) / 4, (50 - 30) / 5])
    rgba = np.concatenate([np.full((1, 4, 6, 3), 100.0), np.zeros((1, 4, 6, 1))], -1)
    np.testing.assert_allclose(data.preprocess(rgba, info).numpy()[0, 1, 1],
                               [45.0, 20.0, 14.0])
    info1 = data.DatasetInfo("t", "classification", 2, ["a", "b"], (4, 6, 1), mean=[0.0],
                             std=[1.0])
    rgb = np.zeros((1, 4, 6, 3), "float32")
    rgb[..., 0] = 100.0
    np.testing.assert_allclose(data.preprocess(rgb, info1).numpy()[0, 0, 0, 0], 29.89, atol=0.01)
    # Images are resized bilinearly (half-pixel centres); masks keep nearest neighbour.
    ramp = data.DatasetInfo("t", "classification", 2, ["a", "b"], (1, 4, 1))
    np.testing.assert_allclose(data.preprocess(np.array([[[[0.0], [100.0]]]]), ramp).numpy()
                               .ravel(), [0.0, 25.0, 75.0, 100.0])
    with pytest.raises(ValueError, match="cannot convert 2-channel"):
        data.preprocess(np.zeros((1, 4, 6, 2), "float32"), info1)


def test_dataset_info_round_trip():
    _, info = data.load("digits", "validation", image_size=(16, 16))
    d = json.loads(json.dumps(info.to_dict()))
    back = data.DatasetInfo.from_dict(d)
    assert back == info
    assert back.input_shape == (16, 16, 1)


# --- shapes ---------------------------------------------------------------------------

def test_make_shapes_seeded_with_all_classes():
    x1, m1 = data.make_shapes(6, seed=5)
    x2, m2 = data.make_shapes(6, seed=5)
    x3, _ = data.make_shapes(6, seed=6)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(x1, x3)
    assert x1.shape == (6, 64, 64, 3) and x1.dtype == np.uint8 and m1.shape == (6, 64, 64)
    x, m = data.make_shapes(40, seed=0)
    assert set(np.unique(m)) == {0, 1, 2, 3}
    # A shape pixel has the shape's colour: pixels of one mask region differ from background.
    for i in range(5):
        fg, bg = x[i][m[i] > 0].mean(0), x[i][m[i] == 0].mean(0)
        assert np.abs(fg - bg).sum() > 40


def test_shapes_splits():
    s = data.load_splits("shapes", image_size=(32, 32), batch_size=50)
    assert s.info.labels == ["background", "circle", "square", "triangle"]
    assert s.info.task == "segmentation" and s.info.num_classes == 4
    assert s.info.input_shape == (32, 32, 3)
    x, m = data.to_arrays(s.test)
    assert x.shape == (200, 32, 32, 3) and m.shape == (200, 32, 32) and m.dtype == np.int32
    assert set(np.unique(m)) == {0, 1, 2, 3}
    assert s.info.splits == {"train": 1000, "validation": 100, "test": 200}


def test_shapes_splits_share_no_scene():
    scenes = {}
    for split in ("train", "validation", "test"):
        raw = data.load_raw("shapes", split)
        scenes[split] = {x.tobytes() for x, _ in raw.dataset.as_numpy_iterator()}
        assert len(scenes[split]) == raw.size
    assert not (scenes["train"] & scenes["validation"] or scenes["train"] & scenes["test"]
                or scenes["validation"] & scenes["test"])


def test_make_shapes_draws_shapes_of_radius_7_to_16():
    _, masks = data.make_shapes(60, seed=0, max_shapes=1)
    areas = {1: [], 2: [], 3: []}
    for mask in masks:
        kinds = np.unique(mask[mask > 0])
        assert len(kinds) == 1
        areas[int(kinds[0])].append(int((mask > 0).sum()))
    # circle pi r^2, square (1.6 r)^2, triangle 3 sqrt(3) / 4 r^2, r from 7 to 16 pixels (a
    # shape near the border loses a little of its area)
    for kind, factor in ((1, np.pi), (2, 1.6 ** 2), (3, 3 * np.sqrt(3) / 4)):
        assert len(areas[kind]) >= 15
        assert 0.8 * factor * 7 ** 2 <= min(areas[kind])
        assert max(areas[kind]) <= factor * 16 ** 2 + 4


# --- augmentation ---------------------------------------------------------------------

def test_augmentation_never_touches_validation_and_test():
    plain = data.load_splits("digits", image_size=(16, 16), batch_size=400, augment=False)
    aug = data.load_splits("digits", image_size=(16, 16), batch_size=400, augment=True)
    for a, b in ((plain.validation, aug.validation), (plain.test, aug.test)):
        np.testing.assert_array_equal(data.to_arrays(a)[0], data.to_arrays(b)[0])
    x_plain, _ = data.to_arrays(data.load("digits", "train", image_size=(16, 16), batch_size=400,
                                    shuffle=False)[0])
    x_aug, _ = data.to_arrays(data.load("digits", "train", image_size=(16, 16), batch_size=400,
                                  shuffle=False, augment=True)[0])
    changed = np.abs(x_plain - x_aug).reshape(len(x_plain), -1).max(1) > 1e-3
    assert changed.mean() > 0.9
    assert aug.info.augmentation["flip"] is None  # never flip digits
    assert aug.info.augmentation["rotation"] <= 0.05


def test_load_augments_the_train_split_only():
    plain, _ = data.load("digits", "validation", image_size=(16, 16), batch_size=400)
    asked, info = data.load("digits", "validation", image_size=(16, 16), batch_size=400,
                            augment=True)
    np.testing.assert_array_equal(data.to_arrays(asked)[0], data.to_arrays(plain)[0])
    assert info.augmentation == {}


def test_the_train_order_changes_each_epoch(tmp_path):
    # Arrays cached in memory (digits) and a folder's file list: a shuffle that drew one
    # order for every epoch fed the same sequence of batches again and again.
    root = _class_tree(tmp_path / "c", {"train": {"a": 20, "b": 20}, "validation": {"a": 1}})
    for name in ("digits", f"folder:{root}"):
        train = data.load_splits(name, image_size=(8, 8), batch_size=16).train
        first, second = (data.to_arrays(train)[1] for _ in range(2))
        assert sorted(first) == sorted(second) and len(first) in (1257, 40)
        assert (first != second).mean() > 0.3


def test_the_train_order_follows_the_seed(tmp_path):
    root = _class_tree(tmp_path / "c", {"train": {"a": 20, "b": 20}, "validation": {"a": 1}})
    for name in ("digits", f"folder:{root}"):
        def order(seed):
            train = data.load_splits(name, image_size=(8, 8), batch_size=64, seed=seed).train
            return data.to_arrays(train)[0]
        first, again, other = order(1), order(1), order(2)
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, other)
        np.testing.assert_array_equal(np.sort(first, axis=None), np.sort(other, axis=None))


def test_the_same_seed_gives_the_same_augmented_batches():
    # The augmentation's random layers draw from a seeded generator: run in parallel
    # tf.data calls, the batches took its draws in the order their threads ran, and the
    # same seed gave other transformations to most batches (1,426 of 2,514 digits over two
    # epochs differed between two processes, by up to 3.1 in normalised units).
    def epochs(seed):
        train = data.load_splits("digits", image_size=(16, 16), batch_size=32, augment=True,
                                 seed=seed).train
        return [data.to_arrays(train) for _ in range(2)]

    first, again, other = epochs(0), epochs(0), epochs(1)
    for (x, y), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(y, y2)
        np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(first[0][0], first[1][0])   # each epoch transforms anew
    assert not np.array_equal(first[0][0], other[0][0])   # another seed, other batches


def test_augmentation_moves_masks_with_images():
    rng = np.random.default_rng(0)
    masks = np.zeros((8, 32, 32), "int32")
    for i in range(8):
        r, c = rng.integers(4, 20, 2)
        masks[i, r:r + 9, c:c + 7] = 1 + i % 3
    images = np.repeat((masks * 60.0)[..., None], 3, axis=-1).astype("float32")
    aug = data.augmenter(dict(flip="horizontal_and_vertical", rotation=0.1, zoom=0.2,
                              translation=0.2, fill_mode="constant"), seed=3)
    out_x, out_m = aug(tf.constant(images), tf.constant(masks))
    out_x, out_m = out_x.numpy(), out_m.numpy()
    assert out_m.dtype == np.int32 and set(np.unique(out_m)) <= {0, 1, 2, 3}
    assert (out_m != masks).any(axis=(1, 2)).sum() >= 6   # the masks moved ...
    agree = np.round(out_x[..., 0] / 60.0) == out_m           # ... together with the images
    assert agree.mean() > 0.97
    # Contrast changes images only, never masks.
    aug_c = data.augmenter(dict(contrast=0.5), seed=1)
    cx, cm = aug_c(tf.constant(images), tf.constant(masks))
    np.testing.assert_array_equal(cm.numpy(), masks)
    assert not np.allclose(cx.numpy(), images)


# --- tensorflow-datasets (mocked: nothing is downloaded) --------------------------------

TFDS_CASES = {
    "mnist": (10, (28, 28, 1)), "fashion_mnist": (10, (28, 28, 1)),
    "cifar10": (10, (32, 32, 3)), "cifar100": (100, (32, 32, 3)),
    "malaria": (2, (24, 24, 3)), "imagenette": (10, (24, 24, 3)),
    "oxford_iiit_pet": (3, (24, 24, 3)),
}


@pytest.mark.parametrize("name", sorted(TFDS_CASES))
def test_tfds_loaders_under_mock_data(name, tmp_path):
    import tensorflow_datasets as tfds
    num_classes, shape = TFDS_CASES[name]
    size = None if name in ("mnist", "fashion_mnist", "cifar10", "cifar100") else shape[:2]
    with tfds.testing.mock_data(num_examples=6):
        s = data.load_splits(name, image_size=size, batch_size=4, augment=True,
                             data_dir=str(tmp_path))
        assert s.info.num_classes == num_classes == len(s.info.labels)
        assert s.info.input_shape == shape
        for split in (s.train, s.validation, s.test):
            x, y = data.to_arrays(split)
            assert x.shape == (6,) + shape and x.dtype == np.float32
            assert np.isfinite(x).all()
            assert y.dtype == np.int32
            if name == "oxford_iiit_pet":
                assert s.info.task == "segmentation"
                assert y.shape == (6,) + shape[:2]
                assert set(np.unique(y)) <= {0, 1, 2}
            else:
                assert y.shape == (6,)
                assert 0 <= y.min() and y.max() < num_classes
        assert len(s.info.mean) == len(s.info.std) == shape[2]



@pytest.mark.parametrize("command, hidden", [
    (["train", "lenet5", "--quiet"], True),
    (["train", "lenet5"], False),
    (["tune", "lenet5"], True),                    # --verbose 0, its default
    (["tune", "lenet5", "--verbose", "2"], False)])
def test_quiet_commands_hide_tensorflow_datasets_download_bars(command, hidden, tmp_path,
                                                              monkeypatch, capsys):
    # zoo train --quiet and zoo tune --verbose 0 print one error line, as the README says:
    # a tfds download's progress bar ("Dl Completed...") came before it.
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.utils import tqdm_utils

    from zoo.cli import main

    def fetch_and_fail(name, **kwargs):   # a download that shows its bar, then fails
        with tqdm_utils.tqdm(total=1, desc="Dl Completed...", unit=" url") as bar:
            bar.update(1)
        raise FileNotFoundError("the download stopped")
    monkeypatch.setattr(tfds, "load", fetch_and_fail)
    runs = ["--run-dir", str(tmp_path / "run")] if command[0] == "train" else \
        ["--directory", str(tmp_path / "runs")]
    assert main([*command, "--dataset", "cifar10", "--download", *runs]) == 2
    err = capsys.readouterr().err
    assert ("Dl Completed" in err) is not hidden, err
    assert len(err.strip().splitlines()) == 1 or not hidden, err
    assert err.strip().splitlines()[-1].startswith("zoo: error: Dataset 'cifar10' is not "
                                                   "available in ")
    assert tqdm_utils._active     # restored

def test_tfds_train_order_follows_the_seed(tmp_path):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=64):
        def order(seed):
            ds, _ = data.load("mnist", "train", image_size=(8, 8), batch_size=64, seed=seed,
                              data_dir=str(tmp_path))
            return data.to_arrays(ds)[0]
        first, again, other = order(3), order(3), order(4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_tfds_splits_are_disjoint_and_cover_the_upstream_splits():
    """Under tfds.testing.mock_data every split expression reads the same fake examples: the
    slices are checked here, resolved by tensorflow-datasets itself on upstream splits of
    odd sizes (rounding)."""
    import types

    import tensorflow_datasets as tfds
    upstream = {"train": 1001, "validation": 97, "test": 203}
    infos = {k: types.SimpleNamespace(num_examples=n) for k, n in upstream.items()}
    sizes = {}
    for name in data.list_datasets():
        if name not in data._TFDS:
            continue
        owner = {}
        for split, expression in data._TFDS[name][0].items():
            for part in tfds.core.ReadInstruction.from_spec(expression).to_absolute(infos):
                for i in range(upstream[part.splitname])[part.from_:part.to]:
                    assert (part.splitname, i) not in owner, (name, split, owner[
                        (part.splitname, i)])
                    owner[(part.splitname, i)] = split
        used = {u for u, _ in owner}
        assert len(owner) == sum(upstream[u] for u in used), name
        sizes[name] = {s: sum(v == s for v in owner.values()) for s in data.SPLITS}
    assert sizes == {
        **{name: {"train": 901, "validation": 100, "test": 203} for name in
           ("mnist", "fashion_mnist", "cifar10", "cifar100", "oxford_iiit_pet")},
        "imagenette": {"train": 901, "validation": 100, "test": 97},
        "malaria": {"train": 801, "validation": 100, "test": 100}}


def test_a_tfds_dataset_not_on_disk_is_one_clear_error(tmp_path, caplog):
    """Nothing is downloaded unless asked: the error says how to get the data, and tfds' own
    log records on its way to that ("Variant folder ... has no dataset_info.json") are
    dropped, so the command line's error stays one line."""
    import logging
    for made in (False, True):   # no folder; a version folder without the data
        if made:
            (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            with pytest.raises(ValueError) as err:
                data.load_splits("mnist", data_dir=str(tmp_path))
        assert str(err.value).startswith(
            f"Dataset 'mnist' is not available in {tmp_path} and nothing is downloaded "
            f"without download=True (--download). Get it once on a machine with internet: "
            f"`tfds build mnist --data_dir DIR` and pass data_dir=DIR (`--data-dir DIR`).")
        assert [r.getMessage() for r in caplog.records if r.name == "absl"] == []


def test_a_download_that_fails_is_one_line_saying_what_to_do(tmp_path, caplog, monkeypatch,
                                                             capsys):
    """download=True without a connection: requests' own error came after a page of urllib3
    retry warnings and tfds' "Variant folder" record (`zoo train` exit code 1), and tfds'
    "Downloading and preparing dataset" line was printed under zoo train --quiet too."""
    import logging

    import tensorflow_datasets as tfds

    retrying = logging.getLogger("urllib3.connectionpool")
    go_on = threading.Event()

    def retry_later():   # another file of the download, still retrying after the error
        go_on.wait(10)
        retrying.warning("Retrying (Retry(total=0)) after connection broken")

    def fetch_and_fail(name, **kwargs):   # what tfds.load does with no network
        logging.getLogger("absl").warning("Variant folder ... has no dataset_info.json")
        print("Downloading and preparing dataset Unknown size ...")
        retrying.warning("Retrying (Retry(total=1)) after connection broken")
        workers.append(threading.Thread(target=retry_later))
        workers[-1].start()
        raise ConnectionError(   # (requests' ConnectionError is an OSError too)
            "HTTPSConnectionPool(host='example', port=443): Max retries exceeded\nwith url")
    monkeypatch.setattr(tfds, "load", fetch_and_fail)
    filters = list(retrying.filters)
    for quiet in (False, True):
        caplog.clear()
        go_on.clear()
        workers = []
        with caplog.at_level(logging.INFO), pytest.raises(ValueError) as err, (
                data.download_progress_hidden() if quiet else contextlib.nullcontext()):
            data.load("mnist", data_dir=str(tmp_path), download=True)
        go_on.set()
        workers[0].join()
        retrying.warning("a record of another thread")   # passes
        assert str(err.value) == (
            f"Dataset 'mnist' is not available in {tmp_path} and could not be downloaded "
            f"(ConnectionError: HTTPSConnectionPool(host='example', port=443): Max retries "
            f"exceeded with url). Check this machine's connection to the internet, or get it "
            f"once on a machine with one: `tfds build mnist --data_dir DIR` and pass "
            f"data_dir=DIR (`--data-dir DIR`). Datasets that need no download: digits, "
            f"shapes, folder:PATH.")
        assert [r.getMessage() for r in caplog.records] == ["a record of another thread"]
        assert ("Downloading and preparing" in capsys.readouterr().out) is not quiet
    retrying.filters[:] = filters
    # tensorflow-datasets' download imports importlib_resources, which it does not declare
    # on Python 3.9+: was `zoo: error: No module named 'importlib_resources'`, exit code 1.
    def fail_to_import(name, **kwargs):
        raise ModuleNotFoundError("No module named 'importlib_resources'",
                                  name="importlib_resources")
    monkeypatch.setattr(tfds, "load", fail_to_import)
    with pytest.raises(ValueError, match=r"^tensorflow-datasets needs the Python module "
                       r"'importlib_resources' to download dataset 'cifar10', and it is not "
                       r"installed: pip install importlib_resources$"):
        data.load("cifar10", data_dir=str(tmp_path), download=True)


def test_tensorflow_datasets_finds_what_its_download_imports(tmp_path):
    # The builder's code path, which a download reads its checksums from, is where
    # tensorflow-datasets imports importlib_resources (declared in setup.cfg for it).
    import tensorflow_datasets as tfds
    assert type(tfds.builder("mnist", data_dir=str(tmp_path))).code_path.name == "mnist.py"


def test_tfds_log_records_pass_on_when_the_data_loads(tmp_path, caplog, monkeypatch):
    import logging

    import tensorflow_datasets as tfds
    real = tfds.load

    def load(*args, **kwargs):
        logging.getLogger("absl").warning("a note from tfds")
        return real(*args, **kwargs)

    monkeypatch.setattr(tfds, "load", load)
    with tfds.testing.mock_data(num_examples=4), caplog.at_level(logging.INFO):
        data.load("mnist", "test", data_dir=str(tmp_path))
    assert "a note from tfds" in [r.getMessage() for r in caplog.records if r.name == "absl"]


def test_tfds_channel_conversion_under_mock_data(tmp_path):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=4):
        ds, info = data.load("mnist", "test", image_size=(32, 32), channels=3,
                             data_dir=str(tmp_path))
        x, _ = data.to_arrays(ds)
    assert x.shape == (4, 32, 32, 3) and info.mean == [33.32] * 3
    np.testing.assert_allclose(x[..., 0], x[..., 2])


def test_tfds_colour_statistics_become_grey_by_the_luma_weights(tmp_path):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=4):
        _, info = data.load("cifar10", "test", channels=1, data_dir=str(tmp_path))
    # ITU-R 601: 0.2989 R + 0.5870 G + 0.1140 B of cifar10's [125.31, 122.95, 113.87].
    assert info.mean == pytest.approx([122.6080], abs=1e-3)
    assert info.std == pytest.approx([62.8783], abs=1e-3)


def test_pet_trimap_remap():
    np.testing.assert_array_equal(data.remap_trimap(np.array([[1, 2], [3, 1]], "uint8")),
                                  [[0, 1], [2, 0]])


def test_tfds_without_data_says_how_to_get_it(tmp_path):
    with pytest.raises(ValueError) as err:
        data.load("mnist", data_dir=str(tmp_path))
    text = str(err.value)
    assert "tfds build mnist --data_dir" in text and "--data-dir" in text
    assert "digits" in text and "shapes" in text


def test_autotune_off_on_a_cpu_and_on_where_a_gpu_computes(monkeypatch):
    # No GPU here: every pipeline of load and load_splits comes with autotuning off.
    assert data.autotune_by_default() is False
    ds, _ = data.load("digits", "test", batch_size=64)
    assert ds.options().autotune.enabled is False
    splits = data.load_splits("shapes", image_size=(16, 16), batch_size=8)
    assert [d.options().autotune.enabled for d in (splits.train, splits.validation,
                                                   splits.test)] == [False] * 3
    # The options follow the pipeline through maps of one's own (zoo.train's label check).
    assert ds.map(lambda x, y: (x, y)).options().autotune.enabled is False
    # Asked for, or where the model computes elsewhere (a GPU), tf.data's default stays.
    ds, _ = data.load("digits", "test", batch_size=64, autotune=True)
    assert ds.options().autotune.enabled is None
    import zoo.layers
    monkeypatch.setattr(zoo.layers, "_tensorflow_on_cpu", lambda: False)
    assert data.autotune_by_default() is True
    ds, _ = data.load("digits", "test", batch_size=64)
    assert ds.options().autotune.enabled is None
    assert data.with_default_autotune(ds) is ds
    ds, _ = data.load("digits", "test", batch_size=64, autotune=False)
    assert ds.options().autotune.enabled is False


def test_autotune_changes_no_example():
    kw = dict(image_size=(16, 16), batch_size=50, seed=3)
    for split, extra in (("test", {}), ("train", {"augment": False})):
        on = data.to_arrays(data.load("digits", split, autotune=True, **kw, **extra)[0])
        off = data.to_arrays(data.load("digits", split, autotune=False, **kw, **extra)[0])
        np.testing.assert_array_equal(on[0], off[0])
        np.testing.assert_array_equal(on[1], off[1])
    # Data of one's own: without_autotune keeps the elements and their order.
    ds = tf.data.Dataset.range(10).map(lambda i: i * 2, num_parallel_calls=tf.data.AUTOTUNE)
    assert list(data.without_autotune(ds).as_numpy_iterator()) == list(range(0, 20, 2))
    assert data.without_autotune(ds).options().autotune.enabled is False
    assert data.with_default_autotune(ds).options().autotune.enabled is False   # no GPU here


def test_the_dataset_names_the_commands_check_are_the_ones_zoo_data_loads():
    """zoo train, zoo tune and zoo evaluate refuse an unknown dataset before TensorFlow's
    import, by zoo.common's lists of names: the ones zoo.data's sources are keyed by."""
    from zoo import common
    assert sorted(common.EMBEDDED_DATASETS) == sorted(data._EMBEDDED)
    assert sorted(common.TFDS_DATASETS) == sorted(data._TFDS)
    assert data.list_datasets() == [*sorted(data._EMBEDDED), *sorted(data._TFDS), "folder:PATH"]
    # zoo train checks an image size against the model with the data's channels before it
    # loads the data: each named dataset's task and channels are its source's
    sources = {name: (src.task, src.channels)
               for name, src in ((n, get()) for n, get in data._EMBEDDED.items())}
    sources.update({name: (row[1], row[2]) for name, row in data._TFDS.items()})
    assert common.DATASET_KINDS == sources


def test_bad_names_and_arguments(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="Unknown dataset 'mnits'.*Did you mean: mnist"):
        data.load("mnits")
    with pytest.raises(ValueError, match="Unknown dataset 'MNIST'. Did you mean: mnist, "):
        data.load("MNIST")   # (was suggested nothing: the names were compared case by case)
    with pytest.raises(ValueError, match="Unknown dataset 'Fashion-MNIST'. Did you mean: "
                                         "fashion_mnist, "):
        data.load("Fashion-MNIST")
    with pytest.raises(ValueError, match="not found"):
        data.load(f"folder:{tmp_path}/missing")
    (tmp_path / "pets.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder is a file, not a folder (an archive is unpacked first): "
            f"'{tmp_path}/pets.zip'. Expected a directory laid out as")):
        data.load(str(tmp_path / "pets.zip"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder is a file, not a folder (an archive is unpacked first): "
            f"'{tmp_path}/pets.zip'.")):
        data.load("pets.zip")   # (was "Unknown dataset 'pets.zip'")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load("digits", "dev")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        data.load("digits", batch_size=0)
    with pytest.raises(ValueError, match="image_size must be"):
        data.load("digits", image_size=(0, 3))
    for size in ((32.5, 32), (True, 8), "32", ("3", "2")):   # not cut, read as 1 or (3, 2)
        with pytest.raises(ValueError, match=rf"positive integers. Received: image_size="
                                             rf"{re.escape(repr(size))}"):
            data.load("digits", image_size=size)
    assert data.load("digits", "test", image_size=np.int64(8))[1].input_shape[:2] == (8, 8)
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{tmp_path}' has no subfolders. Expected root/train/<label>/"
            f"*.png|jpg (+ root/validation, root/test), or root/<label>/*.png|jpg (split "
            f"80/10/10 here), or root/images + root/masks for segmentation.")):
        data.load(str(tmp_path))
    with pytest.raises(ValueError, match=r"autotune must be True, False or None .*"
                                         r"Received: autotune='yes'"):
        data.load("digits", autotune="yes")
    with pytest.raises(ValueError, match="Received: autotune=1"):
        data.load_splits("digits", autotune=1)


# --- local folders --------------------------------------------------------------------

COLOURS = {"cat": (200, 30, 30), "dog": (30, 30, 200)}


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pets")
    for split, n in (("train", 10), ("test", 3)):
        for label, colour in COLOURS.items():
            os.makedirs(root / split / label)
            for i in range(n):
                img = np.zeros((10, 12, 3), "uint8") + np.array(colour, "uint8")
                img[i % 10, :, :] = 255
                ext = "png" if i % 2 else "jpg"
                Image.fromarray(img).save(root / split / label / f"{i}.{ext}")
    return root


def test_classification_folder(class_folder):
    s = data.load_splits(f"folder:{class_folder}", batch_size=4)
    assert s.info.labels == ["cat", "dog"] and s.info.num_classes == 2
    assert s.info.input_shape == (10, 12, 3)          # the images' own size by default
    assert s.info.splits == {"train": 18, "validation": 2, "test": 6}
    for ds in (s.train, s.validation, s.test):
        x, y = data.to_arrays(ds)
        raw = x * np.array(s.info.std) + np.array(s.info.mean)
        # the label matches the folder: cats are red, dogs blue
        red = np.median(raw[..., 0].reshape(len(x), -1), 1) > np.median(
            raw[..., 2].reshape(len(x), -1), 1)
        np.testing.assert_array_equal(red, y == 0)
    # A plain path works too, with resizing and grey conversion.
    ds, info = data.load(str(class_folder), "test", image_size=(8, 8), channels=1)
    x, y = data.to_arrays(ds)
    assert x.shape == (6, 8, 8, 1) and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]


@pytest.fixture(scope="module")
def seg_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    for i in range(20):
        mask = np.zeros((16, 16), "uint8")
        mask[2 + i % 5:9 + i % 5, 3:10] = 1 + i % 2
        Image.fromarray((mask * 100).astype("uint8")).convert("RGB").save(
            root / "images" / f"im{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"im{i:02d}.png")
    return root


def test_segmentation_folder(seg_folder):
    s = data.load_splits(str(seg_folder), batch_size=8)
    assert s.info.task == "segmentation" and s.info.labels == ["0", "1", "2"]
    assert s.info.splits == {"train": 16, "validation": 2, "test": 2}
    x, m = data.to_arrays(s.train)
    assert x.shape == (16, 16, 16, 3) and m.shape == (16, 16, 16) and m.dtype == np.int32
    raw = x * np.array(s.info.std) + np.array(s.info.mean)
    np.testing.assert_array_equal(np.round(raw[..., 0] / 100).astype(int), m)
    # Resizing: masks stay class indices (nearest), images are interpolated.
    ds, _ = data.load(f"folder:{seg_folder}", "test", image_size=(24, 24))
    x, m = data.to_arrays(ds)
    assert m.shape == (2, 24, 24) and set(np.unique(m)) <= {0, 1, 2}


def test_segmentation_folder_missing_mask(tmp_path):
    os.makedirs(tmp_path / "images")
    os.makedirs(tmp_path / "masks")
    Image.fromarray(np.zeros((4, 4), "uint8")).save(tmp_path / "images" / "a.png")
    with pytest.raises(ValueError, match="has no mask"):
        data.load(str(tmp_path))


def test_segmentation_folder_refuses_what_it_would_pair_or_drop_unseen(tmp_path):
    """Images in a subfolder of images/ were left out without a word, and of two masks with
    an image's file name (a.png, a.bmp) one was taken without a word: both are refused,
    naming the files; as are two images with one name, which one mask would serve."""
    import shutil
    for i in range(4):
        for kind in ("images", "masks"):
            os.makedirs(tmp_path / kind / "2024", exist_ok=True)
            Image.fromarray(np.full((4, 4), i % 2, "uint8")).save(tmp_path / kind / f"{i}.png")
    Image.fromarray(np.zeros((4, 4), "uint8")).save(tmp_path / "images" / "2024" / "x.png")
    Image.fromarray(np.zeros((4, 4), "uint8")).save(tmp_path / "masks" / "2024" / "x.png")
    with pytest.raises(ValueError, match=f"^'{tmp_path}/images/2024' holds images in a "
                                         f"subfolder of 'images'"):
        data.load_splits(str(tmp_path))
    shutil.rmtree(tmp_path / "images" / "2024")
    shutil.rmtree(tmp_path / "masks" / "2024")
    assert data.load_splits(str(tmp_path)).info.splits == {"train": 2, "validation": 1,
                                                            "test": 1}
    Image.fromarray(np.ones((4, 4), "uint8")).save(tmp_path / "masks" / "1.bmp")
    with pytest.raises(ValueError, match=f"^Two masks for one image: '{tmp_path}/masks/1.bmp' "
                                         f"and '{tmp_path}/masks/1.png'"):
        data.load_splits(str(tmp_path))
    (tmp_path / "masks" / "1.bmp").unlink()
    Image.fromarray(np.zeros((4, 4), "uint8")).save(tmp_path / "images" / "2.jpg")
    with pytest.raises(ValueError, match=f"^Two images for one mask: '{tmp_path}/images/2.jpg' "
                                         f"and '{tmp_path}/images/2.png'"):
        data.load_splits(str(tmp_path))


def test_segmentation_folder_refuses_masks_without_an_image(tmp_path):
    """A mask whose image is missing was left out without a word."""
    root = _seg_tree(tmp_path / "seg", 10)
    for i in (3, 4, 5, 6):
        (root / "images" / f"{i}.png").unlink()
    with pytest.raises(ValueError, match=re.escape(
            f"4 masks in '{root / 'masks'}' have no image in '{root / 'images'}' ('3.png', "
            f"'4.png', '5.png', ...): each mask has its image's file name (any image "
            f"extension). Add the images or remove the masks.")):
        data.load_splits(str(root))
    for i in (3, 4, 5):
        (root / "masks" / f"{i}.png").unlink()
    with pytest.raises(ValueError, match=re.escape(
            f"1 mask in '{root / 'masks'}' has no image in '{root / 'images'}' ('6.png')")):
        data.load_splits(str(root))
    (root / "masks" / "6.png").unlink()
    assert sum(data.load_splits(str(root)).info.splits.values()) == 6


def _class_tree(root, layout, size=(6, 6)):
    """``layout``: {split: {label: number of images}}; returns ``root``."""
    for split, labels in layout.items():
        for k, (label, n) in enumerate(labels.items()):
            os.makedirs(root / split / label)
            for i in range(n):
                Image.fromarray(np.full(size, 50 * k + i, "uint8")).save(
                    root / split / label / f"{i}.png")
    return root


def test_folder_images_the_pipeline_cannot_decode_are_refused_not_skipped(tmp_path):
    # Before, the TIFF files were left out without a word: class b trained on 3 of 5 images.
    root = _class_tree(tmp_path / "c", {"train": {"a": 3, "b": 3}})
    for i in range(2):
        Image.fromarray(np.full((6, 6), 9, "uint8")).save(root / "train" / "b" / f"scan{i}.TIF")
    (root / "train" / "b" / "notes.txt").write_text("other files stay ignored\n")
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{root / 'train' / 'b'}' holds 2 images in a format the pipeline "
            f"cannot decode ('scan0.TIF', 'scan1.TIF'): dataset folders hold .png, .jpg, "
            f".jpeg, .bmp, .gif and .webp images. Convert them (to PNG, say) or remove them.")):
        data.load_splits(f"folder:{root}")
    for i in range(2):
        os.remove(root / "train" / "b" / f"scan{i}.TIF")
    assert data.load_splits(f"folder:{root}").info.splits["train"] == 5


def test_folder_reads_jpeg_s_other_extensions_and_refuses_svg(tmp_path):
    """JPEG files named .jfif (as browsers save them), .jpe, .jif or .jfi were left out
    without a word; SVG, TGA, PSD, ... files, which TensorFlow does not decode, too."""
    root = _class_tree(tmp_path / "c", {"train": {"a": 4, "b": 4}})
    for i, ext in enumerate((".jfif", ".JPE", ".jif", ".jfi")):
        Image.fromarray(np.full((6, 6), 9, "uint8")).save(root / "train" / "b" / f"x{i}{ext}",
                                                           format="JPEG")
    s = data.load_splits(str(root))
    held = np.bincount(data.to_arrays(s.validation)[1], minlength=2)
    assert (data.train_class_counts(s) + held).tolist() == [4, 8]
    (root / "train" / "a" / "logo.svg").write_text("<svg/>")
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{root / 'train' / 'a'}' holds 1 image in a format the pipeline "
            f"cannot decode ('logo.svg')")):
        data.load_splits(str(root))


def test_folder_file_that_is_no_image_is_named(tmp_path):
    root = _class_tree(tmp_path / "c", {"train": {"a": 3, "b": 3}})
    (root / "train" / "b" / "notes.png").write_text("not an image\n")
    with pytest.raises(ValueError, match=f"'{root}/train/b/notes.png' is not an image: its "
                                         "first bytes are no PNG, JPEG, GIF, BMP or WebP "
                                         "signature"):
        data.load_splits(f"folder:{root}")
    # Every format decode_image reads passes the check, whatever its extension.
    (root / "train" / "b" / "notes.png").unlink()
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "jpeg")):
        Image.fromarray(np.zeros((6, 6), "uint8")).save(root / "train" / "b" / f"x.{ext}", fmt)
    assert data.load_splits(f"folder:{root}").info.splits["train"] + 1 == 3 + 3 + 2
    for fmt, ext in (("GIF", "gif"), ("BMP", "bmp")):
        Image.fromarray(np.zeros((6, 6, 3), "uint8")).save(root / "train" / "b" / f"x.{ext}", fmt)
    assert {f"x.{ext}" for ext in ("gif", "bmp", "jpg", "jpeg")} <= {
        os.path.basename(p) for p in data._image_files(root / "train" / "b")}
    seg = tmp_path / "s"
    os.makedirs(seg / "images")
    os.makedirs(seg / "masks")
    Image.fromarray(np.zeros((4, 4), "uint8")).save(seg / "images" / "a.png")
    (seg / "masks" / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match=f"'{seg}/masks/a.png' is not an image"):
        data.load(str(seg))


def test_a_greyscale_folder_reads_gif_and_bmp_files(tmp_path):
    """TensorFlow decodes GIF and BMP to 3 or 4 channels only; a 1-channel folder turns them
    grey itself, with the same values as the PNG of the same picture."""
    root = tmp_path / "g"
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    for label in ("a", "b"):
        os.makedirs(root / "train" / label)
        Image.fromarray(grey).save(root / "train" / label / "p.png")
        Image.fromarray(grey).convert("RGB").save(root / "train" / label / "q.bmp")
        Image.fromarray(grey).save(root / "train" / label / "r.gif")
    for name in ("p.png", "q.bmp", "r.gif"):
        img = data._decode(str(root / "train" / "a" / name), 1).numpy()
        assert img.shape == (8, 8, 1) and np.array_equal(img[..., 0], grey), name
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "rgba.bmp")
    expected = np.asarray(tf.image.rgb_to_grayscale(rgba[..., :3]))
    assert np.array_equal(data._decode(str(root / "rgba.bmp"), 1).numpy(), expected)
    splits = data.load_splits(f"folder:{root}", channels=1)
    assert splits.info.input_shape[-1] == 1 and splits.info.splits["train"] >= 5
    images, _ = next(iter(splits.train.unbatch().batch(64)))
    assert images.shape[-1] == 1


def test_folder_datasets_read_webp_files_in_colour_and_grey(tmp_path):
    """.webp files are listed and decoded (TensorFlow reads WebP in its own channels only:
    the pipeline drops an alpha channel, and turns the colour grey for one channel)."""
    root = tmp_path / "w"
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    alpha = rng.integers(1, 256, (8, 8, 1), dtype=np.uint8)   # (fully clear pixels lose
    # their colour in the encoder)
    for label in ("a", "b"):
        os.makedirs(root / "train" / label)
        Image.fromarray(rgb).save(root / "train" / label / "p.webp", lossless=True)
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(root / "train" / label / "q.webp",
                                                              lossless=True)
    for name in ("p.webp", "q.webp"):
        path = str(root / "train" / "a" / name)
        np.testing.assert_array_equal(data._decode(path, 3).numpy(), rgb)
        np.testing.assert_array_equal(data._decode(path, 1).numpy(),
                                      tf.image.rgb_to_grayscale(rgb).numpy())
    for channels in (3, 1):
        splits = data.load_splits(f"folder:{root}", channels=channels)
        images, _ = next(iter(splits.train.unbatch().batch(64)))
        assert splits.info.splits["train"] >= 3 and images.shape[-1] == channels


def _truncate(path, cut=20):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - cut])


def test_folder_image_that_cannot_be_decoded_is_named(tmp_path):
    root = _class_tree(tmp_path / "c", {"train": {"a": 3, "b": 3}})
    _truncate(root / "train" / "a" / "1.png")
    with pytest.raises(ValueError, match=f"^Dataset folder '{root}': 1 image could not be "
                                         r"decoded \(.+\): 'train/a/1.png'\. Remove or "
                                         r"replace the damaged \(e\.g\. truncated\) files\.$"):
        data.load_splits(f"folder:{root}")
    # Several, in any split (also those the statistics do not read): up to three named.
    for split, label, i in [("train", "b", 0), ("train", "b", 2)]:
        _truncate(root / split / label / f"{i}.png")
    with pytest.raises(ValueError, match=r"3 images could not be decoded \(.+\): "
                                         r"'train/a/1.png', 'train/b/0.png', 'train/b/2.png'\. "):
        data.load_splits(f"folder:{root}")
    # Files beside the splits that no split reads (docs/diagram.svg, docs/scan.tif) were
    # refused by the search for the damaged images, in place of naming them.
    os.makedirs(root / "docs")
    (root / "docs" / "diagram.svg").write_text("<svg/>")
    (root / "docs" / "scan.tif").write_bytes(b"II*\x00")
    with pytest.raises(ValueError, match=r"3 images could not be decoded \(.+\): "
                                         r"'train/a/1.png', 'train/b/0.png', 'train/b/2.png'\. "):
        data.load_splits(f"folder:{root}")
    # Cut inside its header: named by the channel check, which reads the headers of a sample
    # of the training split (a/2.png's; a/0.png is the validation split held out of train/).
    _truncate(root / "train" / "a" / "2.png", cut=len((root / "train" / "a" / "2.png")
                                                      .read_bytes()) - 12)
    with pytest.raises(ValueError, match=re.escape(
            f"{str(root / 'train' / 'a' / '2.png')!r} could not be read as an image "
            "(UnidentifiedImageError: its header is damaged or cut short). Remove or replace "
            "the file.")):
        data.load_splits(f"folder:{root}")


def test_an_image_that_fails_after_the_statistics_is_named_too(tmp_path):
    from zoo.train import fit, label_errors_as
    root = _class_tree(tmp_path / "c", {"train": {"a": 3, "b": 3}, "test": {"a": 2, "b": 2}})
    _truncate(root / "test" / "b" / "1.png")
    splits = data.load_splits(f"folder:{root}", image_size=32)   # statistics: train/ only
    # (label_errors_as: what a search's trials and evaluation read their data under)
    with pytest.raises(ValueError, match=r"1 image could not be decoded \(.+\): "
                                         r"'test/b/1.png'\. Remove"):
        with label_errors_as(ValueError, splits.info.name):
            list(splits.test)
    with pytest.raises(tf.errors.InvalidArgumentError):   # without a dataset: as it is
        with label_errors_as(ValueError):
            list(splits.test)
    # zoo.train.fit: after training, in the test split's evaluation.
    with pytest.raises(ValueError, match=r"1 image could not be decoded \(.+\): "
                                         r"'test/b/1.png'\. Remove"):
        fit("lenet5", splits, epochs=1, run_dir=tmp_path / "run", verbose=0)


def test_folder_class_layout_needs_two_classes_with_images(tmp_path):
    one = _class_tree(tmp_path / "one", {"train": {"a": 4}})
    with pytest.raises(ValueError, match=f"'{one}/train' has one label subfolder \\('a'\\); "
                                         "a classifier needs at least 2 classes"):
        data.load_splits(f"folder:{one}")
    empty = _class_tree(tmp_path / "empty", {"train": {"a": 4, "b": 4}})
    os.makedirs(empty / "train" / "c")
    (empty / "train" / "c" / "readme.txt").write_text("to do")
    with pytest.raises(ValueError, match=f"Class folder '{empty}/train/c' has no images"):
        data.load_splits(f"folder:{empty}")
    # a folder unpacked from a macOS zip: its __MACOSX/ holds hidden ._* files only
    mac = _class_tree(tmp_path, {"mac": {"a": 4, "b": 4}}) / "mac"
    os.makedirs(mac / "__MACOSX" / "a")
    (mac / "__MACOSX" / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07")
    with pytest.raises(ValueError, match=r"__MACOSX' has no images \(.*\) \(__MACOSX/ holds the "
                                         r"file metadata macOS adds to a zip archive, not "
                                         r"images\); every class needs training images"):
        data.load_splits(f"folder:{mac}")


def test_segmentation_folder_masks_must_fit_labels_txt(seg_folder, tmp_path):
    import shutil
    root = tmp_path / "cells"
    shutil.copytree(seg_folder, root)              # mask values 0, 1, 2
    (root / "labels.txt").write_text("background\ncell\n")
    with pytest.raises(ValueError, match=f"Mask '{root}/masks/im01.png' holds class 2, but "
                                         f"'{root}/labels.txt' lists 2 labels, so mask values "
                                         "must be in 0..1"):
        data.load_splits(str(root))
    (root / "labels.txt").write_text("background\n")
    with pytest.raises(ValueError, match="lists 1 label\\(s\\); a segmentation dataset needs "
                                         "at least 2 classes"):
        data.load_splits(str(root))
    (root / "labels.txt").write_text("background\ncell\nnucleus\n")
    assert data.load_splits(str(root)).info.labels == ["background", "cell", "nucleus"]


def test_folder_skips_hidden_entries_and_reads_class_subfolders(tmp_path):
    """Hidden files and folders (``.DS_Store``, macOS' ``._x.png`` resource forks,
    ``.ipynb_checkpoints``) are no data; images in a class folder's subfolders belong to
    the class; a folder named like an image is no file."""
    root = _class_tree(tmp_path / "c", {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}})
    os.makedirs(root / "train" / ".ipynb_checkpoints")
    os.makedirs(root / "test" / ".Trash")
    (root / "train" / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(40))
    (root / "train" / "a" / "._0.png").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X        ")
    os.makedirs(root / "train" / "b" / "2024" / ".hidden")
    os.makedirs(root / "train" / "b" / "album.png")
    Image.fromarray(np.full((6, 6), 9, "uint8")).save(root / "train" / "b" / "2024" / "x.png")
    Image.fromarray(np.full((6, 6), 9, "uint8")).save(
        root / "train" / "b" / "2024" / ".hidden" / "y.png")
    s = data.load_splits(f"folder:{root}", batch_size=8)
    assert s.info.labels == ["a", "b"]
    assert s.info.splits["train"] + s.info.splits["validation"] == 3 + 4
    assert data._image_files(root / "train" / "b", recursive=True)[-1] == str(
        root / "train" / "b" / "2024" / "x.png")


def test_folder_follows_linked_subfolders_once_and_names_a_broken_link(tmp_path):
    """A class folder's subfolder that is a symbolic link is read like any other (its
    images were dropped without a word); a folder reached twice (a link back to a folder
    above, a link beside its target) is read once; a link to no file is named."""
    root = _class_tree(tmp_path / "c", {"train": {"a": 3, "b": 3}})
    _class_tree(tmp_path / "elsewhere", {"more": {"x": 4}})
    os.symlink(tmp_path / "elsewhere" / "more" / "x", root / "train" / "a" / "linked")
    os.symlink(root / "train" / "a", root / "train" / "a" / "linked" / "loop")
    os.makedirs(root / "train" / "b" / "sub")
    Image.fromarray(np.full((6, 6), 7, "uint8")).save(root / "train" / "b" / "sub" / "x.png")
    os.symlink(root / "train" / "b" / "sub", root / "train" / "b" / "sub_link")
    found = data._image_files(root / "train" / "a", recursive=True)
    assert len(found) == 3 + 4
    assert str(root / "train" / "a" / "linked" / "0.png") in found
    assert len(data._image_files(root / "train" / "b", recursive=True)) == 3 + 1
    s = data.load_splits(f"folder:{root}", batch_size=8)
    assert s.info.splits["train"] + s.info.splits["validation"] == 3 + 4 + 3 + 1
    assert data.train_class_counts(s).sum() == s.info.splits["train"]
    os.symlink(tmp_path / "gone.png", root / "train" / "b" / "broken.png")
    with pytest.raises(ValueError, match=f"'{root}/train/b/broken.png' is a symbolic link "
                                         f"to a file that does not exist"):
        data.load_splits(f"folder:{root}")


def test_a_link_to_a_missing_folder_is_refused_not_left_out(tmp_path):
    """A class folder, or a class's subfolder, that is a link to a folder no longer there
    (an unmounted disk) or a loop of links was left out without a word: a class lost."""
    root = _class_tree(tmp_path / "c", {"train": {"a": 3, "b": 3}})
    for link, target in ((root / "train" / "c", tmp_path / "unmounted" / "c"),
                         (root / "train" / "a" / "more", "more")):   # gone; a loop
        os.symlink(target, link)
        with pytest.raises(ValueError, match=re.escape(
                f"'{link}' is a symbolic link that leads to no file or folder ('{target}'): "
                f"what it held would be left out. Remove the link or restore its target.")):
            data.load_splits(str(root))
        os.remove(link)
    assert data.load_splits(str(root)).info.labels == ["a", "b"]


def test_two_class_folders_that_are_one_through_a_link_are_refused(tmp_path):
    """A class folder that is a link to another (kitty -> cat), or to a folder inside
    another's tree, would read the same images under two labels: refused, naming both."""
    root = _class_tree(tmp_path / "same", {"": {"cat": 3, "dog": 3}})
    os.symlink(root / "cat", root / "kitty")
    with pytest.raises(ValueError, match=re.escape(
            f"Class folders 'cat' and 'kitty' of '{root}' are the same folder, through a "
            f"symbolic link ({root}/cat): their images would have both labels. Remove the "
            f"link, or merge the classes.")):
        data.load_splits(str(root))
    inside = _class_tree(tmp_path / "in", {"train": {"cat": 3, "dog": 3}})
    os.makedirs(inside / "train" / "cat" / "persian")
    Image.fromarray(np.zeros((6, 6), "uint8")).save(inside / "train" / "cat" / "persian" / "p.png")
    os.symlink(inside / "train" / "cat" / "persian", inside / "train" / "persian")
    with pytest.raises(ValueError, match=re.escape(
            f"Class folders 'cat' and 'persian' of '{inside}/train' are one folder and a "
            f"folder inside it ('persian' is in 'cat'), through a symbolic link "
            f"({inside}/train/cat/persian)")):
        data.load_splits(str(inside))
    os.remove(inside / "train" / "persian")   # a link to a folder elsewhere is a class
    os.symlink(tmp_path / "same" / "dog", inside / "train" / "hound")
    assert data.load_splits(str(inside)).info.labels == ["cat", "dog", "hound"]


def test_an_image_file_listed_twice_through_a_link_is_refused(tmp_path):
    """A link inside a class folder to another class's folder (or to the folder above it),
    a link to another class's file, or a hard link into the test split, read one image
    under two labels or in two splits: refused, naming both paths."""
    root = _class_tree(tmp_path / "c", {"train": {"cat": 3, "dog": 3}})
    train = root / "train"
    os.symlink("..", train / "dog" / "up")     # dog/up/cat/*.png: the cats again, as dogs
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{root}' lists one image file twice, as 'train/cat/0.png' and "
            f"'train/dog/up/cat/0.png' (through a symbolic or hard link): it would be read "
            f"under two labels, 'cat' and 'dog'. Remove the link.")):
        data.load_splits(str(root))
    os.remove(train / "dog" / "up")
    os.symlink(train / "cat" / "2.png", train / "dog" / "9.png")
    with pytest.raises(ValueError, match=re.escape(
            "as 'train/cat/2.png' and 'train/dog/9.png' (through a symbolic or hard link): "
            "it would be read under two labels, 'cat' and 'dog'.")):
        data.load_splits(str(root))
    os.remove(train / "dog" / "9.png")
    os.makedirs(root / "test" / "cat")
    os.link(train / "cat" / "1.png", root / "test" / "cat" / "1.png")
    with pytest.raises(ValueError, match=re.escape(
            "as 'train/cat/1.png' and 'test/cat/1.png' (through a symbolic or hard link): it "
            "would be read in the train and test splits.")):
        data.load_splits(str(root))
    os.remove(root / "test" / "cat" / "1.png")
    whole = _class_tree(tmp_path / "w", {"": {"a": 10, "b": 10}})
    os.symlink(whole / "a" / "0.png", whole / "a" / "0-again.png")
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{whole}' lists one image file twice, as 'a/0-again.png' and "
            f"'a/0.png' (through a symbolic or hard link): it would be read twice.")):
        data.load_splits(str(whole))


def test_files_without_inode_numbers_are_told_apart_by_their_real_path(tmp_path,
                                                                       monkeypatch):
    """Where a file system gives no inode numbers (0, which Python documents as none), the
    images are still distinct files, and a link is still found by its real path."""
    root = _class_tree(tmp_path / "c", {"": {"cat": 5, "dog": 5}})
    real_stat = os.stat

    def no_inode(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        return os.stat_result(st[:1] + (0,) + st[2:])   # st_ino is field 1

    monkeypatch.setattr(data.os, "stat", no_inode)
    assert sum(data.load_splits(str(root)).info.splits.values()) == 10
    os.symlink(root / "cat" / "2.png", root / "dog" / "9.png")
    with pytest.raises(ValueError, match=re.escape(
            "as 'cat/2.png' and 'dog/9.png' (through a symbolic or hard link): it would be "
            "read under two labels, 'cat' and 'dog'.")):
        data.load_splits(str(root))


def test_a_segmentation_image_listed_twice_through_a_link_is_refused(tmp_path):
    """An image linked into the test split's images/ (or twice into one images/ folder, which
    the 80/10/10 split may put in two splits) is refused; masks may be shared (one empty
    mask linked for many images)."""
    root = tmp_path / "s"
    _seg_tree(root / "train", 10)
    _seg_tree(root / "test", 2, start=100)
    os.link(root / "train" / "images" / "4.png", root / "test" / "images" / "9.png")
    os.link(root / "train" / "masks" / "4.png", root / "test" / "masks" / "9.png")
    # (named in the order of the splits: train's, the test folder's, validation's held out)
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{root}' lists one image file twice, as ") +
            "('train/images/4.png' and 'test/images/9.png'|'test/images/9.png' and "
            "'train/images/4.png')" + re.escape(" (through a symbolic or hard link): it would "
                                                "be read in the ") +
            "(train and test|test and validation)" + re.escape(" splits. Remove the link.")):
        data.load_splits(str(root))
    whole = _seg_tree(tmp_path / "w", 10)
    os.symlink(whole / "images" / "0.png", whole / "images" / "10.png")
    Image.fromarray(np.full((4, 4), 1, "uint8")).save(whole / "masks" / "10.png")
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{whole}' lists one image file twice, as ")):
        data.load_splits(str(whole))
    os.remove(whole / "images" / "10.png")
    os.remove(whole / "masks" / "10.png")
    for i in (1, 2):
        os.remove(whole / "masks" / f"{i}.png")
        os.symlink(whole / "masks" / "0.png", whole / "masks" / f"{i}.png")
    assert sum(data.load_splits(str(whole)).info.splits.values()) == 10


def test_class_folders_sharing_a_name_prefix_are_distinct_and_a_link_among_many_is_found(
        tmp_path):
    """'cat', 'cat-2' and 'cat.b' are three folders (a path's prefix is no parent without
    its separator); among 60 classes, a link into one of them is found wherever the two
    labels sort (the folders are compared by path, neighbours only)."""
    root = tmp_path / "train"
    labels = ["cat", "cat-2", "cat.b"] + [f"c{i:02d}" for i in range(57)]
    for label in labels:
        os.makedirs(root / label)
    os.makedirs(root / "cat" / "persian")
    data._check_distinct_classes(str(root), labels)
    os.symlink(root / "cat" / "persian", root / "a-persian")
    with pytest.raises(ValueError, match=re.escape(
            f"Class folders 'cat' and 'a-persian' of '{root}' are one folder and a folder "
            f"inside it ('a-persian' is in 'cat')")):
        data._check_distinct_classes(str(root), sorted(labels + ["a-persian"]))
    os.remove(root / "a-persian")
    os.symlink(root / "c07", root / "z-c07")
    with pytest.raises(ValueError, match=re.escape(
            f"Class folders 'c07' and 'z-c07' of '{root}' are the same folder")):
        data._check_distinct_classes(str(root), labels + ["z-c07"])


def test_folder_channels_are_colour_when_any_training_image_is(tmp_path):
    root = tmp_path / "mixed"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        os.makedirs(root / "train" / label)
        Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(
            root / "train" / label / "0_grey.png")             # the first file of each class
        for i in range(1, 4):
            Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(
                root / "train" / label / f"{i}_colour.png")
    s = data.load_splits(f"folder:{root}", batch_size=8)
    assert s.info.input_shape == (6, 6, 3) and len(s.info.mean) == 3
    for label in ("a", "b"):
        for i in range(1, 4):
            Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).convert("LA").save(
                root / "train" / label / f"{i}_colour.png")
    assert data.load_splits(f"folder:{root}", batch_size=8).info.input_shape == (6, 6, 1)


def test_folder_statistics_are_measured_on_every_class(tmp_path):
    """The mean and std come from up to 512 training images spread over the folder, not
    from its first files (which all belong to the first classes)."""
    root = tmp_path / "bw"
    for label, value in (("a_black", 0), ("b_white", 200)):
        os.makedirs(root / "train" / label)
        for i in range(300):
            Image.fromarray(np.full((2, 2), value, "uint8")).save(
                root / "train" / label / f"{i:03d}.png")
    s = data.load_splits(f"folder:{root}", batch_size=64)
    assert s.info.mean[0] == pytest.approx(100, abs=5)
    assert s.info.std[0] == pytest.approx(100, abs=5)


def test_a_channel_without_spread_is_divided_by_one(tmp_path):
    """A constant channel has std 0: it is divided by 1, so an image that differs from
    the training images keeps its differences in pixel units (not thousands)."""
    root = tmp_path / "flat"
    for label in ("a", "b"):
        os.makedirs(root / "train" / label)
        for i in range(3):
            Image.fromarray(np.full((4, 4), 80, "uint8")).save(root / "train" / label / f"{i}.png")
    info = data.load_splits(f"folder:{root}", batch_size=8).info
    assert info.mean == [80.0] and info.std == [1.0]
    assert data.preprocess(np.full((1, 4, 4, 1), 90.0), info).numpy().max() == 10.0


def test_folder_training_order_draws_from_every_file(tmp_path):
    """The train split is shuffled over its whole file list, which is sorted by class: a
    4096-image shuffle buffer held only class a's images at first, and the first 305
    examples of each epoch held none of class b's (all past the 4,400th file)."""
    root = tmp_path / "many"
    for label, n in (("a", 4400), ("b", 200)):
        for split in ("train", "validation"):
            os.makedirs(root / split / label)
        Image.fromarray(np.zeros((1, 1), "uint8")).save(root / "validation" / label / "0.png")
        for i in range(n):
            Image.fromarray(np.zeros((1, 1), "uint8")).save(
                root / "train" / label / f"{i:04d}.png")
    train = data.load_splits(f"folder:{root}", batch_size=32).train
    for _ in range(2):   # each epoch
        first = np.concatenate([y for _, y in train.take(10).as_numpy_iterator()])
        assert len(first) == 320 and (first == 1).sum() >= 4   # 14 expected (200 of 4,600)


def test_folder_validation_hold_out_is_stratified(tmp_path):
    root = _class_tree(tmp_path / "c", {"train": {"a": 10, "b": 1, "c": 10}})
    s = data.load_splits(f"folder:{root}", batch_size=64)
    assert s.info.splits == {"train": 19, "validation": 2, "test": 2}
    _, y_train = data.to_arrays(s.train)
    _, y_val = data.to_arrays(s.validation)
    # Each class in proportion, and a class's only image stays in train.
    assert np.bincount(y_val, minlength=3).tolist() == [1, 0, 1]
    assert np.bincount(y_train, minlength=3).tolist() == [9, 1, 9]
    again = data.load_splits(f"folder:{root}", batch_size=64, seed=5)
    np.testing.assert_array_equal(data.to_arrays(again.validation)[0],
                                  data.to_arrays(s.validation)[0])    # fixed, not seeded
    root = _class_tree(tmp_path / "d", {"train": {"a": 30, "b": 10}})
    _, y_val = data.to_arrays(data.load_splits(f"folder:{root}", batch_size=64).validation)
    assert np.bincount(y_val, minlength=2).tolist() == [3, 1]
    root = _class_tree(tmp_path / "e", {"train": {"a": 30, "b": 15}})   # 45 // 10: 4 held out
    s = data.load_splits(f"folder:{root}", batch_size=64)
    assert s.info.splits == {"train": 41, "validation": 4, "test": 4}
    assert np.bincount(data.to_arrays(s.validation)[1], minlength=2).tolist() == [3, 1]


def test_stratified_holdout_reads_the_labels_in_one_sort_not_a_pass_per_class(monkeypatch):
    # Each class's members were found by comparing every label with it: K passes over N
    # labels (10,000 classes of 10 images: 0.5 s a holdout, twice for a flat folder).
    rng = np.random.default_rng(1)
    ys = np.repeat(np.arange(500), rng.integers(1, 8, 500)).tolist()
    rng.shuffle(ys)
    ranks = rng.integers(0, 2 ** 63, len(ys)).tolist()
    expected = []   # the holdout as defined, class by class
    held = data._stratified_holdout(ys, len(ys) // 10, ranks)
    counts = np.bincount(ys)
    quota = len(ys) // 10 * counts / len(ys)
    take = np.minimum(np.floor(quota).astype(int), counts - 1)
    for k in np.argsort(-(quota - np.floor(quota)), kind="stable"):
        if take.sum() >= len(ys) // 10:
            break
        take[k] += take[k] < counts[k] - 1
    for label, n in enumerate(take):
        members = np.flatnonzero(np.asarray(ys) == label)
        expected += sorted(members, key=ranks.__getitem__)[:n]
    assert held == sorted(expected) and len(held) == len(ys) // 10
    read = []
    for name in ("flatnonzero", "argsort", "lexsort", "equal", "nonzero", "where"):
        def counted(a, *args, _f=getattr(np, name), **kwargs):
            read.append(np.size(a))
            return _f(a, *args, **kwargs)
        monkeypatch.setattr(data.np, name, counted)
    assert data._stratified_holdout(ys, len(ys) // 10, ranks) == held
    assert sum(read) < 4 * len(ys), sum(read)   # a few passes over the labels, not 500


def test_folder_of_class_folders_is_split_80_10_10(tmp_path):
    """A folder holding only class folders (root/<label>/*, as most photo collections come)
    was refused for having no train/ folder: it is split here into fixed, stratified test and
    validation parts of 10% each, a class's only image staying in train."""
    root = _class_tree(tmp_path / "c", {"": {"a": 30, "b": 10, "c": 1}})
    s = data.load_splits(f"folder:{root}", batch_size=64)
    assert s.info.labels == ["a", "b", "c"]
    assert s.info.splits == {"train": 33, "validation": 4, "test": 4}

    def values(ds):   # every image is one grey value of its own (50 * class + index)
        x, y = data.to_arrays(ds)
        raw = x * np.array(s.info.std) + np.array(s.info.mean)
        return np.round(raw[:, 0, 0, 0]).astype(int), y
    (train, y_train), (val, y_val), (test, y_test) = map(values, (s.train, s.validation,
                                                                  s.test))
    assert np.bincount(y_test, minlength=3).tolist() == [3, 1, 0]
    assert np.bincount(y_val, minlength=3).tolist() == [3, 1, 0]
    assert np.bincount(y_train, minlength=3).tolist() == [24, 8, 1]
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert sorted({*train, *val, *test}) == [*range(30), *range(50, 60), 100]
    np.testing.assert_array_equal(y_train, train // 50)   # labels follow the folders
    again = data.load_splits(f"folder:{root}", batch_size=64, seed=5)   # fixed, not seeded
    assert sorted(values(again.test)[0]) == sorted(test)
    assert sorted(values(again.validation)[0]) == sorted(val)
    assert data.load(str(root), "test", image_size=(4, 4))[1].splits == s.info.splits


def test_images_added_to_a_folder_move_no_other_image_between_its_splits(tmp_path):
    """The split of a folder with no validation or test folder ranks each class's files by a
    hash of their path in the folder: an image added leaves every other in its split, but
    for one at a boundary its rank passes or the class's share moves (at most one a
    boundary), and a copy of the folder elsewhere splits alike. Before, each class's holdout
    was a random draw that one more file drew anew: one image added to a class moved most
    of its held-out images (an image added to a class of 310: 98 of its files changed
    split)."""
    import shutil

    def tree(root, seg=False):
        for k, label in enumerate(["images"] if seg else ["a", "b"]):
            os.makedirs(root / label)
            for i in range(60):   # each image one grey value of its own: 100 * k + i
                Image.fromarray(np.full((4, 4), 100 * k + i, "uint8")).save(
                    root / label / f"{i}.png")
        if seg:
            shutil.copytree(root / "images", root / "masks")   # masks of classes 0-59
        return root

    def splits(root):   # {grey value: split}
        s = data.load_splits(str(root), batch_size=256, image_size=(4, 4))
        where = {}
        for split in ("train", "validation", "test"):
            x, _ = data.to_arrays(getattr(s, split))
            raw = x * np.array(s.info.std) + np.array(s.info.mean)
            where.update((int(v), split) for v in np.round(raw[:, 0, 0, 0]))
        return where

    for seg in (False, True):
        root = tree(tmp_path / f"seg{seg}", seg)
        before = splits(root)
        assert sorted(before) == list(range(60)) + ([] if seg else list(range(100, 160)))
        assert splits(shutil.copytree(root, tmp_path / f"copy{seg}")) == before
        for i, name in enumerate(["x.png", "y.png", "10a.png"]):   # one at a time
            for folder in ["images", "masks"] if seg else ["a"]:
                Image.fromarray(np.full((4, 4), 60 + i, "uint8")).save(root / folder / name)
            after = splits(root)
            moved = [v for v in before if after[v] != before[v]]
            assert len(moved) <= 2 and all(v < 100 for v in moved), (seg, name, moved)
            before = after


def test_folder_of_class_folders_refusals(tmp_path):
    # Folders named like splits would be read as classes ("Test" and "Train").
    for names in (("Test", "Train"), ("test_set", "training_set"), ("VAL", "a", "b")):
        root = _class_tree(tmp_path / "_".join(names), {"": {n: 2 for n in names}})
        shown = ", ".join(repr(n) for n in names if n not in ("a", "b"))
        with pytest.raises(ValueError, match=re.escape(
                f"Dataset folder '{root}' has no train/ folder, but its folders {shown} look "
                f"like splits, not classes. Name the split folders train/, validation/ (or "
                f"val/, valid/) and test/, in lower case; a folder holding only class folders "
                f"(root/<label>/*.png|jpg) is split 80/10/10.")):
            data.load_splits(str(root))
    # Too few images for both parts: two classes of one image; 2 + 1 images (the test part
    # takes a's second image, and then no class has one to spare).
    for counts in ({"a": 1, "b": 1}, {"a": 2, "b": 1}):
        root = _class_tree(tmp_path / f"few{len(counts)}{counts['a']}", {"": counts})
        n = sum(counts.values())
        with pytest.raises(ValueError, match=re.escape(
                f"Dataset folder '{root}' has too few images to hold out a validation and a "
                f"test split ({n} images in 2 class folders; a class's only image stays in "
                f"train). Add images, or split them yourself into train/<label>/, "
                f"validation/<label>/ and test/<label>/.")):
            data.load_splits(str(root))
    # One class folder; an image beside the class folders.
    one = _class_tree(tmp_path / "one", {"": {"photos": 4}})
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{one}' has one label subfolder ('photos'); a classifier needs "
            f"at least 2 classes (<label>/*.png|jpg, one subfolder per class).")):
        data.load_splits(str(one))
    loose = _class_tree(tmp_path / "loose", {"": {"a": 10, "b": 10}})
    Image.fromarray(np.zeros((6, 6), "uint8")).save(loose / "x.png")
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{loose}' holds 1 image outside its class folders (['x.png']): "
            f"they have no class. Move them into loose/<label>/ or remove them.")):
        data.load_splits(str(loose))
    # A validation or test folder without train/ is still refused.
    no_train = _class_tree(tmp_path / "nt", {"validation": {"a": 2, "b": 2}})
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{no_train}' has no 'train' subfolder beside its validation or "
            f"test folder.")):
        data.load_splits(str(no_train))
    # A class named like a split, beside other class folders: the message says so.
    named = _class_tree(tmp_path / "named", {"": {"cat": 2, "dog": 2, "test": 2}})
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{named}' holds test/ beside other folders (cat/, dog/): test/ "
            f"is read as a split, which needs train/ beside it. If test/ is a class, rename "
            f"it (e.g. test_/); else move the class folders into train/.")):
        data.load_splits(str(named))


def test_info_says_whether_the_test_split_is_the_validation_split(tmp_path, seg_folder):
    """A folder without test/ serves its validation split as test (the test score is then
    on the split that chose the model): DatasetInfo.test_is_validation says so, and its
    dict form keeps it (older dicts without it read as False)."""
    cases = {"train": {"train": {"a": 10, "b": 10}},
             "train+val": {"train": {"a": 10, "b": 10}, "validation": {"a": 2, "b": 2}},
             "train+test": {"train": {"a": 10, "b": 10}, "test": {"a": 2, "b": 2}},
             "whole": {"": {"a": 10, "b": 10}}}
    got = {name: data.load_splits(str(_class_tree(tmp_path / name.replace("+", "_"), layout)))
           .info.test_is_validation for name, layout in cases.items()}
    assert got == {"train": True, "train+val": True, "train+test": False, "whole": False}
    assert data.load_splits(str(seg_folder)).info.test_is_validation is False   # 80/10/10
    assert data.load_splits("digits").info.test_is_validation is False
    info = data.load_splits(str(tmp_path / "train")).info
    assert info.to_dict()["test_is_validation"] is True
    assert data.DatasetInfo.from_dict(info.to_dict()) == info
    older = {k: v for k, v in info.to_dict().items() if k != "test_is_validation"}
    assert data.DatasetInfo.from_dict(older).test_is_validation is False
    with pytest.raises(ValueError, match=r"DatasetInfo.test_is_validation must be True or "
                                         r"False. Received: test_is_validation='yes'"):
        data.DatasetInfo.from_dict({**older, "test_is_validation": "yes"})


def test_folder_with_two_folders_for_one_split_is_refused(tmp_path):
    # Before, val/ was read as the validation split and validation/ beside it ignored.
    root = _class_tree(tmp_path / "two", {"train": {"a": 3, "b": 3}, "val": {"a": 1, "b": 1},
                                          "validation": {"a": 1, "b": 1}})
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{root}' holds validation/ and val/: both would be its "
            f"validation split. Keep one of them.")):
        data.load_splits(f"folder:{root}")


def test_folder_named_like_a_split_beside_the_split_folders_is_refused(tmp_path):
    """Test/, testing/ or val_set/ beside train/ were left out without a word (the test
    split became the validation split); a folder named otherwise is no split and stays
    ignored."""
    root = _class_tree(tmp_path / "c", {"train": {"a": 5, "b": 5}, "Test": {"a": 1, "b": 1}})
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{root}' holds Test/ beside train/: Test/ looks like a split but "
            f"would be left out (the split folders are train/, validation/ (or val/, "
            f"valid/) and test/, in lower case). Rename or remove it.")):
        data.load_splits(str(root))
    os.rename(root / "Test", root / "test")
    _class_tree(root / "more", {"testing": {"a": 1}, "val_set": {"a": 1}})
    for d in ("testing", "val_set"):
        os.rename(root / "more" / d, root / d)
    with pytest.raises(ValueError, match=re.escape(
            f"holds testing/ and val_set/ beside test/ and train/: testing/ and val_set/ look "
            f"like splits but would be left out")):
        data.load_splits(str(root))
    for d in ("testing", "val_set"):
        os.rename(root / d, root / "more" / d)
    assert data.load_splits(str(root)).info.splits == {"train": 9, "validation": 1,
                                                       "test": 2}
    seg = _seg_tree(tmp_path / "s" / "train", 10).parent
    _seg_tree(seg / "dev", 2)
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{seg}' holds dev/ beside train/: dev/ looks like a split")):
        data.load_splits(str(seg))
    whole = _seg_tree(tmp_path / "w", 10)
    _seg_tree(whole / "Test", 2)
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{whole}' holds Test/ beside images/ + masks/: Test/ looks like "
            f"a split")):
        data.load_splits(str(whole))


def test_folder_split_names_val_and_valid_are_the_validation_split(tmp_path):
    for name in ("val", "valid"):
        root = _class_tree(tmp_path / name, {"train": {"a": 5, "b": 5}, name: {"a": 1, "b": 2}})
        s = data.load_splits(str(root), batch_size=8)
        assert s.info.splits == {"train": 10, "validation": 3, "test": 3}
        assert s.info.test_is_validation is True
        assert data.to_arrays(s.validation)[1].tolist() == [0, 1, 1]


def test_folder_split_with_a_class_train_does_not_have_is_refused(tmp_path):
    """Its images would have no class to train: they were left out without a word."""
    for split in ("validation", "test"):
        root = _class_tree(tmp_path / split, {"train": {"a": 3, "b": 3},
                                              split: {"a": 1, "b": 1, "c": 1}})
        with pytest.raises(ValueError, match=re.escape(
                f"Dataset folder '{root / split}' has labels not in train: ['c']. Train "
                f"labels: ['a', 'b'].")):
            data.load_splits(str(root))
    # 'café' as NFC in train/ and NFD in validation/ (as copies between systems leave names)
    # read "labels not in train: ['café']. Train labels: ['café']": told apart.
    import unicodedata
    nfd = unicodedata.normalize("NFD", "café")
    root = _class_tree(tmp_path / "nfd", {"train": {"café": 3, "tea": 3},
                                          "validation": {nfd: 1, "tea": 1}})
    told = (f"has labels not in train: [{nfd!r}]. Train labels: ['café', 'tea']. {nfd!r} is "
            f"train's 'café' in another Unicode form ('cafe\\u0301' against 'caf\\xe9'): "
            f"rename the folder alike.")
    with pytest.raises(ValueError, match=re.escape(told)):
        data.load_splits(str(root))


def test_folder_splits_without_images_are_refused(tmp_path):
    empty_val = _class_tree(tmp_path / "e", {"train": {"a": 3, "b": 3},
                                             "validation": {"a": 0, "b": 0}})
    with pytest.raises(ValueError, match=f"^No images .* found in the class folders of "
                                         f"'{empty_val}/validation'. Add images, or remove"):
        data.load_splits(f"folder:{empty_val}")
    singles = _class_tree(tmp_path / "s", {"train": {"a": 1, "b": 1, "c": 1}})
    with pytest.raises(ValueError, match=f"^Dataset folder '{singles}' has no validation "
                                         "folder and too few training images to hold some "
                                         "out: 3 images, one per class"):
        data.load_splits(f"folder:{singles}")


def test_folder_images_outside_the_class_folders_are_refused(tmp_path):
    """An image lying in a split folder beside the class folders has no class: it was
    left out without a word."""
    root = _class_tree(tmp_path / "c", {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}})
    for split, name in (("train", "x.png"), ("test", "y.JPG")):
        Image.fromarray(np.zeros((6, 6), "uint8")).save(root / split / name, "PNG")
        with pytest.raises(ValueError, match=f"^Dataset folder '{root}/{split}' holds 1 image "
                                             f"outside its class folders \\(\\['{name}'\\]\\)"):
            data.load_splits(f"folder:{root}")
        (root / split / name).unlink()
    (root / "train" / "notes.txt").write_text("not data\n")
    (root / "train" / ".DS_Store").write_bytes(bytes(8))
    assert data.load_splits(f"folder:{root}").info.labels == ["a", "b"]


def test_segmentation_split_folders_hold_validation_out_of_train(tmp_path):
    """Without a validation folder, validation is a fixed 10% taken out of train: neither
    training images (early stopping would watch what it trains on) nor the test split
    (the reported test score would have chosen the model)."""
    for split, n in (("train", 10), ("test", 2)):
        os.makedirs(tmp_path / split / "images")
        os.makedirs(tmp_path / split / "masks")
        for i in range(n):
            value = i if split == "train" else 100 + i
            Image.fromarray(np.full((4, 4, 3), value, "uint8")).save(
                tmp_path / split / "images" / f"{i}.png")
            Image.fromarray(np.full((4, 4), i % 2, "uint8")).save(
                tmp_path / split / "masks" / f"{i}.png")
    s = data.load_splits(str(tmp_path), batch_size=16)
    assert s.info.splits == {"train": 9, "validation": 1, "test": 2}

    def pixels(ds):
        x, _ = data.to_arrays(ds)
        raw = x * np.array(s.info.std) + np.array(s.info.mean)
        return set(np.round(raw[:, 0, 0, 0]).astype(int).tolist())
    train, val, test = pixels(s.train), pixels(s.validation), pixels(s.test)
    assert len(val) == 1 and not val & train and not val & test and test == {100, 101}
    assert train | val == set(range(10))



def _seg_tree(root, n, start=0):
    """``root/images`` + ``root/masks``: ``n`` 4x4 images, each one grey value of its own
    (``start``, ``start + 1``, ...), masks of classes 0 and 1."""
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    for i in range(n):
        Image.fromarray(np.full((4, 4, 3), start + i, "uint8")).save(root / "images" / f"{i}.png")
        Image.fromarray(np.full((4, 4), i % 2, "uint8")).save(root / "masks" / f"{i}.png")
    return root


def test_segmentation_folder_of_images_and_masks_is_split_80_10_10_apart(tmp_path):
    s = data.load_splits(str(_seg_tree(tmp_path / "seg", 30)), batch_size=64)
    assert s.info.splits == {"train": 24, "validation": 3, "test": 3}

    def pixels(ds):
        x, _ = data.to_arrays(ds)
        raw = x * np.array(s.info.std) + np.array(s.info.mean)
        return np.round(raw[:, 0, 0, 0]).astype(int).tolist()
    train, val, test = pixels(s.train), pixels(s.validation), pixels(s.test)
    assert sorted(train + val + test) == list(range(30))   # each image in one split


def test_segmentation_split_folders_without_test_serve_validation_as_test(tmp_path):
    _seg_tree(tmp_path / "train", 10)
    s = data.load_splits(str(tmp_path), batch_size=16)
    assert (s.info.splits, s.info.test_is_validation) == (
        {"train": 9, "validation": 1, "test": 1}, True)
    _seg_tree(tmp_path / "test", 2, start=100)
    s = data.load_splits(str(tmp_path), batch_size=16)
    assert (s.info.splits, s.info.test_is_validation) == (
        {"train": 9, "validation": 1, "test": 2}, False)


def test_segmentation_folders_too_small_to_split_are_refused(tmp_path):
    """train/ of one image and no validation folder; root/images + root/masks, split
    80/10/10 with a test and a validation image at least, of 1 or 2 images (no training
    image was left: an IndexError)."""
    _seg_tree(tmp_path / "split" / "train", 1)
    cases = [(tmp_path / "split", f"Segmentation folder '{tmp_path / 'split' / 'train'}' has "
              f"one image and no validation folder: add images, or a validation folder "
              f"(validation/images + validation/masks).")]
    for n in (1, 2):
        cases.append((_seg_tree(tmp_path / str(n), n),
                      f"Segmentation folder '{tmp_path / str(n)}' has too few images to hold "
                      f"out a validation and a test split ({n} image{'' if n == 1 else 's'} "
                      f"with masks; the 80/10/10 split needs 3). Add images, or split them "
                      f"yourself into train/images + train/masks and validation/images + "
                      f"validation/masks."))
    for root, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            data.load_splits(str(root))
    assert data.load_splits(str(_seg_tree(tmp_path / "3", 3))).info.splits == {
        "train": 1, "validation": 1, "test": 1}


def test_segmentation_split_folders_left_out_unseen_are_refused(tmp_path):
    """A split folder without images/ + masks/ beside segmentation split folders (masks/
    misspelt mask/), or split folders beside root/images + root/masks, were left out
    without a word: the split was taken out of train, or out of root/images."""
    import shutil
    _seg_tree(tmp_path / "a" / "train", 10)
    os.makedirs(tmp_path / "a" / "val" / "images")
    os.makedirs(tmp_path / "a" / "val" / "mask")
    with pytest.raises(ValueError, match=re.escape(
            f"Segmentation folder '{tmp_path / 'a'}': its validation folder "
            f"'{tmp_path / 'a' / 'val'}' has no images/ + masks/ (it holds images/, mask/), "
            f"so the split would be left out. Give it images/ and masks/ (one mask per "
            f"image, with its file name), or remove it.")):
        data.load_splits(str(tmp_path / "a"))
    shutil.rmtree(tmp_path / "a" / "val")
    _seg_tree(tmp_path / "a" / "val", 2)
    assert data.load_splits(str(tmp_path / "a")).info.splits == {
        "train": 10, "validation": 2, "test": 2}
    root = _seg_tree(tmp_path / "b", 10)
    _seg_tree(root / "test", 2)
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{root}' holds images/ + masks/ beside test/: one would be read, "
            f"the other left out. Keep one layout: root/images + root/masks (split "
            f"80/10/10), or root/train/images + root/train/masks (and validation/, test/).")):
        data.load_splits(str(root))


def test_segmentation_layout_named_otherwise_is_not_read_as_classes(tmp_path):
    """images/ + labels/ (or Images/ + Masks/) was read as a classification folder of the
    classes 'images' and 'labels': a classifier of images against their masks."""
    for names in (("images", "labels"), ("Images", "Masks")):
        root = _class_tree(tmp_path / names[1], {"": {n: 10 for n in names}})
        shown = " and ".join(n + "/" for n in names if n.lower() in ("images", "masks"))
        with pytest.raises(ValueError, match=re.escape(
                f"Dataset folder '{root}' holds {shown} but not the pair images/ + masks/ of "
                f"a segmentation folder: it would be read as class folders {sorted(names)}. "
                f"Segmentation: name the folders images/ and masks/, in lower case (one mask "
                f"per image, with its file name). Classification: rename {shown} (e.g. "
                f"{names[0]}_/).")):
            data.load_splits(str(root))
    train = _class_tree(tmp_path / "split", {"train": {"images": 3, "gt": 3}})
    with pytest.raises(ValueError, match=re.escape(
            f"Dataset folder '{train / 'train'}' holds images/ but not the pair")):
        data.load_splits(str(train))


# --- examples per class (class_weight="balanced" in zoo.train) --------------------------

def test_folder_class_counts_come_from_the_listing(tmp_path):
    _class_tree(tmp_path, {"train": {"a": 6, "b": 3, "c": 1},
                           "validation": {"a": 1, "b": 1, "c": 1}})
    s = data.load_splits(str(tmp_path), batch_size=4)
    assert s.info.labels == ["a", "b", "c"]
    counts = data.train_class_counts(s)
    assert counts.dtype == np.int64 and counts.tolist() == [6, 3, 1]
    # Read from the file listing: no image is opened (they are gone) ...
    for path in (tmp_path / "train").rglob("*.png"):
        path.unlink()
    assert data.train_class_counts(s).tolist() == [6, 3, 1]
    # ... and a missing validation folder's hold-out is left out of train's counts.
    other = _class_tree(tmp_path / "other", {"train": {"a": 19, "b": 2}})
    s = data.load_splits(str(other), batch_size=4)
    assert s.info.splits["train"] == 19 and data.train_class_counts(s).tolist() == [17, 2]
    _, y = data.to_arrays(s.train)
    assert np.bincount(y).tolist() == [17, 2]


def test_class_counts_of_digits_and_of_splits_put_together():
    s = data.load_splits("digits", image_size=(8, 8), batch_size=100, augment=True)
    expected = np.bincount(data.digits_arrays("train")[1], minlength=10)
    assert expected.sum() == 1257
    assert data.train_class_counts(s).tolist() == expected.tolist()
    # Splits of one's own: one pass over their train pipeline.
    own = data.Splits(s.train, s.validation, s.test, s.info)
    assert own.count_train_labels is None
    assert data.train_class_counts(own).tolist() == expected.tolist()
    few = data.Splits(data.load("digits", "test", image_size=(8, 8), batch_size=7)[0],
                      s.validation, s.test, s.info)
    assert data.train_class_counts(few).tolist() == np.bincount(
        data.digits_arrays("test")[1], minlength=10).tolist()
    # A label outside the classes (3 of 3) is named, not counted as a fourth class.
    y = np.array([0, 1, 2, 3], "int32")
    toy = data.DatasetInfo("toy", "classification", 3, ["a", "b", "c"], (2, 2, 1))
    with pytest.raises(ValueError, match=r"^labels outside num_classes: dataset 'toy' has 3 "
                                         r"classes, so labels must be in 0..2; found 3.$"):
        data.train_class_counts(_own_splits(np.zeros((4, 2, 2, 1), "float32"), y, toy))
    with pytest.raises(ValueError, match="counted for classification datasets; 'shapes' is "
                                         "a segmentation dataset"):
        data.train_class_counts(data.load_splits("shapes", batch_size=50))


@pytest.mark.parametrize("name", ["mnist", "malaria", "cifar100"])
def test_tfds_class_counts_under_mock_data(name, tmp_path):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=40):
        s = data.load_splits(name, image_size=(8, 8), batch_size=16, augment=True,
                             data_dir=str(tmp_path))
        counts = data.train_class_counts(s)
        _, y = data.to_arrays(s.train)
    assert len(counts) == s.info.num_classes and counts.sum() == len(y) == 40
    assert counts.tolist() == np.bincount(y, minlength=s.info.num_classes).tolist()


# --- bad input: counts, seeds, augmentation settings, Splits of one's own -------------------

def test_counts_and_seeds_take_numpy_integers_and_refuse_the_rest():
    # A NumPy integer is an integer: batch_size=np.int64(4) was refused as "must be a positive
    # integer. Received: 4"; a bool was channels 1; seed 'a' / 1.5 / -1 failed in NumPy or
    # TensorFlow ("not all arguments converted during string formatting", "Cannot convert 1.5
    # to EagerTensor") or passed.
    ds, info = data.load("digits", "test", image_size=(8, 8), batch_size=np.int64(4),
                         seed=np.int64(3))
    assert next(iter(ds))[0].shape[0] == 4
    with pytest.raises(ValueError, match=r"^channels must be 1 or 3. Received: channels=True$"):
        data.load("digits", image_size=(8, 8), channels=True)
    for seed in ("a", 1.5, -1, 2 ** 32, None):
        with pytest.raises(ValueError, match=rf"^seed must be an integer between 0 and "
                                             rf"2\*\*32 - 1\. Received: seed="
                                             rf"{re.escape(repr(seed))}$"):
            data.load_splits("digits", image_size=(8, 8), seed=seed)
    with pytest.raises(ValueError, match=r"^batch_size must be a positive integer. "
                                         r"Received: batch_size=4.0$"):
        data.load_splits("digits", batch_size=4.0)
    with pytest.raises(ValueError, match=r"folder:PATH needs the path of the dataset's folder.*Received: 'folder:'"):
        data.load_splits("folder:")   # was the current directory


@pytest.mark.parametrize("setting, value, allowed", [
    ("flip", "diagonal", "None, 'horizontal', 'vertical' or 'horizontal_and_vertical'"),
    ("rotation", float("nan"), "a number from 0 to 1"),     # was a pipeline of NaN angles
    ("rotation", -1, "a number from 0 to 1"),
    ("rotation", "a", "a number from 0 to 1"),
    ("zoom", 5, "a number from 0 to 1"),
    ("zoom", (-1.0, 0.5), "a number from 0 to 1 (a fraction of the size, in or out) or a "
             "pair (low, high) from above -1 to 1"),   # was Keras' error
    ("translation", True, "a number from 0 to 1"),
    ("contrast", 2, "a number from 0 to 1"),
    ("fill_mode", "bogus", "'reflect', 'wrap', 'constant' or 'nearest'"),
])
def test_augmentation_settings_are_checked_by_name(setting, value, allowed):
    # Before: "diagonal", NaN and True built a pipeline without a word; the others failed in
    # Keras naming its layer's argument (factor=a, height_factor, NotImplementedError).
    message = (rf"^augmentation setting {setting} must be {re.escape(allowed)}.*"
               rf"Received: {setting}={re.escape(repr(value))}$")
    with pytest.raises(ValueError, match=message):
        data.load_splits("digits", image_size=(8, 8), augment={setting: value})
    with pytest.raises(ValueError, match=message):
        data.augmenter({setting: value})
    settings = {"rotation": (-0.1, 0.2), "contrast": (0.1, 0.3), "flip": "vertical"}
    assert data.check_augment_settings(settings) == {
        "rotation": [-0.1, 0.2], "contrast": [0.1, 0.3], "flip": "vertical"}


def test_augmentation_settings_of_numpy_numbers_build_and_round_trip_through_json():
    # NumPy's float32 and 1-D arrays pass the check, but Keras' layers refused them ("The
    # `factor` argument should be a number ... Received: factor=0.10000000149011612"; an
    # array pair: "The truth value of an array ... is ambiguous") and json refused them in
    # info.json; a tuple came back from JSON as a list.
    settings = {"rotation": np.float32(0.1), "zoom": np.array([-0.2, 0.1]),
                "translation": (np.float32(0.05), 0.1), "contrast": np.float64(0.2),
                "flip": np.str_("horizontal"), "fill_mode": np.str_("constant")}
    checked = data.check_augment_settings(settings)
    assert checked == {"rotation": pytest.approx(0.1), "zoom": [-0.2, 0.1],
                       "translation": [pytest.approx(0.05), 0.1], "contrast": 0.2,
                       "flip": "horizontal", "fill_mode": "constant"}
    images = np.full((2, 8, 8, 1), 100.0, "float32")
    assert data.augmenter(settings, seed=1)(images).shape == (2, 8, 8, 1)
    _, info = data.load("digits", "train", image_size=(8, 8), augment=settings)
    again = data.DatasetInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info and again.augmentation == checked


def test_make_shapes_refuses_counts_that_are_no_integers():
    # Before: NumPy's "negative dimensions are not allowed", "low >= high", "'float' object
    # cannot be interpreted as an integer", and size=0 gave empty images.
    for kwargs, message in (({"n": -1}, "n must be a non-negative integer. Received: n=-1"),
                            ({"n": 2.5}, "n must be a non-negative integer. Received: n=2.5"),
                            ({"n": True}, "n must be a non-negative integer. Received: n=True"),
                            ({"n": 1, "size": 0}, "size must be a positive integer"),
                            ({"n": 1, "max_shapes": 0}, "max_shapes must be a positive integer"),
                            ({"n": 1, "seed": "a"}, "seed must be a non-negative integer")):
        with pytest.raises(ValueError, match=re.escape(message)):
            data.make_shapes(**kwargs)
    images, masks = data.make_shapes(np.int64(1), size=np.int64(8))
    assert images.shape == (1, 8, 8, 3) and masks.shape == (1, 8, 8)


def _own_splits(x, y, info):
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    return data.Splits(ds, ds, ds, info)


def test_check_splits_names_what_a_split_yields_and_what_its_info_asks():
    x = np.zeros((8, 8, 8, 1), "float32")
    y = np.arange(8, dtype="int32") % 3
    info = data.DatasetInfo("toy", "classification", 3, ["a", "b", "c"], (8, 8, 1))
    data.check_splits(_own_splits(x, y, info))
    data.check_splits(_own_splits(x[..., 0], y, info))          # one channel, no channel axis
    data.check_splits(_own_splits(x, y[:, None].astype("float32"), info))
    cases = [
        (_own_splits(x, np.eye(3, dtype="float32")[y], info),
         r"Splits.train yields a 2-tuple \(\(None, 8, 8, 1\) float32, \(None, 3\) float32\), "
         r"which does not fit its info \(classification, input_shape \(8, 8, 1\)\).*one-hot "
         r"labels: take their argmax"),
        (_own_splits(np.repeat(x, 3, -1), y, info), r"\(None, 8, 8, 3\) float32.*images "
                                                     r"\[N, 8, 8, 1\]"),
        (data.Splits(*[tf.data.Dataset.from_tensor_slices((x, y))] * 3, info),
         r"\(\(8, 8, 1\) float32, \(\) int32\).*unbatched examples: \.batch\(n\)"),
        (data.Splits(*[tf.data.Dataset.from_tensor_slices(
            {"image": x, "label": y}).batch(4)] * 3, info),
         r"must yield \(images, labels\) batches.*It yields a dict \{'image'"),
        (data.Splits(*[tf.data.Dataset.from_tensor_slices((x, y, y)).batch(4)] * 3, info),
         r"It yields a 3-tuple"),
        (_own_splits(x, y, data.DatasetInfo("toy", "segmentation", 3, ["a", "b", "c"],
                                            (8, 8, 1))),
         r"masks \[N, 8, 8\] of class indices"),
        (data.Splits(*[tf.data.Dataset.from_tensor_slices((x, y)).batch(4)] * 2,
                     tf.data.Dataset.from_tensor_slices((x, y)).batch(4).take(0), info),
         r"^Splits.test is empty: it yields no batch.$"),
        (data.Splits(None, None, None, info), r"^Splits.train must be a tf.data.Dataset"),
        (data.Splits(*[tf.data.Dataset.from_tensor_slices((x, y)).batch(4)] * 3,
                     info.to_dict()), r"Splits.info must be a zoo.data.DatasetInfo.*dict"),
    ]
    for splits, message in cases:
        with pytest.raises(ValueError, match=message):
            data.check_splits(splits)


@pytest.mark.parametrize("kwargs, message", [
    (dict(data_dir=5), "data_dir must be None (tensorflow-datasets' default) or the path of a "
                       "tensorflow-datasets data directory. Received: data_dir=5"),
    (dict(data_dir=""), "Received: data_dir=''"),
    (dict(download="no"), "download must be True or False. Received: download='no'")])
@pytest.mark.parametrize("name", ["digits", "mnist"])
def test_load_refuses_a_data_dir_or_download_of_the_wrong_kind(name, kwargs, message):
    # Before: ignored for the embedded datasets (data_dir=5 loaded digits), and for
    # tensorflow-datasets' a TypeError from its builder ("expected str, bytes or
    # os.PathLike object, not int"); download="no" asked tensorflow-datasets to download.
    for call in (lambda: data.load(name, **kwargs), lambda: data.load_splits(name, **kwargs)):
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_a_search_on_a_folder_with_a_damaged_image_ends_naming_it(tmp_path):
    import keras_tuner as kt
    from tuning.hypermodels import LeNet5HyperModel
    from tuning.search import search
    root = _class_tree(tmp_path / "c", {"train": {"a": 8, "b": 8},
                                        "validation": {"a": 2, "b": 2}}, size=(32, 32))
    _truncate(root / "validation" / "a" / "1.png")
    fix = {"variant": "modern", "optimizer": "sgd", "batch_size": 8, "augment": 0.0,
           "label_smoothing": 0.0, "weight_decay": 0.0, "lr_schedule": "constant"}
    # found by the objective's check on a validation batch, before any trial
    with pytest.raises(ValueError, match=r"1 image could not be decoded \(.+\): "
                                         r"'validation/a/1.png'\. Remove") as exc:
        search("lenet5", f"folder:{root}", tuner="random", max_trials=3, epochs=1,
               directory=str(tmp_path / "s"), project="p", fix=fix)
    assert "\n" not in str(exc.value)
    assert not list((tmp_path / "s" / "p").glob("trial_*"))
    # in a trial's training: fatal (the search ends), every trial would fail alike
    splits = data.load_splits(f"folder:{root}", batch_size=8)
    hypermodel = LeNet5HyperModel(info=splits.info, fix=fix)
    hp = kt.HyperParameters()
    with pytest.raises(kt.errors.FatalValueError, match=r"'validation/a/1.png'\. Remove"):
        hypermodel.fit(hp, hypermodel.build(hp), splits.validation, epochs=1, verbose=0)


def test_folder_of_class_folders_named_like_a_split_word_only_in_part_is_kept(tmp_path):
    """Only whole names read as splits: classes 'devil', 'testudo' and 'Trainer' are
    classes ('Test' beside them is refused, in any case)."""
    root = _class_tree(tmp_path / "animals", {"": {"devil": 10, "testudo": 10, "Trainer": 10}})
    s = data.load_splits(str(root), batch_size=8)
    assert s.info.labels == ["Trainer", "devil", "testudo"]
    assert s.info.splits == {"train": 24, "validation": 3, "test": 3}
    os.makedirs(root / "tEsT_Set")
    with pytest.raises(ValueError, match="its folders 'tEsT_Set' look like splits"):
        data.load_splits(str(root))
