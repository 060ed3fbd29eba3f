"""Training: compile defaults by task, callbacks, ``fit`` into a run directory, ``zoo train``.

``fit(model, "digits", run_dir="runs/lenet5")`` trains with the practice the lecture notes
ask for: normalised inputs, augmentation on the training split only, a validation split
watched by early stopping (best weights restored), the best model checkpointed, a run that
can be killed and started again (``BackupAndRestore``), learning curves saved as a plot, and
test metrics measured once at the end. The run directory holds::

    model.keras          the best model (by validation loss)
    info.json            {"model", "task", "dataset": DatasetInfo.to_dict(), "metrics", ...}
    metrics.json         test metrics
    history.csv          one row per epoch (CSVLogger), with the epoch's learning rate
    learning_curves.png  train vs validation loss and metric
    logs/                TensorBoard logs
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import numbers
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zoo import data as zdata
from zoo.common import (ADAMW_WEIGHT_DECAY, AUX_LOSS_WEIGHT, LR_SCHEDULES, MIXED_PRECISION,
                         OPTIMIZERS, PLATEAU_FACTOR, PLATEAU_LOWEST, PLATEAU_PATIENCE, TASKS,
                         as_list, atomic_write, atomic_write_text, check_bool, check_callbacks,
                         check_ignore_label, check_jit_compile, check_run_dir, check_seed,
                         check_verbose, is_digits, is_integer,
                         progress_verbose, received_text, remove_path,
                         require_tensorflow_backend, save_weights_file)
from zoo.train_cli import (GENERIC_DEFAULTS, MODEL_DEFAULTS, TRAIN_DEFAULTS,  # noqa: F401
                           check_counts, check_export_options, check_monitor_option,
                           configure_train, default_dataset, export_base_dir, train_defaults,
                           with_aux_logits)

__all__ = ["compile_model", "fit", "hold_run_dir", "resolve_jit_compile",
           "resolve_class_weight", "resolve_mixed_precision", "with_mixed_precision",
           "cosine_schedule", "PlateauSchedule", "set_batch_norm_momentum",
           "SparseDiceLoss", "CrossEntropyDiceLoss", "SparsePixelAccuracy", "build_for_dataset",
           "pretrained_classifier",
           "configure_train", "TRAIN_DEFAULTS", "train_defaults"]

_PACKAGE = "zoo"


# --------------------------------------------------------------------------------------
# Losses.

def _probabilities(y_pred, from_logits):
    y_pred = ops.cast(y_pred, "float32")
    return ops.softmax(y_pred, axis=-1) if from_logits else y_pred


def _check_loss_args(owner, *, ignore_label, from_logits=False, smooth=0.0, dice_weight=0.0):
    """The loss and metric arguments as ``(from_logits, smooth, dice_weight, ignore_label)``:
    ``from_logits`` True or False, ``smooth`` and ``dice_weight`` finite numbers >= 0,
    ``ignore_label`` None or an integer from 0 to 65535; else a ``ValueError`` naming the
    argument and the value (a NaN smoothing or a fractional ignore label computed NaN or
    silently nothing)."""
    from zoo.common import check_number
    check_bool(owner, from_logits=from_logits)
    smooth = check_number(owner, "smooth", smooth, minimum=0)
    dice_weight = check_number(owner, "dice_weight", dice_weight, minimum=0)
    try:
        ignore_label = check_ignore_label(ignore_label)
    except ValueError as exc:
        raise ValueError(f"{owner}: {exc}") from None
    return from_logits, smooth, dice_weight, ignore_label


def _sparse_masks(y_true, rank, ignore_label):
    """Integer masks ``y_true`` of ``rank`` dimensions (a trailing channel of 1 dropped) and
    the float32 weight of each pixel: 0 where the mask holds ``ignore_label``, else 1. The
    ignored pixels' values become 0, a class, so that every op downstream sees a valid
    index; their weight leaves them out. ``ignore_label=None``: the masks and ``None``."""
    y_true = ops.cast(y_true, "int32")
    if len(y_true.shape) == rank + 1:
        y_true = ops.squeeze(y_true, -1)
    if ignore_label is None:
        return y_true, None
    valid = ops.not_equal(y_true, int(ignore_label))
    return ops.where(valid, y_true, 0), ops.cast(valid, "float32")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseDiceLoss(keras.losses.Loss):
    """Soft Dice loss for integer masks and per-class probabilities (or logits).

    For each class ``k`` and example, ``dice_k = (2 * sum(p_k * t_k) + smooth) /
    (sum(p_k) + sum(t_k) + smooth)`` over the pixels, with ``t`` the one-hot mask; the loss
    is ``1 - mean_k dice_k`` per example (Milletari et al. 2016, V-Net). Pixels whose mask
    holds ``ignore_label`` are in none of the sums.

    Args:
        from_logits: ``y_pred`` are logits (softmax is applied first).
        smooth: added to numerator and denominator (an absent class scores 1).
        ignore_label: the mask value of pixels to leave out (``None``: none).
        reduction, name, dtype: as for every ``keras.losses.Loss``.

    Raises:
        ValueError: ``from_logits`` not True or False, ``smooth`` no finite number >= 0,
            ``ignore_label`` not None or an integer from 0 to 65535.

    Example:
        >>> loss = SparseDiceLoss()
        >>> float(loss(np.zeros((1, 4, 4)), np.eye(3)[np.zeros((1, 4, 4), int)]))  # perfect
        0.0
    """

    def __init__(self, from_logits=False, smooth=1.0, ignore_label=None,
                 reduction="sum_over_batch_size", name="sparse_dice", dtype=None):
        checked = _check_loss_args("SparseDiceLoss", from_logits=from_logits, smooth=smooth,
                                   ignore_label=ignore_label)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits, self.smooth, _, self.ignore_label = checked

    def call(self, y_true, y_pred):
        probs = _probabilities(y_pred, self.from_logits)
        k = ops.shape(probs)[-1]
        y_true, weight = _sparse_masks(y_true, len(probs.shape) - 1, self.ignore_label)
        onehot = ops.one_hot(y_true, k, dtype="float32")
        if weight is not None:
            onehot = onehot * weight[..., None]
            probs = probs * weight[..., None]
        axes = tuple(range(1, len(probs.shape) - 1))
        inter = ops.sum(onehot * probs, axis=axes)
        total = ops.sum(onehot, axis=axes) + ops.sum(probs, axis=axes)
        dice = (2.0 * inter + self.smooth) / (total + self.smooth)
        return 1.0 - ops.mean(dice, axis=-1)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "smooth": self.smooth,
                "ignore_label": self.ignore_label}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CrossEntropyDiceLoss(keras.losses.Loss):
    """Pixel-wise sparse categorical cross-entropy plus ``dice_weight`` times the soft Dice
    loss: the usual segmentation loss (cross-entropy for per-pixel calibration, Dice against
    class imbalance).

    Per example, the cross-entropy is the mean over the pixels whose mask does not hold
    ``ignore_label`` (0 for an example without any), and the Dice term leaves those pixels
    out of its sums; the batch's loss is the mean over its examples.

    Args:
        from_logits: ``y_pred`` are logits.
        dice_weight: weight of the Dice term.
        smooth: Dice smoothing.
        ignore_label: the mask value of pixels to leave out (``None``: none), as Pascal
            VOC's 255.
        reduction, name, dtype: as for every ``keras.losses.Loss``.

    Raises:
        ValueError: ``from_logits`` not True or False, ``dice_weight`` or ``smooth`` no
            finite number >= 0, ``ignore_label`` not None or an integer from 0 to 65535.
    """

    def __init__(self, from_logits=False, dice_weight=1.0, smooth=1.0, ignore_label=None,
                 reduction="sum_over_batch_size", name="ce_dice", dtype=None):
        checked = _check_loss_args("CrossEntropyDiceLoss", from_logits=from_logits,
                                   smooth=smooth, dice_weight=dice_weight,
                                   ignore_label=ignore_label)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits, self.smooth, self.dice_weight, self.ignore_label = checked
        self._dice = SparseDiceLoss(from_logits=from_logits, smooth=smooth,
                                    ignore_label=ignore_label, reduction=None)

    def call(self, y_true, y_pred):
        labels, weight = _sparse_masks(y_true, len(y_pred.shape) - 1, self.ignore_label)
        ce = keras.losses.sparse_categorical_crossentropy(
            labels, ops.cast(y_pred, "float32"), from_logits=self.from_logits)
        axes = tuple(range(1, len(ce.shape)))
        if weight is None:
            ce = ops.mean(ce, axis=axes)
        else:
            ce = ops.divide_no_nan(ops.sum(ce * weight, axis=axes), ops.sum(weight, axis=axes))
        return ce + self.dice_weight * self._dice.call(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "dice_weight": self.dice_weight, "smooth": self.smooth,
                "ignore_label": self.ignore_label}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparsePixelAccuracy(keras.metrics.Metric):
    """Pixel accuracy of integer masks: the share of pixels whose arg-max prediction is
    their mask's class, over every pixel seen since the last reset, leaving out the pixels
    whose mask holds ``ignore_label``. Keras' ``SparseCategoricalAccuracy`` has no such
    option (it counts an ignored pixel as an error: no class is ever predicted as it).

    Args:
        ignore_label: the mask value of pixels to leave out (``None``: count every pixel,
            as ``SparseCategoricalAccuracy`` does).
        name, dtype: as for every ``keras.metrics.Metric``.

    Raises:
        ValueError: ``ignore_label`` not None or an integer from 0 to 65535.

    Example:
        >>> m = SparsePixelAccuracy(ignore_label=255)
        >>> m.update_state([[0, 1, 255]], np.eye(3)[[[0, 0, 1]]])
        >>> float(m.result())   # 1 of the 2 pixels that count
        0.5
    """

    def __init__(self, ignore_label=None, name="accuracy", dtype=None):
        ignore_label = _check_loss_args("SparsePixelAccuracy", ignore_label=ignore_label)[3]
        super().__init__(name=name, dtype=dtype)
        self.ignore_label = ignore_label
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        labels, weight = _sparse_masks(y_true, len(y_pred.shape) - 1, self.ignore_label)
        if weight is None:
            weight = ops.ones(ops.shape(labels), "float32")
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            while len(sample_weight.shape) < len(labels.shape):
                sample_weight = ops.expand_dims(sample_weight, -1)
            weight = weight * sample_weight
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), labels),
                       "float32")
        self.correct.assign_add(ops.cast(ops.sum(hit * weight), self.dtype))
        self.total.assign_add(ops.cast(ops.sum(weight), self.dtype))

    def result(self):
        return ops.divide_no_nan(self.correct, self.total)

    def get_config(self):
        return {**super().get_config(), "ignore_label": self.ignore_label}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseSmoothedCrossEntropy(keras.losses.Loss):
    """Categorical cross-entropy with label smoothing for integer labels (Keras' sparse
    cross-entropy has no ``label_smoothing``)."""

    def __init__(self, label_smoothing=0.1, from_logits=False,
                 reduction="sum_over_batch_size", name="smoothed_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.reshape(ops.cast(y_true, "int32"), ops.shape(y_pred)[:-1])
        onehot = ops.one_hot(y_true, ops.shape(y_pred)[-1], dtype="float32")
        return keras.losses.categorical_crossentropy(
            onehot, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing,
                "from_logits": self.from_logits}


# --------------------------------------------------------------------------------------
# Compile.

def _outputs_probabilities(model) -> bool:
    """True if the model's output layer ends in softmax/sigmoid (else logits): its
    activation, a ``keras.layers.Softmax``, or a nested model's output layer, read as the
    export reads it (``zoo.export._output_kind``): a last layer of unknown activation (a
    ``Lambda``, a dropout after the head) by its outputs on a zero image and random ones
    where the input size is fixed (before, it was read as logits and a softmax it ends in
    was taken twice by the loss, while its export read it as probabilities)."""
    from zoo.export import _output_activation, _output_kind, _reading_sample
    output = model.outputs[0]
    name = _output_activation(output)
    shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else (None,)
    if name in ("softmax", "sigmoid", "linear") or None in shape:
        return name in ("softmax", "sigmoid")   # (no size to read numbers at: logits)
    head = model if len(model.outputs) == 1 else keras.Model(model.inputs, output)
    return _output_kind(head, output, _reading_sample(shape)) == "probabilities"


def _num_outputs(model) -> int:
    return int(model.outputs[0].shape[-1])


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def _check_learning_rate(learning_rate):
    if not _is_number(learning_rate) or not math.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a positive finite number. "
                         f"Received: learning_rate={learning_rate!r}")


def _check_weight_decay(weight_decay):
    if weight_decay is not None and (not _is_number(weight_decay)
                                     or not math.isfinite(weight_decay) or weight_decay < 0):
        raise ValueError(f"weight_decay must be None or a finite number >= 0. "
                         f"Received: weight_decay={weight_decay!r}")


def _check_label_smoothing(label_smoothing):
    if not _is_number(label_smoothing) or not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be a number in [0, 1). "
                         f"Received: label_smoothing={label_smoothing!r}")


# --------------------------------------------------------------------------------------
# Class weights.

_CLASS_WEIGHT_ALLOWED = ("class_weight must be None, 'balanced' or a mapping {class index or "
                         "label name: weight} with finite weights >= 0")


def _check_class_weight(class_weight):
    """Refuse a ``class_weight`` no dataset could take (before anything is loaded): not
    ``None``, ``"balanced"`` or a non-empty mapping of label names or indices >= 0 to finite
    weights >= 0."""
    if class_weight is None or (isinstance(class_weight, str) and class_weight == "balanced"):
        return
    received = f"Received: class_weight={class_weight!r}"
    if not isinstance(class_weight, Mapping):
        raise ValueError(f"{_CLASS_WEIGHT_ALLOWED}. {received}")
    if not class_weight:
        raise ValueError(f"{_CLASS_WEIGHT_ALLOWED}; an empty mapping names no class. "
                         f"{received}")
    for key, weight in class_weight.items():
        if not isinstance(key, str) and not (is_integer(key) and key >= 0):
            raise ValueError(f"{_CLASS_WEIGHT_ALLOWED}; class {key!r} is neither a label name "
                             f"nor an index >= 0. {received}")
        if not _is_number(weight) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"{_CLASS_WEIGHT_ALLOWED}; class {key!r} has weight {weight!r}. "
                             f"{received}")


#: Why a setting of the classification loss is refused for segmentation, whose loss is
#: cross-entropy + soft Dice (CrossEntropyDiceLoss).
_CLASSIFICATION_ONLY = {
    # the Dice term averages the score over the classes: every class counts the same there
    "class_weight": "already weighs every class equally in its Dice term",
    "label_smoothing": "has no label smoothing (it would change nothing)",
}


def _given(value) -> bool:
    """A setting given: not ``None`` nor 0 (``label_smoothing``'s default)."""
    return value is not None and not (_is_number(value) and value == 0)


def _refuse_for_segmentation(task, what, name, value):
    """Refuse ``name=value`` (``class_weight``, ``label_smoothing``: given, i.e. not
    ``None`` or 0) for a ``task`` of segmentation; ``what`` names the model or dataset."""
    if _given(value) and task == "segmentation":
        raise ValueError(f"{name} is for classification, and {what} is for segmentation: "
                         f"its loss (cross-entropy + soft Dice, CrossEntropyDiceLoss) "
                         f"{_CLASSIFICATION_ONLY[name]}. Received: {name}={value!r}")


def _class_index(key, info, class_weight) -> int:
    """The class index a ``class_weight`` key names: a label name, else an index (an int, or
    a string of digits that is no label name, as ``--class-weight`` gives)."""
    labels = [str(v) for v in info.labels]
    if isinstance(key, str) and key in labels:
        return labels.index(key)
    if isinstance(key, str):
        index = int(key) if is_digits(key) else None
    else:
        index = int(key)
    if index is None or not 0 <= index < len(labels):
        import difflib
        close = [] if str(key).isdigit() else difflib.get_close_matches(str(key), labels, n=3,
                                                                          cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        shown = labels if len(labels) <= 20 else labels[:20] + ["..."]
        raise ValueError(f"class_weight names class {key!r}, which dataset {info.name!r} does "
                         f"not have.{hint} Allowed: its label names ({', '.join(shown)}) or "
                         f"indices 0..{len(labels) - 1}. Received: class_weight={class_weight!r}")
    return index


def resolve_class_weight(class_weight, splits) -> Optional[list]:
    """The weight of each class of a classification dataset that ``class_weight`` asks for.

    Args:
        class_weight: ``None`` (no weighting), ``"balanced"`` (``n_samples / (n_classes *
            count_c)`` from the examples per class of the train split, as scikit-learn's
            ``class_weight="balanced"``) or a mapping ``{class: weight}`` whose keys are
            label names or indices (classes not named get 1.0).
        splits: a :class:`zoo.data.Splits`; ``"balanced"`` counts its train split with
            :func:`zoo.data.train_class_counts` (from the dataset's own listing or labels
            where it has them).

    Returns:
        ``None`` for ``None``; else one float per class, in the order of
        ``splits.info.labels``.

    Raises:
        ValueError: any other value; an unknown class name or index, a class named twice,
            a weight that is no finite number >= 0, every class at weight 0, a segmentation
            dataset, or (``"balanced"``) a class without training examples.

    Example:
        >>> from zoo import data
        >>> resolve_class_weight({"cat": 2.0}, data.load_splits("folder:pets"))  # doctest: +SKIP
        [2.0, 1.0]
    """
    _check_class_weight(class_weight)
    if class_weight is None:
        return None
    info = splits.info
    _refuse_for_segmentation(info.task, f"dataset {info.name!r}", "class_weight", class_weight)
    k = int(info.num_classes)
    if isinstance(class_weight, str):   # "balanced"
        counts = zdata.train_class_counts(splits)
        empty = [str(info.labels[i]) for i in np.flatnonzero(counts == 0)]
        if empty:
            raise ValueError(f"class_weight='balanced' needs training examples of every class, "
                             f"but the train split of dataset {info.name!r} has none of class "
                             f"{', '.join(repr(v) for v in empty)} (examples per class: "
                             f"{counts.tolist()}). Give the weights by class instead "
                             f"(class_weight={{name: weight}}, --class-weight NAME=W).")
        n = int(counts.sum())
        weights = [n / (k * int(c)) for c in counts]
    else:
        weights, named = [1.0] * k, {}
        for key, weight in class_weight.items():
            index = _class_index(key, info, class_weight)
            if index in named:
                raise ValueError(f"class_weight names class {str(info.labels[index])!r} "
                                 f"(index {index}) twice, as {named[index]!r} and {key!r}. "
                                 f"Received: class_weight={class_weight!r}")
            named[index] = key
            weights[index] = float(weight)
    if not any(weights):
        raise ValueError(f"class_weight gives every class of dataset {info.name!r} weight 0, "
                         f"so the loss would be 0: give some class a positive weight. "
                         f"Received: class_weight={class_weight!r}")
    return weights


def _class_weight_record(class_weight, weights, info):
    """How ``info.json`` and a run's backup record the class weights: ``None``, or
    ``{"method": "balanced" | "given", "weights": {label: weight}}``."""
    if weights is None:
        return None
    return {"method": "balanced" if isinstance(class_weight, str) else "given",
            "weights": {str(label): float(w) for label, w in zip(info.labels, weights)}}


def _same_class_weights(a, b) -> bool:
    wa = None if a is None else list(a["weights"].values())
    wb = None if b is None else list(b["weights"].values())
    if wa is None or wb is None:
        return wa is wb
    return len(wa) == len(wb) and all(math.isclose(x, y, rel_tol=1e-9) for x, y in zip(wa, wb))


def _own_setting(optimizer, attr):
    """An optimizer instance's ``attr`` (``weight_decay``, ``global_clipnorm``: a float, or
    ``None``: none); a ``LossScaleOptimizer``'s is its inner optimizer's."""
    value = getattr(getattr(optimizer, "inner_optimizer", optimizer), attr, None)
    return None if value is None else float(value)


def _trained_weight_decay(optimizer, weight_decay):
    """The decoupled weight decay a run trains with (``None``: none): an instance's own, a
    named optimizer's ``weight_decay`` (0 is none), or ``adamw``'s default when none is
    given (``ADAMW_WEIGHT_DECAY``; 0 stays 0.0 there: ``--weight-decay 0``)."""
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return _own_setting(optimizer, "weight_decay")
    if str(optimizer).lower() == "adamw":
        return ADAMW_WEIGHT_DECAY if weight_decay is None else float(weight_decay)
    return float(weight_decay) if weight_decay else None


def _check_clip_norm(clip_norm):
    if clip_norm is not None and (not _is_number(clip_norm) or not math.isfinite(clip_norm)
                                  or clip_norm <= 0):
        raise ValueError(f"clip_norm must be None or a finite number > 0 (the largest global "
                         f"norm of a step's gradients). Received: clip_norm={clip_norm!r}")


def _trained_clip_norm(optimizer, clip_norm):
    """The global gradient norm a run clips to (``None``: none): an instance's own, else
    ``clip_norm``."""
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return _own_setting(optimizer, "global_clipnorm")
    return None if clip_norm is None else float(clip_norm)


def _refuse_for_instance(optimizer, what, *, weight_decay=None, clip_norm=None):
    """``weight_decay`` and ``clip_norm`` are for a named optimizer: ``what`` (an optimizer
    instance) brings its own (Keras' ``weight_decay`` and ``global_clipnorm``), which a
    given one would not change."""
    for name, value, attr in (("weight_decay", weight_decay, "weight_decay"),
                              ("clip_norm", clip_norm, "global_clipnorm")):
        if value is not None:
            raise ValueError(f"{name} is for a named optimizer ({', '.join(OPTIMIZERS)}); "
                             f"{what} brings its own ({type(optimizer).__name__} with "
                             f"{attr}={_own_setting(optimizer, attr)}): set it there. "
                             f"Received: {name}={value!r}")


def make_optimizer(optimizer="adam", learning_rate=1e-3, weight_decay=None, clip_norm=None):
    """A Keras optimizer from a name (``adam``, ``adamw``, ``sgd``, ...) or an instance.

    ``adam`` and ``adamw`` are :class:`zoo.optimizers.Adam` and :class:`zoo.optimizers.AdamW`:
    Keras' classes with each variable's update as one fused TensorFlow op.

    ``weight_decay``: the decoupled weight decay of a named optimizer; ``None`` is none, except
    for ``adamw``, which then decays by Keras' default (``ADAMW_WEIGHT_DECAY``, 0.004), and
    which ``weight_decay=0`` trains without. ``clip_norm``: each step's gradients are scaled
    down together to this global norm when theirs is larger (Keras' ``global_clipnorm``;
    ``None``: no clipping); the Inception-v3 paper clips at 2.0. An instance brings its own
    of both (refused here)."""
    if isinstance(optimizer, keras.optimizers.Optimizer):
        _refuse_for_instance(optimizer, "an optimizer instance", weight_decay=weight_decay,
                             clip_norm=clip_norm)
        return optimizer
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} or a "
                         f"keras.optimizers.Optimizer. Received: optimizer={optimizer!r}")
    _check_learning_rate(learning_rate)
    _check_weight_decay(weight_decay)
    _check_clip_norm(clip_norm)
    kw = {"learning_rate": float(learning_rate)}
    name = optimizer.lower()
    decay = _trained_weight_decay(name, weight_decay)   # adamw's default; 0 is none
    if decay is not None:
        kw["weight_decay"] = decay
    norm = _trained_clip_norm(name, clip_norm)
    if norm is not None:
        kw["global_clipnorm"] = norm
    if name == "sgd":
        kw["momentum"] = 0.9
    from zoo import optimizers   # Adam and AdamW with one fused op per variable update
    cls = {"adam": optimizers.Adam, "adamw": optimizers.AdamW,
           "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop,
           "nadam": keras.optimizers.Nadam, "adagrad": keras.optimizers.Adagrad}[name]
    return cls(**kw)


