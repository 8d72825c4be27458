"""A small CNN for 16×16 digits: three conv stages, global average pooling, a linear classifier."""
from __future__ import annotations

from torch import nn

from ._layers import conv_bn_act


class SmallCNN(nn.Module):
    """conv3×3(16) → maxpool → conv3×3(32) → maxpool → conv3×3(64) → mean → dropout → linear.

    16×16 → 8×8 → 4×4 → 1×1; about 24 k parameters.
    """

    input_size = 16

    def __init__(self, activation="relu", num_classes: int = 10, widths=(16, 32, 64), dropout: float = 0.1):
        super().__init__()
        self.activation = activation if isinstance(activation, str) else None
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            conv_bn_act(1, c1, 3, act=activation),
            nn.MaxPool2d(2),
            conv_bn_act(c1, c2, 3, act=activation),
            nn.MaxPool2d(2),
            conv_bn_act(c2, c3, 3, act=activation),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c3, num_classes)

    def forward(self, x):
        x = self.features(x)
        x = x.mean((2, 3), keepdim=True).flatten(1)
        return self.classifier(self.dropout(x))
