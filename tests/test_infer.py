"""Batch inference: folder scanning, the resumable CSV/JSONL writer and the tools/infer.py CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cgd_video.data.scan import NoVideosError, scan_inputs
from cgd_video.inference.batch import ResultWriter, result_columns


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
    _touch(tmp_path / "empty" / "notes.txt")
    with pytest.raises(NoVideosError, match="no video files .*under the folder"):
        scan_inputs(tmp_path / "empty")
    (tmp_path / "blank.txt").write_text("# nothing\n\n")
    with pytest.raises(NoVideosError, match="no paths in the list file"):
        scan_inputs(tmp_path / "blank.txt")


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


# ------------------------------------------------------------------------------------------------
# tools/infer.py end to end on a folder mixing good and broken files
# ------------------------------------------------------------------------------------------------
import shutil  # noqa: E402
import sys  # noqa: E402

from test_predictor import CLASSES, make_tiny_checkpoint  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import infer as infer_cli  # noqa: E402


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.pt")


@pytest.fixture
def mixed_folder(tmp_path, synthetic_dataset, bad_videos) -> dict:
    """3 good videos (one nested two levels down, one with an upper-case .MP4) + 3 broken ones,
    plus files that must be ignored (a .txt, a hidden video, a video in a hidden folder)."""
    good = sorted((synthetic_dataset / "videos").rglob("*.mp4"))[:3]
    folder = tmp_path / "in"
    dest = {"good": [folder / "a.mp4", folder / "sub" / "deeper" / "b.mp4", folder / "C.MP4"]}
    for src, dst in zip(good, dest["good"]):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    dest["bad"] = []
    for name, src in bad_videos.items():
        dst = folder / ("sub" if name == "text" else "") / src.name
        shutil.copy(src, dst)
        dest["bad"].append(dst)
    _touch(folder / "readme.txt", b"not listed")
    shutil.copy(good[0], folder / ".hidden.mp4")
    _touch(folder / ".trash" / "x.mp4", b"")
    dest["folder"] = folder
    dest["spare"] = good[0]
    return dest


def _csv_rows(path: Path) -> list:
    return list(csv.DictReader(path.read_text().splitlines()))


def _infer(ckpt, folder, out, *extra) -> int:
    return infer_cli.main(["--ckpt", str(ckpt), "--input", str(folder), "--output", str(out), "--device", "cpu",
                           "--batch-size", "2", "--topk", "3", *extra])


def test_infer_folder_one_row_per_video_then_resume(tiny_ckpt, mixed_folder, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    assert _infer(tiny_ckpt, mixed_folder["folder"], out, "--num-workers", "1") == 0
    rows = _csv_rows(out)
    status = {r["path"]: r["status"] for r in rows}
    assert len(rows) == len(status) == 6
    assert status == {**{str(p): "ok" for p in mixed_folder["good"]}, **{str(p): "error" for p in mixed_folder["bad"]}}
    for r in rows:
        if r["status"] == "ok":
            assert r["error"] == "" and r["top1_label"] in CLASSES and {r["top2_label"], r["top3_label"]} <= set(CLASSES)
            assert 0.0 < float(r["top3_score"]) <= float(r["top2_score"]) <= float(r["top1_score"]) <= 1.0
        else:
            assert r["error"] and r["top1_label"] == ""
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["status"] == "error"}
    assert "empty" in errors["empty.mp4"] and "0 bytes" in errors["empty.mp4"]
    assert "done: 3 ok, 3 failed, 0 skipped" in capsys.readouterr().out

    # Same command again: everything is skipped, the file is unchanged.
    before = out.read_bytes()
    assert _infer(tiny_ckpt, mixed_folder["folder"], out) == 0
    assert out.read_bytes() == before
    assert "done: 0 ok, 0 failed, 6 skipped" in capsys.readouterr().out
    # A new video: only it is scored and appended.
    shutil.copy(mixed_folder["spare"], mixed_folder["folder"] / "sub" / "new.mkv")
    assert _infer(tiny_ckpt, mixed_folder["folder"], out) == 0
    after = out.read_bytes()
    assert after.startswith(before) and len(_csv_rows(out)) == 7
    assert _csv_rows(out)[-1]["path"].endswith("new.mkv")
    # --overwrite starts over: only this run's (single, broken) file remains.
    listing = tmp_path / "one.txt"
    listing.write_text(f"{mixed_folder['bad'][0]}\n")
    assert _infer(tiny_ckpt, listing, out, "--overwrite") == 0
    assert [(r["path"], r["status"]) for r in _csv_rows(out)] == [(str(mixed_folder["bad"][0]), "error")]


def test_infer_ctrl_c_leaves_valid_file_and_resumes(tiny_ckpt, mixed_folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "preds.jsonl"
    real = infer_cli.Predictor.predict_many

    def interrupted(self, paths, **kw):
        for i, row in enumerate(real(self, paths, **kw)):
            if i == 2:
                raise KeyboardInterrupt
            yield row

    monkeypatch.setattr(infer_cli.Predictor, "predict_many", interrupted)
    assert _infer(tiny_ckpt, mixed_folder["folder"], out, "--num-workers", "0") == 130
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(first) == 2 and "interrupted" in capsys.readouterr().err
    monkeypatch.setattr(infer_cli.Predictor, "predict_many", real)
    assert _infer(tiny_ckpt, mixed_folder["folder"], out, "--num-workers", "0") == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[:2] == first and len({r["path"] for r in rows}) == len(rows) == 6
    assert sorted(r["status"] for r in rows) == ["error"] * 3 + ["ok"] * 3
    ok_first = sum(r["status"] == "ok" for r in first)
    assert f"done: {3 - ok_first} ok, {1 + ok_first} failed, 2 skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_infer_10x3_equals_tools_test_scores(tiny_ckpt, synthetic_dataset, bad_videos, tmp_path):
    """tools/infer.py --views 10x3 writes tools/test.py's per-video scores (10 clips x 3 crops, mean
    softmax) for the same videos; a broken video fails in both."""
    import test as test_cli  # tools/test.py

    from cgd_video.data.lists import VideoRecord, write_video_list

    root = synthetic_dataset / "videos"
    rels = [str(p.relative_to(root)) for p in sorted(root.rglob("*.mp4"))[:2]]
    rels.append(str(bad_videos["truncated"]))  # absolute: used as is (the shared fixture stays untouched)
    listing = write_video_list(tmp_path / "test.txt", [VideoRecord(r, 0) for r in rels])
    assert test_cli.main(["--ckpt", str(tiny_ckpt), "DATA.ROOT", str(root), "DATA.TEST_LIST", str(listing),
                          "TEST.NUM_CLIPS", "10", "TEST.NUM_CROPS", "3", "OUTPUT_DIR", str(tmp_path / "test")]) == 0
    ref = {r["path"]: r for r in _csv_rows(tmp_path / "test" / "predictions.csv")}

    videos = tmp_path / "videos.txt"
    videos.write_text("".join(f"{root / r}\n" for r in rels))
    out = tmp_path / "infer.csv"
    assert infer_cli.main(["--ckpt", str(tiny_ckpt), "--input", str(videos), "--output", str(out), "--device", "cpu",
                           "--views", "10x3", "--topk", "4", "--batch-size", "2", "--num-workers", "0"]) == 0
    rows = _csv_rows(out)
    assert [r["path"] for r in rows] == [str(root / r) for r in rels]
    for rel, row in zip(rels, rows):
        want = ref[rel]
        assert row["status"] == want["status"]
        if row["status"] == "ok":
            got = {row[f"top{k}_label"]: float(row[f"top{k}_score"]) for k in range(1, 5)}
            exp = {want[f"top{k}"]: float(want[f"score{k}"]) for k in range(1, 5)}
            assert got == pytest.approx(exp, abs=2e-6) and row["top1_label"] == want["top1"]
    assert rows[-1]["status"] == "error" and "truncated" in rows[-1]["path"]


def test_infer_timeline_jsonl_and_argument_errors(tiny_ckpt, mixed_folder, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{mixed_folder['good'][0]}\n{mixed_folder['bad'][0]}\n")
    out = tmp_path / "timeline.jsonl"
    assert _infer(tiny_ckpt, listing, out, "--num-workers", "0", "--timeline", "0.4") == 0
    ok, bad = [json.loads(line) for line in out.read_text().splitlines()]
    assert ok["status"] == "ok" and len(ok["timeline"]) == 3
    assert ok["timeline"][0]["start"] == 0.0 and ok["timeline"][0]["top1_label"] in CLASSES
    assert bad["status"] == "error" and "timeline" not in bad
    with pytest.raises(SystemExit):
        _infer(tiny_ckpt, listing, tmp_path / "t.csv", "--timeline", "1")  # timeline needs .jsonl
    with pytest.raises(SystemExit):
        _infer(tiny_ckpt, listing, tmp_path / "t.jsonl", "--views", "10x2")
    with pytest.raises(SystemExit, match="missing"):
        _infer(tiny_ckpt, tmp_path / "missing", tmp_path / "t.jsonl")
