"""Adding an activation is one spec: a made-up one, defined and registered only here, works everywhere.

The activation (x·(1+|x|)⁻¹, 'softsign', with torch.nn.Softsign as its torch.nn equivalent) has no native
kernel in any backend, so both exporters must carry it as an exact table. References are independent of
the code under test: the int8 table is recomputed here from the formula, the derivative is checked
against autograd, and the exported files against onnxruntime / LiteRT.
"""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import edgeact
import edgeact.derivatives as d
import edgeact.functional as F
import edgeact.nn as enn
import edgeact.numpy_functional as nf
from edgeact import activations as A
from edgeact.errors import UnsupportedError
from edgeact.qparams import QuantParams
from edgeact.tables import int8_table

NAME = "softsign"


def _spec() -> A.ActivationDef:
    return A.ActivationDef(
        name=NAME,
        torch_fn=lambda x: x / (1 + x.abs()),
        numpy_fn=lambda x: np.asarray(x, np.float64) / (1 + np.abs(np.asarray(x, np.float64))),
        derivative=lambda x: 1 / (1 + np.abs(np.asarray(x, np.float64))) ** 2,
        bounded_below=True, bounded_above=True, description="x / (1 + |x|)",
        aliases=("soft-sign-test",), torch_modules=(nn.Softsign,), torch_functions={nn.functional.softsign: ()},
    )


@pytest.fixture
def softsign():
    spec = A.register(_spec())
    try:
        yield spec
    finally:
        A.unregister(NAME)


def test_one_spec_gives_function_twin_derivative_module_and_names(softsign):
    assert A.get("SoftSign") is softsign and A.get("Soft_Sign-Test") is softsign and NAME in A.names()
    x = torch.linspace(-5, 5, 101, dtype=torch.float64, requires_grad=True)
    y = F.softsign(x)
    torch.testing.assert_close(y, torch.nn.functional.softsign(x))
    np.testing.assert_allclose(nf.softsign(x.detach().numpy()), y.detach().numpy(), rtol=1e-15)
    (g,) = torch.autograd.grad(y.sum(), x)
    np.testing.assert_allclose(d.softsign(x.detach().numpy()), g.numpy(), rtol=1e-12)
    m = enn.Softsign()
    assert isinstance(m, enn.Activation) and m.bound().name == NAME
    assert type(enn.from_torch(nn.Softsign())) is enn.Softsign
    assert enn.make_activation("softsign-test").activation_name == NAME


def test_unregister_removes_every_view(softsign):
    A.unregister(NAME)
    try:
        with pytest.raises(UnsupportedError, match="unknown activation"):
            A.get(NAME)
        with pytest.raises(AttributeError):
            F.softsign  # noqa: B018
        assert nn.Softsign not in A.TORCH_EQUIVALENTS
    finally:
        A.register(softsign)


def test_a_taken_name_is_refused_with_the_fix():
    with pytest.raises(UnsupportedError, match="already registered.*replace=True"):
        A.register(A.ActivationDef("relu", torch.relu, np.abs, np.sign))
    with pytest.raises(UnsupportedError, match="lower-case Python identifier"):
        A.register(A.ActivationDef("Soft Sign", torch.relu, np.abs, np.sign))


def test_int8_table_and_plots_come_from_the_spec(softsign, tmp_path):
    in_qp, out_qp = QuantParams.from_range(-6.0, 6.0), QuantParams(1.0 / 127.5, 0)
    x = (np.arange(-128, 128) - in_qp.zero_point) * in_qp.scale
    expected = np.clip(np.round(x / (1 + np.abs(x)) / out_qp.scale) + out_qp.zero_point, -128, 127)
    np.testing.assert_array_equal(int8_table(NAME, in_qp, out_qp), expected)
    from edgeact.plots import _int8_tables, _pwl_fit

    assert _int8_tables([(NAME, {})], tmp_path / "t.png", ncols=1).stat().st_size > 0
    assert _pwl_fit(NAME, tmp_path / "p.png", K=4).stat().st_size > 0


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.Softsign()  # torch.nn's class: swapped by the spec's torch_modules
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.act(self.conv(x)))


def test_prepare_convert_export_verify_exact_in_both_runtimes(softsign, tmp_path):
    from edgeact.export import to_onnx, to_tflite, verify

    torch.manual_seed(0)
    p = edgeact.prepare(_Net().eval())
    assert any(getattr(m, "activation_name", None) == NAME for m in p.modules())
    edgeact.calibrate(p, torch.randn(32, 1, 8, 8), progress=False)
    x = torch.randn(8, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for backend, write, ext in (("onnxruntime", to_onnx, "onnx"), ("litert", to_tflite, "tflite")):
            c = edgeact.convert(p, backend=backend)
            path = tmp_path / f"m.{ext}"
            write(c, path=path)
            report = verify(path, c, x)
            assert report.ok and report.mismatches == 0 and report.codes_compared > 0, str(report)
    assert pickle.loads(pickle.dumps(A.bind(NAME))).definition is softsign  # saved models find it by name


class _OutsideSoftsign(nn.Module):
    """An activation class from another library: recognized by what it computes."""

    def forward(self, x):
        return x / (1 + x.abs())


def test_swap_by_name_and_recognition_of_outside_modules(softsign):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), _OutsideSoftsign(), nn.Conv2d(2, 2, 1))
    p = edgeact.prepare(net.eval(), activations={"relu": "soft-sign-test"})
    names = [m.activation_name for m in p.modules() if isinstance(m, enn.Activation)]
    assert names == [NAME, NAME]


class _FunctionalNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.conv2 = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.conv2(nn.functional.softsign(self.conv(x)))


def test_functional_calls_are_swapped(softsign):
    p = edgeact.prepare(_FunctionalNet().eval())
    assert [m.activation_name for m in p.modules() if isinstance(m, enn.Activation)] == [NAME]
