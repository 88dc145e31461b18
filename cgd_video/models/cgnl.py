"""Compact Generalized Non-local block, dot-product kernel (Yue et al., NeurIPS 2018): "+CGNL" of Table 3.

Channels of θ, φ, g (1×1×1 convs C → C/2, no bias) are split into ``groups``; within each group the
single scalar ⟨φ, g⟩ over all (C/2/groups)·T·H·W entries scales θ:

    y_k = θ_k · ⟨φ_k, g_k⟩ (optionally / sqrt(C/2/groups·T·H·W)),     z = x + GN(W y)

W is a grouped 1×1×1 conv C/2 → C (``groups``), followed by GroupNorm(groups, C). Init as the CGNL
release: the block's convs N(0, 0.01), GroupNorm γ = β = 0, so the block starts as the identity.  At C = 1024, T = 4, 14×14: groups = 8 adds 1.64M parameters and
1.29G MACs (Table 3, Mini-Kinetics row); groups = 1 adds 2.10M / 1.64G (UCF-101 row).
"""

from __future__ import annotations

import torch
from torch import nn

from cgd_video.models.layouts import fold_frames, unfold_frames

__all__ = ["CGNLBlock"]


class CGNLBlock(nn.Module):
    """CGNL block (dot-product kernel) on clips ``(N, C, T, H, W)``.

    Args:
        channels: input/output channels C.
        groups: channel groups of the kernel, the output conv and the GroupNorm (the paper uses 8 on
            Mini-Kinetics, 1 on UCF-101).
        inner_channels: channels of θ, φ, g (default C // 2); must be divisible by ``groups``.
        use_scale: divide ⟨φ, g⟩ by sqrt of its length (off in the CGNL release for ResNet-50).
    """

    def __init__(
        self, channels: int, groups: int = 8, inner_channels: int | None = None, use_scale: bool = False
    ) -> None:
        super().__init__()
        inner = inner_channels or channels // 2
        if inner % groups or channels % groups:
            raise ValueError(f"CGNLBlock: groups={groups} must divide channels={channels} and inner={inner}")
        self.channels, self.inner_channels, self.groups, self.use_scale = channels, inner, groups, use_scale
        self.theta = nn.Conv2d(channels, inner, 1, bias=False)
        self.phi = nn.Conv2d(channels, inner, 1, bias=False)
        self.g = nn.Conv2d(channels, inner, 1, bias=False)
        self.out = nn.Conv2d(inner, channels, 1, groups=groups, bias=False)
        self.gn = nn.GroupNorm(groups, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The CGNL release's init (``model/resnet.py`` of kaiyuyue/cgnl-network.pytorch, applied to
        the block after the network's Kaiming init): every conv of the block N(0, 0.01), GroupNorm
        γ = β = 0, so the block starts as the identity."""
        for conv in (self.theta, self.phi, self.g, self.out):
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.gn.weight)
        nn.init.zeros_(self.gn.bias)

    def _by_group(self, v: torch.Tensor, num_clips: int) -> torch.Tensor:
        """(N*T, C', H, W) → (N*groups, 1, C'/groups·T·H·W): one row per (clip, group)."""
        v = v.unflatten(0, (num_clips, -1)).unflatten(2, (self.groups, -1)).transpose(1, 2)
        return v.reshape(num_clips * self.groups, 1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, h, w = x.shape
        frames = fold_frames(x)
        theta, phi, g = (self._by_group(conv(frames), n) for conv in (self.theta, self.phi, self.g))
        # Two batched products as in the CGNL release (and counted as such by MAC counters):
        att = torch.bmm(phi, g.transpose(1, 2))  # (N*groups, 1, 1) = <φ_k, g_k>
        if self.use_scale:
            att = att / phi.shape[-1] ** 0.5
        y = torch.bmm(att, theta)  # θ_k · <φ_k, g_k>
        y = y.view(n, self.groups, t, -1, h, w).transpose(1, 2).reshape(n * t, self.inner_channels, h, w)
        # GroupNorm statistics over (C/groups, T, H, W) of each clip, hence on the clip view.
        return x + self.gn(unfold_frames(self.out(y), n))
