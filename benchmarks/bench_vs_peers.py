"""edgeact's int8 files against the peers' on the same float model, timed side by side in one run.

Per activation, the trained mnv3s checkpoint (models/checkpoints), calibrated on the same 256 digits
images, becomes:

  LiteRT (ai-edge-litert, default XNNPACK delegate, 1 thread)
    float           float32 .tflite of the network (benchmarks/float_tflite.py: edgeact's int8 file
                    rewritten to float, the float ops a converter writes per activation)
    ai-edge-quantizer  that float file through ai-edge-quantizer's static int8 recipe (peer)
    edgeact         edgeact's default int8 file (convert(backend='litert') → to_tflite)
    edgeact table   the same with every activation as a GATHER table (edgeact before issue 11)
  onnxruntime (CPU EP, 1 intra-op thread, all graph optimizations)
    float           torch.onnx.export of the float model
    qs U8/S8 ±rr    onnxruntime.quantization.quantize_static after quant_pre_process, QDQ, int8
                    weights, uint8 or int8 activations, with and without reduce_range (peer)
    edgeact         edgeact's portable ONNX file (convert(backend='onnxruntime') → to_onnx: uint8 weights,
                    exact on every CPU)
    edgeact host    convert(backend='onnxruntime:host'): this CPU's kernels ('onnxruntime:x86-vnni' on a
                    VNNI/AMX CPU: int8 weights), exact here

Times are medians over interleaved rounds (every file once per round, so a busy neighbour slows all
alike); the ratio is edgeact over the fastest peer int8 file of the same runtime. "partitions" counts
the XNNPACK-delegated subgraphs and "outside" the ops LiteRT runs without XNNPACK. top-1 is accuracy on
the digits test set, for every file (the exact files equal their converted model code for code; the
accuracy shows what the int8 arithmetic costs against float). ai-edge-quantizer's file takes and
returns int8 codes, so its time has no QUANTIZE/DEQUANTIZE, which edgeact's float-in/out files include.

The peer ai-edge-quantizer is not a project dependency: it runs in its own environment, made once by
    python -m venv /work/peers-venv && /work/peers-venv/bin/pip install ai-edge-quantizer==0.10.0
and passed as --peers-python (without it, its column says "not run").
Run: .venv/bin/python benchmarks/bench_vs_peers.py [--acts hard_swish,swish] [--rounds 300]
     [--peers-python /work/peers-venv/bin/python] [--qemu-aarch64 [CPU]] [--write]
     (--write: benchmarks/RESULTS-peers.md; --qemu-aarch64: also LiteRT instruction counts on ARM)
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ACTS = ("hard_swish", "swish", "relu6", "mish", "hard_mish")
TFLITE_COLS = ("float", "ai-edge-quantizer", "edgeact", "edgeact table")
ORT_COLS = ("float", "qs U8", "qs U8 rr", "qs S8", "qs S8 rr", "edgeact", "edgeact host")
PEERS = {"litert": ("ai-edge-quantizer",), "onnxruntime": ("qs U8", "qs U8 rr", "qs S8", "qs S8 rr")}


def _calibration(data):
    import torch

    return torch.cat(list(data.calibration_batches()))


def tflite_files(act: str, d: Path, peers_python: str | None) -> dict[str, bytes | str]:
    """The LiteRT files of one activation (bytes, or a reason why a peer's file is missing)."""
    import edgeact
    from edgeact import models
    from edgeact.export import to_tflite
    from edgeact.quantized.modules import QuantizedActivation

    sys.path.insert(0, str(HERE))
    from float_tflite import float_tflite

    data = models.digits_for("mnv3s")
    net = models.load("mnv3s", act, train_if_missing=False, progress=False).eval()
    prepared = edgeact.prepare(net)
    edgeact.calibrate(prepared, data.calibration_batches(), progress=False)
    conv = edgeact.convert(prepared, backend="litert")
    example = data.x_test[:1]
    files: dict[str, bytes | str] = {
        "edgeact": to_tflite(conv, example),
        "edgeact table": to_tflite(edgeact.convert(prepared, backend="litert", lowering="table"), example)}
    acts = {n: m.bound for n, m in conv.named_modules() if isinstance(m, QuantizedActivation)}
    files["float"] = float_tflite(files["edgeact"], acts)
    if peers_python is None:
        files["ai-edge-quantizer"] = "not run (no --peers-python)"
        return files
    fp, cp, qp = d / f"{act}_float.tflite", d / "calib.npy", d / f"{act}_aeq.tflite"
    fp.write_bytes(files["float"])
    np.save(cp, _calibration(data).permute(0, 2, 3, 1).numpy().astype(np.float32))
    run = subprocess.run([peers_python, str(HERE / "peer_ai_edge_quantizer.py"), str(fp), str(cp), str(qp)],
                         capture_output=True, text=True)
    files["ai-edge-quantizer"] = qp.read_bytes() if run.returncode == 0 else f"failed: {run.stderr.strip()[-200:]}"
    return files


def onnx_files(act: str, d: Path) -> dict[str, bytes | str]:
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import edgeact
    from edgeact import models
    from edgeact.export import to_onnx

    data = models.digits_for("mnv3s")
    net = models.load("mnv3s", act, train_if_missing=False, progress=False).eval()
    prepared = edgeact.prepare(net)
    edgeact.calibrate(prepared, data.calibration_batches(), progress=False)
    conv = edgeact.convert(prepared, backend="onnxruntime")
    files: dict[str, bytes | str] = {"edgeact": to_onnx(conv, data.x_test[:1]).SerializeToString()}
    host = edgeact.convert(prepared, backend="onnxruntime:host")  # this CPU's kernels (x86-vnni: int8 weights)
    files["edgeact host"] = to_onnx(host, data.x_test[:1]).SerializeToString()
    fpath = d / f"{act}_float.onnx"
    torch.onnx.export(net, (data.x_test[:1],), str(fpath), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    files["float"] = fpath.read_bytes()
    pre = d / f"{act}_float_pre.onnx"  # the pre-processing onnxruntime's quantization guide asks for
    quant_pre_process(str(fpath), str(pre))
    calib = _calibration(data).numpy()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"x": x}

    for label, qtype, rr in (("qs U8", QuantType.QUInt8, False), ("qs U8 rr", QuantType.QUInt8, True),
                             ("qs S8", QuantType.QInt8, False), ("qs S8 rr", QuantType.QInt8, True)):
        out = d / f"{act}_{label.replace(' ', '_')}.onnx"
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=qtype,
                        weight_type=QuantType.QInt8, reduce_range=rr)
        files[label] = out.read_bytes()
    return files


