"""LiteRT's native lowerings of activations: one registry, keyed by the activation's registry name.

An activation LiteRT can run without a GATHER table is registered here once: `kernel` picks the int8
TFLite builtin that computes it at given parameters (its arithmetic is reproduced in arithmetic.py,
`native_table`), `chains` lists the chains of int8 ops XNNPACK runs for it (chains.py; exact by
construction, eligible within one step of the ideal table). `plan_activation` chooses among them and the
table. An activation that is not registered is a GATHER table, which is exact for any function — so a new
activation needs a line here only if LiteRT has a kernel or a chain for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from edgeact.activations.selu import SELU_ALPHA, SELU_SCALE
from edgeact.export.litert.arithmetic import (
    LOGISTIC_OUTPUT, TANH_OUTPUT, HardSwishParams, NativeKernel, _same,
)
from edgeact.export.litert.chains import LOGISTIC_QP, Chain, Step, _gate_chain, _qp, _range
from edgeact.qparams import QuantParams

Params = Mapping[str, Any]


@dataclass(frozen=True)
class LiteRTNative:
    """LiteRT's ways to run one activation other than a table."""

    # (params, in_qp, out_qp, include_inexact) → the builtin computing it there, or None
    kernel: Callable[[Params, QuantParams, QuantParams, bool], NativeKernel | None] | None = None
    # (params, in_qp, out_qp) → candidate chains of int8 ops inside XNNPACK
    chains: Callable[[Params, QuantParams, QuantParams], list[Chain]] | None = None


NATIVES: dict[str, LiteRTNative] = {}


def register_native(name: str, kernel=None, chains=None) -> LiteRTNative:
    """Register LiteRT's native kernel and/or chains for the activation `name` (its registry name)."""
    NATIVES[name] = LiteRTNative(kernel, chains)
    return NATIVES[name]


# ---- kernels -------------------------------------------------------------------------------------

_HARD_TANH_OPS = {(-1.0, 1.0): "RELU_N1_TO_1", (0.0, 1.0): "RELU_0_TO_1"}


def _hard_tanh(p, i, o, inexact):
    bounds = (float(p["min_val"]), float(p["max_val"]))
    return NativeKernel(_HARD_TANH_OPS[bounds], {"bounds": bounds}) if bounds in _HARD_TANH_OPS else None


def _leaky_relu(p, i, o, inexact):
    # XNNPACK's LEAKY_RELU uses an 8-bit multiplier and disagrees with the builtin kernel at most scales,
    # so only the exact table (or the chain below, XNNPACK's arithmetic) is the same under both;
    # include_inexact returns it anyway (benchmarks measure it).
    return NativeKernel("LEAKY_RELU", {"alpha": float(p["negative_slope"])}) if inexact else None


# ---- chains --------------------------------------------------------------------------------------

def _selu_chain(p, in_qp, out_qp):
    lo, hi = _range(in_qp)
    hi = max(hi, 1e-6)
    e_lo, l_lo = max(lo, -1.0), max(lo, -1.0) * SELU_ALPHA
    e_qp = _qp((hi - e_lo) / 255.0, round(-128 - e_lo / ((hi - e_lo) / 255.0)))
    l_qp = _qp((hi - l_lo) / 255.0, round(-128 - l_lo / ((hi - l_lo) / 255.0)))
    return [Chain("elu>leaky_relu*scale", (Step("ELU", None, e_qp),
                                           Step("LEAKY_RELU", None, l_qp, {"alpha": SELU_ALPHA}),
                                           Step("MUL", SELU_SCALE, out_qp)))]


# mish = x·g, g = tanh(softplus x). XNNPACK takes no int8 EXP or LOG (measured: chains.DELEGATED), but
# logit g = x + softplus(x − ln 2) exactly, and softplus(x − ln 2) ≈ b·σ(x + d) wherever the outer σ is
# not saturated; so g ≈ σ(x + b·σ(x + d)) — 0.07 of an output step in float at b, d = 3.01, −1.904 (an
# 8-bit output over [−7, 9]). `_mish_fit` refits b, d to one pair's codes; the chain's exact codes then
# decide eligibility.
MISH_B, MISH_D = 3.0, -1.9
_SIGMOID_SATURATES = 6.5  # |v| beyond which LOGISTIC's int8 output (1/256, −128) no longer changes


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _mish_fit(in_qp: QuantParams, out_qp: QuantParams) -> tuple[float, float]:
    """b, d of the smallest worst-case error of x·σ(x + b·σ(x + d)) against mish, in output steps, over
    this input's codes (a grid: cheap, and the chain's codes are checked exactly anyway)."""
    x = in_qp.dequantize(in_qp.codes())
    g = np.tanh(np.logaddexp(0.0, x))
    b = np.linspace(1.5, 4.0, 51)[:, None, None]
    d = np.linspace(-2.6, -1.0, 65)[None, :, None]
    err = np.max(np.abs(_sigmoid(x + b * _sigmoid(x + d)) - g) * np.abs(x), axis=-1)
    k = np.unravel_index(np.argmin(err), err.shape)
    return round(float(b[k[0], 0, 0]), 4), round(float(d[0, k[1], 0]), 4)


