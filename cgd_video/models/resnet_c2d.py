"""C2D ResNet: a 2-D ResNet applied to every frame, time reduced only by pooling (PROTOCOL §2).

The backbone of every video result of the CGD paper (He et al., arXiv 1907.09665, Sec. 4.1, Tables 3
and 4).  Frames are folded into the batch, so every convolution is an ``nn.Conv2d`` (a 1×k×k
``Conv3d`` computes the same thing, more slowly on CPU); the temporal pooling of the
:class:`~cgd_video.models.layouts.TemporalLayout` runs on the ``(N, C, T, H, W)`` view of the same
memory.  Between blocks the activations travel as that clip view, so attention modules (CGD) and
non-local blocks see ``(N, C, T, H, W)`` without any copy.

Module names follow torchvision's ResNet (``conv1, bn1, layer1..layer4, fc``; blocks
``conv1/bn1/conv2/bn2[/conv3/bn3]/downsample``, stride on the 3×3 conv), so ImageNet state_dicts
load directly.  Additions live at ``layerX[i].attn`` (CGD) and ``layerX[i].nl`` (NL / CGNL).

CGD placement (Table 4): ``attention_position="conv1"`` puts it right after the first conv of every
block, before its BN ("Conv1 + CGD", the paper's choice); ``"conv2"`` after the 3×3 conv.  Because a
BN follows, eval mode merges CGD's per-sample channel scale into that BN (Sec. 3.3, "merge the global
description z with the batch-normalization parameters"): one pass over X instead of two. The height- and
width-wise forms (Fig. 4b/c) are built per block for the H or W at their position (``input_size``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from cgd_video.models.attention import create_attention
from cgd_video.models.cgnl import CGNLBlock
from cgd_video.models.folding import scaled_batch_norm
from cgd_video.models.fusion import fuse_conv_bn
from cgd_video.models.layouts import (
    STAGES,
    TemporalLayout,
    fold_frames,
    get_layout,
    stage_num_frames,
    stage_spatial_sizes,
    temporal_max_pool,
    unfold_frames,
)
from cgd_video.models.nonlocal_block import NonLocalBlock

__all__ = ["C2DResNet", "BasicBlock", "Bottleneck", "ATTENTION_POSITIONS", "NONLOCAL_PLACEMENTS"]

AttnFactory = Callable[[int], "nn.Module | None"]

# Which conv of a block the attention module follows (Table 4: "Conv1 + CGD" / "Conv2 + CGD").
ATTENTION_POSITIONS: dict[str, int] = {"conv1": 1, "conv2": 2}


def _res4_last(stage_depths: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """Table 3: one block in res4 (layer3), before its last residual block."""
    return {2: (stage_depths[2] - 2,)}


def _nl5(stage_depths: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """Non-local paper's 5-block C2D: after blocks 1, 3 of res3 and 1, 3, 5 of res4 (0-based)."""
    return {1: (1, 3), 2: (1, 3, 5)}


# placement name -> function(stage depths) -> {stage index (0 = res2): block indices followed by a block}
NONLOCAL_PLACEMENTS: dict[str, Callable[[Sequence[int]], dict[int, tuple[int, ...]]]] = {
    "res4_last": _res4_last,
    "nl5": _nl5,
}

# nonlocal type -> builder(channels, cgnl_groups)
_NONLOCAL_LAYERS: dict[str, Callable[[int, int], nn.Module] | None] = {
    "none": None,
    "nl": lambda channels, groups: NonLocalBlock(channels),
    "cgnl": lambda channels, groups: CGNLBlock(channels, groups=groups),
}


def _choose(kind: str, name: str, choices: dict) -> object:
    if name not in choices:
        raise ValueError(f"unknown {kind} {name!r}; valid choices: {sorted(choices)}")
    return choices[name]


