"""The host target: onnxruntime and LiteRT on this CPU, through the same runner script as everywhere else."""
from __future__ import annotations

import importlib.util
import os
import platform
import sys
import time

from edgeact.targets.base import RUNNER, LocalJob, RunResult, Target, TargetStatus, check_model, \
    load_result, normalize_inputs, runner_error, stream


class HostTarget(Target):
    name = "host"

    def backends(self) -> tuple[str, ...]:
        out = []
        if importlib.util.find_spec("onnxruntime"):
            out.append("onnxruntime")
        if importlib.util.find_spec("ai_edge_litert") or importlib.util.find_spec("tflite_runtime"):
            out.append("litert")
        return tuple(out)

    def status(self) -> TargetStatus:
        b = self.backends()
        missing = [x for x in ("onnxruntime", "litert") if x not in b]
        from edgeact.targets.cpu import DESCRIPTION, host_family

        return TargetStatus(self.name, bool(b), b, f"{platform.machine()}, Python {platform.python_version()}; "
                            f"kernels: {DESCRIPTION[host_family()]}",
                            f"pip install {' '.join('ai-edge-litert' if m == 'litert' else m for m in missing)}"
                            if missing else "")

    def run(self, model, inputs, backend=None, threads=1, warmup=1, runs=1, progress=False,
            session_options=None) -> RunResult:
        model = check_model(model)
        backend = self._check_backend(model, backend)
        job = LocalJob(model, normalize_inputs(inputs))
        try:
            env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS=str(threads))
            cmd = [sys.executable, str(RUNNER)] + job.runner_args(backend, threads, warmup, runs, mark=False,
                                                                  session_options=session_options)
            t0 = time.monotonic()
            code, err = stream(cmd, env, warmup + runs, f"{self.name} {backend}", progress)
            if code != 0:
                raise runner_error(code, err, self.name, model)
            res = load_result(job, self.name, backend, None, False, time.monotonic() - t0)
            res.rss_note = "runner process"
            return res
        finally:
            job.cleanup()
