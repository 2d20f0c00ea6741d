"""Bad configs fail before any model loads, with one line naming the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from abq_helpers import CONF_DIR, compose_run
from hydra.errors import ConfigCompositionException, MissingConfigException

from abqlab.validate import ConfigError, check_run

BITS_ALLOWED = "allowed: 1, 2, 3, 4, 5, 6, 7, 8, 16"
TWO_LAYER = "model=smollm2-2layer"


def config_error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_run(compose_run(overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("override", "value"),
    [
        ("quant.w_bits", 9),
        ("quant.w_bits", 0),
        ("quant.a_bits", 0),
        ("quant.a_bits", 12),
        ("quant.q_bits", 17),
        ("quant.k_bits", -1),
        ("quant.v_bits", 32),
    ],
)
def test_bits_outside_one_to_eight(override: str, value: int) -> None:
    message = config_error(TWO_LAYER, f"{override}={value}")
    assert message == f"{override}={value}: {BITS_ALLOWED}"


def test_group_that_does_not_divide_smollm2_widths() -> None:
    message = config_error("model=smollm2-135m", "quant.w_group=100")
    assert message.startswith("quant.w_group=100: allowed: -1, 0 or a divisor")
    assert "in_features 576" in message and "in_features 1536" in message
    assert "64" in message.split("e.g.")[1]  # a valid suggestion
    assert "w_partial_group=true" in message


def test_activation_group_is_checked_too() -> None:
    message = config_error(TWO_LAYER, "quant.a_group=100", "quant.a_bits=8")
    assert message.startswith("quant.a_group=100: allowed:")


def test_dividing_or_partial_groups_pass() -> None:
    check_run(compose_run([TWO_LAYER, "quant.w_group=64"]))
    check_run(compose_run([TWO_LAYER, "quant.w_group=100", "quant.w_partial_group=true"]))
    check_run(compose_run(["model=tiny-llama", "quant.w_group=32"]))


def test_group_below_minus_one() -> None:
    assert config_error(TWO_LAYER, "quant.w_group=-2").startswith("quant.w_group=-2: allowed: -1")


def test_one_bit_symmetric_needs_bit_balance() -> None:
    assert config_error(TWO_LAYER, "quant.w_bits=1", "quant.w_sym=true").startswith(
        "quant.w_sym=True: allowed: false at w_bits=1"
    )
    assert config_error(TWO_LAYER, "quant.a_bits=1", "quant.a_sym=true").startswith(
        "quant.a_sym=True: allowed: false at a_bits=1"
    )
    check_run(
        compose_run([TWO_LAYER, "quant.w_bits=1", "quant.w_sym=true", "quant.w_bit_balance=true"])
    )


def test_unknown_calib_method_lists_registered_ones() -> None:
    from abqlab.calib import METHODS

    message = config_error(TWO_LAYER, "calib.method=omniquant_typo")
    assert message == f"calib.method=omniquant_typo: allowed: {', '.join(METHODS.names())}"
    assert "rtn" in message


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("logger.mode=bad", "offline, online, disabled"),
        ("logger.name=tensorboard", "wandb, none"),
        ("model.source=s3", "embedded, hf, gguf, random"),
        ("model.dtype=float64", "float32, float16, bfloat16"),
        ("model.add_bos=maybe", "auto, true, false"),
        ("eval.seqlen=1", "integers >= 2"),
    ],
)
def test_choices(override: str, allowed: str) -> None:
    key = override.split("=")[0]
    message = config_error(TWO_LAYER, override)
    assert message.startswith(f"{override}: allowed: ") or message.startswith(f"{key}=")
    assert allowed in message


def test_model_path_errors_are_config_errors_not_tracebacks(tmp_path: Path) -> None:
    for overrides in (
        ["model=hf"],
        ["model=hf", f"model.path={tmp_path / 'missing'}"],
        ["model=gguf", f"model.path={tmp_path / 'missing.gguf'}"],
        ["model=gguf"],
    ):
        with pytest.raises(FileNotFoundError, match=r"^model\.path=.*: allowed: ") as info:
            check_run(compose_run(overrides))
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("quant.w_bits=abc", "could not be converted to Integer"),
        ("quant.w_sym=maybe", "quant.w_sym"),
        ("eval.max_windows=lots", "eval.max_windows"),
        ("quant.bogus=1", "Key 'bogus' not in 'QuantConfig'"),
        ("calib.bogus=1", "Key 'bogus' not in 'CalibConfig'"),
    ],
)
def test_wrong_types_and_unknown_keys_rejected_by_hydra(override: str, needle: str) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_run([override])
    text = f"{info.value} {info.value.__cause__}"
    assert needle in text
    assert override.split("=")[0] in text


@pytest.mark.parametrize("group", ["model", "quant", "calib", "eval", "logger"])
def test_unknown_group_option_names_the_options(group: str) -> None:
    with pytest.raises(MissingConfigException) as info:
        compose_run([f"{group}=no_such_option"])
    message = str(info.value)
    assert f"Could not find '{group}/no_such_option'" in message
    first = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))[0]
    assert first in message  # the available options are listed


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("quant", options("quant"))
def test_every_quant_config_is_valid(quant: str) -> None:
    cfg = compose_run([TWO_LAYER, f"quant={quant}"])
    check_run(cfg)
    assert cfg.quant.name == quant


@pytest.mark.parametrize(
    ("group", "option"),
    [(g, o) for g in ("model", "calib", "eval", "logger") for o in options(g)],
)
def test_every_group_option_composes_and_validates(group: str, option: str) -> None:
    cfg = compose_run(
        [f"{group}={option}"] if group == "model" else [TWO_LAYER, f"{group}={option}"]
    )
    if group == "model" and option in ("hf", "gguf"):
        with pytest.raises(FileNotFoundError, match="model.path"):
            check_run(cfg)  # these need model.path
        return
    if (group, option) == ("calib", "load"):
        with pytest.raises(ConfigError, match="^calib.load_from=None: allowed: the path"):
            check_run(cfg)  # needs calib.load_from
        return
    check_run(cfg)
