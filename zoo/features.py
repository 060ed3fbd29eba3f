"""Feature extraction: a classifier's feature maps at strides 2, 4, 8, 16, 32.

:func:`feature_extractor` turns any registered classifier (or any functional
model with a fixed input size) into a model whose outputs are its feature maps
at the requested strides, the taps an encoder-decoder such as U-Net needs. The
taps are found generically from the graph and the output shapes, not from
per-family lists:

- the stride of a layer is the product of the strides of the convolutions and
  poolings on its path from the input (zero padding and cropping count 1; another
  layer without ``strides``, or one that enlarges its input, counts its own size
  ratio rounded to a power of two). It
  does not depend on the input size: unpadded convolutions shrink the maps by
  more than their strides (Xception's 299x299 input gives 147, 74, 37, 19 and
  10; Inception-v3's 150x150 gives mixed7 at 7x7, stride 16, and mixed10 at
  3x3, stride 32, where the size ratio, 50, would round to 64);
- for each stride the tap is the last layer with that stride that is a *block
  output*: a layer every path from the input to the output (the main one, for a
  model with auxiliary classifiers) goes through (so
  not a tensor inside a residual or inception block), preferring activations,
  merges (add, concatenate) and layers with a built-in activation over
  pooling or batch-norm layers. Zero-padding layers are never taps (their maps
  are larger than the stride's grid, with a border of zeros).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import keras

from zoo.common import is_integer, main_output_index, model_outputs

__all__ = ["feature_extractor", "feature_info", "feature_layers", "layer_strides"]

DEFAULT_STRIDES = (2, 4, 8, 16, 32)


def _spatial(shape) -> Optional[tuple]:
    """``(H, W)`` of a 4-D ``(batch, H, W, C)`` shape, else ``None``."""
    if shape is None or len(shape) != 4 or shape[1] is None or shape[2] is None:
        return None
    return int(shape[1]), int(shape[2])


def _power_of_two(ratio: float) -> float:
    """``ratio`` rounded to the nearest power of two (below 1 for upsampling)."""
    return 2.0 ** round(math.log2(ratio))


def _size_step(input_hw, output_hw) -> float:
    return _power_of_two(max(input_hw[0] / output_hw[0], input_hw[1] / output_hw[1]))


def _own_step(layer, input_hw, output_hw) -> float:
    """The factor by which ``layer`` multiplies the stride: 1 for zero padding and
    cropping, its ``strides`` when it does not enlarge its input (a convolution or
    pooling, padded or not), else its size ratio rounded to a power of two
    (upsampling, custom layers)."""
    if isinstance(layer, (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)):
        # The same grid with a border added or cut. (Its size ratio, 14 / 20 = 0.7 for
        # ResNet's conv1_pad on a 14x14 input, rounded to 0.5 and halved every stride after.)
        return 1.0
    strides = getattr(layer, "strides", None)
    if strides is not None and output_hw[0] <= input_hw[0] and output_hw[1] <= input_hw[1]:
        values = tuple(strides) if isinstance(strides, (tuple, list)) else (strides,)
        try:
            return float(max(int(v) for v in values))
        except (TypeError, ValueError):
            pass
    return _size_step(input_hw, output_hw)


def _graph_strides(model) -> dict:
    """``{id(layer): stride}`` for the layers of a functional or ``Sequential`` ``model``
    whose output is a fixed-size feature map, walking the graph from the input (see the module
    docstring). A layer fed by no such layer gets the size ratio to the input."""
    input_hw = _spatial(model.inputs[0].shape)
    strides, sizes = {}, {}
    if input_hw is not None:   # a Sequential model does not list its InputLayer
        source = model.inputs[0]._keras_history[0]
        strides[id(source)], sizes[id(source)] = 1.0, input_hw
    for layer in model.layers:
        try:
            hw = _spatial(layer.output.shape)
        except (AttributeError, ValueError):   # no output, or several (a shared layer)
            continue
        if hw is None:
            continue
        parents = [p for p in _parents(layer) if id(p) in strides]
        if isinstance(layer, keras.layers.InputLayer):
            stride = 1.0
        elif parents:
            parent = max(parents, key=lambda p: strides[id(p)])
            stride = strides[id(parent)] * _own_step(layer, sizes[id(parent)], hw)
        elif input_hw is not None:
            stride = _size_step(input_hw, hw)
        else:
            continue
        strides[id(layer)], sizes[id(layer)] = stride, hw
    return strides


def layer_strides(model) -> dict:
    """``{layer name: stride}`` for the layers of a functional ``model`` whose output is a
    fixed-size feature map: the product of the strides on the path from the input (see the
    module docstring), not the size ratio, which unpadded layers make larger."""
    by_id = _graph_strides(model)
    return {layer.name: by_id[id(layer)] for layer in model.layers if id(layer) in by_id}


def _as_stride(value: float):
    """An integer stride (``None`` for a fractional one, after upsampling)."""
    return int(value) if value >= 1 and float(value).is_integer() else None


def _parents(layer) -> list:
    parents = []
    for node in layer._inbound_nodes:
        for t in node.input_tensors:
            parents.append(t._keras_history[0])
    return parents


def _main_path(model) -> list:
    """``model.layers`` that its main output depends on: all of them, but for a model with
    auxiliary classifiers (``googlenet(aux_logits=True)``), whose branches to the auxiliary
    outputs would make every layer after inception 4a one that a path jumps over."""
    if len(model.outputs) == 1:
        return list(model.layers)
    try:
        index = main_output_index(model, "feature_extractor takes")
    except ValueError:   # several outputs, none of them the main one
        return list(model.layers)
    kept, stack = set(), [model.outputs[index]._keras_history[0]]
    while stack:
        layer = stack.pop()
        if id(layer) not in kept:
            kept.add(id(layer))
            stack.extend(_parents(layer))
    return [layer for layer in model.layers if id(layer) in kept]


def _preferred(layer) -> bool:
    """Activations, merges and layers with a non-linear activation of their own."""
    from keras import layers as L
    if isinstance(layer, (L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.PReLU, L.Add,
                          L.Concatenate, L.Multiply, L.Average, L.Maximum)):
        return True
    act = layer.get_config().get("activation") if hasattr(layer, "get_config") else None
    if isinstance(act, dict):
        act = act.get("config", {}).get("name", act.get("class_name"))
    return act not in (None, "linear")


def _check_strides(strides) -> tuple:
    try:
        values = tuple(strides)
    except TypeError:
        values = None
    if not values or not all(is_integer(s) and s >= 1 for s in values):
        raise ValueError("feature_extractor: strides must be a non-empty sequence of positive "
                         f"integers such as (2, 4, 8, 16, 32). Received: strides={strides!r}")
    return tuple(sorted({int(s) for s in values}))


def feature_layers(model, strides: Sequence[int] = DEFAULT_STRIDES) -> list:
    """The tap of each available stride in a functional model.

    Args:
        model: a functional ``keras.Model`` with one image input of fixed size.
        strides: the strides wanted.

    Returns:
        A list of dicts ``{"name", "stride", "channels", "shape"}`` in increasing
        stride, one per requested stride the model reaches (``shape`` is
        ``(H, W, C)``).

    Raises:
        ValueError: if ``model`` is no ``keras.Model`` with a graph (a functional or a
            built ``Sequential`` model), has no single fixed-size image input, or
            reaches none of the strides.
    """
    strides = _check_strides(strides)
    model_outputs(model, "feature_extractor takes")   # a keras.Model with a graph
    if len(model.inputs) != 1 or _spatial(model.inputs[0].shape) is None:
        raise ValueError("feature_extractor: the model needs one image input of fixed height "
                         f"and width. Received inputs: {[tuple(t.shape) for t in model.inputs]}")
    input_hw = _spatial(model.inputs[0].shape)
    by_id = _graph_strides(model)
    path = _main_path(model)
    order = {id(layer): i for i, layer in enumerate(path)}
    # A layer is a block output when no edge of the graph jumps over its position
    # in topological order (then every input-to-output path goes through it).
    reach = [0] * len(path)  # furthest later position an earlier layer feeds
    for i, layer in enumerate(path):
        for parent in _parents(layer):
            j = order.get(id(parent))
            if j is not None:
                reach[j] = max(reach[j], i)
    furthest = -1
    candidates, nested = {}, []
    for i, layer in enumerate(path):
        bypassed = furthest > i
        furthest = max(furthest, reach[i])
        # The input is no tap (a Sequential model does not list its InputLayer: its
        # first layer is a layer of the network).
        if bypassed or isinstance(layer, (keras.layers.InputLayer, keras.layers.ZeroPadding2D)):
            continue
        s = _as_stride(by_id.get(id(layer), 0.5))
        if isinstance(layer, keras.Model):
            # No tap: its output tensor belongs to its own graph, not to this model's
            # (a backbone nested under a head, called on the head's input).
            if s is not None:
                nested.append((layer.name, s))
            continue
        if s not in strides:
            continue
        # Keep the last preferred layer of each stride; a non-preferred one only
        # while no preferred layer has been seen for that stride.
        best = candidates.get(s)
        if best is None or _preferred(layer) or not _preferred(best):
            candidates[s] = layer
    inside = [(name, s) for name, s in nested
              if any(t <= s and t not in candidates for t in strides)]
    if not candidates or inside:
        names = [n for n, _ in inside] or \
            [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
        hint = (f"; its feature maps are inside the nested model {names[0]!r}: pass "
                f"model.get_layer({names[0]!r})" if names else "")
        found = f"reaches none of the strides {strides}" if not candidates else \
            f"reaches strides {sorted(candidates)} of {strides} outside nested models"
        raise ValueError(f"feature_extractor: {model.name!r} {found} at input size "
                         f"{input_hw[0]}x{input_hw[1]}{hint}.")
    return [{"name": layer.name, "stride": s, "channels": int(layer.output.shape[-1]),
             "shape": tuple(int(d) for d in layer.output.shape[1:])}
            for s, layer in sorted(candidates.items())]


def feature_info(model) -> list:
    """Name, stride, channels and shape of each output of a feature extractor.

    Works on a model returned by :func:`feature_extractor` and also after it was
    saved and loaded again (the ``feature_info`` attribute is not saved): the
    strides are recomputed from the graph (an output the graph walk does not
    reach gets its size ratio to the input, rounded to a power of two).

    Args:
        model: a feature extractor (or any model whose outputs are fixed-size 4-D
            feature maps).

    Returns:
        A list of dicts ``{"name", "stride", "channels", "shape"}``, one per output.

    Raises:
        ValueError: ``model`` is no ``keras.Model`` with a graph, or an input or output
            that is not a fixed-size feature map.
    """
    model_outputs(model, "feature_info takes")   # a keras.Model with a graph
    input_hw = _spatial(model.inputs[0].shape)
    layer_strides = _graph_strides(model) if input_hw is not None else {}
    info = []
    for t in model.outputs:
        hw = _spatial(t.shape)
        if hw is None or input_hw is None:
            raise ValueError(f"feature_info: output {t.name!r} of {model.name!r} is not a "
                             f"fixed-size feature map: {tuple(t.shape)}")
        layer = t._keras_history[0]
        stride = layer_strides.get(id(layer)) or _size_step(input_hw, hw)
        info.append({"name": layer.name, "stride": max(1, int(stride)),
                     "channels": int(t.shape[-1]), "shape": tuple(int(d) for d in t.shape[1:])})
    return info


def feature_extractor(model_or_name, strides: Sequence[int] = DEFAULT_STRIDES, input_shape=None,
                      weights=None, trainable: Optional[bool] = None, **kwargs) -> keras.Model:
    """A model returning a backbone's feature maps at strides 2, 4, 8, 16, 32.

    For each requested stride the backbone reaches, the output is the last
    block output at that stride (see the module docstring), e.g. for
    ``xception`` at 299x299: ``block1_conv2_act`` (147x147x64),
    ``block2_add`` (74x74x128), ``block3_add`` (37x37x256), ``block12_add``
    (19x19x728) and ``block14_sepconv2_act`` (10x10x2048).

    Args:
        model_or_name: a registered classifier's name (built with
            ``include_top=False``) or a functional ``keras.Model`` with a fixed
            input size.
        strides: the strides wanted; those the backbone does not reach are left out.
        input_shape: ``(H, W, C)`` for a named backbone (default: its paper's).
        weights: weights of a named backbone (``None``, ``"imagenet"`` or a path).
        trainable: ``False`` freezes the backbone (batch norm then runs in
            inference mode), ``True`` makes all its layers trainable; it sets
            ``trainable`` on the backbone's layers, which a passed-in model shares
            with the extractor. ``None`` (the default) leaves the flags as they are:
            a named backbone is trainable, a passed-in model keeps its frozen and
            trainable layers (e.g. a backbone being fine-tuned).
        **kwargs: further options of a named backbone's builder.

    Returns:
        A functional ``keras.Model`` named ``<backbone>_features`` with one output
        per stride found, in increasing stride. Its ``feature_info`` attribute
        lists ``{"name", "stride", "channels", "shape"}`` per output (also
        available as :func:`feature_info` on a reloaded model).

    Raises:
        ValueError: for an unknown or non-classifier name, options given with a
            built model, a ``trainable`` other than ``None``/``True``/``False``, or a
            backbone that reaches none of the strides.
        TypeError: an option a named backbone's builder does not take (the message lists
            the ones it does).

    Example:
        >>> fx = feature_extractor("xception", input_shape=(128, 128, 3))
        >>> [f["stride"] for f in fx.feature_info]
        [2, 4, 8, 16, 32]
    """
    from zoo.registry import get_model, model_info
    strides = _check_strides(strides)
    if trainable is not None and not isinstance(trainable, bool):
        raise ValueError("feature_extractor: trainable must be None (leave the layers as they "
                         f"are), True or False. Received: trainable={trainable!r}")
    if isinstance(model_or_name, str):
        info = model_info(model_or_name)
        if info.task != "classification":
            raise ValueError(f"feature_extractor: {model_or_name!r} is a {info.task} model; "
                             "a classifier backbone is needed.")
        for key in ("include_top", "pooling"):
            if key in kwargs:
                raise ValueError(f"feature_extractor: {key} is set by the feature extractor. "
                                 f"Received: {key}={kwargs[key]!r}")
        # (through get_model: an option the builder does not take is named with the ones
        # it does, not "resnet18() got an unexpected keyword argument 'foo'")
        backbone = get_model(model_or_name, input_shape=input_shape, weights=weights,
                             include_top=False, **kwargs)
    elif isinstance(model_or_name, keras.Model):
        given = {k: v for k, v in dict(input_shape=input_shape, weights=weights, **kwargs).items()
                 if v is not None}
        if given:
            raise ValueError("feature_extractor: input_shape, weights and builder options apply "
                             f"to a model name only. Received with a model: {sorted(given)}")
        backbone = model_or_name
    else:
        raise ValueError("feature_extractor: model_or_name must be a registered model name or a "
                         f"keras.Model. Received: {model_or_name!r}")
    taps = feature_layers(backbone, strides)
    if trainable is not None:
        backbone.trainable = trainable
    outputs = [backbone.get_layer(t["name"]).output for t in taps]
    model = keras.Model(backbone.inputs, outputs, name=f"{backbone.name}_features")
    model.feature_info = taps
    return model
