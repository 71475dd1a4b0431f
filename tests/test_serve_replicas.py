"""Chaos: two `rqgmm serve` replicas on one PostgreSQL registry assign overlapping new items at
the same time; one is SIGKILLed mid-stream and restarted. No ID is held twice, every
acknowledged assignment is kept, and the registry's check is clean."""

import concurrent.futures
import signal
import threading

import httpx
import numpy as np

from rqgmm.registry import IDRegistry
from tests.test_serve import TOKEN, Server, auth, catalogue, tokenizers  # noqa: F401 - fixtures


def test_two_replicas_one_killed_mid_stream_keep_every_acknowledged_id(  # noqa: F811 - fixtures
        tmp_path, postgres_server, tokenizers, catalogue):  # noqa: F811
    url = postgres_server.create_database()
    (tmp_path / "token").write_text(TOKEN + "\n")
    args = (tokenizers[0], "--registry", url, "--token-file", tmp_path / "token")
    replicas = [Server(*args), Server(*args)]
    rng = np.random.default_rng(0)
    # 600 items in batches of 10
    items = [f"item-{k}" for k in range(600)]
    batches = [items[start:start + 10] for start in range(0, len(items), 10)]
    acknowledged: dict[str, list] = {}
    lock = threading.Lock()
    failures = []

    def send(replica_index: int, batch: list[str]) -> None:
        body = {"items": [{"item_id": item, "embedding": catalogue[int(item.split("-")[1])].tolist()}
                          for item in batch]}
        try:
            reply = httpx.post(f"{replicas[replica_index].url}/v1/items", json=body, headers=auth(), timeout=30)
        except httpx.TransportError as error:  # the killed replica: not acknowledged, fine
            failures.append(type(error).__name__)
            return
        if reply.status_code != 200:
            failures.append(reply.status_code)
            return
        with lock:
            for item in reply.json()["items"]:
                acknowledged.setdefault(item["item_id"], []).append(tuple(item["sid"]))

    # each batch goes to one replica, then again (shuffled) to the other: every item arrives twice
    order = [(index % 2, batch) for index, batch in enumerate(batches)] + \
            [((index + 1) % 2, batches[index]) for index in rng.permutation(len(batches)).tolist()]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(send, replica, batch) for replica, batch in order]
        # kill replica 0 once a third of the requests are done, then start it again
        while sum(f.done() for f in futures) < len(futures) // 3:
            threading.Event().wait(0.02)
        done_at_kill = sum(f.done() for f in futures)
        replicas[0].stop(signal.SIGKILL)
        replicas[0] = Server(*args)
        concurrent.futures.wait(futures)
    # everything not yet acknowledged is sent again, to the restarted replica
    for batch in batches:
        if any(item not in acknowledged for item in batch):
            send(0, batch)
    for replica in replicas:
        replica.stop()
    assert done_at_kill < len(order)  # the kill came mid-stream
    assert all(failure in ("ConnectError", "RemoteProtocolError", "ReadError", 503) for failure in failures), failures
    with IDRegistry(url) as store:
        held = {item_id: tuple(int(x) for x in sid.split("-")) for item_id, sid, *_ in store.items()}
        assert store.check() == []
    assert set(held) == set(items)
    assert len(set(held.values())) == len(held)  # no ID held twice
    # every acknowledged answer (from either replica, before or after the kill) is the registry's
    for item_id, answers in acknowledged.items():
        assert set(answers) == {held[item_id]}, (item_id, answers, held[item_id])


def test_workers_share_one_port_one_registry_and_one_set_of_metrics(tmp_path, postgres_server, tokenizers,  # noqa: F811
                                                                    catalogue):  # noqa: F811
    url = postgres_server.create_database()
    (tmp_path / "token").write_text(TOKEN + "\n")
    server = Server(tokenizers[0], "--registry", url, "--token-file", tmp_path / "token", "--workers", "2")
    try:
        def assign(start: int) -> list:
            body = {"items": [{"item_id": f"w{k}", "embedding": catalogue[k].tolist()} for k in range(start, start + 5)]}
            reply = httpx.post(f"{server.url}/v1/items", json=body, headers=auth(), timeout=30)
            assert reply.status_code == 200, reply.text
            return reply.json()["items"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = [item for batch in pool.map(assign, [k % 40 for k in range(0, 400, 5)]) for item in batch]
        # the same 40 items asked for twice each, through whichever worker answered: one ID each
        by_item: dict[str, set] = {}
        for item in answers:
            by_item.setdefault(item["item_id"], set()).add(tuple(item["sid"]))
        assert len(by_item) == 40 and all(len(ids) == 1 for ids in by_item.values())
        assert len({ids.pop() for ids in by_item.values()}) == 40
        # /metrics, from whichever worker answers, counts the requests of both (8 clients on 2
        # workers: each worker answers some; a per-process count would fall short of 80)
        metrics = httpx.get(f"{server.url}/metrics").text
        total = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith('rqgmm_requests_total{endpoint="items",status="200"'))
        assert total == 80, metrics[:2000]
    finally:
        server.stop()
    assert server.process.returncode == 0  # SIGTERM: a graceful shutdown
    with IDRegistry(url) as store:
        assert len(store.items()) == 40 and store.check() == []
