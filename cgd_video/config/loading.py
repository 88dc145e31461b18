"""Config loading: defaults <- YAML (with ``_BASE_`` chains) <- ``KEY VALUE`` command-line pairs.

Strict: an unknown key, in a file or on the command line, raises :class:`ConfigError` naming the key
(and the file) and suggesting the closest valid key (difflib); a value whose type does not match the
default raises naming the key, the expected and the given type. ``_BASE_`` paths are resolved relative
to the file that names them and may be a string or a list (merged in order, then the file itself).
"""

from __future__ import annotations

import ast
import difflib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml
from yacs.config import CfgNode as CN

from cgd_video.config.defaults import get_cfg_defaults

__all__ = ["ConfigError", "load_config", "load_config_from_yaml_string", "merge_opts", "resolve_config_path", "list_configs", "config_dir", "cfg_to_yaml"]

BASE_KEY = "_BASE_"


class ConfigError(ValueError):
    """A bad config file, key or value; the message names the key (and file) and the valid choices."""


def config_dir() -> Path:
    """The repository's ``configs/`` folder (``$CGD_VIDEO_CONFIGS`` overrides)."""
    env = os.environ.get("CGD_VIDEO_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "configs"


def list_configs() -> list[str]:
    """Config files in :func:`config_dir`, relative to it, sorted (``base/`` helpers included)."""
    root = config_dir()
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.yaml"))


def resolve_config_path(name: str | os.PathLike) -> Path:
    """``name`` as written if it is an existing file, else looked up in ``configs/`` (``.yaml`` optional).

    Raises :class:`ConfigError` listing the available configs when it is in neither place.
    Shared by ``tools/train.py``, ``tools/test.py`` and ``tools/infer.py``.
    """
    p = Path(name)
    if p.is_file():
        return p
    root = config_dir()
    candidates = [root / p, root / f"{p}.yaml", root / p.name, root / f"{p.name}.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    available = [c for c in list_configs() if not c.startswith("base" + os.sep)]
    close = difflib.get_close_matches(p.name, [Path(a).name for a in available], n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"config {str(name)!r} is neither an existing file nor a file in {root}.{hint}\n"
        f"Available configs: {', '.join(available) if available else '(none)'}"
    )


def _read_yaml_with_bases(path: Path, _chain: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(str(p) for p in _chain + (path,))
        raise ConfigError(f"{BASE_KEY} cycle: {cycle}")
    if not path.is_file():
        where = f" (named in {_chain[-1]})" if _chain else ""
        raise ConfigError(f"config file {path} does not exist{where}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys, got {type(data).__name__}")
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a path or a list of paths, got {bases!r}")
    merged: dict = {}
    for b in bases:
        bp = Path(b) if os.path.isabs(b) else path.parent / b
        _deep_update(merged, _read_yaml_with_bases(bp, _chain + (path,)))
    _deep_update(merged, data)
    return merged


def _deep_update(dst: dict, src: Mapping) -> dict:
    for k, v in src.items():
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = dict(v) if isinstance(v, Mapping) else v
    return dst


def _all_keys(node: CN, prefix: str = "") -> list[str]:
    out = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        out.append(full)
        if isinstance(v, CN):
            out.extend(_all_keys(v, full + "."))
    return out


def _unknown_key_error(full_key: str, root: CN, source: str) -> ConfigError:
    keys = _all_keys(root)
    close = difflib.get_close_matches(full_key, keys, n=1, cutoff=0.0)
    # Also try the last component alone (e.g. "SOLVER.LR_BASE" vs "SOLVER.BASE_LR").
    leaf = full_key.split(".")[-1]
    leaf_close = difflib.get_close_matches(leaf, [k.split(".")[-1] for k in keys], n=1, cutoff=0.6)
    suggestion = close[0] if close else None
    if leaf_close and (suggestion is None or not suggestion.endswith(leaf_close[0])):
        same_leaf = [k for k in keys if k.split(".")[-1] == leaf_close[0]]
        suggestion = difflib.get_close_matches(full_key, same_leaf, n=1, cutoff=0.0)[0]
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    return ConfigError(f"{source}: unknown config key {full_key!r}{hint}")


def _type_name(v: Any) -> str:
    return type(v).__name__


def _coerce(value: Any, default: Any, full_key: str, source: str) -> Any:
    """Check ``value`` against the default's type; accept int for float and '1e-4'-style strings."""
    bad = ConfigError(
        f"{source}: config key {full_key!r} expects {_type_name(default)} "
        f"(default {default!r}), got {_type_name(value)} {value!r}"
    )
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise bad
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise bad
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise bad
        if default:  # element type from the default's first element
            proto = default[0]
            return [_coerce(v, proto, f"{full_key}[{i}]", source) for i, v in enumerate(value)]
        return list(value)
    if default is None:
        return value
    raise bad


def _merge_dict(cfg: CN, data: Mapping, source: str, prefix: str = "", root: CN | None = None) -> None:
    root = cfg if root is None else root
    for k, v in data.items():
        full = f"{prefix}{k}"
        if not isinstance(k, str) or k not in cfg:
            raise _unknown_key_error(full, root, source)
        cur = cfg[k]
        if isinstance(cur, CN):
            if not isinstance(v, Mapping):
                raise ConfigError(f"{source}: config key {full!r} is a section; give a mapping, got {v!r}")
            _merge_dict(cur, v, source, full + ".", root)
        else:
            cfg[k] = _coerce(v, cur, full, source)


def _parse_cli_value(text: str) -> Any:
    """``'0.005'`` -> 0.005, ``'[40,80]'`` -> [40, 80], ``'True'`` -> True, anything else stays a string."""
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    return text


def merge_opts(cfg: CN, opts: Sequence[str]) -> None:
    """Apply ``KEY VALUE`` pairs (strict: unknown key / wrong type raise :class:`ConfigError`)."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"command-line overrides must be KEY VALUE pairs; got an odd number: {opts}")
    for key, raw in zip(opts[0::2], opts[1::2]):
        node = cfg
        parts = key.split(".")
        for i, part in enumerate(parts):
            if part not in node:
                raise _unknown_key_error(key, cfg, "command line")
            if i < len(parts) - 1:
                node = node[part]
                if not isinstance(node, CN):
                    raise _unknown_key_error(key, cfg, "command line")
        leaf = parts[-1]
        if isinstance(node[leaf], CN):
            raise ConfigError(f"command line: {key!r} is a section, not a key; give one of its keys")
        node[leaf] = _coerce(_parse_cli_value(raw), node[leaf], key, "command line")


def load_config(
    cfg_path_or_name: str | os.PathLike | None = None,
    opts: Iterable[str] | None = None,
    freeze: bool = True,
) -> CN:
    """Defaults, then the YAML file (``_BASE_`` chain resolved), then ``KEY VALUE`` overrides.

    ``cfg_path_or_name`` may be a path or a name in ``configs/`` (see :func:`resolve_config_path`);
    ``None`` gives the defaults plus overrides.
    """
    cfg = get_cfg_defaults()
    if cfg_path_or_name:
        path = resolve_config_path(cfg_path_or_name)
        _merge_dict(cfg, _read_yaml_with_bases(path), str(path))
    merge_opts(cfg, list(opts or []))
    if freeze:
        cfg.freeze()
    return cfg


def load_config_from_yaml_string(text: str, opts: Iterable[str] | None = None, freeze: bool = True) -> CN:
    """Rebuild a config from the YAML string stored in a checkpoint (strict, on top of the defaults)."""
    cfg = get_cfg_defaults()
    _merge_dict(cfg, yaml.safe_load(text) or {}, "checkpoint config")
    merge_opts(cfg, list(opts or []))
    if freeze:
        cfg.freeze()
    return cfg


def cfg_to_yaml(cfg: CN) -> str:
    """The resolved config as YAML text (what goes to OUTPUT_DIR/config.yaml and into checkpoints)."""
    return cfg.dump()
