"""A week in production: the semantic-ID lifecycle end to end, through the real commands and a
real HTTP service, on MovieLens-100k (MiniLM item embeddings, from the installed packages).

Day 0: fit v1 on the items known then, `rqgmm registry assign`, `rqgmm ctr train` (semantic-ID
features), `rqgmm serve` with the registry and the CTR run. During the week new items arrive
online (`POST /v1/items`, `POST /v1/score`). Then v2 is fitted aligned on the grown catalogue and
the service moves to it with one admin action (`POST /v1/admin/migrate`: registry migration and
switch) while clients keep sending requests; the saved CTR run is carried forward with
`rqgmm ctr remap`, and a restarted service on v2 must agree with the live one.

    python -m tools.week_in_production [--workdir DIR] [--epochs N] [--markdown docs/results/lifecycle.md]

:func:`run_week` returns every measured figure; the tests assert on them, the document shows them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TOKEN = "week-in-production-token-0123456789"


def rqgmm(*args, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run one `rqgmm` command as a user would (a fresh process); fail loudly unless ``check`` is off.
    A command still running after ``timeout`` seconds is stopped and reported with return code -9."""
    try:
        result = subprocess.run([sys.executable, "-m", "rqgmm.cli", *map(str, args)], capture_output=True, text=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=timeout)
    except subprocess.TimeoutExpired:
        result = subprocess.CompletedProcess(args, -9, "", f"still running after {timeout} s")
    if check and result.returncode != 0:
        raise RuntimeError(f"rqgmm {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
    return result


class Service:
    """`rqgmm serve` in a subprocess on a free loopback port; ``url`` once /readyz answers 200."""

    def __init__(self, *args):
        import httpx

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-m", "rqgmm.cli", "serve", *map(str, args), "--port",
                                         str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rqgmm serve exited: {self.process.stderr.read()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("rqgmm serve did not become ready in 120 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def write_catalogue(path: Path, ids: list[str], embeddings: np.ndarray) -> Path:
    from rqgmm.io.tables import write_matrix

    return write_matrix(path, embeddings, np.array(ids, dtype=object), "item_id")


def prepare_data(workdir: Path, new_share: float) -> dict:
    """Day-0 and grown catalogues, and the day-0 CTR data set (interactions before the cut)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rqgmm.data.catalogue import load_catalogue
    from rqgmm.data.interactions import load_dataset

    dataset = load_dataset("ml-100k")
    embeddings = load_catalogue("ml-100k", progress=False).embeddings
    item_ids = dataset.items["item_id"].tolist()
    frame = dataset.interactions
    first_seen = frame.groupby("item_id")["timestamp"].min()
    cut = float(np.quantile(first_seen.to_numpy(), 1 - new_share))
    day0 = [i for i in item_ids if first_seen.get(i, np.inf) <= cut]
    known = set(day0)
    new = [i for i in item_ids if i not in known]
    position = {item: row for row, item in enumerate(item_ids)}
    rows = lambda items: embeddings[[position[i] for i in items]]  # noqa: E731
    write_catalogue(workdir / "day0.parquet", day0, rows(day0))
    seen = frame[frame["timestamp"] <= cut]
    columns = ["user_id", "item_id", "label", "timestamp", "gender", "occupation", "age"]
    pq.write_table(pa.Table.from_pandas(seen[columns], preserve_index=False), workdir / "interactions.parquet")
    (workdir / "day0.yaml").write_text(
        "name: ml-100k-day0\ninteractions: interactions.parquet\nitems: day0.parquet\n"
        "categorical: [gender, occupation]\nnumeric: [age]\nembedding_column: embedding\n")
    users = frame.drop_duplicates("user_id").set_index("user_id")
    return {"day0": day0, "new": new, "rows": rows, "interactions": len(seen),
            "user": {"user_id": "1", **{k: users.loc["1", k] for k in ("gender", "occupation")},
                     "age": float(users.loc["1", "age"])}}


def run_week(workdir: str | Path, *, epochs: int = 3, new_share: float = 0.2, levels: int = 2,
             codebook_size: int = 64, window_seconds: float = 3.0, progress=print) -> dict:
    """The whole week in ``workdir``; returns the figures (see the module doc)."""
    import httpx

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    timings, figures = {}, {}
    started = time.perf_counter()
    data = prepare_data(workdir, new_share)
    day0, new, rows = data["day0"], data["new"], data["rows"]
    arrive_before, arrive_during = new[: int(len(new) * 0.9)], new[int(len(new) * 0.9):]
    timings["data"] = time.perf_counter() - started
    progress(f"day 0: {len(day0)} items, {data['interactions']} interactions; {len(new)} new items this week")

    tick = time.perf_counter()
    shape = ["--method", "rq-kmeans", "--levels", levels, "--codebook-size", codebook_size, "--seed", 0, "-q"]
    rqgmm("fit", workdir / "day0.parquet", "-o", workdir / "tok-v1", *shape)
    rqgmm("registry", "assign", workdir / "ids.db", workdir / "tok-v1", workdir / "day0.parquet")
    rqgmm("ctr", "train", "--dataset", workdir / "day0.yaml", "--model", "fnn", "--features", "sid", "--tokenizer",
          workdir / "tok-v1", "--split", "random", "--epochs", epochs, "-o", workdir / "run-v1", "-q")
    timings["day0"] = time.perf_counter() - tick
    (workdir / "token").write_text(TOKEN + "\n")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    service = Service(workdir / "tok-v1", "--registry", workdir / "ids.db", "--ctr-run", workdir / "run-v1",
                      "--token-file", workdir / "token")
    acknowledged: dict[str, tuple[list[int], str]] = {}  # item -> (sid, version) as the service answered
    lock = threading.Lock()
    try:
        client = httpx.Client(base_url=service.url, headers=auth, timeout=60)
        for start in range(0, len(arrive_before), 25):  # new items arrive online
            batch = arrive_before[start:start + 25]
            reply = client.post("/v1/items", json={"items": [{"item_id": i, "embedding": e.tolist()}
                                                             for i, e in zip(batch, rows(batch))]})
            reply.raise_for_status()
            for item in reply.json()["items"]:
                acknowledged[item["item_id"]] = (item["sid"], item["version"])
        probe = day0[::max(1, len(day0) // 150)] + arrive_before[:40]
        candidates = [{"item_id": i, "embedding": e.tolist()} for i, e in zip(probe, rows(probe))]
        before = client.post("/v1/score", json={"context": data["user"], "candidates": candidates})
        before.raise_for_status()
        scores_before = dict(zip(probe, before.json()["scores"]))
        progress(f"week: {len(arrive_before)} new items assigned online and scored")

        tick = time.perf_counter()  # v2, aligned with v1, on the catalogue as written before the switch
        grown = day0 + arrive_before
        write_catalogue(workdir / "grown.parquet", grown, rows(grown))
        rqgmm("fit", workdir / "grown.parquet", "-o", workdir / "tok-v2", *shape, "--previous", workdir / "tok-v1")
        timings["refit"] = time.perf_counter() - tick

        answers, pending = [], list(arrive_during)  # clients keep sending requests across the switch
        stop = threading.Event()

        def send(kind: str, request) -> None:
            tick = time.perf_counter()
            reply = request()
            with lock:
                answers.append((kind, reply.status_code, time.perf_counter() - tick, reply.text[:300]))
            if kind == "items" and reply.status_code == 200:
                for item in reply.json()["items"]:
                    with lock:
                        acknowledged[item["item_id"]] = (item["sid"], item["version"])

        def worker(seed: int) -> None:
            local = httpx.Client(base_url=service.url, headers=auth, timeout=60)
            rng = np.random.default_rng(seed)
            while not stop.is_set():
                choice = rng.integers(3)
                if choice == 0:
                    picked = [day0[k] for k in rng.integers(len(day0), size=8)]
                    send("encode", lambda: local.post("/v1/encode", json={"embeddings": rows(picked).tolist()}))
                elif choice == 1:
                    with lock:
                        item = pending.pop() if pending else day0[int(rng.integers(len(day0)))]
                    send("items", lambda: local.post("/v1/items", json={"items": [
                        {"item_id": item, "embedding": rows([item])[0].tolist()}]}))
                else:
                    send("score", lambda: local.post("/v1/score", json={"context": data["user"],
                                                                        "candidates": candidates}))

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(window_seconds / 2)
        tick = time.perf_counter()
        migrated = client.post("/v1/admin/migrate", json={"tokenizer": str(workdir / "tok-v2"),
                                                          "catalogue": str(workdir / "grown.parquet")})
        timings["migrate"] = time.perf_counter() - tick
        time.sleep(window_seconds / 2)
        stop.set()
        for thread in threads:
            thread.join()
        if migrated.status_code != 200:
            raise RuntimeError(f"/v1/admin/migrate answered {migrated.status_code}: {migrated.text}")
        figures["migrate"] = migrated.json()
        ready = client.get("/readyz").json()
        after = client.post("/v1/score", json={"context": data["user"], "candidates": candidates})
        after.raise_for_status()
        scores_after = dict(zip(probe, after.json()["scores"]))
        online_after = {item: client.get(f"/v1/items/{item}").json() for item in acknowledged}
    finally:
        service.stop()
    progress(f"switch: {figures['migrate']['migrated']} items migrated, {figures['migrate']['changed']} IDs changed,"
             f" {len(answers)} requests answered during the window")

    rqgmm("registry", "mapping", workdir / "ids.db", "-o", workdir / "mapping.parquet")
    rqgmm("ctr", "remap", workdir / "run-v1", "--registry", workdir / "ids.db", "-o", workdir / "run-v2", "-q")
    # a service whose parts disagree must refuse to start, naming the command that fixes it
    stale = [rqgmm("serve", workdir / tok, "--registry", workdir / "ids.db", "--ctr-run", workdir / run, "--port", 0,
                   check=False, timeout=60) for tok, run in (("tok-v2", "run-v1"), ("tok-v1", "run-v2"))]
    restarted = Service(workdir / "tok-v2", "--registry", workdir / "ids.db", "--ctr-run", workdir / "run-v2",
                        "--token-file", workdir / "token")
    try:
        again = httpx.post(f"{restarted.url}/v1/score", json={"context": data["user"], "candidates": candidates},
                           headers=auth, timeout=60)
        again.raise_for_status()
        scores_restarted = dict(zip(probe, again.json()["scores"]))
    finally:
        restarted.stop()
    check = rqgmm("registry", "check", workdir / "ids.db", check=False)

    import pyarrow.parquet as pq

    mapping = pq.read_table(workdir / "mapping.parquet").to_pandas().set_index("item_id")
    v1, v2 = (json.loads(rqgmm("info", workdir / t, "--json").stdout)["version"] for t in ("tok-v1", "tok-v2"))
    unchanged = [i for i in probe if not mapping.loc[i, "changed"]]
    moved = [i for i in probe if mapping.loc[i, "changed"]]
    lost, wrong = [], []
    for item, (sid, version) in acknowledged.items():
        now = online_after[item]
        if "sid" not in now:
            lost.append(item)
            continue
        expected = sid if version == v2 else [int(x) for x in mapping.loc[item, "new_sid"].split("-")]
        if now["sid"] != expected:
            wrong.append(item)
    latencies = np.array([a[2] for a in answers]) * 1000
    figures.update({
        "versions": {"v1": v1, "v2": v2}, "day0_items": len(day0), "new_items": len(new),
        "interactions": data["interactions"], "ready_after": ready,
        "requests": len(answers), "failed": [a for a in answers if a[1] != 200],
        "by_kind": {kind: sum(a[0] == kind for a in answers) for kind in ("encode", "items", "score")},
        "latency_ms": {"p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99)),
                       "max": float(latencies.max())},
        "acknowledged": len(acknowledged), "lost": lost, "wrong_ids": wrong,
        "arrived_during_window": len(arrive_during) - len(pending),
        "probe": {"items": len(probe), "unchanged": len(unchanged), "moved": len(moved)},
        "unchanged_max_score_change": max((abs(scores_after[i] - scores_before[i]) for i in unchanged), default=0.0),
        "moved_mean_score_change": float(np.mean([abs(scores_after[i] - scores_before[i]) for i in moved]))
        if moved else 0.0,
        "restart_max_difference": max(abs(scores_restarted[i] - scores_after[i]) for i in probe),
        "stale_starts_refused": [(r.returncode > 0, (r.stderr.strip().splitlines() or [""])[-1].replace(
            f"{workdir}/", "")) for r in stale],
        "registry_check": check.stdout.strip() or check.stderr.strip(), "registry_check_ok": check.returncode == 0,
        "churn": float(mapping["changed"].mean()), "seconds": timings,
    })
    figures["seconds"]["total"] = time.perf_counter() - started
    return figures


def format_week(figures: dict) -> str:
    """The week's figures as the text of the results document."""
    f = figures
    lines = [
        f"tokenizer v1 {f['versions']['v1']} -> v2 {f['versions']['v2']} (RQ-KMeans, aligned refit)",
        f"day 0: {f['day0_items']} items, {f['interactions']} interactions; {f['new_items']} new items this week",
        f"registry migration: {f['migrate']['migrated']} items, {f['migrate']['changed']} IDs changed"
        f" ({f['churn']:.1%} of the mapping), /v1/admin/migrate took {f['seconds']['migrate']:.2f} s",
        f"requests during the switch: {f['requests']} ({f['by_kind']}), failed: {len(f['failed'])};"
        f" latency p50 {f['latency_ms']['p50']:.1f} ms, p99 {f['latency_ms']['p99']:.1f} ms,"
        f" max {f['latency_ms']['max']:.1f} ms",
        f"new items arriving during the switch: {f['arrived_during_window']}",
        f"acknowledged IDs: {f['acknowledged']}; lost {len(f['lost'])}, not where the mapping says"
        f" {len(f['wrong_ids'])}",
        f"probe items scored before and after: {f['probe']['items']} ({f['probe']['unchanged']} kept their ID,"
        f" {f['probe']['moved']} moved)",
        f"largest score change of an item that kept its ID: {f['unchanged_max_score_change']:.2e}",
        f"mean score change of a moved item: {f['moved_mean_score_change']:.4f}",
        f"restarted service (tok-v2 + remapped run) vs live service after the switch: largest score difference"
        f" {f['restart_max_difference']:.2e}",
        *(f"stale start {'refused' if refused else 'NOT REFUSED'}: {line}" for refused, line in f["stale_starts_refused"]),
        f"registry check: {f['registry_check']}",
        f"readiness after the switch: {json.dumps(f['ready_after'])}",
        "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in f["seconds"].items()),
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=None, help="Where the week's files go (default: a temporary directory).")
    parser.add_argument("--epochs", type=int, default=3, help="CTR training epochs at most.")
    parser.add_argument("--markdown", default=None, help="Also write the results document here.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rqgmm-week-") as scratch:
        figures = run_week(args.workdir or scratch, epochs=args.epochs)
    text = format_week(figures)
    print(text)
    if args.markdown:
        from rqgmm.experiment.engine import produced_by, provenance
        from rqgmm.io.atomic import atomic_path

        stamp = provenance()
        stamp["command"] = "python -m tools.week_in_production " + " ".join(argv or sys.argv[1:])
        with atomic_path(Path(args.markdown), overwrite=True) as tmp:
            Path(tmp).write_text(f"# A week in production\n\n{produced_by(stamp)}\n\n```\n{text}\n```\n")
    ok = (not figures["failed"] and not figures["lost"] and not figures["wrong_ids"]
          and figures["unchanged_max_score_change"] <= 1e-6 and figures["restart_max_difference"] <= 1e-6
          and figures["registry_check_ok"] and all(refused for refused, _ in figures["stale_starts_refused"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
