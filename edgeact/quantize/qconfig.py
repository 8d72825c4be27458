"""QConfig: how prepare() quantizes a model."""
from __future__ import annotations

from dataclasses import dataclass

from edgeact.errors import QuantizationError
from edgeact.observers import OBSERVERS
from edgeact.backend import get_backend


@dataclass(frozen=True)
class QConfig:
    """Choices for every quantized tensor of a prepared model.

    activation_dtype: 'int8' or 'uint8' for activations (weights are always int8 per channel,
        symmetric in [-127, 127], as TFLite and ONNX Runtime both accept).
    observer: how activation ranges are chosen ('minmax', 'moving_average' for QAT, 'percentile', 'mse').
    learnable_scale: LSQ scales for activation outputs during QAT.
    backend: the runtime the model is prepared for ('ideal', 'onnxruntime', 'litert', 'litert:aarch64', …,
        `edgeact.backend`): the fake-quant activation tables follow its arithmetic during calibration/QAT,
        and convert() uses it unless told another.
    fuse_relu: a ReLU/ReLU6 that is the only user of a conv/linear shares its output parameters with
        it, so the conv's requantization already clamps (TFLite fuses it into the op, ORT drops it):
        the activation costs nothing and its range is the post-activation one.
    """

    activation_dtype: str = "int8"
    observer: str = "minmax"
    learnable_scale: bool = False
    backend: str = "ideal"
    fuse_relu: bool = True

    def __post_init__(self):
        if self.activation_dtype not in ("int8", "uint8"):
            raise QuantizationError(f"activation_dtype must be 'int8' or 'uint8', got {self.activation_dtype!r}")
        if self.observer not in OBSERVERS:
            raise QuantizationError(f"unknown observer {self.observer!r}; choose one of {', '.join(OBSERVERS)}")
        get_backend(self.backend)  # an unknown name fails here, with the list of names


DEFAULT_QCONFIG = QConfig()
QAT_QCONFIG = QConfig(observer="moving_average")