def resolve_jit_compile(jit_compile, *, strategy=None) -> bool:
    """``True``/``False`` as given; ``"auto"``: XLA when a GPU is visible and training runs
    under no ``tf.distribute`` strategy, else not.

    On CPUs the zoo trains on TensorFlow's oneDNN kernels (see ``zoo/__init__.py``), which
    XLA does not use: on this project's 2-core AVX2 CPU, XLA made ResNet-50 training about
    1.5x slower than oneDNN with the fused batch norm, and LeNet-5 no faster
    (benchmarks/README.md, item 3). Under a strategy (``fit``'s ``MirroredStrategy`` over
    several GPUs) XLA cannot compile Keras' train step, whose variables are mirrored on
    other devices ("Trying to access resource ... located in device"), and Keras' own
    ``"auto"`` leaves it off there too; with op determinism on (``fit(deterministic=True)``)
    Keras compiles without XLA whatever is asked.

    Args:
        jit_compile: ``"auto"``, ``True`` or ``False``.
        strategy: the strategy training will run under (``None``: the one whose scope the
            caller is in, if any).

    Returns:
        Whether to compile with XLA.

    Raises:
        ValueError: any other value.
    """
    jit_compile = check_jit_compile(jit_compile)   # (1 and 0.0 were taken, as in ==)
    if jit_compile == "auto":
        import tensorflow as tf

        from zoo.common import visible_gpus
        from tensorflow.python.framework.config import is_op_determinism_enabled
        if strategy is not None or tf.distribute.has_strategy() or is_op_determinism_enabled():
            return False
        return bool(visible_gpus())
    return jit_compile


def _gpu_compute_capabilities() -> list:
    """``(major, minor)`` of every visible GPU (``(0, 0)`` where TensorFlow does not say)."""
    import tensorflow as tf

    from zoo.common import visible_gpus
    out = []
    for gpu in visible_gpus():
        try:
            cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        except Exception:
            cc = None
        out.append(tuple(cc) if cc else (0, 0))
    return out


def _cpu_prefers_bfloat16() -> bool:
    from zoo.common import cpu_prefers_bfloat16
    return cpu_prefers_bfloat16()


def resolve_mixed_precision(mixed_precision="auto", *, models=None, input_shape=None):
    """The dtype policy that :func:`fit` trains under: ``"mixed_float16"``,
    ``"mixed_bfloat16"`` or ``None`` (float32).

    ``"auto"``: mixed precision where the hardware runs it faster, float32 elsewhere. With
    GPUs visible: ``mixed_float16`` when all have tensor cores (compute capability 7.0 or
    more), else float32. Without GPUs: ``mixed_bfloat16`` where
    :func:`zoo.common.cpu_prefers_bfloat16` says so, from the benchmarks
    (benchmarks/README.md): CPUs with AMX-BF16 (oneDNN runs bfloat16 convolutions on AMX
    tiles; ResNet-50 training 1.57x, Inception-v3 1.59x, Xception 1.32x faster than float32
    on an Intel Xeon with AMX) and AMD CPUs with AVX512_BF16 (ResNet-50 1.67-2.1x,
    Inception-v3 1.45-1.7x, Xception 1.28-1.4x on an AMD EPYC); LeNet-5 on digits trained as
    accurately on both. There, a model given in ``models`` trains in float32 below its
    measured ``bfloat16_min_input_size`` (:class:`zoo.registry.ModelInfo`): Xception below
    40x40, where bfloat16 trained 0.76x as fast as float32 on both CPUs (item 31). Else
    float32: on Intel CPUs with AVX512_BF16 but no AMX bfloat16 was slower (ResNet-50
    0.81-0.88x on an Intel Xeon without AMX), and CPUs without native bfloat16 instructions
    emulate it. ``"bfloat16"`` opts in anywhere, ``"float16"`` (or ``True``) and ``"off"``
    (or ``False``/``None``) force. Variables, the output layers and the loss stay float32
    either way.

    Args:
        mixed_precision: ``"auto"``, ``"bfloat16"``, ``"float16"``, ``"off"`` (or
            ``True``/``False``/``None``).
        models: for ``"auto"``: the registry name of the model to train, or a list or
            tuple of the names of the models a search space builds (float32 only where every
            one of them is below its size); ``None`` or names outside the registry: the CPU
            alone decides.
        input_shape: ``(H, W, ...)`` of the images the models train on: a tuple or list of
            at least two positive integers (``None`` for a size not known); ``None``: not
            known.

    Raises:
        ValueError: any other value (``models`` and ``input_shape`` are checked whatever
            decides).
    """
    if mixed_precision is True:
        mixed_precision = "float16"
    elif mixed_precision is False or mixed_precision is None:
        mixed_precision = "off"
    if not isinstance(mixed_precision, str) or mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION} (or True/False). "
                         f"Received: mixed_precision={mixed_precision!r}")
    _check_auto_precision_args(models, input_shape)
    if mixed_precision == "auto":
        ccs = _gpu_compute_capabilities()
        if ccs:
            return "mixed_float16" if min(ccs) >= (7, 0) else None
        if not _cpu_prefers_bfloat16() or _bfloat16_slower_at(models, input_shape):
            return None
        return "mixed_bfloat16"
    return None if mixed_precision == "off" else f"mixed_{mixed_precision}"


def _check_auto_precision_args(models, input_shape) -> None:
    """Refuse a ``models`` or an ``input_shape`` that :func:`resolve_mixed_precision` cannot
    read."""
    if models is not None and not isinstance(models, str) and (
            not isinstance(models, (list, tuple))
            or not all(isinstance(name, str) for name in models)):
        raise ValueError(f"models must be None, a model name or a list or tuple of model "
                         f"names. Received: models={models!r}")
    if input_shape is not None and (
            not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2
            or not all(d is None or (is_integer(d) and d > 0) for d in input_shape)):
        raise ValueError(f"input_shape must be None or the (H, W, ...) of the images: a tuple "
                         f"of at least two positive integers (None for a size not known). "
                         f"Received: input_shape={input_shape!r}")


def _bfloat16_slower_at(models, input_shape) -> bool:
    """Whether every model named in ``models`` is registered with a
    ``bfloat16_min_input_size`` above the smaller side of ``input_shape``."""
    from zoo.registry import registered_info
    if models is None or input_shape is None:
        return False
    names = [models] if isinstance(models, str) else list(models)
    if not names or any(d is None for d in tuple(input_shape)[:2]):
        return False
    size = min(int(d) for d in tuple(input_shape)[:2])
    infos = [registered_info(name) for name in names]
    return all(info is not None and size < info.bfloat16_min_input_size for info in infos)


def with_mixed_precision(model, mixed_precision="auto"):
    """``model`` under the dtype policy :func:`fit` would train it with, for a training loop
    of one's own.

    Returns:
        ``(model, policy)``: ``policy`` from :func:`resolve_mixed_precision` (for ``"auto"``,
        of the registered model ``model.name`` names at ``model``'s input size); with a
        mixed policy, a copy of ``model`` (same weights) computing in it on every layer but
        the output layers, which stay float32; with float32 (``None``), ``model`` itself.

    Raises:
        ValueError: ``model`` is not a ``keras.Model``; an unknown ``mixed_precision``; a
            mixed policy and a model Keras cannot rebuild from its config (see
            :func:`_rebuild`).
    """
    if not isinstance(model, keras.Model):
        received = received_text(model)
        hint = (f" (a registered model: build it first, zoo.get_model({model!r}))"
                if isinstance(model, str) else "")
        raise ValueError(f"with_mixed_precision takes a keras.Model{hint}. "
                         f"Received: model={received}")
    policy = resolve_mixed_precision(mixed_precision, **_auto_precision_args(model))
    return (_rebuild(model, policy) if policy else model), policy


def _auto_precision_args(model, model_name=None) -> dict:
    """``resolve_mixed_precision``'s ``models`` and ``input_shape`` for a built model: its
    registry name (``model_name``, else the model's own name, as the zoo's builders name
    their models) and its input's height and width (``None`` for an input that has no two
    of them)."""
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    return {"models": model_name or model.name,
            "input_shape": shape if shape is not None and len(shape) >= 2 else None}


def precision_value(policy) -> str:
    """The ``mixed_precision`` value (``--mixed-precision``) that names dtype policy
    ``policy``: ``"off"`` for ``None``, ``"bfloat16"`` for ``"mixed_bfloat16"``, ..."""
    return policy.replace("mixed_", "") if policy else "off"


def _computes_in_float16(model) -> bool:
    return any(getattr(layer, "compute_dtype", None) == "float16"
               for layer in model._flatten_layers(include_self=False))


def compile_model(model, task="classification", *, optimizer="adam", learning_rate=1e-3,
                  jit_compile="auto", label_smoothing=0.0, weight_decay=None, clip_norm=None,
                  num_classes=None, ignore_label=None):
    """Compile ``model`` with the defaults of its task.

    Classification: sparse categorical cross-entropy (with ``label_smoothing`` if > 0) and
    accuracy. Segmentation: cross-entropy + Dice loss (:class:`CrossEntropyDiceLoss`),
    pixel accuracy and mean IoU over all classes, all three leaving out the pixels whose
    mask holds ``ignore_label`` (:class:`SparsePixelAccuracy`, Keras' ``MeanIoU`` with
    ``ignore_class``). Whether the model outputs probabilities or logits is read from its
    output layer's activation.

    Args:
        model: a Keras model.
        task: ``"classification"`` or ``"segmentation"``.
        optimizer: a name (``adam``, ``adamw``, ``sgd`` (momentum 0.9), ``rmsprop``, ``nadam``,
            ``adagrad``) or an optimizer instance.
        learning_rate: learning rate for a named optimizer.
        jit_compile: compile train/predict steps with XLA: ``True``, ``False`` or
            ``"auto"`` (on GPUs only, see :func:`resolve_jit_compile`).
        label_smoothing: classification label smoothing.
        weight_decay: decoupled weight decay for a named optimizer (``None``: none; for
            ``adamw``, its default, ``ADAMW_WEIGHT_DECAY``); refused with an instance, which
            brings its own.
        clip_norm: the global norm a named optimizer clips each step's gradients to (Keras'
            ``global_clipnorm``; ``None``: none); refused with an instance, which brings its
            own.
        num_classes: classes, a positive integer (default: the model's output width).
        ignore_label: segmentation: the mask value of pixels no loss or metric counts
            (``DatasetInfo.ignore_label``, e.g. 255), outside the model's classes;
            ``None``: every pixel counts.

    A model with float16 layers (``mixed_float16``) gets its optimizer wrapped in
    ``keras.optimizers.LossScaleOptimizer`` (dynamic loss scaling).

    Returns:
        The same model, compiled.

    Raises:
        ValueError: unknown task or optimizer, a learning rate that is not a positive
            finite number, label smoothing outside [0, 1), a negative weight decay, a
            ``clip_norm`` that is not a finite number > 0, either given with an optimizer
            instance, an ignore label for classification, that is
            no integer in 0..65535 or one of the model's classes, a ``num_classes`` that
            is no positive integer, a ``model`` that is no ``keras.Model``, a model with
            one output unit (one sigmoid or logit: give it one unit per class).

    Example:
        >>> from zoo import lenet5
        >>> model = compile_model(lenet5(), learning_rate=3e-3)
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}. Received: task={task!r}")
    _check_label_smoothing(label_smoothing)
    _refuse_for_segmentation(task, f"the model (task={task!r})", "label_smoothing",
                             label_smoothing)
    if not isinstance(model, keras.Model):
        raise ValueError(f"compile_model takes a keras.Model. Received: {type(model).__name__}")
    if _num_outputs(model) == 1:
        # Its sparse cross-entropy over one channel failed at the first batch holding
        # class 1 (TensorFlow's "label value of 1 ... outside the valid range of [0, 1)").
        raise ValueError(f"compile_model's losses take one output per class (a softmax or "
                         f"logits over them), not one sigmoid unit or logit for P(class 1), "
                         f"which only the export and serving read: give the head 2 units. "
                         f"Received: output shape {tuple(model.outputs[0].shape)}")
    num_classes = (_num_outputs(model) if num_classes is None
                   else zdata.check_count("num_classes", num_classes))
    ignore_label = check_ignore_label(ignore_label)
    if ignore_label is not None:
        if task != "segmentation":
            raise ValueError(f"ignore_label is for segmentation (a mask value to leave out); "
                             f"task is {task!r}. Received: ignore_label={ignore_label}")
        classes = max(int(num_classes), _num_outputs(model))
        if ignore_label < classes:
            raise ValueError(f"ignore_label={ignore_label} is one of the model's {classes} "
                             f"classes (0..{classes - 1}); the ignore label must be a mask "
                             f"value outside them, such as 255.")
    from_logits = not _outputs_probabilities(model)
    opt = make_optimizer(optimizer, learning_rate, weight_decay, clip_norm)
    if _computes_in_float16(model) and not isinstance(opt, keras.optimizers.LossScaleOptimizer):
        # float16 gradients underflow without it; Keras adds it only for a model whose own
        # policy is mixed_float16, not for one whose layers are (zoo.train.fit's rebuild).
        opt = keras.optimizers.LossScaleOptimizer(opt)
    if task == "classification":
        if label_smoothing:
            loss = SparseSmoothedCrossEntropy(label_smoothing, from_logits=from_logits)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        loss = CrossEntropyDiceLoss(from_logits=from_logits, ignore_label=ignore_label)
        accuracy = (keras.metrics.SparseCategoricalAccuracy(name="accuracy")
                    if ignore_label is None else
                    SparsePixelAccuracy(ignore_label=ignore_label, name="accuracy"))
        # Over every class the model outputs: Keras' confusion matrix leaves out pixels
        # predicted as a class beyond num_classes, which would count them as no error.
        metrics = [accuracy,
                   keras.metrics.MeanIoU(num_classes=max(int(num_classes),
                                                         _num_outputs(model), 2),
                                         sparse_y_pred=False, ignore_class=ignore_label,
                                         name="mean_iou")]
    model.compile(optimizer=opt, loss=loss, metrics=metrics,
                  jit_compile=resolve_jit_compile(jit_compile))
    return model


# --------------------------------------------------------------------------------------
# Building for a dataset; precision and device placement.

#: What ``imagenet_input`` may be in :func:`pretrained_classifier` and :func:`build_for_dataset`.
IMAGENET_INPUT_CHOICES = ("auto", True, False)

#: The dropout in front of :func:`pretrained_classifier`'s new head by default (Keras'
#: transfer-learning guide's).
HEAD_DROPOUT = 0.2


def _weights_record(weights):
    """How a run records ``weights``: ``None``, ``"imagenet"`` or the file's absolute path."""
    if weights is None or (isinstance(weights, str) and weights == "imagenet"):
        return weights
    return os.path.abspath(os.fspath(weights))


def _resolve_pretrained_weights(model_name, weights, info, what):
    """``weights`` for a pretrained backbone of ``model_name``, checked against the model and
    the data before anything is built: ``"imagenet"`` (a model with published ImageNet
    weights, 3-channel data) or an existing file (a run directory gives its
    ``model.keras``), as an absolute path."""
    if isinstance(weights, str) and weights == "imagenet":
        _refuse_unpublished_imagenet(model_name, f"{what}: ")
        _check_imagenet_channels(model_name, info, what)
        return weights
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"{what}: weights must be 'imagenet' or the path of a weights file "
                         f"(.h5, .weights.h5, .keras or a run directory). "
                         f"Received: weights={weights!r}")
    path = os.fspath(weights)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "model.keras")):
            from zoo.export import not_a_run_hint
            hint = not_a_run_hint(path)
            raise ValueError(f"{what}: {path} is a directory without model.keras: weights must "
                             f"be 'imagenet', a weights file or a run directory. "
                             f"Received: weights={path!r}" + (f".{hint}" if hint else ""))
        path = os.path.join(path, "model.keras")
    elif not os.path.isfile(path):
        raise ValueError(f"{what}: weights file not found. Received: weights={path!r}. "
                         f"Allowed: 'imagenet' or the path of an existing weights file (.h5, "
                         f".weights.h5, .keras) or run directory")
    return os.path.abspath(path)


def _refuse_unpublished_imagenet(model_name, prefix=""):
    """Refuse ``weights="imagenet"`` for a model without published ImageNet weights, naming
    the models that have them."""
    from zoo.registry import list_models, model_info
    if "imagenet" in model_info(model_name).weights:
        return
    having = [n for n in list_models() if "imagenet" in model_info(n).weights]
    raise ValueError(f"{prefix}{model_name} has no published 'imagenet' weights (models with "
                     f"them: {', '.join(having)}); give a weights file instead: --weights "
                     f"PATH. Received: weights='imagenet'")


def _check_imagenet_channels(model_name, info, what):
    if tuple(info.input_shape)[-1:] != (3,):
        raise ValueError(f"{what}: {model_name}'s ImageNet weights take 3-channel (RGB) "
                         f"images and dataset {info.name!r} has {info.input_shape[-1]} "
                         f"channel{'s' if info.input_shape[-1] != 1 else ''}: load it in RGB "
                         f"(--channels 3, load_splits(..., channels=3)). Received: "
                         f"input_shape={tuple(info.input_shape)}")


def _check_imagenet_input_choice(imagenet_input, what):
    if not any(imagenet_input is c or (isinstance(c, str) and imagenet_input == c)
               for c in IMAGENET_INPUT_CHOICES):
        raise ValueError(f"{what}: imagenet_input must be 'auto', True or False. "
                         f"Received: imagenet_input={imagenet_input!r}")


