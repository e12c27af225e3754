"""Shipped experiment configs, config errors and ``escx list``.

Every YAML under experiments/ (sweeps excepted: they are W&B sweep files, not experiment configs)
is globbed, so a new config is covered with no new test code. A config whose codec section has
no ``class_path`` is an overlay (an ablation, a size preset such as tiny.yaml) and is stacked on
its base, as users run it: ``NAME-*.yaml`` on ``NAME.yaml`` when that names a codec
(dac-tiny.yaml on dac.yaml), anything else on experiments/esc.yaml. ESC's size presets are also
stacked under every ablation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import escx
from escx.cli import main
from escx.commands.list_components import summary
from escx.config import (
    ConfigError,
    check_class_names,
    codec_config_dict,
    codec_section,
    load_yaml,
    registries,
)

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
BASE = EXPERIMENTS / "esc.yaml"

# Exact parameter counts (docs/esc.md §11), keyed by config path relative to experiments/.
PARAMETERS = {
    "esc.yaml": 8_386_373,
    "esc-large.yaml": 15_580_931,
    "ablations/rvq-swin.yaml": 8_177_477,
    "ablations/csrvq-conv.yaml": 9_116_648,
    "ablations/rvq-conv.yaml": 8_907_752,
    "ablations/codebook-dims-decreasing.yaml": 8_736_581,
    "ablations/csrvq-swin.yaml": 8_386_373,
    # DAC at 16 kHz with the weight-norm gains counted (docs/esc.md §18).
    "dac.yaml": 74_175_906,
    "dac-9kbps.yaml": 74_335_746,
    "dac-tiny.yaml": 595_798,
    # The baseline study's DAC, matched to the tiny ESC's 446,266 parameters.
    "dac-tiny-matched.yaml": 448_384,
}


def _experiment_configs() -> list[str]:
    return sorted(
        path.relative_to(EXPERIMENTS).as_posix()
        for path in EXPERIMENTS.rglob("*.yaml")
        if "sweeps" not in path.relative_to(EXPERIMENTS).parts
    )


def _is_overlay(path: Path) -> bool:
    section = codec_section(load_yaml(path))
    return section is None or "class_path" not in section


def _base(path: Path) -> Path:
    """The config an overlay stacks on: ``dac.yaml`` for ``dac-tiny.yaml``, else esc.yaml."""
    family = path.parent / f"{path.stem.split('-')[0]}.yaml"
    return family if family != path and family.is_file() and not _is_overlay(family) else BASE


def _stack(relative: str) -> list[Path]:
    path = EXPERIMENTS / relative
    return [_base(path), path] if _is_overlay(path) else [path]


def _presets_and_ablations() -> list[tuple[str, str]]:
    configs = _experiment_configs()
    presets = [
        c
        for c in configs
        if "/" not in c and _is_overlay(EXPERIMENTS / c) and _base(EXPERIMENTS / c) == BASE
    ]
    ablations = [c for c in configs if c.startswith("ablations/")]
    return [(p, a) for p in presets for a in ablations]


def test_every_config_with_a_known_count_is_shipped() -> None:
    assert set(PARAMETERS) <= set(_experiment_configs())


@pytest.mark.parametrize("relative", _experiment_configs())
def test_config_parses_and_builds(relative: str) -> None:
    sources = _stack(relative)
    for source in sources:
        check_class_names(load_yaml(source), str(source))
    codec = escx.build_codec(*sources)
    assert isinstance(codec, escx.Codec)
    assert codec.sample_rate == 16000
    if relative in PARAMETERS:
        assert sum(p.numel() for p in codec.parameters()) == PARAMETERS[relative]


@pytest.mark.parametrize(("preset", "ablation"), _presets_and_ablations())
def test_size_presets_stack_under_every_ablation(preset: str, ablation: str) -> None:
    sources = [BASE, EXPERIMENTS / preset, EXPERIMENTS / ablation]
    codec = escx.build_codec(*sources)
    alone = escx.build_codec(BASE, EXPERIMENTS / ablation)
    assert type(codec.quantizer) is type(alone.quantizer)
    assert type(codec.encoder) is type(alone.encoder)
    assert codec.max_streams == alone.max_streams


def test_resolved_codec_config_fills_every_default() -> None:
    resolved = codec_config_dict(BASE)
    assert resolved["class_path"].endswith("STFTCodec")
    args = resolved["init_args"]
    assert args["quantizer"]["class_path"].endswith("CrossScaleRVQ")
    assert args["quantizer"]["init_args"]["codebook_size"] == 1024
    assert args["encoder"]["init_args"]["depth"] == 2
    assert args["sample_rate"] == 16000


def test_later_configs_override_earlier_ones() -> None:
    codec = escx.build_codec(BASE, EXPERIMENTS / "ablations" / "rvq-conv.yaml")
    names = {type(codec.encoder).__name__, type(codec.decoder).__name__}
    assert names == {"ConvEncoder", "ConvDecoder"}
    assert type(codec.quantizer).__name__ == "ResidualVQ"


def test_no_codec_section_gives_esc_base() -> None:
    codec = escx.build_codec({"trainer": {"max_steps": 1}})
    assert sum(p.numel() for p in codec.parameters()) == 8_386_373


# ---------------------------------------------------------------- config errors


def _overlay(tmp_path: Path, quantizer: dict) -> Path:
    path = tmp_path / "overlay.yaml"
    path.write_text(
        "model:\n  codec:\n    init_args:\n      quantizer:\n"
        + "".join(f"        {k}: {v}\n" for k, v in quantizer.items())
    )
    return path


def test_misspelled_component_fails_in_one_line_with_a_suggestion(tmp_path: Path) -> None:
    overlay = _overlay(tmp_path, {"class_path": "CrossScaleRVQQ"})
    with pytest.raises(ConfigError) as info:
        escx.build_codec(BASE, overlay)
    message = str(info.value)
    assert "\n" not in message
    assert str(overlay) in message
    assert "did you mean 'CrossScaleRVQ'" in message
    for name in registries()["quantizer"]:
        assert name in message


def test_unknown_option_fails_in_one_line(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        "model:\n  codec:\n    init_args:\n      quantizer:\n        class_path: CrossScaleRVQ\n"
        "        init_args:\n          codebook_dimz: [8]\n"
    )
    with pytest.raises(ConfigError, match="codebook_dimz") as info:
        escx.build_codec(BASE, overlay)
    assert "\n" not in str(info.value)


def test_missing_and_malformed_files_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        escx.build_codec(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [a\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        escx.build_codec(broken)
    assert "\n" not in str(info.value)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        escx.build_codec(listing)


def test_fit_with_a_misspelled_component_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("escx.training.cli", reason="the training CLI is not built yet")
    overlay = _overlay(tmp_path, {"class_path": "CrossScaleRVQQ"})
    try:
        code = main(["fit", "--config", str(BASE), "--config", str(overlay), "--print_config"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    assert "did you mean 'CrossScaleRVQ'" in capsys.readouterr().err


def test_fit_with_a_bad_constructor_value_names_it_in_one_line(
    capsys: pytest.CaptureFixture,
) -> None:
    # jsonargparse nests a constructor's ValueError in one "Union subtypes" wrapper per level.
    option = "--model.codec.init_args.quantizer.init_args.kmeans_batches=0"
    try:
        code = main(["fit", "--config", str(BASE), option, "--trainer.max_steps=0"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    ours = [line for line in err if line.startswith("escx:")]
    assert ours == ["escx: error: kmeans_batches must be a whole number >= 1, got 0"]


# ---------------------------------------------------------------- escx list


def test_list_prints_every_registered_component_with_its_doc_line(
    capsys: pytest.CaptureFixture,
) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for kind, registry in registries().items():
        assert f"{kind}s:" in lines
        for name, cls in registry.items():
            assert any(
                line.split() and line.split()[0] == name and summary(cls) in line for line in lines
            ), f"{kind} {name} missing from `escx list`"


@pytest.mark.parametrize("kind", ["quantizers", "quantizer"])
def test_list_one_kind(kind: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["list", kind]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "quantizers:"
    for name in registries()["quantizer"]:
        assert name in out
    assert "encoders:" not in out and "SwinEncoder" not in out


def test_list_unknown_kind_fails_in_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["list", "widgets"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err and "unknown kind 'widgets'" in err and "quantizer" in err


@pytest.mark.parametrize("recipe", sorted(p.name for p in (EXPERIMENTS / "recipes").glob("*.yaml")))
def test_recipes_change_training_not_the_model(recipe: str) -> None:
    """A recipe overlay keeps the architecture: same parameter count and state-dict keys."""
    path = EXPERIMENTS / "recipes" / recipe
    for preset in ([BASE], [BASE, EXPERIMENTS / "tiny.yaml"]):
        plain = escx.build_codec(*preset).state_dict()
        with_recipe = escx.build_codec(*preset, path).state_dict()
        assert plain.keys() == with_recipe.keys()
        assert all(plain[k].shape == with_recipe[k].shape for k in plain)
