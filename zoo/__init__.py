"""zoo: classic CNNs reproduced from their papers, for Keras 3 / TensorFlow.

Builders are registered by name and importable from the package::

    from zoo import alexnet, get_model, list_models, layer_table
    model = alexnet(num_classes=2)
"""

from __future__ import annotations

__version__ = "0.1.0"

import os as _os
import sys as _sys

# TensorFlow enables its oneDNN CPU kernels by default only on CPUs with AVX-512 and newer
# instruction sets; on AVX2 CPUs they are off, and training ResNet-50 on this project's
# 2-core AVX2 machine is ~1.3x slower without them (benchmarks/README.md, item 1). The zoo turns
# them on unless the user chose (TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's kernels). It
# only takes effect if TensorFlow is imported after zoo; `zoo.common.onednn_enabled()`
# tells which kernels a process runs.
if "tensorflow" not in _sys.modules:
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from zoo.registry import ModelInfo, get_model, list_models, model_info  # noqa: E402

# Functions that live in modules with heavier imports, loaded on first use.
_LAZY = {
    "feature_extractor": ("zoo.features", "feature_extractor"),
    # (pandas, ~0.4-0.8 s, is most of ``import zoo`` otherwise: every command paid it, a
    # refused one too)
    "layer_table": ("zoo.tables", "layer_table"),
    "load_model": ("zoo.common", "load_model"),
}
# Modules named after their main function and callable as it
# (``zoo.common.make_module_callable``): the attribute is the module itself, so that
# ``zoo.profile(model)`` and ``zoo.profile.model_table()`` both work from the first
# access on. Importing a submodule binds the package attribute to the module anyway.
_CALLABLE_MODULES = ("profile", "export")


def __getattr__(name):
    import importlib
    import importlib.util
    if name == "__all__":
        # ``from zoo import *`` gives the builders too; they are only known once the
        # builder modules (and TensorFlow) are imported, so the list is made on demand.
        return [*_PUBLIC, *list_models()]
    if name in _CALLABLE_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    # ``from zoo import jsonarrays`` asks for the attribute before importing the submodule:
    # a submodule is imported on its own, without the builders (and TensorFlow).
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        return importlib.import_module(f"{__name__}.{name}")
    # Every registered builder is an attribute: ``from zoo import resnet50``.
    from zoo.registry import get_builder, registered_info
    if registered_info(name) is not None:
        return get_builder(name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_CALLABLE_MODULES) | set(list_models()))


_PUBLIC = ["ModelInfo", "get_model", "list_models", "model_info", "layer_table",
           *_CALLABLE_MODULES, *_LAZY]
