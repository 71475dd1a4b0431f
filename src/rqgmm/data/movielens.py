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
