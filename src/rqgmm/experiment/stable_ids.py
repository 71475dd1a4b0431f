"""The stable-IDs study (``kind: stable-ids``): a catalogue grows, the tokenizer is refitted, and
every refit strategy is measured on what users of the IDs care about.

For each catalogue, tokenizer and seed: version 1 is fitted on the first part of the catalogue in
its natural order (MovieLens-100k items by release year, the clothing reviews in a seeded random
order), version 2 on all of it by each strategy:

``naive``          a fresh fit with the same settings (what a scheduled refit does today);
``aligned``        ``fit(all, previous=v1)``: warm start, components matched by codeword distance;
``co-assignment``  the same warm start, components matched by the rows both versions assign alike;
``warm-start``     the warm start alone (``alignment="none"``);
``frozen``         v1 itself encodes the new items (no refit);
``fresh-aligned``  a fresh fit (the naive one's quality) whose components are renumbered to
                   match v1's by co-assignment (``warm_start=False``): the other end of the
                   churn / RMSE trade-off.

Measured: prefix churn per level and full-ID churn of the items v1 already had, RMSE of every
item (and against the naive fit's), unique-ID rate. On MovieLens, a CTR model is trained with
v1's IDs (the cold-item split) and then served each strategy's v2 IDs: the change of its test and
cold-item AUC is what a refit costs a model that is not retrained.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rqgmm.ctr.training import TrainingConfig
from rqgmm.errors import InvalidInputError
from rqgmm.experiment.engine import (
    Study,
    provenance,
    read_json,
    run_jobs,
    write_json,
)
from rqgmm.experiment.settings import FeatureOptions, TokenizerEntry, check_seeds, check_tokenizer
from rqgmm.io.settings import setting

STRATEGIES = ("naive", "aligned", "co-assignment", "warm-start", "frozen", "fresh-aligned")
ALIGNMENT_OF = {"aligned": "codewords", "co-assignment": "co-assignment", "warm-start": "none",
                "fresh-aligned": "co-assignment"}


@dataclass
class StableCTR:
    """The CTR stage: a model trained with v1's IDs, served each strategy's v2 IDs."""

    split: str = setting("cold-item", "CTR split: time, random, cold-item")
    model: str = setting("fnn", "CTR model")
    features: str = setting("sid", "feature set: sid or sid+emb")
    sid_representation: str = setting("level", "semantic-ID fields: level, prefix or level+prefix")
    training: TrainingConfig = setting(help="CTR training", factory=TrainingConfig)
    feature_options: FeatureOptions = setting(help="CTR feature options", factory=FeatureOptions)


@dataclass
class StableIDsConfig:
    name: str = setting(help="run directory name under --output")
    kind: str = setting("stable-ids", "study kind: stable-ids")
    catalogues: dict[str, float] = setting(help="catalogue -> share of its items in version 1 (natural order)",
                                           factory=lambda: {"ml-100k": 0.8, "clothing": 0.9})
    tokenizers: list[TokenizerEntry] = setting(help="tokenizers refitted (RQ-KMeans, RQ-GMM)", factory=list)
    seeds: list[int] = setting(help="one v1 fit and one refit per strategy per seed", factory=lambda: [0, 1, 2])
    strategies: list[str] = setting(help=f"refit strategies among {STRATEGIES}; NAME@N caps a refit at N iterations"
                                         " per level", factory=lambda: list(STRATEGIES))
    ctr: StableCTR | None = setting(None, "the CTR stage on ml-100k (omit to skip it)")
    quick: dict = setting(help="top-level overrides applied by --quick", factory=dict)

    def validate(self, source: str) -> None:
        from rqgmm.ctr.features import SID_REPRESENTATIONS
        from rqgmm.ctr.models import check_model_params
        from rqgmm.data.catalogue import CATALOGUES

        if self.kind != "stable-ids":
            raise InvalidInputError(f"{source}: kind: expected 'stable-ids', got {self.kind!r}")
        if not self.catalogues:
            raise InvalidInputError(f"{source}: catalogues is empty; name at least one")
        for name, share in self.catalogues.items():
            if name not in CATALOGUES:
                raise InvalidInputError(f"{source}: catalogues.{name}: must be one of {list(CATALOGUES)}")
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
                raise InvalidInputError(f"{source}: catalogues.{name}: the share in version 1 must be in (0, 1),"
                                        f" got {share!r}")
        check_seeds(self.seeds, source)
        if not self.tokenizers:
            raise InvalidInputError(f"{source}: tokenizers is empty; give at least one")
        for index, entry in enumerate(self.tokenizers):
            if entry.method not in ("rq-kmeans", "rq-gmm"):
                raise InvalidInputError(f"{source}: tokenizers[{index}]: aligned refits are for rq-kmeans and"
                                        f" rq-gmm, got {entry.method!r}")
            check_tokenizer(entry, source, f"tokenizers[{index}]")
        for name in self.strategies:
            try:
                parse_strategy(name)
            except InvalidInputError as exc:
                raise InvalidInputError(f"{source}: strategies: {exc}") from None
        if "naive" not in self.strategies or len(set(self.strategies)) != len(self.strategies):
            raise InvalidInputError(f"{source}: strategies: must include 'naive' (the reference) once, got"
                                    f" {self.strategies}")
        if self.ctr is not None:
            if "ml-100k" not in self.catalogues:
                raise InvalidInputError(f"{source}: ctr: the CTR stage needs ml-100k among the catalogues")
            if self.ctr.features not in ("sid", "sid+emb"):
                raise InvalidInputError(f"{source}: ctr.features: expected sid or sid+emb, got {self.ctr.features!r}")
            if self.ctr.sid_representation not in SID_REPRESENTATIONS:
                raise InvalidInputError(f"{source}: ctr.sid_representation: must be one of {SID_REPRESENTATIONS}")
            check_model_params(self.ctr.model, {}, f"{source}: ctr.model")

    def to_json(self) -> dict:
        return asdict(self)


def growth_order(catalogue: str, n_items: int, seed: int) -> np.ndarray:
    """Item positions in the order the catalogue grew: MovieLens by release year (unknown years
    last, ties by item order), other catalogues in a seeded random order."""
    if catalogue.startswith("ml-100k"):
        from rqgmm.data.movielens import load_items

        years = load_items()["year"].astype("float64").fillna(np.inf).to_numpy()
        return np.argsort(years, kind="stable")
    return np.random.default_rng(seed).permutation(n_items)


def parse_strategy(name: str) -> tuple[str, int | None]:
    """``"aligned@3"`` -> ("aligned", 3): a refit strategy, optionally with its iterations per
    level capped (a warm-started refit that moves less: the churn / RMSE trade-off)."""
    base, _, iterations = name.partition("@")
    if base not in STRATEGIES or (iterations and (not iterations.isdigit() or int(iterations) < 1)) or \
            (iterations and base == "frozen"):
        raise InvalidInputError(f"strategy {name!r}: expected one of {list(STRATEGIES)}, optionally refits as"
                                " NAME@N (N >= 1 iterations per level)")
    return base, int(iterations) if iterations else None


def refit(entry: TokenizerEntry, strategy: str, seed: int, X: np.ndarray, v1):
    """Version 2 of ``entry`` on ``X`` by ``strategy`` (``frozen`` returns v1)."""
    from rqgmm.experiment.engine import fit_with_warnings

    strategy, iterations = parse_strategy(strategy)
    if strategy == "frozen":
        return v1, 0.0
    tokenizer = entry.build(random_state=seed, progress=False)
    if iterations is not None:
        tokenizer.set_params(max_iter=iterations)
    started = time.perf_counter()
    if strategy == "naive":
        fit_with_warnings(tokenizer, X)
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer.fit(X, previous=v1, alignment=ALIGNMENT_OF[strategy], warm_start=strategy != "fresh-aligned")
    return tokenizer, time.perf_counter() - started


def rmse(tokenizer, X: np.ndarray, codes: np.ndarray) -> float:
    return float(np.sqrt(np.mean((X - tokenizer.decode(codes)) ** 2)))


def growth_job(directory: str, config_json: dict, catalogue: str, entry_index: int, seed: int,
               X: np.ndarray | None = None) -> dict:
    """v1 and every strategy's v2 of one (catalogue, tokenizer, seed); writes the codes of all items
    per version (``codes/…npy``) and one record. Returns the record."""
    from rqgmm.experiment.engine import fit_with_warnings
    from rqgmm.io.settings import load_settings
    from rqgmm.metrics import id_churn

    directory = Path(directory)
    config = load_settings(StableIDsConfig, config_json, "config.json")
    if X is None:
        X = np.load(directory / "catalogues" / f"{catalogue}.npy")
    entry = config.tokenizers[entry_index]
    order = growth_order(catalogue, len(X), seed)
    n_old = int(round(config.catalogues[catalogue] * len(X)))
    old_items = np.sort(order[:n_old])
    v1 = entry.build(random_state=seed, progress=False)
    fit_with_warnings(v1, X[old_items])
    v1_codes = v1.encode(X)
    code_dir = directory / "codes" / catalogue / entry.name / f"seed{seed}"
    code_dir.mkdir(parents=True, exist_ok=True)
    np.save(code_dir / "v1.npy", v1_codes)
    strategies = {}
    for strategy in config.strategies:
        v2, seconds = refit(entry, strategy, seed, X, v1)
        codes = v2.encode(X)
        np.save(code_dir / f"{strategy}.npy", codes)
        churn = id_churn(v1_codes[old_items], codes[old_items])
        _, counts = np.unique(codes, axis=0, return_counts=True)
        strategies[strategy] = {"prefix_churn": list(churn.prefix_changed), "full_id_churn": churn.full_id_changed,
                                "rmse": rmse(v2, X, codes), "unique_id_rate": float((counts == 1).sum() / len(X)),
                                "fit_seconds": seconds}
    record = {"catalogue": catalogue, "tokenizer": entry.name, "seed": seed, "n_items": int(len(X)),
              "n_v1_items": n_old, "v1_rmse_on_all": rmse(v1, X, v1_codes), "strategies": strategies,
              "fit_seconds": float(sum(s["fit_seconds"] for s in strategies.values()))}
    write_json(_growth_path(directory, catalogue, entry.name, seed), record)
    return record


def ctr_job(directory: str, config_json: dict, entry_index: int, seed: int) -> dict:
    """Train the CTR model with v1's IDs of ml-100k, then evaluate it served each strategy's v2
    IDs (the model's item field table replaced; nothing retrained). Writes and returns the record."""
    import torch

    from rqgmm.ctr.features import FeatureEncoder
    from rqgmm.ctr.item_tables import SemanticIDs
    from rqgmm.ctr.run import fit_and_evaluate, prepare
    from rqgmm.ctr.splits import make_split
    from rqgmm.ctr.training import evaluate
    from rqgmm.experiment.engine import dataset_and_content
    from rqgmm.io.settings import load_settings

    directory = Path(directory)
    config = load_settings(StableIDsConfig, config_json, "config.json")
    ctr, entry = config.ctr, config.tokenizers[entry_index]
    code_dir = directory / "codes" / "ml-100k" / entry.name / f"seed{seed}"
    dataset, content = dataset_and_content("ml-100k")
    split = make_split(dataset.interactions, ctr.split, seed=int(config.seeds[0]))
    encoder = FeatureEncoder(ctr.features, min_count=ctr.feature_options.min_count, history_length=0,
                             sid_representation=ctr.sid_representation,
                             prefix_buckets=ctr.feature_options.prefix_buckets)
    v1_codes = np.load(code_dir / "v1.npy")
    sizes = entry.build().codebook_sizes
    data = prepare(dataset, split, encoder, content=content, semantic=SemanticIDs(v1_codes, sizes))
    training = TrainingConfig(**{**asdict(ctr.training), "seed": int(seed)})
    started = time.perf_counter()
    model, _, metrics = fit_and_evaluate(data, ctr.model, {}, training, progress=False)
    item_fields = next(buffer for name, buffer in model.named_buffers() if name.endswith("item_fields"))
    served = {}
    for strategy in ["v1", *config.strategies]:
        table = encoder.item_field_table(np.load(code_dir / f"{strategy}.npy"))
        item_fields.copy_(torch.from_numpy(table))
        test = evaluate(model, data.inputs["test"], data.users["test"], data.cold["test"],
                        training.eval_batch_size)
        served[strategy] = {"auc": test["auc"], "cold_auc": test["cold_auc"]}
    record = {"tokenizer": entry.name, "seed": seed, "model": ctr.model, "trained_test": metrics["test"],
              "served": served, "seconds": time.perf_counter() - started}
    write_json(_ctr_path(directory, entry.name, seed), record)
    return record


class StableIDStudy(Study):
    """Runs a :class:`StableIDsConfig` into ``root / config.name``; ``log`` prints one line."""

    def run(self) -> dict:
        from rqgmm.data.catalogue import load_catalogue
        from rqgmm.experiment.stable_ids_report import write_stable_ids_report

        started = time.perf_counter()
        self.run_directory.claim(self.config.to_json(), type(self.config))
        config = self.config
        records = []
        for index, name in enumerate(config.catalogues):
            self.log(f"[{index + 1}/{len(config.catalogues)}] {name}: item embeddings")
            X = load_catalogue(name, self.progress).embeddings
            jobs = [(e, s) for e in range(len(config.tokenizers)) for s in config.seeds
                    if not _growth_path(self.directory, name, config.tokenizers[e].name, s).is_file()]
            if jobs:
                self.log(f"  {name}: {len(jobs)} growth job(s), {self.workers} worker(s)")
                path = self.directory / "catalogues" / f"{name}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.ascontiguousarray(X, dtype=np.float32))
                run_jobs(growth_job, [dict(directory=str(self.directory), config_json=config.to_json(), catalogue=name,
                                           entry_index=e, seed=s) for e, s in jobs], self.workers,
                         on_result=lambda r: self.log(f"  {r['catalogue']} {r['tokenizer']} seed {r['seed']}: done"))
            records += [read_json(_growth_path(self.directory, name, e.name, s))
                        for e in config.tokenizers for s in config.seeds]
        ctr_records = []
        if config.ctr is not None:
            jobs = [(e, s) for e in range(len(config.tokenizers)) for s in config.seeds
                    if not _ctr_path(self.directory, config.tokenizers[e].name, s).is_file()]
            if jobs:
                self.log(f"CTR: {len(jobs)} model(s) trained with v1 IDs, served every version")
                run_jobs(ctr_job, [dict(directory=str(self.directory), config_json=config.to_json(), entry_index=e,
                                        seed=s) for e, s in jobs], self.workers)
            ctr_records = [read_json(_ctr_path(self.directory, e.name, s))
                           for e in config.tokenizers for s in config.seeds]
        results = {"config": config.to_json(), "fits": records, "ctr_runs": ctr_records,
                   "seconds": time.perf_counter() - started, "provenance": provenance()}
        results["summary"] = write_stable_ids_report(self.directory, results)
        write_json(self.directory / "results.json", results)
        return results


def _growth_path(directory: Path, catalogue: str, tokenizer: str, seed: int) -> Path:
    return Path(directory) / "growth" / catalogue / tokenizer / f"seed{seed}.json"


def _ctr_path(directory: Path, tokenizer: str, seed: int) -> Path:
    return Path(directory) / "ctr" / tokenizer / f"seed{seed}.json"
