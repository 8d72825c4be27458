"""AdamW with a cosine schedule, as `fit` uses them: torch.optim's arithmetic without importing torch.optim.

torch.optim imports torch._dynamo the first time an optimizer is built, which every fresh process pays —
each worker of a study on Ray, the demo's first run (benchmarks/RESULTS-ray.md, session 7). This is
torch.optim.AdamW's single-tensor update (the path it takes on the CPU) operation for operation, and
LambdaLR's learning rate (base · factor(step)), so a run gives the bits torch.optim gives
(`tests/test_train_optim.py` checks it).
"""
from __future__ import annotations

import math

import torch


class AdamW:
    """torch.optim.AdamW(params, lr, weight_decay) — betas (0.9, 0.999), eps 1e-8, no amsgrad — whose
    learning rate `step(lr)` takes each step, as a scheduler would have set it."""

    def __init__(self, params, weight_decay: float = 1e-2, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.weight_decay, (self.beta1, self.beta2), self.eps = weight_decay, betas, eps
        self.state: dict[int, tuple[int, torch.Tensor, torch.Tensor]] = {}  # per parameter, from its first gradient

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        beta1, beta2, eps = self.beta1, self.beta2, self.eps
        for i, param in enumerate(self.params):
            grad = param.grad
            if grad is None:  # torch.optim skips it too, its step count included
                continue
            if i not in self.state:
                self.state[i] = (0, torch.zeros_like(param, memory_format=torch.preserve_format),
                                 torch.zeros_like(param, memory_format=torch.preserve_format))
            steps, exp_avg, exp_avg_sq = self.state[i]
            steps += 1
            self.state[i] = (steps, exp_avg, exp_avg_sq)
            param.mul_(1 - lr * self.weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = float(steps)  # torch.optim counts in a float32 tensor and reads it back: the same integer
            step_size = lr / (1 - beta1 ** step)
            denom = (exp_avg_sq.sqrt() / (1 - beta2 ** step) ** 0.5).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)


def cosine_lr(base_lr: float, step: int, total: int) -> float:
    """The rate of step `step` (from 0) of `total` on a cosine from base_lr to 0 (LambdaLR's base · factor)."""
    return base_lr * (0.5 * (1 + math.cos(math.pi * step / total)))
