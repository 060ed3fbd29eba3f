"""Argument checks and helpers shared by every builder.

Every classifier builder takes the same keyword-only arguments::

    input_shape=None, num_classes=1000, include_top=True, pooling=None,
    classifier_activation="softmax", weights=None, name=None

(LeNet-5's ``num_classes`` is 10) and calls :func:`check_classifier_args` before it creates
a single layer.
"""

from __future__ import annotations

import contextlib
import errno
import math
import numbers
import os
import sys
from collections.abc import Mapping
from typing import Iterable, Optional, Sequence

POOLINGS = (None, "avg", "max")
#: What a model does with an image: a class per image or per pixel (``DatasetInfo.task``,
#: ``zoo.train.compile_model``, an export's ``zoo.json``).
TASKS = ("classification", "segmentation")


def min_input_size(ops: Iterable[tuple], out: int = 1) -> int:
    """Smallest spatial input size for which a chain of sliding-window
    operations still leaves ``out`` pixels.

    Args:
        ops: ``(kernel, stride, padding)`` triples in forward order along the
            architecture's path that shrinks the image the most; padding is
            ``"valid"`` or ``"same"``.
        out: required output size after the last operation.

    Returns:
        The minimum input size, obtained by inverting each operation's
        output-size formula ``o = floor((i - k) / s) + 1`` (valid) or
        ``o = ceil(i / s)`` (same), last operation first.
    """
    size = out
    for kernel, stride, padding in reversed(list(ops)):
        if padding == "valid":
            size = (size - 1) * stride + kernel
        elif padding == "same":
            size = (size - 1) * stride + 1
        else:
            raise ValueError(f"padding must be 'valid' or 'same'. Received: {padding!r}")
    return size


