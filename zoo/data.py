"""Datasets as ``tf.data`` pipelines: tensorflow-datasets, local folders, embedded offline sets.

Three kinds of source, all behind :func:`load` and :func:`load_splits`:

- **tensorflow-datasets by name**: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``,
  ``malaria`` (one upstream split, cut here into fixed train/validation/test parts),
  ``oxford_iiit_pet`` (segmentation: the trimap 1, 2, 3 becomes classes 0, 1, 2) and
  ``imagenette``. Nothing is downloaded unless ``download=True``; without the data a
  ``ValueError`` says how to get it.
- **local folders** (``"folder:/path"`` or just a path): classification
  ``root/<split>/<label>/*.png|jpg``, or ``root/<label>/*.png|jpg`` split 80/10/10;
  segmentation ``root/images`` + ``root/masks`` (or ``root/<split>/images`` +
  ``root/<split>/masks``), masks holding class indices.
- **embedded, offline, deterministic**: ``digits`` (scikit-learn's 1,797 real 8x8 handwritten
  digits, raw pixels 0..255, fixed stratified train/validation/test split) and ``shapes``
  (seeded generated scenes of circles, squares and triangles with their masks).

Every pipeline yields float32 normalised images ``[N, H, W, C]`` and int32 labels ``[N]`` or
int32 masks ``[N, H, W]``. The model input is produced by one function, :func:`preprocess`
(resize, grey <-> RGB, ``(x - mean) / std`` on raw pixels), which the export embeds in the
serving graph. Augmentation (Keras preprocessing layers, image and mask moved together) is
applied to the training split only, on raw-range pixels before normalisation.

Segmentation masks may mark pixels to leave out of training and evaluation with an ignore
label (``ignore_label=255`` for Pascal VOC's void borders, as for Cityscapes' train ids): the
classes are the other values, ``0..K-1``, and the ignore label lies outside them; it is
recorded in :class:`DatasetInfo`. It is never guessed: a folder whose masks hold 255 beside
classes that stop below it is refused, the message naming ``ignore_label=255``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import os
import re
import threading
import unicodedata
from typing import Optional

import numpy as np
import tensorflow as tf

from zoo.common import (CLASSIFICATION_LAYOUT, DIGITS_TEST_SIZE, INFO_REQUIRED, as_list,
                         check_bool, check_ignore_label, check_info_fields, check_seed,
                         clip_text, dataset_source, has_image_signature, is_finite_number,
                         is_integer, list_datasets, received_text, split_name)

__all__ = ["DatasetInfo", "Splits", "load", "load_splits", "preprocess", "list_datasets",
           "augmenter", "check_augment_settings", "make_shapes", "digits_arrays",
           "train_class_counts", "OFFLINE_DATASETS", "check_info_fields", "check_splits",
           "autotune_by_default", "without_autotune", "with_default_autotune", "load_raw",
           "RawSplit", "convert_channels", "SHAPES_LABELS"]

SPLITS = ("train", "validation", "test")
OFFLINE_DATASETS = ("digits", "shapes", "folder:PATH")

# ImageNet statistics on 0..255 pixels, for natural photographs.
_IMAGENET_MEAN = [123.675, 116.28, 103.53]
_IMAGENET_STD = [58.395, 57.12, 57.375]


@dataclasses.dataclass
class DatasetInfo:
    """What a model and an export need to know about a dataset.

    Attributes:
        name: ``"digits"``, ``"mnist"``, ``"folder:/path"``, ...
        task: ``"classification"`` or ``"segmentation"``.
        num_classes: number of classes (segmentation: including background).
        labels: class names, ``len(labels) == num_classes``.
        input_shape: ``(H, W, C)`` the model sees (after resizing and channel conversion).
        raw_range: value range of the raw pixels a client sends.
        mean: per-channel mean of raw pixels (after resize/conversion); the model input is
            ``(x - mean) / std``.
        std: per-channel standard deviation of raw pixels.
        splits: number of examples per split where known.
        raw_shape: the dataset's own ``(H, W, C)`` (``None`` entries where it varies).
        augmentation: the augmentation settings used for training (empty = none).
        ignore_label: segmentation: the mask value of pixels that count in no loss and no
            metric (``None``: every pixel counts); never one of the ``num_classes`` classes.
        test_is_validation: the dataset has no test split of its own and its validation
            split serves as test (a folder without ``test/``), so that a test score is on
            the split that chose the model.
    """

    name: str
    task: str
    num_classes: int
    labels: list
    input_shape: tuple
    raw_range: tuple = (0.0, 255.0)
    mean: list = dataclasses.field(default_factory=lambda: [0.0])
    std: list = dataclasses.field(default_factory=lambda: [1.0])
    splits: dict = dataclasses.field(default_factory=dict)
    raw_shape: Optional[tuple] = None
    augmentation: dict = dataclasses.field(default_factory=dict)
    ignore_label: Optional[int] = None
    test_is_validation: bool = False

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["input_shape"] = [int(v) for v in self.input_shape]
        d["raw_range"] = [float(v) for v in self.raw_range]
        d["mean"] = [float(v) for v in self.mean]
        d["std"] = [float(v) for v in self.std]
        d["labels"] = [str(v) for v in self.labels]
        d["splits"] = {k: int(v) for k, v in self.splits.items()}
        d["raw_shape"] = None if self.raw_shape is None else [
            None if v is None else int(v) for v in self.raw_shape]
        d["ignore_label"] = None if self.ignore_label is None else int(self.ignore_label)
        d["test_is_validation"] = bool(self.test_is_validation)
        return d

    @classmethod
    def from_dict(cls, d) -> "DatasetInfo":
        """Inverse of :meth:`to_dict`; unknown keys are ignored.

        Raises:
            ValueError: ``d`` is not a dict, lacks a field without a default (``name``,
                ``task``, ``num_classes``, ``labels``, ``input_shape``) or holds a value
                the field does not allow (:func:`check_info_fields`).
        """
        if not isinstance(d, dict):
            raise ValueError(f"DatasetInfo.from_dict takes a dict (DatasetInfo.to_dict()). "
                             f"Received: {type(d).__name__}")
        missing = [k for k in INFO_REQUIRED if k not in d]
        if missing:
            raise ValueError(f"DatasetInfo dict is missing {missing} (it needs "
                             f"{list(INFO_REQUIRED)}). Received keys: {sorted(map(str, d))}")
        check_info_fields(d, "DatasetInfo.")
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in dict(d).items() if k in fields}
        kw["input_shape"] = tuple(kw["input_shape"])
        if "raw_range" in kw:
            kw["raw_range"] = tuple(kw["raw_range"])
        if kw.get("raw_shape") is not None:
            kw["raw_shape"] = tuple(kw["raw_shape"])
        return cls(**kw)


def _short(value, limit=80) -> str:
    """``repr(value)``, cut to ``limit`` characters for a message."""
    return clip_text(repr(value), limit)


def check_count(name, value, low=1) -> int:
    """``value`` as an ``int`` when it is an integer (Python or NumPy, not a bool) >= ``low``
    (1 or 0), else a ``ValueError`` naming ``name``, what it allows and the value received."""
    if not (is_integer(value) and value >= low):
        allowed = "a positive integer" if low == 1 else "a non-negative integer"
        raise ValueError(f"{name} must be {allowed}. Received: {name}={_short(value)}")
    return int(value)


@dataclasses.dataclass
class Splits:
    """The three batched, prefetched pipelines of a dataset and its :class:`DatasetInfo`.

    ``count_train_labels`` (set by :func:`load_splits` for classification datasets):
    ``() -> examples per class of the train split``, from what the dataset knows without
    reading its images (a folder's file listing, digits' arrays, the labels of the
    tensorflow-datasets records); ``None`` for splits put together otherwise, whose
    :func:`train_class_counts` reads the ``train`` pipeline once.

    ``batch_size`` (set by :func:`load_splits`): the size the pipelines were batched to,
    which their last, smaller batch hides from their shapes; ``None`` for splits put
    together otherwise.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    info: DatasetInfo
    count_train_labels: Optional[object] = dataclasses.field(default=None, repr=False,
                                                             compare=False)
    batch_size: Optional[int] = dataclasses.field(default=None, repr=False, compare=False)


def as_info(info, what="info") -> DatasetInfo:
    """``info`` as a :class:`DatasetInfo`: one itself, or its dict form
    (:meth:`DatasetInfo.from_dict`); anything else raises a ``ValueError`` naming ``what``."""
    if isinstance(info, DatasetInfo):
        return info
    if isinstance(info, dict):
        return DatasetInfo.from_dict(info)
    raise ValueError(f"{what} takes a zoo.data.DatasetInfo (or its dict form, "
                     f"DatasetInfo.to_dict()), such as load_splits(...).info. Received: "
                     f"{type(info).__name__}")


def _spec_text(spec) -> str:
    """A pipeline's element spec as a message shows it: ``(shape, dtype)`` per tensor."""
    if isinstance(spec, tf.TensorSpec):
        return f"{tuple(spec.shape) if spec.shape.rank is not None else 'any shape'} " \
               f"{spec.dtype.name}"
    if isinstance(spec, dict):
        return "a dict {" + ", ".join(f"{k!r}: {_spec_text(v)}" for k, v in spec.items()) + "}"
    if isinstance(spec, (tuple, list)):
        return (f"a {len(spec)}-tuple (" + ", ".join(_spec_text(v) for v in spec) + ")")
    return type(spec).__name__


def check_splits(splits) -> None:
    """Check a :class:`Splits` before anything trains on it: each split a
    ``tf.data.Dataset`` of ``(images, labels)`` batches that fit its ``info`` (a
    :class:`DatasetInfo` whose fields hold allowed values): images ``[N, H, W, C]`` of
    ``info.input_shape`` (``[N, H, W]`` for one channel), labels ``[N]`` of class indices
    (classification) or masks ``[N, H, W]`` (segmentation; a trailing axis of 1 allowed),
    numbers, and no split known to be empty.

    Raises:
        ValueError: naming the split, what it yields and what ``info`` asks for (batches
            of another size or channel count, one-hot labels, unbatched examples, dicts or
            3-tuples, an empty split, an ``info`` of another kind).
    """
    if not isinstance(splits, Splits):
        raise ValueError(f"Expected a zoo.data.Splits. Received: {type(splits).__name__}")
    info = splits.info
    if not isinstance(info, DatasetInfo):
        raise ValueError(f"Splits.info must be a zoo.data.DatasetInfo (DatasetInfo.from_dict "
                         f"makes one of its dict form). Received: {type(info).__name__}")
    check_info_fields(dataclasses.asdict(info), "Splits.info.")
    h, w, c = (int(v) for v in info.input_shape)
    seg = info.task == "segmentation"
    images_want = f"[N, {h}, {w}, {c}]" + (f" (or [N, {h}, {w}])" if c == 1 else "")
    labels_want = (f"masks [N, {h}, {w}] of class indices (or [N, {h}, {w}, 1])" if seg else
                   "labels [N] of class indices (or [N, 1]; one-hot labels: take their "
                   "argmax)")

    def fits(shape, want):
        return shape is not None and len(shape) == len(want) and all(
            a is None or b is None or a == b for a, b in zip(shape, want))

    for split in SPLITS:
        ds = getattr(splits, split)
        where = f"Splits.{split}"
        if not isinstance(ds, tf.data.Dataset):
            raise ValueError(f"{where} must be a tf.data.Dataset of (images, labels) batches. "
                             f"Received: {type(ds).__name__}")
        spec = ds.element_spec
        if not (isinstance(spec, tuple) and len(spec) == 2
                and all(isinstance(v, tf.TensorSpec) for v in spec)):
            raise ValueError(f"{where} must yield (images, labels) batches: images "
                             f"{images_want} and {labels_want}. It yields {_spec_text(spec)}")
        x, y = spec
        x_shape = tuple(x.shape) if x.shape.rank is not None else None
        y_shape = tuple(y.shape) if y.shape.rank is not None else None
        numeric = all(v.dtype.is_floating or v.dtype.is_integer for v in spec)
        images_fit = fits(x_shape, (None, h, w, c)) or (c == 1 and fits(x_shape, (None, h, w)))
        labels_fit = (fits(y_shape, (None, h, w)) or fits(y_shape, (None, h, w, 1)) if seg
                      else fits(y_shape, (None,)) or fits(y_shape, (None, 1)))
        if not (numeric and images_fit and labels_fit):
            raise ValueError(f"{where} yields {_spec_text(spec)}, which does not fit its "
                             f"info ({info.task}, input_shape {(h, w, c)}): it must yield "
                             f"batches of numbers, images {images_want} and {labels_want} "
                             f"(unbatched examples: .batch(n)).")
        if int(ds.cardinality()) == 0:
            raise ValueError(f"{where} is empty: it yields no batch.")


# --------------------------------------------------------------------------------------
# Preprocessing: the one function the pipelines use and the export embeds.

