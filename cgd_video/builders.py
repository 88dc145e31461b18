"""Config -> plain keyword arguments for models and datasets (DESIGN.md: the only place that reads cfg keys
for them). Models and datasets never see the config; tests and the Python API can build them directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = [
    "model_kwargs",
    "build_model",
    "build_model_from_checkpoint",
    "read_classes_for",
    "DataConfigError",
    "train_dataset_kwargs",
    "test_dataset_kwargs",
    "build_train_dataset",
    "build_test_dataset",
]

# Moved to cgd_video.boundary.model; re-exported here until every caller imports it from there.
from cgd_video.boundary.model import GENERIC_MODEL, build_model, build_model_from_checkpoint, model_kwargs  # noqa: E402,F401


class DataConfigError(ValueError):
    """A DATA.* key names a file that is missing or is empty: the message names the key and the path."""


_BUILD_HINT = "build the lists first, e.g. python tools/build_lists.py ucf101 --splits ... --root ... --out ... (data_lists/README.md)"


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
    names = read_classes(_require_file("CLASSES", cfg.DATA.CLASSES, "a classes file (one name per line)"))
    if len(names) != cfg.MODEL.NUM_CLASSES:
        raise ValueError(
            f"DATA.CLASSES {cfg.DATA.CLASSES} names {len(names)} classes but MODEL.NUM_CLASSES is "
            f"{cfg.MODEL.NUM_CLASSES}; set MODEL.NUM_CLASSES {len(names)}"
        )
    return names


def _records(cfg, key: str):
    from cgd_video.data.lists import read_video_list

    path = _require_file(key, cfg.DATA.get(key), "a list file ('<relative path> <label>' lines)")
    return read_video_list(path, num_classes=cfg.MODEL.NUM_CLASSES)


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


def build_train_dataset(cfg):
    """``TrainClipDataset`` over ``DATA.TRAIN_LIST``."""
    from cgd_video.data.datasets import TrainClipDataset

    return TrainClipDataset(_records(cfg, "TRAIN_LIST"), **train_dataset_kwargs(cfg))


def build_test_dataset(cfg, split: str = "test", num_clips: Optional[int] = None, num_crops: Optional[int] = None):
    """``MultiViewTestDataset`` over ``DATA.TEST_LIST`` (``split="val"``: ``DATA.VAL_LIST``, falling back to
    the test list). ``num_clips``/``num_crops`` override ``TEST.*`` (validation uses the centre view, 1 x 1).
    """
    from cgd_video.data.test_views import MultiViewTestDataset

    if split not in ("test", "val"):
        raise ValueError(f"split {split!r} is not one of ['test', 'val']")
    key = "VAL_LIST" if split == "val" and cfg.DATA.VAL_LIST else "TEST_LIST"
    return MultiViewTestDataset(_records(cfg, key), **test_dataset_kwargs(cfg, num_clips, num_crops))