def conv_output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output size of one sliding-window operation (the seed notes' formula)."""
    if padding == "valid":
        return (size - kernel) // stride + 1
    return -(-size // stride)


MIN_SIZE_REASON = "the smallest size the architecture reduces to a valid output"


def resolve_input_shape(model_name: str, input_shape, default_shape: Sequence[int],
                        min_size: int, *, min_reason: str = MIN_SIZE_REASON) -> tuple:
    """Check ``input_shape`` and fill in the paper's default.

    ``None`` gives ``default_shape``; ``(H, W, C)`` must have positive integer
    entries with ``H, W >= min_size``;
    ``min_reason`` says where the minimum comes from.
    """
    if input_shape is None:
        return tuple(default_shape)
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(f"{model_name}: input_shape must be a tuple (height, width, channels). "
                         f"Received: input_shape={input_shape!r}") from None
    if len(shape) != 3 or not all(is_integer(d) and d > 0 for d in shape):
        raise ValueError(f"{model_name}: input_shape must be three positive integers "
                         f"(height, width, channels), height and width at least {min_size}. "
                         f"Received: input_shape={input_shape!r}")
    shape = tuple(int(d) for d in shape)   # NumPy integers as Python ints
    h, w, _ = shape
    if h < min_size or w < min_size:
        raise ValueError(f"{model_name}: input height and width must be at least {min_size} "
                         f"({min_reason}). Received: input_shape={shape}")
    return shape


def check_model_name(model_name: str, name) -> None:
    """A builder's ``name``: ``None`` (the builder's default name) or a non-empty string
    without ``/`` (Keras refuses ``/``, after the whole model is built; ``""`` gave the
    default name)."""
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise ValueError(f"{model_name}: name must be None (the default name) or a non-empty "
                         f"string without '/'. Received: name={name!r}")


def check_classifier_args(model_name: str, *, input_shape, default_shape, min_size,
                          num_classes, include_top, pooling, classifier_activation,
                          weights, name, published_weights: Sequence[str] = (),
                          min_reason: str = MIN_SIZE_REASON) -> tuple:
    """Validate the shared classifier arguments; return the resolved input shape."""
    check_model_name(model_name, name)
    check_int(model_name, "num_classes", num_classes, 1)
    if pooling not in POOLINGS:
        raise ValueError(f"{model_name}: pooling must be one of None, 'avg', 'max'. "
                         f"Received: pooling={pooling!r}")
    check_bool(model_name, include_top=include_top)
    activation(model_name, "classifier_activation", classifier_activation)
    check_weights(model_name, weights, published_weights)
    return resolve_input_shape(model_name, input_shape, default_shape, min_size,
                               min_reason=min_reason)


def is_integer(value) -> bool:
    """An integer, Python's or NumPy's (``labels.max() + 1``), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(owner: str, name: str, value, minimum=None, maximum=None) -> int:
    """``value`` as a Python ``int``: an integer (a NumPy integer too, not a bool) within
    ``[minimum, maximum]`` (either end may be ``None``).

    Raises:
        ValueError: naming ``owner``, the argument, the allowed range and the value.
    """
    if not is_integer(value) or (minimum is not None and value < minimum) \
            or (maximum is not None and value > maximum):
        if maximum is None:
            allowed = "" if minimum is None else f" >= {minimum}"
        elif minimum is None:
            allowed = f" <= {maximum}"
        else:
            allowed = f" from {minimum} to {maximum}"
        raise ValueError(f"{owner}: {name} must be an integer{allowed}. "
                         f"Received: {name}={value!r}")
    return int(value)


def is_finite_number(value) -> bool:
    """A real number, Python's or NumPy's, not a bool, neither NaN nor infinite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def received_text(value) -> str:
    """How a message names a value of the wrong kind: ``None`` and strings as themselves,
    anything else by its type (``"ndarray object"``), not a repr that may run for pages."""
    return repr(value) if value is None or isinstance(value, str) else \
        f"{type(value).__name__} object"


def check_number(owner: str, name: str, value, *, minimum=None, above=None) -> float:
    """``value`` as a ``float``: a finite real number (not a bool, not NaN), ``>= minimum``
    and ``> above`` where given.

    Raises:
        ValueError: naming ``owner``, the argument, the allowed values and the value.
    """
    ok = is_finite_number(value) and (minimum is None or value >= minimum) \
        and (above is None or value > above)
    if not ok:
        allowed = "".join([f" >= {minimum}" if minimum is not None else "",
                           f" > {above}" if above is not None else ""])
        raise ValueError(f"{owner}: {name} must be a finite number{allowed}. "
                         f"Received: {name}={value!r}")
    return float(value)


def check_rate(owner: str, name: str, value) -> float:
    """A dropout rate: a real number in ``[0, 1)`` (not a bool, not NaN), as a ``float``.

    Raises:
        ValueError: naming ``owner``, the argument and the value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{owner}: {name} must be a number in [0, 1). "
                         f"Received: {name}={value!r}")
    return float(value)


def activation(owner: str, name: str, value):
    """``keras.activations.get(value)`` for an activation argument: a Keras activation
    name, a callable, ``None`` (linear: logits) or a serialized activation (a layer's
    config).

    Raises:
        ValueError: naming ``owner``, the argument, the allowed values and the value.
    """
    import keras
    if value is not None and not isinstance(value, (str, dict)) and not callable(value):
        raise ValueError(f"{owner}: {name} must be an activation name, a callable or None. "
                         f"Received: {value!r}")
    try:
        return keras.activations.get(value)
    except (ValueError, TypeError):
        raise ValueError(f"{owner}: unknown {name} {value!r}; use a Keras activation name "
                         f"such as 'softmax', 'sigmoid' or 'linear', a callable, or None "
                         f"(logits)") from None


def check_jit_compile(jit_compile, owner: str = ""):
    """``jit_compile`` as ``"auto"``, ``True`` or ``False``: the string, or a bool, Python's or
    NumPy's (``np.bool_``, made a Python bool; ``1`` and ``0.0`` are refused)."""
    import numpy as np
    if isinstance(jit_compile, (bool, np.bool_)):
        return bool(jit_compile)
    if isinstance(jit_compile, str) and jit_compile == "auto":
        return "auto"
    prefix = f"{owner}: " if owner else ""
    raise ValueError(f"{prefix}jit_compile must be 'auto', True or False. "
                     f"Received: jit_compile={jit_compile!r}")


def check_bool(model_name: str, **kwargs) -> None:
    """Each keyword's value must be True or False (not a truthy string such as ``"no"``)."""
    for key, value in kwargs.items():
        if not isinstance(value, bool):
            raise ValueError(f"{model_name}: {key} must be True or False. "
                             f"Received: {key}={value!r}")


#: The largest seed: NumPy's and Keras' seeds are 32-bit.
MAX_SEED = 2 ** 32 - 1

#: The largest ignore label: masks are 8- or 16-bit files, and augmentation moves them as
#: float32, exact for integers far beyond it.
MAX_IGNORE_LABEL = 65535

#: ``mixed_precision``'s values (``zoo train`` / ``zoo tune --mixed-precision``).
MIXED_PRECISION = ("auto", "off", "float16", "bfloat16")

#: What ``mixed_precision="auto"`` picks, in the ``--mixed-precision`` help of ``zoo train``
#: and ``zoo tune``.
AUTO_PRECISION_HELP = ("auto (float16 on GPUs with tensor cores, bfloat16 on CPUs with AMX and "
                       "on AMD CPUs with AVX512_BF16 but for Xception below 40x40, else "
                       "float32)")

# Training settings that ``zoo train``'s options name (``zoo.train_cli``, which imports no
# TensorFlow) as ``zoo.train`` uses them.

#: The optimizers of ``zoo.train.fit`` and ``zoo train --optimizer``.
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam", "adagrad")

#: The weight decay of ``adamw`` without one given (Keras' ``AdamW`` default).
ADAMW_WEIGHT_DECAY = 0.004

#: ``lr_schedule="plateau"``: the learning rate is divided by 10 after this many epochs in a
#: row without improvement of the monitored value (AlexNet's and ResNet's papers divide it
#: by 10 when the validation error stops improving), at most 3 times (down to 1/1000).
PLATEAU_PATIENCE, PLATEAU_FACTOR, PLATEAU_LOWEST = 3, 0.1, 1e-3

#: The learning-rate schedules of ``fit`` and ``zoo train --lr-schedule``.
LR_SCHEDULES = ("constant", "cosine", "plateau")

#: The weight of each auxiliary classifier's loss by default: the GoogLeNet paper's.
AUX_LOSS_WEIGHT = 0.3

#: The test images of the embedded ``digits`` dataset (``zoo predict --digits N`` takes up to
#: that many).
DIGITS_TEST_SIZE = 360

#: The datasets :mod:`zoo.data` makes itself, offline, and those it loads from
#: tensorflow-datasets by name: the names alone, here, so that a command refuses an unknown
#: one before TensorFlow's import (:func:`dataset_source`); zoo.data's sources are keyed by
#: them (tests/test_data.py holds the two to each other).
EMBEDDED_DATASETS = ("digits", "shapes")
TFDS_DATASETS = ("cifar10", "cifar100", "fashion_mnist", "imagenette", "malaria", "mnist",
                 "oxford_iiit_pet")

#: The task and channels of each named dataset (its source's in zoo.data, held to them by
#: tests/test_data.py): ``zoo train`` checks an image size against a model before the data
#: is loaded.
DATASET_KINDS = {"digits": ("classification", 1), "shapes": ("segmentation", 3),
                 "cifar10": ("classification", 3), "cifar100": ("classification", 3),
                 "fashion_mnist": ("classification", 1), "imagenette": ("classification", 3),
                 "malaria": ("classification", 3), "mnist": ("classification", 1),
                 "oxford_iiit_pet": ("segmentation", 3)}

#: The names of a dataset's splits a caller may give, and the split each names.
SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation",
                 "valid": "validation", "test": "test"}


def split_name(split, *, every=False) -> str:
    """The split ``split`` names (``"val"`` is ``"validation"``, in any case); with
    ``every``, ``"all"`` too (every image once: :func:`zoo.data.load_raw`).

    Raises:
        ValueError: any other value, naming the splits allowed.
    """
    if every and isinstance(split, str) and split.lower() == "all":
        return "all"
    key = SPLIT_ALIASES.get(split.lower()) if isinstance(split, str) else None
    if key is None:
        also = ", 'all'" if every else ""
        raise ValueError(f"split must be one of 'train', 'validation' (or 'val'), "
                         f"'test'{also}. Received: split={split!r}")
    return key


#: The layouts of a classification dataset's folder, for the messages that refuse one.
CLASSIFICATION_LAYOUT = ("root/train/<label>/*.png|jpg (+ root/validation, root/test), or "
                         "root/<label>/*.png|jpg (split 80/10/10 here)")


def list_datasets() -> list:
    """Names :func:`zoo.data.load` accepts (``folder:PATH`` stands for any local folder)."""
    return sorted(EMBEDDED_DATASETS) + sorted(TFDS_DATASETS) + ["folder:PATH"]


def dataset_source(name) -> tuple:
    """Where :mod:`zoo.data` finds the dataset ``name``: ``("embedded", name)``,
    ``("tfds", name)`` or ``("folder", absolute path of an existing directory)``
    (``folder:PATH``, or a name that is a path). Imports nothing, so that ``zoo train``,
    ``zoo tune`` and ``zoo evaluate`` refuse a mistyped name or a missing folder at once.

    Raises:
        ValueError: ``name`` is not a string or path, ``folder:`` without a path, no
            folder at the path, an unknown name (the message suggests close ones).
    """
    if not isinstance(name, (str, os.PathLike)):
        raise ValueError(f"Dataset name must be a string. Received: {name!r}")
    name = os.fspath(name)
    if name in EMBEDDED_DATASETS:
        return "embedded", name
    if name in TFDS_DATASETS:
        return "tfds", name
    if name.startswith("folder:"):
        if not name[len("folder:"):].strip():
            raise ValueError(f"folder:PATH needs the path of the dataset's folder, e.g. "
                             f"folder:data/pets. Received: {name!r}")
        root = os.path.abspath(os.path.expanduser(name[len("folder:"):]))
    elif os.sep in name or name.startswith(".") or os.path.exists(name):   # (a file: named)
        root = os.path.abspath(os.path.expanduser(name))
    else:
        import difflib
        known = {n.lower(): n for n in list_datasets()}   # ('MNIST' was like no name)
        close = [known[n] for n in difflib.get_close_matches(name.lower(), known, n=3,
                                                             cutoff=0.5)]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown dataset {name!r}.{hint} Known datasets: "
                         f"{', '.join(list_datasets())} (folder:PATH or a path for a local "
                         f"folder).")
    if not os.path.isdir(root):
        what = ("is a file, not a folder (an archive is unpacked first)"
                if os.path.exists(root) else "not found")   # (a file was "not found")
        raise ValueError(f"Dataset folder {what}: {root!r}. Expected a directory laid out "
                         f"as {CLASSIFICATION_LAYOUT} (classification) or root/images + "
                         "root/masks (segmentation).")
    return "folder", root


#: The fields of :class:`zoo.data.DatasetInfo` without a default: a dict form must have them.
INFO_REQUIRED = ("name", "task", "num_classes", "labels", "input_shape")


