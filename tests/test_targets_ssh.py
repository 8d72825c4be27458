"""The SSH target against a board in a box: a real sshd on 127.0.0.1 whose python3 is the aarch64 root
under QEMU. Also the failure modes a real board has: nothing listening, a silent port, a wrong key."""
from __future__ import annotations

import socket

import numpy as np
import pytest

import fixtures_models as F
from edgeact.errors import TargetError
from edgeact.targets import get_target
from edgeact.targets.ssh import SshTarget


def test_board_in_a_box_runs_and_matches_host(ssh_board, target_models):
    url, config, _ = ssh_board
    board = SshTarget.from_url(url, config=config)
    status = board.status()
    assert status.available and status.detail.startswith("aarch64")
    assert set(status.backends) == {"onnxruntime", "litert"}
    x = F.sample_input((1, 16, 56, 56), seed=5)
    model = target_models["hardswish_qdq.onnx"]
    res = board.run(model, {"x": x}, runs=3)
    host = get_target("host").run(model, {"x": x})
    assert res.machine == "aarch64" and res.runtime == host.runtime
    assert len(res.times_ms) == 3 and res.peak_rss_kb and res.peak_rss_kb > 1000
    assert np.array_equal(res.outputs[0], host.outputs[0])


def test_board_tflite_via_env_config(ssh_board, target_models, monkeypatch):
    url, config, _ = ssh_board
    monkeypatch.setenv("EDGEACT_SSH_CONFIG", config)
    x = F.sample_input((1, 56, 56, 16), seed=6)
    model = target_models["conv_int8.tflite"]
    res = get_target(url).run(model, x)
    assert np.array_equal(res.outputs[0], get_target("host").run(model, x).outputs[0])


def test_closed_port_is_a_clear_error(target_models):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = get_target(f"ssh://nobody@127.0.0.1:{port}?timeout=3")
    with pytest.raises(TargetError, match="unreachable.*refused"):
        t.run(target_models["hardswish_qdq.onnx"], F.sample_input((1, 16, 56, 56)))


def test_silent_board_times_out_with_a_clear_message(target_models):
    """A port that accepts TCP but never speaks SSH: ConnectTimeout must end it."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        t = get_target(f"ssh://nobody@127.0.0.1:{port}?timeout=2")
        with pytest.raises(TargetError, match="unreachable.*(timed out|no answer)"):
            t.run(target_models["hardswish_qdq.onnx"], F.sample_input((1, 16, 56, 56)))


def test_wrong_key_is_refused_with_the_fix(ssh_board, target_models, tmp_path):
    url, config, box = ssh_board
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host *\n  IdentityFile {tmp_path}/other\n  IdentitiesOnly yes\n"
                   f"  UserKnownHostsFile {box}/known_hosts\n  StrictHostKeyChecking yes\n")
    with pytest.raises(TargetError, match="login refused.*ssh-copy-id"):
        SshTarget.from_url(url, config=str(cfg)).run(target_models["hardswish_qdq.onnx"],
                                                     F.sample_input((1, 16, 56, 56)))
