"""Ray Dataset blocks as a residual stream: fit and encode residual tokenizers on Ray.

The dataset is materialized once; its embedding column becomes one float32 matrix per block in
Ray's object store (``blocks``, in the dataset's order, with row offsets). Every pass of a level
(the start's assignment, each EM or Lloyd iteration) is one remote task per block that recomputes
the block's residuals from the levels fitted so far (the tokenizer is broadcast once per pass)
and returns the block's sufficient statistics; the driver adds them in block order and runs the
M-step. Initialization draws the same row positions as a single-machine fit with the same seed,
so both start from the same parameters and differ only by the order of floating-point sums.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from rqgmm.errors import InvalidInputError, RqgmmError
from rqgmm.quantize.residuals import ResidualSource, sample_positions

# Test hook, fault injection: when set to a path that does not exist yet, the first block task to
# see it creates the file and kills its own worker process (the engine must retry the task).
FAULT_ONCE_ENV = "RQGMM_FAULT_ONCE"


def require_ray():
    """Import Ray or raise a clear error naming the extra."""
    try:
        import ray
    except ImportError:
        raise RqgmmError("the Ray engine needs Ray, which is not installed: pip install 'rqgmm[ray]'") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, verbose: bool = False) -> Iterator[Any]:
    """Connect to the cluster at ``address`` ("auto" or host:port), or start a local instance
    (dashboard off) and stop it on exit. Ray's INFO logs are shown only when ``verbose``."""
    import logging

    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        level = logging.INFO if verbose else logging.WARNING
        if address:
            ray.init(address=address, log_to_driver=verbose, logging_level=level)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=verbose,
                     logging_level=level)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        target = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise RqgmmError(f"could not start or reach {target}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _maybe_inject_fault() -> None:
    marker = os.environ.get(FAULT_ONCE_ENV)
    if marker and not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write(str(os.getpid()))
        os._exit(1)


def _block_matrix(table, column: str) -> np.ndarray:
    """A block's embedding column (Arrow list / fixed-size list) as (rows, dim) float32."""
    import pyarrow as pa

    from rqgmm.io.tables import list_array_to_matrix

    vectors = table.column(column)
    vectors = vectors.combine_chunks() if isinstance(vectors, pa.ChunkedArray) else vectors
    return list_array_to_matrix(vectors, "dataset block", column)


def _block_summary(matrix: np.ndarray) -> dict:
    finite = np.isfinite(matrix).all(axis=1)
    bad = np.flatnonzero(~finite)
    good = matrix[finite].astype(np.float64)
    return {"rows": int(matrix.shape[0]), "dim": int(matrix.shape[1]) if matrix.ndim == 2 else 0,
            "invalid": int(bad.size), "first_invalid": int(bad[0]) if bad.size else -1,
            "sum": good.sum(0), "square_sum": np.square(good).sum(0)}


def _reduce_block(matrix: np.ndarray, tokenizer, level: int, function: Callable, chunk_rows: int):
    _maybe_inject_fault()
    total = None
    with torch.inference_mode():
        for start in range(0, matrix.shape[0], chunk_rows):
            chunk = torch.from_numpy(np.array(matrix[start:start + chunk_rows], dtype=np.float32))
            part = function(tokenizer.residual_chain(chunk, level)[1])
            total = part if total is None else total + part
    return total


def _gather_rows(matrix: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.array(matrix[positions], dtype=np.float32)


def _encode_batch(batch: dict, tokenizer, column: str, id_column: str | None) -> dict:
    import pyarrow as pa

    from rqgmm.io.tables import LEVEL_COLUMN, list_array_to_matrix

    values = batch[column]
    matrix = (np.asarray(values, dtype=np.float32) if isinstance(values, np.ndarray) and values.ndim == 2
              else list_array_to_matrix(pa.array(list(values)), "dataset batch", column))
    codes = tokenizer.encode(matrix)
    out = {} if id_column is None else {id_column: batch[id_column]}
    for level in range(codes.shape[1]):
        out[LEVEL_COLUMN.format(level)] = codes[:, level].astype(np.int64)
    return out


def ordered(dataset):
    """``dataset`` executing with its rows in order. A Dataset keeps the DataContext current when
    it was created (later changes to ``DataContext.get_current()`` do not reach it), so the option
    is set on the dataset's own context; without it blocks come out in completion order."""
    dataset.context.execution_options.preserve_order = True
    return dataset


def read_parquet_dataset(pattern: str):
    """A Ray Dataset of the Parquet files matching ``pattern`` (a file, a directory or a glob),
    with rows in sorted path order (then file order), as a single-machine read would have them."""
    import glob

    ray = require_ray()
    if glob.has_magic(pattern):
        paths = sorted(glob.glob(pattern))
    elif os.path.isdir(pattern):
        paths = sorted(os.path.join(pattern, name) for name in os.listdir(pattern)
                       if name.endswith(".parquet") and not name.startswith((".", "_")))
    else:
        paths = [pattern] if os.path.exists(pattern) else []
    if not paths:
        raise InvalidInputError(f"{pattern}: no such Parquet file, or no .parquet files in that directory or glob")
    # the sorted path list, read with every operator keeping order: row positions mean the same
    # as on one machine (a union of one read per file keeps order too but schedules 4 operators
    # per file and was 10x slower on 4 small files)
    return ordered(ray.data.read_parquet(paths if len(paths) > 1 else paths[0]))


def embedding_column(dataset, column: str | None) -> str:
    """``column``, checked, or the dataset's only numeric list column."""
    import pyarrow as pa

    schema = dataset.schema()
    names = list(schema.names)
    if column is not None:
        if column not in names:
            raise InvalidInputError(f"dataset has no column {column!r}; columns are {names}")
        return column
    candidates = [name for name, kind in zip(names, schema.types)
                  if isinstance(kind, pa.DataType) and (pa.types.is_list(kind) or pa.types.is_large_list(kind)
                                                        or pa.types.is_fixed_size_list(kind))
                  and (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type))]
    if len(candidates) != 1:
        raise InvalidInputError(f"cannot tell which column holds the embeddings (numeric list columns: {candidates},"
                                f" all columns: {names}); name it with --column")
    return candidates[0]


class RayBlocks:
    """The embedding column of a materialized Ray Dataset as ordered float32 blocks."""

    def __init__(self, dataset, column: str):
        ray = require_ray()
        if column not in dataset.schema().names:
            raise InvalidInputError(f"dataset has no column {column!r}; columns are {dataset.schema().names}")
        # rows in the dataset's order (files in path order), so positions mean what they mean on
        # one machine and the per-block sums have a fixed order
        arrow_refs = ordered(dataset).select_columns([column]).materialize().to_arrow_refs()
        to_matrix = ray.remote(_block_matrix)
        self.refs = [to_matrix.remote(ref, column) for ref in arrow_refs]
        summaries = ray.get([ray.remote(_block_summary).remote(ref) for ref in self.refs])
        keep = [i for i, s in enumerate(summaries) if s["rows"] > 0]
        self.refs = [self.refs[i] for i in keep]
        summaries = [summaries[i] for i in keep]
        if not summaries:
            raise InvalidInputError("dataset has zero rows; nothing to quantize")
        dims = {s["dim"] for s in summaries}
        if len(dims) != 1:
            raise InvalidInputError(f"dataset blocks disagree on the embedding dimension: {sorted(dims)}")
        self.dim = dims.pop()
        self.lengths = np.array([s["rows"] for s in summaries], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        invalid = sum(s["invalid"] for s in summaries)
        if invalid:
            block = next(i for i, s in enumerate(summaries) if s["invalid"])
            row = int(self.offsets[block] + summaries[block]["first_invalid"])
            raise InvalidInputError(f"dataset: {invalid} row(s) contain NaN or Inf, first at row {row}; clean them"
                                    " before fitting on Ray")
        n = self.n_rows
        mean = sum(s["sum"] for s in summaries) / n
        variance = sum(s["square_sum"] for s in summaries) / n - mean**2
        self.constant = not np.any(variance > 1e-12 * np.maximum(mean**2, 1.0))

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])


