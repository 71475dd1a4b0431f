"""Reading embeddings from ``.npy`` / Parquet and writing codes / reconstructions.

``.npy`` files are memory-mapped (never loaded whole, never unpickled). Parquet files hold an id
column and an embedding column of type ``list<float>`` or ``fixed_size_list<float>[dim]``;
null embeddings become NaN rows, which the NaN/Inf check then names (or drops).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rqgmm.errors import InvalidInputError
from rqgmm.io.atomic import atomic_path

LEVEL_COLUMN = "level_{}"


@dataclass
class EmbeddingTable:
    """embeddings: (n, dim) array or memmap; ids: (n,) array (row numbers for ``.npy``);
    id_name: the id column's name; source: the file read."""

    embeddings: np.ndarray
    ids: np.ndarray
    id_name: str
    source: str


def parquet_paths(path: str | Path) -> list[Path]:
    """The Parquet files ``path`` names: a file, a directory (its ``*.parquet`` files, hidden and
    ``_``-prefixed ones skipped) or a glob; sorted, so row order is the same on every run."""
    import glob

    text = str(path)
    if Path(text).is_file():  # a file whose name holds [, * or ? is that file, not a pattern
        return [Path(text)]
    if glob.has_magic(text):
        paths = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
    elif Path(text).is_dir():
        paths = sorted(p for p in Path(text).iterdir() if p.suffix.lower() in (".parquet", ".pq")
                       and not p.name.startswith((".", "_")) and p.is_file())
    else:
        paths = [Path(text)] if Path(text).is_file() else []
    if not paths:
        raise InvalidInputError(f"{text}: no such file, and no Parquet files in that directory or glob")
    return paths


