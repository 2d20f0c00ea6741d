"""End to end on the CPU: a tiny llama calibrated with online rotations (before down_proj and,
across heads, before o_proj) and an activation clip ratio < 1, exported strictly, run by
``QuantLinear`` (reference backend): every linear reproduces its fake-quantized layer."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calib"))
from calib_util import tiny_llama  # noqa: E402
from test_component import rtn  # noqa: E402

from abqlab.config import QuantConfig  # noqa: E402
from abqlab.kernels.linear import QuantLinear  # noqa: E402
from abqlab.quant.export import export_model  # noqa: E402
from abqlab.quant.fake_linear import FakeQuantLinear  # noqa: E402
from abqlab.rotation.online import OnlineRotation  # noqa: E402

Seen = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _record(model: torch.nn.Module, ids: torch.Tensor) -> Seen:
    """Each quantized linear's raw input (before its rotation pre-hook) and its output."""
    seen: Seen = {}
    handles = []
    for module in model.modules():
        if isinstance(module, FakeQuantLinear):
            def pre(mod, args, name=module.name):
                seen[name] = (args[0].detach().clone(), None)

            def post(mod, args, out, name=module.name):
                seen[name] = (seen[name][0], out.detach().clone())

            handles.append(module.register_forward_pre_hook(pre, prepend=True))
            handles.append(module.register_forward_hook(post))
    with torch.no_grad():
        model(ids)
    for handle in handles:
        handle.remove()
    return seen


def _exact(module: FakeQuantLinear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's output in float64 from its own quantized input and weight, and the bound of
    fp32 roundings around it (K 2^-23 of sum |x||w|: dequantized operands, matmul, output)."""
    with torch.no_grad():
        xr = module.input_transform(x) if hasattr(module, "input_transform") else x
        xq = module.quantized_input(xr).double()
        weight, bias = module.transformed()
        wq = module.quantized_weight(weight).double()
        b = torch.zeros(wq.shape[0], dtype=torch.float64) if bias is None else bias.double()
    exact = xq @ wq.T + b
    bound = (xq.abs() @ wq.abs().T + b.abs()) * module.in_features * 2**-23 + 1e-7
    return exact, bound


def test_rotated_clipped_model_runs_on_the_kernel_path() -> None:
    quant = QuantConfig(name="w4a4", w_bits=4, a_bits=4, a_clip=0.9)
    loaded = rtn(tiny_llama(seed=5), quant, {"rotation": {"online_o": True, "seed": 1}})
    model = loaded.model
    ids = torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(0))
    seen = _record(model, ids)
    exports = export_model(model)  # strict: rotations and clip ratios are accepted
    modules = {m.name: m for m in model.modules() if isinstance(m, FakeQuantLinear)}
    assert set(exports) == set(modules) == set(seen) and len(exports) == 14
    rotated = {name for name, e in exports.items() if e["input_rotation"] is not None}
    assert rotated == {f"model.layers.{i}.{p}" for i in (0, 1)
                       for p in ("mlp.down_proj", "self_attn.o_proj")}
    for name, e in exports.items():
        module, (x, y_fake) = modules[name], seen[name]
        assert e["a_clip"] == 0.9
        assert isinstance(getattr(module, "input_transform", None), OnlineRotation) == (
            name in rotated)
        with torch.no_grad():
            y = QuantLinear.from_export(e)(x)
        exact, bound = _exact(module, x)
        assert y.shape == y_fake.shape and y.dtype == torch.float32
        assert bool(((y.double() - exact).abs() <= bound).all()), name
        assert bool(((y_fake.double() - exact).abs() <= bound).all()), name
        assert float((y - y_fake).abs().max()) <= 2e-4 * float(y_fake.abs().max()), name
