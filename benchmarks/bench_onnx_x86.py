"""Which ONNX weight format is exact on every x86-64 CPU, and what each option costs: accuracy and latency.

onnxruntime's u8s8 conv/gemm kernels on AVX2 (and AVX-512BW without VNNI) add pairs of u8×s8 products with
int16 saturation (VPMADDUBSW); VNNI and SSE4 do not. The options, each on the same converted model:

  u8s8       int8 weights (zero point 0), uint8 activations inside: ORT's default u8s8 kernels (old default)
  u8u8       uint8 weights (zero point 128, the same values): ORT's U8U8 kernels (edgeact's default now)
  w7         7-bit weights (|code| ≤ 63, onnxruntime's `reduce_range`): u8s8 kernels, pairs cannot saturate
  s8s8       int8 activations and weights inside the graph (what the QDQ model says without the uint8 shift)
  precise    the u8s8 file with session option session.x64quantprecision=1

Accuracy: top-1 on the digits test split (360 images) for the reference models in models/ (trained
checkpoints) and one torchvision-style ResNet made here (BasicBlocks, trained 6 epochs on digits: torchvision
itself is not installed). Codes: output logits that differ from the converted PyTorch model of the option's
own arithmetic (the 7-bit model for w7), natively and under qemu-x86_64 -cpu Haswell (AVX2) and Nehalem
(SSE4.2). Latency: native, one thread, batch 1, the options interleaved round by round; ratios to u8u8.
Instructions per inference under Haswell (edgeact's QEMU counting plugin): the AVX2 cost this host cannot time.

Writes benchmarks/RESULTS-onnx-x86.md. Run: .venv/bin/python benchmarks/bench_onnx_x86.py [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

RESULTS = Path(__file__).with_name("RESULTS-onnx-x86.md")
OPTIONS = ("u8s8", "u8u8", "w7", "s8s8", "precise")
PRECISE = {"session.x64quantprecision": "1"}
CPUS = ("native", "haswell", "nehalem")


# ------------------------------------------------------------------------------------------- models

class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock: conv3×3-BN-ReLU-conv3×3-BN + shortcut (1×1 conv when strided)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) \
            if stride != 1 or cin != cout else None
        self.relu2 = nn.ReLU()

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + (self.down(x) if self.down is not None else x))


class ResNetTiny(nn.Module):
    """A ResNet-18-shaped network at digit size: stem, four stages of one BasicBlock (32-64-128-256), mean, fc."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.layers = nn.Sequential(BasicBlock(32, 32, 1), BasicBlock(32, 64, 2), BasicBlock(64, 128, 2),
                                    BasicBlock(128, 256, 2))
        self.fc = nn.Linear(256, classes)

    def forward(self, x):
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


def reference_models(quick: bool):
    from edgeact import models
    from edgeact.models.train import fit

    out = []
    for name, act in (("cnn", "relu"), ("mnv3s", "hard_swish"), ("mnv3s", "relu"))[: 1 if quick else 3]:
        out.append((f"{name}/{act}", models.load(name, act, train_if_missing=False, progress=False).eval(),
                    models.digits_for(name)))
    data = models.digits_for("cnn")
    torch.manual_seed(0)
    net = ResNetTiny()
    fit(net, data, 2 if quick else 6, lr=3e-3, max_shift=1)
    out.append(("resnet-tiny (torchvision BasicBlock)", net.eval(), data))
    return out


# ------------------------------------------------------------------------------------------- files

@contextlib.contextmanager
def seven_bit_weights():
    """convert() with weight scales amax/63 instead of amax/127 (onnxruntime's reduce_range)."""
    from edgeact.qparams import QuantParams

    orig = QuantParams.from_range.__func__

    def from_range(cls, lo, hi, dtype="int8", symmetric=False, axis=None, *args, **kwargs):
        if axis == 0 and kwargs.get("narrow"):  # the per-channel weight parameters of conv / linear
            lo, hi = np.asarray(lo) * (127 / 63), np.asarray(hi) * (127 / 63)
        return orig(cls, lo, hi, dtype, symmetric, axis, *args, **kwargs)

    QuantParams.from_range = classmethod(from_range)
    try:
        yield
    finally:
        QuantParams.from_range = classmethod(orig)


@contextlib.contextmanager
def signed_activations():
    """to_onnx without the uint8 shift of int8 activations (int8 codes inside the graph)."""
    from edgeact.export.onnxruntime import writer as W

    lower = W.lower_activation

    def unshifted(g, name, bound, in_qp, out_qp, table, **kwargs):
        # the writer adds 128 to an int8 table for its uint8 codes; int8 codes inside need none
        return lower(g, name, bound, in_qp, out_qp, table=table - 128 if out_qp.dtype == "int8" else table, **kwargs)

    saved = W.inner, W.lower_activation
    W.inner, W.lower_activation = (lambda qp: qp), unshifted
    try:
        yield
    finally:
        W.inner, W.lower_activation = saved


