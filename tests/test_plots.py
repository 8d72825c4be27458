"""Figures: every registered figure is written as a valid PNG of sensible size, atomically; the
`edgeact plot` command and its extension hook work. (Pixels are not tested — look at the files.)"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from edgeact import plots
from edgeact.cli import main
from edgeact.errors import UnsupportedError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature and the chunk layout."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", f"{path} is truncated"
    return width, height


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("plots")
    return out, plots.write_all(out)


def test_write_all_writes_every_figure_as_png(written):
    out, paths = written
    names = {p.name for p in paths}
    assert {"activations_relu_family.png", "activations_smooth_vs_hard.png", "pwl_error_vs_segments.png",
            "int8_relu_family.png", "int8_smooth_and_hard.png"} <= names
    for fn in ("swish", "mish", "gelu", "sigmoid", "tanh", "selu", "elu", "hard_swish", "hard_mish"):
        assert f"pwl_{fn}.png" in names
    for path in paths:
        assert path.parent == out and path.exists() and path.stat().st_size > 0
        if path.suffix != ".png":  # a registered figure may also write its numbers (landscape.md)
            continue
        width, height = png_size(path)
        assert 800 <= width <= 4000 and 500 <= height <= 4000, (path.name, width, height)
        assert path.stat().st_size > 30_000, path.name  # a real drawing, not an empty canvas
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in out.iterdir()) == sorted(names)


def test_cli_writes_one_figure(tmp_path, capsys):
    assert main(["plot", "activations", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == ["activations_relu_family.png", "activations_smooth_vs_hard.png"]
    for p in printed:
        png_size(Path(p))


def test_unknown_figure_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["plot", "no-such-figure", "--out", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(UnsupportedError, match="choose one of"):
        plots.write("no-such-figure", tmp_path)


def test_other_modules_can_register_figures(tmp_path, capsys):
    """The hook the models engineer uses for `edgeact plot landscape`: register, and the CLI knows it."""

    @plots.register_figure("test-extra", "a figure registered by a test", in_all=False)
    def write_extra(out_dir: Path) -> list[Path]:
        plt = plots._plt()
        fig, ax = plt.subplots(figsize=(8, 6))
        ax.plot([0, 1], [0, 1])
        return [plots._save(fig, Path(out_dir) / "extra.png")]

    try:
        assert main(["plot", "test-extra", "--out", str(tmp_path)]) == 0
        assert png_size(tmp_path / "extra.png") == (880, 660)
        capsys.readouterr()
        with pytest.raises(SystemExit):
            main(["plot", "--help"])
        assert "test-extra" in capsys.readouterr().out
        assert "test-extra" not in [f.name for f in plots.figures().values() if f.in_all]
    finally:
        plots.FIGURES.pop("test-extra", None)
