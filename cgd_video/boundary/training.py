"""Config -> training job: ``build_job(cfg)`` fills ``engine.settings.TrainJob``; ``main(argv)`` is the CLI.

Everything is checked before the engine starts (one :class:`cgd_video.config.ConfigError` line, exit 2):
lists, classes, the data root, the model keys, the weights file. The checkpoint's ``recipe`` keys are
the config keys read while building what shapes the trajectory (model, training data, optimiser,
schedule, loop), recorded by a read tracer (``boundary/_reads.py``) rather than listed by hand; paths,
periods, the device and the loader are read outside it and may change on resume.

``main(argv, extra_hooks=())`` is ``tools/train.py``. Tests that need a slow, signalled or poisoned step
call it with extra hooks (``tests/_train_with_hooks.py``); the production loop has no test switches.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch

from cgd_video.boundary._reads import reads_of
from cgd_video.boundary.data import build_test_dataset, build_train_dataset, read_classes_for, train_dataset_kwargs
from cgd_video.boundary.model import (arch_keys, build_model, bn_cancels_cgd_warning, model_kwargs, pretrained_warning,
                                       unused_model_keys)
from cgd_video.config import ConfigError, load_config
from cgd_video.engine.hooks import REQUEUE_EXIT_CODE

__all__ = ["prepare_batch", "schedule_kwargs", "optimizer_kwargs", "loop_settings", "run_settings", "recipe_keys",
           "build_job", "train_from_config", "main", "EXIT_CODES"]


def prepare_batch(batch: Any, device: torch.device, channels_last: bool = False,
                  augment: Optional[Callable] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """A training loader batch ``(clips, labels, index, replaced_from[, params])`` -> ``(inputs, labels)`` on
    ``device``. ``augment``: the device-side augmentation (:func:`cgd_video.data.device_augment.augment`
    with the crop size and normalisation bound), applied to uint8 clips with their ``params`` on ``device``."""
    clips, labels = batch[0], batch[1]
    clips = clips.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    if augment is not None:
        clips = augment(clips, batch[4])
    if channels_last:
        clips = clips.contiguous(memory_format=torch.channels_last_3d)
    return clips, labels


def _device_augment(cfg) -> Callable:
    """The device half of the train augmentation; the dataset draws it and carries uint8 (training data
    built with ``device_augment=True`` in :func:`build_job`)."""
    from cgd_video.data.device_augment import augment

    kw = train_dataset_kwargs(cfg)
    return functools.partial(augment, crop_size=kw["crop_size"], mean=kw["mean"], std=kw["std"])


def schedule_kwargs(cfg) -> Dict[str, Any]:
    """:func:`cgd_video.engine.lr_schedule.lr_at` keyword arguments (all but the epoch and ``base_lr``).
    ``SOLVER.MAX_EPOCH`` shapes the schedule only under the cosine policy, so only then is it read."""
    s = cfg.SOLVER
    kw = dict(policy=s.LR_POLICY, steps=tuple(s.STEPS), gamma=s.GAMMA, warmup_epochs=s.WARMUP_EPOCHS,
              warmup_start_factor=s.WARMUP_START_FACTOR)
    if s.LR_POLICY == "cosine":
        kw.update(max_epoch=s.MAX_EPOCH, cosine_end_factor=s.COSINE_END_FACTOR)
    return kw


def optimizer_kwargs(cfg) -> Dict[str, Any]:
    """:func:`cgd_video.engine.optim.build_optimizer` keyword arguments (all but the model and the LR)."""
    s = cfg.SOLVER
    return dict(name=s.OPTIMIZER, momentum=s.MOMENTUM, nesterov=s.NESTEROV, weight_decay=s.WEIGHT_DECAY,
                cgd_weight_decay=s.CGD_WEIGHT_DECAY, norm_weight_decay=s.NORM_WEIGHT_DECAY,
                bias_weight_decay=s.BIAS_WEIGHT_DECAY)


def loop_settings(cfg):
    from cgd_video.engine.settings import LoopSettings

    t, s = cfg.TRAIN, cfg.SOLVER
    for key, value, least in (("TRAIN.BATCH_SIZE", t.BATCH_SIZE, 1), ("TRAIN.ACCUM_STEPS", t.ACCUM_STEPS, 1),
                              ("SOLVER.MAX_EPOCH", s.MAX_EPOCH, 1), ("TRAIN.PRECISE_BN_BATCHES", t.PRECISE_BN_BATCHES, 0)):
        if value < least:
            raise ConfigError(f"config key '{key}' must be at least {least}, got {value}")
    return LoopSettings(max_epoch=s.MAX_EPOCH, batch_size=t.BATCH_SIZE, accum_steps=t.ACCUM_STEPS, amp=t.AMP,
                        clip_grad_norm=s.CLIP_GRAD_NORM, seed=cfg.SEED, sync_bn=t.SYNC_BN,
                        channels_last=t.CHANNELS_LAST, base_lr=s.BASE_LR, reference_batch=s.REFERENCE_BATCH,
                        linear_scaling=s.LINEAR_SCALING, precise_bn_batches=t.PRECISE_BN_BATCHES)


def run_settings(cfg):
    from cgd_video.engine.settings import RunSettings

    t = cfg.TRAIN
    return RunSettings(output_dir=cfg.OUTPUT_DIR, device=t.DEVICE, cpu_threads=t.CPU_THREADS, compile=t.COMPILE,
                       auto_resume=t.AUTO_RESUME, log_period=t.LOG_PERIOD, checkpoint_period=t.CHECKPOINT_PERIOD,
                       checkpoint_iters=t.CHECKPOINT_ITERS, eval_period=t.EVAL_PERIOD,
                       eval_batch_size=cfg.TEST.BATCH_SIZE, stop_after_iters=t.STOP_AFTER_ITERS,
                       num_workers=cfg.DATALOADER.NUM_WORKERS, pin_memory=cfg.DATALOADER.PIN_MEMORY)


_WHERE = ("DATA.ROOT", "DATA.BACKEND")  # where and how the training videos are read, not what is learnt


def _trajectory(cfg) -> None:
    """Read everything that shapes the optimisation trajectory (the reads are recorded)."""
    model_kwargs(cfg)
    train_dataset_kwargs(cfg)
    schedule_kwargs(cfg)
    optimizer_kwargs(cfg)
    loop_settings(cfg)


def recipe_keys(cfg) -> Dict[str, Any]:
    """``{"KEY": value}`` of every config key the trajectory depends on, compared on resume. Not in it:
    where the data lives, ``SOLVER.MAX_EPOCH`` under a step schedule (raising it extends a run), and the
    ``MODEL`` keys of modules the model does not have (:func:`~cgd_video.boundary.model.unused_model_keys`)."""
    _, reads = reads_of(_trajectory, cfg)
    for key in (*_WHERE, *unused_model_keys(cfg)):
        reads.pop(key, None)
    if cfg.SOLVER.LR_POLICY != "cosine":
        reads.pop("SOLVER.MAX_EPOCH", None)
    return reads


def build_job(cfg):
    """The :class:`cgd_video.engine.settings.TrainJob` of ``cfg``; every input checked first."""
    from cgd_video.engine.optim import build_optimizer

    model_kwargs(cfg)  # contradictory MODEL keys are reported before the data is looked at
    classes = read_classes_for(cfg)
    train_ds = build_train_dataset(cfg)
    train_ds.device_augment = True  # workers decode and cut; prepare_batch augments on the model's device
    build_model(cfg)  # fail now (not after the data is set up) on contradictory keys or a bad weights file
    loop, run = loop_settings(cfg), run_settings(cfg)
    val_ds = None
    if run.eval_period > 0 and (cfg.DATA.VAL_LIST or cfg.DATA.TEST_LIST):
        val_ds = build_test_dataset(cfg, split="val", num_clips=1, num_crops=1)  # the test protocol's centre view
    from cgd_video.engine.settings import TrainJob

    return TrainJob(
        loop=loop, run=run, build_model=functools.partial(build_model, cfg),
        build_optimizer=lambda model, lr: build_optimizer(model, lr, **optimizer_kwargs(cfg)),
        schedule=schedule_kwargs(cfg), train_dataset=train_ds,
        prepare_batch=functools.partial(prepare_batch, channels_last=loop.channels_last, augment=_device_augment(cfg)),
        num_classes=cfg.MODEL.NUM_CLASSES, classes=classes, arch=arch_keys(cfg), recipe=recipe_keys(cfg),
        config_text=cfg.dump(), val_dataset=val_ds, name=cfg.MODEL.NAME,
        warnings=[w for w in [pretrained_warning(cfg), bn_cancels_cgd_warning(cfg)] if w])


def train_from_config(cfg, extra_hooks: Sequence = ()) -> Dict[str, Any]:
    """``engine.trainer.train(build_job(cfg), extra_hooks)``: the Python form of ``tools/train.py``."""
    from cgd_video.engine.trainer import train

    return train(build_job(cfg), extra_hooks)


# tools/train.py exit status: 0 finished or stopped by SIGTERM (saved), 2 bad input, 3 non-finite loss,
# 75 stopped by SIGUSR1 (saved; the launcher should requeue, tools/slurm/train.sbatch does).
EXIT_CODES = {"ok": 0, "bad_input": 2, "non_finite": 3, "requeue": REQUEUE_EXIT_CODE}


def main(argv: Sequence[str] | None = None, extra_hooks: Sequence = (), description: str = "Train a video model.") -> int:
    """``tools/train.py``: parse ``--cfg NAME [KEY VALUE ...]``, train, print a one-line result.
    ``extra_hooks`` run after the built-in ones (tests: ``tests/_train_with_hooks.py``)."""
    import argparse
    import os

    from cgd_video.engine.checkpoint import CheckpointError
    from cgd_video.engine.distributed import cleanup
    from cgd_video.engine.trainer import NonFiniteLossError, TrainSetupError

    parser = argparse.ArgumentParser(prog="tools/train.py", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="config file or name in configs/")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    try:
        summary = train_from_config(load_config(args.cfg, args.opts), extra_hooks)
    except (ConfigError, CheckpointError, TrainSetupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CODES["bad_input"]
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CODES["non_finite"]
    finally:
        cleanup()
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if summary["status"] in ("sigterm", "sigusr1"):
        if rank0:
            print(f"{summary['status'].upper()}: stopped at iteration {summary['iteration']}, last checkpoint "
                  f"{summary['checkpoint']}; run the same command to resume")
        return EXIT_CODES["requeue"] if summary["status"] == "sigusr1" else EXIT_CODES["ok"]
    if rank0:
        kept = summary["checkpoint"] or "none saved: TRAIN.STOP_AFTER_ITERS stops without saving"
        print(f"done ({summary['status']}): epoch {summary['epoch']}, iteration {summary['iteration']}; "
              f"outputs in {summary['output_dir']} (checkpoint {kept})")
    return EXIT_CODES["ok"]
