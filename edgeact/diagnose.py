"""Diagnostics for the failure modes the seed notes describe, measured on a real model.

- Linear collapse: two affine layers with no nonlinearity between compute one affine map
  (W = W2·W1, B = W2·b1 + b2); `find_affine_chains` traces the model with torch.fx and lists such pairs.
  A pair whose middle width is below both outer widths is a low-rank factorisation (MobileNet's linear
  bottleneck, a separable conv) — deliberate, reported as a note; any other pair is a collapse: one layer
  of the merged shape computes exactly the same.
- Dying units: a unit (channel of a conv map, feature of a linear layer) whose activation has zero
  gradient for every input of a data set — for ReLU, a unit that never fires. It stops learning.
- Saturation: the fraction of outputs of a bounded activation (sigmoid, tanh, ReLU6, hard sigmoid…)
  within ε·(range) of its asymptotes, where its gradient (nearly) vanishes.
- Gradient norm per affine layer at initialisation: in a deep sigmoid stack the first layers get a tiny
  fraction of the last layer's gradient (vanishing gradients).
"""
from __future__ import annotations

import copy
import math
import operator
from dataclasses import asdict, dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from edgeact.activations import REGISTRY
from edgeact.errors import EdgeActError, UnsupportedError
from edgeact.nn.activations import TORCH_EQUIVALENTS, Activation

AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Modules and ops that are linear (or affine) in their tensor input: they do not separate two affine layers.
LINEAR_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Dropout, nn.Identity, nn.Flatten, nn.Unflatten,
                  nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
LINEAR_FUNCTIONS = {torch.flatten, torch.reshape, torch.cat, torch.mean, torch.add, torch.sub, operator.add,
                    operator.sub, operator.neg, operator.getitem, torch.squeeze, torch.unsqueeze, F.dropout,
                    F.avg_pool2d, F.adaptive_avg_pool2d, torch.transpose, torch.permute}
LINEAR_METHODS = {"flatten", "view", "reshape", "mean", "contiguous", "squeeze", "unsqueeze", "permute", "transpose",
                  "add", "sub", "sum"}
SCALING_OPS = {operator.mul, operator.truediv, torch.mul, torch.div}  # linear only when one side is a constant


class _LeafActivations(fx.Tracer):
    """Keeps activation modules (edgeact's and torch.nn's) as single nodes, so they are visible."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, Activation) or type(m) in TORCH_EQUIVALENTS or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    try:
        graph = _LeafActivations().trace(model)
    except Exception as exc:  # torch.fx raises many kinds on untraceable Python
        raise UnsupportedError(f"the model cannot be traced by torch.fx ({type(exc).__name__}: {exc}); the layer "
                               "check needs a forward without data-dependent Python control flow") from exc
    return fx.GraphModule(model, graph)


# -- linear collapse --------------------------------------------------------------------------------------------
def collapse_linear(first: nn.Linear, second: nn.Linear) -> nn.Linear:
    """One nn.Linear equal to second(first(x)): W = W2·W1, b = W2·b1 + b2 (computed in float64)."""
    w1, w2 = first.weight.detach().double(), second.weight.detach().double()
    b1 = first.bias.detach().double() if first.bias is not None else torch.zeros(w1.shape[0], dtype=torch.float64)
    b2 = second.bias.detach().double() if second.bias is not None else torch.zeros(w2.shape[0], dtype=torch.float64)
    merged = nn.Linear(w1.shape[1], w2.shape[0]).double()
    with torch.no_grad():
        merged.weight.copy_(w2 @ w1)
        merged.bias.copy_(w2 @ b1 + b2)
    return merged


def collapse_demo(in_features: int = 8, hidden: int = 16, out_features: int = 4, seed: int = 0, samples: int = 1000):
    """Two stacked linear layers vs the single collapsed one, on random inputs: the max |difference|."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    first, second = nn.Linear(in_features, hidden).double(), nn.Linear(hidden, out_features).double()
    merged = collapse_linear(first, second)
    x = torch.randn(samples, in_features, generator=g, dtype=torch.float64)
    with torch.no_grad():
        stacked, single = second(first(x)), merged(x)
        relu_between = second(torch.relu(first(x)))
    return {
        "W": merged.weight.detach(), "B": merged.bias.detach(),
        "max_abs_difference": float((stacked - single).abs().max()),
        "max_abs_difference_with_relu_between": float((relu_between - single).abs().max()),
        "output_scale": float(stacked.abs().max()),
    }


