"""Typed config schemas, registered in Hydra's ConfigStore (wrong types and unknown keys fail)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ModelConfig:
    """Which model: ``embedded`` (SmolLM2), ``hf`` (hub id or folder), ``gguf``, ``random``."""

    name: str = "smollm2-135m"
    source: str = "embedded"
    path: str | None = None
    gguf_file: str | None = None
    revision: str | None = None
    num_hidden_layers: int | None = None
    random_config: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    add_bos: str = "auto"  # auto | true | false
    dtype: str = "float32"
    device: str = "auto"
    cache_dir: str | None = None


@dataclass
class QuantConfig:
    """Bits and granularity. 16 bits = left in float. Groups: -1 per channel/token, 0 per tensor."""

    name: str = "fp"
    w_bits: int = 16
    w_sym: bool = False
    w_group: int = -1
    w_bit_balance: bool = False
    w_partial_group: bool = False
    a_bits: int = 16
    a_sym: bool = False
    a_group: int = -1
    q_bits: int = 16
    k_bits: int = 16
    v_bits: int = 16
    kv_sym: bool = False
    skip: list[str] = field(default_factory=list)


@dataclass
class CalibConfig:
    """Block-wise calibration: method preset, calibration windows, optimisation, components."""

    name: str = "rtn"
    method: str = "rtn"
    nsamples: int = 16
    seqlen: int = 256
    seed: int = 2
    epochs: int = 0
    batch_size: int = 1
    lr_schedule: str = "cosine"  # constant | cosine (per step, to 0 at the last epoch)
    warmup: float = 0.0  # fraction of the steps with a linear lr warm-up
    grad_clip: float = 0.0  # max global gradient norm per step; 0: no clipping
    select: str = "best"  # best: keep the best-scoring epoch (−1 = initialisation) | last
    patience: int = 0  # stop a block after this many epochs without improvement; 0: never
    components: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    save: bool = True  # learned values per block under <run_dir>/calib/
    save_model: bool = False  # integer codes + grids in <run_dir>/quantized.pt
    load_from: str | None = None  # method=load: a quantized.pt to evaluate


@dataclass
class DataConfig:
    """Evaluation / calibration text: ``embedded`` Wikipedia extracts or a ``datasets`` source."""

    name: str = "wiki"
    source: str = "embedded"
    hf_path: str | None = None
    hf_name: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    text_field: str = "text"
    test_every: int = 10
    max_test_docs: int | None = None


@dataclass
class EvalConfig:
    """What to measure: fast perplexity, lm-eval perplexity, zero-shot tasks."""

    name: str = "ppl"
    ppl: bool = True
    seqlen: int = 512
    max_windows: int | None = 40
    batch_size: int = 4
    lm_eval_ppl: bool = False
    tasks: list[str] = field(default_factory=list)
    limit: int | None = None
    num_fewshot: int = 0


@dataclass
class LoggerConfig:
    """wandb: ``offline`` (default, files under the run dir), ``online`` or ``disabled``."""

    name: str = "wandb"
    mode: str = "offline"
    project: str = "abqlab"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    model: ModelConfig = MISSING
    quant: QuantConfig = MISSING
    calib: CalibConfig = MISSING
    data: DataConfig = MISSING
    eval: EvalConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    results_store: str = "results/runs.jsonl"
    skip_done: bool = False
    experiment: str = "default"


GROUPS: dict[str, type] = {
    "model": ModelConfig,
    "quant": QuantConfig,
    "calib": CalibConfig,
    "data": DataConfig,
    "eval": EvalConfig,
    "logger": LoggerConfig,
}


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; YAML files in conf/ extend ``<group>/schema``."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for group, schema in GROUPS.items():
        store.store(group=group, name="schema", node=schema)