def convert_channels(images, channels):
    """Raw images ``[..., H, W, C]`` as float32 with ``channels`` channels, values in the raw
    range: grey -> RGB repeats the channel, RGB -> grey uses the ITU-R 601 luma weights
    (``tf.image.rgb_to_grayscale``), RGBA drops alpha; the pipelines' conversion, which
    the export embeds too.

    Raises:
        ValueError: ``channels`` is no integer >= 1 (Python's or NumPy's), or the images'
            channels cannot be converted to it.
    """
    # (1.5 was taken for 1 and True for 1; None and "x" were int()'s errors)
    if not (is_integer(channels) and channels >= 1):
        raise ValueError(f"convert_channels: channels must be an integer >= 1 (1 <-> 3, "
                         f"4 -> 3 or 1 convert). Received: channels={_short(channels)}")
    c = int(channels)
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    have = images.shape[-1]
    if have is None:
        raise ValueError("preprocess: the channel dimension of the images must be known. "
                         f"Received shape {images.shape}")
    if have == 4 and c != 4:
        images = images[..., :3]
        have = 3
    if have != c:
        if have == 1 and c == 3:
            # A tile: tf.image.grayscale_to_rgb's run-time shape assertions carry string
            # constants without a GPU kernel, and would sit in every export's graph.
            rank = images.shape.rank
            images = (tf.tile(images, [1] * (rank - 1) + [3]) if rank is not None
                      else tf.image.grayscale_to_rgb(images))
        elif have == 3 and c == 1:
            images = tf.image.rgb_to_grayscale(images)
        else:
            raise ValueError(f"preprocess: cannot convert {have}-channel images to {c} "
                             "channels (allowed: 1 <-> 3, 4 -> 3 or 1).")
    return images


def resize_and_convert(images, input_shape, *, method="bilinear"):
    """Resize raw images to ``input_shape[:2]`` and convert channels to ``input_shape[2]``.

    Values stay in the raw range. Grey -> RGB repeats the channel, RGB -> grey uses the
    ITU-R 601 luma weights (``tf.image.rgb_to_grayscale``), RGBA drops alpha.
    """
    h, w, c = (int(v) for v in input_shape)
    images = convert_channels(images, c)
    static = images.shape[-3:-1]
    if tuple(static) != (h, w):
        images = tf.image.resize(images, (h, w), method=method)
    return images


def normalize(images, info: DatasetInfo):
    """``(images - mean) / std`` with the per-channel statistics of ``info``."""
    mean = tf.constant(np.asarray(info.mean, "float32"))
    std = tf.constant(np.asarray(info.std, "float32"))
    return (tf.cast(images, tf.float32) - mean) / std


def preprocess(images, info):
    """Raw pixels -> model input: resize, channel conversion, normalisation.

    This is the function the training/evaluation pipelines use and the export embeds in
    the serving graph, so a served model sees exactly what it was trained on.

    Args:
        images: raw float (or integer) pixels in ``info.raw_range``, ``[N, H', W', C']`` or
            ``[H', W', C']``, any size, 1, 3 or 4 channels.
        info: a :class:`DatasetInfo` or its dict form.

    Returns:
        float32 tensor ``[N, H, W, C]`` (``info.input_shape``), normalised; ``[H, W, C]``
        for one image ``[H', W', C']``.

    Raises:
        ValueError: ``info`` is no :class:`DatasetInfo` or dict form of one; ``images`` are
            no array of numbers of rank 3 or 4 (None and strings were TensorFlow's errors
            from deep inside).

    Example:
        >>> _, info = load("digits", image_size=(32, 32))
        >>> x = preprocess(np.zeros((2, 8, 8, 1), "float32"), info)   # (2, 32, 32, 1)
    """
    info = as_info(info, "preprocess")
    wanted = ("preprocess: images must be raw pixels, an array of numbers [N, H, W, C] or "
              "[H, W, C].")
    if not tf.is_tensor(images):
        try:
            images = tf.convert_to_tensor(images)
        except (ValueError, TypeError):
            raise ValueError(f"{wanted} Received: {received_text(images)}") from None
    rank = images.shape.rank
    if not (images.dtype.is_floating or images.dtype.is_integer) or rank not in (None, 3, 4):
        raise ValueError(f"{wanted} Received: {images.dtype.name} of shape "
                         f"{tuple(images.shape)}")
    return normalize(resize_and_convert(images, info.input_shape), info)


def resize_masks(masks, size):
    """Nearest-neighbour resize of integer masks ``[..., H, W, 1]`` to ``size``."""
    masks = tf.convert_to_tensor(masks)
    if tuple(masks.shape[-3:-1]) != tuple(size):
        masks = tf.image.resize(masks, size, method="nearest")
    return tf.cast(masks, tf.int32)


# --------------------------------------------------------------------------------------
# Augmentation.

# Per-dataset defaults: digits are never flipped (a flipped 6 is a 9) and only slightly
# rotated; photographs are flipped left-right; cells and generated shapes any way.
_AUG_DIGITS = dict(flip=None, rotation=0.03, zoom=0.1, translation=0.1, contrast=0.0,
                   fill_mode="constant")
_AUG_PHOTO = dict(flip="horizontal", rotation=0.04, zoom=0.1, translation=0.1, contrast=0.2,
                  fill_mode="reflect")
_AUG_CELLS = dict(flip="horizontal_and_vertical", rotation=0.5, zoom=0.1, translation=0.05,
                  contrast=0.1, fill_mode="reflect")
_AUG_SHAPES = dict(flip="horizontal_and_vertical", rotation=0.0, zoom=0.0, translation=0.1,
                   contrast=0.2, fill_mode="reflect")


#: The settings :func:`augmenter` takes, and what each allows.
AUGMENT_SETTINGS = {
    "flip": "None, 'horizontal', 'vertical' or 'horizontal_and_vertical'",
    "rotation": "a number from 0 to 1 (a fraction of a full turn, either way) or a pair "
                "(low, high) from -1 to 1",
    "zoom": "a number from 0 to 1 (a fraction of the size, in or out) or a pair (low, high) "
            "from above -1 to 1",
    "translation": "a number from 0 to 1 (a fraction of the size, either way) or a pair "
                   "(low, high) from -1 to 1",
    "contrast": "a number from 0 to 1 (a factor) or a pair (low, high) from 0 to 1",
    "fill_mode": "'reflect', 'wrap', 'constant' or 'nearest'",
}
_FLIPS = (None, False, "horizontal", "vertical", "horizontal_and_vertical")
_FILL_MODES = ("reflect", "wrap", "constant", "nearest")


def check_augment_settings(settings) -> dict:
    """``settings`` as a dict when each of its keys is one of :data:`AUGMENT_SETTINGS` with
    a value that setting allows, else a ``ValueError`` naming the setting, what it allows
    and what it holds (rather than Keras' error about a layer's ``factor`` once the
    pipeline is built, or a flip mode or a NaN factor that silently did nothing).

    The values come back as Keras' layers and JSON take them: numbers as Python floats,
    pairs as lists of two (a NumPy float32 or a 1-D array, which Keras refused, and a tuple,
    which came back from ``info.json`` as a list)."""
    if not isinstance(settings, dict):
        raise ValueError(f"augmentation settings must be a dict of "
                         f"{', '.join(AUGMENT_SETTINGS)}. Received: {_short(settings)}")
    unknown = set(settings) - set(AUGMENT_SETTINGS)
    if unknown:
        raise ValueError(f"Unknown augmentation settings {sorted(map(str, unknown))}. Allowed: "
                         f"{', '.join(AUGMENT_SETTINGS)}.")
    checked = {}
    for key, value in settings.items():
        if key == "flip":
            good = any(value is v or (isinstance(value, str) and value == v) for v in _FLIPS)
            checked[key] = str(value) if isinstance(value, str) else value
        elif key == "fill_mode":
            good = isinstance(value, str) and value in _FILL_MODES
            checked[key] = str(value) if good else value
        else:
            pair = as_list(value)
            if pair is not None:
                # (Keras' zoom takes no -1: a zoom in by the whole size)
                good = (len(pair) == 2 and all(map(is_finite_number, pair))
                        and (0 if key == "contrast" else -1) <= pair[0] <= pair[1] <= 1
                        and not (key == "zoom" and pair[0] == -1))
                checked[key] = [float(v) for v in pair] if good else value
            else:
                good = value is None or (is_finite_number(value) and 0 <= value <= 1)
                checked[key] = None if value is None or not good else float(value)
        if not good:
            raise ValueError(f"augmentation setting {key} must be {AUGMENT_SETTINGS[key]}. "
                             f"Received: {key}={_short(value)}")
    return checked


def augmenter(settings: dict, *, raw_range=(0.0, 255.0), seed=0, ignore_label=None):
    """Build the augmentation function for ``settings``.

    Args:
        settings: ``flip`` (``None``, ``"horizontal"``, ``"vertical"``,
            ``"horizontal_and_vertical"``), ``rotation`` (fraction of a full turn),
            ``zoom``, ``translation`` (fractions of the size), ``contrast`` (factor),
            ``fill_mode``.
        raw_range: pixel range (the contrast layer clips to it).
        seed: seed of the random layers.
        ignore_label: the masks' ignore label: the pixels a rotation, zoom or translation
            fills (``fill_mode="constant"``) get it in the masks, not class 0; ``None``:
            they get 0, the fill value of the images.

    Returns:
        ``fn(images, masks=None) -> images`` or ``(images, masks)``: batched raw-range
        images ``[N, H, W, C]``; masks ``[N, H, W]`` (int) get the same geometric
        transformation with nearest-neighbour interpolation (the ignore label stays as it
        is) and no contrast change.

    Raises:
        ValueError: a setting :func:`check_augment_settings` refuses, a ``raw_range`` that
            is no pair of finite numbers ``low < high``, a seed that is no integer from 0
            to 2**32 - 1, an ``ignore_label`` that is no integer from 0 to 65535.
    """
    from keras import layers
    s = check_augment_settings(settings)
    # (were taken as given: a reversed or NaN raw_range clipped every contrast-changed
    # image to nothing useful, a negative seed or a fractional ignore label reached Keras)
    low_high = as_list(raw_range)
    if not (low_high is not None and len(low_high) == 2
            and all(map(is_finite_number, low_high)) and low_high[0] < low_high[1]):
        raise ValueError(f"augmenter: raw_range must be (low, high), finite numbers with low < "
                         f"high, such as (0.0, 255.0). Received: raw_range={_short(raw_range)}")
    raw_range = tuple(float(v) for v in low_high)
    seed = check_seed(seed)
    ignore_label = check_ignore_label(ignore_label)
    pipeline = []
    if s.get("flip"):
        pipeline.append(layers.RandomFlip(s["flip"], seed=seed, name="aug_flip"))
    if s.get("rotation"):
        pipeline.append(layers.RandomRotation(s["rotation"],
                                              fill_mode=s.get("fill_mode", "reflect"),
                                              seed=seed + 1, name="aug_rotation"))
    if s.get("zoom"):
        pipeline.append(layers.RandomZoom(s["zoom"], fill_mode=s.get("fill_mode", "reflect"),
                                          seed=seed + 2, name="aug_zoom"))
    if s.get("translation"):
        t = s["translation"]
        pipeline.append(layers.RandomTranslation(t, t, fill_mode=s.get("fill_mode", "reflect"),
                                                 seed=seed + 3, name="aug_translation"))
    if s.get("contrast"):
        pipeline.append(layers.RandomContrast(s["contrast"], value_range=tuple(raw_range),
                                              seed=seed + 4, name="aug_contrast"))

    def apply(images, masks=None):
        if masks is None:
            for layer in pipeline:
                images = layer(images, training=True)
            return images
        masks = tf.cast(masks[..., None], tf.float32)
        if ignore_label is not None:
            masks += 1.0   # 0 then marks the pixels the layers filled
        data = {"images": images, "segmentation_masks": masks}
        for layer in pipeline:
            data = layer(data, training=True)
        masks = tf.cast(tf.round(data["segmentation_masks"][..., 0]), tf.int32)
        if ignore_label is not None:
            masks = tf.where(masks == 0, tf.constant(ignore_label, tf.int32), masks - 1)
        return data["images"], masks

    apply.layers = pipeline
    return apply


# --------------------------------------------------------------------------------------
# Sources. Each yields unbatched raw examples (image [H, W, C] in 0..255, label or mask
# [H, W, 1]) per split.

@dataclasses.dataclass
class _Source:
    name: str
    task: str
    labels: list
    channels: int
    raw_shape: tuple                 # (H, W, C); None where it varies
    default_size: tuple              # image size used when none is asked for
    augmentation: dict
    get: object                      # split -> unbatched tf.data.Dataset
    sizes: dict = dataclasses.field(default_factory=dict)
    stats: Optional[tuple] = None    # (mean, std) per raw channel, or None = measure
    small: bool = False              # cache after resizing
    stats_sample: object = None      # () -> unbatched training examples to measure, spread
                                     # over the split (None: its first ones)
    counts: object = None            # split -> examples per class, no image decoded
                                     # (classification; None: count a pass over the split)
    ignore_label: Optional[int] = None   # mask value of pixels no loss or metric counts
    ignorable_class: Optional[int] = None  # the last class, which ignore_label may name to
                                           # leave it out (the pets' trimap border)
    shuffles_files: bool = False     # get(split, seed) shuffles the whole file list before
                                     # decoding, anew each pass (folders); else a shuffle
                                     # buffer of 4096 decoded examples
    test_is_validation: bool = False  # no test split of its own: validation's files serve
    decodes_to: bool = False         # get(split, to=C) decodes the files to C channels,
                                     # as zoo.serving decodes a file (folders): see
                                     # _decoding_to


# --- digits ---------------------------------------------------------------------------

_DIGITS_SPLIT = {"test": DIGITS_TEST_SIZE, "validation": 180}


