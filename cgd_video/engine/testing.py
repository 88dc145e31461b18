"""The multi-view test of a model (``tools/test.py``) and its output files, from plain arguments.

:func:`run_test` evaluates a ``MultiViewTestDataset`` with :func:`cgd_video.engine.evaluator.evaluate`
(video score = mean softmax over the views, Sec. 4.1), builds the summary once (:func:`results_summary`)
and writes, from rank 0 only, ``test_results.json``, ``predictions.csv`` and ``confusion_matrix.png``
(:func:`write_test_outputs`, each atomically). Under torchrun every rank evaluates ``rank::world``; the
summary is returned on rank 0 and ``None`` elsewhere, decided while the process group exists, so a
caller prints it exactly once. The config side (checkpoint, model, dataset, settings) is
:func:`cgd_video.boundary.evaluation.run_test_from_config`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from cgd_video.engine import distributed as du
from cgd_video.engine.evaluator import EvalResult, evaluate
from cgd_video.engine.metrics import confusion_matrix
from cgd_video.utils.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["SHORT_KEYS", "run_test", "results_summary", "write_test_outputs"]

# What tools/test.py prints: the headline metrics, both accuracies and the counts.
SHORT_KEYS = ("top1", "top5", "mean_class_acc", "top1_decoded", "top1_failed_as_wrong", "num_videos", "num_failed")


def results_summary(result: EvalResult, num_clips: int, num_crops: int, checkpoint: str,
                 failed_as_wrong: bool = False) -> Dict[str, Any]:
    """The content of ``test_results.json``: every metric (both accuracies, see
    :func:`cgd_video.engine.evaluator.eval_metrics`), the failed videos with their reasons, the views and
    the checkpoint."""
    headline = ("every labelled video, undecodable ones counted as wrong" if failed_as_wrong
                else "the decoded videos with a label (undecodable ones are listed and left out)")
    return dict(
        result.metrics,
        failed_as_wrong=bool(failed_as_wrong),
        metrics_over=f"top1/top5/mean_class_acc: {headline}; *_decoded and *_failed_as_wrong give both; "
                     "label -1 (no ground truth) is left out of every metric",
        failed=[{"path": result.paths[i], "error": e} for i, e in result.errors.items()],
        failed_paths=[result.paths[i] for i in result.errors],
        views=dict(num_clips=int(num_clips), num_crops=int(num_crops), per_video=int(num_clips) * int(num_crops)),
        checkpoint=str(checkpoint),
    )


def _predictions_csv(result: EvalResult, classes: Sequence[str], topk: int) -> str:
    k = min(topk, len(classes))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label", "label_name", "status"] + [f"{c}{i}" for i in range(1, k + 1) for c in ("top", "score")])
    for i, p in enumerate(result.paths):
        lab = int(result.labels[i])
        row = [p, lab, classes[lab] if 0 <= lab < len(classes) else "", "ok" if result.ok[i] else "error"]
        if result.ok[i]:
            s, top = result.scores[i].topk(k)
            for sc, c in zip(s.tolist(), top.tolist()):
                row += [classes[c], f"{sc:.6f}"]
        else:
            row += ["", ""] * k
        w.writerow(row)
    return buf.getvalue()


def _confusion_png(cm: torch.Tensor, classes: Sequence[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    size = min(4 + 0.35 * k, 24)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = cm.double() / cm.sum(dim=1, keepdim=True).clamp(min=1)
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if k <= 40:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(k), classes, fontsize=7)
        if k <= 15:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                                color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (rows normalised)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_test_outputs(out_dir: str | Path, summary: Dict[str, Any], result: EvalResult,
                       classes: Sequence[str], topk: int = 5) -> Dict[str, Path]:
    """``test_results.json`` (``summary``), ``predictions.csv`` (path, label, status, top-k with scores)
    and ``confusion_matrix.png`` (decoded labelled videos) in ``out_dir``, each written atomically."""
    out_dir = Path(out_dir)
    files = {"results": atomic_write_text(out_dir / "test_results.json", json.dumps(summary, indent=2) + "\n"),
             "predictions": atomic_write_text(out_dir / "predictions.csv", _predictions_csv(result, classes, topk))}
    scored = result.scored
    cm = confusion_matrix(result.scores[scored].argmax(dim=1), result.labels[scored], len(classes))
    files["confusion"] = atomic_write_bytes(out_dir / "confusion_matrix.png", _confusion_png(cm, classes))
    return files


def run_test(
    model: nn.Module,
    dataset,
    classes: Sequence[str],
    out_dir: str | Path,
    checkpoint: str,
    batch_size: int = 1,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    amp: str = "none",
    channels_last: bool = False,
    failed_as_wrong: bool = False,
    progress: bool = True,
) -> Tuple[Optional[Dict[str, Any]], EvalResult]:
    """Evaluate ``model`` on ``dataset``; rank 0 writes the outputs to ``out_dir``.

    Returns ``(summary, result)``: the ``test_results.json`` content on rank 0 (``None`` on other ranks)
    and the per-video :class:`EvalResult` (the same on every rank).
    """
    result = evaluate(model, dataset, len(classes), batch_size=batch_size, device=device, num_workers=num_workers,
                      amp=amp, channels_last=channels_last, failed_as_wrong=failed_as_wrong, progress=progress)
    summary = None
    if du.is_main_process():
        summary = results_summary(result, dataset.num_clips, dataset.num_crops, checkpoint, failed_as_wrong)
        write_test_outputs(out_dir, summary, result, classes)
    du.barrier()
    return summary, result
