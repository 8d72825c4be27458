"""onnxruntime's integer kernels edgeact writes for, checked exhaustively on several CPUs.

- Mul: written with rank-0 Q/DQ scales, so that onnxruntime runs it as QLinearMul, when MLAS's x86-64 kernel
  (separate float32 multiply and add) and its aarch64 kernel (one fused multiply-add) give the same codes for
  every pair of input codes; otherwise DQ → float32 Mul → Q.
- Add of two same-shaped tensors: QLinearAdd when its SSE2, AVX2 and NEON kernels agree; each CPU's
  onnxruntime must compute exactly the kernel modelled for it.
- Activation chains (QLinearSigmoid, QLinearMul, Clip on codes).
Every code pair (65,536) or every input code, natively, under qemu-x86_64 -cpu Haswell (AVX2) and Nehalem
(SSE4.2, no FMA), and in ORT's aarch64 build under qemu-aarch64; the references are the kernels' float32 steps
written out here with NumPy.
"""
from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import edgeact
from edgeact import QuantParams
from edgeact.export import to_onnx
from edgeact.export.onnxruntime.arithmetic import fma32
from edgeact.targets import get_target

F32 = np.float32
# (s_a, z_a, s_b, z_b, s_c, z_c); the last: products · ratio land on .5 exactly (ratio 1/2, z_c even)
SCALES = [(0.0213, 7, 0.0041, -128, 0.0077, -24), (0.05, -3, 0.11, 20, 0.9, 100), (0.25, 0, 0.5, 0, 0.25, 2)]


class Product(nn.Module):
    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return a * b


def numpy_qlinear_mul(a, b, sa, za, sc, zc, fma: bool) -> np.ndarray:
    """MLAS's QLinearMul written out independently: uint8 codes, float32 product · ratio + zero point, with a
    separate multiply and add (x86-64) or one fused multiply-add (aarch64; FMA emulated exactly in float64
    plus a correction for the double rounding)."""
    ratio = F32(F32(F32(sa) * F32(sa)) / F32(sc))
    p = ((a.astype(np.int64) - za) * (b.astype(np.int64) - za)).astype(F32)
    t = fma32(p, ratio, F32(zc + 128)) if fma else (p * ratio).astype(F32) + F32(zc + 128)
    return np.clip(np.rint(t), 0, 255).astype(np.int64) - 128


def numpy_float_mul(a, b, sa, za, sc, zc) -> np.ndarray:
    """DQ → float32 Mul → Q (QuantizeLinear divides by the scale, rounds half to even)."""
    da = ((a - za).astype(F32) * F32(sa)).astype(F32)
    db = ((b - za).astype(F32) * F32(sa)).astype(F32)
    return np.clip(np.rint(((da * db).astype(F32) / F32(sc)).astype(F32)) + zc, -128, 127).astype(np.int64)


def _optimized_ops(path, tmp_path) -> collections.Counter:
    """The op types of the graph onnxruntime runs after its optimizations (what it fused)."""
    so = ort.SessionOptions()
    so.optimized_model_filepath, so.log_severity_level = str(tmp_path / "opt.onnx"), 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)


def _all_pairs() -> np.ndarray:
    """(256, 512) int8 codes: row r pairs a = every code with b = every code shifted by r — all 65,536 pairs."""
    codes = np.arange(-128, 128)
    return np.stack([np.concatenate([codes, np.roll(codes, r)]) for r in range(256)]).astype(np.int8)


