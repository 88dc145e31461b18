#!/usr/bin/env python
"""Temporal-order probe: which temporal variant can learn a task where frame order is the only signal?

    python benchmarks/bench_temporal.py --json benchmarks/results/bench_temporal_cpu.json \\
        --png benchmarks/results/bench_temporal_cpu.png
    python benchmarks/bench_temporal.py --quick --json /tmp/bench_temporal_quick.json     # 1 seed

Data: :mod:`cgd_video.data.temporal_order`. The classes are fixed permutations of one base sequence
(an object moving left to right, growing, turning from colour A to colour B), so a frame at a random
time or the bag of frames is identically distributed in every class. The same clips with their
frames shuffled (a uniform random order per clip) are the *control*: identically distributed across
classes by construction, so every variant must sit at chance there.

Models: a small C2D-R18 (``width`` channels in the stem, PyTorchVideo's 8-frame layout: no temporal
stride in the stem, temporal max pool 2 after res2) with, per variant: nothing (C2D), CGD v10
``shared`` / ``mean`` / ``frame`` / ``concat`` after conv1 of every block, one Non-local block in
res4, and the height / width CGD forms (``concat``). Every variant and seed gets the same data, the
same number of steps, the same optimiser (Adam) and batch size; top-1 is measured on held-out clips
drawn from other generator seeds. Clips are tensors from the generator (no video encoding).

JSON: ``chance``, ``results[variant] = {mean, std, seeds}`` (held-out top-1 per seed),
``control[variant]`` in the same form, and ``ratios`` (``<variant>_vs_chance`` = mean top-1 /
chance, and ``<variant>_control_vs_chance``), plus the settings and the run time.
``--quick``: one seed, 80 steps, 256 training clips (same schema), for CI and for checking.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

from cgd_video.data.temporal_order import order_clips  # noqa: E402
from cgd_video.models import create_model  # noqa: E402
from cgd_video.utils.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402

# variant -> C2DResNet keyword arguments on top of the common ones.
VARIANTS: dict[str, dict] = {
    "c2d": {},
    "cgd_shared": {"attention": "cgd", "attention_kwargs": {"temporal": "shared"}},
    "cgd_mean": {"attention": "cgd", "attention_kwargs": {"temporal": "mean"}},
    "cgd_frame": {"attention": "cgd", "attention_kwargs": {"temporal": "frame"}},
    "cgd_concat": {"attention": "cgd", "attention_kwargs": {"temporal": "concat"}},
    "nl": {"nonlocal_type": "nl"},
    "cgd_height_concat": {"attention": "cgd_height", "attention_kwargs": {"temporal": "concat"}},
    "cgd_width_concat": {"attention": "cgd_width", "attention_kwargs": {"temporal": "concat"}},
}


def build(variant: str, classes: int, frames: int, size: int, width: int) -> torch.nn.Module:
    return create_model(
        "c2d_r18", num_classes=classes, layout="pytorchvideo8", num_frames=frames, input_size=size,
        width=width, dropout=0.0, **VARIANTS[variant],
    )


def train_and_test(model: torch.nn.Module, data: dict, steps: int, batch: int, lr: float, seed: int) -> float:
    """Adam for ``steps`` minibatches (sampled with the seed's generator), then held-out top-1."""
    x, y = data["train"]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        for group in opt.param_groups:  # cosine decay to 0
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    xt, yt = data["test"]
    with torch.no_grad():
        pred = torch.cat([model(xt[i : i + 64]).argmax(1) for i in range(0, xt.shape[0], 64)])
    return float((pred == yt).float().mean())


def make_data(args: argparse.Namespace, shuffled: bool) -> dict:
    def clips(count: int, seed: int):
        x, y = order_clips(count, args.classes, args.frames, args.size, seed=seed, shuffled=shuffled)
        return torch.from_numpy(x), torch.from_numpy(y)

    return {"train": clips(args.train_clips, 1000), "test": clips(args.test_clips, 2000)}


def summary(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "seeds": values}


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    datasets = {"order": make_data(args, False), "control": make_data(args, True)}
    runs = [(v, s, kind) for v in args.variants for s in range(args.seeds) for kind in datasets]
    acc: dict[str, dict[str, list[float]]] = {"order": {}, "control": {}}
    start = time.time()
    for variant, seed, kind in tqdm(runs, desc="probe runs", unit="run", file=sys.stderr):
        torch.manual_seed(seed)
        model = build(variant, args.classes, args.frames, args.size, args.width)
        top1 = train_and_test(model, datasets[kind], args.steps, args.batch, args.lr, seed)
        acc[kind].setdefault(variant, []).append(top1)
    chance = 1.0 / args.classes
    results = {v: summary(acc["order"][v]) for v in args.variants}
    control = {v: summary(acc["control"][v]) for v in args.variants}
    ratios = {f"{v}_vs_chance": results[v]["mean"] / chance for v in args.variants}
    ratios.update({f"{v}_control_vs_chance": control[v]["mean"] / chance for v in args.variants})
    return {
        "chance": chance, "results": results, "control": control, "ratios": ratios,
        "settings": {k: getattr(args, k) for k in ("classes", "frames", "size", "width", "train_clips",
                                                     "test_clips", "steps", "batch", "lr", "seeds", "threads")},
        "model": "c2d_r18, layout pytorchvideo8, CGD v10 after conv1 (attention variants), NL in res4",
        "seconds": round(time.time() - start, 1),
        "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}, {args.threads} thread(s)",
    }


def render(result: dict) -> str:
    chance = result["chance"]
    lines = [f"held-out top-1 over {len(next(iter(result['results'].values()))['seeds'])} seed(s); "
             f"chance {chance:.3f}",
             f"{'variant':<20} {'order task':>17} {'frame-shuffled':>17} {'order/chance':>13}"]
    for v, r in result["results"].items():
        c = result["control"][v]
        lines.append(f"{v:<20} {r['mean']:>9.3f} ± {r['std']:.3f} {c['mean']:>9.3f} ± {c['std']:.3f} "
                     f"{r['mean'] / chance:>12.2f}x")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["results"])
    pos = range(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 3.6))
    for offset, key, label in ((-0.2, "results", "order task"), (0.2, "control", "frame-shuffled control")):
        means = [result[key][n]["mean"] for n in names]
        stds = [result[key][n]["std"] for n in names]
        ax.bar([p + offset for p in pos], means, 0.38, yerr=stds, capsize=3, label=label)
    ax.axhline(result["chance"], color="k", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(list(pos), names, rotation=25, ha="right")
    ax.set_ylabel("held-out top-1")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--classes", type=int, default=2, choices=(2, 4))
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--width", type=int, default=8, help="stem/res2 channels of the C2D-R18")
    ap.add_argument("--train-clips", type=int, default=512)
    ap.add_argument("--test-clips", type=int, default=256)
    ap.add_argument("--steps", type=int, default=200, help="optimiser steps per run (same for every run)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="1 seed, 80 steps, 256 training clips (same JSON schema)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--png", type=Path, help="bar chart (default: next to --json, .png)")
    args = ap.parse_args(argv)
    if args.quick:  # about 80 CPU-seconds in all: about 3 minutes on the shared 2-core machine
        args.seeds, args.steps, args.train_clips = 1, min(args.steps, 80), min(args.train_clips, 256)
    if args.seeds < 1 or args.steps < 1 or args.train_clips < args.classes or args.test_clips < args.classes:
        ap.error("--seeds, --steps must be >= 1 and --train-clips/--test-clips >= --classes")
    if args.classes == 4 and args.frames % 4:
        ap.error(f"--frames {args.frames}: 4 classes need a multiple of 4 frames")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(render(result))
    png = args.png or (args.json.with_suffix(".png") if args.json else None)
    if png:
        plot(result, png)
        result["png"] = str(png)
    written = [p for p in (png, args.json) if p]
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print("wrote " + ", ".join(map(str, written)) if written else "(no --json / --png: nothing written)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
