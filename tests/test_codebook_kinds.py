"""Contracts of every codebook kind in every quantizer that holds codebooks.

Parametrized over (kind variant x quantizer): a variant is a registered kind with small options
(the learned kinds also with the rotation trick); a kind registered by a plug-in is tested with
its defaults. Each is built into a small Swin codec and checked for integer codes in range,
gradients reaching the encoder, ``decode(encode(x)) == forward`` in eval, bitstream and
state-dict round trips, and one-line errors for options that make no sense.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import pytest
import torch
from conftest import small_codec
from training_helpers import ESC

import escx
from escx.bitstream import decode_bitstream, encode_bitstream, truncate_bitstream
from escx.config import registries
from escx.metrics.codebook import CodebookUsage
from escx.quantizers.kinds import CODEBOOKS, CodebookKind, codebook_spec

# Small options per kind: 15 FSQ codes (not a power of two: 4-bit fields, log2(15) bits of
# information) and 16 codes for the others, like conftest's 16-entry VQ.
SMALL_KINDS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "VQ": [("VQ", {}), ("VQ-rotation", {"estimator": "rotation"})],
    "FSQ": [("FSQ", {"levels": [5, 3]}), ("FSQ-noise", {"levels": [5, 3], "noise_dropout": 0.5})],
    "LFQ": [
        ("LFQ", {"bits": 4, "entropy_weight": 0.1}),
        ("BSQ", {"bits": 4, "spherical": True, "entropy_weight": 0.1}),
        (
            "BSQ-per-bit",
            {"bits": 4, "spherical": True, "entropy_weight": 0.1, "entropy": "per_bit"},
        ),
    ],
    "SimVQ": [("SimVQ", {}), ("SimVQ-rotation", {"estimator": "rotation"})],
}


def kind_variants() -> list[Any]:
    params = []
    for name in CODEBOOKS:
        for label, args in SMALL_KINDS.get(name, [(name, {})]):
            params.append(pytest.param({"codebook": name, "codebook_args": args}, id=label))
    return params


def codebook_quantizers() -> list[str]:
    """Registered quantizers that take a codebook kind."""
    return [
        name
        for name, cls in registries()["quantizer"].items()
        if "codebook" in inspect.signature(cls.__init__).parameters
    ]


KINDS = kind_variants()
QUANTIZERS = codebook_quantizers()


def build(variant: dict[str, Any], quantizer: str, seed: int = 0):
    torch.manual_seed(seed)
    return small_codec("SwinEncoder", "SwinDecoder", quantizer, **variant)


@pytest.mark.parametrize("quantizer", QUANTIZERS)
@pytest.mark.parametrize("variant", KINDS)
def test_codes_are_integers_in_range_with_the_right_shapes(variant, quantizer, short_audio):
    codec = build(variant, quantizer)
    spec = codec.quantizer.codebook_spec
    assert codec.codebook_size == spec.size
    assert codec.bits_per_code == math.ceil(math.log2(spec.size))
    assert codec.bitrate(1) == pytest.approx(
        codec.num_groups * math.log2(spec.size) * codec.frame_rate
    )
    batch, length = short_audio.shape
    frames = codec.num_frames(length)
    for training in (True, False):
        codec.train(training)
        with torch.set_grad_enabled(training):
            out = codec(short_audio, codec.max_streams)
        codes = out.quantizer.codes
        assert codes.dtype == torch.int64
        assert codes.shape == (batch, codec.max_streams, codec.num_groups, frames)
        assert 0 <= int(codes.min()) and int(codes.max()) < codec.codebook_size
        assert set(out.quantizer.losses) == {"commit", "codebook"}
        assert all(v.dim() == 0 and torch.isfinite(v) for v in out.quantizer.losses.values())
    # Codebook-health metrics take the kind's code count.
    usage = CodebookUsage(codec.max_streams, codec.num_groups, codec.codebook_size)
    usage.update(codes)
    stats = usage.compute()
    assert 0 < float(stats["usage"]) <= 1 and 0 <= float(stats["utilization"]) <= 1


@pytest.mark.parametrize("quantizer", QUANTIZERS)
@pytest.mark.parametrize("variant", KINDS)
def test_gradients_reach_the_encoder_through_the_estimator(variant, quantizer, short_audio):
    codec = build(variant, quantizer).train()
    out = codec(short_audio, codec.max_streams)
    # Reconstruction only: the encoder's gradient can come only through the quantizer's estimator.
    recon = (out.spec - out.target_spec).pow(2).mean()
    recon.backward(retain_graph=True)
    grads = [p.grad for p in codec.encoder.parameters() if p.grad is not None]
    assert sum(float(g.abs().sum()) for g in grads) > 0
    codec.zero_grad()
    (recon + sum(out.quantizer.losses.values())).backward()
    for name, param in codec.named_parameters():
        assert param.grad is None or bool(torch.isfinite(param.grad).all()), name
    # Learned entries (VQ's weight, SimVQ's map) learn through the codebook loss.
    for module in codec.quantizer.modules():
        if isinstance(module, CodebookKind):
            for name, param in module.named_parameters():
                assert param.grad is not None and bool(param.grad.abs().sum() > 0), name


@pytest.mark.parametrize("quantizer", QUANTIZERS)
@pytest.mark.parametrize("variant", KINDS)
def test_eval_decode_of_encode_equals_forward_and_survives_the_bitstream(
    variant, quantizer, short_audio
):
    codec = build(variant, quantizer).eval()
    length = short_audio.shape[1]
    top = codec.max_streams
    with torch.no_grad():
        for streams in sorted({1, top}):
            codes = codec.encode(short_audio, streams)
            assert torch.equal(codec.decode(codes, length), codec(short_audio, streams).audio)
        codes = codec.encode(short_audio, top)
    data = encode_bitstream(codes[0], sample_rate=16000, num_samples=length,
                            bits_per_code=codec.bits_per_code, fingerprint=b"k" * 8)  # fmt: skip
    header, decoded = decode_bitstream(data)
    assert header.bits_per_code == codec.bits_per_code
    assert torch.equal(torch.from_numpy(decoded), codes[0])
    _, first = decode_bitstream(truncate_bitstream(data, 1))
    assert torch.equal(torch.from_numpy(first), codes[0, :1])


@pytest.mark.parametrize("quantizer", QUANTIZERS)
@pytest.mark.parametrize("variant", KINDS)
def test_state_dict_round_trip_reproduces_the_codec(variant, quantizer, short_audio):
    trained = build(variant, quantizer, seed=0).train()
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-2)
    out = trained(short_audio, trained.max_streams)
    ((out.audio - short_audio).pow(2).mean() + sum(out.quantizer.losses.values())).backward()
    optimizer.step()
    fresh = build(variant, quantizer, seed=1)
    fresh.load_state_dict(trained.state_dict())
    trained.eval(), fresh.eval()
    with torch.no_grad():
        codes = trained.encode(short_audio, trained.max_streams)
        assert torch.equal(fresh.encode(short_audio, trained.max_streams), codes)
        streams = min(2, trained.max_streams)
        assert torch.equal(fresh(short_audio, streams).audio, trained(short_audio, streams).audio)


@pytest.mark.parametrize(
    ("variant", "match"),
    [
        ({"codebook": "FSQ", "codebook_init": "kmeans"}, "codebook_init='kmeans' has no meaning"),
        ({"codebook": "FSQ", "ema_decay": 0.99}, "ema_decay=0.99 has no meaning for codebook FSQ"),
        ({"codebook": "LFQ", "dead_threshold": 0.1}, "dead_threshold=0.1 has no meaning"),
        ({"codebook": "LFQ", "kmeans_batches": 4}, "kmeans_batches=4 has no meaning"),
        ({"codebook": "SimVQ", "ema_decay": 0.9}, "ema_decay=0.9 has no meaning"),
        ({"codebook": "FSQ", "codebook_args": {"levels": [4, 1]}}, "FSQ levels must be"),
        ({"codebook": "FSQ", "codebook_args": {"bits": 4}}, "codebook FSQ has no option 'bits'"),
        ({"codebook": "FSQ", "codebook_args": {"noise_dropout": 2}}, "noise_dropout must be a"),
        ({"codebook": "VQ", "codebook_args": {"init": "kmeans"}}, "no option 'init'"),
        ({"codebook": "LFQ", "codebook_args": {"bits": 0}}, "LFQ bits must be"),
        ({"codebook": "LFQ", "codebook_args": {"entropy_weight": -1}}, "entropy_weight"),
        ({"codebook": "LFQ", "codebook_args": {"entropy": "exact"}}, "entropy must be 'joint'"),
        (
            {"codebook": "LFQ", "codebook_args": {"bits": 16, "entropy_weight": 0.1}},
            "use entropy: per_bit",
        ),
        ({"codebook": "VQ", "codebook_args": {"estimator": "gumbel"}}, "estimator must be one"),
        ({"codebook": "FSQX"}, "unknown codebook 'FSQX'; did you mean 'FSQ'?"),
        ({"codebook": "FSQ", "codebook_args": {"levels": [2] * 17}}, "escx streams hold"),
    ],
)
@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_options_that_make_no_sense_fail_at_construction_in_one_line(quantizer, variant, match):
    cls = registries()["quantizer"].get(quantizer)
    with pytest.raises(ValueError, match=match) as info:
        cls(**variant)
    assert "\n" not in str(info.value)


def test_fsq_noise_dropout_adds_noise_in_training_only_and_keeps_the_codes() -> None:
    """With noise_dropout 1 every training value is its unrounded value plus noise within half a
    step (off the grid); the codes, and the eval output, are the rounded ones."""
    from escx.quantizers.fsq import FSQ

    torch.manual_seed(0)
    plain, noisy = FSQ(2, 15, levels=[5, 3]), FSQ(2, 15, levels=[5, 3], noise_dropout=1.0)
    z = torch.randn(4, 50, 2, requires_grad=True)
    grid, codes, _, _ = plain(z)
    out, noisy_codes, _, _ = noisy(z)
    assert torch.equal(noisy_codes, codes)
    # Output units are integers / centre: the value is within half a step of its rounding and
    # the noise within another half.
    step = 1 / plain.centre
    assert ((out - grid).abs() <= step + 1e-6).all()
    assert not torch.isin(out * plain.centre, torch.arange(-2.0, 3.0)).all()  # off the grid
    out.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    noisy.eval()
    assert torch.equal(noisy(z)[0], grid)


def test_a_plugin_kind_is_built_in_every_slot() -> None:
    from escx.quantizers.fsq import FSQ

    class Binary(FSQ):
        """Test kind: FSQ with two levels per dimension."""

        def __init__(self, dim: int, size: int, stage: int = 0, width: int = 3) -> None:
            super().__init__(dim, size, stage, levels=[2] * width)

        @classmethod
        def num_codes(cls, size: int, **options: Any) -> int:
            return 2 ** options.get("width", 3)

        @classmethod
        def fixed_dim(cls, **options: Any) -> int | None:
            return options.get("width", 3)

    CODEBOOKS.register(Binary)
    try:
        spec = codebook_spec("Binary", kind_args={"width": 2})
        codec = build({"codebook": "Binary", "codebook_args": {"width": 2}}, "CrossScaleRVQ")
        books = [b for stream in codec.quantizer.codebooks_by_stream() for b in stream]
        assert spec.size == codec.codebook_size == 4
        assert len(books) == 18 and all(isinstance(b, Binary) for b in books)
    finally:
        CODEBOOKS.unregister("Binary")


def test_bitrate_comes_from_log2_of_the_code_count() -> None:
    codec = escx.build_codec(
        ESC,
        {"model": {"codec": {"init_args": {"quantizer": {"init_args": {
            "codebook": "FSQ", "codebook_args": {"levels": [8, 5, 5, 5]}}}}}}},
    )  # fmt: skip
    assert codec.codebook_size == 1000 and codec.bits_per_code == 10
    assert codec.bitrate(1) == pytest.approx(3 * 50 * math.log2(1000))  # 1494.9 bit/s
    assert codec.bitrate(6) / 1000 == pytest.approx(8.969, abs=1e-3)
    # Requested bitrates name the nearest stream count within 0.5 %.
    assert [codec.streams_for_kbps(k) for k in (1.5, 4.5, 9.0)] == [1, 3, 6]
    with pytest.raises(ValueError, match="not available"):
        codec.streams_for_kbps(4.0)
    # 10-bit fields can hold 1000..1023, which are no FSQ code: decoding refuses them.
    codes = torch.full((1, 1, 3, codec.num_frames(3200)), 999)
    codec.check_codes(codes, 3200)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 1000\)"):
        codec.check_codes(codes + 1, 3200)


# ESC-Base (Swin + CS-RVQ, 6 streams x 3 groups) with each codebook overlay; in the README.
ESC_BASE_PARAMETERS = {
    "": (8_386_373, 380_928),
    "fsq": (8_151_365, 145_920),
    "lfq": (8_297_285, 291_840),
    "simvq": (8_240_069, 234_624),
    "rotation": (8_386_373, 380_928),
}


@pytest.mark.parametrize("overlay", list(ESC_BASE_PARAMETERS), ids=lambda o: o or "vq")
def test_esc_base_parameter_counts_per_codebook_kind(overlay: str) -> None:
    configs = [ESC] + ([ESC.parent / "ablations" / f"codebook-{overlay}.yaml"] if overlay else [])
    codec = escx.build_codec(*configs)
    total, quantizer = ESC_BASE_PARAMETERS[overlay]
    assert sum(p.numel() for p in codec.parameters()) == total
    assert sum(p.numel() for p in codec.quantizer.parameters()) == quantizer
    # Every overlay keeps ESC's 10 bits per code: 1.5 kbps per stream, 9 kbps at six.
    assert codec.codebook_size == 1024 and codec.bitrate(6) == 9000.0


def test_codebook_kind_study_changes_only_the_kind() -> None:
    from escx.experiments.studies import STUDIES, codebook_kind_study, default_steps

    assert STUDIES["codebook-kind"] is codebook_kind_study
    variants = codebook_kind_study(500)
    assert [v.name for v in variants] == ["vq", "fsq", "lfq", "simvq", "rotation"]
    expected = {  # kind, estimator of the learned kinds
        "vq": ("VQ", "straight_through"),
        "fsq": ("FSQ", None),
        "lfq": ("LFQ", None),
        "simvq": ("SimVQ", "straight_through"),
        "rotation": ("VQ", "rotation"),
    }
    for variant in variants:
        assert variant.overrides == ["--model.pretrain_steps=50"]  # ESC's recipe for every arm
        configs = [ESC, ESC.parent / "tiny.yaml", *(ESC.parents[1] / c for c in variant.configs)]
        codec = escx.build_codec(*configs)
        assert type(codec.quantizer).__name__ == "CrossScaleRVQ"
        assert codec.codebook_size == 1024  # 10 bits per code in every arm
        books = [b for stream in codec.quantizer.codebooks_by_stream() for b in stream]
        kinds = {(type(b).__name__, getattr(b, "estimator", None)) for b in books}
        assert kinds == {expected[variant.name]}, variant.name
    assert default_steps("codebook-kind", "tiny", "esc") == 500
    assert default_steps("codebook-kind", "tiny", "quick") == 1000


def test_readme_table_matches_the_tested_parameter_counts() -> None:
    readme = (ESC.parents[1] / "README.md").read_text()
    section = readme.split("### Codebook kinds")[1].split("```")[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[2].replace(",", "").isdigit():
            overlay = cells[0].rsplit("codebook-", 1)[1][:-6] if "codebook-" in cells[0] else ""
            rows[overlay] = (int(cells[2].replace(",", "")), int(cells[3].replace(",", "")))
    assert rows == ESC_BASE_PARAMETERS


KIND_OVERLAYS = {"fsq": "FSQ", "lfq": "LFQ", "simvq": "SimVQ", "rotation": "VQ"}


QUANTIZER_OVERLAYS = {"csrvq-conv": "CrossScaleRVQ", "rvq-swin": "ResidualVQ",
                      "plain-rvq-swin": "PlainRVQ"}  # fmt: skip


@pytest.mark.parametrize("quantizer_overlay", list(QUANTIZER_OVERLAYS))
@pytest.mark.parametrize("kind_overlay", list(KIND_OVERLAYS))
def test_kind_overlays_stack_on_the_quantizer_ablations(quantizer_overlay, kind_overlay) -> None:
    ablations = ESC.parent / "ablations"
    codec = escx.build_codec(ESC, ESC.parent / "tiny.yaml", ablations / f"{quantizer_overlay}.yaml",
                             ablations / f"codebook-{kind_overlay}.yaml")  # fmt: skip
    assert type(codec.quantizer).__name__ == QUANTIZER_OVERLAYS[quantizer_overlay]
    books = [b for stream in codec.quantizer.codebooks_by_stream() for b in stream]
    assert books and {type(b).__name__ for b in books} == {KIND_OVERLAYS[kind_overlay]}
    assert codec.codebook_size == 1024  # 10 bits per code, the quantizer's bitrate unchanged
