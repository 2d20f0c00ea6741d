"""Kernel benchmark (GPU): abqlab kernels vs torch baselines on LLaMA linear shapes.

Every timed call reads a different copy of the weights (copies rotated beyond 2x L2, so weights
come from HBM); calls are captured in a CUDA graph and timed with CUDA events (median). Columns:
``us``; ``GBps`` (bytes that must move / time: packed weights + scales/zeros + activations in
and out); ``roofline_us`` = those bytes / the device-to-device copy bandwidth measured at the
start of this run, and ``pct_roofline`` = roofline_us / us; ``TFLOPs``; ``speedup_vs_fp16``.
Our A8 rows come twice: ``act=quant`` includes per-token activation quantization (M <= 8: the
single fused GEMV kernel; M > 8: the quantize-pack kernel + GEMM), ``act=prequant`` times the
GEMM alone on already packed activations. Presets:

* ``goals`` (default): (N, K) = 4096x4096, 11008x4096, 4096x11008; M = 1, 8, 256, 1024;
  W2..W8 x {A8 (s8 path), A16 (group 128)}, torch fp16 / int8 / fp8 baselines (a few minutes)
* ``full``: 7 LLaMA shapes, M = 1..4096, W2/W4/W8 x A8/A16 and BTC W4A4 / W2A2 / W6A6
* ``quick``: 2 shapes, M = 1, 8, 256

Writes ``bench.csv`` and ``bench.md`` (device, versions, copy bandwidth) to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import copy_bandwidth, env_info, graph_replay_ms, md_table, rotated  # noqa: E402

from abqlab.kernels import _ext, ops  # noqa: E402
from abqlab.kernels import reference as ref  # noqa: E402

GOAL_SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]  # (N = out, K = in)
ALL_SHAPES = [*GOAL_SHAPES, (13824, 5120), (5120, 13824), (28672, 8192), (8192, 28672)]
BASELINES = ("torch-fp16", "torch-int_mm-int8", "torch-scaled_mm-fp8")


def _ours(ws: range, btc: tuple[tuple[int, int], ...] = ()) -> dict[str, tuple[int, int, str]]:
    """name -> (w_bits, a_bits, path)."""
    out = {f"W{w}A8": (w, 8, "s8") for w in ws} | {f"W{w}A16": (w, 16, "a16") for w in ws}
    return out | {f"W{w}A{a}-btc": (w, a, "btc") for w, a in btc}


PRESETS = {
    "goals": (GOAL_SHAPES, [1, 8, 256, 1024], _ours(range(2, 9)), BASELINES),
    "full": (ALL_SHAPES, [1, 2, 4, 8, 16, 64, 256, 1024, 4096],
             _ours(range(2, 9, 2), ((4, 4), (2, 2), (6, 6))), (*BASELINES, "torch-bf16")),
    "quick": (GOAL_SHAPES[:2], [1, 8, 256], _ours(range(2, 5, 2), ((4, 4),)), BASELINES[:1]),
}


def time_graph(calls: list[Callable[[], object]], budget_s: float = 0.3) -> float:
    """Median microseconds per call of ``calls`` replayed as one CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for c in calls[:2]:  # warm up (allocator, workspace, lazy init) outside the graph
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
    reps = max(5, min(50, int(budget_s / max(time.perf_counter() - t0, 1e-9))))
    times = [ms * 1e3 / len(calls) for ms in graph_replay_ms(graph, reps)]
    del graph
    return statistics.median(times)


