"""Load exported SavedModels and predict: a Python loader, ``zoo predict`` and ``zoo serve``.

:func:`load` reads a version directory written by :func:`zoo.export.export` (or a model
directory, meaning its newest version) and returns a :class:`Servable`, whose ``predict``
takes raw pixels in whatever form is at hand -- a uint8 or float array, one image or a
batch, PNG/JPEG file paths or encoded bytes -- and returns the signature's outputs as numpy
arrays.

Three runtimes run the ``serving_default`` signature:

- ``"litert"``: the export's ``assets/serving_default.tflite`` on LiteRT's interpreter with
  its XNNPACK CPU kernels. The default when the export has that file and no GPU is
  visible. On the README's 2-core benchmark CPUs it ran ResNet-50 (160x160) at 1.15-3.4x
  the speed of TensorFlow at batch 1; at batch 16-32 it was 1.1-1.3x faster on an AVX2
  CPU, as fast on an AVX-512 AMD EPYC, and 0.7-1.05x as fast on an AVX-512 Intel Xeon.
- ``"openvino"``: the same ``.tflite`` file read by OpenVINO's CPU plugin (oneDNN kernels,
  float32 math: ``INFERENCE_PRECISION_HINT`` f32, so CPUs with AMX do not turn it into
  bfloat16), checked against LiteRT on two images at load time. On the Intel Xeon with AMX
  it ran ResNet-50 1.6x as fast as LiteRT at batch 1 and 1.2-1.3x as fast as TensorFlow at
  batches 16-32, but LeNet-5 at half LiteRT's speed: which is faster depends on the model,
  the batch size and the CPU.
- ``"tensorflow"``: the SavedModel on TensorFlow (GPUs, exports without the LiteRT file,
  other signatures). With ``jit_compile="auto"`` the function is wrapped in
  ``tf.function(jit_compile=True)`` (XLA) at load time and kept if it compiles and is at
  least 10% faster than the plain function. The export itself never contains XLA, so the
  same directory also loads in TensorFlow Serving on CPU or GPU.

So with ``runtime="auto"`` each size class of batches (1, 2-3, 4-7, ..., 16-31, 32-63...)
is timed on its first calls on the runtimes that can run it -- LiteRT and OpenVINO, and for
batches of :data:`LARGE_BATCH` images or more TensorFlow too (it never won below that) --
and then runs on the fastest (see :meth:`Servable.runtime_for`).

``zoo serve BASE_DIR`` serves every model under ``BASE_DIR`` over TensorFlow Serving's REST
API (see :mod:`zoo.server`); ``zoo predict MODEL_DIR IMAGE...`` prints the top-k labels.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import numbers
import os
import threading
import time
from typing import Optional

import numpy as np

from zoo.cli import number_type
from zoo.common import (DIGITS_TEST_SIZE, TASKS, check_jit_compile, check_name_lengths,
                         check_path, clip_text, disk_full_as_error, exception_line, fsync_paths,
                         has_image_signature, is_digits, is_finite_number, is_integer,
                         remove_path, remove_stale_temporaries, sync_directory,
                         temporary_prefix, unwritable_directory, visible_gpus,
                         why_unwritable)
from zoo.export import (FORMAT, INPUT_NAME, LITE_FILE, LITE_TOLERANCE, SIGNATURE_NAME,
                        ZOO_JSON, latest_version, list_versions, version_path)

__all__ = ["load", "Servable", "resolve_version_dir", "read_record", "decode_image",
           "check_image_file", "mask_at_size", "predicted_classes", "engine_text",
           "configure_predict", "configure_serve"]

RUNTIMES = ("auto", "litert", "openvino", "tensorflow")
_WARMUP_BATCH = 8
_BENCH_ROUNDS = 5
#: With ``runtime="auto"`` on LiteRT, TensorFlow is one of the runtimes timed for batches
#: of at least this many images (16-31, 32-63...); smaller ones choose between LiteRT and
#: OpenVINO.
LARGE_BATCH = 16
#: Timed calls per runtime before a size class's choice, each after an untimed one (see
#: ``Servable._call_trial``): at least ``_TRIAL_ROUNDS``, more while a runtime's timed calls
#: add up to less than ``_TRIAL_SECONDS``, at most ``_TRIAL_MAX_ROUNDS``. A small model's
#: calls of a few hundredths of a millisecond are timed over more rounds, so that a busy
#: spell of the machine does not decide its choice.
_TRIAL_ROUNDS = 3
_TRIAL_SECONDS = 0.02
_TRIAL_MAX_ROUNDS = 30
#: XLA at load is kept only if its time is below this fraction of the plain function's.
_TRIAL_MARGIN = 0.9
#: ``runtime="auto"``: another runtime runs a size class of batches only if its best trial
#: time per image is below this fraction of LiteRT's. The trial times each runtime's calls
#: after an untimed one, best of ``_TRIAL_ROUNDS``, to within a few percent; a wider margin kept
#: LiteRT where OpenVINO was 8-18% faster (Performance, item 24).
_RUNTIME_MARGIN = 0.95
#: Images per call of the signature where ``Servable.predict`` gets no ``batch_size``: one
#: call on every image of a large input takes memory in proportion (LeNet-5 on a list of
#: 1,000 256x256 JPEGs: 775 MB above the loaded model and 3.4 s at once, 157 MB and 0.9 s
#: in batches of 64).
DEFAULT_BATCH_SIZE = 64
#: A list's decoded images of several sizes wait for a batch of their size until this many
#: batches' worth are held (see ``Servable._stream``).
_PENDING_BATCHES = 4
#: Images :meth:`Servable.top_k` ranks at a time (its memory beyond the answer is bounded).
_TOP_K_ROWS = 1024


# --------------------------------------------------------------------------------------
# Finding a version directory.

def resolve_version_dir(path) -> tuple:
    """``path`` (a version or model directory) -> ``(version_dir, name, version)``.

    Args:
        path: a version directory (``saved_models/lenet5/3``), a model directory (its
            newest version) or a bare SavedModel directory.

    Returns:
        ``(version_dir, name, version)``; ``version`` is ``None`` for a bare SavedModel.

    Raises:
        FileNotFoundError: no such directory, a file, or a directory without a SavedModel
            or versions (a base directory of several models, a training run directory and
            a ``.keras`` file are named as such, with what to load instead).
        TypeError: ``path`` is no path (``None``, a number).
        ValueError: ``path`` is ``""`` (was taken for the current directory).
    """
    path = os.path.abspath(check_path("", "path", path, "a SavedModel directory (an export's "
                                                        "version or model directory)"))
    export_first = (f"export it first (zoo export {path}, or zoo.export in Python) and load "
                    f"the export")
    if os.path.isfile(path):
        kind = "a Keras model file" if path.endswith(".keras") else "a file"
        raise FileNotFoundError(f"{path} is {kind}, not a SavedModel directory"
                                + (f": {export_first}." if kind != "a file" else "."))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no such SavedModel directory: {path}")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        base = os.path.basename(path)
        version = int(base) if is_digits(base) else None
        name = os.path.basename(os.path.dirname(path)) if version is not None else base
        return path, name, version
    version = latest_version(path)
    if version is None:
        hint = ""
        if os.path.isfile(os.path.join(path, "model.keras")):
            hint = f" It is a training run directory: {export_first}."
        else:
            models = []
            for entry in os.scandir(path):
                with contextlib.suppress(OSError):   # (a folder it may not read)
                    if entry.is_dir() and latest_version(entry.path) is not None:
                        models.append(entry.name)
            models.sort()
            if models:
                hint = (f" It is a base directory of models ({clip_text(', '.join(models))}): "
                        f"load one of them ({os.path.join(path, models[0])}).")
        raise FileNotFoundError(
            f"{path} holds no SavedModel: expected saved_model.pb in it or integer version "
            f"directories (1/, 2/, ...) holding one.{hint}")
    return version_path(path, version), os.path.basename(path), version


def read_record(version_dir) -> Optional[dict]:
    """The ``assets/zoo.json`` of an export, checked against the formats this zoo reads.

    Every export written by zoo so far is format 1 (``zoo.json: "format"``,
    :data:`zoo.export.FORMAT`); the number goes up only for a change an older loader would
    misread, so a format above this zoo's is refused, with the versions that wrote it. A
    ``zoo.json`` without ``"format"`` (written by hand or another tool) is read as it is.

    Args:
        version_dir: a SavedModel directory (a version directory of an export).

    Returns:
        The record as a dict, or ``None`` when the directory has no ``assets/zoo.json``
        (a SavedModel not written by zoo).

    Raises:
        ValueError: ``zoo.json`` is not a JSON object, its ``"format"`` is not one this
            zoo reads (not an integer of at least 1, or newer than :data:`zoo.export.FORMAT`),
            or a field the loader reads holds what it does not allow (``"labels"`` not a list
            of strings, ``"task"``, ``"input"``, ``"output"``, ``"lite"``, ``"versions"``,
            ``"precision"``; named with the file).
    """
    path = os.path.join(os.fspath(version_dir), ZOO_JSON)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:  # (JSONDecodeError is a ValueError)
        raise ValueError(f"{path} is not valid JSON ({exc}): export the model again, or "
                         f"delete that file to load the SavedModel without its labels and "
                         f"input spec.") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} holds a JSON {type(record).__name__}, not the object zoo "
                         f"exports write: export the model again, or delete that file to "
                         f"load the SavedModel without its labels and input spec.")
    if "format" in record:
        fmt = record["format"]
        if not is_integer(fmt) or fmt < 1:
            raise ValueError(f"{path}: \"format\": {json.dumps(fmt)} is not an export format "
                             f"(an integer from 1; this zoo reads exports up to format "
                             f"{FORMAT}).")
        if fmt > FORMAT:
            import zoo
            versions = record.get("versions")
            written = versions.get("zoo") if isinstance(versions, dict) else None
            raise ValueError(
                f"{os.path.dirname(os.path.dirname(path))} is an export of format {fmt}"
                + (f" (written by zoo {written})" if written else "")
                + f"; this zoo ({zoo.__version__}) reads exports up to format {FORMAT}: "
                f"upgrade zoo to load it, or export the model again with this version.")
    _check_record_fields(path, record)
    return record


def _record_error(path, field, value, allowed) -> ValueError:
    return ValueError(f'{path}: "{field}": {clip_text(json.dumps(value))} is not {allowed}: '
                      f"export the model again, or correct that field.")


def _check_record_fields(path, record) -> None:
    """The fields of ``zoo.json`` the loader and ``zoo predict`` read, where present: of the
    kinds an export writes (``null`` stands for unknown)."""
    labels = record.get("labels")
    if labels is not None and not (isinstance(labels, list)
                                   and all(isinstance(v, str) for v in labels)):
        raise _record_error(path, "labels", labels, "a list of class names (strings)")
    task = record.get("task")
    if task is not None and task not in TASKS:
        raise _record_error(path, "task", task, " or ".join(map(json.dumps, TASKS)))
    precision = record.get("precision")
    if precision is not None and not isinstance(precision, str):
        raise _record_error(path, "precision", precision, "a dtype name (a string)")
    for key in ("versions", "lite", "input", "output"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise _record_error(path, key, record[key], "an object")
    for key, shape, ranks in (("input", "model_input_shape", (3,)),
                              ("output", "model_output_shape", (1, 3))):
        value = (record.get(key) or {}).get(shape)
        if value is not None and not (
                isinstance(value, list) and len(value) in ranks
                and all(v is None or is_integer(v) and v > 0 for v in value)):
            raise _record_error(path, f"{key}.{shape}", value,
                                f"a list of {' or '.join(map(str, ranks))} positive integers")
    raw_range = (record.get("input") or {}).get("raw_range")
    if raw_range is not None and not (
            isinstance(raw_range, list) and len(raw_range) == 2
            and all(is_finite_number(v) for v in raw_range) and raw_range[0] < raw_range[1]):
        raise _record_error(path, "input.raw_range", raw_range,
                            "two finite numbers [low, high], low < high")


# --------------------------------------------------------------------------------------
# Decoding images.

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _sixteen_bit_grey(img) -> bool:
    return img.mode.startswith("I;16") or (img.mode == "I" and img.format == "PNG")


def _pillow_pixels(img, mode) -> np.ndarray:
    """A Pillow image's pixels converted to ``mode``; 16-bit grey to 8 bits by the high
    byte, as TensorFlow's decoders in the training pipeline read it (Pillow's own
    conversion clips every value above 255 to 255)."""
    from PIL import Image
    if _sixteen_bit_grey(img):
        img = Image.fromarray((np.asarray(img).astype(np.uint32) >> 8).astype(np.uint8), "L")
    return np.asarray(img.convert(mode))


def _own_mode(img) -> str:
    """The Pillow mode ``decode_image(data)`` (no ``channels``) returns an image in."""
    if _sixteen_bit_grey(img):
        return "L"
    if img.mode in ("L", "RGB", "RGBA"):
        return img.mode
    return "RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB"


def _decode_as_trained(raw: bytes, channels: int):
    """``raw`` decoded by the training pipeline's own function (``zoo.data``), or ``None``
    where TensorFlow cannot decode it (BMP variants its decoder does not read, say)."""
    import tensorflow as tf
    from zoo.data import _decode_bytes
    try:
        return _decode_bytes(tf.constant(raw), channels).numpy()
    except tf.errors.OpError:
        return None


def decode_image(data, channels: Optional[int] = None, *, before_decode=None) -> np.ndarray:
    """Decode PNG/JPEG (any format Pillow reads) bytes or a file path to ``[H, W, C]`` uint8.

    PNG, JPEG, GIF, BMP and WebP images that end up with 1 or 3 channels are decoded exactly as
    ``zoo train --dataset folder:PATH`` decodes its files (TensorFlow's decoders, through
    ``zoo.data``), so that a served model sees the pixels it learned on: Pillow's JPEG
    decoder (libjpeg's accurate IDCT, greyscale converted from RGB) differs from
    TensorFlow's (fast IDCT, libjpeg's own luma) by up to about 10 levels, and its grey
    conversion of RGB images rounds where TensorFlow's truncates. Other formats (TIFF,
    ...), 4-channel results, and files TensorFlow cannot decode are read with Pillow.
    EXIF orientation is ignored, as in training.

    Args:
        data: encoded image bytes, or a path.
        channels: 1, 3 or 4 to convert to (greyscale, RGB, RGBA); ``None`` keeps the
            image's own (palette images become RGB/RGBA, 16-bit grey 8-bit grey).
        before_decode: called with the Pillow image opened from the header, before any
            pixel is decoded (``zoo serve`` counts the pixels a request's images hold:
            :class:`zoo.server.PixelBudget`); it refuses the image by raising an exception
            other than ``ValueError`` or ``OSError`` (those read as undecodable data).

    Raises:
        ValueError: the data is not an image Pillow can decode, or bad ``channels``.
        FileNotFoundError: a path that does not exist.
        IsADirectoryError: a path that is a directory.
    """
    from PIL import Image
    # (True was taken for 1 channel, 3.0 for 3; "3" was "this model takes 3")
    if channels is not None and not (is_integer(channels) and channels in _MODES):
        raise ValueError(f"images can be converted to 1, 3 or 4 channels (channels=None: "
                         f"the image's own). Received: channels={clip_text(repr(channels))}")
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw, what = bytes(data), "the image bytes"
        source = io.BytesIO(raw)
    else:
        path = _image_path(data)
        with open(path, "rb") as f:
            raw = f.read()
        source, what = path, path
    try:
        # Opening reads the header only (and refuses decompression bombs).
        with Image.open(source) as img:
            if before_decode is not None:
                before_decode(img)
            mode = _MODES[channels] if channels is not None else _own_mode(img)
            array = None
            # The formats a folder dataset's pipeline reads: decoded with its TensorFlow code,
            # but for 8-bit grey or RGB PNGs kept in their own mode: lossless, so Pillow's
            # pixels are TensorFlow's, ~10x sooner (0.03 against 0.3 ms for 32x32; a batch
            # of 32 small PNGs took 12 ms to decode through TensorFlow's eager ops).
            lossless = img.format == "PNG" and img.mode == mode and mode in ("L", "RGB")
            if not lossless and mode != "RGBA" and has_image_signature(raw):
                array = _decode_as_trained(raw, 1 if mode == "L" else 3)
            if array is None:
                img.load()
                array = _pillow_pixels(img, mode)
    except _decode_errors() as exc:
        raise _not_an_image(what, exc) from None
    if array.ndim == 2:
        array = array[..., None]
    return array


def _not_an_image(what, exc) -> ValueError:
    from PIL import UnidentifiedImageError
    # Pillow's message for that names its file object (a path already in ``what``, or
    # "<_io.BytesIO object at 0x...>" for bytes, as REST clients got for b64 images).
    reason = ("unrecognised image format" if isinstance(exc, UnidentifiedImageError)
              else exc)
    return ValueError(f"could not decode {what} as an image (PNG, JPEG, ...): {reason}")


def _decode_errors() -> tuple:
    """What Pillow raises for data that is not an image it can read."""
    from PIL import Image, UnidentifiedImageError
    return (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError)


def _image_path(data) -> str:
    """``data`` as a path to an existing file, else the error :func:`decode_image` raises."""
    path = os.fspath(data)
    if not path:   # (was "no such image file: " with nothing after it)
        raise FileNotFoundError("no such image file: '' (an empty path)")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not an image file")
    if os.path.exists(path) and not os.path.isfile(path):
        # (a pipe such as bash's <(...), a device: it was "no such image file")
        raise ValueError(f"{path} is not a regular file (a pipe or a device): give an image "
                         f"file (save the image to a file first)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such image file: {path}")
    return path


def check_image_file(path) -> tuple:
    """Raise the error :func:`decode_image` would raise for ``path`` where its header
    already tells: a missing file, a directory, a file Pillow does not recognise as an
    image. Reads the header only (~0.04 ms a file), so that ``zoo predict`` names such a
    file before its model loads; a file damaged after its header is named when decoded.

    Args:
        path: the image file's path.

    Returns:
        The image's ``(height, width)``, from its header.

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a directory.
        ValueError: a file that is not an image Pillow recognises, or no regular file (a
            pipe, a device).
    """
    from PIL import Image
    path = _image_path(path)
    try:
        with Image.open(path) as img:
            return img.size[::-1]
    except _decode_errors() as exc:
        raise _not_an_image(path, exc) from None


def _numpy(outputs) -> dict:
    return {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in outputs.items()}


def _check_batch_size(batch_size) -> None:
    if batch_size is not None and (not is_integer(batch_size) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None. Received: "
                         f"{batch_size!r}")


def _irregularity(value, name: str):
    """Where nested lists stop forming a regular numeric array, as ``name[i][j]``: level by
    level, the first entry whose kind (a list of n, a number, ...) differs from the first
    entry's at its level, or the first value that is not a number; ``None`` where none."""
    def kind(item):
        if isinstance(item, (list, tuple)) or getattr(item, "ndim", 0) > 0:
            return f"a list of {len(item)}"
        if item is None:
            return "None"
        if isinstance(item, (str, bytes)):
            return "a string"
        return "a number" if isinstance(item, numbers.Number) else f"a {type(item).__name__}"

    def at(index):
        return name + "".join(f"[{i}]" for i in index)

    level = [((), value)]
    while level:
        first_index, first = level[0]
        want = kind(first)
        for index, item in level:
            if kind(item) != want:
                return f"{at(index)} is {kind(item)} where {at(first_index)} is {want}"
        if not want.startswith("a list"):
            return (None if want == "a number" else
                    f"{at(first_index)} is {want} where a number is expected")
        level = [(index + (i,), entry) for index, item in level
                 for i, entry in enumerate(item)]
    return None