def make_files(model, data, out: Path):
    """Export every option; return {option: (file, session options)}, the reference logits per option."""
    import edgeact
    from edgeact.export import to_onnx

    p = edgeact.prepare(model, qconfig=edgeact.QConfig(activation_dtype="int8"))
    edgeact.calibrate(p, data.x_train[:512], progress=False)
    m8 = edgeact.convert(p, backend="onnxruntime")
    with seven_bit_weights():
        m7 = edgeact.convert(p, backend="onnxruntime")
    example = data.x_test[:1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to_onnx(m8, example, out / "u8s8.onnx", weights="int8")
        to_onnx(m8, example, out / "u8u8.onnx")
        to_onnx(m7, example, out / "w7.onnx", weights="int8")
        with signed_activations():
            to_onnx(m8, example, out / "s8s8.onnx", weights="int8")
    files = {"u8s8": ("u8s8.onnx", {}), "u8u8": ("u8u8.onnx", {}), "w7": ("w7.onnx", {}),
             "s8s8": ("s8s8.onnx", {}), "precise": ("u8s8.onnx", PRECISE)}
    with torch.no_grad():
        ref8, ref7 = m8(data.x_test).numpy(), m7(data.x_test).numpy()
        flt = model(data.x_test).numpy()
    out_scale = float(np.float32(m8.get_submodule(_output_dq(m8)).in_qparams[0].scale))
    out_scale7 = float(np.float32(m7.get_submodule(_output_dq(m7)).in_qparams[0].scale))
    refs = {o: (ref7, out_scale7) if o == "w7" else (ref8, out_scale) for o in OPTIONS}
    return files, refs, flt


def _output_dq(gm) -> str:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    return out.args[0].target


# ------------------------------------------------------------------------------------------- worker

WORKER = r"""
import json, sys, numpy as np, onnxruntime as ort
spec = json.loads(open(sys.argv[1]).read())
x = np.load(spec["inputs"])
res = {}
for option, (path, config) in spec["files"].items():
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    for k, v in config.items():
        so.add_session_config_entry(k, v)
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    res[option] = s.run(None, {s.get_inputs()[0].name: x})[0]
np.savez(spec["out"], **res)
"""


def run_everywhere(files, x: np.ndarray, work: Path, cpus) -> dict:
    """{cpu: {option: logits}}: the worker natively and under qemu-x86_64 -cpu MODEL (the host's own Python)."""
    from edgeact.targets import get_target

    np.save(work / "x.npy", x)
    (work / "worker.py").write_text(WORKER)
    out = {}
    for cpu in cpus:
        spec = {"inputs": str(work / "x.npy"), "out": str(work / f"{cpu}.npz"),
                "files": {o: (str(work / f), c) for o, (f, c) in files.items()}}
        (work / f"{cpu}.json").write_text(json.dumps(spec))
        if cpu == "native":
            cmd, env = [sys.executable], None
        else:
            cmd, env = get_target(f"qemu-x86_64:{cpu}").python_command()
        subprocess.run(cmd + [str(work / "worker.py"), str(work / f"{cpu}.json")], check=True, env=env,
                       stderr=subprocess.DEVNULL)
        with np.load(work / f"{cpu}.npz") as z:
            out[cpu] = {k: z[k] for k in z.files}
    return out


def latency(files, work: Path, x1: np.ndarray, rounds: int, per_round: int) -> dict:
    """Median ms per inference per option, options interleaved within each round (paired)."""
    import onnxruntime as ort

    sessions = {}
    for option, (f, config) in files.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        for k, v in config.items():
            so.add_session_config_entry(k, v)
        s = ort.InferenceSession(str(work / f), so, providers=["CPUExecutionProvider"])
        sessions[option] = (s, {s.get_inputs()[0].name: x1})
    for s, feed in sessions.values():
        for _ in range(20):
            s.run(None, feed)
    times = {o: [] for o in sessions}
    for r in range(rounds):
        order = list(sessions) if r % 2 == 0 else list(reversed(sessions))
        for o in order:
            s, feed = sessions[o]
            t = time.perf_counter()
            for _ in range(per_round):
                s.run(None, feed)
            times[o].append((time.perf_counter() - t) / per_round * 1e3)
    ratios = {o: float(np.median(np.asarray(times[o]) / np.asarray(times["u8u8"]))) for o in times}
    return {o: (float(np.median(times[o])), ratios[o]) for o in times}


def haswell_instructions(files, work: Path, x1: np.ndarray, runs: int = 3) -> dict:
    """Instructions per inference under qemu-x86_64 -cpu Haswell (deterministic, one thread): what AVX2 costs,
    where this host cannot time it."""
    from edgeact.targets import get_target

    t = get_target("qemu-x86_64:haswell")
    out = {}
    for option, (f, config) in files.items():
        r = t.run(work / f, [x1], runs=runs, count=True, session_options=config)
        out[option] = int(np.median(r.insn_counts))
    return out


# ------------------------------------------------------------------------------------------- report

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one reference model, short training, few rounds")
    ap.add_argument("--no-write", action="store_true", help="print only, do not write RESULTS-onnx-x86.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from edgeact.targets.cpu import host_family

    rows = []
    for label, model, data in reference_models(args.quick):
        with tempfile.TemporaryDirectory(prefix="edgeact-x86-") as tmp:
            work = Path(tmp)
            files, refs, flt = make_files(model, data, work)
            x = data.x_test.numpy()
            y = data.y_test.numpy()
            outs = run_everywhere(files, x, work, CPUS)
            lat = latency(files, work, x[:1], rounds=15 if args.quick else 60, per_round=20)
            insns = haswell_instructions(files, work, x[:1])
        acc_float = float(np.mean(flt.argmax(1) == y)) * 100
        row = {"model": label, "float": acc_float, "options": {}}
        for o in OPTIONS:
            ref, scale = refs[o]
            noise = float(np.mean((ref.astype(np.float64) - flt) ** 2))
            cell = {"torch": float(np.mean(ref.argmax(1) == y)) * 100, "latency": lat[o],
                    "insns": (insns[o], insns[o] / insns["u8u8"]),
                    "sqnr": float(10 * np.log10(np.mean(flt.astype(np.float64) ** 2) / noise)) if noise else float("inf")}
            for cpu in CPUS:
                got = outs[cpu][o]
                lsb = np.rint(np.abs(got.astype(np.float64) - ref) / scale).astype(np.int64)
                cell[cpu] = {"acc": float(np.mean(got.argmax(1) == y)) * 100, "differ": int((lsb > 0).sum()),
                             "max": int(lsb.max()), "n": int(lsb.size)}
            row["options"][o] = cell
        rows.append(row)
        print(json.dumps(row))
    text = report(rows, host_family())
    print(text)
    if not args.no_write and not args.quick:
        RESULTS.write_text(text)
    return 0


def report(rows, family: str) -> str:
    import onnxruntime as ort

    lines = ["# ONNX on every x86-64 CPU: weight formats side by side", "",
             f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bench_onnx_x86.py` with onnxruntime "
             f"{ort.__version__}, torch {torch.__version__}, on {platform.machine()} ({family}, native), and the same "
             "Python under `qemu-x86_64 -cpu Haswell` (AVX2) and `-cpu Nehalem` (SSE4.2). 360 test images per "
             "model; SQNR and `top-1 torch`: the converted PyTorch model of the option's arithmetic, its logits "
             "against the float model's; `codes ≠` counts output logits that differ from the converted PyTorch model of the option's "
             "own arithmetic (w7: the 7-bit model), max in LSB. Latency: native, 1 thread, batch 1, options "
             "interleaved round by round; ratio = median of per-round ratios to u8u8. Haswell instructions: per "
             "inference (batch 1, one thread) under `qemu-x86_64 -cpu Haswell` with edgeact's counting plugin — "
             "what the AVX2 kernels execute, where this host cannot time them.", ""]
    for row in rows:
        lines += [f"## {row['model']} (float {row['float']:.2f} %)", "",
                  "| option | SQNR vs float (dB) | top-1 torch | top-1 native | top-1 Haswell | top-1 Nehalem | codes ≠ native | "
                  "codes ≠ Haswell | codes ≠ Nehalem | ms native | × u8u8 | Haswell instructions | × u8u8 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for o, c in row["options"].items():
            def d(cpu):
                v = c[cpu]
                return f"{v['differ']:,} / {v['n']:,}" + (f" (max {v['max']})" if v["differ"] else "")
            lines.append(f"| {o} | {c['sqnr']:.1f} | {c['torch']:.2f} | {c['native']['acc']:.2f} | {c['haswell']['acc']:.2f} | "
                         f"{c['nehalem']['acc']:.2f} | {d('native')} | {d('haswell')} | {d('nehalem')} | "
                         f"{c['latency'][0]:.3f} | {c['latency'][1]:.2f} | {c['insns'][0]:,} | {c['insns'][1]:.2f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
