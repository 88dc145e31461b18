#!/usr/bin/env python
"""Build list files (``<relative path> <0-based label>``) and ``classes.txt`` from a dataset's annotations.

    # UCF-101 (official ucfTrainTestlist folder; class from the folder name via classInd.txt)
    python tools/build_lists.py ucf101 --splits ucfTrainTestlist --root UCF-101 --out data_lists/ucf101

    # Mini-Kinetics-200 (id lists joined with the Kinetics-400 CSVs; clips found anywhere under --root)
    python tools/build_lists.py minikinetics --csv kinetics400/train.csv --csv kinetics400/validate.csv \\
        --train-ids train_ytid_list.txt --val-ids val_ytid_list.txt --root kinetics400_clips \\
        --out data_lists/minikinetics200

    # any dataset with one folder per class
    python tools/build_lists.py folder --root my_videos --out data_lists/mine --val-fraction 0.2

Every builder checks that each listed file exists: missing ones are left out, counted, and named in
missing.txt. Add --check to decode every video in parallel first: check_report.csv records each one, the
lists keep only the videos that decode, and rejected.txt names the others with the reason. Nothing is
ever deleted or moved. See data_lists/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.data.list_builders import (  # noqa: E402
    ListSet,
    build_folder_lists,
    build_minikinetics_lists,
    build_ucf101_lists,
    write_list_set,
)
from cgd_video.data.lists import VideoRecord  # noqa: E402
from cgd_video.data.video_check import check_videos, write_check_report, write_rejected  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", required=True, type=Path, help="folder holding the videos")
    common.add_argument("--out", required=True, type=Path, help="folder for the list files")
    common.add_argument("--check", action="store_true",
                        help="decode every video first; lists keep only those that decode")
    common.add_argument("--check-full", action="store_true",
                        help="like --check, decoding every frame (--check: first, middle, last)")
    common.add_argument("--workers", type=int, default=None, help="--check processes (default: all CPUs)")
    common.add_argument("--backend", choices=("pyav", "decord"), default="pyav",
                        help="--check reads each video as DATA.BACKEND will (default pyav); the report's reader "
                             "column names the reader each file gets")
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="{ucf101,minikinetics,folder}")
    ucf = sub.add_parser("ucf101", parents=[common], help="official UCF-101 split files")
    ucf.add_argument("--splits", required=True, type=Path, help="ucfTrainTestlist folder (classInd.txt, ...)")
    mk = sub.add_parser("minikinetics", parents=[common], help="Mini-Kinetics-200 id lists + Kinetics-400 CSVs")
    mk.add_argument("--csv", required=True, action="append", type=Path,
                    help="Kinetics-400 annotation CSV; repeat for train and validate")
    mk.add_argument("--train-ids", required=True, type=Path, help="train_ytid_list.txt")
    mk.add_argument("--val-ids", required=True, type=Path, help="val_ytid_list.txt")
    folder = sub.add_parser("folder", parents=[common], help="one folder per class")
    folder.add_argument("--val-fraction", type=float, default=0.0, help="share of each class for val.txt")
    folder.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    return parser


def _build(args: argparse.Namespace) -> ListSet:
    if args.dataset == "ucf101":
        return build_ucf101_lists(args.splits, args.root)
    if args.dataset == "minikinetics":
        return build_minikinetics_lists(args.csv, args.train_ids, args.val_ids, args.root)
    return build_folder_lists(args.root, val_fraction=args.val_fraction, seed=args.seed)


def _keep_decodable(lists: ListSet, args: argparse.Namespace) -> int:
    """Decode every listed video once; drop the failures from the lists. Returns the number rejected."""
    unique = sorted({r.path for records in lists.lists.values() for r in records})
    results = check_videos(unique, root=args.root, workers=args.workers, full=args.check_full,
                           backend=args.backend)
    write_check_report(args.out / "check_report.csv", results)
    write_rejected(args.out / "rejected.txt", results)
    bad = {r.path for r in results if not r.ok}
    for name, records in lists.lists.items():
        lists.lists[name] = [VideoRecord(r.path, r.label) for r in records if r.path not in bad]
    return len(bad)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        lists = _build(args)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    args.out.mkdir(parents=True, exist_ok=True)
    rejected = _keep_decodable(lists, args) if args.check or args.check_full else None
    write_list_set(args.out, lists)
    for note in lists.notes:
        print(note)
    print(lists.summary())
    if lists.missing:
        print(f"{len(lists.missing)} listed videos not found under {args.root}: see {args.out / 'missing.txt'}")
    if lists.unmatched:
        print(f"{len(lists.unmatched)} ids not in the CSVs: see {args.out / 'unmatched_ids.txt'}")
    if rejected is not None:
        print(f"--check: {rejected} videos do not decode (left out): see {args.out / 'rejected.txt'} "
              f"and {args.out / 'check_report.csv'} (its 'reader' column: the reader each file gets)")
    print(f"wrote lists to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
