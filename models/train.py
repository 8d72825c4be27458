"""Training and evaluation on digits: one seeded, deterministic loop for float training and QAT.

The loop takes any nn.Module, so the same code trains a float reference model and fine-tunes a model
prepared for quantization-aware training (`qat_finetune`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .data import Digits
from .optim import AdamW, cosine_lr

DEFAULT_SEED = 0


@dataclass
class TrainResult:
    """What a training run measured: per-epoch loss, final test accuracy (%), wall time (s)."""

    epochs: int
    losses: list[float] = field(default_factory=list)
    test_accuracy: float = float("nan")
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time: on a shared machine, wall time ≈ cpu_seconds / threads
    threads: int = 0


@torch.no_grad()
def evaluate(model: nn.Module, data: Digits) -> float:
    """Top-1 accuracy (%) on the test split; the model is left in eval mode."""
    model.eval()
    correct = 0
    for x, y in data.test_loader():
        correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / len(data.y_test)


def _shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ±max_shift pixels (zero fill = background −1): cheap augmentation."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = (torch.arange(h)[None, :] + dy[:, None])  # (n, h)
    cols = (torch.arange(w)[None, :] + dx[:, None])  # (n, w)
    idx = torch.arange(n)[:, None, None]
    return padded[:, 0][idx, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def fit(model: nn.Module, data: Digits, epochs: int, *, lr: float = 3e-3, weight_decay: float = 1e-4,
        batch_size: int = 64, seed: int = DEFAULT_SEED, max_shift: int = 0, progress: bool = False,
        description: str = "train", evaluate_at_end: bool = True) -> TrainResult:
    """AdamW with a cosine learning-rate schedule; shuffling and augmentation drawn from `seed`.

    Deterministic for a given seed, data and thread count. Returns the measured TrainResult.
    """
    import time

    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    loader = data.train_loader(batch_size=batch_size, seed=seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = AdamW(params, weight_decay=weight_decay)
    total, step = max(1, epochs * len(loader)), 0
    result = TrainResult(epochs=epochs, threads=torch.get_num_threads())
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(range(epochs), desc=description, unit="epoch", disable=not progress, leave=False)
    for _ in bar:
        model.train()
        running, seen = 0.0, 0
        for x, y in loader:
            x = _shift(x, max_shift, generator)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step(cosine_lr(lr, step, total))
            step += 1
            running += float(loss.detach()) * len(y)
            seen += len(y)
        result.losses.append(running / seen)
        bar.set_postfix(loss=f"{result.losses[-1]:.4f}")
    if evaluate_at_end:
        result.test_accuracy = evaluate(model, data)
    result.seconds = time.perf_counter() - start
    result.cpu_seconds = time.process_time() - cpu_start
    return result


def qat_finetune(prepared_model: nn.Module, data: Digits, epochs: int = 2, *, lr: float = 2e-4,
                 seed: int = DEFAULT_SEED, progress: bool = False, **kwargs) -> TrainResult:
    """Quantization-aware fine-tuning of a model from `edgeact.prepare`, initialised from trained weights.

    Calibrates first if no range has been observed yet, switches to QAT (`edgeact.start_qat`: fake
    quantization on, ranges still adapting), trains a few epochs at a small learning rate — enough for
    the weights to adapt to the int8 grid without leaving the float solution — then freezes the ranges
    (`edgeact.freeze`) and measures test accuracy of the frozen fake-quant model. The test images never
    reach an observer. A plain nn.Module (no quantizers) is simply fine-tuned.
    """
    from edgeact.quantize import calibrate, freeze, quantizers, start_qat

    quantized = bool(quantizers(prepared_model))
    if quantized:
        if any(q.axis is None and not q.calibrated for q in quantizers(prepared_model)):
            calibrate(prepared_model, data.calibration_batches(), progress=False)
        start_qat(prepared_model)
    result = fit(prepared_model, data, epochs, lr=lr, seed=seed, progress=progress, description="QAT",
                 evaluate_at_end=False, **kwargs)
    if quantized:
        freeze(prepared_model)
    result.test_accuracy = evaluate(prepared_model, data)
    return result
