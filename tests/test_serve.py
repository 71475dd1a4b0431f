"""`rqgmm serve`: a real server process on a free loopback port, a real HTTP client."""

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from rqgmm import RQKMeans, load  # noqa: E402
from rqgmm.registry import IDRegistry  # noqa: E402
from tests.conftest import mixture_sample  # noqa: E402

TOKEN = "s3cret-token-for-tests-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``rqgmm serve`` in a subprocess; ``url`` once /healthz answers."""

    def __init__(self, *args, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "rqgmm.cli", "serve", *map(str, args), "--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **(env or {})})
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(20)


@pytest.fixture(scope="module")
def catalogue():
    X, _ = mixture_sample(n=3000, dim=16, n_components=24, separation=3.0, seed=5)
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory, catalogue):
    root = tmp_path_factory.mktemp("tokenizers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v1 = RQKMeans(n_levels=2, codebook_size=16, random_state=0, progress=False).fit(catalogue[:2000])
        v2 = RQKMeans(n_levels=2, codebook_size=16, random_state=0, progress=False).fit(catalogue, previous=v1)
    v1.save(root / "v1")
    v2.save(root / "v2")
    return root / "v1", root / "v2"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tokenizers):
    root = tmp_path_factory.mktemp("service")
    (root / "token").write_text(TOKEN + "\n")
    running = Server(tokenizers[0], "--registry", root / "ids.db", "--token-file", root / "token")
    yield running, root
    running.stop()


def auth():
    return {"Authorization": f"Bearer {TOKEN}"}


def test_encode_over_http_equals_the_library_json_and_npy(server, tokenizers, catalogue):
    running, _ = server
    tokenizer = load(tokenizers[0])
    rows = catalogue[:300]
    reply = httpx.post(f"{running.url}/v1/encode", json={"embeddings": rows.tolist()})
    assert reply.status_code == 200
    body = reply.json()
    np.testing.assert_array_equal(np.array(body["codes"]), tokenizer.encode(rows))
    assert body["version"] == tokenizer.version
    buffer = io.BytesIO()
    np.save(buffer, rows)
    binary = httpx.post(f"{running.url}/v1/encode", content=buffer.getvalue(),
                        headers={"Content-Type": "application/x-npy"})
    assert binary.status_code == 200 and binary.headers["X-RQGMM-Version"] == body["version"]
    np.testing.assert_array_equal(np.load(io.BytesIO(binary.content)), tokenizer.encode(rows))
    repaired = httpx.post(f"{running.url}/v1/encode", json={"embeddings": rows.tolist(), "collisions": "suffix"})
    np.testing.assert_array_equal(np.array(repaired.json()["codes"]), tokenizer.encode(rows, collisions="suffix"))


def test_concurrent_single_item_requests_are_batched_and_answered_correctly(server, tokenizers, catalogue):
    running, _ = server
    tokenizer = load(tokenizers[0])
    rows = catalogue[:64]

    def one(i):
        return httpx.post(f"{running.url}/v1/encode", json={"embeddings": [rows[i].tolist()]}).json()["codes"][0]

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(one, range(len(rows))))
    np.testing.assert_array_equal(np.array(codes), tokenizer.encode(rows))
    metrics = httpx.get(f"{running.url}/metrics").text
    assert "rqgmm_encode_batch_rows_bucket" in metrics and 'rqgmm_requests_total{endpoint="encode",status="200"}' in metrics


