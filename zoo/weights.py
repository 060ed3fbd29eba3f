"""Published weight files: ``weights="imagenet"`` or ``weights=PATH``.

The zoo has no weights of its own. Where Keras publishes ImageNet weights for
the same architecture, zoo models are weight-compatible with those HDF5 files,
and ``weights="imagenet"`` fetches them with ``keras.utils.get_file`` and their
published hash (cached in ``~/.keras/models/``). Each family module passes the
table of its files (:class:`WeightFile` per ``(model name, include_top)``).
"""

from __future__ import annotations

import dataclasses
import os

from zoo import common

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
        raise ValueError(
            f"{model_name}: could not fetch the 'imagenet' weights {wf.fname} from {wf.url} "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}). Offline, download "
            f"the file elsewhere and put it at {cached}, or pass weights=PATH.") from None


def load(model, model_name: str, weights, include_top: bool, files: dict) -> None:
    """Load ``weights`` (None, ``"imagenet"`` or a path) into ``model``.

    Args:
        files: ``{include_top: WeightFile}`` for this model's published files.
    """
    if weights is None:
        return
    if weights == "imagenet":
        if include_top not in files:
            raise ValueError(f"{model_name}: no published 'imagenet' weights for "
                             f"include_top={include_top}.")
        path = fetch(model_name, files[include_top])
    else:
        path = os.fspath(weights)
    try:
        common.load_weights_file(model, path)
    except ValueError as exc:
        raise ValueError(f"{model_name}: the weights in {path} do not fit this model "
                         f"({' '.join(str(exc).split())[:300]}).") from None


def resolve(model_name: str, weights, shape: tuple, include_top: bool, num_classes: int,
            files: dict):
    """Check that ``weights="imagenet"`` fits the requested model and fetch the file
    before anything is built; other values of ``weights`` pass through.

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
