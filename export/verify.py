"""verify(): run an exported file in its runtime and compare it with the converted model, code for code.

The converted PyTorch model (edgeact.convert) and the deployed file should compute the same integer
codes. verify() runs both on the same inputs and reports every tensor it can compare: the outputs
and, for files edgeact wrote, every intermediate tensor (the exporter records which file tensor
holds which node's codes). A mismatch is reported with its size in quantization steps (LSB) and
where it is; with a float reference model, also how far each is from it.

Formats are dispatched on the file: `.onnx` runs in onnxruntime; `.tflite` goes to the TFLite
runner (`RUNNERS["tflite"]`, provided by the TFLite exporter).
"""
from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.fx as fx

from edgeact.errors import ModelFileError, UnsupportedError
from edgeact.quantized import modules as Q


@dataclass
class Mismatch:
    tensor: str  # node of the converted model (or output name)
    index: tuple[int, ...]  # position in that tensor
    runtime: int  # the file's code
    edgeact: int  # the converted model's code


@dataclass
class TensorParity:
    tensor: str
    compared: int
    mismatches: int
    max_lsb: int


@dataclass
class ParityReport:
    """How an exported file and the converted model agree, code for code."""

    path: str
    format: str
    samples: int
    tensors: list[TensorParity] = field(default_factory=list)
    first_mismatches: list[Mismatch] = field(default_factory=list)
    float_error: dict | None = None  # {"runtime": {...}, "edgeact": {...}} against the float reference
    notice: str | None = None  # this CPU's kernels differ from the file's backend (edgeact.targets.compat)
    session_options: dict = field(default_factory=dict)  # onnxruntime options set for the file's backend
    lowerings: dict | None = None  # node → how its activation was lowered (from the file's metadata)
    partitions: dict | None = None  # TFLite: {"delegated": XNNPACK partitions, "outside": ops run outside}

    @property
    def codes_compared(self) -> int:
        return sum(t.compared for t in self.tensors)

    @property
    def mismatches(self) -> int:
        return sum(t.mismatches for t in self.tensors)

    @property
    def max_lsb(self) -> int:
        return max((t.max_lsb for t in self.tensors), default=0)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.codes_compared > 0  # comparing nothing proves nothing

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(codes_compared=self.codes_compared, mismatches=self.mismatches, max_lsb=self.max_lsb, ok=self.ok)
        return d

    def __str__(self) -> str:
        lines = [f"{self.path} ({self.format}), {self.samples} input(s): "
                 f"{self.codes_compared:,} codes compared in {len(self.tensors)} tensor(s), "
                 f"{self.mismatches:,} differ" + (f" (max {self.max_lsb} LSB)" if self.mismatches else
                                                 " — bit-exact" if self.codes_compared else " — NOTHING COMPARED")]
        if self.notice:
            lines.append(f"  note: {self.notice}")
        if self.session_options:
            lines.append("  session options: " + ", ".join(f"{k}={v}" for k, v in self.session_options.items()))
        width = max((len(t.tensor) for t in self.tensors), default=6)
        for t in self.tensors:
            flag = f"{t.mismatches:,} differ, max {t.max_lsb} LSB" if t.mismatches else "exact"
            lines.append(f"  {t.tensor:<{width}}  {t.compared:>10,} codes  {flag}")
        for m in self.first_mismatches:
            lines.append(f"  mismatch at {m.tensor}{list(m.index)}: runtime {m.runtime}, edgeact {m.edgeact}")
        if self.lowerings:
            kinds = Counter(str(v) for v in self.lowerings.values())
            lines.append("  lowerings: " + ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items())))
        if self.partitions is not None:
            outside = Counter(self.partitions["outside"])
            lines.append(f"  XNNPACK: {self.partitions['delegated']} partition(s); outside: "
                         + (", ".join(f"{k} ×{n}" for k, n in sorted(outside.items())) or "none"))
        if self.float_error:
            for who, e in self.float_error.items():
                lines.append(f"  vs float reference, {who}: max |Δ| {e['max_abs']:.4g}, mean |Δ| {e['mean_abs']:.4g}, "
                             f"SQNR {e['sqnr_db']:.1f} dB")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------- runners
# A runner takes (path, feeds: list of float32 arrays, taps: list of (tensor name, dtype)) and returns
# (outputs: list of arrays, tapped: dict name → array). `metadata(path)` gives the tensor map.

def _onnx_metadata(path: Path) -> dict:
    model = _load_onnx(path)
    props = {p.key: p.value for p in model.metadata_props}
    from edgeact.export.onnxruntime.writer import TENSOR_MAP_KEY

    return json.loads(props.get(TENSOR_MAP_KEY, "{}"))


def _load_onnx(path: Path):
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, others OSError
        raise ModelFileError(f"{str(path)!r} is not a readable ONNX model ({type(exc).__name__}: {exc}); "
                             "re-export it with edgeact.export.to_onnx") from exc


