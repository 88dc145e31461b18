"""Dataset preprocessor: short side, frame count and content kept, broken inputs reported, resumable,
atomic, the source never touched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cgd_video.data import preprocess as P
from cgd_video.data.decoding import open_video, reader_for

ROOT = Path(__file__).resolve().parents[1]
# relative path -> (container, codec, width, height, frames)
SOURCES = {
    "Walk/v_walk_01.avi": ("avi", "mpeg4", 96, 72, 30),
    "Walk/v_walk_02.mp4": ("mp4", "libx264", 96, 72, 26),
    "Run/v_run_01.mkv": ("matroska", "libx264", 72, 96, 20),  # portrait
    "Run/small.mp4": ("mp4", "libx264", 40, 30, 12),  # already below the short side: not upscaled
}


def _image(i: int, w: int, h: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (i * 37) % 256
    x = (i * 3) % (w - 12)
    img[:, x : x + 12, 2] = 255
    return img


def _write(path: Path, fmt: str, codec: str, w: int, h: int, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "mpeg4":
            stream.codec_context.max_b_frames = 2
            stream.bit_rate = 2_000_000
        for i in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_image(i, w, h), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def tree(tmp_path) -> Path:
    src = tmp_path / "src"
    for rel, spec in SOURCES.items():
        _write(src / rel, *spec)
    (src / "Run" / "broken.mp4").write_text("not a video\n")
    (src / "Run" / "notes.txt").write_text("not listed: not a video extension\n")
    return src


def _fingerprint(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _sequential(path: Path) -> torch.Tensor:
    with av.open(str(path)) as container:
        return torch.from_numpy(np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]))


def test_outputs_keep_layout_frames_and_content_at_the_new_short_side(tree, tmp_path):
    before = _fingerprint(tree)
    dst = tmp_path / "dst"
    report = P.preprocess_tree(tree, dst, short_side=48, gop=8, workers=2, progress=False)
    assert _fingerprint(tree) == before  # the source is never touched
    assert sorted(report.written) == sorted(SOURCES) and report.skipped == []
    assert list(report.failed) == ["Run/broken.mp4"] and report.failed["Run/broken.mp4"]
    failures = (dst / P.FAILURES_FILE).read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith("Run/broken.mp4\t")
    assert not (dst / "Run" / "broken.mp4").exists() and not (dst / "Run" / "notes.txt").exists()
    expected_size = {"Walk/v_walk_01.avi": (48, 64), "Walk/v_walk_02.mp4": (48, 64),
                     "Run/v_run_01.mkv": (64, 48), "Run/small.mp4": (30, 40)}
    for rel, (_, _, w, h, n) in SOURCES.items():
        reader = open_video(dst / rel)
        assert reader_for(dst / rel, "decord") == "decord"  # MP4 content, whatever the name says: indexed
        assert abs(reader.num_frames - n) <= 1, rel
        out = reader.get_all()
        assert tuple(out.shape[1:3]) == expected_size[rel], rel
        src = _sequential(tree / rel).permute(0, 3, 1, 2).float()
        ref = F.interpolate(src, size=expected_size[rel], mode="bilinear", antialias=True).permute(0, 2, 3, 1)
        for i in (0, n // 2, min(n, out.shape[0]) - 1):  # the same moment at the same index
            err = (out[i].float() - ref[i]).abs().mean().item()
            neighbour = (out[i].float() - ref[i - 1 if i else 1]).abs().mean().item()
            assert err < 8 and err < neighbour / 2, (rel, i, err, neighbour)


def test_resumes_after_an_interruption(tree, tmp_path, monkeypatch):
    dst = tmp_path / "dst"
    real = P.transcode
    calls = []

    def interrupted(src, *args, **kwargs):
        calls.append(Path(src).name)
        if len(calls) == 3:  # scan order: broken.mp4 (fails), small.mp4 (written), then this one
            raise KeyboardInterrupt  # Ctrl-C while a file is being encoded
        return real(src, *args, **kwargs)

    monkeypatch.setattr(P, "transcode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        P.preprocess_tree(tree, dst, short_side=48, workers=0, progress=False)
    done = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert len(done) == 1  # only the finished file exists: no partial output
    first = dst / done[0]
    mtime = first.stat().st_mtime_ns
    stale = first.parent / f".{first.name}.abcd1234.tmp"  # what a SIGKILL during a write leaves
    stale.write_bytes(b"partial")
    monkeypatch.setattr(P, "transcode", real)
    report = P.preprocess_tree(tree, dst, short_side=48, workers=0, progress=False)
    assert report.skipped == done and sorted(report.written) == sorted(set(SOURCES) - set(done))
    assert first.stat().st_mtime_ns == mtime and not stale.exists()
    again = P.preprocess_tree(tree, dst, short_side=48, workers=0, progress=False)
    assert sorted(again.skipped) == sorted(SOURCES) and again.written == [] and list(again.failed) == ["Run/broken.mp4"]


def test_bad_arguments_are_one_line_errors(tree, tmp_path):
    with pytest.raises(ValueError, match="overlap"):
        P.preprocess_tree(tree, tree / "copy", short_side=48, workers=0, progress=False)
    with pytest.raises(ValueError, match="not a folder"):
        P.preprocess_tree(tmp_path / "nope", tmp_path / "dst", short_side=48, workers=0, progress=False)
    cli = [sys.executable, str(ROOT / "tools" / "preprocess_videos.py"), "--src", str(tree), "--dst",
           str(tree / "copy"), "--short-side", "48", "--no-progress"]
    run = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "overlap" in run.stderr and "Traceback" not in run.stderr
    assert not (tree / "copy").exists()
