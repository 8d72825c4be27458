"""Emulated x86-64 CPUs: this machine's own Python and runtimes under `qemu-x86_64 -cpu MODEL`.

onnxruntime picks its integer kernels by CPUID, and QEMU's CPU model decides what CPUID says, so one machine
can run the kernel families a user's fleet runs: `qemu-x86_64:haswell` (AVX2: MLAS's u8s8 kernels add pairs
of products with int16 saturation) and `qemu-x86_64:nehalem` (SSE4.2, no AVX). QEMU's TCG emulates no
AVX-512, VNNI or AMX, so those families are reachable only natively (the host target on such a CPU).
Nothing to set up beyond `apt-get install qemu-user`: no sysroot, the host's venv runs as it is.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time

from edgeact.errors import TargetError
from edgeact.targets.base import RUNNER, LocalJob, RunResult, Target, TargetStatus, check_model, \
    load_result, normalize_inputs, runner_error, stream
from edgeact.targets.host import HostTarget

QEMU = "qemu-x86_64"


@dataclasses.dataclass(frozen=True)
class X86Cpu:
    name: str  # what a user types after the colon
    qemu: str  # QEMU's -cpu model
    family: str  # kernel family (edgeact.targets.cpu)
    openblas: str  # OPENBLAS_CORETYPE: NumPy's OpenBLAS otherwise picks its kernels from the host's CPU


CPUS = {c.name: c for c in (
    X86Cpu("haswell", "Haswell", "x86-avx2", "Haswell"),
    X86Cpu("nehalem", "Nehalem", "x86-sse4", "Nehalem"),
)}
DEFAULT_CPU = "haswell"


def x86_cpu(name: str | None) -> X86Cpu:
    key = (name or DEFAULT_CPU).lower()
    if key not in CPUS:
        raise TargetError(f"CPU model {name!r} is not offered for {QEMU}; choose one of {', '.join(CPUS)} "
                          f"(e.g. --target {QEMU}:{DEFAULT_CPU}). TCG emulates no AVX-512/VNNI/AMX: run those "
                          "natively on such a CPU (--target host).")
    return CPUS[key]


def qemu_x86_binary() -> str:
    """`$EDGEACT_QEMU_X86_64` if set (a path), else qemu-x86_64 on PATH; a clear error when absent."""
    override = os.environ.get("EDGEACT_QEMU_X86_64")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise TargetError(f"EDGEACT_QEMU_X86_64={override} is not an executable file. Point it at qemu's "
                              f"{QEMU}, or unset it and install QEMU with `apt-get install qemu-user`.")
        return override
    found = shutil.which(QEMU)
    if not found:
        raise TargetError(f"{QEMU} is not installed (QEMU user-mode emulation). Install it with "
                          "`apt-get install qemu-user`.")
    return found


def _host_is_x86_64() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64")


class QemuX86Target(Target):
    """The host's Python + runtimes under an emulated x86-64 CPU model."""

    emulated = True

    def __init__(self, cpu: str | None = None):
        self.x86 = x86_cpu(cpu)
        self.cpu = self.x86.name
        self.name = f"{QEMU}:{self.cpu}"
        self.family = self.x86.family

    def backends(self) -> tuple[str, ...]:
        return HostTarget().backends()

    def status(self) -> TargetStatus:
        families = "; ".join(f"{c.name}: {c.family}" for c in CPUS.values())
        try:
            if not _host_is_x86_64():
                raise TargetError(f"{QEMU} runs this machine's own x86-64 Python, and this machine is not x86-64")
            qemu_x86_binary()
        except TargetError as exc:
            return TargetStatus(QEMU, False, self.backends(), str(exc), "apt-get install qemu-user")
        return TargetStatus(QEMU, True, self.backends(),
                            f"this machine's Python under emulated CPUs ({families}); no AVX-512/VNNI under TCG")

    def python_command(self) -> tuple[list[str], dict]:
        """This machine's Python under the emulated CPU, and its environment (EDGEACT_CPU_FAMILY tells edgeact
        inside which family it runs: QEMU shows it the host's /proc/cpuinfo)."""
        if not _host_is_x86_64():
            raise TargetError(f"{QEMU} runs this machine's own Python, which is not x86-64 here; use an x86-64 "
                              "host or a board over SSH.")
        return [qemu_x86_binary(), "-cpu", self.x86.qemu, sys.executable], self._guest_env()

    def _guest_env(self, **extra) -> dict:
        """The guest's environment: EDGEACT_CPU_FAMILY tells edgeact which family it runs in, OPENBLAS_CORETYPE
        tells NumPy's OpenBLAS — both would otherwise go by what QEMU shows of the host (OpenBLAS then picks
        AVX kernels on an emulated Nehalem, and `import numpy` dies of an illegal instruction)."""
        return dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1", EDGEACT_CPU_FAMILY=self.family,
                    OPENBLAS_CORETYPE=self.x86.openblas, **extra)

    def run(self, model, inputs, backend=None, threads=1, warmup=1, runs=1, progress=False,
            count=False, session_options=None) -> RunResult:
        model = check_model(model)
        backend = self._check_backend(model, backend)
        if not _host_is_x86_64():
            raise TargetError(f"{QEMU} runs this machine's own Python, which is not x86-64 here; use an x86-64 "
                              "host or a board over SSH.")
        qemu = qemu_x86_binary()
        cmd = [qemu, "-cpu", self.x86.qemu]
        job = LocalJob(model, normalize_inputs(inputs))
        try:
            if count:
                from edgeact.targets.plugin import plugin_path
                from edgeact.targets.sysroot import cache_dir

                plugin = plugin_path(cache_dir())
                if not plugin.exists():
                    raise TargetError(f"the instruction-count plugin is missing ({plugin}); build it with "
                                      "`edgeact target setup qemu-aarch64`, or pass --no-count.")
                if threads != 1:
                    raise TargetError("instruction counts need one thread; use --threads 1, or --no-count.")
                cmd += ["-plugin", f"{plugin},out={job.insns}"]
            cmd += [sys.executable, str(RUNNER)] + job.runner_args(backend, threads, warmup, runs, mark=count,
                                                                           session_options=session_options)
            env = self._guest_env(OMP_NUM_THREADS=str(threads))
            t0 = time.monotonic()
            code, err = stream(cmd, env, warmup + runs, f"{self.name} {backend}", progress)
            if code != 0:
                raise runner_error(code, err, self.name, model)
            res = load_result(job, self.name, backend, self.cpu, True, time.monotonic() - t0)
            res.rss_note = "QEMU process (emulator)"
            return res
        finally:
            job.cleanup()
