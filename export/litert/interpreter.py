"""A thin wrapper over the LiteRT (TFLite) interpreter: load a model, run it, report its errors.

Three kernel sets are reachable from Python and may differ in their integer arithmetic, so each is
named here and tests run all of them:
  'xnnpack'   — the default: builtin kernels with the XNNPACK delegate applied to what it supports;
  'builtin'   — the optimized builtin kernels, no default delegate;
  'reference' — TFLite's reference kernels (BUILTIN_REF).
`backend='tflite-runtime'` uses the legacy `tflite_runtime` package instead (optional; it needs
NumPy < 2), same modes.
"""
from __future__ import annotations

from dataclasses import dataclass

import os
from typing import Sequence

import numpy as np

from edgeact.errors import ModelFileError, UnsupportedError

MODES = ("xnnpack", "builtin", "reference")
BACKENDS = ("ai-edge-litert", "tflite-runtime")


def _interpreter_module(backend: str):
    if backend == "ai-edge-litert":
        from ai_edge_litert import interpreter as module
        return module
    if backend == "tflite-runtime":
        try:
            from tflite_runtime import interpreter as module
        except ImportError as exc:
            raise UnsupportedError(
                "backend 'tflite-runtime' is not installed: `pip install tflite-runtime` (needs numpy<2), "
                "or use backend='ai-edge-litert'") from exc
        return module
    raise UnsupportedError(f"unknown LiteRT backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def available_backends() -> list[str]:
    found = []
    for b in BACKENDS:
        try:
            module = _interpreter_module(b)
            module.Interpreter  # noqa: B018 — tflite-runtime can import yet fail on NumPy 2
            found.append(b)
        except Exception:  # noqa: BLE001 — an unusable backend is simply not available
            pass
    return found


def load(model, mode: str = "xnnpack", *, num_threads: int = 1, backend: str = "ai-edge-litert"):
    """An allocated Interpreter for `model` (bytes or a path). A file LiteRT refuses → ModelFileError."""
    if mode not in MODES:
        raise UnsupportedError(f"unknown LiteRT mode {mode!r}; choose one of {', '.join(MODES)}")
    module = _interpreter_module(backend)
    resolver = {
        "xnnpack": module.OpResolverType.AUTO,
        "builtin": module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "reference": module.OpResolverType.BUILTIN_REF,
    }[mode]
    source = "model bytes"
    if isinstance(model, (bytes, bytearray, memoryview)):
        kwargs = {"model_content": bytes(model)}
    else:
        path = os.fspath(model)
        source = path
        if not os.path.isfile(path):
            raise ModelFileError(f"{path}: no such file — check the path")
        kwargs = {"model_path": path}
    try:
        interp = module.Interpreter(**kwargs, num_threads=num_threads, experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(
            f"LiteRT refused {source}: {str(exc).strip()} — the file is corrupt, truncated or not a "
            "TFLite model; re-export it (edgeact export … --format tflite)") from exc
    return interp


def run(interp, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Set the inputs (cast to the model's input types), invoke, return copies of the outputs."""
    details = interp.get_input_details()
    if len(inputs) != len(details):
        raise UnsupportedError(f"the model takes {len(details)} input(s), got {len(inputs)}")
    for d, x in zip(details, inputs):
        x = np.asarray(x)
        if tuple(x.shape) != tuple(d["shape"]):
            interp.resize_tensor_input(d["index"], list(x.shape))
            interp.allocate_tensors()
    for d, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(d["index"], np.ascontiguousarray(np.asarray(x).astype(d["dtype"], copy=False)))
    interp.invoke()
    return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]


def delegated_ops(interp) -> list[str]:
    """Names of the operators in the executed plan ('DELEGATE' where XNNPACK took a subgraph)."""
    return [op["op_name"] for op in interp._get_ops_details()]  # noqa: SLF001 — the only public-ish view


@dataclass(frozen=True)
class Partitions:
    """How LiteRT split a model: `delegated` XNNPACK subgraphs, and the ops it runs itself (`outside`).

    Each boundary between the two costs a hand-over, so a lowering that leaves ops outside pays twice:
    its own slower kernel and the split (export/litert/chains.py)."""

    delegated: int
    outside: tuple[str, ...]


def partitions(interp) -> Partitions:
    """The XNNPACK partitions of a loaded interpreter: a DELEGATE node replaces the ops between its inputs
    and outputs; every other op runs outside."""
    ops = interp._get_ops_details()  # noqa: SLF001 — see delegated_ops
    original = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): k for k, op in enumerate(original) for t in op["outputs"]}
    inside: set[int] = set()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    for d in delegates:
        stop = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        while todo:
            k = producer.get(todo.pop())
            if k is None or k in inside:
                continue
            inside.add(k)
            todo += [int(t) for t in original[k]["inputs"] if int(t) not in stop and int(t) >= 0]
    return Partitions(len(delegates), tuple(op["op_name"] for k, op in enumerate(original) if k not in inside))