def _run_onnx(path: Path, feeds: list[np.ndarray], taps: list[tuple[str, str]], session_options=None):
    """Outputs from the file as it is; tapped tensors from a copy that also exposes them (so that
    exposing them cannot change what ORT fuses in the file that is compared at the outputs)."""
    import onnx

    from edgeact.export.onnxruntime.graph import ELEM_TYPE

    model = _load_onnx(path)
    outputs = _onnx_session_run(path, model, feeds, session_options=session_options)
    if not taps:
        return outputs, {}
    present = {o.name for o in model.graph.output}
    extra = [(name, dtype) for name, dtype in taps if name not in present]
    for name, dtype in extra:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, ELEM_TYPE[dtype], None))
    values = _onnx_session_run(path, model, feeds, [o.name for o in model.graph.output], session_options)
    tapped = dict(zip([o.name for o in model.graph.output], values))
    return outputs, {name: tapped[name] for name, _ in taps}


def _onnx_session_run(path: Path, model, feeds, names=None, session_options=None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    for key, value in (session_options or {}).items():
        opts.add_session_config_entry(key, value)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelFileError(f"onnxruntime cannot load {str(path)!r}: {exc}") from exc
    inputs = sess.get_inputs()
    if len(inputs) != len(feeds):
        raise ModelFileError(f"{str(path)!r} takes {len(inputs)} input(s) but the model {len(feeds)}: is it the "
                             "export of this model?")
    for spec in inputs:
        if spec.type != "tensor(float)":
            raise UnsupportedError(f"{str(path)!r} takes {spec.type} codes (exported with io='int8'); verify a "
                                   "float-io export (the default) instead")
    return sess.run(names, {spec.name: x for spec, x in zip(inputs, feeds)})


def _run_tflite(path: Path, feeds, taps):
    """The .tflite side (provided by the TFLite exporter): same contract as _run_onnx."""
    raise UnsupportedError("verifying .tflite files is not available in this version of edgeact; "
                           "verify the .onnx export instead")


RUNNERS: dict[str, tuple[Callable, Callable[[Path], dict]]] = {
    "onnx": (_run_onnx, _onnx_metadata),
    "tflite": (_run_tflite, lambda path: {}),
}


def run_exported(path, inputs) -> list[np.ndarray]:
    """The float outputs of an exported .onnx / .tflite file on this machine for a batch of inputs in
    PyTorch's layout (a tensor or array, or a tuple of them): the file as deployed, run as `verify` runs it
    (with the session options its backend needs on this CPU, nothing added to the graph)."""
    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    run, _, _ = _host_runner(path)
    return run(Path(path), [np.asarray(x, dtype=np.float32) for x in inputs], [])[0]


def _host_runner(path):
    """(runner, metadata reader, compatibility) for `path` on this machine: onnxruntime gets the session
    options the file's backend needs on this CPU (edgeact.targets.compat)."""
    from edgeact.targets.compat import compatibility
    from edgeact.targets.cpu import host_family

    fmt = file_format(path)
    run, metadata = RUNNERS[fmt]
    compat = compatibility(path, host_family())
    if fmt == "onnx" and compat.session_options and run is _run_onnx:
        run = functools.partial(_run_onnx, session_options=compat.session_options)
    return run, metadata, compat


def file_format(path) -> str:
    """'onnx' or 'tflite' from the suffix, or the first bytes if the suffix says nothing."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist — export it first (edgeact export …)")
    suffix = path.suffix.lower().lstrip(".")
    if suffix in RUNNERS:
        return suffix
    head = path.read_bytes()[:8]
    if head[4:8] == b"TFL3":
        return "tflite"
    if head[:1] == b"\x08":  # protobuf field 1 (ir_version), varint: what an ONNX file starts with
        return "onnx"
    raise ModelFileError(f"cannot tell the format of {str(path)!r}: name it *.onnx or *.tflite")


# ---------------------------------------------------------------------------------------- verify

def _codes_of_model(model: fx.GraphModule, inputs: tuple[torch.Tensor, ...]):
    """Run the converted model; return (float outputs, codes of every quantized node, output qparams)."""
    modules = dict(model.named_modules())
    calls: dict[str, list[torch.Tensor]] = {}  # module target → its outputs, in call order
    nodes = [n for n in model.graph.nodes if n.op == "call_module"]
    handles = []
    for target in dict.fromkeys(n.target for n in nodes):
        m = modules[target]
        if isinstance(m, Q.QuantizedModule) and not isinstance(m, Q.Dequantize):
            handles.append(m.register_forward_hook(
                lambda mod, args, out, target=target: calls.setdefault(target, []).append(out)))
    try:
        with torch.no_grad():
            out = model(*inputs)
    finally:
        for h in handles:
            h.remove()
    # A module called from several nodes (one nn.MaxPool2d used twice) answers them in graph order.
    codes: dict[str, torch.Tensor] = {}
    for n in nodes:
        if calls.get(n.target):
            codes[n.name] = calls[n.target].pop(0)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    out_node = next(n for n in model.graph.nodes if n.op == "output")
    out_args = out_node.args[0] if isinstance(out_node.args[0], (tuple, list)) else [out_node.args[0]]
    out_qps, out_sources = [], []
    for a in out_args:
        m = modules.get(a.target) if isinstance(a, fx.Node) and a.op == "call_module" else None
        if not isinstance(m, Q.Dequantize):
            raise UnsupportedError("verify needs a converted model whose outputs are dequantized codes "
                                   "(edgeact.convert adds them)")
        out_qps.append(m.in_qparams[0])
        out_sources.append(a.args[0].name)
    return [o.detach().float().numpy() for o in outs], codes, out_qps, out_sources


def _float_error(y: np.ndarray, ref: np.ndarray) -> dict:
    d = y.astype(np.float64) - ref.astype(np.float64)
    signal = float(np.mean(ref.astype(np.float64) ** 2))
    noise = float(np.mean(d**2))
    return {"max_abs": float(np.max(np.abs(d))), "mean_abs": float(np.mean(np.abs(d))),
            "sqnr_db": float(10 * np.log10(signal / noise)) if noise > 0 else float("inf")}


def verify(path, model: fx.GraphModule, inputs, *, reference: torch.nn.Module | None = None,
           intermediate: bool = True, max_listed: int = 10) -> ParityReport:
    """Compare the exported file at `path` with the converted `model` on `inputs` (a batch tensor or
    a tuple of them). `reference`: the float model, for the float error of both. `intermediate`:
    also compare every intermediate tensor the file maps to a node (files written by edgeact).
    Where this CPU's kernels differ from the file's backend the report says so (`notice`), and onnxruntime
    gets the session options that backend needs (edgeact.targets.compat)."""
    path = Path(path)
    fmt = file_format(path)
    run, metadata, compat = _host_runner(path)
    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    from edgeact.inputdata import check_array

    inputs = tuple(torch.from_numpy(check_array(f"input {i}", np.asarray(x), where="verify"))
                   for i, x in enumerate(inputs))
    ours, codes, out_qps, out_sources = _codes_of_model(model, inputs)
    tensor_map = metadata(path) if intermediate else {}
    taps = {node: tensor_map[node] for node in codes if node in tensor_map}  # in execution order
    tap_list = [(tensor, "uint8" if shift else dtype) for tensor, dtype, shift in taps.values()]
    # The runners take the outputs from the file as it is and the taps from a copy that exposes them
    # (extra outputs can stop a runtime's graph rewrites, so they never decide the outputs).
    outputs, tapped = run(path, [x.numpy() for x in inputs], tap_list)
    report = ParityReport(str(path), fmt, int(inputs[0].shape[0]), notice=compat.notice,
                          session_options=dict(compat.session_options) if fmt == "onnx" else {})

    def compare(label, theirs: np.ndarray, mine: np.ndarray):
        theirs = np.asarray(theirs, dtype=np.int64)
        mine = np.asarray(mine, dtype=np.int64)
        if theirs.shape != mine.shape:
            raise ModelFileError(f"tensor {label!r}: the file gives shape {theirs.shape}, the model {mine.shape} — "
                                 "is the file the export of this model?")
        diff = np.abs(theirs - mine)
        bad = np.argwhere(diff > 0)
        report.tensors.append(TensorParity(label, int(diff.size), int(len(bad)), int(diff.max(initial=0))))
        for idx in bad[: max(0, max_listed - len(report.first_mismatches))]:
            report.first_mismatches.append(Mismatch(label, tuple(int(i) for i in idx), int(theirs[tuple(idx)]),
                                                    int(mine[tuple(idx)])))

    for node, (tensor, _dtype, shift) in taps.items():
        compare(node, np.asarray(tapped[tensor], dtype=np.int64) - shift, codes[node].numpy())
    for i, (y, qp) in enumerate(zip(outputs, out_qps)):
        label = f"output{i}" if len(outputs) > 1 else "output"
        if np.issubdtype(np.asarray(y).dtype, np.floating):
            # Exactly invertible: the file's DequantizeLinear gives (q − z)·s in float32.
            y_codes = np.rint(np.asarray(y, np.float32) / np.float32(qp.scale)).astype(np.int64) + qp.zero_point
        else:
            y_codes = np.asarray(y, np.int64)
        compare(label, y_codes, codes[out_sources[i]].numpy())
    if reference is not None:
        with torch.no_grad():
            ref = reference.eval()(*inputs)
        refs = [r.detach().float().numpy() for r in (ref if isinstance(ref, (tuple, list)) else [ref])]
        report.float_error = {
            fmt: _float_error(np.concatenate([np.asarray(o, np.float32).ravel() for o in outputs]),
                              np.concatenate([r.ravel() for r in refs])),
            "edgeact": _float_error(np.concatenate([o.ravel() for o in ours]), np.concatenate([r.ravel() for r in refs])),
        }
    return report


__all__ = ["verify", "run_exported", "ParityReport", "TensorParity", "Mismatch", "RUNNERS", "file_format"]
