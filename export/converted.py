"""A converted model on disk: torch.save of the GraphModule that edgeact.convert returns.

The CLI's `edgeact export` and `edgeact verify` read models saved this way. torch.load unpickles,
which runs code from the file: load only models you made yourself.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.fx as fx

from edgeact.errors import ModelFileError
from edgeact.fileio import atomic_write
from edgeact.quantized import modules as Q


def is_converted(model) -> bool:
    """Whether `model` is what edgeact.convert returns: an fx graph of edgeact's integer modules."""
    return isinstance(model, fx.GraphModule) and any(isinstance(m, Q.QuantizedModule) for m in model.modules())


def save_converted(model: fx.GraphModule, path) -> Path:
    """torch.save the converted model, atomically."""
    buf = io.BytesIO()
    torch.save(model, buf)
    return atomic_write(path, buf.getvalue(), create_dirs=False)


def load_converted(path) -> fx.GraphModule:
    """The converted model saved at `path` (ModelFileError if it is missing or not one)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"converted model {str(path)!r} does not exist — save one with "
                             "edgeact.export.converted.save_converted(edgeact.convert(...), path)")
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle, zip and torch errors alike
        raise ModelFileError(f"{str(path)!r} is not a readable torch.save file ({type(exc).__name__}: {exc}); "
                             "save the converted model with save_converted") from exc
    if not is_converted(model):
        raise ModelFileError(f"{str(path)!r} holds a {type(model).__name__}, not a converted model: save the "
                             "result of edgeact.convert(prepared_model)")
    return model
