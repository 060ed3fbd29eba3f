"""The search spaces of ``zoo tune``'s families: their :class:`Param` entries, readable
without TensorFlow, Keras or keras-tuner.

:mod:`tuning.hypermodels` (which imports them) builds and trains the models; here are
the spaces themselves, so that ``zoo tune`` refuses an unknown hyperparameter name, a value
a hyperparameter does not allow or an image size no point of the space builds at before
those imports (~6 s) and before any data is loaded.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
from typing import Any, Callable, Optional

from tuning.assignments import ALIASES, _parse_spec, check_set_fix, family_of
from zoo.common import LR_SCHEDULES, OPTIMIZERS

__all__ = ["Param", "KINDS", "TRAINING", "LABEL_SMOOTHING", "HEAD", "ARCHITECTURES",
           "BUILDERS", "space", "param_of", "apply_assignments", "check_alias_depth",
           "check_image_size", "check_space_image_size", "checked_space", "clean_float"]

KINDS = ("choice", "float", "int", "boolean", "fixed")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _decimals(x) -> int:
    """Digits after the decimal point of ``x``'s shortest form: 0.05 -> 2, 1e-05 -> 5."""
    return max(0, -decimal.Decimal(repr(float(x))).as_tuple().exponent)


def clean_float(value, step, min_value=0.0, sampling="linear"):
    """``value``, drawn from a float range with ``step``, without binary noise.

    keras-tuner computes a stepped value as ``min_value + i * step`` (``min_value *
    step**i`` for log sampling), which gives e.g. ``0.15000000000000002`` for 3 steps of
    0.05. A linear value is rounded to the decimals of ``step`` and ``min_value`` (0.15); a
    log value to 12 significant digits. Continuous values (``step`` None), non-floats and
    non-finite values are returned as they are.
    """
    if step is None or isinstance(value, bool) or not isinstance(value, float) or \
            not math.isfinite(value):
        return value
    if sampling == "linear":
        return round(value, max(_decimals(step), _decimals(min_value))) + 0.0   # no -0.0
    return float(f"{value:.12g}") + 0.0



