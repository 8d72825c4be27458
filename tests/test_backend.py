"""The Backend object: names, the lowering decided once at convert, and files that say what they were written for."""
from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import edgeact
from edgeact.backend import get_backend, x86_kernel_family
from edgeact.errors import UnsupportedError
from edgeact.export import to_onnx, to_tflite, verify
from edgeact.export.litert.run import file_metadata
from edgeact.export.onnxruntime.writer import BACKEND_KEY, LOWERINGS_KEY
from edgeact.quantized import modules as Q
from nets import SmallCNN


def _converted(backend, act=nn.SiLU, lowering=None):
    torch.manual_seed(0)
    model = SmallCNN(act).eval()
    p = edgeact.prepare(model, qconfig=edgeact.QConfig(backend=backend))
    edgeact.calibrate(p, torch.randn(64, 3, 12, 12, generator=torch.Generator().manual_seed(1)), progress=False)
    return edgeact.convert(p, lowering=lowering)


def _inputs():
    return torch.randn(16, 3, 12, 12, generator=torch.Generator().manual_seed(2))


def test_every_backend_has_a_unique_name_and_old_names_are_aliases():
    names = edgeact.backends()
    assert {"ideal", "onnxruntime", "onnxruntime:aarch64", "litert", "litert:aarch64", "litert:builtin",
            "litert:reference"} <= set(names)
    assert get_backend("tflite") is names["litert"]
    assert get_backend("onnxruntime-aarch64") is names["onnxruntime:aarch64"]
    assert get_backend("tflite-builtin").kernels == "builtin"


def test_host_resolves_to_a_backend_of_this_runtime_and_bare_host_is_refused():
    b = get_backend("litert:host")
    assert b.runtime == "litert" and b.format == "tflite"
    assert get_backend("onnxruntime:host").runtime == "onnxruntime"
    with pytest.raises(UnsupportedError, match="names a CPU, not a runtime"):
        get_backend("host")
    with pytest.raises(UnsupportedError, match="unknown backend 'onnx-x86'.*litert"):
        get_backend("onnx-x86")
    with pytest.raises(UnsupportedError, match="unknown backend"):
        edgeact.QConfig(backend="tflite-x86")


@pytest.mark.parametrize("flags, family", [
    ({"sse4_1", "sse4_2"}, "sse4"),
    ({"sse4_1", "avx", "avx2", "fma"}, "avx2"),
    ({"avx2", "avx512f", "avx512bw"}, "avx512bw"),
    ({"avx2", "avx512bw", "avx512_vnni"}, "avx512-vnni"),
    ({"avx2", "avx_vnni"}, "avx-vnni"),
    ({"avx512_vnni", "amx_int8", "amx_tile"}, "amx"),
])
def test_x86_kernel_family_follows_the_cpuid_flags_mlas_dispatches_on(flags, family):
    assert x86_kernel_family(flags) == family


def test_convert_uses_the_backend_the_model_was_prepared_for_and_records_it():
    c = _converted("litert")
    assert c.edgeact_backend == "litert"
    assert {m.backend for m in c.modules() if isinstance(m, Q.QuantizedModule)} == {"litert"}
    # A saved converted model keeps the name (torch.save pickles the string, not the object).
    buf = io.BytesIO()
    torch.save(c, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=False).edgeact_backend == "litert"


def test_onnx_file_records_its_backend_and_the_lowerings_convert_decided(tmp_path):
    c = _converted("onnxruntime")
    planned = {n.name: c.get_submodule(n.target).lowering for n in c.graph.nodes
               if n.op == "call_module" and isinstance(c.get_submodule(n.target), Q.QuantizedActivation)}
    path = tmp_path / "m.onnx"
    model = to_onnx(c, path=path)
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert props[BACKEND_KEY] == "onnxruntime"
    assert json.loads(props[LOWERINGS_KEY]) == planned
    assert set(planned.values()) == {"chain"}  # swish: QLinearSigmoid → QLinearMul, the same on every CPU
    ops = [n.op_type for n in model.graph.node]
    assert "Sigmoid" in ops and "GatherElements" not in ops


