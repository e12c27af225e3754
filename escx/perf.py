"""Speed switches: escx's CPU kernels, the straightforward path, the allocator.

escx differs from a plain PyTorch transcription of ESC in these ways, each chosen after
profiling ESC-Base on a 2-core CPU (``escx bench`` measures them; docs/esc.md §12.2 has the
reference's profile, where the full-resolution Swin stages and the de-embedding dominate):

* **Composed de-embedding** (:mod:`escx.backbones.deembed`), training and inference: the
  reference's two convolutions around a pixel shuffle are one linear map, computed as one small
  7x7 convolution (11.7x fewer FLOPs; the de-embedding was 40 % of decode's).
* **oneDNN linears** (:mod:`escx.backbones.fused`). ESC's full-resolution stages are 45 channels
  wide; MKL's GEMM runs a K=45 product at a quarter of oneDNN's speed. Inference also fuses GELU
  and the residual add into the product; training uses oneDNN for the forward product and the
  input gradient (:func:`wants_fast_cpu_training`).
* **Window attention without SDPA's bookkeeping**: in inference
  (:mod:`escx.backbones.swin_inference`) one-copy shifts, windows cut from the C-wide input,
  masks only on the boundary windows, no projections of padded tokens; in training the softmax
  attention spelled out, which skips the fully-masked row checks of SDPA's reference route.
* **Native kernels** (:mod:`escx.kernels`), inference: window attention as one C pass per 4x4
  window over every head (PyTorch spends more on the call and copy overhead of 16x16 batched
  products than on their arithmetic) and LayerNorm over ESC's narrow rows with masked AVX-512
  vectors. Compiled on first use; without a C compiler the PyTorch route runs instead.
* **No page faults** (:func:`tune_cpu_allocator`): glibc hands large freed blocks back to the
  kernel, so 10-50 MB activations were faulted in afresh on every call. Keeping freed memory in
  the heap removes that.

All compute the same function as the straightforward path, up to float rounding (tests compare
codes, values and gradients). :func:`straightforward` turns them off: the benchmark's baseline,
and the reference the tests compare with.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)

_state = {"fast": True, "native_kernels": True, "allocator_tuned": False}

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def fast_paths_enabled() -> bool:
    """Whether fused kernels and the lean attention path may be used."""
    return _state["fast"]


def native_kernels_enabled() -> bool:
    """Whether :mod:`escx.kernels` may be used (where they are built; the fast path decides)."""
    return _state["native_kernels"]


@contextlib.contextmanager
def _switched_off(switch: str) -> Iterator[None]:
    previous = _state[switch]
    _state[switch] = False
    try:
        yield
    finally:
        _state[switch] = previous


def straightforward() -> contextlib.AbstractContextManager[None]:
    """Run the plain PyTorch path (unfused linears, SDPA with a full mask) inside the block."""
    return _switched_off("fast")


def without_native_kernels() -> contextlib.AbstractContextManager[None]:
    """Run the fast path with PyTorch ops in place of :mod:`escx.kernels` inside the block (the
    bench measures the kernels' share this way)."""
    return _switched_off("native_kernels")


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


def wants_fast_cpu_training(x: torch.Tensor) -> bool:
    """True when ``x`` may take escx's autograd-aware CPU kernels: fp32 on the CPU with autograd
    recording, no autocast (bf16-mixed training keeps PyTorch's own kernels), not compiling."""
    return (
        _state["fast"]
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def wants_fast_cpu_path(x: torch.Tensor) -> bool:
    """True when ``x`` may take the gradient-free fast path: CPU, grad mode off (``no_grad`` or
    ``inference_mode``, as in ``encode``/``decode`` and validation), fast paths enabled.

    With grad mode on, :func:`wants_fast_cpu_training` decides instead: the fused oneDNN ops
    have no backward, and the lean attention's backward was slower than the spelled-out one.
    """
    return (
        _state["fast"]
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()  # parameters may need gradients even if x does not
        and x.dtype in (torch.float32, torch.bfloat16)
    )
