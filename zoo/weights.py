"""Published weight files: ``weights="imagenet"`` or ``weights=PATH``.

The zoo has no weights of its own. Where Keras publishes ImageNet weights for
the same architecture, zoo models are weight-compatible with those HDF5 files,
and ``weights="imagenet"`` fetches them with ``keras.utils.get_file`` and their
published hash (cached in ``~/.keras/models/``). Each family module passes the
table of its files (:class:`WeightFile` per ``(model name, include_top)``).
A file given as a path is read by what it holds, whatever its name (a published
``.h5`` saved as ``.weights.h5`` loads). Those weights expect Keras' input
preparation, not the zoo's normalised input: :func:`imagenet_input` converts, and
:func:`expects_imagenet_input` tells from a file whether its weights need it
(``zoo.train.pretrained_classifier`` and ``zoo train --weights`` put it in front).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tempfile
import warnings

from zoo import common

__all__ = ["WeightFile", "cache_path", "fetch", "load_file", "load", "resolve",
           "expects_imagenet_input", "imagenet_input", "IMAGENET_INPUT"]

KERAS_WEIGHTS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclasses.dataclass(frozen=True)
class WeightFile:
    """One published weights file: its file name, folder URL and hash."""

    fname: str
    origin: str
    file_hash: str = None

    @property
    def url(self) -> str:
        return self.origin + self.fname


def cache_path(fname: str) -> str:
    """Where ``keras.utils.get_file`` keeps ``fname`` (and where to put it offline)."""
    cache_dir = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(cache_dir, "models", fname)


def fetch(model_name: str, wf: WeightFile) -> str:
    """Local path of a published weights file, downloading it if needed.

    Args:
        model_name: the registered name (the error begins with it).
        wf: the published file.

    Raises:
        ValueError: when the file is not cached and cannot be downloaded, saying
            where to put it.
    """
    import keras
    cached = cache_path(wf.fname)
    if os.path.isfile(cached):
        return cached
    try:
        return keras.utils.get_file(wf.fname, wf.url, cache_subdir="models",
                                    file_hash=wf.file_hash)
    except Exception as exc:  # no network, bad hash, ...
        detail = " ".join(str(exc).replace(f" on {wf.url}", "").split())[:200]
        raise ValueError(
            f"{model_name}: could not fetch the 'imagenet' weights {wf.fname} from {wf.url} "
            f"({type(exc).__name__}: {detail}). Offline, download the file elsewhere and put "
            f"it at {cached}, or pass weights=PATH.") from None


def _file_format(path: str) -> str:
    """What a weights file holds, read from its first bytes, not its name: ``"keras"`` (a
    ``.keras`` zip archive), ``"legacy"`` (HDF5 in the layout of Keras 2's ``.h5`` files
    and of the published files), ``"weights"`` (HDF5 written by Keras 3's
    ``save_weights``, ``.weights.h5``) or ``"other"`` (also an HDF5 file that cannot be
    opened: a truncated download keeps the signature and loses the rest)."""
    import zipfile

    import h5py
    if zipfile.is_zipfile(path):
        return "keras"
    if not h5py.is_hdf5(path):
        return "other"
    try:
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                return "legacy"
            if "layers" in f or "vars" in f:
                return "weights"
    except OSError:
        pass
    return "other"


#: The file name ending Keras reads each format by.
_SUFFIX = {"keras": ".keras", "legacy": ".h5", "weights": ".weights.h5"}
_DESCRIPTION = {"keras": "a Keras model (.keras)",
                "legacy": "legacy HDF5 weights (Keras 2's .h5, as the published files)",
                "weights": "Keras 3 weights (.weights.h5)"}


def _named_as(path: str, fmt: str) -> bool:
    if fmt == "legacy":
        return path.endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5")
    return path.endswith(_SUFFIX[fmt])


@contextlib.contextmanager
def _readable_name(path: str, fmt: str):
    """``path``, or a temporary link to it whose name ends as Keras reads ``fmt`` (Keras
    chooses the reader by the name: a published file saved as ``x.weights.h5`` would be
    read as a Keras 3 file)."""
    if _named_as(path, fmt):
        yield path
        return
    with tempfile.TemporaryDirectory() as tmp:
        link = os.path.join(tmp, "weights" + _SUFFIX[fmt])
        try:
            os.symlink(os.path.abspath(path), link)
        except OSError:
            raise ValueError(f"{path} holds {_DESCRIPTION[fmt]}: rename it to end in "
                             f"{_SUFFIX[fmt]}") from None
        yield link


def _legacy_layer_names(path: str, with_weights: bool = True) -> list:
    """The names of the layers with weights in a legacy HDF5 file, in its order (the
    order it loads in); ``with_weights=False``: of every top-level layer it lists."""
    import h5py
    with h5py.File(path, "r") as f:
        group = f if "layer_names" in f.attrs else f["model_weights"]
        names = [n.decode("utf8") if isinstance(n, bytes) else str(n)
                 for n in group.attrs["layer_names"]]
        if not with_weights:
            return names
        return [n for n in names if len(group[n].attrs.get("weight_names", ()))]


def _legacy_mismatch(model, path: str) -> str:
    """Why a legacy HDF5 file's layers differ from ``model``'s ("" when the layer names
    agree): legacy files load by position among the layers with weights."""
    try:
        theirs = _legacy_layer_names(path)
    except (OSError, KeyError, ValueError):
        return ""
    ours = [layer.name for layer in model.layers if layer.weights]
    if theirs == ours:
        return ""
    if theirs[:len(ours)] == ours:
        extra = theirs[len(ours):]
        return (f"; the file has {len(extra)} more layer{'s' if len(extra) > 1 else ''} with "
                f"weights after the model's last, from {extra[0]!r}: a file with the classifier "
                f"top, for include_top=True")
    if ours[:len(theirs)] == theirs:
        return (f"; the file stops before the model's {ours[len(theirs)]!r}: a file without "
                f"the classifier top, for include_top=False")
    i = next(i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b)
    extra = [n for n in theirs if n not in set(ours)]
    ours_only = [n for n in ours if n not in set(theirs)]
    without_aux = common.without_aux_note(ours_only, set(theirs) <= set(ours))
    if extra and all(n.startswith("aux") for n in extra) and set(ours) <= set(theirs):
        why = (f"the file's {len(extra)} layers of auxiliary classifiers, {extra[0]!r} to "
               f"{extra[-1]!r}: a model trained with aux_logits=True, whose .keras file loads "
               f"into this one by layer name")
    elif without_aux:
        why = (f"the model's {len(ours_only)} layers of auxiliary classifiers, "
               f"{ours_only[0]!r} to {ours_only[-1]!r}, are not in the file: {without_aux}")
    else:
        why = "another architecture's weights?"
    return (f"; the file has {len(theirs)} layers with weights, the model {len(ours)}, and the "
            f"first that differs is #{i + 1}: {theirs[i]!r} in the file, {ours[i]!r} in the "
            f"model ({why})")


#: Why a Keras 3 ``.weights.h5`` file may not fit where a ``.keras`` file of the same model does.
_BY_POSITION = ("; a .weights.h5 file pairs layers by type and order, not by name: for a model "
                "with layers added or left out (googlenet with and without aux_logits) use "
                "the .keras file, which pairs them by name")
#: The same, for a model with auxiliary classifiers, which no file without them fits.
_BY_POSITION_AUX = ("; a .weights.h5 file pairs layers by type and order, not by name: weights "
                    "of a model built without aux_logits load into one built so only (its "
                    ".keras file too), and those of one trained with aux_logits into one "
                    "without from its .keras file")


_ASSIGN_BOILERPLATE = ("The shape of the target variable and the shape of the target value "
                       "in `variable.assign(value)` must match. ")


def _load_error_text(exc, limit: int = 300) -> str:
    """Keras' error for weights that do not fit, on one line and without what hides the point
    within ``limit`` characters: its sentence about ``variable.assign`` (the shapes follow it)
    and the target variable's values."""
    text = " ".join(str(exc).split()).replace(_ASSIGN_BOILERPLATE, "shapes differ: ")
    text = re.sub(r" Target variable: .*?(?= List of objects that could not be loaded|$)", "",
                  text)
    return common.clip_text(text, limit)


