"""Speed of each int8 activation lowering in LiteRT, side by side with the float op and a memcpy.

Per activation on a 1×112×112×16 (NHWC) tensor, one thread, all variants timed in one run,
interleaved round by round (so that a busy neighbour slows every variant alike):

  float          the float32 TFLite builtin (or the float builtins composing the function)
  native         the int8 TFLite builtin, with LiteRT's default XNNPACK delegate
  native nodeleg the same, optimized builtin kernels only (BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  table          BITCAST → CAST int16 → GATHER of the 256 output codes (edgeact's exact table)
  memcpy         numpy copy of the int8 tensor's bytes (a floor no elementwise op can beat)

"native exact?" checks, at the benchmark's parameters, that LiteRT's native op (with and without
XNNPACK) returns exactly edgeact's table for its kernel. "auto" is what edgeact emits
(`plan_activation`): the native op where it is exact everywhere and faster, else the table.

A second table checks whole models: the small CNN of the ONNX issue (conv → bn → act → depthwise conv
→ act + residual → mean → linear) with every activation, converted with backend="tflite", exported
with to_tflite and verified on 100 random inputs at every tensor in LiteRT's three kernel sets — each
against the matching semantics ('tflite', 'tflite-builtin', 'tflite-reference'), and the two
no-delegate kernel sets also against 'tflite' (what XNNPACK's arithmetic gets wrong there).

Prints the tables and writes benchmarks/RESULTS-tflite.md.
Run: .venv/bin/python benchmarks/bench_tflite_activations.py [--rounds 60] [--only relu6 mish] [--no-parity]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgeact import QuantParams
from edgeact.export.litert import interpreter as rt
from edgeact.activations import bind, names
from edgeact.errors import UnsupportedError
from edgeact.export.litert.lowering import activation_model
from edgeact.export.litert.builder import ModelBuilder
from edgeact.fileio import atomic_write
from edgeact.functional import SELU_ALPHA, SELU_SCALE
from edgeact.pwl import fit_pwl
from edgeact.export.litert import arithmetic as T

SHAPE = (1, 112, 112, 16)
IN_QP = QuantParams(8.0 / 255, -1)  # about [-4.2, 4.3]
RESULTS = Path(__file__).with_name("RESULTS-tflite.md")


def out_qparams(act) -> QuantParams:
    if act.name == "sigmoid":
        return T.LOGISTIC_OUTPUT
    if act.name == "tanh":
        return T.TANH_OUTPUT
    y = act.on_codes(IN_QP.dequantize(IN_QP.codes()))
    return QuantParams.from_range(float(np.min(y)), float(np.max(y)))


# ---- float graphs: the builtin, or the builtins that compose the function -------------------------

class _Float:
    def __init__(self):
        self.b = ModelBuilder("float")
        self.x = self.b.tensor("x", SHAPE, "float32")
        self.n = 0

    def const(self, v):
        return self.b.constant(f"c{self.n}", np.array([v], np.float32), "float32")

    def op(self, name, *inputs, options=None):
        self.n += 1
        y = self.b.tensor(f"t{self.n}", SHAPE, "float32")
        self.b.op(name, list(inputs), [y], options, version=1)
        return y

    def mul(self, a, b):
        return self.op("MUL", a, b, options=schema.MulOptionsT())

    def add(self, a, b):
        return self.op("ADD", a, b, options=schema.AddOptionsT())


def float_model(act) -> bytes | None:
    f, x, p = _Float(), None, dict(act.params)
    x = f.x
    name = act.name
    simple = {"sigmoid": "LOGISTIC", "tanh": "TANH", "relu": "RELU", "relu6": "RELU6", "hard_swish": "HARD_SWISH"}
    if name in simple:
        y = f.op(simple[name], x)
    elif name == "elu" and p["alpha"] == 1.0:
        y = f.op("ELU", x)
    elif name == "hard_tanh" and (p["min_val"], p["max_val"]) == (-1.0, 1.0):
        y = f.op("RELU_N1_TO_1", x)
    elif name == "leaky_relu":
        o = schema.LeakyReluOptionsT()
        o.alpha = float(p["negative_slope"])
        y = f.op("LEAKY_RELU", x, options=o)
    elif name == "prelu" and np.size(p["weight"]) == 1:
        y = f.op("PRELU", x, f.const(float(np.asarray(p["weight"]).reshape(-1)[0])))
    elif name == "gelu":
        o = schema.GeluOptionsT()
        o.approximate = p["approximate"] == "tanh"
        y = f.op("GELU", x, options=o)
    elif name == "swish":
        y = f.mul(x, f.op("LOGISTIC", f.mul(x, f.const(p["beta"])) if p["beta"] != 1.0 else x))
    elif name == "hard_sigmoid":
        y = f.op("RELU_0_TO_1", f.add(f.mul(x, f.const(p["alpha"])), f.const(p["beta"])))
    elif name == "hard_mish":
        gate = f.op("MINIMUM", f.op("RELU", f.add(x, f.const(2.0))), f.const(2.0))
        y = f.mul(f.mul(x, gate), f.const(0.5))
    elif name in ("softplus", "mish"):
        sp = f.op("LOG", f.add(f.op("EXP", x), f.const(1.0)))
        y = sp if name == "softplus" else f.mul(x, f.op("TANH", sp))
    elif name == "selu":
        r, e = f.op("RELU", x), f.op("ELU", x)
        y = f.add(f.mul(r, f.const(SELU_SCALE * (1 - SELU_ALPHA))), f.mul(e, f.const(SELU_SCALE * SELU_ALPHA)))
    else:
        return None
    return f.b.finish([x], [y])


def cases():
    out = [(n, bind(n)) for n in names() if n != "identity"]
    out.append(("gelu tanh", bind("gelu", approximate="tanh")))
    out.append(("pwl swish K=8", fit_pwl("swish", segments=8).bind()))
    return out


def native_exact(act, out_qp, model) -> str:
    kernel = T.native_kernel(act, IN_QP, out_qp, include_inexact=True)
    codes = IN_QP.codes().astype(np.int8).reshape(1, 16, 16, 1)
    small = activation_model(act, IN_QP, out_qp, shape=(1, 16, 16, 1), lowering="native")
    verdict = []
    for mode in ("xnnpack", "builtin"):
        got = rt.run(rt.load(small, mode), [codes])[0].reshape(-1)
        if not np.array_equal(got, T.native_table(kernel, IN_QP, out_qp)):
            verdict.append(mode)
    return "yes" if not verdict else "no (" + ", ".join(verdict) + ")"


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
        fm = float_model(act)
        if fm is not None:
            variants["float"] = (rt.load(fm, "xnnpack"), xf)
        exact = "—"
        try:
            native = activation_model(act, IN_QP, out_qp, shape=SHAPE, lowering="native")
            variants["native"] = (rt.load(native, "xnnpack"), x8)
            variants["native nodeleg"] = (rt.load(native, "builtin"), x8)
            exact = native_exact(act, out_qp, native)
        except UnsupportedError:
            pass
        variants["table"] = (rt.load(activation_model(act, IN_QP, out_qp, shape=SHAPE, lowering="table"), "xnnpack"), x8)
        if T.plan_activation(act, IN_QP, out_qp).kind == "chain":
            variants["chain"] = (rt.load(activation_model(act, IN_QP, out_qp, shape=SHAPE), "xnnpack"), x8)
        for interp, feed in variants.values():
            interp.set_tensor(interp.get_input_details()[0]["index"], feed)
            interp.invoke()
        times = {k: [] for k in [*variants, "memcpy"]}
        for _ in range(rounds):
            for k, (interp, _) in variants.items():
                t = time.perf_counter()
                interp.invoke()
                times[k].append(time.perf_counter() - t)
            t = time.perf_counter()
            np.copyto(dst, x8)
            times["memcpy"].append(time.perf_counter() - t)
        med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        plan = T.plan_activation(act, IN_QP, out_qp)
        auto = plan.op.lower() if plan.kind == "native" else plan.kind
        rows.append((label, med, exact, auto))
        print(f"{label:16s} " + "  ".join(f"{k} {v:6.3f}" for k, v in med.items()) + f"  exact {exact}  auto {auto}",
              flush=True)
    return rows


def model_parity() -> list[tuple[str, dict]]:
    """Per activation: codes compared and codes that differ in each LiteRT kernel set (SmallCNN, 100 inputs)."""
    import tempfile
    import warnings

    import torch
    from torch import nn

    import edgeact
    from edgeact.export.litert.writer import to_tflite
    from edgeact.export.litert.run import verify_tflite

    class SmallCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.act1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
            self.dw, self.act2 = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU()
            self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

        def forward(self, x):
            y = self.act1(self.bn(self.conv(x)))
            y = self.act2(self.dw(y)) + y
            return self.fc(torch.flatten(self.pool(y), 1))

    rows = []
    x = torch.randn(100, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 1.5
    with tempfile.TemporaryDirectory() as tmp:
        for name in names():
            torch.manual_seed(0)
            p = edgeact.prepare(SmallCNN().eval(), activations={"relu": name})
            edgeact.calibrate(p, torch.randn(64, 3, 8, 8) * 1.5, progress=False)
            c = edgeact.convert(p, backend="tflite")
            path = Path(tmp) / f"{name}.tflite"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                to_tflite(c, x[:1], path)
            result = {}
            for mode in rt.MODES:
                for against in (None, "tflite") if mode != "xnnpack" else (None,):
                    key = mode if against is None else f"{mode}/{against}"
                    try:
                        r = verify_tflite(path, c, x, mode=mode, backend=against)
                        result[key] = (r.codes_compared, r.mismatches, r.max_lsb)
                    except Exception as exc:  # noqa: BLE001 — BUILTIN_REF has no ELU: reported, not fatal
                        result[key] = str(exc).split(":")[0]
            rows.append((name, result))
            print(f"parity {name:14s} {result}", flush=True)
    return rows


def render_parity(rows) -> list[str]:
    lines = [
        "## Whole models: the converted model vs LiteRT, code for code",
        "",
        "The small CNN of the ONNX issue with every activation, `convert(backend=\"tflite\")` → `to_tflite` → "
        "`verify_tflite` on 100 random inputs, every tensor compared (input codes, each conv, activation, add, "
        "mean, linear, output). One file, three LiteRT kernel sets, each compared with the converted model "
        "computing in the matching semantics (`verify_tflite` re-targets it), and the two kernel sets without "
        "the delegate also with the XNNPACK arithmetic of backend=\"tflite\". Codes that differ / codes "
        "compared (max difference in LSB):",
        "",
        "| activation | XNNPACK (LiteRT default) vs `tflite` | builtin kernels vs `tflite-builtin` | builtin kernels "
        "vs `tflite` | reference kernels vs `tflite-reference` | reference kernels vs `tflite` |",
        "|---|---|---|---|---|---|",
    ]

    def cell(v):
        if isinstance(v, str):
            return v
        compared, bad, lsb = v
        return f"{bad:,} / {compared:,}" + (f" ({lsb} LSB)" if bad else "")

    columns = ("xnnpack", "builtin", "builtin/tflite", "reference", "reference/tflite")
    for name, result in rows:
        lines.append(f"| {name} | " + " | ".join(cell(result[k]) for k in columns) + " |")
    lines += [
        "",
        "With the XNNPACK delegate (LiteRT's default) QUANTIZE, CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, "
        "MUL, MEAN and DEQUANTIZE requantize in float32 (round-half-even of float(acc)·scale): backend=\"tflite\". "
        "Without it, TFLite's own kernels requantize with fixed-point multipliers, and near ties a few codes come "
        "out one step away and propagate — reproduced by backend=\"tflite-builtin\" (the optimized kernels, "
        "whose NEON loops LiteRT runs on x86 too: VQRDMULH and a rounding shift with ties up in whole vector "
        "blocks, gemmlowp's ties-away scalar rounding in the leftover channels or elements and in ADD and MUL, "
        "MEAN with a float zero-point bias, QUANTIZE's tail dividing in double) and "
        "backend=\"tflite-reference\" (BUILTIN_REF: gemmlowp double rounding, FULLY_CONNECTED rounding "
        "double(acc)·scale half away, QUANTIZE dividing in float32); see edgeact/semantics/tflite_builtin.py. "
        "Where an ADD or MUL result passes the int16 range (output scales far below the inputs'), the optimized "
        "kernels' vector loops wrap it: reproduced for MUL, refused for ADD. "
        "BUILTIN_REF has no int8 ELU kernel, so the ELU model does not load there. The activations themselves "
        "are exact in all three (table above and tests/test_tflite_activations.py).",
        "",
    ]
    return lines


def render(rows, rounds: int) -> str:
    import ai_edge_litert

    version = getattr(ai_edge_litert, "__version__", "2.x")
    head = ("| activation | float | native (XNNPACK) | native (no delegate) | table | chain | memcpy | native/float | "
            "table/float | table/native | table/chain | table/memcpy | native exact? | auto |")
    lines = [
        "# int8 activations in LiteRT: lowerings side by side",
        "",
        f"`benchmarks/bench_tflite_activations.py`: 1×112×112×16 NHWC, one thread, median of {rounds} interleaved "
        f"rounds; ai-edge-litert {version}, {platform.machine()}, Python {platform.python_version()}. Times in ms; "
        f"memcpy copies the int8 tensor's {int(np.prod(SHAPE)):,} bytes.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]

    def f(v):
        return "—" if v is None else f"{v:.3f}"

    def r(a, b):
        return "—" if a is None or b is None else f"{a / b:.1f}×"

    for label, med, exact, auto in rows:
        fl, na, nn, ta, ch, mc = (med.get(k) for k in ("float", "native", "native nodeleg", "table", "chain", "memcpy"))
        best_native = None if na is None else min(na, nn)
        lines.append(f"| {label} | {f(fl)} | {f(na)} | {f(nn)} | {f(ta)} | {f(ch)} | {f(mc)} | {r(na, fl)} | "
                     f"{r(ta, fl)} | {r(ta, best_native)} | {r(ta, ch)} | {r(ta, mc)} | {exact} | {auto} |")
    lines += [
        "",
        "*native exact?*: at these parameters LiteRT's native int8 op returns exactly edgeact's model of that "
        "kernel, with the XNNPACK delegate and without (tests/test_tflite_activations.py checks 200 random "
        "parameter pairs per kernel). XNNPACK replaces int8 LEAKY_RELU with an 8-bit-multiplier kernel that "
        "rounds differently, and LOGISTIC/TANH/ELU with its own tables that differ from the builtin ones at "
        "~0.1 % of parameter pairs. *auto*: what edgeact emits (`plan_activation`) — a LUT kernel (LOGISTIC, "
        "TANH, ELU, GELU) where it is exact, since it runs 10–50× faster than the table; the table for the "
        "requantizing kernels (RELU*, PRELU, HARD_SWISH), whose scalar loops are slower than the GATHER, and "
        "for everything without an exact native kernel. Inside a model, RELU/RELU6 fuse into the preceding "
        "CONV_2D / FULLY_CONNECTED for free where the clamp is exact.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--only", nargs="*", help="activation labels to run (default: all)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS-tflite.md alone")
    p.add_argument("--no-parity", action="store_true", help="skip the whole-model parity table")
    args = p.parse_args(argv)
    rows = measure(args.rounds, args.only)
    text = render(rows, args.rounds)
    if not args.no_parity:
        text += "\n" + "\n".join(render_parity(model_parity()))
    print(text)
    if not args.no_write and not args.only:
        atomic_write(RESULTS, text)
        print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
