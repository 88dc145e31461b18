"""Video-level metrics: top-k accuracy and mean class accuracy (mean of per-class recall).

Label ``-1`` means "no ground truth" (e.g. a ``Predictor`` over unlabelled files): such videos are left
out of every metric here (:func:`labelled`); all other labels must be in ``[0, K)``.
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch

__all__ = [
    "topk_correct",
    "topk_accuracy",
    "mean_class_accuracy",
    "confusion_matrix",
    "classification_metrics",
    "labelled",
]

NO_LABEL = -1


def labelled(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,) bool: labels that are not ``-1``. Any other label outside ``[0, num_classes)`` raises."""
    labels = labels.long()
    bad = ((labels < 0) & (labels != NO_LABEL)) | (labels >= num_classes)
    if bool(bad.any()):
        wrong = sorted(set(labels[bad].tolist()))[:10]
        raise ValueError(f"labels {wrong} are outside [0, {num_classes}) and not -1 (no ground truth)")
    return labels != NO_LABEL


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean (N,) whether the label is among the ``k`` highest scores (k clipped to the class count)."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (top == labels.view(-1, 1)).any(dim=1)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> Dict[int, float]:
    """Fraction of the labelled videos whose label is in the top k (NaN when none is labelled)."""
    keep = labelled(labels, scores.shape[1])
    scores, labels = scores[keep], labels[keep]
    if len(labels) == 0:
        return {k: float("nan") for k in ks}
    return {k: topk_correct(scores, labels, k).float().mean().item() for k in ks}


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts, rows = true class, columns = predicted class (label ``-1`` left out)."""
    keep = labelled(labels, num_classes)
    idx = labels.long()[keep] * num_classes + pred.long()[keep]
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
    """``top1``, ``top5`` and ``mean_class_acc`` of (N, K) video scores over the labelled videos."""
    keep = labelled(labels, scores.shape[1])
    scores, labels = scores[keep], labels[keep]
    acc = topk_accuracy(scores, labels, (1, 5))
    pred = scores.argmax(dim=1) if len(labels) else labels
    return {"top1": acc[1], "top5": acc[5], "mean_class_acc": mean_class_accuracy(pred, labels, scores.shape[1])}
