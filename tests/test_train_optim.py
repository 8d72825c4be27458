"""models.optim against torch.optim itself: the same bits, step for step, and `fit` as a torch.optim loop."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeact.models import build, digits_for, fit
from edgeact.models.optim import AdamW, cosine_lr


class _TwoHeads(nn.Module):
    """A conv in channels-last memory and a head that only some steps use (its gradient is then None)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3).to(memory_format=torch.channels_last)
        self.a, self.b = nn.Linear(36 * 4, 10), nn.Linear(36 * 4, 10)

    def forward(self, x, use_b: bool):
        h = torch.relu(self.conv(x)).flatten(1)
        return self.a(h) + (self.b(h) if use_b else 0)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-4, 0.05])
def test_adamw_gives_torch_optims_bits_step_for_step(weight_decay):
    torch.manual_seed(0)
    ours = _TwoHeads()
    ref = copy.deepcopy(ours)
    total, base = 12, 3e-3
    opt = AdamW(ours.parameters(), weight_decay=weight_decay)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=base, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(ref_opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    gen = torch.Generator().manual_seed(1)
    for step in range(total):
        x, y = torch.randn(8, 1, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)
        use_b = step % 3 != 1  # head b misses some steps: no gradient, no step count
        for model, optimizer in ((ours, opt), (ref, ref_opt)):
            optimizer.zero_grad()
            F.cross_entropy(model(x, use_b), y).backward()
        opt.step(cosine_lr(base, step, total))
        ref_opt.step()
        schedule.step()
        for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
            assert torch.equal(p, q), f"step {step}: {name} differs from torch.optim.AdamW"
    for i, p in enumerate(ref.parameters()):
        steps, exp_avg, exp_avg_sq = opt.state[i]
        state = ref_opt.state[p]
        assert steps == int(state["step"]) and torch.equal(exp_avg, state["exp_avg"])
        assert torch.equal(exp_avg_sq, state["exp_avg_sq"])
        assert exp_avg.stride() == state["exp_avg"].stride()  # channels-last state for a channels-last weight


def test_fit_is_a_torch_optim_loop_bit_for_bit():
    """`fit` with models.optim gives the weights of the loop written with torch.optim.AdamW and LambdaLR."""
    data = digits_for("mlp")
    model = build("mlp", "relu", seed=3)
    ref = copy.deepcopy(model)
    fit(model, data, epochs=2, lr=3e-3, seed=3, evaluate_at_end=False)

    torch.manual_seed(3)
    loader = data.train_loader(batch_size=64, seed=3)
    opt = torch.optim.AdamW([p for p in ref.parameters() if p.requires_grad], lr=3e-3, weight_decay=1e-4)
    total = 2 * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    ref.train()
    for _ in range(2):
        for x, y in loader:
            loss = F.cross_entropy(ref(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
    for (name, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name