class _C2DBlock(nn.Module):
    """Shared plumbing of the residual blocks: clip view in, clip view out, optional attention + NL."""

    attn: nn.Module | None
    nl: nn.Module | None
    strided_conv: int  # which conv carries the block's stride (1: BasicBlock, 2: Bottleneck)
    fold_attention: bool = True  # eval mode: merge the attention scale into the next BN (Sec. 3.3)

    def _add_extras(
        self,
        planes: int,
        downsample: nn.Module | None,
        attn_layer: AttnFactory | None,
        attn_position: str,
        nl: nn.Module | None,
    ) -> None:
        """What both blocks add after their convs: ReLU, shortcut, attention (``planes`` channels), NL."""
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.attn_index = ATTENTION_POSITIONS[attn_position]
        self.attn = attn_layer(planes) if attn_layer is not None else None
        self.nl = nl

    def _norm(self, out: torch.Tensor, num_clips: int, bn: nn.Module, index: int, relu: bool) -> torch.Tensor:
        """BN (+ ReLU) of conv ``index``'s output, with the attention module in between when it sits there."""
        if self.attn is None or index != self.attn_index:
            out = bn(out)
        else:
            clip = unfold_frames(out, num_clips)
            if self.fold_attention and not bn.training and hasattr(self.attn, "scale"):  # BN on running stats
                # Sec. 3.3: BN(X ⊙ s) (and the ReLU) in one fused pass instead of X ⊙ s, then BN;
                # s is per channel (CGD) or per row/column (CGDSpatial), both fold (folding.py).
                return fold_frames(scaled_batch_norm(clip, self.attn.scale(clip), bn, relu=relu))
            out = bn(fold_frames(self.attn(clip)))
        return self.relu(out) if relu else out

    def _finish(self, out: torch.Tensor, frames: torch.Tensor, num_clips: int) -> torch.Tensor:
        identity = frames if self.downsample is None else self.downsample(frames)
        out += identity  # in place, as torchvision: ``out`` is a fresh BN output
        out = self.relu(out)
        clip = unfold_frames(out, num_clips)
        return clip if self.nl is None else self.nl(clip)