def _as_array(value, name: str = "images") -> np.ndarray:
    """A numeric array from an array-like, refusing strings, booleans and ragged lists;
    a ragged list's error names where it is ragged, as ``name[i][j]``."""
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        array = None
    if array is None or array.dtype == object:
        where = _irregularity(value, name)
        raise ValueError(f"{name} must form a regular numeric array (every image the same "
                         f"height, width and channels, every value a number)"
                         + (f": {where}." if where else "."))
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer)
                                   or np.issubdtype(array.dtype, np.floating)):
        what = (f"strings (dtype {array.dtype})" if array.dtype.kind in "US"
                else f"dtype {array.dtype}")
        raise ValueError(f"pixel values must be numbers (integers or floats). Received "
                         f"{what}.")
    if isinstance(value, (list, tuple)):
        # numpy reads True and False among numbers as 1 and 0 (a JSON true in a REST
        # request's pixels was predicted as a pixel of 1).
        kinds = set(map(type, np.asarray(value, dtype=object).ravel().tolist()))
        if bool in kinds or np.bool_ in kinds:
            raise ValueError("pixel values must be numbers (integers or floats). Received "
                             "booleans (true or false) among them.")
    return array


# --------------------------------------------------------------------------------------
# The servable.

def check_load_options(jit_compile, runtime):
    """``jit_compile`` as :func:`load` takes it (``"auto"``, ``True`` or ``False``), checked
    with ``runtime`` before anything is read.

    Raises:
        ValueError: a ``jit_compile`` or ``runtime`` of another value, or
            ``jit_compile=True`` with ``runtime="litert"`` or ``"openvino"``.
    """
    jit_compile = check_jit_compile(jit_compile)   # (np.bool_(True) was taken as "auto")
    if not isinstance(runtime, str) or runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(map(repr, RUNTIMES))}. "
                         f"Received: {runtime!r}")
    if runtime in ("litert", "openvino") and jit_compile is True:
        raise ValueError("jit_compile=True compiles the TensorFlow function with XLA; it "
                         f"cannot be combined with runtime={runtime!r}.")
    return jit_compile


