"""``train(job, extra_hooks=())``: set up a run from plain settings, resume it, and run the loop.

The job (``engine/settings.py``) comes from ``cgd_video.boundary.training.build_job(cfg)``; nothing here
reads a config. Set-up order matters for defect-free restarts:

1. device, threads, process group, seeds (``SEED + rank``), model, epoch batches, optimiser;
2. the resume checkpoint is loaded and checked (model keys and recipe keys) *before anything is
   written*: a refused run leaves ``OUTPUT_DIR`` exactly as it was;
3. only then, on rank 0: stale checkpoint temporaries are removed, ``metrics.jsonl`` is cut back to
   the resumed iteration, and ``config.yaml`` is written;
4. hooks are registered and restored, the model is wrapped in DDP, and the loop runs.

Exact resume: the data order is ``du.epoch_order(n, seed, epoch)`` (DistributedSampler's) sharded after the
samples already consumed, augmentation comes from (seed, epoch, index) inside the dataset (its epoch lives
in shared memory, so the one loader's persistent workers see it), the LR is a pure function of the
fractional epoch, and checkpoints hold every rank's RNG state. DataLoader workers ignore
SIGTERM/SIGINT/SIGUSR1 (:func:`ignore_stop_signals`).
"""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from cgd_video.engine import distributed as du
from cgd_video.engine.checkpoint import unwrap_model
from cgd_video.engine.checkpointer import Checkpointer, last_checkpoint_path, load_for_resume, restore
from cgd_video.engine.hooks import REQUEUE_EXIT_CODE, Evaluation, LRSchedule, Preemption, StopAfter
from cgd_video.engine.lr_schedule import scaled_base_lr
from cgd_video.engine.precise_bn import PreciseBN
from cgd_video.engine.settings import TrainJob
from cgd_video.engine.train_loop import HookBase, NonFiniteLossError, TrainLoop
from cgd_video.engine.writers import METRICS_FILE, MetricsHook, MetricsWriter, truncate_metrics
from cgd_video.runtime import grad_scaler, maybe_compile, resolve_device, set_cpu_threads
from cgd_video.utils.atomic import atomic_write_text, clean_stale_temporaries
from cgd_video.utils.logging import get_logger

__all__ = ["NonFiniteLossError", "TrainSetupError", "REQUEUE_EXIT_CODE", "ignore_stop_signals", "train",
           "last_checkpoint_path"]

logger = get_logger("cgd_video.train")


class TrainSetupError(ValueError):
    """The run cannot start as configured (e.g. fewer videos than one step); the message says what to change."""


