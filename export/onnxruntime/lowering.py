"""One int8 activation in ONNX: integer ops, a native op between DequantizeLinear and QuantizeLinear, or a table.

Chosen at convert, cheapest exact first:
- 'clip': the table is a clamp of the input codes with equal parameters in and out (relu, relu6, hard_tanh):
  an integer Clip on the codes, or nothing when they are already in range.
- 'chain': a few ops onnxruntime runs in its integer kernels (QLinearSigmoid, QLinearMul; export/onnxruntime/
  chains.py), where their codes are the same on every CPU.
- 'native': DQ → Relu / Clip / LeakyRelu / PRelu / Sigmoid / Tanh / Gelu / … → Q. ONNX Runtime runs these
  in float32 (fusing Sigmoid and LeakyRelu into its QLinear table kernels); `edgeact.export.onnxruntime.arithmetic`
  reproduces the codes. Hard-sigmoid and hard-swish are written as Mul/Add/Clip(/Mul): the HardSigmoid op's
  α·x + β is one fused multiply-add in ORT's aarch64 build and two roundings on x86-64, the separate ops are
  the same everywhere.
- 'table': Cast(int32) → GatherElements over the 256 output codes. Exact by construction for any table (a PWL
  stand-in, an activation ORT has no reproducible kernel for, a model converted with another semantics).
  GatherElements, not Gather: ORT's Gather copies element by element through a generic path and is ~7× slower
  here (benchmarks/RESULTS-onnx.md). ORT's layout transform cannot carry its Transposes through it.
"""
from __future__ import annotations

import numpy as np

from edgeact.activations import BoundActivation, bind
from edgeact.backend import ActivationPlan
from edgeact.errors import ExportError, UnsupportedError
from edgeact.qparams import QuantParams
from edgeact.export.onnxruntime.arithmetic import ARITHMETIC as ORT, default_lowering, native_kernel
from edgeact.export.onnxruntime.arithmetic_aarch64 import ARITHMETIC as ORT_ARM, prefers_native_on_arm
from edgeact.export.onnxruntime.natives import NATIVES
from edgeact.export.onnxruntime import chains
from edgeact.export.onnxruntime.graph import ELEM_TYPE, GraphBuilder, check, save_atomic

LOWERINGS = ("native", "table", "chain", "clip")
F32 = np.float32


def has_native_op(act: BoundActivation) -> bool:
    """Whether ONNX has an op for `act` as bound (per-channel parameters only for PRelu)."""
    entry = NATIVES.get(act.name) if act.definition is not None else None
    if entry is None:
        return False
    return act.channels is None or entry.per_channel


def _scalar_params(act: BoundActivation) -> dict:
    out = {}
    for k, v in act.params.items():
        if isinstance(v, (np.ndarray, list, tuple)) and np.size(v) == 1:
            v = float(np.asarray(v).reshape(-1)[0])
        out[k] = v
    return out


# ----------------------------------------------------------------------------------- lowering

