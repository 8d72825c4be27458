"""The Target interface and what a run returns.

A target runs `runner.py` (the standalone on-target script) on one model with one backend and gives back
the outputs, per-inference timings, peak memory and, under QEMU, instruction counts. Host and QEMU run the
runner as a local process; SSH copies it to the board first. Same runner everywhere, so the only variable is
where it runs.
"""
from __future__ import annotations

import abc
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgeact.errors import ModelFileError, TargetError

RUNNER = Path(__file__).with_name("runner.py")
BACKENDS = ("onnxruntime", "litert")
MODEL_SUFFIX = {".onnx": "onnxruntime", ".tflite": "litert"}


@dataclasses.dataclass
class RunResult:
    """Outputs and measurements of one runner invocation (warmup + timed runs of one model)."""

    target: str
    backend: str
    runtime: str
    machine: str
    threads: int
    outputs: list[np.ndarray]
    output_names: list[str]
    output_quant: list[tuple[float, int] | None]
    times_ms: list[float]
    insn_counts: list[int] | None = None
    peak_rss_kb: int | None = None
    rss_note: str = ""
    cpu: str | None = None
    emulated: bool = False
    load_s: float = 0.0
    wall_s: float = 0.0
    inputs: list[dict] = dataclasses.field(default_factory=list)

    def dequantized(self) -> list[np.ndarray]:
        """Outputs as float (int8 outputs through their scale and zero point)."""
        out = []
        for a, q in zip(self.outputs, self.output_quant):
            if q and a.dtype.kind in "iu":
                out.append((a.astype(np.float64) - q[1]) * q[0])
            else:
                out.append(a.astype(np.float64))
        return out


@dataclasses.dataclass
class TargetStatus:
    name: str
    available: bool
    backends: tuple[str, ...]
    detail: str
    fix: str = ""


def backend_for(model: Path, backend: str | None) -> str:
    """The backend a model file needs; a mismatching --backend is an error, not a silent switch."""
    want = MODEL_SUFFIX.get(model.suffix.lower())
    if want is None:
        raise ModelFileError(f"{model}: unknown model format {model.suffix!r}; edgeact runs .onnx "
                             "(onnxruntime) and .tflite (LiteRT) files.")
    if backend and backend != want:
        raise ModelFileError(f"{model} is a {model.suffix} file, which runs on {want}, not {backend}. "
                             f"Use --backend {want}, or export the model for {backend}.")
    return want


