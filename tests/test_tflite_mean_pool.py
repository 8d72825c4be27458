"""MEAN at rounding ties and average pooling at any scale, against LiteRT itself.

MEAN: XNNPACK (LiteRT's default) sums the raw codes and converts the int32 sum in float32 with the
input zero point folded into a float output zero point, so a mean within an ulp of a .5 tie rounds as
that float sum says, not as the exact mean does; its aarch64 build fuses the multiply-adds. The
builtin and reference kernels use fixed-point multipliers. Single-op files feed every possible sum
Σq (one row each) at scale pairs that put a near-tie at every other sum, in each kernel set; a
hypothesis test draws such pairs; the squeeze-excite block of EfficientNet (global mean → 1×1 conv →
hard_sigmoid → mul) is checked whole with its mean's output scale set to make ties frequent.

Average pooling is exported as a depthwise conv of ones whose weight scale used to be searched for a
value that reproduces MEAN's scale — and for ~20 % of scales none existed (export failed). Now the
arithmetic models the conv at the weight scale the file carries: a MobileNetV1-style net ending in a
3×3 AvgPool exports and is exact at a sweep of scales, including ones that failed before.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import edgeact
from edgeact.export.litert import interpreter as rt
from edgeact.export.litert.builder import ModelBuilder
from edgeact.export.litert.writer import to_tflite
from edgeact.export.litert.run import KERNEL_SETS, verify_tflite
from edgeact.qparams import QuantParams
from edgeact.quantize.prepare import quantizers
from edgeact.quantized.modules import QuantizedMean
from edgeact.backend import get_backend
from edgeact.export.litert import arithmetic as T
from ai_edge_litert import schema_py_generated as schema

F32 = np.float32
MODES = tuple(KERNEL_SETS)  # xnnpack, builtin, reference
CHANNELS = 20  # builtin MEAN: 16 channels in its vector loop, 4 in the scalar one


def qp(scale, zero_point=0) -> QuantParams:
    return QuantParams(float(F32(scale)), int(zero_point), "int8")


def every_sum(h: int, w: int, channels: int = CHANNELS) -> np.ndarray:
    """(rows, h, w, channels) int8 codes whose window sums take every value in [−128·n, 127·n], each
    channel in another order (so each loop of the kernel meets every sum)."""
    n = h * w
    sums = np.arange(-128 * n, 127 * n + 1)
    base = np.floor_divide(sums, n)
    rows = base[:, None] + (np.arange(n)[None, :] < (sums - base * n)[:, None])
    cols = [np.roll(rows, 37 * c, axis=0) for c in range(channels)]
    return np.stack(cols, axis=-1).reshape(-1, h, w, channels)


def means_file(shape, pairs, keep_dims: bool) -> bytes:
    """One MEAN over H, W per (in_qp, out_qp) pair, each with its own input and output."""
    b = ModelBuilder()
    axes = b.constant("axes", np.array([1, 2], np.int32), "int32")
    xs, ys = [], []
    for i, (in_qp, out_qp) in enumerate(pairs):
        x = b.tensor(f"x{i}", shape, "int8", in_qp)
        out = (shape[0], 1, 1, shape[3]) if keep_dims else (shape[0], shape[3])
        y = b.tensor(f"y{i}", out, "int8", out_qp)
        opts = schema.ReducerOptionsT()
        opts.keepDims = keep_dims
        b.op("MEAN", [x, axes], [y], opts)
        xs.append(x)
        ys.append(y)
    return b.finish(xs, ys)


def near_tie_out(in_qp: QuantParams, n: int, ulps: int = 0, zero_point: int = 0) -> QuantParams:
    """s_out ≈ 2·s_in/n: the mean in output steps is Σ(q − z)/2, a tie for every odd sum — up to the
    float32 rounding of the scales, which decides the side (the true value −97.49995 of the issue)."""
    s = F32(F32(2) * F32(in_qp.scale) / F32(n))
    for _ in range(abs(ulps)):
        s = np.nextafter(s, F32(np.inf) if ulps > 0 else F32(0))
    return qp(s, zero_point)


def pairs_for(n: int, seed: int) -> list[tuple[QuantParams, QuantParams]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for ulps in (-2, -1, 0, 1, 2):
        i = qp(rng.uniform(0.005, 0.2), rng.integers(-128, 128))
        pairs.append((i, near_tie_out(i, n, ulps, rng.integers(-40, 40))))
    i = qp(rng.uniform(0.005, 0.2), rng.integers(-128, 128))
    pairs.append((i, i))  # equal parameters: ties at Σ ≡ n/2 (mod n) for even n
    i = qp(rng.uniform(0.005, 0.2), rng.integers(-128, 128))
    pairs.append((i, qp(F32(i.scale) / 4, rng.integers(-40, 40))))
    return pairs


def litert_means(data: bytes, x: np.ndarray, n_pairs: int, mode: str) -> list[np.ndarray]:
    out = rt.run(rt.load(data, mode), [x.astype(np.int8)] * n_pairs)
    return [o.reshape(x.shape[0], x.shape[3]).astype(np.int64) for o in out]


def backend_means(backend: str, x: np.ndarray, pairs, keep_dims: bool) -> list[np.ndarray]:
    rows, h, w, c = x.shape
    sums = torch.from_numpy(x.sum((1, 2)).astype(np.int64))
    sums = sums.reshape(rows, c, 1, 1) if keep_dims else sums
    sem = get_backend(backend).arithmetic
    return [sem.average(sums, h * w, i, o, op="mean").numpy().reshape(rows, c) for i, o in pairs]


def naive_float32(x: np.ndarray, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
    """What edgeact computed before: rne(f32(Σq − n·z_in) · f32(s_in / f32(s_out·n))) + z_out."""
    n = x.shape[1] * x.shape[2]
    scale = F32(F32(in_qp.scale) / F32(F32(out_qp.scale) * F32(n)))
    acc = (x.sum((1, 2)) - n * in_qp.zero_point).astype(F32)
    return np.clip(np.rint(acc * scale) + out_qp.zero_point, -128, 127).astype(np.int64)


def exact_half_even(x: np.ndarray, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
    """The correctly rounded mean (float64 is exact enough here), ties to even."""
    n = x.shape[1] * x.shape[2]
    acc = (x.sum((1, 2)) - n * in_qp.zero_point).astype(np.float64)
    y = acc * np.float64(F32(in_qp.scale)) / (n * np.float64(F32(out_qp.scale)))
    return np.clip(np.rint(y) + out_qp.zero_point, -128, 127).astype(np.int64)


# ---- MEAN, single op -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("keep_dims", [True, False], ids=["keep", "flat"])
def test_mean_of_every_sum_at_near_ties_equals_litert(mode, keep_dims):
    """Every sum of 2×2, 3×3 and 7×7 windows at seven scale pairs (five near-tie, equal, ¼): 0 codes
    differ in each kernel set. In XNNPACK the previous float32 formula and the correctly rounded mean
    both miss codes on the same data — the ties are decided by float32 rounding."""
    differ = naive = exact = 0
    for h, w in ((2, 2), (3, 3), (7, 7)):
        x = every_sum(h, w)
        pairs = pairs_for(h * w, seed=h)
        got = litert_means(means_file(x.shape, pairs, keep_dims), x, len(pairs), mode)
        ours = backend_means(KERNEL_SETS[mode], x, pairs, keep_dims)
        for (i, o), g, e in zip(pairs, got, ours):
            differ += int(np.count_nonzero(g != e))
            naive += int(np.count_nonzero(g != naive_float32(x, i, o)))
            exact += int(np.count_nonzero(g != exact_half_even(x, i, o)))
    assert differ == 0
    if mode == "xnnpack":
        assert naive > 0 and exact > 0, (naive, exact)


@settings(max_examples=30, deadline=None)
@given(s_in=st.floats(1e-3, 1.0), hw=st.sampled_from([(1, 2), (2, 2), (3, 3), (2, 5), (4, 4), (5, 5), (6, 6)]),
       z_in=st.integers(-128, 127), z_out=st.integers(-128, 127), ulps=st.integers(-3, 3))
def test_mean_near_ties_hypothesis(s_in, hw, z_in, z_out, ulps):
    """Drawn near-tie pairs (s_out within 3 ulps of 2·s_in/n), every sum, all three kernel sets."""
    h, w = hw
    x = every_sum(h, w, channels=CHANNELS)
    i = qp(s_in, z_in)
    pairs = [(i, near_tie_out(i, h * w, ulps, z_out))]
    for mode in MODES:
        got = litert_means(means_file(x.shape, pairs, True), x, 1, mode)[0]
        np.testing.assert_array_equal(backend_means(KERNEL_SETS[mode], x, pairs, True)[0], got, err_msg=mode)


def _aarch64_differing_pairs(h: int, w: int, want: int) -> list[tuple[QuantParams, QuantParams]]:
    """Pairs at which the x86 and aarch64 roundings of MEAN differ for some sum (fused multiply-adds)."""
    rng = np.random.default_rng(3)
    x = every_sum(h, w, channels=1)
    pairs = []
    while len(pairs) < want:
        i = qp(rng.uniform(0.01, 0.1), rng.integers(-128, 128))
        o = qp(rng.uniform(0.05, 1.0), rng.integers(-40, 40))
        x86, arm = (backend_means(s, x, [(i, o)], True)[0] for s in ("litert", "litert:aarch64"))
        if np.any(x86 != arm):
            pairs.append((i, o))
    return pairs


@pytest.mark.slow
def test_mean_on_aarch64_fuses_multiply_adds(aarch64_root, tmp_path):
    """LiteRT's aarch64 build (qemu-aarch64) contracts MEAN's float steps into fused multiply-adds:
    backend 'litert:aarch64' gives its codes; the x86 formula misses some, and the host computes the x86 one."""
    from edgeact.targets import get_target
    from edgeact.targets.host import HostTarget

    h = w = 6
    pairs = _aarch64_differing_pairs(h, w, 4)
    x = every_sum(h, w, channels=1)
    path = tmp_path / "means.tflite"
    path.write_bytes(means_file(x.shape, pairs, True))
    feeds = [x.astype(np.int8)] * len(pairs)
    arm = [o.reshape(-1).astype(np.int64) for o in get_target("qemu-aarch64").run(path, feeds, count=False).outputs]
    host = [o.reshape(-1).astype(np.int64) for o in HostTarget().run(path, feeds).outputs]
    x86 = [e.reshape(-1) for e in backend_means("litert", x, pairs, True)]
    fma = [e.reshape(-1) for e in backend_means("litert:aarch64", x, pairs, True)]
    np.testing.assert_array_equal(np.concatenate(arm), np.concatenate(fma))
    np.testing.assert_array_equal(np.concatenate(host), np.concatenate(x86))
    assert np.count_nonzero(np.concatenate(arm) != np.concatenate(x86)) > 0


# ---- the squeeze-excite block, whole -----------------------------------------------------------------

class SqueezeExcite(nn.Module):
    """EfficientNet's SE with hard activations: conv → hard_swish → global mean (kept dims) → 1×1 conv
    → ReLU → 1×1 conv → hard_sigmoid → broadcast mul; a second head reads the mean without kept dims."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 24, 3, padding=1)
        self.act = nn.Hardswish()
        self.reduce = nn.Conv2d(24, 8, 1)
        self.expand = nn.Conv2d(8, 24, 1)
        self.gate = nn.Hardsigmoid()
        self.head = nn.Linear(24, 5)

    def forward(self, x):
        y = self.act(self.conv(x))
        s = self.gate(self.expand(torch.relu(self.reduce(y.mean((2, 3), keepdim=True)))))
        z = y * s
        return self.head(z.mean((2, 3))), z


