"""Typed config schemas, registered in Hydra's ConfigStore (wrong types and unknown keys fail)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

CONF_DIR = Path(os.environ.get("ABQLAB_CONF", Path(__file__).resolve().parents[2] / "conf"))


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
class BudgetConfig:
    """Mixed precision (abqlab.alloc): per-linear weight bits chosen under a size budget.

    Set one of ``avg_bits`` (bits per weight of the quantized linears, scales and zeros included:
    W4 g64 with 16-bit scale and zero = 4.5) or ``bytes`` (the whole model, float leftovers at 16
    bits). ``candidates``: widths 1..8 for integers; under a float ``w_format`` the widths of its
    family (minifloats and MX: 4, 6, 8; each width takes that family member, e.g. MXFP4 → MXFP6 →
    MXFP8). ``allocator``: knapsack | greedy | learned | search. ``sensitivity``: fisher (estimated:
    ½ Σ F·ΔW² with F the diagonal empirical Fisher; one backward per window) | kl (measured: the
    KL of the next-token distribution to the float one with that one linear at b bits; one
    model tail per linear and width, about 30 min for SmolLM2 on 2 CPU cores). ``weights``: how
    each candidate width is quantized while allocating: rtn | gptq (alloc/candidates.py).
    """

    avg_bits: float | None = None
    bytes: int | None = None
    candidates: list[int] = field(default_factory=lambda: [2, 3, 4, 8])
    allocator: str = "knapsack"
    sensitivity: str = "fisher"
    weights: str = "rtn"
    nsamples: int = 8
    seqlen: int = 128
    seed: int = 0
    cache_dir: str | None = "~/.cache/abqlab/sensitivity"  # None: not cached
    steps: int = 40  # learned: optimisation steps; search: evaluated moves
    lr: float = 0.1  # learned allocator: Adam lr of the width logits
    relaxation: str = "rms"  # learned allocator: rms | linear (abqlab.alloc.relax)


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
    a_clip: float = 1.0  # activation range per token × a_clip before quantizing (< 1 clips)
    # number formats (abqlab.quant.formats): int | fp8_e4m3 | fp8_e5m2 | fp6_e3m2 | fp6_e2m3 |
    # fp4_e2m1 | mxfp8 | mxfp8_e5m2 | mxfp6_e3m2 | mxfp6_e2m3 | mxfp4 | nvfp4. A float format
    # needs its width in *_bits (w_sym/kv_sym are for int: floats are symmetric); block formats
    # need *_group = their block (MX 32, NVFP4 16).
    w_format: str = "int"
    a_format: str = "int"
    w_scale_rule: str = "none"  # none | m1 | m2: ZeroQuant-FP power-of-two scale constraints
    kv_format: str = "int"  # q/k/v (KV cache) format: int or a minifloat
    kv_granularity: str = "token"  # token: per token and head | head: per head over the window
    # mixed precision: weight bits per linear by full name (``model.layers.0.mlp.down_proj``),
    # overriding w_bits; filled by the allocation when ``budget`` is set (abqlab.alloc)
    layer_bits: dict[str, int] = field(default_factory=dict)
    # activation (input) bits per linear by glob pattern on the full name, first match wins,
    # overriding a_bits; on the command line ++quant.layer_a_bits={*mlp.gate_proj:8,*up_proj:8}
    layer_a_bits: dict[str, int] = field(default_factory=dict)
    budget: BudgetConfig = field(default_factory=BudgetConfig)


@dataclass
class LorcConfig:
    """LoRC (ZeroQuant-V2): after any method, W ≈ Q(W) + U·V with U·V the rank-r SVD of W − Q(W).

    ``ranks`` overrides ``rank`` per layer type, keyed by a name suffix (``down_proj``,
    ``self_attn.o_proj``); 0 switches a layer off. ``factor_bits``: 8 stores U and V as int8
    (one scale per rank component), 16 keeps them in float.
    """

    rank: int = 0
    ranks: dict[str, int] = field(default_factory=dict)
    factor_bits: int = 8


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
    lorc: LorcConfig = field(default_factory=LorcConfig)  # low-rank error compensation
    data: Any = "wiki"  # what calibrates: a conf/data preset name, "text:<file>" or a dict


@dataclass
class DataConfig:
    """A text source: ``embedded`` Wikipedia extracts, a ``datasets`` (``hf``) source, or ``text``
    files (``train_path``/``test_path``, or one ``path`` split deterministically)."""

    name: str = "wiki"
    source: str = "embedded"
    hf_path: str | None = None
    hf_name: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    text_field: str = "text"
    test_every: int = 10
    max_test_docs: int | None = None
    skip_test_docs: int = 0  # test text starts after this many documents (a held-out slice)
    path: str | None = None
    train_path: str | None = None
    test_path: str | None = None


@dataclass
class EvalConfig:
    """What to measure: fast perplexity, lm-eval perplexity, zero-shot tasks."""

    name: str = "ppl"
    datasets: list[Any] = field(default_factory=lambda: ["wiki"])  # ppl/<name> for each
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
class DiagnosticsConfig:
    """Small recordings for figures (about 20 kB per record): one head's attention map, float vs
    quantized, and per input channel the max |activation| and max |weight| of some linears of
    the same block, before and after calibration."""

    enabled: bool = True
    block: int = 1
    head: int = 0
    tokens: int = 24
    linears: list[str] = field(default_factory=list)  # paths in the block; empty: its first linear


@dataclass
class RunConfig:
    model: ModelConfig = MISSING
    quant: QuantConfig = MISSING
    calib: CalibConfig = MISSING
    eval: EvalConfig = MISSING
    logger: LoggerConfig = MISSING
    # read-only alias of the resolved calib.data, for code written before the split
    data: Any = "${abqlab_data:${calib.data}}"
    seed: int = 0
    results_store: str = "results/runs.jsonl"
    skip_done: bool = False
    resume: bool = True  # continue a calibration that died without a record (same config hash)
    objective: str | None = None  # metric a sweeper minimises; None: ppl of eval.datasets[0]
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    experiment: str = "default"


GROUPS: dict[str, type] = {
    "model": ModelConfig,
    "quant": QuantConfig,
    "calib": CalibConfig,
    "eval": EvalConfig,
    "logger": LoggerConfig,
}


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; YAML files in conf/ extend ``<group>/schema``."""
    from abqlab.data.presets import data_alias

    OmegaConf.register_new_resolver("abqlab_data", data_alias, replace=True)
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for group, schema in GROUPS.items():
        store.store(group=group, name="schema", node=schema)
