"""Hyperparameter search for the zoo with keras-tuner.

``tuning.search(model, dataset, ...)`` runs, resumes or distributes a search
and returns its trials as a DataFrame; ``tuning.hypermodels`` holds one
``keras_tuner.HyperModel`` per family. On the command line: ``zoo tune`` or
``python -m tuning``.
"""

import importlib as _importlib

from tuning.search import search  # noqa: F401  (the function shadows the submodule name)

__all__ = ["search"]

# Imported on first use: tuning.hypermodels imports Keras and keras-tuner, which
# ``import tuning`` (and ``zoo tune --help``) should not pay for. ``tuning.search`` is the
# function; its module is ``importlib.import_module("tuning.search")``.
_LAZY_SUBMODULES = ("hypermodels",)


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")   # also sets the attribute
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
