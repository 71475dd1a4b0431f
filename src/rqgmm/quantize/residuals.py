"""Where a level's training rows come from: the public streaming-fit interface of the tokenizers.

A residual tokenizer fits level ``l`` on the residuals its levels ``0..l-1`` leave. It never
holds those residuals itself: it asks a :class:`ResidualSource` for samples and for reductions
(sums of per-chunk statistics). :class:`MatrixResiduals` serves an in-memory array or a
``np.memmap`` chunk by chunk; the Ray engine (``rqgmm.distributed``) serves blocks of a Ray
Dataset with the same contract, so one fitting code path runs in memory, out of core and on a
cluster (``ResidualTokenizer.fit_source``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import torch

from rqgmm.errors import InvalidInputError
from rqgmm.progress import progress_bar
from rqgmm.validation import EmbeddingMatrix


class ResidualSource:
    """The residuals of ``n_rows`` training rows of width ``dim`` at the level being fitted.

    The tokenizer sets ``level`` before fitting each level and calls ``store_codes(level)`` once
    the level is fitted (a source may keep the codes so later levels need not recompute them).
    Every member is declared here: the required ones raise ``NotImplementedError``; the optional
    ones say "not available" (None, or a named error), so a fit never probes a source with
    ``hasattr``.
    """

    level: int = 0

    @property
    def n_rows(self) -> int:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def sample(self, size: int, rng: np.random.Generator) -> torch.Tensor:
        """Residuals of ``min(size, n_rows)`` rows drawn uniformly without replacement by
        ``rng`` (positions sorted): (m, dim). Same ``rng`` state, same rows on every source."""
        raise NotImplementedError

    def reduce(self, function: Callable[[torch.Tensor], Any]) -> Any:
        """``function(chunk)`` summed (``+``) over residual chunks (m, dim) in row order."""
        raise NotImplementedError

    def store_codes(self, level: int) -> None:
        """Called once level ``level`` is fitted."""

    # optional: what only a source holding its rows in this process can offer
    def local_chunks(self) -> Callable[[], Iterator[torch.Tensor]] | None:
        """A function that re-reads every residual chunk in this process, or None when the rows
        live elsewhere (then statistics can only be taken through ``reduce``)."""
        return None

    def training_rows(self) -> EmbeddingMatrix | None:
        """The training rows themselves (to encode them with another version), or None."""
        return None

    def rows(self, positions: np.ndarray) -> torch.Tensor:
        """Residuals (p, dim) of the rows at sorted ``positions`` (sources with local rows)."""
        raise InvalidInputError(f"a {type(self).__name__} cannot read rows by position; this needs the rows in"
                                " this process (the local engine)")

    def sample_source(self, size: int, rng: np.random.Generator) -> "ResidualSource":
        """A source over a uniform sample of ``size`` rows (sources with local rows)."""
        raise InvalidInputError(f"max_samples is not supported by a {type(self).__name__} source; fit on all"
                                " rows (max_samples=None)")


class MatrixResiduals(ResidualSource):
    """A :class:`ResidualSource` over a validated matrix (array or memmap), read in chunks.

    The codes of finished levels are kept in memory ((n, n_levels) int64, 8 bytes per row and
    level), so a residual is the row minus its chosen codewords, recomputed per chunk.
    """

    def __init__(self, tokenizer, matrix: EmbeddingMatrix):
        self.tokenizer = tokenizer
        self.matrix = matrix
        self.level = 0
        self.codes = np.zeros((matrix.n_rows, tokenizer.n_levels), dtype=np.int64)

    @property
    def n_rows(self) -> int:
        return self.matrix.n_rows

    @property
    def dim(self) -> int:
        return self.matrix.dim

    def _residual(self, chunk: torch.Tensor, positions: slice | np.ndarray) -> torch.Tensor:
        if self.level == 0:
            return chunk
        codes = torch.from_numpy(self.codes[positions, : self.level]).to(chunk.device)
        return self.tokenizer.residual_chain(chunk, self.level, codes=codes)[1]

    def chunks(self, desc: str | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, residual chunk (m, dim))`` over all rows."""
        tokenizer = self.tokenizer
        iterator = self.matrix.chunks(tokenizer.batch_size, tokenizer.device_)
        if desc is not None:
            iterator = progress_bar(iterator, enabled=tokenizer.progress, desc=desc,
                                    total=-(-self.n_rows // tokenizer.batch_size))
        for start, chunk in iterator:
            yield start, self._residual(chunk, slice(start, start + chunk.shape[0]))

    def reduce(self, function: Callable[[torch.Tensor], Any]) -> Any:
        total = None
        for _, chunk in self.chunks():
            part = function(chunk)
            total = part if total is None else total + part
        return total

    def local_chunks(self) -> Callable[[], Iterator[torch.Tensor]]:
        return lambda: (chunk for _, chunk in self.chunks())

    def training_rows(self) -> EmbeddingMatrix:
        return self.matrix

    def sample(self, size: int, rng: np.random.Generator) -> torch.Tensor:
        return self.rows(sample_positions(self.n_rows, size, rng))

    def rows(self, positions: np.ndarray) -> torch.Tensor:
        """Residuals (p, dim) of the rows at sorted ``positions``."""
        rows = torch.from_numpy(self.matrix.take(positions)).to(self.tokenizer.device_)
        return self._residual(rows, positions)

    def sample_source(self, size: int, rng: np.random.Generator) -> "MatrixResiduals":
        """A source over a uniform sample of ``size`` rows (sorted positions), carrying their codes
        of the levels fitted so far: a level can be fitted on it and the rest encoded."""
        positions = sample_positions(self.n_rows, size, rng)
        sample = MatrixResiduals(self.tokenizer, self.matrix.subset(positions))
        sample.codes = self.codes[positions]
        sample.level = self.level
        return sample

    def store_codes(self, level: int) -> None:
        """Final assignment pass of a fitted level: fill ``codes[:, level]``."""
        with torch.inference_mode():
            for start, residual in self.chunks(desc=f"level {level} assign"):
                level_codes = self.tokenizer.residual_chain(residual, 1, offset=level, last_residual=False)[0]
                self.codes[start:start + residual.shape[0], level] = level_codes[:, 0].cpu().numpy()


def sample_positions(n_rows: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ``min(size, n_rows)`` rows drawn without replacement (all rows, in
    order, when ``size >= n_rows``)."""
    if size >= n_rows:
        return np.arange(n_rows)
    return np.sort(rng.choice(n_rows, size=size, replace=False))