def digits_arrays(split="train"):
    """scikit-learn's handwritten digits as raw arrays of one fixed split.

    The 1,797 images are split once, stratified by class with ``random_state=0``:
    360 test, 180 validation, 1,257 train.

    Returns:
        ``(images, labels)``: float32 ``[N, 8, 8, 1]`` in 0..255 (sklearn's 0..16 times
        255/16) and int32 ``[N]``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    split = split_name(split)
    bunch = load_digits()
    x = (bunch.images.astype("float32") * (255.0 / 16.0))[..., None]
    y = bunch.target.astype("int32")
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=_DIGITS_SPLIT["test"], stratify=y, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=_DIGITS_SPLIT["validation"], stratify=y_rest, random_state=0)
    return {"train": (x_train, y_train), "validation": (x_val, y_val),
            "test": (x_test, y_test)}[split]


def _digits_source(data_dir=None, download=False):
    def get(split):
        x, y = digits_arrays(split)
        return tf.data.Dataset.from_tensor_slices((x, y))

    def counts(split):
        return _bincount(digits_arrays(split)[1], 10, "digits")

    sizes = {"train": 1797 - 540, "validation": 180, "test": 360}
    return _Source("digits", "classification", [str(i) for i in range(10)], 1, (8, 8, 1),
                   (32, 32), _AUG_DIGITS, get, sizes, small=True, counts=counts)


# --- shapes ---------------------------------------------------------------------------

#: The classes of the ``shapes`` dataset: :func:`make_shapes`' mask values 0..3.
SHAPES_LABELS = ["background", "circle", "square", "triangle"]
_SHAPES_SIZES = {"train": 1000, "validation": 100, "test": 200}
_SHAPES_SEEDS = {"train": 101, "validation": 202, "test": 303}


def make_shapes(n, *, size=64, seed=0, max_shapes=3):
    """Generate ``n`` scenes of circles, squares and triangles with their masks.

    Each scene has a random background colour with Gaussian noise and 1..``max_shapes``
    filled shapes (random colour clearly different from the background, radius 7..16 px,
    random rotation for squares and triangles); later shapes cover earlier ones.

    Args:
        n: number of images.
        size: image height and width.
        seed: seed of the generator (same seed, same scenes).
        max_shapes: most shapes per scene.

    Returns:
        ``(images, masks)``: uint8 ``[n, size, size, 3]`` and uint8 ``[n, size, size]`` with
        0 = background, 1 = circle, 2 = square, 3 = triangle.

    Raises:
        ValueError: ``n`` or ``seed`` is no integer >= 0, ``size`` or ``max_shapes`` no
            positive integer.
    """
    n, seed = check_count("n", n, 0), check_count("seed", seed, 0)
    size, max_shapes = check_count("size", size), check_count("max_shapes", max_shapes)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype("float32") + 0.5
    images = np.empty((n, size, size, 3), "uint8")
    masks = np.zeros((n, size, size), "uint8")
    scale = size / 64.0
    for i in range(n):
        bg = rng.uniform(0, 255, 3)
        img = np.broadcast_to(bg, (size, size, 3)).copy()
        mask = np.zeros((size, size), "uint8")
        for _ in range(rng.integers(1, max_shapes + 1)):
            kind = int(rng.integers(1, 4))
            r = rng.uniform(7, 16) * scale
            cx, cy = rng.uniform(r * 0.8, size - r * 0.8, 2)
            dx, dy = xx - cx, yy - cy
            angle = rng.uniform(0, 2 * np.pi)
            ca, sa = np.cos(angle), np.sin(angle)
            u, v = ca * dx + sa * dy, -sa * dx + ca * dy
            if kind == 1:
                inside = dx * dx + dy * dy <= r * r
            elif kind == 2:
                half = r * 0.8
                inside = (np.abs(u) <= half) & (np.abs(v) <= half)
            else:
                inside = np.ones_like(u, bool)
                for k in range(3):  # three half-planes of an equilateral triangle
                    t = angle + k * 2 * np.pi / 3
                    inside &= (np.cos(t) * dx + np.sin(t) * dy) <= r * 0.5
            while True:
                colour = rng.uniform(0, 255, 3)
                if np.abs(colour - bg).sum() > 150:
                    break
            img[inside] = colour
            mask[inside] = kind
        img += rng.normal(0, 8, img.shape)
        images[i] = np.clip(img, 0, 255).astype("uint8")
        masks[i] = mask
    return images, masks


def _shapes_source(data_dir=None, download=False):
    def get(split):
        x, m = make_shapes(_SHAPES_SIZES[split], seed=_SHAPES_SEEDS[split])
        return tf.data.Dataset.from_tensor_slices((x, m[..., None]))
    return _Source("shapes", "segmentation", list(SHAPES_LABELS), 3, (64, 64, 3), (64, 64),
                   _AUG_SHAPES, get, dict(_SHAPES_SIZES), small=True)


# --- tensorflow-datasets --------------------------------------------------------------

# name: (split expressions, task, channels, raw size, default size, stats, augmentation)
_TFDS = {
    "mnist": ({"train": "train[:90%]", "validation": "train[90%:]", "test": "test"},
              "classification", 1, (28, 28), (28, 28), ([33.32], [78.57]), _AUG_DIGITS),
    "fashion_mnist": ({"train": "train[:90%]", "validation": "train[90%:]", "test": "test"},
                      "classification", 1, (28, 28), (28, 28), ([72.94], [90.02]),
                      dict(_AUG_DIGITS, flip="horizontal")),
    "cifar10": ({"train": "train[:90%]", "validation": "train[90%:]", "test": "test"},
                "classification", 3, (32, 32), (32, 32),
                ([125.31, 122.95, 113.87], [62.99, 62.09, 66.70]), _AUG_PHOTO),
    "cifar100": ({"train": "train[:90%]", "validation": "train[90%:]", "test": "test"},
                 "classification", 3, (32, 32), (32, 32),
                 ([129.30, 124.07, 112.43], [68.17, 65.39, 70.42]), _AUG_PHOTO),
    # malaria has a single upstream split: fixed 80/10/10 slices of it.
    "malaria": ({"train": "train[:80%]", "validation": "train[80%:90%]", "test": "train[90%:]"},
                "classification", 3, (None, None), (64, 64), None, _AUG_CELLS),
    "oxford_iiit_pet": ({"train": "train[:90%]", "validation": "train[90%:]", "test": "test"},
                        "segmentation", 3, (None, None), (128, 128),
                        (_IMAGENET_MEAN, _IMAGENET_STD), _AUG_PHOTO),
    # imagenette publishes train and validation: validation serves as the test split.
    "imagenette": ({"train": "train[:90%]", "validation": "train[90%:]", "test": "validation"},
                   "classification", 3, (None, None), (160, 160),
                   (_IMAGENET_MEAN, _IMAGENET_STD), _AUG_PHOTO),
}

PET_LABELS = ["pet", "background", "border"]


def remap_trimap(mask):
    """Oxford-IIIT Pet trimap values 1 (pet), 2 (background), 3 (border) -> 0, 1, 2.

    The border is the trimap's "not classified" band around each pet. It is a class by
    default; ``load(..., ignore_label=2)`` leaves it out of losses and metrics instead,
    which leaves two classes, pet and background.
    """
    return tf.clip_by_value(tf.cast(mask, tf.int32) - 1, 0, 2)


def _offline_message(name, data_dir, exc, download=False):
    """The one line that says a tensorflow-datasets dataset is not there (``download``:
    and could not be downloaded) and how to get it; ``exc``: tensorflow-datasets' error."""
    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    reason = clip_text(" ".join(str(exc).split()), 240)
    if download:
        return (f"Dataset {name!r} is not available in {where} and could not be downloaded "
                f"({type(exc).__name__}: {reason}). Check this machine's connection to the "
                f"internet, or get it once on a machine with one: `tfds build {name} "
                f"--data_dir DIR` and pass data_dir=DIR (`--data-dir DIR`). Datasets that "
                f"need no download: {', '.join(OFFLINE_DATASETS)}.")
    return (f"Dataset {name!r} is not available in {where} and nothing is downloaded "
            f"without download=True (--download). Get it once on a machine with internet: "
            f"`tfds build {name} --data_dir DIR` and pass data_dir=DIR (`--data-dir DIR`). "
            f"Datasets that need no download: {', '.join(OFFLINE_DATASETS)}. ({reason})")


