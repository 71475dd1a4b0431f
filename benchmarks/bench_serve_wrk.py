"""Load benchmark of ``rqgmm serve`` driven by ``wrk`` (a compiled load generator, Debian's
package) on loopback, so the client takes little of the CPU the server needs; one row per
(registry backend, workers) configuration.

The server: a 3 x 256 RQ-KMeans tokenizer on 384-d embeddings (a fitted synthetic mixture), an
SQLite or PostgreSQL registry (a throwaway local server, unix socket), 1 or 2 workers; for the
score part a FNN run on MovieLens-100k with 3 x 256 IDs of its MiniLM items. wrk's Lua scripts
send the POST bodies: single-item encode bodies, new-item batches with ids unique per thread and
request (each item's embedding one of --distinct synthetic rows), 100-candidate score requests.

1. single-item ``POST /v1/encode`` at 32 connections: requests/s, p50 / p99;
2. ``POST /v1/items``, 100 new items per request, 8 connections: items/s with the registry;
3. ``POST /v1/score``, 100 candidates, 16 connections: p50 / p99.

Targets (the service issue, this 2-core machine): encode p99 <= 20 ms and >= 2,500 requests/s;
new items on PostgreSQL with 2 workers >= 10,000 items/s; score p99 <= 30 ms.

Run from the repository root (needs the serve and postgres extras, wrk and PostgreSQL):
    python -m benchmarks.bench_serve_wrk [--seconds 10] [--configs sqlite:1 postgresql:1 postgresql:2]
        [--profile] [--markdown docs/results/bench-serve-wrk.md]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from benchmarks.bench_serve import ctr_run, start_server
from benchmarks.common import add_markdown_option, recorded_output, structured_data
from rqgmm import RQKMeans

ITEMS_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {TOKEN}"
local rows = {ROWS}
local counter = 0
thread_id = 0
local next_thread = 0
setup = function(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
end
request = function()
  counter = counter + 1
  local parts = {}
  for k = 1, {PER_REQUEST} do
    parts[k] = '{"item_id": "t' .. thread_id .. '-' .. counter .. '-' .. k .. '", "embedding": '
               .. rows[((counter * 7 + k) % #rows) + 1] .. '}'
  end
  return wrk.format(nil, nil, nil, '{"items": [' .. table.concat(parts, ",") .. ']}')
end
"""