class Servable:
    """An exported model ready to predict.

    Attributes:
        path: the version directory.
        name: model name (its directory name).
        version: integer version (``None`` for a bare SavedModel directory).
        info: the export's ``assets/zoo.json`` (labels, input spec, preprocessing, metrics);
            a minimal dict for SavedModels written by other tools.
        signature: ``{"name", "inputs", "outputs"}`` of the serving signature with dtypes and
            shapes (``None`` for any size).
        labels: class labels (``info["labels"]``).
        task: ``"classification"`` or ``"segmentation"`` (``info["task"]``; for a
            SavedModel written by another tool, a ``mask`` output means segmentation).
        runtime: ``"litert"``, ``"openvino"`` or ``"tensorflow"``: what runs the default
            signature, unless a size class of batches timed faster on another runtime
            (``runtime="auto"``; see :meth:`runtime_for`).
        runtime_note: why TensorFlow runs it (``None`` when LiteRT or OpenVINO does).
        runtimes: the runtimes ``runtime="auto"`` times and chooses from (``("litert",
            "openvino", "tensorflow")`` where all can run the export; just
            ``(runtime,)`` otherwise).
        openvino_note: why OpenVINO is not among them (``None`` when it is, or when
            another runtime was asked for).
        runtime_choices: with ``runtime="auto"`` on LiteRT, what runs each size class of
            batches: ``{1: "openvino", 16: "tensorflow"}`` for 1 and 16-31 images, filled in
            as the first batches of each class are timed on the runtimes (empty otherwise;
            see :meth:`runtime_for`).
        runtime_timing: those timings, seconds per image, per size class: ``{32:
            {"litert": [...], "openvino": [...], "tensorflow": [...]}}``.
        jit_compiled: whether predictions run through XLA.
        jit_error: why XLA is not used (LiteRT in use, compile error, or slower than the
            plain function).
        jit_timing: compile time and warm-up timings of the XLA and plain functions.

    Args:
        path, jit_compile, runtime: as for :func:`load`, which is the usual way to make
            one.

    Raises:
        FileNotFoundError, TypeError, ValueError: as for :func:`load`.

    Example:
        >>> s = load("saved_models/lenet5")  # doctest: +SKIP
        >>> s.predict("digit.png")["classes"]  # doctest: +SKIP
        array([3])
    """

    def __init__(self, path, *, jit_compile="auto", runtime="auto"):
        jit_compile = check_load_options(jit_compile, runtime)
        self.path, self.name, self.version = resolve_version_dir(path)
        # zoo.json first: an export of a newer format is refused by its number, before
        # TensorFlow reads a graph it may not understand.
        record = read_record(self.path)
        from zoo.startlog import command_line_filter
        # A float16 export's first ops (restoring its variables, a warm-up), where TensorFlow
        # logs its note on the kernels that run them.
        half = (record or {}).get("precision") == "float16"
        with command_line_filter() if half else contextlib.nullcontext():
            self._set_up(record, jit_compile=jit_compile, runtime=runtime)

    def _set_up(self, record, *, jit_compile, runtime):
        """Load the SavedModel, read its signature and choose the runtime (``__init__``'s
        work once the arguments and ``zoo.json`` are checked)."""
        import tensorflow as tf
        try:
            self._loaded = tf.saved_model.load(self.path)
        except Exception as exc:
            written = ((record or {}).get("versions") or {}).get("tensorflow")
            if not written or written == tf.__version__:
                # TensorFlow's message runs on for lines (a missing variables/: "Unsuccessful
                # TensorSliceReader constructor: ... You may be trying to load on a different
                # device ..."): its first line says why.
                kind = FileNotFoundError if isinstance(exc, FileNotFoundError) else ValueError
                reason = exception_line(exc)
                with contextlib.suppress(OSError):
                    if os.path.getsize(os.path.join(self.path, "saved_model.pb")) == 0:
                        # (TensorFlow's words: "requires a `tags=` argument ... 0 MetaGraphs")
                        reason = "saved_model.pb is empty (0 bytes; a copy not finished?)"
                raise kind(f"the SavedModel in {self.path} could not be loaded: "
                           f"{reason}") from exc
            raise ValueError(
                f"TensorFlow {tf.__version__} cannot load the SavedModel in {self.path} "
                f"({exception_line(exc)}); it was written with TensorFlow {written} "
                f"({ZOO_JSON}): load it with TensorFlow {written}, or export the model again "
                f"with this one.") from exc
        signatures = dict(self._loaded.signatures)
        if not signatures:
            raise ValueError(f"{self.path} has no serving signatures.")
        self._signatures = signatures
        self.signature_names = sorted(signatures)
        self.default_signature = (SIGNATURE_NAME if SIGNATURE_NAME in signatures
                                  else self.signature_names[0])
        fn = signatures[self.default_signature]
        inputs = fn.structured_input_signature[1]
        if len(inputs) != 1:
            raise ValueError(f"{self.path}: the signature {self.default_signature!r} takes "
                             f"{len(inputs)} inputs; only single-image signatures are served.")
        (self.input_name, spec), = inputs.items()
        self.input_shape = tuple(spec.shape.as_list())  # (None, H, W, C)
        self.input_dtype = spec.dtype
        self.signature = {
            "name": self.default_signature,
            "inputs": {self.input_name: {"dtype": spec.dtype.name,
                                         "shape": list(self.input_shape)}},
            "outputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()}
                        for k, v in fn.structured_outputs.items()},
        }
        self.info = record if record is not None else {
            "name": self.name, "version": self.version, "task": None, "labels": [],
            "signature": self.signature}
        self.labels = list(self.info.get("labels") or [])
        self.task = self.info.get("task") or (
            "segmentation" if "mask" in self.signature["outputs"] else "classification")
        raw_range = (self.info.get("input") or {}).get("raw_range")
        #: ``(low, high)`` of the raw pixels the default signature takes (``None``: unknown)
        self.raw_range = tuple(float(v) for v in raw_range) if raw_range else None
        classes = self.probability_units
        if (record is not None and self.labels and classes
                and len(self.labels) != classes and not (classes == 1 and len(self.labels) == 2)):
            raise ValueError(f'{os.path.join(self.path, ZOO_JSON)}: "labels" holds '
                             f"{len(self.labels)} class names, the signature's probabilities "
                             f"{classes} classes: export the model again, or correct that "
                             f"field.")
        self.channels = self.input_shape[-1]
        self._lock = threading.Lock()
        self._functions = {}
        self._compiled = set()
        self.jit_compiled = False
        self.jit_error = None
        self.jit_timing = {}
        self.runtime = "tensorflow"
        self.runtime_note = None
        self._lite_lock = threading.Lock()
        self._ov_lock = threading.Lock()
        self.openvino_note = None
        self.runtime_choices = {}
        self.runtime_timing = {}
        #: runtime name -> callable(batch) -> {output: numpy array}, default signature
        self._runners = {}
        self._adaptive = False
        self._trial_count = {}  # size class -> trial calls made so far
        self._trial_lock = threading.Lock()
        if runtime == "tensorflow":
            self.runtime_note = "runtime='tensorflow' was asked for"
        elif jit_compile is True:
            self.runtime_note = "jit_compile=True asks for XLA on TensorFlow"
        else:
            self.runtime_note = self._open_lite(required=runtime in ("litert", "openvino"),
                                                asked=runtime)
        if self.runtime == "litert":
            self.jit_error = "XLA not used: the LiteRT runtime runs the signature"
            if runtime in ("auto", "openvino"):
                self.openvino_note = self._open_openvino(required=runtime == "openvino")
            if runtime == "openvino":
                self.runtime = "openvino"
                self.jit_error = "XLA not used: the OpenVINO runtime runs the signature"
                self._functions[SIGNATURE_NAME] = self._runners["openvino"]
                del self._runners["litert"]
            elif runtime == "auto":  # time the runtimes on each size class's first batches
                tf_fn = self._plain(SIGNATURE_NAME)
                self._runners["tensorflow"] = lambda images: {
                    k: v.numpy() for k, v in tf_fn(images).items()}
                self._adaptive = True
        elif jit_compile:
            self._compile(strict=jit_compile is True)
        self.runtimes = tuple(self._runners) if self._adaptive else (self.runtime,)

    # -- set-up ------------------------------------------------------------------------

    def _open_lite(self, required, asked="litert") -> Optional[str]:
        """Run the default signature on LiteRT if the export allows it.

        Returns:
            ``None`` when LiteRT runs it, else why not (raised instead when ``required``:
            ``runtime=asked``, which needs the LiteRT model).
        """
        path = os.path.join(self.path, LITE_FILE)
        reason = None
        if self.default_signature != SIGNATURE_NAME:
            reason = f"the export has no {SIGNATURE_NAME!r} signature"
        elif not os.path.isfile(path):
            lite = self.info.get("lite") or {}
            reason = (f"the export has no {LITE_FILE}"
                      + (f": {lite['error']}" if lite.get("error") else
                         " (written by a zoo before LiteRT copies: export the model again "
                         "to get one)" if "lite" not in self.info and "format" in self.info
                         else " (exported without it, or not by zoo)"))
        elif not required and _gpu_visible():
            reason = "a GPU is visible: TensorFlow runs the SavedModel"
        else:
            try:
                from ai_edge_litert.interpreter import Interpreter  # noqa: F401

                from zoo.startlog import make_litert_interpreter
            except ImportError as exc:
                reason = f"the LiteRT runtime is not installed ({exc})"
        if reason is None:
            # A file this LiteRT cannot read (damaged, or written by a newer converter with
            # ops or op versions it lacks) leaves the SavedModel to TensorFlow.
            try:
                # (LiteRT's INFO line hidden in a command line)
                interpreter = make_litert_interpreter(model_path=path,
                                                      num_threads=_usable_cpus())
                runner = interpreter.get_signature_runner(SIGNATURE_NAME)
                names = (sorted(runner.get_input_details()),
                         sorted(runner.get_output_details()))
            except Exception as exc:
                reason = f"LiteRT cannot read {LITE_FILE}: {exception_line(exc)}"
            else:
                want = ([self.input_name], sorted(self.signature["outputs"]))
                if names != want:
                    reason = (f"{LITE_FILE}'s {SIGNATURE_NAME} takes {names[0]} and returns "
                              f"{names[1]}, the SavedModel's {want[0]} and {want[1]}")
        if reason is not None:
            if required:
                raise ValueError(f"runtime={asked!r} cannot be used for {self.path}: {reason}.")
            return reason
        self._lite = interpreter
        key = self.input_name

        def run(images):
            with self._lite_lock:  # one interpreter: calls take turns
                return {k: np.array(v) for k, v in runner(**{key: images}).items()}

        self._functions[SIGNATURE_NAME] = self._runners["litert"] = run
        self.runtime = "litert"
        return None

    def _open_openvino(self, required) -> Optional[str]:
        """Add OpenVINO, reading the export's LiteRT model, to the runtimes if it can run it
        and agrees with LiteRT on two images (within the export's LiteRT tolerance).

        Returns:
            ``None`` when it was added, else why not (raised instead when ``required``).
        """
        reason = None
        try:
            compiled = _openvino_model(os.path.join(self.path, LITE_FILE))
        except ImportError as exc:
            reason = f"OpenVINO is not installed ({exc})"
        except Exception as exc:  # a graph OpenVINO cannot read or compile
            reason = f"OpenVINO cannot run {LITE_FILE}: {exception_line(exc)}"
        if reason is None:
            # Output names: the LiteRT signature's tensor indices -> tensor names -> ports.
            tensor_names = {d["index"]: d["name"] for d in self._lite.get_tensor_details()}
            outputs = self._lite.get_signature_runner(SIGNATURE_NAME).get_output_details()
            ports = {}
            for key, detail in outputs.items():
                name = tensor_names.get(detail["index"])
                port = next((p for p in compiled.outputs if name in p.get_names()), None)
                if port is None:
                    reason = f"OpenVINO's model has no output named {name!r} ({key})"
                    break
                ports[key] = port
        if reason is None:
            request = compiled.create_infer_request()

            def run(images):
                with self._ov_lock:  # one request: calls take turns
                    result = request.infer({0: images})
                    return {k: np.array(result[p]) for k, p in ports.items()}

            x = np.random.default_rng(0).uniform(0, 255, (
                2, *self._warmup_hw(), self.channels)).astype(self.input_dtype.as_numpy_dtype)
            lite, ov = self._runners["litert"](x), run(x)
            if {k: v.shape for k, v in ov.items()} != {k: v.shape for k, v in lite.items()}:
                reason = "OpenVINO's outputs differ in shape from LiteRT's"
            else:
                worst = max((float(np.max(np.abs(lite[k] - ov[k]))) for k in lite
                             if lite[k].dtype.kind == "f"), default=0.0)
                if not worst <= LITE_TOLERANCE:
                    reason = (f"OpenVINO's outputs differ from LiteRT's by {worst:.2e} (more "
                              f"than {LITE_TOLERANCE})")
        if reason is not None:
            if required:
                raise ValueError(f"runtime='openvino' cannot be used for {self.path}: "
                                 f"{reason}.")
            return reason
        self._runners["openvino"] = run
        return None

    def _plain(self, signature_name):
        fn = self._signatures[signature_name]
        key = self.input_name
        return lambda images: fn(**{key: images})

    def _compile(self, strict=False):
        """Wrap the default signature in ``tf.function(jit_compile=True)`` and compile it.

        With ``jit_compile="auto"`` (``strict=False``) a compile failure falls back to the
        plain function, and so does an XLA function that is not at least 10% faster than
        the plain one on a warm-up batch (on CPU it is usually slower). With ``True`` the
        compiled function is always used and a failure raises.
        """
        import tensorflow as tf
        plain = self._plain(self.default_signature)
        # One trace for every batch and image size (XLA still compiles each shape it meets).
        compiled = tf.function(plain, jit_compile=True, input_signature=[
            tf.TensorSpec([None, *self.input_shape[1:]], self.input_dtype)])
        shape = [_WARMUP_BATCH] + [d if d is not None else s for d, s in zip(
            self.input_shape[1:], self._warmup_hw() + [self.channels])]
        x = tf.zeros(shape, self.input_dtype)
        start = time.perf_counter()
        try:
            compiled(x)
        except Exception as exc:  # XLA cannot compile some graphs: fall back silently
            self.jit_error = exception_line(exc)
            if strict:
                raise
            return
        self.jit_timing = {"compile_seconds": time.perf_counter() - start}
        if not strict:
            plain(x)
            timing = {"xla": [], "plain": []}
            for _ in range(_BENCH_ROUNDS):
                for key, fn in (("xla", compiled), ("plain", plain)):
                    t = time.perf_counter()
                    # To the host, as predict returns them: on a GPU a call returns once
                    # its kernels are queued, and timing that timed the launch alone.
                    for value in fn(x).values():
                        value.numpy()
                    timing[key].append(time.perf_counter() - t)
            xla_s, plain_s = (float(np.median(timing[k])) for k in ("xla", "plain"))
            self.jit_timing.update(xla_seconds=xla_s, plain_seconds=plain_s,
                                   batch=_WARMUP_BATCH)
            if xla_s > _TRIAL_MARGIN * plain_s:
                self.jit_error = (f"XLA not used: {xla_s * 1e3:.2f} ms vs {plain_s * 1e3:.2f} ms "
                                  f"plain for a batch of {_WARMUP_BATCH}")
                return
        self._functions[self.default_signature] = compiled
        self._compiled.add(self.default_signature)
        self.jit_compiled = True

    def _warmup_hw(self) -> list:
        shape = (self.info.get("input") or {}).get("model_input_shape")
        return [int(shape[0]), int(shape[1])] if shape else [32, 32]

    def function(self, signature_name=None):
        """The callable behind a signature (XLA-compiled where that worked).

        Args:
            signature_name: a name of :attr:`signature_names`; ``None``: the default
                signature.

        Returns:
            A callable taking the signature's inputs and returning its outputs dict.

        Raises:
            ValueError: an unknown signature name, or one that is not a string (the
                message lists the known ones).
        """
        if signature_name is not None and not isinstance(signature_name, str):
            # (a list was a TypeError, unhashable; 0 and False ran the default signature)
            raise ValueError(f"signature_name must be a signature's name, a string (None: "
                             f"the default); {self.name} has: "
                             f"{', '.join(self.signature_names)}. Received: "
                             f"{clip_text(repr(signature_name))}")
        name = signature_name or self.default_signature
        if name not in self._signatures:
            raise ValueError(f"unknown signature {name!r}; {self.name} has: "
                             f"{', '.join(self.signature_names)}.")
        with self._lock:
            if name not in self._functions:
                self._functions[name] = self._plain(name)
            return self._functions[name]

    # -- inputs ------------------------------------------------------------------------

    def _image_from(self, item, name="images") -> np.ndarray:
        """One image ``[H, W, C]`` from a path, bytes, PIL image or array (``name``: the
        image's, for an array's errors)."""
        if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
            return decode_image(item, self.channels)
        if hasattr(item, "convert") and hasattr(item, "getbands"):  # a PIL image
            if item.mode in ("F", "I") and not _sixteen_bit_grey(item):
                # 32-bit grey, float or integer: its values as they are, checked as an
                # array's (Pillow's conversion to 8 bits clips and rounds them: a float
                # image of 0..1 became a black one, 16-bit values a white one).
                arr = np.asarray(item)[..., None]
                if self.channels in (3, 4):    # grey to RGB(A), as Pillow converts it
                    arr = np.repeat(arr, 3, -1)
                if self.channels == 4:
                    arr = np.concatenate([arr, np.full_like(arr[..., :1], 255)], -1)
                return arr
            arr = _pillow_pixels(item, _MODES.get(self.channels, "RGB"))
            return arr[..., None] if arr.ndim == 2 else arr
        array = _as_array(item, name)
        if array.ndim == 2 and self.channels == 1:
            array = array[..., None]
        if array.ndim != 3:
            raise ValueError(f"each image must be [height, width, channels]; received an "
                             f"array of shape {array.shape}.")
        return array

    def _item(self, i, item, indexed) -> np.ndarray:
        """Image ``i`` of the input, its shape and channels checked on their own; where the
        input is a list (``indexed``), an error names the image's index (or its path)."""
        name = f"images[{i}]"
        try:
            image = self._image_from(item, name)
            self._check_shape(image[None], image.shape)
        except (ValueError, OSError) as exc:
            if not indexed or isinstance(item, (str, os.PathLike)) and os.fspath(item) in str(
                    exc) or str(exc).startswith(name):   # the path, or the index, names it
                raise
            raise type(exc)(f"{name}: {exc}") from None
        return image

    def _inputs(self, images) -> tuple:
        """``images`` as ``("array", [N, H, W, C] array, unconverted)``, ``("items", list)``
        (a list of paths, bytes, PIL images or arrays) or ``("single", [item])``."""
        if hasattr(images, "numpy") and not isinstance(images, np.ndarray):
            images = images.numpy()
        if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)) or (
                hasattr(images, "getbands")):
            return "single", [images]
        if isinstance(images, np.ndarray):
            array = _as_array(images)
            if array.ndim == 4:
                batch = array
            elif array.ndim == 3 and array.shape[-1] == self.channels:
                batch = array[None]
            elif array.ndim == 3 and self.channels == 1 and array.shape[-1] in (2, 3, 4):
                # [H, W, 2-4] is one image with that many channels, never a batch of
                # greyscale images 2-4 pixels wide.
                raise ValueError(
                    f"{self.name} takes images with 1 channel(s); received "
                    f"{array.shape[-1]} (array shape {array.shape}, read as one image "
                    f"[height, width, channels]). Convert it to greyscale; a batch of "
                    f"greyscale images is [batch, height, width, 1].")
            elif array.ndim == 3 and self.channels == 1:
                batch = array[..., None]
            elif array.ndim == 2 and self.channels == 1:
                batch = array[None, ..., None]
            else:
                raise ValueError(self._shape_message(array.shape))
            self._check_shape(batch)
            return "array", batch
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("no images to predict (received an empty list).")
            if all(isinstance(v, (int, float, list, tuple)) and not isinstance(v, bool)
                   for v in images) and not any(isinstance(v, (str, bytes)) for v in images):
                return self._inputs(_as_array(images))
            return "items", images
        raise ValueError("images must be a numpy array, a file path, encoded image bytes, "
                         f"or a list of those. Received: {type(images).__name__}")

    def to_batches(self, images) -> list:
        """Normalise any accepted input to ``[(indices, float32 batch [N, H, W, C]), ...]``.

        Images of different sizes form separate groups (each is resized in the graph).
        Every image is decoded and converted at once: :meth:`predict` and
        :meth:`iter_predict` do so batch by batch.

        Args:
            images: any input :meth:`predict` accepts.

        Returns:
            A list of ``(indices, batch)`` pairs: the positions in ``images`` and the
            float32 batch of those images.

        Raises:
            ValueError: an unsupported type, wrong rank or channel count, no images; for a
                list, naming the index of the image.
        """
        kind, value = self._inputs(images)
        if kind == "array":
            return [(np.arange(len(value)), self._convert(value, np.arange(len(value))))]
        groups = {}
        for i, item in enumerate(value):
            image = self._item(i, item, kind == "items")
            groups.setdefault(image.shape, []).append((i, image))
        return [self._group_batch(group) for group in groups.values()]

    def _stream(self, images, step) -> tuple:
        """``(N, chunks)``: the number of images and an iterator of ``(indices, converted
        batch)`` of at most ``step`` images each, which decodes and converts a list's images
        as it goes. A list's images of one size are held until ``step`` of them make a
        batch, or until ``_PENDING_BATCHES * step`` images are held in all, when every size
        runs: the memory a call takes is bounded, whatever the number of images. Checks the
        input's form at once; a list's images are checked (and named) as they are read."""
        kind, value = self._inputs(images)
        if kind == "array":
            def chunks():
                for start in range(0, len(value), step):
                    idx = np.arange(start, min(start + step, len(value)))
                    yield idx, self._convert(value[start:start + step], idx)
            return len(value), chunks()

        def chunks():
            pending, held = {}, 0
            for i, item in enumerate(value):
                image = self._item(i, item, kind == "items")
                group = pending.setdefault(image.shape, [])
                group.append((i, image))
                held += 1
                if len(group) == step:
                    del pending[image.shape]
                    held -= step
                    yield self._group_batch(group)
                elif held >= _PENDING_BATCHES * step:
                    for group in pending.values():
                        yield self._group_batch(group)
                    pending, held = {}, 0
            for group in pending.values():
                yield self._group_batch(group)
        return len(value), chunks()

    def _group_batch(self, group) -> tuple:
        """``[(index, image), ...]`` of one size -> ``(indices, converted batch)``."""
        idx = np.asarray([i for i, _ in group])
        return idx, self._convert(np.stack([image for _, image in group]), idx)

    def _shape_message(self, shape) -> str:
        c = self.channels
        return (f"expected images of shape [batch, height, width, {c}] or a single image "
                f"[height, width, {c}]{' (or [height, width])' if c == 1 else ''}; received "
                f"an array of shape {tuple(shape)}.{self._channels_first(shape)}")

    def _channels_first(self, shape) -> str:
        """A hint for an array ``[C, H, W]`` or ``[N, C, H, W]`` of the model's channels (not
        for an empty one: ``[1, 1, 0]`` is no image of channels first)."""
        if len(shape) in (3, 4) and shape[-3] == self.channels != shape[-1] and 0 not in shape:
            return " Channels first? Move them last: np.moveaxis(images, -3, -1)."
        return ""

    def _check_shape(self, batch, given=None) -> None:
        """Check a batch ``[N, H, W, C]``; ``given``: the shape to name in an error (one
        image's, where ``batch`` holds it alone)."""
        if batch.ndim != 4:
            raise ValueError(self._shape_message(batch.shape))
        if batch.shape[0] == 0:
            raise ValueError("no images to predict (the batch is empty).")
        if batch.shape[-1] != self.channels:
            shape = tuple(batch.shape if given is None else given)
            raise ValueError(f"{self.name} takes images with {self.channels} channel(s); "
                             f"received {batch.shape[-1]} (array shape {shape})."
                             f"{self._channels_first(shape)}")
        for axis, want in ((1, self.input_shape[1]), (2, self.input_shape[2])):
            if want is not None and batch.shape[axis] != want:
                raise ValueError(f"{self.name} takes images of size "
                                 f"{self.input_shape[1]}x{self.input_shape[2]}; received "
                                 f"{batch.shape[1]}x{batch.shape[2]}.")
        if min(batch.shape[1], batch.shape[2]) < 1:
            raise ValueError(f"images must be at least 1x1; received shape {batch.shape}.")

    def _convert(self, batch, idx) -> np.ndarray:
        """``batch`` (images ``idx`` of the input) in the signature's dtype, all finite."""
        given = batch
        with np.errstate(over="ignore"):     # a finite value beyond the dtype's range
            batch = batch.astype(self.input_dtype.as_numpy_dtype, copy=False)
        if batch.dtype.kind == "f" and not np.all(np.isfinite(batch)):
            at = int(np.argmin(np.isfinite(batch).reshape(len(batch), -1).all(1)))
            bad = int(idx[at])
            if np.all(np.isfinite(given[at])):
                limit = float(np.finfo(batch.dtype).max)
                value = given[at].flat[int(np.argmax(np.abs(given[at]).reshape(-1)))]
                raise ValueError(f"pixel values must be finite {batch.dtype.name} numbers, "
                                 f"from {-limit:.4g} to {limit:.4g}; image {bad} holds "
                                 f"{float(value):g}.")
            raise ValueError(f"pixel values must be finite numbers (no NaN or infinity); "
                             f"image {bad} holds NaN or infinity.")
        self._check_range(given, batch, idx)
        return batch

    def _check_range(self, given, batch, idx) -> None:
        """Refuse pixels beyond the model's raw range, and fractions from 0 to 1 for a model
        of 0..255 pixels: the graph normalises raw pixels itself, so an image normalised or
        scaled to 0..1 already, or 16-bit, would be predicted as some other image. Dark raw
        pixels (integers up to 1, a black image) pass."""
        if self.raw_range is None:
            return
        low, high = self.raw_range
        if given.dtype.kind in "iu" and (low <= np.iinfo(given.dtype).min
                                         and np.iinfo(given.dtype).max <= high):
            return   # uint8 for 0..255: nothing to look at
        flat = batch.reshape(len(batch), -1)
        lo, hi = flat.min(1), flat.max(1)
        where = (f"{self.name} takes raw pixels from {low:g} to {high:g} "
                 f"(info['input']['raw_range']")
        beyond = np.flatnonzero((lo < low) | (hi > high))
        if beyond.size:
            at = int(beyond[0])
            hint = (" 16-bit pixels? Take their high byte (x >> 8), as a 16-bit PNG is read."
                    if low == 0 and high == 255 and lo[at] >= 0 and hi[at] <= 65535
                    and np.all(flat[at] == np.round(flat[at])) else "")
            raise ValueError(f"{where}; it normalises them itself); image {int(idx[at])} "
                             f"holds values from {float(lo[at]):g} to {float(hi[at]):g}.{hint}")
        if low == 0 and high > 1:
            for at in np.flatnonzero((hi > 0) & (hi <= 1)):
                if np.any(flat[at] != np.round(flat[at])):
                    raise ValueError(
                        f"{where}); image {int(idx[at])} holds fractions from "
                        f"{float(lo[at]):g} to {float(hi[at]):g}: pixels scaled to 0..1? "
                        f"Multiply them by {high:g} (raw pixels that dark: round them to "
                        f"integers).")

    # -- prediction --------------------------------------------------------------------

    def predict(self, images, batch_size=None, *, signature_name=None) -> dict:
        """Run the serving signature on ``images``.

        Args:
            images: raw pixels in the model's raw range (``info["input"]["raw_range"]``,
                0..255 for image data; values beyond it, and an image of fractions from 0
                to 1 for a 0..255 model, are refused), as a uint8/integer/float array
                ``[N, H, W, C]`` or one image ``[H, W, C]`` (``[H, W]`` for greyscale), any
                height and width; for a 1-channel model a 3-D array ``[N, H, W]`` is a batch
                of greyscale images, unless its last axis is 2, 3 or 4: that is one image
                with as many channels, refused as such; a Pillow image; or PNG/JPEG file
                paths or encoded bytes (converted to the model's channels), or a list of
                these (of any sizes). A single image still gives a batch of one.
            batch_size: run at most this many images at a time (default
                :data:`DEFAULT_BATCH_SIZE`, 64). A list's files are decoded batch by batch,
                and an array is converted to the signature's dtype batch by batch, so the
                memory a call takes beyond its outputs does not grow with the number of
                images.
            signature_name: the signature to run; ``None``: the default one
                (``"serving_default"`` in the zoo's exports).

        Returns:
            ``{output name: numpy array}``, e.g. ``probabilities [N, K]`` and
            ``classes [N]`` for a classifier, in the order of ``images``.

        Raises:
            ValueError: unsupported input, wrong rank or channel count, pixels beyond the
                raw range or scaled to 0..1, bad batch size,
                unknown signature name; for a list, the message names the image: its path, else its index
                (``images[3]: ...``).
            FileNotFoundError: a path that does not exist (named).
            IsADirectoryError: a path that is a directory (named).
        """
        total, outputs = self._iter_predict(images, batch_size, signature_name)
        return self._collect(outputs, total)

    def iter_predict(self, images, batch_size=None, *, signature_name=None):
        """:meth:`predict` batch by batch: an iterator of ``(indices, outputs)``, the
        positions in ``images`` of a batch's images and their ``{output name: numpy
        array}``, for outputs too large to hold for every image (a segmentation model's
        masks and probabilities: write each batch's, then let it go). Batches may come out
        of order where images of several sizes are mixed. The input's form, the batch size
        and the signature are checked at the call; a list's images as they are read.

        Args:
            images, batch_size, signature_name: as for :meth:`predict`.

        Returns:
            An iterator of ``(indices, {output name: numpy array})``.

        Raises:
            ValueError, FileNotFoundError: as for :meth:`predict`.

        Example:
            >>> for idx, out in s.iter_predict(paths, 32):  # doctest: +SKIP
            ...     for i, mask in zip(idx, out["mask"]):
            ...         save(paths[i], mask)
        """
        return self._iter_predict(images, batch_size, signature_name)[1]

    def _iter_predict(self, images, batch_size, signature_name) -> tuple:
        _check_batch_size(batch_size)
        fn = self.function(signature_name)  # an unknown signature fails before the input
        total, chunks = self._stream(images, batch_size or DEFAULT_BATCH_SIZE)
        return total, ((idx, _numpy(self._call(fn, batch, signature_name)))
                       for idx, batch in chunks)

    def predict_batches(self, groups, batch_size=None, *, signature_name=None) -> dict:
        """:meth:`predict` for input :meth:`to_batches` has checked and grouped already
        (``[(indices, batch), ...]``): the server checks a request's images once, before
        they join a batch of concurrent requests.

        Args:
            groups: ``[(indices, batch), ...]`` as :meth:`to_batches` returns them.
            batch_size: run at most this many images at a time; ``None`` runs each group
                at once.
            signature_name: as for :meth:`predict`.

        Returns:
            ``{output name: numpy array}`` in the order of the indices.

        Raises:
            ValueError: a bad batch size or an unknown signature name."""
        _check_batch_size(batch_size)
        fn = self.function(signature_name)
        total = sum(len(idx) for idx, _ in groups)

        def outputs():
            for idx, batch in groups:
                step = batch_size or len(batch)
                for start in range(0, len(batch), step):
                    yield idx[start:start + step], _numpy(
                        self._call(fn, batch[start:start + step], signature_name))
        return self._collect(outputs(), total)

    @staticmethod
    def _collect(outputs, total) -> dict:
        """The ``(indices, outputs)`` of every batch as one array per output, in order."""
        results = {}
        for idx, out in outputs:
            for key, value in out.items():
                if key not in results:
                    results[key] = np.zeros((total, *value.shape[1:]), value.dtype)
                results[key][idx] = value
        return results

    def runtime_for(self, batch_size: int):
        """The runtime that runs a batch of ``batch_size`` images of the default signature:
        ``"litert"``, ``"openvino"`` or ``"tensorflow"``, or ``None`` while batches of that
        size class are still being timed (``runtime="auto"``).

        Args:
            batch_size: the number of images in the batch, a positive integer.

        Raises:
            ValueError: ``batch_size`` is not a positive integer."""
        batch_size = _check_images_count(batch_size)
        if not self._adaptive:
            return self.runtime
        candidates = self._candidates(batch_size)
        if len(candidates) == 1:
            return candidates[0]
        return self.runtime_choices.get(_size_class(batch_size))

    @property
    def probabilities_shape(self):
        """The shape of the default signature's ``probabilities`` (``None`` for any size),
        or ``None`` where the signature has no such output."""
        return (self.signature["outputs"].get("probabilities") or {}).get("shape")

    @property
    def probability_units(self):
        """The last size of the default signature's ``probabilities`` (the classes, or 1
        for one sigmoid unit: two classes), or ``None`` where the signature does not say."""
        shape = self.probabilities_shape
        return shape[-1] if shape else None

    def runtime_report(self) -> dict:
        """What runs the default signature, as JSON (``zoo serve``'s metadata answer has it):
        ``{"runtime": "litert", "runtimes": ["litert", "openvino", "tensorflow"],
        "choices": {"1": "litert", "32-63": "openvino"}, "best_ms_per_image": {"32-63":
        {"litert": 8.61, "openvino": 7.93, "tensorflow": 8.35}}}``: the size classes decided
        so far and the best trial time of each runtime (``runtime="auto"``)."""
        with self._trial_lock:   # a trial call may be filling them in
            choices = dict(self.runtime_choices)
            timing = {k: {r: list(v) for r, v in t.items()}
                      for k, t in self.runtime_timing.items()}
        return {
            "runtime": self.runtime,
            "runtimes": list(self.runtimes),
            "choices": {size_class_text(k): v for k, v in sorted(choices.items())},
            "best_ms_per_image": {
                size_class_text(k): {r: round(min(v) * 1e3, 3) for r, v in t.items() if v}
                for k, t in sorted(timing.items())},
        }

    def _candidates(self, batch_size: int) -> list:
        """The runtimes timed for batches of ``batch_size``: TensorFlow for large ones only."""
        return [r for r in self._runners if r != "tensorflow" or batch_size >= LARGE_BATCH]

    def _call(self, fn, batch, signature_name):
        """Call ``fn``; XLA-compiled functions get batches padded to a power of two, so
        at most ~log2(N) batch shapes are ever compiled."""
        n = len(batch)
        name = signature_name or self.default_signature
        if name == SIGNATURE_NAME and self._adaptive:
            choice = self.runtime_for(n)
            return self._call_trial(batch) if choice is None else self._runners[choice](batch)
        if name not in self._compiled:
            return fn(batch)
        size = 1 << (n - 1).bit_length()
        if size != n:
            batch = np.concatenate([batch, np.zeros((size - n, *batch.shape[1:]), batch.dtype)])
        return {k: v[:n] for k, v in fn(batch).items()}

    def trial_calls(self, batch_size: int) -> int:
        """At most how many calls of ``batch_size`` images the choice of runtime for their
        size class takes (``runtime="auto"``; 0 where there is nothing to choose), decided
        or not: ``2 x runtimes x _TRIAL_MAX_ROUNDS``. A model whose calls take longer than
        ``_TRIAL_SECONDS / _TRIAL_ROUNDS`` decides after ``2 x runtimes x _TRIAL_ROUNDS``;
        :meth:`runtime_for` tells when it has.

        Args:
            batch_size: the number of images in a call, a positive integer.

        Raises:
            ValueError: ``batch_size`` is not a positive integer."""
        candidates = self._candidates(_check_images_count(batch_size))
        if not self._adaptive or len(candidates) == 1:
            return 0
        return 2 * len(candidates) * _TRIAL_MAX_ROUNDS

    def _call_trial(self, batch):
        """A batch whose size class has no runtime yet (``runtime="auto"`` on LiteRT): the
        first calls go round the runtimes ``_TRIAL_ROUNDS`` times, two calls on each in a
        row, the first untimed (it takes the previous runtime's threads still spinning on
        the cores, and the first time a new batch shape's set-up), the second timed; every
        call's answer is returned as usual. The timed calls are spread over the whole trial,
        so that one busy spell of the machine does not spoil all of a runtime's timings;
        rounds go on while a runtime's timed calls add up to less than ``_TRIAL_SECONDS``
        (up to ``_TRIAL_MAX_ROUNDS``), so that calls of a few microseconds are timed over a
        span of the machine's time as well. LiteRT stays unless another runtime's best time
        per image is more than 5% below its own; of those, the fastest is chosen. Trial calls
        run one at a time so that their timings do not overlap."""
        size_class = _size_class(len(batch))
        candidates = self._candidates(len(batch))
        with self._trial_lock:
            if size_class in self.runtime_choices:   # decided while this call waited
                return self._runners[self.runtime_choices[size_class]](batch)
            timing = self.runtime_timing.setdefault(size_class, {r: [] for r in candidates})
            call = self._trial_count.get(size_class, 0)
            self._trial_count[size_class] = call + 1
            runtime = candidates[(call // 2) % len(candidates)]
            start = time.perf_counter()
            out = self._runners[runtime](batch)
            if call % 2:
                timing[runtime].append((time.perf_counter() - start) / len(batch))
            if call % 2 and runtime == candidates[-1] and _trial_done(timing, len(batch)):
                self.runtime_choices[size_class] = _choose_runtime(
                    {r: min(v) for r, v in timing.items()}, self.runtime)
            return out

    def top_k(self, probabilities, k=5) -> list:
        """``[[(label, probability), ...] per image]`` from a ``probabilities [N, K]`` array:
        the ``k`` (a positive integer; at most K are given) most probable labels. A binary
        classifier's one sigmoid unit (``[N, 1]``: the probability of class 1, as its
        ``classes`` output reads it) ranks both classes, ``1 - p`` and ``p``.

        Args:
            probabilities: ``[N, K]`` class probabilities, e.g. :meth:`predict`'s
                ``"probabilities"``.
            k: how many labels per image.

        Returns:
            One list of ``(label, probability)`` pairs per image, most probable first.

        Raises:
            ValueError: ``k`` is not a positive integer, or ``probabilities`` is not
                ``[N, K]`` numbers.
        """
        if not is_integer(k) or k < 1:
            raise ValueError(f"k must be a positive integer. Received: {k!r}")
        given = probabilities
        try:
            probabilities = np.asarray(probabilities)
        except ValueError:   # ragged lists
            probabilities = np.asarray(None)
        if probabilities.dtype.kind not in "iuf":   # (strings were numpy's UFuncTypeError)
            raise ValueError(f"top_k takes class probabilities [N, K] (a classifier's "
                             f"predict(...)['probabilities']), numbers; received "
                             f"{clip_text(repr(given))}.")
        if probabilities.ndim != 2 or not probabilities.shape[-1]:
            raise ValueError(f"top_k takes class probabilities [N, K] (a classifier's "
                             f"predict(...)['probabilities']); received an array of shape "
                             f"{probabilities.shape}.")
        probabilities = class_probabilities(probabilities)
        k = min(int(k), probabilities.shape[-1])
        labels = self.labels or [str(i) for i in range(probabilities.shape[-1])]
        ranked = []
        # Ranked _TOP_K_ROWS images at a time: one argsort of every row held a negated copy
        # and an int64 index of the whole [N, K] array at once, 3x the probabilities
        # (10,000 images of 1,000 classes: 120 MB beside their 40 MB).
        for start in range(0, len(probabilities), _TOP_K_ROWS):
            rows = probabilities[start:start + _TOP_K_ROWS]
            order = np.argsort(-rows, axis=-1, kind="stable")[:, :k]
            ranked += [[(labels[j] if j < len(labels) else str(j), float(p[j])) for j in row]
                       for p, row in zip(rows, order)]
        return ranked

    def __repr__(self):
        return (f"Servable(name={self.name!r}, version={self.version}, path={self.path!r}, "
                f"runtime={self.runtime!r}, runtime_choices={self.runtime_choices!r}, "
                f"jit_compiled={self.jit_compiled})")


def _check_images_count(batch_size) -> int:
    """``batch_size`` (a number of images) as an ``int``; ValueError unless it is a positive
    integer (0 was a "negative shift count", 1.5 an AttributeError)."""
    if not is_integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (a number of images). "
                         f"Received: {clip_text(repr(batch_size))}")
    return int(batch_size)


def _size_class(batch_size: int) -> int:
    """The power of two at or below ``batch_size``: 16 for 16-31 images, 32 for 32-63."""
    return 1 << (batch_size.bit_length() - 1)


def _trial_done(timing: dict, batch_size: int) -> bool:
    """Whether a trial's timings of batches of ``batch_size`` (``{runtime: [seconds per
    image, ...]}``, after a complete round) are enough to choose from: see
    ``_TRIAL_ROUNDS``."""
    rounds = min(len(v) for v in timing.values())
    return rounds >= _TRIAL_MAX_ROUNDS or (rounds >= _TRIAL_ROUNDS and all(
        sum(v) * batch_size >= _TRIAL_SECONDS for v in timing.values()))


def _choose_runtime(best: dict, default: str) -> str:
    """The runtime for a size class from each one's best seconds per image: ``default``
    unless the fastest took less than ``_RUNTIME_MARGIN`` of its time."""
    fastest = min(best, key=best.get)
    return fastest if best[fastest] < _RUNTIME_MARGIN * best[default] else default


def size_class_text(size_class: int) -> str:
    """``"1"``, ``"2-3"``, ..., ``"16-31"``: the batch sizes of a size class."""
    return "1" if size_class == 1 else f"{size_class}-{2 * size_class - 1}"


_OV_CORE = None
_OV_CORE_LOCK = threading.Lock()


def _openvino_model(tflite_path):
    """OpenVINO's CPU plugin compiled for ``tflite_path``: float32 math (CPUs with AMX
    would otherwise run it in bfloat16), tuned for latency (one stream), on the CPUs this
    process may use."""
    global _OV_CORE
    import openvino as ov
    with _OV_CORE_LOCK:
        if _OV_CORE is None:
            _OV_CORE = ov.Core()
        core = _OV_CORE
    model = core.read_model(tflite_path)
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                             "PERFORMANCE_HINT": "LATENCY",
                                             "INFERENCE_NUM_THREADS": _usable_cpus()})


