"""Find the videos that will not decode, before a training run meets them.

:func:`check_videos` opens every video with :func:`cgd_video.data.decoding.open_video` (the reader the
datasets use for ``backend``, default ``"pyav"`` like ``DATA.BACKEND``) in a pool of processes, and
decodes the first, middle and last frame (``full=True``: every frame). Stream facts (codec, size) come
from PyAV probing, and ``reader`` says which reader training and testing will use for the file: with
``backend="decord"``, ``decord`` on mp4/mkv and ``pyav`` where decord's random access is not frame-exact
(AVI, MPEG-PS/TS; see :mod:`cgd_video.data.decoding`) or after a fallback during the check. Results are written as
``check_report.csv``; the lists keep only videos that decode and ``rejected.txt`` names the
others with the reason. Files are never deleted or moved.
"""

from __future__ import annotations

import csv
import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

from cgd_video.data.decoding import DEFAULT_BACKEND
from cgd_video.utils.atomic import atomic_write_text

__all__ = ["CheckResult", "check_video", "check_videos", "write_check_report", "write_rejected"]

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class CheckResult:
    """One row of ``check_report.csv``. ``status`` is ``"ok"`` or ``"error"``; ``size`` is ``WxH``;
    ``reader`` the reader that serves the file's frames (``decord``, ``pyav`` or ``frames``)."""

    path: str
    status: str
    frames: int = 0
    fps: float = 0.0
    size: str = ""
    codec: str = ""
    reader: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_video(path: PathLike, root: Optional[PathLike] = None, full: bool = False,
                backend: str = DEFAULT_BACKEND) -> CheckResult:
    """Open and decode one video; never raises for a bad file (the reason goes to ``error``).

    Args:
        path: video path, relative to ``root`` when ``root`` is given (the report keeps it as given).
        root: data root; ``None`` when ``path`` is usable as is.
        full: decode every frame instead of the first, middle and last.
        backend: the ``DATA.BACKEND`` the datasets will use.
    """
    from cgd_video.data.containers import probe
    from cgd_video.data.decoding import VideoDecodeError, decode_reason, open_video

    file = Path(root) / path if root is not None else Path(path)
    info = probe(file) if file.is_file() else None  # None: the decode step below reports the reason
    codec, size = (info.codec, f"{info.width}x{info.height}") if info is not None else ("", "")
    reader = None
    try:
        reader = open_video(file, backend)
        n = int(reader.num_frames)
        if n <= 0:
            raise VideoDecodeError(file, "no decodable frames")
        if full:
            frames = reader.get_all()
            n = int(frames.shape[0])
        else:
            frames = reader.get(sorted({0, n // 2, n - 1}))
        if not size:
            size = f"{frames.shape[2]}x{frames.shape[1]}"
        return CheckResult(str(path), "ok", n, round(float(reader.fps), 3), size, codec, reader.backend, "")
    except Exception as err:  # VideoDecodeError, or anything a broken file makes a decoder raise
        reason = decode_reason(err)
        used = reader.backend if reader is not None else ""
        return CheckResult(str(path), "error", 0, 0.0, size, codec, used, " ".join(reason.split()))


def _check_one(args: tuple) -> CheckResult:
    return check_video(*args)


def check_videos(
    paths: Sequence[PathLike],
    root: Optional[PathLike] = None,
    workers: Optional[int] = None,
    full: bool = False,
    progress: bool = True,
    backend: str = DEFAULT_BACKEND,
) -> List[CheckResult]:
    """Check ``paths`` in parallel (``workers`` processes, default all CPUs; 0 = in this process), each
    opened with ``backend`` (:func:`check_video`).

    Results come back in the order of ``paths``. A tqdm bar shows progress when ``progress``.
    """
    from tqdm import tqdm

    jobs = [(p, root, full, backend) for p in paths]
    workers = (os.cpu_count() or 1) if workers is None else workers
    bar = tqdm(total=len(jobs), desc="checking videos", unit="video", disable=not progress)
    results = []
    with bar:
        if workers <= 0 or len(jobs) <= 1:
            for job in jobs:
                results.append(_check_one(job))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
                for result in pool.map(_check_one, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers)))):
                    results.append(result)
                    bar.update(1)
    return results


def write_check_report(path: PathLike, results: Iterable[CheckResult]) -> Path:
    """``check_report.csv``: header ``path,status,frames,fps,size,codec,reader,error``, one row per video."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(CheckResult)], lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow(asdict(r))
    return atomic_write_text(path, buf.getvalue())


def write_rejected(path: PathLike, results: Iterable[CheckResult]) -> Path:
    """``rejected.txt``: ``<path>\\t<reason>`` for every video that did not decode (may be empty)."""
    return atomic_write_text(path, "".join(f"{r.path}\t{r.error}\n" for r in results if not r.ok))
