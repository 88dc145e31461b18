"""Frame-index and crop-box arithmetic of cgd_video.data.sampling (PROTOCOL §5), against hand-computed values."""

import numpy as np
import pytest

from cgd_video.data import sampling


def test_train_window_is_strided_and_inside_the_video():
    n, t, sr = 20, 4, 2  # window of 8 consecutive frames, every other kept
    starts = set()
    for seed in range(400):
        idx = sampling.train_window_indices(n, t, sr, np.random.default_rng(seed))
        assert idx.dtype == np.int64 and len(idx) == t
        assert np.all(np.diff(idx) == sr)
        assert idx[0] >= 0 and idx[0] + t * sr - 1 <= n - 1  # the whole 8-frame window fits
        starts.add(int(idx[0]))
    assert starts == set(range(n - t * sr + 1))  # every admissible start is drawn, and only those


def test_train_window_loops_short_videos():
    idx = sampling.train_window_indices(5, 4, 2, np.random.default_rng(0))
    assert idx.tolist() == [0, 2, 4, 1]  # starts at 0, wraps modulo 5
    idx = sampling.train_window_indices(1, 3, 2, np.random.default_rng(0))
    assert idx.tolist() == [0, 0, 0]
    # shorter than the window but long enough for the sampled span: starts at 0, no wrap
    assert sampling.train_window_indices(7, 4, 2, np.random.default_rng(3)).tolist() == [0, 2, 4, 6]


def test_train_window_is_a_function_of_the_generator():
    a = sampling.train_window_indices(300, 32, 2, np.random.default_rng([1, 2, 3]))
    b = sampling.train_window_indices(300, 32, 2, np.random.default_rng([1, 2, 3]))
    assert a.tolist() == b.tolist()


def test_test_windows_spread_evenly_from_first_to_last_frame():
    n, t, sr = 100, 8, 2
    clips = sampling.test_clip_indices(n, t, sr, 10)
    assert clips.shape == (10, 8)
    assert clips[0, 0] == 0 and clips[-1, -1] == n - 1
    starts = clips[:, 0]
    gaps = np.diff(starts)
    assert np.all(gaps > 0) and gaps.max() - gaps.min() <= 1
    assert sampling.test_window_starts(n, t, sr, 10) == [round(k * 85 / 9) for k in range(10)]


def test_single_test_clip_is_centred():
    n, t, sr = 100, 8, 2
    (clip,) = sampling.test_clip_indices(n, t, sr, 1)
    assert clip[0] == 42 and clip[-1] == 56  # 42 frames before, 43 after
    assert abs(clip[0] - (n - 1 - clip[-1])) <= 1


def test_test_windows_loop_on_short_videos():
    clips = sampling.test_clip_indices(5, 4, 2, 3)
    assert clips.tolist() == [[0, 2, 4, 1]] * 3


def test_three_crops_along_the_longer_side():
    assert sampling.test_crop_boxes(256, 340, 256, 3) == [(0, 0, 256, 256), (0, 42, 256, 256), (0, 84, 256, 256)]
    assert sampling.test_crop_boxes(341, 256, 256, 3) == [(0, 0, 256, 256), (42, 0, 256, 256), (85, 0, 256, 256)]
    assert sampling.test_crop_boxes(256, 341, 224, 1) == [(16, 58, 224, 224)]


def test_crop_box_errors_name_the_problem():
    with pytest.raises(ValueError, match="1 or 3"):
        sampling.test_crop_boxes(256, 340, 256, 2)
    with pytest.raises(ValueError, match="smaller than the crop"):
        sampling.test_crop_boxes(200, 340, 256, 3)
    with pytest.raises(ValueError, match="num_frames"):
        sampling.train_window_indices(10, 0, 2, np.random.default_rng(0))


def test_random_square_crop_covers_the_paper_range():
    sides, tops, lefts = [], [], []
    for seed in range(300):
        top, left, h, w = sampling.random_square_crop_box(240, 320, np.random.default_rng(seed))
        assert h == w and 180 <= h <= 240
        assert 0 <= top <= 240 - h and 0 <= left <= 320 - w
        sides.append(h), tops.append(top), lefts.append(left)
    assert min(sides) < 190 and max(sides) > 230 and max(lefts) > 100


def test_jitter_short_side_is_inclusive():
    draws = {sampling.jitter_short_side(np.random.default_rng(s), (256, 259)) for s in range(200)}
    assert draws == {256, 257, 258, 259}
    with pytest.raises(ValueError, match="jitter"):
        sampling.jitter_short_side(np.random.default_rng(0), (320, 256))
