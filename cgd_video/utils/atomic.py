"""Atomic file writes: write a temporary file in the target's folder, flush + fsync, then ``os.replace``.

A reader (or a run killed with SIGKILL halfway through a write) sees either the old file or the new
one, never a half-written file. Used for checkpoints, configs, metrics summaries and CSV/JSON results.
The file gets the permissions a plain ``open()`` would give it (the existing file's mode, else
``0o666 & ~umask``), not ``mkstemp``'s private 0600. A write killed before its rename leaves a
temporary ``.<name>.<random>.tmp`` beside the target; :func:`clean_stale_temporaries` removes those.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Union

PathLike = Union[str, os.PathLike]

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_torch_save", "clean_stale_temporaries"]

_TMP_SUFFIX = ".tmp"
# mkstemp's name: "." + target name + "." + 8 random characters + suffix
_TMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}" + re.escape(_TMP_SUFFIX) + "$")


def _open_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: the existing file's, else ``0o666`` minus the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort; not supported on every OS)."""
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """An open temporary file beside ``path`` that replaces it (flush, fsync, rename) when the block ends
    without an exception; on an exception the temporary is removed and ``path`` is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=str(path.parent))
    try:
        os.fchmod(fd, _open_mode(path))
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; creates the parent folder. Returns the path."""
    path = Path(path)
    with _atomic_file(path) as f:
        f.write(data)
    return path


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, streamed into the temporary file: no in-memory copy of
    the serialised checkpoint (a ResNet-50 with SGD momentum is ~200 MB)."""
    import torch

    path = Path(path)
    with _atomic_file(path) as f:
        torch.save(obj, f)
    return path


def clean_stale_temporaries(folder: PathLike) -> list[Path]:
    """Delete the temporaries that interrupted :func:`atomic_write_bytes` calls left in ``folder``.

    Only files named as this module names them (``.<target>.<8 characters>.tmp``) are removed; call it
    when no other writer is active in ``folder`` (a run's start). Returns the removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        if _TMP_NAME.match(p.name) and p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed
