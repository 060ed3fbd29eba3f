"""The model registry: name -> builder + metadata.

The built-in models' metadata is a table (:mod:`zoo.catalog`) that imports neither
TensorFlow nor Keras, so ``list_models``, ``model_info`` and ``model_info_table`` answer
without the builders' modules; ``get_model`` and ``get_builder`` import the module of the
builder asked for. The built-in builders are decorated with :func:`builtin`; a builder of
one's own is registered with :func:`register`, which records a :class:`ModelInfo` beside it.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
import re
from typing import Callable, Optional

__all__ = ["ModelInfo", "register", "builtin", "list_models", "get_model", "model_info"]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Metadata recorded beside each registered builder.

    Attributes:
        name: registry name (also the builder's function name).
        family: architecture family (``"lenet"``, ``"resnet"``, ...), selects the
            layer-table format.
        paper: the paper or book the architecture reproduces.
        year: publication year.
        task: ``"classification"`` or ``"segmentation"``.
        default_input_shape: ``(H, W, C)`` the paper uses.
        min_input_size: smallest ``H`` (= ``W``) the architecture accepts,
            computed from its layer data.
        params: published total parameter count at the default input shape
            with the default number of classes (``None`` where none is published).
        trainable_params: published trainable count, where the source gives one.
        default_num_classes: the paper's number of classes.
        weights: names of published weight sets (``("imagenet",)``) or ``()``.
        bfloat16_min_input_size: smallest ``H`` (= ``W``) at which
            ``mixed_precision="auto"`` trains the model in bfloat16 on a CPU that prefers it;
            below it, float32, which trains faster there (measured: benchmarks/README.md,
            item 31). ``0``: bfloat16 at every size.
    """

    name: str
    family: str
    paper: str
    year: int
    task: str
    default_input_shape: tuple
    min_input_size: int
    params: Optional[int] = None
    trainable_params: Optional[int] = None
    default_num_classes: int = 1000
    weights: tuple = ()
    bfloat16_min_input_size: int = 0


# builders registered with register() (the built-in ones are in zoo.catalog)
_REGISTRY: dict[str, tuple[Callable, ModelInfo]] = {}


def _catalog():
    from zoo import catalog
    return catalog


def register(*, family, paper, year, default_input_shape, min_input_size,
             task="classification", params=None, trainable_params=None,
             default_num_classes=1000, weights=(), bfloat16_min_input_size=0, name=None):
    """Decorator that registers a builder under its function name.

    Args:
        family: architecture family (``"resnet"``, ...); selects the layer-table format.
        paper: the paper or book the architecture reproduces.
        year: publication year.
        default_input_shape: the paper's ``(H, W, C)``.
        min_input_size: smallest ``H`` (= ``W``) the architecture accepts.
        task: ``"classification"`` or ``"segmentation"``.
        params: published total parameter count, or ``None``.
        trainable_params: published trainable parameter count, or ``None``.
        default_num_classes: the paper's number of classes.
        weights: names of published weight sets, e.g. ``("imagenet",)``.
        bfloat16_min_input_size: see :class:`ModelInfo` (measured, not derived).
        name: registry name (default: the builder's function name).

    Returns:
        The decorator; it records a :class:`ModelInfo` as the builder's ``zoo_info``
        and returns the builder unchanged.

    Raises:
        ValueError: ``task`` is neither of the two, ``bfloat16_min_input_size`` is not a
            non-negative integer; (when the decorator is applied) the name is already
            registered.
    """
    from zoo.common import TASKS, is_integer
    if not isinstance(task, str) or task not in TASKS:
        # (was recorded as given: a task that training, export and serving do not know)
        raise ValueError(f"register: task must be one of {', '.join(map(repr, TASKS))}. "
                         f"Received: task={task!r}")
    if not is_integer(bfloat16_min_input_size) or bfloat16_min_input_size < 0:
        raise ValueError(f"register: bfloat16_min_input_size must be a non-negative integer "
                         f"(the smallest input height and width at which "
                         f"mixed_precision='auto' trains the model in bfloat16; 0: every "
                         f"size). Received: bfloat16_min_input_size={bfloat16_min_input_size!r}")

    def decorator(fn):
        key = name or fn.__name__
        if key in _REGISTRY or key in _catalog().INFO:
            owner = _REGISTRY[key][0].__module__ if key in _REGISTRY else _catalog().MODULES[key]
            raise ValueError(f"Model name {key!r} is already registered (by {owner}).")
        info = ModelInfo(name=key, family=family, paper=paper, year=year,
                         task=task, default_input_shape=tuple(default_input_shape),
                         min_input_size=int(min_input_size), params=params,
                         trainable_params=trainable_params,
                         default_num_classes=default_num_classes,
                         weights=tuple(weights),
                         bfloat16_min_input_size=int(bfloat16_min_input_size))
        _REGISTRY[key] = (fn, info)
        fn.zoo_info = info
        return fn

    return decorator


