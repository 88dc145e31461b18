"""Multi-view video evaluation (Sec. 4.1, PROTOCOL.md §5): video score = mean of per-view softmax.

One path scores every video, whoever asks (``tools/test.py``, training validation, ``tools/infer.py``,
``Predictor.predict`` / ``predict_many`` / ``timeline``):

* the views come from :class:`cgd_video.data.test_views.MultiViewTestDataset` (uint8, decoded once),
  batched by :func:`cgd_video.data.test_views.collate_views`;
* :func:`score_videos` runs them through :func:`video_scores` -- the paper's formula, ``(B, V, ...)``
  views -> ``(B, K)`` video scores, uint8 views normalised on the model's device first
  (:func:`cgd_video.data.transforms.normalize_views`) -- and yields one :class:`VideoScore` per video,
  with its path, label and, for a video that could not be decoded, the reason instead of scores;
* :func:`evaluate` collects them in dataset order and computes the metrics. Under torchrun each rank
  takes indices ``rank::world`` (no sampler padding, so no duplicates and none lost) and the per-video
  results are gathered by index, so every rank returns exactly the single-process result.

Metrics (:func:`eval_metrics`) are reported twice: over the decoded videos with a label (``*_decoded``)
and with every undecodable labelled video counted as a wrong prediction (``*_failed_as_wrong``, the
leaderboard convention); ``failed_as_wrong`` picks which one ``top1``/``top5``/``mean_class_acc`` are.
Label ``-1`` (no ground truth) is scored but left out of both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from cgd_video.data.test_views import collate_views
from cgd_video.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_views
from cgd_video.engine import distributed as du
from cgd_video.engine.metrics import classification_metrics, labelled, topk_correct
from cgd_video.runtime import autocast_context

__all__ = ["EvalResult", "VideoScore", "eval_metrics", "evaluate", "score_videos", "video_scores"]

METRIC_NAMES = ("top1", "top5", "mean_class_acc")


@dataclass
class EvalResult:
    """Per-video results in dataset order.

    ``scores``: (N, K) float32 mean softmax per video (rows of failed videos are NaN);
    ``labels``: (N,) int64, ``-1`` where there is no ground truth; ``ok``: (N,) bool (decoded);
    ``paths``: the N video paths; ``errors``: {index: reason} of failed videos; ``metrics``: see
    :func:`eval_metrics`, plus num_videos/num_failed/num_unlabeled/num_scored.
    """

    scores: torch.Tensor
    labels: torch.Tensor
    ok: torch.Tensor
    paths: List[str]
    errors: Dict[int, str] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)

    @property
    def scored(self) -> torch.Tensor:
        """(N,) bool: the videos the decoded-only metrics are over (decoded and labelled)."""
        return self.ok & (self.labels >= 0)


@dataclass
class VideoScore:
    """One video's outcome: ``scores`` (K,) float32, or ``None`` with the reason in ``error``."""

    index: int
    path: str
    label: int
    scores: Optional[torch.Tensor]
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.scores is not None


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
    device = torch.device(next(model.parameters()).device if device is None else device)
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


