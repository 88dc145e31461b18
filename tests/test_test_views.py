"""The test views (data/test_views.py) on real synthetic mp4s: decode-once equals per-view decoding,
clip-major order, windows, bad videos reported (never dropped), the one collate keeps paths."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cgd_video.data.decoding import PyAVReader
from cgd_video.data.test_views import MultiViewTestDataset, clip_indices, collate_views
from cgd_video.data.timeline import timeline_windows

from test_datasets import KW, _records, _with_bad  # the same tiny records as the training dataset tests


def _test_ds(root, records, **kw):
    args = dict(num_clips=3, num_crops=3, test_scale=48, test_crop=40, **KW)
    args.update(kw)
    return MultiViewTestDataset(records, root, **args)


def test_decode_once_equals_per_view_decoding(synthetic_dataset, monkeypatch):
    records = _records(synthetic_dataset)[:2]
    ds = _test_ds(synthetic_dataset, records)
    calls = []
    original = PyAVReader.get
    monkeypatch.setattr(PyAVReader, "get", lambda self, idx: calls.append(len(idx)) or original(self, idx))
    item = ds[1]
    assert calls == [len(np.unique(ds.clip_indices(24, 1)))]  # one decode call for all 9 views
    assert item["ok"] and item["error"] == "" and item["label"] == records[1].label and item["index"] == 1
    assert item["views"].shape == (9, 3, 4, 40, 40)
    calls.clear()
    reference = ds.views_per_view(1)
    assert len(calls) == 9
    assert torch.equal(item["views"], reference)
    assert not torch.equal(item["views"][0], item["views"][1])  # crops differ
    assert not torch.equal(item["views"][0], item["views"][3])  # clips differ


def test_uint8_views_normalised_by_the_consumer_equal_the_float_path(synthetic_dataset):
    """The views leave the dataset as uint8 in the model layout; ``normalize_views`` on them gives the
    float views of the former in-dataset path (decode, resize, crop, ``normalize``) within 1e-6."""
    from cgd_video.data import sampling, transforms as T
    from cgd_video.data.decoding import open_video

    records = _records(synthetic_dataset)[:1]
    mean, std = (0.43, 0.4, 0.39), (0.2, 0.21, 0.22)
    ds = _test_ds(synthetic_dataset, records, mean=mean, std=std)
    views = ds[0]["views"]
    assert views.dtype == torch.uint8 and views.shape == (9, 3, 4, 40, 40) and views.is_contiguous()
    got = T.normalize_views(views, ds.mean, ds.std, device="cpu")
    path = ds.path(0)
    old = []
    for clip in ds.clip_indices(open_video(path).num_frames, 0):
        x = T.test_frames(open_video(path).get(clip), ds.test_scale, ds.test_crop)
        for box in sampling.test_crop_boxes(x.shape[-2], x.shape[-1], ds.test_crop, ds.num_crops):
            old.append(T.normalize(T.crop(x, box), mean, std))
    torch.testing.assert_close(got, torch.stack(old), atol=1e-6, rtol=0)


def test_views_are_clip_major(synthetic_dataset):
    records = _records(synthetic_dataset)[:1]
    views = _test_ds(synthetic_dataset, records)[0]["views"]
    one_clip = _test_ds(synthetic_dataset, records, num_clips=1)[0]["views"]  # the centred clip = middle one
    assert torch.equal(views[3:6], one_clip)
    centre = _test_ds(synthetic_dataset, records, num_clips=1, num_crops=1)[0]["views"]
    assert centre.shape == (1, 3, 4, 40, 40) and torch.equal(centre[0], one_clip[1])


def test_bad_test_videos_are_reported_not_dropped(synthetic_dataset, bad_videos):
    records = _with_bad(synthetic_dataset, bad_videos)
    ds = _test_ds(synthetic_dataset, records, num_clips=2, num_crops=1)
    loader = DataLoader(ds, batch_size=3, num_workers=0, collate_fn=collate_views)
    items = [b for batch in loader for b in zip(batch["ok"], batch["error"], batch["path"], batch["views"])]
    assert len(items) == len(records)
    for i, (ok, error, path, views) in enumerate(items):
        assert views.shape == (2, 3, 4, 40, 40)
        if i in (1, 3, 5):
            assert not ok and error and path.endswith(Path(records[i].path).name)
            assert not views.any()
        else:
            assert ok and error == "" and views.abs().sum() > 0
    assert "0 bytes" in items[1][1]


def test_constructor_errors(synthetic_dataset):
    records = _records(synthetic_dataset)
    with pytest.raises(ValueError, match="1 or 3"):
        MultiViewTestDataset(records, synthetic_dataset, num_crops=5)
    with pytest.raises(ValueError, match="2 windows for"):
        MultiViewTestDataset(records, synthetic_dataset, windows=[None, (0, 4)])


def test_timeline_windows_tile_the_video_and_a_window_is_scored_like_a_video(synthetic_dataset):
    assert timeline_windows(24, 25.0, 0.4) == [(0, 10), (10, 10), (14, 10)]  # the last one ends at frame 24
    assert timeline_windows(20, 25.0, 0.4) == [(0, 10), (10, 10)]
    assert timeline_windows(24, 25.0, 10.0) == [(0, 24)]  # longer than the video: the whole video
    with pytest.raises(ValueError, match="> 0 seconds"):
        timeline_windows(24, 25.0, 0)
    # A window's clips follow the test rule on the window's frames, shifted to its start.
    idx = clip_indices(24, 4, 2, 2, window=(10, 10))
    assert idx.tolist() == [[10, 12, 14, 16], [13, 15, 17, 19]]  # clip span 7: starts 0 and 3
    records = _records(synthetic_dataset)[:1]
    whole = _test_ds(synthetic_dataset, records)
    windowed = _test_ds(synthetic_dataset, records * 2, windows=[(0, 24), (10, 10)])
    assert torch.equal(windowed[0]["views"], whole[0]["views"])  # the full window is the video
    assert torch.equal(windowed[1]["views"], windowed.views_per_view(1))
    assert not torch.equal(windowed[1]["views"], whole[0]["views"])
