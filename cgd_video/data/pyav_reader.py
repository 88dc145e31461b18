"""The PyAV reader: frame ``i`` of the first video stream in presentation order, exact on every container.

One demux of the file gives its frame count and, on indexed containers (mp4/mov, mkv/webm), the pts of
every frame (:func:`~cgd_video.data.containers.pts_index`). Scans are cached per process (a few files);
a reader that scanned its file itself keeps the demuxed packets for its first read, so a training item
opens and demuxes its video once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from typing import Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from cgd_video.data.containers import is_indexed, pts_index, scaled_size
from cgd_video.data.decode_errors import FrameCountMismatch, VideoDecodeError
from cgd_video.data.frame_arrays import FrameStack, gather, read_clip, unique_indices

__all__ = ["PyAVReader", "clear_scan_cache"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


def _decode(packets):
    """Frames of already-demuxed packets, decoded in order (what ``container.decode`` does while demuxing)."""
    for packet in packets:
        yield from packet.decode()


class _Demuxed(NamedTuple):
    """What demuxing the first video stream once gives (no decoding): the stream's frame rate, its frame
    count (packets with data; the header's ``stream.frames`` is 0 for mkv/webm and often wrong), the pts
    index of indexed containers (else ``None``), and the packets themselves in decode order (each file's
    own scan keeps them for its first read; the cache keeps only the first three fields)."""

    fps: float
    num_frames: int
    index: Optional[tuple[np.ndarray, np.ndarray]]
    packets: tuple = ()


_SCAN_CACHE: "OrderedDict[tuple[str, int, int], _Demuxed]" = OrderedDict()
_SCAN_LOCK = threading.Lock()
_SCAN_CACHE_SIZE = 16  # the windows of one long video (``--timeline``) demux it once, not once per window
KEEP_PACKETS_MAX_BYTES = 64 << 20  # a longer file's first read opens it again instead of holding it in memory


def clear_scan_cache() -> None:
    """Forget every cached scan (benchmarks: a training worker meets a video once an epoch)."""
    with _SCAN_LOCK:
        _SCAN_CACHE.clear()


def _demux(container, path: str) -> _Demuxed:
    """Demux the first video stream of an open container: :class:`_Demuxed`, packets included."""
    if not container.streams.video:
        raise VideoDecodeError(path, "no video stream in the container")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    kept: list | None = []  # every packet, the last being demux's empty end-of-stream one; None if too big
    with_data, size = [], 0
    for packet in container.demux(stream):
        if packet.size:
            with_data.append((packet.pts, packet.is_keyframe))
            size += packet.size
        if kept is not None and size > KEEP_PACKETS_MAX_BYTES:
            kept = None
        elif kept is not None:
            kept.append(packet)
    index = pts_index(with_data) if is_indexed(container.format.name) else None
    return _Demuxed(float(rate) if rate else 0.0, len(with_data), index, tuple(kept or ()))


def _scan(path: str) -> tuple[_Demuxed, Optional[tuple]]:
    """The file's scan (cached by path, size and mtime) and, when this call demuxed the file, the open
    container and its packets for the caller's first read (``None`` otherwise)."""
    import av

    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    with _SCAN_LOCK:  # readers may be opened from several threads
        scan = _SCAN_CACHE.get(key)
        if scan is not None:
            _SCAN_CACHE.move_to_end(key)
            return scan, None
    container = av.open(path)
    try:
        scan = _demux(container, path)
    except BaseException:
        container.close()
        raise
    with _SCAN_LOCK:
        _SCAN_CACHE[key] = scan._replace(packets=())
        if len(_SCAN_CACHE) > _SCAN_CACHE_SIZE:
            _SCAN_CACHE.popitem(last=False)
    if scan.packets:
        return scan, (container, scan.packets)
    container.close()  # too big to keep: reads open the file again
    return scan, None


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

    One open and one demux per training item: the reader that scans its file keeps the open container and
    the demuxed packets (files up to :data:`KEEP_PACKETS_MAX_BYTES`), and its first read decodes from them
    instead of opening, seeking and demuxing again. Frames are copied once, into the clip's array.
    """

    backend = "pyav"

    def __init__(self, path: PathLike, num_threads: int = 1, short_side: Optional[int] = None) -> None:
        self.path = str(path)
        self.num_threads = num_threads
        self.short_side = short_side
        self._reformatter = None  # one libswscale context for every frame this reader converts
        self._own_scan = None  # (container, packets) of this reader's scan: its first read decodes them
        try:
            scan, self._own_scan = _scan(self.path)
            self.fps, self.num_frames, self._index = scan.fps, scan.num_frames, scan.index
        except VideoDecodeError:
            raise
        except Exception as exc:  # av.error.*, OSError, UnicodeDecodeError ...
            raise VideoDecodeError(self.path, f"PyAV: {type(exc).__name__}: {exc}") from exc
        if self.num_frames == 0:
            self.close()
            raise VideoDecodeError(self.path, "PyAV: the video stream has no frames")

    def close(self) -> None:
        """Close the container kept from this reader's scan if no read has taken it over yet."""
        own, self._own_scan = self._own_scan, None
        if own is not None:
            own[0].close()

    @contextlib.contextmanager
    def _decoding(self):
        """``(container, stream, packets)`` for one read: the first read decodes the packets this reader's
        scan demuxed (no second open, seek and demux); later ones open the file (``packets`` None)."""
        import av

        own, self._own_scan = self._own_scan, None
        container, packets = own if own is not None else (av.open(self.path), None)
        try:
            stream = container.streams.video[0]
            stream.thread_count = self.num_threads
            yield container, stream, packets
        finally:
            container.close()

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        """The frames ``indices`` (any order, repeats allowed) from one :meth:`iter_frames` pass."""
        wanted, inverse = unique_indices(self.path, indices, None)  # the decoded count is the truth here
        out = FrameStack(self.path, len(wanted))
        for k, (_, frame) in enumerate(self.iter_frames(wanted)):
            out.put(k, frame)
        return gather(out.frames, inverse)

    def iter_frames(self, wanted: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """The frames ``wanted`` as ``(index, uint8 (H, W, 3))`` in increasing index order, from one decoder
        pass: the frames of many reads (the windows of ``--timeline``) decoded once, where one :meth:`get`
        per read would decode each read's frames from its keyframe, and from the start of the file on
        containers without a pts index (quadratic in the number of reads).

        Indexed containers: the decoder jumps (seek, or its place in this reader's own packets) to the
        keyframe of the next wanted frame when that keyframe lies past every packet fed so far, and skips
        unwanted non-reference frames (class doc); if a wanted frame does not come out, the rest are decoded
        sequentially. Others: sequential decoding, frames counted in output order. Raises
        :class:`FrameCountMismatch` when the stream ends before a wanted frame (``num_frames`` corrected),
        :class:`VideoDecodeError` when decoding fails.
        """
        wanted = np.unique(np.asarray(wanted, dtype=np.int64).reshape(-1))
        if wanted.size == 0:
            return
        if wanted[0] < 0:
            raise ValueError(f"{self.path}: negative frame index {int(wanted[0])}")
        done = 0
        if self._index is not None and wanted[-1] < len(self._index[0]):
            for item in self._iter_indexed(wanted):
                done += 1
                yield item
        if done < len(wanted):
            if self._index is not None:
                logger.debug("%s: indexed read missed frames; decoding sequentially", self.path)
            yield from self._iter_sequential(wanted[done:])

    def _iter_indexed(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """:meth:`iter_frames` on the pts index; stops early (without raising) if a wanted frame is missed."""
        import av

        pts, keys = self._index
        want = {int(pts[i]): int(i) for i in wanted.tolist()}
        starts = np.searchsorted(keys, pts[wanted], side="right") - 1
        if starts.min() < 0:
            return
        key_of = keys[starts]  # the keyframe each wanted frame is decoded from
        pending: dict[int, np.ndarray] = {}  # wanted frames that came out before the one due next
        pos, fed_key, source = 0, None, None
        try:
            with self._decoding() as (container, stream, packets):
                ctx = stream.codec_context
                while pos < len(wanted):
                    if fed_key is None or key_of[pos] > fed_key:  # the next wanted frame's GOP is ahead: jump
                        source = self._jump(container, stream, packets, int(key_of[pos]), flush=fed_key is not None)
                        fed_key = int(key_of[pos])
                    packet = next(source, None)
                    if packet is None:
                        return
                    if packet.is_keyframe and packet.pts is not None:
                        fed_key = max(fed_key, int(packet.pts))
                    ctx.skip_frame = "DEFAULT" if packet.pts in want else "NONREF"
                    for frame in packet.decode():
                        i = want.get(frame.pts)
                        if i is not None and i >= wanted[pos] and i not in pending:
                            pending[i] = self._rgb(frame)
                    while pos < len(wanted) and int(wanted[pos]) in pending:
                        yield int(wanted[pos]), pending.pop(int(wanted[pos]))
                        pos += 1
        except av.error.FFmpegError:
            return  # the sequential path decodes what really exists and reports it

    @staticmethod
    def _jump(container, stream, packets, key_pts: int, flush: bool):
        """Packets from the keyframe ``key_pts`` on: from this reader's kept packets when they hold it,
        else through a seek (which flushes the decoder; a jump inside the kept packets flushes it here)."""
        if packets is not None:
            first = next((i for i, p in enumerate(packets) if p.is_keyframe and p.pts == key_pts), None)
            if first is not None:
                if flush:
                    stream.codec_context.flush_buffers()
                return iter(packets[first:])
        container.seek(key_pts, stream=stream, backward=True, any_frame=False)
        return container.demux(stream)

    def _iter_sequential(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """:meth:`iter_frames` by counting decoded frames from the start of the stream."""
        import av

        pos, decoded = 0, 0
        try:
            with self._decoding() as (container, stream, packets):
                for frame in container.decode(stream) if packets is None else _decode(packets):
                    if decoded == wanted[pos]:
                        yield decoded, self._rgb(frame)
                        pos += 1
                        if pos == len(wanted):
                            return
                    decoded += 1
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(self.path, f"PyAV: decoding failed after {decoded} frames: {exc}") from exc
        self.num_frames = decoded
        raise FrameCountMismatch(self.path, decoded, int(wanted[-1]))

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


