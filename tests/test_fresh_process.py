"""What a fresh process pays before its first cell: the study's path imports none of torch's compiler stack."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.fx.passes.shape_prop import _extract_tensor_metadata

from edgeact.tracing import tensor_meta


def test_prepare_train_and_convert_leave_torch_compiler_modules_unimported():
    """What every fresh study worker does first — trace and prepare a model, fine-tune it, convert it — without
    importing torch._dynamo, torch._inductor or sympy (fx's record_stack_traces, a torch.optim optimizer and
    fx's ShapeProp would: 1–2 s per process)."""
    code = ("import sys, edgeact\n"
            "from edgeact.models import build, digits_for, qat_finetune\n"
            "from edgeact.quantize import QAT_QCONFIG\n"
            "data = digits_for('mlp')\n"
            "q = edgeact.prepare(build('mlp', 'relu'), qconfig=QAT_QCONFIG)\n"
            "qat_finetune(q, data, epochs=1)\n"
            "edgeact.convert(q)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('torch._dynamo', 'torch._inductor', 'sympy'))))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout


@pytest.mark.parametrize("make", [
    lambda: torch.randn(2, 3, 4, 5),
    lambda: torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
    lambda: torch.randn(1, 3, 1, 1),  # contiguous in both layouts: fx says contiguous
    lambda: torch.randn(4, 1, 1, 1).to(memory_format=torch.channels_last),
    lambda: torch.randn(2, 3, 4, 5, 6).to(memory_format=torch.channels_last_3d),
    lambda: torch.randn(3, 4).t(),
    lambda: torch.randn(2, 3, 4, 5)[:, :, ::2],
    lambda: torch.randn(5, requires_grad=True),
    lambda: torch.tensor(1.0),
    lambda: torch.quantize_per_tensor(torch.randn(2, 3), 0.1, 3, torch.quint8),
], ids=["nchw", "nhwc", "ones-nchw", "ones-nhwc", "ndhwc", "transposed", "strided", "grad", "scalar", "quantized"])
def test_tensor_meta_is_fx_shapeprops(make):
    t = make()
    assert tensor_meta(t) == _extract_tensor_metadata(t)
