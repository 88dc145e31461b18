#!/usr/bin/env python
"""Label every video in a folder (or a list) with a trained checkpoint; one CSV/JSONL row per file.

    python tools/infer.py --ckpt outputs/ucf/checkpoints/last.pt --input videos/ --output preds.csv
    python tools/infer.py --ckpt last.pt --input list.txt --output preds.jsonl --views 10x3 --topk 5
    python tools/infer.py --ckpt last.pt --input long/ --output timeline.jsonl --timeline 2.0

Input: a folder, scanned recursively for video files by extension (case-insensitive; hidden files and
folders skipped), a single video, or a text file with one path per line; an input with no videos is an
error (exit 2), like a missing or refused checkpoint. Output: ``.csv`` or ``.jsonl``
with ``path, status (ok|error), error, top1_label, top1_score`` and the top-k labels and scores (names
from the checkpoint). Views are the test protocol's (``1x1`` centre clip/crop, ``10x3`` = 10 clips x
3 crops, softmax averaged) through the same dataset code as ``tools/test.py``.

Rows are appended and flushed as videos finish; re-running the command skips files already in the
output (``--overwrite`` starts over, ``--retry-errors`` retries the failed ones). A file that cannot be
decoded gets an ``error`` row with the reason and the run goes on; Ctrl-C leaves a valid file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.data.scan import scan_inputs  # noqa: E402
from cgd_video.inference.batch import OUTPUT_FORMATS, ResultWriter, run_inference  # noqa: E402
from cgd_video.inference.predictor import Predictor, parse_views  # noqa: E402
from cgd_video.runtime import AMP_MODES  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="training checkpoint (.pt); carries its config and class names")
    p.add_argument("--input", required=True, help="folder of videos (recursive), a video, or a list file")
    p.add_argument("--output", required=True, help=f"results file: {' or '.join(sorted(OUTPUT_FORMATS))}")
    p.add_argument("--cfg", default=None, help="config file/name (default: the one stored in the checkpoint)")
    p.add_argument("--views", default="1x1", help="CLIPSxCROPS: 1x1 (centre, default) or 10x3 (full protocol)")
    p.add_argument("--topk", type=int, default=5, help="ranked predictions per row (default 5)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--amp", default=None, choices=sorted(AMP_MODES), help="mixed precision on CUDA (default TRAIN.AMP)")
    p.add_argument("--batch-size", type=int, default=None, help="videos per forward pass (default TEST.BATCH_SIZE)")
    p.add_argument("--num-workers", type=int, default=None, help="decoding processes (default DATALOADER.NUM_WORKERS)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing output instead of resuming")
    p.add_argument("--retry-errors", action="store_true", help="on resume, try the files that failed again")
    p.add_argument("--timeline", type=float, default=None, metavar="SECONDS",
                   help="add per-window scores (windows of SECONDS) to each row; needs a .jsonl output")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs")
    args = p.parse_args(argv)
    try:
        parse_views(args.views)
    except ValueError as e:
        p.error(f"--views: {e}")
    if args.topk < 1:
        p.error(f"--topk must be >= 1, got {args.topk}")
    if args.timeline is not None:
        if args.timeline <= 0:
            p.error(f"--timeline must be > 0 seconds, got {args.timeline}")
        if Path(args.output).suffix.lower() != ".jsonl":
            p.error(f"--timeline writes per-window lists: use a .jsonl --output (got {args.output!r})")
    if Path(args.output).suffix.lower() not in OUTPUT_FORMATS:
        p.error(f"--output {args.output!r}: extension must be one of {', '.join(sorted(OUTPUT_FORMATS))}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:  # bad input (no videos), checkpoint, config or existing output: one clear line, exit 2
        paths = scan_inputs(args.input)
        predictor = Predictor.from_checkpoint(
            args.ckpt, device=args.device, cfg=args.cfg, opts=args.opts, views=args.views, topk=args.topk,
            amp=args.amp, batch_size=args.batch_size, num_workers=args.num_workers,
        )
        writer = ResultWriter(args.output, predictor.topk, overwrite=args.overwrite, retry_errors=args.retry_errors)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with writer:
        todo = len(writer.pending(paths))
        print(f"{len(paths)} video files in {args.input}; {len(paths) - todo} already in {args.output}, {todo} to do "
              f"({predictor.num_clips}x{predictor.num_crops} views, {predictor.device})", flush=True)
        counts = run_inference(predictor, paths, writer, timeline=args.timeline)
    if counts.interrupted:
        print(f"\ninterrupted: {counts.ok} ok, {counts.error} failed written to {args.output}; "
              "run the same command again to resume", file=sys.stderr)
        return 130
    print(f"done: {counts.ok} ok, {counts.error} failed, {counts.skipped} skipped (already in the output) "
          f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
