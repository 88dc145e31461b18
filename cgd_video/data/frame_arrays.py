"""Frame arrays shared by the video readers: requested indices checked and made unique, the (K, H, W, 3)
array a read fills, the clip in the requested (possibly repeating) order, and :func:`read_clip`, which
resamples when a stream turns out shorter than its count."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from cgd_video.data.decode_errors import FrameCountMismatch, VideoDecodeError

if TYPE_CHECKING:
    from cgd_video.data.decoding import VideoReader

__all__ = ["FrameStack", "gather", "read_clip", "unique_indices"]


def unique_indices(path: str, indices: Sequence[int], num_frames: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique frame indices and the inverse map; checks ``0 <= i < num_frames`` (upper bound if given)."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError(f"{path}: no frame indices requested")
    if idx.min() < 0:
        raise ValueError(f"{path}: negative frame index {int(idx.min())}")
    if num_frames is not None and int(idx.max()) >= num_frames:
        raise FrameCountMismatch(path, num_frames, int(idx.max()))
    return np.unique(idx, return_inverse=True)


def gather(unique_frames: np.ndarray, inverse: np.ndarray) -> torch.Tensor:
    """Frames decoded once per unique index, returned in the requested (possibly repeating) order.

    Requested indices that were already sorted and unique (a training window inside the video) return
    the decoded array itself: no copy of the clip.
    """
    if np.array_equal(inverse, np.arange(len(unique_frames))) and unique_frames.flags.c_contiguous:
        return torch.from_numpy(unique_frames)
    return torch.from_numpy(np.ascontiguousarray(unique_frames[inverse]))


class FrameStack:
    """The (K, H, W, 3) uint8 array a read fills frame by frame (one copy per frame, no np.stack)."""

    def __init__(self, path: str, size: int) -> None:
        self.path, self.frames, self.count = path, None, 0
        self._filled = np.zeros(size, dtype=bool)

    def has(self, k: int) -> bool:
        return bool(self._filled[k])

    def put(self, k: int, frame: np.ndarray) -> None:
        if self.frames is None:
            self.frames = np.empty((len(self._filled), *frame.shape), dtype=frame.dtype)
        elif frame.shape != self.frames.shape[1:]:
            raise VideoDecodeError(self.path, f"frame size changes mid-stream: {frame.shape[:2]} after "
                                              f"{self.frames.shape[1:3]}")
        self.frames[k] = frame
        self._filled[k] = True
        self.count += 1


def read_clip(reader: VideoReader, indices_fn: Callable[[int], Sequence[int]], attempts: int = 3) -> torch.Tensor:
    """Decode ``indices_fn(reader.num_frames)``; if the stream turns out shorter, resample with the true count.

    ``indices_fn`` must be deterministic in its argument (seeded), so a resample is reproducible.
    """
    for _ in range(attempts):
        try:
            return reader.get(indices_fn(reader.num_frames))
        except FrameCountMismatch as err:
            if err.num_frames <= 0:
                raise VideoDecodeError(reader.path, "no decodable frames") from err
            reader.num_frames = err.num_frames
    raise VideoDecodeError(reader.path, f"frame count kept changing after {attempts} attempts")
