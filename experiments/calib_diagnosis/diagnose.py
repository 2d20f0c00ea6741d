"""Issue-8 measurement: the first blocks of SmolLM2 calibrated at W4A4, per variant and epochs.

For each variant (a list of Hydra overrides) and each epoch count it calibrates the first
``--blocks`` blocks, then reports the last block's output MSE against the float model on the
calibration windows (RTN for scale), block 0's evaluated loss per epoch, and the smallest
smoothing scale of each pair after training. One JSON line per run goes to ``--out``.

    python experiments/calib_diagnosis/diagnose.py --variant old --variant new --epochs 0 1 2 6
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from abqlab.calib.blockwise import calibrate_blockwise
from abqlab.calib.capture import capture_block_inputs
from abqlab.calib.checkpoint import CalibCheckpoint
from abqlab.calib.rtn import calibrate_rtn
from abqlab.calib.train import run_block
from abqlab.config import CalibConfig, DataConfig, ModelConfig, QuantConfig, register_configs
from abqlab.data.sources import calibration_windows
from abqlab.models.arch import blocks_of
from abqlab.models.load import LoadedModel, load_model
from abqlab.pipeline import typed
from abqlab.quant.apply import use_abqlab_attention

REPO = Path(__file__).resolve().parents[2]
VARIANTS = {  # name → overrides on top of calib=<preset>
    # the calibrator as it landed before the fix: scales learned directly, its lrs, constant lr,
    # last epoch kept, closed-form init everywhere
    "old": [
        "calib.components.smoothing.param=linear",
        "calib.components.smoothing.lr=5e-3",
        "calib.components.smoothing.init=closed_form",
        "calib.components.clipping.lr=1e-2",
        "calib.lr_schedule=constant",
        "calib.select=last",
    ],
    # the same with only the parametrisation changed (log space)
    "log": [
        "calib.components.smoothing.lr=5e-3",
        "calib.components.smoothing.init=closed_form",
        "calib.components.clipping.lr=1e-2",
        "calib.lr_schedule=constant",
        "calib.select=last",
    ],
    "new": [],  # today's preset defaults
}


def compose_config(preset: str, quant: str, overrides: list[str]) -> tuple:
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("config", [f"calib={preset}", f"quant={quant}", *overrides])
    return typed(cfg.quant, QuantConfig), typed(cfg.calib, CalibConfig), typed(cfg.data, DataConfig)


def last_block_output(loaded: LoadedModel, windows: torch.Tensor) -> torch.Tensor:
    x, kwargs = capture_block_inputs(loaded.model, loaded.arch, windows, 1, torch.device("cpu"))
    for block in blocks_of(loaded.model, loaded.arch):
        x = run_block(block, x, kwargs, 1)
    return x


def fresh(loaded: LoadedModel) -> LoadedModel:
    model = copy.deepcopy(loaded.model)
    use_abqlab_attention(model)
    return dataclasses.replace(loaded, model=model)


def min_scales(run_dir: Path) -> dict[str, float]:
    blocks = CalibCheckpoint(run_dir / "calib").load()
    scales = blocks.get(0, {}).get("Smoothing", {})
    return {name: float(s.min()) for name, s in scales.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="omniquant")
    parser.add_argument("--quant", default="w4a4")
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override")
    parser.add_argument("--epochs", type=int, nargs="+", default=[0, 1, 2, 6])
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--nsamples", type=int, default=4)
    parser.add_argument("--seqlen", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("runs.jsonl"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_model(ModelConfig(num_hidden_layers=args.blocks, device="cpu"))
    budget = [f"calib.nsamples={args.nsamples}", f"calib.seqlen={args.seqlen}"]
    for seed in args.seeds:
        quant, calib, data = compose_config(args.preset, args.quant, budget)
        windows = calibration_windows(
            loaded.tokenizer, data, args.nsamples, args.seqlen, seed, loaded.add_bos
        )
        reference = last_block_output(fresh(loaded), windows)
        rtn = fresh(loaded)
        with tempfile.TemporaryDirectory() as tmp:
            calibrate_rtn(rtn, quant, calib, data, Path(tmp))
        rtn_mse = torch.mean((last_block_output(rtn, windows) - reference) ** 2).item()
        for variant in args.variant or ["new"]:
            for epochs in args.epochs:
                overrides = [
                    *budget,
                    f"calib.seed={seed}",
                    f"calib.epochs={epochs}",
                    *VARIANTS.get(variant, variant.split(",")),
                    *args.override,
                ]
                quant, calib, data = compose_config(args.preset, args.quant, overrides)
                model = fresh(loaded)
                start = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    summary = calibrate_blockwise(model, quant, calib, data, Path(tmp))
                    scales = min_scales(Path(tmp))
                mse = torch.mean((last_block_output(model, windows) - reference) ** 2).item()
                row = {
                    "preset": args.preset,
                    "quant": args.quant,
                    "variant": variant,
                    "overrides": overrides,
                    "seed": seed,
                    "epochs": epochs,
                    "blocks": args.blocks,
                    "nsamples": args.nsamples,
                    "seqlen": args.seqlen,
                    "last_block_mse": mse,
                    "rtn_mse": rtn_mse,
                    "block0_curve": summary["blocks"][0].get("curve", {}),
                    "block_losses": [b.get("loss") for b in summary["blocks"]],
                    "min_scale_block0": scales,
                    "seconds": time.perf_counter() - start,
                    "torch": torch.__version__,
                }
                print(
                    f"{variant:>6} seed {seed} epochs {epochs}: mse {mse:.4g} (rtn {rtn_mse:.4g})"
                    f" min scales {({k: round(v, 4) for k, v in scales.items()})}",
                    file=sys.stderr,
                )
                with args.out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