def ignore_stop_signals(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's worker_init_fn signature
    """DataLoader workers ignore SIGTERM/SIGINT/SIGUSR1: a signal to the whole process group is left to the
    trainer, which saves at the next step boundary (otherwise the loader dies with "worker killed")."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _EpochBatches:
    """``(epoch, skip_steps) -> DataLoader`` over this rank's samples of that epoch, finished steps skipped.

    The order comes from ``du.epoch_order`` and is sharded after the samples already consumed
    (``consumed[epoch]`` when a resume changed the world size, else ``skip_steps`` full steps of every rank).
    """

    def __init__(self, job: TrainJob, world: int, rank: int, device: torch.device):
        self.job, self.world, self.rank, self.device = job, world, rank, device
        self.per_step = job.loop.batch_size * job.loop.accum_steps
        self.steps_per_epoch = len(job.train_dataset) // (self.per_step * world)
        self.consumed: Dict[int, int] = {}
        self.indices: list = []  # this epoch's samples: the sampler of one loader whose workers persist
        self.loader: DataLoader | None = None

    def __call__(self, epoch: int, skip_steps: int) -> DataLoader:
        job = self.job
        if hasattr(job.train_dataset, "set_epoch"):
            job.train_dataset.set_epoch(epoch)
        consumed = self.consumed.pop(epoch, skip_steps * self.per_step * self.world)
        order = du.epoch_order(len(job.train_dataset), job.loop.seed, epoch)
        indices = du.train_shard(order, consumed, self.rank, self.world, self.steps_per_epoch - skip_steps,
                                 self.per_step)
        self.indices[:] = indices  # the dataset's epoch is in shared memory: persistent workers see set_epoch
        return self._loader()

    def _loader(self) -> DataLoader:
        """The one loader over ``self.indices`` (built on first use; its workers persist)."""
        job = self.job
        if self.loader is None:
            self.loader = DataLoader(job.train_dataset, batch_size=job.loop.batch_size, sampler=self.indices,
                                     num_workers=job.run.num_workers, persistent_workers=job.run.num_workers > 0,
                                     pin_memory=job.run.pin_memory and self.device.type == "cuda", drop_last=False,
                                     worker_init_fn=ignore_stop_signals,
                                     collate_fn=getattr(job.train_dataset, "collate_fn", None),
                                     generator=torch.Generator().manual_seed(job.loop.seed * 100_003))
        return self.loader

    def first_batches(self, epoch: int, num_batches: int) -> DataLoader:
        """This rank's first ``num_batches`` micro-batches of ``epoch`` (at most the epoch's), through the
        same loader, with the epoch's augmentation (precise BN statistics)."""
        if hasattr(self.job.train_dataset, "set_epoch"):
            self.job.train_dataset.set_epoch(epoch)
        order = du.epoch_order(len(self.job.train_dataset), self.job.loop.seed, epoch)
        shard = du.train_shard(order, 0, self.rank, self.world, self.steps_per_epoch, self.per_step)
        self.indices[:] = shard[: num_batches * self.job.loop.batch_size]
        return self._loader()

    def close(self) -> None:
        """End the persistent workers with the run (they ignore stop signals, so exit would wait on them)."""
        self.loader = None

    def resume_iteration(self, iteration: int, old_world: int, old_steps_per_epoch: int) -> int:
        """This run's iteration for a checkpoint saved at ``iteration`` by ``old_world`` processes: the
        same on the same world size; else the epoch's consumed samples are kept and the remaining steps
        recounted (the fractional epoch, hence the LR, moves by at most one step)."""
        if old_world == self.world and old_steps_per_epoch == self.steps_per_epoch:
            return iteration
        epoch, done = divmod(iteration, old_steps_per_epoch)
        if done == 0:
            return epoch * self.steps_per_epoch
        consumed = done * self.per_step * old_world
        remaining = (len(self.job.train_dataset) - consumed) // (self.per_step * self.world)
        self.consumed[epoch] = consumed
        return epoch * self.steps_per_epoch + max(self.steps_per_epoch - remaining, 0)


def _make_loop(job: TrainJob, device: torch.device, world: int, rank: int) -> TrainLoop:
    model = job.build_model().to(device)
    if job.loop.channels_last:
        model = model.to(memory_format=torch.channels_last)
    batches = _EpochBatches(job, world, rank, device)
    per_step, steps_per_epoch = batches.per_step, batches.steps_per_epoch
    if steps_per_epoch < 1:
        raise TrainSetupError(
            f"{len(job.train_dataset)} training videos over {world} process(es) give fewer than one step of "
            f"batch size x accumulation steps = {per_step} clips: lower the batch size")
    base_lr = scaled_base_lr(job.loop.base_lr, per_step * world, job.loop.reference_batch, job.loop.linear_scaling)
    loop = TrainLoop(model, job.build_optimizer(model, base_lr), grad_scaler(device, job.loop.amp),
                     batches, job.prepare_batch, device,
                     steps_per_epoch, job.loop.max_epoch * steps_per_epoch, job.loop.accum_steps, job.loop.amp,
                     job.loop.clip_grad_norm)
    loop.storage["base_lr"] = base_lr
    return loop


