"""Lowering candidates for one int8 activation in LiteRT: native kernel, GATHER table, or a chain of
int8 ops that the XNNPACK delegate runs — and the search that picks the fastest eligible one.

Why: a GATHER table runs outside XNNPACK (BITCAST/CAST/GATHER are not delegated), so every table splits
the delegated graph into another partition and costs ~0.5 ms on a 1×112×112×16 tensor, where XNNPACK's
int8 LOGISTIC, MUL or ADD take ~0.01–0.02 ms (benchmarks/RESULTS-tflite.md, RESULTS-peers.md).

A chain is exact by construction: the LiteRT backends' arithmetic *defines* the activation's 256-entry
table as what the chain computes — every intermediate requantization reproduced with XNNPACK's
arithmetic (ADD: 21-bit multipliers, MUL: fp32 requantization, or the rndnu NEON kernel for
'litert:aarch64'; LOGISTIC / ELU: XNNPACK's own tables; LEAKY_RELU: its 8-bit multipliers, measured
against LiteRT: `xnnpack_leaky_relu`), and with the builtin kernels' for 'litert:builtin' /
'litert:reference' (the same file run without the delegate). The decision is made once, at convert
(the backend's `plan_activation` records lowering 'chain'), and is the same for every LiteRT backend,
so one file serves all of them; the file's metadata and the verify report name each activation's ops.
The converted model looks the codes up in that table, so file == converted model holds code for code;
what changes is only how far the table is from the ideal (float64, correctly rounded) one, and a chain
is eligible only if it stays within `TOLERANCE_LSB` of it at every input code (accuracy vs float is
then measured on whole models: benchmarks/RESULTS-peers.md).

| activation            | chain (all inside XNNPACK)                                      |
|-----------------------|-----------------------------------------------------------------|
| swish (β = 1)         | LOGISTIC → σ (1/256, −128); MUL(x, σ)                            |
| hard_swish, hard_mish | MUL(x, a) → u (s_x·a, z_x); ADD(u, b) → g (1/255, −128), which  |
|                       | saturates exactly at [0, 1]; MUL(x, g)  (a, b = 1/6, 1/2 and 1/2, 1) |
| hard_sigmoid          | MUL(x, α); ADD(·, β) → output (its int8 range clamps), or → g, then MUL(g, 1) |
| leaky_relu            | LEAKY_RELU with XNNPACK's arithmetic, where XNNPACK takes the scales |
| selu                  | ELU → e; LEAKY_RELU(α) → l; MUL(l, λ)                             |
| mish                  | ADD(x, d) → LOGISTIC → s; MUL(s, b); ADD(·, x) → y; LOGISTIC(y) → g; MUL(x, g) |
| sigmoid, tanh         | LOGISTIC / TANH → their spec-fixed output (1/256, −128) / (1/128, 0); MUL(·, 1) → output |

mish: XNNPACK takes no int8 EXP or LOG (they run outside it, measured), so tanh∘softplus is built from
LOGISTIC: logit(tanh(softplus x)) = x + softplus(x − ln 2) exactly, and softplus(x − ln 2) ≈ b·σ(x + d)
where the outer σ is not saturated (natives.py, `_mish_chain`; b, d refitted per pair). It is an
approximation, so it is eligible only where its exact codes stay within the tolerance: every one of the
mnv3s checkpoint's 18 mish pairs, ~90 % of random realistic pairs (the rest — mostly negative inputs with
a fine output scale, where even the exact gate at LOGISTIC's 1/256 misses — keep the table).

Eligibility is checked in XNNPACK's x86 and aarch64 arithmetic both (the aarch64 MUL rounds otherwise),
since one file serves both.

The fastest candidate is chosen by a rule measured once on this kind of host (benchmarks/
bench_vs_peers.py and bench_tflite_activations.py) rather than by timing at every convert: every op
outside XNNPACK costs more than any delegated chain (a table is 25–65× a delegated op and splits the
partition: mnv3s 0.063 ms with tables, 0.018 ms with chains), then fewer ops win.

Limits: under 'litert:builtin' LiteRT's optimized ADD rounds some ties in its vector loop in a way
that semantics does not reproduce (measured on plain ADDs too), so a chain with an ADD may be one code
off there; XNNPACK (LiteRT's default) and the reference kernels are exact. BUILTIN_REF has no int8 ELU,
so a selu chain does not load there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from edgeact.activations import BoundActivation
from edgeact.errors import UnsupportedError
from edgeact.qparams import QuantParams

# A chain's table may differ from the ideal (float64, round-half-even) table by at most this many
# output steps at any input code.
TOLERANCE_LSB = 1


def _qp(scale: float, zero_point: int) -> QuantParams:
    """Intermediate parameters as the file stores them (float32 scale), so every kernel set's arithmetic
    sees the same numbers as edgeact's."""
    return QuantParams(float(np.float32(scale)), int(zero_point))


