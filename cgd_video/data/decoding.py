"""Video decoding: one reader interface over decord, PyAV and folders of extracted frames.

``open_video(path, backend)`` returns a reader with ``.path``, ``.num_frames`` (frames that can really be
decoded), ``.fps``, ``.get(indices)`` and ``.get_all()``; frames come back as a uint8 tensor
``(len(indices), H, W, 3)`` in RGB. Frame ``i`` is the ``i``-th frame in presentation order, whatever the
timestamps say, so variable-frame-rate files index the same way in every backend.

Frame exactness: for every backend, frame ``i`` is the frame a sequential decode gives at position ``i``.
decord's random access is only used on indexed containers (mp4/mov, mkv/webm: see
:mod:`cgd_video.data.containers`); on AVI (Xvid with B-frames) and MPEG-PS/TS its sparse ``get_batch``
returns frames 2-3 positions off, so ``backend="decord"`` reads those with PyAV (:func:`reader_for`;
``build_lists.py --check`` reports it). ``tests/test_frame_exact.py`` checks backends x containers.

Decode less: only the requested frames are converted to RGB, and ``short_side`` (a maximum) makes libav
scale (decord's ``width``/``height``, PyAV's ``reformat``) when the source is larger: full-HD frames never
reach Python at full size.

Backends (``docs/BENCHMARKS.md`` §4b: on h264 the PyAV reader gives 1.17x decord's clips per worker)
  ``"decord"``: random access by frame index on indexed containers, PyAV on others. When decord cannot
  open or decode a file (e.g. AV1), the reader falls back to PyAV by itself (logged once, debug).
  ``"pyav"`` (default): the *video* stream (``container.streams.video[0]``); frames counted by demuxing packets (no
  decoding). Indexed containers: seek + skip what the clip does not need; others: sequential decoding up
  to the largest requested index (:class:`PyAVReader`). If the stream ends before a requested frame (the
  count was wrong) it raises :class:`FrameCountMismatch` with the true count; :func:`read_clip` resamples.
  ``PyAVReader.iter_frames(indices)`` yields the frames of many reads from one decoder pass (``--timeline``).
  ``"frames"``: a folder of pre-extracted images (``img_00001.jpg``, ... sorted by name). A directory is
  read as a frame folder whatever ``backend`` says.

Nothing here returns ``None`` for a bad file: zero-byte, missing, truncated and not-a-video files raise
:class:`VideoDecodeError` whose message names the path and the reason (PROTOCOL §8: PySlowFast returns None
and the collate crashes).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence, Union

import numpy as np
import torch

from cgd_video.data.containers import probe, scaled_size
from cgd_video.data.decode_errors import DECODE_ERRORS, FrameCountMismatch, VideoDecodeError, decode_reason
from cgd_video.data.frame_arrays import gather, read_clip, unique_indices
from cgd_video.data.pyav_reader import PyAVReader, clear_scan_cache

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DECODE_ERRORS",
    "FrameCountMismatch",
    "VideoDecodeError",
    "VideoReader",
    "clear_scan_cache",
    "decode_reason",
    "open_video",
    "read_clip",
    "reader_for",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_BACKEND = "pyav"  # frame-exact on every container (module doc), and the fastest reader per worker
_FALLBACK_LOGGED: set[str] = set()  # paths whose decord -> PyAV fallback was logged (once per process)


class VideoReader(Protocol):
    path: str
    num_frames: int
    fps: float

    def get(self, indices: Sequence[int]) -> torch.Tensor: ...

    def get_all(self) -> torch.Tensor: ...


def reader_for(path: PathLike, backend: str = DEFAULT_BACKEND) -> str:
    """Which reader :func:`open_video` will use for ``path``: ``"decord"``, ``"pyav"`` or ``"frames"``.

    ``backend="decord"`` gives ``"pyav"`` for containers where decord's indexing cannot be trusted (AVI,
    MPEG-PS/TS, ...; module doc). Files PyAV cannot probe are left to decord (which falls back by itself).
    """
    if Path(path).is_dir() or backend == "frames":
        return "frames"
    if backend == "decord":
        info = probe(path) if Path(path).is_file() else None
        if info is not None and not info.indexed:
            return "pyav"
    return backend


class DecordReader:
    """decord random access; any decord failure hands the file to :class:`PyAVReader` (once, for good).

    ``short_side``: decord scales in libav (its ``width``/``height``) when the source is larger.
    """

    def __init__(self, path: PathLike, num_threads: int = 1, short_side: Optional[int] = None) -> None:
        self.path = str(path)
        self.num_threads = num_threads
        self.short_side = short_side
        self._fallback: PyAVReader | None = None
        try:
            import decord

            info = probe(self.path) if short_side else None
            size = scaled_size(info.height, info.width, short_side) if info is not None else None
            scale = {} if size is None else {"height": size[0], "width": size[1]}
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=num_threads, **scale)
            self.num_frames = len(self._vr)
            self.fps = float(self._vr.get_avg_fps())
            if self.num_frames <= 0:
                raise RuntimeError("decord found no frames")
        except Exception as exc:
            self._fall_back(exc)

    def _fall_back(self, exc: BaseException) -> None:
        if self.path not in _FALLBACK_LOGGED:
            _FALLBACK_LOGGED.add(self.path)
            logger.debug("decord failed on %s (%s: %s); falling back to PyAV", self.path, type(exc).__name__, exc)
        self._vr = None
        try:
            self._fallback = PyAVReader(self.path, self.num_threads, self.short_side)
        except VideoDecodeError as err:
            raise VideoDecodeError(self.path, f"decord: {exc}; {err.reason}") from exc
        self.num_frames = self._fallback.num_frames
        self.fps = self._fallback.fps

    @property
    def backend(self) -> str:
        """Which library serves the frames now: ``"decord"`` or ``"pyav"`` after a fallback."""
        return "pyav" if self._fallback is not None else "decord"

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        if self._fallback is None:
            wanted, inverse = unique_indices(self.path, indices, self.num_frames)
            try:
                frames = self._vr.get_batch(wanted.tolist()).asnumpy()
                if frames.shape[0] != len(wanted) or frames.ndim != 4:
                    raise RuntimeError(f"decord returned {tuple(frames.shape)} for {len(wanted)} frames")
                return gather(frames, inverse)
            except Exception as exc:  # decord error mid-file: PyAV decodes what really exists
                self._fall_back(exc)
        try:
            return self._fallback.get(indices)
        finally:
            self.num_frames = self._fallback.num_frames

    def get_all(self) -> torch.Tensor:
        return read_clip(self, lambda n: np.arange(n))


class FrameFolderReader:
    """A folder of extracted frames (``img_00001.jpg``, ...) sorted by file name."""

    backend = "frames"

    def __init__(self, path: PathLike, fps: float = 30.0) -> None:
        self.path = str(path)
        folder = Path(path)
        if not folder.is_dir():
            raise VideoDecodeError(self.path, "not a directory of frames")
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise VideoDecodeError(self.path, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder")
        self.num_frames = len(self.files)
        self.fps = float(fps)

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        from PIL import Image

        wanted, inverse = unique_indices(self.path, indices, self.num_frames)
        frames = []
        for i in wanted.tolist():
            file = self.files[i]
            try:
                with Image.open(file) as image:
                    frames.append(np.asarray(image.convert("RGB")))
            except Exception as exc:
                raise VideoDecodeError(self.path, f"cannot decode frame {file.name}: {exc}") from exc
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise VideoDecodeError(self.path, f"frames of different sizes: {sorted(shapes)}")
        return gather(np.stack(frames), inverse)

    def get_all(self) -> torch.Tensor:
        return self.get(range(self.num_frames))


_READERS: dict[str, Callable[..., VideoReader]] = {
    "decord": DecordReader,
    "pyav": PyAVReader,
    "frames": FrameFolderReader,
}
BACKENDS = tuple(_READERS)


def open_video(path: PathLike, backend: str = DEFAULT_BACKEND, **kwargs) -> VideoReader:
    """Open a video file (or a folder of frames) for frame-index access.

    Args:
        path: video file, or a directory of extracted frames (always read with the ``"frames"`` backend).
        backend: ``"decord"`` (falls back to PyAV by itself), ``"pyav"`` or ``"frames"``.
        **kwargs: passed to the reader (``num_threads`` and ``short_side`` for decord/PyAV, ``fps`` for
            frame folders).

    Raises:
        ValueError: unknown backend (the message lists the valid ones).
        VideoDecodeError: missing, empty, truncated or undecodable input; the message names path and reason.
    """
    if backend not in _READERS:
        raise ValueError(f"unknown video backend {backend!r}; valid: {', '.join(BACKENDS)}")
    path = Path(path)
    if path.is_dir():
        return FrameFolderReader(path, **{k: v for k, v in kwargs.items() if k == "fps"})
    if backend == "frames":
        raise VideoDecodeError(path, "backend 'frames' needs a directory of extracted frames")
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    return _READERS[reader_for(path, backend)](path, **kwargs)
