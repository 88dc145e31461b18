"""CGD's Triton kernels (cgd_video/models/cgd_triton.py) against float64 torch references, on the CPU under
``TRITON_INTERPRET=1`` (the same kernel source the GPU compiles; tests/test_cuda_triton.py runs these checks
on CUDA). Fresh random inputs per check, every layout CGD meets, float32 and bfloat16.

Triton reads TRITON_INTERPRET when it is first imported, so the ``interpreted`` tests run in a child
pytest with the variable set (``test_kernels_under_the_interpreter``); in this process they skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")

from cgd_video.models import cgd_native, cgd_triton  # noqa: E402
from cgd_video.models.cgd import CGD  # noqa: E402

LAYOUTS = ["contiguous", "channels_last_3d", "frames_channels_last"]


INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@pytest.fixture
def interpreted():
    if not INTERPRETED:
        pytest.skip("runs in the child pytest of test_kernels_under_the_interpreter (TRITON_INTERPRET=1)")


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETED, reason="this is the child")
def test_kernels_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__],
                          cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout, proc.stdout[-500:]


def make(shape, layout: str, dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    n, c, t, h, w = shape
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    if layout == "channels_last_3d":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    elif layout == "frames_channels_last":
        frames = x.transpose(1, 2).reshape(n * t, c, h, w).contiguous(memory_format=torch.channels_last)
        x = frames.unflatten(0, (n, t)).transpose(1, 2)
    return x.to(device=device, dtype=dtype)


def check_pool_stats(device: str, layout: str, dtype: torch.dtype, seed: int = 0) -> None:
    x = make((2, 37, 3, 5, 7), layout, dtype, device, seed)  # C not a multiple of the block, H*W odd
    assert cgd_triton.available(x)
    avg, mx = cgd_triton.pool_stats(x, need_max=True)
    x64 = x.double().cpu()
    torch.testing.assert_close(avg.double().cpu(), x64.mean((3, 4)), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(mx.double().cpu(), x64.amax((3, 4)), rtol=0, atol=0)
    avg_only, none = cgd_triton.pool_stats(x, need_max=False)
    assert none is None
    torch.testing.assert_close(avg_only, avg, rtol=0, atol=0)


def check_backward_kernels(device: str, layout: str, dtype: torch.dtype, seed: int = 0) -> None:
    shape = (2, 37, 3, 5, 7)
    x = make(shape, layout, dtype, device, seed)
    top = x.amax((3, 4)) + 1
    x[:, :, :, 1, 1], x[:, :, :, 3, 4] = top, top  # a tie at the max in every row
    grad = make(shape, "contiguous", dtype, device, seed + 1)  # grad's layout differs from out's
    s = torch.rand(2, 37, 3, 1, 1, generator=torch.Generator().manual_seed(seed + 2)).to(device) + 0.5
    out = x * s.to(dtype)
    m_ref = (x.amax((3, 4)).to(dtype)[..., None, None] * s.to(dtype))[..., 0, 0]
    dot, cnt = cgd_triton.backward_rows(grad, out, m_ref)
    eq = (out == m_ref[..., None, None]).cpu()
    torch.testing.assert_close(dot.double().cpu(), (grad.double() * out.double()).sum((3, 4)).cpu(),
                               rtol=1e-5, atol=1e-5)
    assert torch.equal(cnt.cpu(), eq.sum((3, 4)).float()) and (cnt >= 2).all()
    shift = torch.randn(2, 37, 1, generator=torch.Generator().manual_seed(seed + 3)).to(device)
    d_max = torch.randn(2, 37, 3, generator=torch.Generator().manual_seed(seed + 4)).to(device)
    gx = cgd_triton.backward_apply(grad, out, s[..., 0, 0], shift, m_ref, d_max)
    ref = grad.double().cpu() * s.double().cpu() + shift.double().cpu()[..., None, None] \
        + eq.double() * d_max.double().cpu()[..., None, None]
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(gx.double().cpu(), ref, rtol=tol, atol=tol)
    assert gx.dtype == dtype and gx.stride() == out.stride()


def check_module_backward(device: str, layout: str, variant: str, temporal: str, seed: int = 0) -> None:
    """The whole CGD forward + backward on the Triton path against plain autograd of x * scale(x)."""
    torch.manual_seed(seed)
    m = CGD(37, variant=variant, temporal=temporal, num_frames=3).to(device)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, device=device) * 0.5)
    x1 = make((2, 37, 3, 5, 7), layout, torch.float32, device, seed).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    gout = make((2, 37, 3, 5, 7), "contiguous", torch.float32, device, seed + 1)
    out1 = m(x1)
    g1 = torch.autograd.grad(out1, [x1, *m.parameters()], gout)
    g2 = torch.autograd.grad(x2 * m.scale(x2), [x2, *m.parameters()], gout)
    torch.testing.assert_close(out1, x2 * m.scale(x2), rtol=1e-6, atol=1e-6)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_pool_stats_interpreted(interpreted, layout, dtype):
    check_pool_stats("cpu", layout, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_backward_kernels_interpreted(interpreted, layout, dtype):
    check_backward_kernels("cpu", layout, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant,temporal", [("v10", "shared"), ("v1", "concat")])
def test_module_on_triton_path_matches_autograd(interpreted, monkeypatch, layout, variant, temporal):
    calls = []
    monkeypatch.setattr(cgd_native, "applies", lambda x, params: False)  # CUDA tensors never take the CPU op
    for name in ("pool_stats", "backward_rows", "backward_apply"):
        fn = getattr(cgd_triton, name)
        monkeypatch.setattr(cgd_triton, name, lambda *a, _fn=fn, _n=name, **k: (calls.append(_n), _fn(*a, **k))[1])
    check_module_backward("cpu", layout, variant, temporal)
    assert set(calls) == {"pool_stats", "backward_rows", "backward_apply"}  # the kernels, not the fallback


def test_unmergeable_layout_falls_back(interpreted):
    x = torch.randn(1, 4, 2, 6, 5).transpose(3, 4)  # H, W swapped in memory: no single l stride
    assert not cgd_triton.available(x)
    assert cgd_triton.available(torch.randn(1, 4, 2, 6, 5))


@pytest.mark.skipif(INTERPRETED, reason="the interpreter runs CPU tensors through the kernels")
def test_cpu_tensors_take_the_eager_path():
    assert not cgd_triton.available(torch.randn(1, 4, 2, 6, 5))
