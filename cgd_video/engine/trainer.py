"""Training loop: ``train(cfg)`` = data, model, optimiser, resume, epochs, validation, checkpoints.

Exact resume: the data order comes from ``DistributedSampler(seed=SEED).set_epoch(epoch)``, augmentation
from (seed, epoch, index) inside the dataset, every DataLoader gets its own generator (creating one never
touches the global RNG), the LR is a pure function of the fractional epoch, and checkpoints (optionally
every ``TRAIN.CHECKPOINT_ITERS`` optimiser steps) hold the RNG states. A run killed at any moment and
restarted with the same command continues from ``OUTPUT_DIR/checkpoints/last.pt``; on CPU it ends with
the same weights as an uninterrupted run. SIGTERM saves ``last.pt`` and returns (preemption).
A non-finite loss raises :class:`NonFiniteLossError` without saving, so the last good checkpoint stays.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from cgd_video.builders import build_model, build_test_dataset, build_train_dataset, read_classes_for
from cgd_video.engine import distributed as du
from cgd_video.engine.checkpoint import (
    check_resume_compatible,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    unwrap_model,
)
from cgd_video.engine.evaluator import evaluate
from cgd_video.runtime import autocast_context, resolve_device, set_cpu_threads
from cgd_video.engine.lr_schedule import lr_at_from_cfg, scaled_base_lr
from cgd_video.engine.optim import build_optimizer, set_lr
from cgd_video.utils.atomic import atomic_write_text
from cgd_video.utils.logging import get_logger

__all__ = ["NonFiniteLossError", "resolve_device", "set_cpu_threads", "train", "train_one_epoch", "last_checkpoint_path"]

logger = get_logger("cgd_video.train")

# Testing aid: seconds to sleep after every optimiser step, so a test can kill a run mid-epoch.
_STEP_SLEEP_ENV = "CGD_VIDEO_STEP_SLEEP"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the message names the iteration and the checkpoint that was kept."""