def make_weights(name: str, n: int, k: int, spec: tuple[int, int, str] | None
                 ) -> tuple[list[dict[str, torch.Tensor]], int]:
    """Rotated weight copies of one method and the bytes one call must read of them."""
    if name == "torch-fp16" or name == "torch-bf16":
        dt = torch.float16 if name == "torch-fp16" else torch.bfloat16
        return rotated({"w": torch.randn(n, k, device="cuda", dtype=dt) * 0.02})
    if name == "torch-int_mm-int8":
        return rotated({"w": torch.randint(-128, 127, (n, k), dtype=torch.int8, device="cuda")})
    if name == "torch-scaled_mm-fp8":
        return rotated({"w": torch.randn(n, k, device="cuda").to(torch.float8_e4m3fn)})
    assert spec is not None
    w_bits, a_bits, _ = spec
    codes = torch.randint(0, 2**w_bits, (n, k), dtype=torch.int32, device="cuda")
    planes = ref.pack_planes(codes, w_bits)
    if a_bits == 16:
        groups = -(-k // 128)
        sz = torch.stack([torch.rand(n, groups, device="cuda") / 2**w_bits,
                          torch.full((n, groups), float(2 ** (w_bits - 1)), device="cuda")], -1)
        return rotated({"planes": planes, "sz": sz.to(torch.float16)})
    return rotated({
        "planes": planes,
        "scale_c": torch.rand(n, device="cuda") / 2**w_bits,
        "zero_i": torch.full((n,), 2 ** (w_bits - 1), dtype=torch.int32, device="cuda"),
        "w_sum": codes.sum(1, dtype=torch.int32),
    })


def make_call(name: str, spec: tuple[int, int, str] | None, act: str, w: dict[str, torch.Tensor],
              x: torch.Tensor, k: int) -> Callable[[], object]:
    """One timed call: ours (act = quant / prequant / -) or a torch baseline."""
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
    assert spec is not None
    w_bits, a_bits, path = spec
    if path == "a16":
        return lambda: ops.a16_gemm(x, w["planes"], w["sz"], 128, k, None)
    s8 = path == "s8"
    wargs = (w["planes"], w["scale_c"], w["zero_i"], w["w_sum"], None, k)
    if act == "quant":
        return lambda: ops.fused_linear(x, *wargs[:5], k, a_bits, False, 1.0, s8)
    packed = ops.act_quant_pack(x, a_bits, False, 1.0, s8)  # once, outside the timing
    gemm = ops.s8_gemm if s8 else ops.btc_gemm
    return lambda: gemm(*packed, *wargs, x.dtype)


def moved_bytes(name: str, spec: tuple[int, int, str] | None, act: str, wbytes: int, m: int,
                n: int, k: int) -> int:
    """Bytes one call must move: weights (+ scales), activations in, outputs."""
    if spec is None or act in ("quant", "-"):
        x_in = m * k * 2  # fp16 activations (int8 / fp8 baselines: their own width)
        if name == "torch-int_mm-int8" or name == "torch-scaled_mm-fp8":
            x_in = m * k
    else:  # pre-quantized activations: int8 rows or bit planes, padded to 256-bit blocks
        x_in = m * 32 * ref.padded_words(k) * (1 if spec[2] == "s8" else spec[1]) // (
            1 if spec[2] == "s8" else 8)
    return wbytes + x_in + m * n * 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--preset", choices=list(PRESETS), default="goals")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench.py needs a CUDA GPU")
    if _ext.load() is None:
        sys.exit("compiled kernels not found: python csrc/build.py ext")
    shapes, ms, ours, baselines = PRESETS[args.preset]
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    bw = copy_bandwidth()
    info = env_info() | {"preset": args.preset, "copy_bandwidth_GBps": f"{bw:.0f}"}
    print(info, flush=True)
    methods: list[tuple[str, tuple[int, int, str] | None, list[str]]] = [
        (b, None, ["-"]) for b in baselines]
    methods += [(name, spec, ["-"] if spec[2] == "a16" else ["quant", "prequant"])
                for name, spec in ours.items()]
    rows: list[dict[str, object]] = []
    for n, k in shapes:
        for name, spec, acts in methods:
            try:
                ws, wbytes = make_weights(name, n, k, spec)
            except (RuntimeError, TypeError) as err:  # e.g. fp8 unsupported here
                print(f"skip {name} {n}x{k}: {err}", flush=True)
                continue
            for m in ms:
                x = torch.randn(m, k, device="cuda", dtype=torch.float16)
                for act in acts:
                    try:
                        calls = [make_call(name, spec, act, ws[i % len(ws)], x, k)
                                 for i in range(max(len(ws), 8))]
                        us = time_graph(calls)
                    except (RuntimeError, ValueError, TypeError) as err:
                        print(f"{name} N={n} K={k} M={m}: failed: {err}", flush=True)
                        continue
                    nbytes = moved_bytes(name, spec, act, wbytes, m, n, k)
                    roof = nbytes / (bw * 1e9) * 1e6
                    rows.append({"N": n, "K": k, "M": m, "method": name, "act": act,
                                 "us": round(us, 3), "GBps": round(nbytes / us / 1e3, 1),
                                 "roofline_us": round(roof, 3),
                                 "pct_roofline": round(100 * roof / us, 1),
                                 "TFLOPs": round(2 * m * n * k / us / 1e6, 2)})
                    print(rows[-1], flush=True)
            del ws
            torch.cuda.empty_cache()
    fp16 = {(r["N"], r["K"], r["M"]): r["us"] for r in rows if r["method"] == "torch-fp16"}
    for r in rows:
        base = fp16.get((r["N"], r["K"], r["M"]))
        r["speedup_vs_fp16"] = round(base / r["us"], 3) if base else ""
    info["bench_seconds"] = f"{time.perf_counter() - t_start:.0f}"
    if not rows:
        sys.exit("no timings")
    with open(args.out / "bench.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (args.out / "bench.md").write_text(md_table("Kernel benchmark", info, rows))


if __name__ == "__main__":
    main()
