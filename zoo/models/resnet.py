"""ResNet v1 (He et al. 2015) and v2 (He et al. 2016), written once as data.

The architecture is a stage table per depth (:data:`STAGES`: block kind and
blocks per stage, with the stage widths :data:`WIDTHS`) and a version table
(:data:`VERSIONS`: where the stride sits, pre- or post-activation). One
builder, :func:`build_resnet`, walks those tables. Layer names follow
``keras.applications`` (``conv1_conv``, ``conv2_block1_1_conv``,
``conv2_block1_0_conv`` for a projection shortcut, ``conv2_block1_out``,
``post_bn``, ``avg_pool``, ``predictions``) and the layers are created in the
same order, so the ImageNet HDF5 files Keras publishes for ResNet50/101/152
and ResNet50V2/101V2/152V2 load into the zoo models (legacy HDF5 weights load
by the order of the layers that have weights).

``resnet18`` and ``resnet34`` use basic blocks with convolutions without bias
before batch normalisation, as torchvision does (11,689,512 / 21,797,672
trainable parameters); no Keras weights exist for them.
"""

from __future__ import annotations

import re

import keras
import pandas as pd
from keras import layers

from zoo import layers as zoo_layers
from zoo import common
from zoo import weights as zoo_weights
from zoo.blocks import check_head_options
from zoo.registry import builtin
from zoo.tables import layer_names, size_str, table_format

__all__ = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50_v2",
           "resnet101_v2", "resnet152_v2", "build_resnet", "block_plan", "resnet_table",
           "STAGES", "WIDTHS", "VERSIONS"]

# ---------------------------------------------------------------------------
# The architecture, as data.

#: Filters of the 3x3 convolutions in the four stages conv2_x .. conv5_x.
WIDTHS = (64, 128, 256, 512)

#: depth -> (block kind, blocks per stage) — the paper's Table 1.
STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

#: Block kinds: the main-path convolutions as ``(kernel, width multiplier)``,
#: the output expansion, and whether the convolutions carry a bias
#: (``keras.applications`` bottlenecks do; torchvision's basic blocks do not;
#: v2 blocks have no bias on their first two convolutions only).
BLOCKS = {
    "basic": dict(convs=((3, 1), (3, 1)), expansion=1, bias=(False, False), shortcut_bias=False,
                  stem_bias=False),
    "bottleneck": dict(convs=((1, 1), (3, 1), (1, 4)), expansion=4, bias=(True, True, True),
                       shortcut_bias=True, stem_bias=True),
    "preact_bottleneck": dict(convs=((1, 1), (3, 1), (1, 4)), expansion=4,
                              bias=(False, False, True), shortcut_bias=True, stem_bias=True),
}

#: v1 downsamples in the first block of conv3..conv5 (on its first conv);
#: v2 (keras.applications ResNetV2) in the last block of conv2..conv4 (on its 3x3 conv).
VERSIONS = {
    1: dict(strides=(1, 2, 2, 2), stride_block="first", preact=False),
    2: dict(strides=(2, 2, 2, 1), stride_block="last", preact=True),
}

#: The stem: (name, kind, kernel, stride, symmetric zero padding).
STEM = (("conv1", "conv", 7, 2, 3), ("pool1", "maxpool", 3, 2, 1))

BN_EPSILON = 1.001e-5

_BASE = zoo_weights.KERAS_WEIGHTS_BASE + "resnet/"