def _product_file(tmp_path, sa, za, sc, zc):
    """The converted a·b (both halves of one input: one scale) with these parameters, as an int8-io ONNX file."""
    prepared = edgeact.prepare(Product())
    edgeact.calibrate(prepared, [torch.randn(4, 512)], progress=False)
    conv = edgeact.convert(prepared, backend="onnxruntime")
    qa, qc = QuantParams(sa, za), QuantParams(sc, zc)
    for m in conv.modules():  # the parameters under test, set exactly on every module
        if hasattr(m, "out_qparams"):
            is_mul = type(m).__name__ == "QuantizedMul"
            m.in_qparams = [qa, qa] if is_mul else ([qc] if type(m).__name__ == "Dequantize" else
                                                     ([qa] if m.in_qparams else []))
            m.out_qparams = qc if is_mul or type(m).__name__ == "Dequantize" else qa
    path = tmp_path / f"mul_{sa}_{sc}.onnx"
    to_onnx(conv, torch.zeros(1, 512), path, io="int8")
    x = torch.from_numpy(_all_pairs().astype(np.int64))
    expected = conv.mul_q_int(x[:, :256], x[:, 256:]).numpy()
    return path, expected


# (s_a, z_a, s_c, z_c). The second rounds 2 pairs differently with and without FMA; the last puts every
# product · 1/2 on a multiple of 1/2: ties everywhere (round half to even in both kernels).
SCALES = [(0.0213, 7, 0.0077, -24), (0.05, -3, 0.31, 100), (0.5, 0, 0.5, 2)]
FUSED = [True, False, True]


def test_the_converted_mul_is_qlinear_mul_where_x86_and_arm_agree_else_float(tmp_path):
    x = _all_pairs().astype(np.int64)
    a, b = x[:, :256], x[:, 256:]
    for (sa, za, sc, zc), fused in zip(SCALES, FUSED):
        _, expected = _product_file(tmp_path, sa, za, sc, zc)
        x86, arm = (numpy_qlinear_mul(a, b, sa, za, sc, zc, fma) for fma in (False, True))
        assert np.array_equal(x86, arm) == fused
        assert np.array_equal(expected, x86 if fused else numpy_float_mul(a, b, sa, za, sc, zc))


def test_onnxruntime_fuses_the_portable_mul_into_qlinear_mul(tmp_path):
    for (sa, za, sc, zc), fused in zip(SCALES, FUSED):
        path, _ = _product_file(tmp_path, sa, za, sc, zc)
        ops = _optimized_ops(path, tmp_path)
        assert (ops["QLinearMul"], ops["Mul"]) == ((1, 0) if fused else (0, 1)), ops


def _check_on(target: str, tmp_path) -> None:
    feed = _all_pairs()
    for sa, za, sc, zc in SCALES:
        path, expected = _product_file(tmp_path, sa, za, sc, zc)
        got = get_target(target).run(path, [feed]).outputs[0].astype(np.int64)
        assert int(np.count_nonzero(got != expected)) == 0, (target, sa, sc)


# ---- activation chains (export/onnxruntime/chains.py): QLinearSigmoid / QLinearMul / Clip on codes

CHAINED = {"swish": nn.SiLU, "hard_swish": nn.Hardswish, "hard_mish": None, "hard_sigmoid": nn.Hardsigmoid}


RANGES = [(-4.0, 4.0), (-1.3, 7.1), (-6.2, 2.9)]


def _chain_files(tmp_path, ranges=RANGES) -> list[tuple]:
    """Each chained activation alone in a model, calibrated on each range; (path, expected codes, name)."""
    from edgeact.nn import HardMish

    out = []
    for name, cls in CHAINED.items():
        for k, (lo, hi) in enumerate(ranges):
            model = nn.Sequential(cls() if cls else HardMish())
            prepared = edgeact.prepare(model)
            edgeact.calibrate(prepared, [torch.linspace(lo, hi, 512).reshape(2, 256)], progress=False)
            conv = edgeact.convert(prepared, backend="onnxruntime")
            act = next(m for m in conv.modules() if type(m).__name__ == "QuantizedActivation")
            if act.lowering != "chain":
                continue
            path = tmp_path / f"{name}_{k}.onnx"
            to_onnx(conv, torch.zeros(1, 256), path, io="int8")
            out.append((path, act.table.numpy().astype(np.int64), name))
    assert {n for *_, n in out} == set(CHAINED)
    return out


