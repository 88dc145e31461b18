"""What the benchmark scripts share: the median and p25-p75 of paired ratios, and writing their JSON."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.utils.atomic import atomic_write_text  # noqa: E402


def median_spread(values: list[float]) -> tuple[float, dict]:
    """``(median, {"p25": ..., "p75": ...})`` of per-round ratios (inclusive quartiles; one value: itself)."""
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return statistics.median(values), {"p25": q[0], "p75": q[2]}


def write_json(path: Path | None, result: dict) -> None:
    """Write ``result`` to ``path`` atomically (parents created) and say so; nothing when ``path`` is None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
