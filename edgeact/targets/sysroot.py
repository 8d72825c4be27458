"""Building and checking the ARM roots that the QEMU targets run in.

A root is Debian's ARM Python unpacked with `dpkg -x` (fetched through a private apt configuration, so the
machine's own apt set-up is never touched) plus the runtimes' ARM wheels installed with pip's `--platform`.
Every step leaves a stamp, so `edgeact target setup` is idempotent and resumes where it stopped; a manifest of
every file's size lets later runs detect a missing or corrupt root without starting QEMU.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from edgeact.fileio import atomic_write
from edgeact.errors import TargetError

DEBIAN_SUITE = "bookworm"  # Debian 12: Python 3.11, the version the runtimes' cp311 wheels need
DEBIAN_MIRROR = os.environ.get("EDGEACT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBIAN_SECURITY = os.environ.get("EDGEACT_DEBIAN_SECURITY", "http://deb.debian.org/debian-security")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PY_VERSION = "3.11"


def cache_dir() -> Path:
    """The cache for roots, downloads and the plugin: `$EDGEACT_CACHE` or `~/.cache/edgeact` (never the repo)."""
    env = os.environ.get("EDGEACT_CACHE")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "edgeact"


def _manylinux(arch: str) -> list[str]:
    # pip does not expand manylinux tags for --platform: with too few it silently picks old wheels.
    return [f"manylinux_2_{m}_{arch}" for m in range(17, 37)] + [f"manylinux2014_{arch}", f"linux_{arch}"]


@dataclasses.dataclass(frozen=True)
class CpuModel:
    name: str  # QEMU -cpu name
    part: str  # MIDR part number shown in /proc/cpuinfo (runtimes pick kernels by it)
    revision: int


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """What one ARM target needs: Debian architecture, packages, wheels, QEMU binary and CPU models."""

    name: str
    debian_arch: str
    triplet: str
    qemu: str
    loader: str
    debs: tuple[str, ...]
    wheels: tuple[str, ...]
    platforms: tuple[str, ...]
    cpus: tuple[CpuModel, ...]
    default_cpu: str
    backends: tuple[str, ...]
    why: str  # why the backends are what they are, for `edgeact targets`

    def cpu(self, name: str | None) -> CpuModel:
        name = name or self.default_cpu
        for c in self.cpus:
            if c.name == name:
                return c
        raise TargetError(
            f"CPU model {name!r} is not offered for {self.name}; choose one of "
            f"{', '.join(c.name for c in self.cpus)} (e.g. --cpu {self.default_cpu})."
        )


def _host_version(dist: str, default: str) -> str:
    """Same runtime version on ARM as on the host, so outputs can be compared bit for bit."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return default


ARCHES: dict[str, ArchSpec] = {
    "aarch64": ArchSpec(
        name="aarch64",
        debian_arch="arm64",
        triplet="aarch64-linux-gnu",
        qemu="qemu-aarch64",
        loader="lib/ld-linux-aarch64.so.1",
        debs=("python3.11-minimal", "libpython3.11-stdlib", "libgomp1", "libstdc++6"),
        wheels=(
            f"numpy=={_host_version('numpy', '2.4.6')}",
            f"onnxruntime=={_host_version('onnxruntime', '1.32.0')}",
            f"ai-edge-litert=={_host_version('ai-edge-litert', '2.3.0')}",
        ),
        platforms=tuple(_manylinux("aarch64")),
        cpus=(
            CpuModel("cortex-a53", "0xd03", 4),
            CpuModel("cortex-a72", "0xd08", 3),
            CpuModel("cortex-a76", "0xd0b", 1),
        ),
        default_cpu="cortex-a72",
        backends=("onnxruntime", "litert"),
        why="onnxruntime and ai-edge-litert publish aarch64 wheels for CPython 3.11",
    ),
    "armv7": ArchSpec(
        name="armv7",
        debian_arch="armhf",
        triplet="arm-linux-gnueabihf",
        qemu="qemu-arm",
        loader="lib/ld-linux-armhf.so.3",
        debs=("python3.11-minimal", "libpython3.11-stdlib", "python3-numpy", "libgomp1", "libstdc++6"),
        wheels=("tflite-runtime==2.14.0",),
        platforms=tuple(_manylinux("armv7l")),
        cpus=(CpuModel("cortex-a7", "0xc07", 5), CpuModel("cortex-a15", "0xc0f", 3)),
        default_cpu="cortex-a7",
        backends=("litert",),
        why="32-bit ARM has no onnxruntime or ai-edge-litert wheel for CPython 3.11; only tflite-runtime 2.14 "
        "(the last release), run with Debian's armhf NumPy 1.24",
    ),
}


