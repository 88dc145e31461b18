"""``get_logger(name)``: one stream handler with a time stamp; quiet on non-zero torchrun ranks."""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["get_logger"]


def get_logger(name: str = "cgd_video") -> logging.Logger:
    """A logger writing ``[time name] message`` to stderr; INFO on rank 0, WARNING on other ranks."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s] %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    rank = int(os.environ.get("RANK", "0"))
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    return logger