#: Published ImageNet files (keras.applications' names and md5 hashes):
#: model name -> (keras weights name, top hash, no-top hash).
_KERAS_FILES = {
    "resnet50": ("resnet50", "2cb95161c43110f7111970584f804107",
                 "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("resnet101", "f1aeb4b969a6efcfb50fad2f0c20cfc5",
                  "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("resnet152", "100835be76be38e30d865e96f2aaae62",
                  "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "resnet50_v2": ("resnet50v2", "3ef43a0b657b3be2300d5770ece849e0",
                    "fac2f116257151a9d068a22e544a4917"),
    "resnet101_v2": ("resnet101v2", "6343647c601c52e1368623803854d971",
                     "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152_v2": ("resnet152v2", "a49b44d1979771252814e80f8ec446f9",
                     "ed17cf2e0169df9d443503ef94b23b33"),
}

#: model name -> {include_top: WeightFile}
WEIGHT_FILES = {
    model: {
        True: zoo_weights.WeightFile(f"{kname}_weights_tf_dim_ordering_tf_kernels.h5", _BASE,
                                     top),
        False: zoo_weights.WeightFile(f"{kname}_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                      _BASE, notop),
    }
    for model, (kname, top, notop) in _KERAS_FILES.items()
}


def block_plan(depth: int, version: int):
    """The blocks of ``depth``/``version`` in order, from the tables above.

    Args:
        depth: a key of :data:`STAGES` (18, 34, 50, 101 or 152).
        version: 1 (He et al. 2015) or 2 (pre-activation, bottleneck depths only).

    Returns:
        A list of ``(stage name, block index, kind, width, stride, projection)``
        tuples, e.g. ``("conv3", 1, "bottleneck", 128, 2, True)``.

    Raises:
        ValueError: an unknown depth or version, or version 2 with basic blocks.
    """
    if depth not in STAGES:
        raise ValueError(f"resnet: depth must be one of {sorted(STAGES)}. Received: depth={depth!r}")
    if version not in VERSIONS:
        raise ValueError(f"resnet: version must be 1 or 2. Received: version={version!r}")
    kind, repeats = STAGES[depth]
    ver = VERSIONS[version]
    if ver["preact"]:
        if kind != "bottleneck":
            raise ValueError(f"resnet: version 2 is defined for bottleneck depths "
                             f"{[d for d, (k, _) in STAGES.items() if k == 'bottleneck']}. "
                             f"Received: depth={depth}")
        kind = "preact_bottleneck"
    expansion = BLOCKS[kind]["expansion"]
    plan = []
    channels = WIDTHS[0]  # the stem's output channels
    for s, (width, n, stage_stride) in enumerate(zip(WIDTHS, repeats, ver["strides"])):
        for b in range(1, n + 1):
            at = 1 if ver["stride_block"] == "first" else n
            stride = stage_stride if b == at else 1
            out = width * expansion
            if ver["preact"]:
                # keras.applications ResNetV2: a projection in each stage's first block.
                projection = b == 1
            else:
                projection = stride != 1 or channels != out
            plan.append((f"conv{s + 2}", b, kind, width, stride, projection))
            channels = out
    return plan


def size_ops(depth: int, version: int) -> list:
    """``(kernel, stride, padding)`` of the operations along the main path, for
    :func:`zoo.common.min_input_size`. A zero padding of ``(k - 1) / 2`` followed by
    a valid window has the output size of ``"same"`` padding, and is written so."""
    ops = []
    for _, _, kernel, stride, pad in STEM:
        ops.append((kernel, stride, "same" if 2 * pad == kernel - 1 else "valid"))
    for _, _, kind, _, stride, _ in block_plan(depth, version):
        for i, (kernel, _) in enumerate(BLOCKS[kind]["convs"]):
            ops.append((kernel, stride if i == _stride_conv(kind) else 1, "same"))
    return ops


def _stride_conv(kind):
    # keras.applications v1 bottlenecks stride their first 1x1 convolution, v2
    # their 3x3; basic blocks their first 3x3 (torchvision).
    return 1 if kind == "preact_bottleneck" else 0


# ---------------------------------------------------------------------------
# The one builder.

def _bn(x, name):
    return zoo_layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=name)(x)


def _conv(x, filters, kernel, stride, bias, name):
    """A convolution of the main path: 1x1 "valid"; a larger kernel "same" at
    stride 1, explicit symmetric padding (``{name}_pad``) then "valid" when strided."""
    if kernel > 1 and stride > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "valid" if kernel == 1 else "same"
    return zoo_layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=bias,
                             name=f"{name}_conv")(x)


