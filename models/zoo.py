"""Outside models as their libraries ship them (torchvision, timm), random init, for the zoo test and benchmark.

Nothing is downloaded: every model is built with random weights, and its BatchNorm statistics come
from a few batches of random data (so the folded convs see realistic ranges, not mean 0 / var 1).

torchvision's wheels on PyPI are built against the CUDA torch; beside the CPU torch its C extension
(`torchvision/_C.so`, the detection ops nms, roi_align, …) does not load, and `import torchvision`
then fails in `_meta_registrations.py`, which registers fake kernels for `torchvision::nms` and
`torchvision::qnms` unconditionally. `import_torchvision()` defines those two operator schemas
(schema only, no kernel) before the import, so the import succeeds and the models — plain torch — work;
calling `torchvision.ops.nms` still fails, as it would anyway without the extension.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from edgeact.errors import UnsupportedError

_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_schema_lib = None


def import_torchvision():
    """`torchvision`, importable beside a CPU-only torch whose ABI its C extension does not match."""
    global _schema_lib
    try:
        return importlib.import_module("torchvision")
    except ModuleNotFoundError as exc:
        raise UnsupportedError("torchvision is not installed: pip install --no-deps 'torchvision==0.28.*'") from exc
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    import sys

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the half-imported package from the failed attempt
    if _schema_lib is None:
        _schema_lib = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _TORCHVISION_SCHEMAS:
            _schema_lib.define(schema)
    return importlib.import_module("torchvision")


def import_timm():
    try:
        return importlib.import_module("timm")
    except RuntimeError:
        import_torchvision()  # timm imports torchvision when it is installed
        return importlib.import_module("timm")


class KeywordSpotter(nn.Module):
    """A small keyword-spotting net on 40 MFCC bands × 49 frames: Conv1d stem, depthwise-separable Conv1d
    blocks with a residual, global average over time, linear head (DS-CNN style, 1-D)."""

    def __init__(self, bands: int = 40, width: int = 32, classes: int = 12):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(bands, width, 5, stride=2, padding=2, bias=False),
                                  nn.BatchNorm1d(width), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(width, width, 3, padding=1, groups=width, bias=False), nn.BatchNorm1d(width),
                          nn.ReLU(), nn.Conv1d(width, width, 1, bias=False), nn.BatchNorm1d(width), nn.ReLU())
            for _ in range(2))
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(F.adaptive_avg_pool1d(x, 1).flatten(1))


class TinyUNet(nn.Module):
    """A small segmentation net of edge-style ops: strided conv encoder, a ConvTranspose2d decoder step with a
    skip concatenation, a bilinear ×2 upsampling back to the input size, a 1×1 per-pixel head."""

    def __init__(self, classes: int = 4, width: int = 16):
        super().__init__()
        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
        self.enc1, self.enc2, self.enc3 = block(3, width, 2), block(width, 2 * width, 2), block(2 * width, 4 * width, 2)
        self.up3 = nn.Sequential(nn.ConvTranspose2d(4 * width, 2 * width, 2, 2, bias=False),
                                 nn.BatchNorm2d(2 * width), nn.ReLU())
        self.dec2 = block(4 * width, 2 * width, 1)
        self.up2 = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.Hardswish())
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear")
        self.head = nn.Conv2d(2 * width, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        d2 = self.dec2(torch.cat([self.up3(self.enc3(e2)), e2], 1))
        return self.head(self.up1(torch.cat([self.up2(d2), e1], 1)))


class SegmentationOutput(nn.Module):
    """torchvision's segmentation models return {'out': logits}: the tensor, so files have one output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def _tv_segmentation(name: str, **kw) -> Callable[[], nn.Module]:
    return lambda: SegmentationOutput(getattr(import_torchvision().models.segmentation, name)(
        weights=None, weights_backbone=None, num_classes=10, **kw))


@dataclass(frozen=True)
class ZooModel:
    name: str
    library: str  # 'torchvision', 'timm' or 'edgeact'
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # one sample, without the batch dimension


def _tv(name: str, **kw) -> Callable[[], nn.Module]:
    return lambda: getattr(import_torchvision().models, name)(num_classes=10, **kw)


def _timm(name: str, **kw) -> Callable[[], nn.Module]:
    return lambda: import_timm().create_model(name, pretrained=False, num_classes=10, **kw)


IMAGE = (3, 64, 64)
ZOO: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel("mobilenet_v2", "torchvision", _tv("mobilenet_v2"), IMAGE),
    ZooModel("mobilenet_v3_small", "torchvision", _tv("mobilenet_v3_small"), IMAGE),
    ZooModel("mobilenet_v3_large", "torchvision", _tv("mobilenet_v3_large"), IMAGE),
    ZooModel("efficientnet_b0", "torchvision", _tv("efficientnet_b0"), IMAGE),
    ZooModel("shufflenet_v2_x0_5", "torchvision", _tv("shufflenet_v2_x0_5"), IMAGE),
    ZooModel("squeezenet1_1", "torchvision", _tv("squeezenet1_1"), IMAGE),
    ZooModel("resnet18", "torchvision", _tv("resnet18"), IMAGE),
    ZooModel("mnasnet0_5", "torchvision", _tv("mnasnet0_5"), IMAGE),
    ZooModel("regnet_x_400mf", "torchvision", _tv("regnet_x_400mf"), IMAGE),
    ZooModel("timm/mobilenetv3_small_050", "timm", _timm("mobilenetv3_small_050"), IMAGE),
    ZooModel("timm/mobilenetv3_large_100", "timm", _timm("mobilenetv3_large_100"), IMAGE),
    ZooModel("timm/lcnet_050", "timm", _timm("lcnet_050"), IMAGE),
    ZooModel("timm/efficientnet_lite0", "timm", _timm("efficientnet_lite0"), IMAGE),
    ZooModel("timm/ghostnet_050", "timm", _timm("ghostnet_050"), IMAGE),
    ZooModel("kws_conv1d", "edgeact", KeywordSpotter, (40, 49)),
    ZooModel("lraspp_mobilenet_v3_large", "torchvision", _tv_segmentation("lraspp_mobilenet_v3_large"), IMAGE),
    ZooModel("deeplabv3_mobilenet_v3_large", "torchvision",
             _tv_segmentation("deeplabv3_mobilenet_v3_large", aux_loss=False), IMAGE),
    ZooModel("unet_tiny", "edgeact", TinyUNet, IMAGE),
]}


def build(name: str, seed: int = 0, bn_batches: int = 4, batch: int = 16) -> nn.Module:
    """Zoo model `name` with random weights (from `seed`) and BatchNorm statistics of random data, in eval mode."""
    if name not in ZOO:
        raise UnsupportedError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}")
    spec = ZOO[name]
    torch.manual_seed(seed)
    model = spec.build()
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(bn_batches):
            model(torch.randn(batch, *spec.input_shape))
    return model.eval()


__all__ = ["ZOO", "ZooModel", "build", "import_torchvision", "import_timm", "KeywordSpotter", "TinyUNet",
           "SegmentationOutput"]
