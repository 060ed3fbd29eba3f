"""Shared building blocks.

- :class:`Row` / :func:`build_rows`: a plain layer table (LeNet-5, AlexNet) as
  data, and the one function that walks it. Each row becomes one main layer
  named exactly as the row (``C1``, ``S2``, ...); auxiliary layers (activation,
  LRN, dropout, flatten, extra pooling) are named ``<row>_<what>`` and belong
  to their row in :func:`zoo.layer_table`.
- :func:`check_head_options`: the classifier options that only make sense together.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from keras import layers

from zoo import common


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a plain layer table.

    Attributes:
        name: the table's layer name (``C1``), also the Keras layer name.
        kind: ``conv``, ``avgpool``, ``maxpool``, ``subsample`` (LeNet's
            trainable subsampling), ``partialconv`` (LeNet's C3), ``dense``
            or ``rbf``.
        size: feature maps (conv) or units (dense); ``None`` for pooling.
        kernel: square kernel/window size.
        stride: stride.
        padding: ``"valid"`` or ``"same"``.
        activation: activation applied in this row, or ``None``.
        after: auxiliary layers that follow the main layer, in order:
            ``("lrn",)``, ``("dropout", 0.5)``, ``("maxpool", 3, 2)``.
    """

    name: str
    kind: str
    size: Optional[int] = None
    kernel: Optional[int] = None
    stride: Optional[int] = None
    padding: str = "valid"
    activation: Optional[str] = None
    after: tuple = ()

    @property
    def spatial(self) -> bool:
        return self.kind not in ("dense", "rbf")


def spatial_ops(rows):
    """``(kernel, stride, padding)`` of every spatial operation, in order
    (main layers and auxiliary pooling), for :func:`zoo.common.min_input_size`."""
    ops = []
    for row in rows:
        if row.spatial:
            ops.append((row.kernel, row.stride, row.padding))
        for aux in row.after:
            if aux[0] == "maxpool":
                ops.append((aux[1], aux[2], "valid"))
    return ops


def build_rows(x, rows, *, num_classes=None, classifier_activation=None, stop_before=None):
    """Apply the rows of a plain layer table to tensor ``x``.

    A ``Flatten`` (named ``<row>_flatten``) is inserted before the first dense
    row. The last row's size is replaced by ``num_classes`` and its activation by
    ``classifier_activation``. Building stops before the row named ``stop_before``.
    """
    from zoo.layers import LocalResponseNormalization, PartialConv2D, RBFOutput, Subsampling
    flat = False
    for i, row in enumerate(rows):
        if row.name == stop_before:
            break
        last = i == len(rows) - 1
        size = num_classes if last else row.size
        activation = classifier_activation if last else row.activation
        if not row.spatial and not flat:
            x = layers.Flatten(name=f"{row.name}_flatten")(x)
            flat = True
        if row.kind == "conv":
            x = layers.Conv2D(size, row.kernel, strides=row.stride, padding=row.padding,
                              activation=activation, name=row.name)(x)
        elif row.kind == "partialconv":
            from zoo.layers import LENET5_C3_CONNECTIONS
            x = PartialConv2D(LENET5_C3_CONNECTIONS, kernel_size=row.kernel,
                              activation=activation, name=row.name)(x)
        elif row.kind in ("avgpool", "maxpool", "subsample"):
            if row.kind == "avgpool":
                x = layers.AveragePooling2D(row.kernel, strides=row.stride, padding=row.padding,
                                            name=row.name)(x)
            elif row.kind == "maxpool":
                x = layers.MaxPooling2D(row.kernel, strides=row.stride, padding=row.padding,
                                        name=row.name)(x)
            else:
                if row.stride not in (None, row.kernel):
                    raise ValueError(f"Row {row.name}: a subsampling layer's stride is its "
                                     f"window ({row.kernel}). Received: stride={row.stride}")
                x = Subsampling(row.kernel, name=row.name)(x)
            if activation:
                x = layers.Activation(activation, name=f"{row.name}_act")(x)
        elif row.kind == "dense":
            x = layers.Dense(size, activation=activation, name=row.name)(x)
        elif row.kind == "rbf":
            x = RBFOutput(size, activation=activation, name=row.name)(x)
        else:
            raise ValueError(f"Unknown row kind {row.kind!r} in row {row.name}")
        for aux in row.after:
            if aux[0] == "lrn":
                x = LocalResponseNormalization(name=f"{row.name}_lrn")(x)
            elif aux[0] == "dropout":
                x = layers.Dropout(aux[1], name=f"{row.name}_dropout")(x)
            elif aux[0] == "maxpool":
                x = layers.MaxPooling2D(aux[1], strides=aux[2], name=f"{row.name}_pool")(x)
            else:
                raise ValueError(f"Unknown auxiliary layer {aux!r} in row {row.name}")
    return x


def check_head_options(model_name: str, *, num_classes, include_top, pooling,
                       classifier_activation):
    """The classifier options that only make sense together; returns ``num_classes``
    as a Python ``int`` (a NumPy integer such as ``labels.max() + 1`` is accepted).

    Raises:
        ValueError: ``pooling`` with ``include_top=True`` (the top has its own pooling;
            ``pooling`` shapes the features of ``include_top=False``), or a softmax over
            ``num_classes=1`` (always 1: one class takes ``"sigmoid"`` or ``None``).
    """
    if common.is_integer(num_classes):
        num_classes = int(num_classes)
    if include_top is True and pooling in common.POOLINGS and pooling is not None:
        raise ValueError(f"{model_name}: pooling applies to include_top=False (the features); "
                         f"the classifier of include_top=True has its own pooling. Received: "
                         f"include_top=True, pooling={pooling!r}. Allowed: pooling=None, or "
                         f"include_top=False with pooling None, 'avg' or 'max'.")
    softmax = classifier_activation == "softmax" or (
        callable(classifier_activation)
        and getattr(classifier_activation, "__name__", None) == "softmax")
    if include_top is True and type(num_classes) is int and num_classes == 1 and softmax:
        raise ValueError(f"{model_name}: a softmax over num_classes=1 output is 1 for every "
                         f"input; for one class (binary) use classifier_activation='sigmoid' "
                         f"(probabilities) or None (logits), or num_classes=2 with softmax. "
                         f"Received: num_classes=1, classifier_activation="
                         f"{classifier_activation!r}")
    return num_classes


def min_size_of_rows(rows) -> int:
    """Minimum input size of a plain layer table (see :func:`zoo.common.min_input_size`)."""
    return common.min_input_size(spatial_ops(rows))
