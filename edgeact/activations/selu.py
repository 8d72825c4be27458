"""selu: the scaled ELU (self-normalising)."""
import torch
import torch.nn.functional as F
from torch import nn

from edgeact.activations import elu
from edgeact.activations._base import ActivationDef

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

SPEC = ActivationDef(
    name="selu", torch_fn=F.selu, numpy_fn=lambda x: SELU_SCALE * elu.numpy_elu(x, SELU_ALPHA),
    derivative=lambda x: SELU_SCALE * elu.derivative(x, SELU_ALPHA),
    bounded_below=True, smooth=False,  # slope λα ≈ 1.76 left of 0, λ ≈ 1.05 right of it
    description="scaled ELU; self-normalising", module_name="SELU", torch_modules=(nn.SELU,),
    torch_functions={torch.selu: ()},
)
