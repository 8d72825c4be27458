"""semantics 'tflite-builtin' / 'tflite-reference' against LiteRT run without the XNNPACK delegate.

Op by op: single-op .tflite files run by LiteRT (BUILTIN_WITHOUT_DEFAULT_DELEGATES, BUILTIN_REF) on
parameters chosen so that rounding ties are frequent (output scale = input-product scale · 2^k), and
the accumulators computed independently (integer NumPy / float64 torch convolutions). Each test also
shows that it can fail: a formula that is wrong for that kernel (XNNPACK's, or another op's rounding
split) differs from LiteRT on the same data. Whole models: the small CNN with every activation and the
every-op model, 0 codes differ at every tensor on 100 inputs in both kernel sets.
"""
from __future__ import annotations

import warnings
from fractions import Fraction

import flatbuffers
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ai_edge_litert import schema_py_generated as schema
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import edgeact
from layouts import codes, nchw, nhwc
from edgeact import fixedpoint as fp
from edgeact.export.litert import interpreter as rt
from edgeact.errors import ModelFileError, UnsupportedError
from edgeact.export.litert.builder import ModelBuilder
from edgeact.export.litert.writer import to_tflite
from edgeact.export.litert.run import verify_tflite, with_backend
from edgeact.qparams import QuantParams
from edgeact.backend import get_backend
from edgeact.export.litert.run import KERNEL_SETS
from test_tflite_model import CHOICES, INPUTS, EveryOp, SmallCNN, converted, inputs, small_cnn_exported

MODES = ("builtin", "reference")
F32 = np.float32


def qp(scale, zero_point=0) -> QuantParams:
    return QuantParams(float(F32(scale)), int(zero_point), "int8")


def litert(data: bytes, feeds, mode: str) -> np.ndarray:
    return rt.run(rt.load(data, mode), feeds)[0]


# ---- fixed point: the vector (NEON) rounding against exact rationals --------------------------------

def round_half_up(q: Fraction) -> int:
    return (q + Fraction(1, 2)).__floor__()


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**31), 2**31 - 1), st.integers(0, 31))
def test_rounding_shift_right_up_rounds_ties_up(x, e):
    assert int(fp.rounding_shift_right_up(x, e)) == round_half_up(Fraction(x, 2**e))


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**24), 2**24), st.integers(2**30, 2**31 - 1), st.integers(-20, 0))
def test_vector_multiplier_is_two_roundings_half_up(x, m, shift):
    high = round_half_up(Fraction(x * m, 2**31))  # VQRDMULH
    assert int(fp.multiply_by_quantized_multiplier_vector(x, m, shift)) == round_half_up(Fraction(high, 2**-shift))


def test_scalar_and_vector_multipliers_differ_only_at_negative_ties():
    m = 1 << 30  # 0.5: VQRDMULH gives round-half-up(x/2), then the shift by 2 rounds again
    x = np.arange(-64, 65)
    scalar, vector = fp.multiply_by_quantized_multiplier(x, m, -2), fp.multiply_by_quantized_multiplier_vector(x, m, -2)
    high = [round_half_up(Fraction(int(v), 2)) for v in x]
    negative_ties = [int(v) for v, h in zip(x, high) if h < 0 and h % 4 == 2]
    assert list(x[scalar != vector]) == negative_ties and negative_ties
    assert list(vector) == [round_half_up(Fraction(h, 4)) for h in high]


# ---- single-op files --------------------------------------------------------------------------------

def quantize_file(n: int, q: QuantParams) -> bytes:
    b = ModelBuilder()
    x, y = b.tensor("x", (1, n), "float32"), b.tensor("y", (1, n), "int8", q)
    b.op("QUANTIZE", [x], [y], version=1)
    return b.finish([x], [y])


