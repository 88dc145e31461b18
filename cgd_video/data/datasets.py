"""Map-style video datasets for training clips and multi-view testing (paper Sec. 4.1, PROTOCOL §5).

Both take ``records`` (a list of :class:`cgd_video.data.lists.VideoRecord`, or anything with ``.path`` and
``.label``, or ``(path, label)`` pairs) and ``root``: relative paths are joined to ``root``, absolute paths
are used as they are. Both work with ``DistributedSampler`` (plain ``__len__`` / ``__getitem__``, no state
shared between items).

Bad videos never return ``None`` and never kill a DataLoader worker (PROTOCOL §8):
  * training replaces the video by another one (deterministic choice) and reports it in the sample;
  * testing returns ``ok=False`` with the reason and zero views, so the evaluator counts and lists it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from cgd_video.data import sampling, transforms
from cgd_video.data.decoding import VideoDecodeError, open_video, read_clip

__all__ = ["MultiViewTestDataset", "TrainClipDataset", "resolve_path"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


def _path_label(record: Any) -> tuple[str, int]:
    if hasattr(record, "path") and hasattr(record, "label"):
        return str(record.path), int(record.label)
    path, label = record
    return str(path), int(label)


def resolve_path(root: PathLike | None, path: PathLike) -> Path:
    """``path`` if absolute (or no root), else ``root / path``."""
    path = Path(path)
    return path if path.is_absolute() or root is None else Path(root) / path


def _reason(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, VideoDecodeError) else f"{type(exc).__name__}: {exc}"


class _VideoListDataset(Dataset):
    """What both datasets share: the records, where they live, the clip length and the normalisation."""

    def __init__(self, records, root, num_frames, sampling_rate, mean, std, backend) -> None:
        if len(records) == 0:
            raise ValueError(f"{type(self).__name__} needs at least one record")
        self.items = [_path_label(r) for r in records]
        self.root = root
        self.num_frames = int(num_frames)
        self.sampling_rate = int(sampling_rate)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.backend = backend

    def __len__(self) -> int:
        return len(self.items)

    def path(self, index: int) -> Path:
        """Resolved path of video ``index``."""
        return resolve_path(self.root, self.items[index][0])


class TrainClipDataset(_VideoListDataset):
    """Random augmented training clips, ``ds[i] -> (clip, label, i, replaced_from)``.

    ``clip`` is ``(3, num_frames, crop_size, crop_size)`` float32 (ImageNet-normalised), ``label`` the label
    of the video actually decoded, ``i`` the requested index. ``replaced_from`` is ``i`` when video ``i``
    could not be decoded and was replaced, else ``-1``: it travels with the batch, so the main process
    counts replaced videos per epoch exactly, whatever the number of DataLoader workers
    (``(batch[3] >= 0).sum()``). Each failing path is also logged once per process (path + reason) and
    kept in ``self.failures`` (``{path: reason}``, per process).

    Randomness: attempt ``a`` of item ``i`` in epoch ``e`` draws everything (replacement video, temporal
    window, crop, flip) from ``np.random.default_rng([seed, e, i, a])``: the same (seed, epoch, index)
    always gives the same clip, so a resumed run is bit-identical. Call :meth:`set_epoch` before each epoch
    (with non-persistent workers, the default, each epoch's workers get the new epoch).

    Args:
        records: videos and labels (see module docstring).
        root: folder that relative paths are relative to.
        num_frames, sampling_rate: clip length T and stride (the paper: 32 frames from a 64-frame window).
        crop_size: output side S.
        aug: ``"paper"`` (random square of 0.75-1 of the shorter side) or ``"jitter"`` (shorter side in
            ``jitter``, random crop); both flip.
        jitter: short-side range for ``aug="jitter"``.
        mean, std: normalisation in [0, 1] units.
        backend: ``"decord"`` (falls back to PyAV by itself), ``"pyav"`` or ``"frames"``.
        seed: base seed.
        max_retries: replacement attempts after the first failure; then a RuntimeError lists every
            path tried and why it failed.
    """

    def __init__(
        self,
        records: Sequence[Any],
        root: PathLike | None = None,
        num_frames: int = 32,
        sampling_rate: int = 2,
        crop_size: int = 224,
        aug: str = "paper",
        jitter: Sequence[int] = (256, 320),
        mean: Sequence[float] = transforms.IMAGENET_MEAN,
        std: Sequence[float] = transforms.IMAGENET_STD,
        backend: str = "decord",
        seed: int = 0,
        max_retries: int = 10,
    ) -> None:
        if aug not in transforms.TRAIN_AUGS:
            raise ValueError(f"unknown train augmentation {aug!r}; valid: {', '.join(transforms.TRAIN_AUGS)}")
        super().__init__(records, root, num_frames, sampling_rate, mean, std, backend)
        self.crop_size = int(crop_size)
        self.aug = aug
        self.jitter = tuple(jitter)
        self.seed = int(seed)
        self.max_retries = int(max_retries)
        self.epoch = 0
        self.failures: dict[str, str] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _load(self, path: Path, rng: np.random.Generator) -> torch.Tensor:
        reader = open_video(path, self.backend)
        state = rng.bit_generator.state  # a resample after a frame-count correction redraws the same way
        def indices(n: int) -> np.ndarray:
            rng.bit_generator.state = state
            return sampling.train_window_indices(n, self.num_frames, self.sampling_rate, rng)
        frames = read_clip(reader, indices)
        return transforms.train_transform(frames, rng, self.crop_size, self.aug, self.jitter, self.mean, self.std)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        tried: list[str] = []
        for attempt in range(self.max_retries + 1):
            rng = np.random.default_rng([self.seed, self.epoch, int(index), attempt])
            j = int(index) if attempt == 0 else int(rng.integers(len(self.items)))
            path, label = self.path(j), self.items[j][1]
            if str(path) in self.failures:
                tried.append(f"{path}: {self.failures[str(path)]}")
                continue
            try:
                clip = self._load(path, rng)
            except Exception as exc:  # a bad video must not kill the worker: record, replace, count
                reason = _reason(exc)
                self.failures[str(path)] = reason
                logger.warning("skipping undecodable video %s: %s (replaced by another video)", path, reason)
                tried.append(f"{path}: {reason}")
                continue
            return clip, label, int(index), (int(index) if attempt else -1)
        raise RuntimeError(
            f"TrainClipDataset: item {index} failed {len(tried)} times (max_retries={self.max_retries}):\n  "
            + "\n  ".join(tried)
        )


class MultiViewTestDataset(_VideoListDataset):
    """All test views of a video, decoded once: ``ds[i] -> dict``.

    Keys: ``views`` ``(num_clips * num_crops, 3, T, S, S)`` **uint8** in clip-major order (clip0 crop0,
    clip0 crop1, ...), ``label``, ``index``, ``ok``, ``error`` (reason, ``""`` when ok), ``path``.

    The views are not normalised here: the consumer applies
    :func:`cgd_video.data.transforms.normalize_views` with ``self.mean``/``self.std`` on the model's device
    right before the model (:func:`cgd_video.engine.evaluator.video_scores` does). 30 uint8 views are
    189 MB at 32 x 256 x 256 instead of 755 MB of float32, through the DataLoader and to the GPU.

    Decode once: the frame indices of every clip are merged, decoded in one pass, resized once
    (shorter side ``test_scale``), and every view is copied once from that into the output.
    (PySlowFast reopens and decodes the video for each of the 30 views; :meth:`views_per_view` does
    that, as a reference for tests and ``benchmarks/bench_data.py``; both give identical views.) A video
    that cannot be decoded gives ``ok=False``, zero views of the right shape and the reason in ``error``;
    it is never dropped.

    ``num_clips=1, num_crops=1`` is the single centre view (the paper's UCF-101 protocol); 10 x 3 the
    Mini-Kinetics protocol.
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
        backend: str = "decord",
    ) -> None:
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        super().__init__(records, root, num_frames, sampling_rate, mean, std, backend)
        self.num_clips = int(num_clips)
        self.num_crops = int(num_crops)
        self.test_scale = int(test_scale)
        self.test_crop = int(test_crop)

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    def _clip_indices(self, n: int) -> np.ndarray:
        return sampling.test_clip_indices(n, self.num_frames, self.sampling_rate, self.num_clips)

    def _views(self, path: Path) -> torch.Tensor:
        reader = open_video(path, self.backend)
        clips: list[np.ndarray] = []

        def union(n: int) -> np.ndarray:
            clips[:] = [self._clip_indices(n)]
            return np.unique(clips[0])

        frames = read_clip(reader, union)  # one pass over the union of all clips' frames
        wanted = np.unique(clips[0])
        x = transforms.test_frames(frames, self.test_scale, self.test_crop)  # resized once, uint8 (U, 3, h, w)
        boxes = sampling.test_crop_boxes(x.shape[-2], x.shape[-1], self.test_crop, self.num_crops)
        top, left = min(b[0] for b in boxes), min(b[1] for b in boxes)
        bottom, right = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
        # The crops' union in the model layout, once (U frames, not V x T): then every view frame is a
        # plain (3, S, S) slice copy, straight into the output.
        x = x[..., top:bottom, left:right].permute(1, 0, 2, 3).contiguous()  # (3, U, h, w)
        out = torch.empty((self.num_views, 3, self.num_frames, self.test_crop, self.test_crop), dtype=torch.uint8)
        for c, clip in enumerate(clips[0]):
            positions = np.searchsorted(wanted, clip).tolist()
            for k, (y, x0, h, w) in enumerate(boxes):
                src = x[:, :, y - top : y - top + h, x0 - left : x0 - left + w]
                dst = out[c * self.num_crops + k]
                for t, u in enumerate(positions):
                    dst[:, t].copy_(src[:, u])
        return out

    def views_per_view(self, index: int) -> torch.Tensor:
        """Reference: reopen and decode the video separately for every view (the PySlowFast way).

        Each view then gets the same final work as in :meth:`_views`: resized, cropped and copied once
        into the uint8 output.
        """
        path = self.path(index)
        n = open_video(path, self.backend).num_frames
        out = torch.empty((self.num_views, 3, self.num_frames, self.test_crop, self.test_crop), dtype=torch.uint8)
        for c, clip in enumerate(self._clip_indices(n)):
            for k in range(self.num_crops):
                frames = open_video(path, self.backend).get(clip)
                x = transforms.test_frames(frames, self.test_scale, self.test_crop)
                box = sampling.test_crop_boxes(x.shape[-2], x.shape[-1], self.test_crop, self.num_crops)[k]
                out[c * self.num_crops + k].copy_(transforms.crop(x, box).permute(1, 0, 2, 3))
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, label = self.path(index), self.items[index][1]
        try:
            views, ok, error = self._views(path), True, ""
        except Exception as exc:  # recorded in the sample (ok=False, error) and counted by the evaluator
            reason = _reason(exc)
            logger.warning("test video %s cannot be decoded: %s", path, reason)
            shape = (self.num_views, 3, self.num_frames, self.test_crop, self.test_crop)
            views, ok, error = torch.zeros(shape, dtype=torch.uint8), False, reason
        return {"views": views, "label": label, "index": int(index), "ok": ok, "error": error, "path": str(path)}
