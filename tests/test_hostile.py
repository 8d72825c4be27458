"""Hostile input and faults (issue 12): every case ends in a clear error or the right behaviour.

A careless or unlucky user meets these: corrupt files, bad data, bad numbers, Ctrl-C, full and
read-only disks, two set-ups at once, odd values handed to the public API. Each must give one
`edgeact: error: …` line (CLI, exit ≠ 0) or an `edgeact.errors` exception naming cause and fix —
never a traceback, a silently wrong number, a hang or a file left behind. The numeric inputs of the
public API are also checked with hypothesis: any value gives a valid result or an EdgeActError.
"""
from __future__ import annotations

import fcntl
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import edgeact
from edgeact.cli import main
from edgeact.errors import ExportError, ModelFileError, QuantizationError, TargetError, UnsupportedError
from edgeact.pwl import PWLError, fit_pwl
from edgeact.qparams import QuantParams
from edgeact.tables import int8_table

EDGEACT = Path(sys.executable).with_name("edgeact")  # the console script of this venv


# ------------------------------------------------------------------------------------------- fixtures


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.c2(nn.functional.hardswish(self.c1(x))))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small converted model (saved), its ONNX and TFLite files, the float model as ONNX, and data."""
    from edgeact.export import to_onnx, to_tflite
    from edgeact.export.converted import save_converted

    d = tmp_path_factory.mktemp("hostile")
    torch.manual_seed(0)
    net = _Net().eval()
    prepared = edgeact.prepare(net)
    edgeact.calibrate(prepared, [torch.randn(8, 1, 8, 8) for _ in range(3)], progress=False)
    out = {"dir": d, "net": net, "prepared": prepared}
    for backend, fmt, export in (("onnxruntime", "onnx", to_onnx), ("litert", "tflite", to_tflite)):
        converted = edgeact.convert(prepared, backend)
        save_converted(converted, d / f"m_{fmt}.pt")
        export(converted, torch.zeros(1, 1, 8, 8), d / f"m.{fmt}")
        out[f"converted_{fmt}"] = converted
    torch.onnx.export(net, torch.zeros(4, 1, 8, 8), str(d / "float.onnx"), dynamo=False)
    rng = np.random.default_rng(0)
    np.savez(d / "good.npz", x=rng.standard_normal((4, 1, 8, 8)).astype(np.float32))
    return out


def _data_file(d: Path, kind: str) -> Path:
    """A .npz (or .npy) of one hostile kind, written with NumPy as a user would."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    p = d / f"{kind}.npz"
    if kind == "corrupt":
        p.write_bytes(b"PK\x03\x04" + b"garbage" * 20)
    elif kind == "truncated":
        np.savez(d / "full.npz", x=x)
        p.write_bytes((d / "full.npz").read_bytes()[:300])
    elif kind == "empty_file":
        p.write_bytes(b"")
    elif kind == "no_arrays":
        np.savez(p)
    elif kind == "two_arrays":
        np.savez(p, x=x, y=x)
    elif kind == "object":
        np.savez(p, x=np.array([object()] * 4, dtype=object))
    elif kind == "text":
        np.savez(p, x=np.array(["a", "b"]))
    elif kind == "nan":
        np.savez(p, x=np.where(x > 1, np.nan, x).astype(np.float32))
    elif kind == "inf":
        np.savez(p, x=np.where(x > 1, np.inf, x).astype(np.float32))
    elif kind == "zero_rows":
        np.savez(p, x=x[:0])
    elif kind == "int64":
        np.savez(p, x=np.ones((4, 1, 8, 8), np.int64))
    elif kind == "nhwc":
        np.savez(p, x=x.transpose(0, 2, 3, 1))
    elif kind == "rank":
        np.savez(p, x=x[:, 0])
    elif kind == "shape":
        np.savez(p, x=rng.standard_normal((4, 1, 9, 9)).astype(np.float32))
    else:
        raise AssertionError(kind)
    return p