def conv_file(x_shape, in_qp, weights, w_scales, out_qp, bias, depthwise: bool) -> bytes:
    """CONV_2D (weights OHWI) or DEPTHWISE_CONV_2D (weights 1HWC), VALID, stride 1."""
    b = ModelBuilder()
    c = len(w_scales)
    x = b.tensor("x", x_shape, "int8", in_qp)
    dim = 3 if depthwise else 0
    wq = QuantParams(tuple(map(float, w_scales)), (0,) * c, "int8", axis=dim, narrow=True)
    w = b.constant("w", weights.astype(np.int8), "int8", wq, quantized_dimension=dim)
    bias_scale = tuple(float(F32(in_qp.scale) * s) for s in w_scales)
    bt = b.constant("b", bias.astype(np.int32), "int32", QuantParams(bias_scale, (0,) * c, "int32", axis=0),
                    quantized_dimension=0)
    kh, kw = weights.shape[1:3]
    y = b.tensor("y", (x_shape[0], x_shape[1] - kh + 1, x_shape[2] - kw + 1, c), "int8", out_qp)
    opts = schema.DepthwiseConv2DOptionsT() if depthwise else schema.Conv2DOptionsT()
    if depthwise:
        opts.depthMultiplier = 1
    opts.padding, opts.strideH, opts.strideW = schema.Padding.VALID, 1, 1
    opts.dilationHFactor = opts.dilationWFactor = 1
    b.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, w, bt], [y], opts)
    return b.finish([x], [y])


def fc_file(n, k, in_qp, weights, w_scales, out_qp, bias) -> bytes:
    b = ModelBuilder()
    c = len(w_scales)
    x = b.tensor("x", (n, k), "int8", in_qp)
    per_channel = c > 1
    wq = (QuantParams(tuple(map(float, w_scales)), (0,) * c, "int8", axis=0, narrow=True) if per_channel
          else QuantParams(float(w_scales[0]), 0, "int8", narrow=True))
    w = b.constant("w", weights.astype(np.int8), "int8", wq, quantized_dimension=0)
    bias_scale = [float(F32(in_qp.scale) * s) for s in w_scales]
    bq = (QuantParams(tuple(bias_scale), (0,) * c, "int32", axis=0) if per_channel
          else QuantParams(bias_scale[0], 0, "int32"))
    bt = b.constant("b", bias.astype(np.int32), "int32", bq, quantized_dimension=0)
    y = b.tensor("y", (n, c), "int8", out_qp)
    b.op("FULLY_CONNECTED", [x, w, bt], [y], schema.FullyConnectedOptionsT())
    return b.finish([x], [y])


def binary_file(op: str, shape_a, shape_b, qa, qb, out_qp) -> bytes:
    b = ModelBuilder()
    x, z = b.tensor("a", shape_a, "int8", qa), b.tensor("b", shape_b, "int8", qb)
    y = b.tensor("y", shape_a, "int8", out_qp)
    b.op(op, [x, z], [y], schema.AddOptionsT() if op == "ADD" else schema.MulOptionsT())
    return b.finish([x, z], [y])


def mean_file(shape, in_qp, out_qp, keep_dims: bool) -> bytes:
    b = ModelBuilder()
    x = b.tensor("x", shape, "int8", in_qp)
    axes = b.constant("axes", np.array([1, 2], np.int32), "int32")
    y = b.tensor("y", (shape[0], 1, 1, shape[3]) if keep_dims else (shape[0], shape[3]), "int8", out_qp)
    opts = schema.ReducerOptionsT()
    opts.keepDims = keep_dims
    b.op("MEAN", [x, axes], [y], opts)
    return b.finish([x], [y])


def tie_prone(rng, s_in, s_w, exponents=(3, 8)):
    """An output scale that makes s_in·s_w/s_out a power of two: a rounding tie every few codes."""
    return qp(F32(s_in) * F32(s_w) * 2.0 ** int(rng.integers(*exponents)), rng.integers(-20, 20))


