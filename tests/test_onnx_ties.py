"""The model ops at the inputs where the arithmetic matters: rounding ties.

Random data almost never lands where float32 and float64 arithmetic round differently, so the
whole-model tests pass with either. Here each op gets exactly those inputs: for random parameters
the test searches the codes (or values) at which edgeact's 'onnxruntime' and 'ideal' semantics
disagree, exports the op, and lets onnxruntime decide — it must side with 'onnxruntime' every time.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.fx as fx
from torch import nn

from edgeact.export import to_onnx, verify
from edgeact.qparams import QuantParams
from edgeact.quantized import modules as Q
from edgeact.backend import get_backend

ORT, IDEAL = get_backend("onnxruntime").arithmetic, get_backend("ideal").arithmetic
F32 = np.float32


class _Leaves(fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return isinstance(m, Q.QuantizedModule) or super().is_leaf_module(m, qualname)


def _export_and_verify(root: nn.Module, inputs: tuple[torch.Tensor, ...], tmp_path):
    gm = fx.GraphModule(root, _Leaves().trace(root))
    gm.edgeact_backend = "onnxruntime"
    path = tmp_path / "tie.onnx"
    to_onnx(gm, inputs, path)
    report = verify(path, gm, inputs)
    assert report.ok, str(report)
    return report


def _qp(rng, dtype):
    lo, hi = QuantParams.qrange_of(dtype)
    return QuantParams(float(10 ** rng.uniform(-2.5, 0.0)), int(rng.integers(lo, hi + 1)), dtype)


def _related(rng, dtype, op=""):
    """Scales in simple ratios (rounded to float32 by QuantParams): exact sums and products then sit
    on or next to .5, where float32 and float64 round apart — random scales almost never do."""
    lo, hi = QuantParams.qrange_of(dtype)
    sa = float(10 ** rng.uniform(-2.5, 0.0))
    sb = sa * float(rng.choice([0.5, 1.5, 0.75, 2.5, 1.25, 0.3]))
    so = float(rng.choice([1, 2, 0.5, 3, 1.5, 0.7])) * (sa if op != "mul" else sa * sa)
    z = rng.integers(lo, hi + 1, 3)
    return tuple(QuantParams(s, int(zi), dtype) for s, zi in zip((sa, sb, so), z))


def _values(codes: np.ndarray, qp: QuantParams) -> torch.Tensor:
    """float32 inputs that the graph's QuantizeLinear maps back onto exactly these codes."""
    v = torch.from_numpy(((codes - qp.zero_point) * np.float64(np.float32(qp.scale))).astype(F32))
    assert torch.equal(ORT.quantize(v, qp), torch.from_numpy(codes.astype(np.int64)))
    return v


def _search(make, find, tries=400, seed=0, want=8):
    """Random parameters until `find(params)` returns enough disagreeing inputs."""
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        params = make(rng)
        hits = find(*params)
        if len(hits[0]) >= want:
            return params, hits
    pytest.fail("no tie found: the two semantics agree everywhere searched")


