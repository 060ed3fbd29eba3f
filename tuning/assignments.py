"""What ``zoo tune`` reads from its command line before it searches: ``--set`` / ``--fix``
assignments and the family a model name stands for.

Kept apart from :mod:`tuning.hypermodels`, which imports Keras and keras-tuner: the
process of ``zoo tune --workers N`` only starts the processes that search, and checks its
arguments in well under a second without them.
"""

from __future__ import annotations

__all__ = ["FAMILIES", "ALIASES", "family_of", "parse_assignments", "check_set_fix"]

#: The families with a search space (:data:`tuning.hypermodels.HYPERMODELS`' keys).
FAMILIES = ("lenet5", "alexnet", "googlenet", "inception_v3", "xception", "resnet", "unet")
#: Other names of a family; ``resnet18``/``34``/``50`` are ``resnet`` with its depth fixed.
ALIASES = {"lenet": "lenet5", "inception": "inception_v3", "inceptionv3": "inception_v3",
           "resnet18": ("resnet", 18), "resnet34": ("resnet", 34), "resnet50": ("resnet", 50)}


def family_of(name: str) -> str:
    """The family ``name`` stands for (``resnet34`` -> ``resnet``, ``lenet`` ->
    ``lenet5``), as :func:`tuning.hypermodels.get_hypermodel` reads it.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    key = ALIASES.get(name, name)
    key = key[0] if isinstance(key, tuple) else key
    if key not in FAMILIES:
        known = sorted(FAMILIES) + ["resnet18", "resnet34", "resnet50"]
        raise ValueError(f"no search space for model {name!r}. Known: {', '.join(known)}.")
    return key


def _parse_spec(spec):
    """Text ``"a,b"`` -> list, ``"lo:hi"`` -> tuple, other text -> scalar text;
    Python lists/tuples/scalars pass through (a tuple must have two entries)."""
    if isinstance(spec, str):
        text = spec.strip()
        if "," in text:
            return [v for v in (p.strip() for p in text.split(",")) if v]
        if ":" in text:
            lo, _, hi = text.partition(":")
            return (lo, hi)
        return text
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ValueError(f"a range is a (low, high) pair. Received: {spec!r}")
        return spec
    if isinstance(spec, (list, set, frozenset)):
        if not spec:
            raise ValueError("a list of values must not be empty")
        return list(spec)
    return spec


def parse_assignments(items, what="--set") -> dict:
    """``["lr=1e-3", "depth=18,34"]`` -> ``{"lr": "1e-3", "depth": "18,34"}``.

    Args:
        items: ``NAME=VALUE`` strings.
        what: the option named in error messages.

    Returns:
        ``{name: value text}``.

    Raises:
        ValueError: an item without ``=`` or a name given twice.
    """
    result = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise ValueError(f"{what} expects NAME=VALUE (e.g. lr=1e-3, depth=18,34, "
                             f"lr=1e-4:1e-2). Received: {item!r}")
        if name in result:
            raise ValueError(f"{what} names {name!r} twice")
        result[name] = value
    return result


def check_set_fix(set=None, fix=None):
    """Refuse a hyperparameter both narrowed (``set``, ``--set``) and fixed (``fix``,
    ``--fix``): one of them would silently win.

    Args:
        set: ``{name: spec}`` of narrowed hyperparameters, or ``None``.
        fix: ``{name: value}`` of fixed hyperparameters, or ``None``.

    Raises:
        ValueError: a name in both, or a ``set`` or ``fix`` that is neither a dict nor
            ``None`` (5 was "'int' object is not iterable", "x" was taken for no names).
    """
    for arg, value, example in (("set", set, "{'lr': '1e-4:1e-2'}"),
                                ("fix", fix, "{'lr': 0.001}")):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{arg} must be a dict of hyperparameter names to values, such "
                             f"as {arg}={example}, or None. Received: {arg}={value!r}")
    for name in fix or {}:
        if name in (set or {}):
            raise ValueError(f"hyperparameter {name!r} is given to both fix (--fix "
                             f"{name}={fix[name]}) and set (--set {name}={set[name]}); give it "
                             f"to one of them")
