"""Shared test set-up: offline environment, small components built from the registries.

Contract tests never name a component: ``pytest_generate_tests`` parametrizes the arguments
``codec_name``, ``encoder_name``, ``decoder_name``, ``backbone`` (an encoder/decoder pair) and
``quantizer_name`` over the registries, so a newly registered component is tested with no new test
code. Components are built small (narrow widths, tiny codebooks) by passing only the keyword
arguments their constructor accepts; a component without those arguments is built with its
defaults.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

# Offline and quiet before anything imports wandb / datasets / huggingface_hub.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from escx.codecs.stft_codec import STFTCodec  # noqa: E402
from escx.config import registries  # noqa: E402

# One intra-op thread: the test models are tiny, so a second thread gains little, and on a shared
# 2-core machine OpenMP barriers waiting for a descheduled thread made this suite ~7x slower
# (123 s vs 18 s for test_contracts + test_codec with another job running).
torch.set_num_threads(1)

# Small widths: encoder dims run fine -> coarse, decoder dims coarse -> fine (docs/esc.md §4 order).
SMALL_OPTIONS: dict[str, dict[str, Any]] = {
    "encoder": {"dims": (8, 8, 8, 8, 8, 16), "heads": (1, 1, 1, 1, 1)},
    "decoder": {"dims": (16, 8, 8, 8, 8, 8), "heads": (1, 1, 1, 1, 1)},
    "quantizer": {"codebook_size": 16, "codebook_dim": 4, "codebook_dims": (4, 4, 4, 4, 4, 4)},
    # Codecs that take their sizes as arguments (DAC): narrow widths, the real strides.
    "codec": {"encoder_dim": 2, "decoder_dim": 32, "latent_dim": 16},
}

# The quantizer each codec family is built with in the registered-codec tests: a waveform codec's
# decoder has no stages for cross-scale refinement, so it gets a bottleneck quantizer.
FAMILY_QUANTIZER = {"stft": "CrossScaleRVQ", "waveform": "FactorizedRVQ"}

SAMPLE_RATE = 16000


def accepted_kwargs(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``options`` that ``cls``'s constructor names explicitly."""
    parameters = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in options.items() if k in parameters}


def build_small(kind: str, name: str, **overrides: Any) -> Any:
    """Instantiate registered component ``name`` of ``kind`` with small sizes (+ overrides)."""
    cls = registries()[kind].get(name)
    options = {**SMALL_OPTIONS.get(kind, {}), **overrides}
    return cls(**accepted_kwargs(cls, options))


def small_codec(encoder: str, decoder: str, quantizer: str, **quantizer_options: Any) -> STFTCodec:
    """A small :class:`STFTCodec` composed of registered components (fresh weights)."""
    return STFTCodec(
        build_small("encoder", encoder),
        build_small("decoder", decoder),
        build_small("quantizer", quantizer, **quantizer_options),
    )


def backbone_pairs() -> list[Any]:
    """Encoder/decoder pairs by name: ``FooEncoder`` goes with ``FooDecoder``.

    A component without a partner appears as a skipped parameter, so it is visible in the report.
    """
    regs = registries()
    encoders, decoders = list(regs["encoder"]), list(regs["decoder"])
    prefixes = {n.removesuffix("Encoder") for n in encoders} | {
        n.removesuffix("Decoder") for n in decoders
    }
    params = []
    for prefix in sorted(prefixes):
        enc, dec = f"{prefix}Encoder", f"{prefix}Decoder"
        if enc in encoders and dec in decoders:
            params.append(pytest.param((enc, dec), id=prefix))
        else:
            lonely = enc if enc in encoders else dec
            partner = dec if enc in encoders else enc
            params.append(
                pytest.param(
                    (enc, dec),
                    id=prefix,
                    marks=pytest.mark.skip(reason=f"{lonely} has no registered {partner}"),
                )
            )
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    regs = registries()
    by_argument = {
        "codec_name": "codec",
        "encoder_name": "encoder",
        "decoder_name": "decoder",
        "quantizer_name": "quantizer",
    }
    for argument, kind in by_argument.items():
        if argument in metafunc.fixturenames:
            metafunc.parametrize(argument, list(regs[kind]))
    if "backbone" in metafunc.fixturenames:
        metafunc.parametrize("backbone", backbone_pairs())


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same random state (weights, audio, k-means draws)."""
    torch.manual_seed(0)


@pytest.fixture
def short_audio() -> torch.Tensor:
    """(2, 4800) float32: 0.3 s of a decaying two-tone signal plus noise, deterministic."""
    gen = torch.Generator().manual_seed(1234)
    t = torch.arange(4800) / SAMPLE_RATE
    tones = torch.sin(2 * torch.pi * 220 * t) + 0.5 * torch.sin(2 * torch.pi * 1330 * t)
    audio = 0.3 * tones * torch.exp(-2 * t) + 0.05 * torch.randn(2, 4800, generator=gen)
    return audio.float()


@pytest.fixture
def make_codec():
    """:func:`small_codec` as a fixture: ``make_codec(encoder, decoder, quantizer, **options)``."""
    return small_codec


@pytest.fixture
def make_component():
    """:func:`build_small` as a fixture: ``make_component(kind, name, **overrides)``."""
    return build_small


def build_registered_codec(name: str) -> Any:
    """Registered codec ``name``: small Swin parts and its family's quantizer (small) where it
    takes parts, small sizes where it takes sizes, else defaults."""
    cls = registries()["codec"].get(name)
    parts = {
        "encoder": build_small("encoder", "SwinEncoder"),
        "decoder": build_small("decoder", "SwinDecoder"),
        "quantizer": build_small("quantizer", FAMILY_QUANTIZER[cls.family]),
        **SMALL_OPTIONS["codec"],
    }
    return cls(**accepted_kwargs(cls, parts))


@pytest.fixture
def make_registered_codec():
    """:func:`build_registered_codec` as a fixture: ``make_registered_codec(name)``."""
    return build_registered_codec
