"""One handler per op: a registry keyed by type, so that adding an op adds a handler, not a branch.

convert (prepared module → integer module), the ONNX writer and the TFLite writer (integer module →
the file's ops) each keep one `Handlers` table; a handler is found by the object's class or its
nearest registered base class (a subclass of nn.Linear is handled as nn.Linear).
"""
from __future__ import annotations

from typing import Callable


class Handlers:
    def __init__(self, stage: str):
        self.stage = stage
        self._by_type: dict[type, Callable] = {}

    def register(self, *types: type):
        """Decorator: `fn` handles objects of these types (and their subclasses)."""
        def decorate(fn: Callable) -> Callable:
            for t in types:
                if t in self._by_type:
                    raise ValueError(f"{self.stage}: {t.__name__} already has a handler ({self._by_type[t].__name__})")
                self._by_type[t] = fn
            return fn
        return decorate

    def lookup(self, obj) -> Callable | None:
        for cls in type(obj).__mro__:
            if cls in self._by_type:
                return self._by_type[cls]
        return None

    def require(self, obj, where: str) -> Callable:
        """The handler of `obj`, or an UnsupportedError naming `where`, the type and what is supported."""
        handler = self.lookup(obj)
        if handler is None:
            from edgeact.errors import UnsupportedError

            raise UnsupportedError(f"cannot export {where}: {type(obj).__name__} has no {self.stage} handler. "
                                   f"Supported: {', '.join(self.names())}")
        return handler

    def names(self) -> list[str]:
        return sorted(t.__name__ for t in self._by_type)
