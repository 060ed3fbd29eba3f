"""Versioned, atomic SavedModel export with a stable serving signature.

A model leaves the zoo as a TensorFlow SavedModel that TensorFlow Serving,
``tf.saved_model.load`` and :mod:`zoo.serving` all read the same way::

    saved_models/<name>/<version>/      integer versions, the layout TensorFlow Serving expects
        saved_model.pb  variables/  fingerprint.pb
        assets/zoo.json                 labels, input spec, preprocessing, metrics, versions
        assets/serving_default.tflite   the same signature for the LiteRT runtime (CPU)

The ``serving_default`` signature takes raw pixels and does everything else in the graph:

- input ``images``: float32 ``[None, None, None, C]`` -- any batch size and any height and
  width, pixel values in the dataset's raw range (0..255 for image data), ``C`` the
  dataset's own channel count (the model's when no dataset is known). Images are resized to
  the model's input size, channel-converted and normalised (``(x - mean) / std``) with
  :func:`zoo.data.preprocess`, the function the training pipeline uses.
- classifiers: ``probabilities`` float32 ``[None, K]`` and ``classes`` int64 ``[None]``;
  segmentation: ``mask`` int64 ``[None, H, W]`` and ``probabilities`` float32
  ``[None, H, W, K]`` at the model's output resolution. A model that returns logits
  (``classifier_activation=None``) gets its softmax (sigmoid for one unit) in the signature.

Beside the SavedModel, float32 exports carry ``serving_default`` converted to a LiteRT
(TensorFlow Lite) flatbuffer, checked at export time against the SavedModel on random
inputs (``zoo.json: "lite"`` records the largest difference). On CPUs,
:class:`zoo.serving.Servable` runs it with LiteRT's XNNPACK kernels, which are faster
than TensorFlow's at every batch size measured (benchmarks/README.md, items 6 and 10);
TensorFlow Serving and GPUs use the SavedModel and ignore the file.

Float16 and bfloat16 exports keep the output layers in float32, as the mixed policies of
training do. ``zoo.json: "gpu"`` records :func:`gpu_check` of ``serving_default``: device
pins and ops without a GPU kernel for their dtypes (none for the registered models), read
from the graph with this TensorFlow build's kernel registry, so a CPU machine can tell.

Exports are written to a hidden temporary directory inside ``base_dir/<name>/`` and renamed
into place, so a watching server never sees half a model, and a killed export leaves no
version directory behind.

``zoo.json: "format"`` is :data:`FORMAT`, the export layout's number: it goes up only when
a change would make an older :func:`zoo.serving.load` misread an export (keys added to
``zoo.json`` do not count: older loaders ignore them), and :func:`zoo.serving.load` refuses
a format above its own with a message saying so. Every export so far is format 1.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from typing import Optional

from zoo import common

__all__ = ["export", "export_run", "configure_export", "SIGNATURE_NAME", "INPUT_NAME",
           "PRECISIONS", "LITE_FILE", "FORMAT", "list_versions", "latest_version",
           "version_path", "gpu_check"]

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
PRECISIONS = ("float32", "float16", "bfloat16")
ZOO_JSON = os.path.join("assets", "zoo.json")
LITE_FILE = os.path.join("assets", "serving_default.tflite")
#: ``zoo.json``'s ``lite.error`` of an export made with ``lite=False`` (``--no-lite``).
LITE_NOT_REQUESTED = "not requested (lite=False)"
LITE_TOLERANCE = 1e-3      # largest |LiteRT - SavedModel| probability accepted on the check inputs
TMP_PREFIX = ".tmp-"
#: ``zoo.json: "format"`` of the exports written here (see the module's doc): raised only
#: for a change an older loader would misread, which then refuses the export by this number.
FORMAT = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --------------------------------------------------------------------------------------
# Version directories.

def list_versions(model_dir) -> list:
    """Sorted integer versions under ``model_dir`` that hold a complete SavedModel.

    Only directories named by a non-negative integer and containing ``saved_model.pb``
    count; hidden temporary directories of exports in progress never do.

    Args:
        model_dir: a model directory (``saved_models/lenet5``).

    Returns:
        A sorted list of ints, each once (``7`` and ``007`` are version 7, as for
        TensorFlow Serving: :func:`version_path`); empty when ``model_dir`` does not exist
        or holds no version.

    Raises:
        TypeError: ``model_dir`` is no path (``None`` was the current directory, an
            ``int`` an open file descriptor).
        ValueError: ``model_dir`` is ``""``.
    """
    model_dir = common.check_path("list_versions", "model_dir", model_dir,
                                  "a model directory")
    try:
        entries = list(os.scandir(model_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    versions = []
    for entry in entries:
        if common.is_digits(entry.name) and entry.is_dir() and os.path.isfile(
                os.path.join(entry.path, "saved_model.pb")):
            versions.append(int(entry.name))
    return sorted(set(versions))   # 2 and 02 are one version (listed twice, before)


def version_path(model_dir, version: int) -> str:
    """The directory of ``version`` in ``model_dir``: ``model_dir/7``, or where that holds no
    SavedModel, the version directory that spells its number otherwise (``007``, which
    TensorFlow Serving and :func:`list_versions` read as 7: its example models are
    ``00000123``); ``model_dir/7`` where there is none.

    Args:
        model_dir: a model directory, as for :func:`list_versions`.
        version: a version it lists.

    Returns:
        The version directory's path.
    """
    path = os.path.join(model_dir, str(version))
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        for name in sorted(_number_names(model_dir)):
            other = os.path.join(model_dir, name)
            if int(name) == version and os.path.isfile(os.path.join(other, "saved_model.pb")):
                return other
    return path


def latest_version(model_dir) -> Optional[int]:
    """The highest version under ``model_dir`` (``None`` if there is none).

    Args:
        model_dir: a model directory, as for :func:`list_versions`.

    Returns:
        An int, or ``None`` when ``model_dir`` does not exist or holds no version.
    """
    versions = list_versions(model_dir)
    return versions[-1] if versions else None


def _classes_of(record) -> tuple:
    """``(task, labels or number of classes, input channels)`` of a ``zoo.json`` record:
    what a client of the model relies on."""
    record = record or {}
    return (record.get("task"), record.get("labels") or record.get("num_classes"),
            (record.get("input") or {}).get("channels"))


def changed_classes_note(version_dir) -> Optional[str]:
    """A note for people when the export at ``version_dir`` answers with other classes
    (task, labels or input channels) than the version below it in its model directory,
    which it replaces for clients asking for the newest (a model trained on another
    dataset exported under the same name); ``None`` otherwise, or when either has no
    ``zoo.json``.

    Args:
        version_dir: a version directory just exported (``saved_models/lenet5/2``).

    Returns:
        The note's text, or ``None``.
    """
    from zoo.serving import read_record
    model_dir, name = os.path.split(os.path.normpath(version_dir))
    if not common.is_digits(name):
        return None
    below = [v for v in list_versions(model_dir) if v < int(name)]
    if not below:
        return None
    try:
        new, old = (read_record(version_path(model_dir, v)) for v in (int(name), below[-1]))
    except ValueError:   # a damaged zoo.json is the loader's to name
        return None
    if new is None or old is None or _classes_of(new) == _classes_of(old):
        return None

    def described(record):
        task, classes, channels = _classes_of(record)
        shown = (f"{len(classes)} classes {common.clip_text(repr(classes), 60)}"
                 if isinstance(classes, list) else f"{classes} classes")
        dataset = (record.get("dataset") or {}).get("name")
        return (f"{task} of {shown}, {channels}-channel input"
                + (f", trained on {dataset}" if dataset else ""))
    return (f"{model_dir} version {name} answers with other classes than version "
            f"{below[-1]}, which it replaces for clients of the newest version: "
            f"{described(new)}; version {below[-1]}: {described(old)}. Export under "
            f"another name (--name) to serve both.")


def print_changed_classes_note(version_dir, command) -> None:
    """:func:`changed_classes_note` of ``version_dir``, if any, on stderr as ``zoo COMMAND:
    note: ...`` (``zoo export``, ``zoo train --export``, ``zoo tune --export``)."""
    note = changed_classes_note(version_dir)
    if note:
        print(f"zoo {command}: note: {note}", file=sys.stderr)


def not_a_run_hint(path) -> str:
    """What a directory without ``model.keras`` is, where it is one the zoo writes, and what
    to give instead: ``" It is an exported SavedModel ...: give the run it was exported
    from (runs/pets)."``, a model directory of exports, a ``zoo train`` run not finished
    (stopped, or training now), a ``zoo tune`` search or one of its trials; ``""`` for any
    other directory. Appended to the errors of the commands that
    read a run directory (``zoo export``, ``zoo summary``, ``zoo table``, ``zoo train
    --weights``)."""
    path = os.fspath(path)
    try:
        versions = list_versions(path)
    except OSError:       # a directory it may not read: the error says what it can
        return ""
    if os.path.isfile(os.path.join(path, "saved_model.pb")) or versions:
        what = ("an exported SavedModel" if not versions else
                f"a model directory of exported SavedModels (versions "
                f"{common.clip_text(', '.join(map(str, versions)))})")
        version_dir = version_path(path, versions[-1]) if versions else path
        source = None
        with contextlib.suppress(OSError, ValueError, AttributeError):
            with open(os.path.join(version_dir, ZOO_JSON), encoding="utf-8") as f:
                source = json.load(f).get("training", {}).get("source")
        if isinstance(source, str) and os.path.isfile(os.path.join(source, "model.keras")):
            return f" It is {what}, which holds no Keras model: give the run it was exported " \
                   f"from ({source})."
        return f" It is {what}, which holds no Keras model: give the run directory or " \
               f".keras file it was exported from."
    # zoo.train's run state, kept in backup/ while a run is unfinished (a folder of one's
    # own named backup is no run)
    if os.path.isfile(os.path.join(path, "backup", "zoo_run.json")):
        return (f" It is a zoo train run that has not finished (it keeps backup/ until it "
                f"does), so it has no model yet: the zoo train command that started it, "
                f"with --run-dir {path}, resumes it if it was stopped.")
    search_dir = path if os.path.isfile(os.path.join(path, "search.json")) else None
    if search_dir is None and os.path.isfile(os.path.join(path, "trial.json")):
        parent = os.path.dirname(os.path.abspath(path))
        if os.path.isfile(os.path.join(parent, "search.json")):
            search_dir = parent
    if search_dir is None:
        return ""
    what = "a zoo tune search" if search_dir == path else "a trial of a zoo tune search"
    return (f" It is {what}, whose trials keep weights only: the same zoo tune command with "
            f"--export exports the best trial's model (best.json names it).")


def _number_names(model_dir) -> list:
    """The names in ``model_dir`` that are version numbers (complete or not); none when it
    does not exist."""
    try:
        return [e.name for e in os.scandir(model_dir) if common.is_digits(e.name)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _taken_versions(model_dir) -> set:
    return {int(n) for n in _number_names(model_dir)}


def _check_same_number(model_dir, version, name):
    """Refuse ``version`` when a directory spells its number otherwise (``007`` for 7):
    TensorFlow Serving and :func:`list_versions` read both as one version, so a ``7`` beside
    it would make two."""
    others = sorted(n for n in _number_names(model_dir)
                    if int(n) == version and n != str(version))
    if others:
        raise FileExistsError(f"version {version} of {name!r} is already in "
                              f"{os.path.join(model_dir, others[0])} (the same number "
                              f"written otherwise); rename or remove that directory.")


def _next_version(model_dir, name) -> int:
    """One more than the highest version in ``model_dir`` (1 for the first); ValueError once
    :data:`MAX_VERSION` is taken (the number after it is one TensorFlow Serving cannot load)."""
    taken = [v for v in _taken_versions(model_dir) if v <= MAX_VERSION]
    version = max(taken) + 1 if taken else 1
    _check_next_version(version, name)
    return version


def _check_next_version(version, name):
    if version > MAX_VERSION:
        raise ValueError(f"{name!r} has version {MAX_VERSION} (2**63-1, the largest "
                         f"TensorFlow Serving loads): there is no next version to number "
                         f"this export; pass version= (--version) a free one")


# --------------------------------------------------------------------------------------
# What the export knows about the data.

def _checked_dataset(dataset, what, prefix) -> dict:
    """A ``DatasetInfo`` or its dict form as a dict, its fields checked
    (:func:`zoo.common.check_info_fields`); ``what`` names it in a message about missing keys,
    ``prefix`` goes before a field's name in the others."""
    import dataclasses

    from zoo.common import INFO_REQUIRED, check_info_fields
    if not isinstance(dataset, dict):   # (a dict, info.json's, is checked without zoo.data)
        from zoo.data import DatasetInfo
        if isinstance(dataset, DatasetInfo):
            # Checked before to_dict(), which would fail on a bad value with int()'s message.
            check_info_fields({f.name: getattr(dataset, f.name)
                               for f in dataclasses.fields(dataset)}, prefix)
            return dataset.to_dict()
        dataset = dataset.to_dict()   # another object with a dict form
    missing = [k for k in INFO_REQUIRED if k not in dataset]
    if missing:
        raise ValueError(f"{what} is missing {missing} (a DatasetInfo dict has "
                         f"{list(INFO_REQUIRED)}): pass DatasetInfo.to_dict() or a run's "
                         "info.json.")
    check_info_fields(dataset, prefix)
    return dict(dataset)


