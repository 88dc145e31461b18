"""CGD (Eq. 10-12, Table 2) against an independent float64 reference that builds g f^T explicitly."""
from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from cgd_video.models.attention import create_attention
from cgd_video.models.cgd import CGD
from cgd_video.models.cgd_kernels import CGDFunction

ALL_VARIANTS = [f"v{i}" for i in range(1, 11)]
ALL_TEMPORAL = ["concat", "shared", "mean", "frame"]

# Table 2 written out again for the reference: (g, f) per single stage; cascades name two stages.
REF_SINGLE = {
    "v1": ("avg", "avg"),
    "v2": ("avg", "softmax_avg"),
    "v3": ("softmax_avg", "avg"),
    "v4": ("avg", "max"),
    "v5": ("max", "avg"),
    "v6": ("softmax_avg", "max"),
    "v7": ("softmax_max", "avg"),
}
REF_CASCADE = {"v8": ("v3", "v7"), "v9": ("v1", "v7"), "v10": ("v3", "v6")}


def _ref_softmax(v: torch.Tensor) -> torch.Tensor:
    e = torch.exp(v - v.max())
    return e / e.sum()


def _ref_units(xn: torch.Tensor, temporal: str) -> list[dict[str, torch.Tensor]]:
    """Pooled descriptors of one sample xn (C, T, H, W): one dict per frame, or a single one."""
    c, t = xn.shape[:2]
    if temporal == "concat":
        avg = torch.empty(c * t, dtype=xn.dtype)
        mx = torch.empty(c * t, dtype=xn.dtype)
        for ti in range(t):
            for ci in range(c):
                avg[ti * c + ci] = xn[ci, ti].mean()
                mx[ti * c + ci] = xn[ci, ti].max()
        raw = [(avg, mx)]
    elif temporal == "mean":
        xm = xn.mean(1)
        raw = [(torch.stack([xm[ci].mean() for ci in range(c)]), torch.stack([xm[ci].max() for ci in range(c)]))]
    else:
        raw = [(xn[:, ti].mean((1, 2)), xn[:, ti].amax((1, 2))) for ti in range(t)]
    return [
        {"avg": a, "max": m, "softmax_avg": _ref_softmax(a), "softmax_max": _ref_softmax(m)} for a, m in raw
    ]


def _ref_z(g: torch.Tensor, f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.outer(g, f) @ w  # the D x D matrix g f^T of Eq. 10, then times w


def _ref_first_level(units, spec, w, b, temporal):
    """List of stage outputs per unit (shared: one, summed over frames before tanh, Eq. 12)."""
    g_key, f_key = spec
    zs = [_ref_z(u[g_key], u[f_key], w) for u in units]
    if temporal == "shared":
        return [torch.tanh(sum(zs) + b)]
    return [torch.tanh(z + b) for z in zs]


def reference_scale(x: torch.Tensor, variant: str, temporal: str, ws, bs) -> torch.Tensor:
    """1 + y as (N, C, T) for x (N, C, T, H, W) in float64."""
    n, c, t = x.shape[:3]
    out = torch.empty(n, c, t, dtype=x.dtype)
    for ni in range(n):
        units = _ref_units(x[ni], temporal)
        if variant in REF_SINGLE:
            ys = _ref_first_level(units, REF_SINGLE[variant], ws[0], bs[0], temporal)
        else:
            first, second = REF_CASCADE[variant]
            psis = _ref_first_level(units, REF_SINGLE[first], ws[0], bs[0], temporal)
            phis = _ref_first_level(units, REF_SINGLE[second], ws[1], bs[1], temporal)
            ys = [torch.tanh(_ref_z(p, q, ws[2]) + bs[2]) for p, q in zip(psis, phis)]
        for ti in range(t):
            for ci in range(c):
                if temporal == "concat":
                    out[ni, ci, ti] = 1 + ys[0][ti * c + ci]
                elif temporal == "frame":
                    out[ni, ci, ti] = 1 + ys[ti][ci]
                else:
                    out[ni, ci, ti] = 1 + ys[0][ci]
    return out


def _randomised(module: CGD, seed: int = 0) -> CGD:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.7)
    return module


