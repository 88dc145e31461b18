#!/usr/bin/env python
"""The CPU demo behind ``make demo``: synthetic videos -> lists -> train a small CGD model -> 10x3 test ->
batch inference. Every step runs the real command-line tool (printed before it runs), so the demo also
shows how to use them.

    python tools/demo.py --out outputs/demo

1. ``tools/make_synthetic.py``: real h264 mp4s in the UCF-101 layout
   (skipped when ``OUT/data`` already holds them);
2. ``tools/build_lists.py ucf101``: list files and classes.txt;
3. ``tools/train.py --cfg synthetic_cgd``: C2D ResNet-18 + CGD v10 on CPU (re-running resumes/finishes);
4. ``tools/test.py``: 10 clips x 3 crops per test video -> ``OUT/test_results.json``;
5. ``tools/infer.py``: batch inference over the test videos, 10x3 views -> ``OUT/infer/predictions.csv``;
6. ``tools/plot.py``: training curves -> ``OUT/plots/*.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Dataset size: 6 classes (chance 1/6), 16 videos per class (~1/4 of the groups held out for testing).
DATA_KW = dict(classes=6, videos_per_class=16, frames=40, size=(128, 96), fps=25, seed=0)


def _run(cmd: list[str], what: str) -> float:
    print(f"\n== {what}\n$ {' '.join(shlex.quote(str(c)) for c in cmd)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, cwd=REPO)
    return time.perf_counter() - t0


def _make_data(root: Path) -> float:
    if (root / "splits" / "testlist01.txt").is_file():
        print(f"\n== 1. synthetic dataset: already in {root} (delete it to regenerate)")
        return 0.0
    kw = DATA_KW
    return _run([sys.executable, REPO / "tools/make_synthetic.py", "--out", root, "--classes", kw["classes"],
                 "--videos-per-class", kw["videos_per_class"], "--frames", kw["frames"],
                 "--size", "{}x{}".format(*kw["size"]), "--fps", kw["fps"], "--seed", kw["seed"]],
                "1. synthetic dataset (tools/make_synthetic.py)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/demo", help="everything goes under this folder")
    parser.add_argument("--cfg", default="synthetic_cgd", help="training config (name in configs/ or path)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra KEY VALUE overrides for training/testing")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    data, lists, run_dir = out / "data", out / "lists", out
    py = sys.executable
    times = {}
    t_start = time.perf_counter()

    times["data"] = _make_data(data)
    times["lists"] = _run([py, REPO / "tools/build_lists.py", "ucf101", "--splits", data / "splits",
                           "--root", data / "videos", "--out", lists], "2. lists (tools/build_lists.py ucf101)")
    opts = ["MODEL.NUM_CLASSES", str(DATA_KW["classes"]), "DATA.ROOT", str(data / "videos"),
            "DATA.TRAIN_LIST", str(lists / "train_split1.txt"), "DATA.TEST_LIST", str(lists / "test_split1.txt"),
            "DATA.CLASSES", str(lists / "classes.txt"), "OUTPUT_DIR", str(run_dir), *args.opts]
    times["train"] = _run([py, REPO / "tools/train.py", "--cfg", args.cfg, *opts], "3. train on CPU (tools/train.py)")
    ckpt = run_dir / "checkpoints" / "last.pt"
    times["test"] = _run([py, REPO / "tools/test.py", "--cfg", args.cfg, "--ckpt", ckpt, *opts,
                          "TEST.NUM_CLIPS", "10", "TEST.NUM_CROPS", "3"], "4. test, 10 clips x 3 crops (tools/test.py)")
    infer_out = out / "infer" / "predictions.csv"
    test_videos = out / "infer" / "test_videos.txt"
    test_videos.parent.mkdir(parents=True, exist_ok=True)
    rels = [line.rsplit(" ", 1)[0] for line in (lists / "test_split1.txt").read_text().splitlines() if line.strip()]
    test_videos.write_text("".join(f"{data / 'videos' / r}\n" for r in rels))
    times["infer"] = _run([py, REPO / "tools/infer.py", "--ckpt", ckpt, "--input", test_videos, "--output", infer_out,
                           "--views", "10x3", "--device", "cpu", "--overwrite"],
                          "5. batch inference (tools/infer.py)")
    times["plot"] = _run([py, REPO / "tools/plot.py", run_dir], "6. training curves (tools/plot.py)")

    results = json.loads((run_dir / "test_results.json").read_text())
    total = time.perf_counter() - t_start
    print("\n== demo finished in {:.0f}s ({})".format(
        total, ", ".join(f"{k} {v:.0f}s" for k, v in times.items())))
    print(f"test top-1 {results['top1']:.3f}, top-5 {results['top5']:.3f}, mean class acc "
          f"{results['mean_class_acc']:.3f} over {results['num_videos']} videos x {results['views']['per_video']} "
          f"views (chance {1 / DATA_KW['classes']:.3f})")
    print("written:")
    for label, path in [("synthetic videos", data / "videos"), ("lists", lists),
                        ("resolved config", run_dir / "config.yaml"), ("checkpoint", ckpt),
                        ("training log", run_dir / "metrics.jsonl"), ("test results", run_dir / "test_results.json"),
                        ("per-video predictions", run_dir / "predictions.csv"),
                        ("confusion matrix", run_dir / "confusion_matrix.png"), ("training curves", run_dir / "plots"),
                        ("batch inference", infer_out)]:
        print(f"  {label:22s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
