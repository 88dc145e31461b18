"""Temporal-order probe data: classes that differ *only* in the order of the same frames.

Every video is drawn in two steps:

1. **Base sequence** (:func:`sample_order_params`, :func:`render_base`): an object that moves left →
   right, grows, and changes colour from a warm colour A to a cool colour B over T frames, on a
   noisy background. Start/end positions, height, sizes, colours, background and noise are random
   per video, and drawn **without the class**: the parameter sampler does not receive it.
2. **Class = a fixed permutation of the base frames** (:func:`class_permutation`):

   ============  =========================================  =========================================
   class         frame order                                what is seen
   ============  =========================================  =========================================
   Forward       0, 1, ..., T-1                             moves right, grows, A → B
   Reverse       T-1, ..., 1, 0                             moves left, shrinks, B → A
   WrapForward   T/2, ..., T-1, 0, ..., T/2-1               forward, jumps back at the middle
   WrapReverse   T/2-1, ..., 0, T-1, ..., T/2               reverse, jumps forward at the middle
   ============  =========================================  =========================================

   (``classes=2`` uses the first two.)

So for the same parameters every class shows the *same multiset of frames*: a frame taken at a
random time, or the unordered bag of all frames, has the same distribution in every class and
carries no class information. Only the pairing of content with time does. The frame-shuffled
control (:func:`shuffle_frames`) applies a uniform random permutation σ to each video; since
``perm_k ∘ σ`` is then uniform for every class k, the shuffled classes are identically distributed
and no model can beat chance on them. ``tests/test_temporal_probe.py`` checks both constructions.

The four orders also keep the pairs of neighbouring frames that a C2D's temporal max pool with
kernel 2 (``pool2``) merges identical up to order ({0,1}, {2,3}, ... for every class), so a model
that is invariant to frame order after that pool is exactly at chance here.
"""
from __future__ import annotations

from dataclasses import dataclass

import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from cgd_video.data.synthetic import encode_mp4, video_name, write_split_files
from cgd_video.utils.atomic import atomic_write_bytes

__all__ = [
    "ORDER_CLASSES",
    "OrderParams",
    "sample_order_params",
    "render_base",
    "class_permutation",
    "render_order_video",
    "shuffle_frames",
    "order_clips",
    "write_order_dataset",
]

ORDER_CLASSES: tuple[str, ...] = ("OrderForward", "OrderReverse", "OrderWrapForward", "OrderWrapReverse")


@dataclass(frozen=True)
class OrderParams:
    """Per-video parameters of the base sequence (fractions of the frame side; RGB in [0, 1])."""

    x_start: float
    x_end: float
    y: float
    radius_start: float
    radius_end: float
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    background: float
    noise: float


def sample_order_params(rng: np.random.Generator) -> OrderParams:
    """Draw the base sequence's parameters. Takes no class: every class shares this distribution."""
    return OrderParams(
        x_start=float(rng.uniform(0.15, 0.35)),
        x_end=float(rng.uniform(0.65, 0.85)),
        y=float(rng.uniform(0.3, 0.7)),
        radius_start=float(rng.uniform(0.06, 0.10)),
        radius_end=float(rng.uniform(0.14, 0.20)),
        color_a=(float(rng.uniform(0.75, 1.0)), float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.0, 0.2))),
        color_b=(float(rng.uniform(0.0, 0.2)), float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.75, 1.0))),
        background=float(rng.uniform(0.25, 0.45)),
        noise=float(rng.uniform(0.02, 0.06)),
    )


