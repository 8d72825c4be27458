"""LiteRT's own int8 kernels, without the XNNPACK delegate: semantics 'tflite-builtin' and 'tflite-reference'.

`backend="tflite"` reproduces LiteRT's default configuration, in which the XNNPACK delegate runs the
model ops with float32 requantization. The same .tflite file run with BUILTIN_WITHOUT_DEFAULT_DELEGATES
('builtin', LiteRT's optimized kernels) or BUILTIN_REF ('reference') computes the model ops with
TFLite's fixed-point multipliers instead, and differs at a few codes near rounding ties. These two
semantics reproduce those kernels as ai-edge-litert 2.3 runs them on x86-64, code for code. The
formulas come from the kernel sources (LiteRT's tflite/kernels) where the build follows them, and from
measurement where it does not (which loops run as vector code, and how those round); every one is
confirmed op by op against LiteRT on parameters chosen to make ties frequent (tests/test_tflite_builtin.py).

LiteRT builds its optimized kernels with their NEON code on x86 too (NEON_2_SSE), and those vector
loops round differently from the scalar loops that finish a row: VQRDMULH and a rounding shift whose
ties go up (`fixedpoint.multiply_by_quantized_multiplier_vector`), where gemmlowp's scalar
RoundingDivideByPOT rounds ties away from zero (`fixedpoint.multiply_by_quantized_multiplier`). So
which elements take the vector path matters, and is reproduced:

| op (as edgeact exports it)   | 'tflite-builtin'                                        | 'tflite-reference'            |
|------------------------------|---------------------------------------------------------|-------------------------------|
| QUANTIZE (float → int8)      | flat NHWC elements in whole blocks of 8: rint(x·f32(1/s)); the rest round-half-away(x / s) in double | round-half-away(x / s), float32 |
| CONV_2D, FULLY_CONNECTED     | vector multiplier on every channel (the gemm's output stage, measured) | CONV: scalar; FC: round-half-away(double(acc)·s_in·s_w/s_out) |
| DEPTHWISE_CONV_2D (and average pooling, exported as one) | channels in whole blocks of 8: vector; the rest scalar | scalar |
| ADD                          | gemmlowp general add: inputs << 20, three scalar multipliers (below) | same             |
| MUL                          | scalar multiplier f32(f32(s_a·s_b)/s_out) (below)        | same                          |
| MEAN over H, W, keep dims    | optimized Mean: Σq with f32(s_in/(count·s_out)), zero point folded into a float bias; channels in whole blocks of 16: vector, the rest scalar | reference QuantizedMeanOrSum |
| MEAN over H, W, no keep dims | reference QuantizedMeanOrSum: (Σq − count·z_in) with the multiplier of s_in/s_out divided by count in fixed point, scalar | same |

Multipliers come from TFLite's QuantizeMultiplier of the double s_in·s_w[c]/s_out per channel
(PopulateConvolutionQuantizationParams); a FULLY_CONNECTED with one output channel is per-tensor and
its optimized kernel takes float32(s_in·s_w)/s_out instead. Activations are those of 'tflite'
(`plan_activation` emits only kernels whose arithmetic is the same in every kernel set).

The optimized ADD and MUL loops narrow the rescaled result to int16 (saturating) and add the output
zero point in int16 (wrapping) before saturating to int8; the scalar tail and the reference kernels
saturate once. They differ only when |result| + |z_out| passes 32767 — for MUL an output scale below
about 2·s_a·s_b, reproduced for the elementwise, per-channel and scalar broadcasts (vector blocks of
16 per inner run); for ADD an output scale ~100× below the inputs', where the vector loop's
intermediates overflow too: refused ('tflite-builtin' raises, as XNNPACK's ADD does past 2^8).

Measured limits: LiteRT splits MEAN's channels across threads, so the vector/scalar split above holds
for one thread (edgeact runs LiteRT with one); BUILTIN_REF has no int8 ELU kernel.

Two ops share one `Arithmetic` hook with another (a conv and a depthwise conv both call
`requantize_accumulator`; MEAN and average pooling both call `average`) but run different kernels
here, so the hooks take the `op=` kind that the `edgeact.quantized` modules pass.
"""
from __future__ import annotations

