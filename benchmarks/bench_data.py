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

Train items per worker (issue 11; ``--items-only`` runs just these and the loader), on four sets of
synthetic 7 s, 25 fps videos: h264 320x240 (keyframe every ``--gop``), mpeg4 with B-frames in AVI 320x240
(like UCF-101's Xvid), h264 1280x720 (like Kinetics originals: the 320x240 drawing upscaled plus a
scrolling fine texture, so the encoder has detail to code) and that 720p set preprocessed to short side 256
(``cgd_video.data.preprocess.transcode``, keyframe every 32). Cases, timed interleaved per video (each
video runs every case in turn, in an order rotated from video to video, so load from other jobs and
cache effects hit all alike):
  before    today's ``TrainClipDataset`` item as of commit 70cedd4 (frozen below): decord on every
            container at full size, uint8 crop + torchvision resize + flip + float normalisation in the
            worker. Its decode alone is timed too (``before: decode only``).
  steps     for each reader (``decord``: frame-exact choice, PyAV on AVI; ``pyav``: seek + skip non-ref
            frames on mp4/mkv): augmentation in the worker (float out), then device augmentation (the
            worker returns the uint8 crop box) without and with libav scaling to ``ceil(224 / 0.75) = 299``.
  after     ``TrainClipDataset(device_augment=True)`` with the defaults: ``pyav``, decode-time scaling.
  consumer  ``device_augment.augment`` of a batch of 8 on the CPU, per clip (what the training step adds).
Full loader: a DataLoader with N = 1, 2 persistent workers (uint8 boxes, ``collate_train``, batches of
4, pinned on CUDA) feeding a consumer that only runs ``augment``: clips/s on the h264 320x240 set.

    python benchmarks/bench_data.py --quick --json benchmarks/results/data_quick.json
    python benchmarks/bench_data.py --items-only --videos 6 --repeats 2 --json benchmarks/results/bench_data_items.json

