"""Multi-view video evaluation (Sec. 4.1, PROTOCOL.md §5): video score = mean of per-view softmax.

:func:`video_scores` is that formula: ``(B, V, ...)`` views -> ``(B, K)`` video scores (uint8 views are
normalised on the model's device first, :func:`cgd_video.data.transforms.normalize_views`); the
evaluator, training validation and the ``Predictor`` all score through it.
:func:`evaluate` runs a model over a ``MultiViewTestDataset`` (``ds[i] -> dict(views uint8 (V,3,T,S,S),
label, index, ok, error)``) and returns per-video scores in dataset order plus metrics over the decoded
videos that have a label (label ``-1``: no ground truth, scored but left out of the metrics). Under
torchrun each rank takes indices ``rank::world`` (no sampler padding, so no duplicates and none lost)
and the per-video scores are gathered by index, so every rank returns exactly the single-process result.
:func:`write_test_outputs` writes ``test_results.json``, ``predictions.csv`` and a confusion matrix PNG.
"""

from __future__ import annotations

import csv
import io
import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from cgd_video.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_views
from cgd_video.engine import distributed as du
from cgd_video.engine.metrics import classification_metrics, confusion_matrix
from cgd_video.runtime import autocast_context  # re-exported: callers move to cgd_video.runtime
from cgd_video.utils.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["EvalResult", "evaluate", "autocast_context", "video_scores", "write_test_outputs"]


@dataclass
class EvalResult:
    """Per-video results in dataset order.

    ``scores``: (N, K) float32 mean softmax per video (rows of failed videos are NaN);
    ``labels``: (N,) int64, ``-1`` where there is no ground truth; ``ok``: (N,) bool (decoded);
    ``errors``: {index: reason} of failed videos; ``metrics``: top1/top5/mean_class_acc over the decoded
    videos with a label (:attr:`scored`), plus num_videos/num_failed/num_unlabeled/num_scored.
    """

    scores: torch.Tensor
    labels: torch.Tensor
    ok: torch.Tensor
    errors: Dict[int, str] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)

    @property
    def scored(self) -> torch.Tensor:
        """(N,) bool: the videos the metrics are over (decoded and labelled)."""
        return self.ok & (self.labels >= 0)


def _collate(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "views": torch.stack([it["views"] for it in items]),
        "label": torch.tensor([int(it["label"]) for it in items]),
        "index": torch.tensor([int(it["index"]) for it in items]),
        "ok": torch.tensor([bool(it["ok"]) for it in items]),
        "error": [str(it.get("error", "")) for it in items],
    }