@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperparameter of a search space.

    Attributes:
        name: the hyperparameter's name (``lr``, ``depth``, ...).
        kind: ``"choice"``, ``"float"``, ``"int"``, ``"boolean"`` or ``"fixed"``.
        default: the default value (the builder's or the training default).
        values: the choices (``kind="choice"``).
        min_value, max_value: the range (``float``/``int``).
        step: quantisation step of the range (``None``: continuous floats).
        sampling: ``"linear"`` or ``"log"``.
        grid_step: the step used when the tuner is ``grid`` and ``step`` is None
            (grid search needs a finite set of values).
        group: ``"architecture"`` or ``"training"``.
        arg: the builder keyword argument the value is passed to (``None`` for
            values the HyperModel uses itself).
        help: one-line description.
        strict: choices must come from ``values`` (builder options).
        valid: predicate any value must satisfy.
        valid_text: what ``valid`` asks for, in error messages.
        vtype: the value type (``int``, ``float``, ``str``, ``bool``).
        off: the value that turns a training feature off (``clip_norm`` 0), for a
            hyperparameter the spaces gained after searches existed: while it is fixed
            to this value, it is not declared to keras-tuner, not a column of the
            trials, and not part of a search's fingerprint (:meth:`Param.silent`), so a
            search that does not use it is the search it was before.
    """

    name: str
    kind: str
    default: Any
    values: tuple = ()
    min_value: Optional[float] = None
    max_value: Optional[float] = None
    step: Optional[float] = None
    sampling: str = "linear"
    grid_step: Optional[float] = None
    group: str = "training"
    arg: Optional[str] = None
    help: str = ""
    strict: bool = False
    valid: Optional[Callable[[Any], bool]] = None
    valid_text: str = ""
    vtype: type = float
    off: Any = None

    def silent(self) -> bool:
        """Whether this hyperparameter is fixed to its ``off`` value (see ``off``)."""
        return self.off is not None and self.kind == "fixed" and self.default == self.off

    # -- declaring ---------------------------------------------------------------------
    def declare(self, hp: "keras_tuner.HyperParameters", grid: bool = False):
        """Declare this hyperparameter on ``hp`` and return its current value."""
        if self.kind == "fixed":
            return hp.Fixed(self.name, self.default)
        if self.kind == "choice":
            return hp.Choice(self.name, list(self.values), default=self.default)
        if self.kind == "boolean":
            return hp.Boolean(self.name, default=self.default)
        step = self.step if self.step is not None else (self.grid_step if grid else None)
        if self.kind == "int":
            return hp.Int(self.name, int(self.min_value), int(self.max_value),
                          step=int(step) if step else None, sampling=self.sampling,
                          default=self.default)
        # The trial records keras-tuner's value (0.15000000000000002: its oracles map
        # values back to steps by floor division, which 0.15 would miss); the model
        # trains with the clean one (0.15), which tuning.search also reports.
        top = self.max_value
        if step and self.sampling == "linear":
            # keras-tuner counts a linear range's values as (max - min) // step + 1, which
            # floating point makes one short when the top is a multiple of the step
            # (0.5 // 0.1 == 4.0): 0 .. 0.5 step 0.1 would never try 0.5. A millionth of a
            # step above the top counts it, and adds no value beyond it.
            top = self.max_value + step * 1e-6
        value = hp.Float(self.name, self.min_value, top, step=step,
                         sampling=self.sampling, default=self.default)
        return clean_float(value, step, self.min_value, self.sampling)

    def describe(self) -> dict:
        """One row of :meth:`ZooHyperModel.describe`."""
        if self.kind in ("choice",):
            values = ", ".join(_fmt(v) for v in self.values)
        elif self.kind == "boolean":
            values = "True, False"
        elif self.kind == "fixed":
            values = _fmt(self.default)
        else:
            values = f"{_fmt(self.min_value)} .. {_fmt(self.max_value)}"
            extras = [self.sampling] if self.sampling != "linear" else []
            if self.step:
                extras.append(f"step {_fmt(self.step)}")
            if extras:
                values += f" ({', '.join(extras)})"
        return {"name": self.name, "group": self.group, "type": self.kind,
                "values": values, "default": _fmt(self.default),
                "builder argument": self.arg or "", "description": self.help}

    # -- values --------------------------------------------------------------------------
    def convert(self, value):
        """``value`` (or its text form) as this hyperparameter's type, checked."""
        original = value
        try:
            if self.vtype is bool:
                if isinstance(value, str):
                    text = value.strip().lower()
                    if text not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    value = text in ("true", "1", "yes")
                elif not isinstance(value, bool):
                    raise ValueError
            elif self.vtype is int:
                if isinstance(value, str):
                    value = float(value.strip())
                if isinstance(value, bool) or float(value) != int(value):
                    raise ValueError
                value = int(value)
            elif self.vtype is float:
                if isinstance(value, bool):
                    raise ValueError
                value = float(value.strip() if isinstance(value, str) else value)
            else:
                value = str(value).strip()
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"hyperparameter {self.name!r} takes {self.vtype.__name__} values. "
                             f"Received: {original!r}") from None
        if self.strict and value not in self.values:
            raise ValueError(f"hyperparameter {self.name!r} must be one of "
                             f"{', '.join(_fmt(v) for v in self.values)}. Received: {original!r}")
        if self.valid is not None and not self.valid(value):
            raise ValueError(f"hyperparameter {self.name!r} must be {self.valid_text}. "
                             f"Received: {original!r}")
        return value

    def choices(self) -> tuple:
        """The values a trial can take of a fixed or choice hyperparameter (a fixed one
        keeps the choices it was narrowed from in ``values``)."""
        return (self.default,) if self.kind == "fixed" or not self.values else self.values

    def fixed(self, value) -> "Param":
        """This hyperparameter fixed to ``value``."""
        return dataclasses.replace(self, kind="fixed", default=self.convert(value))

    def narrowed(self, spec) -> "Param":
        """This hyperparameter narrowed to ``spec`` (see the module docstring)."""
        spec = _parse_spec(spec)
        if not isinstance(spec, (list, tuple)):
            return self.fixed(spec)
        if isinstance(spec, tuple):  # a range
            if self.vtype not in (int, float) or self.kind == "boolean":
                raise ValueError(f"hyperparameter {self.name!r} takes {self.vtype.__name__} "
                                 f"values; a range lo:hi applies to numbers only. Received: "
                                 f"{_fmt(spec[0])}:{_fmt(spec[1])}")
            if self.kind == "fixed":
                raise ValueError(f"hyperparameter {self.name!r} is fixed to "
                                 f"{_fmt(self.default)}; it has no range to narrow (give "
                                 f"values as a list: {self.name}=a,b,c)")
            lo, hi = self.convert(spec[0]), self.convert(spec[1])
            if lo > hi:
                raise ValueError(f"hyperparameter {self.name!r}: range low must not exceed "
                                 f"high. Received: {_fmt(lo)}:{_fmt(hi)}")
            if self.kind == "choice":
                kept = [v for v in self.values if lo <= v <= hi]
                if not kept:
                    raise ValueError(f"hyperparameter {self.name!r}: no choice of "
                                     f"{', '.join(_fmt(v) for v in self.values)} lies in "
                                     f"{_fmt(lo)}:{_fmt(hi)}")
                return self._choice(kept)
            if lo == hi:
                return self.fixed(lo)
            default = self.default if lo <= self.default <= hi else lo
            return dataclasses.replace(self, min_value=lo, max_value=hi, default=default)
        values = [self.convert(v) for v in spec]
        values = list(dict.fromkeys(values))
        if len(values) == 1:
            return self.fixed(values[0])
        if self.vtype is bool:
            return dataclasses.replace(self, kind="boolean", values=(),
                                       default=self.default if self.kind != "fixed" else False)
        return self._choice(values)

    def _choice(self, values) -> "Param":
        if len(values) == 1:
            return self.fixed(values[0])
        default = self.default if self.default in values else values[0]
        return dataclasses.replace(self, kind="choice", values=tuple(values), default=default)


