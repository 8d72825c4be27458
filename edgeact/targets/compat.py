"""Does this CPU run the kernels a model file was written for? What to say, and which runtime options to set.

A file edgeact writes records its backend: ONNX metadata 'edgeact.backend' (and 'edgeact.weights':
'uint8' → ORT's U8U8 kernels, exact everywhere; 'int8' → its u8s8 kernels), TFLite metadata 'edgeact'
(JSON with 'backend'); edgeact 0.1 wrote 'edgeact.semantics' / 'semantics' (old names, aliased). The
CPU's kernel family comes from edgeact.targets.cpu. verify, bench and check
call `compatibility` before comparing, print its notice, and pass its session options to onnxruntime:

- int8 weights written for an exact backend, on a CPU whose u8s8 kernels saturate (AVX2, AVX-512BW
  without VNNI): session.x64quantprecision=1 makes ORT run its exact kernels there (measured:
  benchmarks/RESULTS-onnx-x86.md).
- a file for 'onnxruntime:x86-avx2' (saturation modelled) on a CPU that does not saturate: codes differ
  wherever a pair saturates; nothing to set.
- a file for another CPU's kernels ('litert:aarch64' on x86, a LiteRT file on armv7's tflite-runtime
  and a 'tflite-runtime:armv7' file elsewhere).
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from edgeact.targets.cpu import DESCRIPTION, SATURATES_U8S8, target_family

PRECISE_U8S8 = {"session.x64quantprecision": "1"}
AVX2 = "onnxruntime:x86-avx2"
ARMV7 = "tflite-runtime:armv7"


@dataclasses.dataclass
class FileBackend:
    format: str  # 'onnx' or 'tflite'
    backend: str | None  # None: not written by edgeact
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
    backend = props.get("edgeact.backend") or _canonical(props.get("edgeact.semantics"))
    if weights is None:  # not edgeact's, or older: the type of the conv/gemm weight initializers decides
        types = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}
        found = {types[t.data_type] for t in model.graph.initializer if t.data_type in types and len(t.dims) >= 2}
        weights = "int8" if "int8" in found else ("uint8" if found else None)
    return FileBackend("onnx", backend, weights)


def _tflite_backend(path: Path) -> FileBackend:
    try:
        from edgeact.export.litert.run import _edgeact_metadata, _unpack

        meta = _edgeact_metadata(_unpack(path.read_bytes(), str(path)))
    except Exception:  # reported by the runtime that loads it
        meta = {}
    return FileBackend("tflite", meta.get("backend") or _canonical(meta.get("semantics")))


def _canonical(name: str | None) -> str | None:
    """A backend name for an edgeact 0.1 semantics string."""
    if name is None:
        return None
    from edgeact.backend import ALIASES

    return ALIASES.get(name, name)


def file_backend(path) -> FileBackend:
    """The backend a model file was written for, from its metadata (or its weights' type)."""
    path = Path(path)
    return _tflite_backend(path) if path.suffix.lower() == ".tflite" else _onnx_backend(path)


def compatibility(path, family: str) -> Compatibility:
    """What to tell the user and which session options to set before running `path` on a `family` CPU."""
    fb = file_backend(path)
    name, who = Path(path).name, fb.backend or "an unknown backend"
    here = DESCRIPTION.get(family, family)
    notice, options = None, {}
    if fb.format == "onnx" and fb.weights == "int8":
        if fb.backend == AVX2 and not SATURATES_U8S8.get(family, False):
            notice = (f"{name} was written for {AVX2} (ORT's AVX2 u8s8 kernels, int16 pair "
                      f"saturation modelled); this CPU runs {here}, which does not saturate: codes differ "
                      "wherever a pair saturates. Compare on an AVX2 CPU (--target qemu-x86_64:haswell), or "
                      "convert with backend='onnxruntime' for every CPU")
        elif fb.backend != AVX2 and SATURATES_U8S8.get(family, False):
            options = dict(PRECISE_U8S8)
            notice = (f"{name} was written for {who} with int8 weights (exact int32 sums); this CPU runs {here}: "
                      "setting onnxruntime's session option session.x64quantprecision=1 so that it runs exact "
                      "kernels (re-export with edgeact's default uint8 weights to need no option)")
    elif fb.format == "tflite" and family == "armv7" and fb.backend != ARMV7:
        notice = (f"{name} was written for {who} (LiteRT 2.3); armv7 runs tflite-runtime 2.14, whose builtin "
                  f"kernels round differently: convert with backend='{ARMV7}' for armv7")
    elif fb.backend == ARMV7 and family not in ("armv7", "unknown"):
        notice = f"{name} was written for {ARMV7}; this CPU runs {here} (LiteRT 2.3 with XNNPACK)"
    elif fb.backend == "litert:aarch64" and family not in ("aarch64", "unknown"):
        # ('onnxruntime:aarch64' is exact on x86 too: its int8 weights get the session option above)
        notice = (f"{name} was written for litert:aarch64 (XNNPACK's ARM kernels: fixed-point MUL, NEON "
                  f"hard-swish); this CPU runs {here}, where some codes may differ")
    return Compatibility(fb, family, notice, options)


def announce(path, target, stream=None) -> dict[str, str]:
    """Print `compatibility`'s notice for `path` on `target` (one line, before comparing) and return the
    session options to run it with."""
    c = compatibility(path, target_family(target))
    if c.notice:
        print(f"note: on {getattr(target, 'name', target)}: {c.notice}", file=stream or sys.stderr)
    return c.session_options


__all__ = ["FileBackend", "Compatibility", "file_backend", "compatibility", "announce", "PRECISE_U8S8"]
