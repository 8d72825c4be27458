"""Target names to Target objects: `host`, `qemu-aarch64[:cpu]`, `qemu-armv7[:cpu]`, `qemu-x86_64[:cpu]`,
`ssh://user@host[:port]`."""
from __future__ import annotations

from edgeact.errors import TargetError
from edgeact.targets.base import Target, TargetStatus
from edgeact.targets.host import HostTarget
from edgeact.targets.qemu import QemuTarget
from edgeact.targets.sysroot import ARCHES

NAMES = ("host", "qemu-aarch64", "qemu-armv7", "qemu-x86_64:haswell", "qemu-x86_64:nehalem", "ssh://user@host[:port]")


def get_target(name: str, cpu: str | None = None) -> Target:
    """Parse a target name. A CPU model may follow a QEMU target after a colon (qemu-aarch64:cortex-a53)."""
    if name == "host":
        return HostTarget()
    if name.startswith("qemu-"):
        arch, _, cpu_suffix = name[5:].partition(":")
        if arch in ("x86_64", "x86-64"):
            from edgeact.targets.qemu_x86 import QemuX86Target

            return QemuX86Target(cpu or cpu_suffix or None)
        if arch == "arm":
            arch = "armv7"
        if arch not in ARCHES:
            raise TargetError(f"unknown target {name!r}; choose one of {', '.join(NAMES)}.")
        return QemuTarget(arch, cpu or cpu_suffix or None)
    if name.startswith("ssh://"):
        from edgeact.targets.ssh import SshTarget

        return SshTarget.from_url(name)
    raise TargetError(f"unknown target {name!r}; choose one of {', '.join(NAMES)}.")


def list_targets() -> list[TargetStatus]:
    """What can run here now, and for what is missing, how to get it."""
    out = [HostTarget().status()]
    for arch in ARCHES:
        out.append(QemuTarget(arch).status())
    from edgeact.targets.qemu_x86 import QemuX86Target

    out.append(QemuX86Target().status())
    from edgeact.targets.ssh import ssh_status

    out.append(ssh_status())
    return out


def get_targets(names: list[str] | None, cpu: str | None = None) -> list[Target]:
    """Targets for the CLI's repeated --target (default host); `cpu` applies to the QEMU ones, so a `cpu`
    with no QEMU target is refused rather than ignored."""
    names = names or ["host"]
    if cpu and not any(t.startswith("qemu-") for t in names):
        raise TargetError(f"--cpu {cpu} applies to QEMU targets only (qemu-aarch64, qemu-armv7), not to "
                          f"{', '.join(names)}; drop --cpu or add --target qemu-aarch64")
    return [get_target(t, cpu=cpu) if t.startswith("qemu-") else get_target(t) for t in names]
