"""Decode latency of a LLaMA-7B-shaped model with random weights (GPU).

Configs: FP16, W8A8, W4A8, W2A8 (s8 path), W2A8 via BTC, W4A16 (group 128). Every linear of
every decoder layer becomes an ``abqlab.kernels.QuantLinear`` built from a random export.
Two numbers per config and batch (1 and 8; prompt 128, 128 new tokens, greedy):
* ``decode_ms_per_token``: HF ``generate`` in eager mode (includes Python/dispatcher overhead),
  (time(128 new) - time(1 new)) / 127;
* ``linears_ms_per_token``: all 224 linears of one decode step at M = batch, replayed as one
  CUDA graph (kernel time of the GEMM part, activation quantization included).
Writes ``e2e_decode.csv`` / ``e2e_decode.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_info, graph_replay_ms, md_table  # noqa: E402

from abqlab.kernels import QuantLinear, _ext  # noqa: E402

CONFIGS = {"FP16": None, "W8A8": (8, 8, "auto"), "W4A8": (4, 8, "auto"),
           "W2A8": (2, 8, "auto"), "W2A8-btc": (2, 8, "btc"), "W4A16": (4, 16, "auto")}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_model(layers: int) -> nn.Module:
    """LLaMA-7B shapes (hidden 4096, MLP 11008, 32 heads, vocab 32000), random fp16 weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=2048)
    torch.set_default_dtype(torch.float16)
    try:
        with torch.device("cuda"):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(torch.float32)
    return model.eval()


def random_export(n: int, k: int, w_bits: int, a_bits: int) -> dict:
    levels = 2**w_bits
    group = 128 if a_bits == 16 else k
    groups = -(-k // group)
    return {
        "qweight": torch.randint(0, levels, (n, k), dtype=torch.uint8, device="cuda"),
        "scale": torch.full((n, groups), 0.02 / levels, device="cuda"),
        "zero": torch.full((n, groups), float(levels // 2), device="cuda"),
        "group_size": group, "w_bits": w_bits, "w_levels": levels, "a_bits": a_bits,
        "a_sym": False, "bias": None,
    }


def quantize(model: nn.Module, w_bits: int, a_bits: int, backend: str) -> None:
    """Replace every decoder linear by a QuantLinear over random codes."""
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in LINEARS:
                lin = getattr(parent, name, None)
                if isinstance(lin, nn.Linear):
                    e = random_export(lin.out_features, lin.in_features, w_bits, a_bits)
                    setattr(parent, name, QuantLinear.from_export(e, backend=backend))
                    del lin
        torch.cuda.empty_cache()


@torch.inference_mode()
def time_generate(model: nn.Module, batch: int, prompt: int, new: int) -> float:
    """Eager HF decode: ms per new token (prefill excluded)."""
    ids = torch.randint(0, 32000, (batch, prompt), device="cuda")
    kw = {"do_sample": False, "pad_token_id": 0, "eos_token_id": None}

    def run(n: int) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    run(4)  # warm up
    first = statistics.median(run(1) for _ in range(3))
    total = statistics.median(run(new) for _ in range(2))
    return (total - first) / (new - 1) * 1e3


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("e2e_decode.py needs a CUDA GPU")
    if _ext.load() is None:
        sys.exit("compiled kernels not found: python csrc/build.py ext")
    args.out.mkdir(parents=True, exist_ok=True)
    info = env_info() | {"layers": str(args.layers), "prompt": str(args.prompt),
                         "new_tokens": str(args.new)}
    rows = []
    for name in args.configs:
        model = build_model(args.layers)
        if CONFIGS[name] is not None:
            quantize(model, *CONFIGS[name])
        torch.cuda.reset_peak_memory_stats()
        weights_gib = torch.cuda.memory_allocated() / 2**30
        for batch in args.batches:
            row = {"config": name, "batch": batch, "weights_GiB": round(weights_gib, 2)}
            try:
                row["linears_ms_per_token"] = round(time_linears(model, batch), 3)
                row["decode_ms_per_token"] = round(
                    time_generate(model, batch, args.prompt, args.new), 3)
            except (RuntimeError, ValueError, TypeError) as err:
                row["error"] = str(err).splitlines()[0][:200]
            row["peak_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            rows.append(row)
            print(row, flush=True)
        del model
        gc.collect()
        torch.cuda.empty_cache()
    fields = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k)
                    if k in rows[0] else 99)
    with open(args.out / "e2e_decode.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    (args.out / "e2e_decode.md").write_text(md_table("Decode latency, LLaMA-7B shapes", info,
                                                     [{k: r.get(k, "") for k in fields}
                                                      for r in rows]))


if __name__ == "__main__":
    main()
