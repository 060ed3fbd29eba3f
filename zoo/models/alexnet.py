"""AlexNet (Krizhevsky, Sutskever and Hinton 2012), as Géron's Table 14-2 prints it."""

from __future__ import annotations

import keras

from zoo import common, weights as zoo_weights
from zoo.blocks import Row, build_rows, check_head_options, min_size_of_rows
from zoo.registry import builtin

__all__ = ["alexnet", "alexnet_rows"]


def alexnet_rows(local_response_normalization=False, dropout=0.5):
    """AlexNet's layer table (Géron Table 14-2) as data.

    The 3x3/2 max pooling after C7 that reduces 13x13 to 6x6 before F8 is not a
    row in the book's table; it belongs to C7 here (``C7_pool``).

    Args:
        local_response_normalization: add LRN after C1 and C3.
        dropout: dropout rate after F8 and F9 (0: no dropout layers).

    Returns:
        A tuple of :class:`zoo.blocks.Row`, ``C1`` to ``Out``.
    """
    lrn = (("lrn",),) if local_response_normalization else ()
    drop = (("dropout", dropout),) if dropout else ()
    return (
        Row("C1", "conv", 96, 11, 4, "valid", "relu", after=lrn),
        Row("S2", "maxpool", None, 3, 2, "valid"),
        Row("C3", "conv", 256, 5, 1, "same", "relu", after=lrn),
        Row("S4", "maxpool", None, 3, 2, "valid"),
        Row("C5", "conv", 384, 3, 1, "same", "relu"),
        Row("C6", "conv", 384, 3, 1, "same", "relu"),
        Row("C7", "conv", 256, 3, 1, "same", "relu", after=(("maxpool", 3, 2),)),
        Row("F8", "dense", 4096, activation="relu", after=drop),
        Row("F9", "dense", 4096, activation="relu", after=drop),
        Row("Out", "dense", 1000, activation="softmax"),
    )


MIN_SIZE = min_size_of_rows(alexnet_rows())


@builtin
def alexnet(*, input_shape=None, num_classes=1000, include_top=True, pooling=None,
            classifier_activation="softmax", weights=None, name=None,
            local_response_normalization=False, dropout=0.5):
    """AlexNet.

    Reference: Krizhevsky et al., "ImageNet classification with deep
    convolutional neural networks", NIPS 2012; layer table as in Géron,
    *Hands-On Machine Learning*, Table 14-2 (62,378,344 parameters with 1,000
    classes at 227x227x3).

    Args:
        input_shape: ``(H, W, C)``; default ``(227, 227, 3)``; ``H, W >= 67``.
        num_classes: number of output classes.
        include_top: include F8, F9 and the output layer; otherwise the model ends
            after C7's max pooling (6x6x256 at 227x227).
        pooling: with ``include_top=False``: ``None``, ``"avg"`` or ``"max"``.
        classifier_activation: output activation, ``None`` for logits.
        weights: ``None`` or the path of a weights file.
        name: model name (default ``"alexnet"``).
        local_response_normalization: add LRN after the ReLU of C1 and C3
            (depth radius 2, bias 1, alpha 2e-5, beta 0.75).
        dropout: dropout rate after F8 and F9 (0 disables).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on a bad argument, e.g. an input smaller than 67x67, a dropout
            rate outside [0, 1) or a missing weights file.

    Example:
        >>> model = alexnet(input_shape=(128, 128, 1), num_classes=2)
    """
    common.check_bool("alexnet", local_response_normalization=local_response_normalization)
    common.check_rate("alexnet", "dropout", dropout)
    num_classes = check_head_options(
        "alexnet", num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation)
    shape = common.check_classifier_args(
        "alexnet", input_shape=input_shape, default_shape=(227, 227, 3), min_size=MIN_SIZE,
        num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation, weights=weights, name=name)
    rows = alexnet_rows(local_response_normalization, dropout)
    inputs = keras.Input(shape=shape, name="images")
    if include_top:
        x = build_rows(inputs, rows, num_classes=num_classes,
                       classifier_activation=classifier_activation)
    else:
        x = build_rows(inputs, rows, stop_before="F8")
        x = common.feature_pooling(x, pooling)
    model = keras.Model(inputs, x, name=name or "alexnet")
    if weights is not None:
        zoo_weights.load_file(model, "alexnet", weights)
    return model
