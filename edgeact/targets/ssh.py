"""A real board over SSH: copy the model and the runner, run it with the board's python3, read results back.

Uses the system OpenSSH client (`ssh`, `scp`) in BatchMode, so a board without key-based login fails at once
instead of prompting; ConnectTimeout bounds an unreachable board. `$EDGEACT_SSH_CONFIG` may name an
ssh_config file (identity, known hosts, jump host); `$EDGEACT_SSH_PYTHON` the board's Python (default
python3). The board needs Python 3 with NumPy and onnxruntime or ai-edge-litert/tflite-runtime; nothing else.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from edgeact.errors import TargetError
from edgeact.targets.base import RUNNER, LocalJob, RunResult, Target, TargetStatus, check_model, \
    load_result, normalize_inputs, runner_error, stream

DEFAULT_CONNECT_TIMEOUT = 10


def ssh_status() -> TargetStatus:
    missing = [t for t in ("ssh", "scp") if not shutil.which(t)]
    if missing:
        return TargetStatus("ssh://user@host[:port]", False, ("onnxruntime", "litert"),
                            f"{' and '.join(missing)} not found", "apt-get install openssh-client")
    return TargetStatus("ssh://user@host[:port]", True, ("onnxruntime", "litert"),
                        "a board with key-based SSH login and python3 + numpy + onnxruntime or "
                        "ai-edge-litert/tflite-runtime (backends: whatever the board has)",
                        "ssh-copy-id user@board; on the board: pip install numpy onnxruntime ai-edge-litert")


def _timeout(text: str, where: str) -> int:
    """A connect timeout in whole seconds, 1 to 3600, from the URL or the environment."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise TargetError(f"{where} is {text!r}, not a number of seconds; give a whole number such as 10") from None
    if not 1 <= value <= 3600:
        raise TargetError(f"{where} is {value}; give 1 to 3600 seconds")
    return value


