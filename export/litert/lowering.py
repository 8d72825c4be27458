"""Lower one int8 activation to TFLite ops: its native kernel, or the exact GATHER table.

`add_activation` appends the ops to a model being built (the model exporter uses it for every
activation); `activation_model` writes a single-activation .tflite — the unit the parity tests and
the benchmark run over every (scale, zero point) pair and all 256 input codes.

The table lowering is BITCAST(int8→uint8) → CAST(→int16) → GATHER(256-entry int8 table, rotated by
128): whatever runs it (builtin kernels or XNNPACK, which does not take these ops), it returns
exactly the table's entries.
"""
from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgeact.activations import bind
from edgeact.arithmetic import Arithmetic
from edgeact.errors import ExportError, UnsupportedError
from edgeact.export.litert.builder import ModelBuilder, TensorRef
from edgeact.qparams import QuantParams
from edgeact.backend import ActivationPlan, get_backend
from edgeact.export.litert.arithmetic import (
    ActivationLowering, NativeKernel, native_kernel, native_table, prelu_alpha_qparams,
)
from edgeact.export.litert.arithmetic_aarch64 import arm_native_table, plan_activation_for
from edgeact.export.litert.chains import Chain, chain_codes, constant_qparams


def add_table(b: ModelBuilder, x: TensorRef, table: np.ndarray, out_qp: QuantParams, name: str) -> TensorRef:
    """y = table[x] for int8 x with BITCAST, CAST and GATHER; `table` holds the outputs of codes −128..127.

    BITCAST reinterprets the int8 codes as uint8 (−1 → 255, free), CAST widens them to int16 indices
    (GATHER refuses 8-bit indices), and the table is stored rotated by 128 to match: rows 0..127 hold
    codes 0..127, rows 128..255 codes −128..−1. Measured faster than CAST int32 + ADD 128 + GATHER.
    """
    table = np.asarray(table, dtype=np.int64)
    if table.shape != (256,):
        raise UnsupportedError(f"{name}: a GATHER table needs 256 entries, got shape {table.shape} "
                               "(per-channel tables are lowered natively, e.g. PRELU)")
    as_uint8 = b.tensor(f"{name}/as_uint8", x.shape, "uint8")
    b.op("BITCAST", [x], [as_uint8], version=1)
    index = b.tensor(f"{name}/index", x.shape, "int16")
    b.op("CAST", [as_uint8], [index], schema.CastOptionsT(), version=1)
    rotated = np.concatenate([table[128:], table[:128]])
    lut = b.constant(f"{name}/table", rotated.astype(np.int8), "int8", out_qp)
    y = b.tensor(name, x.shape, "int8", out_qp)
    opts = schema.GatherOptionsT()
    opts.axis = 0
    b.op("GATHER", [lut, index], [y], opts, version=1)
    return y


def _chain_matches(chain: Chain, table: np.ndarray, in_qp: QuantParams) -> bool:
    """Whether `table` is what `chain` computes in one of LiteRT's kernel sets (the backend the model was
    converted for)."""
    if table.ndim != 1:
        return False
    return any(np.array_equal(table, chain_codes(chain, in_qp, get_backend(name).arithmetic))
               for name in ("litert", "litert:aarch64", "litert:builtin", "litert:reference"))


def add_chain(b: ModelBuilder, x: TensorRef, chain: Chain, in_qp: QuantParams, name: str) -> TensorRef:
    """Append `chain`'s ops (edgeact.export.litert.chains): each step reads the previous result and
    the input `x` or a one-element constant; intermediates are named name/k_op, the result `name`."""
    cur = x
    last = len(chain.steps) - 1
    for k, step in enumerate(chain.steps):
        y = b.tensor(name if k == last else f"{name}/{k}_{step.op.lower()}", x.shape, "int8", step.out_qp)
        if step.op in ("ADD", "MUL"):
            if isinstance(step.operand, str):
                other = x
            else:
                c_qp, code = constant_qparams(float(step.operand))
                other = b.constant(f"{name}/{k}_constant", np.array([code], dtype=np.int8), "int8", c_qp)
            opts = schema.AddOptionsT() if step.op == "ADD" else schema.MulOptionsT()
            b.op(step.op, [cur, other], [y], opts)
        elif step.op == "LEAKY_RELU":
            opts = schema.LeakyReluOptionsT()
            opts.alpha = float(np.float32(step.options["alpha"]))
            b.op(step.op, [cur], [y], opts)
        else:
            b.op(step.op, [cur], [y])
        cur = y
    return cur


