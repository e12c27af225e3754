"""Codebook kinds: what sits in each codebook slot of a quantizer, selected in YAML by name.

Every quantizer that holds codebooks (each group of :class:`ProductVQ`, each stage of
:class:`ResidualVQ` / :class:`PlainRVQ`, each scale of :class:`CrossScaleRVQ`) builds them from
one :class:`CodebookSpec`: the kind's registered name, the kind's own options (``codebook_args``)
and the quantizer's codebook-learning options (``codebook_init``, ``ema_decay``,
``dead_threshold``, ...), which only kinds with a learned codebook accept. A kind is a
:class:`CodebookKind` registered in :data:`CODEBOOKS`; a plug-in adds one the same way::

    @CODEBOOKS.register
    class MyKind(CodebookKind): ...

and selects it with ``codebook: MyKind`` in a quantizer's ``init_args``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from escx.registry import Registry, RegistryError

# The quantizer-level codebook-learning options and their defaults ("no technique"). A kind
# whose constructor does not name one of them rejects a non-default value at start.
LEARNING_DEFAULTS: dict[str, Any] = {
    "init": "kaiming",
    "kmeans_iters": 10,
    "kmeans_batches": 1,
    "ema_decay": None,
    "ema_epsilon": 1e-5,
    "dead_threshold": 0.0,
    "usage_decay": 0.99,
}
# What each learning option is called in a quantizer's YAML (for error messages).
YAML_NAMES = {"init": "codebook_init"}


class CodebookKind(nn.Module):
    """Base class of a codebook kind: quantizes (B, T, dim) vectors to (B, T) integer codes.

    Subclasses take ``dim`` (the down-projected width the quantizer gives them), ``size``, and
    ``stage`` (0-based residual stage: kinds with a fixed output range shrink it for later stages)
    as their first constructor arguments, then their own options. They implement
    :meth:`forward`, :meth:`encode` and :meth:`lookup`, and may override the class methods that
    say how many codes and which width they use.

    Attributes:
        dim: vector width.
        size: number of codes.
    """

    dim: int
    size: int

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Raise a one-line ValueError for an invalid option value (called at config time)."""

    @classmethod
    def num_codes(cls, size: int, **options: Any) -> int:
        """Codes per codebook; the quantizer's ``codebook_size`` unless the kind fixes it."""
        return size

    @classmethod
    def fixed_dim(cls, **options: Any) -> int | None:
        """Width the kind quantizes if it sets its own (FSQ: one per level); None: the
        quantizer's ``codebook_dim``."""
        return None

    @property
    def restarts_enabled(self) -> bool:
        """Whether dead entries are restarted (only a learned codebook can)."""
        return False

    def pop_restarts(self) -> int:
        """Entries restarted since the last call (the same count on every DDP rank)."""
        return 0

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Quantize (B, T, dim) float32 vectors.

        Returns:
            ``(z_q, codes, commit, codebook)``: z_q (B, T, dim) (differentiable in training,
            exactly ``lookup(codes)`` in eval), codes (B, T) int64, per-sample losses (B,).
        """
        raise NotImplementedError

    def encode(self, z: Tensor) -> Tensor:
        """(B, T, dim) vectors -> (B, T) int64 codes."""
        raise NotImplementedError

    def lookup(self, codes: Tensor) -> Tensor:
        """Integer codes (...) -> vectors (..., dim)."""
        raise NotImplementedError


CODEBOOKS: Registry = Registry("codebook", CodebookKind)


def _accepted(cls: type) -> set[str]:
    parameters = inspect.signature(cls.__init__).parameters
    return {name for name in parameters if name not in ("self", "dim", "size", "stage")}


@dataclass(frozen=True)
class CodebookSpec:
    """A validated recipe for the codebooks of one quantizer.

    Attributes:
        kind: registered kind name ("VQ", "FSQ", ...).
        size: codes per codebook (FSQ: product of levels; LFQ: 2 ** bits).
        options: constructor keyword arguments of the kind.
    """

    kind: str = "VQ"
    size: int = 1024
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def cls(self) -> type:
        """The kind's class."""
        return CODEBOOKS.get(self.kind)

    @property
    def fixed_dim(self) -> int | None:
        """The width the kind sets itself, or None when it takes the quantizer's."""
        return self.cls.fixed_dim(**self.options)

    def dim(self, requested: int) -> int:
        """Width the kind quantizes when the quantizer asks for ``requested`` dims."""
        fixed = self.fixed_dim
        return requested if fixed is None else fixed

    def make(self, dim: int, stage: int = 0) -> CodebookKind:
        """Build one codebook of width ``dim`` for residual stage ``stage``."""
        return self.cls(dim, self.size, stage, **self.options)


def codebook_spec(
    kind: str = "VQ",
    size: int = 1024,
    kind_args: dict[str, Any] | None = None,
    l2norm: bool = True,
    **learning: Any,
) -> CodebookSpec:
    """Validate a quantizer's codebook configuration; every error is one line.

    Args:
        kind: registered codebook kind.
        size: the quantizer's ``codebook_size``.
        kind_args: the kind's own options (``codebook_args`` in YAML).
        l2norm: cosine-similarity lookup, passed to kinds that search a codebook (ignored by kinds
            without one, whose codes come from rounding).
        **learning: codebook-learning options, keys of :data:`LEARNING_DEFAULTS`.

    Raises:
        ValueError: unknown kind, unknown kind option, a learning technique the kind cannot use,
            or an invalid value.
    """
    try:
        cls = CODEBOOKS.get(kind)
    except RegistryError as error:
        raise ValueError(str(error)) from None
    accepted = _accepted(cls)
    args = dict(kind_args or {})
    # The kind's own options; l2norm and the learning techniques are the quantizer's options.
    own = accepted - {"l2norm"} - set(LEARNING_DEFAULTS)
    unknown = sorted(set(args) - own)
    if unknown:
        valid = ", ".join(sorted(own)) or "none"
        raise ValueError(
            f"codebook {kind} has no option {unknown[0]!r} in codebook_args (its options: "
            f"{valid}; l2norm and the learning techniques are quantizer options)"
        )
    options = {**learning, **args}
    for name, value in options.items():
        if name in LEARNING_DEFAULTS and name not in accepted:
            if value != LEARNING_DEFAULTS[name]:
                raise ValueError(
                    f"{YAML_NAMES.get(name, name)}={value!r} has no meaning for codebook {kind} "
                    "(it has no learned entries to initialise, average or restart); remove it "
                    "or use codebook VQ"
                )
    options = {k: v for k, v in options.items() if k in accepted}
    if "l2norm" in accepted:
        options["l2norm"] = l2norm
    cls.check_options(**options)
    count = cls.num_codes(size, **options)
    if count < 2 or count > 2**16:
        raise ValueError(f"codebook {kind} has {count} codes; escx streams hold 2..65536 codes")
    return CodebookSpec(kind, count, options)