# -- the shared training space --------------------------------------------------------------



def _positive(v):
    return v > 0 and math.isfinite(v)


TRAINING = (
    Param("optimizer", "choice", "adam", values=("adam", "sgd", "rmsprop"), vtype=str,
          valid=lambda v: v in OPTIMIZERS, valid_text=f"one of {', '.join(OPTIMIZERS)}",
          help="optimizer (zoo.train.compile_model; sgd has momentum 0.9)"),
    Param("lr", "float", 1e-3, min_value=1e-4, max_value=1e-1, sampling="log", grid_step=10,
          valid=_positive, valid_text="a finite number > 0", help="learning rate (log scale)"),
    # plateau is not among the default choices (a search's space is part of its fingerprint:
    # the searches made before would no longer resume); --set lr_schedule=... adds it.
    Param("lr_schedule", "choice", "constant", values=("constant", "cosine"), vtype=str,
          valid=lambda v: v in LR_SCHEDULES, valid_text="constant, cosine or plateau",
          help="learning-rate schedule over the trial's epochs (zoo.train.fit's lr_schedule; "
               "plateau: --set lr_schedule=constant,cosine,plateau)"),
    Param("weight_decay", "choice", 0.0, values=(0.0, 1e-5, 1e-4, 1e-3),
          valid=lambda v: 0 <= v < math.inf, valid_text="a finite number >= 0",
          help="decoupled weight decay of the optimizer (0: none)"),
    Param("clip_norm", "fixed", 0.0, valid=lambda v: 0 <= v < math.inf,
          valid_text="a finite number >= 0", off=0.0,
          help="global gradient-norm clipping (zoo.train.fit's clip_norm; 0: none); not "
               "searched unless --set (a list: clip_norm=0,1,5)"),
    Param("batch_size", "choice", 32, values=(16, 32, 64, 128), vtype=int,
          valid=lambda v: v >= 1, valid_text=">= 1",
          help="batch size (the training data is re-batched in fit)"),
    Param("augment", "float", 1.0, min_value=0.0, max_value=2.0, step=0.5,
          valid=lambda v: 0 <= v <= 4, valid_text="in [0, 4]",
          help="augmentation strength: the dataset's own augmentation (zoo.data) scaled by "
               "this factor; 0 none, 1 as zoo train --augment"),
)
LABEL_SMOOTHING = Param("label_smoothing", "float", 0.0, min_value=0.0, max_value=0.2, step=0.05,
                        valid=lambda v: 0 <= v < 1, valid_text="in [0, 1)",
                        help="label smoothing of the cross-entropy loss")


