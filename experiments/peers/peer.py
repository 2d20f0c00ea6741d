"""Run llm-compressor (the peer) on abqlab's model, calibration windows and evaluation.

    python experiments/peers/peer.py --method gptq quant=w3a16 quant.w_group=64 \
        calib.nsamples=64 calib.seqlen=512 calib.seed=0 results_store=experiments/peers/runs.jsonl

Everything after ``--method``/``--actorder`` is an abqlab Hydra override: the config is composed
exactly as the ``abqlab`` command composes it, so the model (the converted embedded SmolLM2), the
calibration windows (``calibration_windows`` with ``calib.seed``), and the evaluation
(``abqlab.eval.runner.evaluate``) are the very same objects abqlab uses. Only the quantization
is the peer's: ``llmcompressor.oneshot`` with a recipe built from ``quant``. A shape the peer
refuses is recorded as ``status: refused`` with its reason, never quietly changed.
Needs the optional extra: ``pip install -e .[peers]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from abqlab.cli import CONF_DIR
from abqlab.config import CalibConfig, DataConfig, EvalConfig, ModelConfig, QuantConfig
from abqlab.data.sources import calibration_windows
from abqlab.eval.runner import evaluate
from abqlab.models.load import load_model
from abqlab.pipeline import typed
from abqlab.quant.apply import use_abqlab_attention
from abqlab.track.environment import environment
from abqlab.track.store import append_record, config_hash
from abqlab.validate import check_run

METHODS = ("rtn", "gptq", "awq")
ACTORDERS = ("static", "none")
OBSERVERS = ("memoryless_minmax", "memoryless_mse")  # the latter: the peer's MSE grid search
PEER_PACKAGES = ("llmcompressor", "compressed-tensors")


class PeerRefusedError(ValueError):
    """The peer does not support this configuration (recorded, not worked around)."""


def peer_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PEER_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def weight_args(quant: QuantConfig, actorder: str | None, observer: str | None = None) -> Any:
    """compressed-tensors QuantizationArgs for abqlab's weight settings (one-line refusals)."""
    from compressed_tensors.quantization import QuantizationArgs

    if quant.a_bits != 16 or quant.q_bits != 16 or quant.k_bits != 16 or quant.v_bits != 16:
        raise PeerRefusedError("the peer harness covers weight-only configs (a_bits=16)")
    if quant.w_bit_balance:
        raise PeerRefusedError("the peer has no bit-balance grid (w_bit_balance)")
    if quant.w_group == 0:
        strategy, group = "tensor", None
    elif quant.w_group == -1:
        strategy, group = "channel", None
    else:
        strategy, group = "group", quant.w_group
    return QuantizationArgs(
        num_bits=quant.w_bits,
        type="int",
        symmetric=quant.w_sym,
        strategy=strategy,
        group_size=group,
        actorder=actorder,
        observer=observer,
    )


def recipe(method: str, quant: QuantConfig, actorder: str, observer: str | None = None
           ) -> list[Any]:
    """The peer's modifiers for ``method`` (lm_head and embeddings stay in float, as in abqlab)."""
    from compressed_tensors.quantization import QuantizationScheme
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    order = None if actorder == "none" else actorder
    scheme = {
        "group_0": QuantizationScheme(
            targets=["Linear"],
            weights=weight_args(quant, order if method == "gptq" else None, observer),
        )
    }
    if method == "rtn":
        return [QuantizationModifier(config_groups=scheme, ignore=["lm_head"])]
    if method == "gptq":
        return [
            GPTQModifier(
                config_groups=scheme,
                ignore=["lm_head"],
                block_size=128,
                dampening_frac=0.01,
                actorder=order,
            )
        ]
    if method == "awq":
        return [AWQModifier(), QuantizationModifier(config_groups=scheme, ignore=["lm_head"])]
    raise ValueError(f"--method {method}: allowed: {', '.join(METHODS)}")