Ratios in the JSON (``ratios``): ``decode_once_speedup`` (once / per-view videos/s),
``decode_once_speedup_cpu_normalize`` (the same with the CPU normalisation added to both),
``decord_vs_pyav_train``, ``decord_vs_pytorchvideo_pyav_train``, ``decord_vs_pytorchvideo_decord_train``;
``train_item_speedup`` (after vs before on h264 320x240) and ``train_item_speedup_<set>`` for every set;
these item ratios are medians over items of the before / after seconds of the same video and window,
``preprocessed_speedup_720p`` (after on the 256 copy / after on the 720p source),
``decode_scale_speedup_720p`` (after / after without decode-time scaling, 720p),
``device_augment_speedup`` and ``pyav_vs_decord_reader`` (h264 320x240; ``_720p`` too),
``loader_2_vs_1_workers`` (a ratio of rates). ``ratio_spread`` gives every item ratio's median, p25 and
p75 over the paired items, so one run says how far its medians can be trusted.
"""

from __future__ import annotations

import argparse
import json
import math
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

from cgd_video.data import decoding, device_augment, sampling, transforms  # noqa: E402
from cgd_video.data.datasets import TrainClipDataset  # noqa: E402
from cgd_video.data.decoding import DecordReader, read_clip  # noqa: E402
from cgd_video.data.preprocess import transcode  # noqa: E402
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
            decoding.clear_scan_cache()  # every item demuxes its video, as a training worker does (~1 us)
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


# --- train items per worker and the full loader (issue 11) -------------------------------------------------

BEFORE = "before: TrainClipDataset item (70cedd4)"
AFTER = "after: pyav (default), device augmentation + decode scaling"
ITEM_SETS = ("h264_320x240", "mpeg4_avi_320x240", "h264_1280x720", "h264_720p_pre256")
CROP = 224


def _encode(path: Path, frames, codec: str, fmt: str, gop: int, size: tuple[int, int] | None = None) -> None:
    """Encode RGB frames; ``size`` (w, h) upscales each frame and adds a scrolling texture (720p set)."""
    import av
    import torch.nn.functional as F

    width, height = size or (frames.shape[2], frames.shape[1])
    texture = np.random.default_rng(1).integers(0, 24, (height, width + 256, 3), dtype=np.uint8) if size else None
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 2
        if codec == "libx264":
            stream.options = {"crf": "18" if size is None else "23", "preset": "veryfast", "g": str(gop)}
        else:  # Xvid-like: B-frames, ~0.6 Mbit/s
            stream.codec_context.gop_size, stream.codec_context.max_b_frames = 12, 2
            stream.bit_rate = 600_000
        for t, arr in enumerate(frames):
            if size is not None:
                up = F.interpolate(torch.from_numpy(arr).permute(2, 0, 1)[None].float(), size=(height, width),
                                   mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
                shift = (2 * t) % 256
                arr = (up.round().clamp(0, 231).byte().numpy() + texture[:, shift : shift + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_item_sets(root: Path, count: int, gop: int) -> dict[str, list[Path]]:
    sets = {name: [] for name in ITEM_SETS}
    for i in tqdm(range(count), desc="item-bench videos (4 sets)", unit="video"):
        frames = render_video(i % 4, 175, (320, 240), np.random.default_rng([0, i]))
        for name, codec, fmt, ext, size in (("h264_320x240", "libx264", "mp4", "mp4", None),
                                            ("mpeg4_avi_320x240", "mpeg4", "avi", "avi", None),
                                            ("h264_1280x720", "libx264", "mp4", "mp4", (1280, 720))):
            path = root / name / f"v{i:03d}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            _encode(path, frames, codec, fmt, gop, size)
            sets[name].append(path)
        pre = root / "h264_720p_pre256" / f"v{i:03d}.mp4"
        pre.parent.mkdir(parents=True, exist_ok=True)
        pre.write_bytes(transcode(sets["h264_1280x720"][-1], 256, gop=32))
        sets["h264_720p_pre256"].append(pre)
    return sets


def _before_item(path: Path, seed_index: tuple, decode_only: bool = False):
    """Today's ``TrainClipDataset`` item as of commit 70cedd4 (the "before"), frozen: decord on every
    container at full size, then crop, uint8 torchvision resize, flip and float normalise in the worker."""
    import torchvision.transforms.v2.functional as TF

    rng = np.random.default_rng(list(seed_index))
    reader = DecordReader(path)
    state = rng.bit_generator.state

    def indices(n: int) -> np.ndarray:
        rng.bit_generator.state = state
        return sampling.train_window_indices(n, NUM_FRAMES, SAMPLING_RATE, rng)

    frames = read_clip(reader, indices)
    if decode_only:
        return frames
    x = frames.permute(0, 3, 1, 2)
    x = transforms.crop(x, sampling.random_square_crop_box(x.shape[-2], x.shape[-1], rng))
    x = TF.resize(x, [CROP, CROP], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    if rng.random() < 0.5:
        x = x.flip(-1)
    return transforms.normalize(x, transforms.IMAGENET_MEAN, transforms.IMAGENET_STD)


def _item_cases(videos: list[Path]) -> dict[str, Callable[[int, int], object]]:
    records = [(str(v), 0) for v in videos]
    kw = dict(num_frames=NUM_FRAMES, sampling_rate=SAMPLING_RATE, crop_size=CROP, aug="paper")

    def item(**options) -> Callable[[int, int], object]:
        ds = TrainClipDataset(records, **kw, **options)

        def run(i: int, r: int):
            ds.set_epoch(r)
            return ds[i]
        return run

    return {
        BEFORE: lambda i, r: _before_item(videos[i], (0, r, i, 0)),
        "before: decode only": lambda i, r: _before_item(videos[i], (0, r, i, 0), decode_only=True),
        "decord, augmentation in the worker": item(backend="decord", device_augment=False),
        "decord, device augmentation, no decode scaling": item(backend="decord", device_augment=True,
                                                               decode_scale=False),
        "decord, device augmentation + decode scaling": item(backend="decord", device_augment=True),
        "pyav, augmentation in the worker": item(backend="pyav", device_augment=False),
        "pyav, device augmentation, no decode scaling": item(backend="pyav", device_augment=True, decode_scale=False),
        AFTER: item(backend="pyav", device_augment=True),
    }


def _bench_items(sets: dict[str, list[Path]], repeats: int) -> tuple[dict, dict]:
    """Per-worker items/s of every case on every set, interleaved per video, plus the consumer's cost; and
    every item's seconds per case (``times[set][case][k]``: the same video and window for every case)."""
    rates, times = {}, {}
    for name, videos in sets.items():
        cases = _item_cases(videos)
        for fn in cases.values():
            fn(0, 99)  # warm-up (imports, first open)
        spent: dict[str, list[float]] = {case: [] for case in cases}
        items = 0
        order = list(cases)
        for r in tqdm(range(repeats), desc=f"items {name}", unit="pass"):
            for i in range(len(videos)):
                shift = (r * len(videos) + i) % len(order)  # rotate: no case always runs first or last
                for case in order[shift:] + order[:shift]:
                    decoding.clear_scan_cache()  # a worker meets a video once an epoch: no cached packet scan
                    start = time.perf_counter()
                    cases[case](i, r)
                    spent[case].append(time.perf_counter() - start)
                items += 1
        rates[name] = {case: items / sum(t) for case, t in spent.items()}
        times[name] = spent
        ds = TrainClipDataset([(str(v), 0) for v in videos], num_frames=NUM_FRAMES, sampling_rate=SAMPLING_RATE,
                              crop_size=CROP, device_augment=True)
        batch = ds.collate_fn([ds[i % len(videos)] for i in range(8)])
        device_augment.augment(batch[0], batch[4], CROP)
        start = time.perf_counter()
        for _ in range(repeats):
            device_augment.augment(batch[0], batch[4], CROP)
        rates[name]["consumer: augment on CPU, batch of 8 (clips/s)"] = 8 * repeats / (time.perf_counter() - start)
    return rates, times