@contextlib.contextmanager
def download_progress_hidden():
    """tensorflow-datasets' progress bars (``Dl Completed...``, ``Generating splits...``
    while ``download=True`` fetches and prepares a dataset) hidden, as ``zoo train --quiet``
    and ``zoo tune --verbose 0`` have them; their setting is restored afterwards."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.utils import tqdm_utils
    was = getattr(tqdm_utils, "_active", True)   # (tfds has a setter only)
    tfds.display_progress_bar(False)
    try:
        yield
    finally:
        tfds.display_progress_bar(was)


def _tfds_source(name, data_dir=None, download=False):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError
    from tensorflow_datasets.core.download.extractor import ExtractError
    from tensorflow_datasets.core.download.util import DownloadError
    from tensorflow_datasets.core.utils import tqdm_utils
    splits, task, channels, raw_hw, default_size, stats, aug = _TFDS[name]

    def _load(split, **kwargs):
        # tfds logs (absl's Python logger) on its way to finding no data ("Variant folder
        # ... has no dataset_info.json"), and urllib3 each retry of a download that cannot
        # reach its server: held back, and dropped when the error below says what happened
        # in one line; passed on otherwise.
        loggers = [logging.getLogger(n) for n in ("absl", "urllib3.connectionpool")]
        held = []

        def hold(record):
            held.append(record)
            return False

        for logger in loggers:
            logger.addFilter(hold)
        # With its bars hidden (download_progress_hidden: zoo train --quiet), the lines
        # tensorflow-datasets prints around a download ("Downloading and preparing dataset
        # ...") too.
        quiet = download and not getattr(tqdm_utils, "_active", True)
        threads_before = {t.ident for t in threading.enumerate()}
        try:
            with contextlib.redirect_stdout(io.StringIO()) if quiet else \
                    contextlib.nullcontext():
                return tfds.load(name, split=splits[split], data_dir=data_dir,
                                 download=download, with_info=True, **kwargs)
        except (AssertionError, tfds.core.registered.DatasetNotFoundError,
                FileNotFoundError, KeyError) as exc:   # KeyError: a folder of no splits
            held.clear()
            raise ValueError(_offline_message(name, data_dir, exc, download)) from None
        except ModuleNotFoundError as exc:
            # tensorflow-datasets' download imports importlib_resources, which it declares
            # for Python < 3.9 only (setup.cfg declares it)
            held.clear()
            raise ValueError(f"tensorflow-datasets needs the Python module {exc.name!r} to "
                             f"{'download' if download else 'load'} dataset {name!r}, and it "
                             f"is not installed: pip install {exc.name}") from None
        except (OSError, DownloadError, NonMatchingChecksumError, ExtractError) as exc:
            if not download:
                raise
            held.clear()   # (was requests' own message after a page of urllib3 retries)
            # The failed download's other threads go on retrying their files (the process
            # waits for them at exit): their records are dropped too, after the error line.
            workers = {t.ident for t in threading.enumerate()} - threads_before
            if workers:
                logging.getLogger("urllib3.connectionpool").addFilter(
                    lambda record: record.thread not in workers)
            raise ValueError(_offline_message(name, data_dir, exc, download)) from None
        finally:
            for logger in loggers:
                logger.removeFilter(hold)
            for record in held:
                logging.getLogger(record.name).handle(record)

    _, tinfo = _load("train")
    label_feature = tinfo.features["label"]
    labels = PET_LABELS if task == "segmentation" else list(label_feature.names)
    sizes = {}
    for split, expr in splits.items():
        try:
            sizes[split] = int(tinfo.splits[expr].num_examples)
        except Exception:  # unknown (e.g. under tfds.testing.mock_data)
            pass

    def get(split):
        ds, _ = _load(split)
        if task == "segmentation":
            return ds.map(lambda ex: (ex["image"], remap_trimap(ex["segmentation_mask"])),
                          num_parallel_calls=tf.data.AUTOTUNE)
        return ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)),
                      num_parallel_calls=tf.data.AUTOTUNE)

    def counts(split):
        # tensorflow-datasets records no examples per class: one pass over the split's
        # labels, its images left undecoded.
        ds, _ = _load(split, decoders={"image": tfds.decode.SkipDecoding()})
        total = np.zeros(len(labels), "int64")
        for y in ds.map(lambda ex: ex["label"]).batch(4096).as_numpy_iterator():
            total += _bincount(y, len(labels), name)
        return total

    return _Source(name, task, labels, channels, (*raw_hw, channels), default_size, aug, get,
                   sizes, stats=stats, counts=counts if task == "classification" else None,
                   ignorable_class=len(labels) - 1 if name == "oxford_iiit_pet" else None)


# --- local folders --------------------------------------------------------------------

#: The extensions of images a dataset folder holds (.jfif, .jpe, .jif and .jfi are JPEG's
#: less common ones, which were left out without a word).
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".jfif", ".jpe", ".jif",
              ".jfi")
#: Image formats TensorFlow's decoders do not read: a dataset folder holding them is refused
#: (they would be left out without a word).
_OTHER_IMAGE_EXT = (".tif", ".tiff", ".heic", ".heif", ".avif", ".jp2", ".j2k", ".jpf",
                    ".jpx", ".jxl", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".dng", ".raw",
                    ".cr2", ".nef", ".svg", ".tga", ".psd", ".exr", ".hdr", ".pcx", ".qoi")


_DECODE_OP = "zoo_decode_image"


def _is_image_file(path) -> bool:
    """Whether ``path`` starts with the signature of a format TensorFlow decodes."""
    with open(path, "rb") as f:
        return has_image_signature(f.read(12))


def _visible(name) -> bool:
    """Whether a file or folder name is not hidden (``.DS_Store``, macOS' ``._photo.jpg``
    resource forks, ``.ipynb_checkpoints``): hidden ones are no data."""
    return not name.startswith(".")


def _image_files(folder, *, recursive=False, checked=True):
    """The image files in ``folder`` (and, ``recursive``, its subfolders), sorted by path;
    hidden files and folders are skipped; linked subfolders are followed, each folder read
    once (a link back to a folder above is no loop). ``checked``: a file with an image
    extension that is not an image (its first bytes are no PNG, JPEG, GIF, BMP or WebP
    signature), an image in a format the pipeline cannot decode or a link to nothing
    raises (``False``: the files with an image extension, as they are)."""
    folder = os.fspath(folder)
    if recursive:
        paths, seen = [], {os.path.realpath(folder)}
        for top, dirs, names in os.walk(folder, followlinks=True):
            kept = []
            for d in sorted(dirs):
                real = os.path.realpath(os.path.join(top, d))
                if _visible(d) and real not in seen:
                    seen.add(real)
                    kept.append(d)
            dirs[:] = kept
            paths += [os.path.join(top, f) for f in names]
    else:
        paths = [os.path.join(folder, f) for f in os.listdir(folder)
                 if not os.path.isdir(os.path.join(folder, f))]
    paths = sorted(p for p in paths if _visible(os.path.basename(p)))
    if not checked:
        return [p for p in paths if p.lower().endswith(_IMAGE_EXT)]
    other = [p for p in paths if p.lower().endswith(_OTHER_IMAGE_EXT)]
    if other:
        shown = ", ".join(repr(os.path.relpath(p, folder)) for p in other[:3])
        raise ValueError(f"Dataset folder {folder!r} holds {len(other)} image"
                         f"{'' if len(other) == 1 else 's'} in a format the pipeline cannot "
                         f"decode ({shown}{', ...' if len(other) > 3 else ''}): dataset "
                         f"folders hold .png, .jpg, .jpeg, .bmp, .gif and .webp images. "
                         f"Convert them (to PNG, say) or remove them.")
    for path in paths:   # (a link to a missing folder, or a loop, was left out unseen)
        if not path.lower().endswith(_IMAGE_EXT) and _broken_link(path):
            _refuse_broken_link(path)
    paths = [p for p in paths if p.lower().endswith(_IMAGE_EXT)]
    for path in paths:
        if not os.path.exists(path):
            raise ValueError(f"{path!r} is a symbolic link to a file that does not exist "
                             f"({os.readlink(path)!r}). Remove the link or restore its file.")
        if not _is_image_file(path):
            raise ValueError(f"{path!r} is not an image: its first bytes are no PNG, JPEG, GIF, "
                             "BMP or WebP signature. Remove or replace the file (dataset "
                             "folders hold .png, .jpg, .jpeg, .bmp, .gif and .webp images).")
    return paths


def _broken_link(path) -> bool:
    """Whether ``path`` is a symbolic link that leads to nothing (a missing target, or a
    loop of links)."""
    return os.path.islink(path) and not os.path.exists(path)


def _refuse_broken_link(path):
    raise ValueError(f"{path!r} is a symbolic link that leads to no file or folder "
                     f"({os.readlink(path)!r}): what it held would be left out. Remove the "
                     f"link or restore its target.")


@contextlib.contextmanager
def tf_errors_as(translate):
    """Inside, TensorFlow's ``InvalidArgumentError`` leaves as ``translate(exc)`` where that
    gives an exception (the one line that names what failed: a damaged file, a label out of
    range), from nothing; else as it is."""
    try:
        yield
    except tf.errors.InvalidArgumentError as exc:
        error = translate(exc)
        if error is None:
            raise
        raise error from None


def _decode_failure(exc, name):
    """A ``ValueError`` for TensorFlow's error ``exc`` when an image of dataset ``name``
    could not be decoded while the pipeline read it (e.g. a truncated file), else ``None``.
    TensorFlow's error does not say which file: a folder's images are decoded again to name
    the ones that fail (:func:`_undecodable`)."""
    text = str(exc)
    if not isinstance(exc, tf.errors.InvalidArgumentError) or _DECODE_OP not in text:
        return None
    found = re.search(r"transformation with iterator: \S+: ([^\n]+)", text)
    reason = found.group(1).strip() if found else "unknown format or damaged data"
    folder = name[len("folder:"):] if name.startswith("folder:") else name
    broken = _undecodable(folder) if os.path.isdir(folder) else []
    if not broken:
        return ValueError(f"Dataset folder {folder!r}: an image could not be decoded "
                          f"({reason}). Check its image files for truncated, damaged or "
                          "unsupported ones.")
    shown = ", ".join(repr(os.path.relpath(p, folder)) for p in broken[:3])
    return ValueError(f"Dataset folder {folder!r}: {len(broken)} image"
                      f"{' could' if len(broken) == 1 else 's could'} not be decoded "
                      f"({reason}): {shown}{', ...' if len(broken) > 3 else ''}. Remove or "
                      "replace the damaged (e.g. truncated) files.")


def _undecodable(folder) -> list:
    """The image files under ``folder`` (all its splits) that the pipeline's decoder fails
    on, sorted by path. Each is decoded once, in parallel, by a tf.data pipeline that skips
    the failures; in a command line, file descriptor 2 is shut meanwhile (libjpeg writes a
    line of its own for each damaged JPEG)."""
    from zoo.startlog import command_line_quiet
    # Unchecked: the folder beside its splits may hold other files (docs/diagram.svg), which
    # were refused here in place of naming the damaged images.
    paths = _image_files(folder, recursive=True, checked=False)
    if not paths:
        return []
    ds = (tf.data.Dataset.from_tensor_slices(_path_tensor(paths))
          .map(lambda p: (p, tf.shape(_decode(p, 3))), num_parallel_calls=tf.data.AUTOTUNE,
               deterministic=False)
          .ignore_errors())
    with command_line_quiet():
        decoded = {os.fsdecode(p) for p, _ in ds.as_numpy_iterator()}
    return [p for p in paths if p not in decoded]


_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def _image_channels(path):
    from PIL import Image
    try:
        with Image.open(path) as im:
            return (1 if im.mode in _GREY_MODES else 3), im.size[::-1]
    except OSError as exc:   # PIL.UnidentifiedImageError: no readable header
        raise ValueError(f"{path!r} could not be read as an image ({exc.__class__.__name__}: "
                         "its header is damaged or cut short). Remove or replace the file."
                         ) from None


def _spread(items, most):
    """At most ``most`` of ``items``, evenly spaced over them (all of them when fewer):
    a fixed sample that sees every class of a listing sorted by class."""
    if len(items) <= most:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, most).round().astype(int)]


def _folder_channels(paths):
    """The channels of a folder dataset: 3 if any of ``paths`` (a sample of its training
    images) is in colour, else 1; with the first image's ``(H, W)``."""
    channels, hw = _image_channels(paths[0])
    for path in paths[1:]:
        if channels == 3:
            break
        channels = _image_channels(path)[0]
    return channels, hw


def _find_split_dir(root, split):
    names = {"train": ("train",), "validation": ("validation", "val", "valid"),
             "test": ("test",)}[split]
    found = [n for n in names if os.path.isdir(os.path.join(root, n))]
    if len(found) > 1:   # one would be read, the other ignored without a word
        both = " and ".join(n + "/" for n in found)
        raise ValueError(f"Dataset folder {root!r} holds {both}: both would be its {split} "
                         f"split. Keep one of them.")
    return os.path.join(root, found[0]) if found else None


def _decode(path, channels):
    return _decode_bytes(tf.io.read_file(path), channels)


def _path_tensor(paths):
    """File paths as a string tensor of their bytes (``os.fsencode``), as TensorFlow's file
    ops read them: a name that is not UTF-8 (``caf\\xe9.png`` from an old archive, Python's
    ``caf\\udce9.png``) failed the conversion of the list ("Error converting unicode string
    while converting Python sequence to Tensor"), ending training and evaluation."""
    return tf.constant([os.fsencode(p) for p in paths], tf.string)


def _little_endian(data, offset, size):
    """The integer of ``size`` (2: unsigned, 4: signed) bytes at ``offset`` of a string
    tensor, as an int32."""
    dtype = tf.uint16 if size == 2 else tf.int32
    raw = tf.io.decode_raw(tf.strings.substr(data, offset, size), dtype, little_endian=True)
    return tf.cast(raw[0], tf.int32)


def _palette_bmp(data):
    """Whether ``data`` (encoded bytes, a string tensor) is an 8-bit BMP with a colour table
    (a Windows BMP header of 40 bytes or more). TensorFlow's BMP decoder reads such a file's
    palette indices as grey values, whatever colours its table gives them."""
    if tf.executing_eagerly() and not data.numpy().startswith(b"BM"):
        return False   # (zoo.serving decoding a file: no eager ops for other formats)

    def eight_bit():
        return tf.logical_and(tf.equal(_little_endian(data, 28, 2), 8),
                              tf.greater_equal(_little_endian(data, 14, 4), 40))
    return tf.cond(tf.logical_and(tf.equal(tf.strings.substr(data, 0, 2), "BM"),
                                  tf.greater_equal(tf.strings.length(data), 54)),
                   eight_bit, lambda: tf.constant(False))


def _bmp_colours(data):
    """An 8-bit BMP's pixels ``[H, W, 3]``: its palette indices (TensorFlow's decode) looked
    up in its colour table (BGRX entries after the header; 256 where the header counts 0)."""
    indices = tf.io.decode_image(data, channels=0, expand_animations=False, name=_DECODE_OP)
    count = _little_endian(data, 46, 4)
    count = tf.where(tf.equal(count, 0), 256, count)
    table = tf.io.decode_raw(tf.strings.substr(data, 14 + _little_endian(data, 14, 4),
                                               4 * count), tf.uint8)
    table = tf.reshape(table, [-1, 4])[:, 2::-1]
    return tf.gather(table, tf.cast(indices[..., 0], tf.int32), name=_DECODE_OP)


def _decode_colour_table(data, channels):
    """``tf.io.decode_image(data, channels)``, but an 8-bit BMP in its colour table's
    colours (:func:`_bmp_colours`, 3 channels) rather than its indices."""
    return tf.cond(_palette_bmp(data), lambda: _bmp_colours(data),
                   lambda: tf.io.decode_image(data, channels=channels, expand_animations=False,
                                              name=_DECODE_OP))


def _decode_bytes(data, channels):
    """Encoded image bytes (a string tensor) -> uint8 ``[H, W, channels]``, exactly as the
    folder datasets' pipelines decode their files (``channels`` 1 or 3).

    ``zoo.serving.decode_image`` decodes PNG, JPEG, GIF, BMP and WebP images with this
    function too, so that a served model sees the pixels it was trained on: TensorFlow's JPEG decoder
    (its default, libjpeg's fast integer IDCT) and grey conversions differ from Pillow's by
    a few levels.
    """
    # The op's name lets _decode_failure recognise TensorFlow's error when a file fails.
    # TensorFlow decodes WebP files to their own channels only (3, or 4 with alpha; any
    # other count fails): decoded as they are, alpha dropped, and for one channel turned
    # grey below.
    webp = tf.logical_and(tf.equal(tf.strings.substr(data, 0, 4), "RIFF"),
                          tf.equal(tf.strings.substr(data, 8, 4), "WEBP"))
    # An 8-bit BMP's colours are its colour table's (TensorFlow reads its indices as grey).
    if channels != 1:
        img = tf.cond(
            webp,
            lambda: tf.io.decode_image(data, channels=0, expand_animations=False,
                                       name=_DECODE_OP)[..., :3],
            lambda: _decode_colour_table(data, channels))
        img.set_shape([None, None, channels])
        return img
    # TensorFlow decodes GIF, BMP and WebP files to 3 or 4 channels only (channels=1 fails
    # for them), and CMYK JPEGs to RGB only ("Unsupported color conversion request"): those are
    # decoded in colour and turned grey here (alpha dropped); PNG and other JPEGs keep their
    # decoders' own grey conversion.
    head = tf.strings.substr(data, 0, 3)
    gif_or_bmp = tf.logical_or(tf.equal(head, "GIF"), tf.equal(tf.strings.substr(head, 0, 2),
                                                                 "BM"))
    cmyk = tf.cond(tf.io.is_jpeg(data),   # four components in its frame header
                   lambda: tf.equal(tf.io.extract_jpeg_shape(data, name=_DECODE_OP)[2], 4),
                   lambda: tf.constant(False))

    def grey_of_native():
        native = _decode_colour_table(data, 0)
        return tf.cond(tf.shape(native)[-1] >= 3,
                       lambda: tf.image.rgb_to_grayscale(native[..., :3]),
                       lambda: native[..., :1])

    img = tf.cond(tf.logical_or(tf.logical_or(gif_or_bmp, webp), cmyk), grey_of_native,
                  lambda: tf.io.decode_image(data, channels=1, expand_animations=False,
                                             name=_DECODE_OP))
    img.set_shape([None, None, 1])
    return img


