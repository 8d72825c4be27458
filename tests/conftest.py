"""Shared pytest fixtures. Each feature keeps its fixtures in its own clearly named section."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

# ================================================================================================
# Targets and measurement (issue 5): ARM roots under QEMU, the board in a box over SSH, test models.
# The roots are built once per test session into the normal cache ($EDGEACT_CACHE or ~/.cache/edgeact),
# from nothing on a fresh machine, and reused by later runs.
# ================================================================================================


@pytest.fixture(scope="session")
def target_models(tmp_path_factory):
    """Every hand-made int8/float model of tests/fixtures_models.py, by file name."""
    import fixtures_models

    return fixtures_models.make_all(tmp_path_factory.mktemp("target-models"))


@pytest.fixture(scope="session")
def qemu_user(tmp_path_factory):
    """Debian's qemu-user (qemu-x86_64, qemu-aarch64, …), installed as the ARM targets install it when missing."""
    from edgeact.targets import sysroot

    sysroot.ensure_qemu(sysroot.arch_spec("aarch64"), tmp_path_factory.mktemp("qemu") / "install.log")


@pytest.fixture(scope="session")
def aarch64_root():
    """The qemu-aarch64 root (built by `edgeact target setup` logic if missing; resumes if unfinished)."""
    from edgeact.targets import sysroot

    sysroot.setup("aarch64", progress=False)
    return sysroot.check_root("aarch64")


@pytest.fixture(scope="session")
def armv7_root():
    from edgeact.targets import sysroot

    sysroot.setup("armv7", progress=False)
    return sysroot.check_root("armv7")


def _apt_install(*pkgs: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(f"{' '.join(pkgs)} missing and cannot be installed here (needs root and apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "-q", "-y", "install", *pkgs], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        subprocess.run(["apt-get", "-q", "update"], env=env, capture_output=True)
        subprocess.run(["apt-get", "-q", "-y", "install", *pkgs], env=env, check=True, capture_output=True)


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ssh_board(tmp_path_factory, aarch64_root):
    """A board in a box: a real OpenSSH server on 127.0.0.1 (high port, throwaway keys) whose `python3` is
    the aarch64 root's Python under qemu-aarch64. Yields (url, ssh_config path, box dir)."""
    if not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists():
        _apt_install("openssh-server", "openssh-client")
    if not shutil.which("ssh"):
        _apt_install("openssh-client")
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    box = tmp_path_factory.mktemp("board")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(box / key)], check=True)
    (box / "authorized_keys").write_text((box / "user_key.pub").read_text())
    bindir = box / "bin"
    bindir.mkdir()
    from edgeact.targets.qemu import guest_root, qemu_binary

    root = guest_root(aarch64_root, "cortex-a72")
    qemu = qemu_binary(aarch64_root.spec)
    (bindir / "python3").write_text(
        "#!/bin/sh\n# the board's python3: the aarch64 root's Python under QEMU user-mode emulation\n"
        f"PYTHONPATH={root}/opt/site PYTHONHASHSEED=0 exec {qemu} -L {root} -cpu cortex-a72 "
        f"{root}/usr/bin/python3.11 \"$@\"\n")
    # ForceCommand: the board's own PATH, whatever the login user's shell profile says.
    (bindir / "board-shell").write_text(
        f"#!/bin/sh\nexport PATH={bindir}:/usr/bin:/bin\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n")
    for f in ("python3", "board-shell"):
        (bindir / f).chmod(0o755)
    port = free_loopback_port()
    sftp = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                             "/usr/lib/ssh/sftp-server") if Path(p).exists()), "internal-sftp")
    (box / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {box}/host_key
AuthorizedKeysFile {box}/authorized_keys
PidFile {box}/sshd.pid
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
PermitRootLogin prohibit-password
Subsystem sftp {sftp}
ForceCommand {bindir}/board-shell
""")
    user = os.environ.get("USER") or __import__("pwd").getpwuid(os.geteuid()).pw_name
    (box / "known_hosts").write_text(f"[127.0.0.1]:{port} {(box / 'host_key.pub').read_text()}")
    (box / "ssh_config").write_text(f"""Host *
  IdentityFile {box}/user_key
  IdentitiesOnly yes
  UserKnownHostsFile {box}/known_hosts
  StrictHostKeyChecking yes
""")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(box / "sshd_config")], stderr=open(box / "sshd.log", "w"))
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None:
            pytest.fail(f"sshd exited: {(box / 'sshd.log').read_text()}")
        time.sleep(0.05)
    try:
        yield f"ssh://{user}@127.0.0.1:{port}", str(box / "ssh_config"), box
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------------- threads

@pytest.fixture(scope="module")
def one_thread():
    """Intra-op threads oversubscribe the shared cores: one thread runs whole models ~10× faster here
    (modules that calibrate and run real models use it: pytestmark = pytest.mark.usefixtures("one_thread"))."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