def _check_keras_file(model_name: str, path: str) -> None:
    """:func:`zoo.common.check_keras_file`, its error beginning with ``model_name`` as the
    other errors of a weights file do."""
    try:
        common.check_keras_file(path)
    except ValueError as exc:
        raise ValueError(f"{model_name}: {exc}") from None


def load_file(model, model_name: str, path, published: WeightFile = None) -> None:
    """Load the weights file ``path`` into ``model``, whatever its name: a ``.keras`` file
    (by layer name, see :func:`zoo.common.load_weights_file`), Keras 3 weights
    (``.weights.h5``) or legacy HDF5 weights (the published files, by position among
    the layers with weights). The format is read from the file.

    Args:
        model: the ``keras.Model`` to load into.
        model_name: the name errors begin with.
        path: the file.
        published: the published file ``path`` is the cached copy of, if any (its error
            then says how to replace it).

    Raises:
        ValueError: a file that holds no Keras weights, or weights that do not fit
            ``model`` (for legacy files, naming the first layer that differs and whether
            the file is for the other ``include_top``).
    """
    path = os.fspath(path)
    fmt = _file_format(path)
    if published is not None:
        cached = (f" It is the cached file for weights='imagenet': delete it (it is fetched "
                  f"again when online) or replace it with {published.url}.")
    else:
        cached = ""
    if fmt == "other":
        if path.endswith(".keras"):
            _check_keras_file(model_name, path)   # its own error for a .keras name
        raise ValueError(f"{model_name}: {path} is not a weights file: neither HDF5 weights "
                         f"(.h5, .weights.h5) nor a .keras archive (an incomplete download?)."
                         f"{cached}")
    if fmt == "keras":
        _check_keras_file(model_name, path)   # a zip archive, but a .keras file's?
    with _readable_name(path, fmt) as readable:
        # Keras warns of each layer it skips (a page of "Skipping nested container" lines on
        # stderr) before it raises: the error below says it; warnings of a load that works
        # are shown.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                common.load_weights_file(model, readable)
            except (ValueError, OSError, KeyError) as exc:
                has_aux = any(layer.name.startswith("aux") and layer.weights
                              for layer in model.layers)
                why = _legacy_mismatch(model, path) if fmt == "legacy" else \
                    (_BY_POSITION_AUX if has_aux else _BY_POSITION) if fmt == "weights" else ""
                raise ValueError(f"{model_name}: the weights in {path} do not fit this model "
                                 f"({_load_error_text(exc)}){why}.{cached}") from None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def load(model, model_name: str, weights, include_top: bool, files: dict) -> None:
    """Load ``weights`` (None, ``"imagenet"`` or a path) into ``model``.

    Args:
        model: the built ``keras.Model``.
        model_name: the registered name (errors begin with it; the published files are
            cached under it).
        weights: ``None`` (nothing is loaded), ``"imagenet"`` (the published file of
            ``files``, fetched) or the path of a weights file (:func:`load_file`).
        include_top: whether ``model`` has its classifier (which published file fits).
        files: ``{include_top: WeightFile}`` for this model's published files.

    Raises:
        ValueError: ``"imagenet"`` without a published file for ``include_top``, a file
            that cannot be fetched (:func:`fetch`), or one that holds no Keras weights or
            weights that do not fit ``model`` (:func:`load_file`).
    """
    if weights is None:
        return
    published = files.get(include_top)
    if weights == "imagenet":
        if published is None:
            raise ValueError(f"{model_name}: no published 'imagenet' weights for "
                             f"include_top={include_top}.")
        path = fetch(model_name, published)
    else:
        path = os.fspath(weights)
    if published is None or os.path.basename(path) != published.fname \
            or os.path.basename(os.path.dirname(os.path.abspath(path))) != "models":
        published = None   # a file of the user's, not the cached published one
    load_file(model, model_name, path, published)


