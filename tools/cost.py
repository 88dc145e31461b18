#!/usr/bin/env python
"""Parameter and MAC table of our models next to the paper's Table 3 (video) and Table 11 (image).

    python tools/cost.py                       # both tables, 1x3x32x224x224 clips, 400 classes
    python tools/cost.py --table 3 --json benchmarks/results/cost_table3.json
    python tools/cost.py --table 11            # ResNet-50 on one 3x800x800 image

The tables are built by :mod:`cgd_video.utils.cost_table` (the real counter of
:mod:`cgd_video.utils.cost`). Per view: the training clip (``--frames`` x ``--size``²). Per video:
each dataset's test protocol, read from its config (``TEST.NUM_CLIPS`` x ``TEST.NUM_CROPS`` views of
``DATA.TEST_CROP``²): ``ucf101_c2d`` (1 x 1 at 256) and ``minikinetics_c2d`` (10 x 3 at 256).
Delta_N divides each extra cost by the reference CGD row's (``--normalise-to``, default shared).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# fvcore's import calls torch.jit.script, deprecated in this torch: not our concern in a cost table.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

import torch  # noqa: E402

from cgd_video.config import load_config  # noqa: E402
from cgd_video.utils.atomic import atomic_write_text  # noqa: E402
from cgd_video.utils.cost_table import (  # noqa: E402
    IMAGE_LAYOUT, TABLE3, TABLE11, EvalProtocol, baseline_note, convention, measure, normalise, render,
)

# (name printed in the table, config whose TEST/DATA keys give the protocol)
PROTOCOL_CONFIGS = (("UCF-101", "ucf101_c2d"), ("Mini-Kinetics", "minikinetics_c2d"))


def dataset_protocols(test_crop: int | None = None) -> list[EvalProtocol]:
    """Each dataset's test views from its config; ``test_crop`` overrides the crop size (small runs)."""
    out = []
    for name, cfg_name in PROTOCOL_CONFIGS:
        cfg = load_config(cfg_name)
        out.append(EvalProtocol(name, cfg.TEST.NUM_CLIPS, cfg.TEST.NUM_CROPS, test_crop or cfg.DATA.TEST_CROP))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", choices=("3", "11", "both"), default="both")
    ap.add_argument("--json", type=Path, help="write the rows as a JSON list of objects")
    ap.add_argument("--num-classes", type=int, default=400,
                    help="fc outputs (400: Kinetics, the default; the paper's 25.56M is the 1000-class ImageNet head)")
    ap.add_argument("--frames", type=int, default=32, help="clip length T (Table 3)")
    ap.add_argument("--size", type=int, default=224, help="training crop size: the per-view column (Table 3)")
    ap.add_argument("--test-crop", type=int, help="override the configs' test crop size (default: from the configs)")
    ap.add_argument("--image-size", type=int, default=800, help="image size (Table 11)")
    ap.add_argument("--normalise-to", default="shared", choices=("shared", "mean", "frame", "concat"),
                    help="CGD temporal mode whose extra cost is Delta_N = 1 in Table 3")
    args = ap.parse_args(argv)
    with torch.no_grad():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    out: list[dict] = []
    text: list[str] = []
    protocols = dataset_protocols(args.test_crop)
    if args.table in ("3", "both"):
        shape = (1, 3, args.frames, args.size, args.size)
        res = measure(TABLE3, {"num_classes": args.num_classes, "num_frames": args.frames}, shape, "table 3",
                      protocols)
        normalise(res, args.normalise_to)
        for r in res:
            r["table"] = "3"
        text.append(render(res, f"Table 3 (video): C2D ResNet-50, input {'x'.join(map(str, shape))}, "
                                f"{args.num_classes} classes; dN relative to '{res[-4]['delta_n_reference']}'",
                           protocols))
        text.append(baseline_note(res[0], args.num_classes, args.frames))
        out += res
    if args.table in ("11", "both"):
        shape = (1, 3, 1, args.image_size, args.image_size)
        kw = {"num_classes": args.num_classes, "num_frames": 1, "layout": IMAGE_LAYOUT}
        res = measure(TABLE11, kw, shape, "table 11")
        normalise(res, "+CGD v10 (res2-5)")
        for r in res:
            r["table"] = "11"
        text.append(render(res, f"Table 11 (image): ResNet-50, one 3x{args.image_size}x{args.image_size} image "
                                "(C2D with T=1, no temporal pooling)"))
        out += res
    text.append(convention(out, protocols if args.table != "11" else ()))
    print("\n\n".join(text))
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