def _block_v1(x, kind, width, stride, projection, name):
    """Post-activation residual block (basic or bottleneck): convs with batch
    norm, ReLU between them, the sum, then ReLU (``{name}_out``)."""
    spec = BLOCKS[kind]
    out_channels = width * spec["expansion"]
    if projection:
        shortcut = zoo_layers.Conv2D(out_channels, 1, strides=stride,
                                     use_bias=spec["shortcut_bias"], name=f"{name}_0_conv")(x)
        shortcut = _bn(shortcut, f"{name}_0_bn")
    else:
        shortcut = x
    last = len(spec["convs"])
    for i, ((kernel, mult), bias) in enumerate(zip(spec["convs"], spec["bias"]), start=1):
        s = stride if i - 1 == _stride_conv(kind) else 1
        x = _conv(x, width * mult, kernel, s, bias, f"{name}_{i}")
        x = _bn(x, f"{name}_{i}_bn")
        if i < last:
            x = layers.Activation("relu", name=f"{name}_{i}_relu")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def _block_v2(x, kind, width, stride, projection, name):
    """Pre-activation bottleneck (keras.applications ResNetV2): batch norm and
    ReLU first, shortcut from the pre-activation when projected, the sum last
    (``{name}_out``)."""
    spec = BLOCKS[kind]
    preact = _bn(x, f"{name}_preact_bn")
    preact = layers.Activation("relu", name=f"{name}_preact_relu")(preact)
    if projection:
        shortcut = zoo_layers.Conv2D(width * spec["expansion"], 1, strides=stride,
                                     use_bias=spec["shortcut_bias"],
                                     name=f"{name}_0_conv")(preact)
    elif stride > 1:
        shortcut = layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
    else:
        shortcut = x
    x = preact
    last = len(spec["convs"])
    for i, ((kernel, mult), bias) in enumerate(zip(spec["convs"], spec["bias"]), start=1):
        s = stride if i - 1 == _stride_conv(kind) else 1
        if kernel > 1:  # keras.applications pads the 3x3 explicitly, strided or not
            x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_{i}_pad")(x)
            x = zoo_layers.Conv2D(width * mult, kernel, strides=s, use_bias=bias,
                                  name=f"{name}_{i}_conv")(x)
        else:
            x = _conv(x, width * mult, kernel, s, bias, f"{name}_{i}")
        if i < last:
            x = _bn(x, f"{name}_{i}_bn")
            x = layers.Activation("relu", name=f"{name}_{i}_relu")(x)
    return layers.Add(name=f"{name}_out")([shortcut, x])


def build_resnet(*, depth, version, input_shape, num_classes, include_top, pooling,
                 classifier_activation, name):
    """Walk the stage and version tables and return the functional model.

    Arguments are assumed to be checked, as the registered builders (:func:`resnet18`
    ...) do before they call this; no weights are loaded.

    Args:
        depth: a key of :data:`STAGES`.
        version: 1 or 2 (:data:`VERSIONS`).
        input_shape: ``(H, W, C)``.
        num_classes: number of output classes (with ``include_top``).
        include_top: end with global average pooling and the dense classifier.
        pooling: with ``include_top=False``: ``None``, ``"avg"`` or ``"max"``.
        classifier_activation: output activation, ``None`` for logits.
        name: model name.

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: an unknown depth or version (:func:`block_plan`).
    """
    plan = block_plan(depth, version)
    ver = VERSIONS[version]
    kind = plan[0][2]
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for stem_name, op, kernel, stride, pad in STEM:
        x = layers.ZeroPadding2D(pad, name=f"{stem_name}_pad")(x)
        if op == "conv":
            x = zoo_layers.Conv2D(WIDTHS[0], kernel, strides=stride,
                                  use_bias=BLOCKS[kind]["stem_bias"],
                                  name=f"{stem_name}_conv")(x)
            if not ver["preact"]:
                x = _bn(x, f"{stem_name}_bn")
                x = layers.Activation("relu", name=f"{stem_name}_relu")(x)
        else:
            x = layers.MaxPooling2D(kernel, strides=stride, name=f"{stem_name}_pool")(x)
    block = _block_v2 if ver["preact"] else _block_v1
    for stage, index, block_kind, width, stride, projection in plan:
        x = block(x, block_kind, width, stride, projection, f"{stage}_block{index}")
    if ver["preact"]:
        x = _bn(x, "post_bn")
        x = layers.Activation("relu", name="post_relu")(x)
    x = common.classifier_head(x, num_classes=num_classes, include_top=include_top,
                               pooling=pooling, classifier_activation=classifier_activation)
    return keras.Model(inputs, x, name=name)


