"""Reference models: traceable, quantizable, trainable on digits; committed checkpoints; QAT fine-tuning.

Accuracy thresholds: a 5-epoch MLP run (about a second unloaded) reaches 94–96% on the 360 test images
(seeds 0 and 1), so the test asks for 90%; every committed MobileNetV3-Small checkpoint must score at
least 97% (they score 98.6–100%, see models/README.md).
"""
import numpy as np
import pytest
import torch
from torch import nn

import edgeact
import edgeact.nn as enn
from edgeact.cli import main
from edgeact.errors import ModelFileError, UnsupportedError
from edgeact.models import (
    MLP, RECIPES, MobileNetV3Small, SmallCNN, build, digits_for, evaluate, fit, load, load_digits, qat_finetune,
)
from edgeact.models.loader import PACKAGE_DIR, checkpoint_path, read_checkpoint
from edgeact.quantize import QAT_QCONFIG, quantizers

STUDY_ACTIVATIONS = ("relu", "relu6", "leaky_relu", "hard_swish", "swish", "mish", "hard_mish", "selu")


# -- data --------------------------------------------------------------------------------------------------
def test_digits_split_is_fixed_stratified_and_normalised():
    from sklearn.datasets import load_digits as sk_digits

    d = load_digits()
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    # Every image of the data set, exactly once, as pixel / 8 − 1.
    raw = sk_digits()
    ours = np.concatenate([d.x_train.numpy(), d.x_test.numpy()]).reshape(1797, 64)
    ref = raw.images.reshape(1797, 64) / 8.0 - 1.0
    key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731 — sort rows to compare as multisets
    np.testing.assert_array_equal(key(ours), key(ref.astype(np.float32)))
    assert d.x_train.min() == -1.0 and d.x_train.max() == 1.0
    counts = np.bincount(d.y_test.numpy(), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    again = load_digits.__wrapped__()
    assert torch.equal(again.x_test, d.x_test) and torch.equal(again.y_train, d.y_train)


def test_resized_digits_keep_the_range_and_labels():
    d8, d16 = load_digits(8), load_digits(16)
    assert d16.x_train.shape == (1437, 1, 16, 16)
    assert torch.equal(d16.y_test, d8.y_test)
    assert d16.x_train.min() >= -1.0 and d16.x_train.max() <= 1.0
    with pytest.raises(edgeact.EdgeActError, match="size"):
        load_digits(4)


# -- models --------------------------------------------------------------------------------------------------
CASES = [(m, a) for m in ("mlp", "cnn", "mnv3s") for a in ("relu", "prelu", "hard_swish", "mish", "hard_mish", "selu")]


@pytest.mark.parametrize("name,act", CASES)
def test_models_trace_with_torch_fx(name, act):
    model = build(name, act).eval()
    traced = torch.fx.symbolic_trace(model)
    x = digits_for(name).x_test[:8]
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
    assert model(x).shape == (8, 10)


PREPARE_CASES = [("mnv3s", "hard_swish"), ("mnv3s", "prelu"), ("mlp", "relu")] + [
    ("cnn", act) for act in ("relu", "relu6", "leaky_relu", "hard_swish", "swish", "mish", "hard_mish", "selu", "prelu")
]


@pytest.mark.parametrize("name,act", PREPARE_CASES)
def test_models_go_through_prepare_calibrate_convert(name, act):
    model = build(name, act)
    data = digits_for(name)
    with torch.no_grad():  # BatchNorm statistics of real data: a fresh mnv3s shrinks its activations to ~1e-8
        model.train()(data.x_train[:256])
    model.eval()
    prepared = edgeact.prepare(model)
    edgeact.calibrate(prepared, data.x_train[:64], progress=False)
    converted = edgeact.convert(prepared)
    with torch.no_grad():
        out = converted(data.x_test[:4])
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def _modules(model, cls):
    return [m for m in model.modules() if isinstance(m, cls)]


def test_activation_is_a_constructor_parameter():
    mish = MobileNetV3Small("mish")
    assert len(_modules(mish, enn.Mish)) > 10 and not _modules(mish, enn.HardSwish)
    assert len(_modules(mish, enn.HardSigmoid)) == 4  # the squeeze-excite gates stay hard sigmoids
    paper = MobileNetV3Small("hard_swish", early_activation="relu")
    early = [m for b in list(paper.blocks)[:3] for m in b.modules() if isinstance(m, enn.Activation)
             and not isinstance(m, enn.HardSigmoid)]
    late = [m for b in list(paper.blocks)[3:] for m in b.modules() if isinstance(m, enn.Activation)
            and not isinstance(m, enn.HardSigmoid)]
    assert all(isinstance(m, enn.ReLU) for m in early) and all(isinstance(m, enn.HardSwish) for m in late)
    assert _modules(MobileNetV3Small(gate="sigmoid"), enn.Sigmoid)  # the gate is swappable
    prelu = SmallCNN("prelu")
    assert [m.weight.numel() for m in _modules(prelu, enn.PReLU)] == [16, 32, 64]  # one slope per channel
    assert isinstance(MLP("tanh").features[1], enn.Tanh)
    with pytest.raises(UnsupportedError, match="unknown activation"):
        build("mlp", "relu7")
    with pytest.raises(UnsupportedError, match="unknown reference model"):
        build("resnet", "relu")


def test_models_are_small():
    sizes = {n: sum(p.numel() for p in build(n).parameters()) for n in ("mlp", "cnn", "mnv3s")}
    assert sizes["mnv3s"] < 80_000 and sizes["cnn"] < 30_000 and sizes["mlp"] < 20_000, sizes


# -- training --------------------------------------------------------------------------------------------------
def test_short_training_converges():
    model = build("mlp", "relu", seed=0)
    result = fit(model, digits_for("mlp"), epochs=5, lr=3e-3, seed=0)
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert result.test_accuracy >= 90.0
    assert evaluate(model, digits_for("mlp")) == result.test_accuracy


def test_training_is_deterministic_for_a_seed():
    def run(seed):
        model = build("mlp", "relu", seed=seed, dropout=0.2)
        fit(model, digits_for("mlp"), epochs=2, seed=seed)
        return model.state_dict()

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_shift_augmentation_moves_images_within_the_frame():
    from edgeact.models.train import _shift

    x = torch.full((3, 1, 8, 8), -1.0)
    x[:, 0, 4, 4] = 1.0
    moved = _shift(x, 1, torch.Generator().manual_seed(0))
    assert moved.shape == x.shape and (moved == 1.0).sum() == 3  # each image keeps its one bright pixel
    rows, cols = torch.nonzero(moved[:, 0] == 1.0)[:, 1], torch.nonzero(moved[:, 0] == 1.0)[:, 2]
    assert rows.sub(4).abs().max() <= 1 and cols.sub(4).abs().max() <= 1


# -- committed checkpoints and the loader ------------------------------------------------------------------
@pytest.mark.parametrize("act", STUDY_ACTIVATIONS)
def test_committed_mnv3s_checkpoints_are_accurate_and_small(act, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEACT_CACHE", str(tmp_path))  # a model trained here would come first
    path = checkpoint_path("mnv3s", act)
    assert path is not None and path.parent == PACKAGE_DIR, f"no committed checkpoint for mnv3s/{act}"
    assert path.stat().st_size < 400_000
    model = load("mnv3s", act, train_if_missing=False)
    accuracy = evaluate(model, digits_for("mnv3s"))
    assert accuracy >= 97.0
    assert accuracy == pytest.approx(model.checkpoint["test_accuracy"])  # what training measured, reproduced


def test_load_trains_and_caches_a_missing_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEACT_CACHE", str(tmp_path))
    monkeypatch.setitem(RECIPES, "mlp", {"epochs": 2, "lr": 3e-3, "max_shift": 0})
    assert checkpoint_path("mlp", "elu") is None
    first = load("mlp", "elu", progress=False)
    path = tmp_path / "checkpoints" / "mlp_elu.pt"
    assert checkpoint_path("mlp", "elu") == path and path.is_file()
    stamp = path.stat().st_mtime_ns
    second = load("mlp", "elu")
    assert path.stat().st_mtime_ns == stamp  # read back, not trained again
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert second.checkpoint["epochs"] == 2 and not second.training


def test_bad_checkpoints_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEACT_CACHE", str(tmp_path))
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "mlp_gelu.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="edgeact train"):
        load("mlp", "gelu")
    torch.save({"format": "edgeact-checkpoint/1", "model": "cnn", "activation": "gelu", "state_dict": {}},
               folder / "mlp_tanh.pt")
    with pytest.raises(ModelFileError, match="holds cnn/gelu"):
        load("mlp", "tanh")
    with pytest.raises(ModelFileError, match="edgeact train --model mlp --activation softplus"):
        load("mlp", "softplus", train_if_missing=False)
    with pytest.raises(ModelFileError, match="not an edgeact checkpoint"):
        torch.save({"weights": 1}, folder / "x.pt")
        read_checkpoint(folder / "x.pt")


def test_cli_trains_and_saves(tmp_path, capsys):
    assert main(["train", "--model", "mlp", "--activation", "relu,hard_swish", "--epochs", "1", "--out",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mlp/relu: test accuracy" in out and "mlp/hard_swish" in out
    assert read_checkpoint(tmp_path / "mlp_hard_swish.pt")["epochs"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


# -- QAT fine-tuning ---------------------------------------------------------------------------------------
def test_qat_finetune_keeps_int8_accuracy_within_half_a_point_of_float():
    # The MLP keeps this fast (the study runs the same function on MobileNetV3-Small). Measured: float
    # 96.11%, int8 after 2 QAT epochs 96.67%; PTQ alone loses up to a point on a shorter-trained MLP.
    data = digits_for("mlp")
    float_model = build("mlp", "hard_swish", seed=0)
    fit(float_model, data, epochs=15, lr=3e-3)
    float_acc = evaluate(float_model, data)
    prepared = edgeact.prepare(float_model, qconfig=QAT_QCONFIG)
    result = qat_finetune(prepared, data, epochs=2)
    # Ranges are frozen afterwards: evaluation (test images) never moved an observer.
    assert all(not q.observe for q in quantizers(prepared) if q.axis is None)
    converted = edgeact.convert(prepared)
    int8_acc = evaluate(converted, data)
    assert int8_acc >= float_acc - 0.5, (float_acc, result.test_accuracy, int8_acc)
    assert abs(int8_acc - result.test_accuracy) <= 0.6  # fake-quant and integer model agree (≤ 2 images)


def test_qat_finetune_trains_a_plain_module_too():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    result = qat_finetune(model, digits_for("mlp"), epochs=2, lr=1e-2)
    assert result.losses[-1] < result.losses[0] and result.test_accuracy > 80