def score_videos(
    model: nn.Module,
    dataset,
    indices: Optional[Sequence[int]] = None,
    batch_size: int = 1,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    amp: str = "none",
    channels_last: bool = False,
) -> Iterator[VideoScore]:
    """Yield a :class:`VideoScore` for each item of ``dataset`` (a ``MultiViewTestDataset``; ``indices``:
    only those items), in order. Items are decoded by ``num_workers`` DataLoader processes and scored
    ``batch_size`` at a time by :func:`video_scores` (normalised with the dataset's ``mean``/``std``);
    only decoded videos reach the model. ``model`` is used as it is (put it in eval mode first)."""
    device = torch.device(next(model.parameters()).device if device is None else device)
    loader = DataLoader(
        dataset if indices is None else Subset(dataset, list(indices)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_views,
        pin_memory=device.type == "cuda",
        # own generator: creating the iterator must not consume the global RNG (exact resume)
        generator=torch.Generator().manual_seed(0),
    )
    mean = tuple(getattr(dataset, "mean", IMAGENET_MEAN))
    std = tuple(getattr(dataset, "std", IMAGENET_STD))
    for batch in loader:
        good = [j for j, ok in enumerate(batch["ok"]) if ok]
        views = batch["views"] if len(good) == len(batch["ok"]) else batch["views"][good]  # no copy when all decoded
        probs = video_scores(model, views, mean, std, device, amp, channels_last) if good else None
        for j, idx in enumerate(batch["index"]):
            scores = probs[good.index(j)] if j in good else None
            error = "" if scores is not None else (batch["error"][j] or "unknown decoding error")
            yield VideoScore(idx, batch["path"][j], int(batch["label"][j]), scores, error)


def eval_metrics(scores: torch.Tensor, labels: torch.Tensor, ok: torch.Tensor,
                 failed_as_wrong: bool = False) -> Dict[str, float]:
    """``top1``/``top5``/``mean_class_acc`` both over the decoded labelled videos (``*_decoded``) and with
    undecodable labelled videos counted as wrong (``*_failed_as_wrong``: a failed video is in every
    denominator, never in a numerator); the plain keys repeat the set ``failed_as_wrong`` selects."""
    k = scores.shape[1]
    lab = labelled(labels, k)  # any label outside [0, K) other than -1 raises
    decoded = classification_metrics(scores[ok & lab], labels[ok & lab])
    n = int(lab.sum())
    if n == 0:
        failed = {name: float("nan") for name in METRIC_NAMES}
    else:
        sc, lb = scores[ok & lab], labels[ok & lab]
        hits = torch.bincount(lb[sc.argmax(dim=1) == lb], minlength=k).double() if len(lb) else torch.zeros(k)
        support = torch.bincount(labels[lab], minlength=k).double()
        present = support > 0
        failed = {"top1": topk_correct(sc, lb, 1).sum().item() / n, "top5": topk_correct(sc, lb, 5).sum().item() / n,
                  "mean_class_acc": (hits[present] / support[present]).mean().item()}
    out = {f"{name}_decoded": decoded[name] for name in METRIC_NAMES}
    out.update({f"{name}_failed_as_wrong": failed[name] for name in METRIC_NAMES})
    out.update(failed if failed_as_wrong else decoded)
    return out


def _gather(mine: List[VideoScore], n: int, num_classes: int) -> EvalResult:
    """Every rank's :class:`VideoScore` list -> one :class:`EvalResult` in dataset order (each index once)."""
    scores = torch.full((n, num_classes), float("nan"))
    labels = torch.full((n,), -1, dtype=torch.long)
    ok = torch.zeros(n, dtype=torch.bool)
    paths: List[str] = [""] * n
    errors: Dict[int, str] = {}
    seen = torch.zeros(n, dtype=torch.long)
    for part in du.all_gather_objects(mine):
        for v in part:
            if v.ok:
                scores[v.index] = v.scores.float()
            else:
                errors[v.index] = v.error
            labels[v.index], ok[v.index], paths[v.index] = v.label, v.ok, v.path
            seen[v.index] += 1
    if not bool((seen == 1).all()):
        raise RuntimeError(f"evaluation covered {int((seen > 0).sum())} of {n} videos exactly once: sharding bug")
    return EvalResult(scores, labels, ok, paths, dict(sorted(errors.items())))


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
    failed_as_wrong: bool = False,
    progress: bool = True,
    desc: str = "test",
) -> EvalResult:
    """Score every video of ``dataset`` with ``model`` (switched to eval mode; restored afterwards).

    Each batch holds ``batch_size`` videos x V uint8 views, scored by :func:`score_videos` on
    ``device``. Videos with label ``-1`` are scored and returned but left out of the metrics
    (``metrics["num_unlabeled"]`` counts them); ``failed_as_wrong`` picks the headline metrics
    (:func:`eval_metrics`).
    """
    rank, world, n = du.get_rank(), du.get_world_size(), len(dataset)
    was_training = model.training
    model.eval()
    mine: List[VideoScore] = []
    bar = tqdm(total=n, desc=desc, unit="video", disable=not progress or rank != 0, dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        for v in score_videos(model, dataset, du.shard_indices(n, rank, world), batch_size, num_workers,
                              device, amp, channels_last):
            mine.append(v)
            bar.update(world)  # all ranks advance at about the same pace
            bar.set_postfix(videos_per_s=f"{bar.n / max(time.perf_counter() - t0, 1e-9):.2f}", refresh=False)
    finally:
        bar.close()
        model.train(was_training)
    result = _gather(mine, n, num_classes)
    result.metrics = eval_metrics(result.scores, result.labels, result.ok, failed_as_wrong)
    result.metrics.update(num_videos=n, num_failed=int((~result.ok).sum()),
                          num_unlabeled=int((result.labels < 0).sum()), num_scored=int(result.scored.sum()))
    return result
