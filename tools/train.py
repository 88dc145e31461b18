#!/usr/bin/env python
"""Train a video model: ``python tools/train.py --cfg FILE_OR_NAME [KEY VALUE ...]``.

``--cfg`` is a path, or a name looked up in ``configs/`` (``ucf101_cgd.yaml``, ``ucf101_cgd``).
``KEY VALUE`` pairs override the file, e.g. ``SOLVER.BASE_LR 0.005 TRAIN.ACCUM_STEPS 4``.

    python tools/train.py --cfg ucf101_cgd MODEL.PRETRAINED weights/resnet50.pth
    torchrun --nproc_per_node 4 tools/train.py --cfg minikinetics_cgd          # DDP, 11 x 4 = 44 clips
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 tools/train.py ...

Re-running the same command resumes from OUTPUT_DIR/checkpoints/last.pt (TRAIN.AUTO_RESUME).
Exit status: 0 finished, or stopped by SIGTERM after saving last.pt (to the pid or the whole process
group); 75 stopped by SIGUSR1 after saving (Slurm ``--signal=USR1@90``: requeue and re-run); 2 bad input
(config, lists, weights, incompatible checkpoint); 3 non-finite loss on any rank (last good checkpoint kept).
The logic lives in ``cgd_video.boundary.training.main``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.boundary.training import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