_MODELS = {  # registry name -> (depth, version)
    "resnet18": (18, 1), "resnet34": (34, 1), "resnet50": (50, 1), "resnet101": (101, 1),
    "resnet152": (152, 1), "resnet50_v2": (50, 2), "resnet101_v2": (101, 2),
    "resnet152_v2": (152, 2),
}

MIN_SIZES = {model: max(1, common.min_input_size(size_ops(*dv))) for model, dv in _MODELS.items()}

DEFAULT_SHAPE = (224, 224, 3)


def _resnet(model_name, *, input_shape, num_classes, include_top, pooling,
            classifier_activation, weights, name):
    """Check the shared arguments, build ``model_name`` and load its weights."""
    depth, version = _MODELS[model_name]
    published = ("imagenet",) if model_name in WEIGHT_FILES else ()
    num_classes = check_head_options(
        model_name, num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation)
    shape = common.check_classifier_args(
        model_name, input_shape=input_shape, default_shape=DEFAULT_SHAPE,
        min_size=MIN_SIZES[model_name], num_classes=num_classes, include_top=include_top,
        pooling=pooling, classifier_activation=classifier_activation, weights=weights, name=name,
        published_weights=published)
    weights = zoo_weights.resolve(model_name, weights, shape, include_top, num_classes,
                                  WEIGHT_FILES.get(model_name, {}))
    model = build_resnet(depth=depth, version=version, input_shape=shape,
                         num_classes=num_classes, include_top=include_top, pooling=pooling,
                         classifier_activation=classifier_activation,
                         name=name or model_name)
    zoo_weights.load(model, model_name, weights, include_top, WEIGHT_FILES.get(model_name, {}))
    return model


@builtin
def resnet18(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
             classifier_activation="softmax", weights=None, name=None):
    """ResNet-18 (basic blocks, 2-2-2-2), convolutions without bias as in torchvision.

    Reference: He et al., "Deep residual learning for image recognition",
    CVPR 2016 (arXiv 2015), Table 1.

    Every ResNet builder takes the same keyword-only arguments:

    Args:
        input_shape: ``(H, W, C)``, any number of channels; default
            ``(224, 224, 3)``. All windows are padded, so any ``H, W >= 1`` builds
            (``model_info(name).min_input_size``); the last feature map is
            ``ceil(H / 32) x ceil(W / 32)``.
        num_classes: number of output classes.
        include_top: end with global average pooling and the dense classifier
            (``avg_pool``, ``predictions``); otherwise end at the last block.
        pooling: with ``include_top=False``: ``None`` (feature map), ``"avg"`` or ``"max"``.
        classifier_activation: output activation, ``None`` for logits.
        weights: ``None`` (random), ``"imagenet"`` (resnet50/101/152 and their
            ``_v2`` variants: the Keras ImageNet file, fetched with its hash;
            needs 3 channels and, with the top, 1,000 classes) or the path of a
            weights file (a legacy ``.h5`` such as Keras' published files, a
            ``.weights.h5`` or a ``.keras`` file).
        name: model name (default: the builder's name).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on invalid arguments, or when weights cannot be fetched
            (the message says where to put the file offline).

    Example:
        >>> model = resnet18(input_shape=(64, 64, 1), num_classes=10)
    """
    return _resnet("resnet18", input_shape=input_shape, num_classes=num_classes,
                   include_top=include_top, pooling=pooling,
                   classifier_activation=classifier_activation, weights=weights, name=name)


@builtin
def resnet34(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
             classifier_activation="softmax", weights=None, name=None):
    """ResNet-34 (basic blocks, 3-4-6-3), convolutions without bias as in torchvision.

    Arguments, return value and errors as :func:`resnet18`."""
    return _resnet("resnet34", input_shape=input_shape, num_classes=num_classes,
                   include_top=include_top, pooling=pooling,
                   classifier_activation=classifier_activation, weights=weights, name=name)


@builtin
def resnet50(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
             classifier_activation="softmax", weights=None, name=None):
    """ResNet-50 (bottlenecks, 3-4-6-3), the ``keras.applications.ResNet50``
    architecture; ``weights="imagenet"`` loads its file.

    Arguments, return value and errors as :func:`resnet18`.

    Example:
        >>> model = resnet50(include_top=False, pooling="avg", input_shape=(160, 160, 3))
    """
    return _resnet("resnet50", input_shape=input_shape, num_classes=num_classes,
                   include_top=include_top, pooling=pooling,
                   classifier_activation=classifier_activation, weights=weights, name=name)


