"""Input-size rules of the built-in models that need neither TensorFlow nor Keras.

The builders (:mod:`zoo.models`) import them from here, and ``zoo train`` applies them (with
:mod:`zoo.catalog`'s smallest inputs) before TensorFlow's import and before any data is
loaded: :func:`check_input_shape` refuses an image size a model does not take with the
message its builder gives.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from zoo import common

__all__ = ["Level", "unet_levels", "UNET_LEVELS", "UNET_DEFAULT_INPUT_SHAPE", "UNET_MIN_SIZE",
           "output_size", "valid_input_sizes", "check_unet_size", "GOOGLENET_MIN_REASON",
           "check_input_shape"]

#: GoogLeNet's auxiliary classifiers' unpadded average pooling: size and stride.
GOOGLENET_AUX_POOL, GOOGLENET_AUX_STRIDE = 5, 3
GOOGLENET_MIN_REASON = (
    f"the auxiliary classifiers' unpadded {GOOGLENET_AUX_POOL}x{GOOGLENET_AUX_POOL}/"
    f"{GOOGLENET_AUX_STRIDE} average pooling after inception 4a and 4d needs it (the main "
    f"path is padded throughout); the limit holds with aux_logits=False too: it is one "
    f"network, trained with them and used without")
#: Where a classifier's smallest input comes from, where its builder says otherwise than
#: :data:`zoo.common.MIN_SIZE_REASON`.
MIN_REASONS = {"googlenet": GOOGLENET_MIN_REASON}


@dataclasses.dataclass(frozen=True)
class Level:
    """One resolution level of U-Net.

    Attributes:
        index: 0 for full resolution; level ``i`` is at stride ``2**i``.
        filters: channels of the level's 3x3 convolutions (and of the
            up-convolution that brings the expanding path to this level).
        convs: 3x3 convolutions (+ ReLU) per level on each path.
    """

    index: int
    filters: int
    convs: int = 2


def unet_levels(depth: int = 4, base_filters: int = 64) -> tuple:
    """The levels of a U-Net with ``depth`` poolings: ``base_filters * 2**i``
    filters at level ``i``; the last level is the bottom of the U.

    Args:
        depth: number of poolings.
        base_filters: filters of level 0.

    Returns:
        A tuple of ``depth + 1`` :class:`Level` (the paper's is :data:`UNET_LEVELS`).
    """
    return tuple(Level(i, base_filters * 2 ** i) for i in range(depth + 1))


# Ronneberger et al. 2015, Fig. 1: 64, 128, 256, 512, 1024 filters, 4 poolings.
UNET_LEVELS = unet_levels(4, 64)
UNET_DEFAULT_INPUT_SHAPE = (572, 572, 1)


def output_size(size: int, levels=UNET_LEVELS, padding: str = "valid") -> Optional[int]:
    """Output size of U-Net for input ``size``, or ``None`` if ``size`` is not
    valid: every 2x2 max pooling must see an even size (the paper's rule, so that
    the expanding path lines up with the contracting one) and every size must
    stay positive.

    Args:
        size: input height (or width).
        levels: the network's levels (:func:`unet_levels`); default the paper's.
        padding: ``"valid"`` (the paper's unpadded convolutions) or ``"same"``.

    Returns:
        The output size, or ``None`` for an invalid ``size``.
    """
    skips = []
    for level in levels[:-1]:
        for _ in range(level.convs):
            size = common.conv_output_size(size, 3, 1, padding)
            if size < 1:
                return None
        skips.append(size)
        if size % 2:
            return None
        size //= 2
    for _ in range(levels[-1].convs):
        size = common.conv_output_size(size, 3, 1, padding)
        if size < 1:
            return None
    for level, skip in zip(reversed(levels[:-1]), reversed(skips)):
        size *= 2  # 2x2 up-convolution
        if size > skip or (skip - size) % 2:
            return None
        for _ in range(level.convs):
            size = common.conv_output_size(size, 3, 1, padding)
            if size < 1:
                return None
    return size


def valid_input_sizes(limit: int = 1024, levels=UNET_LEVELS, padding: str = "valid") -> list:
    """All valid input sizes below ``limit`` (e.g. 188, 204, ..., 572, ... for the paper's
    network).

    Args:
        limit: sizes from 1 up to ``limit - 1`` are tried.
        levels: the network's levels (:func:`unet_levels`); default the paper's.
        padding: ``"valid"`` or ``"same"``, as in :func:`output_size`.

    Returns:
        A sorted list of ints (empty when none is below ``limit``).
    """
    return [s for s in range(1, limit) if output_size(s, levels, padding) is not None]


def _smallest_valid(levels, padding: str) -> int:
    """The smallest valid input size. Every valid size is that plus a multiple of
    ``2**depth``: going down, each level's unpadded convolutions take ``2 * convs`` pixels
    and its pooling halves, so an input is ``2**depth * bottom + c`` for the size ``bottom``
    entering the lowest level, and the sizes that stay positive are those of the bottoms
    from the smallest that works on. Found from the bottom up, not by trying every input
    size (``2**depth`` of them between two valid ones: a search that never ended for a
    large ``depth``)."""
    for bottom in range(1, 1 << 16):
        size = bottom
        for level in reversed(levels[:-1]):
            size = 2 * size + (2 * level.convs if padding == "valid" else 0)
        if output_size(size, levels, padding) is not None:
            return size
    raise ValueError(f"unet: no valid input size for these levels: {levels!r}")


def _nearest_valid(size: int, levels, padding: str) -> tuple:
    """The valid input sizes nearest ``size``: ``(below or None, above)``."""
    smallest, period = _smallest_valid(levels, padding), 2 ** (len(levels) - 1)
    below = None if size <= smallest else smallest + (size - 1 - smallest) // period * period
    above = smallest if size < smallest else smallest + ((size - smallest) // period + 1) * period
    return below, above


#: The paper's U-Net's smallest input (``zoo.catalog``'s ``min_input_size`` of unet).
UNET_MIN_SIZE = _smallest_valid(UNET_LEVELS, "valid")


def check_unet_size(shape, levels, padding) -> None:
    """Refuse a U-Net input ``shape`` ``(H, W, ...)`` no network of ``levels`` takes with
    ``padding``, naming the nearest valid sizes."""
    for what, size in (("height", shape[0]), ("width", shape[1])):
        if output_size(size, levels, padding) is not None:
            continue
        depth = len(levels) - 1
        below, above = _nearest_valid(size, levels, padding)
        nearest = ", ".join(str(s) for s in (below, above) if s is not None)
        if padding == "same":
            rule = f"a multiple of 2**depth = {2 ** depth}"
        else:
            rule = ("a size for which every 2x2 max pooling sees an even size and the "
                    "unpadded convolutions leave a positive output")
        same = ""
        if padding == "valid" and all(output_size(s, levels, "same") is not None
                                      for s in shape[:2]):
            same = (f" padding='same' (--model-arg padding=same) takes {shape[0]}x{shape[1]}, "
                    f"its output at the input's size.")
        raise ValueError(f"unet: input {what} {size} is not valid for padding={padding!r} with "
                         f"depth={depth}: it must be {rule}; nearest valid: {nearest}.{same} "
                         f"Received: input_shape={tuple(shape)}")


def check_input_shape(model_name, input_shape, model_args=None) -> None:
    """Refuse ``input_shape`` for the built-in ``model_name`` built with the builder options
    ``model_args`` as its builder would (the same message): below a classifier's smallest
    input (:mod:`zoo.catalog`), or a size U-Net without a backbone does not take. Nothing
    is checked where the rule needs the builder: a model of one's own, a U-Net backbone,
    options the builder refuses anyway.
    """
    from zoo import catalog
    info = catalog.INFO.get(model_name)
    if info is None:
        return
    args = dict(model_args or {})
    if info.family != "unet":
        common.resolve_input_shape(model_name, input_shape, info.default_input_shape,
                                   info.min_input_size,
                                   min_reason=MIN_REASONS.get(model_name,
                                                              common.MIN_SIZE_REASON))
        return
    padding, depth = args.get("padding"), args.get("depth")
    if (args.get("backbone") is not None or padding not in (None, "valid", "same")
            or not (depth is None or (common.is_integer(depth) and depth >= 1))):
        return
    shape = common.resolve_input_shape("unet", input_shape, UNET_DEFAULT_INPUT_SHAPE, 1)
    check_unet_size(shape, unet_levels(4 if depth is None else int(depth)), padding or "valid")
