"""ONNX Runtime's native activation lowerings: one registry, keyed by the activation's registry name.

An activation ORT has an op for is registered here once: the float32 subgraph written between DQ and Q
(`op`), ORT's float32 computation of it reproduced step by step (`kernel`; None where ORT's kernel is not
reproducible), and on which CPUs it is the default lowering (`native_on`; else the exact table). An
activation that is not registered is always a table, which is exact for any function — so a new
activation needs a line here only if ORT has a faster op for it.

Why the defaults (benchmarks/RESULTS-onnx.md, RESULTS-arm.md): native where ORT's kernel is reproducible
and measured faster than the table. Swish and hard-Mish need two to four float ops between DQ and Q and
measure the same as the table on x86, which then wins: one op and ideal (float64) values; on ARM the float
ops take 1.1× (swish) and 1.4× (hard-mish) fewer instructions than the table. GELU (tanh) is reproduced on
x86-64, but its C·x·x + B may become a fused multiply-add in ORT's aarch64 build (as HardSigmoid's does,
measured): a table is exact on every CPU. Elu, Selu, Softplus, Mish and erf-GELU have ONNX ops whose ORT
kernels are not reproducible (Eigen exp / std::erff with a scalar tail): never chosen by default, only on
request with require_exact=False (the benchmark times them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from edgeact.activations.selu import SELU_ALPHA, SELU_SCALE
from edgeact.errors import UnsupportedError
from edgeact.export.onnxruntime.arithmetic import F32, mlas_logistic, mlas_tanh


@dataclass(frozen=True)
class OrtNative:
    """ORT's native lowering of one activation."""

    op: Callable[..., str]  # (graph, x_float, params, rank) → y_float: the ops between DQ and Q
    kernel: Callable[..., np.ndarray] | None = None  # (x float32, **params) → ORT's float32 result
    native_on: tuple[str, ...] = ()  # CPUs ('x86', 'arm') where it is the default lowering
    exact_when: Callable[[Mapping[str, Any]], bool] | None = None  # parameters where `kernel` holds
    per_channel: bool = False  # the op broadcasts per-channel parameters (PRelu)


NATIVES: dict[str, OrtNative] = {}


def register_native(name: str, op, kernel=None, *, native_on=(), exact_when=None, per_channel=False) -> OrtNative:
    """Register ORT's native lowering for the activation `name` (its registry name)."""
    if not all(c in ("x86", "arm") for c in native_on):
        raise UnsupportedError(f"native_on takes 'x86' and/or 'arm', got {native_on!r}")
    NATIVES[name] = OrtNative(op, kernel, tuple(native_on), exact_when, per_channel)
    return NATIVES[name]


# ---- ORT's float32 arithmetic of the native ops (x: float32, DQ output) ----------------------------


def _hard_sigmoid_f32(x, alpha=1.0 / 6.0, beta=0.5):
    # Mul(α) → Add(β) → Clip(0, 1), each rounded (edgeact exports it as separate ops, see onnx_activation).
    return np.maximum(np.minimum((x * F32(alpha)).astype(F32) + F32(beta), F32(1)), F32(0)).astype(F32)


def _hard_swish_f32(x):
    # x · hard_sigmoid(x; 1/6, 0.5), which is also what ORT makes of a HardSwish op on x86-64.
    return (x * _hard_sigmoid_f32(x)).astype(F32)


def _swish_f32(x, beta=1.0):
    # Sigmoid(β·x) · x (ORT fuses it into QuickGelu, which computes the same).
    xb = x if float(beta) == 1.0 else (x * F32(beta)).astype(F32)
    return (x * mlas_logistic(xb)).astype(F32)


def _gelu_tanh_f32(x):
    # onnxruntime/core/providers/cpu/tensor/gelu.cc: x·(C·x·x + B) → MlasComputeTanh → 0.5·x·(t + 1).
    b, c = F32(0.7978845608028654), F32(0.035677408136300125)
    t = mlas_tanh((x * (((c * x).astype(F32) * x).astype(F32) + b)).astype(F32))
    return ((F32(0.5) * x).astype(F32) * (t + F32(1)).astype(F32)).astype(F32)


def _hard_mish_f32(x):
    # Add(x, 2) → Clip(0, 2) → Mul(x, ·) → Mul(0.5): each step rounded to float32.
    t = np.clip((x + F32(2)).astype(F32), F32(0), F32(2))
    return (F32(0.5) * (x * t).astype(F32)).astype(F32)


def _prelu_f32(x, weight=0.25):
    w = np.asarray(weight, dtype=F32)
    if w.size > 1:
        w = w.reshape(-1, 1)  # per channel: rows are channels
        x = np.broadcast_to(x, (w.shape[0], x.shape[-1]))
    return np.where(x > 0, x, (x * w).astype(F32)).astype(F32)


# ---- the ops (graph builders) -----------------------------------------------------------------
# Each builder appends the float32 subgraph between DQ and Q: (graph, x_float, params, rank) → y_float.