def as_list(value):
    """``value`` as a list if it is a list, tuple or 1-D array, else ``None``."""
    import numpy as np
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1):
        return list(value)
    return None


def check_info_fields(values, prefix="info.") -> None:
    """Check the :class:`zoo.data.DatasetInfo` fields present in ``values`` (a dict of field name ->
    value: a dict form, or an instance's attributes); fields not in it are not checked.

    Args:
        values: ``{field: value}``.
        prefix: what the messages put before a field's name (``"info."``,
            ``"runs/x/info.json: dataset."``).

    Raises:
        ValueError: naming the field, what it holds and what it allows; ``values`` that
            is no dict.

    Here, not in :mod:`zoo.data`, so that ``zoo export`` checks a run's info.json before
    TensorFlow's import.
    """
    import numpy as np
    if not isinstance(values, Mapping):   # (was "'str' object has no attribute 'get'")
        raise ValueError(f"{prefix.rstrip('.') or 'info'} must be a dict of DatasetInfo "
                         f"fields. Received: {type(values).__name__}")

    def bad(field, allowed):
        return ValueError(f"{prefix}{field} must be {allowed}. "
                          f"Received: {field}={clip_text(repr(values[field]))}")

    if "name" in values and values["name"] is not None and not isinstance(values["name"], str):
        raise bad("name", "the dataset's name (a str) or None")
    if "task" in values and values["task"] is not None and (
            not isinstance(values["task"], str) or values["task"] not in TASKS):
        raise bad("task", " or ".join(map(repr, TASKS)))
    num_classes = values.get("num_classes")
    if "num_classes" in values and not (is_integer(num_classes) and num_classes >= 1):
        raise bad("num_classes", "a positive integer")
    if "labels" in values:
        labels = as_list(values["labels"])
        count = f"{num_classes} " if "num_classes" in values else ""
        if labels is None or not all(isinstance(v, str) or is_integer(v) for v in labels):
            raise bad("labels", f"a list of {count}class names (str)")
        if "num_classes" in values and len(labels) != num_classes:
            raise ValueError(f"{prefix}labels must be a list of {count}class names "
                             f"(num_classes={num_classes}). Received: {len(labels)} label"
                             f"{'' if len(labels) == 1 else 's'}")
    shape = as_list(values.get("input_shape"))
    if "input_shape" in values and (shape is None or len(shape) != 3 or not all(
            is_integer(v) and v >= 1 for v in shape)):
        raise bad("input_shape", "(height, width, channels): 3 positive integers")
    if values.get("raw_shape") is not None:
        raw = as_list(values["raw_shape"])
        if raw is None or len(raw) != 3 or not all(v is None or is_integer(v) and v >= 1
                                                   for v in raw):
            raise bad("raw_shape", "None or (height, width, channels): 3 positive integers "
                      "(None where they vary)")
    if "raw_range" in values:
        low_high = as_list(values["raw_range"])
        if (low_high is None or len(low_high) != 2 or not all(map(is_finite_number, low_high))
                or not low_high[0] < low_high[1]):
            raise bad("raw_range", "(low, high): two finite numbers, low < high")
    channels = int(shape[-1]) if "input_shape" in values else None
    shape = tuple(int(v) for v in shape) if channels else None
    for field, positive in (("mean", False), ("std", True)):
        if field not in values:
            continue
        stats = as_list(values[field])
        if (stats is None or not stats or len(stats) not in {1, channels or len(stats)}
                or not all(is_finite_number(v) and (v > 0 or not positive) for v in stats)):
            kind = "positive finite number" if positive else "finite number"
            raise bad(field, f"a list of one {kind} (input_shape {shape} has one "
                      f"channel)" if channels == 1 else
                      f"a list of 1 or {channels} {kind}s (one for all channels, or one per "
                      f"channel of input_shape {shape})" if channels else
                      f"a list of {kind}s, one for all channels or one per channel")
    if "splits" in values and not (isinstance(values["splits"], dict) and all(
            isinstance(k, str) and is_integer(v) and v >= 0
            for k, v in values["splits"].items())):
        raise bad("splits", "a dict of split name -> number of examples")
    if "augmentation" in values and not isinstance(values["augmentation"], dict):
        raise bad("augmentation", "a dict of augmentation settings")
    if "test_is_validation" in values and not isinstance(values["test_is_validation"],
                                                         (bool, np.bool_)):
        raise bad("test_is_validation", "True or False")
    ignore = values.get("ignore_label")
    if ignore is not None:
        low = num_classes if is_integer(num_classes) else 0
        if not (is_integer(ignore) and low <= ignore <= MAX_IGNORE_LABEL):
            raise bad("ignore_label", f"None or an integer from {low} to {MAX_IGNORE_LABEL} "
                      f"(a mask value outside the classes 0..num_classes-1)")


def check_seed(seed) -> int:
    """``seed`` as an ``int``: an integer (Python or NumPy, not a bool) from 0 to
    :data:`MAX_SEED`, the seeds ``keras.utils.set_random_seed`` takes (as ``--seed``), else
    a ``ValueError`` saying so."""
    if not (is_integer(seed) and 0 <= seed <= MAX_SEED):
        raise ValueError(f"seed must be an integer between 0 and 2**32 - 1. "
                         f"Received: seed={clip_text(repr(seed))}")
    return int(seed)


def check_ignore_label(ignore_label):
    """``ignore_label`` as an int, or ``None``; anything but an integer in
    ``0..MAX_IGNORE_LABEL`` raises."""
    if ignore_label is None:
        return None
    if not is_integer(ignore_label) or not 0 <= ignore_label <= MAX_IGNORE_LABEL:
        raise ValueError(f"ignore_label must be None or an integer from 0 to "
                         f"{MAX_IGNORE_LABEL}: the mask value of pixels to leave out of "
                         f"training and evaluation, outside the classes 0..K-1 (Pascal VOC: "
                         f"255). Received: ignore_label={ignore_label!r}")
    return int(ignore_label)


def check_callbacks(callbacks) -> list:
    """``callbacks`` as a list when it is ``None`` or a list (or tuple) of
    ``keras.callbacks.Callback``, else a ``ValueError`` (a single callback, a string).
    Keras is imported only for callbacks given (``zoo tune``'s checks come before it)."""
    if callbacks is None:
        return []
    import keras
    if (not isinstance(callbacks, (list, tuple))
            or not all(isinstance(c, keras.callbacks.Callback) for c in callbacks)):
        raise ValueError(f"callbacks must be a list of keras.callbacks.Callback or None. "
                         f"Received: callbacks={clip_text(repr(callbacks))}")
    return list(callbacks)


def check_verbose(verbose) -> None:
    """Keras' progress output: 0, 1 or 2 (not a bool or another number)."""
    import numpy as np
    if isinstance(verbose, (bool, np.bool_)) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0 (silent), 1 (progress bars) or 2 (one line per "
                         f"epoch). Received: verbose={clip_text(repr(verbose))}")


def progress_verbose(verbose: int, stream=None) -> int:
    """The Keras verbosity a command asked for ``verbose`` (0, 1, 2) runs with: 1, progress
    bars redrawn in place, only where ``stream`` (standard output) is a terminal, and 2,
    one line per epoch, where it is a file or a pipe (``zoo train ... > log``). Keras
    redraws its bars with backspaces and carriage returns wherever it runs on a POSIX
    system (it takes the ``posix`` module being loaded for a terminal), so a log held each
    epoch's bar several times over, with its colour codes."""
    stream = sys.stdout if stream is None else stream
    if verbose != 1:
        return verbose
    try:
        return 1 if stream.isatty() else 2
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return 2


