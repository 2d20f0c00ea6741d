"""Locate and load the compiled extension ``abqlab_kernels_C`` (optional).

Search order: ``$ABQLAB_KERNELS_LIB`` (path of the .so), then ``csrc/build/ext/`` of the source
checkout (built by ``python csrc/build.py ext``). Missing library = CPU reference only.
Set ``ABQLAB_KERNELS_DISABLE=1`` to ignore a built library.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
import warnings
from functools import cache
from pathlib import Path
from types import ModuleType

EXT_NAME = "abqlab_kernels_C"


def _candidates() -> list[Path]:
    env = os.environ.get("ABQLAB_KERNELS_LIB")
    if env:
        return [Path(env)]
    ext_dir = Path(__file__).resolve().parents[3] / "csrc" / "build" / "ext"
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return [ext_dir / f"{EXT_NAME}{suffix}"]  # built for this interpreter only


@cache
def load() -> ModuleType | None:
    """The extension module, or None when it is absent or disabled."""
    if os.environ.get("ABQLAB_KERNELS_DISABLE") == "1":
        return None
    import torch  # noqa: F401  (the extension links against libtorch)

    for path in _candidates():
        if not path.exists():
            continue
        spec = importlib.util.spec_from_file_location(EXT_NAME, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except (ImportError, OSError) as err:  # stale build (other torch / CUDA): rebuild it
            warnings.warn(f"cannot load {path}: {err}; run python csrc/build.py ext",
                          stacklevel=2)
            return None
        sys.modules.setdefault(EXT_NAME, module)
        return module
    return None


def available() -> bool:
    """True when the compiled kernels can be called (library loaded and CUDA present)."""
    import torch

    return load() is not None and torch.cuda.is_available()
