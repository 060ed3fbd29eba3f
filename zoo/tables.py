"""``layer_table(model)``: a built zoo model's layer table, in its family's
documented format, derived from the model itself (layer names, configs and
output shapes) — never from the data the model was built from — so that a
table test checks the built architecture.

Families add their format with :func:`table_format`.
"""

from __future__ import annotations

from typing import Callable, Optional

import pandas as pd

_FORMATS: dict[str, tuple[Callable, Callable]] = {}


def table_format(family: str, detect: Callable):
    """Register ``fn(model) -> DataFrame`` as the table of ``family``;
    ``detect(model) -> bool`` recognises a model of that family by its layer names."""

    def decorator(fn):
        _FORMATS[family] = (fn, detect)
        return fn

    return decorator


def detect_family(model) -> Optional[str]:
    """The family whose layer names ``model`` carries, or ``None``."""
    import zoo.models  # noqa: F401  (families register their formats)
    # Later families build on earlier ones (a U-Net may hold a ResNet encoder), so the
    # most recently registered formats are tried first.
    for family, (_, detect) in reversed(_FORMATS.items()):
        if detect(model):
            return family
    return None


def layer_table(model, family: Optional[str] = None) -> pd.DataFrame:
    """The layer table of a zoo model, in its family's documented format.

    Args:
        model: a model built by a zoo builder, or a registered name (its default build).
        family: force a family's format (default: recognised from layer names).

    Returns:
        A ``pandas.DataFrame``, one row per documented row.

    Raises:
        ValueError: if the model is not recognised as a zoo model.
    """
    import zoo.models  # noqa: F401
    if isinstance(model, str):   # a registered name: its model at the default input
        from zoo.registry import get_model
        model = get_model(model)
    import keras
    if not isinstance(model, keras.Model):
        raise TypeError(f"layer_table: expected a keras.Model built by a zoo builder or a "
                        f"registered model name. Received: {type(model).__name__}")
    family = family or detect_family(model)
    if family not in _FORMATS:
        raise ValueError(f"layer_table: {getattr(model, 'name', model)!r} is not recognised as a "
                         f"zoo model (family={family!r}). Known families: {sorted(_FORMATS)}.")
    return _FORMATS[family][0](model)


# ---------------------------------------------------------------------------
# Helpers shared by the family formats.

def size_str(shape) -> str:
    """``(None, 28, 28, 6)`` -> ``"28x28"``."""
    return "x".join(str(d) for d in shape[1:3])


def layer_names(model) -> set:
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
    Stride, [Padding], Activation — one row per main layer present in ``model``."""
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
    df = pd.DataFrame.from_records(records)
    if not with_padding:
        df = df.drop(columns=["Padding"])
    df["Params"] = [0] + [layer_params(model, r) for r in df["Layer"][1:]]
    return df


_LENET_ROWS = ("C1", "S2", "C3", "S4", "C5", "F6", "Out")
_ALEXNET_ROWS = ("C1", "S2", "C3", "S4", "C5", "C6", "C7", "F8", "F9", "Out")


@table_format("lenet", detect=lambda m: {"C1", "S2", "C3", "S4", "C5"} <= layer_names(m)
              and "C6" not in layer_names(m))
def lenet_table(model):
    return plain_table(model, _LENET_ROWS, with_padding=False)


@table_format("alexnet", detect=lambda m: {"C1", "S2", "C3", "S4", "C7"} <= layer_names(m))
def alexnet_table(model):
    return plain_table(model, _ALEXNET_ROWS, with_padding=True)


def to_text(df: pd.DataFrame, fmt: str = "markdown") -> str:
    """Render a table as ``markdown`` (for people) or ``csv`` (for machines).

    CSV writes the values as they are, numbers plain (``44707176``). A table may
    carry its markdown form in ``df.attrs["markdown"]``: a function that returns
    the table to show instead (numbers with thousands separators, marks such as
    ``*``); the lines of that table's ``attrs["footnotes"]`` follow it, and the
    columns that are numeric in ``df`` stay right-aligned.
    """
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "markdown":
        render = df.attrs.get("markdown")
        if render is None:
            align = ["right" if pd.api.types.is_numeric_dtype(df[c]) or _numeric_text(df[c])
                     else "left" for c in df.columns]
            return df.to_markdown(index=False, colalign=align,
                                  disable_numparse=_text_columns(df))
        shown = render(df)
        align = ["right" if c in df.columns and pd.api.types.is_numeric_dtype(df[c]) else "left"
                 for c in shown.columns]
        text = shown.to_markdown(index=False, colalign=align,
                                 disable_numparse=_text_columns(shown))
        notes = shown.attrs.get("footnotes", ())
        return text + "\n\n" + "\n".join(notes) if notes else text
    raise ValueError(f"format must be 'markdown' or 'csv'. Received: {fmt!r}")


def _text_columns(df) -> list:
    """The positions of ``df``'s text columns: shown as written (``"1.0000"`` stays
    ``1.0000``, where tabulate would read it as the number 1)."""
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
    """``44707176`` -> ``"44,707,176"``; a missing value (``None``, ``NA``) -> ``""``."""
    return "" if pd.isna(value) else f"{value:,}"