def _tie_heavy_se(hw: int, seed: int):
    """The SE block calibrated, then both means' output scales set near 2·s_in/(h·w): ties everywhere."""
    from edgeact.quantize.prepared import PreparedMean

    torch.manual_seed(seed)
    p = edgeact.prepare(SqueezeExcite().eval())
    edgeact.calibrate(p, torch.randn(64, 3, hw, hw) * 1.5, progress=False)
    for k, m in enumerate(mm for mm in p.modules() if isinstance(mm, PreparedMean)):
        in_qp = m.input_quants[0].qparams()
        m.output_quant.set_qparams(near_tie_out(in_qp, hw * hw, ulps=k - 1, zero_point=3))
    return p


@pytest.mark.parametrize("mode", MODES)
def test_squeeze_excite_at_near_ties_equals_litert(mode, tmp_path):
    p = _tie_heavy_se(7, seed=0)
    c = edgeact.convert(p, backend="litert")
    path = tmp_path / "se.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_tflite(c, torch.zeros(1, 3, 7, 7), path)
    x = torch.randn(48, 3, 7, 7) * 1.5
    report = verify_tflite(path, c, x, mode=mode)
    assert report.ok, str(report)
    if mode == "xnnpack":  # the means do sit on ties: the previous formula differs on this model
        inputs = {}
        means = [m for m in c.modules() if isinstance(m, QuantizedMean)]
        hooks = [m.register_forward_hook(lambda mod, args, out: inputs.__setitem__(mod, args[0])) for m in means]
        with torch.no_grad():
            c(x)
        for hook in hooks:
            hook.remove()
        moved = 0
        for m in means:
            codes = inputs[m].numpy().transpose(0, 2, 3, 1)
            with torch.no_grad():
                ours = m(inputs[m]).numpy().reshape(codes.shape[0], -1)
            moved += int(np.count_nonzero(ours != naive_float32(codes, m.in_qparams[0], m.out_qparams)))
        assert len(means) == 2 and moved > 0