def _folder_source(root, data_dir=None, download=False, ignore_label=None):
    name = f"folder:{root}"   # (an existing directory: zoo.common.dataset_source)
    seg_roots = {}
    split_dirs = {split: _find_split_dir(root, split) for split in SPLITS}
    found = sorted(os.path.basename(d) + "/" for d in split_dirs.values() if d)
    seg_all = _is_segmentation_dir(root)
    odd = sorted(d + "/" for d in os.listdir(root) if (found or seg_all) and d + "/" not in found
                 and _SPLIT_LIKE.fullmatch(d) and os.path.isdir(os.path.join(root, d)))
    if odd:   # (Test/, testing/, dev/ beside train/ were left out without a word)
        one = len(odd) == 1
        raise ValueError(f"Dataset folder {root!r} holds {' and '.join(odd)} beside "
                         f"{' and '.join(found) or 'images/ + masks/'}: {' and '.join(odd)} "
                         f"{'looks like a split' if one else 'look like splits'} but would "
                         f"be left out (the split folders are train/, validation/ (or val/, "
                         f"valid/) and test/, in lower case). Rename or remove "
                         f"{'it' if one else 'them'}.")
    if seg_all:
        seg_roots = {"all": root}
        beside = [os.path.basename(d) + "/" for d in split_dirs.values() if d]
        if beside:   # (were left out without a word: the split was made of root/images)
            raise ValueError(f"Dataset folder {root!r} holds images/ + masks/ beside "
                             f"{' and '.join(beside)}: one would be read, the other left out. "
                             f"Keep one layout: root/images + root/masks (split 80/10/10), "
                             f"or root/train/images + root/train/masks (and validation/, "
                             f"test/).")
    else:
        seg_roots = {split: d for split, d in split_dirs.items()
                     if d and _is_segmentation_dir(d)}
        for split, d in split_dirs.items():
            if seg_roots and d and split not in seg_roots:   # (was left out without a word)
                have = sorted(x + "/" for x in os.listdir(d) if _visible(x)
                              and os.path.isdir(os.path.join(d, x)))
                raise ValueError(f"Segmentation folder {root!r}: its {split} folder {d!r} "
                                 f"has no images/ + masks/ (it holds "
                                 f"{clip_text(', '.join(have), 120) or 'no folder'}), so the "
                                 f"split would be left out. Give it images/ and masks/ (one "
                                 f"mask per image, with its file name), or remove it.")
    if seg_roots:
        return _segmentation_folder(root, name, seg_roots, ignore_label)
    return _classification_folder(root, name, split_dirs)


def _is_segmentation_dir(folder) -> bool:
    """Whether ``folder`` holds the ``images/`` and ``masks/`` of a segmentation dataset."""
    return all(os.path.isdir(os.path.join(folder, d)) for d in ("images", "masks"))


# Folder names a user may have given a split (Train/, training_set/, Test/, val_images/): with
# no train/ folder beside them they would otherwise be read as classes.
_SPLIT_LIKE = re.compile(r"(train|training|trn|val|valid|validation|validate|dev|test|testing|"
                         r"tst|eval|evaluation)([ _.-]?(set|data|split|images|imgs|img))?",
                         re.IGNORECASE)


def _file_ranks(paths, base) -> dict:
    """``{path: its fixed place in a holdout's order}`` of the files ``paths`` in the folder
    ``base``: 64-bit integers, the first bytes of the SHA-256 of each path relative to
    ``base`` (``/``-separated, in Unicode's NFC form, as copies between systems may change
    it), the same wherever the folder lies and whatever other files it holds."""
    prefix = os.path.join(base, "")
    ranks = {}
    for path in paths:   # (os.path.relpath: 4 µs a file; 100,000 files took 0.4 s)
        name = path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, base)
        name = unicodedata.normalize("NFC", name.replace(os.sep, "/"))
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).digest()
        ranks[path] = int.from_bytes(digest[:8], "big")
    return ranks


def _hold_out(paths, ys, n, ranks):
    """``(kept, held)``: ``(paths, ys)`` pairs of a fixed, stratified holdout of about ``n``
    of the examples (:func:`_stratified_holdout`, each class's files in the order of
    ``ranks``, :func:`_file_ranks`) and the rest, or ``None`` when no example can be held
    out (every class has one)."""
    held = _stratified_holdout(ys, n, [ranks[p] for p in paths])
    if not held:
        return None
    kept = sorted(set(range(len(paths))) - set(held))
    return (([paths[i] for i in kept], [ys[i] for i in kept]),
            ([paths[i] for i in held], [ys[i] for i in held]))


def _check_distinct_classes(split_dir, labels):
    """Refuse two class folders of ``split_dir`` that are one folder, or one inside the
    other, through a symbolic link (``kitty -> cat``): their images would be read under
    both labels."""
    real = {label: os.path.realpath(os.path.join(split_dir, label)) for label in labels
            if os.path.isdir(os.path.join(split_dir, label))}
    # Sorted by path (with a separator after it), a folder is followed at once by one that
    # is the same folder or inside it, if any is: neighbours are all that need comparing.
    key = {label: path.rstrip(os.sep) + os.sep for label, path in real.items()}
    order = sorted(real, key=lambda label: (key[label], label))
    for a, b in zip(order, order[1:]):
        if key[b].startswith(key[a]):
            how = ("are the same folder" if real[a] == real[b] else
                   f"are one folder and a folder inside it ({b!r} is in {a!r})")
            raise ValueError(f"Class folders {a!r} and {b!r} of {split_dir!r} {how}, "
                             f"through a symbolic link ({real[b]}): their images would "
                             f"have both labels. Remove the link, or merge the classes.")


def _check_listed_once(root, files, labels=None):
    """Refuse an image file that ``files`` (``{split: (paths, class indices)}``) list twice,
    reached through a symbolic or hard link (a link in one class folder to another class's
    folder or to a folder above, or to a file): it would have two labels, lie in two
    splits, or count twice. ``labels``: the class names (``None``: a segmentation
    folder's images). One path listed in two splits is the test split reusing validation's
    files."""
    seen = {}
    for split, (paths, ys) in files.items():
        for path, y in zip(paths, ys):
            stat = os.stat(path)   # an inode number of 0 is none (some file systems)
            key = (stat.st_dev, stat.st_ino) if stat.st_ino else os.path.realpath(path)
            first = seen.setdefault(key, (path, y, split))
            if first[0] != path:
                a, b = (os.path.relpath(p, root) for p in (first[0], path))
                how = (f"under two labels, {labels[first[1]]!r} and {labels[y]!r}"
                       if labels and first[1] != y else f"in the {first[2]} and {split} splits"
                       if first[2] != split else "twice")
                raise ValueError(f"Dataset folder {root!r} lists one image file twice, as "
                                 f"{a!r} and {b!r} (through a symbolic or hard link): it would "
                                 f"be read {how}. Remove the link.")


