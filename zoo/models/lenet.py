"""LeNet-5 (LeCun, Bottou, Bengio and Haffner 1998), as Géron's Table 14-1 prints it."""

from __future__ import annotations

import keras

from zoo import common, weights as zoo_weights
from zoo.blocks import Row, build_rows, check_head_options, min_size_of_rows
from zoo.registry import builtin

__all__ = ["lenet5", "LENET5_ROWS", "LENET5_MODERN_ROWS"]

# The paper's network, row for row (Géron Table 14-1; LeCun et al. 1998).
LENET5_ROWS = (
    Row("C1", "conv", 6, 5, 1, activation="tanh"),
    Row("S2", "subsample", None, 2, 2, activation="tanh"),
    Row("C3", "partialconv", 16, 5, 1, activation="tanh"),
    Row("S4", "subsample", None, 2, 2, activation="tanh"),
    Row("C5", "conv", 120, 5, 1, activation="tanh"),
    Row("F6", "dense", 84, activation="tanh"),
    Row("Out", "rbf", 10),
)

# The common simplification: dense C3, plain average pooling, softmax output.
LENET5_MODERN_ROWS = (
    Row("C1", "conv", 6, 5, 1, activation="tanh"),
    Row("S2", "avgpool", None, 2, 2),
    Row("C3", "conv", 16, 5, 1, activation="tanh"),
    Row("S4", "avgpool", None, 2, 2),
    Row("C5", "conv", 120, 5, 1, activation="tanh"),
    Row("F6", "dense", 84, activation="tanh"),
    Row("Out", "dense", 10),
)

VARIANTS = {"classic": LENET5_ROWS, "modern": LENET5_MODERN_ROWS}
MIN_SIZE = min_size_of_rows(LENET5_ROWS)


@builtin
def lenet5(*, input_shape=None, num_classes=10, include_top=True, pooling=None,
           classifier_activation="softmax", weights=None, name=None, variant="classic"):
    """LeNet-5.

    Reference: LeCun et al., "Gradient-based learning applied to document
    recognition", Proc. IEEE 1998; layer table as in Géron, *Hands-On Machine
    Learning*, Table 14-1.

    ``variant="classic"`` (default) is the paper's network: trainable
    subsampling layers S2/S4 (one coefficient and one bias per map, then tanh),
    C3 connected to subsets of S2's maps as in the paper's Table I (1,516
    parameters), and an output layer of Euclidean RBF units with fixed +1/-1
    parameter vectors (840 non-trainable parameters) whose negative squared
    distances serve as logits; 60,000 trainable parameters in all.
    ``variant="modern"`` is the usual simplification: dense C3, plain average
    pooling, a dense softmax output (61,706 parameters).

    Args:
        input_shape: ``(H, W, C)``; default ``(32, 32, 1)``; ``H, W >= 32``.
        num_classes: number of output classes (default 10; at least 2 for the classic
            variant, whose RBF outputs are never above 0).
        include_top: include F6 and the output layer; otherwise the model ends at C5.
        pooling: with ``include_top=False``: ``None`` (C5's feature map), ``"avg"`` or ``"max"``.
        classifier_activation: activation on the output (``None`` returns logits; for the
            classic variant, logits are the negative squared RBF distances).
        weights: ``None`` or the path of a weights file.
        name: model name (default ``"lenet5"``).
        variant: ``"classic"`` or ``"modern"``.

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on a bad argument, e.g. an input smaller than 32x32.

    Example:
        >>> model = lenet5()
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    """
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(f"lenet5: variant must be one of {sorted(VARIANTS)}. "
                         f"Received: variant={variant!r}")
    num_classes = check_head_options(
        "lenet5", num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation)
    shape = common.check_classifier_args(
        "lenet5", input_shape=input_shape, default_shape=(32, 32, 1), min_size=MIN_SIZE,
        num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation, weights=weights, name=name)
    if variant == "classic" and include_top and num_classes == 1:
        raise ValueError("lenet5: the classic variant's output is minus the squared distance to "
                         "each class's RBF code, never above 0: one class would score at most "
                         "0.5 after a sigmoid (0 as a logit) for every input. Allowed: "
                         "num_classes >= 2, or variant='modern' for one sigmoid unit. Received: "
                         "num_classes=1, variant='classic'")
    rows = VARIANTS[variant]
    inputs = keras.Input(shape=shape, name="images")
    if include_top:
        x = build_rows(inputs, rows, num_classes=num_classes,
                       classifier_activation=classifier_activation)
    else:
        x = build_rows(inputs, rows, stop_before="F6")
        x = common.feature_pooling(x, pooling)
    model = keras.Model(inputs, x, name=name or "lenet5")
    if weights is not None:
        zoo_weights.load_file(model, "lenet5", weights)
    return model
