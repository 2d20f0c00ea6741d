"""Config checks that run before any model loads: one line naming the key and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from abqlab.calib import METHODS
from abqlab.calib.components import COMPONENTS, build_component
from abqlab.calib.components.rotation import smoothing_conflict, training_conflict
from abqlab.calib.curve import SELECTIONS
from abqlab.calib.losses import LOSSES
from abqlab.calib.schedule import SCHEDULES
from abqlab.models.load import DTYPES, SOURCES, load_config
from abqlab.quant.formats.checks import check_calib_formats, check_quant_formats
from abqlab.quant.spec import FP_BITS

BITS = (*range(1, 9), FP_BITS)
LOGGER_NAMES = ("wandb", "none")
LOGGER_MODES = ("offline", "online", "disabled")
ADD_BOS = ("auto", "true", "false")


class ConfigError(ValueError):
    """A bad config value; ``str()`` is the one line shown to the user."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"{key}={value}: allowed: {allowed}")


def check_choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(key, value, ", ".join(str(a) for a in allowed))


def check_quant(cfg: DictConfig) -> None:
    q = cfg.quant
    for key in ("w_bits", "a_bits", "q_bits", "k_bits", "v_bits"):
        check_choice(f"quant.{key}", q[key], BITS)
    for key in ("w_group", "a_group"):
        if q[key] < -1:
            raise ConfigError(
                f"quant.{key}", q[key], "-1 (per channel/token), 0 (per tensor), g > 0"
            )
    if q.w_bits == 1 and q.w_sym and not q.w_bit_balance:
        raise ConfigError(
            "quant.w_sym", True, "false at w_bits=1 (no zero level), or w_bit_balance"
        )
    for pattern, bits in (q.get("layer_a_bits") or {}).items():
        check_choice(f"quant.layer_a_bits[{pattern}]", bits, BITS)
    if q.a_bits == 1 and q.a_sym:
        raise ConfigError("quant.a_sym", True, "false at a_bits=1 (no zero level)")
    if not 0.0 < q.a_clip <= 1.0:
        raise ConfigError("quant.a_clip", q.a_clip, "a ratio in (0, 1] (1: min/max per token)")
    problem = check_quant_formats(q)
    if problem:
        raise ConfigError(*problem)


def input_widths(model_config: Any) -> dict[str, int]:
    """in_features of each kind of linear in a block."""
    hidden = model_config.hidden_size
    heads = model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or hidden // heads
    return {
        "q/k/v/gate/up": hidden,
        "o_proj": heads * head_dim,
        "down_proj": model_config.intermediate_size,
    }


def check_groups(cfg: DictConfig, model_config: Any) -> None:
    for key in ("w_group", "a_group"):
        group = cfg.quant[key]
        if group <= 0 or (key == "w_group" and cfg.quant.w_partial_group):
            continue
        widths = input_widths(model_config)
        bad = {name: width for name, width in widths.items() if width % group}
        if bad:
            sizes = ", ".join(f"{n} in_features {w}" for n, w in bad.items())
            divisors = sorted(
                {
                    d
                    for d in range(8, min(widths.values()) + 1, 8)
                    if all(w % d == 0 for w in widths.values())
                }
            )
            raise ConfigError(
                f"quant.{key}",
                group,
                f"-1, 0 or a divisor of every width ({sizes} not divisible), "
                f"e.g. {', '.join(map(str, divisors[:8]))}; or "
                "quant.w_partial_group=true (shorter last group)",
            )


def check_calib(cfg: DictConfig) -> None:
    calib = cfg.calib
    if calib.method not in METHODS:
        raise ConfigError("calib.method", calib.method, ", ".join(METHODS.names()))
    for name, settings in calib.components.items():
        if name not in COMPONENTS:
            raise ConfigError(f"calib.components.{name}", "…", ", ".join(COMPONENTS.names()))
        try:
            build_component(name, dict(settings or {}))
        except Exception as error:  # noqa: BLE001 - any bad setting becomes one line
            raise ConfigError(f"calib.components.{name}", dict(settings or {}),
                              f"fields of {COMPONENTS.get(name).config_class.__name__} "
                              f"({str(error).splitlines()[0]})") from error
    for name in calib.losses:
        if name not in LOSSES:
            raise ConfigError(f"calib.losses.{name}", calib.losses[name], ", ".join(LOSSES.names()))
    check_weight_components(cfg)
    conflict = smoothing_conflict(dict(calib.components)) or training_conflict(
        calib.method, calib.get("epochs", 0), dict(calib.components))
    if conflict:
        raise ConfigError(*conflict)
    problem = check_calib_formats(cfg.quant, calib)
    if problem:
        raise ConfigError(*problem)
    if calib.nsamples < 1 or calib.batch_size < 1 or calib.nsamples % calib.batch_size:
        raise ConfigError("calib.batch_size", calib.batch_size,
                          f"a positive divisor of calib.nsamples={calib.nsamples}")
    check_optimisation(calib)