def cli(argv: list[str]) -> int:
    """main(), with argparse's usage errors (SystemExit, as argparse does) turned into their exit code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _one_line_error(capsys, code: int) -> str:
    """The command failed with exactly one `edgeact: error:` line on stderr and no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code not in (0, None), err
    assert len(lines) == 1 and lines[0].startswith("edgeact: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------- bad data files

BAD_DATA = {  # kind → words the one-line error must contain
    "corrupt": "not a readable", "truncated": "not a readable", "empty_file": "empty or truncated",
    "no_arrays": "no arrays", "two_arrays": "2 array(s)", "object": "Python objects", "text": "text",
    "nan": "NaN/Inf", "inf": "NaN/Inf", "zero_rows": "0 rows", "int64": "int64 integers",
    "nhwc": "channels-last", "rank": "has shape", "shape": "has shape",
}


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
@pytest.mark.parametrize("kind", sorted(BAD_DATA))
def test_verify_refuses_bad_data(files, capsys, kind, fmt):
    data = _data_file(files["dir"], kind)
    code = main(["verify", str(files["dir"] / f"m.{fmt}"), "--model", str(files["dir"] / f"m_{fmt}.pt"),
                 "--data", str(data)])
    assert BAD_DATA[kind] in _one_line_error(capsys, code)


@pytest.mark.parametrize("kind", ["corrupt", "nan", "zero_rows", "int64", "two_arrays", "nhwc", "object"])
def test_check_refuses_bad_data(files, capsys, kind):
    d = files["dir"]
    code = main(["check", str(d / "m.onnx"), "--reference", str(d / "float.onnx"), "--data",
                 str(_data_file(d, kind)), "--no-progress"])
    assert BAD_DATA[kind] in _one_line_error(capsys, code)


def test_good_data_still_verifies_and_checks(files, capsys):
    d = files["dir"]
    for fmt in ("onnx", "tflite"):
        assert main(["verify", str(d / f"m.{fmt}"), "--model", str(d / f"m_{fmt}.pt"), "--data",
                     str(d / "good.npz")]) == 0
        assert "bit-exact" in capsys.readouterr().out
    assert main(["check", str(d / "m.onnx"), "--reference", str(d / "float.onnx"), "--data", str(d / "good.npz"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out.lower().replace("onnxruntime", "")


def test_a_comparison_of_nothing_fails(files):
    """0 codes compared is not 'bit-exact': the report is not ok and says so."""
    from edgeact.export.verify import ParityReport

    report = ParityReport("x.onnx", "onnx", 0)
    assert not report.ok and "NOTHING COMPARED" in str(report)
    with pytest.raises(QuantizationError, match="0 rows"):
        edgeact.export.verify(files["dir"] / "m.onnx", files["converted_onnx"], torch.zeros(0, 1, 8, 8))
    with pytest.raises(QuantizationError, match="NaN/Inf"):
        edgeact.export.verify(files["dir"] / "m.onnx", files["converted_onnx"], torch.full((2, 1, 8, 8), math.nan))


def test_check_never_reports_nan_as_a_number(files, tmp_path):
    """A reference that answers NaN is refused, not averaged into max_abs=nan."""
    from edgeact import measure

    net = _Net().eval()
    with torch.no_grad():
        net.c2.bias[0] = math.nan
    torch.onnx.export(net, torch.zeros(4, 1, 8, 8), str(tmp_path / "nan_ref.onnx"), dynamo=False)
    with pytest.raises(ModelFileError, match="NaN/Inf output"):
        measure.check(files["dir"] / "m.onnx", tmp_path / "nan_ref.onnx", files["dir"] / "good.npz")


# --------------------------------------------------------------------------------------- bad numbers

BAD_NUMBERS = [
    (["verify", "M", "--model", "P", "--samples", "0"], "--samples"),
    (["verify", "M", "--model", "P", "--samples", "-3"], "--samples"),
    (["verify", "M", "--model", "P", "--samples", "1e8"], "--samples"),
    (["verify", "M", "--model", "P", "--samples", "100000000"], "--samples"),
    (["bench", "M", "--threads", "100000"], "--threads"),
    (["bench", "M", "--threads", "0"], "--threads"),
    (["bench", "M", "--runs", "0"], "--runs"),
    (["bench", "M", "--runs", "99999999999"], "--runs"),
    (["bench", "M", "--warmup", "-1"], "--warmup"),
    (["check", "M", "--reference", "R", "--data", "D", "--cpu", "cortex-a53"], "--cpu cortex-a53 applies to QEMU"),
    (["bench", "M", "--cpu", "cortex-a53"], "--cpu cortex-a53 applies to QEMU"),
    (["study", "--test-limit", "0"], "--test-limit"),
    (["study", "--qat-epochs", "-1"], "--qat-epochs"),
    (["study", "--runs", "0"], "--runs"),
    (["study", "--emulated-runs", "0"], "--emulated-runs"),
    (["study", "--activations", ","], "no activation"),
    (["study", "--activations", "relu,nope"], "unknown activation"),
    (["study", "--targets", "qemu-foo"], "unknown target"),
    (["study", "--targets", "qemu-aarch64:cortex-z9"], "cortex-z9"),
    (["study", "--backends", "tf"], "unknown backend"),
    (["study", "--model", "resnet"], "unknown reference model"),
    (["diagnose", "mlp", "--epsilon", "-1"], "--epsilon"),
    (["diagnose", "mlp", "--epsilon", "nan"], "--epsilon"),
    (["diagnose", "mlp", "--samples", "0"], "--samples"),
    (["train", "--model", "mlp", "--activation", "relu", "--epochs", "0"], "--epochs"),
    (["train", "--model", "mlp", "--activation", "relu", "--threads", "100000"], "--threads"),
    (["train", "--model", "mlp", "--activation", ","], "--activation is empty"),
    (["train", "--model", "mlp", "--activation", "relu", "--lr", "-1"], "--lr"),
]


@pytest.mark.parametrize("argv, words", BAD_NUMBERS, ids=[" ".join(a[0:1] + a[-2:]) for a, _ in BAD_NUMBERS])
def test_numbers_are_checked_before_any_work(files, capsys, tmp_path, argv, words):
    d = files["dir"]
    subst = {"M": str(d / "m.onnx"), "P": str(d / "m_onnx.pt"), "R": str(d / "float.onnx"), "D": str(d / "good.npz")}
    argv = [subst.get(a, a) for a in argv]
    if argv[0] == "study":
        argv += ["--out", str(tmp_path / "study")]
    t0 = time.monotonic()
    line = _one_line_error(capsys, cli(argv))
    assert words in line
    assert time.monotonic() - t0 < 20  # refused up front, not after training (~35 s before)
    assert not (tmp_path / "study").exists()  # and nothing written


# ------------------------------------------------------------------------------------- the model cache


def test_load_returns_what_train_wrote(tmp_path, monkeypatch, capsys):
    """`edgeact train` writes where models.load() looks first: the freshly trained model, not the shipped one."""
    from edgeact import models
    from edgeact.models.loader import PACKAGE_DIR
    from edgeact.models.train import evaluate

    monkeypatch.setenv("EDGEACT_CACHE", str(tmp_path))
    shipped = models.load("mlp", "relu", train_if_missing=False)
    assert Path(shipped.checkpoint["path"]).parent == PACKAGE_DIR  # the cache is empty: the shipped one
    assert main(["train", "--model", "mlp", "--activation", "relu", "--epochs", "1", "--threads", "1"]) == 0
    capsys.readouterr()
    mine = models.load("mlp", "relu", train_if_missing=False)
    assert Path(mine.checkpoint["path"]).parent == tmp_path / "checkpoints"
    assert mine.checkpoint["epochs"] == 1 and shipped.checkpoint["epochs"] > 1
    accuracy = evaluate(mine, models.digits_for("mlp"))  # measured again, not read back
    assert accuracy == pytest.approx(mine.checkpoint["test_accuracy"])
    assert any(not torch.equal(a, b) for a, b in zip(mine.state_dict().values(), shipped.state_dict().values()))


# ------------------------------------------------------------------------------------------- the API


def _tiny():
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()


def _prepared_tiny():
    p = edgeact.prepare(_tiny())
    edgeact.calibrate(p, torch.randn(16, 4), progress=False)
    return p


API_CASES = {
    "prepare(None)": (lambda: edgeact.prepare(None), UnsupportedError, "nn.Module"),
    "prepare(function)": (lambda: edgeact.prepare(lambda x: x), UnsupportedError, "nn.Module"),
    "prepare(prepared)": (lambda: edgeact.prepare(_prepared_tiny()), UnsupportedError, "already prepared"),
    "calibrate(wrong shape)": (lambda: edgeact.calibrate(edgeact.prepare(_tiny()), [torch.randn(2, 5)],
                                                         progress=False), QuantizationError, "does not fit"),
    "calibrate(int64)": (lambda: edgeact.calibrate(edgeact.prepare(_tiny()), [torch.ones(2, 4, dtype=torch.int64)],
                                                   progress=False), QuantizationError, "int64"),
    "calibrate(1e30)": (lambda: edgeact.calibrate(edgeact.prepare(_tiny()), [torch.full((2, 4), 1e30)],
                                                  progress=False), QuantizationError, "1e\\+30"),
    "calibrate(0 rows)": (lambda: edgeact.calibrate(edgeact.prepare(_tiny()), [torch.zeros(0, 4)],
                                                    progress=False), QuantizationError, "empty"),
    "calibrate(None)": (lambda: edgeact.calibrate(edgeact.prepare(_tiny()), None, progress=False),
                        QuantizationError, "iterable"),
    "QuantParams(scale=None)": (lambda: QuantParams(scale=None), QuantizationError, "scale must be a number"),
    "QuantParams(scale=tensor)": (lambda: QuantParams(scale=torch.tensor([0.1, 0.2])), QuantizationError,
                                  "2 scales and 1 zero points but no axis"),
    "QuantParams(scale='0.1')": (lambda: QuantParams(scale="0.1"), QuantizationError, "str"),
    "int8_table(None)": (lambda: int8_table(None, QuantParams(0.05), QuantParams(0.05)), UnsupportedError,
                         "needs an activation"),
    "int8_table(42)": (lambda: int8_table(42, QuantParams(0.05), QuantParams(0.05)), UnsupportedError,
                       "needs an activation"),
    "int8_table(lambda)": (lambda: int8_table(lambda x: x, QuantParams(0.05), QuantParams(0.05)),
                           UnsupportedError, "bare function"),
    "int8_table(negative_slope=nan)": (lambda: int8_table("leaky_relu", QuantParams(0.05), QuantParams(0.05),
                                                          negative_slope=math.nan), QuantizationError, "not finite"),
    "fit_pwl(non-vectorised)": (lambda: fit_pwl(lambda x: math.tanh(x), 4, x_range=(-3, 3)), PWLError,
                                "vectorised"),
    "fit_pwl(pole)": (lambda: fit_pwl(lambda x: 1 / (x - 0.123), 4, x_range=(-4, 4)), PWLError, "pole"),
    "fit_pwl(max_iter=0)": (lambda: fit_pwl("tanh", 4, max_iter=0), PWLError, "max_iter"),
    "fit_pwl(max_iter=-1)": (lambda: fit_pwl("tanh", 4, max_iter=-1), PWLError, "max_iter"),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_api_refuses_with_cause_and_fix(case):
    call, error, words = API_CASES[case]
    with pytest.raises(error, match=words):
        call()


def test_exporters_refuse_a_missing_folder_alike(files, tmp_path):
    from edgeact.export import to_onnx, to_tflite

    messages = []
    for export, fmt in ((to_onnx, "onnx"), (to_tflite, "tflite")):
        with pytest.raises(ExportError, match="does not exist — create it first") as e:
            export(files[f"converted_{fmt}"], torch.zeros(1, 1, 8, 8), tmp_path / "missing" / f"m.{fmt}")
        messages.append(str(e.value).replace(fmt, "X"))
    assert messages[0] == messages[1] and not (tmp_path / "missing").exists()


def test_ssh_timeout_setting_is_checked(monkeypatch):
    from edgeact.targets import get_target

    monkeypatch.setenv("EDGEACT_SSH_TIMEOUT", "abc")
    with pytest.raises(TargetError, match="EDGEACT_SSH_TIMEOUT is 'abc'"):
        get_target("ssh://me@board")
    monkeypatch.setenv("EDGEACT_SSH_TIMEOUT", "0")
    with pytest.raises(TargetError, match="1 to 3600"):
        get_target("ssh://me@board")
    monkeypatch.setenv("EDGEACT_SSH_TIMEOUT", "7")
    assert get_target("ssh://me@board").connect_timeout == 7


@pytest.mark.slow
def test_ssh_banner_then_stall_gets_a_handshake_hint(monkeypatch, files):
    """A board whose sshd sends its banner and then goes silent: ssh gives up after its keep-alives
    (~15 s) without a word; the hint must be about the handshake, not a password prompt."""
    import shutil

    from edgeact.targets import get_target

    if not shutil.which("ssh"):
        pytest.skip("no OpenSSH client here (apt-get install openssh-client)")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held = []

    def serve():
        while True:
            try:
                c, _ = server.accept()
            except OSError:
                return
            c.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")
            held.append(c)

    threading.Thread(target=serve, daemon=True).start()
    try:
        monkeypatch.setenv("EDGEACT_SSH_TIMEOUT", "2")
        target = get_target(f"ssh://me@127.0.0.1:{server.getsockname()[1]}")
        with pytest.raises(TargetError) as e:
            target.probe(timeout=60)
        assert "stopped responding during the SSH handshake" in str(e.value)
        assert "password" not in str(e.value)
    finally:
        server.close()
        for c in held:
            c.close()


# ------------------------------------------------------------------------------- temp files, disks


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid  # just exited; the kernel hands pids out in order, so it is not reused within the test


def test_stale_temp_files_of_killed_runs_are_removed(files, tmp_path):
    """What SIGKILL leaves (`.NAME.edgeact<pid>.XXXX.tmp`, `edgeact-run-<pid>-…`) goes at the next start;
    a live writer's temp file stays."""
    from edgeact.export import to_onnx
    from edgeact.fileio import temp_dir

    dead = _dead_pid()
    stale = tmp_path / f".m.onnx.edgeact{dead}.k2j4h1x0.tmp"
    stale_other = tmp_path / f".report.md.edgeact{dead}.aaaaaaaa.tmp"
    legacy = tmp_path / ".m.onnx.abcd1234.tmp"  # the old naming, an hour old
    live = tmp_path / f".m.onnx.edgeact{os.getpid()}.zzzzzzzz.tmp"
    for f in (stale, stale_other, legacy, live):
        f.write_bytes(b"half a model")
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    to_onnx(files["converted_onnx"], torch.zeros(1, 1, 8, 8), tmp_path / "m.onnx")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["m.onnx", live.name]), left
    run_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"edgeact-run-{dead}-q1w2e3r4"
    run_dir.mkdir()
    (run_dir / "inputs.npz").write_bytes(b"x")
    fresh = temp_dir()
    try:
        assert not run_dir.exists() and fresh.name.startswith(f"edgeact-run-{os.getpid():07d}-")
    finally:
        fresh.rmdir()


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs (needs root and mount); skipped with the reason when it cannot be mounted."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = []

    def mount(size_kb: int, readonly: bool = False) -> Path:
        target = mnt / f"fs{len(mounted)}"
        target.mkdir()
        opts = f"size={size_kb}k" + (",ro" if readonly else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "edgeact-test", str(target)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'needs root'}): the full/read-only disk "
                        "cases need one")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _fill(folder: Path, leave_bytes: int) -> None:
    st_ = os.statvfs(folder)
    free = st_.f_bavail * st_.f_frsize
    with open(folder / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))


def test_full_disk_gives_one_line_and_no_litter(files, tmpfs, capsys):
    full = tmpfs(256)
    _fill(full, 0)
    assert "No space left" in _one_line_error(capsys, cli(["plot", "activations", "--out", str(full / "plots")]))
    nearly = tmpfs(256)
    _fill(nearly, 8 * 1024)  # the folder probe passes, the figure does not fit
    assert "No space left" in _one_line_error(capsys, cli(["plot", "activations", "--out", str(nearly)]))
    from edgeact.export import to_tflite

    with pytest.raises(ExportError, match="No space left"):
        to_tflite(files["converted_tflite"], torch.zeros(1, 1, 8, 8), full / "m.tflite")
    for fs in (full, nearly):
        assert sorted(p.name for p in fs.iterdir()) == ["filler"]  # no half-written file, no temp file


def test_read_only_disk_is_refused_before_training(tmpfs, capsys):
    ro = tmpfs(64, readonly=True)
    t0 = time.monotonic()
    line = _one_line_error(capsys, cli(["study", "--model", "mlp", "--activations", "relu", "--out", str(ro)]))
    assert "Read-only file system" in line and time.monotonic() - t0 < 20
    assert "Read-only" in _one_line_error(capsys, cli(["plot", "activations", "--out", str(ro / "sub")]))


# ---------------------------------------------------------------------------- Ctrl-C and set-up locks


def _start(args, env=None) -> subprocess.Popen:
    return subprocess.Popen([str(EDGEACT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)


class _Tail:
    """Collects a process's stderr in a thread, so a test can wait for a line and still see the rest."""

    def __init__(self, p: subprocess.Popen):
        self.chunks: list[bytes] = []
        self.fd = p.stderr.fileno()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while chunk := os.read(self.fd, 4096):
            self.chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


def _interrupt(p: subprocess.Popen, tail: _Tail | None = None) -> tuple[float, str]:
    """Ctrl-C as a terminal sends it (to the whole process group); seconds until the command ended, stderr."""
    t0 = time.monotonic()
    os.killpg(p.pid, signal.SIGINT)
    try:
        if tail is None:
            _, err = p.communicate(timeout=15)
        else:
            p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail("the command did not end within 15 s of Ctrl-C")
    seconds = time.monotonic() - t0
    if tail is not None:
        tail.thread.join(5)
        err = tail.text()
    return seconds, err


def _wait_for(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _assert_interrupted(seconds: float, err: str, p: subprocess.Popen) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("\r", " ")) and "%|" not in ln]
    assert seconds < 2.0, (seconds, err)
    assert p.returncode != 0 and "Traceback" not in err and "Exception ignored" not in err, err
    assert lines[-1].startswith("edgeact: error: interrupted (Ctrl-C)"), err


@pytest.mark.slow
def test_ctrl_c_ends_every_command_within_2_s(files, tmp_path):
    """Started together to share the import time: Ctrl-C while loading, while drawing figures, while a
    runner times a model, and while waiting for another set-up's lock."""
    from edgeact.targets import sysroot

    d = files["dir"]
    cache = tmp_path / "cache"
    lock = sysroot.layout("aarch64", cache).cache / "sysroots" / "aarch64.lock"
    lock.parent.mkdir(parents=True)
    holder = open(lock, "w")
    fcntl.flock(holder, fcntl.LOCK_EX)  # "another set-up" holds the root
    env = dict(os.environ, EDGEACT_CACHE=str(cache))
    procs = {
        "loading": _start(["plot", "all", "--out", str(tmp_path / "p0")]),
        "plot": _start(["plot", "all", "--out", str(tmp_path / "plots")]),
        "bench": _start(["bench", str(d / "m.onnx"), "--runs", "1000000", "--no-progress"]),
        "setup": _start(["target", "setup", "qemu-aarch64", "--no-progress"], env=env),
    }
    try:
        time.sleep(0.3)
        _assert_interrupted(*_interrupt(procs["loading"]), procs["loading"])
        runs = lambda: [q for q in Path(os.environ.get("TMPDIR", "/tmp")).glob(f"edgeact-run-{procs['bench'].pid:07d}-*")]
        _wait_for(lambda: runs(), 120, "the bench runner to start")
        seconds, err = _interrupt(procs["bench"])
        _assert_interrupted(seconds, err, procs["bench"])
        assert not runs()  # its temporary folder went with it
        _wait_for(lambda: any((tmp_path / "plots").glob("*.png")), 120, "the first figure")
        seconds, err = _interrupt(procs["plot"])
        _assert_interrupted(seconds, err, procs["plot"])
        assert not [p.name for p in (tmp_path / "plots").iterdir() if p.suffix != ".png"]  # no temp file left
        # the second set-up waits for the first, and says so
        tail = _Tail(procs["setup"])
        _wait_for(lambda: "waiting for it" in tail.text(), 120, "the waiting set-up to say so")
        assert "another set-up of this root is running" in tail.text()
        seconds, err = _interrupt(procs["setup"], tail)
        _assert_interrupted(seconds, err, procs["setup"])
        assert "ready" not in err + procs["setup"].stdout.read()
    finally:
        holder.close()
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.communicate()


def test_a_damaged_root_is_not_reported_ready(aarch64_root, tmp_path):
    """A deleted .so in a finished root: check_root names it (target setup runs it before saying ready and
    rebuilds the root from the downloaded packages)."""
    import shutil

    from edgeact.targets import sysroot

    lay = sysroot.layout("aarch64", tmp_path / "cache")
    shutil.copytree(aarch64_root.root, lay.root, symlinks=True, copy_function=os.link)  # hard links: cheap
    shutil.copytree(aarch64_root.stamps, lay.stamps)
    shutil.copytree(aarch64_root.views, lay.views, symlinks=True, copy_function=os.link)
    so = next(p for p in sorted((lay.root / "opt" / "site").rglob("*.so")))
    so.unlink()  # only this copy's link; the session's root keeps the file
    with pytest.raises(TargetError, match=f"corrupt.*{so.name} .missing.*--force"):
        sysroot.check_root("aarch64", lay.cache)


# ------------------------------------------------------------------------- property tests (hypothesis)

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-45, 1e-39, 3.5e38, 1e300])
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPS
@given(scale=ANY_FLOAT | st.integers(-10, 10) | st.none() | st.text(max_size=3),
       zero_point=st.integers(-300, 300) | st.floats(allow_nan=True) | st.none(),
       dtype=st.sampled_from(["int8", "uint8", "int16", "int4"]))
