"""Export: TorchScript and ONNX files of a C2D-R18+CGD checkpoint match the eager (eval, CGD-folded) model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from cgd_video.inference.export import check_parity, export_model, load_exported
from cgd_video.inference.predictor import load_model_from_checkpoint
from test_predictor import make_tiny_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import export as export_cli  # noqa: E402

SHAPE = (1, 3, 4, 32, 32)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.pt", seed=1)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_model_matches_eager(tiny_ckpt, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    model, cfg, classes = load_model_from_checkpoint(tiny_ckpt)
    assert any(type(m).__name__ == "CGD" for m in model.modules())  # the CGD eval (folded) path is exported
    out = export_model(model, SHAPE, tmp_path / f"model.{fmt}", fmt)
    run = load_exported(out, fmt)
    x = torch.randn(SHAPE)
    with torch.no_grad():
        ref = model(x)
    got = run(x)
    assert got.shape == (1, len(classes)) and ref.abs().max() > 0.1
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    # The check can fail: a different model gives a large difference.
    other, _, _ = load_model_from_checkpoint(make_tiny_checkpoint(tmp_path / "other.pt", seed=2))
    parity = check_parity(other, run, SHAPE, num_trials=1)
    assert parity.max_abs_diff > 1e-2 and not parity.ok(1e-4)
    same = check_parity(model, run, SHAPE, num_trials=1)
    assert same.ok(1e-4) and same.max_abs_diff < 1e-4 and same.max_abs_logit > 0.1


def test_export_cli_prints_parity(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "model.ts"
    assert export_cli.main(["--ckpt", str(tiny_ckpt), "--format", "torchscript", "--out", str(out), "--trials", "1"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "max abs difference" in text and text.rstrip().endswith("ok")
    assert "(1, 3, 4, 32, 32)" in text
    with pytest.raises(SystemExit):
        export_cli.main(["--ckpt", str(tiny_ckpt), "--format", "tflite", "--out", str(out)])


def test_unknown_format_lists_choices(tiny_ckpt, tmp_path):
    model, _, _ = load_model_from_checkpoint(tiny_ckpt)
    with pytest.raises(ValueError, match="onnx.*torchscript"):
        export_model(model, SHAPE, tmp_path / "m.x", "tflite")
