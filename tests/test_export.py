"""Export: TorchScript and ONNX files of a C2D-R18+CGD checkpoint match the eager (eval, CGD-folded) model;
the real tools/export.py prints the parity, and a missing or refused checkpoint is one line with exit 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from cgd_video.boundary.evaluation import export_clip_shape, load_model_from_checkpoint
from cgd_video.inference.export import check_parity, export_model, load_exported

from _train_helpers import PYTHON, REPO, subprocess_env
from test_predictor import make_tiny_checkpoint

SHAPE = (1, 3, 4, 32, 32)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.pt", seed=1)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_model_matches_eager(tiny_ckpt, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    model, cfg, classes = load_model_from_checkpoint(tiny_ckpt)
    assert export_clip_shape(cfg) == SHAPE and export_clip_shape(cfg, 2, 40) == (2, 3, 4, 40, 40)
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


def test_unknown_format_lists_choices(tiny_ckpt, tmp_path):
    model, _, _ = load_model_from_checkpoint(tiny_ckpt)
    with pytest.raises(ValueError, match="onnx.*torchscript"):
        export_model(model, SHAPE, tmp_path / "m.x", "tflite")


class Payload:
    """Pickled into a checkpoint: loading it would need to run code from the file."""


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(REPO / "tools" / "export.py"), *args], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)


def test_export_cli_prints_parity_and_refuses_bad_checkpoints_in_one_line(tiny_ckpt, tmp_path):
    out = tmp_path / "model.ts"
    run = _cli("--ckpt", str(tiny_ckpt), "--format", "torchscript", "--out", str(out), "--trials", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert out.is_file() and "max abs difference" in run.stdout and run.stdout.rstrip().endswith("ok")
    assert "(1, 3, 4, 32, 32)" in run.stdout

    code = tmp_path / "code.pt"
    state = torch.load(tiny_ckpt, weights_only=True)
    state["extra"] = Payload()
    torch.save(state, code)
    for ckpt, says in ((tmp_path / "missing.pt", "does not exist"), (code, "pickled code")):
        run = _cli("--ckpt", str(ckpt), "--format", "torchscript", "--out", str(tmp_path / "x.ts"))
        lines = [x for x in run.stderr.splitlines() if x.strip()]
        assert run.returncode == 2 and len(lines) == 1, run.stderr[-3000:]
        assert says in lines[0] and str(ckpt) in lines[0]
        assert "weights_only=False" not in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "x.ts").exists()
