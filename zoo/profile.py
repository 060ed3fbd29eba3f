"""Model profiling: parameters, multiply-adds, activation memory and receptive
field, per layer and in total, for any functional Keras model.

:func:`profile` walks the model's functional graph (nested functional or
sequential models are flattened into their layers, named ``outer/inner``) in
the order Keras runs it and returns a :class:`Profile`:

- ``Profile.layers``: a ``pandas.DataFrame``, one row per layer call: name,
  type, output shape, parameters, multiply-adds, other arithmetic, activation
  bytes, receptive field and jump (effective stride) at the layer's output.
- ``Profile.totals``: a :class:`Totals` with trainable and non-trainable
  parameters, multiply-adds (MACs) and FLOPs (2 x MACs), weight bytes by dtype,
  and the activation memory of inference and training.

Counting conventions (all figures are for one batch of ``batch_size`` images;
``batch_size=1`` gives the per-image figures papers print):

- ``macs`` counts multiply-accumulates with learned weights, the papers'
  convention (the ResNet paper's "FLOPs" are these): convolutions
  (``Conv1D/2D/3D`` with ``groups``: ``out_positions * filters * kernel_area *
  in_channels / groups``), ``DepthwiseConv``, ``SeparableConv`` (depthwise +
  pointwise), ``ConvTranspose`` (``in_positions * kernel_area * in_channels *
  filters``) and ``Dense``; biases are additions and are not counted. The zoo's
  custom layers: ``PartialConv2D`` counts only its connected kernels,
  ``Subsampling`` one multiply-add per output (coefficient times window sum
  plus bias), ``RBFOutput`` ``inputs * units`` (squared-distance accumulation),
  ``LocalResponseNormalization`` ``2r + 2`` per element (the squared window
  sum, then ``bias + alpha * sum``).
- ``other_ops`` counts the remaining additions and comparisons, which the
  papers leave out: pooling (``window - 1`` comparisons or additions per
  output, plus one division per output for averages), global pooling, the
  elementwise merges (``Add``, ``Subtract``, ``Multiply``, ``Average``,
  ``Maximum``, ``Minimum``, and ``keras.ops`` arithmetic used directly in a
  functional graph: ``inputs - 1`` per element, plus one division for
  ``Average``), batch normalisation
  (a multiply and an add per element; at deployment it folds into the
  preceding convolution, so it is not a multiply-add of the network),
  ``Rescaling``/``Normalization`` (two per element), interpolating upsampling
  and ``Resizing`` (one per input sample read: 2x2 per output element for
  bilinear, 4x4 bicubic, 6x6 and 10x10 Lanczos, more for a downscaling
  ``antialias=True`` resize; ``"area"`` reads the pixels each output's box
  overlaps) and the custom layers' extra additions.
- Activation functions, reshapes, padding, cropping, concatenation, dropout,
  noise and nearest-neighbour upsampling count zero arithmetic.
- Any other layer counts zero and is named in a ``UserWarning`` (and in
  ``Profile.unknown``), never silently.

Activation memory: every layer output (and the model input) is one tensor of
``batch_size * prod(shape) * itemsize`` bytes (the tensor's dtype, so mixed
precision halves it). Inference memory is the peak of the bytes alive at once
while the graph runs in Keras' execution order: while a layer runs, its inputs,
its output and every tensor still needed later are alive; a tensor is freed
after its last consumer ran (a skip connection keeps its tensor alive across
the branch); model outputs are kept. For a plain chain this is the largest sum
of two consecutive activations. Training memory keeps every activation for
the backward pass: the sum of all tensors. Weights, gradients and optimizer
state are not included (see ``Totals.weight_bytes``).

Receptive field (size of the input window an output unit sees, per spatial
axis) and jump (distance in input pixels between neighbouring output units):
``r_out = r_in + (k_eff - 1) * j_in`` and ``j_out = j_in * s`` for
convolutions and pooling, ``k_eff = dilation * (k - 1) + 1``. Transposed
convolutions and upsampling divide the jump by the stride, and an output unit
of a transposed convolution sees ``ceil(k_eff / s)`` input units
(``r_out = r_in + (ceil(k_eff / s) - 1) * j_in``; Keras dilates only at
stride 1); ``Resizing`` scales the jump by ``in_size / out_size`` (the size of
its centre crop or padded image with ``crop_to_aspect_ratio`` or
``pad_to_aspect_ratio``); an interpolation reading ``t`` input samples per axis
(nearest 1, bilinear 2, bicubic 4, lanczos3 6, lanczos5 10, times ``in / out``
when an ``antialias=True`` resize downscales; ``"area"``: the most pixels an
output's box of ``in / out`` pixels overlaps) adds ``t - 1`` input steps.
Layers that collapse the spatial axes (``Flatten``, global pooling) see their
whole input map (``r_in + (n - 1) * j_in``, jump
``j_in * n``). Layers with several inputs take the largest over their inputs
(paths). The axes are those of the model's input with the most (an image
beside a vector or a sequence; a 1-D path fills the first). Padding is
ignored, so the receptive field can exceed the image. Without upsampling,
resizing or transposed convolutions the rule is exact, as long as paths that
meet are not shifted against each other (a crop that offsets one path widens
the union of their windows past the largest); after them it is an
estimate (rounded up when fractional): nearest copies, strides that line up with
the upsampling factor and kernel taps of weight zero (bilinear at 3x downscaling
reads one pixel) make the field measured on the graph differ by a few pixels,
either way.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import os
import sys
import warnings
from fractions import Fraction
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from zoo import common

__all__ = ["Profile", "Totals", "profile", "model_table", "configure_summary"]

LAYER_COLUMNS = ["name", "type", "output_shape", "params", "macs", "other_ops",
                 "activation_bytes", "live_bytes", "rf_h", "rf_w", "jump_h", "jump_w"]


# ---------------------------------------------------------------------------
# Results

@dataclasses.dataclass(frozen=True)
class Totals:
    """Whole-model figures of a :class:`Profile` (for one batch).

    Attributes:
        batch_size: images per batch the figures are computed for.
        params: all parameters (each shared weight counted once).
        trainable_params: trainable parameters.
        non_trainable_params: non-trainable parameters (e.g. batch-norm statistics).
        macs: multiply-adds (see the module docstring for what counts).
        flops: ``2 * macs``.
        other_ops: additions and comparisons that are not multiply-adds.
        weight_bytes: bytes of the weights, by dtype name (``{"float32": ...}``).
        inference_activation_bytes: peak bytes of activations alive at once
            while running the graph.
        inference_peak_layer: the layer running when that peak is reached.
        training_activation_bytes: bytes of all activations (kept for the
            backward pass).
    """

    batch_size: int
    params: int
    trainable_params: int
    non_trainable_params: int
    macs: int
    flops: int
    other_ops: int
    weight_bytes: dict
    inference_activation_bytes: int
    inference_peak_layer: str
    training_activation_bytes: int

    @property
    def total_weight_bytes(self) -> int:
        """Bytes of all weights, whatever their dtype."""
        return int(sum(self.weight_bytes.values()))

    def as_dict(self) -> dict:
        """The totals as a plain ``dict``."""
        return dataclasses.asdict(self)

    def to_frame(self) -> pd.DataFrame:
        """The totals as a two-column ``DataFrame`` (quantity, value) of plain numbers
        (bytes in bytes), as CSV writes them. Its markdown form
        (:func:`zoo.tables.to_text`) is for people: thousands separators, MACs and
        FLOPs also in G, bytes also in MB, the inference peak layer beside its memory."""
        rows = [
            ("batch size", self.batch_size),
            ("parameters", self.params),
            ("trainable parameters", self.trainable_params),
            ("non-trainable parameters", self.non_trainable_params),
            ("multiply-adds (MACs)", self.macs),
            ("FLOPs (2 x MACs)", self.flops),
            ("other ops (adds, comparisons)", self.other_ops),
        ]
        rows += [(f"weight bytes ({dtype})", n) for dtype, n in sorted(self.weight_bytes.items())]
        rows += [
            ("inference activation memory (bytes)", self.inference_activation_bytes),
            ("inference peak layer", self.inference_peak_layer),
            ("training activation memory (bytes)", self.training_activation_bytes),
        ]
        df = pd.DataFrame(rows, columns=["quantity", "value"])
        df.attrs["markdown"] = lambda _: self._markdown_frame()
        return df

    def _markdown_frame(self) -> pd.DataFrame:
        """The markdown form of :meth:`to_frame`."""
        rows = [
            ("batch size", f"{self.batch_size}"),
            ("parameters", f"{self.params:,}"),
            ("trainable parameters", f"{self.trainable_params:,}"),
            ("non-trainable parameters", f"{self.non_trainable_params:,}"),
            ("multiply-adds (MACs)", f"{self.macs:,} ({self.macs / 1e9:.3f} G)"),
            ("FLOPs (2 x MACs)", f"{self.flops:,} ({self.flops / 1e9:.3f} G)"),
            ("other ops (adds, comparisons)", f"{self.other_ops:,}"),
        ]
        for dtype, n in sorted(self.weight_bytes.items()):
            rows.append((f"weight bytes ({dtype})", f"{n:,} ({n / 1e6:.2f} MB)"))
        inference, training = self.inference_activation_bytes, self.training_activation_bytes
        rows += [
            ("inference activation memory",
             f"{inference:,} B ({inference / 1e6:.2f} MB, peak at {self.inference_peak_layer})"),
            ("training activation memory", f"{training:,} B ({training / 1e6:.2f} MB)"),
        ]
        return pd.DataFrame(rows, columns=["quantity", "value"])


@dataclasses.dataclass(frozen=True)
class Profile:
    """The result of :func:`profile`.

    Attributes:
        name: the model's name.
        layers: one row per layer call, columns :data:`LAYER_COLUMNS`
            (``output_shape`` without the batch axis; ``activation_bytes`` the
            layer's output; ``live_bytes`` all activations alive while the layer
            runs at inference, whose maximum is the inference peak; ``rf_*``
            receptive field and ``jump_*`` effective stride along height and
            width, in input pixels; a volume's last two axes, a sequence's one).
        totals: the whole-model :class:`Totals`.
        unknown: ``(name, type)`` of the layers without a cost rule (counted as zero).
    """

    name: str
    layers: pd.DataFrame
    totals: Totals
    unknown: tuple = ()

    def display_table(self) -> pd.DataFrame:
        """``layers`` formatted for people: shapes as ``HxWxC``, receptive field
        and jump as one number (or ``HxW`` when they differ), bytes in kB."""
        df = self.layers
        out = pd.DataFrame({
            "layer": df["name"], "type": df["type"],
            "output": [_shape_str(s) for s in df["output_shape"]],
            "params": df["params"], "MACs": df["macs"], "other ops": df["other_ops"],
            "activation kB": (df["activation_bytes"] / 1e3).round(1),
            "live kB": (df["live_bytes"] / 1e3).round(1),
            "receptive field": [_pair_str(h, w) for h, w in zip(df["rf_h"], df["rf_w"])],
            "jump": [_pair_str(h, w) for h, w in zip(df["jump_h"], df["jump_w"])],
        })
        return out

    def to_text(self, fmt: str = "markdown") -> str:
        """The per-layer table followed by the totals, as ``markdown`` or ``csv``
        (plain numbers; markdown writes the totals with thousands separators and units).

        Args:
            fmt: ``"markdown"`` or ``"csv"``.

        Returns:
            The text, ending with a newline.

        Raises:
            ValueError: another ``fmt``.
        """
        from zoo.tables import to_text
        if fmt not in ("markdown", "csv"):
            raise ValueError(f"format must be 'markdown' or 'csv'. Received: {fmt!r}")
        return (to_text(self.display_table(), fmt).rstrip() + "\n\n"
                + to_text(self.totals.to_frame(), fmt).rstrip() + "\n")

    def plot(self, path) -> str:
        """Draw multiply-adds and activation memory per layer to a PNG file.

        The file is written to a temporary name beside ``path`` and renamed, so
        it is never seen half-written.

        Args:
            path: destination ``.png`` path; its directory must exist.

        Returns:
            ``path``.

        Raises:
            TypeError: if ``path`` is no path (was os.fspath's message).
            ValueError: if ``path`` does not end in ``.png``.
            FileNotFoundError: if the directory does not exist.
            NotADirectoryError: if the directory is a file.
            IsADirectoryError: if ``path`` is a directory.
            PermissionError: if the directory is not writable.
        """
        path = common.check_path("plot", "path", path, "a .png file")
        if not path.lower().endswith(".png"):
            raise ValueError(f"plot: the file name must end in .png. Received: {path!r}")
        check_plot_path(path, "plot")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        df = self.layers
        x = np.arange(len(df))
        fig = Figure(figsize=(max(8.0, min(40.0, 0.12 * len(df))), 7), layout="constrained")
        FigureCanvasAgg(fig)   # render with Agg, whatever pyplot's backend is
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        ax1.bar(x, df["macs"] / 1e6, color="tab:blue", label="multiply-adds")
        ax1.bar(x, df["other_ops"] / 1e6, bottom=df["macs"] / 1e6, color="tab:orange",
                label="other ops")
        ax1.set_ylabel("millions of operations")
        ax1.set_title(f"{self.name}: {self.totals.macs / 1e9:.3f} GMACs, batch "
                      f"{self.totals.batch_size}")
        ax1.legend(loc="upper right")
        ax2.bar(x, df["activation_bytes"] / 1e6, color="tab:green", label="layer output")
        ax2.step(x, df["live_bytes"] / 1e6, where="mid", color="tab:red",
                 label="alive at inference")
        ax2.set_ylabel("activation MB")
        ax2.legend(loc="upper right")
        ax2.set_title(f"inference peak {self.totals.inference_activation_bytes / 1e6:.2f} MB, "
                      f"training {self.totals.training_activation_bytes / 1e6:.2f} MB")
        step = max(1, len(df) // 40)
        ax2.set_xticks(x[::step])
        ax2.set_xticklabels(df["name"].iloc[::step], rotation=90, fontsize=6)
        ax2.set_xlabel("layer (execution order)")
        return common.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def check_plot_path(path, what: str) -> None:
    """``path`` can take the plot: its directory exists and is writable, and it is not a
    directory itself (checked before the work, not found out when the file is renamed)."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isfile(directory):   # "notes.txt/p.png"
        raise NotADirectoryError(f"{what}: {directory!r} is a file, not a directory")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{what}: directory does not exist: {directory!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what}: {path!r} is a directory; name a .png file")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{what}: directory is not writable: {directory!r}")


