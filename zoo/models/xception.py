"""Xception (Chollet 2017): entry, middle and exit flows as a module table.

The architecture is :data:`XCEPTION_MODULES`, one row per module of the
paper's Fig. 5, walked by one builder. The result is exactly the network of
``keras.applications.Xception`` (22,910,480 parameters, 22,855,952 trainable at
299x299x3 with 1,000 classes), with the same layer order, so the ImageNet weight
files Keras publishes load into it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras
from keras import layers

from zoo import layers as zoo_layers
from zoo import common, weights as zoo_weights
from zoo.blocks import check_head_options
from zoo.registry import builtin
from zoo.tables import layer_names, table_format

__all__ = ["XceptionModule", "XCEPTION_MODULES", "xception", "xception_table"]


@dataclasses.dataclass(frozen=True)
class XceptionModule:
    """One row of the Xception module table (Chollet 2017, Fig. 5).

    Attributes:
        flow: ``"entry"``, ``"middle"`` or ``"exit"``.
        conv: ``"conv"`` (plain 3x3 convolutions) or ``"sepconv"`` (3x3
            depthwise separable convolutions).
        filters: output channels of each convolution, in order; its length is
            the number of convolutions in the module.
        shortcut: ``None`` (no residual connection), ``"identity"`` or
            ``"conv"`` (1x1 convolution with stride 2 + batch norm, matching the
            module's pooling).
        repeats: how many times the module is stacked.
        strides: stride of each convolution (``None``: all 1).
        padding: padding of the convolutions.
        pool: end the main path with a 3x3/2 max pooling (``same`` padding).
        activation: ``"pre"`` puts a ReLU before each convolution (skipped when
            the module's input is already a ReLU output), ``"post"`` puts it
            after each batch norm.
    """

    flow: str
    conv: str
    filters: tuple
    shortcut: Optional[str] = None
    repeats: int = 1
    strides: Optional[tuple] = None
    padding: str = "same"
    pool: bool = False
    activation: str = "pre"

    def conv_strides(self) -> tuple:
        """The stride of each convolution: :attr:`strides`, or all 1."""
        return self.strides or (1,) * len(self.filters)


# Chollet 2017, Fig. 5. Every convolution is 3x3 and followed by batch norm.
XCEPTION_MODULES = (
    XceptionModule("entry", "conv", (32, 64), strides=(2, 1), padding="valid",
                   activation="post"),
    XceptionModule("entry", "sepconv", (128, 128), shortcut="conv", pool=True),
    XceptionModule("entry", "sepconv", (256, 256), shortcut="conv", pool=True),
    XceptionModule("entry", "sepconv", (728, 728), shortcut="conv", pool=True),
    XceptionModule("middle", "sepconv", (728, 728, 728), shortcut="identity", repeats=8),
    XceptionModule("exit", "sepconv", (728, 1024), shortcut="conv", pool=True),
    XceptionModule("exit", "sepconv", (1536, 2048), activation="post"),
)

# Batch-norm settings of the reference (Keras' defaults).
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99

_WEIGHTS_ORIGIN = zoo_weights.KERAS_WEIGHTS_BASE + "xception/"
# Keras' published files (keras/src/applications/xception.py), keyed by include_top.
WEIGHT_FILES = {
    True: zoo_weights.WeightFile("xception_weights_tf_dim_ordering_tf_kernels.h5",
                                 _WEIGHTS_ORIGIN, "0a58e3b7378bc2990ea3b43d5981f1f6"),
    False: zoo_weights.WeightFile("xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                  _WEIGHTS_ORIGIN, "b0042744bf5b25fce3cb969f33bebb97"),
}


def spatial_ops(modules=XCEPTION_MODULES):
    """``(kernel, stride, padding)`` of the operations along the main path."""
    ops = []
    for module in modules:
        for _ in range(module.repeats):
            ops += [(3, s, module.padding) for s in module.conv_strides()]
            if module.pool:
                ops.append((3, 2, "same"))
    return ops


MIN_SIZE = common.min_input_size(spatial_ops())


def _module(x, module: XceptionModule, prefix: str, activated: bool):
    """Apply one module to ``x``; layers are named ``{prefix}_...``.

    Returns the output tensor and whether it is a ReLU output.
    """
    kind = "conv" if module.conv == "conv" else "sepconv"
    inputs = x
    for j, (filters, stride) in enumerate(zip(module.filters, module.conv_strides()), 1):
        name = f"{prefix}_{kind}{j}"
        if module.activation == "pre" and not (j == 1 and activated):
            x = layers.Activation("relu", name=f"{name}_act")(x)
        if module.conv == "conv":
            x = layers.Conv2D(filters, 3, strides=stride, padding=module.padding,
                              use_bias=False, name=name)(x)
        else:
            x = zoo_layers.SeparableConv2D(filters, 3, strides=stride, padding=module.padding,
                                           use_bias=False, name=name)(x)
        x = zoo_layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                      name=f"{name}_bn")(x)
        if module.activation == "post":
            x = layers.Activation("relu", name=f"{name}_act")(x)
    if module.pool:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{prefix}_pool")(x)
    if module.shortcut == "conv":
        shortcut = layers.Conv2D(module.filters[-1], 1, strides=2 if module.pool else 1,
                                 padding="same", use_bias=False,
                                 name=f"{prefix}_shortcut")(inputs)
        shortcut = zoo_layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                             name=f"{prefix}_shortcut_bn")(shortcut)
    elif module.shortcut == "identity":
        shortcut = inputs
    else:
        return x, module.activation == "post"
    # The order [main path, shortcut] fixes the layer order the weight files follow.
    return layers.Add(name=f"{prefix}_add")([x, shortcut]), False


def build_modules(x, modules=XCEPTION_MODULES):
    """Walk the module table from tensor ``x``; blocks are numbered ``block1``,
    ``block2``, ... over all repeats, as in the published weight files."""
    block, activated = 0, False
    for module in modules:
        for _ in range(module.repeats):
            block += 1
            x, activated = _module(x, module, f"block{block}", activated)
    return x


@builtin
def xception(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
             classifier_activation="softmax", weights=None, name=None):
    """Xception.

    Reference: Chollet, "Xception: Deep Learning with Depthwise Separable
    Convolutions", CVPR 2017, Fig. 5: an entry flow (two 3x3 convolutions, then
    three residual modules of two separable convolutions and a 3x3/2 max pool
    with a 1x1/2 convolution shortcut), a middle flow (eight modules of three
    ReLU + separable convolution with identity shortcuts) and an exit flow (a
    residual module of separable 728 and 1024, then separable 1536 and 2048 with
    ReLU, global average pooling and the classifier). Every convolution is
    followed by batch normalisation. 22,910,480 parameters (22,855,952
    trainable) at 299x299x3 with 1,000 classes, the network of
    ``keras.applications.Xception``, whose ImageNet weight files it loads.

    The smallest input the layers accept is 7x7 (the two unpadded stem
    convolutions leave 1x1; everything after is ``same``-padded); Keras asks for
    at least 71x71, which leaves a 3x3 final feature map.

    Args:
        input_shape: ``(H, W, C)``; default ``(299, 299, 3)``; ``H, W >= 7``.
        num_classes: number of output classes (1,000 with ImageNet weights and
            ``include_top=True``).
        include_top: include global average pooling and the dense classifier;
            otherwise the model ends at the 2,048-channel feature map
            (10x10 at 299x299).
        pooling: with ``include_top=False``: ``None``, ``"avg"`` or ``"max"``.
        classifier_activation: output activation, ``None`` for logits.
        weights: ``None`` (random), ``"imagenet"`` (Keras' published file,
            fetched and cached in ``~/.keras/models``; needs 3 input channels) or
            the path of a weights file (e.g. Keras' HDF5 file).
        name: model name (default ``"xception"``).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on a bad argument, e.g. an input smaller than 7x7, or
            ``"imagenet"`` weights with ``num_classes != 1000`` or a channel
            count other than 3; or when the weights cannot be fetched or do not
            fit.

    Example:
        >>> model = xception(input_shape=(128, 128, 3), num_classes=5)
        >>> backbone = xception(include_top=False, weights="imagenet")  # doctest: +SKIP
    """
    num_classes = check_head_options(
        "xception", num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation)
    shape = common.check_classifier_args(
        "xception", input_shape=input_shape, default_shape=(299, 299, 3), min_size=MIN_SIZE,
        num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation, weights=weights, name=name,
        published_weights=("imagenet",))
    weights = zoo_weights.resolve("xception", weights, shape, include_top, num_classes,
                                  WEIGHT_FILES)
    inputs = keras.Input(shape=shape, name="images")
    x = build_modules(inputs)
    x = common.classifier_head(x, num_classes=num_classes, include_top=include_top,
                               pooling=pooling, classifier_activation=classifier_activation)
    model = keras.Model(inputs, x, name=name or "xception")
    zoo_weights.load(model, "xception", weights, include_top, WEIGHT_FILES)
    return model


def _is_xception(model) -> bool:
    names = layer_names(model)
    # A U-Net with an Xception encoder carries these names too; it has its own format.
    return {"block1_conv1", "block2_sepconv1", "block2_add"} <= names \
        and "output_conv" not in names


def _block_numbers(names) -> list:
    blocks = set()
    for n in names:
        if n.startswith("block") and "_" in n:
            head = n.split("_", 1)[0][len("block"):]
            if head.isdigit():
                blocks.add(int(head))
    return sorted(blocks)


@table_format("xception", detect=_is_xception,
              owns=r"images|avg_pool|max_pool|predictions|block\d+_\w+")
def xception_table(model):
    """Xception's module table (Fig. 5), derived from the built model.

    One row per module: flow, module, output size, filters of its
    convolutions, separable convolutions, shortcut and parameters; a final
    ``top`` row for the classifier when present. The middle flow is the run of
    modules with identity shortcuts; the entry flow precedes it.

    Args:
        model: a model built by :func:`xception`.

    Returns:
        A ``pandas.DataFrame``, one row per module (plus ``top``).
    """
    import pandas as pd
    from zoo.tables import size_str
    records = []
    flow = "entry"
    for b in _block_numbers(layer_names(model)):
        prefix = f"block{b}_"
        members = [layer for layer in model.layers if layer.name.startswith(prefix)]
        convs = [layer for layer in members
                 if isinstance(layer, (layers.Conv2D, layers.SeparableConv2D))
                 and not layer.name.endswith("_shortcut")]
        seps = [layer for layer in convs if isinstance(layer, layers.SeparableConv2D)]
        names = {layer.name for layer in members}
        if f"block{b}_shortcut" in names:
            sc = model.get_layer(f"block{b}_shortcut")
            stride = sc.get_config()["strides"][0]
            shortcut = f"conv 1x1/{stride}"
        elif f"block{b}_add" in names:
            shortcut = "identity"
        else:
            shortcut = ""
        if shortcut == "identity":
            flow = "middle"
        elif flow == "middle":
            flow = "exit"
        last = members[-1]
        for layer in members:  # the block's output: its add, else its last layer in order
            if layer.name == f"block{b}_add":
                last = layer
        records.append({
            "flow": flow, "module": f"block{b}", "output size": size_str(last.output.shape),
            "filters": ", ".join(str(c.get_config()["filters"]) for c in convs),
            "separable convs": len(seps), "shortcut": shortcut,
            "params": sum(layer.count_params() for layer in members),
        })
    top = [layer for layer in model.layers
           if layer.name in ("avg_pool", "max_pool", "predictions")]
    if top:
        records.append({
            "flow": "exit", "module": "top", "output size": str(top[-1].output.shape[-1]),
            "filters": "", "separable convs": 0, "shortcut": "",
            "params": sum(layer.count_params() for layer in top),
        })
    return pd.DataFrame.from_records(records, columns=[
        "flow", "module", "output size", "filters", "separable convs", "shortcut", "params"])
