"""One CTR run end to end: data set, split, features, model, training, evaluation, artifacts.

A run directory holds ``config.json`` (everything needed to redo the run), ``metrics.json``
(validation and test figures, training history, samples/s) and ``model/`` (an rqgmm artifact:
safetensors weights and feature tables, the vocabularies in the manifest; no pickle).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from rqgmm.ctr.features import DEFAULT_PREFIX_BUCKETS, FeatureEncoder
from rqgmm.ctr.item_tables import SemanticIDs, semantic_ids
from rqgmm.ctr.models import CTRModel, build_model
from rqgmm.ctr.splits import Split, make_split
from rqgmm.ctr.training import TrainingConfig, TrainingResult, evaluate, train_model
from rqgmm.data.interactions import CTRDataset, item_content, load_dataset
from rqgmm.errors import ArtifactError, InvalidInputError
from rqgmm.io import strict_json

# item tables the feature encoder saves: not saved twice with the weights
_EXTERNAL_BUFFERS = ("embedding.item_fields", "embedding.item_content", "embedding.sid_soft_index",
                     "embedding.sid_soft_weight")


def _external(name: str) -> bool:
    return name in _EXTERNAL_BUFFERS or name.startswith("embedding.sid_codewords_")
# tail items: at most this many training interactions (cold items, with none, included)
DEFAULT_TAIL_THRESHOLD = 5


@dataclass
class RunConfig:
    """dataset: "ml-100k" or the path of a Parquet data set YAML (see ``ParquetDatasetConfig``);
    split: time | random | cold-item; features: id | emb | sid | sid+emb; tokenizer: a saved
    tokenizer directory (needed for sid sets); model_params: keyword hyperparameters of the
    model; training: :class:`TrainingConfig` fields."""

    dataset: str = "ml-100k"
    split: str = "time"
    model: str = "fnn"
    features: str = "id"
    tokenizer: str | None = None
    tokenizer_version: str | None = None  # set by the run: the version of `tokenizer` (or of a remap)
    seed: int = 0
    min_count: int = 1
    history_length: int = 20
    missing_items: str = "error"
    sid_representation: str = "level"
    prefix_buckets: int = DEFAULT_PREFIX_BUCKETS
    sid_init: str = "random"
    soft_top_k: int = 0
    soft_temperature: float = 1.0
    tail_threshold: int = DEFAULT_TAIL_THRESHOLD
    model_params: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)

    def training_config(self) -> TrainingConfig:
        return TrainingConfig(**{"seed": self.seed, **self.training})


@dataclass
class PreparedData:
    """Model inputs of each part plus what evaluation needs (users, cold-item and tail-item rows)."""

    dataset: CTRDataset
    split: Split
    encoder: FeatureEncoder
    inputs: dict[str, dict[str, np.ndarray]]
    users: dict[str, np.ndarray]
    cold: dict[str, np.ndarray]
    tail: dict[str, np.ndarray]


def prepare(dataset: CTRDataset, split: Split, encoder: FeatureEncoder, *, content: np.ndarray | None = None,
            semantic: SemanticIDs | None = None, fitted: bool = False,
            tail_threshold: int = DEFAULT_TAIL_THRESHOLD) -> PreparedData:
    """Fit ``encoder`` on the training rows (unless ``fitted``) and transform every part.
    semantic: the items' semantic IDs (sid feature sets); tail_threshold: a row is a tail row
    when its item has at most this many training rows."""
    if isinstance(tail_threshold, bool) or not isinstance(tail_threshold, int) or tail_threshold < 0:
        raise InvalidInputError(f"tail_threshold must be an int >= 0, got {tail_threshold!r}")
    if not fitted:
        if semantic is None:
            encoder.fit(dataset, split.train, content=content)
        else:
            encoder.fit(dataset, split.train, item_codes=semantic.codes, codebook_sizes=semantic.sizes,
                        content=content, codewords=semantic.codewords, soft=semantic.soft)
    frame = dataset.interactions
    train_items = set(frame["item_id"].iloc[split.train])
    train_counts = frame["item_id"].iloc[split.train].value_counts()
    parts = {"train": split.train, "validation": split.validation, "test": split.test}
    return PreparedData(
        dataset, split, encoder,
        inputs={name: encoder.transform(dataset, rows) for name, rows in parts.items()},
        users={name: frame["user_id"].to_numpy()[rows] for name, rows in parts.items()},
        cold={name: ~frame["item_id"].iloc[rows].isin(train_items).to_numpy() for name, rows in parts.items()},
        tail={name: (frame["item_id"].iloc[rows].map(train_counts).fillna(0).to_numpy() <= tail_threshold)
              for name, rows in parts.items()})


def new_model(name: str, encoder: FeatureEncoder, params: dict, seed: int) -> CTRModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(name, encoder.layout, encoder.item_tables, **params)


def fit_and_evaluate(data: PreparedData, model_name: str, model_params: dict, training: TrainingConfig,
                     progress: bool | None = None) -> tuple[CTRModel, TrainingResult, dict]:
    """Train one model; return it, its training record and validation/test metrics."""
    classes = np.unique(data.inputs["train"]["label"])
    if len(classes) < 2:
        raise InvalidInputError(f"{data.dataset.name}: every training row has label {int(classes[0])}; a CTR model"
                                " needs clicks and non-clicks (check the label column or the split)")
    model = new_model(model_name, data.encoder, model_params, training.seed)
    record = train_model(model, data.inputs["train"], data.inputs["validation"], training, progress,
                         desc=f"{model_name} {data.encoder.feature_set}")
    metrics = {part: evaluate(model, data.inputs[part], data.users[part], data.cold[part], training.eval_batch_size,
                              tail=data.tail[part]) for part in ("validation", "test")}
    return model, record, metrics


def prepare_run(config: RunConfig, progress: bool | None = None) -> PreparedData:
    dataset = load_dataset(config.dataset)
    split = make_split(dataset.interactions, config.split, seed=config.seed)
    encoder = FeatureEncoder(config.features, min_count=config.min_count,
                             history_length=config.history_length if config.model == "din" else 0,
                             missing_items=config.missing_items, sid_representation=config.sid_representation,
                             prefix_buckets=config.prefix_buckets, sid_init=config.sid_init,
                             soft_top_k=config.soft_top_k, soft_temperature=config.soft_temperature)
    content = semantic = None
    if encoder.uses_sid or encoder.uses_content:
        content = item_content(dataset, progress)
    if encoder.uses_sid:
        if config.tokenizer is None:
            raise InvalidInputError(f"features {config.features!r} need semantic IDs: pass a tokenizer directory"
                                    " (fit one with `rqgmm fit`)")
        semantic = semantic_ids(config.tokenizer, content, config.soft_top_k, config.soft_temperature)
        if config.tokenizer_version not in (None, semantic.version):
            raise InvalidInputError(f"config names tokenizer version {config.tokenizer_version}, but"
                                    f" {config.tokenizer} is version {semantic.version}")
        config.tokenizer_version = semantic.version
    return prepare(dataset, split, encoder, content=content, semantic=semantic, tail_threshold=config.tail_threshold)


def train_run(config: RunConfig, output: str | Path | None = None, *, overwrite: bool = False,
              progress: bool | None = None) -> dict:
    """Run ``config``; write the run directory when ``output`` is given; return metrics.json's content."""
    from rqgmm.io.atomic import check_output

    if output is not None:
        check_output(Path(output), overwrite, "run")
    data = prepare_run(config, progress)
    model, record, metrics = fit_and_evaluate(data, config.model, config.model_params, config.training_config(),
                                              progress)
    summary = {"config": asdict(config), "split_sizes": data.split.sizes(), "metrics": metrics,
               "training": asdict(record), "n_missing_items": data.encoder.n_missing_items}
    if output is not None:
        save_run(output, config, data.encoder, model, summary, overwrite=overwrite)
    return summary