def _resolve_info(info, source=None) -> tuple:
    """``info`` -> ``(dataset dict or None, metrics dict, task or None, model name or None,
    settings or None)``; the settings are a training run's (``info.json``'s ``settings``).

    Accepts a ``zoo.data.DatasetInfo``, its dict form, or a training run's ``info.json``
    dict (``{"model", "dataset", "metrics", "task"}``); the dataset's fields are checked.
    ``source``: the ``info.json`` file ``info`` was read from, named in the messages.
    """
    from zoo.common import TASKS, clip_text
    if info is None:
        return None, {}, None, None, None
    top = "info" if source is None else source
    field = "info." if source is None else f"{source}: "
    if not isinstance(info, dict) and not hasattr(info, "to_dict"):
        raise ValueError("info must be a zoo.data.DatasetInfo, its dict form, a run's "
                         f"info.json dict or None. Received: {type(info).__name__}")
    if isinstance(info, dict) and "dataset" in info:  # a training run's info.json
        dataset = info.get("dataset")
        if dataset is not None and not isinstance(dataset, dict) and not hasattr(
                dataset, "to_dict"):
            raise ValueError(f"{field}dataset must be a DatasetInfo dict or None. "
                             f"Received: dataset={clip_text(repr(dataset))}")
        if dataset:
            dataset = _checked_dataset(dataset, f"{field}dataset", f"{field}dataset.")
        model = info.get("model")
        if model is not None and not isinstance(model, str):
            raise ValueError(f"{field}model must be the model's name (a str) or None. "
                             f"Received: model={clip_text(repr(model))}")
        task = info.get("task")
        if task is not None and (not isinstance(task, str) or task not in TASKS):
            raise ValueError(f"{field}task must be {' or '.join(map(repr, TASKS))}. "
                             f"Received: task={clip_text(repr(task))}")
        metrics = info.get("metrics")
        if metrics is not None and not isinstance(metrics, dict):
            raise ValueError(f"{field}metrics must be a dict or None. "
                             f"Received: metrics={clip_text(repr(metrics))}")
        return dataset or None, dict(metrics or {}), task, model, info.get("settings")
    dataset = _checked_dataset(info, f"{top} dict" if source is None else top, field)
    return dataset, dict(dataset.get("metrics") or {}), dataset.get("task"), None, None


