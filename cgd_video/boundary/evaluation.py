"""Config -> plain arguments for testing, inference and export (the evaluation side of the boundary).

Below this module nothing sees a config node: :func:`cgd_video.engine.testing.run_test`,
:class:`cgd_video.inference.predictor.Predictor` and :mod:`cgd_video.inference.export` take plain
arguments, and this module reads the config to give them:

* :func:`load_for_eval`: the config (a file, or the one stored in the checkpoint) and the checkpoint;
* :func:`class_names`: the class names, resolved once (the checkpoint's, else ``DATA.CLASSES``);
* :func:`eval_settings`: device, AMP, memory format, batch size and workers of an evaluation;
* :func:`run_test_from_config` (``tools/test.py``), :func:`predictor_from_checkpoint` (``tools/infer.py``,
  ``Predictor.from_checkpoint``), :func:`load_model_from_checkpoint` and :func:`export_clip_shape`
  (``tools/export.py``).

Test datasets and their keyword arguments come from :mod:`cgd_video.boundary.data`; the eval model of a
checkpoint from :func:`cgd_video.boundary.model.build_model_from_checkpoint`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from cgd_video.boundary.data import read_classes_for, test_dataset_kwargs
from cgd_video.boundary.model import build_model_from_checkpoint
from cgd_video.config import load_config, load_config_from_yaml_string
from cgd_video.engine.checkpoint import CheckpointError, load_checkpoint
from cgd_video.runtime import amp_dtype, resolve_device, set_cpu_threads

PathLike = Union[str, os.PathLike]

__all__ = [
    "class_names",
    "default_checkpoint",
    "eval_settings",
    "export_clip_shape",
    "load_for_eval",
    "load_model_from_checkpoint",
    "predictor_from_checkpoint",
    "run_test_from_config",
]

logger = logging.getLogger(__name__)


def default_checkpoint(cfg, ckpt: Optional[PathLike] = None) -> Path:
    """``ckpt`` if given, else ``TEST.CHECKPOINT``, else ``OUTPUT_DIR/checkpoints/last.pt``."""
    return Path(ckpt or cfg.TEST.CHECKPOINT or Path(cfg.OUTPUT_DIR) / "checkpoints" / "last.pt")


def load_for_eval(ckpt: Optional[PathLike] = None, cfg: Optional[PathLike] = None,
                  opts: Optional[Sequence[str]] = None) -> Tuple[Any, Path, Dict[str, Any]]:
    """``(config, checkpoint path, loaded checkpoint)``. The config is ``cfg`` (a file or a name in
    ``configs/``) when given, else the one stored in the checkpoint; ``opts`` are ``KEY VALUE``
    overrides. Without ``ckpt`` the checkpoint is :func:`default_checkpoint`. Loading is data only
    (``weights_only=True``); a missing or refused file is a ``CheckpointError`` naming it."""
    if cfg is None and ckpt is None:
        raise ValueError("give a checkpoint, a config or both")
    config = load_config(cfg, opts) if cfg is not None else None
    path = default_checkpoint(config, ckpt) if config is not None else Path(ckpt)
    state = load_checkpoint(path)
    if config is None:
        if not state.get("cfg"):
            raise CheckpointError(f"{path} stores no config; pass --cfg with the config it was trained with")
        config = load_config_from_yaml_string(state["cfg"], opts)
    return config, path, state


def class_names(cfg, ckpt: Dict[str, Any], path: PathLike = "checkpoint") -> List[str]:
    """The class names of a checkpoint's model: the ones it stores, else ``DATA.CLASSES``
    (:func:`cgd_video.boundary.data.read_classes_for`, ``class_<i>`` when unset); their number must be
    ``MODEL.NUM_CLASSES``."""
    classes = list(ckpt.get("classes") or [])
    if not classes:
        logger.warning("%s stores no class names: taking them from DATA.CLASSES", path)
        return read_classes_for(cfg)
    if len(classes) != int(cfg.MODEL.NUM_CLASSES):
        raise CheckpointError(f"{path}: {len(classes)} class names but MODEL.NUM_CLASSES={cfg.MODEL.NUM_CLASSES}")
    return classes


def eval_settings(cfg, device: Union[str, torch.device, None] = None, amp: Optional[str] = None,
                  batch_size: Optional[int] = None, num_workers: Optional[int] = None) -> Dict[str, Any]:
    """``device``, ``amp``, ``channels_last``, ``batch_size``, ``num_workers`` of an evaluation: the
    arguments when given, else ``TRAIN.DEVICE``, ``TRAIN.AMP``, ``TEST.BATCH_SIZE``,
    ``DATALOADER.NUM_WORKERS``. One rule for tests and inference alike: AMP runs on CUDA only (a CPU
    evaluates in float32), so ``tools/test.py`` and ``tools/infer.py`` give the same scores on one device.
    """
    dev = resolve_device(cfg.TRAIN.DEVICE if device is None else device)
    amp = cfg.TRAIN.AMP if amp is None else amp
    amp_dtype(amp)  # unknown modes raise, naming the valid ones
    return dict(
        device=dev,
        amp=amp if dev.type == "cuda" else "none",
        channels_last=bool(cfg.TRAIN.CHANNELS_LAST),
        batch_size=int(cfg.TEST.BATCH_SIZE if batch_size is None else batch_size),
        num_workers=int(cfg.DATALOADER.NUM_WORKERS if num_workers is None else num_workers),
    )


def run_test_from_config(cfg, ckpt: Optional[PathLike] = None, state: Optional[Dict[str, Any]] = None,
                     progress: bool = True):
    """The whole ``tools/test.py`` run: ``DATA.TEST_LIST`` with ``TEST.NUM_CLIPS`` x ``TEST.NUM_CROPS``
    views through :func:`cgd_video.engine.testing.run_test`; outputs in ``OUTPUT_DIR``. ``state``: the
    checkpoint already loaded (from :func:`load_for_eval`). Returns ``(summary on rank 0 else None,
    EvalResult)``. Starts the process group under torchrun; the caller ends it."""
    from cgd_video.boundary.data import build_test_dataset
    from cgd_video.engine import distributed as du
    from cgd_video.engine.testing import run_test

    settings = eval_settings(cfg)
    set_cpu_threads(cfg.TRAIN.CPU_THREADS)
    path = default_checkpoint(cfg, ckpt)
    state = load_checkpoint(path) if state is None else state
    dataset = build_test_dataset(cfg, split="test")
    classes = class_names(cfg, state, path)
    du.init_distributed(settings["device"].type == "cuda")
    model = build_model_from_checkpoint(cfg, state, settings["device"], str(path))
    return run_test(model, dataset, classes, cfg.OUTPUT_DIR, str(path), failed_as_wrong=cfg.TEST.FAILED_AS_WRONG,
                    progress=progress, **settings)


def load_model_from_checkpoint(ckpt: PathLike, cfg: Optional[PathLike] = None, opts: Optional[Sequence[str]] = None,
                               device: Union[str, torch.device] = "cpu"):
    """``(model, cfg, classes)`` from a training checkpoint, the model in eval mode on ``device``; the
    config as in :func:`load_for_eval`. The model must fit the checkpoint (differing keys are named)."""
    config, path, state = load_for_eval(ckpt, cfg, opts)
    classes = class_names(config, state, path)
    return build_model_from_checkpoint(config, state, resolve_device(device), str(path)), config, classes


def predictor_from_checkpoint(path: PathLike, device: Union[str, torch.device, None] = "auto",
                              cfg: Optional[PathLike] = None, opts: Optional[Sequence[str]] = None,
                              amp: Optional[str] = None, batch_size: Optional[int] = None,
                              num_workers: Optional[int] = None, **kwargs: Any):
    """A :class:`cgd_video.inference.predictor.Predictor` of a checkpoint; unset settings come from the
    config (:func:`eval_settings`), the views' pixels from its ``DATA.*`` keys. ``kwargs``: ``views``, ``topk``."""
    from cgd_video.inference.predictor import Predictor

    config, ckpt_path, state = load_for_eval(path, cfg, opts)
    settings = eval_settings(config, "auto" if device is None else device, amp, batch_size, num_workers)
    model = build_model_from_checkpoint(config, state, settings["device"], str(ckpt_path))
    return Predictor(model, class_names(config, state, ckpt_path), test_dataset_kwargs(config), **settings, **kwargs)


def export_clip_shape(cfg, batch: int = 1, size: Optional[int] = None) -> Tuple[int, int, int, int, int]:
    """``(batch, 3, DATA.NUM_FRAMES, size, size)``, ``size`` defaulting to ``DATA.TEST_CROP``."""
    side = int(size or cfg.DATA.TEST_CROP)
    return (int(batch), 3, int(cfg.DATA.NUM_FRAMES), side, side)
