#!/usr/bin/env python
"""Run a command-line script (``tools/train.py``) in this process and count its host syncs per step.

    python benchmarks/sync_probe.py --json probe.json --batch 8 --log-period 10 -- \
        tools/train.py --cfg ucf101_cgd TRAIN.DEVICE cuda ...

The script runs unchanged through ``runpy`` with its own argv (the public CLI); this wrapper only
observes it:

* host syncs: ``torch.cuda.set_sync_debug_mode("warn")`` makes every implicit device->host sync
  (``.item()``, ``bool(tensor)``, ``nonzero``, a blocking copy to the CPU, ...) raise a warning; an
  explicit ``torch.cuda.synchronize()`` does not warn there, so it is counted by wrapping it. Each
  sync is attributed to the optimiser step it happens before (``register_optimizer_step_post_hook``)
  and to the innermost frame of the project's code (cgd_video/, tools/) that caused it;
* step times: a timestamp at every optimiser step -> clips/s over the steps after ``--skip``;
* data wait: time the main process spends inside ``DataLoader`` iterators' ``__next__``.

On a machine without CUDA the sync fields are null (nothing to count) and the rest still runs.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.optim.optimizer import register_optimizer_step_post_hook  # noqa: E402
import torch.utils.data.dataloader as dl  # noqa: E402

from cgd_video.utils.atomic import atomic_write_text  # noqa: E402

SYNC_MESSAGE = "synchronizing CUDA operation"


class Probe:
    def __init__(self) -> None:
        self.step_times: list[float] = []
        self.syncs_before_step: list[int] = []  # syncs since the previous step, per step
        self.pending = 0
        self.sites: Counter[str] = Counter()
        self.data_wait = 0.0
        self.data_wait_at_step: list[float] = []

    def sync(self) -> None:
        self.pending += 1
        self.sites[_site()] += 1

    def step(self, *_args) -> None:
        self.step_times.append(time.perf_counter())
        self.syncs_before_step.append(self.pending)
        self.data_wait_at_step.append(self.data_wait)
        self.pending = 0


def _site() -> str:
    """Innermost project frame (cgd_video/ or tools/) of the current stack, else the innermost frame."""
    frames = traceback.extract_stack()[:-3]
    for frame in reversed(frames):
        rel = Path(frame.filename).resolve()
        if REPO in rel.parents and "benchmarks" not in rel.parts:
            return f"{rel.relative_to(REPO)}:{frame.lineno} {frame.name}"
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def install(probe: Probe, cuda: bool) -> None:
    register_optimizer_step_post_hook(probe.step)
    next_ = dl._BaseDataLoaderIter.__next__

    def timed_next(self):
        t0 = time.perf_counter()
        try:
            return next_(self)
        finally:
            probe.data_wait += time.perf_counter() - t0

    dl._BaseDataLoaderIter.__next__ = timed_next
    if not cuda:
        return
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if SYNC_MESSAGE in str(message):
            probe.sync()
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.filterwarnings("always", message=f".*{SYNC_MESSAGE}.*")
    warnings.showwarning = showwarning
    synchronize = torch.cuda.synchronize

    def counted_synchronize(*a, **kw):
        probe.sync()
        return synchronize(*a, **kw)

    torch.cuda.synchronize = counted_synchronize
    torch.cuda.set_sync_debug_mode("warn")


def summary(probe: Probe, batch: int, skip: int, log_period: int, cuda: bool) -> dict:
    n = len(probe.step_times)
    out: dict = {"steps": n, "batch": batch, "skip": skip, "log_period": log_period}
    if n - skip >= 2:
        t = probe.step_times
        span = t[-1] - t[skip]
        wait = probe.data_wait_at_step[-1] - probe.data_wait_at_step[skip]
        out.update(clips_per_s=batch * (n - 1 - skip) / span, seconds_per_step=span / (n - 1 - skip),
                   data_wait_s_per_step=wait / (n - 1 - skip), data_fraction=wait / span)
    if not cuda:
        out.update(host_syncs_per_step=None, host_syncs_between_logging_steps_max=None,
                   host_syncs_note="no CUDA device: nothing to count")
        return out
    per_step = probe.syncs_before_step  # index i = syncs before step i + 1 (after step i)
    # A logging step (iteration % log_period == 0) may read its metrics back: the syncs after it,
    # before the next step, belong to it; all others must be zero.
    between = [c for i, c in enumerate(per_step[1:], start=1) if log_period <= 0 or i % log_period != 0]
    out.update(host_syncs_per_step=per_step, host_syncs_after_last_step=probe.pending,
               host_syncs_between_logging_steps_max=max(between, default=0),
               host_syncs_total=sum(per_step) + probe.pending,
               host_sync_sites=dict(probe.sites.most_common(20)))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        raise SystemExit("sync_probe.py: usage: sync_probe.py [options] -- SCRIPT [ARGS...]")
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--batch", type=int, required=True, help="clips per optimiser step (for clips/s)")
    ap.add_argument("--skip", type=int, default=3, help="first steps left out of the rates (warm-up)")
    ap.add_argument("--log-period", type=int, default=0, help="the run's TRAIN.LOG_PERIOD")
    args = ap.parse_args(argv[:cut])
    script, script_args = argv[cut + 1], argv[cut + 2:]
    cuda = torch.cuda.is_available()
    probe = Probe()
    install(probe, cuda)
    sys.argv = [script, *script_args]
    t0 = time.perf_counter()
    status = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:  # the CLI's own exit status
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    result = {"script": script, "args": script_args, "exit_status": status,
              "wall_s": time.perf_counter() - t0, **summary(probe, args.batch, args.skip, args.log_period, cuda)}
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(f"sync_probe: {result['steps']} steps, clips/s {result.get('clips_per_s')}, "
          f"data fraction {result.get('data_fraction')}, "
          f"max host syncs between logging steps {result['host_syncs_between_logging_steps_max']}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
