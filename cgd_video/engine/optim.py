"""Optimiser with parameter groups (paper Sec. 4.1: weight decay 1e-4, CGD weights 5e-5).

Groups: ``cgd`` (every parameter of a CGD module, found by class name or by a ``.attn.`` path segment
holding a CGD), ``norm`` (BatchNorm/GroupNorm/LayerNorm affine parameters), ``bias`` (other biases),
``default`` (everything else). Each group keeps its weight decay; the trainer sets the LR of every
group from :func:`cgd_video.engine.lr_schedule.lr_at` before each step.
"""

from __future__ import annotations

from typing import Dict, Iterable, List

import torch
from torch import nn

__all__ = ["param_groups", "build_optimizer", "set_lr"]

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def _is_cgd(module: nn.Module) -> bool:
    return type(module).__name__.upper().startswith("CGD")


def param_groups(
    model: nn.Module,
    weight_decay: float,
    cgd_weight_decay: float,
    norm_weight_decay: float,
    bias_weight_decay: float,
) -> List[Dict]:
    """Split trainable parameters into named groups with their weight decay (empty groups dropped)."""
    owner: Dict[int, str] = {}
    # CGD first: anything inside a CGD module belongs to the cgd group (its w and b alike).
    for _, m in model.named_modules():
        if _is_cgd(m):
            for p in m.parameters():
                owner[id(p)] = "cgd"
    for _, m in model.named_modules():
        is_norm = isinstance(m, _NORM_TYPES)
        for pname, p in m.named_parameters(recurse=False):
            if id(p) in owner:
                continue
            if is_norm:
                owner[id(p)] = "norm"
            elif pname == "bias":
                owner[id(p)] = "bias"
            else:
                owner[id(p)] = "default"
    decay = {"default": weight_decay, "cgd": cgd_weight_decay, "norm": norm_weight_decay, "bias": bias_weight_decay}
    groups: Dict[str, List[nn.Parameter]] = {k: [] for k in decay}
    for p in model.parameters():
        if p.requires_grad:
            groups[owner[id(p)]].append(p)
    return [
        {"name": name, "params": ps, "weight_decay": decay[name]} for name, ps in groups.items() if ps
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    name: str = "sgd",
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 1e-4,
    cgd_weight_decay: float = 5e-5,
    norm_weight_decay: float = 1e-4,
    bias_weight_decay: float = 1e-4,
) -> torch.optim.Optimizer:
    """SGD (paper) or AdamW over :func:`param_groups`; ``name`` is ``"sgd"`` or ``"adamw"``."""
    groups = param_groups(model, weight_decay, cgd_weight_decay, norm_weight_decay, bias_weight_decay)
    if name.lower() == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if name.lower() == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"optimizer {name!r} is not one of ['adamw', 'sgd']")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's LR (groups may carry an ``lr_mult``)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)