def _classification_folder(root, name, split_dirs):
    """``root/<split>/<label>/`` images: the labels are train's class folders, sorted; a
    class folder's subfolders belong to it; hidden files and folders are skipped. A missing
    validation folder is a fixed, stratified 10% of train (a class's only image stays in
    train); a missing test folder is the validation split. A folder with no split folder
    at all holds the class folders itself (``root/<label>/``), split 80/10/10: fixed,
    stratified test and validation parts of 10% each. ``split_dirs``: ``{split: its folder
    or None}`` (:func:`_find_split_dir`, as :func:`_folder_source` found them)."""
    whole = all(d is None for d in split_dirs.values())   # root/<label>/*, split here
    if whole:
        split_like = sorted(d for d in os.listdir(root)
                            if os.path.isdir(os.path.join(root, d)) and _SPLIT_LIKE.fullmatch(d))
        if split_like:
            raise ValueError(f"Dataset folder {root!r} has no train/ folder, but its folders "
                             f"{', '.join(repr(d) for d in split_like)} look like splits, not "
                             "classes. Name the split folders train/, validation/ (or val/, "
                             "valid/) and test/, in lower case; a folder holding only class "
                             "folders (root/<label>/*.png|jpg) is split 80/10/10.")
        split_dirs["train"] = root
    elif split_dirs["train"] is None:
        found = sorted(os.path.basename(d) + "/" for d in split_dirs.values() if d)
        others = sorted(d + "/" for d in os.listdir(root) if _visible(d)
                        and os.path.isdir(os.path.join(root, d)) and d + "/" not in found)
        if others:   # root/<label>/ with a class named like a split
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise ValueError(
                f"Dataset folder {root!r} holds {' and '.join(found)} beside other folders "
                f"({shown}): {' and '.join(found)} {'is' if len(found) == 1 else 'are'} read "
                f"as a split, which needs train/ beside it. If {' and '.join(found)} "
                f"{'is a class' if len(found) == 1 else 'are classes'}, rename "
                f"{'it' if len(found) == 1 else 'them'} (e.g. {found[0][:-1]}_/); else move "
                f"the class folders into train/.")
        raise ValueError(f"Dataset folder {root!r} has no 'train' subfolder beside its "
                         f"validation or test folder. Expected {CLASSIFICATION_LAYOUT}, or "
                         "root/images + root/masks for segmentation.")
    for d in split_dirs.values():   # (a class folder linked to nothing was no class)
        for entry in sorted(os.listdir(d)) if d else ():
            if _visible(entry) and _broken_link(os.path.join(d, entry)):
                _refuse_broken_link(os.path.join(d, entry))
    where = "<label>" if whole else "train/<label>"
    labels = sorted(d for d in os.listdir(split_dirs["train"])
                    if _visible(d) and os.path.isdir(os.path.join(split_dirs["train"], d)))
    lookalike = [d for d in labels if d.lower() in ("images", "masks")]
    if lookalike:   # (Images/ + Masks/, images/ + labels/ trained a classifier of the two)
        shown = " and ".join(d + "/" for d in lookalike)
        raise ValueError(f"Dataset folder {split_dirs['train']!r} holds {shown} but not the "
                         f"pair images/ + masks/ of a segmentation folder: it would be read "
                         f"as class folders {clip_text(repr(labels), 120)}. Segmentation: "
                         f"name the folders images/ and masks/, in lower case (one mask per "
                         f"image, with its file name). Classification: rename {shown} "
                         f"(e.g. {lookalike[0]}_/).")
    if not labels:
        raise ValueError(f"Dataset folder {split_dirs['train']!r} has no " +
                         (f"subfolders. Expected {CLASSIFICATION_LAYOUT}, or root/images + "
                          "root/masks for segmentation." if whole else
                          "label subfolders (expected train/<label>/*.png|jpg)."))
    if len(labels) < 2:
        raise ValueError(f"Dataset folder {split_dirs['train']!r} has one label subfolder "
                         f"({labels[0]!r}); a classifier needs at least 2 classes "
                         f"({where}/*.png|jpg, one subfolder per class).")
    files = {}
    for split, d in split_dirs.items():
        if d is None:
            continue
        _check_distinct_classes(d, labels)
        paths, ys = [], []
        for k, label in enumerate(labels):
            sub = os.path.join(d, label)
            if os.path.isdir(sub):
                found = _image_files(sub, recursive=True)
                if not found and split == "train":
                    # (macOS' zip tool adds __MACOSX/, of hidden ._* files, to its archives)
                    why = (" (__MACOSX/ holds the file metadata macOS adds to a zip archive, "
                           "not images)" if label == "__MACOSX" else "")
                    raise ValueError(f"Class folder {sub!r} has no images (.png, .jpg, .jpeg, "
                                     f".bmp, .gif, .webp){why}; every class needs training "
                                     f"images. Add some or remove the folder.")
                paths += found
                ys += [k] * len(found)
        loose = sorted(x for x in os.listdir(d) if _visible(x) and x.lower().endswith(
            _IMAGE_EXT) and not os.path.isdir(os.path.join(d, x)))
        if loose:
            raise ValueError(f"Dataset folder {d!r} holds {len(loose)} image"
                             f"{'' if len(loose) == 1 else 's'} outside its class folders "
                             f"({clip_text(repr(loose), 200)}): they have no class. Move them "
                             f"into {os.path.basename(os.path.normpath(d))}/<label>/ or "
                             "remove them.")
        extra = sorted(set(x for x in os.listdir(d)
                           if _visible(x) and os.path.isdir(os.path.join(d, x))) - set(labels))
        if extra:
            # (a name in another Unicode form, as copies between systems leave them, was
            # shown twice alike: "labels not in train: ['café']. Train labels: ['café']")
            nfc = {unicodedata.normalize("NFC", label): label for label in labels}
            alike = [(x, nfc[unicodedata.normalize("NFC", x)]) for x in extra
                     if unicodedata.normalize("NFC", x) in nfc]
            hint = (f" {alike[0][0]!r} is train's {alike[0][1]!r} in another Unicode form "
                    f"({ascii(alike[0][0])} against {ascii(alike[0][1])}): rename the folder "
                    f"alike." if alike else "")
            raise ValueError(f"Dataset folder {d!r} has labels not in train: {extra}. "
                             f"Train labels: {labels}.{hint}")
        files[split] = (paths, ys)
    for split, (paths, _) in files.items():
        if not paths:
            raise ValueError(f"No images (.png, .jpg, .jpeg, .bmp, .gif, .webp) found in the "
                             f"class folders of {split_dirs[split]!r}. Add images, or remove "
                             "the folder (a missing validation folder is a fixed 10% of "
                             "train, a missing test folder the validation split).")
    _check_listed_once(root, files, labels)
    if whole:   # fixed, stratified 10% test, then 10% validation of the rest
        paths, ys = files["train"]
        n, ranks = max(1, len(paths) // 10), _file_ranks(paths, root)
        test = _hold_out(paths, ys, n, ranks)
        validation = test and _hold_out(*test[0], n, ranks)
        if not validation:
            raise ValueError(f"Dataset folder {root!r} has too few images to hold out a "
                             f"validation and a test split ({len(paths)} images in "
                             f"{len(labels)} class folders; a class's only image stays in "
                             "train). Add images, or split them yourself into "
                             "train/<label>/, validation/<label>/ and test/<label>/.")
        files = {"train": validation[0], "validation": validation[1], "test": test[1]}
    # Missing validation: a fixed 10% of train, stratified; missing test: the validation split.
    if "validation" not in files:
        paths, ys = files["train"]
        parts = _hold_out(paths, ys, max(1, len(paths) // 10),
                          _file_ranks(paths, split_dirs["train"]))
        if not parts:
            raise ValueError(f"Dataset folder {root!r} has no validation folder and too few "
                             f"training images to hold some out: {len(paths)} images, one per "
                             "class. Add images, or a validation folder "
                             "(validation/<label>/*.png|jpg).")
        files["train"], files["validation"] = parts
    test_is_validation = "test" not in files
    if test_is_validation:
        files["test"] = files["validation"]
    sample = _spread(list(zip(*files["train"])), _STATS_IMAGES)
    channels, hw = _folder_channels([p for p, _ in sample])

    def decoded(paths, ys, seed=None, to=channels):
        ds = _shuffled_list(tf.data.Dataset.from_tensor_slices(
            (_path_tensor(paths), tf.constant(ys, tf.int32))), len(paths), seed)
        return ds.map(lambda p, y: (_decode(p, to), y),
                      num_parallel_calls=tf.data.AUTOTUNE)

    def get(split, seed=None, to=channels):
        return decoded(*files[split], seed, to)

    def stats_sample():
        return decoded(*(list(v) for v in zip(*sample)))

    def counts(split):
        return _bincount(files[split][1], len(labels), name)

    sizes = {s: len(files[s][0]) for s in SPLITS}
    return _Source(name, "classification", labels, channels, (None, None, channels),
                   tuple(hw), _AUG_PHOTO, get, sizes, stats_sample=stats_sample,
                   counts=counts, shuffles_files=True, test_is_validation=test_is_validation,
                   decodes_to=True)


def _shuffled_list(ds, n, seed):
    """``ds`` (a folder's file list: paths, and labels or mask paths) in a new random order
    each pass when ``seed`` is given, drawn from all ``n`` entries: the lists are sorted
    (by class), and a 4096-entry buffer left the first 1,410 of 8,100 training images of
    three classes without the third."""
    if seed is None:
        return ds
    return ds.shuffle(max(int(n), 1), seed=seed, reshuffle_each_iteration=True)


def _stratified_holdout(ys, n_val, ranks):
    """Indices of ``n_val`` examples (about; sorted) to hold out of labels ``ys``, taken
    from each class in proportion to its size (largest remainders first), never a class's
    last example: the class's examples of the lowest ``ranks`` (one an example, integers
    below 2**64: :func:`_file_ranks`). An example added to a class or taken from it moves
    no other between the kept and the held, but one at the boundary (where its rank passes
    it, or the class's share changes); a random draw of each class moved most of its held
    examples (one image added to a class of 310: 98 changed split)."""
    ys = np.asarray(ys)
    classes, counts = np.unique(ys, return_counts=True)
    quota = n_val * counts / len(ys)
    take = np.minimum(np.floor(quota).astype(int), counts - 1)
    taken = int(take.sum())
    for k in np.argsort(-(quota - np.floor(quota)), kind="stable"):
        if taken >= n_val:
            break
        if take[k] < counts[k] - 1:
            take[k] += 1
            taken += 1
    # Each class's indices by rank, from one stable sort of the labels and ranks: a
    # comparison of every label with each class took K passes over N labels (10,000
    # classes of 10 images: 0.5 s a holdout, 1.9 s for 20,000 of 10).
    members_of = np.split(np.lexsort((np.asarray(ranks, np.uint64), ys)),
                          np.cumsum(counts)[:-1])
    out = []
    for members, n in zip(members_of, take):
        out += members[:n].tolist()
    return sorted(out)


_COLOUR_MASK_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "HSV", "LAB")


def _lossy_webp(f) -> bool:
    """Whether the WebP file ``f`` holds a lossy (``VP8 ``) image, in the simple layout or
    the extended one (a ``VP8X`` header, as metadata, alpha or animation give it, followed
    by chunks; an animation frame holds chunks of its own)."""
    f.seek(12)
    while True:
        head = f.read(8)
        if len(head) < 8:
            return False
        tag, size = head[:4], int.from_bytes(head[4:], "little")
        if tag == b"VP8 ":
            return True
        # an animation frame: 16 bytes of its own, then its chunks; else the next chunk
        f.seek(16 if tag == b"ANMF" else size + (size & 1), 1)


def _mask_values(path) -> np.ndarray:
    """The class indices a segmentation mask file holds, ``[H, W]`` (uint8, or int32 for
    16- and 32-bit files): grey PNG, BMP, GIF or lossless WebP values, a palette image's
    palette indices (as the Pascal VOC masks are stored), 1-bit images' 0 and 1, and colour
    files whose pixels are grey (R = G = B). Colour-coded masks, JPEG files (lossy
    compression changes the values along every edge) and damaged files (a truncated PNG:
    Pillow's ``OSError``, ``image file is truncated``, which named no file) raise a
    ``ValueError`` naming the file.
    """
    from PIL import Image
    try:
        return _mask_file_values(path)
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        if getattr(exc, "errno", None) is not None:   # the system's (no permission): as it is
            raise
        raise ValueError(f"Mask {path!r} could not be decoded ({exc}). Remove or replace the "
                         f"damaged (e.g. truncated) file.") from None


def _mask_file_values(path) -> np.ndarray:
    """:func:`_mask_values` of a file that Pillow may fail to read."""
    from PIL import Image
    with open(path, "rb") as f:
        head = f.read(16)
        lossy_webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP" and _lossy_webp(f)
    if head[:3] == b"\xff\xd8\xff" or lossy_webp:
        kind = "JPEG" if head[:2] == b"\xff\xd8" else "lossy WebP"
        raise ValueError(f"Mask {path!r} is a {kind} file: lossy compression changes class "
                         "indices along every edge. Store masks losslessly (PNG).")
    with Image.open(path) as im:
        mode = im.mode
        if mode == "1":
            return np.asarray(im, dtype="uint8")
        if mode in ("LA", "La", "PA"):
            return np.asarray(im.getchannel(0))
        if mode in _COLOUR_MASK_MODES:
            rgb = np.asarray(im if mode in ("RGB", "RGBA", "RGBX") else im.convert("RGB"))
            rgb = rgb[..., :3]
            if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                colours = np.unique(rgb.reshape(-1, 3), axis=0)
                shown = ", ".join(str(tuple(int(v) for v in c)) for c in colours[:4])
                raise ValueError(
                    f"Mask {path!r} is a colour image with {len(colours)} colours ({shown}"
                    f"{', ...' if len(colours) > 4 else ''}): masks hold class indices "
                    "0..K-1, as grey values or a palette image's indices. Convert "
                    "colour-coded masks to class indices first.")
            return np.ascontiguousarray(rgb[..., 0])
        values = np.asarray(im)
    if values.ndim != 2:
        raise ValueError(f"Mask {path!r} has {values.shape[-1]} channels in mode {mode!r}; "
                         "masks are one channel of class indices (grey or palette images).")
    bad = (values < 0) | (values != np.round(values))
    if bad.any():
        raise ValueError(f"Mask {path!r} holds values that are no class indices (integers "
                         f">= 0), such as {values[bad][0]}.")
    return values.astype("int32") if values.dtype.itemsize > 1 else values


def _ranked(pairs, folder):
    """The indices of a segmentation folder's ``(image, mask)`` ``pairs`` in the order of
    :func:`_file_ranks` (the images' names in ``folder``/images): its holdouts take the
    first, so that an image added or removed moves no other between the splits (but one at
    a boundary its rank passes)."""
    images = [image for image, _ in pairs]
    ranks = _file_ranks(images, os.path.join(folder, "images"))
    return sorted(range(len(pairs)), key=lambda i: (ranks[images[i]], i))


def _segmentation_folder(root, name, seg_roots, ignore=None):
    """A segmentation folder's source; ``ignore``: its masks' ignore label, or ``None``."""
    from PIL import Image

    def by_name(folder, what, other):
        """``{file name without extension: path}`` of the images in ``folder``; images in
        its subfolders, or two with one name, raise."""
        for sub in sorted(os.listdir(folder)):
            sub = os.path.join(folder, sub)
            if _visible(os.path.basename(sub)) and os.path.isdir(sub) and _image_files(
                    sub, recursive=True):
                raise ValueError(f"{sub!r} holds images in a subfolder of "
                                 f"{os.path.basename(folder)!r}: a segmentation folder's "
                                 f"images and masks lie directly in images/ and masks/. Move "
                                 f"them there (with file names of their own) or remove them.")
        found = {}
        for p in _image_files(folder):
            stem = os.path.splitext(os.path.basename(p))[0]
            if stem in found:
                raise ValueError(f"Two {what}s for one {other}: {found[stem]!r} and {p!r} have "
                                 f"one file name. Keep one of them.")
            found[stem] = p
        return found

    def pairs(d):
        images = by_name(os.path.join(d, "images"), "image", "mask").values()
        masks = by_name(os.path.join(d, "masks"), "mask", "image")
        out = []
        for p in images:
            stem = os.path.splitext(os.path.basename(p))[0]
            if stem not in masks:
                raise ValueError(f"Image {p!r} has no mask in {os.path.join(d, 'masks')!r} "
                                 "(masks must have the image's file name, any image extension).")
            out.append((p, masks[stem]))
        if not out:
            raise ValueError(f"No images found in {os.path.join(d, 'images')!r}.")
        stems = {os.path.splitext(os.path.basename(p))[0] for p in images}
        orphans = sorted(m for stem, m in masks.items() if stem not in stems)
        if orphans:   # (were left out without a word)
            shown = ", ".join(repr(os.path.basename(m)) for m in orphans[:3])
            one = len(orphans) == 1
            raise ValueError(f"{len(orphans)} mask{'' if one else 's'} in "
                             f"{os.path.join(d, 'masks')!r} {'has' if one else 'have'} no "
                             f"image in {os.path.join(d, 'images')!r} ({shown}"
                             f"{', ...' if len(orphans) > 3 else ''}): each mask has its "
                             f"image's file name (any image extension). Add the images or "
                             f"remove the masks.")
        return out

    test_is_validation = False
    if "all" in seg_roots:
        every = pairs(seg_roots["all"])
        order = _ranked(every, seg_roots["all"])
        n = len(every)
        if n < 3:   # (an empty train split failed with an IndexError)
            raise ValueError(f"Segmentation folder {root!r} has too few images to hold out a "
                             f"validation and a test split ({n} image{'' if n == 1 else 's'} "
                             f"with masks; the 80/10/10 split needs 3). Add images, or split "
                             f"them yourself into train/images + train/masks and "
                             f"validation/images + validation/masks.")
        n_test, n_val = max(1, n // 10), max(1, n // 10)
        files = {"test": [every[i] for i in sorted(order[:n_test])],
                 "validation": [every[i] for i in sorted(order[n_test:n_test + n_val])],
                 "train": [every[i] for i in sorted(order[n_test + n_val:])]}
    else:
        if "train" not in seg_roots:
            raise ValueError(f"Segmentation folder {root!r} needs root/images + root/masks or "
                             "root/train/images + root/train/masks.")
        files = {s: pairs(d) for s, d in seg_roots.items()}
        if "validation" not in files:   # a fixed 10% of train, as for classification
            every = files["train"]
            if len(every) < 2:
                raise ValueError(f"Segmentation folder {seg_roots['train']!r} has one image "
                                 "and no validation folder: add images, or a validation "
                                 "folder (validation/images + validation/masks).")
            order = _ranked(every, seg_roots["train"])
            n_val = max(1, len(every) // 10)
            files["validation"] = [every[i] for i in sorted(order[:n_val])]
            files["train"] = [every[i] for i in sorted(order[n_val:])]
        test_is_validation = "test" not in files
        files.setdefault("test", files["validation"])
    _check_listed_once(root, {split: ([image for image, _ in pairs_of], [0] * len(pairs_of))
                              for split, pairs_of in files.items()})
    # Every pair is read once here, before any training starts: a mask must be a lossless
    # file of class indices at its image's size. The test split may reuse validation's files.
    pairs_seen = sorted({pair for split_files in files.values() for pair in split_files})
    present = np.zeros(0, "int64")      # how many masks hold each value
    tops = {}                           # each mask's largest class (the ignore label aside)
    for image, mask in pairs_seen:
        values = _mask_values(mask)
        with Image.open(image) as im:
            image_hw = im.size[::-1]
        if tuple(values.shape) != tuple(image_hw):
            raise ValueError(f"Mask {mask!r} is {values.shape[0]}x{values.shape[1]} (height x "
                             f"width) but its image {image!r} is {image_hw[0]}x{image_hw[1]}: "
                             "a mask must have its image's size, pixel for pixel.")
        flat = values.ravel()
        found = (np.flatnonzero(np.bincount(flat)) if flat.max(initial=0) < 1 << 16
                 else np.unique(flat))
        kept = found if ignore is None else found[found != ignore]
        tops[mask] = int(kept[-1]) if len(kept) else 0
        if len(present) <= found[-1]:
            present = np.pad(present, (0, int(found[-1]) + 1 - len(present)))
        present[found] += 1
    values = np.flatnonzero(present)
    classes = values if ignore is None else values[values != ignore]   # all but the ignore label
    labels_file = os.path.join(root, "labels.txt")
    labels = None
    if os.path.isfile(labels_file):
        with open(labels_file) as f:
            labels = [line.strip() for line in f if line.strip()]
        if len(labels) < 2:
            raise ValueError(f"{labels_file!r} lists {len(labels)} label(s); a segmentation "
                             "dataset needs at least 2 classes (e.g. background and object).")
    # Binary masks stored as 0 and 255 (black and white) are background and object.
    binary = classes.tolist() == [0, 255] and (labels is None or len(labels) <= 255)
    if binary:
        tops = {m: min(top, 1) for m, top in tops.items()}
        classes = np.minimum(classes, 1)
    if labels is not None:
        if ignore is not None and ignore < len(labels):
            raise ValueError(f"ignore_label={ignore} is one of the {len(labels)} classes "
                             f"{labels_file!r} lists (0..{len(labels) - 1}: "
                             f"{labels[ignore]!r}); the ignore label must be a mask value "
                             f"outside them, such as 255.")
        for m, top in tops.items():
            if top >= len(labels):
                beyond = classes[classes >= len(labels)]
                hint = _ignore_hint(beyond[0]) if ignore is None and len(beyond) == 1 else ""
                raise ValueError(f"Mask {m!r} holds class {top}, but {labels_file!r} lists "
                                 f"{len(labels)} labels, so mask values must be in "
                                 f"0..{len(labels) - 1}.{hint}")
    else:
        top = int(classes.max(initial=0))
        if ignore is not None and ignore <= top:
            shown = ", ".join(str(v) for v in values[:12]) + (", ..." if len(values) > 12
                                                               else "")
            raise ValueError(f"ignore_label={ignore} lies among the classes of the masks in "
                             f"{root!r}, which hold the values {shown}: the classes must be "
                             f"0..K-1 and the ignore label a value above them, such as 255.")
        missing = sorted(set(range(top + 1)) - set(classes.tolist()))
        if missing:
            shown = ", ".join(str(v) for v in classes[:12]) + (", ..." if len(classes) > 12
                                                                else "")
            besides = "" if ignore is None else f" besides the ignore label {ignore}"
            below = classes[:-1].tolist()
            hint = (_ignore_hint(top) if ignore is None and len(below) > 1
                    and below == list(range(len(below))) else "")
            raise ValueError(
                f"The masks in {root!r} hold the values {shown} ({len(classes)} in all"
                f"{besides}), not every class 0..{top}: without labels.txt that would make "
                f"{top + 1} classes, {len(missing)} of them in no mask. Store masks as class "
                f"indices 0..K-1 (one value per class; 0 and 255 for one object class also "
                f"work), or list the {top + 1} class names in labels.txt, one a line.{hint}")
        labels = [str(i) for i in range(top + 1)]
        labels = labels if len(labels) > 1 else ["0", "1"]
    image_paths = [p for p, _ in files["train"]]
    channels, hw = _folder_channels(_spread(image_paths, _STATS_IMAGES))

    def read_mask(path):
        out = _mask_values(os.fsdecode(path))
        if binary:
            out = np.minimum(out, 1) if ignore is None else np.where(out == 255, 1, out)
        return out.astype("int32")[..., None]

    def decode_mask(path):
        mask = tf.numpy_function(read_mask, [path], tf.int32, stateful=False)
        mask.set_shape([None, None, 1])
        return mask

    def get(split, seed=None, to=channels):
        ims = [p for p, _ in files[split]]
        ms = [m for _, m in files[split]]
        ds = _shuffled_list(tf.data.Dataset.from_tensor_slices((_path_tensor(ims),
                                                                _path_tensor(ms))),
                            len(ims), seed)
        return ds.map(lambda p, m: (_decode(p, to), decode_mask(m)),
                      num_parallel_calls=tf.data.AUTOTUNE)

    def stats_sample():   # images only, spread over the training split
        paths = _path_tensor(_spread(image_paths, _STATS_IMAGES))
        return tf.data.Dataset.from_tensor_slices(paths).map(
            lambda p: (_decode(p, channels), 0), num_parallel_calls=tf.data.AUTOTUNE)

    sizes = {s: len(files[s]) for s in SPLITS}
    return _Source(name, "segmentation", labels, channels, (None, None, channels), tuple(hw),
                   _AUG_SHAPES, get, sizes, stats_sample=stats_sample, ignore_label=ignore,
                   shuffles_files=True, test_is_validation=test_is_validation,
                   decodes_to=True)


def _ignore_hint(value) -> str:
    """The end of the message refusing masks whose largest value ``value`` lies beyond
    their classes: how to declare it the ignore label."""
    return (f" If {value} marks pixels to leave out of training and evaluation (as Pascal "
            f"VOC's 255 marks object borders), pass ignore_label={value} (zoo train, "
            f"zoo tune or zoo evaluate --ignore-label {value}).")


_EMBEDDED = {"digits": _digits_source, "shapes": _shapes_source}


def _source(name, data_dir=None, download=False, ignore_label=None) -> _Source:
    if not isinstance(name, (str, os.PathLike)):   # (before data_dir's check, as it was)
        dataset_source(name)
    if data_dir is not None and (not isinstance(data_dir, (str, os.PathLike))
                                 or not os.fspath(data_dir)):
        raise ValueError(f"data_dir must be None (tensorflow-datasets' default) or the path "
                         f"of a tensorflow-datasets data directory. "
                         f"Received: data_dir={_short(data_dir)}")
    check_bool("zoo.data", download=download)
    kind, where = dataset_source(name)
    if kind == "embedded":
        return _with_ignore_label(_EMBEDDED[where](data_dir, download), ignore_label)
    if kind == "tfds":
        return _with_ignore_label(_tfds_source(where, data_dir, download), ignore_label)
    return _with_ignore_label(_folder_source(where, ignore_label=ignore_label), ignore_label)


def _decoding_to(src: _Source, channels) -> dict:
    """The keyword arguments of ``src.get`` for :func:`load_raw`'s images of ``channels``
    channels, the input channels of the export it feeds: a folder's files decoded straight
    to them, as :func:`zoo.serving.decode_image` decodes a file for that export in ``zoo
    predict`` and ``zoo serve`` (a colour file's grey is its decoder's); other sources'
    images as stored, converted by :func:`convert_channels`.

    The training pipelines and their statistics do not use it: they decode a folder's files
    to the dataset's own channels (``src.channels``), which an export of the model takes
    (its ``raw_shape``), and convert them to the model's channels with
    :func:`resize_and_convert`, as the export's graph does. (Decoding them straight to the
    model's grey trained on libjpeg's luma, up to 4 levels from the float luma of the colour
    decode that the export's graph computes for ``zoo evaluate``, ``zoo predict`` and ``zoo
    serve``.)"""
    return {"to": channels} if src.decodes_to and channels != src.channels else {}


def _with_ignore_label(src: _Source, ignore_label) -> _Source:
    """``src`` with its masks' ignore label: refused for classification and inside the
    classes, except that it may name ``src.ignorable_class``, which then is no class."""
    if ignore_label is None:
        return src
    if src.task != "segmentation":
        raise ValueError(f"ignore_label is for segmentation datasets (a mask value to leave "
                         f"out); {src.name!r} is a {src.task} dataset. Received: "
                         f"ignore_label={ignore_label}")
    if src.ignore_label == ignore_label:     # a folder's, checked against its masks
        return src
    k = len(src.labels)
    if ignore_label < k:
        if ignore_label != src.ignorable_class:
            also = ("" if src.ignorable_class is None else
                    f" (or {src.ignorable_class} to leave out its "
                    f"{src.labels[src.ignorable_class]!r} class)")
            raise ValueError(f"ignore_label={ignore_label} is one of the {k} classes of "
                             f"dataset {src.name!r} (0..{k - 1}: "
                             f"{', '.join(src.labels)}); the ignore label must be a mask value "
                             f"outside them, such as 255{also}.")
        src = dataclasses.replace(src, labels=[v for i, v in enumerate(src.labels)
                                               if i != ignore_label])
    return dataclasses.replace(src, ignore_label=ignore_label)


def _check_size(image_size):
    if image_size is None:
        return None
    received = image_size
    if is_integer(image_size):
        image_size = (int(image_size), int(image_size))
    if isinstance(image_size, (str, bytes)):   # "32" would read as (3, 2)
        image_size = ()
    try:   # whole numbers only: int() would cut 32.5 to 32 unseen
        size = tuple(int(v) for v in image_size
                     if not isinstance(v, (bool, str, bytes)) and float(v) == int(v))
        if len(size) != len(tuple(image_size)):
            size = ()
    except (TypeError, ValueError, OverflowError):
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be (height, width) with positive integers. "
                         f"Received: image_size={received!r}")
    return size


# --------------------------------------------------------------------------------------
# Pipelines.

_STATS_IMAGES = 512


def _stats(src: _Source, input_shape, max_images=None):
    """Per-channel mean/std of raw pixels at the model input (resized, converted), measured
    on up to ``max_images`` training images (a folder's spread over all its classes)."""
    c = input_shape[2]
    if src.stats is not None:
        mean, std = (np.asarray(v, "float64") for v in src.stats)
        if len(mean) != c:
            if c == 3:  # grey -> RGB repeats the channel
                mean, std = np.repeat(mean, 3), np.repeat(std, 3)
            else:       # RGB -> grey: luma weights
                w = np.array([0.2989, 0.5870, 0.1140])
                mean, std = np.array([w @ mean]), np.array([w @ std])
        return [float(v) for v in mean], [float(v) for v in std]
    ds = src.stats_sample() if src.stats_sample is not None else src.get("train")
    ds = ds.take(max_images or _STATS_IMAGES).map(lambda x, y: resize_and_convert(x, input_shape))
    total = np.zeros(c)
    total_sq = np.zeros(c)
    count = 0
    from zoo.startlog import command_line_filter
    # (TensorFlow's once-per-process note of uint8 ops falling back from oneDNN comes here,
    # where a colour folder is measured in grey)
    with tf_errors_as(lambda exc: _decode_failure(exc, src.name)), command_line_filter():
        for img in ds.batch(64).as_numpy_iterator():
            pix = img.reshape(-1, c).astype("float64")
            total += pix.sum(0)
            total_sq += (pix ** 2).sum(0)
            count += len(pix)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean ** 2, 0.0))
    std = np.where(std < 1e-3, 1.0, std)
    return [float(v) for v in mean], [float(v) for v in std]


