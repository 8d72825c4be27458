"""int8 activation tables: the 256 output codes for the 256 input codes.

For a per-tensor int8 (or uint8) input and output, any elementwise activation is such a table;
which table depends on the runtime's integer arithmetic (its backend), so the same function gives
'ideal', 'onnxruntime' and 'tflite' tables that may differ by a step at a few codes.
"""
from __future__ import annotations

import numpy as np
import torch

from edgeact.activations import bind
from edgeact.errors import QuantizationError, UnsupportedError
from edgeact.qparams import QuantParams
from edgeact.backend import get_backend


def _check_qparams(qp: QuantParams, role: str) -> None:
    if not isinstance(qp, QuantParams):
        raise QuantizationError(f"{role} quantization parameters must be a QuantParams, got {type(qp).__name__}")
    if qp.per_channel:
        raise UnsupportedError(f"{role} of an activation table must be quantized per tensor, not per channel")
    if qp.dtype not in ("int8", "uint8"):
        raise UnsupportedError(f"activation tables are for int8/uint8 tensors; {role} is {qp.dtype}")


def int8_table(activation, in_qp: QuantParams, out_qp: QuantParams, backend="ideal", **params) -> np.ndarray:
    """Output codes (np.int64) for input codes qmin..qmax of `in_qp`, in that order.

    `activation`: a registry name ('hard_swish'), an ActivationDef, a BoundActivation or a PWL fit.
    `backend`: 'ideal' (float64, round half to even), or a backend ('onnxruntime', 'litert', …) whose
    arithmetic — with its default lowering of the activation — the table follows.
    Shape (256,), or (channels, 256) when a parameter is per channel (PReLU's slope).
    """
    _check_qparams(in_qp, "input")
    _check_qparams(out_qp, "output")
    _check_activation(activation)
    _check_params(params)
    act = bind(activation, **params)
    _check_values(act, in_qp)
    table = table_of_finite(act, in_qp, out_qp, backend)
    if table.shape[-1] != in_qp.qmax - in_qp.qmin + 1:
        raise AssertionError(f"backend {backend!r} returned a table of shape {table.shape}")
    if table.min() < out_qp.qmin or table.max() > out_qp.qmax:
        raise AssertionError(f"backend {backend!r} returned codes outside {out_qp.dtype}")
    return table


def table_of_finite(act, in_qp: QuantParams, out_qp: QuantParams, backend="ideal") -> np.ndarray:
    """int8_table() of a bound activation already known finite at every input code, with valid per-tensor
    parameters (a QAT step has just evaluated it there): the table without the checks."""
    return np.asarray(get_backend(backend).plan_activation(act, in_qp, out_qp).table, dtype=np.int64)


def _check_activation(activation) -> None:
    """A name, an ActivationDef, a BoundActivation or a fit with .bind(); a bare function is refused, as
    nothing would tell a runtime's semantics which kernel it stands for."""
    from edgeact.activations import ActivationDef, BoundActivation

    if isinstance(activation, (str, ActivationDef, BoundActivation)):
        return
    if hasattr(activation, "bind") and callable(activation.bind):
        return
    fix = ("give a registry name (edgeact.activations.names()), an ActivationDef, a BoundActivation, or for your "
           "own function a PWL stand-in: edgeact.pwl.fit_pwl(fn, segments=16, x_range=(a, b))")
    if callable(activation):
        raise UnsupportedError(f"int8_table() cannot take a bare function ({getattr(activation, '__name__', activation)!r}): "
                               f"{fix}")
    raise UnsupportedError(f"int8_table() needs an activation, not {activation!r} ({type(activation).__name__}): {fix}")


def _check_params(params: dict) -> None:
    for k, v in params.items():
        if isinstance(v, str):  # a mode such as gelu's approximate='tanh': the definition checks it
            continue
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise QuantizationError(f"activation parameter {k}={v!r} is not a number") from None
        if not np.all(np.isfinite(arr)):
            raise QuantizationError(f"activation parameter {k}={v!r} is not finite; give a finite number")


def _check_values(act, in_qp: QuantParams) -> None:
    """The float function at every input code must be finite: NaN or Inf has no int8 code."""
    x = (np.arange(in_qp.qmin, in_qp.qmax + 1, dtype=np.float64) - in_qp.zero_point) * in_qp.scale
    with np.errstate(all="ignore"):
        y = act.on_codes(x)
    bad = ~np.isfinite(y)
    if bad.any():
        at = x[np.nonzero(bad.reshape(-1, x.size).any(0))[0][0]]
        raise QuantizationError(f"{act.name} gives NaN/Inf at x = {at:g} (input code "
                                f"{int(round(at / in_qp.scale)) + in_qp.zero_point}); an int8 table needs a finite "
                                "value at every code — fix the function or its parameters")


def lookup(table: np.ndarray, codes: np.ndarray, in_qp: QuantParams, channel_axis: int = 1) -> np.ndarray:
    """Apply a table to integer codes (NumPy): the integer reference kernel of an activation."""
    codes = np.asarray(codes, dtype=np.int64)
    idx = codes - in_qp.qmin
    if table.ndim == 1:
        return table[idx]
    channels = table.shape[0]
    shape = [1] * codes.ndim
    shape[channel_axis] = channels
    ch = np.arange(channels).reshape(shape)
    return table[ch, idx]


def lookup_torch(table: torch.Tensor, codes: torch.Tensor, qmin: int, channel_axis: int = 1) -> torch.Tensor:
    """Apply a table to integer codes (torch, int64): the converted QuantAct's forward."""
    idx = codes.long() - qmin
    if table.dim() == 1:
        return table[idx]
    n = table.shape[1]
    shape = [1] * codes.dim()
    shape[channel_axis] = table.shape[0]
    ch = torch.arange(table.shape[0], device=codes.device).reshape(shape)
    return table.reshape(-1)[(ch * n + idx)]
