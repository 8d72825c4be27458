"""A plain wheel (what `pip install .` installs) carries every package, the folder mapping and the console script.

The editable install used for development resolves `export/` → `edgeact.export` through a finder of its
own, so it cannot show that a real wheel does. This builds one from a copy of the source (the build writes
`build/` and `*.egg-info` next to the sources, which must not race with other work in the checkout),
installs it into a bare directory and imports from there.
"""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]

pytestmark = pytest.mark.slow


def _source_packages() -> dict[str, Path]:
    """Every importable package in the mapped folders (a folder with an __init__.py)."""
    found = {}
    for top, folder in PACKAGE_DIR.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if "__pycache__" in rel.parts:
                continue
            name = ".".join([top, *rel.parts]) if rel.parts else top
            # a subfolder that is itself mapped elsewhere belongs to that mapping
            if any(name == p or name.startswith(p + ".") for p in PACKAGE_DIR if len(p) > len(top)):
                continue
            found[name] = init.parent
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    shutil.copy2(ROOT / "pyproject.toml", src / "pyproject.toml")
    for extra in ("README.md", "LICENSE", "MANIFEST.in", "setup.cfg"):
        if (ROOT / extra).exists():
            shutil.copy2(ROOT / extra, src / extra)
    for folder in set(PACKAGE_DIR.values()):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("edgeact-*.whl")
    return whl


@pytest.fixture(scope="module")
def names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_wheel_maps_export_and_models_into_edgeact(names):
    assert "edgeact/__init__.py" in names
    assert "edgeact/export/__init__.py" in names
    assert "edgeact/models/__init__.py" in names
    # the mapped folders appear only under edgeact, never as top-level packages of their own
    assert not any(n.startswith(("export/", "models/")) for n in names)


def test_wheel_has_every_package_and_module_of_the_source(names):
    missing = []
    for package, folder in sorted(_source_packages().items()):
        for py in sorted(folder.glob("*.py")):
            arc = "/".join([*package.split("."), py.name])
            if arc not in names:
                missing.append(f"{package} ({py.relative_to(ROOT)})")
    assert not missing, ("not in the wheel — add the package to [tool.setuptools] packages in pyproject.toml: "
                         + ", ".join(missing))


def test_wheel_declares_the_console_script(wheel, names):
    (ep,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel) as z:
        cfg = configparser.ConfigParser()
        cfg.read_string(z.read(ep).decode())
    assert cfg["console_scripts"]["edgeact"].strip() == "edgeact.cli:main"
    (top,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    with zipfile.ZipFile(wheel) as z:
        assert z.read(top).decode().split() == ["edgeact"]


def test_installed_wheel_imports_from_itself_and_runs_the_command(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                        str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    env = dict(os.environ, PYTHONPATH=str(target))
    probe = (
        "import importlib, sys, edgeact, edgeact.export, edgeact.models, edgeact.cli\n"
        "for m in (edgeact, edgeact.export, edgeact.models, edgeact.cli):\n"
        "    assert m.__file__.startswith(sys.argv[1]), (m.__name__, m.__file__)\n"
        "from importlib.metadata import distribution\n"
        "(ep,) = [e for e in distribution('edgeact').entry_points if e.name == 'edgeact']\n"
        "assert ep.group == 'console_scripts' and ep.load() is edgeact.cli.main\n"
    )
    r = subprocess.run([sys.executable, "-c", probe, str(target)], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    script = target / "bin" / "edgeact"
    assert script.exists()
    r = subprocess.run([str(script), "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "usage: edgeact" in r.stdout
