"""The .tflite side of `edgeact.export.verify`: run a file in LiteRT the way verify() expects.

`run_tflite(path, feeds, taps)` takes the model's inputs as the converted model does (NCHW float32),
gives them to LiteRT in the file's layout (NHWC), and returns the outputs — and any tapped
intermediate tensors — back in the converted model's layout. Tapped tensors are exposed by a copy
of the file whose extra graph outputs are those tensors, so that the XNNPACK delegate still runs
them (it writes only graph outputs) with unchanged arithmetic; the outputs compared come from the
file as it is. `tflite_metadata(path)` reads the tensor map `to_tflite` stores in the file.

One file, three LiteRT kernel sets: `verify_tflite(mode=…)` compares each with the converted model
computing in the matching backend ('litert', 'litert:builtin', 'litert:reference'; `with_backend`).
"""
from __future__ import annotations

import copy
import functools
import importlib
import json
from pathlib import Path

import flatbuffers
import numpy as np
import torch
from ai_edge_litert import schema_py_generated as schema

from edgeact.export.litert import interpreter as rt
from edgeact.errors import ModelFileError, UnsupportedError
from edgeact.export.litert.builder import _AlignedBufferT
from edgeact.export.litert.writer import METADATA_KEY
from edgeact.quantized.modules import QuantizedActivation, QuantizedModule
from edgeact.backend import get_backend
from edgeact.export.litert import arithmetic as T
from edgeact.export.litert.chains import chain_codes

# LiteRT kernel set (interpreter mode) → the backend whose arithmetic it computes.
KERNEL_SETS = {"xnnpack": "litert", "builtin": "litert:builtin", "reference": "litert:reference"}


