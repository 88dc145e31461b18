"""Which frames and which pixels make a clip (PROTOCOL §5, paper Sec. 4.1). Pure functions of ints.

Training: a random window of ``num_frames * sampling_rate`` consecutive frames, keeping every
``sampling_rate``-th (64 frames -> 32 in the paper). A video shorter than the window LOOPS: the window
starts at frame 0 and indices wrap around modulo the video length, so every clip has ``num_frames``
frames and the motion is continuous except where the video restarts.

Testing: ``num_clips`` clips spread evenly over the whole video: the first clip starts at frame 0 and the
last clip's last sampled frame is the video's last frame (a clip spans ``(num_frames - 1) *
sampling_rate + 1`` frames); a single clip is centred. ``num_crops`` square crops per clip: 3 along the
longer side (start / centre / end: left, centre, right for landscape frames; top, centre, bottom for
portrait), or 1 centre crop.

Randomness comes only from an explicit ``numpy.random.Generator`` argument, so datasets can derive it
from ``(seed, epoch, index)`` and a resumed run draws exactly the same clips.

Boxes are ``(top, left, height, width)`` in pixels, the argument order of ``torchvision``'s ``crop``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "clip_span",
    "jitter_short_side",
    "random_crop_box",
    "random_square_crop_box",
    "short_side_size",
    "test_clip_indices",
    "test_crop_boxes",
    "test_window_starts",
    "train_window_indices",
]

Box = tuple[int, int, int, int]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def clip_span(num_frames: int, sampling_rate: int) -> int:
    """Frames from the first to the last sampled frame of a clip, inclusive."""
    return (num_frames - 1) * sampling_rate + 1


def train_window_indices(
    video_frames: int, num_frames: int, sampling_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Frame indices of one training clip: ``start + k * sampling_rate`` (mod ``video_frames``), k < num_frames.

    ``start`` is uniform over ``[0, video_frames - num_frames * sampling_rate]``; a shorter video starts at 0
    and loops (see module docstring).
    """
    _check_positive(video_frames=video_frames, num_frames=num_frames, sampling_rate=sampling_rate)
    window = num_frames * sampling_rate
    start = int(rng.integers(0, video_frames - window + 1)) if video_frames >= window else 0
    return (start + np.arange(num_frames, dtype=np.int64) * sampling_rate) % video_frames


def test_window_starts(video_frames: int, num_frames: int, sampling_rate: int, num_clips: int) -> list[int]:
    """First frame of each of ``num_clips`` evenly spread test clips (first at 0, last ending at the end)."""
    _check_positive(video_frames=video_frames, num_frames=num_frames, sampling_rate=sampling_rate,
                    num_clips=num_clips)
    last_start = max(video_frames - clip_span(num_frames, sampling_rate), 0)
    if num_clips == 1:
        return [last_start // 2]
    return [int(round(last_start * k / (num_clips - 1))) for k in range(num_clips)]


def test_clip_indices(video_frames: int, num_frames: int, sampling_rate: int, num_clips: int) -> np.ndarray:
    """``(num_clips, num_frames)`` frame indices of the test clips (looping for short videos)."""
    starts = np.asarray(test_window_starts(video_frames, num_frames, sampling_rate, num_clips), dtype=np.int64)
    offsets = np.arange(num_frames, dtype=np.int64) * sampling_rate
    return (starts[:, None] + offsets[None, :]) % video_frames


def test_crop_boxes(height: int, width: int, crop_size: int, num_crops: int) -> list[Box]:
    """``num_crops`` (1 or 3) square boxes of side ``crop_size``; 3 run along the longer side.

    The frame must already be at least ``crop_size`` on both sides (transforms scale it up otherwise).
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    if height < crop_size or width < crop_size:
        raise ValueError(f"frame {height}x{width} is smaller than the crop {crop_size}; scale it up first")
    top, left = (height - crop_size) // 2, (width - crop_size) // 2
    if num_crops == 1:
        return [(top, left, crop_size, crop_size)]
    if width >= height:
        return [(top, x, crop_size, crop_size) for x in (0, left, width - crop_size)]
    return [(y, left, crop_size, crop_size) for y in (0, top, height - crop_size)]


def random_square_crop_box(
    height: int, width: int, rng: np.random.Generator, scale: Sequence[float] = (0.75, 1.0)
) -> Box:
    """The paper's train crop: a square of side ``U(scale) * min(height, width)`` at a random position."""
    side = int(round(rng.uniform(scale[0], scale[1]) * min(height, width)))
    side = min(max(side, 1), height, width)
    return random_crop_box(height, width, side, rng)


def random_crop_box(height: int, width: int, crop_size: int, rng: np.random.Generator) -> Box:
    """A ``crop_size`` square at a uniformly random position (frame at least ``crop_size`` on both sides)."""
    if height < crop_size or width < crop_size:
        raise ValueError(f"frame {height}x{width} is smaller than the crop {crop_size}; scale it up first")
    top = int(rng.integers(0, height - crop_size + 1))
    left = int(rng.integers(0, width - crop_size + 1))
    return (top, left, crop_size, crop_size)


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """``(h, w)`` with the shorter side ``short`` and the aspect kept; the longer side floors (torchvision's
    ``Resize(int)`` rounding). The one size rule for every resize: torch on the CPU or the device, and
    scaling inside the decoders."""
    if height <= width:
        return short, max(1, int(short * width / height))
    return max(1, int(short * height / width)), short


def jitter_short_side(rng: np.random.Generator, jitter: Sequence[int] = (256, 320)) -> int:
    """Non-local / PySlowFast scale jitter: the shorter side drawn uniformly from ``[jitter[0], jitter[1]]``."""
    low, high = int(jitter[0]), int(jitter[1])
    if not 0 < low <= high:
        raise ValueError(f"jitter must be (low, high) with 0 < low <= high, got {tuple(jitter)}")
    return int(rng.integers(low, high + 1))


# Importing these into a pytest module must not make pytest collect them as tests.
for _fn in (test_window_starts, test_clip_indices, test_crop_boxes):
    _fn.__test__ = False
del _fn