def resolve(model_name: str, weights, shape: tuple, include_top: bool, num_classes: int,
            files: dict):
    """Check that ``weights="imagenet"`` fits the requested model and fetch the file
    before anything is built; other values of ``weights`` pass through.

    Args:
        model_name: the registered name (errors begin with it).
        weights: the builder's ``weights`` argument.
        shape: the model's input shape ``(H, W, C)``.
        include_top, num_classes: the builder's arguments.
        files: ``{include_top: WeightFile}`` for this model's published files.

    Returns:
        The local path of the published file for ``"imagenet"``, else ``weights``.

    Raises:
        ValueError: for ImageNet weights with other than 3 input channels, or with a
            top whose ``num_classes`` is not 1000, or a file that cannot be fetched.
    """
    if weights != "imagenet":
        return weights
    if shape[-1] != 3:
        raise ValueError(f"{model_name}: weights='imagenet' needs 3 input channels (RGB). "
                         f"Received: input_shape={tuple(shape)}")
    if include_top and num_classes != 1000:
        raise ValueError(f"{model_name}: weights='imagenet' with include_top=True needs "
                         f"num_classes=1000 (or use include_top=False). "
                         f"Received: num_classes={num_classes}")
    return fetch(model_name, files[include_top])


#: How the input of each model's published ImageNet weights was prepared (Keras'
#: ``preprocess_input``): ``"caffe"``, BGR pixels 0..255 minus the ImageNet BGR mean;
#: ``"tf"``, RGB pixels scaled to [-1, 1].
IMAGENET_INPUT = {
    "resnet50": "caffe", "resnet101": "caffe", "resnet152": "caffe",
    "resnet50_v2": "tf", "resnet101_v2": "tf", "resnet152_v2": "tf",
    "xception": "tf", "inception_v3": "tf",
}

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

