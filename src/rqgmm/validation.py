"""Validation of embedding matrices and chunked access to them.

Tokenizers never hold more than one chunk of the input in memory at a time: they read an
``(n, dim)`` matrix (a NumPy array or a ``np.memmap`` larger than RAM) through
:class:`EmbeddingMatrix`, which yields ``(chunk, dim)`` float32 tensors on the target device.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from rqgmm.errors import InvalidInputError
from rqgmm.quantize.params import MAX_SCALE, MIN_SCALE

_MAX_ROWS_NAMED = 5
_TAKE_BLOCK_ROWS = 1024


@dataclass(frozen=True)
class ColumnMoments:
    """Per-dimension first and second moments of a matrix, from one chunked pass.

    mean: (dim,) float64; variance: (dim,) float64 (population variance).
    """

    n_rows: int
    mean: np.ndarray
    variance: np.ndarray


def _from_columnar(data, name: str):
    """Arrow and pandas inputs as a 2-D NumPy matrix: a ``pyarrow`` Table (its one list column, or
    its numeric columns side by side), a (Chunked)Array of fixed-size or equal-length lists (the
    Parquet layout the CLI reads; zero-copy for one chunk of fixed-size lists without nulls), a
    pandas Series of arrays, or a DataFrame (one column of arrays, or numeric columns). Anything
    else is returned as it is."""
    module = type(data).__module__
    if module.startswith("pandas"):
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            arrays = [c for c in data.columns if data[c].dtype == object]
            if len(arrays) == 1 and len(data.columns) == 1:
                return _from_columnar(data[arrays[0]], f"{name}[{arrays[0]!r}]")
            if arrays:
                raise InvalidInputError(f"{name}: a DataFrame with column(s) of arrays {arrays} beside other"
                                        " columns; pass the embedding column itself (df[column])")
            return data.to_numpy()
        if isinstance(data, pd.Series) and data.dtype == object:
            missing = np.flatnonzero(data.isna().to_numpy())
            if missing.size:
                raise InvalidInputError(f"{name}: row {int(missing[0])} has no embedding (null)")
            lengths = data.map(len).to_numpy()
            if (lengths != lengths[0]).any():
                row = int(np.flatnonzero(lengths != lengths[0])[0])
                raise InvalidInputError(f"{name}: row {row} has {lengths[row]} values, row 0 has {lengths[0]}")
            return np.stack(data.to_numpy())
        return data
    if not module.startswith("pyarrow"):
        return data
    import pyarrow as pa

    if isinstance(data, pa.Table):
        lists = [f.name for f in data.schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)
                 or pa.types.is_large_list(f.type)]
        if len(lists) == 1:
            return _from_columnar(data.column(lists[0]), f"{name}[{lists[0]!r}]")
        if lists:
            raise InvalidInputError(f"{name}: a table with several list columns {lists}; pass the embedding"
                                    " column itself (table.column(name))")
        return np.column_stack([data.column(i).to_numpy() for i in range(data.num_columns)])
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks() if data.num_chunks != 1 else data.chunk(0)
    if isinstance(data, pa.Array) and (pa.types.is_list(data.type) or pa.types.is_large_list(data.type)
                                       or pa.types.is_fixed_size_list(data.type)):
        if data.null_count:
            raise InvalidInputError(f"{name}: row {int(np.flatnonzero(data.is_null().to_numpy(zero_copy_only=False))[0])}"
                                    " has no embedding (null)")
        if pa.types.is_fixed_size_list(data.type):
            return data.values.to_numpy(zero_copy_only=False)[data.offset * data.type.list_size:][
                :len(data) * data.type.list_size].reshape(len(data), data.type.list_size)
        lengths = np.diff(data.offsets.to_numpy())
        if len(lengths) and (lengths != lengths[0]).any():
            row = int(np.flatnonzero(lengths != lengths[0])[0])
            raise InvalidInputError(f"{name}: row {row} has {lengths[row]} values, row 0 has {lengths[0]}")
        return data.flatten().to_numpy(zero_copy_only=False).reshape(len(data), int(lengths[0]) if len(lengths) else 0)
    if isinstance(data, pa.Array):
        return data.to_numpy(zero_copy_only=False)
    return data


class EmbeddingMatrix:
    """Chunked, validated, read-only view of an ``(n, dim)`` numeric matrix.

    Parameters
    ----------
    data: 2-D NumPy array or memmap of any real dtype. Never copied whole.
    rows: optional int64 row indices (sorted) selecting a subset, e.g. the valid rows.
    name: how the data is named in error messages (a file name, "X").
    """

    def __init__(self, data: np.ndarray, rows: np.ndarray | None = None, name: str = "X"):
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu().numpy()
        data = _from_columnar(data, name)
        if hasattr(data, "toarray") and hasattr(data, "nnz"):
            raise InvalidInputError(f"{name}: sparse input is not supported (embeddings are dense); convert it"
                                    " with .toarray() first")
        if not isinstance(data, np.ndarray):
            try:
                data = np.asarray(data)
            except (ValueError, TypeError) as exc:
                raise InvalidInputError(f"{name}: cannot be read as a numeric matrix ({exc})") from None
        if data.ndim != 2:
            hint = " Reshape your data with X.reshape(-1, 1) or X.reshape(1, -1)" if data.ndim == 1 else ""
            raise InvalidInputError(
                f"{name}: expected a 2-D matrix (n_items, dim), got an array of shape {data.shape}.{hint}"
            )
        if data.dtype == object:  # numbers held as Python objects convert; anything else is named
            try:
                data = data.astype(np.float64)
            except (TypeError, ValueError):
                raise InvalidInputError(f"{name}: expected real numbers, got objects that are not numbers") from None
        if np.issubdtype(data.dtype, np.complexfloating):
            raise InvalidInputError(f"{name}: Complex data not supported (got dtype {data.dtype})")
        if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)
                or data.dtype == np.bool_):
            raise InvalidInputError(
                f"{name}: expected real numbers, got dtype {data.dtype}"
                " (strings, objects or complex values cannot be quantized)"
            )
        if data.shape[1] == 0:
            raise InvalidInputError(f"{name}: 0 feature(s) (shape={data.shape}) while a minimum of 1 is required.")
        self.data = data
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.name = name

    @property
    def n_rows(self) -> int:
        return int(self.data.shape[0] if self.rows is None else self.rows.shape[0])

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of the view as a float32 array (copy)."""
        if self.rows is None:
            block = self.data[start:stop]
        else:
            block = self.data[self.rows[start:stop]]
        copied = np.array(block, dtype=np.float32, order="C", copy=True)  # writable, never a view
        if self.rows is None:
            release_mapped_rows(self.data, start, stop)
        elif stop > start:
            release_mapped_rows(self.data, int(self.rows[start]), int(self.rows[stop - 1]) + 1)
        return copied

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Rows at view positions ``indices`` as float32, shape (len(indices), dim)."""
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        source = indices[order] if self.rows is None else self.rows[indices[order]]
        gathered = np.empty((indices.shape[0], self.dim), dtype=np.float32)
        # in blocks, releasing what each block mapped: on a memmap every scattered row read maps
        # its whole fault-around window (64 KiB), which would otherwise map most of the file
        for begin in range(0, source.shape[0], _TAKE_BLOCK_ROWS):
            block = source[begin:begin + _TAKE_BLOCK_ROWS]
            gathered[begin:begin + block.shape[0]] = self.data[block]
            release_mapped_rows(self.data, int(block[0]), int(block[-1]) + 1)
        out = np.empty_like(gathered)
        out[order] = gathered
        return out

    def chunks(self, chunk_size: int, device: torch.device | str = "cpu") -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, tensor)`` with tensor of shape (<= chunk_size, dim) float32 on device."""
        for start in range(0, self.n_rows, chunk_size):
            block = self.read(start, min(start + chunk_size, self.n_rows))
            yield start, torch.from_numpy(block).to(device, non_blocking=True)

    def invalid_rows(self, chunk_size: int = 65536) -> np.ndarray:
        """View positions of rows holding NaN or Inf, int64 sorted."""
        bad = []
        for start in range(0, self.n_rows, chunk_size):
            block = self.read(start, min(start + chunk_size, self.n_rows))
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                bad.append(start + np.flatnonzero(~finite))
        return np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)

    def subset(self, positions: np.ndarray) -> "EmbeddingMatrix":
        """A view of the rows at the given (sorted) view positions."""
        base = np.arange(self.n_rows, dtype=np.int64) if self.rows is None else self.rows
        return EmbeddingMatrix(self.data, rows=base[np.asarray(positions, dtype=np.int64)], name=self.name)

    def without_rows(self, positions: np.ndarray) -> "EmbeddingMatrix":
        """A view with the given view positions removed (e.g. the invalid rows)."""
        keep = np.ones(self.n_rows, dtype=bool)
        keep[positions] = False
        base = np.arange(self.n_rows, dtype=np.int64) if self.rows is None else self.rows
        return EmbeddingMatrix(self.data, rows=base[keep], name=self.name)

    def moments(self, chunk_size: int = 65536) -> ColumnMoments:
        """Per-dimension mean and variance in float64, with NaN/Inf detection on the way."""
        total = np.zeros(self.dim)
        total_sq = np.zeros(self.dim)
        shift = None
        for start in range(0, self.n_rows, chunk_size):
            block = self.read(start, min(start + chunk_size, self.n_rows)).astype(np.float64)
            if shift is None:
                shift = block[0].copy()  # shifted sums avoid cancellation in the variance
            block -= shift
            total += block.sum(axis=0)
            total_sq += np.square(block).sum(axis=0)
        n = max(self.n_rows, 1)
        mean = total / n
        variance = np.maximum(total_sq / n - mean**2, 0.0)
        return ColumnMoments(self.n_rows, mean + (0.0 if shift is None else shift), variance)


