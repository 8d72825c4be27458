"""The ideal integer semantics, and the interface a runtime's semantics overrides."""
from __future__ import annotations

import numpy as np
import torch

from edgeact.activations import BoundActivation
from edgeact.qparams import QuantParams, round_half_even


class Arithmetic:
    """Ideal arithmetic: float64 values, round half to even, clamp to the output type.

    Subclasses override the methods whose arithmetic differs in their runtime. Every method takes
    and returns integer codes (np.int64 arrays), never float values, so parity is code for code.
    """

    name = "ideal"

    def activation_table(self, act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
        """Output code for every input code: shape (n_codes,), or (channels, n_codes) per channel."""
        x = in_qp.dequantize(in_qp.codes())
        y = act.on_codes(x)
        return self.quantize_values(y, out_qp)

    def quantize_values(self, y: np.ndarray, out_qp: QuantParams) -> np.ndarray:
        """float64 values → codes, round half to even (NaN from an activation is a bug, not data)."""
        y = np.asarray(y, dtype=np.float64)
        return np.clip(round_half_even(y / out_qp.scale) + out_qp.zero_point, out_qp.qmin, out_qp.qmax).astype(np.int64)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # ---- model ops (torch int64 code tensors in and out) ----------------------------------------
    # The converted model (edgeact.quantized) calls these; a runtime's semantics overrides the ones
    # whose arithmetic differs. `acc` is an int64 accumulator: Σ (x_q − z_x)·w_q + bias_q.

    def quantize(self, x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
        """float input → codes (a graph input's QuantizeLinear / QUANTIZE)."""
        xd = x.double()
        q = torch.round(xd / qp.scale) + qp.zero_point
        return q.clamp(qp.qmin, qp.qmax).long()

    def dequantize(self, q: torch.Tensor, qp: QuantParams) -> torch.Tensor:
        """codes → float32, (q − z)·s computed in float32 as DequantizeLinear / DEQUANTIZE do."""
        return (q.long() - qp.zero_point).float() * torch.tensor(qp.scale, dtype=torch.float32)

    def accumulate(self, module, q: torch.Tensor) -> torch.Tensor:
        """A conv / linear module's int64 accumulator Σ (x_q − z_x)·w_q + bias_q, exact by default.

        A runtime whose kernel loses precision while summing (ORT's AVX2 u8s8 pair saturation) overrides it.
        """
        return module.accumulate((q.long() - module.in_qparams[0].zero_point).double()).round().long()

    def requantize_accumulator(self, acc: torch.Tensor, in_qp: QuantParams, w_qp: QuantParams,
                               out_qp: QuantParams, channel_axis: int = 1, *, op: str = "conv2d",
                               depth: int | None = None) -> torch.Tensor:
        """Conv / fully-connected output: acc·(s_in·s_w[c] / s_out) + z_out, rounded, clamped.

        `op` ('conv2d', 'depthwise_conv2d', 'linear') for runtimes that run each with its own kernel;
        `depth` (the inputs each output sums: C_in/groups·kh·kw, or in_features) for runtimes whose kernel
        choice depends on the gemm's shape.
        """
        mult = in_qp.scale * w_qp.scale_array() / out_qp.scale
        shape = [1] * acc.dim()
        shape[channel_axis] = -1
        m = torch.from_numpy(np.asarray(mult, dtype=np.float64)).reshape(shape if mult.size > 1 else [])
        return self._finish(acc.double() * m, out_qp)

    def add(self, a, qa: QuantParams, b, qb: QuantParams, out_qp: QuantParams) -> torch.Tensor:
        y = (a.double() - qa.zero_point) * qa.scale + (b.double() - qb.zero_point) * qb.scale
        return self._finish(y / out_qp.scale, out_qp)

    def mul(self, a, qa: QuantParams, b, qb: QuantParams, out_qp: QuantParams) -> torch.Tensor:
        y = ((a.double() - qa.zero_point) * qa.scale) * ((b.double() - qb.zero_point) * qb.scale)
        return self._finish(y / out_qp.scale, out_qp)

    def average(self, window_sum: torch.Tensor, count: int, in_qp: QuantParams, out_qp: QuantParams, *,
                op: str = "mean") -> torch.Tensor:
        """Average pooling / spatial mean: `window_sum` is Σ x_q over a window of `count` codes.

        `op` ('mean', 'avg_pool2d') for runtimes that run each with its own kernel.
        """
        mean = (window_sum.double() / count - in_qp.zero_point) * in_qp.scale
        return self._finish(mean / out_qp.scale, out_qp)

    def requantize(self, q: torch.Tensor, in_qp: QuantParams, out_qp: QuantParams) -> torch.Tensor:
        """Codes of one scale → codes of another (concatenation of differently quantized inputs)."""
        if (in_qp.scale, in_qp.zero_point) == (out_qp.scale, out_qp.zero_point):
            return q.long().clamp(out_qp.qmin, out_qp.qmax)
        y = (q.double() - in_qp.zero_point) * in_qp.scale
        return self._finish(y / out_qp.scale, out_qp)

    def _finish(self, y_over_s: torch.Tensor, out_qp: QuantParams) -> torch.Tensor:
        """Round half to even, add the zero point, clamp."""
        return (torch.round(y_over_s) + out_qp.zero_point).clamp(out_qp.qmin, out_qp.qmax).long()
