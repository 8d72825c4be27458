"""Trained reference models: committed checkpoints, or trained on first use and cached.

A checkpoint is a small dict saved with torch.save (loadable with weights_only=True): the model name,
activation, constructor arguments, state_dict, and what training measured (test accuracy, epochs,
seconds, threads, seed). Lookup order: the cache directory ($EDGEACT_CACHE or ~/.cache/edgeact, under
checkpoints/), where `edgeact train` writes, then `models/checkpoints/` (shipped with the package) — so a
model the user trained replaces the shipped one everywhere (study, diagnose, load).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from edgeact.activations import canonical_name
from edgeact.errors import ModelFileError
from edgeact.fileio import atomic_path

from .registry import RECIPES, build, canonical_model, digits_for
from .train import DEFAULT_SEED, TrainResult, fit

FORMAT = "edgeact-checkpoint/1"
PACKAGE_DIR = Path(__file__).resolve().parent / "checkpoints"


def cache_dir() -> Path:
    root = os.environ.get("EDGEACT_CACHE") or Path.home() / ".cache" / "edgeact"
    return Path(root) / "checkpoints"


def checkpoint_name(model: str, activation: str) -> str:
    return f"{canonical_model(model)}_{canonical_name(activation)}.pt"


def checkpoint_path(model: str, activation: str) -> Path | None:
    """The existing checkpoint for (model, activation): one trained here (the cache) first, then the
    shipped one; else None."""
    name = checkpoint_name(model, activation)
    for directory in (cache_dir(), PACKAGE_DIR):
        if (directory / name).is_file():
            return directory / name
    return None


def save_checkpoint(model: nn.Module, model_name: str, activation: str, path: Path, result: TrainResult,
                    seed: int = DEFAULT_SEED) -> Path:
    """Write the checkpoint atomically (never a half-written file); returns its path."""
    payload = {
        "format": FORMAT,
        "model": canonical_model(model_name),
        "activation": canonical_name(activation),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "test_accuracy": result.test_accuracy,
        "epochs": result.epochs,
        "train_seconds": result.seconds,
        "train_cpu_seconds": result.cpu_seconds,
        "threads": result.threads,
        "seed": seed,
        "torch_version": str(torch.__version__),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: Path) -> dict:
    """The checkpoint dict, validated; a clear ModelFileError for a missing, corrupt or foreign file."""
    path = Path(path)
    fix = f"delete {path} and run `edgeact train --model MODEL --activation ACT` to recreate it"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"checkpoint {path} does not exist; {fix}") from None
    except Exception as exc:  # torch raises several types for truncated / non-zip files
        raise ModelFileError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); {fix}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an edgeact checkpoint (format {FORMAT!r}); {fix}")
    return payload


def train_and_save(model_name: str, activation: str, path: Path | None = None, *, seed: int = DEFAULT_SEED,
                   progress: bool = False, **recipe) -> tuple[nn.Module, TrainResult, Path]:
    """Train (model, activation) with its recipe (overrides in `recipe`) and save the checkpoint."""
    model_name, activation = canonical_model(model_name), canonical_name(activation)
    model = build(model_name, activation, seed=seed)
    settings = {**RECIPES[model_name], **recipe}
    result = fit(model, digits_for(model_name), seed=seed, progress=progress,
                 description=f"{model_name}/{activation}", **settings)
    path = Path(path) if path is not None else cache_dir() / checkpoint_name(model_name, activation)
    save_checkpoint(model, model_name, activation, path, result, seed)
    return model.eval(), result, path


def load(model_name: str, activation: str, *, train_if_missing: bool = True, progress: bool = True) -> nn.Module:
    """The trained (model, activation) in eval mode: from its checkpoint, or trained now and cached.

    The checkpoint dict is kept on the model as `.checkpoint` (minus the weights), so the test accuracy
    it was saved with is at hand.
    """
    model_name, activation = canonical_model(model_name), canonical_name(activation)
    path = checkpoint_path(model_name, activation)
    if path is None:
        if not train_if_missing:
            raise ModelFileError(f"no checkpoint for {model_name}/{activation}; run "
                                 f"`edgeact train --model {model_name} --activation {activation}`")
        model, _, _ = train_and_save(model_name, activation, progress=progress)
        path = checkpoint_path(model_name, activation)
    payload = read_checkpoint(path)
    if (payload["model"], payload["activation"]) != (model_name, activation):
        raise ModelFileError(f"{path} holds {payload['model']}/{payload['activation']}, not "
                             f"{model_name}/{activation}; delete it and retrain")
    model = build(model_name, activation)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelFileError(f"{path} does not match the current {model_name} architecture ({exc}); delete it "
                             f"and run `edgeact train --model {model_name} --activation {activation}`") from None
    model.checkpoint = {k: v for k, v in payload.items() if k != "state_dict"} | {"path": str(path)}
    return model.eval()
