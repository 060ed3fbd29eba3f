"""``layer_table(model)``: a built zoo model's layer table, in its family's
documented format, derived from the model itself (layer names, configs and
output shapes) — never from the data the model was built from — so that a
table test checks the built architecture.

Any other functional model (a zoo backbone with a head of the user's, nested
or built on the backbone's output, or a model without zoo layers) gets the
generic table: one row per layer with its type, output shape and parameters,
a nested model as one row.

Families add their format with :func:`table_format`.
"""

from __future__ import annotations

import re
from typing import Callable, Optional, Union

import pandas as pd

_FORMATS: dict[str, tuple[Callable, Callable]] = {}
# family -> predicate on a layer name: the names the family's builders give.
_OWNS: dict[str, Callable[[str], bool]] = {}

#: ``layer_table(model, family=GENERIC)`` asks for the generic per-layer table.
GENERIC = "layers"
GENERIC_COLUMNS = ["Layer", "Type", "Output", "Params"]

__all__ = ["layer_table", "generic_table", "table_format", "detect_family", "to_text",
           "records_frame",
           "thousands", "GENERIC", "GENERIC_COLUMNS"]


def table_format(family: str, detect: Callable,
                 owns: Union[str, Callable[[str], bool], None] = None):
    """Register ``fn(model) -> DataFrame`` as the table of ``family``;
    ``detect(model) -> bool`` recognises a model of that family by its layer names.

    ``owns`` tells the layer names the family's builders give (a regular expression the
    whole name matches, or a predicate); a model of the family with layers of other
    names (a head added by the user) gets the generic table. ``None``: every name.

    Args:
        family: the family's name (the registry's ``ModelInfo.family``).
        detect: ``detect(model) -> bool``.
        owns: a regular expression, a predicate on a layer name, or ``None``.

    Returns:
        A decorator that registers ``fn`` and returns it unchanged.
    """
    if isinstance(owns, str):
        pattern = re.compile(owns)
        owns = lambda name: pattern.fullmatch(name) is not None  # noqa: E731

    def decorator(fn):
        _FORMATS[family] = (fn, detect)
        _OWNS[family] = owns or (lambda name: True)
        return fn

    return decorator


def owned_by_any(name: str, *, but: Optional[str] = None) -> bool:
    """Whether a zoo family (other than ``but``) gives layers the name ``name``."""
    return any(owns(name) for family, owns in _OWNS.items() if family != but)


def detect_family(model) -> Optional[str]:
    """The family whose layer names ``model`` carries.

    Args:
        model: a ``keras.Model``.

    Returns:
        The family's name, or ``None`` for a model of no zoo family.

    Raises:
        TypeError: ``model`` is no ``keras.Model``.
    """
    import zoo.models  # noqa: F401  (families register their formats)
    _check_model("detect_family", model)
    # Later families build on earlier ones (a U-Net may hold a ResNet encoder), so the
    # most recently registered formats are tried first.
    for family, (_, detect) in reversed(_FORMATS.items()):
        if detect(model):
            return family
    return None


def _check_model(owner: str, model) -> None:
    """A ``TypeError`` naming ``owner`` when ``model`` is no ``keras.Model`` (rather than
    an ``AttributeError`` about ``.layers``)."""
    import keras
    if not isinstance(model, keras.Model):
        raise TypeError(f"{owner}: expected a keras.Model. "
                        f"Received: {type(model).__name__}")


def foreign_layers(model, family: str) -> list:
    """The layers of ``model`` (inputs aside) whose names ``family``'s builders do not
    give: the layers a user added around a zoo network."""
    import keras
    owns = _OWNS.get(family, lambda name: True)
    return [layer for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and not owns(layer.name)]


