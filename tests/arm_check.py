"""Shared check: a prepared model's files for the aarch64 backends, run by onnxruntime's and LiteRT's own
aarch64 builds under QEMU, give the converted model's output codes."""
from __future__ import annotations

import warnings

import numpy as np
import torch

import edgeact
from edgeact.export import to_onnx, to_tflite


def assert_aarch64_equals_converted(prepared, x: torch.Tensor, tmp_path, label: str = "") -> None:
    """The TFLite file has batch 1 (one emulated process per sample) and NHWC 4-D tensors."""
    from edgeact.targets import get_target

    arm = get_target("qemu-aarch64")
    for backend, write, ext in (("onnxruntime:aarch64", to_onnx, "onnx"), ("litert:aarch64", to_tflite, "tflite")):
        c = edgeact.convert(prepared, backend=backend)
        path = tmp_path / f"model.{ext}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write(c, path=path)
        last = [n.target for n in c.graph.nodes if n.op == "call_module"][-1]
        scale = np.float32(c.get_submodule(last).in_qparams[0].scale)
        with torch.no_grad():
            expected = c(x).numpy()
        if ext == "onnx":
            got = arm.run(path, {"x": x.numpy()}, count=False).outputs[0]
        else:
            feed = x.numpy().transpose(0, 2, 3, 1) if x.dim() == 4 else x.numpy()
            got, expected = arm.run(path, [feed[:1]], count=False).outputs[0], expected[:1]
            if expected.ndim == 4:
                expected = expected.transpose(0, 2, 3, 1)
        codes = lambda y: np.rint(np.asarray(y, np.float32) / scale).astype(np.int64)  # noqa: E731
        np.testing.assert_array_equal(codes(got), codes(expected), err_msg=f"{label} {ext}")