class RayResidualStream(ResidualSource):
    """A :class:`rqgmm.quantize.residuals.ResidualSource` over Ray blocks: every reduction is one
    task per block that recomputes the block's residuals (codes of earlier levels are not kept)."""

    def __init__(self, tokenizer, blocks: RayBlocks, max_retries: int = 3, runtime_env: dict | None = None):
        ray = require_ray()
        self.ray = ray
        self.tokenizer = tokenizer
        self.blocks = blocks
        self.level = 0
        options = {"max_retries": max_retries, **({"runtime_env": runtime_env} if runtime_env else {})}
        self._reduce = ray.remote(_reduce_block).options(**options)
        self._gather = ray.remote(_gather_rows).options(**options)

    @property
    def n_rows(self) -> int:
        return self.blocks.n_rows

    @property
    def dim(self) -> int:
        return self.blocks.dim

    def reduce(self, function: Callable[[torch.Tensor], Any]) -> Any:
        tokenizer = self.ray.put(self.tokenizer)
        parts = self.ray.get([self._reduce.remote(ref, tokenizer, self.level, function, self.tokenizer.batch_size)
                              for ref in self.blocks.refs])
        total = None
        for part in parts:  # block order: a fixed summation order for a given dataset
            total = part if total is None else total + part
        return total

    def sample(self, size: int, rng: np.random.Generator) -> torch.Tensor:
        """The rows a single-machine fit with the same ``rng`` state would draw: (m, dim)."""
        positions = sample_positions(self.n_rows, size, rng)
        block_of = np.searchsorted(self.blocks.offsets, positions, side="right") - 1
        tasks = [self._gather.remote(self.blocks.refs[b], positions[block_of == b] - self.blocks.offsets[b])
                 for b in np.unique(block_of)]
        rows = torch.from_numpy(np.concatenate(self.ray.get(tasks)))
        with torch.inference_mode():
            return self.tokenizer.residual_chain(rows, self.level)[1]

    def store_codes(self, level: int) -> None:
        """Nothing to store: block tasks recompute earlier levels' codes."""