def render_base(params: OrderParams, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """The base sequence as float32 (T, size, size, 3) in [0, 1]: left → right, growing, A → B."""
    if frames < 2 or size < 8:
        raise ValueError(f"frames={frames}, size={size}: need at least 2 frames of 8x8 pixels")
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((frames, size, size, 3), np.float32)
    a, b = np.asarray(params.color_a, np.float32), np.asarray(params.color_b, np.float32)
    for t in range(frames):
        u = t / (frames - 1)
        x = params.x_start + u * (params.x_end - params.x_start)
        r = params.radius_start + u * (params.radius_end - params.radius_start)
        frame = params.background + rng.normal(0.0, params.noise, (size, size, 3)).astype(np.float32)
        frame[(xs - x) ** 2 + (ys - params.y) ** 2 <= r * r] = (1 - u) * a + u * b
        out[t] = np.clip(frame, 0.0, 1.0)
    return out


def class_permutation(label: int, frames: int, classes: int = 4) -> np.ndarray:
    """Frame order of class ``label``: index i of the video shows base frame ``perm[i]`` (table above)."""
    if classes not in (2, 4) or not 0 <= label < classes:
        raise ValueError(f"label={label}, classes={classes}: classes is 2 or 4 and 0 <= label < classes")
    if classes == 4 and frames % 4:
        raise ValueError(f"frames={frames}: the wrap classes need a multiple of 4 frames")
    forward = np.arange(frames)
    half = np.roll(forward, -(frames // 2))
    return (forward, forward[::-1], half, half[::-1])[label].copy()


def render_order_video(
    label: int, frames: int, size: int, rng: np.random.Generator, classes: int = 4
) -> np.ndarray:
    """One video of class ``label``: the base sequence (drawn from ``rng``, class-free) in class order."""
    base = render_base(sample_order_params(rng), frames, size, rng)
    return base[class_permutation(label, frames, classes)]


def shuffle_frames(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The frame-shuffled control: the frames of ``video`` in a uniformly random order."""
    return video[rng.permutation(video.shape[0])]


def order_clips(
    count: int, classes: int = 2, frames: int = 8, size: int = 32, seed: int = 0, shuffled: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` clips as float32 (N, 3, T, size, size), normalised to about zero mean, and int64 labels.

    Video i has label ``i % classes`` and its own generator seeded by (seed, i) only. ``shuffled``
    gives the frame-shuffled control (same videos, frames permuted by an independent generator).
    """
    x = np.empty((count, 3, frames, size, size), np.float32)
    y = np.arange(count, dtype=np.int64) % classes
    for i in range(count):
        video = render_order_video(int(y[i]), frames, size, np.random.default_rng([seed, i]), classes)
        if shuffled:
            video = shuffle_frames(video, np.random.default_rng([seed, i, 1]))
        x[i] = video.transpose(3, 0, 1, 2)
    return (x - 0.33) / 0.1, y



def write_order_dataset(
    out: str | os.PathLike,
    classes: int = 4,
    videos_per_class: int = 16,
    frames: int = 16,
    size: int = 64,
    fps: int = 25,
    seed: int = 0,
    progress: Optional[Callable[[int], None]] = None,
) -> Path:
    """Write the order task as h264 mp4s in the UCF-101 layout of :mod:`cgd_video.data.synthetic`.

    Video j of a class uses the generator (seed, j * classes + label); the last quarter of each
    class's videos (at least one) is the test split. Returns ``out``.
    """
    if videos_per_class < 2:
        raise ValueError(f"videos_per_class={videos_per_class}: need >= 2 (train and test)")
    if size % 2:
        raise ValueError(f"size={size}: h264 yuv420p needs an even size")
    names = ORDER_CLASSES[:classes]
    test_from = videos_per_class - max(1, videos_per_class // 4)
    out = Path(out)
    train, test = [], []
    for label, name in enumerate(names):
        for j in range(videos_per_class):
            rng = np.random.default_rng([seed, j * classes + label])
            video = render_order_video(label, frames, size, rng, classes)
            rel = video_name(name, j // 4 + 1, j % 4 + 1)
            atomic_write_bytes(out / "videos" / rel, encode_mp4((video * 255).round().astype(np.uint8), fps))
            (test if j >= test_from else train).append((rel, label + 1))
            if progress is not None:
                progress(1)
    write_split_files(out / "splits", names, train, test)
    return out
