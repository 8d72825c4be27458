#!/usr/bin/env python3
"""Which int8 lowering is cheapest on ARM: instruction counts per inference under QEMU, and the emulation slowdown.

For every activation of the registry, one int8 tensor of 1×16×56×56 (ONNX, NCHW) / 1×56×56×16 (TFLite,
NHWC) through each lowering the exporters offer — the runtime's native op and the exact 256-entry table —
and for the reference models (exported by `to_onnx` / `to_tflite` from `edgeact.convert`): the
deterministic instruction count per inference on each ARM CPU model (qemu-aarch64: cortex-a53/a72/a76;
qemu-armv7, LiteRT only: cortex-a7/a15), the host's latency beside it, the emulation slowdown
(qemu-aarch64 ÷ host, same file, same runtime version), and whether the ARM run gave the host's codes.
All figures come from this one run.

Cost: one QEMU process per CPU model runs every file (`emulation_batch.py`), so a full run takes about a
minute, not half an hour of emulated start-ups: counts are deterministic, two timed inferences per file
suffice for them.

    python benchmarks/bench_emulation.py                      # everything, ~1 min on 2 cores
    python benchmarks/bench_emulation.py --activations hard_swish,relu6 --models none --cpus cortex-a72
    python benchmarks/bench_emulation.py --write benchmarks/RESULTS-arm.md

Needs `edgeact target setup qemu-aarch64` (and qemu-armv7 for the armv7 columns).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BATCH = HERE / "emulation_batch.py"
NOTES_MARK = "<!-- notes: kept when the tables are regenerated -->"
ONNX_SHAPE = (1, 16, 56, 56)
TFLITE_SHAPE = (1, 56, 56, 16)
S_IN = 0.05


@dataclasses.dataclass
class Entry:
    """One file to measure."""

    group: str  # "activation" | "model"
    name: str  # activation or model name
    runtime: str  # "onnxruntime" | "litert"
    lowering: str  # "native" | "table" (activations), "x86 choice" | "ARM choice" (models)
    path: Path
    ops: str = ""  # what the lowering is, in the runtime's ops
    default: bool = False  # the exporter's choice (made on x86 measurements)
    exact: bool = True  # reproduced code for code by edgeact's semantics
    inputs: Path | None = None
    host: dict | None = None
    arm: dict = dataclasses.field(default_factory=dict)  # "arch cpu" → {"insns", "times_ms", "codes_differ", …}


# --------------------------------------------------------------------------------------------- files

def _out_qp(name):
    from edgeact import QuantParams
    from edgeact.export.litert.arithmetic import LOGISTIC_OUTPUT, TANH_OUTPUT

    return {"sigmoid": LOGISTIC_OUTPUT, "tanh": TANH_OUTPUT}.get(name, QuantParams(S_IN, 0))


def activation_entries(names, d: Path) -> list[Entry]:
    """Each activation in each lowering both exporters offer (native only where the runtime has the op)."""
    from edgeact import QuantParams
    from edgeact.activations import bind
    from edgeact.export import export_activation
    from edgeact.export.onnxruntime.lowering import choose_lowering, has_native_op
    from edgeact.export.litert.lowering import activation_model
    from edgeact.export.litert import arithmetic as T
    from edgeact.export.onnxruntime.arithmetic import native_kernel

    in_qp = QuantParams(S_IN, 0)
    out = []
    for name in names:
        act, out_qp = bind(name), _out_qp(name)
        onnx_default = choose_lowering(act, in_qp, out_qp, None)
        for lowering in ("native", "table"):
            if lowering == "native" and not has_native_op(act):
                continue
            p = d / f"{name}_{lowering}.onnx"
            export_activation(act, in_qp, out_qp, p, shape=ONNX_SHAPE, lowering=lowering, require_exact=False)
            exact = lowering == "table" or native_kernel(act) is not None
            out.append(Entry("activation", name, "onnxruntime", lowering, p, _onnx_ops(p), lowering == onnx_default,
                             exact))
        plan = T.plan_activation(act, in_qp, out_qp)
        for lowering in ("native", "table"):
            kernel = T.native_kernel(act, in_qp, out_qp, include_inexact=True)
            if lowering == "native" and kernel is None:
                continue
            p = d / f"{name}_{lowering}.tflite"
            p.write_bytes(activation_model(act, in_qp, out_qp, shape=TFLITE_SHAPE, lowering=lowering))
            ops = kernel.op if lowering == "native" else "BITCAST+CAST+GATHER"
            default = (plan.kind == "native") == (lowering == "native")
            exact = lowering == "table" or T.native_kernel(act, in_qp, out_qp) is not None
            out.append(Entry("activation", name, "litert", lowering, p, ops, default, exact))
    return out


def _onnx_ops(path: Path) -> str:
    import onnx

    m = onnx.load(str(path))
    ops = [n.op_type for n in m.graph.node if n.op_type not in ("Constant", "Identity", "Shape", "Reshape")]
    return "→".join(ops).replace("DequantizeLinear", "DQ").replace("QuantizeLinear", "Q")


VARIANTS = (  # label, runtime, semantics (the exporters pick the lowering that semantics' target prefers)
    ("x86 choice", "onnxruntime", "onnxruntime"),
    ("ARM choice", "onnxruntime", "onnxruntime-aarch64"),
    ("x86 choice", "litert", "tflite"),
    ("ARM choice", "litert", "tflite-aarch64"),
)


def _reference_model(model_name, act):
    """The trained checkpoint if there is one; else fresh weights with BatchNorm statistics that keep the
    signal alive (a count does not depend on the weights; default statistics shrink a fresh network's
    activations to ~1e-8, where bias codes saturate int32)."""
    import torch

    from edgeact import models
    from edgeact.errors import ModelFileError

    try:
        return models.load(model_name, act, train_if_missing=False, progress=False), ""
    except ModelFileError:
        torch.manual_seed(0)
        net = models.build(model_name, act).eval()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                with torch.no_grad():
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
        return net, " (untrained)"


def model_entries(model_names, acts, d: Path) -> list[Entry]:
    """Reference models, PTQ-calibrated on digits, converted with each semantics of VARIANTS and exported."""
    import edgeact
    from edgeact import models
    from edgeact.export import to_onnx, to_tflite

    out = []
    for model_name in model_names:
        data = models.digits_for(model_name)
        example = data.x_test[:1]
        for act in acts:
            float_model, note = _reference_model(model_name, act)
            prepared = edgeact.prepare(float_model)
            edgeact.calibrate(prepared, data.calibration_batches(), progress=False)
            for label, runtime, semantics in VARIANTS:
                conv = edgeact.convert(prepared, backend=semantics)
                p = d / f"{model_name}_{act}_{semantics}{'.onnx' if runtime == 'onnxruntime' else '.tflite'}"
                if runtime == "onnxruntime":  # the lowering of each activation, from the file's doc string
                    lowered = to_onnx(conv, example, p).graph.doc_string.split("activations: ")[1].split(", ")
                    ops = _count(v.split(": ")[1] for v in lowered)
                else:
                    to_tflite(conv, example, p)
                    ops = _count(op for op in _tflite_ops(p) if op in ("HARD_SWISH", "GATHER", "RELU", "RELU6",
                                                                        "LOGISTIC", "TANH", "LEAKY_RELU", "PRELU"))
                out.append(Entry("model", f"{model_name} {act}{note}", runtime, label, p,
                                 f"{semantics}: {ops}", label == "x86 choice"))
    return out


def _count(items) -> str:
    from collections import Counter

    return ", ".join(f"{k} ×{n}" for k, n in sorted(Counter(items).items())) or "—"


def _tflite_ops(path: Path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return [d["op_name"] for d in Interpreter(model_path=str(path))._get_ops_details()]


# ----------------------------------------------------------------------------------------------- runs

def run_batch(entries, d: Path, tag: str, cmd_prefix, env, warmup, runs, mark, insn_file=None, progress=True):
    """Run every entry in one process (host Python or the ARM root's under QEMU); fill per-entry results."""
    from edgeact.errors import TargetError
    from edgeact.targets.base import RUNNER, stream

    job = d / f"job-{tag}.json"
    specs = [{"model": str(e.path), "backend": e.runtime, "inputs": str(e.inputs),
              "out": str(d / f"out-{tag}-{i}.npz")} for i, e in enumerate(entries)]
    job.write_text(json.dumps({"warmup": warmup, "runs": runs, "mark": mark, "models": specs,
                               "result": str(d / f"result-{tag}.json")}))
    if insn_file is not None and insn_file.exists():
        insn_file.unlink()
    code, err = stream(cmd_prefix + [str(BATCH), str(RUNNER.parent), str(job)], env, len(entries), tag, progress,
                       timeout=3600)
    if code != 0:
        tail = "\n".join(err.strip().splitlines()[-8:])
        raise TargetError(f"{tag}: the batch runner failed (exit {code}):\n{tail}")
    results = json.loads((d / f"result-{tag}.json").read_text())
    counts = []
    if insn_file is not None:
        counts = [int(x) for x in insn_file.read_text().split("\n") if x.strip().isdigit()]
        if len(counts) != sum(r["marked"] for r in results):
            raise TargetError(f"{tag}: {len(counts)} instruction counts for {sum(r['marked'] for r in results)} "
                              "marked inferences; rebuild the plugin (`edgeact target setup --force`)")
    out, k = [], 0
    for i, (e, r) in enumerate(zip(entries, results)):
        with np.load(specs[i]["out"]) as z:
            outputs = [z[f"output_{j}"] for j in range(len(z.files))]
        out.append({"runtime": r["runtime"], "times_ms": [t / 1e6 for t in r["times_ns"]],
                    "insns": counts[k:k + r["marked"]], "outputs": outputs})
        k += r["marked"]
    return out


def codes_differ(a_outputs, b_outputs) -> int:
    return int(sum(np.count_nonzero(np.asarray(a) != np.asarray(b)) for a, b in zip(a_outputs, b_outputs)))


def measure_all(entries, d, cpus, v7cpus, host_runs, qemu_runs, progress=True):
    from edgeact import measure
    from edgeact.errors import TargetError
    from edgeact.targets import sysroot
    from edgeact.targets.plugin import plugin_path
    from edgeact.targets.qemu import qemu_binary, qemu_env, qemu_python_cmd

    for i, e in enumerate(entries):
        e.inputs = d / f"in-{i}.npz"
        np.savez(e.inputs, **measure.random_inputs(e.path, seed=0))
    host_env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    for e, r in zip(entries, run_batch(entries, d, "host", [sys.executable], host_env, 3, host_runs, False,
                                       progress=progress)):
        e.host = r
    for arch, arch_cpus in (("aarch64", cpus), ("armv7", v7cpus)):
        todo = [e for e in entries if arch == "aarch64" or e.runtime == "litert"]  # armv7: LiteRT only
        if not arch_cpus or not todo:
            continue
        lay = sysroot.check_root(arch)
        qemu, plugin = qemu_binary(lay.spec), plugin_path(lay.cache)
        if not plugin.exists():
            raise TargetError(f"the instruction-count plugin is missing ({plugin}); run "
                              f"`edgeact target setup qemu-{arch}`.")
        for cpu in arch_cpus:
            insn_file = d / f"insns-{arch}-{cpu}.txt"
            cmd = qemu_python_cmd(lay, cpu, qemu, insn_file, plugin)
            for e, r in zip(todo, run_batch(todo, d, f"{arch}-{cpu}", cmd, qemu_env(lay, cpu), 1, qemu_runs, True,
                                            insn_file, progress)):
                r["codes_differ"] = codes_differ(e.host["outputs"], r["outputs"])
                e.arm[f"{arch} {cpu}"] = r


def single_process_check(entry: Entry, cpu: str, runs: int) -> tuple[int, int]:
    """The batch count of one file against `edgeact bench`'s own process for it (runner.py, fresh)."""
    from edgeact import measure
    from edgeact.targets import get_target

    with np.load(entry.inputs) as z:
        data = {k: z[k] for k in z.files}
    res = measure.bench(entry.path, get_target("qemu-aarch64", cpu=cpu), warmup=1, runs=runs, inputs=data)
    return int(np.median(entry.arm[f"aarch64 {cpu}"]["insns"])), res.insns["median"]


# --------------------------------------------------------------------------------------------- tables

def _m(n) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.0f} k"


