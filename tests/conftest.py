"""Shared fixtures: the repo's conf dir, Hydra composition, the 2-layer SmolLM2 loaded once."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from abqlab.config import ModelConfig, register_configs
from abqlab.models.load import LoadedModel, load_model

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"

register_configs()


def compose_run(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The resolved run config for ``overrides``, composed from the repo's conf/ as the CLI does."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture(scope="session")
def smollm2_2layer() -> LoadedModel:
    """The first two blocks of the embedded SmolLM2 on CPU (converts the GGUF on first use).

    Shared by the whole session: tests that change the model must use ``fresh_2layer``.
    """
    return load_model(ModelConfig(name="smollm2-2layer", num_hidden_layers=2, device="cpu"))


@pytest.fixture
def fresh_2layer(smollm2_2layer: LoadedModel) -> LoadedModel:
    """A private deep copy of the 2-layer model, free to quantize or corrupt."""
    return dataclasses.replace(smollm2_2layer, model=copy.deepcopy(smollm2_2layer.model))


@pytest.fixture
def composer() -> Callable[..., DictConfig]:
    return lambda *overrides: compose_run(overrides)