def choose_lowering(act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams, table: np.ndarray | None,
                    requested: str | None = None, *, require_exact: bool = True, where: str = "",
                    prefer: str = "x86") -> str:
    """'native' or 'table' for `act`, checking that the choice reproduces `table` code for code.

    requested None: native when ORT's native op computes exactly `table` (the onnxruntime
    semantics' table of a natively lowered activation), else the table; prefer='arm' also lowers
    natively what ARM runs faster than the table (natives.py: `native_on` 'arm'), again only if
    exact. 'native' on request fails when ONNX has no such op or (with require_exact) when its codes
    would differ from `table`.
    """
    at = f" at {where!r}" if where else ""
    if requested not in (None, *LOWERINGS):
        raise UnsupportedError(f"unknown lowering {requested!r}{at}; choose 'native', 'table', 'chain', 'clip' "
                               "or None (automatic)")
    if prefer not in ("x86", "arm"):
        raise UnsupportedError(f"prefer must be 'x86' or 'arm', got {prefer!r}")
    if requested == "table":
        return "table"
    if requested in (None, "clip") and clip_bounds(table, in_qp, out_qp) is not None:
        return "clip"
    if requested == "clip":
        raise UnsupportedError(f"{act.name!r}{at} is not a clamp of its input codes with these parameters; use "
                               "lowering=None or 'table'")
    if requested in (None, "chain"):
        chain = chains.search(act, in_qp, out_qp)
        if chain is not None and (table is None or np.array_equal(chain.table, table)):
            return "chain"
        if requested == "chain":
            raise UnsupportedError(f"{act.name!r}{at} has no onnxruntime chain with these quantization parameters "
                                   "(export/onnxruntime/chains.py says which activations have one, and when it is "
                                   "exact on every CPU); use lowering=None or 'table'")
    if requested is None and act.name == "identity" and (in_qp.scale, in_qp.zero_point) != (out_qp.scale, out_qp.zero_point):
        # A bare DQ→Q requantization: ORT's DoubleQDQPairsRemover folds it into its neighbours'
        # Q/DQ and skips a rounding step (measured: ±3 LSB at the output of mnv3s). A table keeps it.
        return "table"
    if requested is None:
        native_first = default_lowering(act) == "native" or (prefer == "arm" and prefers_native_on_arm(act))
        if native_first and has_native_op(act):
            if table is None or np.array_equal(ORT.native_table(act, in_qp, out_qp), table):
                return "native"
        return "table"
    if not has_native_op(act):
        what = "per-channel parameters" if act.definition is not None and act.name in NATIVES else "no ONNX op"
        raise UnsupportedError(f"activation {act.name!r}{at} has {what} to lower natively; use lowering='table' "
                               "(an exact lookup table)")
    if native_kernel(act) is None:
        if require_exact:
            raise ExportError(
                f"ONNX Runtime's native kernel for {act.name!r}{at} is not reproducible bit for bit (it gives "
                "position-dependent results: a vectorized body with a scalar tail), so the exported model could "
                "differ from the converted one: use lowering='table' (exact) or pass require_exact=False")
        return "native"
    if table is not None:
        native = ORT.native_table(act, in_qp, out_qp)
        differ = int(np.count_nonzero(native != table))
        if differ and require_exact:
            raise ExportError(
                f"{act.name!r}{at}: ONNX Runtime's native op computes different codes than the model's table at "
                f"{differ} of {native.size} inputs (the model was not converted with backend='onnxruntime') — "
                "convert with backend='onnxruntime', or export with lowering='table' (exact)")
    return "native"


def clip_bounds(table: np.ndarray | None, in_qp: QuantParams, out_qp: QuantParams) -> tuple[int, int] | None:
    """(lo, hi) when `table` is clip(code, lo, hi) of its input codes with the same parameters in and out
    (relu, relu6, hard_tanh): then the lowering is an integer Clip on the codes, no float op, exact everywhere."""
    if table is None or np.ndim(table) != 1 or (in_qp.scale, in_qp.zero_point, in_qp.dtype) != (
            out_qp.scale, out_qp.zero_point, out_qp.dtype):
        return None
    codes = in_qp.codes().astype(np.int64)
    lo, hi = int(np.min(table)), int(np.max(table))
    return (lo, hi) if np.array_equal(np.asarray(table, np.int64), np.clip(codes, lo, hi)) else None


def plan_activation(backend, act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams,
                    requested: str | None = None) -> ActivationPlan:
    """The lowering of `act` for an onnxruntime backend, and the codes it computes (decided at convert).

    requested None: the backend's arithmetic table and the exact, cheapest lowering for its CPU;
    'native': ORT's own op and its codes (refused where ORT's kernel is not reproducible); 'table'.
    """
    if requested == "native":
        table = ORT.native_table(act, in_qp, out_qp)
    else:
        table = np.asarray(backend.arithmetic.activation_table(act, in_qp, out_qp), dtype=np.int64)
    used = choose_lowering(act, in_qp, out_qp, table, requested, prefer=backend.prefer)
    return ActivationPlan(used, table)


