"""Kernel benchmark (GPU): abqlab kernels vs torch baselines on LLaMA linear shapes.

Every timed call reads a different copy of the weights (copies rotated beyond 2x L2, so weights
come from HBM). Our quantized paths include per-token activation quantization + packing in the
timed region; the torch baselines time the GEMM alone (their inputs are already quantized).
Calls are captured in a CUDA graph (no Python launch overhead) and timed with CUDA events; the
median over repetitions is reported. Writes ``bench.csv`` and ``bench.md`` (device, versions,
measured copy bandwidth) to ``--out``. Run: ``python experiments/kernels/bench.py --out DIR``.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_info, graph_replay_ms, md_table  # noqa: E402

from abqlab.kernels import _ext, ops  # noqa: E402
from abqlab.kernels import reference as ref  # noqa: E402

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008), (13824, 5120), (5120, 13824),
          (28672, 8192), (8192, 28672)]  # (N = out_features, K = in_features)
MS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096]
# name -> (w_bits, a_bits, path); A16 uses group 128, others per-channel weights
OURS = {"W4A16": (4, 16, "a16"), "W3A16": (3, 16, "a16"), "W2A16": (2, 16, "a16"),
        "W8A8-s8": (8, 8, "s8"), "W4A8-s8": (4, 8, "s8"), "W2A8-s8": (2, 8, "s8"),
        "W8A8-btc": (8, 8, "btc"), "W4A8-btc": (4, 8, "btc"), "W2A8-btc": (2, 8, "btc"),
        "W4A4-btc": (4, 4, "btc"), "W2A4-btc": (2, 4, "btc"), "W2A2-btc": (2, 2, "btc"),
        "W6A6-btc": (6, 6, "btc")}
BASELINES = ("torch-fp16", "torch-bf16", "torch-int_mm-int8", "torch-scaled_mm-fp8")


def time_graph(calls: list[Callable[[], object]], reps: int, budget_s: float = 2.0) -> float:
    """Median microseconds per call of ``calls`` replayed as one CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for c in calls[:2]:  # warm up (allocator, lazy init) outside the graph
            c()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for c in calls:
            c()
    t0 = time.perf_counter()
    graph.replay()
    torch.cuda.synchronize()
    reps = max(3, min(reps, int(budget_s / max(time.perf_counter() - t0, 1e-9))))
    times = [ms * 1e3 / len(calls) for ms in graph_replay_ms(graph, reps)]
    del graph
    return statistics.median(times)


