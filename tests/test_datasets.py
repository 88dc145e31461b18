"""TrainClipDataset on real synthetic mp4s: determinism, bad videos (the test dataset: test_test_views.py)."""

import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from cgd_video.data import datasets as D
from cgd_video.data.lists import VideoRecord

KW = dict(num_frames=4, sampling_rate=2)


def _records(root: Path) -> list:
    videos = sorted((root / "videos").rglob("*.mp4"))
    classes = sorted({p.parent.name for p in videos})
    return [VideoRecord(p.relative_to(root).as_posix(), classes.index(p.parent.name)) for p in videos]


def _with_bad(root: Path, bad_videos: dict) -> list:
    """Good records with the three broken files (absolute paths) at indices 1, 3, 5."""
    records = _records(root)[:6]
    for i, kind in zip((1, 3, 5), ("empty", "truncated", "text")):
        records[i] = VideoRecord(str(bad_videos[kind]), 99)
    return records


def test_train_clip_shape_label_and_relative_paths(synthetic_dataset):
    records = _records(synthetic_dataset)
    ds = D.TrainClipDataset(records, synthetic_dataset, crop_size=32, **KW)
    clip, label, index, replaced_from = ds[2]
    assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.float32
    assert (label, index, replaced_from) == (records[2].label, 2, -1)
    assert -2.2 < clip.min() and clip.max() < 2.7  # ImageNet-normalised [0, 1] pixels


def test_train_clips_are_a_function_of_seed_epoch_index(synthetic_dataset):
    records = _records(synthetic_dataset)[:4]
    a = D.TrainClipDataset(records, synthetic_dataset, crop_size=24, seed=7, **KW)
    b = D.TrainClipDataset(records, synthetic_dataset, crop_size=24, seed=7, backend="pyav", **KW)
    for aug in ("paper", "jitter"):
        a.aug = b.aug = aug
        a.set_epoch(3), b.set_epoch(3)
        first = a[1][0]
        assert torch.equal(first, a[1][0])  # repeatable
        assert (first - b[1][0]).abs().max() < 0.5  # other decoder, same draws
        a.set_epoch(4)
        assert not torch.equal(first, a[1][0])  # a new epoch draws again
        a.set_epoch(3)
        assert torch.equal(first, a[1][0])  # a "resumed" run gets the same clip back
    c = D.TrainClipDataset(records, synthetic_dataset, crop_size=24, seed=8, **KW)
    c.set_epoch(3)
    assert not torch.equal(c[1][0], a[1][0])


def test_bad_train_videos_are_replaced_counted_and_logged_once(synthetic_dataset, bad_videos, caplog):
    records = _with_bad(synthetic_dataset, bad_videos)
    ds = D.TrainClipDataset(records, synthetic_dataset, crop_size=16, **KW)
    with caplog.at_level(logging.WARNING, logger="cgd_video.data.datasets"):
        first = [ds[i] for i in range(len(ds))]
        second = [ds[i] for i in range(len(ds))]
    for i, (clip, label, index, replaced_from) in enumerate(first):
        assert index == i and clip.shape == (3, 4, 16, 16)
        assert replaced_from == (i if i in (1, 3, 5) else -1)
        assert label != 99  # the label of the video actually served
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second))  # replacement choice is deterministic
    assert set(ds.failures) == {str(bad_videos[k]) for k in ("empty", "truncated", "text")}
    for kind in ("empty", "truncated", "text"):
        logged = [r for r in caplog.records if str(bad_videos[kind]) in r.getMessage()]
        assert len(logged) == 1, kind
    assert "0 bytes" in ds.failures[str(bad_videos["empty"])]


def test_retries_are_bounded_with_a_clear_error(bad_videos):
    records = [VideoRecord(str(p), 0) for p in bad_videos.values()]
    ds = D.TrainClipDataset(records, None, crop_size=16, max_retries=4, **KW)
    with pytest.raises(RuntimeError, match=r"item 0 failed 5 times \(max_retries=4\)") as err:
        ds[0]
    assert str(bad_videos["empty"]) in str(err.value)


@pytest.mark.slow
def test_replacements_are_counted_across_workers_with_distributed_sampler(synthetic_dataset, bad_videos):
    records = _with_bad(synthetic_dataset, bad_videos)
    ds = D.TrainClipDataset(records, synthetic_dataset, crop_size=16, seed=1, **KW)
    ds.set_epoch(2)
    seen, replaced = {}, 0
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(2)
        loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=2)
        for clips, labels, index, replaced_from in loader:
            replaced += int((replaced_from >= 0).sum())
            for k, i in enumerate(index.tolist()):
                seen[i] = clips[k]
    assert sorted(seen) == list(range(len(ds)))  # the two ranks together cover the dataset
    assert replaced == 3
    for i, clip in seen.items():  # workers draw exactly what the main process would
        assert torch.equal(clip, ds[i][0])


def test_constructor_errors_name_the_choices(synthetic_dataset):
    records = _records(synthetic_dataset)
    with pytest.raises(ValueError, match="paper, jitter"):
        D.TrainClipDataset(records, synthetic_dataset, aug="mixup")
    with pytest.raises(ValueError, match="at least one record"):
        D.TrainClipDataset([], synthetic_dataset)


def test_only_decode_and_io_errors_replace_a_video(synthetic_dataset, monkeypatch):
    """Issue 10 defect 4: a bug (here in the augmentation draw) propagates with its traceback instead of
    being blacklisted as an undecodable video; an I/O error (a PermissionError) still replaces it."""
    from cgd_video.data import device_augment

    records = _records(synthetic_dataset)[:4]
    ds = D.TrainClipDataset(records, synthetic_dataset, crop_size=16, **KW)

    def buggy(*args, **kwargs):
        raise ZeroDivisionError("a bug in the transform")

    monkeypatch.setattr(device_augment, "draw_params", buggy)
    with pytest.raises(ZeroDivisionError, match="a bug in the transform") as err:
        ds[0]
    assert any(entry.name == "buggy" for entry in err.traceback)  # the original traceback, not a summary
    assert ds.failures == {}
    monkeypatch.undo()

    real_open = D.open_video

    def unreadable(path, *args, **kwargs):
        if Path(path).name == Path(records[0].path).name:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(D, "open_video", unreadable)
    clip, label, index, replaced_from = ds[0]
    assert (index, replaced_from) == (0, 0) and list(ds.failures) == [str(synthetic_dataset / records[0].path)]
    assert "Permission denied" in ds.failures[str(synthetic_dataset / records[0].path)]