def layer_table(model, family: Optional[str] = None) -> pd.DataFrame:
    """The layer table of a model: a zoo model's in its family's documented format,
    any other functional model's as the generic per-layer table.

    Args:
        model: a ``keras.Model`` (built by a zoo builder or not), or a registered name
            (its default build).
        family: force a family's format, or ``"layers"`` for the generic table
            (default: the family recognised from the layer names; the generic table
            for a model that is not a zoo model or has layers of its own around one).

    Returns:
        A ``pandas.DataFrame``, one row per documented row. The generic table has the
        columns ``Layer``, ``Type``, ``Output`` (``HxWxC``, without the batch axis) and
        ``Params``, one row per layer in the model's order; a nested model is one row
        whose type names its zoo family (``"Model (resnet)"``), e.g. a backbone inside a
        fine-tuned classifier (``layer_table(model.get_layer("resnet50"))`` gives the
        backbone's own table).

    Raises:
        TypeError: if ``model`` is neither a ``keras.Model`` nor a name.
        ValueError: for an unknown ``family``, or a forced one the model's layer names
            are not of.
    """
    import zoo.models  # noqa: F401
    if isinstance(model, str):   # a registered name: its model at the default input
        from zoo.registry import get_model
        model = get_model(model)
    import keras
    if not isinstance(model, keras.Model):
        raise TypeError(f"layer_table: expected a keras.Model or a registered model name. "
                        f"Received: {type(model).__name__}")
    if not model.built:   # (its table listed every layer with 0 parameters and no output)
        raise ValueError(f"layer_table: model {model.name!r} is not built yet, so its layers "
                         f"have no weights or output shapes: build it with an input shape "
                         f"(keras.Input first, or model.build(input_shape)). Received: "
                         f"{type(model).__name__} model {model.name!r}, not built")
    if family is not None and family != GENERIC and family not in _FORMATS:
        raise ValueError(f"layer_table: unknown family {family!r}. Allowed: None (recognised "
                         f"from the layer names), {GENERIC!r} (one row per layer) or one of "
                         f"{sorted(_FORMATS)}.")
    if family is None:
        family = detect_family(model)
        if family is not None and foreign_layers(model, family):
            family = None
    if family is None or family == GENERIC:
        return generic_table(model)
    make, detect = _FORMATS[family]
    if not detect(model):   # the table would be empty, or fail on a missing layer
        found = detect_family(model)
        raise ValueError(f"layer_table: {model.name!r} is not a {family} model (it lacks the "
                         f"layers the {family} builders name; its family: {found}). Allowed: "
                         f"family=None (recognised from the layer names), {GENERIC!r} (one "
                         f"row per layer)" + (f" or {found!r}" if found else "")
                         + f". Received: family={family!r}")
    return make(model)


def _dims(shape) -> str:
    """``(28, 28, 6)`` -> ``"28x28x6"``; a size the model leaves open (``None``) is ``?``
    (it read ``NonexNonex4``)."""
    return "x".join("?" if d is None else str(d) for d in shape)


def _output_str(layer) -> str:
    """``"28x28x6"`` for one output, ``"28x28x6, 10"`` for several (``"?x?x8"`` for sizes
    the model leaves open), ``""`` if unknown."""
    try:
        outputs = layer.output
    except (AttributeError, ValueError):
        return ""
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return ", ".join(_dims(t.shape[1:]) for t in outputs)


def generic_table(model) -> pd.DataFrame:
    """One row per layer of ``model``, in order: ``Layer`` (name), ``Type`` (class; a
    nested zoo model ``"Model (<family>)"``), ``Output`` (``HxWxC``) and ``Params``.

    Args:
        model: a ``keras.Model``.

    Returns:
        A ``pandas.DataFrame`` with the columns :data:`GENERIC_COLUMNS`.

    Raises:
        TypeError: ``model`` is no ``keras.Model``.
    """
    import keras
    _check_model("generic_table", model)
    records = []
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, keras.Model):
            nested = detect_family(layer)
            if nested is not None and not foreign_layers(layer, nested):
                kind = f"Model ({nested})"
        records.append({"Layer": layer.name, "Type": kind, "Output": _output_str(layer),
                        "Params": int(layer.count_params()) if layer.built else 0})
    return pd.DataFrame.from_records(records, columns=GENERIC_COLUMNS)


# ---------------------------------------------------------------------------
# Helpers shared by the family formats.

def size_str(shape) -> str:
    """``(None, 28, 28, 6)`` -> ``"28x28"``."""
    return _dims(shape[1:3])


def layer_names(model) -> set:
    """The names of ``model``'s layers (nested models as one name)."""
    return {layer.name for layer in model.layers}


def layer_params(model, row_name: str) -> int:
    """Parameters of the layer named ``row_name`` and of its auxiliary layers
    ``row_name_*``."""
    return sum(layer.count_params() for layer in model.layers
               if layer.name == row_name or layer.name.startswith(row_name + "_"))


_ACTIVATION_NAMES = {"tanh": "tanh", "relu": "ReLU", "softmax": "Softmax", "sigmoid": "Sigmoid",
                     "linear": "", None: ""}