def _dropout(default, max_value, arg=None, help="dropout rate"):
    return Param("dropout", "float", default, min_value=0.0, max_value=max_value, step=0.1,
                 group="architecture", arg=arg, valid=lambda v: 0 <= v < 1,
                 valid_text="in [0, 1)", help=help)


HEAD = (
    Param("pooling", "choice", "avg", values=("avg", "max"), strict=True, vtype=str,
          group="architecture",
          help="global pooling before the classifier (avg: the builder's own head)"),
    _dropout(0.0, 0.5, help="dropout before the classifier (0: the builder's own head)"),
)

#: Each family's architecture entries (``zoo tune``'s families: :data:`BUILDERS`' keys).
ARCHITECTURES = {
    "lenet5": (
        Param("variant", "choice", "classic", values=("classic", "modern"), strict=True,
              vtype=str, group="architecture", arg="variant",
              help="classic: subsampling, partial C3, RBF output; modern: avg pool, softmax"),
    ),
    "alexnet": (
        Param("lrn", "boolean", False, vtype=bool, group="architecture",
              arg="local_response_normalization",
              help="local response normalisation after C1 and C3"),
        _dropout(0.5, 0.7, arg="dropout", help="dropout after F8 and F9"),
    ),
    "googlenet": (
        Param("batch_norm", "boolean", False, vtype=bool, group="architecture",
              arg="batch_norm", help="batch normalisation after every convolution"),
        Param("lrn", "boolean", False, vtype=bool, group="architecture",
              arg="local_response_normalization",
              help="local response normalisation after pool1 and conv2 (paper Fig. 3)"),
        HEAD[0],
        _dropout(0.4, 0.7, arg="dropout", help="dropout before the classifier"),
    ),
    "inception_v3": HEAD,
    "xception": HEAD,
    "resnet": (
        Param("depth", "choice", 50, values=(18, 34, 50), strict=True, vtype=int,
              group="architecture", help="number of weight layers: resnet18, resnet34, resnet50"),
    ) + HEAD,
    "unet": (
        Param("depth", "choice", 4, values=(2, 3, 4, 5), vtype=int, group="architecture",
              arg="depth", valid=lambda v: v >= 1, valid_text=">= 1",
              help="number of 2x2 poolings (levels - 1)"),
        Param("base_filters", "choice", 64, values=(16, 32, 64), vtype=int,
              group="architecture", arg="base_filters", valid=lambda v: v >= 1,
              valid_text=">= 1", help="filters of the first level (doubling per level)"),
        Param("batch_norm", "boolean", False, vtype=bool, group="architecture",
              arg="batch_norm", help="batch normalisation after every 3x3 convolution"),
        Param("upsampling", "choice", "transpose", values=("transpose", "bilinear"),
              strict=True, vtype=str, group="architecture", arg="upsampling",
              help="2x2 up-convolution (paper) or bilinear upsampling + 1x1 convolution"),
        _dropout(0.0, 0.5, arg="dropout", help="dropout at the end of the contracting path"),
    ),
}

#: The registry name of each family's builder (``resnet``: ``resnet50``, its default depth).
BUILDERS = {"lenet5": "lenet5", "alexnet": "alexnet", "googlenet": "googlenet",
            "inception_v3": "inception_v3", "xception": "xception", "resnet": "resnet50",
            "unet": "unet"}


def space(architecture, task: str) -> dict:
    """``{name: Param}`` of a space: its ``architecture`` entries, the training ones and,
    for a classifier (``task``), the label smoothing."""
    params = list(architecture) + list(TRAINING)
    if task == "classification":
        params.append(LABEL_SMOOTHING)
    return {p.name: p for p in params}


