"""Machine-code checks without a GPU: every kernel compiles for sm_80 and sm_90a, uses the
intended tensor-core instruction (BMMA / IMMA / HMMA), never touches local memory, and the torch
binding builds and imports. One nvcc call per source hash (cached under csrc/build/nvcc/)."""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.nvcc

REPO = Path(__file__).resolve().parents[2]
ARCHES = ("sm_80", "sm_90a")


def _load_build_module():  # csrc/build.py is a script, not part of the package
    spec = importlib.util.spec_from_file_location("abq_csrc_build", REPO / "csrc" / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


build = _load_build_module()


@pytest.fixture(scope="module")
def out_dir() -> Path:
    if build.find_nvcc() is None:
        pytest.skip("nvcc not found: set CUDA_HOME or put nvcc on PATH")
    if build.find_cuobjdump() is None:
        pytest.skip("cuobjdump not found: pip install nvidia-cuda-cuobjdump")
    pytest.importorskip("torch")
    build.build_extension(ARCHES, verbose=False)  # binding compiles in parallel with nvcc
    return build.build_cubins(ARCHES)  # cached: returns the same object's directory


def _sass_functions(text: str) -> dict[tuple[str, str], str]:
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


def _kind(name: str) -> tuple[str, tuple[int, ...]] | None:
    """Classify a mangled kernel name: ('btc', (q, p)), ('s8', (q,)), ('a16h'|'a16b', (q,))."""
    if m := re.search(r"BtcCoreILi(\d)ELi(\d)E", name):
        return "btc", (int(m.group(1)), int(m.group(2)))
    if m := re.search(r"S8CoreILi(\d)E", name):
        return "s8", (int(m.group(1)),)
    if m := re.search(r"A16CoreILi(\d)E6__half", name):
        return "a16h", (int(m.group(1)),)
    if m := re.search(r"A16CoreILi(\d)E13__nv_bfloat16", name):
        return "a16b", (int(m.group(1)),)
    if "act_quant_pack_kernel" in name:
        return "act", ()
    return None


def _gemv(name: str) -> bool:
    return name.endswith("ELi1ELi1ELi1ELi8EEEv13AbqGemmParams")


@pytest.fixture(scope="module")
def functions(out_dir: Path) -> dict[tuple[str, str], str]:
    return _sass_functions((out_dir / "sass.txt").read_text())


def test_every_instantiation_present(functions: dict[tuple[str, str], str]) -> None:
    for arch in ARCHES:
        seen: set[tuple[str, tuple[int, ...], bool]] = set()
        for (a, name) in functions:
            kind = _kind(name)
            if a == arch and kind is not None:
                seen.add((*kind, _gemv(name)))
        for q, p in itertools.product(range(1, 9), range(1, 9)):
            for gemv in (True, False):
                assert ("btc", (q, p), gemv) in seen, (arch, q, p, gemv)
        for q in range(1, 9):
            for kind in ("s8", "a16h", "a16b"):
                for gemv in (True, False):
                    assert (kind, (q,), gemv) in seen, (arch, kind, q, gemv)
        assert ("act", (), False) in seen


EXPECTED = {
    "btc": (r"BMMA\.168256\.AND\.POPC", (r"IMMA", r"HMMA")),
    "s8": (r"IMMA\.16832\.S8\.S8", (r"BMMA", r"HMMA")),
    "a16h": (r"HMMA\.16816\.F32(?!\.BF16)", (r"BMMA", r"IMMA", r"HMMA\.16816\.F32\.BF16")),
    "a16b": (r"HMMA\.16816\.F32\.BF16", (r"BMMA", r"IMMA")),
}


def test_intended_tensor_core_instructions(functions: dict[tuple[str, str], str]) -> None:
    """BMMA (and.popc) for the b1 path, IMMA s8 for A8, HMMA for weight-only; native on both."""
    checked = 0
    for (arch, name), body in functions.items():
        kind = _kind(name)
        if kind is None or kind[0] == "act":
            continue
        want, forbid = EXPECTED[kind[0]]
        assert re.search(want, body), f"{arch} {name}: no {want}"
        for pat in forbid:
            assert not re.search(pat, body), f"{arch} {name}: unexpected {pat}"
        checked += 1
    assert checked == len(ARCHES) * (128 + 16 + 32)


def test_no_local_memory(out_dir: Path, functions: dict[tuple[str, str], str]) -> None:
    log = (out_dir / "ptxas.log").read_text()
    pat = r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill"
    frames = re.findall(pat, log)
    assert len(frames) == len(functions)
    assert all(f == ("0", "0", "0") for f in frames), "register spills / stack frames in ptxas -v"
    sass = (out_dir / "sass.txt").read_text()
    hits = []
    if "LDL" in sass or "STL" in sass:  # cheap pre-check: the SASS text is ~150 MB
        hits = re.findall(r"[^\n]*\b(?:LDL|STL)\b[^\n]*", sass)
    assert not hits, f"local memory accesses in SASS: {hits[:3]}"


def test_binding_builds_and_imports(out_dir: Path) -> None:
    """The thin binding compiles against the installed torch (CPU wheel here) and imports."""
    pytest.importorskip("torch")
    import torch

    so = build.build_extension(ARCHES, verbose=False)
    spec = importlib.util.spec_from_file_location(build.EXT_NAME, so)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for fn in ("act_quant_pack", "btc_gemm", "s8_gemm", "a16_gemm"):
        assert hasattr(mod, fn)
    x = torch.zeros(2, 64)
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        mod.act_quant_pack(x, x, x, x, x, 4, False, False, 0)
