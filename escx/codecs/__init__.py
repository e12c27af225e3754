"""Codecs: audio <-> integer codes."""

from escx.codecs.base import CODECS, Codec, CodecOutput

__all__ = ["CODECS", "Codec", "CodecOutput"]
