"""Does this CPU run the kernels a model file was written for? What to say, and which runtime options to set.

A file edgeact writes records its backend: ONNX metadata 'edgeact.semantics' (and 'edgeact.weights':
'uint8' → ORT's U8U8 kernels, exact everywhere; 'int8' → its u8s8 kernels), TFLite metadata 'edgeact'
(JSON with 'semantics'). The CPU's kernel family comes from edgeact.targets.cpu. verify, bench and check
call `compatibility` before comparing, print its notice, and pass its session options to onnxruntime:

- int8 weights written for an exact backend, on a CPU whose u8s8 kernels saturate (AVX2, AVX-512BW
  without VNNI): session.x64quantprecision=1 makes ORT run its exact kernels there (measured:
  benchmarks/RESULTS-onnx-x86.md).
- a file for 'onnxruntime-x86-avx2' (saturation modelled) on a CPU that does not saturate: codes differ
  wherever a pair saturates; nothing to set.
- a file for another CPU's kernels ('-aarch64' semantics on x86, any .tflite on armv7's tflite-runtime).
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from edgeact.targets.cpu import DESCRIPTION, SATURATES_U8S8, target_family

PRECISE_U8S8 = {"session.x64quantprecision": "1"}


@dataclasses.dataclass
class FileBackend:
    format: str  # 'onnx' or 'tflite'
    semantics: str | None  # None: not written by edgeact (or an older edgeact)
    weights: str | None = None  # ONNX: 'uint8' or 'int8'


@dataclasses.dataclass
class Compatibility:
    file: FileBackend
    family: str
    notice: str | None
    session_options: dict[str, str]


def _onnx_backend(path: Path) -> FileBackend:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # an unreadable file is reported by the runtime that loads it, with its reason
        return FileBackend("onnx", None)
    props = {p.key: p.value for p in model.metadata_props}
    weights = props.get("edgeact.weights")
    if weights is None:  # not edgeact's, or older: the type of the conv/gemm weight initializers decides
        types = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}
        found = {types[t.data_type] for t in model.graph.initializer if t.data_type in types and len(t.dims) >= 2}
        weights = "int8" if "int8" in found else ("uint8" if found else None)
    return FileBackend("onnx", props.get("edgeact.semantics"), weights)


def _tflite_backend(path: Path) -> FileBackend:
    try:
        from edgeact.export.tflite_verify import _edgeact_metadata, _unpack

        meta = _edgeact_metadata(_unpack(path.read_bytes(), str(path)))
    except Exception:  # reported by the runtime that loads it
        meta = {}
    return FileBackend("tflite", meta.get("semantics"))


def file_backend(path) -> FileBackend:
    """The backend a model file was written for, from its metadata (or its weights' type)."""
    path = Path(path)
    return _tflite_backend(path) if path.suffix.lower() == ".tflite" else _onnx_backend(path)


def compatibility(path, family: str) -> Compatibility:
    """What to tell the user and which session options to set before running `path` on a `family` CPU."""
    fb = file_backend(path)
    name, sem = Path(path).name, fb.semantics or "an unknown backend"
    here = DESCRIPTION.get(family, family)
    notice, options = None, {}
    if fb.format == "onnx" and fb.weights == "int8":
        if fb.semantics == "onnxruntime-x86-avx2" and not SATURATES_U8S8.get(family, False):
            notice = (f"{name} was written for onnxruntime-x86-avx2 (ORT's AVX2 u8s8 kernels, int16 pair "
                      f"saturation modelled); this CPU runs {here}, which does not saturate: codes differ "
                      "wherever a pair saturates. Compare on an AVX2 CPU (--target qemu-x86_64:haswell), or "
                      "convert with semantics='onnxruntime' for every CPU")
        elif fb.semantics != "onnxruntime-x86-avx2" and SATURATES_U8S8.get(family, False):
            options = dict(PRECISE_U8S8)
            notice = (f"{name} was written for {sem} with int8 weights (exact int32 sums); this CPU runs {here}: "
                      "setting onnxruntime's session option session.x64quantprecision=1 so that it runs exact "
                      "kernels (re-export with edgeact's default uint8 weights to need no option)")
    elif fb.format == "tflite" and family == "armv7":
        notice = (f"{name} was written for {sem} (LiteRT); armv7 runs tflite-runtime 2.14, whose arithmetic edgeact "
                  "does not model: some codes may differ by a few LSB")
    elif fb.semantics and fb.semantics.endswith("-aarch64") and family not in ("aarch64", "unknown"):
        notice = f"{name} was written for {fb.semantics} (ARM's kernels); this CPU runs {here}"
    return Compatibility(fb, family, notice, options)


def announce(path, target, stream=None) -> dict[str, str]:
    """Print `compatibility`'s notice for `path` on `target` (one line, before comparing) and return the
    session options to run it with."""
    c = compatibility(path, target_family(target))
    if c.notice:
        print(f"note: on {getattr(target, 'name', target)}: {c.notice}", file=stream or sys.stderr)
    return c.session_options


__all__ = ["FileBackend", "Compatibility", "file_backend", "compatibility", "announce", "PRECISE_U8S8"]