class BasicBlock(_C2DBlock):
    """ResNet-18/34 block (two 3×3 convs, stride on conv1); attention after conv1 or conv2."""

    expansion = 1
    strided_conv = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        attn_layer: AttnFactory | None = None,
        attn_position: str = "conv1",
        nl: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self._add_extras(planes, downsample, attn_layer, attn_position, nl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, frames = x.shape[0], fold_frames(x)
        out = self._norm(self.conv1(frames), n, self.bn1, 1, relu=True)
        out = self._norm(self.conv2(out), n, self.bn2, 2, relu=False)
        return self._finish(out, frames, n)


class Bottleneck(_C2DBlock):
    """ResNet-50/101 bottleneck (1×1, 3×3 with the stride, 1×1); attention after conv1 or conv2."""

    expansion = 4
    strided_conv = 2

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        attn_layer: AttnFactory | None = None,
        attn_position: str = "conv1",
        nl: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self._add_extras(planes, downsample, attn_layer, attn_position, nl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, frames = x.shape[0], fold_frames(x)
        out = self._norm(self.conv1(frames), n, self.bn1, 1, relu=True)
        out = self._norm(self.conv2(out), n, self.bn2, 2, relu=True)
        out = self.bn3(self.conv3(out))
        return self._finish(out, frames, n)


# depth -> (block, blocks per stage res2..res5)
DEPTHS: dict[int, tuple[type[_C2DBlock], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class C2DResNet(nn.Module):
    """C2D ResNet for clips ``(N, 3, T, H, W)`` → logits ``(N, num_classes)``.

    Args:
        depth: 18, 34 (BasicBlock), 50 or 101 (Bottleneck).
        num_classes: outputs of ``fc``.
        layout: temporal layout name (``"nonlocal32"``, ``"pytorchvideo8"``) or a ``TemporalLayout``.
        num_frames: input clip length T; gives each stage's T for CGD ``concat`` (Fig. 4a) and is
            checked against the layout.
        input_size: side of the (square) training crop. Only the spatial CGD forms use it: they
            hold one weight per row or column, so each block's H or W is derived from it and the
            layout (:func:`~cgd_video.models.layouts.stage_spatial_sizes`); such a model then
            accepts only crops of this size (a clear ValueError otherwise).
        width: channels of the stem and res2 (64); res3..res5 double it per stage. Smaller widths
            give the tiny models of the temporal-order probe (benchmarks/bench_temporal.py).
        attention: ``create_attention`` name, one module per residual block: ``"none"``,
            ``"cgd"`` (per channel, Fig. 2/4a), ``"cgd_height"`` / ``"cgd_width"`` (per row /
            column, Fig. 4b/c).
        attention_kwargs: keyword arguments for the attention module (CGD: ``variant``, ``temporal``,
            ``init``); ``num_frames`` (and ``height``/``width`` at the attention's position) are
            filled in per block from the layout.
        attention_position: ``"conv1"`` (after the first conv, the paper's choice) or ``"conv2"``
            (after the 3×3 conv), Table 4.
        nonlocal_type: ``"none"``, ``"nl"`` (embedded Gaussian) or ``"cgnl"`` (dot product), Table 3.
        nonlocal_placement: ``"res4_last"`` (one block in res4 before its last residual block,
            Table 3) or ``"nl5"`` (the Non-local paper's 5 blocks in res3/res4).
        cgnl_groups: CGNL groups (8 on Mini-Kinetics, 1 on UCF-101 in Table 3).
        dropout: dropout rate after global pooling (0.5 in Sec. 4.1).
        zero_init_residual: zero the last BN γ of every block (torchvision option).
    """

    def __init__(
        self,
        depth: int = 50,
        num_classes: int = 400,
        layout: str | TemporalLayout = "nonlocal32",
        num_frames: int = 32,
        input_size: int = 224,
        width: int = 64,
        attention: str = "none",
        attention_kwargs: dict | None = None,
        attention_position: str = "conv1",
        nonlocal_type: str = "none",
        nonlocal_placement: str = "res4_last",
        cgnl_groups: int = 8,
        dropout: float = 0.5,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        block, stage_depths = _choose("depth", depth, DEPTHS)
        _choose("attention_position", attention_position, ATTENTION_POSITIONS)
        nl_builder = _choose("nonlocal_type", nonlocal_type, _NONLOCAL_LAYERS)
        nl_where = _choose("nonlocal_placement", nonlocal_placement, NONLOCAL_PLACEMENTS)(stage_depths)
        self.layout = get_layout(layout)
        self.num_frames = num_frames
        self.stage_frames = stage_num_frames(self.layout, num_frames)
        attention_kwargs = dict(attention_kwargs or {})
        for key in ("num_frames", "height", "width", "size"):
            if key in attention_kwargs:
                raise ValueError(
                    f"attention_kwargs must not set {key!r}: it comes from layout, num_frames and input_size"
                )
        self.input_size = input_size
        stage_sizes = stage_spatial_sizes(self.layout, input_size)
        if nl_builder is not None:
            for stage, indices in nl_where.items():
                if max(indices) >= stage_depths[stage]:
                    raise ValueError(
                        f"nonlocal_placement {nonlocal_placement!r} needs block {max(indices)} in "
                        f"{STAGES[stage]}, which has {stage_depths[stage]} blocks at depth {depth}"
                    )

        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        k = self.layout.pool1_spatial_kernel
        self.maxpool = nn.MaxPool2d(k, 2, k // 2)
        layers = []
        for stage, blocks in enumerate(stage_depths):
            name = STAGES[stage]
            attn_layers: list[AttnFactory | None] = [None] * blocks
            if attention != "none":
                # Every block but the first sees the stage's output size; the first block's size
                # changes at its strided conv.
                size_in, size_out = stage_sizes[name]
                strided = ATTENTION_POSITIONS[attention_position] >= block.strided_conv
                for i in range(blocks):
                    side = size_out if i > 0 or strided else size_in
                    attn_layers[i] = partial(create_attention, attention, **attention_kwargs,
                                             num_frames=self.stage_frames[name], height=side, width=side)
            nl_at = nl_where.get(stage, ()) if nl_builder is not None else ()
            layers.append(
                self._make_layer(
                    block, width * 2**stage, blocks, 1 if stage == 0 else 2, attn_layers, attention_position,
                    lambda c: nl_builder(c, cgnl_groups), nl_at,
                )
            )
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(
        self,
        block: type[_C2DBlock],
        planes: int,
        blocks: int,
        stride: int,
        attn_layers: Sequence[AttnFactory | None],
        attn_position: str,
        nl_layer: Callable[[int], nn.Module],
        nl_at: Sequence[int],
    ) -> nn.Sequential:
        downsample = None
        out_planes = planes * block.expansion
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes)
            )
        layers = []
        for i in range(blocks):
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    stride if i == 0 else 1,
                    downsample if i == 0 else None,
                    attn_layers[i],
                    attn_position,
                    nl_layer(out_planes) if i in nl_at else None,
                )
            )
            self.inplanes = out_planes
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """torchvision's ResNet init; NL/CGNL keep their own (identity at start), CGD is untouched."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, (NonLocalBlock, CGNLBlock)):
                m.reset_parameters()
            elif zero_init_residual and isinstance(m, _C2DBlock):
                nn.init.zeros_((m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight)

    def set_attention_folding(self, enabled: bool) -> None:
        """Eval-mode merge of CGD's scale into the following BN (on by default; off = plain X ⊙ s, BN)."""
        for m in self.modules():
            if isinstance(m, _C2DBlock):
                m.fold_attention = enabled

    fused_for_inference: bool = False

    def fuse_for_inference(self) -> "C2DResNet":
        """Fold every eval BN that directly follows a conv into it (stem, conv2/conv3, downsample, NL out).

        Irreversible and inference-only (see :func:`cgd_video.models.fusion.fuse_conv_bn`): puts the
        model in eval mode; the BN after a CGD stays (merged with CGD's scale, Sec. 3.3). Logits match
        the unfused eval model to float32 rounding. Returns ``self``.
        """
        return fuse_conv_bn(self)

    def train(self, mode: bool = True) -> "C2DResNet":
        if mode and self.fused_for_inference:
            raise RuntimeError(
                "cgd_video/models/resnet_c2d.py: this C2DResNet was fused for inference (BN folded into "
                "the convs); rebuild it or reload the checkpoint to train"
            )
        return super().train(mode)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip ``(N, 3, T, H, W)`` → res5 features as a clip view ``(N, C, T', H', W')``."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"C2DResNet expects clips of shape (N, 3, T, H, W), got {tuple(x.shape)}")
        n, lay = x.shape[0], self.layout
        # conv1 is 1×7×7, so its temporal stride is a subsampling.  The fast conv kernels want a dense
        # frame batch: a (N, 3, T, H, W) clip folds by one small copy, a channels_last_3d clip by a view.
        frames = fold_frames(x[:, :, :: lay.conv1_temporal_stride])
        if not (frames.is_contiguous() or frames.is_contiguous(memory_format=torch.channels_last)):
            frames = frames.contiguous()
        frames = self.maxpool(self.relu(self.bn1(self.conv1(frames))))
        clip = temporal_max_pool(unfold_frames(frames, n), lay.pool1_temporal_kernel, lay.pool1_temporal_stride)
        clip = self.layer1(clip)
        clip = temporal_max_pool(clip, lay.pool2_temporal_kernel, lay.pool2_temporal_stride)
        return self.layer4(self.layer3(self.layer2(clip)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average over T, H, W → dropout → fc (any spatial size: fully convolutional)."""
        return self.fc(self.dropout(x.mean(dim=(2, 3, 4))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