# ---- average pooling ----------------------------------------------------------------------------------

def _dwsep(cin, cout, stride):
    return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin), nn.BatchNorm2d(cin), nn.ReLU6(),
            nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU6()]


class TinyMobileNetV1(nn.Module):
    """MobileNetV1's shape at 24×24: strided conv, two depthwise-separable blocks down to 3×3, a 3×3
    AvgPool (9 elements, the case that failed to export), flatten, classifier."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU6(),
                                      *_dwsep(8, 16, 2), *_dwsep(16, 20, 2))
        self.pool = nn.AvgPool2d(3)
        self.fc = nn.Linear(20, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


# Scales of the pool's input (ReLU6 output, zero point −128) at which no float32 weight scale gave
# f32(f32(s·w)/s) == f32(s/f32(9·s)) — export used to fail with "no float32 weight scale reproduces…".
FAILED_BEFORE = (0.4075687825679779, 0.3661007881164551, 0.1533573865890503)


@pytest.fixture(scope="module")
def tiny_mnv1():
    torch.manual_seed(0)
    p = edgeact.prepare(TinyMobileNetV1().eval())
    edgeact.calibrate(p, torch.randn(64, 3, 24, 24), progress=False)
    return p


def test_avgpool_3x3_exports_and_is_exact_at_a_sweep_of_scales(tiny_mnv1, tmp_path):
    """The pool's input scale swept (the three that failed before and 5 more, zero points at random):
    export succeeds and every kernel set computes the converted model's codes."""
    pool_in = next(q for q in quantizers(tiny_mnv1) if q.name == "features_14 output")
    rng = np.random.default_rng(0)
    scales = list(FAILED_BEFORE) + [float(F32(v)) for v in 10 ** rng.uniform(-2.5, -0.3, 5)]
    x = torch.randn(4, 3, 24, 24)
    for k, s in enumerate(scales):
        pool_in.set_qparams(QuantParams(s, -128 if k < len(FAILED_BEFORE) else int(rng.integers(-128, 0))))
        c = edgeact.convert(tiny_mnv1, backend="litert")
        path = tmp_path / f"mnv1_{k}.tflite"
        to_tflite(c, torch.zeros(1, 3, 24, 24), path)
        for mode in MODES:
            report = verify_tflite(path, c, x, mode=mode)
            assert report.ok, f"scale {s}, {mode}: {report}"


