"""Small networks shared by the tests of prepare/convert and of both exporters."""
from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """The ONNX issue's model: conv → bn → act → depthwise conv → act (→ + residual) → pool → linear."""

    def __init__(self, act=nn.ReLU, in_channels: int = 3, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act1 = act()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.act2 = act()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.act1(self.bn(self.conv(x)))
        z = self.act2(self.dw(y))
        if self.residual:
            z = z + y
        return self.fc(torch.flatten(self.pool(z), 1))


def random_bn_statistics(model: nn.Module) -> nn.Module:
    """BatchNorm2d statistics and scales that are not the identity (from the global RNG), so folding is tested."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return model
