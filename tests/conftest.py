"""Shared fixtures: the repo's conf dir, Hydra composition, the 2-layer SmolLM2 loaded once."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import pytest
from abq_helpers import compose_run
from omegaconf import DictConfig

from abqlab.config import ModelConfig
from abqlab.models.load import LoadedModel, load_model


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