def check_path(owner: str, name: str, value, what: str) -> str:
    """``value`` as a ``str`` path: a non-empty ``str`` or ``os.PathLike``, else a
    ``TypeError`` (another type: ``None`` or an ``int``, which ``os.scandir`` takes for the
    current directory or an open file descriptor) or a ``ValueError`` (``""``, which
    ``os.path.abspath`` takes for the current directory) naming ``owner`` (if any),
    ``name`` and ``what`` it must be."""
    message = (f"{owner + ': ' if owner else ''}{name} must be the path of {what}. "
               f"Received: {name}={clip_text(repr(value))}")
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(message)
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise ValueError(message)
    return path


def check_weights(model_name: str, weights, published: Sequence[str] = ()) -> None:
    """``weights`` must be None, a published name, or an existing file."""
    if weights is None:
        return
    if isinstance(weights, (str, os.PathLike)):
        w = os.fspath(weights)
        if w in published:
            return
        if w == "imagenet":
            raise ValueError(f"{model_name}: no published 'imagenet' weights exist for this "
                             f"model. Allowed: None or a path to a weights file.")
        if os.path.isfile(w):
            return
        names = "".join(f"{p!r}, " for p in published)
        if os.path.isdir(w):
            inside = os.path.join(w, "model.keras")
            hint = f" (a run's: pass its {inside})" if os.path.isfile(inside) else ""
            raise ValueError(f"{model_name}: weights is a directory{hint}. Received: "
                             f"weights={w!r}. Allowed: None, {names}or the path of a weights "
                             f"file.")
        raise ValueError(f"{model_name}: weights file not found. Received: weights={w!r}. "
                         f"Allowed: None, {names}or the path of an existing weights file.")
    raise ValueError(f"{model_name}: weights must be None, a name or a file path. "
                     f"Received: weights={weights!r}")


# The first bytes of the image formats TensorFlow's decode_image reads (and WebP's,
# RIFF....WEBP, in has_image_signature).
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM",
                     b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")


def has_image_signature(head: bytes) -> bool:
    """Whether ``head`` (an image's first 12 bytes or more) starts with the signature of a
    format TensorFlow decodes: the files a folder dataset's pipeline reads."""
    return head.startswith(_IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def check_keras_file(path) -> None:
    """Raise a clear error unless ``path`` can be a Keras ``.keras`` file (a zip archive);
    Keras' own answer to another file is "File not found"."""
    import zipfile
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a Keras model file: a .keras file is a zip archive "
                         f"(written by model.save), this one is not")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path} is not a readable Keras model file: a damaged zip archive "
                         f"({exception_line(exc)})") from None
    if "config.json" not in names:
        raise ValueError(f"{path} is not a Keras model file: a zip archive without the "
                         f"config.json a .keras file holds (written by model.save)")


def load_model(path, *, compile=True, safe_mode=True):
    """A Keras model the zoo saved: a ``.keras`` file (``model.save``, a run's
    ``model.keras`` or ``checkpoints/best.keras``) or a run directory (its ``model.keras``).

    The zoo's custom layers, losses and optimizers are registered with Keras when their
    modules are imported; this imports them first, so the file loads in a fresh process
    (``keras.saving.load_model`` does too once ``zoo.layers``, ``zoo.optimizers`` and
    ``zoo.train`` are imported).

    Args:
        path: a ``.keras`` file or a run directory holding ``model.keras``.
        compile: restore the optimizer, loss and metrics; ``False`` skips them.
        safe_mode: Keras' ``safe_mode``: ``False`` loads a ``Lambda`` layer's Python
            function (only for a file you trust: it runs code from the file).

    Returns:
        The ``keras.Model``.

    Raises:
        FileNotFoundError: no such file, or a directory without ``model.keras``.
        ValueError: a file that is not a ``.keras`` (zip) archive holding a config.json;
            a model holding a class or function not registered with Keras (a custom
            layer whose module is not imported) or, with ``safe_mode=True``, a ``Lambda``
            layer's Python function, named in one line; a ``compile`` or ``safe_mode``
            that is not ``True`` or ``False``.
        TypeError: ``path`` is not a path.
    """
    check_bool("load_model", compile=compile, safe_mode=safe_mode)   # ("no" compiled)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_model: path must be the path of a .keras file or a run "
                        f"directory. Received: {path!r}")
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
        if not os.path.isfile(path):
            from zoo.export import not_a_run_hint
            directory = os.path.dirname(path)
            raise FileNotFoundError(f"{directory} is a directory without model.keras: "
                                    f"expected a run directory or a .keras file."
                                    + not_a_run_hint(directory))
    elif not os.path.isfile(path):
        raise FileNotFoundError(f"no such run directory or .keras file: {path!r}")
    check_keras_file(path)
    # Only now (a missing or broken file is refused without TensorFlow's import, ~6 s):
    import keras
    import zoo.layers  # noqa: F401  (registers the custom layers)
    import zoo.optimizers  # noqa: F401  (and optimizers)
    import zoo.train  # noqa: F401  (and losses)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=safe_mode)
    except (TypeError, ValueError) as exc:
        error = _custom_code_error(path, exc)
        if error is None:
            raise
        raise error from None


def _custom_code_error(path, exc) -> Optional[ValueError]:
    """The one-line error for a ``.keras`` file Keras cannot load without code of the user's
    (Keras' own message spans the whole layer config), or ``None`` for another error."""
    import re
    text = str(exc)
    missing = re.search(r"Could not locate (class|function) '([^']+)'", text)
    if missing:
        kind, name = missing.groups()
        return ValueError(f"{path}: Keras cannot load {kind} {name!r} of the model, which is "
                          f"not registered with it (code of the model's own): import the "
                          f"module that defines it with @keras.saving."
                          f"register_keras_serializable() and load the file in Python "
                          f"(zoo.load_model, then zoo.export or zoo.profile on the model); "
                          f"zoo's commands know Keras' and the zoo's classes only.")
    if "deserialization of a `Lambda` layer" in text:
        return ValueError(f"{path}: the model holds a Lambda layer whose function is Python "
                          f"code, which Keras loads only with safe_mode=False: for a file you "
                          f"trust, load it in Python with zoo.load_model(path, safe_mode="
                          f"False), then zoo.export or zoo.profile the model; zoo's commands "
                          f"load in safe mode.")
    return None


def load_weights_file(model, path) -> None:
    """Load a ``.weights.h5`` / legacy ``.h5`` / ``.keras`` file into ``model``.

    A ``.keras`` file's model gives its weights by layer name, looked up in nested models
    too: every layer of ``model`` that has weights takes those of the layer of the same
    name, and the file's other layers are left out. So a backbone (``include_top=False``)
    loads a whole classifier's file, or a run's ``model.keras`` of a backbone fine-tuned
    inside a model with a new head. A model whose layer names differ from the file's
    loads by position when the weight shapes all match.

    Raises:
        ValueError: a ``.keras`` file without a layer of ``model``'s, whose weights
            have other shapes, with several of its name (two nested backbones of one
            architecture), or with layers between those of ``model``'s names (a deeper
            network of the family: ResNet-34's file in a ResNet-18), naming them.
    """
    path = os.fspath(path)
    if path.endswith(".keras"):
        other = load_model(path, compile=False)
        _set_weights_by_name(model, other)
    else:
        model.load_weights(path)


