"""Data-pipeline throughput: train-clip decoding per backend, and decode-once vs per-view testing.

Cases (single process, ``--threads`` torch/decoder threads; synthetic h264 mp4s of 320x240, 25 fps,
175 frames = 7 s, drawn by ``cgd_video.data.synthetic.render_video``, keyframe every ``--gop`` frames):
  train clips/s   one 32-frame clip (64-frame window, every other frame) per video, random start:
                  ours (decord), ours (PyAV), pytorchvideo ``EncodedVideo`` (decoder="pyav" and "decord",
                  decode_audio=False; ``get_clip`` of the 64/25 s window, then every other frame),
                  and ours full ``TrainClipDataset`` item (decode + paper augmentation + normalise).
  test videos/s   the 10-clip x 3-crop protocol: ``MultiViewTestDataset`` decoding each video once vs
                  ``views_per_view`` reopening and decoding the video for every one of the 30 views
                  (what PySlowFast does). Both give identical uint8 views (tests/test_datasets.py) and do
                  the same final work per view: resized, cropped, copied once into the uint8
                  ``(30, 3, 32, 256, 256)`` output. The consumer's step, ``normalize_views`` to float32
                  (on the model's device, right before the model), is timed on its own on the CPU
                  (``normalize_views 30 views (CPU)``) and in ``decode_once_speedup_cpu_normalize``, the
                  ratio when both paths also normalise on the CPU.

    python benchmarks/bench_data.py --quick --json benchmarks/results/data_quick.json

Ratios in the JSON (``ratios``): ``decode_once_speedup`` (once / per-view videos/s),
``decode_once_speedup_cpu_normalize`` (the same with the CPU normalisation added to both),
``decord_vs_pyav_train``, ``decord_vs_pytorchvideo_pyav_train``, ``decord_vs_pytorchvideo_decord_train``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.data import sampling  # noqa: E402
from cgd_video.data.datasets import TrainClipDataset  # noqa: E402
from cgd_video.data.test_views import MultiViewTestDataset  # noqa: E402
from cgd_video.data.decoding import open_video  # noqa: E402
from cgd_video.data.synthetic import render_video  # noqa: E402
from cgd_video.data.transforms import normalize_views  # noqa: E402
from cgd_video.utils.atomic import atomic_write_text  # noqa: E402

NUM_FRAMES, SAMPLING_RATE = 32, 2


def _videos(root: Path) -> list[Path]:
    videos = sorted((root / "videos").rglob("*.mp4"))
    if not videos:
        raise SystemExit(f"no .mp4 under {root / 'videos'}; drop --data to generate synthetic videos")
    return videos


def _write_videos(root: Path, count: int, gop: int) -> None:
    """``count`` synthetic 7 s videos (175 frames, 320x240, 25 fps, h264 keyframe every ``gop`` frames)."""
    import av

    for i in tqdm(range(count), desc="synthetic videos", unit="video"):
        frames = render_video(i % 4, 175, (320, 240), np.random.default_rng([0, i]))
        path = root / "videos" / f"v{i:03d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            stream.options = {"crf": "18", "preset": "veryfast", "g": str(gop)}
            for arr in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def _rate(fn: Callable[[Path, int], object], videos: list[Path], repeats: int) -> float:
    """Items per second of ``fn(video, k)`` over ``repeats`` passes (after one warm-up call)."""
    fn(videos[0], 0)
    start = time.perf_counter()
    count = 0
    for r in range(repeats):
        for i, video in enumerate(videos):
            fn(video, r * len(videos) + i)
            count += 1
    return count / (time.perf_counter() - start)


def _window(n: int, k: int) -> np.ndarray:
    return sampling.train_window_indices(n, NUM_FRAMES, SAMPLING_RATE, np.random.default_rng([0, k]))


def _ours(backend: str) -> Callable[[Path, int], object]:
    def run(video: Path, k: int):
        reader = open_video(video, backend)
        return reader.get(_window(reader.num_frames, k))

    return run


def _pytorchvideo(decoder: str) -> Callable[[Path, int], object]:
    from pytorchvideo.data.encoded_video import EncodedVideo

    def run(video: Path, k: int):
        clip = EncodedVideo.from_path(str(video), decoder=decoder, decode_audio=False)
        window = NUM_FRAMES * SAMPLING_RATE / 25.0
        start = float(np.random.default_rng([0, k]).uniform(0, max(float(clip.duration) - window, 0)))
        frames = clip.get_clip(start, start + window)["video"]
        clip.close()
        return frames[:, ::SAMPLING_RATE]

    return run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 videos, 1 pass (about a minute)")
    parser.add_argument("--data", type=Path, help="existing dataset root with videos/**/*.mp4 (else synthetic)")
    parser.add_argument("--videos", type=int, default=8, help="synthetic videos to generate (without --quick)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the videos (without --quick)")
    parser.add_argument("--gop", type=int, default=250,
                        help="keyframe interval of the synthetic videos (250: x264's default, as in most web "
                             "video; cgd_video.data.synthetic writes 16)")
    parser.add_argument("--threads", type=int, default=1, help="torch and decoder threads")
    parser.add_argument("--json", type=Path, help="write the results here (atomically)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    num_videos, repeats = (4, 1) if args.quick else (args.videos, args.repeats)

    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        root = args.data
        if root is None:
            root = Path(tmp)
            _write_videos(root, num_videos, args.gop)
        videos = _videos(root)
        records = [(str(v), 0) for v in videos]
        first = open_video(videos[0])
        info = {"videos": len(videos), "gop": args.gop if args.data is None else None,
                "frames": first.num_frames, "fps": first.fps, "size": list(first.get([0]).shape[1:3])[::-1], "repeats": repeats}

        train_ds = TrainClipDataset(records, None, NUM_FRAMES, SAMPLING_RATE, crop_size=224, aug="paper")
        test_kw = dict(num_frames=NUM_FRAMES, sampling_rate=SAMPLING_RATE, num_clips=10, num_crops=3,
                       test_scale=256, test_crop=256)
        test_ds = MultiViewTestDataset(records, None, backend="decord", **test_kw)
        index = {v: i for i, v in enumerate(videos)}
        cases = {
            ("train", "ours decord"): _ours("decord"),
            ("train", "ours pyav"): _ours("pyav"),
            ("train", "pytorchvideo EncodedVideo pyav"): _pytorchvideo("pyav"),
            ("train", "pytorchvideo EncodedVideo decord"): _pytorchvideo("decord"),
            ("train", "ours TrainClipDataset item (+aug)"): lambda v, k: train_ds[index[v]],
            ("test", "decode once, 30 views"): lambda v, k: test_ds[index[v]],
            ("test", "decode per view, 30 views"): lambda v, k: test_ds.views_per_view(index[v]),
        }
        views = {v: test_ds[index[v]]["views"] for v in videos}  # uint8, as the DataLoader delivers them
        cases[("test", "normalize_views 30 views (CPU)")] = lambda v, k: normalize_views(views[v])
        results = {}
        for (kind, name), fn in tqdm(cases.items(), desc="cases", unit="case"):
            results.setdefault(kind, {})[name] = _rate(fn, videos, repeats)

    train, test = results["train"], results["test"]
    norm_s = 1.0 / test["normalize_views 30 views (CPU)"]
    ratios = {
        "decode_once_speedup": test["decode once, 30 views"] / test["decode per view, 30 views"],
        "decode_once_speedup_cpu_normalize": (1.0 / test["decode per view, 30 views"] + norm_s)
        / (1.0 / test["decode once, 30 views"] + norm_s),
        "decord_vs_pyav_train": train["ours decord"] / train["ours pyav"],
        "decord_vs_pytorchvideo_pyav_train": train["ours decord"] / train["pytorchvideo EncodedVideo pyav"],
        "decord_vs_pytorchvideo_decord_train": train["ours decord"] / train["pytorchvideo EncodedVideo decord"],
    }
    report = {"config": {**info, "threads": args.threads, "num_frames": NUM_FRAMES,
                         "sampling_rate": SAMPLING_RATE, "quick": args.quick,
                         "python": platform.python_version(), "torch": torch.__version__},
              "train_clips_per_s": train, "test_videos_per_s": test, "ratios": ratios}

    print(f"\n{info['videos']} videos, {info['frames']} frames, {info['size'][0]}x{info['size'][1]} @ "
          f"{info['fps']:g} fps, keyframe every {info['gop']} frames, {args.threads} thread(s), {repeats} pass(es)")
    print(f"| {'case':<45} | {'rate':>14} |\n|{'-' * 47}|{'-' * 16}|")
    for name, rate in train.items():
        print(f"| train clip: {name:<33} | {rate:>7.2f} clips/s |")
    for name, rate in test.items():
        print(f"| test video: {name:<33} | {rate:>6.2f} videos/s |")
    for name, value in ratios.items():
        print(f"| ratio {name:<39} | {value:>13.2f}x |")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