def ratio_summary(slow: list[float], fast: list[float]) -> dict:
    """Median, p25 and p75 over items of ``slow / fast`` seconds: pairs run back to back, so a burst of load
    from other jobs moves both sides of a pair (sums of seconds are what a burst distorts)."""
    r = np.asarray(slow) / np.asarray(fast)
    p25, med, p75 = np.percentile(r, [25, 50, 75])
    return {"median": float(med), "p25": float(p25), "p75": float(p75), "items": int(r.size)}


def _bench_loader(videos: list[Path], workers: int, items: int) -> float:
    """Clips/s of N persistent workers feeding a consumer that only runs the device augmentation (CPU)."""
    from torch.utils.data import DataLoader

    records = [(str(videos[i % len(videos)]), 0) for i in range(items)]
    ds = TrainClipDataset(records, num_frames=NUM_FRAMES, sampling_rate=SAMPLING_RATE, crop_size=CROP,
                          device_augment=True)
    loader = DataLoader(ds, batch_size=4, num_workers=workers, persistent_workers=True,
                        collate_fn=ds.collate_fn, pin_memory=torch.cuda.is_available())
    for batch in loader:  # epoch 0: start the workers, warm up
        device_augment.augment(batch[0], batch[4], CROP)
    ds.set_epoch(1)
    start, count = time.perf_counter(), 0
    for batch in loader:
        device_augment.augment(batch[0], batch[4], CROP)
        count += batch[0].shape[0]
    return count / (time.perf_counter() - start)