def _main_output(model):
    """The model's main output tensor: its only one, or the one that is not an auxiliary
    classifier's (:func:`zoo.common.main_output_index`, the rule training uses too)."""
    return model.outputs[common.main_output_index(model, "export takes")]


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history is not None else None


def _output_activation(tensor) -> Optional[str]:
    """:func:`_activation_name` of the layer that computes ``tensor``, a model's output;
    for a nested model's, of the layer computing the output of it taken (its second output
    reads its second output layer, not its first)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    return _activation_name(history[0], history[2])


def _activation_name(layer, index=0) -> Optional[str]:
    """``"softmax"``/``"sigmoid"``/``"linear"`` of an output layer, ``None`` if unknown
    (of a nested model, its output ``index``'s layer)."""
    import keras
    if layer is None:
        return None
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, keras.Model) and layer.outputs:  # a nested model: its last layer
        return _output_activation(layer.outputs[index])
    act = getattr(layer, "activation", "missing")
    if act == "missing":
        return None
    if act is None:
        return "linear"
    if isinstance(act, str):
        return act
    name = getattr(act, "__name__", None)
    if name is None:
        try:
            name = keras.activations.serialize(act)
        except Exception:
            return None
        if isinstance(name, dict):
            name = name.get("config", {}).get("name") or name.get("class_name")
    return str(name) if name else None


def check_one_class_each(output, what, allowed="a softmax or logits over the classes, or "
                                               "one sigmoid unit for two classes") -> None:
    """Refuse an output that ends in a sigmoid over several units: each class gets a
    probability of its own (multi-label), which do not sum to 1, where the zoo's losses,
    signatures and metrics take one class per image (per pixel). ``output``: the model's
    main output tensor; ``what`` ("fit trains", "export takes") starts the message and
    ``allowed`` says what the caller takes instead.

    Raises:
        ValueError: a sigmoid (a layer's activation, or a nested model's last layer's) over
            more than one output unit.
    """
    layer = _producer(output)
    units = output.shape[-1]
    if _output_activation(output) != "sigmoid" or units in (1, None):
        return
    raise ValueError(f"{what} models with one class per image (per pixel): {allowed}; a "
                     f"sigmoid over {units} units gives each class a probability of its own "
                     f"(multi-label), which do not sum to 1. Received: output "
                     f"{tuple(output.shape)} from {type(layer).__name__} {layer.name!r} with "
                     f"a sigmoid")


def _reading_sample(input_shape):
    """A zero image and three random ones of ``input_shape`` (H, W, C) to read an unknown
    last layer's numbers by (on a zero image alone, a one-unit head's logit is its bias: 0
    untrained, read as a probability)."""
    import numpy as np
    return np.concatenate([np.zeros((1, *input_shape)), np.random.default_rng(0).normal(
        0.0, 1.0, (3, *input_shape))]).astype("float32")


def _output_kind(model, output, sample) -> str:
    """``"probabilities"`` or ``"logits"`` for the model's main output (``model``'s only
    output is ``output``; ``sample``: :func:`_reading_sample`'s images, read when the last
    layer's activation is unknown)."""
    name = _output_activation(output)
    if name in ("softmax", "sigmoid"):
        return "probabilities"
    if name == "linear":
        return "logits"
    # Unknown final layer: look at the numbers.
    import numpy as np
    y = np.asarray(model(sample, training=False), "float64")
    if y.shape[-1] > 1:
        if y.min() >= 0 and np.allclose(y.sum(-1), 1.0, atol=1e-3):
            return "probabilities"
        return "logits"
    return "probabilities" if (y.min() >= 0 and y.max() <= 1) else "logits"


# --------------------------------------------------------------------------------------
# Precision.

def _output_layers(model) -> set:
    """``id``s of the layers that compute ``model``'s outputs (inside a nested model that
    does, that model's own output layers)."""
    import keras
    ids = set()
    for tensor in model.outputs:
        layer = _producer(tensor)
        if isinstance(layer, keras.Model) and getattr(layer, "outputs", None):
            ids |= _output_layers(layer)
        elif layer is not None:
            ids.add(id(layer))
    return ids


def _cast_model(model, precision):
    """The same model with weights and compute in ``precision`` (float32 in, any out).

    In a float16 or bfloat16 copy the output layers (the classifier's softmax ``Dense``
    layer, LeNet-5's RBF units, U-Net's final softmax activation) keep float32 weights and
    compute, as they do under the mixed policies the zoo trains with: a ``Dense`` head's
    logits and their softmax are not rounded to 8 (bfloat16) or 11 (float16) significant
    bits (U-Net's 1x1 convolution before its softmax layer computes in ``precision``). A model trained under a mixed-precision
    policy is rebuilt too, so a float32 export computes in float32.
    """
    import keras
    from zoo.train import _rebuild
    keep = _output_layers(model) if precision != "float32" else set()

    def target(layer):
        return "float32" if id(layer) in keep else precision

    if all(layer.dtype_policy.name == target(layer) for layer in _all_layers(model)
           if not isinstance(layer, keras.Model)):
        return model
    return _rebuild(model, precision, keep_outputs=precision != "float32")


def _foldable_pairs(model) -> dict:
    """``{batch norm layer: convolution}`` for every batch normalisation of ``model``'s top
    level whose only input is a ``Conv2D``/``SeparableConv2D`` (channels last, linear
    activation, used once, no LoRA weights, convolving as Keras' does:
    :func:`_plain_convolution`) that feeds nothing else and is no output of ``model`` (a
    nested model's output is read by the model around it); the batch norm is Keras' or
    :mod:`zoo.layers`' (or a subclass that keeps its ``call``)."""
    import keras

    from zoo import layers as zoo_layers
    pairs = {}
    returned = {id(_producer(t)) for t in model.outputs}
    for layer in model.layers:
        if (not isinstance(layer, keras.layers.BatchNormalization)
                or getattr(layer, "renorm", False)):   # Keras >= 3.14 has renorm
            continue
        if type(layer).call not in (keras.layers.BatchNormalization.call,
                                    zoo_layers.BatchNormalization.call):
            continue   # a subclass computing something else than the affine map folded
        if len(layer._inbound_nodes) != 1 or layer.axis not in (-1, 3):
            continue
        inputs = layer._inbound_nodes[0].input_tensors
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            continue
        conv = inputs[0]._keras_history.operation
        if not _plain_convolution(conv):
            continue
        if (len(conv._inbound_nodes) != 1 or len(conv._outbound_nodes) != 1
                or conv.data_format != "channels_last"
                or conv.activation is not keras.activations.linear
                or id(conv) in returned   # its output is the model's own, unnormalised
                or getattr(conv, "lora_enabled", False)):   # kernel + a low-rank product
            continue
        pairs[layer] = conv
    return pairs


def _plain_convolution(layer) -> bool:
    """Whether ``layer`` is a ``Conv2D``/``SeparableConv2D`` that convolves with its kernel as
    Keras' does (at inference): Keras' or :mod:`zoo.layers`' class, or a subclass overriding
    neither ``call`` nor ``convolution_op``. A subclass that transforms its kernel first (a
    weight-standardised convolution) would undo the batch norm's scale folded into it."""
    import keras

    from zoo import layers
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D)):
        return False
    cls = type(layer)
    if cls.call not in (keras.layers.Conv2D.call, keras.layers.SeparableConv2D.call,
                        layers.Conv2D.call, layers.SeparableConv2D.call):
        return False
    return (not isinstance(layer, keras.layers.Conv2D)
            or cls.convolution_op is keras.layers.Conv2D.convolution_op)


