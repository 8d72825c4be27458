"""Reference models with a pluggable activation, trained on scikit-learn's digits; small checkpoints.

    from edgeact import models
    net = models.build("mnv3s", "hard_mish")     # fresh, seeded initialisation
    net = models.load("mnv3s", "hard_swish")     # trained: committed checkpoint, else trained and cached
    data = models.digits_for("mnv3s")            # the fixed split at the model's input size

Model names: 'mlp' (8×8 input), 'cnn' and 'mnv3s' (16×16 input; see `data.py` for why).
"""
from __future__ import annotations

from .loader import checkpoint_path, load, save_checkpoint, train_and_save
from .cnn import SmallCNN
from .data import Digits, load_digits
from .mlp import MLP
from .mobilenetv3 import MobileNetV3Small
from .registry import MODELS, RECIPES, build, digits_for, model_names
from .train import TrainResult, evaluate, fit, qat_finetune

__all__ = [
    "MLP", "SmallCNN", "MobileNetV3Small", "MODELS", "RECIPES", "build", "model_names", "digits_for", "load",
    "checkpoint_path", "save_checkpoint", "train_and_save", "Digits", "load_digits", "fit", "evaluate",
    "qat_finetune", "TrainResult",
]
