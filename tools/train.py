#!/usr/bin/env python
"""Train a video model: ``python tools/train.py --cfg FILE_OR_NAME [KEY VALUE ...]``.

``--cfg`` is a path, or a name looked up in ``configs/`` (``ucf101_cgd.yaml``, ``ucf101_cgd``).
``KEY VALUE`` pairs override the file, e.g. ``SOLVER.BASE_LR 0.005 TRAIN.ACCUM_STEPS 4``.

    python tools/train.py --cfg ucf101_cgd MODEL.PRETRAINED weights/resnet50.pth
    torchrun --nproc_per_node 4 tools/train.py --cfg minikinetics_cgd          # DDP, 11 x 4 = 44 clips
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 tools/train.py ...

Re-running the same command resumes from OUTPUT_DIR/checkpoints/last.pt (TRAIN.AUTO_RESUME).
SIGTERM saves last.pt and exits with status 0; a non-finite loss exits with status 3.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.config import ConfigError, load_config  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="config file or name in configs/")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.cfg, args.opts)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from cgd_video.builders import DataConfigError
    from cgd_video.engine.checkpoint import CheckpointError
    from cgd_video.engine.distributed import cleanup
    from cgd_video.engine.trainer import NonFiniteLossError, train

    try:
        summary = train(cfg)
    except (CheckpointError, NonFiniteLossError, DataConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3 if isinstance(e, NonFiniteLossError) else 2
    finally:
        cleanup()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if summary["status"] == "sigterm":
        print(f"SIGTERM: stopped at iteration {summary['iteration']}, last checkpoint {summary['checkpoint']}; "
              "run the same command to resume")
    else:
        print(f"done ({summary['status']}): epoch {summary['epoch']}, iteration {summary['iteration']}; "
              f"outputs in {summary['output_dir']} (checkpoint {summary['checkpoint']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
