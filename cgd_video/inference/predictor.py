"""``Predictor``: a trained checkpoint as a Python object that labels videos.

::

    from cgd_video import Predictor
    p = Predictor.from_checkpoint("outputs/ucf/checkpoints/last.pt", device="cpu", views="10x3")
    p.predict("video.mp4")          # {'labels': [...top-k names...], 'scores': [...], 'top1_label', ...}
    for row in p.predict_many(paths):  # the rows tools/infer.py writes, in input order
        ...

Views and scores follow ``tools/test.py`` exactly, through the same code: the videos are read by
:class:`cgd_video.data.datasets.MultiViewTestDataset` (each video decoded once, ``NUM_CLIPS`` clips
evenly spread x ``NUM_CROPS`` crops, PROTOCOL §5), and a video's score is the mean of the softmax
outputs of its views (paper Sec. 4.1), as computed by the evaluator. A file that cannot be decoded
becomes a row with ``status="error"`` and the reason; it never stops the batch.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

PathLike = Union[str, os.PathLike]

__all__ = ["Predictor", "load_model_from_checkpoint", "parse_views", "resolve_device"]

logger = logging.getLogger(__name__)

AMP_MODES = ("none", "bf16", "fp16")  # TRAIN.AMP values; see engine.evaluator.autocast_context
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


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """``None``/``"auto"`` -> cuda when available, else cpu; ``"cuda"`` without a GPU raises."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} requested but CUDA is not available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r}: choose one of cpu, cuda, auto")
    return dev


def _class_names(ckpt: Dict[str, Any], cfg, path: PathLike) -> List[str]:
    """Class names from the checkpoint, else from ``DATA.CLASSES``; their count must match the model."""
    classes = list(ckpt.get("classes") or [])
    if not classes and cfg.DATA.CLASSES and Path(cfg.DATA.CLASSES).is_file():
        from cgd_video.data.lists import read_classes

        classes = read_classes(cfg.DATA.CLASSES)
    num_classes = int(cfg.MODEL.NUM_CLASSES)
    if not classes:
        logger.warning("%s stores no class names and DATA.CLASSES is unset: naming them class_<i>", path)
        classes = [f"class_{i}" for i in range(num_classes)]
    if len(classes) != num_classes:
        raise ValueError(
            f"{path}: {len(classes)} class names but MODEL.NUM_CLASSES={num_classes}; "
            "give the matching DATA.CLASSES file"
        )
    return classes


def load_model_from_checkpoint(
    ckpt_path: PathLike,
    cfg_path: Optional[PathLike] = None,
    opts: Optional[Sequence[str]] = None,
    device: Union[str, torch.device] = "cpu",
):
    """``(model, cfg, classes)`` from a training checkpoint, the model in eval mode on ``device``.

    The config is the one stored in the checkpoint unless ``cfg_path`` (a file or a name in
    ``configs/``) is given; ``opts`` are ``KEY VALUE`` overrides. Loading is ``weights_only=True`` and
    the model must fit the checkpoint (architecture keys compared, differing keys named).
    """
    from cgd_video.builders import build_model_from_checkpoint
    from cgd_video.config import load_config, load_config_from_yaml_string
    from cgd_video.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpt_path, map_location="cpu")
    if cfg_path:
        cfg = load_config(cfg_path, opts)
    elif ckpt.get("cfg"):
        cfg = load_config_from_yaml_string(ckpt["cfg"], opts)
    else:
        raise ValueError(f"{ckpt_path} stores no config; pass --cfg with the config it was trained with")
    classes = _class_names(ckpt, cfg, ckpt_path)
    model = build_model_from_checkpoint(cfg, ckpt, resolve_device(device), str(ckpt_path))
    return model, cfg, classes


