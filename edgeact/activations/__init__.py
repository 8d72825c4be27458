"""The activation registry: one spec file per activation, everything else is derived from it.

Each activation is defined once, in `edgeact/activations/<name>.py`, as `SPEC = ActivationDef(...)`: torch
function, NumPy twin, analytic derivative, nn module, hard/PWL variant and metadata. The package finds
those files by name when it loads; `register()` adds a spec from anywhere else (a user's own module).
`edgeact.functional`, `edgeact.numpy_functional`, `edgeact.derivatives` and `edgeact.nn` are views of
the registry, and the int8 tables, fake-quant modules, PWL fits, plots and exporters look activations up
here by name; a backend keys its native lowerings by the same name.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from edgeact.activations._base import Activation, ActivationDef, generated_module
from edgeact.errors import UnsupportedError

_DEFS: dict[str, ActivationDef] = {}
_ALIASES: dict[str, str] = {}
_MODULES: dict[str, type] = {}  # name → edgeact.nn class
TORCH_EQUIVALENTS: dict[type, str] = {}  # torch.nn class → name (kept up to date in place by register)
# torch function (F.hardswish, torch.relu, a spec's torch_fn) → (name, names of its positional parameters)
TORCH_FUNCTIONS: dict[Any, tuple[str, tuple[str, ...]]] = {}
REGISTRY: Mapping[str, ActivationDef] = MappingProxyType(_DEFS)
ALIASES: Mapping[str, str] = MappingProxyType(_ALIASES)
_listeners: list[Callable[[], None]] = []  # caches derived from the registry (recognize's sweep)


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register(spec: ActivationDef, *, replace: bool = False) -> ActivationDef:
    """Add `spec` to the registry (and its aliases, nn module and torch.nn equivalents); returns it."""
    if not isinstance(spec, ActivationDef):
        raise UnsupportedError(f"register() takes an ActivationDef, not {type(spec).__name__}; "
                               "define SPEC = ActivationDef(name=..., torch_fn=..., numpy_fn=..., derivative=...)")
    name = spec.name
    if name != _key(name) or not name.isidentifier():
        raise UnsupportedError(f"activation name {name!r} must be a lower-case Python identifier (e.g. 'hard_mish')")
    keys = {_key(a).replace("_", "") for a in (name, *spec.aliases)} - {name}
    taken = sorted(k for k in keys if _ALIASES.get(k, name) != name or (k in _DEFS and k != name))
    if (name in _DEFS and not replace) or taken:
        raise UnsupportedError(f"activation name(s) {[name] if name in _DEFS else taken} already registered; "
                               "pick another name or pass replace=True")
    if name in _DEFS:
        unregister(name)
    _DEFS[name] = spec
    for k in keys:  # 'hardswish' as well as 'hard_swish' / 'hard-swish'
        _ALIASES[k] = name
    cls = spec.module or generated_module(spec)
    _MODULES[name] = cls
    for t in spec.torch_modules:
        TORCH_EQUIVALENTS[t] = name
    if not spec.learnable:  # a learnable parameter comes from a module, not a call
        TORCH_FUNCTIONS[spec.torch_fn] = (name, tuple(spec.defaults))
    for fn, positional in spec.torch_functions.items():
        TORCH_FUNCTIONS[fn] = (name, tuple(positional))
    for listener in _listeners:
        listener()
    return spec


def unregister(name: str) -> None:
    """Remove a registered activation (a test's own, say) with its aliases and torch.nn equivalents."""
    spec = _DEFS.pop(name)
    for k in [k for k, v in _ALIASES.items() if v == name]:
        del _ALIASES[k]
    _MODULES.pop(name, None)
    for t in spec.torch_modules:
        TORCH_EQUIVALENTS.pop(t, None)
    for fn in [fn for fn, (n, _) in TORCH_FUNCTIONS.items() if n == name]:
        del TORCH_FUNCTIONS[fn]
    for listener in _listeners:
        listener()


def on_change(listener: Callable[[], None]) -> None:
    """Call `listener` whenever the registry changes (for caches derived from it)."""
    _listeners.append(listener)


def canonical_name(name: str) -> str:
    key = _key(name)
    key = _ALIASES.get(key.replace("_", ""), _ALIASES.get(key, key))
    if key not in _DEFS:
        raise UnsupportedError(
            f"unknown activation {name!r}; known: {', '.join(sorted(_DEFS))} "
            f"(aliases: {', '.join(sorted(_ALIASES))})"
        )
    return key


def get(name: str) -> ActivationDef:
    """Look an activation up by name or alias ('silu', 'hardswish', 'hard-swish', …)."""
    return _DEFS[canonical_name(name)]


def names() -> list[str]:
    return list(_DEFS)


def view(module: str, attr: str) -> tuple[dict[str, Callable], Callable[[str], Callable]]:
    """One spec attribute ('torch_fn', 'numpy_fn', 'derivative') of every activation, for a module that is a
    view of the registry (edgeact.functional, numpy_functional, derivatives): its functions by name, and a
    module `__getattr__` that finds activations registered later."""

    def __getattr__(name: str) -> Callable:
        if name in _DEFS:
            return getattr(_DEFS[name], attr)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return {name: getattr(spec, attr) for name, spec in _DEFS.items()}, __getattr__


def module_class(name: str) -> type:
    """The edgeact.nn class of an activation (name or alias)."""
    return _MODULES[canonical_name(name)]


def module_classes() -> dict[str, type]:
    """edgeact.nn class name → class, for every registered activation (with `module_aliases`)."""
    out = {}
    for name, cls in _MODULES.items():
        for n in (cls.__name__, *_DEFS[name].module_aliases):
            out[n] = cls
    return out


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

    def __reduce_ex__(self, protocol):
        if self.definition is not None and self.fn is self.definition.numpy_fn:
            return _rebound, (self.name, dict(self.params))  # by name, as ActivationDef pickles
        return super().__reduce_ex__(protocol)

    def on_codes(self, x: np.ndarray) -> np.ndarray:
        """Evaluate on the 1-D vector of dequantized codes; (channels, n) when per channel."""
        if self.channels is None:
            return np.asarray(self.fn(x, **self._scalar_params()), dtype=np.float64)
        per_ch = {k: (np.asarray(v, dtype=np.float64).reshape(-1, 1) if np.size(v) > 1 else v)
                  for k, v in self.params.items()}
        if self.name == "prelu":
            return np.asarray(self.fn(x[None, :], channel_axis=0, **per_ch), dtype=np.float64)
        return np.asarray(self.fn(x[None, :], **per_ch), dtype=np.float64)

    def slopes_on_codes(self, x: np.ndarray) -> np.ndarray | None:
        """The analytic derivative on the 1-D vector of dequantized codes (float64), for a registry activation
        with per-tensor parameters; None otherwise (a fitted stand-in, a per-channel slope)."""
        if self.definition is None or self.channels is not None:
            return None
        slopes = np.asarray(self.definition.derivative(x, **self._scalar_params()), dtype=np.float64)
        return np.broadcast_to(slopes, x.shape)

    def _scalar_params(self) -> dict:
        return {k: (float(np.asarray(v).reshape(-1)[0]) if isinstance(v, (np.ndarray, list, tuple)) else v)
                for k, v in self.params.items()}


def _rebound(name: str, params: dict) -> BoundActivation:
    definition = get(name)
    return BoundActivation(definition.name, definition.numpy_fn, params, definition)


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


def _load_builtin() -> None:
    """Register every spec file of this package (`<name>.py` defining SPEC), in name order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            register(importlib.import_module(f"{__name__}.{info.name}").SPEC)


_load_builtin()

__all__ = [
    "ActivationDef", "BoundActivation", "Activation", "REGISTRY", "ALIASES", "TORCH_EQUIVALENTS", "TORCH_FUNCTIONS",
    "register",
    "unregister", "canonical_name", "get", "names", "bind", "view", "module_class", "module_classes", "on_change",
]
