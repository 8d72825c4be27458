"""What an activation spec is (`ActivationDef`) and the nn.Module every registry activation becomes.

Kept apart from the package's `__init__` so that a spec file can import it while the registry is still
being filled (the package imports every spec file when it loads).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from edgeact.errors import UnsupportedError


def f64(x) -> np.ndarray:
    """The NumPy twins compute in float64, whatever they are given."""
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class ActivationDef:
    """Everything edgeact knows about one activation function — its one definition.

    The torch function, NumPy twin (float64, from the formula, not from torch) and analytic derivative
    are required; the rest has defaults. `edgeact.functional`, `.numpy_functional`, `.derivatives` and
    `edgeact.nn` are views of these fields, and a backend registers its native lowering under `name`.
    """

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
    # the output range every int8 runtime's native kernel quantizes to, whatever the data (the TFLite spec:
    # LOGISTIC (1/256, −128), TANH (1/128, 0); torch.ao's fixed-qparams ops likewise): prepare() fixes the
    # output parameters to it instead of calibrating them, so the native kernel serves without a requantization
    fixed_output_range: tuple[float, float] | None = None
    description: str = ""
    # -- names and modules ------------------------------------------------------------------------
    aliases: tuple[str, ...] = ()  # other names users type ('silu', 'hardswish'); '-' and '_' are ignored
    module_name: str | None = None  # the edgeact.nn class name; default: CamelCase of `name`
    module: type | None = None  # a hand-written edgeact.nn class (learnable parameters); default: generated
    module_aliases: tuple[str, ...] = ()  # more edgeact.nn names for the same class (SiLU)
    torch_modules: tuple[type, ...] = ()  # torch.nn classes computing it, swapped by prepare
    # torch functions computing it (F.hardswish …) → the parameter names of their positional arguments
    # after x; prepare() swaps these calls (and calls of `torch_fn`, whose positional parameters are
    # `defaults` in order)
    torch_functions: Mapping[Callable[..., Any], tuple[str, ...]] = field(default_factory=dict)
    # (torch module, the edgeact.nn class) → the edgeact module with its parameters, or None if this
    # instance computes something else (nn.Softplus with beta ≠ 1). Default: the class with no arguments.
    from_torch: Callable[[nn.Module, type], nn.Module | None] | None = None
    # parameter sets tried when recognizing an outside module by what it computes (edgeact.nn.recognize)
    recognize: tuple[Mapping[str, Any], ...] = ({},)

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

    def __reduce__(self):
        # by name: a spec holds functions (lambdas too) that pickle need not see; a saved model finds
        # its activation in the registry when it loads
        from edgeact.activations import get

        return get, (self.name,)

    @property
    def class_name(self) -> str:
        return self.module_name or "".join(p[:1].upper() + p[1:] for p in self.name.split("_"))


class Activation(nn.Module):
    """Base of edgeact.nn's activation modules: a registry activation with fixed parameters.

    Each knows its registry name and hands its current parameters to the table builder through
    `bound()`, which is how a learnable PReLU slope or Swish β reaches the int8 table.
    """

    activation_name = "identity"

    def __init__(self, **params):
        super().__init__()
        self.params = params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from edgeact.activations import REGISTRY  # by its registry name: no alias resolution per call

        return REGISTRY[self.activation_name].torch_fn(x, **self.params)

    def bound(self):
        from edgeact.activations import bind

        return bind(self.activation_name, **self.params)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items())


def generated_module(spec: ActivationDef) -> type:
    """The edgeact.nn class of a spec without a hand-written one: parameters are its defaults, in order,
    positional or by keyword (`LeakyReLU(0.1)`, `HardTanh(min_val=0.0)`)."""
    keys = list(spec.defaults)

    def __init__(self, *args, **params):
        if len(args) > len(keys):
            raise TypeError(f"{spec.class_name}() takes at most {len(keys)} parameter(s) {keys}, got {len(args)}")
        Activation.__init__(self, **spec.params(**dict(zip(keys, args)), **params))

    doc = spec.description or spec.name
    cls = type(spec.class_name, (Activation,), {"activation_name": spec.name, "__init__": __init__,
                                                "__doc__": doc[:1].upper() + doc[1:] + "."})
    cls.__module__ = "edgeact.nn.activations"
    return cls