def test_items_are_assigned_once_and_idempotent(server, catalogue):
    running, root = server
    items = [{"item_id": f"item-{i}", "embedding": catalogue[i].tolist()} for i in range(50)]
    first = httpx.post(f"{running.url}/v1/items", json={"items": items}, headers=auth())
    assert first.status_code == 200, first.text
    again = httpx.post(f"{running.url}/v1/items", json={"items": items[::-1]}, headers=auth())
    by_id = {item["item_id"]: item["sid"] for item in first.json()["items"]}
    assert {item["item_id"]: item["sid"] for item in again.json()["items"]} == by_id
    sids = [tuple(sid) for sid in by_id.values()]
    assert len(set(sids)) == len(sids)  # the registry's suffix separates equal codes
    lookup = httpx.get(f"{running.url}/v1/items/item-7")
    assert lookup.status_code == 200 and lookup.json()["sid"] == by_id["item-7"]
    assert httpx.get(f"{running.url}/v1/items/nobody").status_code == 404
    assert "rqgmm_items_assigned_total 50.0" in httpx.get(f"{running.url}/metrics").text


@pytest.mark.parametrize("request_kwargs, status, message", [
    ({"content": b"{not json"}, 400, "not valid JSON"),
    ({"json": {"embeddings": [[1.0, 2.0]]}}, 422, "shape (n, 16)"),
    ({"content": b'{"embeddings": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, NaN]]}'}, 422,
     "row 0 holds NaN or Inf"),
    ({"json": {"embeddings": [[1.0] * 16], "collisions": "magic"}}, 422, "collisions must be one of"),
    ({"json": {"embeddings": "x"}}, 422, "non-empty list"),
    ({"content": b"not an npy", "headers": {"Content-Type": "application/x-npy"}}, 400, "not a .npy"),
])
def test_bad_requests_get_a_4xx_with_one_line(server, request_kwargs, status, message):
    running, _ = server
    reply = httpx.post(f"{running.url}/v1/encode", **request_kwargs)
    assert reply.status_code == status and message in reply.json()["error"], reply.text


def test_write_endpoints_need_the_token_and_bodies_are_bounded(server):
    running, _ = server
    body = {"items": [{"item_id": "x", "embedding": [0.0] * 16}]}
    assert httpx.post(f"{running.url}/v1/items", json=body).status_code == 401
    assert httpx.post(f"{running.url}/v1/items", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(f"{running.url}/v1/admin/reload", headers={"Authorization": "Basic x"}).status_code == 401
    huge = b"[" + b"0," * (40 * 2**20) + b"0]"
    assert httpx.post(f"{running.url}/v1/encode", content=huge).status_code == 413


def test_reload_under_load_switches_versions_without_a_failed_request(tokenizers, catalogue):
    running = Server(tokenizers[0])  # no registry: any tokenizer of the same width may be swapped in
    rows = catalogue[:8].tolist()
    old, new = load(tokenizers[0]), load(tokenizers[1])
    stop = time.time() + 3.0
    answers = []

    def client():
        while time.time() < stop:
            reply = httpx.post(f"{running.url}/v1/encode", json={"embeddings": rows})
            answers.append((reply.status_code, reply.json()))

    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client) for _ in range(4)]
            time.sleep(1.0)
            reloaded = httpx.post(f"{running.url}/v1/admin/reload", json={"path": str(tokenizers[1])})
            for future in futures:
                future.result()
        assert reloaded.status_code == 200 and reloaded.json()["version"] == new.version
        assert all(status == 200 for status, _ in answers) and len(answers) > 10
        expected = {old.version: old.encode(catalogue[:8]).tolist(), new.version: new.encode(catalogue[:8]).tolist()}
        seen = set()
        for _, body in answers:  # every answer is the codes of the version it names
            assert body["codes"] == expected[body["version"]]
            seen.add(body["version"])
        assert seen == {old.version, new.version}
        assert httpx.get(f"{running.url}/v1/tokenizer").json()["version"] == new.version
    finally:
        running.stop()


