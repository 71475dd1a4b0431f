"""Study configurations: typed settings per study kind, one loader, validated before any work.

A study is a YAML file. ``kind`` picks its schema (``paper``: the RQ-GMM paper's offline study,
tokenizers + quality + a CTR grid; ``variants``: tokenizer variants against RQ-KMeans on
catalogues). ``quick`` holds overrides of top-level settings that ``--quick`` applies. Both the
config and its quick form are checked in full, every nested key and type, when the file is
loaded, so a typo anywhere is reported in one line before anything is computed::

    experiments/x.yaml: training.learning_rat: unknown setting ...

``rqgmm experiment --describe KIND`` lists every key with its default and meaning.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

from rqgmm.ctr.splits import SPLITS
from rqgmm.ctr.training import TrainingConfig
from rqgmm.errors import InvalidInputError
from rqgmm.experiment.settings import (
    FeatureOptions,
    ModelEntry,
    TokenizerEntry,
    check_seeds,
    check_tokenizer,
)
from rqgmm.experiment.variants import VariantsConfig
from rqgmm.io.settings import check_keys, load_settings, read_yaml_mapping, setting

PLAIN_FEATURES = ("id", "emb")
SID_FEATURES = ("sid", "sid+emb")


@dataclass
class SidVariant:
    """How a study's semantic-ID fields are embedded and regularized (one named entry of
    ``sid_variants``)."""

    sid_init: str = setting("random", "a level's code embedding: random (a learned row) or codewords (plus the"
                                      " codeword through a learned projection)")
    soft_top_k: int = setting(0, "soft IDs: posterior-weighted top-k components per level (rq-gmm tokenizers"
                                 " only; the variant is skipped for others); 0: hard codes")
    soft_temperature: float = setting(1.0, "soft IDs: the posterior of the joint log-density divided by this (> 1:"
                                           " softer; in hundreds of dimensions RQ-GMM's posterior is nearly one-hot)")
    sid_dropout: float = setting(0.0, "share of training rows whose semantic-ID fields are all dropped")


@dataclass
class PaperStudyConfig:
    name: str = setting(help="run directory name under --output")
    kind: str = setting("paper", "study kind: paper")
    dataset: str = setting("ml-100k", "ml-100k, or a Parquet data set .yaml")
    seeds: list[int] = setting(help="seeds: tokenizers use the first; every CTR run is repeated per seed",
                               factory=lambda: [0, 1, 2])
    tokenizers: list[TokenizerEntry] = setting(help="tokenizers to fit (name = method-LxK)", factory=list)
    ctr_tokenizers: list[str] = setting(help="tokenizers whose IDs feed the CTR models", factory=list)
    splits: list[str] = setting(help="CTR splits: time, random, cold-item", factory=lambda: ["time", "cold-item"])
    models: dict[str, ModelEntry] = setting(help="CTR models (fnn, ipnn, deepfm, dcnv2, din) and their features",
                                            factory=dict)
    training: TrainingConfig = setting(help="CTR training", factory=TrainingConfig)
    features: FeatureOptions = setting(help="CTR feature options", factory=FeatureOptions)
    sid_representations: list[str] = setting(help="semantic-ID representations to compare: level, prefix,"
                                                  " level+prefix", factory=lambda: ["level"])
    item_id_dropouts: list[float] = setting(help="item-ID dropout rates to compare (each in [0, 1))",
                                            factory=lambda: [0.0])
    sid_variants: dict[str, SidVariant] = setting(
        help="semantic-ID embeddings to compare, by name (each: sid_init, soft_top_k, sid_dropout)",
        factory=lambda: {"hard": SidVariant()})
    tail_threshold: int = setting(5, "tail AUC: test rows whose item has at most this many training rows")
    quick: dict = setting(help="top-level overrides applied by --quick", factory=dict)

    def validate(self, source: str) -> None:
        from rqgmm.ctr.models import check_model_params

        if self.kind != "paper":
            raise InvalidInputError(f"{source}: kind: expected 'paper', got {self.kind!r}")
        check_seeds(self.seeds, source)
        check_dataset(self.dataset, source)
        names = []
        for index, entry in enumerate(self.tokenizers):
            check_tokenizer(entry, source, f"tokenizers[{index}]")
            names.append(entry.name)
        for name in self.ctr_tokenizers:
            if name not in names:
                raise InvalidInputError(f"{source}: ctr_tokenizers: {name!r} is not among the tokenizers {names}")
        for split in self.splits:
            if split not in SPLITS:
                raise InvalidInputError(f"{source}: splits: {split!r} is not one of {SPLITS}")
        from rqgmm.ctr.features import SID_REPRESENTATIONS

        for representation in self.sid_representations:
            if representation not in SID_REPRESENTATIONS:
                raise InvalidInputError(f"{source}: sid_representations: {representation!r} is not one of"
                                        f" {SID_REPRESENTATIONS}")
        for rate in self.item_id_dropouts:
            if not 0 <= rate < 1:
                raise InvalidInputError(f"{source}: item_id_dropouts: {rate} is not in [0, 1)")
        if not self.sid_representations or not self.item_id_dropouts:
            raise InvalidInputError(f"{source}: sid_representations and item_id_dropouts need at least one value")
        self._check_sid_variants(source)
        if self.tail_threshold < 0:
            raise InvalidInputError(f"{source}: tail_threshold: must be >= 0, got {self.tail_threshold}")
        if self.features.prefix_buckets < 1:
            raise InvalidInputError(f"{source}: features.prefix_buckets: must be >= 1, got {self.features.prefix_buckets}")
        if self.models and not self.splits:
            raise InvalidInputError(f"{source}: splits is empty; name at least one split for the CTR models")
        for model, entry in self.models.items():
            check_model_params(model, entry.params, f"{source}: models.{model}.params")
            for feature in self.features_of(model):
                kind, _, tokenizer = feature.partition(":")
                if kind in PLAIN_FEATURES and not tokenizer:
                    continue
                if kind not in SID_FEATURES or tokenizer not in self.ctr_tokenizers:
                    raise InvalidInputError(f"{source}: models.{model}.features: {feature!r} must be id, emb, or"
                                            f" sid:<t> / sid+emb:<t> with <t> in ctr_tokenizers {self.ctr_tokenizers}")

    def _check_sid_variants(self, source: str) -> None:
        from rqgmm.ctr.names import SID_INITS

        if not self.sid_variants:
            raise InvalidInputError(f"{source}: sid_variants is empty; name at least one (e.g. hard: {{}})")
        for name, variant in self.sid_variants.items():
            where = f"{source}: sid_variants.{name}"
            if variant.sid_init not in SID_INITS:
                raise InvalidInputError(f"{where}.sid_init: expected one of {SID_INITS}, got {variant.sid_init!r}")
            if variant.soft_top_k < 0:
                raise InvalidInputError(f"{where}.soft_top_k: must be >= 0, got {variant.soft_top_k}")
            if not variant.soft_temperature > 0:
                raise InvalidInputError(f"{where}.soft_temperature: must be > 0, got {variant.soft_temperature}")
            if not 0 <= variant.sid_dropout < 1:
                raise InvalidInputError(f"{where}.sid_dropout: {variant.sid_dropout} is not in [0, 1)")
            if (variant.sid_init != "random" or variant.soft_top_k) and self.sid_representations != ["level"]:
                raise InvalidInputError(f"{where}: codeword init and soft IDs act on per-level fields; they need"
                                        f" sid_representations [level], got {self.sid_representations}")

    def sid_variant_applies(self, name: str, tokenizer: str) -> bool:
        """Soft-ID variants need a probabilistic tokenizer (rq-gmm)."""
        if not self.sid_variants[name].soft_top_k:
            return True
        entry = next((t for t in self.tokenizers if t.name == tokenizer), None)
        return entry is not None and entry.method == "rq-gmm"

    def features_of(self, model: str) -> list[str]:
        """Feature specs of a model: ``id``, ``emb``, ``sid:<tokenizer>``, ``sid+emb:<tokenizer>``."""
        features = self.models[model].features
        if features == "all":
            return ["id", "emb", *(f"{kind}:{t}" for t in self.ctr_tokenizers for kind in SID_FEATURES)]
        if isinstance(features, str):
            return [features]
        return list(features)

    def to_json(self) -> dict:
        return asdict(self)


def study_kinds() -> dict[str, type]:
    from rqgmm.experiment.stable_ids import StableIDsConfig

    return {"paper": PaperStudyConfig, "variants": VariantsConfig, "stable-ids": StableIDsConfig}


def check_dataset(dataset, source: str) -> None:
    """A named error for a data set no run could load: an unknown name, or a .yaml that is missing."""
    from pathlib import Path

    known = ("ml-100k", "ml-100k-no-genres", "ml-1m", "ml-1m-no-genres")
    if not isinstance(dataset, str) or (dataset not in known and not dataset.endswith((".yaml", ".yml"))):
        raise InvalidInputError(f"{source}: dataset: expected one of {known} or a Parquet data set .yaml,"
                                f" got {dataset!r}")
    if dataset.endswith((".yaml", ".yml")) and not Path(dataset).is_file():
        raise InvalidInputError(f"{source}: dataset: {dataset}: no such data set config")


def parse_config(raw: dict, source: str, *, quick: bool = False):
    """The study config of ``raw`` (its ``kind`` picks the schema), fully validated. The quick
    form is validated too, whichever is asked for; ``quick=True`` returns it (name + "-quick")."""
    kinds = study_kinds()
    kind = raw.get("kind", "paper")
    if kind not in kinds:
        raise InvalidInputError(f"{source}: kind: expected one of {sorted(kinds)}, got {kind!r}")
    klass = kinds[kind]
    check_keys(raw, klass, source)
    overrides = raw.get("quick") or {}
    if not isinstance(overrides, dict):
        raise InvalidInputError(f"{source}: quick: expected a mapping of overrides, got {overrides!r}")
    for key in overrides:
        if key in ("quick", "kind", "name"):
            raise InvalidInputError(f"{source}: quick.{key}: cannot be overridden")
    check_keys(overrides, klass, f"{source}: quick")
    full = load_settings(klass, raw, source)
    full.validate(source)
    name = raw.get("name")
    if isinstance(name, str) and (name in ("", ".", "..") or "/" in name or "\\" in name):
        raise InvalidInputError(f"{source}: name: must be a plain directory name (no '/', not '.' or '..'),"
                                f" got {name!r}")  # checked with the config, before anything is written
    shortened = {**copy.deepcopy(raw), **copy.deepcopy(overrides)}
    shortened["name"] = f"{raw.get('name', 'study')}-quick"
    reduced = load_settings(klass, shortened, f"{source} (quick)")
    reduced.validate(f"{source} (quick)")
    return reduced if quick else full


def packaged_configs() -> list[str]:
    """Names of the study configs that ship inside the package (``rqgmm experiment NAME``)."""
    from importlib import resources

    return sorted(p.name[:-5] for p in resources.files("rqgmm").joinpath("configs").iterdir()
                  if p.name.endswith(".yaml"))


def resolve_config(path: str | Path) -> Path:
    """A config file: ``path`` itself, or the packaged config of that name ("ml-100k")."""
    from importlib import resources

    candidate = Path(path)
    if candidate.exists() or candidate.suffix in (".yaml", ".yml") or len(candidate.parts) > 1:
        return candidate
    packaged = resources.files("rqgmm").joinpath("configs", f"{path}.yaml")
    if not packaged.is_file():
        raise InvalidInputError(f"{path}: no such config file, and no packaged config of that name"
                                f" (packaged: {packaged_configs()})")
    return Path(str(packaged))


def load_config(path: str | Path, *, quick: bool = False):
    """Read and validate the study config in ``path`` (a file, or a packaged config's name; see
    :func:`parse_config`)."""
    path = resolve_config(path)
    return parse_config(read_yaml_mapping(path, "the study config"), str(path), quick=quick)
