"""Reference checkpoint conversion: escx reproduces the reference ESC implementation.

The fixtures in ``tests/fixtures/reference`` hold tiny reference models (all four reference
classes: CS-RVQ / RVQ x Swin / conv), an input, and what the reference computed from it (see the
README there). A converted codec must give the same codes exactly and the same audio to 1e-5.
The reference returns 80 samples fewer than its input (docs/esc.md §2), so only escx's first L - 80
samples have a counterpart.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import torch
import yaml

from escx.config import build_codec
from escx.convert import (
    ConversionError,
    convert_reference_state_dict,
    instantiate,
    load_reference_checkpoint,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reference"
FIXTURE_FILES = sorted(FIXTURES.glob("*.pt"))
TOLERANCE = 1e-5
SHORTFALL = 80  # the reference iSTFT output is one hop shorter than the input


def _relative_position_index(window: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    rel = (coords.flatten(1)[:, :, None] - coords.flatten(1)[:, None, :]).permute(1, 2, 0)
    rel = rel + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def reference_state(fixture: dict) -> dict[str, torch.Tensor]:
    """Unpack the fixture into the reference state dict, constant buffers included."""
    packed, model = fixture["state"], fixture["config"]["model"]
    state, offsets = {}, {"float32": 0, "int64": 0}
    for line in zlib.decompress(packed["index"]).decode().split("\n"):
        key, dtype, shape_text = line.split("\t")
        shape = tuple(int(s) for s in shape_text.split(",")) if shape_text else ()
        if key in ("ft.window", "ift.window"):
            state[key] = torch.hann_window(int(model["win_len"] * model["sr"] * 1e-3))
        elif key.endswith(".relative_position_index"):
            state[key] = _relative_position_index(model["window_size"])
        else:
            start, count = offsets[dtype], int(torch.Size(shape).numel())
            state[key] = packed[dtype][start : start + count].view(shape).clone()
            offsets[dtype] = start + count
    assert offsets == {k: packed[k].numel() for k in offsets}
    return state


@pytest.fixture(scope="module", params=FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def fixture(request) -> dict:
    data = torch.load(request.param, map_location="cpu", weights_only=True)
    data["reference_state"] = reference_state(data)
    return data


def convert(fixture: dict, config: dict | None = None):
    state = {k: v.clone() for k, v in fixture["reference_state"].items()}
    return convert_reference_state_dict(state, config or fixture["config"])


@pytest.fixture(scope="module")
def converted(fixture: dict):
    """(codec, codec_config) in eval mode, shared by the tests that do not change it."""
    return convert(fixture)


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_fixtures_are_present_and_small() -> None:
    assert FIXTURE_FILES, f"no reference fixtures in {FIXTURES}"
    total = sum(p.stat().st_size for p in FIXTURE_FILES)
    assert total < 400_000, f"reference fixtures take {total} bytes; keep them small"


@torch.no_grad()
def test_codes_match_reference(fixture: dict, converted) -> None:
    codec, _ = converted
    x, codes = fixture["input"], fixture["codes"].long()
    for s in range(1, codec.max_streams + 1):
        assert torch.equal(codec.encode(x, s), codes[:, :s]), f"codes differ at {s} streams"


@torch.no_grad()
def test_audio_matches_reference(fixture: dict, converted) -> None:
    codec, _ = converted
    x, codes = fixture["input"], fixture["codes"].long()
    length = x.shape[-1]
    for i, s in enumerate(fixture["audio_streams"]):
        reference = fixture["audio"][:, i]
        decoded = codec.decode(codes[:, :s], length)
        out = codec(x, s)
        assert decoded.shape == out.audio.shape == x.shape
        assert max_error(decoded[..., : length - SHORTFALL], reference) < TOLERANCE, s
        assert max_error(out.audio[..., : length - SHORTFALL], reference) < TOLERANCE, s
        assert torch.equal(out.quantizer.codes, codes[:, :s])
        losses = torch.stack([out.quantizer.losses["commit"], out.quantizer.losses["codebook"]])
        torch.testing.assert_close(losses, fixture["eval_losses"][:, i].mean(0))


def test_training_mode_matches_reference(fixture: dict) -> None:
    for i, s in enumerate(fixture["train_streams"]):
        codec, _ = convert(fixture)  # fresh: BatchNorm running stats change in training
        codec.train()
        out = codec(fixture["input"], s)
        losses = torch.stack([out.quantizer.losses["commit"], out.quantizer.losses["codebook"]])
        torch.testing.assert_close(losses.detach(), fixture["train_losses"][i])
        if s == 2:  # training runs every stream, so codes for all of them come back
            assert torch.equal(out.quantizer.codes, fixture["train_codes"].long())


def test_codec_config_rebuilds_the_codec(converted) -> None:
    codec, config = converted
    expected = {k: v.shape for k, v in codec.state_dict().items()}
    for rebuilt in (instantiate(config), build_codec(config)):
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == expected
        rebuilt.load_state_dict(codec.state_dict(), strict=True)
    assert yaml.safe_load(yaml.safe_dump(config)) == config  # plain data only


@torch.no_grad()
def test_model_kind_is_inferred_without_model_name(fixture: dict) -> None:
    codec, _ = convert(fixture, dict(fixture["config"]["model"]))
    x = fixture["input"]
    assert torch.equal(codec.encode(x, 2), fixture["codes"].long()[:, :2])


@torch.no_grad()
def test_load_reference_checkpoint_files(fixture: dict, tmp_path: Path) -> None:
    run = tmp_path / "esc9kbps"
    run.mkdir()
    torch.save({"step": 7, "model_state_dict": fixture["reference_state"]}, run / "model.pth")
    full_config = {"data": {"num_workers": 1}, **fixture["config"], "loss": {"cm_weight": 0.25}}
    (run / "config.yaml").write_text(yaml.safe_dump(full_config, sort_keys=False))
    state, config = load_reference_checkpoint(run / "model.pth")
    assert config == full_config and state.keys() == fixture["reference_state"].keys()
    codec, _ = convert_reference_state_dict(state, config)
    assert torch.equal(codec.encode(fixture["input"], 3), fixture["codes"].long()[:, :3])

    bare = tmp_path / "bare.pth"  # README-style bare state dict, config given explicitly
    torch.save(fixture["reference_state"], bare)
    state, _ = load_reference_checkpoint(bare, run / "config.yaml")
    assert state.keys() == fixture["reference_state"].keys()


def _first(fixture: dict, fragment: str) -> str:
    return next(k for k in fixture["reference_state"] if fragment in k)


@pytest.mark.parametrize("case", ["missing", "extra", "shape"])
def test_mismatched_state_dict_is_refused(fixture: dict, case: str) -> None:
    state = {k: v.clone() for k, v in fixture["reference_state"].items()}
    key = _first(fixture, "decoder.patch_deembed.de_proj2.weight")
    if case == "missing":
        del state[key]
        expected = "patch_deembed.out.weight"  # named by its escx name
    elif case == "extra":
        state["decoder.blocks.0.extra.weight"] = torch.zeros(3)
        expected = "decoder.blocks.0.extra.weight"
    else:
        state[key] = torch.zeros(1, 2, 3)
        expected = key
    with pytest.raises(ConversionError, match=expected.replace(".", r"\.")) as error:
        convert_reference_state_dict(state, fixture["config"])
    assert "\n" not in str(error.value)


def test_inconsistent_config_is_refused(fixture: dict) -> None:
    config = fixture["config"]
    name = config["model_name"]
    wrong_name = name.replace("csvq", "rvq") if "csvq" in name else name.replace("rvq", "csvq")
    cases = [
        ({**config, "model_name": wrong_name}, "does not match the checkpoint"),
        ({**config, "model_name": "esc+mamba"}, "unknown reference model_name"),
        ({**config, "model": {**config["model"], "h_dim": 3}}, "unknown reference model config"),
        ({**config, "model": {**config["model"], "codebook_size": 8}}, "wrong shape"),
        ({**config, "model": {**config["model"], "max_streams": 5}}, "max_streams"),
    ]
    for bad, message in cases:
        with pytest.raises(ConversionError, match=message):
            convert_reference_state_dict(fixture["reference_state"], bad)


def test_missing_checkpoint_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="checkpoint not found"):
        load_reference_checkpoint(tmp_path / "model.pth")
    torch.save({"model_state_dict": {"w": torch.zeros(1)}}, tmp_path / "model.pth")
    with pytest.raises(ConversionError, match="config not found"):
        load_reference_checkpoint(tmp_path / "model.pth")
    (tmp_path / "config.yaml").write_text("model_name: csvq+swinT\n")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="cannot read"):
        load_reference_checkpoint(tmp_path / "junk.pth")
    torch.save({"step": 3}, tmp_path / "empty.pth")
    with pytest.raises(ConversionError, match="no reference state dict"):
        load_reference_checkpoint(tmp_path / "empty.pth")