def arch_spec(arch: str) -> ArchSpec:
    if arch not in ARCHES:
        raise TargetError(f"unknown ARM architecture {arch!r}; known: {', '.join(ARCHES)}.")
    return ARCHES[arch]


def cpuinfo_text(spec: ArchSpec, cpu: CpuModel, ncpu: int = 1) -> str:
    """An ARM-format /proc/cpuinfo: QEMU passes the host's x86 one through, and the runtimes crash on it."""
    blocks = []
    for i in range(ncpu):
        if spec.name == "aarch64":
            blocks.append(
                f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
                f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
                f"CPU part\t: {cpu.part}\nCPU revision\t: {cpu.revision}\n"
            )
        else:
            blocks.append(
                f"processor\t: {i}\nmodel name\t: ARMv7 Processor rev {cpu.revision} (v7l)\nBogoMIPS\t: 38.40\n"
                "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm\n"
                f"CPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\n"
                f"CPU part\t: {cpu.part}\nCPU revision\t: {cpu.revision}\n"
            )
    return "\n".join(blocks) + "\n"


# --------------------------------------------------------------------------------------------- layout


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where one architecture's files live inside the cache."""

    spec: ArchSpec
    cache: Path

    @property
    def root(self) -> Path:
        return self.cache / "sysroots" / self.spec.name

    @property
    def stamps(self) -> Path:
        return self.cache / "sysroots" / f"{self.spec.name}.stamps"

    @property
    def views(self) -> Path:
        return self.cache / "sysroots" / f"{self.spec.name}.cpu"

    @property
    def apt(self) -> Path:
        return self.cache / "apt" / self.spec.debian_arch

    @property
    def debs(self) -> Path:
        return self.apt / "archives"

    @property
    def wheels(self) -> Path:
        return self.cache / "wheels" / self.spec.name

    @property
    def log(self) -> Path:
        return self.cache / "logs" / f"setup-{self.spec.name}.log"

    @property
    def manifest(self) -> Path:
        return self.root / ".edgeact-manifest.json"

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / f"python{PY_VERSION}"

    @property
    def site(self) -> Path:
        return self.root / "opt" / "site"

    def view(self, cpu: CpuModel) -> Path:
        return self.views / cpu.name


def layout(arch: str, cache: Path | None = None) -> Layout:
    return Layout(arch_spec(arch), cache or cache_dir())


# ---------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _locked(path: Path, waiting: str = "") -> Iterator[None]:
    """One set-up per root at a time (a test session and a user may start one together). A set-up that
    has to wait says so on stderr (`waiting` names what), instead of sitting silent at step 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{waiting or 'set-up'}: another set-up of this root is running (lock {path}); waiting for it "
                  "to finish — Ctrl-C to stop waiting", file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], log: Path, what: str, env: dict | None = None, timeout: float = 1800,
         check: bool = True) -> str:
    """Run a set-up command, appending its output to the log; fail with the log's tail and the fix."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(map(str, cmd))}\n")
    try:
        proc = subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout
        )
    except FileNotFoundError as exc:
        raise TargetError(f"{what}: {exc.filename} is not installed. Install it (Debian: apt-get install "
                          f"{_APT_PKG.get(Path(str(exc.filename)).name, Path(str(exc.filename)).name)}) "
                          "and run the set-up again.") from None
    except subprocess.TimeoutExpired:
        raise TargetError(f"{what}: timed out after {timeout:.0f} s; check the network and run the set-up "
                          f"again (it resumes). Log: {log}") from None
    with open(log, "a") as fh:
        fh.write(proc.stdout)
        fh.write(proc.stderr)
    if proc.returncode != 0 and check:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise TargetError(f"{what} failed (exit {proc.returncode}):\n{tail}\nFull log: {log}. "
                          "Fix the cause and run the set-up again; finished steps are kept.")
    return proc.stdout


_APT_PKG = {"apt-get": "apt", "dpkg": "dpkg", "gcc": "gcc", "qemu-aarch64": "qemu-user",
            "qemu-arm": "qemu-user", "tar": "tar", "xz": "xz-utils"}


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


# ------------------------------------------------------------------------------------- private apt


