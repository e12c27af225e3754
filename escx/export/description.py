"""``escx-onnx.json``: what an exported folder holds and how to call its graphs.

Everything a program needs to use the graphs without escx: the sample rate, samples per code
frame, the inputs and outputs of each graph (names, types, shapes, meaning), the bitrates with
the stream count and decoder file of each, and where the graphs came from (escx version,
checkpoint fingerprint). Written last into the staging folder, so a folder with this file holds
a complete export.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DESCRIPTION = "escx-onnx.json"
FORMAT = "escx-onnx"
FORMAT_VERSION = 1
# A description is a few kilobytes; a larger file is not one (bounds what reading allocates).
MAX_DESCRIPTION_BYTES = 1 << 20

ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder.onnx"
ENCODER_INT8_FILE, DECODER_INT8_FILE = "encoder-int8.onnx", "decoder-int8.onnx"
EXPORT_FILES = frozenset(
    {DESCRIPTION, ENCODER_FILE, DECODER_FILE, ENCODER_INT8_FILE, DECODER_INT8_FILE}
)


def graph_entries(encoder_file: str, decoder_file: str, streams: int, groups: int):
    """The ``encoder`` and ``decoder`` entries of a description for two graph files."""
    encoder = {
        "file": encoder_file,
        "inputs": {
            "audio": {
                "type": "float32",
                "shape": ["batch", "samples"],
                "meaning": "audio at sample_rate, any length >= 1; zero-padded inside to whole "
                "code frames, as escx pads",
            }
        },
        "outputs": {
            "codes": {
                "type": "int64",
                "shape": ["batch", streams, groups, "frames"],
                "meaning": "codes of every stream, coarse first; frames = ceil(samples / "
                "samples_per_frame)",
            }
        },
    }
    decoder = {
        "file": decoder_file,
        "streams": "dynamic",
        "inputs": {
            "codes": {
                "type": "int64",
                "shape": ["batch", "k", groups, "frames"],
                "meaning": f"codes of the first k streams (1 <= k <= {streams}): the bitrate",
            },
            "length": {
                "type": "int64",
                "shape": [],
                "meaning": "samples to return (a scalar), at most frames * samples_per_frame: "
                "the encoded audio's length",
            },
        },
        "outputs": {
            "audio": {"type": "float32", "shape": ["batch", "length"], "meaning": "decoded audio"}
        },
    }
    return encoder, decoder


def read_description(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and check an export folder's description.

    Raises:
        ValueError: missing, oversized, unparsable or not an escx export description.
    """
    path = Path(folder) / DESCRIPTION
    try:
        size = path.stat().st_size
    except OSError:
        raise ValueError(f"{folder} is not an escx export: no {DESCRIPTION}") from None
    if size > MAX_DESCRIPTION_BYTES:
        raise ValueError(f"{path} is {size} bytes; an export description is at most 1 MiB")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} cannot be read ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not an escx export description")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {data.get('format_version')!r}; this escx reads "
            f"{FORMAT_VERSION}: export again"
        )
    for graphs in (data, data.get("int8")):
        for role in ("encoder", "decoder"):
            if graphs is None:
                continue
            name = graphs.get(role, {}).get("file") if isinstance(graphs.get(role), dict) else None
            if name not in EXPORT_FILES:  # never a path that leaves the folder
                raise ValueError(f"{path} names an unexpected {role} file {name!r}")
    return data
