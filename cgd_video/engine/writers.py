"""Metrics out of the loop: ``metrics.jsonl``, TensorBoard (when installed) and the tqdm bar.

Loss and accuracy are read from the loop's device-side meters only every ``log_period`` steps and at
epoch ends (the only host syncs for metrics) and are reduced over ranks: the logged loss is the mean
step loss of every rank, the accuracy counts every rank's clips. Files are written by rank 0 only.

On resume, :func:`truncate_metrics` drops every record past the resumed checkpoint's iteration, so the
steps the run repeats are logged once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from tqdm import tqdm

from cgd_video.engine import distributed as du
from cgd_video.engine.train_loop import HookBase
from cgd_video.utils.atomic import atomic_write_text

__all__ = ["MetricsWriter", "MetricsHook", "read_metrics", "truncate_metrics", "METRICS_FILE"]

METRICS_FILE = "metrics.jsonl"


def truncate_metrics(path: Path, iteration: int) -> int:
    """Keep the records of ``path`` up to ``iteration`` (and torn lines out); returns how many were dropped."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if int(rec.get("iteration", 0)) <= iteration:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(x + "\n" for x in kept))
    return dropped


def read_metrics(path: Path) -> Dict[str, List[Dict[str, Any]]]:
    """``metrics.jsonl`` records by type, one per (type, iteration, epoch): a later line supersedes an
    earlier one (files written before resumes were cut back may repeat steps), torn lines are skipped.
    Each list is sorted by iteration; ``tools/plot.py`` draws these points."""
    by_key: Dict[tuple, Dict[str, Any]] = {}
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write, or blank
        by_key[(rec.get("type", "train"), rec.get("iteration"), rec.get("epoch"))] = rec
    out: Dict[str, List[Dict[str, Any]]] = {}
    for (kind, _, _), rec in by_key.items():
        out.setdefault(kind, []).append(rec)
    for recs in out.values():
        recs.sort(key=lambda r: (r.get("iteration", 0), r.get("epoch", 0)))
    return out


class MetricsWriter:
    """``metrics.jsonl`` (one JSON object per line, flushed) and TensorBoard scalars; rank 0 writes."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.enabled, self.file, self.tb = enabled, None, None
        if not enabled:
            return
        self.file = open(out_dir / METRICS_FILE, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"))
        except Exception:  # noqa: BLE001 - tensorboard is optional
            self.tb = None

    def write(self, record: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "iteration"):
                    self.tb.add_scalar(f"{record['type']}/{k}", v, record["iteration"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


class MetricsHook(HookBase):
    """Train records every ``log_period`` steps, an epoch record (with validation) at every epoch end."""

    def __init__(self, writer: MetricsWriter, log_period: int, max_epoch: int) -> None:
        self.writer, self.log_period, self.max_epoch = writer, max(log_period, 1), max_epoch
        self.bar: Optional[tqdm] = None

    def before_train(self) -> None:
        self.started = time.perf_counter()
        self._open_bar()

    def _open_bar(self) -> None:
        loop = self.loop
        done = loop.iteration % loop.steps_per_epoch
        self.epoch_started = time.perf_counter()
        self.bar = tqdm(total=loop.steps_per_epoch, initial=done, unit="step", dynamic_ncols=True,
                        desc=f"epoch {loop.iteration // loop.steps_per_epoch + 1}/{self.max_epoch}",
                        disable=not du.is_main_process())

    def after_step(self) -> None:
        loop = self.loop
        self.bar.update(1)
        if loop.iteration % self.log_period:
            return
        loop.raise_if_non_finite()
        stats = loop.window.read()
        loop.window.reset()
        busy = loop.times["data"] + loop.times["compute"]
        clips_per_s = loop.epoch_meter.clips * du.get_world_size() / max(busy, 1e-9)
        eta = (time.perf_counter() - self.started) / max(loop.iteration - loop.start_iteration, 1) * (
            loop.max_iter - loop.iteration)
        self.writer.write(dict(type="train", epoch=loop.iteration / loop.steps_per_epoch, iteration=loop.iteration,
                               loss=stats["loss"], train_acc=stats["acc"], lr=loop.storage.get("lr"),
                               clips_per_s=clips_per_s, data_time=loop.times["data"],
                               compute_time=loop.times["compute"]))
        self.bar.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{loop.storage.get('lr', 0):.2e}",
                             clips_s=f"{clips_per_s:.1f}", data_s=f"{loop.times['data']:.1f}",
                             compute_s=f"{loop.times['compute']:.1f}", eta=time.strftime("%H:%M:%S", time.gmtime(eta)))

    def after_epoch(self) -> None:
        loop = self.loop
        self.bar.close()
        loop.raise_if_non_finite()
        stats = loop.epoch_meter.read()
        replaced = int(du.all_reduce_sum(int(loop.replaced), loop.device))
        record = dict(type="epoch", epoch=loop.iteration // loop.steps_per_epoch, iteration=loop.iteration,
                      time=time.perf_counter() - self.epoch_started, loss=stats["loss"], train_acc=stats["acc"],
                      clips=stats["clips"], replaced_videos=replaced, data_time=loop.times["data"],
                      compute_time=loop.times["compute"])
        val = loop.storage.pop("val", None)
        if val is not None:
            self.writer.write(dict(type="val", epoch=record["epoch"], iteration=loop.iteration, **val))
            record["val_top1"] = val.get("top1")
        self.writer.write(record)
        loop.storage["epoch_record"] = record
        loop.epoch_meter.reset()
        loop.replaced = 0
        loop.times.update(data=0.0, compute=0.0)
        if loop.iteration < loop.max_iter:
            self._open_bar()

    def after_train(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.writer.close()
