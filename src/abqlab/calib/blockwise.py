"""The block-wise calibrator: one block at a time, two streams, registered components and losses.

Per block i: x_fp (float model's input) and x_q (quantized model's input); targets
d_fp = Block_fp(x_fp) and d_fp* = Block_fp(x_q); the quantized block's output on x_q is pulled
towards them by the weighted losses, its components' parameters trained with AdamW (fp32, one
lr group per component), then baked. See DESIGN.md "Calibration".
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from abqlab.calib.capture import capture_block_inputs
from abqlab.calib.checkpoint import (
    CalibCheckpoint,
    ResumeState,
    fingerprint,
    restore_block,
    save_quantized,
)
from abqlab.calib.components import Component, build_component
from abqlab.calib.components.rotation import prepare_rotation
from abqlab.calib.context import BlockContext
from abqlab.calib.stats import input_absmax
from abqlab.calib.train import BlockTrainer, run_block
from abqlab.config import CalibConfig, DataConfig, QuantConfig
from abqlab.data.sources import calibration_windows
from abqlab.models.arch import blocks_of
from abqlab.models.load import LoadedModel
from abqlab.quant.apply import freeze_model, quantize_block, use_abqlab_attention
from abqlab.quant.formats.describe import describe
from abqlab.quant.lorc import apply_lorc, merge_summaries

log = logging.getLogger(__name__)


def enabled_components(calib: CalibConfig) -> list[Component]:
    """Instantiate the enabled components, in their fixed order."""
    built = [
        build_component(name, dict(settings or {})) for name, settings in calib.components.items()
    ]
    return sorted((c for c in built if c.cfg.enabled), key=lambda c: c.order)


def calibrate_blockwise(
    loaded: LoadedModel,
    quant: QuantConfig,
    calib: CalibConfig,
    data: DataConfig,
    run_dir: Path,
) -> dict[str, Any]:
    """Calibrate every block in order; returns per-block losses and seconds."""
    torch.manual_seed(calib.seed)
    model, arch, device = loaded.model, loaded.arch, loaded.device
    use_abqlab_attention(model)
    rotation = prepare_rotation(loaded, calib, quant, data, run_dir)  # model level, first
    windows = calibration_windows(
        loaded.tokenizer, data, calib.nsamples, calib.seqlen, calib.seed, loaded.add_bos
    )
    x_fp, kwargs = capture_block_inputs(model, arch, windows, calib.batch_size, device)
    x_q = x_fp.clone()
    components = enabled_components(calib)
    trainer = BlockTrainer(calib, kwargs)
    checkpoint = CalibCheckpoint(run_dir / "calib") if calib.save else None
    blocks = blocks_of(model, arch)
    summary: dict[str, Any] = {"blocks": [], "components": [type(c).__name__ for c in components]}
    summary.update(rotation)
    summary["formats"] = describe(quant)
    lorc_parts: list[dict[str, Any]] = []
    key = fingerprint(asdict(quant), asdict(calib), asdict(data), model.config.to_dict())
    resume = ResumeState(run_dir / "calib", key) if calib.save else None
    resumed = resume.finished() if resume is not None else 0
    if resumed:
        log.info("resume: blocks 0-%d restored from %s", resumed - 1, resume.directory)
    progress = tqdm(range(len(blocks)), desc="calibrate", unit="block")
    for index in progress:
        start = time.perf_counter()
        block = blocks[index]
        if index < resumed:  # finished before the run died: restore it, move both streams on
            x_fp_next = run_block(block, x_fp, kwargs, calib.batch_size)
            quantize_block(block, arch, quant, f"{arch.blocks}.{index}")
            saved = resume.load(index)
            restore_block(block, saved)
            x_q, x_fp = run_block(block, x_q, kwargs, calib.batch_size), x_fp_next
            summary["blocks"].append({**saved["summary"], "resumed": True})
            continue
        float_inputs = any(c.needs_float_inputs for c in components)
        fp_block = copy.deepcopy(block) if trainer.needs_fp_block or float_inputs else None
        # targets only when something trains; the float stream also when stats or float inputs
        # are read from it (epochs=0 presets such as GPTQ: two forwards per block fewer)
        training = calib.epochs > 0
        needs_stats = any(c.needs_stats for c in components)
        target_fp = target_fpstar = None
        if training or needs_stats or float_inputs:
            target_fp = run_block(block, x_fp, kwargs, calib.batch_size)
        if training:
            target_fpstar = run_block(block, x_q, kwargs, calib.batch_size)
        stats = {}
        if needs_stats:
            stats = input_absmax(block, arch.linears, x_fp, kwargs, calib.batch_size)
        quantize_block(block, arch, quant, f"{arch.blocks}.{index}")
        ctx = BlockContext(
            block,
            index,
            len(blocks),
            arch,
            quant,
            model.config,
            stats,
            run_inputs=lambda b=block, x=x_q: run_block(b, x, kwargs, calib.batch_size),
            float_block=fp_block if float_inputs else None,
            run_float_inputs=(lambda b=fp_block, x=x_fp: run_block(b, x, kwargs, calib.batch_size))
            if float_inputs else None,
        )
        groups = [(c, c.attach(ctx)) for c in components]
        losses = trainer.train(ctx, fp_block, groups, x_fp, x_q, target_fp, target_fpstar, progress)
        if losses.get("best_epoch") == -1:
            log.info(
                "block %d: no epoch beat the initialisation (loss %.4g); kept it",
                index,
                losses["init_loss"],
            )
        for component in components:
            component.bake(ctx)
        for linear in ctx.linears().values():
            linear.bake()
            linear.freeze()
        lorc_parts.append(apply_lorc(ctx.linears().values(), calib.lorc))
        x_q = run_block(block, x_q, kwargs, calib.batch_size)
        x_fp = x_fp if target_fp is None else target_fp  # unused from here on when None
        seconds = time.perf_counter() - start
        clips = {p: m.a_clip for p, m in ctx.linears().items() if m.a_clip != quant.a_clip}
        if clips:  # per-linear activation clip ratios (components.act_clip)
            losses = {**losses, "a_clip": clips}
        summary["blocks"].append({"index": index, "seconds": seconds, **losses})
        if checkpoint is not None:
            checkpoint.add_block(index, {type(c).__name__: c.state() for c in components})
        if resume is not None:
            resume.save(index, block, summary["blocks"][-1])
        del fp_block
    if any(lorc_parts):
        summary["lorc"] = merge_summaries(lorc_parts)
    freeze_model(model)
    if calib.save_model:
        config = {"quant": asdict(quant), "calib": asdict(calib)}
        save_quantized(model, run_dir / "quantized.pt", config)
    times = [b["seconds"] for b in summary["blocks"]]
    summary["seconds_per_block"] = sum(times) / max(len(times), 1)
    return summary