@torch.no_grad()
def video_scores(
    model: nn.Module,
    views: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str | None = None,
    amp: str = "none",
    channels_last: bool = False,
) -> torch.Tensor:
    """``(B, K)`` float32 video scores on the CPU: the mean over each video's V views of the softmax of
    ``model``'s logits (paper Sec. 4.1: "averaging the softmax scores").

    ``views`` is ``(B, V, 3, T, S, S)``: uint8 as ``MultiViewTestDataset`` gives them (moved to
    ``device`` as uint8, then normalised there with ``mean``/``std`` by
    :func:`cgd_video.data.transforms.normalize_views`), or float already normalised (used as given;
    ``mean``/``std`` ignored). The model sees all ``B * V`` views in one ``(B*V, 3, T, S, S)`` batch,
    clip-major within each video. ``device=None``: the model's device. ``model`` is used as it is (put it
    in eval mode first).
    """
    if views.dim() != 6 or views.shape[2] != 3:
        raise ValueError(f"views must be (B, V, 3, T, S, S), got {tuple(views.shape)}")
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    b, v = views.shape[:2]
    if views.dtype == torch.uint8:
        clips = normalize_views(views, mean, std, device, channels_last)
    else:
        clips = views.flatten(0, 1).to(device, non_blocking=True)
        if channels_last:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
    with autocast_context(device, amp):
        logits = model(clips)
    return logits.float().softmax(dim=1).view(b, v, -1).mean(dim=1).cpu()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset,
    num_classes: int,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    amp: str = "none",
    channels_last: bool = False,
    progress: bool = True,
    desc: str = "test",
) -> EvalResult:
    """Score every video of ``dataset`` with ``model`` (switched to eval mode; restored afterwards).

    Each batch holds ``batch_size`` videos x V uint8 views, scored by :func:`video_scores` (normalised
    on ``device`` with the dataset's ``mean``/``std``). Videos with label ``-1`` are scored and returned
    but left out of the metrics (``metrics["num_unlabeled"]`` counts them).
    """
    device = torch.device(device)
    rank, world = du.get_rank(), du.get_world_size()
    n = len(dataset)
    mine = du.shard_indices(n, rank, world)
    loader = DataLoader(
        Subset(dataset, mine),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        # own generator: creating the iterator must not consume the global RNG (exact resume)
        generator=torch.Generator().manual_seed(0),
    )
    mean = tuple(getattr(dataset, "mean", IMAGENET_MEAN))
    std = tuple(getattr(dataset, "std", IMAGENET_STD))
    was_training = model.training
    model.eval()
    out_idx: List[int] = []
    out_scores: List[torch.Tensor] = []
    out_ok: List[bool] = []
    out_labels: List[int] = []
    errors: Dict[int, str] = {}
    bar = tqdm(total=n, desc=desc, unit="video", disable=not progress or rank != 0, dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        for batch in loader:
            b = len(batch["index"])
            probs = video_scores(model, batch["views"], mean, std, device, amp, channels_last)
            for j in range(b):
                idx = int(batch["index"][j])
                ok = bool(batch["ok"][j])
                out_idx.append(idx)
                out_labels.append(int(batch["label"][j]))
                out_ok.append(ok)
                out_scores.append(probs[j] if ok else torch.full_like(probs[j], float("nan")))
                if not ok:
                    errors[idx] = batch["error"][j]
            bar.update(b * world)  # all ranks advance at about the same pace
            bar.set_postfix(videos_per_s=f"{bar.n / max(time.perf_counter() - t0, 1e-9):.2f}")
    finally:
        bar.close()
        model.train(was_training)
    part = (out_idx, torch.stack(out_scores) if out_scores else torch.zeros(0, num_classes), out_labels, out_ok, errors)
    scores = torch.full((n, num_classes), float("nan"))
    labels = torch.full((n,), -1, dtype=torch.long)
    ok = torch.zeros(n, dtype=torch.bool)
    all_errors: Dict[int, str] = {}
    seen = torch.zeros(n, dtype=torch.long)
    for idx, sc, lab, okk, err in du.all_gather_objects(part):
        if idx:
            it = torch.tensor(idx)
            scores[it] = sc.float()
            labels[it] = torch.tensor(lab)
            ok[it] = torch.tensor(okk)
            seen[it] += 1
        all_errors.update(err)
    if not bool((seen == 1).all()):
        raise RuntimeError(f"evaluation covered {int((seen > 0).sum())} of {n} videos exactly once: sharding bug")
    result = EvalResult(scores, labels, ok, dict(sorted(all_errors.items())))
    scored = result.scored
    result.metrics = classification_metrics(scores[scored], labels[scored])
    result.metrics.update(num_videos=n, num_failed=int((~ok).sum()), num_unlabeled=int((labels < 0).sum()),
                          num_scored=int(scored.sum()))
    return result


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


def write_test_outputs(
    out_dir: str | Path,
    result: EvalResult,
    paths: Sequence[str],
    classes: Sequence[str],
    views: Dict[str, int],
    checkpoint: str,
    topk: int = 5,
) -> Dict[str, Path]:
    """``test_results.json``, ``predictions.csv`` (path, label, top-k with scores) and
    ``confusion_matrix.png`` in ``out_dir``, each written atomically. Returns their paths."""
    out_dir = Path(out_dir)
    failed = [paths[i] for i in result.errors]
    summary = dict(result.metrics)
    summary.update(
        failed=[{"path": paths[i], "error": e} for i, e in result.errors.items()],
        failed_paths=failed,
        views=dict(views, per_video=views["num_clips"] * views["num_crops"]),
        checkpoint=str(checkpoint),
        metrics_over="decoded videos with a label (failed ones are listed and excluded; label -1 excluded)",
    )
    files = {"results": atomic_write_text(out_dir / "test_results.json", json.dumps(summary, indent=2) + "\n")}
    k = min(topk, len(classes))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label", "label_name", "status"] + [f"{c}{i}" for i in range(1, k + 1) for c in ("top", "score")])
    for i, p in enumerate(paths):
        lab = int(result.labels[i])
        row = [p, lab, classes[lab] if 0 <= lab < len(classes) else "", "ok" if result.ok[i] else "error"]
        if result.ok[i]:
            s, top = result.scores[i].topk(k)
            for sc, c in zip(s.tolist(), top.tolist()):
                row += [classes[c], f"{sc:.6f}"]
        else:
            row += ["", ""] * k
        w.writerow(row)
    files["predictions"] = atomic_write_text(out_dir / "predictions.csv", buf.getvalue())
    scored = result.scored
    cm = confusion_matrix(result.scores[scored].argmax(dim=1), result.labels[scored], len(classes))
    files["confusion"] = atomic_write_bytes(out_dir / "confusion_matrix.png", _confusion_png(cm, classes))
    return files
