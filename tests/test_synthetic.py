"""Synthetic dataset: real h264 mp4s, UCF-101 split format, determinism, separable classes."""

from __future__ import annotations

import re

import av
import numpy as np
import pytest

from cgd_video.data.synthetic import CLASS_RECIPES, write_synthetic_dataset


def _decode(path) -> np.ndarray:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def test_layout_and_split_files(synthetic_dataset, synthetic_kw):
    splits = synthetic_dataset / "splits"
    class_ind = (splits / "classInd.txt").read_bytes().decode()
    train = (splits / "trainlist01.txt").read_bytes().decode()
    test = (splits / "testlist01.txt").read_bytes().decode()
    for text in (class_ind, train, test):
        assert text.endswith("\r\n") and text.count("\n") == text.count("\r\n")
    names = [line.split(" ")[1] for line in class_ind.splitlines()]
    assert names == [r.name for r in CLASS_RECIPES[: synthetic_kw["classes"]]]
    assert class_ind.splitlines()[0] == f"1 {names[0]}"
    train_rows = [line.split(" ") for line in train.splitlines()]
    test_rows = test.splitlines()
    pattern = re.compile(r"^(\w+)/v_\1_g(\d\d)_c(\d\d)\.mp4$")
    train_groups, test_groups = set(), set()
    for rel, label in train_rows:
        m = pattern.match(rel)
        assert m and names[int(label) - 1] == m.group(1)
        train_groups.add((m.group(1), m.group(2)))
    for rel in test_rows:
        m = pattern.match(rel)
        assert m and " " not in rel
        test_groups.add((m.group(1), m.group(2)))
    assert not train_groups & test_groups, "train/test must be split by group"
    n = synthetic_kw["classes"] * synthetic_kw["videos_per_class"]
    assert len(train_rows) + len(test_rows) == n
    assert {r[0].split("/")[0] for r in train_rows} == set(names) == {r.split("/")[0] for r in test_rows}
    on_disk = sorted(p.relative_to(synthetic_dataset / "videos").as_posix()
                     for p in (synthetic_dataset / "videos").rglob("*.mp4"))
    assert on_disk == sorted([r[0] for r in train_rows] + test_rows)


def test_videos_decode_with_expected_shape(synthetic_dataset, synthetic_kw):
    path = next((synthetic_dataset / "videos").rglob("*.mp4"))
    frames = _decode(path)
    w, h = synthetic_kw["size"]
    assert frames.shape == (synthetic_kw["frames"], h, w, 3)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.average_rate) == synthetic_kw["fps"]


def test_same_seed_same_bytes_other_seed_differs(tmp_path, synthetic_dataset, synthetic_kw):
    again = write_synthetic_dataset(tmp_path / "again", **synthetic_kw)
    other = write_synthetic_dataset(tmp_path / "other", **{**synthetic_kw, "seed": 1})
    files = sorted(p.relative_to(synthetic_dataset) for p in synthetic_dataset.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (synthetic_dataset / rel).read_bytes() == (again / rel).read_bytes(), rel
    video = next(f for f in files if f.suffix == ".mp4")
    assert not np.array_equal(_decode(synthetic_dataset / video), _decode(other / video))


def _order_blind_features(frames: np.ndarray) -> np.ndarray:
    """Statistics a frame-order-blind model can see: mean colour of the foreground (saturated or
    bright pixels), its area (mean, spread over time) and the spread of its centroid along x and y."""
    t, h, w, _ = frames.shape
    q = frames.astype(np.float64)
    fg = ((q.max(-1) - q.min(-1)) > 60) | (q.min(-1) > 150)
    area = fg.reshape(t, -1).mean(1)
    colour = (q * fg[..., None]).sum((0, 1, 2)) / max(fg.sum(), 1) / 255
    ys, xs = np.mgrid[0:h, 0:w]
    n = np.maximum(fg.sum((1, 2)), 1)
    cx, cy = (fg * xs).sum((1, 2)) / n / w, (fg * ys).sum((1, 2)) / n / h
    return np.concatenate([colour, [10 * area.mean(), 10 * area.std(), cx.std(), cy.std()]])


def test_classes_are_separable_by_frame_statistics(tmp_path):
    """All ten recipes, leave-one-out 1-NN on order-blind colour features: well above chance."""
    root = write_synthetic_dataset(tmp_path / "ten", classes=len(CLASS_RECIPES), videos_per_class=4,
                                   frames=16, size=(64, 48), seed=3)
    feats, labels = [], []
    for c, recipe in enumerate(CLASS_RECIPES):
        for path in sorted((root / "videos" / recipe.name).glob("*.mp4")):
            feats.append(_order_blind_features(_decode(path)))
            labels.append(c)
    feats, labels = np.stack(feats), np.array(labels)
    dist = ((feats[:, None] - feats[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    accuracy = (labels[dist.argmin(1)] == labels).mean()
    assert accuracy >= 0.9, accuracy


@pytest.mark.parametrize("kw, match", [({"classes": 11}, "choose 1..10"),
                                       ({"size": (63, 48)}, "even"),
                                       ({"videos_per_class": 1}, ">= 2")])
def test_bad_arguments_say_what_is_valid(tmp_path, synthetic_kw, kw, match):
    with pytest.raises(ValueError, match=match):
        write_synthetic_dataset(tmp_path, **{**synthetic_kw, **kw})


def test_bad_videos_fixture_files_do_not_decode(bad_videos):
    assert bad_videos["empty"].stat().st_size == 0
    for path in bad_videos.values():
        with pytest.raises((av.error.FFmpegError, StopIteration)):
            with av.open(str(path)) as container:
                next(container.decode(video=0))
