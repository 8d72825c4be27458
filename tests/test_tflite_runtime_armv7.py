"""Backend 'tflite-runtime:armv7' against tflite-runtime 2.14 on armv7 (qemu-arm, the qemu-armv7 target).

Op by op: one .tflite per op kind holding many independent branches (one qemu run each), at parameters
that make rounding ties frequent (s_in·s_w/s_out a power of two; float inputs on .5 steps), with the
accumulators computed independently (float64 torch convolutions). Each test also shows it can fail:
the x86 formula ('litert:builtin', the closest other kernel set) or the other rounding split differs
from armv7 on the same data. Whole models: small nets with every op edgeact exports and the trained
mnv3s checkpoints, converted for the new backend, 0 codes differ.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ai_edge_litert import schema_py_generated as schema

import edgeact
from layouts import codes, nchw, nhwc
from edgeact import QuantParams
from edgeact.activations import bind
from edgeact.backend import get_backend
from edgeact.export import to_tflite
from edgeact.export.litert import arithmetic as T
from edgeact.export.litert.arithmetic_aarch64 import hard_swish_table_neon
from edgeact.export.litert.arithmetic_armv7 import round_to_nearest_armv7, uses_custom_gemv
from edgeact.export.litert.builder import ModelBuilder
from edgeact.export.litert.lowering import add_activation
from edgeact.export.litert.writer import METADATA_KEY
from edgeact.targets import get_target

F32 = np.float32
BACKEND = "tflite-runtime:armv7"
ARMV7 = get_backend(BACKEND).arithmetic
BUILTIN = get_backend("litert:builtin").arithmetic


def qp(scale, zero_point=0) -> QuantParams:
    return QuantParams(float(F32(scale)), int(zero_point), "int8")


def run_armv7(data: bytes, feeds, tmp_path, name="model") -> list[np.ndarray]:
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(data)
    return [o.astype(np.int64) for o in get_target("qemu-armv7").run(path, feeds, count=False).outputs]


def tie_prone(rng, s_in, s_w, exponents=(3, 8)):
    """An output scale that makes s_in·s_w/s_out a power of two: a rounding tie every few codes."""
    return qp(F32(s_in) * F32(s_w) * 2.0 ** int(rng.integers(*exponents)), rng.integers(-20, 20))


def test_backend_name_alias_and_kernels():
    b = get_backend(BACKEND)
    assert get_backend("tflite-runtime-armv7") is b and BACKEND in edgeact.backends()
    assert (b.runtime, b.cpu, b.kernels, b.format, b.prefer) == ("tflite-runtime", "armv7", "builtin", "tflite", "arm")
    assert b.arithmetic is ARMV7 and b.arithmetic.name == "tflite-runtime-armv7"


# ---- QUANTIZE ---------------------------------------------------------------------------------------

def test_round_to_nearest_armv7_is_ties_away_through_a_float_add():
    y = np.array([0.5, -0.5, 1.5, -2.5, 2.4999998, -0.0, 0.49999997, 3e9, np.nan], np.float32)
    # 0.49999997 + 0.5 rounds up to 1.0 in float32 before the truncation; 3e9 saturates; NaN → 0
    assert list(round_to_nearest_armv7(y)) == [1, -1, 2, -3, 2, 0, 1, 2**31 - 1, 0]


def test_quantize_blocks_of_eight_round_ties_away(armv7_root, tmp_path):
    """QUANTIZE on .5 steps and one ulp either side, n = 13 and 4099 (8-wide blocks plus a tail):
    ARMv7 NEON has no vcvtnq, so the blocks round ties away from zero (x86's builtin kernel: to even)."""
    rng = np.random.default_rng(0)
    b, ins, outs, cases = ModelBuilder("quantize"), [], [], []
    for k in range(12):
        n = (13, 4099)[k % 2]
        q = qp(rng.uniform(0.005, 0.2), rng.integers(-40, 40))
        x = F32((rng.integers(-150, 150, (1, n)) + 0.5) * F32(q.scale))
        if k % 4 >= 2:
            x = np.nextafter(x, rng.choice([-np.inf, np.inf], x.shape).astype(F32)).astype(F32)
        cases.append((q, x))
    # the float add before the truncation: 0.5 − 2^-25 plus 0.5 rounds to 1.0, so that input gives code 1
    edge = F32([0.5 - 2**-25, -(0.5 - 2**-25), 0.5, -0.5, 1.5, -1.5, 2.5, -2.5])
    cases.append((qp(1.0), np.tile(edge, 2)[None]))
    for k, (q, x) in enumerate(cases):
        xt, yt = b.tensor(f"x{k}", x.shape, "float32"), b.tensor(f"y{k}", x.shape, "int8", q)
        b.op("QUANTIZE", [xt], [yt], version=1)
        ins.append(xt)
        outs.append(yt)
    got = run_armv7(b.finish(ins, outs), [x for _, x in cases], tmp_path)
    assert list(got[-1][0, :8]) == [1, -1, 1, -1, 2, -2, 3, -3]
    x86 = 0
    for (q, x), g in zip(cases, got):
        np.testing.assert_array_equal(codes(ARMV7.quantize(torch.from_numpy(x), q)), g)
        x86 += int((codes(BUILTIN.quantize(torch.from_numpy(x), q)) != g).sum())
    assert x86 > 1000, x86  # about a third of the tie codes: x86's rounding would not pass


# ---- CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ----------------------------------------------------

def _weighted(b: ModelBuilder, k: int, kind: str, x_shape, in_qp, weights, s_w, out_qp, bias):
    """One branch: CONV_2D (weights OHWI), DEPTHWISE_CONV_2D (1HWC), VALID, stride 1; or FULLY_CONNECTED
    (weights (out, in), one weight scale per channel, or per tensor for one output)."""
    c = len(bias)
    per_tensor = kind == "FULLY_CONNECTED" and c == 1
    dim = 3 if kind == "DEPTHWISE_CONV_2D" else 0
    x = b.tensor(f"x{k}", x_shape, "int8", in_qp)
    wq = (QuantParams(float(s_w), 0, "int8", narrow=True) if per_tensor
          else QuantParams((float(s_w),) * c, (0,) * c, "int8", axis=dim, narrow=True))
    w = b.constant(f"w{k}", weights.astype(np.int8), "int8", wq, quantized_dimension=dim)
    s_b = float(F32(in_qp.scale) * F32(s_w))
    bq = QuantParams(s_b, 0, "int32") if per_tensor else QuantParams((s_b,) * c, (0,) * c, "int32", axis=0)
    bt = b.constant(f"b{k}", bias.astype(np.int32), "int32", bq, quantized_dimension=0)
    if kind == "FULLY_CONNECTED":
        y = b.tensor(f"y{k}", (x_shape[0], c), "int8", out_qp)
        b.op(kind, [x, w, bt], [y], schema.FullyConnectedOptionsT())
        return x, y
    kh, kw = weights.shape[1:3]
    y = b.tensor(f"y{k}", (x_shape[0], x_shape[1] - kh + 1, x_shape[2] - kw + 1, c), "int8", out_qp)
    opts = schema.DepthwiseConv2DOptionsT() if kind == "DEPTHWISE_CONV_2D" else schema.Conv2DOptionsT()
    if kind == "DEPTHWISE_CONV_2D":
        opts.depthMultiplier = 1
    opts.padding, opts.strideH, opts.strideW = schema.Padding.VALID, 1, 1
    opts.dilationHFactor = opts.dilationWFactor = 1
    b.op(kind, [x, w, bt], [y], opts)
    return x, y


# (kind, output channels, input channels, kernel, input H = W): which output stage runs
WEIGHTED = [
    ("CONV_2D", 16, 3, 3, 9),  # 7×7 outputs: the gemm (ruy), scalar
    ("CONV_2D", 200, 3, 3, 3),  # one 1×1 output, depth 27: CustomGemv, vector
    ("CONV_2D", 200, 5, 1, 1),  # one output, depth 5 < 8: not CustomGemv, scalar
    ("CONV_2D", 3, 4, 3, 3),  # one output, 3 rows < 4: scalar
    ("DEPTHWISE_CONV_2D", 20, 20, 3, 9),  # 16 channels vector, 4 scalar
    ("FULLY_CONNECTED", 200, 24, 1, 1),  # batch 1, depth 24: CustomGemv, vector
    ("FULLY_CONNECTED", 200, 6, 1, 1),  # batch 1, depth 6: scalar
    ("FULLY_CONNECTED", 1, 24, 1, 1),  # one output: per tensor, f32(s_in·s_w)/s_out, scalar
]


def test_conv_depthwise_and_fully_connected_requantization(armv7_root, tmp_path):
    """CONV_2D and FULLY_CONNECTED round ties away from zero (scalar) on armv7, except a single output
    column with ≥ 4 rows and depth ≥ 8, which cpu_backend_gemm gives to CustomGemv (VRSHL: ties up);
    DEPTHWISE_CONV_2D as on x86 (blocks of 8 channels vector, the rest scalar)."""
    rng = np.random.default_rng(1)
    b, ins, outs, cases, feeds = ModelBuilder("weighted"), [], [], [], []
    for k in range(3 * len(WEIGHTED)):
        kind, c, cin, ksize, hw = WEIGHTED[k % len(WEIGHTED)]
        in_qp = qp(rng.uniform(0.005, 0.1), rng.integers(-20, 20))
        s_w = F32(rng.uniform(0.002, 0.02))
        out_qp = tie_prone(rng, in_qp.scale, s_w, (6, 9) if kind == "FULLY_CONNECTED" else (3, 8))
        bias = rng.integers(-2000, 2000, c)
        if kind == "FULLY_CONNECTED":
            weights, x = rng.integers(-30, 31, (c, cin)), rng.integers(-128, 128, (1, cin))
        else:
            w_shape = (1, ksize, ksize, c) if kind == "DEPTHWISE_CONV_2D" else (c, ksize, ksize, cin)
            weights = rng.integers(-127, 128, w_shape)
            x = rng.integers(-128, 128, (1, hw, hw, cin))
        xt, yt = _weighted(b, k, kind, x.shape, in_qp, weights, s_w, out_qp, bias)
        ins.append(xt)
        outs.append(yt)
        feeds.append(x.astype(np.int8))
        if kind == "FULLY_CONNECTED":
            acc = torch.from_numpy((x - in_qp.zero_point) @ weights.T + bias)
            depth = cin
        else:
            w_t = weights.transpose(3, 0, 1, 2) if kind == "DEPTHWISE_CONV_2D" else weights.transpose(0, 3, 1, 2)
            groups = c if kind == "DEPTHWISE_CONV_2D" else 1
            acc = F.conv2d((nchw(x) - in_qp.zero_point).double(), torch.from_numpy(w_t).double(),
                           torch.from_numpy(bias).double(), groups=groups).round().long()
            depth = (1 if kind == "DEPTHWISE_CONV_2D" else cin) * ksize * ksize
        w_qp = (QuantParams(float(s_w), 0, "int8", narrow=True) if c == 1
                else QuantParams((float(s_w),) * c, (0,) * c, "int8", axis=0, narrow=True))
        cases.append((kind, acc, in_qp, w_qp, out_qp, depth))
    got = run_armv7(b.finish(ins, outs), feeds, tmp_path)
    wrong = {"x86": 0, "gemv split": 0}
    for (kind, acc, in_qp, w_qp, out_qp, depth), g in zip(cases, got):
        to_file = nhwc if acc.dim() == 4 else codes
        np.testing.assert_array_equal(to_file(ARMV7.requantize_accumulator(acc, in_qp, w_qp, out_qp, op=kind,
                                                                            depth=depth)), g, err_msg=kind)
        wrong["x86"] += int((to_file(BUILTIN.requantize_accumulator(acc, in_qp, w_qp, out_qp, op=kind)) != g).sum())
        if kind != "DEPTHWISE_CONV_2D":  # ignoring the depth condition: CustomGemv assumed wherever the shape fits
            wrong["gemv split"] += int((to_file(ARMV7.requantize_accumulator(acc, in_qp, w_qp, out_qp, op=kind))
                                        != g).sum())
    assert wrong["x86"] > 10 and wrong["gemv split"] > 0, wrong


def test_uses_custom_gemv():
    assert uses_custom_gemv((1, 16, 1, 1), 1, 27) and uses_custom_gemv((5, 16), 1, 8)  # one column per image
    assert not uses_custom_gemv((1, 16, 2, 1), 1, 27)  # two columns: the gemm
    assert not uses_custom_gemv((1, 3, 1, 1), 1, 27) and not uses_custom_gemv((1, 16, 1, 1), 1, 7)


# ---- ADD / MUL / MEAN: as LiteRT's optimized kernels on x86 ---------------------------------------------

def test_add_mul_and_mean_as_the_builtin_kernels(armv7_root, tmp_path):
    """ADD (gemmlowp general add), MUL (one f32 multiplier; the 16-wide loop narrows to int16, so an output
    scale near s_a·s_b wraps) and MEAN (keep dims: optimized, 16-channel vector blocks; else reference),
    elementwise and broadcast: 'tflite-runtime:armv7' is 'litert:builtin' here, and XNNPACK's differs."""
    rng = np.random.default_rng(2)
    b, ins, outs, cases, feeds = ModelBuilder("binary"), [], [], [], []
    shapes = [((3, 5, 5, 20), (3, 5, 5, 20)), ((3, 5, 5, 20), (3, 1, 1, 20)), ((3, 5, 5, 7), (3, 5, 5, 7))]
    for k in range(24):
        op = ("ADD", "MUL", "MUL_WRAP", "MEAN")[k % 4]
        shape_a, shape_b = shapes[k // 4 % 3]
        qa, qb = qp(rng.uniform(0.01, 0.1), rng.integers(-30, 30)), qp(rng.uniform(0.01, 0.1), rng.integers(-30, 30))
        a = rng.integers(-128, 128, shape_a)
        x = b.tensor(f"a{k}", shape_a, "int8", qa)
        if op == "MEAN":
            keep = k % 8 == 3
            out_qp = qp(F32(qa.scale) / 2 ** int(rng.integers(0, 3)), rng.integers(-30, 30))
            y = b.tensor(f"y{k}", (shape_a[0], 1, 1, shape_a[3]) if keep else (shape_a[0], shape_a[3]), "int8", out_qp)
            opts = schema.ReducerOptionsT()
            opts.keepDims = keep
            b.op("MEAN", [x, b.constant(f"axes{k}", np.array([1, 2], np.int32), "int32")], [y], opts)
            ins.append(x)
            feeds.append(a.astype(np.int8))
            sums = torch.from_numpy(a.sum((1, 2)))
            cases.append((op, (sums.reshape(*sums.shape, 1, 1) if keep else sums, qa, out_qp)))
        else:
            if op == "ADD":
                qb = qp(qa.scale, qb.zero_point) if k % 8 == 0 else qb
                out_qp = qp(2 * F32(qa.scale), rng.integers(-30, 30))
            elif op == "MUL":
                out_qp = tie_prone(rng, qa.scale, qb.scale)
            else:
                out_qp = qp(F32(qa.scale) * F32(qb.scale) / rng.uniform(0.3, 3), rng.integers(-30, 30))
            g = rng.integers(-128, 128, shape_b)
            z = b.tensor(f"b{k}", shape_b, "int8", qb)
            y = b.tensor(f"y{k}", shape_a, "int8", out_qp)
            b.op(op[:3], [x, z], [y], schema.AddOptionsT() if op == "ADD" else schema.MulOptionsT())
            ins += [x, z]
            feeds += [a.astype(np.int8), g.astype(np.int8)]
            cases.append((op, (nchw(a), qa, nchw(g), qb, out_qp)))
        outs.append(y)
    got = run_armv7(b.finish(ins, outs), feeds, tmp_path)
    xnnpack, wrapped = get_backend("litert").arithmetic, 0
    differ = 0
    for (op, args), g in zip(cases, got):
        if op == "MEAN":
            sums, q_in, q_out = args
            ours, theirs = ARMV7.average(sums, 25, q_in, q_out, op="MEAN"), xnnpack.average(sums, 25, q_in, q_out)
            np.testing.assert_array_equal(codes(ours).reshape(g.shape), g)
            differ += int((codes(theirs).reshape(g.shape) != g).sum())
            continue
        hook = ARMV7.add if op == "ADD" else ARMV7.mul
        np.testing.assert_array_equal(nhwc(hook(*args)), g, err_msg=op)
        if op == "MUL_WRAP":
            wrapped += int((nhwc(get_backend("litert:reference").arithmetic.mul(*args)) != g).sum())
    assert differ > 0 and wrapped > 0, (differ, wrapped)


def test_add_past_int16_is_refused(armv7_root, tmp_path):
    """ADD into an output scale ~300× finer than its inputs': armv7's optimized ADD overflows its int16 vector
    loop too (codes differ from the saturating reference kernel), and tflite-runtime has no other kernel set
    there — so the arithmetic refuses, naming the fix and no other backend."""
    from edgeact.errors import UnsupportedError

    qa, qb, out_qp = qp(0.05, 3), qp(0.04, -7), qp(0.05 / 300, 5)
    a, g = np.random.default_rng(0).integers(-128, 128, (2, 2, 4, 4, 32))
    b = ModelBuilder("add")
    x, z = b.tensor("a", a.shape, "int8", qa), b.tensor("b", g.shape, "int8", qb)
    y = b.tensor("y", a.shape, "int8", out_qp)
    b.op("ADD", [x, z], [y], schema.AddOptionsT())
    got = run_armv7(b.finish([x, z], [y]), [a.astype(np.int8), g.astype(np.int8)], tmp_path)[0]
    saturated = nhwc(get_backend("litert:reference").arithmetic.add(nchw(a), qa, nchw(g), qb, out_qp))
    assert np.count_nonzero(saturated != got) > 100
    with pytest.raises(UnsupportedError, match="recalibrate") as err:
        ARMV7.add(nchw(a), qa, nchw(g), qb, out_qp)
    assert "tflite-reference" not in str(err.value)


# ---- activations: the builtin kernels (no XNNPACK), HARD_SWISH's NEON loop ----------------------------------

NATIVE = [("sigmoid", {}, T.LOGISTIC_OUTPUT), ("tanh", {}, T.TANH_OUTPUT), ("elu", {"alpha": 1.0}, None),
          ("gelu", {}, None), ("relu6", {}, None), ("leaky_relu", {"negative_slope": 0.1}, None),
          ("prelu", {"weight": 0.25}, None), ("hard_swish", {}, None)]


def test_native_activation_kernels(armv7_root, tmp_path):
    """Every native int8 activation kernel edgeact can emit, forced native, at random parameters: the builtin
    kernels' tables (LEAKY_RELU too: no XNNPACK replaces it on armv7; PRELU with one slope and per channel),
    and HARD_SWISH's NEON loop."""
    rng = np.random.default_rng(3)
    b, ins, outs, expected = ModelBuilder("activations"), [], [], []
    for name, params, fixed_out in NATIVE:
        n = 0
        while n < 6:
            s_in, s_out = 10.0 ** rng.uniform(-3, 0.3, 2)
            in_qp = QuantParams(s_in, int(rng.integers(-128, 128)))
            out_qp = fixed_out or QuantParams(s_out, int(rng.integers(-128, 128)))
            act = bind(name, **params)
            kernel = T.native_kernel(act, in_qp, out_qp, include_inexact=True)
            if kernel is None:
                continue
            x = b.tensor(f"{name}{n}_x", (1, 16, 16, 1), "int8", in_qp)
            y, how = add_activation(b, x, name, in_qp, out_qp, f"{name}{n}", lowering="native", **params)
            assert how == kernel.op
            ins.append(x)
            outs.append(y)
            expected.append(hard_swish_table_neon(in_qp, out_qp) if kernel.op == "HARD_SWISH"
                            else T.native_table(kernel, in_qp, out_qp))
            n += 1
    feed = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16, 1)
    feeds = [feed] * len(ins)
    for n in range(3):  # PRELU with a slope per channel (the last dimension): a (channels, 256) table
        in_qp, out_qp = (QuantParams(10 ** rng.uniform(-3, 0), int(rng.integers(-128, 128))) for _ in range(2))
        alpha = rng.uniform(-0.5, 0.5, 16)
        x = b.tensor(f"prelu_c{n}_x", (1, 16, 16, 16), "int8", in_qp)
        y, how = add_activation(b, x, "prelu", in_qp, out_qp, f"prelu_c{n}", weight=alpha)
        assert how == "PRELU"
        ins.append(x)
        outs.append(y)
        feeds.append(np.repeat(feed, 16, axis=3))
        expected.append(T.prelu_table(in_qp, out_qp, alpha).T)  # (256, channels): code-major, as the feed
    got = run_armv7(b.finish(ins, outs), feeds, tmp_path)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g.reshape(e.shape), e)


