"""`edgeact train`: train a reference model on digits with a chosen activation and save its checkpoint."""
from __future__ import annotations

from edgeact.cli import numbers

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("train", help="train a reference model (mlp, cnn, mnv3s) on digits with an activation",
                       description="Train a reference model on scikit-learn's digits (fixed split and seed) with "
                       "the given activation(s), print test accuracy and time, and save a checkpoint that "
                       "edgeact.models.load() finds.")
    p.add_argument("--model", required=True, help="mlp, cnn or mnv3s")
    p.add_argument("--activation", required=True,
                   help="registry name, or several separated by commas (relu,hard_swish,mish)")
    p.add_argument("--epochs", type=numbers.positive_epochs, help="override the model's recipe (see edgeact.models.RECIPES)")
    p.add_argument("--lr", type=numbers.float_range(0.0, 10.0, lo_open=True), help="override the recipe's learning rate")
    p.add_argument("--seed", type=int, default=0, help="weights, shuffling and augmentation seed (default 0)")
    p.add_argument("--threads", type=numbers.threads, default=2, help="torch threads (default 2)")
    p.add_argument("--out", type=Path, help="a folder for the checkpoints (default: the cache, "
                   "$EDGEACT_CACHE or ~/.cache/edgeact/checkpoints, where load() looks first; a checkpoint "
                   "written elsewhere is not found by load())")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from edgeact.activations import canonical_name
    from edgeact.models.loader import cache_dir, checkpoint_name, train_and_save
    from edgeact.models.registry import canonical_model

    model = canonical_model(args.model)
    activations = [canonical_name(a) for a in args.activation.split(",") if a.strip()]
    if not activations:
        from edgeact.errors import UnsupportedError

        raise UnsupportedError("--activation is empty; give one or more names, e.g. --activation relu,hard_swish")
    overrides = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None}
    folder = args.out or cache_dir()
    torch.set_num_threads(args.threads)
    for act in activations:
        _, result, path = train_and_save(model, act, folder / checkpoint_name(model, act), seed=args.seed,
                                         progress=True, **overrides)
        print(f"{model}/{act}: test accuracy {result.test_accuracy:.2f}% after {result.epochs} epochs, "
              f"{result.seconds:.1f} s wall ({result.cpu_seconds:.1f} s CPU, {result.threads} threads) → {path}")
    return 0
