"""QuantAct: an activation between int8 tensors, fake-quantized for calibration and QAT.

fake-quant input → activation (exact or a PWL stand-in) → fake-quant output. The forward value is
taken from the int8 table of the chosen integer backend (the gradient from the float function,
straight through), so the fake-quant model computes exactly the codes the converted table computes.
For a registry activation with per-tensor parameters a QAT step never runs the activation over the
tensor: value and gradient are lookups in 256-entry tables of the step's parameters (_table_step).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeact.dense import dense_elements, flat_view
from edgeact.errors import QuantizationError
from edgeact.fake_quant import (FakeQuantize, StepOutput, dequantize_codes, fake_quantize, grid_positions,
                                positions_with_ends, quantize_codes, scalar_tensors, step_mask, table_positions)
from edgeact.nn.activations import from_torch, make_activation
from edgeact.qparams import QuantParams
from edgeact.tables import int8_table, lookup_torch, table_of_finite


_NUMPY_FLOATS = {torch.float32: np.float32, torch.float64: np.float64}


def _dequantized(table: np.ndarray, qp: QuantParams, dtype: torch.dtype) -> torch.Tensor:
    """dequantize_codes(table, qp, dtype) computed in NumPy — the same two IEEE operations, (q − z) then
    · s in `dtype` — for a 256-entry table, where torch's per-op overhead exceeds the arithmetic."""
    np_dtype = _NUMPY_FLOATS.get(dtype)
    if np_dtype is None or table.dtype != np.int64:
        return dequantize_codes(torch.from_numpy(table), qp, dtype)
    return torch.from_numpy((table - qp.zero_point).astype(np_dtype) * np_dtype(qp.scale))


