"""``run_test(cfg, ckpt_path)``: the multi-view test of ``tools/test.py`` as a function.

Loads a checkpoint safely, checks that it fits the configured model, evaluates
``DATA.TEST_LIST`` with ``TEST.NUM_CLIPS`` x ``TEST.NUM_CROPS`` views (video score = mean softmax) and
writes ``test_results.json``, ``predictions.csv`` and ``confusion_matrix.png`` to ``OUTPUT_DIR``.
Under torchrun every rank evaluates ``rank::world`` and rank 0 writes the gathered results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from cgd_video.builders import build_model_from_checkpoint, build_test_dataset
from cgd_video.engine import distributed as du
from cgd_video.engine.checkpoint import load_checkpoint
from cgd_video.engine.evaluator import EvalResult, evaluate, write_test_outputs
from cgd_video.engine.trainer import last_checkpoint_path, resolve_device, set_cpu_threads

__all__ = ["default_checkpoint", "run_test"]


def default_checkpoint(cfg, ckpt: Optional[str] = None) -> Path:
    """``ckpt`` if given, else ``TEST.CHECKPOINT``, else ``OUTPUT_DIR/checkpoints/last.pt``."""
    return Path(ckpt or cfg.TEST.CHECKPOINT or last_checkpoint_path(cfg.OUTPUT_DIR))


def run_test(cfg, ckpt: Optional[str] = None, progress: bool = True) -> tuple[Dict[str, Any], EvalResult]:
    """Evaluate the checkpoint; returns (the ``test_results.json`` content, per-video :class:`EvalResult`)."""
    device = resolve_device(cfg.TRAIN.DEVICE)
    set_cpu_threads(cfg.TRAIN.CPU_THREADS)
    du.init_distributed(device.type == "cuda")
    path = default_checkpoint(cfg, ckpt)
    state = load_checkpoint(path)
    model = build_model_from_checkpoint(cfg, state, device, str(path))
    dataset = build_test_dataset(cfg, split="test")
    classes = list(state.get("classes") or [f"class_{i}" for i in range(cfg.MODEL.NUM_CLASSES)])
    result = evaluate(model, dataset, cfg.MODEL.NUM_CLASSES, batch_size=cfg.TEST.BATCH_SIZE, device=device,
                      num_workers=cfg.DATALOADER.NUM_WORKERS, amp=cfg.TRAIN.AMP,
                      channels_last=cfg.TRAIN.CHANNELS_LAST, progress=progress)
    views = {"num_clips": cfg.TEST.NUM_CLIPS, "num_crops": cfg.TEST.NUM_CROPS}
    paths = [str(dataset.items[i][0]) for i in range(len(dataset))]
    summary = dict(result.metrics, views=dict(views, per_video=views["num_clips"] * views["num_crops"]),
                   checkpoint=str(path), failed_paths=[paths[i] for i in result.errors])
    if du.is_main_process():
        write_test_outputs(cfg.OUTPUT_DIR, result, paths, classes, views, str(path))
    du.barrier()
    return summary, result
