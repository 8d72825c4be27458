"""edgeact's int8 files against the peers' on the same float model, timed side by side in one run.

Subjects (rows): the trained mnv3s checkpoint of each activation (models/checkpoints), calibrated on the
same 256 digits images and judged on the digits test set; and torchvision models as shipped
(`edgeact.models.zoo`: random init, BatchNorm statistics of random data, 64×64), calibrated on 32 random
images and judged on 128 others against the float model's own top-1. Each becomes:

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
    qs U8 pc        the same, uint8 activations, per-channel weights (peer; edgeact's weights are
                    always per channel, so this is the like-for-like file)
    edgeact         edgeact's portable ONNX file (convert(backend='onnxruntime') → to_onnx: uint8 weights,
                    exact on every CPU)
    edgeact host    convert(backend='onnxruntime:host'): this CPU's kernels ('onnxruntime:x86-vnni' on a
                    VNNI/AMX CPU: int8 weights), exact here
    edgeact aarch64 convert(backend='onnxruntime:aarch64'): the lowering ARM prefers (counted under QEMU only)

Times are medians over interleaved rounds (every file once per round, so a busy neighbour slows all
alike); the ratio is edgeact over the fastest peer int8 file of the same runtime. "partitions" counts
the XNNPACK-delegated subgraphs and "outside" the ops LiteRT runs without XNNPACK. top-1 is measured for
every file (the exact files equal their converted model code for code; the top-1 shows what the int8
arithmetic costs against float). ai-edge-quantizer's file takes and returns int8 codes, so its time has
no QUANTIZE/DEQUANTIZE, which edgeact's float-in/out files include. With --qemu-aarch64 every file of
both runtimes is also counted in instructions per inference under qemu-aarch64 (deterministic), with
ratios to the fewest of the peers and to the float file.

The peer ai-edge-quantizer is not a project dependency: it runs in its own environment, made once by
    python -m venv /work/peers-venv && /work/peers-venv/bin/pip install ai-edge-quantizer==0.10.0
and passed as --peers-python (without it, its column says "not run").
Run: .venv/bin/python benchmarks/bench_vs_peers.py [--acts hard_swish,swish] [--models mobilenet_v3_small]
     [--rounds 300] [--peers-python /work/peers-venv/bin/python] [--qemu-aarch64 [CPU]] [--write]
     (--write: the tables into benchmarks/RESULTS-peers.md, keeping its hand-written reading below them)
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ACTS = ("hard_swish", "swish", "relu6", "mish", "hard_mish")
MODELS = ("mobilenet_v3_small", "efficientnet_b0")  # hard_swish + hard_sigmoid, swish + sigmoid
ANALYSIS = "## What the numbers say"
TFLITE_COLS = ("float", "ai-edge-quantizer", "edgeact", "edgeact int8 I/O", "edgeact table")
ORT_COLS = ("float", "qs U8", "qs U8 rr", "qs S8", "qs S8 rr", "qs U8 pc", "edgeact", "edgeact host")
PEERS = {"litert": ("ai-edge-quantizer",),
         "onnxruntime": ("qs U8", "qs U8 rr", "qs S8", "qs S8 rr", "qs U8 pc")}
PER_CHANNEL_PEER = "qs U8 pc"


@dataclass
class Subject:
    """One float model and its data: what every file of a row is made from and judged on."""

    label: str  # the table's first column
    net: object  # float torch.nn.Module, eval mode
    calibration: list  # NCHW float batches, the same for edgeact and the peers
    x: np.ndarray  # NCHW float32 evaluation inputs
    labels: np.ndarray  # top-1 targets: the test labels, or the float model's own argmax (random-init models)

    @property
    def calib(self) -> np.ndarray:
        import torch

        return torch.cat(list(self.calibration)).numpy().astype(np.float32)


def mnv3s_subject(act: str) -> Subject:
    """The trained mnv3s checkpoint of `act` with 256 digits images for calibration and the test set."""
    from edgeact import models

    data = models.digits_for("mnv3s")
    net = models.load("mnv3s", act, train_if_missing=False, progress=False).eval()
    return Subject(f"mnv3s · {act}", net, list(data.calibration_batches()),
                   data.x_test.numpy().astype(np.float32), data.y_test.numpy())


def zoo_subject(name: str, samples: int = 128) -> Subject:
    """A torchvision model as shipped (random init, BatchNorm statistics of random data, 64×64): 32
    random images calibrate, `samples` others are judged against the float model's own top-1."""
    import torch

    from edgeact.models import zoo

    net = zoo.build(name)
    gen = torch.Generator().manual_seed(1)
    shape = zoo.ZOO[name].input_shape
    calibration = [torch.randn(8, *shape, generator=gen) for _ in range(4)]
    x = torch.randn(samples, *shape, generator=gen)
    with torch.no_grad():
        labels = net(x).argmax(1).numpy()
    return Subject(name, net, calibration, x.numpy(), labels)


