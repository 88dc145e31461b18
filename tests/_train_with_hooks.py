"""Test-side launcher: ``tools/train.py`` (``cgd_video.boundary.training.main``) plus injected hooks.

    python tests/_train_with_hooks.py [--sleep S] [--nan-rank R --nan-iter N] [--rc-file F] --cfg ... KEY VALUE ...

``--sleep S``: every optimiser step sleeps S seconds (so a test can signal or kill a run mid-epoch).
``--nan-rank R --nan-iter N``: before step N (1-based), rank R fills its ``fc`` weight with NaN, so only
that rank's loss is non-finite. ``--losses DIR``: every rank appends each step's loss to DIR/rank<r>.txt.
``--rc-file F``: the exit status is also written to F.<rank> (torchrun hides the workers' statuses).
Used by tests/test_train_e2e.py and tests/test_train_defects.py; multi-node tests reuse it the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from cgd_video.boundary.training import main  # noqa: E402
from cgd_video.engine.checkpoint import unwrap_model  # noqa: E402
from cgd_video.engine.train_loop import HookBase  # noqa: E402

RANK = int(os.environ.get("RANK", "0"))


class Sleep(HookBase):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def after_step(self) -> None:
        time.sleep(self.seconds)


class PoisonRank(HookBase):
    def __init__(self, rank: int, iteration: int) -> None:
        self.rank, self.iteration = rank, iteration

    def before_step(self) -> None:
        if RANK == self.rank and self.loop.iteration + 1 == self.iteration:
            with torch.no_grad():
                unwrap_model(self.loop.model).fc.weight.fill_(float("nan"))


class RecordLoss(HookBase):
    def __init__(self, folder: str) -> None:
        self.path = Path(folder) / f"rank{RANK}.txt"

    def after_step(self) -> None:
        with open(self.path, "a") as f:
            f.write(f"{self.loop.iteration} {float(self.loop.storage['step_loss']):.10f}\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--nan-rank", type=int, default=-1)
    parser.add_argument("--nan-iter", type=int, default=0)
    parser.add_argument("--losses", default="")
    parser.add_argument("--rc-file", default="")
    args, rest = parser.parse_known_args()
    hooks = []
    if args.losses:
        hooks.append(RecordLoss(args.losses))
    if args.sleep:
        hooks.append(Sleep(args.sleep))
    if args.nan_rank >= 0:
        hooks.append(PoisonRank(args.nan_rank, args.nan_iter))
    rc = main(rest, extra_hooks=hooks)
    if args.rc_file:
        Path(f"{args.rc_file}.{RANK}").write_text(str(rc))
    sys.exit(rc)