def _channels_of(src: _Source, channels) -> int:
    """``channels`` (1 or 3) checked, or ``src``'s own where it is ``None``."""
    if channels is None:
        return src.channels
    if isinstance(channels, (bool, np.bool_)) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3. Received: channels={channels!r}")
    return int(channels)


def _info(src: _Source, image_size, channels) -> DatasetInfo:
    size = _check_size(image_size) or tuple(src.default_size)
    input_shape = (size[0], size[1], _channels_of(src, channels))
    mean, std = _stats(src, input_shape)
    return DatasetInfo(name=src.name, task=src.task, num_classes=len(src.labels),
                       labels=list(src.labels), input_shape=input_shape, mean=mean, std=std,
                       splits=dict(src.sizes), raw_shape=tuple(src.raw_shape),
                       ignore_label=src.ignore_label, test_is_validation=src.test_is_validation)


def autotune_by_default() -> bool:
    """Whether :func:`load` and :func:`load_splits` let tf.data autotune their pipelines
    when ``autotune`` is not given: only where the model's compute is not on TensorFlow's
    CPU thread pool (a GPU is visible, or another Keras backend runs the model).

    On a CPU, while an autotuned iterator is alive, Keras' ``fit``, ``evaluate`` and
    ``predict`` ran some epochs or calls with the model's two compute threads taking turns
    instead of working together, at 55-60% of their speed, in a random order; with
    autotuning off, never (benchmarks/README.md, item 29). Without it a
    ``num_parallel_calls=AUTOTUNE`` map runs min(16, cores) calls at once and a prefetch
    buffer grows as it runs empty, which read the pipelines here as fast.
    """
    from zoo.layers import _tensorflow_on_cpu
    return not _tensorflow_on_cpu()


