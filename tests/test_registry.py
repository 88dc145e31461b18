"""Registry-driven: every named model builds and runs; names, overrides and errors behave (timm style)."""

from __future__ import annotations

import pytest
import torch

from cgd_video.models import C2DResNet, create_model, list_models
from cgd_video.models.registry import register_model

NUM_FRAMES = 8  # nonlocal32 layout: res2 sees 2 frames, res3..res5 one (CGD concat must be told)


@pytest.mark.parametrize("name", list_models())
def test_every_preset_builds_and_runs(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, num_frames=NUM_FRAMES, input_size=32)  # spatial CGD: built for 32
    assert isinstance(model, C2DResNet) and model.fc.out_features == 3
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, NUM_FRAMES, 32, 32))
    assert out.shape == (1, 3) and torch.isfinite(out).all()


def test_expected_presets_are_registered():
    expected = {"c2d_r18", "c2d_r18_cgd", "c2d_r50", "c2d_r50_cgd", "c2d_r50_cgd_conv2", "c2d_r50_nl",
                "c2d_r50_nl5", "c2d_r50_cgnl", "c2d_r101"}
    assert expected <= set(list_models())
    assert list_models("*cgnl*") == ["c2d_r50_cgnl", "c2d_r50_cgnl_g1"]


def test_presets_set_what_their_names_say():
    assert create_model("c2d_r50_cgd_conv2", num_frames=8).layer1[0].attn_index == 2
    assert create_model("c2d_r50_cgnl", num_frames=8).layer3[4].nl.groups == 8
    assert create_model("c2d_r50_cgnl_g1", num_frames=8).layer3[4].nl.groups == 1


def test_cgd_parameter_counts_match_protocol():
    """v10 adds 6·ΣC = 22,656 (the paper's +0.02M); concat at 32 frames 6·ΣC·T = 95,232 (PROTOCOL §1, §3)."""
    def count(m):
        return sum(p.numel() for n, p in m.named_parameters() if ".attn." in n)

    assert count(create_model("c2d_r50_cgd", num_frames=32)) == 22_656
    assert count(create_model("c2d_r50_cgd_concat", num_frames=32)) == 95_232


def test_overrides_reach_the_model_and_merge_attention_kwargs():
    model = create_model("c2d_r50_cgd_concat", num_classes=11, num_frames=16, layout="pytorchvideo8",
                         dropout=0.0, attention_kwargs={"variant": "v1"})
    attn = model.layer1[0].attn
    assert model.fc.out_features == 11 and model.layout.conv1_temporal_stride == 1
    assert attn.temporal == "concat" and attn.variant == "v1" and attn.num_frames == 16
    assert model.layer2[0].attn.num_frames == 8


def test_unknown_model_lists_names():
    with pytest.raises(ValueError) as err:
        create_model("c2d_r51")
    assert "c2d_r50" in str(err.value) and "c2d_r50_cgd" in str(err.value)


def test_registering_a_name_twice_raises():
    def c2d_r50(**kwargs):  # same name as the preset
        raise AssertionError("must not be called")

    with pytest.raises(ValueError, match="already registered"):
        register_model(c2d_r50)
    assert create_model("c2d_r50", num_frames=8).fc.out_features == 400