# ---- op by op ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [13, 4099])
def test_quantize_blocks_and_tail(mode, n):
    """QUANTIZE on inputs at exact ties: the optimized kernel's 8-wide loop rounds x·(1/s) half to even,
    its scalar tail (and the reference kernel) rounds x/s half away from zero."""
    sem, xnnpack = get_backend(KERNEL_SETS[mode]).arithmetic, get_backend("tflite").arithmetic
    rng = np.random.default_rng(n)
    wrong = 0
    for _ in range(20):
        q = qp(rng.uniform(0.005, 0.2), rng.integers(-40, 40))
        x = F32((rng.integers(-150, 150, (1, n)) + 0.5) * F32(q.scale))
        got = litert(quantize_file(n, q), [x], mode).astype(np.int64)
        np.testing.assert_array_equal(codes(sem.quantize(torch.from_numpy(x), q)), got)
        wrong += int((codes(xnnpack.quantize(torch.from_numpy(x), q)) != got).sum())
    assert wrong > 0  # XNNPACK's arithmetic (half to even everywhere) would not pass


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("depthwise,channels", [(False, 5), (True, 12), (True, 20)])
def test_conv_and_depthwise_requantization(mode, depthwise, channels):
    """CONV_2D: the gemm's vector output stage on every channel. DEPTHWISE_CONV_2D: whole blocks of 8
    channels vector (ties up), the rest scalar (ties away); the reference kernels scalar throughout."""
    sem = get_backend(KERNEL_SETS[mode]).arithmetic
    rng = np.random.default_rng(channels + 100 * depthwise)
    cin = channels if depthwise else 3
    wrong_split = 0
    for _ in range(6):
        in_qp = qp(rng.uniform(0.005, 0.1), rng.integers(-20, 20))
        s_w = F32(rng.uniform(0.002, 0.02))
        w_scales = np.full(channels, s_w, F32)
        out_qp = tie_prone(rng, in_qp.scale, s_w)
        weights = rng.integers(-127, 128, (1, 3, 3, channels) if depthwise else (channels, 3, 3, cin))
        bias = rng.integers(-2000, 2000, channels)
        x = rng.integers(-128, 128, (4, 9, 9, cin))
        got = litert(conv_file(x.shape, in_qp, weights, w_scales, out_qp, bias, depthwise), [x.astype(np.int8)], mode)
        w_t = torch.from_numpy(weights.transpose(3, 0, 1, 2) if depthwise else weights.transpose(0, 3, 1, 2)).double()
        acc = F.conv2d((nchw(x) - in_qp.zero_point).double(), w_t, torch.from_numpy(bias).double(),
                       groups=channels if depthwise else 1).round().long()
        w_qp = QuantParams(tuple(map(float, w_scales)), (0,) * channels, "int8", axis=0, narrow=True)
        op = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        np.testing.assert_array_equal(nhwc(sem.requantize_accumulator(acc, in_qp, w_qp, out_qp, op=op)), got)
        other = "CONV_2D" if depthwise else "DEPTHWISE_CONV_2D"
        wrong_split += int((nhwc(sem.requantize_accumulator(acc, in_qp, w_qp, out_qp, op=other)) != got).sum())
    if mode == "builtin" and depthwise:
        assert wrong_split > 0  # the other op's vector/scalar split would not pass


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels", [1, 10])
def test_fully_connected_requantization(mode, channels):
    """Optimized FULLY_CONNECTED: vector output stage; one output channel is per-tensor, with the
    multiplier float32(s_in·s_w)/s_out. Reference: round-half-away(double(acc)·s_in·s_w/s_out)."""
    sem, xnnpack = get_backend(KERNEL_SETS[mode]).arithmetic, get_backend("tflite").arithmetic
    rng = np.random.default_rng(channels)
    wrong = 0
    for _ in range(10):
        in_qp = qp(rng.uniform(0.005, 0.1), rng.integers(-20, 20))
        s_w = F32(rng.uniform(0.002, 0.02))
        w_scales = np.full(channels, s_w, F32)
        out_qp = tie_prone(rng, in_qp.scale, s_w, (6, 9))  # |acc| ~ 10^4: outputs mostly in range
        weights, bias = rng.integers(-30, 31, (channels, 24)), rng.integers(-2000, 2000, channels)
        x = rng.integers(-128, 128, (64, 24))
        got = litert(fc_file(64, 24, in_qp, weights, w_scales, out_qp, bias), [x.astype(np.int8)], mode)
        acc = torch.from_numpy((x - in_qp.zero_point) @ weights.T + bias)
        w_qp = (QuantParams(tuple(map(float, w_scales)), (0,) * channels, "int8", axis=0, narrow=True) if channels > 1
                else QuantParams(float(s_w), 0, "int8", narrow=True))
        np.testing.assert_array_equal(codes(sem.requantize_accumulator(acc, in_qp, w_qp, out_qp,
                                                                       op="FULLY_CONNECTED")), got)
        wrong += int((codes(xnnpack.requantize_accumulator(acc, in_qp, w_qp, out_qp)) != got).sum())
    assert wrong > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op,shape_b", [("ADD", (3, 5, 5, 7)), ("ADD", (3, 1, 1, 7)), ("MUL", (3, 5, 5, 7)),
                                        ("MUL", (3, 1, 1, 7))])
