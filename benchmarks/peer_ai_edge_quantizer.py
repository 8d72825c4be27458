"""Quantize a float .tflite with ai-edge-quantizer (static int8 weights and activations).

Runs in the peers' own environment, never the project's (bench_vs_peers.py calls it):
    python -m venv /work/peers-venv && /work/peers-venv/bin/pip install ai-edge-quantizer==0.10.0
    /work/peers-venv/bin/python benchmarks/peer_ai_edge_quantizer.py FLOAT.tflite CALIB.npy OUT.tflite
CALIB.npy: float32 NHWC calibration images (N, H, W, C), fed one at a time.
"""
from __future__ import annotations

import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_quantizer import quantizer, recipe


def main(float_path: str, calib_path: str, out_path: str) -> int:
    sig = Interpreter(model_path=float_path).get_signature_list()
    key = next(iter(sig))
    name = sig[key]["inputs"][0]
    calib = np.load(calib_path).astype(np.float32)
    qt = quantizer.Quantizer(float_path)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    result = qt.calibrate({key: [{name: calib[i:i + 1]} for i in range(len(calib))]}, num_threads=1)
    qt.quantize(result).export_model(out_path, overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
