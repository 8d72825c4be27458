"""Every activation exported to ONNX, run by onnxruntime on all 256 input codes × 200 random
(scale, zero point) pairs for input and output: the codes equal `int8_table(..., backend="onnxruntime")`.

Batched: one model per (activation, dtype) holds 200 independent DQ → op → Q branches (or table
lookups) that all read the same 256-code input, so each case costs one onnxruntime session.
"""
from __future__ import annotations

import zlib

import numpy as np
import onnxruntime as ort
import pytest

from edgeact import QuantParams, int8_table
from edgeact.activations import bind, names
from edgeact.errors import ExportError, UnsupportedError
from edgeact.export import export_activation
from edgeact.export.onnxruntime import chains
from edgeact.export.onnxruntime.lowering import lower_activation
from edgeact.export.onnxruntime.graph import GraphBuilder, check
from edgeact.export.onnxruntime.arithmetic import ARITHMETIC as ORT_SEMANTICS, default_lowering

try:  # PWL stand-ins come from edgeact.pwl (its own module; skipped, visibly, where it is missing)
    from edgeact.pwl import PiecewiseLinear, fit_pwl
except ImportError:  # pragma: no cover
    PiecewiseLinear = fit_pwl = None
needs_pwl = pytest.mark.skipif(fit_pwl is None, reason="edgeact.pwl is not available")

PAIRS = 200
CHANNELS = 3


def random_pairs(dtype: str, n: int = PAIRS, seed: int = 0) -> list[tuple[QuantParams, QuantParams]]:
    """Random input/output parameters: scales log-uniform in [1e-3, 2], zero points anywhere, plus the
    fixed output parameters runtimes like for sigmoid/tanh and a same-parameters pair."""
    rng = np.random.default_rng(seed)
    lo, hi = QuantParams.qrange_of(dtype)
    mid = 0 if dtype == "int8" else 128
    fixed = [((0.05, mid), (1 / 256, lo)), ((0.03, mid), (1 / 128, mid)), ((0.1, lo + 100), (0.1, lo + 100))]
    pairs = [(QuantParams(s, z, dtype), QuantParams(so, zo, dtype)) for (s, z), (so, zo) in fixed]
    while len(pairs) < n:
        s_in, s_out = 10.0 ** rng.uniform(-3, 0.3, 2)
        z_in, z_out = rng.integers(lo, hi + 1, 2)
        pairs.append((QuantParams(s_in, int(z_in), dtype), QuantParams(s_out, int(z_out), dtype)))
    return pairs


