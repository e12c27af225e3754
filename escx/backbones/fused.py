"""Linear layers with fused activation and residual add for CPU inference.

``linear(x, layer, activation, residual)`` computes ``residual + act(layer(x))``. On CPU without
autograd it calls oneDNN's fused linear (the kernel ``torch.compile`` itself uses on CPU), which
handles ESC's odd widths (45, 135, 180) far better than MKL's GEMM and writes the activation or
residual sum in the same pass. Everywhere else (training, CUDA, :func:`escx.perf.straightforward`)
it is the plain ``F.linear`` composition. Both compute the same function; results differ only by
floating-point summation order.

Under CPU autocast (bf16 inference) the inputs and weights are cast to the autocast dtype here,
since the oneDNN op is not covered by autocast; cast weights are cached per parameter version.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from escx.perf import wants_fast_cpu_path, wants_fast_cpu_training

_ACTIVATIONS = {None: "none", "gelu": "gelu"}
SMALL_ROWS = 256  # below this many rows the plain composition is faster (measured, 1 thread)


def _fused_available() -> bool:
    try:
        return (
            hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available()
        )
    except (AttributeError, RuntimeError):
        return False


_FUSED = _fused_available()


def _cast_weight(layer: nn.Linear, name: str, dtype: torch.dtype) -> Tensor | None:
    param = getattr(layer, name)
    if param is None or param.dtype == dtype:
        return param
    cache = layer.__dict__.setdefault("_escx_cast", {})
    source = (param.data_ptr(), param._version)  # a new tensor or an in-place update misses
    hit = cache.get((name, dtype))
    if hit is None or hit[0] != source:
        hit = (source, param.detach().to(dtype))
        cache[(name, dtype)] = hit
    return hit[1]


def linear(
    x: Tensor,
    layer: nn.Linear,
    activation: str | None = None,
    residual: Tensor | None = None,
) -> Tensor:
    """``residual + activation(layer(x))``.

    Args:
        x: (..., in_features).
        layer: the linear layer (its weight and optional bias are used).
        activation: None or "gelu" (exact, erf-based, as ``nn.GELU()``).
        residual: optional (..., out_features) tensor added to the result.

    Returns:
        (..., out_features).
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unsupported activation {activation!r}; use None or 'gelu'")
    # Under torch.compile inductor does its own fusion (and cannot lower this op unpacked). Few
    # rows (a streaming coder's slices of a frame or two) run faster unfused: oneDNN's call costs
    # about 40 us more than a plain GEMM's, more than fusing saves below ~256 rows.
    small = x.numel() < SMALL_ROWS * x.shape[-1]
    if _FUSED and not small and wants_fast_cpu_path(x) and not torch.compiler.is_compiling():
        dtype = x.dtype
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
        weight = _cast_weight(layer, "weight", dtype)
        bias = _cast_weight(layer, "bias", dtype)
        flat = x.reshape(-1, x.shape[-1]).to(dtype)
        shape = (*x.shape[:-1], weight.shape[0])
        if residual is not None and residual.dtype == dtype and activation is None:
            other = residual.reshape(-1, weight.shape[0]).contiguous()
            out = torch.ops.mkldnn._linear_pointwise.binary(flat, other, weight, bias, "add")
            return out.view(shape)
        out = torch.ops.mkldnn._linear_pointwise(flat, weight, bias, _ACTIVATIONS[activation], [],
                                                 "none" if activation else "")  # fmt: skip
        out = out.view(shape)
        return out if residual is None else residual + out
    if _FUSED and wants_fast_cpu_training(x):
        flat = x.reshape(-1, x.shape[-1])
        out = _TrainingLinear.apply(flat, layer.weight, layer.bias).view(*x.shape[:-1], -1)
    else:
        out = layer(x)
    if activation == "gelu":
        out = F.gelu(out)
    return out if residual is None else residual + out


class _TrainingLinear(torch.autograd.Function):
    """``F.linear`` for fp32 CPU training with oneDNN products (same values, faster for ESC's
    narrow widths: MKL's GEMM runs a K=45 product at a quarter of oneDNN's speed).

    Forward and the input gradient are oneDNN linears; the weight gradient is one GEMM over all
    tokens (a long reduction MKL handles well).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            transposed = weight.t().contiguous()
            grad_x = torch.ops.mkldnn._linear_pointwise(grad, transposed, None, "none", [], "")
        if ctx.needs_input_grad[1]:
            grad_w = grad.t().mm(x)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b
