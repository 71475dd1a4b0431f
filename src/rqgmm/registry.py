"""An ID registry: which semantic ID each item holds, in a real database (SQLite or PostgreSQL).

``item_id -> semantic ID`` where a semantic ID is the tokenizer's codes plus a collision suffix
(the smallest free number under that code prefix), so every active item has an ID no other
item has. The registry also records which tokenizer version assigned an ID, when the item was
first seen and last updated, and never hands out an ID again once it was retired.

Guarantees:
- every operation is one transaction: two processes assigning at the same time are serialized
  (SQLite: ``BEGIN IMMEDIATE``, the write lock; PostgreSQL: ``SERIALIZABLE``, re-run on a
  conflict) and never produce the same ID (a UNIQUE index backs this up); a crash
  mid-operation leaves the registry as it was before the call;
- readers are not blocked by a writer (SQLite's WAL; PostgreSQL's MVCC);
- versions only move forward: an ``assign`` with an older tokenizer version than the current
  one is refused; ``migrate`` moves every active item to a new version and records the
  old -> new ID mapping that a CTR model needs to remap its embedding rows.

The database is named by a path or a ``sqlite:///path`` URL (SQLite, embedded: one host), or a
``postgresql://…`` URL (a shared server for several workers and replicas; the database must
exist, ``create=True`` makes the tables). See :mod:`rqgmm.registry_backends`.
"""

from __future__ import annotations

import collections
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rqgmm.errors import InvalidInputError
from rqgmm.registry_backends import RegistryError, open_backend

SCHEMA_VERSION = 1
_FORMAT = "rqgmm-id-registry"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    position {autoincrement},
    version TEXT NOT NULL UNIQUE,
    n_levels INTEGER NOT NULL,
    registered_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    suffix INTEGER NOT NULL,
    version TEXT NOT NULL REFERENCES versions(version),
    first_seen TEXT NOT NULL,
    updated TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS items_by_prefix ON items(prefix, suffix);
