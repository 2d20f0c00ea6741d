"""The activation clip ratio and the online input rotation on the kernel path (CPU reference).

The reference quantizer with a clip ratio is bit-exact with ``FakeQuantLinear.quantized_input``
in fp32; exports carry the ratio and the rotation; ``QuantLinear`` applies both; exports that
predate them still load.
"""

from __future__ import annotations

import pytest
import torch
from kernel_exports import random_export
from torch import nn

fake_linear = pytest.importorskip("abqlab.quant.fake_linear")
export = pytest.importorskip("abqlab.quant.export")
spec = pytest.importorskip("abqlab.quant.spec")

from abqlab.kernels import ops  # noqa: E402
from abqlab.kernels import reference as ref  # noqa: E402
from abqlab.kernels.linear import QuantLinear, fake_quant_linear  # noqa: E402
from abqlab.rotation.online import across_heads, orthonormal_hadamard  # noqa: E402

CLIPS = [1.0, 0.95, 0.9, 0.8, 0.6180339887, 0.3, 1e-3]


def _activations(seed: int, rows: int = 9, k: int = 257) -> torch.Tensor:
    """Gaussian rows with outliers, a constant row, an all-positive row and repeated values."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, k, generator=gen) * 2
    x[:, :: 37] *= 25  # outliers: the clip matters
    x[0] = 0.0
    x[1] = x[1].abs() + 0.5
    x[2, : k // 2] = 0.5
    return x


def _dequant(aq: ref.ActQuant) -> torch.Tensor:
    return (aq.codes - aq.zero[:, None]).float() * aq.scale[:, None]


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize(("bits", "sym"), [(b, s) for b in range(1, 9) for s in (False, True)
                                           if b >= 2 or not s])
def test_quantize_act_bit_exact_with_fake_quant_linear(bits: int, sym: bool, clip: float) -> None:
    layer = fake_linear.FakeQuantLinear(nn.Linear(257, 3), None, spec.QuantSpec(bits, sym=sym))
    layer.a_clip = clip
    x = _activations(bits + 10 * sym)
    expected = layer.quantized_input(x)
    aq = ref.quantize_act(x, bits, sym, clip)
    assert torch.equal(_dequant(aq), expected)
    assert int(aq.codes.min()) >= 0 and int(aq.codes.max()) <= 2**bits - 1
    lo, hi = x.amin(1) * clip, x.amax(1) * clip
    if sym:  # the grid's scale follows the clipped absmax
        amax = torch.maximum(lo.abs(), hi.abs()).clamp(min=1e-8)
        assert torch.equal(aq.scale, amax / (2 ** (bits - 1) - 1))
    else:
        assert torch.equal(aq.scale, (hi - lo).clamp(min=1e-8) / (2**bits - 1))


def test_clip_changes_the_grid_and_clip_one_is_the_old_quantizer() -> None:
    x = _activations(0)
    plain, clipped = ref.quantize_act(x, 4, False), ref.quantize_act(x, 4, False, 0.8)
    assert bool((clipped.scale[3:] < plain.scale[3:]).all())
    assert not torch.equal(plain.codes, clipped.codes)
    xf = x.float()
    scale = (xf.amax(1) - xf.amin(1)).clamp(min=1e-8) / 15  # the definition before a_clip
    assert torch.equal(plain.scale, scale)


@pytest.mark.parametrize("clip", [0.0, -0.5, 1.01, float("nan")])
def test_clip_outside_unit_interval_is_refused(clip: float) -> None:
    with pytest.raises(ValueError, match="clip"):
        ref.quantize_act(torch.randn(2, 8), 4, False, clip)
    with pytest.raises(ValueError, match="clip"):
        ops.act_quant_pack(torch.randn(2, 8), 4, False, clip, False)


@pytest.mark.parametrize("int8", [False, True])
def test_ops_take_the_clip(int8: bool) -> None:
    x = _activations(3, rows=5, k=300)
    bits = 8 if int8 else 3
    packed, scale, zero, rowsum = ops.act_quant_pack(x, bits, True, 0.7, int8)
    aq = ref.quantize_act(x, bits, True, 0.7)
    assert torch.equal(scale, aq.scale) and torch.equal(zero, aq.zero)
    assert torch.equal(rowsum, aq.codes.sum(1, dtype=torch.int32))
    codes = packed[:, :300].int() + 128 if int8 else ref.unpack_planes(packed, 300)
    assert torch.equal(codes.int(), aq.codes)
    e = random_export(16, 300, 4, bits, 300, a_sym=True)
    layer = QuantLinear.from_export({**e, "a_clip": 0.7})
    args = (layer.planes, layer.scale_c, layer.zero_i, layer.w_sum, layer.bias, 300, bits, True)
    y = ops.fused_linear(x, *args, 0.7, int8)
    assert torch.equal(y, layer(x))
    assert not torch.equal(y, ops.fused_linear(x, *args, 1.0, int8))


def _rotated_layer(rotation: nn.Module, a_spec: spec.QuantSpec | None, clip: float,
                   group: int = -1) -> fake_linear.FakeQuantLinear:
    torch.manual_seed(0)
    lin = nn.Linear(rotation.size, 24)
    fake_linear.set_input_transform(lin, rotation)
    layer = fake_linear.FakeQuantLinear(lin, spec.QuantSpec(4, group=group), a_spec, "rotated")
    layer.a_clip = clip
    return layer


ROTATIONS = {
    "hadamard-256": lambda g: orthonormal_hadamard(256, g, "hadamard"),
    "hadamard-192": lambda g: orthonormal_hadamard(192, g, "hadamard"),  # 12 x 16: dense factor
    "across-heads": lambda g: across_heads(4, 32, g, "hadamard"),
    "random-96": lambda g: orthonormal_hadamard(96, g, "random"),
}


@pytest.mark.parametrize("name", list(ROTATIONS))
@pytest.mark.parametrize(("a_bits", "sym"), [(4, False), (8, True), (6, False), (16, False)])
def test_rotated_clipped_layer_runs_like_fake_quant(name: str, a_bits: int, sym: bool) -> None:
    rotation = ROTATIONS[name](torch.Generator().manual_seed(1))
    a_spec = None if a_bits == 16 else spec.QuantSpec(a_bits, sym=sym)
    layer = _rotated_layer(rotation, a_spec, 0.85)
    x = torch.randn(3, 5, rotation.size, generator=torch.Generator().manual_seed(2)) * 3
    with torch.no_grad():
        y_fake = layer(x)
        e = export.export_linear(layer)
        ql = QuantLinear.from_export(e)
        y = ql(x)
        xr = layer.input_transform(x)
        assert torch.equal(ql.input_rotation(x), xr)  # the same rotation, the same fp32 values
        xq = layer.quantized_input(xr).double()
        wq = layer.quantized_weight(layer.weight).double()
    assert e["a_clip"] == 0.85 and e["input_rotation"]["inner"] == rotation.inner
    bias = layer.bias.detach().double()
    exact = xq @ wq.T + bias
    # Every path differs from `exact` by fp32 roundings only: of the dequantized x and w
    # (2^-24 each), of an fp32 matmul (K 2^-24) and of the output, all relative to sum |x||w|;
    # bound: K 2^-23 of it (2x margin at least).
    bound = (xq.abs() @ wq.abs().T + bias.abs()) * rotation.size * 2**-23 + 1e-7
    for name, got in (("QuantLinear", y), ("fake_quant_linear", fake_quant_linear(x, e)),
                      ("FakeQuantLinear", y_fake)):
        assert bool(((got.double() - exact).abs() <= bound).all()), name
    assert float((y.double() - exact).abs().max()) < 1e-3 * float(exact.abs().max())


def test_export_fields_are_copies_and_rebuild_the_rotation() -> None:
    rotation = orthonormal_hadamard(64, torch.Generator().manual_seed(0), "hadamard")
    layer = _rotated_layer(rotation, spec.QuantSpec(4), 0.9)
    e = export.export_linear(layer)
    fields = e["input_rotation"]
    assert set(fields) == {"signs", "factor", "inner", "inner_hadamard"}
    assert fields["signs"].data_ptr() != rotation.signs.data_ptr()
    rebuilt = QuantLinear.from_export(e).input_rotation
    assert torch.equal(rebuilt.matrix(), rotation.matrix())


def test_strict_export_refuses_other_input_transforms() -> None:
    class Scale(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x

    lin = nn.Linear(32, 8)
    fake_linear.set_input_transform(lin, Scale())
    layer = fake_linear.FakeQuantLinear(lin, spec.QuantSpec(4), spec.QuantSpec(8), "scaled")
    with pytest.raises(ValueError, match="not an OnlineRotation"):
        export.export_linear(layer)
    assert export.export_linear(layer, strict=False)["input_rotation"] is None


def test_old_exports_load_with_defaults() -> None:
    e = random_export(16, 300, 4, 4, 300)
    assert "a_clip" not in e and "input_rotation" not in e
    layer = QuantLinear.from_export(e)
    assert layer.a_clip == 1.0 and layer.input_rotation is None
    x = torch.randn(4, 300, generator=torch.Generator().manual_seed(0))
    explicit = QuantLinear.from_export({**e, "a_clip": 1.0, "input_rotation": None})
    assert torch.equal(layer(x), explicit(x))
    torch.testing.assert_close(layer(x).double(), fake_quant_linear(x, e), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="clip"):
        QuantLinear.from_export({**e, "a_clip": 1.5})
