"""Code tensors between the converted model's layout (NCHW torch) and TFLite's (NHWC NumPy), for the kernel tests."""
from __future__ import annotations

import numpy as np
import torch


def codes(t: torch.Tensor) -> np.ndarray:
    return t.numpy().astype(np.int64)


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).long()


def nhwc(t: torch.Tensor) -> np.ndarray:
    return codes(t).transpose(0, 2, 3, 1)