# the next of a list of ready-made JSON bodies (encode and score requests)
BODIES_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {BODIES}
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])
end
"""

TOKEN = "benchmark-token-0123456789abcdef"


def lua_strings(values: list[str]) -> str:
    return "{" + ",".join("[==[" + value + "]==]" for value in values) + "}"


def run_wrk(url: str, script: str, connections: int, seconds: float, directory: Path) -> dict:
    """wrk against ``url`` with the Lua ``script``: requests/s and latency percentiles (ms)."""
    path = directory / f"script-{abs(hash(script))}.lua"
    path.write_text(script)
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--latency", "-s", str(path), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    requests = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} requests failed under load:\n{output}")
    latency = {}
    for percentile in ("50", "99"):
        value, unit = re.search(rf"\s{percentile}%\s+([\d.]+)(us|ms|s)", output).groups()
        latency[percentile] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    return {"requests_per_s": requests, "p50_ms": latency["50"], "p99_ms": latency["99"]}


def profile(pid: int, seconds: float, path: Path) -> str:
    """py-spy's top functions of the server process over ``seconds`` (the caller drives load)."""
    raw = path.with_suffix(".txt")
    beside = Path(sys.executable).parent / "py-spy"  # a virtual environment's scripts are not always on PATH
    spy = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    subprocess.run([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--format", "raw",
                    "--output", str(raw), "--nonblocking"], capture_output=True, check=True)
    totals: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.split(";")[-1] if stack else "?"
        totals[leaf] = totals.get(leaf, 0) + int(count)
    total = sum(totals.values()) or 1
    top = sorted(totals.items(), key=lambda item: -item[1])[:12]
    return "\n".join(f"  {count / total:6.1%}  {name}" for name, count in top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--configs", nargs="+", default=["sqlite:1", "sqlite:2", "postgresql:1", "postgresql:2"],
                        help="registry:workers rows")
    parser.add_argument("--per-request", type=int, default=100, help="new items per /v1/items request")
    parser.add_argument("--distinct", type=int, default=2048,
                        help="distinct embeddings new items are drawn from (few: every request writes under the"
                             " same code prefixes, which writers take turns on)")
    parser.add_argument("--skip-score", action="store_true")
    parser.add_argument("--profile", action="store_true", help="py-spy the single-worker SQLite server under load")
    add_markdown_option(parser)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    with recorded_output(args.markdown, "Load benchmark of rqgmm serve, driven by wrk"), \
            tempfile.TemporaryDirectory(prefix="rqgmm-wrk-") as directory:
        directory = Path(directory)
        (directory / "token").write_text(TOKEN + "\n")
        X = structured_data(100_000, 384)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            RQKMeans(n_levels=3, codebook_size=256, random_state=0, max_iter=10, progress=False).fit(X).save(
                directory / "tokenizer")
        rows = [json.dumps([round(float(v), 5) for v in X[k]]) for k in range(args.distinct)]
        encode_script = BODIES_LUA.replace("{BODIES}", lua_strings(['{"embeddings": [' + row + "]}"
                                                                     for row in rows[:64]]))
        items_script = (ITEMS_LUA.replace("{ROWS}", lua_strings(rows)).replace("{TOKEN}", TOKEN)
                        .replace("{PER_REQUEST}", str(args.per_request)))
        print(f"wrk 1 thread on loopback, {args.seconds:g} s per part; server: 3 x 256 RQ-KMeans, 384-d, --threads 1")
        print(f"{'registry':10} {'workers':>7}  {'encode req/s':>12} {'p50 ms':>7} {'p99 ms':>7}"
              f"  {'new items/s':>11} {'p99 ms':>7}")
        server = None
        for config in args.configs:
            backend, workers = config.split(":")
            if backend == "postgresql":
                from rqgmm.testing.postgres import PostgresServer

                server = server or PostgresServer()
                registry = server.create_database()
            else:
                registry = str(directory / f"ids-{config.replace(':', '-')}.db")
            process, url = start_server(directory / "tokenizer", "--registry", registry, "--token-file",
                                        directory / "token", "--workers", workers)
            try:
                encode = run_wrk(f"{url}/v1/encode", encode_script, 32, args.seconds, directory)
                if args.profile and config == "sqlite:1":
                    import threading

                    load = threading.Thread(target=run_wrk, args=(f"{url}/v1/encode", encode_script, 32,
                                                                  args.seconds + 2, directory))
                    load.start()
                    encode_profile = profile(process.pid, args.seconds, directory / "encode")
                    load.join()
                items = run_wrk(f"{url}/v1/items", items_script, 8, args.seconds, directory)
            finally:
                process.terminate()
                process.wait(60)
            print(f"{backend:10} {workers:>7}  {encode['requests_per_s']:>12,.0f} {encode['p50_ms']:>7.1f}"
                  f" {encode['p99_ms']:>7.1f}  {items['requests_per_s'] * args.per_request:>11,.0f}"
                  f" {items['p99_ms']:>7.1f}")
        if server is not None:
            server.stop()
        if args.profile and "sqlite:1" in args.configs:
            print("\nWhere the single-worker server spends its time under single-item encode load (py-spy, leaf"
                  " functions, share of samples):")
            print(encode_profile)
        if not args.skip_score:
            from rqgmm.data.interactions import load_dataset

            run = ctr_run(directory)
            frame = load_dataset("ml-100k").interactions
            item_ids = frame["item_id"].astype(str).unique()
            users = frame.drop_duplicates("user_id")[["user_id", "gender", "occupation", "age"]].to_dict("records")
            rng = np.random.default_rng(0)
            bodies = [json.dumps({"context": {k: (str(v) if k != "age" else float(v)) for k, v in users[k % len(users)].items()},
                                  "candidates": [{"item_id": item} for item in rng.choice(item_ids, 100, replace=False)]})
                      for k in range(64)]
            process, url = start_server(directory / "ml-tokenizer", "--ctr-run", run)
            try:
                score = run_wrk(f"{url}/v1/score", BODIES_LUA.replace("{BODIES}", lua_strings(bodies)), 16,
                                args.seconds, directory)
            finally:
                process.terminate()
                process.wait(60)
            print(f"\nscore, 100 candidates, 16 connections, 1 worker: {score['requests_per_s']:,.0f} req/s,"
                  f" p50 {score['p50_ms']:.1f} ms, p99 {score['p99_ms']:.1f} ms")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