# ---- whole models -------------------------------------------------------------------------------------------

def _armv7_codes(model, x: torch.Tensor, tmp_path, name: str) -> list[np.ndarray]:
    """Export `model` (converted for 'tflite-runtime:armv7', no warning), run it on armv7 one image per call
    (the file has batch 1), return each output's codes stacked over the images, in the model's layout."""
    path = tmp_path / f"{name}.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = to_tflite(model, x[:1], path)
    assert f'"backend": "{BACKEND}"'.encode() in data and METADATA_KEY.encode() in data
    target, runs = get_target("qemu-armv7"), []
    for xi in x:
        runs.append(target.run(path, [xi[None].numpy().transpose(0, 2, 3, 1)], count=False).outputs)
    out = []
    for k in range(len(runs[0])):
        y = np.concatenate([r[k] for r in runs])
        out.append(y.transpose(0, 3, 1, 2) if y.ndim == 4 else y)
    return out


def _output_qparams(model) -> list[QuantParams]:
    """The parameters of each model output (the Dequantize modules the graph returns), in order."""
    out = next(n for n in model.graph.nodes if n.op == "output").args[0]
    return [model.get_submodule(a.target).in_qparams[0] for a in (out if isinstance(out, (tuple, list)) else (out,))]


def _assert_exact(model, x, tmp_path, name):
    with torch.no_grad():
        ys = model(x)
    ys = ys if isinstance(ys, tuple) else (ys,)
    got = _armv7_codes(model, x, tmp_path, name)
    for y, g, q in zip(ys, got, _output_qparams(model)):
        expected = np.rint(y.numpy() / F32(q.scale)).astype(np.int64)
        np.testing.assert_array_equal(np.rint(g / F32(q.scale)).astype(np.int64), expected, err_msg=name)