def save_run(path: str | Path, config: RunConfig, encoder: FeatureEncoder, model: CTRModel, summary: dict, *,
             overwrite: bool = False) -> Path:
    from rqgmm.io.artifacts import save_artifact
    from rqgmm.io.atomic import atomic_path

    attributes, arrays = encoder.state()
    for name, tensor in model.state_dict().items():
        if not _external(name):
            arrays[f"model.{name}"] = tensor.detach().cpu().numpy()
    with atomic_path(Path(path), overwrite=overwrite, directory=True, kind="run") as tmp:
        save_artifact(tmp / "model", kind=f"ctr-{config.model}", params=config.model_params,
                      attributes={"features": attributes}, arrays=arrays)
        (tmp / "config.json").write_text(json.dumps(asdict(config), indent=2))
        (tmp / "metrics.json").write_text(strict_json.dumps(summary, indent=2))
    return Path(path)


def load_run(path: str | Path) -> tuple[RunConfig, FeatureEncoder, CTRModel]:
    """Read a run directory written by :func:`train_run`, verifying the model artifact."""
    from rqgmm.io.artifacts import load_artifact

    path = Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ArtifactError(f"{path}: not a CTR run directory (config.json is missing)")
    try:
        config = RunConfig(**json.loads(config_path.read_text()))
    except (ValueError, TypeError) as exc:  # invalid JSON, a key RunConfig does not have, not a mapping
        raise ArtifactError(f"{config_path}: not a run config written by rqgmm ({exc})") from None
    manifest, arrays = load_artifact(path / "model")
    if manifest["kind"] != f"ctr-{config.model}":
        raise ArtifactError(f"{path}: model artifact holds {manifest['kind']!r}, config says {config.model!r}")
    encoder = FeatureEncoder.from_state(manifest["attributes"]["features"], arrays)
    model = build_model(config.model, encoder.layout, encoder.item_tables, **manifest["params"])
    state = {name[len("model."):]: torch.from_numpy(array) for name, array in arrays.items()
             if name.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [name for name in missing if not _external(name)]:
        raise ArtifactError(f"{path}: model weights do not fit the model (missing {missing}, unexpected {unexpected})")
    return config, encoder, model


def remap_run(path: str | Path, registry: str | Path, output: str | Path | None = None, *,
              overwrite: bool = False) -> dict:
    """Carry a saved run's semantic-ID item rows through the registry's migrations: every item
    of the run that the registry holds gets the fields of its current ID (codes without the
    suffix), so an item whose ID did not change keeps its exact row and score, and a moved item
    is scored with the embeddings of its new ID. The run must have been trained with a version
    the registry migrated from (the whole chain of migrations to the current version must be
    recorded). Writes ``output`` (default: the run itself, replaced atomically); returns a
    summary (from, to, items, changed, not_in_registry)."""
    from rqgmm.registry import IDRegistry

    path = Path(path)
    config, encoder, model = load_run(path)
    if not encoder.uses_sid:
        raise InvalidInputError(f"{path}: a {config.features!r} run has no semantic-ID fields to remap")
    if config.tokenizer_version is None:
        raise InvalidInputError(f"{path}: the run records no tokenizer version (trained before runs recorded it);"
                                " retrain it to remap it")
    with IDRegistry(registry) as store:
        target = store.current_version
        chain = store.migration_chain(config.tokenizer_version)  # named errors: never held, a step not recorded
        if len(chain) > 1:
            _check_run_matches(encoder, store.mapping(chain[0], chain[1]), path, chain[0])
        current = store.current_codes()
    new_codes = {item: current[item] for item in encoder.item_ids if item in current}
    changed = encoder.remap_items(new_codes) if len(chain) > 1 else 0
    summary_path = path / "metrics.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    previous = config.tokenizer_version
    config.tokenizer_version = target
    summary.setdefault("remaps", []).append({"from": previous, "to": target, "changed_items": changed})
    save_run(path if output is None else output, config, encoder, model, summary,
             overwrite=True if output is None else overwrite)
    return {"from": previous, "to": target, "items": len(encoder.item_ids), "changed": changed,
            "not_in_registry": len(encoder.item_ids) - len(new_codes)}


def _check_run_matches(encoder: FeatureEncoder, mapping: dict[str, tuple[str, str]], path: Path,
                       version: str) -> None:
    """Refuse a run whose item rows do not hold the IDs the registry gave at ``version``."""
    items = [item for item in encoder.item_ids if item in mapping]
    if not items:
        return
    old = np.array([[int(x) for x in mapping[item][0].split("-")][:-1] for item in items], dtype=np.int64)
    rows = encoder.item_ids.get_indexer(items) + 1
    differs = (np.asarray(encoder.item_fields)[rows, 1:] != encoder.sid_columns(old)).any(axis=1)
    if differs.any():
        raise InvalidInputError(f"{path}: {int(differs.sum())} of {len(items)} items hold other semantic IDs than"
                                f" registry version {version} gave them (e.g. item {items[int(np.argmax(differs))]!r});"
                                " was the registry filled with another tokenizer than the run?")


def evaluate_run(path: str | Path, progress: bool | None = None) -> dict:
    """Re-evaluate a saved run on its data set and split: validation and test metrics."""
    config, encoder, model = load_run(path)
    dataset = load_dataset(config.dataset)
    split = make_split(dataset.interactions, config.split, seed=config.seed)
    data = prepare(dataset, split, encoder, fitted=True, tail_threshold=config.tail_threshold)
    batch = config.training_config().eval_batch_size
    return {part: evaluate(model, data.inputs[part], data.users[part], data.cold[part], batch, tail=data.tail[part])
            for part in ("validation", "test")}
