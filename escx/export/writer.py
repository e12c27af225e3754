"""``export_codec``: a codec -> a folder of ONNX graphs and their description, whole or not at all.

The folder is built in a staging folder beside the target and swapped in at the end
(:func:`escx.evaluation.staging.staged_report`), so a failure, Ctrl-C or SIGTERM leaves the
target as it was. An existing target is replaced only when it is empty or holds nothing but an
earlier export.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from escx.codecs.base import Codec
from escx.export.description import (
    DECODER_FILE,
    DECODER_INT8_FILE,
    DESCRIPTION,
    ENCODER_FILE,
    ENCODER_INT8_FILE,
    EXPORT_FILES,
    FORMAT,
    FORMAT_VERSION,
    graph_entries,
)
from escx.export.graphs import UnsupportedCodec, exportable_copy, graphs_of

# Entries looked at in an existing -o folder before it counts as not an export (an export holds
# at most five files; the bound keeps a wrong -o, such as a home folder, from being walked whole).
MAX_TARGET_ENTRIES = 64


class ExportTargetError(ValueError):
    """``-o`` names a folder an export must not replace; the message says why."""


def check_export_target(out: str | os.PathLike) -> Path:
    """Check that an export may be written to ``out`` (replacing it) before any work starts.

    Refused: a missing parent folder, a file, and a folder holding anything but an earlier
    export's files (replacing it would delete them).
    """
    out = Path(out)
    parent = out.resolve().parent
    if not parent.is_dir():
        raise ExportTargetError(f"-o {out}: the folder {parent} does not exist; create it first")
    if os.path.lexists(out) and not out.is_dir():
        raise ExportTargetError(f"-o {out} is a file; give a folder for the export")
    if out.is_dir():
        with os.scandir(out) as entries:
            for count, entry in enumerate(entries):
                foreign = entry.name not in EXPORT_FILES or not entry.is_file(follow_symlinks=False)
                if foreign or count >= MAX_TARGET_ENTRIES:
                    raise ExportTargetError(
                        f"-o {out} holds {entry.name!r}, which is not part of an escx export; "
                        "give a new or empty folder (an earlier export there is replaced)"
                    )
    return out


@dataclass
class ExportResult:
    """What :func:`export_codec` wrote.

    Attributes:
        folder: the export folder.
        description: the contents of its ``escx-onnx.json``.
        sizes: bytes of each graph file.
        seconds: time spent tracing, translating and writing.
    """

    folder: Path
    description: dict[str, Any]
    sizes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save(model, path: Path) -> None:
    import onnx

    onnx.checker.check_model(model)
    onnx.save_model(model, str(path), save_as_external_data=False)


def describe(codec: Codec, fingerprint: bytes, checkpoint: str | None) -> dict[str, Any]:
    """The description of an fp32 export of ``codec`` (files named, sizes and hashes not yet)."""
    from escx import __version__

    encoder, decoder = graph_entries(
        ENCODER_FILE, DECODER_FILE, codec.max_streams, codec.num_groups
    )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "escx_version": __version__,
        "checkpoint": {"file": checkpoint, "fingerprint": fingerprint.hex()},
        "codec": type(codec).__name__,
        "sample_rate": int(codec.sample_rate),
        "samples_per_frame": int(codec.samples_per_frame),
        "frame_rate": float(codec.frame_rate),
        "streams": int(codec.max_streams),
        "groups": int(codec.num_groups),
        "codebook_size": int(codec.codebook_size),
        "bitrates": [
            {"kbps": codec.bitrate(k) / 1000, "streams": k, "decoder": DECODER_FILE}
            for k in range(1, codec.max_streams + 1)
        ],
        "padding": "the encoder zero-pads audio at its end to whole code frames, as escx does; "
        "the decoder returns the first `length` samples",
        "encoder": encoder,
        "decoder": decoder,
        "int8": None,
    }


def export_codec(
    codec: Codec,
    out: str | os.PathLike,
    fingerprint: bytes,
    checkpoint: str | None = None,
    int8: bool = False,
) -> ExportResult:
    """Export ``codec`` to ``out``: ``encoder.onnx``, ``decoder.onnx``, ``escx-onnx.json`` and,
    with ``int8``, ``encoder-int8.onnx`` and ``decoder-int8.onnx``.

    Args:
        codec: the codec (not changed: a copy is exported).
        out: the folder written (replaced whole if it holds an earlier export).
        fingerprint: the checkpoint's fingerprint, recorded in the description.
        checkpoint: the checkpoint's file name, recorded in the description.
        int8: also write dynamically int8-quantized graphs (:mod:`escx.export.int8`).

    Raises:
        UnsupportedCodec: a part of the codec has no exportable form (one line naming it).
        ExportTargetError: ``out`` may not be written.
        ImportError: onnx, onnxscript or (with ``int8``) onnxruntime is missing.
    """
    from escx.evaluation.staging import sigterm_raises, staged_report
    from escx.export.trace import OPSET, decoder_model, encoder_model

    start = time.perf_counter()
    copied = exportable_copy(codec)  # raises UnsupportedCodec first: the cheapest check
    out = check_export_target(out)
    _require(int8)
    description = describe(codec, fingerprint, checkpoint)
    description["opset"] = OPSET
    encoder_graph, decoder_graph = graphs_of(copied)
    encoder = encoder_model(encoder_graph)
    decoder = decoder_model(decoder_graph)
    with sigterm_raises(), staged_report(out) as folder:
        _save(encoder, folder / ENCODER_FILE)
        _save(decoder, folder / DECODER_FILE)
        if int8:
            description["int8"] = _int8(folder)
        for graphs in (description, description["int8"]):
            for role in ("encoder", "decoder"):
                if graphs is not None:
                    path = folder / graphs[role]["file"]
                    graphs[role]["bytes"] = path.stat().st_size
                    graphs[role]["sha256"] = _sha256(path)
        (folder / DESCRIPTION).write_text(json.dumps(description, indent=2) + "\n")
        sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.suffix == ".onnx"}
    return ExportResult(Path(out), description, sizes, time.perf_counter() - start)


def _int8(folder: Path) -> dict[str, Any]:
    from escx.export.int8 import quantize

    report = {}
    for role, source, target in (
        ("encoder", ENCODER_FILE, ENCODER_INT8_FILE),
        ("decoder", DECODER_FILE, DECODER_INT8_FILE),
    ):
        report[role] = quantize(folder / source, folder / target)
    kept = sorted(set(report["encoder"]["kept_fp32"]) | set(report["decoder"]["kept_fp32"]))
    return {
        "encoder": {"file": ENCODER_INT8_FILE},
        "decoder": {"file": DECODER_INT8_FILE},
        "method": "dynamic int8 (onnxruntime.quantization.quantize_dynamic, per-channel int8 "
        "weights) of the linear layers; inputs and outputs as the fp32 graphs'",
        "quantized_layers": report["encoder"]["quantized"] + report["decoder"]["quantized"],
        "kept_fp32": kept,
    }


def _require(int8: bool) -> None:
    """Raise ImportError naming the missing package of the ``export`` extra, before tracing."""
    from importlib.util import find_spec

    needed = ["onnx", "onnxscript"] + (["onnxruntime"] if int8 else [])
    missing = [name for name in needed if find_spec(name) is None]
    if missing:
        raise ImportError(
            f"escx export needs {', '.join(missing)}: pip install 'escx[export]' (or pip install "
            f"{' '.join(missing)})"
        )


__all__ = ["ExportResult", "ExportTargetError", "UnsupportedCodec", "export_codec"]