@pytest.mark.parametrize("temporal", ALL_TEMPORAL)
@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_matches_outer_product_reference(variant, temporal):
    torch.manual_seed(1)
    c, t = 5, 3
    x = torch.randn(2, c, t, 4, 3, dtype=torch.float64)
    m = _randomised(CGD(c, variant=variant, temporal=temporal, num_frames=t)).double()
    ws = [s.weight.detach() for s in m.stages]
    bs = [s.bias.detach() for s in m.stages]
    expected_scale = reference_scale(x, variant, temporal, ws, bs)
    got_scale = m.scale(x)
    t_out = t if temporal in ("concat", "frame") else 1
    assert got_scale.shape == (2, c, t_out, 1, 1)
    assert got_scale.dtype == torch.float64
    torch.testing.assert_close(got_scale.expand(2, c, t, 1, 1)[..., 0, 0], expected_scale, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m(x), x * expected_scale[..., None, None], rtol=1e-12, atol=1e-12)
    # float32 path agrees too
    m32 = m.float()
    torch.testing.assert_close(m32(x.float()).double(), x * expected_scale[..., None, None], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temporal", ALL_TEMPORAL)
@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_parameters_two_d_per_stage(variant, temporal):
    c, t = 6, 4
    m = CGD(c, variant=variant, temporal=temporal, num_frames=t)
    d = c * t if temporal == "concat" else c
    assert isinstance(m.stages, torch.nn.ModuleList)
    assert len(m.stages) == (3 if variant in REF_CASCADE else 1)
    for stage in m.stages:
        assert stage.weight.shape == (d,) and stage.bias.shape == (d,)
    assert sum(p.numel() for p in m.parameters()) == 2 * d * len(m.stages)


@pytest.mark.parametrize("temporal", ALL_TEMPORAL)
@pytest.mark.parametrize("variant", ["v1", "v7", "v10"])
def test_zero_init_is_identity(variant, temporal):
    x = torch.randn(2, 4, 3, 5, 5)
    m = CGD(4, variant=variant, temporal=temporal, num_frames=3, init="zeros")
    assert torch.equal(m(x), x)
    assert torch.equal(m.scale(x), torch.ones_like(m.scale(x)))


def test_xavier_init_range():
    d = 512
    m = CGD(d, variant="v10", init="xavier")
    bound = math.sqrt(6.0 / (d + 1))
    for stage in m.stages:
        w = stage.weight.detach()
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.5 * bound  # spread over the whole interval, not a narrower law
        assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.15)
        assert torch.equal(stage.bias.detach(), torch.zeros(d))
    # the three stages are drawn independently
    assert not torch.equal(m.stages[0].weight, m.stages[1].weight)


