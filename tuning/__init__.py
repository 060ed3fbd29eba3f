"""Hyperparameter search for the zoo with keras-tuner.

``tuning.search(model, dataset, ...)`` runs, resumes or distributes a search
and returns its trials as a DataFrame; ``tuning.hypermodels`` holds one
``keras_tuner.HyperModel`` per family. On the command line: ``zoo tune`` or
``python -m tuning``.
"""

from tuning.search import search  # noqa: F401  (the function shadows the submodule name)

__all__ = ["search"]
