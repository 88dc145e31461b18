"""Spatial CGD forms (Fig. 4b/c and the authors' released spatial layer) as first-class backbone options.

Oracles: a float64 loop reference of the authors' ``SpatialAttentionLayer`` (explicit D x D outer
products, last stage without tanh, axes combined as tanh(outer(h, w))); torch.autograd.gradcheck;
the unfolded eval model (X * s, then BN) for the folded one; the feature sizes that actually reach
every attention module (forward pre-hooks) for the sizes derived from the layout.
"""

from __future__ import annotations

import pytest
import torch

from _model_helpers import perturb_norms
from cgd_video.models import create_model
from cgd_video.models.attention import create_attention
from cgd_video.models.cgd_spatial import CGDSpatial, CGDSpatialOuter
from cgd_video.models.layouts import LAYOUTS, stage_spatial_sizes

SPATIAL = ["cgd_height", "cgd_width", "cgd_hw"]


def _randomise(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.7)
    return m


def _ref_axis(avg: torch.Tensor, mx: torch.Tensor, w: list, b: list) -> torch.Tensor:
    """Authors' per-axis descriptor with D x D matrices: psi, phi with tanh, last stage linear."""
    s = torch.softmax(avg, 0)
    psi = torch.tanh(torch.outer(s, avg) @ w[0] + b[0])
    phi = torch.tanh(torch.outer(s, mx) @ w[1] + b[1])
    return torch.outer(psi, phi) @ w[2] + b[2]


def test_outer_form_matches_authors_layer_reference():
    torch.manual_seed(1)
    n, c, t, h, w = 2, 3, 2, 4, 5
    m = _randomise(CGDSpatialOuter(h, w)).double()
    x = torch.randn(n, c, t, h, w, dtype=torch.float64)
    hw = [s.weight.detach() for s in m.height_stages], [s.bias.detach() for s in m.height_stages]
    ww = [s.weight.detach() for s in m.width_stages], [s.bias.detach() for s in m.width_stages]
    expected = torch.empty_like(x)
    for ni in range(n):
        for ti in range(t):
            frame = x[ni, :, ti]  # (C, H, W), as the authors' 2-D layer sees an image
            mean_c, max_c = frame.mean(0), frame.amax(0)
            y_h = _ref_axis(mean_c.mean(1), max_c.amax(1), *hw)
            y_w = _ref_axis(mean_c.mean(0), max_c.amax(0), *ww)
            expected[ni, :, ti] = frame * (1 + torch.tanh(torch.outer(y_h, y_w)))
    torch.testing.assert_close(m(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("temporal", ["mean", "frame"])
@pytest.mark.parametrize("axis", ["height", "width"])
def test_spatial_mean_and_frame_modes_match_reference(axis, temporal):
    """Fig. 4(b)/(c) v10 with the final tanh, per frame (frame) or on the temporal mean (mean), in float64."""
    torch.manual_seed(3)
    n, c, t, h, w = 2, 3, 3, 4, 5
    m = _randomise(CGDSpatial(h if axis == "height" else w, axis=axis, temporal=temporal)).double()
    ws, bs = [s.weight.detach() for s in m.stages], [s.bias.detach() for s in m.stages]
    x = torch.randn(n, c, t, h, w, dtype=torch.float64)
    expected = torch.empty_like(x)
    for ni in range(n):
        for ti in range(t):
            frame = x[ni].mean(1) if temporal == "mean" else x[ni, :, ti]  # (C, H, W)
            lines = frame.permute(1, 0, 2) if axis == "height" else frame.permute(2, 0, 1)  # (size, C, other)
            y = torch.tanh(_ref_axis(lines.mean((1, 2)), lines.amax((1, 2)), ws, bs))
            scale = (1 + y)[:, None] if axis == "height" else (1 + y)[None, :]
            expected[ni, :, ti] = x[ni, :, ti] * scale
    torch.testing.assert_close(m(x), expected, rtol=1e-12, atol=1e-12)


def test_outer_form_zero_init_is_identity_and_rejects_other_variants():
    x = torch.randn(1, 2, 2, 3, 4)
    torch.testing.assert_close(CGDSpatialOuter(3, 4, init="zeros")(x), x)
    with pytest.raises(ValueError, match="v10.*frame"):
        create_attention("cgd_hw", 8, height=3, width=4, temporal="shared")
    with pytest.raises(ValueError, match="height= and width="):
        create_attention("cgd_hw", 8, height=3)


@pytest.mark.parametrize("axis, temporal", [("height", "concat"), ("height", "shared"), ("height", "mean"),
                                           ("height", "frame"), ("width", "concat")])
def test_spatial_gradcheck(axis, temporal):
    torch.manual_seed(0)
    m = _randomise(CGDSpatial(3, axis=axis, variant="v10", temporal=temporal, num_frames=2)).double()
    shape = (2, 2, 2, 3, 3)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, *p: m(v), (x, *m.parameters()), eps=1e-6, atol=1e-5)


def test_outer_gradcheck():
    torch.manual_seed(0)
    m = _randomise(CGDSpatialOuter(3, 4)).double()
    x = torch.randn(2, 2, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, *p: m(v), (x, *m.parameters()), eps=1e-6, atol=1e-5)


def _model(attention: str, depth: int, position: str, layout: str, frames: int, size: int):
    temporal = "frame" if attention == "cgd_hw" else "concat"
    return create_model(f"c2d_r{depth}", num_classes=4, attention=attention, attention_position=position,
                        layout=layout, num_frames=frames, input_size=size, width=8,
                        attention_kwargs={"temporal": temporal})


@pytest.mark.parametrize("position", ["conv1", "conv2"])
@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("attention", SPATIAL)
def test_eval_folding_parity_in_the_backbone(attention, depth, position):
    """Folded eval (BN(X*s) in one pass, or declined for cgd_hw) equals X*s then BN, in float64."""
    torch.manual_seed(0)
    model = _model(attention, depth, position, "nonlocal32", 8, 48).double()
    _randomise_attention(model)
    perturb_norms(model)
    model.eval()
    x = torch.randn(2, 3, 8, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        folded = model(x)
        model.set_attention_folding(False)
        plain = model(x)
    torch.testing.assert_close(folded, plain, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(plain, _without_attention(model)(x))  # the attention is really there


def _randomise_attention(model: torch.nn.Module) -> None:
    for name, m in model.named_modules():
        if name.endswith(".attn"):
            _randomise(m, seed=len(name))


def _without_attention(model: torch.nn.Module):
    def run(x):
        blocks = [b for b in model.modules() if hasattr(b, "attn")]
        attns = [b.attn for b in blocks]
        try:
            for b in blocks:
                b.attn = None
            with torch.no_grad():
                return model(x)
        finally:
            for b, a in zip(blocks, attns):
                b.attn = a
    return run


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("attention", SPATIAL)
def test_forward_in_every_layout_with_sizes_from_the_layout(layout, attention):
    """Every attention module is built for exactly the H, W that reaches it; train and eval run."""
    size, frames = 64, 8
    model = _model(attention, 18, "conv1", layout, frames, size)
    seen = {}

    def record(name, built):
        def hook(module, inputs):
            seen.setdefault(name, (built, tuple(inputs[0].shape[3:])))
        return hook

    for name, m in model.named_modules():
        if name.endswith(".attn"):
            m.register_forward_pre_hook(record(name, (m.height, m.width) if isinstance(m, CGDSpatialOuter) else m.size))
    model.train()
    out = model(torch.randn(2, 3, frames, size, size))
    out.sum().backward()
    assert out.shape == (2, 4) and len(seen) == 8  # R18: 8 blocks, attention in each
    for name, (built, (h, w)) in seen.items():
        expected = (h, w) if attention == "cgd_hw" else (h if attention == "cgd_height" else w)
        assert built == expected, name
    sizes = stage_spatial_sizes(layout, size)
    assert seen["layer2.1.attn"][1] == (sizes["res3"][1],) * 2  # BasicBlock: attention after the strided conv1
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, frames, size, size))).all()


