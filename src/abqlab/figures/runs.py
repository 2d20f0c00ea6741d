"""Figures from what single runs recorded: per-block calibration loss curves, float vs quantized
attention maps of one head, per-channel activation and weight maxima before/after calibration."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from abqlab.figures.common import method, new_figure, setting


def curve_blocks(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Blocks of a record whose ``calibration.blocks[i].curve`` holds epochs and eval losses."""
    blocks = (record.get("calibration") or {}).get("blocks") or []
    return [b for b in blocks if (b.get("curve") or {}).get("epoch") and
            b["curve"].get("eval_loss")]


def calibration_curves(record: dict[str, Any]) -> Figure | None:
    """Left: each block's eval loss per epoch relative to its initialisation (epoch −1).
    Right: per block, the loss at initialisation and the loss of the kept epoch."""
    blocks = curve_blocks(record)
    if not blocks:
        return None
    figure = new_figure(10.0, 4.0)
    left, right = figure.subplots(1, 2)
    norm = Normalize(0, max(len(blocks) - 1, 1))
    cmap = colormaps["viridis"]
    for block in blocks:
        curve = block["curve"]
        losses = np.array([np.nan if v is None else v for v in curve["eval_loss"]], dtype=float)
        left.plot(curve["epoch"], losses / losses[0], color=cmap(norm(block["index"])),
                  linewidth=1, marker=".")
    left.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("epoch (−1 = initialisation)")
    left.set_ylabel("eval loss / loss at initialisation")
    left.set_yscale("log")
    figure.colorbar(ScalarMappable(norm, cmap), ax=left, label="block")
    index = [b["index"] for b in blocks]
    right.semilogy(index, [b["curve"]["eval_loss"][0] for b in blocks], "o-", label="init")
    right.semilogy(index, [b.get("loss", b["curve"]["eval_loss"][-1]) for b in blocks], "o-",
                   label="kept epoch")
    right.set_xlabel("block")
    right.set_ylabel("eval loss (calibration windows)")
    right.legend(fontsize="small")
    figure.suptitle(f"calibration loss per block: {method(record)} {setting(record)}")
    return figure


def with_diagnostics(records: list[dict[str, Any]], where: str) -> dict[str, dict[str, Any]]:
    """Latest record with diagnostics per method at setting ``where``."""
    chosen: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("diagnostics") and setting(record) == where:
            chosen[method(record)] = record
    return chosen


def attention_maps(records: list[dict[str, Any]], where: str) -> Figure | None:
    """Float map, then each method's quantized map of the same head and window."""
    chosen = with_diagnostics(records, where)
    if not chosen:
        return None
    first = next(iter(chosen.values()))["diagnostics"]
    panels = [("float", np.array(first["float"]["attention"]))]
    panels += [(name, np.array(r["diagnostics"]["quant"]["attention"]))
               for name, r in chosen.items()]
    figure = new_figure(3.0 * len(panels) + 1, 3.4)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    vmax = max(float(p.max()) for _, p in panels)
    for ax, (name, probs) in zip(axes, panels, strict=True):
        image = ax.imshow(probs, cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(name if name == "float" else f"{name} {where}", fontsize=9)
        ax.set_xlabel("key position")
    axes[0].set_ylabel("query position")
    figure.colorbar(image, ax=list(axes), label="attention probability", shrink=0.8)
    figure.suptitle(f"block {first['block']}, head {first['head']}, first {first['tokens']} "
                    "tokens of the eval text")
    return figure


def channel_maxima(records: list[dict[str, Any]], where: str) -> Figure | None:
    """Per input channel of one linear: max |activation| and max |weight|, before calibration
    (float model) and after it, one column per method (the smoothing outlier picture)."""
    chosen = with_diagnostics(records, where)
    if not chosen:
        return None
    linear = next(iter(chosen.values()))["diagnostics"]["linears"][0]
    figure = new_figure(3.4 * len(chosen) + 0.6, 5.2)
    axes = figure.subplots(2, len(chosen), squeeze=False, sharey="row")
    for col, (name, record) in enumerate(chosen.items()):
        diag = record["diagnostics"]
        for row, kind in enumerate(("act_absmax", "weight_absmax")):
            ax = axes[row][col]
            before = np.array(diag["float"][kind][linear])
            after = np.array(diag["quant"][kind][linear])
            channels = np.arange(len(before))
            ax.plot(channels, before, color="0.6", linewidth=0.8, label="before (float)")
            ax.plot(channels, after, color="tab:red", linewidth=0.8, label=f"after ({name})")
            ax.set_yscale("log")
            ax.set_title(f"{name}: {'activation' if row == 0 else 'weight'} "
                         f"(max/median {after.max() / np.median(after):.0f}× vs "
                         f"{before.max() / np.median(before):.0f}×)", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"max |{'x' if row == 0 else 'W'}| per input channel")
            if row == 1:
                ax.set_xlabel("input channel")
            ax.legend(fontsize=7)
    figure.suptitle(f"{linear} of block {diag['block']} at {where}")
    return figure
