"""The test views of a video, built in one place (paper Sec. 4.1, PROTOCOL.md §5).

A video (or a window of its frames) gives ``num_clips`` clips evenly spread over it x ``num_crops``
square crops of the resized frames: ``num_clips * num_crops`` uint8 views ``(3, T, S, S)`` in clip-major
order (clip0 crop0, clip0 crop1, ...). Every consumer takes its views from here:

* :class:`MultiViewTestDataset` -- ``tools/test.py``, training validation, ``tools/infer.py`` and the
  ``Predictor`` (whole videos, and the windows of ``--timeline``:
  :mod:`cgd_video.data.timeline` tiles them and decodes the video once for all of them);
* :meth:`MultiViewTestDataset.views_per_view` -- the same views with the video decoded again for every
  view (the PySlowFast way), the reference for the tests and ``benchmarks/bench_data.py``.

:func:`collate_views` is the one collate of a batch of test items (the evaluator's and the Predictor's):
it keeps each video's path, so results never need the dataset to name their videos.

The views are not normalised here: the consumer applies
:func:`cgd_video.data.transforms.normalize_views` right before the model, on its device
(:func:`cgd_video.engine.evaluator.video_scores`). 30 uint8 views are 189 MB at 32 x 256 x 256
instead of 755 MB of float32, through the DataLoader and to the GPU.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from cgd_video.data import sampling, transforms
from cgd_video.data.datasets import PathLike, _VideoListDataset
from cgd_video.data.decoding import DECODE_ERRORS, DEFAULT_BACKEND, VideoReader, decode_reason, open_video, read_clip

__all__ = [
    "MultiViewTestDataset",
    "Window",
    "clip_indices",
    "collate_views",
    "read_views",
    "video_fps",
    "views_from_frames",
]

logger = logging.getLogger(__name__)

Window = Tuple[int, int]  # (first frame, number of frames) of a part of a video scored on its own
DEFAULT_FPS = 25.0  # when the container reports none


def clip_indices(video_frames: int, num_frames: int, sampling_rate: int, num_clips: int,
                 window: Optional[Window] = None) -> np.ndarray:
    """``(num_clips, num_frames)`` frame indices of the test clips of a video of ``video_frames`` frames,
    or of its ``window`` (the same rule applied to the window's frames, shifted to its start)."""
    if window is None:
        return sampling.test_clip_indices(video_frames, num_frames, sampling_rate, num_clips)
    start, length = window
    return sampling.test_clip_indices(length, num_frames, sampling_rate, num_clips) + int(start)


def views_from_frames(frames: torch.Tensor, clips: np.ndarray, test_scale: int, test_crop: int,
                      num_crops: int) -> torch.Tensor:
    """The views of ``clips`` (``(C, T)`` indices) from ``frames``, the uint8 ``(U, H, W, 3)`` frames at
    ``np.unique(clips)`` in that order: ``(C * num_crops, 3, T, test_crop, test_crop)`` uint8.

    The frames are resized once (shorter side ``max(test_scale, test_crop)``), the crops' union is put in
    the model layout once, and every view frame is then one ``(3, S, S)`` slice copy into the output.
    """
    wanted = np.unique(clips)
    x = transforms.test_frames(frames, test_scale, test_crop)  # uint8 (U, 3, h, w)
    boxes = sampling.test_crop_boxes(x.shape[-2], x.shape[-1], test_crop, num_crops)
    top, left = min(b[0] for b in boxes), min(b[1] for b in boxes)
    bottom, right = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    x = x[..., top:bottom, left:right].permute(1, 0, 2, 3).contiguous()  # (3, U, h', w')
    out = torch.empty((len(clips) * num_crops, 3, clips.shape[1], test_crop, test_crop), dtype=torch.uint8)
    for c, clip in enumerate(clips):
        positions = np.searchsorted(wanted, clip).tolist()
        for k, (y, x0, h, w) in enumerate(boxes):
            src = x[:, :, y - top: y - top + h, x0 - left: x0 - left + w]
            dst = out[c * num_crops + k]
            for t, u in enumerate(positions):
                dst[:, t].copy_(src[:, u])
    return out


def read_views(reader: VideoReader, indices: Callable[[int], np.ndarray], test_scale: int, test_crop: int,
               num_crops: int) -> torch.Tensor:
    """Decode the union of the clips ``indices(num_frames)`` in one pass, then :func:`views_from_frames`."""
    clips: List[np.ndarray] = []

    def union(n: int) -> np.ndarray:  # read_clip may call it again with a corrected frame count
        clips[:] = [indices(n)]
        return np.unique(clips[0])

    frames = read_clip(reader, union)
    return views_from_frames(frames, clips[0], test_scale, test_crop, num_crops)


def video_fps(reader: VideoReader) -> float:
    """The container's frame rate, :data:`DEFAULT_FPS` when it reports none."""
    return float(reader.fps) if reader.fps and reader.fps > 0 else DEFAULT_FPS


def collate_views(items: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack the views of ``MultiViewTestDataset`` items; per-video metadata stays one entry per video."""
    return {
        "views": torch.stack([it["views"] for it in items]),
        "label": torch.tensor([int(it["label"]) for it in items], dtype=torch.long),
        "index": [int(it["index"]) for it in items],
        "ok": [bool(it["ok"]) for it in items],
        "error": [str(it.get("error") or "") for it in items],
        "path": [str(it["path"]) for it in items],
    }


class MultiViewTestDataset(_VideoListDataset):
    """All test views of a video, decoded once: ``ds[i] -> dict``.

    Keys: ``views`` ``(num_clips * num_crops, 3, T, S, S)`` **uint8** in clip-major order, ``label``,
    ``index``, ``ok``, ``error`` (reason, ``""`` when ok), ``path`` (as the record gives it: relative to
    ``root`` when it is, so results join back to the list). Batch items with :func:`collate_views`.

    The frame indices of every clip are merged, decoded in one pass and resized once; every view is
    copied once from that into the output (:func:`read_views`). A video that cannot be decoded or read
    gives ``ok=False``, zero views of the right shape and the reason in ``error``; it is never dropped.
    Any other exception (a bug) propagates.

    ``num_clips=1, num_crops=1`` is the single centre view (the paper's UCF-101 protocol); 10 x 3 the
    Mini-Kinetics protocol. ``windows`` (one per record, or ``None``) scores only the frames
    ``[start, start + length)`` of a record's video, as if they were the whole video (``--timeline``).
    """

    def __init__(
        self,
        records: Sequence[Any],
        root: PathLike | None = None,
        num_frames: int = 32,
        sampling_rate: int = 2,
        num_clips: int = 10,
        num_crops: int = 3,
        test_scale: int = 256,
        test_crop: int = 256,
        mean: Sequence[float] = transforms.IMAGENET_MEAN,
        std: Sequence[float] = transforms.IMAGENET_STD,
        backend: str = DEFAULT_BACKEND,
        windows: Optional[Sequence[Optional[Window]]] = None,
    ) -> None:
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        super().__init__(records, root, num_frames, sampling_rate, mean, std, backend)
        if windows is not None and len(windows) != len(self.items):
            raise ValueError(f"{len(windows)} windows for {len(self.items)} records")
        self.windows = list(windows) if windows is not None else [None] * len(self.items)
        self.num_clips = int(num_clips)
        self.num_crops = int(num_crops)
        self.test_scale = int(test_scale)
        self.test_crop = int(test_crop)

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    @property
    def view_shape(self) -> Tuple[int, int, int, int]:
        """``(3, T, S, S)`` of one view."""
        return (3, self.num_frames, self.test_crop, self.test_crop)

    def clip_indices(self, video_frames: int, index: int) -> np.ndarray:
        """``(num_clips, num_frames)`` frame indices of item ``index``'s clips in a video of ``video_frames``."""
        return clip_indices(video_frames, self.num_frames, self.sampling_rate, self.num_clips, self.windows[index])

    def views(self, index: int) -> torch.Tensor:
        """The uint8 views of item ``index``; raises ``VideoDecodeError`` when the video cannot be read."""
        reader = open_video(self.path(index), self.backend)
        return read_views(reader, lambda n: self.clip_indices(n, index), self.test_scale, self.test_crop,
                          self.num_crops)

    def views_per_view(self, index: int) -> torch.Tensor:
        """Reference: the same views, with the video reopened and decoded for every view (PySlowFast)."""
        path = self.path(index)
        clips = self.clip_indices(open_video(path, self.backend).num_frames, index)
        out = torch.empty((self.num_views, *self.view_shape), dtype=torch.uint8)
        for c, clip in enumerate(clips):
            for k in range(self.num_crops):
                frames = open_video(path, self.backend).get(np.unique(clip))
                view = views_from_frames(frames, clip[None], self.test_scale, self.test_crop, self.num_crops)[k]
                out[c * self.num_crops + k].copy_(view)
        return out

    def item(self, index: int, views: torch.Tensor, error: str = "") -> Dict[str, Any]:
        """The item of ``index`` with these views (ok), or zero views and the reason (``error`` given)."""
        listed, label = self.items[index]
        if error:
            views = torch.zeros((self.num_views, *self.view_shape), dtype=torch.uint8)
        return {"views": views, "label": label, "index": int(index), "ok": not error, "error": error, "path": listed}

    def __getitem__(self, index: int) -> Dict[str, Any]:
        try:
            return self.item(index, self.views(index))
        except DECODE_ERRORS as exc:  # recorded in the sample, counted by the evaluator
            reason = decode_reason(exc)
            logger.warning("test video %s cannot be decoded: %s", self.path(index), reason)
            return self.item(index, None, reason)
