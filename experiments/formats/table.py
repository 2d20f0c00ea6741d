"""experiments/formats/table.md from the results store only (runs.jsonl).

    python experiments/formats/table.py > experiments/formats/table.md

A row is (weights / activations [/ KV], method, variant): the variant is the ZeroQuant-FP scale
rule (M1, M2) and/or LoRC rank, so one W / A pair has up to four records per method (plain, M1,
M2, LoRC8). Two ok records with different config hashes on the same row would be a labelling
gap: the table then says so (and shows the newest), instead of silently merging them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from abqlab.track.store import read_records

HERE = Path(__file__).resolve().parent
STORE = HERE / "runs.jsonl"
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
        kv = f"INT{q['k_bits']}" if q["kv_format"] == "int" else q["kv_format"].upper()
        pair += f" / KV {kv} per-{q['kv_granularity']}"
    variant = []
    if q.get("w_scale_rule", "none") != "none":
        variant.append(q["w_scale_rule"].upper())
    rank = c.get("lorc", {}).get("rank", 0)
    if rank:
        variant.append(f"LoRC{rank}")
    return pair, c["name"].upper(), "+".join(variant) or "plain"


CLASHES: list[str] = []


def latest_ok(kind: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The newest ok record per row: ``ppl`` runs, or any run with the six-task average."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in read_records(STORE):
        if record.get("status") != "ok":
            continue
        has = ("acc/avg6" in record["metrics"] if kind == "zeroshot"
               else record["config"]["eval"]["name"] == kind)
        if not has:
            continue
        key = row_of(record["config"])
        old = out.get(key)
        if old is not None and old["config_hash"] != record["config_hash"]:
            CLASHES.append(f"{' · '.join(key)}: `{old['config_hash']}` and "
                           f"`{record['config_hash']}` (the newer is shown)")
        out[key] = record
    return out


def failed_runs() -> list[str]:
    """Failed records whose configuration never got an ok record."""
    records = list(read_records(STORE))
    ok = {r["config_hash"] for r in records if r.get("status") == "ok"}
    return [f"{r['config']['quant']['name']} / {r['config']['calib']['name']}: "
            f"{str(r.get('failure', r.get('reason', '')))[:120]}"
            for r in records if r.get("status") != "ok" and r["config_hash"] not in ok]


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
    lines = ["| W / A | method | variant | quant.name | wiki ppl | calib s | eval s | config |",
             "|---|---|---|---|---|---|---|---|"]
    for key, r in sorted(records.items()):
        t = r.get("timings", {})
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {r['config']['quant']['name']} | "
                     f"{r['metrics']['ppl/wiki']:.3f} | "
                     f"{t.get('calibration_s', 0):.0f} | {t.get('eval_s', 0):.0f} | "
                     f"`{r['config_hash']}` |")
    return lines


M2_LITTLE = 0.02  # "M2 costs little": at most +2 % wiki ppl over the unconstrained row


def compare(records: dict, a: tuple[str, str, str], b: tuple[str, str, str]) -> str:
    """``a | b | Δ`` cells (ppl, lower is better; Δ relative to a)."""
    va, vb = value(records, a), value(records, b)
    if va is None or vb is None:
        return f"{ppl(records, a)} | {ppl(records, b)} | not run"
    return f"{va:.2f} | {vb:.2f} | {100 * (vb - va) / va:+.1f} %"


def claims_table(records: dict) -> list[str]:
    """ZeroQuant-FP's qualitative claims, each as A-vs-B rows (B is the claim's side)."""
    lines = ["| claim | A | B | method | ppl A | ppl B | Δ (B vs A) |",
             "|---|---|---|---|---|---|---|"]
    rows: list[tuple[str, str, str, str, str, str]] = []
    for method in ("RTN", "GPTQ"):  # the comparisons rows.py plans for each method
        rtn = method == "RTN"
        rows += [("FP8 act ≥ INT8", "W INT4 g128 / A INT8", "W INT4 g128 / A FP8", method,
                  "plain", "plain")]
        if rtn:
            rows += [("FP8 act ≥ INT8", "W 16 / A INT8", "W 16 / A FP8", method, "plain",
                      "plain"),
                     ("FP8 act ≥ INT8 (W8A8)", "W INT8 ch / A INT8", "W FP8 ch / A FP8", method,
                      "plain", "plain")]
        for g in ("ch", "sym g128", "g128", "g32") if rtn else ("ch", "sym g128", "g128"):
            wa = f"W INT4 {g} / A INT8"
            wb = f"W FP4 {g.replace('sym ', '')} / A FP8"
            rows.append(("FP4 W vs INT4 W", wa, wb, method, "plain", "plain"))
        for pair in ("W INT4 g128 / A INT8", "W FP4 g128 / A FP8"):
            for rule in ("M2", "M1"):
                rows.append((f"{rule} costs little", pair, pair, method, "plain", rule))
        for pair in ("W INT4 g128 / A INT8", "W FP4 g128 / A FP8", "W MXFP4 / A MXFP8",
                     "W NVFP4 / A FP8"):
            rows.append(("LoRC helps at 4 bits", pair, pair, method, "plain", "LoRC8"))
    for claim, a, b, method, va, vb in rows:
        label_a = a if va == "plain" else f"{a} {va}"
        label_b = b if vb == "plain" else f"{b} {vb}"
        if a == b:
            label_a, label_b = va, vb
            claim = f"{claim}: {a}"
        lines.append(f"| {claim} | {label_a} | {label_b} | {method} | "
                     + compare(records, (a, method, va), (b, method, vb)) + " |")
    return lines


def planned_runs() -> int:
    sys.path.insert(0, str(HERE))
    from rows import ppl_runs

    return len(ppl_runs())


def main() -> None:
    records = latest_ok("ppl")
    zeroshot = latest_ok("zeroshot")
    kv_rows = sorted({k[0] for k in records if "/ KV" in k[0]})
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
        f"FP reference: {ppl(records, ('W 16 / A 16', 'RTN', 'plain'))}. "
        f"{len(records)} of the {planned_runs()} planned perplexity runs (rows.py) are in the "
        "store; — marks a run not made. INT4 is asymmetric unless marked sym; FP4 = E2M1 with an "
        "fp32 scale per group; FP8 = E4M3.",
        "",
        *(["**Rows with more than one configuration:** " + "; ".join(CLASHES), ""]
          if CLASHES else []),
        *(["**Failed runs:** " + "; ".join(failed_runs()), ""] if failed_runs() else []),
        "## ZeroQuant-FP's claims (wiki ppl, lower is better; Δ < 0: B better)",
        "",
        f"\"Costs little\" is read as Δ ≤ +{100 * M2_LITTLE:.0f} %. The FP4 rows pair FP4 "
        "weights with FP8 activations and INT4 with INT8; the A-format effect alone is the "
        "W INT4 g128 row of the first claim.",
        "",
        *claims_table(records),
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
        "## INT4 vs FP4 by granularity (A8)",
        "",
        "SmolLM2's weights sit on an asymmetric 4-bit g32 grid with a float offset (GGUF Q4_1); "
        "abqlab's INT4 g32 (integer zero point) does not reproduce it, so the g32 rows are real "
        "tests (weight error: `grid_check.py`).",
        "",
        *simple_table(records, ["W INT4 ch / A INT8", "W FP4 ch / A FP8", "W INT4 g128 / A INT8",
                                "W INT4 sym g128 / A INT8", "W FP4 g128 / A FP8",
                                "W INT4 g32 / A INT8", "W FP4 g32 / A FP8",
                                "W INT4 g32 / A 16", "W FP4 g32 / A 16",
                                "W MXFP4 / A MXFP8", "W NVFP4 / A FP8"], ["RTN", "GPTQ"]),
        "",
        "## KV cache (on W FP4 g128 / A FP8, RTN)",
        "",
        *(simple_table(records, kv_rows, ["RTN"]) if kv_rows else
          ["Not run yet (rows.py `KV`: INT8 and FP8 per token, FP8 per head, INT4 per token)."]),
        "",
        "## Zero-shot (lm-eval, first N documents per task; acc %)",
        "",
        *(zeroshot_table(zeroshot) if zeroshot else
          ["Not run yet (`python experiments/formats/run.py zeroshot`: rows.py `ZEROSHOT`)."]),
        "",
        "## Every perplexity run",
        "",
        *every_run(records),
    ]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
