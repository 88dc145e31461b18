"""Checkpoints of a training run: periodic, at epoch ends, on a stop signal; and the resume side.

Every save is collective: each rank hands over its RNG state (Python, NumPy, torch CPU, CUDA) and rank 0
writes one file with ``rng_per_rank`` in rank order, the weights, the optimiser, the scaler and every
hook's ``state_dict``. On resume each rank restores its own RNG state, so a run of the same world size
continues bit-identically on CPU (dropout masks included). On a different world size the per-rank
streams cannot be matched; the run goes on and says so (:func:`restore`).

Before a save the loop's device-side non-finite flag is read: a NaN run never overwrites a good
checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from cgd_video.engine import distributed as du
from cgd_video.engine.checkpoint import (
    CheckpointError,
    check_compatible,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    unwrap_model,
)
from cgd_video.engine.train_loop import HookBase, TrainLoop
from cgd_video.utils.logging import get_logger

__all__ = ["Checkpointer", "last_checkpoint_path", "load_for_resume", "restore"]

logger = get_logger("cgd_video.train")


def last_checkpoint_path(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints" / "last.pt"


class Checkpointer(HookBase):
    """``last.pt`` every ``every_iters`` steps (0: off), at every epoch end, and when a stop is agreed;
    ``epoch_XXXX.pt`` every ``every_epochs`` epochs (0: off). ``meta`` is stored in every checkpoint."""

    def __init__(self, out_dir: Path, meta: Dict[str, Any], every_iters: int = 0, every_epochs: int = 0) -> None:
        self.dir = Path(out_dir) / "checkpoints"
        self.meta, self.every_iters, self.every_epochs = meta, every_iters, every_epochs

    def save(self, name: str = "last.pt") -> Optional[Path]:
        loop = self.loop
        loop.raise_if_non_finite()
        rngs = du.all_gather_objects(get_rng_state())
        if not du.is_main_process():
            return None
        hooks = {type(h).__name__: h.state_dict() for h in loop.hooks}
        meta = dict(self.meta, rng_per_rank=rngs, world_size=du.get_world_size(),
                    steps_per_epoch=loop.steps_per_epoch, hooks={k: v for k, v in hooks.items() if v})
        path = save_checkpoint(self.dir / name, loop.model, loop.optimizer, loop.scaler,
                               loop.iteration // loop.steps_per_epoch, loop.iteration, meta)
        loop.storage["kept_checkpoint"] = str(self.dir / "last.pt")
        return path

    def after_step(self) -> None:
        loop = self.loop
        if loop.epoch_end:
            return  # saved in after_epoch, after validation
        if loop.stop_agreed or (self.every_iters > 0 and loop.iteration % self.every_iters == 0):
            self.save()

    def after_epoch(self) -> None:
        self.save()
        done = self.loop.iteration // self.loop.steps_per_epoch
        if self.every_epochs > 0 and done % self.every_epochs == 0:
            self.save(f"epoch_{done:04d}.pt")


def load_for_resume(path: Path, arch: Dict[str, Any], recipe: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The checkpoint at ``path`` when present, after checking that it holds this model (``arch``) and
    this training recipe (``recipe``); raises :class:`CheckpointError` naming every differing key."""
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    if "arch" not in ckpt or "recipe" not in ckpt:
        raise CheckpointError(f"{path} predates the stored model/recipe keys: resume it with the version "
                              "that wrote it, or use a new OUTPUT_DIR")
    check_compatible(ckpt["arch"], arch, str(path), "model")
    check_compatible(ckpt["recipe"], recipe, str(path), "recipe")
    return ckpt


def _same_world(ckpt: Dict[str, Any]) -> bool:
    """Whether the checkpoint was saved by as many processes as run now; warns (once per rank 0) if not."""
    old_world = int(ckpt.get("world_size", 1))
    if old_world != du.get_world_size() and du.is_main_process():
        logger.warning(
            "resuming with %d processes instead of %d: no longer bit-identical to an uninterrupted run. The "
            "total batch (and the linearly scaled LR) differ; each rank's RNG stream (dropout masks, any "
            "torch/NumPy/Python randomness in the step) starts anew from SEED + rank instead of its saved "
            "state; a mid-epoch position is recounted in steps of the new size. Unchanged: the epoch's sample "
            "order and augmentation, seeded from (SEED, epoch, index), and no sample of the epoch is seen twice "
            "or skipped.", du.get_world_size(), old_world)
    return old_world == du.get_world_size()


def restore(loop: TrainLoop, ckpt: Dict[str, Any], path: str) -> None:
    """Weights, optimiser, scaler, hook states and (same world size) this rank's RNG state."""
    same_world = _same_world(ckpt)
    unwrap_model(loop.model).load_state_dict(ckpt["model"])
    loop.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        loop.scaler.load_state_dict(ckpt["scaler"])
    states = ckpt.get("hooks", {})
    for h in loop.hooks:
        if type(h).__name__ in states:
            h.load_state_dict(states[type(h).__name__])
    if same_world:
        per_rank = ckpt.get("rng_per_rank") or [ckpt["rng"]]
        set_rng_state(per_rank[du.get_rank()] if len(per_rank) > du.get_rank() else ckpt["rng"])
    loop.storage["kept_checkpoint"] = path
    logger.info("resumed from %s: epoch %d, iteration %d", path, ckpt["epoch"], loop.iteration)
