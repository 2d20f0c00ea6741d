"""Helpers shared by the foundation tests (a plain module: ``conftest`` names are not unique)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from abqlab.config import register_configs

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"

register_configs()


def compose_run(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The resolved run config for ``overrides``, composed from the repo's conf/ as the CLI does."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=list(overrides))


def load_script(relative: str, name: str) -> ModuleType:
    """Import a script that is not in a package (e.g. ``experiments/peers/table.py``) by path."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

