"""Build the abqlab CUDA kernels.

Two targets:

* ``python csrc/build.py cubin [--arch sm_80 --arch sm_90a]``: compile every kernel instantiation
  with plain nvcc (no torch) into one object per source hash, with the ptxas report and the SASS
  dump next to it (``csrc/build/nvcc/<hash>/``). Works on a machine without a GPU; the CI
  machine-code tests use it.
* ``python csrc/build.py ext [--arch sm_90a]``: build the torch extension (``abqlab_kernels_C``)
  against the installed torch into ``csrc/build/ext/`` (GPU machine). ``abqlab.kernels`` loads it
  from there (or from ``$ABQLAB_KERNELS_LIB``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

CSRC = Path(__file__).resolve().parent
BUILD = CSRC / "build"
DEFAULT_ARCHES = ("sm_80", "sm_90a")
NVCC_FLAGS = ("-std=c++17", "-O3", "--expt-relaxed-constexpr", "-lineinfo")
EXT_NAME = "abqlab_kernels_C"

sys.path.insert(0, str(CSRC))
import gen_instances  # noqa: E402


def find_nvcc() -> str | None:
    """Path of nvcc ($CUDA_HOME/bin, then PATH), or None."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "bin" / "nvcc").exists():
        return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def find_cuobjdump() -> str | None:
    """cuobjdump from PATH, $CUDA_HOME, or the nvidia-cuda-cuobjdump wheel."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    if (Path(home) / "bin" / "cuobjdump").exists():
        return str(Path(home) / "bin" / "cuobjdump")
    try:
        import nvidia  # namespace package of the NVIDIA wheels
    except ImportError:
        return None
    for root in nvidia.__path__:
        for cand in Path(root).glob("*/bin/cuobjdump"):
            return str(cand)
    return None


def _gencode(arch: str) -> str:
    num = arch.removeprefix("sm_")
    return f"-gencode=arch=compute_{num},code=sm_{num}"


def source_hash(extra: tuple[str, ...] = ()) -> str:
    """Hash of every kernel source, the generator and ``extra`` (flags, tool versions)."""
    h = hashlib.sha256()
    files = sorted(CSRC.glob("include/**/*")) + sorted(CSRC.glob("src/*"))
    files += [CSRC / "gen_instances.py", Path(__file__).resolve()]
    for f in files:
        if f.is_file():
            h.update(f.relative_to(CSRC).as_posix().encode())
            h.update(f.read_bytes())
    for e in extra:
        h.update(e.encode())
    return h.hexdigest()[:16]


def build_cubins(arches: tuple[str, ...] = DEFAULT_ARCHES, jobs: int = 2) -> Path:
    """Compile all kernels for ``arches`` in one nvcc call; return the cache dir.

    The dir holds ``all.o`` (fatbin with one cubin per arch), ``ptxas.log`` (-Xptxas -v) and
    ``sass.txt`` (cuobjdump --dump-sass, when cuobjdump is found). Reused when the hash matches.
    """
    nvcc = find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    flags = (*NVCC_FLAGS, *(_gencode(a) for a in arches))
    out = BUILD / "nvcc" / source_hash((version, *flags))
    obj, log = out / "all.o", out / "ptxas.log"
    if not obj.exists():
        gen = out / "gen"
        gen_instances.generate(gen)
        cmd = [nvcc, *flags, f"-I{CSRC / 'include'}", f"-I{gen}", f"--threads={jobs}",
               "-Xptxas", "-v", "-c", str(gen / "all_kernels.cu"), "-o", str(obj) + ".tmp"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        log.write_text(res.stdout + res.stderr)
        if res.returncode != 0:
            raise RuntimeError(f"nvcc failed ({res.returncode}):\n{res.stderr[-4000:]}")
        os.replace(str(obj) + ".tmp", obj)
    sass = out / "sass.txt"
    tool = find_cuobjdump()
    if tool and not sass.exists():
        res = subprocess.run([tool, "--dump-sass", str(obj)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"cuobjdump failed: {res.stderr[-2000:]}")
        sass.write_text(res.stdout)
    return out


def _device_arch() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}{'a' if major == 9 else ''}"


def build_extension(arches: tuple[str, ...] | None = None, verbose: bool = True) -> Path:
    """Build the torch extension with torch.utils.cpp_extension; return the .so path."""
    from torch.utils.cpp_extension import load

    arches = arches or (_device_arch(),)
    gen = BUILD / "ext" / "gen"
    units = gen_instances.generate(gen)
    sources = [CSRC / "binding.cpp", *sorted(CSRC.glob("src/*.cu")), *units]
    out = BUILD / "ext"
    mod = load(
        name=EXT_NAME,
        sources=[str(s) for s in sources],
        extra_include_paths=[str(CSRC / "include"), str(gen)],
        extra_cflags=["-O3", "-std=c++17"],
        extra_cuda_cflags=[*NVCC_FLAGS, *(_gencode(a) for a in arches)],
        build_directory=str(out),
        verbose=verbose,
    )
    return Path(mod.__file__)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=["cubin", "ext"])
    ap.add_argument("--arch", action="append", help="e.g. sm_80, sm_90a (repeatable)")
    args = ap.parse_args()
    arches = tuple(args.arch) if args.arch else None
    if args.target == "cubin":
        print(build_cubins(arches or DEFAULT_ARCHES))
    else:
        print(build_extension(arches))


if __name__ == "__main__":
    main()
