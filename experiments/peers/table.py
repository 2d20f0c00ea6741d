"""Build experiments/peers/table.md from the results store only.

    python experiments/peers/table.py            # writes experiments/peers/table.md

Three tables. *Side by side*: rows are weight formats, columns methods (each framework's RTN,
llm-compressor's GPTQ with its defaults, abqlab's ``calib=gptq`` preset as it stands in
``conf/calib/gptq.yaml``, the best abqlab GPTQ setting measured, AWQ when recorded). *GPTQ
settings*: one row per measured GPTQ setting with every solver option spelled out (act-order,
where group grids come from, grid search, what the block's own linears are while its Hessians are
recorded), its distance to llm-compressor on the same weight format and whether it meets issue
16's target (≤ peer + 2%; under a 3% difference the issue asks for ≥ 3 calibration seeds).
*Every configuration*: every record, refusals included, with the peer's reason.

A cell is the mean wiki perplexity over calibration seeds ± the sample standard deviation, with
the number of seeds. Of several records of one method, format and seed only the latest counts;
a calibration or evaluation budget other than the issue's 64 × 512 / 40 × 512 is tagged.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from abqlab.track.store import read_records

HERE = Path(__file__).resolve().parent
PRESETS = HERE.parents[1] / "conf" / "calib"
METRIC = "ppl/wiki"
TARGET = 0.02  # issue 16: abqlab ≤ peer + 2%
SEEDS_BELOW = 0.03  # issue 16: ≥ 3 calibration seeds where the difference is under 3%
GPTQ_KEYS = ("act_order", "groups", "grid", "hessian", "skip_first_tokens")
# abqlab's first GPTQ (before act-order groups and Hessian modes; commit 329581f): no act-order
# with groups, each group's grid from the error-updated weights when it starts (= dynamic),
# Hessians recorded with the block's linears round-to-nearest quantized (= quantized).
GPTQ_V1 = {"groups": "dynamic", "grid": "minmax", "hessian": "quantized", "skip_first_tokens": 0}
PEER_REFERENCE = "llm-compressor gptq"  # the peer's defaults: the column every Δ is against
PEER_GPTQ = {"groups": "static", "grid": "minmax (memoryless_minmax)",
             "hessian": "float (layer-sequential pipeline)", "skip_first_tokens": 0}


def quant_label(quant: dict[str, Any]) -> str:
    group = quant.get("w_group", -1)
    size = "per-channel" if group == -1 else "per-tensor" if group == 0 else f"g{group}"
    return f"W{quant['w_bits']} {size} {'sym' if quant.get('w_sym') else 'asym'}"


def quant_order(label: str) -> tuple[int, int, str]:
    bits, size, sym = label.split()
    group = 10**6 if size == "per-channel" else 0 if size == "per-tensor" else int(size[1:])
    return int(bits[1:]), group, sym


def preset_settings(name: str) -> dict[str, dict[str, Any]]:
    path = PRESETS / f"{name}.yaml"
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text()).get("components", {}) or {}


def gptq_settings(config: dict[str, Any]) -> dict[str, Any] | None:
    """The GPTQ solver options of a record (abqlab or peer), v1 records filled in, or None."""
    if "peer" in config:
        peer = config["peer"]
        if peer.get("method") != "gptq":
            return None
        order = peer.get("actorder", "static")
        out = {"act_order": order != "none", **PEER_GPTQ,
               "groups": "static" if order != "none" else "—"}
        if peer.get("observer") == "memoryless_mse":
            out["grid"] = "mse (memoryless_mse)"
        return out
    settings = (config["calib"].get("components") or {}).get("gptq")
    if not settings or not settings.get("enabled", True):
        return None
    out = dict(settings)
    if "groups" not in out:
        out.update(GPTQ_V1, v1=True)
    return out


def is_preset_gptq(config: dict[str, Any]) -> bool:
    """An abqlab ``calib=gptq`` record whose solver options equal today's preset."""
    if "peer" in config or config["calib"]["name"] != "gptq":
        return False
    ours, preset = gptq_settings(config), preset_settings("gptq").get("gptq", {})
    return ours is not None and not ours.get("v1") and all(
        ours.get(k) == preset.get(k) for k in GPTQ_KEYS if k in preset)


