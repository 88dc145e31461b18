"""CUDA: AMP train steps, channels_last, torch.compile, BN folding and CGD's custom backward on the GPU.

Marked ``cuda``: skipped without a GPU (tests/conftest.py); ``benchmarks/gpu_check.sh`` runs them.
Every check compares against an oracle computed in float32 with TF32 off (or float64 on the CPU), so
a wrong kernel, layout or backward on the GPU shows. The checks are functions of the device so that
they can be exercised on the CPU by hand (``_check_amp("cpu", "bf16")``); the tests run them on CUDA.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from cgd_video.models import create_model
from cgd_video.models.cgd import CGD

from _model_helpers import perturb_norms

pytestmark = pytest.mark.cuda


@contextlib.contextmanager
def no_tf32():
    """float32 matmuls and convs in full float32 (TF32 would put ~1e-3 errors into every oracle)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def tiny_model(device: str, seed: int = 0, channels_last: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("c2d_r18_cgd", num_classes=5, num_frames=4, layout="pytorchvideo8", dropout=0.0)
    perturb_norms(model, seed)
    for m in model.modules():  # non-zero CGD weights and biases: the descriptor path must matter
        if isinstance(m, CGD):
            with torch.no_grad():
                for p in m.parameters():
                    p.copy_(torch.randn(p.shape) * 0.5)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def clip(device: str, n: int = 4, channels_last: bool = False, seed: int = 1) -> torch.Tensor:
    x = torch.randn(n, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed)).to(device)
    return x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x


def train_step(model: nn.Module, x: torch.Tensor, amp: str | None = None, fn=None):
    """One forward + backward in train mode; returns (loss, flat gradient vector) in float32/64."""
    model.train()
    for p in model.parameters():
        p.grad = None
    y = torch.arange(x.shape[0], device=x.device) % 5
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    ctx = torch.autocast(x.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    with ctx:
        loss = nn.functional.cross_entropy((fn or model)(x).float(), y)
    scale = 1.0
    (loss * scale).backward()
    grads = torch.cat([p.grad.flatten() / scale for p in model.parameters()])
    return loss.detach(), grads


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# Stated tolerances, against the float32 step (TF32 off) of the same model and batch. A randomly initialised
# network with train-mode BN has an ill-conditioned gradient: in AMP the *whole* gradient vector is off by
# about 40% (bf16, cosine 0.92) and 15% (fp16, cosine 0.99) in relative L2 norm already for C2D-R18 without
# CGD (CPU autocast, 4x3x8x112^2: 0.401 / 0.149 for C2D, 0.402 / 0.150 with CGD). So the check is: finite;
# loss within LOSS_TOL; gradient error under GRAD_TOL; and CGD adds no AMP error of its own (its error at
# most CGD_FACTOR x that of the same backbone without CGD, built from the same seed).
LOSS_TOL = {"bf16": 2e-2, "fp16": 5e-3}
GRAD_TOL = {"bf16": 0.7, "fp16": 0.3}
CGD_FACTOR = 1.5


def _amp_error(name: str, device: str, amp: str) -> tuple[float, float]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, num_frames=4, layout="pytorchvideo8", dropout=0.0)
    model = model.to(device).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 4, 64, 64, generator=torch.Generator().manual_seed(1)).to(device)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    with no_tf32():
        ref_loss, ref_grad = train_step(model, x)
    loss, grad = train_step(model, x, amp)
    assert torch.isfinite(loss) and torch.isfinite(grad).all(), f"{name} {amp}: non-finite loss or gradient"
    return rel(loss, ref_loss), rel(grad, ref_grad)


def _check_amp(device: str, amp: str) -> None:
    loss_err, grad_err = _amp_error("c2d_r18_cgd", device, amp)
    _, base_err = _amp_error("c2d_r18", device, amp)
    assert loss_err <= LOSS_TOL[amp], f"{amp} loss rel. error {loss_err:.3g}"
    assert grad_err <= GRAD_TOL[amp], f"{amp} gradient rel. error {grad_err:.3g}"
    assert grad_err <= CGD_FACTOR * base_err + 1e-3, f"{amp}: CGD model {grad_err:.3g} vs C2D {base_err:.3g}"


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_train_step_finite_and_close_to_fp32(amp):
    _check_amp("cuda", amp)