def _activation_of(model, layer) -> str:
    from zoo.layers import RBFOutput
    if isinstance(layer, RBFOutput):
        return "RBF"
    act = layer.get_config().get("activation")
    if isinstance(act, dict):
        act = act.get("config", {}).get("name", act.get("class_name"))
    if act in (None, "linear"):
        aux = f"{layer.name}_act"
        if aux in layer_names(model):
            act = model.get_layer(aux).get_config()["activation"]
    return _ACTIVATION_NAMES.get(act, str(act))


def _plain_type(layer) -> str:
    from keras import layers as L
    from zoo.layers import PartialConv2D, RBFOutput, Subsampling
    if isinstance(layer, (L.Conv2D, PartialConv2D)):
        return "Convolution"
    if isinstance(layer, (L.AveragePooling2D, Subsampling)):
        return "Avg Pooling"
    if isinstance(layer, L.MaxPooling2D):
        return "Max Pooling"
    if isinstance(layer, (L.Dense, RBFOutput)):
        return "Fully Connected"
    return type(layer).__name__


def plain_table(model, rows: tuple, with_padding: bool) -> pd.DataFrame:
    """Géron-style table (LeNet-5, AlexNet): Layer, Type, Maps, Size, Kernel size,
    Stride, [Padding], Activation — one row per main layer present in ``model``, then one for
    the global pooling (``avg_pool``/``max_pool``) of ``include_top=False``."""
    names = layer_names(model)
    h, w, c = model.inputs[0].shape[1:]
    records = [{"Layer": "In", "Type": "Input", "Maps": str(c), "Size": f"{h}x{w}",
                "Kernel size": "", "Stride": "", "Padding": "", "Activation": ""}]
    for row in rows:
        if row not in names:
            continue
        layer = model.get_layer(row)
        cfg = layer.get_config()
        shape = layer.output.shape
        typ = _plain_type(layer)
        dense = typ == "Fully Connected"
        kernel = cfg.get("kernel_size") or cfg.get("pool_size")
        if isinstance(kernel, int):
            kernel = (kernel, kernel)
        stride = cfg.get("strides") or cfg.get("pool_size") or 1
        if isinstance(stride, (tuple, list)):
            stride = stride[0]
        records.append({
            "Layer": row, "Type": typ,
            "Maps": "" if dense else str(shape[-1]),
            "Size": str(shape[-1]) if dense else size_str(shape),
            "Kernel size": "" if dense else f"{kernel[0]}x{kernel[1]}",
            "Stride": "" if dense else str(stride),
            "Padding": "" if dense else str(cfg.get("padding", "valid")).upper(),
            "Activation": _activation_of(model, layer),
        })
    from keras import layers as L
    for pool in ("avg_pool", "max_pool"):   # include_top=False with pooling: its own row
        layer = model.get_layer(pool) if pool in names else None
        if isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)) \
                and len(layer.input.shape) == 4:
            h, w, maps = layer.input.shape[1:]
            records.append({
                "Layer": pool, "Type": f"Global {'Avg' if pool == 'avg_pool' else 'Max'} Pooling",
                "Maps": str(maps), "Size": "1x1", "Kernel size": f"{h}x{w}", "Stride": "",
                "Padding": "", "Activation": ""})
    df = pd.DataFrame.from_records(records)
    if not with_padding:
        df = df.drop(columns=["Padding"])
    df["Params"] = [0] + [layer_params(model, r) for r in df["Layer"][1:]]
    return df


_LENET_ROWS = ("C1", "S2", "C3", "S4", "C5", "F6", "Out")
_ALEXNET_ROWS = ("C1", "S2", "C3", "S4", "C5", "C6", "C7", "F8", "F9", "Out")


# The names the plain-table builders give: the rows, their auxiliary layers
# (``<row>_<what>``), the input and the pooling of ``include_top=False``.
_PLAIN_NAMES = r"images|avg_pool|max_pool|(?:C\d+|S\d+|F\d+|Out)(?:_\w+)?"


@table_format("lenet", detect=lambda m: {"C1", "S2", "C3", "S4", "C5"} <= layer_names(m)
              and "C6" not in layer_names(m), owns=_PLAIN_NAMES)
def lenet_table(model):
    """LeNet-5's layer table (Géron Table 14-1) read back from a built model."""
    return plain_table(model, _LENET_ROWS, with_padding=False)


@table_format("alexnet", detect=lambda m: {"C1", "S2", "C3", "S4", "C7"} <= layer_names(m),
              owns=_PLAIN_NAMES)
def alexnet_table(model):
    """AlexNet's layer table (Géron Table 14-2) read back from a built model."""
    return plain_table(model, _ALEXNET_ROWS, with_padding=True)


