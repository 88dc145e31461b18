"""The native CPU op for CGD v10 (models/csrc/cgd_cpu.cpp, loaded by models/cgd_native.py) against the eager
``CGDFunction`` it replaces (itself tested against autograd and a float64 gradcheck in test_cgd.py):
outputs and every gradient, temporal modes shared and mean, contiguous-row and channels-innermost clips,
a gradient arriving in the other layout, float64 gradcheck; which modules take it; the fallbacks."""

from __future__ import annotations

import logging

import pytest
import torch

from cgd_video.models import cgd_native
from cgd_video.models.cgd import CGD
from cgd_video.models.cgd_kernels import CGDFunction
from cgd_video.models.layouts import unfold_frames

native = pytest.mark.skipif(cgd_native.load() is None, reason="the native CGD op could not be built here")


def _module(c: int, temporal: str, dtype=torch.float32, variant: str = "v10") -> CGD:
    torch.manual_seed(0)
    m = CGD(c, variant, temporal).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)  # far from the identity, so every path carries gradient
    return m


def _clip(n: int, c: int, t: int, h: int, w: int, dtype, channels_last: bool) -> torch.Tensor:
    """The clip view of a (N*T, C, H, W) frame batch, as C2D's blocks hand it to CGD."""
    frames = torch.randn(n * t, c, h, w, dtype=dtype) + 0.2
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    return unfold_frames(frames, n).requires_grad_()


def _grads(fn, x, module, grad):
    out = fn(x)
    return out, torch.autograd.grad(out, [x, *module._params()], grad)


@native
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("temporal", ["shared", "mean"])
@pytest.mark.parametrize("layout", ["rows", "channels_last", "grad_in_other_layout"])
@pytest.mark.parametrize("shape", [(2, 16, 3, 5, 7), (1, 8, 1, 4, 4), (2, 13, 2, 3, 11)], ids=["T3", "T1", "C13"])
def test_native_equals_the_eager_function(dtype, tol, temporal, layout, shape):
    m = _module(shape[1], temporal, dtype)
    x = _clip(*shape, dtype, channels_last=layout != "rows")
    grad = torch.randn_like(x)  # x's layout
    if layout == "grad_in_other_layout":  # BN's backward hands channels_last clips a contiguous gradient
        grad = unfold_frames(torch.randn(shape[0] * shape[2], *shape[1:2], *shape[3:], dtype=dtype), shape[0])
    ref, ref_grads = _grads(lambda v: CGDFunction.apply(v, m, *m._params()), x, m, grad)
    out, got = _grads(lambda v: cgd_native.cgd_v10(v, m._params(), temporal == "mean"), x, m, grad)
    assert out.stride() == ref.stride()
    scale = ref.abs().max()
    assert (out - ref).abs().max() <= tol * scale
    for name, a, b in zip(["x", "w0", "b0", "w1", "b1", "wf", "bf"], ref_grads, got):
        assert (a - b).abs().max() <= tol * max(a.abs().max(), 1.0), name


@native
@pytest.mark.parametrize("temporal", ["shared", "mean"])
@pytest.mark.parametrize("layout", ["rows", "channels_last"])
def test_native_max_ties_go_to_the_first_position(temporal, layout):
    """Rows with repeated maxima (plateaus from a clamp, a constant frame): the max's gradient lands on the
    first position, where the eager Function puts it, in both layouts' pool passes."""
    m = _module(16, temporal, torch.float64)
    frames = torch.randn(2 * 3, 16, 5, 7, dtype=torch.float64).clamp(max=0.5)
    frames[0, 3] = 0.25
    if layout == "channels_last":
        frames = frames.contiguous(memory_format=torch.channels_last)
    x = unfold_frames(frames, 2).requires_grad_()
    grad = torch.randn_like(x)
    _, ref = _grads(lambda v: CGDFunction.apply(v, m, *m._params()), x, m, grad)
    _, got = _grads(lambda v: cgd_native.cgd_v10(v, m._params(), temporal == "mean"), x, m, grad)
    assert (ref[0] - got[0]).abs().max() <= 1e-12 * ref[0].abs().max()


@native
@pytest.mark.parametrize("temporal", ["shared", "mean"])
def test_native_gradcheck_float64(temporal):
    m = _module(4, temporal, torch.float64)
    x = _clip(2, 4, 2, 3, 3, torch.float64, channels_last=False)
    params = [p.detach().clone().requires_grad_() for p in m._params()]
    ext = cgd_native.load()
    assert torch.autograd.gradcheck(lambda v, *ps: ext.cgd_v10(v, *ps, temporal == "mean"), (x, *params))


@native
def test_which_modules_take_the_native_op(monkeypatch):
    monkeypatch.setenv("CGD_VIDEO_NATIVE", "1")
    x = _clip(1, 8, 2, 4, 4, torch.float32, channels_last=False)
    for temporal in ("shared", "mean"):
        assert "CGDv10" in _module(8, temporal)(x).grad_fn.name()
    for variant, temporal in (("v10", "concat"), ("v10", "frame"), ("v3", "shared")):
        m = CGD(8, variant, temporal, num_frames=2)
        assert m(x).grad_fn.name() == "CGDFunctionBackward", (variant, temporal)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not cgd_native.applies(x, _module(8, "shared")._params())
    with torch.no_grad():  # eval/inference: the plain ops (and BN folding), no autograd node
        assert _module(8, "shared")(x).grad_fn is None


