"""The training objective: a ``{name: weight}`` map over loss terms (docs/esc.md §13.5).

Keys of ``loss_weights`` are the names logged as ``train/loss/<name>``, so weights and curves line
up. A term with weight 0 is not computed at all (ESC-Base(adv) drops the STFT loss that way).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from escx.adversarial import feature_matching_loss, generator_adversarial_loss
from escx.codecs.base import CodecOutput
from escx.losses import RECONSTRUCTION_LOSSES

VQ_TERMS = ("commit", "codebook")
ADVERSARIAL_TERMS = ("adversarial", "feature_matching")
ALL_TERMS = (*RECONSTRUCTION_LOSSES, *VQ_TERMS, *ADVERSARIAL_TERMS)

# ESC-Base (non-adversarial) weights, docs/esc.md §13.5.
ESC_LOSS_WEIGHTS = {"stft": 1.0, "mel": 0.25, "commit": 0.25, "codebook": 1.0}


class Objective(nn.Module):
    """Weighted sum of reconstruction, VQ and (optionally) adversarial terms.

    Args:
        loss_weights: ``{term: weight}``; terms: the reconstruction losses of
            :data:`escx.losses.RECONSTRUCTION_LOSSES` (stft, mel, mrstft, compressed_spectrum,
            waveform, sisdr), commit, codebook, adversarial, feature_matching.
        adversarial_loss: "lsgan" (ESC, DAC) or "hinge" (EnCodec).
        sample_rate: audio rate for the mel loss.
        loss_args: ``{term: {option: value}}``: constructor options of reconstruction losses,
            e.g. DAC's log-only mel loss ``{mel: {linear_weight: 0, mel_scale: slaney}}``
            (default: every loss with its defaults, ESC's).
    """

    def __init__(
        self,
        loss_weights: Mapping[str, float],
        adversarial_loss: str = "lsgan",
        sample_rate: int = 16000,
        loss_args: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        unknown = sorted(set(loss_weights) - set(ALL_TERMS))
        if unknown:
            raise ValueError(
                f"unknown loss term(s) {unknown} in loss_weights; valid: {', '.join(ALL_TERMS)}"
            )
        loss_args = dict(loss_args or {})
        unknown = sorted(set(loss_args) - set(RECONSTRUCTION_LOSSES))
        if unknown:
            raise ValueError(
                f"loss_args names {unknown}, which take no options; reconstruction losses: "
                f"{', '.join(RECONSTRUCTION_LOSSES)}"
            )
        self.weights = {k: float(v) for k, v in loss_weights.items() if float(v) != 0.0}
        self.adversarial_loss = adversarial_loss
        self.reconstruction = nn.ModuleDict(
            {
                name: _build_loss(name, cls, sample_rate, loss_args.get(name) or {})
                for name, cls in RECONSTRUCTION_LOSSES.items()
                if name in self.weights
            }
        )

    def check_codec(self, codec: Any) -> None:
        """Raise a one-line ValueError if a weighted loss needs a spectrum ``codec`` lacks.

        Spectrum losses (stft, compressed_spectrum) compare the decoder's predicted STFT with the
        input's; a codec with ``spectrum_output = False`` (a waveform codec such as DAC) has none.
        """
        if getattr(codec, "spectrum_output", True):
            return
        needs = [name for name, loss in self.reconstruction.items() if loss.domain == "spectrum"]
        if needs:
            it, them = ("it", "it compares") if len(needs) == 1 else ("them", "they compare")
            raise ValueError(
                f"loss_weights gives {', '.join(needs)} a weight, but {them} the decoder's "
                f"predicted STFT, which {type(codec).__name__} does not produce (it decodes "
                f"samples); set {it} to 0 and use mel, mrstft, waveform or sisdr"
            )

    @property
    def uses_adversarial(self) -> bool:
        return any(term in self.weights for term in ADVERSARIAL_TERMS)

    def generator_terms(
        self,
        audio: Tensor,
        out: CodecOutput,
        fake: tuple[list[Tensor], list[list[Tensor]]] | None = None,
        real_features: list[list[Tensor]] | None = None,
    ) -> dict[str, Tensor]:
        """Unweighted terms for the codec; adversarial ones only when ``fake`` is given."""
        terms: dict[str, Tensor] = {}
        for name, loss in self.reconstruction.items():
            if loss.domain == "spectrum":
                terms[name] = loss(out.spec, out.target_spec)
            else:
                terms[name] = loss(out.audio, audio)
        for name in VQ_TERMS:
            if name in self.weights:
                terms[name] = out.quantizer.losses[name]
        if fake is not None:
            logits, features = fake
            if "adversarial" in self.weights:
                terms["adversarial"] = generator_adversarial_loss(logits, self.adversarial_loss)
            if "feature_matching" in self.weights and real_features is not None:
                terms["feature_matching"] = feature_matching_loss(real_features, features)
        return terms

    def total(self, terms: Mapping[str, Tensor]) -> Tensor:
        """Weighted sum of the terms present."""
        values = [self.weights[name] * value.float() for name, value in terms.items()]
        return torch.stack(values).sum() if values else torch.zeros(())


def _build_loss(name: str, cls: type, sample_rate: int, options: Mapping[str, Any]) -> nn.Module:
    """Instantiate one reconstruction loss; unknown or invalid options are one-line errors."""
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(options) - set(accepted) - {"self"})
    if unknown or "sample_rate" in options:
        valid = ", ".join(p for p in accepted if p not in ("self", "sample_rate")) or "none"
        bad = unknown[0] if unknown else "sample_rate"
        raise ValueError(f"loss_args.{name} has no option {bad!r} (its options: {valid})")
    kwargs = dict(options)
    if "sample_rate" in accepted:  # linked to the codec's rate, never set twice
        kwargs["sample_rate"] = sample_rate
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        detail = " ".join(str(error).split())
        raise ValueError(f"loss_args.{name}: {detail}") from None


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term is NaN or infinite; names the step and the term."""


def check_finite(terms: Mapping[str, Tensor], batch_index: int) -> None:
    """Stop the run with a clear message when any term is not finite."""
    for name, value in terms.items():
        finite = torch.isfinite(value)
        if not finite.all():
            # Detached: converting a tensor that requires grad to a number makes torch warn.
            bad = float(value.detach()[~finite].flatten()[0])
            raise NonFiniteLossError(
                f"non-finite loss at batch {batch_index}: term {name!r} = {bad}; "
                "lower the learning rate, check the data, or resume from an earlier checkpoint"
            )
