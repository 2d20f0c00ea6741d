"""Instruction budget of the GEMV kernels, read from their compiled SASS (no GPU needed).

A streaming GEMV stays memory-bound only while an SM issues fewer warp-instructions than the
bytes it receives allow: on an H100 (≈3.0 TB/s over 132 SMs at ≈1.98 GHz, ≤ 4 issues per
clock) the limit is ≈ 0.35 warp-instructions per weight byte; 0.30 is the design target.

For every kernel this tool finds the main loop in the SASS (the backward branch whose body holds
the most tensor-core instructions and no EXIT / barrier, which rules out out-of-line blocks
that jump back; the innermost such loop on ties), counts the instructions in its body, and
divides by the weight bytes one trip of that body consumes. The bytes follow from
the MMA count: each ``HMMA.16816`` multiplies a 16 x 16 weight tile, each ``IMMA.16832`` a
16 x 32 tile, each ``BMMA.168256`` a 16 x 256 tile of one bit plane (shared by the ``P``
activation planes); a tile of ``Q``-bit weights is ``rows * k * Q / 8`` bytes.

Usage: ``python csrc/budget.py SASS_TXT [--all]`` (prints a Markdown table of GEMV kernels).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

TARGET = 0.30  # warp-instructions per weight byte (memory-bound condition with margin)
_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+([^;]*?)\s*;")
_BRANCH = re.compile(r"\bBRA(?:\.\w+)*\s+(?:`\()?(0x[0-9a-f]+)")
MMA = re.compile(r"\b(HMMA|IMMA|BMMA|HGMMA|IGMMA|BGMMA)\b")
_NOT_IN_LOOP = re.compile(r"\b(EXIT|RET|BAR|BSYNC\.RECONVERGENT)\b")


@dataclass(frozen=True)
class Kind:
    """What a kernel computes: path ('btc', 's8', 'a16h', 'a16b', 'act'), weight/act bits."""

    path: str
    w_bits: int
    a_bits: int
    gemv: bool
    variant: str = ""  # "per-word": a16 GEMV for small groups; "pipe": pipelined GEMM


@dataclass(frozen=True)
class LoopBudget:
    """Main-loop statistics of one kernel."""

    instructions: int
    mma: int
    weight_bytes: float
    ldg_bytes: int  # bytes per trip fetched from global memory by LDG / LDGSTS (warp total)

    @property
    def per_byte(self) -> float:
        return self.instructions / self.weight_bytes if self.weight_bytes else float("inf")


def sass_functions(text: str) -> dict[tuple[str, str], str]:
    """(arch, mangled name) -> SASS body, parsed from ``cuobjdump --dump-sass``."""
    funcs: dict[tuple[str, str], str] = {}
    arch, key, begin = "", None, 0
    for m in re.finditer(r"arch = (sm_\w+)|Function : (\S+)", text):
        if key is not None:
            funcs[key] = text[begin:m.start()]
            key = None
        if m.group(1):
            arch = m.group(1)
        else:
            key, begin = (arch, m.group(2)), m.end()
    if key is not None:
        funcs[key] = text[begin:]
    return funcs


def classify(name: str) -> Kind | None:
    """Path and bit widths of a mangled kernel name (None for helpers)."""
    gemv = "gemv_kernel" in name or name.endswith("ELi1ELi1ELi1ELi8EEEv13AbqGemmParams")
    variant = "per-word" if re.search(r"GemvA16ILi\dE\w+?Lb0E", name) else ""
    if "pipe_kernel" in name:
        variant = "pipe"  # pipelined GEMM (M >= 256)
    if m := re.search(r"(?:GemvBtc|BtcCore)ILi(\d)ELi(\d)E", name):
        return Kind("btc", int(m.group(1)), int(m.group(2)), gemv, variant)
    if m := re.search(r"(?:GemvS8|S8Core|PipeS8)ILi(\d)E", name):
        return Kind("s8", int(m.group(1)), 8, gemv, variant)
    if m := re.search(r"(?:GemvA16|A16Core|PipeA16)ILi(\d)E6__half", name):
        return Kind("a16h", int(m.group(1)), 16, gemv, variant)
    if m := re.search(r"(?:GemvA16|A16Core|PipeA16)ILi(\d)E13__nv_bfloat16", name):
        return Kind("a16b", int(m.group(1)), 16, gemv, variant)
    if "act_quant_pack_kernel" in name:
        return Kind("act", 0, 0, False)
    return None


def instructions(body: str) -> list[tuple[int, str]]:
    """(address, instruction text) of every SASS instruction in a function body."""
    return [(int(a, 16), ins) for a, ins in _INSTR.findall(body)]


def _mma_bytes(op: str, kind: Kind) -> float:
    """Unique weight bytes consumed by one tensor-core instruction of ``kind``."""
    if op.startswith("HMMA.16816"):
        return 16 * 16 * kind.w_bits / 8
    if op.startswith("IMMA.16832"):
        return 16 * 32 * kind.w_bits / 8
    if op.startswith("BMMA.168256"):
        return 16 * 256 / 8 / kind.a_bits  # one plane tile, reused for each activation plane
    raise ValueError(f"no weight-byte rule for {op!r}")


def _ldg_bytes(ins: str) -> int:
    m = re.match(r"(?:@!?U?P\w+\s+)?(LDG|LDGSTS)\S*", ins)
    if not m:
        return 0
    width = re.search(r"\.(128|64|U8|S8|U16|S16)\b", m.group(0))
    bits = {"128": 128, "64": 64, "U8": 8, "S8": 8, "U16": 16, "S16": 16}.get(
        width.group(1) if width else "", 32)
    return bits // 8 * 32


def main_loop(body: str, kind: Kind) -> LoopBudget | None:
    """Budget of the main loop of one kernel (None when no loop holds an MMA)."""
    ins = instructions(body)
    addr = [a for a, _ in ins]
    best: tuple[int, int, int, int] | None = None  # (mma, -span, lo, hi) of the chosen loop
    for i, (a, text) in enumerate(ins):
        b = _BRANCH.search(text)
        if not b:
            continue
        target = int(b.group(1), 16)
        if target >= a:
            continue
        lo = next(j for j, x in enumerate(addr) if x >= target)
        body = [t for _, t in ins[lo:i + 1]]
        n_mma = sum(1 for t in body if MMA.search(t))
        if n_mma == 0 or any(_NOT_IN_LOOP.search(t) for t in body):
            continue
        cand = (n_mma, -(i - lo), lo, i)
        if best is None or cand[:2] > best[:2]:
            best = cand
    if best is None:
        return None
    _, _, lo, hi = best
    loop = [t for _, t in ins[lo:hi + 1] if not t.startswith("NOP")]
    wbytes = 0.0
    for t in loop:
        m = MMA.search(t)
        if m:
            wbytes += _mma_bytes(t[m.start():], kind)
    return LoopBudget(len(loop), sum(1 for t in loop if MMA.search(t)), wbytes,
                      sum(_ldg_bytes(t) for t in loop))


def gemv_budgets(sass_text: str) -> dict[tuple[str, Kind], LoopBudget]:
    """(arch, kind) -> main-loop budget of every GEMV kernel in a SASS dump."""
    out: dict[tuple[str, Kind], LoopBudget] = {}
    for (arch, name), body in sass_functions(sass_text).items():
        kind = classify(name)
        if kind is None or not kind.gemv:
            continue
        budget = main_loop(body, kind)
        if budget is not None:
            out[(arch, kind)] = budget
    return out


ROWS = (("a16h", "", "WxA16 fp16"), ("a16b", "", "WxA16 bf16"),
        ("a16h", "per-word", "WxA16 fp16, groups < 32*kW"),
        ("a16b", "per-word", "WxA16 bf16, groups < 32*kW"),
        ("s8", "", "WxA8 (s8)"), ("btc", "", "WxA8 (BTC)"))


def table(budgets: dict[tuple[str, Kind], LoopBudget], arch: str = "sm_90a") -> str:
    """Markdown table: warp-instructions per weight byte, one row per path, one column per W."""
    rows = ["| path | " + " | ".join(f"W{q}" for q in range(1, 9)) + " |",
            "|---|" + "---|" * 8]
    for path, variant, label in ROWS:
        cells = []
        for q in range(1, 9):
            hit = [b for (a, k), b in budgets.items()
                   if a == arch and k.path == path and k.w_bits == q and k.variant == variant
                   and (path != "btc" or k.a_bits == 8)]
            cells.append(f"{hit[0].per_byte:.2f}" if hit else "-")
        if any(c != "-" for c in cells):
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sass", type=Path, help="cuobjdump --dump-sass output (csrc/build.py cubin)")
    ap.add_argument("--arch", default="sm_90a")
    ap.add_argument("--all", action="store_true", help="one line per kernel instead of a table")
    args = ap.parse_args()
    budgets = gemv_budgets(args.sass.read_text())
    if not budgets:
        sys.exit("no GEMV kernels found")
    if args.all:
        for (arch, k), b in sorted(budgets.items(), key=lambda x: (x[0][0], x[0][1].path,
                                                                   x[0][1].variant,
                                                                   x[0][1].w_bits,
                                                                   x[0][1].a_bits)):
            print(f"{arch} {k.path}{'/' + k.variant if k.variant else ''} W{k.w_bits}A{k.a_bits}: "
                  f"{b.instructions} instr, "
                  f"{b.mma} MMA, {b.weight_bytes:.0f} weight B, {b.ldg_bytes} LDG B -> "
                  f"{b.per_byte:.3f} per byte")
    else:
        print(table(budgets, args.arch))


if __name__ == "__main__":
    main()
