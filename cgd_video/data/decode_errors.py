"""What a reader raises for a file it cannot read: one exception type naming the path and the reason.

Re-exported by :mod:`cgd_video.data.decoding`, where the readers live.
"""

from __future__ import annotations

import os
from typing import Union

__all__ = ["DECODE_ERRORS", "FrameCountMismatch", "VideoDecodeError", "decode_reason"]

PathLike = Union[str, os.PathLike]


class VideoDecodeError(RuntimeError):
    """A video (or frame folder) that cannot be opened or decoded. ``str(err)`` names the path and reason."""

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"cannot decode video {self.path}: {self.reason}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.path, self.reason))


class FrameCountMismatch(VideoDecodeError):
    """Requested frames beyond the end: the stream really has ``num_frames`` frames (fewer than announced)."""

    def __init__(self, path: PathLike, num_frames: int, requested: int) -> None:
        self.num_frames = int(num_frames)
        self.requested = int(requested)
        super().__init__(path, f"requested frame {requested} but the stream has only {num_frames} decodable frames")

    def __reduce__(self):
        return (type(self), (self.path, self.num_frames, self.requested))


# What a bad or unreadable file raises through the readers (decoder failures are VideoDecodeError). Anything
# else is a bug: datasets must not mistake it for bad data.
DECODE_ERRORS = (VideoDecodeError, OSError)


def decode_reason(exc: BaseException) -> str:
    """The reason a file failed, for logs and reports: a :class:`VideoDecodeError`'s own reason, else the
    exception's type and message."""
    return exc.reason if isinstance(exc, VideoDecodeError) else f"{type(exc).__name__}: {exc}"
