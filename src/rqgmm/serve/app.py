"""``rqgmm serve``: semantic IDs over HTTP (Starlette on uvicorn).

Starlette rather than FastAPI: the service needs routing, request/response objects and a
lifespan, not a generated docs page (FastAPI's pulls its assets from a CDN, which an offline
deployment cannot load). Request bodies are pydantic models (:mod:`rqgmm.serve.schemas`): an
unknown or malformed field is a 422 naming it; ``GET /openapi.json`` is the OpenAPI document,
served from the process; the JSON shapes are also documented in docs/serving.md.

Endpoints (all under ``/v1`` except the probes):

- ``POST /v1/encode``: ``{"embeddings": [[...], ...], "collisions": null}`` -> ``{"codes": [[...]],
  "version": ...}``; or a ``.npy`` body (``Content-Type: application/x-npy``, (n, dim) float32)
  -> a ``.npy`` of codes (n, L) int64, the version in the ``X-RQGMM-Version`` header.
- ``POST /v1/items``: ``{"items": [{"item_id": "a", "embedding": [...]}, ...]}`` -> each item's
  stable ID from the registry (known items keep theirs; new items are encoded and assigned).
- ``GET /v1/items/{item_id}``, ``GET /v1/tokenizer``, ``GET /metrics``; ``GET /healthz`` (the process is
  alive) and ``GET /readyz`` (every configured endpoint can answer: 200, else 503 naming why).
- ``POST /v1/score`` (with a CTR run): ``{"context": {...}, "candidates": [{"item_id": ...,
  "embedding": [...]?, "features": {...}?}, ...]}`` -> ``{"scores": [...], "items": [...]}``.
- ``POST /v1/admin/reload`` (or SIGHUP): ``{"path": optional}`` loads the tokenizer again and
  swaps it in atomically; 409 unless it is the registry's current version (the CTR run's item
  rows are carried through the registry's mapping).
- ``POST /v1/admin/migrate``: ``{"tokenizer": path, "catalogue": path, "column"?, "id_column"?}``
  moves the registry to the new tokenizer (the catalogue's embeddings, plus those of items this
  service assigned since) and switches to it, as one step for every other request.

Write and admin endpoints (items, score, reload) need ``Authorization: Bearer <token>`` when the
service has a token. Errors are JSON ``{"error": "..."}`` with a 4xx status and the library's
one-line message (unknown paths and methods included: 404 / 405); an unexpected failure is a
500 with one line, never a trace.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rqgmm.errors import InvalidInputError, RqgmmError, VersionMismatchError
from rqgmm.serve.batching import EncodeBatcher
from rqgmm.serve.http import COLLISION_POLICIES, NPY, FastJSONResponse, HTTPError, Metrics, ServiceSettings
from rqgmm.serve.lifecycle import Lifecycle, SwitchRefused
from rqgmm.serve.schemas import EncodeRequest, ItemsRequest, MigrateRequest, ReloadRequest, ScoreRequest, openapi, parse
from rqgmm.serve.versions import VersionHolder


class Service:
    """The state behind the routes: the tokenizer version, the registry, the scorer, metrics."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.versions = VersionHolder(settings.tokenizer)
        self.metrics = Metrics()
        self.batcher = EncodeBatcher(settings.max_batch, settings.batch_wait_ms,
                                     on_batch=self.metrics.batch_rows.observe)
        # SQLite connections belong to one thread: every registry call runs on this one
        self._registry_thread = ThreadPoolExecutor(1, thread_name_prefix="registry")
        self.registry = None
        scorer = None
        try:
            if settings.registry is not None:
                self.registry = self._registry_thread.submit(self._open_registry, settings.registry).result()
            if settings.ctr_run is not None:
                from rqgmm.serve.scoring import CTRScorer

                scorer = CTRScorer(settings.ctr_run)
            self.lifecycle = Lifecycle(self.versions, self.registry, scorer, registry_name=None if self.registry is None else self.registry.name,
                                       run_name=settings.ctr_run)
            self._registry_thread.submit(self.lifecycle.check_start).result()
        except BaseException:
            self.close()
            raise

    @property
    def scorer(self):
        """The CTR scorer in agreement with the served version (None without --ctr-run)."""
        return self.lifecycle.scorer

    @staticmethod
    def _open_registry(path: str):
        from rqgmm.registry import IDRegistry

        return IDRegistry(path, create=True)

    async def on_registry(self, function, *args, budget: float | None = -1):
        """Run ``function(*args)`` on the registry thread. A request waits at most ``budget``
        seconds (default: the service's ``registry_budget_s``; None: no limit, for admin actions)
        and then answers 503, so one huge request cannot hold every other one indefinitely."""
        budget = self.settings.registry_budget_s if budget == -1 else budget
        work = asyncio.get_running_loop().run_in_executor(self._registry_thread, function, *args)
        if budget is None:
            return await work
        try:
            return await asyncio.wait_for(asyncio.shield(work), timeout=budget)
        except asyncio.TimeoutError:
            raise HTTPError(503, f"the registry did not answer within {budget:g} s (busy with earlier requests);"
                                 " retry later") from None

    def close(self) -> None:
        if self.registry is not None:
            self._registry_thread.submit(self.registry.close).result()
            self.registry = None
        self._registry_thread.shutdown()

    # ------------------------------------------------------------------ request helpers
    def authorize(self, request: Request) -> None:
        token = self.settings.token
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise HTTPError(401, "this endpoint needs 'Authorization: Bearer <token>'")

    async def body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"request body of {int(declared):,} bytes is over the limit of {limit:,}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"request body is over the limit of {limit:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def json_body(self, request: Request) -> dict:
        return self.parse_json(await self.body(request))

    def parse_json(self, raw: bytes) -> dict:
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            try:  # the standard library also reads NaN / Infinity, which the checks then name by row
                payload = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise HTTPError(400, f"request body is not valid JSON ({str(exc)[:200]})") from None
            except RecursionError:
                raise HTTPError(400, "request body is JSON nested too deeply to be a request") from None
        if not isinstance(payload, dict):
            raise HTTPError(400, "request body must be a JSON object")
        return payload

    def matrix(self, value, where: str) -> np.ndarray:
        """A list of embeddings -> (n, dim) float32 of the served width, every value finite."""
        dim = self.versions.current.tokenizer.n_features_in_
        if not isinstance(value, list) or not value:
            raise HTTPError(422, f"{where}: expected a non-empty list of embeddings")
        if len(value) > self.settings.max_items:
            raise HTTPError(413, f"{where}: {len(value):,} rows is over the limit of {self.settings.max_items:,}")
        try:
            rows = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise HTTPError(422, f"{where}: every embedding must be a list of {dim} numbers") from None
        return self.checked(rows, where)

    def checked(self, rows: np.ndarray, where: str) -> np.ndarray:
        dim = self.versions.current.tokenizer.n_features_in_
        if rows.ndim != 2 or rows.shape[1] != dim:
            raise HTTPError(422, f"{where}: expected embeddings of shape (n, {dim}), got {tuple(rows.shape)}")
        if len(rows) > self.settings.max_items:
            raise HTTPError(413, f"{where}: {len(rows):,} rows is over the limit of {self.settings.max_items:,}")
        bad = ~np.isfinite(rows).all(axis=1)
        if bad.any():
            raise HTTPError(422, f"{where}: row {int(np.flatnonzero(bad)[0])} holds NaN or Inf")
        return np.ascontiguousarray(rows, dtype=np.float32)

    # ------------------------------------------------------------------ endpoints
    async def encode(self, request: Request) -> Response:
        version = self.versions.current
        if request.headers.get("content-type", "").split(";")[0].strip() == NPY:
            raw = await self.body(request)
            if not raw.startswith(b"\x93NUMPY"):
                raise HTTPError(400, f"body is not a .npy file (Content-Type is {NPY}, but the body does not start"
                                     " with the .npy magic bytes; send JSON as application/json)")
            try:
                rows = np.load(io.BytesIO(raw), allow_pickle=False)
            except Exception as exc:  # noqa: BLE001 - any unreadable body is the client's
                raise HTTPError(400, f"body is not a readable .npy array ({type(exc).__name__}: {exc})") from None
            if rows.dtype.kind not in "fiub":  # complex, datetime, text, bytes, structured: not embeddings
                raise HTTPError(422, f"body: expected a .npy of real numbers, got dtype {rows.dtype}")
            codes = await self.batcher.encode(self.checked(rows, "body"), version)
            buffer = io.BytesIO()
            np.save(buffer, codes.astype(np.int64))
            return Response(buffer.getvalue(), media_type=NPY, headers={"X-RQGMM-Version": version.version})
        body = parse(EncodeRequest, await self.json_body(request))
        rows = self.matrix(body.embeddings, "embeddings")
        collisions = body.collisions
        if collisions not in COLLISION_POLICIES:
            raise HTTPError(422, f"collisions must be one of {list(COLLISION_POLICIES)}, got {collisions!r}")
        if collisions is None:
            codes = await self.batcher.encode(rows, version)
        else:  # collision repair looks at the whole request: not batched with others
            codes = await asyncio.to_thread(version.tokenizer.encode, rows, collisions=collisions)
        return FastJSONResponse({"codes": np.ascontiguousarray(codes, dtype=np.int64), "version": version.version})

    async def items(self, request: Request) -> Response:
        self.authorize(request)
        registry = self._need_registry()
        payload = await self.json_body(request)
        if isinstance(payload.get("items"), list) and len(payload["items"]) > self.settings.max_items:
            raise HTTPError(413, f"items: {len(payload['items']):,} is over the limit of {self.settings.max_items:,}")
        items = parse(ItemsRequest, payload).items
        if not items:
            raise HTTPError(422, "items: expected a non-empty list of {item_id, embedding}")
        ids = [checked_item_id(item.item_id, f"items[{index}].item_id") for index, item in enumerate(items)]
        version = self.versions.current
        known = await self.on_registry(_lookup_many, registry, ids)
        new = [i for i, item_id in enumerate(ids) if known[item_id] is None]
        if new:
            rows = self.matrix([items[i].embedding for i in new], "items[].embedding")
            codes = await self.batcher.encode(rows, version)
            assigned = await self.on_registry(self.lifecycle.assign, [ids[i] for i in new], rows, codes, version)
            self.metrics.assigned.inc(sum(a.new for a in assigned))
            for assignment in assigned:
                known[assignment.item_id] = assignment
        return FastJSONResponse({"items": [{"item_id": item_id, "sid": list(known[item_id].sid),
                                        "version": known[item_id].version} for item_id in ids],
                             "version": version.version})

    async def item(self, request: Request) -> Response:
        registry = self._need_registry()
        item_id = request.path_params["item_id"]
        found = await self.on_registry(registry.lookup, item_id)
        if found is None:
            raise HTTPError(404, f"item {item_id!r} has no semantic ID in the registry")
        return FastJSONResponse({"item_id": item_id, "sid": list(found.sid), "version": found.version})

    async def tokenizer(self, request: Request) -> Response:
        try:  # file-system paths only for callers holding the token (or on a service without one)
            self.authorize(request)
            with_path = True
        except HTTPError:
            with_path = False
        return FastJSONResponse(self.versions.current.summary(with_path=with_path))

    async def health(self, request: Request) -> Response:
        return FastJSONResponse({"status": "ok", "version": self.versions.current.version})

    async def ready(self, request: Request) -> Response:
        """200 when every configured endpoint can answer now, else 503 with the reasons."""
        version = self.versions.current
        checks, problems = {"encode": "ok"}, []
        try:
            found = await asyncio.wait_for(self.on_registry(self.lifecycle.problems, version), timeout=5)
        except asyncio.TimeoutError:
            found = ["the registry did not answer within 5 s"]
        except Exception as error:  # noqa: BLE001 - an unreachable registry is a reason, not a crash
            found = [f"the registry cannot be read: {type(error).__name__}: {error}"]
        problems += found
        if self.registry is not None:
            checks["items"] = "ok" if not found else "not ready"
        if self.scorer is not None:
            checks["score"] = "ok" if not found else "not ready"
        body = {"ready": not problems, "version": version.version, "checks": checks, "problems": problems}
        return FastJSONResponse(body, status_code=200 if not problems else 503)

    async def openapi_page(self, request: Request) -> Response:
        from rqgmm import __version__

        return FastJSONResponse(openapi(__version__))

    async def metrics_page(self, request: Request) -> Response:
        from rqgmm.serve.workers import multiprocess_metrics

        every_worker = multiprocess_metrics()  # under --workers: summed over the workers
        return Response(every_worker if every_worker is not None else generate_latest(self.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    async def reload(self, request: Request) -> Response:
        self.authorize(request)
        raw = await self.body(request)
        path = parse(ReloadRequest, self.parse_json(raw)).path if raw.strip() else None
        candidate = await asyncio.to_thread(self.versions.load, path)
        return FastJSONResponse(await self.on_registry(self.lifecycle.switch_to, candidate, budget=None))

    async def migrate(self, request: Request) -> Response:
        """Move the registry to a new tokenizer and serve it, as one step (see the module doc)."""
        from rqgmm.io.tables import read_embeddings

        self.authorize(request)
        self._need_registry()
        payload = parse(MigrateRequest, await self.json_body(request)).model_dump()
        candidate = await asyncio.to_thread(self.versions.load, payload["tokenizer"])
        table = await asyncio.to_thread(read_embeddings, payload["catalogue"], column=payload.get("column"),
                                        id_column=payload.get("id_column"))
        if table.id_name == "row":
            raise HTTPError(422, f"catalogue {payload['catalogue']}: no item id column (a .npy has none)")
        codes = await asyncio.to_thread(candidate.tokenizer.encode, table.embeddings)
        ids = [str(i) for i in table.ids]
        return FastJSONResponse(await self.on_registry(self.lifecycle.migrate, candidate, ids, codes, budget=None))

    async def score(self, request: Request) -> Response:
        self.authorize(request)
        scorer = self.scorer
        if scorer is None:
            raise HTTPError(404, "this service was started without --ctr-run; /v1/score is off")
        payload = await self.json_body(request)
        if isinstance(payload.get("candidates"), list) and len(payload["candidates"]) > self.settings.max_items:
            raise HTTPError(413, f"candidates: {len(payload['candidates']):,} is over the limit of"
                                 f" {self.settings.max_items:,}")
        body = parse(ScoreRequest, payload)
        context, candidates = body.context, [candidate.model_dump() for candidate in body.candidates]
        if not candidates:
            raise HTTPError(422, "candidates: expected a non-empty list of {item_id, embedding?, features?}")
        version, scorer = self.lifecycle.served()  # one version and one scorer for the whole request
        for index, candidate in enumerate(candidates):
            candidate["item_id"] = checked_item_id(candidate["item_id"], f"candidates[{index}].item_id")
        unseen = [c for c in candidates if not scorer.knows(c["item_id"])]
        sids = await self._sids_of_new_items(scorer, unseen, version)
        for candidate in candidates:
            item_id = candidate["item_id"]
            if not scorer.knows(item_id):
                sid = sids.get(item_id)
                embedding = candidate.get("embedding")
                scorer.add_item(item_id, None if sid is None else np.asarray(sid[:-1]),
                                None if embedding is None else self.matrix([embedding], "embedding")[0])
            candidate["row"] = scorer.row_of(item_id)
        inputs = scorer.inputs(context, candidates)
        scores = await asyncio.to_thread(scorer.score, inputs)
        return FastJSONResponse({"scores": [float(s) for s in scores], "version": version.version,
                             "items": [{"item_id": c["item_id"], "sid": sids.get(c["item_id"])} for c in candidates]})

    async def _sids_of_new_items(self, scorer, unseen: list[dict], version) -> dict[str, list[int] | None]:
        """Semantic IDs (codes + suffix) of items the model has not seen: the registry's when it
        knows them, else assigned now from their embedding (encoded without a registry)."""
        if not unseen or not (scorer.uses_sid or scorer.uses_content):
            return {}
        ids = list(dict.fromkeys(c["item_id"] for c in unseen))
        embeddings = {c["item_id"]: c.get("embedding") for c in unseen}
        known = {}
        if self.registry is not None:
            found = await self.on_registry(_lookup_many, self.registry, ids)
            known = {k: list(v.sid) for k, v in found.items() if v is not None}
        missing = [i for i in ids if i not in known]
        absent = [i for i in missing if embeddings[i] is None]
        if absent:
            raise HTTPError(422, f"candidate {absent[0]!r} is new: send its embedding")
        if missing:
            rows = self.matrix([embeddings[i] for i in missing], "candidates[].embedding")
            codes = await self.batcher.encode(rows, version)
            if self.registry is not None:
                assigned = await self.on_registry(self.lifecycle.assign, missing, rows, codes, version)
                self.metrics.assigned.inc(sum(a.new for a in assigned))
                known.update({a.item_id: list(a.sid) for a in assigned})
            else:
                known.update({item_id: [*map(int, row), 0] for item_id, row in zip(missing, codes)})
        return known

    def _need_registry(self):
        if self.registry is None:
            raise HTTPError(404, "this service was started without --registry; /v1/items is off")
        return self.registry


def checked_item_id(value, where: str) -> str:
    """An item id as text that the registry can store (valid UTF-8), else a 422 naming it."""
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPError(422, f"{where}: not valid Unicode text (a lone surrogate?): {text!r}") from None
    return text


def _lookup_many(registry, ids: list[str]) -> dict:
    return {item_id: registry.lookup(item_id) for item_id in ids}


def build_app(settings: ServiceSettings) -> Starlette:
    """The ASGI application of one service."""
    service = Service(settings)

    def route(path: str, handler, methods: list[str], name: str) -> Route:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except HTTPError as error:
                response = FastJSONResponse({"error": error.message}, status_code=error.status)
            except (SwitchRefused, VersionMismatchError) as error:
                response = FastJSONResponse({"error": str(error)}, status_code=409)
            except (InvalidInputError, RqgmmError) as error:
                response = FastJSONResponse({"error": str(error)}, status_code=422)
            except Exception as error:  # noqa: BLE001 - one line to the client, never a trace
                response = FastJSONResponse({"error": f"internal error: {type(error).__name__}: {error}"},
                                        status_code=500)
            service.metrics.requests.labels(name, str(response.status_code)).inc()
            service.metrics.latency.labels(name).observe(time.perf_counter() - started)
            return response
        return Route(path, endpoint, methods=methods, name=name)

    @asynccontextmanager
    async def lifespan(app):
        service.batcher.start()
        loop = asyncio.get_running_loop()
        async def reload_on_signal() -> None:
            try:
                candidate = await asyncio.to_thread(service.versions.load)
                loaded = await service.on_registry(service.lifecycle.switch_to, candidate)
                print(f"rqgmm serve: SIGHUP: now serving {loaded['version']}", file=sys.stderr)
            except Exception as error:  # noqa: BLE001 - the old version keeps serving; say why in one line
                print(f"rqgmm serve: SIGHUP: reload failed, still serving {service.versions.current.version}:"
                      f" {error}", file=sys.stderr)

        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload_on_signal()))
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests in-process) or no signals on this platform
        try:
            yield
        finally:
            await service.batcher.stop()
            service.close()

    routes = [
        route("/v1/encode", service.encode, ["POST"], "encode"),
        route("/v1/items", service.items, ["POST"], "items"),
        route("/v1/items/{item_id:path}", service.item, ["GET"], "item"),
        route("/v1/tokenizer", service.tokenizer, ["GET"], "tokenizer"),
        route("/v1/score", service.score, ["POST"], "score"),
        route("/v1/admin/reload", service.reload, ["POST"], "reload"),
        route("/v1/admin/migrate", service.migrate, ["POST"], "migrate"),
        route("/healthz", service.health, ["GET"], "healthz"),
        route("/readyz", service.ready, ["GET"], "readyz"),
        route("/metrics", service.metrics_page, ["GET"], "metrics"),
        route("/openapi.json", service.openapi_page, ["GET"], "openapi"),
    ]

    async def json_error(request: Request, error: HTTPException) -> Response:
        what = {404: f"no endpoint {request.url.path} (see /openapi.json)",
                405: f"{request.method} is not allowed on {request.url.path}"}.get(error.status_code, error.detail)
        return FastJSONResponse({"error": what}, status_code=error.status_code, headers=error.headers)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: json_error})
    app.state.service = service
    return app
