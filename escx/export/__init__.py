"""Deployable codecs: ONNX graphs whose codes are escx's (``escx export``, docs/deploy.md).

A trained codec becomes two graphs, ``encoder.onnx`` (audio -> the codes of every stream) and
``decoder.onnx`` (the codes of the first k streams -> audio), described by ``escx-onnx.json``.
The modules:

* :mod:`~escx.export.spectral`: the STFT and inverse STFT as convolution and matrix products;
* :mod:`~escx.export.swin`, :mod:`~escx.export.quantizers`: the Swin backbone on whole attention
  windows with a column mask, codebook search and stream-masked decoding;
* :mod:`~escx.export.graphs`, :mod:`~escx.export.waveform`: the graph modules and which codecs
  have them;
* :mod:`~escx.export.trace`, :mod:`~escx.export.onnx_io`: ``torch.export`` and ``torch.onnx``,
  then the user-facing inputs and outputs;
* :mod:`~escx.export.writer`, :mod:`~escx.export.description`: the folder and its JSON;
* :mod:`~escx.export.int8`: dynamic int8 quantization of the linear layers;
* :mod:`~escx.export.runtime`, :mod:`~escx.export.check`, :mod:`~escx.export.quality`: the graphs in
  ONNX Runtime, their equality with escx and the cost of int8.

Example::

    import escx
    from escx.export import export_codec

    handle = escx.load_codec("model.ckpt")
    export_codec(handle.codec, "export", handle.fingerprint, "model.ckpt", int8=True)
"""

from __future__ import annotations

from escx.export.graphs import UnsupportedCodec
from escx.export.writer import ExportResult, ExportTargetError, export_codec

__all__ = ["ExportResult", "ExportTargetError", "UnsupportedCodec", "export_codec"]
