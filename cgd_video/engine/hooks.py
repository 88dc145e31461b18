"""The small hooks around :class:`cgd_video.engine.train_loop.TrainLoop` (detectron2 ``hooks.py`` style).

Order in a run (``engine/trainer.py``): :class:`LRSchedule`, :class:`Preemption`, ``PreciseBN``
(``engine/precise_bn.py``), :class:`Evaluation`,
``MetricsWriter`` (``engine/writers.py``), ``Checkpointer`` (``engine/checkpointer.py``),
:class:`StopAfter`, then any ``extra_hooks`` the caller passes (tests inject slow or failing steps that
way; nothing test-only lives here).
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable, Dict, Optional

from cgd_video.engine.lr_schedule import lr_at
from cgd_video.engine.optim import set_lr
from cgd_video.engine.train_loop import HookBase

__all__ = ["LRSchedule", "Preemption", "Evaluation", "StopAfter", "REQUEUE_EXIT_CODE", "STOP_SIGNALS"]

# Exit status of a run stopped by SIGUSR1 (Slurm ``--signal=USR1@90``): saved, asks to be requeued.
# EX_TEMPFAIL from sysexits.h; tools/slurm/train.sbatch requeues on it. SIGTERM saves and exits 0.
REQUEUE_EXIT_CODE = 75
# stop code -> (signal, status name). The code is what ranks all-reduce (max): USR1 wins over TERM.
STOP_SIGNALS = {1: (signal.SIGTERM, "sigterm"), 2: (signal.SIGUSR1, "sigusr1")}


class LRSchedule(HookBase):
    """Sets every group's LR before each step from :func:`lr_at` at the fractional epoch.

    ``schedule``: :func:`lr_at`'s keyword arguments except the epoch, built once (the scaled base LR
    included), so nothing is looked up per step.
    """

    def __init__(self, schedule: Dict[str, Any]) -> None:
        self.schedule = dict(schedule)

    def before_step(self) -> None:
        loop = self.loop
        lr = lr_at(loop.iteration / loop.steps_per_epoch, **self.schedule)
        set_lr(loop.optimizer, lr)
        loop.storage["lr"] = lr


class Preemption(HookBase):
    """SIGTERM / SIGUSR1 -> save at the next step boundary on every rank, then stop.

    The handler only records the signal; the loop carries it to every rank in its per-step agreement
    (DDP) or reads it directly (one process), and the ``Checkpointer`` saves when it sees
    ``loop.stop_agreed``. Workers ignore these signals (``engine.trainer.ignore_stop_signals``), so a
    signal sent to the whole process group (Slurm, ``kill -- -PGID``, torchrun's agent) reaches only
    the trainers. Handlers are installed from the main thread only and restored after training.
    """

    def __init__(self) -> None:
        self.received = 0
        self._previous: Dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        code = next(c for c, (s, _) in STOP_SIGNALS.items() if s == signum)
        self.received = max(self.received, code)

    def before_train(self) -> None:
        self.loop.stop_signal = lambda: self.received
        if threading.current_thread() is threading.main_thread():
            for sig, _ in STOP_SIGNALS.values():
                self._previous[sig] = signal.signal(sig, self._handle)

    def after_step(self) -> None:
        if self.loop.stop_agreed and self.loop.stop_reason is None:
            self.loop.stop_reason = STOP_SIGNALS[self.loop.stop_agreed][1]

    def after_train(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class Evaluation(HookBase):
    """Validation every ``period`` epochs and after the last: ``evaluate_fn(model) -> metrics dict``.

    Keeps the latest metrics as its state, so a resumed run still reports them.
    """

    def __init__(self, evaluate_fn: Optional[Callable[[Any, int], Dict[str, float]]], period: int,
                 max_epoch: int) -> None:
        self.evaluate_fn, self.period, self.max_epoch = evaluate_fn, period, max_epoch
        self.last: Optional[Dict[str, float]] = None

    def after_epoch(self) -> None:
        done = self.loop.iteration // self.loop.steps_per_epoch
        if self.evaluate_fn is None or self.period <= 0:
            return
        if done % self.period == 0 or done == self.max_epoch:
            self.last = dict(self.evaluate_fn(self.loop.model, done))
            self.loop.storage["val"] = self.last

    def state_dict(self) -> dict:
        return {"last": self.last} if self.last is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.last = state.get("last")


class StopAfter(HookBase):
    """Stop after ``n`` optimiser steps of this process (0: never), unless the step ended an epoch."""

    def __init__(self, n: int) -> None:
        self.n = n

    def after_step(self) -> None:
        loop = self.loop
        if self.n and loop.iteration - loop.start_iteration >= self.n and loop.stop_reason is None:
            loop.stop_reason = "stop_after_iters"
