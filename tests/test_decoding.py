"""Readers of cgd_video.data.decoding: decord vs PyAV agreement, fallback, frame folders, bad files."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from cgd_video.data import decoding
from cgd_video.data.decoding import FrameCountMismatch, VideoDecodeError, open_video, read_clip


def _videos(root: Path) -> list:
    return sorted((root / "videos").rglob("*.mp4"))


def _write(path: Path, codec: str, n: int = 20, size=(64, 48), vfr: bool = False) -> np.ndarray:
    """Encode n moving-bar frames with PyAV; returns the RGB frames that went in."""
    w, h = size
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, ..., 0] = 40 + 8 * i
        frames[i, :, (3 * i) % w : (3 * i) % w + 8, 1] = 220
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if vfr:  # 40 ms and 120 ms gaps: the timestamps say nothing about the frame index
                frame.pts, frame.time_base = t, Fraction(1, 1000)
                t += 120 if len(str(t)) % 2 else 40
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return frames


def _mad(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


def test_decord_and_pyav_agree_frame_for_frame(synthetic_dataset):
    for path in _videos(synthetic_dataset)[:3]:
        d, p = open_video(path, "decord"), open_video(path, "pyav")
        assert d.backend == "decord"
        assert d.num_frames == p.num_frames == 24 and d.fps == pytest.approx(25) and p.fps == pytest.approx(25)
        a, b = d.get_all(), p.get_all()
        assert a.dtype == torch.uint8 and a.shape == (24, 48, 64, 3) == b.shape
        for t in range(24):
            assert _mad(a[t], b[t]) < 2, f"{path.name} frame {t}"
        # frames differ from each other, so agreement above is not vacuous
        assert _mad(a[0], a[12]) > 0.1


def test_get_returns_requested_order_with_repeats(synthetic_dataset):
    path = _videos(synthetic_dataset)[0]
    for backend in ("decord", "pyav"):
        reader = open_video(path, backend)
        every = reader.get_all()
        indices = [5, 0, 5, 23, 1]
        assert torch.equal(reader.get(indices), every[indices])


def test_pyav_decodes_what_was_encoded(tmp_path):
    truth = _write(tmp_path / "bars.mp4", "libx264")
    frames = open_video(tmp_path / "bars.mp4", "pyav").get_all().numpy()
    assert frames.shape == truth.shape
    assert np.abs(frames.astype(int) - truth).mean() < 6  # lossy codec, but the same pictures in order


def test_variable_frame_rate_is_indexed_by_decoded_frames(tmp_path):
    _write(tmp_path / "vfr.mp4", "libx264", n=18, vfr=True)
    d, p = open_video(tmp_path / "vfr.mp4", "decord"), open_video(tmp_path / "vfr.mp4", "pyav")
    assert d.num_frames == p.num_frames == 18
    assert _mad(d.get_all(), p.get_all()) < 2


@pytest.mark.skipif(not {"libsvtav1", "libaom-av1"} & set(av.codecs_available), reason="no AV1 encoder in PyAV")
def test_decord_falls_back_to_pyav_for_av1(tmp_path):
    codec = "libsvtav1" if "libsvtav1" in av.codecs_available else "libaom-av1"
    truth = _write(tmp_path / "av1.mp4", codec, n=12)
    import decord

    with pytest.raises(Exception):  # decord really cannot read it, so the fallback is exercised
        decord.VideoReader(str(tmp_path / "av1.mp4")).get_batch([0]).asnumpy()
    reader = open_video(tmp_path / "av1.mp4")  # default backend: decord
    assert reader.backend == "pyav" and reader.num_frames == 12
    frames = reader.get([0, 11]).numpy()
    assert np.abs(frames.astype(int) - truth[[0, 11]]).mean() < 8


def test_decord_error_mid_file_falls_back_to_pyav(synthetic_dataset, monkeypatch):
    path = _videos(synthetic_dataset)[1]
    expected = open_video(path, "pyav").get([3, 9])
    reader = open_video(path, "decord")
    assert reader.backend == "decord"

    def broken(*args, **kwargs):
        raise RuntimeError("simulated decord failure")

    monkeypatch.setattr(reader._vr, "get_batch", broken)
    assert torch.equal(reader.get([3, 9]), expected)
    assert reader.backend == "pyav"


def test_wrong_frame_count_is_corrected_by_real_reads(synthetic_dataset):
    path = _videos(synthetic_dataset)[0]
    for backend in ("decord", "pyav"):
        reader = open_video(path, backend)
        reader.num_frames = 30  # as if the header announced 30 frames; only 24 exist
        with pytest.raises(FrameCountMismatch) as err:
            reader.get([0, 29])
        assert err.value.num_frames == 24
        reader.num_frames = 30
        last4 = read_clip(reader, lambda n: np.arange(n - 4, n))  # resampled with the true count
        assert reader.num_frames == 24
        assert torch.equal(last4, open_video(path, "pyav").get([20, 21, 22, 23]))


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("kind", ["empty", "truncated", "text"])
def test_bad_files_raise_with_path_and_reason(bad_videos, backend, kind):
    path = bad_videos[kind]
    with pytest.raises(VideoDecodeError) as err:
        open_video(path, backend).get_all()
    assert str(path) in str(err.value) and err.value.reason
    if kind == "empty":
        assert "0 bytes" in err.value.reason


def test_truncated_after_the_index_fails_when_decoding(tmp_path):
    with av.open(str(tmp_path / "full.mp4"), "w", options={"movflags": "faststart"}) as c:  # index first
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = 64, 48, "yuv420p", {"g": "4"}
        rng = np.random.default_rng(0)
        for _ in range(40):
            for packet in s.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), np.uint8))):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        open_video(tmp_path / "cut.mp4").get_all()


def test_missing_file_and_unknown_backend(tmp_path):
    with pytest.raises(VideoDecodeError, match="file not found"):
        open_video(tmp_path / "nope.mp4")
    with pytest.raises(ValueError, match="decord, pyav, frames"):
        open_video(tmp_path / "nope.mp4", "opencv")


def test_frame_folder_reads_sorted_images(tmp_path):
    ramp = np.linspace(0, 60, 40)[None, :, None]
    images = np.stack([np.broadcast_to(20 * i + ramp, (32, 40, 3)) for i in range(12)]).astype(np.uint8)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in reversed(range(12)):  # written out of order; the reader sorts by name
        Image.fromarray(images[i]).save(folder / f"img_{i + 1:05d}.jpg", quality=95)
    (folder / "notes.txt").write_text("not a frame")
    reader = open_video(folder)  # a directory is a frame folder whatever the backend
    assert reader.num_frames == 12
    got = reader.get([7, 2, 7]).numpy()
    assert got.shape == (3, 32, 40, 3)
    assert np.abs(got.astype(int) - images[[7, 2, 7]]).mean() < 2  # JPEG q95; a wrong frame is off by >= 20
    (folder / "img_00013.jpg").write_bytes(b"garbage")
    with pytest.raises(VideoDecodeError, match="img_00013.jpg"):
        open_video(folder, "frames").get([12])
    with pytest.raises(VideoDecodeError, match="no image files"):
        (tmp_path / "empty").mkdir()
        open_video(tmp_path / "empty", "frames")


def test_decode_error_pickles_for_worker_processes():
    import pickle

    err = pickle.loads(pickle.dumps(FrameCountMismatch("/x.mp4", 3, 7)))
    assert (err.path, err.num_frames, err.requested) == ("/x.mp4", 3, 7)
    assert "x.mp4" in str(pickle.loads(pickle.dumps(VideoDecodeError("/x.mp4", "bad"))))
    assert decoding.BACKENDS == ("decord", "pyav", "frames")


def test_frame_stack_refuses_a_size_change_mid_stream_and_gathers_without_copy():
    """A stream whose frame size changes mid-read is a decode error naming the file (the dataset then
    replaces the video), not a numpy broadcasting error that would kill a worker; a clip requested in
    sorted unique order is returned without the gather copy, any other order is gathered."""
    from cgd_video.data.frame_arrays import FrameStack, gather

    stack = FrameStack("clip.mp4", 2)
    stack.put(0, np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(VideoDecodeError, match="clip.mp4.*frame size changes"):
        stack.put(1, np.zeros((5, 6, 3), np.uint8))
    frames = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
    assert np.shares_memory(gather(frames, np.array([0, 1, 2])).numpy(), frames)
    again = gather(frames, np.array([2, 0, 0]))
    assert not np.shares_memory(again.numpy(), frames) and torch.equal(again, torch.from_numpy(frames[[2, 0, 0]]))
