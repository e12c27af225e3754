"""An exported folder run through ONNX Runtime, with numpy in and out (what deployments do)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from escx.export.description import read_description


class OnnxCodec:
    """The encoder and decoder graphs of an ``escx export`` folder in ONNX Runtime sessions.

    Args:
        folder: the exported folder.
        threads: ONNX Runtime intra-op threads.
        int8: use the int8 graphs (``escx export --int8``) instead of the fp32 ones.

    Raises:
        ValueError: the folder is not an export, or has no int8 graphs when asked for them.
        ImportError: onnxruntime is not installed.
    """

    def __init__(self, folder: str | os.PathLike, threads: int = 1, int8: bool = False) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.description = read_description(self.folder)
        graphs = self.description["int8"] if int8 else self.description
        if graphs is None:
            raise ValueError(f"{self.folder} holds no int8 graphs; export with --int8")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no warnings on stderr
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(
            str(self.folder / graphs["encoder"]["file"]), options, providers=providers
        )
        self.decoder = ort.InferenceSession(
            str(self.folder / graphs["decoder"]["file"]), options, providers=providers
        )
        self.sample_rate = int(self.description["sample_rate"])
        self.samples_per_frame = int(self.description["samples_per_frame"])
        self.max_streams = int(self.description["streams"])

    @staticmethod
    def check_folder(folder: str | os.PathLike, fingerprint: bytes) -> dict:
        """The description of ``folder``, checked to be an export of the weights ``fingerprint``.

        Raises:
            ValueError: not an export, or an export of another model.
        """
        description = read_description(folder)
        theirs = str(description.get("checkpoint", {}).get("fingerprint"))
        if theirs != fingerprint.hex():
            raise ValueError(
                f"{folder} was exported from other weights (fingerprint {theirs}, this model "
                f"{fingerprint.hex()}); pass the checkpoint it was exported from with --model"
            )
        return description

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """(B, L) or (L,) float audio -> codes (B, streams, groups, ceil(L / frame)) int64."""
        audio = np.asarray(audio, dtype=np.float32)
        audio = audio[None] if audio.ndim == 1 else audio
        return self.encoder.run(["codes"], {"audio": audio})[0]

    def decode(self, codes: np.ndarray, length: int) -> np.ndarray:
        """Codes of the first k streams (B, k, groups, frames) -> (B, length) float32 audio."""
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        feed = {"codes": codes, "length": np.array(length, dtype=np.int64)}
        return self.decoder.run(["audio"], feed)[0]

    def streams_for_kbps(self, kbps: float) -> int:
        """Stream count of one of the export's bitrates."""
        for entry in self.description["bitrates"]:
            if abs(entry["kbps"] - kbps) <= 1e-6 + 0.005 * kbps:
                return int(entry["streams"])
        listed = ", ".join(f"{e['kbps']:g}" for e in self.description["bitrates"])
        raise ValueError(f"--kbps {kbps:g} is not one of the export's bitrates ({listed})")
