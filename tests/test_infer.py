"""Batch inference: folder scanning, the resumable CSV/JSONL writer and the tools/infer.py CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cgd_video.inference.batch import ResultWriter, result_columns, scan_inputs


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_scan_folder_recursive_case_insensitive_skips_hidden(tmp_path):
    want = [
        _touch(tmp_path / "a.mp4"),
        _touch(tmp_path / "B.MP4"),
        _touch(tmp_path / "sub" / "deeper" / "c.Avi"),
        _touch(tmp_path / "sub" / "d.webm"),
        _touch(tmp_path / "e.ts"),
    ]
    _touch(tmp_path / "notes.txt")
    _touch(tmp_path / "frames.jpg")
    _touch(tmp_path / ".hidden.mp4")
    _touch(tmp_path / ".cache" / "x.mp4")
    _touch(tmp_path / "noext")
    assert scan_inputs(tmp_path) == sorted(want)


def test_scan_list_file(tmp_path):
    (tmp_path / "vids").mkdir()
    listing = tmp_path / "list.txt"
    listing.write_text(f"# comment\nvids/a.mp4\n\n{tmp_path / 'b.mkv'}\nvids/a.mp4\nvids/c.avi\n")
    assert scan_inputs(listing) == [tmp_path / "vids" / "a.mp4", tmp_path / "b.mkv", tmp_path / "vids" / "c.avi"]
    with pytest.raises(FileNotFoundError, match="missing"):
        scan_inputs(tmp_path / "missing")


def _row(path, status="ok", labels=("run", "jump", "sit"), scores=(0.7, 0.2, 0.1), error=""):
    return dict(path=str(path), status=status, error=error, top1_label=labels[0] if labels else "",
                top1_score=scores[0] if scores else None, labels=list(labels), scores=list(scores))


@pytest.mark.parametrize("ext", [".csv", ".jsonl"])
def test_writer_resume_torn_tail_and_overwrite(tmp_path, ext):
    out = tmp_path / f"preds{ext}"
    with ResultWriter(out, topk=3) as w:
        w.write(_row("a.mp4"))
        w.write(_row("b, \"quoted\".mp4", status="error", labels=(), scores=(), error="bad\nfile"))
    # A previous run killed mid-line: the torn tail is dropped on reopen, finished rows are kept.
    with open(out, "a") as f:
        f.write('c.mp4,ok,,ru' if ext == ".csv" else '{"path": "c.mp4", "sta')
    w = ResultWriter(out, topk=3)
    assert w.done == {"a.mp4", 'b, "quoted".mp4'}
    assert w.pending(["a.mp4", "c.mp4"]) == [Path("c.mp4")]
    w.write(_row("c.mp4"))
    w.close()
    text = out.read_text()
    if ext == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        assert list(rows[0]) == result_columns(3) == [
            "path", "status", "error", "top1_label", "top1_score", "top2_label", "top2_score",
            "top3_label", "top3_score"]
        assert rows[0]["top2_label"] == "jump" and float(rows[0]["top3_score"]) == pytest.approx(0.1)
    else:
        rows = [json.loads(line) for line in text.splitlines()]
        assert rows[0]["labels"] == ["run", "jump", "sit"]
    assert [r["path"] for r in rows] == ["a.mp4", 'b, "quoted".mp4', "c.mp4"]
    assert rows[1]["status"] == "error" and rows[1]["error"] == "bad file"
    # Errors are retried only on request; --overwrite starts over.
    assert ResultWriter(out, topk=3, retry_errors=True).done == {"a.mp4", "c.mp4"}
    assert ResultWriter(out, topk=3, overwrite=True).done == set()


def test_writer_rejects_other_topk_and_unknown_extension(tmp_path):
    out = tmp_path / "p.csv"
    ResultWriter(out, topk=2).write(_row("a.mp4"))
    with pytest.raises(ValueError, match="--topk"):
        ResultWriter(out, topk=5)
    with pytest.raises(ValueError, match=r"\.jsonl"):
        ResultWriter(tmp_path / "p.txt", topk=2)
