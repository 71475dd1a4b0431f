"""Collision repair policies side by side: ``suffix``, ``relocate`` and ``sinkhorn`` against no
repair, on real catalogues (MiniLM embeddings; labels: MovieLens genres, clothing classes).

Per catalogue and shape (RQ-KMeans, seeds 0-2): unique-ID rate; items whose codes changed; RMSE
of the decoded IDs relative to no repair (the suffix column is not decoded, so its RMSE is
unchanged by construction); kNN purity of the decoded IDs (share of an item's 10 nearest other
items, by decoded vector, that share a label with it: what a repair costs the IDs' semantics).

Run from the repository root:
    python -m benchmarks.bench_collisions [--catalogues ml-100k,clothing] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from benchmarks.common import add_markdown_option, environment, recorded_output, write_json
from rqgmm import RQKMeans
from rqgmm.metrics.quality import label_sets

POLICIES = ("none", "suffix", "relocate", "sinkhorn")


def knn_purity(vectors: np.ndarray, sets: list[frozenset], k: int = 10, block: int = 2048) -> float:
    squared = (vectors.astype(np.float64) ** 2).sum(1)
    hits = total = 0
    for start in range(0, len(vectors), block):
        rows = np.arange(start, min(start + block, len(vectors)))
        distances = squared[rows, None] - 2 * vectors[rows].astype(np.float64) @ vectors.T + squared[None, :]
        distances[np.arange(len(rows)), rows] = np.inf
        neighbours = np.argpartition(distances, k, axis=1)[:, :k]
        for row, found in zip(rows, neighbours):
            hits += sum(bool(sets[row] & sets[j]) for j in found)
            total += k
    return hits / total


def compare(X: np.ndarray, sets: list[frozenset], levels: int, size: int, seed: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = RQKMeans(n_levels=levels, codebook_size=size, random_state=seed, progress=False).fit(X)
    plain = tokenizer.encode(X)
    plain_rmse = float(np.sqrt(((tokenizer.decode(plain) - X) ** 2).mean()))
    out = {}
    for policy in POLICIES:
        codes = tokenizer.encode(X, collisions=policy)
        decoded_codes = codes[:, :levels]
        decoded = tokenizer.decode(decoded_codes)
        _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
        out[policy] = {
            "unique_id_rate": float((counts[inverse.ravel()] == 1).mean()),
            "moved": float((decoded_codes != plain).any(1).mean()),
            "rmse_change": float(np.sqrt(((decoded - X) ** 2).mean())) / plain_rmse - 1,
            "knn_purity": knn_purity(decoded, sets),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogues", default="ml-100k,clothing")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default=None)
    add_markdown_option(parser)
    args = parser.parse_args()
    with recorded_output(args.markdown, "Collision repair policies"):
        from rqgmm.data.catalogue import load_catalogue

        result: dict = {"environment": environment(), "runs": []}
        seeds = [int(s) for s in args.seeds.split(",")]
        for name in args.catalogues.split(","):
            catalogue = load_catalogue(name, progress=False)
            X = np.ascontiguousarray(catalogue.embeddings, dtype=np.float32)
            sets = label_sets(catalogue.labels, len(X))
            for levels, size in ((2, 32), (2, 128), (3, 256)):
                runs = [compare(X, sets, levels, size, seed) for seed in seeds]
                print(f"\n{name} ({len(X):,} items), RQ-KMeans {levels} x {size}, mean of seeds {seeds}")
                print(f"{'policy':>9} {'unique IDs':>11} {'moved':>7} {'RMSE change':>12} {'kNN purity':>11}")
                for policy in POLICIES:
                    mean = {key: float(np.mean([r[policy][key] for r in runs])) for key in runs[0][policy]}
                    print(f"{policy:>9} {mean['unique_id_rate']:11.1%} {mean['moved']:7.1%} {mean['rmse_change']:+12.2%}"
                          f" {mean['knn_purity']:11.3f}")
                    result["runs"].append({"catalogue": name, "shape": [levels, size], "policy": policy, **mean})
        write_json(args.out, result)


if __name__ == "__main__":
    main()