@dataclass
class AffineChain:
    """Two affine layers connected only through linear ops (BatchNorm, pooling, reshapes, additions)."""

    first: str
    second: str
    through: list[str]
    in_width: int
    middle_width: int
    out_width: int
    kind: str  # 'collapse' or 'factorisation'

    def describe(self) -> str:
        via = f" via {', '.join(self.through)}" if self.through else ""
        if self.kind == "factorisation":
            return (f"{self.first} → {self.second}{via}: no nonlinearity between, but a low-rank factorisation "
                    f"({self.in_width}→{self.middle_width}→{self.out_width}), as in a linear bottleneck — "
                    "deliberate, fine")
        return (f"{self.first} → {self.second}{via}: no nonlinearity between — together one affine map "
                f"{self.in_width}→{self.out_width} (W = W2·W1, B = W2·b1 + b2); the extra layer adds parameters but "
                "no expressive power. Put an activation between them, or merge them")


def _width_in(m: nn.Module) -> int:
    return m.in_features if isinstance(m, nn.Linear) else m.in_channels


def _width_out(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def _is_depthwise(m: nn.Module) -> bool:
    return not isinstance(m, nn.Linear) and m.groups > 1


def _is_linear_op(node: fx.Node, modules: dict) -> bool:
    if node.op == "call_module":
        m = modules[node.target]
        return isinstance(m, LINEAR_MODULES) or (isinstance(m, Activation) and m.activation_name == "identity")
    if node.op == "call_function":
        if node.target in SCALING_OPS:
            return sum(isinstance(a, fx.Node) for a in node.args) <= 1
        return node.target in LINEAR_FUNCTIONS
    if node.op == "call_method":
        if node.target in ("mul", "div"):
            return sum(isinstance(a, fx.Node) for a in node.args) <= 1
        return node.target in LINEAR_METHODS
    return False


def find_affine_chains(model: nn.Module) -> list[AffineChain]:
    """Every pair of affine layers (Linear / Conv) joined by linear ops only, in graph order."""
    gm = trace(model)
    modules = dict(gm.named_modules())
    chains = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], AFFINE):
            continue
        first = modules[node.target]
        frontier, seen = [(user, []) for user in node.users], set()
        while frontier:
            current, path = frontier.pop(0)
            if current in seen:
                continue
            seen.add(current)
            if current.op == "call_module" and isinstance(modules[current.target], AFFINE):
                second = modules[current.target]
                mid = _width_out(first)
                low_rank = mid < min(_width_in(first), _width_out(second))
                separable = _is_depthwise(first) != _is_depthwise(second)
                chains.append(AffineChain(str(node.target), str(current.target), path, _width_in(first), mid,
                                          _width_out(second), "factorisation" if low_rank or separable else "collapse"))
                continue
            if _is_linear_op(current, modules):
                label = str(current.target) if current.op == "call_module" else getattr(current.target, "__name__",
                                                                                        str(current.target))
                frontier += [(user, path + [label]) for user in current.users]
    return chains


# -- activations over a data set --------------------------------------------------------------------------------
@dataclass
class ActivationStats:
    """What one activation layer did over a data set."""

    layer: str
    activation: str
    units: int
    dead_units: int
    saturated_fraction: float | None  # None for an activation that is not bounded on both sides

    @property
    def dead_fraction(self) -> float:
        return self.dead_units / self.units if self.units else 0.0


def _activation_name(m: nn.Module) -> str | None:
    if isinstance(m, Activation):
        return m.bound().name
    return TORCH_EQUIVALENTS.get(type(m))


def _asymptotes(m: nn.Module) -> tuple[float, float] | None:
    name = _activation_name(m)
    d = REGISTRY.get(name) if name else None
    if d is None or not (d.bounded_below and d.bounded_above):
        return None
    with torch.no_grad():
        ends = m(torch.tensor([-1e4, 1e4], dtype=torch.float32))
    return float(ends[0]), float(ends[1])


