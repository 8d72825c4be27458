"""ONNX and TFLite lowerings of the ops that only move codes: QuantizedChannelGather (channel shuffle, chunk,
split, slicing: a gather along the channel axis), QuantizedUpsampleNearest (whole factors) and
QuantizedZeroPad2d (the zero point's code) — no
arithmetic, so exact in both runtimes. Kept apart from the two writers'
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


def onnx_zero_pad(exporter, node, m) -> None:
    from edgeact.export.onnx_model import inner

    name, qp = exporter.codes[node.args[0]]
    left, right, top, bottom = m.padding
    pads = exporter.g.constant(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), f"{node.name}_pads")
    q = inner(qp)
    value = exporter.g.constant(np.asarray(q.zero_point, q.np_dtype), f"{node.name}_value")
    exporter.codes[node] = (exporter.g.node("Pad", [name, pads, value], node.name, mode="constant"), qp)


def tflite_zero_pad(exporter, node, m, schema) -> None:
    """TFLite's int8 PAD fills with the tensor's zero point."""
    x, qp, layout = exporter.get(node.args[0], node.name)
    if layout != "nhwc":
        raise UnsupportedError(f"{node.name!r}: zero padding of a tensor that is not (N, C, H, W)")
    left, right, top, bottom = m.padding
    pads = exporter.b.constant(f"{node.name}/paddings", np.array([[0, 0], [top, bottom], [left, right], [0, 0]],
                                                                  np.int32), "int32")
    y = exporter.b.tensor(node.name, exporter.tflite_shape(node), "int8", qp)
    exporter.b.op("PAD", [x, pads], [y], schema.PadOptionsT(), version=2)
    exporter.put(node, y, qp, "nhwc")


def onnx_upsample_nearest(exporter, node, m) -> None:
    """Resize 'nearest' with 'asymmetric' coordinates and 'floor' rounding: source index floor(i/f), PyTorch's."""
    name, qp = exporter.codes[node.args[0]]
    fh, fw = m.factors
    scales = exporter.g.constant(np.array([1, 1, fh, fw], np.float32), f"{node.name}_scales")
    y = exporter.g.node("Resize", [name, "", scales], node.name, mode="nearest",
                        coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    exporter.codes[node] = (y, qp)


def tflite_upsample_nearest(exporter, node, m, schema) -> None:
    """RESIZE_NEAREST_NEIGHBOR without align_corners / half-pixel centres: source index floor(i·in/out)."""
    x, qp, layout = exporter.get(node.args[0], node.name)
    if layout != "nhwc":
        raise UnsupportedError(f"{node.name!r}: upsampling of a tensor that is not (N, C, H, W)")
    _, _, h2, w2 = exporter.shape(node)
    size = exporter.b.constant(f"{node.name}/size", np.array([h2, w2], np.int32), "int32")
    opts = schema.ResizeNearestNeighborOptionsT()
    opts.alignCorners, opts.halfPixelCenters = False, False
    y = exporter.b.tensor(node.name, exporter.tflite_shape(node), "int8", qp)
    exporter.b.op("RESIZE_NEAREST_NEIGHBOR", [x, size], [y], opts, version=2)
    exporter.put(node, y, qp, "nhwc")
