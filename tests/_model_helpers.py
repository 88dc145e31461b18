"""Shared by the model tests: make eval-mode norm layers non-trivial so a wrong fold or mapping shows."""

import torch


def perturb_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Random BN/GN statistics and affine parameters, so a mis-mapped norm layer shows in the logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.4 - 0.2)
                if getattr(m, "running_mean", None) is not None:
                    m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.4 - 0.2)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