def _gpu_visible() -> bool:
    """Whether TensorFlow computes on a GPU here (:func:`zoo.common.visible_gpus`): then
    ``runtime="auto"`` leaves the export to TensorFlow rather than LiteRT's CPU kernels."""
    return bool(visible_gpus())


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def load(path, *, jit_compile="auto", runtime="auto") -> Servable:
    """Load an exported model for prediction.

    Args:
        path: a version directory (``saved_models/lenet5/3``) or a model directory
            (``saved_models/lenet5``: its newest version).
        jit_compile: for the TensorFlow runtime: ``"auto"`` (default) compiles the
            serving function with XLA at load time and keeps it where it compiles and is
            faster; ``True`` always uses XLA (and the TensorFlow runtime) and raises if it
            does not compile; ``False`` never compiles.
        runtime: ``"auto"`` (default): LiteRT when the export has a LiteRT model this
            LiteRT can read and no GPU is visible, else TensorFlow; with LiteRT, each size class of batches then
            runs on whichever of LiteRT, OpenVINO (when installed and it agrees with LiteRT)
            and, from :data:`LARGE_BATCH` images, TensorFlow was fastest on the first
            batches of that class (:meth:`Servable.runtime_for`); ``"litert"`` or
            ``"openvino"`` requires that runtime for every batch (raises if the export has
            no LiteRT model, or OpenVINO cannot run it); ``"tensorflow"``: the SavedModel on
            TensorFlow.

    Returns:
        A :class:`Servable`.

    Raises:
        FileNotFoundError: no SavedModel at ``path``.
        TypeError: ``path`` is no path.
        ValueError: ``path`` is ``""``; a bad ``jit_compile`` or ``runtime``;
            ``runtime="litert"`` or ``"openvino"`` for an export without a LiteRT model this
            LiteRT can run, ``"openvino"`` where OpenVINO is missing or cannot run it; an
            export of a newer format than this zoo reads, or a damaged ``zoo.json``
            (:func:`read_record`); a
            SavedModel this TensorFlow cannot load, written with another TensorFlow
            version (named from ``zoo.json``).

    Example:
        >>> s = load("saved_models/lenet5")  # doctest: +SKIP
        >>> s.predict(np.zeros((2, 8, 8, 1), "uint8"))["probabilities"].shape  # doctest: +SKIP
        (2, 10)
    """
    return Servable(path, jit_compile=jit_compile, runtime=runtime)


