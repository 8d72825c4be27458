"""Calibration (PTQ) and the switch to quantization-aware training."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from edgeact.errors import QuantizationError
from edgeact.quantize.prepare import quantizers, set_mode


def _batches(data, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        for i in range(0, len(data), batch_size):
            yield data[i:i + batch_size]
        return
    for item in data:
        yield item[0] if isinstance(item, (tuple, list)) else item


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
        for x in tqdm(list(_batches(data, batch_size)), desc="calibrating", disable=not progress, leave=False):
            if seen == 0:
                model.edgeact_example = x[:1].detach().clone()
            model(x)
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
    needs_init = any(q.axis is None and not q.observer.has_data for q in quantizers(model))
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
