"""The windows of a long video (``tools/infer.py --timeline``): tiled, and decoded in one pass.

:func:`timeline_windows` tiles a video with consecutive windows of a few seconds; each window is scored
like a short video, with the test protocol's views of its frames (paper Sec. 4.1: clips evenly spread
over it x crops, softmax averaged). :class:`TimelineViews` yields the items of a
:class:`~cgd_video.data.test_views.MultiViewTestDataset` over those windows, in window order, with the
video decoded once (:meth:`~cgd_video.data.pyav_reader.PyAVReader.iter_frames`) instead of once per
window: on a container without a pts index (AVI, MPEG-PS/TS) every window's read decodes from the first
frame, so W windows decode the video about W/2 times; on indexed ones every window decodes from its
keyframe, again when windows are shorter than the keyframe interval. Frames are kept only until the
last window that needs them has been built, so memory holds about one window's frames.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List

import numpy as np
import torch
from torch.utils.data import IterableDataset

from cgd_video.data.decoding import DECODE_ERRORS, open_video
from cgd_video.data.test_views import MultiViewTestDataset, Window, views_from_frames

__all__ = ["TimelineViews", "timeline_windows"]

logger = logging.getLogger(__name__)


def timeline_windows(total_frames: int, fps: float, seconds: float) -> List[Window]:
    """Consecutive windows of ``seconds`` (at ``fps``) tiling a video from frame 0; when frames are left
    over, a last window ends at the last frame (overlapping the one before). A video shorter than one
    window gives one window: the whole video."""
    if seconds <= 0:
        raise ValueError(f"timeline window must be > 0 seconds, got {seconds}")
    win = max(1, int(round(seconds * fps)))
    starts = list(range(0, max(total_frames - win, 0) + 1, win))
    if starts[-1] + win < total_frames:
        starts.append(max(total_frames - win, 0))
    return [(s, min(win, total_frames - s)) for s in starts]


class TimelineViews(IterableDataset):
    """``dataset[0], dataset[1], ...`` of a windowed :class:`MultiViewTestDataset` whose records are all the
    same video and whose windows are in increasing order, with the video decoded once (module doc).

    The items are those of the dataset, bit for bit (``tests/test_timeline.py``). Readers without
    ``iter_frames`` (decord on indexed files, frame folders), a video that cannot be opened, and every
    window from the first one the single pass fails on (a decode error, a frame count that was wrong)
    take the dataset's own per-window reads, which report or resample as they always do.
    """

    def __init__(self, dataset: MultiViewTestDataset) -> None:
        super().__init__()
        self.dataset = dataset
        self.mean, self.std = dataset.mean, dataset.std  # what the scorer normalises with

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        ds = self.dataset
        if len(ds) == 0:
            return
        try:
            reader = open_video(ds.path(0), ds.backend)
        except DECODE_ERRORS:
            reader = None
        if reader is None or not hasattr(reader, "iter_frames"):
            yield from (ds[i] for i in range(len(ds)))
            return
        clips = [ds.clip_indices(reader.num_frames, i) for i in range(len(ds))]
        frames = reader.iter_frames(np.unique(np.concatenate([c.ravel() for c in clips])))
        kept: Dict[int, np.ndarray] = {}
        for i, clip in enumerate(clips):
            wanted = np.unique(clip).tolist()
            try:
                while wanted[-1] not in kept:
                    index, frame = next(frames)
                    kept[index] = frame
            except (StopIteration, *DECODE_ERRORS) as exc:
                logger.debug("%s: one-pass timeline stopped at window %d (%r); reading per window", ds.path(0), i, exc)
                frames.close()
                yield from (ds[j] for j in range(i, len(ds)))
                return
            views = views_from_frames(torch.from_numpy(np.stack([kept[k] for k in wanted])), clip,
                                      ds.test_scale, ds.test_crop, ds.num_crops)
            yield ds.item(i, views)
            needed_from = int(clips[i + 1].min()) if i + 1 < len(clips) else None
            for k in [k for k in kept if needed_from is None or k < needed_from]:
                del kept[k]
