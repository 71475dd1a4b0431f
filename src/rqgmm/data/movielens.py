"""MovieLens-100k read from the files that ship in ``recbole==1.2.1`` (not redistributed here).

The files are RecBole atomic files: tab-separated, a header of ``name:type`` fields, read with
``quoting=csv.QUOTE_NONE`` because titles contain quotes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from rqgmm.data.packages import package_dir

RECBOLE_HINT = "pip install --no-deps recbole==1.2.1"


def movielens_dir() -> Path:
    return package_dir("recbole", RECBOLE_HINT) / "dataset_example" / "ml-100k"


def read_atomic_file(path: Path) -> pd.DataFrame:
    """A RecBole atomic file as a DataFrame whose columns lose their ``:type`` suffix."""
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    frame.columns = [name.split(":")[0] for name in frame.columns]
    return frame


def load_items() -> pd.DataFrame:
    """The 1,682 items: ``item_id`` (int), ``title``, ``year`` (Int64, missing allowed),
    ``genres`` (list of str) and ``text`` ("Title (year). Genres: a, b"), sorted by item_id."""
    frame = read_atomic_file(movielens_dir() / "ml-100k.item")
    items = pd.DataFrame({
        "item_id": frame["item_id"].astype(int),
        "title": frame["movie_title"].str.strip(),
        "year": pd.to_numeric(frame["release_year"], errors="coerce").astype("Int64"),
        "genres": frame["class"].str.split(),
    })
    items["text"] = [item_text(t, y, g) for t, y, g in zip(items["title"], items["year"], items["genres"])]
    return items.sort_values("item_id").reset_index(drop=True)


def item_text(title: str, year, genres: list[str]) -> str:
    year_part = f" ({int(year)})" if pd.notna(year) else ""
    return f"{title}{year_part}. Genres: {', '.join(genres) if genres else 'unknown'}"


def items_table(progress: bool | None = None):
    """MovieLens-100k items with their MiniLM text embeddings as a pyarrow Table: item_id, title,
    year (int64, null when unknown), genres (list of strings), text, embedding (fixed-size list of
    float32). For local use only: MovieLens' terms forbid redistributing it."""
    import pyarrow as pa

    from rqgmm.data.text_encoder import TextEncoder

    items = load_items()
    vectors = TextEncoder(progress=progress).encode(items["text"].tolist())
    return pa.table({
        "item_id": items["item_id"].to_numpy(), "title": items["title"].tolist(),
        "year": pa.array(items["year"].astype(object).where(items["year"].notna(), None).tolist(), pa.int64()),
        "genres": items["genres"].tolist(), "text": items["text"].tolist(),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
    })