def method_label(config: dict[str, Any]) -> str:
    calib = config["calib"]
    if "peer" in config:
        peer = config["peer"]
        order = peer.get("actorder", "static")
        extra = "" if peer["method"] != "gptq" or order == "static" else f" (actorder={order})"
        if peer.get("observer") == "memoryless_mse":
            extra += " (mse grid)"
        return f"llm-compressor {peer['method']}{extra}"
    gptq = gptq_settings(config)
    if calib["name"] == "gptq" and gptq is not None:
        if is_preset_gptq(config):
            return "abqlab gptq [preset]"
        return "abqlab gptq (" + describe_gptq(gptq) + ")"
    preset = preset_settings(calib["name"])
    diffs = []
    for component, settings in (calib.get("components") or {}).items():
        base = preset.get(component, {})
        diffs += [f"{k}={v}" for k, v in settings.items() if k in base and base[k] != v]
    return f"abqlab {calib['name']}" + (f" ({', '.join(diffs)})" if diffs else "")


def describe_gptq(settings: dict[str, Any]) -> str:
    parts = [
        "act-order" if settings.get("act_order") else "no act-order",
        f"{settings.get('groups')} groups",
        f"{settings.get('grid')} grid",
        f"{settings.get('hessian')} H",
    ]
    if settings.get("skip_first_tokens"):
        parts.append(f"skip {settings['skip_first_tokens']} token(s)")
    if settings.get("v1"):
        parts.append("v1 code")
    return ", ".join(parts)


Cells = dict[tuple[str, str], list[dict[str, Any]]]


def protocol(config: dict[str, Any]) -> str:
    """'' for the issue's protocol (64 × 512 calibration, 40 × 512 evaluation), else a tag."""
    calib, evaluation = config["calib"], config.get("eval", {})
    tags = []
    if (calib.get("nsamples"), calib.get("seqlen")) != (64, 512):
        tags.append(f"calib {calib.get('nsamples')}×{calib.get('seqlen')}")
    if (evaluation.get("max_windows"), evaluation.get("seqlen")) != (40, 512):
        tags.append(f"eval {evaluation.get('max_windows')}×{evaluation.get('seqlen')}")
    return f" [{', '.join(tags)}]" if tags else ""


def collect(store: Path) -> Cells:
    """Records by (weight format, method); per calibration seed only the latest record."""
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    for record in read_records(store):
        config = record["config"]
        key = (quant_label(config["quant"]), method_label(config) + protocol(config),
               config["calib"].get("seed"))
        latest[key] = record
    cells: Cells = defaultdict(list)
    for (quant, method, _seed), record in latest.items():
        cells[(quant, method)].append(record)
    return cells


def ok_values(records: list[dict[str, Any]]) -> list[float]:
    return [r["metrics"][METRIC] for r in records if r.get("status") == "ok"]


def cell(records: list[dict[str, Any]]) -> str:
    values = ok_values(records)
    if not values:
        statuses = sorted({r.get("status", "?") for r in records})
        reasons = sorted({short_reason(r.get("reason", "")) for r in records} - {""})
        return "/".join(statuses) + (f": {'; '.join(reasons)}" if reasons else "")
    text = f"{statistics.mean(values):.2f}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.2f}"
    return text + f" (n={len(values)})"


def short_reason(reason: str) -> str:
    """The peer's refusal in a few words (its full message stays in the store)."""
    if "not divisible by group_size" in reason:
        return "weight columns not divisible by group_size (576 % 128 on SmolLM2)"
    return reason[:90] + ("…" if len(reason) > 90 else "")


def commit(records: list[dict[str, Any]]) -> str:
    commits = sorted({r.get("environment", {}).get("git_commit", "?")[:7] for r in records})
    return ", ".join(commits)


def verdict(ours: list[float], peer: list[float]) -> tuple[str, str]:
    """(Δ vs peer in %, target verdict) for two lists of per-seed perplexities."""
    if not ours:
        return "—", "—"
    if not peer:
        return "—", "no peer number"
    a, b = statistics.mean(ours), statistics.mean(peer)
    delta = (a - b) / b
    verdict = "yes" if delta <= TARGET else "**no**"
    if abs(delta) < SEEDS_BELOW and min(len(ours), len(peer)) < 3:
        verdict += f" (n={min(len(ours), len(peer))}; < 3% apart: needs ≥ 3 seeds)"
    return f"{delta:+.1%}", verdict


