"""Gradient estimators that carry a codeword's gradient back to the encoder output.

Nearest-neighbour lookup has no gradient, so training replaces the quantized vector ``q`` by an
expression that equals ``q`` in value and has a chosen gradient with respect to the encoder
output ``z``:

* ``straight_through`` (ESC, VQ-VAE): ``z + sg(q - z)``; the gradient at ``q`` is copied to ``z``
  unchanged.
* ``rotation`` (the rotation trick, Fifty et al. 2024, "Restructuring vector quantization with
  the rotation trick"): ``sg(|q| / |z| * R) z`` with ``R`` the rotation taking the direction of
  ``z`` to that of ``q`` (a Householder-style map in the plane of the two). The gradient reaching
  ``z`` is the codeword's gradient rotated back and rescaled, so it carries the angle between
  ``z`` and its codeword; in value it equals ``q`` up to float rounding.

Written here rather than taken from vector-quantize-pytorch, whose rotation trick lives inside its
``VectorQuantize`` module (with its own codebook, projections and defaults): escx applies it to
any learned codebook kind's (z, q) pair, after its own search, so only the gradient changes.
"""

from __future__ import annotations

import torch
from torch import Tensor

ESTIMATORS = ("straight_through", "rotation")


def check_estimator(estimator: str) -> None:
    """Raise a one-line ValueError for an unknown estimator name."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


def straight_through(z: Tensor, q: Tensor) -> Tensor:
    """``z + sg(q - z)``: value ``q``, identity gradient to ``z``. Shapes (..., D)."""
    return z + (q - z).detach()


def rotation_trick(z: Tensor, q: Tensor, eps: float = 1e-6) -> Tensor:
    """Rotate and rescale ``z`` onto ``q`` through a constant linear map.

    ``R z`` with ``R = I - 2 r r^T + 2 q_hat z_hat^T`` and ``r = (z_hat + q_hat) / |z_hat + q_hat|``
    takes ``z_hat`` to ``q_hat``; computed without forming ``R`` (the map is per vector).

    Args:
        z: (..., D) encoder vectors (with gradient).
        q: (..., D) their codewords.
        eps: guards zero vectors.

    Returns:
        (..., D) equal to ``q`` in value (to rounding), with gradient through the frozen map.
    """
    with torch.no_grad():
        z_norm = z.norm(dim=-1, keepdim=True).clamp_min(eps)
        q_norm = q.norm(dim=-1, keepdim=True)
        z_hat, q_hat = z / z_norm, q / q_norm.clamp_min(eps)
        r = z_hat + q_hat
        r = r / r.norm(dim=-1, keepdim=True).clamp_min(eps)
        scale = q_norm / z_norm
    # R z = z - 2 r (r . z) + 2 q_hat (z_hat . z); every factor but z is a constant.
    rz = z - 2 * r * (r * z).sum(-1, keepdim=True) + 2 * q_hat * (z_hat * z).sum(-1, keepdim=True)
    return scale * rz


def estimate(estimator: str, z: Tensor, q: Tensor) -> Tensor:
    """Apply the named estimator (see :data:`ESTIMATORS`)."""
    if estimator == "rotation":
        return rotation_trick(z, q)
    return straight_through(z, q)
