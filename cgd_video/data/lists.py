"""Video list files and class files: the one plain-text format every dataset is turned into.

A *list* has one video per line, ``<path relative to the data root> <0-based label>``. The label is the
last space-separated token, so paths may contain spaces. Blank lines are ignored; LF or CRLF endings.
A *classes* file has one class name per line, line ``i`` naming label ``i``.

Lists are written by ``tools/build_lists.py`` (see ``data_lists/README.md``) and read by the datasets.
Errors name ``file:line`` and say what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Union

from cgd_video.utils.atomic import atomic_write_text

__all__ = ["VideoRecord", "read_video_list", "write_video_list", "read_classes", "write_classes"]

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class VideoRecord:
    """One video: ``path`` relative to the data root (POSIX separators) and its 0-based ``label``."""

    path: str
    label: int


def _lines(path: PathLike) -> Iterable[tuple]:
    """(line number, stripped text) for every non-blank line; tolerates CRLF and a UTF-8 BOM."""
    with open(path, "r", encoding="utf-8-sig", newline=None) as f:
        for number, line in enumerate(f, start=1):
            text = line.strip("\r\n")
            if text.strip():
                yield number, text


def read_video_list(path: PathLike, num_classes: Optional[int] = None) -> List[VideoRecord]:
    """Read a list file into ``VideoRecord``s.

    Args:
        path: the list file (``<relative path> <0-based label>`` per line).
        num_classes: when given, every label must lie in ``[0, num_classes)``.

    Raises:
        ValueError: a malformed line or a label out of range, naming ``file:line``.
        FileNotFoundError: ``path`` does not exist.
    """
    records = []
    for number, text in _lines(path):
        video, sep, label_text = text.strip().rpartition(" ")
        where = f"{path}:{number}"
        if not sep or not video.strip():
            raise ValueError(f"{where}: expected '<relative path> <0-based label>', got {text!r}")
        try:
            label = int(label_text)
        except ValueError:
            raise ValueError(f"{where}: label {label_text!r} is not an integer "
                             f"(expected '<relative path> <0-based label>', got {text!r})") from None
        if label < 0 or (num_classes is not None and label >= num_classes):
            valid = f"[0, {num_classes})" if num_classes is not None else ">= 0"
            raise ValueError(f"{where}: label {label} outside {valid}")
        records.append(VideoRecord(video.rstrip(), label))
    return records


def write_video_list(path: PathLike, records: Iterable[VideoRecord]) -> Path:
    """Write ``records`` as a list file (LF endings), atomically. Returns the path."""
    lines = []
    for r in records:
        if "\n" in r.path or "\r" in r.path or r.path != r.path.strip():
            raise ValueError(f"{path}: video path {r.path!r} cannot be written to a list "
                             "(no line breaks or leading/trailing spaces)")
        lines.append(f"{r.path} {int(r.label)}\n")
    return atomic_write_text(path, "".join(lines))


def read_classes(path: PathLike) -> List[str]:
    """Class names, one per line (line i = label i); blank lines ignored; duplicates raise ValueError."""
    names, seen = [], {}
    for number, text in _lines(path):
        name = text.strip()
        if name in seen:
            raise ValueError(f"{path}:{number}: class {name!r} already named on line {seen[name]}")
        seen[name] = number
        names.append(name)
    return names


def write_classes(path: PathLike, names: Iterable[str]) -> Path:
    """Write class names one per line (LF), atomically. Returns the path."""
    names = list(names)
    for name in names:
        if not name.strip() or "\n" in name or "\r" in name:
            raise ValueError(f"{path}: class name {name!r} cannot be written (empty or has a line break)")
    return atomic_write_text(path, "".join(f"{n}\n" for n in names))