def lower_activation(g: GraphBuilder, x: str, act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams, *,
                     table: np.ndarray | None = None, lowering: str | None = None, rank: int = 4,
                     require_exact: bool = True, where: str = "", prefer: str = "x86") -> tuple[str, str]:
    """Append the activation from input codes `x` to output codes; returns (output name, lowering used).

    `table`: the codes the graph must reproduce (a converted model's table); by default the
    onnxruntime semantics' table (with prefer='arm': onnxruntime-aarch64's). Per-channel tables (PReLU)
    index channel axis 1.
    """
    if table is None:
        arithmetic = ORT_ARM if prefer == "arm" else ORT
        forced_native = lowering == "native" and native_kernel(act) is not None  # else choose_lowering says why not
        table = (arithmetic.native_table if forced_native else arithmetic.activation_table)(act, in_qp, out_qp)
    table = np.asarray(table, dtype=np.int64)
    used = choose_lowering(act, in_qp, out_qp, table, lowering, require_exact=require_exact, where=where,
                           prefer=prefer)
    hint = act.name if act.definition is not None else "act"
    if used == "chain":
        return lower_chain(g, x, chains.search(act, in_qp, out_qp), in_qp, out_qp, hint), used
    if used == "clip":
        lo, hi = clip_bounds(table, in_qp, out_qp)
        if (lo, hi) == (in_qp.qmin, in_qp.qmax):
            return x, used  # the codes are already in range
        dt = in_qp.np_dtype
        return g.node("Clip", [x, g.constant(dt(lo), f"{hint}_min", rank0=True),
                               g.constant(dt(hi), f"{hint}_max", rank0=True)], f"{hint}_clip"), used
    if used == "native":
        xf = g.node("DequantizeLinear", [x, g.constant(F32(in_qp.scale), "scale"),
                                         g.constant(np.asarray(in_qp.zero_point, in_qp.np_dtype), "zero_point")],
                    f"{hint}_dq")
        yf = NATIVES[act.name].op(g, xf, _scalar_params(act), rank)
        y = g.node("QuantizeLinear", [yf, g.constant(F32(out_qp.scale), "scale"),
                                      g.constant(np.asarray(out_qp.zero_point, out_qp.np_dtype), "zero_point")],
                   f"{hint}_q")
        return y, used
    return lower_table(g, x, table, in_qp, out_qp, hint=hint, rank=rank), used


def lower_chain(g: GraphBuilder, x: str, chain: chains.OrtChain, in_qp: QuantParams, out_qp: QuantParams,
                hint: str) -> str:
    """Append `chain`'s ops from input codes `x` (rank-0 Q/DQ parameters: ORT fuses each into its kernel)."""
    def qdq(op: str, t: str, qp: QuantParams, name: str) -> str:
        return g.node(op, [t, g.constant(F32(qp.scale), "scale", rank0=True),
                           g.constant(np.asarray(qp.zero_point, qp.np_dtype), "zero_point", rank0=True)],
                      f"{hint}_{name}")

    def mul(a: str, b: str, qp: QuantParams, name: str) -> str:
        return qdq("QuantizeLinear", g.node("Mul", [a, b], f"{hint}_{name}"), qp, f"{name}_q")

    def as_uint8(t: str, qp: QuantParams, u8: QuantParams, name: str) -> str:
        """The same real values in the other 8-bit type (ORT fuses its QLinear kernels for uint8 codes)."""
        return qdq("QuantizeLinear", qdq("DequantizeLinear", t, qp, f"{name}_dq"), u8, name)

    if in_qp.dtype == "int8":  # a lone activation with int8 io; inside a model the writer passes uint8 codes
        u8 = QuantParams(in_qp.scale, in_qp.zero_point + 128, "uint8")
        x, in_qp = as_uint8(x, in_qp, u8, "x_uint8"), u8
    if out_qp.dtype == "int8":
        u8 = QuantParams(out_qp.scale, out_qp.zero_point + 128, "uint8")
        return as_uint8(lower_chain(g, x, chain, in_qp, u8, hint), u8, out_qp, "y_int8")
    if chain.name == "swish":
        sig = g.node("Sigmoid", [qdq("DequantizeLinear", x, in_qp, "sigmoid_dq")], f"{hint}_sigmoid")
        gate = qdq("QuantizeLinear", sig, chains.SIGMOID_QP, "sigmoid_q")
        gate_qp = chains.SIGMOID_QP
    else:
        a = qdq("DequantizeLinear", g.constant(np.uint8(1), f"{hint}_a_code", rank0=True),
                QuantParams(chain.a, 0, "uint8"), "a")
        gate_qp = QuantParams(float(F32(1 / chain.n)), 0, "uint8")
        gate = mul(qdq("DequantizeLinear", x, in_qp, "gate_dq"), a, QuantParams(gate_qp.scale, chain.offset, "uint8"),
                   "gate")
        if chain.n < 255:
            gate = g.node("Clip", [gate, g.constant(np.uint8(0), "gate_min", rank0=True),
                                   g.constant(np.uint8(chain.n), "gate_max", rank0=True)], f"{hint}_gate_clip")
    if chain.name == "hard_sigmoid":  # requantize the gate: times the constant 1.0
        other = qdq("DequantizeLinear", g.constant(np.uint8(1), f"{hint}_one_code", rank0=True),
                    QuantParams(1.0, 0, "uint8"), "one")
    else:
        other = qdq("DequantizeLinear", x, in_qp, "x_dq")
    return mul(other, qdq("DequantizeLinear", gate, gate_qp, "gate_dq"), out_qp, "times_x")


