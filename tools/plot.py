#!/usr/bin/env python
"""Training curves from ``OUTPUT_DIR/metrics.jsonl``: ``python tools/plot.py OUTPUT_DIR``.

Writes ``OUTPUT_DIR/plots/loss.png`` (train loss per step and per epoch), ``lr.png``, ``accuracy.png``
(train accuracy per epoch, validation top-1/top-5 with the centre view) and ``throughput.png``
(clips/s). Each point is drawn once: a resumed run cuts the file back to its checkpoint, and
``read_metrics`` keeps the latest record per (type, iteration, epoch).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.engine.writers import read_metrics  # noqa: E402
from cgd_video.utils.atomic import atomic_write_bytes  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def plot(run_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics_path = run_dir / "metrics.jsonl"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path} does not exist: is {run_dir} a training OUTPUT_DIR?")
    m = read_metrics(metrics_path)
    train, epochs, val = m.get("train", []), m.get("epoch", []), m.get("val", [])
    panels = {
        "loss": [("train loss (step)", train, "epoch", "loss"), ("train loss (epoch mean)", epochs, "epoch", "loss")],
        "lr": [("learning rate", train, "epoch", "lr")],
        "accuracy": [("train acc", epochs, "epoch", "train_acc"), ("val top-1 (centre view)", val, "epoch", "top1"),
                     ("val top-5", val, "epoch", "top5")],
        "throughput": [("clips/s", train, "epoch", "clips_per_s")],
    }
    written = []
    for name, series in panels.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        drawn = False
        for label, recs, x, y in series:
            pts = [(r[x], r[y]) for r in recs if x in r and y in r]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if len(pts) < 50 else None, ms=3, label=label)
                drawn = True
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(f"{run_dir.name}: {name}")
        written.append(atomic_write_bytes(run_dir / "plots" / f"{name}.png", _png(fig)))
        plt.close(fig)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", type=Path, help="a training OUTPUT_DIR holding metrics.jsonl")
    args = parser.parse_args(argv)
    try:
        paths = plot(args.output_dir)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
