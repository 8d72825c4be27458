"""Failures that must name cause and fix: QEMU not installed, root missing or corrupt, model file missing."""
from __future__ import annotations

import json
import os
import shutil

import pytest

import fixtures_models as F
from edgeact.cli import main
from edgeact.errors import ModelFileError, TargetError
from edgeact.targets import get_target, sysroot


def test_qemu_not_installed(monkeypatch, target_models, tmp_path):
    missing = tmp_path / "no-such-qemu-aarch64"  # a real path with nothing there
    monkeypatch.setenv("EDGEACT_QEMU_AARCH64", str(missing))
    with pytest.raises(TargetError, match="apt-get install qemu-user"):
        get_target("qemu-aarch64").run(target_models["hardswish_qdq.onnx"], F.sample_input((1, 16, 56, 56)))
    monkeypatch.delenv("EDGEACT_QEMU_AARCH64")
    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu-arm on PATH
    with pytest.raises(TargetError, match="qemu-arm is not installed.*apt-get install qemu-user"):
        get_target("qemu-armv7").run(target_models["hardswish_int8.tflite"], F.sample_input((1, 56, 56, 16)))


def test_root_missing(monkeypatch, target_models, tmp_path):
    monkeypatch.setenv("EDGEACT_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(TargetError, match="missing.*edgeact target setup qemu-aarch64"):
        get_target("qemu-aarch64").run(target_models["hardswish_qdq.onnx"], F.sample_input((1, 16, 56, 56)))
    status = get_target("qemu-aarch64").status()
    assert not status.available and status.fix == "edgeact target setup qemu-aarch64"


def _linked_copy(aarch64_root, cache):
    """A cheap copy of the root (hard links), so that breaking it leaves the session's root intact."""
    lay = sysroot.layout("aarch64", cache)
    shutil.copytree(aarch64_root.root, lay.root, symlinks=True, copy_function=os.link)
    shutil.copytree(aarch64_root.stamps, lay.stamps)
    return lay


def test_root_corrupt(monkeypatch, aarch64_root, target_models, tmp_path):
    lay = _linked_copy(aarch64_root, tmp_path / "cache")
    monkeypatch.setenv("EDGEACT_CACHE", str(lay.cache))
    exe = lay.root / "usr" / "bin" / "python3.11"
    exe.unlink()  # unlink, then write: the session root's inode is untouched
    exe.write_bytes(b"\0" * 100)
    with pytest.raises(TargetError, match="corrupt.*python3.11 .size changed.*target setup qemu-aarch64 --force"):
        get_target("qemu-aarch64").run(target_models["hardswish_qdq.onnx"], F.sample_input((1, 16, 56, 56)))
    (lay.stamps / "verify").unlink()
    with pytest.raises(TargetError, match="unfinished.*to resume"):
        sysroot.check_root("aarch64")


def test_model_file_missing_and_corrupt(tmp_path, capsys, target_models):
    with pytest.raises(ModelFileError, match="not found.*export"):
        get_target("host").run(tmp_path / "nope.onnx", F.sample_input((1, 4)))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelFileError, match="not a TFLite flatbuffer"):
        get_target("host").run(bad, F.sample_input((1, 4)))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelFileError, match="onnxruntime refused the model"):
        get_target("host").run(garbage, F.sample_input((1, 4)))
    with pytest.raises(ModelFileError, match="runs on litert, not onnxruntime"):
        get_target("host").run(target_models["hardswish_int8.tflite"], F.sample_input((1, 4)),
                               backend="onnxruntime")
    # the CLI prints the message without a traceback
    assert main(["bench", str(tmp_path / "nope.onnx"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err


def test_unknown_target():
    with pytest.raises(TargetError, match="choose one of host, qemu-aarch64"):
        get_target("raspberry")
    with pytest.raises(TargetError, match="ssh://user@host"):
        get_target("ssh://")


def test_targets_command_lists_what_is_missing(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EDGEACT_CACHE", str(tmp_path / "empty"))
    assert main(["targets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["host"]["available"]
    assert not rows["qemu-aarch64"]["available"]
    assert rows["qemu-aarch64"]["fix"] == "edgeact target setup qemu-aarch64"
    assert rows["qemu-armv7"]["backends"] == ["litert"]
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "| qemu-armv7 | no | litert |" in out and "edgeact target setup qemu-armv7" in out


def test_runner_imports_only_numpy_and_runtimes():
    """runner.py runs on boards without edgeact: stdlib, NumPy and the runtime only."""
    import ast
    import sys

    from edgeact.targets.base import RUNNER

    tree = ast.parse(RUNNER.read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mods.add(node.module.split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"numpy", "onnxruntime", "ai_edge_litert", "tflite_runtime"}
    assert mods <= allowed, mods - allowed