def copy_bandwidth(nbytes: int = 1 << 30, reps: int = 20) -> float:
    """Device-to-device copy bandwidth in GB/s (read + write bytes)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    us = time_graph([lambda: dst.copy_(src)] * 4, reps)
    return 2 * nbytes / (us * 1e-6) / 1e9


def rotated(first: dict[str, torch.Tensor]) -> tuple[list[dict[str, torch.Tensor]], int]:
    """``first`` plus clones so that the copies together exceed 2x L2; bytes of one copy."""
    nbytes = sum(t.numel() * t.element_size() for t in first.values())
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    n = max(2, math.ceil(2 * l2 / max(nbytes, 1)) + 1)
    return [first] + [{k: t.clone() for k, t in first.items()} for _ in range(n - 1)], nbytes


def make_weights(name: str, n: int, k: int) -> tuple[list[dict[str, torch.Tensor]], int]:
    """Rotated weight copies of one method (ours or a baseline)."""
    if name in ("torch-fp16", "torch-bf16"):
        dt = torch.float16 if name == "torch-fp16" else torch.bfloat16
        return rotated({"w": torch.randn(n, k, device="cuda", dtype=dt) * 0.02})
    if name == "torch-int_mm-int8":
        return rotated({"w": torch.randint(-128, 127, (n, k), dtype=torch.int8, device="cuda")})
    if name == "torch-scaled_mm-fp8":
        return rotated({"w": torch.randn(n, k, device="cuda").to(torch.float8_e4m3fn)})
    w_bits, a_bits, _ = OURS[name]
    codes = torch.randint(0, 2**w_bits, (n, k), dtype=torch.int32, device="cuda")
    groups = -(-k // 128) if a_bits == 16 else 1
    sz = torch.stack([torch.rand(n, groups, device="cuda") / 2**w_bits,
                      torch.full((n, groups), float(2 ** (w_bits - 1)), device="cuda")], -1)
    return rotated({
        "planes": ref.pack_planes(codes, w_bits),
        "sz": sz.to(torch.float16),
        "scale_c": torch.rand(n, device="cuda") / 2**w_bits,
        "zero_i": torch.full((n,), 2 ** (w_bits - 1), dtype=torch.int32, device="cuda"),
        "w_sum": codes.sum(1, dtype=torch.int32),
    })


def make_call(name: str, w: dict[str, torch.Tensor], x: torch.Tensor, k: int) -> Callable:
    """One timed call: our path (activation quantize + pack + GEMM) or a torch baseline."""
    m = x.shape[0]
    if name in ("torch-fp16", "torch-bf16"):
        xd = x.to(w["w"].dtype)
        return lambda: torch.nn.functional.linear(xd, w["w"])
    if name == "torch-int_mm-int8":  # needs M > 16 and a multiple of 8: pad small batches
        xi = torch.randint(-128, 127, (max(32, -(-m // 8) * 8), k), dtype=torch.int8,
                           device="cuda")
        return lambda: torch._int_mm(xi, w["w"].t())
    if name == "torch-scaled_mm-fp8":
        xf = torch.randn(-(-m // 16) * 16, k, device="cuda").to(torch.float8_e4m3fn)
        one = torch.ones((), device="cuda")
        return lambda: torch._scaled_mm(xf, w["w"].t(), scale_a=one, scale_b=one,
                                        out_dtype=torch.bfloat16)
    w_bits, a_bits, path = OURS[name]
    if path == "a16":
        return lambda: ops.a16_gemm(x, w["planes"], w["sz"], 128, k, None)
    s8 = path == "s8"

    return lambda: ops.fused_linear(x, w["planes"], w["scale_c"], w["zero_i"], w["w_sum"], None,
                                    k, a_bits, False, s8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="2 shapes, 4 batch sizes")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench.py needs a CUDA GPU")
    if _ext.load() is None:
        sys.exit("compiled kernels not found: python csrc/build.py ext")
    shapes, ms = (SHAPES[:2], [1, 8, 64, 1024]) if args.quick else (SHAPES, MS)
    args.out.mkdir(parents=True, exist_ok=True)
    bw = copy_bandwidth()
    info = env_info() | {"copy_bandwidth_GBps": f"{bw:.0f}"}
    print(info, flush=True)
    methods = [*BASELINES, *OURS]
    rows: list[dict[str, object]] = []
    for n, k in shapes:
        for name in methods:
            try:
                ws, wbytes = make_weights(name, n, k)
            except (RuntimeError, TypeError) as err:  # e.g. fp8 unsupported here
                print(f"skip {name} {n}x{k}: {err}", flush=True)
                continue
            for m in ms:
                x = torch.randn(m, k, device="cuda", dtype=torch.float16)
                calls = [make_call(name, ws[i % len(ws)], x, k) for i in range(max(len(ws), 8))]
                try:
                    us = time_graph(calls, args.reps)
                except (RuntimeError, ValueError, TypeError) as err:
                    print(f"{name} N={n} K={k} M={m}: failed: {err}", flush=True)
                    continue
                gbps = (wbytes + 2 * m * (k + n)) / (us * 1e-6) / 1e9
                rows.append({"N": n, "K": k, "M": m, "method": name, "us": round(us, 3),
                             "GBps": round(gbps, 1), "pct_copy_bw": round(100 * gbps / bw, 1),
                             "TFLOPs": round(2 * m * n * k / (us * 1e-6) / 1e12, 2)})
                print(rows[-1], flush=True)
            del ws
            torch.cuda.empty_cache()
    fp16 = {(r["N"], r["K"], r["M"]): r["us"] for r in rows if r["method"] == "torch-fp16"}
    for r in rows:
        base = fp16.get((r["N"], r["K"], r["M"]))
        r["speedup_vs_fp16"] = round(base / r["us"], 3) if base else ""
    with open(args.out / "bench.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (args.out / "bench.md").write_text(md_table("Kernel benchmark", info, rows))


if __name__ == "__main__":
    main()
