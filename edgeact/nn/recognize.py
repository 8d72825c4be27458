"""Recognize an outside activation module (timm's HardMishMe, HardSwishMe, GELUTanh, …) by what it computes.

Libraries ship their own activation classes — timm alone has three implementations of each (plain,
`*Me` with a hand-written backward, scripted) — and edgeact cannot list them all by type. A module
that has no parameters, buffers or children and maps a tensor elementwise onto one of the registry's
functions (same shape, float32 values within 1e-5 over a sweep of [−10, 10]) *is* that activation,
whatever its class is called. torch.nn's own classes keep their table (`TORCH_EQUIVALENTS`, from the specs).
"""
from __future__ import annotations

import functools
import weakref

import torch
from torch import nn

from edgeact import activations as A

# Each spec lists the parameter sets to try (`ActivationDef.recognize`); none of today's agree on the sweep.
_SWEEP = torch.linspace(-10.0, 10.0, 4000).reshape(1, 4, 10, 100)
_cache: "weakref.WeakKeyDictionary[nn.Module, tuple[str, dict] | None]" = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=1)
def _candidate_outputs() -> tuple[tuple[str, dict, torch.Tensor], ...]:
    return tuple((name, dict(params), spec.torch_fn(_SWEEP.clone(), **params))
                 for name, spec in A.REGISTRY.items() for params in spec.recognize)


def _forget() -> None:
    _candidate_outputs.cache_clear()
    _cache.clear()


A.on_change(_forget)


def _eligible(module: nn.Module) -> bool:
    if type(module).__module__.startswith("torch.nn") or type(module).__module__.startswith("edgeact"):
        return False  # torch.nn's classes are in TORCH_EQUIVALENTS; edgeact's know their name
    return (next(module.parameters(recurse=False), None) is None and next(module.buffers(recurse=False), None) is None
            and next(module.children(), None) is None)


def recognize(module: nn.Module) -> tuple[str, dict] | None:
    """(registry name, parameters) of the activation `module` computes, or None if it is not one."""
    if module in _cache:
        return _cache[module]
    result = None
    if _eligible(module):
        was_training = module.training
        try:
            module.eval()
            with torch.no_grad():
                # .forward, not __call__: this may run while torch.fx traces (which patches Module.__call__);
                # a clone: 'inplace' activations write into their input
                y = module.forward(_SWEEP.clone())
        except Exception:  # not an elementwise function of one tensor
            y = None
        finally:
            module.train(was_training)
        if isinstance(y, torch.Tensor) and y.shape == _SWEEP.shape and y.dtype == _SWEEP.dtype:
            for name, params, ref in _candidate_outputs():
                if torch.allclose(y, ref, rtol=1e-5, atol=1e-5):
                    result = (name, dict(params))
                    break
    _cache[module] = result
    return result


__all__ = ["recognize"]