def fold_batch_norm(model):
    """An inference copy of ``model`` with batch normalisations folded into convolutions.

    A batch norm in inference mode is a per-channel affine map, ``y = s * x + t`` with
    ``s = gamma / sqrt(moving_variance + epsilon)`` and ``t = beta - s * moving_mean``;
    after a convolution it folds into the convolution's kernel (output channels scaled by
    ``s``; for a separable convolution, its pointwise kernel) and bias (``s * bias + t``).
    The copy replaces each folded batch norm by :class:`zoo.layers.FoldedBatchNormalization`
    (an identity with the same name) and shares every other layer (and its weights) with
    ``model``. The exported serving function then runs one fused convolution + bias (+ ReLU)
    op where it ran two or three ops.

    Models nested in ``model`` (a backbone called inside a model with a new head) are
    folded the same way. Only for inference: the copy's convolutions carry the moving
    statistics. Returns ``model`` itself when nothing folds (or it is not a functional
    model).
    """
    import keras
    import numpy as np

    from zoo.layers import FoldedBatchNormalization
    if not isinstance(model, keras.Model):
        return model
    try:
        pairs = _foldable_pairs(model)
    except (AttributeError, IndexError):   # a subclassed model: no layer graph to read
        return model
    nested = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            folded = fold_batch_norm(layer)
            if folded is not layer:
                nested[id(layer)] = folded
    if not pairs and not nested:
        return model
    folded_convs = {id(conv) for conv in pairs.values()}
    folded_bn = {id(bn) for bn in pairs}
    new_convs = {}

    def clone_layer(layer):
        if id(layer) in nested:
            return nested[id(layer)]
        if id(layer) in folded_bn:
            # the batch norm's policy, not the global one (a mixed policy set for training
            # would cast a float32 model's activations to float16 in the identity)
            return FoldedBatchNormalization(name=layer.name, dtype=layer.dtype_policy.name)
        if id(layer) in folded_convs:
            clone = layer.__class__.from_config({**layer.get_config(), "use_bias": True})
            new_convs[id(layer)] = clone
            return clone
        return layer

    copy = keras.models.clone_model(model, clone_function=clone_layer)
    for bn, conv in pairs.items():
        gamma = bn.gamma.numpy() if bn.scale else 1.0
        beta = bn.beta.numpy() if bn.center else 0.0
        s = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
        t = beta - s * bn.moving_mean.numpy()
        weights = [w.numpy() for w in conv.weights]
        kernel = weights[1] if isinstance(conv, keras.layers.SeparableConv2D) else weights[0]
        bias = conv.bias.numpy() if conv.use_bias else 0.0
        folded = (kernel * s).astype(kernel.dtype)
        new = new_convs[id(conv)]
        if isinstance(conv, keras.layers.SeparableConv2D):
            new.set_weights([weights[0], folded, (s * bias + t).astype(kernel.dtype)])
        else:
            new.set_weights([folded, (s * bias + t).astype(kernel.dtype)])
    return copy


def _all_layers(model):
    import keras
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


# --------------------------------------------------------------------------------------
# The serving function.

def _fallback_preprocess(images, dataset):
    """The formula of ``zoo.data.preprocess`` (resize, channel conversion, normalisation)."""
    import tensorflow as tf
    h, w, c = (int(v) for v in dataset["input_shape"])
    have = images.shape[-1]
    if have == 4 and c != 4:
        images, have = images[..., :3], 3
    if have == 1 and c == 3:
        images = tf.tile(images, [1, 1, 1, 3])
    elif have == 3 and c == 1:
        images = tf.image.rgb_to_grayscale(images)
    images = tf.image.resize(images, (h, w))
    mean = tf.constant(dataset.get("mean", [0.0]), tf.float32)
    std = tf.constant(dataset.get("std", [1.0]), tf.float32)
    return (images - mean) / std


def _preprocess_fn(dataset):
    """The signature's preprocessing: :func:`zoo.data.preprocess` with ``dataset`` (grey
    input for an RGB model is tiled to three channels there)."""
    try:
        from zoo.data import preprocess as data_preprocess
    except ImportError:  # pragma: no cover - zoo.data always ships with the package
        return lambda images: _fallback_preprocess(images, dataset)
    return lambda images: data_preprocess(images, dataset)