CREATE TABLE IF NOT EXISTS retired (
    sid TEXT PRIMARY KEY, prefix TEXT NOT NULL, suffix INTEGER NOT NULL, item_id TEXT NOT NULL,
    retired_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS retired_by_prefix ON retired(prefix, suffix);
CREATE TABLE IF NOT EXISTS mappings (
    old_version TEXT NOT NULL, new_version TEXT NOT NULL, item_id TEXT NOT NULL,
    old_sid TEXT NOT NULL, new_sid TEXT NOT NULL, PRIMARY KEY (old_version, new_version, item_id));
"""


__all__ = ["Assignment", "IDRegistry", "RegistryError", "tokenizer_version"]


@dataclass(frozen=True)
class Assignment:
    """item_id; sid: codes then the collision suffix, e.g. (12, 7, 0); version; new: assigned now."""

    item_id: str
    sid: tuple[int, ...]
    version: str
    new: bool


_CHUNK = 500  # values per IN (...) list: far below SQLite's and PostgreSQL's limits


def _chunks(values: list) -> list[list]:
    return [values[start:start + _CHUNK] for start in range(0, len(values), _CHUNK)]


class _SuffixAllocator:
    """Smallest free suffixes within one transaction: the taken suffixes of every prefix the call
    needs are read in one query per 500 prefixes, then handed out in order, so assigning n items
    under one code is linear, not quadratic, and a batch costs a few round trips, not one per item."""

    def __init__(self, db, prefixes: list[str]):
        self._db = db
        self._taken: dict[str, set[int]] = {prefix: set() for prefix in prefixes}
        self._next: dict[str, int] = {prefix: 0 for prefix in prefixes}
        for part in _chunks(sorted(self._taken)):
            marks = ",".join("?" * len(part))
            for prefix, suffix in db.execute(f"SELECT prefix, suffix FROM items WHERE prefix IN ({marks}) UNION ALL"
                                             f" SELECT prefix, suffix FROM retired WHERE prefix IN ({marks})",
                                             (*part, *part)):
                self._taken[prefix].add(suffix)

    def take(self, prefix: str) -> int:
        taken, suffix = self._taken[prefix], self._next[prefix]
        while suffix in taken:
            suffix += 1
        taken.add(suffix)
        self._next[prefix] = suffix + 1
        return suffix


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def _text(codes: Sequence[int]) -> str:
    return "-".join(str(int(c)) for c in codes)


class IDRegistry:
    """A registry in the database at ``url`` (a path or ``sqlite:///path``: SQLite;
    ``postgresql://…``: PostgreSQL); its tables are created with ``create=True``.
    ``path`` is the SQLite file (None for PostgreSQL), ``name`` how messages name the registry."""

    def __init__(self, url: str | Path, *, create: bool = False, timeout: float = 30.0):
        self._db = open_backend(url, create=create, timeout=timeout)
        self.path, self.name = self._db.path, self._db.name
        tables = self._db.tables()
        if not tables or ("meta" not in tables and create and self._db.kind == "PostgreSQL"):
            if not create:
                raise RegistryError(f"{self.name}: empty database, not an rqgmm registry")
            self._db.write(self._create_schema)  # two processes creating at once: the second finds it done
        self._check_ours()

    def _create_schema(self, db) -> None:
        if hasattr(db, "lock_schema"):
            db.lock_schema()
        for statement in _SCHEMA.format(autoincrement=db.autoincrement).strip().split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO meta VALUES ('format', ?), ('schema_version', ?) ON CONFLICT DO NOTHING",
                   (_FORMAT, str(SCHEMA_VERSION)))

    def _check_ours(self) -> None:
        kind = self._db.kind
        tables = self._db.tables()
        if "meta" not in tables:
            raise RegistryError(f"{self.name}: a{'n' if kind == 'SQLite' else ''} {kind} database, but not an rqgmm"
                                " registry")
        try:
            meta = {key: value for key, value in self._db.execute("SELECT key, value FROM meta")}
        except Exception as exc:  # noqa: BLE001 - a damaged page or a foreign table: named, not a trace
            raise RegistryError(f"{self.name}: damaged registry: its meta table cannot be read"
                                f" ({type(exc).__name__}: {exc})") from None
        if meta.get("format") != _FORMAT:
            raise RegistryError(f"{self.name}: a{'n' if kind == 'SQLite' else ''} {kind} database, but not an rqgmm"
                                " registry")
        try:
            version = int(meta.get("schema_version", "0"))
        except ValueError:
            raise RegistryError(f"{self.name}: damaged registry: schema_version is"
                                f" {meta.get('schema_version')!r}, not a number") from None
        missing = sorted({"versions", "items", "retired", "mappings"} - tables)
        if missing:
            raise RegistryError(f"{self.name}: damaged registry: table(s) {missing} are missing")
        if version > SCHEMA_VERSION:
            raise RegistryError(f"{self.name}: registry schema version {version} is newer than this rqgmm"
                                f" understands ({SCHEMA_VERSION}); upgrade rqgmm")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "IDRegistry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ versions
    @property
    def current_version(self) -> str | None:
        row = self._db.execute("SELECT version FROM versions ORDER BY position DESC LIMIT 1").fetchone()
        return None if row is None else row[0]

    def versions(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT version FROM versions ORDER BY position")]

    def _use_version(self, db, version: str, n_levels: int) -> None:
        """Register ``version`` as the newest one, or check it is the current one."""
        known = self.versions()
        if version in known:
            if version != known[-1]:
                raise RegistryError(f"tokenizer version {version!r} is older than the registry's current version"
                                    f" {known[-1]!r}; assign with the current tokenizer (or migrate first)")
            levels = db.execute("SELECT n_levels FROM versions WHERE version=?", (version,)).fetchone()[0]
            if levels != n_levels:
                raise RegistryError(f"version {version!r} was registered with {levels} levels, codes have {n_levels}")
            return
        if known:
            raise RegistryError(f"tokenizer version {version!r} is not the registry's current version {known[-1]!r};"
                                " move the registry to it with migrate")
        db.execute("INSERT INTO versions (version, n_levels, registered_at) VALUES (?, ?, ?)",
                   (version, n_levels, _now()))

    # ------------------------------------------------------------------ operations
    def assign(self, item_ids: Sequence, codes: np.ndarray, version: str) -> list[Assignment]:
        """Semantic IDs of ``item_ids``: known items keep theirs, new items get ``codes`` (their
        rows of ``codes`` (n, L), from the current tokenizer ``version``) plus the smallest suffix
        free under that prefix (retired IDs count as taken). One transaction."""
        ids = [str(i) for i in item_ids]
        codes = np.asarray(codes)
        if codes.ndim != 2 or len(codes) != len(ids):
            raise InvalidInputError(f"codes must be (n_items, n_levels) for {len(ids)} items, got shape {codes.shape}")
        if len(set(ids)) != len(ids):  # a counter, not ids.count per id: linear in the call's size
            duplicates = sorted(item for item, count in collections.Counter(ids).items() if count > 1)
            raise InvalidInputError(f"item id(s) {duplicates[:5]} appear more than once in one assign call")

        def work(db) -> list[Assignment]:  # re-run whole if a concurrent writer forces a retry
            self._use_version(db, version, codes.shape[1])
            db.lock_items(exclusive=False)  # PostgreSQL: no migration or retirement meanwhile
            known = _rows_by_item(db, "SELECT item_id, sid, version FROM items WHERE item_id IN", ids)
            retired = _rows_by_item(db, "SELECT item_id, sid FROM retired WHERE item_id IN",
                                    [i for i in ids if i not in known])
            if retired:
                raise RegistryError(f"item {next(iter(retired))!r} was retired; its ID is never reused (use a new"
                                    " item id)")
            prefixes = {item_id: _text(row) for item_id, row in zip(ids, codes) if item_id not in known}
            db.lock_prefixes(sorted(set(prefixes.values())))  # PostgreSQL: writers of one prefix take turns
            free = _SuffixAllocator(db, list(set(prefixes.values())))
            out, rows, stamp = [], [], _now()
            for item_id, row in zip(ids, codes):
                if item_id in known:
                    sid, at = known[item_id]
                    out.append(Assignment(item_id, tuple(int(x) for x in sid.split("-")), at, False))
                    continue
                prefix = prefixes[item_id]
                suffix = free.take(prefix)
                rows.append((item_id, f"{prefix}-{suffix}", prefix, suffix, version, stamp, stamp))
                out.append(Assignment(item_id, (*(int(c) for c in row), suffix), version, True))
            db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            return out

        return self._db.write(work)

    def lookup(self, item_id) -> Assignment | None:
        row = self._db.execute("SELECT sid, version FROM items WHERE item_id=?", (str(item_id),)).fetchone()
        return None if row is None else Assignment(str(item_id), tuple(int(x) for x in row[0].split("-")), row[1],
                                                   False)

    def retire(self, item_ids: Sequence) -> int:
        """Remove items; their IDs are never handed out again. Returns how many were retired."""
        ids = [str(i) for i in item_ids]

        def work(db) -> int:
            db.lock_items(exclusive=True)
            for item_id in ids:
                row = db.execute("SELECT sid, prefix, suffix FROM items WHERE item_id=?", (item_id,)).fetchone()
                if row is None:
                    raise RegistryError(f"item {item_id!r} is not in the registry")
                db.execute("INSERT INTO retired VALUES (?, ?, ?, ?, ?)", (*row, item_id, _now()))
                db.execute("DELETE FROM items WHERE item_id=?", (item_id,))
            return len(ids)

        return self._db.write(work)

    def migrate(self, item_ids: Sequence, codes: np.ndarray, new_version: str) -> dict[str, tuple[str, str]]:
        """Move every active item to ``new_version``: ``codes`` (n, L) are the new tokenizer's codes
        of ``item_ids`` (all active items, each once). Items whose codes did not change keep their
        whole ID (suffix included); the others get the smallest free suffix under their new prefix.
        Returns and records ``item_id -> (old sid, new sid)``. One transaction."""
        ids = [str(i) for i in item_ids]
        codes = np.asarray(codes)
        if codes.ndim != 2 or len(codes) != len(ids) or len(set(ids)) != len(ids):
            raise InvalidInputError("migrate needs each active item once with its (n_items, n_levels) codes")

        def work(db) -> dict[str, tuple[str, str]]:  # reads inside: a retry sees the concurrent writer's work
            db.lock_items(exclusive=True)
            old_version = self.current_version
            if old_version is None:
                raise RegistryError("the registry is empty; nothing to migrate")
            if new_version in self.versions():
                raise RegistryError(f"version {new_version!r} is already registered; versions only move forward")
            mapping = {}
            active = {row[0]: row[1:] for row in db.execute("SELECT item_id, sid, prefix, suffix, first_seen FROM items")}
            missing = sorted(set(active) - set(ids))
            if missing:
                raise InvalidInputError(f"migrate needs every active item; {len(missing)} missing (e.g. {missing[:3]})")
            unknown = sorted(set(ids) - set(active))
            if unknown:
                raise InvalidInputError(f"item(s) {unknown[:3]} are not in the registry; assign them after migrating")
            db.execute("INSERT INTO versions (version, n_levels, registered_at) VALUES (?, ?, ?)",
                       (new_version, codes.shape[1], _now()))
            new_prefix = {item_id: _text(row) for item_id, row in zip(ids, codes)}
            keep = {i for i in ids if new_prefix[i] == active[i][1]}
            stamp = _now()
            # items that keep their prefix keep their whole ID; the others are placed afterwards
            moving = [i for i in ids if i not in keep]
            for item_id in moving:
                db.execute("DELETE FROM items WHERE item_id=?", (item_id,))
            free = _SuffixAllocator(db, sorted({new_prefix[i] for i in moving}))
            for item_id in ids:
                old_sid = active[item_id][0]
                if item_id in keep:
                    db.execute("UPDATE items SET version=?, updated=? WHERE item_id=?", (new_version, stamp, item_id))
                    new_sid = old_sid
                else:
                    prefix = new_prefix[item_id]
                    suffix = free.take(prefix)
                    new_sid = f"{prefix}-{suffix}"
                    first_seen = active[item_id][3]  # the item is not new: it keeps its first-seen time
                    db.execute("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (item_id, new_sid, prefix, suffix, new_version, first_seen, stamp))
                db.execute("INSERT INTO mappings VALUES (?, ?, ?, ?, ?)",
                           (old_version, new_version, item_id, old_sid, new_sid))
                mapping[item_id] = (old_sid, new_sid)
            return mapping

        return self._db.write(work)

    def _require_migration(self, old_version: str, new_version: str) -> None:
        """A named error unless the migration ``old_version -> new_version`` is recorded (one
        indexed lookup: no mapping is read)."""
        if not self._db.execute("SELECT 1 FROM mappings WHERE old_version=? AND new_version=? LIMIT 1",
                                (old_version, new_version)).fetchone():
            known = [f"{a} -> {b}" for a, b in self._db.execute(
                "SELECT DISTINCT old_version, new_version FROM mappings")]
            raise RegistryError(f"{self.name}: no migration from version {old_version!r} to {new_version!r} is"
                                f" recorded (recorded: {known or 'none'})")

    def migration_chain(self, old_version: str, new_version: str | None = None) -> list[str]:
        """The versions from ``old_version`` to ``new_version`` (default: the current one), each
        step a recorded migration; a named error otherwise. What a CTR run trained on
        ``old_version`` needs to be carried forward."""
        versions = self.versions()
        new_version = versions[-1] if new_version is None and versions else new_version
        for version in (old_version, new_version):
            if version not in versions:
                raise RegistryError(f"{self.name}: tokenizer version {version!r} was never registered here"
                                    f" (versions: {versions})")
        if versions.index(old_version) > versions.index(new_version):
            raise RegistryError(f"{self.name}: version {old_version!r} comes after {new_version!r}; versions only"
                                " move forward")
        chain = versions[versions.index(old_version):versions.index(new_version) + 1]
        for old, new in zip(chain, chain[1:]):
            self._require_migration(old, new)
        return chain

    def current_codes(self) -> dict[str, tuple[int, ...]]:
        """``item_id -> codes`` (the current semantic IDs without the collision suffix) of every
        active item."""
        return {item_id: tuple(int(x) for x in sid.split("-"))[:-1]
                for item_id, sid in self._db.execute("SELECT item_id, sid FROM items")}

    def mapping(self, old_version: str, new_version: str) -> dict[str, tuple[str, str]]:
        """``item_id -> (old sid, new sid)`` recorded by the migration ``old_version -> new_version``
        (a named error when no such migration happened)."""
        self._require_migration(old_version, new_version)
        rows = self._db.execute("SELECT item_id, old_sid, new_sid FROM mappings WHERE old_version=? AND"
                                " new_version=?", (old_version, new_version))
        return {item_id: (old, new) for item_id, old, new in rows}

    def migration(self, old_version: str | None = None, new_version: str | None = None) -> tuple[str, str]:
        """``(old, new)`` versions of a recorded migration: ``new`` defaults to the current version,
        ``old`` to the version registered just before ``new``."""
        known = self.versions()
        new_version = known[-1] if new_version is None and known else new_version
        if new_version not in known:
            raise RegistryError(f"{self.name}: version {new_version!r} is not registered (versions: {known})")
        if old_version is None:
            position = known.index(new_version)
            if position == 0:
                raise RegistryError(f"{self.name}: version {new_version!r} was not reached by a migration")
            old_version = known[position - 1]
        self._require_migration(old_version, new_version)
        return old_version, new_version

    def export_mapping(self, old_version: str, new_version: str, path: str | Path, *, overwrite: bool = False) -> int:
        """Write the mapping of one migration as Parquet (item_id, old_sid, new_sid, changed), one
        row per item, by item id; return the number of rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from rqgmm.io.atomic import atomic_path

        mapping = self.mapping(old_version, new_version)
        ids = sorted(mapping)
        table = pa.table({"item_id": ids, "old_sid": [mapping[i][0] for i in ids],
                          "new_sid": [mapping[i][1] for i in ids],
                          "changed": [mapping[i][0] != mapping[i][1] for i in ids]})
        table = table.replace_schema_metadata({b"rqgmm.old_version": old_version.encode(),
                                               b"rqgmm.new_version": new_version.encode()})
        with atomic_path(path, overwrite=overwrite) as tmp:
            pq.write_table(table, tmp)
        return len(ids)

    def items(self) -> list[tuple[str, str, str, str, str]]:
        """(item_id, sid, version, first_seen, updated) of every active item, by item id."""
        return list(self._db.execute("SELECT item_id, sid, version, first_seen, updated FROM items ORDER BY item_id"))

    def export(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Active items as Parquet: item_id, level_0.., suffix (int64), sid, version, first_seen, updated."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from rqgmm.io.atomic import atomic_path

        rows = self.items()
        parts = [tuple(int(x) for x in sid.split("-")) for _, sid, *_ in rows]
        width = max((len(p) for p in parts), default=1)
        columns = {"item_id": [r[0] for r in rows]}
        for level in range(width - 1):
            columns[f"level_{level}"] = pa.array([p[level] for p in parts], pa.int64())
        columns["suffix"] = pa.array([p[-1] for p in parts], pa.int64())
        for index, name in ((1, "sid"), (2, "version"), (3, "first_seen"), (4, "updated")):
            columns[name] = [r[index] for r in rows]
        with atomic_path(path, overwrite=overwrite) as tmp:
            pq.write_table(pa.table(columns), tmp)
        return Path(path)

    def check(self) -> list[str]:
        """Consistency problems (empty when consistent): duplicate or retired IDs in use, IDs
        that do not match their prefix and suffix, items on an unknown version."""
        db = self._db
        problems, readable = db.integrity_problems()
        if not readable:  # pages too damaged for the checks below
            return problems
        for sid, count in db.execute("SELECT sid, COUNT(*) FROM items GROUP BY sid HAVING COUNT(*) > 1"):
            problems.append(f"ID {sid} is held by {count} items")
        for (sid,) in db.execute("SELECT items.sid FROM items JOIN retired ON items.sid = retired.sid"):
            problems.append(f"retired ID {sid} is in use again")
        for item_id, sid, prefix, suffix in db.execute("SELECT item_id, sid, prefix, suffix FROM items"):
            if sid != f"{prefix}-{suffix}":
                problems.append(f"item {item_id}: ID {sid} does not match prefix {prefix} and suffix {suffix}")
        for (item_id,) in db.execute("SELECT item_id FROM items WHERE version NOT IN (SELECT version FROM versions)"):
            problems.append(f"item {item_id}: unknown version")
        return problems


def _rows_by_item(db, query: str, ids: list[str]) -> dict[str, tuple]:
    """``query`` ("SELECT item_id, ... WHERE item_id IN") over ``ids`` in chunks: item_id -> rest of the row."""
    found = {}
    for part in _chunks(ids):
        for row in db.execute(f"{query} ({','.join('?' * len(part))})", tuple(part)):
            found[row[0]] = tuple(row[1:])
    return found


def tokenizer_version(tokenizer_dir: str | Path) -> str:
    """A saved tokenizer's version (:func:`rqgmm.io.artifacts.artifact_version`: a hash of its
    content, so the same tokenizer has the same version wherever it is stored). The registry,
    the service, codes files and CTR runs all name tokenizers by it."""
    from rqgmm.io.artifacts import artifact_version

    return artifact_version(tokenizer_dir)
