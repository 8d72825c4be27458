"""Backends: the runtime × kernel family × CPU a model is converted for, chosen once, by name.

"Which integer arithmetic" is a property of runtime, kernel set and CPU together (onnxruntime's u8s8
conv saturates on AVX2 and not on VNNI; LiteRT's NEON HARD_SWISH rounds ties unlike x86's; XNNPACK and
LiteRT's builtin kernels disagree). A `Backend` names one such combination and owns, in its runtime's
package under `edgeact.export` (one package per runtime):

- `arithmetic`: the integer semantics of every op, reproduced in NumPy/torch (`edgeact.arithmetic`);
- `plan_activation`: each activation's lowering (native kernel or exact table), decided at convert and
  recorded on the converted model, so the writer writes it and never decides again;
- `write` and `verify`: the file writer and the run of the file in its runtime.

Names a user types: 'RUNTIME' or 'RUNTIME:VARIANT' (`edgeact targets` and `backends()` list them);
'RUNTIME:host' is the variant this machine runs. The strings of edgeact 0.1 ('tflite',
'onnxruntime-aarch64', …) are accepted as aliases.
"""
from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import numpy as np

from edgeact.errors import UnsupportedError

# Packages that register backends when imported (one per runtime).
RUNTIME_PACKAGES = ("edgeact.export.onnxruntime", "edgeact.export.litert")
ALIASES = {
    "tflite": "litert", "tflite-builtin": "litert:builtin", "tflite-reference": "litert:reference",
    "tflite-aarch64": "litert:aarch64", "onnxruntime-aarch64": "onnxruntime:aarch64",
    "tflite-runtime-armv7": "tflite-runtime:armv7", "onnxruntime-x86-avx2": "onnxruntime:x86-avx2",
}
_REGISTRY: dict[str, "Backend"] = {}


@dataclass(frozen=True)
class ActivationPlan:
    """How one activation is lowered for a backend, and the codes that lowering computes.

    lowering: 'native' (the runtime's own op), 'table' (an exact lookup table), 'chain' (a few int8 ops the
    runtime's fast path runs) or 'none' (identity between equal parameters: no op at all). Which ops a file
    holds is recorded by its writer in the file's metadata.
    """

    lowering: str
    table: np.ndarray


class Backend:
    """One runtime × kernel family × CPU. Subclasses (one per runtime package) write and verify files."""

    format: str | None = None  # 'onnx' or 'tflite'; None: no file (the ideal arithmetic)

    def __init__(self, name: str, *, runtime: str, cpu: str, kernels: str, description: str,
                 arithmetic: Callable[[], Any], default_kernels: bool = True, families: tuple[str, ...] = ()):
        self.name, self.runtime, self.cpu, self.kernels = name, runtime, cpu, kernels
        self.description = description
        # Whether the runtime runs these kernels unless told otherwise ('RUNTIME:host' picks only such).
        self.default_kernels = default_kernels
        # x86-64 kernel families (`x86_kernel_family`) 'RUNTIME:host' picks this backend on; () = any.
        self.families = families
        self._arithmetic = arithmetic

    @cached_property
    def arithmetic(self):
        """The integer semantics of this backend's kernels (an `edgeact.arithmetic.Arithmetic`)."""
        return self._arithmetic()

    @property
    def prefer(self) -> str:
        """The CPU whose cheapest exact lowering to pick: 'arm' or 'x86'."""
        return "arm" if self.cpu in ("aarch64", "armv7") else "x86"

    def plan_activation(self, act, in_qp, out_qp, requested: str | None = None) -> ActivationPlan:
        """The lowering of `act` and its codes; `requested` 'native' / 'table' forces one."""
        if requested not in (None, "table"):
            raise UnsupportedError(f"the {self.name!r} backend has no native lowering for {act.name!r}; "
                                   "use lowering='table' or None")
        return ActivationPlan("table", np.asarray(self.arithmetic.activation_table(act, in_qp, out_qp), np.int64))

    def write(self, model, path=None, example_inputs=None, **options):
        raise UnsupportedError(f"the {self.name!r} backend is arithmetic only and has no file format: convert "
                               "with a runtime backend, e.g. backend='onnxruntime' or 'litert'")

    def runtime_options(self) -> dict:
        """Options the runtime needs to compute this backend's arithmetic (session options, delegates)."""
        return {}

    def __repr__(self) -> str:
        return f"<Backend {self.name!r}: {self.description}>"

    def __reduce__(self):  # a converted model pickles the name, not the object
        return (get_backend, (self.name,))


