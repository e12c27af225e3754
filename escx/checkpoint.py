"""The codec checkpoint format shared by trained (`escx fit`) and converted (`escx convert`) models.

A checkpoint is a torch file (a dict) with:

* ``state_dict``: the codec's tensors, names prefixed ``codec.``; a Lightning checkpoint also holds
  discriminator, loss and optimizer entries, which are ignored here;
* ``escx``: ``codec_config`` (the ``class_path``/``init_args`` mapping that rebuilds the codec with
  :func:`escx.build_codec`), ``sample_rate``, and for files written by
  :func:`save_codec_checkpoint` also ``format`` and the model ``fingerprint`` (hex).

:func:`escx.api.load_codec` reads it for inference.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from escx.atomic import atomic_path
from escx.bitstream import fingerprint_state_dict
from escx.chunking import check_output_path
from escx.codecs.base import Codec
from escx.security import SizeLimitError, check_tree_size

CHECKPOINT_FORMAT = 1
STATE_PREFIX = "codec."


class CheckpointError(ValueError):
    """A model checkpoint is missing, unreadable or not an escx codec checkpoint."""


def save_codec_checkpoint(
    codec: Codec, codec_config: dict, path: str | os.PathLike, **extra: Any
) -> Path:
    """Write a codec checkpoint that :func:`load_codec` reads, atomically.

    Args:
        codec: the codec whose weights are saved.
        codec_config: ``class_path``/``init_args`` mapping that rebuilds ``codec`` with
            :func:`escx.build_codec` (checked here, so a checkpoint always loads).
        path: destination; written to a temporary file beside it, then renamed into place.
        **extra: more entries for the ``escx`` section (e.g. ``source``).

    Returns:
        The destination path.
    """
    path = Path(path)
    check_output_path(path)
    if not isinstance(codec_config, dict) or "class_path" not in codec_config:
        raise CheckpointError("codec_config must be a dict with class_path (and init_args)")
    state = {k: v.detach().cpu().clone() for k, v in codec.state_dict().items()}
    rebuilt = build_from_config(codec_config, str(path)).state_dict()
    wrong = sorted(k for k in state if k not in rebuilt or rebuilt[k].shape != state[k].shape)
    if wrong or len(rebuilt) != len(state):
        raise CheckpointError(
            f"codec_config does not rebuild this codec (mismatched tensors: {wrong[:3]}); pass "
            "the config the codec was built from"
        )
    blob = {
        "state_dict": {STATE_PREFIX + k: v for k, v in state.items()},
        "escx": {
            "format": CHECKPOINT_FORMAT,
            "codec_config": codec_config,
            "sample_rate": int(codec.sample_rate),
            "fingerprint": fingerprint_state_dict(state).hex(),
            **extra,
        },
    }
    atomic_torch_save(blob, path)
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    An interrupted write never leaves a partial file at ``path`` nor replaces its old content;
    temporaries of killed writers are removed by the next write (:mod:`escx.atomic`).
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        torch.save(obj, file)


def build_from_config(codec_config: dict, where: str) -> Codec:
    from escx.config import build_codec

    try:
        return build_codec({"codec": codec_config})
    except (ValueError, TypeError, ImportError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(
            f"{where}: cannot rebuild the codec from its config: {first}"
        ) from None


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """The codec state dict (``codec.`` prefix removed) and ``escx`` section of a checkpoint.

    Raises:
        CheckpointError: missing file, not a torch checkpoint, or no codec weights or config.
    """
    path = Path(path)
    blob = safe_torch_load(path)
    meta = blob.get("escx") if isinstance(blob, dict) else None
    state = blob.get("state_dict") if isinstance(blob, dict) else None
    if not isinstance(meta, dict) or not isinstance(state, dict):
        raise CheckpointError(
            f"{path} is not an escx codec checkpoint (no 'state_dict' and 'escx' entries); use a "
            "checkpoint from escx fit, or convert a reference model with escx convert"
        )
    try:  # the escx section is walked and parsed next: bounded like a config
        check_tree_size(meta, f"{path}: escx")
    except SizeLimitError as error:
        raise CheckpointError(str(error)) from None
    if not isinstance(meta.get("codec_config"), dict):
        raise CheckpointError(
            f"{path} has no codec config (escx.codec_config); it was not trained with the escx "
            "command line, so the codec cannot be rebuilt"
        )
    codec_state = {
        k[len(STATE_PREFIX) :]: v for k, v in state.items() if k.startswith(STATE_PREFIX)
    }
    if not codec_state:
        raise CheckpointError(f"{path} holds no codec weights (no 'codec.*' entries)")
    return codec_state, meta


def safe_torch_load(path: str | os.PathLike, what: str = "model checkpoint") -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``).

    Nothing escx reads may run code, so there is no fallback to the full unpickler: a file whose
    pickle names other Python objects is refused, whatever made it. escx's own checkpoints (from
    ``escx fit`` and ``escx convert``) hold only tensors, numbers, strings and containers.

    Args:
        path: the file.
        what: what the file should be, for messages ("model checkpoint").

    Raises:
        CheckpointError: one line saying why the file cannot be read and what to pass instead.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{what} not found: {path}"
            if not path.exists()
            else f"{path} is not a file; pass a {what} file"
        )
    with open(path, "rb") as file:
        magic = file.read(4)
    # torch.save writes a zip archive (default) or, with the legacy format, a pickle stream.
    is_zip, is_pickle = magic == b"PK\x03\x04", magic[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise CheckpointError(
            f"cannot read {path}: not a PyTorch checkpoint ({_kind_of(magic)}); pass a {what} file"
        )
    try:
        # mmap avoids a second copy of the weights in memory; only the zip format supports it.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"refusing to load {path}: it stores Python objects other than tensors and plain "
            "values, and unpickling them could run code; pass a checkpoint written by escx fit "
            "or escx convert"
        ) from None
    except Exception as exc:  # a damaged file can fail in any way (IndexError, KeyError...)
        error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot read {path} as a {what} (damaged file: {error})") from None


def _kind_of(magic: bytes) -> str:
    """A guess at what a non-checkpoint file is, from its first bytes, for error messages."""
    if magic in (b"RIFF", b"fLaC", b"OggS", b"ID3\x03", b"ID3\x04") or magic[:2] == b"\xff\xfb":
        return "it is an audio file"
    if magic == b"ESCX":
        return "it is an .escx bitstream"
    if not magic:
        return "it is empty"
    try:
        magic.decode("utf-8")
        return "it looks like a text file"
    except UnicodeDecodeError:
        return "unknown file type"