# ---------------------------------------------------------------------------
# Graph walking

@dataclasses.dataclass
class _Call:
    name: str
    op: object
    inputs: list      # tensor keys
    outputs: list     # tensor keys
    in_specs: list    # KerasTensors
    out_specs: list
    first_call: bool


def _inner_function(op):
    """The functional graph inside a nested model, or ``None``."""
    import keras
    if not isinstance(op, keras.Model):
        return None
    if hasattr(op, "_nodes_by_depth") and hasattr(op, "inputs"):
        return op
    functional = getattr(op, "_functional", None)  # a built Sequential
    if functional is not None and hasattr(functional, "_nodes_by_depth"):
        return functional
    return None


def _execution_order(function):
    """Nodes of ``function`` in the order Keras runs them (deepest first)."""
    for depth in sorted(function._nodes_by_depth, reverse=True):
        yield from function._nodes_by_depth[depth]


def _flatten_graph(model):
    """``(calls, input_keys, output_keys, specs)``: the model's layer calls in
    execution order, with nested models expanded; tensors are identified by
    keys, and ``specs[key]`` is the KerasTensor describing the tensor."""
    function = _inner_function(model)
    if function is None:
        raise ValueError(f"profile: {getattr(model, 'name', model)!r} has no functional graph "
                         f"(a subclassed or unbuilt model). Build it with keras.Input "
                         f"or the functional API. Received: {type(model).__name__}")
    specs: dict = {}
    calls: list = []
    seen_ops: set = set()
    counter = [0]

    def new_key(tensor):
        counter[0] += 1
        specs[counter[0]] = tensor
        return counter[0]

    def walk(fn, scope, input_keys):
        local = {id(t): k for t, k in zip(fn.inputs, input_keys)}
        for node in _execution_order(fn):
            op = node.operation
            if op is None or node.is_input:
                continue
            in_keys = [local[id(t)] for t in node.input_tensors]
            inner = _inner_function(op)
            if inner is not None:
                out_keys = walk(inner, f"{scope}{op.name}/", in_keys)
                for t, k in zip(node.output_tensors, out_keys):
                    local[id(t)] = k
                continue
            out_keys = [new_key(t) for t in node.output_tensors]
            for t, k in zip(node.output_tensors, out_keys):
                local[id(t)] = k
            first = id(op) not in seen_ops
            seen_ops.add(id(op))
            name = f"{scope}{op.name}"
            ncalls = sum(1 for c in calls if c.op is op)
            if ncalls:
                name = f"{name}#{ncalls + 1}"
            calls.append(_Call(name, op, in_keys, out_keys, list(node.input_tensors),
                               list(node.output_tensors), first))
        return [local[id(t)] for t in fn.outputs]

    input_keys = []
    for t in function.inputs:
        key = new_key(t)
        input_keys.append(key)
        history = getattr(t, "_keras_history", None)
        op = history[0] if history else None
        calls.append(_Call(getattr(op, "name", "input"), op, [], [key], [], [t], True))
    output_keys = walk(function, "", input_keys)
    return calls, input_keys, output_keys, specs