class PrivateApt:
    """apt-get with its own sources, lists, cache and an empty dpkg status: the host's apt is untouched."""

    def __init__(self, base: Path, arch: str | None, source: bool = False):
        self.base = base
        self.arch = arch
        self.source = source

    def prepare(self) -> None:
        if not Path(KEYRING).exists():
            raise TargetError(f"{KEYRING} is missing: the ARM roots are built from Debian's packages and need "
                              "Debian's archive keys. Install it with `apt-get install debian-archive-keyring`.")
        for d in ("lists/partial", "archives/partial", "etc/sources.list.d", "etc/preferences.d"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        status = self.base / "status"
        if not status.exists():
            status.write_text("")
        kind = "deb-src" if self.source else "deb"
        opts = f"[signed-by={KEYRING}" + (f" arch={self.arch}]" if self.arch else "]")
        lines = [
            f"{kind} {opts} {DEBIAN_MIRROR} {DEBIAN_SUITE} main",
            f"{kind} {opts} {DEBIAN_MIRROR} {DEBIAN_SUITE}-updates main",
            f"{kind} {opts} {DEBIAN_SECURITY} {DEBIAN_SUITE}-security main",
        ]
        atomic_write(self.base / "etc" / "sources.list", "\n".join(lines) + "\n")

    def options(self) -> list[str]:
        b = self.base
        opts = {
            "Dir::State": b,
            "Dir::State::Lists": b / "lists",
            "Dir::State::status": b / "status",
            "Dir::Cache": b,
            "Dir::Cache::archives": b / "archives",
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "Dir::Etc::SourceList": b / "etc" / "sources.list",
            "Dir::Etc::SourceParts": b / "etc" / "sources.list.d",
            "Dir::Etc::Preferences": b / "etc" / "preferences",
            "Dir::Etc::PreferencesParts": b / "etc" / "preferences.d",
            "Debug::NoLocking": "1",
            "APT::Install-Recommends": "0",
            "APT::Sandbox::User": "root" if os.geteuid() == 0 else "",
        }
        if self.arch:
            opts["APT::Architecture"] = self.arch
            opts["APT::Architectures"] = self.arch
        out: list[str] = []
        for k, v in opts.items():
            if k == "APT::Sandbox::User" and not v:
                continue
            out += ["-o", f"{k}={v}"]
        return out

    def cmd(self, *args: str) -> list[str]:
        return ["apt-get", "-q", "-y", *self.options(), *args]

    def update(self, log: Path, what: str, tries: int = 3) -> None:
        """`apt-get update`, retried: a mirror in mid-sync serves index files of the wrong size for a while.
        If only some suites keep failing (e.g. -security), carry on with the lists apt did get."""
        for attempt in range(tries):
            try:
                _run(self.cmd("update"), log, what)
                return
            except TargetError:
                if attempt + 1 < tries:
                    time.sleep(3 * (attempt + 1))
        if any(("_Packages" in f.name or "_Sources" in f.name) and f"_{DEBIAN_SUITE}_main_" in f.name
               for f in (self.base / "lists").iterdir()):
            with open(log, "a") as fh:
                fh.write("warning: some index files failed; continuing with the lists that were fetched\n")
            return
        _run(self.cmd("update"), log, what)


# ------------------------------------------------------------------------------------------ steps


@dataclasses.dataclass
class Step:
    name: str
    title: str
    run: Callable[[], None]


def ensure_qemu(spec: ArchSpec, log: Path) -> str:
    """QEMU user-mode from Debian's `qemu-user` package (the dynamic build: it loads TCG plugins)."""
    found = shutil.which(spec.qemu)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise TargetError(
            f"{spec.qemu} is not installed and this user cannot install it (needs root and apt-get). "
            "Ask an administrator to run `apt-get install qemu-user` (not qemu-user-static: it cannot load "
            "plugins), then run `edgeact target setup` again."
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        _run(["apt-get", "-q", "-y", "install", "qemu-user"], log, "installing qemu-user", env=env)
    except TargetError:
        _run(["apt-get", "-q", "update"], log, "apt-get update", env=env)
        _run(["apt-get", "-q", "-y", "install", "qemu-user"], log, "installing qemu-user", env=env)
    found = shutil.which(spec.qemu)
    if not found:
        raise TargetError(f"installed qemu-user but {spec.qemu} is still not on PATH; check `dpkg -L qemu-user`.")
    return found


def _fetch_debs(lay: Layout) -> None:
    apt = PrivateApt(lay.apt, lay.spec.debian_arch)
    apt.prepare()
    apt.update(lay.log, f"apt-get update ({lay.spec.debian_arch}, private)")
    _run(apt.cmd("install", "--download-only", *lay.spec.debs), lay.log,
         f"downloading {lay.spec.debian_arch} packages")


def _unpack(lay: Layout) -> None:
    debs = sorted(lay.debs.glob("*.deb"))
    if not debs:
        raise TargetError(f"no .deb files in {lay.debs}; run `edgeact target setup qemu-{lay.spec.name}` again.")
    tmp = lay.root.with_name(lay.root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in debs:
        _run(["dpkg", "-x", deb, tmp], lay.log, f"unpacking {deb.name}")
    _fixup(lay.spec, tmp)
    shutil.rmtree(lay.root, ignore_errors=True)
    os.replace(tmp, lay.root)


def _fixup(spec: ArchSpec, root: Path) -> None:
    """What dpkg's maintainer scripts would have done, plus the /proc and /sys files QEMU cannot provide."""
    libdir = root / "usr" / "lib" / spec.triplet
    # update-alternatives links for BLAS/LAPACK (Debian's numpy needs libblas.so.3 / liblapack.so.3)
    for name, sub in (("libblas.so.3", "blas"), ("liblapack.so.3", "lapack")):
        target = libdir / sub / name
        if target.exists() and not (libdir / name).exists():
            (libdir / name).symlink_to(Path(sub) / name)
    py3 = root / "usr" / "bin" / "python3"
    if not py3.exists():
        py3.symlink_to(f"python{PY_VERSION}")
    _write_cpu_files(spec, root, spec.cpu(None))
    (root / "opt" / "site").mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)


def _write_cpu_files(spec: ArchSpec, root: Path, cpu: CpuModel) -> None:
    atomic_write(root / "proc" / "cpuinfo", cpuinfo_text(spec, cpu))
    for f in ("possible", "present", "online"):
        atomic_write(root / "sys" / "devices" / "system" / "cpu" / f, "0\n")


def _platform_args(spec: ArchSpec) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", PY_VERSION, "--implementation", "cp"]
    for p in spec.platforms:
        args += ["--platform", p]
    return args


def _fetch_wheels(lay: Layout) -> None:
    lay.wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
           *_platform_args(lay.spec), "-d", lay.wheels]
    _run(cmd + list(lay.spec.wheels), lay.log, f"downloading {lay.spec.name} wheels")


def _install_wheels(lay: Layout) -> None:
    wanted = []
    for req in lay.spec.wheels:
        name, _, version = req.partition("==")
        stem = name.replace("-", "_")
        hits = sorted(lay.wheels.glob(f"{stem}-{version}-*.whl"))
        if not hits:
            raise TargetError(f"wheel {req} for {lay.spec.name} not found in {lay.wheels}; "
                              f"run `edgeact target setup qemu-{lay.spec.name}` again.")
        wanted.append(hits[-1])
    tmp = lay.site.with_name("site.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    _run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "--no-index",
          "--no-compile", *_platform_args(lay.spec), "--target", tmp, *wanted], lay.log, f"installing {lay.spec.name} wheels")
    shutil.rmtree(lay.site, ignore_errors=True)
    os.replace(tmp, lay.site)


