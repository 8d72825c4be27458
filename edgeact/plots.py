"""Figures as PNG files: the activations and their derivatives, PWL fits with their error, int8 tables.

People would rather look than read: these show what the tables in the README say. Every figure is a
*writer* `fn(out_dir: Path) -> list[Path]` registered under a name in `FIGURES`; `edgeact plot NAME`
and `write_all(out_dir)` go through that registry, and every file is written atomically.

Adding a figure from another module (e.g. `edgeact plot landscape` from the models' code):

    from edgeact.plots import register_figure

    @register_figure("landscape", "output landscape of a random network per activation", in_all=False)
    def write_landscape(out_dir):
        ...
        return [path]

The module must be imported before the command line is parsed: modules named in `FIGURE_PROVIDERS`
(`edgeact.landscape` is listed) are imported the first time the registry is read, if they exist; any
module under `edgeact/cli/commands/` is imported anyway. `in_all=False` keeps a slow figure out of
`write_all` / `edgeact plot all`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeact.activations import get
from edgeact.errors import UnsupportedError
from edgeact.fileio import atomic_path
from edgeact.qparams import QuantParams
from edgeact.tables import int8_table

# ----------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------

Writer = Callable[[Path], "list[Path]"]


@dataclass(frozen=True)
class Figure:
    name: str
    writer: Writer
    help: str
    in_all: bool = True


FIGURES: dict[str, Figure] = {}
FIGURE_PROVIDERS: list[str] = ["edgeact.landscape"]
_providers_loaded = False


def register_figure(name: str, help: str, in_all: bool = True) -> Callable[[Writer], Writer]:
    """Decorator: make `writer(out_dir) -> list[Path]` available as `edgeact plot NAME`."""

    def decorate(writer: Writer) -> Writer:
        FIGURES[name] = Figure(name, writer, help, in_all)
        return writer

    return decorate


def figures() -> dict[str, Figure]:
    """The registry, after importing the provider modules (once)."""
    global _providers_loaded
    if not _providers_loaded:
        _providers_loaded = True
        for module in FIGURE_PROVIDERS:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:  # the provider exists but something it needs does not
                    raise
    return FIGURES


def write(what: str, out_dir: str | Path) -> list[Path]:
    """Write one registered figure (or 'all') into out_dir; returns the paths written."""
    registry = figures()
    if what == "all":
        return write_all(out_dir)
    if what not in registry:
        raise UnsupportedError(f"unknown figure {what!r}; choose one of: all, {', '.join(sorted(registry))}")
    return list(registry[what].writer(Path(out_dir)))


def write_all(out_dir: str | Path) -> list[Path]:
    """Every figure marked in_all (the demo calls this); returns the paths written."""
    out_dir = Path(out_dir)
    paths: list[Path] = []
    for fig in figures().values():
        if fig.in_all:
            paths.extend(fig.writer(out_dir))
    return paths


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------

RELU_FAMILY = (("relu", {}), ("leaky_relu", {"negative_slope": 0.1}), ("prelu", {"weight": 0.25}),
               ("relu6", {}), ("selu", {}), ("elu", {}))
SMOOTH_VS_HARD = (("sigmoid", "hard_sigmoid"), ("tanh", "hard_tanh"), ("swish", "hard_swish"), ("mish", "hard_mish"))
PWL_SEGMENTS = 8  # the fit drawn per function (the K-sweep figure shows 4–32)

COLORS = {"relu": "#1f77b4", "leaky_relu": "#ff7f0e", "prelu": "#2ca02c", "relu6": "#d62728", "selu": "#9467bd",
          "elu": "#8c564b", "sigmoid": "#1f77b4", "tanh": "#2ca02c", "swish": "#d62728", "mish": "#9467bd",
          "gelu": "#7f7f7f", "softplus": "#17becf", "identity": "#bcbd22"}
HARD_COLOR = "#ff7f0e"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 9, "axes.grid": True,
                         "grid.alpha": 0.3})
    return plt


def _save(fig, path: Path) -> Path:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        _plt().close(fig)
    return path


def _label(name: str, params: dict) -> str:
    return name + (" (" + ", ".join(f"{k}={v:g}" for k, v in params.items()) + ")" if params else "")


def _break_jumps(x: np.ndarray, y: np.ndarray, tol: float = 0.05) -> np.ndarray:
    """NaN where y jumps between neighbours, so a derivative's discontinuity is not drawn as a wall."""
    y = np.array(y, dtype=np.float64)
    jump = np.abs(np.diff(y)) > tol
    y[1:][jump] = np.nan
    return y


