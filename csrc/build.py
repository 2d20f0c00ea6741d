"""Build the abqlab CUDA kernels.

Two targets:

* ``python csrc/build.py cubin [--arch sm_80 --arch sm_90a]``: compile every kernel instantiation
  with plain nvcc (no torch) into one object per source hash, with the ptxas report and the SASS
  dump next to it (``csrc/build/nvcc/<hash>/``). Works on a machine without a GPU; the CI
  machine-code tests use it.
* ``python csrc/build.py ext [--arch sm_90a] [--jobs N]``: build the torch extension
  (``abqlab_kernels_C``) against the installed torch into ``csrc/build/ext/`` (GPU machine).
  With more than 2 jobs each generated unit compiles in its own nvcc process (a 16-core GPU host
  builds in well under a minute); otherwise the single-unit object of ``cubin`` is reused.
  ``abqlab.kernels`` loads the library from there (or from ``$ABQLAB_KERNELS_LIB``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CSRC = Path(__file__).resolve().parent
BUILD = CSRC / "build"
DEFAULT_ARCHES = ("sm_80", "sm_90a")
NVCC_FLAGS = ("-std=c++17", "-O3", "-lineinfo", "-Xcompiler", "-fPIC")
EXT_NAME = "abqlab_kernels_C"

sys.path.insert(0, str(CSRC))
import gen_instances  # noqa: E402


def find_nvcc() -> str | None:
    """Path of nvcc ($CUDA_HOME/bin, then PATH), or None."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "bin" / "nvcc").exists():
        return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def cuda_home() -> Path | None:
    """CUDA toolkit root holding lib64/libcudart.so ($CUDA_HOME, nvcc's root, /usr/local/cuda)."""
    cands = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = find_nvcc()
    if nvcc:
        cands.append(str(Path(nvcc).resolve().parent.parent))
    cands += ["/usr/local/cuda", *sorted(str(p) for p in Path("/usr/local").glob("cuda-*"))]
    for c in cands:
        if c and (Path(c) / "lib64" / "libcudart.so").exists():
            return Path(c)
    return None


def find_cuda_tool(name: str) -> str | None:
    """``name`` (cuobjdump, nvdisasm) from PATH, $CUDA_HOME, or the nvidia-cuda-* wheels."""
    found = shutil.which(name)
    if found:
        return found
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    if (Path(home) / "bin" / name).exists():
        return str(Path(home) / "bin" / name)
    try:
        import nvidia  # namespace package of the NVIDIA wheels
    except ImportError:
        return None
    for root in nvidia.__path__:
        for cand in Path(root).glob(f"*/bin/{name}"):
            return str(cand)
    return None


def find_cuobjdump() -> str | None:
    return find_cuda_tool("cuobjdump")


def sass_env() -> dict[str, str]:
    """Environment in which ``cuobjdump --dump-sass`` finds nvdisasm (it shells out to it)."""
    env = dict(os.environ)
    nvdisasm = find_cuda_tool("nvdisasm")
    if nvdisasm:
        env["PATH"] = f"{Path(nvdisasm).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _gencode(arch: str) -> str:
    num = arch.removeprefix("sm_")
    return f"-gencode=arch=compute_{num},code=sm_{num}"


def source_hash(extra: tuple[str, ...] = ()) -> str:
    """Hash of every kernel source, the generator and ``extra`` (flags, tool versions)."""
    h = hashlib.sha256()
    files = sorted(CSRC.glob("include/**/*")) + sorted(CSRC.glob("src/*"))
    files += [CSRC / "gen_instances.py"]
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
        res = subprocess.run(
            [tool, "--dump-sass", str(obj)], capture_output=True, text=True, env=sass_env()
        )
        if res.returncode != 0:
            raise RuntimeError(f"cuobjdump failed: {res.stderr[-2000:]}")
        sass.write_text(res.stdout)
    return out