def _compile(lay: Layout) -> None:
    """Byte-compile the root's Python once: Debian's maintainer scripts would have, and without .pyc files
    every emulated start re-compiles the standard library and the runtimes (twice as slow)."""
    dirs = [d for d in (lay.root / "usr" / "lib" / f"python{PY_VERSION}", lay.site,
                        lay.root / "usr" / "lib" / "python3" / "dist-packages") if d.exists()]
    if sys.version_info[:2] == tuple(int(x) for x in PY_VERSION.split(".")):
        cmd = [sys.executable, "-m", "compileall", "-q", "-j0", *dirs]  # same bytecode format as the root's
        _run(cmd, lay.log, "byte-compiling the root's Python", check=False)
    else:
        from edgeact.targets.qemu import qemu_env, qemu_python_cmd

        _run(qemu_python_cmd(lay, None) + ["-m", "compileall", "-q", *map(str, dirs)], lay.log,
             "byte-compiling the root's Python under QEMU", env=qemu_env(lay), check=False)


def make_views(lay: Layout) -> None:
    """One directory per CPU model: symlinks into the root plus that CPU's own /proc/cpuinfo.

    QEMU's `-L` looks a path up under the prefix first; the runtimes choose kernels by the CPU part in
    /proc/cpuinfo, so each `-cpu` gets a matching cpuinfo without copying the root.
    """
    for cpu in lay.spec.cpus:
        tmp = lay.views / f".{cpu.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for entry in lay.root.iterdir():
            if entry.name in ("proc", "sys") or entry.name.startswith("."):
                continue
            (tmp / entry.name).symlink_to(entry)
        _write_cpu_files(lay.spec, tmp, cpu)
        final = lay.view(cpu)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)


