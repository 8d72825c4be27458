"""A small typed layer over the TFLite flatbuffer schema that ships inside ai-edge-litert.

Tensors, constant buffers and operators are added one by one; `finish()` packs a `ModelT` with the
schema's object API and returns the bytes. Every scale and zero point is written exactly as the
`QuantParams` holds it (already float32), so LiteRT sees edgeact's quantization unchanged. The same
calls always produce the same bytes (deterministic files).
"""
from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgeact.errors import ExportError
from edgeact.qparams import QuantParams

TENSOR_TYPES = {
    "float32": schema.TensorType.FLOAT32, "int32": schema.TensorType.INT32, "int8": schema.TensorType.INT8,
    "uint8": schema.TensorType.UINT8, "int16": schema.TensorType.INT16, "int64": schema.TensorType.INT64,
}
NUMPY_TYPES = {"float32": np.float32, "int32": np.int32, "int8": np.int8, "uint8": np.uint8,
               "int16": np.int16, "int64": np.int64}

# Operator versions as TFLite's converter writes them for int8 tensors (tools/versioning/op_version.cc).
INT8_OP_VERSIONS = {
    "ADD": 2, "AVERAGE_POOL_2D": 2, "CONCATENATION": 2, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 3,
    "DEQUANTIZE": 2, "FULLY_CONNECTED": 4, "LOGISTIC": 2, "MUL": 2, "RELU": 2, "RELU_N1_TO_1": 1,
    "RELU6": 2, "RESHAPE": 1, "RELU_0_TO_1": 1, "TANH": 2, "GATHER": 1, "MEAN": 2, "CAST": 1, "PRELU": 1,
    "LEAKY_RELU": 2, "ELU": 1, "QUANTIZE": 2, "HARD_SWISH": 1, "GELU": 2, "MAX_POOL_2D": 2,
}

_BUFFER_ALIGNMENT = 16  # constant data aligned like the converter does, so kernels may read it in place


@dataclass(frozen=True)
class TensorRef:
    """A tensor of the model being built: its index, type and shape."""

    index: int
    dtype: str
    shape: tuple[int, ...]
    qparams: QuantParams | None = None


class _AlignedBufferT(schema.BufferT):
    """BufferT whose data vector starts on a 16-byte boundary."""

    def Pack(self, builder):  # noqa: N802 (schema API name)
        data = None
        if self.data is not None:
            payload = bytes(self.data)
            builder.StartVector(1, len(payload), _BUFFER_ALIGNMENT)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head: builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


def _quantization(qp: QuantParams | None, quantized_dimension: int | None):
    if qp is None:
        return None
    scales = list(np.atleast_1d(np.asarray(qp.scale, dtype=np.float32)).tolist())
    zps = [int(z) for z in np.atleast_1d(qp.zero_point_array())]
    q = schema.QuantizationParametersT()
    q.scale = scales
    q.zeroPoint = zps
    if qp.per_channel:
        q.quantizedDimension = int(qp.axis if quantized_dimension is None else quantized_dimension)
    return q


