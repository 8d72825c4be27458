"""Study tasks: the data a study trains and tests on, by name, generated or shipped — never downloaded.

- 'digits': scikit-learn's 8×8 digits (`data.py`). Every activation scores 99–100 % there, so the study
  cannot tell them apart on accuracy.
- 'clusters': a harder task from scikit-learn's `make_classification` (Guyon's generator): 10 classes,
  each a union of Gaussian clusters at vertices of a 32-dimensional hypercube, 8 redundant and 24 noise
  features, 64 features in all laid out as an 8×8 'image'. Fixed seed, so it is the same data
  everywhere. The MLP reaches 65–75 %, and which activation it uses moves accuracy by more than the
  seed-to-seed spread (relu ≈ 73 %, selu ≈ 66 % over three seeds; the README's study table).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from edgeact.errors import EdgeActError

from .data import Digits, _resize, load_digits

TASKS = ("digits", "clusters")
TASK_SEED = 0

# Training recipe per (task, model) for models trained by the study (digits/seed 0 uses the checkpoint).
CLUSTERS_RECIPE = {"epochs": 20, "lr": 1e-3, "max_shift": 0}


def canonical_task(name: str) -> str:
    key = name.strip().lower()
    if key not in TASKS:
        raise EdgeActError(f"unknown study task {name!r}; choose from {', '.join(TASKS)}")
    return key


@lru_cache(maxsize=4)
def load_clusters(size: int = 8, samples: int = 3000) -> Digits:
    """The 'clusters' task at `size`×`size` input (features scaled to [−1, 1]); 25 % held out, stratified."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(n_samples=samples, n_features=64, n_informative=32, n_redundant=8, n_classes=10,
                               n_clusters_per_class=2, class_sep=1.5, flip_y=0.0, random_state=TASK_SEED)
    # A fixed, data-independent map to [−1, 1] (4 standard deviations of the generator's unit clusters).
    x = np.clip(x / 4.0, -1.0, 1.0).astype(np.float32).reshape(-1, 1, 8, 8)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=TASK_SEED, stratify=y)

    def as_x(a):
        return _resize(torch.from_numpy(np.ascontiguousarray(a)), size).contiguous()

    return Digits(as_x(x_tr), torch.from_numpy(y_tr.astype(np.int64)), as_x(x_te),
                  torch.from_numpy(y_te.astype(np.int64)))


def task_data(task: str, model: str) -> Digits:
    """The task's split at the input size of `model`."""
    from .registry import MODELS, canonical_model

    size = getattr(MODELS[canonical_model(model)], "input_size", 8)
    return _stored_split(canonical_task(task), size)


@lru_cache(maxsize=4)
def _stored_split(task: str, size: int) -> Digits:
    """The split as an earlier process stored it in the cache directory (by content: task, size, scikit-learn's
    version and the code's), else made and stored: a fresh study worker then skips importing scikit-learn and
    SciPy and generating the data. Data, not a result, so the study's --no-cache does not apply to it."""
    from importlib.metadata import version

    from edgeact.study_cache import cached, content_key

    key = content_key("data", task=task, size=size, sklearn=version("scikit-learn"))

    def make() -> dict:
        split = load_digits(size) if task == "digits" else load_clusters(size)
        return {f: getattr(split, f) for f in ("x_train", "y_train", "x_test", "y_test")}

    return Digits(**cached(key, make))


def recipe(task: str, model: str) -> dict:
    from .registry import RECIPES, canonical_model

    return dict(RECIPES[canonical_model(model)]) if canonical_task(task) == "digits" else dict(CLUSTERS_RECIPE)