def peer_gptq(cells: Cells, quant: str) -> tuple[list[float], list[dict[str, Any]]]:
    records = cells.get((quant, PEER_REFERENCE), [])
    return ok_values(records), records


def side_by_side(cells: Cells, quants: list[str]) -> list[str]:
    out = ["| weights | abqlab rtn | llm-compressor rtn | llm-compressor gptq (defaults) | "
           "abqlab gptq [preset] | Δ preset vs peer | abqlab gptq, best measured | "
           "Δ best vs peer | abqlab awq | llm-compressor awq | abqlab awq_gptq |",
           "|---" * 11 + "|"]
    for quant in quants:
        peer, peer_records = peer_gptq(cells, quant)
        preset = cells.get((quant, "abqlab gptq [preset]"), [])
        gptq_cells = {m: r for (q, m), r in cells.items() if q == quant and ok_values(r)
                      and m.startswith("abqlab gptq") and not protocol(r[0]["config"])}
        best = min(gptq_cells.items(), key=lambda kv: statistics.mean(ok_values(kv[1])),
                   default=None)

        def get(method: str, q: str = quant) -> str:
            return cell(cells[(q, method)]) if (q, method) in cells else ""

        best_text = (f"{cell(best[1])}: {best[0].removeprefix('abqlab gptq ').strip('()')}"
                     if best else "")
        row = [
            get("abqlab rtn"), get("llm-compressor rtn"),
            cell(peer_records) if peer_records else "",
            cell(preset) if preset else "", verdict(ok_values(preset), peer)[0],
            best_text, verdict(ok_values(best[1]), peer)[0] if best else "—",
            get("abqlab awq"), get("llm-compressor awq"), get("abqlab awq_gptq"),
        ]
        out.append(f"| {quant} | " + " | ".join(row) + " |")
    return out


def gptq_settings_table(cells: Cells, quants: list[str]) -> list[str]:
    out = ["| weights | framework | act-order | group grids | grid | block's linears while H is "
           "recorded | skip first tokens | code | wiki ppl | Δ vs llm-compressor | "
           "≤ peer + 2%? | calibration s |",
           "|---" * 12 + "|"]
    for quant in quants:
        peer, _ = peer_gptq(cells, quant)
        rows = []
        for (q, method), records in cells.items():
            if q != quant:
                continue
            settings = gptq_settings(records[0]["config"])
            if settings is None or records[0]["config"]["calib"]["name"] not in (
                    "gptq", "llmcompressor-gptq"):
                continue
            is_peer = "peer" in records[0]["config"]
            values = ok_values(records)
            is_reference = method == PEER_REFERENCE  # the cell peer_gptq() compares against
            delta, ok = ("(reference)", "") if is_reference else verdict(values, peer)
            if not values:
                delta, ok = "—", "—"
            elif protocol(records[0]["config"]) and not is_peer:
                delta, ok = "— (other budget)", "—"
            seconds = [r["timings"].get("calibration_s", 0) for r in records
                       if r.get("status") == "ok"]
            framework = "llm-compressor 0.14.0.1" if is_peer else (
                "abqlab [preset]" if is_preset_gptq(records[0]["config"]) else "abqlab")
            framework += protocol(records[0]["config"])
            code = commit(records)
            rows.append((statistics.mean(values) if values else float("inf"), [
                quant, framework,
                "static" if is_peer and settings["act_order"] else
                ("yes" if settings.get("act_order") else "no"),
                str(settings.get("groups")), str(settings.get("grid")),
                str(settings.get("hessian")), str(settings.get("skip_first_tokens", 0)),
                code, cell(records), delta, ok,
                f"{statistics.mean(seconds):.0f}" if seconds else "—",
            ]))
        for _, row in sorted(rows, key=lambda r: -r[0]):
            out.append("| " + " | ".join(row) + " |")
    return out


