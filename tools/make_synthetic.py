#!/usr/bin/env python
"""Write the synthetic action dataset (real h264 mp4s, UCF-101 layout) used by the tests and the demo.

    python tools/make_synthetic.py --out data/synthetic --classes 6 --videos-per-class 16 \\
        --frames 48 --size 128x96 --seed 0

    python tools/make_synthetic.py --task order --out data/order --classes 2 --videos-per-class 32 \\
        --frames 16 --size 64x64

``--task order`` writes the temporal-order probe (cgd_video/data/temporal_order.py): classes that
differ only in the order of the same frames (Forward, Reverse, WrapForward, WrapReverse; 2 or 4
classes, square frames, frames a multiple of 4 for 4 classes).

Then build the lists exactly as for UCF-101:
    python tools/build_lists.py ucf101 --splits data/synthetic/splits \\
        --root data/synthetic/videos --out data/synthetic/lists
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from cgd_video.data.synthetic import CLASS_RECIPES, write_synthetic_dataset  # noqa: E402
from cgd_video.data.temporal_order import write_order_dataset  # noqa: E402


def _size(text: str) -> Tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected WxH, e.g. 128x96")
    return w, h


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("actions", "order"), default="actions",
                        help="actions: shape/motion classes (default); order: the temporal-order probe")
    parser.add_argument("--out", required=True, type=Path, help="dataset root (videos/ and splits/ go inside)")
    parser.add_argument("--classes", type=int, default=4, help=f"number of classes, 1..{len(CLASS_RECIPES)}")
    parser.add_argument("--videos-per-class", type=int, default=12)
    parser.add_argument("--frames", type=int, default=32, help="frames per video")
    parser.add_argument("--size", type=_size, default=(128, 96), help="WxH, both even (default 128x96)")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    total = args.classes * args.videos_per_class
    with tqdm(total=total, desc="synthetic videos", unit="video") as bar:
        try:
            common = dict(classes=args.classes, videos_per_class=args.videos_per_class, frames=args.frames,
                          fps=args.fps, seed=args.seed, progress=bar.update)
            if args.task == "order":
                if args.size[0] != args.size[1]:
                    raise ValueError(f"--task order draws square frames; got --size {args.size[0]}x{args.size[1]}")
                root = write_order_dataset(args.out, size=args.size[0], **common)
            else:
                root = write_synthetic_dataset(args.out, size=args.size, **common)
        except ValueError as e:
            parser.error(str(e))
    print(f"wrote {total} videos to {root / 'videos'} and split files to {root / 'splits'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