def _check_chains_on(target: str, tmp_path, ranges=RANGES) -> None:
    feed = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    for path, expected, name in _chain_files(tmp_path, ranges):
        got = get_target(target).run(path, [feed]).outputs[0].astype(np.int64).reshape(-1)
        assert int(np.count_nonzero(got != expected)) == 0, (target, path.name)


def test_chains_run_in_the_integer_kernels(tmp_path):
    for path, _, name in _chain_files(tmp_path):
        ops = _optimized_ops(path, tmp_path)
        assert ops["QLinearMul"] == (1 if name == "swish" else 2) and ops["Mul"] == 0, ops
        assert ops["QLinearSigmoid"] == (name == "swish"), ops


# ---- Add of two tensors of one shape: QLinearAdd where SSE, AVX2 and NEON agree, else float


class Sum(nn.Module):
    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return a + b


def _sum_file(tmp_path, qa: QuantParams, qc: QuantParams):
    """The converted a + b (both halves of one input: one scale) with these parameters, as an int8-io file."""
    prepared = edgeact.prepare(Sum())
    edgeact.calibrate(prepared, [torch.randn(4, 512)], progress=False)
    conv = edgeact.convert(prepared, backend="onnxruntime")
    params = {"input_quant_x_int": ([], qa), "getitem_int": ([qa], qa), "getitem_1_int": ([qa], qa),
              "add_q_int": ([qa, qa], qc), "dequantize_add_q_int": ([qc], qc)}
    for name, (ins, out) in params.items():
        m = conv.get_submodule(name)
        m.in_qparams, m.out_qparams = ins, out
    path = tmp_path / f"add_{qa.scale}_{qc.scale}.onnx"
    to_onnx(conv, torch.zeros(1, 512), path, io="int8")
    x = torch.from_numpy(_all_pairs().astype(np.int64))
    return path, conv.add_q_int(x[:, :256], x[:, 256:]).numpy()


def numpy_qlinear_add_sse(a, b, qa, qb, qc) -> np.ndarray:
    """MLAS's SSE2 QLinearAdd written out: uint8 codes, ratios s_a/s_c and s_b/s_c, a fixed part with the zero
    points, then (fixed + a·r_a) + b·r_b in float32, rounded half to even."""
    za, zb, zc = qa.zero_point + 128, qb.zero_point + 128, qc.zero_point + 128
    ra, rb = F32(F32(qa.scale) / F32(qc.scale)), F32(F32(qb.scale) / F32(qc.scale))
    fixed = F32(F32(zc) - F32(F32(ra * F32(za)) + F32(rb * F32(zb))))
    t = ((fixed + ((a + 128).astype(F32) * ra).astype(F32)).astype(F32) + ((b + 128).astype(F32) * rb).astype(F32))
    return np.clip(np.rint(t.astype(F32)), 0, 255).astype(np.int64) - 128


SUMS = [(QuantParams(0.0213, 7), QuantParams(0.0257, -24)), (QuantParams(0.013, -20), QuantParams(0.027, 5))]


def test_the_converted_add_is_qlinear_add_and_onnxruntime_fuses_it(tmp_path):
    from edgeact.export.onnxruntime.arithmetic import ARITHMETIC

    x = _all_pairs().astype(np.int64)
    for qa, qc in SUMS:
        assert ARITHMETIC.add_is_fused(qa, qa, qc)
        path, expected = _sum_file(tmp_path, qa, qc)
        assert np.array_equal(expected, numpy_qlinear_add_sse(x[:, :256], x[:, 256:], qa, qa, qc))
        ops = _optimized_ops(path, tmp_path)
        assert (ops["QLinearAdd"], ops["Add"]) == (1, 0), ops


