"""Whole models: edgeact.convert(..., backend="onnxruntime") → to_onnx → onnxruntime, compared code for
code with the converted PyTorch model by verify() on 100 random inputs — every intermediate tensor too."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.fx as fx
from torch import nn

import edgeact
from edgeact.quantize.convert import with_tables
from edgeact.activations import names
from edgeact.cli import main as cli
from edgeact.errors import ExportError, ModelFileError, QuantizationError, UnsupportedError
from edgeact.export import to_onnx, verify
from edgeact.export.converted import save_converted
from edgeact.qparams import QuantParams
from edgeact.quantized import modules as Q
from nets import SmallCNN

try:  # PWL stand-ins come from edgeact.pwl (its own module)
    from edgeact.pwl import fit_pwl
except ImportError:  # pragma: no cover
    fit_pwl = None

SAMPLES = 100
ORT = "onnxruntime"


class OpsNet(nn.Module):
    """The other ops: max pooling (one module used twice), concat, squeeze-excite mul, residual add, mean,
    average pooling. Takes 16×16 inputs."""

    def __init__(self, act):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = act()
        self.pool = nn.MaxPool2d(2)
        self.a = nn.Conv2d(8, 8, 1)
        self.act_a = act()
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.act_b = act()
        self.se = nn.Conv2d(16, 16, 1)
        self.gate = nn.Sigmoid()
        self.avg = nn.AvgPool2d(2)
        self.head = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8 * 2 * 2, 5)

    def forward(self, x):
        y = self.pool(self.act(self.bn(self.conv(x))))
        z = torch.cat([self.act_a(self.a(y)), self.act_b(self.b(y))], 1)
        z = z * self.gate(self.se(z.mean((2, 3), keepdim=True))) + z
        return self.fc(torch.flatten(self.pool(self.head(self.avg(z))), 1))


def _float_model(cls, act, seed=0):
    torch.manual_seed(seed)
    m = cls(act).eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.uniform_(0.5, 1.5)
    return m


def _converted(float_model, dtype, n=128, seed=1, activations=None, size=12):
    p = edgeact.prepare(float_model, activations=activations, qconfig=edgeact.QConfig(activation_dtype=dtype))
    gen = torch.Generator().manual_seed(seed)
    edgeact.calibrate(p, torch.randn(n, 3, size, size, generator=gen), progress=False)
    return edgeact.convert(p, backend=ORT)


def _inputs(seed=2, size=12):
    return torch.randn(SAMPLES, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 1.2


def _assert_exact(report, converted):
    quantized_nodes = {n.name for n in converted.graph.nodes if n.op == "call_module"
                       and isinstance(converted.get_submodule(n.target), Q.QuantizedModule)
                       and not isinstance(converted.get_submodule(n.target), Q.Dequantize)}
    compared = {t.tensor for t in report.tensors}
    assert quantized_nodes <= compared, f"tensors not compared: {quantized_nodes - compared}"
    assert report.ok, str(report)
    assert report.codes_compared > SAMPLES * 10


# (label, module in the float model, prepare's activations= mapping): registry activations by swapping
# a ReLU through prepare(activations=...), parametrized ones as torch modules, a PWL stand-in by swapping.
ACTIVATIONS = [(n, nn.ReLU, {"relu": n}) for n in names() if n != "prelu"]
ACTIVATIONS += [
    ("prelu(8 slopes)", lambda: nn.PReLU(8), None),
    ("leaky_relu(0.2)", lambda: nn.LeakyReLU(0.2), None),
    ("gelu(tanh)", lambda: nn.GELU(approximate="tanh"), None),
]
if fit_pwl is not None:
    ACTIVATIONS.append(("pwl swish K=6", nn.ReLU, {"relu": fit_pwl("swish", segments=6)}))


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("label,act,swap", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_small_cnn_onnxruntime_equals_converted_model(label, act, swap, dtype, tmp_path):
    float_model = _float_model(SmallCNN, act)
    if label.startswith("prelu"):
        with torch.no_grad():  # distinct slopes per channel, some negative
            for m in (float_model.act1, float_model.act2):
                m.weight.copy_(torch.linspace(-0.4, 0.6, 8))
    converted = _converted(float_model, dtype, activations=swap)
    assert {m.bound.name for m in converted.modules() if isinstance(m, Q.QuantizedActivation)} != {"relu"} \
        or label == "relu"
    path = tmp_path / "m.onnx"
    to_onnx(converted, path=path)
    report = verify(path, converted, _inputs(), reference=float_model if swap is None else None)
    _assert_exact(report, converted)
    if swap is None:
        assert report.float_error["onnx"] == report.float_error["edgeact"]


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("act", [nn.ReLU6, nn.Hardswish, nn.Mish], ids=["relu6", "hardswish", "mish"])
def test_ops_net_onnxruntime_equals_converted_model(act, dtype, tmp_path):
    float_model = _float_model(OpsNet, act)
    converted = _converted(float_model, dtype, size=16)
    assert any(isinstance(m, Q.QuantizedAvgPool2d) for m in converted.modules())
    path = tmp_path / "m.onnx"
    to_onnx(converted, path=path)
    _assert_exact(verify(path, converted, _inputs(size=16)), converted)


def test_fused_integer_kernels_run(tmp_path):
    """What ORT makes of the graph: integer QLinearConv / QGemm / QLinearSigmoid / QLinearGlobalAveragePool (the
    adaptive pool), not float convs or a float mean."""
    converted = _converted(_float_model(SmallCNN, nn.Sigmoid), "int8")
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(to_onnx(converted).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert ops.count("QLinearConv") == 2 and "QGemm" in ops and ops.count("QLinearSigmoid") == 2
    assert ops.count("QLinearGlobalAveragePool") == 1
    assert not {"Conv", "Gemm", "GlobalAveragePool"} & set(ops)


# ------------------------------------------------------------------------- single ops, many parameters

class _Leaves(fx.Tracer):  # noqa: D101
    def is_leaf_module(self, m, qualname):
        return isinstance(m, Q.QuantizedModule) or super().is_leaf_module(m, qualname)


def _hand_built(root: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """A converted-style GraphModule made of edgeact.quantized modules."""
    gm = fx.GraphModule(root, _Leaves().trace(root))
    gm.edgeact_backend, gm.edgeact_example = ORT, example
    return gm


def _random_qp(rng, dtype, lo=-2.5, hi=0.0):
    qmin, qmax = QuantParams.qrange_of(dtype)
    return QuantParams(float(10 ** rng.uniform(lo, hi)), int(rng.integers(qmin, qmax + 1)), dtype)


class _Branches(nn.Module):
    """One branch per parameter set: x → Quantize → op(s) → Dequantize, all outputs summed up in a tuple."""

    def __init__(self, make, n, dtype, seed):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.branches = nn.ModuleList(make(rng, dtype) for _ in range(n))

    def forward(self, x, y, v):
        return tuple(b(x, y, v) for b in self.branches)


class _Binary(nn.Module):
    def __init__(self, rng, dtype, op):
        super().__init__()
        qa, qb, qo = (_random_qp(rng, dtype) for _ in range(3))
        self.qa, self.qb = Q.Quantize(qa, ORT), Q.Quantize(qb, ORT)
        self.op = op([qa, qb], qo)
        self.out = Q.Dequantize(qo, ORT)

    def forward(self, x, y, v):
        other = v if isinstance(self.op, Q.QuantizedMul) else y  # mul: (N, C, 1, 1) broadcast, squeeze-excite
        return self.out(self.op(self.qa(x), self.qb(other)))


class _Pool(nn.Module):
    def __init__(self, rng, dtype, kind):
        super().__init__()
        qi, qo = _random_qp(rng, dtype), _random_qp(rng, dtype)
        self.q = Q.Quantize(qi, ORT)
        self.op = (Q.QuantizedAvgPool2d(qi, ORT, 2, 2) if kind == "avg" else
                   Q.QuantizedMean(qi, qo, ORT, keepdim=kind == "mean_keepdim"))
        self.out = Q.Dequantize(self.op.out_qparams, ORT)

    def forward(self, x, y, v):
        return self.out(self.op(self.q(x)))


OPS = {
    "add": lambda rng, dt: _Binary(rng, dt, lambda i, o: Q.QuantizedAdd(i, o, ORT)),
    "mul(broadcast)": lambda rng, dt: _Binary(rng, dt, lambda i, o: Q.QuantizedMul(i, o, ORT)),
    "concat": lambda rng, dt: _Binary(rng, dt, lambda i, o: _ConcatAsBinary(i, o)),
    "avg_pool": lambda rng, dt: _Pool(rng, dt, "avg"),
    "mean": lambda rng, dt: _Pool(rng, dt, "mean"),
    "mean_keepdim": lambda rng, dt: _Pool(rng, dt, "mean_keepdim"),
}


class _ConcatAsBinary(Q.QuantizedConcat):
    def __init__(self, in_qps, out_qp):
        super().__init__(in_qps, out_qp, ORT, dim=1)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("op", list(OPS))
def test_single_ops_over_random_parameters(op, dtype, tmp_path):
    """40 random parameter sets per op in one model; every code of every branch compared."""
    gen = torch.Generator().manual_seed(0)
    xs = (torch.randn(8, 4, 6, 6, generator=gen) * 2, torch.randn(8, 4, 6, 6, generator=gen),
          torch.rand(8, 4, 1, 1, generator=gen) * 3)
    gm = _hand_built(_Branches(OPS[op], 40, dtype, seed=len(op)), xs[0])
    path = tmp_path / "ops.onnx"
    to_onnx(gm, xs, path)
    report = verify(path, gm, xs)
    assert report.ok, str(report)
    assert len(report.tensors) >= 40 * 3


# ------------------------------------------------------------------------- files, determinism, io

def test_export_is_deterministic_checked_and_atomic(tmp_path):
    converted = _converted(_float_model(SmallCNN, nn.Hardswish), "int8")
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    to_onnx(converted, path=a)
    to_onnx(converted, path=b)
    assert a.read_bytes() == b.read_bytes()
    onnx.checker.check_model(onnx.load(str(a)), full_check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx"]


def test_saved_and_reloaded_model_exports_the_same_bytes(tmp_path):
    converted = _converted(_float_model(SmallCNN, nn.Tanh), "uint8")
    save_converted(converted, tmp_path / "c.pt")
    reloaded = torch.load(tmp_path / "c.pt", weights_only=False)
    assert to_onnx(reloaded).SerializeToString() == to_onnx(converted).SerializeToString()


def test_int8_io_takes_and_gives_codes():
    converted = _converted(_float_model(SmallCNN, nn.ReLU), "int8")
    model = to_onnx(converted, io="int8")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(int8)" and sess.get_outputs()[0].type == "tensor(int8)"
    x = _inputs()
    q_in = converted.input_quant_x_int.out_qparams
    codes_in = converted.input_quant_x_int(x)
    got = sess.run(None, {sess.get_inputs()[0].name: codes_in.numpy().astype(np.int8)})[0]
    q_out = converted.dequantize_fc_q_int.in_qparams[0]
    with torch.no_grad():
        expected = torch.round(converted(x) / q_out.scale).long() + q_out.zero_point
    assert q_in.dtype == "int8"
    np.testing.assert_array_equal(got.astype(np.int64), expected.numpy())


def test_forced_table_lowering_is_exact_and_uses_gather_elements(tmp_path):
    converted = with_tables(_converted(_float_model(SmallCNN, nn.Tanh), "int8"))
    path = tmp_path / "t.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the copy keeps its backend: no "converted for another backend" warning
        model = to_onnx(converted, path=path)
    assert [n.op_type for n in model.graph.node].count("GatherElements") == 2
    assert "Tanh" not in [n.op_type for n in model.graph.node]
    assert verify(path, converted, _inputs()).ok


# ------------------------------------------------------------------------- verify can fail

def test_verify_reports_a_tampered_file(tmp_path):
    converted = _converted(_float_model(SmallCNN, nn.ReLU), "int8")
    model = to_onnx(converted)
    bias = next(t for t in model.graph.initializer if t.name.startswith("dw") and t.name.endswith("_bias"))
    values = onnx.numpy_helper.to_array(bias).copy()
    values[3] += 500  # one channel of the depthwise conv off by a few steps
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    path = tmp_path / "tampered.onnx"
    path.write_bytes(model.SerializeToString())
    report = verify(path, converted, _inputs())
    assert not report.ok
    bad = {t.tensor: t for t in report.tensors if t.mismatches}
    assert "dw_q_int" in bad and "conv_q_int" not in bad
    assert bad["dw_q_int"].max_lsb >= 1
    first = report.first_mismatches[0]
    assert first.tensor == "dw_q_int" and first.index[1] == 3
    assert "differ" in str(report)


def test_verify_rejects_unreadable_files(tmp_path):
    converted = _converted(_float_model(SmallCNN, nn.ReLU), "int8")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="not a readable ONNX"):
        verify(junk, converted, _inputs())
    with pytest.raises(ModelFileError, match="does not exist"):
        verify(tmp_path / "missing.onnx", converted, _inputs())


# ------------------------------------------------------------------------- bad input

def test_unsupported_node_is_named(tmp_path):
    class Sin(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = Q.Quantize(QuantParams(0.05, 0), ORT)
            self.out = Q.Dequantize(QuantParams(0.05, 0), ORT)

        def forward(self, x):
            return self.out(torch.sin(self.q(x)))

    gm = _hand_built(Sin(), torch.zeros(1, 4))
    with pytest.raises(UnsupportedError, match=r"'sin'.*call_function sin"):
        to_onnx(gm, path=tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UnsupportedError, match="needs a converted model"):
        to_onnx(SmallCNN(nn.ReLU), torch.zeros(1, 3, 8, 8))


def test_unsupported_module_is_named_at_prepare():
    class WithLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.rnn = nn.Softmax2d()

        def forward(self, x):
            return self.rnn(self.conv(x))

    with pytest.raises(UnsupportedError, match=r"Softmax2d.*'rnn'"):
        edgeact.prepare(WithLSTM().eval())


def test_nan_weights_are_refused():
    m = _float_model(SmallCNN, nn.ReLU)
    with torch.no_grad():
        m.dw.weight[2, 0, 1, 1] = float("nan")
    with pytest.raises(QuantizationError, match="NaN"):
        _converted(m, "int8")


def test_zero_width_calibration_range_is_refused():
    m = _float_model(SmallCNN, nn.ReLU)
    p = edgeact.prepare(m)
    with pytest.raises(QuantizationError, match="zero-width|zero scale"):
        edgeact.calibrate(p, torch.zeros(16, 3, 12, 12), progress=False)
        edgeact.convert(p, backend=ORT)


def test_unwritable_paths_leave_nothing(tmp_path):
    converted = _converted(_float_model(SmallCNN, nn.ReLU), "int8")
    with pytest.raises(ExportError, match="does not exist"):
        to_onnx(converted, path=tmp_path / "no" / "m.onnx")
    with pytest.raises(ExportError, match="writable"):
        to_onnx(converted, path="/proc/edgeact_model.onnx")
    with pytest.raises(ExportError, match="is a directory"):
        to_onnx(converted, path=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- command line

def test_cli_export_and_verify(tmp_path, capsys):
    converted = _converted(_float_model(SmallCNN, nn.Hardswish), "int8")  # int8: the TFLite side needs it
    save_converted(converted, tmp_path / "c.pt")
    assert cli(["export", str(tmp_path / "c.pt"), "--format", "onnx", "-o", str(tmp_path / "c.onnx")]) == 0
    assert cli(["verify", str(tmp_path / "c.onnx"), "--model", str(tmp_path / "c.pt"), "--samples", "20",
                "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "bit-exact" in out and (tmp_path / "r.json").is_file()
    with warnings.catch_warnings():  # the TFLite side warns that the model follows ORT's rounding
        warnings.simplefilter("ignore")
        assert cli(["export", str(tmp_path / "c.pt"), "--format", "tflite", "-o", str(tmp_path / "c.tflite")]) == 0
    assert (tmp_path / "c.tflite").stat().st_size > 0
    assert cli(["verify", str(tmp_path / "missing.onnx"), "--model", str(tmp_path / "c.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err
