"""Frame exactness: every backend returns, for index i, the frame a sequential PyAV decode gives at i.

Fixtures are generated with PyAV in the containers where decord's random access goes wrong on real files
(mpeg4 with B-frames in AVI, like UCF-101's Xvid; mpeg2video in an MPEG program stream) and in those it
is trusted on (h264 with B-frames in MP4 and in Matroska). Each frame has a distinct red level and a
moving bar, so a frame off by one position differs by a mean absolute difference of about 12 or more.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cgd_video.data import pyav_reader
from cgd_video.data.decoding import clear_scan_cache, open_video, reader_for

N, W, H = 40, 64, 48
# (file name, container format, codec, reader that backend="decord" must choose)
FIXTURES = [
    ("xvid_bframes.avi", "avi", "mpeg4", "pyav"),
    ("mpeg2.mpg", "mpeg", "mpeg2video", "pyav"),
    ("h264_bframes.mp4", "mp4", "libx264", "decord"),
    ("h264_bframes.mkv", "matroska", "libx264", "decord"),
]
INDEX_SETS = {
    "sparse": [3, 7, 11, 20, 29, 35],
    "unsorted_repeats": [33, 2, 17, 17, 5, 38, 2],
    "train_window": list(range(5, 37, 2)),
    "first_last": [0, N - 1],
    "one_mid_gop": [22],
}


def expected_reader(name: str) -> str:
    return next(f[3] for f in FIXTURES if f[0] == name)


def _image(i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = (i * 37) % 256
    img[..., 1] = (i * 11) % 256
    x = (i * 3) % (W - 8)
    img[:, x : x + 8, 2] = 255
    return img


def _encode(path: Path, fmt: str, codec: str) -> None:
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if codec == "libx264":
            stream.options = {"bf": "3", "g": "12", "crf": "10"}
        else:
            stream.codec_context.gop_size = 12
            stream.codec_context.max_b_frames = 2
            stream.bit_rate = 2_000_000
        for i in range(N):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_image(i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _sequential(path: Path) -> torch.Tensor:
    """The oracle: every frame, decoded in order by PyAV."""
    with av.open(str(path)) as container:
        return torch.from_numpy(np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]))


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("frame_exact")
    out = {}
    for name, fmt, codec, _ in FIXTURES:
        path = root / name
        _encode(path, fmt, codec)
        out[name] = (path, _sequential(path))
        assert out[name][1].shape == (N, H, W, 3), name
    return out


def _mad(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


def _assert_frames(got: torch.Tensor, ref: torch.Tensor, indices, what: str) -> None:
    assert got.shape[0] == len(indices), what
    for k, i in enumerate(indices):
        err = _mad(got[k], ref[i])
        # the right frame (same decoder output up to RGB rounding), and not a neighbour
        assert err < 1.0, f"{what}: position {k} (frame {i}) differs from the sequential decode by {err:.1f}"


def test_fixtures_are_hard_cases(fixtures):
    """The check below is not vacuous: decord's own random access is off on the AVI and MPEG-PS fixtures,
    and neighbouring frames differ a lot."""
    import decord

    for name in ("xvid_bframes.avi", "mpeg2.mpg"):
        path, ref = fixtures[name]
        got = torch.from_numpy(decord.VideoReader(str(path), num_threads=1).get_batch(INDEX_SETS["sparse"]).asnumpy())
        errors = [_mad(got[k], ref[i]) for k, i in enumerate(INDEX_SETS["sparse"])]
        assert max(errors) > 10, f"{name}: decord was exact here ({errors}); the fixture no longer tests anything"
    ref = fixtures["h264_bframes.mp4"][1]
    assert min(_mad(ref[i], ref[i + 1]) for i in range(N - 1)) > 10


@pytest.mark.parametrize("name,_fmt,_codec,expected", FIXTURES, ids=[f[0] for f in FIXTURES])
def test_reader_choice(fixtures, name, _fmt, _codec, expected):
    path = fixtures[name][0]
    assert reader_for(path, "decord") == expected
    assert open_video(path, "decord").backend == expected
    assert reader_for(path, "pyav") == "pyav" and reader_for(path.parent, "decord") == "frames"


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("name", [f[0] for f in FIXTURES])
def test_every_backend_container_and_index_set_is_exact(fixtures, backend, name):
    path, ref = fixtures[name]
    for label, indices in INDEX_SETS.items():
        reader = open_video(path, backend)  # a fresh reader per set: no state carried between reads
        assert reader.num_frames == N
        _assert_frames(reader.get(indices), ref, indices, f"{backend} {name} {label}")
    if backend == "pyav" and expected_reader(name) == "decord":  # indexed container: the seek + skip path
        reader = open_video(path, "pyav")
        for label, indices in INDEX_SETS.items():
            got = list(reader._iter_indexed(np.unique(indices)))
            assert len(got) == len(np.unique(indices)), f"{name} {label}: the indexed read fell back to sequential decoding"
            frames = np.stack([f for _, f in got])
            _assert_frames(torch.from_numpy(frames), ref, np.unique(indices).tolist(), f"indexed {name} {label}")
    reader = open_video(path, backend)  # one reader, several reads in a row (decord keeps its position)
    for label, indices in INDEX_SETS.items():
        _assert_frames(reader.get(indices), ref, indices, f"{backend} {name} {label} (reused reader)")


@pytest.mark.parametrize("keep_limit", [None, 0], ids=["packets_kept", "file_too_big_to_keep"])
@pytest.mark.parametrize("name", [f[0] for f in FIXTURES])
def test_pyav_first_read_from_its_own_scan_is_exact(fixtures, name, keep_limit, monkeypatch):
    """A PyAV reader that demuxed its file itself decodes its first read from those packets (no second open
    and demux); a reader whose scan was cached opens the file. Both are exact; so is a file over the size
    kept in memory (``keep_limit=0``: every read opens the file)."""
    if keep_limit is not None:
        monkeypatch.setattr(pyav_reader, "KEEP_PACKETS_MAX_BYTES", keep_limit)
    path, ref = fixtures[name]
    for label, indices in INDEX_SETS.items():
        clear_scan_cache()
        fresh = open_video(path, "pyav")
        assert (fresh._own_scan is not None) == (keep_limit is None), label
        cached = open_video(path, "pyav")
        assert cached._own_scan is None and cached.num_frames == fresh.num_frames == N
        _assert_frames(fresh.get(indices), ref, indices, f"{name} {label} (first read from the scan)")
        assert fresh._own_scan is None  # taken over (and closed) by that read
        _assert_frames(cached.get(indices), ref, indices, f"{name} {label} (cached scan)")


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("name", ["xvid_bframes.avi", "h264_bframes.mp4"])
def test_decode_time_scaling_keeps_the_frames(fixtures, backend, name):
    """``short_side`` scales in libav: the right frames, at the requested size, close to a torch resize
    of the sequential decode (different filters, so a tolerance, far below a neighbour's distance)."""
    path, ref = fixtures[name]
    indices = INDEX_SETS["unsorted_repeats"]
    got = open_video(path, backend, short_side=24).get(indices)
    assert got.shape == (len(indices), 24, 32, 3) and got.dtype == torch.uint8
    small = F.interpolate(ref.permute(0, 3, 1, 2).float(), size=(24, 32), mode="bilinear", antialias=True)
    small = small.round().clamp(0, 255).permute(0, 2, 3, 1)
    for k, i in enumerate(indices):
        err = _mad(got[k], small[i])
        neighbours = [_mad(got[k], small[j]) for j in (i - 1, i + 1) if 0 <= j < N]
        assert err < 6 and err < min(neighbours) / 2, f"{backend} {name} frame {i}: {err:.1f} vs {neighbours}"
    # a source at or below short_side is not touched
    assert torch.equal(open_video(path, backend, short_side=48).get([3]), open_video(path, backend).get([3]))


ITER_SETS = {
    "sparse": [3, 7, 11, 20, 29, 35],  # several GOPs (keyframe every 12): the indexed pass jumps ahead
    "dense_then_gap": list(range(0, 10)) + [36, 37, 38, 39],
    "one_per_gop": [1, 13, 25, 37],
    "all": list(range(N)),
}


@pytest.mark.parametrize("keep_limit", [None, 0], ids=["packets_kept", "file_too_big_to_keep"])
@pytest.mark.parametrize("name", [f[0] for f in FIXTURES])
def test_pyav_iter_frames_is_exact(fixtures, name, keep_limit, monkeypatch):
    """``iter_frames`` (one decoder pass for many reads, ``--timeline``) yields each wanted frame once, in
    order, equal to the sequential decode; on indexed containers without falling back to sequential."""
    if keep_limit is not None:
        monkeypatch.setattr(pyav_reader, "KEEP_PACKETS_MAX_BYTES", keep_limit)
    path, ref = fixtures[name]
    for label, wanted in ITER_SETS.items():
        clear_scan_cache()
        got = list(open_video(path, "pyav").iter_frames(wanted))
        assert [i for i, _ in got] == wanted, f"{name} {label}"
        _assert_frames(torch.from_numpy(np.stack([f for _, f in got])), ref, wanted, f"iter {name} {label}")
        if expected_reader(name) == "decord":  # indexed: the jump + skip pass delivers everything itself
            indexed = [i for i, _ in open_video(path, "pyav")._iter_indexed(np.asarray(wanted))]
            assert indexed == wanted, f"{name} {label}: the indexed pass fell back to sequential decoding"


@pytest.mark.parametrize("name", ["xvid_bframes.avi", "h264_bframes.mp4"])
def test_pyav_iter_frames_past_the_end_reports_the_true_count(fixtures, name):
    path, ref = fixtures[name]
    reader = open_video(path, "pyav")
    reader.num_frames = N + 5  # a header that over-counts: the pass finds the truth
    got = []
    with pytest.raises(pyav_reader.FrameCountMismatch) as err:
        for item in reader.iter_frames([5, 30, N + 2]):
            got.append(item)
    assert err.value.num_frames == N and reader.num_frames == N
    assert [i for i, _ in got] == [5, 30]
    _assert_frames(torch.from_numpy(np.stack([f for _, f in got])), ref, [5, 30], f"{name} before the end")
