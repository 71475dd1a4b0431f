"""Request bodies of the service, declared once (pydantic): validation with errors that name the
field, unknown fields refused, and the OpenAPI document served at ``/openapi.json``.

Embedding payloads stay ``Any`` here: a list of 384 floats per row is checked (and converted in
one step) by NumPy in the service, which names the row that is not finite; a per-float pydantic
validation would cost more than encoding it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rqgmm.serve.http import HTTPError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EncodeRequest(Strict):
    """Embeddings to encode: (n, dim) numbers; ``collisions`` repairs duplicate IDs within the request."""

    embeddings: Any
    collisions: str | None = None  # checked against the policies by the service, which names them


class ItemIn(Strict):
    item_id: str | int
    embedding: Any = None


class ItemsRequest(Strict):
    """Items to give stable IDs: known items keep theirs, new ones (with an embedding) are assigned."""

    items: list[ItemIn]


class Candidate(Strict):
    item_id: str | int
    embedding: Any = None
    features: dict[str, Any] | None = None


class ScoreRequest(Strict):
    """One request context (user id, categorical and numeric features) and the items to score."""

    context: dict[str, Any]
    candidates: list[Candidate]


class ReloadRequest(Strict):
    path: str | None = None


class MigrateRequest(Strict):
    """The new tokenizer's directory and the catalogue (Parquet: an id column, an embedding column)."""

    tokenizer: str
    catalogue: str
    column: str | None = None
    id_column: str | None = None


def parse(model: type[BaseModel], payload: dict) -> BaseModel:
    """``payload`` as ``model``, or a 422 naming the first bad field and why."""
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "extra_forbidden":
            allowed = sorted(_fields_at(model, first["loc"][:-1]))
            raise HTTPError(422, f"{where}: unknown field (allowed: {', '.join(allowed)})") from None
        if first["type"] == "missing":
            raise HTTPError(422, f"{where}: required field is missing") from None
        raise HTTPError(422, f"{where}: {first['msg']} (got {_short(first.get('input'))})") from None


def _fields_at(model: type[BaseModel], location: tuple) -> list[str]:
    """Field names of the (nested) model at ``location`` (list indices skipped)."""
    current = model
    for part in location:
        if isinstance(part, int):
            continue
        annotation = current.model_fields[part].annotation
        inner = getattr(annotation, "__args__", (annotation,))[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            current = inner
    return list(current.model_fields)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


ROUTES = [  # (method, path, request model or None, summary)
    ("post", "/v1/encode", EncodeRequest, "Semantic IDs of embeddings (JSON, or a .npy body as application/x-npy)"),
    ("post", "/v1/items", ItemsRequest, "Stable IDs from the registry; new items are encoded and assigned"),
    ("get", "/v1/items/{item_id}", None, "One item's stable ID"),
    ("get", "/v1/tokenizer", None, "The served tokenizer (paths only for callers holding the token)"),
    ("post", "/v1/score", ScoreRequest, "Click probabilities of candidates from the CTR run"),
    ("post", "/v1/admin/reload", ReloadRequest, "Load the tokenizer again (the registry's current version)"),
    ("post", "/v1/admin/migrate", MigrateRequest, "Move the registry to a new tokenizer and serve it, in one step"),
    ("get", "/healthz", None, "Liveness"),
    ("get", "/readyz", None, "Readiness: 200 when every configured endpoint can answer, else 503 with reasons"),
    ("get", "/metrics", None, "Prometheus metrics"),
]


def openapi(version: str) -> dict:
    """The OpenAPI 3.1 document of the service (request schemas from the models above)."""
    error = {"description": "error", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
    paths: dict = {}
    components: dict = {}
    for method, path, model, summary in ROUTES:
        operation: dict = {"summary": summary, "responses": {"200": {"description": "ok"}, "4XX": error}}
        if model is not None:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
            operation["requestBody"] = {"required": model is not ReloadRequest, "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        if "{item_id}" in path:
            operation["parameters"] = [{"name": "item_id", "in": "path", "required": True,
                                        "schema": {"type": "string"}}]
        paths.setdefault(path, {})[method] = operation
    return {"openapi": "3.1.0", "info": {"title": "rqgmm serve", "version": version}, "paths": paths,
            "components": {"schemas": components}}