#: The name :func:`imagenet_input` gives its layer (and what :func:`expects_imagenet_input`
#: looks for in a model file).
IMAGENET_INPUT_LAYER = "imagenet_input"


def _keras_file_layer_names(path: str) -> set:
    """The names of every layer in a ``.keras`` archive's config, nested models' too."""
    import json
    import zipfile
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    names = set()

    def walk(item):
        if isinstance(item, dict):
            if isinstance(item.get("layers"), list):
                for layer in item["layers"]:
                    if isinstance(layer, dict):
                        names.add(layer.get("name") or (layer.get("config") or {}).get("name"))
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    walk(config)
    return names


def _legacy_layout(path: str) -> str:
    """``"published"`` for legacy HDF5 weights alone (the layout of Keras' published files,
    which ``save_weights`` wrote in Keras 2), ``"model"`` for a whole model saved as ``.h5``
    (``model.save("m.h5")``: a ``model_weights`` group and the model's config)."""
    import h5py
    with h5py.File(path, "r") as f:
        return "published" if "layer_names" in f.attrs else "model"


def expects_imagenet_input(model_name: str, weights) -> bool:
    """Whether ``weights`` for ``model_name`` were trained on the input Keras' ImageNet files
    were (so that :func:`imagenet_input` belongs in front of the model), read from the file.

    ``"imagenet"``: yes. A path: a file in the layout of Keras' published files (legacy HDF5
    weights alone; the zoo writes none: its files are ``.keras`` and ``.weights.h5``) yes;
    a ``.keras`` file (a run's ``model.keras``) or a whole model saved as ``.h5`` yes when it
    holds a layer named ``imagenet_input`` (a model fine-tuned behind one), else no (a zoo
    run trained on ``zoo.data``'s normalised input); Keras 3 ``.weights.h5`` files name no
    layers: no. Always no for a model without published ImageNet weights
    (:data:`IMAGENET_INPUT`), whose files cannot be Keras' ImageNet ones.

    Args:
        model_name: the registered name of the model the weights are for.
        weights: ``None``, ``"imagenet"`` or a file path.

    Returns:
        ``True`` or ``False``.
    """
    if weights is None or model_name not in IMAGENET_INPUT:
        return False
    if isinstance(weights, str) and weights == "imagenet":
        return True
    path = os.fspath(weights)
    if not os.path.isfile(path):
        return False
    fmt = _file_format(path)
    try:
        if fmt == "legacy":
            if _legacy_layout(path) == "published":
                return True
            return IMAGENET_INPUT_LAYER in _legacy_layer_names(path, with_weights=False)
        if fmt == "keras":
            return IMAGENET_INPUT_LAYER in _keras_file_layer_names(path)
    except (OSError, KeyError, ValueError):
        return False
    return False