def read_embeddings(path: str | Path, *, column: str | None = None, id_column: str | None = None,
                    memory_limit_bytes: int = 256 << 20) -> EmbeddingTable:
    """Read an embedding matrix from ``.npy`` (memory-mapped), a ``.parquet`` file, a directory of
    Parquet files or a glob of them. Parquet is read through ``pyarrow.dataset`` in record
    batches; a matrix larger than ``memory_limit_bytes`` is written batch by batch into a
    temporary ``.npy`` memmap (deleted when the matrix is), so memory stays bounded."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if not path.is_file():
            raise InvalidInputError(f"{path}: no such file")
        try:
            embeddings = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:  # a zero-byte or truncated file included
            raise InvalidInputError(f"{path}: not a readable .npy matrix ({exc or type(exc).__name__})") from None
        if embeddings.dtype.kind not in "fiub":
            raise InvalidInputError(f"{path}: expected real numbers, got dtype {embeddings.dtype}")
        if embeddings.ndim != 2:
            raise InvalidInputError(f"{path}: expected a 2-D matrix (n_items, dim), got shape {embeddings.shape}")
        return EmbeddingTable(embeddings, np.arange(embeddings.shape[0]), id_column or "row", str(path))
    if suffix in (".parquet", ".pq") or path.is_dir() or any(c in str(path) for c in "*?["):
        return _read_parquet(path, column, id_column, memory_limit_bytes)
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file")
    raise InvalidInputError(f"{path}: unsupported file type {suffix!r}; expected .npy, .parquet, a directory or"
                            " a glob of Parquet files")


def _is_vector_type(arrow_type: pa.DataType) -> bool:
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type)


def _is_numeric_vector_type(arrow_type: pa.DataType) -> bool:
    if not _is_vector_type(arrow_type):
        return False
    value = arrow_type.value_type
    return pa.types.is_floating(value) or pa.types.is_integer(value)


def _read_parquet(path: Path, column: str | None, id_column: str | None, memory_limit_bytes: int) -> EmbeddingTable:
    import pyarrow.dataset as ds

    paths = parquet_paths(path)
    try:
        dataset = ds.dataset([str(p) for p in paths], format="parquet")
        schema = dataset.schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInputError(f"{path}: not readable Parquet ({exc})") from None
    names = schema.names
    if column is None:
        vector_columns = [f.name for f in schema if _is_numeric_vector_type(f.type)]
        if len(vector_columns) != 1:
            raise InvalidInputError(
                f"{path}: cannot tell which column holds the embeddings (numeric list columns: {vector_columns},"
                f" all columns: {names}); name it with --column")
        column = vector_columns[0]
    if column not in names:
        raise InvalidInputError(f"{path}: no column {column!r}; columns are {names}")
    field_type = schema.field(column).type
    if not _is_vector_type(field_type) or not (pa.types.is_floating(field_type.value_type)
                                               or pa.types.is_integer(field_type.value_type)):
        raise InvalidInputError(
            f"{path}: column {column!r} has type {field_type}, expected a list of numbers (list<float>)")
    if id_column is None:  # never guess between several candidates
        obvious = [n for n in ("id", "item_id") if n in names]
        others = [n for n in names if n != column]
        if obvious:
            id_column = obvious[0]
        elif len(others) == 1:
            id_column = others[0]
        elif others:
            raise InvalidInputError(f"{path}: cannot tell which column identifies the rows (candidates: {others});"
                                    " name it with --id-column")
    if id_column is not None and id_column not in names:
        raise InvalidInputError(f"{path}: no id column {id_column!r}; columns are {names}")
    n_rows = dataset.count_rows()
    out, ids, dim, done = None, [], None, 0
    for batch in dataset.to_batches(columns=[column] + ([id_column] if id_column else []), batch_size=65536):
        if batch.num_rows == 0:
            continue
        vectors = batch.column(column)
        if dim is None and vectors.null_count < len(vectors):
            dim = int(np.bincount(pc.list_value_length(vectors).drop_null().to_numpy().astype(np.int64)).argmax())
        if dim is None:  # all-null batch before any vector: remember the rows as NaN later
            matrix = None
        else:
            matrix = list_array_to_matrix(vectors, path, column, dim=dim, first_row=done)
        if out is None and dim is not None:
            out = _matrix(n_rows, dim, memory_limit_bytes)
            out[:done] = np.nan
        if matrix is not None:
            out[done:done + batch.num_rows] = matrix
        if id_column:
            ids.append(batch.column(id_column).to_numpy(zero_copy_only=False))
        done += batch.num_rows
    if out is None:
        if n_rows == 0:
            raise InvalidInputError(f"{path}: holds no rows (column {column!r} is empty); nothing to read")
        raise InvalidInputError(f"{path}: column {column!r} holds no embeddings (all {n_rows} rows are null)")
    all_ids = np.concatenate(ids) if ids else np.arange(n_rows)
    return EmbeddingTable(out, all_ids, id_column or "row", str(path))


def _matrix(n_rows: int, dim: int, memory_limit_bytes: int) -> np.ndarray:
    """(n_rows, dim) float32 in memory, or a temporary ``.npy`` memmap above the limit."""
    if n_rows * dim * 4 <= memory_limit_bytes:
        return np.empty((n_rows, dim), dtype=np.float32)
    import shutil
    import tempfile
    import weakref

    directory = tempfile.mkdtemp(prefix="rqgmm-embeddings-")
    matrix = np.lib.format.open_memmap(Path(directory) / "embeddings.npy", mode="w+", dtype=np.float32,
                                       shape=(n_rows, dim))
    weakref.finalize(matrix, shutil.rmtree, directory, True)
    return matrix


def list_array_to_matrix(vectors: pa.Array, path: Path, column: str, *, dim: int | None = None,
                         first_row: int = 0) -> np.ndarray:
    """A list column as (n, dim) float32, null rows as NaN. ``dim``: the expected width (default:
    the most common length); ``first_row``: the global row number of the first row, for messages."""
    if isinstance(vectors, pa.ChunkedArray):
        vectors = vectors.combine_chunks()
    n = len(vectors)
    if n == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    null = vectors.is_null().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(vectors).to_numpy(zero_copy_only=False)
    if null.all():
        if dim is not None:
            return np.full((n, dim), np.nan, dtype=np.float32)
        raise InvalidInputError(f"{path}: column {column!r} holds no embeddings (all {n} rows are null)")
    if dim is None:
        dim = int(np.bincount(lengths[~null].astype(np.int64)).argmax())
    wrong = np.flatnonzero(~null & (lengths != dim))
    if wrong.size:
        raise InvalidInputError(
            f"{path}: column {column!r} row {first_row + int(wrong[0])} has {int(lengths[wrong[0]])} values,"
            f" expected {dim} like most rows ({wrong.size} row(s) differ)")
    out = np.full((n, dim), np.nan, dtype=np.float32)
    present = np.flatnonzero(~null)
    flat = pc.list_flatten(vectors.filter(pa.array(~null))).to_numpy(zero_copy_only=False)
    if flat.dtype == object:  # null values inside a list
        flat = np.array([np.nan if v is None else v for v in flat], dtype=np.float32)
    out[present] = flat.astype(np.float32).reshape(-1, dim)
    return out


CODES_DTYPE = np.int64  # codes are int64 everywhere: encode() results, Parquet columns, .npy files
CODE_SUFFIXES = (".parquet", ".npy", ".csv")
CODE_FORMATS = ("parquet", "npy", "csv")
STDOUT = "-"


def codes_format(path: str | Path, fmt: str | None = None) -> str:
    """The format codes are written in: ``fmt`` when given, else the extension of ``path``;
    ``-`` (standard output) needs ``fmt``."""
    if fmt is not None:
        if fmt not in CODE_FORMATS:
            raise InvalidInputError(f"format must be one of {CODE_FORMATS}, got {fmt!r}")
        return fmt
    if str(path) == STDOUT:
        raise InvalidInputError("writing codes to standard output (-o -) needs --format parquet, npy or csv")
    suffix = Path(path).suffix.lower()
    if suffix not in CODE_SUFFIXES:
        raise InvalidInputError(f"{path}: codes are written as .parquet, .npy or .csv (or pass --format); got the"
                                f" extension {suffix or '(none)'!r}")
    return suffix[1:]


def check_codes_path(path: str | Path, fmt: str | None = None) -> None:
    """Codes go to ``.parquet`` (id + level columns), ``.npy`` ((n, L) int64, rows in input order)
    or ``.csv`` (id + level columns, a header row), or to ``-`` with an explicit format."""
    codes_format(path, fmt)


SUFFIX_COLUMN = "suffix"  # the collision suffix of encode(..., collisions="suffix"): not a level
VERSION_KEY = b"rqgmm.tokenizer_version"  # Parquet schema metadata naming the tokenizer version


@dataclass
class CodesTable:
    """Codes read back from a file: codes (n, L) int64 (levels only, no suffix); ids (n,);
    id_name; tokenizer_version: the version that wrote them (None for files without one)."""

    codes: np.ndarray
    ids: np.ndarray
    id_name: str
    tokenizer_version: str | None


def codes_sidecar(path: str | Path) -> Path:
    """Where the identity of a ``.npy`` codes file is kept: ``<file>.json`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_codes(path: str | Path, codes: np.ndarray, ids: np.ndarray, id_name: str, *, n_levels: int | None = None,
                tokenizer_version: str | None = None, overwrite: bool = False, fmt: str | None = None) -> Path:
    """Write ``codes`` (n, L) or (n, L + 1) with a collision suffix: Parquet (the id column, then
    ``level_0 .. level_{L-1}`` and ``suffix``, int64, the tokenizer version in the schema
    metadata), ``.npy`` (the int64 matrix, rows in input order) or ``.csv`` (a header row, the
    id column then the code columns); a ``.npy`` or ``.csv`` file gets a ``<file>.json``
    sidecar naming the version and the columns. The format is ``fmt`` or the extension of
    ``path``; ``path`` ``-`` writes to standard output (no sidecar).
    n_levels: the tokenizer's levels (default: every column is a level)."""
    fmt = codes_format(path, fmt)
    codes = np.asarray(codes, dtype=CODES_DTYPE)
    n_levels = codes.shape[1] if n_levels is None else n_levels
    names = [LEVEL_COLUMN.format(level) for level in range(n_levels)] + [SUFFIX_COLUMN] * (codes.shape[1] - n_levels)
    if str(path) == STDOUT:
        _write_codes_to(sys.stdout.buffer, fmt, codes, ids, id_name, names, tokenizer_version)
        sys.stdout.flush()
        return Path(STDOUT)
    if fmt == "csv":
        sidecar = {"format": "rqgmm-codes", "tokenizer_version": tokenizer_version, "columns": [id_name, *names]}
        with atomic_path(path, overwrite=overwrite) as tmp, \
                atomic_path(codes_sidecar(path), overwrite=True) as tmp_sidecar:
            with open(tmp, "wb") as handle:
                _write_codes_to(handle, fmt, codes, ids, id_name, names, tokenizer_version)
            Path(tmp_sidecar).write_text(json.dumps(sidecar, indent=2))
        return Path(path)
    if fmt == "npy":
        sidecar = {"format": "rqgmm-codes", "tokenizer_version": tokenizer_version, "columns": names}
        with atomic_path(path, overwrite=overwrite) as tmp, \
                atomic_path(codes_sidecar(path), overwrite=True) as tmp_sidecar:
            with open(tmp, "wb") as handle:
                np.save(handle, codes, allow_pickle=False)
            Path(tmp_sidecar).write_text(json.dumps(sidecar, indent=2))
        return Path(path)
    columns = {id_name: ids, **{name: codes[:, j] for j, name in enumerate(names)}}
    table = pa.table(columns)
    if tokenizer_version is not None:
        table = table.replace_schema_metadata({VERSION_KEY: tokenizer_version.encode()})
    with atomic_path(path, overwrite=overwrite) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def _write_codes_to(handle, fmt: str, codes: np.ndarray, ids, id_name: str, names: list[str],
                    tokenizer_version: str | None) -> None:
    """Codes in ``fmt`` to a binary file object (standard output or a temporary file)."""
    if fmt == "npy":
        np.save(handle, codes, allow_pickle=False)
        return
    table = pa.table({id_name: ids, **{name: codes[:, j] for j, name in enumerate(names)}})
    if fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, handle, pacsv.WriteOptions(quoting_style="needed"))
        return
    if tokenizer_version is not None:
        table = table.replace_schema_metadata({VERSION_KEY: tokenizer_version.encode()})
    pq.write_table(table, handle)


def read_codes(path: str | Path, n_levels: int) -> CodesTable:
    """Read the first ``n_levels`` level columns of codes written by :func:`write_codes`
    (``.parquet`` or ``.npy``), with the ids and the tokenizer version they carry."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        return _read_npy_codes(path, n_levels)
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pacsv

        try:
            table = pacsv.read_csv(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInputError(f"{path}: not a readable CSV file ({exc})") from None
    else:
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInputError(f"{path}: not a readable Parquet file ({exc})") from None
    wanted = [LEVEL_COLUMN.format(level) for level in range(n_levels)]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise InvalidInputError(f"{path}: missing code column(s) {missing} for a {n_levels}-level tokenizer;"
                                f" columns are {table.column_names}")
    for name in wanted:
        if not pa.types.is_integer(table.schema.field(name).type):
            raise InvalidInputError(f"{path}: column {name!r} has type {table.schema.field(name).type}, expected int")
        if table.column(name).null_count:
            raise InvalidInputError(f"{path}: column {name!r} has {table.column(name).null_count} null code(s)")
    codes = np.stack([table.column(c).to_numpy() for c in wanted], axis=1).astype(np.int64)
    others = [c for c in table.column_names if c not in wanted and c != SUFFIX_COLUMN
              and not c.startswith("level_")]
    id_name = others[0] if others else "row"
    ids = table.column(id_name).to_numpy(zero_copy_only=False) if others else np.arange(len(codes))
    version = (table.schema.metadata or {}).get(VERSION_KEY)
    version = None if version is None else version.decode()
    if path.suffix.lower() == ".csv" and codes_sidecar(path).is_file():
        version = _sidecar_version(codes_sidecar(path))
    return CodesTable(codes, ids, id_name, version)


def _read_npy_codes(path: Path, n_levels: int) -> CodesTable:
    try:
        codes = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidInputError(f"{path}: not a readable .npy file ({exc})") from None
    if codes.ndim != 2 or codes.dtype.kind not in "iu":
        raise InvalidInputError(f"{path}: expected an (n, {n_levels}) integer matrix of codes, got shape"
                                f" {codes.shape} {codes.dtype}")
    if codes.shape[1] < n_levels:
        raise InvalidInputError(f"{path}: {codes.shape[1]} code column(s) for a {n_levels}-level tokenizer")
    sidecar = codes_sidecar(path)
    version = _sidecar_version(sidecar) if sidecar.is_file() else None
    return CodesTable(np.asarray(codes[:, :n_levels], dtype=np.int64), np.arange(len(codes)), "row", version)


def _sidecar_version(sidecar: Path) -> str | None:
    try:
        meta = json.loads(sidecar.read_text())
        version = meta.get("tokenizer_version") if isinstance(meta, dict) else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{sidecar}: unreadable codes sidecar ({exc})") from None
    if version is not None and not isinstance(version, str):
        raise InvalidInputError(f"{sidecar}: tokenizer_version must be a string, got {version!r}")
    return version


def write_matrix(path: str | Path, matrix: np.ndarray, ids: np.ndarray | None = None, id_name: str = "id",
                 *, overwrite: bool = False) -> Path:
    """Write a float matrix as ``.npy`` or as Parquet (id + ``embedding`` fixed-size list)."""
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path, overwrite=overwrite) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as handle:
                np.save(handle, matrix, allow_pickle=False)
        elif suffix in (".parquet", ".pq"):
            flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
            vectors = pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])
            ids = np.arange(len(matrix)) if ids is None else ids
            pq.write_table(pa.table({id_name: ids, "embedding": vectors}), tmp)
        else:
            raise InvalidInputError(f"{path}: unsupported output type {suffix!r}; expected .npy or .parquet")
    return path


def read_labels(path: str | Path, column: str, ids: np.ndarray, id_name: str) -> list:
    """Item labels aligned with embedding rows: a list (one label or list of labels per item).

    Rows are matched by the id column ``id_name`` when the label file has it, else by position
    (then the row counts must agree). In CSV files a list of labels is written ``a|b|c``."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = pq.read_table(path).to_pandas()
    elif path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
        if column in frame:
            frame[column] = frame[column].map(lambda v: v.split("|") if isinstance(v, str) else v)
    else:
        raise InvalidInputError(f"{path}: unsupported label file type {path.suffix!r}; expected .parquet or .csv")
    if column not in frame:
        raise InvalidInputError(f"{path}: no label column {column!r}; columns are {list(frame.columns)}")
    if id_name in frame.columns:
        by_id = dict(zip(frame[id_name].tolist(), frame[column].tolist()))
        missing = [i for i in ids.tolist() if i not in by_id]
        if missing:
            raise InvalidInputError(f"{path}: no labels for {len(missing)} item(s), first {id_name}={missing[0]!r}")
        values = [by_id[i] for i in ids.tolist()]
    else:
        if len(frame) != len(ids):
            raise InvalidInputError(f"{path}: {len(frame)} label rows for {len(ids)} embeddings and no shared"
                                    f" id column {id_name!r} to align them")
        values = frame[column].tolist()
    return [list(v) if isinstance(v, np.ndarray) else v for v in values]
