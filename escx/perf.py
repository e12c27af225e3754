"""Inference speed switches: fused CPU kernels, the straightforward path, the allocator.

escx's CPU inference path differs from a plain PyTorch transcription of ESC in three ways, each
chosen after profiling ESC-Base on a 2-core CPU (``escx bench`` measures them):

* **Fused oneDNN linears** (:mod:`escx.backbones.fused`). ESC's full-resolution stages are 45
  channels wide; MKL's GEMM runs a K=45 product far below its peak, oneDNN two to three times
  faster, and oneDNN also fuses GELU and the residual add into the matmul.
* **Lean window attention** (:mod:`escx.backbones.swin_inference`): one-copy shifts, windows cut
  from the C-wide input, per-head attention on strided views, bias and the window's shift mask
  as one additive input, no projections of padded tokens.
* **No page faults** (:func:`tune_cpu_allocator`): glibc hands large freed blocks back to the
  kernel, so 10-50 MB activations were faulted in afresh on every call. Keeping freed memory in
  the heap removes that.

The fast paths only run where no gradient is needed, so training computes exactly what the
straightforward path computes (the allocator setting applies to training too).
:func:`straightforward` turns the fast paths off: the benchmark's baseline, and the reference
the tests compare the fast path's codes with.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)

_state = {"fast": True, "allocator_tuned": False}

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def fast_paths_enabled() -> bool:
    """Whether fused kernels and the lean attention path may be used."""
    return _state["fast"]


@contextlib.contextmanager
def straightforward() -> Iterator[None]:
    """Run the plain PyTorch path (unfused linears, SDPA with a full mask) inside the block."""
    previous = _state["fast"]
    _state["fast"] = False
    try:
        yield
    finally:
        _state["fast"] = previous


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the heap so large activations are not page-faulted in on every call.

    Sets glibc's ``M_MMAP_MAX`` to 0 (large blocks come from the heap, not fresh ``mmap``s) and a
    1 GiB trim threshold. Peak memory is unchanged (freed blocks are reused); memory above the
    peak is not handed back to the system until the process exits. Process-wide and idempotent;
    the ``escx`` command line calls it, Python users may. Returns False where glibc is absent.
    """
    if _state["allocator_tuned"]:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
        libc.mallopt(_M_TOP_PAD, 64 << 20)
    except (OSError, AttributeError):
        ok = False
    if not ok:
        log.debug("glibc mallopt unavailable; allocator left as it is")
    _state["allocator_tuned"] = ok
    return ok


def wants_fast_cpu_path(x: torch.Tensor) -> bool:
    """True when ``x`` may take the fast inference path: CPU, no autograd, fast paths enabled.

    Training keeps the straightforward path: profiled on a 2-core CPU, the lean attention's
    backward was slower than SDPA's, and the fused oneDNN ops have no backward.
    """
    return (
        _state["fast"]
        and x.device.type == "cpu"
        and not (torch.is_grad_enabled() and x.requires_grad)
        and x.dtype in (torch.float32, torch.bfloat16)
    )