def build_unit_objects(arches: tuple[str, ...], jobs: int) -> list[Path]:
    """Compile each generated unit (and csrc/src/*.cu) in parallel; return the objects."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    flags = (*NVCC_FLAGS, *(_gencode(a) for a in arches))
    out = BUILD / "nvcc" / ("units-" + source_hash((version, *flags)))
    gen = out / "gen"
    units = gen_instances.generate(gen) + sorted((CSRC / "src").glob("*.cu"))

    def compile_one(src: Path) -> Path:
        obj = out / (src.stem + ".o")
        if not obj.exists():
            cmd = [nvcc, *flags, f"-I{CSRC / 'include'}", f"-I{gen}", "-c", str(src), "-o",
                   str(obj) + ".tmp"]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"nvcc failed on {src.name}:\n{res.stderr[-4000:]}")
            os.replace(str(obj) + ".tmp", obj)
        return obj

    with ThreadPoolExecutor(max_workers=jobs) as pool:  # largest units first
        return list(pool.map(compile_one, sorted(units, key=lambda u: -u.stat().st_size)))


def _device_arch() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}{'a' if major == 9 else ''}"


def _binding_object(verbose: bool) -> tuple[Path, subprocess.Popen | None]:
    """Start compiling binding.cpp (cached by a hash of inputs, flags and torch version)."""
    import sysconfig

    import torch
    from torch.utils.cpp_extension import include_paths

    abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True))
    flags = [os.environ.get("CXX", "c++"), "-O3", "-fPIC", "-std=c++20",
             f"-DTORCH_EXTENSION_NAME={EXT_NAME}", "-DTORCH_API_INCLUDE_EXTENSION_H",
             f"-D_GLIBCXX_USE_CXX11_ABI={abi}", f"-I{CSRC / 'include'}",
             *(f"-isystem{p}" for p in include_paths()),
             f"-isystem{sysconfig.get_paths()['include']}"]
    h = hashlib.sha256("\0".join([*flags, torch.__version__]).encode())
    for f in (CSRC / "binding.cpp", CSRC / "include" / "abq" / "params.h"):
        h.update(f.read_bytes())
    obj = BUILD / "ext" / f"binding-{h.hexdigest()[:16]}.o"
    obj.parent.mkdir(parents=True, exist_ok=True)
    if obj.exists():
        return obj, None
    cmd = [*flags, "-c", str(CSRC / "binding.cpp"), "-o", str(obj) + ".tmp"]
    if verbose:
        print(" ".join(cmd), flush=True)
    return obj, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def build_extension(arches: tuple[str, ...] | None = None, verbose: bool = True,
                    jobs: int | None = None) -> Path:
    """Build the torch extension; return the .so path (reused when nothing changed).

    The kernels come from :func:`build_cubins` (one relocatable object for all instantiations);
    the binding (only ``torch/extension.h``) is compiled with the host C++ compiler, in parallel
    with nvcc, and linked against the installed torch and cudart. No ninja, no ATen CUDA
    headers: it builds against any torch wheel, CUDA or CPU.
    """
    import sysconfig

    import torch
    from torch.utils.cpp_extension import library_paths

    arches = arches or (_device_arch(),)
    jobs = jobs or os.cpu_count() or 1
    home = cuda_home()
    if home is None:
        raise FileNotFoundError("libcudart.so not found: set CUDA_HOME")
    bobj, proc = _binding_object(verbose)
    if jobs > 2:
        kobjs = build_unit_objects(arches, jobs)
    else:
        kobjs = [build_cubins(arches, jobs=len(arches)) / "all.o"]
    if proc is not None:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"binding compile failed:\n{err[-4000:]}")
        os.replace(str(bobj) + ".tmp", bobj)
    so = BUILD / "ext" / f"{EXT_NAME}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"
    torch_lib = library_paths()[0]
    cmd = [os.environ.get("CXX", "c++"), "-shared", str(bobj), *map(str, kobjs), "-o",
           str(so) + ".tmp",
           f"-L{torch_lib}", "-lc10", "-ltorch_cpu", "-ltorch", "-ltorch_python",
           f"-L{home / 'lib64'}", "-lcudart", f"-Wl,-rpath,{home / 'lib64'}",
           f"-Wl,-rpath,{torch_lib}"]
    h = hashlib.sha256("\0".join([*cmd, torch.__version__]).encode()).hexdigest()
    stamp = so.with_name(so.name + ".stamp")
    if so.exists() and stamp.exists() and stamp.read_text() == h:
        return so
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"binding link failed:\n{res.stderr[-4000:]}")
    os.replace(str(so) + ".tmp", so)
    stamp.write_text(h)
    return so


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=["cubin", "ext"])
    ap.add_argument("--arch", action="append", help="e.g. sm_80, sm_90a (repeatable)")
    ap.add_argument("--jobs", type=int, default=None, help="parallel nvcc processes (ext)")
    args = ap.parse_args()
    arches = tuple(args.arch) if args.arch else None
    if args.target == "cubin":
        print(build_cubins(arches or DEFAULT_ARCHES))
    else:
        print(build_extension(arches, jobs=args.jobs))


if __name__ == "__main__":
    main()
