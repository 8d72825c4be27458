"""Building and writing ONNX graphs: unique deterministic names, initializers, atomic saves.

Shared by the activation lowering and the model exporter, so that every file edgeact writes has
the same opset, the same naming and the same byte-for-byte determinism (no timestamps, no random
names, initializers in creation order).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeact.fileio import atomic_write
from edgeact.errors import ExportError

OPSET = 21  # Gelu needs 20, int16 Q/DQ 21; onnxruntime 1.20+ runs it
IR_VERSION = 10  # the IR version that opset 21 requires; ORT reads it
MS_DOMAIN = "com.microsoft"

ELEM_TYPE = {
    "int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int16": TensorProto.INT16, "int32": TensorProto.INT32,
    "int64": TensorProto.INT64, "float32": TensorProto.FLOAT,
}


class GraphBuilder:
    """Collects nodes and initializers under names that depend only on the order of the calls."""

    def __init__(self, name: str = "edgeact"):
        self.graph_name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self._scalars: dict[tuple, str] = {}

    def unique(self, hint: str) -> str:
        base = "".join(ch if ch.isalnum() or ch in "_." else "_" for ch in hint) or "t"
        name, i = base, 1
        while name in self._used:
            name = f"{base}_{i}"
            i += 1
        self._used.add(name)
        return name

    def constant(self, array, hint: str, dtype=None, *, rank0: bool = False) -> str:
        """An initializer; identical scalars (scales, zero points) are written once.

        A scalar is written as a one-element tensor (shape [1]) unless `rank0`: onnxruntime fuses
        DQ → Add/Mul/Concat/… → Q into its QLinear kernels only when the scales and zero points are rank 0,
        so the shape decides which ops run in ORT's integer kernels (see `qconst` in writer.py).
        """
        arr = np.asarray(array, dtype=dtype) if dtype is not None else np.asarray(array)
        key = None
        if arr.ndim == 0:
            key = (arr.dtype.str, arr.tobytes(), rank0)
            if key in self._scalars:
                return self._scalars[key]
        name = self.unique(hint)
        arr = arr if arr.ndim == 0 and rank0 else np.ascontiguousarray(arr)  # ascontiguousarray makes rank 1
        self.initializers.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._scalars[key] = name
        return name

    def node(self, op: str, inputs: list[str], hint: str | None = None, *, outputs: int = 1, domain: str = "",
             **attrs) -> str | list[str]:
        names = [self.unique(f"{hint or op.lower()}" + (f"_{k}" if outputs > 1 else "")) for k in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, name=names[0], domain=domain or None, **attrs))
        return names[0] if outputs == 1 else names

    def add_input(self, name: str, dtype: str, shape) -> str:
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, ELEM_TYPE[dtype], list(shape)))
        return name

    def add_output(self, source: str, name: str, dtype: str, shape) -> None:
        """Expose `source` as graph output `name` (through an Identity if the names differ)."""
        if source != name:
            self._used.add(name)
            self.nodes.append(helper.make_node("Identity", [source], [name], name=f"{name}_out"))
        self.outputs.append(helper.make_tensor_value_info(name, ELEM_TYPE[dtype], list(shape)))

    def model(self, doc: str = "") -> onnx.ModelProto:
        from edgeact import __version__

        graph = helper.make_graph(self.nodes, self.graph_name, self.inputs, self.outputs, self.initializers,
                                  doc_string=doc or None)
        opsets = [helper.make_opsetid("", OPSET)]
        if any(n.domain == MS_DOMAIN for n in self.nodes):
            opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
        model = helper.make_model(graph, opset_imports=opsets, producer_name="edgeact", producer_version=__version__)
        model.ir_version = IR_VERSION
        return model


def check(model: onnx.ModelProto) -> None:
    """onnx.checker with full shape inference; a failure is an exporter bug, reported as ExportError."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX graph fails onnx.checker: {exc}. This is an edgeact bug; "
                          "please report it with the model") from exc


def save_atomic(data: bytes, path) -> Path:
    """Write a model file atomically (the directory must exist: an export never creates folders)."""
    return atomic_write(path, data, create_dirs=False)