def last_checkpoint_path(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints" / "last.pt"


class _StopFlag:
    """Set by SIGTERM (preemption); checked after every optimiser step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class _MetricsLog:
    """``metrics.jsonl`` (rank 0, one JSON object per line, flushed) and TensorBoard when installed."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        self.file = open(out_dir / "metrics.jsonl", "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"))
        except Exception:  # noqa: BLE001 - tensorboard is optional
            self.tb = None

    def write(self, record: Dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            kind = record.get("type", "train")
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "iteration"):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


@dataclass
class _Run:
    """Everything the epoch loop needs (built once by :func:`train`)."""

    cfg: Any
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_ds: Any
    sampler: DistributedSampler
    classes: List[str]
    steps_per_epoch: int
    base_lr: float
    out_dir: Path
    log: _MetricsLog
    stop: _StopFlag
    iteration: int = 0
    steps_this_process: int = 0
    start_time: float = field(default_factory=time.perf_counter)
    start_iteration: int = 0


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_loader(run: _Run, epoch: int, skip_steps: int) -> DataLoader:
    """This rank's indices for ``epoch`` (skipping finished steps) and a loader over them."""
    cfg = run.cfg
    run.sampler.set_epoch(epoch)
    if hasattr(run.train_ds, "set_epoch"):
        run.train_ds.set_epoch(epoch)
    per_step = cfg.TRAIN.BATCH_SIZE * cfg.TRAIN.ACCUM_STEPS
    indices = list(run.sampler)[: run.steps_per_epoch * per_step][skip_steps * per_step:]
    loader = DataLoader(
        run.train_ds,
        batch_size=cfg.TRAIN.BATCH_SIZE,
        sampler=indices,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        pin_memory=cfg.DATALOADER.PIN_MEMORY and run.device.type == "cuda",
        drop_last=False,
        generator=torch.Generator().manual_seed(cfg.SEED * 100_003 + epoch),
    )
    return loader


def _save(run: _Run, epoch: int, name: str = "last.pt") -> Optional[Path]:
    if not du.is_main_process():
        return None
    path = run.out_dir / "checkpoints" / name
    extra = {"world_size": du.get_world_size(), "steps_per_epoch": run.steps_per_epoch}
    return save_checkpoint(
        path, run.model, run.optimizer, run.scaler, epoch, run.iteration, run.cfg, run.classes, extra
    )


def train_one_epoch(run: _Run, epoch: int, skip_steps: int = 0) -> Dict[str, Any]:
    """One epoch (from step ``skip_steps`` on). Returns stats; ``stats["stopped"]`` on SIGTERM/stop."""
    cfg = run.cfg
    accum = cfg.TRAIN.ACCUM_STEPS
    loader = _epoch_loader(run, epoch, skip_steps)
    run.model.train()
    step_sleep = float(os.environ.get(_STEP_SLEEP_ENV, "0") or 0)
    main = du.is_main_process()
    bar = tqdm(total=run.steps_per_epoch, initial=skip_steps, desc=f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
               unit="step", disable=not main, dynamic_ncols=True)
    sums = {"loss": 0.0, "correct": 0.0, "clips": 0, "replaced": 0, "data": 0.0, "compute": 0.0}
    step_loss, micro = 0.0, 0
    total_steps = cfg.SOLVER.MAX_EPOCH * run.steps_per_epoch
    stopped = None
    t_data = time.perf_counter()
    for clips, labels, _, replaced_from in loader:
        t_compute = time.perf_counter()
        sums["data"] += t_compute - t_data
        sums["replaced"] += int((torch.as_tensor(replaced_from) >= 0).sum())
        if micro == 0:
            lr = lr_at_from_cfg(epoch + (run.iteration - epoch * run.steps_per_epoch) / run.steps_per_epoch,
                                cfg.SOLVER, base_lr=run.base_lr)
            set_lr(run.optimizer, lr)
        clips = clips.to(run.device, non_blocking=True)
        labels = labels.to(run.device, non_blocking=True)
        if cfg.TRAIN.CHANNELS_LAST:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        last_micro = micro == accum - 1
        sync = run.model.no_sync() if (isinstance(run.model, DistributedDataParallel) and not last_micro) else None
        with sync if sync is not None else _null():
            with autocast_context(run.device, cfg.TRAIN.AMP):
                logits = run.model(clips)
                loss = F.cross_entropy(logits.float(), labels)
            finite = bool(torch.isfinite(loss).item())
            if finite:
                run.scaler.scale(loss / accum).backward()
        if du.all_reduce_flag(not finite, run.device):
            bar.close()
            kept = last_checkpoint_path(run.out_dir)
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at iteration {run.iteration + 1} (epoch {epoch + 1}, "
                f"micro-batch {micro + 1}/{accum}); stopping. Last good checkpoint kept: "
                f"{kept if kept.is_file() else '(none yet)'}. Lower SOLVER.BASE_LR or check the data."
            )
        step_loss += loss.item() / accum
        sums["correct"] += (logits.argmax(1) == labels).sum().item()
        sums["clips"] += len(labels)
        micro += 1
        if micro < accum:
            t_data = time.perf_counter()
            continue
        if cfg.SOLVER.CLIP_GRAD_NORM > 0:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.model.parameters(), cfg.SOLVER.CLIP_GRAD_NORM)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        run.iteration += 1
        run.steps_this_process += 1
        sums["loss"] += step_loss
        now = time.perf_counter()
        sums["compute"] += now - t_compute
        step_in_epoch = run.iteration - epoch * run.steps_per_epoch
        bar.update(1)
        elapsed = now - run.start_time
        done = run.iteration - run.start_iteration
        eta = elapsed / max(done, 1) * (total_steps - run.iteration)
        clips_per_s = sums["clips"] * du.get_world_size() / max(sums["data"] + sums["compute"], 1e-9)
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}", clips_s=f"{clips_per_s:.1f}",
                        data_s=f"{sums['data']:.1f}", compute_s=f"{sums['compute']:.1f}",
                        eta=time.strftime("%H:%M:%S", time.gmtime(eta)))
        if run.iteration % max(cfg.TRAIN.LOG_PERIOD, 1) == 0:
            run.log.write(dict(type="train", epoch=epoch + step_in_epoch / run.steps_per_epoch, iteration=run.iteration,
                               loss=step_loss, lr=lr, clips_per_s=clips_per_s, data_time=sums["data"],
                               compute_time=sums["compute"]), run.iteration)
        step_loss, micro = 0.0, 0
        if step_sleep:
            time.sleep(step_sleep)
        at_end = step_in_epoch == run.steps_per_epoch
        if not at_end and cfg.TRAIN.CHECKPOINT_ITERS > 0 and run.iteration % cfg.TRAIN.CHECKPOINT_ITERS == 0:
            _save(run, epoch)
        if du.all_reduce_flag(run.stop.requested, run.device) and not at_end:
            stopped = "sigterm"
            _save(run, epoch)
            break
        if cfg.TRAIN.STOP_AFTER_ITERS and run.steps_this_process >= cfg.TRAIN.STOP_AFTER_ITERS and not at_end:
            stopped = "stop_after_iters"
            break
        t_data = time.perf_counter()
    bar.close()
    sums["replaced"] = int(du.all_reduce_sum(sums["replaced"], run.device))  # over all ranks
    n_steps = max(run.iteration - epoch * run.steps_per_epoch - skip_steps, 1)
    return dict(loss=sums["loss"] / n_steps, train_acc=sums["correct"] / max(sums["clips"], 1),
                replaced_videos=sums["replaced"], data_time=sums["data"], compute_time=sums["compute"],
                stopped=stopped)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _validate(run: _Run, val_ds, epoch: int) -> Dict[str, float]:
    cfg = run.cfg
    res = evaluate(unwrap_model(run.model) if du.is_dist() else run.model, val_ds, cfg.MODEL.NUM_CLASSES,
                   batch_size=cfg.TEST.BATCH_SIZE, device=run.device, num_workers=cfg.DATALOADER.NUM_WORKERS,
                   amp=cfg.TRAIN.AMP, channels_last=cfg.TRAIN.CHANNELS_LAST, desc=f"val {epoch + 1}")
    return res.metrics


