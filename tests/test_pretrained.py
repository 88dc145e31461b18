"""load_imagenet_weights: local torchvision files only, fc skipped on another class count, clear errors."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision

from cgd_video.models import create_model, load_imagenet_weights


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    return path, tv.state_dict()


def test_loads_backbone_skips_fc_and_reports_added_modules(resnet18_file, caplog):
    path, ref = resnet18_file
    model = create_model("c2d_r18_cgd", num_classes=7, num_frames=8)
    with caplog.at_level(logging.INFO, logger="cgd_video.models.pretrained"):
        missing, unexpected = load_imagenet_weights(model, path)
    assert unexpected == []
    assert {k for k in missing if ".attn." not in k} == {"fc.weight", "fc.bias"}
    assert any(".attn." in k for k in missing)
    own = model.state_dict()
    for key in ("conv1.weight", "layer3.1.bn2.running_var", "layer4.0.downsample.0.weight"):
        assert torch.equal(own[key], ref[key])
    assert model.fc.weight.shape == (7, 512)
    assert "skipping fc.weight" in caplog.text


def test_same_class_count_loads_fc(resnet18_file):
    path, ref = resnet18_file
    model = create_model("c2d_r18", num_classes=1000, num_frames=8)
    assert load_imagenet_weights(model, path) == ([], [])
    assert torch.equal(model.fc.weight, ref["fc.weight"])


def test_accepts_wrapped_checkpoints(resnet18_file, tmp_path):
    path, ref = resnet18_file
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in ref.items()}}, wrapped)
    model = create_model("c2d_r18", num_classes=1000, num_frames=8)
    assert load_imagenet_weights(model, wrapped) == ([], [])


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope" / "resnet50.pth"
    with pytest.raises(FileNotFoundError, match="nope/resnet50.pth"):
        load_imagenet_weights(create_model("c2d_r18", num_frames=8), path)


def test_wrong_depth_raises(resnet18_file):
    path, _ = resnet18_file
    with pytest.raises(ValueError, match="resnet18.pth.*wrong depth"):
        load_imagenet_weights(create_model("c2d_r50", num_frames=8), path)


def test_missing_backbone_keys_are_warned(resnet18_file, caplog):
    path, _ = resnet18_file  # r34 shares every r18 shape; its extra blocks stay at init
    with caplog.at_level(logging.WARNING, logger="cgd_video.models.pretrained"):
        missing, _ = load_imagenet_weights(create_model("c2d_r34", num_frames=8), path)
    assert "layer1.2.conv1.weight" in missing and "missing keys" in caplog.text


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "junk.pth"
    torch.save({"epoch": 3}, path)
    with pytest.raises(ValueError, match="junk.pth: not a state_dict"):
        load_imagenet_weights(create_model("c2d_r18", num_frames=8), path)
