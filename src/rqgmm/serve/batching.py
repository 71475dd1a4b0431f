"""Dynamic batching of encode requests (as inference servers do).

Concurrent requests put their rows on one queue; a single worker takes the first waiting request,
then keeps collecting requests of the same tokenizer version for at most ``max_wait_ms`` or until
``max_batch`` rows, encodes them with one call (matrix products over the whole batch, in a worker
thread so the event loop keeps accepting requests) and hands each request its own rows back.
Single-item traffic thus still runs as batched products.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from rqgmm.serve.versions import TokenizerVersion


@dataclass
class _Pending:
    rows: np.ndarray
    version: TokenizerVersion
    future: asyncio.Future = field(repr=False)


class EncodeBatcher:
    """``await batcher.encode(rows, version)`` -> codes (m, L) int64 of ``rows`` (m, dim) float32."""

    def __init__(self, max_batch: int = 4096, max_wait_ms: float = 2.0, on_batch=lambda rows: None):
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    async def encode(self, rows: np.ndarray, version: TokenizerVersion) -> np.ndarray:
        if len(rows) >= self.max_batch:  # already a full batch: no reason to wait for company
            return await asyncio.to_thread(version.tokenizer.encode, rows)
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(rows, version, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        carried: _Pending | None = None
        while True:
            first = carried or await self._queue.get()
            carried = None
            batch, size = [first], len(first.rows)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                if item.version is not first.version or size + len(item.rows) > self.max_batch:
                    carried = item  # another version (a reload happened) or no room: next batch
                    break
                batch.append(item)
                size += len(item.rows)
            rows = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
            try:
                codes = await asyncio.to_thread(first.version.tokenizer.encode, rows)
            except Exception as error:  # noqa: BLE001 - handed to every waiting request
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            self.on_batch(len(rows))
            start = 0
            for pending in batch:
                stop = start + len(pending.rows)
                if not pending.future.done():
                    pending.future.set_result(codes[start:stop])
                start = stop