def _resume(run: _Run) -> int:
    """Load ``last.pt`` when present (checked for compatibility). Returns completed epochs."""
    path = last_checkpoint_path(run.out_dir)
    if not (run.cfg.TRAIN.AUTO_RESUME and path.is_file()):
        return 0
    ckpt = load_checkpoint(path)
    check_resume_compatible(ckpt, run.cfg, str(path))
    old_world = int(ckpt.get("world_size", du.get_world_size()))
    offset = int(ckpt["iteration"]) - int(ckpt["epoch"]) * run.steps_per_epoch
    if old_world != du.get_world_size() or int(ckpt.get("steps_per_epoch", run.steps_per_epoch)) != run.steps_per_epoch:
        if offset != 0:
            raise RuntimeError(
                f"{path} was saved mid-epoch by a run with {old_world} processes and "
                f"{ckpt.get('steps_per_epoch')} steps per epoch; now {du.get_world_size()} and "
                f"{run.steps_per_epoch}. Resume with the same number of processes."
            )
        logger.warning("resuming with %d processes instead of %d: the total batch (and scaled LR) differ",
                       du.get_world_size(), old_world)
    unwrap_model(run.model).load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    if du.get_world_size() == 1 or old_world == du.get_world_size():
        set_rng_state(ckpt["rng"])
    run.iteration = int(ckpt["iteration"])
    logger.info("resumed from %s: epoch %d, iteration %d", path, ckpt["epoch"], run.iteration)
    return int(ckpt["epoch"])


