"""Dataset specs: ``calib.data`` and each entry of ``eval.datasets`` name a text source.

A spec is a preset name (``conf/data/<name>.yaml``: ``wiki``, ``c4``, ...), the shorthand
``text:<file>`` (one local text file, split deterministically, named after the file), or a dict
of :class:`~abqlab.config.DataConfig` fields, optionally starting from ``preset: <name>``.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from abqlab.config import CONF_DIR, DataConfig

TEXT_PREFIX = "text:"


class DataSpecError(ValueError):
    """A dataset spec that names no preset or holds unknown fields; ``str()`` is one line."""


def preset_dir() -> Path:
    return CONF_DIR / "data"


def preset_names() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


@lru_cache(maxsize=64)
def _preset(name: str) -> dict[str, Any]:
    path = preset_dir() / f"{name}.yaml"
    if not path.is_file():
        allowed = ", ".join(preset_names())
        raise DataSpecError(f"{allowed}, text:<file> or a dict of data fields")
    node = OmegaConf.load(path)
    return {k: v for k, v in OmegaConf.to_container(node).items() if k != "defaults"}


def _fields(settings: dict[str, Any]) -> DataConfig:
    try:
        node = OmegaConf.merge(OmegaConf.structured(DataConfig), settings)
    except Exception as error:  # noqa: BLE001 - unknown key or wrong type: one line
        key = getattr(error, "full_key", None)
        where = f"{key}: " if key else ""
        first_line = str(error).splitlines()[0]
        raise DataSpecError(f"fields of DataConfig ({where}{first_line})") from error
    return OmegaConf.to_object(node)  # type: ignore[return-value]


def text_name(path: str) -> str:
    """A metric-friendly name for a text file: its stem, lower case, [a-z0-9_-] only."""
    return re.sub(r"[^a-z0-9_-]+", "_", Path(path).stem.lower()).strip("_") or "text"


def resolve_data(spec: Any) -> DataConfig:
    """The :class:`DataConfig` a spec stands for; raises :class:`DataSpecError`."""
    if isinstance(spec, DataConfig):
        return spec
    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True)
    if isinstance(spec, str):
        if spec.startswith(TEXT_PREFIX):
            path = spec[len(TEXT_PREFIX) :]
            return _fields({**_preset("text"), "name": text_name(path), "path": path})
        return _fields(_preset(spec))
    if isinstance(spec, dict):
        settings = dict(spec)
        base = _preset(str(settings.pop("preset"))) if "preset" in settings else {}
        return _fields({**base, **settings})
    raise DataSpecError("a preset name, text:<file> or a dict of data fields")


def resolve_datasets(specs: Any) -> list[DataConfig]:
    """Every entry of ``eval.datasets``; names must be unique (they key ``ppl/<name>``)."""
    if isinstance(specs, (str, dict, DictConfig)):
        specs = [specs]
    datasets = [resolve_data(spec) for spec in specs]
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataSpecError(f"unique dataset names (repeated: {', '.join(duplicates)})")
    if not datasets:
        raise DataSpecError("at least one dataset")
    return datasets


def data_alias(spec: Any) -> dict[str, Any]:
    """OmegaConf resolver behind the read-only top-level ``data`` key (= resolved calib.data)."""
    return asdict(resolve_data(spec))
