"""The output landscape of a random network (the Swish / Mish papers' figure, and the seed notes').

A randomly initialised 5-layer MLP maps the (x, y) coordinates of a 2-D grid to one number; drawn as an
image, the output of a ReLU network shows sharp ridges between flat facets (a piecewise-linear function
of (x, y)), while Swish and Mish give smooth transitions. Every activation gets the *same* weights, so
the images differ only by the activation. The hard variants (hard-swish, hard-Mish) have kinks where
their gate clamps, so their landscapes show ridges like ReLU's.

Roughness: the root-mean-square second difference of the standardised image (zero mean, unit standard
deviation, so the output scale of a network does not count), divided by h² for an n×n grid of spacing
h = 1/(n − 1):

    roughness = sqrt(mean over pixels of ((Δ²ₓ z)² + (Δ²ᵧ z)²) / 2) / h²

Δ²z / h² estimates the second derivative of the landscape with the grid spanning [0, 1], so for a smooth
(C²) landscape the number converges to its RMS curvature as the resolution grows. A kink has infinite
curvature on a line: for a piecewise-linear landscape the number grows like √n with resolution — the
signature of a sharp transition. The RMS (rather than the mean absolute value, or total variation,
which measures the slope, not its changes) weights such concentrated curvature most. Numbers are
therefore only comparable at the same resolution; the default is 256.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeact.activations import canonical_name
from edgeact.errors import EdgeActError
from edgeact.nn import make_activation

DEFAULT_ACTIVATIONS = ("relu", "swish", "hard_swish", "mish", "hard_mish")
DEPTH, WIDTH, EXTENT, RESOLUTION = 5, 64, 3.0, 256


def random_network(activation: str, depth: int = DEPTH, width: int = WIDTH, seed: int = 0) -> nn.Sequential:
    """2 → width (× depth hidden layers, each followed by the activation) → 1, in float64.

    He-normal weights (std √(2/fan_in)) and N(0, 1) biases, drawn from `seed` independently of the
    activation; the biases move the kinks away from the origin so that facets appear all over the grid.
    """
    generator = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    fan_in = 2
    for _ in range(depth):
        layers += [_linear(fan_in, width, 2.0, 1.0, generator), make_activation(activation)]
        fan_in = width
    layers.append(_linear(fan_in, 1, 1.0, 0.0, generator))
    return nn.Sequential(*layers).double().eval()


def _linear(fan_in: int, fan_out: int, gain: float, bias_std: float, generator: torch.Generator) -> nn.Linear:
    layer = nn.Linear(fan_in, fan_out)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(fan_out, fan_in, generator=generator) * (gain / fan_in) ** 0.5)
        layer.bias.copy_(torch.randn(fan_out, generator=generator) * bias_std)
    return layer


def output_landscape(activation: str, resolution: int = RESOLUTION, extent: float = EXTENT, *, depth: int = DEPTH,
                     width: int = WIDTH, seed: int = 0) -> np.ndarray:
    """The (resolution, resolution) image of the random network's output over [−extent, extent]²."""
    if resolution < 3:
        raise EdgeActError(f"landscape resolution must be at least 3 (a second difference needs 3 points), got "
                           f"{resolution}; use e.g. 256")
    net = random_network(canonical_name(activation), depth, width, seed)
    axis = torch.linspace(-extent, extent, resolution, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    with torch.no_grad():
        z = net(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
    return z.reshape(resolution, resolution).numpy()


def _curvatures(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Second differences of the standardised image along x and y, over h² (each axis spans [0, 1])."""
    z = np.asarray(image, dtype=np.float64)
    std = z.std()
    z = (z - z.mean()) / (std if std > 0 else 1.0)
    rows, cols = z.shape
    d2x = (z[:, 2:] - 2 * z[:, 1:-1] + z[:, :-2]) * (cols - 1) ** 2
    d2y = (z[2:] - 2 * z[1:-1] + z[:-2]) * (rows - 1) ** 2
    return d2x, d2y


def roughness(image: np.ndarray) -> float:
    """RMS second difference of the standardised image over h² (see the module docstring)."""
    if np.ndim(image) != 2 or min(np.shape(image)) < 3:
        raise EdgeActError(f"roughness needs a 2-D image at least 3×3, got shape {np.shape(image)}")
    d2x, d2y = _curvatures(image)
    return float(np.sqrt(((d2x ** 2).mean() + (d2y ** 2).mean()) / 2))


def curvature_map(image: np.ndarray) -> np.ndarray:
    """|Δ²|/h² per interior pixel (x and y combined): where the roughness comes from, for plotting."""
    d2x, d2y = _curvatures(image)
    return np.sqrt((d2x[1:-1, :] ** 2 + d2y[:, 1:-1] ** 2) / 2)


def landscapes(activations=DEFAULT_ACTIVATIONS, resolution: int = RESOLUTION, seed: int = 0, **kwargs) -> dict:
    """{activation: (image, roughness)} with the same random weights for every activation."""
    out = {}
    for name in activations:
        image = output_landscape(name, resolution, seed=seed, **kwargs)
        out[canonical_name(name)] = (image, roughness(image))
    return out


def plot_landscapes(path, activations=DEFAULT_ACTIVATIONS, resolution: int = RESOLUTION, seed: int = 0,
                    **kwargs) -> dict[str, float]:
    """PNG: the landscapes (top row) and their curvature maps (bottom row); returns {activation: roughness}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from edgeact.fileio import atomic_path

    results = landscapes(activations, resolution, seed, **kwargs)
    fig, axes = plt.subplots(2, len(results), figsize=(3.0 * len(results), 6.4), squeeze=False)
    curvatures = {name: curvature_map(image) for name, (image, _) in results.items()}
    vmax = max(float(c.max()) for c in curvatures.values())
    for col, (name, (image, rough)) in enumerate(results.items()):
        top, bottom = axes[0, col], axes[1, col]
        top.imshow(image, cmap="viridis", origin="lower")
        top.set_title(f"{name}\nroughness {rough:.0f}", fontsize=10)
        bottom.imshow(np.maximum(curvatures[name], 1e-2), cmap="magma", origin="lower", norm=LogNorm(1e-2, vmax))
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("network output")
    axes[1, 0].set_ylabel("|second difference| (log)")
    fig.suptitle(f"Output of one random {DEPTH if 'depth' not in kwargs else kwargs['depth']}-layer network "
                 f"over a 2-D grid, per activation (same weights, seed {seed}, {resolution}×{resolution})",
                 fontsize=11)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return {name: rough for name, (_, rough) in results.items()}


def _register_plot() -> None:
    """`edgeact plot landscape` (and `edgeact plot all`) through the figure registry of `edgeact.plots`."""
    try:
        from edgeact.plots import register_figure
    except ModuleNotFoundError as exc:  # edgeact.plots not installed: no `edgeact plot`, nothing to register
        if exc.name != "edgeact.plots":
            raise
        return

    @register_figure("landscape", "output landscape of one random 5-layer network per activation, and roughness")
    def write_landscape(out_dir: Path) -> list[Path]:
        from edgeact.fileio import atomic_write
        from edgeact.markdown import markdown_table

        out_dir = Path(out_dir)
        png = out_dir / "landscape.png"
        numbers = plot_landscapes(png)
        rows = [{"activation": name, "roughness": round(value, 1)} for name, value in numbers.items()]
        header = {"activation": "activation", "roughness": f"roughness ({RESOLUTION}×{RESOLUTION})"}
        table = markdown_table(rows, header)
        md = atomic_write(out_dir / "landscape.md", table)
        return [png, md]


_register_plot()