def peer_quantize(loaded: Any, quant: QuantConfig, calib: CalibConfig, data: DataConfig,
                  method: str, actorder: str, observer: str | None = None) -> dict[str, Any]:
    """Quantize ``loaded.model`` in place with the peer on abqlab's calibration windows."""
    from datasets import Dataset
    from llmcompressor import oneshot

    windows = calibration_windows(
        loaded.tokenizer, data, calib.nsamples, calib.seqlen, calib.seed, loaded.add_bos
    )
    dataset = Dataset.from_dict(
        {"input_ids": windows.tolist(), "attention_mask": torch.ones_like(windows).tolist()}
    )
    modifiers = recipe(method, quant, actorder, observer)
    patches = cpu_only_patches()
    if method != "rtn":
        oneshot(
            model=loaded.model,
            dataset=dataset,
            recipe=modifiers,
            num_calibration_samples=calib.nsamples,
            max_seq_length=calib.seqlen,
            shuffle_calibration_samples=False,
        )
    else:
        oneshot(model=loaded.model, recipe=modifiers)
    loaded.model.eval()
    use_abqlab_attention(loaded.model)  # evaluate through abqlab's attention, as abqlab does
    return {"windows_sum": int(windows.sum()), "windows_shape": list(windows.shape),
            "recipe": [repr(m) for m in modifiers], "peer_patches": patches}


def cpu_only_patches() -> list[str]:
    """Make the peer run without CUDA; returns what was patched (recorded with the run).

    llm-compressor 0.14's AWQ pins its cached activations (``IntermediatesCache.pin_memory``),
    which raises on a CPU-only torch. Pinning only speeds host-to-device copies, so a no-op
    changes no number.
    """
    if torch.cuda.is_available():
        return []
    from llmcompressor.pipelines.cache import IntermediatesCache

    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None
    return ["IntermediatesCache.pin_memory -> no-op (CPU-only torch)"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--actorder", choices=ACTORDERS, default="static",
                        help="GPTQ column order (the peer's default: static)")
    parser.add_argument("--observer", choices=OBSERVERS, default=None,
                        help="the weight grid's observer (default: the peer's min/max)")
    parser.add_argument("overrides", nargs="*", help="abqlab Hydra overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["logger=none", *args.overrides])
    check_run(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    name = f"llmcompressor-{args.method}"
    config["calib"]["name"] = name
    config["calib"]["method"] = "peer"
    config["peer"] = {"name": "llmcompressor", "method": args.method, **peer_versions()}
    if args.method == "gptq":
        config["peer"].update(actorder=args.actorder, block_size=128, dampening_frac=0.01)
    if args.observer is not None:
        config["peer"]["observer"] = args.observer
    record: dict[str, Any] = {
        "config_hash": config_hash(config), "config": config, "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "timings": {}, "metrics": {},
    }
    store = Path(cfg.results_store)
    try:
        start = time.perf_counter()
        loaded = load_model(typed(cfg.model, ModelConfig), cfg.seed)
        record["environment"] = environment(loaded.device)
        record["environment"]["packages"].update(peer_versions())
        record["timings"]["load_s"] = time.perf_counter() - start
        quant, calib = typed(cfg.quant, QuantConfig), typed(cfg.calib, CalibConfig)
        data, eval_cfg = typed(cfg.data, DataConfig), typed(cfg.eval, EvalConfig)
        weight_args(quant, None)  # refuse unsupported settings before calibrating
        start = time.perf_counter()
        record["calibration"] = peer_quantize(loaded, quant, calib, data, args.method,
                                              args.actorder, args.observer)
        record["timings"]["calibration_s"] = time.perf_counter() - start
        start = time.perf_counter()
        metrics, info = evaluate(loaded, eval_cfg, data, Path("."))
        record["timings"]["eval_s"] = time.perf_counter() - start
        record["metrics"], record["eval_info"] = metrics, info
        record["status"] = "ok"
    except PeerRefusedError as error:
        record["status"], record["reason"] = "refused", str(error)
    except Exception as error:  # noqa: BLE001 - recorded; a peer refusal of a shape lands here
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        refused = "divisible" in message or "group_size" in message
        record["status"] = "refused" if refused else "failed"
        record["reason"] = f"{type(error).__name__}: {message}"
        traceback.print_exc()
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    append_record(store, record)
    summary = ", ".join(f"{k}={v:.4g}" for k, v in record["metrics"].items())
    print(f"[{record['status']}] {name} {cfg.quant.name}: {summary} {record.get('reason', '')}")
    return 0 if record["status"] in ("ok", "refused") else 1


if __name__ == "__main__":
    sys.exit(main())
