"""U-Net (Ronneberger, Fischer and Brox 2015) for image segmentation.

The architecture is a list of :class:`Level` rows (filters and convolutions per
resolution, :func:`unet_levels`) walked down by the contracting path and back up
by the expanding path. The default is the paper's Fig. 1: 572x572x1 in,
388x388x2 out, unpadded 3x3 convolutions, 31,030,658 parameters. Any zoo
classifier can replace the contracting path (``backbone=``) through
:func:`zoo.feature_extractor`.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from zoo import layers as zoo_layers
from zoo import common
from zoo import weights as zoo_weights
from zoo.input_sizes import (  # noqa: F401 (the size rules' names, here as before)
    UNET_DEFAULT_INPUT_SHAPE as DEFAULT_INPUT_SHAPE, UNET_LEVELS, UNET_MIN_SIZE as MIN_SIZE,
    Level, check_unet_size, output_size, unet_levels, valid_input_sizes)
from zoo.registry import builtin
from zoo.tables import layer_names, owned_by_any, size_str, table_format

__all__ = ["Level", "unet_levels", "UNET_LEVELS", "unet", "valid_input_sizes",
           "output_size", "unet_table"]

OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", None)
UPSAMPLINGS = ("transpose", "bilinear")
PADDINGS = ("valid", "same")


def _convs(x, level: Level, prefix: str, *, padding, batch_norm):
    for j in range(1, level.convs + 1):
        name = f"{prefix}_conv{j}"
        x = layers.Conv2D(level.filters, 3, padding=padding, use_bias=not batch_norm,
                          kernel_initializer="he_normal", name=name)(x)
        if batch_norm:
            x = zoo_layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def _up(x, filters: int, factor: int, prefix: str, upsampling: str):
    """Bring ``x`` up by ``factor`` with ``filters`` channels."""
    if upsampling == "transpose":
        return layers.Conv2DTranspose(filters, factor, strides=factor,
                                      kernel_initializer="he_normal",
                                      name=f"{prefix}_upconv")(x)
    x = layers.UpSampling2D(factor, interpolation="bilinear", name=f"{prefix}_upsample")(x)
    return layers.Conv2D(filters, 1, kernel_initializer="he_normal", name=f"{prefix}_upconv")(x)


def _match(x, target_hw, prefix):
    """Resize ``x`` to ``target_hw`` when a backbone's unpadded layers make the
    sizes differ by a pixel or so."""
    if tuple(x.shape[1:3]) == tuple(target_hw):
        return x
    return layers.Resizing(*target_hw, interpolation="bilinear", name=f"{prefix}_resize")(x)


def _head(x, num_classes, output_activation):
    x = layers.Conv2D(num_classes, 1, kernel_initializer="he_normal", name="output_conv")(x)
    if output_activation is not None:
        x = layers.Activation(output_activation, name=f"output_{output_activation}")(x)
    return x


def _plain_unet(inputs, levels, *, padding, batch_norm, upsampling, dropout):
    skips = []
    x = inputs
    for level in levels[:-1]:
        x = _convs(x, level, f"down{level.index}", padding=padding, batch_norm=batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"down{level.index}_pool")(x)
    x = _convs(x, levels[-1], "bottom", padding=padding, batch_norm=batch_norm)
    if dropout:
        x = layers.Dropout(dropout, name="bottom_dropout")(x)
    for level, skip in zip(reversed(levels[:-1]), reversed(skips)):
        prefix = f"up{level.index}"
        x = _up(x, level.filters, 2, prefix, upsampling)
        crop = (skip.shape[1] - x.shape[1]) // 2
        if crop:
            skip = layers.Cropping2D(crop, name=f"{prefix}_crop")(skip)
        x = layers.Concatenate(name=f"{prefix}_concat")([skip, x])
        x = _convs(x, level, prefix, padding=padding, batch_norm=batch_norm)
    return x


def _after_input(model, layer):
    """A copy of the functional ``model`` (same layers, weights and ``trainable`` flags) with
    ``layer`` between its input and the layers that read it, in one flat graph: the
    backbone's layers stay the U-Net's own layers (feature taps, layer table, weights by
    name), as they are without it."""
    config = model.get_config()
    first = config["input_layers"]
    in_name = first[0] if isinstance(first[0], str) else first[0][0]

    def rewire(item):
        if isinstance(item, dict):
            history = item.get("keras_history")
            if isinstance(history, (list, tuple)) and history and history[0] == in_name:
                item["keras_history"] = [layer.name, 0, 0]
            for value in item.values():
                rewire(value)
        elif isinstance(item, (list, tuple)):
            for value in item:
                rewire(value)

    for entry in config["layers"]:
        if entry["name"] != in_name:
            rewire(entry["inbound_nodes"])
    shape = list(model.inputs[0].shape)
    entry = keras.saving.serialize_keras_object(layer)
    entry.update(name=layer.name, inbound_nodes=[{"args": [{
        "class_name": "__keras_tensor__",
        "config": {"shape": shape, "dtype": model.inputs[0].dtype,
                   "keras_history": [in_name, 0, 0]}}], "kwargs": {}}])
    position = next(i for i, e in enumerate(config["layers"]) if e["name"] == in_name)
    config["layers"].insert(position + 1, entry)
    clone = model.__class__.from_config(config)
    for source in model.layers:
        if source.weights:
            clone.get_layer(source.name).set_weights(source.get_weights())
    return clone


def _backbone_unet(fx, base_filters, *, batch_norm, upsampling, dropout):
    info = fx.feature_info
    x = fx.outputs[-1]
    if dropout:
        x = layers.Dropout(dropout, name="bottom_dropout")(x)
    stride = info[-1]["stride"]
    targets = [(f["stride"], t) for f, t in zip(info[:-1], fx.outputs[:-1])]
    image_hw = tuple(fx.inputs[0].shape[1:3])
    for target_stride, skip in list(reversed(targets)) + [(1, None)]:
        index = int(math.log2(target_stride))
        level = Level(index, base_filters * 2 ** index)
        prefix = f"up{index}"
        x = _up(x, level.filters, stride // target_stride, prefix, upsampling)
        x = _match(x, tuple(skip.shape[1:3]) if skip is not None else image_hw, prefix)
        if skip is not None:
            x = layers.Concatenate(name=f"{prefix}_concat")([skip, x])
        x = _convs(x, level, prefix, padding="same", batch_norm=batch_norm)
        stride = target_stride
    return x


@builtin
def unet(*, input_shape=None, num_classes=2, output_activation="softmax", name=None,
         weights=None, padding=None, batch_norm=False, upsampling="transpose", depth=None,
         base_filters=64, dropout=0.0, backbone=None, backbone_weights=None,
         freeze_backbone=False, imagenet_input=None):
    """U-Net.

    Reference: Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks
    for Biomedical Image Segmentation", MICCAI 2015, Fig. 1. Contracting path:
    per level two unpadded 3x3 convolutions + ReLU (64, 128, 256, 512, 1024
    filters) and a 2x2 max pooling with stride 2; expanding path: a 2x2
    up-convolution halving the filters, concatenation with the centre-cropped
    feature map of the same level, two 3x3 convolutions + ReLU; a final 1x1
    convolution to the classes. The default is that network: 572x572x1 in,
    388x388x2 out, 31,030,658 parameters (31,030,593 with one class). The paper
    adds dropout at the end of the contracting path (``dropout=0.5``).

    With unpadded convolutions, an input size is valid when every 2x2 max
    pooling sees an even size (sizes 188, 204, ..., 556, 572, ... for depth 4:
    see :func:`valid_input_sizes`); the output is smaller than the input. With
    ``padding="same"`` the output has the input's size, which must be a
    multiple of ``2**depth``.

    With ``backbone=NAME`` a zoo classifier is the contracting path: its feature
    maps at strides 2, 4, ..., ``2**depth`` (:func:`zoo.feature_extractor`) are
    the skip connections and the deepest one is the bottom of the U; the
    expanding path has ``base_filters * 2**i`` filters at stride ``2**i``,
    ``same`` padding, and ends at the input's resolution (a bilinear resize
    evens out a pixel where the backbone's unpadded layers make sizes odd).

    Args:
        input_shape: ``(H, W, C)``; default ``(572, 572, 1)``, or the backbone's
            default input (``imagenet_input``'s images' with it).
        num_classes: output channels (classes), default 2.
        output_activation: ``"softmax"``, ``"sigmoid"`` or ``None`` (logits).
        name: model name (default ``"unet"`` or ``"unet_<backbone>"``).
        weights: ``None`` or the path of a weights file for the whole model.
        padding: ``"valid"`` (default, the paper) or ``"same"``; a backbone
            always uses ``"same"``.
        batch_norm: batch normalisation after each 3x3 convolution (which then
            has no bias).
        upsampling: ``"transpose"`` (the paper's 2x2 up-convolution) or
            ``"bilinear"`` (bilinear upsampling, then a 1x1 convolution halving
            the filters).
        depth: number of poolings (default 4); with a backbone, the deepest
            stride used is ``2**depth``, which the backbone must reach at the
            input size (default: the deepest the backbone has, up to 32).
        base_filters: filters of the first level (64).
        dropout: dropout rate at the end of the contracting path (0 = none).
        backbone: name of a zoo classifier to use as the contracting path.
        backbone_weights: the backbone's weights: ``None``, ``"imagenet"`` or a path.
            Keras' ImageNet weights expect their own input preparation, not
            ``zoo.data``'s normalised images: pass ``imagenet_input`` for those
            (``zoo.train.build_for_dataset`` and ``zoo train`` do), or feed what
            Keras' ``preprocess_input`` gives.
        freeze_backbone: make the backbone non-trainable (its batch norms then run
            in inference mode).
        imagenet_input: ``None``, or the :class:`zoo.data.DatasetInfo` of the data
            the model is for (``load_splits(...).info``, 3 channels): a fixed
            :func:`zoo.weights.imagenet_input` layer, built from the dataset's
            statistics, then sits between the input and the backbone and turns
            ``zoo.data``'s input into what the backbone's ImageNet weights expect.
            Only with a backbone that has published ImageNet weights.

    Returns:
        A functional ``keras.Model`` mapping images to per-pixel class scores.

    Raises:
        ValueError: on a bad argument, e.g. an input size that is not valid
            (the message names the nearest valid sizes), or ``imagenet_input``
            without a backbone that has published ImageNet weights.

    Example:
        >>> model = unet()                                 # 572x572x1 -> 388x388x2
        >>> small = unet(input_shape=(64, 64, 3), padding="same", num_classes=3)
        >>> enc = unet(backbone="xception", input_shape=(128, 128, 3))  # doctest: +SKIP
        >>> info = zoo.data.load_splits("folder:cells", channels=3).info  # doctest: +SKIP
        >>> pre = unet(backbone="resnet50", backbone_weights="imagenet",
        ...            input_shape=info.input_shape, imagenet_input=info)  # doctest: +SKIP
    """
    common.check_model_name("unet", name)
    num_classes = common.check_int("unet", "num_classes", num_classes, 1)
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"unet: output_activation must be one of {OUTPUT_ACTIVATIONS}. "
                         f"Received: output_activation={output_activation!r}")
    if num_classes == 1 and output_activation == "softmax":
        raise ValueError("unet: a softmax over num_classes=1 channel is 1 everywhere; for one "
                         "foreground class use output_activation='sigmoid' (or None for "
                         "logits), or num_classes=2 with softmax. Received: num_classes=1, "
                         "output_activation='softmax'")
    if padding not in (None,) + PADDINGS:
        raise ValueError(f"unet: padding must be 'valid' or 'same'. Received: padding={padding!r}")
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"unet: upsampling must be one of {UPSAMPLINGS}. "
                         f"Received: upsampling={upsampling!r}")
    common.check_bool("unet", batch_norm=batch_norm, freeze_backbone=freeze_backbone)
    if depth is not None:
        depth = common.check_int("unet", "depth", depth, 1)
    base_filters = common.check_int("unet", "base_filters", base_filters, 1)
    common.check_rate("unet", "dropout", dropout)
    common.check_weights("unet", weights)

    if backbone is None:
        if backbone_weights is not None or freeze_backbone or imagenet_input is not None:
            raise ValueError("unet: backbone_weights, freeze_backbone and imagenet_input need "
                             f"a backbone. Received: backbone_weights={backbone_weights!r}, "
                             f"freeze_backbone={freeze_backbone!r}"
                             + ("" if imagenet_input is None else ", imagenet_input=(given)"))
        padding = padding or "valid"
        levels = unet_levels(4 if depth is None else depth, base_filters)
        shape = common.resolve_input_shape("unet", input_shape, DEFAULT_INPUT_SHAPE, 1)
        check_unet_size(shape, levels, padding)
        inputs = keras.Input(shape=shape, name="images")
        x = _plain_unet(inputs, levels, padding=padding, batch_norm=batch_norm,
                        upsampling=upsampling, dropout=dropout)
        default_name = "unet"
    else:
        from zoo.features import feature_extractor
        from zoo.registry import model_info
        info = model_info(backbone)  # unknown names raise, listing the known ones
        if info.task != "classification":
            raise ValueError(f"unet: backbone must be a classifier. Received: backbone={backbone!r} "
                             f"({info.task})")
        if padding == "valid":
            raise ValueError("unet: a backbone's expanding path uses padding='same'. "
                             "Received: padding='valid'")
        max_stride = 32 if depth is None else 2 ** depth
        if input_shape is None and hasattr(imagenet_input, "input_shape"):
            input_shape = tuple(imagenet_input.input_shape)   # the dataset's images
        if max_stride > info.min_input_size:
            reason = (f"a feature map at the deepest stride, 2**depth = {max_stride}"
                      if depth is not None else
                      f"a feature map at the default deepest stride, {max_stride}; a smaller "
                      f"depth takes smaller inputs")
        else:
            reason = f"the smallest input of backbone {backbone!r}"
        shape = common.resolve_input_shape(
            "unet", input_shape, info.default_input_shape,
            max(info.min_input_size, max_stride), min_reason=reason)
        common.check_weights(f"unet: backbone {backbone}", backbone_weights, info.weights)
        if imagenet_input is not None:
            if not hasattr(imagenet_input, "input_shape") or not hasattr(imagenet_input, "mean"):
                raise ValueError(f"unet: imagenet_input must be None or the dataset's "
                                 f"zoo.data.DatasetInfo (load_splits(...).info). Received: "
                                 f"{type(imagenet_input).__name__}")
            if tuple(imagenet_input.input_shape) != tuple(shape):
                raise ValueError(f"unet: imagenet_input is the DatasetInfo of images of shape "
                                 f"{tuple(imagenet_input.input_shape)}, the model's input is "
                                 f"{tuple(shape)}. Received: input_shape={input_shape!r}")
            conversion = zoo_weights.imagenet_input(backbone, imagenet_input)
        strides = tuple(2 ** i for i in range(1, int(math.log2(max_stride)) + 1))
        fx = feature_extractor(backbone, strides=strides, input_shape=shape,
                               weights=backbone_weights, trainable=not freeze_backbone)
        if imagenet_input is not None:
            taps = fx.feature_info
            fx = _after_input(fx, conversion)
            fx.feature_info = taps
        if len(fx.outputs) < 2:
            given = ("" if depth is None else
                     f" Allowed: a larger depth, or None (the deepest it has). "
                     f"Received: depth={depth}")
            raise ValueError(f"unet: backbone {backbone!r} gives feature maps at strides "
                             f"{[f['stride'] for f in fx.feature_info]} only (up to 2**depth = "
                             f"{max_stride}); at least two are needed.{given}")
        deepest = fx.feature_info[-1]["stride"]
        if depth is not None and deepest < max_stride:
            raise ValueError(f"unet: depth={depth} takes the backbone's feature maps down to "
                             f"stride 2**depth = {max_stride}; backbone {backbone!r} at "
                             f"{shape[0]}x{shape[1]} reaches stride {deepest} at most. Allowed: "
                             f"depth <= {int(math.log2(deepest))}, or None (the deepest it "
                             f"has). Received: depth={depth}")
        inputs = fx.inputs[0]
        x = _backbone_unet(fx, base_filters, batch_norm=batch_norm, upsampling=upsampling,
                           dropout=dropout)
        default_name = f"unet_{backbone}"
    outputs = _head(x, num_classes, output_activation)
    model = keras.Model(inputs, outputs, name=name or default_name)
    if weights is not None:
        zoo_weights.load_file(model, "unet", weights)
    return model


# ---------------------------------------------------------------------------
# layer_table(unet()): one row per level.

_OP_NAMES = {"MaxPooling2D": "max pool", "Cropping2D": "crop", "Concatenate": "concat",
             "BatchNormalization": "BN", "Resizing": "resize", "Dropout": "dropout"}


def _op(layer) -> str:
    cfg = layer.get_config()
    kind = type(layer).__name__
    if kind == "Conv2D":
        k = cfg["kernel_size"][0]
        return f"conv {k}x{k}"
    if kind == "Conv2DTranspose":
        k = cfg["kernel_size"][0]
        return f"up-conv {k}x{k}"
    if kind == "UpSampling2D":
        return f"{cfg['interpolation']} up x{cfg['size'][0]}"
    if kind == "Activation":
        act = cfg["activation"]
        return {"relu": "ReLU"}.get(act, act)
    if kind == "MaxPooling2D":
        return f"max pool {cfg['pool_size'][0]}x{cfg['pool_size'][1]}"
    if kind == "Dropout":
        return f"dropout {cfg['rate']:g}"
    return _OP_NAMES.get(kind, kind)


def _is_unet(model) -> bool:
    names = layer_names(model)
    return "output_conv" in names and any(n.startswith("up") and n.endswith("_conv1")
                                          for n in names)


def _level_of(name: str):
    """``("down", 2)``, ``("bottom", None)``, ``("up", 3)``, ``("output", None)`` or None."""
    head = name.split("_", 1)[0]
    for path in ("down", "up"):
        if head.startswith(path) and head[len(path):].isdigit():
            return path, int(head[len(path):])
    if head in ("bottom", "output"):
        return head, None
    return None


def _in_data_order(members):
    """The level's layers in the order the data meets them: the crop of the skip
    connection is listed next to the concatenation it feeds (the topological
    order may put it first)."""
    crops = [m for m in members if isinstance(m, layers.Cropping2D)]
    rest = [m for m in members if not isinstance(m, layers.Cropping2D)]
    for i, m in enumerate(rest):
        if isinstance(m, layers.Concatenate):
            return rest[:i] + crops + rest[i:]
    return crops + rest


def _unet_owns(name: str) -> bool:
    """The names the U-Net builder gives: its levels, the conversion in front of an
    ImageNet backbone, and its backbone's (any family's)."""
    return (_level_of(name) is not None or name == zoo_weights.IMAGENET_INPUT_LAYER
            or owned_by_any(name, but="unet"))


@table_format("unet", detect=_is_unet, owns=_unet_owns)
def unet_table(model):
    """U-Net's level table, derived from the built model.

    Columns: level, path (``contracting``, ``bottom``, ``expanding``,
    ``output``; ``backbone`` for a backbone's feature taps), resolution (of the
    level's last feature map), filters, operations (in order) and params.

    Args:
        model: a model built by :func:`unet`.

    Returns:
        A ``pandas.DataFrame``, one row per level and path.
    """
    import pandas as pd
    groups = {}
    backbone = []
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        key = _level_of(layer.name)
        if key is None:
            backbone.append(layer)
        else:
            groups.setdefault(key, []).append(layer)
    records = []
    if backbone:
        # The feature taps are the layers the expanding path reads from.
        decoder = {id(layer) for members in groups.values() for layer in members}
        taps = []
        for members in groups.values():
            for layer in members:
                for node in layer._inbound_nodes:
                    for t in node.input_tensors:
                        src = t._keras_history[0]
                        if id(src) not in decoder and not isinstance(src, layers.InputLayer):
                            taps.append(src)
        order = {id(layer): i for i, layer in enumerate(model.layers)}
        taps = sorted({id(t): t for t in taps}.values(), key=lambda t: order[id(t)])
        from zoo.features import layer_strides
        # The strides on the path, not the size ratio (67 for AlexNet's 1x1 C7_pool at
        # 67x67 made it level 6, stride 64, for 32).
        strides = layer_strides(model)
        image_h = model.inputs[0].shape[1]
        done = 0
        for tap in taps:
            upto = [layer for layer in backbone if order[id(layer)] <= order[id(tap)]]
            params = sum(layer.count_params() for layer in upto) - done
            done += params
            stride = strides.get(tap.name) or 2 ** round(math.log2(image_h /
                                                                   tap.output.shape[1]))
            records.append({"level": int(math.log2(stride)), "path": "backbone",
                            "resolution": size_str(tap.output.shape),
                            "filters": int(tap.output.shape[-1]),
                            "operations": f"feature map {tap.name}", "params": params})
    names = {("down", None): "contracting", ("up", None): "expanding"}
    keys = sorted((k for k in groups if k[0] == "down"), key=lambda k: k[1])
    keys += [k for k in groups if k[0] == "bottom"]
    keys += sorted((k for k in groups if k[0] == "up"), key=lambda k: -k[1])
    keys += [k for k in groups if k[0] == "output"]
    depth = max([k[1] for k in groups if k[0] in ("down", "up")] + [-1]) + 1
    for key in keys:
        members = groups[key]
        path = names.get((key[0], None), key[0])
        level = key[1] if key[1] is not None else (depth if key[0] == "bottom" else "")
        convs = [m for m in members if type(m).__name__ in ("Conv2D", "Conv2DTranspose")]
        spatial = [m for m in members if len(m.output.shape) == 4
                   and type(m).__name__ not in ("MaxPooling2D", "Dropout")]
        last = spatial[-1] if spatial else members[-1]
        records.append({
            "level": level, "path": path, "resolution": size_str(last.output.shape),
            "filters": int(convs[-1].get_config()["filters"]) if convs else "",
            "operations": ", ".join(_op(m) for m in _in_data_order(members)),
            "params": sum(m.count_params() for m in members),
        })
    return pd.DataFrame.from_records(records, columns=["level", "path", "resolution", "filters",
                                                       "operations", "params"])
