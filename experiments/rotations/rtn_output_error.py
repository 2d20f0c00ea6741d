"""Why rotation hurts weight-only RTN on SmolLM2: each linear's relative output error.

For every linear of the blocks, on calibration windows: ‖x (Q(W) − W)ᵀ‖² / ‖x Wᵀ‖² with Q per
output channel asymmetric min-max RTN at the given widths, before and after the default rotation
(``RotationPlan()``: residual + value heads + online down_proj Hadamard; each linear sees its
input as the rotated model computes it). Mean and max over blocks per linear kind, written to
rtn_output_error.json with the environment.

    python experiments/rotations/rtn_output_error.py --bits 3 4
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from abqlab.config import DataConfig, ModelConfig
from abqlab.data.sources import calibration_windows
from abqlab.models.load import load_model
from abqlab.quant.quantizer import fake_quant
from abqlab.quant.spec import QuantSpec
from abqlab.rotation.transform import RotationPlan, rotate_model
from abqlab.track.environment import environment

HERE = Path(__file__).resolve().parent


@torch.no_grad()
def output_errors(model: torch.nn.Module, windows: torch.Tensor, bits: list[int]) -> dict:
    """{bits: {linear kind: [relative output error per block]}}."""
    errors: dict = {b: defaultdict(list) for b in bits}

    def record(module: torch.nn.Module, args: tuple, name: str) -> None:
        x = args[0].reshape(-1, args[0].shape[-1]).float()
        weight = module.weight.float()
        clean = (x @ weight.T).square().sum()
        for b in bits:
            delta = fake_quant(weight, QuantSpec(bits=b, sym=False, group=-1)) - weight
            errors[b][name.split(".")[-1]].append(float((x @ delta.T).square().sum() / clean))

    hooks = [
        m.register_forward_pre_hook(lambda mod, a, n=n: record(mod, a, n))
        for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n
    ]
    try:
        model(windows, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    return errors


def summary(errors: dict) -> dict:
    return {b: {k: {"mean": sum(v) / len(v), "max": max(v)} for k, v in kinds.items()}
            for b, kinds in errors.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bits", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--windows", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_model(ModelConfig(name="smollm2-135m", device="cpu"))
    windows = calibration_windows(loaded.tokenizer, DataConfig(), args.windows, 256, 0, True)
    before = summary(output_errors(loaded.model, windows, args.bits))
    rotate_model(loaded.model, loaded.arch, RotationPlan())
    after = summary(output_errors(loaded.model, windows, args.bits))
    result = {"windows": f"{args.windows} x 256 wiki train, seed 0",
              "quantizer": "RTN per channel asym", "before": before, "after": after,
              "environment": environment(loaded.device)}
    (HERE / "rtn_output_error.json").write_text(json.dumps(result, indent=1) + "\n")
    for b in args.bits:
        for kind, row in before[b].items():
            print(f"W{b} {kind:10s} mean {row['mean']:.4f} -> {after[b][kind]['mean']:.4f}   "
                  f"max {row['max']:.3f} -> {after[b][kind]['max']:.3f}")


if __name__ == "__main__":
    main()