def builtin(fn):
    """Decorator of the built-in builders: gives ``fn`` its :mod:`zoo.catalog` entry as
    ``zoo_info`` (a builder's module is the catalog's for its name)."""
    catalog = _catalog()
    if catalog.MODULES.get(fn.__name__) != fn.__module__:
        raise ValueError(f"{fn.__module__}.{fn.__name__} is not a built-in builder of "
                         f"zoo.catalog (its builders: {', '.join(catalog.MODULES)}); "
                         f"register a builder of one's own with zoo.registry.register")
    fn.zoo_info = catalog.INFO[fn.__name__]
    return fn


def _names() -> list:
    """Every registered name: the built-in ones, then those of :func:`register`."""
    return [*_catalog().INFO, *_REGISTRY]


def list_models(pattern: Optional[str] = None) -> list[str]:
    """Sorted names of the registered models, optionally filtered by a
    shell-style wildcard.

    Args:
        pattern: a shell-style pattern such as ``"resnet*"`` (case-sensitive), or
            ``None`` for every model.

    Returns:
        A sorted ``list`` of names (empty when nothing matches).

    Raises:
        TypeError: ``pattern`` is neither a string nor ``None``.
    """
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(f"list_models: pattern must be a shell-style pattern string such as "
                        f"'resnet*' or None. Received: {pattern!r}")
    names = sorted(_names())
    if pattern is not None:   # ("" matches no name)
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def _unknown(name):
    """The ValueError of a name that is not registered."""
    known = sorted(_names())
    # (None was "Unknown model None. Did you mean: unet, googlenet, lenet5?")
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4) \
        if isinstance(name, str) else []
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(f"Unknown model {name!r}.{hint} Known models: {', '.join(known)}.")


def registered_info(name) -> Optional[ModelInfo]:
    """The :class:`ModelInfo` of a registered ``name``, or ``None`` (any other value)."""
    if not isinstance(name, str):
        return None
    if name in _REGISTRY:
        return _REGISTRY[name][1]
    return _catalog().INFO.get(name)


def _lookup(name):
    """``(builder, info)`` of a registered name; a built-in builder's module is imported."""
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    info = model_info(name)
    import importlib
    return getattr(importlib.import_module(_catalog().MODULES[name]), name), info


# keras.applications arguments the builders spell or handle otherwise.
_KERAS_APPLICATIONS_HINTS = {
    "classes": "keras.applications' classes is num_classes here",
    "input_tensor": "keras.applications' input_tensor: build the model, then call it on the "
                    "tensor, model(tensor)",
}


