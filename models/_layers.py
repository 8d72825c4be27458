"""Building blocks shared by the reference models: an activation by name, sized for its channels."""
from __future__ import annotations

from torch import nn

from edgeact.activations import canonical_name
from edgeact.nn import make_activation


def activation(name, channels: int) -> nn.Module:
    """A fresh activation module for `name` (a registry name, or a zero-argument module factory).

    PReLU gets one learnable slope per channel; every other activation is parameter-free here.
    """
    if callable(name) and not isinstance(name, str):
        return name()
    if canonical_name(name) == "prelu":
        return make_activation("prelu", num_parameters=channels)
    return make_activation(name)


def conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act=None) -> nn.Sequential:
    """Conv (no bias: BatchNorm follows) → BatchNorm → activation (or none when `act` is None)."""
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(out_ch)]
    if act is not None:
        layers.append(activation(act, out_ch))
    return nn.Sequential(*layers)