def plan_activation(backend, act, in_qp: QuantParams, out_qp: QuantParams,
                    requested: str | None = None) -> ActivationPlan:
    """The lowering of `act` for a LiteRT backend, and the codes it computes (decided at convert).

    requested None: the backend's arithmetic table, lowered natively where a kernel computes exactly
    it and is the faster choice on the backend's CPU (`plan_activation_for`), else as the GATHER table;
    'native': the kernel and its codes (also where XNNPACK may differ: benchmarks); 'table'.
    """
    if requested not in (None, "native", "table"):
        raise UnsupportedError(f"lowering must be None, 'native' or 'table', got {requested!r}")
    if requested == "native":
        kernel = native_kernel(act, in_qp, out_qp, include_inexact=True)
        if kernel is None:
            raise UnsupportedError(f"{act.name}: no native int8 TFLite kernel at these parameters; use lowering='table'")
        table = arm_native_table(kernel, in_qp, out_qp) if backend.prefer == "arm" else native_table(kernel, in_qp, out_qp)
        return ActivationPlan("native", table)
    table = np.asarray(backend.arithmetic.activation_table(act, in_qp, out_qp), dtype=np.int64)
    chains = backend.arithmetic.uses_chains
    if requested == "table":
        if plan_activation_for(act, in_qp, out_qp, backend.prefer, chains=chains).kind == "chain":
            table = Arithmetic().activation_table(act, in_qp, out_qp)  # a forced table is the ideal one
        return ActivationPlan("table", np.asarray(table, dtype=np.int64))
    plan = plan_activation_for(act, in_qp, out_qp, backend.prefer, chains=chains)
    if plan.kind == "none" and np.array_equal(table, in_qp.codes()):
        return ActivationPlan("none", table)
    if plan.kind == "native" and np.array_equal(table, native_table(NativeKernel(plan.op, plan.options), in_qp, out_qp)):
        return ActivationPlan("native", table)
    if plan.kind == "chain" and np.array_equal(table, chain_codes(plan.options["chain"], in_qp, backend.arithmetic)):
        return ActivationPlan("chain", table)
    return ActivationPlan("table", table)


