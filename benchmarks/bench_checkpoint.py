#!/usr/bin/env python
"""Checkpoint saving: streamed into the temporary file vs serialised in memory first.

    python benchmarks/bench_checkpoint.py --json benchmarks/results/bench_checkpoint_cpu.json   # C2D-R50 + CGD
    python benchmarks/bench_checkpoint.py --depth 18 --rounds 4 --json /tmp/bench_checkpoint_quick.json

The checkpoint is what ``tools/train.py`` writes (:func:`cgd_video.engine.checkpoint.save_checkpoint`): a
C2D-ResNet + CGD v10 model and its SGD momentum buffers after one optimiser step. Two ways of writing it
atomically (temporary file in the target's folder, flush, fsync, ``os.replace``):

  memory    ``torch.save`` into a ``BytesIO``, then its bytes written (the writer before 2026-12-02)
  streamed  ``torch.save`` straight into the open temporary file (:func:`cgd_video.utils.atomic.atomic_torch_save`)

Each round saves once each way, in alternating order, into the same folder (so both replace a file of the
same size). Peak memory is measured in a fresh child process per way: the peak resident set of one save
above the resident set before it (``VmHWM`` after a reset, as ``bench_model.py`` measures a step).
JSON ``ratios``: ``save_time_memory_vs_streamed`` (median over rounds of memory ÷ streamed seconds; > 1:
streaming is faster); ``peak_rss_added_mb`` per way.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.engine import checkpoint  # noqa: E402
from cgd_video.models import create_model  # noqa: E402
from cgd_video.utils import atomic  # noqa: E402
from bench_common import median_spread, write_json  # noqa: E402
from bench_model import _cpu_name  # noqa: E402


def _memory_first(obj, path) -> Path:
    """The previous writer: the whole checkpoint serialised into memory, then written atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic.atomic_write_bytes(path, buf.getvalue())


WAYS = {"memory": _memory_first, "streamed": atomic.atomic_torch_save}


def _trained(depth: int):
    model = create_model(f"c2d_r{depth}_cgd", num_classes=101, num_frames=4, layout="pytorchvideo8")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    opt.step()
    return model, opt


def _save(way: str, model, opt, path: Path) -> float:
    """Seconds of one ``save_checkpoint`` with its writer swapped for ``way``'s."""
    original = checkpoint.atomic_torch_save
    checkpoint.atomic_torch_save = WAYS[way]
    try:
        t0 = time.perf_counter()
        checkpoint.save_checkpoint(path, model, opt, None, 0, 1)
        return time.perf_counter() - t0
    finally:
        checkpoint.atomic_torch_save = original


def _peak_child(way: str, depth: int, folder: str) -> float:
    """MB added to the peak RSS by one save, in a fresh process (bench_model's ``VmHWM`` measure)."""
    from bench_model import _pin_malloc, peak_memory  # the spawned child imports this module by name

    _pin_malloc()  # freed blocks go back to the OS, so a buffer shows up in the RSS instead of reusing them
    model, opt = _trained(depth)
    peak = peak_memory(lambda: _save(way, model, opt, Path(folder) / f"peak_{way}.pt"), torch.device("cpu"))
    return float("nan") if peak is None else peak / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, default=50, choices=(18, 34, 50, 101), help="C2D-ResNet depth (default 50)")
    ap.add_argument("--rounds", type=int, default=8, help="saves per way, alternating (default 8)")
    ap.add_argument("--dir", type=Path, help="where to write (default: a temporary folder; the disk matters)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench_checkpoint_", dir=args.dir))
    model, opt = _trained(args.depth)
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    ratios: list[float] = []
    for r in range(args.rounds):
        order = list(WAYS) if r % 2 == 0 else list(WAYS)[::-1]
        t = {w: _save(w, model, opt, folder / "last.pt") for w in order}
        for w, s in t.items():
            times[w].append(s)
        ratios.append(t["memory"] / t["streamed"])
    size_mb = (folder / "last.pt").stat().st_size / 1e6
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        peaks = {w: pool.apply(_peak_child, (w, args.depth, str(folder))) for w in WAYS}
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()

    ratio, spread = median_spread(ratios)
    result = {
        "machine": {"cpu": _cpu_name(), "logical_cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "model": f"c2d_r{args.depth}_cgd + SGD momentum", "checkpoint_mb": round(size_mb, 1), "rounds": args.rounds,
        "seconds_median": {w: statistics.median(v) for w, v in times.items()},
        "peak_rss_added_mb": peaks,
        "ratios": {"save_time_memory_vs_streamed": ratio},
        "ratio_spread": {"save_time_memory_vs_streamed": spread},
    }
    print(f"checkpoint: {result['model']}, {size_mb:.1f} MB, {args.rounds} alternating rounds, folder on "
          f"{args.dir or tempfile.gettempdir()}")
    print(f"{'way':<10}{'save s (median)':>18}{'peak RSS added MB':>20}")
    for w in WAYS:
        print(f"{w:<10}{result['seconds_median'][w]:>18.3f}{peaks[w]:>20.0f}")
    print(f"save time, memory / streamed: {ratio:.2f} (p25-p75 {spread['p25']:.2f}-{spread['p75']:.2f})")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