DTYPES = ["int8", "uint8"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_quantize_divides_in_float32(dtype, tmp_path):
    def find(qp):
        k = np.arange(qp.qmin - qp.zero_point, qp.qmax - qp.zero_point, dtype=np.float64)
        t = ((k + 0.5) * np.float64(np.float32(qp.scale))).astype(F32)
        x = np.concatenate([t, np.nextafter(t, F32(np.inf)), np.nextafter(t, F32(-np.inf))])
        xt = torch.from_numpy(x)
        differ = (ORT.quantize(xt, qp) != IDEAL.quantize(xt, qp)).numpy()
        return (x[differ],)

    (qp,), (x,) = _search(lambda rng: (_qp(rng, dtype),), find)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.out = Q.Quantize(qp, "onnxruntime"), Q.Dequantize(qp, "onnxruntime")

        def forward(self, v):
            return self.out(self.q(v))

    _export_and_verify(M(), (torch.from_numpy(x).reshape(1, -1),), tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_requantization_in_float32(dtype, tmp_path):
    """A 1×1 conv with weight 1 per channel and a bias chosen per channel: each channel's accumulator
    is a value at which float32(acc)·float32(scale) and the exact product round differently."""
    w_scale = np.float32(1 / 127)

    def make(rng):
        # A small multiplier M = s_in·s_w/s_out (~1e-3) needs large accumulators to reach the output range,
        # and there float32's relative error in M moves whole codes.
        in_qp = _qp(rng, dtype)
        m = 10 ** rng.uniform(-3.5, -2.5)
        lo, hi = QuantParams.qrange_of(dtype)
        return in_qp, QuantParams(in_qp.scale * float(w_scale) / m, int(rng.integers(lo, hi + 1)), dtype)

    def find(in_qp, out_qp):
        reach = int(260 * out_qp.scale / (in_qp.scale * float(w_scale)))
        acc = torch.arange(-reach, reach + 1)
        w_qp = QuantParams((float(w_scale),), (0,), "int8", axis=0, narrow=True)
        differ = ORT.requantize_accumulator(acc, in_qp, w_qp, out_qp, 0) != \
            IDEAL.requantize_accumulator(acc, in_qp, w_qp, out_qp, 0)
        return (acc[differ].numpy()[:64],)

    (in_qp, out_qp), (acc,) = _search(make, find, want=4)
    channels = len(acc)
    conv = nn.Conv2d(1, channels, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    qconv = Q.QuantizedConv2d(conv, in_qp, out_qp, "onnxruntime")
    assert np.all(qconv.weight_codes.numpy() == 127) and np.allclose(qconv.weight_qparams.scale_array(), w_scale)
    # Input code = zero point (value 0): the accumulator is the bias alone.
    qconv.bias_codes.copy_(torch.from_numpy((acc - 0).astype(np.int32)))

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.conv = Q.Quantize(in_qp, "onnxruntime"), qconv
            self.out = Q.Dequantize(out_qp, "onnxruntime")

        def forward(self, v):
            return self.out(self.conv(self.q(v)))

    x = _values(np.full((1, 1, 1, 1), in_qp.zero_point), in_qp)
    report = _export_and_verify(M(), (x,), tmp_path)
    assert report.codes_compared >= channels


def _binary_case(op_name, dtype, tmp_path, seed):
    sem_op = {"add": "add", "mul": "mul"}[op_name]

    def find(qa, qb, qo):
        a, b = torch.meshgrid(torch.from_numpy(qa.codes()), torch.from_numpy(qb.codes()), indexing="ij")
        differ = getattr(ORT, sem_op)(a, qa, b, qb, qo) != getattr(IDEAL, sem_op)(a, qa, b, qb, qo)
        return a[differ].numpy()[:256], b[differ].numpy()[:256]

    (qa, qb, qo), (a, b) = _search(lambda rng: _related(rng, dtype, op_name), find, seed=seed)
    cls = Q.QuantizedAdd if op_name == "add" else Q.QuantizedMul

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.qa, self.qb = Q.Quantize(qa, "onnxruntime"), Q.Quantize(qb, "onnxruntime")
            self.op, self.out = cls([qa, qb], qo, "onnxruntime"), Q.Dequantize(qo, "onnxruntime")

        def forward(self, x, y):
            return self.out(self.op(self.qa(x), self.qb(y)))

    _export_and_verify(M(), (_values(a.reshape(1, -1), qa), _values(b.reshape(1, -1), qb)), tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_in_float32(dtype, tmp_path):
    _binary_case("add", dtype, tmp_path, seed=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mul_in_float32(dtype, tmp_path):
    _binary_case("mul", dtype, tmp_path, seed=2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_requantizes_in_float32(dtype, tmp_path):
    def find(qa, qb, qo):
        codes = torch.from_numpy(qa.codes())
        differ = (ORT.requantize(codes, qa, qo) != IDEAL.requantize(codes, qa, qo)).numpy()
        return (qa.codes()[differ],)

    (qa, qb, qo), (a,) = _search(lambda rng: _related(rng, dtype), find, want=1, seed=3)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.qa, self.qb = Q.Quantize(qa, "onnxruntime"), Q.Quantize(qb, "onnxruntime")
            self.cat, self.out = Q.QuantizedConcat([qa, qb], qo, "onnxruntime", 1), Q.Dequantize(qo, "onnxruntime")

        def forward(self, x, y):
            return self.out(self.cat(self.qa(x), self.qb(y)))

    x = _values(a.reshape(1, -1), qa)
    _export_and_verify(M(), (x, _values(np.full((1, 3), qb.zero_point), qb)), tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["avg_pool 2x3", "mean 2x3"])
def test_pooling_requantizes_the_integer_sum(kind, dtype, tmp_path):
    """Windows of 6: the exact mean hits .5 whenever the sum is 3 mod 6, and ORT's weight scale
    float32(1/6) tips it to one side where the ideal rounds half to even."""
    count = 6

    def find(qi, qo):
        sums = torch.arange(count * qi.qmin, count * qi.qmax + 1)
        differ = (ORT.average(sums, count, qi, qo) != IDEAL.average(sums, count, qi, qo)).numpy()
        return (sums.numpy()[differ][:64],)

    pool_keeps_params = kind.startswith("avg")
    make = (lambda rng: (lambda q: (q, q))(_qp(rng, dtype))) if pool_keeps_params else \
        (lambda rng: (lambda qa, qb, qo: (qa, qo))(*_related(rng, dtype)))
    (qi, qo), (sums,) = _search(make, find, want=1, seed=4)
    # One 2×3 window per target sum: spread the sum over six codes.
    base = np.floor_divide(sums, count)
    rest = sums - base * count
    windows = base[:, None] + (np.arange(count)[None, :] < rest[:, None])
    codes = windows.reshape(1, len(sums), 2, 3)
    assert np.all(codes.sum(axis=(2, 3)) == sums)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = Q.Quantize(qi, "onnxruntime")
            self.op = Q.QuantizedAvgPool2d(qi, "onnxruntime", (2, 3), (2, 3)) if pool_keeps_params else \
                Q.QuantizedMean(qi, qo, "onnxruntime", keepdim=True)
            self.out = Q.Dequantize(qo, "onnxruntime")

        def forward(self, x):
            return self.out(self.op(self.q(x)))

    _export_and_verify(M(), (_values(codes, qi),), tmp_path)
