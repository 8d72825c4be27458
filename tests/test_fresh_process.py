"""What a fresh process pays before its first cell: no torch compiler stack, and the task's data without scikit-learn."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import torch
from torch.fx.passes.shape_prop import _extract_tensor_metadata

from edgeact.tracing import tensor_meta


def test_prepare_train_and_convert_leave_torch_compiler_modules_unimported():
    """What every fresh study worker does first — trace and prepare a model, fine-tune it, convert it — without
    importing torch._dynamo, torch._inductor or sympy (fx's record_stack_traces, a torch.optim optimizer and
    fx's ShapeProp would import them: seconds per process)."""
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


@pytest.mark.parametrize("task, model", [("clusters", "mlp"), ("digits", "mnv3s")])
def test_a_later_process_reads_the_task_split_without_scikit_learn(task, model, tmp_path, monkeypatch):
    """The split a study stores is the generated one, bit for bit, and a fresh process reads it back
    without importing scikit-learn or SciPy."""
    from edgeact.models import tasks

    monkeypatch.setenv("EDGEACT_CACHE", str(tmp_path))
    tasks._stored_split.cache_clear()
    try:
        stored = tasks.task_data(task, model)
    finally:
        tasks._stored_split.cache_clear()
    size = stored.size
    made = tasks.load_digits(size) if task == "digits" else tasks.load_clusters(size)
    for f in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(stored, f), getattr(made, f)), f
    code = ("import sys, hashlib\n"
            "from edgeact.models.tasks import task_data\n"
            f"d = task_data({task!r}, {model!r})\n"
            "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))\n"
            "print(hashlib.sha256(d.x_train.numpy().tobytes() + d.y_test.numpy().tobytes()).hexdigest())\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "EDGEACT_CACHE": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-2000:]
    modules, digest = run.stdout.strip().splitlines()[-2:]
    assert modules == "[]"
    assert digest == hashlib.sha256(made.x_train.numpy().tobytes() + made.y_test.numpy().tobytes()).hexdigest()
