"""Reference models by name, and the training recipe each one uses."""
from __future__ import annotations

import torch
from torch import nn

from edgeact.activations import canonical_name
from edgeact.errors import UnsupportedError

from .cnn import SmallCNN
from .data import Digits, load_digits
from .mlp import MLP
from .mobilenetv3 import MobileNetV3Small

MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": SmallCNN, "mnv3s": MobileNetV3Small}

# Epochs, learning rate and augmentation (random shift in pixels) per model. Chosen so that each trains
# in well under two minutes on 2 cores; see models/README.md for the measured times and accuracies.
RECIPES: dict[str, dict] = {
    "mlp": {"epochs": 40, "lr": 1e-3, "max_shift": 0},
    "cnn": {"epochs": 15, "lr": 3e-3, "max_shift": 1},
    "mnv3s": {"epochs": 20, "lr": 3e-3, "max_shift": 1},
}


def model_names() -> list[str]:
    return list(MODELS)


def canonical_model(name: str) -> str:
    key = name.strip().lower().replace("-", "").replace("_", "")
    aliases = {"mobilenetv3": "mnv3s", "mobilenetv3small": "mnv3s", "smallcnn": "cnn"}
    key = aliases.get(key, key)
    if key not in MODELS:
        raise UnsupportedError(f"unknown reference model {name!r}; known: {', '.join(MODELS)}")
    return key


def build(name: str, activation: str = "relu", seed: int = 0, **kwargs) -> nn.Module:
    """A freshly initialised reference model (weights drawn from `seed`) with `activation` throughout."""
    cls = MODELS[canonical_model(name)]
    activation = canonical_name(activation)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(activation, **kwargs)


def digits_for(name_or_model) -> Digits:
    """The digits split at the input size of a model (name or instance)."""
    cls = MODELS[canonical_model(name_or_model)] if isinstance(name_or_model, str) else name_or_model
    return load_digits(getattr(cls, "input_size", 8))
