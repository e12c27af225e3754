"""Incremental layers: each turns the new final part of its input into the new final part of its
output, computing every output once.

An operation is called with the positions of its input that became final since its last call
(``ended`` once the input is complete) and returns the positions of its output that became final,
or None when none did.
:meth:`TimeOp.ready` is the same rule without tensors (how many outputs are final once ``n``
inputs are), which is how look-ahead and latency are computed (:mod:`escx.streaming.latency`).

Every layer of ESC is local in time, so an output is final once its receptive field is, and it is
computed by running the layer's own module on a slice of the time axis that reproduces the
whole-signal computation for that output:

* a Swin block (:class:`BlockOp`) runs on a slice that starts on a window boundary of its
  unshifted grid. Its windows then coincide with the whole signal's; the slice's own edges land
  in the wrapped last window column (region-masked, thrown away) or are the true ends of the
  signal, where the whole-signal computation masks and pads the same way. In an offline block an
  output waits for its whole 4-patch window; in a causal one only for its own code frame;
* per-token and per-frame layers (patch embedding, merges, splits, quantizers) run on whatever
  is new (:class:`Pointwise`);
* the de-embedding convolutions (:class:`DeEmbedOp`) run on a slice with their receptive radius
  of context, whose edge outputs are thrown away.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from escx.streaming.timeline import TimeBuffer


class TimeOp:
    """An incremental layer along one time axis.

    Attributes:
        axis: time axis of the inputs.
    """

    axis: int = -1

    def ready(self, received: int, ended: bool) -> int:
        """Outputs that are final once ``received`` inputs are (all of them once ``ended``)."""
        raise NotImplementedError

    def __call__(self, x: Tensor | None, ended: bool) -> Tensor | None:
        """Take the next inputs (None: none); return the outputs that became final, or None."""
        raise NotImplementedError


class Pointwise(TimeOp):
    """A layer applied to groups of ``group`` consecutive positions, each on its own.

    Args:
        fn: maps ``k * group`` input positions to ``k * out_per_group`` output positions.
        axis: time axis of the inputs.
        group: input positions per independent group (2 patches per code frame for a quantizer).
        out_per_group: output positions per group.
    """

    def __init__(
        self, fn: Callable[[Tensor], Tensor], axis: int, group: int = 1, out_per_group: int = 1
    ) -> None:
        self.fn, self.axis, self.group, self.out_per_group = fn, axis, group, out_per_group
        self.buffer = TimeBuffer(axis)
        self.done = 0  # groups computed

    def ready(self, received: int, ended: bool) -> int:
        return received // self.group * self.out_per_group

    def __call__(self, x: Tensor | None, ended: bool) -> Tensor | None:
        self.buffer.append(x)
        groups = self.buffer.end // self.group
        if groups <= self.done:
            return None
        lo, hi = self.done * self.group, groups * self.group
        out = self.fn(self.buffer.take(lo, hi))
        self.done = groups
        self.buffer.drop_before(hi)
        return out


class BlockOp(TimeOp):
    """One Swin block of a stage on channels-last tokens (B, H, W, C), time axis 2.

    Args:
        stage: the :class:`~escx.backbones.swin_layers.SwinStage` (its masks are used).
        index: the block's index in the stage.
    """

    axis = 2

    def __init__(self, stage: nn.Module, index: int) -> None:
        block = stage.blocks[index]
        self.stage, self.index = stage, index
        self.window, self.shift, self.causal = block.window, block.shift, stage.causal_block
        self.buffer = TimeBuffer(2)
        self.done = 0

    def ready(self, received: int, ended: bool) -> int:
        if ended:
            return received
        if self.causal:  # a token needs its own frame and earlier ones
            return received - received % self.causal
        if received < self.shift:
            return 0
        return received - (received - self.shift) % self.window  # whole windows only

    def slice_start(self, position: int) -> int:
        """First input of the slice that computes outputs from ``position`` on: the start of the
        window holding ``position``, minus the shift (a boundary of the unshifted grid)."""
        if position < self.shift:
            return 0
        return position - (position - self.shift) % self.window - self.shift

    def __call__(self, x: Tensor | None, ended: bool) -> Tensor | None:
        self.buffer.append(x)
        end = self.ready(self.buffer.end, ended)
        if end <= self.done:
            return None
        lo = self.slice_start(self.done)
        y = self.stage.block_forward(self.index, self.buffer.take(lo, self.buffer.end))
        out = y[:, :, self.done - lo : end - lo]
        self.done = end
        self.buffer.drop_before(self.slice_start(end))
        return out


class DeEmbedOp(TimeOp):
    """The de-embedding convolutions: patches (B, C, H, W) -> STFT frames (B, 2, F, W * pt).

    An output patch needs ``behind`` earlier and ``ahead`` later patches (3 and 3 for ESC's 5x5
    and 3x3 kernels; 5 and 0 for the causal de-embedding). A slice with that much context on each
    side gives exact outputs away from its edges; its edge outputs are thrown away unless the
    edge is the signal's.

    Args:
        module: the :class:`~escx.backbones.deembed.PatchDeEmbed`.
    """

    axis = 3

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        r1, r2 = module.expand.kernel_size[1] // 2, module.out.kernel_size[1] // 2
        pt = module.patch_size[1]
        # Patches one output patch reaches: the first kernel's reach plus the second's through
        # the pixel shuffle (ESC: 2 + 1 = 3 each side; the causal one: 4 + 1 = 5 behind).
        if module.causal:
            self.behind, self.ahead = 2 * r1 + -(-2 * r2 // pt), 0
        else:
            self.behind = self.ahead = r1 + -(-r2 // pt)
        self.pt = pt
        self.buffer = TimeBuffer(3)
        self.done = 0

    def ready(self, received: int, ended: bool) -> int:
        return self._ready_patches(received, ended) * self.pt

    def _ready_patches(self, received: int, ended: bool) -> int:
        return received if ended else max(0, received - self.ahead)

    def __call__(self, x: Tensor | None, ended: bool) -> Tensor | None:
        self.buffer.append(x)
        end = self._ready_patches(self.buffer.end, ended)
        if end <= self.done:
            return None
        lo = max(0, self.done - self.behind)
        y = self.module(self.buffer.take(lo, self.buffer.end))
        out = y[..., (self.done - lo) * self.pt : (end - lo) * self.pt]
        self.done = end
        self.buffer.drop_before(max(0, end - self.behind))
        return out
