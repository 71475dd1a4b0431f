"""The experiment configuration: which tokenizers, which CTR grid, which seeds (a YAML file).

Example (``experiments/ml-100k.yaml`` is the full default)::

    name: ml-100k
    dataset: ml-100k
    seeds: [0, 1, 2]
    tokenizers:                       # name = method-LxK
      - {method: rq-gmm, levels: 2, codebook_size: 128}
      - {method: rq-vae, levels: 2, codebook_size: 128, params: {max_epochs: 100}}
    ctr_tokenizers: [rq-gmm-2x128]    # tokenizers whose IDs feed the CTR models
    splits: [time, cold-item]
    models:
      fnn: {features: all}            # all = id, emb, sid:<t>, sid+emb:<t> for every CTR tokenizer
      din: {features: [id, "sid:rq-gmm-2x128"], params: {attention_dims: [32]}}
    training: {batch_size: 2048, learning_rate: 0.002, max_epochs: 8, patience: 1}
    quick: {seeds: [0], ...}          # overrides applied by --quick
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rqgmm.errors import InvalidInputError
from rqgmm.io.settings import check_keys, read_yaml_mapping

PLAIN_FEATURES = ("id", "emb")
SID_FEATURES = ("sid", "sid+emb")


@dataclass(frozen=True)
class TokenizerSpec:
    method: str
    levels: int
    codebook_size: int
    params: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method}-{self.levels}x{self.codebook_size}"


@dataclass
class ExperimentConfig:
    name: str
    dataset: str = "ml-100k"
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    tokenizers: list = field(default_factory=list)
    ctr_tokenizers: list = field(default_factory=list)
    splits: list = field(default_factory=lambda: ["time", "cold-item"])
    models: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    history_length: int = 20
    quick: dict = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path, *, quick: bool = False) -> "ExperimentConfig":
        raw = read_yaml_mapping(path, "the experiment config")
        return cls.from_dict(raw, source=str(path), quick=quick)

    @classmethod
    def from_dict(cls, raw, *, source: str = "config", quick: bool = False) -> "ExperimentConfig":
        known = check_keys(raw, cls, source)
        raw = copy.deepcopy(raw)
        if quick:
            overrides = raw.get("quick") or {}
            bad = sorted(set(overrides) - known)
            if bad:
                raise InvalidInputError(f"{source}: quick overrides unknown setting(s) {bad}")
            raw.update(overrides)
            raw["name"] = f"{raw.get('name', 'experiment')}-quick"
        if "name" not in raw:
            raise InvalidInputError(f"{source}: setting 'name' is missing")
        config = cls(**raw)
        config.validate(source)
        return config

    def tokenizer_specs(self) -> list[TokenizerSpec]:
        return [TokenizerSpec(t["method"], int(t["levels"]), int(t["codebook_size"]), dict(t.get("params", {})))
                for t in self.tokenizers]

    def validate(self, source: str) -> None:
        specs = []
        for index, entry in enumerate(self.tokenizers):
            if not isinstance(entry, dict) or not {"method", "levels", "codebook_size"} <= set(entry):
                raise InvalidInputError(f"{source}: tokenizers[{index}] needs method, levels and codebook_size")
            from rqgmm.quantize import make_tokenizer

            try:  # builds (does not fit) the tokenizer: method, levels and params are checked once, there
                make_tokenizer(entry["method"], entry["levels"], entry["codebook_size"],
                               **entry.get("params", {})).validate_params()
            except InvalidInputError as exc:
                raise InvalidInputError(f"{source}: tokenizers[{index}]: {exc}") from None
            specs.append(TokenizerSpec(entry["method"], entry["levels"], entry["codebook_size"]).name)
        for name in self.ctr_tokenizers:
            if name not in specs:
                raise InvalidInputError(f"{source}: ctr_tokenizers names {name!r}, not among the tokenizers {specs}")
        for model, entry in self.models.items():
            for feature in self.features_of(model):
                kind, _, tokenizer = feature.partition(":")
                if kind in PLAIN_FEATURES and not tokenizer:
                    continue
                if kind not in SID_FEATURES or tokenizer not in self.ctr_tokenizers:
                    raise InvalidInputError(f"{source}: model {model}: feature {feature!r} must be id, emb, or"
                                            f" sid:<t> / sid+emb:<t> with <t> in ctr_tokenizers {self.ctr_tokenizers}")

    def features_of(self, model: str) -> list[str]:
        """Feature specs of a model: ``id``, ``emb``, ``sid:<tokenizer>``, ``sid+emb:<tokenizer>``."""
        features = (self.models[model] or {}).get("features", "all")
        if features == "all":
            return ["id", "emb", *(f"{kind}:{t}" for t in self.ctr_tokenizers for kind in SID_FEATURES)]
        return list(features)

    def to_json(self) -> dict:
        return asdict(self)