def run_branches(act, pairs, *, lowering=None, tables=None, channels=None):
    """One model, one branch per pair: all codes in, ORT's codes out (n_pairs, [channels,] n_codes)."""
    dtype = pairs[0][0].dtype
    codes = pairs[0][0].codes()
    shape = [1, channels, codes.size] if channels else [1, codes.size]
    g = GraphBuilder("branches")
    x = g.add_input("x", dtype, shape)
    used = set()
    for k, (in_qp, out_qp) in enumerate(pairs):
        table = None if tables is None else tables[k]
        y, how = lower_activation(g, x, act, in_qp, out_qp, table=table, lowering=lowering, rank=len(shape))
        used.add(how)
        g.add_output(y, f"y{k}", dtype, shape)
    model = g.model()
    check(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = np.broadcast_to(codes, shape).astype(pairs[0][0].np_dtype)
    out = np.stack(sess.run(None, {"x": feed})).astype(np.int64)
    return out.reshape((len(pairs), channels, codes.size) if channels else (len(pairs), codes.size)), used


def _cases():
    cases = [(n, bind(n)) for n in names()]
    cases += [
        ("leaky_relu(0.2)", bind("leaky_relu", negative_slope=0.2)),
        ("leaky_relu(0.37)", bind("leaky_relu", negative_slope=0.37)),
        ("prelu(-0.3)", bind("prelu", weight=-0.3)),
        ("elu(0.5)", bind("elu", alpha=0.5)),
        ("hard_sigmoid(0.2,0.5)", bind("hard_sigmoid", alpha=0.2, beta=0.5)),
        ("hard_tanh(-2,3)", bind("hard_tanh", min_val=-2.0, max_val=3.0)),
        ("swish(1.7)", bind("swish", beta=1.7)),
        ("gelu(tanh)", bind("gelu", approximate="tanh")),
    ]
    if fit_pwl is not None:
        cases += [
            ("pwl(hard_sigmoid)", PiecewiseLinear.exact("hard_sigmoid").bind()),
            ("pwl fit(swish,8)", fit_pwl("swish", segments=8).bind()),
        ]
    return cases


CASES = _cases()


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("label,act", CASES, ids=[c[0] for c in CASES])
def test_default_lowering_equals_onnxruntime_semantics(label, act, dtype):
    pairs = random_pairs(dtype, seed=zlib.crc32(label.encode()))
    got, used = run_branches(act, pairs)
    if label == "identity":
        # identity between different parameters is a bare DQ→Q pair, which ORT folds into its neighbours
        # inside a model (DoubleQDQPairsRemover): edgeact lowers it as a table (native only where in == out)
        assert "table" in used
    else:
        # integer ops where they are exact on every CPU: a chain (export/onnxruntime/chains.py) or, where the
        # table is a clamp of the input codes (equal parameters in and out), a Clip on the codes
        assert used <= {default_lowering(act), "chain", "clip"}
        if "chain" in used:
            assert (used == {"chain"}) == all(chains.search(act, i, o) is not None for i, o in pairs)
        if "clip" in used:
            assert any(i == o for i, o in pairs)
    expected = np.stack([int8_table(act, i, o, backend="onnxruntime") for i, o in pairs])
    bad = np.argwhere(got != expected)
    assert bad.size == 0, (
        f"{label} {dtype}: {len(bad)} codes differ, first at pair {bad[0][0]} {pairs[bad[0][0]]} code index "
        f"{bad[0][1]}: ORT {got[tuple(bad[0])]} vs edgeact {expected[tuple(bad[0])]}")


NATIVE_CASES = [(label, act) for label, act in CASES if default_lowering(act) == "native"]
# Reproducible native kernels that are not the default (the table measured as fast): still exact on request.
NON_DEFAULT_NATIVE = [("hard_mish", bind("hard_mish")), ("swish", bind("swish")), ("swish(1.7)", bind("swish", beta=1.7))]


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("label,act", NATIVE_CASES, ids=[c[0] for c in NATIVE_CASES])
def test_forced_table_lowering_reproduces_the_ideal_table(label, act, dtype):
    """The table path carries any table: here the ideal (float64) one instead of ORT's own codes."""
    pairs = random_pairs(dtype, n=60, seed=7)
    tables = [int8_table(act, i, o, backend="ideal") for i, o in pairs]
    got, used = run_branches(act, pairs, lowering="table", tables=tables)
    assert used == {"table"}
    np.testing.assert_array_equal(got, np.stack(tables))


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("label,act", NON_DEFAULT_NATIVE, ids=[c[0] for c in NON_DEFAULT_NATIVE])
def test_forced_native_lowering_matches_its_semantics(label, act, dtype):
    pairs = random_pairs(dtype, seed=3)
    tables = [ORT_SEMANTICS.native_table(act, i, o) for i, o in pairs]
    got, used = run_branches(act, pairs, lowering="native", tables=tables)
    assert used == {"native"}
    np.testing.assert_array_equal(got, np.stack(tables))


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("lowering", [None, "table", "native"])
def test_per_channel_prelu(dtype, lowering):
    act = bind("prelu", weight=np.array([0.25, -0.5, 0.013]))
    pairs = random_pairs(dtype, seed=11)
    table = ORT_SEMANTICS.native_table if lowering == "native" else lambda *a: int8_table(*a, backend="onnxruntime")
    expected = np.stack([table(act, i, o) for i, o in pairs])
    got, used = run_branches(act, pairs, lowering=lowering, channels=CHANNELS, tables=list(expected))
    assert used == {lowering or "table"}
    assert expected.shape == (PAIRS, CHANNELS, 256)
    np.testing.assert_array_equal(got, expected)


def test_float_io_model_runs_float_in_float_out():
    in_qp, out_qp = QuantParams(0.05, 0), QuantParams(1 / 256, -128)
    model = export_activation("sigmoid", in_qp, out_qp, io="float", shape=(1, 8))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.linspace(-6, 6, 8, dtype=np.float32).reshape(1, 8)
    y = sess.run(None, {"x": x})[0]
    table = int8_table("sigmoid", in_qp, out_qp, "onnxruntime")
    codes = np.clip(np.rint(x / np.float32(0.05)), -128, 127).astype(np.int64)
    np.testing.assert_array_equal(y, ((table[codes + 128] + 128) * np.float32(1 / 256)).astype(np.float32))


def test_export_is_deterministic_and_atomic(tmp_path):
    in_qp, out_qp = QuantParams(0.05, 0), QuantParams(0.03, -20)
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    export_activation("mish", in_qp, out_qp, a)
    export_activation("mish", in_qp, out_qp, b)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx"]  # no temp files left


@needs_pwl
def test_pwl_has_no_native_lowering():
    in_qp, out_qp = QuantParams(0.05, 0), QuantParams(0.03, -20)
    with pytest.raises(UnsupportedError, match="no ONNX op"):
        export_activation(fit_pwl("swish", segments=4), in_qp, out_qp, lowering="native")


@pytest.mark.skipif(fit_pwl is None, reason="edgeact.pwl is not available")
def test_pwl_stand_ins_are_among_the_cases():
    assert {label for label, _ in CASES} >= {"pwl(hard_sigmoid)", "pwl fit(swish,8)"}


def test_bad_requests_are_named():
    in_qp, out_qp = QuantParams(0.05, 0), QuantParams(0.03, -20)
    with pytest.raises(ExportError, match="not reproducible"):
        export_activation("elu", in_qp, out_qp, lowering="native")
    with pytest.raises(UnsupportedError, match="unknown lowering"):
        export_activation("relu", in_qp, out_qp, lowering="fast")
    with pytest.raises(UnsupportedError, match="channels on axis 1"):
        export_activation("prelu", in_qp, out_qp, weight=np.array([0.1, 0.2]), shape=(1, 256))
    # A model table that the native op would not reproduce is refused on a forced native lowering …
    from edgeact.export.onnxruntime.lowering import choose_lowering

    tie_in, tie_out = QuantParams(0.02769, 18), QuantParams(0.01269, 0)  # two float32 ties move a code
    ideal = int8_table("tanh", tie_in, tie_out)
    assert np.count_nonzero(ideal != ORT_SEMANTICS.native_table(bind("tanh"), tie_in, tie_out)) == 2
    with pytest.raises(ExportError, match="backend='onnxruntime'"):
        choose_lowering(bind("tanh"), tie_in, tie_out, ideal, "native")
    # … and lowered as a table automatically.
    assert choose_lowering(bind("tanh"), tie_in, tie_out, ideal, None) == "table"


def test_unwritable_path_leaves_nothing(tmp_path):
    in_qp, out_qp = QuantParams(0.05, 0), QuantParams(0.03, -20)
    with pytest.raises(ExportError, match="does not exist"):
        export_activation("relu", in_qp, out_qp, tmp_path / "missing" / "m.onnx")
    with pytest.raises(ExportError, match="is a directory"):
        export_activation("relu", in_qp, out_qp, tmp_path)
    with pytest.raises(ExportError, match="writable"):  # not even root may create files in /proc
        export_activation("relu", in_qp, out_qp, "/proc/edgeact_test.onnx")
    assert list(tmp_path.iterdir()) == []
