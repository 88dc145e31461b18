"""``Predictor``: a trained model as a Python object that labels videos.

::

    from cgd_video import Predictor
    p = Predictor.from_checkpoint("outputs/ucf/checkpoints/last.pt", device="cpu", views="10x3")
    p.predict("video.mp4")          # {'labels': [...top-k names...], 'scores': [...], 'top1_label', ...}
    for row in p.predict_many(paths):  # the rows tools/infer.py writes, in input order
        ...

Views and scores follow ``tools/test.py`` exactly, through the same code: the videos (and the windows of
:meth:`Predictor.timeline`) are read by :class:`cgd_video.data.test_views.MultiViewTestDataset` (each
decoded once, ``clips`` evenly spread x ``crops`` crops, PROTOCOL §5) and scored by
:func:`cgd_video.engine.evaluator.score_videos`: the mean of the softmax outputs of the views (paper
Sec. 4.1). A file that cannot be decoded becomes a row with ``status="error"`` and the reason; it never
stops the batch.

The constructor takes plain arguments; :meth:`Predictor.from_checkpoint` reads them from the config
stored in a checkpoint through :mod:`cgd_video.boundary.evaluation`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from cgd_video.data.decoding import DEFAULT_BACKEND, VideoDecodeError, open_video
from cgd_video.data.lists import VideoRecord
from cgd_video.data.test_views import MultiViewTestDataset, Window, video_fps
from cgd_video.data.timeline import TimelineViews, timeline_windows
from cgd_video.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cgd_video.engine.evaluator import VideoScore, score_videos, video_scores
from cgd_video.runtime import amp_dtype, resolve_device

PathLike = Union[str, os.PathLike]

__all__ = ["Predictor", "parse_views", "VIEW_PRESETS"]

VIEW_PRESETS = {"1x1": (1, 1), "10x3": (10, 3)}


def parse_views(views: Union[str, Tuple[int, int], None]) -> Tuple[int, int]:
    """``"10x3"`` -> ``(10, 3)`` (clips x crops). Crops must be 1 or 3 (PROTOCOL §5)."""
    if isinstance(views, tuple):
        clips, crops = views
    else:
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(views))
        if not m:
            raise ValueError(f"views {views!r}: expected CLIPSxCROPS, e.g. {', '.join(VIEW_PRESETS)}")
        clips, crops = int(m.group(1)), int(m.group(2))
    if clips < 1 or crops not in (1, 3):
        raise ValueError(f"views {views!r}: need >= 1 clip and 1 or 3 crops (e.g. {', '.join(VIEW_PRESETS)})")
    return clips, crops


class Predictor:
    """Scores videos with a trained model under the test protocol's views.

    Args:
        model: the recogniser, ``(N, 3, T, S, S) -> (N, K)`` logits (put in eval mode here).
        classes: ``K`` class names, in label order.
        view_kwargs: how views are made, the ``MultiViewTestDataset`` keyword arguments ``num_frames``,
            ``sampling_rate``, ``test_scale``, ``test_crop``, ``mean``, ``std``, ``backend`` (the
            model's training values; others, e.g. ``root``, ``num_clips``, ``num_crops``, are ignored).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (:func:`cgd_video.runtime.resolve_device`).
        views: ``"1x1"`` (centre clip, centre crop; default), ``"10x3"`` or any ``CLIPSxCROPS``.
        topk: how many ranked predictions each result holds (capped at ``K``).
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` (:data:`cgd_video.runtime.AMP_MODES`).
        channels_last: feed the model channels-last clips.
        batch_size: videos per forward pass (each contributes ``clips x crops`` views).
        num_workers: DataLoader decoding processes of :meth:`predict_many`.
    """

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[str],
        view_kwargs: Mapping[str, Any],
        device: Union[str, torch.device, None] = "auto",
        views: Union[str, Tuple[int, int]] = "1x1",
        topk: int = 5,
        amp: str = "none",
        channels_last: bool = False,
        batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.classes = list(classes)
        keep = ("num_frames", "sampling_rate", "test_scale", "test_crop", "mean", "std", "backend")
        self.view_kwargs = {k: view_kwargs[k] for k in keep if k in view_kwargs}
        self.num_clips, self.num_crops = parse_views(views)
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = min(int(topk), len(self.classes))
        amp_dtype(amp)  # unknown modes raise, naming the valid ones
        self.amp = amp
        self.channels_last = bool(channels_last)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)

    @classmethod
    def from_checkpoint(
        cls,
        path: PathLike,
        device: Union[str, torch.device, None] = "auto",
        cfg: Optional[PathLike] = None,
        opts: Optional[Sequence[str]] = None,
        **kwargs: Any,
    ) -> "Predictor":
        """Load a training checkpoint (config and class names come with it; ``cfg`` overrides).

        ``kwargs`` go to :class:`Predictor` (``views``, ``topk``, ``amp``, ``batch_size``, ``num_workers``);
        unset ones come from the config (:func:`cgd_video.boundary.evaluation.predictor_from_checkpoint`).
        """
        from cgd_video.boundary.evaluation import predictor_from_checkpoint  # the config side, one level up

        return predictor_from_checkpoint(path, device=device, cfg=cfg, opts=opts, **kwargs)

    # -- the data side: the same dataset tools/test.py uses ---------------------------------------
    @property
    def clip_shape(self) -> Tuple[int, int, int, int]:
        """``(3, T, S, S)`` of one view."""
        crop = int(self.view_kwargs.get("test_crop", 256))
        return (3, int(self.view_kwargs.get("num_frames", 32)), crop, crop)

    def dataset(self, paths: Sequence[PathLike], windows: Optional[Sequence[Optional[Window]]] = None):
        """A :class:`MultiViewTestDataset` over ``paths`` (label -1: unknown) with this predictor's views.
        Paths are used as given (absolute, or relative to the working directory)."""
        return MultiViewTestDataset([VideoRecord(os.fspath(p), -1) for p in paths], root=None,
                                    num_clips=self.num_clips, num_crops=self.num_crops, windows=windows,
                                    **self.view_kwargs)

    def _scores(self, dataset, num_workers: int) -> Iterator[VideoScore]:
        return score_videos(self.model, dataset, None, self.batch_size, num_workers, self.device, self.amp,
                            self.channels_last)

    # -- the model side ---------------------------------------------------------------------------
    def video_scores(self, views: torch.Tensor) -> torch.Tensor:
        """``(B, V, 3, T, S, S)`` views (uint8 from the dataset, or float already normalised) -> ``(B, K)``
        video scores: :func:`cgd_video.engine.evaluator.video_scores` (the mean of the V views' softmax,
        paper Sec. 4.1) with this predictor's device, AMP, memory format and mean/std."""
        mean = tuple(self.view_kwargs.get("mean", IMAGENET_MEAN))
        std = tuple(self.view_kwargs.get("std", IMAGENET_STD))
        return video_scores(self.model, views, mean, std, self.device, self.amp, self.channels_last)

    def ranked(self, scores: torch.Tensor) -> Dict[str, Any]:
        """Top-k names and scores of one ``(K,)`` score vector."""
        values, indices = scores.topk(self.topk)
        labels = [self.classes[i] for i in indices.tolist()]
        probs = [float(s) for s in values.tolist()]
        return {"top1_label": labels[0], "top1_score": probs[0], "labels": labels, "scores": probs}

    def predict(self, video: Union[PathLike, torch.Tensor]) -> Dict[str, Any]:
        """Top-k ``labels`` and ``scores`` (plus ``top1_label``/``top1_score``) of one video.

        ``video`` is a file path (decoded with this predictor's views; raises ``VideoDecodeError`` when
        it cannot be read), or a tensor: one clip ``(3, T, S, S)`` or the views of one video
        ``(V, 3, T, S, S)``, whose softmax outputs are averaged. A uint8 tensor holds raw pixels
        (normalised here with the view mean/std, like the dataset's views); any other dtype is taken as
        already normalised.
        """
        if isinstance(video, torch.Tensor):
            if video.dim() == 4:
                video = video.unsqueeze(0)
            if video.dim() != 5 or video.shape[1] != 3:
                raise ValueError(
                    f"tensor input must be (3, T, S, S) or (V, 3, T, S, S), got {tuple(video.shape)}"
                )
            if video.dtype != torch.uint8:
                video = video.float()
            return self.ranked(self.video_scores(video.unsqueeze(0))[0])
        (v,) = self._scores(self.dataset([video]), num_workers=0)
        if not v.ok:
            raise VideoDecodeError(video, v.error)
        return self.ranked(v.scores)

    def predict_many(
        self,
        paths: Iterable[PathLike],
        num_workers: Optional[int] = None,
        timeline: Optional[float] = None,
    ) -> Iterator[Dict[str, Any]]:
        """Yield one result row per path, in input order: the rows ``tools/infer.py`` writes.

        Row keys: ``path``, ``status`` (``"ok"``/``"error"``), ``error`` (reason, ``""`` when ok),
        ``top1_label``, ``top1_score``, ``labels``, ``scores`` (top-k, best first); with ``timeline``
        (seconds) also ``timeline``: per-window scores, see :meth:`timeline`. Videos are decoded in
        ``num_workers`` DataLoader processes and scored ``batch_size`` videos at a time.
        """
        paths = [Path(p) for p in paths]
        if not paths:
            return
        workers = self.num_workers if num_workers is None else int(num_workers)
        for v in self._scores(self.dataset(paths), workers):
            row: Dict[str, Any] = {"path": str(paths[v.index]), "status": "error", "error": v.error,
                                   "top1_label": "", "top1_score": None, "labels": [], "scores": []}
            if v.ok:
                row.update(status="ok", error="", **self.ranked(v.scores))
                if timeline:
                    row["timeline"] = self._safe_timeline(paths[v.index], timeline, row)
            yield row

    def _safe_timeline(self, path: Path, seconds: float, row: Dict[str, Any]) -> List[Dict[str, Any]]:
        try:
            return self.timeline(path, seconds)
        except VideoDecodeError as e:  # one bad file never stops the batch: report it in the row
            row["error"] = f"timeline failed: {e}"
            return []

    # -- long videos ------------------------------------------------------------------------------
    def timeline(self, path: PathLike, seconds: float) -> List[Dict[str, Any]]:
        """Per-window scores of a long video: consecutive windows of ``seconds`` seconds.

        Each window is scored like a short video, through the same dataset and scoring code: its
        ``num_clips`` clips evenly spread over the window's frames x ``num_crops`` crops, softmax
        averaged. Windows tile the video from frame 0 (:func:`cgd_video.data.timeline.timeline_windows`),
        and the video is decoded once for all of them (:class:`~cgd_video.data.timeline.TimelineViews`);
        a video shorter than one window gives one window, scored exactly like :meth:`predict`. Times use
        the container's fps (25 when it reports none). Raises ``VideoDecodeError`` when a window cannot
        be read. Returns ``[{"start": s, "end": s, "top1_label", "top1_score", "labels", "scores"}, ...]``.
        """
        reader = open_video(path, self.view_kwargs.get("backend", DEFAULT_BACKEND))
        fps = video_fps(reader)
        windows = timeline_windows(int(reader.num_frames), fps, seconds)
        out: List[Dict[str, Any]] = []
        for v in self._scores(TimelineViews(self.dataset([path] * len(windows), windows)), num_workers=0):
            if not v.ok:
                raise VideoDecodeError(path, v.error)
            start, length = windows[v.index]
            out.append({"start": round(start / fps, 3), "end": round((start + length) / fps, 3),
                        **self.ranked(v.scores)})
        return out