def test_forced_native_lowering_changes_the_codes_of_the_model_not_only_the_file(tmp_path):
    """lowering='native' at convert: the model computes what ORT's Sigmoid·x computes, and the file agrees."""
    c = _converted("onnxruntime", lowering={"swish": "native"})
    acts = [m for m in c.modules() if isinstance(m, Q.QuantizedActivation)]
    assert {m.lowering for m in acts} == {"native"}
    path = tmp_path / "native.onnx"
    model = to_onnx(c, path=path)
    assert "Sigmoid" in [n.op_type for n in model.graph.node]
    assert verify(path, c, _inputs()).ok


def test_tflite_file_records_its_backend_and_lowerings(tmp_path):
    c = _converted("litert:aarch64", act=nn.Hardswish)
    path = tmp_path / "m.tflite"
    to_tflite(c, path=path)
    meta = file_metadata(path)
    assert meta["backend"] == "litert:aarch64"
    acts = {n.name: c.get_submodule(n.target) for n in c.graph.nodes
            if n.op == "call_module" and isinstance(c.get_submodule(n.target), Q.QuantizedActivation)}
    for name, m in acts.items():
        written = meta["lowerings"][name]
        expected = {"table": "table", "native": "HARD_SWISH", "chain": "chain MUL → ADD → MUL"}[m.lowering]
        assert written == expected, (name, m.lowering, written)  # chains: export/litert/chains.py


def test_a_model_for_one_format_written_in_the_other_gets_exact_tables_and_a_warning(tmp_path):
    c = _converted("litert", act=nn.Sigmoid)
    with pytest.warns(UserWarning, match="converted for backend 'litert'"):
        model = to_onnx(c, path=tmp_path / "x.onnx")
    assert "Sigmoid" not in [n.op_type for n in model.graph.node]


def test_unknown_lowering_request_is_refused_with_the_choices():
    with pytest.raises(UnsupportedError, match="lowering"):
        _converted("onnxruntime", lowering={"swish": "fast"})
    with pytest.raises(UnsupportedError, match="lowering must be"):
        _converted("onnxruntime", lowering=3)


def test_ideal_backend_has_no_file_format():
    with pytest.raises(UnsupportedError, match="no file format"):
        get_backend("ideal").write(None)
    assert np.array_equal(get_backend("ideal").plan_activation(
        edgeact.activations.bind("relu"), edgeact.QuantParams(0.1, 0), edgeact.QuantParams(0.1, 0)).table,
        np.clip(np.arange(-128, 128), 0, 127))


@pytest.mark.parametrize("cpu, family, name, expected", [
    ("x86-64", "avx2", "litert:host", "litert"),
    ("x86-64", "avx2", "onnxruntime:host", "onnxruntime"),
    ("x86-64", "sse4", "onnxruntime:host", "onnxruntime"),
    ("x86-64", "avx512bw", "onnxruntime:host", "onnxruntime"),
    ("x86-64", "avx512-vnni", "onnxruntime:host", "onnxruntime:x86-vnni"),  # int8 weights: exact and faster
    ("x86-64", "amx", "onnxruntime:host", "onnxruntime:x86-vnni"),
    ("aarch64", None, "litert:host", "litert:aarch64"),
    ("aarch64", None, "onnxruntime:host", "onnxruntime:aarch64"),
    ("armv7", None, "tflite-runtime:host", "tflite-runtime:armv7"),
])
def test_host_picks_the_default_kernels_of_this_cpu(monkeypatch, cpu, family, name, expected):
    monkeypatch.setattr("edgeact.backend.host_cpu", lambda: cpu)
    monkeypatch.setattr("edgeact.backend.x86_kernel_family", lambda flags=None: family)
    assert get_backend(name).name == expected


def test_host_never_picks_a_kernel_set_the_runtime_does_not_run_by_default(monkeypatch):
    """LiteRT has no armv7 build: 'litert:host' there is refused rather than answered with its reference kernels."""
    monkeypatch.setattr("edgeact.backend.host_cpu", lambda: "armv7")
    with pytest.raises(UnsupportedError, match="no 'litert' backend runs on this machine's CPU"):
        get_backend("litert:host")
