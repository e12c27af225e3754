"""Streaming: code audio frame by frame with a bounded look-ahead.

:class:`StreamEncoder` takes audio in pieces of any length and returns the codes of the frames
that became final; :class:`StreamDecoder` takes codes and returns the samples that became final.
Concatenated, they are what ``codec.encode`` and ``codec.decode`` give for the whole signal.
:func:`latency` states a codec's look-ahead and end-to-end algorithmic latency;
:mod:`escx.streaming.packets` is the streamable form of the ``.escx`` format.
"""

from escx.streaming.decoder import StreamDecoder
from escx.streaming.encoder import StreamEncoder
from escx.streaming.latency import Latency
from escx.streaming.plan import latency

__all__ = ["Latency", "StreamDecoder", "StreamEncoder", "latency"]
