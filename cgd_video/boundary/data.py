"""Config -> datasets: list files, class names, the data root, dataset keyword arguments.

Every mistake a user can make in ``DATA.*`` ends as one :class:`DataConfigError` line naming the key,
the file and (for a list) the line: a missing or empty list, a malformed line, a label out of range,
a class count that differs from ``MODEL.NUM_CLASSES``, a ``DATA.ROOT`` that holds none of the videos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from cgd_video.config import ConfigError

__all__ = [
    "DataConfigError",
    "read_classes_for",
    "records_for",
    "check_root",
    "train_dataset_kwargs",
    "test_dataset_kwargs",
    "build_train_dataset",
    "build_test_dataset",
]

_BUILD_HINT = "build the lists first, e.g. python tools/build_lists.py ucf101 --splits ... --root ... --out ... (data_lists/README.md)"
_ROOT_PROBES = 20  # listed videos looked up under DATA.ROOT before training starts


class DataConfigError(ConfigError):
    """A DATA.* key names a file that is missing, empty or malformed: the message names the key and the path."""


def _require_file(key: str, path: str, what: str) -> str:
    if not path:
        raise DataConfigError(f"config key DATA.{key} is empty: set it to {what}")
    if not Path(path).is_file():
        raise DataConfigError(f"DATA.{key}: {what} {path} does not exist; {_BUILD_HINT}")
    return path


def read_classes_for(cfg) -> List[str]:
    """Class names from ``DATA.CLASSES`` (checked against ``MODEL.NUM_CLASSES``), else ``class_<i>``."""
    from cgd_video.data.lists import read_classes

    if not cfg.DATA.CLASSES:
        return [f"class_{i}" for i in range(cfg.MODEL.NUM_CLASSES)]
    try:
        names = read_classes(_require_file("CLASSES", cfg.DATA.CLASSES, "a classes file (one name per line)"))
    except ValueError as e:
        raise DataConfigError(f"DATA.CLASSES: {e}") from None
    if len(names) != cfg.MODEL.NUM_CLASSES:
        raise DataConfigError(
            f"DATA.CLASSES {cfg.DATA.CLASSES} names {len(names)} classes but MODEL.NUM_CLASSES is "
            f"{cfg.MODEL.NUM_CLASSES}; set MODEL.NUM_CLASSES {len(names)}"
        )
    return names


def records_for(cfg, key: str):
    """The records of list ``DATA.<key>``; a malformed line or a label outside ``[0, MODEL.NUM_CLASSES)``
    is a :class:`DataConfigError` naming the key, the file and the line."""
    from cgd_video.data.lists import read_video_list

    path = _require_file(key, cfg.DATA.get(key), "a list file ('<relative path> <label>' lines)")
    try:
        records = read_video_list(path, num_classes=cfg.MODEL.NUM_CLASSES)
    except ValueError as e:  # the message is "<file>:<line>: what is wrong"
        raise DataConfigError(f"DATA.{key}: {e}") from None
    if not records:
        raise DataConfigError(f"DATA.{key}: list file {path} holds no videos; {_BUILD_HINT}")
    return records


def check_root(cfg, records) -> None:
    """``DATA.ROOT`` must hold the listed videos: checked on up to 20 of them before any worker starts
    (a wrong root would otherwise show as a warning per video, then a worker traceback)."""
    from cgd_video.data.datasets import resolve_path

    root = cfg.DATA.ROOT
    if root and not Path(root).is_dir():
        raise DataConfigError(f"DATA.ROOT {root} is not a folder")
    step = max(len(records) // _ROOT_PROBES, 1)
    probes = [resolve_path(root or None, records[i].path) for i in range(0, len(records), step)][:_ROOT_PROBES]
    if probes and not any(p.exists() for p in probes):
        raise DataConfigError(
            f"DATA.ROOT {root or '(unset)'} holds none of the listed videos (looked for {len(probes)}, e.g. "
            f"{probes[0]}): point DATA.ROOT at the folder the list paths are relative to"
        )


def train_dataset_kwargs(cfg) -> Dict[str, Any]:
    d = cfg.DATA
    return dict(
        root=d.ROOT,
        num_frames=d.NUM_FRAMES,
        sampling_rate=d.SAMPLING_RATE,
        crop_size=d.TRAIN_CROP,
        aug=d.TRAIN_AUG,
        jitter=tuple(d.TRAIN_JITTER),
        mean=tuple(d.MEAN),
        std=tuple(d.STD),
        backend=d.BACKEND,
        seed=cfg.SEED,
        max_retries=d.MAX_RETRIES,
    )


def test_dataset_kwargs(cfg, num_clips: Optional[int] = None, num_crops: Optional[int] = None) -> Dict[str, Any]:
    d = cfg.DATA
    return dict(
        root=d.ROOT,
        num_frames=d.NUM_FRAMES,
        sampling_rate=d.SAMPLING_RATE,
        num_clips=cfg.TEST.NUM_CLIPS if num_clips is None else num_clips,
        num_crops=cfg.TEST.NUM_CROPS if num_crops is None else num_crops,
        test_scale=d.TEST_SCALE,
        test_crop=d.TEST_CROP,
        mean=tuple(d.MEAN),
        std=tuple(d.STD),
        backend=d.BACKEND,
    )


def build_train_dataset(cfg, check: bool = True):
    """``TrainClipDataset`` over ``DATA.TRAIN_LIST`` (``check``: :func:`check_root` first)."""
    from cgd_video.data.datasets import TrainClipDataset

    records = records_for(cfg, "TRAIN_LIST")
    if check:
        check_root(cfg, records)
    return TrainClipDataset(records, **train_dataset_kwargs(cfg))


def build_test_dataset(cfg, split: str = "test", num_clips: Optional[int] = None, num_crops: Optional[int] = None):
    """``MultiViewTestDataset`` over ``DATA.TEST_LIST`` (``split="val"``: ``DATA.VAL_LIST``, falling back to
    the test list). ``num_clips``/``num_crops`` override ``TEST.*`` (validation uses the centre view, 1 x 1).
    """
    from cgd_video.data.test_views import MultiViewTestDataset

    if split not in ("test", "val"):
        raise ValueError(f"split {split!r} is not one of ['test', 'val']")
    key = "VAL_LIST" if split == "val" and cfg.DATA.VAL_LIST else "TEST_LIST"
    return MultiViewTestDataset(records_for(cfg, key), **test_dataset_kwargs(cfg, num_clips, num_crops))