def _weighted_layers(model, duplicates: Optional[set] = None) -> dict:
    """``{name: layer}`` of the layers with weights, nested models' layers included (the
    first of a name); ``duplicates`` gets the names that several distinct layers have (two
    nested backbones of the same architecture)."""
    import keras
    found = {}
    for layer in model._flatten_layers(include_self=False):
        if layer.weights and not isinstance(layer, keras.Model):
            first = found.setdefault(layer.name, layer)
            if first is not layer and duplicates is not None:
                duplicates.add(layer.name)
    return found


def _set_weights_by_name(model, other) -> None:
    """Copy ``other``'s weights into ``model`` layer by layer name (see
    :func:`load_weights_file`)."""
    import keras

    def shapes(layer):
        return [tuple(w.shape) for w in layer.weights]

    twice = set()
    targets, sources = _weighted_layers(model), _weighted_layers(other, twice)
    ambiguous = [name for name in targets if name in twice]
    if ambiguous:
        nested = [layer.name for layer in other._flatten_layers(include_self=False)
                  if isinstance(layer, keras.Model)]
        raise ValueError(f"{len(ambiguous)} of the model's layers with weights are in "
                         f"{other.name!r} more than once, e.g. {ambiguous[0]!r} (nested models "
                         f"{', '.join(repr(n) for n in nested[:3])}): save the one to load "
                         f"alone, get_layer(NAME).save_weights(...)")
    missing = [name for name in targets if name not in sources]
    if missing and len(missing) == len(targets):
        # No common names: the same architecture under other names loads by position.
        theirs, ours = other.get_weights(), model.get_weights()
        if len(theirs) == len(ours) and all(a.shape == b.shape for a, b in zip(theirs, ours)):
            model.set_weights(theirs)
            return
    mismatched = [f"{name} {shapes(layer)} (file: {shapes(sources[name])})"
                  for name, layer in targets.items()
                  if name in sources and shapes(layer) != shapes(sources[name])]
    if missing or mismatched:
        parts = []
        if missing:
            note = without_aux_note(missing, len(missing) < len(targets))
            parts.append(f"{len(missing)} of the model's {len(targets)} layers with weights "
                         f"are not in {other.name!r}, e.g. {', '.join(missing[:3])}"
                         + (f" (auxiliary classifiers: {note})" if note else ""))
        if mismatched:
            parts.append(f"{len(mismatched)} layer{' has' if len(mismatched) == 1 else 's have'} "
                         f"weights of other shapes, e.g. "
                         f"{'; '.join(mismatched[:2])}")
        raise ValueError("; ".join(parts))
    between = _left_out_between(other, set(targets))
    if between:
        raise ValueError(f"{other.name!r} has {len(between)} layer"
                         f"{'s' if len(between) > 1 else ''} with weights between layers of "
                         f"the model's names, e.g. {between[0]}: a deeper architecture "
                         f"whose names include the model's, not its weights")
    for name, layer in targets.items():
        layer.set_weights(sources[name].get_weights())


def _left_out_between(other, names: set) -> list:
    """The names of ``other``'s layers with weights (nested models' too) that are not in
    ``names`` and lie on a path from a layer in ``names`` to another: blocks of a deeper
    network of the same layer names (ResNet-101's ``conv4_block7`` in a ResNet-50), where
    layers only before them (an input conversion) or only after them (a classifier, a
    decoder, auxiliary classifiers) are a model's other parts."""
    import keras
    between = []
    for model in [other, *other._flatten_layers(include_self=False)]:
        ops = getattr(model, "operations", None) if isinstance(model, keras.Model) else None
        if not ops:
            continue
        inside = {id(op) for op in ops}

        def named(op):
            if isinstance(op, keras.Model):
                return any(layer.name in names
                           for layer in op._flatten_layers(include_self=False))
            return op.name in names and bool(op.weights)

        parents = {id(op): [p.operation for node in getattr(op, "_inbound_nodes", ())
                            for p in node.parent_nodes if id(p.operation) in inside]
                   for op in ops}
        if isinstance(model, keras.Sequential):
            parents = {id(op): ops[i - 1:i] for i, op in enumerate(ops)}
        children = {id(op): [] for op in ops}
        for op in ops:
            for p in parents[id(op)]:
                children[id(p)].append(op)
        start = [op for op in ops if named(op)]
        after, before = _reached(start, children), _reached(start, parents)
        between += [op.name for op in ops
                    if op.weights and not isinstance(op, keras.Model) and op.name not in names
                    and id(op) in before and id(op) in after]
    return between


def _reached(start, edges) -> set:
    """The ids of the operations reached from ``start`` along ``edges`` (``{id: [op]}``)."""
    reached, stack = set(), list(start)
    while stack:
        for op in edges[id(stack.pop())]:
            if id(op) not in reached:
                reached.add(id(op))
                stack.append(op)
    return reached


def classifier_head(x, *, num_classes: int, include_top: bool, pooling: Optional[str],
                    classifier_activation, prefix: str = ""):
    """Global pooling + dense classifier, or the pooled/unpooled features."""
    from keras import layers
    if include_top:
        x = layers.GlobalAveragePooling2D(name=f"{prefix}avg_pool")(x)
        return layers.Dense(num_classes, activation=classifier_activation,
                            name=f"{prefix}predictions")(x)
    return feature_pooling(x, pooling, prefix=prefix)


def feature_pooling(x, pooling, prefix: str = ""):
    """Apply ``pooling`` (None, "avg", "max") to a feature map (include_top=False)."""
    from keras import layers
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name=f"{prefix}avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name=f"{prefix}max_pool")(x)
    return x


def make_module_callable(module_name: str, function) -> None:
    """Make the module ``module_name`` callable as ``function``.

    ``zoo.profile`` and ``zoo.export`` are both functions of the package and modules
    of the same name: importing the submodule rebinds the package attribute to the
    module. A callable module keeps ``zoo.export(model)`` working either way, while
    ``zoo.export.export_run`` still reaches the module's other functions.
    """
    import sys
    import types

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return function(*args, **kwargs)

    CallableModule.__call__.__doc__ = function.__doc__
    sys.modules[module_name].__class__ = CallableModule


def onednn_enabled() -> bool:
    """Whether this process runs TensorFlow's oneDNN CPU kernels.

    ``import zoo`` before TensorFlow turns them on (``TF_ENABLE_ONEDNN_OPTS=1``) unless
    the environment says otherwise; TensorFlow decides once, when it is imported.
    """
    from tensorflow.python.util import _pywrap_util_port
    return bool(_pywrap_util_port.IsMklEnabled())


class BackendError(ValueError):
    """Keras runs on a backend other than TensorFlow where the zoo needs TensorFlow's."""


def _keras_json_path() -> str:
    """Where Keras reads its ``keras.json``: ``$KERAS_HOME``, else ``~/.keras`` (``/tmp/.keras``
    when the home directory is not writable), as Keras' ``backend/config.py`` finds it."""
    if os.environ.get("KERAS_HOME"):
        return os.path.join(os.environ["KERAS_HOME"], "keras.json")
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras", "keras.json")