@builtin
def resnet101(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
              classifier_activation="softmax", weights=None, name=None):
    """ResNet-101 (bottlenecks, 3-4-23-3), the ``keras.applications.ResNet101``
    architecture.

    Arguments, return value and errors as :func:`resnet18`."""
    return _resnet("resnet101", input_shape=input_shape, num_classes=num_classes,
                   include_top=include_top, pooling=pooling,
                   classifier_activation=classifier_activation, weights=weights, name=name)


@builtin
def resnet152(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
              classifier_activation="softmax", weights=None, name=None):
    """ResNet-152 (bottlenecks, 3-8-36-3), the ``keras.applications.ResNet152``
    architecture.

    Arguments, return value and errors as :func:`resnet18`."""
    return _resnet("resnet152", input_shape=input_shape, num_classes=num_classes,
                   include_top=include_top, pooling=pooling,
                   classifier_activation=classifier_activation, weights=weights, name=name)


@builtin
def resnet50_v2(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
                classifier_activation="softmax", weights=None, name=None):
    """ResNet-50 v2 (pre-activation bottlenecks, 3-4-6-3; He et al., "Identity
    mappings in deep residual networks", ECCV 2016), the
    ``keras.applications.ResNet50V2`` architecture: the stride sits in the last
    block of conv2..conv4.

    Arguments, return value and errors as :func:`resnet18`."""
    return _resnet("resnet50_v2", input_shape=input_shape, num_classes=num_classes,
                   include_top=include_top, pooling=pooling,
                   classifier_activation=classifier_activation, weights=weights, name=name)


@builtin
def resnet101_v2(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
                 classifier_activation="softmax", weights=None, name=None):
    """ResNet-101 v2 (pre-activation, 3-4-23-3), the ``keras.applications.ResNet101V2``
    architecture.

    Arguments, return value and errors as :func:`resnet18`."""
    return _resnet("resnet101_v2", input_shape=input_shape, num_classes=num_classes,
                   include_top=include_top, pooling=pooling,
                   classifier_activation=classifier_activation, weights=weights, name=name)


@builtin
def resnet152_v2(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
                 classifier_activation="softmax", weights=None, name=None):
    """ResNet-152 v2 (pre-activation, 3-8-36-3), the ``keras.applications.ResNet152V2``
    architecture.

    Arguments, return value and errors as :func:`resnet18`."""
    return _resnet("resnet152_v2", input_shape=input_shape, num_classes=num_classes,
                   include_top=include_top, pooling=pooling,
                   classifier_activation=classifier_activation, weights=weights, name=name)


# ---------------------------------------------------------------------------
# The paper's Table 1, derived back from a built model.

_STAGE_RE = re.compile(r"^(conv[2-9])_block(\d+)_(\d)_conv$")


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def _kernel_str(k):
    kh, kw = _pair(k)
    return f"{kh}x{kw}"


def _stride_str(s):
    sh, sw = _pair(s)
    return str(sh) if sh == sw else f"{sh}x{sw}"


def _row_of(layer_name):
    """The table row a layer belongs to, by its name (``None``: same as the previous layer)."""
    if layer_name.startswith("conv1_"):
        return "conv1"
    if layer_name.startswith("pool1_"):
        return "conv2_x"
    m = re.match(r"^(conv[2-9])_", layer_name)
    if m:
        return f"{m.group(1)}_x"
    if layer_name in ("avg_pool", "max_pool", "predictions"):
        return "(head)"
    return None


