"""Activation chains for onnxruntime: a few ops ORT runs in its integer kernels, instead of a table.

Why: the table lowering (Cast → GatherElements) and the float lowerings (DQ → Mul/Add/Clip/… → Q) run
outside ORT's integer kernels, and its layout transformer cannot carry the NHWC Transposes of QLinearConv
through a GatherElements (benchmarks/RESULTS-peers.md). QLinearMul, QLinearSigmoid and Clip on codes are
elementwise kernels it carries them through.

| activation            | chain (uint8 codes between the ops)                                         |
|-----------------------|-----------------------------------------------------------------------------|
| swish (β = 1)         | QLinearSigmoid → σ (1/255, 0); QLinearMul(x, σ)                              |
| hard_swish, hard_mish | QLinearMul(x, a) → gate codes n·(a·x + b) at (1/n, n·b), whose uint8          |
|                       | saturation clamps; QLinearMul(x, gate). a, b = 1/2, 1 (hard_mish): n = 255,  |
|                       | exact. a, b = 1/6, 1/2 (hard_swish): n = 255 with the offset 127.5 rounded   |
|                       | to 127 or 128 where that stays within tolerance, else n = 254 and Clip(0, 254) |
| hard_sigmoid (1/6, ½) | the hard-swish gate, then QLinearMul(gate, 1) into the output's parameters    |

Exact by construction, as the LiteRT chains: the arithmetic defines the activation's table as what the chain
computes — QLinearSigmoid's table (MlasComputeLogistic on the dequantized codes, MlasQuantizeLinear) and
QLinearMul's float32 steps (`qlinear_mul`). A chain is eligible when its table stays within TOLERANCE_LSB of
the ideal one and when it is the same on every CPU: MLAS evaluates the logistic with FMA on x86-64 with FMA3
and on aarch64 and without it on older x86-64 (SSE), and QLinearMul with FMA on aarch64 only, so each step is
computed both ways for the 256 input codes and the chain is taken only if they agree.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from edgeact.activations import BoundActivation, bind
from edgeact.arithmetic import Arithmetic
from edgeact.export.onnxruntime.arithmetic import (dequantize_f32, mlas_logistic, qlinear_mul_everywhere,
                                                   qlinear_mul_ratio, quantize_f32)
from edgeact.qparams import QuantParams

F32 = np.float32
TOLERANCE_LSB = 1  # as the LiteRT chains: at most one output step from the ideal table at any input code
SIGMOID_QP = QuantParams(float(F32(1 / 255)), 0, "uint8")
GATES = {"hard_swish": (1 / 6, 0.5), "hard_mish": (0.5, 1.0), "hard_sigmoid": (1 / 6, 0.5)}  # clamp(a·x + b, 0, 1)


@dataclass(frozen=True)
class OrtChain:
    """A chain and the codes it computes (int64, indexed by input code − qmin)."""

    name: str
    ops: tuple[str, ...]
    table: np.ndarray
    a: float = 0.0  # gate chains: the multiplier, its whole-code offset n·b and n
    offset: int = 0
    n: int = 0


def _shift(qp: QuantParams) -> int:
    """int8 codes run as uint8 inside onnxruntime (+128, zero point +128: the same real values)."""
    return 128 if qp.dtype == "int8" else 0


def _swish(in_qp: QuantParams, out_qp: QuantParams) -> OrtChain | None:
    x = in_qp.codes().astype(np.int64)
    xf = dequantize_f32(x, in_qp)
    sig = [quantize_f32(mlas_logistic(xf, fused=f), SIGMOID_QP) for f in (True, False)]
    if not np.array_equal(*sig):
        return None
    y = qlinear_mul_everywhere((x - in_qp.zero_point) * sig[0],
                               qlinear_mul_ratio(in_qp.scale, SIGMOID_QP.scale, out_qp.scale),
                               out_qp.zero_point + _shift(out_qp))
    if y is None:
        return None
    return OrtChain("swish", ("QLinearSigmoid", "QLinearMul"), y - _shift(out_qp))


def _gate_candidates(b: float) -> list[tuple[int, int]]:
    """(n, offset) for the gate codes n·(a·x + b) ≈ rint(n·a·x) + offset, cheapest first: with n = 255 the uint8
    saturation is the whole clamp (no Clip op); exact when 255·b is a whole code, else rounded either way
    (the search keeps it only if the table stays within tolerance); n = 254 then Clip(0, 254) is exact for
    b = 1/2."""
    out = [(255, int(255 * b))] if float(255 * b).is_integer() else [(255, int(np.floor(255 * b))),
                                                                        (255, int(np.ceil(255 * b)))]
    return out + [(254, int(254 * b))] if float(254 * b).is_integer() else out


def _gate(name: str, in_qp: QuantParams, out_qp: QuantParams, n: int, offset: int) -> OrtChain | None:
    a, _ = GATES[name]
    x = in_qp.codes().astype(np.int64)
    # QLinearMul(x, a): a is the code 1 of a constant with scale f32(a) and zero point 0.
    g = qlinear_mul_everywhere(x - in_qp.zero_point, qlinear_mul_ratio(in_qp.scale, F32(a), F32(1 / n)), offset)
    if g is None:
        return None
    g = np.minimum(g, n)  # Clip on the codes (a no-op when n = 255)
    # hard_swish / hard_mish: QLinearMul(x, gate); hard_sigmoid: the gate requantized, QLinearMul(gate, 1)
    other, scale = (x - in_qp.zero_point, in_qp.scale) if name != "hard_sigmoid" else (1, 1.0)
    y = qlinear_mul_everywhere(other * g, qlinear_mul_ratio(scale, F32(1 / n), out_qp.scale),
                               out_qp.zero_point + _shift(out_qp))
    if y is None:
        return None
    ops = ("QLinearMul", "Clip", "QLinearMul") if n < 255 else ("QLinearMul", "QLinearMul")
    return OrtChain(name, ops, y - _shift(out_qp), a=float(F32(a)), offset=offset, n=n)


@functools.lru_cache(maxsize=1024)
def _search(name: str, in_key: tuple, out_key: tuple) -> OrtChain | None:
    in_qp, out_qp = QuantParams(*in_key), QuantParams(*out_key)
    ideal = Arithmetic().activation_table(bind(name), in_qp, out_qp)
    if name == "swish":
        found = [_swish(in_qp, out_qp)]
    else:
        found = [_gate(name, in_qp, out_qp, n, offset) for n, offset in _gate_candidates(GATES[name][1])]
    for chain in found:  # cheapest first
        if chain is not None and int(np.max(np.abs(chain.table - ideal))) <= TOLERANCE_LSB:
            return chain
    return None


def search(act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams) -> OrtChain | None:
    """The chain for `act` with these parameters, if there is an eligible one (see the module docstring)."""
    if act.definition is None or act.name not in ("swish", *GATES) or act.channels is not None:
        return None
    if act.params != bind(act.name).params:  # swish with β ≠ 1, a hard-sigmoid with other α, β
        return None
    if in_qp.per_channel or out_qp.per_channel or {in_qp.dtype, out_qp.dtype} - {"int8", "uint8"}:
        return None
    key = lambda qp: (float(qp.scale), int(qp.zero_point), qp.dtype)  # noqa: E731
    return _search(act.name, key(in_qp), key(out_qp))


__all__ = ["OrtChain", "search", "SIGMOID_QP", "TOLERANCE_LSB"]
