"""Features for CTR models: vocabularies, standardized numerics, item-side tables, histories.

Every interaction becomes
- ``context`` (n, F_c) int64: user id and each categorical column, index 0 = out of vocabulary;
- ``numeric`` (n, F_n) float32: numeric columns standardized with training statistics;
- ``item`` (n,) int64: the item's row in the item tables (0 = an item without content);
- ``history`` (n, H) int64: item rows of the user's last ``H`` positive interactions before this
  one (0 = padding), for DIN.
Item-side fields are looked up from ``item_fields`` (n_items + 1, F_i): the item-id vocabulary
index, then (feature sets with ``sid``) the semantic ID as ``sid_representation`` says: "level",
one column per level holding ``code + 1``; "prefix", one column per level holding the prefix
(c_1..c_l) of the code up to that level (exact while the prefix space fits ``prefix_buckets``,
hashed into that many buckets above, as "Better Generalization with Semantic IDs", RecSys 2024);
"level+prefix", both. Semantic IDs use the whole code space as vocabulary, so an item never seen
in training still has meaningful content fields. ``item_content`` (n_items + 1, dim) holds raw content embeddings for
feature sets with ``emb``. With "level" fields, ``sid_init="codewords"`` keeps each level's codewords
so a code's embedding starts at its codeword's projection, and ``soft_top_k`` > 0 keeps an RQ-GMM's
top-k posterior components per level (soft IDs); see :mod:`rqgmm.ctr.item_tables`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from rqgmm.ctr.item_tables import ItemTables
from rqgmm.ctr.names import (  # also importable from here
    DEFAULT_PREFIX_BUCKETS,
    FEATURE_SETS,
    MISSING_ITEM_POLICIES,
    SID_INITS,
    SID_REPRESENTATIONS,
)
from rqgmm.data.interactions import CTRDataset
from rqgmm.errors import InvalidInputError


def prefix_fields(codes: np.ndarray, codebook_sizes: list[int], buckets: int) -> np.ndarray:
    """One field per level holding the code's *prefix* up to that level: (n, L) int64 in
    ``[0, cardinality_l)``; see :func:`prefix_cardinalities`.

    Level l's prefix (c_1, ..., c_l) is its mixed-radix number ``sum_j c_j * prod_{i>j} K_i``: an
    exact index when the prefix space ``prod_{j<=l} K_j`` has at most ``buckets`` values, else that
    number hashed (splitmix64, deterministic and platform-independent) into ``buckets`` buckets.
    """
    codes = np.asarray(codes, dtype=np.int64)
    out = np.empty_like(codes)
    number = np.zeros(len(codes), dtype=np.uint64)
    space = 1
    for level, size in enumerate(codebook_sizes):
        number = number * np.uint64(size) + codes[:, level].astype(np.uint64)
        space *= int(size)
        out[:, level] = number.astype(np.int64) if space <= buckets else (_splitmix64(number, level) % np.uint64(buckets)).astype(np.int64)
    return out


def prefix_cardinalities(codebook_sizes: list[int], buckets: int) -> list[int]:
    """Values each prefix field can take (without the out-of-vocabulary 0)."""
    out, space = [], 1
    for size in codebook_sizes:
        space *= int(size)
        out.append(min(space, buckets))
    return out


def semantic_id_fields(codes: np.ndarray, codebook_sizes: list[int], representation: str = "level",
                       prefix_buckets: int = DEFAULT_PREFIX_BUCKETS) -> tuple[np.ndarray, list[str], list[int]]:
    """The semantic-ID fields a CTR model embeds, as ``rqgmm ctr train`` builds them: ``(fields
    (n, F) int64, names (F,), cardinalities (F,))``. Per level ``code + 1`` ("level": names
    ``sid_0..``), and/or the prefix up to each level ``prefix + 1`` ("prefix": ``sid_prefix_0..``,
    hashed into ``prefix_buckets`` above that size); 0 is left for an unknown item, so a field's
    vocabulary is ``cardinality`` values (0 included). Refuses codes outside ``codebook_sizes``."""
    if representation not in SID_REPRESENTATIONS:
        raise InvalidInputError(f"representation must be one of {SID_REPRESENTATIONS}, got {representation!r}")
    codes = np.asarray(codes, dtype=np.int64)
    sizes = [int(k) for k in codebook_sizes]
    if codes.ndim != 2 or codes.shape[1] != len(sizes):
        raise InvalidInputError(f"semantic IDs: expected (n, {len(sizes)}) codes, got {codes.shape}")
    outside = (codes < 0) | (codes >= np.asarray(sizes, dtype=np.int64)[None, :])
    if outside.any():
        row, level = map(int, np.argwhere(outside)[0])
        raise InvalidInputError(f"semantic IDs: row {row} has code {int(codes[row, level])} at level {level},"
                                f" outside the codebook size {sizes[level]} (another tokenizer?)")
    columns, names, cards = [], [], []
    if "level" in representation.split("+"):
        columns.append(codes + 1)
        names += [f"sid_{level}" for level in range(len(sizes))]
        cards += [k + 1 for k in sizes]
    if "prefix" in representation.split("+"):
        columns.append(prefix_fields(codes, sizes, prefix_buckets) + 1)
        names += [f"sid_prefix_{level}" for level in range(len(sizes))]
        cards += [k + 1 for k in prefix_cardinalities(sizes, prefix_buckets)]
    return np.concatenate(columns, axis=1), names, cards


def _splitmix64(values: np.ndarray, salt: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15) * np.uint64(salt + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class Vocabulary:
    """Values seen at least ``min_count`` times in training, indexed from 1; 0 is the bucket of
    unseen and rare values."""

    def __init__(self, values: list[str]):
        self.values = list(values)
        self._index = pd.Index(self.values)

    @classmethod
    def fit(cls, column: pd.Series, min_count: int = 1) -> "Vocabulary":
        counts = column.astype(str).value_counts()
        return cls(sorted(counts.index[counts >= min_count].tolist()))

    def __len__(self) -> int:
        return len(self.values) + 1

    def transform(self, column: pd.Series | np.ndarray) -> np.ndarray:
        positions = self._index.get_indexer(pd.Index(np.asarray(column, dtype=str)))
        return (positions + 1).astype(np.int64)


@dataclass(frozen=True)
class FeatureLayout:
    """What a model needs to size its layers. Cardinalities include the out-of-vocabulary 0."""

    context_fields: tuple[str, ...]
    context_cardinalities: tuple[int, ...]
    item_fields: tuple[str, ...]
    item_cardinalities: tuple[int, ...]
    n_numeric: int
    content_dim: int
    history_length: int

    def to_json(self) -> dict:
        return asdict(self)


class FeatureEncoder:
    """Fits vocabularies and statistics on the training rows; turns any rows into model inputs.

    feature_set: "id", "emb", "sid" or "sid+emb". min_count: a categorical value needs this many
    training rows to get its own index. history_length: items kept for DIN (0: none).
    missing_items: "error" (an interaction whose item has no content stops the run) or "zero"
    (such items get zero content and out-of-vocabulary semantic IDs; their count is reported).
    sid_init: "random" (a code's embedding is a learned row) or "codewords" (the learned row plus
    the code's codeword through a learned projection, the ``emb`` projection when the feature set
    has one of the same width). soft_top_k: 0 (hard codes) or k: each level's field is the
    posterior-weighted sum of its top-k components' embeddings (RQ-GMM), the posterior tempered by
    soft_temperature (> 1: softer). Both need "level" fields.
    """

    def __init__(self, feature_set: str = "id", *, min_count: int = 1, history_length: int = 20,
                 missing_items: str = "error", sid_representation: str = "level",
                 prefix_buckets: int = DEFAULT_PREFIX_BUCKETS, sid_init: str = "random",
                 soft_top_k: int = 0, soft_temperature: float = 1.0):
        if feature_set not in FEATURE_SETS:
            raise InvalidInputError(f"feature set must be one of {FEATURE_SETS}, got {feature_set!r}")
        if missing_items not in MISSING_ITEM_POLICIES:
            raise InvalidInputError(f"missing_items must be one of {MISSING_ITEM_POLICIES}, got {missing_items!r}")
        if sid_representation not in SID_REPRESENTATIONS:
            raise InvalidInputError(f"sid_representation must be one of {SID_REPRESENTATIONS},"
                                    f" got {sid_representation!r}")
        if isinstance(prefix_buckets, bool) or not isinstance(prefix_buckets, int) or prefix_buckets < 1:
            raise InvalidInputError(f"prefix_buckets must be an int >= 1, got {prefix_buckets!r}")
        if sid_init not in SID_INITS:
            raise InvalidInputError(f"sid_init must be one of {SID_INITS}, got {sid_init!r}")
        if isinstance(soft_top_k, bool) or not isinstance(soft_top_k, int) or soft_top_k < 0:
            raise InvalidInputError(f"soft_top_k must be an int >= 0, got {soft_top_k!r}")
        if isinstance(soft_temperature, bool) or not isinstance(soft_temperature, (int, float)) or \
                not np.isfinite(soft_temperature) or soft_temperature <= 0:
            raise InvalidInputError(f"soft_temperature must be a finite number > 0, got {soft_temperature!r}")
        if (sid_init != "random" or soft_top_k) and sid_representation != "level":
            raise InvalidInputError(f"sid_init={sid_init!r} and soft_top_k={soft_top_k} act on per-level code"
                                    f" embeddings: they need sid_representation 'level', got {sid_representation!r}")
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise InvalidInputError(f"min_count must be an int >= 1, got {min_count!r}")
        if isinstance(history_length, bool) or not isinstance(history_length, int) or history_length < 0:
            raise InvalidInputError(f"history_length must be an int >= 0, got {history_length!r}")
        self.feature_set = feature_set
        self.min_count = min_count
        self.history_length = history_length
        self.missing_items = missing_items
        self.sid_representation = sid_representation
        self.prefix_buckets = prefix_buckets
        self.sid_init = sid_init
        self.soft_top_k = soft_top_k
        self.soft_temperature = float(soft_temperature)
        self.sid_codewords: list[np.ndarray] | None = None
        self.sid_soft_index: np.ndarray | None = None
        self.sid_soft_weight: np.ndarray | None = None

    @property
    def uses_sid(self) -> bool:
        return "sid" in self.feature_set

    @property
    def uses_content(self) -> bool:
        return "emb" in self.feature_set

    def fit(self, dataset: CTRDataset, train_rows: np.ndarray, *, item_codes: np.ndarray | None = None,
            codebook_sizes: list[int] | None = None, content: np.ndarray | None = None,
            codewords: list[np.ndarray] | None = None,
            soft: tuple[np.ndarray, np.ndarray] | None = None) -> "FeatureEncoder":
        """item_codes: (n_items, L) semantic IDs aligned with ``dataset.items`` (needed for sid
        sets); codebook_sizes: K per level; content: (n_items, dim) (needed for emb sets);
        codewords: L arrays (K_l, D) (needed with ``sid_init="codewords"``); soft: top-k
        components and weights (n_items, L, k) each (needed with ``soft_top_k``)."""
        train = dataset.interactions.iloc[train_rows]
        self.categorical = list(dataset.categorical)
        self.numeric = list(dataset.numeric)
        self.vocabularies = {name: Vocabulary.fit(train[name], self.min_count)
                             for name in ("user_id", *self.categorical, "item_id")}
        values = train[self.numeric].to_numpy(np.float64) if self.numeric else np.zeros((len(train), 0))
        self.numeric_mean = np.nan_to_num(np.nanmean(values, axis=0)) if len(values) else np.zeros(0)
        std = np.nanstd(values, axis=0) if len(values) else np.zeros(0)
        self.numeric_scale = np.where(np.nan_to_num(std) > 0, np.nan_to_num(std), 1.0)
        self.item_ids = pd.Index(dataset.items["item_id"].astype(str))
        self.n_missing_items = self._check_items(dataset)
        self.sid_sizes: list[int] = []
        if self.uses_sid:
            if item_codes is None or codebook_sizes is None:
                raise InvalidInputError(f"feature set {self.feature_set!r} needs semantic IDs (pass a tokenizer)")
            self.sid_sizes = [int(k) for k in codebook_sizes]
        self.item_fields = self.item_field_table(item_codes if self.uses_sid else None)
        if self.uses_sid:
            self._keep_code_tables(codewords, soft)
        self.item_content = None
        if self.uses_content:
            if content is None:
                raise InvalidInputError(f"feature set {self.feature_set!r} needs item content embeddings")
            bad = np.flatnonzero(~np.isfinite(np.asarray(content, np.float32)).all(axis=1))
            if bad.size:
                raise InvalidInputError(f"{dataset.name}: the content embedding of item {self.item_ids[bad[0]]!r}"
                                        f" (item row {int(bad[0])}) holds NaN or Inf ({bad.size} such item(s));"
                                        " clean the item embeddings before training")
            self.item_content = np.concatenate([np.zeros((1, content.shape[1]), np.float32),
                                                np.asarray(content, np.float32)])
        return self

    def _keep_code_tables(self, codewords: list[np.ndarray] | None,
                          soft: tuple[np.ndarray, np.ndarray] | None) -> None:
        sizes = self.sid_sizes
        if self.sid_init == "codewords":
            if codewords is None or len(codewords) != len(sizes):
                raise InvalidInputError(f"sid_init='codewords' needs the tokenizer's {len(sizes)} codebooks")
            tables = []
            for level, (codebook, size) in enumerate(zip(codewords, sizes)):
                codebook = np.asarray(codebook, np.float32)
                if codebook.ndim != 2 or len(codebook) != size:
                    raise InvalidInputError(f"codewords of level {level}: expected ({size}, D), got {codebook.shape}")
                tables.append(np.concatenate([np.zeros((1, codebook.shape[1]), np.float32), codebook]))
            self.sid_codewords = tables
        if self.soft_top_k:
            n_items, k = len(self.item_ids), self.soft_top_k
            if soft is None:
                raise InvalidInputError(f"soft_top_k={k} needs soft semantic IDs (a probabilistic tokenizer)")
            index, weight = (np.asarray(a) for a in soft)
            if index.shape != (n_items, len(sizes), k) or weight.shape != index.shape:
                raise InvalidInputError(f"soft semantic IDs: expected ({n_items}, {len(sizes)}, {k}) components and"
                                        f" weights, got {index.shape} and {weight.shape}")
            self.sid_columns(index[:, :, 0])  # range check, by the first component
            unknown_index = np.zeros((1, len(sizes), k), np.int64)
            unknown_weight = np.zeros((1, len(sizes), k), np.float32)
            unknown_weight[..., 0] = 1.0  # the unknown item: all weight on the out-of-vocabulary 0
            self.sid_soft_index = np.concatenate([unknown_index, index.astype(np.int64) + 1])
            self.sid_soft_weight = np.concatenate([unknown_weight, weight.astype(np.float32)])

    @property
    def item_tables(self) -> ItemTables:
        """The item-side tables of a fitted encoder, as a model reads them."""
        return ItemTables(self.item_fields, self.item_content, self.sid_codewords, self.sid_soft_index,
                          self.sid_soft_weight)

    def item_field_table(self, item_codes: np.ndarray | None) -> np.ndarray:
        """The item field table (n_items + 1, n_item_fields) int64 of a fitted encoder for the
        semantic IDs ``item_codes`` (n_items, L), row 0 the unknown item: its item-ID index, then
        its level and/or prefix fields. Another version's codes of the same items give the table
        a model trained on this one would see if served those IDs."""
        n_items = len(self.item_ids)
        ids = np.concatenate([[0], self.vocabularies["item_id"].transform(self.item_ids)])[:, None]
        if not self.uses_sid:
            return ids.astype(np.int64)
        item_codes = np.asarray(item_codes, dtype=np.int64)
        if item_codes.ndim != 2 or len(item_codes) != n_items:
            raise InvalidInputError(f"semantic IDs: expected ({n_items}, {len(self.sid_sizes)}) codes, got"
                                    f" {item_codes.shape}")
        fields = self.sid_columns(item_codes)
        return np.concatenate([ids, np.concatenate([np.zeros((1, fields.shape[1]), np.int64), fields])], axis=1)

    def sid_columns(self, codes: np.ndarray) -> np.ndarray:
        """The semantic-ID fields (n, n_sid_fields) int64 of items with codes (n, L): per level
        ``code + 1`` and/or the prefix fields ``prefix + 1``, as ``sid_representation`` says (0
        is kept for the unknown item). Refuses codes outside the run's codebook sizes."""
        return semantic_id_fields(codes, self.sid_sizes, self.sid_representation, self.prefix_buckets)[0]

    def remap_items(self, new_codes: dict[str, np.ndarray]) -> int:
        """Give the items named in ``new_codes`` (item id -> codes (L,)) the semantic-ID fields of
        those codes in :attr:`item_fields`; every other row (its item-ID field included) is
        kept exactly. Returns how many rows changed."""
        if not self.uses_sid:
            raise InvalidInputError(f"feature set {self.feature_set!r} has no semantic-ID fields to remap")
        names = [name for name in new_codes if name in self.item_ids]
        if not names:
            return 0
        rows = self.item_ids.get_indexer(pd.Index(names)) + 1
        fields = self.sid_columns(np.stack([np.asarray(new_codes[name], dtype=np.int64) for name in names]))
        table = np.array(self.item_fields, copy=True)
        before = table[rows, 1:].copy()
        table[rows, 1:] = fields
        self.item_fields = table
        return int((before != fields).any(axis=1).sum())

    def _check_items(self, dataset: CTRDataset) -> int:
        known = self.item_ids.get_indexer(dataset.interactions["item_id"]) >= 0
        missing = int((~known).sum())
        if missing and (self.uses_sid or self.uses_content) and self.missing_items == "error":
            examples = dataset.interactions["item_id"][~known].unique()[:5].tolist()
            raise InvalidInputError(
                f"{dataset.name}: {missing} interaction(s) name items without content in the item table"
                f" (e.g. {examples}); add them, or pass missing_items='zero' (--missing-items zero) to give"
                " them zero content and unknown semantic IDs")
        return missing

    @property
    def layout(self) -> FeatureLayout:
        item_fields, item_cards = ["item_id"], [len(self.vocabularies["item_id"])]
        if self.sid_sizes:
            _, names, cards = semantic_id_fields(np.zeros((0, len(self.sid_sizes)), np.int64), self.sid_sizes,
                                                 self.sid_representation, self.prefix_buckets)
            item_fields += names
            item_cards += cards
        context = ["user_id", *self.categorical]
        return FeatureLayout(tuple(context), tuple(len(self.vocabularies[c]) for c in context), tuple(item_fields),
                             tuple(item_cards), len(self.numeric),
                             0 if self.item_content is None else self.item_content.shape[1], self.history_length)

    def transform(self, dataset: CTRDataset, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Model inputs and labels for ``rows`` of ``dataset.interactions``."""
        frame = dataset.interactions.iloc[rows]
        context = np.stack([self.vocabularies[c].transform(frame[c]) for c in ("user_id", *self.categorical)], axis=1)
        numeric = frame[self.numeric].to_numpy(np.float64) if self.numeric else np.zeros((len(frame), 0))
        numeric = np.nan_to_num((numeric - self.numeric_mean) / self.numeric_scale).astype(np.float32)
        item = self.item_ids.get_indexer(frame["item_id"]) + 1
        out = {"context": context, "numeric": numeric, "item": item.astype(np.int64),
               "label": frame["label"].to_numpy(np.float32)}
        if self.history_length:
            out["history"] = user_histories(dataset.interactions, self.item_ids, self.history_length)[rows]
        return out

    # ----------------------------------------------------------------- persistence
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able attributes, arrays) to save beside a model."""
        attributes = {"feature_set": self.feature_set, "min_count": self.min_count,
                      "history_length": self.history_length, "missing_items": self.missing_items,
                      "sid_representation": self.sid_representation, "prefix_buckets": self.prefix_buckets,
                      "sid_init": self.sid_init, "soft_top_k": self.soft_top_k,
                      "soft_temperature": self.soft_temperature,
                      "categorical": self.categorical, "numeric": self.numeric, "sid_sizes": self.sid_sizes,
                      "vocabularies": {name: vocab.values for name, vocab in self.vocabularies.items()},
                      "item_ids": self.item_ids.tolist(), "n_missing_items": self.n_missing_items}
        arrays = {"features.numeric_mean": self.numeric_mean, "features.numeric_scale": self.numeric_scale,
                  "features.item_fields": self.item_fields}
        if self.item_content is not None:
            arrays["features.item_content"] = self.item_content
        for level, table in enumerate(self.sid_codewords or []):
            arrays[f"features.sid_codewords.{level}"] = table
        if self.sid_soft_index is not None:
            arrays["features.sid_soft_index"] = self.sid_soft_index
            arrays["features.sid_soft_weight"] = self.sid_soft_weight
        return attributes, arrays

    @classmethod
    def from_state(cls, attributes: dict, arrays: dict[str, np.ndarray]) -> "FeatureEncoder":
        encoder = cls(attributes["feature_set"], min_count=attributes["min_count"],
                      history_length=attributes["history_length"], missing_items=attributes["missing_items"],
                      sid_representation=attributes.get("sid_representation", "level"),
                      prefix_buckets=attributes.get("prefix_buckets", DEFAULT_PREFIX_BUCKETS),
                      sid_init=attributes.get("sid_init", "random"), soft_top_k=attributes.get("soft_top_k", 0),
                      soft_temperature=attributes.get("soft_temperature", 1.0))
        encoder.categorical = list(attributes["categorical"])
        encoder.numeric = list(attributes["numeric"])
        encoder.sid_sizes = list(attributes["sid_sizes"])
        encoder.vocabularies = {name: Vocabulary(values) for name, values in attributes["vocabularies"].items()}
        encoder.item_ids = pd.Index(attributes["item_ids"])
        encoder.n_missing_items = attributes["n_missing_items"]
        encoder.numeric_mean = arrays["features.numeric_mean"]
        encoder.numeric_scale = arrays["features.numeric_scale"]
        encoder.item_fields = arrays["features.item_fields"]
        encoder.item_content = arrays.get("features.item_content")
        if encoder.sid_init == "codewords" and encoder.sid_sizes:
            encoder.sid_codewords = [arrays[f"features.sid_codewords.{level}"] for level in range(len(encoder.sid_sizes))]
        encoder.sid_soft_index = arrays.get("features.sid_soft_index")
        encoder.sid_soft_weight = arrays.get("features.sid_soft_weight")
        return encoder


def user_histories(interactions: pd.DataFrame, item_ids: pd.Index, length: int) -> np.ndarray:
    """(n_rows, length) int64 item rows (1-based; 0 = padding) of each row's user's last
    ``length`` positive interactions strictly before it in (timestamp, table) order, oldest first."""
    n = len(interactions)
    order = np.lexsort((np.arange(n), interactions["timestamp"].to_numpy(), interactions["user_id"].to_numpy()))
    users = interactions["user_id"].to_numpy()[order]
    labels = interactions["label"].to_numpy()[order].astype(np.int64)
    items = (item_ids.get_indexer(interactions["item_id"].to_numpy()[order]) + 1).astype(np.int64)
    positive_items = items[labels == 1]
    # positives before each row (in sorted order), counted over the whole table
    positives_before = np.cumsum(labels) - labels
    first_of_user = np.r_[True, users[1:] != users[:-1]]
    user_start = np.maximum.accumulate(np.where(first_of_user, positives_before, 0))
    ends = positives_before
    offsets = ends[:, None] - np.arange(length, 0, -1)[None, :]
    valid = offsets >= user_start[:, None]
    history = np.where(valid, positive_items[np.clip(offsets, 0, max(len(positive_items) - 1, 0))]
                       if len(positive_items) else 0, 0)
    out = np.empty((n, length), dtype=np.int64)
    out[order] = history
    return out
