"""A multilayer perceptron on the native 8×8 digits (64 inputs)."""
from __future__ import annotations

from torch import nn

from ._layers import activation as make_act


class MLP(nn.Module):
    """Linear → activation, `len(hidden)` times, then a linear classifier.

    `hidden` sets depth and width: MLP(hidden=(32,) * 10, activation='sigmoid') is the deep sigmoid
    stack whose first layers get vanishing gradients at initialisation.
    """

    input_size = 8

    def __init__(self, activation="relu", hidden=(128, 64), num_classes: int = 10, in_features: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        self.activation = activation if isinstance(activation, str) else None
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), make_act(activation, h)]
            width = h
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.classifier(self.dropout(self.features(x.flatten(1))))