def test_quantparams_valid_or_a_clear_error(scale, zero_point, dtype):
    try:
        qp = QuantParams(scale=scale, zero_point=zero_point, dtype=dtype)
    except QuantizationError:
        return
    assert isinstance(qp.scale, float) and math.isfinite(qp.scale) and qp.scale > 0
    assert qp.scale == float(np.float32(qp.scale))  # what the files hold
    assert isinstance(qp.zero_point, int) and qp.qmin <= qp.zero_point <= qp.qmax


@PROPS
@given(s_in=st.floats(1e-4, 1.0), z_in=st.integers(-128, 127), s_out=st.floats(1e-4, 1.0),
       z_out=st.integers(-128, 127), slope=ANY_FLOAT)
def test_int8_table_matches_the_formula_or_refuses(s_in, z_in, s_out, z_out, slope):
    """leaky_relu's ideal table against the formula written out here (round half to even, clamp)."""
    in_qp, out_qp = QuantParams(s_in, z_in), QuantParams(s_out, z_out)
    try:
        table = int8_table("leaky_relu", in_qp, out_qp, negative_slope=slope)
    except (QuantizationError, UnsupportedError):
        assert not math.isfinite(slope) or abs(slope) * 128 * in_qp.scale > 1e300
        return
    x = (np.arange(-128, 128, dtype=np.float64) - in_qp.zero_point) * in_qp.scale
    y = np.where(x >= 0, x, slope * x)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = np.clip(np.rint(y / out_qp.scale) + out_qp.zero_point, -128, 127)
    assert table.dtype == np.int64 and table.shape == (256,)
    assert np.array_equal(table, expected.astype(np.int64))


