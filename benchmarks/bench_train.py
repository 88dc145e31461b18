#!/usr/bin/env python
"""Train-step throughput of ``tools/train.py`` on the synthetic dataset: data time vs compute time.

    python benchmarks/bench_train.py --json benchmarks/results/bench_train_cpu.json
    python benchmarks/bench_train.py --workers 0 2 4 --steps 12 --cfg synthetic_cgd

Writes the synthetic videos (``tools/make_synthetic.py``, real h264 mp4s) and the UCF-101-style lists
(``tools/build_lists.py ucf101``) under ``--work`` once, then runs ``tools/train.py`` once per
DataLoader worker count with ``TRAIN.STOP_AFTER_ITERS`` and ``TRAIN.LOG_PERIOD 1`` and reads its
``metrics.jsonl``. The trainer logs cumulative ``data_time`` (waiting for the loader) and
``compute_time`` (forward, backward, optimizer step); the first ``--skip`` steps (warm-up, worker
start) are dropped and clips/s = clips / (data + compute) over the rest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cgd_video.utils.atomic import atomic_write_text  # noqa: E402


def _run(cmd: list, log: Path) -> None:
    cmd = [str(c) for c in cmd]
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"bench_train.py: command failed with status {proc.returncode}; see {log}")


def make_data(work: Path, classes: int, videos_per_class: int) -> dict[str, Path]:
    data, lists = work / "data", work / "lists"
    py = sys.executable
    if not (data / "splits" / "testlist01.txt").is_file():
        _run([py, REPO / "tools/make_synthetic.py", "--out", data, "--classes", classes,
              "--videos-per-class", videos_per_class], work / "make_synthetic.log")
    if not (lists / "train_split1.txt").is_file():
        _run([py, REPO / "tools/build_lists.py", "ucf101", "--splits", data / "splits", "--root", data / "videos",
              "--out", lists], work / "build_lists.log")
    return {"root": data / "videos", "train": lists / "train_split1.txt", "classes": lists / "classes.txt"}


def throughput(metrics: Path, skip: int, batch: int) -> dict:
    """clips/s, data and compute seconds per step over the logged steps after the first ``skip``.

    The trainer's ``data_time`` / ``compute_time`` are sums since the start of the current epoch, so
    per-step increments are taken within an epoch (epoch index = ceil(fractional epoch) - 1).
    """
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("type") == "train"]
    if len(rows) <= skip:
        raise SystemExit(f"bench_train.py: {metrics} has {len(rows)} train records, need more than --skip {skip}")
    steps, data, compute, prev = [], 0.0, 0.0, None
    for r in rows:
        same_epoch = prev is not None and math.ceil(prev["epoch"]) == math.ceil(r["epoch"])
        base = prev if same_epoch else {"data_time": 0.0, "compute_time": 0.0, "iteration": r["iteration"] - 1}
        steps.append((r["iteration"] - base["iteration"], r["data_time"] - base["data_time"],
                      r["compute_time"] - base["compute_time"]))
        prev = r
    kept = steps[skip:]
    n = sum(k[0] for k in kept)
    data = sum(k[1] for k in kept)
    compute = sum(k[2] for k in kept)
    return {
        "steps": n,
        "clips_per_s": n * batch / max(data + compute, 1e-9),
        "data_s_per_step": data / n,
        "compute_s_per_step": compute / n,
        "data_fraction": data / max(data + compute, 1e-9),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", default="synthetic_cgd", help="training config (name in configs/ or path)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4], help="DataLoader worker counts")
    ap.add_argument("--steps", type=int, default=12, help="training steps per run")
    ap.add_argument("--skip", type=int, default=2, help="first steps left out of the throughput")
    ap.add_argument("--batch", type=int, default=8, help="TRAIN.BATCH_SIZE")
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--videos-per-class", type=int, default=8)
    ap.add_argument("--work", type=Path, default=REPO / "outputs" / "bench_train", help="scratch folder")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="extra KEY VALUE overrides for tools/train.py")
    args = ap.parse_args(argv)
    if args.steps <= args.skip:
        ap.error(f"--steps {args.steps} must exceed --skip {args.skip}")
    args.work.mkdir(parents=True, exist_ok=True)
    paths = make_data(args.work, args.classes, args.videos_per_class)
    results = []
    for w in args.workers:
        out = args.work / f"run_w{w}"
        shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resume
        out.mkdir(parents=True)
        _run([sys.executable, REPO / "tools/train.py", "--cfg", args.cfg,
              "MODEL.NUM_CLASSES", args.classes, "DATA.ROOT", paths["root"], "DATA.TRAIN_LIST", paths["train"],
              "DATA.CLASSES", paths["classes"], "OUTPUT_DIR", out, "DATALOADER.NUM_WORKERS", w,
              "TRAIN.BATCH_SIZE", args.batch, "TRAIN.STOP_AFTER_ITERS", args.steps, "TRAIN.LOG_PERIOD", 1,
              "TRAIN.EVAL_PERIOD", 0, "TRAIN.CHECKPOINT_ITERS", 0, *args.opts], out / "train.log")
        results.append({"workers": w, **throughput(out / "metrics.jsonl", args.skip, args.batch)})
    print(f"\n{'workers':>8}{'clips/s':>10}{'data s/step':>13}{'compute s/step':>16}{'data %':>8}")
    for r in results:
        print(f"{r['workers']:>8}{r['clips_per_s']:>10.2f}{r['data_s_per_step']:>13.3f}"
              f"{r['compute_s_per_step']:>16.3f}{100 * r['data_fraction']:>8.1f}")
    if args.json:
        payload = {"cfg": args.cfg, "batch": args.batch, "steps": args.steps, "skip": args.skip,
                   "cpu_count": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
                   "command": " ".join(["bench_train.py", *(argv if argv is not None else sys.argv[1:])]),
                   "results": results}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
