"""The HTTP pieces of ``rqgmm serve`` that hold no service state: settings, metrics, errors,
the JSON response class, and the checks of a bind address and a token file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.responses import JSONResponse

from rqgmm.errors import InvalidInputError

NPY = "application/x-npy"


class FastJSONResponse(JSONResponse):
    """JSON answers through orjson (numbers serialize ~10x faster than the standard library)."""

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
COLLISION_POLICIES = (None, "suffix", "relocate", "sinkhorn")


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ServiceSettings:
    """tokenizer: saved tokenizer directory; registry: SQLite path or postgresql:// URL (None: no /v1/items);
    ctr_run: saved CTR run (None: no /v1/score); token: bearer token of write/admin endpoints
    (None: open, loopback only); limits on the body (bytes) and on rows per request; the batching
    wait (ms) and largest batch (rows); registry_budget_s: the longest a request waits for the
    registry (then 503)."""

    tokenizer: str
    registry: str | None = None
    ctr_run: str | None = None
    token: str | None = None
    max_body_bytes: int = 64 * 2**20
    max_items: int = 100_000
    batch_wait_ms: float = 2.0
    max_batch: int = 4096
    registry_budget_s: float = 30.0


class Metrics:
    """Prometheus metrics of one service (its own registry: two apps in a process never mix)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("rqgmm_requests_total", "HTTP requests", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("rqgmm_request_seconds", "request latency", ["endpoint"], registry=self.registry,
                                 buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))
        self.batch_rows = Histogram("rqgmm_encode_batch_rows", "rows per encode batch", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384))
        self.assigned = Counter("rqgmm_items_assigned_total", "new items given an ID", registry=self.registry)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str | Path) -> str:
    """The bearer token in the file ``path`` (one line of at least 16 non-space characters)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such token file (--token-file names a file holding the bearer token)")
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read the token file ({exc})") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise InvalidInputError(f"{path}: the token must be one line of at least 16 non-space characters")
    return token