def test_add_and_mul(mode, op, shape_b):
    """ADD: gemmlowp's general add (inputs << 20, three fixed-point multipliers, ties away from zero);
    MUL: one multiplier f32(s_a·s_b/s_out); elementwise and broadcast."""
    sem, xnnpack = get_backend(KERNEL_SETS[mode]).arithmetic, get_backend("tflite").arithmetic
    rng = np.random.default_rng(len(op) + shape_b[1])
    shape_a = (3, 5, 5, 7)
    wrong = 0
    for _ in range(20):
        qa, qb = qp(rng.uniform(0.01, 0.1), rng.integers(-30, 30)), qp(rng.uniform(0.01, 0.1), rng.integers(-30, 30))
        if op == "ADD":  # half the time equal input scales and s_out = 2·s_a: (a + b)/2 ties often
            if rng.random() < 0.5:
                qb = qp(qa.scale, qb.zero_point)
            out_qp = qp(2 * F32(qa.scale), rng.integers(-30, 30))
        else:
            out_qp = tie_prone(rng, qa.scale, qb.scale)
        a, b = rng.integers(-128, 128, shape_a), rng.integers(-128, 128, shape_b)
        got = litert(binary_file(op, shape_a, shape_b, qa, qb, out_qp), [a.astype(np.int8), b.astype(np.int8)], mode)
        hook, reference_hook = (sem.add, xnnpack.add) if op == "ADD" else (sem.mul, xnnpack.mul)
        np.testing.assert_array_equal(nhwc(hook(nchw(a), qa, nchw(b), qb, out_qp)), got)
        try:
            wrong += int((nhwc(reference_hook(nchw(a), qa, nchw(b), qb, out_qp)) != got).sum())
        except UnsupportedError:  # XNNPACK's ADD refuses some scale ratios the builtin kernel takes
            wrong += 1
    assert wrong > 0


@pytest.mark.parametrize("shape_a,shape_b", [((3, 5, 5, 20), (3, 5, 5, 20)), ((3, 5, 5, 20), (3, 1, 1, 20)),
                                             ((3, 5, 5, 7), (3, 1, 1, 7)), ((3, 5, 5, 20), (1, 1, 1, 1))])
def test_mul_past_int16_wraps_in_the_vector_loop(shape_a, shape_b):
    """MUL with an output scale near s_a·s_b: results past the int16 range. The optimized kernel's
    16-wide loop saturates to int16 and adds z_out wrapping (a saturated code can come out at the other
    end of int8); its scalar tail, and the reference kernel, saturate once."""
    builtin, reference = get_backend("tflite-builtin").arithmetic, get_backend("tflite-reference").arithmetic
    rng = np.random.default_rng(shape_b[-1])
    wrapped = 0
    for _ in range(10):
        qa, qb = qp(rng.uniform(0.01, 0.1), rng.integers(-30, 30)), qp(rng.uniform(0.01, 0.1), rng.integers(-30, 30))
        out_qp = qp(F32(qa.scale) * F32(qb.scale) / rng.uniform(0.3, 3), rng.integers(-30, 30))
        a, b = rng.integers(-128, 128, shape_a), rng.integers(-128, 128, shape_b)
        data = binary_file("MUL", shape_a, shape_b, qa, qb, out_qp)
        feeds = [a.astype(np.int8), b.astype(np.int8)]
        got = litert(data, feeds, "builtin")
        np.testing.assert_array_equal(nhwc(builtin.mul(nchw(a), qa, nchw(b), qb, out_qp)), got)
        saturated = nhwc(reference.mul(nchw(a), qa, nchw(b), qb, out_qp))
        np.testing.assert_array_equal(saturated, litert(data, feeds, "reference"))
        wrapped += int((saturated != got).sum())
    # runs of 7 channels (per-channel operand) have no whole 16-wide block: all scalar, nothing wraps
    assert (wrapped > 0) == (shape_b[-1] != 7)


def test_add_past_int16_is_refused_without_the_delegate():
    """ADD into an output scale ~300× finer than its inputs': the optimized kernel's vector loop
    overflows int16 — 'tflite-builtin' refuses with the fix; the reference kernel saturates and is exact."""
    qa, qb, out_qp = qp(0.05, 3), qp(0.04, -7), qp(0.05 / 300, 5)
    a, b = np.random.default_rng(0).integers(-128, 128, (2, 3, 4, 4, 8))
    with pytest.raises(UnsupportedError, match="recalibrate"):
        get_backend("tflite-builtin").arithmetic.add(nchw(a), qa, nchw(b), qb, out_qp)
    got = litert(binary_file("ADD", a.shape, b.shape, qa, qb, out_qp), [a.astype(np.int8), b.astype(np.int8)],
                 "reference")
    np.testing.assert_array_equal(nhwc(get_backend("tflite-reference").arithmetic.add(nchw(a), qa, nchw(b), qb, out_qp)), got)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("keep_dims,channels", [(True, 20), (True, 8), (False, 20)])