def release_mapped_rows(data: np.ndarray, start: int, stop: int) -> None:
    """Drop rows ``[start, stop)`` of a read-only ``np.memmap`` from this process's resident
    memory once copied, so a sequential pass over a file larger than RAM keeps a bounded
    resident set (the pages stay in the OS file cache). A no-op for other arrays and for
    writable maps, whose pages may hold changes."""
    mapping = getattr(data, "_mmap", None)
    if (mapping is None or getattr(data, "mode", None) != "r" or not data.flags.c_contiguous
            or not hasattr(mapping, "madvise") or stop <= start):
        return
    row_bytes = data.strides[0]
    base = np.frombuffer(mapping, dtype=np.uint8).ctypes.data
    first = data.ctypes.data - base + start * row_bytes
    last = data.ctypes.data - base + stop * row_bytes
    first -= first % mmap.PAGESIZE
    last -= last % mmap.PAGESIZE  # the partial last page is still needed by the next chunk
    if last > first:
        mapping.madvise(mmap.MADV_DONTNEED, first, last - first)


def check_embeddings(
    X, *, name: str = "X", drop_invalid: bool = False, expected_dim: int | None = None,
    chunk_size: int = 65536, owner: str = "the tokenizer",
) -> tuple[EmbeddingMatrix, np.ndarray]:
    """Validate an embedding matrix and return ``(view, dropped_positions)``.

    Raises :class:`InvalidInputError` on a wrong shape or dtype, zero rows, a dimension other
    than ``expected_dim``, or NaN/Inf rows (naming the first ones) unless ``drop_invalid``,
    in which case those rows are left out of the view and their positions returned.
    """
    matrix = X if isinstance(X, EmbeddingMatrix) else EmbeddingMatrix(X, name=name)
    if matrix.n_rows == 0:
        raise InvalidInputError(f"{matrix.name}: has zero rows; nothing to quantize")
    if expected_dim is not None and matrix.dim != expected_dim:
        raise InvalidInputError(
            f"{matrix.name}: wrong embedding dimension: X has {matrix.dim} features, but {owner} is"
            f" expecting {expected_dim} features as input (fitted on dim={expected_dim})"
        )
    bad = matrix.invalid_rows(chunk_size)
    if bad.size:
        if not drop_invalid:
            named = ", ".join(str(int(i)) for i in bad[:_MAX_ROWS_NAMED])
            more = f" and {bad.size - _MAX_ROWS_NAMED} more" if bad.size > _MAX_ROWS_NAMED else ""
            raise InvalidInputError(
                f"{matrix.name}: {bad.size} row(s) contain NaN or Inf, first at row(s) {named}{more};"
                " clean them or pass drop_invalid=True (--drop-invalid) to skip them"
            )
        matrix = matrix.without_rows(bad)
        if matrix.n_rows == 0:
            raise InvalidInputError(f"{matrix.name}: every row contains NaN or Inf")
    return matrix, bad


def positive_int(value) -> bool:
    """True for an int > 0 (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def nonnegative_number(value) -> bool:
    """True for a real number >= 0 (not a bool)."""
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and value >= 0



def check_scale(moments, name: str) -> None:
    """Refuse data whose magnitude float32 arithmetic cannot handle (squares overflow or vanish),
    saying how to rescale it. ``moments``: the matrix's per-column mean and variance."""
    scale = float(np.sqrt(np.max(moments.variance + moments.mean**2)))
    if not np.isfinite(scale) or scale > MAX_SCALE:
        raise InvalidInputError(
            f"{name}: values reach a magnitude of ~{scale:.1e}; float32 products of numbers above ~{MAX_SCALE:.0e}"
            f" overflow. Divide the embeddings by a constant (e.g. {scale:.0e}) before fitting")
    if scale < MIN_SCALE:
        raise InvalidInputError(
            f"{name}: values are all below ~{scale:.1e}; their squares vanish in float32. Multiply the"
            f" embeddings by a constant (e.g. {1 / max(scale, 1e-300):.0e}) before fitting")
