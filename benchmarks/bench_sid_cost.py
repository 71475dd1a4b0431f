"""What semantic IDs cost beside the raw embedding at serving time: item-side memory at catalogue
sizes 10^5..10^8 (computed), and measured scoring throughput of the same CTR model (FNN) fed the
item's semantic ID, its raw embedding, or both, over catalogues held in memory.

Memory per item: a semantic ID is L codes (one byte each while K <= 256; rqgmm's feature table
holds them as int64 fields today, 8 bytes each), the raw embedding D float32 (or float16)
numbers. Catalogue-independent parts (code embedding tables L x (K + 1) x d, the embedding's
D x d projection) are listed apart. Throughput: one request context and ``--candidates`` random
catalogue items per forward pass, as the score endpoint builds them, single-threaded by default
(what one serving worker gets), best of ``--repeats``.

Run from the repository root:
    python -m benchmarks.bench_sid_cost [--levels 3 --codebook-size 256 --dim 384]
        [--measure 100000 1000000] [--markdown docs/results/bench-sid-cost.md]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import add_markdown_option, recorded_output
from rqgmm.ctr.features import FeatureLayout
from rqgmm.ctr.item_tables import ItemTables
from rqgmm.ctr.models import build_model

SIZES = (10**5, 10**6, 10**7, 10**8)


def code_bytes(codebook_size: int) -> int:
    """Bytes of the smallest unsigned integer that holds a code below ``codebook_size``."""
    return 1 if codebook_size <= 2**8 else 2 if codebook_size <= 2**16 else 4


def memory_rows(levels: int, codebook_size: int, dim: int, embed_dim: int) -> list[list[str]]:
    """Per item and per catalogue size, in bytes / MiB."""
    per_item = {
        "sid, packed codes": levels * code_bytes(codebook_size),
        "sid, rqgmm's int64 fields": levels * 8,
        "emb, float32": dim * 4,
        "emb, float16": dim * 2,
        "(every set) item-ID embedding row": embed_dim * 4,
    }
    rows = []
    for name, size in per_item.items():
        rows.append([name, f"{size:,}"] + [f"{size * n / 2**20:,.0f}" for n in SIZES])
    fixed_sid = levels * (codebook_size + 1) * embed_dim * 4
    fixed_emb = dim * embed_dim * 4
    rows.append(["(fixed) sid code tables / emb projection", f"{fixed_sid:,} / {fixed_emb:,}", "", "", "", ""])
    return rows


def synthetic_model(features: str, n_items: int, levels: int, codebook_size: int, dim: int, embed_dim: int,
                    seed: int = 0):
    """An FNN over ``n_items`` random items with the layout a real run of ``features`` has (user,
    three categorical fields, one numeric; item ID + levels and/or content)."""
    rng = np.random.default_rng(seed)
    item_fields = ["item_id"]
    cards = [n_items + 1]
    columns = [np.arange(n_items + 1, dtype=np.int64)[:, None]]
    if "sid" in features:
        item_fields += [f"sid_{level}" for level in range(levels)]
        cards += [codebook_size + 1] * levels
        columns.append(rng.integers(1, codebook_size + 1, size=(n_items + 1, levels)))
    content = rng.standard_normal((n_items + 1, dim), dtype=np.float32) if "emb" in features else None
    layout = FeatureLayout(("user_id", "gender", "occupation", "zip"), (6041, 3, 22, 101), tuple(item_fields),
                           tuple(cards), 1, dim if content is not None else 0, 0)
    model = build_model("fnn", layout, ItemTables(np.concatenate(columns, axis=1), content), embed_dim=embed_dim)
    return model.eval()


def candidates_per_second(model, n_items: int, candidates: int, repeats: int, seed: int = 0) -> float:
    generator = torch.Generator().manual_seed(seed)
    best = 0.0
    with torch.inference_mode():
        for _ in range(repeats):
            batch = {"context": torch.tensor([[7, 1, 3, 12]]).repeat(candidates, 1),
                     "numeric": torch.zeros(candidates, 1),
                     "item": torch.randint(1, n_items + 1, (candidates,), generator=generator)}
            model(batch)  # warm-up: first-call allocations are not throughput
            tick = time.perf_counter()
            for _ in range(20):
                model(batch)
            best = max(best, 20 * candidates / (time.perf_counter() - tick))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=384, help="raw embedding width (MiniLM: 384)")
    parser.add_argument("--embed-dim", type=int, default=16, help="the CTR model's field width")
    parser.add_argument("--measure", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="catalogue sizes to build in memory and score from")
    parser.add_argument("--candidates", type=int, default=1000, help="items scored per forward pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one serving worker: 1)")
    add_markdown_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with recorded_output(args.markdown, "What semantic IDs cost beside the raw embedding"):
        print(f"Item-side serving memory: {args.levels} x {args.codebook_size} semantic IDs against {args.dim}-d"
              f" embeddings (bytes per item; MiB per catalogue; computed)")
        header = ["item representation", "bytes / item", *(f"{n:.0e} items (MiB)" for n in SIZES)]
        rows = memory_rows(args.levels, args.codebook_size, args.dim, args.embed_dim)
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
        print()
        print(f"Measured scoring throughput, FNN (embed_dim {args.embed_dim}), {args.candidates} candidates per"
              f" forward pass, {args.threads} torch thread(s), best of {args.repeats}; ratio = against emb at the"
              " same catalogue size")
        print(f"{'catalogue':>10}  {'features':8}  {'item tables MiB':>15}  {'candidates/s':>13}  {'vs emb':>6}")
        for n_items in args.measure:
            speeds = {}
            for features in ("emb", "sid", "sid+emb", "id"):
                model = synthetic_model(features, n_items, args.levels, args.codebook_size, args.dim, args.embed_dim)
                tables = sum(buffer.numel() * buffer.element_size() for name, buffer in model.named_buffers()
                             if name in ("embedding.item_fields", "embedding.item_content")) / 2**20
                speeds[features] = candidates_per_second(model, n_items, args.candidates, args.repeats)
                print(f"{n_items:>10,}  {features:8}  {tables:>15,.1f}  {speeds[features]:>13,.0f}"
                      f"  {speeds[features] / speeds['emb']:>5.2f}x")
                del model


if __name__ == "__main__":
    main()