# ---------------------------------------------------------------------------
# Costs

def _shape(spec) -> tuple:
    return tuple(spec.shape[1:])


def _size(spec) -> int:
    return int(np.prod(_shape(spec), dtype=np.int64)) if _shape(spec) else 1


def _itemsize(dtype) -> int:
    name = getattr(dtype, "name", dtype)
    name = str(name)
    if name == "bfloat16":
        return 2
    try:
        return np.dtype(name).itemsize
    except TypeError:
        raise ValueError(f"profile: cannot size tensors of dtype {name!r}") from None


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") != "channels_first"


def _spatial(spec, layer=None) -> tuple:
    shape = _shape(spec)
    if layer is not None and not _channels_last(layer):
        return shape[1:]
    return shape[:-1]


def _channels(spec, layer=None) -> int:
    shape = _shape(spec)
    return int(shape[0] if layer is not None and not _channels_last(layer) else shape[-1])


def _prod(values) -> int:
    return int(np.prod(values, dtype=np.int64)) if len(values) else 1


def _tuple(value, n) -> tuple:
    if isinstance(value, int):
        return (value,) * n
    return tuple(int(v) for v in value)


def _layer_classes():
    """``{kind: tuple of classes}`` of the layers with a cost rule."""
    from keras import layers as L
    from zoo.layers import LocalResponseNormalization, PartialConv2D, RBFOutput, Subsampling

    def get(*names):
        return tuple(getattr(L, n) for n in names if hasattr(L, n))

    return {
        "separable": get("SeparableConv1D", "SeparableConv2D"),
        "depthwise": get("DepthwiseConv1D", "DepthwiseConv2D"),
        "transpose": get("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"),
        "conv": get("Conv1D", "Conv2D", "Conv3D"),
        "dense": get("Dense"),
        "maxpool": get("MaxPooling1D", "MaxPooling2D", "MaxPooling3D"),
        "avgpool": get("AveragePooling1D", "AveragePooling2D", "AveragePooling3D"),
        "globalmax": get("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D"),
        "globalavg": get("GlobalAveragePooling1D", "GlobalAveragePooling2D",
                         "GlobalAveragePooling3D"),
        "batchnorm": get("BatchNormalization"),
        "merge": get("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"),
        "affine": get("Rescaling", "Normalization"),
        "upsample": get("UpSampling1D", "UpSampling2D", "UpSampling3D"),
        "resize": get("Resizing"),
        "flatten": get("Flatten"),
        "free": get("InputLayer", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "PReLU",
                    "Identity", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
                    "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                    "ActivityRegularization", "Reshape", "Permute", "RepeatVector",
                    "Concatenate", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
                    "Cropping1D", "Cropping2D", "Cropping3D"),
        "subsampling": (Subsampling,),
        "partialconv": (PartialConv2D,),
        "rbf": (RBFOutput,),
        "lrn": (LocalResponseNormalization,),
    }


