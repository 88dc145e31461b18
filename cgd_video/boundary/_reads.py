"""Which config keys a builder reads: the checkpoint compatibility keys are derived, not listed by hand.

``reads_of(builder, cfg)`` runs ``builder`` on a wrapper of the config node that records every leaf value
read through it as ``{"A.B": value}``, and returns the result and the keys it depended on: a key that
starts shaping the model or the training recipe is compared on resume without anyone adding it to a list.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

__all__ = ["reads_of"]


class _Reads:
    __slots__ = ("_node", "_prefix", "_log")

    def __init__(self, node: Any, prefix: str, log: Dict[str, Any]) -> None:
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_log", log)

    def _wrap(self, name: str, value: Any) -> Any:
        key = f"{self._prefix}{name}"
        if isinstance(value, dict):  # a sub-node (yacs CfgNode is a dict)
            return _Reads(value, key + ".", self._log)
        self._log[key] = list(value) if isinstance(value, tuple) else value
        return value

    def __getattr__(self, name: str) -> Any:
        return self._wrap(name, getattr(self._node, name))

    def get(self, name: str, default: Any = None) -> Any:
        return self._wrap(name, self._node.get(name, default))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a traced config is read-only")


def reads_of(builder: Callable[[Any], Any], cfg: Any) -> Tuple[Any, Dict[str, Any]]:
    """``builder(cfg)`` run on a traced config: ``(result, {key: value read})``."""
    log: Dict[str, Any] = {}
    return builder(_Reads(cfg, "", log)), log
