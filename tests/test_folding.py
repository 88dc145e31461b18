"""Sec. 3.3 folding: bn(X * s) as one addcmul equals the unfolded CGD -> BN (-> ReLU) in eval mode."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cgd_video.models.cgd import CGD
from cgd_video.models.folding import scaled_batch_norm

ALL_TEMPORAL = ["concat", "shared", "mean", "frame"]


def _trained_bn(bn: nn.Module, seed: int = 0) -> nn.Module:
    """A BN with non-trivial running statistics and affine parameters, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    c = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=gen))
        bn.running_var.copy_(torch.rand(c, generator=gen) * 2 + 0.1)
        if bn.affine:
            bn.weight.copy_(torch.randn(c, generator=gen))
            bn.bias.copy_(torch.randn(c, generator=gen))
    return bn.eval()


def _stack(temporal: str, c_in: int = 4, c: int = 8, t: int = 3):
    torch.manual_seed(0)
    conv = nn.Conv3d(c_in, c, (1, 3, 3), padding=(0, 1, 1), bias=False)
    cgd = CGD(c, variant="v10", temporal=temporal, num_frames=t)
    with torch.no_grad():
        for p in cgd.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    bn = _trained_bn(nn.BatchNorm3d(c))
    return conv.eval(), cgd.eval(), bn


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("temporal", ALL_TEMPORAL)
def test_folded_matches_unfolded(temporal, channels_last):
    conv, cgd, bn = _stack(temporal)
    x = torch.randn(2, 4, 3, 7, 6)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
        conv = conv.to(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        h = conv(x)
        unfolded = torch.relu(bn(cgd(h)))
        folded = scaled_batch_norm(h, cgd.scale(h), bn, relu=True)
        folded_no_relu = torch.relu(scaled_batch_norm(h, cgd.scale(h), bn))
    torch.testing.assert_close(folded, unfolded, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(folded_no_relu, unfolded, rtol=1e-5, atol=1e-5)
    assert folded.stride() == h.stride()  # layout kept: channels_last_3d stays channels_last_3d


def test_folded_matches_float64_oracle():
    conv, cgd, bn = _stack("shared")
    x = torch.randn(2, 4, 3, 7, 6)
    with torch.no_grad():
        h = conv(x)
        folded = scaled_batch_norm(h, cgd.scale(h), bn)
        h64 = h.double()
        s = cgd.double().scale(h64)
        mean, var = bn.running_mean.double(), bn.running_var.double()
        w, b = bn.weight.double(), bn.bias.double()
        view = (1, -1, 1, 1, 1)
        oracle = (h64 * s - mean.view(view)) / torch.sqrt(var.view(view) + bn.eps) * w.view(view) + b.view(view)
    torch.testing.assert_close(folded.double(), oracle, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frames_format", [torch.contiguous_format, torch.channels_last])
def test_frame_batch_bn2d_clip_view(frames_format):
    """The C2D backbone's usage: BatchNorm2d over a (N, C, T, H, W) clip view of (N*T, C, H, W) frames."""
    n, t, c = 2, 4, 8
    cgd = CGD(c, variant="v10", temporal="frame")
    with torch.no_grad():
        for p in cgd.parameters():
            p.copy_(torch.randn_like(p))
    bn = _trained_bn(nn.BatchNorm2d(c), seed=1)
    frames = torch.randn(n * t, c, 5, 5).contiguous(memory_format=frames_format)
    clip = frames.unflatten(0, (n, -1)).transpose(1, 2)
    with torch.no_grad():
        folded = scaled_batch_norm(clip, cgd.scale(clip), bn)
        unfolded = bn(cgd(clip).transpose(1, 2).flatten(0, 1))
    back = folded.transpose(1, 2).flatten(0, 1)
    assert back.data_ptr() == folded.data_ptr()  # folding frames back is a view, no copy
    torch.testing.assert_close(back, unfolded, rtol=1e-5, atol=1e-5)


def test_bn_without_affine_or_running_stats():
    cgd = CGD(6, temporal="mean")
    x = torch.randn(3, 6, 2, 4, 4)
    for bn in (_trained_bn(nn.BatchNorm3d(6, affine=False)), nn.BatchNorm3d(6, track_running_stats=False).eval()):
        with torch.no_grad():
            torch.testing.assert_close(scaled_batch_norm(x, cgd.scale(x), bn), bn(cgd(x)), rtol=1e-5, atol=1e-5)


def test_bfloat16_keeps_dtype():
    conv, cgd, bn = _stack("shared")
    h = torch.randn(2, 8, 3, 5, 5)
    with torch.no_grad():
        ref = bn(cgd(h))
        out = scaled_batch_norm(h.bfloat16(), cgd.scale(h.bfloat16()), bn)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=3e-2, atol=3e-2)


def test_training_bn_rejected():
    bn = nn.BatchNorm3d(4).train()
    with pytest.raises(ValueError, match="eval mode"):
        scaled_batch_norm(torch.randn(1, 4, 2, 2, 2), torch.ones(1, 4, 1, 1, 1), bn)


def test_gradient_flows_in_eval():
    """Eval-mode folding stays differentiable (saliency / fine-tuning with frozen BN)."""
    conv, cgd, bn = _stack("frame")
    h = torch.randn(2, 8, 3, 5, 5, requires_grad=True)
    scaled_batch_norm(h, cgd.scale(h), bn, relu=True).sum().backward()
    g_folded = h.grad.clone()
    h.grad = None
    torch.relu(bn(cgd(h))).sum().backward()
    torch.testing.assert_close(g_folded, h.grad, rtol=1e-5, atol=1e-5)


def test_cpu_one_pass_path_matches_addcmul():
    """The BN-kernel path is taken for dense clip layouts and equals addcmul exactly where it applies."""
    from cgd_video.models.folding import _cpu_affine

    n, c, t = 2, 5, 3
    mult, shift = torch.randn(n, c, t, 1, 1), torch.randn(1, c, 1, 1, 1)
    plain = torch.randn(n, c, t, 4, 6)
    frame_view = torch.randn(n * t, c, 4, 6).unflatten(0, (n, -1)).transpose(1, 2)
    for x in (plain, frame_view, plain.double()):
        out = _cpu_affine(x, mult.to(x.dtype), shift.to(x.dtype))
        assert out is not None and out.stride() == x.stride()
        torch.testing.assert_close(out, torch.addcmul(shift.to(x.dtype), x, mult.to(x.dtype)), rtol=1e-6, atol=1e-6)
    per_channel = torch.randn(n, c, 1, 1, 1)
    torch.testing.assert_close(_cpu_affine(plain, per_channel, shift), torch.addcmul(shift, plain, per_channel))
    assert _cpu_affine(plain.contiguous(memory_format=torch.channels_last_3d), mult, shift) is None
    assert _cpu_affine(plain.bfloat16(), mult.bfloat16(), shift.bfloat16()) is None


class _ConvCGDBN(nn.Module):
    def __init__(self, temporal: str):
        super().__init__()
        self.conv, self.cgd, self.bn = _stack(temporal)

    def forward(self, x):
        h = self.conv(x)
        return scaled_batch_norm(h, self.cgd.scale(h), self.bn, relu=True)


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("temporal", ["shared", "frame"])
def test_traced_folding_is_shape_generic(temporal):
    """A trace must not bake the CPU path's batch-dependent row count into the graph."""
    m = _ConvCGDBN(temporal).eval()
    with torch.no_grad():
        traced = torch.jit.trace(m, torch.randn(2, 4, 3, 5, 5))
        x = torch.randn(3, 4, 3, 6, 4)
        torch.testing.assert_close(traced(x), m(x), rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore")
def test_onnx_export_dynamic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = _ConvCGDBN("shared").eval()
    path = tmp_path / "cgd_bn.onnx"
    torch.onnx.export(
        m, (torch.randn(2, 4, 3, 5, 5),), str(path), input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "n"}}, opset_version=17, dynamo=False,
    )
    x = torch.randn(3, 4, 3, 5, 5)
    out = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), m(x), rtol=1e-5, atol=1e-5)
