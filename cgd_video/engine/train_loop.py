"""A tiny training loop with hooks (the design of detectron2's ``engine/train_loop.py``, written anew).

:class:`TrainLoop` owns one optimiser step and nothing else: for each of ``accum_steps`` micro-batches
``prepare_batch`` -> forward under autocast -> cross-entropy -> the finite check -> backward (DDP's
``no_sync`` on all but the last micro-batch), then clipping and the optimiser step. Everything around it
is a :class:`HookBase` called at ``before_train`` / ``before_step`` / ``after_step`` / ``after_epoch`` /
``after_train``: LR, metrics, evaluation, checkpoints, signals, stop-after (``engine/hooks.py``).
A hook asks the loop to stop by setting ``loop.stop_reason``.

Host syncs: loss, accuracy (:class:`StepMeter`) and the non-finite flag stay on the device and are read
only when a hook asks (the logging period, a checkpoint). Under DDP a rank with a non-finite loss must not
skip ``backward`` while the others enter the gradient all-reduce (a collective mismatch in gloo, a hang
in NCCL), so every micro-batch all-reduces ``[non-finite, stop signal]`` *before* backward and reads it:
one 2-element all-reduce and one device-to-host read per micro-batch, under DDP only. The stop signal rides
in the same all-reduce, so preemption needs no collective of its own.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cgd_video.engine import distributed as du
from cgd_video.runtime import autocast_context

__all__ = ["HookBase", "NonFiniteLossError", "StepMeter", "TrainLoop"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the message names the iteration and the checkpoint that was kept."""