def imagenet_input(model_name: str, info, name: str = IMAGENET_INPUT_LAYER):
    """A fixed layer that turns the zoo's model input into what ``model_name``'s
    published ImageNet weights expect.

    ``zoo.data`` feeds ``(x - mean) / std`` of the dataset's statistics, RGB; Keras'
    ImageNet weights were trained on other inputs (:data:`IMAGENET_INPUT`): the
    ResNet v1 files on BGR pixels minus the ImageNet mean, the others on pixels scaled
    to [-1, 1]. Put this layer between the input and a backbone built with
    ``weights="imagenet"`` (or given Keras' published file as a path), for
    ``zoo.train.fit`` and for the export, which embeds the dataset's normalisation. It
    is a 1x1 convolution with fixed weights (3x3 kernel, 3 biases, not trainable),
    saved and exported with the model.

    Args:
        model_name: a model with published ImageNet weights (``zoo.model_info(name).weights``).
        info: the dataset's :class:`zoo.data.DatasetInfo` (its ``mean``, ``std`` and
            ``raw_range``), e.g. ``load_splits(...).info``; 3 channels.
        name: the layer's name.

    Returns:
        A ``keras.layers.Conv2D`` to call on the model input.

    Raises:
        ValueError: a model without published ImageNet weights, or a dataset whose
            input does not have 3 channels.

    Example:
        >>> info = zoo.data.load_splits("folder:photos", channels=3).info  # doctest: +SKIP
        >>> backbone = zoo.resnet50(include_top=False, weights="imagenet")  # doctest: +SKIP
        >>> inputs = keras.Input(info.input_shape)  # doctest: +SKIP
        >>> features = backbone(imagenet_input("resnet50", info)(inputs))  # doctest: +SKIP
    """
    import keras
    import numpy as np
    if model_name not in IMAGENET_INPUT:
        raise ValueError(f"imagenet_input: {model_name!r} has no published ImageNet weights; "
                         f"models with them: {sorted(IMAGENET_INPUT)}")
    if len(info.input_shape) != 3 or info.input_shape[-1] != 3:
        raise ValueError(f"imagenet_input: ImageNet weights need 3 input channels (RGB; "
                         f"load_splits(..., channels=3)). Received: input_shape="
                         f"{tuple(info.input_shape)}")
    mean = np.broadcast_to(np.asarray(info.mean, "float64"), (3,))
    std = np.broadcast_to(np.asarray(info.std, "float64"), (3,))
    low, high = (float(v) for v in info.raw_range)
    # The pixel on the 0..255 scale the weights were trained on: x * scale + shift.
    scale, shift = std * 255.0 / (high - low), (mean - low) * 255.0 / (high - low)
    kernel = np.zeros((1, 1, 3, 3))
    if IMAGENET_INPUT[model_name] == "caffe":   # output channel j is input channel 2 - j
        for j in range(3):
            kernel[0, 0, 2 - j, j] = scale[2 - j]
        bias = shift[::-1] - np.asarray(_CAFFE_MEAN_BGR)
    else:
        for j in range(3):
            kernel[0, 0, j, j] = scale[j] / 127.5
        bias = shift / 127.5 - 1.0
    return keras.layers.Conv2D(
        3, 1, name=name, trainable=False,
        kernel_initializer=keras.initializers.Constant(kernel.tolist()),
        bias_initializer=keras.initializers.Constant(bias.tolist()))