def _build_serving_fn(model, *, task, kind, in_channels, preprocess):
    import tensorflow as tf
    spec = tf.TensorSpec([None, None, None, in_channels], tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serving_default(images):
        x = preprocess(images)
        y = tf.cast(model(x, training=False), tf.float32)
        if kind == "logits":
            probabilities = tf.nn.softmax(y, axis=-1) if y.shape[-1] > 1 else tf.sigmoid(y)
        else:
            probabilities = y
        if probabilities.shape[-1] > 1:
            classes = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        else:
            classes = tf.cast(probabilities[..., 0] > 0.5, tf.int64)
        if task == "segmentation":
            return {"mask": classes, "probabilities": probabilities}
        return {"probabilities": probabilities, "classes": classes}

    return serving_default


def _check_base_dir(base_dir) -> str:
    """``base_dir`` as a str path; anything but a non-empty str or ``os.PathLike`` raises."""
    path = os.fspath(base_dir) if isinstance(base_dir, (str, os.PathLike)) else None
    if not isinstance(path, str) or not path:
        raise ValueError("base_dir must be a directory path (a non-empty str or os.PathLike; "
                         f"'.' for the current directory). Received: base_dir={base_dir!r}")
    return path


def _missing_dirs(path) -> list:
    """The directories of ``path`` (itself and its parents) that do not exist yet, deepest
    first: what ``os.makedirs(path)`` creates."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _check_model_dir(model_dir):
    """ValueError naming the file when ``model_dir`` or one of its parents is one;
    PermissionError naming the directory the export cannot write in."""
    common.check_name_lengths(model_dir, "the export's directory")
    for path in _missing_dirs(model_dir):
        if os.path.exists(path):
            raise ValueError(f"{path} is a file, not a directory: the export goes to "
                             f"{model_dir}/<version>; pass another base_dir (--base-dir) "
                             "or name (--name).")
    blocked = common.unwritable_directory(model_dir)
    if blocked is not None:
        raise PermissionError(f"{common.why_unwritable(blocked)}: the export goes to "
                              f"{model_dir}/<version>; pass another base_dir (--base-dir).")


def check_export_target(base_dir, name) -> None:
    """Refuse, before any work (``zoo train --export``'s training), what :func:`export` would
    refuse of ``base_dir`` and ``name``: a bad path or name, a file in the way, a directory it
    cannot write in."""
    _check_name(name)
    _check_model_dir(os.path.join(_check_base_dir(base_dir), name))


def _check_target(base_dir, name, version, overwrite) -> str:
    """The model directory ``base_dir/name`` (returned), refused where the export cannot go:
    a file in the way, a directory it cannot write in, ``version`` there already (another
    spelling of it, or itself without ``overwrite``), no next version (``version`` None)."""
    model_dir = os.path.join(base_dir, name)
    _check_model_dir(model_dir)
    if version is not None:
        _check_same_number(model_dir, version, name)
    if version is not None and not overwrite and os.path.exists(
            os.path.join(model_dir, str(version))):
        raise _version_exists(version, name, model_dir)
    if version is None:
        _next_version(model_dir, name)  # before any work: a next version there must be
    return model_dir


def _check_name(name):
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError("name must be a directory name of letters, digits, '.', '_' or '-' "
                         f"(not starting with '.' or '-'). Received: name={name!r}")
    if len(name) > common.MAX_NAME_BYTES:   # (ASCII by the pattern) was "[Errno 36] File name too
        # long" once the model had been rebuilt, its base directory left behind
        raise ValueError(f"name must be at most {common.MAX_NAME_BYTES} characters, the longest "
                         f"directory name file systems allow. Received: a name of "
                         f"{len(name)} characters, {name[:40]!r}...")


#: The highest version TensorFlow Serving loads (its versions are int64).
MAX_VERSION = 2 ** 63 - 1


def _check_version(version):
    if version is None:
        return None
    received = version
    if isinstance(version, str) and common.is_digits(version):
        version = int(version)
    # (a NumPy integer was refused)
    if not common.is_integer(version) or not 0 <= version <= MAX_VERSION:
        raise ValueError(f"version must be an integer from 0 to {MAX_VERSION} (2**63-1, the "
                         f"largest TensorFlow Serving loads) or None (next free). "
                         f"Received: version={received!r}")
    return int(version)


def _check_options(base_dir, name, version, precision, lite, overwrite) -> str:
    """The export options :func:`export` and :func:`export_run` refuse before any work
    (``name`` where given); returns ``base_dir`` as checked."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}. "
                         f"Received: precision={precision!r}")
    if not isinstance(lite, bool):
        raise ValueError(f"lite must be True or False. Received: lite={lite!r}")
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be True or False. Received: overwrite={overwrite!r}")
    if overwrite and version is None:   # the next free version: nothing it could replace
        raise ValueError("overwrite=True (--overwrite) replaces the version given with version= "
                         "(--version N); without one the export takes the next free version "
                         "and replaces nothing. Received: overwrite=True, version=None")
    _check_version(version)
    if name is not None:
        _check_name(name)
    return _check_base_dir(base_dir)


def export(model, base_dir="saved_models", name=None, version=None, precision="float32",
           info=None, overwrite=False, *, metrics=None, lite=True, source=None) -> str:
    """Export a Keras model as a versioned SavedModel with a raw-pixel serving signature.

    The ``serving_default`` signature takes ``images`` (float32 ``[None, None, None, C]``,
    raw pixels in the dataset's range, any size) and returns ``probabilities`` and
    ``classes`` (classifiers) or ``mask`` and ``probabilities`` (segmentation); resizing,
    channel conversion and normalisation run inside the graph. ``assets/zoo.json``
    records labels, input spec, preprocessing, metrics, library versions and where the
    model came from (``training``: the source and a run's settings).

    Args:
        model: a ``keras.Model`` (functional, with a known input shape). Models with
            several outputs (e.g. GoogLeNet's auxiliary heads) export their main output.
        base_dir: the directory holding one sub-directory per model name.
        name: the model's directory name (default: the run's model name, else
            ``model.name``).
        version: integer version from 0 to ``2**63 - 1`` (the largest TensorFlow Serving
            loads); default: one more than the highest existing version (1 for the first).
        precision: ``"float32"``, ``"float16"`` or ``"bfloat16"``: the dtype of the weights
            and the computation (inputs and outputs stay float32, and so do the output
            layers, as under the mixed policies of training).
        info: a ``zoo.data.DatasetInfo``, its dict form, a training run's ``info.json``
            dict, or ``None`` (the model's own inputs: no normalisation, and no raw range
            recorded, so loaders check no pixel range; labels ``"0".."K-1"``, task from the
            output rank).
        overwrite: replace an existing ``version``; otherwise an existing version raises
            (refused without a ``version``: the next free one replaces nothing).
        metrics: training/test metrics to record (default: those in a run's ``info``).
        lite: also write ``assets/serving_default.tflite``, the signature converted for the
            LiteRT runtime (float32 exports only). It is kept only if it matches the
            SavedModel within ``1e-3`` on random check inputs; otherwise the export goes
            on without it and ``zoo.json`` says why (``"lite": {"file": null, "error"}``).
        source: where the model came from (a run directory or a ``.keras`` file), recorded
            as ``zoo.json``'s ``training.source`` (absolute); :func:`export_run` gives its
            own. A run's ``info.json`` given as ``info`` adds its ``settings`` (epochs,
            optimizer, learning rate, augmentation, seed, ...) as ``training.settings``.

    Returns:
        The path of the version directory, e.g. ``saved_models/lenet5/1``.

    Raises:
        zoo.common.BackendError: Keras runs on a backend other than TensorFlow (a
            ``ValueError``, raised before anything else).
        ValueError: bad base_dir, name, version, precision, info (a field of the dataset
            out of what it allows, named: :func:`zoo.common.check_info_fields`), metrics,
            overwrite or lite; a model without a fixed input, with several inputs, or whose
            output does not fit the task.
        FileExistsError: ``version`` exists and ``overwrite`` is False.

    Example:
        >>> import zoo
        >>> zoo.export(zoo.lenet5(), "saved_models")  # doctest: +SKIP
        'saved_models/lenet5/1'
    """
    import keras
    import tensorflow as tf
    import zoo

    common.require_tensorflow_backend("zoo.export.export")
    base_dir = _check_options(base_dir, name, version, precision, lite, overwrite)
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise ValueError("export needs a built functional keras.Model with an Input. "
                         f"Received: {type(model).__name__}")
    if len(model.inputs) != 1:
        raise ValueError(f"export supports models with one image input. Received "
                         f"{len(model.inputs)} inputs.")
    dataset, run_metrics, run_task, run_model, run_settings = _resolve_info(info)
    if source is not None and not isinstance(source, (str, os.PathLike)):
        raise ValueError("source must be a path (the run directory or file the model came "
                         f"from) or None. Received: {type(source).__name__}")
    training = {"source": None if source is None else os.path.abspath(os.fspath(source)),
                "settings": run_settings}
    if name is None:
        name = run_model or model.name
    _check_name(name)
    version = _check_version(version)
    if metrics is not None and not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a dict. Received: {type(metrics).__name__}")
    metrics = dict(run_metrics if metrics is None else metrics)

    model_dir = _check_target(base_dir, name, version, overwrite)

    # The main output, its task and whether it is logits.
    output = _main_output(model)
    if len(model.outputs) > 1:
        model = keras.Model(model.inputs, output, name=model.name)
    in_shape = tuple(model.inputs[0].shape[1:])
    out_shape = tuple(output.shape[1:])
    if len(in_shape) != 3:
        raise ValueError(f"export needs an image input (H, W, C). Received input shape "
                         f"{in_shape}")
    rank_task = {1: "classification", 3: "segmentation"}.get(len(out_shape))
    task = (dataset or {}).get("task") or run_task
    if task is None:
        from zoo.registry import registered_info
        info = registered_info(model.name)
        task = info.task if info is not None else rank_task
    if task not in ("classification", "segmentation") or task != rank_task:
        raise ValueError(f"cannot export {model.name!r}: its output shape {out_shape} does not "
                         f"fit the task {task!r} (classification needs [N, K], segmentation "
                         "[N, H, W, K]; export a model with include_top=True).")
    num_classes = int(out_shape[-1])
    check_one_class_each(output, "export takes")

    # The input the model sees and the raw input the signature takes.
    if dataset is not None:
        model_input = tuple(int(v) for v in dataset["input_shape"])
        fixed = tuple(v for v in in_shape)
        if any(a is not None and a != b for a, b in zip(fixed, model_input)):
            raise ValueError(f"info.input_shape {model_input} does not match the model's "
                             f"input shape {fixed}.")
        if int(dataset["num_classes"]) != num_classes and not (
                num_classes == 1 and int(dataset["num_classes"]) == 2):
            raise ValueError(f"info.num_classes={dataset['num_classes']} does not match the "
                             f"model's {num_classes} outputs.")
        raw_shape = dataset.get("raw_shape")
        in_channels = int(raw_shape[-1]) if raw_shape and raw_shape[-1] else model_input[-1]
        raw_range = [float(v) for v in dataset.get("raw_range", (0.0, 255.0))]
    else:
        if None in in_shape and source is None:
            raise ValueError(f"the model's input shape {in_shape} is not fixed; pass info "
                             "(a DatasetInfo) so the export knows the input size.")
        if None in in_shape:   # export_run, zoo export: no info.json beside the file
            raise ValueError(f"the model's input shape {in_shape} is not fixed, and no "
                             f"info.json gives the export an input size: export the run "
                             f"directory the model was trained in (its info.json holds the "
                             f"dataset's), or save the model built with a fixed input shape. "
                             f"Received: {source}")
        model_input = tuple(int(v) for v in in_shape)
        in_channels = model_input[-1]
        # No dataset: the signature takes the model's own inputs, whatever their range
        # (normalised values, fractions of 0..1, ...), so none is recorded for the
        # loaders to check pixels against.
        raw_range = None
        dataset = {"name": None, "task": task, "num_classes": num_classes,
                   "labels": [str(i) for i in range(num_classes)],
                   "input_shape": list(model_input),
                   "mean": [0.0], "std": [1.0], "raw_shape": None}
    labels = [str(v) for v in dataset.get("labels") or range(num_classes)]
    if len(labels) != num_classes and not (num_classes == 1 and len(labels) == 2):
        raise ValueError(f"{len(labels)} labels for {num_classes} classes.")

    kind = _output_kind(model, output, _reading_sample(model_input))
    from zoo.startlog import command_line_filter
    # float16's first ops, where TensorFlow logs its note on the kernels that run them
    with command_line_filter() if precision == "float16" else contextlib.nullcontext():
        # Folded where the weights are widest: a float32 export of a model with float16
        # or bfloat16 variables folds its float32 copy (the folded weights were rounded
        # to the model's type, 2.5e-4 off for a float16 ResNet-18), a reduced-precision
        # export folds before the weights are rounded.
        served = (fold_batch_norm(_cast_model(model, precision)) if precision == "float32"
                  else _cast_model(fold_batch_norm(model), precision))
    serving_fn = _build_serving_fn(served, task=task, kind=kind, in_channels=in_channels,
                                   preprocess=_preprocess_fn(dataset))
    archive = keras.export.ExportArchive()
    archive.track(served)
    archive.add_endpoint(SIGNATURE_NAME, serving_fn)

    outputs = ({"probabilities": {"dtype": "float32", "shape": [None, num_classes]},
                "classes": {"dtype": "int64", "shape": [None]}}
               if task == "classification" else
               {"mask": {"dtype": "int64", "shape": [None, *out_shape[:2]]},
                "probabilities": {"dtype": "float32", "shape": [None, *out_shape]}})
    record = {
        "format": FORMAT,
        "name": name,
        "version": None,
        "model": run_model or model.name,
        "task": task,
        "precision": precision,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"zoo": zoo.__version__, "keras": keras.__version__,
                     "tensorflow": tf.__version__},
        "signature": {"name": SIGNATURE_NAME,
                      "inputs": {INPUT_NAME: {"dtype": "float32",
                                              "shape": [None, None, None, in_channels]}},
                      "outputs": outputs},
        "input": {"raw_range": raw_range,
                  "channels": in_channels,
                  "raw_shape": dataset.get("raw_shape"),
                  "model_input_shape": list(model_input)},
        "output": {"model_output_shape": list(out_shape), "model_returns": kind},
        "preprocessing": {"resize": f"bilinear to {model_input[0]}x{model_input[1]}",
                          "channels": f"{in_channels} -> {model_input[2]}",
                          "normalization": "(x - mean) / std",
                          "mean": [float(v) for v in dataset.get("mean", [0.0])],
                          "std": [float(v) for v in dataset.get("std", [1.0])]},
        "labels": labels,
        "num_classes": num_classes,
        "dataset": dataset,
        "metrics": _jsonable(metrics),
        "training": _jsonable(training),
    }

    created = _missing_dirs(model_dir)
    tmp = None
    try:
        os.makedirs(model_dir, exist_ok=True)
        common.remove_stale_temporaries(model_dir, TMP_PREFIX)
        tmp = tempfile.mkdtemp(prefix=common.temporary_prefix(TMP_PREFIX), dir=model_dir)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; servers may run as other users
        with common.disk_full_as_error(model_dir):
            archive.write_out(tmp, verbose=False)
            record["gpu"] = _gpu_record(tmp)
            record["lite"] = (write_lite(tmp, serving_fn, record) if lite else
                              {"file": None, "error": LITE_NOT_REQUESTED})
            return _commit(tmp, model_dir, version, overwrite, record)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for directory in created:  # the model directory (and base_dir) this export made
            try:
                os.rmdir(directory)
            except OSError:  # not empty: another export's meanwhile
                break
        raise


