#!/usr/bin/env python
"""Process start-up: what the evaluation/inference tools import, with and without torchvision.

    python benchmarks/bench_startup.py --json benchmarks/results/bench_startup_cpu.json

Every ``tools/test.py``, ``tools/infer.py``, torchrun worker and spawned DataLoader worker starts a Python
process that imports cgd_video. torchvision's import pulls in ``torch._dynamo``; cgd_video no longer
imports torchvision (its one use was the uint8 resize, now :func:`cgd_video.data.transforms.resize_uint8`).
This measures the start-up of a fresh interpreter that imports what the test/infer path imports
(``cgd_video.boundary.evaluation``, ``cgd_video.inference``, ``cgd_video.data.datasets``), with and without
``import torchvision`` added (what every such process paid before 2026-12-02), in alternating order.
Training processes still import ``torch._dynamo``: ``torch.optim.Optimizer.add_param_group`` does on its
first call.

JSON ``ratios``: ``startup_with_torchvision_vs_without`` (median over rounds of per-round ratios).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import median_spread, write_json

REPO = Path(__file__).resolve().parents[1]

IMPORTS = "import cgd_video.boundary.evaluation, cgd_video.inference, cgd_video.data.datasets"
CASES = {"without": IMPORTS, "with_torchvision": IMPORTS + "; import torchvision"}


def _start(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO)})
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=8, help="starts per case, alternating (default 8)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    _start(CASES["with_torchvision"])  # warm the page cache and the .pyc files for both cases
    times: dict[str, list[float]] = {c: [] for c in CASES}
    ratios = []
    for r in range(args.rounds):
        order = list(CASES) if r % 2 == 0 else list(CASES)[::-1]
        t = {c: _start(CASES[c]) for c in order}
        for c, v in t.items():
            times[c].append(v)
        ratios.append(t["with_torchvision"] / t["without"])
    ratio, spread = median_spread(ratios)
    result = {"imports": IMPORTS, "rounds": args.rounds,
              "seconds_median": {c: statistics.median(v) for c, v in times.items()},
              "ratios": {"startup_with_torchvision_vs_without": ratio},
              "ratio_spread": {"startup_with_torchvision_vs_without": spread}}
    print(f"start-up of a process importing: {IMPORTS}  ({args.rounds} alternating rounds)")
    for c in CASES:
        print(f"  {c:<18} {result['seconds_median'][c]:6.2f} s (median)")
    print(f"  ratio with / without torchvision: {ratio:.2f} (p25-p75 {spread['p25']:.2f}-{spread['p75']:.2f})")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
