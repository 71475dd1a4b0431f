"""Click probabilities of candidate items for one request context, from a saved CTR run.

The run's feature encoder turns a request into exactly the inputs ``rqgmm ctr evaluate`` builds
for an interaction row (same vocabularies, same numeric normalization: a numeric field the
request leaves out is the training mean, as a missing value is offline). Items of the run's item
table use their row; an item the model has never seen gets a new row, built from its semantic ID
(from the registry: the codes before the collision suffix) and its embedding where the model uses
content, with the out-of-vocabulary item ID, which item-ID dropout trained for this case.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import torch

from rqgmm.errors import InvalidInputError


class CTRScorer:
    """A saved CTR run, ready to score ``(context, candidates)`` requests."""

    def __init__(self, run_dir: str | Path):
        from rqgmm.ctr.run import load_run

        self.config, self.encoder, self.model = load_run(run_dir)
        if self.encoder.history_length:
            raise InvalidInputError(f"{run_dir}: a {self.config.model} run uses user histories; the score endpoint"
                                    " serves models without them (fnn, ipnn, dcnv2, ...)")
        if self.encoder.soft_top_k:
            raise InvalidInputError(f"{run_dir}: a soft-ID run (soft_top_k={self.encoder.soft_top_k}) needs each"
                                    " item's posterior over every level's components; the score endpoint serves"
                                    " hard semantic IDs (train with --soft-top-k 0)")
        self.model.eval()
        self.embedding = self.model.embedding
        self._rows = {item: index + 1 for index, item in enumerate(self.encoder.item_ids)}
        self._lock = threading.Lock()
        # value -> index of every context vocabulary (what Vocabulary.transform computes, as a dict
        # lookup: a request holds one value per field)
        self._context_index = {name: {value: position + 1 for position, value in
                                      enumerate(self.encoder.vocabularies[name].values)}
                               for name in ("user_id", *self.encoder.categorical)}
        self._numeric_position = {name: j for j, name in enumerate(self.encoder.numeric)}

    @property
    def tokenizer_version(self) -> str | None:
        """The version of the tokenizer whose semantic IDs the model's item rows hold."""
        return self.config.tokenizer_version

    def remapped(self, new_codes: dict[str, np.ndarray], version: str) -> "CTRScorer":
        """A scorer for tokenizer ``version``: the items in ``new_codes`` (item id -> codes (L,),
        a migration's new IDs without the suffix) get the semantic-ID fields of their new codes,
        every other row and every weight stay as they are. This scorer is left untouched (it may
        still be answering requests), so a service can swap the two in one step."""
        import copy

        with self._lock:
            twin = copy.copy(self)
            twin.model = copy.deepcopy(self.model)
            twin.embedding = twin.model.embedding
            twin._rows = dict(self._rows)
            twin._lock = threading.Lock()
            twin.config = dataclasses.replace(self.config, tokenizer_version=version)
        if self.uses_sid:
            names = [name for name in new_codes if name in twin._rows]
            if names:
                rows = torch.as_tensor([twin._rows[name] for name in names])
                fields = self.encoder.sid_columns(np.stack([np.asarray(new_codes[n], np.int64) for n in names]))
                table = twin.embedding.item_fields.clone()
                table[rows, 1:] = torch.from_numpy(fields)
                twin.embedding.item_fields = table
        return twin

    @property
    def uses_sid(self) -> bool:
        return self.encoder.uses_sid

    @property
    def uses_content(self) -> bool:
        return self.encoder.uses_content

    def knows(self, item_id: str) -> bool:
        return item_id in self._rows

    def add_item(self, item_id: str, codes: np.ndarray | None, embedding: np.ndarray | None) -> int:
        """Give a new item a row of the model's item tables: its semantic-ID fields from ``codes``
        (L,), its content from ``embedding`` (dim,); returns the row."""
        with self._lock:
            if item_id in self._rows:
                return self._rows[item_id]
            encoder = self.encoder
            if encoder.uses_sid:
                if codes is None:
                    raise InvalidInputError(f"item {item_id!r} is new to the model: it needs a semantic ID")
                row = np.concatenate([[0], encoder.sid_columns(np.asarray(codes, dtype=np.int64)[None])[0]])
            else:
                row = np.zeros(self.embedding.item_fields.shape[1], dtype=np.int64)
            self.embedding.item_fields = torch.cat([self.embedding.item_fields, torch.from_numpy(row)[None]])
            if encoder.uses_content:
                if embedding is None:
                    raise InvalidInputError(f"item {item_id!r} is new to the model: send its embedding")
                content = torch.from_numpy(np.asarray(embedding, dtype=np.float32))[None]
                self.embedding.item_content = torch.cat([self.embedding.item_content, content])
            index = self.embedding.item_fields.shape[0] - 1
            self._rows[item_id] = index
            return index

    def inputs(self, context: dict, candidates: list[dict]) -> dict[str, np.ndarray]:
        """Model inputs (one row per candidate) for a request; ``candidates[i]["row"]`` is set.
        A candidate's ``features`` override the context's numeric values for its row."""
        encoder = self.encoder
        n = len(candidates)
        context_row = np.array([self._context_index[name].get(None if context.get(name) is None
                                                              else str(context[name]), 0)
                                for name in ("user_id", *encoder.categorical)], dtype=np.int64)
        shared = np.full(len(encoder.numeric), np.nan)
        self._fill_numeric(shared, context, "context")
        numeric = np.repeat(shared[None], n, axis=0)
        for i, candidate in enumerate(candidates):
            if candidate.get("features"):
                self._fill_numeric(numeric[i], candidate["features"], f"candidates[{i}]")
        numeric = np.nan_to_num((numeric - encoder.numeric_mean) / encoder.numeric_scale).astype(np.float32)
        return {"context": np.repeat(context_row[None], n, axis=0), "numeric": numeric,
                "item": np.array([c["row"] for c in candidates], dtype=np.int64)}

    def _fill_numeric(self, row: np.ndarray, values: dict, where: str) -> None:
        if not isinstance(values, dict):
            raise InvalidInputError(f"{where}: features must be an object of field values")
        for name, value in values.items():
            j = self._numeric_position.get(name)
            if j is None or value is None:
                continue
            try:
                row[j] = float(value)
            except (TypeError, ValueError):
                raise InvalidInputError(f"{where}: numeric field {name!r} must be a number, got {value!r}") from None

    def score(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Click probabilities (n,) float64."""
        batch = {key: torch.from_numpy(value) for key, value in inputs.items()}
        with self._lock, torch.inference_mode():
            return self.model(batch)["y_pred"].double().numpy()

    def row_of(self, item_id: str) -> int | None:
        return self._rows.get(item_id)
