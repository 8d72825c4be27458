"""A MobileNetV3-Small-style network for 16×16 digits ("Searching for MobileNetV3", Howard et al. 2019).

The paper's building blocks at a size that suits 16×16 digits and trains in well under two minutes:
inverted residual blocks (1×1 expansion → depthwise k×k → optional squeeze-excite → linear 1×1
projection, with a residual connection when shape allows), squeeze-excite gated by a hard sigmoid,
5×5 depthwise kernels in the later blocks, and the efficient last stage (1×1 conv, global pooling, a
1×1 conv without BatchNorm, the classifier). About 74 k parameters (~300 KB as a float32 checkpoint).

Resolution: the stem keeps 16×16 (the paper's stem has stride 2 at 224×224; here that would leave
too little map), three stride-2 blocks give 8×8 → 4×4 → 2×2.

Activations: `activation` is used at every nonlinearity except the squeeze-excite gate, so that a study
row "mish" is the network with Mish throughout. The paper's own mix — ReLU in the early blocks,
hard-swish in the stem, later blocks and head — is MobileNetV3Small('hard_swish', early_activation='relu').
"""
from __future__ import annotations

from torch import nn

from ._layers import activation as make_act
from ._layers import conv_bn_act

# kernel, expanded width, out width, squeeze-excite, early (True) or late block, stride — Table 2 of the
# paper, thinned and cut to two stride-2 stages after the first.
BLOCKS = (
    (3, 16, 16, True, True, 2),
    (3, 48, 24, False, True, 2),
    (3, 64, 24, False, True, 1),
    (5, 96, 40, True, False, 2),
    (5, 96, 40, True, False, 1),
    (5, 96, 48, True, False, 1),
)


def _divisible(v: float, divisor: int = 8) -> int:
    """Round a width to a multiple of 8, as the paper's reference code does (never down by > 10%)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class SqueezeExcite(nn.Module):
    """x · gate(W2 · act(W1 · mean(x))): channel attention, the gate a hard sigmoid by default."""

    def __init__(self, channels: int, activation="relu", gate="hard_sigmoid", reduction: int = 4):
        super().__init__()
        squeezed = _divisible(channels / reduction)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = make_act(activation, squeezed)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = make_act(gate, channels)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        s = self.gate(self.expand(self.act(self.reduce(s))))
        return x * s


class InvertedResidual(nn.Module):
    """1×1 expand → depthwise k×k (stride) → [squeeze-excite] → 1×1 linear projection (+ input)."""

    def __init__(self, in_ch: int, kernel: int, expanded: int, out_ch: int, se: bool, activation, stride: int,
                 gate="hard_sigmoid"):
        super().__init__()
        self.use_residual = stride == 1 and in_ch == out_ch
        self.expand = conv_bn_act(in_ch, expanded, 1, act=activation) if expanded != in_ch else nn.Identity()
        self.depthwise = conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, act=activation)
        self.se = SqueezeExcite(expanded, activation, gate) if se else nn.Identity()
        self.project = conv_bn_act(expanded, out_ch, 1, act=None)  # linear bottleneck: no activation

    def forward(self, x):
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.use_residual else y


class MobileNetV3Small(nn.Module):
    input_size = 16

    def __init__(self, activation="hard_swish", num_classes: int = 10, early_activation=None,
                 gate="hard_sigmoid", stem_width: int = 16, last_width: int = 128, head_width: int = 128,
                 dropout: float = 0.2):
        super().__init__()
        self.activation = activation if isinstance(activation, str) else None
        early = activation if early_activation is None else early_activation
        self.stem = conv_bn_act(1, stem_width, 3, act=activation)
        blocks, width = [], stem_width
        for kernel, expanded, out_ch, se, is_early, stride in BLOCKS:
            blocks.append(InvertedResidual(width, kernel, expanded, out_ch, se, early if is_early else activation,
                                           stride, gate))
            width = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.last = conv_bn_act(width, last_width, 1, act=activation)
        self.head = nn.Conv2d(last_width, head_width, 1)  # no BatchNorm after pooling, as in the paper
        self.head_act = make_act(activation, head_width)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_width, num_classes)

    def forward(self, x):
        x = self.last(self.blocks(self.stem(x)))
        x = x.mean((2, 3), keepdim=True)
        x = self.head_act(self.head(x)).flatten(1)
        return self.classifier(self.dropout(x))