def _read(path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist — export it first (edgeact export …)")
    return path.read_bytes()


def _unpack(data: bytes, where: str):
    """The file as the schema's object tree; a damaged file is reported with LiteRT's own message."""
    try:
        if data[4:8] != b"TFL3":
            raise ValueError("no TFL3 file identifier")
        return schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # flatbuffers raises struct/index errors on damaged bytes
        rt.load(data, "builtin")  # raises ModelFileError("LiteRT refused …") with LiteRT's reason
        raise ModelFileError(f"{where} is not a readable .tflite file ({type(exc).__name__}: {exc}); "
                             "re-export it (edgeact export … --format tflite)") from exc


def _edgeact_metadata(model) -> dict:
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_KEY:
            return json.loads(bytes(np.asarray(model.buffers[entry.buffer].data, dtype=np.uint8)).decode())
    return {}


def file_metadata(path) -> dict:
    """Everything `to_tflite` records in a file: tensor map, layouts, backend, io, activation lowerings."""
    return _edgeact_metadata(_unpack(_read(path), str(path)))


def tflite_metadata(path) -> dict:
    """node name → [tensor name, dtype, shift]: what verify() can compare inside a file edgeact wrote."""
    data = _read(path)
    return _edgeact_metadata(_unpack(data, str(path))).get("tensors", {})


def _to_model_layout(x: np.ndarray, layout) -> np.ndarray:
    if layout == "nhwc" and x.ndim == 4:
        return x.transpose(0, 3, 1, 2)
    if isinstance(layout, (list, tuple)) and layout and layout[0] == "flat":
        _, c, h, w = layout
        return x.reshape(x.shape[0], h, w, c).transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
    return x


def _with_outputs(model, names: list[str]) -> bytes:
    """The same model with the named tensors added to the graph outputs."""
    sg = model.subgraphs[0]
    index = {(t.name.decode() if isinstance(t.name, bytes) else t.name): i for i, t in enumerate(sg.tensors)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ModelFileError(f"the file has no tensor(s) {missing}: is it the export of this model?")
    sg.outputs = list(sg.outputs) + [index[n] for n in names if index[n] not in sg.outputs]
    model.signatureDefs = None  # the signature lists the original outputs only
    buffers = []
    for b in model.buffers:
        nb = _AlignedBufferT()
        nb.data = None if b.data is None else np.asarray(b.data, dtype=np.uint8)
        buffers.append(nb)
    model.buffers = buffers
    fb = flatbuffers.Builder(1024)
    fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())


def run_tflite(path, feeds: list[np.ndarray], taps: list[tuple[str, str]], *, mode: str = "xnnpack"):
    """verify()'s runner contract: (outputs, {tapped tensor name: array}), both in the model's layout."""
    data = _read(path)
    model = _unpack(data, str(path))
    meta = _edgeact_metadata(model)
    layouts = meta.get("layouts", {})
    interp = rt.load(data, mode)
    inputs = interp.get_input_details()
    if len(inputs) != len(feeds):
        raise ModelFileError(f"{str(path)!r} takes {len(inputs)} input(s) but the model {len(feeds)}: is it the "
                             "export of this model?")
    arranged = []
    for spec, x in zip(inputs, feeds):
        if spec["dtype"] != np.float32:
            raise UnsupportedError(f"{str(path)!r} takes {np.dtype(spec['dtype']).name} codes (exported with "
                                   "io='int8'); verify a float-io export (the default) instead")
        x = np.asarray(x, np.float32)
        layout = layouts.get(spec["name"], "nhwc" if x.ndim == 4 else "plain")
        arranged.append(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "nhwc" and x.ndim == 4 else x)
    outputs = rt.run(interp, arranged)
    out_names = [d["name"] for d in interp.get_output_details()]
    outputs = [_to_model_layout(y, layouts.get(n, "nhwc" if y.ndim == 4 else "plain"))
               for y, n in zip(outputs, out_names)]
    if not taps:
        return outputs, {}
    names = [name for name, _ in taps]
    tapped_model = _with_outputs(model, names)
    t_interp = rt.load(tapped_model, mode)
    values = rt.run(t_interp, arranged)
    by_name = dict(zip([d["name"] for d in t_interp.get_output_details()], values))
    return outputs, {n: _to_model_layout(by_name[n], layouts.get(n, "plain")) for n in names}


def register_runner() -> None:
    """Make `edgeact.export.verify` (and `edgeact verify FILE.tflite`) run .tflite files with LiteRT."""
    try:
        V = importlib.import_module("edgeact.export.verify")
    except ImportError:  # an edgeact without the verify module: nothing to register with
        return
    V.RUNNERS["tflite"] = (run_tflite, tflite_metadata)


def with_backend(model, backend: str):
    """A copy of a converted model whose modules compute with another LiteRT kernel set's arithmetic.

    The kernel sets differ only in the model ops' arithmetic — including the ops of an activation
    chain, whose table is recomputed — so a model converted for 'litert' and re-targeted equals one
    converted for `backend` directly, and the exported file is the same for all three.
    """
    family = set(KERNEL_SETS.values())
    target = get_backend(backend).name
    current = get_backend(getattr(model, "edgeact_backend", "ideal")).name
    if target not in family or current not in family:
        raise UnsupportedError(f"cannot re-target a model converted for backend={current!r} to {target!r}: "
                               f"both must be one of {sorted(family)}; convert with backend={target!r}")
    if current == target:
        return model
    retargeted = copy.deepcopy(model)
    arith = get_backend(target).arithmetic
    for m in retargeted.modules():
        if isinstance(m, QuantizedModule):
            m.backend = target
        if isinstance(m, QuantizedActivation) and getattr(m, "lowering", None) == "chain":  # rounds per kernel set
            chain = T.plan_activation(m.bound, m.in_qparams[0], m.out_qparams).options["chain"]
            m.table = torch.from_numpy(chain_codes(chain, m.in_qparams[0], arith))
    retargeted.edgeact_backend = target
    retargeted.edgeact_example = getattr(model, "edgeact_example", None)
    return retargeted


def verify_tflite(path, model, inputs, *, mode: str = "xnnpack", backend: str | None = None, **kwargs):
    """Compare the .tflite at `path` with the converted `model` on `inputs`: a `ParityReport` (see
    edgeact.export.verify). `mode`: LiteRT's kernel set — 'xnnpack' (LiteRT's default), 'builtin'
    (its optimized kernels without the delegate) or 'reference' — each compared with the model
    computing in the matching backend ('litert', 'litert:builtin', 'litert:reference'): a model
    converted for any of the three is re-targeted (`with_backend`); one converted for another backend
    is compared as it is. `backend`: compare with this LiteRT backend instead of the matching one
    (e.g. to count what 'litert' gets wrong without the delegate)."""
    if mode not in KERNEL_SETS:
        raise UnsupportedError(f"unknown LiteRT mode {mode!r}; choose one of {', '.join(KERNEL_SETS)}")
    if backend is not None:
        model = with_backend(model, backend)
    elif get_backend(getattr(model, "edgeact_backend", "ideal")).name in KERNEL_SETS.values():
        model = with_backend(model, KERNEL_SETS[mode])
    V = importlib.import_module("edgeact.export.verify")  # the module (the package exports a function of that name)

    saved = V.RUNNERS["tflite"]
    V.RUNNERS["tflite"] = (functools.partial(run_tflite, mode=mode), tflite_metadata)
    try:
        report = V.verify(path, model, inputs, **kwargs)
    finally:
        V.RUNNERS["tflite"] = saved
    report.lowerings = _edgeact_metadata(_unpack(_read(path), str(path))).get("lowerings")
    parts = rt.partitions(rt.load(_read(path), mode))
    report.partitions = {"delegated": parts.delegated, "outside": list(parts.outside)}
    return report


__all__ = ["run_tflite", "tflite_metadata", "file_metadata", "verify_tflite", "register_runner", "with_backend", "KERNEL_SETS"]
