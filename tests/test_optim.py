"""Parameter groups: CGD weights get their own weight decay, norm/bias decay configurable."""

import pytest
import torch
from torch import nn

from cgd_video.boundary.training import optimizer_kwargs
from cgd_video.config import load_config
from cgd_video.engine.optim import build_optimizer, param_groups, set_lr


class CGDToy(nn.Module):
    """Stand-in with the CGD class name, nested like a real block's ``attn``."""

    def __init__(self, c):
        super().__init__()
        self.w = nn.Parameter(torch.randn(c))
        self.b = nn.Parameter(torch.zeros(c))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 4, 1, bias=False)
        self.attn = CGDToy(4)
        self.bn1 = nn.BatchNorm3d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 5)


def _by_name(groups):
    return {g["name"]: g for g in groups}


def test_groups_and_decays():
    m = Block()
    g = _by_name(param_groups(m, weight_decay=1e-4, cgd_weight_decay=5e-5, norm_weight_decay=0.0, bias_weight_decay=2e-5))
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(g["cgd"]["params"]) == ids([m.attn.w, m.attn.b]) and g["cgd"]["weight_decay"] == 5e-5
    assert ids(g["norm"]["params"]) == ids([m.bn1.weight, m.bn1.bias, m.gn.weight, m.gn.bias])
    assert g["norm"]["weight_decay"] == 0.0
    assert ids(g["bias"]["params"]) == ids([m.fc.bias]) and g["bias"]["weight_decay"] == 2e-5
    assert ids(g["default"]["params"]) == ids([m.conv1.weight, m.fc.weight]) and g["default"]["weight_decay"] == 1e-4
    # every trainable parameter exactly once
    allp = [id(p) for grp in g.values() for p in grp["params"]]
    assert sorted(allp) == sorted(id(p) for p in m.parameters())


def test_frozen_parameters_are_left_out():
    m = Block()
    m.conv1.weight.requires_grad_(False)
    groups = param_groups(m, 1e-4, 5e-5, 1e-4, 1e-4)
    assert all(p is not m.conv1.weight for grp in groups for p in grp["params"])


def test_sgd_from_config_applies_group_decay():
    cfg = load_config("ucf101_cgd")
    m = Block()
    opt = build_optimizer(m, lr=0.01, **optimizer_kwargs(cfg))
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    decays = {g["name"]: g["weight_decay"] for g in opt.param_groups}
    assert decays["cgd"] == 5e-5 and decays["default"] == 1e-4
    set_lr(opt, 0.123)
    assert all(g["lr"] == 0.123 for g in opt.param_groups)
    # one SGD step with zero gradient: only weight decay moves the weights, by lr * wd * w
    w0 = m.attn.w.detach().clone()
    c0 = m.conv1.weight.detach().clone()
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(m.attn.w.detach(), w0 * (1 - 0.123 * 5e-5))
    torch.testing.assert_close(m.conv1.weight.detach(), c0 * (1 - 0.123 * 1e-4))


def test_unknown_optimizer_lists_choices():
    cfg = load_config(None, ["SOLVER.OPTIMIZER", "lamb"])
    with pytest.raises(ValueError, match="adamw.*sgd"):
        build_optimizer(Block(), lr=0.1, **optimizer_kwargs(cfg))