import numpy as np
import torch

from edgeact import fixedpoint as fp
from edgeact.errors import UnsupportedError
from edgeact.qparams import QuantParams
from edgeact.export.litert import arithmetic as T
from edgeact.export.litert.arithmetic import TFLiteArithmetic


# Elements per NEON block in the optimized kernels: whole blocks take the vector path.
QUANTIZE_BLOCK = 8  # AffineQuantize<int8>, over the flat tensor
DEPTHWISE_BLOCK = 8  # optimized_ops::Quantize (depthwise output stage), over output channels
MEAN_BLOCK = 16  # optimized_integer_ops::MeanImpl, over channels
BINARY_BLOCK = 16  # optimized int8 ADD / MUL, over each inner run of the (broadcast) output
INT16_MAX = 2**15 - 1

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
AVERAGE_OPS = ("MEAN", "AVERAGE_POOL_2D")

_F32 = np.float32


def _codes(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.int64)


def _tensor(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


def _finish(y: np.ndarray, zero_point: int, qp: QuantParams) -> torch.Tensor:
    return _tensor(np.clip(y + zero_point, qp.qmin, qp.qmax))


def _channel_shape(values, ndim: int, axis: int) -> np.ndarray:
    """Per-channel values shaped to broadcast along `axis` of an `ndim`-dimensional tensor."""
    values = np.asarray(values)
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape) if values.size > 1 else values.reshape(())