def _check_inputs(record) -> list:
    """Random raw-pixel batches for the LiteRT check: one at the model's input size and
    one at another size, so the in-graph resize is compared too."""
    import numpy as np
    rng = np.random.default_rng(0)
    low, high = record["input"]["raw_range"] or (0.0, 255.0)   # unknown: pixel values
    h, w = record["input"]["model_input_shape"][:2]
    c = record["input"]["channels"]
    return [rng.uniform(low, high, (n, hh, ww, c)).astype("float32")
            for n, hh, ww in ((2, h, w), (1, h + 5, w + 3))]


# --------------------------------------------------------------------------------------
# What a GPU server would run.

def _type_attrs(node, op_def) -> dict:
    """``{attr: (DataType, ...)}`` of a NodeDef's type attributes, defaults included (a
    SavedModel leaves out attributes at their default value)."""
    values = {}
    if op_def is not None:
        values.update((a.name, a.default_value) for a in op_def.attr
                      if a.HasField("default_value"))
    values.update(node.attr.items())
    types = {}
    for name, value in values.items():
        kind = value.WhichOneof("value")
        if kind == "type":
            types[name] = (value.type,)
        elif kind == "list" and value.list.type:
            types[name] = tuple(value.list.type)
    return types


def _called_functions(node):
    for value in node.attr.values():
        kind = value.WhichOneof("value")
        if kind == "func":
            yield value.func.name
        elif kind == "list":
            yield from (f.name for f in value.list.func)


def signature_nodes(saved_model_dir, signature=SIGNATURE_NAME) -> list:
    """``[(function name, NodeDef)]`` of every node a signature runs: the signature's
    outputs and their inputs in the top-level graph (function name ``""``), and every node
    of the library functions they call, recursively (calls, ``If``/``While`` branches).
    The checkpoint save/restore functions, which a server runs once to load the variables,
    are not part of it."""
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    graph = saved.meta_graphs[0].graph_def
    library = {f.signature.name: f for f in graph.library.function}
    by_name = {n.name: n for n in graph.node}
    signatures = saved.meta_graphs[0].signature_def
    if signature not in signatures:  # indexing the protobuf map would add an empty one
        raise ValueError(f"{saved_model_dir} has no signature {signature!r}; its "
                         f"signatures: {sorted(k for k in signatures if not k.startswith('__'))}")
    sig = signatures[signature]
    todo = [t.name.split(":")[0] for t in sig.outputs.values()]
    seen, nodes = set(), []
    while todo:
        name = todo.pop().lstrip("^").split(":")[0]
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        nodes.append(("", by_name[name]))
        todo.extend(by_name[name].input)
    calls = [f for _, n in nodes for f in _called_functions(n)]
    done = set()
    while calls:
        name = calls.pop()
        if name in done or name not in library:
            continue
        done.add(name)
        for node in library[name].node_def:
            nodes.append((name, node))
            calls.extend(_called_functions(node))
    return nodes


