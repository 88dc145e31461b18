"""Video data: list files, decoding (decord / PyAV / frame folders), sampling, transforms, datasets.

Names are imported lazily so that ``cgd_video.data.lists`` stays light (no torch, decord or PyAV).
"""

from importlib import import_module

_EXPORTS = {
    "VideoDecodeError": "decoding",
    "open_video": "decoding",
    "read_clip": "decoding",
    "TrainClipDataset": "datasets",
    "MultiViewTestDataset": "test_views",
    "VideoRecord": "lists",
    "read_video_list": "lists",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"cgd_video.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cgd_video.data' has no attribute {name!r}")
