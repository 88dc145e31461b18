#!/usr/bin/env python
"""Export a trained checkpoint to TorchScript or ONNX for one clip shape, and check it against eager.

    python tools/export.py --ckpt outputs/ucf/checkpoints/last.pt --format torchscript --out model.pt
    python tools/export.py --ckpt outputs/ucf/checkpoints/last.pt --format onnx --out model.onnx

The clip shape is ``(--batch, 3, DATA.NUM_FRAMES, --size, --size)`` with ``--size`` defaulting to
``DATA.TEST_CROP``; input is ImageNet-normalised float, output logits ``(batch, K)``. The model is
exported in eval mode (CGD's scale folded into BN, paper Sec. 3.3). Afterwards the exported file is run
on ``--trials`` random clips next to the eager model and the max abs difference of the logits is
printed; the command fails (exit 1) when it exceeds ``--tolerance`` (relative to the largest |logit| when
that is above 1: float32 rounding grows with the logits' scale). ONNX needs
``pip install 'cgd_video[export]'`` (onnx + onnxruntime). A missing or refused checkpoint (one holding
pickled code: checkpoints are loaded as data only) or a bad config is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.boundary.evaluation import export_clip_shape, load_model_from_checkpoint  # noqa: E402
from cgd_video.config import ConfigError  # noqa: E402
from cgd_video.engine.checkpoint import CheckpointError  # noqa: E402
from cgd_video.inference.export import EXPORT_FORMATS, check_parity, export_model, load_exported  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="training checkpoint (.pt)")
    p.add_argument("--format", required=True, choices=sorted(EXPORT_FORMATS), help="export format")
    p.add_argument("--out", required=True, help="file to write (written atomically)")
    p.add_argument("--cfg", default=None, help="config file/name (default: the one stored in the checkpoint)")
    p.add_argument("--batch", type=int, default=1, help="clips per call in the exported graph (default 1)")
    p.add_argument("--size", type=int, default=None, help="crop side in pixels (default DATA.TEST_CROP)")
    p.add_argument("--trials", type=int, default=3, help="random clips for the parity check (default 3)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs logit difference allowed, x max(1, max |logit|)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.batch < 1 or args.trials < 1:
        print(f"error: --batch and --trials must be >= 1 (got {args.batch}, {args.trials})", file=sys.stderr)
        return 2
    try:  # a missing or refused checkpoint, a bad config: one line, exit 2
        model, cfg, classes = load_model_from_checkpoint(args.ckpt, args.cfg, args.opts, device="cpu")
    except (ConfigError, CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shape = export_clip_shape(cfg, args.batch, args.size)
    out = export_model(model, shape, args.out, args.format)
    parity = check_parity(model, load_exported(out, args.format), shape, num_trials=args.trials)
    verdict = "ok" if parity.ok(args.tolerance) else "FAILED"
    print(f"exported {args.format} to {out} for input {tuple(shape)} -> logits ({args.batch}, {len(classes)})")
    print(f"parity vs eager on {args.trials} random clips: max abs difference {parity.max_abs_diff:.3e} "
          f"(max |logit| {parity.max_abs_logit:.3g}; tolerance {args.tolerance:.0e} x max(1, max |logit|)) {verdict}")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
