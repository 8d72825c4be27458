"""Diagnostics: linear collapse (found by tracing), planted dead units, saturation, vanishing gradients.

Expected values come from the formulas themselves (W2·W1 with NumPy, pre-activations computed by hand),
never from the code under test.
"""
import numpy as np
import pytest
import torch
from torch import nn

import edgeact.nn as enn
from edgeact.cli import main
from edgeact.diagnose import (
    activation_stats, collapse_demo, collapse_linear, diagnose, find_affine_chains, gradient_norms,
)
from edgeact.models import MLP, SmallCNN, build, digits_for, fit

DIGITS = digits_for("mlp")
X, Y = DIGITS.x_test, DIGITS.y_test
BATCHES = list(zip(X.split(128), Y.split(128)))


def _planted_collapse() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))


# -- linear collapse -------------------------------------------------------------------------------------
def test_two_linear_layers_equal_one():
    torch.manual_seed(1)
    first, second = nn.Linear(5, 7), nn.Linear(7, 3)
    merged = collapse_linear(first, second)
    w1, b1 = first.weight.detach().double().numpy(), first.bias.detach().double().numpy()
    w2, b2 = second.weight.detach().double().numpy(), second.bias.detach().double().numpy()
    np.testing.assert_allclose(merged.weight.detach().numpy(), w2 @ w1, rtol=0, atol=1e-15)
    np.testing.assert_allclose(merged.bias.detach().numpy(), w2 @ b1 + b2, rtol=0, atol=1e-15)
    x = np.random.default_rng(0).normal(size=(100, 5))
    stacked = (x @ w1.T + b1) @ w2.T + b2
    np.testing.assert_allclose(merged(torch.from_numpy(x)).detach().numpy(), stacked, rtol=0, atol=1e-12)


def test_collapse_demo_shows_equality_without_and_difference_with_an_activation():
    demo = collapse_demo()
    assert demo["max_abs_difference"] < 1e-12
    assert demo["max_abs_difference_with_relu_between"] > 0.1 * demo["output_scale"]


def test_planted_linear_collapse_is_flagged():
    chains = find_affine_chains(_planted_collapse())
    assert [(c.first, c.second, c.kind) for c in chains] == [("1", "2", "collapse")]
    assert "W = W2·W1" in chains[0].describe()


@pytest.mark.parametrize("between", [
    [nn.BatchNorm2d(8)], [nn.Dropout(0.1), nn.Identity()], [enn.Identity()], [nn.AvgPool2d(1)],
])
def test_collapse_through_linear_ops_is_flagged(between):
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), *between, nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
    chains = find_affine_chains(model)
    assert len(chains) == 1 and chains[0].kind == "collapse"
    assert chains[0].first == "0" and chains[0].second == str(1 + len(between))


def test_a_nonlinearity_or_max_pool_between_is_not_flagged():
    for between in ([nn.ReLU()], [enn.HardSwish()], [nn.MaxPool2d(2)], [enn.make_activation("mish")]):
        model = nn.Sequential(nn.Conv2d(1, 8, 3), *between, nn.Conv2d(8, 8, 3))
        assert find_affine_chains(model) == []


def test_healthy_reference_models_have_no_collapse():
    assert find_affine_chains(build("mlp", "relu")) == []
    assert find_affine_chains(build("cnn", "mish")) == []


def test_mobilenet_linear_bottlenecks_are_factorisations_not_collapses():
    chains = find_affine_chains(build("mnv3s", "hard_swish"))
    bottlenecks = [c for c in chains if c.kind == "factorisation"]
    assert len(bottlenecks) >= 5  # project → next expand, also across the residual additions
    assert all(c.middle_width < min(c.in_width, c.out_width) for c in bottlenecks)
    assert any("add" in c.through for c in bottlenecks)
    # The paper's first block (no expansion, project 16→16) feeds the next expansion 16→48 directly:
    # one 16→48 conv would compute the same. A real finding, reported as a collapse.
    collapses = [(c.first, c.second) for c in chains if c.kind == "collapse"]
    assert collapses == [("blocks.0.project.0", "blocks.1.expand.0")]


# -- dying units and saturation --------------------------------------------------------------------------
def test_planted_dead_units_are_counted_exactly():
    torch.manual_seed(0)
    model = MLP("relu", hidden=(32, 32))
    with torch.no_grad():
        model.features[0].bias[:16] = -1e3  # these 16 units can never fire on inputs in [−1, 1]
    stats = {s.layer: s for s in activation_stats(model, BATCHES)}
    # Independent reference: a ReLU unit is dead iff its pre-activation is ≤ 0 on every sample.
    w, b = model.features[0].weight.detach().numpy(), model.features[0].bias.detach().numpy()
    pre = X.flatten(1).numpy() @ w.T + b
    expected_dead = int((pre <= 0).all(axis=0).sum())
    assert expected_dead >= 16
    assert stats["features.1"].dead_units == expected_dead
    assert stats["features.1"].units == 32
    result = diagnose(model, BATCHES)
    assert [s.layer for s in result.dead_layers] == ["features.1"]
    assert any("dying units: features.1" in w for w in result.warnings())


