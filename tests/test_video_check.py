"""Decode check: good synthetic videos pass, broken files are reported (never deleted), lists filtered."""

from __future__ import annotations

import csv
import shutil

import numpy as np

from cgd_video.data.lists import read_video_list
from cgd_video.data.video_check import check_video, check_videos

from _train_helpers import run_tool  # noqa: E402


def test_check_video_good_and_bad(synthetic_dataset, synthetic_kw, bad_videos):
    good = next((synthetic_dataset / "videos").rglob("*.mp4"))
    result = check_video(good.name, root=good.parent)
    w, h = synthetic_kw["size"]
    assert (result.status, result.frames, result.fps, result.size, result.codec, result.error) == (
        "ok", synthetic_kw["frames"], float(synthetic_kw["fps"]), f"{w}x{h}", "h264", "")
    assert check_video(good, full=True).frames == synthetic_kw["frames"]
    for name, path in bad_videos.items():
        bad = check_video(path)
        assert bad.status == "error" and bad.error and bad.frames == 0, (name, bad)
        assert "\n" not in bad.error
    assert "empty" in check_video(bad_videos["empty"]).error
    assert "not found" in check_video("nope.mp4", root=synthetic_dataset).error


def test_check_videos_keeps_order_in_process(synthetic_dataset, bad_videos):
    good = sorted((synthetic_dataset / "videos").rglob("*.mp4"))[:2]
    paths = [good[0], bad_videos["text"], good[1], bad_videos["truncated"]]
    results = check_videos(paths, workers=0, progress=False)
    assert [r.path for r in results] == [str(p) for p in paths]
    assert [r.ok for r in results] == [True, False, True, False]


def test_cli_check_filters_lists_and_keeps_files(synthetic_dataset, bad_videos, tmp_path):
    root = tmp_path / "videos"
    good = sorted((synthetic_dataset / "videos").rglob("*.mp4"))[:3]
    for i, path in enumerate(good):
        (root / ("Good" if i < 2 else "Mixed")).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / ("Good" if i < 2 else "Mixed") / path.name)
    for path in bad_videos.values():
        shutil.copy(path, root / "Mixed" / path.name)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    out = tmp_path / "lists"
    assert "3 videos do not decode" in run_tool("build_lists.py", "folder", "--root", str(root), "--out", str(out), "--check",
                                                    "--workers", "2")
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing deleted or moved
    with open(out / "check_report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "status", "frames", "fps", "size", "codec", "reader", "error"]
    assert {row["reader"] for row in rows if row["status"] == "ok"} == {"pyav"}  # the default backend
    status = {row["path"]: row["status"] for row in rows}
    bad_names = {f"Mixed/{p.name}" for p in bad_videos.values()}
    assert {p for p, s in status.items() if s == "error"} == bad_names and len(status) == 6
    rejected = dict(line.split("\t") for line in (out / "rejected.txt").read_text().splitlines())
    assert set(rejected) == bad_names and all(rejected.values())
    train = read_video_list(out / "train.txt", num_classes=2)
    assert sorted(r.path for r in train) == sorted(p for p, s in status.items() if s == "ok")
    assert {r.label for r in train} == {0, 1}


def test_report_names_the_reader_of_each_file(synthetic_dataset, tmp_path):
    """With DATA.BACKEND decord, an AVI (where decord's random access is not frame-exact) is read with PyAV
    and an mp4 with decord; the default backend reads both with PyAV."""
    import av

    avi = tmp_path / "clip.avi"
    with av.open(str(avi), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.max_b_frames = 2
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    mp4 = sorted((synthetic_dataset / "videos").rglob("*.mp4"))[0]
    results = check_videos([avi, mp4], workers=0, progress=False, backend="decord")
    assert [(r.status, r.reader, r.codec) for r in results] == [("ok", "pyav", "mpeg4"), ("ok", "decord", "h264")]
    assert {r.reader for r in check_videos([avi, mp4], workers=0, progress=False)} == {"pyav"}
