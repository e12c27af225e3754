"""Audio examples, spectrogram images and the codebook-usage heatmap for any logger.

W&B and TensorBoard get native audio/image entries; other loggers (CSV) get WAV and PNG files in
``<log_dir>/media/step-<N>/``. Logged on rank 0 after each validation.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

log = logging.getLogger(__name__)


def spectrogram_image(audio: Tensor, title: str) -> np.ndarray:
    """Log-magnitude spectrogram of (L,) audio as an RGB uint8 image (H, W, 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = torch.stft(audio.float(), 512, 128, window=torch.hann_window(512), return_complex=True)
    db = 20 * torch.log10(spec.abs().clamp(min=1e-5))
    fig, ax = plt.subplots(figsize=(6, 2.5), dpi=80)
    ax.imshow(db.numpy(), origin="lower", aspect="auto", vmin=-100, vmax=float(db.max()))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("frame")
    ax.set_ylabel("bin")
    fig.tight_layout()
    return _figure_to_array(fig)


def usage_heatmap(histogram: Tensor) -> np.ndarray:
    """Heatmap of code counts (S, G, K): one row per stream/group, log scale, RGB uint8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, g, k = histogram.shape
    counts = torch.log10(histogram.float().reshape(s * g, k) + 1).numpy()
    fig, ax = plt.subplots(figsize=(8, 0.25 * s * g + 1.2), dpi=80)
    image = ax.imshow(counts, aspect="auto", interpolation="nearest", cmap="viridis")
    ax.set_yticks(range(s * g), [f"s{i // g + 1}g{i % g + 1}" for i in range(s * g)], fontsize=6)
    ax.set_xlabel("codebook entry")
    ax.set_title("codebook usage (log10 count + 1)", fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return _figure_to_array(fig)


def _figure_to_array(fig) -> np.ndarray:
    import matplotlib.pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


class MediaLogger(Callback):
    """Logs validation audio (original and each bitrate), spectrograms and the usage heatmap.

    Args:
        every_n_validations: log on every n-th validation run.
    """

    def __init__(self, every_n_validations: int = 1) -> None:
        self.every = max(1, every_n_validations)
        self.runs = 0

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.runs += 1
        if (self.runs - 1) % self.every:
            return
        examples = getattr(pl_module, "examples", {})
        histogram = getattr(pl_module, "last_histogram", None)
        rate = pl_module.codec.sample_rate
        for logger in trainer.loggers:
            try:
                self._log(logger, trainer.global_step, examples, histogram, rate)
            except Exception as error:  # noqa: BLE001 - media must never stop training
                log.warning("could not log media to %s: %s", type(logger).__name__, error)

    @staticmethod
    def _log(logger, step: int, examples: dict, histogram: Tensor | None, rate: int) -> None:
        clips = {
            f"{name}/{i}": audio[i] for name, audio in examples.items() for i in range(len(audio))
        }
        images = {f"spectrogram/{key}": spectrogram_image(clip, key) for key, clip in clips.items()}
        if histogram is not None:
            images["codebook/usage"] = usage_heatmap(histogram.cpu())
        if isinstance(logger, WandbLogger):
            for key, clip in clips.items():
                logger.log_audio(f"val/audio/{key}", [clip.numpy()], step=step, sample_rate=[rate])
            for key, image in images.items():
                logger.log_image(f"val/{key}", [image], step=step)
        elif isinstance(logger, TensorBoardLogger):
            for key, clip in clips.items():
                logger.experiment.add_audio(f"val/audio/{key}", clip[None], step, rate)
            for key, image in images.items():
                logger.experiment.add_image(f"val/{key}", image, step, dataformats="HWC")
        elif getattr(logger, "log_dir", None):
            _write_files(Path(logger.log_dir) / "media" / f"step-{step}", clips, images, rate)


def _write_files(folder: Path, clips: dict, images: dict, rate: int) -> None:
    import soundfile as sf
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for key, clip in clips.items():
        sf.write(folder / f"{key.replace('/', '-')}.wav", clip.clamp(-1, 1).numpy(), rate)
    for key, image in images.items():
        Image.fromarray(image).save(folder / f"{key.replace('/', '-')}.png")