def _vector_channels(n_channels: int, block: int, ndim: int, axis: int) -> np.ndarray:
    """True for the channels a NEON loop over whole blocks of `block` channels handles."""
    return _channel_shape(np.arange(n_channels) < n_channels // block * block, ndim, axis)


def conv_multipliers(in_qp: QuantParams, w_qp: QuantParams, out_qp: QuantParams, *,
                     per_tensor_fc: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(Q31 multiplier, shift) per output channel, as TFLite prepares a conv / fully connected layer:
    QuantizeMultiplier(double(s_in)·double(s_w[c]) / double(s_out)). A FULLY_CONNECTED with a single
    weight scale is per-tensor, and its optimized kernel uses float32(s_in·s_w) / s_out instead."""
    s_in, s_out = np.float64(_F32(in_qp.scale)), np.float64(_F32(out_qp.scale))
    pairs = []
    for s_w in np.atleast_1d(w_qp.scale_array()).astype(_F32):
        real = (np.float64(_F32(_F32(s_in) * s_w)) if per_tensor_fc else s_in * np.float64(s_w)) / s_out
        pairs.append(fp.quantize_multiplier(float(real)))
    m, shift = zip(*pairs)
    return np.array(m, np.int64), np.array(shift, np.int64)


def add_multipliers(qa: QuantParams, qb: QuantParams, out_qp: QuantParams, left_shift: int = 20):
    """TFLite's int8 ADD (add.cc, PrepareGeneralSubOp): both inputs scaled by 2^20, then by
    s/(2·max(s_a, s_b)), the sum by 2·max(s_a, s_b)/(2^20·s_out); three (multiplier, shift) pairs."""
    twice_max = 2.0 * float(max(_F32(qa.scale), _F32(qb.scale)))  # float, exact
    return (fp.quantize_multiplier(float(_F32(qa.scale)) / twice_max),
            fp.quantize_multiplier(float(_F32(qb.scale)) / twice_max),
            fp.quantize_multiplier(twice_max / float(_F32(_F32(1 << left_shift) * _F32(out_qp.scale)))))


def mul_multiplier(qa: QuantParams, qb: QuantParams, out_qp: QuantParams) -> tuple[int, int]:
    """TFLite's int8 MUL (mul.cc): QuantizeMultiplier(s_a·s_b/s_out), every step in float32."""
    return fp.quantize_multiplier(float(_F32(_F32(_F32(qa.scale) * _F32(qb.scale)) / _F32(out_qp.scale))))


def _largest_offset(qp: QuantParams) -> int:
    """max |q − z| over the codes of `qp`."""
    return max(abs(qp.qmin - qp.zero_point), abs(qp.qmax - qp.zero_point))


def _binary_vector_elements(shape_a, shape_b) -> np.ndarray | None:
    """Which output elements (NCHW) the optimized ADD / MUL compute in their 16-wide vector loop: whole
    blocks of each inner run of the NHWC output — the whole tensor when the shapes are equal or one
    input is a scalar, one pixel's channels for a per-channel (N, C, 1, 1) operand. None: another
    broadcast, not measured."""
    out = tuple(np.broadcast_shapes(tuple(shape_a), tuple(shape_b)))
    n = int(np.prod(out))
    if len(out) == 4:
        index = np.arange(n).reshape(out[0], out[2], out[3], out[1]).transpose(0, 3, 1, 2)
    else:
        index = np.arange(n).reshape(out)
    small = min((tuple(shape_a), tuple(shape_b)), key=lambda sh: int(np.prod(sh)))
    if tuple(shape_a) == tuple(shape_b) or int(np.prod(small)) == 1:
        run = n
    elif len(out) == 4 and len(small) == 4 and small[1:] == (out[1], 1, 1):
        run = out[1]
    else:
        return None
    return index % run < run // BINARY_BLOCK * BINARY_BLOCK


def _narrowed_in_vector(raw: np.ndarray, out_qp: QuantParams) -> np.ndarray:
    """The vector loop's output stage: saturate to int16, add z_out in int16 (wrapping), saturate."""
    y = fp.wrap(np.clip(raw, -INT16_MAX - 1, INT16_MAX) + out_qp.zero_point, 16)
    return np.clip(y, out_qp.qmin, out_qp.qmax)


# edgeact's op kinds (what edgeact.quantized passes to the hooks) → the TFLite kernel they run as.
OP_KINDS = {"conv2d": "CONV_2D", "grouped_conv2d": "CONV_2D", "depthwise_conv2d": "DEPTHWISE_CONV_2D",
            "linear": "FULLY_CONNECTED",
            "mean": "MEAN", "avg_pool2d": "AVERAGE_POOL_2D"}


def _kernel(op: str | None, allowed: tuple[str, ...]) -> str:
    """The TFLite kernel for an op kind ('depthwise_conv2d') or a TFLite op name ('DEPTHWISE_CONV_2D')."""
    kernel = OP_KINDS.get(op, op)
    if kernel not in allowed:
        raise ValueError(f"op must be one of {allowed} (or edgeact's {sorted(OP_KINDS)}), got {op!r}")
    return kernel


def _weighted_op(acc: torch.Tensor, op: str | None) -> str:
    return _kernel(op, WEIGHTED_OPS)


def _average_op(op: str | None) -> str:
    return _kernel(op, AVERAGE_OPS)


def _nhwc_flat(x: torch.Tensor) -> torch.Tensor:
    """x's elements in the order of the TFLite tensor (4-D tensors are NHWC in the file)."""
    return (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).reshape(-1)


def _from_nhwc_flat(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.dim() == 4:
        n, c, h, w = like.shape
        return flat.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()
    return flat.reshape(like.shape)


def _quantize_scalar(x: np.ndarray, qp: QuantParams, divide_in=np.float64) -> np.ndarray:
    """TFLite's scalar QUANTIZE: TfLiteRound(x / scale), ties away from zero. The optimized kernel's tail
    divides by the scale as a double, the reference kernel in float32 (`divide_in`) — measured."""
    with np.errstate(invalid="ignore", over="ignore"):
        y = fp.round_half_away(x.astype(divide_in) / divide_in(_F32(qp.scale)))
    return np.clip(np.nan_to_num(y), -(2.0**31), 2.0**31 - 1).astype(np.int64)


def _mean_reference(sums: np.ndarray, count: int, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
    """reference_ops::QuantizedMeanOrSum: the multiplier of s_in/s_out divided by `count` in fixed point
    ((m << k) / count, shift − k with k = floor(log2 count)), applied to Σq − count·z_in, scalar."""
    m, e = fp.quantize_multiplier(float(np.float64(_F32(in_qp.scale)) / np.float64(_F32(out_qp.scale))))
    k = min(count.bit_length() - 1, 32, 31 + e)
    return fp.multiply_by_quantized_multiplier(sums - in_qp.zero_point * count, (m << k) // count, e - k)


class TFLiteBuiltinArithmetic(TFLiteArithmetic):
    """LiteRT's optimized builtin kernels (BUILTIN_WITHOUT_DEFAULT_DELEGATES) on x86-64; see the module doc."""

    name = "tflite-builtin"
    uses_chains = False  # its ADD/MUL/LEAKY_RELU are scalar loops: the table is faster (a file's chains still run)
    kernel_set = "builtin"
    add_overflow_alternative = " (or use backend='tflite-reference')"  # where the ADD refusal can point

    # ---- QUANTIZE ---------------------------------------------------------------------------------
    def quantize(self, x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
        flat = _nhwc_flat(x.detach().float())
        n_vector = flat.numel() // QUANTIZE_BLOCK * QUANTIZE_BLOCK
        inv = torch.tensor(_F32(1.0) / _F32(qp.scale))
        vector = torch.round(flat[:n_vector] * inv).numpy().astype(np.int64)  # float32 product, ties to even
        scalar = _quantize_scalar(flat[n_vector:].numpy(), qp)
        codes = np.clip(np.concatenate([vector, scalar]) + qp.zero_point, qp.qmin, qp.qmax)
        return _from_nhwc_flat(_tensor(codes), x)

    # ---- CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ---------------------------------------------
    def requantize_accumulator(self, acc: torch.Tensor, in_qp: QuantParams, w_qp: QuantParams,
                               out_qp: QuantParams, channel_axis: int = 1, *, op: str | None = None,
                               depth: int | None = None) -> torch.Tensor:
        """`op`: 'CONV_2D', 'DEPTHWISE_CONV_2D' or 'FULLY_CONNECTED'; default: the calling module's."""
        grouped = op == "grouped_conv2d"  # LiteRT runs a grouped CONV_2D with its reference kernel (measured)
        op = _weighted_op(acc, op)
        a = _codes(acc)
        per_tensor_fc = op == "FULLY_CONNECTED" and np.size(w_qp.scale_array()) == 1
        m, shift = conv_multipliers(in_qp, w_qp, out_qp, per_tensor_fc=per_tensor_fc)
        m, shift = _channel_shape(m, a.ndim, channel_axis), _channel_shape(shift, a.ndim, channel_axis)
        if grouped:
            return _finish(fp.multiply_by_quantized_multiplier(a, m, shift), out_qp.zero_point, out_qp)
        return _finish(self._requantize(a, op, m, shift, in_qp, w_qp, out_qp, channel_axis), out_qp.zero_point, out_qp)

    def _requantize(self, a, op, m, shift, in_qp, w_qp, out_qp, channel_axis) -> np.ndarray:
        vector = fp.multiply_by_quantized_multiplier_vector(a, m, shift)
        if op != "DEPTHWISE_CONV_2D":
            return vector
        scalar = fp.multiply_by_quantized_multiplier(a, m, shift)
        return np.where(_vector_channels(a.shape[channel_axis], DEPTHWISE_BLOCK, a.ndim, channel_axis), vector, scalar)

    # ---- ADD / MUL ----------------------------------------------------------------------------------
    def add(self, a, qa: QuantParams, b, qb: QuantParams, out_qp: QuantParams) -> torch.Tensor:
        largest = (_largest_offset(qa) * float(qa.scale) + _largest_offset(qb) * float(qb.scale)) / float(out_qp.scale)
        if self.kernel_set == "builtin" and largest + abs(out_qp.zero_point) >= INT16_MAX:
            raise UnsupportedError(
                f"ADD of scales {qa.scale:.3g} + {qb.scale:.3g} into {out_qp.scale:.3g}: the sum can reach "
                f"{largest:.0f} output steps, past the int16 range LiteRT's optimized ADD computes in — its "
                "codes are not reproduced there; recalibrate so that the sum's range is comparable to its "
                f"inputs'{self.add_overflow_alternative}")
        (m_a, s_a), (m_b, s_b), (m_o, s_o) = add_multipliers(qa, qb, out_qp)
        x_a = (_codes(a) - qa.zero_point) << 20
        x_b = (_codes(b) - qb.zero_point) << 20
        total = fp.multiply_by_quantized_multiplier(x_a, m_a, s_a) + fp.multiply_by_quantized_multiplier(x_b, m_b, s_b)
        return _finish(fp.multiply_by_quantized_multiplier(total, m_o, s_o), out_qp.zero_point, out_qp)

    def mul(self, a, qa: QuantParams, b, qb: QuantParams, out_qp: QuantParams) -> torch.Tensor:
        m, s = mul_multiplier(qa, qb, out_qp)
        product = (_codes(a) - qa.zero_point) * (_codes(b) - qb.zero_point)
        raw = fp.multiply_by_quantized_multiplier(product, m, s)
        scalar = np.clip(raw + out_qp.zero_point, out_qp.qmin, out_qp.qmax)
        largest = _largest_offset(qa) * _largest_offset(qb) * m * 2.0 ** (s - 31) + 1
        if self.kernel_set != "builtin" or largest + abs(out_qp.zero_point) < INT16_MAX:
            return _tensor(scalar)  # the vector loop's int16 steps cannot overflow: both loops agree
        vector = _binary_vector_elements(a.shape, b.shape)
        if vector is None:
            raise UnsupportedError(
                f"MUL of {tuple(a.shape)} by {tuple(b.shape)} with output scale {out_qp.scale:.3g} (below "
                "~2·s_a·s_b): LiteRT's optimized MUL wraps codes past the int16 range in its vector loop, "
                "reproduced for equal shapes, per-channel and scalar operands only; recalibrate the output")
        return _tensor(np.where(vector, _narrowed_in_vector(raw, out_qp), scalar))

    # ---- MEAN / average pooling -------------------------------------------------------------------
    def average(self, window_sum: torch.Tensor, count: int, in_qp: QuantParams, out_qp: QuantParams, *,
                op: str | None = None) -> torch.Tensor:
        """`op`: 'MEAN' (keep dims iff `window_sum` is 4-D) or 'AVERAGE_POOL_2D' (exported as a
        DEPTHWISE_CONV_2D of ones at `arithmetic.average_pool_weight_scale`); default: the
        calling module's."""
        op, sums = _average_op(op), _codes(window_sum)
        if op == "AVERAGE_POOL_2D":
            w_scale = float(T.average_pool_weight_scale(in_qp, out_qp, count))
            w_qp = QuantParams(w_scale, 0, "int8", narrow=True)
            m, shift = conv_multipliers(in_qp, w_qp, out_qp)
            y = self._requantize(sums - count * in_qp.zero_point, "DEPTHWISE_CONV_2D", m[0], shift[0], in_qp, w_qp,
                                 out_qp, 1)
            return _finish(y, out_qp.zero_point, out_qp)
        if sums.ndim == 4:
            return self._mean_keep_dims(sums, count, in_qp, out_qp)
        return _finish(_mean_reference(sums, count, in_qp, out_qp), out_qp.zero_point, out_qp)

    def _mean_keep_dims(self, sums, count, in_qp, out_qp) -> torch.Tensor:
        """optimized_integer_ops::Mean: Σq (zero point not subtracted) times f32(s_in/(count·s_out)),
        plus the float bias z_out − (int)round-half-away(f32(z_in·s_in/s_out))."""
        s_in, s_out = _F32(in_qp.scale), _F32(out_qp.scale)
        temp = _F32(_F32(_F32(in_qp.zero_point) * s_in) / s_out)
        temp = _F32(temp + _F32(0.5)) if temp > 0 else _F32(temp - _F32(0.5))
        bias = out_qp.zero_point - int(temp)
        m, shift = fp.quantize_multiplier(float(_F32(s_in / _F32(_F32(count) * s_out))))
        vector = fp.multiply_by_quantized_multiplier_vector(sums, m, shift)
        scalar = fp.multiply_by_quantized_multiplier(sums, m, shift)
        y = np.where(_vector_channels(sums.shape[1], MEAN_BLOCK, sums.ndim, 1), vector, scalar)
        return _finish(y, bias, out_qp)


    # activation chains: LiteRT's own LUT and LEAKY_RELU kernels (ADD and MUL: this class's)
    def chain_lut(self, op: str, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
        from edgeact.export.litert.arithmetic import NativeKernel, native_table

        return native_table(NativeKernel(op), in_qp, out_qp)

    def chain_leaky_relu(self, q: torch.Tensor, in_qp: QuantParams, out_qp: QuantParams, alpha: float) -> torch.Tensor:
        from edgeact.export.litert.arithmetic import leaky_relu_table

        return torch.from_numpy(leaky_relu_table(in_qp, out_qp, alpha))[q.long() + 128]


class TFLiteReferenceArithmetic(TFLiteBuiltinArithmetic):
    """LiteRT's reference kernels (BUILTIN_REF): every op scalar; see the module doc."""

    name = "tflite-reference"
    kernel_set = "reference"

    def quantize(self, x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
        codes = np.clip(_quantize_scalar(x.detach().float().numpy(), qp, _F32) + qp.zero_point, qp.qmin, qp.qmax)
        return _tensor(codes)

    def _requantize(self, a, op, m, shift, in_qp, w_qp, out_qp, channel_axis) -> np.ndarray:
        if op == "FULLY_CONNECTED":  # reference FullyConnectedPerChannel: round(double(acc) · scale)
            s_in, s_out = np.float64(_F32(in_qp.scale)), np.float64(_F32(out_qp.scale))
            scale = s_in * w_qp.scale_array().astype(_F32).astype(np.float64) / s_out
            return fp.round_half_away(a.astype(np.float64) * _channel_shape(scale, a.ndim, channel_axis)).astype(np.int64)
        return fp.multiply_by_quantized_multiplier(a, m, shift)

    def average(self, window_sum: torch.Tensor, count: int, in_qp: QuantParams, out_qp: QuantParams, *,
                op: str | None = None) -> torch.Tensor:
        if _average_op(op) == "MEAN":
            return _finish(_mean_reference(_codes(window_sum), count, in_qp, out_qp), out_qp.zero_point, out_qp)
        return super().average(window_sum, count, in_qp, out_qp, op="AVERAGE_POOL_2D")


BUILTIN = TFLiteBuiltinArithmetic()
REFERENCE = TFLiteReferenceArithmetic()
ARITHMETIC = BUILTIN
ARITHMETIC_BY_NAME = {BUILTIN.name: BUILTIN, REFERENCE.name: REFERENCE}

__all__ = ["TFLiteBuiltinArithmetic", "TFLiteReferenceArithmetic", "conv_multipliers",
           "add_multipliers", "mul_multiplier"]
