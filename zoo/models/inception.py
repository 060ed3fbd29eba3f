"""The Inception family: GoogLeNet (Inception v1) and Inception-v3.

Both architectures are written once as data and built by one builder each:

- :data:`GOOGLENET_TABLE_1` is the paper's Table 1 (Szegedy et al. 2014): one
  row per convolution, pooling or inception module, with the module columns
  ``#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj``.
- :data:`INCEPTION_V3_STEM` and :data:`INCEPTION_V3_MODULES` describe the
  network ``keras.applications.InceptionV3`` builds (Szegedy et al. 2015, in
  the TF-slim layout): a stem of convolutions and pools, then eleven modules
  ``mixed0`` .. ``mixed10`` of the module types in :data:`INCEPTION_V3_MODULE_TYPES`.

``zoo.layer_table`` reads the tables back from built models (layer names,
configs and output shapes), in the formats registered at the end of this module.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

import keras
import pandas as pd
from keras import layers

from zoo import layers as zoo_layers
from zoo import common
from zoo import weights as zoo_weights
from zoo.blocks import check_head_options
from zoo.input_sizes import GOOGLENET_AUX_POOL, GOOGLENET_AUX_STRIDE, GOOGLENET_MIN_REASON
from zoo.registry import builtin
from zoo.tables import layer_names, layer_params, table_format

__all__ = ["googlenet", "inception_v3", "googlenet_table", "inception_v3_table",
           "GOOGLENET_TABLE_1", "INCEPTION_V3_STEM", "INCEPTION_V3_MODULES",
           "INCEPTION_V3_MODULE_TYPES"]


# ---------------------------------------------------------------------------
# GoogLeNet (Inception v1)

class Module(NamedTuple):
    """One row of GoogLeNet's Table 1.

    Attributes:
        name: layer-name prefix of the row (``conv2``, ``inception_3a``, ``pool3``).
        kind: ``"conv"``, ``"maxpool"``, ``"inception"`` or ``"avgpool"``.
        patch: kernel/window size (square).
        stride: stride.
        filters: output channels of a convolution row.
        reduce: channels of the 1x1 reduction in front of a convolution row.
        branches: inception columns ``(#1x1, #3x3 reduce, #3x3, #5x5 reduce,
            #5x5, pool proj)``.
    """

    name: str
    kind: str
    patch: Optional[int] = None
    stride: Optional[int] = None
    filters: Optional[int] = None
    reduce: Optional[int] = None
    branches: tuple = ()


def _inception(name, *branches):
    return Module(name, "inception", branches=branches)


# Szegedy et al. 2014, Table 1. Max pools and convolutions use "same" padding,
# which gives the table's sizes (224 -> 112 -> 56 -> 28 -> 14 -> 7).
GOOGLENET_TABLE_1 = (
    Module("conv1", "conv", 7, 2, filters=64),
    Module("pool1", "maxpool", 3, 2),
    Module("conv2", "conv", 3, 1, filters=192, reduce=64),
    Module("pool2", "maxpool", 3, 2),
    #                         #1x1 #3x3r #3x3 #5x5r #5x5 proj
    _inception("inception_3a", 64, 96, 128, 16, 32, 32),
    _inception("inception_3b", 128, 128, 192, 32, 96, 64),
    Module("pool3", "maxpool", 3, 2),
    _inception("inception_4a", 192, 96, 208, 16, 48, 64),
    _inception("inception_4b", 160, 112, 224, 24, 64, 64),
    _inception("inception_4c", 128, 128, 256, 24, 64, 64),
    _inception("inception_4d", 112, 144, 288, 32, 64, 64),
    _inception("inception_4e", 256, 160, 320, 32, 128, 128),
    Module("pool4", "maxpool", 3, 2),
    _inception("inception_5a", 256, 160, 320, 32, 128, 128),
    _inception("inception_5b", 384, 192, 384, 48, 128, 128),
    # The paper's 7x7/1 average pool over the 7x7 map is a global average pool
    # (built as one, so that other input sizes work); then dropout and linear.
    Module("avg_pool", "avgpool"),
)

# The two auxiliary classifiers (paper, section 5): (name, module they sit on).
GOOGLENET_AUX = (("aux1", "inception_4a"), ("aux2", "inception_4d"))
# 5x5/3 average pool, 1x1 conv 128, FC 1024, 70% dropout, FC to the classes.
AUX_POOL, AUX_STRIDE = GOOGLENET_AUX_POOL, GOOGLENET_AUX_STRIDE
AUX_CONV, AUX_FC, AUX_DROPOUT = 128, 1024, 0.7


def _googlenet_ops(table, stop_after=None):
    """``(kernel, stride, padding)`` along GoogLeNet's main path, for
    :func:`zoo.common.min_input_size`."""
    ops = []
    for m in table:
        if m.kind == "conv":
            if m.reduce:
                ops.append((1, 1, "same"))
            ops.append((m.patch, m.stride, "same"))
        elif m.kind == "maxpool":
            ops.append((m.patch, m.stride, "same"))
        elif m.kind == "inception":
            ops.extend([(1, 1, "same"), (3, 1, "same"), (5, 1, "same")])
        if m.name == stop_after:
            break
    return ops


def _googlenet_min_size(table=GOOGLENET_TABLE_1, aux=GOOGLENET_AUX):
    # The main path is padded throughout and ends in a global pool; the size
    # limit comes from the auxiliary classifiers' unpadded 5x5/3 pooling. The
    # same limit applies with and without them: it is one network, trained
    # with its auxiliary classifiers and used without.
    sizes = [common.min_input_size(_googlenet_ops(table))]
    for _, source in aux:
        sizes.append(common.min_input_size(
            _googlenet_ops(table, stop_after=source) + [(AUX_POOL, AUX_STRIDE, "valid")]))
    return max(sizes)


GOOGLENET_MIN_SIZE = _googlenet_min_size()


def _conv_relu(x, filters, kernel, *, strides=1, batch_norm, name):
    """Convolution (+ batch norm) + ReLU: ``name``, ``name_bn``, ``name_relu``."""
    x = zoo_layers.Conv2D(filters, kernel, strides=strides, padding="same",
                          use_bias=not batch_norm, name=name)(x)
    if batch_norm:
        x = zoo_layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _inception_module(x, module, *, batch_norm):
    n1x1, n3x3r, n3x3, n5x5r, n5x5, pool_proj = module.branches
    p = module.name
    b1 = _conv_relu(x, n1x1, 1, batch_norm=batch_norm, name=f"{p}_1x1")
    b2 = _conv_relu(x, n3x3r, 1, batch_norm=batch_norm, name=f"{p}_3x3_reduce")
    b2 = _conv_relu(b2, n3x3, 3, batch_norm=batch_norm, name=f"{p}_3x3")
    b3 = _conv_relu(x, n5x5r, 1, batch_norm=batch_norm, name=f"{p}_5x5_reduce")
    b3 = _conv_relu(b3, n5x5, 5, batch_norm=batch_norm, name=f"{p}_5x5")
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{p}_pool")(x)
    b4 = _conv_relu(b4, pool_proj, 1, batch_norm=batch_norm, name=f"{p}_pool_proj")
    return layers.Concatenate(axis=-1, name=p)([b1, b2, b3, b4])


def _aux_classifier(x, name, *, num_classes, classifier_activation, batch_norm):
    x = layers.AveragePooling2D(AUX_POOL, strides=AUX_STRIDE, padding="valid",
                                name=f"{name}_avg_pool")(x)
    x = _conv_relu(x, AUX_CONV, 1, batch_norm=batch_norm, name=f"{name}_conv")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(AUX_FC, activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(AUX_DROPOUT, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, activation=classifier_activation,
                        name=f"{name}_predictions")(x)


@builtin
def googlenet(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
              classifier_activation="softmax", weights=None, name=None,
              aux_logits=False, batch_norm=False, dropout=0.4,
              local_response_normalization=False):
    """GoogLeNet (Inception v1), built from the paper's Table 1.

    Reference: Szegedy et al., "Going deeper with convolutions", arXiv 2014
    (CVPR 2015). The default is the paper's network: biases and ReLU on every
    convolution, no batch norm, no auxiliary classifiers, 40% dropout before
    the linear layer; 6,998,552 parameters at 224x224x3 with 1,000 classes.
    Every convolution and pooling is padded ("same"), so the map sizes are the
    table's (112, 56, 28, 14, 7); the final 7x7/1 average pool is a global
    average pool, which lets other input sizes through.

    Layers are named after the table: ``conv1``, ``pool1``, ``conv2_3x3_reduce``,
    ``conv2_3x3``, ``pool2``, ``inception_3a_1x1``, ``inception_3a_3x3_reduce``,
    ``inception_3a_3x3``, ``inception_3a_5x5_reduce``, ``inception_3a_5x5``,
    ``inception_3a_pool``, ``inception_3a_pool_proj``, ``inception_3a`` (the
    concatenation), ..., ``avg_pool``, ``dropout``, ``predictions``; each
    convolution is followed by ``<name>_relu`` (and ``<name>_bn`` before it
    with ``batch_norm=True``).

    Args:
        input_shape: ``(H, W, C)``; default ``(224, 224, 3)``; any channel count;
            ``H, W >= 65`` (the auxiliary classifiers' unpadded 5x5/3 pooling on
            inception 4a/4d needs a 5x5 map there).
        num_classes: number of output classes.
        include_top: end with average pool, dropout and the linear classifier;
            otherwise the model ends at inception 5b (7x7x1024 at 224x224).
        pooling: with ``include_top=False``: ``None``, ``"avg"`` or ``"max"``.
        classifier_activation: output activation (``None`` for logits); also used
            by the auxiliary classifiers.
        weights: ``None`` or the path of a weights file (no published weights).
        name: model name (default ``"googlenet"``).
        aux_logits: add the two auxiliary classifiers on inception 4a and 4d
            (5x5/3 average pool, 1x1 conv 128, FC 1024 + ReLU, 70% dropout, FC to
            the classes). The model then has three outputs ``[main, aux1, aux2]``;
            the paper weights the auxiliary losses by 0.3 during training.
        batch_norm: batch normalisation after every convolution (convolutions
            then have no bias).
        dropout: dropout rate before the linear layer (0 leaves it out).
        local_response_normalization: add the paper's Figure 3 local response
            normalisation after ``pool1`` and after ``conv2`` (not in Table 1).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on a bad argument, e.g. an input smaller than 65x65 or
            ``aux_logits=True`` with ``include_top=False``.

    Example:
        >>> model = googlenet(input_shape=(96, 96, 1), num_classes=10, batch_norm=True)
        >>> train_model = googlenet(aux_logits=True)   # outputs [main, aux1, aux2]
    """
    num_classes = check_head_options(
        "googlenet", num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation)
    shape = common.check_classifier_args(
        "googlenet", input_shape=input_shape, default_shape=(224, 224, 3),
        min_size=GOOGLENET_MIN_SIZE, num_classes=num_classes, include_top=include_top,
        pooling=pooling, classifier_activation=classifier_activation, weights=weights, name=name,
        min_reason=GOOGLENET_MIN_REASON)
    common.check_bool("googlenet", aux_logits=aux_logits, batch_norm=batch_norm,
                local_response_normalization=local_response_normalization)
    common.check_rate("googlenet", "dropout", dropout)
    if aux_logits and not include_top:
        raise ValueError("googlenet: aux_logits=True needs include_top=True (the auxiliary "
                         "classifiers are classification heads). Received: include_top=False")

    from zoo.layers import LocalResponseNormalization
    aux_sources = dict((source, aux) for aux, source in GOOGLENET_AUX) if aux_logits else {}
    inputs = keras.Input(shape=shape, name="images")
    x = inputs
    aux_outputs = []
    for m in GOOGLENET_TABLE_1:
        if m.kind == "conv":
            if m.reduce:
                x = _conv_relu(x, m.reduce, 1, batch_norm=batch_norm,
                               name=f"{m.name}_{m.patch}x{m.patch}_reduce")
                conv_name = f"{m.name}_{m.patch}x{m.patch}"
            else:
                conv_name = m.name
            x = _conv_relu(x, m.filters, m.patch, strides=m.stride, batch_norm=batch_norm,
                           name=conv_name)
            if local_response_normalization and m.name == "conv2":
                x = LocalResponseNormalization(name=f"{m.name}_lrn")(x)
        elif m.kind == "maxpool":
            x = layers.MaxPooling2D(m.patch, strides=m.stride, padding="same", name=m.name)(x)
            if local_response_normalization and m.name == "pool1":
                x = LocalResponseNormalization(name=f"{m.name}_lrn")(x)
        elif m.kind == "inception":
            x = _inception_module(x, m, batch_norm=batch_norm)
            if m.name in aux_sources:
                aux_outputs.append(_aux_classifier(
                    x, aux_sources[m.name], num_classes=num_classes,
                    classifier_activation=classifier_activation, batch_norm=batch_norm))
        elif m.kind == "avgpool":
            if not include_top:
                break
            x = layers.GlobalAveragePooling2D(name=m.name)(x)
        else:
            raise ValueError(f"Unknown GoogLeNet row kind {m.kind!r} in row {m.name}")
    if include_top:
        if dropout:
            x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = common.feature_pooling(x, pooling)
    outputs = [x, *aux_outputs] if aux_outputs else x
    model = keras.Model(inputs, outputs, name=name or "googlenet")
    if weights is not None:
        zoo_weights.load(model, "googlenet", weights, include_top, files={})
    return model


# ---------------------------------------------------------------------------
# Inception-v3

class Conv(NamedTuple):
    """Convolution + batch norm (no scale) + ReLU."""

    filters: int
    kernel: tuple
    stride: int = 1
    padding: str = "same"


class Pool(NamedTuple):
    """Pooling step: ``kind`` is ``"avg"`` or ``"max"``."""

    kind: str
    size: int = 3
    stride: int = 1
    padding: str = "same"


class Split(NamedTuple):
    """Parallel convolutions on the same input, concatenated (module type E)."""

    convs: tuple


AVG_3x3 = Pool("avg", 3, 1, "same")
MAX_3x3_S2 = Pool("max", 3, 2, "valid")


def _module_a(pool_proj):
    """35x35 module (paper Fig. 5, 5x5 kept as in TF-slim/Keras)."""
    return (("branch1x1", (Conv(64, (1, 1)),)),
            ("branch5x5", (Conv(48, (1, 1)), Conv(64, (5, 5)))),
            ("branch3x3dbl", (Conv(64, (1, 1)), Conv(96, (3, 3)), Conv(96, (3, 3)))),
            ("branch_pool", (AVG_3x3, Conv(pool_proj, (1, 1)))))


def _module_b(_=None):
    """35x35 -> 17x17 reduction (paper Fig. 10)."""
    return (("branch3x3", (Conv(384, (3, 3), 2, "valid"),)),
            ("branch3x3dbl", (Conv(64, (1, 1)), Conv(96, (3, 3)),
                              Conv(96, (3, 3), 2, "valid"))),
            ("branch_pool", (MAX_3x3_S2,)))


def _module_c(c):
    """17x17 module with factorised 7x7 convolutions of ``c`` channels (paper Fig. 6)."""
    return (("branch1x1", (Conv(192, (1, 1)),)),
            ("branch7x7", (Conv(c, (1, 1)), Conv(c, (1, 7)), Conv(192, (7, 1)))),
            ("branch7x7dbl", (Conv(c, (1, 1)), Conv(c, (7, 1)), Conv(c, (1, 7)),
                              Conv(c, (7, 1)), Conv(192, (1, 7)))),
            ("branch_pool", (AVG_3x3, Conv(192, (1, 1)))))


def _module_d(_=None):
    """17x17 -> 8x8 reduction."""
    return (("branch3x3", (Conv(192, (1, 1)), Conv(320, (3, 3), 2, "valid"))),
            ("branch7x7x3", (Conv(192, (1, 1)), Conv(192, (1, 7)), Conv(192, (7, 1)),
                             Conv(192, (3, 3), 2, "valid"))),
            ("branch_pool", (MAX_3x3_S2,)))


def _module_e(_=None):
    """8x8 module with expanded filter bank outputs (paper Fig. 7)."""
    split = Split((Conv(384, (1, 3)), Conv(384, (3, 1))))
    return (("branch1x1", (Conv(320, (1, 1)),)),
            ("branch3x3", (Conv(384, (1, 1)), split)),
            ("branch3x3dbl", (Conv(448, (1, 1)), Conv(384, (3, 3)), split)),
            ("branch_pool", (AVG_3x3, Conv(192, (1, 1)))))


# Module type -> function of the module's one parameter returning its branches:
# ((branch name, steps), ...) in concatenation order.
INCEPTION_V3_MODULE_TYPES = {"A": _module_a, "B": _module_b, "C": _module_c,
                             "D": _module_d, "E": _module_e}

# The stem: (layer id as in TF-slim, step).
INCEPTION_V3_STEM = (
    ("1a", Conv(32, (3, 3), 2, "valid")),
    ("2a", Conv(32, (3, 3), 1, "valid")),
    ("2b", Conv(64, (3, 3))),
    ("3a", MAX_3x3_S2),
    ("3b", Conv(80, (1, 1), 1, "valid")),
    ("4a", Conv(192, (3, 3), 1, "valid")),
    ("5a", MAX_3x3_S2),
)

# (name, module type, parameter): pool projection for A, 7x7 channels for C.
INCEPTION_V3_MODULES = (
    ("mixed0", "A", 32), ("mixed1", "A", 64), ("mixed2", "A", 64),
    ("mixed3", "B", None),
    ("mixed4", "C", 128), ("mixed5", "C", 160), ("mixed6", "C", 160), ("mixed7", "C", 192),
    ("mixed8", "D", None),
    ("mixed9", "E", None), ("mixed10", "E", None),
)


def _step_ops(step):
    if isinstance(step, Conv):
        return [(step.kernel[0], step.stride, step.padding)]
    if isinstance(step, Pool):
        return [(step.size, step.stride, step.padding)]
    return [(c.kernel[0], c.stride, c.padding) for c in step.convs[:1]]


def _inception_v3_min_size():
    """Walk the stem and modules backwards: each module needs the largest input
    any of its branches needs to produce the size the next one needs."""
    size = 1
    for _, kind, param in reversed(INCEPTION_V3_MODULES):
        branches = INCEPTION_V3_MODULE_TYPES[kind](param)
        size = max(common.min_input_size([op for step in steps for op in _step_ops(step)],
                                         out=size) for _, steps in branches)
    return common.min_input_size([op for _, step in INCEPTION_V3_STEM for op in _step_ops(step)],
                                 out=size)


INCEPTION_V3_MIN_SIZE = _inception_v3_min_size()

INCEPTION_V3_WEIGHTS = {
    True: zoo_weights.WeightFile(
        "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        zoo_weights.KERAS_WEIGHTS_BASE + "inception_v3/",
        "9a0d58056eeedaa3f26cb7ebd46da564"),
    False: zoo_weights.WeightFile(
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        zoo_weights.KERAS_WEIGHTS_BASE + "inception_v3/",
        "bcbd6486424b2319ff4ef7d526e38f63"),
}


def _kernel_str(kernel):
    return f"{kernel[0]}x{kernel[1]}"


def _conv_bn_relu(x, conv, name):
    """``name_conv`` (no bias), ``name_bn`` (no scale, as Keras' InceptionV3), ``name_relu``."""
    x = zoo_layers.Conv2D(conv.filters, conv.kernel, strides=conv.stride,
                          padding=conv.padding, use_bias=False, name=f"{name}_conv")(x)
    x = zoo_layers.BatchNormalization(axis=-1, scale=False, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _pool(x, pool, name):
    cls = layers.AveragePooling2D if pool.kind == "avg" else layers.MaxPooling2D
    return cls(pool.size, strides=pool.stride, padding=pool.padding, name=name)(x)


def _v3_module(x, name, branches):
    outputs = []
    for branch, steps in branches:
        prefix = f"{name}_{branch}"
        n_convs = sum(not isinstance(s, Pool) for s in steps)
        y, i = x, 0
        for step in steps:
            if isinstance(step, Pool):
                y = _pool(y, step, f"{prefix}_{step.kind}pool")
                continue
            i += 1
            if isinstance(step, Conv):
                y = _conv_bn_relu(y, step, prefix if n_convs == 1 else f"{prefix}_{i}")
            else:  # Split: parallel convolutions, concatenated
                parts = [_conv_bn_relu(y, conv, f"{prefix}_{i}{letter}")
                         for conv, letter in zip(step.convs, "abcdefgh")]
                y = layers.Concatenate(axis=-1, name=f"{prefix}_{i}_concat")(parts)
        outputs.append(y)
    return layers.Concatenate(axis=-1, name=name)(outputs)


@builtin
def inception_v3(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
                 classifier_activation="softmax", weights=None, name=None):
    """Inception-v3, the network ``keras.applications.InceptionV3`` builds.

    Reference: Szegedy et al., "Rethinking the Inception architecture for
    computer vision", arXiv 2015 (CVPR 2016), in the TF-slim layout that Keras
    publishes ImageNet weights for: 23,851,784 parameters at 299x299x3 with
    1,000 classes (21,802,784 without the top). Every convolution has no bias
    and is followed by batch normalisation without scale, then ReLU.

    The network is the data in :data:`INCEPTION_V3_STEM` and
    :data:`INCEPTION_V3_MODULES`: the stem ``stem_1a_3x3`` .. ``stem_5a_pool``,
    then ``mixed0``-``mixed2`` (type A, pool projections 32/64/64), ``mixed3``
    (reduction), ``mixed4``-``mixed7`` (type C, 7x7 channels 128/160/160/192),
    ``mixed8`` (reduction), ``mixed9``-``mixed10`` (type E). Layers are named
    ``<module>_<branch>[_<i>]_{conv,bn,relu}``, e.g. ``mixed5_branch7x7_2_conv``;
    ``mixed<k>`` is each module's output.

    Args:
        input_shape: ``(H, W, C)``; default ``(299, 299, 3)``; any channel count
            (3 with ImageNet weights); ``H, W >= 75``.
        num_classes: number of output classes (1000 with ImageNet weights and
            ``include_top=True``).
        include_top: end with global average pooling and the classifier;
            otherwise the model ends at ``mixed10`` (8x8x2048 at 299x299).
        pooling: with ``include_top=False``: ``None``, ``"avg"`` or ``"max"``.
        classifier_activation: output activation, ``None`` for logits.
        weights: ``None``, ``"imagenet"`` (Keras' published HDF5 files, fetched
            with their hash; the no-top file when ``include_top=False``), or the
            path of a weights file.
        name: model name (default ``"inception_v3"``).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on a bad argument (e.g. an input smaller than 75x75, or
            ``weights="imagenet"`` with other than 3 channels), or when the
            ImageNet weights cannot be fetched.

    Example:
        >>> model = inception_v3(weights="imagenet", include_top=False,  # doctest: +SKIP
        ...                      pooling="avg")
        >>> small = inception_v3(input_shape=(96, 96, 1), num_classes=10)
    """
    num_classes = check_head_options(
        "inception_v3", num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation)
    shape = common.check_classifier_args(
        "inception_v3", input_shape=input_shape, default_shape=(299, 299, 3),
        min_size=INCEPTION_V3_MIN_SIZE, num_classes=num_classes, include_top=include_top,
        pooling=pooling, classifier_activation=classifier_activation, weights=weights, name=name,
        published_weights=("imagenet",))
    weights = zoo_weights.resolve("inception_v3", weights, shape, include_top, num_classes,
                                  INCEPTION_V3_WEIGHTS)

    inputs = keras.Input(shape=shape, name="images")
    x = inputs
    for layer_id, step in INCEPTION_V3_STEM:
        if isinstance(step, Pool):
            x = _pool(x, step, f"stem_{layer_id}_pool")
        else:
            x = _conv_bn_relu(x, step, f"stem_{layer_id}_{_kernel_str(step.kernel)}")
    for module_name, kind, param in INCEPTION_V3_MODULES:
        x = _v3_module(x, module_name, INCEPTION_V3_MODULE_TYPES[kind](param))
    x = common.classifier_head(x, num_classes=num_classes, include_top=include_top,
                               pooling=pooling, classifier_activation=classifier_activation)
    model = keras.Model(inputs, x, name=name or "inception_v3")
    zoo_weights.load(model, "inception_v3", weights, include_top, INCEPTION_V3_WEIGHTS)
    return model


# ---------------------------------------------------------------------------
# Layer tables, derived from built models.

def _out_str(shape) -> str:
    """``(None, 28, 28, 256)`` -> ``"28x28x256"``; ``(None, 1000)`` -> ``"1x1x1000"``."""
    dims = [str(d) for d in shape[1:]]
    return "x".join(["1", "1"] + dims if len(dims) == 1 else dims)


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _parents(layer):
    return [node.operation for node in layer._inbound_nodes[0].parent_nodes]


def _conv_depth(row_layers) -> int:
    """Longest chain of convolution/dense layers inside a row (the paper's depth)."""
    depth = {}
    for layer in row_layers:  # topological order
        before = max((depth[p.name] for p in _parents(layer) if p.name in depth), default=0)
        depth[layer.name] = before + isinstance(layer, (layers.Conv2D, layers.Dense))
    return max(depth.values(), default=0)


def _activation_name(layer):
    act = layer.get_config().get("activation")
    if isinstance(act, dict):
        act = act.get("config", {}).get("name", act.get("class_name"))
    return None if act in (None, "linear") else str(act)


_GOOGLENET_COLUMNS = ["type", "patch size/stride", "output size", "depth", "#1x1",
                      "#3x3 reduce", "#3x3", "#5x5 reduce", "#5x5", "pool proj"]
_GOOGLENET_ROW = re.compile(r"^(conv\d+|pool\d+|inception_\d[a-z])(?:_|$)")


def _googlenet_row_key(name):
    match = _GOOGLENET_ROW.match(name)
    if match:
        return match.group(1)
    if name in ("avg_pool", "max_pool", "dropout", "predictions"):
        return name
    return None  # the input and the auxiliary classifiers


@table_format("googlenet", detect=lambda m: {"inception_3a", "conv2_3x3"} <= layer_names(m),
              owns=r"images|avg_pool|max_pool|dropout|predictions"
                   r"|(?:conv\d+|pool\d+|inception_\d[a-z]|aux\d+)(?:_\w+)?")
def googlenet_table(model) -> pd.DataFrame:
    """GoogLeNet's Table 1 (Szegedy et al. 2014) read back from a built model:
    type, patch size/stride, output size, depth, #1x1, #3x3 reduce, #3x3,
    #5x5 reduce, #5x5, pool proj, plus the parameters of each row.

    Args:
        model: a model built by :func:`googlenet`.

    Returns:
        A ``pandas.DataFrame``, one row per row of the paper's table, then (for
        ``aux_logits=True``) one per auxiliary classifier: its 5x5/3 average pooling, 1x1
        convolution, fully connected layer and output, so that ``params`` sums to the
        model's ``count_params()``.
    """
    rows = {}
    for layer in model.layers:
        key = _googlenet_row_key(layer.name)
        if key:
            rows.setdefault(key, []).append(layer)
    records = []
    for key, row_layers in rows.items():
        rec = dict.fromkeys(_GOOGLENET_COLUMNS, "")
        first, last = row_layers[0], row_layers[-1]
        rec["output size"] = _out_str(last.output.shape)
        rec["depth"] = str(_conv_depth(row_layers))
        rec["params"] = layer_params(model, key)
        convs = [la for la in row_layers if isinstance(la, layers.Conv2D)]
        if key.startswith("inception_"):
            rec["type"] = f"inception ({key.split('_')[1]})"
            by_name = {la.name: la for la in convs}
            for column, suffix in (("#1x1", "1x1"), ("#3x3 reduce", "3x3_reduce"),
                                   ("#3x3", "3x3"), ("#5x5 reduce", "5x5_reduce"),
                                   ("#5x5", "5x5"), ("pool proj", "pool_proj")):
                conv = by_name.get(f"{key}_{suffix}")
                rec[column] = str(conv.filters) if conv else ""
        elif convs:
            rec["type"] = "convolution"
            main = convs[-1]
            k, s = _pair(main.kernel_size), _pair(main.strides)
            rec["patch size/stride"] = f"{k[0]}x{k[1]}/{s[0]}"
            if len(convs) > 1 and _pair(convs[0].kernel_size) == (1, 1) \
                    and f"#{k[0]}x{k[1]}" in rec:
                rec[f"#{k[0]}x{k[1]} reduce"] = str(convs[0].filters)
                rec[f"#{k[0]}x{k[1]}"] = str(main.filters)
        elif isinstance(first, (layers.MaxPooling2D, layers.AveragePooling2D)):
            rec["type"] = "max pool" if isinstance(first, layers.MaxPooling2D) else "avg pool"
            k, s = _pair(first.pool_size), _pair(first.strides)
            rec["patch size/stride"] = f"{k[0]}x{k[1]}/{s[0]}"
        elif isinstance(last, (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)):
            rec["type"] = "avg pool" if isinstance(last, layers.GlobalAveragePooling2D) \
                else "max pool"
            h, w = _parents(last)[0].output.shape[1:3]
            rec["patch size/stride"] = f"{h}x{w}/1"
        elif isinstance(last, layers.Dropout):
            rec["type"] = f"dropout ({last.rate * 100:g}%)"
        elif isinstance(last, layers.Dense):
            rec["type"] = "linear"
            activation = _activation_name(last)
            records.append(rec)
            if activation:
                rec = dict(rec, type=activation, depth="0", params=0)
            else:
                continue
        else:
            rec["type"] = type(last).__name__
        records.append(rec)
    names = layer_names(model)
    for aux, source in GOOGLENET_AUX:   # aux_logits=True: one row per auxiliary classifier
        if f"{aux}_predictions" in names:   # read from the model, as every row above
            pool, conv = model.get_layer(f"{aux}_avg_pool"), model.get_layer(f"{aux}_conv")
            k, s = _pair(pool.pool_size), _pair(pool.strides)
            records.append(dict(
                dict.fromkeys(_GOOGLENET_COLUMNS, ""),
                type=f"auxiliary classifier ({source.split('_')[1]})",
                **{"patch size/stride": f"{k[0]}x{k[1]}/{s[0]}",
                   "output size": _out_str(model.get_layer(f"{aux}_predictions").output.shape),
                   "depth": "3", "#1x1": str(conv.filters), "params": layer_params(model, aux)}))
    return pd.DataFrame.from_records(records, columns=_GOOGLENET_COLUMNS + ["params"])


_V3_ROW = re.compile(r"^(stem_\d[a-z](?:_\d+x\d+)?|mixed\d+)(?:_|$)")
_V3_BRANCH = re.compile(r"^mixed\d+_(branch_pool|branch[^_]+)")


def _v3_step_str(layer):
    if isinstance(layer, layers.Conv2D):
        k, s = _pair(layer.kernel_size), _pair(layer.strides)
        return f"{k[0]}x{k[1]}{'/' + str(s[0]) if s[0] > 1 else ''} {layer.filters}"
    k, s = _pair(layer.pool_size), _pair(layer.strides)
    kind = "avg" if isinstance(layer, layers.AveragePooling2D) else "max"
    return f"{kind} pool {k[0]}x{k[1]}{'/' + str(s[0]) if s[0] > 1 else ''}"


@table_format("inception_v3", detect=lambda m: "stem_1a_3x3_conv" in layer_names(m),
              owns=r"images|avg_pool|max_pool|predictions|(?:stem_\d[a-z]|mixed\d+)(?:_\w+)?")
def inception_v3_table(model) -> pd.DataFrame:
    """Inception-v3 read back from a built model, one row per stem layer and per
    module (as the paper's Table 1 lists them): layer, type, patch size/stride,
    output size, the branches of each module (convolutions as ``kernel[/stride]
    filters``, parallel ones joined by ``+``), and parameters.

    Args:
        model: a model built by :func:`inception_v3`.

    Returns:
        A ``pandas.DataFrame``, one row per stem layer, module and head layer.
    """
    rows = {}
    for layer in model.layers:
        match = _V3_ROW.match(layer.name)
        key = match.group(1) if match else (
            layer.name if layer.name in ("avg_pool", "max_pool", "predictions") else None)
        if key:
            rows.setdefault(key, []).append(layer)
    records = []
    for key, row_layers in rows.items():
        last = row_layers[-1]
        rec = {"layer": key, "type": "", "patch size/stride": "",
               "output size": _out_str(last.output.shape), "branches": "",
               "params": layer_params(model, key)}
        if key.startswith("mixed"):
            inp = _parents(row_layers[0])[0].output.shape
            rec["type"] = "inception" if inp[1] == last.output.shape[1] else "reduction"
            branches = {}
            for layer in row_layers:
                match = _V3_BRANCH.match(layer.name)
                if match and isinstance(layer, (layers.Conv2D, layers.MaxPooling2D,
                                                layers.AveragePooling2D)):
                    steps = branches.setdefault(match.group(1), [])
                    text = _v3_step_str(layer)
                    if re.search(r"_\d+b_conv$", layer.name):  # parallel to the previous one
                        steps[-1] += " + " + text
                    else:
                        steps.append(text)
            # Branches in concatenation order (the module output's inputs).
            order = [_V3_BRANCH.match(p.name).group(1) for p in _parents(last)]
            rec["branches"] = " | ".join(", ".join(branches[b]) for b in order)
        elif key.startswith("stem_"):
            main = row_layers[0]
            k = _pair(getattr(main, "kernel_size", None) or main.pool_size)
            s = _pair(main.strides)[0]
            rec["patch size/stride"] = f"{k[0]}x{k[1]}/{s}"
            if isinstance(main, layers.Conv2D):
                rec["type"] = "conv padded" if main.padding == "same" else "conv"
            else:
                rec["type"] = "pool"
        elif isinstance(last, (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)):
            h, w = _parents(last)[0].output.shape[1:3]
            rec["type"] = "pool" if isinstance(last, layers.GlobalAveragePooling2D) \
                else "max pool"
            rec["patch size/stride"] = f"{h}x{w}"
        elif isinstance(last, layers.Dense):
            rec["type"] = "linear"
            records.append(rec)
            activation = _activation_name(last)
            if not activation:
                continue
            rec = dict(rec, layer=f"{key}_{activation}", type=activation,
                       params=0)
        records.append(rec)
    return pd.DataFrame.from_records(records, columns=["layer", "type", "patch size/stride",
                                                       "output size", "branches", "params"])
