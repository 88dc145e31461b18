"""Map-style video datasets for training clips (paper Sec. 4.1, PROTOCOL §5); the multi-view test dataset
shares their base class and lives in :mod:`cgd_video.data.test_views`.

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

from cgd_video.data import device_augment as device_augment_mod
from cgd_video.data import sampling, transforms
from cgd_video.data.containers import probe
from cgd_video.data.decoding import DECODE_ERRORS, DEFAULT_BACKEND, decode_reason, open_video, read_clip

__all__ = ["TrainClipDataset", "resolve_path"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
SCALE_FACTOR = 1.5  # decode-time scaling only for sources at least this much larger than needed


def _path_label(record: Any) -> tuple[str, int]:
    if hasattr(record, "path") and hasattr(record, "label"):
        return str(record.path), int(record.label)
    path, label = record
    return str(path), int(label)


def resolve_path(root: PathLike | None, path: PathLike) -> Path:
    """``path`` if absolute (or no root), else ``root / path``."""
    path = Path(path)
    return path if path.is_absolute() or root is None else Path(root) / path


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
    """Random augmented training clips, ``ds[i] -> (clip, label, i, replaced_from)``, or with
    ``device_augment=True`` ``(frames, label, i, replaced_from, params)``.

    ``clip`` is ``(3, num_frames, crop_size, crop_size)`` float32 (ImageNet-normalised). With
    ``device_augment`` the worker only decodes and cuts: ``frames`` is the uint8 crop box
    ``(num_frames, h, w, 3)`` and ``params`` the rest of the augmentation drawn for it
    (:func:`cgd_video.data.device_augment.carry`); :attr:`collate_fn`
    (:func:`~cgd_video.data.device_augment.collate_train`) batches them and
    :func:`cgd_video.data.device_augment.augment` finishes them on the model's device. Both give the same
    clip, bit for bit on the CPU. ``label`` is the label of the video actually decoded, ``i`` the requested index.
    ``replaced_from`` is ``i`` when video ``i`` could not be decoded and was replaced, else ``-1``: it
    travels with the batch, so the main process counts replaced videos per epoch exactly, whatever the
    number of DataLoader workers (``(batch[3] >= 0).sum()``). Each failing path is also logged once per
    process (path + reason) and kept in ``self.failures`` (``{path: reason}``, per process).

    Only decoding and I/O failures (:class:`VideoDecodeError`, ``OSError``) replace a video; any other
    exception is a bug and propagates with its traceback. A failed path is not decoded again by this
    process (with the trainer's persistent workers: for the whole run).

    Randomness: attempt ``a`` of item ``i`` in epoch ``e`` draws everything (replacement video, temporal
    window, crop, flip) from ``np.random.default_rng([seed, e, i, a])``: the same (seed, epoch, index)
    always gives the same clip, so a resumed run is bit-identical. Call :meth:`set_epoch` before each epoch
    (before iterating the DataLoader); the epoch lives in shared memory, so persistent workers see it too.

    Decode less: a source whose shorter side is at least ``1.5 x``
    :func:`~cgd_video.data.device_augment.decode_short_side` (299 for the paper's 224 crop, the jitter's
    top for ``jitter``) is scaled to that side by libav while decoding (``decode_scale``), so every crop is
    still resized down, never up. Smaller sources are decoded as they are: scaling them saves little, and
    a second resampling filter there moved the synthetic demo's test top-1 from 1.0 to 0.79.

    Args:
        records: videos and labels (see module docstring).
        root: folder that relative paths are relative to.
        num_frames, sampling_rate: clip length T and stride (the paper: 32 frames from a 64-frame window).
        crop_size: output side S.
        aug: ``"paper"`` (random square of 0.75-1 of the shorter side) or ``"jitter"`` (shorter side in
            ``jitter``, random crop); both flip.
        jitter: short-side range for ``aug="jitter"``.
        mean, std: normalisation in [0, 1] units.
        backend: ``"pyav"`` (seek + skip on mp4/mkv, sequential elsewhere), ``"decord"`` (PyAV where decord
            is not frame-exact, and as its fallback) or ``"frames"``.
        seed: base seed.
        max_retries: replacement attempts after the first failure; then a RuntimeError lists every
            path tried and why it failed.
        device_augment: return uint8 frames + drawn parameters instead of the augmented float clip.
        decode_scale: let the decoder scale large sources down (see above).
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
        backend: str = DEFAULT_BACKEND,
        seed: int = 0,
        max_retries: int = 10,
        device_augment: bool = False,
        decode_scale: bool = True,
    ) -> None:
        super().__init__(records, root, num_frames, sampling_rate, mean, std, backend)
        self.crop_size = int(crop_size)
        self.aug = aug
        self.jitter = tuple(jitter)
        short_side = device_augment_mod.decode_short_side(self.crop_size, aug, self.jitter)  # checks aug
        self.short_side = short_side if decode_scale else None
        self.seed = int(seed)
        self.max_retries = int(max_retries)
        self.device_augment = bool(device_augment)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # seen by persistent workers
        self.failures: dict[str, str] = {}

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def _load(self, path: Path, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One clip's uint8 crop box and the parameters that finish its augmentation."""
        reader = open_video(path, self.backend, short_side=self._scale_to(path))
        state = rng.bit_generator.state  # a resample after a frame-count correction redraws the same way

        def indices(n: int) -> np.ndarray:
            rng.bit_generator.state = state
            return sampling.train_window_indices(n, self.num_frames, self.sampling_rate, rng)

        frames = read_clip(reader, indices)
        params = device_augment_mod.draw_params(rng, frames.shape[1], frames.shape[2], self.crop_size, self.aug,
                                                self.jitter)
        return device_augment_mod.carry(frames, params)

    def _scale_to(self, path: Path) -> int | None:
        """The decode-time short side for ``path``: ``self.short_side`` for sources at least 1.5x larger."""
        info = probe(path) if self.short_side and path.is_file() else None
        if info is None or min(info.width, info.height) < SCALE_FACTOR * self.short_side:
            return None
        return self.short_side

    @property
    def collate_fn(self):
        """The DataLoader ``collate_fn`` for these items (``None``: PyTorch's default)."""
        return device_augment_mod.collate_train if self.device_augment else None

    def __getitem__(self, index: int) -> tuple:
        tried: list[str] = []
        for attempt in range(self.max_retries + 1):
            rng = np.random.default_rng([self.seed, self.epoch, int(index), attempt])
            j = int(index) if attempt == 0 else int(rng.integers(len(self.items)))
            path, label = self.path(j), self.items[j][1]
            if str(path) in self.failures:
                tried.append(f"{path}: {self.failures[str(path)]}")
                continue
            try:
                frames, params = self._load(path, rng)
            except DECODE_ERRORS as exc:  # a bad video must not kill the worker: record, replace, count
                reason = decode_reason(exc)
                self.failures[str(path)] = reason
                logger.warning("skipping undecodable video %s: %s (replaced by another video)", path, reason)
                tried.append(f"{path}: {reason}")
                continue
            replaced_from = int(index) if attempt else -1
            if self.device_augment:
                return frames, label, int(index), replaced_from, params
            clip = device_augment_mod.augment(frames[None], params[None], self.crop_size, self.mean, self.std)[0]
            return clip, label, int(index), replaced_from
        raise RuntimeError(
            f"TrainClipDataset: item {index} failed {len(tried)} times (max_retries={self.max_retries}):\n  "
            + "\n  ".join(tried)
        )
