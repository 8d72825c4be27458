"""ONNX and TFLite lowerings of QuantizedChannelGather (channel shuffle, chunk, split, slicing): a gather of
codes along the channel axis, no arithmetic, so exact in both runtimes. Kept apart from the two writers'
op chains so that it moves as one handler when they become a registry."""
from __future__ import annotations

import numpy as np

from edgeact.errors import UnsupportedError
from edgeact.quantized.gather import QuantizedChannelGather


def onnx_channel_gather(exporter, node, m: QuantizedChannelGather) -> None:
    name, qp = exporter.codes[node.args[0]]
    indices = exporter.g.constant(m.indices.numpy().astype(np.int64), f"{node.name}_indices")
    exporter.codes[node] = (exporter.g.node("Gather", [name, indices], node.name, axis=1), qp)


def tflite_channel_gather(exporter, node, m: QuantizedChannelGather, schema, nhwc_axis) -> None:
    x, qp, layout = exporter.get(node.args[0], node.name)
    rank = len(exporter.shape(node))
    if isinstance(layout, tuple):
        raise UnsupportedError(f"{node.name!r}: channel selection of a flattened NHWC tensor")
    indices = exporter.b.constant(f"{node.name}/indices", m.indices.numpy().astype(np.int32), "int32")
    opts = schema.GatherOptionsT()
    opts.axis = nhwc_axis[1] if layout == "nhwc" else 1
    y = exporter.b.tensor(node.name, exporter.tflite_shape(node), "int8", qp)
    exporter.b.op("GATHER", [x, indices], [y], opts, version=1)
    exporter.put(node, y, qp, layout if rank == 4 else "plain")
