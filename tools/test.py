#!/usr/bin/env python
"""Multi-view test: ``python tools/test.py --cfg FILE_OR_NAME [--ckpt PATH] [KEY VALUE ...]``.

Video score = mean of the per-view softmax over TEST.NUM_CLIPS x TEST.NUM_CROPS views (UCF-101 1 x 1,
Mini-Kinetics 10 x 3). Writes OUTPUT_DIR/test_results.json (top1, top5, mean_class_acc, num_videos,
num_failed, failed paths, views, checkpoint), predictions.csv and confusion_matrix.png.
Without --ckpt: TEST.CHECKPOINT, else OUTPUT_DIR/checkpoints/last.pt. Without --cfg: the config stored
in the checkpoint. Under ``torchrun --nproc_per_node N`` the results equal the single-process ones.

    python tools/test.py --cfg minikinetics_cgd --ckpt outputs/minikinetics_cgd/checkpoints/last.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.config import ConfigError, load_config, load_config_from_yaml_string  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", help="config file or name in configs/ (default: the checkpoint's config)")
    parser.add_argument("--ckpt", help="checkpoint (default: TEST.CHECKPOINT or OUTPUT_DIR/checkpoints/last.pt)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    if not args.cfg and not args.ckpt:
        parser.error("give --cfg, --ckpt or both")

    from cgd_video.engine.checkpoint import CheckpointError, load_checkpoint
    from cgd_video.engine.distributed import cleanup, is_main_process
    from cgd_video.engine.testing import run_test

    try:
        if args.cfg:
            cfg = load_config(args.cfg, args.opts)
        else:
            cfg = load_config_from_yaml_string(load_checkpoint(args.ckpt)["cfg"], args.opts)
        summary, _ = run_test(cfg, args.ckpt)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        cleanup()
    if is_main_process():
        short = {k: summary[k] for k in ("top1", "top5", "mean_class_acc", "num_videos", "num_failed")}
        print(json.dumps(short))
        print(f"wrote {Path(cfg.OUTPUT_DIR) / 'test_results.json'}, predictions.csv, confusion_matrix.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