class HookBase:
    """A training hook. ``self.loop`` is set when registered; ``state_dict`` goes into checkpoints."""

    loop: "TrainLoop"

    def before_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...

    def after_epoch(self) -> None: ...

    def after_train(self) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class StepMeter:
    """Device-side sums of weighted loss and correct clips (no host sync to add)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss x weight, correct clips
        self.clips = 0
        self.steps = 0

    def add(self, sums: torch.Tensor, clips: int) -> None:
        """``sums``: ``[loss x weight, correct clips]`` of one micro-batch (float64, on the device)."""
        self.sums += sums
        self.clips += clips

    def read(self, world_reduce: bool = True) -> dict:
        """Mean step loss, accuracy and clips since :meth:`reset`, summed over ranks (a collective)."""
        host = torch.tensor([float(self.clips), float(self.steps)], dtype=torch.float64)
        sums = torch.cat([self.sums, host.to(self.device)])
        if world_reduce:
            sums = du.all_reduce_tensor(sums)
        loss, correct, clips, steps = sums.tolist()
        return dict(loss=loss / max(steps, 1), acc=correct / max(clips, 1), clips=int(clips))


class TrainLoop:
    """Runs optimiser steps from ``start_iteration`` to ``max_iter`` over ``batches_for(epoch, skip)``."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any,
                 batches_for: Callable[[int, int], Iterable[Any]], prepare_batch: Callable, device: torch.device,
                 steps_per_epoch: int, max_iter: int, accum_steps: int = 1, amp: str = "none",
                 clip_grad_norm: float = 0.0) -> None:
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.batches_for, self.prepare_batch, self.device = batches_for, prepare_batch, device
        self.steps_per_epoch, self.max_iter, self.accum_steps = steps_per_epoch, max_iter, accum_steps
        self.amp, self.clip_grad_norm = amp, clip_grad_norm
        self.hooks: List[HookBase] = []
        self.iteration = self.start_iteration = 0
        self.epoch = 0
        self.stop_reason: Optional[str] = None
        self.stop_signal: Callable[[], int] = lambda: 0  # set by the signal hook: 0 none, else a code
        self.stop_agreed = 0  # the stop code every rank agreed on (max over ranks)
        self.window, self.epoch_meter = StepMeter(device), StepMeter(device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)  # first non-finite iteration
        self.times = dict(data=0.0, compute=0.0)
        self.replaced = 0
        self.storage: dict = {}  # values hooks hand each other (lr, val metrics)

    def register(self, hooks: Sequence[HookBase]) -> None:
        for h in hooks:
            h.loop = self
            self.hooks.append(h)

    def _call(self, stage: str) -> None:
        for h in self.hooks:
            getattr(h, stage)()

    @property
    def epoch_end(self) -> bool:
        """The step just finished was the last of its epoch."""
        return self.iteration % self.steps_per_epoch == 0

    def train(self, start_iteration: int) -> None:
        self.iteration = self.start_iteration = start_iteration
        self._call("before_train")
        try:
            while self.iteration < self.max_iter and self.stop_reason is None:
                self.epoch = self.iteration // self.steps_per_epoch
                skip = self.iteration - self.epoch * self.steps_per_epoch
                self.model.train()  # evaluation (a hook) leaves the model in eval mode
                for micro_batches in _steps(self.batches_for(self.epoch, skip), self.accum_steps, self.times):
                    self._call("before_step")
                    self.run_step(micro_batches)
                    self.iteration += 1
                    self._call("after_step")
                    if self.stop_reason is not None and not self.epoch_end:
                        break
                if self.epoch_end:
                    self._call("after_epoch")
        finally:
            self._call("after_train")

    def run_step(self, micro_batches: Iterator[Any]) -> None:
        """One optimiser step over ``accum_steps`` micro-batches."""
        t0 = time.perf_counter()
        ddp = isinstance(self.model, DistributedDataParallel)
        step_loss = None
        for i, batch in enumerate(micro_batches):
            inputs, labels = self.prepare_batch(batch, self.device)
            if len(batch) > 3:  # (clips, labels, index, replaced_from): videos swapped for undecodable ones
                self.replaced += (torch.as_tensor(batch[3]) >= 0).sum()  # a CPU tensor; read per epoch
            sync = self.model.no_sync() if ddp and i < self.accum_steps - 1 else nullcontext()
            with sync:
                with autocast_context(self.device, self.amp):
                    logits = self.model(inputs)
                    loss = F.cross_entropy(logits.float(), labels)
                if ddp:
                    self._agree_before_backward(loss, i)
                self.scaler.scale(loss / self.accum_steps).backward()
            weighted = self._measure(loss.detach(), logits.detach(), labels)
            step_loss = weighted if step_loss is None else step_loss + weighted
        self._optimizer_step()
        self.storage["step_loss"] = step_loss  # on the device: read it only when needed
        self.times["compute"] += time.perf_counter() - t0 - self.times.pop("_waited", 0.0)

    def _measure(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One micro-batch into both meters and the non-finite flag (device ops only); its loss share."""
        correct = (logits.argmax(1) == labels).sum()
        sums = torch.stack([loss.double() * (1.0 / self.accum_steps), correct.double()])
        for meter in (self.window, self.epoch_meter):
            meter.add(sums, len(labels))
        self.first_bad.masked_fill_(~torch.isfinite(loss) & (self.first_bad < 0), self.iteration + 1)
        return loss / self.accum_steps

    def _agree_before_backward(self, loss: torch.Tensor, micro: int) -> None:
        """DDP: every rank learns whether any rank's loss is non-finite (and any stop signal) before backward."""
        flags = torch.stack([(~torch.isfinite(loss.detach())).float(),
                             torch.tensor(float(self.stop_signal()), device=loss.device)])
        bad, stop = du.all_reduce_tensor(flags, op="max").tolist()
        self.stop_agreed = max(self.stop_agreed, int(stop))
        if bad:
            self.first_bad.fill_(self.iteration + 1)
            raise self.non_finite_error(micro)

    def _optimizer_step(self) -> None:
        if self.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        for meter in (self.window, self.epoch_meter):
            meter.steps += 1
        if not du.is_dist():  # one process: the stop signal needs no agreement
            self.stop_agreed = max(self.stop_agreed, self.stop_signal())

    def non_finite_error(self, micro: Optional[int] = None) -> NonFiniteLossError:
        it = int(self.first_bad)
        where = f", micro-batch {micro + 1}/{self.accum_steps}" if micro is not None else ""
        kept = self.storage.get("kept_checkpoint", "(none yet)")
        return NonFiniteLossError(
            f"non-finite loss at iteration {it} (epoch {(it - 1) // self.steps_per_epoch + 1}{where}, "
            f"on at least one rank); stopping. Last good "
            f"checkpoint kept: {kept}. Lower the base LR or check the data."
        )

    def raise_if_non_finite(self) -> None:
        """Read the device-side non-finite flag (a host sync): raise if any loss so far was NaN/inf."""
        if int(self.first_bad) >= 0:
            raise self.non_finite_error()


def _steps(batches: Iterable[Any], accum: int, times: dict) -> Iterator[Iterator[Any]]:
    """Group the epoch's micro-batches by optimiser step, timing the waits for data."""
    it = iter(batches)
    while True:
        t0 = time.perf_counter()
        try:
            first = next(it)
        except StopIteration:
            return
        waited = time.perf_counter() - t0
        times["data"] += waited
        yield _chain_timed(first, it, accum - 1, times)


def _chain_timed(first: Any, it: Iterator[Any], more: int, times: dict) -> Iterator[Any]:
    yield first
    for _ in range(more):
        t0 = time.perf_counter()
        batch = next(it)
        waited = time.perf_counter() - t0
        times["data"] += waited
        times["_waited"] = times.get("_waited", 0.0) + waited
        yield batch
