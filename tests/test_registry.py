"""Registry: registration, duplicates, typo suggestions, lazy ``module:attr`` entries."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from abqlab.registry import Registry, RegistryError


def test_register_decorator_and_direct() -> None:
    reg: Registry[object] = Registry("loss")

    @reg.register("mse")
    def mse() -> str:
        return "mse"

    reg.register("kl", len)
    assert reg.get("mse") is mse
    assert reg.get("kl") is len
    assert reg.names() == ["kl", "mse"]
    assert list(reg) == ["kl", "mse"]
    assert "mse" in reg and "l1" not in reg
    assert len(reg) == 2


def test_duplicate_is_rejected_and_first_entry_kept() -> None:
    reg: Registry[object] = Registry("loss")
    reg.register("mse", len)
    with pytest.raises(RegistryError, match="loss 'mse' is already registered"):
        reg.register("mse", abs)
    with pytest.raises(RegistryError):
        reg.register("mse")(abs)
    assert reg.get("mse") is len


def test_unknown_name_suggests_close_matches_and_lists_allowed() -> None:
    reg: Registry[object] = Registry("calibration method")
    for name in ("omniquant", "abq", "rtn"):
        reg.register(name, name)
    with pytest.raises(RegistryError) as info:
        reg.get("omniqant")
    message = str(info.value)
    assert message.startswith("unknown calibration method 'omniqant'")
    assert "did you mean omniquant" in message
    assert "allowed: abq, omniquant, rtn" in message
    assert "\n" not in message
    assert not message.startswith("'")  # not KeyError's quoted repr


def test_unknown_name_without_close_match_has_no_hint() -> None:
    reg: Registry[object] = Registry("format")
    reg.register("int", int)
    message = reg.unknown_message("zzzzzz")
    assert "did you mean" not in message
    assert message == "unknown format 'zzzzzz'; allowed: int"


def test_registry_error_is_a_key_error() -> None:
    reg: Registry[object] = Registry("format")
    with pytest.raises(KeyError):
        reg.get("missing")


def test_lazy_entry_imports_on_first_get_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "abqlab_lazy_probe"
    (tmp_path / f"{module}.py").write_text("def target():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    reg: Registry[object] = Registry("exporter")
    reg.register("probe", f"{module}:target")
    assert module not in sys.modules  # registering did not import it
    target = reg.get("probe")
    assert module in sys.modules
    assert target is sys.modules[module].target
    assert target() == 42
    assert reg.get("probe") is target
    monkeypatch.delitem(sys.modules, module)


def test_lazy_entry_with_bad_target_fails_on_get() -> None:
    reg: Registry[object] = Registry("exporter")
    reg.register("nothing", "abqlab.registry:no_such_attribute")
    with pytest.raises(AttributeError):
        reg.get("nothing")


def test_builtin_registries_resolve() -> None:
    from abqlab.calib import METHODS
    from abqlab.calib.rtn import calibrate_rtn
    from abqlab.models.arch import ARCHITECTURES, ArchSpec

    assert METHODS.get("rtn") is calibrate_rtn
    assert isinstance(ARCHITECTURES.get("llama"), ArchSpec)
