"""GPU checks of the activation clip ratio (and an online input rotation) in the CUDA kernels.

Needs a CUDA GPU and the extension (``python csrc/build.py ext``); run with ``-m gpu``
(csrc/gpu_all.sh runs it; ``ABQLAB_GPU_QUICK=1`` trims the shapes).
Exact: act_quant_pack (scale, zero, code sums, packed codes) and the fused GEMV (M <= 8) without
bias, whose output is ``dtype((sa * sw) * float(E))`` with the exact integer E, so the CPU
recomputes it bit for bit from the reference quantizer.
"""

from __future__ import annotations

import os

import pytest
import torch
from kernel_exports import cuda_extension_or_skip, random_export

from abqlab.kernels import ops
from abqlab.kernels import reference as ref
from abqlab.kernels.linear import QuantLinear, fake_quant_linear

pytestmark = pytest.mark.gpu

EXT = cuda_extension_or_skip()
DEV = torch.device("cuda")
SHAPES = [(1, 37, 300), (5, 16, 512), (8, 100, 1000), (1, 40, 9000), (9, 45, 777),
          (130, 64, 2100)]
CLIPS = [0.9, 0.55]
if os.environ.get("ABQLAB_GPU_QUICK") == "1":  # csrc/gpu_all.sh's quick grid / sanitizer
    SHAPES = [(1, 37, 300), (8, 100, 1000), (9, 45, 777)]


def _stream() -> int:
    return torch.cuda.current_stream().cuda_stream


def _x(m: int, k: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(m, k, generator=gen) * 3
    x[:, ::29] *= 20  # outliers: the clip saturates codes
    x[0, : k // 2] = 0.5
    return x.to(dtype)


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize(("bits", "sym"), [(b, s) for b in range(1, 9) for s in (False, True)
                                           if b >= 2 or not s])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_act_quant_pack_clip_exact(bits: int, sym: bool, dtype: torch.dtype, clip: float) -> None:
    gen = torch.Generator().manual_seed(bits)
    for int8 in ([False, True] if bits == 8 else [False]):
        for m, _, k in SHAPES:
            x = _x(m, k, dtype, gen)
            expect = ops._act_ref(x, bits, sym, clip, int8)
            outs = [torch.full_like(t, -7, device=DEV) if t.dtype != torch.float32
                    else torch.full_like(t, float("nan"), device=DEV) for t in expect]
            EXT.act_quant_pack(x.to(DEV), *outs, bits, sym, clip, int8, _stream())
            torch.cuda.synchronize()
            for name, got, want in zip(("packed", "scale", "zero", "rowsum"), outs, expect,
                                       strict=True):
                assert torch.equal(got.cpu(), want), (name, m, k, int8)
            via_op = ops.act_quant_pack(x.to(DEV), bits, sym, clip, int8)
            assert all(torch.equal(a.cpu(), b) for a, b in zip(via_op, expect, strict=True))


def _weights(n: int, k: int, w_bits: int, gen: torch.Generator) -> tuple:
    w = torch.randint(0, 2**w_bits, (n, k), generator=gen, dtype=torch.int32)
    w_scale = (torch.rand(n, generator=gen) + 0.01) * 50 / (k * 2**w_bits)  # finite in fp16
    return w, (ref.pack_planes(w, w_bits), w_scale,
               torch.randint(0, 2**w_bits, (n,), generator=gen, dtype=torch.int32),
               w.sum(1, dtype=torch.int32))


def _expected_fused(x: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor,
                    w_zero: torch.Tensor, a_bits: int, sym: bool, clip: float) -> torch.Tensor:
    """The GEMV epilogue without bias, (sa * sw) * float(E) in fp32, from the CPU quantizer."""
    aq = ref.quantize_act(x, a_bits, sym, clip)
    k = x.shape[1]
    za, zw = aq.zero.long()[:, None], w_zero.long()[None, :]
    e = (ref.int_dot(aq.codes, w) - za * w.long().sum(1)[None, :]
         - zw * aq.codes.long().sum(1)[:, None] + k * za * zw)
    y = (aq.scale[:, None] * w_scale[None, :]) * e.to(torch.float32)
    return y.to(x.dtype)


@pytest.mark.parametrize(("w_bits", "a_bits", "int8"), [(4, 8, True), (2, 8, True), (4, 4, False),
                                                         (3, 6, False), (2, 2, False)])
@pytest.mark.parametrize("sym", [False, True])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_linear_clip_exact(w_bits: int, a_bits: int, int8: bool, sym: bool,
                                 dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(w_bits + 10 * a_bits)
    for m, n, k in [s for s in SHAPES if s[0] <= 8]:
        if (2**a_bits - 1) * (2**w_bits - 1) * k > ops.INT32_MAX:
            continue
        w, (planes, w_scale, w_zero, w_sum) = _weights(n, k, w_bits, gen)
        x = _x(m, k, dtype, gen)
        dev = [t.to(DEV) for t in (planes, w_scale, w_zero, w_sum)]
        for clip in CLIPS:
            y = ops.fused_linear(x.to(DEV), *dev, None, k, a_bits, sym, clip, int8).cpu()
            want = _expected_fused(x, w, w_scale, w_zero, a_bits, sym, clip)
            assert torch.equal(y.view(torch.int16), want.view(torch.int16)), (m, n, k, clip)
            bias = torch.randn(n, generator=gen)
            fused = ops.fused_linear(x.to(DEV), *dev, bias.to(DEV), k, a_bits, sym, clip, int8)
            gemm = ops.s8_gemm if int8 else ops.btc_gemm
            chain = gemm(*ops.act_quant_pack(x.to(DEV), a_bits, sym, clip, int8), *dev,
                         bias.to(DEV), k, dtype)
            assert torch.equal(fused, chain), (m, n, k, clip)
        full = ops.fused_linear(x.to(DEV), *dev, None, k, a_bits, sym, 1.0, int8).cpu()
        assert not torch.equal(full, y)  # the clip reaches the kernel


@pytest.mark.parametrize(("a_bits", "backend"), [(4, "auto"), (8, "auto"), (8, "btc")])
def test_quant_linear_cuda_rotation_and_clip(a_bits: int, backend: str) -> None:
    """A Hadamard-256 rotation (sign flips, FWHT, one division: the same fp16 values on the CPU
    and the GPU) and a clip ratio through QuantLinear on CUDA (M <= 8 fused and M > 8)."""
    from abqlab.rotation.online import orthonormal_hadamard

    gen = torch.Generator().manual_seed(a_bits)
    n, k = 96, 256
    rot = orthonormal_hadamard(k, gen, "hadamard")
    e = {**random_export(n, k, 4, a_bits, k, gen=gen), "a_clip": 0.8,
         "input_rotation": {"signs": rot.signs, "factor": rot.factor, "inner": rot.inner,
                            "inner_hadamard": rot.inner_hadamard}}
    layer = QuantLinear.from_export(e, backend=backend)
    for m in (3, 20):
        x = (torch.randn(m, k, generator=gen) * 2).to(torch.float16)
        y_cpu = layer(x)
        y_gpu = layer.to(DEV)(x.to(DEV)).cpu()
        layer.cpu()
        torch.testing.assert_close(y_gpu.float(), y_cpu.float(), rtol=1e-2, atol=1e-2)
        xr = layer.input_rotation(x)  # fp16, as on the GPU: the same activation codes
        sem = fake_quant_linear(xr.float(), {**e, "input_rotation": None})
        torch.testing.assert_close(y_gpu.double(), sem, rtol=2e-2, atol=5e-2)
