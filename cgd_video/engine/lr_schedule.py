"""Learning rate as a pure function of the fractional epoch (PySlowFast ``utils/lr_policy.py`` style).

Nothing to save or restore on resume: the LR hook calls :func:`lr_at` with
``epoch + iteration / iters_per_epoch`` before every optimiser step, with keyword arguments the config
boundary built once (``cgd_video.boundary.training.schedule_kwargs``). The paper (Sec. 4.1) uses SGD with
a gradual (linear) warmup, then x0.1 at epochs 40 and 80 of 100; cosine decay is offered as well.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["lr_at", "scaled_base_lr"]


def lr_at(
    epoch: float,
    base_lr: float,
    policy: str = "step",
    max_epoch: float = 100,
    steps: Sequence[float] = (40, 80),
    gamma: float = 0.1,
    warmup_epochs: float = 0.0,
    warmup_start_factor: float = 0.1,
    cosine_end_factor: float = 0.0,
) -> float:
    """LR at fractional ``epoch``.

    Warmup: for ``epoch < warmup_epochs`` the LR rises linearly from ``warmup_start_factor * base_lr``
    to the decayed schedule's value at ``warmup_epochs`` (so there is no jump when warmup ends).

    Policies:
        ``"step"``: ``base_lr * gamma ** (number of steps <= epoch)``.
        ``"cosine"``: ``end + (base_lr - end) * (1 + cos(pi * epoch / max_epoch)) / 2`` with
        ``end = cosine_end_factor * base_lr``.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    decay = _POLICIES.get(policy)
    if decay is None:
        raise ValueError(f"unknown LR policy {policy!r}; choose one of {sorted(_POLICIES)}")
    kwargs = dict(base_lr=base_lr, max_epoch=max_epoch, steps=steps, gamma=gamma, cosine_end_factor=cosine_end_factor)
    if warmup_epochs > 0 and epoch < warmup_epochs:
        start = warmup_start_factor * base_lr
        end = decay(warmup_epochs, **kwargs)
        return start + (end - start) * epoch / warmup_epochs
    return decay(epoch, **kwargs)


def _step(epoch: float, base_lr: float, steps: Sequence[float], gamma: float, **_: object) -> float:
    return base_lr * gamma ** sum(1 for s in steps if epoch >= s)


def _cosine(epoch: float, base_lr: float, max_epoch: float, cosine_end_factor: float, **_: object) -> float:
    end = cosine_end_factor * base_lr
    t = min(epoch, max_epoch) / max_epoch
    return end + (base_lr - end) * 0.5 * (1.0 + math.cos(math.pi * t))


_POLICIES = {"step": _step, "cosine": _cosine}


def scaled_base_lr(base_lr: float, total_batch: int, reference_batch: int, linear_scaling: bool) -> float:
    """Linear scaling rule (Goyal et al. 2017): ``base_lr * total_batch / reference_batch``.

    ``total_batch`` = clips per process x world size x accumulation steps. With the paper's
    ``BASE_LR 0.01`` at ``REFERENCE_BATCH 44``, a 1-GPU run with ``BATCH_SIZE 8, ACCUM_STEPS 1`` gets
    0.01 x 8 / 44. Disabled (``linear_scaling=False``) it returns ``base_lr`` unchanged.
    """
    if not linear_scaling:
        return base_lr
    if reference_batch <= 0:
        raise ValueError(f"the reference batch must be > 0 with linear scaling, got {reference_batch}")
    return base_lr * total_batch / reference_batch