@pytest.mark.parametrize(
    "variant,temporal",
    [("v10", "concat"), ("v10", "shared"), ("v10", "mean"), ("v10", "frame"), ("v8", "shared"), ("v6", "concat"),
     ("v1", "shared"), ("v2", "frame"), ("v3", "mean"), ("v4", "concat"), ("v5", "mean"), ("v7", "frame"),
     ("v9", "concat")],
)
def test_gradcheck(variant, temporal):
    torch.manual_seed(3)
    m = _randomised(CGD(3, variant=variant, temporal=temporal, num_frames=2), seed=5).double()
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(2, 3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in m.parameters()]

    def fn(inp, *ps):
        return functional_call(m, dict(zip(names, ps)), (inp,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5)


def test_concat_frame_mismatch_names_both():
    m = CGD(4, temporal="concat", num_frames=4)
    with pytest.raises(ValueError, match=r"expected T=4.*received T=3"):
        m(torch.randn(1, 4, 3, 2, 2))


def test_concat_needs_num_frames():
    with pytest.raises(ValueError, match="num_frames"):
        CGD(4, temporal="concat")


def test_wrong_channels():
    with pytest.raises(ValueError, match=r"CGD\(4\)"):
        CGD(4)(torch.randn(1, 5, 2, 2, 2))


@pytest.mark.parametrize(
    "kwargs,valid",
    [
        ({"variant": "v11"}, ALL_VARIANTS),
        ({"temporal": "sum"}, ALL_TEMPORAL),
        ({"init": "kaiming"}, ["xavier", "zeros"]),
    ],
)
def test_unknown_choice_lists_valid(kwargs, valid):
    with pytest.raises(ValueError) as err:
        CGD(4, num_frames=2, **kwargs)
    bad = next(iter(kwargs.values()))
    assert repr(bad) in str(err.value)
    for name in valid:
        assert name in str(err.value)


def test_attention_factory():
    assert create_attention("none", 64) is None
    m = create_attention("cgd", 64, variant="v3", temporal="concat", num_frames=2, init="zeros")
    assert isinstance(m, CGD) and m.variant == "v3" and m.dim == 128
    with pytest.raises(ValueError) as err:
        create_attention("se", 64)
    assert "'se'" in str(err.value) and "cgd" in str(err.value) and "none" in str(err.value)


def test_resnet50_parameter_sums():
    """v10 over the 16 ResNet-50 bottleneck conv1 widths: the paper's +0.02M (shared) and concat."""
    blocks = [(64, 8)] * 3 + [(128, 4)] * 4 + [(256, 4)] * 6 + [(512, 4)] * 3  # (C, T in the 32-frame layout)

    def total(temporal):
        mods = [create_attention("cgd", c, variant="v10", temporal=temporal, num_frames=t) for c, t in blocks]
        return sum(p.numel() for m in mods for p in m.parameters())

    assert total("shared") == 22_656
    assert total("mean") == 22_656
    assert total("concat") == 95_232


def test_no_outer_product_memory():
    """D = 2048*32 = 65536: a D x D float32 outer product would need 16 GiB; O(D) work is instant."""
    m = _randomised(CGD(2048, variant="v10", temporal="concat", num_frames=32))
    x = torch.randn(1, 2048, 32, 1, 2)
    assert m(x).shape == x.shape


@pytest.mark.parametrize("temporal", ALL_TEMPORAL)
def test_channels_last_3d(temporal):
    m = _randomised(CGD(8, temporal=temporal, num_frames=3))
    x = torch.randn(2, 8, 3, 5, 4)
    xc = x.contiguous(memory_format=torch.channels_last_3d)
    out = m(xc)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, m(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_descriptor_in_float32(dtype):
    m = _randomised(CGD(8, variant="v10", temporal="shared"))
    x = torch.randn(2, 8, 3, 5, 4).to(dtype)
    assert m.descriptor(x).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = m.scale(x)
        out = m(x)
    assert s.dtype == dtype and out.dtype == dtype
    ref = m.scale(x.float())  # same (rounded) input, float32 throughout
    torch.testing.assert_close(s.float(), ref, rtol=0, atol=1e-2)


def test_half_module_weights():
    """model.half() / .bfloat16(): weights low precision, descriptor still computed in float32."""
    m = _randomised(CGD(8, variant="v10", temporal="frame")).bfloat16()
    x = torch.randn(2, 8, 3, 5, 4).bfloat16()
    out = m(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_trace_matches_eager():
    m = _randomised(CGD(8, variant="v10", temporal="shared")).eval()
    x = torch.randn(2, 8, 3, 5, 4)
    traced = torch.jit.trace(m, x)
    x2 = torch.randn(3, 8, 2, 6, 6)
    torch.testing.assert_close(traced(x2), m(x2))


# ---- Fig. 4(b)(c): height-/width-wise forms --------------------------------------------------------


def _ref_spatial_scale(x: torch.Tensor, axis: str, variant: str, temporal: str, ws, bs) -> torch.Tensor:
    """1 + y broadcast to x's shape; entries are rows (height) or columns (width), pooled over (C, other)."""
    n, c, t, h, w = x.shape
    size = h if axis == "height" else w
    out = torch.empty_like(x)
    for ni in range(n):
        def line(ti, i):
            return x[ni, :, ti, i, :] if axis == "height" else x[ni, :, ti, :, i]

        if temporal == "concat":  # one descriptor of size*T entries, index t*size + i
            avg = torch.tensor([line(ti, i).mean() for ti in range(t) for i in range(size)], dtype=x.dtype)
            mx = torch.tensor([line(ti, i).max() for ti in range(t) for i in range(size)], dtype=x.dtype)
            units = [(avg, mx)]
        else:  # shared: one descriptor of size entries per frame, terms summed before tanh
            units = [
                (torch.stack([line(ti, i).mean() for i in range(size)]), torch.stack([line(ti, i).max() for i in range(size)]))
                for ti in range(t)
            ]
        pools = [{"avg": a, "max": m, "softmax_avg": _ref_softmax(a), "softmax_max": _ref_softmax(m)} for a, m in units]
        if variant in REF_SINGLE:
            y = _ref_first_level(pools, REF_SINGLE[variant], ws[0], bs[0], temporal)[0]
        else:
            first, second = REF_CASCADE[variant]
            psi = _ref_first_level(pools, REF_SINGLE[first], ws[0], bs[0], temporal)[0]
            phi = _ref_first_level(pools, REF_SINGLE[second], ws[1], bs[1], temporal)[0]
            y = torch.tanh(_ref_z(psi, phi, ws[2]) + bs[2])
        for ti in range(t):
            for i in range(size):
                v = 1 + (y[ti * size + i] if temporal == "concat" else y[i])
                if axis == "height":
                    out[ni, :, ti, i, :] = v
                else:
                    out[ni, :, ti, :, i] = v
    return out


@pytest.mark.parametrize("temporal", ["concat", "shared"])
@pytest.mark.parametrize("variant", ["v1", "v6", "v10"])
@pytest.mark.parametrize("axis", ["height", "width"])
def test_spatial_forms_match_reference(axis, variant, temporal):
    torch.manual_seed(2)
    n, c, t, h, w = 2, 3, 2, 4, 5
    size = h if axis == "height" else w
    x = torch.randn(n, c, t, h, w, dtype=torch.float64)
    m = create_attention(f"cgd_{axis}", c, size=size, variant=variant, temporal=temporal, num_frames=t)
    m = _randomised(m).double()
    ws = [s.weight.detach() for s in m.stages]
    bs = [s.bias.detach() for s in m.stages]
    assert all(s.weight.shape == ((size * t,) if temporal == "concat" else (size,)) for s in m.stages)
    expected = _ref_spatial_scale(x, axis, variant, temporal, ws, bs)
    torch.testing.assert_close(m(x), x * expected, rtol=1e-12, atol=1e-12)


def test_spatial_errors():
    from cgd_video.models.cgd_spatial import CGDSpatial

    with pytest.raises(ValueError, match="height.*width"):
        CGDSpatial(4, axis="depth")
    with pytest.raises(ValueError, match="height 4"):
        CGDSpatial(4, axis="height", temporal="shared")(torch.randn(1, 3, 2, 5, 4))


def test_spatial_state_dict_has_each_parameter_once():
    m = create_attention("cgd_height", 8, size=4, variant="v10", temporal="shared")
    assert sorted(m.state_dict()) == sorted(f"cgd.stages.{i}.{p}" for i in range(3) for p in ("weight", "bias"))
    assert sum(p.numel() for p in m.parameters()) == 3 * 2 * 4


@pytest.mark.parametrize("path", ["function", "module"])
@pytest.mark.parametrize("layout", ["contiguous", "frames_nchw", "frames_channels_last"])
@pytest.mark.parametrize("variant,temporal", [("v10", "shared"), ("v10", "concat"), ("v1", "frame"), ("v7", "shared"),
                                              ("v10", "mean"), ("v4", "mean"), ("v8", "frame"), ("v2", "concat")])
def test_fused_backward_matches_autograd(path, layout, variant, temporal):
    """The hand-written backward (descriptor included; one pass for grad_x, max scatter) equals plain autograd of
    x * scale(x), every temporal mode, single stages and cascades: ``CGDFunction`` itself, and the module's own
    training path (the native op of cgd_native.py for v10 shared/mean when on by default, else the Function)."""
    torch.manual_seed(7)
    m = _randomised(CGD(6, variant=variant, temporal=temporal, num_frames=3), seed=2)
    n, t = 2, 3
    frames = torch.randn(n * t, 6, 5, 4)
    if layout == "frames_channels_last":
        frames = frames.contiguous(memory_format=torch.channels_last)
    base = frames.unflatten(0, (n, t)).transpose(1, 2) if layout != "contiguous" else torch.randn(n, 6, t, 5, 4)
    x1 = base.detach().clone().requires_grad_(True) if layout == "contiguous" else base.detach().requires_grad_(True)
    x2 = base.detach().clone().requires_grad_(True)
    gout = torch.randn(n, 6, t, 5, 4)
    out1 = CGDFunction.apply(x1, m, *m._params()) if path == "function" else m(x1)
    assert out1.grad_fn is not None
    assert out1.grad_fn.name() == "CGDFunctionBackward" or "CGDv10" in out1.grad_fn.name()
    g1 = torch.autograd.grad(out1, [x1, *m.parameters()], gout)
    out2 = x2 * m.scale(x2)  # generic autograd graph (mean / amax backward)
    g2 = torch.autograd.grad(out2, [x2, *m.parameters()], gout)
    torch.testing.assert_close(out1, out2, rtol=1e-6, atol=1e-6)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fused_backward_bf16_autocast():
    m = _randomised(CGD(8, variant="v10", temporal="shared"))
    x = torch.randn(2, 8, 3, 5, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x.bfloat16())
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


# ---- channels-innermost layouts (channels_last_3d, clip view of a channels_last frame batch) -----------


def _channels_innermost(x: torch.Tensor, layout: str) -> torch.Tensor:
    """x (N, C, T, H, W) with the same values, channels innermost in memory."""
    if layout == "channels_last_3d":
        return x.contiguous(memory_format=torch.channels_last_3d)
    n, c, t, h, w = x.shape  # clip view of a channels_last (N*T, C, H, W) frame batch, as resnet_c2d
    frames = x.transpose(1, 2).reshape(n * t, c, h, w).contiguous(memory_format=torch.channels_last)
    return frames.unflatten(0, (n, t)).transpose(1, 2)


@pytest.mark.parametrize("layout", ["channels_last_3d", "frames_channels_last"])
def test_channel_rows_view_takes_no_copy(layout):
    from cgd_video.models.cgd_kernels import channel_rows

    x = _channels_innermost(torch.randn(2, 6, 3, 5, 4), layout)
    rows = channel_rows(x)
    assert rows is not None and rows.shape == (2, 3, 20, 6) and rows.data_ptr() == x.data_ptr()
    torch.testing.assert_close(rows.mean(2).transpose(1, 2), x.mean((3, 4)), rtol=1e-6, atol=1e-6)
    assert channel_rows(x.contiguous()) is None  # NCHW keeps the (3, 4) reductions


@pytest.mark.parametrize("layout", ["channels_last_3d", "frames_channels_last"])
@pytest.mark.parametrize("temporal", ALL_TEMPORAL)
@pytest.mark.parametrize("variant", ["v1", "v7", "v10"])
def test_channels_last_matches_float64_reference(variant, temporal, layout):
    torch.manual_seed(4)
    c, t = 5, 3
    x = torch.randn(2, c, t, 4, 3, dtype=torch.float64)
    m = _randomised(CGD(c, variant=variant, temporal=temporal, num_frames=t)).double()
    expected = reference_scale(x, variant, temporal, [s.weight.detach() for s in m.stages],
                               [s.bias.detach() for s in m.stages])
    xc = _channels_innermost(x, layout)
    got = m.scale(xc)
    torch.testing.assert_close(got.expand(2, c, t, 1, 1)[..., 0, 0], expected, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        out = m(xc)
    assert out.stride() == xc.stride()
    torch.testing.assert_close(out, x * expected[..., None, None], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("grad_layout", ["same", "contiguous"])
@pytest.mark.parametrize("layout", ["channels_last_3d", "frames_channels_last"])
@pytest.mark.parametrize("temporal", ALL_TEMPORAL)
@pytest.mark.parametrize("variant", ["v1", "v7", "v10"])
def test_channels_last_output_and_grads_match_contiguous(variant, temporal, layout, grad_layout):
    """Same output (layout preserved) and same gradients for x and w, b as the contiguous input."""
    torch.manual_seed(6)
    m = _randomised(CGD(6, variant=variant, temporal=temporal, num_frames=3), seed=1)
    x = torch.randn(2, 6, 3, 7, 5)
    gout = torch.randn(2, 6, 3, 7, 5)
    xc = _channels_innermost(x, layout).requires_grad_(True)
    x0 = x.clone().requires_grad_(True)
    out_c, out_0 = m(xc), m(x0)
    assert out_c.stride() == xc.stride()  # memory format preserved: no copy in the next conv
    torch.testing.assert_close(out_c, out_0, rtol=1e-6, atol=1e-6)
    g_c = torch.autograd.grad(out_c, [xc, *m.parameters()], gout if grad_layout == "contiguous"
                              else _channels_innermost(gout, layout))
    g_0 = torch.autograd.grad(out_0, [x0, *m.parameters()], gout)
    for a, b in zip(g_c, g_0):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(xc), m(x0), rtol=1e-6, atol=1e-6)


# ---- what the custom backward keeps, ties, saturation ------------------------------------------------


@pytest.mark.parametrize("path", ["function", "module"])
def test_fused_backward_saves_the_output_not_the_input(path):
    """Only the output (which the following BN saves anyway) is kept for the backward, beside (N, C, T)-sized
    pools and scales: no copy of X. ``module``: the native op for v10 shared when it is enabled."""
    m = _randomised(CGD(8, variant="v10", temporal="shared"))
    x = torch.randn(2, 8, 3, 5, 4, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = CGDFunction.apply(x, m, *m._params()) if path == "function" else m(x)
    big = [t for t in saved if t.numel() >= x.numel()]  # the rest: pools, scales, positions (O(N*C*T))
    assert len(big) == 1 and big[0].data_ptr() == out.data_ptr()
    assert all(t.untyped_storage().data_ptr() != x.untyped_storage().data_ptr() for t in saved)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d"])
def test_fused_backward_max_gradient_at_ties(layout):
    """Exact ties of the spatial max: d max goes to the tied positions only and sums to autograd's (which
    splits it evenly; the CPU path gives it to the first, a subgradient of the max too)."""
    m = _randomised(CGD(4, variant="v6", temporal="shared"), seed=3)  # f = max pool
    x = torch.randn(2, 4, 3, 5, 4)
    x[:, :, :, 1, 2] = 9.0
    x[:, :, :, 3, 0] = 9.0  # two maxima per (sample, channel, frame)
    if layout == "channels_last_3d":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    gout = torch.randn(x.shape)
    g1 = torch.autograd.grad(m(x1), [x1, *m.parameters()], gout)
    g2 = torch.autograd.grad(x2 * m.scale(x2), [x2, *m.parameters()], gout)
    for a, b in zip(g1[1:], g2[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    tie = torch.zeros(x.shape, dtype=torch.bool)
    tie[:, :, :, 1, 2] = tie[:, :, :, 3, 0] = True
    torch.testing.assert_close(g1[0][~tie], g2[0][~tie], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close((g1[0] * tie).sum((3, 4)), (g2[0] * tie).sum((3, 4)), rtol=1e-5, atol=1e-6)


def test_triton_path_takes_a_grad_the_kernels_cannot_read(monkeypatch):
    """On the Triton path the forward keeps no max positions (the kernels find them in the backward), so a
    grad_output whose H, W are not one strided dim (the grad of ``out.sum(4)`` or of a transpose) must still go
    to the kernels, as a dense copy, not to the eager fallback. Torch stand-ins for the kernels (same contract,
    see tests/test_cgd_triton.py) let this run without CUDA or the interpreter."""
    from cgd_video.models import cgd_triton

    def readable(*tensors):
        return all(cgd_triton._strides(t) is not None for t in tensors)

    def pool_stats(x, need_max):
        return x.float().mean((3, 4)), (x.float().amax((3, 4)) if need_max else None)

    def backward_rows(grad, out, m_ref):
        assert readable(grad, out)
        cnt = None if m_ref is None else (out == m_ref[..., None, None]).sum((3, 4)).float()
        return (grad.float() * out.float()).sum((3, 4)), cnt

    def backward_apply(grad, out, s, shift, m_ref, d_max):
        assert readable(grad, out)
        gx = grad * s[..., None, None] + shift[..., None, None]
        if m_ref is not None:
            gx = gx + (out == m_ref[..., None, None]) * d_max[..., None, None]
        return gx.to(out.dtype)

    for name, fn in [("available", readable), ("pool_stats", pool_stats), ("backward_rows", backward_rows),
                     ("backward_apply", backward_apply)]:
        monkeypatch.setattr(cgd_triton, name, fn)
    m = _randomised(CGD(4, variant="v10", temporal="shared"), seed=1)  # f = max pool in the second stage
    x = torch.randn(2, 4, 3, 5, 4)
    wt = torch.randn(2, 4, 3, 4, 5)
    for head in (lambda o: (o.sum(4) * torch.arange(5.0)).sum(), lambda o: (o.transpose(3, 4) * wt).sum()):
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        g1 = torch.autograd.grad(head(m(x1)), [x1, *m.parameters()])
        g2 = torch.autograd.grad(head(x2 * m.scale(x2)), [x2, *m.parameters()])
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_saturated_scale_stays_positive_and_gradients_finite():
    """tanh at -1 (z << 0) would make s = 0 and lose X; s is kept >= 2^-24 and the backward is finite."""
    m = CGD(4, variant="v10", temporal="shared")
    with torch.no_grad():
        m.stages[-1].bias.fill_(-40.0)
    x = torch.randn(2, 4, 3, 5, 4, requires_grad=True)
    out = m(x)
    assert (m.scale(x) > 0).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_no_pass_over_x_when_x_needs_no_gradient(monkeypatch):
    """Only the parameters need gradients (X from a frozen stem): their gradients equal autograd's and the
    backward writes no gradient of X (the one full-size pass it would otherwise make)."""
    from cgd_video.models import cgd_kernels

    m = _randomised(CGD(6, variant="v10", temporal="shared"), seed=4)
    x = torch.randn(2, 6, 3, 5, 4)
    gout = torch.randn(2, 6, 3, 5, 4)
    expected = torch.autograd.grad(x * m.scale(x), list(m.parameters()), gout)
    calls = []
    monkeypatch.setattr(cgd_kernels, "_affine", lambda *a: calls.append(a))
    out = CGDFunction.apply(x, m, *m._params())  # (the native op: tests/test_cgd_native.py)
    got = torch.autograd.grad(out, list(m.parameters()), gout)
    assert calls == []
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

