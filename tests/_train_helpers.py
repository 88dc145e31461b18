"""Shared by the training/distributed tests: tiny lists from the synthetic fixture, tiny-model options."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]


def write_tiny_lists(dataset_root: Path, out: Path) -> Path:
    from cgd_video.data.list_builders import build_ucf101_lists, write_list_set

    write_list_set(out, build_ucf101_lists(dataset_root / "splits", dataset_root / "videos", splits=(1,)))
    return out


def tiny_opts(lists: Path, dataset_root: Path, out_dir: Path, **extra) -> List[str]:
    """C2D-R18 + CGD, 4 frames of 32 px, batch 2, 2 epochs of 4 steps, a checkpoint every step."""
    opts = {
        "MODEL.DEPTH": 18, "MODEL.NUM_CLASSES": 4, "MODEL.LAYOUT": "pytorchvideo8", "MODEL.ATTENTION": "cgd",
        "MODEL.DROPOUT": 0.5, "DATA.ROOT": dataset_root / "videos", "DATA.TRAIN_LIST": lists / "train_split1.txt",
        "DATA.TEST_LIST": lists / "test_split1.txt", "DATA.CLASSES": lists / "classes.txt",
        "DATA.NUM_FRAMES": 4, "DATA.SAMPLING_RATE": 2, "DATA.TRAIN_CROP": 32, "DATA.TEST_SCALE": 36,
        "DATA.TEST_CROP": 32, "SOLVER.BASE_LR": 0.02, "SOLVER.LINEAR_SCALING": False, "SOLVER.MAX_EPOCH": 2,
        "SOLVER.WARMUP_EPOCHS": 0.5, "SOLVER.STEPS": "[1]", "TRAIN.BATCH_SIZE": 2, "TRAIN.DEVICE": "cpu",
        "TRAIN.CHECKPOINT_ITERS": 1, "TRAIN.CHECKPOINT_PERIOD": 0, "TRAIN.EVAL_PERIOD": 0,
        "TRAIN.LOG_PERIOD": 1, "TEST.NUM_CLIPS": 2, "TEST.NUM_CROPS": 3, "TEST.BATCH_SIZE": 1,
        "DATALOADER.NUM_WORKERS": 0, "DATALOADER.PIN_MEMORY": False, "OUTPUT_DIR": out_dir, "SEED": 3,
    }
    opts.update(extra)
    return [str(x) for kv in opts.items() for x in kv]


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


PYTHON = sys.executable


def run_tool(script: str, *args: str, timeout: float = 300) -> str:
    """Run ``tools/<script>`` as a user would and return its stdout; the CLI must exit 0."""
    import subprocess

    proc = subprocess.run([PYTHON, str(REPO / "tools" / script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
