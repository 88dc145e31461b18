"""Batch inference: folder scanning, the resumable CSV/JSONL writer, run_inference and the tools/infer.py CLI."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cgd_video.data.scan import NoVideosError, scan_inputs
from cgd_video.inference.batch import ResultWriter, result_columns, run_inference
from cgd_video.inference.predictor import Predictor

from _train_helpers import PYTHON, REPO, subprocess_env
from test_predictor import CLASSES, make_tiny_checkpoint


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
# batch inference end to end on a folder mixing good and broken files
# ------------------------------------------------------------------------------------------------
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


def _infer(ckpt, source, out, overwrite=False, num_workers=0, timeline=None, views="1x1", topk=3):
    """What tools/infer.py does after parsing its arguments (CPU, batches of 2 videos)."""
    p = Predictor.from_checkpoint(ckpt, device="cpu", views=views, topk=topk, batch_size=2, num_workers=num_workers)
    with ResultWriter(out, p.topk, overwrite=overwrite) as writer:
        return run_inference(p, scan_inputs(source), writer, timeline=timeline, progress=False)


def test_infer_folder_one_row_per_video_then_resume(tiny_ckpt, mixed_folder, tmp_path):
    out = tmp_path / "preds.csv"
    counts = _infer(tiny_ckpt, mixed_folder["folder"], out, num_workers=1)
    assert (counts.ok, counts.error, counts.skipped, counts.interrupted) == (3, 3, 0, False)
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

    # Same command again: everything is skipped, the file is unchanged.
    before = out.read_bytes()
    counts = _infer(tiny_ckpt, mixed_folder["folder"], out)
    assert out.read_bytes() == before and (counts.ok, counts.error, counts.skipped) == (0, 0, 6)
    # A new video: only it is scored and appended.
    shutil.copy(mixed_folder["spare"], mixed_folder["folder"] / "sub" / "new.mkv")
    _infer(tiny_ckpt, mixed_folder["folder"], out)
    after = out.read_bytes()
    assert after.startswith(before) and len(_csv_rows(out)) == 7
    assert _csv_rows(out)[-1]["path"].endswith("new.mkv")
    # --overwrite starts over: only this run's (single, broken) file remains.
    listing = tmp_path / "one.txt"
    listing.write_text(f"{mixed_folder['bad'][0]}\n")
    _infer(tiny_ckpt, listing, out, overwrite=True)
    assert [(r["path"], r["status"]) for r in _csv_rows(out)] == [(str(mixed_folder["bad"][0]), "error")]


def test_infer_ctrl_c_leaves_valid_file_and_resumes(tiny_ckpt, mixed_folder, tmp_path, monkeypatch):
    out = tmp_path / "preds.jsonl"
    real = Predictor.predict_many

    def interrupted(self, paths, **kw):
        for i, row in enumerate(real(self, paths, **kw)):
            if i == 2:
                raise KeyboardInterrupt
            yield row

    monkeypatch.setattr(Predictor, "predict_many", interrupted)
    assert _infer(tiny_ckpt, mixed_folder["folder"], out).interrupted
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(first) == 2
    monkeypatch.setattr(Predictor, "predict_many", real)
    counts = _infer(tiny_ckpt, mixed_folder["folder"], out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[:2] == first and len({r["path"] for r in rows}) == len(rows) == 6
    assert sorted(r["status"] for r in rows) == ["error"] * 3 + ["ok"] * 3
    ok_first = sum(r["status"] == "ok" for r in first)
    assert (counts.ok, counts.error, counts.skipped, counts.interrupted) == (3 - ok_first, 1 + ok_first, 2, False)


@pytest.mark.slow
def test_infer_10x3_equals_tools_test_scores(tiny_ckpt, synthetic_dataset, bad_videos, tmp_path):
    """Inference with --views 10x3 writes tools/test.py's per-video scores (10 clips x 3 crops, mean
    softmax) for the same videos; a broken video fails in both."""
    from cgd_video.boundary.evaluation import load_for_eval, run_test_from_config
    from cgd_video.data.lists import VideoRecord, write_video_list

    root = synthetic_dataset / "videos"
    rels = [str(p.relative_to(root)) for p in sorted(root.rglob("*.mp4"))[:2]]
    rels.append(str(bad_videos["truncated"]))  # absolute: used as is (the shared fixture stays untouched)
    listing = write_video_list(tmp_path / "test.txt", [VideoRecord(r, 0) for r in rels])
    cfg, path, state = load_for_eval(tiny_ckpt, None, ["DATA.ROOT", str(root), "DATA.TEST_LIST", str(listing),
                                                       "TEST.NUM_CLIPS", "10", "TEST.NUM_CROPS", "3",
                                                       "OUTPUT_DIR", str(tmp_path / "test")])
    run_test_from_config(cfg, path, state, progress=False)
    ref = {r["path"]: r for r in _csv_rows(tmp_path / "test" / "predictions.csv")}

    videos = tmp_path / "videos.txt"
    videos.write_text("".join(f"{root / r}\n" for r in rels))
    out = tmp_path / "infer.csv"
    _infer(tiny_ckpt, videos, out, views="10x3", topk=4)
    rows = _csv_rows(out)
    assert [r["path"] for r in rows] == [str(root / r) for r in rels]
    for rel, row in zip(rels, rows):
        want = ref[rel]  # tools/test.py names videos as the list does
        assert row["status"] == want["status"]
        if row["status"] == "ok":
            got = {row[f"top{k}_label"]: float(row[f"top{k}_score"]) for k in range(1, 5)}
            exp = {want[f"top{k}"]: float(want[f"score{k}"]) for k in range(1, 5)}
            assert got == pytest.approx(exp, abs=2e-6) and row["top1_label"] == want["top1"]
    assert rows[-1]["status"] == "error" and "truncated" in rows[-1]["path"]


def test_infer_timeline_jsonl(tiny_ckpt, mixed_folder, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{mixed_folder['good'][0]}\n{mixed_folder['bad'][0]}\n")
    out = tmp_path / "timeline.jsonl"
    _infer(tiny_ckpt, listing, out, timeline=0.4)
    ok, bad = [json.loads(line) for line in out.read_text().splitlines()]
    assert ok["status"] == "ok" and len(ok["timeline"]) == 3
    assert ok["timeline"][0]["start"] == 0.0 and ok["timeline"][0]["top1_label"] in CLASSES
    assert bad["status"] == "error" and "timeline" not in bad


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(REPO / "tools" / "infer.py"), *args], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)


def test_infer_cli_runs_and_refuses_bad_input_in_one_line(tiny_ckpt, mixed_folder, tmp_path):
    """The real CLI: a mixed folder gives one row per video; a folder with no videos, a timeline into a
    CSV and bad views end with exit 2 and one line saying why, never a traceback."""
    out = tmp_path / "preds.csv"
    run = _cli("--ckpt", str(tiny_ckpt), "--input", str(mixed_folder["folder"]), "--output", str(out),
               "--device", "cpu", "--batch-size", "2", "--num-workers", "0", "--topk", "3")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "done: 3 ok, 3 failed, 0 skipped" in run.stdout and len(_csv_rows(out)) == 6
    empty = tmp_path / "empty"
    _touch(empty / "notes.txt")
    run = _cli("--ckpt", str(tiny_ckpt), "--input", str(empty), "--output", str(tmp_path / "e.csv"))
    lines = [x for x in run.stderr.splitlines() if x.strip()]
    assert run.returncode == 2 and len(lines) == 1 and "no video files" in lines[0] and str(empty) in lines[0]
    assert not (tmp_path / "e.csv").exists()
    run = _cli("--ckpt", str(tiny_ckpt), "--input", str(empty), "--output", str(tmp_path / "t.csv"),
               "--timeline", "1", "--views", "10x2")
    assert run.returncode == 2 and "Traceback" not in run.stderr and "--views" in run.stderr