def register(backend: Backend) -> Backend:
    _REGISTRY[backend.name] = backend
    return backend


def _load_all() -> None:
    for package in RUNTIME_PACKAGES:
        importlib.import_module(package)


def backends() -> dict[str, Backend]:
    """Every backend by name."""
    _load_all()
    return dict(_REGISTRY)


def host_cpu() -> str:
    """This machine's CPU family as the backends name it: 'x86-64', 'aarch64', 'armv7' or 'unknown'."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return "aarch64"
    if machine.startswith("arm"):
        return "armv7"
    return "x86-64" if machine in ("x86_64", "amd64") else "unknown"


def x86_kernel_family(flags: set[str] | None = None) -> str:
    """Which of onnxruntime's int8 kernel families an x86-64 CPU runs: 'amx', 'avx512-vnni', 'avx-vnni',
    'avx512bw', 'avx2' or 'sse4' (from /proc/cpuinfo's flags; MLAS dispatches on the same CPUID bits)."""
    if flags is None:
        flags = set()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            return "unknown"
    for family, needs in (("amx", {"amx_int8"}), ("avx512-vnni", {"avx512_vnni"}), ("avx-vnni", {"avx_vnni"}),
                          ("avx512bw", {"avx512bw"}), ("avx2", {"avx2"}), ("sse4", {"sse4_1"})):
        if needs <= flags:
            return family
    return "unknown"


def get_backend(name: "str | Backend" = "ideal") -> Backend:
    """The backend named `name` ('onnxruntime', 'litert:aarch64', 'litert:host', …)."""
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise UnsupportedError(f"a backend is named by a string such as 'onnxruntime' or 'litert', got "
                               f"{type(name).__name__}")
    key = ALIASES.get(name, name)
    if key not in _REGISTRY:
        _load_all()
    if key.endswith(":host"):
        runtime = key.split(":", 1)[0]
        cpu = host_cpu()
        family = x86_kernel_family() if cpu == "x86-64" else None
        candidates = [b for b in _REGISTRY.values()
                      if b.runtime == runtime and b.default_kernels and b.cpu in (cpu, "any")
                      and (not b.families or family in b.families)]
        # The CPU's own variant first, then the portable one.
        candidates.sort(key=lambda b: (b.cpu != cpu, b.name))
        if not candidates:
            raise UnsupportedError(f"no {runtime!r} backend runs on this machine's CPU ({cpu}); choose one of "
                                   f"{', '.join(sorted(_REGISTRY))}")
        return candidates[0]
    if key == "host":
        raise UnsupportedError("'host' names a CPU, not a runtime: say 'onnxruntime:host' or 'litert:host'")
    if key not in _REGISTRY:
        raise UnsupportedError(f"unknown backend {name!r}; choose one of {', '.join(sorted(_REGISTRY))} "
                               "(or RUNTIME:host)")
    return _REGISTRY[key]


register(Backend("ideal", runtime="ideal", cpu="any", kernels="float64",
                 description="textbook arithmetic: float64, round half to even (no runtime)",
                 arithmetic=lambda: importlib.import_module("edgeact.arithmetic").Arithmetic()))

__all__ = ["Backend", "ActivationPlan", "get_backend", "backends", "register", "host_cpu", "x86_kernel_family"]
