"""The instantiation generator covers every (W, A) pair and each path (no nvcc needed)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _gen():
    spec = importlib.util.spec_from_file_location("abq_gen", REPO / "csrc" / "gen_instances.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generator_emits_all_instantiations(tmp_path: Path) -> None:
    units = _gen().generate(tmp_path)
    assert {u.name for u in units} == {*(f"btc_w{q}.cu" for q in range(1, 9)), "s8.cu",
                                       "a16.cu", "dispatch.cu"}
    text = "".join(u.read_text() for u in units)
    every_pair = {(str(q), str(p)) for q in range(1, 9) for p in range(1, 9)}
    every_w = {str(q) for q in range(1, 9)}
    assert set(re.findall(r"GemvBtc<(\d), (\d)>", text)) == every_pair  # M <= 8
    assert set(re.findall(r"BtcCore<(\d), (\d)>", text)) == every_pair  # M > 8
    assert set(re.findall(r"GemvS8<(\d)>", text)) == every_w
    assert set(re.findall(r"S8Core<(\d)>", text)) == every_w
    for t in ("__half", "__nv_bfloat16"):
        assert set(re.findall(rf"launch_a16<(\d), {t}>", text)) == every_w
    for variant in ("GemvA16<Q, T, true>", "GemvA16<Q, T, false>", "A16Core<Q, T>"):
        assert variant in text
    for rule in ("fits_int32(a_bits, w_bits, p->K)", "fits_int32(8, w_bits, p->K)"):
        assert rule in text  # the int32 accumulation rule is enforced in the C API
    for fn in ("abq_btc_gemm", "abq_s8_gemm", "abq_a16_gemm", "abq_error_string",
               "abq_gemv_workspace_bytes"):
        assert re.search(rf'extern "C" [^(]* {fn}\(', text), fn
    everything = (tmp_path / "all_kernels.cu").read_text()
    assert all(f'"{u.name}"' in everything for u in units)
    assert "act_pack.cu" in everything


def test_generator_is_idempotent(tmp_path: Path) -> None:
    gen = _gen()
    gen.generate(tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    gen.generate(tmp_path)
    assert mtimes == {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
