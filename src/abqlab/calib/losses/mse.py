"""Mean squared error to the float targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from abqlab.calib.losses.terms import LossInputs


def mse_fp(inputs: LossInputs) -> torch.Tensor:
    """MSE(d_q, d_fp): match the float model's own block output."""
    return F.mse_loss(inputs.output, inputs.target_fp)


def mse_fpstar(inputs: LossInputs) -> torch.Tensor:
    """MSE(d_q, d_fp*): match the float block applied to the quantized stream."""
    return F.mse_loss(inputs.output, inputs.target_fpstar)
