"""ResNet-50 in PyTorch: the same network as ``zoo.resnet50`` / ``keras.applications.ResNet50``.

Written here because torchvision is not a dependency. The layout follows the Keras
ResNet v1 (He et al. 2015, "Deep Residual Learning for Image Recognition"): 7x7/2 stem with
bias, 3x3/2 max pooling, bottleneck stages 3-4-6-3 whose first block downsamples on its
first 1x1 convolution (torchvision's "v1.5" moves the stride to the 3x3 convolution),
convolutions with bias, batch normalisation with epsilon 1.001e-5, global average pooling
and a softmax-free dense layer (the loss takes logits). With 1,000 classes it has the same
25,636,712 parameters (25,583,592 trainable) as the Keras model.

Only used to compare speed; it is never trained to accuracy.
"""

from __future__ import annotations

import torch
from torch import nn

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride)
EXPANSION = 4
BN_EPSILON = 1.001e-5


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4) with a projection shortcut in each stage's first block."""

    def __init__(self, in_channels, width, stride, project):
        super().__init__()
        out = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride)
        self.bn1 = nn.BatchNorm2d(width, eps=BN_EPSILON)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width, eps=BN_EPSILON)
        self.conv3 = nn.Conv2d(width, out, 1)
        self.bn3 = nn.BatchNorm2d(out, eps=BN_EPSILON)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (nn.Sequential(nn.Conv2d(in_channels, out, 1, stride=stride),
                                       nn.BatchNorm2d(out, eps=BN_EPSILON))
                         if project else nn.Identity())

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self.shortcut(x))


class ResNet50(nn.Module):
    """ResNet-50 v1 for NCHW float32 input (channels-first, as PyTorch expects).

    Args:
        num_classes: width of the final dense layer (logits).
        in_channels: image channels.

    Example:
        >>> model = ResNet50(num_classes=1000)
        >>> model(torch.zeros(2, 3, 160, 160)).shape
        torch.Size([2, 1000])
    """

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3),
            nn.BatchNorm2d(64, eps=BN_EPSILON),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1))
        blocks, channels = [], 64
        for width, repeats, stride in STAGES:
            for i in range(repeats):
                blocks.append(Bottleneck(channels, width, stride if i == 0 else 1, i == 0))
                channels = width * EXPANSION
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def count_parameters(model) -> tuple:
    """``(total, trainable)`` counted the Keras way: batch-norm running statistics count
    as (non-trainable) parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for name, b in model.named_buffers()
                  if name.endswith(("running_mean", "running_var")))
    return trainable + buffers, trainable
