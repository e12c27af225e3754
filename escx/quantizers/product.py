"""Product (grouped) residual quantizer over code-frame vectors (docs/esc.md §7 and §9.1).

A D-dimensional code-frame vector is cut into ``groups`` contiguous slices (equal sizes, the last
takes the remainder; slices need not line up with frames or channels). Each slice is projected
down (bias-free Linear) to the codebook dimension, quantized by ``stages`` residual codebooks in
that space, and projected back up. With one stage this is ESC's per-scale product VQ; with six it
is the product-RVQ bottleneck of ESC's RVQ ablations (one shared projection pair per slice).
Without projections (``project=False``) each codebook holds full slices; with one group that is
the plain residual VQ of SoundStream and EnCodec.

Losses follow the reference: per sample, summed over stages and averaged over groups.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from escx.quantizers.kinds import CodebookKind, CodebookSpec


def split_sizes(total: int, parts: int) -> list[int]:
    """Cut ``total`` into ``parts`` equal sizes, the last taking the remainder."""
    if parts < 1 or total < parts:
        raise ValueError(f"cannot split a {total}-dim vector into {parts} groups")
    base = total // parts
    return [base] * (parts - 1) + [total - base * (parts - 1)]


class ProductQuantizer(nn.Module):
    """Grouped residual VQ of (B, T, D) vectors.

    Args:
        in_dim: vector size D.
        groups: product groups (3 in ESC).
        stages: residual codebooks per group (1 for a product VQ).
        codebook_dim: down-projected dimension (ignored without projections, and for kinds
            that set their own width: FSQ and LFQ).
        codebook: the codebook kind, its size and options (default: ESC's 1024-entry VQ).
        project: bias-free Linear projections around the codebooks; False quantizes the slices
            themselves (codebook dimension = slice size), unless the kind sets its own width, which
            needs the projections.
    """

    def __init__(
        self,
        in_dim: int,
        groups: int = 3,
        stages: int = 1,
        codebook_dim: int = 8,
        codebook: CodebookSpec | None = None,
        project: bool = True,
    ) -> None:
        super().__init__()
        self.sizes = split_sizes(in_dim, groups)
        self.stages = stages
        spec = codebook or CodebookSpec()
        project = project or spec.fixed_dim is not None
        dims = [spec.dim(codebook_dim) if project else d for d in self.sizes]
        self.down = nn.ModuleList(
            nn.Linear(d, c, bias=False) if project else nn.Identity()
            for d, c in zip(self.sizes, dims, strict=True)
        )
        self.up = nn.ModuleList(
            nn.Linear(c, d, bias=False) if project else nn.Identity()
            for d, c in zip(self.sizes, dims, strict=True)
        )
        self.codebooks = nn.ModuleList(
            nn.ModuleList(spec.make(c, stage) for stage in range(stages)) for c in dims
        )

    def codebooks_by_stage(self) -> list[list[CodebookKind]]:
        """Codebooks grouped by residual stage: ``[stage][group]``."""
        return [[books[i] for books in self.codebooks] for i in range(self.stages)]

    def forward(
        self, v: Tensor, n_active: int, bypass: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Quantize with the first ``n_active`` stages.

        In training every stage runs (the reference's behaviour): inactive stages still extend the
        residual chain and return codes, but their output and losses are multiplied by zero. In
        eval inactive stages are skipped. ``bypass`` (pre-training) keeps the projections and
        skips the codebooks.

        Args:
            v: (B, T, D) vectors.
            n_active: stages in use (1..stages).
            bypass: skip quantization.

        Returns:
            ``(v_q, codes, commit, codebook)``: (B, T, D), codes (B, stages_run, groups, T) int64
            (stages_run = 0 when bypassed), per-sample losses (B,).
        """
        outs, codes = [], []
        commit = codebook = v.new_zeros(v.shape[0], dtype=torch.float32)
        run = 0 if bypass else (self.stages if self.training else n_active)
        for down, up, books, piece in zip(
            self.down, self.up, self.codebooks, v.split(self.sizes, dim=-1), strict=True
        ):
            z = down(piece)
            if bypass:
                outs.append(up(z))
                continue
            with torch.autocast(device_type=v.device.type, enabled=False):
                z_q, group_codes, c_loss, b_loss = self._residual(z.float(), books, run, n_active)
            outs.append(up(z_q.to(z.dtype)))
            codes.append(group_codes)
            commit, codebook = commit + c_loss, codebook + b_loss
        n = len(self.sizes)
        codes_t = (
            torch.stack(codes, dim=2)
            if codes
            else torch.zeros(v.shape[0], 0, n, v.shape[1], dtype=torch.long, device=v.device)
        )
        return torch.cat(outs, dim=-1), codes_t, commit / n, codebook / n

    @staticmethod
    def _residual(
        z: Tensor, books: nn.ModuleList, run: int, n_active: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        residual, total = z, torch.zeros_like(z)
        commit = codebook = z.new_zeros(z.shape[0])
        codes = []
        for i in range(run):
            q, c, c_loss, b_loss = books[i](residual)
            residual = residual - q
            if i >= n_active:  # untransmitted stage in training: masked, as in the reference
                q, c_loss, b_loss = q * 0.0, c_loss * 0.0, b_loss * 0.0
            total = total + q
            commit, codebook = commit + c_loss, codebook + b_loss
            codes.append(c)
        return total, torch.stack(codes, dim=1), commit, codebook

    @torch.no_grad()
    def encode(self, v: Tensor, n_active: int) -> Tensor:
        """(B, T, D) vectors -> codes (B, n_active, groups, T) int64."""
        codes = []
        for down, books, piece in zip(
            self.down, self.codebooks, v.split(self.sizes, dim=-1), strict=True
        ):
            residual = down(piece).float()
            group = []
            for i in range(n_active):
                c = books[i].encode(residual)
                group.append(c)
                if i + 1 < n_active:
                    residual = residual - books[i].lookup(c)
            codes.append(torch.stack(group, dim=1))
        return torch.stack(codes, dim=2)

    def decode(self, codes: Tensor) -> Tensor:
        """Codes (B, n, groups, T) -> vectors (B, T, D) (sum of the first n stages' codewords)."""
        outs = []
        for g, (up, books) in enumerate(zip(self.up, self.codebooks, strict=True)):
            z = sum(books[i].lookup(codes[:, i, g]) for i in range(codes.shape[1]))
            outs.append(up(z))
        return torch.cat(outs, dim=-1)
