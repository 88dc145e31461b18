"""Batch inference: score a list of videos into a resumable results file (``tools/infer.py``).

Finding the videos is :mod:`cgd_video.data.scan`; scoring them is ``Predictor.predict_many``.
:func:`run_inference` joins the two: it writes one row per video as it finishes, with a progress bar,
and stops cleanly on Ctrl-C or SIGTERM. :class:`ResultWriter` appends rows to a CSV or JSON Lines file, one whole line per ``write`` followed by
  a flush, so an interrupted run (Ctrl-C, a killed job) leaves a valid file. Opening an existing output
  reads the paths already done so a re-run skips them; ``overwrite=True`` starts over.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Union

from tqdm import tqdm

from cgd_video.utils.atomic import atomic_write_bytes

PathLike = Union[str, os.PathLike]

__all__ = ["OUTPUT_FORMATS", "InferenceCounts", "result_columns", "ResultWriter", "run_inference"]

#: Output formats by file extension.
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl"}


def result_columns(topk: int) -> List[str]:
    """The CSV columns for ``topk`` ranked predictions: path, status, error, top1_label, top1_score,
    top2_label, top2_score, ... (JSON Lines rows carry ``labels`` and ``scores`` lists instead)."""
    ranked = [f"top{k}_{kind}" for k in range(1, topk + 1) for kind in ("label", "score")]
    return ["path", "status", "error"] + ranked


def _output_format(path: Path) -> str:
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"--output {str(path)!r}: unknown extension {path.suffix!r}; choose one of "
            f"{sorted(OUTPUT_FORMATS)}"
        )
    return fmt


def _one_line(text: Any) -> str:
    """Error messages go in one cell: newlines would break line-based resume."""
    return " ".join(str(text).split()) if text else ""


class ResultWriter:
    """Append-only CSV / JSON Lines writer that resumes.

    Args:
        path: output file; ``.csv`` or ``.jsonl`` selects the format.
        topk: number of ranked predictions per row (fixes the CSV columns).
        overwrite: discard an existing file instead of resuming from it.

    Each :meth:`write` emits one complete line and flushes it, so the file is valid whenever the
    process stops between rows. If a previous run was killed in the middle of a line (SIGKILL, power
    loss), the incomplete tail is dropped when the file is reopened. Every row counts as done, error
    rows included; ``retry_errors=True`` drops the error rows so that those files are tried again.
    """

    def __init__(
        self,
        path: PathLike,
        topk: int,
        overwrite: bool = False,
        retry_errors: bool = False,
    ) -> None:
        self.path = Path(path)
        self.format = _output_format(self.path)
        self.topk = int(topk)
        self.columns = result_columns(self.topk)
        self.done: Set[str] = set()
        self._file: Optional[io.TextIOBase] = None
        self._csv_writer = None
        if overwrite and self.path.exists():
            self.path.unlink()
        if self.path.exists() and self.path.stat().st_size > 0:
            self._load_existing(retry_errors)
        self._open()

    # -- resume -----------------------------------------------------------------------------
    def _load_existing(self, retry_errors: bool) -> None:
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        rows = self._parse(complete.decode("utf-8"))
        kept = [r for r in rows if not (retry_errors and r.get("status") != "ok")]
        self.done = {r["path"] for r in kept}
        if len(kept) != len(rows) or len(complete) != len(raw):
            # Rewrite without the torn tail / the rows to retry, atomically.
            atomic_write_bytes(self.path, self._serialise(kept).encode("utf-8"))

    def _parse(self, text: str) -> List[Dict[str, Any]]:
        if self.format == "jsonl":
            rows = []
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{self.path}:{lineno}: not a JSON line ({e}); use --overwrite") from e
                if "path" not in row:
                    raise ValueError(f"{self.path}:{lineno}: row has no 'path' key; use --overwrite")
                rows.append(row)
            return rows
        if not text:
            return []
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        if header != self.columns:
            raise ValueError(
                f"{self.path}: existing columns {header} differ from this run's {self.columns} "
                "(different --topk?); use the same options or --overwrite"
            )
        return list(reader)

    def _serialise(self, rows: Sequence[Mapping[str, Any]]) -> str:
        if self.format == "jsonl":
            return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if not rows:
            return ""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    # -- writing ----------------------------------------------------------------------------
    def _open(self) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8", newline="")
        if self.format == "csv" and new:
            self._file.write(",".join(self.columns) + "\n")
            self._file.flush()

    def _format_row(self, row: Mapping[str, Any]) -> str:
        flat = dict(row)
        flat["error"] = _one_line(flat.get("error", ""))
        if self.format == "jsonl":
            return json.dumps(flat, ensure_ascii=False) + "\n"
        labels = list(flat.get("labels") or [])
        scores = list(flat.get("scores") or [])
        cells: Dict[str, Any] = {c: "" for c in self.columns}
        cells.update(path=flat["path"], status=flat["status"], error=flat["error"])
        for k, (lab, sc) in enumerate(zip(labels[: self.topk], scores[: self.topk]), 1):
            cells[f"top{k}_label"] = lab
            cells[f"top{k}_score"] = f"{float(sc):.6f}"
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n").writerow(cells)
        return buf.getvalue()

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (``path``, ``status``, ``error``, ``labels``, ``scores``, ...) and flush."""
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        line = self._format_row(row)
        self._file.write(line)  # one call: the line is written whole
        self._file.flush()
        self.done.add(str(row["path"]))

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def pending(self, paths: Iterable[PathLike]) -> List[Path]:
        """The subset of ``paths`` not yet in the output, in order."""
        return [Path(p) for p in paths if str(p) not in self.done]


@dataclass
class InferenceCounts:
    """What :func:`run_inference` did: rows written ``ok`` / ``error``, paths ``skipped`` (already in the
    output), and whether it was ``interrupted`` (Ctrl-C or SIGTERM; the file stays valid)."""

    ok: int = 0
    error: int = 0
    skipped: int = 0
    interrupted: bool = False


def _interrupt(signum, frame):  # SIGTERM (kill, job schedulers) stops as cleanly as Ctrl-C
    raise KeyboardInterrupt(f"signal {signum}")


def run_inference(predictor, paths: Sequence[PathLike], writer: ResultWriter, timeline: Optional[float] = None,
                  progress: bool = True) -> InferenceCounts:
    """Score the ``paths`` not yet in ``writer``'s file with ``predictor.predict_many`` and append one row
    per video as it finishes. Ctrl-C or SIGTERM stops between rows (``interrupted=True``): running again
    resumes where it stopped."""
    todo = writer.pending(paths)
    counts = InferenceCounts(skipped=len(paths) - len(todo))
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal.signal needs it
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    bar = tqdm(total=len(todo), unit="video", dynamic_ncols=True, desc="infer", disable=not progress)
    try:
        for row in predictor.predict_many(todo, timeline=timeline):
            writer.write(row)
            setattr(counts, row["status"], getattr(counts, row["status"]) + 1)
            bar.update(1)
            bar.set_postfix(ok=counts.ok, failed=counts.error, refresh=False)
    except KeyboardInterrupt:
        counts.interrupted = True
    finally:
        bar.close()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return counts