# --------------------------------------------------------------------------------------
# CLI: zoo predict.

def _predict_table(names, ranked, truth=None, every_row=False):
    """The top labels of each image (``ranked``: :meth:`Servable.top_k`'s), a row per rank;
    the image (and its true label) on its first row only, for people, or with ``every_row``
    on each (CSV: each row stands alone, as a program reading it takes it)."""
    rows = []
    for i, (name, best) in enumerate(zip(names, ranked)):
        for rank, (label, p) in enumerate(best, 1):
            shown = rank == 1 or every_row
            row = {"image": name if shown else "", "rank": rank, "label": label,
                   "probability": f"{p:.4f}"}
            if truth is not None:
                row["true label"] = truth[i] if shown else ""
            rows.append(row)
    from zoo.tables import records_frame
    return records_frame(rows)


def _mask_names(names) -> list:
    """The mask file name of each image: ``<stem>_mask.png``, where stems repeat (images of
    one name in different folders) ``<stem>_1_mask.png``, ``<stem>_2_mask.png``... so that
    no mask overwrites another."""
    stems = [os.path.splitext(os.path.basename(name))[0].replace(" ", "_").replace("#", "")
             for name in names]
    counts = collections.Counter(stems)
    taken = {f"{s}_mask.png" for s in stems if counts[s] == 1}
    # Each stem's numbering goes on from its last number (the names it passed stay taken):
    # counting up from 1 again for each image made 10,000 images of one name (a/rgb.png,
    # b/rgb.png, ...) try 50 million names, 7 s.
    following = {}
    result = []
    for stem in stems:
        if counts[stem] == 1:
            result.append(f"{stem}_mask.png")
            continue
        number = following.get(stem, 1)
        while _numbered_mask_name(stem, number) in taken:
            number += 1
        following[stem] = number + 1
        name = _numbered_mask_name(stem, number)
        taken.add(name)
        result.append(name)
    return result


def _numbered_mask_name(stem, number) -> str:
    return f"{stem}_{number}_mask.png"


#: ``--runtime`` of ``zoo predict`` and ``zoo serve``.
_RUNTIME_HELP = ("what runs a model: on CPUs where the export has its LiteRT model, each "
                 "batch size class on whichever of LiteRT, OpenVINO and (batches of "
                 f"{LARGE_BATCH}+) TensorFlow timed fastest on its first batches (auto, the "
                 "default); litert; openvino; tensorflow")


_ENGINE_NAMES = {"litert": "LiteRT", "openvino": "OpenVINO", "tensorflow": "TensorFlow"}


def add_model_dir_argument(parser):
    """The ``MODEL_DIR`` argument of the commands that load an export."""
    parser.add_argument("model_dir", metavar="MODEL_DIR",
                        help="an exported model directory (newest version) or version directory")


def add_runtime_options(parser):
    """``--no-xla`` and ``--runtime``: how the commands that run an export run it
    (``args.no_xla``, ``args.runtime``; :func:`load`'s ``jit_compile`` and ``runtime``)."""
    parser.add_argument("--no-xla", action="store_true", help="do not compile with XLA")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto", help=_RUNTIME_HELP)


def configure_predict(parser):
    """``zoo predict MODEL_DIR IMAGE... [--files-from FILE] [--top-k 5] [--out DIR]
    [--digits N] [--format markdown|csv|jsonl]``.

    Args:
        parser: the command's ``argparse.ArgumentParser``; its options are added.

    Returns:
        ``run(args) -> int``: runs the command on the parsed arguments and returns its
        exit code.
    """
    add_model_dir_argument(parser)
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="PNG/JPEG files")
    parser.add_argument("--files-from", default=None, metavar="FILE",
                        help="read image paths from FILE, one a line ('-': standard input), "
                             "after any IMAGE arguments")
    parser.add_argument("--top-k", type=int, default=None,
                        help="classifiers: labels to show per image (default: 5)")
    parser.add_argument("--digits", type=int, default=None, metavar="N",
                        help="predict the first N test images of the embedded digits data")
    parser.add_argument("--out", default=None,
                        help="segmentation: directory for the mask PNGs (default: masks)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per model call (default: 32)")
    add_runtime_options(parser)
    parser.add_argument("--format", choices=("markdown", "csv", "jsonl"), default="markdown",
                        help="markdown (for people, the default), csv (rank by rank) or "
                             "jsonl (one JSON object per image)")

    def run(args):
        import sys
        if args.top_k is not None and args.top_k < 1:
            raise ValueError(f"--top-k must be >= 1. Received: {args.top_k}")
        if args.digits is not None and not 1 <= args.digits <= DIGITS_TEST_SIZE:
            raise ValueError(f"--digits must be from 1 to {DIGITS_TEST_SIZE}, the test images of "
                             f"the embedded digits. Received: {args.digits}")
        listed = _read_file_list(args.files_from) if args.files_from is not None else []
        paths = list(args.images) + [path for _, path in listed]
        # Where each path came from, for the error naming one: an argument, or a list's line.
        source = "standard input" if args.files_from == "-" else args.files_from
        origins = [""] * len(args.images) + [f" (line {n} of {source})" for n, _ in listed]
        if not paths and args.digits is None:
            raise ValueError("give image files to predict" +
                             (f" ({args.files_from} lists none)" if args.files_from else "")
                             + ", or --digits N")
        if paths and args.digits is not None:
            raise ValueError(f"give image files or --digits N, not both. Received: "
                             f"{len(paths)} image file(s) and --digits {args.digits}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1. Received: {args.batch_size}")
        if args.out is not None:
            _check_out_dir(args.out)
        # Before the model loads (seconds for the large ones), every file's header is read:
        # a missing file or one that is no image is named at once. The pixels are decoded
        # batch by batch as they are predicted, so memory does not grow with their number.
        sizes = []
        for path, origin in zip(paths, origins):
            try:
                sizes.append(check_image_file(path))
            except IsADirectoryError as exc:
                import shlex
                folder = path.rstrip("/")   # (imgs/ was shown as imgs//*.png)
                pattern = f"{shlex.quote(folder)}/*.png" if folder else "/*.png"
                raise IsADirectoryError(
                    f"{exc}{origin}: give the images in it ({pattern}), or list them with "
                    f"--files-from FILE") from None
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"{exc}{origin}{_pattern_note(path)}") from None
            except ValueError as exc:
                raise ValueError(f"{exc}{origin}") from None
        servable = load(args.model_dir, jit_compile=not args.no_xla and "auto",
                        runtime=args.runtime)
        task = servable.task
        truth = None
        # An option of the other task is refused, not ignored.
        if task == "segmentation" and args.top_k is not None:
            raise ValueError(f"--top-k ranks a classifier's labels; {servable.name} is a "
                             f"segmentation model, which writes masks (--out DIR)")
        if task != "segmentation" and args.out is not None:
            raise ValueError(f"--out is where a segmentation model's masks go; "
                             f"{servable.name} is a classifier, which prints its top labels")
        args.top_k = 5 if args.top_k is None else args.top_k
        if args.out is None:
            args.out = "masks"
            if task == "segmentation" and os.path.isfile(args.out):
                raise NotADirectoryError(f"--out {args.out} (the default) is a file; masks "
                                         f"go into a directory: give another --out")
        if args.digits is not None and task == "segmentation":
            raise ValueError(f"--digits predicts the embedded digits with a classifier; "
                             f"{servable.name} is a segmentation model: give image files")
        if args.digits is not None and servable.channels != 1:
            raise ValueError(f"--digits predicts the embedded digits, greyscale images; "
                             f"{servable.name} takes {servable.channels}-channel images: "
                             f"give image files")
        if args.digits is not None:
            from zoo.data import digits_arrays
            x, y = digits_arrays("test")
            n = args.digits
            images, names = x[:n], [f"digits test #{i}" for i in range(n)]
            labels = servable.labels or [str(i) for i in range(10)]
            truth = [labels[int(v)] if int(v) < len(labels) else str(int(v)) for v in y[:n]]
        else:
            images = names = paths
        if task == "segmentation":
            with disk_full_as_error(args.out):   # (not the hidden directory's mask named)
                _write_masks(servable, images, names, args, sizes)
            return 0
        # Each batch's answers are ranked as they come and its probabilities let go: every
        # image's were held until all were predicted, N x K floats for the k labels shown
        # (100,000 images of 1,000 classes: 400 MB). Printed once all are ranked, as before.
        ranked, classes, width = [None] * len(names), np.zeros(len(names), np.int64), 0
        for idx, out in servable.iter_predict(images, args.batch_size):
            for i, best in zip(idx, servable.top_k(out["probabilities"], args.top_k)):
                ranked[i] = best
            classes[idx] = predicted_classes(out)
            width = out["probabilities"].shape[-1]
        if args.format == "jsonl":
            _print_jsonl(_top_k_records(names, ranked, truth))
        else:
            from zoo.tables import to_text
            table = _predict_table(names, ranked, truth, every_row=args.format == "csv")
            print(to_text(table, args.format).rstrip())
        if truth is not None:
            labels = servable.labels or [str(i) for i in range(width)]
            predicted = [labels[int(c)] for c in classes]
            right = sum(p == t for p, t in zip(predicted, truth))
            # Below the table for people; on stderr beside csv and jsonl, which stay
            # machine-readable to their end.
            summary = f"{right}/{len(truth)} correct ({servable.name} version " \
                      f"{servable.version}, {engine_text(servable)})"
            if args.format == "markdown":
                print(f"\n{summary}")
            else:
                print(summary, file=sys.stderr)
        return 0

    return run


