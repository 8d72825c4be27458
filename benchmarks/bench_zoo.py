"""Coverage of shipped torchvision/timm models: prepare → ONNX / TFLite → codes differ, and int8 vs float latency.

Per model of `edgeact.models.zoo` (random init, BatchNorm statistics from random data, 64×64 input; 40×49
for the keyword spotter): whether prepare, the ONNX export and the TFLite export go through (or the first
refusal), how many output and intermediate codes differ from the converted model in onnxruntime and LiteRT
(XNNPACK) on a few random inputs, and latency of one sample with one thread:

  onnxruntime  the float model exported by torch.onnx (TorchScript exporter) vs edgeact's QDQ int8 file
  LiteRT       edgeact's int8 file only: there is no PyTorch → float TFLite converter in this environment
               (litert-torch and TensorFlow are not dependencies; see FACTS.md), so no float column

Float and int8 are timed interleaved, round by round, so a busy neighbour slows both alike; medians.
Accuracy is not measured: the weights are random, so float-vs-int8 error says nothing about a trained model.
Writes benchmarks/RESULTS-zoo.md and the coverage table between the markers in README.md.

Run: .venv/bin/python benchmarks/bench_zoo.py [--rounds 30] [--models name ...]
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import edgeact
from edgeact.export.litert import interpreter as rt
from edgeact.errors import EdgeActError
from edgeact.export import to_onnx, to_tflite, verify
from edgeact.models import zoo

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- zoo-coverage:begin -->", "<!-- zoo-coverage:end -->"


def _short(exc: Exception) -> str:
    msg = str(exc).split(". edgeact.prepare supports")[0]
    return f"{type(exc).__name__}: {msg}"[:160].replace("|", "/")


def _ort_session(data: bytes):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _float_onnx(model, example) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=17, input_names=["x"])
    return buf.getvalue()


def _time_interleaved(runners: dict, rounds: int) -> dict:
    for run in runners.values():
        run()  # warm up
    times = {k: [] for k in runners}
    for _ in range(rounds):
        for k, run in runners.items():
            t = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def measure(name: str, rounds: int, samples: int, workdir: Path) -> dict:
    spec = zoo.ZOO[name]
    row = {"model": name, "library": spec.library, "input": "×".join(map(str, spec.input_shape))}
    model = zoo.build(name, bn_batches=2, batch=8)
    gen = torch.Generator().manual_seed(1)
    calib = torch.randn(8, *spec.input_shape, generator=gen)
    x = torch.randn(samples, *spec.input_shape, generator=gen)
    try:
        p = edgeact.prepare(model)
        edgeact.calibrate(p, calib, progress=False)
        row["prepare"] = "yes"
    except EdgeActError as exc:
        row["prepare"] = _short(exc)
        return row
    one = x[:1]
    for fmt, backend, write in (("onnx", "onnxruntime", to_onnx), ("tflite", "litert", to_tflite)):
        path = workdir / f"{name.replace('/', '_')}.{fmt}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c = edgeact.convert(p, backend=backend)
                write(c, path=path)
            report = verify(path, c, x)
            row[fmt] = "yes"
            row[f"{fmt}_differ"] = f"{report.mismatches} of {report.codes_compared:,}"
        except EdgeActError as exc:
            row[fmt] = _short(exc)
            continue
    runners = {}
    if row.get("onnx") == "yes":
        s_int8 = _ort_session((workdir / f"{name.replace('/', '_')}.onnx").read_bytes())
        s_float = _ort_session(_float_onnx(model, one))
        feed_i = {s_int8.get_inputs()[0].name: one.numpy()}
        feed_f = {s_float.get_inputs()[0].name: one.numpy()}
        runners["ort_float"] = lambda: s_float.run(None, feed_f)
        runners["ort_int8"] = lambda: s_int8.run(None, feed_i)
    if row.get("tflite") == "yes":
        interp = rt.load(workdir / f"{name.replace('/', '_')}.tflite", "xnnpack", num_threads=1)
        nhwc = one.numpy().transpose(0, 2, 3, 1) if one.dim() == 4 else one.numpy()
        rt.run(interp, [nhwc])
        runners["litert_int8"] = lambda: interp.invoke()
    row.update(_time_interleaved(runners, rounds))
    return row


def _cell(row, key, fmt="{:.2f}"):
    v = row.get(key)
    return "—" if v is None else fmt.format(v) if isinstance(v, float) else str(v)


def table(rows: list[dict]) -> str:
    lines = ["| model | prepare | ONNX | TFLite | codes differ ONNX | codes differ TFLite | ORT float ms | "
             "ORT int8 ms | int8/float | LiteRT int8 ms |", "|---" * 10 + "|"]
    for r in rows:
        ratio = (f"{r['ort_int8'] / r['ort_float']:.2f}×" if r.get("ort_int8") and r.get("ort_float") else "—")
        lines.append(f"| {r['model']} | {_cell(r, 'prepare')} | {_cell(r, 'onnx')} | {_cell(r, 'tflite')} | "
                     f"{_cell(r, 'onnx_differ')} | {_cell(r, 'tflite_differ')} | {_cell(r, 'ort_float')} | "
                     f"{_cell(r, 'ort_int8')} | {ratio} | {_cell(r, 'litert_int8')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--samples", type=int, default=8, help="random inputs per model for the code comparison")
    ap.add_argument("--models", nargs="*", default=list(zoo.ZOO))
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite README.md's coverage table")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            t = time.time()
            rows.append(measure(name, args.rounds, args.samples, Path(tmp)))
            print(f"{name}: {time.time() - t:.0f} s", file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    load = os.getloadavg()[0]
    header = (f"# Shipped models through edgeact (`benchmarks/bench_zoo.py`)\n\n"
              f"torch {torch.__version__}, onnxruntime {ort.__version__}, {platform.machine()}, Python "
              f"{platform.python_version()}; random-init models, {args.samples} random inputs compared code for "
              f"code (every intermediate tensor the file keeps, and the outputs); latency: 1 sample, 1 thread, "
              f"median of {args.rounds} interleaved rounds. Load average {load:.1f} on a shared 2-core machine: "
              "absolute times move between runs, ratios within a row are measured side by side.\n\n")
    (ROOT / "benchmarks" / "RESULTS-zoo.md").write_text(header + text + "\n")
    if not args.no_readme:
        readme = (ROOT / "README.md").read_text()
        if BEGIN in readme and END in readme:
            before, rest = readme.split(BEGIN, 1)
            after = rest.split(END, 1)[1]
            (ROOT / "README.md").write_text(before + BEGIN + "\n" + text + "\n" + END + after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
