"""Dynamic int8 quantization of the exported graphs' linear layers (ONNX Runtime's quantizer).

Dynamic quantization stores a layer's weights as int8 and quantizes its input per call, so
nothing needs calibration data. Only products whose weight is a ``torch.nn.Linear``'s are
quantized; the graphs' other products stay in fp32: attention's query-key and weight-value
products (both operands are activations), the STFT and inverse-STFT bases, and the codebook
search (an int8 distance would pick other codes for the same input).

The layers kept in fp32 by default (:data:`KEEP_FP32`) follow the measured cost on a trained
codec (README, "Deployment"); ``keep`` overrides them.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

# Module-path prefixes (inside the codec) of linear layers left in fp32 by default: the
# quantizer's projections into and out of the 8-dim codebook spaces decide the codes.
KEEP_FP32: tuple[str, ...] = ("codec.quantizer.",)
LINEAR = "torch.nn.modules.linear.Linear"
PRODUCTS = ("MatMul", "Gemm")


def _metadata(node) -> dict[str, str]:
    return {prop.key: prop.value for prop in node.metadata_props}


def _scopes(node) -> list[str]:
    """The module path of the layer a node came from (the exporter's ``name_scopes``)."""
    text = _metadata(node).get("pkg.torch.onnx.name_scopes", "[]")
    try:
        scopes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [s for s in scopes if isinstance(s, str)]


def linear_layer(node) -> str | None:
    """The module path of the ``nn.Linear`` a product node computes, or None for other nodes."""
    if node.op_type not in PRODUCTS:
        return None
    if LINEAR not in _metadata(node).get("pkg.torch.onnx.class_hierarchy", ""):
        return None
    scopes = [s for s in _scopes(node) if s and not s.startswith(("linear", "aten"))]
    return scopes[-1] if scopes else ""


def plan(model, keep: Sequence[str] = KEEP_FP32) -> tuple[list[str], list[str], list[str]]:
    """Which product nodes are quantized.

    Returns:
        (quantized node names, excluded product node names, the kept linear layers' paths).
    """
    quantized, excluded, kept = [], [], []
    for node in model.graph.node:
        if node.op_type not in PRODUCTS:
            continue
        layer = linear_layer(node)
        if layer is None:
            excluded.append(node.name)
        elif any(layer.startswith(prefix) for prefix in keep):
            excluded.append(node.name)
            kept.append(layer)
        else:
            quantized.append(node.name)
    return quantized, excluded, kept


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # the quantizer logs advice at INFO / WARNING on the root
    try:
        yield
    finally:
        logger.setLevel(level)


def quantize(source: str | os.PathLike, target: str | os.PathLike,
             keep: Sequence[str] = KEEP_FP32) -> dict[str, object]:  # fmt: skip
    """Write an int8 version of the graph at ``source`` to ``target``.

    Args:
        source: an fp32 graph written by ``escx export``.
        target: the int8 graph's path.
        keep: module-path prefixes of linear layers left in fp32.

    Returns:
        ``{"quantized": n, "kept_fp32": [layer paths]}``.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    quantized, excluded, kept = plan(model, keep)
    with _quiet():
        quantize_dynamic(
            Path(source),
            Path(target),
            op_types_to_quantize=list(PRODUCTS),
            nodes_to_exclude=excluded,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
    return {"quantized": len(quantized), "kept_fp32": sorted(set(kept))}