# Two scales: MLAS's three QLinearAdd kernels agree on every pair for the first and not for the second, which
# edgeact therefore keeps in float. Each CPU's onnxruntime must compute the kernel modelled for it.
ADDS = [(QuantParams(0.0213, 7), QuantParams(0.0041, -100), QuantParams(0.0257, -24)),
        (QuantParams(0.09971584379673004, -80), QuantParams(0.007108292542397976, 39),
         QuantParams(0.091972216963768, -61))]


def _qdq_add_file(tmp_path, qa, qb, qc):
    from edgeact.export.onnxruntime.graph import GraphBuilder, save_atomic

    g = GraphBuilder("add")
    u8 = [QuantParams(q.scale, q.zero_point + 128, "uint8") for q in (qa, qb, qc)]
    ins = [g.add_input(n, "uint8", [256, 256]) for n in ("a", "b")]

    def par(q):
        return [g.constant(F32(q.scale), "s", rank0=True), g.constant(np.uint8(q.zero_point), "z", rank0=True)]

    y = g.node("Add", [g.node("DequantizeLinear", [t, *par(q)]) for t, q in zip(ins, u8)])
    g.add_output(g.node("QuantizeLinear", [y, *par(u8[2])]), "c", "uint8", [256, 256])
    path = tmp_path / "qdq_add.onnx"
    save_atomic(g.model().SerializeToString(), path)
    return path


def _check_adds_on(target: str, kernel: str, tmp_path) -> None:
    from edgeact.export.onnxruntime.arithmetic import ARITHMETIC, _key, qlinear_add_codes

    x = (_all_pairs().astype(np.int64) + 128).astype(np.uint8)
    for qa, qb, qc in ADDS:
        path = _qdq_add_file(tmp_path, qa, qb, qc)
        got = get_target(target).run(path, [x[:, :256], x[:, 256:]]).outputs[0].astype(np.int64)
        table = qlinear_add_codes(*_key(qa), *_key(qb), *_key(qc), kernel).reshape(256, 256)
        want = table[x[:, :256].astype(np.int64), x[:, 256:].astype(np.int64)]
        assert int(np.count_nonzero(got != want)) == 0, (target, kernel)
        if ARITHMETIC.add_is_fused(qa, qb, qc):  # then every kernel gives the converted model's codes
            sse = qlinear_add_codes(*_key(qa), *_key(qb), *_key(qc), "sse").reshape(256, 256)
            assert np.array_equal(table, sse)
    assert [ARITHMETIC.add_is_fused(*q) for q in ADDS] == [True, False]


# ---- every CPU: natively, emulated x86-64 without and with AVX2, and onnxruntime's aarch64 build

CPUS = [  # target, the fixture it needs, MLAS's QLinearAdd kernel there (None: read from this host)
    ("host", None, None), ("qemu-x86_64:haswell", "qemu_user", "avx2"), ("qemu-x86_64:nehalem", "qemu_user", "sse"),
    ("qemu-aarch64", "aarch64_root", "neon")]


@pytest.mark.parametrize("target,needs,add_kernel", [
    pytest.param(t, f, k, id=t, marks=() if f is None else pytest.mark.slow) for t, f, k in CPUS])
def test_every_cpu_computes_the_modelled_kernels(target, needs, add_kernel, tmp_path, request):
    """Mul (65,536 pairs, fused or float), the activation chains, and QLinearAdd's kernel for this CPU."""
    if needs:
        request.getfixturevalue(needs)
    _check_on(target, tmp_path)
    # every range natively; one per activation under QEMU (each file is an emulated Python + onnxruntime
    # process, ~4 s; the Mul test above runs all 65,536 code pairs of each kernel there)
    _check_chains_on(target, tmp_path, RANGES if needs is None else RANGES[:1])
    if add_kernel is None:
        from edgeact.targets.cpu import host_family

        family = host_family()
        if not family.startswith("x86") or family == "x86-sse4":
            return  # the host test reads the AVX2 kernel; SSE and NEON are covered under QEMU
        add_kernel = "avx2"
    _check_adds_on(target, add_kernel, tmp_path)
