"""Precise BatchNorm statistics: every BN layer's running mean and variance recomputed over training
batches with the weights frozen, as PySlowFast's ``BN.USE_PRECISE_STATS`` does (Wu & Johnson,
"Rethinking 'Batch' in BatchNorm", 2021).

Why: evaluation normalises with the running statistics, an exponential average (momentum 0.1) of the
batch statistics of the last few training steps, each taken under slightly different weights. With small
batches (a few clips per GPU, or 8 on a CPU) that average is noisy and lags the final weights. Recomputing
the statistics over ``N`` batches of the final weights removes the lag and most of the noise; the weights
do not change. (It is no cure for an unstable recipe: the demo checkpoint that scored 0.667 kept that
score with precise statistics, ``docs/BENCHMARKS.md`` §6j; its training had not converged.)

Statistics are the plain average over the batches of each batch's mean and (unbiased) variance: what
``momentum=None`` gives in PyTorch's BatchNorm. Under DDP every rank averages its own batches and the ranks'
averages are then averaged (one all-reduce), so every rank ends with the same statistics.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, List

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cgd_video.engine import distributed as du
from cgd_video.engine.checkpoint import unwrap_model
from cgd_video.engine.train_loop import HookBase
from cgd_video.runtime import autocast_context

__all__ = ["bn_layers", "recompute_bn_stats", "PreciseBN"]

logger = logging.getLogger("cgd_video.train")


def bn_layers(model: nn.Module) -> List[_BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics (those evaluation uses)."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterable[Any], prepare_batch: Callable, device: torch.device,
                       amp: str = "none") -> int:
    """Replace the running statistics of every BN layer of ``model`` by their average over ``batches``.

    ``prepare_batch(batch, device) -> (inputs, labels)`` as in training (device-side augmentation
    included); forwards run under the training autocast. Only the BN layers are in training mode (dropout
    and the like stay off, so no random numbers are drawn); the weights, the layers' momentum and their
    ``num_batches_tracked`` are as before. Returns the number of batches used; with none, nothing changes.
    Under DDP this is a collective: every rank must call it (with its own batches).
    """
    layers = bn_layers(model)
    if not layers:
        return 0
    kept = [(m.momentum, m.num_batches_tracked.clone(), m.running_mean.clone(), m.running_var.clone())
            for m in layers]
    was_training = model.training
    model.eval()
    for m in layers:
        m.train()
        m.reset_running_stats()
        m.momentum = None  # cumulative average: running = mean over the batches seen since the reset
    used = 0
    try:
        for batch in batches:
            inputs, _ = prepare_batch(batch, device)
            with autocast_context(device, amp):
                model(inputs)
            used += 1
    finally:
        for m, (momentum, tracked, mean, var) in zip(layers, kept):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
            if used == 0:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
        model.train(was_training)
    if used and du.is_dist():
        flat = torch.cat([t.reshape(-1).float() for m in layers for t in (m.running_mean, m.running_var)])
        flat = du.all_reduce_tensor(flat) / du.get_world_size()
        offset = 0
        for m in layers:
            for t in (m.running_mean, m.running_var):
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()
    return used


class PreciseBN(HookBase):
    """After each epoch that is validated (every ``period`` epochs) and after the last one: the BN
    statistics recomputed over ``num_batches`` training batches of that epoch (:func:`recompute_bn_stats`),
    before the validation and the checkpoint see the model.

    ``batches(epoch, num_batches)``: this rank's first ``num_batches`` training batches of ``epoch``, in
    the epoch's order and with its augmentation (``(seed, epoch, index)``), so a resumed run recomputes
    the same statistics.
    """

    def __init__(self, num_batches: int, period: int, max_epoch: int,
                 batches: Callable[[int, int], Iterable[Any]]) -> None:
        self.num_batches, self.period, self.max_epoch, self.batches = num_batches, period, max_epoch, batches

    def after_epoch(self) -> None:
        loop = self.loop
        done = loop.iteration // loop.steps_per_epoch
        if self.num_batches <= 0 or not (done == self.max_epoch or (self.period > 0 and done % self.period == 0)):
            return
        t0 = time.perf_counter()
        used = recompute_bn_stats(unwrap_model(loop.model), self.batches(done - 1, self.num_batches),
                                  loop.prepare_batch, loop.device, loop.amp)
        logger.info("precise BN after epoch %d: statistics of %d batches (%.1f s)", done, used,
                    time.perf_counter() - t0)
