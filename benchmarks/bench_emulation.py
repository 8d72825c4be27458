#!/usr/bin/env python3
"""Emulation slowdown and instruction counts per inference on each ARM CPU model.

For each model: the host median, the qemu-aarch64 median (same model, same runtime version, same process
layout) and their ratio, measured side by side in this run; then the deterministic instruction count per
inference under QEMU for every CPU model (aarch64: cortex-a53/a72/a76; armv7, TFLite only: cortex-a7/a15).
The activation models come in two lowerings — the runtime's native int8 op and an exact 256-entry Gather
table — so the tables answer "which lowering is cheapest on ARM".

    python benchmarks/bench_emulation.py                       # the test fixtures (built in a temp dir)
    python benchmarks/bench_emulation.py --model mnv3=out/mobilenetv3.tflite --model hsw=out/hsw.onnx
    python benchmarks/bench_emulation.py --write benchmarks/RESULTS-arm.md

Needs `edgeact target setup qemu-aarch64` (and qemu-armv7 for the armv7 columns).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTES_MARK = "<!-- notes: kept when the tables are regenerated -->"
sys.path.insert(0, str(HERE.parent / "tests"))  # fixtures_models: the default models


def default_models(d: Path) -> dict[str, tuple[Path, str]]:
    """name → (path, lowering) from the test fixtures: a conv, and activations native vs table."""
    import fixtures_models as F

    table = F.int8_table(F.hardswish, 0.05, 0, 0.05, 0)
    return {
        "conv3x3+relu (QDQ)": (F.conv_qdq_onnx(d / "conv_qdq.onnx"), "QLinearConv"),
        "conv3x3+relu (int8)": (F.conv_tflite(d / "conv_int8.tflite"), "CONV_2D"),
        "hard-swish ONNX native": (F.act_qdq_onnx(d / "hsw_native.onnx"), "DQ→HardSwish→Q"),
        "hard-swish ONNX table": (F.act_gather_onnx(d / "hsw_table.onnx", table), "Gather LUT"),
        "sigmoid ONNX native": (F.act_qdq_onnx(d / "sig_native.onnx", "Sigmoid", s_out=1 / 256, z_out=-128),
                                "QLinearSigmoid (fused)"),
        "hard-swish TFLite native": (F.act_tflite(d / "hsw_native.tflite", "HARD_SWISH"), "HARD_SWISH"),
        "hard-swish TFLite table": (F.act_gather_tflite(d / "hsw_table.tflite", table), "CAST+ADD+GATHER"),
        "sigmoid TFLite native": (F.act_tflite(d / "sig_native.tflite", "LOGISTIC"), "LOGISTIC"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="model file to measure (repeatable); default: the test fixtures")
    ap.add_argument("--host-runs", type=int, default=50)
    ap.add_argument("--qemu-runs", type=int, default=5)
    ap.add_argument("--cpus", default="cortex-a53,cortex-a72,cortex-a76")
    ap.add_argument("--armv7-cpus", default="cortex-a7,cortex-a15")
    ap.add_argument("--slowdown-cpu", default="cortex-a72")
    ap.add_argument("--write", metavar="MD", help="also write the tables to this Markdown file")
    args = ap.parse_args(argv)

    from edgeact import measure
    from edgeact.errors import EdgeActError
    from edgeact.targets import get_target

    tmp = Path(tempfile.mkdtemp(prefix="edgeact-bench-"))
    if args.model:
        models = {}
        for spec in args.model:
            name, _, path = spec.partition("=")
            models[name if path else Path(name).stem] = (Path(path or name), "")
    else:
        models = default_models(tmp)

    cpus = [c for c in args.cpus.split(",") if c]
    v7cpus = [c for c in args.armv7_cpus.split(",") if c]
    armv7_ok = get_target("qemu-armv7").status().available
    t0 = time.monotonic()
    rows = []
    for name, (path, lowering) in models.items():
        data = measure.random_inputs(path, seed=0)
        host = measure.bench(path, "host", warmup=3, runs=args.host_runs, inputs=data)
        arm = {}
        for cpu in cpus:
            arm[cpu] = measure.bench(path, get_target("qemu-aarch64", cpu=cpu), warmup=1, runs=args.qemu_runs,
                                     inputs=data)
        v7 = {}
        if armv7_ok and path.suffix == ".tflite":
            for cpu in v7cpus:
                try:
                    v7[cpu] = measure.bench(path, get_target("qemu-armv7", cpu=cpu), warmup=1,
                                            runs=args.qemu_runs, inputs=data)
                except EdgeActError as exc:
                    print(f"armv7 {cpu} {name}: {exc}", file=sys.stderr)
        rows.append((name, lowering, path, host, arm, v7))
        print(f"  {name}: host {host.latency_ms['median']:.3f} ms, "
              + ", ".join(f"{c} {r.insns['median']:,} insns" for c, r in arm.items()), file=sys.stderr)
    elapsed = time.monotonic() - t0

    s = args.slowdown_cpu if args.slowdown_cpu in cpus else cpus[0]
    out = []
    out.append(f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} ({os.cpu_count()} cores), "
               f"QEMU user-mode 7.2, one thread, in {elapsed:.0f} s. Input 1×16×56×56 (NCHW) / 1×56×56×16 "
               "(NHWC), int8, s = 0.05.\n")
    out.append(f"### Emulation slowdown (qemu-aarch64 -cpu {s} ÷ host, same model, same runtime version)\n")
    out.append("| model | runtime | host median ms | emulated median ms | emulated min ms | slowdown (median) |"
               " slowdown (min) |")
    out.append("|---|---|---|---|---|---|---|")
    for name, lowering, path, host, arm, v7 in rows:
        a = arm[s]
        hm, am = host.latency_ms["median"], a.latency_ms["median"]
        out.append(f"| {name} | {host.runtime} | {hm:.3f} | {am:.2f} | {a.latency_ms['min']:.2f} | "
                   f"{am / hm:.0f}× | {a.latency_ms['min'] / host.latency_ms['min']:.0f}× |")
    out.append("\nEmulated milliseconds are noisy (±30% between repetitions) and are not ARM latencies; the "
               "ratio only says how much patience emulation needs.\n")
    out.append("### Instructions per inference (deterministic: identical in every run)\n")
    head = ["model", "lowering"] + [f"aarch64 {c}" for c in cpus] + ([f"armv7 {c}" for c in v7cpus]
                                                                     if armv7_ok else [])
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for name, lowering, path, host, arm, v7 in rows:
        cells = [name, lowering or path.name] + [f"{arm[c].insns['median']:,}" for c in cpus]
        if armv7_ok:
            cells += [f"{v7[c].insns['median']:,}" if c in v7 else "— (no onnxruntime)" for c in v7cpus]
        out.append("| " + " | ".join(cells) + " |")
    out.append(f"\nRuntimes: aarch64 {rows[0][4][cpus[0]].runtime if rows else ''} / ai-edge-litert (same "
               "versions as the host); armv7 tflite-runtime 2.14.0 (the only cp311 armv7 build). A count includes "
               "the Python call into the runtime (a few thousand instructions) and is the median over "
               f"{args.qemu_runs} inferences after one warm-up.\n")
    text = "\n".join(out)
    print(text)
    if args.write:
        p = Path(args.write)
        notes = ""
        if p.exists() and NOTES_MARK in p.read_text():
            notes = p.read_text().split(NOTES_MARK, 1)[1]  # hand-written findings survive a re-run
        tmpf = p.with_name(p.name + ".tmp")
        tmpf.write_text("# ARM under QEMU: emulation slowdown and instruction counts\n\n"
                        "Tables written by `python benchmarks/bench_emulation.py --write benchmarks/RESULTS-arm.md`"
                        ".\n\n" + text + "\n" + NOTES_MARK + notes)
        os.replace(tmpf, p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