def self_check(cells: Cells) -> list[str]:
    """RTN of both frameworks on the same model, windows and evaluation must agree to 0.01."""
    lines = []
    for quant in sorted({q for q, _ in cells}, key=quant_order):
        ours = [r for r in cells.get((quant, "abqlab rtn"), []) if r.get("status") == "ok"]
        peer = [r for r in cells.get((quant, "llm-compressor rtn"), []) if r.get("status") == "ok"]
        if ours and peer:
            a, b = ours[-1]["metrics"][METRIC], peer[-1]["metrics"][METRIC]
            verdict = "ok" if abs(a - b) <= 0.01 else "MISMATCH"
            verdict += ", limit 0.01"
            if quant.endswith(" sym"):  # the two symmetric int grids differ by definition
                verdict = ("not a harness check: the grids differ, abqlab amax / (2^(b−1) − 1), "
                           "compressed-tensors amax / ((qmax − qmin) / 2)")
            lines.append(f"- {quant}: abqlab RTN {a:.4f}, llm-compressor RTN {b:.4f}, "
                         f"|Δ| = {abs(a - b):.4f} ({verdict})")
    return lines or ["- no format has both RTN rows yet"]


def render(store: Path) -> str:
    out: list[str] = []
    cells = collect(store)
    quants = sorted({q for q, _ in cells}, key=quant_order)
    preset = preset_settings("gptq").get("gptq", {})
    n_records = sum(len(v) for v in cells.values())
    out.append("# abqlab vs llm-compressor on SmolLM2-135M (wiki ppl, 40 × 512; FP 14.12)\n")
    out.append(
        f"Built by `python experiments/peers/table.py` from `{store.name}` ({n_records} records)."
        " Same converted model, same calibration windows (64 × 512 train tokens, passed to the"
        " peer explicitly), same evaluation code on both sides. A cell is the mean over"
        " calibration seeds ± sd (n = seeds). Δ = (abqlab − llm-compressor GPTQ) / llm-compressor"
        " GPTQ on the same weight format. Calibration seconds are 1 thread on a shared 2-core"
        " CPU: compare them loosely.\n")
    out.append("`abqlab gptq [preset]` = `conf/calib/gptq.yaml` as it stands now: "
               + ", ".join(f"{k}={preset.get(k)}" for k in GPTQ_KEYS if k in preset) + ".\n")
    out.append("## Side by side\n")
    out.extend(side_by_side(cells, quants))
    out.append("\n## GPTQ settings (worst to best)\n")
    out.append("*act-order*: columns by decreasing Hessian diagonal. *group grids*: `static` ="
               " every group's grid from the original weights on the original column groups"
               " (llm-compressor's `actorder=static`); `dynamic` = a group's grid from the"
               " error-updated weights when its first column is reached (with act-order: groups"
               " in processing order, g_idx). *grid*: `minmax` or `mse` (per row and group, the"
               " range shrink with the least |Q(w) − w|^2.4). *H recorded with*: `float` = the"
               " block's own linears in float (the stream into the block is quantized);"
               " `quantized` = already round-to-nearest quantized; `sequential` = q/k/v, then o,"
               " then gate/up, then down, each on inputs from the already GPTQ-quantized"
               " sub-layers. `v1 code` = abqlab's first GPTQ (commit 329581f).\n")
    out.extend(gptq_settings_table(cells, quants))
    out.append("\n## Every configuration\n")
    out.append("| weights | method | wiki ppl | seeds | code | calibration s (mean) |")
    out.append("|---|---|---|---|---|---|")
    for (quant, method), records in sorted(cells.items(),
                                           key=lambda kv: (quant_order(kv[0][0]), kv[0][1])):
        seeds = sorted({r["config"]["calib"]["seed"] for r in records})
        ok = [r for r in records if r.get("status") == "ok"]
        seconds = statistics.mean(r["timings"].get("calibration_s", 0) for r in ok) if ok else 0
        out.append(f"| {quant} | {method} | {cell(records)} | {','.join(map(str, seeds))} | "
                   f"{commit(records)} | {seconds:.0f} |")
    out.append("\n## Self-check (same model, windows and evaluation code on both sides)\n")
    out.extend(self_check(cells))
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    store = Path(argv[0]) if argv else HERE / "runs.jsonl"
    target = HERE / "table.md"
    target.write_text(render(store))
    print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