def write_manifest(lay: Layout) -> None:
    files = {}
    for dirpath, _dirs, names in os.walk(lay.root):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                continue
            rel = os.path.relpath(p, lay.root)
            if rel == lay.manifest.name:
                continue
            files[rel] = os.path.getsize(p)
    meta = {"arch": lay.spec.name, "wheels": list(lay.spec.wheels), "debs": list(lay.spec.debs),
            "files": files}
    atomic_write(lay.manifest, json.dumps(meta))


def verify(lay: Layout, qemu: str | None = None) -> dict:
    """Import NumPy and each runtime under QEMU; return their versions (the proof the root works)."""
    from edgeact.targets.qemu import qemu_python_cmd, qemu_env

    code = ("import json, platform, numpy; v={'machine': platform.machine(), 'numpy': numpy.__version__}\n"
            "try:\n import onnxruntime; v['onnxruntime']=onnxruntime.__version__\nexcept ImportError: pass\n"
            "try:\n import ai_edge_litert.interpreter as m; import importlib.metadata as md; "
            "v['litert']='ai-edge-litert '+md.version('ai-edge-litert')\nexcept ImportError: pass\n"
            "try:\n import tflite_runtime.interpreter as m; v['litert']='tflite-runtime '+m.__dict__.get("
            "'__version__', __import__('tflite_runtime').__version__)\nexcept ImportError: pass\n"
            "import os\nfor fd in (-31337, -31338):\n try: os.close(fd)\n except OSError: pass\n"
            "print(json.dumps(v))")
    from edgeact.targets.plugin import plugin_path

    plugin = plugin_path(lay.cache)
    counts = lay.stamps / "plugin-check.txt"
    counts.unlink(missing_ok=True)
    cmd = qemu_python_cmd(lay, cpu=None, qemu=qemu, plugin_out=counts, plugin=plugin) + ["-c", code]
    out = _run(cmd, lay.log, f"checking the {lay.spec.name} root under QEMU", env=qemu_env(lay), timeout=600)
    versions = json.loads(out.strip().splitlines()[-1])
    lines = counts.read_text().split() if counts.exists() else []
    if not lines or not lines[0].isdigit():
        raise TargetError(f"the instruction-count plugin loaded but counted nothing ({counts}); run "
                          f"`edgeact target setup qemu-{lay.spec.name} --force`.")
    missing = [b for b in lay.spec.backends if (b if b != "litert" else "litert") not in versions]
    if missing:
        raise TargetError(f"the {lay.spec.name} root imports but lacks {missing}; "
                          f"run `edgeact target setup qemu-{lay.spec.name} --force`.")
    return versions


def steps(lay: Layout, qemu_holder: dict) -> list[Step]:
    from edgeact.targets.plugin import build_plugin

    def qemu_step():
        qemu_holder["qemu"] = ensure_qemu(lay.spec, lay.log)

    def verify_step():
        write_manifest(lay)
        versions = verify(lay, qemu_holder.get("qemu"))
        atomic_write(lay.stamps / "versions.json", json.dumps(versions))

    return [
        Step("qemu", f"QEMU ({lay.spec.qemu}, Debian qemu-user)", qemu_step),
        Step("debs", f"Debian {lay.spec.debian_arch} packages (private apt)", lambda: _fetch_debs(lay)),
        Step("unpack", "unpacking with dpkg -x", lambda: _unpack(lay)),
        Step("wheels", "ARM wheels (pip --platform)", lambda: _fetch_wheels(lay)),
        Step("site", "installing wheels into /opt/site", lambda: _install_wheels(lay)),
        Step("compile", "byte-compiling Python (.pyc)", lambda: _compile(lay)),
        Step("views", "per-CPU views (/proc/cpuinfo)", lambda: make_views(lay)),
        Step("plugin", "instruction-count TCG plugin", lambda: build_plugin(lay.cache, lay.log)),
        Step("verify", "importing the runtimes under QEMU", verify_step),
    ]


