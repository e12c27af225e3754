"""k-means (k-means++ seeding + Lloyd iterations) in a codebook's search space.

SoundStream and EnCodec initialise codebooks with k-means on the first training batch; ESC does
not (docs/esc.md §7: Kaiming init, its data-init hook is never called). The clustering must agree
with how the codebook *searches*, or the initial assignment would not match the centroids:

* assignment uses the codebook's metric: Euclidean, or cosine when ``cosine=True`` (ESC's
  L2-normalised lookup);
* a centroid is the mean of the *raw* vectors assigned to it, because the codebook returns raw
  codewords (docs/esc.md §7), and given an assignment the raw mean is the codeword with the smallest
  squared error. With cosine assignment this is still a monotone Lloyd scheme: the raw mean's
  direction maximises sum_i |z_i| cos(z_i, c), a norm-weighted spherical k-means objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Rows per distance block: bounds memory at CHUNK x k floats for large batches.
CHUNK = 8192


def _search_space(vectors: Tensor, cosine: bool) -> Tensor:
    return F.normalize(vectors, dim=-1) if cosine else vectors


def nearest_centroid(vectors: Tensor, centroids: Tensor, cosine: bool = False) -> Tensor:
    """Index (N,) of each (N, D) vector's nearest (k, D) centroid under the search metric."""
    points = _search_space(vectors, cosine)
    cents = _search_space(centroids, cosine)
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 does not change the argmin.
    norms = cents.pow(2).sum(1)
    return torch.cat(
        [(norms[None] - 2 * block @ cents.t()).argmin(1) for block in points.split(CHUNK)]
    )


def kmeans_plus_plus(points: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """k-means++ seeding: indices (k,) into (N, D) ``points`` (already in the search space).

    Each seed is drawn with probability proportional to its squared distance from the nearest
    seed so far. Once every point coincides with a seed (fewer distinct points than ``k``), the
    remaining seeds are drawn uniformly: they duplicate existing ones and stay unused until a
    dead-entry restart replaces them.
    """
    n = points.shape[0]
    device = points.device
    first = torch.randint(n, (1,), generator=generator, device=device)
    chosen = [first]
    d2 = (points - points[first]).pow(2).sum(1)
    for _ in range(k - 1):
        total = d2.sum()
        if total > 0:
            pick = torch.multinomial(d2 / total, 1, generator=generator)
        else:
            pick = torch.randint(n, (1,), generator=generator, device=device)
        chosen.append(pick)
        d2 = torch.minimum(d2, (points - points[pick]).pow(2).sum(1))
    return torch.cat(chosen)


def kmeans(
    vectors: Tensor,
    k: int,
    iters: int = 10,
    cosine: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Cluster (N, D) vectors into (k, D) centroids.

    Args:
        vectors: (N, D) data; N may be smaller than k (then some centroids are duplicates).
        k: number of centroids.
        iters: Lloyd iterations after the k-means++ seeding (0: seeding only).
        cosine: assign by cosine similarity instead of Euclidean distance.
        generator: random source of the seeding (on ``vectors``' device), for reproducibility.

    Returns:
        (k, D) float32 centroids: means of the raw vectors assigned to them (a centroid that
        loses all its vectors keeps its previous value).
    """
    if vectors.dim() != 2 or vectors.shape[0] == 0:
        raise ValueError(f"kmeans needs (N, D) vectors with N >= 1, got {tuple(vectors.shape)}")
    if k < 1 or iters < 0:
        raise ValueError(f"kmeans needs k >= 1 and iters >= 0, got k={k}, iters={iters}")
    data = vectors.float()
    centroids = data[kmeans_plus_plus(_search_space(data, cosine), k, generator)].clone()
    for _ in range(iters):
        assign = nearest_centroid(data, centroids, cosine)
        sums = torch.zeros_like(centroids).index_add_(0, assign, data)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1).to(data.dtype)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids
