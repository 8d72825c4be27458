"""Building edgeact's instruction-count TCG plugin (`insn_count.c`) for the installed QEMU.

Debian ships QEMU without plugins and without `qemu-plugin.h`; the header comes from Debian's source package
of the installed QEMU version (fetched through a private deb-src apt configuration, only the one header is
unpacked), so the plugin API version matches the QEMU that loads it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from edgeact.errors import TargetError

SOURCE = Path(__file__).with_name("insn_count.c")
MARK_START = -31337  # keep equal to EDGEACT_MARK_START in insn_count.c and runner.py
MARK_END = -31338
PLUGIN_API_VERSION = 1  # QEMU 7.2; checked against the fetched header


def qemu_source_version() -> str:
    """Debian source version of the installed qemu-user (e.g. 1:7.2+dfsg-7+deb12u18)."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${source:Version}", "qemu-user"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise TargetError("qemu-user is not installed as a Debian package, so edgeact cannot fetch the "
                          "matching qemu-plugin.h. Install it with `apt-get install qemu-user` and run "
                          "`edgeact target setup` again.") from None
    if not out:
        raise TargetError("dpkg reports no version for qemu-user; reinstall it with `apt-get install --reinstall "
                          "qemu-user`.")
    return out


def plugin_dir(cache: Path, version: str | None = None) -> Path:
    version = version or qemu_source_version()
    return cache / "plugin" / re.sub(r"[^A-Za-z0-9.+-]", "_", version)


def _so_name() -> str:
    """The .so name carries a hash of the C source, so an edited plugin is rebuilt, never silently reused."""
    import hashlib

    return f"libedgeact_insn-{hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]}.so"


def plugin_path(cache: Path) -> Path:
    return plugin_dir(cache) / _so_name()


def _fetch_header(cache: Path, version: str, log: Path) -> Path:
    from edgeact.targets.sysroot import PrivateApt, _run

    inc = plugin_dir(cache, version) / "include"
    header = inc / "qemu-plugin.h"
    if header.exists():
        return header
    apt = PrivateApt(cache / "apt" / "source", arch=None, source=True)
    apt.prepare()
    apt.update(log, "apt-get update (deb-src, private)")
    dl = cache / "apt" / "source" / "src"
    dl.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(apt.cmd("--download-only", "source", f"qemu={version}"), cwd=dl, check=True,
                       capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        with open(log, "a") as fh:
            fh.write(exc.stdout + exc.stderr)
        # the exact revision may have left the archive: any revision of the same upstream has the same header
        _run(apt.cmd("--download-only", "source", "qemu"), log, "downloading Debian's qemu source")
    upstream = version.split(":")[-1].split("+")[0].split("-")[0]
    tars = sorted(dl.glob(f"qemu_{upstream}*.orig.tar.*"))
    if not tars:
        raise TargetError(f"Debian's qemu {upstream} source tarball was not downloaded into {dl}; see {log}.")
    with tarfile.open(tars[-1]) as tf:
        member = next((m for m in tf.getmembers() if m.name.endswith("include/qemu/qemu-plugin.h")), None)
        if member is None:
            raise TargetError(f"{tars[-1].name} has no include/qemu/qemu-plugin.h; this QEMU cannot load "
                              "plugins.")
        data = tf.extractfile(member).read()
    inc.mkdir(parents=True, exist_ok=True)
    tmp = header.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, header)
    shutil.rmtree(dl, ignore_errors=True)  # 24 MB we no longer need
    return header


def build_plugin(cache: Path, log: Path) -> Path:
    """Compile insn_count.c into the cache (once per installed QEMU version); return the .so path."""
    from edgeact.targets.sysroot import _run

    version = qemu_source_version()
    out = plugin_dir(cache, version) / _so_name()
    if out.exists():
        return out
    header = _fetch_header(cache, version, log)
    m = re.search(r"#define\s+QEMU_PLUGIN_VERSION\s+(\d+)", header.read_text())
    if not m or int(m.group(1)) != PLUGIN_API_VERSION:
        raise TargetError(f"qemu-plugin.h of qemu {version} declares plugin API version "
                          f"{m.group(1) if m else '?'}, edgeact's plugin is written for version "
                          f"{PLUGIN_API_VERSION} (QEMU 7.2). Use Debian 12's qemu-user.")
    if not shutil.which("gcc"):
        if os.geteuid() == 0 and shutil.which("apt-get"):
            _run(["apt-get", "-q", "-y", "install", "gcc", "libc6-dev"], log, "installing gcc",
                 env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        else:
            raise TargetError("gcc is needed to build the instruction-count plugin. Install it with "
                              "`apt-get install gcc` and run `edgeact target setup` again.")
    tmp = out.with_name(out.name + ".tmp")
    _run(["gcc", "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wall", "-I", header.parent, "-o", tmp,
          SOURCE], log, "compiling the instruction-count plugin")
    os.replace(tmp, out)
    return out
