"""Is LiteRT's own int8 TRANSPOSE_CONV an exact and faster alternative to edgeact's lowering of ConvTranspose2d?

edgeact writes a transposed conv with equal strides as one phase CONV_2D + DEPTH_TO_SPACE (+ crop), otherwise
as zero insertion on codes (RESHAPE/PAD) + CONV_2D, which the converted model reproduces code for code. This probe writes the same layer (same int8 weights, int32 bias and scales) as one
TRANSPOSE_CONV, runs both files with LiteRT (XNNPACK and the builtin kernels) and reports, side by side:
codes that differ from the converted model, and latency (1 thread, median of interleaved rounds). Only
configurations whose padding TFLite's VALID/SAME can express are probed.

Run: .venv/bin/python benchmarks/probe_tflite_transpose_conv.py [--rounds 200]
Writes benchmarks/RESULTS-transpose-conv.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import edgeact
from edgeact.export import to_tflite
from edgeact.export.litert import interpreter as rt
from edgeact.export.litert.builder import ModelBuilder, schema
from edgeact.export.litert.run import KERNEL_SETS, with_backend
from edgeact.qparams import QuantParams
from edgeact.quantize.prepared import PreparedConv2d
from edgeact.quantized import QuantizedConv2d

ROOT = Path(__file__).resolve().parent.parent
CASES = [  # (cin, cout, kernel, stride, padding, tflite padding, H = W)
    (16, 16, 2, 2, 0, "VALID", 16),
    (32, 16, 4, 2, 1, "SAME", 16),
    (64, 32, 2, 2, 0, "VALID", 32),
]


def _converted(cin, cout, k, s, p, hw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(cin, cout, k, s, p)).eval()
    prepared = edgeact.prepare(model)
    edgeact.calibrate(prepared, torch.randn(16, cin, hw, hw), progress=False)
    return prepared, edgeact.convert(prepared, backend="litert")


def _transpose_conv_file(prepared, c, cin, cout, k, s, hw, padding) -> bytes:
    phase = next(m for m in c.modules() if isinstance(m, QuantizedConv2d))
    # the conv after zero insertion (convert writes it as phases): its codes are the kernel, flipped
    conv = QuantizedConv2d(next(m for m in prepared.modules() if isinstance(m, PreparedConv2d)).conv,
                           phase.in_qparams[0], phase.out_qparams, "litert")
    in_qp, out_qp, w_qp = conv.in_qparams[0], conv.out_qparams, conv.weight_qparams
    # the equivalent conv's weight (out, in, kh, kw) is the transposed conv's kernel flipped: flip back
    w = conv.weight_codes.numpy().astype(np.int8)[:, :, ::-1, ::-1].transpose(0, 2, 3, 1)  # (out, kh, kw, in)
    b = ModelBuilder("probe")
    out_hw = hw * s if padding == "SAME" else (hw - 1) * s + k
    x = b.tensor("x", (1, hw, hw, cin), "float32")
    q = b.tensor("q", (1, hw, hw, cin), "int8", in_qp)
    b.op("QUANTIZE", [x], [q], version=1)
    shape = b.constant("output_shape", np.array([1, out_hw, out_hw, cout], np.int32), "int32")
    wt = b.constant("weight", np.ascontiguousarray(w), "int8",
                    QuantParams(w_qp.scale, w_qp.zero_point, "int8", axis=0, narrow=True), quantized_dimension=0)
    bias_qp = QuantParams(tuple(float(v) for v in conv.bias_scale), (0,) * cout, "int32", axis=0)
    bias = b.constant("bias", conv.bias_codes.numpy().astype(np.int32), "int32", bias_qp)
    y = b.tensor("y", (1, out_hw, out_hw, cout), "int8", out_qp)
    opts = schema.TransposeConvOptionsT()
    opts.padding = getattr(schema.Padding, padding)
    opts.strideH = opts.strideW = s
    b.op("TRANSPOSE_CONV", [shape, wt, q, bias], [y], opts, version=3)
    f = b.tensor("out", (1, out_hw, out_hw, cout), "float32")
    b.op("DEQUANTIZE", [y], [f], version=2)
    return b.finish([x], [f])


def _time(interps: dict, feed, rounds: int) -> dict:
    for it in interps.values():
        rt.run(it, [feed])
    times = {k: [] for k in interps}
    for _ in range(rounds):
        for k, it in interps.items():
            t = time.perf_counter()
            it.invoke()
            times[k].append(time.perf_counter() - t)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--samples", type=int, default=8)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for cin, cout, k, s, p, padding, hw in CASES:
        prepared, c = _converted(cin, cout, k, s, p, hw)
        x = torch.randn(args.samples, cin, hw, hw, generator=torch.Generator().manual_seed(1))
        scale = np.float32(c.get_submodule([n.target for n in c.graph.nodes if n.op == "call_module"][-1])
                           .in_qparams[0].scale)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = to_tflite(c, x[:1])
        theirs = _transpose_conv_file(prepared, c, cin, cout, k, s, hw, padding)
        row = {"case": f"{cin}→{cout}, k{k} s{s} p{p}, {hw}×{hw}"}
        for mode in ("xnnpack", "builtin", "reference"):
            model = with_backend(c, KERNEL_SETS[mode])
            with torch.no_grad():
                expected = model(x).numpy().transpose(0, 2, 3, 1)
            for label, data in (("edgeact", ours), ("TRANSPOSE_CONV", theirs)):
                it = rt.load(data, mode, num_threads=1)
                differ = 0
                for i in range(args.samples):
                    y = rt.run(it, [x[i:i + 1].numpy().transpose(0, 2, 3, 1)])[0]
                    differ += int(np.sum(np.rint(y / scale) != np.rint(expected[i:i + 1] / scale)))
                row[f"{label} {mode} differ"] = f"{differ} of {expected.size:,}"
        for mode in ("xnnpack", "builtin"):  # a batch of 4 (edgeact's files are resized to the batch given)
            batch = x[:4].numpy().transpose(0, 2, 3, 1)
            for label, data in (("edgeact", ours), ("TRANSPOSE_CONV", theirs)):
                try:
                    rt.run(rt.load(data, mode, num_threads=1), [batch])
                    row[f"{label} batch 4 {mode}"] = "runs"
                except Exception as exc:  # noqa: BLE001 — the runtime's refusal is the measurement
                    row[f"{label} batch 4 {mode}"] = "fails: " + str(exc).split("\n")[0].split(" (")[0][-60:]
        feed = x[:1].numpy().transpose(0, 2, 3, 1)
        times = _time({"edgeact": rt.load(ours, "xnnpack", num_threads=1),
                       "TRANSPOSE_CONV": rt.load(theirs, "xnnpack", num_threads=1)}, feed, args.rounds)
        row.update({f"{k} ms": v for k, v in times.items()})
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|---" * len(keys) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    header = (f"# ConvTranspose2d in LiteRT: edgeact's phase CONV_2D + DEPTH_TO_SPACE vs one TRANSPOSE_CONV "
              f"(`benchmarks/probe_tflite_transpose_conv.py`)\n\n"
              f"ai-edge-litert, {platform.machine()}, Python {platform.python_version()}; the same int8 weights, bias "
              f"and scales in both files; codes compared with the converted model of each kernel set (backends 'litert', "
              f"'litert:builtin', 'litert:reference', which model CONV_2D in XNNPACK, LiteRT's optimized and its "
              f"reference kernels) on {args.samples} random inputs; "
              f"latency: XNNPACK, 1 thread, batch 1, median of {args.rounds} interleaved rounds. Load average "
              f"{os.getloadavg()[0]:.1f} on a shared 2-core machine.\n\n")
    text = header + "\n".join(lines) + "\n"
    print(text)
    (ROOT / "benchmarks" / "RESULTS-transpose-conv.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
