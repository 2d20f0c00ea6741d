"""Is abqlab's INT4 group-32 asymmetric RTN lossless on SmolLM2? (weights only, no evaluation)

SmolLM2's embedded weights come from a GGUF Q4_1 file: every 32-weight group is m + q·d with
q ∈ 0..15 and a float offset m. A min-max grid with a *float* offset (x̂ = lo + round((x − lo)/s)·s)
reproduces them exactly; abqlab's integer grid (integer zero point z = round(−lo/s), the usual
convention, which GPTQ and the packed export share) is shifted by frac(m/d)·d and is not lossless.
This prints the relative squared weight error over the 210 linears for both (about 30 s, 1 core):

    OMP_NUM_THREADS=1 python experiments/formats/grid_check.py
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from abqlab.models.embedded import embedded_model_dir
from abqlab.quant.quantizer import fake_quant, from_groups, to_groups
from abqlab.quant.spec import QuantSpec

GROUP = 32


def main() -> None:
    weights: dict[str, torch.Tensor] = {}
    for path in sorted(embedded_model_dir().glob("*.safetensors")):
        weights.update(load_file(str(path)))
    spec = QuantSpec(bits=4, group=GROUP)  # abqlab's INT4 g32 asymmetric (integer zero point)
    g128 = QuantSpec(bits=4, group=128, partial_group=True)  # the W4A8 table's INT4 g128
    total = err_int = err_float = err_g128 = 0.0
    exact_layers = layers = 0
    for name, w in weights.items():
        if not name.endswith("proj.weight"):
            continue
        layers += 1
        grouped = to_groups(w, GROUP)
        lo, hi = grouped.amin(-1, keepdim=True), grouped.amax(-1, keepdim=True)
        step = (hi - lo).clamp(min=1e-12) / 15
        float_offset = from_groups(lo + torch.round((grouped - lo) / step) * step, w.shape)
        total += w.square().sum().item()
        err_int += (w - fake_quant(w, spec)).square().sum().item()
        err_float += (w - float_offset).square().sum().item()
        err_g128 += (w - fake_quant(w, g128)).square().sum().item()
        exact_layers += int((w - float_offset).abs().max().item() < 1e-6)
    print(f"{layers} linears, INT4 g{GROUP} asym RTN, relative squared weight error:")
    print(f"  abqlab integer zero point: {err_int / total:.3e}")
    print(f"  float offset (GGUF Q4_1 style): {err_float / total:.3e} "
          f"({exact_layers}/{layers} layers exact to 1e-6)")
    print(f"  for scale, abqlab INT4 g128 asym: {err_g128 / total:.3e}")


if __name__ == "__main__":
    main()
