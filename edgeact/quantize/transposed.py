"""Transposed convolution and bilinear upsampling as zero insertion on codes followed by a plain conv.

A transposed conv (stride s, padding p, output_padding a, dilation d, groups g, kernel k) equals: put s−1 zeros
between neighbouring input elements, pad d·(k−1)−p zeros before and d·(k−1)−p+a after, then an ordinary conv
(stride 1, same dilation and groups) with the kernel flipped in space and in/out channels swapped per group.
The zeros are the zero point's code (every edgeact range contains 0.0), so the insertion moves codes and adds
no arithmetic; the conv is the integer conv each backend already models. convert() writes the pair, where the
formats allow, as one phase conv on the original input followed by depth-to-space (`subpixel`): the same
nonzero products without the multiplications by inserted zeros. Bilinear upsampling by a whole factor f
(align_corners=False) is the same construction with a fixed depthwise "tent" kernel (weights j/(2f) per axis)
after replicating the edge element once, so every output is torch's 2×2 blend of its neighbours.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def insert_zeros(x: torch.Tensor, stride: tuple[int, int], pads: tuple[int, int, int, int], value=0,
                 edge: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """(N, C, H, W) → replicate the border (eh, ew) times, put stride−1 `value`s between neighbours along H and W,
    then pad (left, right, top, bottom) with `value` (negative: crop)."""
    eh, ew = edge
    x = torch.cat([x[:, :, :1]] * eh + [x] + [x[:, :, -1:]] * eh, dim=2)
    x = torch.cat([x[:, :, :, :1]] * ew + [x] + [x[:, :, :, -1:]] * ew, dim=3)
    n, c, h, w = x.shape
    sh, sw = stride
    out = torch.full((n, c, (h - 1) * sh + 1, (w - 1) * sw + 1), value, dtype=x.dtype, device=x.device)
    out[:, :, ::sh, ::sw] = x
    left, right, top, bottom = pads
    out = F.pad(out, (max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)), value=value)
    hh, ww = out.shape[2], out.shape[3]
    return out[:, :, max(-top, 0):hh - max(-bottom, 0), max(-left, 0):ww - max(-right, 0)]


class ZeroInsert2d(nn.Module):
    """The data movement in front of the conv a ConvTranspose becomes (float side; zeros are exact codes)."""

    def __init__(self, stride: tuple[int, int], pads: tuple[int, int, int, int]):
        super().__init__()
        self.stride, self.pads = tuple(int(s) for s in stride), tuple(int(p) for p in pads)

    def forward(self, x):
        return insert_zeros(x, self.stride, self.pads)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pads={self.pads}"


def _two(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def as_zero_insert_and_conv(ct: nn.ConvTranspose2d) -> tuple[ZeroInsert2d, nn.Conv2d]:
    """The (ZeroInsert2d, Conv2d) pair computing `ct` (same float function, up to summation order)."""
    (kh, kw), (sh, sw), (ph, pw) = _two(ct.kernel_size), _two(ct.stride), _two(ct.padding)
    (ah, aw), (dh, dw), g = _two(ct.output_padding), _two(ct.dilation), ct.groups
    eh, ew = dh * (kh - 1) - ph, dw * (kw - 1) - pw
    insert = ZeroInsert2d((sh, sw), (ew, ew + aw, eh, eh + ah))
    cin, cout_g = ct.weight.shape[0], ct.weight.shape[1]
    conv = nn.Conv2d(cin, cout_g * g, (kh, kw), 1, 0, (dh, dw), g, bias=ct.bias is not None)
    with torch.no_grad():
        w = ct.weight.detach().reshape(g, cin // g, cout_g, kh, kw).transpose(1, 2)  # (g, out/g, in/g, kh, kw)
        conv.weight.copy_(w.reshape(cout_g * g, cin // g, kh, kw).flip(2, 3))
        if ct.bias is not None:
            conv.bias.copy_(ct.bias.detach())
    return insert, conv.eval()


def rewrite_conv_transpose(gm: fx.GraphModule, add_module, around_2d) -> None:
    """Every ConvTranspose2d/1d module (with a BatchNorm right after it folded in) → ZeroInsert2d + Conv2d;
    a 1-D one runs on (N, C, 1, L) between unsqueeze(2) and squeeze(2)."""
    graph = gm.graph
    modules = dict(gm.named_modules())
    for node in list(graph.nodes):
        mod = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(mod, (nn.ConvTranspose1d, nn.ConvTranspose2d)) or mod.padding_mode != "zeros":
            continue
        if len(node.args) > 1 or node.kwargs:
            from edgeact.errors import UnsupportedError
            from edgeact.tracing import describe

            raise UnsupportedError(
                f"cannot quantize {type(mod).__name__} called with output_size at {describe(node)}: the output size "
                "would be known only at run time; give the module output_padding (the extra rows/columns "
                "output_size asks for) and call it with the input alone")
        ct = mod
        if isinstance(ct, nn.ConvTranspose1d):
            as2d = nn.ConvTranspose2d(ct.in_channels, ct.out_channels, (1, ct.kernel_size[0]), (1, ct.stride[0]),
                                      (0, ct.padding[0]), (0, ct.output_padding[0]), ct.groups,
                                      ct.bias is not None, (1, ct.dilation[0]))
            with torch.no_grad():
                as2d.weight.copy_(ct.weight.unsqueeze(2))
                if ct.bias is not None:
                    as2d.bias.copy_(ct.bias)
            ct = as2d
        insert, conv = as_zero_insert_and_conv(ct)
        users = list(node.users)
        bn_type = nn.BatchNorm2d if isinstance(mod, nn.ConvTranspose2d) else nn.BatchNorm1d
        if len(users) == 1 and users[0].op == "call_module" and isinstance(modules.get(users[0].target), bn_type):
            # folded into the equivalent conv (torch's transpose=True fold assumes groups=1)
            conv = fuse_conv_bn_eval(conv, modules[users[0].target].eval())
            users[0].replace_all_uses_with(node)
            graph.erase_node(users[0])
        insert_name = add_module(gm, f"{node.target}.insert", insert)
        conv_name = add_module(gm, f"{node.target}.conv", conv)
        created = []
        with graph.inserting_before(node):
            x = node.args[0]
            if isinstance(mod, nn.ConvTranspose1d):
                x = graph.call_method("unsqueeze", (x, 2))
                created.append(x)
            created.append(graph.call_module(insert_name, (x,)))
            y = graph.call_module(conv_name, (created[-1],))
            created.append(y)
            if isinstance(mod, nn.ConvTranspose1d):
                y = graph.call_method("squeeze", (y, 2))
                created.append(y)
        for n in created:  # the user's module path and source line, for messages
            n.meta = dict(node.meta)
        node.replace_all_uses_with(y)
        graph.erase_node(node)


def subpixel(w_eq: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int], in_hw: tuple[int, int],
             groups: int = 1):
    """The same transposed conv as sh·sw phase convs in one: (codes (g·sh·sw·O_g, I/g, Kmh, Kmw), conv padding
    (ph, pw), crop (left, right, top, bottom)) for a stride-1 conv (same groups) of the *original* input,
    followed by `depth_to_space` (channel (gi, rh, rw, o_g): group-major, so the groups stay contiguous; for
    groups 1 that is DCR) and that crop. Phase r of the output only ever meets taps r, r + s, … of the kernel,
    so it skips the products with inserted zeros; each output sums the same nonzero products as the conv after
    zero insertion. `w_eq`: that conv's (flipped) codes (O, I/g, Kh, Kw), dilation 1; `pads`: the insertion's
    (left, right, top, bottom); `in_hw`: the input's H, W."""
    o, i, kh, kw = w_eq.shape
    w_t = w_eq[:, :, ::-1, ::-1]  # the transposed conv's own kernel, (O, I/g, Kh, Kw)
    left, right, top, bottom = pads
    plans = []
    for k, s, before, after, n in ((kh, stride[0], top, bottom, in_hw[0]), (kw, stride[1], left, right, in_hw[1])):
        p = k - 1 - before  # torch's padding
        length = (n - 1) * s + 1 + before + after - k + 1  # output size
        km = -(-k // s)
        delta = max(0, -(-(p + length) // s) - (n + km - 1))
        pad = km - 1 + delta
        q = n + 2 * pad - km + 1  # phase conv output size
        begin = delta * s + p
        plans.append((km, pad, begin, q * s - begin - length))
    (kmh, pad_h, top_c, bottom_c), (kmw, pad_w, left_c, right_c) = plans
    sh, sw = stride
    og = o // groups
    codes = np.zeros((groups, sh, sw, og, i, kmh, kmw), w_eq.dtype)
    grouped = w_t.reshape(groups, og, i, kh, kw)
    for rh in range(sh):
        for rw in range(sw):
            for jh in range(kmh):
                for jw in range(kmw):
                    a, b = rh + sh * (kmh - 1 - jh), rw + sw * (kmw - 1 - jw)
                    if a < kh and b < kw:
                        codes[:, rh, rw, :, :, jh, jw] = grouped[:, :, :, a, b]
    return codes.reshape(o * sh * sw, i, kmh, kmw), (pad_h, pad_w), (left_c, right_c, top_c, bottom_c)


def phase_order(values: np.ndarray, stride: tuple[int, int], groups: int) -> np.ndarray:
    """Per-output-channel `values` (O,) → per phase channel (g·sh·sw·O_g,), in `subpixel`'s channel order."""
    og = len(values) // groups
    per = np.asarray(values).reshape(groups, 1, og)
    return np.broadcast_to(per, (groups, stride[0] * stride[1], og)).reshape(-1)


def depth_to_space(x: torch.Tensor, block: tuple[int, int], crop: tuple[int, int, int, int],
                   groups: int = 1) -> torch.Tensor:
    """Channels (gi, rh, rw, o_g) → output channel gi·O_g + o_g at row h·bh + rh, column w·bw + rw (for groups 1:
    ONNX DepthToSpace 'DCR' / TFLite DEPTH_TO_SPACE where square), then the crop (left, right, top, bottom)."""
    n, c, h, w = x.shape
    bh, bw = block
    og = c // (groups * bh * bw)
    y = x.reshape(n, groups, bh, bw, og, h, w).permute(0, 1, 4, 5, 2, 6, 3)
    y = y.reshape(n, groups * og, h * bh, w * bw)
    left, right, top, bottom = crop
    return y[:, :, top:y.shape[2] - bottom, left:y.shape[3] - right]


# ------------------------------------------------------------------------------------------ bilinear upsampling
def tent(f: int) -> np.ndarray:
    """Numerators (over 2f) of the 1-D kernel of a transposed conv with stride f that computes torch's
    bilinear upsampling by f (align_corners=False) from an input with its border replicated once."""
    k = 2 * f - (f % 2)
    return np.array([2 * f - abs(2 * j - (k - 1)) for j in range(k)], np.int64)


def _int8_kernel(num: np.ndarray, den: int) -> tuple[np.ndarray, float] | None:
    """(codes, scale) with codes·scale == num/den exactly and codes ≤ 127, or None if they do not fit."""
    g = math.gcd(int(np.gcd.reduce(num.ravel())), den)
    num, den = num // g, den // g
    m = 127 // int(num.max())
    if m == 0:
        return None
    if den & (den - 1) == 0:  # a power-of-two scale where one exists
        m = 1 << (m.bit_length() - 1)
    return num * m, 1.0 / (den * m)


MAX_FACTOR = 64  # 1-D tent numerators up to 2f − 1 over 2f must fit int8 codes


def _axis(f: int, align_corners: bool) -> tuple[np.ndarray, int, int, int]:
    """(kernel numerators, denominator, zero padding, border copies) of one axis.

    align_corners=False: output o samples (o + ½)/f − ½, clamped to the image — the tent over 2f after one
    border copy. align_corners=True with output size (H − 1)·f + 1: o samples o/f exactly — the tent
    1 − |t|/f over 2f − 1 taps, no border copy."""
    if align_corners:
        return np.array([f - abs(j - (f - 1)) for j in range(2 * f - 1)], np.int64), f, f - 1, 0
    taps = tent(f)
    return taps, 2 * f, (len(taps) - f - 2) // 2, 1


def bilinear_steps(fh: int, fw: int, align_corners: bool = False) -> list[tuple[dict, np.ndarray, float]]:
    """Bilinear ×(fh, fw) as [(zero insertion, depthwise kernel codes (Kh, Kw), weight scale)]: one 2-D tent
    kernel where its weights fit int8 exactly (factors up to 7), else rows then columns (one rounding in
    between, each pass on its own axis' insertion only). align_corners=True: output size (H − 1)·f + 1."""
    if max(fh, fw) > MAX_FACTOR:
        raise ValueError(f"by ×({fh}, {fw}), whose weights 1/(2f) per axis do not fit int8 codes beyond "
                         f"×{MAX_FACTOR}")
    (nh, dh, ph, eh), (nw, dw, pw, ew) = _axis(fh, align_corners), _axis(fw, align_corners)
    both = _int8_kernel(np.outer(nh, nw), dh * dw)
    if both is not None:
        return [(dict(stride=(fh, fw), pads=(pw, pw, ph, ph), edge=(eh, ew)), *both)]
    (ch, sh), (cw, sw) = _int8_kernel(nh, dh), _int8_kernel(nw, dw)
    return [(dict(stride=(fh, 1), pads=(0, 0, ph, ph), edge=(eh, 0)), ch.reshape(-1, 1), sh),
            (dict(stride=(1, fw), pads=(pw, pw, 0, 0), edge=(0, ew)), cw.reshape(1, -1), sw)]


def factors_of(src: tuple[int, int], dst: tuple[int, int], align_corners: bool) -> tuple[int, int] | None:
    """The whole factors taking spatial size `src` to `dst` (align_corners=True: (H − 1)·f + 1), or None."""
    out = []
    for a, b in zip(src, dst):
        if align_corners:
            f = (b - 1) // (a - 1) if a > 1 else (1 if b == 1 else None)
            ok = f is not None and f >= 1 and (a - 1) * f + 1 == b
        else:
            f = b // a
            ok = f >= 1 and a * f == b
        if not ok:
            return None
        out.append(f)
    return tuple(out)


def whole_factors(scale_factor) -> tuple[int, int] | None:
    """(fh, fw) if `scale_factor` is one or two whole numbers ≥ 1 (not both 1), else None."""
    if scale_factor is None:
        return None
    fs = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    if len(fs) != 2 or any(not isinstance(f, (int, float)) or f != int(f) or f < 1 for f in fs) or fs == (1, 1):
        return None
    return int(fs[0]), int(fs[1])


__all__ = ["ZeroInsert2d", "insert_zeros", "subpixel", "phase_order", "depth_to_space", "as_zero_insert_and_conv", "rewrite_conv_transpose", "tent",
           "bilinear_steps", "factors_of", "whole_factors", "MAX_FACTOR"]