def records_frame(rows, columns=None) -> pd.DataFrame:
    """``rows`` (dicts with the same keys, or sequences in the order of ``columns``) as a
    DataFrame whose text columns hold Python strings (object dtype), for :func:`to_text`:
    a file or folder name that is not UTF-8 (``caf\\xe9.png`` from an old archive, Python's
    ``caf\\udce9.png``; a class folder's, a model's label) failed pandas' Arrow strings
    with a ``UnicodeEncodeError``; it is printed as its bytes
    (:func:`zoo.cli.names_as_their_bytes`)."""
    rows = [dict(zip(columns, row)) if columns is not None else row for row in rows]
    keys = list(columns) if columns is not None else list(rows[0]) if rows else []
    return pd.DataFrame({key: pd.Series([row[key] for row in rows],
                                        dtype=object if rows and isinstance(rows[0][key], str)
                                        else None)
                         for key in keys}, columns=pd.Index(keys, dtype=object))


def to_text(df: pd.DataFrame, fmt: str = "markdown") -> str:
    """Render a table as ``markdown`` (for people) or ``csv`` (for machines).

    CSV writes the values as they are, numbers plain (``44707176``). A table may
    carry its markdown form in ``df.attrs["markdown"]``: a function that returns
    the table to show instead (numbers with thousands separators, marks such as
    ``*``); the lines of that table's ``attrs["footnotes"]`` follow it, and the
    columns that are numeric in ``df`` stay right-aligned.

    Args:
        df: the table.
        fmt: ``"markdown"`` or ``"csv"``.

    Returns:
        The text.

    Raises:
        TypeError: ``df`` is no ``pandas.DataFrame``.
        ValueError: another ``fmt``.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"to_text: expected a pandas.DataFrame. Received: {type(df).__name__}")
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "markdown":
        render = df.attrs.get("markdown")
        if render is None:
            df = _escape_pipes(df)
            align = ["right" if pd.api.types.is_numeric_dtype(df[c]) or _numeric_text(df[c])
                     else "left" for c in df.columns]
            return df.to_markdown(index=False, colalign=align,
                                  disable_numparse=_text_columns(df))
        shown = _escape_pipes(render(df))
        align = ["right" if c in df.columns and pd.api.types.is_numeric_dtype(df[c]) else "left"
                 for c in shown.columns]
        text = shown.to_markdown(index=False, colalign=align,
                                 disable_numparse=_text_columns(shown))
        notes = shown.attrs.get("footnotes", ())
        return text + "\n\n" + "\n".join(notes) if notes else text
    raise ValueError(f"format must be 'markdown' or 'csv'. Received: {fmt!r}")


def _escape_pipes(df):
    """``df`` with ``|`` in its text cells and column names written ``\\|``, as markdown
    tables escape it: an image file named ``a|b.png`` split its row into one cell more."""
    def escape(value):
        return value.replace("|", "\\|") if isinstance(value, str) else value
    text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if not any(isinstance(c, str) and "|" in c for c in df.columns) and not any(
            df[c].map(lambda v: isinstance(v, str) and "|" in v).any() for c in text):
        return df
    out = df.copy()
    for c in text:   # in the column's own dtype: Python strings stay so (records_frame)
        out[c] = pd.Series([escape(v) for v in out[c]], index=out.index, dtype=out[c].dtype)
    out = out.rename(columns=escape)
    out.attrs = dict(df.attrs)
    return out


def _text_columns(df):
    """The positions of ``df``'s text columns: shown as written (``"1.0000"`` stays
    ``1.0000``, where tabulate would read it as the number 1). ``True`` (no parsing) for a
    table without rows, whose column list tabulate cannot index (an IndexError)."""
    if df.empty:
        return True
    return [i for i, c in enumerate(df.columns)
            if not pd.api.types.is_numeric_dtype(df[c]) and pd.api.types.is_string_dtype(df[c])]


def _numeric_text(column) -> bool:
    """Whether a text column holds numbers written as text (and blanks): right-aligned."""
    if not pd.api.types.is_string_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return False
    values = [v for v in column if isinstance(v, str) and v.strip()]
    if not values:
        return False
    try:
        for v in values:
            float(v)
    except ValueError:
        return False
    return True


def thousands(value) -> str:
    """``44707176`` -> ``"44,707,176"``; a missing value (``None``, ``NA``) -> ``""``.

    Args:
        value: an integer, or a missing value.

    Returns:
        The text.
    """
    return "" if pd.isna(value) else f"{value:,}"