def _any_per_unit(mask: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) → (C,): true where any sample / position is true; units are dimension 1."""
    if mask.dim() < 2:
        return mask.any().reshape(1)
    return mask.transpose(0, 1).reshape(mask.shape[1], -1).any(dim=1)


def activation_stats(model: nn.Module, batches, epsilon: float = 0.01) -> list[ActivationStats]:
    """Dead units and saturation for every activation module, over `batches` (tensors or (x, y) pairs).

    A unit is dead when the activation's derivative is exactly zero at every one of its inputs (all
    samples, all positions): for ReLU, it never fires. Saturated: |y − asymptote| < ε·(range).
    """
    model = model.eval()
    names = {m: n for n, m in model.named_modules() if _activation_name(m) not in (None, "identity")}
    if not names:
        return []
    alive: dict[nn.Module, torch.Tensor] = {}
    saturated: dict[nn.Module, list[int]] = {}
    ends = {m: _asymptotes(m) for m in names}

    def hook(module, inputs, output):
        x = inputs[0].detach().requires_grad_(True)
        with torch.enable_grad():
            y = module.forward(x)  # not module(x): that would call this hook again
            (grad,) = torch.autograd.grad(y.sum(), x)
        nonzero = _any_per_unit(grad != 0)
        alive[module] = nonzero if module not in alive else alive[module] | nonzero
        if ends[module] is not None:
            lo, hi = ends[module]
            tol = epsilon * (hi - lo)
            y = y.detach()
            near = ((y - lo).abs() < tol) | ((y - hi).abs() < tol)
            counts = saturated.setdefault(module, [0, 0])
            counts[0] += int(near.sum())
            counts[1] += near.numel()

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for h in handles:
            h.remove()
    stats = []
    for m, layer in names.items():
        if m not in alive:
            continue  # not reached by the forward pass
        sat = saturated.get(m)
        stats.append(ActivationStats(layer, _activation_name(m), int(alive[m].numel()), int((~alive[m]).sum()),
                                     sat[0] / sat[1] if sat else None))
    return stats


# -- gradients at initialisation ---------------------------------------------------------------------------------
@dataclass
class LayerGradient:
    layer: str
    weight_grad_norm: float


def reinitialised(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy with every submodule's parameters reset (`reset_parameters`) from `seed`: the model at init."""
    fresh = copy.deepcopy(model)
    torch.manual_seed(seed)
    for m in fresh.modules():
        if hasattr(m, "reset_parameters") and m is not fresh:
            m.reset_parameters()
    return fresh


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[LayerGradient]:
    """‖∂L/∂W‖ (Frobenius) of every affine layer for one cross-entropy step on (x, y), in forward order."""
    model = model.train()
    order: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, i, o: order.append(mod)) for m in model.modules()
               if isinstance(m, AFFINE)]
    try:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    finally:
        for h in handles:
            h.remove()
    names = {m: n for n, m in model.named_modules()}
    out, seen = [], set()
    for m in order:
        if m in seen or m.weight.grad is None:
            continue
        seen.add(m)
        out.append(LayerGradient(names[m], float(m.weight.grad.norm())))
    model.zero_grad(set_to_none=True)
    return out


# -- the whole diagnosis ---------------------------------------------------------------------------------------
DEAD_WARNING = 0.25  # warn when a layer has more than this fraction of dead units
SATURATION_WARNING = 0.5
VANISHING_RATIO = 1e-3  # warn when the first layer gets < 1/1000 of the last layer's gradient (3 orders of magnitude)


