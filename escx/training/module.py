"""CodecModule: the LightningModule that trains any registered codec.

One ``training_step`` runs the phase schedule (pre-training with the quantizer bypassed, then
quantized training, with a fresh generator optimizer from the second quantized batch, optionally
adversarial), quantizer dropout
drawn once per batch, the weighted objective, and manual optimization of one or two optimizers
(manual because the optimizer is renewed at the phase switch and the discriminator has its own
optimizer and clipping, docs/esc.md §13.2-§13.5).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from escx.adversarial import CombinedDiscriminator, discriminator_loss
from escx.codecs.base import Codec
from escx.discriminators.base import Discriminator
from escx.training.objective import ESC_LOSS_WEIGHTS, Objective, check_finite
from escx.training.schedule import Phase, PhaseSchedule, QuantizerDropout
from escx.training.validation import BitrateMetrics


def adamw(params: Iterable) -> torch.optim.Optimizer:
    """ESC's optimizer (docs/esc.md §13.2): AdamW, lr 1e-4, betas (0.9, 0.999), decay 0.01."""
    return torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01)


class CodecModule(L.LightningModule):
    """Trains a codec with ESC's recipe by default (docs/esc.md §13).

    The recipe trains step for step like the reference trainer; two of its details are kept on
    purpose (both checked against numbers from the reference in
    ``tests/test_reference_training.py``):

    * The generator optimizer is renewed (moments and step counts forgotten) at the start of the
      *second* quantized batch, batch ``pretrain_steps + 1``: the reference creates its new AdamW
      there, so its first quantized batch is still stepped by the pre-training optimizer.
    * Every parameter the generator optimizer steps gets a gradient on every batch, zero where
      the batch did not use it (streams dropped by quantizer dropout, codebooks during
      pre-training). The reference multiplies unused streams by zero instead of skipping them, so
      AdamW keeps applying weight decay and momentum to them; escx skips the work and fills in the
      zeros.

    Args:
        codec: the codec to train (default ESC-Base).
        discriminators: discriminators for adversarial training; empty: none.
        loss_weights: ``{term: weight}`` over the reconstruction losses (stft, mel, mrstft,
            compressed_spectrum, waveform, sisdr), commit, codebook, adversarial,
            feature_matching (default ESC-Base: stft 1, mel 0.25, commit 0.25, codebook 1).
            Spectrum losses (stft, compressed_spectrum) need a codec that predicts an STFT; for
            one that decodes samples (DAC) a weight above 0 fails at start.
        loss_args: ``{term: {option: value}}`` for the reconstruction losses' constructors,
            e.g. DAC's log-only Slaney mel loss (experiments/dac.yaml); default: ESC's losses.
        pretrain_steps: batches trained with the quantizer bypassed before codebooks switch on.
        adversarial_start: first batch with discriminator updates (None: after pre-training).
        quantizer_dropout: probability of drawing fewer than all streams for a batch (0.75).
        optimizer: generator optimizer factory (AdamW 1e-4, betas 0.9/0.999, wd 0.01).
        scheduler: optional generator LR scheduler factory (ESC: constant LR).
        disc_optimizer: discriminator optimizer factory (AdamW 1e-4).
        grad_clip: generator gradient-norm clip (0.5; ESC-Base(adv): 1e3).
        disc_grad_clip: discriminator gradient-norm clip (10).
        adversarial_loss: "lsgan" or "hinge".
        val_kbps: bitrates evaluated during fit.
        test_kbps: bitrates evaluated by ``escx test`` (None: every stream count).
        audio_examples: validation clips kept for audio/spectrogram logging.
        seed: seed of the quantizer-dropout draws.
    """

    def __init__(
        self,
        codec: Codec | None = None,
        discriminators: Sequence[Discriminator] = (),
        loss_weights: Mapping[str, float] | None = None,
        loss_args: Mapping[str, Mapping[str, Any]] | None = None,
        pretrain_steps: int = 75_000,
        adversarial_start: int | None = None,
        quantizer_dropout: float = 0.75,
        optimizer: OptimizerCallable = adamw,
        scheduler: LRSchedulerCallable | None = None,
        disc_optimizer: OptimizerCallable = adamw,
        grad_clip: float | None = 0.5,
        disc_grad_clip: float | None = 10.0,
        adversarial_loss: str = "lsgan",
        val_kbps: Sequence[float] = (1.5, 4.5, 9.0),
        test_kbps: Sequence[float] | None = None,
        audio_examples: int = 2,
        seed: int = 53,
    ) -> None:
        super().__init__()
        # Modules and optimizer factories are rebuilt from the CLI config, not pickled: checkpoints
        # must stay loadable with torch.load(weights_only=True).
        self.save_hyperparameters(
            ignore=["codec", "discriminators", "optimizer", "scheduler", "disc_optimizer"]
        )
        if codec is None:
            from escx.codecs.stft_codec import STFTCodec

            codec = STFTCodec()
        self.codec = codec
        self.discriminator = CombinedDiscriminator(list(discriminators))
        self.objective = Objective(
            dict(ESC_LOSS_WEIGHTS if loss_weights is None else loss_weights),
            adversarial_loss,
            codec.sample_rate,
            loss_args,
        )
        self.objective.check_codec(codec)
        self.schedule = PhaseSchedule(pretrain_steps, adversarial_start, self.discriminator.enabled)
        self.dropout = QuantizerDropout(quantizer_dropout, codec.max_streams, seed)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.disc_optimizer_factory = disc_optimizer
        self.grad_clip, self.disc_grad_clip = grad_clip, disc_grad_clip
        self.adversarial_loss = adversarial_loss
        self.val_metrics = BitrateMetrics(codec, val_kbps)
        every = [codec.bitrate(s) / 1000 for s in range(1, codec.max_streams + 1)]
        self.test_metrics = BitrateMetrics(codec, every if test_kbps is None else test_kbps)
        self.audio_examples = audio_examples
        self.examples: dict[str, Tensor] = {}
        self.batches_seen = 0
        self.automatic_optimization = False

    # ---- optimisation ---------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        optimizers = [self.optimizer_factory(self.codec.parameters())]
        if self.discriminator.enabled:
            optimizers.append(self.disc_optimizer_factory(self.discriminator.parameters()))
        if self.scheduler_factory is None:
            return optimizers
        scheduler = self.scheduler_factory(optimizers[0])
        # Schedules whose length defaults to the run's budget (WarmupCosineLR) learn it here.
        bind = getattr(scheduler, "bind_total_steps", None)
        if bind is not None and self._trainer is not None:
            bind(self.trainer.max_steps)
        return optimizers, [scheduler]

    def _optimizers(self) -> tuple[Any, Any | None]:
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        return opts[0], (opts[1] if len(opts) > 1 else None)

    @staticmethod
    def _renew(optimizer: Any) -> None:
        """Forget the optimizer's moments and step counts: docs/esc.md §13.4's fresh optimizer."""
        optimizer.optimizer.state = defaultdict(dict)

    @staticmethod
    def _zero_missing_grads(optimizer: Any) -> None:
        """Give every parameter the optimizer steps a gradient, zero where the batch left none.

        The reference runs every stream's quantizer in training and multiplies the unused ones'
        output and losses by zero (and the codebooks' during pre-training), so each parameter gets
        a zero gradient, never none, and AdamW still applies weight decay, carries the moments on
        and counts the step for it. escx skips the unused work, so autograd leaves those gradients
        unset and AdamW would skip the parameters; zeros restore the reference's update.
        """
        for group in optimizer.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None and p.requires_grad:
                    p.grad = torch.zeros_like(p)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """One batch: optional discriminator update, then the codec update."""
        audio = batch
        index = self.batches_seen
        phase = self.schedule.phase(index)
        opt_g, opt_d = self._optimizers()
        if self.schedule.renews_optimizer(index):
            self._renew(opt_g)
        pretrain = phase is Phase.PRETRAIN
        streams = self.codec.max_streams if pretrain else self.dropout.draw(index)
        out = self.codec(audio, streams, bypass_quantizer=pretrain)

        fake = real_features = None
        logs: dict[str, Tensor] = {}
        if phase is Phase.ADVERSARIAL:
            logs["train/loss/discriminator"] = self._discriminator_step(
                audio, out.audio, opt_d, index
            )
            self.toggle_optimizer(opt_g)
            fake = self.discriminator(out.audio)
            with torch.no_grad():
                real_features = self.discriminator(audio)[1]

        terms = self.objective.generator_terms(audio, out, fake, real_features)
        check_finite(terms, index)
        total = self.objective.total(terms)
        rate = float(opt_g.param_groups[0]["lr"])  # this batch's rate, before the scheduler steps
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        self._zero_missing_grads(opt_g)
        if self.grad_clip:
            self.clip_gradients(opt_g, self.grad_clip, "norm")
        opt_g.step()
        if fake is not None:
            self.untoggle_optimizer(opt_g)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        self.batches_seen += 1

        logs.update({f"train/loss/{name}": value.detach() for name, value in terms.items()})
        logs["train/loss/total"] = total.detach()
        logs["train/streams"] = torch.tensor(float(streams))
        logs["train/lr"] = torch.tensor(rate)
        logs["train/phase"] = torch.tensor(float(list(Phase).index(phase)))
        # Dead-entry restarts of this batch, per stream (empty unless dead_threshold is set).
        restarts = getattr(getattr(self.codec, "quantizer", None), "pop_restart_counts", dict)()
        for stream, count in restarts.items():
            logs[f"train/codebook/restarts/stream{stream}"] = torch.tensor(float(count))
        self.log_dict(logs, prog_bar=False, batch_size=audio.shape[0])
        self.log("loss", total.detach(), prog_bar=True, logger=False, batch_size=audio.shape[0])
        return total.detach()

    def _discriminator_step(self, audio: Tensor, fake: Tensor, opt_d: Any, index: int) -> Tensor:
        self.toggle_optimizer(opt_d)
        real_logits, _ = self.discriminator(audio)
        fake_logits, _ = self.discriminator(fake.detach())
        loss = discriminator_loss(real_logits, fake_logits, self.adversarial_loss)
        check_finite({"discriminator": loss}, index)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.disc_grad_clip:
            self.clip_gradients(opt_d, self.disc_grad_clip, "norm")
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        return loss.detach()

    # ---- evaluation -----------------------------------------------------------------------

    def _evaluate(self, metrics: BitrateMetrics, audio: Tensor, batch_idx: int) -> None:
        for label, streams in metrics.streams.items():
            out = self.codec(audio, streams)
            metrics.update(label, out.audio, audio, out.quantizer.codes)
            if batch_idx == 0 and self.audio_examples:
                self.examples[label] = out.audio[: self.audio_examples].detach().float().cpu()
        if batch_idx == 0 and self.audio_examples:
            self.examples["original"] = audio[: self.audio_examples].detach().float().cpu()

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        self._evaluate(self.val_metrics, batch, batch_idx)

    def test_step(self, batch: Tensor, batch_idx: int) -> None:
        self._evaluate(self.test_metrics, batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        # compute() has already reduced the metrics across DDP ranks: no second sync.
        self.log_dict(self.val_metrics.compute("val"), sync_dist=False)
        self.last_histogram = self.val_metrics.histogram()
        self.val_metrics.reset()

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute("test"), sync_dist=False)
        self.last_histogram = self.test_metrics.histogram()
        self.test_metrics.reset()

    # ---- checkpoints ----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["escx"] = {
            "batches_seen": self.batches_seen,
            "phase": self.schedule.phase(self.batches_seen).value,
            "codec_config": getattr(self.codec, "escx_config", None),
            "sample_rate": self.codec.sample_rate,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.batches_seen = int(checkpoint.get("escx", {}).get("batches_seen", 0))

    @property
    def phase(self) -> Phase:
        """Phase of the next training batch."""
        return self.schedule.phase(self.batches_seen)