def lower_table(g: GraphBuilder, x: str, table: np.ndarray, in_qp: QuantParams, out_qp: QuantParams,
                hint: str = "act", rank: int = 4) -> str:
    """Codes → codes through `table` ((n,) or (channels, n), inputs qmin..qmax) with GatherElements."""
    table = np.asarray(table, dtype=np.int64)
    n = in_qp.qmax - in_qp.qmin + 1
    idx = g.node("Cast", [x], f"{hint}_index", to=ELEM_TYPE["int32"])
    if table.ndim == 1:
        # int8 codes index directly: GatherElements takes a negative index from the end.
        data = np.roll(table, in_qp.qmin) if in_qp.qmin < 0 else table
    else:
        channels = table.shape[0]
        offsets = (np.arange(channels, dtype=np.int32) * n - in_qp.qmin).reshape((1, channels) + (1,) * (rank - 2))
        idx = g.node("Add", [idx, g.constant(offsets, f"{hint}_channel_offset")], f"{hint}_index")
        data = table.reshape(-1)
    data = np.asarray(data, dtype=out_qp.np_dtype).reshape(1, -1)
    flat = g.node("Reshape", [idx, g.constant(np.array([1, -1], np.int64), "row_shape")], f"{hint}_flat")
    looked = g.node("GatherElements", [g.constant(data, f"{hint}_table"), flat], f"{hint}_lookup", axis=1)
    return g.node("Reshape", [looked, g.node("Shape", [x], f"{hint}_shape")], f"{hint}_codes")


# ----------------------------------------------------------------------------------- one activation

def export_activation(activation, in_qp: QuantParams, out_qp: QuantParams, path=None, *, shape=(1, 256),
                      lowering: str | None = None, io: str = "int8", require_exact: bool = True, **params):
    """A model of one int8 activation: codes in → codes out (io='int8') or float in → float out.

    Returns the onnx.ModelProto (and writes it atomically to `path` if given). For a per-channel
    PReLU, `shape` must put the channels on axis 1.
    """
    act = bind(activation, **params)
    if io not in ("int8", "float"):
        raise UnsupportedError(f"io must be 'int8' (codes in and out) or 'float', got {io!r}")
    if in_qp.dtype != out_qp.dtype:
        raise UnsupportedError(f"input is {in_qp.dtype} but output is {out_qp.dtype}: use one type for both")
    if act.channels is not None and (len(shape) < 2 or shape[1] != act.channels):
        raise UnsupportedError(f"{act.name!r} has {act.channels} per-channel parameters: give a shape with "
                               f"{act.channels} channels on axis 1, e.g. (1, {act.channels}, 8, 8)")
    g = GraphBuilder(f"edgeact_{act.name}")
    if io == "int8":
        x = g.add_input("x", in_qp.dtype, shape)
    else:
        xf = g.add_input("x", "float32", shape)
        x = g.node("QuantizeLinear", [xf, g.constant(F32(in_qp.scale), "scale"),
                                      g.constant(np.asarray(in_qp.zero_point, in_qp.np_dtype), "zero_point")], "x_q")
    y, used = lower_activation(g, x, act, in_qp, out_qp, lowering=lowering, rank=len(shape),
                               require_exact=require_exact)
    if io == "int8":
        g.add_output(y, "y", out_qp.dtype, shape)
    else:
        yf = g.node("DequantizeLinear", [y, g.constant(F32(out_qp.scale), "scale"),
                                         g.constant(np.asarray(out_qp.zero_point, out_qp.np_dtype), "zero_point")],
                    "y_dq")
        g.add_output(yf, "y", "float32", shape)
    model = g.model(doc=f"edgeact int8 {act.name} ({used}): in {in_qp}, out {out_qp}")
    check(model)
    if path is not None:
        save_atomic(model.SerializeToString(), path)
    return model
