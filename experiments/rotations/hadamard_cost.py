"""What the online Hadamard costs at inference: op counts and median wall times of the rotation
(sign flip + FWHT + small dense factor) against the linear it precedes, on the CPU or a GPU.

Usage: python experiments/rotations/hadamard_cost.py [--threads 1] [--out cost.json]
       python experiments/rotations/hadamard_cost.py --device cuda --out gpu.json   # fp16
Writes a JSON record (times, counts, torch version, device, threads) and prints a Markdown table.
On CUDA a time is the median over repeats of (calls in a row between two synchronisations) /
calls, so launch overhead is included as a model's forward would see it (no CUDA graph).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from abqlab.rotation.hadamard import sylvester
from abqlab.rotation.online import orthonormal_hadamard

# (name, rotated width, linear out_features): the linear that reads the rotated activation
SHAPES = [
    ("SmolLM2 down_proj (1536 = 12·128 → 576)", 1536, 576),
    ("SmolLM2 head q/k (64 → attention)", 64, None),
    ("LLaMA-7B o_proj-size (4096 = 2^12 → 4096)", 4096, 4096),
    ("LLaMA-7B down_proj (11008 = 5504·2 → 4096)", 11008, 4096),
]


CUDA_CALLS = 50  # calls per timed repeat on a GPU
DEVICE = torch.device("cpu")  # set by main(): --device
DTYPE = torch.float32  # float16 on CUDA


def median_seconds(fn, repeats: int) -> float:
    calls = CUDA_CALLS if DEVICE.type == "cuda" else 1
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def measure(tokens: int, width: int, out: int | None, repeats: int) -> dict:
    rotation = orthonormal_hadamard(width, torch.Generator().manual_seed(0), "hadamard")
    rotation = rotation.to(DEVICE)
    x = torch.randn(tokens, width, device=DEVICE, dtype=DTYPE)
    row = {"tokens": tokens, "width": width, "factor": rotation.factor.shape[0],
           "ops_per_token": rotation.mults_per_row()}
    m, inner = rotation.factor.shape[0], rotation.inner
    left = rotation.factor.T.contiguous()
    with torch.no_grad():
        row["rotation_s"] = median_seconds(lambda: rotation(x), repeats)
        if rotation.inner_hadamard and inner <= 256:  # the same product as two small GEMMs
            right = (sylvester(inner).float() / inner**0.5).to(DEVICE, DTYPE)
            signs = rotation.signs.to(DTYPE)
            left = left.to(DTYPE)

            def kron_gemm() -> torch.Tensor:
                y = (x * signs).view(tokens, m, inner) @ right
                return (left @ y).view(tokens, width)

            tol = 1e-4 if DTYPE is torch.float32 else 2e-2
            assert torch.allclose(kron_gemm(), rotation(x), atol=tol, rtol=tol)
            row["kron_gemm_s"] = median_seconds(kron_gemm, repeats)
            row["kron_gemm_macs_per_token"] = m * inner * inner + (m * m * inner if m > 1 else 0)
        if width <= 4096:  # the dense matrix of a wider one costs minutes to even build here
            dense = rotation.matrix(torch.float32).to(DTYPE)
            row["dense_matmul_s"] = median_seconds(lambda: x @ dense, repeats)
        if out is not None:
            weight = torch.randn(out, width, device=DEVICE, dtype=DTYPE)
            row["linear_s"] = median_seconds(lambda: torch.nn.functional.linear(x, weight), repeats)
            row["linear_macs_per_token"] = out * width
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "hadamard_cost.json")
    parser.add_argument("--device", default="cpu", help="cpu (float32) or cuda (float16)")
    args = parser.parse_args()
    global DEVICE, DTYPE
    DEVICE = torch.device(args.device)
    DTYPE = torch.float16 if DEVICE.type == "cuda" else torch.float32
    torch.set_num_threads(args.threads)
    token_counts = (1, 16, 512, 4096) if DEVICE.type == "cuda" else (1, 16, 512)
    header = {"torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "threads": args.threads, "repeats": args.repeats,
              "device": torch.cuda.get_device_name(0) if DEVICE.type == "cuda" else "cpu",
              "dtype": str(DTYPE),
              "note": "median wall time; on the CPU the machine was shared with other jobs"}
    print("| shape | tokens | online rotation (FWHT) µs | as two small GEMMs µs | as one dense "
          "matmul µs | the linear µs | best rotation / linear | ops per token (sign, FWHT adds, "
          "dense MACs) |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for name, width, out in SHAPES:
        for tokens in token_counts:
            if width > 4096 and tokens > 16:  # a 5504-wide dense factor per token: see README
                continue
            rows.append({"shape": name, **measure(tokens, width, out, args.repeats)})
            args.out.write_text(json.dumps({**header, "rows": rows}, indent=1))  # kept if killed
            print(table_row(rows[-1]), flush=True)


def table_row(r: dict) -> str:
    """One Markdown row of the printed table."""
    lin = r.get("linear_s")
    ops = r["ops_per_token"]
    best = min(r["rotation_s"], r.get("kron_gemm_s", float("inf")))
    ratio = f"{best / lin:.2f}" if lin else "–"
    kron_us = f"{r['kron_gemm_s'] * 1e6:.0f}" if "kron_gemm_s" in r else "–"
    lin_us = f"{lin * 1e6:.0f}" if lin else "–"
    dense_us = f"{r['dense_matmul_s'] * 1e6:.0f}" if "dense_matmul_s" in r else "–"
    return (f"| {r['shape']} | {r['tokens']} | {r['rotation_s'] * 1e6:.1f} | {kron_us} | "
            f"{dense_us} | {lin_us} | {ratio} | "
            f"{ops['sign_mults']}, {ops['fwht_adds']}, {ops['dense_macs']} |")

if __name__ == "__main__":
    main()