@dataclass
class Diagnosis:
    chains: list[AffineChain] = field(default_factory=list)
    activations: list[ActivationStats] = field(default_factory=list)
    gradients: list[LayerGradient] = field(default_factory=list)
    trace_error: str | None = None  # why the layer check could not run (an untraceable forward)

    @property
    def collapses(self) -> list[AffineChain]:
        return [c for c in self.chains if c.kind == "collapse"]

    @property
    def dead_layers(self) -> list[ActivationStats]:
        return [s for s in self.activations if s.dead_fraction > DEAD_WARNING]

    @property
    def saturated_layers(self) -> list[ActivationStats]:
        return [s for s in self.activations
                if s.saturated_fraction is not None and s.saturated_fraction > SATURATION_WARNING]

    @property
    def gradient_ratio(self) -> float | None:
        """‖∂L/∂W‖ of the first affine layer over that of the last, at initialisation."""
        if len(self.gradients) < 2 or self.gradients[-1].weight_grad_norm == 0:
            return None
        return self.gradients[0].weight_grad_norm / self.gradients[-1].weight_grad_norm

    @property
    def vanishing(self) -> bool:
        return self.gradient_ratio is not None and self.gradient_ratio < VANISHING_RATIO

    def warnings(self) -> list[str]:
        out = [f"linear collapse: {c.describe()}" for c in self.collapses]
        out += [f"dying units: {s.layer} ({s.activation}) — {s.dead_units} of {s.units} units "
                f"({100 * s.dead_fraction:.0f}%) never pass a gradient on this data" for s in self.dead_layers]
        out += [f"saturation: {s.layer} ({s.activation}) — {100 * s.saturated_fraction:.0f}% of outputs at its "
                "asymptotes, where the gradient vanishes" for s in self.saturated_layers]
        if self.vanishing:
            out.append(f"vanishing gradients at initialisation: the first layer gets {self.gradient_ratio:.2g}× the "
                       f"last layer's gradient norm ({self.gradients[0].layer} vs {self.gradients[-1].layer})")
        return out

    @property
    def healthy(self) -> bool:
        return not self.warnings()

    def to_dict(self) -> dict:
        return {"chains": [asdict(c) for c in self.chains],
                "activations": [asdict(s) | {"dead_fraction": s.dead_fraction} for s in self.activations],
                "gradients_at_init": [asdict(g) for g in self.gradients], "gradient_ratio": self.gradient_ratio,
                "warnings": self.warnings(), "trace_error": self.trace_error}

    def to_markdown(self) -> str:
        from edgeact.markdown import markdown_table

        parts = ["## Warnings\n", *(f"- {w}\n" for w in self.warnings())] if self.warnings() else ["No warnings.\n"]
        if self.trace_error:
            parts.append(f"\nLayer check skipped: {self.trace_error}\n")
        notes = [c for c in self.chains if c.kind == "factorisation"]
        if notes:
            parts += ["\n## Notes\n", *(f"- {c.describe()}\n" for c in notes)]
        if self.activations:
            rows = [{"layer": s.layer, "act": s.activation, "units": s.units, "dead": s.dead_units,
                     "dead %": 100 * s.dead_fraction,
                     "saturated %": None if s.saturated_fraction is None else 100 * s.saturated_fraction}
                    for s in self.activations]
            parts += ["\n## Activations over the data\n", markdown_table(rows, list(rows[0]))]
        if self.gradients:
            rows = [{"layer": g.layer, "‖∂L/∂W‖ at init": g.weight_grad_norm} for g in self.gradients]
            parts += ["\n## Gradient norm per layer at initialisation\n", markdown_table(rows, list(rows[0]))]
            if self.gradient_ratio is not None:
                parts.append(f"\nfirst / last layer: {self.gradient_ratio:.3g}\n")
        return "".join(parts)


def diagnose(model: nn.Module, batches, labels_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
             epsilon: float = 0.01, init_seed: int = 0) -> Diagnosis:
    """Affine chains, activation statistics over `batches`, gradient norms of the model at initialisation.

    `labels_batch`: one (x, y) batch for the gradient step (default: the first of `batches`, which must
    then be (x, y) pairs).
    """
    batches = list(batches)
    if not batches:
        raise EdgeActError("diagnose needs at least one batch of inputs; pass a data set with samples in it")
    if labels_batch is None:
        first = batches[0]
        labels_batch = first if isinstance(first, (tuple, list)) and len(first) == 2 else None
    chains, trace_error = [], None
    try:
        chains = find_affine_chains(model)
    except UnsupportedError as exc:
        trace_error = str(exc)
    stats = activation_stats(model, batches, epsilon)
    gradients = []
    if labels_batch is not None:
        gradients = gradient_norms(reinitialised(model, init_seed), *labels_batch)
    for g in gradients:
        if not math.isfinite(g.weight_grad_norm):
            raise EdgeActError(f"gradient of {g.layer} is not finite at initialisation; check the model's inputs")
    return Diagnosis(chains, stats, gradients, trace_error)
