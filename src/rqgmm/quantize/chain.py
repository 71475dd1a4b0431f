"""The residual chain every tokenizer encodes and decodes through.

Level 0 quantizes the (latent) embedding, level ``l`` quantizes what levels ``0..l-1`` left.
A tokenizer supplies ``level_scores`` (and, where a level subtracts something other than its
chosen codeword, ``level_reconstruction``); this mixin walks the chain for fitting, encoding,
diagnostics and the Ray engine alike, and sums codewords back for decoding.

Shapes: codes are ``(n_items, n_levels)`` int64, code ``c`` at level ``l`` in
``[0, codebook_size[l])``; residuals ``(m, latent_dim)``.
"""

from __future__ import annotations

import numpy as np
import torch

from rqgmm.errors import InvalidInputError
from rqgmm.progress import progress_bar
from rqgmm.quantize.rowops import TILE_ROWS, row_argmax
from rqgmm.validation import EmbeddingMatrix


class ResidualChain:
    """Mixin of :class:`~rqgmm.quantize.base.ResidualTokenizer`: encoding and decoding through the
    levels' codebooks (``codebooks_``, ``_device_codebooks``)."""

    def level_scores(self, level: int, residual: torch.Tensor) -> torch.Tensor:
        """Scores (m, K_level) of residual rows (m, latent_dim) at ``level``; the argmax of a row
        is its code (RQ-KMeans: ``2 x.c - |c|^2``; RQ-GMM: joint log-probabilities)."""
        raise NotImplementedError

    def level_reconstruction(self, level: int, residual: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """What level ``level`` subtracts from the residual rows (m, latent_dim) given their
        codes (m,): the chosen codewords (RQ-GMM ``residual="soft"``: posterior-weighted means)."""
        return self._device_codebooks[level][codes]

    def residual_chain(self, residual: torch.Tensor, n_levels: int, *, offset: int = 0,
                       codes: torch.Tensor | None = None,
                       last_residual: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Walk levels ``offset .. offset + n_levels - 1`` of the residual chain.

        The one place where a level's residual is made from the previous one: fitting, encoding,
        diagnostics and the Ray engine all go through it.

        residual: (m, latent_dim) the residual at level ``offset`` (the latent itself when 0);
        codes: (m, n_levels) known codes of those levels (computed by argmax when None).
        Returns (codes (m, n_levels) int64, the residual the last of them leaves (m, latent_dim),
        or None with ``last_residual=False``).
        """
        if codes is None and residual.shape[0] > TILE_ROWS and residual.device.type == "cpu":
            # tile by tile, so each level's score matrix stays in cache (same codes, faster)
            parts = [self.residual_chain(tile, n_levels, offset=offset, last_residual=last_residual)
                     for tile in residual.split(TILE_ROWS)]
            return (torch.cat([codes for codes, _ in parts]),
                    torch.cat([rest for _, rest in parts]) if last_residual else None)
        out = torch.empty(residual.shape[0], n_levels, dtype=torch.int64, device=residual.device)
        for step in range(n_levels):
            level = offset + step
            level_codes = codes[:, step] if codes is not None else row_argmax(self.level_scores(level, residual))
            out[:, step] = level_codes
            if last_residual or step + 1 < n_levels:
                residual = residual - self.level_reconstruction(level, residual, level_codes).to(residual.dtype)
        return out, (residual if last_residual else None)

    def _encode_matrix(self, matrix: EmbeddingMatrix) -> np.ndarray:
        """Codes of every row of a validated matrix, chunk by chunk: (n_rows, n_levels) int64."""
        codes = np.empty((matrix.n_rows, self.n_levels), dtype=np.int64)
        with torch.inference_mode():
            for start, chunk in progress_bar(matrix.chunks(self.batch_size, self.device_), enabled=self.progress,
                                             total=-(-matrix.n_rows // self.batch_size), desc="encode"):
                codes[start:start + chunk.shape[0]] = self._encode_chunk(chunk).cpu().numpy()
        return codes

    def _to_latent(self, chunk: torch.Tensor) -> torch.Tensor:
        """The space the codebooks quantize: (m, dim) -> (m, latent_dim). Identity here;
        neural tokenizers apply their encoder."""
        return chunk

    def _from_latent(self, latent: np.ndarray) -> np.ndarray:
        """Inverse map of a sum of codewords back to the input space: (m, latent_dim) -> (m, dim)
        float32. Identity here; neural tokenizers apply their decoder."""
        return latent

    def _encode_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        """Codes of a chunk (m, dim) on the device: (m, n_levels) int64."""
        return self.residual_chain(self._to_latent(chunk), self.n_levels, last_residual=False)[0]

    def last_level_scores(self, rows: np.ndarray) -> np.ndarray:
        """Scores of the last level for raw rows (m, dim): (m, K_last) float64 (what collision
        repair ranks a colliding item's alternative last-level codes by)."""
        with torch.inference_mode():
            latent = self._to_latent(torch.from_numpy(rows).to(self.device_))
            residual = self.residual_chain(latent, self.n_levels - 1)[1]
            return self.level_scores(self.n_levels - 1, residual).double().cpu().numpy()

    def decode_prefix(self, codes, n_levels: int, *, exact_width: bool = False) -> np.ndarray:
        """Reconstruction from the first ``n_levels`` levels only: (n_items, dim) float32.

        ``decode_prefix(codes, L)`` equals ``decode(codes)``; smaller prefixes show what each
        level adds. codes: (n_items, >= n_levels) integers."""
        self.check_fitted()
        codes = np.asarray(codes)
        width_ok = codes.ndim == 2 and (codes.shape[1] == self.n_levels if exact_width
                                        else n_levels <= codes.shape[1])
        if not width_ok:
            raise InvalidInputError(f"codes: expected shape (n_items, {self.n_levels}), got {codes.shape}")
        if codes.size == 0:
            return np.zeros((codes.shape[0], self.n_features_in_), dtype=np.float32)
        if not np.issubdtype(codes.dtype, np.integer):
            raise InvalidInputError(f"codes: expected integers, got dtype {codes.dtype}")
        out = np.zeros((codes.shape[0], self.codebooks_[0].shape[1]), dtype=np.float32)
        for level in range(n_levels):
            codebook, column = self.codebooks_[level], codes[:, level]
            bad = np.flatnonzero((column < 0) | (column >= codebook.shape[0]))
            if bad.size:
                raise InvalidInputError(
                    f"codes: row {int(bad[0])} has code {int(column[bad[0]])} at level {level},"
                    f" outside [0, {codebook.shape[0]}) ({bad.size} such row(s))")
            out += codebook[column]
        return self._from_latent(out)

