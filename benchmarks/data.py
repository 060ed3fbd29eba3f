"""The synthetic inputs every benchmark uses (NumPy only, so the reference process of
:mod:`benchmarks.worker` can make the same ones without importing zoo)."""

from __future__ import annotations

import numpy as np


def batch(shape, batch_size, num_classes, seed=0, label_shape=()):
    """One training batch: inputs uniform in [-1, 1] and integer labels, one per image, or
    with ``label_shape`` (a segmentation model's output height and width, see
    :func:`label_shape`) one per output pixel."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (batch_size, *shape)).astype("float32")
    y = rng.integers(0, num_classes, (batch_size, *label_shape)).astype("int32")
    return x, y


def label_shape(model) -> tuple:
    """The shape of one image's labels for ``model``'s output ``[N, ..., classes]``: ``()``
    for a classifier, the mask's height and width for a segmentation model (U-Net's
    unpadded convolutions make its output smaller than its input)."""
    return tuple(model.output_shape[1:-1])


def images(shape, n, seed=0):
    """Raw pixels 0..255, as a client would send them."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape)).astype("float32")


def images_per_run(batch_size, images):
    """Images an inference repetition predicts: ``images`` rounded down to whole batches,
    at least one batch."""
    return max(batch_size, (images // batch_size) * batch_size)
