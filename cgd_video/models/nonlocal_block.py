"""Non-local block, embedded Gaussian form (Wang et al., CVPR 2018): the "+NL" baseline of Table 3.

    y = softmax(θ(x)ᵀ φ(x)) g(x),     z = x + BN(W y)

θ, φ, g are 1×1×1 convs C → C/2 with bias; φ and g are max-pooled (1,2,2) *after* their convs
(the Non-local paper's subsampling); the softmax runs over the keys; W is a 1×1×1 conv C/2 → C
followed by BN with γ = 0, so the block starts as the identity.  At C = 1024, T = 4, 14×14 (one
block in res4, Table 3) it adds 2.10M parameters and 1.80G MACs (PROTOCOL §4).

Frames are folded into the batch, so every 1×1×1 conv is an ``nn.Conv2d``; positions are only
flattened for the two matrix products.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cgd_video.models.layouts import fold_frames, unfold_frames

__all__ = ["NonLocalBlock"]


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block on clips ``(N, C, T, H, W)``.

    Args:
        channels: input/output channels C.
        inner_channels: channels of θ, φ, g (default C // 2, as in the paper).
        subsample: max-pool φ and g by (1,2,2) after their convs (Non-local paper default).
    """

    def __init__(self, channels: int, inner_channels: int | None = None, subsample: bool = True) -> None:
        super().__init__()
        inner = inner_channels or channels // 2
        self.channels, self.inner_channels, self.subsample = channels, inner, subsample
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.out = nn.Conv2d(inner, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Non-local paper init: convs N(0, 0.01), biases 0, final BN γ = 0 (identity at start)."""
        for conv in (self.theta, self.phi, self.g, self.out):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    @staticmethod
    def _positions(x: torch.Tensor, num_clips: int) -> torch.Tensor:
        # (N*T, C', H, W) -> (N, T*H*W, C'); a free view for channels_last frames.
        return x.permute(0, 2, 3, 1).reshape(num_clips, -1, x.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, h, w = x.shape
        frames = fold_frames(x)
        theta = self.theta(frames)
        phi, g = self.phi(frames), self.g(frames)
        if self.subsample:
            phi, g = F.max_pool2d(phi, 2, 2), F.max_pool2d(g, 2, 2)
        q = self._positions(theta, n)
        k = self._positions(phi, n)
        v = self._positions(g, n)
        attn = torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)  # (N, THW, THW'), over keys
        y = torch.bmm(attn, v)  # (N, THW, C')
        y = y.reshape(n * t, h, w, self.inner_channels).permute(0, 3, 1, 2)
        z = self.bn(self.out(y))
        return x + unfold_frames(z, n)