@settings(max_examples=25, deadline=None)
@given(segments=st.integers(-2, 6), max_iter=st.none() | st.integers(-3, 8),
       a=st.floats(-20, 20) | st.just(math.nan) | st.just(-math.inf), width=st.floats(-1, 20),
       name=st.sampled_from(["tanh", "swish", "hard_swish", "sigmoid"]))
def test_fit_pwl_is_honest_or_refuses(segments, max_iter, a, width, name):
    """Any fit it returns has the max error it reports (checked on a dense grid), else a PWLError."""
    try:
        fit = fit_pwl(name, segments, x_range=(a, a + width), max_iter=max_iter)
    except PWLError:
        return
    assert segments >= 1 and (max_iter is None or max_iter >= 1) and math.isfinite(a) and width > 0
    x = np.linspace(a, a + width, 20001)
    f = edgeact.activations.get(name).numpy
    err = np.max(np.abs(fit(x) - f(x)))
    assert math.isfinite(fit.max_error) and err <= fit.max_error * (1 + 1e-6) + 1e-12


@settings(max_examples=30, deadline=None)
@given(values=st.lists(ANY_FLOAT, min_size=0, max_size=12), dtype=st.sampled_from([torch.float32, torch.int64]),
       width=st.sampled_from([4, 3]))