def _clip(g, x, lo, hi):
    return g.node("Clip", [x, g.constant(F32(lo), "clip_min"), g.constant(F32(hi), "clip_max")])


def _prelu_op(g, x, p, rank):
    w = np.asarray(p["weight"], dtype=F32)
    if w.size == 1:
        # One slope: LeakyRelu computes the same (x ≥ 0 ? x : αx; 0 either way) and ORT fuses it into
        # QLinearLeakyRelu, while its broadcasting PRelu kernel is ~4× slower than even the table.
        return g.node("LeakyRelu", [x], "prelu", alpha=float(w.reshape(-1)[0]))
    return g.node("PRelu", [x, g.constant(w.reshape((w.size,) + (1,) * max(rank - 2, 0)), "prelu_slope")])


def _swish_op(g, x, p, rank):
    beta = float(p.get("beta", 1.0))
    xb = x if beta == 1.0 else g.node("Mul", [x, g.constant(F32(beta), "swish_beta")])
    return g.node("Mul", [x, g.node("Sigmoid", [xb])], "swish")


def _hard_sigmoid_op(g, x, p, rank):
    # Not the HardSigmoid op: ORT's aarch64 build contracts its α·x + β into one fused multiply-add
    # (measured on qemu-aarch64: 1 code in 51,200 moves), x86-64 rounds twice. Separate ONNX ops are
    # separate kernels, rounded separately on every CPU.
    t = g.node("Add", [g.node("Mul", [x, g.constant(F32(p.get("alpha", 1 / 6)), "alpha")]),
                       g.constant(F32(p.get("beta", 0.5)), "beta")])
    return _clip(g, t, 0.0, 1.0)


def _hard_swish_op(g, x, p, rank):
    # x · hard_sigmoid(x) as ORT computes HardSwish (HardSigmoid(1/6, 0.5) · x), but portable: see above.
    return g.node("Mul", [x, _hard_sigmoid_op(g, x, {}, rank)], "hard_swish")


def _hard_mish_op(g, x, p, rank):
    t = _clip(g, g.node("Add", [x, g.constant(F32(2), "two")]), 0.0, 2.0)
    return g.node("Mul", [g.node("Mul", [x, t]), g.constant(F32(0.5), "half")], "hard_mish")


# ---- the registry --------------------------------------------------------------------------------

_BOTH = ("x86", "arm")
register_native("identity", lambda g, x, p, r: x, lambda x: x, native_on=_BOTH)
register_native("relu", lambda g, x, p, r: g.node("Relu", [x]), lambda x: np.maximum(x, F32(0)), native_on=_BOTH)
register_native("relu6", lambda g, x, p, r: _clip(g, x, 0.0, 6.0), lambda x: np.clip(x, F32(0), F32(6)),
                native_on=_BOTH)
register_native("hard_tanh", lambda g, x, p, r: _clip(g, x, p["min_val"], p["max_val"]),
                lambda x, min_val=-1.0, max_val=1.0: np.clip(x, F32(min_val), F32(max_val)), native_on=_BOTH)
# QLinearLeakyRelu's table: v >= 0 ? v : alpha * v.
register_native("leaky_relu", lambda g, x, p, r: g.node("LeakyRelu", [x], alpha=float(p["negative_slope"])),
                lambda x, negative_slope=0.01: np.where(x >= 0, x, (x * F32(negative_slope)).astype(F32)),
                native_on=_BOTH)
register_native("prelu", _prelu_op, _prelu_f32, native_on=_BOTH, per_channel=True)
register_native("sigmoid", lambda g, x, p, r: g.node("Sigmoid", [x]), mlas_logistic, native_on=_BOTH)
register_native("tanh", lambda g, x, p, r: g.node("Tanh", [x]), mlas_tanh, native_on=_BOTH)
register_native("hard_sigmoid", _hard_sigmoid_op, _hard_sigmoid_f32, native_on=_BOTH)
register_native("hard_swish", _hard_swish_op, _hard_swish_f32, native_on=_BOTH)
register_native("swish", _swish_op, _swish_f32, native_on=("arm",))
register_native("hard_mish", _hard_mish_op, _hard_mish_f32, native_on=("arm",))
# erf GELU: AVX-512 body with a std::erff tail, position dependent; the tanh form is reproduced
register_native("gelu", lambda g, x, p, r: g.node("Gelu", [x], approximate=str(p.get("approximate", "none"))),
                lambda x, approximate="tanh": _gelu_tanh_f32(x), exact_when=lambda p: p.get("approximate") == "tanh")
register_native("elu", lambda g, x, p, r: g.node("Elu", [x], alpha=float(p["alpha"])))
register_native("selu", lambda g, x, p, r: g.node("Selu", [x], alpha=float(SELU_ALPHA), gamma=float(SELU_SCALE)))
register_native("softplus", lambda g, x, p, r: g.node("Softplus", [x]))
register_native("mish", lambda g, x, p, r: g.node("Mish", [x]))