@pytest.mark.slow
def test_small_models_with_every_exported_op(armv7_root, tmp_path):
    """test_tflite_model's EveryOp (strided conv, PAD, max pooling, squeeze-excite, concatenation with a
    requantizing table, flatten → linear, average pooling) and test_tflite_builtin's OddShapes (20-channel
    depthwise, residual ADD, MEAN with and without kept dims, broadcast MUL, per-tensor FULLY_CONNECTED, a
    QUANTIZE tail), converted for 'tflite-runtime:armv7': 0 codes differ on armv7."""
    from test_tflite_builtin import OddShapes
    from nets import random_bn_statistics
    from test_tflite_model import EveryOp

    for name, net, shape in (("every_op", EveryOp(), (3, 16, 16)), ("odd_shapes", OddShapes(), (3, 5, 5))):
        torch.manual_seed(0)
        p = edgeact.prepare(random_bn_statistics(net.eval()))
        edgeact.calibrate(p, torch.randn(64, *shape) * 1.5, progress=False)
        c = edgeact.convert(p, backend=BACKEND)
        _assert_exact(c, torch.randn(2, *shape, generator=torch.Generator().manual_seed(1)) * 1.5, tmp_path, name)


@pytest.mark.slow
@pytest.mark.parametrize("act", ["hard_swish", "hard_mish"])
def test_mnv3s_checkpoints(armv7_root, tmp_path, act):
    """The trained mnv3s (models/checkpoints) calibrated on digits: converted for 'tflite-runtime:armv7', its
    logits on armv7 equal the converted model's. (Measured: converted for 'litert:builtin' — LiteRT's
    optimized kernels on x86 — 38–81 of 160 logits were 1–3 codes off, over eight activations.)"""
    from edgeact import models

    data = models.digits_for("mnv3s")
    p = edgeact.prepare(models.load("mnv3s", act).eval())
    edgeact.calibrate(p, data.calibration_batches(n=32), progress=False)
    c = edgeact.convert(p, backend=BACKEND)
    x = data.x_test[:3]
    _assert_exact(c, x, tmp_path, f"mnv3s_{act}")
