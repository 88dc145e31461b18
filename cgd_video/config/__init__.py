"""Configuration: yacs defaults (:mod:`.defaults`) and the strict loader (:mod:`.loading`)."""

from cgd_video.config.defaults import get_cfg_defaults
from cgd_video.config.loading import (
    ConfigError,
    cfg_to_yaml,
    list_configs,
    load_config,
    load_config_from_yaml_string,
    resolve_config_path,
)

__all__ = [
    "ConfigError",
    "get_cfg_defaults",
    "load_config",
    "load_config_from_yaml_string",
    "resolve_config_path",
    "list_configs",
    "cfg_to_yaml",
]