def engine_text(servable) -> str:
    """What ran ``servable``'s batches, for people: ``"TensorFlow, XLA off"``, ``"LiteRT"``,
    ``"LiteRT; OpenVINO for batches of 16-31 images"`` (the runtimes ``runtime="auto"``
    chose per batch size, so far).

    Raises:
        TypeError: ``servable`` is no :class:`Servable` (was an AttributeError).
    """
    if not isinstance(servable, Servable):
        raise TypeError(f"engine_text takes a zoo.serving.Servable. "
                        f"Received: {type(servable).__name__}")
    engine = (f"TensorFlow, XLA {'on' if servable.jit_compiled else 'off'}"
              if servable.runtime == "tensorflow" else _ENGINE_NAMES[servable.runtime])
    for runtime in ("openvino", "tensorflow", "litert"):
        switched = sorted(k for k, v in servable.runtime_choices.items()
                          if v == runtime != servable.runtime)
        if switched:
            engine += (f"; {_ENGINE_NAMES[runtime]} for batches of "
                       + ", ".join(map(size_class_text, switched))
                       + (" image" if switched == [1] else " images"))
    return engine


def _pattern_note(path) -> str:
    """For a missing image file whose name is a wildcard pattern (``photos/*.jpg``): what
    became of it, as ``zoo predict`` takes file names and expands no pattern (a shell passes
    one on as it is where no file matches it, or where it is quoted); else ``""``."""
    import glob
    if not glob.has_magic(path):
        return ""
    matches = len(glob.glob(path))
    if not matches:
        return "; it is a pattern, which no file matches (zoo predict expands none)"
    files = f"{matches} files match" if matches > 1 else "1 file matches"
    return (f"; it is a pattern ({files} it), and zoo predict expands none: let the shell "
            f"expand it (unquoted), or list the files with --files-from FILE")