def _wants_imagenet_input(model_name, weights, imagenet_input, info, what) -> bool:
    """Whether a backbone of ``model_name`` with ``weights`` gets
    :func:`zoo.weights.imagenet_input` in front: ``"auto"`` reads it from the weights
    (:func:`zoo.weights.expects_imagenet_input`), ``True``/``False`` force it."""
    from zoo import weights as zoo_weights
    use = (zoo_weights.expects_imagenet_input(model_name, weights)
           if isinstance(imagenet_input, str) else imagenet_input)
    if use:
        if model_name not in zoo_weights.IMAGENET_INPUT:
            raise ValueError(f"{what}: imagenet_input converts the input for Keras' ImageNet "
                             f"weights, and {model_name} has none (models with them: "
                             f"{', '.join(sorted(zoo_weights.IMAGENET_INPUT))}). "
                             f"Received: imagenet_input=True")
        _check_imagenet_channels(model_name, info, what)
    return bool(use)


def pretrained_classifier(model_name, info: zdata.DatasetInfo, *, weights,
                          freeze_backbone=False, dropout=HEAD_DROPOUT, imagenet_input="auto",
                          **model_args):
    """A classifier of the dataset's classes on a pretrained backbone: fine-tuning.

    The backbone is ``get_model(model_name, include_top=False, pooling="avg",
    weights=weights, input_shape=info.input_shape)``, nested in the returned model under
    its own name (``model.get_layer(model_name)``); the head is new: dropout, then
    ``Dense(info.num_classes, activation="softmax", name="predictions")``. Where the weights
    expect the input Keras' ImageNet files were trained on, a fixed
    :func:`zoo.weights.imagenet_input` layer (built from the dataset's statistics) sits
    between the input and the backbone, so that ``zoo.data``'s normalised images (and the
    export's raw pixels) reach the backbone as the weights expect.

    The model carries ``pretrained_info`` (``{"backbone", "weights", "freeze_backbone",
    "imagenet_input", "head_dropout"}``), which :func:`fit` records in ``info.json`` and
    checks when a killed run is resumed. Trained under mixed precision, the rebuilt copy
    keeps the frozen layers, the weights and the fixed input layer.

    Args:
        model_name: a registered classifier.
        info: the dataset's :class:`zoo.data.DatasetInfo` (``load_splits(...).info``): the
            input shape, classes and, for ``imagenet_input``, the statistics.
        weights: ``"imagenet"`` (Keras' published file, for the models
            ``zoo.model_info(name).weights`` names; 3-channel data), or a file: a
            published ``.h5``, a ``.weights.h5`` of the backbone, a ``.keras`` file or a
            run directory (its ``model.keras``: the backbone's layers are taken by name,
            from a whole classifier or from a model fine-tuned with a head).
        freeze_backbone: train the head only: the backbone is not trainable and its batch
            norms run in inference mode (Keras 3: a layer with ``trainable=False``), so its
            moving statistics stay those of the weights.
        dropout: the dropout rate in front of the head, in [0, 1) (0: none).
        imagenet_input: ``"auto"`` puts :func:`zoo.weights.imagenet_input` in front when
            the weights are Keras' ImageNet ones (:func:`zoo.weights.expects_imagenet_input`:
            ``"imagenet"``, a file in the published layout, or a ``.keras`` file of a model
            trained behind such a layer); ``True``/``False`` force it (a ``.weights.h5``
            names no layers: a Keras ImageNet file saved so needs ``True``).
        **model_args: further options of the backbone's builder (``pooling="max"`` instead
            of ``"avg"``); ``include_top``, ``num_classes``, ``classifier_activation`` and
            ``weights`` are this function's to set.

    Returns:
        The uncompiled ``keras.Model`` (``images`` in, class probabilities out).

    Raises:
        ValueError: a segmentation model or dataset (U-Net takes ``backbone_weights``), ImageNet
            weights for a model without them or for data without 3 channels, a weights
            file that does not exist or does not fit the backbone, ``imagenet_input=True``
            for a model without ImageNet weights, a builder option this function sets, a
            ``pooling`` other than ``"avg"``/``"max"``, a ``dropout`` outside [0, 1), a
            ``freeze_backbone`` that is not a bool.

    Example:
        >>> from zoo import data, train
        >>> splits = data.load_splits("folder:photos", channels=3)  # doctest: +SKIP
        >>> model = train.pretrained_classifier("resnet50", splits.info, weights="imagenet",
        ...                                     freeze_backbone=True)  # doctest: +SKIP
        >>> train.fit(model, splits, model_name="resnet50", epochs=5)  # doctest: +SKIP
    """
    info = zdata.as_info(info, "pretrained_classifier")
    from zoo import weights as zoo_weights
    from zoo.registry import get_model, model_info
    what = "pretrained_classifier"
    minfo = model_info(model_name)
    if minfo.task != "classification":
        raise ValueError(f"{what}: {model_name} is a {minfo.task} model; it takes a classifier "
                         f"(U-Net's encoder takes weights as unet(backbone=NAME, "
                         f"backbone_weights=...), --model-arg backbone=NAME --weights ...). "
                         f"Received: model_name={model_name!r}")
    if info.task != "classification":
        raise ValueError(f"{what}: dataset {info.name!r} is for {info.task}; a classifier "
                         f"needs a classification dataset.")
    if not isinstance(freeze_backbone, bool):
        raise ValueError(f"{what}: freeze_backbone must be True or False. "
                         f"Received: freeze_backbone={freeze_backbone!r}")
    if not _is_number(dropout) or not 0 <= dropout < 1:
        raise ValueError(f"{what}: dropout must be a number in [0, 1). "
                         f"Received: dropout={dropout!r}")
    _check_imagenet_input_choice(imagenet_input, what)
    for key in ("include_top", "num_classes", "classifier_activation", "weights"):
        if key in model_args:
            raise ValueError(f"{what} builds {model_name} with include_top=False under a new "
                             f"softmax head of the dataset's {info.num_classes} classes, with "
                             f"the weights given as weights=; {key} is not a builder option "
                             f"here. Received: {key}={model_args[key]!r}")
    if model_args.get("aux_logits"):   # the builder said "needs include_top=True"
        raise ValueError(f"{what}: aux_logits=True adds auxiliary classifiers to "
                         f"{model_name}'s own top, and fine-tuning builds the backbone "
                         f"without it (include_top=False) under a new head: fine-tune without "
                         f"aux_logits. Received: aux_logits={model_args['aux_logits']!r}")
    pooling = model_args.pop("pooling", "avg")
    if pooling not in ("avg", "max"):
        raise ValueError(f"{what}: pooling must be 'avg' or 'max' (the features the head "
                         f"reads). Received: pooling={pooling!r}")
    if weights is None:
        raise ValueError(f"{what}: weights must be 'imagenet' or a weights file; without "
                         f"weights build the model with its own top "
                         f"(build_for_dataset({model_name!r}, info)). Received: weights=None")
    weights = _resolve_pretrained_weights(model_name, weights, info, what)
    conversion = _wants_imagenet_input(model_name, weights, imagenet_input, info, what)
    shape = tuple(info.input_shape)
    backbone = get_model(model_name, input_shape=shape, include_top=False, pooling=pooling,
                         weights=weights, **model_args)
    if freeze_backbone:
        backbone.trainable = False
    inputs = keras.Input(shape, name="images")
    x = zoo_weights.imagenet_input(model_name, info)(inputs) if conversion else inputs
    x = backbone(x)
    if dropout:
        x = keras.layers.Dropout(float(dropout), name="head_dropout")(x)
    outputs = keras.layers.Dense(int(info.num_classes), activation="softmax",
                                 name="predictions")(x)
    model = keras.Model(inputs, outputs, name=f"{model_name}_finetuned")
    model.pretrained_info = {"backbone": model_name, "weights": _weights_record(weights),
                             "freeze_backbone": freeze_backbone, "imagenet_input": conversion,
                             "head_dropout": float(dropout)}
    return model


def _features_hint(model_name, info) -> str:
    from zoo.registry import list_models, model_info
    k = info.num_classes
    published = model_name in list_models() and "imagenet" in model_info(model_name).weights
    return (f"add a classifier head (pooling and keras.layers.Dense({k}, "
            f"activation='softmax')), or train a new head on the pretrained backbone: "
            f"zoo.train.pretrained_classifier({model_name!r}, info, weights=...), "
            f"zoo train {model_name} --weights {'imagenet|' if published else ''}PATH")


def build_for_dataset(model_name, info: zdata.DatasetInfo, *, backbone_weights=None,
                      freeze_backbone=False, imagenet_input="auto", **model_args):
    """Build the registered model ``model_name`` for a dataset: its input shape and classes.

    With ``backbone_weights`` (``zoo train --weights``), a classifier is
    :func:`pretrained_classifier`: the pretrained backbone under a new head of the dataset's
    classes. U-Net takes them as its own ``backbone_weights`` (with ``backbone=NAME``), and
    a backbone with Keras' ImageNet weights gets :func:`zoo.weights.imagenet_input` from
    ``info`` in front, as the classifier does (``unet(imagenet_input=info)``).

    Args:
        model_name: a registered model name (``zoo list``).
        info: the dataset's ``DatasetInfo`` (``load_splits(...).info``).
        backbone_weights: ``None``, ``"imagenet"`` or a weights file: the pretrained
            backbone's, see :func:`pretrained_classifier` (``weights``, a builder option,
            stays the whole model's: a classifier of the dataset's classes, say).
        freeze_backbone: with ``backbone_weights``, train the new head (U-Net: the decoder)
            only.
        imagenet_input: ``"auto"``, ``True`` or ``False``: whether
            :func:`zoo.weights.imagenet_input` goes in front of a pretrained backbone
            (``"auto"``: when its weights are Keras' ImageNet ones).
        **model_args: builder options, which win over the dataset's.

    Returns:
        The uncompiled ``keras.Model``.

    Raises:
        ValueError: the dataset's task differs from the model's; the builder refuses the
            input shape (e.g. an image size below the model's minimum, which the builder
            computes for the chosen options such as U-Net's padding); ``include_top=False``
            (a backbone's features are no classifier of the dataset: use
            ``backbone_weights``);
            ImageNet weights with the 1000-class top for a dataset of other classes;
            ``freeze_backbone`` or ``imagenet_input=True`` without pretrained weights;
            ``backbone_weights`` for a U-Net without a backbone; see also
            :func:`pretrained_classifier`.
    """
    from zoo.registry import get_model, model_info
    info = zdata.as_info(info, "build_for_dataset")
    minfo = model_info(model_name)
    if minfo.task != info.task:
        raise ValueError(f"{model_name} is a {minfo.task} model but dataset {info.name!r} is "
                         f"for {info.task}.")
    _check_imagenet_input_choice(imagenet_input, model_name)
    if not isinstance(freeze_backbone, bool):
        raise ValueError(f"{model_name}: freeze_backbone must be True or False. "
                         f"Received: freeze_backbone={freeze_backbone!r}")
    if minfo.task == "segmentation":
        return _build_segmenter(model_name, info, backbone_weights, freeze_backbone,
                                imagenet_input, model_args)
    if backbone_weights is not None:
        _refuse_two_weights(model_name, model_args, backbone_weights)
        return pretrained_classifier(model_name, info, weights=backbone_weights,
                                     freeze_backbone=freeze_backbone,
                                     imagenet_input=imagenet_input, **model_args)
    if freeze_backbone or imagenet_input is True:
        given = "freeze_backbone=True" if freeze_backbone else "imagenet_input=True"
        raise ValueError(f"{model_name}: {given} goes with pretrained weights "
                         f"(backbone_weights='imagenet' or a file, --weights); without them "
                         f"every layer of {model_name} is random. Received: "
                         f"backbone_weights=None, {given}")
    if "include_top" in model_args and not model_args["include_top"]:
        raise ValueError(f"{model_name} with include_top=False is a feature extractor "
                         f"({model_name}'s features, pooling={model_args.get('pooling')!r}), "
                         f"not a classifier of the {info.num_classes} classes of dataset "
                         f"{info.name!r}: {_features_hint(model_name, info)}. Received: "
                         f"include_top=False")
    if (isinstance(model_args.get("weights"), str) and model_args["weights"] == "imagenet"
            and model_args.get("num_classes", info.num_classes) != 1000):
        raise ValueError(f"{model_name}: weights='imagenet' as a builder option loads the "
                         f"1000-class ImageNet classifier, and dataset {info.name!r} has "
                         f"{info.num_classes} classes: to train a new head of them on the "
                         f"ImageNet backbone use zoo train {model_name} --weights imagenet "
                         f"(build_for_dataset(..., backbone_weights='imagenet'), "
                         f"pretrained_classifier). Received: weights='imagenet'")
    kwargs = dict(input_shape=tuple(info.input_shape), num_classes=info.num_classes)
    kwargs.update(model_args)
    return get_model(model_name, **kwargs)


def _refuse_two_weights(model_name, model_args, backbone_weights):
    """A classifier's ``weights`` builder option (the whole model's, top included) next to
    ``backbone_weights`` (the backbone's, under a new head): one or the other (before, Python's
    "multiple values for keyword argument 'weights'")."""
    if "weights" in model_args:
        raise ValueError(f"{model_name}: weights (a builder option, --model-arg weights=: the "
                         f"whole model's, its top included) and backbone_weights (--weights: "
                         f"the backbone's, under a new head of the dataset's classes) both give "
                         f"weights; give one. Received: weights={model_args['weights']!r}, "
                         f"backbone_weights={backbone_weights!r}")


def _build_segmenter(model_name, info, backbone_weights, freeze_backbone, imagenet_input,
                     model_args):
    """:func:`build_for_dataset` for a segmentation model: ``backbone_weights`` and
    ``freeze_backbone`` go to U-Net's backbone, and a backbone with Keras' ImageNet weights
    gets :func:`zoo.weights.imagenet_input` of ``info`` in front."""
    from zoo.registry import get_model
    model_args = dict(model_args)
    backbone = model_args.get("backbone")
    if backbone is None and (backbone_weights is not None or freeze_backbone):
        given = (f"backbone_weights={backbone_weights!r}" if backbone_weights is not None
                 else "freeze_backbone=True")
        raise ValueError(f"{model_name} has no pretrained weights of its own; pretrained "
                         f"weights are for its encoder, a classifier backbone: --model-arg "
                         f"backbone=resnet50 --weights imagenet (backbone='resnet50', "
                         f"backbone_weights='imagenet'). Received: {given}, no backbone")
    if freeze_backbone and backbone_weights is None:
        raise ValueError(f"{model_name}: freeze_backbone=True goes with pretrained backbone "
                         f"weights (backbone_weights='imagenet' or a file, --weights); without "
                         f"them the backbone is random. Received: backbone_weights=None, "
                         f"freeze_backbone=True")
    conversion = False
    if backbone_weights is not None:
        backbone_weights = _resolve_pretrained_weights(backbone, backbone_weights, info,
                                                       model_name)
        model_args["backbone_weights"] = backbone_weights
        model_args["freeze_backbone"] = bool(freeze_backbone)
        if "imagenet_input" in model_args:   # the builder's: a DatasetInfo or None
            conversion = model_args["imagenet_input"] is not None
        else:
            conversion = _wants_imagenet_input(backbone, backbone_weights, imagenet_input,
                                               info, model_name)
            model_args["imagenet_input"] = info if conversion else None
    elif imagenet_input is True:
        raise ValueError(f"{model_name}: imagenet_input=True goes with a backbone's pretrained "
                         f"weights (backbone=NAME, backbone_weights=..., --weights). Received: "
                         f"backbone={backbone!r}, backbone_weights=None")
    kwargs = dict(input_shape=tuple(info.input_shape), num_classes=info.num_classes)
    kwargs.update(model_args)
    model = get_model(model_name, **kwargs)
    if backbone_weights is not None:
        model.pretrained_info = {
            "backbone": backbone, "weights": _weights_record(backbone_weights),
            "freeze_backbone": bool(freeze_backbone), "imagenet_input": conversion,
            "head_dropout": None}
    return model


# Layers whose output is no class score: a model ending in one of them outputs features.
_FEATURE_LAYERS = tuple(getattr(keras.layers, n) for n in (
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "Flatten", "BatchNormalization", "LayerNormalization", "ReLU", "Add", "Concatenate",
    "Multiply", "ZeroPadding2D"))

#: Output activations of class scores: probabilities or logits.
_SCORE_ACTIVATIONS = ("softmax", "sigmoid", "linear", "log_softmax")


def _output_layer(model):
    """The layer that computes ``model``'s (first) output: inside a nested model, that
    model's own, and before a dropout (the identity at inference), what it drops from."""
    layer = model.outputs[0]._keras_history.operation
    for _ in range(100):
        if isinstance(layer, keras.Model) and getattr(layer, "outputs", None):
            layer = layer.outputs[0]._keras_history.operation
        elif isinstance(layer, keras.layers.Dropout) and len(layer._inbound_nodes) == 1:
            layer = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
        else:
            break
    return layer


def _outputs_scores(layer) -> bool:
    """Whether ``layer`` computes class scores (probabilities or logits) as far as can be
    told: a softmax, a layer whose activation is softmax, sigmoid or linear (a ``Dense`` or
    1x1 convolution head), or a layer of unknown kind; not a pooling, flattening,
    normalisation, merge or padding layer, nor one with another activation (a ReLU: an
    ``include_top=False`` backbone's last block)."""
    if isinstance(layer, keras.layers.Softmax):
        return True
    if isinstance(layer, _FEATURE_LAYERS):
        return False
    if not hasattr(layer, "activation"):
        return True
    act = layer.activation
    if act is None:
        return True
    name = act if isinstance(act, str) else getattr(act, "__name__", None)
    return name is None or name in _SCORE_ACTIVATIONS


def _check_output_fits(model, model_name, info):
    """Refuse a model whose output is not class scores of ``info``'s task in an obvious way:
    a classification dataset with 4-D output (a segmentation model's, or an
    ``include_top=False`` backbone's feature maps), a 2-D output of features (an
    ``include_top=False`` backbone with pooling: not ``num_classes`` wide and from a
    pooling layer or a ReLU), per-pixel features for segmentation, or a classifier for a
    segmentation dataset. A head of the user's with ``num_classes`` outputs passes whatever
    its activation (a linear one gives logits), and so does a wider classifier (a softmax
    or linear head of more classes than the dataset has)."""
    from zoo.registry import list_models, model_info
    out = model.outputs[0]
    rank, width = len(out.shape), out.shape[-1]
    layer = _output_layer(model)
    scores = _outputs_scores(layer)
    registered = model_info(model_name).task if model_name in list_models() else None
    shape = tuple(out.shape)
    received = f"Received: output {shape} from {type(layer).__name__} {layer.name!r}"
    if info.task == "classification" and rank == 4:
        if scores and registered != "classification":
            raise ValueError(f"{model_name} is a segmentation model but dataset {info.name!r} "
                             f"is for classification.")
        raise ValueError(f"{model_name} outputs feature maps {shape}, not class scores "
                         f"[batch, {info.num_classes}] for dataset {info.name!r} (an "
                         f"include_top=False backbone?): {_features_hint(model_name, info)}. "
                         f"{received}")
    if info.task == "segmentation" and rank == 2:
        raise ValueError(f"{model_name} is a classification model but dataset {info.name!r} "
                         f"is for segmentation.")
    if width is not None and width != info.num_classes and not scores:
        what = ("features" if info.task == "classification" else "per-pixel features")
        hint = (_features_hint(model_name, info) if info.task == "classification" else
                f"add a head (keras.layers.Conv2D({info.num_classes}, 1, "
                f"activation='softmax'))")
        raise ValueError(f"{model_name} outputs {width} {what}, not class scores of the "
                         f"{info.num_classes} classes of dataset {info.name!r} (an "
                         f"include_top=False backbone?): {hint}. {received}")


def _rebuild(model, policy: Optional[str] = None, *, keep_outputs: bool = True):
    """A copy of ``model`` built in the current scope (e.g. a distribution strategy),
    optionally with dtype policy ``policy`` on every layer but the output layers, which
    stay float32 so outputs and losses are float32 (``keep_outputs=False``: on them too).
    The layers of nested models (a backbone called inside a model with a new head) get the
    policy too; ``trainable`` flags and weights are kept, cast to the copy's variable
    dtypes (a ``"bfloat16"`` policy, as the export's, has bfloat16 variables). The one
    re-typing of a model: training's mixed policies and the export's precisions
    (``zoo.export._cast_model``).

    Raises:
        ValueError: a model whose outputs are not defined (a subclassed model), or one
            Keras cannot rebuild from its config: the message names the layer classes it
            cannot rebuild (a custom class not registered with
            ``keras.saving.register_keras_serializable``) and how to do without.
    """
    from zoo.common import model_outputs, output_layer_name
    what = f"precision {policy!r}" if policy else "training under a distribution strategy"
    outputs = model_outputs(model, f"{what} needs a copy of the model rebuilt from its "
                                   f"config, which takes")
    try:
        config = model.get_config()
        if policy:
            keep = {output_layer_name(t) for t in outputs} if keep_outputs else set()
            _set_policy(config, policy, keep)
        clone = model.__class__.from_config(config)
    except Exception as exc:
        raise _rebuild_error(model, what, policy, exc) from exc
    weights, targets = model.get_weights(), clone.get_weights()
    if len(weights) != len(targets):
        raise ValueError(f"cannot rebuild {model.name!r} under {policy}: the copy has "
                         f"{len(targets)} weight arrays instead of {len(weights)}.")
    clone.set_weights([w if w.dtype == t.dtype else w.astype(t.dtype)
                       for w, t in zip(weights, targets)])
    return clone