def _multiply_adds(model) -> int:
    """Multiply-adds of the convolutions and dense layers (the paper's FLOPs)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kh, kw = _pair(layer.get_config()["kernel_size"])
            cin = layer.input.shape[-1]
            _, h, w, cout = layer.output.shape
            total += h * w * kh * kw * cin * cout
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return total


def _activation_name(layer):
    act = layer.get_config().get("activation")
    if isinstance(act, dict):
        act = act.get("config", {}).get("name", act.get("class_name"))
    return None if act in (None, "linear") else str(act)


def _block_spec(model, stage, index):
    convs = []
    i = 1
    names = layer_names(model)
    while f"{stage}_block{index}_{i}_conv" in names:
        cfg = model.get_layer(f"{stage}_block{index}_{i}_conv").get_config()
        convs.append(f"{_kernel_str(cfg['kernel_size'])}, {cfg['filters']}")
        i += 1
    return "[" + "; ".join(convs) + "]"


def _detect(model):
    return {"conv1_conv", "pool1_pool", "conv2_block1_1_conv", "conv2_block1_out"} <= \
        layer_names(model)


#: The layer names the ResNet builder gives (stages, stem, v2's post-activation, head).
OWN_NAMES = r"images|avg_pool|max_pool|predictions|post_bn|post_relu|(?:conv\d+|pool\d+)_\w+"


@table_format("resnet", detect=_detect, owns=OWN_NAMES)
def resnet_table(model) -> pd.DataFrame:
    """He et al.'s Table 1 for a built ResNet: ``layer name``, ``output size``,
    the block specification in a column named ``"<depth>-layer"`` and ``params``;
    a last row ``FLOPs`` gives the multiply-adds.

    Everything is read from the model: kernel sizes, filters and strides from
    the layer configs, blocks per stage from the layer names, output sizes from
    the output shapes, the depth from the number of main-path convolutions
    (+1 for the classifier, as the paper counts it).

    Args:
        model: a model built by one of the ResNet builders.

    Returns:
        A ``pandas.DataFrame``, one row per stage plus the ``FLOPs`` row.
    """
    names = layer_names(model)
    blocks = {}  # stage -> sorted block indices
    main_convs = 0
    for n in names:
        m = _STAGE_RE.match(n)
        if m:
            blocks.setdefault(m.group(1), set()).add(int(m.group(2)))
            if m.group(3) != "0":
                main_convs += 1
    depth = main_convs + 2  # conv1 and the fc layer
    stages = sorted(blocks)

    params = {}
    row = None
    own_name = re.compile(OWN_NAMES)
    for layer in model.layers:
        if not own_name.fullmatch(layer.name):   # a layer of the user's: no row of Table 1
            continue
        row = _row_of(layer.name) or row
        if row is not None:
            params[row] = params.get(row, 0) + layer.count_params()

    records = []
    conv1 = model.get_layer("conv1_conv")
    c1 = conv1.get_config()
    records.append(("conv1", size_str(conv1.output.shape),
                    f"{_kernel_str(c1['kernel_size'])}, {c1['filters']}, "
                    f"stride {_stride_str(c1['strides'])}"))
    for stage in stages:
        indices = sorted(blocks[stage])
        groups = []  # consecutive blocks with equal specs: [spec, count]
        for index in indices:
            spec = _block_spec(model, stage, index)
            if groups and groups[-1][0] == spec:
                groups[-1][1] += 1
            else:
                groups.append([spec, 1])
        text = "; ".join(f"{spec} x{count}" for spec, count in groups)
        if stage == stages[0] and "pool1_pool" in names:
            pool = model.get_layer("pool1_pool").get_config()
            text = (f"{_kernel_str(pool['pool_size'])} max pool, "
                    f"stride {_stride_str(pool['strides'])}; {text}")
        out = model.get_layer(f"{stage}_block{indices[-1]}_out")
        records.append((f"{stage}_x", size_str(out.output.shape), text))
    head = []
    if "avg_pool" in names:
        head.append("average pool")
    elif "max_pool" in names:
        head.append("max pool")
    if "predictions" in names:
        dense = model.get_layer("predictions")
        head.append(f"{dense.units}-d fc")
        act = _activation_name(dense)
        if act:
            head.append(act)
    if head:
        records.append(("(head)", "1x1", ", ".join(head)))
    column = f"{depth}-layer"
    df = pd.DataFrame.from_records(records, columns=["layer name", "output size", column])
    flops = _multiply_adds(model)
    exponent = 9 if flops >= 10 ** 9 else len(str(flops)) - 1  # the paper writes 11.3x10^9
    df.loc[len(df)] = ["FLOPs", "", f"{flops / 10 ** exponent:.2f}x10^{exponent}"]
    df["params"] = [params.get(r, "") for r in df["layer name"]]  # "" on the FLOPs row
    return df
