"""Re-encode a video dataset tree to a smaller short side and a fixed keyframe interval.

What PySlowFast and MMAction2 users do to Kinetics before training, built in (``tools/preprocess_videos.py``
is the CLI). Decoding a 1280x720 source costs several times a 256-short-side copy
(``docs/BENCHMARKS.md``), and a short keyframe interval makes random access into a clip cheap.

* Every video under ``src`` (:data:`cgd_video.data.scan.VIDEO_EXTENSIONS`) is decoded with PyAV, each
  frame scaled in libswscale so that its shorter side is ``short_side`` (never up: a smaller source keeps
  its size; sizes rounded to even for yuv420p), and encoded as H.264 (``crf``, keyframe every ``gop``
  frames, constant frame rate at the source's average rate, no audio) in an MP4 container.
* The copy keeps the folder layout and every file's relative path, name included, so the same list
  files work with ``DATA.ROOT`` pointed at ``dst``. The content is always MP4 (readers probe the content,
  not the extension: a ``.avi`` name then holds MP4 data, which decord reads frame-exactly).
* Every frame is kept (one output frame per decoded input frame), so frame indices mean the same
  moment in both trees.
* Each output is written atomically (encoded in memory, then :func:`cgd_video.utils.atomic.atomic_write_bytes`):
  an interrupted run leaves complete files and, at worst, stale temporaries, which the next run removes.
* Resumable: an output newer than its source is skipped. Sources are only ever opened for reading, and
  ``dst`` may not be inside ``src`` (or the reverse).
* A file that cannot be decoded is listed in ``dst/preprocess_failures.txt`` (``<relative path>\\t<reason>``,
  rewritten by every run) and the run goes on. Anything else (a bug) stops the run with its traceback.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Union

from cgd_video.data.containers import scaled_size
from cgd_video.data.decoding import DECODE_ERRORS, VideoDecodeError, decode_reason
from cgd_video.data.scan import scan_folder
from cgd_video.utils.atomic import atomic_write_bytes, atomic_write_text, clean_stale_temporaries

__all__ = ["FAILURES_FILE", "PreprocessReport", "preprocess_tree", "transcode"]

PathLike = Union[str, os.PathLike]
FAILURES_FILE = "preprocess_failures.txt"


@dataclass
class PreprocessReport:
    """What one run did: relative paths written, skipped (already done) and failed (with the reason)."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _even_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    h, w = scaled_size(height, width, short_side) or (height, width)
    return max(2, h - h % 2), max(2, w - w % 2)


def transcode(src: PathLike, short_side: int, gop: int = 32, crf: int = 20) -> bytes:
    """The MP4 bytes of ``src`` re-encoded (module doc). Raises :class:`VideoDecodeError` for a file that
    cannot be decoded or has no frames."""
    import av

    buf = io.BytesIO()
    count = 0
    try:
        with av.open(str(src)) as inp, av.open(buf, mode="w", format="mp4") as out:
            if not inp.streams.video:
                raise VideoDecodeError(src, "no video stream in the container")
            stream = inp.streams.video[0]
            rate = Fraction(stream.average_rate or stream.guessed_rate or 25).limit_denominator(1001 * 1000)
            ostream = None
            for frame in inp.decode(stream):
                if ostream is None:
                    h, w = _even_size(frame.height, frame.width, short_side)
                    ostream = out.add_stream("libx264", rate=rate)
                    ostream.width, ostream.height, ostream.pix_fmt = w, h, "yuv420p"
                    ostream.codec_context.thread_count = 1
                    ostream.options = {"crf": str(crf), "preset": "veryfast", "g": str(gop),
                                       "keyint_min": str(gop), "x264-params": "scenecut=0"}
                small = frame.reformat(width=w, height=h, format="yuv420p", interpolation="AREA")
                small.pts, small.time_base = count, 1 / rate  # constant rate, one output per input frame
                out.mux(ostream.encode(small))
                count += 1
            if ostream is not None:
                out.mux(ostream.encode())
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(src, f"PyAV: {type(exc).__name__}: {exc} (after {count} frames)") from exc
    if count == 0:
        raise VideoDecodeError(src, "no decodable frames")
    return buf.getvalue()


def _job(src: Path, dst: Path, short_side: int, gop: int, crf: int) -> str:
    """Transcode one file; returns ``""`` or the failure reason (decoding and I/O errors only)."""
    try:
        atomic_write_bytes(dst, transcode(src, short_side, gop, crf))
    except DECODE_ERRORS as exc:
        return decode_reason(exc)
    return ""


def _check_trees(src: Path, dst: Path) -> None:
    if not src.is_dir():
        raise ValueError(f"--src {src}: not a folder")
    s, d = src.resolve(), dst.resolve()
    if s == d or s in d.parents or d in s.parents:
        raise ValueError(f"--dst {dst} and --src {src} overlap; the copy must live outside the source tree")


def preprocess_tree(
    src: PathLike,
    dst: PathLike,
    short_side: int,
    gop: int = 32,
    crf: int = 20,
    workers: int | None = None,
    progress: bool = True,
) -> PreprocessReport:
    """Re-encode every video under ``src`` into ``dst`` (module doc), ``workers`` processes at a time
    (default: all CPUs; 0 = in this process). Raises ValueError for bad arguments (the message names them)."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    if short_side < 2 or gop < 1:
        raise ValueError(f"--short-side must be >= 2 and --gop >= 1, got {short_side} and {gop}")
    _check_trees(src, dst)
    report = PreprocessReport()
    todo, cleaned = [], set()
    for path in scan_folder(src):
        rel = path.relative_to(src)
        out = dst / rel
        if out.parent not in cleaned:  # what an interrupted run left (atomic writes' temporaries)
            clean_stale_temporaries(out.parent)
            cleaned.add(out.parent)
        if out.is_file() and out.stat().st_mtime >= path.stat().st_mtime:
            report.skipped.append(rel.as_posix())
        else:
            todo.append((rel.as_posix(), (path, out, short_side, gop, crf)))
    workers = (os.cpu_count() or 1) if workers is None else workers
    with tqdm(total=len(todo), desc="preprocessing videos", unit="video", disable=not progress) as bar:
        def done(rel: str, reason: str) -> None:
            if reason:
                report.failed[rel] = " ".join(reason.split())
            else:
                report.written.append(rel)
            bar.update(1)

        if workers <= 0 or len(todo) <= 1:
            for rel, args in todo:
                done(rel, _job(*args))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
                futures = {pool.submit(_job, *args): rel for rel, args in todo}
                for future in as_completed(futures):
                    done(futures[future], future.result())
    dst.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dst / FAILURES_FILE, "".join(f"{rel}\t{why}\n" for rel, why in sorted(report.failed.items())))
    return report