def insn(e: Entry, col: str) -> int | None:
    r = e.arm.get(col)
    return int(np.median(r["insns"])) if r and r["insns"] else None


def cheapest_table(entries, ref_col: str) -> str:
    """Per activation and runtime: the x86 default, the cheapest exact lowering on ARM, and the ratios."""
    rows = ["| activation | runtime | exporter's default (x86) | native | table | table ÷ native (ARM insns) | "
            "host ms native / table | cheapest exact on ARM | same as x86 default? |", "|" + "---|" * 9]
    by = {}
    for e in entries:
        if e.group == "activation":
            by.setdefault((e.name, e.runtime), {})[e.lowering] = e
    for (name, runtime), lw in by.items():
        nat, tab = lw.get("native"), lw["table"]
        default = next((k for k, e in lw.items() if e.default), "?")
        n_i, t_i = (insn(nat, ref_col) if nat else None), insn(tab, ref_col)
        exact = {"table": t_i} | ({"native": n_i} if nat and nat.exact else {})
        best = min(exact, key=exact.get)
        cells = [name, "ORT" if runtime == "onnxruntime" else "LiteRT", default,
                 "—" if nat is None else f"{nat.ops}: {_m(n_i)}" + ("" if nat.exact else " (inexact)"), _m(t_i),
                 f"{t_i / n_i:.1f}×" if nat else "—",
                 " / ".join(f"{np.median(e.host['times_ms']):.3f}" if e else "—" for e in (nat, tab)),
                 f"**{best}**", "yes" if best == default else "**NO**"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def counts_table(entries, cols) -> str:
    head = ["file", "runtime", "lowering", "ops"] + cols + ["host median ms"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in entries:
        mark = " (default)" if e.default and e.group == "activation" else ""
        cells = [e.name, e.host["runtime"], e.lowering + mark, e.ops]
        cells += [f"{insn(e, c):,}" if insn(e, c) is not None else "—" for c in cols]
        cells.append(f"{np.median(e.host['times_ms']):.3f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def slowdown_table(entries, col) -> str:
    rows = ["| file | runtime | lowering | host median ms | emulated median ms | emulated min ms | slowdown (median) |",
            "|" + "---|" * 7]
    for e in entries:
        r = e.arm.get(col)
        if not r:
            continue
        hm, am = np.median(e.host["times_ms"]), np.median(r["times_ms"])
        rows.append(f"| {e.name} | {e.host['runtime']} | {e.lowering} | {hm:.3f} | {am:.2f} | "
                    f"{min(r['times_ms']):.2f} | {am / hm:.0f}× |")
    return "\n".join(rows) + "\n"


def parity_table(entries, cols) -> str:
    rows = ["| file | runtime | lowering | " + " | ".join(cols) + " |", "|" + "---|" * (3 + len(cols))]
    for e in entries:
        cells = []
        for c in cols:
            r = e.arm.get(c)
            size = sum(np.size(o) for o in e.host["outputs"])
            cells.append("—" if r is None else "equal" if r["codes_differ"] == 0 else
                         f"**{r['codes_differ']} of {size}**")
        rows.append(f"| {e.name} | {e.host['runtime']} | {e.lowering} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activations", default="all", help="comma-separated, or 'all' (the registry minus identity)")
    ap.add_argument("--models", default="mnv3s", help="reference models, comma-separated, or 'none'")
    ap.add_argument("--model-activations", default="relu,relu6,hard_swish,swish,hard_mish")
    ap.add_argument("--host-runs", type=int, default=30)
    ap.add_argument("--qemu-runs", type=int, default=2, help="timed inferences per file under QEMU (counts are "
                    "deterministic; more only steadies the emulated milliseconds)")
    ap.add_argument("--cpus", default="cortex-a53,cortex-a72,cortex-a76")
    ap.add_argument("--armv7-cpus", default="cortex-a7,cortex-a15")
    ap.add_argument("--slowdown-cpu", default="cortex-a72")
    ap.add_argument("--keep", metavar="DIR", help="write the model files here (default: a temporary directory)")
    ap.add_argument("--write", metavar="MD", help="also write the tables to this Markdown file")
    args = ap.parse_args(argv)

    from edgeact.activations import names
    from edgeact.targets import get_target

    d = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="edgeact-bench-arm-"))
    d.mkdir(parents=True, exist_ok=True)
    acts = [a for a in names() if a != "identity"] if args.activations == "all" else \
        [a for a in args.activations.split(",") if a]
    model_names = [] if args.models == "none" else [m for m in args.models.split(",") if m]
    cpus = [c for c in args.cpus.split(",") if c]
    v7cpus = [c for c in args.armv7_cpus.split(",") if c] if get_target("qemu-armv7").status().available else []
    t0 = time.monotonic()
    print(f"building files in {d} ...", file=sys.stderr)
    entries = activation_entries(acts, d)
    entries += model_entries(model_names, [a for a in args.model_activations.split(",") if a], d)
    t_build = time.monotonic() - t0
    measure_all(entries, d, cpus, v7cpus, args.host_runs, args.qemu_runs)
    s = args.slowdown_cpu if args.slowdown_cpu in cpus else cpus[0]
    check = single_process_check(entries[0], s, args.qemu_runs)
    elapsed = time.monotonic() - t0

    cols = [f"aarch64 {c}" for c in cpus] + [f"armv7 {c}" for c in v7cpus]
    ref = f"aarch64 {s}"
    runtimes = sorted({(e.host["runtime"]) for e in entries})
    arm_runtimes = sorted({r["runtime"] for e in entries for r in e.arm.values()})
    acts_e = [e for e in entries if e.group == "activation"]
    model_e = [e for e in entries if e.group == "model"]
    out = [f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} ({os.cpu_count()} cores, shared), QEMU "
           f"user-mode 7.2, one thread, in {elapsed / 60:.1f} min ({t_build:.0f} s building files). Host runtimes: "
           f"{', '.join(runtimes)}; ARM: {', '.join(arm_runtimes)}. Activation inputs: int8 codes, uniform, "
           f"{'×'.join(map(str, ONNX_SHAPE))} (ONNX) / {'×'.join(map(str, TFLITE_SHAPE))} (TFLite), s_in = {S_IN}, "
           "s_out = 0.05 (sigmoid 1/256, tanh 1/128: the TFLite spec's). Counts: median of "
           f"{args.qemu_runs} inferences after one warm-up, in one QEMU process per CPU model; the same file in its "
           f"own `edgeact bench` process: {check[1]:,} vs {check[0]:,} here ({entries[0].name} "
           f"{entries[0].runtime} {entries[0].lowering}, {s}).\n"]
    out.append(f"### Which lowering is cheapest on ARM (instructions per inference, qemu-aarch64 -cpu {s})\n")
    out.append(cheapest_table(entries, ref))
    out.append("'inexact': edgeact never exports this native op, because its codes are not reproducible (ORT: "
               "position-dependent float kernels; LiteRT LEAKY_RELU: XNNPACK's and the builtin kernel's differ); "
               "the count is there for comparison. Exact lowerings only compete for 'cheapest'.\n")
    out.append("### Instructions per inference, every CPU model: activations\n")
    out.append(counts_table(acts_e, cols))
    if model_e:
        out.append("### Instructions per inference, every CPU model: reference models (one 16×16 digit)\n")
        out.append(counts_table(model_e, cols))
    out.append(f"### Emulation slowdown (qemu-aarch64 -cpu {s} ÷ host, same file, same runtime version)\n")
    out.append(slowdown_table(entries, ref))
    out.append("Emulated milliseconds are noisy (±30% between runs, and this machine is shared) and are not ARM "
               "latencies; the ratio only says how much patience emulation needs.\n")
    out.append("### Same codes on ARM as on the host? (differing output elements)\n")
    out.append(parity_table(entries, cols))
    text = "\n".join(out)
    print(text)
    if args.write:
        p = Path(args.write)
        notes = ""
        if p.exists() and NOTES_MARK in p.read_text():
            notes = p.read_text().split(NOTES_MARK, 1)[1]  # hand-written findings survive a re-run
        tmpf = p.with_name(p.name + ".tmp")
        tmpf.write_text("# ARM under QEMU: which int8 lowering is cheapest, emulation slowdown, parity\n\n"
                        "Tables written by `python benchmarks/bench_emulation.py --write benchmarks/RESULTS-arm.md`"
                        ".\n\n" + text + "\n" + NOTES_MARK + notes)
        os.replace(tmpf, p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
