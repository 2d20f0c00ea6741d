"""Calibration components: each a file, a config dataclass and a registry entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from omegaconf import OmegaConf
from torch import nn

from abqlab.calib.context import BlockContext
from abqlab.registry import Registry


@dataclass
class ComponentConfig:
    enabled: bool = True
    lr: float = 1e-2


class Component:
    """A calibration trick applied to one block at a time.

    ``attach`` installs it on the freshly quantized block and returns its learnable parameters;
    ``bake`` writes what was learned into the block's weights and removes any hooks.
    Components run in ascending ``order``.
    """

    config_class: ClassVar[type] = ComponentConfig
    order: ClassVar[int] = 50
    needs_stats: ClassVar[bool] = False

    @property
    def needs_float_inputs(self) -> bool:
        """Whether ``bake`` reads the float model's inputs (BlockContext.run_float_inputs)."""
        return False

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def attach(self, ctx: BlockContext) -> list[nn.Parameter]:
        return []

    def bake(self, ctx: BlockContext) -> None:
        """Make the component's effect permanent in the block's weights."""

    def state(self) -> dict[str, Any]:
        """Learned values of the current block, for the calibration checkpoint."""
        return {}


COMPONENTS: Registry[type[Component]] = Registry("calibration component")
COMPONENTS.register("smoothing", "abqlab.calib.components.smoothing:Smoothing")
COMPONENTS.register("clipping", "abqlab.calib.components.clipping:Clipping")
COMPONENTS.register("compensation", "abqlab.calib.components.compensation:Compensation")
COMPONENTS.register("gptq", "abqlab.calib.components.gptq:GPTQ")
COMPONENTS.register("awq", "abqlab.calib.components.awq:AWQ")
COMPONENTS.register("rotation", "abqlab.calib.components.rotation:Rotation")
COMPONENTS.register("act_clip", "abqlab.calib.components.act_clip:ActClip")


def build_component(name: str, settings: dict[str, Any] | None) -> Component:
    """Instantiate ``name`` with ``settings`` checked against its config dataclass."""
    cls = COMPONENTS.get(name)
    node = OmegaConf.merge(OmegaConf.structured(cls.config_class), settings or {})
    return cls(OmegaConf.to_object(node))