def gpu_check(saved_model_dir, signature=SIGNATURE_NAME) -> dict:
    """Whether a signature of a SavedModel can run on a GPU, read from the graph alone
    (no GPU needed): no node is pinned to a device, and every op has a GPU kernel for the
    dtypes it uses in this TensorFlow build (kernels registered for every device count).

    Args:
        saved_model_dir: a SavedModel directory (a version directory of an export).
        signature: the signature to check.

    Returns:
        ``{"device_pins": ["function/node (Op) on DEVICE", ...], "ops_without_gpu_kernel":
        ["Op(T=bfloat16)", ...], "nodes": number of nodes}``; ``"ops_without_gpu_kernel"`` is
        ``None`` with a ``"note"`` when this TensorFlow build registers no GPU kernels
        (a CPU-only build cannot tell).

    Raises:
        FileNotFoundError: no ``saved_model.pb`` in ``saved_model_dir``.
        TypeError: ``saved_model_dir`` is no path.
        ValueError: the SavedModel has no signature ``signature``; ``saved_model_dir``
            is ``""``.
    """
    import tensorflow as tf
    from tensorflow.python.framework import kernels, op_def_registry

    # (None was os.fspath's TypeError, a model directory "[Errno 2] No such file or
    # directory: '.../saved_model.pb'", a file NotADirectoryError)
    saved_model_dir = common.check_path("gpu_check", "saved_model_dir", saved_model_dir,
                                        "a SavedModel directory")
    if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(f"gpu_check: {saved_model_dir} holds no saved_model.pb; pass "
                                f"a SavedModel directory (an export's version directory, "
                                f"such as saved_models/lenet5/1).")
    if not isinstance(signature, str):
        raise ValueError(f"gpu_check: signature must be a signature name such as "
                         f"{SIGNATURE_NAME!r}. Received: signature={signature!r}")
    nodes = signature_nodes(saved_model_dir, signature)
    pins = sorted({f"{fn or '<graph>'}/{n.name} ({n.op}) on {n.device}"
                   for fn, n in nodes if n.device})
    report = {"device_pins": pins, "ops_without_gpu_kernel": [], "nodes": len(nodes)}
    if not any(k.device_type == "GPU"
               for k in kernels.get_registered_kernels_for_op("Conv2D").kernel):
        report["ops_without_gpu_kernel"] = None
        report["note"] = (f"TensorFlow {tf.__version__} here registers no GPU kernels: "
                          "kernels not checked")
        return report
    registered = {}
    missing = set()
    for _, node in nodes:
        if node.op not in registered:
            registered[node.op] = [
                k for k in kernels.get_registered_kernels_for_op(node.op).kernel
                if k.device_type in ("GPU", "DEFAULT")]
        types = _type_attrs(node, op_def_registry.get(node.op))
        if not any(all(set(types.get(c.name, ())) <= set(c.allowed_values.list.type)
                       for c in k.constraint) for k in registered[node.op]):
            missing.add(node.op + "(" + ", ".join(
                f"{a}=" + "/".join(sorted({tf.as_dtype(t).name for t in types[a]}))
                for a in sorted(types)) + ")")
    report["ops_without_gpu_kernel"] = sorted(missing)
    return report


def _gpu_record(saved_model_dir) -> dict:
    """``zoo.json``'s ``"gpu"``: :func:`gpu_check` of ``serving_default``, with a warning
    when something in it would keep the signature (or part of it) off a GPU."""
    import warnings
    try:
        report = gpu_check(saved_model_dir)
    except Exception as exc:  # an unreadable graph is the SavedModel loader's to report
        return {"error": common.exception_line(exc)}
    if report["device_pins"] or report["ops_without_gpu_kernel"]:
        warnings.warn(f"{SIGNATURE_NAME} would not run entirely on a GPU: device pins "
                      f"{report['device_pins']}, ops without a GPU kernel "
                      f"{report['ops_without_gpu_kernel']}", stacklevel=3)
    return report


def write_lite(saved_model_dir, serving_fn, record) -> dict:
    """Convert ``serving_default`` of ``saved_model_dir`` to a LiteRT flatbuffer, check it
    against ``serving_fn`` and write it to ``LITE_FILE``.

    Returns:
        The ``zoo.json`` entry: ``{"file", "max_abs_diff", "tolerance", "converter"}``, or
        ``{"file": None, "error": why}`` when the model is not float32, LiteRT is not
        installed, conversion fails or the outputs differ by more than the tolerance.
    """
    import numpy as np
    import tensorflow as tf
    if record["precision"] != "float32":
        return {"file": None, "error": f"only float32 exports get a LiteRT model (this one "
                                       f"is {record['precision']})"}
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401  (installed?)
    except ImportError as exc:
        return {"file": None, "error": f"the LiteRT runtime is not installed ({exc})"}
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=[SIGNATURE_NAME])
        blob = converter.convert()
        from zoo.startlog import make_litert_interpreter   # (its INFO line hidden in a CLI)
        runner = make_litert_interpreter(model_content=blob).get_signature_runner(
            SIGNATURE_NAME)
        worst = 0.0
        for x in _check_inputs(record):
            want = {k: v.numpy() for k, v in serving_fn(tf.constant(x)).items()}
            got = runner(**{INPUT_NAME: x})
            if sorted(got) != sorted(want):
                raise ValueError(f"outputs {sorted(got)} instead of {sorted(want)}")
            for key, value in want.items():
                if got[key].shape != value.shape or got[key].dtype != value.dtype:
                    raise ValueError(f"output {key!r} is {got[key].dtype} "
                                     f"{got[key].shape}, the SavedModel's {value.dtype} "
                                     f"{value.shape}")
            worst = max(worst, float(np.max(np.abs(got["probabilities"].astype("float64")
                                                   - want["probabilities"]))))
    except Exception as exc:  # an op LiteRT lacks, or a mismatch: the export goes on
        return {"file": None, "error": f"conversion failed: {common.exception_line(exc)}"}
    if not worst <= LITE_TOLERANCE:
        return {"file": None, "error": f"LiteRT outputs differ from the SavedModel's by "
                                       f"{worst:.3g} (> {LITE_TOLERANCE:g})"}
    os.makedirs(os.path.join(saved_model_dir, "assets"), exist_ok=True)
    with open(os.path.join(saved_model_dir, LITE_FILE), "wb") as f:
        f.write(blob)
    return {"file": LITE_FILE.replace(os.sep, "/"), "max_abs_diff": worst,
            "tolerance": LITE_TOLERANCE, "converter": f"tf.lite {tf.__version__}"}


def _write_record(tmp, record):
    os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
    with open(os.path.join(tmp, ZOO_JSON), "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    common.sync_directory(os.path.join(tmp, "assets"))   # its entry, made by the first write


def _sync_tree(path) -> None:
    """``fsync`` every file and directory under ``path`` (``path`` included): the version's
    files reach the disk before its rename makes it visible, so that after a power loss a
    version directory is whole or absent (a rename can reach the disk before the data it
    names; only ``zoo.json`` was synced, and the SavedModel's files could be empty)."""
    walked = list(os.walk(path, topdown=False))
    common.fsync_paths(os.path.join(root, name) for root, _, files in walked for name in files)
    for root, _, _ in walked:
        common.sync_directory(root)


def _version_exists(version, name, model_dir) -> FileExistsError:
    return FileExistsError(f"version {version} of {name!r} already exists in {model_dir}; "
                           f"pass overwrite=True (--overwrite) to replace it.")


def _exchange(a, b) -> bool:
    """Swap the directories ``a`` and ``b`` in one step (Linux's ``renameat2`` with
    ``RENAME_EXCHANGE``), so that ``b`` is never missing; ``False`` where the system or the
    file system cannot (nothing done).

    Raises:
        FileNotFoundError: ``b`` (or ``a``) does not exist.
    """
    import ctypes
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):   # not Linux, or a C library without it
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), a, None, b)


def _replace_version(tmp, target) -> bool:
    """Put the finished ``tmp`` in the place of the existing version ``target``, the old
    version's files then removed; ``False`` if ``target`` is gone (nothing done). Swapped in
    one step where the file system can, so that neither a server polling the directory nor a
    kill at any moment finds the version missing; elsewhere the old version is renamed away
    first."""
    try:
        if _exchange(tmp, target):
            # the old version's files now (a file, where a file had the version's name)
            common.remove_path(tmp, ignore_errors=True)
            return True
    except FileNotFoundError:
        return False
    model_dir = os.path.dirname(target)
    trash = tempfile.mkdtemp(prefix=common.temporary_prefix(TMP_PREFIX) + "old-",
                             dir=model_dir)
    try:
        os.rename(target, os.path.join(trash, "old"))
    except FileNotFoundError:
        os.rmdir(trash)
        return False
    os.rename(tmp, target)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _commit(tmp, model_dir, version, overwrite, record) -> str:
    """Rename the finished temporary directory into its version directory (its files
    synced to the disk first, and the model directory after)."""
    _sync_tree(tmp)   # (zoo.json is written and synced again with its version)
    target = _commit_unsynced(tmp, model_dir, version, overwrite, record)
    common.sync_directory(model_dir)
    return target


