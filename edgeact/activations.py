"""The activation registry: one `ActivationDef` per activation, everything else is derived from it.

An activation is defined once — torch function, NumPy twin, analytic derivative, metadata — and the
int8 tables, fake-quant modules, PWL fits, plots and exporters all look it up here by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from edgeact import derivatives as d
from edgeact import functional as F
from edgeact import numpy_functional as nf
from edgeact.errors import UnsupportedError


@dataclass(frozen=True)
class ActivationDef:
    """What edgeact knows about one activation function."""

    name: str
    torch_fn: Callable[..., Any]
    numpy_fn: Callable[..., np.ndarray]
    derivative: Callable[..., np.ndarray]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    bounded_below: bool = False
    bounded_above: bool = False
    monotonic: bool = True
    smooth: bool = True
    piecewise_linear: bool = False
    range_of_interest: tuple[float, float] = (-8.0, 8.0)
    stands_in_for: str | None = None  # the smooth function a hard variant replaces
    hard_variant: str | None = None  # the hard (PWL-gated) variant that replaces this one
    learnable: tuple[str, ...] = ()  # parameters that may be trained (PReLU slope, Swish β)
    description: str = ""

    def params(self, **overrides: Any) -> dict[str, Any]:
        """Default parameters updated with `overrides`; unknown names are an error."""
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            raise UnsupportedError(
                f"activation {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"its parameters are {sorted(self.defaults) or 'none'}"
            )
        return {**self.defaults, **overrides}

    def numpy(self, x, **params) -> np.ndarray:
        return self.numpy_fn(x, **self.params(**params))

    def torch(self, x, **params):
        return self.torch_fn(x, **self.params(**params))

    def grad(self, x, **params) -> np.ndarray:
        return self.derivative(x, **self.params(**params))


def _def(name, **kw) -> ActivationDef:
    return ActivationDef(
        name=name,
        torch_fn=getattr(F, name),
        numpy_fn=getattr(nf, name),
        derivative=getattr(d, name),
        **kw,
    )


_DEFS = [
    _def("identity", smooth=True, piecewise_linear=True, description="linear; stacks collapse to one layer"),
    _def("sigmoid", bounded_below=True, bounded_above=True, hard_variant="hard_sigmoid",
         description="1/(1+e^-x); saturates, vanishing gradients in deep stacks"),
    _def("tanh", bounded_below=True, bounded_above=True, range_of_interest=(-4.0, 4.0),
         hard_variant="hard_tanh", description="zero-centred sigmoid; saturates"),
    _def("relu", bounded_below=True, smooth=False, piecewise_linear=True,
         description="max(0, x); units can die"),
    _def("leaky_relu", defaults={"negative_slope": 0.01}, smooth=False, piecewise_linear=True,
         description="small slope for x < 0 against dying ReLU"),
    _def("prelu", defaults={"weight": 0.25}, smooth=False, piecewise_linear=True, learnable=("weight",),
         description="leaky ReLU with a learnable slope, shared or per channel"),
    _def("relu6", bounded_below=True, bounded_above=True, smooth=False, piecewise_linear=True,
         description="min(max(0, x), 6); int8-friendly fixed range"),
    _def("selu", bounded_below=True, smooth=False,  # slope λα ≈ 1.76 left of 0, λ ≈ 1.05 right of it
         description="scaled ELU; self-normalising"),
    _def("elu", defaults={"alpha": 1.0}, bounded_below=True, description="x for x > 0, α(eˣ−1) below"),
    _def("softplus", bounded_below=True, description="ln(1+eˣ); Mish's inner function"),
    _def("swish", defaults={"beta": 1.0}, bounded_below=True, monotonic=False, hard_variant="hard_swish",
         learnable=("beta",), description="x·σ(βx) (SiLU at β=1)"),
    _def("hard_sigmoid", defaults={"alpha": 1.0 / 6.0, "beta": 0.5}, bounded_below=True, bounded_above=True,
         smooth=False, piecewise_linear=True, stands_in_for="sigmoid",
         description="clamp(αx+β, 0, 1): PWL stand-in for sigmoid"),
    _def("hard_tanh", defaults={"min_val": -1.0, "max_val": 1.0}, bounded_below=True, bounded_above=True,
         smooth=False, piecewise_linear=True, stands_in_for="tanh", range_of_interest=(-4.0, 4.0),
         description="clamp(x, −1, 1): PWL stand-in for tanh"),
    _def("hard_swish", bounded_below=True, monotonic=False, smooth=False, stands_in_for="swish",
         description="x·relu6(x+3)/6: piecewise-quadratic stand-in for swish (MobileNetV3)"),
    _def("mish", bounded_below=True, monotonic=False, hard_variant="hard_mish",
         description="x·tanh(softplus(x))"),
    _def("hard_mish", bounded_below=True, monotonic=False, smooth=False, stands_in_for="mish",
         description="0.5·x·clamp(x+2, 0, 2): piecewise-quadratic stand-in for mish"),
    _def("gelu", defaults={"approximate": "none"}, bounded_below=True, monotonic=False,
         description="x·Φ(x) (erf form) or its tanh approximation"),
]

REGISTRY: Mapping[str, ActivationDef] = MappingProxyType({a.name: a for a in _DEFS})

ALIASES: Mapping[str, str] = MappingProxyType({
    "linear": "identity", "none": "identity",
    "silu": "swish", "logistic": "sigmoid",
    "leakyrelu": "leaky_relu", "lrelu": "leaky_relu",
    "hardsigmoid": "hard_sigmoid", "hardswish": "hard_swish", "hswish": "hard_swish",
    "hardmish": "hard_mish", "hardtanh": "hard_tanh",
})


def canonical_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key.replace("_", ""), ALIASES.get(key, key))
    if key not in REGISTRY:
        raise UnsupportedError(
            f"unknown activation {name!r}; known: {', '.join(sorted(REGISTRY))} "
            f"(aliases: {', '.join(sorted(ALIASES))})"
        )
    return key


def get(name: str) -> ActivationDef:
    """Look an activation up by name or alias ('silu', 'hardswish', 'hard-swish', …)."""
    return REGISTRY[canonical_name(name)]


def names() -> list[str]:
    return list(REGISTRY)


@dataclass(frozen=True)
class BoundActivation:
    """An activation with its parameters fixed: the float64 function an int8 table is built from.

    `name` is the registry name for a registered activation (so a runtime's semantics can pick its
    native kernel), or something like 'pwl(swish,16)' for a fitted stand-in. A parameter given per
    channel (PReLU's slope) makes `channels` > 1 and the table (channels, 256).
    """

    name: str
    fn: Callable[..., np.ndarray]
    params: Mapping[str, Any] = field(default_factory=dict)
    definition: ActivationDef | None = None

    @property
    def channels(self) -> int | None:
        sizes = {np.size(v) for v in self.params.values() if isinstance(v, (np.ndarray, list, tuple))}
        sizes.discard(1)
        return sizes.pop() if sizes else None

    def __call__(self, x) -> np.ndarray:
        return self.fn(x, **self.params)

    def on_codes(self, x: np.ndarray) -> np.ndarray:
        """Evaluate on the 1-D vector of dequantized codes; (channels, n) when per channel."""
        if self.channels is None:
            scalar = {k: (float(np.asarray(v).reshape(-1)[0]) if isinstance(v, (np.ndarray, list, tuple)) else v)
                      for k, v in self.params.items()}
            return np.asarray(self.fn(x, **scalar), dtype=np.float64)
        per_ch = {k: (np.asarray(v, dtype=np.float64).reshape(-1, 1) if np.size(v) > 1 else v)
                  for k, v in self.params.items()}
        if self.name == "prelu":
            return np.asarray(self.fn(x[None, :], channel_axis=0, **per_ch), dtype=np.float64)
        return np.asarray(self.fn(x[None, :], **per_ch), dtype=np.float64)


def bind(activation, **params) -> BoundActivation:
    """A name, an `ActivationDef`, a `BoundActivation` or anything with `.bind()` (a PWL fit) → bound."""
    if isinstance(activation, BoundActivation):
        if params:
            return BoundActivation(activation.name, activation.fn, {**activation.params, **params},
                                   activation.definition)
        return activation
    if hasattr(activation, "bind") and not isinstance(activation, (str, ActivationDef)):
        return activation.bind(**params)
    definition = get(activation) if isinstance(activation, str) else activation
    return BoundActivation(definition.name, definition.numpy_fn, definition.params(**params), definition)
