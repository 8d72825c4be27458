"""Run an exported model file on this machine, in process, over a whole data set.

The study and the parity checks need every test image through the deployed file; the targets'
runner (edgeact.targets) is for timing, this is for outputs in bulk.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeact.errors import ModelFileError


def run_onnx(path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelFileError(f"onnxruntime cannot load {path}: {exc}") from None
    inp = sess.get_inputs()[0]
    dtype = np.int8 if "int8" in inp.type and "uint8" not in inp.type else (np.uint8 if "uint8" in inp.type else np.float32)
    fixed = isinstance(inp.shape[0], int)
    if not fixed:
        return sess.run(None, {inp.name: x.astype(dtype)})[0]
    return np.concatenate([sess.run(None, {inp.name: x[i:i + 1].astype(dtype)})[0] for i in range(len(x))])


def run_tflite(path, x: np.ndarray, threads: int = 1, nchw_to_nhwc: bool = True) -> np.ndarray:
    from edgeact import runtime_litert

    interp = runtime_litert.load(Path(path), num_threads=threads)
    detail = interp.get_input_details()[0]
    if nchw_to_nhwc and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    outs = [runtime_litert.run(interp, [x[i:i + 1].astype(detail["dtype"])])[0] for i in range(len(x))]
    return np.concatenate(outs)


def run_file(path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Outputs of an .onnx or .tflite file (float I/O) for inputs `x` in the PyTorch layout."""
    suffix = Path(path).suffix
    if suffix == ".onnx":
        return run_onnx(path, x, threads)
    if suffix == ".tflite":
        return run_tflite(path, x, threads)
    raise ModelFileError(f"{path}: unknown model format {suffix!r}; expected .onnx or .tflite")
