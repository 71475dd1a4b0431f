"""Load benchmark of ``rqgmm serve``: a real server process on loopback, real HTTP clients.

A 3 x 256 RQ-KMeans tokenizer on 384-d embeddings (a fitted synthetic mixture), served by
``rqgmm serve`` with an SQLite registry and, for the score part, a FNN run trained for one epoch
on MovieLens-100k with the 3 x 256 IDs of its MiniLM item embeddings. Clients are asyncio aiohttp
tasks in this process (they share the 2 cores with the server, as a co-located client would).

1. single-item ``POST /v1/encode`` (JSON) at 32 concurrent clients: p50 / p99 latency;
2. batch ``POST /v1/encode`` with .npy bodies of 8,192 rows, 4 concurrent: items/s end to end;
3. ``POST /v1/items`` for new items, 1,000 per request, 2 concurrent: items/s with the registry;
4. ``POST /v1/score`` with 100 candidates at 16 concurrent clients: p50 / p99 latency.

Targets (the service issue): p99 <= 20 ms; >= 50,000 items/s; >= 5,000 items/s; p99 <= 30 ms.

Run from the repository root (needs the serve extra):
    python -m benchmarks.bench_serve [--seconds 10] [--skip-score] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import orjson

from benchmarks.common import environment, structured_data, write_json, write_markdown
from rqgmm import RQKMeans

TARGETS = {"encode_p99_ms": 20.0, "batch_items_per_s": 50_000.0, "assign_items_per_s": 5_000.0,
           "score_p99_ms": 30.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(*args) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "rqgmm.cli", "serve", *map(str, args), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not start in 120 s")


async def closed_loop(url: str, path: str, make_request, clients: int, seconds: float) -> dict:
    """``clients`` tasks sending requests back to back for ``seconds`` over keep-alive connections
    (aiohttp: the lightest well-kept asyncio HTTP client; the clients share the machine with the
    server); latencies in ms."""
    import aiohttp

    latencies, items = [], 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base_url=url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        stop = time.perf_counter() + seconds

        async def worker(index: int):
            nonlocal items
            counter = 0
            while time.perf_counter() < stop:
                kwargs, n = make_request(index, counter)
                counter += 1
                started = time.perf_counter()
                async with session.post(path, **kwargs) as reply:
                    body = await reply.read()
                    if reply.status != 200:
                        raise SystemExit(f"{path}: HTTP {reply.status}: {body[:300]!r}")
                latencies.append((time.perf_counter() - started) * 1000)
                items += n

        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    lat = np.array(latencies)
    return {"requests": len(lat), "items": items, "seconds": elapsed, "items_per_s": items / elapsed,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)), "clients": clients}


def ctr_run(directory: Path) -> Path:
    """A FNN run on MovieLens-100k (cold-item split, one epoch) with 3 x 256 IDs of its items."""
    from benchmarks.common import movielens_item_embeddings
    from rqgmm.ctr.run import RunConfig, train_run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        RQKMeans(n_levels=3, codebook_size=256, random_state=0, progress=False).fit(movielens_item_embeddings()).save(
            directory / "ml-tokenizer")
    config = RunConfig(dataset="ml-100k", split="cold-item", model="fnn", features="sid",
                       tokenizer=str(directory / "ml-tokenizer"), history_length=0,
                       training={"max_epochs": 1, "batch_size": 2048, "item_id_dropout": 0.1})
    train_run(config, directory / "run", progress=False)
    return directory / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each closed-loop part")
    parser.add_argument("--skip-score", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="the server's --threads")
    parser.add_argument("--out", default=None)
    parser.add_argument("--markdown", default=None, help="also write a stamped results document (docs/results/…)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    result: dict = {"environment": environment(), "targets": TARGETS}
    with tempfile.TemporaryDirectory(prefix="rqgmm-bench-serve-") as directory:
        directory = Path(directory)
        X = structured_data(100_000, 384)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            RQKMeans(n_levels=3, codebook_size=256, random_state=0, max_iter=10, progress=False).fit(X).save(
                directory / "tokenizer")
        process, url = start_server(directory / "tokenizer", "--registry", directory / "ids.db", "--threads",
                                    args.threads)
        try:
            single = asyncio.run(closed_loop(url, "/v1/encode", lambda i, c: (
                {"json": {"embeddings": [X[(i * 997 + c) % len(X)].tolist()]}}, 1), 32, args.seconds))
            bodies = []
            for start in range(0, 8192 * 4, 8192):
                buffer = io.BytesIO()
                np.save(buffer, X[start:start + 8192])
                bodies.append(buffer.getvalue())
            batch = asyncio.run(closed_loop(url, "/v1/encode", lambda i, c: (
                {"data": bodies[(i + c) % len(bodies)], "headers": {"Content-Type": "application/x-npy"}}, 8192),
                4, args.seconds))
            fresh = iter(range(10**9))

            def new_items(i, c):
                ids = [f"item-{next(fresh)}" for _ in range(1000)]
                rows = X[rng.integers(0, len(X), 1000)]
                body = orjson.dumps({"items": [{"item_id": item, "embedding": row} for item, row in zip(ids, rows)]},
                                    option=orjson.OPT_SERIALIZE_NUMPY)  # as a fast client would send it
                return {"data": body, "headers": {"Content-Type": "application/json"}}, 1000
            assign = asyncio.run(closed_loop(url, "/v1/items", new_items, 2, args.seconds))
        finally:
            process.terminate()
            process.wait(30)
        result.update(single_encode=single, batch_encode=batch, assign=assign)
        print(f"1. single-item encode, 32 clients: {single['requests'] / single['seconds']:,.0f} req/s,"
              f" p50 {single['p50_ms']:.1f} ms, p99 {single['p99_ms']:.1f} ms (target <= {TARGETS['encode_p99_ms']:.0f})")
        print(f"2. batch encode (.npy, 8,192 rows), 4 clients: {batch['items_per_s']:,.0f} items/s"
              f" (target >= {TARGETS['batch_items_per_s']:,.0f})")
        print(f"3. /v1/items, new items, 1,000 per request, 2 clients: {assign['items_per_s']:,.0f} items/s"
              f" (target >= {TARGETS['assign_items_per_s']:,.0f})")
        if not args.skip_score:
            from rqgmm.data.interactions import load_dataset

            run = ctr_run(directory)
            frame = load_dataset("ml-100k").interactions
            item_ids = frame["item_id"].astype(str).unique()
            users = frame.drop_duplicates("user_id")[["user_id", "gender", "occupation", "age"]].to_dict("records")
            process, url = start_server(directory / "ml-tokenizer", "--ctr-run", run, "--threads", args.threads)
            try:
                def score_request(i, c):
                    user = users[(i * 31 + c) % len(users)]
                    picks = rng.choice(item_ids, 100, replace=False)
                    return {"json": {"context": {k: (str(v) if k != "age" else float(v)) for k, v in user.items()},
                                     "candidates": [{"item_id": item} for item in picks]}}, 100
                score = asyncio.run(closed_loop(url, "/v1/score", score_request, 16, args.seconds))
            finally:
                process.terminate()
                process.wait(30)
            result["score"] = score
            print(f"4. score, 100 candidates, 16 clients: {score['requests'] / score['seconds']:,.0f} req/s,"
                  f" p50 {score['p50_ms']:.1f} ms, p99 {score['p99_ms']:.1f} ms (target <= {TARGETS['score_p99_ms']:.0f})")
    write_json(args.out, result)
    rows = []
    for key, name, target in (("single_encode", "single-item POST /v1/encode (JSON), 32 clients", "p99 <= 20 ms"),
                              ("batch_encode", "batch POST /v1/encode (.npy, 8,192 x 384), 4 clients", ">= 50,000 items/s"),
                              ("assign", "POST /v1/items, 1,000 new items per request, 2 clients", ">= 5,000 items/s"),
                              ("score", "POST /v1/score, 100 candidates, 16 clients", "p99 <= 30 ms")):
        if key in result:
            run = result[key]
            rows.append([name, f"{run['requests'] / run['seconds']:,.0f}", f"{run['items_per_s']:,.0f}",
                         f"{run['p50_ms']:.1f}", f"{run['p99_ms']:.1f}", target])
    write_markdown(args.markdown, "Load benchmark of rqgmm serve",
                   ["part", "requests/s", "items/s", "p50 ms", "p99 ms", "target"], rows,
                   f"A real `rqgmm serve` process (`--threads {args.threads}`) on loopback, 3 x 256 RQ-KMeans on 384-d"
                   " embeddings, SQLite registry; the score part serves a FNN run on MovieLens-100k. Clients: asyncio"
                   " aiohttp in the same machine, closed loop for the stated seconds, so mean latency = clients /"
                   " throughput.")


if __name__ == "__main__":
    main()