def without_autotune(dataset):
    """``dataset`` with tf.data's autotuning off (see :func:`autotune_by_default`), for
    data of one's own fed to Keras' ``fit``, ``evaluate`` or ``predict`` on a CPU.

    Example:
        >>> ds = tf.data.Dataset.from_tensor_slices(np.zeros((4, 2), "float32")).batch(2)
        >>> without_autotune(ds).options().autotune.enabled
        False
    """
    if not isinstance(dataset, tf.data.Dataset):   # (was an AttributeError: with_options)
        raise ValueError(f"without_autotune takes a tf.data.Dataset. "
                         f"Received: {type(dataset).__name__}")
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def with_default_autotune(dataset):
    """``dataset`` with tf.data's autotuning as :func:`load` sets it by default: off where
    :func:`autotune_by_default` says so, else ``dataset`` itself (for pipelines built from
    arrays, as ``zoo tune``'s cross-validation folds are)."""
    return dataset if autotune_by_default() else without_autotune(dataset)


def _check_autotune(autotune):
    if autotune is None:
        return autotune_by_default()
    if not isinstance(autotune, (bool, np.bool_)):
        raise ValueError(f"autotune must be True, False or None (the default: "
                         f"{autotune_by_default()} here). Received: autotune={autotune!r}")
    return bool(autotune)


def _pipeline(src: _Source, info: DatasetInfo, split, *, batch_size, augment, seed, shuffle,
              autotune=True):
    shape = info.input_shape
    seg = info.task == "segmentation"

    def convert(x, y):
        x = resize_and_convert(x, shape)
        if seg:
            y = resize_masks(y, shape[:2])[..., 0]
        return x, tf.cast(y, tf.int32)

    if src.small:
        ds = src.get(split).map(convert, num_parallel_calls=tf.data.AUTOTUNE).cache()
        if shuffle:
            n = src.sizes.get(split, 2048)
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    else:
        if shuffle and src.shuffles_files:
            ds = src.get(split, seed)
        elif shuffle:
            ds = src.get(split).shuffle(4096, seed=seed, reshuffle_each_iteration=True)
        else:
            ds = src.get(split)
        ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size)
    if augment:
        aug = augmenter(augment, raw_range=info.raw_range, seed=seed,
                        ignore_label=info.ignore_label)
        # One batch at a time: the random layers draw from a seeded generator whose state
        # parallel calls would read in the order their threads ran, so the same seed gave
        # other transformations to 1,426 of 2,514 digits of two epochs in a new process.
        # As fast on the 2-core CPU (a batch's ops use every core): 32 images at 160x160,
        # 251 against 249 ms.
        if seg:
            ds = ds.map(lambda x, y: aug(x, y))
        else:
            ds = ds.map(lambda x, y: (aug(x), y))
    ds = ds.map(lambda x, y: (normalize(x, info), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds if autotune else without_autotune(ds)


def _augment_settings(src, augment):
    if augment is None or augment is False:
        return {}
    if augment is True:
        return dict(src.augmentation)
    if isinstance(augment, dict):
        return check_augment_settings({**src.augmentation, **augment})
    raise ValueError(f"augment must be True, False or a dict of settings. Received: {augment!r}")


def load(name, split="train", *, image_size=None, channels=None, batch_size=32, augment=False,
         data_dir=None, seed=0, shuffle=None, download=False, autotune=None,
         ignore_label=None):
    """Load one split of a dataset as a batched, prefetched ``tf.data.Dataset``.

    Args:
        name: ``"digits"``, ``"shapes"``, a tensorflow-datasets name (``"mnist"``,
            ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``, ``"malaria"``,
            ``"oxford_iiit_pet"``, ``"imagenette"``), ``"folder:/path"`` or a path.
        split: ``"train"``, ``"validation"`` (``"val"``) or ``"test"``.
        image_size: ``(H, W)`` of the model input; default: the dataset's own (digits 32x32,
            shapes 64x64, mnist 28x28, cifar 32x32, malaria 64x64, pets 128x128,
            imagenette 160x160, folders the first image's size).
        channels: 1 or 3; default: the dataset's. Grey <-> RGB is converted.
        batch_size: batch size.
        augment: ``True`` for the dataset's default augmentation, a dict of settings
            (see :func:`augmenter`) or ``False``. Only ever applied to the train split.
        data_dir: tensorflow-datasets data directory.
        seed: seed of shuffling and augmentation.
        shuffle: shuffle the examples; default: only the train split.
        download: let tensorflow-datasets download missing data.
        autotune: let tf.data autotune the pipeline (``True``/``False``); default
            (``None``): :func:`autotune_by_default`, off on a CPU-only machine.
        ignore_label: segmentation: the mask value of pixels that count in no loss and no
            metric (Pascal VOC's 255 on object borders and "difficult" regions), an integer
            from 0 to 65535 outside the classes ``0..K-1``: a folder's classes are its other
            mask values; for ``oxford_iiit_pet``, 2 leaves out the trimap's border, which
            leaves the classes pet and background. ``None`` (default): every value is a
            class. Recorded in ``info.ignore_label``; augmentation keeps it and fills the
            pixels it adds (``fill_mode="constant"``) with it.

    Returns:
        ``(dataset, info)``: the pipeline of ``(images, labels)`` (float32 normalised
        ``[N, H, W, C]``, int32 ``[N]`` or masks ``[N, H, W]``) and its :class:`DatasetInfo`.

    Raises:
        ValueError: unknown dataset or split, missing folder, data not available offline,
            bad sizes, an ``augment`` or ``shuffle`` of another kind (for any split), an
            ignore label that is no integer in 0..65535, one of the classes or given for a
            classification dataset.

    Example:
        >>> ds, info = load("digits", "train", image_size=(32, 32), augment=True)
        >>> info.num_classes, info.input_shape
        (10, (32, 32, 1))
    """
    split = split_name(split)
    batch_size = check_count("batch_size", batch_size)
    seed = check_seed(seed)
    autotune = _check_autotune(autotune)
    ignore_label = check_ignore_label(ignore_label)
    if shuffle is not None and not isinstance(shuffle, (bool, np.bool_)):   # ("no" shuffled)
        raise ValueError(f"shuffle must be None (the train split only), True or False. "
                         f"Received: shuffle={_short(shuffle)}")
    src = _source(name, data_dir, download, ignore_label)
    settings = _augment_settings(src, augment)   # checked for every split, used for train
    settings = settings if split == "train" else {}
    info = _info(src, image_size, channels)
    info.augmentation = settings
    ds = _pipeline(src, info, split, batch_size=batch_size, augment=settings, seed=seed,
                   shuffle=(split == "train") if shuffle is None else bool(shuffle),
                   autotune=autotune)
    return ds, info


def to_arrays(dataset) -> tuple:
    """All ``(images, targets)`` of a batched pipeline, e.g. from :func:`load`, as two
    NumPy arrays (read into memory)."""
    xs, ys = [], []
    for x, y in dataset:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


@dataclasses.dataclass
class RawSplit:
    """One split of a dataset as stored (:func:`load_raw`)."""
    dataset: object      # unbatched tf.data.Dataset of (image, label or mask)
    name: str
    split: str
    task: str
    labels: list
    size: Optional[int]  # examples in the split (None: unknown until read)
    raw_shape: tuple     # (H, W, C) of the images, None where it varies
    ignore_label: Optional[int] = None
    test_is_validation: bool = False   # the dataset's test split is its validation split


def load_raw(name, split="test", *, channels=None, data_dir=None, download=False,
             ignore_label=None) -> RawSplit:
    """One split's examples as they are stored, at their own size and in their raw range:
    what an exported model takes (it resizes and normalises them itself), for evaluating
    it (:func:`zoo.evaluation.evaluate`).

    Args:
        name, data_dir, download, ignore_label: as for :func:`load`.
        split: ``"train"``, ``"validation"`` (``"val"``), ``"test"``, or ``"all"``: every
            example once (train, validation, then test where it is not the validation
            split: a folder of new images, whatever its layout).
        channels: 1 or 3 to convert the images to: a folder's files are decoded to that
            many channels as :func:`zoo.serving.decode_image` decodes a file (``zoo
            predict``, ``zoo serve``), other datasets' images converted grey <-> RGB as
            :func:`load` converts them; ``None``: the dataset's own.

    Returns:
        A :class:`RawSplit`: ``dataset``, unbatched, in a fixed order, of ``(image,
        target)``: float32 ``[H, W, C]`` raw pixels and an int32 label, or an int32 mask
        ``[H, W]`` of class indices (and ``ignore_label``) at the image's size; with the
        dataset's ``task``, ``labels``, ``size`` (``None`` where tensorflow-datasets does
        not record it), ``raw_shape`` and ``test_is_validation``.

    Raises:
        ValueError: as :func:`load`.

    Example:
        >>> raw = load_raw("digits", "test")
        >>> raw.size, raw.raw_shape, raw.dataset.element_spec[0].shape
        (360, (8, 8, 1), TensorShape([8, 8, 1]))
    """
    split = split_name(split, every=True)
    every = split == "all"
    ignore_label = check_ignore_label(ignore_label)
    src = _source(name, data_dir, download, ignore_label)
    c = _channels_of(src, channels)
    seg = src.task == "segmentation"
    parts = [s for s in SPLITS if not (s == "test" and src.test_is_validation)] if every \
        else [split]
    to = _decoding_to(src, c)
    ds = src.get(parts[0], **to)
    for part in parts[1:]:
        ds = ds.concatenate(src.get(part, **to))
    sizes = [src.sizes.get(part) for part in parts]

    def convert(x, y):
        y = tf.cast(y, tf.int32)
        return convert_channels(x, c), (y[..., 0] if seg else y)

    raw_shape = tuple(src.raw_shape[:2]) + (c,)
    return RawSplit(ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE), src.name,
                    "all" if every else split, src.task, list(src.labels),
                    None if None in sizes else sum(sizes), raw_shape, src.ignore_label,
                    src.test_is_validation)


def load_splits(name, *, image_size=None, channels=None, batch_size=32, augment=False,
                data_dir=None, seed=0, download=False, autotune=None,
                ignore_label=None) -> Splits:
    """Load the train, validation and test pipelines of a dataset.

    The arguments are :func:`load`'s but ``split`` and ``shuffle``: only the train pipeline
    is shuffled and augmented.

    Returns:
        A :class:`Splits` with ``train``, ``validation``, ``test`` and ``info``.

    Raises:
        ValueError: as :func:`load` (an unknown dataset, a missing folder or tfds data, bad
            ``image_size``, ``batch_size``, ``augment``, ``autotune`` or ``ignore_label``).

    Example:
        >>> s = load_splits("shapes", image_size=(64, 64), augment=True)
        >>> s.info.labels
        ['background', 'circle', 'square', 'triangle']
    """
    batch_size = check_count("batch_size", batch_size)
    seed = check_seed(seed)
    autotune = _check_autotune(autotune)
    ignore_label = check_ignore_label(ignore_label)
    src = _source(name, data_dir, download, ignore_label)
    settings = _augment_settings(src, augment)
    info = _info(src, image_size, channels)
    info.augmentation = settings
    pipes = {split: _pipeline(src, info, split, batch_size=batch_size,
                              augment=settings if split == "train" else {}, seed=seed,
                              shuffle=split == "train", autotune=autotune)
             for split in SPLITS}
    count = None
    if src.task == "classification" and src.counts is not None:
        def count():
            return src.counts("train")
    return Splits(pipes["train"], pipes["validation"], pipes["test"], info,
                  count_train_labels=count, batch_size=batch_size)


def _bincount(labels, num_classes, name) -> np.ndarray:
    """Examples per class of ``labels`` (int64, ``num_classes`` long); a label outside
    ``0..num_classes-1`` raises."""
    labels = np.asarray(labels, "int64").reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(f"labels outside num_classes: dataset {name!r} has {num_classes} "
                         f"classes, so labels must be in 0..{num_classes - 1}; found {bad}.")
    return np.bincount(labels, minlength=num_classes).astype("int64")


def train_class_counts(splits: Splits) -> np.ndarray:
    """Examples per class in the train split of a classification dataset.

    Taken from what the dataset knows where it can (``splits.count_train_labels``: a
    folder's file listing, digits' fixed arrays, a pass over the labels of the
    tensorflow-datasets records that decodes no image); for :class:`Splits` put together
    otherwise, counted in one pass over ``splits.train``.

    Args:
        splits: a :class:`Splits` (e.g. from :func:`load_splits`).

    Returns:
        int64 array of ``splits.info.num_classes`` counts, in the order of
        ``splits.info.labels``.

    Raises:
        ValueError: ``splits`` is no :class:`Splits`, a segmentation dataset, or a label
            outside ``0..num_classes-1``.

    Example:
        >>> train_class_counts(load_splits("digits")).tolist()
        [124, 128, 124, 128, 127, 127, 127, 125, 121, 126]
    """
    if not isinstance(splits, Splits):   # (was "'str' object has no attribute 'info'")
        raise ValueError(f"train_class_counts takes a zoo.data.Splits (load_splits(...)). "
                         f"Received: {type(splits).__name__}")
    info = splits.info
    if info.task != "classification":
        raise ValueError(f"Examples per class are counted for classification datasets; "
                         f"{info.name!r} is a {info.task} dataset.")
    if splits.count_train_labels is not None:
        counts = np.asarray(splits.count_train_labels(), "int64")
    else:
        counts = np.zeros(info.num_classes, "int64")
        for y in splits.train.map(lambda x, y: y).as_numpy_iterator():
            counts += _bincount(y, info.num_classes, info.name)
    return counts