def param_of(params: dict, family: str, name) -> Param:
    """The entry ``name`` of ``family``'s space ``params``.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name not in params:
        raise ValueError(f"unknown hyperparameter {name!r} for {family}. Known: "
                         f"{', '.join(params)}.")
    return params[name]


def apply_assignments(params: dict, family: str, set=None, fix=None) -> dict:
    """``params`` (changed in place, and returned) narrowed by ``set`` (``{name: spec}``),
    then fixed by ``fix`` (``{name: value}``), as :class:`tuning.hypermodels.ZooHyperModel`
    does.

    Raises:
        ValueError: an unknown name, or a spec or value the hyperparameter does not allow.
    """
    for key, spec in (set or {}).items():
        params[key] = param_of(params, family, key).narrowed(spec)
    for key, value in (fix or {}).items():
        params[key] = param_of(params, family, key).fixed(value)
    return params


def check_alias_depth(name: str, params: dict, fix) -> Optional[int]:
    """The depth a model name fixes (``resnet34``: 34), or ``None``; refuses a ``fix``
    of another depth (``params``: the space with ``fix`` applied)."""
    key = ALIASES.get(name, name)
    if not isinstance(key, tuple):
        return None
    _, depth = key
    if "depth" in (fix or {}) and params["depth"].default != depth:
        raise ValueError(f"{name} fixes depth={depth}; received fix depth={fix['depth']}. "
                         f"Tune 'resnet' to choose the depth.")
    return depth


def checked_space(name: str, set=None, fix=None) -> dict:
    """``{name: Param}`` of the space ``zoo tune NAME --set ... --fix ...`` searches, with
    the refusals of :func:`tuning.hypermodels.get_hypermodel` (an unknown name, a
    hyperparameter both set and fixed or not allowed its value, a depth the model name
    does not fix) made without its imports.
    """
    from zoo.registry import model_info
    check_set_fix(set, fix)
    family = family_of(name)
    params = apply_assignments(space(ARCHITECTURES[family], model_info(BUILDERS[family]).task),
                               family, set, fix)
    depth = check_alias_depth(name, params, fix)
    if depth is not None:
        params["depth"] = params["depth"].fixed(depth)
    return params


def check_image_size(family: str, input_shape, *, minimum=None, depths=None) -> None:
    """Raise a ``ValueError`` unless every point of ``family``'s space builds at
    ``input_shape`` (``(H, W, ...)``): at least ``minimum``, the builder's smallest input;
    or, given U-Net's ``depths`` (``padding="same"``), a multiple of ``2**depth`` for each."""
    h, w = input_shape[:2]
    if depths is None:
        if min(h, w) < minimum:
            raise ValueError(f"{family} needs images of at least {minimum}x{minimum}; "
                             f"received image size {h}x{w}")
        return
    depths = sorted(int(d) for d in depths)
    bad = [d for d in depths if h % 2 ** d or w % 2 ** d]
    if bad:
        fit = [d for d in depths if d not in bad]
        hint = (f"limit the space to depth {','.join(map(str, fit))} (--set depth="
                f"{','.join(map(str, fit))}) or " if fit else "")
        which = (f"depth {bad[0]} of the space does not fit" if len(bad) == 1 else
                 f"depths {', '.join(map(str, bad[:-1]))} and {bad[-1]} of the space do "
                 f"not fit")
        raise ValueError(f"{family} needs an image size that is a multiple of 2**depth; "
                         f"received image size {h}x{w}, which {which}: {hint}"
                         f"use a size that is a multiple of {2 ** max(bad)}")


def check_space_image_size(family: str, params: dict, input_shape) -> None:
    """:func:`check_image_size` for the space ``params`` of a family of :data:`BUILDERS`
    (what its hypermodel's ``check_input_shape`` checks)."""
    if family == "unet":
        check_image_size(family, input_shape, depths=params["depth"].choices())
    else:
        from zoo.registry import model_info
        check_image_size(family, input_shape,
                         minimum=model_info(BUILDERS[family]).min_input_size)
