"""Catalogues: items with content embeddings and (optionally) a label per item, by name.

Every study reads its items from here: the quantization studies measure tokenizers on a
catalogue's embeddings and use its labels for label lift and kNN purity; the CTR studies use the
same embeddings for the items of an interaction data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rqgmm.errors import InvalidInputError

CATALOGUES = ("ml-100k", "ml-1m", "clothing")


@dataclass(frozen=True)
class Catalogue:
    """name; embeddings: (n_items, dim) float32; labels: one label set per item or None;
    label_kind: what the labels are ("genres", "class"), None without labels."""

    name: str
    embeddings: np.ndarray
    labels: list | None
    label_kind: str | None

    @property
    def n_items(self) -> int:
        return int(self.embeddings.shape[0])


EMBEDDINGS = ("normalized", "raw")


def load_catalogue(name: str, progress: bool | None = None, embedding: str = "normalized") -> Catalogue:
    """A catalogue by name: "ml-100k" (1,682 movie titles with year and genres, MiniLM 384-d;
    labels = genres), "clothing" (22,642 clothing reviews, MiniLM 384-d;
    labels = product class), or the path of a Parquet data set YAML (its items; no labels).
    embedding: "normalized" (MiniLM's unit sentence vectors) or "raw" (its mean-pooled output before
    normalization) for the text catalogues; a data set's own embeddings are used as given."""
    from rqgmm.data.interactions import item_content, load_dataset

    if embedding not in EMBEDDINGS:
        raise InvalidInputError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    normalize = embedding == "normalized"

    if name in ("ml-100k", "ml-100k-no-genres"):
        from rqgmm.data.movielens import load_items

        return Catalogue(name, item_content(load_dataset(name), progress, normalize=normalize),
                         load_items()["genres"].tolist(), "genres")
    if name in ("ml-1m", "ml-1m-no-genres"):
        from rqgmm.data.movielens_1m import load_items_1m

        # the data set's items are load_items_1m()'s, in the same order: the genres line up
        return Catalogue(name, item_content(load_dataset(name), progress, normalize=normalize),
                         load_items_1m()["genres"].tolist(), "genres")
    if name == "clothing":
        from rqgmm.data.clothing import load_reviews, review_labels
        from rqgmm.data.text_encoder import TextEncoder

        reviews = load_reviews()
        # float32 everywhere: bf16 autocast is ~3x faster on CPUs with AMX but ~6x slower on CPUs
        # without bf16 instructions (measured: 64 long reviews 5 s in float32, 29 s in bf16 on a
        # 2-core AVX2 machine), and one precision keeps the figures the same across machines
        encoder = TextEncoder(progress=progress, normalize=normalize)
        return Catalogue(name, encoder.encode(reviews["text"].tolist()), review_labels(reviews), "class")
    if name.endswith((".yaml", ".yml")):
        dataset = load_dataset(name)
        return Catalogue(dataset.name, item_content(dataset, progress), None, None)
    raise InvalidInputError(f"catalogue must be one of {list(CATALOGUES)} or a data set .yaml, got {name!r}")
