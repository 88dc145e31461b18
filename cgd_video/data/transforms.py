"""Clip transforms (paper Sec. 4.1, PROTOCOL §5): uint8 until the very end, then ImageNet normalisation.

Input frames are uint8 ``(T, H, W, 3)`` (what the readers in :mod:`cgd_video.data.decoding` return).
Crops are slices; resizing is :func:`resize_uint8` (bilinear, antialiased, the same bits as torchvision's
``transforms.v2.functional.resize``) on uint8 ``(T, 3, H, W)`` views. The single conversion to float is
one of two functions computing the same ``(x / 255 - mean) / std`` (bit-identical values):

* :func:`normalize` — one clip, uint8 ``(T, 3, H, W)`` -> float32 ``(3, T, H, W)``;
* :func:`normalize_views` — test views, uint8 ``(..., 3, T, S, S)`` (what ``MultiViewTestDataset``
  returns) -> float32 ``(N, 3, T, S, S)`` on the model's device, applied by the consumer right before the
  model (the evaluator, validation, the ``Predictor``): 30 test views stay uint8 through the DataLoader
  (4x less memory and IPC than float32) and the host-to-device copy.

Train augmentation (random crop/scale, flip, normalisation) lives in :mod:`cgd_video.data.device_augment`:
drawn in the DataLoader worker, applied batched on the model's device.

Test: shorter side to ``test_scale``, then 1 or 3 crops of ``test_crop`` along the longer side. Frames
smaller than a crop are scaled up first (never padded).
"""

from __future__ import annotations

import platform
from typing import Sequence

import torch
import torch.nn.functional as F

from cgd_video.data import sampling
from cgd_video.data.sampling import short_side_size

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "crop",
    "normalize",
    "normalize_views",
    "resize_short_side",
    "resize_uint8",
    "short_side_size",
    "test_crops",
    "test_frames",
    "test_views",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_tchw(frames: torch.Tensor) -> torch.Tensor:
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    return frames.permute(0, 3, 1, 2)  # a view: channels-last memory, which ATen's uint8 resize likes


def _native_uint8_bilinear(device: torch.device) -> bool:
    """Whether ATen resizes uint8 directly (its vectorised CPU kernel: AVX2+ or ARM), as torchvision decides."""
    if device.type != "cpu":
        return False
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")


def resize_uint8(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear antialiased resize of uint8 ``(N, 3, H, W)`` to ``size`` ``(h, w)``: the rule and bits of
    torchvision's ``transforms.v2.functional.resize`` (``tests/test_transforms.py`` compares them), without
    importing torchvision, whose import pulls in ``torch._dynamo`` (about 3.5 s per process here: every tool,
    torchrun worker and DataLoader spawn). uint8 stays uint8 where ATen has the native kernel; elsewhere
    (CUDA, CPUs without AVX2) it goes through float32 and rounds back."""
    h, w = int(size[0]), int(size[1])
    if tuple(x.shape[-2:]) == (h, w) or x.numel() == 0:
        return x
    native = _native_uint8_bilinear(x.device)
    y = x if native else x.float()
    y = F.interpolate(y, size=[h, w], mode="bilinear", align_corners=False, antialias=True)
    return y if native else y.round_().to(torch.uint8)


def resize_short_side(x: torch.Tensor, short: int) -> torch.Tensor:
    """Resize ``(T, 3, H, W)`` uint8 so that the shorter side is ``short`` (bilinear, antialiased)."""
    return resize_uint8(x, short_side_size(x.shape[-2], x.shape[-1], short))


def crop(x: torch.Tensor, box: sampling.Box) -> torch.Tensor:
    """Slice a ``(top, left, height, width)`` box out of ``(..., H, W)``."""
    top, left, h, w = box
    return x[..., top : top + h, left : left + w]


def _affine(mean: Sequence[float], std: Sequence[float], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` float32 ``(3, 1, 1, 1)``: ``x * scale + shift == (x / 255 - mean) / std``."""
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (R, G, B), got mean={tuple(mean)} std={tuple(std)}")
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32, device=device)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32, device=device)
    return scale.view(3, 1, 1, 1), shift.view(3, 1, 1, 1)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(T, 3, H, W)`` -> contiguous float32 ``(3, T, H, W)``, ``(x / 255 - mean) / std``.

    Computed as ``x * (1 / (255 std)) + (-mean / std)``: one converting copy and two in-place passes.
    Purely elementwise, so normalising then cropping gives bit-identical values to cropping first.
    """
    scale, shift = _affine(mean, std)
    out = torch.empty((3, x.shape[0], x.shape[2], x.shape[3]), dtype=torch.float32)
    out.copy_(x.permute(1, 0, 2, 3))
    return out.mul_(scale).add_(shift)


def normalize_views(
    views: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 views ``(..., 3, T, S, S)`` -> float32 model input ``(N, 3, T, S, S)`` on ``device``.

    The one normalisation of test views (``MultiViewTestDataset`` output, ``(V, ...)`` per video or
    ``(B, V, ...)`` per batch; the leading dims are flattened into ``N``, clip-major order kept). The
    uint8 tensor is moved to ``device`` first (a quarter of the float32 bytes), then converted there with
    the same arithmetic as :func:`normalize` (bit-identical values). ``channels_last``: the result is
    ``torch.channels_last_3d`` (the conversion writes that layout directly, no extra copy).
    ``device=None`` keeps the input's device.
    """
    if views.dtype != torch.uint8 or views.dim() < 4 or views.shape[-4] != 3:
        raise ValueError(f"expected uint8 views (..., 3, T, S, S), got {views.dtype} {tuple(views.shape)}")
    x = views.reshape(-1, *views.shape[-4:])
    if device is not None:
        x = x.to(device, non_blocking=True)
    scale, shift = _affine(mean, std, x.device)
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device, memory_format=fmt)
    out.copy_(x)
    return out.mul_(scale).add_(shift)


def test_frames(frames: torch.Tensor, test_scale: int = 256, test_crop: int = 256) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> uint8 ``(T, 3, h, w)`` with shorter side ``max(test_scale, test_crop)``."""
    return resize_short_side(_to_tchw(frames), max(test_scale, test_crop))


def test_crops(frames: torch.Tensor, test_scale: int = 256, test_crop: int = 256, num_crops: int = 3) -> torch.Tensor:
    """The ``num_crops`` test views of one clip as uint8 ``(num_crops, 3, T, test_crop, test_crop)``.

    Each view is written once, straight from the resized frames into the output (the model's layout).
    """
    x = test_frames(frames, test_scale, test_crop)
    boxes = sampling.test_crop_boxes(x.shape[-2], x.shape[-1], test_crop, num_crops)
    out = torch.empty((len(boxes), 3, x.shape[0], test_crop, test_crop), dtype=torch.uint8)
    for view, box in zip(out, boxes):
        view.copy_(crop(x, box).permute(1, 0, 2, 3))
    return out


def test_views(
    frames: torch.Tensor,
    test_scale: int = 256,
    test_crop: int = 256,
    num_crops: int = 3,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """The ``num_crops`` normalised test views of one clip: ``(num_crops, 3, T, test_crop, test_crop)``
    float32 (:func:`test_crops` then :func:`normalize_views`)."""
    return normalize_views(test_crops(frames, test_scale, test_crop, num_crops), mean, std)


for _fn in (test_crops, test_frames, test_views):
    _fn.__test__ = False  # importable into pytest modules without being collected
del _fn
