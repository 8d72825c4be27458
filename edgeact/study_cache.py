"""The study's cache: trained models and deterministic measurements, keyed by what they were made from.

A key is the SHA-256 of the inputs (model, activation, task, seed, settings, …) and of the code version
(every source file of the installed package, and torch's version), so a second run reuses what the first
trained, and any change to the code or the settings trains afresh. Entries live in the cache directory
($EDGEACT_CACHE or ~/.cache/edgeact, under study/), are written atomically, and an unreadable entry is
recomputed. The same inputs give the same key on every machine of a Ray cluster.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch

from edgeact.errors import EdgeActError


def cache_root() -> Path:
    root = os.environ.get("EDGEACT_CACHE") or Path.home() / ".cache" / "edgeact"
    return Path(root) / "study"


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the package's Python sources (edgeact, edgeact.models, edgeact.export) and torch's version."""
    import edgeact
    import edgeact.export
    import edgeact.models

    h = hashlib.sha256(str(torch.__version__).encode())
    for pkg in (edgeact, edgeact.export, edgeact.models):
        root = Path(pkg.__file__).parent
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def content_key(kind: str, **inputs) -> str:
    payload = json.dumps({"kind": kind, "code": code_version(), **inputs}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(payload.encode()).hexdigest()[:24]}"


def cached(key: str, compute: Callable[[], dict]) -> dict:
    """The stored value of `key`, or `compute()` stored under it (a dict of tensors and plain values)."""
    from edgeact.fileio import atomic_path

    path = cache_root() / f"{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # truncated or foreign file: recompute and overwrite
            pass
    value = compute()
    try:
        with atomic_path(path) as tmp:
            torch.save(value, tmp)
    except (OSError, EdgeActError):  # a read-only cache is not an error; the next run recomputes
        pass
    return value