def _keras_json() -> dict:
    """Keras' ``keras.json`` settings (``{}`` where it is missing or no JSON object, as Keras
    takes it)."""
    import json
    try:
        with open(_keras_json_path()) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def require_tensorflow_backend(what: str) -> None:
    """Raise :class:`BackendError` unless Keras runs on its TensorFlow backend.

    The builders, layer tables, ``zoo.profile`` and ``zoo.features`` are Keras alone and run
    on any backend; training, search and export are TensorFlow's (tf.data input pipelines,
    TensorFlow's kernels and optimizers, SavedModels). On the torch backend ``zoo train
    lenet5`` ran ~3x slower on a 2-core CPU (torch's OpenMP threads against TensorFlow's
    thread pools in one process) to a test accuracy of 0.47 against 0.85; export failed deep
    inside Keras. ``what`` names the refused work
    (``"zoo train"``, ``"zoo.train.fit"``). A ``KERAS_BACKEND`` set before Keras is imported
    is refused without importing it (and TensorFlow), as Keras would run on it.

    Raises:
        BackendError: Keras runs on another backend; the message names it, where it was
            chosen (``KERAS_BACKEND`` or ``keras.json``) and what to set.
    """
    import sys
    if "keras" in sys.modules:   # Keras' own answer, once it is imported
        import keras
        backend = keras.backend.backend()
    else:   # as Keras will read it, without importing it (and TensorFlow: zoo tune --workers)
        backend = os.environ.get("KERAS_BACKEND") or _keras_json().get("backend", "tensorflow")
    if backend == "tensorflow":
        return
    if "KERAS_BACKEND" in os.environ:
        chosen = f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}"
    else:
        chosen = f"\"backend\": \"{backend}\" in {_keras_json_path()}"
    raise BackendError(f"{what} needs Keras' TensorFlow backend; Keras' backend is {backend} "
                       f"({chosen}): set KERAS_BACKEND=tensorflow")


def visible_gpus() -> list:
    """The GPUs TensorFlow computes on in this process: the physical GPUs left visible by
    ``CUDA_VISIBLE_DEVICES`` and ``tf.config.set_visible_devices`` (which hides GPUs from
    computation, not from ``tf.config.list_physical_devices``). Reading them does not start
    TensorFlow's runtime, so memory growth and device settings can still follow."""
    import tensorflow as tf
    return tf.config.get_visible_devices("GPU")


def _cpuinfo_field(name, cpuinfo="/proc/cpuinfo") -> str:
    """The value of the first ``name : value`` line of ``cpuinfo`` (Linux); ``""`` where
    it cannot be read."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_flags(cpuinfo="/proc/cpuinfo") -> set:
    """The CPU's feature flags (``avx2``, ``avx512_bf16``, ...) read from ``cpuinfo``
    (Linux); empty where it cannot be read."""
    return set(_cpuinfo_field("flags", cpuinfo).split())


def cpu_has_bfloat16(cpuinfo="/proc/cpuinfo") -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX-BF16), which
    TensorFlow's oneDNN kernels use for ``mixed_bfloat16`` (``False`` where ``cpuinfo``
    cannot be read)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags(cpuinfo))


def cpu_vendor(cpuinfo="/proc/cpuinfo") -> str:
    """The CPU's ``vendor_id`` (``GenuineIntel``, ``AuthenticAMD``, ...) read from
    ``cpuinfo`` (Linux); ``""`` where it cannot be read."""
    return _cpuinfo_field("vendor_id", cpuinfo)


def cpu_prefers_bfloat16(cpuinfo="/proc/cpuinfo") -> bool:
    """Whether bfloat16 compute trains faster than float32 on this CPU, as measured on the
    CPUs of the benchmarks (benchmarks/README.md): with AMX-BF16 (oneDNN runs bfloat16
    convolutions on AMX tiles: ResNet-50 1.57x on an Intel Xeon) and on AMD CPUs with AVX512_BF16 (ResNet-50
    1.67-2.1x on an AMD EPYC), but not with AVX512_BF16 alone on Intel CPUs (0.81-0.88x on an
    Intel Xeon whose AMX was not exposed) nor without native bfloat16 instructions, where it
    is emulated. ``False`` where ``cpuinfo`` cannot be read."""
    flags = cpu_flags(cpuinfo)
    if "amx_bf16" in flags:
        return True
    return "avx512_bf16" in flags and cpu_vendor(cpuinfo) == "AuthenticAMD"


def cpu_has_amx_bfloat16(cpuinfo="/proc/cpuinfo") -> bool:
    """Whether this CPU has AMX tiles with bfloat16 products (``amx_bf16``), on which
    oneDNN runs bfloat16 convolutions and matrix products (``False`` where ``cpuinfo``
    cannot be read)."""
    return "amx_bf16" in cpu_flags(cpuinfo)


def without_aux_note(missing, others_found=True) -> str:
    """For weights that lack layers of a model: when those (``missing``, names) are all of
    auxiliary classifiers (``aux...``, as ``googlenet(aux_logits=True)``'s) and the file
    has the others (``others_found``), why: the file's model was built without them, and
    its weights load into one built so (no file gives auxiliary classifiers it does not
    have); else ``""``."""
    if not missing or not others_found or not all(n.startswith("aux") for n in missing):
        return ""
    return "weights of a model built without aux_logits, which load into one built so"


def main_output_index(model, what: str) -> int:
    """The index in ``model.outputs`` of a model's main output: its only output, or, for a
    model with auxiliary classifiers, the one output whose layer's name does not start with
    ``aux`` (``googlenet(aux_logits=True)``'s ``aux1_predictions`` and ``aux2_predictions``
    are auxiliary; its ``predictions`` is the main output). The one rule by which training
    (``zoo.train``) and export (``zoo.export``) tell the main output from the others.

    Raises:
        ValueError: several outputs and not exactly one main output, or ``model`` is not a
            ``keras.Model`` whose outputs are defined (a subclassed model, a ``Sequential``
            model not built yet); ``what`` names the caller ("fit trains", "export takes")
            in the message.
    """
    layers = [output_layer_name(t) for t in model_outputs(model, what)]
    if len(layers) == 1:
        return 0
    main = [i for i, name in enumerate(layers) if not name.startswith("aux")]
    if len(main) != 1:
        shapes = ", ".join(f"{name} {tuple(t.shape)}" for name, t in zip(layers,
                                                                          model.outputs))
        raise ValueError(f"{what} models with one output, or with one main output and "
                         f"auxiliary classifiers (output layers whose names start with 'aux', "
                         f"as googlenet(aux_logits=True)'s); {model.name} has {len(layers)} "
                         f"outputs and {len(main)} whose names do not start with 'aux'. "
                         f"Received: outputs {shapes}")
    return main[0]


def model_outputs(model, what: str) -> list:
    """``model.outputs``: the output tensors of a functional model or of a ``Sequential``
    model built with an input shape.

    Raises:
        ValueError: ``model`` is not a ``keras.Model``, or a model whose outputs Keras does
            not define (a subclassed model, a ``Sequential`` model not built yet); ``what``
            names the caller ("fit trains", "export takes") in the message.
    """
    import keras
    if not isinstance(model, keras.Model):
        received = received_text(model)
    else:
        try:
            outputs = model.outputs
        except AttributeError:   # subclassed models, Sequential models not built yet
            outputs = None
        if outputs:
            return list(outputs)
        received = (f"Sequential model {model.name!r}, not built yet"
                    if isinstance(model, keras.Sequential) else
                    f"subclassed model {model.name!r} (class {type(model).__name__})")
    raise ValueError(f"{what} keras.Models whose outputs are defined: functional models, and "
                     f"Sequential models built with an input shape (keras.Input first, or "
                     f"model.build(input_shape)). Received: {received}")


def output_layer_name(tensor) -> str:
    """The name of the layer (or nested model) that produced a model's output ``tensor``.

    Raises:
        ValueError: ``tensor`` is not the output tensor of a functional or ``Sequential``
            model (no Keras history).
    """
    history = getattr(tensor, "_keras_history", None)
    operation = getattr(history, "operation", None)
    if operation is None:
        received = repr(tensor) if tensor is None else f"{type(tensor).__name__} object"
        raise ValueError(f"output_layer_name takes an output tensor of a functional or "
                         f"Sequential model (model.outputs), which records the layer that "
                         f"produced it. Received: {received}")
    return operation.name


def is_digits(text) -> bool:
    """``text`` is ASCII digits only, a non-negative integer as ``int`` reads it and as
    TensorFlow Serving reads version numbers (``str.isdigit`` also takes "²", which ``int``
    refuses, and "١", which it reads as 1)."""
    return text.isascii() and text.isdigit()


def clip_text(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (``...`` at the end) for an error message."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def exception_line(exc: BaseException) -> str:
    """``TypeName: first line of its message``: an exception in one line, for a note that
    says why a fallback was taken."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _host() -> str:
    import socket
    return socket.gethostname().replace(os.sep, "_")


def nearest_existing(path) -> str:
    """``path`` made absolute if it exists, else its nearest existing parent: where making
    the directory ``path`` starts (a file there is in the way)."""
    path = os.path.abspath(os.fspath(path))
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def unwritable_directory(path):
    """What keeps the directory ``path`` from being made or written in: ``path`` itself, a
    directory without write permission, or its nearest existing parent when that has none;
    ``None`` when nothing does (a file in the way is the caller's to name)."""
    existing = nearest_existing(path)
    if not os.path.isdir(existing) or os.access(existing, os.W_OK | os.X_OK):
        return None
    return existing


def why_unwritable(directory) -> str:
    """Why the directory ``directory`` cannot be written in, for a message: ``DIR is on a
    read-only file system`` (a read-only mount, which permission bits do not show) or ``no
    write permission on DIR``."""
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):   # (Windows)
        read_only = False
    return (f"{directory} is on a read-only file system" if read_only
            else f"no write permission on {directory}")


