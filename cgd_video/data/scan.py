"""Find the videos to work on: a folder scanned recursively, a single video, or a list of paths.

Used by ``tools/infer.py`` (:func:`scan_inputs`) and the list builders (:func:`scan_folder`).

* :func:`scan_folder`: every file under a folder (recursively, hidden entries skipped) whose extension is
  one of :data:`VIDEO_EXTENSIONS` (any case), sorted.
* :func:`scan_inputs`: a folder, a video or a text file with one path per line -> a de-duplicated list;
  a folder or list with no videos is an error that says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Set, Union

PathLike = Union[str, os.PathLike]

__all__ = ["VIDEO_EXTENSIONS", "NoVideosError", "is_video_file", "scan_folder", "read_path_list", "scan_inputs"]

#: File extensions treated as videos when scanning a folder (compared lower-case).
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v", ".flv", ".wmv", ".3gp", ".ts"}
)


class NoVideosError(ValueError):
    """The input names no video: an empty folder (or one with no video extensions), or an empty list."""


def is_video_file(path: PathLike) -> bool:
    """True when ``path``'s extension (case-insensitive) is one of :data:`VIDEO_EXTENSIONS`."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def scan_folder(folder: PathLike) -> List[Path]:
    """All video files under ``folder``, recursively, sorted; hidden files and folders are skipped.

    Symlinked folders are not followed (no cycles); symlinked files are kept.
    """
    folder = Path(folder)
    found: List[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and is_video_file(name):
                found.append(Path(dirpath) / name)
    return sorted(found)


def read_path_list(list_file: PathLike) -> List[Path]:
    """Paths from a text file, one per line. Blank lines and ``#`` comments are ignored.

    Relative paths are taken relative to the list file's folder. Any extension is accepted (the
    user named the file explicitly); a file that is not a video later gets an ``error`` row.
    """
    list_file = Path(list_file)
    base = list_file.parent
    paths: List[Path] = []
    with open(list_file, "r", encoding="utf-8") as f:
        for line in f:
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            p = Path(entry).expanduser()
            paths.append(p if p.is_absolute() else base / p)
    return paths


def scan_inputs(source: PathLike) -> List[Path]:
    """The videos named by ``source``: a folder (see :func:`scan_folder`) or a list file.

    Duplicates are dropped (first occurrence wins). Raises ``FileNotFoundError`` naming ``source`` when
    it does not exist, :class:`NoVideosError` when it names no video.
    """
    source = Path(source)
    if source.is_dir():
        paths = scan_folder(source)
    elif source.is_file():
        if is_video_file(source):
            paths = [source]
        else:
            paths = read_path_list(source)
    else:
        raise FileNotFoundError(
            f"--input {str(source)!r} does not exist: expected a folder of videos, a video file, "
            "or a text file with one path per line"
        )
    seen: Set[str] = set()
    unique: List[Path] = []
    for p in paths:
        key = str(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    if not unique:
        what = f"no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}, any case) under the folder" \
            if source.is_dir() else "no paths in the list file"
        raise NoVideosError(f"--input {str(source)!r}: {what}")
    return unique
