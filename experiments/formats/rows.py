"""The runs behind experiments/formats/table.md: (name, overrides) per configuration.

Protocol: SmolLM2-135M, wiki ppl on 40 × 512 held-out windows; GPTQ calibrated on 64 × 512
train windows (the peer protocol, seed 2); activations dynamic per token (MX: blocks of 32);
LoRC rank 8 with int8 factors. Zero-shot: the six tasks at limit 50 (``ZEROSHOT`` runs apart,
``ZEROSHOT_WITH_PPL`` inside their perplexity run).
"""

from __future__ import annotations

GPTQ = ["calib=gptq", "calib.nsamples=64", "calib.seqlen=512"]
RTN = ["calib=rtn"]
G128 = ["quant.w_group=128", "quant.w_partial_group=true"]

# W4A8 weight/activation format pairs (weights g128 unless the format fixes its block)
PAIRS: dict[str, list[str]] = {
    "int4g128-int8": ["quant=w4a8", "quant.name=int4g128-int8", *G128],
    "fp4g128-fp8": ["quant=w4a8-fp4", "quant.name=fp4g128-fp8"],
    "mxfp4-mxfp8": ["quant=w4a8-mxfp4"],
    "nvfp4-fp8": ["quant=w4a8-nvfp4"],
}
MIXED: dict[str, list[str]] = {  # one side changed at a time
    "int4g128-fp8": ["quant=w4a8", "quant.name=int4g128-fp8", *G128,
                     "quant.a_format=fp8_e4m3"],
    "int4symg128-int8": ["quant=w4a8", "quant.name=int4symg128-int8", *G128, "quant.w_sym=true"],
}
RULES = {"m1": ["quant.w_scale_rule=m1"], "m2": ["quant.w_scale_rule=m2"]}
LORC = ["calib.lorc.rank=8"]
# the grid-alignment rows: SmolLM2's weights sit on an asymmetric 4-bit grid of 32-weight groups
ALIGNMENT: dict[str, list[str]] = {
    "int4g32-int8": ["quant=w4a8", "quant.name=int4g32-int8", "quant.w_group=32"],
    "fp4g32-fp8": ["quant=w4a8-fp4", "quant.name=fp4g32-fp8", "quant.w_group=32",
                   "quant.w_partial_group=false"],
    "int4g32-a16": ["quant=w4a16", "quant.name=int4g32-a16", "quant.w_group=32"],
    "fp4g32-a16": ["quant=w4a8-fp4", "quant.name=fp4g32-a16", "quant.w_group=32",
                   "quant.w_partial_group=false", "quant.a_bits=16", "quant.a_format=int"],
    "int4ch-int8": ["quant=w4a8", "quant.name=int4ch-int8"],
    "fp4ch-fp8": ["quant=w4a8-fp4", "quant.name=fp4ch-fp8", "quant.w_group=-1",
                  "quant.w_partial_group=false"],
}
W8A8: dict[str, list[str]] = {
    "int8-int8": ["quant=w8a8"],
    "fp8-fp8": ["quant=w8a8-fp8"],
    "mxfp8-mxfp8": ["quant=w8a8-mxfp8"],
    "a8-int8": ["quant=fp", "quant.name=a8-int8", "quant.a_bits=8"],
    "a8-fp8": ["quant=fp", "quant.name=a8-fp8", "quant.a_bits=8", "quant.a_format=fp8_e4m3"],
}
KV = {  # on top of FP4 g128 / FP8, RTN
    "kv-int8-token": ["quant.k_bits=8", "quant.v_bits=8"],
    "kv-fp8-token": ["quant.k_bits=8", "quant.v_bits=8", "quant.kv_format=fp8_e4m3"],
    "kv-fp8-head": ["quant.k_bits=8", "quant.v_bits=8", "quant.kv_format=fp8_e4m3",
                    "quant.kv_granularity=head"],
    "kv-int4-token": ["quant.k_bits=4", "quant.v_bits=4"],
}


def ppl_runs() -> list[tuple[str, list[str]]]:
    """Every perplexity run, cheapest (RTN) first."""
    runs: list[tuple[str, list[str]]] = [("fp", ["quant=fp", *RTN])]
    for method, calib in (("rtn", RTN), ("gptq", GPTQ)):
        batch: list[tuple[str, list[str]]] = []
        for name, quant in PAIRS.items():
            batch.append((f"{name}/{method}", [*quant, *calib]))
            batch.append((f"{name}/{method}+lorc8", [*quant, *calib, *LORC]))
            if name.startswith(("int4", "fp4")):
                for rule, extra in RULES.items():
                    batch.append((f"{name}/{method}+{rule}", [*quant, *calib, *extra]))
        for name, quant in MIXED.items():
            batch.append((f"{name}/{method}", [*quant, *calib]))
        for name, quant in ALIGNMENT.items():
            if method == "rtn" or name.endswith("ch-int8") or name.endswith("ch-fp8"):
                batch.append((f"{name}/{method}", [*quant, *calib]))
        if method == "rtn":
            batch += [(f"{name}/rtn", [*quant, *RTN]) for name, quant in W8A8.items()]
            batch += [(f"fp4g128-fp8+{name}/rtn", [*PAIRS["fp4g128-fp8"], *RTN, *kv])
                      for name, kv in KV.items()]
        runs += batch
    return runs


SIX_TASKS = "eval.tasks=[piqa,arc_easy,arc_challenge,boolq,hellaswag,winogrande]"
# Zero-shot rows: RTN ones run apart (their ppl records exist); the GPTQ ones are their ppl runs
# with the six tasks added (ZEROSHOT_WITH_PPL: one calibration serves both, eval name "ppl").
ZEROSHOT: list[tuple[str, list[str]]] = [
    ("fp", ["quant=fp", *RTN]),
    ("int8-int8/rtn", [*W8A8["int8-int8"], *RTN]),
    ("fp8-fp8/rtn", [*W8A8["fp8-fp8"], *RTN]),
]
ZEROSHOT_WITH_PPL = ["int4g128-int8/gptq", "fp4g128-fp8/gptq", "mxfp4-mxfp8/gptq",
                     "nvfp4-fp8/gptq"]
