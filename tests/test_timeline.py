"""``--timeline`` windows decoded in one pass (data/timeline.py): the same items as one read per window,
bit for bit, on an AVI (no pts index: per-window reads decode from frame 0) and an h264 mp4 (indexed,
keyframe interval longer than a window), with the single pass's fallbacks."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cgd_video.data import pyav_reader
from cgd_video.data.lists import VideoRecord
from cgd_video.data.decoding import clear_scan_cache
from cgd_video.data.test_views import MultiViewTestDataset
from cgd_video.data.timeline import TimelineViews, timeline_windows

FRAMES, W, H = 130, 64, 48
VIEW_KW = dict(num_frames=4, sampling_rate=2, test_scale=36, test_crop=32)


def _encode(path: Path, fmt: str, codec: str) -> Path:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if codec == "libx264":
            stream.options = {"bf": "3", "g": "50", "crf": "20"}  # a GOP is 2.5 windows of 0.8 s
        else:
            stream.codec_context.gop_size, stream.codec_context.max_b_frames = 12, 2
            stream.bit_rate = 1_000_000
        for i in range(FRAMES):
            img = np.full((H, W, 3), (i * 7) % 256, np.uint8)
            img[:, (i * 3) % (W - 8):(i * 3) % (W - 8) + 8, 2] = 255
            img[rng.integers(0, H), :, 1] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("timeline")
    return {"avi": _encode(root / "long.avi", "avi", "mpeg4"), "mp4": _encode(root / "long.mp4", "mp4", "libx264")}


def _windowed(path: Path, seconds: float, backend: str = "pyav", clips: int = 2, crops: int = 3):
    windows = timeline_windows(FRAMES, 25.0, seconds)
    return MultiViewTestDataset([VideoRecord(str(path), -1)] * len(windows), None, num_clips=clips,
                                num_crops=crops, backend=backend, windows=windows, **VIEW_KW)


def _assert_same_items(got: list, ds: MultiViewTestDataset) -> None:
    assert len(got) == len(ds)
    for i, item in enumerate(got):
        ref = ds[i]
        assert item.keys() == ref.keys()
        assert (item["index"], item["ok"], item["error"], item["path"]) == (i, ref["ok"], ref["error"], ref["path"])
        assert torch.equal(item["views"], ref["views"]), f"window {i}: views differ from the per-window read"


def _count_decodes(monkeypatch) -> list:
    """Record every decoder the PyAV reader sets up (one per read; one for a whole single pass)."""
    calls = []
    original = pyav_reader.PyAVReader._decoding
    monkeypatch.setattr(pyav_reader.PyAVReader, "_decoding", lambda self: calls.append(1) or original(self))
    return calls


@pytest.mark.parametrize("container", ["avi", "mp4"])
@pytest.mark.parametrize("views", [(2, 3), (1, 1)], ids=["2x3", "1x1"])
def test_one_pass_equals_one_read_per_window(videos, container, views, monkeypatch):
    ds = _windowed(videos[container], 0.8, clips=views[0], crops=views[1])  # 20-frame windows, last overlaps
    assert len(ds) == 7 and ds.windows[-1] == (110, 20)
    calls = _count_decodes(monkeypatch)
    clear_scan_cache()
    got = list(TimelineViews(ds))
    assert len(calls) == 1, "the video was not decoded in one pass"
    calls.clear()
    _assert_same_items(got, ds)
    assert len(calls) == len(ds)  # the reference: one decoder per window
    assert not torch.equal(got[0]["views"], got[3]["views"])


def test_a_window_longer_than_the_video_is_the_whole_video(videos):
    ds = _windowed(videos["avi"], 60.0)
    assert ds.windows == [(0, FRAMES)]
    _assert_same_items(list(TimelineViews(ds)), ds)


def test_readers_without_a_single_pass_read_per_window(videos, monkeypatch):
    """decord on an indexed file has no ``iter_frames``: the dataset's own reads, same items."""
    ds = _windowed(videos["mp4"], 0.8, backend="decord")
    _assert_same_items(list(TimelineViews(ds)), ds)


def test_a_pass_that_fails_hands_the_rest_to_per_window_reads(videos, monkeypatch):
    """The single pass stops (here: the stream 'ends' after 70 frames); the windows from there on are read
    one by one, which report their own errors; earlier windows keep their one-pass views."""
    ds = _windowed(videos["avi"], 0.8)
    original = pyav_reader.PyAVReader.iter_frames

    def short(self, wanted):
        for i, frame in original(self, wanted):
            if i >= 70:
                raise pyav_reader.VideoDecodeError(self.path, "simulated failure mid-stream")
            yield i, frame

    monkeypatch.setattr(pyav_reader.PyAVReader, "iter_frames", short)
    _assert_same_items(list(TimelineViews(ds)), ds)


def test_an_undecodable_video_gives_error_items(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video at all" * 10)
    windows = [(0, 20), (20, 20)]
    ds = MultiViewTestDataset([VideoRecord(str(bad), -1)] * 2, None, num_clips=1, num_crops=1, windows=windows,
                              **VIEW_KW)
    got = list(TimelineViews(ds))
    assert [it["ok"] for it in got] == [False, False] and all(it["error"] for it in got)
    _assert_same_items(got, ds)
