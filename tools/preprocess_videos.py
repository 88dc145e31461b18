#!/usr/bin/env python
"""Re-encode a video dataset tree to a short side and keyframe interval (cgd_video.data.preprocess).

    python tools/preprocess_videos.py --src data/kinetics --dst data/kinetics_256 --short-side 256 --gop 32

The copy keeps every relative path, so the same lists work with DATA.ROOT pointed at --dst. Resumable
(finished files are skipped), atomic per file, never writes under --src. Files that cannot be decoded are
listed in DST/preprocess_failures.txt; the exit status is then 1 (0 when every file was converted, 2 for
bad arguments).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.data.preprocess import FAILURES_FILE, preprocess_tree  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, required=True, help="dataset root to read (never modified)")
    parser.add_argument("--dst", type=Path, required=True, help="where the copy goes (same layout)")
    parser.add_argument("--short-side", type=int, required=True, help="shorter side of the copy (never upscaled)")
    parser.add_argument("--gop", type=int, default=32, help="keyframe interval in frames (default 32)")
    parser.add_argument("--crf", type=int, default=20, help="x264 quality, lower is better (default 20)")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: all CPUs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        report = preprocess_tree(args.src, args.dst, args.short_side, args.gop, args.crf, args.workers,
                                 progress=not args.no_progress)
    except ValueError as err:
        parser.error(str(err))
    print(f"{len(report.written)} videos written, {len(report.skipped)} already done, "
          f"{len(report.failed)} failed (see {args.dst / FAILURES_FILE}); copy in {args.dst}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
