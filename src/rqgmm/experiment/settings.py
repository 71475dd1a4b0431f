"""Settings shared by the study configs: tokenizer entries, CTR model entries, feature options."""

from __future__ import annotations

from dataclasses import dataclass

from rqgmm.errors import InvalidInputError
from rqgmm.io.settings import setting


@dataclass
class TokenizerEntry:
    method: str = setting(help="rq-gmm, rq-kmeans, rq-vae or vq-vae")
    levels: int = setting(help="residual levels L")
    codebook_size: int = setting(help="codes per level K")
    params: dict = setting(help="the tokenizer's keyword parameters (checked against its class)", factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method}-{self.levels}x{self.codebook_size}"

    def build(self, **extra):
        """The (unfitted) tokenizer; ``extra`` parameters (seed, progress) below the entry's own."""
        from rqgmm.quantize import make_tokenizer

        return make_tokenizer(self.method, self.levels, self.codebook_size, **{**extra, **self.params})


@dataclass
class ModelEntry:
    features: list[str] | str = setting("all", "feature sets: 'all', or a list of id, emb, sid:<t>, sid+emb:<t>")
    params: dict = setting(help="the model's keyword hyperparameters (checked against its class)", factory=dict)


@dataclass
class FeatureOptions:
    """How interactions become CTR features (the same for every run of a study)."""

    history_length: int = setting(10, "positive items kept per user history (DIN); 0: none")
    min_count: int = setting(1, "training rows a categorical value needs for its own index")
    prefix_buckets: int = setting(100_000, "hash buckets of a semantic-ID prefix field whose prefix space is larger")


def check_seeds(seeds: list[int], source: str) -> None:
    if not seeds:
        raise InvalidInputError(f"{source}: seeds is empty; give at least one seed")
    bad = [s for s in seeds if not 0 <= s < 2**32]
    if bad:
        raise InvalidInputError(f"{source}: seeds: {bad[0]} is not in [0, 2**32)")
    if len(set(seeds)) != len(seeds):
        raise InvalidInputError(f"{source}: seeds: {seeds} repeats a seed")


def check_tokenizer(entry: TokenizerEntry, source: str, where: str) -> None:
    """Builds (does not fit) the tokenizer: method, levels and every parameter are checked."""
    try:
        entry.build().validate_params()
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source}: {where}: {exc}") from None
