"""torch.library ops (CPU reference path, fake impls) and the quantized Linear, no GPU needed."""

from __future__ import annotations

import pytest
import torch
from kernel_exports import random_export as _export
from torch._subclasses.fake_tensor import FakeTensorMode

import abqlab.kernels as K
from abqlab.kernels import ops
from abqlab.kernels import reference as ref
from abqlab.kernels.linear import QuantLinear, fake_quant_linear, pack_weight


def test_import_without_library() -> None:
    assert isinstance(K.available(), bool)
    assert not K.available() or torch.cuda.is_available()


def test_ops_registered_in_namespace() -> None:
    for name in ("act_quant_pack", "btc_gemm", "s8_gemm", "a16_gemm"):
        assert hasattr(torch.ops.abqlab, name)


@pytest.mark.parametrize("int8", [False, True])
def test_act_quant_pack_reference(int8: bool) -> None:
    x = torch.randn(5, 700, dtype=torch.float16)
    bits = 8 if int8 else 3
    packed, scale, zero, rowsum = ops.act_quant_pack(x, bits, False, 1.0, int8)
    aq = ref.quantize_act(x, bits, False)
    assert torch.equal(scale, aq.scale) and torch.equal(zero, aq.zero)
    assert torch.equal(rowsum, aq.codes.sum(1, dtype=torch.int32))
    if int8:
        assert packed.shape == (5, 768) and packed.dtype == torch.int8  # 256-bit padding
        assert torch.equal(packed[:, :700].int() + 128, aq.codes)
        assert int(packed[:, 700:].abs().sum()) == 0
    else:
        assert torch.equal(ref.unpack_planes(packed, 700), aq.codes.long())


def test_fake_impls_shapes() -> None:
    with FakeTensorMode():
        x = torch.empty(7, 300, dtype=torch.float16)
        packed, scale, zero, rowsum = ops.act_quant_pack(x, 4, True, 0.9, False)
        assert packed.shape == (4, 7, 16) and scale.shape == (7,) and zero.dtype == torch.int32
        a8, *_ = ops.act_quant_pack(x, 8, False, 1.0, True)
        assert a8.shape == (7, 512) and a8.dtype == torch.int8
        wp = torch.empty(3, 33, 16, dtype=torch.int32)
        f, i = torch.empty(33), torch.empty(33, dtype=torch.int32)
        y = ops.btc_gemm(packed, scale, zero, rowsum, wp, f, i, i, None, 300, torch.bfloat16)
        assert y.shape == (7, 33) and y.dtype == torch.bfloat16
        y = ops.s8_gemm(a8, scale, zero, rowsum, wp, f, i, i, f, 300, torch.int32)
        assert y.shape == (7, 33) and y.dtype == torch.int32
        y = ops.a16_gemm(x, wp, torch.empty(33, 3, 2, dtype=torch.float16), 128, 300, None)
        assert y.shape == (7, 33) and y.dtype == torch.float16
        y = ops.fused_linear(x, wp, f, i, i, None, 300, 4, True, 0.9, False)
        assert y.shape == (7, 33) and y.dtype == torch.float16


def test_opcheck_btc_gemm() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 100)
    packed, sa, za, asum = ops.act_quant_pack(x, 4, False, 1.0, False)
    w = torch.randint(0, 4, (9, 100), dtype=torch.int32)
    wp = ref.pack_planes(w, 2)
    args = (packed, sa, za, asum, wp, torch.rand(9), torch.ones(9, dtype=torch.int32),
            w.sum(1, dtype=torch.int32), None, 100, torch.float32)
    torch.library.opcheck(ops.btc_gemm, args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("out_dtype", [torch.int32, torch.float32])
def test_btc_and_s8_ops_agree(out_dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    k = 333
    x = torch.randn(4, k)
    w = torch.randint(0, 8, (6, k), dtype=torch.int32)
    wp = ref.pack_planes(w, 3)
    wargs = (wp, torch.rand(6), torch.full((6,), 3, dtype=torch.int32),
             w.sum(1, dtype=torch.int32), torch.randn(6), k, out_dtype)
    yb = ops.btc_gemm(*ops.act_quant_pack(x, 8, False, 1.0, False), *wargs)
    ys = ops.s8_gemm(*ops.act_quant_pack(x, 8, False, 1.0, True), *wargs)
    assert torch.equal(yb, ys)


@pytest.mark.parametrize(("w_bits", "a_bits", "levels", "a_sym", "group"), [
    (4, 4, None, False, 0), (2, 8, 5, False, 0), (3, 6, None, True, 0), (8, 8, None, True, 0),
    (1, 2, None, False, 0), (4, 16, None, False, 128), (2, 16, 5, False, 128),
    (3, 16, None, False, 0), (4, 8, None, False, 64)])
def test_quant_linear_matches_semantics(w_bits: int, a_bits: int, levels: int | None,
                                        a_sym: bool, group: int) -> None:
    n, k = 24, 300
    e = _export(n, k, w_bits, a_bits, group or k, levels, a_sym=a_sym)
    layer = QuantLinear.from_export(e)
    assert layer.storage_bits == ref.storage_bits(levels or 2**w_bits)
    x = torch.randn(2, 3, k)
    y = layer(x)
    assert y.shape == (2, 3, n) and y.dtype == x.dtype
    torch.testing.assert_close(y.double(), fake_quant_linear(x, e), rtol=1e-4, atol=1e-4)
    y16 = layer(x.to(torch.bfloat16))
    assert y16.dtype == torch.bfloat16


def test_quant_linear_backends_agree() -> None:
    e = _export(16, 200, 4, 8, 200)
    x = torch.randn(5, 200)
    ys = [QuantLinear.from_export(e, backend=b)(x) for b in ("auto", "btc", "s8")]
    assert torch.equal(ys[0], ys[1]) and torch.equal(ys[1], ys[2])


def test_export_validation() -> None:
    e = _export(4, 64, 2, 8, 64)
    with pytest.raises(ValueError, match="integer"):
        pack_weight(e | {"zero": e["zero"] + 0.5})
    with pytest.raises(ValueError, match="w_levels"):
        pack_weight(e | {"w_levels": 2})
    with pytest.raises(ValueError, match="scale"):
        pack_weight(e | {"scale": e["scale"][:, :0]})
    with pytest.raises(ValueError):
        QuantLinear.from_export(e | {"a_bits": 4}, backend="s8")
    with pytest.raises(ValueError):
        QuantLinear.from_export(e, backend="nope")


def test_int32_guard() -> None:
    with pytest.raises(ValueError, match="overflow"):
        ops.check_int_range(8, 8, 40000)
    ops.check_int_range(8, 8, 28672)  # LLaMA-2-70B down_proj fits