def test_without_the_op_cgd_takes_the_eager_function(monkeypatch, caplog):
    """A machine without a compiler (the build fails) or ``CGD_VIDEO_NATIVE=0``: one warning, eager path."""
    import torch.utils.cpp_extension as cpp

    def fail(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setenv("CGD_VIDEO_NATIVE", "1")
    monkeypatch.setattr(cgd_native, "_STATE", {})
    monkeypatch.setattr(cpp, "load", fail)
    with caplog.at_level(logging.WARNING, logger="cgd_video.models.cgd_native"):
        assert cgd_native.load() is None and cgd_native.load() is None
    assert sum("could not be built" in r.getMessage() for r in caplog.records) == 1
    x = _clip(1, 8, 2, 4, 4, torch.float32, channels_last=False)
    assert _module(8, "shared")(x).grad_fn.name() == "CGDFunctionBackward"
    monkeypatch.setattr(cgd_native, "_STATE", {})
    monkeypatch.setenv("CGD_VIDEO_NATIVE", "0")  # switched off: built or not, the module takes the Function
    assert not cgd_native.enabled() and _module(8, "shared")(x).grad_fn.name() == "CGDFunctionBackward"


@native
def test_native_parameters_only_when_x_needs_no_gradient():
    """X from a frozen stem: the parameters' gradients as with X, and no gradient of X is made."""
    m = _module(8, "shared")
    x = _clip(2, 8, 3, 4, 4, torch.float32, channels_last=False).detach()
    grad = torch.randn_like(x)
    ref = torch.autograd.grad(CGDFunction.apply(x, m, *m._params()), m._params(), grad)
    out = cgd_native.cgd_v10(x, m._params(), False)
    got = torch.autograd.grad(out, m._params(), grad)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-6)


@native
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)], ids=["f64", "f32"])
@pytest.mark.parametrize("temporal", ["shared", "mean"])
@pytest.mark.parametrize("layout", ["rows", "channels_last"])
def test_native_scale_equals_the_eager_scale(monkeypatch, dtype, tol, temporal, layout):
    """Evaluation (no autograd): ``scale`` takes the op's ``cgd_v10_scale`` and gives the eager descriptor's s."""
    monkeypatch.setenv("CGD_VIDEO_NATIVE", "1")
    m = _module(13, temporal, dtype)
    x = _clip(2, 13, 3, 5, 7, dtype, channels_last=layout == "channels_last").detach()
    eager = m._scale_rows(m.descriptor(x), x.shape, x.dtype)[..., None, None]
    with torch.no_grad():
        got = m.scale(x)
        out = m(x)
    assert got.shape == eager.shape == (2, 13, 1, 1, 1) and got.dtype == dtype
    torch.testing.assert_close(got, eager, rtol=tol, atol=tol)
    torch.testing.assert_close(out, x * eager, rtol=tol, atol=tol)
    monkeypatch.setenv("CGD_VIDEO_NATIVE", "0")
    with torch.no_grad():
        assert torch.equal(m.scale(x), eager)  # switched off: the eager ops, bit for bit


@native
def test_scale_keeps_autograd_when_a_gradient_is_needed(monkeypatch):
    """With autograd recording (x or the parameters need a gradient), ``scale`` stays differentiable."""
    monkeypatch.setenv("CGD_VIDEO_NATIVE", "1")
    m = _module(8, "shared")
    x = _clip(1, 8, 2, 4, 4, torch.float32, channels_last=False)
    s = m.scale(x)
    assert s.grad_fn is not None
    (g,) = torch.autograd.grad(s.sum(), [m.stages[0].weight])
    assert torch.isfinite(g).all() and g.abs().sum() > 0


@native
@pytest.mark.parametrize("temporal", ["shared", "mean"])
def test_eval_model_with_the_native_scale_matches_the_eager_one(monkeypatch, temporal):
    """C2D-R18 + CGD in eval mode (CGD folded into the next BN): logits with the op's scale equal the eager
    path's to float32 rounding."""
    from cgd_video.models import create_model

    torch.manual_seed(1)
    model = create_model("c2d_r18_cgd", num_classes=5, attention_kwargs={"temporal": temporal}).eval()
    clip = torch.randn(2, 3, 8, 32, 32)
    calls = []
    scale = cgd_native.cgd_v10_scale
    monkeypatch.setattr(cgd_native, "cgd_v10_scale", lambda *a: calls.append(1) or scale(*a))
    with torch.no_grad():
        monkeypatch.setenv("CGD_VIDEO_NATIVE", "0")
        eager = model(clip)
        assert not calls
        monkeypatch.setenv("CGD_VIDEO_NATIVE", "1")
        got = model(clip)
    assert len(calls) == sum(isinstance(m, CGD) for m in model.modules()) > 0
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-5)


def test_every_checkout_compiles_the_same_source_path(monkeypatch, tmp_path):
    """The op compiles from a copy named by the source's content, so two checkouts of one source give
    torch's ninja build the same command (and share one build); an edited source gets its own path."""
    cache = tmp_path / "extensions"
    first = cgd_native.build_source(cache)
    assert first.read_bytes() == cgd_native.SOURCE.read_bytes() and first.is_relative_to(cache)
    other_checkout = tmp_path / "clone" / "csrc" / "cgd_cpu.cpp"
    other_checkout.parent.mkdir(parents=True)
    other_checkout.write_bytes(cgd_native.SOURCE.read_bytes())
    monkeypatch.setattr(cgd_native, "SOURCE", other_checkout)
    assert cgd_native.build_source(cache) == first
    other_checkout.write_bytes(other_checkout.read_bytes() + b"\n// edited\n")
    edited = cgd_native.build_source(cache)
    assert edited != first and edited.read_bytes().endswith(b"// edited\n") and first.is_file()
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "env"))  # torch's own setting is the default
    assert cgd_native.build_source().is_relative_to(tmp_path / "env")
