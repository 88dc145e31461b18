"""Synthetic action dataset: real h264 mp4 files in the UCF-101 layout, for tests and the demo.

Each class is a *recipe*: a coloured shape with its own kind of motion. C2D applies 2-D convolutions
to every frame and pools over time, so it is all but blind to frame order (PROTOCOL.md §3): the
recipes therefore differ by shape, colour, size, speed, axis of motion, blinking and pulsing, never
by the direction of motion alone (spin/orbit/scroll directions are drawn at random per video).
Every video randomises its position, phase, speed, size, colour (slight jitter) and background noise;
videos of one *group* share a background tint, and train/test are split by group as UCF-101 does.

Layout written under ``out``::

    videos/<Class>/v_<Class>_gGG_cCC.mp4
    splits/classInd.txt      "1 ClassName" (CRLF)
    splits/trainlist01.txt   "<Class>/v_<Class>_gGG_cCC.mp4 <1-based label>" (CRLF)
    splits/testlist01.txt    "<Class>/v_<Class>_gGG_cCC.mp4" (CRLF)

Generation is deterministic for a seed (same seed, same library versions -> same bytes).
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from cgd_video.utils.atomic import atomic_write_bytes, atomic_write_text

__all__ = [
    "CLASS_RECIPES",
    "class_names",
    "render_video",
    "encode_mp4",
    "video_name",
    "write_synthetic_dataset",
    "write_split_files",
]

PathLike = Union[str, os.PathLike]

# Shapes: each returns a boolean mask (H, W) from pixel grids centred on the object.
# dx, dy are pixel offsets from the centre, r the object's half size, theta a rotation angle.


def _disc(dx: np.ndarray, dy: np.ndarray, r: float, theta: float) -> np.ndarray:
    return dx * dx + dy * dy <= r * r


def _ring(dx: np.ndarray, dy: np.ndarray, r: float, theta: float) -> np.ndarray:
    d2 = dx * dx + dy * dy
    return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)


def _rotated(dx: np.ndarray, dy: np.ndarray, theta: float) -> Tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(theta), math.sin(theta)
    return c * dx + s * dy, -s * dx + c * dy


def _square(dx: np.ndarray, dy: np.ndarray, r: float, theta: float) -> np.ndarray:
    u, v = _rotated(dx, dy, theta)
    return (np.abs(u) <= 0.85 * r) & (np.abs(v) <= 0.85 * r)


def _cross(dx: np.ndarray, dy: np.ndarray, r: float, theta: float) -> np.ndarray:
    u, v = _rotated(dx, dy, theta)
    au, av = np.abs(u), np.abs(v)
    arm = 0.3 * r
    return ((au <= r) & (av <= arm)) | ((av <= r) & (au <= arm))


def _triangle(dx: np.ndarray, dy: np.ndarray, r: float, theta: float) -> np.ndarray:
    # Equilateral triangle: inside the three half-planes whose normals point at 90°, 210°, 330°.
    inside = np.ones(dx.shape, dtype=bool)
    for k in range(3):
        a = theta + math.pi / 2 + 2 * math.pi * k / 3
        inside &= (dx * math.cos(a) + dy * math.sin(a)) <= 0.5 * r
    return inside


def _bar(dx: np.ndarray, dy: np.ndarray, r: float, theta: float) -> np.ndarray:
    u, v = _rotated(dx, dy, theta)
    return (np.abs(u) <= 1.6 * r) & (np.abs(v) <= 0.35 * r)


def _dots(dx: np.ndarray, dy: np.ndarray, r: float, theta: float) -> np.ndarray:
    # Four small discs on a rotating square.
    mask = np.zeros(dx.shape, dtype=bool)
    rr = (0.32 * r) ** 2
    for k in range(4):
        a = theta + math.pi / 4 + k * math.pi / 2
        ox, oy = 0.9 * r * math.cos(a), 0.9 * r * math.sin(a)
        mask |= (dx - ox) ** 2 + (dy - oy) ** 2 <= rr
    return mask


def _stripes(dx: np.ndarray, dy: np.ndarray, r: float, theta: float) -> np.ndarray:
    # A square patch of vertical stripes; theta shifts the stripe phase (scrolling).
    period = max(4.0, 0.6 * r)
    inside = (np.abs(dx) <= 1.3 * r) & (np.abs(dy) <= 1.1 * r)
    return inside & (np.sin(2 * math.pi * dx / period + theta) > 0)


@dataclass(frozen=True)
class Recipe:
    """One synthetic class: a shape, its RGB colour and a motion law.

    ``motion(t, fps, p)`` returns ``(x, y, scale, theta, visible)`` at frame t, where x, y are offsets
    in units of the frame's shorter side and ``p`` holds the per-video random parameters.
    """

    name: str
    shape: Callable[..., np.ndarray]
    color: Tuple[int, int, int]
    size: float  # object half size as a fraction of the shorter side
    motion: Callable[[int, dict], Tuple[float, float, float, float, bool]]


def _swing(axis: str, amp: float, period: float):
    def motion(t: int, p: dict):
        s = amp * math.sin(2 * math.pi * t / (period * p["speed"]) + p["phase"])
        return (s, 0.0, 1.0, 0.0, True) if axis == "x" else (0.0, s, 1.0, 0.0, True)

    return motion


def _spin(period: float):
    def motion(t: int, p: dict):
        return 0.0, 0.0, 1.0, p["dir"] * 2 * math.pi * t / (period * p["speed"]) + p["phase"], True

    return motion


def _blink(period: float):
    def motion(t: int, p: dict):
        on = math.sin(2 * math.pi * t / (period * p["speed"]) + p["phase"]) > -0.2
        return 0.0, 0.0, 1.0, 0.0, on

    return motion


def _pulse(period: float, depth: float):
    def motion(t: int, p: dict):
        s = 1.0 + depth * math.sin(2 * math.pi * t / (period * p["speed"]) + p["phase"])
        return 0.0, 0.0, s, 0.0, True

    return motion


def _orbit(radius: float, period: float):
    def motion(t: int, p: dict):
        a = p["dir"] * 2 * math.pi * t / (period * p["speed"]) + p["phase"]
        return radius * math.cos(a), radius * math.sin(a), 1.0, 0.0, True

    return motion


def _still():
    def motion(t: int, p: dict):
        return 0.0, 0.0, 1.0, p["phase"], True

    return motion


# Up to ten classes; the first N are used. Every pair differs in shape and colour, and most also in motion.
CLASS_RECIPES: Tuple[Recipe, ...] = (
    Recipe("RedDiscSwingX", _disc, (220, 40, 40), 0.14, _swing("x", 0.22, 16)),
    Recipe("GreenSquareSwingY", _square, (40, 200, 60), 0.13, _swing("y", 0.18, 16)),
    Recipe("BlueTriangleSpin", _triangle, (50, 80, 230), 0.20, _spin(20)),
    Recipe("YellowRingBlink", _ring, (230, 210, 40), 0.17, _blink(8)),
    Recipe("MagentaCrossDash", _cross, (210, 50, 200), 0.15, _swing("x", 0.25, 6)),
    Recipe("CyanBarPulse", _bar, (40, 210, 220), 0.12, _pulse(12, 0.45)),
    Recipe("WhiteDiscOrbit", _disc, (235, 235, 235), 0.09, _orbit(0.2, 18)),
    Recipe("OrangeSquareStill", _square, (240, 140, 30), 0.18, _still()),
    Recipe("PurpleDotsSpin", _dots, (140, 60, 200), 0.20, _spin(14)),
    Recipe("GrayStripesScroll", _stripes, (170, 170, 170), 0.20, _spin(10)),
)


def class_names(num_classes: int) -> list:
    """Names of the first ``num_classes`` recipes (UCF-style CamelCase)."""
    if not 1 <= num_classes <= len(CLASS_RECIPES):
        raise ValueError(f"classes={num_classes}: choose 1..{len(CLASS_RECIPES)} "
                         f"(recipes: {', '.join(r.name for r in CLASS_RECIPES)})")
    return [r.name for r in CLASS_RECIPES[:num_classes]]


def render_video(
    class_index: int,
    frames: int,
    size: Tuple[int, int],
    rng: np.random.Generator,
    background: Optional[Sequence[float]] = None,
) -> np.ndarray:
    """Draw one video of class ``class_index``: uint8 array ``(frames, H, W, 3)``; ``size`` is (W, H).

    Randomised per video: centre position, phase, speed (±25%), size (±15%), rotation/orbit direction,
    colour (±20 per channel), background tint (``background`` or random) and per-frame noise.
    """
    recipe = CLASS_RECIPES[class_index]
    width, height = size
    short = min(width, height)
    p = {
        "phase": float(rng.uniform(0, 2 * math.pi)),
        "speed": float(rng.uniform(0.8, 1.25)),
        "dir": float(rng.choice([-1.0, 1.0])),
    }
    half = recipe.size * short * float(rng.uniform(0.85, 1.15))
    # Centre jitter that keeps the moving object mostly inside the frame.
    cx0 = width / 2 + float(rng.uniform(-0.12, 0.12)) * width
    cy0 = height / 2 + float(rng.uniform(-0.12, 0.12)) * height
    color = np.clip(np.asarray(recipe.color, np.float32) + rng.uniform(-20, 20, 3), 0, 255)
    if background is None:
        background = rng.uniform(20, 90, 3)
    bg = np.asarray(background, np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    # Static low-contrast texture (varies per video) plus fresh noise per frame.
    texture = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        x, y, scale, theta, visible = recipe.motion(t, p)
        frame = bg + texture + rng.normal(0, 4, (height, width, 3)).astype(np.float32)
        if visible:
            mask = recipe.shape(xs - (cx0 + x * short), ys - (cy0 + y * short), half * scale, theta)
            frame[mask] = color
        np.clip(frame, 0, 255, out=frame)
        out[t] = frame.astype(np.uint8)
    return out


def encode_mp4(frames: np.ndarray, fps: int = 25, crf: int = 18) -> bytes:
    """Encode uint8 RGB frames ``(T, H, W, 3)`` as an h264/yuv420p mp4 (PyAV, libx264, one thread).

    H and W must be even (yuv420p). One encoder thread and no macroblock-tree rate control keep the
    bytes identical from run to run. Keyframe every 16 frames so random access stays cheap.
    """
    import av

    t, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"h264/yuv420p needs even sizes, got {width}x{height}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        # mbtree reads lookahead state that is not reproducible run to run (measured: 2-4 distinct
        # outputs in 30 encodes of the same frames); without it the bytes are identical every time.
        stream.options = {"crf": str(crf), "preset": "veryfast", "g": "16",
                          "x264-params": "mbtree=0:threads=1:lookahead-threads=1"}
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def video_name(cls: str, group: int, clip: int, ext: str = ".mp4") -> str:
    """UCF-101 style relative path ``<Class>/v_<Class>_gGG_cCC.mp4``."""
    return f"{cls}/v_{cls}_g{group:02d}_c{clip:02d}{ext}"


def _group_plan(videos_per_class: int) -> Tuple[list, int]:
    """(group, clip) for each video of a class, and the number of test groups (groups 1..n are test).

    As in UCF-101, a group holds a few clips of the same "actor"; about a quarter of the groups
    (at least one, never all) go to the test split.
    """
    per_group = max(1, min(4, videos_per_class // 4))
    plan = [(i // per_group + 1, i % per_group + 1) for i in range(videos_per_class)]
    groups = plan[-1][0]
    test_groups = min(max(1, round(groups * 0.28)), max(groups - 1, 1))
    return plan, test_groups


def iter_synthetic_videos(
    classes: int, videos_per_class: int, seed: int
) -> Iterator[Tuple[int, int, int, bool, np.random.Generator, np.ndarray]]:
    """Yield (class_index, group, clip, is_test, rng, background) for every video, in list order."""
    plan, test_groups = _group_plan(videos_per_class)
    for c in range(classes):
        for group, clip in plan:
            # Per-video generator from (seed, class, group, clip): independent of the class count.
            rng = np.random.default_rng([seed, c, group, clip])
            group_rng = np.random.default_rng([seed, 1_000_003, group])
            background = group_rng.uniform(20, 90, 3)
            yield c, group, clip, group <= test_groups, rng, background


def write_synthetic_dataset(
    out: PathLike,
    classes: int = 4,
    videos_per_class: int = 12,
    frames: int = 32,
    size: Tuple[int, int] = (128, 96),
    fps: int = 25,
    seed: int = 0,
    progress: Optional[Callable[[int], None]] = None,
) -> Path:
    """Write the synthetic dataset under ``out`` in the UCF-101 layout (module docstring); returns ``out``.

    Args:
        out: dataset root; ``videos/`` and ``splits/`` are created inside it.
        classes: number of classes, 1..10 (``CLASS_RECIPES`` in order).
        videos_per_class: videos per class; grouped like UCF-101, ~1/4 of the groups are test.
        frames: frames per video.
        size: (width, height), both even (h264 yuv420p).
        fps: frame rate written in the container.
        seed: everything is derived from it; same seed -> same files.
        progress: optional callback called with 1 after each video (e.g. ``tqdm.update``).
    """
    names = class_names(classes)
    if videos_per_class < 2:
        raise ValueError(f"videos_per_class={videos_per_class}: need >= 2 (one train and one test group)")
    if frames < 1:
        raise ValueError(f"frames={frames}: need >= 1")
    width, height = size
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise ValueError(f"size={width}x{height}: width and height must be even and >= 16")
    out = Path(out)
    train, test = [], []
    for c, group, clip, is_test, rng, background in iter_synthetic_videos(classes, videos_per_class, seed):
        rel = video_name(names[c], group, clip)
        video = render_video(c, frames, (width, height), rng, background)
        atomic_write_bytes(out / "videos" / rel, encode_mp4(video, fps))
        (test if is_test else train).append((rel, c + 1))
        if progress is not None:
            progress(1)
    write_split_files(out / "splits", names, train, test)
    return out


def write_split_files(splits: Path, names: Sequence[str], train: list, test: list) -> None:
    """UCF-101 split files (CRLF): classInd.txt, trainlist01.txt (path, 1-based label), testlist01.txt."""
    crlf = "\r\n"
    atomic_write_text(splits / "classInd.txt", "".join(f"{i + 1} {n}{crlf}" for i, n in enumerate(names)))
    atomic_write_text(splits / "trainlist01.txt", "".join(f"{p} {label}{crlf}" for p, label in train))
    atomic_write_text(splits / "testlist01.txt", "".join(f"{p}{crlf}" for p, _ in test))
