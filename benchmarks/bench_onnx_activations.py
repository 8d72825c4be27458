"""Speed of each int8 activation lowering in onnxruntime, side by side with the float op and a memcpy.

Per activation on a 1×16×112×112 tensor, one thread, all variants timed in one run, interleaved
round by round (so that a busy neighbour slows every variant alike):

  float   the float32 ONNX op (or the float subgraph edgeact would put between DQ and Q)
  native  DQ → op → Q in int8 (what ORT makes of it: QLinearSigmoid / QLinearLeakyRelu tables, or float)
  table   Cast → GatherElements over the 256 output codes (edgeact's exact table lowering)
  gather  Cast → Add → Gather (the obvious table lowering, for comparison)
  memcpy  numpy copy of the int8 tensor's bytes (a floor no elementwise op can beat)

Prints the table and writes benchmarks/RESULTS-onnx.md. Run: .venv/bin/python benchmarks/bench_onnx_activations.py
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeact import QuantParams, int8_table
from edgeact.activations import bind, names
from edgeact.export.onnxruntime.lowering import choose_lowering, has_native_op, lower_activation
from edgeact.export.onnxruntime.natives import NATIVES
from edgeact.export.onnxruntime.graph import ELEM_TYPE, GraphBuilder
from edgeact.export.onnxruntime.arithmetic import default_lowering, native_kernel

SHAPE = (1, 16, 112, 112)
IN_QP = QuantParams(8.0 / 255, -1)  # about [-4.2, 4.3]
RESULTS = Path(__file__).with_name("RESULTS-onnx.md")


def session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def out_qparams(act) -> QuantParams:
    y = act.on_codes(IN_QP.dequantize(IN_QP.codes()))
    return QuantParams.from_range(float(np.min(y)), float(np.max(y)))


# The float baseline uses ONNX's single op where there is one (edgeact's int8 lowering of these is
# written as separate ops so that every CPU rounds alike).
FLOAT_OPS = {"hard_swish": lambda g, x, p: g.node("HardSwish", [x]),
             "hard_sigmoid": lambda g, x, p: g.node("HardSigmoid", [x], alpha=float(p["alpha"]), beta=float(p["beta"]))}


def float_model(act):
    g = GraphBuilder("float")
    x = g.add_input("x", "float32", SHAPE)
    p = {k: v for k, v in act.params.items()}
    y = FLOAT_OPS[act.name](g, x, p) if act.name in FLOAT_OPS else NATIVES[act.name].op(g, x, p, len(SHAPE))
    g.add_output(y, "y", "float32", SHAPE)
    return g.model()


def int8_model(act, out_qp, lowering):
    g = GraphBuilder(lowering)
    x = g.add_input("x", "int8", SHAPE)
    y, _ = lower_activation(g, x, act, IN_QP, out_qp, lowering=lowering, rank=len(SHAPE), require_exact=False)
    g.add_output(y, "y", "int8", SHAPE)
    return g.model()


def gather_model(act, out_qp):
    table = int8_table(act, IN_QP, out_qp, backend="onnxruntime").astype(np.int8)
    g = GraphBuilder("gather")
    x = g.add_input("x", "int8", SHAPE)
    i = g.node("Add", [g.node("Cast", [x], to=ELEM_TYPE["int32"]), g.constant(np.int32(128), "offset")])
    g.add_output(g.node("Gather", [g.constant(table, "table"), i], axis=0), "y", "int8", SHAPE)
    return g.model()


def cases():
    out = [(n, bind(n)) for n in names()]
    out.append(("gelu tanh", bind("gelu", approximate="tanh")))
    out.append(("prelu 16 slopes", bind("prelu", weight=np.linspace(-0.3, 0.3, SHAPE[1]))))
    try:
        from edgeact.pwl import fit_pwl
    except ImportError:  # the PWL module is separate
        return out
    out.append(("pwl swish K=8", fit_pwl("swish", segments=8).bind()))
    return out


def measure(rounds: int, only: list[str] | None):
    rng = np.random.default_rng(0)
    x8 = rng.integers(-128, 128, SHAPE).astype(np.int8)
    xf = IN_QP.dequantize(x8).astype(np.float32)
    dst = np.empty_like(x8)
    rows = []
    for label, act in cases():
        if only and label not in only:
            continue
        out_qp = out_qparams(act)
        variants = {}
        if has_native_op(act):
            variants["float"] = (session(float_model(act)), {"x": xf})
            variants["native"] = (session(int8_model(act, out_qp, "native")), {"x": x8})
        variants["table"] = (session(int8_model(act, out_qp, "table")), {"x": x8})
        if act.channels is None:
            variants["gather"] = (session(gather_model(act, out_qp)), {"x": x8})
        times = {k: [] for k in [*variants, "memcpy"]}
        for _ in range(5):
            for s, feed in variants.values():
                s.run(None, feed)
        for _ in range(rounds):
            for k, (s, feed) in variants.items():
                t = time.perf_counter()
                s.run(None, feed)
                times[k].append(time.perf_counter() - t)
            t = time.perf_counter()
            np.copyto(dst, x8)
            times["memcpy"].append(time.perf_counter() - t)
        med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        exact_native = has_native_op(act) and native_kernel(act) is not None
        chosen = default_lowering(act)
        assert chosen == choose_lowering(act, IN_QP, out_qp, None)
        rows.append((label, med, exact_native, chosen))
        print(f"{label:16s} " + "  ".join(f"{k} {v:6.3f}" for k, v in med.items()), flush=True)
    return rows


def render(rows, rounds: int) -> str:
    lines = [
        "# int8 activations in onnxruntime: lowerings side by side",
        "",
        f"`benchmarks/bench_onnx_activations.py`: 1×16×112×112, one thread, median of {rounds} interleaved rounds; "
        f"onnxruntime {ort.__version__}, {platform.machine()}, Python {platform.python_version()}. "
        "Times in ms; ratios against the float op and against a memcpy of the int8 tensor (200,704 bytes). "
        f"Load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine): "
        "absolute times move between runs, the ratios within a row are measured side by side.",
        "",
        "| activation | float | native int8 | table (GatherElements) | Gather | memcpy | native/float | table/float "
        "| table/memcpy | native exact? | default |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, m, exact, chosen in rows:
        f = m.get("float")
        n = m.get("native")
        cell = lambda v: f"{v:.3f}" if v is not None else "—"  # noqa: E731
        ratio = lambda a, b: f"{a / b:.1f}×" if a is not None and b is not None else "—"  # noqa: E731
        lines.append(
            f"| {label} | {cell(f)} | {cell(n)} | {cell(m['table'])} | {cell(m.get('gather'))} | {cell(m['memcpy'])} | "
            f"{ratio(n, f)} | {ratio(m['table'], f)} | {ratio(m['table'], m['memcpy'])} | "
            f"{'yes' if exact else ('no' if n is not None else '—')} | {chosen} |")
    lines += [
        "",
        "*native*: DQ → ONNX op(s) → Q; hard-sigmoid and hard-swish as Mul/Add/Clip(/Mul), because ORT's "
        "aarch64 build fuses HardSigmoid's α·x + β into one multiply-add (tests/test_onnx_arm.py). "
        "*native exact?*: edgeact reproduces ORT's kernel code for code (tests/test_onnx_activations.py). "
        "Elu, Selu, Softplus, Mish and erf-GELU are not: ORT computes them with a vectorized body and a scalar "
        "tail (Eigen's exp, std::erff), so equal inputs can give different outputs depending on their position; "
        "they are exported as tables. GELU (tanh) is reproduced on x86-64 but exported as a table by default: "
        "its C·x·x + B may be contracted on aarch64 too. *default*: what `to_onnx` picks — the native op where "
        "it is exact on every CPU and faster, else the table.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--only", nargs="*", help="activation labels to run (default: all)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not write RESULTS-onnx.md")
    args = ap.parse_args(argv)
    rows = measure(args.rounds, args.only)
    text = render(rows, args.rounds)
    print(text)
    if not args.no_write and not args.only:
        tmp = RESULTS.with_suffix(".md.tmp")
        tmp.write_text(text)
        tmp.replace(RESULTS)
        print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