# Steps whose output the next steps consume: redoing one invalidates those after it.
_ROOT_STEPS = ("unpack", "site", "compile", "views", "verify")  # the steps that write the root and its views
_ALWAYS = {"qemu", "plugin"}  # cheap when done; the plugin also depends on the installed QEMU and its source


@dataclasses.dataclass
class SetupReport:
    arch: str
    root: Path
    seconds: float
    root_bytes: int
    cache_bytes: int
    versions: dict
    skipped: list[str]


def setup(arch: str, force: bool = False, progress: bool = True, cache: Path | None = None) -> SetupReport:
    """Build the root for `arch` (resuming from the last finished step) and verify it under QEMU."""
    from tqdm import tqdm

    lay = layout(arch, cache)
    t0 = time.monotonic()
    qemu_holder: dict = {}
    skipped = []
    with _locked(lay.cache / "sysroots" / f"{arch}.lock", f"qemu-{arch}"):
        if force:
            shutil.rmtree(lay.stamps, ignore_errors=True)
        elif (lay.stamps / "verify").exists():
            try:
                check_root(arch, cache)
            except TargetError as exc:  # finished once, damaged since: rebuild the root, keep the downloads
                print(f"qemu-{arch}: {exc} Rebuilding the root from the downloaded packages.", file=sys.stderr,
                      flush=True)
                for name in _ROOT_STEPS:
                    (lay.stamps / name).unlink(missing_ok=True)
        lay.stamps.mkdir(parents=True, exist_ok=True)
        all_steps = steps(lay, qemu_holder)
        redo = False
        bar = tqdm(all_steps, desc=f"setup qemu-{arch}", unit="step", disable=not progress,
                   file=sys.stderr, leave=True)
        for step in bar:
            bar.set_postfix_str(step.title)
            stamp = lay.stamps / step.name
            if stamp.exists() and not redo and step.name not in _ALWAYS:
                skipped.append(step.name)
                continue
            if step.name not in _ALWAYS:
                redo = True  # a redone step invalidates the later ones
                stamp.unlink(missing_ok=True)
            step.run()
            atomic_write(stamp, time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        bar.close()
        check_root(arch, cache)  # what is reported ready is the root on disk, file for file
    versions = json.loads((lay.stamps / "versions.json").read_text())
    return SetupReport(arch, lay.root, time.monotonic() - t0, dir_size(lay.root), dir_size(lay.cache),
                       versions, skipped)


# ------------------------------------------------------------------------------------------ checks


def check_root(arch: str, cache: Path | None = None) -> Layout:
    """Raise a TargetError naming the fix if the root is missing, unfinished or corrupt (no QEMU started)."""
    lay = layout(arch, cache)
    cmd = f"edgeact target setup qemu-{arch}"
    fix = f"Run `{cmd}`"
    if not lay.root.exists():
        raise TargetError(f"the qemu-{arch} root is missing ({lay.root}). {fix} (about a minute, a few "
                          "hundred MB in the cache; EDGEACT_CACHE moves it).")
    if not (lay.stamps / "verify").exists() or not lay.manifest.exists():
        raise TargetError(f"the qemu-{arch} root at {lay.root} is unfinished (set-up was interrupted). "
                          f"{fix} to resume it.")
    try:
        files = json.loads(lay.manifest.read_text())["files"]
    except (OSError, ValueError, KeyError):
        raise TargetError(f"the qemu-{arch} root's manifest is unreadable ({lay.manifest}). "
                          f"Run `{cmd} --force` to rebuild it.") from None
    bad = []
    for rel, size in files.items():
        try:
            if os.path.getsize(lay.root / rel) != size:
                bad.append(f"{rel} (size changed)")
        except OSError:
            bad.append(f"{rel} (missing)")
        if len(bad) >= 5:
            break
    if bad:
        raise TargetError(f"the qemu-{arch} root at {lay.root} is corrupt: {'; '.join(bad)}. "
                          f"Run `{cmd} --force` to rebuild it.")
    for cpu in lay.spec.cpus:
        if not (lay.view(cpu) / "proc" / "cpuinfo").exists():
            raise TargetError(f"the qemu-{arch} CPU view for {cpu.name} is missing. Run `{cmd} --force`.")
    return lay
