"""Small utilities: atomic file writes (:mod:`cgd_video.utils.atomic`) and logging (:mod:`cgd_video.utils.logging`)."""

from cgd_video.utils.atomic import atomic_torch_save, atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_torch_save"]