@dataclasses.dataclass
class SshTarget(Target):
    user: str | None
    host: str
    port: int = 22
    config: str | None = None
    python: str = "python3"
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT

    @classmethod
    def from_url(cls, url: str, config: str | None = None) -> "SshTarget":
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise TargetError(f"bad SSH target {url!r}; write it as ssh://user@host[:port].")
        try:
            port = parts.port or 22
        except ValueError:
            raise TargetError(f"bad port in {url!r}; write it as ssh://user@host:PORT.") from None
        q = parse_qs(parts.query)
        return cls(
            user=parts.username,
            host=parts.hostname,
            port=port,
            config=config or os.environ.get("EDGEACT_SSH_CONFIG"),
            python=q.get("python", [os.environ.get("EDGEACT_SSH_PYTHON", "python3")])[0],
            connect_timeout=_timeout(q["timeout"][0], f"?timeout= in {url!r}") if "timeout" in q else
            _timeout(os.environ["EDGEACT_SSH_TIMEOUT"], "$EDGEACT_SSH_TIMEOUT") if os.environ.get("EDGEACT_SSH_TIMEOUT")
            else DEFAULT_CONNECT_TIMEOUT,
        )

    @property
    def name(self) -> str:  # type: ignore[override]
        who = f"{self.user}@" if self.user else ""
        return f"ssh://{who}{self.host}:{self.port}"

    @property
    def dest(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _opts(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if self.config:
            opts = ["-F", self.config] + opts
        return opts

    def ssh_cmd(self, remote: str) -> list[str]:
        return ["ssh", *self._opts(), "-p", str(self.port), self.dest, remote]

    def _ssh(self, remote: str, timeout: float = 120, what: str = "") -> str:
        started = time.monotonic()
        try:
            p = subprocess.run(self.ssh_cmd(remote), capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise TargetError("the OpenSSH client (ssh) is not installed; apt-get install openssh-client.") \
                from None
        except subprocess.TimeoutExpired:
            raise TargetError(f"{self.name}: no answer after {timeout:.0f} s ({what or remote}). Check the "
                              "board is on and reachable, or raise the timeout.") from None
        if p.returncode == 255:
            raise self._connect_error(p.stderr, time.monotonic() - started)
        if p.returncode != 0:
            raise TargetError(f"{self.name}: `{what or remote}` failed (exit {p.returncode}): "
                              f"{p.stderr.strip()[-400:]}")
        return p.stdout

    def _scp(self, srcs: list[str], dst: str, timeout: float = 300) -> None:
        cmd = ["scp", "-q", *self._opts(), "-P", str(self.port), *srcs, dst]
        started = time.monotonic()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise TargetError(f"{self.name}: copying files timed out after {timeout:.0f} s.") from None
        if p.returncode != 0:
            if p.returncode == 255 or "connect" in p.stderr.lower():
                raise self._connect_error(p.stderr, time.monotonic() - started)
            raise TargetError(f"{self.name}: copying {' '.join(Path(s).name for s in srcs)} failed: "
                              f"{p.stderr.strip()[-400:]}. Check free space and that the board runs an "
                              "SFTP server (scp uses it).")

    def _connect_error(self, stderr: str, elapsed: float | None = None) -> TargetError:
        err = stderr.strip().splitlines()[-1] if stderr.strip() else "ssh exited with 255"
        low = err.lower()
        if not stderr.strip() and elapsed is not None and elapsed >= self.connect_timeout:
            # ssh says nothing at LogLevel=ERROR when the server sent its banner and then went silent: the
            # keep-alives (ServerAliveInterval × CountMax) gave up. Not a login problem.
            why = (f"the board answered, then stopped responding during the SSH handshake (ssh gave up after "
                   f"{elapsed:.0f} s). Check that sshd on the board is not overloaded or stuck (restart it), and "
                   "that no firewall or port forward between drops the traffic after the first packets")
        elif "timed out" in low:
            why = (f"no answer within {self.connect_timeout} s (ConnectTimeout). Check the board is on, on "
                   "this network, and the address and port are right")
        elif "refused" in low:
            why = "connection refused: nothing listens on that port. Start sshd on the board or fix the port"
        elif "permission denied" in low:
            why = ("login refused (BatchMode: key-based login only). Install your key with "
                   f"`ssh-copy-id -p {self.port} {self.dest}` or name one in $EDGEACT_SSH_CONFIG")
        elif "host key" in low:
            why = (f"host key not trusted. Connect once by hand (`ssh -p {self.port} {self.dest}`) to accept "
                   "it, or set UserKnownHostsFile in $EDGEACT_SSH_CONFIG")
        elif "could not resolve" in low or "name or service" in low:
            why = "host name does not resolve. Check the name or use the board's IP address"
        else:
            why = "check `ssh -p PORT user@host` works without a password prompt"
        return TargetError(f"board {self.name} unreachable: {err} — {why}.")

    # ------------------------------------------------------------------------------------------- API

    def probe(self, timeout: float = 60) -> dict:
        """Python version, machine and runtimes on the board (one SSH round trip)."""
        code = ("import json,platform,importlib.util as u;print(json.dumps({'python':platform.python_version(),"
                "'machine':platform.machine(),'numpy':bool(u.find_spec('numpy')),"
                "'onnxruntime':bool(u.find_spec('onnxruntime')),'litert':bool(u.find_spec('ai_edge_litert') "
                "or u.find_spec('tflite_runtime'))}))")
        out = self._ssh(f"{shlex.quote(self.python)} -c {shlex.quote(code)}", timeout, "probe python3")
        import json

        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise TargetError(f"{self.name}: `{self.python}` did not answer as expected ({out[-200:]!r}); "
                              "is Python 3 installed on the board?") from None

    def backends(self) -> tuple[str, ...]:
        info = self.probe()
        return tuple(b for b in ("onnxruntime", "litert") if info.get(b) and info.get("numpy"))

    def status(self) -> TargetStatus:
        try:
            info = self.probe()
        except TargetError as exc:
            return TargetStatus(self.name, False, (), str(exc), "see the message")
        b = tuple(x for x in ("onnxruntime", "litert") if info.get(x) and info.get("numpy"))
        return TargetStatus(self.name, bool(b), b, f"{info['machine']}, Python {info['python']}",
                            "" if b else "pip install numpy onnxruntime ai-edge-litert on the board")

    def run(self, model, inputs, backend=None, threads=1, warmup=1, runs=1, progress=False,
            session_options=None) -> RunResult:
        from edgeact.targets.base import backend_for

        model = check_model(model)
        backend = backend_for(model, backend)
        job = LocalJob(model, normalize_inputs(inputs))
        remote = None
        try:
            out = self._ssh("mktemp -d /tmp/edgeact.XXXXXXXX", 60, "mktemp on the board").strip()
            remote = out.splitlines()[-1] if out else ""
            if not re.fullmatch(r"/[\w./-]+", remote):
                raise TargetError(f"{self.name}: could not create a working directory ({out!r}).")
            rmodel = f"{remote}/model{model.suffix.lower()}"
            shutil.copyfile(model, job.dir / f"model{model.suffix.lower()}")
            shutil.copyfile(RUNNER, job.dir / "runner.py")
            self._scp([str(job.dir / "runner.py"), str(job.dir / f"model{model.suffix.lower()}"),
                       str(job.inputs)], f"{self.dest}:{remote}/")
            args = job.runner_args(backend, threads, warmup, runs, mark=False, model=rmodel, base=remote,
                                   session_options=session_options)
            remote_cmd = (f"cd {remote} && PYTHONHASHSEED=0 OMP_NUM_THREADS={threads} "
                          f"{shlex.quote(self.python)} runner.py " + " ".join(shlex.quote(a) for a in args))
            t0 = time.monotonic()
            code, err = stream(self.ssh_cmd(remote_cmd), None, warmup + runs, f"{self.name} {backend}",
                               progress)
            wall = time.monotonic() - t0
            if code == 255:
                raise self._connect_error(err, time.monotonic() - t0)
            if code != 0:
                raise runner_error(code, err, self.name, model)
            self._scp([f"{self.dest}:{remote}/outputs.npz", f"{self.dest}:{remote}/result.json"],
                      str(job.dir) + "/")
            res = load_result(job, self.name, backend, None, False, wall)
            res.rss_note = "runner process on the board"
            return res
        finally:
            if remote:
                try:
                    self._ssh(f"rm -rf {shlex.quote(remote)}", 30, "clean up")
                except TargetError:
                    pass
            job.cleanup()
