"""The built-in models' metadata, readable without TensorFlow or Keras.

``zoo.list_models``, ``zoo.model_info``, ``zoo.registry.model_info_table`` and ``zoo list``
read this table, so they answer without importing the builders' modules (which import Keras,
~5 s). A builder's module is imported when the builder is asked for; its builders are
decorated with :func:`zoo.registry.builtin`, which gives each the :class:`ModelInfo` below
as ``zoo_info``. The minimum input sizes are derived from each model's layer data by its
module (``MIN_SIZE``, ``MIN_SIZES``, ...): tests check the values here against them, as they
check the parameter counts against the built models.
"""

from __future__ import annotations

from zoo.registry import ModelInfo

_RESNET_V1 = "He, Zhang, Ren and Sun, Deep residual learning for image recognition"
_RESNET_V2 = "He, Zhang, Ren and Sun, Identity mappings in deep residual networks"


def _resnet(name, params, trainable, *, version=1, weights=("imagenet",)):
    return ModelInfo(name=name, family="resnet", paper=_RESNET_V1 if version == 1 else _RESNET_V2,
                     year=2015 if version == 1 else 2016, task="classification",
                     default_input_shape=(224, 224, 3), min_input_size=1, params=params,
                     trainable_params=trainable, weights=weights)


# name -> the module that defines the builder (in the order the families register their
# layer-table formats: zoo/models/__init__.py)
MODULES = {
    "lenet5": "zoo.models.lenet",
    "alexnet": "zoo.models.alexnet",
    "googlenet": "zoo.models.inception",
    "inception_v3": "zoo.models.inception",
    "xception": "zoo.models.xception",
    **dict.fromkeys(("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                     "resnet50_v2", "resnet101_v2", "resnet152_v2"), "zoo.models.resnet"),
    "unet": "zoo.models.unet",
}

INFO = {info.name: info for info in (
    ModelInfo(name="lenet5", family="lenet", paper="LeCun et al., Gradient-based learning "
              "applied to document recognition", year=1998, task="classification",
              default_input_shape=(32, 32, 1), min_input_size=32, params=60_840,
              trainable_params=60_000, default_num_classes=10),
    ModelInfo(name="alexnet", family="alexnet", paper="Krizhevsky, Sutskever and Hinton, "
              "ImageNet classification with deep convolutional neural networks", year=2012,
              task="classification", default_input_shape=(227, 227, 3), min_input_size=67,
              params=62_378_344, trainable_params=62_378_344),
    ModelInfo(name="googlenet", family="googlenet", paper="Szegedy et al., Going deeper with "
              "convolutions", year=2014, task="classification",
              default_input_shape=(224, 224, 3), min_input_size=65, params=6_998_552,
              trainable_params=6_998_552),
    ModelInfo(name="inception_v3", family="inception_v3", paper="Szegedy et al., Rethinking "
              "the Inception architecture for computer vision", year=2015,
              task="classification", default_input_shape=(299, 299, 3), min_input_size=75,
              params=23_851_784, trainable_params=23_817_352, weights=("imagenet",)),
    ModelInfo(name="xception", family="xception", paper="Chollet, Xception: Deep learning "
              "with depthwise separable convolutions", year=2017, task="classification",
              default_input_shape=(299, 299, 3), min_input_size=7, params=22_910_480,
              trainable_params=22_855_952, weights=("imagenet",),
              # below 40x40 the middle flow works on 2x2 maps, where bfloat16 trained 0.76x
              # as fast as float32 on both CPUs measured (benchmarks/README.md, item 31)
              bfloat16_min_input_size=40),
    # torchvision publishes only the trainable counts of ResNet-18 and -34 (no batch-norm
    # statistics), and no ImageNet weights of them exist in Keras' format
    _resnet("resnet18", None, 11_689_512, weights=()),
    _resnet("resnet34", None, 21_797_672, weights=()),
    _resnet("resnet50", 25_636_712, 25_583_592),
    _resnet("resnet101", 44_707_176, 44_601_832),
    _resnet("resnet152", 60_419_944, 60_268_520),
    _resnet("resnet50_v2", 25_613_800, 25_568_360, version=2),
    _resnet("resnet101_v2", 44_675_560, 44_577_896, version=2),
    _resnet("resnet152_v2", 60_380_648, 60_236_904, version=2),
    ModelInfo(name="unet", family="unet", paper="Ronneberger, Fischer and Brox, U-Net: "
              "Convolutional networks for biomedical image segmentation", year=2015,
              task="segmentation", default_input_shape=(572, 572, 1), min_input_size=188,
              params=31_030_658, trainable_params=31_030_658, default_num_classes=2),
)}