GATE_QP = _qp(1.0 / 255.0, -128)  # [0, 1] exactly: int8 saturation is the clamp
LOGISTIC_QP = _qp(1.0 / 256.0, -128)
# Ops the XNNPACK delegate of ai-edge-litert 2.3 takes as int8 (measured: tests/test_tflite_lowering.py,
# test_delegated_is_measured). Not taken as int8, so they run outside: EXP, LOG, NEG, ABS, MINIMUM, MAXIMUM,
# SQUARED_DIFFERENCE, HARD_SWISH, GELU; SQUARE, SIN and COS have no int8 kernel at all.
DELEGATED = frozenset({"ADD", "SUB", "MUL", "LOGISTIC", "TANH", "ELU", "LEAKY_RELU", "QUANTIZE", "DEQUANTIZE",
                       "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN"})


@dataclass(frozen=True)
class Step:
    """One int8 op of a chain: `op` applied to the previous step's output (the chain input for the first)
    and `operand` — 'x' (the chain input), a float constant, or None (unary); result in `out_qp`."""

    op: str
    operand: Any
    out_qp: QuantParams
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Chain:
    name: str
    steps: tuple[Step, ...]

    @property
    def ops(self) -> list[str]:
        return [s.op for s in self.steps]


def constant_qparams(c: float) -> tuple[QuantParams, int]:
    """A one-element int8 constant for c: code·2^-e exactly where c is such a number (0.5, 1, …: then a
    chain's tie, e.g. x = 0 in a gate, is a true tie that every kernel set rounds alike), else code ±127
    with scale |c|/127 in float32."""
    if c == 0:
        return QuantParams(1.0, 0), 0
    for e in range(-7, 40):
        code = c * 2.0 ** e
        if abs(code) > 127:
            break
        if 64 <= abs(code) and code == int(code):
            return QuantParams(2.0 ** -e, 0), int(code)
    return QuantParams(float(np.float32(abs(c) / 127.0)), 0), 127 if c > 0 else -127


# ---- XNNPACK arithmetic not in the model ops of TFLiteSemantics -----------------------------------

def xnnpack_leaky_relu_multipliers(in_qp: QuantParams, out_qp: QuantParams, alpha: float) -> tuple[int, int] | None:
    """XNNPACK's qs8 LEAKY_RELU (xnn_init_qs8_lrelu params): 8-bit multipliers round(256·s_in/s_out) and
    round(256·α·s_in/s_out), float32; None where the delegate refuses the scales (measured: both ratios
    must lie in [1/256, 128]; LiteRT then runs its builtin kernel, which is slow and rounds otherwise)."""
    f = np.float32
    pos = f(f(in_qp.scale) / f(out_qp.scale))
    neg = f(pos * f(alpha))
    margin = f(1.001)  # stay clear of the boundary
    if not (f(1 / 256) * margin <= pos <= f(128) / margin and f(1 / 256) * margin <= abs(neg) <= f(128) / margin):
        return None
    return int(np.rint(f(256) * pos)), int(np.rint(f(256) * neg))


def xnnpack_leaky_relu(q: torch.Tensor, in_qp: QuantParams, out_qp: QuantParams, alpha: float) -> torch.Tensor:
    """y = ((x − z_in)·m + 256·z_out + 128) >> 8, m the multiplier of x's sign (scalar-andxor kernel)."""
    mults = xnnpack_leaky_relu_multipliers(in_qp, out_qp, alpha) or _refuse("LEAKY_RELU")
    x = q.long() - in_qp.zero_point
    m = torch.where(x >= 0, torch.tensor(mults[0]), torch.tensor(mults[1]))
    y = torch.div(x * m + (out_qp.zero_point << 8) + 128, 256, rounding_mode="floor")
    return y.clamp(out_qp.qmin, out_qp.qmax)


def _refuse(op: str):
    raise UnsupportedError(f"XNNPACK does not take {op} at these scales")


def mul_in_range(qa: QuantParams, qb: QuantParams, out: QuantParams) -> bool:
    """XNNPACK's qs8 MUL takes s_a·s_b/s_out in [2^-16, 2^8)."""
    f = np.float32
    scale = f(f(f(qa.scale) * f(qb.scale)) / f(out.scale))
    return 2.0 ** -16 <= scale < 2.0 ** 8


def chain_codes(chain: Chain, in_qp: QuantParams, sem) -> np.ndarray:
    """The output code of `chain` for every input code −128..127, in `sem`'s arithmetic
    (its chain_add / chain_mul / chain_lut / chain_leaky_relu: XNNPACK's, or a kernel set's own).
    UnsupportedError where XNNPACK refuses an op's scales (it would run outside the delegate)."""
    from edgeact.export.litert import arithmetic as T

    x = torch.arange(-128, 128)
    cur, cur_qp = x, in_qp
    for step in chain.steps:
        if step.op in ("ADD", "MUL"):
            if isinstance(step.operand, str):
                other, other_qp = x, in_qp
            else:
                other_qp, code = constant_qparams(float(step.operand))
                other = torch.full_like(x, code)
            if step.op == "ADD":
                T.add_parameters(cur_qp, other_qp, step.out_qp)  # raises where XNNPACK refuses
                cur = sem.chain_add(cur, cur_qp, other, other_qp, step.out_qp)
            else:
                if not mul_in_range(cur_qp, other_qp, step.out_qp):
                    raise UnsupportedError("XNNPACK's MUL does not take these scales")
                cur = sem.chain_mul(cur, cur_qp, other, other_qp, step.out_qp)
        elif step.op in T.XNNPACK_LUT_OPS:
            lut = torch.from_numpy(sem.chain_lut(step.op, cur_qp, step.out_qp))
            cur = lut[cur.long() + 128]
        elif step.op == "LEAKY_RELU":
            xnnpack_leaky_relu_multipliers(cur_qp, step.out_qp, step.options["alpha"]) or _refuse("LEAKY_RELU")
            cur = sem.chain_leaky_relu(cur, cur_qp, step.out_qp, step.options["alpha"])
        else:
            raise AssertionError(f"no arithmetic for chain op {step.op}")
        cur_qp = step.out_qp
    return cur.long().numpy().astype(np.int64)