def _prepared(subject: Subject):
    import edgeact

    prepared = edgeact.prepare(subject.net)
    edgeact.calibrate(prepared, subject.calibration, progress=False)
    return prepared


def tflite_files(subject: Subject, d: Path, peers_python: str | None) -> dict[str, bytes | str]:
    """The LiteRT files of one subject (bytes, or a reason why a peer's file is missing)."""
    import edgeact
    from edgeact.export import to_tflite
    from edgeact.quantized.modules import QuantizedActivation

    sys.path.insert(0, str(HERE))
    from float_tflite import float_tflite

    prepared = _prepared(subject)
    conv = edgeact.convert(prepared, backend="litert")
    example = subject.calibration[0][:1]
    files: dict[str, bytes | str] = {
        "edgeact": to_tflite(conv, example),
        # ai-edge-quantizer's file takes and gives int8 codes: the same interface, to compare like with like
        "edgeact int8 I/O": to_tflite(conv, example, io="int8"),
        "edgeact table": to_tflite(edgeact.convert(prepared, backend="litert", lowering="table"), example)}
    acts = {n: m.bound for n, m in conv.named_modules() if isinstance(m, QuantizedActivation)}
    files["float"] = float_tflite(files["edgeact"], acts)
    if peers_python is None:
        files["ai-edge-quantizer"] = "not run (no --peers-python)"
        return files
    fp, cp, qp = d / "float.tflite", d / "calib.npy", d / "aeq.tflite"
    fp.write_bytes(files["float"])
    np.save(cp, subject.calib.transpose(0, 2, 3, 1))
    run = subprocess.run([peers_python, str(HERE / "peer_ai_edge_quantizer.py"), str(fp), str(cp), str(qp)],
                         capture_output=True, text=True)
    files["ai-edge-quantizer"] = qp.read_bytes() if run.returncode == 0 else f"failed: {run.stderr.strip()[-200:]}"
    return files


def onnx_files(subject: Subject, d: Path) -> dict[str, bytes | str]:
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import edgeact
    from edgeact.export import to_onnx

    prepared = _prepared(subject)
    example = subject.calibration[0][:1]
    files: dict[str, bytes | str] = {}
    for label, backend in (("edgeact", "onnxruntime"), ("edgeact host", "onnxruntime:host"),
                           ("edgeact aarch64", "onnxruntime:aarch64")):
        files[label] = to_onnx(edgeact.convert(prepared, backend=backend), example).SerializeToString()
    fpath = d / "float.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(subject.net, (example,), str(fpath), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    files["float"] = fpath.read_bytes()
    pre = d / "float_pre.onnx"  # the pre-processing onnxruntime's quantization guide asks for
    quant_pre_process(str(fpath), str(pre))
    calib = subject.calib

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"x": x}

    for label, qtype, rr, pc in (("qs U8", QuantType.QUInt8, False, False), ("qs U8 rr", QuantType.QUInt8, True, False),
                                 ("qs S8", QuantType.QInt8, False, False), ("qs S8 rr", QuantType.QInt8, True, False),
                                 (PER_CHANNEL_PEER, QuantType.QUInt8, False, True)):
        out = d / f"{label.replace(' ', '_')}.onnx"
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=qtype,
                        weight_type=QuantType.QInt8, reduce_range=rr, per_channel=pc)
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