def check_optimisation(calib: DictConfig) -> None:
    """The block trainer's schedule, clipping and selection settings."""
    check_choice("calib.lr_schedule", calib.lr_schedule, SCHEDULES)
    check_choice("calib.select", calib.select, SELECTIONS)
    if not 0.0 <= calib.warmup < 1.0:
        raise ConfigError("calib.warmup", calib.warmup, "a fraction of the steps in [0, 1)")
    for key in ("grad_clip", "patience", "epochs"):
        if calib[key] < 0:
            raise ConfigError(f"calib.{key}", calib[key], ">= 0 (0 switches it off)")


def check_weight_components(cfg: DictConfig) -> None:
    """GPTQ / AWQ settings against the quant config (e.g. per-tensor weights, g_idx export)."""
    from abqlab.calib.components import awq, gptq

    for name, conflict in (("gptq", gptq.quant_conflict), ("awq", awq.quant_conflict)):
        settings = dict(cfg.calib.components.get(name) or {})
        if name in cfg.calib.components and settings.get("enabled", True):
            problem = conflict(settings, cfg.quant, cfg.calib.save_model)
            if problem:
                raise ConfigError(f"calib.components.{name}", settings, problem)


def check_run(cfg: DictConfig) -> None:
    """Everything checkable without weights; raises ConfigError."""
    check_quant(cfg)
    check_choice("model.source", cfg.model.source, SOURCES)
    check_choice("model.dtype", cfg.model.dtype, tuple(DTYPES))
    check_choice("model.add_bos", str(cfg.model.add_bos).lower(), ADD_BOS)
    check_calib(cfg)
    check_choice("logger.name", cfg.logger.name, LOGGER_NAMES)
    check_choice("logger.mode", cfg.logger.mode, LOGGER_MODES)
    if cfg.eval.seqlen < 2:
        raise ConfigError("eval.seqlen", cfg.eval.seqlen, "integers >= 2")
    check_data(cfg)
    check_saving(cfg)
    model_config = load_config(cfg.model)
    check_groups(cfg, model_config)
    check_mixed_precision(cfg, model_config)
    check_eval(cfg)


def check_mixed_precision(cfg: DictConfig, model_config: Any) -> None:
    """``quant.budget`` (settings, feasibility from the layer shapes) and ``quant.layer_bits``."""
    from abqlab.alloc.checks import budget_set, check_allocation
    from abqlab.models.arch import arch_for

    if not cfg.quant.get("layer_bits") and not budget_set(cfg.quant):
        return
    blocks = arch_for(model_config.model_type).blocks
    problem = check_allocation(cfg.quant, cfg.calib, model_config, blocks)
    if problem:
        raise ConfigError(*problem)


def check_data(cfg: DictConfig) -> None:
    """``calib.data`` and ``eval.datasets``: known presets or fields, local files present."""
    from abqlab.data.presets import DataSpecError, resolve_data, resolve_datasets
    from abqlab.data.sources import SOURCES
    from abqlab.data.text import text_files

    if "data" in cfg and not OmegaConf.is_interpolation(cfg, "data"):
        raise ConfigError("data", cfg.data, "calib.data=<name> and eval.datasets=[<name>,...] "
                          "(data is a read-only alias of calib.data)")
    for key, spec, resolve in (("calib.data", cfg.calib.data, resolve_data),
                               ("eval.datasets", cfg.eval.datasets, resolve_datasets)):
        value = OmegaConf.to_container(spec) if OmegaConf.is_config(spec) else spec
        try:
            found = resolve(spec)
        except DataSpecError as error:
            raise ConfigError(key, value, str(error)) from error
        for data in found if isinstance(found, list) else [found]:
            check_choice(f"{key} source", data.source, SOURCES)
            if data.test_every < 2:
                raise ConfigError(f"{key} test_every", data.test_every, "integers >= 2")
            missing = [f for f in text_files(data) if not Path(f).expanduser().is_file()]
            if data.source == "text" and (missing or not text_files(data)):
                raise ConfigError(f"{key} ({data.name})", missing or None,
                                  "path (one file) or train_path and test_path: existing files")


def check_saving(cfg: DictConfig) -> None:
    """``calib=load`` needs ``calib.load_from``; ``calib.save_model`` is refused where pointless."""
    calib = cfg.calib
    if calib.method == "load":
        if OmegaConf.is_missing(calib, "load_from") or not calib.load_from:
            raise ConfigError("calib.load_from", None,
                              "the path of a quantized.pt saved with calib.save_model=true")
        if calib.save_model:
            raise ConfigError("calib.save_model", True,
                              f"false with calib=load (the model is saved at {calib.load_from})")


def check_eval(cfg: DictConfig) -> None:
    """lm-eval task names (and, for standard tasks, the network) before any model work."""
    if not cfg.eval.tasks and not cfg.eval.lm_eval_ppl:
        return
    from abqlab.config import EvalConfig
    from abqlab.eval.lmeval import StandardTaskNetworkError, UnknownTaskError, validate_tasks

    eval_cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvalConfig), cfg.eval))
    try:
        validate_tasks(eval_cfg)
    except UnknownTaskError as error:
        raise ConfigError("eval.tasks", list(cfg.eval.tasks), str(error)) from error
    except StandardTaskNetworkError as error:
        raise ConfigError("eval.tasks", list(cfg.eval.tasks), str(error)) from error