def test_a_non_loopback_bind_without_a_token_is_refused(tokenizers):
    from click.testing import CliRunner

    from rqgmm.cli import main

    result = CliRunner().invoke(main, ["serve", str(tokenizers[0]), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--token-file" in result.output


def test_acknowledged_assignments_survive_a_sigkill(tmp_path, tokenizers, catalogue):
    running = Server(tokenizers[0], "--registry", tmp_path / "ids.db")
    acknowledged = {}
    try:
        def assign(start):
            items = [{"item_id": f"n{i}", "embedding": catalogue[i].tolist()} for i in range(start, start + 20)]
            reply = httpx.post(f"{running.url}/v1/items", json={"items": items}, timeout=10)
            return {item["item_id"]: item["sid"] for item in reply.json()["items"]}

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(assign, start) for start in range(0, 1600, 20)]
            time.sleep(0.8)
            running.stop(signal.SIGKILL)
            for future in futures:
                try:
                    acknowledged.update(future.result())
                except httpx.TransportError:
                    pass  # in flight when the server died: not acknowledged
    finally:
        running.stop(signal.SIGKILL)
    assert acknowledged, "no assignment finished before the kill; the test did not test anything"
    registry = IDRegistry(tmp_path / "ids.db")
    assert registry.check() == []
    for item_id, sid in acknowledged.items():
        assert list(registry.lookup(item_id).sid) == sid
    sids = [item[1] for item in registry.items()]
    assert len(set(sids)) == len(sids)
    registry.close()


def test_scores_over_http_equal_offline_predictions_and_new_items_score_like_cold_ones(tmp_path):
    from rqgmm.ctr.run import RunConfig, load_run, prepare_run, train_run
    from rqgmm.ctr.training import predict
    from tests.test_ctr import synthetic_tables

    interactions, items, content = synthetic_tables()
    interactions.to_parquet(tmp_path / "interactions.parquet")
    items.to_parquet(tmp_path / "items.parquet")
    (tmp_path / "data.yaml").write_text(
        "name: synthetic\ninteractions: interactions.parquet\nitems: items.parquet\n"
        "columns: {user_id: uid, item_id: sku, label: clicked, timestamp: ts}\n"
        "categorical: [device]\nnumeric: [price]\nembedding_column: embedding\n")
    RQKMeans(n_levels=2, codebook_size=[4, 4], random_state=0, progress=False).fit(content).save(tmp_path / "tok")
    config = RunConfig(dataset=str(tmp_path / "data.yaml"), split="cold-item", model="fnn", features="sid+emb",
                       tokenizer=str(tmp_path / "tok"), history_length=0,
                       model_params={"embed_dim": 8, "hidden_dims": [32]},
                       training={"max_epochs": 2, "batch_size": 256, "learning_rate": 1e-2, "item_id_dropout": 0.1})
    train_run(config, tmp_path / "run", progress=False)
    data = prepare_run(config, progress=False)
    _, _, model = load_run(tmp_path / "run")
    rows = data.split.test[:40]
    frame = data.dataset.interactions.iloc[rows]
    offline = predict(model, {k: v[:40] for k, v in data.inputs["test"].items()})
    (tmp_path / "token").write_text(TOKEN)
    running = Server(tmp_path / "tok", "--registry", tmp_path / "ids.db", "--ctr-run", tmp_path / "run",
                     "--token-file", tmp_path / "token")
    try:
        served = []
        for _, row in frame.iterrows():
            reply = httpx.post(f"{running.url}/v1/score", headers=auth(), json={
                "context": {"user_id": row["user_id"], "device": row["device"], "price": float(row["price"])},
                "candidates": [{"item_id": row["item_id"]}]})
            assert reply.status_code == 200, reply.text
            served.append(reply.json()["scores"][0])
        np.testing.assert_allclose(served, offline, rtol=1e-5, atol=1e-7)
        # a brand-new item carrying a cold item's embedding gets an ID from the registry and the
        # cold item's score (both: unknown item ID, the same semantic ID and content)
        cold = frame[data.cold["test"][:40]].iloc[0]
        position = int(np.flatnonzero(items["sku"].astype(str).to_numpy() == str(cold["item_id"]))[0])
        context = {"user_id": cold["user_id"], "device": cold["device"], "price": float(cold["price"])}
        reply = httpx.post(f"{running.url}/v1/score", headers=auth(), json={"context": context, "candidates": [
            {"item_id": cold["item_id"]}, {"item_id": "brand-new", "embedding": content[position].tolist()}]})
        body = reply.json()
        assert body["scores"][1] == pytest.approx(body["scores"][0], rel=1e-6)
        assert body["items"][1]["sid"][:2] == load(tmp_path / "tok").encode(content[position:position + 1])[0].tolist()
        assert httpx.get(f"{running.url}/v1/items/brand-new").json()["sid"] == body["items"][1]["sid"]
        missing = httpx.post(f"{running.url}/v1/score", headers=auth(), json={
            "context": context, "candidates": [{"item_id": "another-new-one"}]})
        assert missing.status_code == 422 and "send its embedding" in missing.json()["error"]
        assert httpx.post(f"{running.url}/v1/score", json={"context": context, "candidates": []}).status_code == 401
    finally:
        running.stop()


def test_sighup_reloads_the_tokenizer_directory(tmp_path, tokenizers, catalogue):
    import shutil

    shutil.copytree(tokenizers[0], tmp_path / "current")
    running = Server(tmp_path / "current")
    try:
        before = httpx.get(f"{running.url}/v1/tokenizer").json()
        load(tokenizers[1]).save(tmp_path / "current", overwrite=True)  # a new version, swapped in atomically
        running.process.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline:
            after = httpx.get(f"{running.url}/v1/tokenizer").json()
            if after["version"] != before["version"]:
                break
            time.sleep(0.2)
        assert after["version"] == load(tokenizers[1]).version != before["version"]
        reply = httpx.post(f"{running.url}/v1/encode", json={"embeddings": catalogue[:20].tolist()}).json()
        np.testing.assert_array_equal(np.array(reply["codes"]), load(tokenizers[1]).encode(catalogue[:20]))
        # a broken tokenizer on the next SIGHUP: the service keeps the version it has and says why
        (tmp_path / "current" / "manifest.json").write_text("{not json")
        running.process.send_signal(signal.SIGHUP)
        time.sleep(2.0)
        assert httpx.get(f"{running.url}/v1/tokenizer").json()["version"] == after["version"]
        reply = httpx.post(f"{running.url}/v1/encode", json={"embeddings": catalogue[:20].tolist()}).json()
        np.testing.assert_array_equal(np.array(reply["codes"]), load(tokenizers[1]).encode(catalogue[:20]))
    finally:
        running.stop()
    assert f"SIGHUP: reload failed, still serving {load(tokenizers[1]).version}" in running.process.stderr.read()


def test_a_registry_filled_by_the_cli_is_served_and_a_foreign_tokenizer_is_refused(tmp_path, tokenizers, catalogue):
    """`rqgmm registry assign` and `rqgmm serve` name a tokenizer alike (its content version), so a
    CLI-filled registry can take new items online; a reload to a tokenizer that is not the
    registry's version answers 409 (it used to answer ok, then 422 on every request)."""
    from click.testing import CliRunner

    from rqgmm import RQGMM
    from rqgmm.cli import main
    from rqgmm.io.tables import write_matrix

    write_matrix(tmp_path / "day0.parquet", catalogue[:500], np.array([f"i{k}" for k in range(500)], dtype=object),
                 "item_id")
    shutil.copytree(tokenizers[0], tmp_path / "renamed-deploy")  # the directory's name is not its identity
    assigned = CliRunner().invoke(main, ["registry", "assign", str(tmp_path / "ids.db"), str(tokenizers[0]),
                                         str(tmp_path / "day0.parquet")])
    assert assigned.exit_code == 0, assigned.output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        RQGMM(n_levels=2, codebook_size=16, random_state=0, progress=False).fit(catalogue).save(tmp_path / "gmm")
    running = Server(tmp_path / "renamed-deploy", "--registry", tmp_path / "ids.db")
    try:
        assert httpx.get(f"{running.url}/readyz").json()["ready"] is True
        new = httpx.post(f"{running.url}/v1/items", json={"items": [
            {"item_id": "fresh", "embedding": catalogue[2000].tolist()}, {"item_id": "i3", "embedding": None}]})
        assert new.status_code == 200, new.text
        assert [item["version"] for item in new.json()["items"]] == [load(tokenizers[0]).version] * 2
        swapped = httpx.post(f"{running.url}/v1/admin/reload", json={"path": str(tmp_path / "gmm")})
        assert swapped.status_code == 409 and "registry" in swapped.json()["error"]
        assert "rqgmm registry migrate" in swapped.json()["error"]
        after = httpx.post(f"{running.url}/v1/items", json={"items": [
            {"item_id": "fresh2", "embedding": catalogue[2001].tolist()}]})
        assert after.status_code == 200 and httpx.get(f"{running.url}/readyz").status_code == 200
    finally:
        running.stop()
    with IDRegistry(tmp_path / "ids.db") as store:
        assert store.check() == [] and len(store.items()) == 502


def test_readyz_says_why_a_service_is_not_ready(tmp_path, tokenizers, catalogue):
    """/healthz: the process is alive; /readyz: every configured endpoint can answer. A registry
    moved to another version behind the service's back makes /readyz answer 503 with the reason."""
    with IDRegistry(tmp_path / "ids.db", create=True) as store:
        store.assign(["a"], load(tokenizers[0]).encode(catalogue[:1]), load(tokenizers[0]).version)
    running = Server(tokenizers[0], "--registry", tmp_path / "ids.db")
    try:
        assert httpx.get(f"{running.url}/readyz").status_code == 200
        with IDRegistry(tmp_path / "ids.db") as store:
            store.migrate(["a"], load(tokenizers[1]).encode(catalogue[:1]), load(tokenizers[1]).version)
        ready = httpx.get(f"{running.url}/readyz")
        assert ready.status_code == 503 and "registry" in ready.json()["problems"][0]
        assert httpx.get(f"{running.url}/healthz").status_code == 200
        reload = httpx.post(f"{running.url}/v1/admin/reload", json={"path": str(tokenizers[1])})
        assert reload.status_code == 200 and httpx.get(f"{running.url}/readyz").status_code == 200
    finally:
        running.stop()


def test_hostile_bodies_get_a_named_4xx_never_a_500(tmp_path, tokenizers, catalogue):
    """Deeply nested JSON, .npy bodies of text / bytes / structured / complex / datetime dtypes, a
    JSON body labelled .npy, an item id that is not valid Unicode: each a one-line 4xx."""
    from starlette.testclient import TestClient

    from rqgmm.serve.app import build_app
    from rqgmm.serve.http import ServiceSettings

    def npy(array) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array)
        return buffer.getvalue()

    app = build_app(ServiceSettings(str(tokenizers[0]), registry=str(tmp_path / "ids.db")))
    with TestClient(app) as client:
        nested = client.post("/v1/encode", content=b"[" * 200_000, headers={"content-type": "application/json"})
        assert nested.status_code == 400 and ("not valid JSON" in nested.json()["error"]
                                              or "nested too deeply" in nested.json()["error"])
        for array in (np.array([["a"] * 16]), np.array([[b"a"] * 16]), np.zeros(2, dtype=[("x", "f4")]),
                      np.zeros((2, 16), dtype=np.complex64), np.zeros((2, 16), dtype="datetime64[s]"),
                      np.zeros((2, 16), dtype="V4")):
            reply = client.post("/v1/encode", content=npy(array), headers={"content-type": "application/x-npy"})
            assert reply.status_code == 422 and "expected a .npy of real numbers" in reply.json()["error"], reply.text
        labelled = client.post("/v1/encode", content=b'{"embeddings": [[0]]}',
                               headers={"content-type": "application/x-npy"})
        assert labelled.status_code == 400 and "does not start with the .npy magic" in labelled.json()["error"]
        surrogate = client.post("/v1/items", content=b'{"items": [{"item_id": "\\ud800", "embedding": '
                                + str(catalogue[0].tolist()).encode() + b"}]}",
                                headers={"content-type": "application/json"})
        assert surrogate.status_code == 422 and "not valid Unicode" in surrogate.json()["error"]
        fine = client.post("/v1/encode", content=npy(catalogue[:3]), headers={"content-type": "application/x-npy"})
        assert fine.status_code == 200


