"""Every activation exported to TFLite, run by LiteRT on all 256 int8 input codes × 200 random
(scale, zero point) pairs: the codes equal `int8_table(..., backend=...)` of the kernel set that ran
them — 'litert' with the XNNPACK delegate (LiteRT's default), 'litert:builtin' with the optimized
builtin kernels alone, 'litert:reference' with the reference kernels (they differ only where edgeact
emits a chain of int8 ops, export/litert/chains.py, whose ops round per kernel set).

Batched: one model per activation holds 200 independent int8 branches (`activation_batch_model`),
so each (activation, kernel set) costs one interpreter and one invoke.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from edgeact import QuantParams, int8_table
from edgeact.export.litert import interpreter as rt
from edgeact.activations import bind, names
from edgeact.errors import ModelFileError, UnsupportedError
from edgeact.export.litert.lowering import activation_batch_model, activation_model
from edgeact.pwl import PiecewiseLinear, fit_pwl
from edgeact.export.litert import arithmetic as T
from edgeact.backend import get_backend
from edgeact.export.litert.chains import chain_codes
from edgeact.export.litert.run import KERNEL_SETS

PAIRS = 200
CODES = np.arange(-128, 128, dtype=np.int8)
SHAPE = (1, 16, 16, 1)  # the 256 codes as a small NHWC image


def random_pairs(n: int = PAIRS, seed: int = 0, fixed_output: QuantParams | None = None):
    """Scales log-uniform in [1e-3, 2], zero points anywhere; every other pair with `fixed_output`."""
    rng = np.random.default_rng(seed)
    pairs = [(QuantParams(0.1, 12), QuantParams(0.1, 12))]  # equal parameters
    while len(pairs) < n:
        s_in, s_out = 10.0 ** rng.uniform(-3, 0.3, 2)
        z_in, z_out = (int(z) for z in rng.integers(-128, 128, 2))
        out = QuantParams(s_out, z_out)
        if fixed_output is not None and len(pairs) % 2:
            out = fixed_output
        pairs.append((QuantParams(s_in, z_in), out))
    return pairs


def run_batch(model: bytes, n: int, mode: str, shape=SHAPE):
    """LiteRT's output codes, (n, 256) (or (n, 256, channels)), and the ops it planned to execute."""
    interp = rt.load(model, mode)
    outs = rt.run(interp, [CODES.reshape(shape[:3] + (-1,)) if len(shape) == 4 else
                           np.broadcast_to(CODES[None, :, None], shape)] * n)
    return np.stack([o.reshape(-1 if len(shape) == 4 else shape[1:]) for o in outs]).astype(np.int64), \
        rt.delegated_ops(interp)


