"""What a video file's container says before any decoding: format, codec, size; and sizes for scaling.

:func:`probe` reads the header with PyAV (cached per process). :attr:`VideoInfo.indexed` tells the
containers whose per-frame index (presentation timestamps for every frame, keyframes marked) makes random
access by frame index exact: ISO-BMFF (mp4/mov) and Matroska/WebM. AVI (packed B-frame bitstreams) and
MPEG program/transport streams are not: :mod:`cgd_video.data.decoding` reads those sequentially.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from cgd_video.data.sampling import short_side_size

__all__ = ["INDEXED_FORMATS", "VideoInfo", "is_indexed", "probe", "pts_index", "scaled_size"]

PathLike = Union[str, os.PathLike]
# PyAV container format names (``container.format.name`` is a comma-separated list) with a per-frame index.
INDEXED_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm"})


def is_indexed(format_name: str) -> bool:
    """Whether a PyAV ``container.format.name`` names a container with a per-frame index (module doc)."""
    return bool(INDEXED_FORMATS.intersection(format_name.split(",")))


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reads from the container header: PyAV format and codec names, frame size."""

    format: str
    codec: str
    width: int
    height: int

    @property
    def indexed(self) -> bool:
        """Whether the container carries a per-frame index (mp4/mov, mkv/webm): random access by frame is
        exact there (module doc)."""
        return is_indexed(self.format)


def probe(path: PathLike) -> Optional[VideoInfo]:
    """Container format, codec and size of the first video stream (PyAV header read, no decoding);
    ``None`` when PyAV cannot open the file. Cached per process (LRU) by (path, size, mtime)."""
    st = os.stat(path)
    return _probe(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=65536)
def _probe(path: str, _size: int, _mtime_ns: int) -> Optional[VideoInfo]:
    import av

    try:
        with av.open(path) as container:
            ctx = container.streams.video[0].codec_context
            return VideoInfo(container.format.name, ctx.name, int(ctx.width), int(ctx.height))
    except (av.error.FFmpegError, IndexError, OSError, UnicodeDecodeError):
        return None


def scaled_size(height: int, width: int, short_side: Optional[int]) -> Optional[tuple[int, int]]:
    """:func:`cgd_video.data.sampling.short_side_size` (the size a torch resize gives), or ``None`` when no
    scaling is needed (``short_side`` is ``None`` or not below the source's shorter side)."""
    if not short_side or min(height, width) <= short_side:
        return None
    return short_side_size(height, width, int(short_side))


def pts_index(packets: list) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``[(pts, is_keyframe), ...]`` of every packet -> (every frame's pts in presentation order, the
    keyframes' pts), both sorted; ``None`` when a pts is missing or repeats (then there is no index)."""
    pts = np.asarray([p for p, _ in packets if p is not None], dtype=np.int64)
    if len(pts) != len(packets) or len(np.unique(pts)) != len(pts):
        return None
    keys = np.sort(np.asarray([p for p, key in packets if key], dtype=np.int64))
    return np.sort(pts), keys
