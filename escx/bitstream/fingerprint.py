"""Model fingerprints: which model's weights made an ``.escx`` file's codes.

A file is decoded only by the model whose fingerprint its header stores, so codes are never
decoded to garbage by another model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from escx.bitstream.header import FINGERPRINT_SIZE


def fingerprint_state_dict(state_dict: Mapping[str, Any]) -> bytes:
    """Hash a model's parameters into a ``FINGERPRINT_SIZE``-byte fingerprint.

    The hash (BLAKE2b) covers every entry's name, dtype, shape and raw values in sorted-name
    order, so two models differing in any parameter almost surely get different fingerprints,
    while the same weights always give the same one.

    Args:
        state_dict: ``model.state_dict()``; tensors, arrays or other values (hashed by ``repr``).

    Returns:
        ``FINGERPRINT_SIZE`` bytes to pass to :func:`~escx.bitstream.encode_bitstream`.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"expected a state dict (mapping), got {type(state_dict).__name__}")
    digest = hashlib.blake2b(digest_size=FINGERPRINT_SIZE, person=b"escx-model")
    for name in sorted(state_dict):
        value = state_dict[name]
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            meta = f"{tensor.dtype}{tuple(tensor.shape)}"
            raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        elif isinstance(value, np.ndarray):
            meta, raw = f"{value.dtype}{value.shape}", np.ascontiguousarray(value).tobytes()
        else:  # e.g. `_extra_state` entries
            meta, raw = type(value).__name__, repr(value).encode()
        for part in (name.encode(), meta.encode(), raw):
            digest.update(len(part).to_bytes(8, "little") + part)  # length-prefixed: unambiguous
    return digest.digest()
