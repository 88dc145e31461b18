"""Temporal layouts of a C2D ResNet: where the time axis is subsampled or max-pooled.

A C2D network applies 2-D convolutions to every frame (frames folded into the batch) and reduces time
only in the stem and between stages (PROTOCOL §2). The layout is data, not code: a frozen dataclass
that the backbone reads, with two presets:

- ``"nonlocal32"`` (default): the Non-local paper's 32-frame C2D, used by the CGD paper (Sec. 4.1,
  Table 3): conv1 1×7×7 with temporal stride 2, pool1 max 2×3×3 stride (2,2,2), pool2 max (2,1,1)
  after res2.  T: 32 → 16 → 8 (res2) → 4 (res3..res5).
- ``"pytorchvideo8"``: PyTorchVideo's ``c2d_r50`` (8×8 Kinetics recipe): no temporal stride in the
  stem, stem pool (1,3,3), pool (2,1,1) after res2 only.  T: 8 → 8 (res2) → 4 (res3..res5).

Also the two reshapes between the clip view ``(N, C, T, H, W)`` and the frame batch
``(N*T, C, H, W)`` that every module of the backbone shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "TemporalLayout",
    "LAYOUTS",
    "get_layout",
    "stage_num_frames",
    "stage_spatial_sizes",
    "temporal_max_pool",
    "fold_frames",
    "unfold_frames",
]

STAGES = ("res2", "res3", "res4", "res5")


@dataclass(frozen=True)
class TemporalLayout:
    """Where a C2D ResNet reduces time.  Spatial sizes follow torchvision's ResNet.

    Args:
        conv1_temporal_stride: temporal stride of conv1 (kernel 1×7×7, so stride s keeps frames
            0, s, 2s, ...).
        pool1_temporal_kernel: temporal kernel of the stem max pool.
        pool1_temporal_stride: temporal stride of the stem max pool (no temporal padding).
        pool1_spatial_kernel: spatial kernel of the stem max pool (stride 2, padding kernel // 2).
        pool2_temporal_kernel: temporal kernel of the max pool after res2 (1 = no pool).
        pool2_temporal_stride: temporal stride of the max pool after res2.
    """

    conv1_temporal_stride: int = 2
    pool1_temporal_kernel: int = 2
    pool1_temporal_stride: int = 2
    pool1_spatial_kernel: int = 3
    pool2_temporal_kernel: int = 2
    pool2_temporal_stride: int = 2

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TemporalLayout.{name} must be a positive int, got {value!r}")


LAYOUTS: dict[str, TemporalLayout] = {
    # Non-local paper (Wang et al. 2018) C2D baseline, 32-frame input: T 32 -> 16 -> 8 -> 8 -> 4.
    "nonlocal32": TemporalLayout(2, 2, 2, 3, 2, 2),
    # PyTorchVideo c2d_r50: stem keeps T, pool (2,1,1) after res2: T 8 -> 8 -> 4.
    "pytorchvideo8": TemporalLayout(1, 1, 1, 3, 2, 2),
}


def get_layout(layout: str | TemporalLayout) -> TemporalLayout:
    """Resolve a preset name (or pass a :class:`TemporalLayout` through)."""
    if isinstance(layout, TemporalLayout):
        return layout
    if layout not in LAYOUTS:
        raise ValueError(f"unknown temporal layout {layout!r}; valid layouts: {sorted(LAYOUTS)}")
    return LAYOUTS[layout]


def _pooled_length(length: int, kernel: int, stride: int) -> int:
    return (length - kernel) // stride + 1


def stage_num_frames(layout: str | TemporalLayout, num_frames: int) -> dict[str, int]:
    """Number of frames T seen by each stage (res2..res5) for an input clip of ``num_frames``.

    CGD's ``concat`` mode (Fig. 4a) has D = C·T entries, so it must know T at its stage.
    Raises ValueError when the clip is too short for the layout.
    """
    lay = get_layout(layout)
    t = (num_frames - 1) // lay.conv1_temporal_stride + 1
    t = _pooled_length(t, lay.pool1_temporal_kernel, lay.pool1_temporal_stride)
    res2 = t
    t = _pooled_length(t, lay.pool2_temporal_kernel, lay.pool2_temporal_stride)
    if num_frames < 1 or res2 < 1 or t < 1:
        raise ValueError(
            f"num_frames={num_frames} is too short for layout {lay}: time would shrink below one frame"
        )
    return {"res2": res2, "res3": t, "res4": t, "res5": t}


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def stage_spatial_sizes(layout: str | TemporalLayout, size: int) -> dict[str, tuple[int, int]]:
    """(input, output) height (or width) of each stage res2..res5 for an input crop side ``size``.

    conv1 7×7 stride 2 padding 3, the stem max pool (``pool1_spatial_kernel``, stride 2, padding
    kernel // 2), then a stride-2 3×3 conv (padding 1) at the start of res3, res4 and res5
    (torchvision's ResNet). 224 gives 56, 28, 14, 7; 256 gives 64, 32, 16, 8. The spatial CGD
    forms (Fig. 4b/c) have one weight per row or column, so they need these sizes.
    """
    lay = get_layout(layout)
    k = lay.pool1_spatial_kernel
    s = _conv_out(_conv_out(size, 7, 2, 3), k, 2, k // 2)
    if size < 1 or s < 1:
        raise ValueError(f"input size {size} is too small for a C2D ResNet")
    sizes = {}
    for i, stage in enumerate(STAGES):
        out = s if i == 0 else _conv_out(s, 3, 2, 1)
        sizes[stage], s = (s, out), out
    return sizes


def temporal_max_pool(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Max pool over T of a clip view ``(N, C, T, H, W)`` (no padding, floor), as ``MaxPool3d((k,1,1))``.

    Written as ``kernel - 1`` element-wise maxima of strided slices: no copy of the input, any
    memory layout, and the output keeps the input's layout (so frame folding stays a view).
    """
    if kernel == 1 and stride == 1:
        return x
    t_out = _pooled_length(x.shape[2], kernel, stride)
    if t_out < 1:
        raise ValueError(f"cannot max-pool {x.shape[2]} frames with temporal kernel {kernel}")
    span = (t_out - 1) * stride + 1
    out = x[:, :, 0:span:stride]
    for i in range(1, kernel):
        out = torch.maximum(out, x[:, :, i : i + span : stride])
    return out


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """Clip view ``(N, C, T, H, W)`` → frame batch ``(N*T, C, H, W)`` (frame n*T + t).

    A view (no copy) when the clip view came from :func:`unfold_frames`; copies otherwise.
    """
    return x.transpose(1, 2).flatten(0, 1)


def unfold_frames(x: torch.Tensor, num_clips: int) -> torch.Tensor:
    """Frame batch ``(N*T, C, H, W)`` → clip view ``(N, C, T, H, W)``, always a view (no copy)."""
    return x.unflatten(0, (num_clips, -1)).transpose(1, 2)