@pytest.mark.parametrize("count", [4, 9, 25, 49, 196])
def test_average_pool_scale_exists_and_is_accurate(count):
    """For any scale pair the pooling conv's requantization scale is within 2 float32 ulps of the exact
    s_in/(count·s_out) — no pair is refused (before: ~20 % of 3×3 scales were)."""
    rng = np.random.default_rng(count)
    for _ in range(2000):
        s_in = float(F32(10 ** rng.uniform(-4, 1)))
        s_out = s_in if rng.random() < 0.5 else float(F32(10 ** rng.uniform(-4, 1)))
        got = np.float64(T.average_pool_scale(qp(s_in), qp(s_out), count))
        exact = np.float64(F32(s_in)) / (count * np.float64(F32(s_out)))
        assert abs(got - exact) <= 2 * np.spacing(F32(exact)), (s_in, s_out)


# ---- both models under qemu-aarch64 ------------------------------------------------------------------

def _output_codes(outputs, converted, nhwc: bool) -> list[np.ndarray]:
    """Float outputs back to codes with the output parameters, NCHW."""
    from edgeact.quantized.modules import Dequantize

    qps = [m.in_qparams[0] for m in converted.modules() if isinstance(m, Dequantize)]
    codes = []
    for y, q in zip(outputs, qps):
        y = np.asarray(y, np.float32)
        y = y.transpose(0, 3, 1, 2) if nhwc and y.ndim == 4 else y
        codes.append(np.rint(y / F32(q.scale)).astype(np.int64) + q.zero_point)
    return codes


