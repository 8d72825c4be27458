"""The digits data set every reference model trains on: scikit-learn's 8×8 digits, no download.

1,797 grey images of handwritten digits (pixel values 0..16), split once with a fixed seed into
1,437 training and 360 test images (stratified by class). Normalisation: x / 8 − 1, so every pixel is
in [−1, 1] — a fixed, data-independent map, the same at training, calibration and deployment time, and
symmetric around 0, which suits an int8 input quantizer. Images are resized (bilinear) to the size a
model asks for: the convolutional models use 16×16 so that three stride-2 stages still leave a 2×2 map.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from edgeact.errors import EdgeActError

SPLIT_SEED = 0
TEST_FRACTION = 0.2
NUM_CLASSES = 10
NATIVE_SIZE = 8


@dataclass(frozen=True)
class Digits:
    """Training and test tensors: images (N, 1, size, size) float32 in [−1, 1], labels (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.x_train.shape[-1])

    def train_loader(self, batch_size: int = 64, seed: int = 0, shuffle: bool = True) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(TensorDataset(self.x_train, self.y_train), batch_size=batch_size, shuffle=shuffle,
                          generator=generator)

    def test_loader(self, batch_size: int = 512) -> DataLoader:
        return DataLoader(TensorDataset(self.x_test, self.y_test), batch_size=batch_size)

    def calibration_batches(self, n: int = 256, batch_size: int = 64) -> list[torch.Tensor]:
        """The first `n` training images (a fixed subset) in batches, for PTQ calibration."""
        return list(self.x_train[:n].split(batch_size))


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Digits pixel values 0..16 → [−1, 1]."""
    return pixels.astype(np.float32) / 8.0 - 1.0


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if size == NATIVE_SIZE:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


@lru_cache(maxsize=4)
def load_digits(size: int = NATIVE_SIZE) -> Digits:
    """The fixed train/test split of scikit-learn's digits, normalised, resized to `size`×`size`.

    Cached: callers share the tensors and must not modify them in place.
    """
    if not isinstance(size, int) or size < NATIVE_SIZE:
        raise EdgeActError(f"digits image size must be an int ≥ {NATIVE_SIZE}, got {size!r}; "
                           "use 8 (native) or e.g. 16 for the convolutional models")
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = normalise(bunch.images)[:, None]  # (N, 1, 8, 8)
    x_tr, x_te, y_tr, y_te = train_test_split(images, bunch.target, test_size=TEST_FRACTION,
                                              random_state=SPLIT_SEED, stratify=bunch.target)
    def as_x(a):
        return _resize(torch.from_numpy(np.ascontiguousarray(a)), size).contiguous()

    def as_y(a):
        return torch.from_numpy(a.astype(np.int64))

    return Digits(as_x(x_tr), as_y(y_tr), as_x(x_te), as_y(y_te))