def litert_info(interp) -> tuple[int, int]:
    """(XNNPACK partitions, ops LiteRT runs outside XNNPACK) of a loaded interpreter."""
    from edgeact.export.litert.interpreter import partitions

    p = partitions(interp)
    return p.delegated, len(p.outside)


def time_interleaved(runners: dict, rounds: int) -> dict[str, float]:
    samples = {k: [] for k in runners}
    for _ in range(5):
        for f in runners.values():
            f()
    for _ in range(rounds):
        for k, f in runners.items():
            t0 = time.perf_counter()
            f()
            samples[k].append(time.perf_counter() - t0)
    return {k: 1e3 * float(np.median(v)) for k, v in samples.items()}


def measure(act: str, rounds: int, peers_python: str | None, d: Path, qemu_cpu: str | None = None) -> dict:
    import onnxruntime as ort

    from edgeact import models
    from edgeact.export.litert import interpreter as rt

    data = models.digits_for("mnv3s")
    x_nchw = data.x_test.numpy().astype(np.float32)
    labels = data.y_test.numpy()
    res = {"act": act, "litert": {}, "onnxruntime": {}}
    tfl = tflite_files(act, d, peers_python)
    runners = {}
    for k, v in tfl.items():
        if isinstance(v, str):
            res["litert"][k] = {"note": v}
            continue
        interp = rt.load(v)
        parts, outside = litert_info(interp)
        inp = interp.get_input_details()[0]
        out = interp.get_output_details()[0]
        nhwc = x_nchw.transpose(0, 2, 3, 1)
        if inp["dtype"] != np.float32:  # ai-edge-quantizer's file takes int8 codes: quantize outside it
            scale, zp = inp["quantization"]
            nhwc = np.clip(np.round(nhwc / scale) + zp, -128, 127)

        def one(interp=interp, inp=inp, x=nhwc[:1]):
            interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
            interp.invoke()

        preds = []
        for i in range(len(nhwc)):
            interp.set_tensor(inp["index"], nhwc[i:i + 1].astype(inp["dtype"]))
            interp.invoke()
            preds.append(int(np.argmax(interp.get_tensor(out["index"]))))
        res["litert"][k] = {"partitions": parts, "outside": outside, "top1": float(np.mean(np.array(preds) == labels))}
        runners[k] = one
    for k, ms in time_interleaved(runners, rounds).items():
        res["litert"][k]["ms"] = ms
    if qemu_cpu:  # deterministic cost on ARM: instructions per inference under qemu-aarch64
        from edgeact import measure as M

        for k, v in tfl.items():
            if isinstance(v, bytes):
                path = d / f"{act}_{k.replace(' ', '_')}.tflite"
                path.write_bytes(v)
                res["litert"][k]["insns"] = M.bench(path, f"qemu-aarch64:{qemu_cpu}", warmup=1, runs=2).insns["median"]
    onx = onnx_files(act, d)
    runners = {}
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    for k, v in onx.items():
        sess = ort.InferenceSession(v, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        logits = sess.run(None, {name: x_nchw})[0]
        res["onnxruntime"][k] = {"top1": float(np.mean(logits.argmax(1) == labels))}
        runners[k] = lambda sess=sess, name=name: sess.run(None, {name: x_nchw[:1]})
    for k, ms in time_interleaved(runners, rounds).items():
        res["onnxruntime"][k]["ms"] = ms
    return res


def _ratio(res: dict, runtime: str, mine: str = "edgeact") -> str:
    peers = [res[runtime][p]["ms"] for p in PEERS[runtime] if "ms" in res[runtime].get(p, {})]
    if not peers:
        return "—"
    return f"{res[runtime][mine]['ms'] / min(peers):.2f}×"


def tables(results: list[dict]) -> str:
    lines = ["### LiteRT (XNNPACK, 1 thread): ms per inference · XNNPACK partitions / ops outside · top-1", "",
             "| activation | " + " | ".join(TFLITE_COLS) + " | edgeact / fastest peer |",
             "|---" * (len(TFLITE_COLS) + 2) + "|"]
    for r in results:
        cells = []
        for c in TFLITE_COLS:
            e = r["litert"].get(c, {})
            cells.append(e["note"] if "note" in e else
                         f"{e['ms']:.3f} · {e['partitions']}/{e['outside']} · {100 * e['top1']:.1f}%")
        lines.append(f"| {r['act']} | " + " | ".join(cells) + f" | {_ratio(r, 'litert')} |")
    if any("insns" in e for r in results for e in r["litert"].values()):
        lines += ["", "### LiteRT on qemu-aarch64: instructions per inference (one thread)", "",
                  "| activation | " + " | ".join(TFLITE_COLS) + " | edgeact / fewest of the peers |",
                  "|---" * (len(TFLITE_COLS) + 2) + "|"]
        for r in results:
            e = r["litert"]
            peers = [e[p]["insns"] for p in PEERS["litert"] if "insns" in e.get(p, {})]
            ratio = f"{e['edgeact']['insns'] / min(peers):.2f}×" if peers and "insns" in e["edgeact"] else "—"
            lines.append(f"| {r['act']} | " + " | ".join(f"{e[c]['insns'] / 1e6:.2f} M" if "insns" in e.get(c, {})
                                                        else "—" for c in TFLITE_COLS) + f" | {ratio} |")
    lines += ["", "### onnxruntime (CPU EP, 1 thread): ms per inference · top-1", "",
              "| activation | " + " | ".join(ORT_COLS) + " | edgeact / fastest peer | edgeact host / fastest peer |",
              "|---" * (len(ORT_COLS) + 3) + "|"]
    for r in results:
        cells = [f"{r['onnxruntime'][c]['ms']:.3f} · {100 * r['onnxruntime'][c]['top1']:.1f}%" for c in ORT_COLS]
        lines.append(f"| {r['act']} | " + " | ".join(cells) + f" | {_ratio(r, 'onnxruntime')} | "
                     f"{_ratio(r, 'onnxruntime', 'edgeact host')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--acts", default=",".join(ACTS))
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--peers-python", default=None, help="python of the peers' environment (ai-edge-quantizer)")
    ap.add_argument("--write", action="store_true", help="write benchmarks/RESULTS-peers.md")
    ap.add_argument("--qemu-aarch64", metavar="CPU", nargs="?", const="cortex-a72",
                    help="also count LiteRT instructions per inference under qemu-aarch64 (edgeact target setup first)")
    args = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for act in args.acts.split(","):
            print(f"[{act}] exporting and timing …", file=sys.stderr, flush=True)
            results.append(measure(act, args.rounds, args.peers_python, Path(tmp), args.qemu_aarch64))
    text = tables(results)
    print(text)
    if args.write:
        import ai_edge_litert
        import onnxruntime

        from edgeact.backend import get_backend, x86_kernel_family

        head = (f"# edgeact vs peers on mnv3s (digits)\n\n`benchmarks/bench_vs_peers.py --rounds {args.rounds}`: "
                f"{platform.machine()}, {platform.processor() or 'x86_64'}, Python {platform.python_version()}, "
                f"ai-edge-litert {ai_edge_litert.__version__ if hasattr(ai_edge_litert, '__version__') else ''}, "
                f"onnxruntime {onnxruntime.__version__}; medians of interleaved rounds, batch 1; 'edgeact host' is "
                f"{get_backend('onnxruntime:host').name} on this CPU ({x86_kernel_family()}).\n\n")
        (HERE / "RESULTS-peers.md").write_text(head + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
