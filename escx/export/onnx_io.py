"""The user-facing inputs and outputs of the exported graphs, added around the traced cores.

Inside the traced graphs every size is a multiple of one symbol, the number of attention windows
along time (:mod:`escx.export.graphs`). The few ONNX nodes added here turn that into the
contract users see:

* encoder: ``audio`` (batch, samples) float32 is zero-padded to whole windows and its length
  handed to the core; the core's codes are cut to ``ceil(samples / samples_per_frame)`` frames;
* decoder: ``codes`` (batch, k, groups, frames) int64 are padded with zero codes to every stream
  and whole windows (the core masks what was padded), and the audio is cut to ``length`` ()
  int64 samples, at most ``frames * samples_per_frame``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PREFIX = "escx_io_"


def _const(name: str, values: list[int]) -> onnx.NodeProto:
    array = np.asarray(values, dtype=np.int64)
    return helper.make_node(
        "Constant", [], [PREFIX + name], value=numpy_helper.from_array(array, PREFIX + name)
    )


def _rename_output(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
        node.input[:] = [new if name == old else name for name in node.input]


def _replace_io(
    graph: onnx.GraphProto,
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    front: list[onnx.NodeProto],
    back: list[onnx.NodeProto],
) -> None:
    nodes = [*front, *graph.node, *back]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.output[:]
    graph.output.extend(outputs)


def wrap_encoder(model: onnx.ModelProto, span: int, frame: int, streams: int, groups: int):
    """Give an encoder core (inputs ``padded``, ``length``; output ``codes``) the user contract:
    input ``audio`` (batch, samples) float32, output ``codes`` (batch, streams, groups, frames).

    Args:
        model: the traced core, changed in place.
        span: samples per attention window (the core's input is a multiple of it).
        frame: samples per code frame.
        streams, groups: the codes' fixed sizes (for the output's declared shape).
    """
    g = model.graph
    core = PREFIX + "codes"
    _rename_output(g, "codes", core)
    p = PREFIX
    front = [
        _const("span", [span]),
        _const("frame", [frame]),
        _const("frame_less_one", [frame - 1]),
        _const("zeros3", [0, 0, 0]),
        _const("axis0", [0]),
        _const("axis3", [3]),
        helper.make_node("Shape", ["audio"], [p + "samples"], start=1, end=2),
        helper.make_node("Mod", [p + "samples", p + "span"], [p + "rest"]),
        helper.make_node("Sub", [p + "span", p + "rest"], [p + "gap"]),
        helper.make_node("Mod", [p + "gap", p + "span"], [p + "pad"]),
        helper.make_node("Concat", [p + "zeros3", p + "pad"], [p + "pads"], axis=0),
        helper.make_node("Pad", ["audio", p + "pads"], ["padded"], mode="constant"),
        helper.make_node("Squeeze", [p + "samples", p + "axis0"], ["length"]),
    ]
    back = [
        helper.make_node("Add", [p + "samples", p + "frame_less_one"], [p + "ceil_num"]),
        helper.make_node("Div", [p + "ceil_num", p + "frame"], [p + "frames"]),
        helper.make_node("Slice", [core, p + "axis0", p + "frames", p + "axis3"], ["codes"]),
    ]
    audio = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])
    codes = helper.make_tensor_value_info(
        "codes", TensorProto.INT64, ["batch", streams, groups, "frames"]
    )
    _replace_io(g, [audio], [codes], front, back)
    return model


def wrap_decoder(
    model: onnx.ModelProto, frames_per_window: int, frame: int, streams: int, groups: int
):
    """Give a decoder core (inputs ``codes``, ``frames``, ``streams``; output ``audio``) the user
    contract: inputs ``codes`` (batch, k, groups, frames) int64 and ``length`` () int64, output
    ``audio`` (batch, length) float32.

    Args:
        model: the traced core, changed in place.
        frames_per_window: code frames per attention window (the core's frames are a multiple).
        frame: samples per code frame.
        streams: the codec's stream count (k is padded up to it).
        groups: codes per stream and frame.
    """
    g = model.graph
    p = PREFIX
    for old in ("codes", "frames", "streams"):  # the core's inputs become internal tensors
        for node in g.node:
            node.input[:] = [p + "core_" + old if name == old else name for name in node.input]
    core_audio = p + "audio"
    _rename_output(g, "audio", core_audio)
    front = [
        _const("max_streams", [streams]),
        _const("fpw", [frames_per_window]),
        _const("zeros4", [0, 0, 0, 0]),
        _const("zero", [0]),
        _const("one", [1]),
        _const("three", [3]),
        _const("axis0", [0]),
        helper.make_node("Shape", ["codes"], [p + "shape"]),
        helper.make_node("Gather", [p + "shape", p + "one"], [p + "k"], axis=0),
        helper.make_node("Gather", [p + "shape", p + "three"], [p + "frames"], axis=0),
        helper.make_node("Sub", [p + "max_streams", p + "k"], [p + "pad_streams"]),
        helper.make_node("Mod", [p + "frames", p + "fpw"], [p + "rest"]),
        helper.make_node("Sub", [p + "fpw", p + "rest"], [p + "gap"]),
        helper.make_node("Mod", [p + "gap", p + "fpw"], [p + "pad_frames"]),
        helper.make_node(
            "Concat",
            [p + "zeros4", p + "zero", p + "pad_streams", p + "zero", p + "pad_frames"],
            [p + "pads"],
            axis=0,
        ),
        helper.make_node("Pad", ["codes", p + "pads"], [p + "core_codes"], mode="constant"),
        helper.make_node("Squeeze", [p + "frames", p + "axis0"], [p + "core_frames"]),
        helper.make_node("Squeeze", [p + "k", p + "axis0"], [p + "core_streams"]),
    ]
    back = [
        _const("frame", [frame]),
        helper.make_node("Mul", [p + "frames", p + "frame"], [p + "most"]),
        helper.make_node("Reshape", ["length", p + "one"], [p + "asked"]),
        helper.make_node("Min", [p + "asked", p + "most"], [p + "clipped"]),
        helper.make_node("Max", [p + "clipped", p + "zero"], [p + "end"]),
        helper.make_node("Slice", [core_audio, p + "zero", p + "end", p + "one"], ["audio"]),
    ]
    codes = helper.make_tensor_value_info(
        "codes", TensorProto.INT64, ["batch", "streams", groups, "frames"]
    )
    length = helper.make_tensor_value_info("length", TensorProto.INT64, [])
    audio = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])
    _replace_io(g, [codes, length], [audio], front, back)
    return model