def _check_channels_last(device: str) -> None:
    with no_tf32():
        contiguous = tiny_model(device)
        last = tiny_model(device, channels_last=True)
        loss_a, grad_a = train_step(contiguous, clip(device))
        loss_b, grad_b = train_step(last, clip(device, channels_last=True))
        contiguous.eval(), last.eval()
        with torch.no_grad():
            logits_a, logits_b = contiguous(clip(device)), last(clip(device, channels_last=True))
    assert rel(loss_b, loss_a) < 1e-5
    assert rel(grad_b, grad_a) < 1e-4, f"channels_last gradient rel. error {rel(grad_b, grad_a):.3g}"
    assert rel(logits_b, logits_a) < 1e-5


def test_channels_last_matches_contiguous():
    _check_channels_last("cuda")


def _check_bn_folding(device: str, channels_last: bool) -> None:
    model = tiny_model(device, channels_last=channels_last).eval()
    x = clip(device, channels_last=channels_last)
    with no_tf32(), torch.no_grad():
        plain = model(x)
        fused = model.fuse_for_inference()(x)
    assert rel(fused, plain) < 1e-5, f"folded BN logits rel. error {rel(fused, plain):.3g}"


@pytest.mark.parametrize("channels_last", [False, True])
def test_bn_folding_matches_unfused(channels_last):
    _check_bn_folding("cuda", channels_last)


def _check_compiled(device: str) -> None:
    with no_tf32():
        eager_model, compiled_model = tiny_model(device, channels_last=True), tiny_model(device, channels_last=True)
        x = clip(device, channels_last=True)
        loss_e, grad_e = train_step(eager_model, x)
        loss_c, grad_c = train_step(compiled_model, x, fn=torch.compile(compiled_model))
        eager_model.eval(), compiled_model.eval()
        with torch.no_grad():
            fused = compiled_model.fuse_for_inference()
            logits_e, logits_c = eager_model(x), torch.compile(fused)(x)
    assert rel(loss_c, loss_e) < 1e-4
    # inductor reorders float32 reductions (BN statistics, CGD pools): ~1e-5 per op, amplified by train BN
    assert rel(grad_c, grad_e) < 2e-3, f"compiled gradient rel. error {rel(grad_c, grad_e):.3g}"
    assert rel(logits_c, logits_e) < 1e-4, f"compiled eval logits rel. error {rel(logits_c, logits_e):.3g}"


def test_compiled_matches_eager_train_and_eval():
    _check_compiled("cuda")


def _cgd_input(device: str, layout: str, n: int = 2, c: int = 16, t: int = 3, h: int = 7, w: int = 5):
    x = torch.randn(n, c, t, h, w, generator=torch.Generator().manual_seed(3))
    if layout == "frames_channels_last":  # clip view of a channels_last frame batch, as resnet_c2d
        frames = x.transpose(1, 2).reshape(n * t, c, h, w).contiguous(memory_format=torch.channels_last)
        return frames.to(device).unflatten(0, (n, t)).transpose(1, 2)
    if layout == "channels_last_3d":
        return x.to(device).contiguous(memory_format=torch.channels_last_3d)
    return x.to(device)


def _check_cgd_backward(device: str, variant: str, temporal: str, layout: str) -> None:
    """The custom backward on ``device`` against plain autograd of ``x * scale(x)`` in float64 on the CPU."""
    torch.manual_seed(5)
    m = CGD(16, variant=variant, temporal=temporal, num_frames=3)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape) * 0.5)
    x = _cgd_input(device, layout).requires_grad_(True)
    gout = torch.randn(x.shape, generator=torch.Generator().manual_seed(4)).to(device)
    m_dev = m.to(device)
    out = m_dev(x)
    assert "CGDFunction" in type(out.grad_fn).__name__  # the hand-written backward ran
    grads = torch.autograd.grad(out, [x, *m_dev.parameters()], gout)
    m64 = CGD(16, variant=variant, temporal=temporal, num_frames=3).double()
    m64.load_state_dict({k: v.double().cpu() for k, v in m_dev.state_dict().items()})
    x64 = x.detach().double().cpu().requires_grad_(True)
    out64 = x64 * m64.scale(x64)
    ref = torch.autograd.grad(out64, [x64, *m64.parameters()], gout.double().cpu())
    assert rel(out.detach().cpu(), out64) < 1e-6
    for name, a, b in zip(["x", *(n for n, _ in m_dev.named_parameters())], grads, ref):
        assert rel(a.cpu(), b) < 1e-5, f"{name}: rel. error {rel(a.cpu(), b):.3g}"


@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d", "frames_channels_last"])
@pytest.mark.parametrize("variant,temporal", [("v10", "shared"), ("v10", "concat"), ("v7", "frame")])
def test_cgd_custom_backward_matches_autograd(variant, temporal, layout):
    _check_cgd_backward("cuda", variant, temporal, layout)
