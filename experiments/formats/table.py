"""experiments/formats/table.md from the results store only (runs.jsonl).

    python experiments/formats/table.py > experiments/formats/table.md
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from abqlab.track.store import read_records

STORE = Path(__file__).resolve().parent / "runs.jsonl"
WEIGHT_NAMES = {"int": "INT", "fp4_e2m1": "FP4", "fp8_e4m3": "FP8", "mxfp4": "MXFP4",
                "mxfp8": "MXFP8", "nvfp4": "NVFP4"}


def side(fmt: str, bits: int, group: int, sym: bool, weights: bool) -> str:
    if bits == 16:
        return "16"
    name = WEIGHT_NAMES.get(fmt, fmt)
    if fmt == "int":
        name = f"INT{bits}" + ("" if not weights else (" sym" if sym else ""))
    if fmt in ("mxfp4", "mxfp8", "nvfp4") or not weights:
        return name
    return f"{name} " + {-1: "ch", 0: "tensor"}.get(group, f"g{group}")


def row_of(config: dict[str, Any]) -> tuple[str, str, str]:
    """(weights / activations [+ KV], method, variant) of a record."""
    q, c = config["quant"], config["calib"]
    pair = (f"W {side(q['w_format'], q['w_bits'], q['w_group'], q['w_sym'], True)} / "
            f"A {side(q['a_format'], q['a_bits'], q['a_group'], q['a_sym'], False)}")
    if q["k_bits"] != 16:
        pair += (f" / KV {q['kv_format'] if q['kv_format'] != 'int' else 'INT'}{q['k_bits']}"
                 f" per-{q['kv_granularity']}")
    variant = []
    if q.get("w_scale_rule", "none") != "none":
        variant.append(q["w_scale_rule"].upper())
    rank = c.get("lorc", {}).get("rank", 0)
    if rank:
        variant.append(f"LoRC{rank}")
    return pair, c["name"].upper(), "+".join(variant) or "plain"


def latest_ok(kind: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The newest ok record per row, for eval ``kind`` (ppl | zeroshot)."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in read_records(STORE):
        if record.get("status") != "ok" or record["config"]["eval"]["name"] != kind:
            continue
        out[row_of(record["config"])] = record
    return out


def ppl(records: dict, key: tuple[str, str, str]) -> str:
    r = records.get(key)
    return "—" if r is None else f"{r['metrics']['ppl/wiki']:.2f}"


def value(records: dict, key: tuple[str, str, str]) -> float | None:
    r = records.get(key)
    return None if r is None else r["metrics"]["ppl/wiki"]


MAIN = ["W INT4 g128 / A INT8", "W INT4 sym g128 / A INT8", "W FP4 g128 / A FP8",
        "W MXFP4 / A MXFP8", "W NVFP4 / A FP8", "W INT4 g128 / A FP8"]
VARIANTS = [("RTN", "plain"), ("RTN", "M1"), ("RTN", "M2"), ("RTN", "LoRC8"),
            ("GPTQ", "plain"), ("GPTQ", "M1"), ("GPTQ", "M2"), ("GPTQ", "LoRC8")]


def main_table(records: dict) -> list[str]:
    lines = ["| W / A | " + " | ".join(f"{m} {v}" for m, v in VARIANTS) + " |",
             "|---|" + "---|" * len(VARIANTS)]
    for pair in MAIN:
        lines.append(f"| {pair} | " + " | ".join(ppl(records, (pair, m, v))
                                                 for m, v in VARIANTS) + " |")
    return lines


def simple_table(records: dict, pairs: list[str], methods: list[str]) -> list[str]:
    lines = ["| W / A | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for pair in pairs:
        lines.append(f"| {pair} | " + " | ".join(ppl(records, (pair, m, "plain"))
                                                 for m in methods) + " |")
    return lines


def zeroshot_table(records: dict) -> list[str]:
    tasks = ["piqa", "arc_easy", "arc_challenge", "boolq", "hellaswag", "winogrande"]
    lines = ["| W / A | method | " + " | ".join(tasks) + " | avg6 | n/task |",
             "|---|---|" + "---|" * (len(tasks) + 2)]
    for (pair, method, variant), r in sorted(records.items()):
        m = r["metrics"]
        cells = [f"{100 * m[f'acc/{t}']:.0f}" for t in tasks]
        avg = f"{100 * m['acc/avg6']:.1f} ± {100 * m['acc_stderr/avg6']:.1f}"
        label = method if variant == "plain" else f"{method} {variant}"
        lines.append(f"| {pair} | {label} | " + " | ".join(cells)
                     + f" | {avg} | {m['n/piqa']} |")
    return lines


def every_run(records: dict) -> list[str]:
    lines = ["| W / A | method | variant | wiki ppl | calib s | eval s | config |",
             "|---|---|---|---|---|---|---|"]
    for key, r in sorted(records.items()):
        t = r.get("timings", {})
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {r['metrics']['ppl/wiki']:.3f} | "
                     f"{t.get('calibration_s', 0):.0f} | {t.get('eval_s', 0):.0f} | "
                     f"`{r['config_hash']}` |")
    return lines


def main() -> None:
    records = latest_ok("ppl")
    zeroshot = latest_ok("zeroshot")
    envs = {str(r.get("environment", {}).get("packages", {}).get("torch")) for r in
            records.values()}
    commits = sorted({str(r.get("environment", {}).get("git_commit"))[:8]
                      for r in records.values()})
    out = [
        "# Number formats on SmolLM2-135M (wiki ppl, 40 × 512 windows)",
        "",
        f"Built by `python experiments/formats/table.py` from `runs.jsonl` ({len(records)} ppl "
        f"and {len(zeroshot)} zero-shot records; torch {', '.join(sorted(envs))}; git "
        f"{', '.join(commits)}). GPTQ: 64 × 512 calibration windows, seed 2, act-order, static "
        "groups. Activations dynamic per token (MX: blocks of 32). LoRC: rank 8, int8 factors. "
        f"FP reference: {ppl(records, ('W 16 / A 16', 'RTN', 'plain'))}.",
        "",
        "## W4A8 (weights g128 unless the format fixes its block)",
        "",
        *main_table(records),
        "",
        "## W8A8 and activations alone",
        "",
        *simple_table(records, ["W INT8 ch / A INT8", "W FP8 ch / A FP8", "W MXFP8 / A MXFP8",
                                "W 16 / A INT8", "W 16 / A FP8"], ["RTN"]),
        "",
        "## INT4 vs FP4 by granularity (A8; SmolLM2's weights sit on an asym 4-bit g32 grid)",
        "",
        *simple_table(records, ["W INT4 ch / A INT8", "W FP4 ch / A FP8", "W INT4 g128 / A INT8",
                                "W INT4 sym g128 / A INT8", "W FP4 g128 / A FP8",
                                "W INT4 g32 / A INT8", "W FP4 g32 / A FP8",
                                "W MXFP4 / A MXFP8", "W NVFP4 / A FP8"], ["RTN", "GPTQ"]),
        "",
        "## KV cache (on W FP4 g128 / A FP8, RTN)",
        "",
        *simple_table(records, [k[0] for k in sorted(records) if "/ KV" in k[0]], ["RTN"]),
        "",
        "## Zero-shot (lm-eval, first N documents per task; acc %)",
        "",
        *zeroshot_table(zeroshot),
        "",
        "## Every perplexity run",
        "",
        *every_run(records),
    ]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