def qemu_insns(files: dict, suffix: str, d: Path, cpu: str) -> dict[str, float]:
    """Instructions per inference of every file under qemu-aarch64 (deterministic: one run suffices)."""
    from edgeact import measure as M

    out = {}
    for k, v in files.items():
        if isinstance(v, bytes):
            path = d / f"{k.replace(' ', '_').replace('/', '')}{suffix}"
            path.write_bytes(v)
            out[k] = M.bench(path, f"qemu-aarch64:{cpu}", warmup=1, runs=2).insns["median"]
    return out


def measure(subject: Subject, rounds: int, peers_python: str | None, d: Path, qemu_cpu: str | None = None) -> dict:
    import onnxruntime as ort

    from edgeact.export.litert import interpreter as rt

    x_nchw, labels = subject.x, subject.labels
    res = {"label": subject.label, "litert": {}, "onnxruntime": {}}
    tfl = tflite_files(subject, d, peers_python)
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
        if inp["dtype"] != np.float32:  # an int8-I/O file takes codes: quantized outside it, not timed
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
    onx = onnx_files(subject, d)
    runners = {}
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    for k, v in onx.items():
        sess = ort.InferenceSession(v, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        logits = sess.run(None, {name: x_nchw})[0]
        res["onnxruntime"][k] = {"top1": float(np.mean(logits.argmax(1) == labels))}
        if k != "edgeact aarch64":  # that file's choices are for ARM: counted under QEMU only
            runners[k] = lambda sess=sess, name=name: sess.run(None, {name: x_nchw[:1]})
    for k, ms in time_interleaved(runners, rounds).items():
        res["onnxruntime"][k]["ms"] = ms
    if qemu_cpu:  # deterministic cost on ARM: instructions per inference under qemu-aarch64
        for runtime, files, suffix in (("litert", tfl, ".tflite"), ("onnxruntime", onx, ".onnx")):
            print(f"[{subject.label}] counting {runtime} instructions under qemu-aarch64 …", file=sys.stderr, flush=True)
            for k, n in qemu_insns(files, suffix, d, qemu_cpu).items():
                res[runtime][k]["insns"] = n
    return res


def _ratio(res: dict, runtime: str, mine: str = "edgeact", key: str = "ms") -> str:
    peers = [res[runtime][p][key] for p in PEERS[runtime] if key in res[runtime].get(p, {})]
    if not peers or key not in res[runtime].get(mine, {}):
        return "—"
    return f"{res[runtime][mine][key] / min(peers):.2f}×"


def _insns_table(results: list[dict], runtime: str, cols: tuple[str, ...], mine: tuple[str, ...]) -> list[str]:
    title = {"litert": "LiteRT (XNNPACK)", "onnxruntime": "onnxruntime (CPU EP)"}[runtime]
    lines = ["", f"### {title} on qemu-aarch64: instructions per inference (one thread)", "",
             "| model · activation | " + " | ".join(cols) + " | "
             + " | ".join(f"{m} / fewest of the peers | {m} / float" for m in mine) + " |",
             "|---" * (len(cols) + 1 + 2 * len(mine)) + "|"]
    for r in results:
        e = r[runtime]
        cells = [f"{e[c]['insns'] / 1e6:.2f} M" if "insns" in e.get(c, {}) else "—" for c in cols]
        for m in mine:
            cells.append(_ratio(r, runtime, m, "insns"))
            cells.append(f"{e[m]['insns'] / e['float']['insns']:.2f}×" if "insns" in e.get(m, {})
                         and "insns" in e.get("float", {}) else "—")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return lines


def tables(results: list[dict]) -> str:
    lines = ["### LiteRT (XNNPACK, 1 thread): ms per inference · XNNPACK partitions / ops outside · top-1", "",
             "| model · activation | " + " | ".join(TFLITE_COLS)
             + " | edgeact / fastest peer | edgeact int8 I/O / fastest peer |",
             "|---" * (len(TFLITE_COLS) + 3) + "|"]
    for r in results:
        cells = []
        for c in TFLITE_COLS:
            e = r["litert"].get(c, {})
            cells.append(e["note"] if "note" in e else
                         f"{e['ms']:.3f} · {e['partitions']}/{e['outside']} · {100 * e['top1']:.1f}%")
        lines.append(f"| {r['label']} | " + " | ".join(cells)
                     + f" | {_ratio(r, 'litert')} | {_ratio(r, 'litert', 'edgeact int8 I/O')} |")
    if any("insns" in e for r in results for e in r["litert"].values()):
        lines += _insns_table(results, "litert", TFLITE_COLS, ("edgeact", "edgeact int8 I/O"))
    lines += ["", "### onnxruntime (CPU EP, 1 thread): ms per inference · top-1", "",
              "| model · activation | " + " | ".join(ORT_COLS) + " | edgeact / fastest peer | edgeact host / fastest peer"
              " | edgeact host / qs U8 pc |", "|---" * (len(ORT_COLS) + 4) + "|"]
    for r in results:
        e = r["onnxruntime"]
        cells = [f"{e[c]['ms']:.3f} · {100 * e[c]['top1']:.1f}%" for c in ORT_COLS]
        like = f"{e['edgeact host']['ms'] / e[PER_CHANNEL_PEER]['ms']:.2f}×"
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {_ratio(r, 'onnxruntime')} | "
                     f"{_ratio(r, 'onnxruntime', 'edgeact host')} | {like} |")
    if any("insns" in e for r in results for e in r["onnxruntime"].values()):
        lines += _insns_table(results, "onnxruntime", ORT_COLS[:6] + ("edgeact", "edgeact aarch64"),
                              ("edgeact", "edgeact aarch64"))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--acts", default=",".join(ACTS), help="mnv3s checkpoints, one per activation ('' for none)")
    ap.add_argument("--models", default=",".join(MODELS), help="torchvision models as shipped ('' for none)")
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--peers-python", default=None, help="python of the peers' environment (ai-edge-quantizer)")
    ap.add_argument("--write", action="store_true", help="write the tables into benchmarks/RESULTS-peers.md")
    ap.add_argument("--qemu-aarch64", metavar="CPU", nargs="?", const="cortex-a72",
                    help="also count instructions per inference under qemu-aarch64 (edgeact target setup first)")
    args = ap.parse_args(argv)
    subjects = [(a, mnv3s_subject) for a in args.acts.split(",") if a] + \
               [(m, zoo_subject) for m in args.models.split(",") if m]
    results = []
    for what, make in subjects:
        print(f"[{what}] exporting and timing …", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            results.append(measure(make(what), args.rounds, args.peers_python, Path(tmp), args.qemu_aarch64))
    text = tables(results)
    print(text)
    if args.write:
        import ai_edge_litert
        import onnxruntime

        from edgeact.backend import get_backend, x86_kernel_family

        head = (f"# edgeact vs peers\n\n`benchmarks/bench_vs_peers.py --rounds {args.rounds}`: "
                f"{platform.machine()}, {platform.processor() or 'x86_64'}, Python {platform.python_version()}, "
                f"ai-edge-litert {ai_edge_litert.__version__ if hasattr(ai_edge_litert, '__version__') else ''}, "
                f"onnxruntime {onnxruntime.__version__}; medians of interleaved rounds, batch 1; 'edgeact host' is "
                f"{get_backend('onnxruntime:host').name} on this CPU ({x86_kernel_family()}); qemu-aarch64 "
                f"-cpu {args.qemu_aarch64 or '(not run)'}. mnv3s rows: trained checkpoints, digits test set; "
                f"torchvision rows: random init, top-1 against the float model's own.\n\n")
        path = HERE / "RESULTS-peers.md"
        old = path.read_text() if path.exists() else ""
        keep = old[old.index(ANALYSIS):] if ANALYSIS in old else ""  # the hand-written reading of the tables
        path.write_text(head + text + "\n\n" + keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
