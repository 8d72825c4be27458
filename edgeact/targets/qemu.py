"""QEMU user-mode targets: the ARM root's Python and runtimes, run on this machine under emulation.

`qemu-aarch64 -L VIEW -cpu MODEL -plugin libedgeact_insn.so VIEW/usr/bin/python3.11 runner.py ...` with one
thread and PYTHONHASHSEED=0, so the instruction count per inference (the headline figure here) is identical
run to run. Emulated milliseconds are only indicative: hundreds of times the host's and noisy.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from edgeact.errors import TargetError
from edgeact.targets import sysroot
from edgeact.targets.base import RUNNER, LocalJob, RunResult, Target, TargetStatus, check_model, \
    load_result, normalize_inputs, runner_error, stream
from edgeact.targets.plugin import plugin_path


def qemu_binary(spec: sysroot.ArchSpec) -> str:
    """The QEMU binary: `$EDGEACT_QEMU_<ARCH>` if set (a path), else PATH; a clear error when absent."""
    env_key = f"EDGEACT_QEMU_{spec.name.upper()}"
    override = os.environ.get(env_key)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise TargetError(f"{env_key}={override} is not an executable file. Point it at qemu's "
                              f"{spec.qemu}, or unset it and install QEMU with `apt-get install qemu-user`.")
        return override
    found = shutil.which(spec.qemu)
    if not found:
        raise TargetError(f"{spec.qemu} is not installed (QEMU user-mode emulation). Install it with "
                          f"`apt-get install qemu-user` (or run `edgeact target setup qemu-{spec.name}`, "
                          "which installs it as root).")
    return found


def guest_root(lay: sysroot.Layout, cpu: str | None) -> Path:
    """The -L prefix: the CPU model's view of the root (its own /proc/cpuinfo), or the root itself."""
    view = lay.view(lay.spec.cpu(cpu))
    return view if view.exists() else lay.root


def qemu_env(lay: sysroot.Layout, cpu: str | None = None) -> dict:
    """A clean environment: nothing from the host's Python leaks into the ARM one.

    PYTHONPATH is the host path of /opt/site: QEMU 7.2 does not apply the -L prefix to statx(), which 32-bit
    ARM's glibc uses for stat(), so a guest path would not be found there.
    """
    return {
        "PATH": "/usr/bin:/bin",  # fixed, as everything here: the guest's stack must not depend on the host's
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(guest_root(lay, cpu) / "opt" / "site"),
        "PYTHONHASHSEED": "0",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
    }


def qemu_python_cmd(lay: sysroot.Layout, cpu: str | None, qemu: str | None = None,
                    plugin_out: Path | None = None, plugin: Path | None = None) -> list[str]:
    view = guest_root(lay, cpu)
    cmd = [qemu or qemu_binary(lay.spec), "-L", str(view), "-cpu", lay.spec.cpu(cpu).name]
    if plugin_out is not None:
        cmd += ["-plugin", f"{plugin},out={plugin_out}"]
    return cmd + [str(view / "usr" / "bin" / f"python{sysroot.PY_VERSION}")]


class QemuTarget(Target):
    emulated = True

    def __init__(self, arch: str, cpu: str | None = None, cache: Path | None = None):
        self.spec = sysroot.arch_spec(arch)
        self.cpu = self.spec.cpu(cpu).name
        self.cache = cache
        self.name = f"qemu-{arch}"

    def backends(self) -> tuple[str, ...]:
        return self.spec.backends

    def status(self) -> TargetStatus:
        try:
            qemu_binary(self.spec)
            sysroot.check_root(self.spec.name, self.cache)
        except TargetError as exc:
            return TargetStatus(self.name, False, self.spec.backends, str(exc),
                                f"edgeact target setup {self.name}")
        from edgeact.targets.cpu import DESCRIPTION, target_family

        return TargetStatus(self.name, True, self.spec.backends,
                            f"{self.spec.why}; CPUs {', '.join(c.name for c in self.spec.cpus)}; kernels: "
                            f"{DESCRIPTION[target_family(self)]}")

    def run(self, model, inputs, backend=None, threads=1, warmup=1, runs=1, progress=False,
            count=True, session_options=None) -> RunResult:
        model = check_model(model)
        backend = self._check_backend(model, backend)
        qemu = qemu_binary(self.spec)
        lay = sysroot.check_root(self.spec.name, self.cache)
        plugin = plugin_path(lay.cache)
        if count and not plugin.exists():
            raise TargetError(f"the instruction-count plugin is missing ({plugin}); run "
                              f"`edgeact target setup {self.name}`.")
        if count and threads != 1:
            raise TargetError("instruction counts need one thread (other threads spin and break the count); "
                              "use --threads 1, or --no-count to time several threads.")
        job = LocalJob(model, normalize_inputs(inputs))
        try:
            # The guest sees the same argv and environment from any process: short names inside the job folder
            # (run from there) instead of paths that carry this process's pid or the user's folders, and the
            # runner from the package (which hands onnxruntime the model's bytes, not its path). Their length
            # moved onnxruntime's instruction counts by 1-3 % between two processes.
            (job.dir / f"model{model.suffix}").symlink_to(job.model)
            cmd = qemu_python_cmd(lay, self.cpu, qemu, job.insns if count else None, plugin)
            cmd += [str(RUNNER)] + job.runner_args(backend, threads, warmup, runs, mark=count,
                                                    model=f"model{model.suffix}", base=".",
                                                    session_options=session_options)
            t0 = time.monotonic()
            code, err = stream(cmd, qemu_env(lay, self.cpu), warmup + runs, f"{self.name} ({self.cpu}) {backend}",
                               progress, cwd=job.dir)
            if code != 0:
                if "Could not open" in err or ("No such file" in err and "python" in err):
                    raise TargetError(f"QEMU could not start the root's Python ({err.strip()[:300]}): the "
                                      f"{self.name} root is broken. Run `edgeact target setup {self.name} "
                                      "--force`.")
                if "Could not load plugin" in err:
                    raise TargetError(f"QEMU refused the instruction-count plugin: {err.strip()[:300]}. Run "
                                      f"`edgeact target setup {self.name} --force` to rebuild it.")
                raise runner_error(code, err, f"{self.name} ({self.cpu})", model)
            res = load_result(job, self.name, backend, self.cpu, True, time.monotonic() - t0)
            res.rss_note = "QEMU process (emulator), not the ARM footprint"
            if count and (res.insn_counts is None or len(res.insn_counts) != runs):
                raise TargetError(f"the plugin reported {len(res.insn_counts or [])} counts for {runs} runs; "
                                  "run `edgeact target setup {self.name} --force`.")
            return res
        finally:
            job.cleanup()
