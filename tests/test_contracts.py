"""Interface contracts of every registered backbone and quantizer (parametrized in conftest.py).

Each (encoder/decoder pair, quantizer) combination is built small and checked for the promises
every component makes: shapes, code dtype and stream counts in train and eval, finite scalar VQ
losses, gradients reaching every trainable parameter, and the pre-training bypass
(docs/esc.md §13.4). A newly registered component is picked up with no new test code.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from escx.config import registries
from escx.quantizers.codebook import Codebook

# Parameters built only so that parameter counts match the reference (docs/esc.md §11 / §9.2): the
# conv backbone's patch embedding owns a LayerNorm that it never applies, so it gets no gradient.
NEVER_USED = {"ConvEncoder": ("patch_embed.norm.",)}


def _unused(codec, name: str) -> bool:
    prefix, _, rest = name.partition(".")
    part = getattr(codec, prefix, None)
    return any(rest.startswith(p) for p in NEVER_USED.get(type(part).__name__, ()))


def _codebook_parameters(codec) -> set[str]:
    return {
        f"{module_name}.{param_name}"
        for module_name, module in codec.named_modules()
        if isinstance(module, Codebook)
        for param_name, _ in module.named_parameters(recurse=False)
    }


def _training_loss(out, audio: torch.Tensor) -> torch.Tensor:
    recon = (out.spec - out.target_spec).pow(2).mean() + (out.audio - audio).pow(2).mean()
    return recon + sum(out.quantizer.losses.values())


def test_forward_shapes_codes_and_losses(backbone, quantizer_name, make_codec, short_audio):
    codec = make_codec(*backbone, quantizer_name)
    batch, length = short_audio.shape
    frames = codec.num_frames(length)
    assert frames == -(-length * codec.frame_rate // codec.sample_rate)  # last frame padded

    codec.train()
    out = codec(short_audio, 1)
    assert out.audio.shape == (batch, length) and out.audio.dtype == torch.float32
    assert out.spec.shape == out.target_spec.shape
    assert out.spec.shape[:3] == (batch, 2, codec.stft.freq_bins)
    codes = out.quantizer.codes
    # Training runs every stream (masked beyond n_streams), so all of them come back.
    assert codes.dtype == torch.int64
    assert codes.shape == (batch, codec.max_streams, codec.num_groups, frames)
    assert 0 <= int(codes.min()) and int(codes.max()) < codec.codebook_size
    losses = out.quantizer.losses
    assert {"commit", "codebook"} <= set(losses)
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name

    codec.eval()
    with torch.no_grad():
        for s in range(1, codec.max_streams + 1):
            out = codec(short_audio, s)
            assert out.audio.shape == (batch, length)
            assert out.quantizer.codes.shape == (batch, s, codec.num_groups, frames)
            assert out.quantizer.codes.dtype == torch.int64
            assert all(torch.isfinite(v) and v.dim() == 0 for v in out.quantizer.losses.values())


def test_backward_reaches_every_trainable_parameter(
    backbone, quantizer_name, make_codec, short_audio
):
    codec = make_codec(*backbone, quantizer_name).train()
    out = codec(short_audio, codec.max_streams)
    _training_loss(out, short_audio).backward()
    missing = [
        name
        for name, p in codec.named_parameters()
        if p.requires_grad and p.grad is None and not _unused(codec, name)
    ]
    assert not missing, f"no gradient reaches {missing}"
    for name, p in codec.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    # Projections and (gradient-learned) codebooks of the quantizer take part.
    assert any(p.grad is not None for p in codec.quantizer.parameters())


def test_bypass_skips_codebooks_but_keeps_projections(
    backbone, quantizer_name, make_codec, short_audio
):
    codec = make_codec(*backbone, quantizer_name).train()
    out = codec(short_audio, 1, bypass_quantizer=True)
    assert out.audio.shape == short_audio.shape
    assert out.quantizer.codes.shape[:2] == (short_audio.shape[0], 0)
    assert out.quantizer.codes.dtype == torch.int64
    for name, value in out.quantizer.losses.items():
        assert value.dim() == 0 and value.item() == 0.0, name
    _training_loss(out, short_audio).backward()

    # Projections (ESC's down/up Linear layers; PlainRVQ has none) stay in the path and train.
    codebooks = _codebook_parameters(codec)
    for name, p in codec.named_parameters():
        if name in codebooks:
            assert p.grad is None, f"codebook {name} got a gradient in bypass mode"
        elif p.requires_grad and not _unused(codec, name):
            assert p.grad is not None, f"{name} got no gradient in bypass mode"

    codec.eval()
    with torch.no_grad():
        bypassed = codec(short_audio, codec.max_streams, bypass_quantizer=True).audio
        quantized = codec(short_audio, codec.max_streams).audio
        assert not torch.allclose(bypassed, quantized)
        for book in _codebooks(codec):  # the bypassed path never reads a codebook
            book.weight.mul_(-2.0).add_(1.0)
        again = codec(short_audio, codec.max_streams, bypass_quantizer=True).audio
    assert torch.equal(again, bypassed)


def test_encoder_feature_maps_match_feature_shapes(encoder_name, make_component):
    encoder = make_component("encoder", encoder_name)
    batch, frames = 2, 61  # 0.3 s of STFT frames; the odd last frame is dropped by patching
    feats = encoder(torch.randn(batch, 2, encoder.freq_bins, frames))
    shapes = encoder.feature_shapes
    assert isinstance(feats, list) and len(feats) == len(shapes) >= 1
    width = frames // encoder.time_patch
    for i, (feat, shape) in enumerate(zip(feats, shapes, strict=True)):
        assert feat.shape == (batch, shape.channels, shape.rows, width), f"scale {i}"


def test_decoder_stages_match_stage_shapes(decoder_name, make_component):
    decoder = make_component("decoder", decoder_name)
    shapes = decoder.stage_shapes
    assert decoder.num_stages == len(shapes)
    batch, width = 2, 6
    z = torch.randn(batch, shapes[0].channels, shapes[0].rows, width)
    seen = []

    def refine(stage: int, h: torch.Tensor) -> torch.Tensor:
        seen.append((stage, tuple(h.shape)))
        return h

    out = decoder(z, refine)
    expected = [(i, (batch, s.channels, s.rows, width)) for i, s in enumerate(shapes)]
    assert seen == expected
    assert out.shape == (batch, 2, decoder.freq_bins, 2 * width)

    # forward() is exactly the stage-by-stage run that quantizers drive during encoding.
    h = z
    for i in range(decoder.num_stages):
        assert h.shape[1:3] == tuple(shapes[i])
        h = decoder.stage(i, h)
    assert torch.equal(decoder.head(h), decoder(z))


# ---------------------------------------------------------------- codebook learning options


def _learning_codec(quantizer_name: str, make_codec, **options):
    cls = registries()["quantizer"].get(quantizer_name)
    missing = set(options) - set(inspect.signature(cls.__init__).parameters)
    if missing:
        pytest.skip(f"{quantizer_name} has no option {sorted(missing)}")
    return make_codec("SwinEncoder", "SwinDecoder", quantizer_name, **options)


def _codebooks(codec) -> list[Codebook]:
    books = [m for m in codec.quantizer.modules() if isinstance(m, Codebook)]
    assert books, "the quantizer has no Codebook modules"
    return books


def _record_inputs(books: list[Codebook]) -> dict[Codebook, torch.Tensor]:
    """Capture the (N, dim) vectors each codebook sees in its first call."""
    seen: dict[Codebook, torch.Tensor] = {}

    def hook(module: Codebook, args: tuple) -> None:
        seen.setdefault(module, args[0].detach().reshape(-1, module.dim).float().clone())

    for book in books:
        book.register_forward_pre_hook(hook)
    return seen


def test_default_codebooks_learn_only_through_gradients(
    quantizer_name, make_codec, short_audio
) -> None:
    codec = _learning_codec(quantizer_name, make_codec).train()
    books = _codebooks(codec)
    before = [b.weight.detach().clone() for b in books]
    out = codec(short_audio, codec.max_streams)
    assert all(torch.equal(b.weight, w) for b, w in zip(books, before, strict=True))
    assert out.quantizer.losses["codebook"] > 0


def test_kmeans_init_takes_codewords_from_the_first_training_batch(
    quantizer_name, make_codec, short_audio
) -> None:
    codec = _learning_codec(quantizer_name, make_codec, codebook_init="kmeans")
    books = _codebooks(codec)
    assert not any(bool(b.initialized) for b in books)
    codec.eval()
    with torch.no_grad():
        codec(short_audio, 1)  # evaluation never initialises
    assert not any(bool(b.initialized) for b in books)

    before = [b.weight.detach().clone() for b in books]
    inputs = _record_inputs(books)
    codec.train()
    codec(short_audio, codec.max_streams)
    for book, old in zip(books, before, strict=True):
        assert bool(book.initialized) and not torch.equal(book.weight, old)
        # Lloyd centroids are means of data vectors: inside the data's bounding box.
        data = inputs[book]
        low, high = data.min(0).values - 1e-5, data.max(0).values + 1e-5
        assert ((book.weight >= low) & (book.weight <= high)).all()
    assert all(bool(v) for k, v in codec.state_dict().items() if k.endswith("initialized"))

    after = [b.weight.detach().clone() for b in books]
    codec(short_audio, codec.max_streams)  # only the first batch initialises
    assert all(torch.equal(b.weight, w) for b, w in zip(books, after, strict=True))


def test_ema_codebooks_move_without_gradients(quantizer_name, make_codec, short_audio) -> None:
    codec = _learning_codec(quantizer_name, make_codec, ema_decay=0.5).train()
    books = _codebooks(codec)
    assert not any(b.weight.requires_grad for b in books)
    before = [b.weight.detach().clone() for b in books]
    out = codec(short_audio, codec.max_streams)
    assert out.quantizer.losses["codebook"].item() == 0.0
    assert out.quantizer.losses["commit"].item() > 0.0
    _training_loss(out, short_audio).backward()
    for book, old in zip(books, before, strict=True):
        assert book.weight.grad is None
        assert not torch.equal(book.weight, old)


def test_dead_codewords_are_restarted_from_the_batch(
    quantizer_name, make_codec, short_audio
) -> None:
    # A threshold far above uniform usage (1e6 x 1/size) marks every entry dead after one batch.
    codec = _learning_codec(quantizer_name, make_codec, dead_threshold=1e6).train()
    books = _codebooks(codec)
    before = [b.weight.detach().clone() for b in books]
    inputs = _record_inputs(books)
    codec(short_audio, codec.max_streams)
    for book, old in zip(books, before, strict=True):
        data = inputs[book]
        weight = book.weight.detach()
        assert (weight != old).any(dim=1).all(), "a dead entry was not restarted"
        # Every restarted entry is one of the vectors the codebook saw.
        assert (weight[:, None, :] == data[None, :, :]).all(dim=2).any(dim=1).all()