def _accept(job: TrainJob, out_dir: Path, resumed_iteration: int) -> None:
    """Rank 0, once the run is accepted: clean stale temporaries, cut metrics back, write config.yaml."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder in (out_dir, out_dir / "checkpoints"):
        for p in clean_stale_temporaries(folder):
            logger.info("removed %s (left by an interrupted write)", p)
    dropped = truncate_metrics(out_dir / METRICS_FILE, resumed_iteration)
    if dropped:
        logger.info("%s: dropped %d records past the resumed iteration %d", METRICS_FILE, dropped,
                    resumed_iteration)
    atomic_write_text(out_dir / "config.yaml", job.config_text)


def _evaluate_fn(job: TrainJob, device: torch.device):
    if job.val_dataset is None or job.run.eval_period <= 0:
        return None
    from cgd_video.engine.evaluator import evaluate

    def run(model: nn.Module, epoch: int) -> Dict[str, float]:
        return evaluate(unwrap_model(model), job.val_dataset, job.num_classes, batch_size=job.run.eval_batch_size,
                        device=device, num_workers=job.run.num_workers, amp=job.loop.amp,
                        channels_last=job.loop.channels_last, desc=f"val {epoch}").metrics

    return run


def _hooks(job: TrainJob, loop: TrainLoop, out_dir: Path, device: torch.device, main: bool) -> list:
    schedule = dict(job.schedule, base_lr=loop.storage["base_lr"])
    meta = dict(cfg=job.config_text, classes=list(job.classes), arch=job.arch, recipe=job.recipe)
    precise_bn = PreciseBN(job.loop.precise_bn_batches, job.run.eval_period, job.loop.max_epoch,
                           loop.batches_for.first_batches)
    return [LRSchedule(schedule), Preemption(), precise_bn, Evaluation(_evaluate_fn(job, device), job.run.eval_period,
                                                           job.loop.max_epoch),
            MetricsHook(MetricsWriter(out_dir, main), job.run.log_period, job.loop.max_epoch),
            Checkpointer(out_dir, meta, job.run.checkpoint_iters, job.run.checkpoint_period),
            StopAfter(job.run.stop_after_iters)]


def _wrap(loop: TrainLoop, job: TrainJob, device: torch.device, world: int) -> None:
    loop.model = maybe_compile(loop.model, job.run.compile)
    if world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(loop.model) if job.loop.sync_bn else loop.model
        loop.model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def train(job: TrainJob, extra_hooks: Sequence[HookBase] = ()) -> Dict[str, Any]:
    """Train as ``job`` says; returns a summary (status, epoch, iteration, last validation metrics, paths).

    ``status``: ``"finished"``, ``"sigterm"``, ``"sigusr1"`` (exit with :data:`REQUEUE_EXIT_CODE`) or
    ``"stop_after_iters"``. ``extra_hooks`` run after the built-in hooks (tests add slow or failing steps).
    Raises :class:`NonFiniteLossError` on a NaN/inf loss (on any rank), :class:`TrainSetupError`, and
    :class:`cgd_video.engine.checkpoint.CheckpointError` for an incompatible ``last.pt``.
    """
    device = resolve_device(job.run.device)
    set_cpu_threads(job.run.cpu_threads)
    info = du.init_distributed(device.type == "cuda")
    _seed_everything(job.loop.seed + info.rank)
    out_dir, main = Path(job.run.output_dir), info.rank == 0
    loop = _make_loop(job, device, info.world_size, info.rank)
    ckpt_path = last_checkpoint_path(out_dir)
    ckpt = load_for_resume(ckpt_path, job.arch, job.recipe) if job.run.auto_resume else None
    if main:
        _accept(job, out_dir, int(ckpt["iteration"]) if ckpt else 0)
        for w in job.warnings:
            logger.warning("%s", w)
    loop.register(_hooks(job, loop, out_dir, device, main) + list(extra_hooks))
    if ckpt is not None:
        restore(loop, ckpt, str(ckpt_path))
    _wrap(loop, job, device, info.world_size)
    logger.info("training %s: %d videos, %d steps/epoch, total batch %d (%d x %d processes x %d accum), lr %.5g, "
                "device %s", job.name, len(job.train_dataset), loop.steps_per_epoch,
                job.loop.batch_size * info.world_size * job.loop.accum_steps, job.loop.batch_size,
                info.world_size, job.loop.accum_steps, loop.storage["base_lr"], device)
    start = 0
    if ckpt is not None:
        start = loop.batches_for.resume_iteration(int(ckpt["iteration"]), int(ckpt.get("world_size", 1)),
                                                  int(ckpt.get("steps_per_epoch", loop.steps_per_epoch)))
    try:
        loop.train(start)
    finally:
        loop.batches_for.close()
    du.barrier()
    return dict(status=loop.stop_reason or "finished", val=_last_val(loop),
                epoch=min(job.loop.max_epoch, loop.iteration // loop.steps_per_epoch), iteration=loop.iteration,
                output_dir=str(out_dir), checkpoint=loop.storage.get("kept_checkpoint"))  # None: nothing saved


def _last_val(loop: TrainLoop):
    return next((h.last for h in loop.hooks if isinstance(h, Evaluation)), None)