_CONTAINERS = ("Functional", "Sequential")


def _unrebuildable_layers(model) -> list:
    """``[(layer, exception)]``: the layers of ``model`` (and of the functional and
    sequential models nested in it) that Keras cannot rebuild from their config."""
    found = []
    for layer in model.layers:
        if type(layer).__name__ in _CONTAINERS:
            found += _unrebuildable_layers(layer)
            continue
        try:
            keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        except Exception as exc:
            found.append((layer, exc))
    return found


def _rebuild_error(model, what, policy, exc) -> ValueError:
    """The one error of :func:`_rebuild` for a model Keras cannot rebuild from its config
    (``exc``, Keras' error): which layer classes, and how to do without."""
    from zoo.common import exception_line
    layers = _unrebuildable_layers(model)
    lambdas = bool(layers) and all(isinstance(layer, keras.layers.Lambda) for layer, _ in layers)
    fix = ("write the function as a layer class registered with "
           "@keras.saving.register_keras_serializable()" if lambdas else
           "register the class with @keras.saving.register_keras_serializable() (with a "
           "get_config() that returns its __init__ arguments)")
    if policy and policy != "float32":
        fix += ", or train or export in float32 (mixed_precision='off', precision='float32')"
    if not layers:
        return ValueError(f"{what} needs a copy of model {model.name!r} rebuilt from its "
                          f"config, and Keras could not rebuild it ({exception_line(exc)}): "
                          f"for a custom layer class, {fix}.")
    classes = list(dict.fromkeys(type(layer).__name__ for layer, _ in layers))
    reason = exception_line(layers[0][1])
    if "Could not locate class" in reason:
        reason = "Keras cannot locate a class not registered with it"
    elif lambdas:   # Keras' message says to load a file with safe_mode=False: none is loaded
        reason = "Keras rebuilds no Lambda layer's Python function from a config"
    received = ", ".join(f"layer {layer.name!r} of class {type(layer).__name__}"
                         for layer, _ in layers)
    return ValueError(f"{what} needs a copy of model {model.name!r} rebuilt from its config, "
                      f"and layer class{'es' if len(classes) > 1 else ''} "
                      f"{', '.join(classes)} could not be rebuilt ({reason}): {fix}. "
                      f"Received: {received}")


def _output_layer_names(config) -> set:
    """The names of the layers whose outputs a functional or sequential model's config
    returns."""
    if "output_layers" not in config:   # Sequential: its last layer
        return {config["layers"][-1]["config"]["name"]} if config["layers"] else set()
    names = set()

    def walk(item):
        if isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[0], str) \
                and isinstance(item[1], int):
            names.add(item[0])
        elif isinstance(item, (list, tuple)):
            for x in item:
                walk(x)
        elif isinstance(item, dict):
            for x in item.values():
                walk(x)

    walk(config["output_layers"])
    return names


def _set_policy(config, policy, keep) -> None:
    """Set ``policy`` on the layers of a functional or sequential model's ``config``, and
    of the models nested in it, but not on its input layers; the layers named in ``keep``
    get float32 (whatever they had: a model built under a global mixed policy has it on its
    output layers too); inside a nested model named in ``keep``, its own output layers do."""
    for layer in config["layers"]:
        name = layer["config"].get("name")
        if layer["class_name"] in _CONTAINERS and isinstance(layer["config"].get("layers"),
                                                              list):
            inner = _output_layer_names(layer["config"]) if name in keep else set()
            _set_policy(layer["config"], policy, inner)
        elif layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = "float32" if name in keep else policy


def _strategy():
    """The strategy ``fit`` trains under: the caller's, when ``fit`` runs inside a
    ``strategy.scope()``; else a ``MirroredStrategy`` over the GPUs when there are
    several; else none."""
    if tf.distribute.has_strategy():
        return tf.distribute.get_strategy()
    return _gpu_strategy()


def _gpu_strategy():
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else None


def _check_plateau_patience(lr_schedule, early_stopping, patience, command=False) -> None:
    """Refuse early stopping that would end a plateau schedule's run before its first
    lowering, in ``fit``'s arguments or (``command``) ``zoo train``'s options."""
    if lr_schedule != "plateau" or not early_stopping or patience > PLATEAU_PATIENCE:
        return
    if command:
        raise ValueError(f"--lr-schedule plateau lowers the learning rate after "
                         f"{PLATEAU_PATIENCE} epochs without improvement, and early stopping "
                         f"with --patience {patience} would end the run first: give "
                         f"--patience above {PLATEAU_PATIENCE} (default {PATIENCE}) or "
                         f"--no-early-stopping")
    raise ValueError(f"lr_schedule='plateau' lowers the learning rate after "
                     f"{PLATEAU_PATIENCE} epochs without improvement, and early stopping "
                     f"with patience={patience} would end the run first: give a patience "
                     f"above {PLATEAU_PATIENCE} (default {PATIENCE}) or no early stopping. "
                     f"Received: lr_schedule='plateau', patience={patience}")


def _optimizer_for(optimizer, model, strategy):
    """``optimizer`` (a name or an instance) as ``fit`` compiles ``model`` with it under
    ``strategy`` (or none). An instance Keras would refuse is replaced by a new one of its
    config (its settings: learning rate or schedule, weight decay, clipping), made here, so in
    the strategy's scope:

    - one whose variables were made outside the strategy's scope (any made before ``fit``'s
      own strategy over several GPUs; Keras' first update of one with slot variables, Adam's
      moments or SGD's momentum, failed: "Mixing different tf.distribute.Strategy objects");
    - one already built for other variables than ``model``'s trainable ones (Keras: "Unknown
      variable ... recreate a new optimizer instance"): passed to a second ``fit`` of a model
      that trains as a rebuilt copy (a mixed policy, a strategy), whose first ``fit`` built it
      for the first copy, or to a model whose trainable set changed (a stage of fine-tuning).

    Where ``model``'s trainable variables are among those it was built for as rebuilt (the
    same paths and shapes: a second ``fit`` of a rebuilt model, perhaps with fewer layers
    trainable), the new one takes over its state (step count, moments), by variable name, so
    that the second ``fit`` goes on as it does where the model trains as it is (Keras keeps an
    instance built for a superset of the variables); else it starts afresh. The instance
    passed keeps its own state: a later ``fit`` given it again goes on from its last new one."""
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    given, optimizer = optimizer, _last_trained(optimizer)
    built = bool(optimizer.built)
    wanted = list(model.trainable_variables)
    had = list(optimizer._trainable_variables) if built else []
    known = {id(v) for v in had}
    foreign = built and any(id(v) not in known for v in wanted)
    outside = strategy is not None and not strategy.extended.variable_created_in_scope(
        getattr(optimizer.iterations, "value", optimizer.iterations))
    if not (foreign or outside):
        return optimizer
    fresh = type(optimizer).from_config(optimizer.get_config())
    _continue_with(given, fresh, model)
    return fresh


def _last_trained(optimizer):
    """The optimizer that trained last in ``optimizer``'s place: the new one an earlier
    ``fit`` made of it (:func:`_continue_with`), else ``optimizer`` itself."""
    return getattr(optimizer, "_zoo_continued_by", None) or optimizer


def _continue_with(given, fresh, model) -> None:
    """Make ``fresh``, a new optimizer of ``given``'s config for ``model``, take over the
    state of the one that trained last in its place (``given`` or an earlier ``fresh``), once
    compiled (:func:`_take_optimizer_state`): where ``model``'s trainable variables are among
    those that one was built for (the same paths and shapes; else it starts afresh)."""
    last = _last_trained(given)
    given._zoo_continued_by = fresh   # (only the last is kept: each holds its copy's variables)
    if not last.built:
        return
    wanted = {(v.path, tuple(v.shape)) for v in model.trainable_variables}
    if wanted <= {(v.path, tuple(v.shape)) for v in last._trainable_variables}:
        fresh._zoo_state_from = last


def _take_optimizer_state(model) -> None:
    """Build ``model``'s optimizer, compiled with a new one of :func:`_optimizer_for`'s
    that takes over an earlier one's state, and give it that state (its variables by name:
    the step count, the moments); built here, in the strategy's scope, once, also where
    the loss scaling of float16 wraps it (whose ``build`` builds the one it wraps)."""
    compiled = model.optimizer
    inner = _inner(compiled)
    source = getattr(inner, "_zoo_state_from", None)
    if source is None:
        return
    del inner._zoo_state_from
    if not compiled.built:
        compiled.build(model.trainable_variables)
    # By the last part of the path: the rest is the name scope it was built in (a loss
    # scaling's, "loss_scale_optimizer/adam/..."); a slot's name holds its variable's path.
    old = {v.path.rsplit("/", 1)[-1]: v for v in source.variables}
    for mine in inner.variables:
        theirs = old.get(mine.path.rsplit("/", 1)[-1])
        if theirs is not None and tuple(theirs.shape) == tuple(mine.shape):
            mine.assign(theirs)


def _check_finite_on_every_replica(optimizer, strategy) -> None:
    """Make a ``LossScaleOptimizer`` compiled under ``strategy`` (several replicas) skip a
    step whose gradients are not finite on any replica. Keras' takes the finiteness of the
    first replica's gradients for all ("the same on each replica, since grads is
    all-reduced"), but Keras 3 sums the replicas' gradients later, in the inner optimizer:
    an overflow on another replica went into the step, and the weights became inf or NaN,
    the loss scale kept. Here each replica's verdict is summed across them first."""
    if strategy is None or strategy.num_replicas_in_sync < 2 or not isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer) or \
            getattr(optimizer, "_checks_every_replica", False):
        return
    check = optimizer.check_finite

    def check_every_replica(grads):
        finite = check(grads)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync < 2:
            return finite
        bad = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                 tf.cast(tf.logical_not(finite), tf.float32))
        return tf.equal(bad, 0.0)

    optimizer.check_finite = check_every_replica
    optimizer._checks_every_replica = True   # (compiled again: not wrapped twice)


def _clip_summed_gradients(optimizer, strategy) -> None:
    """Make ``optimizer``, compiled under ``strategy``, clip each step's gradients of the
    global batch. Keras 3 clips each replica's part before it sums the parts (its
    ``_clip_gradients``, then ``_all_reduce_sum_gradients``), so ``global_clipnorm``
    (``clip_norm``) bounded the norm of each part, not the step's, and ``clipnorm`` and
    ``clipvalue`` clipped the parts too. Here the sum comes first, in ``_clip_gradients``,
    and is not taken again (the one all-reduce, as before); class, config and variables are
    Keras'. Nothing changes without clipping, on one replica, or with gradient accumulation
    (whose accumulators take the parts)."""
    if strategy is None or strategy.num_replicas_in_sync < 2:
        return
    inner = _inner(optimizer)   # a LossScaleOptimizer's
    if getattr(inner, "_sums_before_clipping", False) or \
            inner.gradient_accumulation_steps or not any(
            getattr(inner, name, None) for name in ("global_clipnorm", "clipnorm", "clipvalue")):
        return
    clip, summed = inner._clip_gradients, inner._all_reduce_sum_gradients

    def clip_the_sum(grads):
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync < 2:
            return clip(grads)
        grads = list(grads)
        given = [i for i, g in enumerate(grads) if g is not None]
        for i, g in zip(given, context.all_reduce(tf.distribute.ReduceOp.SUM,
                                                  [grads[i] for i in given])):
            grads[i] = g
        return clip(grads)

    def already_summed(grads_and_vars):
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync < 2:
            return summed(grads_and_vars)
        return list(grads_and_vars)

    inner._clip_gradients, inner._all_reduce_sum_gradients = clip_the_sum, already_summed
    inner._sums_before_clipping = True   # (compiled again: not summed twice)


def _check_replica_batches(strategy, splits) -> None:
    """Refuse ``splits`` whose batches do not split evenly among ``strategy``'s replicas,
    where their size is known (``Splits.batch_size``, else each pipeline's static batch
    dimension): Keras builds the model under a strategy from the mean of the first batch's
    per-replica parts, which fails for parts of different sizes (TensorFlow's ``AddN``
    error). Later, smaller batches (an epoch's last) may split unevenly."""
    replicas = 1 if strategy is None else strategy.num_replicas_in_sync
    if replicas < 2:
        return
    sizes = {}
    for name in ("train", "validation", "test"):
        size = splits.batch_size or getattr(splits, name).element_spec[0].shape[0]
        if size is not None and size % replicas:
            sizes[name] = size
    if sizes:
        raise _uneven_batches_error(replicas, f"batch_size={splits.batch_size}"
                                    if splits.batch_size else ", ".join(
                                        f"{name} batches of {size}"
                                        for name, size in sizes.items()))


def _uneven_batches_error(replicas, received) -> ValueError:
    return ValueError(f"the batches must split evenly among the {replicas} replicas of the "
                      f"tf.distribute strategy fit trains under (Keras builds the model from "
                      f"the first batch's parts, one per replica): use a batch size that is "
                      f"a multiple of {replicas} (batch_size, --batch-size: the global "
                      f"batch). Received: {received}")


def _uneven_replica_parts(exc, strategy) -> Optional[ValueError]:
    """The one line for TensorFlow's error (``exc``) where Keras, under ``strategy``, built
    the model from a first batch whose parts differ in size (a :class:`zoo.data.Splits` of
    unknown batch size, a split smaller than the batch), else ``None``."""
    replicas = 1 if strategy is None else strategy.num_replicas_in_sync
    text = str(exc)
    if replicas < 2 or "AddN" not in text or "must have the same size and shape" not in text:
        return None
    parts = re.findall(r"[Ii]nput \d+: \[(\d+)", text)
    return _uneven_batches_error(replicas, "a first batch split into parts of "
                                 + " and ".join(parts) + " examples" if parts else
                                 "a first batch split into parts of different sizes")


# --------------------------------------------------------------------------------------
# Files.

#: The file in a run's backup directory that records what a resumed run must keep.
_RUN_STATE = "zoo_run.json"


def _write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def plot_learning_curves(history, path, *, title=None, monitor="val_loss"):
    """Save train vs validation curves of the loss and each metric in ``history``, with a
    dashed line at the best epoch by ``monitor`` (the one a run keeps), and the learning
    rate of each epoch (log scale) when it changed (a cosine or plateau schedule).

    Args:
        history: DataFrame (``history.csv``) with ``epoch``, ``loss``, ``val_loss``, ...,
            or a dict of such columns (Keras' ``History.history``).
        path: output PNG.
        title: figure title.
        monitor: the column whose best epoch is marked (the lowest of a ``...loss``, else
            the highest; ``val_loss`` where ``history`` has no such column).

    Returns:
        The names of the plots drawn, in order: the losses and metrics (``loss``,
        ``accuracy``, ...), then ``learning_rate`` if it changed.

    Raises:
        ValueError: ``history`` of another kind, or without a row of a loss or metric.
    """
    import pandas as pd
    if isinstance(history, Mapping):   # Keras' History.history
        history = pd.DataFrame(dict(history))
    if not isinstance(history, pd.DataFrame):
        raise ValueError(f"history must be a pandas.DataFrame (fit's result, "
                         f"pandas.read_csv of history.csv) or a dict of columns. Received: "
                         f"{type(history).__name__}")
    names = [c for c in history.columns
             if c not in ("epoch", "learning_rate") and not str(c).startswith("val_")]
    if not names or not len(history):
        raise ValueError(f"history holds no epoch of a loss or metric to plot (columns "
                         f"{[str(c) for c in history.columns]}, {len(history)} rows).")
    rates = (pd.to_numeric(history["learning_rate"], errors="coerce")
             if "learning_rate" in history else pd.Series(dtype="float64"))
    rates = rates.where(rates > 0)   # (log scale)
    changed = rates.dropna().nunique() > 1
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = names + (["learning_rate"] if changed else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    epochs = history["epoch"] + 1 if "epoch" in history else np.arange(1, len(history) + 1)
    if changed:
        ax = axes[0][-1]
        ax.plot(epochs, rates, "o-", ms=3, color="tab:green")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title("learning rate")
        ax.grid(alpha=0.3)
    for ax, name in zip(axes[0], names):
        ax.plot(epochs, history[name], "o-", ms=3, label=f"train {name}")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], "s-", ms=3, label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    best = _kept_row(history, monitor)
    if best is not None:
        for ax in axes[0]:
            ax.axvline(epochs.iloc[best] if hasattr(epochs, "iloc") else epochs[best],
                       color="grey", ls="--", lw=1)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90))
    finally:
        plt.close(fig)
    return panels


class _EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs_done = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_done += 1


#: The backup's weights file (``keras.callbacks.BackupAndRestore``'s name for it).
_BACKUP_WEIGHTS = "latest.weights.h5"


def _has_backup(backup_dir) -> bool:
    """Whether ``backup_dir`` holds a finished epoch to resume from."""
    return os.path.isfile(os.path.join(backup_dir, _BACKUP_WEIGHTS))


def _backup_epoch(backup_dir) -> int:
    """The number of epochs the backup in ``backup_dir`` has finished (its weights file
    records it; Keras' ``training_metadata.json`` otherwise)."""
    import h5py
    with h5py.File(os.path.join(backup_dir, _BACKUP_WEIGHTS), "r") as f:
        if "zoo_epoch" in f.attrs:
            return int(f.attrs["zoo_epoch"])
    with open(os.path.join(backup_dir, "training_metadata.json")) as f:
        return int(json.load(f)["epoch"])


def _epochs_backed_up(backup_dir) -> int:
    """:func:`_backup_epoch`, 0 where ``backup_dir`` holds no backup or one it cannot read."""
    try:
        return _backup_epoch(backup_dir) if _has_backup(backup_dir) else 0
    except (OSError, KeyError, ValueError):
        return 0


def _backup_seconds(backup_dir) -> float:
    """The seconds of training the backup in ``backup_dir`` ends (0 where it has none)."""
    import h5py
    try:
        with h5py.File(os.path.join(backup_dir, _BACKUP_WEIGHTS), "r") as f:
            return float(f.attrs.get("zoo_seconds", 0.0))
    except OSError:
        return 0.0


class _Backup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose backup a kill cannot leave half-written: the weights (with
    the optimizer's state) go to a temporary file that records the epoch it ends and is
    then renamed onto the backup, so weights and epoch always belong together. ``seconds``
    (``() -> the run's seconds of training so far``) is recorded with them, so that a
    resumed run reports the training time of all its epochs."""

    def __init__(self, backup_dir, seconds=None):
        # Kept when training ends: fit removes it once the run's files are written, so that
        # a run killed in between (scoring the test split, writing) resumes without training.
        super().__init__(backup_dir, delete_checkpoint=False)
        self._seconds = seconds

    def _save_model(self):
        import h5py
        os.makedirs(self.backup_dir, exist_ok=True)

        def amend(tmp):
            with h5py.File(tmp, "a") as f:
                f.attrs["zoo_epoch"] = int(self._current_epoch)
                if self._seconds is not None:
                    f.attrs["zoo_seconds"] = float(self._seconds())
                states = _seed_states(self.model)
                if states:
                    f.attrs["zoo_seed_states"] = np.stack([v.numpy() for v in states])

        save_weights_file(self.model, self._weights_path, amend)
        atomic_write_text(self._training_metadata_path, json.dumps(
            {"epoch": self._current_epoch, "batch": self._last_batch_seen}))

    def on_train_begin(self, logs=None):
        if not _has_backup(self.backup_dir):
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self._weights_path)
        self.model._initial_epoch = _backup_epoch(self.backup_dir)
        import h5py
        with h5py.File(self._weights_path, "r") as f:
            saved = f.attrs.get("zoo_seed_states")
        states = _seed_states(self.model)
        if saved is not None and len(saved) == len(states):
            for variable, value in zip(states, saved):
                variable.assign(value)


def _seed_states(model):
    """The state variables of ``model``'s random generators (a ``Dropout``'s, say), in the
    model's order. Keras' weights files leave them out, so a resumed run's dropout drew the
    masks of the first epochs again: :class:`_Backup` records them beside the epoch."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables
            if id(v) not in weights and v.path.endswith("seed_generator_state")]


