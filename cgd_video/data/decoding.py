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
  ``"frames"``: a folder of pre-extracted images (``img_00001.jpg``, ... sorted by name). A directory is
  read as a frame folder whatever ``backend`` says.

Nothing here returns ``None`` for a bad file: zero-byte, missing, truncated and not-a-video files raise
:class:`VideoDecodeError` whose message names the path and the reason (PROTOCOL §8: PySlowFast returns None
and the collate crashes).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence, Union

import numpy as np
import torch

from cgd_video.data.containers import is_indexed, probe, pts_index, scaled_size
from cgd_video.data.decode_errors import DECODE_ERRORS, FrameCountMismatch, VideoDecodeError, decode_reason

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DECODE_ERRORS",
    "FrameCountMismatch",
    "VideoDecodeError",
    "VideoReader",
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


@functools.lru_cache(maxsize=16)
def _scan(path: str, _size: int, _mtime_ns: int) -> tuple[float, int, Optional[tuple[np.ndarray, np.ndarray]]]:
    """``(fps, packet count, pts index or None)`` of the first video stream, by demuxing (no decoding).
    Cached per process by (path, size, mtime) like :func:`~cgd_video.data.containers.probe`: the windows
    of one long video (``--timeline``) demux it once, not once per window."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream in the container")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        # Count packets instead of trusting the header (stream.frames is 0 for mkv/webm, often wrong).
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
        index = pts_index(packets) if is_indexed(container.format.name) else None
        return (float(rate) if rate else 0.0), len(packets), index


class PyAVReader:
    """PyAV decoding of the first video stream; frame ``i`` is the ``i``-th frame in presentation order.

    Indexed containers (mp4/mov, mkv/webm: every packet has a unique pts): frame ``i`` is the frame with
    the ``i``-th smallest pts. A read seeks to the last keyframe at or before the first wanted frame and
    tells the decoder to skip non-reference frames that are not wanted (``skip_frame="NONREF"``: nothing
    else depends on them), so only the frames the clip needs, and those its frames depend on, are decoded.
    Other containers, or when that mapping misses a frame: sequential decoding from the start, counting
    frames in decode output order, up to the last wanted frame.

    ``short_side``: frames whose shorter side is larger come back scaled to it (libswscale, area filter),
    in the same conversion that makes them RGB. One reformatter (libswscale context) serves all the frames
    of a read: ``frame.to_ndarray(format=...)`` sets one up per frame, which cost 0.35 ms of every
    320x240 frame's 0.6 ms conversion inside a decode loop (``docs/BENCHMARKS.md`` §4c).
    """

    backend = "pyav"

    def __init__(self, path: PathLike, num_threads: int = 1, short_side: Optional[int] = None) -> None:
        self.path = str(path)
        self.num_threads = num_threads
        self.short_side = short_side
        self._reformatter = None  # one libswscale context for every frame this reader converts
        try:
            st = os.stat(self.path)
            self.fps, self.num_frames, self._index = _scan(self.path, st.st_size, st.st_mtime_ns)
        except VideoDecodeError:
            raise
        except Exception as exc:  # av.error.*, OSError, UnicodeDecodeError ...
            raise VideoDecodeError(self.path, f"PyAV: {type(exc).__name__}: {exc}") from exc
        if self.num_frames == 0:
            raise VideoDecodeError(self.path, "PyAV: the video stream has no frames")

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        import av

        wanted, inverse = _unique_indices(self.path, indices, None)  # the decoded count is the truth here
        frames = self._get_indexed(wanted)
        if frames is not None:
            return _gather(frames, inverse)
        last = int(wanted[-1])
        out: list[np.ndarray] = []
        pos = 0  # index of the next wanted frame
        decoded = 0
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_count = self.num_threads
                for frame in container.decode(stream):
                    if decoded == wanted[pos]:  # only kept frames are converted (and scaled) to RGB
                        out.append(self._rgb(frame))
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

    def _get_indexed(self, wanted: np.ndarray) -> Optional[np.ndarray]:
        """Seek + skip decoding (class doc); ``None`` when a wanted frame did not come out."""
        import av

        if self._index is None or wanted[-1] >= len(self._index[0]):
            return None
        pts, keys = self._index
        want = {int(pts[i]): k for k, i in enumerate(wanted.tolist())}
        start = np.searchsorted(keys, pts[wanted[0]], side="right") - 1
        if start < 0:
            return None
        out: list[Optional[np.ndarray]] = [None] * len(wanted)
        missing = len(wanted)
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_count = self.num_threads
                ctx = stream.codec_context
                container.seek(int(keys[start]), stream=stream, backward=True, any_frame=False)
                for packet in container.demux(stream):
                    ctx.skip_frame = "DEFAULT" if packet.pts in want else "NONREF"
                    for frame in packet.decode():
                        k = want.get(frame.pts)
                        if k is not None and out[k] is None:  # only kept frames are converted to RGB
                            out[k] = self._rgb(frame)
                            missing -= 1
                    if not missing:
                        return np.stack(out)
        except av.error.FFmpegError:
            pass  # the sequential path decodes what really exists and reports it
        logger.debug("%s: indexed read missed frames; decoding sequentially", self.path)
        return None

    def _rgb(self, frame) -> np.ndarray:
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        size = scaled_size(frame.height, frame.width, self.short_side)
        if size is None:
            return self._reformatter.reformat(frame, format="rgb24").to_ndarray()
        return self._reformatter.reformat(frame, width=size[1], height=size[0], format="rgb24",
                                          interpolation="AREA").to_ndarray()

    def get_all(self) -> torch.Tensor:
        return read_clip(self, lambda n: np.arange(n))


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
