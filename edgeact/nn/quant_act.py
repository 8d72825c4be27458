"""QuantAct: an activation between int8 tensors, fake-quantized for calibration and QAT.

fake-quant input → activation (exact or a PWL stand-in) → fake-quant output. The forward value is
taken from the int8 table of the chosen integer backend (the gradient from the float function,
straight through), so the fake-quant model computes exactly the codes the converted table computes.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeact.dense import flat_view
from edgeact.errors import QuantizationError
from edgeact.fake_quant import FakeQuantize, dequantize_codes, grid_positions, quantize_codes, table_positions
from edgeact.nn.activations import from_torch, make_activation
from edgeact.qparams import QuantParams
from edgeact.tables import int8_table, lookup_torch


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
        y = self.output_quant(self.act(xq))
        quantizing = self.output_quant.enabled and (self.input_quant is not None and self.input_quant.enabled)
        if not quantizing:
            return y
        in_qp, out_qp = self.in_qparams(), self.out_qparams()
        table = int8_table(self.act.bound(), in_qp, out_qp, self.backend)
        if table.ndim == 1:
            # Dequantize the 256 entries, then gather: elementwise, so the same numbers as dequantizing
            # the looked-up codes, at a fraction of the cost (this runs at every QAT step).
            source = getattr(self.input_quant, "source", self.input_quant)
            on_grid = isinstance(source, FakeQuantize) and source.on_grid(xq, in_qp)
            at = (grid_positions if on_grid else table_positions)(xq.detach(), in_qp)
            exact = gather(_dequantized(table, out_qp, x.dtype), at)
        else:
            table = torch.from_numpy(table)
            codes = quantize_codes(xq.detach(), in_qp)
            exact = dequantize_codes(lookup_torch(table, codes, in_qp.qmin), out_qp, x.dtype)
        # Value of the integer table, gradient of the float path (straight through): y + (exact − y).
        return y + exact.sub_(y.detach())

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