def check_model(model: str | os.PathLike) -> Path:
    """Fail early and clearly on a missing, empty or obviously wrong model file."""
    p = Path(model)
    if not p.exists():
        raise ModelFileError(f"model file {p} not found. Check the path, or export the model first "
                             "(edgeact.export.to_onnx / to_tflite).")
    if not p.is_file():
        raise ModelFileError(f"{p} is not a file; pass a .onnx or .tflite model file.")
    size = p.stat().st_size
    if size == 0:
        raise ModelFileError(f"model file {p} is empty (an interrupted export?). Export it again.")
    backend_for(p, None)
    if p.suffix.lower() == ".tflite":
        with open(p, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise ModelFileError(f"{p} is not a TFLite flatbuffer (no TFL3 identifier): corrupt or "
                                 "truncated. Export it again.")
    return p


def normalize_inputs(inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray) -> dict:
    if isinstance(inputs, np.ndarray):
        return {"input_0": inputs}
    if isinstance(inputs, Mapping):
        return {str(k): np.asarray(v) for k, v in inputs.items()}
    return {f"input_{i}": np.asarray(v) for i, v in enumerate(inputs)}


class Target(abc.ABC):
    """Somewhere a model can run: `backends()`, `status()` and `run()`."""

    name: str
    emulated = False

    @abc.abstractmethod
    def backends(self) -> tuple[str, ...]:
        ...

    @abc.abstractmethod
    def status(self) -> TargetStatus:
        ...

    @abc.abstractmethod
    def run(self, model, inputs, backend: str | None = None, threads: int = 1, warmup: int = 1,
            runs: int = 1, progress: bool = False, session_options: Mapping[str, str] | None = None) -> RunResult:
        """`session_options`: onnxruntime session config entries the file's backend needs
        (edgeact.targets.compat decides them)."""
        ...

    def _check_backend(self, model: Path, backend: str | None) -> str:
        b = backend_for(model, backend)
        if b not in self.backends():
            raise TargetError(f"target {self.name} has no {b} backend ({self.status().detail}). "
                              f"Use a target that offers {b} (see `edgeact targets`).")
        return b

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class LocalJob:
    """Files of one runner invocation in a private temporary directory."""

    def __init__(self, model: Path, inputs: dict):
        from edgeact.fileio import temp_dir

        self.dir = temp_dir("edgeact-run-")
        self.model = model.resolve()
        self.inputs = self.dir / "inputs.npz"
        try:
            np.savez(self.inputs, **inputs)
        except BaseException as exc:  # a full disk or Ctrl-C: leave nothing behind
            self.cleanup()
            if isinstance(exc, OSError):
                raise TargetError(f"cannot write the inputs to {self.dir.parent}: {exc.strerror or exc} — free "
                                  "some space there or set TMPDIR to another folder") from None
            raise
        self.out = self.dir / "outputs.npz"
        self.result = self.dir / "result.json"
        self.insns = self.dir / "insns.txt"

    def runner_args(self, backend: str, threads: int, warmup: int, runs: int, mark: bool,
                    model: str | None = None, base: str | None = None,
                    session_options: Mapping[str, str] | None = None) -> list[str]:
        d = base or str(self.dir)
        args = ["--model", model or str(self.model), "--backend", backend,
                "--inputs", f"{d}/inputs.npz", "--out", f"{d}/outputs.npz", "--result", f"{d}/result.json",
                "--threads", str(threads), "--warmup", str(warmup), "--runs", str(runs), "--progress"]
        for key, value in (session_options or {}).items():
            args += ["--session-option", f"{key}={value}"]
        return args + (["--mark"] if mark else [])

    def cleanup(self) -> None:
        import shutil

        from edgeact import interrupt

        shutil.rmtree(self.dir, ignore_errors=True)
        interrupt.track(self.dir, done=True)


def stream(cmd: list[str], env: dict | None, total: int, desc: str, progress: bool,
           timeout: float | None = None, cwd: Path | None = None) -> tuple[int, str]:
    """Run `cmd`, advancing a progress bar on the runner's progress lines; return (exit code, stderr)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="run", disable=not progress, file=sys.stderr, leave=False)
    err_file = tempfile.TemporaryFile(mode="w+")
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err_file, text=True,
                                stdin=subprocess.DEVNULL, cwd=cwd)
    except FileNotFoundError as exc:
        raise TargetError(f"{exc.filename} not found; see `edgeact targets` for how to install it.") from None
    deadline = time.monotonic() + timeout if timeout else None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("@@progress"):
                bar.update(int(line.split()[1]))
            if deadline and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(cmd, timeout)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()) if deadline else None)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise TargetError(f"{desc}: no result after {timeout:.0f} s; the run was stopped. Use fewer --runs, "
                          "or check the target.") from None
    except BaseException:  # Ctrl-C or an error here: the runner must not outlive the command
        proc.kill()
        proc.wait()
        raise
    finally:
        bar.close()
    err_file.seek(0)
    err = err_file.read()
    err_file.close()
    return proc.returncode, err


def runner_error(code: int, stderr: str, where: str, model: Path) -> Exception:
    """Turn a failed runner into an error with cause and fix."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    msg = next((ln.split("error:", 1)[1].strip() for ln in reversed(lines) if "edgeact-runner: error:" in ln),
               None)
    if code == 4:
        return ModelFileError(f"{model}: {msg} (on {where}). The file is corrupt or uses an op this runtime "
                              "version lacks; re-export it, or check it on the host first.")
    if code == 3:
        return TargetError(f"{where}: {msg}. Install the runtime there (see `edgeact targets`).")
    if code == 2 and msg:
        return TargetError(f"{where}: {msg}.")
    tail = "\n".join(lines[-8:])
    return TargetError(f"the runner failed on {where} (exit {code}):\n{tail}")


def load_result(job: LocalJob, target: str, backend: str, cpu: str | None, emulated: bool,
                wall_s: float) -> RunResult:
    try:
        res = json.loads(job.result.read_text())
        with np.load(job.out) as z:
            outs = [z[f"output_{i}"] for i in range(len(z.files))]
    except (OSError, ValueError) as exc:
        raise TargetError(f"the runner on {target} finished without readable results ({exc}).") from None
    insns = None
    if job.insns.exists():
        insns = [int(x) for x in job.insns.read_text().split("\n") if x.strip().isdigit()]
    return RunResult(
        target=target,
        backend=backend,
        runtime=res["runtime"],
        machine=res["machine"],
        threads=res["threads"],
        outputs=outs,
        output_names=[o["name"] for o in res["outputs"]],
        output_quant=[tuple(o["quant"]) if o["quant"] else None for o in res["outputs"]],
        times_ms=[t / 1e6 for t in res["times_ns"]],
        insn_counts=insns,
        peak_rss_kb=res.get("maxrss_kb"),
        cpu=cpu,
        emulated=emulated,
        load_s=res.get("load_s", 0.0),
        wall_s=wall_s,
        inputs=res.get("inputs", []),
    )