def _collate(batch: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack views; keep the per-video metadata as lists (errors and paths are strings)."""
    return {
        "views": torch.stack([b["views"] for b in batch]),
        "ok": [bool(b["ok"]) for b in batch],
        "error": [str(b.get("error") or "") for b in batch],
        "index": [int(b["index"]) for b in batch],
    }


class Predictor:
    """Scores videos with a trained model under the test protocol's views.

    Args:
        model: the recogniser, ``(N, 3, T, S, S) -> (N, K)`` logits (put in eval mode here).
        cfg: the config it was trained with (``DATA.*`` give frames, sampling, scale, crop, mean/std).
        classes: ``K`` class names, in label order.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        views: ``"1x1"`` (centre clip, centre crop; default), ``"10x3"`` or any ``CLIPSxCROPS``.
        topk: how many ranked predictions each result holds (capped at ``K``).
        amp: ``"none"``, ``"bf16"`` or ``"fp16"``; ``None`` takes ``TRAIN.AMP`` from the config. Used on
            CUDA only (CPU runs in float32).
        batch_size: videos per forward pass (each contributes ``clips x crops`` views); ``None``: ``TEST.BATCH_SIZE``.
        num_workers: DataLoader decoding processes; ``None``: ``DATALOADER.NUM_WORKERS``.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg,
        classes: Sequence[str],
        device: Union[str, torch.device, None] = "auto",
        views: Union[str, Tuple[int, int]] = "1x1",
        topk: int = 5,
        amp: Optional[str] = None,
        batch_size: Optional[int] = None,
        num_workers: Optional[int] = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.cfg = cfg
        self.classes = list(classes)
        self.num_clips, self.num_crops = parse_views(views)
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = min(int(topk), len(self.classes))
        amp = cfg.TRAIN.AMP if amp is None else amp
        if amp not in AMP_MODES:
            raise ValueError(f"amp {amp!r}: choose one of {', '.join(AMP_MODES)}")
        self.amp = amp if self.device.type == "cuda" else "none"
        self.channels_last = bool(cfg.TRAIN.CHANNELS_LAST) and self.device.type == "cuda"
        self.batch_size = int(batch_size or cfg.TEST.BATCH_SIZE)
        self.num_workers = int(cfg.DATALOADER.NUM_WORKERS if num_workers is None else num_workers)

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

        ``kwargs`` go to :class:`Predictor` (``views``, ``topk``, ``amp``, ``batch_size``, ``num_workers``).
        """
        dev = resolve_device(device)
        model, config, classes = load_model_from_checkpoint(path, cfg, opts, dev)
        return cls(model, config, classes, device=dev, **kwargs)

    # -- the data side: the same dataset tools/test.py uses ---------------------------------------
    @property
    def clip_shape(self) -> Tuple[int, int, int, int]:
        """``(3, T, S, S)`` of one view."""
        crop = int(self.cfg.DATA.TEST_CROP)
        return (3, int(self.cfg.DATA.NUM_FRAMES), crop, crop)

    def dataset(self, paths: Sequence[PathLike]):
        """A :class:`MultiViewTestDataset` over ``paths`` (label -1: unknown) with this predictor's views."""
        from cgd_video.builders import test_dataset_kwargs
        from cgd_video.data.test_views import MultiViewTestDataset
        from cgd_video.data.lists import VideoRecord

        kwargs = test_dataset_kwargs(self.cfg, self.num_clips, self.num_crops)
        kwargs["root"] = None  # paths are used as given (absolute, or relative to the working directory)
        return MultiViewTestDataset([VideoRecord(os.fspath(p), -1) for p in paths], **kwargs)

    # -- the model side ---------------------------------------------------------------------------
    def video_scores(self, views: torch.Tensor) -> torch.Tensor:
        """``(B, V, 3, T, S, S)`` views (uint8 from the dataset, or float already normalised) -> ``(B, K)``
        video scores: :func:`cgd_video.engine.evaluator.video_scores` (the mean of the V views' softmax,
        paper Sec. 4.1) with this predictor's device, AMP, memory format and ``DATA.MEAN``/``DATA.STD``."""
        from cgd_video.engine.evaluator import video_scores

        d = self.cfg.DATA
        return video_scores(self.model, views, tuple(d.MEAN), tuple(d.STD), self.device, self.amp,
                            self.channels_last)

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
        (normalised here with ``DATA.MEAN``/``DATA.STD``, like the dataset's views); any other dtype is
        taken as already normalised.
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
        from cgd_video.data.decoding import VideoDecodeError

        item = self.dataset([video])[0]
        if not item["ok"]:
            raise VideoDecodeError(video, item["error"])
        return self.ranked(self.video_scores(item["views"].unsqueeze(0))[0])

    def _loader(self, paths: Sequence[PathLike], num_workers: int):
        return torch.utils.data.DataLoader(
            self.dataset(paths),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
        )

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
        for batch in self._loader(paths, workers):
            ok = [i for i, flag in enumerate(batch["ok"]) if flag]
            scores = self.video_scores(batch["views"][ok]) if ok else None
            for j, idx in enumerate(batch["index"]):
                row: Dict[str, Any] = {"path": str(paths[idx]), "status": "error", "error": batch["error"][j],
                                       "top1_label": "", "top1_score": None, "labels": [], "scores": []}
                if j in ok:
                    row.update(status="ok", error="", **self.ranked(scores[ok.index(j)]))
                    if timeline:
                        row["timeline"] = self._safe_timeline(paths[idx], timeline, row)
                elif not row["error"]:
                    row["error"] = "unknown decoding error"
                yield row

    def _safe_timeline(self, path: Path, seconds: float, row: Dict[str, Any]) -> List[Dict[str, Any]]:
        try:
            return self.timeline(path, seconds)
        except Exception as e:  # noqa: BLE001 - one bad file never stops the batch: report it in the row
            row["error"] = f"timeline failed: {e}"
            return []

    # -- long videos ------------------------------------------------------------------------------
    def timeline(self, path: PathLike, seconds: float) -> List[Dict[str, Any]]:
        """Per-window scores of a long video: consecutive windows of ``seconds`` seconds.

        Each window is scored like a short video: its ``num_clips`` clips evenly spread over the window
        (the test protocol's rule, applied to the window's frames) x ``num_crops`` crops, softmax
        averaged. Windows tile the video from frame 0; when frames are left over, a last window ends at
        the last frame (overlapping the one before). A video shorter than one window gives one window,
        scored exactly like :meth:`predict`. Times use the container's fps (25 when it reports none).
        Returns ``[{"start": s, "end": s, "top1_label", "top1_score", "labels", "scores"}, ...]``, seconds.
        """
        from cgd_video.data import sampling
        from cgd_video.data.decoding import open_video, read_clip
        from cgd_video.data.transforms import test_crops

        if seconds <= 0:
            raise ValueError(f"timeline window must be > 0 seconds, got {seconds}")
        d = self.cfg.DATA
        reader = open_video(path, d.BACKEND)
        fps = float(reader.fps) if reader.fps and reader.fps > 0 else 25.0
        total = int(reader.num_frames)
        win = max(1, int(round(seconds * fps)))
        starts = list(range(0, max(total - win, 0) + 1, win))
        if starts[-1] + win < total:  # frames left over: one more window, aligned to the video's end
            starts.append(max(total - win, 0))
        out: List[Dict[str, Any]] = []
        for s in starts:
            length = min(win, total - s)
            idx = sampling.test_clip_indices(length, d.NUM_FRAMES, d.SAMPLING_RATE, self.num_clips) + s

            def indices(_: int, idx=idx):
                return idx.reshape(-1).tolist()

            frames = read_clip(reader, indices)
            frames = frames.reshape(self.num_clips, int(d.NUM_FRAMES), *frames.shape[1:])
            views = torch.cat([test_crops(f, d.TEST_SCALE, d.TEST_CROP, self.num_crops) for f in frames])  # uint8
            entry = {"start": round(s / fps, 3), "end": round((s + length) / fps, 3)}
            entry.update(self.ranked(self.video_scores(views.unsqueeze(0))[0]))
            out.append(entry)
        return out
