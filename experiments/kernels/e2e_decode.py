"""Decode latency of a LLaMA-7B-shaped model with random weights (GPU).

Every linear of every decoder layer becomes an ``abqlab.kernels.QuantLinear`` built from a
random export (FP16 keeps torch linears). Per config and batch:

* ``step_ms``: one whole decode step (all layers, attention over a static KV cache, LM head),
  captured once as a CUDA graph and replayed (the position advances inside the graph): the
  latency without Python or dispatcher overhead;
* ``linears_ms``: the 224 decoder linears alone at M = batch, one CUDA graph;
* ``eager_ms`` (``--eager``): HF ``generate`` in eager mode, per new token (CPU-bound: two
  Python op dispatches per linear).

Presets: ``goals`` (32 layers; FP16, W8A8, W4A8, W2A8 on the s8 path, W4A16, W2A16; batch 1
and 8; a few minutes), ``quick`` (2 layers). Writes ``decode.csv`` / ``decode.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_info, graph_replay_ms, md_table  # noqa: E402

from abqlab.kernels import QuantLinear, _ext  # noqa: E402

CONFIGS = {"FP16": None, "W8A8": (8, 8, "auto"), "W4A8": (4, 8, "auto"),
           "W2A8": (2, 8, "auto"), "W4A16": (4, 16, "auto"), "W2A16": (2, 16, "auto"),
           "W2A8-btc": (2, 8, "btc")}
PRESETS = {"goals": (32, ["FP16", "W8A8", "W4A8", "W2A8", "W4A16", "W2A16"], [1, 8]),
           "quick": (2, ["FP16", "W4A8", "W4A16"], [1])}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_model(layers: int, device: str = "cuda", hidden: int = 4096, inter: int = 11008,
                heads: int = 32, vocab: int = 32000) -> nn.Module:
    """LLaMA-7B shapes by default, random fp16 weights (fp32 on CPU)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, vocab_size=vocab,
                      max_position_embeddings=2048)
    dtype = torch.float16 if device == "cuda" else torch.float32
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def random_export(n: int, k: int, w_bits: int, a_bits: int, device: str) -> dict:
    levels = 2**w_bits
    group = 128 if a_bits == 16 else k
    groups = -(-k // group)
    return {
        "qweight": torch.randint(0, levels, (n, k), dtype=torch.uint8, device=device),
        "scale": torch.full((n, groups), 0.02 / levels, device=device),
        "zero": torch.full((n, groups), float(levels // 2), device=device),
        "group_size": group, "w_bits": w_bits, "w_levels": levels, "a_bits": a_bits,
        "a_sym": False, "bias": None,
    }


def quantize(model: nn.Module, w_bits: int, a_bits: int, backend: str) -> None:
    """Replace every decoder linear by a QuantLinear over random codes."""
    device = next(model.parameters()).device.type
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in LINEARS:
                lin = getattr(parent, name, None)
                if isinstance(lin, nn.Linear):
                    e = random_export(lin.out_features, lin.in_features, w_bits, a_bits, device)
                    setattr(parent, name, QuantLinear.from_export(e, backend=backend))
                    del lin
        if device == "cuda":
            torch.cuda.empty_cache()


@torch.inference_mode()
def decode_stepper(model: nn.Module, batch: int, prompt: int, steps: int,
                   gen: torch.Generator | None = None) -> tuple[Callable[[], torch.Tensor],
                                                              torch.Tensor, torch.Tensor]:
    """Prefill a static KV cache; return (step, token, position): ``step()`` runs one decode
    step on ``token`` [batch, 1] at ``position`` [1], writes the argmax into ``token``, advances
    ``position`` and returns the logits. Every tensor it touches is static: capturable."""
    from transformers import StaticCache

    device = next(model.parameters()).device
    cache = StaticCache(config=model.config, max_cache_len=prompt + steps + 8)
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt), generator=gen,
                        device="cpu").to(device)
    pos = torch.arange(prompt, device=device)
    logits = model(input_ids=ids, past_key_values=cache, cache_position=pos,
                   use_cache=True).logits
    token = logits[:, -1:].argmax(-1)
    position = torch.tensor([prompt], device=device)

    def step() -> torch.Tensor:
        with torch.inference_mode():
            out = model(input_ids=token, past_key_values=cache, cache_position=position,
                        use_cache=True).logits
            token.copy_(out[:, -1:].argmax(-1))
            position.add_(1)
        return out

    return step, token, position


@torch.inference_mode()
def time_decode_graph(model: nn.Module, batch: int, prompt: int = 128, steps: int = 64) -> float:
    """ms per decode step, the step replayed as one CUDA graph."""
    step, _, _ = decode_stepper(model, batch, prompt, steps + 4)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):  # warm up: workspaces, lazy init
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    graph.replay()
    return statistics.median(graph_replay_ms(graph, steps))


@torch.inference_mode()
def time_linears(model: nn.Module, batch: int, reps: int = 20) -> float:
    """All decoder linears at M = batch as one CUDA graph: ms per decode step."""
    mods = [getattr(p, n) for layer in model.model.layers
            for p in (layer.self_attn, layer.mlp) for n in LINEARS if hasattr(p, n)]
    xs = {m.in_features: torch.randn(batch, m.in_features, device="cuda",
                                     dtype=torch.float16) for m in mods}
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for m in mods:
            m(xs[m.in_features])
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for m in mods:
            m(xs[m.in_features])
    graph.replay()
    return statistics.median(graph_replay_ms(graph, reps))


@torch.inference_mode()
def time_generate(model: nn.Module, batch: int, prompt: int = 128, new: int = 32) -> float:
    """Eager HF decode: ms per new token (prefill excluded)."""
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt), device="cuda")
    kw = {"do_sample": False, "pad_token_id": 0, "eos_token_id": None}

    def run(n: int) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    run(2)
    return (run(new) - run(1)) / (new - 1) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--preset", choices=list(PRESETS), default="goals")
    ap.add_argument("--eager", action="store_true", help="also time eager HF generate")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("e2e_decode.py needs a CUDA GPU")
    if _ext.load() is None:
        sys.exit("compiled kernels not found: python csrc/build.py ext")
    layers, configs, batches = PRESETS[args.preset]
    args.out.mkdir(parents=True, exist_ok=True)
    info = env_info() | {"preset": args.preset, "layers": str(layers), "prompt": "128"}
    rows = []
    for name in configs:
        model = build_model(layers)
        if CONFIGS[name] is not None:
            quantize(model, *CONFIGS[name])
        weights_gib = torch.cuda.memory_allocated() / 2**30
        for batch in batches:
            row: dict[str, object] = {"config": name, "batch": batch,
                                      "weights_GiB": round(weights_gib, 2)}
            try:
                row["linears_ms"] = round(time_linears(model, batch), 3)
                row["step_ms"] = round(time_decode_graph(model, batch), 3)
                if args.eager:
                    row["eager_ms"] = round(time_generate(model, batch), 3)
            except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
                row["error"] = str(err).splitlines()[0][:200]
            rows.append(row)
            print(row, flush=True)
        del model
        gc.collect()
        torch.cuda.empty_cache()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(args.out / "decode.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    (args.out / "decode.md").write_text(md_table("Decode latency, LLaMA-7B shapes", info,
                                                 [{k: r.get(k, "") for k in fields}
                                                  for r in rows]))


if __name__ == "__main__":
    main()
