"""Block-scaled formats: MX (E8M0 scale per 32, OCP rule) and NVFP4 (E4M3 per 16 + fp32)."""

from __future__ import annotations

import pytest
import torch

from abqlab.quant.formats import get_format
from abqlab.quant.quantizer import fake_quant, qparams, to_groups
from abqlab.quant.spec import QuantSpec

MX = [("mxfp8", 8, torch.float8_e4m3fn), ("mxfp8_e5m2", 8, torch.float8_e5m2),
      ("mxfp6_e3m2", 6, None), ("mxfp6_e2m3", 6, None), ("mxfp4", 4, None)]


def weights(rows: int = 16, cols: int = 256, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=gen) * torch.exp(torch.randn(rows, 1, generator=gen))
    x.view(-1)[::37] *= 8.0  # outliers
    return x


@pytest.mark.parametrize(("name", "bits", "dtype"), MX, ids=[m[0] for m in MX])
def test_mx_scale_is_the_ocp_e8m0_rule(name: str, bits: int, dtype: torch.dtype | None) -> None:
    fmt = get_format(name)
    spec = QuantSpec(bits, True, 32, fmt=name)
    x = weights()
    grouped = to_groups(x, 32)
    scale, zero = qparams(grouped, spec)
    amax = grouped.abs().amax(-1, keepdim=True)
    expected = torch.exp2(torch.floor(torch.log2(amax.double())) - fmt.element.emax).float()
    assert torch.equal(scale, expected) and not zero.any()
    assert torch.equal(scale.to(torch.float8_e8m0fnu).float(), scale)  # representable in E8M0
    out = fake_quant(x, spec)
    elements = to_groups(out, 32) / scale
    assert torch.equal(fmt.element.round(elements), elements)  # on the element grid
    if dtype is not None:  # elements are torch's cast of x / X, bit for bit
        cast = (grouped / scale).clamp(-fmt.element.max_value, fmt.element.max_value).to(dtype)
        assert torch.equal(elements.view(torch.int32), cast.float().view(torch.int32))


def test_mxfp4_saturates_the_block_maximum_as_the_spec_says() -> None:
    x = torch.zeros(1, 32)
    x[0, 0], x[0, 1] = 7.9, 1.0  # ⌊log2 7.9⌋ = 2 = emax(E2M1): X = 1, 7.9 → 6
    out = fake_quant(x, QuantSpec(4, True, 32, fmt="mxfp4"))
    assert out[0, 0].item() == 6.0 and out[0, 1].item() == 1.0


def test_nvfp4_two_level_scales() -> None:
    x = weights(seed=1)
    spec = QuantSpec(4, True, 16, fmt="nvfp4")
    grouped = to_groups(x, 16)
    scale, _ = qparams(grouped, spec)
    outer = x.abs().max() / (6 * 448)
    block = scale / outer
    e4m3 = block.to(torch.float8_e4m3fn).float()
    assert torch.allclose(block, e4m3, rtol=1e-6, atol=0)  # block scales are E4M3 values
    assert float(block.max()) <= 448 and float(block.max()) >= 400  # the tensor max uses the range
    out = to_groups(fake_quant(x, spec), 16) / scale
    assert torch.allclose(get_format("nvfp4").element.round(out), out, atol=1e-5)
    assert float(out.abs().max()) <= 6.0 + 1e-5


def test_nvfp4_beats_mxfp4_and_fp4_channel_on_gaussian_weights() -> None:
    """Finer, non-power-of-two scales: a smaller error than MXFP4 (margin from the data)."""
    x = torch.randn(64, 512, generator=torch.Generator().manual_seed(3))
    err = {
        name: float((fake_quant(x, QuantSpec(4, True, g, fmt=name)) - x).pow(2).mean())
        for name, g in (("nvfp4", 16), ("mxfp4", 32), ("fp4_e2m1", -1))
    }
    assert err["nvfp4"] < 0.85 * min(err["mxfp4"], err["fp4_e2m1"]), err


def test_nvfp4_activation_scale_never_crosses_tokens() -> None:
    """As an activation quantizer the fp32 scale is per token: other tokens cannot change it."""
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(4))
    spec = QuantSpec(4, True, 16, fmt="nvfp4", activation=True)
    y = x.clone()
    y[:, 1:] *= 100.0
    assert torch.equal(fake_quant(x, spec)[:, 0], fake_quant(y, spec)[:, 0])
    weight_spec = QuantSpec(4, True, 16, fmt="nvfp4")  # per tensor: it does change
    assert not torch.equal(fake_quant(x, weight_spec)[:, 0], fake_quant(y, weight_spec)[:, 0])


@pytest.mark.parametrize("name", ["mxfp4", "nvfp4"])
def test_block_formats_pass_gradients_to_learnable_ranges(name: str) -> None:
    """Learnable clipping needs a gradient through the (rounded) block scale."""
    x = weights(4, 64, seed=5)
    grouped = to_groups(x, 32 if name == "mxfp4" else 16)
    factor = torch.full(grouped.shape[:-1] + (1,), 0.9, requires_grad=True)
    spec = QuantSpec(4, True, grouped.shape[-1], fmt=name)
    lo, hi = grouped.amin(-1, keepdim=True) * factor, grouped.amax(-1, keepdim=True) * factor
    scale, zero = qparams(grouped, spec, lo, hi)
    out = get_format(name).fake(grouped, scale, zero, spec)
    (out - grouped).pow(2).sum().backward()
    assert factor.grad is not None and factor.grad.abs().sum() > 0
