#!/usr/bin/env python
"""Multi-view test: ``python tools/test.py --cfg FILE_OR_NAME [--ckpt PATH] [KEY VALUE ...]``.

Video score = mean of the per-view softmax over TEST.NUM_CLIPS x TEST.NUM_CROPS views (UCF-101 1 x 1,
Mini-Kinetics 10 x 3). Writes OUTPUT_DIR/test_results.json (top1, top5, mean_class_acc: over the decoded
videos, or with TEST.FAILED_AS_WRONG True counting undecodable ones as wrong, both sets always written as
*_decoded / *_failed_as_wrong; num_videos, num_failed, failed paths, views, checkpoint), predictions.csv
and confusion_matrix.png.
Without --ckpt: TEST.CHECKPOINT, else OUTPUT_DIR/checkpoints/last.pt. Without --cfg: the config stored
in the checkpoint. Under ``torchrun --nproc_per_node N`` the results equal the single-process ones and
rank 0 alone prints the summary and writes the files.

    python tools/test.py --cfg minikinetics_cgd --ckpt outputs/minikinetics_cgd/checkpoints/last.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.config import ConfigError  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", help="config file or name in configs/ (default: the checkpoint's config)")
    parser.add_argument("--ckpt", help="checkpoint (default: TEST.CHECKPOINT or OUTPUT_DIR/checkpoints/last.pt)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    if not args.cfg and not args.ckpt:
        parser.error("give --cfg, --ckpt or both")

    from cgd_video.boundary.evaluation import load_for_eval, run_test_from_config
    from cgd_video.engine.checkpoint import CheckpointError
    from cgd_video.engine.distributed import cleanup
    from cgd_video.engine.testing import SHORT_KEYS

    try:
        cfg, path, state = load_for_eval(args.ckpt, args.cfg, args.opts)
        summary, _ = run_test_from_config(cfg, path, state)  # the summary on rank 0 only (None elsewhere)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        cleanup()
    if summary is not None:
        print(json.dumps({k: summary[k] for k in SHORT_KEYS}))
        print(f"wrote {Path(cfg.OUTPUT_DIR) / 'test_results.json'}, predictions.csv, confusion_matrix.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