def test_serve_refuses_impossible_settings_in_one_line(tokenizers, tmp_path):
    from click.testing import CliRunner

    from rqgmm.cli import main

    runner = CliRunner()
    for args, message in ((["--port", "70000"], "70000 is not in the range 0<=x<=65535"),
                          (["--threads", "100000"], "100000 is not in the range 1<=x<=256"),
                          (["--token-file", str(tmp_path / "absent")], "no such token file")):
        result = runner.invoke(main, ["serve", str(tokenizers[0]), *args])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "nothing was replaced" not in result.output and "unexpected" not in result.output


def test_a_request_waits_for_the_registry_within_a_budget(tmp_path, tokenizers, catalogue, monkeypatch):
    """One slow registry call (a huge assignment, say) makes later requests answer 503 after the
    budget instead of waiting without end."""
    from starlette.testclient import TestClient

    import rqgmm.serve.app as service_app
    from rqgmm.serve.http import ServiceSettings

    real = service_app._lookup_many

    def slow(registry, ids):
        time.sleep(1.5)
        return real(registry, ids)

    monkeypatch.setattr(service_app, "_lookup_many", slow)
    app = service_app.build_app(ServiceSettings(str(tokenizers[0]), registry=str(tmp_path / "ids.db"),
                                                registry_budget_s=0.3))
    with TestClient(app) as client:
        reply = client.post("/v1/items", json={"items": [{"item_id": "a", "embedding": catalogue[0].tolist()}]})
        assert reply.status_code == 503 and "did not answer within 0.3 s" in reply.json()["error"]