# Operations of keras.ops that appear as nodes when a functional graph uses
# them directly (``x + y``): elementwise, one op per output element.
_ELEMENTWISE_OPS = {"Add", "Subtract", "Multiply", "Divide", "Maximum", "Minimum", "TrueDivide"}


def _kind(op, classes) -> Optional[str]:
    if op is None:
        return "free"
    for kind, cls in classes.items():
        if cls and isinstance(op, cls):
            return kind
    import keras
    if not isinstance(op, keras.layers.Layer) and type(op).__name__ in _ELEMENTWISE_OPS:
        return "elementwise_op"
    return None


def _cost(kind, op, ins, outs) -> tuple:
    """``(macs, other_ops)`` of one call, per image."""
    out = outs[0] if outs else None
    if kind in ("conv", "depthwise", "separable", "transpose"):
        i, o = ins[0], out
        n = len(_spatial(i, op))
        k = _prod(_tuple(op.kernel_size, n))
        c_in = _channels(i, op)
        out_pos = _prod(_spatial(o, op))
        if kind == "conv":
            groups = int(getattr(op, "groups", 1) or 1)
            return out_pos * op.filters * k * (c_in // groups), 0
        if kind == "depthwise":
            return out_pos * c_in * op.depth_multiplier * k, 0
        if kind == "separable":
            mid = c_in * op.depth_multiplier
            return out_pos * mid * k + out_pos * mid * op.filters, 0
        return _prod(_spatial(i, op)) * c_in * k * op.filters, 0
    if kind == "dense":
        return _size(out) * int(_shape(ins[0])[-1]), 0
    if kind in ("maxpool", "avgpool"):
        n = len(_spatial(out, op))
        window = _prod(_tuple(op.pool_size, n))
        extra = _size(out) if kind == "avgpool" else 0
        return 0, _size(out) * (window - 1) + extra
    if kind in ("globalmax", "globalavg"):
        extra = _channels(ins[0], op) if kind == "globalavg" else 0
        return 0, _size(ins[0]) - _channels(ins[0], op) + extra
    if kind == "batchnorm":
        return 0, 2 * _size(out)
    if kind in ("merge", "elementwise_op"):
        import keras
        division = _size(out) if isinstance(op, keras.layers.Average) else 0   # as pooling's
        return 0, _size(out) * max(1, len(ins) - 1) + division
    if kind == "affine":
        return 0, 2 * _size(out)
    if kind == "subsampling":
        return _size(out), _size(out) * (op.pool_size ** 2 - 1)
    if kind == "partialconv":
        pairs = sum(len(c) for c in op.connections)
        return _prod(_spatial(out)) * op.kernel_size ** 2 * pairs, 0
    if kind == "rbf":
        dim = int(_shape(ins[0])[-1])
        positions = _size(out) // op.units
        return positions * dim * op.units, positions * dim * op.units
    if kind == "lrn":
        return _size(out) * (2 * op.depth_radius + 2), 2 * _size(out)
    if kind in ("upsample", "resize"):
        interpolation = getattr(op, "interpolation", "nearest")
        spatial_out = _spatial(out, op)
        spatial_in = _resized_region(op, _spatial(ins[0], op), spatial_out)
        if interpolation == "nearest":
            return 0, 0   # a copy
        if interpolation == "area":   # each output its own box: the pixels each one overlaps
            channels = _size(out) // _prod(spatial_out)
            return 0, channels * _prod([sum(_area_overlaps(int(i), int(o)))
                                        for i, o in zip(spatial_in, spatial_out)])
        return 0, _prod(_interpolation_taps(op, spatial_in, spatial_out)) * _size(out)
    return 0, 0   # free layers, flatten


#: Input samples per axis one output of ``tf.image.resize`` reads, by interpolation
#: (``"area"``: see :func:`_area_overlaps`).
_INTERPOLATION_TAPS = {"nearest": 1, "bilinear": 2, "bicubic": 4, "lanczos3": 6,
                       "lanczos5": 10}


def _resized_region(op, spatial_in, spatial_out) -> tuple:
    """``(height, width, ...)`` of the region a ``Resizing`` layer interpolates from: the
    input, or with ``crop_to_aspect_ratio`` its centre crop and with
    ``pad_to_aspect_ratio`` the padded image of the output's aspect ratio (as Keras
    computes them), so a 16x8 input resized to 4x4 steps by 2 or 4 on both axes."""
    spatial_in = tuple(int(v) for v in spatial_in)
    crop, padded = (getattr(op, "crop_to_aspect_ratio", False),
                    getattr(op, "pad_to_aspect_ratio", False))
    if not (crop or padded) or len(spatial_in) < 2:
        return spatial_in
    (h, w), (th, tw) = spatial_in[:2], (int(v) for v in spatial_out[:2])
    if crop:
        region = (max(min(h, w * th // tw), 1), max(min(w, h * tw // th), 1))
    else:
        region = (max(h, w * th // tw), max(w, h * tw // th))
    return region + spatial_in[2:]


def _area_overlaps(size_in: int, size_out: int) -> list:
    """Input pixels each output of an ``"area"`` resize averages along one axis: output
    ``k`` covers ``[k * in / out, (k + 1) * in / out)`` of the input, every pixel that box
    overlaps (``in / out`` of them at an integer factor; one more where a box of a
    non-integer factor straddles a pixel edge, so 2 when upscaling 8 -> 12)."""
    return [-(-(k + 1) * size_in // size_out) - k * size_in // size_out
            for k in range(size_out)]


def _interpolation_taps(op, spatial_in, spatial_out) -> tuple:
    """Input samples per spatial axis that one output of an upsampling or resizing layer
    reads (the most over its outputs): its kernel's taps, widened by the factor
    ``in / out`` of a downscaling ``antialias=True`` resize (whose kernel spans the input
    pixels an output covers); an ``"area"`` output reads the pixels its box overlaps."""
    interpolation = getattr(op, "interpolation", "nearest")
    if interpolation == "area":
        return tuple(max(_area_overlaps(int(i), int(o)))
                     for i, o in zip(spatial_in, spatial_out))
    taps = _INTERPOLATION_TAPS.get(interpolation, 2)
    widened = interpolation != "nearest" and getattr(op, "antialias", False)
    return tuple(math.ceil(taps * max(Fraction(int(i), int(o)), 1)) if widened else taps
                 for i, o in zip(spatial_in, spatial_out))


# ---------------------------------------------------------------------------
# Receptive field

def _rf_window(r, j, kernel, stride, dilation=None):
    dilation = dilation or (1,) * len(kernel)
    r = tuple(ri + (d * (k - 1)) * ji for ri, ji, k, d in zip(r, j, kernel, dilation))
    j = tuple(ji * s for ji, s in zip(j, stride))
    return r, j


def _receptive_field(kind, op, ins, outs, rfs, n_axes):
    """``(r, j)`` at the output of one call from its inputs' ``rfs``."""
    if not rfs:
        return (1,) * n_axes, (Fraction(1),) * n_axes
    r = tuple(max(x[0][a] for x in rfs) for a in range(n_axes))
    j = tuple(max(x[1][a] for x in rfs) for a in range(n_axes))
    spatial_in = _spatial(ins[0], op) if ins else ()
    has_spatial = 1 <= len(spatial_in) <= n_axes   # a 1-D path beside images: its first axis

    def pad(values, fill):
        values = tuple(values)[:n_axes]
        return values + (fill,) * (n_axes - len(values))

    spatial_in = pad(spatial_in, 1)

    if kind in ("conv", "depthwise", "separable") and has_spatial:
        kernel = pad(_tuple(op.kernel_size, n_axes), 1)
        stride = pad(_tuple(op.strides, n_axes), 1)
        dilation = pad(_tuple(op.dilation_rate, n_axes), 1)
        return _rf_window(r, j, kernel, stride, dilation)
    if kind in ("maxpool", "avgpool") and has_spatial:
        kernel = pad(_tuple(op.pool_size, n_axes), 1)
        stride = pad(_tuple(op.strides or op.pool_size, n_axes), 1)
        return _rf_window(r, j, kernel, stride)
    if kind == "subsampling" and has_spatial:
        p = (op.pool_size,) * n_axes
        return _rf_window(r, j, p, p)
    if kind == "partialconv" and has_spatial:
        return _rf_window(r, j, (op.kernel_size,) * n_axes, (1,) * n_axes)
    if kind == "transpose" and has_spatial:
        kernel = pad(_tuple(op.kernel_size, n_axes), 1)
        stride = pad(_tuple(op.strides, n_axes), 1)
        dilation = pad(_tuple(getattr(op, "dilation_rate", 1), n_axes), 1)
        kernel = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))   # Keras: d > 1 only at s 1
        r = tuple(ri + (math.ceil(k / s) - 1) * ji for ri, ji, k, s in zip(r, j, kernel, stride))
        return r, tuple(ji / s for ji, s in zip(j, stride))
    if kind in ("upsample", "resize") and has_spatial:
        spatial_out = pad(_spatial(outs[0], op), 1)
        spatial_in = _resized_region(op, spatial_in, spatial_out)
        taps = _interpolation_taps(op, spatial_in, spatial_out)
        r = tuple(ri + (t - 1) * ji for ri, ji, t in zip(r, j, taps))
        return r, tuple(ji * Fraction(i, o) for ji, i, o in zip(j, spatial_in, spatial_out))
    if kind in ("flatten", "globalmax", "globalavg") and has_spatial:
        return _rf_window(r, j, spatial_in, spatial_in)   # padded: 1 on a missing axis
    return r, j


# ---------------------------------------------------------------------------
# The profile

def profile(model, batch_size: int = 1) -> Profile:
    """Per-layer and total parameters, multiply-adds, activation memory and
    receptive field of a functional Keras model.

    Counting conventions are in the :mod:`zoo.profile` module docstring: MACs
    are the multiply-adds of convolutions, dense layers and the zoo's custom
    layers (the convention of the ResNet paper's FLOPs); pooling, merges and
    batch norm are counted separately as ``other_ops``; inference memory is
    the peak of the activations alive at once, training memory the sum of all.

    Args:
        model: a functional ``keras.Model`` (or a built ``Sequential``) with a
            fixed input size; nested models are flattened into their layers.
        batch_size: images per batch, an integer (Python's or NumPy's); every count and
            byte figure scales with it.

    Returns:
        A :class:`Profile` with ``.layers`` (a ``pandas.DataFrame``) and ``.totals``.

    Raises:
        TypeError: if ``model`` is no ``keras.Model`` (a model name, say).
        ValueError: if ``batch_size`` is not a positive integer, the model has no
            functional graph, or a tensor has an unknown (``None``) dimension
            besides the batch axis.

    Warns:
        UserWarning: naming the layers no cost rule knows (counted as zero).

    Example:
        >>> import zoo
        >>> p = zoo.profile(zoo.lenet5())
        >>> int(p.layers.set_index("name").loc["C5", "rf_h"])
        32
        >>> p.totals.macs
        328096
    """
    import keras
    if not isinstance(model, keras.Model):
        # (a name was "'lenet5' has no functional graph (a subclassed or unbuilt model)")
        hint = (f" (zoo.get_model({model!r}) for a registered model)"
                if isinstance(model, str) else "")
        raise TypeError(f"profile: model must be a keras.Model{hint}. "
                        f"Received: {common.received_text(model)}")
    if not common.is_integer(batch_size) or batch_size < 1:
        raise ValueError(f"profile: batch_size must be a positive integer. "
                         f"Received: batch_size={batch_size!r}")
    batch_size = int(batch_size)
    calls, input_keys, output_keys, specs = _flatten_graph(model)
    for key, spec in specs.items():
        if any(d is None for d in _shape(spec)):
            raise ValueError(f"profile: {model.name!r} has a tensor of unknown size "
                             f"{tuple(spec.shape)}; build the model with a fixed input_shape "
                             f"(H, W, C).")
    n_axes = max([1] + [len(_shape(specs[k])) - 1 for k in input_keys])   # the largest input's
    classes = _layer_classes()

    live = _live_bytes(calls, output_keys, specs, batch_size)
    peak = max(live)
    peak_at = calls[live.index(peak)].name
    h_axis, w_axis = max(0, n_axes - 2), n_axes - 1   # of a volume (D, H, W): the last two
    rf = {}
    records = []
    unknown = []
    for call in calls:
        kind = _kind(call.op, classes)
        if kind is None:
            unknown.append((call.name, type(call.op).__name__))
        macs, other = _cost(kind, call.op, call.in_specs, call.out_specs) if kind else (0, 0)
        if call.inputs:
            r, j = _receptive_field(kind, call.op, call.in_specs, call.out_specs,
                                    [rf[k] for k in call.inputs], n_axes)
        else:
            r, j = (1,) * n_axes, (Fraction(1),) * n_axes
        for k in call.outputs:
            rf[k] = (r, j)
        params = call.op.count_params() if (call.first_call and hasattr(call.op, "count_params")
                                            and call.op.built) else 0
        shapes = [_shape(s) for s in call.out_specs]
        records.append({
            "name": call.name,
            "type": type(call.op).__name__ if call.op is not None else "InputLayer",
            "output_shape": shapes[0] if len(shapes) == 1 else tuple(shapes),
            "params": int(params),
            "macs": int(macs) * batch_size,
            "other_ops": int(other) * batch_size,
            "activation_bytes": sum(_bytes(specs[k], batch_size) for k in call.outputs),
            "live_bytes": live[len(records)],
            # a fractional field (after upsampling) rounds up: 1.5 pixels are 2 pixels read
            "rf_h": math.ceil(r[h_axis]), "rf_w": math.ceil(r[w_axis]),
            "jump_h": float(j[h_axis]), "jump_w": float(j[w_axis]),
        })
    layers = pd.DataFrame.from_records(records, columns=LAYER_COLUMNS)
    training = sum(_bytes(s, batch_size) for s in specs.values())

    trainable = _count(model.trainable_weights)
    non_trainable = _count(model.non_trainable_weights)
    weight_bytes: dict = {}
    for w in _unique(model.weights):
        dtype = str(getattr(w.dtype, "name", w.dtype))
        weight_bytes[dtype] = weight_bytes.get(dtype, 0) + _prod(tuple(w.shape)) * _itemsize(dtype)
    macs = int(layers["macs"].sum())
    totals = Totals(batch_size=batch_size, params=trainable + non_trainable,
                    trainable_params=trainable, non_trainable_params=non_trainable,
                    macs=macs, flops=2 * macs, other_ops=int(layers["other_ops"].sum()),
                    weight_bytes=weight_bytes, inference_activation_bytes=int(peak),
                    inference_peak_layer=peak_at, training_activation_bytes=int(training))
    if unknown:
        listed = ", ".join(f"{n} ({t})" for n, t in unknown)
        warnings.warn(f"profile({model.name!r}): no cost rule for {len(unknown)} layer(s), "
                      f"counted as zero multiply-adds: {listed}", UserWarning, stacklevel=2)
    return Profile(name=model.name, layers=layers, totals=totals, unknown=tuple(unknown))


def _bytes(spec, batch_size) -> int:
    return batch_size * _size(spec) * _itemsize(spec.dtype)


def _unique(variables):
    seen, out = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def _count(variables) -> int:
    return int(sum(_prod(tuple(v.shape)) for v in _unique(variables)))


def _live_bytes(calls, output_keys, specs, batch_size) -> list:
    """Bytes alive while each of ``calls`` runs, in order.

    While a call runs, every live tensor (computed, still needed later or a
    model output) and the call's outputs are in memory; afterwards its inputs
    whose last consumer it was are freed.
    """
    remaining: dict = {}
    for call in calls:
        for k in set(call.inputs):
            remaining[k] = remaining.get(k, 0) + 1
    keep = set(output_keys)
    alive: dict = {}
    live = []
    for call in calls:
        new = [k for k in call.outputs if k not in alive]
        live.append(sum(alive.values()) + sum(_bytes(specs[k], batch_size) for k in new))
        for k in new:
            alive[k] = _bytes(specs[k], batch_size)
        for k in set(call.inputs):
            remaining[k] -= 1
            if remaining[k] == 0 and k not in keep:
                alive.pop(k, None)
        for k in new:
            if remaining.get(k, 0) == 0 and k not in keep:
                alive.pop(k, None)
    return live


# ---------------------------------------------------------------------------
# Formatting helpers

def _shape_str(shape) -> str:
    from zoo.tables import _dims   # (the layer tables' HxWxC)
    if shape and isinstance(shape[0], tuple):
        return ", ".join(_shape_str(s) for s in shape)
    return _dims(shape)


def _pair_str(h, w) -> str:
    fh, fw = f"{h:g}", f"{w:g}"
    return fh if fh == fw else f"{fh}x{fw}"


# ---------------------------------------------------------------------------
# The model table

def _gmacs(macs: int) -> float:
    """Multiply-adds in units of 10^9: three decimals, or four significant
    digits below 1 (LeNet-5 has 0.0003281)."""
    g = macs / 1e9
    return float(f"{g:.4g}") if g < 1 else round(g, 3)


def model_table(names: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Cost of registered models at their default input, batch 1.

    Args:
        names: registered model names (default: every registered model).

    Returns:
        A ``DataFrame`` with columns ``name``, ``input`` (``HxWxC``), ``params``,
        ``GMACs`` (multiply-adds / 10^9, three decimals or four significant digits
        below 1), ``inference MB`` and ``training MB``
        (activation memory, 10^6 bytes, batch 1).

    Raises:
        ValueError: for an unknown model name.
        TypeError: ``names`` is a string or not a sequence.

    Example:
        >>> table = model_table(["lenet5"])
        >>> float(table.loc[0, "GMACs"]), int(table.loc[0, "params"])
        (0.0003281, 60840)
    """
    import keras
    from zoo.registry import get_model, list_models, model_info
    if names is not None and (isinstance(names, (str, bytes))
                              or not isinstance(names, collections.abc.Iterable)):
        raise TypeError(f"model_table: names must be a list of registered model names "
                        f"(a list for one too, ['lenet5']) or None for every model. Received: "
                        f"names={names!r}")
    names = list_models() if names is None else list(names)
    for name in names:
        model_info(name)  # fails early on an unknown name
    records = []
    for name in names:
        info = model_info(name)
        model = get_model(name)
        p = profile(model)
        records.append({
            "name": name,
            "input": "x".join(str(d) for d in info.default_input_shape),
            "params": p.totals.params,
            "GMACs": _gmacs(p.totals.macs),
            "inference MB": round(p.totals.inference_activation_bytes / 1e6, 2),
            "training MB": round(p.totals.training_activation_bytes / 1e6, 2),
        })
        del model
        keras.backend.clear_session()
    return pd.DataFrame.from_records(records, columns=["name", "input", "params", "GMACs",
                                                       "inference MB", "training MB"])


# ---------------------------------------------------------------------------
# CLI: zoo summary

def configure_summary(parser):
    """``zoo summary NAME|FILE [--input-shape H,W,C] [--batch-size N]
    [--format markdown|csv] [--plot FILE.png]``: the per-layer profile and totals of a
    registered model, or of a saved model (a ``.keras`` file or a run directory, e.g. a
    zoo backbone with a head of its own).

    Args:
        parser: the command's ``argparse.ArgumentParser``; its options are added.

    Returns:
        ``run(args) -> int``: runs the command on the parsed arguments and returns its
        exit code.
    """
    from zoo.cli import add_format_option
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=1, metavar="N",
                        help="images per batch; the counts and activation memory are for one "
                        "batch (default: 1)")
    add_format_option(parser)
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="draw multiply-adds and activation memory per layer")

    def run(args):
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be a positive integer. "
                             f"Received: {args.batch_size}")
        if args.plot is not None:
            if not args.plot.lower().endswith(".png"):
                raise ValueError(f"--plot must name a .png file. Received: {args.plot!r}")
            check_plot_path(args.plot, "--plot")
        model = summary_model(args.name, args.input_shape)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = profile(model, batch_size=args.batch_size)
        if args.plot:   # first: a plot that cannot be written fails with nothing printed
            result.plot(args.plot)
        print(result.to_text(args.format).rstrip())
        for w in caught:
            print(f"zoo: warning: {w.message}", file=sys.stderr)
        if args.plot:
            print(f"plot written to {args.plot}", file=sys.stderr)
        return 0

    return run


def add_model_arguments(parser) -> None:
    """``NAME`` and ``--input-shape H,W,C``: what :func:`summary_model` reads, for ``zoo
    summary`` and ``zoo table``."""
    from zoo.cli import parse_shape
    parser.add_argument("name", help="registered model name (see `zoo list`), or a .keras "
                        "file or run directory (a path: ending in .keras or containing a /)")
    parser.add_argument("--input-shape", type=parse_shape, default=None, metavar="H,W,C",
                        help="input size (default: the model's default input)")


def summary_model(name: str, input_shape=None):
    """The model ``zoo summary NAME`` profiles: a saved model when ``name`` is a path
    (ends in ``.keras`` or contains a path separator: ``runs/pets``, ``./model.keras``),
    else the registered model ``name`` (at ``input_shape``, default its paper's)."""
    if name.endswith(".keras") or os.sep in name or (os.altsep and os.altsep in name):
        if input_shape and os.path.exists(name):   # else named as missing (it was
            # called a saved model with its own input size)
            raise ValueError(f"--input-shape applies to a registered model name; the saved "
                             f"model {name!r} has its own input size")
        return common.load_model(name, compile=False)
    from zoo.registry import get_model, list_models
    if name not in list_models() and os.path.exists(name):
        raise ValueError(f"{name!r} is not a registered model name (see zoo list); to read the "
                         f"run directory or .keras file {name!r}, give it as a path: "
                         f"{os.path.join('.', name)}")
    return get_model(name, **({"input_shape": input_shape} if input_shape else {}))


common.make_module_callable(__name__, profile)