class ModelBuilder:
    """Build one subgraph: add tensors (`tensor`, `constant`) and operators (`op`), then `finish`."""

    def __init__(self, description: str = "edgeact"):
        self.description = description
        self._tensors: list[schema.TensorT] = []
        self._refs: list[TensorRef] = []
        self._buffers: list[schema.BufferT] = [_AlignedBufferT()]  # buffer 0: the empty sentinel
        self._opcodes: dict[tuple[int, int], int] = {}
        self._operators: list[schema.OperatorT] = []
        self._names: set[str] = set()

    # ---- tensors ----------------------------------------------------------------------------
    def _unique(self, name: str) -> str:
        base, n = name, 1
        while name in self._names:
            name = f"{base}_{n}"
            n += 1
        self._names.add(name)
        return name

    def tensor(self, name: str, shape, dtype: str = "int8", qparams: QuantParams | None = None, *,
               quantized_dimension: int | None = None, data: np.ndarray | None = None) -> TensorRef:
        """Add a tensor; with `data` it is a constant whose bytes are stored in the file."""
        if dtype not in TENSOR_TYPES:
            raise ExportError(f"tensor {name!r}: type {dtype!r} cannot be written; use one of {sorted(TENSOR_TYPES)}")
        shape = tuple(int(d) for d in shape)
        if qparams is not None and qparams.dtype != dtype and not (dtype == "int32" and qparams.dtype == "int32"):
            raise ExportError(f"tensor {name!r}: quantization is {qparams.dtype} but the tensor is {dtype}")
        buffer_index = 0
        if data is not None:
            arr = np.asarray(data)
            if arr.shape != shape:
                raise ExportError(f"constant {name!r}: data shape {arr.shape} != declared shape {shape}")
            arr = arr.astype(NUMPY_TYPES[dtype], casting="unsafe", order="C")
            if not np.array_equal(arr.astype(np.float64), np.asarray(data, dtype=np.float64)):
                raise ExportError(f"constant {name!r}: values do not fit in {dtype}")
            buf = _AlignedBufferT()
            buf.data = np.frombuffer(arr.astype(arr.dtype.newbyteorder("<")).tobytes(), dtype=np.uint8)
            self._buffers.append(buf)
            buffer_index = len(self._buffers) - 1
        t = schema.TensorT()
        t.shape = list(shape)
        t.type = TENSOR_TYPES[dtype]
        t.buffer = buffer_index
        t.name = self._unique(name)
        t.quantization = _quantization(qparams, quantized_dimension)
        self._tensors.append(t)
        ref = TensorRef(len(self._tensors) - 1, dtype, shape, qparams)
        self._refs.append(ref)
        return ref

    def constant(self, name: str, data: np.ndarray, dtype: str, qparams: QuantParams | None = None, *,
                 quantized_dimension: int | None = None) -> TensorRef:
        data = np.asarray(data)
        return self.tensor(name, data.shape, dtype, qparams, quantized_dimension=quantized_dimension, data=data)

    # ---- operators --------------------------------------------------------------------------
    def _opcode(self, op: str, version: int) -> int:
        code = getattr(schema.BuiltinOperator, op, None)
        if code is None:
            raise ExportError(f"unknown TFLite builtin operator {op!r}")
        key = (code, version)
        if key not in self._opcodes:
            self._opcodes[key] = len(self._opcodes)
        return self._opcodes[key]

    def op(self, op: str, inputs, outputs, options=None, *, version: int | None = None) -> None:
        """Add a builtin operator ('HARD_SWISH', 'CONV_2D', …) with its schema `*OptionsT` object."""
        o = schema.OperatorT()
        o.opcodeIndex = self._opcode(op, version if version is not None else INT8_OP_VERSIONS.get(op, 1))
        o.inputs = [-1 if t is None else t.index for t in inputs]
        o.outputs = [t.index for t in outputs]
        if options is not None:
            kind = type(options).__name__
            if not kind.endswith("T") or not hasattr(schema.BuiltinOptions, kind[:-1]):
                raise ExportError(f"{op}: {kind} is not a TFLite builtin options object")
            o.builtinOptionsType = getattr(schema.BuiltinOptions, kind[:-1])
            o.builtinOptions = options
        self._operators.append(o)

    # ---- output -----------------------------------------------------------------------------
    def finish(self, inputs, outputs, name: str = "main", metadata: dict[str, bytes] | None = None) -> bytes:
        """Pack the model; `inputs`/`outputs` are the graph's TensorRefs in order; `metadata` entries are
        stored as named buffers (TFLite's model metadata)."""
        sg = schema.SubGraphT()
        sg.tensors = self._tensors
        sg.inputs = [t.index for t in inputs]
        sg.outputs = [t.index for t in outputs]
        sg.operators = self._operators
        sg.name = name
        codes = []
        for (code, version), _ in sorted(self._opcodes.items(), key=lambda kv: kv[1]):
            oc = schema.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)  # the int8 field old readers use; 127 = "see builtinCode"
            oc.version = version
            codes.append(oc)
        sig = schema.SignatureDefT()
        sig.signatureKey = "serving_default"
        sig.subgraphIndex = 0
        sig.inputs = [self._tensor_map(t, i, "input") for i, t in enumerate(inputs)]
        sig.outputs = [self._tensor_map(t, i, "output") for i, t in enumerate(outputs)]
        model = schema.ModelT()
        model.version = 3
        model.description = self.description
        model.operatorCodes = codes
        model.subgraphs = [sg]
        model.buffers = self._buffers
        model.signatureDefs = [sig]
        if metadata:
            model.metadata = []
            for key, payload in sorted(metadata.items()):
                buf = _AlignedBufferT()
                buf.data = np.frombuffer(bytes(payload), dtype=np.uint8)
                self._buffers.append(buf)
                entry = schema.MetadataT()
                entry.name = key
                entry.buffer = len(self._buffers) - 1
                model.metadata.append(entry)
        fb = flatbuffers.Builder(1024)
        fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
        return bytes(fb.Output())

    def _tensor_map(self, ref: TensorRef, i: int, kind: str):
        m = schema.TensorMapT()
        m.name = f"{kind}_{i}"
        m.tensorIndex = ref.index
        return m
