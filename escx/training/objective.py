"""The training objective: a ``{name: weight}`` map over loss terms (docs/esc.md §13.5).

Keys of ``loss_weights`` are the names logged as ``train/loss/<name>``, so weights and curves line
up. A term with weight 0 is not computed at all (ESC-Base(adv) drops the STFT loss that way).
"""

from __future__ import annotations

from collections.abc import Mapping

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
    """

    def __init__(
        self,
        loss_weights: Mapping[str, float],
        adversarial_loss: str = "lsgan",
        sample_rate: int = 16000,
    ) -> None:
        super().__init__()
        unknown = sorted(set(loss_weights) - set(ALL_TERMS))
        if unknown:
            raise ValueError(
                f"unknown loss term(s) {unknown} in loss_weights; valid: {', '.join(ALL_TERMS)}"
            )
        self.weights = {k: float(v) for k, v in loss_weights.items() if float(v) != 0.0}
        self.adversarial_loss = adversarial_loss
        self.reconstruction = nn.ModuleDict(
            {
                name: (cls(sample_rate=sample_rate) if name == "mel" else cls())
                for name, cls in RECONSTRUCTION_LOSSES.items()
                if name in self.weights
            }
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
