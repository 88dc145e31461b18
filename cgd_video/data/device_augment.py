"""Training augmentation split in two: the draw (in the DataLoader worker) and the pixels (on the device).

Paper Sec. 4.1 / PROTOCOL §5: each training clip gets a random crop (or scale, then crop), resized to
``crop_size``, a horizontal flip with probability 1/2, and ImageNet normalisation.

* :func:`draw_params` runs in the worker, from the item's ``numpy.random.Generator`` (seeded from
  ``(seed, epoch, index, attempt)`` by :class:`~cgd_video.data.datasets.TrainClipDataset`), right after
  the temporal window is drawn. It returns five int64 numbers: the crop box in the decoded frame's pixels
  ``(top, left, height, width)`` and ``flip`` (0/1). The draws are cheap; the worker then only decodes.
* :func:`carry` (worker) cuts the box out of the decoded frames: a uint8 ``(T, h, w, 3)`` clip (at most
  the shorter side squared: 8.6 MB for the paper's 32 x 224 from a source scaled to 299, 45% of the
  float32 clip) and the parameters that address it, ``(0, 0, h, w, flip)``.
  :func:`collate_train` batches them (zero-padded at the bottom/right to the batch's largest box, which
  the boxes never reach), pinned on CUDA.
* :func:`augment` (device) takes that batch and the carried parameters on whatever
  device it is on (the model's: GPU, or the CPU in CPU runs): per clip, the box is resized to
  ``crop_size`` (bilinear antialiased uint8 resize, torchvision's bits, one call over all T frames of the clip:
  5x faster on the CPU than a float32 ``interpolate``) and flipped; the whole batch is then converted and
  normalised at once into float32 ``(B, 3, T, S, S)``.
* ``TrainClipDataset(device_augment=False)`` runs the same :func:`carry` and :func:`augment` on a batch
  of one in the worker, so a clip is bit-identical whichever side augments it (on the CPU).

Distributions (``tests/test_device_augment.py`` checks them over many draws):
  ``"paper"``: a square of side ``round(U(0.75, 1) * min(H, W))`` at a uniformly random position.
  ``"jitter"``: the shorter side is drawn uniformly from ``[jitter[0], jitter[1]]`` (at least
  ``crop_size``), and a ``crop_size`` square at a uniformly random position of the frame at that scale;
  the box is that square mapped back to the decoded frame's pixels (rounded).
  ``flip``: 1 with probability 1/2.

"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from cgd_video.data import sampling
from cgd_video.data.transforms import IMAGENET_MEAN, IMAGENET_STD, _affine, resize_uint8, short_side_size

__all__ = ["TRAIN_AUGS", "augment", "carry", "collate_train", "decode_short_side", "draw_params"]

TRAIN_AUGS = ("paper", "jitter")
PAPER_SCALE = (0.75, 1.0)  # the paper's crop: 0.75-1 of the shorter side


def _check_aug(aug: str) -> None:
    if aug not in TRAIN_AUGS:
        raise ValueError(f"unknown train augmentation {aug!r}; valid: {', '.join(TRAIN_AUGS)}")


def decode_short_side(crop_size: int, aug: str = "paper", jitter: Sequence[int] = (256, 320)) -> int:
    """The smallest shorter side the decoder may scale a larger source to without losing detail the
    augmentation keeps: every crop is then resized down (or kept), never up. ``paper``: the smallest crop,
    0.75 of the shorter side, must still cover ``crop_size``; ``jitter``: the largest jitter scale."""
    _check_aug(aug)
    if aug == "paper":
        return int(math.ceil(crop_size / PAPER_SCALE[0]))
    return max(int(jitter[1]), int(crop_size))


def draw_params(
    rng: np.random.Generator,
    height: int,
    width: int,
    crop_size: int = 224,
    aug: str = "paper",
    jitter: Sequence[int] = (256, 320),
) -> torch.Tensor:
    """``(top, left, box_height, box_width, flip)`` int64 for one clip whose frames are ``height x width``.

    Draws, in order: the box (``paper``: side then position; ``jitter``: scale then position), the flip.
    """
    _check_aug(aug)
    if aug == "paper":
        top, left, h, w = sampling.random_square_crop_box(height, width, rng, PAPER_SCALE)
    else:
        short = max(sampling.jitter_short_side(rng, jitter), crop_size)
        sh, sw = short_side_size(height, width, short)
        t, l, _, _ = sampling.random_crop_box(sh, sw, crop_size, rng)
        fy, fx = height / sh, width / sw
        h, w = max(1, min(height, round(crop_size * fy))), max(1, min(width, round(crop_size * fx)))
        top, left = min(round(t * fy), height - h), min(round(l * fx), width - w)
    flip = int(rng.random() < 0.5)
    return torch.tensor([top, left, h, w, flip], dtype=torch.int64)


def augment(
    clips: torch.Tensor,
    params: torch.Tensor,
    crop_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 clips ``(B, T, H, W, 3)`` + ``params`` ``(B, 5)`` -> float32 ``(B, 3, T, S, S)`` on the clips'
    device: crop, resize to ``S = crop_size``, flip, normalise ``(x / 255 - mean) / std`` (module doc)."""
    if clips.dtype != torch.uint8 or clips.dim() != 5 or clips.shape[-1] != 3:
        raise ValueError(f"expected uint8 clips (B, T, H, W, 3), got {clips.dtype} {tuple(clips.shape)}")
    if params.shape != (clips.shape[0], 5):
        raise ValueError(f"expected params ({clips.shape[0]}, 5), got {tuple(params.shape)}")
    out = torch.empty((clips.shape[0], 3, clips.shape[1], crop_size, crop_size), dtype=torch.float32,
                      device=clips.device)
    for b, (top, left, h, w, flip) in enumerate(params.tolist()):
        # (T, 3, h, w) uint8 in one dense channels-last layout whatever the padding: the same kernel and the
        # same rounding on the worker and on the device (resize_uint8: ATen's uint8 kernel on AVX2 CPUs)
        x = clips[b, :, top : top + h, left : left + w].permute(0, 3, 1, 2)
        x = x.contiguous(memory_format=torch.channels_last)
        if (h, w) != (crop_size, crop_size):
            x = resize_uint8(x, (crop_size, crop_size))
        if flip:
            x = x.flip(-1)
        out[b].copy_(x.permute(1, 0, 2, 3))  # the one uint8 -> float32 conversion
    scale, shift = _affine(mean, std, out.device)
    return out.mul_(scale).add_(shift)