def _list_text(data: bytes) -> str:
    """A file list's bytes as text: UTF-8 (bytes that are not: as Python reads such file
    names), a leading byte-order mark dropped, and UTF-16 where such a mark says so (a list
    that Windows PowerShell wrote with ``>``): before, the mark was read as the first path's
    first character (``no such image file: \\ufeffa.png``), and UTF-16 as bytes."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-16")
    return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape")


def _read_file_list(source) -> list:
    """The ``(line number, path)`` of each path in ``source`` (a file, ``-`` for standard
    input), one a line, numbered from 1 (:func:`_list_text`); blank lines are skipped, and
    nothing else is stripped (paths may start or end with spaces)."""
    import sys
    if source == "-":
        stream = getattr(sys.stdin, "buffer", None)
        text = _list_text(stream.read()) if stream is not None else \
            sys.stdin.read().removeprefix("\ufeff")
    else:
        if os.path.isdir(source):
            raise IsADirectoryError(f"--files-from {source} is a directory; expected a file "
                                    f"of image paths, one a line")
        if not os.path.isfile(source):
            raise FileNotFoundError(f"--files-from: no such file: {source}")
        with open(source, "rb") as f:
            text = _list_text(f.read())
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _top_k_records(names, ranked, truth=None) -> list:
    records = []
    for i, (name, best) in enumerate(zip(names, ranked)):
        record = {"image": name, "labels": [label for label, _ in best],
                  "probabilities": [round(p, 6) for _, p in best]}
        if truth is not None:
            record["true_label"] = truth[i]
        records.append(record)
    return records


def _print_jsonl(records) -> None:
    print("\n".join(json.dumps(r, ensure_ascii=False) for r in records))


def _bilinear_taps(n_out: int, n_in: int) -> tuple:
    """Source rows (lower, upper) and weights of the upper one for bilinear resizing from
    ``n_in`` to ``n_out`` samples with pixel centres aligned, as ``tf.image.resize``
    computes them (half-pixel centres, no antialiasing)."""
    pos = (np.arange(n_out, dtype="float64") + 0.5) * (n_in / n_out) - 0.5
    floor = np.floor(pos)
    lower = np.clip(floor, 0, n_in - 1).astype("int64")
    upper = np.clip(np.ceil(pos), 0, n_in - 1).astype("int64")
    return lower, upper, (pos - floor).astype("float32")


def class_probabilities(probabilities) -> np.ndarray:
    """``probabilities`` (``[..., K]``) with one sigmoid unit (``K == 1``: the probability of
    class 1, as the signature's ``classes`` and ``mask`` read it) as two classes, ``1 - p``
    and ``p``; other arrays as they are."""
    if probabilities.shape[-1] == 1:
        return np.concatenate([1 - probabilities, probabilities], axis=-1)
    return probabilities


def predicted_classes(outputs) -> np.ndarray:
    """The class index (int64) of each image of a classifier's ``outputs``
    (:meth:`Servable.predict`'s): its signature's ``classes``, or, for a SavedModel written
    by another tool without that output, the arg-max of its ``probabilities`` (one sigmoid
    unit: class 1 above 0.5, as the zoo's exports read it)."""
    if "classes" in outputs:
        return np.asarray(outputs["classes"]).astype(np.int64)
    return class_probabilities(np.asarray(outputs["probabilities"])).argmax(-1).astype(np.int64)


def mask_at_size(probabilities, size) -> np.ndarray:
    """The class mask ``[H, W]`` (int64) of one image's per-pixel probabilities ``[h, w, K]``
    brought to ``size = (H, W)``: each class's probabilities resized bilinearly as the
    serving graph resizes images (``tf.image.resize``: pixel centres aligned), then the
    arg-max, as the signature's own ``mask`` is at ``(h, w)`` (one sigmoid unit ``[h, w, 1]``:
    class 1 where its probability is above 0.5). For a segmentation model
    whose output has its input's size, this is the mask at the size of the image it was
    predicted for (what ``zoo predict`` writes). Memory: a few float32 ``[H, W]`` planes
    besides the result, whatever ``K``.

    Args:
        probabilities: one image's ``[h, w, K]`` probabilities.
        size: ``(H, W)`` of the mask to return, at least ``(1, 1)``.

    Returns:
        An int64 array ``[H, W]`` of class indices.

    Raises:
        ValueError: ``probabilities`` not 3-D or empty, or a bad ``size``.

    Example:
        >>> out = servable.predict("photo.png")  # doctest: +SKIP
        >>> mask = mask_at_size(out["probabilities"][0], (480, 640))  # doctest: +SKIP
    """
    probabilities = np.asarray(probabilities, dtype="float32")
    if probabilities.ndim != 3 or 0 in probabilities.shape:   # (no classes: None came back)
        raise ValueError(f"probabilities must be one image's [height, width, classes], "
                         f"none of them 0; received shape {probabilities.shape}")
    if (isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2
            or not all(is_integer(v) and v >= 1 for v in size)):
        raise ValueError(f"size must be (height, width): two integers of at least 1; "
                         f"received {size!r}")
    height, width = (int(v) for v in size)
    probabilities = class_probabilities(probabilities)
    h, w, _ = probabilities.shape
    if (h, w) == (height, width):
        return probabilities.argmax(-1)
    top, bottom, dy = _bilinear_taps(height, h)
    left, right, dx = _bilinear_taps(width, w)
    dy, dx = dy[:, None], dx[None, :]
    best = mask = None
    for k in range(probabilities.shape[-1]):
        plane = probabilities[..., k]
        rows = plane[top] + (plane[bottom] - plane[top]) * dy              # [H, w]
        plane = rows[:, left] + (rows[:, right] - rows[:, left]) * dx     # [H, W]
        if best is None:
            best, mask = plane, np.zeros((height, width), "int64")
        else:
            better = plane > best      # ties keep the lower class, as arg-max does
            best = np.where(better, plane, best)
            mask[better] = k
    return mask


def output_has_input_size(servable) -> bool:
    """Whether a segmentation export's output has its model input's size
    (``padding="same"``), so that its masks can be brought to each image's own size
    (:func:`mask_at_size`); an output smaller than the input (unpadded convolutions) is
    the centre of the resized image."""
    shapes = [(servable.info.get(key) or {}).get(shape) for key, shape in
              (("input", "model_input_shape"), ("output", "model_output_shape"))]
    return None not in shapes and list(shapes[0][:2]) == list(shapes[1][:2])


def mask_sizes(servable, use="from which the masks are brought to each image's size") -> tuple:
    """``(own_size, in_hw)`` of a segmentation export: whether its masks are brought to
    each image's own size, else the model input's height and width, whose centre the
    output covers. Without its zoo.json, an export's signature tells: a fixed input size,
    or an output whose size follows the input's (both of any size); one taking any size
    and answering a fixed size is refused, ``use`` saying what that size is needed for.

    Raises:
        ValueError: the export has no zoo.json and its signature takes images of any size
            and answers masks of a fixed size (the size its graph resizes images to is in
            zoo.json only).
    """
    if "input" in servable.info:
        own_size = output_has_input_size(servable)
        return own_size, (None if own_size else
                          tuple(servable.info["input"]["model_input_shape"][:2]))
    in_hw = tuple(servable.input_shape[1:3])
    out_hw = tuple((servable.probabilities_shape or [None] * 4)[1:3])
    if None not in in_hw:     # images of that size only: no resize before the model
        return in_hw == out_hw, (None if in_hw == out_hw else in_hw)
    if out_hw == (None, None):
        return True, None
    raise ValueError(
        f"{servable.name}'s signature takes images of any size and answers masks of "
        f"{out_hw[0]}x{out_hw[1]}; the input size its graph resizes images to, {use}, is "
        f"in {os.path.join(servable.path, 'assets', 'zoo.json')}, which is missing: restore "
        f"it (zoo export writes it).")


def _check_out_dir(out) -> None:
    """Refuse an ``--out`` that is empty, a file, under one (``notes.txt/masks``) or not
    writable, before the model loads: the masks' directory could not be made (it failed
    after the load with ``[Errno 20] Not a directory``, ``[Errno 13] Permission denied`` or,
    for ``''``, ``[Errno 2] No such file or directory: ''``)."""
    if not out:
        raise ValueError("--out must be the path of a directory for the masks (default: "
                         "masks). Received: --out=''")
    check_name_lengths(out, "--out")
    existing = out
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not existing or os.path.isdir(existing):
        blocked = unwritable_directory(out)
        if blocked is not None:
            raise PermissionError(f"--out {out} cannot be written: {why_unwritable(blocked)}; "
                                  f"masks go into a directory")
        return
    if os.path.normpath(existing) == os.path.normpath(out):   # "notes.txt/" too
        raise NotADirectoryError(f"--out {out} is a file; masks go into a directory")
    raise NotADirectoryError(f"--out {out} is under {existing}, which is a file; masks go "
                             f"into a directory")


def _write_masks(servable, images, names, args, sizes=None) -> None:
    """Predict a segmentation model's masks batch by batch and write them into ``args.out``
    all or none: each batch's masks go into a hidden directory there, renamed into place
    once every image has been predicted (a run that fails leaves no masks of its own, and
    the masks of an earlier run as they were; the hidden directory of a predict that was
    killed is removed by the next). Prints a row per image. ``sizes``: the
    images' ``(height, width)``, for masks at each image's own size."""
    import shutil
    import tempfile
    from PIL import Image
    mask_names = _mask_names(names)
    # A model whose output has its input's size (padding="same") gets masks at each image's
    # own size; an output smaller than the input (unpadded convolutions: the centre of the
    # resized image) is written as it is. Known before anything is written.
    own_size = sizes is not None and mask_sizes(servable)[0]
    for name, mask_name in zip(names, mask_names):   # a rename onto it would fail halfway
        target = os.path.join(args.out, mask_name)
        if os.path.isdir(target) and not os.path.islink(target):
            raise IsADirectoryError(f"--out {args.out} holds a directory {mask_name} where "
                                    f"the mask of {name} goes: remove or rename it, or give "
                                    f"another --out")
    created = not os.path.isdir(args.out)
    os.makedirs(args.out, exist_ok=True)
    remove_stale_temporaries(args.out, ".tmp-")   # a killed predict's
    staging = tempfile.mkdtemp(dir=args.out, prefix=temporary_prefix(".tmp-"))
    rows = [None] * len(names)
    done = False
    renamed = []
    try:
        for idx, out in servable.iter_predict(images, args.batch_size):
            for j, (i, mask) in enumerate(zip(idx, out["mask"])):
                if own_size and "probabilities" in out:
                    if tuple(sizes[i]) != mask.shape:
                        mask = mask_at_size(out["probabilities"][j], sizes[i])
                dtype = "uint8" if mask.max(initial=0) < 256 else "uint16"
                Image.fromarray(mask.astype(dtype)).save(
                    os.path.join(staging, mask_names[i]), format="PNG")
                counts = np.bincount(mask.ravel(), minlength=len(servable.labels or [0]))
                top = int(np.argmax(counts))
                label = servable.labels[top] if top < len(servable.labels) else str(top)
                rows[i] = {"image": names[i], "mask": os.path.join(args.out, mask_names[i]),
                           "most pixels": label, "share": round(counts[top] / mask.size, 3)}
        # On the disk before their renames, so that after a power loss a mask is the earlier
        # run's or this one's, never an empty file.
        fsync_paths(os.path.join(staging, mask_name) for mask_name in mask_names)
        # All or none, also in an --out of earlier masks: a Ctrl-C or SIGTERM waits for the
        # renames (it left the masks renamed so far beside the earlier run's others).
        from zoo.cli import signals_deferred
        with signals_deferred():
            for mask_name in mask_names:
                os.replace(os.path.join(staging, mask_name), os.path.join(args.out, mask_name))
                renamed.append(os.path.join(args.out, mask_name))
            done = True
        sync_directory(args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not done:
            # Made by this run: its masks go, and the directory unless another predict
            # writes into it meanwhile (whose files stay).
            for path in renamed:
                remove_path(path)
            with contextlib.suppress(OSError):
                os.rmdir(args.out)
    if args.format == "jsonl":
        _print_jsonl([{"image": r["image"], "mask": r["mask"], "most_pixels": r["most pixels"],
                       "share": r["share"]} for r in rows])
        return
    from zoo.tables import records_frame, to_text
    for r in rows:
        r["share"] = f"{r['share']:.3f}"
    print(to_text(records_frame(rows), args.format).rstrip())


# --------------------------------------------------------------------------------------
# CLI: zoo serve.

def _count_arg(text: str, expected: str = "a non-negative integer") -> int:
    import argparse
    if not is_digits(text):
        raise argparse.ArgumentTypeError(f"expected {expected}; received {text!r}")
    return int(text)


def _parse_workers_arg(text: str):
    import argparse
    if text == "auto":
        return text
    workers = _count_arg(text, "'auto' or a non-negative integer")
    if workers > _usable_cpus():
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or an integer from 0 to {_usable_cpus()} (the usable CPUs: "
            f"each worker reads a part of a body on a core of its own); received {text!r}")
    return workers


def _port_arg(text: str) -> int:
    import argparse
    if not is_digits(text) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port, 1-65535; received {text!r}")
    return int(text)


# A positive size (at least one byte), a positive and a non-negative time, all finite.
_mb_arg = number_type("a positive number of MB",
                      lambda v: 1 / (1024 * 1024) <= v < math.inf)
_seconds_arg = number_type("a positive number of seconds", lambda v: 0 < v < math.inf)
_ms_arg = number_type("a non-negative number of milliseconds",
                      lambda v: 0 <= v < math.inf)
_poll_arg = number_type("a non-negative number of seconds (0: no polling)",
                        lambda v: 0 <= v < math.inf)


def _origin_arg(text):
    import argparse

    from zoo.server import check_origins
    try:
        return check_origins((text,))[0]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected * (any web page) or an origin scheme://host[:port] with scheme http "
            f"or https and no path (e.g. http://localhost:3000); received {text!r}") from None


#: What ``zoo serve`` cannot run without (the ``serve`` extra; its simdjson and numba are
#: optional: the JSON parsing falls back to orjson without them).
SERVE_MODULES = ("fastapi", "uvicorn", "orjson")


def configure_serve(parser):
    """``zoo serve BASE_DIR [--host 127.0.0.1] [--port 8501] [--max-request-mb 64]``.

    Args:
        parser: the command's ``argparse.ArgumentParser``; its options are added.

    Returns:
        ``run(args) -> int``: runs the command on the parsed arguments and returns its
        exit code.
    """
    parser.add_argument("base_dir", metavar="BASE_DIR",
                        help="directory of model directories (BASE_DIR/NAME/VERSION/)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=_port_arg, default=8501, help="port (default 8501)")
    parser.add_argument("--max-request-mb", type=_mb_arg, default=64.0,
                        help="largest request body accepted, in MB (default 64), "
                             "decompressed (gzip) and as the pixels its b64 images "
                             "decode to")
    add_runtime_options(parser)
    parser.add_argument("--parse-workers", type=_parse_workers_arg, default="auto",
                        metavar="N|auto",
                        help="threads (and, for bodies the compiled reader does not "
                             "take, worker processes) that parse large JSON pixel-list "
                             "bodies in parts beside the request's thread (default auto: "
                             "one fewer than the usable CPUs, at most 3; 0: none; at "
                             "most the usable CPUs)")
    parser.add_argument("--max-batch-size", type=_count_arg, default=64, metavar="N",
                        help="combine the images of requests that arrive while the model "
                             "is busy into batches of up to N (default 64; 0 or 1: run every "
                             "request on its own)")
    parser.add_argument("--inline-ms", type=_ms_arg, default=5.0, metavar="MS",
                        help="answer requests a model is predicted to answer within MS "
                             "milliseconds on the event loop instead of the thread pool "
                             "(default 5; 0: always the thread pool)")
    parser.add_argument("--batch-wait-ms", type=_ms_arg, default=0.0, metavar="MS",
                        help="a request that finds its model idle waits up to MS "
                             "milliseconds for others to join its batch (default 0: "
                             "none; like TensorFlow Serving's batch_timeout_micros)")
    parser.add_argument("--keep-alive-s", type=_seconds_arg, default=75.0, metavar="S",
                        help="keep idle connections open for S seconds (default 75: longer "
                             "than the idle timeouts of load balancers in front, 60 s for "
                             "AWS's and nginx's)")
    parser.add_argument("--poll-s", type=_poll_arg, default=1.0, metavar="S",
                        help="look for new and removed model versions every S seconds and "
                             "load the new ones before any request asks (default 1, as "
                             "TensorFlow Serving; 0: requests look)")
    parser.add_argument("--allow-origin", action="append", default=[], type=_origin_arg,
                        metavar="ORIGIN", dest="allow_origins",
                        help="let scripts of web pages from ORIGIN (scheme://host[:port], "
                             "e.g. http://localhost:3000; * for any page) call the server "
                             "from a browser (CORS); repeatable (default: none, as "
                             "TensorFlow Serving)")
    parser.add_argument("--log-level", default="warning",
                        choices=("critical", "error", "warning", "info", "debug"),
                        help="server log level; info logs every request (default: warning)")

    def run(args):
        import importlib.util

        from zoo.cli import CLIError
        missing = [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise CLIError(f"zoo serve needs the serve extra, and {', '.join(missing)} "
                           f"{'is' if len(missing) == 1 else 'are'} not installed: "
                           f"pip install -e '.[serve]' in the zoo checkout")
        from zoo.server import serve
        serve(args.base_dir, host=args.host, port=args.port,
              max_request_bytes=int(args.max_request_mb * 1024 * 1024),
              jit_compile=not args.no_xla and "auto", runtime=args.runtime,
              parse_workers=args.parse_workers, max_batch=args.max_batch_size,
              inline_ms=args.inline_ms, batch_wait_ms=args.batch_wait_ms,
              keep_alive_seconds=args.keep_alive_s, log_level=args.log_level,
              poll_seconds=args.poll_s, allow_origins=args.allow_origins)
        return 0

    return run