#: The longest file or directory name, in bytes: file systems allow at most 255.
MAX_NAME_BYTES = 255


#: The bytes of a directory's path kept for the names of the files a command writes in it
#: (an export's ``.tmp-<pid>-<host>-*/variables/variables_temp/part-...tempstate<digits>``:
#: about 130 and the host's name; a run's ``logs/validation/events.out.tfevents...``).
PATH_ROOM = 256


def max_path_bytes(path) -> int:
    """The longest path the system takes, in bytes (4095 on Linux, 1023 on macOS: its
    ``PATH_MAX`` less the closing NUL), asked of ``path``'s nearest existing directory."""
    try:
        return os.pathconf(nearest_existing(path), "PC_PATH_MAX") - 1
    except (AttributeError, OSError, ValueError):   # (Windows; a limit the system lacks)
        return 4095


def check_name_lengths(path, what: str) -> None:
    """Refuse ``path`` when one of its parts is longer than :data:`MAX_NAME_BYTES` bytes,
    which no file system takes (``[Errno 36] File name too long`` once the work was done),
    or when it leaves less than :data:`PATH_ROOM` bytes of the system's longest path
    (:func:`max_path_bytes`) for the files written in it (the same error, from TensorFlow,
    when its first file was written: after training, for an export), naming ``what`` the
    path is for.

    Raises:
        ValueError: a part of ``path`` longer than 255 bytes, or a path too long.
    """
    for part in os.fspath(path).split(os.sep):
        size = len(os.fsencode(part))
        if size > MAX_NAME_BYTES:
            raise ValueError(f"{what} {clip_text(os.fspath(path))} cannot be made: its part "
                             f"{clip_text(repr(part), 50)} is {size} bytes, and a file or "
                             f"directory name has at most {MAX_NAME_BYTES}")
    size = len(os.fsencode(os.path.abspath(os.fspath(path))))
    longest = max_path_bytes(path)
    if size > longest - PATH_ROOM:
        raise ValueError(f"{what} {clip_text(os.fspath(path))} is too long: its absolute path "
                         f"is {size} bytes, and the system takes paths of at most {longest}, "
                         f"{PATH_ROOM} of them kept for the files written in it; use a "
                         f"shorter path")


def check_directory_target(path, what: str, advice: str, shown=None) -> None:
    """Refuse the directory ``path`` (to be made, or written in) when a part of it is too
    long for a name (:func:`check_name_lengths`), a file is in the way
    (``{what} {shown} cannot be made: FILE is a file; {advice}.``) or it cannot be written
    (``... cannot be written: no write permission on DIR; {advice}.``, or ``DIR is on a
    read-only file system``: :func:`why_unwritable`); ``shown``: how the
    message shows ``path`` (default: as given)."""
    shown = os.fspath(path) if shown is None else shown
    check_name_lengths(path, what)
    existing = nearest_existing(path)
    if not os.path.isdir(existing):
        raise ValueError(f"{what} {shown} cannot be made: {existing} is a file; {advice}.")
    if not os.access(existing, os.W_OK | os.X_OK):   # (unwritable_directory's test)
        raise ValueError(f"{what} {shown} cannot be written: {why_unwritable(existing)}; "
                         f"{advice}.")


def check_run_dir(run_dir, what: str = "run_dir") -> None:
    """``run_dir`` must be ``None`` (a new ``runs/<model>-<dataset>-<time>``) or a path where
    a directory can be made: not empty, not an existing file, not under one, writable.
    Checked before anything is loaded; ``what`` names the argument (``--run-dir``).

    Raises:
        ValueError: naming the argument, the path and what is wrong with it.
    """
    if run_dir is None:
        return
    if not isinstance(run_dir, (str, os.PathLike)) or not os.fspath(run_dir):
        raise ValueError(f"{what} must be the path of a run directory (a new one, or a killed "
                         f"run's to resume). Received: {what}={clip_text(repr(run_dir))}")
    path = os.path.abspath(os.fspath(run_dir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} must be a directory, and {path} is a file; use another "
                         f"run directory.")
    check_directory_target(path, what, "use another run directory")


def temporary_prefix(prefix) -> str:
    """``<prefix><pid>-<host>-``: the start of the name of a temporary file or directory of
    this process, which :func:`remove_stale_temporaries` removes once the process is gone."""
    return f"{prefix}{os.getpid()}-{_host()}-"