def test_mean(mode, keep_dims, channels):
    """MEAN over H, W. Optimized, keep dims: Σq · f32(s_in/(count·s_out)) plus a float bias for the zero
    points, whole blocks of 16 channels vector, the rest scalar. Otherwise (and in the reference
    kernels): QuantizedMeanOrSum, the multiplier divided by the count in fixed point."""
    sem, xnnpack = get_backend(KERNEL_SETS[mode]).arithmetic, get_backend("tflite").arithmetic
    rng = np.random.default_rng(channels + keep_dims)
    wrong = 0
    for _ in range(10):
        in_qp = qp(rng.uniform(0.01, 0.1), rng.integers(-60, 60))
        out_qp = qp(F32(in_qp.scale) / 2 ** int(rng.integers(0, 3)), rng.integers(-30, 30))
        x = rng.integers(-128, 128, (30, 4, 4, channels))
        got = litert(mean_file(x.shape, in_qp, out_qp, keep_dims), [x.astype(np.int8)], mode).reshape(30, channels)
        sums = torch.from_numpy(x.sum((1, 2)))
        sums = sums.reshape(30, channels, 1, 1) if keep_dims else sums
        ours = codes(sem.average(sums, 16, in_qp, out_qp, op="MEAN")).reshape(30, channels)
        np.testing.assert_array_equal(ours, got)
        wrong += int((codes(xnnpack.average(sums, 16, in_qp, out_qp)).reshape(30, channels) != got).sum())
    assert wrong > 0


def test_mean_vector_block_is_16_channels():
    """At 20 channels, channels 16–19 round as the scalar loop does: treating them as vector fails."""
    import edgeact.export.litert.arithmetic_builtin as B

    rng = np.random.default_rng(7)
    mismatched = 0
    for _ in range(10):
        in_qp = qp(rng.uniform(0.01, 0.1), rng.integers(-60, 60))
        out_qp = qp(F32(in_qp.scale) / 2 ** int(rng.integers(0, 3)), rng.integers(-30, 30))
        x = rng.integers(-128, 128, (30, 4, 4, 20))
        got = litert(mean_file(x.shape, in_qp, out_qp, True), [x.astype(np.int8)], "builtin").reshape(30, 20)
        sums = torch.from_numpy(x.sum((1, 2))).reshape(30, 20, 1, 1)
        all_vector = B.TFLiteBuiltinArithmetic()
        saved, B.MEAN_BLOCK = B.MEAN_BLOCK, 1
        try:
            ours = codes(all_vector.average(sums, 16, in_qp, out_qp, op="MEAN")).reshape(30, 20)
        finally:
            B.MEAN_BLOCK = saved
        mismatched += int((ours[:, 16:] != got[:, 16:]).sum())
        assert np.array_equal(ours[:, :16], got[:, :16])
    assert mismatched > 0


# ---- whole models -----------------------------------------------------------------------------------

@pytest.mark.parametrize("label,choice", CHOICES, ids=[c[0] for c in CHOICES])
def test_small_cnn_every_activation_equals_litert_without_delegate(label, choice, tmp_path):
    c, path = small_cnn_exported(label, choice, tmp_path)
    for mode in MODES:
        if label in ("elu", "selu") and mode == "reference":  # selu: ELU → LEAKY_RELU → MUL
            with pytest.raises(ModelFileError, match="ELU"):  # BUILTIN_REF has no int8 ELU kernel
                verify_tflite(path, c, inputs((3, 8, 8)), mode=mode)
            continue
        report = verify_tflite(path, c, inputs((3, 8, 8)), mode=mode)
        assert report.ok, f"{mode}: {report}"
        # identity is no op and ReLU/ReLU6 fuse into the conv: they add no tensor of their own
        assert report.codes_compared > INPUTS * 10 and len(report.tensors) >= (7 if label in ("identity", "relu", "relu6") else 9)


@pytest.mark.parametrize("mode", MODES)
def test_every_op_model_equals_litert_without_delegate(mode, tmp_path):
    c = converted(EveryOp(), (3, 16, 16))
    path = tmp_path / "every.tflite"
    to_tflite(c, torch.zeros(1, 3, 16, 16), path)
    report = verify_tflite(path, c, inputs((3, 16, 16)), mode=mode)
    assert report.ok, str(report)


