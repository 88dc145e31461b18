#!/usr/bin/env python
"""``--timeline`` decoding: every window read on its own vs the whole video decoded in one pass.

    python benchmarks/bench_timeline.py --json benchmarks/results/bench_timeline_cpu.json
    python benchmarks/bench_timeline.py --quick --json /tmp/bench_timeline_quick.json   # tiny, for the tests

Videos (synthetic, ``cgd_video.data.synthetic.render_video``, 320x240, 25 fps, ``--seconds`` long; one
decoder thread): h264 in mp4 with a keyframe every 250 frames (x264's default; indexed, so a window's read
seeks to its keyframe) and mpeg4 with B-frames in AVI (like UCF-101's Xvid; no pts index, so a window's
read decodes from the first frame). Windows of ``--window`` seconds tile each video
(``timeline_windows``); every window gets the test protocol's views (32 frames, sampling rate 2, short
side 256, 256 crops) at 1x1 and 10x3, without the model.

Cases, per video and views, alternated A B / B A over ``--rounds`` rounds:
  per window  ``MultiViewTestDataset(windows)[i]`` for every window (one decoder per window: what the
              Predictor did before ``TimelineViews``)
  one pass    ``TimelineViews`` over the same dataset (the video decoded once). Before the timed rounds,
              its items are asserted equal to the per-window ones. Timed items are dropped as they come
              (10x3 views of one window are 189 MB), as the Predictor scores and drops them.

JSON ``ratios``: ``timeline_one_pass_speedup_<set>_<views>`` = median over rounds of per-window seconds /
one-pass seconds; ``results`` has every round's seconds and the windows/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_data import _encode  # noqa: E402  (the same encoder settings as the item benchmark)
from cgd_video.data.decoding import clear_scan_cache  # noqa: E402
from cgd_video.data.lists import VideoRecord  # noqa: E402
from cgd_video.data.synthetic import render_video  # noqa: E402
from cgd_video.data.test_views import MultiViewTestDataset  # noqa: E402
from cgd_video.data.timeline import TimelineViews, timeline_windows  # noqa: E402
from cgd_video.utils.atomic import atomic_write_text  # noqa: E402

SETS = {"h264_gop250_mp4": ("libx264", "mp4", "mp4"), "mpeg4_avi": ("mpeg4", "avi", "avi")}
VIEWS = {"1x1": (1, 1), "10x3": (10, 3)}


def _write(root: Path, seconds: float, size: tuple[int, int]) -> dict[str, Path]:
    frames = render_video(0, int(round(seconds * 25)), size, np.random.default_rng(0))
    out = {}
    for name, (codec, fmt, ext) in SETS.items():
        out[name] = root / f"{name}.{ext}"
        _encode(out[name], frames, codec, fmt, gop=250)
    return out


def _dataset(path: Path, window: float, views: tuple[int, int], view_kw: dict) -> MultiViewTestDataset:
    import av

    with av.open(str(path)) as container:
        total = sum(1 for p in container.demux(video=0) if p.size)
    windows = timeline_windows(total, 25.0, window)
    return MultiViewTestDataset([VideoRecord(str(path), -1)] * len(windows), None, num_clips=views[0],
                                num_crops=views[1], windows=windows, **view_kw)


def _per_window(ds: MultiViewTestDataset):
    return (ds[i] for i in range(len(ds)))


def _seconds(items) -> float:
    """Seconds to produce every item (each dropped at once: 10x3 views are 189 MB a window)."""
    clear_scan_cache()
    start = time.perf_counter()
    for _ in items:
        pass
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="length of each video")
    ap.add_argument("--window", type=float, default=2.0, help="timeline window, seconds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="8 s videos of 128x96, views of 8 frames at 64: for tests")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    size, view_kw = (320, 240), dict(num_frames=32, sampling_rate=2, test_scale=256, test_crop=256)
    if args.quick:
        args.seconds, args.rounds = 8.0, 1
        size, view_kw = (128, 96), dict(num_frames=8, sampling_rate=2, test_scale=72, test_crop=64)
    results, ratios = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        videos = _write(Path(tmp), args.seconds, size)
        cases = [(s, v) for s in SETS for v in VIEWS]
        for name, views in tqdm(cases, desc="timeline cases", unit="case"):
            ds = _dataset(videos[name], args.window, VIEWS[views], view_kw)
            for x, y in zip(_per_window(ds), TimelineViews(ds)):  # the same items, checked first (untimed)
                assert x["ok"] and y["ok"] and torch.equal(x["views"], y["views"]), (name, views, x["index"])
            per_window, one_pass = [], []
            for r in range(args.rounds):
                for case in (("per", "one") if r % 2 == 0 else ("one", "per")):
                    if case == "per":
                        per_window.append(_seconds(_per_window(ds)))
                    else:
                        one_pass.append(_seconds(TimelineViews(ds)))
            key = f"{name}_{views}"
            results[key] = {"windows": len(ds), "per_window_s": per_window, "one_pass_s": one_pass,
                            "per_window_windows_per_s": len(ds) / statistics.median(per_window),
                            "one_pass_windows_per_s": len(ds) / statistics.median(one_pass)}
            ratios[f"timeline_one_pass_speedup_{key}"] = statistics.median(
                p / o for p, o in zip(per_window, one_pass))
    out = {"machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
           "settings": {"seconds": args.seconds, "window_s": args.window, "rounds": args.rounds, "size": size,
                        **view_kw},
           "results": results, "ratios": ratios}
    print(f"{'video_views':<24}{'windows':>8}{'per window (win/s)':>20}{'one pass (win/s)':>18}{'speed-up':>10}")
    for key, r in results.items():
        print(f"{key:<24}{r['windows']:>8}{r['per_window_windows_per_s']:>20.2f}{r['one_pass_windows_per_s']:>18.2f}"
              f"{ratios[f'timeline_one_pass_speedup_{key}']:>9.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
