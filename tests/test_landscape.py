"""The output landscape of a random network and its roughness number.

Measured at the defaults (5 layers × 64, grid [−3, 3]², 256×256, seed 0): relu 436, swish 54,
hard_swish 222, mish 69, hard_mish 492 — ReLU and the hard variants (kinks) are 3–9× rougher than the
smooth Swish and Mish.
"""
import numpy as np
import pytest
import torch

from edgeact.errors import EdgeActError
from edgeact.landscape import (
    curvature_map, landscapes, output_landscape, plot_landscapes, random_network, roughness,
)


def test_roughness_of_a_smooth_image_is_its_rms_curvature():
    # z = sin(2πx) on [0, 1]: standardised z = √2·sin, z'' = −4π²√2·sin, RMS over x 4π², over y 0;
    # combined sqrt((4π²)²/2) = 4π²/√2 ≈ 27.9, independent of the resolution.
    expected = 4 * np.pi ** 2 / np.sqrt(2)
    for n in (129, 513):
        t = np.linspace(0, 1, n)
        image = np.repeat(np.sin(2 * np.pi * t)[None, :], n, axis=0)
        assert roughness(image) == pytest.approx(expected, rel=0.01)


def test_roughness_of_a_kink_grows_with_resolution_and_of_a_plane_is_zero():
    def kink(n):
        t = np.linspace(-1, 1, n)
        return np.repeat(np.abs(t)[None, :], n, axis=0)

    assert roughness(kink(513)) > 1.9 * roughness(kink(129))  # ~√4 = 2: the signature of a sharp transition
    t = np.linspace(-1, 1, 64)
    plane = 3 * t[None, :] - 2 * t[:, None] + 1
    assert roughness(plane) < 1e-9


def test_relu_landscape_is_rougher_than_mish_and_hard_variants_rougher_than_smooth():
    for seed in (0, 1, 2):
        r = {name: rough for name, (_, rough) in landscapes(resolution=128, seed=seed).items()}
        assert r["relu"] > 2.5 * r["mish"], r
        assert r["relu"] > 2.5 * r["swish"], r
        assert r["hard_swish"] > 1.5 * r["swish"], r
        assert r["hard_mish"] > 1.5 * r["mish"], r


def test_every_activation_gets_the_same_weights():
    a, b = random_network("relu", seed=3), random_network("mish", seed=3)
    linears_a = [m for m in a if isinstance(m, torch.nn.Linear)]
    linears_b = [m for m in b if isinstance(m, torch.nn.Linear)]
    assert len(linears_a) == 6  # 5 hidden layers + output
    for la, lb in zip(linears_a, linears_b):
        assert torch.equal(la.weight, lb.weight) and torch.equal(la.bias, lb.bias)
    assert not torch.equal(linears_a[0].weight, random_network("relu", seed=4)[0].weight)


def test_a_linear_network_landscape_is_a_plane():
    # The linear collapse again: five identity-activated layers are one affine map of (x, y).
    image = output_landscape("identity", resolution=64)
    assert roughness(image) < 1e-6
    t = np.linspace(-3, 3, 64)
    yy, xx = np.meshgrid(t, t, indexing="ij")
    design = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)], 1)
    coeffs, *_ = np.linalg.lstsq(design, image.ravel(), rcond=None)
    assert np.abs(design @ coeffs - image.ravel()).max() < 1e-9


def test_relu_network_is_piecewise_linear_along_a_line():
    # Along a line through the grid, a ReLU network is piecewise linear: second differences vanish
    # except at its kinks; Mish's nowhere do.
    t = torch.linspace(-3, 3, 8192, dtype=torch.float64)
    line = torch.stack([t, torch.full_like(t, 0.5)], 1)
    with torch.no_grad():
        relu_line = random_network("relu")(line).numpy().ravel()
        mish_line = random_network("mish")(line).numpy().ravel()
    d2_relu, d2_mish = np.abs(np.diff(relu_line, 2)), np.abs(np.diff(mish_line, 2))
    assert (d2_relu < 1e-12).mean() > 0.8
    assert (d2_mish < 1e-12).mean() < 0.05


def test_plot_writes_a_png_and_returns_the_numbers(tmp_path):
    path = tmp_path / "landscape.png"
    numbers = plot_landscapes(path, activations=("relu", "mish"), resolution=64)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(numbers) == {"relu", "mish"} and numbers["relu"] > numbers["mish"]
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    assert curvature_map(output_landscape("relu", 64)).shape == (62, 62)


def test_bad_input_names_the_fix():
    with pytest.raises(EdgeActError, match="at least 3"):
        output_landscape("relu", resolution=2)
    with pytest.raises(EdgeActError, match="2-D"):
        roughness(np.zeros(10))
    with pytest.raises(EdgeActError, match="unknown activation"):
        output_landscape("not_an_activation", resolution=8)


def test_edgeact_plot_landscape_writes_the_figure_and_the_table(tmp_path, capsys):
    pytest.importorskip("edgeact.plots", reason="`edgeact plot` (edgeact.plots) is not installed")
    from edgeact.cli import main

    assert main(["plot", "landscape", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "landscape.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "landscape.md").read_text()
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in table.splitlines()[2:]}
    assert set(rows) == {"relu", "swish", "hard_swish", "mish", "hard_mish"}
    assert rows["relu"] > 3 * rows["mish"]
