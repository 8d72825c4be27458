"""ONNX Runtime's full 8-bit u8s8 kernels on x86-64 AVX2: the arithmetic of backend 'onnxruntime:x86-avx2'.

For a user whose fleet is AVX2 (AMD Zen 2/3, pre-Ice-Lake Xeons) and who wants int8 weights (u8 activations ×
s8 weights, zero point 0) instead of the portable U8U8 export. On AVX2, MLAS multiplies u8 × s8 with
VPMADDUBSW, which adds each PAIR of neighbouring products with int16 saturation before VPMADDWD widens the
pair sums to int32 (onnxruntime/core/mlas/lib/x86_64/QgemmU8S8KernelAvx2.S, ConvSymKernelAvx2.S). Which
products are neighbours is fixed by how MLAS packs K:

- Conv (group 1, Cin % 4 == 0, Cout % 8 == 0, Cout ≥ 16): the symmetric indirect conv (convsym.cpp,
  MlasConvSymPackW): per kernel position, input channels in blocks of 4, pairs (c, c+1) for even c.
- Other convs: im2col in NHWC order (QLinearConv's ReorderFilter, K = (kh, kw, c) with c fastest) into the
  u8s8 QGEMM (PackedK = 4, K padded with zeros): pairs (2j, 2j+1) of that flattened K. For Cin % 4 == 0
  both orders give the same pairs, so one rule covers both paths.
- Linear (QGemm): pairs (2j, 2j+1) of the input features.
- Depthwise convs (MlasConvSymDepthwiseKernelAvx2, MlasConvDepthwise) widen to int32 first: exact.

The u8 operand is the code ORT sees inside the graph (an int8 model's code + 128, see export/onnx_model.py)
with the zero point NOT subtracted: MLAS multiplies raw u8 values and subtracts z·Σw afterwards in int32.
So acc = Σ_pairs sat16(a_i·w_i + a_j·w_j) − z_a·Σw + bias, then the usual float32 requantization.

On a CPU without this saturation (AVX-VNNI / AVX-512 VNNI, SSE4.1, aarch64) a file written for this backend
differs from the converted model exactly where a pair saturates; edgeact verify says so before comparing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from edgeact.export.onnxruntime.arithmetic import OnnxRuntimeArithmetic

INT16_MIN, INT16_MAX = -32768, 32767
# Pair products held at once (elements of float64): bounds memory for large layers.
_CHUNK_ELEMENTS = 1 << 22


def saturating_pair_dot(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ over pairs (2j, 2j+1) of K of sat16(a_2j·w_2j + a_2j+1·w_2j+1): VPMADDUBSW then VPMADDWD.

    a: (N, K, L) u8 values in MLAS's K order; w: (O, K) s8 codes. Returns (N, O, L) int64.
    """
    n, k, length = a.shape
    o = w.shape[0]
    a, w = a.double(), w.double()
    if k % 2:
        a = F.pad(a, (0, 0, 0, 1))
        w = F.pad(w, (0, 1))
        k += 1
    pairs = k // 2
    a2 = a.reshape(n, pairs, 2, length)
    w2 = w.reshape(o, pairs, 2)
    total = torch.zeros(n, o, length, dtype=torch.float64)
    step = max(1, _CHUNK_ELEMENTS // max(1, n * o * length))
    for s in range(0, pairs, step):
        p = torch.einsum("npkl,opk->nopl", a2[:, s:s + step], w2[:, s:s + step])  # exact: |p| < 2^17
        total += p.clamp_(INT16_MIN, INT16_MAX).sum(2)
    return total.round().long()


class OnnxRuntimeX86Avx2Arithmetic(OnnxRuntimeArithmetic):
    """'onnxruntime' with MLAS's AVX2 u8s8 accumulation (pair saturation) for conv and linear."""

    name = "onnxruntime-x86-avx2"

    def accumulate(self, module, q: torch.Tensor) -> torch.Tensor:
        from edgeact.quantized import modules as Q  # the modules import this package

        if isinstance(module, Q.QuantizedConv2d) and not module.depthwise:
            return self._conv(module, q)
        if isinstance(module, Q.QuantizedLinear):
            return self._linear(module, q)
        return super().accumulate(module, q)

    @staticmethod
    def _u8(q: torch.Tensor, qp) -> tuple[torch.Tensor, int]:
        """The codes as ORT's uint8 tensor inside the graph, and that tensor's zero point."""
        shift = 128 if qp.dtype == "int8" else 0
        return q.long() + shift, qp.zero_point + shift

    def _conv(self, m, q: torch.Tensor) -> torch.Tensor:
        a, za = self._u8(q, m.in_qparams[0])
        pad = m.padding if isinstance(m.padding, tuple) else (m.padding, m.padding)
        # Padding is the input zero point (QLinearConv's padding vector), part of K like any input.
        a = F.pad(a.double(), (pad[1], pad[1], pad[0], pad[0]), value=float(za))
        kh, kw = m.kernel_size
        cols = F.unfold(a, (kh, kw), dilation=m.dilation, stride=m.stride)  # (N, C·kh·kw, L), c slowest
        n, _, length = cols.shape
        c = a.shape[1]
        cols = cols.reshape(n, c, kh * kw, length).permute(0, 2, 1, 3)  # (N, kh·kw, C, L): c fastest
        w = m.weight_codes.long()  # (O, C/g, kh, kw)
        o, cg = w.shape[0], w.shape[1]
        og = o // m.groups
        outs = []
        for g in range(m.groups):
            ag = cols[:, :, g * cg:(g + 1) * cg].reshape(n, kh * kw * cg, length)
            wg = w[g * og:(g + 1) * og].permute(0, 2, 3, 1).reshape(og, kh * kw * cg)
            outs.append(saturating_pair_dot(ag, wg) - za * wg.sum(1).reshape(1, -1, 1))
        acc = torch.cat(outs, 1) + m.bias_codes.long().reshape(1, -1, 1)
        ho = (a.shape[2] - m.dilation[0] * (kh - 1) - 1) // m.stride[0] + 1
        wo = (a.shape[3] - m.dilation[1] * (kw - 1) - 1) // m.stride[1] + 1
        return acc.reshape(n, o, ho, wo)

    def _linear(self, m, q: torch.Tensor) -> torch.Tensor:
        a, za = self._u8(q, m.in_qparams[0])
        w = m.weight_codes.long()
        lead = a.shape[:-1]
        a = a.reshape(-1, a.shape[-1], 1)
        acc = saturating_pair_dot(a, w)[..., 0] - za * w.sum(1) + m.bias_codes.long()
        return acc.reshape(*lead, w.shape[0])


ARITHMETIC = OnnxRuntimeX86Avx2Arithmetic()