# ---- the candidates ------------------------------------------------------------------------------

def _gate_chain(name: str, a: float, b: float, in_qp: QuantParams, out_qp: QuantParams, times_x: bool) -> list[Chain]:
    u_qp = _qp(in_qp.scale * a, in_qp.zero_point)
    first = Step("MUL", a, u_qp)
    if times_x:
        return [Chain(name, (first, Step("ADD", b, GATE_QP), Step("MUL", "x", out_qp)))]
    chains = [Chain(name, (first, Step("ADD", b, out_qp)))]
    if (out_qp.scale, out_qp.zero_point) != (GATE_QP.scale, GATE_QP.zero_point):
        chains.append(Chain(name + "+requantize", (first, Step("ADD", b, GATE_QP), Step("MUL", 1.0, out_qp))))
    return chains


def _range(qp: QuantParams) -> tuple[float, float]:
    return float(qp.dequantize(np.array(qp.qmin))), float(qp.dequantize(np.array(qp.qmax)))


def chain_candidates(act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams) -> list[Chain]:
    """Every chain that could compute `act` at these parameters (eligibility is checked by `search`)."""
    from edgeact.export.litert.natives import NATIVES  # per activation name (natives.py)

    entry = NATIVES.get(act.name)
    if entry is None or entry.chains is None:
        return []
    return entry.chains(dict(act.params), in_qp, out_qp)


@dataclass(frozen=True)
class Candidate:
    """One way to lower: kind 'native' | 'chain' | 'table', the ops it emits, whether XNNPACK runs all of
    them, its codes, and why it is (not) eligible."""

    kind: str
    ops: tuple[str, ...]
    codes: np.ndarray | None
    eligible: bool
    reason: str = ""
    chain: Chain | None = None

    @property
    def outside_xnnpack(self) -> int:
        return sum(op not in DELEGATED for op in self.ops)

    @property
    def cost(self) -> tuple[int, int]:
        """Measured ordering: ops outside XNNPACK dominate (each one a slow loop and a partition split)."""
        return self.outside_xnnpack, len(self.ops)


def ideal_codes(act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
    from edgeact.arithmetic import Arithmetic

    return Arithmetic().activation_table(act, in_qp, out_qp)


def candidates(act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams, sem=None) -> list[Candidate]:
    """Table, and every chain with its codes (in `sem`'s arithmetic, default 'tflite') and eligibility."""
    from edgeact.export.litert import arithmetic as T

    sem = sem or T.ARITHMETIC
    ideal = ideal_codes(act, in_qp, out_qp)
    out = [Candidate("table", ("BITCAST", "CAST", "GATHER"), ideal, True, "exact table")]
    if act.channels is not None or in_qp.dtype != "int8" or out_qp.dtype != "int8":
        return out
    # one file serves x86 and aarch64 (whose XNNPACK MUL rounds otherwise): within tolerance on both
    from edgeact.export.litert.arithmetic_aarch64 import ARITHMETIC as AARCH64

    also = [AARCH64] if sem is T.ARITHMETIC else []
    for chain in chain_candidates(act, in_qp, out_qp):
        try:
            codes = chain_codes(chain, in_qp, sem)
            worst = max(int(np.max(np.abs(c - ideal))) for c in [codes] + [chain_codes(chain, in_qp, a) for a in also])
        except UnsupportedError as exc:
            out.append(Candidate("chain", tuple(chain.ops), None, False, str(exc), chain))
            continue
        ok = worst <= TOLERANCE_LSB
        out.append(Candidate("chain", tuple(chain.ops), codes, ok,
                             f"{chain.name}: max {worst} LSB from the ideal table", chain))
    return out


def search(act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams, sem=None) -> Candidate | None:
    """The cheapest eligible chain, or None when no chain beats the plan of `tflite.plan_activation`."""
    chains = [c for c in candidates(act, in_qp, out_qp, sem) if c.kind == "chain" and c.eligible]
    return min(chains, key=lambda c: c.cost) if chains else None


__all__ = ["Step", "Chain", "Candidate", "candidates", "search", "chain_codes", "chain_candidates",
           "TOLERANCE_LSB", "xnnpack_leaky_relu", "constant_qparams", "DELEGATED"]