def train(cfg) -> Dict[str, Any]:
    """Train as ``cfg`` says; returns a summary (epochs, iteration, last validation metrics, status).

    Raises :class:`NonFiniteLossError` on a NaN/inf loss and
    :class:`cgd_video.engine.checkpoint.CheckpointError` for an incompatible ``last.pt``.
    """
    device = resolve_device(cfg.TRAIN.DEVICE)
    set_cpu_threads(cfg.TRAIN.CPU_THREADS)
    info = du.init_distributed(device.type == "cuda")
    _seed_everything(cfg.SEED + info.rank)
    out_dir = Path(cfg.OUTPUT_DIR)
    main = info.rank == 0
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.yaml", cfg.dump())
    classes = read_classes_for(cfg)

    model = build_model(cfg).to(device)
    if cfg.TRAIN.CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    train_ds = build_train_dataset(cfg)
    per_step = cfg.TRAIN.BATCH_SIZE * cfg.TRAIN.ACCUM_STEPS
    sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=cfg.SEED, drop_last=True)
    steps_per_epoch = len(sampler) // per_step
    if steps_per_epoch < 1:
        raise ValueError(
            f"{len(train_ds)} training videos over {info.world_size} process(es) give fewer than one step of "
            f"TRAIN.BATCH_SIZE x TRAIN.ACCUM_STEPS = {per_step} clips: lower TRAIN.BATCH_SIZE"
        )
    total_batch = per_step * info.world_size
    base_lr = scaled_base_lr(cfg.SOLVER.BASE_LR, total_batch, cfg.SOLVER.REFERENCE_BATCH, cfg.SOLVER.LINEAR_SCALING)
    optimizer = build_optimizer(model, cfg.SOLVER, lr=base_lr)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.TRAIN.AMP == "fp16")

    val_ds = None
    if cfg.TRAIN.EVAL_PERIOD > 0 and (cfg.DATA.VAL_LIST or cfg.DATA.TEST_LIST):
        val_ds = build_test_dataset(cfg, split="val", num_clips=1, num_crops=1)  # the test protocol's centre view

    with _StopFlag() as stop:
        log = _MetricsLog(out_dir, main)
        run = _Run(cfg, device, model, optimizer, scaler, train_ds, sampler, classes, steps_per_epoch, base_lr,
                   out_dir, log, stop)
        try:
            start_epoch = _resume(run)
            run.start_iteration = run.iteration
            if info.world_size > 1:
                if cfg.TRAIN.SYNC_BN:
                    run.model = nn.SyncBatchNorm.convert_sync_batchnorm(run.model)
                run.model = DistributedDataParallel(
                    run.model, device_ids=[device.index] if device.type == "cuda" else None)
            logger.info("training %s: %d videos, %d steps/epoch, total batch %d (%d x %d processes x %d accum), "
                        "lr %.5g (base %.5g at %d clips%s), device %s", cfg.MODEL.NAME, len(train_ds),
                        steps_per_epoch, total_batch, cfg.TRAIN.BATCH_SIZE, info.world_size, cfg.TRAIN.ACCUM_STEPS,
                        base_lr, cfg.SOLVER.BASE_LR, cfg.SOLVER.REFERENCE_BATCH,
                        ", linear scaling" if cfg.SOLVER.LINEAR_SCALING else "", device)
            summary: Dict[str, Any] = dict(status="finished", val=None)
            for epoch in range(start_epoch, cfg.SOLVER.MAX_EPOCH):
                if du.all_reduce_flag(stop.requested, device):  # SIGTERM during validation/saving
                    summary["status"] = "sigterm"
                    break
                skip = run.iteration - epoch * steps_per_epoch
                t0 = time.perf_counter()
                stats = train_one_epoch(run, epoch, skip)
                if stats["stopped"]:
                    summary["status"] = stats["stopped"]
                    break
                record = dict(type="epoch", epoch=epoch + 1, iteration=run.iteration, time=time.perf_counter() - t0,
                              **{k: v for k, v in stats.items() if k != "stopped"})
                if val_ds is not None and (epoch + 1) % cfg.TRAIN.EVAL_PERIOD == 0 or (
                        val_ds is not None and epoch + 1 == cfg.SOLVER.MAX_EPOCH):
                    val = _validate(run, val_ds, epoch)
                    summary["val"] = val
                    run.log.write(dict(type="val", epoch=epoch + 1, iteration=run.iteration, **val), run.iteration)
                    record["val_top1"] = val["top1"]
                _save(run, epoch + 1)
                if cfg.TRAIN.CHECKPOINT_PERIOD > 0 and (epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0:
                    _save(run, epoch + 1, f"epoch_{epoch + 1:04d}.pt")
                run.log.write(record, run.iteration)
                logger.info("epoch %d: loss %.4f, train acc %.3f, replaced videos %d, %.1fs%s", epoch + 1,
                            stats["loss"], stats["train_acc"], stats["replaced_videos"], record["time"],
                            f", val top1 {record['val_top1']:.3f}" if "val_top1" in record else "")
            du.barrier()
        finally:
            log.close()
    summary.update(epoch=min(cfg.SOLVER.MAX_EPOCH, run.iteration // steps_per_epoch), iteration=run.iteration,
                   output_dir=str(out_dir), checkpoint=str(last_checkpoint_path(out_dir)))
    return summary