def _commit_unsynced(tmp, model_dir, version, overwrite, record) -> str:
    auto = version is None
    if auto:
        version = _next_version(model_dir, record["name"])
    for _ in range(1000):
        _check_next_version(version, record["name"])  # (other exports took the ones before)
        target = os.path.join(model_dir, str(version))
        record["version"] = version
        _write_record(tmp, record)
        if os.path.exists(target) and overwrite and not auto:
            if _replace_version(tmp, target):
                return target
            continue   # removed meanwhile (by another export replacing it): renamed below
        if os.path.exists(target):
            if not auto:
                raise _version_exists(version, record["name"], model_dir)
            version += 1
            continue
        try:
            os.rename(tmp, target)
            return target
        except OSError as exc:  # another export took this version meanwhile
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            if not auto and not overwrite:
                raise _version_exists(version, record["name"], model_dir) from None
            if auto:
                version += 1
    raise RuntimeError(f"could not find a free version in {model_dir}")


def _jsonable(value):
    """Metrics as plain JSON values (numpy scalars become floats)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, bool, type(None), int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


# --------------------------------------------------------------------------------------
# Exporting a training run.

def _info_beside(keras_file) -> str:
    """The ``info.json`` a ``.keras`` file's export reads: the one beside it."""
    return os.path.join(os.path.dirname(os.path.abspath(keras_file)), "info.json")


def _run_files(path):
    """``(.keras file, info dict or None)`` of a run directory or a ``.keras`` file, the
    info checked (the model is not loaded: nothing here imports TensorFlow)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        keras_file = os.path.join(path, "model.keras")
        if not os.path.isfile(keras_file):
            raise FileNotFoundError(f"{path} is no finished training run: it has no "
                                    "model.keras. Pass a run directory (model.keras + "
                                    "info.json) or a .keras file." + not_a_run_hint(path))
        if not os.path.isfile(os.path.join(path, "info.json")):
            # Without it the export would know no normalisation, labels or dataset.
            raise FileNotFoundError(
                f"{path} is not a complete training run: it has model.keras but no info.json "
                "(the dataset's normalisation, labels and input size). Pass a run directory "
                "written by zoo train (model.keras + info.json), or the .keras file itself to "
                "export it without normalisation (raw pixels in, no (x - mean) / std).")
    elif os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ValueError(f"expected a run directory or a .keras file. Received: {path!r}")
        keras_file = path
    else:
        raise FileNotFoundError(f"no such run directory or .keras file: {path!r}")
    info_file = _info_beside(keras_file)
    info = None
    if os.path.isfile(info_file):
        try:
            with open(info_file, encoding="utf-8") as f:
                info = json.load(f)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{info_file} is not valid JSON ({exc}): train the run again "
                             f"(zoo train writes it), or repair the file.") from None
        if not isinstance(info, dict):
            raise ValueError(f"{info_file} holds a JSON {type(info).__name__}, not the object "
                             f"zoo train writes ({{\"model\", \"dataset\", ...}}).")
        _resolve_info(info, source=info_file)  # checked before the model loads
    return keras_file, info


def export_run(run_dir_or_keras_file, base_dir="saved_models", name=None, version=None,
               precision="float32", overwrite=False, *, lite=True) -> str:
    """Export a training run (``model.keras`` + ``info.json``) or a bare ``.keras`` file.

    The run's ``info.json`` supplies the dataset (labels, normalisation, input size), the
    task, the model's registry name, the test metrics and the training settings; a
    ``.keras`` file with an ``info.json`` beside it uses that one. ``zoo.json`` records the
    run directory or file as ``training.source``.

    Args:
        run_dir_or_keras_file: a directory written by ``zoo train`` or a ``.keras`` file.
        base_dir, name, version, precision, overwrite, lite: as in :func:`export`.

    Returns:
        The version directory.

    Raises:
        zoo.common.BackendError: Keras runs on a backend other than TensorFlow (a
            ``ValueError``, raised before anything else).
        FileNotFoundError: no run directory, ``model.keras``, ``info.json`` (in a run
            directory) or file.
        TypeError: ``run_dir_or_keras_file`` is no path.
        ValueError: as in :func:`export` (its options are checked before the model is
            loaded); an ``info.json`` that is not valid JSON, not an object or holds a bad
            dataset field (the message names the file).

    Example:
        >>> export_run("runs/lenet5")  # doctest: +SKIP
        'saved_models/lenet5/2'
    """
    common.require_tensorflow_backend("zoo.export.export_run")
    if not isinstance(run_dir_or_keras_file, (str, os.PathLike)):
        raise TypeError(f"export_run: run_dir_or_keras_file must be the path of a training "
                        f"run directory or a .keras file. "
                        f"Received: {common.received_text(run_dir_or_keras_file)}")
    # Refused before the model is loaded (seconds for a large one), as export refuses them.
    base = _check_options(base_dir, name, version, precision, lite, overwrite)
    keras_file, info = _run_files(run_dir_or_keras_file)
    # The export's directory, where its name is known without the model (--name, or the
    # run's model name, as export takes them): refused before TensorFlow's import and the
    # load too. export checks it again, in its place.
    known = name if name is not None else _resolve_info(info)[3] or None
    if known is not None:
        common.check_keras_file(keras_file)   # (the load's first check, made before this)
        _check_name(known)
        _check_target(base, known, _check_version(version), overwrite)
    import zoo.models  # noqa: F401  (only now: a bad path is refused without TensorFlow)
    model = common.load_model(keras_file, compile=False)
    return export(model, base_dir=base_dir, name=name, version=version, precision=precision,
                  info=info, overwrite=overwrite, lite=lite, source=run_dir_or_keras_file)


def configure_export(parser):
    """``zoo export RUN_DIR_OR_KERAS_FILE [--base-dir] [--name] [--version] ...``.

    Args:
        parser: the command's ``argparse.ArgumentParser``; its options are added.

    Returns:
        ``run(args) -> int``: runs the command on the parsed arguments and returns its
        exit code.
    """
    parser.add_argument("source", metavar="RUN_DIR_OR_KERAS_FILE",
                        help="a training run directory (model.keras + info.json) or a .keras file")
    parser.add_argument("--base-dir", default="saved_models",
                        help="where model directories live (default: saved_models)")
    parser.add_argument("--name", default=None, help="model directory name (default: the "
                        "run's model name)")
    parser.add_argument("--version", type=int, default=None,
                        help="integer version, 0 to 2**63-1 (default: next free)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="weights and compute dtype (inputs, outputs and the output "
                        "layer stay float32)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the existing version given with --version")
    parser.add_argument("--no-lite", dest="lite", action="store_false",
                        help="do not write the LiteRT model (assets/serving_default.tflite) "
                        "that zoo.serving runs on CPUs")

    def run(args):
        common.require_tensorflow_backend("zoo export")
        path = export_run(args.source, base_dir=args.base_dir, name=args.name,
                          version=args.version, precision=args.precision,
                          overwrite=args.overwrite, lite=args.lite)
        print(path)
        print_changed_classes_note(path, "export")
        if os.path.isfile(args.source) and not os.path.isfile(_info_beside(args.source)):
            print(f"zoo export: note: no info.json beside {args.source}: exported without "
                  f"the dataset's normalisation and labels (clients send the model's own "
                  f"inputs, not raw pixels to normalise)", file=sys.stderr)
        return 0

    return run


common.make_module_callable(__name__, export)