def test_the_api_is_strict_and_describes_itself(server):
    """Unknown fields are refused naming them (a misspelt option was silently ignored), unknown
    paths and methods answer JSON, and /openapi.json documents every endpoint's body."""
    running, _ = server
    reply = httpx.post(f"{running.url}/v1/encode", json={"embeddings": [[0.0] * 16], "collision": "suffix"})
    assert reply.status_code == 422
    assert reply.json()["error"] == "collision: unknown field (allowed: collisions, embeddings)"
    nested = httpx.post(f"{running.url}/v1/items", headers=auth(),
                        json={"items": [{"item_id": "a", "embedding": [0.0] * 16}, {"item_id": "b", "embeding": []}]})
    assert nested.status_code == 422 and nested.json()["error"].startswith("items.1.embeding: unknown field"), nested.text
    missing = httpx.post(f"{running.url}/v1/items", headers=auth(), json={"item": []})
    assert missing.status_code == 422 and "items: required field is missing" in missing.json()["error"]
    wrong_type = httpx.post(f"{running.url}/v1/items", headers=auth(), json={"items": [{"item_id": [1]}]})
    assert wrong_type.status_code == 422 and wrong_type.json()["error"].startswith("items.0.item_id"), wrong_type.text
    nowhere = httpx.get(f"{running.url}/v2/encode")
    assert nowhere.status_code == 404 and "no endpoint /v2/encode" in nowhere.json()["error"]
    wrong_method = httpx.get(f"{running.url}/v1/encode")
    assert wrong_method.status_code == 405 and "GET is not allowed" in wrong_method.json()["error"]
    document = httpx.get(f"{running.url}/openapi.json").json()
    assert document["openapi"].startswith("3.") and "/v1/score" in document["paths"]
    schema = document["components"]["schemas"]["EncodeRequest"]
    assert schema["additionalProperties"] is False and set(schema["properties"]) == {"embeddings", "collisions"}
    assert document["paths"]["/v1/items"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"] \
        == "#/components/schemas/ItemsRequest"
