"""Video-level metrics: top-k accuracy and mean class accuracy (mean of per-class recall)."""

from __future__ import annotations

from typing import Dict, Sequence

import torch

__all__ = ["topk_correct", "topk_accuracy", "mean_class_accuracy", "confusion_matrix", "classification_metrics"]


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean (N,) whether the label is among the ``k`` highest scores (k clipped to the class count)."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (top == labels.view(-1, 1)).any(dim=1)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> Dict[int, float]:
    if len(labels) == 0:
        return {k: float("nan") for k in ks}
    return {k: topk_correct(scores, labels, k).float().mean().item() for k in ks}


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts, rows = true class, columns = predicted class."""
    idx = labels.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def mean_class_accuracy(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Mean over the classes present in ``labels`` of the fraction of their videos predicted right."""
    cm = confusion_matrix(pred, labels, num_classes).double()
    support = cm.sum(dim=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return (cm.diag()[present] / support[present]).mean().item()


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
    """``top1``, ``top5`` and ``mean_class_acc`` of (N, K) video scores."""
    acc = topk_accuracy(scores, labels, (1, 5))
    pred = scores.argmax(dim=1) if len(labels) else labels
    return {"top1": acc[1], "top5": acc[5], "mean_class_acc": mean_class_accuracy(pred, labels, scores.shape[1])}