def remove_path(path, *, ignore_errors=False) -> None:
    """Remove the file, link (itself, not what it leads to) or directory tree at ``path``;
    nothing there, nothing done. ``ignore_errors``: as ``shutil.rmtree``'s, for a tree."""
    import shutil
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=ignore_errors)
    else:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def remove_stale_temporaries(directory, prefix) -> None:
    """Delete the entries of ``directory`` named ``<prefix><pid>-<host>-...``
    (:func:`temporary_prefix`) whose process ``pid`` on this host is gone: the temporary
    files and directories of a writer that was killed (SIGKILL, SIGTERM) before it could
    remove them. Those of live processes stay, and so do those of another host (a disk
    shared between machines: its process ids mean nothing here) and any other name."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    host = _host()
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if not is_digits(pid) or not entry.name[len(prefix) + len(pid):].startswith(
                f"-{host}-"):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            remove_path(entry.path, ignore_errors=True)
        except (PermissionError, OverflowError):  # a live process of another user; no pid
            pass


def atomic_write(path, write) -> str:
    """Write ``path`` all at once: ``write(tmp)`` fills a temporary file beside it, which is
    then renamed onto ``path``; on any failure the temporary file is removed and ``path``
    is untouched. The temporary file is named after this process
    (``.NAME.tmp-<pid>-<host>-...``), and a writer killed before it could remove its own leaves
    it for the next write of ``path`` to remove. The file gets the usual
    ``0o666 & ~umask`` permissions.

    Args:
        path: the file to write (its directory is created).
        write: called with the temporary path (same directory and extension, so writers
            that pick a format from the name, such as ``savefig`` or ``model.save``, work).

    The file's data is synced to the disk before the rename and the directory after it, so
    that after a power loss ``path`` holds the old file or the new one, never an empty one.

    Returns:
        ``path``.
    """
    import tempfile
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        os.makedirs(directory, exist_ok=True)
        remove_stale_temporaries(directory, f".{base}.tmp-")
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=temporary_prefix(f".{base}.tmp-"),
                                   suffix=os.path.splitext(base)[1])
    except OSError as e:   # named after the file asked for, not the temporary one
        raise type(e)(e.errno, f"cannot write {os.fspath(path)!r} in {directory!r}: "
                               f"{e.strerror or e}") from None
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp creates 0600
        fsync_path(tmp)   # its data on the disk before the rename that makes it ``path``
        os.replace(tmp, path)
    except BaseException as e:
        close_hdf5_files(tmp)   # (before it goes: a flush into the file removed)
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno is not None:   # a full disk, say
            raise write_error(e, path) from None
        raise
    sync_directory(directory)   # the rename itself
    return path


def write_error(exc: OSError, path) -> OSError:
    """``exc`` (an ``OSError`` with an ``errno``: a full disk, say) as the error of writing
    ``path``, the file asked for rather than a temporary one beside it:
    ``[Errno 28] cannot write '.../model.keras': No space left on device``. The system's
    words for the errno, not the writer's: h5py's for a full disk filled a screen with its
    buffer addresses and offsets."""
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return type(exc)(exc.errno, f"cannot write {os.fspath(path)!r}: {reason}")


#: The errors of a full disk: no space left, the user's quota exceeded.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(exc: BaseException, path) -> Optional[OSError]:
    """``exc`` as the one-line error of a full disk while writing ``path``
    (``[Errno 28] cannot write '...': No space left on device``), or ``None`` when it is not
    one. Also TensorFlow's for a full disk (a ``ResourceExhaustedError`` from ``SaveV2``,
    which the CLI took for running out of memory), which says so only in its text."""
    if isinstance(exc, OSError):
        code = exc.errno if exc.errno in DISK_FULL else None
    else:
        code = next((c for c in DISK_FULL if os.strerror(c) in str(exc)), None)
    if code is None:
        return None
    return write_error(OSError(code, os.strerror(code)), path)


@contextlib.contextmanager
def disk_full_as_error(path):
    """A block whose failure for a full disk (:func:`disk_full_error`) is raised as one
    ``OSError`` naming ``path``, the output asked for, rather than the temporary file a
    library was writing when the disk filled."""
    try:
        yield
    except Exception as exc:
        error = disk_full_error(exc, path)
        if error is None:
            raise
        raise error from None


def check_free_space(path, size: int) -> None:
    """Refuse to write the file ``path`` of about ``size`` bytes where its disk has less
    free, before the write starts: for a writer that cannot fail cleanly halfway (HDF5's,
    behind Keras' ``save_weights``, went on writing into a full disk and could end the
    process with a segmentation fault). Nothing where the system cannot tell.

    Raises:
        OSError: ``[Errno 28] cannot write '...': No space left on device (it needs about
            N MB, the disk has M MB free)``.
    """
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        stat = os.statvfs(directory)
    except (AttributeError, OSError):   # (Windows; a directory not made yet)
        return
    blocks = stat.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else stat.f_bavail
    free = blocks * stat.f_frsize
    if size > free:
        raise OSError(errno.ENOSPC, f"cannot write {os.fspath(path)!r}: "
                                    f"{os.strerror(errno.ENOSPC)} (it needs about "
                                    f"{size / 1e6:.1f} MB, the disk has {free / 1e6:.1f} MB "
                                    f"free)")


def weights_file_size(model) -> int:
    """About the most bytes ``model.save_weights`` writes: its variables' and its optimizer's,
    and HDF5's records of each (0.9-1.2 KB a variable for LeNet-5, AlexNet and ResNet-50;
    2 KB counted)."""
    import numpy as np
    variables = {id(v): v for v in model.variables}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        variables.update((id(v), v) for v in optimizer.variables)
    def itemsize(dtype):
        try:
            return np.dtype(dtype).itemsize   # (bfloat16 and float8: ml_dtypes', with Keras)
        except TypeError:
            return 8
    data = sum(int(np.prod(v.shape)) * itemsize(v.dtype) for v in variables.values())
    return data + 2048 * len(variables) + 65536


def save_weights_file(model, path, amend=None) -> None:
    """``model.save_weights(path)`` all at once: into ``.saving.NAME`` beside ``path`` (Keras
    takes only a name ending ``.weights.h5``), amended by ``amend(tmp)`` if given, synced and
    renamed onto ``path``. Refused before it starts where the disk has no room for it
    (:func:`check_free_space`): HDF5 went on writing into a full disk and could end the
    process with a segmentation fault. On any failure the temporary file goes, its HDF5 file
    closed, and ``path`` is untouched; a full disk's error names ``path``.

    Raises:
        OSError: ``[Errno 28] cannot write 'PATH': No space left on device ...``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".saving." + os.path.basename(path))
    try:
        size = os.path.getsize(path)   # the file it replaces: as big, for the same model
    except OSError:
        size = 0
    check_free_space(path, max(size, weights_file_size(model)))
    try:
        model.save_weights(tmp, overwrite=True)
        if amend is not None:
            amend(tmp)
        fsync_path(tmp)   # on the disk before the rename (a power loss: old or new)
        os.replace(tmp, path)
    except BaseException as e:   # Ctrl-C, SIGTERM, a full disk: no half-written file
        close_hdf5_files(tmp)
        remove_path(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise write_error(e, path) from None
        raise
    sync_directory(directory)


def close_hdf5_files(path=None) -> None:
    """Close the HDF5 files h5py still holds open at ``path`` (all of them if ``None``). A
    write that failed inside Keras' ``save_weights`` (a full disk) leaves its file open, held
    by the exception's traceback, and h5py's last flush of it when Python ends printed
    "Exception ignored" tracebacks and could end the process with a segmentation fault (exit
    code 139) after the command's one-line error. Nothing if h5py was not imported."""
    h5py = sys.modules.get("h5py")
    if h5py is None:
        return
    target = None if path is None else os.path.abspath(os.fspath(path))
    try:
        files = h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)
    except Exception:
        return
    for file_id in files:
        try:
            if target is not None and os.path.abspath(os.fsdecode(file_id.name)) != target:
                continue
            h5py.File(file_id).close()
        except Exception:   # its flush fails again (the disk is still full); closed all the same
            pass


def fsync_path(path) -> None:
    """``fsync`` the file or directory ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_paths(paths, threads: int = 16) -> None:
    """:func:`fsync_path` each of ``paths``, several at once: a file system commits
    concurrent syncs together (300 small files: 0.02-0.2 s on 16 threads against 0.2-0.6 s
    one by one on this project's test machine)."""
    paths = list(paths)
    if len(paths) < 2:
        for path in paths:
            fsync_path(path)
        return
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(min(threads, len(paths))) as pool:
        list(pool.map(fsync_path, paths))


def sync_directory(path) -> None:
    """``fsync`` the directory ``path`` (its entries: a rename in it), where the system can
    (Windows cannot open a directory; some file systems do not sync one)."""
    try:
        fsync_path(path)
    except OSError:
        pass


def atomic_write_text(path, text: str) -> str:
    """:func:`atomic_write` of a text file."""
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    return atomic_write(path, write)