def carry(frames: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The box of uint8 ``frames`` ``(T, H, W, 3)`` as its own contiguous clip, and the parameters that
    address it there ``(0, 0, h, w, flip)`` (module doc)."""
    top, left, h, w, flip = params.tolist()
    box = frames[:, top : top + h, left : left + w].contiguous()
    return box, torch.tensor([0, 0, h, w, flip], dtype=torch.int64)


def collate_train(samples: Sequence[tuple]) -> tuple[torch.Tensor, ...]:
    """``[(box uint8 (T, h, w, 3), label, index, replaced_from, params (5,)), ...]`` -> batched tensors
    ``(clips (B, T, Hmax, Wmax, 3), labels, indices, replaced_from, params (B, 5))``; smaller boxes are
    zero-padded at the bottom/right (their parameters stay inside their own pixels)."""
    clips = [s[0] for s in samples]
    t = clips[0].shape[0]
    h, w = max(c.shape[1] for c in clips), max(c.shape[2] for c in clips)
    if all(tuple(c.shape[1:3]) == (h, w) for c in clips):
        batch = torch.stack(clips)
    else:
        batch = torch.zeros((len(clips), t, h, w, 3), dtype=torch.uint8)
        for b, c in enumerate(clips):
            batch[b, :, : c.shape[1], : c.shape[2]] = c
    labels, indices, replaced = (torch.tensor([int(s[k]) for s in samples], dtype=torch.int64) for k in (1, 2, 3))
    return batch, labels, indices, replaced, torch.stack([s[4] for s in samples])