def test_dead_channels_of_a_conv_map_are_units():
    torch.manual_seed(0)
    model = SmallCNN("relu")
    with torch.no_grad():
        model.features[0][1].bias[:4] = -1e3  # BatchNorm shift: channels 0..3 of stage 1 always negative
    data = digits_for("cnn")
    stats = {s.layer: s for s in activation_stats(model, [data.x_test[:64]])}
    assert stats["features.0.2"].units == 16
    assert stats["features.0.2"].dead_units >= 4


def test_saturation_of_sigmoid_matches_the_formula():
    torch.manual_seed(0)
    model = MLP("sigmoid", hidden=(32,))
    with torch.no_grad():
        model.features[0].weight.mul_(40)
    stats = activation_stats(model, BATCHES, epsilon=0.01)[0]
    w, b = model.features[0].weight.detach().double(), model.features[0].bias.detach().double()
    y = torch.sigmoid(X.flatten(1).double() @ w.T + b)
    expected = float(((y < 0.01) | (y > 0.99)).double().mean())
    assert stats.saturated_fraction == pytest.approx(expected, abs=1e-3)
    assert expected > 0.5
    assert diagnose(model, BATCHES).saturated_layers
    torch.manual_seed(0)
    assert not diagnose(MLP("sigmoid", hidden=(32,)), BATCHES).saturated_layers


def test_unbounded_activations_report_no_saturation():
    stats = activation_stats(build("mlp", "mish"), BATCHES)
    assert all(s.saturated_fraction is None for s in stats)


# -- gradients at initialisation -------------------------------------------------------------------------
def test_deep_sigmoid_stack_has_vanishing_gradients():
    torch.manual_seed(0)
    deep = MLP("sigmoid", hidden=(32,) * 10)
    grads = gradient_norms(deep, X[:256], Y[:256])
    assert len(grads) == 11 and grads[0].layer == "features.0" and grads[-1].layer == "classifier"
    norms = [g.weight_grad_norm for g in grads]
    assert norms[0] < 1e-5 * norms[-1]
    assert all(a < b for a, b in zip(norms[1:-1], norms[2:]))  # shrinks layer by layer towards the input
    result = diagnose(deep, BATCHES)
    assert result.vanishing and any("vanishing gradients" in w for w in result.warnings())


def test_gradient_norms_are_those_of_autograd():
    torch.manual_seed(0)
    model = MLP("tanh", hidden=(16,))
    grads = gradient_norms(model, X[:32], Y[:32])
    loss = nn.functional.cross_entropy(model(X[:32]), Y[:32])
    g0, g1 = torch.autograd.grad(loss, [model.features[0].weight, model.classifier.weight])
    assert [g.weight_grad_norm for g in grads] == pytest.approx([float(g0.norm()), float(g1.norm())], rel=1e-5)


def test_a_trained_healthy_model_gets_no_warning():
    torch.manual_seed(0)
    model = build("mlp", "relu")
    fit(model, DIGITS, epochs=5)
    result = diagnose(model, BATCHES)
    assert result.healthy, result.warnings()
    assert result.gradient_ratio is not None and 1e-3 < result.gradient_ratio < 1e3


# -- the command line ------------------------------------------------------------------------------------
def test_cli_diagnoses_a_saved_module_file(tmp_path, capsys):
    path = tmp_path / "planted.pt"
    torch.save(_planted_collapse(), path)
    assert main(["diagnose", str(path), "--input-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "linear collapse: 1 → 2" in out and "Gradient norm per layer" in out


def test_cli_diagnoses_a_reference_model_by_name(capsys):
    assert main(["diagnose", "cnn", "--activation", "relu", "--untrained", "--samples", "64", "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["chains"] == [] and len(report["gradients_at_init"]) == 4


def test_cli_rejects_a_state_dict_and_a_corrupt_file(tmp_path, capsys):
    sd = tmp_path / "weights.pt"
    torch.save(build("mlp").state_dict(), sd)
    assert main(["diagnose", str(sd)]) == 1
    assert "torch.save(model, path)" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    assert main(["diagnose", str(bad)]) == 1
    assert "cannot be read" in capsys.readouterr().err
    assert main(["diagnose", str(tmp_path / "missing.pt")]) == 1
    assert "neither a reference model" in capsys.readouterr().err


def test_cli_shows_vanishing_gradients_of_a_deep_sigmoid_mlp(capsys):
    assert main(["diagnose", "mlp", "--activation", "sigmoid", "--depth", "10", "--samples", "128"]) == 0
    assert "vanishing gradients at initialisation" in capsys.readouterr().out
    assert main(["diagnose", "mlp", "--activation", "relu", "--depth", "2", "--samples", "128"]) == 0
    assert "No warnings." in capsys.readouterr().out
    assert main(["diagnose", "cnn", "--depth", "3"]) == 1
    assert "applies to the mlp only" in capsys.readouterr().err