class OddShapes(nn.Module):
    """Channel counts off the kernels' vector blocks: a 20-channel depthwise conv (16 vector + 4 scalar),
    a residual ADD, MEAN with and without kept dims (16 + 4), a broadcast MUL, average pooling (a
    depthwise conv of ones), a one-output Linear (per-tensor FULLY_CONNECTED), an input of 75 codes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 20, 3, padding=1)
        self.dw = nn.Conv2d(20, 20, 3, padding=1, groups=20)
        self.head = nn.Linear(20, 1)
        self.avg = nn.AvgPool2d(2)

    def forward(self, x):
        y = self.conv(x)
        y = self.dw(y) + y
        y = y * torch.sigmoid(y.mean((2, 3), keepdim=True))
        return self.head(y.mean((2, 3))), self.avg(y)


@pytest.mark.parametrize("mode", MODES)
def test_converted_directly_with_kernel_set_semantics(mode, tmp_path):
    """convert(backend='tflite-builtin' / 'tflite-reference') → to_tflite (no warning) → LiteRT in that
    kernel set: 0 codes differ, where the 'tflite' (XNNPACK) arithmetic differs at some."""
    torch.manual_seed(0)
    p = edgeact.prepare(OddShapes().eval())
    edgeact.calibrate(p, torch.randn(64, 3, 5, 5) * 1.5, progress=False)
    c = edgeact.convert(p, backend=KERNEL_SETS[mode])
    path = tmp_path / "odd.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_tflite(c, torch.zeros(1, 3, 5, 5), path)
    x = inputs((3, 5, 5))
    report = verify_tflite(path, c, x, mode=mode)
    assert report.ok, str(report)
    assert {t.tensor for t in report.tensors} >= {"dw_q_int", "head_q_int", "avg_q_int"}
    xnnpack = verify_tflite(path, c, x, mode=mode, backend="tflite")
    assert xnnpack.mismatches > 0, str(xnnpack)
    single = verify_tflite(path, c, x[:1], mode=mode)  # batch 1: 75 input codes, a QUANTIZE tail of 3
    assert single.ok, str(single)


def without_metadata(data: bytes) -> bytes:
    """The file packed again without its metadata entries (which record the semantics' name)."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    dropped = {entry.buffer for entry in model.metadata or []}
    assert dropped == set(range(len(model.buffers) - len(dropped), len(model.buffers)))  # written last
    model.metadata, model.buffers = None, model.buffers[:len(model.buffers) - len(dropped)]
    fb = flatbuffers.Builder(1024)
    fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())


def test_the_three_semantics_differ_and_files_do_not():
    """One exported file serves all three kernel sets; the converted models differ near ties."""
    c = converted(SmallCNN(), (3, 8, 8), activations={"relu": "hard_swish"})
    x = inputs((3, 8, 8))
    files = [to_tflite(with_backend(c, s), torch.zeros(1, 3, 8, 8)) for s in KERNEL_SETS.values()]
    assert len({without_metadata(f) for f in files}) == 1  # only the recorded backend name differs
    with torch.no_grad():
        out = {s: with_backend(c, s)(x) for s in KERNEL_SETS.values()}
    assert not torch.equal(out["litert"], out["litert:builtin"])
    assert not torch.equal(out["litert:builtin"], out["litert:reference"])


def test_names_and_errors():
    assert get_backend("tflite-builtin").arithmetic.name == "tflite-builtin"
    assert get_backend("tflite-reference").arithmetic.name == "tflite-reference"
    c = converted(SmallCNN(), (3, 8, 8))
    assert with_backend(c, "tflite") is c
    p = edgeact.prepare(SmallCNN().eval())
    edgeact.calibrate(p, torch.randn(16, 3, 8, 8), progress=False)
    ideal = edgeact.convert(p, backend="ideal")
    with pytest.raises(UnsupportedError, match="convert with backend='litert:builtin'"):
        with_backend(ideal, "tflite-builtin")
    with pytest.raises(UnsupportedError, match="unknown LiteRT mode"):
        verify_tflite("unused.tflite", c, inputs((3, 8, 8)), mode="gpu")
    with pytest.raises(ValueError, match="op must be one of"):
        get_backend("tflite-builtin").arithmetic.average(torch.zeros(1, 2, 1, 1).long(), 4, qp(0.1), qp(0.1), op="SUM")
