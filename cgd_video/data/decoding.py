"""Video decoding: one reader interface over decord, PyAV and folders of extracted frames.

``open_video(path, backend)`` returns a reader with ``.path``, ``.num_frames`` (frames that can really be
decoded), ``.fps``, ``.get(indices)`` and ``.get_all()``; frames come back as a uint8 tensor
``(len(indices), H, W, 3)`` in RGB. Frame ``i`` is the ``i``-th frame in presentation order, whatever the
timestamps say, so variable-frame-rate files index the same way in every backend.

Backends
  ``"decord"`` (default): fast random access by frame index. When decord cannot open a file (e.g. AV1) or
  fails while decoding it, the reader falls back to PyAV by itself (logged once per file, debug level).
  ``"pyav"``: selects the *video* stream (``container.streams.video[0]``), counts frames by demuxing packets
  (no decoding), and decodes sequentially up to the largest requested index, keeping only the needed
  frames. If the stream ends before a requested frame (the header/packet count was wrong) it raises
  :class:`FrameCountMismatch` carrying the true count; :func:`read_clip` resamples with it.
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
from typing import Callable, Protocol, Sequence, Union

import numpy as np
import torch

__all__ = [
    "BACKENDS",
    "FrameCountMismatch",
    "VideoDecodeError",
    "VideoReader",
    "open_video",
    "read_clip",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_FALLBACK_LOGGED: set[str] = set()  # paths whose decord -> PyAV fallback was logged (once per process)


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


class VideoReader(Protocol):
    path: str
    num_frames: int
    fps: float

    def get(self, indices: Sequence[int]) -> torch.Tensor: ...

    def get_all(self) -> torch.Tensor: ...


def _unique_indices(path: str, indices: Sequence[int], num_frames: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique frame indices and the inverse map; checks ``0 <= i < num_frames`` (upper bound if given)."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError(f"{path}: no frame indices requested")
    if idx.min() < 0:
        raise ValueError(f"{path}: negative frame index {int(idx.min())}")
    if num_frames is not None and int(idx.max()) >= num_frames:
        raise FrameCountMismatch(path, num_frames, int(idx.max()))
    return np.unique(idx, return_inverse=True)


def _gather(unique_frames: np.ndarray, inverse: np.ndarray) -> torch.Tensor:
    """Frames decoded once per unique index, returned in the requested (possibly repeating) order."""
    return torch.from_numpy(np.ascontiguousarray(unique_frames[inverse]))


class PyAVReader:
    """Sequential PyAV decoding of the first video stream; frames indexed by decode order (see module doc)."""

    def __init__(self, path: PathLike, num_threads: int = 1) -> None:
        import av

        self.path = str(path)
        self.num_threads = num_threads
        try:
            with av.open(self.path) as container:
                if not container.streams.video:
                    raise VideoDecodeError(self.path, "no video stream in the container")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                self.fps = float(rate) if rate else 0.0
                # Count packets instead of trusting the header (stream.frames is 0 for mkv/webm, often wrong).
                self.num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        except VideoDecodeError:
            raise
        except Exception as exc:  # av.error.*, OSError, UnicodeDecodeError ...
            raise VideoDecodeError(self.path, f"PyAV: {type(exc).__name__}: {exc}") from exc
        if self.num_frames == 0:
            raise VideoDecodeError(self.path, "PyAV: the video stream has no frames")

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        import av

        wanted, inverse = _unique_indices(self.path, indices, None)  # the decoded count is the truth here
        last = int(wanted[-1])
        out: list[np.ndarray] = []
        pos = 0  # index of the next wanted frame
        decoded = 0
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_count = self.num_threads
                for frame in container.decode(stream):
                    if decoded == wanted[pos]:
                        out.append(frame.to_ndarray(format="rgb24"))
                        pos += 1
                        if decoded == last:
                            break
                    decoded += 1
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(self.path, f"PyAV: decoding failed after {decoded} frames: {exc}") from exc
        if len(out) < len(wanted):
            self.num_frames = decoded
            raise FrameCountMismatch(self.path, decoded, last)
        return _gather(np.stack(out), inverse)

    def get_all(self) -> torch.Tensor:
        return read_clip(self, lambda n: np.arange(n))


class DecordReader:
    """decord random access; any decord failure hands the file to :class:`PyAVReader` (once, for good)."""

    def __init__(self, path: PathLike, num_threads: int = 1) -> None:
        self.path = str(path)
        self.num_threads = num_threads
        self._fallback: PyAVReader | None = None
        try:
            import decord

            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=num_threads)
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
            self._fallback = PyAVReader(self.path, self.num_threads)
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
            wanted, inverse = _unique_indices(self.path, indices, self.num_frames)
            try:
                frames = self._vr.get_batch(wanted.tolist()).asnumpy()
                if frames.shape[0] != len(wanted) or frames.ndim != 4:
                    raise RuntimeError(f"decord returned {tuple(frames.shape)} for {len(wanted)} frames")
                return _gather(frames, inverse)
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

        wanted, inverse = _unique_indices(self.path, indices, self.num_frames)
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
        return _gather(np.stack(frames), inverse)

    def get_all(self) -> torch.Tensor:
        return self.get(range(self.num_frames))


_READERS: dict[str, Callable[..., VideoReader]] = {
    "decord": DecordReader,
    "pyav": PyAVReader,
    "frames": FrameFolderReader,
}
BACKENDS = tuple(_READERS)


def open_video(path: PathLike, backend: str = "decord", **kwargs) -> VideoReader:
    """Open a video file (or a folder of frames) for frame-index access.

    Args:
        path: video file, or a directory of extracted frames (always read with the ``"frames"`` backend).
        backend: ``"decord"`` (falls back to PyAV by itself), ``"pyav"`` or ``"frames"``.
        **kwargs: passed to the reader (``num_threads`` for decord/PyAV, ``fps`` for frame folders).

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
    return _READERS[backend](path, **kwargs)


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
