"""Temporal-order probe (cgd_video/data/temporal_order.py, benchmarks/bench_temporal.py).

Oracles: the generator's own construction. For the same parameters every class is a permutation of
the same base frames (so a frame at a random time and the bag of frames carry no class
information); the frame-shuffled control composes each class's fixed permutation with a uniform one
(so every class's shuffled clips are identically distributed). The benchmark's JSON schema is checked
on a run of a few steps.
"""

from __future__ import annotations

import inspect
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cgd_video.data.temporal_order import (
    ORDER_CLASSES,
    class_permutation,
    order_clips,
    render_base,
    render_order_video,
    sample_order_params,
    shuffle_frames,
    write_order_dataset,
)

ROOT = Path(__file__).resolve().parents[1]


def test_parameters_are_drawn_without_the_class():
    assert list(inspect.signature(sample_order_params).parameters) == ["rng"]
    # The same generator state gives the same parameters whatever class is rendered afterwards.
    a = sample_order_params(np.random.default_rng(7))
    assert a == sample_order_params(np.random.default_rng(7))


@pytest.mark.parametrize("classes", [2, 4])
def test_every_class_shows_the_same_frames_in_another_order(classes):
    """Same parameters -> the same multiset of frames in every class: no per-frame class information."""
    frames, size = 8, 16
    for seed in range(3):
        videos = []
        for label in range(classes):
            rng = np.random.default_rng(seed)
            params = sample_order_params(rng)
            base_k = render_base(params, frames, size, rng)
            video = render_order_video(label, frames, size, np.random.default_rng(seed), classes)
            perm = class_permutation(label, frames, classes)
            assert sorted(perm) == list(range(frames))
            np.testing.assert_array_equal(video, base_k[perm])
            videos.append(video)
        bags = [sorted(v[t].tobytes() for t in range(frames)) for v in videos]
        assert all(bag == bags[0] for bag in bags)  # the bag of frames is identical across classes
        assert len({v.tobytes() for v in videos}) == classes  # ... while the orders differ
        assert videos[0].shape == (frames, size, size, 3)


def test_orders_keep_the_pairs_a_temporal_max_pool_merges():
    """pool2 (kernel 2, stride 2) merges frames {0,1}, {2,3}, ...: the same base pairs in every class."""
    frames = 8
    pairs = [{frozenset(p[i : i + 2]) for i in range(0, frames, 2)}
             for p in (class_permutation(k, frames, 4) for k in range(4))]
    assert all(p == pairs[0] for p in pairs)


def test_shuffled_control_is_identically_distributed_across_classes():
    """perm_k o sigma over all sigma in S_T is all of S_T: a uniform shuffle erases the class."""
    frames = 4
    all_orders = set(itertools.permutations(range(frames)))
    for k in range(4):
        perm = class_permutation(k, frames, 4)
        composed = {tuple(perm[list(sigma)]) for sigma in all_orders}
        assert composed == all_orders
    # order_clips' control applies a shuffle drawn from a generator that does not see the label.
    x, y = order_clips(6, classes=2, frames=frames, size=8, seed=3, shuffled=True)
    for i in range(6):
        video = render_order_video(int(y[i]), frames, 8, np.random.default_rng([3, i]), 2)
        expected = shuffle_frames(video, np.random.default_rng([3, i, 1]))
        np.testing.assert_allclose(x[i], (expected.transpose(3, 0, 1, 2) - 0.33) / 0.1, rtol=0, atol=1e-6)


def test_order_clips_shapes_and_balanced_labels():
    x, y = order_clips(8, classes=4, frames=8, size=16, seed=0)
    assert x.shape == (8, 3, 8, 16, 16) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [2, 2, 2, 2]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="classes"):
        class_permutation(0, 8, 3)
    with pytest.raises(ValueError, match="multiple of 4"):
        class_permutation(2, 6, 4)


def test_write_order_dataset_layout(tmp_path):
    root = write_order_dataset(tmp_path / "order", classes=2, videos_per_class=2, frames=4, size=16)
    names = (root / "splits" / "classInd.txt").read_text().split()
    assert names == ["1", ORDER_CLASSES[0], "2", ORDER_CLASSES[1]]
    train = (root / "splits" / "trainlist01.txt").read_text().splitlines()
    test = (root / "splits" / "testlist01.txt").read_text().splitlines()
    assert len(train) == len(test) == 2
    assert all((root / "videos" / line.split()[0]).stat().st_size > 0 for line in train)


def test_bench_temporal_json_schema(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_temporal

    out = tmp_path / "probe.json"
    argv = ["--variants", "c2d", "cgd_concat", "--steps", "2", "--seeds", "2", "--train-clips", "8",
            "--test-clips", "4", "--frames", "4", "--size", "32", "--batch", "4", "--json", str(out)]
    assert bench_temporal.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["chance"] == 0.5
    for key in ("results", "control"):
        assert set(result[key]) == {"c2d", "cgd_concat"}
        for r in result[key].values():
            assert len(r["seeds"]) == 2 and all(0 <= a <= 1 for a in r["seeds"])
            assert r["mean"] == pytest.approx(sum(r["seeds"]) / 2) and r["std"] >= 0
    assert result["ratios"]["cgd_concat_vs_chance"] == pytest.approx(result["results"]["cgd_concat"]["mean"] / 0.5)
    assert "c2d_control_vs_chance" in result["ratios"]
    assert (tmp_path / "probe.png").read_bytes()[:4] == b"\x89PNG"