@pytest.mark.slow
def test_squeeze_excite_and_avgpool_net_on_aarch64(aarch64_root, tiny_mnv1, tmp_path):
    """Converted for backend 'litert:aarch64', run by LiteRT's aarch64 build: the tie-heavy SE block and the
    MobileNetV1-style net at a pooling scale that failed to export before give the model's codes."""
    from edgeact.targets import get_target

    pool_in = next(q for q in quantizers(tiny_mnv1) if q.name == "features_14 output")
    pool_in.set_qparams(QuantParams(FAILED_BEFORE[0], -128))
    cases = [(_tie_heavy_se(7, seed=0), (3, 7, 7)), (tiny_mnv1, (3, 24, 24))]
    torch.manual_seed(1)
    for k, (prepared, shape) in enumerate(cases):
        c = edgeact.convert(prepared, backend="litert:aarch64")
        path = tmp_path / f"model{k}.tflite"
        to_tflite(c, torch.zeros(1, *shape), path)
        for x in torch.randn(2, 1, *shape) * 1.5:  # the file has batch 1: one QEMU run per image
            with torch.no_grad():
                out = c(x)
            expected = _output_codes([o.numpy() for o in (out if isinstance(out, tuple) else (out,))], c, False)
            got = get_target("qemu-aarch64").run(path, [x.numpy().transpose(0, 2, 3, 1)], count=False).outputs
            for e, g in zip(expected, _output_codes(got, c, True)):
                np.testing.assert_array_equal(g, e)


@pytest.mark.slow
def test_mean_on_armv7_is_the_builtin_kernels(armv7_root, tmp_path):
    """tflite-runtime 2.14 on armv7 (built without XNNPACK) runs int8 MEAN on its builtin kernels: with
    kept dims the optimized Mean (NEON blocks of 16 channels, scalar rest), without them the reference
    QuantizedMeanOrSum — backend 'tflite-runtime:armv7' (which takes 'litert:builtin''s MEAN) at every
    sum of near-tie pairs; XNNPACK's arithmetic ('litert') misses codes on the same data."""
    from edgeact.targets import get_target

    h = w = 3
    x = every_sum(h, w)
    pairs = pairs_for(h * w, seed=5)[:4]
    for keep_dims in (True, False):
        path = tmp_path / f"means_{keep_dims}.tflite"
        path.write_bytes(means_file(x.shape, pairs, keep_dims))
        outs = get_target("qemu-armv7").run(path, [x.astype(np.int8)] * len(pairs), count=False).outputs
        got = np.concatenate([o.reshape(-1) for o in outs]).astype(np.int64)
        builtin, xnnpack = (np.concatenate([e.reshape(-1) for e in backend_means(b, x, pairs, keep_dims)])
                            for b in ("tflite-runtime:armv7", "litert"))
        np.testing.assert_array_equal(got, builtin)
        assert np.count_nonzero(got != xnnpack) > 0