def gather(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """values[positions] (a 1-D table, integer positions) in the positions' memory layout: channels-last
    positions give a channels-last result, with no copy to and from the standard layout."""
    out = torch.empty_like(positions, dtype=values.dtype)
    flat_at, flat_out = flat_view(positions), flat_view(out)
    if flat_at is None or flat_out is None:
        return values.index_select(0, positions.reshape(-1)).reshape(positions.shape)
    torch.index_select(values, 0, flat_at, out=flat_out)
    return out


def _code(v: float, qp: QuantParams) -> int:
    """The code fake quantization gives the float32 value `v`: round(v / s) + z (half to even), clamped."""
    q = round(float(np.float32(v) / np.float32(qp.scale))) + qp.zero_point
    return min(max(q, qp.qmin), qp.qmax)


class _TableStep(torch.autograd.Function):
    """values[at] forward; grad · slopes[at] backward (both 1-D tables, `at` int32 positions)."""

    @staticmethod
    def forward(ctx, x, values, slopes, at):
        ctx.save_for_backward(slopes, at)
        return gather(values, at)

    @staticmethod
    def backward(ctx, grad):
        slopes, at = ctx.saved_tensors
        return grad * gather(slopes, at), None, None, None


class _CodeClamp(torch.autograd.Function):
    """_TableStep for a table that clamps the codes (ReLU, ReLU6 with their input's parameters), elementwise:
    q = round(x / s_in) + z_in, value (clamp(q, lo, hi) − z_out)·s_out — the float operations that dequantize
    the table's entry —, gradient where mask_lo ≤ q ≤ mask_hi (where the slopes table holds 1, 0 elsewhere).
    The same bits, without positions and two gathers, which cost more than these kernels on a large tensor."""

    @staticmethod
    def forward(ctx, x, s_in, z_in, s_out, z_out, bounds):
        lo, hi, mask_lo, mask_hi = bounds
        q = torch.div(x, s_in)
        q.round_().add_(z_in)
        mask = step_mask(q, mask_lo, mask_hi)
        ctx.save_for_backward(mask)
        return q.clamp_(lo, hi).sub_(z_out).mul_(s_out)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None, None, None


def _code_clamp_bounds(table: np.ndarray, slopes: np.ndarray, qmin: int) -> tuple[int, int, int, int] | None:
    """(lo, hi, mask_lo, mask_hi) when the table (codes qmin…) is clip(code, lo, hi) and the slopes (with their
    two end entries) are 1 on the codes mask_lo…mask_hi and 0 elsewhere; None otherwise."""
    # The slopes first: every step of a smooth activation asks, and its slopes fail at once.
    ones = np.flatnonzero(slopes)
    if ones.size == 0 or not (slopes[ones] == 1.0).all() or ones[-1] - ones[0] + 1 != ones.size:
        return None
    lo, hi = int(table[0]), int(table[-1])
    if lo > hi or not np.array_equal(table, np.clip(np.arange(qmin, qmin + table.size), lo, hi)):
        return None
    return lo, hi, qmin + int(ones[0]) - 1, qmin + int(ones[-1]) - 1


class SharedQuant(nn.Module):
    """Stands for another module's output FakeQuantize: the input is already quantized by its producer.

    The source is kept outside the module tree (not a submodule), so the state_dict holds it once.
    """

    def __init__(self, source: FakeQuantize):
        super().__init__()
        object.__setattr__(self, "_source", source)

    @property
    def enabled(self) -> bool:
        return self._source.enabled

    @property
    def source(self) -> FakeQuantize:
        return self._source

    def qparams(self) -> QuantParams:
        return self._source.qparams()

    def forward(self, x):
        return x


class QuantAct(nn.Module):
    """An activation with int8 (or uint8) input and output.

    `activation`: a name ('hard_mish'), an edgeact or torch.nn activation module, or a PWL stand-in
    (anything with `.to_module()`). `backend` picks the integer arithmetic the table follows
    ('ideal', 'onnxruntime', 'litert', …: `edgeact.backend`); `convert()` freezes the table.
    """

    def __init__(self, activation="relu", *, dtype: str = "int8", observer: str = "minmax",
                 input_quant: nn.Module | None | str = "own", output_quant: FakeQuantize | None = None,
                 backend: str = "ideal", learnable_scale: bool = False, **params):
        super().__init__()
        self.act = self._make(activation, params)
        if input_quant == "own":
            input_quant = FakeQuantize(observer, dtype=dtype, name="QuantAct input")
        self.input_quant = input_quant
        self.output_quant = output_quant or FakeQuantize(observer, dtype=dtype, learnable_scale=learnable_scale,
                                                         name=f"{self.activation_name} output")
        self.backend = backend
        self.register_buffer("table", None)
        self._frozen: tuple[QuantParams, QuantParams] | None = None

    @staticmethod
    def _make(activation, params) -> nn.Module:
        if isinstance(activation, str):
            return make_activation(activation, **params)
        if hasattr(activation, "to_module"):
            return activation.to_module()
        converted = from_torch(activation)
        if converted is None:
            raise QuantizationError(f"{type(activation).__name__} is not an activation edgeact can quantize")
        return converted

    @property
    def activation_name(self) -> str:
        return self.act.bound().name

    @property
    def converted(self) -> bool:
        return self.table is not None

    def in_qparams(self) -> QuantParams:
        if self.input_quant is None:
            raise QuantizationError("QuantAct has no input quantizer: give input_quant or let prepare() connect it")
        return self.input_quant.qparams()

    def out_qparams(self) -> QuantParams:
        return self.output_quant.qparams()

    def current_table(self, backend: str | None = None) -> torch.Tensor:
        table = int8_table(self.act.bound(), self.in_qparams(), self.out_qparams(), backend or self.backend)
        return torch.from_numpy(table)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.converted:
            in_qp, out_qp = self._frozen
            return dequantize_codes(self.lookup_codes(quantize_codes(x, in_qp)), out_qp, x.dtype)
        xq = self.input_quant(x) if self.input_quant is not None else x
        source = getattr(self.input_quant, "source", self.input_quant)
        produced = None
        if source is self.output_quant and source.enabled:  # a ReLU fused with its conv: one quantizer
            out = self._table_step(xq, None, fused=True)
            if out is not None:
                return out
        elif isinstance(source, FakeQuantize) and source.enabled:
            produced = source.step_output(xq, source.qparams())
            if self.output_quant.enabled:
                out = self._table_step(xq, produced)
                if out is not None:
                    return out
            if produced is not None and produced.deferred:  # quantize it as the source would have
                xq, produced = fake_quantize(xq, source.qparams()), None
        y = self.output_quant(self.act(xq))
        quantizing = self.output_quant.enabled and (self.input_quant is not None and self.input_quant.enabled)
        if not quantizing:
            return y
        in_qp, out_qp = self.in_qparams(), self.out_qparams()
        table = int8_table(self.act.bound(), in_qp, out_qp, self.backend)
        if table.ndim == 1:
            # Dequantize the 256 entries, then gather: elementwise, so the same numbers as dequantizing
            # the looked-up codes, at a fraction of the cost.
            at = (grid_positions if produced is not None else table_positions)(xq.detach(), in_qp)
            exact = gather(_dequantized(table, out_qp, x.dtype), at)
        else:
            table = torch.from_numpy(table)
            codes = quantize_codes(xq.detach(), in_qp)
            exact = dequantize_codes(lookup_torch(table, codes, in_qp.qmin), out_qp, x.dtype)
        # Value of the integer table, gradient of the float path (straight through): y + (exact − y).
        return y + exact.sub_(y.detach())

    def _table_step(self, x: torch.Tensor, produced: StepOutput | None, fused: bool = False) -> torch.Tensor | None:
        """The fake-quant step of a per-tensor table as lookups: the value is the table's, the gradient the
        activation's slope at the input code times the output's straight-through mask — both 256-entry
        tables, built per step from the parameters — so the activation, the output's fake quantization and
        the value correction never run over the tensor. An unquantized `x` — deferred by its quantizer
        (`produced.deferred`), or `fused` (a ReLU sharing its conv's output quantizer, which observes the
        activation's output, whose range a monotonic activation takes from x's min and max) — gets two
        more entries, below and above the codes, with the clamped values and slope 0 (the input's
        straight-through mask). The output range observed is the activation's over the codes from the
        batch's smallest to its largest. None where it does not apply (a fitted stand-in, a per-channel or
        learnable parameter, LSQ, a histogram observer, the first step): the general path."""
        out_fq = self.output_quant
        bound = self.act.bound()
        if (out_fq.learnable_scale or x.dtype != torch.float32 or bound.definition is None or bound.channels is not None
                or any(p is not None and p.requires_grad for p in self.act._parameters.values())
                or (fused and not bound.definition.monotonic)):
            return None
        observing = out_fq.observe
        if observing and not out_fq.observes_extremes():
            return None
        if fused:
            if observing:
                lo, hi = torch.aminmax(dense_elements(x.detach()))
                with torch.no_grad():
                    out_fq.observe_extremes(*self.act(torch.stack([lo, hi])).tolist())
                batch = (lo.item(), hi.item())
            in_qp = out_fq.qparams()
        else:
            in_qp = self.in_qparams()
            batch = produced.batch_range if produced is not None else None
        codes = np.arange(in_qp.qmin, in_qp.qmax + 1, dtype=np.float32)
        grid = (codes - np.float32(in_qp.zero_point)) * np.float32(in_qp.scale)  # fake quant's (q − z)·s
        with torch.no_grad():
            y = self.act(torch.from_numpy(grid)).numpy()
        # where the step finds the codes by positions (table_positions also refuses NaN); else only if a gather needs them
        at = table_positions(x.detach(), in_qp).add_(1) if not fused and produced is None else None
        if observing:  # over the codes from the batch's smallest to its largest
            if batch is not None:
                first, last = (_code(v, in_qp) - in_qp.qmin for v in batch)
            else:
                first, last = (int(v) - 1 for v in torch.aminmax(dense_elements(at)))
            if not fused:
                span = y[first:last + 1]
                out_fq.observe_extremes(float(span.min()), float(span.max()))
        out_qp = out_fq.qparams()
        q = np.round(y / np.float32(out_qp.scale)) + np.float32(out_qp.zero_point)
        slopes = np.zeros(codes.size + 2, np.float32)
        slopes[1:-1] = bound.slopes_on_codes(grid.astype(np.float64)) * ((q >= out_qp.qmin) & (q <= out_qp.qmax))
        finite = bool(np.isfinite(y).all())  # else int8_table() refuses, naming the code
        table = (table_of_finite if finite else int8_table)(bound, in_qp, out_qp, self.backend)
        values = _dequantized(table, out_qp, x.dtype).numpy()
        values = np.concatenate([values[:1], values, values[-1:]])
        # x is known finite here — observed by this step, or a quantizer's output — unless fused and not observing
        clamp = _code_clamp_bounds(table, slopes, in_qp.qmin) if at is None and (observing or not fused) else None
        if clamp is not None:
            out = _CodeClamp.apply(x, *scalar_tensors(self, in_qp.scale, in_qp.zero_point, "_in_scalars"),
                                   *scalar_tensors(self, out_qp.scale, out_qp.zero_point, "_out_scalars"), clamp)
        else:
            if at is None:
                at = (positions_with_ends(x.detach(), in_qp) if fused or produced.deferred
                      else grid_positions(x.detach(), in_qp).add_(1))
            out = _TableStep.apply(x, torch.from_numpy(values), torch.from_numpy(slopes), at)
        if observing:
            span = values[first + 1:last + 2]
            out_fq.record_output(out, out_qp, (float(span.min()), float(span.max())))
        return out

    def lookup_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Converted: input codes → output codes through the frozen table."""
        return lookup_torch(self.table, codes, self._frozen[0].qmin)

    def convert(self, backend: str | None = None) -> "QuantAct":
        """Freeze the quantization parameters and the table (of `backend`, default the module's)."""
        if backend is not None:
            self.backend = backend
        in_qp, out_qp = self.in_qparams(), self.out_qparams()
        if self.input_quant is not None and hasattr(self.input_quant, "freeze"):
            self.input_quant.freeze()
        self.output_quant.freeze()
        self._frozen = (in_qp, out_qp)
        self.table = self.current_table()
        return self

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}, converted={self.converted}"