def add_activation(b: ModelBuilder, x: TensorRef, activation, in_qp: QuantParams, out_qp: QuantParams,
                   name: str, *, lowering: str = "auto", table: np.ndarray | None = None,
                   prefer: str = "x86", **params) -> tuple[TensorRef, str]:
    """Append `activation` (int8 `x` with `in_qp`); returns its int8 output tensor (`out_qp`) and how
    it was lowered ('LOGISTIC', …, 'chain LOGISTIC → MUL', 'table' or 'none').

    `lowering`: 'auto' (edgeact's choice, exact under every LiteRT configuration), or 'native' /
    'table' to force one (benchmarks compare them; 'native' may be inexact under XNNPACK).
    `table`: the codes the result must have (a converted model's table); the native kernel is then
    used only if it computes exactly these, else the table itself is written. `prefer`: the CPU whose
    cheapest exact lowering 'auto' picks ('x86' or 'arm': `tflite_aarch64.plan_activation_for`).
    """
    act = bind(activation, **params)
    if lowering == "none":
        plan = ActivationLowering("none")
    elif lowering in ("auto", "chain"):  # 'chain': decided at convert; the search gives the same chain
        plan = plan_activation_for(act, in_qp, out_qp, prefer)
    elif lowering == "table":
        plan = ActivationLowering("table")
    elif lowering == "native":
        kernel = native_kernel(act, in_qp, out_qp, include_inexact=True)
        if kernel is None:
            raise UnsupportedError(f"{act.name}: no native int8 TFLite kernel at these parameters; use lowering='table'")
        plan = ActivationLowering("native", kernel.op, kernel.options)
    else:
        raise UnsupportedError(f"lowering must be 'auto', 'native', 'table' or 'none', got {lowering!r}")
    if table is not None:
        table = np.asarray(table, dtype=np.int64)
        if plan.kind == "none" and not np.array_equal(table, in_qp.codes()):
            plan = ActivationLowering("table")
        if plan.kind == "chain" and not _chain_matches(plan.options["chain"], table, in_qp):
            plan = ActivationLowering("table", reason="the model's table is not what the chain computes")
        if plan.kind == "native" and not np.array_equal(
                table, native_table(NativeKernel(plan.op, plan.options), in_qp, out_qp)):
            plan = ActivationLowering("table", reason="the model's table is not what the native kernel computes")
    if plan.kind == "none":
        return x, "none"
    if plan.kind == "chain":
        chain = plan.options["chain"]
        return add_chain(b, x, chain, in_qp, name), "chain " + " → ".join(chain.ops)
    if plan.kind == "table":
        if table is None:
            table = get_backend("litert").arithmetic.activation_table(act, in_qp, out_qp)
        return add_table(b, x, table, out_qp, name), "table"
    y = b.tensor(name, x.shape, "int8", out_qp)
    op = plan.op
    if op == "LEAKY_RELU":
        opts = schema.LeakyReluOptionsT()
        opts.alpha = float(np.float32(plan.options["alpha"]))
        b.op(op, [x], [y], opts)
    elif op == "GELU":
        opts = schema.GeluOptionsT()
        opts.approximate = bool(plan.options["approximate"])
        b.op(op, [x], [y], opts)
    elif op == "PRELU":
        alpha = np.atleast_1d(plan.options["alpha"])
        a_qp, a_codes = prelu_alpha_qparams(alpha)
        if alpha.size > 1 and (not x.shape or x.shape[-1] != alpha.size):
            raise ExportError(f"{name}: PReLU has {alpha.size} slopes but the tensor's last (channel) "
                              f"dimension is {x.shape[-1] if x.shape else None}")
        a = b.constant(f"{name}/alpha", a_codes.reshape(alpha.size), "int8", a_qp)
        b.op(op, [x, a], [y])
    elif op in ("RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "HARD_SWISH", "LOGISTIC", "TANH", "ELU"):
        b.op(op, [x], [y])
    else:
        raise AssertionError(f"no lowering for planned op {op}")
    return y, op


def activation_batch_model(activation, pairs, *, shape=(1, 16, 16, 1), lowering: str = "auto", prefer: str = "x86",
                           **params) -> bytes:
    """One model with an independent int8 branch per (in_qp, out_qp) pair: input k → activation → output k.

    Lets a test check hundreds of quantization pairs with one interpreter and one invoke.
    """
    b = ModelBuilder(description=f"edgeact activation batch {bind(activation, **params).name}")
    inputs, outputs = [], []
    for k, (in_qp, out_qp) in enumerate(pairs):
        x = b.tensor(f"input_{k}", shape, "int8", in_qp)
        y, _ = add_activation(b, x, activation, in_qp, out_qp, f"activation_{k}", lowering=lowering, prefer=prefer,
                              **params)
        if y is x:
            y = b.tensor(f"activation_{k}", shape, "int8", out_qp)
            b.op("QUANTIZE", [x], [y])
        inputs.append(x)
        outputs.append(y)
    return b.finish(inputs, outputs)


def activation_model(activation, in_qp: QuantParams, out_qp: QuantParams, *, shape=(1, 256), io: str = "int8",
                     lowering: str = "auto", prefer: str = "x86", **params) -> bytes:
    """A .tflite (bytes) holding one activation: int8 in/out, or float in/out with QUANTIZE/DEQUANTIZE."""
    if io not in ("int8", "float"):
        raise ExportError(f"io must be 'int8' or 'float', got {io!r}")
    b = ModelBuilder(description=f"edgeact activation {bind(activation, **params).name}")
    if io == "int8":
        x = b.tensor("input", shape, "int8", in_qp)
        y, _ = add_activation(b, x, activation, in_qp, out_qp, "activation", lowering=lowering, prefer=prefer,
                          **params)
        if y is x:  # a no-op activation still needs a distinct output tensor
            y = b.tensor("activation", shape, "int8", out_qp)
            b.op("QUANTIZE", [x], [y])
        return b.finish([x], [y])
    xf = b.tensor("input", shape, "float32")
    x = b.tensor("input_q", shape, "int8", in_qp)
    b.op("QUANTIZE", [xf], [x], version=1)
    y, _ = add_activation(b, x, activation, in_qp, out_qp, "activation", lowering=lowering, prefer=prefer,
                          **params)
    yf = b.tensor("output", shape, "float32")
    b.op("DEQUANTIZE", [y], [yf])
    return b.finish([xf], [yf])