def test_calibrate_gives_finite_scales_or_refuses(values, dtype, width):
    rows = len(values) // width
    data = torch.tensor(values[:rows * width], dtype=torch.float64).reshape(rows, width)
    with np.errstate(all="ignore"):
        data = data.to(dtype) if dtype is torch.float32 or bool(torch.isfinite(data).all()) else data.float()
    prepared = edgeact.prepare(_tiny())
    try:
        edgeact.calibrate(prepared, [data], progress=False)
    except QuantizationError:
        return
    assert width == 4 and rows >= 1 and data.is_floating_point() and bool(torch.isfinite(data).all())
    assert float(data.abs().max()) <= 1e8
    for q in edgeact.quantize.quantizers(prepared):
        qp = q.qparams()
        scales = qp.scale if isinstance(qp.scale, tuple) else (qp.scale,)
        assert all(math.isfinite(s) and s > 0 for s in scales)


@pytest.mark.slow
def test_ctrl_c_in_study_keeps_the_report_of_what_finished(tmp_path):
    """relu (shipped checkpoint) finishes; Ctrl-C while leaky_relu trains: the report holds relu's row."""
    out = tmp_path / "study"
    # Serial: cells in a known order, so relu's row is done when leaky_relu starts training (Ray runs them at once).
    p = _start(["study", "--model", "mlp", "--activations", "relu,leaky_relu", "--backends", "onnxruntime",
                "--qat-epochs", "0", "--runs", "1", "--test-limit", "50", "--quiet", "--executor", "serial",
                "--out", str(out)],
               env=dict(os.environ, EDGEACT_CACHE=str(tmp_path / "cache")))
    try:
        tail = _Tail(p)
        _wait_for(lambda: "mlp/leaky_relu" in tail.text(), 300, "leaky_relu's training to start")
        seconds, err = _interrupt(p, tail)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
    _assert_interrupted(seconds, err, p)
    assert "study.md/.json/.csv for relu in" in err
    report = (out / "study.md").read_text()
    assert "| relu |" in report and "leaky_relu" not in report
    assert not [f.name for f in out.iterdir() if f.name.endswith(".tmp")]
