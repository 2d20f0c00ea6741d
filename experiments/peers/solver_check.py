"""Our GPTQ column solver vs llm-compressor's ``quantize_weight`` on one real weight and Hessian.

    python experiments/peers/solver_check.py     # needs the peers extra

SmolLM2 layer 3 gate_proj, a Hessian 2XᵀX/n of 4096 synthetic correlated inputs (seed 0), static
act-order, damp 0.01, block 128. Prints each side's objective tr(ΔW H ΔWᵀ) and how many weights
differ: equal solvers give identical weights; a different grid convention shows up here.
"""

from __future__ import annotations

import torch
from compressed_tensors.quantization import QuantizationArgs
from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight
from llmcompressor.observers import Observer
from safetensors.torch import load_file

from abqlab.calib.components.gptq import GPTQConfig, gptq_quantize
from abqlab.config import ModelConfig
from abqlab.models.load import model_location
from abqlab.quant.spec import QuantSpec

CASES = {  # abqlab spec, compressed-tensors weight args
    "W3 g64 asym": (QuantSpec(3, group=64),
                    {"num_bits": 3, "symmetric": False, "strategy": "group", "group_size": 64}),
    "W4 per-channel sym": (QuantSpec(4, sym=True),
                           {"num_bits": 4, "symmetric": True, "strategy": "channel"}),
}


def main() -> None:
    torch.manual_seed(0)
    folder = model_location(ModelConfig())
    state = load_file(f"{folder}/model.safetensors")
    weight = state["model.layers.3.mlp.gate_proj.weight"].float()
    cols = weight.shape[1]
    mix = torch.randn(cols, cols) / cols**0.5
    x = torch.randn(4096, cols) @ mix * torch.exp(torch.randn(cols))
    hessian = 2 * x.T @ x / x.shape[0]

    def objective(q: torch.Tensor) -> float:
        return float(((q - weight) @ hessian * (q - weight)).sum())

    for name, (spec, args) in CASES.items():
        qargs = QuantizationArgs(type="int", actorder="static", **args)
        observer = Observer.load_from_registry("memoryless_minmax", base_name="weight", args=qargs)
        observer(weight)
        grid = observer.get_qparams()
        peer, _, _ = quantize_weight(weight.clone()[None], hessian.clone()[None],
                                     grid["scale"][None], grid["zero_point"][None], None, qargs)
        line = [f"{name}: llm-compressor {objective(peer[0]):.2f}"]
        for grid_name in ("minmax", "mse"):
            cfg = GPTQConfig(act_order=True, groups="static", grid=grid_name)
            ours = gptq_quantize(weight, hessian, spec, cfg).weight
            differ = float(((ours - peer[0]).abs() > 1e-6).float().mean())
            line.append(f"abqlab {grid_name} {objective(ours):.2f} ({differ:.1%} weights differ)")
        print("; ".join(line))


if __name__ == "__main__":
    main()
