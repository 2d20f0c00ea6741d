"""SpinQuant's R1 learned end to end: a rotation of the residual stream trained on the whole
quantized model's output.

The model is already rotated (``transform.rotate_model``: norms folded, head untied, a randomised
Hadamard Q on the residual). On top, a learned R = Cayley(θ) (identity at start, so training
starts from QuaRot): every linear reading the residual uses W R, every linear writing into it
Rᵀ W (b R), the embeddings E R and the head W R — the float function is unchanged for every θ.
Each step fake-quantizes the rotated weights and the activations as the run's ``QuantConfig``
says (STE through the rounding) and follows the gradient of the logits' loss with respect to θ:
``kl`` against the float model's next-token distribution (same window, quantization off) or
``ce`` on the window's next tokens (SpinQuant's loss). ``weights=False`` leaves the weights in
float in the loop, so R is fitted to the activations' error alone. The best rotation seen on the
held-out half of the windows is kept and folded into the float weights (``absorb``), after which
any calibrator (GPTQ, ABQ, RTN) quantizes the model as usual.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from abqlab.models.arch import ArchSpec, blocks_of, get_module, set_module
from abqlab.quant.apply import quantize_block
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.rotation.cayley import CayleyRotation
from abqlab.rotation.transform import rotate_residual

log = logging.getLogger(__name__)

LOSSES = ("kl", "ce")
TEACHER_CACHE_BYTES = 1 << 30  # KL targets of all windows kept in memory up to this size


@dataclass(frozen=True)
class ResidualTraining:
    """Steps of AdamW on the Cayley parameter (one window per step, cosine lr to 0)."""

    steps: int = 100
    lr: float = 1e-3
    loss: str = "kl"
    eval_every: int = 10  # held-out loss every this many steps (and at 0 and the end)
    batch: int = 1  # windows per step (their gradients accumulated)
    weights: bool = True  # fake-quantize the weights in the loop (False: activations/KV only,
    # for a calibrator such as GPTQ that brings its own, much smaller, weight error)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"residual loss={self.loss}: allowed: {', '.join(LOSSES)}")
        if self.steps < 1 or self.lr <= 0 or self.eval_every < 1 or self.batch < 1:
            raise ValueError("residual training needs steps >= 1, lr > 0, eval_every >= 1, "
                             f"batch >= 1: {self}")


class SharedRotation:
    """R = Cayley(θ), computed once per step and read by every transform and hook."""

    def __init__(self, rotation: CayleyRotation) -> None:
        self.rotation = rotation
        self.current: torch.Tensor | None = None

    def refresh(self) -> torch.Tensor:
        self.current = self.rotation()
        return self.current

    def get(self, dtype: torch.dtype) -> torch.Tensor:
        assert self.current is not None, "refresh() before the forward"
        return self.current.to(dtype)


def reader_transform(shared: SharedRotation) -> Any:
    return lambda w, b: (w @ shared.get(w.dtype), b)


def writer_transform(shared: SharedRotation) -> Any:
    def transform(w: torch.Tensor, b: torch.Tensor | None) -> Any:
        r = shared.get(w.dtype)
        return r.T @ w, None if b is None else b @ r

    return transform


def hook_reader(module: nn.Module, shared: SharedRotation) -> Any:
    """A float reader (not quantized): x ↦ x Rᵀ before it, the same as W ↦ W R."""
    return module.register_forward_pre_hook(
        lambda _m, args: (args[0] @ shared.get(args[0].dtype).T, *args[1:]))


def hook_writer(module: nn.Module, shared: SharedRotation) -> Any:
    """A float writer or the embedding: y ↦ y R after it."""
    return module.register_forward_hook(lambda _m, _a, out: out @ shared.get(out.dtype))


@contextmanager
def rotated_quantized(model: nn.Module, arch: ArchSpec, quant: Any, shared: SharedRotation
                      ) -> Iterator[list[FakeQuantLinear]]:
    """The model with every block fake-quantized and R applied; restored on exit."""
    originals: list[tuple[nn.Module, str, nn.Module]] = []
    handles, wrapped = [], []
    attention_specs = []
    for index, block in enumerate(blocks_of(model, arch)):
        before = {path: get_module(block, path) for path in arch.linears}
        attention = get_module(block, arch.attention)
        attention_specs.append((attention, getattr(attention, "abqlab_qkv", None)))
        quantize_block(block, arch, quant, f"{arch.blocks}.{index}")
        readers = {p for _, paths in arch.norm_readers for p in paths}
        for path, original in before.items():
            module = get_module(block, path)
            if module is not original:
                originals.append((block, path, original))
                wrapped.append(module)
            if path in readers:
                if module is original:
                    handles.append(hook_reader(module, shared))
                else:
                    module.weight_transforms.append(reader_transform(shared))
            elif path in arch.residual_writers:
                if module is original:
                    handles.append(hook_writer(module, shared))
                else:
                    module.weight_transforms.append(writer_transform(shared))
    handles.append(hook_writer(get_module(model, arch.embed), shared))
    handles.append(hook_reader(get_module(model, arch.lm_head), shared))
    try:
        yield wrapped
    finally:
        for handle in handles:
            handle.remove()
        for block, path, original in originals:
            set_module(block, path, original)
        for attention, specs in attention_specs:
            attention.abqlab_qkv = specs


@contextmanager
def quantization_off(model: nn.Module, wrapped: list[FakeQuantLinear]) -> Iterator[None]:
    """The float function of the rotated model: weights and activations not quantized."""
    attentions = [(m, m.abqlab_qkv) for m in model.modules() if getattr(m, "abqlab_qkv", None)]
    for module in wrapped:
        module.quant_enabled = False
    for module, _ in attentions:
        module.abqlab_qkv = {}
    try:
        yield
    finally:
        for module in wrapped:
            module.quant_enabled = True
        for module, specs in attentions:
            module.abqlab_qkv = specs


def float_log_probs(model: nn.Module, wrapped: list[FakeQuantLinear], window: torch.Tensor
                    ) -> torch.Tensor:
    """The float model's next-token log-probabilities on a window [1, seqlen - 1, vocab]."""
    with torch.no_grad(), quantization_off(model, wrapped):
        return model(input_ids=window).logits[:, :-1].float().log_softmax(-1)


