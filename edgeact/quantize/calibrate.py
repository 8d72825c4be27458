"""Calibration (PTQ) and the switch to quantization-aware training."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from edgeact.errors import QuantizationError
from edgeact.quantize.prepare import quantizers, set_mode


MAX_ABS = 1e8  # larger calibration values are no activation range; their int8 grid would flush data to 0


def _batches(data, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(data, (torch.Tensor, np.ndarray)):
        data = torch.as_tensor(data)
        if data.ndim == 0:
            raise QuantizationError("calibration data is a single number; pass a batch (N, …) of inputs")
        for i in range(0, len(data), batch_size):
            yield data[i:i + batch_size]
        return
    if data is None or isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
        raise QuantizationError(f"calibration data must be a tensor or an iterable of batches (a DataLoader), not "
                                f"{type(data).__name__}")
    for item in data:
        yield item[0] if isinstance(item, (tuple, list)) else item


def check_batch(x, index: int) -> torch.Tensor:
    """One calibration batch: a float tensor (NumPy accepted) with at least one row, finite values and
    magnitudes an int8 grid can hold; QuantizationError naming the batch otherwise."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise QuantizationError(f"calibration batch {index} has dtype {x.dtype}; pass float tensors")
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise QuantizationError(f"calibration batch {index} is a {type(x).__name__}, not a tensor; pass tensors "
                                "or (input, label) pairs")
    if not x.is_floating_point():
        raise QuantizationError(f"calibration batch {index} has dtype {x.dtype}; the model takes float inputs — "
                                "convert with x.float() (and scale it as in training)")
    if x.ndim == 0 or x.shape[0] == 0:
        raise QuantizationError(f"calibration batch {index} is empty (shape {tuple(x.shape)}); give at least one row")
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        raise QuantizationError(f"calibration batch {index} holds {int((~finite).sum())} NaN/Inf value(s); a range "
                                "with NaN/Inf has no int8 grid — clean the data")
    big = float(x.abs().max())
    if big > MAX_ABS:
        raise QuantizationError(f"calibration batch {index} holds values up to {big:.3g}; an int8 grid over that "
                                f"range (step {2 * big / 255:.3g}) turns every realistic input into one code — "
                                f"normalise the data as for training (|x| ≤ {MAX_ABS:.0e})")
    return x


def calibrate(model: nn.Module, data, batch_size: int = 64, progress: bool = True) -> nn.Module:
    """Run `data` through a prepared model to observe ranges, then fix them (PTQ).

    `data`: a tensor (split into batches), or an iterable of tensors or (input, label) pairs.
    Afterwards the model fake-quantizes with the calibrated parameters.
    """
    if not quantizers(model):
        raise QuantizationError("calibrate() needs a model returned by edgeact.prepare()")
    set_mode(model, observe=True, fake_quant=False)
    model.eval()
    seen = 0
    with torch.no_grad():
        for i, x in enumerate(tqdm(list(_batches(data, batch_size)), desc="calibrating", disable=not progress,
                                   leave=False)):
            x = check_batch(x, i)
            if seen == 0:
                model.edgeact_example = x[:1].detach().clone()
            try:
                model(x)
            except (RuntimeError, TypeError, ValueError, IndexError) as exc:
                if isinstance(exc, QuantizationError):
                    raise
                first = tuple(model.edgeact_example.shape[1:])
                raise QuantizationError(f"calibration batch {i} (shape {tuple(x.shape)}) does not fit the model "
                                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); pass batches "
                                        f"shaped like the model's input, (N, {', '.join(map(str, first))}) for the "
                                        "first one") from None
            seen += len(x)
    if seen == 0:
        raise QuantizationError("calibration data is empty: pass at least one batch of representative inputs")
    set_mode(model, observe=False, fake_quant=True)
    for q in quantizers(model):
        if q.axis is None:
            q.freeze()  # computes and checks every range now, naming the tensor if one is empty
    return model


def start_qat(model: nn.Module) -> nn.Module:
    """Quantization-aware training: fake quantization on, ranges keep adapting, train mode."""
    if not quantizers(model):
        raise QuantizationError("start_qat() needs a model returned by edgeact.prepare()")
    needs_init = any(q.axis is None and not q.calibrated for q in quantizers(model))
    if needs_init:
        raise QuantizationError("run calibrate() once before QAT so every range starts from data")
    set_mode(model, observe=True, fake_quant=True)
    return model.train()


def freeze(model: nn.Module) -> nn.Module:
    """Stop observing (end of QAT): the current ranges become final."""
    set_mode(model, observe=False, fake_quant=True)
    for q in quantizers(model):
        if q.axis is None:
            q.freeze()
    return model.eval()