def get_model(name: str, /, **kwargs):
    """Build the registered model ``name`` with the builder's keyword arguments.

    Args:
        name: a registered name (:func:`list_models`), given by position: a ``name=``
            keyword is the builder's (the Keras model's name).
        **kwargs: keyword arguments of that builder (``input_shape``,
            ``num_classes``, ``name``, ...).

    Returns:
        The ``keras.Model`` the builder returns.

    Raises:
        ValueError: an unknown ``name`` (the message suggests close names), an
            argument value the builder refuses, or a model too large for the memory
            (naming the arguments).
        TypeError: an argument the builder does not take (the message lists the
            ones it does).
    """
    fn, _ = _lookup(name)
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            hints = [_KERAS_APPLICATIONS_HINTS[k] for k in unknown
                     if k in _KERAS_APPLICATIONS_HINTS
                     and (k != "classes" or "num_classes" in params)]
            hint = f" ({'; '.join(hints)})" if hints else ""
            raise TypeError(f"{name} takes no argument(s) {', '.join(map(repr, unknown))}; "
                            f"its arguments: {', '.join(params)}{hint}")
    try:
        return fn(**kwargs)
    except Exception as exc:
        if not _out_of_memory(exc):
            raise
        from zoo.common import exception_line
        detail = exception_line(exc)
        oom = re.search(r"OOM when allocating tensor with shape\[[^\]]*\]", detail)
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "its defaults"
        raise ValueError(f"{name}: the model is too large to build in this machine's memory "
                         f"({oom.group(0) if oom else detail[:200]}); use a smaller "
                         f"input_shape, num_classes or width. Received: {given}") from None


def _out_of_memory(exc) -> bool:
    """Whether building failed for want of memory: NumPy's MemoryError (a weight
    initialiser's array) or TensorFlow's ResourceExhaustedError (OOM when allocating)."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "ResourceExhaustedError"


def get_builder(name: str) -> Callable:
    """The builder function registered as ``name``.

    Raises:
        ValueError: an unknown ``name``.
    """
    return _lookup(name)[0]


def model_info(name: str) -> ModelInfo:
    """The metadata of a registered model.

    Args:
        name: a registered name (:func:`list_models`).

    Returns:
        Its :class:`ModelInfo`.

    Raises:
        ValueError: an unknown ``name`` (the message suggests close names).
    """
    info = registered_info(name)
    if info is None:
        raise _unknown(name)
    return info


def model_info_table(pattern: Optional[str] = None):
    """The registry as a ``pandas.DataFrame``: name, task, default input,
    minimum input, published parameters, published trainable parameters, paper.

    ``params`` and ``trainable params`` are plain integers, missing (``<NA>``, an
    empty CSV cell) where the source publishes no such count: resnet18 and
    resnet34 have only the trainable count torchvision publishes. The table's
    markdown form (:func:`zoo.tables.to_text`) has one ``params`` column with
    thousands separators: the total, or the trainable count marked ``*`` (named in
    a footnote) where no total is published.
    """
    import pandas as pd
    records = []
    for name in list_models(pattern):
        info = model_info(name)
        records.append({
            "name": name, "task": info.task,
            "default input": "x".join(str(d) for d in info.default_input_shape),
            "min input": info.min_input_size,
            "params": info.params,
            "trainable params": info.trainable_params,
            "paper": f"{info.paper} ({info.year})",
        })
    df = pd.DataFrame.from_records(records, columns=["name", "task", "default input",
                                                     "min input", "params", "trainable params",
                                                     "paper"])
    df = df.astype({"params": "Int64", "trainable params": "Int64"})
    df.attrs["markdown"] = _model_info_markdown
    return df


_TRAINABLE_FOOTNOTE = "\\* trainable parameters, the only count the source publishes"


def _model_info_markdown(df):
    """``model_info_table``'s markdown form: one ``params`` column, thousands separators,
    the trainable count marked ``*`` where no total is published, and a footnote saying so."""
    from zoo.tables import thousands
    only_trainable = df["params"].isna() & df["trainable params"].notna()
    shown = df.drop(columns="trainable params")
    shown["params"] = [f"{thousands(t)}*" if mark else thousands(p)
                       for p, t, mark in zip(df["params"], df["trainable params"],
                                             only_trainable)]
    shown.attrs = {"footnotes": [_TRAINABLE_FOOTNOTE]} if only_trainable.any() else {}
    return shown
