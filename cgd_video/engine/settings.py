"""Plain settings of a training run: what ``engine.trainer.train`` receives instead of a config node.

``cgd_video.boundary.training.build_job(cfg)`` fills a :class:`TrainJob` from the config; tests and the
Python API can fill one by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

__all__ = ["LoopSettings", "RunSettings", "TrainJob"]


@dataclass(frozen=True)
class LoopSettings:
    """What shapes the optimisation trajectory (compared on resume via the job's ``recipe``)."""

    max_epoch: int
    batch_size: int
    accum_steps: int = 1
    amp: str = "none"
    clip_grad_norm: float = 0.0
    seed: int = 0
    sync_bn: bool = False
    channels_last: bool = False
    base_lr: float = 0.01
    reference_batch: int = 44
    linear_scaling: bool = True
    precise_bn_batches: int = 0


@dataclass(frozen=True)
class RunSettings:
    """Where and how the run executes; may change between a run and its resume."""

    output_dir: str
    device: str = "auto"
    cpu_threads: int = 0
    compile: bool = False
    auto_resume: bool = True
    log_period: int = 10
    checkpoint_period: int = 1
    checkpoint_iters: int = 0
    eval_period: int = 0
    eval_batch_size: int = 1
    stop_after_iters: int = 0
    num_workers: int = 0
    pin_memory: bool = False


@dataclass
class TrainJob:
    """Everything ``train`` needs, as objects and plain values.

    ``build_model()``: the model on the CPU (pretrained weights loaded); ``build_optimizer(model, lr)``;
    ``schedule``: :func:`cgd_video.engine.lr_schedule.lr_at` keyword arguments except ``base_lr``;
    ``prepare_batch(batch, device) -> (inputs, labels)``: a loader batch on the device;
    ``arch`` / ``recipe``: ``{"KEY": value}`` of the keys that define the model / the trajectory (stored
    in checkpoints, compared on resume); ``config_text``: written to ``OUTPUT_DIR/config.yaml`` once the
    run is accepted; ``warnings``: printed (rank 0) at the start.
    """

    loop: LoopSettings
    run: RunSettings
    build_model: Callable[[], nn.Module]
    build_optimizer: Callable[[nn.Module, float], torch.optim.Optimizer]
    schedule: Dict[str, Any]
    train_dataset: Any
    prepare_batch: Callable[[Any, torch.device], Tuple[torch.Tensor, torch.Tensor]]
    num_classes: int
    classes: List[str]
    arch: Dict[str, Any]
    recipe: Dict[str, Any]
    config_text: str
    val_dataset: Optional[Any] = None
    name: str = "model"
    warnings: List[str] = field(default_factory=list)
