"""A Linear that fake-quantizes its weight and its input activation."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from abqlab.quant.quantizer import fake_quant, fake_quant_grouped, from_groups, qparams, to_groups
from abqlab.quant.spec import QuantSpec

WeightBias = tuple[torch.Tensor, torch.Tensor | None]
WeightTransform = Callable[[torch.Tensor, torch.Tensor | None], WeightBias]
ClipFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def apply_input_transform(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the input becomes ``module.input_transform(x)`` before the forward and
    before any forward hook sees it (GPTQ Hessians and statistics observe the transformed x)."""
    return (module.input_transform(args[0]), *args[1:])


def set_input_transform(module: nn.Module, transform: nn.Module) -> None:
    """Transform ``module``'s input at run time (an online rotation, abqlab.rotation); a
    ``FakeQuantLinear`` built from ``module`` keeps it."""
    if getattr(module, "input_transform", None) is not None:
        raise ValueError(f"{type(module).__name__} already has an input transform")
    module.input_transform = transform
    module.register_forward_pre_hook(apply_input_transform)


class FakeQuantLinear(nn.Module):
    """Drop-in replacement for ``nn.Linear`` with weight and per-token activation quantization.

    Calibration components hook in without subclassing: ``weight_transforms`` rewrite (weight,
    bias) before quantization (smoothing, compensation) and ``clip`` returns the (min, max) range
    of each weight group (learnable clipping). ``bake()`` makes them permanent: the transformed
    weight is stored and the grid (scale, zero per group) is fixed in ``w_scale``/``w_zero``.
    ``freeze()`` caches the quantized weight for fast evaluation.
    """

    def __init__(
        self,
        linear: nn.Linear,
        w_spec: QuantSpec | None,
        a_spec: QuantSpec | None,
        name: str = "",
    ) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.w_spec = w_spec
        self.a_spec = a_spec
        self.name = name
        self.weight_transforms: list[WeightTransform] = []
        self.clip: ClipFn | None = None
        self.quant_enabled = True
        self.a_clip = 1.0  # per-token activation range × a_clip (< 1 clips outliers)
        if getattr(linear, "input_transform", None) is not None:
            set_input_transform(self, linear.input_transform)
        self.register_buffer("w_scale", None)
        self.register_buffer("w_zero", None)
        self.register_buffer("w_g_idx", None)  # group of each input column (GPTQ act-order)
        self.register_buffer("lorc_u", None)  # LoRC: weight = Q(W) + lorc_u @ lorc_v
        self.register_buffer("lorc_v", None)
        self.register_buffer("frozen_weight", None, persistent=False)
        self.register_buffer("frozen_bias", None, persistent=False)
        if w_spec is not None and w_spec.group > 0:
            self.grouped(linear.weight.detach()[:1])  # raises if the group size does not fit

    def grouped(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight`` as [rows, n_groups, group_size] for this layer's weight spec."""
        assert self.w_spec is not None
        return to_groups(weight, self.w_spec.group, self.w_spec.partial_group)

    def transformed(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias after the calibration transforms (before quantization)."""
        weight, bias = self.weight, self.bias
        for transform in self.weight_transforms:
            weight, bias = transform(weight, bias)
        return weight, bias

    def weight_qparams(self, grouped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and zero per group: fixed after ``bake``, else from clipping or min/max."""
        assert self.w_spec is not None
        if self.w_scale is not None:
            return self.w_scale, self.w_zero
        lo, hi = self.clip(grouped) if self.clip is not None else (None, None)
        return qparams(grouped, self.w_spec, lo, hi)

    def quantized_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """Fake-quantize ``weight`` with this layer's spec and grid."""
        if self.w_spec is None or not self.quant_enabled:
            return weight
        if self.w_g_idx is not None:  # per-column groups: grid [rows, n_groups, 1] by g_idx
            scale, zero = self.w_scale[:, self.w_g_idx, 0], self.w_zero[:, self.w_g_idx, 0]
            return self.low_rank_added(fake_quant_grouped(weight, self.w_spec, scale, zero))
        grouped = self.grouped(weight)
        scale, zero = self.weight_qparams(grouped)
        quantized = from_groups(fake_quant_grouped(grouped, self.w_spec, scale, zero), weight.shape)
        return self.low_rank_added(quantized)

    def low_rank_added(self, quantized: torch.Tensor) -> torch.Tensor:
        """The quantized weight plus the LoRC correction U·V, when one is set."""
        if self.lorc_u is None:
            return quantized
        return quantized + (self.lorc_u @ self.lorc_v).to(quantized.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen_weight is not None:
            weight, bias = self.frozen_weight, self.frozen_bias
        else:
            weight, bias = self.transformed()
            weight = self.quantized_weight(weight)
        if self.quant_enabled:
            x = self.quantized_input(x)
        return F.linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        """What this layer's activation quantizer makes of ``x`` (``x`` itself when A16), whether
        or not ``quant_enabled``."""
        if self.a_spec is None:
            return x
        return fake_quant(x, self.a_spec, *self.act_range(x))

    def act_range(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The activation range per group, shrunk by ``a_clip``; (None, None): min/max."""
        if self.a_clip >= 1.0:
            return None, None
        assert self.a_spec is not None
        grouped = to_groups(x, self.a_spec.group, self.a_spec.partial_group)
        lo, hi = grouped.amin(dim=-1, keepdim=True), grouped.amax(dim=-1, keepdim=True)
        return lo * self.a_clip, hi * self.a_clip

    @torch.no_grad()
    def bake(self) -> None:
        """Store the transformed weight and fix the grid; clear transforms and clipping."""
        weight, bias = self.transformed()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        if bias is not None:
            self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        if self.w_scale is None:
            self.refresh_grid()  # with the learned clipping, before it is cleared
        self.weight_transforms = []
        self.clip = None

    @torch.no_grad()
    def refresh_grid(self) -> None:
        """Fix the grid anew on the stored weight: min/max, or the clipping while one is set
        (e.g. after a component rescaled a baked weight)."""
        if self.w_spec is None:
            return
        self.w_scale = self.w_zero = None
        scale, zero = self.weight_qparams(self.grouped(self.weight.detach()))
        self.set_grid(scale.detach().clone(), zero.detach().clone())

    def set_grid(
        self, scale: torch.Tensor, zero: torch.Tensor, g_idx: torch.Tensor | None = None
    ) -> None:
        """Fix the quantization grid (e.g. from GPTQ or a loaded checkpoint).

        ``g_idx`` (optional, [in_features]) names each input column's group when groups are
        not runs of consecutive columns (GPTQ with dynamic act-order groups).
        """
        self.w_scale, self.w_zero, self.w_g_idx = scale, zero, g_idx

    @torch.no_grad()
    def freeze(self) -> None:
        """Cache the quantized weight so forward skips re-quantizing."""
        weight, bias = self.transformed()
        self.frozen_weight = self.quantized_weight(weight).detach()
        self.frozen_bias = None if bias is None else bias.detach()

    def unfreeze(self) -> None:
        self.frozen_weight = None
        self.frozen_bias = None

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, name={self.name}, "
            f"w={self.w_spec}, a={self.a_spec}"
        )