def demo_qparams(name: str, **params) -> tuple[QuantParams, QuantParams]:
    """int8 qparams for a function's range of interest: the input covers it, the output covers f over it."""
    a, b = get(name).range_of_interest
    y = get(name).numpy(np.linspace(a, b, 4001), **params)
    return QuantParams.from_range(a, b), QuantParams.from_range(float(y.min()), float(y.max()))


# ----------------------------------------------------------------------------------------------------
# Activations and derivatives
# ----------------------------------------------------------------------------------------------------

@register_figure("activations", "the activations and their derivatives: the ReLU family; smooth vs hard")
def write_activations(out_dir: Path) -> list[Path]:
    return [_relu_family(Path(out_dir) / "activations_relu_family.png"),
            _smooth_vs_hard(Path(out_dir) / "activations_smooth_vs_hard.png")]


def _relu_family(path: Path) -> Path:
    """Small multiples: the family shares its positive side, so on one axis the curves hide each other."""
    plt = _plt()
    x = np.linspace(-6, 8, 2801)
    n = len(RELU_FAMILY)
    fig, axes = plt.subplots(2, n, figsize=(3.1 * n, 6.4), sharex=True, sharey="row")
    relu = get("relu")
    for col, (name, params) in enumerate(RELU_FAMILY):
        d = get(name)
        ax_f, ax_d = axes[:, col]
        if name != "relu":
            ax_f.plot(x, relu.numpy(x), color="grey", lw=1.0, ls=":", label="relu")
            ax_d.plot(x, _break_jumps(x, relu.grad(x)), color="grey", lw=1.0, ls=":", label="relu'")
        ax_f.plot(x, d.numpy(x, **params), color=COLORS[name], lw=2, label=name)
        ax_d.plot(x, _break_jumps(x, d.grad(x, **params)), color=COLORS[name], lw=2, label=f"{name}'")
        ax_f.set_title(_label(name, params), fontsize=10)
        ax_f.legend(loc="upper left", fontsize=8)
        ax_d.legend(loc="upper left", fontsize=8)
        ax_d.set_xlabel("x")
    axes[0, 0].set(ylabel="f(x)", ylim=(-2.2, 8.5))
    axes[1, 0].set(ylabel="derivative f'(x)", ylim=(-0.1, 2.0))
    fig.suptitle("The ReLU family and its derivatives: a dead zone (relu), a small negative slope (leaky, PReLU), "
                 "a cap at 6 (relu6), an exponential negative side (elu, selu)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _smooth_vs_hard(path: Path) -> Path:
    from edgeact.pwl import max_abs_difference

    plt = _plt()
    x = np.linspace(-6, 6, 2401)
    fig, axes = plt.subplots(3, 4, figsize=(15, 10), sharex=True)
    for col, (smooth, hard) in enumerate(SMOOTH_VS_HARD):
        s, h = get(smooth), get(hard)
        ax_f, ax_d, ax_e = axes[:, col]
        ax_f.plot(x, s.numpy(x), color=COLORS[smooth], lw=2, label=smooth)
        ax_f.plot(x, h.numpy(x), color=HARD_COLOR, lw=1.6, ls="--", label=hard)
        ax_d.plot(x, s.grad(x), color=COLORS[smooth], lw=2, label=f"{smooth}'")
        ax_d.plot(x, _break_jumps(x, h.grad(x)), color=HARD_COLOR, lw=1.6, ls="--", label=f"{hard}'")
        if smooth == "swish":  # GELU belongs with Swish: x times a smooth gate
            ax_f.plot(x, get("gelu").numpy(x), color=COLORS["gelu"], lw=1.2, ls=":", label="gelu")
            ax_d.plot(x, get("gelu").grad(x), color=COLORS["gelu"], lw=1.2, ls=":", label="gelu'")
        diff = h.numpy(x) - s.numpy(x)
        err, at, sym = max_abs_difference(h.numpy, s.numpy, (-8.0, 8.0))
        ax_e.plot(x, diff, color="black", lw=1.5)
        ax_e.axhline(0, color="grey", lw=0.8)
        for xm in ((at, -at) if sym else (at,)):
            ym = float(h.numpy(np.array([xm]))[0] - s.numpy(np.array([xm]))[0])
            ax_e.plot([xm], [ym], "o", color="crimson")
        where = f"±{abs(at):.2f}" if sym else f"{at:.2f}"
        ax_e.set_title(f"{hard} − {smooth}\nmax |difference| {err:.3f} at x = {where}", fontsize=10)
        ax_f.set_title(f"{smooth} vs {hard}")
        ax_d.set_title("derivatives")
        ax_f.legend(loc="upper left")
        ax_d.legend(loc="upper left")
        ax_e.set_xlabel("x")
    axes[0, 0].set_ylabel("f(x)")
    axes[1, 0].set_ylabel("f'(x)")
    axes[2, 0].set_ylabel("hard − smooth")
    fig.suptitle("Smooth activations and the hard (piecewise) variants that stand in for them on int8 devices "
                 "(max error over [−8, 8])", fontsize=12)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------
# PWL fits
# ----------------------------------------------------------------------------------------------------

@register_figure("pwl", "each PWL fit with its error curve, and max error vs K (minimax vs uniform)")
def write_pwl(out_dir: Path) -> list[Path]:
    from edgeact.pwl import DEMO_FUNCTIONS, HARD_FIT_FUNCTIONS

    out_dir = Path(out_dir)
    paths = [_pwl_fit(name, out_dir / f"pwl_{name}.png") for name in DEMO_FUNCTIONS + HARD_FIT_FUNCTIONS]
    paths.append(_pwl_error_vs_k(DEMO_FUNCTIONS + HARD_FIT_FUNCTIONS, out_dir / "pwl_error_vs_segments.png"))
    return paths


def _pwl_fit(name: str, path: Path, K: int = PWL_SEGMENTS) -> Path:
    from edgeact.pwl import fit_pwl

    plt = _plt()
    fit = fit_pwl(name, K)
    a, b = fit.x_range
    f = get(name).numpy
    x = np.linspace(a, b, 4001)
    uniform = np.linspace(a, b, K + 1)
    uni_interp = np.interp(x, uniform, f(uniform))
    fig = plt.figure(figsize=(12, 8))
    grid = fig.add_gridspec(2, 2, height_ratios=[3, 2], width_ratios=[1, 1])
    ax, ax_zoom, ax_e = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    bp = np.asarray(fit.breakpoints)
    # The zoom spans the interior breakpoints: where the function bends and the fit works hardest.
    lo, hi = (bp[1], bp[-2]) if K >= 3 else (a, b)
    pad = 0.15 * (hi - lo) if hi > lo else 0.5
    xz = np.linspace(max(a, lo - pad), min(b, hi + pad), 2001)
    for axis, xs, title in ((ax, x, f"on [{a:g}, {b:g}]"), (ax_zoom, xz, f"zoom on [{xz[0]:.2f}, {xz[-1]:.2f}]")):
        axis.plot(xs, f(xs), color="black", lw=2.2, label=name)
        axis.plot(xs, fit(xs), color="crimson", lw=1.4, label=f"minimax PWL, {K} segments")
        inside = (bp >= xs[0]) & (bp <= xs[-1])
        axis.plot(bp[inside], fit(bp[inside]), "o", color="crimson", ms=5, label="fitted breakpoints")
        axis.plot(xs, np.interp(xs, uniform, f(uniform)), color="tab:blue", lw=1.0, ls="--",
                  label="uniform breakpoints, interpolated")
        axis.set(xlabel="x", title=title)
    ax.set_ylabel("f(x)")
    ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"{name}: {K}-segment PWL stand-ins", fontsize=12)
    ax_e.plot(x, f(x) - fit(x), color="crimson", lw=1.4,
              label=f"minimax: max |error| {fit.max_error:.2e}")
    ax_e.plot(x, f(x) - uni_interp, color="tab:blue", lw=1.0, ls="--",
              label=f"uniform, interpolated: {fit.uniform_interp_error:.2e}")
    ax_e.axhline(fit.max_error, color="crimson", lw=0.8, ls=":")
    ax_e.axhline(-fit.max_error, color="crimson", lw=0.8, ls=":")
    for t in fit.breakpoints:
        ax_e.axvline(t, color="crimson", lw=0.5, alpha=0.35)
    lim = 1.15 * max(fit.max_error, min(fit.uniform_interp_error, 6 * fit.max_error))
    ax_e.set(xlabel="x", ylabel="f(x) − PWL(x)", ylim=(-lim, lim),
             title=f"error f − PWL{' (axis clipped)' if fit.uniform_interp_error > lim else ''}; uniform "
                   f"breakpoints with minimax values reach {fit.uniform_error:.2e} "
                   f"({fit.uniform_error / fit.max_error:.1f}× the minimax error)")
    ax_e.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def _pwl_error_vs_k(names, path: Path, segments=(4, 8, 16, 32)) -> Path:
    from edgeact.pwl import fit_pwl

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    smooth = [n for n in names if not n.startswith("hard_")]
    hard = [n for n in names if n.startswith("hard_")]
    cmap = plt.get_cmap("tab10")
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    for ax, group, title in ((axes[0], smooth, "smooth functions"), (axes[1], hard, "hard variants (piecewise quadratic)")):
        handles = []
        for i, name in enumerate(group):
            fits = [fit_pwl(name, K) for K in segments]
            c = cmap(i)
            ax.loglog(segments, [f.max_error for f in fits], "o-", color=c, lw=1.8)
            ax.loglog(segments, [f.uniform_error for f in fits], "s--", color=c, lw=1.0, alpha=0.7)
            handles.append(Line2D([], [], color=c, lw=2.5, label=name))
        handles += [Line2D([], [], color="black", marker="o", lw=1.8, label="minimax (fitted breakpoints)"),
                    Line2D([], [], color="black", marker="s", ls="--", lw=1.0, label="uniform, minimax values")]
        ax.axhline(1 / 256, color="black", lw=0.8, ls=":")
        ax.text(segments[-1], 1 / 256 * 1.12, "1/256: one int8 step of a [0, 1] output", fontsize=8, ha="right")
        ax.set(xlabel="segments K", title=f"max |f − PWL|: {title}")
        ax.set_xticks(segments, [str(k) for k in segments])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(handles=handles, fontsize=8, loc="lower left")
    axes[0].set_ylabel("max abs error on the range of interest")
    fig.suptitle("PWL error vs number of segments: fitted breakpoints (solid) vs uniform breakpoints "
                 "with their own minimax values (dashed)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------
# int8 tables
# ----------------------------------------------------------------------------------------------------

@register_figure("int8", "each activation's int8 table (256 codes) against the float curve")
def write_int8(out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    relu = [(n, p) for n, p in RELU_FAMILY]
    smooth = [(n, {}) for pair in SMOOTH_VS_HARD for n in pair] + [("gelu", {})]
    return [_int8_tables(relu, out_dir / "int8_relu_family.png", ncols=3),
            _int8_tables(smooth, out_dir / "int8_smooth_and_hard.png", ncols=3)]


def _int8_tables(items, path: Path, ncols: int) -> Path:
    plt = _plt()
    nrows = -(-len(items) // ncols)
    fig = plt.figure(figsize=(5.0 * ncols, 4.4 * nrows))
    outer = fig.add_gridspec(nrows, ncols, hspace=0.45, wspace=0.25, top=1 - 0.5 / (4.4 * nrows) - 0.04,
                             bottom=0.05, left=0.06, right=0.98)
    for i, (name, params) in enumerate(items):
        inner = outer[i // ncols, i % ncols].subgridspec(2, 1, height_ratios=[3, 1.2], hspace=0.08)
        ax, ax_e = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
        in_qp, out_qp = demo_qparams(name, **params)
        codes = in_qp.codes()
        xq = in_qp.dequantize(codes)
        table = int8_table(name, in_qp, out_qp, **params)
        yq = out_qp.dequantize(table)
        x = np.linspace(xq[0], xq[-1], 2001)
        f = get(name)
        ax.plot(x, f.numpy(x, **params), color="black", lw=1.2, label="float")
        ax.step(xq, yq, where="mid", color="crimson", lw=0.9, label="int8 table")
        ax.set_title(f"{_label(name, params)}\nin s={in_qp.scale:.3g} z={in_qp.zero_point}, "
                     f"out s={out_qp.scale:.3g} z={out_qp.zero_point}", fontsize=9)
        ax.tick_params(labelbottom=False)
        ax.set_ylabel("value")
        ax.legend(loc="upper left", fontsize=8)
        lsb = (yq - f.numpy(xq, **params)) / out_qp.scale
        ax_e.plot(xq, lsb, ".", color="crimson", ms=2.5)
        ax_e.axhline(0.5, color="grey", lw=0.7, ls=":")
        ax_e.axhline(-0.5, color="grey", lw=0.7, ls=":")
        ax_e.set(xlabel="x (input code value)", ylabel="error (LSB)", ylim=(-1.0, 1.0))
    fig.suptitle("int8 tables (ideal semantics: round half to even) against the float function; "
                 "error of each of the 256 codes in output steps", fontsize=11)
    return _save(fig, path)
