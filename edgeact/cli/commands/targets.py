"""`edgeact targets` (what can run here, what is missing, how to get it) and `edgeact target setup`."""
from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("targets", help="list targets: available, missing, and how to get them")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=list_handler)

    t = subparsers.add_parser("target", help="manage targets (set up the QEMU ARM roots)")
    tsub = t.add_subparsers(dest="target_command", metavar="ACTION")
    s = tsub.add_parser("setup", help="build an ARM root for QEMU (unattended, resumable, cached)",
                        description="Build the ARM Python root for a QEMU target into the cache "
                        "($EDGEACT_CACHE or ~/.cache/edgeact): QEMU from Debian (installed with apt-get if "
                        "missing and root), Debian's ARM packages unpacked with dpkg -x through a private apt "
                        "configuration, the runtimes' ARM wheels, and the instruction-count plugin. Finished "
                        "steps are kept; run it again to resume.")
    s.add_argument("name", choices=["qemu-aarch64", "qemu-armv7"])
    s.add_argument("--force", action="store_true", help="rebuild every step")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=setup_handler)
    t.set_defaults(func=lambda args: (t.print_help(), 2)[1])


def list_handler(args) -> int:
    from edgeact.targets import list_targets

    statuses = list_targets()
    if args.json:
        print(json.dumps([s.__dict__ for s in statuses], indent=2))
        return 0
    print("| target | available | backends | details | how to get it |")
    print("|---|---|---|---|---|")
    for s in statuses:
        print(f"| {s.name} | {'yes' if s.available else 'no'} | {', '.join(s.backends) or '—'} | "
              f"{s.detail} | {('`' + s.fix + '`') if s.fix and not s.available else '—'} |")
    return 0


def setup_handler(args) -> int:
    from edgeact.targets import sysroot

    arch = args.name.split("-", 1)[1]
    r = sysroot.setup(arch, force=args.force, progress=not args.no_progress)
    print(f"{args.name}: ready in {r.seconds:.1f} s ({'resumed, kept: ' + ', '.join(r.skipped) if r.skipped else 'from nothing'})")
    print(f"  root   {r.root} ({r.root_bytes / 1e6:.0f} MB; whole cache {r.cache_bytes / 1e6:.0f} MB)")
    print("  " + ", ".join(f"{k} {v}" for k, v in r.versions.items()))
    print(f"  backends: {', '.join(sysroot.ARCHES[arch].backends)} — {sysroot.ARCHES[arch].why}", file=sys.stdout)
    return 0