def test_bottleneck_first_block_sees_the_stage_input_size_after_conv1():
    model = _model("cgd_height", 50, "conv1", "nonlocal32", 8, 64)
    assert [model.layer2[0].attn.size, model.layer2[1].attn.size] == [16, 8]
    model = _model("cgd_height", 50, "conv2", "nonlocal32", 8, 64)
    assert [model.layer2[0].attn.size, model.layer2[1].attn.size] == [8, 8]


def test_other_crop_size_is_a_clear_error():
    model = _model("cgd_width", 18, "conv1", "nonlocal32", 8, 64).eval()
    with pytest.raises(ValueError, match="crop size it was built for"):
        model(torch.randn(1, 3, 8, 96, 96))


def test_spatial_presets():
    for name, cls in (("c2d_r50_cgd_height", CGDSpatial), ("c2d_r50_cgd_width", CGDSpatial),
                      ("c2d_r50_cgd_hw", CGDSpatialOuter)):
        model = create_model(name, num_frames=8, input_size=64)
        assert isinstance(model.layer1[0].attn, cls)
    assert create_model("c2d_r50_cgd_height", num_frames=8).layer4[0].attn.size == 14  # 224 crop: res5 input


def test_configs_table3_row_alias_and_spatial_crops():
    """*_cgd is the Table 3 row (temporal mean), *_cgd_mean its alias; spatial configs test at the training crop."""
    import inspect

    from cgd_video.config import load_config
    from cgd_video.models import C2DResNet

    for ds in ("ucf101", "minikinetics"):
        row = load_config(f"{ds}_cgd")
        assert row.MODEL.CGD_TEMPORAL == "mean" and row == load_config(f"{ds}_cgd_mean")
        assert load_config(f"{ds}_cgd_shared").MODEL.CGD_TEMPORAL == "shared"
        built_for = inspect.signature(C2DResNet).parameters["input_size"].default
        for axis in ("height", "width"):
            cfg = load_config(f"{ds}_cgd_{axis}")
            assert cfg.MODEL.ATTENTION == f"cgd_{axis}"
            assert cfg.DATA.TRAIN_CROP == cfg.DATA.TEST_CROP == built_for