def fit_on_ray(tokenizer, dataset, column: str, *, max_retries: int = 3, runtime_env: dict | None = None):
    """Fit an :class:`~rqgmm.RQGMM` or :class:`~rqgmm.RQKMeans` on ``dataset`` (a Ray Dataset
    whose ``column`` holds the embeddings as lists of numbers); returns the fitted tokenizer.

    max_retries: times Ray re-runs a block task whose worker died; runtime_env: Ray runtime
    environment of the block tasks (e.g. environment variables)."""
    from rqgmm.quantize.levelwise import LevelwiseTokenizer

    if not isinstance(tokenizer, LevelwiseTokenizer):  # levels fitted one after the other, from a source
        raise InvalidInputError(f"the Ray engine fits tokenizers whose levels are fitted in order (RQGMM,"
                                f" RQKMeans), not {type(tokenizer).__name__}")
    tokenizer.validate_params()
    if str(tokenizer.device) != "cpu":
        raise InvalidInputError("the Ray engine runs block tasks on CPU workers; use device='cpu'")
    blocks = RayBlocks(dataset, column)
    if blocks.constant:
        raise InvalidInputError("dataset: every row is identical (constant data); there is nothing to quantize")
    return tokenizer.fit_source(RayResidualStream(tokenizer, blocks, max_retries, runtime_env))


def encode_on_ray(tokenizer, dataset, column: str, output: str, id_column: str | None = None) -> None:
    """Codes of every row of ``dataset`` written as Parquet files under ``output``: the id column
    (when given) and ``level_0 .. level_{L-1}`` (int64, as everywhere). A ``map_batches`` over the dataset."""
    require_ray()
    tokenizer.check_fitted()
    names = dataset.schema().names
    for name in (column, id_column):
        if name is not None and name not in names:
            raise InvalidInputError(f"dataset has no column {name!r}; columns are {names}")
    quiet = copy.copy(tokenizer)
    quiet.progress = False
    columns = [column] + ([id_column] if id_column else [])
    encoded = ordered(dataset).select_columns(columns).map_batches(
        _encode_batch, fn_kwargs={"tokenizer": quiet, "column": column, "id_column": id_column},
        batch_format="numpy", batch_size=tokenizer.batch_size)
    encoded.write_parquet(output)