def _cases():
    cases = [(n, bind(n), None) for n in names()]
    cases += [
        ("sigmoid@1/256", bind("sigmoid"), T.LOGISTIC_OUTPUT),
        ("tanh@1/128", bind("tanh"), T.TANH_OUTPUT),
        ("leaky_relu(0.2)", bind("leaky_relu", negative_slope=0.2), None),
        ("prelu(-0.3)", bind("prelu", weight=-0.3), None),
        ("elu(0.5)", bind("elu", alpha=0.5), None),
        ("hard_sigmoid(0.2,0.5)", bind("hard_sigmoid", alpha=0.2, beta=0.5), None),
        ("hard_tanh(0,1)", bind("hard_tanh", min_val=0.0, max_val=1.0), None),
        ("hard_tanh(-2,3)", bind("hard_tanh", min_val=-2.0, max_val=3.0), None),
        ("swish(1.7)", bind("swish", beta=1.7), None),
        ("gelu(tanh)", bind("gelu", approximate="tanh"), None),
        ("pwl(hard_sigmoid)", PiecewiseLinear.exact("hard_sigmoid").bind(), None),
        ("pwl fit(swish,8)", fit_pwl("swish", segments=8).bind(), None),
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize("mode", rt.MODES)
@pytest.mark.parametrize("label,act,fixed", CASES, ids=[c[0] for c in CASES])
def test_exported_activation_equals_tflite_semantics(label, act, fixed, mode):
    pairs = random_pairs(seed=zlib.crc32(label.encode()), fixed_output=fixed)
    plans = [T.plan_activation(act, i, o) for i, o in pairs]
    if mode == "reference" and any(p.op == "ELU" and p.kind == "native" or
                                   p.kind == "chain" and "ELU" in p.options["chain"].ops for p in plans):
        pytest.skip("LiteRT's reference op set (BUILTIN_REF) has no ELU kernel")
    got, ops = run_batch(activation_batch_model(act, pairs), len(pairs), mode)
    if mode == "builtin":  # 'litert:builtin' does not reproduce the optimized ADD's vector loop at ties
        keep = [k for k, p in enumerate(plans) if not (p.kind == "chain" and "ADD" in p.options["chain"].ops)]
        got, pairs = got[keep], [pairs[k] for k in keep]
    # a chain's ADD/MUL/LEAKY_RELU/LOGISTIC round per kernel set: the backend of the set that ran
    arith = get_backend(KERNEL_SETS[mode]).arithmetic  # (the builtin backends plan no chains themselves)
    plans = [T.plan_activation(act, i, o) for i, o in pairs]
    expected = np.stack([chain_codes(p.options["chain"], i, arith) if p.kind == "chain"
                         else int8_table(act, i, o, backend=KERNEL_SETS[mode]) for p, (i, o) in zip(plans, pairs)])
    bad = np.argwhere(got != expected)
    assert bad.size == 0, (
        f"{label} [{mode}]: {len(bad)} codes differ, first at pair {pairs[bad[0][0]]} code "
        f"{bad[0][1] - 128}: LiteRT {got[tuple(bad[0])]} vs edgeact {expected[tuple(bad[0])]}")
    if mode == "xnnpack" and any(p.kind == "chain" or p.kind == "native" and p.op in T.XNNPACK_LUT_OPS
                                 for p in plans):
        assert "DELEGATE" in ops  # the XNNPACK delegate really ran these branches


# ---- the native kernels, forced: edgeact reproduces each of them code for code -----------------------

NATIVE = [
    ("relu", bind("relu"), None), ("relu6", bind("relu6"), None), ("hard_tanh", bind("hard_tanh"), None),
    ("hard_tanh(0,1)", bind("hard_tanh", min_val=0.0, max_val=1.0), None),
    ("leaky_relu(0.1)", bind("leaky_relu", negative_slope=0.1), None),
    ("leaky_relu(-0.3)", bind("leaky_relu", negative_slope=-0.3), None),
    ("prelu", bind("prelu"), None), ("prelu(-0.3)", bind("prelu", weight=-0.3), None),
    ("hard_swish", bind("hard_swish"), None),
    ("sigmoid", bind("sigmoid"), T.LOGISTIC_OUTPUT), ("tanh", bind("tanh"), T.TANH_OUTPUT),
    ("elu", bind("elu"), None), ("gelu", bind("gelu"), None), ("gelu(tanh)", bind("gelu", approximate="tanh"), None),
]


def native_pairs(act, fixed, seed):
    """Random pairs at which the kernel exists (HARD_SWISH refuses output scales below ~s_in/128)."""
    pairs = random_pairs(n=3 * PAIRS, seed=seed, fixed_output=fixed)
    if fixed is not None:
        pairs = [(i, fixed) for i, _ in pairs]
    ok = [p for p in pairs if T.native_kernel(act, *p, include_inexact=True) is not None]
    return ok[:PAIRS]


@pytest.mark.parametrize("mode", rt.MODES)
@pytest.mark.parametrize("label,act,fixed", NATIVE, ids=[c[0] for c in NATIVE])
def test_native_kernel_reproduced(label, act, fixed, mode):
    pairs = native_pairs(act, fixed, zlib.crc32(label.encode()))
    kernels = [T.native_kernel(act, i, o, include_inexact=True) for i, o in pairs]
    op = kernels[0].op
    if mode == "reference" and op == "ELU":
        pytest.skip("LiteRT's reference op set (BUILTIN_REF) has no ELU kernel")
    if mode == "xnnpack" and op == "LEAKY_RELU":
        pytest.skip("XNNPACK replaces LEAKY_RELU (see test_xnnpack_leaky_relu_is_not_the_builtin_kernel)")
    got, _ = run_batch(activation_batch_model(act, pairs, lowering="native"), len(pairs), mode)
    if mode == "xnnpack" and op in T.XNNPACK_LUT_OPS:
        expected = np.stack([T.xnnpack_lut_int8(op, i, o) for i, o in pairs])
    else:
        expected = np.stack([T.native_table(k, i, o) for k, (i, o) in zip(kernels, pairs)])
    bad = np.argwhere(got != expected)
    assert bad.size == 0, f"{label} [{mode}] {op}: {len(bad)} codes differ, first at {pairs[bad[0][0]]}"


# Pairs at which XNNPACK's table and the builtin one differ (found by searching random pairs with the
# two models; 4–6 per 1000): the native op is then emitted only on request, and auto lowers to GATHER.
XNNPACK_DIFFERS = [
    ("sigmoid", "LOGISTIC", [(0.08909095078706741, 14), (0.001373648177832365, 20), (0.047582607716321945, 81)],
     T.LOGISTIC_OUTPUT),
    ("tanh", "TANH", [(0.03155636042356491, 119), (0.01660308800637722, 7), (0.007502379361540079, -32)],
     T.TANH_OUTPUT),
    ("elu", "ELU", [(0.004303833935409784, -1, 0.001539408229291439, 17),
                    (0.0025475816801190376, 95, 0.018743958324193954, -84),
                    (0.00125629804097116, 113, 0.07397475838661194, 124)], None),
]


@pytest.mark.parametrize("name,op,raw,fixed", XNNPACK_DIFFERS, ids=[c[0] for c in XNNPACK_DIFFERS])
def test_xnnpack_tables_differ_from_builtin_and_auto_stays_exact(name, op, raw, fixed):
    act = bind(name)
    pairs = [(QuantParams(r[0], r[1]), fixed or QuantParams(r[2], r[3])) for r in raw]
    builtin = np.stack([T.lut_populate_int8(T._LUT_TRANSFORMS[op], i, o) for i, o in pairs])
    xnnpack = np.stack([T.xnnpack_lut_int8(op, i, o) for i, o in pairs])
    assert all((b != x).any() for b, x in zip(builtin, xnnpack))
    forced = activation_batch_model(act, pairs, lowering="native")
    np.testing.assert_array_equal(run_batch(forced, len(pairs), "xnnpack")[0], xnnpack)
    np.testing.assert_array_equal(run_batch(forced, len(pairs), "builtin")[0], builtin)
    assert {T.plan_activation(act, i, o).kind for i, o in pairs} == {"table"}
    auto = activation_batch_model(act, pairs)
    expected = np.stack([int8_table(act, i, o, backend="tflite") for i, o in pairs])
    for mode in ("xnnpack", "builtin"):
        np.testing.assert_array_equal(run_batch(auto, len(pairs), mode)[0], expected)


def test_xnnpack_leaky_relu_is_not_the_builtin_kernel():
    """XNNPACK's LEAKY_RELU (8-bit multipliers, modelled in tflite_lowering) is not the builtin kernel."""
    act = bind("leaky_relu", negative_slope=0.1)
    pairs = random_pairs(n=40, seed=5)[1:]
    model = activation_batch_model(act, pairs, lowering="native")
    xnn, ops = run_batch(model, len(pairs), "xnnpack")
    builtin, _ = run_batch(model, len(pairs), "builtin")
    assert "DELEGATE" in ops
    differing = sum((a != b).any() for a, b in zip(xnn, builtin))
    assert differing >= len(pairs) // 4, differing


def test_hard_swish_is_tflites_fixed_point_not_rounded_ideal():
    """TFLite's HARD_SWISH lands one step from the correctly rounded value at some codes (FACTS.md):
    reproduced, not rounded away — and never more than one step."""
    pairs = native_pairs(bind("hard_swish"), None, 17)
    native = np.stack([T.hard_swish_table(i, o) for i, o in pairs])
    ideal = np.stack([int8_table("hard_swish", i, o, backend="ideal") for i, o in pairs])
    assert np.abs(native - ideal).max() == 1
    assert (native != ideal).any(axis=1).sum() >= 10
    got, _ = run_batch(activation_batch_model("hard_swish", pairs, lowering="native"), len(pairs), "builtin")
    np.testing.assert_array_equal(got, native)


@pytest.mark.parametrize("mode", rt.MODES)
def test_per_channel_prelu(mode):
    slopes = np.array([0.25, -0.5, 0.013])
    act = bind("prelu", weight=slopes)
    pairs = random_pairs(n=60, seed=11)
    assert {T.plan_activation(act, i, o).op for i, o in pairs} == {"PRELU"}
    got, _ = run_batch(activation_batch_model(act, pairs, shape=(1, 256, 3)), len(pairs), mode, shape=(1, 256, 3))
    expected = np.stack([int8_table(act, i, o, backend="tflite").T for i, o in pairs])  # (pairs, 256, 3)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("mode", rt.MODES)
def test_float_io_model_quantizes_and_dequantizes_at_the_edges(mode):
    """Float in, float out: QUANTIZE of the exact dequantized codes gives the codes back, the activation
    runs on them, and DEQUANTIZE returns (q − z)·s — in float32 under XNNPACK and the reference kernels,
    as float32(q·s) + float32(−z·s) in the optimized builtin kernel (one ulp apart at some codes)."""
    in_qp, out_qp = QuantParams(0.05, 3), QuantParams(0.03, -20)
    model = activation_model("hard_mish", in_qp, out_qp, io="float", shape=(1, 256))
    x = ((CODES.astype(np.float32) - 3) * np.float32(0.05)).reshape(1, 256)  # exactly the dequantized codes
    y = rt.run(rt.load(model, mode), [x])[0].reshape(-1)
    table = int8_table("hard_mish", in_qp, out_qp, backend="tflite")
    s, z = np.float32(out_qp.scale), out_qp.zero_point
    if mode == "builtin":
        expected = table.astype(np.float32) * s + np.float32(-z) * s
    else:
        expected = (table - z).astype(np.float32) * s
    np.testing.assert_array_equal(y, expected)


def test_models_are_deterministic():
    in_qp, out_qp = QuantParams(0.05, 3), QuantParams(0.03, -20)
    for act in ("mish", "gelu", "prelu"):
        assert activation_model(act, in_qp, out_qp) == activation_model(act, in_qp, out_qp)


def test_uint8_is_refused_with_the_fix():
    with pytest.raises(UnsupportedError, match="dtype='int8'"):
        int8_table("relu", QuantParams(0.1, 128, "uint8"), QuantParams(0.1, 128, "uint8"), backend="tflite")


# ---- files LiteRT refuses ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_model():
    return activation_model("sigmoid", QuantParams(0.05, 3), T.LOGISTIC_OUTPUT)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong identifier", "empty"])
def test_corrupt_model_reports_litert_message(good_model, damage, tmp_path):
    data = {
        "truncated": good_model[: len(good_model) // 2],
        "garbage": bytes(np.random.default_rng(0).integers(0, 256, len(good_model), dtype=np.uint8)),
        "wrong identifier": good_model[:4] + b"XXXX" + good_model[8:],
        "empty": b"",
    }[damage]
    with pytest.raises(ModelFileError, match="LiteRT refused model bytes: .+ re-export"):
        rt.load(data)
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match=f"LiteRT refused {path}"):
        rt.load(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        rt.load(tmp_path / "absent.tflite")


def test_tflite_runtime_backend_agrees_when_installed():
    if "tflite-runtime" not in rt.available_backends():
        pytest.skip("tflite-runtime is not installed (it needs NumPy < 2)")
    act, pairs = bind("hard_swish"), random_pairs(n=20, seed=3)
    model = activation_batch_model(act, pairs, lowering="native")
    a = rt.run(rt.load(model, "builtin", backend="tflite-runtime"), [CODES.reshape(SHAPE)] * len(pairs))
    b = rt.run(rt.load(model, "builtin"), [CODES.reshape(SHAPE)] * len(pairs))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