def _items_report(sets, repeats: int, loader_items: int) -> tuple[dict, dict]:
    rates, times = _bench_items(sets, repeats)
    loader = {f"N={n}": _bench_loader(sets["h264_320x240"], n, loader_items) for n in (1, 2)}
    h264, t = rates["h264_320x240"], times["h264_320x240"]
    pairs = {"train_item_speedup": (t[BEFORE], t[AFTER])}
    for name in ITEM_SETS:
        pairs[f"train_item_speedup_{name}"] = (times[name][BEFORE], times[name][AFTER])
    # the same videos and windows in both sets, measured one set after the other (not interleaved)
    pairs["preprocessed_speedup_720p"] = (times["h264_1280x720"][AFTER], times["h264_720p_pre256"][AFTER])
    pairs["decode_scale_speedup_720p"] = (
        times["h264_1280x720"]["pyav, device augmentation, no decode scaling"], times["h264_1280x720"][AFTER])
    pairs["device_augment_speedup"] = (t["pyav, augmentation in the worker"], t[AFTER])
    pairs["pyav_vs_decord_reader"] = (t["decord, device augmentation + decode scaling"], t[AFTER])
    pairs["pyav_vs_decord_reader_720p"] = (
        times["h264_1280x720"]["decord, device augmentation + decode scaling"], times["h264_1280x720"][AFTER])
    spread = {key: ratio_summary(*sides) for key, sides in pairs.items()}
    ratios = {key: s["median"] for key, s in spread.items()}
    ratios["loader_2_vs_1_workers"] = loader["N=2"] / loader["N=1"]
    per_worker = h264[AFTER]
    workers_formula = (f"workers needed = ceil(R_gpu / {per_worker:.1f}) for a GPU step rate R_gpu clips/s "
                       f"(h264 320x240, one decode thread per worker); e.g. R_gpu = 1000 -> "
                       f"{math.ceil(1000 / per_worker)}")
    return {"items_per_s": rates, "item_seconds": times, "loader_clips_per_s": loader,
            "workers_needed": workers_formula, "ratio_spread": spread}, ratios


def _print_items(part: dict, ratios: dict) -> None:
    for name, cases in part["items_per_s"].items():
        print(f"\n{name}\n| {'case':<62} | {'clips/s':>8} | {'ms/clip':>8} |\n|{'-' * 64}|{'-' * 10}|{'-' * 10}|")
        for case, rate in cases.items():
            print(f"| {case:<62} | {rate:>8.2f} | {1000 / rate:>8.1f} |")
    for n, rate in part["loader_clips_per_s"].items():
        print(f"| full loader, {n} worker(s) + CPU augment consumer        | {rate:>8.2f} clips/s |")
    print(part["workers_needed"])
    spread = part["ratio_spread"]
    for name, value in ratios.items():
        s = spread.get(name)
        between = f"  (p25-p75 {s['p25']:.2f}-{s['p75']:.2f} over {s['items']} items)" if s else ""
        print(f"| ratio {name:<56} | {value:>7.2f}x |{between}")


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
    parser.add_argument("--items-only", action="store_true",
                        help="only the per-worker train items (before/after) and the full loader")
    parser.add_argument("--loader-items", type=int, default=32, help="clips per loader epoch (N = 1, 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    num_videos, repeats = (4, 1) if args.quick else (args.videos, args.repeats)
    if args.quick:
        args.loader_items = 8
    if args.items_only:
        return _items_main(args, 2 if args.quick else args.videos, repeats)

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


def _items_main(args: argparse.Namespace, num_videos: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_data_items_") as tmp:
        sets = _write_item_sets(Path(tmp), num_videos, args.gop)
        sizes = {name: round(sum(v.stat().st_size for v in vs) / len(vs) / 7 * 8 / 1e6, 2) for name, vs in sets.items()}
        part, ratios = _items_report(sets, repeats, args.loader_items)
    report = {"config": {"videos_per_set": num_videos, "repeats": repeats, "frames": 175, "fps": 25,
                         "gop_h264": args.gop, "bitrate_mbit_s": sizes, "threads": args.threads,
                         "num_frames": NUM_FRAMES, "sampling_rate": SAMPLING_RATE, "crop": CROP,
                         "python": platform.python_version(), "torch": torch.__version__},
              **part, "ratios": ratios}
    _print_items(part, ratios)
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