def _covering(values) -> QuantParams:
    """Parameters of an intermediate over the range its values take (with 0: the zero point is int8)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    qp = QuantParams.from_range(lo, max(hi, lo + 1e-6))
    return _qp(qp.scale, qp.zero_point)


def _mish_chain(p, in_qp, out_qp):
    """ADD(x, d) → p; LOGISTIC → s (1/256, −128); MUL(s, b) → u; ADD(u, x) → y; LOGISTIC → g; MUL(x, g).
    Intermediates cover the values they take at these input codes (clipped where σ saturates)."""
    x = in_qp.dequantize(in_qp.codes())
    chains = []
    for b, d in dict.fromkeys([(MISH_B, MISH_D), _mish_fit(in_qp, out_qp)]):
        v = np.clip(x + d, -_SIGMOID_SATURATES, _SIGMOID_SATURATES)
        s = LOGISTIC_QP.dequantize(np.clip(np.round(_sigmoid(v) / LOGISTIC_QP.scale) - 128, -128, 127))
        u = b * s
        y = np.clip(x + u, -_SIGMOID_SATURATES, _SIGMOID_SATURATES)
        chains.append(Chain(f"mish(b={b:g},d={d:g})", (
            Step("ADD", d, _covering(v)), Step("LOGISTIC", None, LOGISTIC_QP), Step("MUL", b, _covering(u)),
            Step("ADD", "x", _covering(y)), Step("LOGISTIC", None, LOGISTIC_QP), Step("MUL", "x", out_qp))))
    return chains


def _swish_chain(p, in_qp, out_qp):
    if float(p.get("beta", 1.0)) != 1.0:
        return []
    return [Chain("logistic*x", (Step("LOGISTIC", None, LOGISTIC_QP), Step("MUL", "x", out_qp)))]


def _requantized(op: str, fixed: QuantParams, out_qp: QuantParams) -> list[Chain]:
    """The kernel whose output parameters the TFLite spec fixes, requantized to `out_qp` by a MUL by 1."""
    if _same(out_qp, fixed):
        return []
    return [Chain(f"{op.lower()}+requantize", (Step(op, None, fixed), Step("MUL", 1.0, out_qp)))]


def _hard_sigmoid_chain(p, in_qp, out_qp):
    if float(p["alpha"]) <= 0:
        return []
    return _gate_chain("gate", float(p["alpha"]), float(p["beta"]), in_qp, out_qp, False)


# ---- the registry --------------------------------------------------------------------------------

register_native("relu", kernel=lambda p, i, o, x: NativeKernel("RELU", {"bounds": (0.0, math.inf)}))
register_native("relu6", kernel=lambda p, i, o, x: NativeKernel("RELU6", {"bounds": (0.0, 6.0)}))
register_native("hard_tanh", kernel=_hard_tanh)
register_native("prelu",
                kernel=lambda p, i, o, x: NativeKernel("PRELU", {"alpha": np.asarray(p["weight"], np.float64)}))
# HARD_SWISH refuses some scales
register_native("hard_swish",
                kernel=lambda p, i, o, x: NativeKernel("HARD_SWISH") if HardSwishParams.of(i, o).supported else None,
                chains=lambda p, i, o: _gate_chain("gate*x", 1 / 6, 0.5, i, o, True))
# LOGISTIC's and TANH's outputs are fixed by the TFLite quantization spec; ELU has no alpha
# (at other output parameters: the kernel, then a MUL by 1 that requantizes — a chain, eligible like any)
register_native("sigmoid", kernel=lambda p, i, o, x: NativeKernel("LOGISTIC") if _same(o, LOGISTIC_OUTPUT) else None,
                chains=lambda p, i, o: _requantized("LOGISTIC", LOGISTIC_OUTPUT, o))
register_native("tanh", kernel=lambda p, i, o, x: NativeKernel("TANH") if _same(o, TANH_OUTPUT) else None,
                chains=lambda p, i, o: _requantized("TANH", TANH_OUTPUT, o))
register_native("elu", kernel=lambda p, i, o, x: NativeKernel("ELU") if float(p["alpha"]) == 1.0 else None)
register_native("gelu", kernel=lambda p, i, o, x: NativeKernel("GELU", {"approximate": p["approximate"] == "tanh"}))
register_native("leaky_relu", kernel=_leaky_relu, chains=lambda p, i, o: [
    Chain("leaky_relu", (Step("LEAKY_RELU", None, o, {"alpha": float(p["negative_slope"])}),))])
register_native("swish", chains=_swish_chain)
register_native("hard_mish", chains=lambda p, i, o: _gate_chain("gate*x", 0.5, 1.0, i, o, True))
register_native("hard_sigmoid", chains=_hard_sigmoid_chain)
register_native("selu", chains=_selu_chain)
register_native("mish", chains=_mish_chain)