class _BestCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` (atomically) after each epoch whose ``monitor`` beats the
    best so far (``best``: the best of the epochs before a resume, if any)."""

    def __init__(self, path, monitor, mode, best=None):
        super().__init__()
        self.path, self.monitor, self.mode, self.best = path, monitor, mode, best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if "loss" not in logs:   # Keras ends an epoch over data that yields nothing this way
            raise ValueError(f"The training split yielded no batch in epoch {epoch + 1}, so "
                             f"nothing was trained (an empty or filtered-out Splits.train?).")
        current = logs.get(self.monitor)
        if current is None:
            empty = self.monitor.startswith("val_") and not any(k.startswith("val_")
                                                                 for k in logs)
            raise ValueError(f"monitor {self.monitor!r} is not logged by this run"
                             f"{' (the validation split yielded no batch)' if empty else ''}; "
                             f"early stopping and the best checkpoint watch it. It logs: "
                             f"{', '.join(sorted(logs))}. Received: monitor={self.monitor!r}")
        if not math.isfinite(float(current)):
            return
        current = float(current)
        if _improves(current, self.best, self.mode):
            self.best = current
            atomic_write(self.path, self.model.save)


class _EarlyStopping(keras.callbacks.EarlyStopping):
    """``EarlyStopping`` that a resumed run starts where the killed one stood: its best
    value and the epochs waited since (``resume``: ``(best, wait)``, else ``None``)."""

    def __init__(self, *args, resume=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._resume = resume

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._resume is not None:
            self.best, self.wait = self._resume


class StopWhenInterrupted(keras.callbacks.Callback):
    """Raise again, after each batch and epoch, a Ctrl-C or SIGTERM of the ``zoo`` command
    that Keras swallowed (:func:`zoo.cli.raise_if_interrupted`): the training stops, its
    clean-up runs, and the command says so, as for any other."""

    async_safe = True   # no reason for Keras to run the batch hooks in step

    def _check(self, *args, **kwargs):
        from zoo.cli import raise_if_interrupted
        raise_if_interrupted()

    on_train_batch_end = on_test_batch_end = on_epoch_end = on_test_end = _check


class _SyncedCSVLogger(keras.callbacks.CSVLogger):
    """Keras' CSVLogger whose rows reach the disk at each epoch's end, before the epoch's
    backup (which follows it): a resume trusts the rows up to the backup's epoch, and after a
    power loss an unsynced file could have lost them."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        os.fsync(self.csv_file.fileno())


class _TerminateOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras' ``TerminateOnNaN``, whose ``Batch N: Invalid loss, terminating training`` line
    is printed only with ``verbose`` (beside the progress bars): the run then fails with
    ``Training diverged: ...`` (or keeps its best epoch), which says it all."""

    def __init__(self, verbose=1):
        super().__init__()
        self.verbose = verbose

    def on_batch_end(self, batch, logs=None):
        if self.verbose:
            return super().on_batch_end(batch, logs)
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.model.stop_training = True


def _best_row(history, column, mode):
    """The position of the best value of ``column`` in ``history`` (a DataFrame; ``mode``
    ``"min"`` or ``"max"``), or ``None`` when it has no value."""
    if column not in history or not history[column].notna().any():
        return None
    values = history[column].to_numpy(dtype="float64")
    return int(np.nanargmin(values) if mode == "min" else np.nanargmax(values))


def _mode(monitor) -> str:
    """``"min"`` for a loss (a name ending in ``loss``), else ``"max"``: which way
    ``monitor`` improves."""
    return "min" if str(monitor).endswith("loss") else "max"


def _improves(current, best, mode) -> bool:
    """Whether ``current`` is better than ``best`` (``None``: nothing yet) in ``mode``."""
    return best is None or (current < best if mode == "min" else current > best)


def _kept_row(history, monitor):
    """The position in ``history`` of the epoch a run keeps, the best by ``monitor`` (the
    lowest of a ``...loss``, else the highest; ``val_loss`` where ``history`` has no such
    column), or ``None``."""
    best_by = monitor if monitor in history else "val_loss"
    return _best_row(history, best_by, _mode(best_by))


def _resume_state(history, monitor, mode):
    """``(best, epochs waited since the best)`` of ``monitor`` in the epochs of a killed run
    (a ``history.csv`` DataFrame), or ``None`` when it has none."""
    best_at = _best_row(history, monitor, mode)
    if best_at is None:
        return None
    return float(history[monitor].iloc[best_at]), len(history) - 1 - best_at


def _label_guard(ds, num_classes, task, ignore_label=None):
    """Fail with a clear message when a label or mask value is outside ``0..num_classes-1``
    and is not the masks' ``ignore_label``; :func:`label_error_line` reads it, with the
    largest such value of the batch."""
    def check(x, y):
        # Float labels are class indices too, if whole: 2.7 would train as class 2 unseen.
        whole = " whole numbers" if y.dtype.is_floating else ""
        msg = (f"labels outside num_classes: the model has {num_classes} outputs, so "
               f"{'mask values' if task == 'segmentation' else 'labels'} must be{whole} in "
               f"0..{num_classes - 1}")
        known = tf.logical_and(y >= 0, y < tf.cast(num_classes, y.dtype))
        if whole:
            known = tf.logical_and(known, tf.equal(y, tf.floor(y)))
        if ignore_label is not None:
            msg += f" or {ignore_label} (the ignore label)"
            known = tf.logical_or(known, tf.equal(y, tf.cast(ignore_label, y.dtype)))
        found = tf.reduce_max(tf.where(known, tf.constant(y.dtype.min, y.dtype), y))
        check = tf.debugging.Assert(tf.reduce_all(known), [msg + "; found", found],
                                    summarize=1)
        with tf.control_dependencies([check]):
            return tf.identity(x), tf.identity(y)
    return ds.map(check)


def label_error_line(exc) -> Optional[str]:
    """The one line of :func:`_label_guard`'s assertion in a TensorFlow error ``exc``
    (without the op names TensorFlow prints around it), or ``None`` for another error.
    Masks without an ignore label that hold 255 get the hint Pascal VOC-style data needs
    (255 marks the pixels to leave out there)."""
    found = re.search(r"(labels outside num_classes[^\]\n]*)\] \[([^\]\n]*)\]", str(exc))
    if not found:
        return None
    line, value = found.group(1).strip(), found.group(2).strip()
    line = f"{line} {value}"
    if "mask values" in line and "ignore label" not in line and value == "255":
        line += (f" (if {value} marks pixels to leave out of training and evaluation, "
                 f"pass ignore_label={value})")
    return line


def label_errors_as(error_type=ValueError, dataset=None):
    """A context inside which :func:`_label_guard`'s assertion leaves as ``error_type`` with
    its one line (:func:`label_error_line`) instead of TensorFlow's error, and so does an
    image of the dataset named ``dataset`` (a folder's) that cannot be decoded, naming the
    files (``zoo.data._decode_failure``); any other error as it is."""
    def translate(exc):
        line = label_error_line(exc)
        if line:
            return error_type(line)
        error = zdata._decode_failure(exc, dataset) if dataset is not None else None
        return None if error is None else error_type(str(error))
    return zdata.tf_errors_as(translate)


def _crop_masks(ds, out_hw):
    """Centre-crop masks to the model's output size (U-Net with valid convolutions)."""
    def crop(x, y):
        h, w = y.shape[1], y.shape[2]
        top, left = (h - out_hw[0]) // 2, (w - out_hw[1]) // 2
        return x, y[:, top:top + out_hw[0], left:left + out_hw[1]]
    return ds.map(crop)


def cosine_schedule(learning_rate, epochs):
    """A callback setting epoch ``e``'s learning rate to
    ``learning_rate * (1 + cos(pi * e / epochs)) / 2`` (resumes correctly: it depends on
    the epoch index only).

    Args:
        learning_rate: the first epoch's learning rate, a positive finite number.
        epochs: the number of epochs the schedule spans, a positive integer.

    Returns:
        A ``keras.callbacks.LearningRateScheduler``.

    Raises:
        ValueError: another ``learning_rate`` or ``epochs``.
    """
    _check_learning_rate(learning_rate)
    base, epochs = float(learning_rate), zdata.check_count("epochs", epochs)
    return keras.callbacks.LearningRateScheduler(
        lambda epoch: base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)))




class PlateauSchedule(keras.callbacks.Callback):
    """Divide the learning rate by 10 (``PLATEAU_FACTOR``) when ``monitor`` has not improved
    for ``PLATEAU_PATIENCE`` epochs, down to ``PLATEAU_LOWEST`` times the first rate, as
    Keras' ``ReduceLROnPlateau`` with ``cooldown=0`` and ``min_delta=0`` (early stopping's
    and the best checkpoint's notion of improvement).

    Args:
        monitor: the logged quantity watched (``val_loss``, ``val_accuracy``, ...).
        mode: ``"min"`` or ``"max"``.
        learning_rate: the first epoch's rate (``PLATEAU_LOWEST`` is relative to it).
        done: the monitored values of the epochs trained before a resume, replayed so the
            schedule stands where a killed run's stood (the rate itself is restored with the
            optimizer).
        verbose: print a line when the rate is lowered.

    Raises:
        ValueError: a ``monitor`` that is no non-empty string, a ``mode`` other than
            ``"min"``/``"max"``, a ``learning_rate`` that is no positive finite number, or
            ``done`` that is no list of numbers or ``None``.
    """

    def __init__(self, monitor, mode, learning_rate, *, done=(), verbose=0):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:   # ("" or 5 were never found)
            raise ValueError(f"monitor must be the name of a logged quantity, such as "
                             f"'val_loss' or 'val_accuracy'. Received: monitor={monitor!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'. Received: mode={mode!r}")
        _check_learning_rate(learning_rate)
        values = as_list(done)   # (5 was "'int' object is not iterable")
        if values is None or not all(v is None or (isinstance(v, numbers.Real)
                                                   and not isinstance(v, bool))
                                     for v in values):
            raise ValueError(f"done must be a list of the monitored values (numbers or None) "
                             f"of the epochs trained before a resume. "
                             f"Received: done={zdata._short(done)}")
        self.monitor, self.mode, self.verbose = monitor, mode, verbose
        self.lowest = float(learning_rate) * PLATEAU_LOWEST
        self.best, self.wait, self.rate = None, 0, float(learning_rate)
        for value in values:
            self._step(value, self.rate)

    def _step(self, current, rate):
        """Count one epoch whose monitored value is ``current``, at ``rate``: the new rate
        when it is to be lowered, else ``None``."""
        if current is None:
            return None
        # A value that is no finite number is an epoch without improvement, as Keras'
        # early stopping and ReduceLROnPlateau count it (a lower rate may recover a run
        # whose validation loss overflowed).
        current = float(current)
        if math.isfinite(current) and _improves(current, self.best, self.mode):
            self.best, self.wait = current, 0
            return None
        self.wait += 1
        # (a relative margin: the rate is a float32 variable)
        if self.wait < PLATEAU_PATIENCE or rate <= self.lowest * (1 + 1e-4):
            return None
        self.wait = 0
        self.rate = max(rate * PLATEAU_FACTOR, self.lowest)
        return self.rate

    def on_epoch_end(self, epoch, logs=None):
        lowered = self._step((logs or {}).get(self.monitor),
                             _current_rate(self.model.optimizer))
        if lowered is not None:
            self.model.optimizer.learning_rate = lowered
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: {self.monitor} has not improved for "
                      f"{PLATEAU_PATIENCE} epochs; learning rate lowered to {lowered:.4g}")


def _is_xla_failure(exc) -> bool:
    text = str(exc).lower()
    return any(k in text for k in ("xla", "jit", "compil", "tf2xla", "unsupported op"))


# --------------------------------------------------------------------------------------
# fit.

#: What ``batch_norm_momentum="auto"`` lowers a larger momentum to.
AUTO_BATCH_NORM_MOMENTUM = 0.9


def _check_batch_norm_momentum(momentum):
    if momentum is None or momentum == "auto":
        return
    if not _is_number(momentum) or not 0 < momentum < 1:
        raise ValueError(f"batch_norm_momentum must be 'auto', None or a number in (0, 1). "
                         f"Received: batch_norm_momentum={momentum!r}")


def set_batch_norm_momentum(model, momentum="auto") -> Optional[float]:
    """Set the momentum of the batch norms' moving statistics in ``model`` (nested models
    included) for training: of the batch norms that train.

    The builders keep Keras' 0.99 (as the papers' networks and ``keras.applications``
    have it): the moving statistics average about 100 steps, and on a small dataset (the
    embedded ``digits``: 40 steps an epoch) they trail weights that move fast, so a deep
    network evaluates near chance while it trains well. With momentum 0.9 (PyTorch's),
    ResNet-50, Xception and Inception-v3 trained on digits for 5 epochs score 0.92-0.94 on
    the test split instead of 0.10.

    A batch norm that is not trainable (a frozen backbone's) runs in inference mode in
    Keras 3: its moving statistics do not move, and it is left as it is (its momentum is
    its own again if it is unfrozen later).

    Args:
        model: a ``keras.Model``.
        momentum: ``"auto"`` (lower each momentum above :data:`AUTO_BATCH_NORM_MOMENTUM`
            to it), ``None`` (leave them) or a number in (0, 1) (set every one).

    Returns:
        The momentum set (``None`` when nothing was asked, or no trainable batch norm was
        changed: the model has none, all are frozen, or, for ``"auto"``, none is above it).

    Raises:
        ValueError: another ``momentum``, or a ``model`` that is no ``keras.Model``.
    """
    _check_batch_norm_momentum(momentum)
    if not isinstance(model, keras.Model):   # (was "no attribute '_flatten_layers'")
        raise ValueError(f"set_batch_norm_momentum takes a keras.Model. "
                         f"Received: {received_text(model)}")
    if momentum is None:
        return None
    target = AUTO_BATCH_NORM_MOMENTUM if momentum == "auto" else float(momentum)
    changed = False
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable and (
                momentum != "auto" or layer.momentum > target):
            layer.momentum = target
            changed = True
    return target if changed else None


# Auxiliary classifiers (GoogLeNet's, paper section 5): trained with the main output, their
# losses weighted, and left out at inference (exports and zoo predict use the main output).


def _check_aux_loss_weight(aux_loss_weight):
    if aux_loss_weight is not None and (not _is_number(aux_loss_weight)
                                        or not math.isfinite(aux_loss_weight)
                                        or aux_loss_weight < 0):
        raise ValueError(f"aux_loss_weight must be None (the paper's {AUX_LOSS_WEIGHT} for a "
                         f"model with auxiliary classifiers) or a finite number >= 0. "
                         f"Received: aux_loss_weight={aux_loss_weight!r}")


def _without_aux_classifiers(model_name, aux_loss_weight) -> ValueError:
    """The error for an ``aux_loss_weight`` given for a model without auxiliary
    classifiers (``fit``, and ``zoo train`` before the data loads)."""
    return ValueError(f"aux_loss_weight weighs the losses of auxiliary classifiers, and "
                      f"{model_name} has none (one output; googlenet has them with "
                      f"aux_logits=True, --model-arg aux_logits=true). Received: "
                      f"aux_loss_weight={aux_loss_weight!r}")


def _check_one_class_each(model):
    """Refuse a main output ending in a sigmoid over several units (multi-label scores):
    :func:`zoo.export.check_one_class_each`, so what fit trains exports."""
    from zoo.common import main_output_index
    from zoo.export import check_one_class_each
    check_one_class_each(model.outputs[main_output_index(model, "fit trains")], "fit trains",
                         "a softmax or logits over the classes")


def _aux_heads(model, model_name):
    """``(main, aux)``: the output names (Keras' ``model.output_names``) of the main output
    and of the auxiliary classifiers of a model with several outputs, or ``None`` for a
    model with one output. The main output is told from the auxiliary classifiers as the
    export tells it (:func:`zoo.common.main_output_index`: auxiliary classifiers are the
    outputs whose layers' names start with ``aux``), and every output must be a
    classifier's ``[N, K]`` of the same shape, so that the labels go to each.

    Raises:
        ValueError: several outputs of another kind; a model whose outputs Keras does not
            define (a subclassed model, a ``Sequential`` model not built yet).
    """
    from zoo.common import main_output_index, model_outputs, output_layer_name
    if len(model_outputs(model, "fit trains")) == 1:   # (a subclassed model: refused)
        return None
    main = main_output_index(model, "fit trains")
    shapes = [tuple(t.shape) for t in model.outputs]
    if len(shapes[0]) != 2 or len(set(shapes)) != 1:
        received = ", ".join(f"{output_layer_name(t)} {shape}"
                             for t, shape in zip(model.outputs, shapes))
        raise ValueError(f"fit trains models with one output, or with one main output and "
                         f"auxiliary classifiers (output layers whose names start with 'aux', "
                         f"as googlenet(aux_logits=True)'s) that all output [N, classes] "
                         f"alike; {model_name} has {len(shapes)} outputs of another kind. "
                         f"Received: outputs {received}")
    names = list(model.output_names)
    return names[main], tuple(n for i, n in enumerate(names) if i != main)


def _aux_targets(ds, heads, class_weights=None):
    """``ds`` of ``(images, labels)`` as ``(images, {output name: labels})``, the labels for
    every output of ``heads`` (``(main, aux)``, see :func:`_aux_heads`). With
    ``class_weights`` (one per class index) each example also gets its class's weight as
    its sample weight, for every output's loss: what Keras' ``fit(class_weight=...)`` does
    for a model with one output (it refuses several)."""
    names = (heads[0], *heads[1])
    table = None if class_weights is None else tf.constant(class_weights, tf.float32)

    def fan_out(x, y):
        targets = {name: y for name in names}
        if table is None:
            return x, targets
        return x, targets, tf.gather(table, tf.cast(y, tf.int32))
    return ds.map(fan_out)


def _compile_aux(model, heads, aux_loss_weight):
    """Compile ``model``, compiled by :func:`compile_model` (its loss, metrics, optimizer
    and XLA setting), again for its auxiliary classifiers: the same loss on every output,
    weighted 1 for the main output and ``aux_loss_weight`` for each auxiliary one, the
    metrics on the main output only."""
    main, aux = heads
    config = model.get_compile_config()
    metrics = (keras.saving.deserialize_keras_object(config["metrics"])
               if config.get("metrics") else None)
    model.compile(optimizer=model.optimizer, loss={name: model.loss for name in (main, *aux)},
                  loss_weights={main: 1.0, **{name: float(aux_loss_weight) for name in aux}},
                  metrics={main: metrics} if metrics else None,
                  jit_compile=config["jit_compile"])


def _compile_like(model, given) -> None:
    """Compile ``model``, a rebuilt copy of ``given`` (``fit(compile=False)`` under a mixed
    policy or a strategy), as ``given`` is compiled: its loss, metrics and settings, and a
    new optimizer of its optimizer's config, with loss scaling where ``model`` computes in
    float16 (as :func:`compile_model`). A ``given`` never compiled is left to Keras' error."""
    config = given.get_compile_config()
    if not config:
        return
    kwargs = keras.saving.deserialize_keras_object(config)
    opt = kwargs.get("optimizer")
    if isinstance(given.optimizer, keras.optimizers.Optimizer) and opt is not None:
        # a second fit goes on from the first's state, as where ``given`` trains itself
        _continue_with(_inner(given.optimizer), _inner(opt), model)
    if opt is not None and _computes_in_float16(model) and not isinstance(
            opt, keras.optimizers.LossScaleOptimizer):
        kwargs["optimizer"] = keras.optimizers.LossScaleOptimizer(opt)
    model.compile(**kwargs)


def _inner(optimizer):
    """The optimizer a ``LossScaleOptimizer`` wraps, else ``optimizer``."""
    return getattr(optimizer, "inner_optimizer", None) or optimizer


def _main_output_logs(logs, heads) -> dict:
    """``logs`` (Keras' for a model with auxiliary classifiers) under a one-output run's
    names: the main output's loss and metrics lose their output's name
    (``predictions_loss`` -> ``loss``, ``val_predictions_accuracy`` -> ``val_accuracy``);
    Keras' ``loss``, the weighted sum that is minimised, becomes ``total_loss``; the
    auxiliary classifiers' losses keep Keras' names (``aux1_predictions_loss``)."""
    main, aux = heads
    out = {}
    for key, value in logs.items():
        prefix, name = ("val_", key[4:]) if key.startswith("val_") else ("", key)
        if name == "loss":
            name = "total_loss"
        elif name.startswith(f"{main}_") and not any(name.startswith(f"{a}_") for a in aux):
            name = name[len(main) + 1:]
        out[prefix + name] = value
    return out


class _LearningRateLog(keras.callbacks.Callback):
    """Add the learning rate an epoch trained at to its logs (``learning_rate``), before the
    callbacks that write them (``history.csv``, TensorBoard, the progress bar). Keras 3's
    ``LearningRateScheduler`` logs it after them, so a cosine schedule's epochs could not be
    read back. An optimizer with a schedule of its own changes the rate every step: its
    value at the epoch's end (the next step's) is logged."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            # a schedule of its own gives it at the epoch's end
            logs["learning_rate"] = _current_rate(self.model.optimizer)


class _MainOutputLogs(keras.callbacks.Callback):
    """Rename the logs of a model with auxiliary classifiers in place
    (:func:`_main_output_logs`). First of the callbacks, so that the others (history.csv,
    the best checkpoint, early stopping, TensorBoard, the progress bar) see the names of a
    one-output run and watch the main output."""

    def __init__(self, heads):
        super().__init__()
        self.heads = heads

    def _rename(self, logs):
        if logs:
            renamed = _main_output_logs(logs, self.heads)
            logs.clear()
            logs.update(renamed)

    def on_train_batch_end(self, batch, logs=None):
        self._rename(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._rename(logs)

    def on_train_end(self, logs=None):
        self._rename(logs)


#: Epochs without improvement before early stopping ends a run (``fit``, ``zoo train``).
PATIENCE = 8


def _new_run_dir(model_name, dataset_name) -> str:
    """A new directory ``runs/<model>-<dataset>-<time>`` made now (absolute path), with
    ``-2``, ``-3``, ... added when that name is taken: runs started in the same second (a
    sweep launched at once) each get their own instead of training into one."""
    base = os.path.abspath(_default_run_dir(model_name, dataset_name))
    os.makedirs(os.path.dirname(base), exist_ok=True)
    for n in range(1, 10000):
        path = base if n == 1 else f"{base}-{n}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run directory name {base}-N; pass run_dir (--run-dir)")


#: The run directories this process holds (:func:`hold_run_dir`): path -> [fd, holds].
_HELD_RUN_DIRS = {}
_HELD_LOCK = threading.Lock()


def _flock_holder(fd) -> str:
    """``process PID``: the process holding a ``flock`` on ``fd``'s file, as Linux's
    ``/proc/locks`` names it; ``another process`` where it cannot be read."""
    st = os.fstat(fd)
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return "another process"
    for line in lines:   # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF"
        parts = line.split()
        if "->" in parts or "FLOCK" not in parts or len(parts) < 6:
            continue      # a waiter's line, or another kind of lock
        try:
            major, minor, inode = parts[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == want:
                return f"process {int(parts[4])}"
        except ValueError:
            continue
    return "another process"


def _lock_dir(path):
    """An exclusive ``flock`` on the directory ``path`` (made if missing), held by the file
    descriptor returned; ``None`` where the file system has no such locks.

    Raises:
        FileExistsError: another process holds it.
    """
    import fcntl
    while True:
        os.makedirs(path, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:   # removed meanwhile (a failed run's clean-up)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _flock_holder(fd)
            os.close(fd)
            raise FileExistsError(
                f"{path} is in use: {holder} is training in it (zoo train or "
                f"zoo.train.fit); wait for it to end, or use another run directory "
                f"(run_dir, --run-dir)") from None
        except OSError:   # no flock here (some network file systems)
            os.close(fd)
            return None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)   # locked a directory removed (and maybe made again) since it opened


@contextlib.contextmanager
def hold_run_dir(run_dir=None, *, model_name=None, dataset_name=None):
    """Hold a run directory for this process while the context runs, so that a second
    process training into it (``zoo train``, :func:`fit`) is refused instead of writing over
    this one's files (its checkpoints, backup and ``history.csv``). The hold is an exclusive
    ``flock`` on the directory itself (no file is added to it), released when the context
    ends or the process dies; holds of one directory nested in a process are one hold.

    Args:
        run_dir: the run directory (made if missing), or ``None`` for a new
            ``runs/<model_name>-<dataset_name>-<time>`` (``-2``, ``-3``, ... added when that
            name is taken).
        model_name, dataset_name: the default directory's name, when ``run_dir`` is ``None``.

    Yields:
        The run directory's absolute path. A directory made here that is empty at the end
        (a run that failed and removed what it wrote) is removed.

    Raises:
        FileExistsError: another process holds the directory (naming its process id).
        ValueError: ``run_dir`` is no path where a directory can be made (``""`` was the
            current directory, a file was ``[Errno 17] File exists``), or, without one,
            ``model_name`` or ``dataset_name`` is no non-empty string.
    """
    check_run_dir(run_dir)
    if run_dir is None:
        for key, value in (("model_name", model_name), ("dataset_name", dataset_name)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"hold_run_dir: model_name and dataset_name must be non-empty "
                                 f"strings (they name the new run directory) when run_dir is "
                                 f"None. Received: {key}={zdata._short(value)}")
        path, made = _new_run_dir(model_name, dataset_name), True
    else:
        path = os.path.abspath(os.fspath(run_dir))
        made = not os.path.isdir(path)
    with _HELD_LOCK:
        held = _HELD_RUN_DIRS.get(path)
        if held is not None:
            held[1] += 1
    if held is None:
        try:
            held = [_lock_dir(path), 1]
        except BaseException:
            if made:
                with contextlib.suppress(OSError):
                    os.rmdir(path)
            raise
        with _HELD_LOCK:
            _HELD_RUN_DIRS[path] = held
    try:
        yield path
    finally:
        with _HELD_LOCK:
            held[1] -= 1
            last = held[1] == 0
            if last:
                del _HELD_RUN_DIRS[path]
        if last:
            if made:
                with contextlib.suppress(OSError):   # not empty: the run's files stay
                    os.rmdir(path)
            if held[0] is not None:
                os.close(held[0])


_FIT_HOLDS = threading.local()


def _holding_run_dir(function):
    """``fit``: the run directory its call holds (:func:`_hold_for_call`) is released when
    the call returns or raises."""
    @functools.wraps(function)
    def call(*args, **kwargs):
        outer = getattr(_FIT_HOLDS, "stack", None)
        with contextlib.ExitStack() as stack:
            _FIT_HOLDS.stack = stack
            try:
                return function(*args, **kwargs)
            finally:
                _FIT_HOLDS.stack = outer
    return call


def _hold_for_call(run_dir, model_name, dataset_name) -> str:
    """Hold ``run_dir`` (``None``: a new default one) until the ``fit`` call ends; its path."""
    return _FIT_HOLDS.stack.enter_context(
        hold_run_dir(run_dir, model_name=model_name, dataset_name=dataset_name))


@_holding_run_dir
def fit(model, dataset, *, epochs=10, run_dir=None, batch_size=32, learning_rate=1e-3,
        optimizer="adam", augment=None, jit_compile="auto", mixed_precision="auto",
        early_stopping=True, patience=None, seed=0, data_dir=None, verbose=1,
        model_name=None, monitor="val_loss", label_smoothing=0.0, weight_decay=None,
        clip_norm=None, callbacks=None, model_args=None, download=False, compile=True,
        lr_schedule="constant", deterministic=False, class_weight=None,
        batch_norm_momentum="auto", aux_loss_weight=None, ignore_label=None, replay=True):
    """Train ``model`` on ``dataset`` and write a run directory.

    Args:
        model: a Keras model, or a registered model name (built for the dataset: its
            classes, channels and the model's default input size, or the size of a given
            :class:`zoo.data.Splits`). A model trained under mixed precision or a strategy
            is trained as a rebuilt copy (``fit.last_model``) whose weights (the best
            epoch's) are copied back into the model passed in at the end.
        dataset: a dataset name for :func:`zoo.data.load_splits` (loaded at the model's
            input size and channels) or a :class:`zoo.data.Splits`.
        epochs: most epochs (early stopping may end sooner).
        run_dir: output directory (default ``runs/<model>-<dataset>-<time>``, ``-2``,
            ``-3``, ... added when that name is taken). Held while the call runs: another
            process training into it is refused (:func:`hold_run_dir`). Started
            again with the same ``run_dir`` after a crash or ``kill -9``, training resumes
            from the last finished epoch, with the optimizer's state, the learning-rate
            schedule, early stopping and the best checkpoint where they stood; the data
            order, augmentation and dropout go on where the killed run's stood (the epochs
            done are read through again first, without training: ``replay``), so the result
            is an uninterrupted run's, from a ``Splits`` not read yet in the process (as a
            new process loads it; one already read goes on from where it stands). A finished
            run's directory (same model and dataset) is trained in afresh, that run's
            files set aside first (put back if the new run fails before an epoch is backed
            up).
        batch_size: batch size when ``dataset`` is a name; under a strategy of several
            replicas the global batch, split among them, a multiple of their number.
        learning_rate, optimizer, label_smoothing, weight_decay, clip_norm: see
            :func:`compile_model`.
        augment: the dataset's default augmentation (``None``/``True``), ``False``, or a
            dict of settings (see :func:`zoo.data.augmenter`); training split only.
        jit_compile: XLA: ``True``, ``False`` or ``"auto"`` (on GPUs only, and not under a
            strategy, which XLA cannot compile the train step under; on CPUs the oneDNN
            kernels are faster); falls back to no XLA when the model does not compile with it.
        mixed_precision: ``"auto"`` (float16 compute on GPUs with tensor cores, bfloat16
            on CPUs with AMX and on AMD CPUs with AVX512_BF16, float32 elsewhere),
            ``"float16"``/``True``, ``"bfloat16"`` (opt-in elsewhere; measure) or
            ``"off"``/``False``; variables and output layers stay float32 (see
            :func:`resolve_mixed_precision`).
        early_stopping: stop when ``monitor`` stops improving for ``patience`` epochs and
            restore the best weights.
        patience: epochs without improvement before stopping (default 8); refused with
            ``early_stopping=False``, which it would not change.
        seed: seeds Python, NumPy, TensorFlow and Keras (``keras.utils.set_random_seed``),
            shuffling and augmentation: the same initial weights and data order, but
            threaded kernels still make two runs differ slightly unless ``deterministic``.
        deterministic: ``True`` turns on TensorFlow's op determinism
            (``tf.config.experimental.enable_op_determinism``) so that a run with the same
            seed, on the same machine and software, gives the same weights and metrics bit
            for bit. It is process-wide and stays on for everything after it (TensorFlow
            cannot turn it off), and costs some speed (LeNet-5 on digits: 6-17% slower).
        replay: a resumed run reads the epochs done through again, without training, so
            that its remaining epochs get the data order and augmentation of an
            uninterrupted run (default). ``False`` skips that pass, which costs the input
            pipeline's time of those epochs (all of their time where the pipeline is what
            limits training): the remaining epochs then read the first epochs' order and
            augmentation again, and the run ends close to, not equal to, an uninterrupted
            one.
        data_dir, download: tensorflow-datasets data directory / allow downloads.
        verbose: Keras progress output (0, 1 progress bar, 2 one line per epoch).
        model_name: the registry name recorded in ``info.json`` (default: model.name).
        monitor: quantity for early stopping and the best checkpoint (``val_loss``,
            ``val_accuracy``, ``val_mean_iou``).
        callbacks: extra Keras callbacks.
        lr_schedule: ``"constant"``, ``"cosine"`` (per-epoch cosine decay from
            ``learning_rate``, or an optimizer instance's own, towards 0 over ``epochs``) or
            ``"plateau"`` (divided by 10 after ``PLATEAU_PATIENCE`` epochs without
            improvement of ``monitor``, at most 3 times: :class:`PlateauSchedule`; with early
            stopping, ``patience`` must exceed ``PLATEAU_PATIENCE``). Both resume where a
            killed run stood; refused for an optimizer with a schedule of its own.
        model_args: builder keyword arguments when ``model`` is a name.
        download: let tensorflow-datasets download missing data.
        compile: compile with :func:`compile_model` (``False``: keep the model's own
            compilation, which a rebuilt copy gets too (a new optimizer of its config, with
            loss scaling in float16, going on from the state of the last that trained in
            its place), and whose optimizer ``info.json`` records; a model
            that is not compiled is refused; so are ``label_smoothing`` and ``weight_decay``
            with it, settings of fit's compilation).
        class_weight: weights of the training examples by class, for imbalanced
            classification data (Keras' ``fit(class_weight=...)``): ``None`` (none),
            ``"balanced"`` (``n_samples / (n_classes * count_c)`` from the train split's
            examples per class, as scikit-learn's; they average 1 over the split) or a
            mapping ``{label name or class index: weight}`` (classes not named get 1.0). Keras
            multiplies each training example's loss by its weight and divides by the batch
            size; the metrics (accuracy) and the validation and test losses are not weighted.
            Segmentation is refused (its Dice term already weighs every class equally).
            ``info.json`` records the weights; a killed run resumes with the same weights
            only. See :func:`resolve_class_weight`.
        batch_norm_momentum: the momentum of the batch norms' moving statistics while
            training: ``"auto"`` (default) lowers a momentum above 0.9 (Keras' 0.99, which
            the builders keep as the papers' networks and ``keras.applications`` have) to
            0.9, PyTorch's; ``None`` keeps the model's; a number in (0, 1) sets every batch
            norm's. See :func:`set_batch_norm_momentum`.
        aux_loss_weight: for a model with auxiliary classifiers, the weight of each one's
            loss in the loss that is minimised (the main output's is 1): ``None`` for
            :data:`AUX_LOSS_WEIGHT`, the GoogLeNet paper's 0.3, or a finite number >= 0.
            Refused for a model without them.
        ignore_label: segmentation, for a ``dataset`` name: the mask value of pixels that
            count in no loss and no metric (:func:`zoo.data.load`); a :class:`zoo.data.Splits`
            brings its own, ``info.ignore_label``, which training and evaluation use.

    A model with auxiliary classifiers (``googlenet(aux_logits=True)``: outputs whose layers'
    names start with ``aux``, of the main output's shape) trains as the paper trains it: the
    labels go to every output, the same loss (:func:`compile_model`'s, label smoothing and
    class weights included) to each, weighted 1 for the main output and ``aux_loss_weight``
    for the auxiliary ones, the metrics to the main output. ``history.csv``, ``info.json``,
    ``metrics.json``, ``monitor`` and early stopping use a one-output run's names for the
    main output (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``test_accuracy``)
    and add ``total_loss`` (the weighted sum) and each auxiliary classifier's loss
    (``aux1_predictions_loss``, ..., with ``val_``/``test_``). ``model.keras`` is the
    trained model with its auxiliary classifiers (three outputs); exports
    (:func:`zoo.export.export`) and ``zoo predict`` use its main output. Other models with
    several outputs are refused.

    A model from :func:`pretrained_classifier` (a pretrained backbone under a new head)
    trains as any other; ``info.json`` records its start (``settings.pretrained``:
    backbone, weights, ``freeze_backbone``, ``imagenet_input``, ``head_dropout``; ``null``
    for other models) and every run's parameter counts (``params``: trainable and
    non-trainable), and a killed run resumes only with the same start. Frozen batch norms
    keep their momentum (:func:`set_batch_norm_momentum`).

    Returns:
        The history as a ``pandas.DataFrame`` (one row per epoch, also after a resume).

    Raises:
        zoo.common.BackendError: Keras runs on a backend other than TensorFlow (a
            ``ValueError``, raised before anything else).
        ValueError: bad arguments (checked before anything is loaded or written: e.g. a
            learning rate that is not a positive finite number, label smoothing outside
            [0, 1), a negative weight decay, a ``class_weight`` of none of the allowed
            forms, an ``aux_loss_weight`` that is no finite number >= 0, ``epochs``,
            ``patience`` or ``seed`` that are no integers in range, a ``verbose``, flag,
            ``callbacks`` or ``monitor`` of the wrong kind, a ``run_dir`` that is a file, a
            :class:`zoo.data.Splits` whose batches do not fit its info
            (:func:`zoo.data.check_splits`), batches that do not split evenly among a
            strategy's replicas), a ``monitor`` the run does not log or a
            training split that yields nothing (at the end of the first epoch), labels outside
            the model's classes, a model with several outputs that are not a main output
            and auxiliary classifiers, an ``aux_loss_weight`` for a model without auxiliary
            classifiers or with ``compile=False``, an image size the model does not
            accept, a dataset for another task, an output that is no class scores of the
            dataset (an ``include_top=False`` backbone's features: 4-D maps, or a pooling
            layer's or ReLU's output whose width is not the number of classes; the message
            says how to add a head), class weights the dataset cannot take (an
            unknown class, a class without training examples for ``"balanced"``,
            segmentation), a ``run_dir`` that holds a run of another model or dataset or a
            killed run with other class weights or another pretrained start, an image a
            folder dataset cannot decode. A run that fails removes what it wrote to
            ``run_dir``, unless a finished epoch is backed up there to resume from.

    Example:
        >>> from zoo import lenet5
        >>> history = fit(lenet5(), "digits", epochs=5, run_dir="runs/lenet5")  # doctest: +SKIP
        >>> history[["epoch", "accuracy", "val_accuracy"]].tail(1)  # doctest: +SKIP
    """
    require_tensorflow_backend("zoo.train.fit")
    import pandas as pd
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, LR_SCHEDULES))}. "
                         f"Received: lr_schedule={lr_schedule!r}")
    epochs = zdata.check_count("epochs", epochs)
    seed = check_seed(seed)
    check_verbose(verbose)
    check_bool("fit", early_stopping=early_stopping, compile=compile,
               deterministic=deterministic, download=download, replay=replay)
    if patience is not None and early_stopping is False:
        raise ValueError(f"patience goes with early stopping, which early_stopping=False "
                         f"turns off. Received: patience={zdata._short(patience)}, "
                         f"early_stopping=False")
    patience = PATIENCE if patience is None else zdata.check_count("patience", patience, 0)
    _check_plateau_patience(lr_schedule, early_stopping, patience)
    callbacks = check_callbacks(callbacks)
    check_run_dir(run_dir)
    resolve_jit_compile(jit_compile)   # a bad value, refused before any loading
    if deterministic and check_jit_compile(jit_compile) is True:
        # (Keras compiled without XLA then, with a warning the CLI's --quiet let through)
        raise ValueError("XLA (jit_compile=True, --xla) does not go with op determinism "
                         "(deterministic=True, --deterministic): TensorFlow's deterministic "
                         "kernels do not run under XLA; give one of them. Received: "
                         "jit_compile=True, deterministic=True")
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"monitor must be the name of a logged quantity, such as 'val_loss' "
                         f"or 'val_accuracy'. Received: monitor={zdata._short(monitor)}")
    if isinstance(dataset, zdata.Splits):
        zdata.check_splits(dataset)
        if ignore_label is not None and ignore_label != dataset.info.ignore_label:
            raise ValueError(f"ignore_label is for a dataset name; a zoo.data.Splits brings "
                             f"its own (info.ignore_label={dataset.info.ignore_label!r}): "
                             f"load it with load_splits(..., ignore_label=...). Received: "
                             f"ignore_label={ignore_label!r}")
    if model_name is not None and (not isinstance(model_name, str) or not model_name):
        raise ValueError(f"model_name must be the model's name (a non-empty str) or None. "
                         f"Received: model_name={zdata._short(model_name)}")
    if model_args is not None and not isinstance(model_args, Mapping):
        raise ValueError(f"model_args must be a dict of the builder's keyword arguments or "
                         f"None. Received: model_args={zdata._short(model_args)}")
    _check_label_smoothing(label_smoothing)
    _check_class_weight(class_weight)
    _check_batch_norm_momentum(batch_norm_momentum)
    _check_aux_loss_weight(aux_loss_weight)
    if aux_loss_weight is not None and not compile:
        raise ValueError(f"aux_loss_weight weights the losses fit compiles; with compile=False "
                         f"the model's own compilation weighs them. Received: "
                         f"aux_loss_weight={aux_loss_weight!r}, compile=False")
    if not compile and _given(label_smoothing):
        raise ValueError(f"label_smoothing is a setting of the loss fit compiles; with "
                         f"compile=False the model's own compilation trains (its loss): give "
                         f"it there. Received: label_smoothing={label_smoothing!r}, "
                         f"compile=False")
    if not compile:   # the model's own compilation trains, its optimizer among it
        if getattr(model, "optimizer", None) is None:
            what = (f"model {model!r} (a registered name builds a model)"
                    if isinstance(model, str) else f"model {getattr(model, 'name', model)!r}")
            raise ValueError(f"compile=False trains with the model's own compilation, and "
                             f"{what} is not compiled: compile it first, or leave "
                             f"compile=True (compile_model's defaults)")
        optimizer = model.optimizer
    if isinstance(optimizer, str):   # an optimizer instance brings its own
        _check_learning_rate(learning_rate)
        _check_weight_decay(weight_decay)
        _check_clip_norm(clip_norm)
    elif isinstance(optimizer, keras.optimizers.Optimizer):
        _refuse_for_instance(optimizer, "an optimizer instance" if compile
                             else "the model's own optimizer (compile=False)",
                             weight_decay=weight_decay, clip_norm=clip_norm)
        # Its learning rate is the one it trains at, the cosine schedule's start and the
        # one info.json records; fit's is for a named optimizer.
        rate = _optimizer_rate(optimizer)
        if isinstance(rate, str) and lr_schedule != "constant":
            does = {"cosine": "sets the learning rate of every epoch",
                    "plateau": "lowers the learning rate on plateaus"}[lr_schedule]
            raise ValueError(f"lr_schedule={lr_schedule!r} {does}, and the optimizer has a "
                             f"schedule of its own ({rate}): use one. Received: "
                             f"lr_schedule={lr_schedule!r}, optimizer's learning_rate={rate}")
        learning_rate = rate
    if isinstance(model, keras.Model):   # other kinds of several outputs: before any loading
        _aux_heads(model, model_name or model.name)
        _check_one_class_each(model)
    for name, value in (("class_weight", class_weight), ("label_smoothing", label_smoothing)):
        # refused for segmentation before anything is loaded
        if not _given(value):
            continue
        if isinstance(model, str):
            from zoo.registry import model_info
            _refuse_for_segmentation(model_info(model).task, f"model {model!r}", name, value)
        elif isinstance(model, keras.Model) and len(model.outputs[0].shape) == 4:
            _refuse_for_segmentation("segmentation", f"model {model_name or model.name!r}",
                                     name, value)
    resolve_mixed_precision(mixed_precision)   # a bad value, refused before any loading
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    augment = True if augment is None else augment

    # Data and model.
    registered = model if isinstance(model, str) else None   # its registry name
    if isinstance(model, str):
        from zoo.registry import model_info
        model_name = model_name or model
        minfo = model_info(model)
        ds_name = dataset if isinstance(dataset, str) else dataset.info.name
        defaults = train_defaults(model, ds_name)
        model_args = {**defaults["model_args"], **(model_args or {})}
        if isinstance(dataset, zdata.Splits):
            splits = dataset
        else:
            size = defaults["image_size"] or tuple(minfo.default_input_shape[:2])
            splits = zdata.load_splits(dataset, image_size=size, batch_size=batch_size,
                                       augment=augment, data_dir=data_dir, seed=seed,
                                       download=download, ignore_label=ignore_label)
        model = build_for_dataset(model, splits.info, **model_args)
        _check_one_class_each(model)
    else:
        if not isinstance(model, keras.Model):
            raise ValueError(f"model must be a keras.Model or a registered model name. "
                             f"Received: {type(model).__name__}")
        in_shape = tuple(model.inputs[0].shape[1:])
        if isinstance(dataset, zdata.Splits):
            splits = dataset
        elif isinstance(dataset, str):
            size = None if in_shape[0] is None else in_shape[:2]
            splits = zdata.load_splits(dataset, image_size=size, channels=in_shape[2],
                                       batch_size=batch_size, augment=augment,
                                       data_dir=data_dir, seed=seed, download=download,
                                       ignore_label=ignore_label)
        else:
            raise ValueError(f"dataset must be a dataset name or a zoo.data.Splits. "
                             f"Received: {type(dataset).__name__}")
        _check_output_fits(model, model_name or model.name, splits.info)
        want = splits.info.input_shape
        if any(a is not None and a != b for a, b in zip(in_shape, want)):
            raise ValueError(f"The model's input shape {in_shape} does not match the "
                             f"dataset's input shape {tuple(want)}.")
    info = splits.info
    model_name = model_name or model.name
    strategy = _strategy()
    _check_replica_batches(strategy, splits)
    # now that the model and its input size are known ("auto" weighs them)
    policy = resolve_mixed_precision(mixed_precision,
                                     **_auto_precision_args(model, registered))
    heads = _aux_heads(model, model_name)   # (main, aux) output names, None for one output
    pretrained = _pretrained_record(model)
    if heads is None and aux_loss_weight is not None:
        raise _without_aux_classifiers(model_name, aux_loss_weight)
    if heads is not None and aux_loss_weight is None:
        aux_loss_weight = AUX_LOSS_WEIGHT
    task = info.task
    k = _num_outputs(model)
    if info.num_classes > k:
        fix = (f"Build the model with num_classes={info.num_classes}" if k > 1 or
               info.num_classes > 2 else
               "fit trains one output per class (a softmax or logits over them), not one "
               "sigmoid unit or logit for P(class 1), which only the export and serving "
               "read: give the head 2 units")
        raise ValueError(f"labels outside num_classes: dataset {info.name!r} has "
                         f"{info.num_classes} classes but the model outputs {k}. {fix}.")
    weights = resolve_class_weight(class_weight, splits)
    class_weights = _class_weight_record(class_weight, weights, info)
    # Keras' class_weight: every model output, so that no label falls outside it.
    keras_class_weight = None if weights is None else {
        i: (weights[i] if i < len(weights) else 1.0) for i in range(k)}

    train, val, test = splits.train, splits.validation, splits.test
    if task == "segmentation":
        out_hw = tuple(model.outputs[0].shape[1:3])
        if None not in out_hw and out_hw != tuple(info.input_shape[:2]):
            train, val, test = (_crop_masks(d, out_hw) for d in (train, val, test))
    train, val, test = (_label_guard(d, k, task, info.ignore_label) for d in (train, val, test))
    if heads is not None:
        # The labels to every output; class weights as sample weights of every output's loss
        # (Keras' class_weight takes models with one output only).
        train = _aux_targets(train, heads, None if keras_class_weight is None else
                             [keras_class_weight[i] for i in range(k)])
        val, test = (_aux_targets(d, heads) for d in (val, test))
        keras_class_weight = None

    # Run directory, made (if missing) and held until fit returns: a second process
    # training into it is refused. A killed run resumes under the precision it started
    # with, which its backup records.
    made = run_dir is None or not os.path.isdir(run_dir)
    run_dir = _hold_for_call(run_dir, model_name, info.name)
    backup_dir = os.path.join(run_dir, "backup")
    resuming = _has_backup(backup_dir)
    if not resuming:
        _recover_set_aside(run_dir)
    state = {}
    if resuming and os.path.isfile(os.path.join(backup_dir, _RUN_STATE)):
        with open(os.path.join(backup_dir, _RUN_STATE)) as f:
            state = json.load(f)
    _check_run_dir_holds(run_dir, state, model_name, info.name)
    # Killed after its training ended (scoring the test split, writing its files): resumed
    # from its backup's last epoch, it trains again only to go on to more epochs than it
    # was started with (an early-stopped run does not train on).
    trained = state.get("trained") if resuming else None
    if "mixed_precision" in state:
        started = state["mixed_precision"]
        if mixed_precision == "auto":
            policy = started
        elif policy != started:
            raise ValueError(
                f"{run_dir} holds a killed run that trained under "
                f"{started or 'float32'}; resume it with mixed_precision="
                f"{precision_value(started)!r} (--mixed-precision) or 'auto', "
                f"or use another run directory. Received: mixed_precision={mixed_precision!r}")
    if resuming and state.get("monitor", monitor) != monitor:
        # (its best checkpoint holds the best epoch by that one: kept, it would not be the
        # epoch metrics.json names by this one)
        raise ValueError(f"{run_dir} holds a killed run that watched monitor="
                         f"{state['monitor']!r} (its best checkpoint, early stopping and "
                         f"plateau schedule count by it); resume it with the same (--monitor "
                         f"{state['monitor']}), or use another run directory. Received: "
                         f"monitor={monitor!r}")
    if resuming and not _same_class_weights(state.get("class_weight"), class_weights):
        started = state.get("class_weight")
        if started is None:
            how, hint = "without class weights", "class_weight=None (no --class-weight)"
        else:
            how = f"with class weights {started['weights']} ({started['method']})"
            hint = "those weights (class_weight={name: weight}, --class-weight NAME=W)"
            if started["method"] == "balanced":
                hint = (f"class_weight='balanced' (--class-weight balanced) on the same "
                        f"training data, or {hint}")
        got = "" if class_weights is None else f" (weights {class_weights['weights']})"
        raise ValueError(f"{run_dir} holds a killed run that trained {how}; resume it with "
                         f"{hint}, or use another run directory. Received: "
                         f"class_weight={class_weight!r}{got}")
    optimization = _optimization_record(optimizer, learning_rate, lr_schedule, weight_decay,
                                        clip_norm, label_smoothing, aux_loss_weight)
    recorded = dict(state.get("optimization") or {})
    recorded.setdefault("clip_norm", None)   # recorded before clipping was an option
    if recorded.get("optimizer") in ("adamw", "AdamW") and recorded.get("weight_decay") is None:
        # recorded as none before AdamW's own decay was recorded: a named one trained with
        # its default, an instance with its own
        recorded["weight_decay"] = (ADAMW_WEIGHT_DECAY if recorded["optimizer"] == "adamw"
                                    else optimization["weight_decay"])
    if resuming and "optimization" in state and recorded != optimization:
        # The backup restores the optimizer's variables, its learning rate among them: a
        # resume with another one trained on at the old rate while info.json said the new.
        differ = [k for k in optimization if recorded.get(k) != optimization[k]]
        started = ", ".join(f"no {_OPTIMIZATION_FLAGS[k]}" if recorded.get(k) is None
                            else f"{_OPTIMIZATION_FLAGS[k]} {recorded.get(k)}" for k in differ)
        given = ", ".join(f"{k}={optimization[k]!r}" for k in differ)
        raise ValueError(f"{run_dir} holds a killed run that trained with {started}; resume "
                         f"it with the same (its optimizer's state, learning rate included, "
                         f"is restored from the backup), or use another run directory. "
                         f"Received: {given}")
    if resuming and state.get("pretrained") != pretrained:
        raise ValueError(f"{run_dir} holds a killed run that trained "
                         f"{_describe_pretrained(state.get('pretrained'))}; resume it with the "
                         f"same weights and freezing (--weights, --freeze-backbone, "
                         f"--imagenet-input), or use another run directory. Received: a model "
                         f"{_describe_pretrained(pretrained)}")
    if resuming:
        done = _epochs_backed_up(backup_dir)
        if epochs < done:   # Keras would stop at once, and the run would record epochs
            raise ValueError(f"{run_dir} holds a killed run that finished {done} epochs, more "
                             f"than epochs={epochs}: resume it with epochs >= {done} "
                             f"(--epochs), or use another run directory. Received: "
                             f"epochs={epochs}")

    # A rebuilt copy trains under a dtype policy or a strategy; the trained weights go back
    # into the model that was passed in, so it is the trained model (e.g. for a next stage
    # of fine-tuning).
    given = model

    def rebuild(policy):
        if strategy is None:
            return _rebuild(model, policy)
        with strategy.scope():
            return _rebuild(model, policy)

    if policy or strategy is not None:
        try:
            model = rebuild(policy)
        except Exception as exc:
            # A model Keras cannot rebuild from its config (a custom layer class not
            # registered with Keras): "auto" falls back to float32; an explicit precision
            # fails (_rebuild's ValueError).
            if mixed_precision != "auto" or not policy:
                raise
            warnings.warn(f"mixed_precision='auto' chose {policy} but {model_name} cannot be "
                          f"rebuilt under it ({type(exc).__name__}: {exc}); training in "
                          f"float32.", stacklevel=2)
            policy = None
            if strategy is not None:
                model = rebuild(None)

    bn_momentum = set_batch_norm_momentum(model, batch_norm_momentum)

    # Run directory. A run that fails leaves nothing behind unless an epoch of it is
    # backed up (then the same run_dir resumes it).
    existed = None if made else _entries(run_dir)
    previous = None   # a finished run's files, set aside while a fresh run starts
    try:
        os.makedirs(run_dir, exist_ok=True)
        ckpt_dir = os.path.join(run_dir, "checkpoints")
        os.makedirs(ckpt_dir, exist_ok=True)
        best_path = os.path.join(ckpt_dir, "best.keras")
        history_path = os.path.join(run_dir, "history.csv")
        # BackupAndRestore removes its directory when training ends, this record with it.
        os.makedirs(backup_dir, exist_ok=True)
        # No "class_weight" in the record: trained without class weights.
        run_state = {"mixed_precision": policy, "model": model_name, "dataset": info.name,
                     "monitor": monitor, "optimization": optimization,
                     **({"class_weight": class_weights} if class_weights else {}),
                     **({"pretrained": pretrained} if pretrained else {})}
        _write_json(os.path.join(backup_dir, _RUN_STATE), run_state)
        if not resuming and existed and "info.json" in existed:
            # A fresh run in a finished run's directory: that run's files (info.json first, so
            # that a killed run leaves none that looks finished) come back if it fails.
            previous = _set_aside(run_dir, _RUN_FILES)
        mode = _mode(monitor)
        # A resumed run keeps the killed run's epochs up to its backup (history.csv is
        # written before the backup, so it may hold one epoch more, which is trained again)
        # and starts early stopping and the best checkpoint where that run stood.
        resume, done_values = None, []
        if resuming and os.path.exists(history_path):
            try:
                old = pd.read_csv(history_path)
                old = old[old["epoch"] < _backup_epoch(backup_dir)]
            except Exception:
                old = None
            if old is not None:
                # CSVLogger appends this run's rows without a header: the columns must be
                # its own (``epoch``, then the logs' names sorted), also for a run started
                # before ``learning_rate`` was logged.
                old = old.reindex(columns=["epoch"] + sorted(
                    {*old.columns, "learning_rate"} - {"epoch"}))
                atomic_write_text(history_path, old.to_csv(index=False, lineterminator="\r\n"))
                resume = _resume_state(old, monitor, mode)
                if monitor in old:
                    done_values = old[monitor].tolist()

        def make_callbacks():
            # First: the main output's logs under a one-output run's names, for the others.
            cbs = [_MainOutputLogs(heads)] if heads is not None else []
            # TensorBoard logs the optimizer's rate as it finds it: before the plateau
            # schedule lowers it, as history.csv
            cbs += [_LearningRateLog(),
                    _SyncedCSVLogger(history_path, append=resuming),
                    _BestCheckpoint(best_path, monitor, mode,
                                    best=None if resume is None else resume[0]),
                    keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"),
                                                write_graph=False)]
            if lr_schedule == "plateau":   # before the backup, which then holds its rate
                cbs.append(PlateauSchedule(monitor, mode, learning_rate, done=done_values,
                                           verbose=verbose))
            cbs += [_Backup(backup_dir, seconds=lambda: before + time.time() - start),
                    _TerminateOnNaN(verbose)]
            if lr_schedule == "cosine":
                cbs.append(cosine_schedule(learning_rate, epochs))
            if early_stopping:
                cbs.append(_EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                          restore_best_weights=True, resume=resume))
            return cbs + callbacks + [StopWhenInterrupted()]

        def do_compile(jit):
            if not compile and model is given:
                return
            scope = strategy.scope() if strategy is not None else _null()
            with scope:
                if not compile:   # a rebuilt copy: compiled as the model passed in was
                    _compile_like(model, given)
                else:
                    compile_model(model, task,
                                  optimizer=_optimizer_for(optimizer, model, strategy),
                                  learning_rate=learning_rate,
                                  jit_compile=jit, label_smoothing=label_smoothing,
                                  weight_decay=weight_decay, clip_norm=clip_norm,
                                  num_classes=info.num_classes,
                                  ignore_label=info.ignore_label)
                    if heads is not None:
                        _compile_aux(model, heads, aux_loss_weight)
                _take_optimizer_state(model)
            _clip_summed_gradients(model.optimizer, strategy)
            _check_finite_on_every_replica(model.optimizer, strategy)

        jit_compile = resolve_jit_compile(jit_compile, strategy=strategy)
        do_compile(jit_compile)
        done = _epochs_backed_up(backup_dir)
        fit_epochs = done if trained and done < trained["epochs"] else epochs
        # A resumed run's time: its backup's (the epochs kept) and this call's.
        before = _backup_seconds(backup_dir) if resuming else 0.0
        start = time.time()
        counter = _EpochCounter()
        # shuffle=False: the zoo.data pipeline shuffles (Keras ignores shuffle for datasets and
        # warns when it is left at True).
        # A label outside the classes, or a folder's image that cannot be decoded, in any
        # split: fit's one line, not TensorFlow's error.
        with label_errors_as(ValueError, info.name), \
                zdata.tf_errors_as(lambda exc: _uneven_replica_parts(exc, strategy)):
            if replay and resuming and 0 < done < fit_epochs:
                replayed = time.time()
                _replay_epochs(splits.train, done)
                start += time.time() - replayed   # reading the data again, not training
            try:
                with quiet_unknown_length(train, val):
                    model.fit(train, validation_data=val, epochs=fit_epochs, verbose=verbose,
                              shuffle=False, callbacks=make_callbacks() + [counter],
                              class_weight=keras_class_weight)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                    tf.errors.InternalError) as exc:
                if label_error_line(exc) is not None:
                    raise
                if not (jit_compile and compile and counter.epochs_done == 0
                        and _is_xla_failure(exc)):
                    raise
                if verbose:
                    print(f"XLA compilation failed for {model_name}; training without XLA.")
                jit_compile = False
                do_compile(False)
                with quiet_unknown_length(train, val):
                    model.fit(train, validation_data=val, epochs=fit_epochs, verbose=verbose,
                              shuffle=False, callbacks=make_callbacks() + [counter],
                              class_weight=keras_class_weight)
            seconds = before + time.time() - start
            _write_json(os.path.join(backup_dir, _RUN_STATE), {**run_state, "trained": {
                "epochs": epochs if fit_epochs == epochs else trained["epochs"]}})

            # Best weights (also across a resume), test metrics, files.
            if os.path.exists(best_path):
                model.load_weights(best_path)
            else:
                try:
                    _check_diverged(history_path, monitor, learning_rate)
                except ValueError:   # nothing worth resuming: the run directory goes
                    shutil.rmtree(backup_dir, ignore_errors=True)
                    raise
            test_metrics = model.evaluate(test, verbose=0, return_dict=True)
        if heads is not None:
            test_metrics = _main_output_logs(test_metrics, heads)
    except BaseException:
        _abandon_run_dir(run_dir, existed, previous)
        raise
    for name in os.listdir(run_dir):   # trained: the old run is replaced (also one set
        if name.startswith(_PREVIOUS):  # aside by a run killed before it could put it back)
            shutil.rmtree(os.path.join(run_dir, name), ignore_errors=True)
    if model is not given:   # the model passed in ends as the one that trained
        given.set_weights(model.get_weights())
        set_batch_norm_momentum(given, batch_norm_momentum)
    test_metrics = {f"test_{k}": float(v) for k, v in test_metrics.items()}
    history = pd.read_csv(history_path) if os.path.exists(history_path) else pd.DataFrame()
    metrics = {**test_metrics, **_best_epoch_metrics(history, monitor)}
    metrics["epochs"] = int(len(history))
    metrics["train_seconds"] = round(seconds, 2)
    _write_json(os.path.join(run_dir, "metrics.json"), metrics)
    atomic_write(os.path.join(run_dir, "model.keras"), model.save)
    _write_json(os.path.join(run_dir, "info.json"), {
        "model": model_name, "task": task, "dataset": info.to_dict(), "metrics": metrics,
        # A Splits batches its data itself: load_splits' batch size, else its static one,
        # else null.
        "settings": {"epochs": epochs, "batch_size": batch_size
                     if not isinstance(dataset, zdata.Splits)
                     else splits.batch_size or splits.train.element_spec[0].shape[0],
                     "optimizer": optimizer
                     if isinstance(optimizer, str) else type(optimizer).__name__,
                     "learning_rate": optimization["learning_rate"],
                     "weight_decay": optimization["weight_decay"],
                     "clip_norm": optimization["clip_norm"],
                     "label_smoothing": optimization["label_smoothing"],
                     "augment": info.augmentation,
                     # Keras' own: it compiles without XLA under op determinism
                     "jit_compile": bool(model.jit_compile), "mixed_precision": policy,
                     "seed": seed, "deterministic": bool(deterministic),
                     "monitor": monitor, "lr_schedule": lr_schedule,
                     "model_args": model_args or {}, "class_weight": class_weights,
                     "batch_norm_momentum": bn_momentum,
                     "aux_loss_weight": aux_loss_weight,
                     "pretrained": pretrained},
        "params": _param_counts(model),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    })
    if len(history):
        plot_learning_curves(history, os.path.join(run_dir, "learning_curves.png"),
                             title=f"{model_name} on {info.name}", monitor=monitor)
    shutil.rmtree(backup_dir, ignore_errors=True)   # the run is written: nothing to resume
    fit.last_model = model
    fit.last_run_dir = run_dir
    return history


#: The option of ``zoo train`` behind each setting :func:`_optimization_record` records.
_OPTIMIZATION_FLAGS = {"optimizer": "--optimizer", "learning_rate": "--lr",
                       "lr_schedule": "--lr-schedule", "weight_decay": "--weight-decay",
                       "clip_norm": "--clip-norm",
                       "label_smoothing": "--label-smoothing",
                       "aux_loss_weight": "--aux-loss-weight"}


def _current_rate(optimizer) -> float:
    """The learning rate ``optimizer`` takes its next step at (a schedule's current value)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _optimizer_rate(optimizer):
    """An optimizer instance's learning rate: a float, or its schedule's class name (its
    ``learning_rate`` property gives a schedule's current value; its config, the schedule).
    A ``LossScaleOptimizer``'s is its inner optimizer's (its own config has none)."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    rate = optimizer.get_config().get("learning_rate")
    if isinstance(rate, dict):   # a schedule, or a function, serialised
        return str(rate.get("class_name", "schedule"))
    try:
        return _current_rate(optimizer)
    except (TypeError, ValueError):
        return type(optimizer.learning_rate).__name__


def _optimization_record(optimizer, learning_rate, lr_schedule, weight_decay, clip_norm,
                         label_smoothing, aux_loss_weight) -> dict:
    """The settings of what a run minimises and how, as its backup records them: a killed
    run resumes only with the same (an optimizer passed as an instance counts by its
    class, learning rate, weight decay and clipping). ``weight_decay`` and ``clip_norm`` are
    the ones it trains with (:func:`_trained_weight_decay`, :func:`_trained_clip_norm`)."""
    weight_decay = _trained_weight_decay(optimizer, weight_decay)
    clip_norm = _trained_clip_norm(optimizer, clip_norm)
    if isinstance(optimizer, keras.optimizers.Optimizer):
        learning_rate = _optimizer_rate(optimizer)
        optimizer = type(optimizer).__name__
    else:
        optimizer = str(optimizer).lower()
        learning_rate = float(learning_rate)
    return {"optimizer": optimizer, "learning_rate": learning_rate,
            "lr_schedule": lr_schedule, "weight_decay": weight_decay, "clip_norm": clip_norm,
            "label_smoothing": float(label_smoothing or 0.0),
            "aux_loss_weight": None if aux_loss_weight is None else float(aux_loss_weight)}


#: What a run records of a model's pretrained start (the rest of ``pretrained_info`` is
#: descriptive): a killed run resumes only with the same.
_PRETRAINED_KEYS = ("backbone", "weights", "freeze_backbone", "imagenet_input", "head_dropout")


def _pretrained_record(model) -> Optional[dict]:
    """The ``pretrained_info`` of a model built by :func:`pretrained_classifier` (or a U-Net
    with backbone weights by :func:`build_for_dataset`), as ``info.json`` records it, or
    ``None``."""
    record = getattr(model, "pretrained_info", None)
    if not isinstance(record, Mapping):
        return None
    return {key: record.get(key) for key in _PRETRAINED_KEYS}


def _describe_pretrained(record) -> str:
    if not record:
        return "without pretrained weights (no --weights)"
    frozen = "frozen" if record.get("freeze_backbone") else "trainable"
    return (f"from {record.get('backbone')} weights {record.get('weights')!r} ({frozen} "
            f"backbone, imagenet_input {bool(record.get('imagenet_input'))})")


def _param_counts(model) -> dict:
    """``{"trainable", "non_trainable"}`` parameter counts of ``model``, as Keras' summary
    counts them (batch norms' moving statistics and frozen layers are non-trainable)."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    return {"trainable": trainable, "non_trainable": total - trainable}


def _best_epoch_metrics(history, monitor) -> dict:
    """``best_epoch`` (from 1) and its ``best_val_*`` values: the epoch whose model a run
    keeps, the best by ``monitor`` (``val_loss`` where the history has no such column)."""
    best = _kept_row(history, monitor)
    if best is None:
        return {}
    out = {"best_epoch": int(history["epoch"].iloc[best]) + 1}
    for col in history.columns:
        if col.startswith("val_"):
            out[f"best_{col}"] = float(history[col].iloc[best])
    return out


def _default_run_dir(model_name, dataset_name) -> str:
    """``runs/<model>-<dataset>-<time>``."""
    data_name = dataset_name.replace(os.sep, "_").replace(":", "_")
    return os.path.join("runs", f"{model_name}-{data_name}-{time.strftime('%Y%m%d-%H%M%S')}")


def _check_diverged(history_path, monitor, learning_rate):
    """Raise when training stopped on a loss that is no finite number (TerminateOnNaN)
    before any epoch gave a model worth keeping (no best checkpoint)."""
    import pandas as pd
    try:
        history = pd.read_csv(history_path)
        losses = history["loss"].to_numpy(dtype="float64")
    except (OSError, ValueError, KeyError, pd.errors.EmptyDataError):
        return
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad):
        raise ValueError(f"Training diverged: the loss was {losses[bad[0]]} in epoch "
                         f"{int(history['epoch'].iloc[bad[0]]) + 1} and no epoch had a finite "
                         f"{monitor}, so there is no model to keep. Lower the learning rate "
                         f"(received learning_rate={learning_rate!r}) or check the data.")


def _check_run_dir_holds(run_dir, state, model_name, dataset_name):
    """Refuse ``run_dir`` when it holds a run of another model or dataset: the killed run
    its backup ``state`` records, else the finished run of its ``info.json``."""
    kind = "killed"
    if "model" not in state:
        kind, info_file = "finished", os.path.join(run_dir, "info.json")
        try:
            with open(info_file) as f:
                held = json.load(f)
            state = {"model": held.get("model"), "dataset": (held.get("dataset") or {}).get("name")}
        except (OSError, ValueError, AttributeError):
            return
    if (state.get("model"), state.get("dataset")) != (model_name, dataset_name):
        raise ValueError(f"{run_dir} holds a {kind} run of {state.get('model')} on "
                         f"{state.get('dataset')}, not of {model_name} on {dataset_name} as "
                         f"asked; use another run directory (run_dir, --run-dir).")


#: What a finished run leaves in its run directory, ``info.json`` (the mark of a finished run)
#: first: a fresh run there sets them aside as it starts (:func:`_set_aside`).
_RUN_FILES = ("info.json", "metrics.json", "model.keras", "learning_curves.png", "history.csv",
              os.path.join("checkpoints", "best.keras"), "logs")
_BEST = os.path.join("checkpoints", "best.keras")
#: The prefix of the hidden folder that holds them meanwhile.
_PREVIOUS = ".previous-"


def _entries(run_dir) -> set:
    """The paths of the files and folders under ``run_dir``, relative to it."""
    out = set()
    for root, dirs, files in os.walk(run_dir):
        out.update(os.path.relpath(os.path.join(root, n), run_dir) for n in dirs + files)
    return out


def _set_aside(run_dir, names) -> str:
    """Move the files and folders ``names`` (relative paths, in order) of ``run_dir`` that
    exist into a new hidden folder of it, under the same relative paths; returns the folder."""
    folder = tempfile.mkdtemp(prefix=_PREVIOUS, dir=run_dir)
    for name in names:
        if os.path.lexists(os.path.join(run_dir, name)):
            os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
            os.replace(os.path.join(run_dir, name), os.path.join(folder, name))
    return folder


def _put_back(run_dir, previous) -> None:
    """Move what :func:`_set_aside` put in ``previous`` back into ``run_dir``, replacing
    what a failed run wrote under the same names."""
    for name in _RUN_FILES:
        source, target = os.path.join(previous, name), os.path.join(run_dir, name)
        if not os.path.lexists(source):
            continue
        remove_path(target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(source, target)


def _recover_set_aside(run_dir) -> None:
    """Put back the finished run a fresh run set aside in ``run_dir`` and, killed (kill -9)
    before it backed up an epoch, could not put back itself: where ``run_dir`` holds no
    ``info.json`` but a ``.previous-*`` folder does, with no epoch to resume. The killed
    run's files of the same names and its backup folder without a backup go."""
    if os.path.exists(os.path.join(run_dir, "info.json")) or not os.path.isdir(run_dir):
        return
    for name in sorted(os.listdir(run_dir)):
        folder = os.path.join(run_dir, name)
        if name.startswith(_PREVIOUS) and os.path.isfile(os.path.join(folder, "info.json")):
            _put_back(run_dir, folder)
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
            return


def _abandon_run_dir(run_dir, existed, previous=None):
    """Remove what a failed run created in ``run_dir`` (all of it if ``existed`` is
    ``None``, else the files and folders not in ``existed``) and put back the files it
    set aside in ``previous`` (:func:`_set_aside`), unless its backup holds an epoch to
    resume from or an epoch's best weights were saved (a failure after training, in the
    test evaluation say, keeps the trained model; the files set aside go)."""
    if (_has_backup(os.path.join(run_dir, "backup"))
            or os.path.exists(os.path.join(run_dir, _BEST))):
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        return
    if existed is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    if previous is not None:
        _put_back(run_dir, previous)
    for root, dirs, files in os.walk(run_dir):
        for name in files:
            path = os.path.join(root, name)
            if os.path.relpath(path, run_dir) not in existed:
                os.remove(path)
        for name in list(dirs):
            path = os.path.join(root, name)
            if os.path.relpath(path, run_dir) not in existed:
                shutil.rmtree(path, ignore_errors=True)
                dirs.remove(name)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@contextlib.contextmanager
def keras_output_hidden():
    """Keras' own messages and progress bars hidden (sent to absl's log, below the level it
    shows), as ``zoo train --quiet`` has them: the fetch of published weights printed
    ``Downloading data from URL`` and a progress bar (that line, before a failed fetch's
    error line, too); tensorflow-datasets' download bars too
    (:func:`zoo.data.download_progress_hidden`). The settings are restored afterwards."""
    was = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        with zdata.download_progress_hidden():
            yield
    finally:
        if was:
            keras.config.enable_interactive_logging()


def _replay_epochs(dataset, epochs):
    """Read ``dataset`` through ``epochs`` times, as the epochs a killed run trained did,
    before its resumed run trains: a shuffle (``reshuffle_each_iteration``) and the random
    augmentation layers of a :mod:`zoo.data` pipeline draw from generators that each pass
    moves on, and a new process starts them from the seed again, so the resumed epochs read
    the first epochs' order and transformations instead of those an uninterrupted run
    reads next."""
    known = int(dataset.cardinality()) >= 0
    for _ in range(epochs):
        for _ in dataset:
            pass
        # Keras makes the next epoch's iterator as an epoch of data of known length ends;
        # data of unknown length ends its epochs at the end of the data, and makes none
        if known:
            iter(dataset)


@contextlib.contextmanager
def quiet_unknown_length(*datasets):
    """A context in which ``model.fit`` over ``datasets`` (``None`` entries skipped) does
    not warn "Your input ran out of data" where one of them has no known length: Keras says
    it at the end of the first epoch over such data, which is how that epoch ends when no
    ``steps_per_epoch`` is asked for (Keras learns the length then), not a fault. Data of
    known length keeps the warning."""
    unknown = any(isinstance(d, tf.data.Dataset)
                  and int(d.cardinality()) == tf.data.UNKNOWN_CARDINALITY for d in datasets)
    with warnings.catch_warnings():
        if unknown:
            warnings.filterwarnings("ignore", message="Your input ran out of data",
                                    category=UserWarning)
        yield


# --------------------------------------------------------------------------------------
# CLI.

def _class_weight_option(values):
    """``fit``'s ``class_weight`` from the ``--class-weight`` values: ``None``,
    ``"balanced"`` or ``{name: weight}``."""
    if not values:
        return None
    if "balanced" in values:
        if len(values) > 1:
            raise ValueError("--class-weight balanced cannot be combined with other "
                             "--class-weight values. Received: " + ", ".join(
                                 v if isinstance(v, str) else f"{v[0]}={v[1]:g}"
                                 for v in values))
        return "balanced"
    out = {}
    for name, weight in values:
        if name in out:
            raise ValueError(f"--class-weight names {name!r} twice. Received: "
                             f"{name}={out[name]:g} and {name}={weight:g}")
        out[name] = weight
    return out


def _precheck_pretrained(model_name, weights, freeze_backbone, imagenet_input, model_args):
    """``zoo train``'s refusals of ``--weights``, ``--freeze-backbone`` and
    ``--imagenet-input`` that need no data, before the dataset is loaded (the others come
    from :func:`build_for_dataset`)."""
    from zoo.registry import list_models, model_info
    minfo = model_info(model_name)
    backbone = model_args.get("backbone") if minfo.task == "segmentation" else model_name
    if weights is None and (freeze_backbone or imagenet_input):
        flag = "--freeze-backbone" if freeze_backbone else "--imagenet-input"
        raise ValueError(f"{flag} goes with pretrained weights: add --weights imagenet|PATH "
                         f"(without them {model_name}'s backbone is random)")
    if weights is None:
        return
    if minfo.task == "classification":
        _refuse_two_weights(model_name, model_args, weights)
    if backbone is None:
        raise ValueError(f"{model_name} has no pretrained weights of its own; --weights are "
                         f"for its encoder, a classifier backbone: --model-arg backbone=resnet50 "
                         f"--weights imagenet. Received: --weights {weights}, no backbone")
    if weights == "imagenet" and backbone in list_models():
        _refuse_unpublished_imagenet(backbone)


def _export_command(run_dir, base_dir, name, precision, lite) -> str:
    """The ``zoo export`` command line that exports ``run_dir`` as ``zoo train --export``
    with these settings does."""
    import shlex
    words = ["zoo", "export", run_dir, "--base-dir", base_dir, "--name", name]
    if precision != "float32":
        words += ["--precision", precision]
    if not lite:
        words.append("--no-lite")
    return shlex.join(words)


def train_command(args) -> int:
    """``zoo train``'s work once :func:`zoo.train_cli.configure_train` has parsed its
    options: the checks, the data, the model, :func:`fit`, the export asked for and the
    summary line. Returns the exit code (0)."""
    with keras_output_hidden() if args.quiet else contextlib.nullcontext():
        return _train_command(args)


def _train_command(args):
    from zoo.registry import model_info
    t0 = time.time()
    minfo = model_info(args.model)
    class_weight = _class_weight_option(args.class_weight)
    check_export_options(args)
    if args.export:   # refused now, not after the training
        from zoo import export as zexport
        base_dir = export_base_dir(args)
        zexport.check_export_target(base_dir, args.model)
    for name, value in (("class_weight", class_weight),
                        ("label_smoothing", args.label_smoothing)):
        _refuse_for_segmentation(minfo.task, f"model {args.model!r}", name, value)
    check_run_dir(args.run_dir, "--run-dir")
    # "" is no dataset (refused by the loader), not the default
    dataset = args.dataset if args.dataset is not None else default_dataset(args.model)
    d = train_defaults(args.model, dataset)
    epochs = args.epochs if args.epochs is not None else d["epochs"]
    batch = args.batch_size if args.batch_size is not None else d["batch_size"]
    lr = args.lr if args.lr is not None else d["learning_rate"]
    augment = args.augment if args.augment is not None else d["augment"]
    size = args.image_size or d["image_size"] or tuple(minfo.default_input_shape[:2])
    patience = args.patience if args.patience is not None else PATIENCE
    aux = with_aux_logits(args)
    check_monitor_option(args.monitor, minfo.task, aux=aux)
    if args.aux_loss_weight is not None and not aux:   # before the data loads
        raise _without_aux_classifiers(args.model, args.aux_loss_weight)
    check_counts(epochs, batch, patience)
    early_stopping = (d["early_stopping"] if args.early_stopping is None
                      else args.early_stopping)
    if args.patience is not None and not early_stopping:
        raise ValueError(
            f"--patience {args.patience} goes with early stopping, which " +
            (f"{args.model} on {dataset} trains without by default (its whole schedule): "
             f"add --early-stopping" if args.early_stopping is None
             else "--no-early-stopping turns off"))
    lr_schedule = args.lr_schedule or d["lr_schedule"]
    _check_plateau_patience(lr_schedule, early_stopping, patience, command=True)
    # --weights and --freeze-backbone, or U-Net's builder options of the same meaning.
    given = dict(args.model_arg)
    if "imagenet_input" in given:
        raise ValueError(f"imagenet_input is set by --imagenet-input/--no-imagenet-input "
                         f"(default: from the weights), not --model-arg. Received: "
                         f"--model-arg imagenet_input={given['imagenet_input']}")
    backbone_weights = given.pop("backbone_weights", None)
    if args.weights is not None and backbone_weights is not None:
        raise ValueError(f"--weights {args.weights} and --model-arg backbone_weights="
                         f"{backbone_weights} both give the backbone's weights; give one")
    if args.weights is not None:
        backbone_weights = args.weights
    freeze_backbone = args.freeze_backbone or bool(given.pop("freeze_backbone", False))
    _precheck_pretrained(args.model, backbone_weights, freeze_backbone,
                         args.imagenet_input, given)
    keras.utils.set_random_seed(args.seed)
    splits = zdata.load_splits(dataset, image_size=size, channels=args.channels,
                               batch_size=batch, augment=augment, data_dir=args.data_dir,
                               seed=args.seed, download=args.download,
                               ignore_label=args.ignore_label)
    model_args = {**d["model_args"], **given}
    model = build_for_dataset(args.model, splits.info, backbone_weights=backbone_weights,
                              freeze_backbone=freeze_backbone,
                              imagenet_input=("auto" if args.imagenet_input is None
                                              else args.imagenet_input),
                              **model_args)
    # Held until the command ends (the export included): a second zoo train into it
    # is refused.
    with hold_run_dir(args.run_dir, model_name=args.model,
                      dataset_name=splits.info.name) as run_dir:
        backup = os.path.join(run_dir, "backup")
        done_before = _epochs_backed_up(backup)
        try:
            history = fit(model, splits, epochs=epochs, run_dir=run_dir, batch_size=batch,
                          learning_rate=lr, optimizer=args.optimizer, augment=augment,
                          jit_compile="auto" if args.xla is None else args.xla,
                          mixed_precision=args.mixed_precision,
                          early_stopping=early_stopping,
                          patience=patience if early_stopping else None,
                          seed=args.seed, verbose=0 if args.quiet else progress_verbose(1),
                          model_name=args.model, model_args=model_args,
                          lr_schedule=lr_schedule,
                          deterministic=args.deterministic, replay=args.replay,
                          class_weight=class_weight,
                          batch_norm_momentum=args.batch_norm_momentum,
                          aux_loss_weight=args.aux_loss_weight,
                          weight_decay=args.weight_decay, clip_norm=args.clip_norm,
                          label_smoothing=args.label_smoothing, monitor=args.monitor)
        except BaseException as exc:
            # Ctrl-C, or a failure after this command backed up an epoch (not a refusal to
            # resume): say where the run waits to be resumed.
            if _has_backup(backup) and (isinstance(exc, KeyboardInterrupt)
                                        or _epochs_backed_up(backup) > done_before):
                print(f"zoo train: stopped after epoch {_backup_epoch(backup)} of {epochs}; "
                      f"the same command with --run-dir {run_dir} resumes it",
                      file=sys.stderr)
            raise
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
        with open(os.path.join(run_dir, "info.json")) as f:
            policy = json.load(f)["settings"]["mixed_precision"]
        key = "test_mean_iou" if splits.info.task == "segmentation" else "test_accuracy"
        on_validation = (" (on the validation split: the dataset has no test split)"
                         if splits.info.test_is_validation else "")
        epochs_done = f"{len(history)} epoch{'' if len(history) == 1 else 's'}"
        line = (f"{args.model} on {dataset}: {key.replace('_', ' ')} {metrics[key]:.4f}"
                f"{on_validation} after {epochs_done}, "
                f"{time.time() - t0:.1f} s "
                f"(training {metrics['train_seconds']:.1f} s, {policy or 'float32'}), "
                f"run dir {run_dir}")
        if args.export:
            from zoo import export as zexport
            precision = args.export_precision or "float32"
            try:
                path = zexport.export_run(run_dir, base_dir=base_dir, name=args.model,
                                          precision=precision, lite=args.lite)
            except BaseException:
                # The run is trained and saved; the same command would train it afresh
                # (a finished run directory starts a new run): say how to export it.
                print(line)
                print(f"zoo train: the export stopped; the run is trained and saved, and "
                      f"{_export_command(run_dir, base_dir, args.model, precision, args.lite)}"
                      f" exports it (the same command would train it again)", file=sys.stderr)
                raise
            line += f", exported to {path}"
            zexport.print_changed_classes_note(path, "train")
        print(line)
    return 0