def cached_teacher(model: nn.Module, wrapped: list[FakeQuantLinear], shared: SharedRotation,
                   windows: torch.Tensor, loss: str) -> list[torch.Tensor] | None:
    """KL targets of every window, computed once (bf16) when they fit in TEACHER_CACHE_BYTES;
    None: each step recomputes its own (CE needs none)."""
    if loss != "kl":
        return None
    tokens = windows.shape[0] * (windows.shape[1] - 1)
    if tokens * model.config.vocab_size * 2 > TEACHER_CACHE_BYTES:
        return None
    shared.refresh()  # the float function does not depend on R
    return [float_log_probs(model, wrapped, w[None]).to(torch.bfloat16) for w in windows]


def window_loss(model: nn.Module, wrapped: list[FakeQuantLinear], window: torch.Tensor,
                loss: str, teacher: torch.Tensor | None = None) -> torch.Tensor:
    """The quantized model's loss on one window [1, seqlen]: KL(float ‖ quantized) or CE."""
    logits = model(input_ids=window).logits[:, :-1].float()
    if loss == "ce":
        return F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten())
    teacher = float_log_probs(model, wrapped, window) if teacher is None else teacher.float()
    return F.kl_div(logits.log_softmax(-1), teacher, log_target=True, reduction="batchmean") / (
        logits.shape[1])


def held_out_loss(model: nn.Module, wrapped: list[FakeQuantLinear], shared: SharedRotation,
                  windows: torch.Tensor, loss: str,
                  teachers: list[torch.Tensor] | None = None) -> float:
    with torch.no_grad():
        shared.refresh()
        return float(sum(window_loss(model, wrapped, w[None], loss,
                                     None if teachers is None else teachers[i])
                         for i, w in enumerate(windows)) / len(windows))


def split_windows(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Train on the first half (at least one window), pick the best rotation on the rest."""
    if len(windows) < 2:
        raise ValueError("learning the residual rotation needs at least 2 calibration windows "
                         "(one to train on, one held out)")
    cut = max(1, len(windows) // 2)
    return windows[:cut], windows[cut:]


def learn_residual_rotation(model: nn.Module, arch: ArchSpec, quant: Any, windows: torch.Tensor,
                            training: ResidualTraining, seed: int) -> tuple[torch.Tensor, dict]:
    """Train R on the quantized model; returns (best R, summary with the loss curves)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    device = get_module(model, arch.embed).weight.device
    windows = windows.to(device)
    train, held_out = split_windows(windows)
    if not training.weights:
        quant = dataclasses.replace(quant, w_bits=16, layer_bits={})
    rotation = CayleyRotation(model.config.hidden_size, device)
    shared = SharedRotation(rotation)
    optimizer = torch.optim.AdamW([rotation.theta], lr=training.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / training.steps)))
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    curve: list[float] = []
    held: list[tuple[int, float]] = []
    best = (math.inf, torch.eye(rotation.n, device=device))
    try:
        with rotated_quantized(model, arch, quant, shared) as wrapped:
            teachers = cached_teacher(model, wrapped, shared, windows, training.loss)
            train_teachers = None if teachers is None else teachers[:len(train)]
            held_teachers = None if teachers is None else teachers[len(train):]
            bar = tqdm(range(training.steps + 1), desc="residual rotation", unit="step")
            for step in bar:
                if step % training.eval_every == 0 or step == training.steps:
                    value = held_out_loss(model, wrapped, shared, held_out, training.loss,
                                          held_teachers)
                    held.append((step, value))
                    if value < best[0]:
                        best = (value, shared.get(torch.float32).detach().clone())
                    bar.set_postfix(held_out=f"{value:.4g}", best=f"{best[0]:.4g}")
                if step == training.steps:
                    break
                optimizer.zero_grad(set_to_none=True)
                value = 0.0
                for k in range(training.batch):
                    index = (step * training.batch + k) % len(train)
                    shared.refresh()  # each window's graph needs its own R
                    part = window_loss(model, wrapped, train[index][None], training.loss,
                                       None if train_teachers is None else train_teachers[index])
                    (part / training.batch).backward()
                    value += float(part.detach()) / training.batch
                optimizer.step()
                schedule.step()
                curve.append(value)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    summary = {
        "steps": training.steps, "lr": training.lr, "loss": training.loss,
        "batch": training.batch, "teacher_cached": teachers is not None,
        "weights_quantized": training.weights,
        "train_windows": len(train), "held_out_windows": len(held_out),
        "train_curve": curve, "held_out_curve": held,
        "held_out_start": held[0][1], "held_out_best": best[0],
        "best_step": next(s for s, v in held if v == best[0]),
        "seconds": time.perf_counter() - start,
    }
    return best[1], summary


def absorb_residual(model: nn.Module, arch: ArchSpec, r: torch.Tensor) -> None:
    """Fold R into the float weights (embeddings, readers, writers, head), as the offline
    rotation does; the model remembers it for saving (``model.abqlab_learned_residual``)."""
    rotate_residual(model, arch, r.to(get_module(model, arch.embed).weight.device))
    model.abqlab_learned_residual = r.detach().cpu().clone()
