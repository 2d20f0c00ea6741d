"""Build and drive tests/kernels/host_harness.cu (the GEMV kernels' own code, run on the CPU).

Input file: 16 int32 header fields, then arrays (see ``run_gemv``; fused problems append the
clip ratio as one float32 after x); outputs are parsed by the functions here. Plain module (not
a conftest) so the GPU machine can import it without hydra."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from abqlab.kernels import reference as ref

REPO = Path(__file__).resolve().parents[2]
SRC = Path(__file__).resolve().parent / "host_harness.cu"
FLAGS = ("-std=c++17", "-O1", "-diag-suppress", "20014,20011", "-arch=sm_80")
PATHS = {"a16": 0, "s8": 1, "btc": 2}
DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def _build_module():
    spec = importlib.util.spec_from_file_location("abq_csrc_build", REPO / "csrc" / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)
    spec.loader.exec_module(mod)
    return mod


def build_harness() -> Path | None:
    """Compile the harness once per source hash (None without nvcc)."""
    build = _build_module()
    nvcc = build.find_nvcc()
    if nvcc is None:
        return None
    h = hashlib.sha256()
    for f in [SRC, *sorted((REPO / "csrc" / "include").rglob("*"))]:
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    h.update(" ".join(FLAGS).encode())
    out = REPO / "csrc" / "build" / "harness" / h.hexdigest()[:16] / "harness"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [nvcc, *FLAGS, f"-I{REPO / 'csrc' / 'include'}", str(SRC), "-o", str(out) + ".tmp"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"harness build failed:\n{res.stderr[-4000:]}")
        Path(str(out) + ".tmp").rename(out)
    return out


def run(exe: Path, header: list[int], arrays: list[np.ndarray]) -> bytes:
    """Run the harness on one input; return its raw output bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        with open(fin, "wb") as f:
            f.write(np.asarray(header + [0] * (16 - len(header)), dtype=np.int32).tobytes())
            for a in arrays:
                f.write(np.ascontiguousarray(a).tobytes())
        res = subprocess.run([str(exe), str(fin), str(fout)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"harness failed: {res.stderr}")
        return fout.read_bytes()


def bits16(t: torch.Tensor) -> np.ndarray:
    """fp16/bf16 tensor -> its raw uint16 bits."""
    return t.contiguous().view(torch.int16).numpy().view(np.uint16)


def planes_u32(codes: torch.Tensor, bits: int) -> np.ndarray:
    return ref.pack_planes(codes, bits).numpy().view(np.uint32)


@dataclass
class GemvCase:
    """One GEMV problem for the harness (and the matching reference inputs)."""

    path: str
    w_bits: int
    a_bits: int
    m: int
    n: int
    k: int
    dtype: torch.dtype = torch.float16
    group: int = 0  # a16: 0 = per channel
    fused: bool = False
    sym: bool = False
    out_i32: bool = False
    hoist: bool = True
    sms: int = 132
    x_pad: int = 0  # extra (junk) activation columns beyond K
    seed: int = 0
    pipe: bool = False  # run the pipelined GEMM (M >= 256 path) instead of the GEMV
    clip: float = 1.0  # fused: per-token activation range ratio

    @property
    def out_dtype(self) -> torch.dtype:
        """fp16/bf16 output follows the activations (fp32 activations give fp16)."""
        return torch.bfloat16 if self.dtype == torch.bfloat16 else torch.float16


@dataclass
class GemvResult:
    splits: int
    trips: int
    raw: torch.Tensor  # [M, N]: sum of split partials (float64)
    out: torch.Tensor  # [M, N] int32 or dtype


def run_gemv(exe: Path, c: GemvCase, tensors: dict[str, torch.Tensor]) -> GemvResult:
    """Run one case; ``tensors`` holds the inputs built by the caller (see test module)."""
    gs = c.group or c.k
    stride = c.k + c.x_pad
    out_kind = 0 if c.out_i32 else (2 if c.out_dtype == torch.bfloat16 else 1)
    header = [3 if c.pipe else 0, PATHS[c.path], c.w_bits, c.a_bits, DTYPES[c.dtype], c.m, c.n,
              c.k, gs,
              int(c.fused), int(c.sym), out_kind, int(c.hoist), c.sms,
              int("bias" in tensors), stride]
    arrays = [planes_u32(tensors["w"], c.w_bits)]
    if c.path == "a16":
        sz = (bits16(tensors["scale"]).astype(np.uint32)
              | (bits16(tensors["zero"]).astype(np.uint32) << 16))
        arrays += [sz, bits16(tensors["x"])]
    else:
        arrays += [tensors["w_scale"].numpy(), tensors["w_zero"].numpy().astype(np.int32),
                   tensors["w_sum"].numpy().astype(np.int32)]
        if c.fused:
            x = tensors["x"]
            arrays.append(x.numpy() if x.dtype == torch.float32 else bits16(x))
            arrays.append(np.array([c.clip], dtype=np.float32))
        else:
            arrays += [tensors["a"].numpy(), tensors["a_scale"].numpy(),
                       tensors["a_zero"].numpy().astype(np.int32),
                       tensors["a_sum"].numpy().astype(np.int32)]
    if "bias" in tensors:
        arrays.append(tensors["bias"].numpy())
    data = run(exe, header, arrays)
    splits, trips, _, _ = np.frombuffer(data[:16], dtype=np.int32)
    mn = c.m * c.n
    raw = torch.from_numpy(np.frombuffer(data[16:16 + 8 * mn], dtype=np.float64).copy())
    rest = data[16 + 8 * mn:]
    if c.out_i32:
        out = torch.from_numpy(np.frombuffer(rest, dtype=np.int32).copy())
    else:
        out = torch.from_numpy(np.frombuffer(rest, dtype=np.int16).copy()).view(c.out_dtype)
    return GemvResult(int(splits), int(trips), raw.view(c.m, c.n), out.view(c.m, c.n))


def float_bits(v: float) -> int:
    """The int32 whose bits are float32(v) (header fields carrying a float)."""
    return int(np.array([v], dtype=np.float32).view(np.int32)[0])
