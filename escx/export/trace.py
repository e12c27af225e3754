"""Tracing the graphs (``torch.export``) and translating them to ONNX (``torch.onnx``).

Both run on escx's straightforward path in fp32. Example inputs only set the traced program's
dtypes and ranks: every length-dependent size is symbolic, a multiple of the number of attention
windows along time (:mod:`escx.export.graphs`).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from escx.export.onnx_io import wrap_decoder, wrap_encoder
from escx.perf import straightforward

# ONNX opset of the graphs: 18 is read by ONNX Runtime 1.14 (2023) and later.
OPSET = 18
# Example sizes for tracing (batch, attention windows); any sizes >= 2 give the same graph.
EXAMPLE_BATCH, EXAMPLE_WINDOWS = 2, 3


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress, registration and deprecation messages."""
    names = ("torch.onnx", "torch.export", "torch._export", "torch.fx.experimental.symbolic_shapes",
             "onnxscript", "torch._dynamo")  # fmt: skip
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # Deprecation and tracer notices of torch's own internals: nothing a user can act on.
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _to_onnx(module: nn.Module, args: tuple, dynamic_shapes: tuple, inputs: list[str],
             outputs: list[str]):  # fmt: skip
    import onnx  # noqa: F401  (a clear ImportError before minutes of tracing)

    with _quiet(), straightforward(), torch.no_grad():
        program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
        onnx_program = torch.onnx.export(
            program,
            args,
            input_names=inputs,
            output_names=outputs,
            opset_version=OPSET,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    return onnx_program.model_proto


def _times(factor: int, dim):
    """A dimension ``factor`` times a symbol (the symbol itself for 1)."""
    return dim if factor == 1 else factor * dim


def encoder_model(graph: nn.Module):
    """The encoder as an ONNX ModelProto with the user contract (``audio`` -> ``codes``).

    Args:
        graph: an encoder graph (:func:`escx.export.graphs.graphs_of`).
    """
    g, codec = graph.geometry, graph.codec
    windows = torch.export.Dim("windows")
    padded = torch.zeros(EXAMPLE_BATCH, g.span * EXAMPLE_WINDOWS)
    length = torch.tensor(g.span * EXAMPLE_WINDOWS - g.frame // 2)
    shapes = ({0: torch.export.Dim("batch"), 1: _times(g.span, windows)}, None)
    model = _to_onnx(graph, (padded, length), shapes, ["padded", "length"], ["codes"])
    return wrap_encoder(model, g.span, g.frame, codec.max_streams, codec.num_groups)


def decoder_model(graph: nn.Module):
    """The decoder as an ONNX ModelProto with the user contract (``codes``, ``length`` ->
    ``audio``)."""
    g, codec = graph.geometry, graph.codec
    windows = torch.export.Dim("windows")
    frames = g.frames_per_window * EXAMPLE_WINDOWS
    codes = torch.zeros(
        EXAMPLE_BATCH, codec.max_streams, codec.num_groups, frames, dtype=torch.long
    )
    args = (codes, torch.tensor(frames - 1), torch.tensor(max(1, codec.max_streams - 1)))
    shapes = ({0: torch.export.Dim("batch"), 3: _times(g.frames_per_window, windows)}, None, None)
    model = _to_onnx(graph, args, shapes, ["codes", "frames", "streams"], ["audio"])
    return wrap_decoder(model, g.frames_per_window, g.frame, codec.max_streams, codec.num_groups)
